/* The C functions attached to a schema (see meerkat/schema.h), as the layers above read them:
 * path functions (setters, getters, defaults, validators, required functions), virtuals,
 * methods, statics, transforms and middleware, each list in registration order.
 *
 * Path functions live in the schema that owns the path: a function registered on the parent
 * for "comments.text" (a document array) is stored in the comments sub-schema under "text",
 * so code that walks into a sub-document reads the child schema's registry. */
#ifndef MK_ODM_SCHEMA_FNS_H
#define MK_ODM_SCHEMA_FNS_H

#include <meerkat/schema.h>

typedef enum mk_path_fn_kind {
    MK_FN_SETTER,
    MK_FN_GETTER,
    MK_FN_DEFAULT,
    MK_FN_VALIDATOR,
    MK_FN_REQUIRED,
} mk_path_fn_kind_t;

typedef struct mk_path_fn {
    mk_path_fn_kind_t kind;
    char *path; /* the schema path's full name ("profile.bio", "tags.$" for array elements) */
    union {
        mk_setter_fn setter;
        mk_getter_fn getter;
        mk_default_fn def;
        mk_validator_fn validator;
        mk_required_fn required;
    } fn;
    void *ud;
    char *message; /* validators and required: the message template, or NULL */
    char *type;    /* validators: the ValidatorError kind, or NULL ("user defined") */
} mk_path_fn_t;

/* The next function of `kind` registered for `path` (exact name), starting at *iter (set it
 * to 0 first); NULL when there are no more. */
const mk_path_fn_t *mk_schema_path_fn_next(const mk_schema_t *s, const char *path,
                                           mk_path_fn_kind_t kind, size_t *iter);
/* True when any function of `kind` is registered for `path`. */
bool mk_schema_path_has_fn(const mk_schema_t *s, const char *path, mk_path_fn_kind_t kind);

typedef struct mk_virtual {
    char *name;
    mk_virtual_get_fn get;
    mk_virtual_set_fn set;
    void *ud;
} mk_virtual_t;
size_t mk_schema_virtual_count(const mk_schema_t *s);
const mk_virtual_t *mk_schema_virtual_at(const mk_schema_t *s, size_t i);
const mk_virtual_t *mk_schema_virtual_find(const mk_schema_t *s, const char *name);

typedef struct mk_named_fn {
    char *name;
    union {
        mk_method_fn method;
        mk_static_fn stat;
    } fn;
    void *ud;
} mk_named_fn_t;
const mk_named_fn_t *mk_schema_method_find(const mk_schema_t *s, const char *name);
const mk_named_fn_t *mk_schema_static_find(const mk_schema_t *s, const char *name);

/* `which`: 0 toObject, 1 toJSON. false when none is set. */
bool mk_schema_transform_get(const mk_schema_t *s, int which, mk_transform_fn *fn, void **ud);

typedef enum mk_hook_when { MK_HOOK_PRE, MK_HOOK_POST, MK_HOOK_POST_ERROR } mk_hook_when_t;
typedef struct mk_hook_entry {
    char *op;
    mk_hook_when_t when;
    unsigned flags; /* MK_HOOK_DOCUMENT | MK_HOOK_QUERY, 0 = the op's default */
    mk_hook_fn fn;
    mk_error_hook_fn efn;
    void *ud;
} mk_hook_entry_t;
size_t mk_schema_hook_count(const mk_schema_t *s);
const mk_hook_entry_t *mk_schema_hook_at(const mk_schema_t *s, size_t i);

/* The registry of a schema, owned by it (schema.c calls these). */
typedef struct mk_schema_fns mk_schema_fns_t;
mk_schema_fns_t *mk_schema_fns_dup(const mk_schema_fns_t *src); /* NULL src: an empty one */
void mk_schema_fns_free(mk_schema_fns_t *fns);
/* schema.c's accessor for the registry (created on first use; NULL when out of memory). */
mk_schema_fns_t *mk_schema_fns_of(mk_schema_t *s);
const mk_schema_fns_t *mk_schema_fns_peek(const mk_schema_t *s);

/* Per-schema derived data (plans compiled once and shared by threads). A slot per user. */
enum {
    MK_SCHEMA_CACHE_VALIDATE,
    MK_SCHEMA_CACHE_CAST,
    MK_SCHEMA_CACHE_DOC,
    MK_SCHEMA_CACHE_SLOTS = 6
};
/* The slot's value, built by `build` on first use (thread-safe; NULL if build fails or is NULL).
 * Set the slot's free function once with mk_schema_cache_set_free before or inside build. */
void *mk_schema_cache(const mk_schema_t *s, int slot, void *(*build)(const mk_schema_t *));
void mk_schema_cache_set_free(mk_schema_t *s, int slot, void (*free_fn)(void *));

/* Replaces named references in path options (validate: 'isEmail', set/get/default/required:
 * 'name') by registered functions; recurses into sub-schemas. An unknown name is an error
 * naming it. Called when a model is compiled. */
int mk_schema_resolve_named(mk_schema_t *s, mk_error_t *err);

#endif
