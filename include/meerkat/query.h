/* meerkat — queries (Mongoose's Query) and client sessions.
 *
 *   mk_query_t *q = mk_find(User, &err, "{ role: ?, age: { $gte: ? } }", MK_STR("user"),
 * MK_I32(18)); mk_query_sort(q, "-createdAt"); mk_query_limit(q, 20); mk_cursor_t *c =
 * mk_query_cursor(q, &err); for (mk_doc_t *d; (d = mk_cursor_next(c, &err));)
 * puts(mk_doc_get_str(d, "email")); mk_cursor_destroy(c); mk_query_destroy(q);
 *
 * A query does nothing until it is executed and may be executed again. Its filter, update and
 * options are cast through the model's schema when it runs (a value that cannot be cast fails
 * the execution with Mongoose's CastError); query middleware runs for the op in force then.
 * Texts take `?` placeholders filled in order from the mk_arg_t arguments; where a call takes
 * two texts (filter and update), the arguments fill the first text's placeholders, then the
 * second's. A query belongs to one thread. */
#ifndef MEERKAT_QUERY_H
#define MEERKAT_QUERY_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include <meerkat/error.h>
#include <meerkat/json.h>
#include <meerkat/odm.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_cursor mk_cursor_t;

typedef enum mk_query_op {
    MK_OP_FIND = 1,
    MK_OP_FIND_ONE,
    MK_OP_COUNT_DOCUMENTS,
    MK_OP_ESTIMATED_DOCUMENT_COUNT,
    MK_OP_DISTINCT,
    MK_OP_UPDATE_ONE,
    MK_OP_UPDATE_MANY,
    MK_OP_REPLACE_ONE,
    MK_OP_DELETE_ONE,
    MK_OP_DELETE_MANY,
    MK_OP_FIND_ONE_AND_UPDATE,
    MK_OP_FIND_ONE_AND_REPLACE,
    MK_OP_FIND_ONE_AND_DELETE,
} mk_query_op_t;

/* Mongoose's op name ("find", "findOneAndUpdate", ...). */
const char *mk_query_op_name(mk_query_op_t op);

/* ---- building queries (nothing runs yet) ---- */

#define mk_find(model, err, filter, ...)                                                           \
    mk_query_new((model), MK_OP_FIND, (filter), NULL, MK_ARGS(__VA_ARGS__), (err))
#define mk_find_one(model, err, filter, ...)                                                       \
    mk_query_new((model), MK_OP_FIND_ONE, (filter), NULL, MK_ARGS(__VA_ARGS__), (err))
#define mk_count_documents(model, err, filter, ...)                                                \
    mk_query_new((model), MK_OP_COUNT_DOCUMENTS, (filter), NULL, MK_ARGS(__VA_ARGS__), (err))
#define mk_estimated_document_count(model, err)                                                    \
    mk_query_new((model), MK_OP_ESTIMATED_DOCUMENT_COUNT, NULL, NULL, NULL, (err))
#define mk_delete_one(model, err, filter, ...)                                                     \
    mk_query_new((model), MK_OP_DELETE_ONE, (filter), NULL, MK_ARGS(__VA_ARGS__), (err))
#define mk_delete_many(model, err, filter, ...)                                                    \
    mk_query_new((model), MK_OP_DELETE_MANY, (filter), NULL, MK_ARGS(__VA_ARGS__), (err))
#define mk_find_one_and_delete(model, err, filter, ...)                                            \
    mk_query_new((model), MK_OP_FIND_ONE_AND_DELETE, (filter), NULL, MK_ARGS(__VA_ARGS__), (err))
#define mk_update_one(model, err, filter, update, ...)                                             \
    mk_query_new((model), MK_OP_UPDATE_ONE, (filter), (update), MK_ARGS(__VA_ARGS__), (err))
#define mk_update_many(model, err, filter, update, ...)                                            \
    mk_query_new((model), MK_OP_UPDATE_MANY, (filter), (update), MK_ARGS(__VA_ARGS__), (err))
#define mk_replace_one(model, err, filter, replacement, ...)                                       \
    mk_query_new((model), MK_OP_REPLACE_ONE, (filter), (replacement), MK_ARGS(__VA_ARGS__), (err))
#define mk_find_one_and_update(model, err, filter, update, ...)                                    \
    mk_query_new((model), MK_OP_FIND_ONE_AND_UPDATE, (filter), (update), MK_ARGS(__VA_ARGS__),     \
                 (err))
#define mk_find_one_and_replace(model, err, filter, replacement, ...)                              \
    mk_query_new((model), MK_OP_FIND_ONE_AND_REPLACE, (filter), (replacement),                     \
                 MK_ARGS(__VA_ARGS__), (err))
/* filter and update are relaxed JSON texts (NULL: {}); args fill their placeholders. */
mk_query_t *mk_query_new(mk_model_t *model, mk_query_op_t op, const char *filter,
                         const char *update, const mk_arg_t *args, mk_error_t *err);
/* Same with BSON (copied; NULL: {}). */
mk_query_t *mk_query_new_bson(mk_model_t *model, mk_query_op_t op, const bson_t *filter,
                              const bson_t *update, mk_error_t *err);
/* findById(id) = findOne({ _id: id }) (and runs findOne middleware); findByIdAndUpdate,
 * findByIdAndDelete likewise. */
mk_query_t *mk_find_by_id(mk_model_t *model, mk_arg_t id, mk_error_t *err);
#define mk_find_by_id_and_update(model, err, id, update, ...)                                      \
    mk_find_by_id_and_update_args((model), (id), (update), MK_ARGS(__VA_ARGS__), (err))
mk_query_t *mk_find_by_id_and_update_args(mk_model_t *model, mk_arg_t id, const char *update,
                                          const mk_arg_t *args, mk_error_t *err);
mk_query_t *mk_find_by_id_and_delete(mk_model_t *model, mk_arg_t id, mk_error_t *err);
/* Model.distinct(field, filter). */
#define mk_distinct(model, err, field, filter, ...)                                                \
    mk_distinct_args((model), (field), (filter), MK_ARGS(__VA_ARGS__), (err))
mk_query_t *mk_distinct_args(mk_model_t *model, const char *field, const char *filter,
                             const mk_arg_t *args, mk_error_t *err);
/* Model.where(path): an empty find whose current path is `path` (for the chain helpers). */
mk_query_t *mk_where(mk_model_t *model, const char *path, mk_error_t *err);

void mk_query_destroy(mk_query_t *q);
mk_model_t *mk_query_model(const mk_query_t *q);
mk_query_op_t mk_query_op(const mk_query_t *q);

/* Changes the op before execution, as calling another op on a Mongoose query does
 * (`Model.find(filter).updateOne(update)`); `update` (may be NULL: keep) merges into the query's
 * update. */
#define mk_query_set_op(q, op, err, update, ...)                                                   \
    mk_query_set_op_args((q), (op), (update), MK_ARGS(__VA_ARGS__), (err))
int mk_query_set_op_args(mk_query_t *q, mk_query_op_t op, const char *update, const mk_arg_t *args,
                         mk_error_t *err);

/* ---- chain helpers (Mongoose's where/equals/gt/...): they add to the filter; the ones taking
 * a value apply to the current path set by mk_query_where. They return q, or NULL after an
 * error (later calls on NULL are no-ops returning NULL, and mk_query_error tells why). */
mk_query_t *mk_query_where(mk_query_t *q, const char *path);
mk_query_t *mk_query_where_json(mk_query_t *q, const char *json, const mk_arg_t *args);
mk_query_t *mk_query_equals(mk_query_t *q, mk_arg_t v);
mk_query_t *mk_query_gt(mk_query_t *q, mk_arg_t v);
mk_query_t *mk_query_gte(mk_query_t *q, mk_arg_t v);
mk_query_t *mk_query_lt(mk_query_t *q, mk_arg_t v);
mk_query_t *mk_query_lte(mk_query_t *q, mk_arg_t v);
mk_query_t *mk_query_ne(mk_query_t *q, mk_arg_t v);
/* values: a JSON array text with placeholders, e.g. "['a', ?]" */
mk_query_t *mk_query_in(mk_query_t *q, const char *values, const mk_arg_t *args);
mk_query_t *mk_query_nin(mk_query_t *q, const char *values, const mk_arg_t *args);
mk_query_t *mk_query_all(mk_query_t *q, const char *values, const mk_arg_t *args);
mk_query_t *mk_query_exists(mk_query_t *q, bool exists);
mk_query_t *mk_query_regex(mk_query_t *q, const char *pattern, const char *flags);
mk_query_t *mk_query_size(mk_query_t *q, int64_t n);
mk_query_t *mk_query_mod(mk_query_t *q, int64_t divisor, int64_t remainder);
mk_query_t *mk_query_elem_match(mk_query_t *q, const char *json, const mk_arg_t *args);
/* conditions: a JSON array text of filters ("[{ a: 1 }, { b: ? }]") */
mk_query_t *mk_query_or(mk_query_t *q, const char *conditions, const mk_arg_t *args);
mk_query_t *mk_query_and(mk_query_t *q, const char *conditions, const mk_arg_t *args);
mk_query_t *mk_query_nor(mk_query_t *q, const char *conditions, const mk_arg_t *args);
/* The first error a chain call met (NULL when none). */
const mk_error_t *mk_query_error(const mk_query_t *q);

/* ---- options ---- */

/* "-age name" or "{ age: -1, name: 1 }". */
mk_query_t *mk_query_sort(mk_query_t *q, const char *sort);
mk_query_t *mk_query_skip(mk_query_t *q, int64_t n);
mk_query_t *mk_query_limit(mk_query_t *q, int64_t n);
/* "name age", "-rank", "+email" (includes a select: false path), or "{ name: 1 }". */
mk_query_t *mk_query_select(mk_query_t *q, const char *projection);
mk_query_t *mk_query_lean(mk_query_t *q, bool lean);
mk_query_t *mk_query_batch_size(mk_query_t *q, int32_t n);
mk_query_t *mk_query_max_time_ms(mk_query_t *q, int64_t ms);
/* An index name or a key pattern as JSON ("{ email: 1 }"). */
mk_query_t *mk_query_hint(mk_query_t *q, const char *hint);
mk_query_t *mk_query_comment(mk_query_t *q, const char *comment);
mk_query_t *mk_query_session(mk_query_t *q, mk_client_session_t *s);
/* Fails execution with DocumentNotFoundError when nothing matched (find, findOne*, update*,
 * delete*). */
mk_query_t *mk_query_or_fail(mk_query_t *q);
/* Options as Mongoose's setOptions: new, returnDocument ('before' | 'after'), upsert, sort,
 * projection, runValidators, context ('query'), strict, strictQuery, sanitizeFilter,
 * timestamps, overwriteDiscriminatorKey, lean, skip, limit, ... Unknown options are an
 * error naming them. */
int mk_query_set_options(mk_query_t *q, const char *json, const mk_arg_t *args, mk_error_t *err);
/* The options as set (borrowed until the next change of q). */
const bson_t *mk_query_get_options(const mk_query_t *q);

/* The filter (getFilter / getQuery) and the update as the user gave them (not cast); borrowed
 * until the next change of q. setQuery / setUpdate replace them. */
const bson_t *mk_query_get_filter(const mk_query_t *q);
const bson_t *mk_query_get_update(const mk_query_t *q);
int mk_query_set_filter(mk_query_t *q, const char *json, const mk_arg_t *args, mk_error_t *err);
int mk_query_set_update(mk_query_t *q, const char *json, const mk_arg_t *args, mk_error_t *err);
mk_client_session_t *mk_query_get_session(const mk_query_t *q);

/* ---- execution ---- */

/* What an execution produced, by op:
 *   find: docs/ndocs (hydrated, or raw in `lean`); findOne / findOneAnd*: doc (or NULL when
 *   nothing matched), lean: raw; countDocuments / estimatedDocumentCount: count; distinct:
 *   values (a BSON array); update* / replaceOne / delete*: the write counts. */
typedef struct mk_query_result {
    mk_query_op_t op;
    mk_doc_t **docs;
    size_t ndocs;
    mk_doc_t *doc;
    bson_t **lean; /* lean find: the raw documents (owned by the result); lean findOne: lean[0] */
    size_t nlean;
    int64_t count;
    bson_t *values;
    bool acknowledged;
    int64_t matched_count, modified_count, deleted_count, upserted_count;
    bool has_upserted_id;
    bson_value_t upserted_id;
} mk_query_result_t;
void mk_query_result_destroy(mk_query_result_t *r);

/* Runs the query (middleware, casting, the operation). MK_OK with *r filled (destroy it), or
 * an error (r left empty). */
int mk_query_exec(mk_query_t *q, mk_query_result_t *r, mk_error_t *err);
/* Conveniences: find -> documents; findOne* -> one document (NULL and no error when nothing
 * matched); count. The returned documents belong to the caller. */
int mk_query_docs(mk_query_t *q, mk_doc_t ***docs, size_t *n, mk_error_t *err);
mk_doc_t *mk_query_one(mk_query_t *q, mk_error_t *err);
int mk_query_count(mk_query_t *q, int64_t *count, mk_error_t *err);
/* Model.exists(filter): the matching _id (a new doc { _id }) or NULL. */
#define mk_exists(model, err, filter, ...)                                                         \
    mk_exists_args((model), (filter), MK_ARGS(__VA_ARGS__), (err))
bson_t *mk_exists_args(mk_model_t *model, const char *filter, const mk_arg_t *args,
                       mk_error_t *err);
/* explain: the engine's plan, unchanged (verbosity "queryPlanner", "executionStats",
 * "allPlansExecution"). reply: initialised. */
int mk_query_explain(mk_query_t *q, const char *verbosity, bson_t *reply, mk_error_t *err);

/* Streams a find batch by batch without loading the whole result. */
mk_cursor_t *mk_query_cursor(mk_query_t *q, mk_error_t *err);
/* The next document, hydrated whatever `lean` says (owned by the cursor until the next call),
 * or NULL at the end or on error (err->kind set). mk_cursor_next_bson gives the raw BSON. */
mk_doc_t *mk_cursor_next(mk_cursor_t *c, mk_error_t *err);
const bson_t *mk_cursor_next_bson(mk_cursor_t *c, mk_error_t *err);
/* Takes ownership of the document mk_cursor_next returned last. */
mk_doc_t *mk_cursor_take(mk_cursor_t *c);
void mk_cursor_destroy(mk_cursor_t *c);

/* ---- client sessions and transactions ---- */

mk_client_session_t *mk_conn_start_session(mk_conn_t *conn, mk_error_t *err);
void mk_client_session_end(mk_client_session_t *s);
int mk_client_session_start_transaction(mk_client_session_t *s, mk_error_t *err);
int mk_client_session_commit_transaction(mk_client_session_t *s, mk_error_t *err);
int mk_client_session_abort_transaction(mk_client_session_t *s, mk_error_t *err);
bool mk_client_session_in_transaction(const mk_client_session_t *s);
/* session.withTransaction(fn): starts a transaction, runs fn, commits; retries the whole
 * callback on TransientTransactionError and the commit on UnknownTransactionCommitResult, as
 * the drivers do (for up to 120 s). An error from fn aborts and is returned. */
typedef int (*mk_transaction_fn)(mk_client_session_t *s, void *ud, mk_error_t *err);
int mk_client_session_with_transaction(mk_client_session_t *s, mk_transaction_fn fn, void *ud,
                                       mk_error_t *err);
/* Same with a time limit in ms instead of the drivers' 120 s (<= 0: 120 s). */
int mk_client_session_with_transaction_timeout(mk_client_session_t *s, mk_transaction_fn fn,
                                               void *ud, int64_t timeout_ms, mk_error_t *err);
/* A document remembers the session it was loaded or saved with (doc.$session()). */
void mk_doc_set_session(mk_doc_t *doc, mk_client_session_t *s);
mk_client_session_t *mk_doc_session(const mk_doc_t *doc);

#ifdef __cplusplus
}
#endif
#endif
