/* The backend seam: one operation table, BSON in and BSON out, so that the ODM never learns
 * whether it talks to the embedded engine or to a MongoDB deployment through libmongoc.
 *
 * Conventions for every operation:
 *  - `s` is an optional session (NULL: none). Inside a transaction every operation that takes
 *    the session joins the transaction.
 *  - `opts` (may be NULL) holds MongoDB's own command options under their command names
 *    (sort, projection, skip, limit, batchSize, hint, maxTimeMS, upsert, arrayFilters,
 *    ordered, collation, comment, ...). A backend passes them through; whatever the server
 *    does not know is an error naming it, never silently dropped.
 *  - `reply` (when the operation has one) must be an initialised, empty bson_t and receives
 *    MongoDB's reply document, also on failure ({ ok: 0, errmsg, code, codeName }).
 *  - A command error (ok: 0) returns MK_ERR with err carrying MongoDB's code, codeName and
 *    message. Write errors (duplicate keys, ...) are not command errors: they stay in
 *    reply.writeErrors and the call returns MK_OK; mk_backend_first_write_error turns the
 *    first one into an mk_error_t.
 *  - Returned pointers are owned by the caller and freed with the matching _destroy/_end.
 *
 * A backend implements mk_backend_ops_t; callers use the mk_backend_* inline wrappers. */
#ifndef MK_BACKEND_H
#define MK_BACKEND_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <meerkat/engine.h>
#include <meerkat/error.h>

typedef struct mk_backend mk_backend_t;
typedef struct mk_backend_session mk_backend_session_t;
typedef struct mk_backend_cursor mk_backend_cursor_t;

/* Flags of update and delete. */
enum {
    MK_BE_MULTI = 1 << 0,   /* updateMany / deleteMany (default: the first match only) */
    MK_BE_REPLACE = 1 << 1, /* replaceOne: `update` is a whole replacement document */
};

typedef struct mk_backend_ops {
    const char *name; /* "embedded", "mongoc" */

    /* Writes. reply: { n, [nModified], [upserted: [{index, _id}]], [writeErrors: [...]] }. */
    int (*insert_many)(mk_backend_t *be, mk_backend_session_t *s, const char *db, const char *coll,
                       const bson_t *const *docs, size_t n, const bson_t *opts, bson_t *reply,
                       mk_error_t *err);
    /* updateOne (flags 0), updateMany (MK_BE_MULTI), replaceOne (MK_BE_REPLACE). As a driver,
     * an update without operators or a replacement with them is refused before sending
     * (pipeline-style updates are not supported yet). Statement options: upsert,
     * arrayFilters, hint, collation; the rest go to the command (ordered, maxTimeMS,
     * writeConcern, bypassDocumentValidation, comment, let). filter NULL: {}. */
    int (*update)(mk_backend_t *be, mk_backend_session_t *s, const char *db, const char *coll,
                  const bson_t *filter, const bson_t *update, unsigned flags, const bson_t *opts,
                  bson_t *reply, mk_error_t *err);
    /* Statement options: hint, collation; flags: MK_BE_MULTI or 0 (one). */
    int (*delete_)(mk_backend_t *be, mk_backend_session_t *s, const char *db, const char *coll,
                   const bson_t *filter, unsigned flags, const bson_t *opts, bson_t *reply,
                   mk_error_t *err);
    /* bulkWrite. ops: a BSON array of the driver's models, each { <kind>: { ... } }:
     *   insertOne { document }, updateOne / updateMany { filter, update, upsert, arrayFilters,
     *   hint, collation }, replaceOne { filter, replacement, upsert, hint, collation },
     *   deleteOne / deleteMany { filter, hint, collation }.
     * All models are checked before anything runs; consecutive models of one kind go to the
     * server as one command. opts: ordered (default true: stop at the first write error) and
     * command options (bypassDocumentValidation, comment, maxTimeMS, ...). reply:
     * { nInserted, nMatched, nModified, nDeleted, nUpserted, upserted: [{ index, _id }],
     *   [writeErrors: [{ index, code, errmsg, ... }]], ok: 1 } with indexes into ops.
     * A command error stops the bulk write; what ran before it stays applied (as a driver). */
    int (*bulk_write)(mk_backend_t *be, mk_backend_session_t *s, const char *db, const char *coll,
                      const bson_t *ops, const bson_t *opts, bson_t *reply, mk_error_t *err);
    /* findAndModify. opts: sort, update | remove, new, upsert, fields, arrayFilters, hint.
     * `value` (initialised, empty) receives the document; *found says whether there was one
     * (MongoDB's `value: null` is found = false). reply may be NULL. */
    int (*find_and_modify)(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                           const char *coll, const bson_t *query, const bson_t *opts, bson_t *value,
                           bool *found, bson_t *reply, mk_error_t *err);

    /* Reads. find opts: sort, projection, skip, limit, batchSize, hint, maxTimeMS, ... */
    mk_backend_cursor_t *(*find)(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                 const char *coll, const bson_t *filter, const bson_t *opts,
                                 mk_error_t *err);
    /* pipeline: a BSON array. opts: allowDiskUse, batchSize (cursor.batchSize), hint, ... */
    mk_backend_cursor_t *(*aggregate)(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                      const char *coll, const bson_t *pipeline, const bson_t *opts,
                                      mk_error_t *err);
    /* opts: skip, limit, hint, maxTimeMS, collation. */
    int (*count_documents)(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                           const char *coll, const bson_t *filter, const bson_t *opts,
                           int64_t *count, mk_error_t *err);
    int (*estimated_count)(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                           const char *coll, const bson_t *opts, int64_t *count, mk_error_t *err);
    /* `values` (initialised, empty) receives the distinct values as an array ("0", "1", ...).
     * filter may be NULL. */
    int (*distinct)(mk_backend_t *be, mk_backend_session_t *s, const char *db, const char *coll,
                    const char *key, const bson_t *filter, const bson_t *opts, bson_t *values,
                    mk_error_t *err);

    /* Cursors: 1 = *doc is the next document (borrowed until the next call), 0 = end,
     * MK_ERR / MK_ENOMEM = error. Further batches are fetched transparently. destroy kills the
     * server-side cursor when it is still open. */
    int (*cursor_next)(mk_backend_cursor_t *c, const bson_t **doc, mk_error_t *err);
    void (*cursor_destroy)(mk_backend_cursor_t *c);

    /* Indexes and namespaces. specs: a BSON array of { key, name, unique, ... }. */
    int (*create_indexes)(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                          const char *coll, const bson_t *specs, const bson_t *opts, bson_t *reply,
                          mk_error_t *err);
    mk_backend_cursor_t *(*list_indexes)(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                         const char *coll, mk_error_t *err);
    /* name: an index name, or "*" for all but _id_. */
    int (*drop_indexes)(mk_backend_t *be, mk_backend_session_t *s, const char *db, const char *coll,
                        const char *name, bson_t *reply, mk_error_t *err);
    /* filter may be NULL; opts: nameOnly, ... */
    mk_backend_cursor_t *(*list_collections)(mk_backend_t *be, mk_backend_session_t *s,
                                             const char *db, const bson_t *filter,
                                             const bson_t *opts, mk_error_t *err);
    int (*drop_collection)(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                           const char *coll, bson_t *reply, mk_error_t *err);
    int (*drop_database)(mk_backend_t *be, mk_backend_session_t *s, const char *db, bson_t *reply,
                         mk_error_t *err);

    /* Sessions and transactions. start_transaction opts: readConcern, writeConcern,
     * maxCommitTimeMS (the embedded engine is serializable and durable; it accepts and
     * ignores them). */
    mk_backend_session_t *(*session_start)(mk_backend_t *be, mk_error_t *err);
    void (*session_end)(mk_backend_session_t *s);
    int (*start_transaction)(mk_backend_session_t *s, const bson_t *opts, mk_error_t *err);
    int (*commit_transaction)(mk_backend_session_t *s, mk_error_t *err);
    int (*abort_transaction)(mk_backend_session_t *s, mk_error_t *err);
    bool (*in_transaction)(const mk_backend_session_t *s);

    /* explain: `command` is the command to explain ({ find: ..., filter: ... });
     * verbosity: "queryPlanner", "executionStats" or "allPlansExecution" (NULL: the first). */
    int (*explain)(mk_backend_t *be, mk_backend_session_t *s, const char *db, const bson_t *command,
                   const char *verbosity, bson_t *reply, mk_error_t *err);
    /* The escape hatch: any database command, as is. */
    int (*run_command)(mk_backend_t *be, mk_backend_session_t *s, const char *db, const bson_t *cmd,
                       bson_t *reply, mk_error_t *err);

    /* Frees the backend (not what it borrows). */
    void (*destroy)(mk_backend_t *be);
} mk_backend_ops_t;

struct mk_backend {
    const mk_backend_ops_t *ops;
    void *impl;
};

struct mk_backend_session {
    mk_backend_t *be;
    void *impl;
};

/* A cursor is used by one thread and must be destroyed before its session ends. */
struct mk_backend_cursor {
    mk_backend_t *be;
    void *impl;
};

/* ---- constructors ---- */

/* The embedded engine as a backend. The engine is borrowed: it must outlive the backend. */
mk_backend_t *mk_backend_embedded_new(mk_engine_t *eng, mk_error_t *err);

static inline void mk_backend_destroy(mk_backend_t *be)
{
    if (be) be->ops->destroy(be);
}

/* ---- helpers on replies (backend-independent) ---- */

/* Turns reply.writeErrors[0] into err (code, codeName, errmsg) and returns MK_ERR; MK_OK when
 * the reply has no write errors. A writeConcernError is reported the same way. */
int mk_backend_first_write_error(const bson_t *reply, mk_error_t *err);

/* After insert_many of n documents: inserted[i] says whether document i was inserted (it
 * was unless a write error names index i or, when ordered, an earlier index). Returns the
 * number inserted. A failed command (ok: 0) counts as nothing inserted. */
size_t mk_backend_inserted(const bson_t *reply, size_t n, bool ordered, bool *inserted);

/* ---- the calls ---- */

static inline int mk_backend_insert_many(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                         const char *coll, const bson_t *const *docs, size_t n,
                                         const bson_t *opts, bson_t *reply, mk_error_t *err)
{
    return be->ops->insert_many(be, s, db, coll, docs, n, opts, reply, err);
}

static inline int mk_backend_update(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                    const char *coll, const bson_t *filter, const bson_t *update,
                                    unsigned flags, const bson_t *opts, bson_t *reply,
                                    mk_error_t *err)
{
    return be->ops->update(be, s, db, coll, filter, update, flags, opts, reply, err);
}

static inline int mk_backend_delete(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                    const char *coll, const bson_t *filter, unsigned flags,
                                    const bson_t *opts, bson_t *reply, mk_error_t *err)
{
    return be->ops->delete_(be, s, db, coll, filter, flags, opts, reply, err);
}

static inline int mk_backend_bulk_write(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                        const char *coll, const bson_t *ops, const bson_t *opts,
                                        bson_t *reply, mk_error_t *err)
{
    return be->ops->bulk_write(be, s, db, coll, ops, opts, reply, err);
}

static inline int mk_backend_find_and_modify(mk_backend_t *be, mk_backend_session_t *s,
                                             const char *db, const char *coll, const bson_t *query,
                                             const bson_t *opts, bson_t *value, bool *found,
                                             bson_t *reply, mk_error_t *err)
{
    return be->ops->find_and_modify(be, s, db, coll, query, opts, value, found, reply, err);
}

static inline mk_backend_cursor_t *mk_backend_find(mk_backend_t *be, mk_backend_session_t *s,
                                                   const char *db, const char *coll,
                                                   const bson_t *filter, const bson_t *opts,
                                                   mk_error_t *err)
{
    return be->ops->find(be, s, db, coll, filter, opts, err);
}

static inline mk_backend_cursor_t *mk_backend_aggregate(mk_backend_t *be, mk_backend_session_t *s,
                                                        const char *db, const char *coll,
                                                        const bson_t *pipeline, const bson_t *opts,
                                                        mk_error_t *err)
{
    return be->ops->aggregate(be, s, db, coll, pipeline, opts, err);
}

static inline int mk_backend_count_documents(mk_backend_t *be, mk_backend_session_t *s,
                                             const char *db, const char *coll, const bson_t *filter,
                                             const bson_t *opts, int64_t *count, mk_error_t *err)
{
    return be->ops->count_documents(be, s, db, coll, filter, opts, count, err);
}

static inline int mk_backend_estimated_count(mk_backend_t *be, mk_backend_session_t *s,
                                             const char *db, const char *coll, const bson_t *opts,
                                             int64_t *count, mk_error_t *err)
{
    return be->ops->estimated_count(be, s, db, coll, opts, count, err);
}

static inline int mk_backend_distinct(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                      const char *coll, const char *key, const bson_t *filter,
                                      const bson_t *opts, bson_t *values, mk_error_t *err)
{
    return be->ops->distinct(be, s, db, coll, key, filter, opts, values, err);
}

static inline int mk_backend_cursor_next(mk_backend_cursor_t *c, const bson_t **doc,
                                         mk_error_t *err)
{
    return c->be->ops->cursor_next(c, doc, err);
}

static inline void mk_backend_cursor_destroy(mk_backend_cursor_t *c)
{
    if (c) c->be->ops->cursor_destroy(c);
}

static inline int mk_backend_create_indexes(mk_backend_t *be, mk_backend_session_t *s,
                                            const char *db, const char *coll, const bson_t *specs,
                                            const bson_t *opts, bson_t *reply, mk_error_t *err)
{
    return be->ops->create_indexes(be, s, db, coll, specs, opts, reply, err);
}

static inline mk_backend_cursor_t *mk_backend_list_indexes(mk_backend_t *be,
                                                           mk_backend_session_t *s, const char *db,
                                                           const char *coll, mk_error_t *err)
{
    return be->ops->list_indexes(be, s, db, coll, err);
}

static inline int mk_backend_drop_indexes(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                          const char *coll, const char *name, bson_t *reply,
                                          mk_error_t *err)
{
    return be->ops->drop_indexes(be, s, db, coll, name, reply, err);
}

static inline mk_backend_cursor_t *mk_backend_list_collections(mk_backend_t *be,
                                                               mk_backend_session_t *s,
                                                               const char *db, const bson_t *filter,
                                                               const bson_t *opts, mk_error_t *err)
{
    return be->ops->list_collections(be, s, db, filter, opts, err);
}

static inline int mk_backend_drop_collection(mk_backend_t *be, mk_backend_session_t *s,
                                             const char *db, const char *coll, bson_t *reply,
                                             mk_error_t *err)
{
    return be->ops->drop_collection(be, s, db, coll, reply, err);
}

static inline int mk_backend_drop_database(mk_backend_t *be, mk_backend_session_t *s,
                                           const char *db, bson_t *reply, mk_error_t *err)
{
    return be->ops->drop_database(be, s, db, reply, err);
}

static inline mk_backend_session_t *mk_backend_session_start(mk_backend_t *be, mk_error_t *err)
{
    return be->ops->session_start(be, err);
}

/* Ends the session; an open transaction is aborted. */
static inline void mk_backend_session_end(mk_backend_session_t *s)
{
    if (s) s->be->ops->session_end(s);
}

static inline int mk_backend_start_transaction(mk_backend_session_t *s, const bson_t *opts,
                                               mk_error_t *err)
{
    return s->be->ops->start_transaction(s, opts, err);
}

static inline int mk_backend_commit_transaction(mk_backend_session_t *s, mk_error_t *err)
{
    return s->be->ops->commit_transaction(s, err);
}

static inline int mk_backend_abort_transaction(mk_backend_session_t *s, mk_error_t *err)
{
    return s->be->ops->abort_transaction(s, err);
}

static inline bool mk_backend_in_transaction(const mk_backend_session_t *s)
{
    return s->be->ops->in_transaction(s);
}

static inline int mk_backend_explain(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                     const bson_t *command, const char *verbosity, bson_t *reply,
                                     mk_error_t *err)
{
    return be->ops->explain(be, s, db, command, verbosity, reply, err);
}

static inline int mk_backend_run_command(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                         const bson_t *cmd, bson_t *reply, mk_error_t *err)
{
    return be->ops->run_command(be, s, db, cmd, reply, err);
}

#endif
