/* What the query files share (query.c, query_exec.c, query_cursor.c, projection_odm.c): the
 * query object, its projection fields, and the steps of an execution. */
#ifndef MK_ODM_QUERY_INTERNAL_H
#define MK_ODM_QUERY_INTERNAL_H

#include <sys/types.h>

#include <meerkat/query.h>

#include "odm/odm_internal.h"

/* An ordered map of projection keys to values (Mongoose's `_fields`): keys keep their `+` /
 * `-` prefixes until the projection is resolved for execution. */
typedef struct mk_fields {
    char **keys;
    bson_value_t *vals;
    size_t n, cap;
} mk_fields_t;

void mk_fields_destroy(mk_fields_t *f);
ssize_t mk_fields_find(const mk_fields_t *f, const char *key);
/* Sets key (replacing its value in place, or appending). MK_OK or MK_ENOMEM. */
int mk_fields_set(mk_fields_t *f, const char *key, const bson_value_t *v);
void mk_fields_del(mk_fields_t *f, const char *key);
int mk_fields_copy(mk_fields_t *dst, const mk_fields_t *src);
/* Appends every key and value to out. */
int mk_fields_to_bson(const mk_fields_t *f, bson_t *out);

/* select(arg): parses "a -b +c" or an object text into key/value pairs (a string's `-x`
 * keeps its minus and is 0, other words are 1). */
int mk_projection_parse(const char *text, mk_fields_t *out, mk_error_t *err);
/* Merges parsed select() pairs into the query's fields as Mongoose 8's Query#select does
 * (a later select adds to or removes from an inclusive / exclusive projection). */
int mk_projection_select(mk_fields_t *fields, mk_fields_t *user, const mk_fields_t *arg,
                         mk_error_t *err);
/* Mongoose's applyPaths: the projection sent for `fields` under schema `s` (select: false
 * paths excluded by default, `+path` to include them, `-path` removals). *out is a new
 * document, or NULL when every field is returned. */
int mk_projection_resolve(const mk_schema_t *s, const mk_fields_t *fields, bson_t **out,
                          mk_error_t *err);

struct mk_query {
    mk_model_t *model;
    mk_query_op_t op;
    bson_t *filter;  /* the conditions as given (never NULL) */
    bson_t *update;  /* the update as given, NULL when none */
    bson_t *options; /* Mongoose's `options` (getOptions), in the order set (never NULL) */
    bool lean, sanitize_filter;
    int timestamps;             /* -1: the schema's, 0: off, 1: on */
    int set_defaults_on_insert; /* -1: default (true), 0, 1 */
    mk_fields_t fields, user_fields;
    char *distinct_key;
    char *path; /* the current path of the chain helpers (where()) */
    mk_client_session_t *session;
    bool or_fail;
    bool failed; /* a chain call failed: `error` says why, execution returns it */
    mk_error_t error;
    /* During an execution: changes made by middleware are undone afterwards, so that every
     * execution starts from the query as built; what casting produced is what getFilter /
     * getUpdate show from then on. */
    bool executing;
    struct mk_query_snapshot *snap; /* the query as built, while middleware may change it */
    const bson_t *cast_filter, *cast_update;
};

/* Called by every setter before it changes q: during an execution the first change saves the
 * query as built. MK_OK or MK_ENOMEM. */
int mk_query_save_state(mk_query_t *q, mk_error_t *err);
/* At the end of an execution: puts the saved query back. */
void mk_query_restore_state(mk_query_t *q);

/* Prepares what a find reads: the cast filter and the backend options (sort, projection,
 * skip, limit, ...). `one`: findOne (limit 1). filter and opts are initialised, empty. */
int mk_query_prepare_find(mk_query_t *q, bool one, bson_t *filter, bson_t *opts, mk_error_t *err);
/* Backend errors as Mongoose reports them: kind "MongoServerError", code and message kept. */
int mk_query_server_error(mk_error_t *err, int rc);

#endif
