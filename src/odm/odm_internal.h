/* The ODM's shared internals: what a connection, a model and a document hold, and the helpers
 * the ODM's files share. Only src/odm includes this. */
#ifndef MK_ODM_INTERNAL_H
#define MK_ODM_INTERNAL_H

#include <meerkat/engine.h>
#include <meerkat/odm.h>
#include <meerkat/query.h>

#include "backend/backend.h"
#include "odm/cast.h"
#include "odm/schema_fns.h"

struct mk_conn {
    mk_conn_t *root;     /* the connection that owns the engine (itself for a root) */
    mk_engine_t *engine; /* root only */
    mk_backend_t *be;    /* shared with useDb children */
    char *db;
    char *tmpdir; /* memory: the directory removed on close */
    mk_model_t **models;
    size_t nmodels, capmodels;
    mk_conn_t **children; /* useDb connections (root only) */
    size_t nchildren, capchildren;
    struct conn_plugin {
        mk_plugin_fn fn;
        void *opts;
    } * plugins;
    size_t nplugins, capplugins;
};

/* A client session (Mongoose's ClientSession) over a backend session. */
struct mk_client_session {
    mk_conn_t *conn;
    mk_backend_session_t *bs;
};
/* The backend session of a client session (NULL for none). */
static inline mk_backend_session_t *mk_client_session_backend(const mk_client_session_t *s)
{
    return s ? s->bs : NULL;
}

struct mk_model {
    mk_conn_t *conn;
    char *name;
    char *collection;
    mk_schema_t *schema;     /* the compiled copy */
    bool has_hooks;          /* any middleware registered: skip hook lookups when false */
    mk_error_t *index_error; /* why autoIndex could not build an index, or NULL */
};
void mk_model_free(mk_model_t *m);

/* An array's pending atomic change since the last save (Mongoose's $atomics). */
typedef enum {
    ATOMIC_NONE,
    ATOMIC_PUSH,
    ATOMIC_ADD_TO_SET,
    ATOMIC_PULL,
    ATOMIC_SET
} mk_atomic_op_t;
typedef struct mk_atomic {
    char *path;
    mk_atomic_op_t op;
    bson_t *values; /* an array of the pushed / pulled values */
    uint32_t nvalues;
} mk_atomic_t;

typedef struct mk_local {
    char *key;
    void *value;
} mk_local_t;

/* Version bits as Mongoose's: WHERE adds __v to the save's filter, INC increments it. */
enum { VERSION_WHERE = 1, VERSION_INC = 2, VERSION_ALL = 3 };

struct mk_doc {
    mk_model_t *model;
    /* The state: `data` (owned BSON bytes) until the first change, then `tree` over them. */
    uint8_t *data;
    uint32_t len;
    struct mk_tree *tree;
    bson_t *flat; /* the tree serialized, cached until the next change */
    bool is_new;
    bool hydrated;    /* loaded from storage: every stored path is in Mongoose's `init` state */
    unsigned version; /* VERSION_* */
    char **modified;  /* directly modified paths, in order */
    size_t nmod, capmod;
    struct mk_verrors *cast_errors; /* CastErrors recorded by set, or NULL */
    mk_atomic_t *atomics;
    size_t natomics, capatomics;
    mk_local_t *locals;
    size_t nlocals, caplocals;
    bson_value_t *scratch; /* values produced by getters, freed on the next change / destroy */
    size_t nscratch, capscratch;
    mk_client_session_t *session; /* doc.$session() */
    bson_t *deferred; /* sets to run after construction (dotted keys, virtuals), or NULL */
    char idbuf[25];
};

/* The model registry of a connection (connection.c). */
int mk_conn_register_model(mk_conn_t *conn, mk_model_t *model, mk_error_t *err);
mk_model_t *mk_conn_find_model(const mk_conn_t *conn, const char *name);

/* Collection name for a model name (Mongoose's pluralisation). A new string. */
char *mk_pluralize(const char *name);

/* Middleware: runs the hooks of `when` for `op`. `as_document`: the call is document
 * middleware (else query middleware). pre/post stop at the first error. */
int mk_hooks_run(const mk_model_t *model, const char *op, mk_hook_when_t when, bool as_document,
                 mk_hook_t *hook, mk_error_t *err);
/* Runs error-handling post hooks on *error (which they may rewrite). */
void mk_hooks_run_error(const mk_model_t *model, const char *op, bool as_document, mk_hook_t *hook,
                        mk_error_t *error);
/* Runs what follows an operation that ended with `rc` (*err holding its error): post hooks
 * and error handlers as one chain in registration order — the post hooks while there is no
 * error, then only the error handlers registered after the point where an error arose.
 * Returns the final rc (*err updated). Use this rather than mk_hooks_run(POST) +
 * mk_hooks_run_error. */
int mk_hooks_post(const mk_model_t *model, const char *op, bool as_document, mk_hook_t *hook,
                  int rc, mk_error_t *err);
bool mk_hooks_any(const mk_model_t *model, const char *op, bool as_document);

/* The cast type of a scalar SchemaType; false for containers and Mixed. */
bool mk_schematype_cast_type(mk_schematype_t t, mk_cast_type_t *out);

/* Current time in ms (timestamps). */
int64_t mk_odm_now_ms(void);

#endif
