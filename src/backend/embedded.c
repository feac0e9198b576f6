/* The backend seam over the embedded engine: every operation becomes the MongoDB command a
 * driver would send, run by mk_engine_command (or mk_session_command inside a session). */
#include "backend/backend.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MongoDB's maxWriteBatchSize and the message size drivers split inserts at. */
#define WRITE_BATCH_MAX 100000
#define WRITE_BYTES_MAX (3 * MK_MAX_BSON_SIZE)

typedef struct embedded {
    mk_engine_t *eng;
} embedded_t;

static mk_engine_t *engine_of(mk_backend_t *be)
{
    return ((embedded_t *)be->impl)->eng;
}

static mk_session_t *session_of(mk_backend_session_t *s)
{
    return s ? s->impl : NULL;
}

static int run(mk_engine_t *eng, mk_session_t *s, const char *db, const bson_t *cmd, bson_t *reply,
               mk_error_t *err)
{
    return s ? mk_session_command(s, db, cmd, reply, err)
             : mk_engine_command(eng, db, cmd, reply, err);
}

/* Runs cmd into reply, or into a scratch reply when the caller wants none. */
static int run_opt_reply(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                         const bson_t *cmd, bson_t *reply, mk_error_t *err)
{
    if (reply) return run(engine_of(be), session_of(s), db, cmd, reply, err);
    bson_t scratch = BSON_INITIALIZER;
    int rc = run(engine_of(be), session_of(s), db, cmd, &scratch, err);
    bson_destroy(&scratch);
    return rc;
}

static bool in_list(const char *key, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(key, *list) == 0) return true;
    return false;
}

/* Copies opts into cmd, except the keys of `skip` (placed elsewhere by the caller). A key the
 * operation sets itself (`reserved`) is an error rather than a duplicate field. */
static int append_opts(bson_t *cmd, const bson_t *opts, const char *const *skip,
                       const char *const *reserved, mk_error_t *err)
{
    if (!opts) return MK_OK;
    bson_iter_t it;
    if (!bson_iter_init(&it, opts))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "options are not valid BSON");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (in_list(k, reserved))
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "option '%s' is set by the operation itself and cannot be "
                                 "given in the options",
                                 k);
        if (in_list(k, skip)) continue;
        if (!bson_append_iter(cmd, NULL, 0, &it)) return mk_error_nomem(err);
    }
    return MK_OK;
}

/* Appends the keys of `keys` found in opts to doc (the per-statement options). */
static int append_selected(bson_t *doc, const bson_t *opts, const char *const *keys,
                           mk_error_t *err)
{
    bson_iter_t it;
    if (!opts || !bson_iter_init(&it, opts)) return MK_OK;
    while (bson_iter_next(&it))
        if (in_list(bson_iter_key(&it), keys) && !bson_append_iter(doc, NULL, 0, &it))
            return mk_error_nomem(err);
    return MK_OK;
}

static int check_name(const char *what, const char *name, mk_error_t *err)
{
    if (!name) return mk_error_setc(err, MK_CODE_BAD_VALUE, "%s name must not be NULL", what);
    return MK_OK;
}

static bool get_bool_opt(const bson_t *opts, const char *key, bool dflt)
{
    bson_iter_t it;
    if (opts && bson_iter_init_find(&it, opts, key)) return bson_iter_as_bool(&it);
    return dflt;
}

/* ------------------------------------------------------------------------------ cursors */

typedef struct ecursor {
    bson_t doc; /* view of the current document inside batch (first: bson_t wants alignment) */
    bson_iter_t it;
    uint8_t *batch; /* the reply holding the current batch, taken over from the command */
    mk_backend_cursor_t pub;
    mk_engine_t *eng;
    mk_session_t *s;
    char *db, *coll; /* from the reply's ns, for getMore and killCursors */
    int64_t id;      /* 0: the server side is exhausted */
    int64_t batch_size;
    bool failed;
    mk_error_t error; /* the failure repeated by later calls */
} ecursor_t;

/* Takes reply.cursor.{id, ns, <field>} into c. c->batch takes over the reply's buffer rather
 * than copying it: a batch is up to 16 MB, and a copy of each (with the page faults of a fresh
 * buffer that size) cost lean finds more than the rest of their work. reply is destroyed. */
static int load_batch(ecursor_t *c, bson_t *reply, const char *field, mk_error_t *err)
{
    uint32_t rlen = 0;
    uint8_t *buf = bson_destroy_with_steal(reply, true, &rlen);
    if (!buf) return mk_error_nomem(err);
    bson_free(c->batch);
    c->batch = buf;
    c->it = (bson_iter_t){0}; /* nothing to iterate until the batch is found */
    bson_t view;
    if (!bson_init_static(&view, buf, rlen))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "reply is not valid BSON");
    bson_iter_t cur, f;
    if (!bson_iter_init_find(&cur, &view, "cursor") || !BSON_ITER_HOLDS_DOCUMENT(&cur))
        return mk_error_setc(err, MK_CODE_INTERNAL, "reply has no cursor document");
    bson_t cdoc;
    const uint8_t *data;
    uint32_t len;
    bson_iter_document(&cur, &len, &data);
    if (!bson_init_static(&cdoc, data, len))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "reply cursor is not valid BSON");
    if (!bson_iter_init_find(&f, &cdoc, "id") || !BSON_ITER_HOLDS_NUMBER(&f))
        return mk_error_setc(err, MK_CODE_INTERNAL, "reply cursor has no id");
    c->id = bson_iter_as_int64(&f);
    if (!c->db) {
        if (!bson_iter_init_find(&f, &cdoc, "ns") || !BSON_ITER_HOLDS_UTF8(&f))
            return mk_error_setc(err, MK_CODE_INTERNAL, "reply cursor has no ns");
        const char *ns = bson_iter_utf8(&f, NULL);
        const char *dot = strchr(ns, '.');
        if (!dot) return mk_error_setc(err, MK_CODE_INTERNAL, "reply cursor ns '%s'", ns);
        c->db = bson_strndup(ns, (size_t)(dot - ns));
        c->coll = bson_strdup(dot + 1);
    }
    bson_iter_t b;
    if (!bson_iter_init_find(&b, &cdoc, field) || !BSON_ITER_HOLDS_ARRAY(&b) ||
        !bson_iter_recurse(&b, &c->it))
        return mk_error_setc(err, MK_CODE_INTERNAL, "reply cursor has no %s", field);
    return MK_OK;
}

static void ecursor_free(ecursor_t *c)
{
    bson_free(c->batch);
    bson_free(c->db);
    bson_free(c->coll);
    free(c);
}

/* A cursor over the reply of a command that returns { cursor: { firstBatch, id, ns } }. */
static mk_backend_cursor_t *cursor_from(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                        const bson_t *cmd, int64_t batch_size, mk_error_t *err)
{
    /* aligned_alloc: bson_t asks for more alignment than malloc promises */
    size_t align = alignof(ecursor_t), size = (sizeof(ecursor_t) + align - 1) / align * align;
    ecursor_t *c = aligned_alloc(align, size);
    if (!c) {
        mk_error_nomem(err);
        return NULL;
    }
    memset(c, 0, sizeof *c);
    c->pub.be = be;
    c->pub.impl = c;
    c->eng = engine_of(be);
    c->s = session_of(s);
    c->batch_size = batch_size;
    bson_t reply = BSON_INITIALIZER;
    int rc = run(c->eng, c->s, db, cmd, &reply, err);
    if (rc == MK_OK)
        rc = load_batch(c, &reply, "firstBatch", err);
    else
        bson_destroy(&reply);
    if (rc != MK_OK) {
        ecursor_free(c); /* a cursor the engine did open is reaped by its idle timeout */
        return NULL;
    }
    return &c->pub;
}

static int fail_cursor(ecursor_t *c, int rc, mk_error_t *err)
{
    c->failed = true;
    c->id = 0; /* an error closes the cursor on the server */
    if (err)
        c->error = *err;
    else
        mk_error_setc(&c->error, MK_CODE_INTERNAL, "cursor failed");
    return rc;
}

static int get_more(ecursor_t *c, mk_error_t *err)
{
    bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    BSON_APPEND_INT64(&cmd, "getMore", c->id);
    BSON_APPEND_UTF8(&cmd, "collection", c->coll);
    if (c->batch_size > 0) BSON_APPEND_INT64(&cmd, "batchSize", c->batch_size);
    int rc = run(c->eng, c->s, c->db, &cmd, &reply, err);
    if (rc == MK_OK)
        rc = load_batch(c, &reply, "nextBatch", err);
    else
        bson_destroy(&reply);
    bson_destroy(&cmd);
    return rc;
}

static int embedded_cursor_next(mk_backend_cursor_t *pub, const bson_t **doc, mk_error_t *err)
{
    ecursor_t *c = pub->impl;
    *doc = NULL;
    if (c->failed) {
        if (err) *err = c->error;
        return MK_ERR;
    }
    for (;;) {
        if (bson_iter_next(&c->it)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&c->it))
                return fail_cursor(
                    c, mk_error_setc(err, MK_CODE_INTERNAL, "cursor batch holds a non-document"),
                    err);
            const uint8_t *data;
            uint32_t len;
            bson_iter_document(&c->it, &len, &data);
            if (!bson_init_static(&c->doc, data, len))
                return fail_cursor(
                    c, mk_error_setc(err, MK_CODE_INVALID_BSON, "cursor document is invalid"), err);
            *doc = &c->doc;
            return 1;
        }
        if (c->id == 0) return 0;
        int rc = get_more(c, err);
        if (rc != MK_OK) return fail_cursor(c, rc, err);
    }
}

static void embedded_cursor_destroy(mk_backend_cursor_t *pub)
{
    ecursor_t *c = pub->impl;
    if (c->id != 0) {
        bson_t cmd = BSON_INITIALIZER, ids, reply = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&cmd, "killCursors", c->coll);
        bson_append_array_begin(&cmd, "cursors", -1, &ids);
        BSON_APPEND_INT64(&ids, "0", c->id);
        bson_append_array_end(&cmd, &ids);
        run(c->eng, c->s, c->db, &cmd, &reply, NULL);
        bson_destroy(&cmd);
        bson_destroy(&reply);
    }
    ecursor_free(c);
}

/* ------------------------------------------------------------------------------ writes */

/* Appends reply.writeErrors to errors, their indexes shifted by `offset` (the position of
 * the command's first statement in the caller's list). */
static void merge_write_errors(const bson_t *reply, size_t offset, bson_t *errors,
                               uint32_t *nerrors)
{
    bson_iter_t it, we;
    if (!bson_iter_init_find(&it, reply, "writeErrors") || !bson_iter_recurse(&it, &we)) return;
    char key[16];
    const char *k;
    while (bson_iter_next(&we)) {
        bson_t e, src;
        const uint8_t *data;
        uint32_t len;
        if (!BSON_ITER_HOLDS_DOCUMENT(&we)) continue;
        bson_iter_document(&we, &len, &data);
        if (!bson_init_static(&src, data, len)) continue;
        bson_iter_t f;
        int64_t index = bson_iter_init_find(&f, &src, "index") ? bson_iter_as_int64(&f) : 0;
        bson_uint32_to_string((*nerrors)++, &k, key, sizeof key);
        bson_append_document_begin(errors, k, -1, &e);
        BSON_APPEND_INT32(&e, "index", (int32_t)(index + (int64_t)offset));
        bson_copy_to_excluding_noinit(&src, &e, "index", NULL);
        bson_append_document_end(errors, &e);
    }
}

/* Inserts docs[from, to) and merges the reply into n / write errors (indexes made absolute). */
static int insert_chunk(mk_backend_t *be, mk_backend_session_t *s, const char *db, const char *coll,
                        const bson_t *const *docs, size_t from, size_t to, const bson_t *opts,
                        bson_t *reply, int64_t *n, bson_t *errors, uint32_t *nerrors,
                        mk_error_t *err)
{
    static const char *const reserved[] = {"insert", "documents", NULL};
    bson_t cmd = BSON_INITIALIZER, arr;
    BSON_APPEND_UTF8(&cmd, "insert", coll);
    bson_append_array_begin(&cmd, "documents", -1, &arr);
    char key[16];
    const char *k;
    for (size_t i = from; i < to; i++) {
        bson_uint32_to_string((uint32_t)(i - from), &k, key, sizeof key);
        if (!bson_append_document(&arr, k, -1, docs[i])) {
            bson_destroy(&cmd);
            return mk_error_nomem(err);
        }
    }
    bson_append_array_end(&cmd, &arr);
    int rc = append_opts(&cmd, opts, NULL, reserved, err);
    if (rc == MK_OK) rc = run(engine_of(be), session_of(s), db, &cmd, reply, err);
    bson_destroy(&cmd);
    if (rc != MK_OK) return rc;
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply, "n")) *n += bson_iter_as_int64(&it);
    merge_write_errors(reply, from, errors, nerrors);
    return MK_OK;
}

static int embedded_insert_many(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                const char *coll, const bson_t *const *docs, size_t n,
                                const bson_t *opts, bson_t *reply, mk_error_t *err)
{
    if (check_name("collection", coll, err) != MK_OK) return MK_ERR;
    if (n > 0 && !docs) return mk_error_setc(err, MK_CODE_BAD_VALUE, "documents is NULL");
    for (size_t i = 0; i < n; i++)
        if (!docs[i]) return mk_error_setc(err, MK_CODE_BAD_VALUE, "document %zu is NULL", i);
    bool ordered = get_bool_opt(opts, "ordered", true);
    int64_t total = 0;
    uint32_t nerrors = 0;
    bson_t errors = BSON_INITIALIZER;
    size_t from = 0, chunks = 0;
    int rc = MK_OK;
    do { /* chunks as a driver splits them; n == 0 goes to the engine for its error */
        size_t to = from, bytes = 0;
        while (to < n && to - from < WRITE_BATCH_MAX &&
               (to == from || bytes + docs[to]->len <= WRITE_BYTES_MAX))
            bytes += docs[to++]->len;
        bson_reinit(reply);
        rc = insert_chunk(be, s, db, coll, docs, from, to, opts, reply, &total, &errors, &nerrors,
                          err);
        chunks++;
        from = to;
    } while (rc == MK_OK && from < n && !(ordered && nerrors > 0));
    if (rc == MK_OK && chunks > 1) { /* one reply for all the chunks */
        bson_reinit(reply);
        if (total <= INT32_MAX)
            BSON_APPEND_INT32(reply, "n", (int32_t)total);
        else
            BSON_APPEND_INT64(reply, "n", total);
        if (nerrors) BSON_APPEND_ARRAY(reply, "writeErrors", &errors);
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    }
    bson_destroy(&errors);
    return rc;
}

/* The check a driver makes before sending: an update needs operators, a replacement none. */
static int check_update_doc(const bson_t *update, unsigned flags, mk_error_t *err)
{
    bson_iter_t it;
    if (!update || !bson_iter_init(&it, update))
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "update document is missing or invalid");
    bool has = bson_iter_next(&it);
    bool op = has && bson_iter_key(&it)[0] == '$';
    if (flags & MK_BE_REPLACE) {
        if (flags & MK_BE_MULTI)
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "a replacement applies to one document only");
        if (op)
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "Replacement document must not contain atomic operators "
                                 "(found '%s')",
                                 bson_iter_key(&it));
        return MK_OK;
    }
    if (!op)
        return mk_error_setc(
            err, MK_CODE_BAD_VALUE, "Update document requires atomic operators%s%s%s",
            has ? " (found '" : "", has ? bson_iter_key(&it) : "", has ? "')" : "");
    return MK_OK;
}

static int embedded_update(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                           const char *coll, const bson_t *filter, const bson_t *update,
                           unsigned flags, const bson_t *opts, bson_t *reply, mk_error_t *err)
{
    static const char *const stmt_keys[] = {"upsert", "arrayFilters", "hint", "collation", NULL};
    static const char *const reserved[] = {"update", "updates", "q", "u", "multi", NULL};
    if (check_name("collection", coll, err) != MK_OK) return MK_ERR;
    if (check_update_doc(update, flags, err) != MK_OK) return MK_ERR;
    bson_t cmd = BSON_INITIALIZER, arr, stmt, empty = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "update", coll);
    bson_append_array_begin(&cmd, "updates", -1, &arr);
    bson_append_document_begin(&arr, "0", 1, &stmt);
    BSON_APPEND_DOCUMENT(&stmt, "q", filter ? filter : &empty);
    BSON_APPEND_DOCUMENT(&stmt, "u", update);
    BSON_APPEND_BOOL(&stmt, "multi", (flags & MK_BE_MULTI) != 0);
    int rc = append_selected(&stmt, opts, stmt_keys, err);
    bson_append_document_end(&arr, &stmt);
    bson_append_array_end(&cmd, &arr);
    if (rc == MK_OK) rc = append_opts(&cmd, opts, stmt_keys, reserved, err);
    if (rc == MK_OK) rc = run_opt_reply(be, s, db, &cmd, reply, err);
    bson_destroy(&cmd);
    return rc;
}

static int embedded_delete(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                           const char *coll, const bson_t *filter, unsigned flags,
                           const bson_t *opts, bson_t *reply, mk_error_t *err)
{
    static const char *const stmt_keys[] = {"hint", "collation", NULL};
    static const char *const reserved[] = {"delete", "deletes", "q", "limit", NULL};
    if (check_name("collection", coll, err) != MK_OK) return MK_ERR;
    if (flags & MK_BE_REPLACE)
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "MK_BE_REPLACE does not apply to delete");
    bson_t cmd = BSON_INITIALIZER, arr, stmt, empty = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "delete", coll);
    bson_append_array_begin(&cmd, "deletes", -1, &arr);
    bson_append_document_begin(&arr, "0", 1, &stmt);
    BSON_APPEND_DOCUMENT(&stmt, "q", filter ? filter : &empty);
    BSON_APPEND_INT32(&stmt, "limit", (flags & MK_BE_MULTI) ? 0 : 1);
    int rc = append_selected(&stmt, opts, stmt_keys, err);
    bson_append_document_end(&arr, &stmt);
    bson_append_array_end(&cmd, &arr);
    if (rc == MK_OK) rc = append_opts(&cmd, opts, stmt_keys, reserved, err);
    if (rc == MK_OK) rc = run_opt_reply(be, s, db, &cmd, reply, err);
    bson_destroy(&cmd);
    return rc;
}

/* -------------------------------------------------------------------------- bulk write */

typedef enum { BW_INSERT, BW_UPDATE, BW_DELETE } bw_cmd_t;

typedef struct bw_model {
    const char *name;
    bw_cmd_t cmd;
    unsigned flags;
    const char *const *fields; /* what the model accepts */
} bw_model_t;

static const char *const insert_fields[] = {"document", NULL};
static const char *const update_fields[] = {"filter", "update",    "upsert", "arrayFilters",
                                            "hint",   "collation", NULL};
static const char *const replace_fields[] = {"filter", "replacement", "upsert",
                                             "hint",   "collation",   NULL};
static const char *const delete_fields[] = {"filter", "hint", "collation", NULL};

static const bw_model_t bw_models[] = {
    {"insertOne", BW_INSERT, 0, insert_fields},
    {"updateOne", BW_UPDATE, 0, update_fields},
    {"updateMany", BW_UPDATE, MK_BE_MULTI, update_fields},
    {"replaceOne", BW_UPDATE, MK_BE_REPLACE, replace_fields},
    {"deleteOne", BW_DELETE, 0, delete_fields},
    {"deleteMany", BW_DELETE, MK_BE_MULTI, delete_fields},
};

static const char *const bw_command[] = {"insert", "update", "delete"};
static const char *const bw_list[] = {"documents", "updates", "deletes"};

typedef struct bw_item {
    const bw_model_t *model;
    const uint8_t *spec; /* the model's document inside ops */
    uint32_t len;
} bw_item_t;

/* The sub-document `key` of spec; false when missing or not a document. */
static bool sub_doc(const bson_t *spec, const char *key, bson_t *out)
{
    bson_iter_t it;
    const uint8_t *data;
    uint32_t len;
    if (!bson_iter_init_find(&it, spec, key) || !BSON_ITER_HOLDS_DOCUMENT(&it)) return false;
    bson_iter_document(&it, &len, &data);
    return bson_init_static(out, data, len);
}

/* Checks model i, as a driver does before sending anything. */
static int bw_check(bson_iter_t *op, uint32_t i, bw_item_t *item, mk_error_t *err)
{
    bson_iter_t m, f;
    if (!BSON_ITER_HOLDS_DOCUMENT(op) || !bson_iter_recurse(op, &m) || !bson_iter_next(&m))
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "bulk write operation %u is not a document { <kind>: { ... } }", i);
    const char *kind = bson_iter_key(&m);
    item->model = NULL;
    for (size_t j = 0; j < sizeof bw_models / sizeof bw_models[0]; j++)
        if (strcmp(kind, bw_models[j].name) == 0) item->model = &bw_models[j];
    if (!item->model)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "unknown bulk write operation '%s' (operation %u)", kind, i);
    if (!BSON_ITER_HOLDS_DOCUMENT(&m))
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "bulk write operation %u: '%s' must be a "
                             "document",
                             i, kind);
    bson_iter_document(&m, &item->len, &item->spec);
    if (bson_iter_next(&m))
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "bulk write operation %u holds more than one operation", i);
    bson_t spec, doc;
    if (!bson_init_static(&spec, item->spec, item->len) || !bson_iter_init(&f, &spec))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "bulk write operation %u is invalid", i);
    while (bson_iter_next(&f))
        if (!in_list(bson_iter_key(&f), item->model->fields))
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "bulk write operation %u: unknown field '%s' in %s", i,
                                 bson_iter_key(&f), kind);
    const bw_model_t *md = item->model;
    if (md->cmd == BW_INSERT) {
        if (!sub_doc(&spec, "document", &doc))
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "bulk write operation %u: insertOne needs a document", i);
        return MK_OK;
    }
    if (!sub_doc(&spec, "filter", &doc))
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "bulk write operation %u: %s needs a filter document", i, kind);
    if (md->cmd == BW_DELETE) return MK_OK;
    const char *u = (md->flags & MK_BE_REPLACE) ? "replacement" : "update";
    if (bson_iter_init_find(&f, &spec, u) && BSON_ITER_HOLDS_ARRAY(&f))
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "bulk write operation %u: pipeline-style updates are not "
                             "supported yet",
                             i);
    if (!sub_doc(&spec, u, &doc))
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "bulk write operation %u: %s needs an %s document", i, kind, u);
    return check_update_doc(&doc, md->flags, err);
}

/* Appends the server statement of a (checked) model to the command's list. */
static int bw_append(bson_t *list, uint32_t idx, const bw_item_t *item, mk_error_t *err)
{
    static const char *const upd_opts[] = {"upsert", "arrayFilters", "hint", "collation", NULL};
    static const char *const del_opts[] = {"hint", "collation", NULL};
    char key[16];
    const char *k;
    bson_uint32_to_string(idx, &k, key, sizeof key);
    bson_t spec, doc, st;
    bson_init_static(&spec, item->spec, item->len);
    const bw_model_t *md = item->model;
    if (md->cmd == BW_INSERT) {
        sub_doc(&spec, "document", &doc);
        return bson_append_document(list, k, -1, &doc) ? MK_OK : mk_error_nomem(err);
    }
    bson_append_document_begin(list, k, -1, &st);
    sub_doc(&spec, "filter", &doc);
    BSON_APPEND_DOCUMENT(&st, "q", &doc);
    int rc;
    if (md->cmd == BW_UPDATE) {
        sub_doc(&spec, (md->flags & MK_BE_REPLACE) ? "replacement" : "update", &doc);
        BSON_APPEND_DOCUMENT(&st, "u", &doc);
        BSON_APPEND_BOOL(&st, "multi", (md->flags & MK_BE_MULTI) != 0);
        rc = append_selected(&st, &spec, upd_opts, err);
    } else {
        BSON_APPEND_INT32(&st, "limit", (md->flags & MK_BE_MULTI) ? 0 : 1);
        rc = append_selected(&st, &spec, del_opts, err);
    }
    bson_append_document_end(list, &st);
    return rc;
}

typedef struct bw_totals {
    int64_t inserted, matched, modified, deleted, upserted_n;
    bson_t upserted, errors;
    uint32_t nerrors;
} bw_totals_t;

/* Adds one command's reply (statements from `offset` on) to the totals. */
static void bw_merge(bw_totals_t *t, bw_cmd_t cmd, const bson_t *reply, size_t offset)
{
    bson_iter_t it, up, f;
    int64_t n = bson_iter_init_find(&it, reply, "n") ? bson_iter_as_int64(&it) : 0;
    if (cmd == BW_INSERT) t->inserted += n;
    if (cmd == BW_DELETE) t->deleted += n;
    if (cmd == BW_UPDATE) {
        int64_t ups = 0;
        if (bson_iter_init_find(&it, reply, "upserted") && bson_iter_recurse(&it, &up)) {
            while (bson_iter_next(&up)) {
                bson_t src, dst;
                const uint8_t *data;
                uint32_t len;
                if (!BSON_ITER_HOLDS_DOCUMENT(&up)) continue;
                bson_iter_document(&up, &len, &data);
                if (!bson_init_static(&src, data, len)) continue;
                int64_t index = bson_iter_init_find(&f, &src, "index") ? bson_iter_as_int64(&f) : 0;
                char key[16];
                const char *k;
                bson_uint32_to_string((uint32_t)t->upserted_n, &k, key, sizeof key);
                bson_append_document_begin(&t->upserted, k, -1, &dst);
                BSON_APPEND_INT32(&dst, "index", (int32_t)(index + (int64_t)offset));
                if (bson_iter_init_find(&f, &src, "_id"))
                    bson_append_value(&dst, "_id", 3, bson_iter_value(&f));
                bson_append_document_end(&t->upserted, &dst);
                t->upserted_n++;
                ups++;
            }
        }
        t->matched += n - ups;
        if (bson_iter_init_find(&it, reply, "nModified")) t->modified += bson_iter_as_int64(&it);
    }
    merge_write_errors(reply, offset, &t->errors, &t->nerrors);
}

static int embedded_bulk_write(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                               const char *coll, const bson_t *ops, const bson_t *opts,
                               bson_t *reply, mk_error_t *err)
{
    static const char *const reserved[] = {"insert",  "update",  "delete", "documents",
                                           "updates", "deletes", NULL};
    if (check_name("collection", coll, err) != MK_OK) return MK_ERR;
    bson_iter_t it;
    if (!ops || !bson_iter_init(&it, ops))
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "bulk write operations are missing");
    uint32_t n = bson_count_keys(ops);
    if (n == 0)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "Invalid BulkOperation, Batch cannot be empty");
    bw_item_t *items = calloc(n, sizeof *items);
    if (!items) return mk_error_nomem(err);
    int rc = MK_OK;
    for (uint32_t i = 0; rc == MK_OK && i < n && bson_iter_next(&it); i++)
        rc = bw_check(&it, i, &items[i], err);
    if (rc != MK_OK) {
        free(items);
        return rc;
    }
    bool ordered = get_bool_opt(opts, "ordered", true);
    bw_totals_t t = {0};
    bson_init(&t.upserted);
    bson_init(&t.errors);
    bson_t r = BSON_INITIALIZER;
    for (size_t start = 0; start < n;) {
        bw_cmd_t kind = items[start].model->cmd;
        size_t end = start;
        while (end < n && items[end].model->cmd == kind && end - start < WRITE_BATCH_MAX) end++;
        bson_t cmd = BSON_INITIALIZER, list;
        BSON_APPEND_UTF8(&cmd, bw_command[kind], coll);
        bson_append_array_begin(&cmd, bw_list[kind], -1, &list);
        for (size_t i = start; rc == MK_OK && i < end; i++)
            rc = bw_append(&list, (uint32_t)(i - start), &items[i], err);
        bson_append_array_end(&cmd, &list);
        if (rc == MK_OK) rc = append_opts(&cmd, opts, NULL, reserved, err);
        bson_reinit(&r);
        if (rc == MK_OK) rc = run(engine_of(be), session_of(s), db, &cmd, &r, err);
        bson_destroy(&cmd);
        if (rc != MK_OK) break;
        uint32_t before = t.nerrors;
        bw_merge(&t, kind, &r, start);
        if (ordered && t.nerrors > before) break;
        start = end;
    }
    bson_reinit(reply);
    if (rc == MK_OK) {
        BSON_APPEND_INT64(reply, "nInserted", t.inserted);
        BSON_APPEND_INT64(reply, "nMatched", t.matched);
        BSON_APPEND_INT64(reply, "nModified", t.modified);
        BSON_APPEND_INT64(reply, "nDeleted", t.deleted);
        BSON_APPEND_INT64(reply, "nUpserted", t.upserted_n);
        BSON_APPEND_ARRAY(reply, "upserted", &t.upserted);
        if (t.nerrors) BSON_APPEND_ARRAY(reply, "writeErrors", &t.errors);
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    } else if (!bson_empty(&r)) {
        bson_concat(reply, &r); /* the failing command's { ok: 0, ... } */
    }
    bson_destroy(&r);
    bson_destroy(&t.upserted);
    bson_destroy(&t.errors);
    free(items);
    return rc;
}

static int embedded_find_and_modify(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                    const char *coll, const bson_t *query, const bson_t *opts,
                                    bson_t *value, bool *found, bson_t *reply, mk_error_t *err)
{
    static const char *const reserved[] = {"findAndModify", "query", NULL};
    if (check_name("collection", coll, err) != MK_OK) return MK_ERR;
    if (found) *found = false;
    bson_t cmd = BSON_INITIALIZER, scratch = BSON_INITIALIZER, empty = BSON_INITIALIZER;
    bson_t *r = reply ? reply : &scratch;
    BSON_APPEND_UTF8(&cmd, "findAndModify", coll);
    BSON_APPEND_DOCUMENT(&cmd, "query", query ? query : &empty);
    int rc = append_opts(&cmd, opts, NULL, reserved, err);
    if (rc == MK_OK) rc = run(engine_of(be), session_of(s), db, &cmd, r, err);
    bson_iter_t it;
    if (rc == MK_OK && bson_iter_init_find(&it, r, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_t v;
        bson_iter_document(&it, &len, &data);
        bson_init_static(&v, data, len);
        if (value && !bson_concat(value, &v))
            rc = mk_error_nomem(err);
        else if (found)
            *found = true;
    }
    bson_destroy(&cmd);
    bson_destroy(&scratch);
    return rc;
}

/* ------------------------------------------------------------------------------ reads */

static int64_t int_opt(const bson_t *opts, const char *key)
{
    bson_iter_t it;
    if (opts && bson_iter_init_find(&it, opts, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

static mk_backend_cursor_t *embedded_find(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                          const char *coll, const bson_t *filter,
                                          const bson_t *opts, mk_error_t *err)
{
    static const char *const reserved[] = {"find", "filter", NULL};
    if (check_name("collection", coll, err) != MK_OK) return NULL;
    bson_t cmd = BSON_INITIALIZER, empty = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "find", coll);
    BSON_APPEND_DOCUMENT(&cmd, "filter", filter ? filter : &empty);
    mk_backend_cursor_t *c = NULL;
    if (append_opts(&cmd, opts, NULL, reserved, err) == MK_OK)
        c = cursor_from(be, s, db, &cmd, int_opt(opts, "batchSize"), err);
    bson_destroy(&cmd);
    return c;
}

static mk_backend_cursor_t *embedded_aggregate(mk_backend_t *be, mk_backend_session_t *s,
                                               const char *db, const char *coll,
                                               const bson_t *pipeline, const bson_t *opts,
                                               mk_error_t *err)
{
    static const char *const skip[] = {"batchSize", NULL};
    static const char *const reserved[] = {"aggregate", "pipeline", NULL};
    if (check_name("collection", coll, err) != MK_OK) return NULL;
    bson_t cmd = BSON_INITIALIZER, cur, empty = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "aggregate", coll);
    BSON_APPEND_ARRAY(&cmd, "pipeline", pipeline ? pipeline : &empty);
    int64_t batch = int_opt(opts, "batchSize");
    bson_iter_t it;
    if (!opts || !bson_iter_init_find(&it, opts, "cursor")) {
        bson_append_document_begin(&cmd, "cursor", 6, &cur);
        if (batch > 0) BSON_APPEND_INT64(&cur, "batchSize", batch);
        bson_append_document_end(&cmd, &cur);
    }
    mk_backend_cursor_t *c = NULL;
    if (append_opts(&cmd, opts, skip, reserved, err) == MK_OK)
        c = cursor_from(be, s, db, &cmd, batch, err);
    bson_destroy(&cmd);
    return c;
}

static int count_cmd(mk_backend_t *be, mk_backend_session_t *s, const char *db, const char *coll,
                     const bson_t *filter, const bson_t *opts, int64_t *count, mk_error_t *err)
{
    static const char *const reserved[] = {"count", "query", NULL};
    if (check_name("collection", coll, err) != MK_OK) return MK_ERR;
    bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "count", coll);
    if (filter) BSON_APPEND_DOCUMENT(&cmd, "query", filter);
    int rc = append_opts(&cmd, opts, NULL, reserved, err);
    if (rc == MK_OK) rc = run(engine_of(be), session_of(s), db, &cmd, &reply, err);
    bson_iter_t it;
    if (rc == MK_OK) {
        if (bson_iter_init_find(&it, &reply, "n") && BSON_ITER_HOLDS_NUMBER(&it))
            *count = bson_iter_as_int64(&it);
        else
            rc = mk_error_setc(err, MK_CODE_INTERNAL, "count reply has no n");
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    return rc;
}

/* The engine's count applies the filter exactly (no metadata shortcut), so countDocuments
 * needs no aggregation here. */
static int embedded_count_documents(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                    const char *coll, const bson_t *filter, const bson_t *opts,
                                    int64_t *count, mk_error_t *err)
{
    bson_t empty = BSON_INITIALIZER;
    return count_cmd(be, s, db, coll, filter ? filter : &empty, opts, count, err);
}

static int embedded_estimated_count(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                    const char *coll, const bson_t *opts, int64_t *count,
                                    mk_error_t *err)
{
    return count_cmd(be, s, db, coll, NULL, opts, count, err);
}

static int embedded_distinct(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                             const char *coll, const char *key, const bson_t *filter,
                             const bson_t *opts, bson_t *values, mk_error_t *err)
{
    static const char *const reserved[] = {"distinct", "key", "query", NULL};
    if (check_name("collection", coll, err) != MK_OK || check_name("key", key, err) != MK_OK)
        return MK_ERR;
    bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "distinct", coll);
    BSON_APPEND_UTF8(&cmd, "key", key);
    if (filter) BSON_APPEND_DOCUMENT(&cmd, "query", filter);
    int rc = append_opts(&cmd, opts, NULL, reserved, err);
    if (rc == MK_OK) rc = run(engine_of(be), session_of(s), db, &cmd, &reply, err);
    bson_iter_t it;
    if (rc == MK_OK) {
        if (bson_iter_init_find(&it, &reply, "values") && BSON_ITER_HOLDS_ARRAY(&it)) {
            const uint8_t *data;
            uint32_t len;
            bson_t arr;
            bson_iter_array(&it, &len, &data);
            bson_init_static(&arr, data, len);
            if (!bson_concat(values, &arr)) rc = mk_error_nomem(err);
        } else {
            rc = mk_error_setc(err, MK_CODE_INTERNAL, "distinct reply has no values");
        }
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    return rc;
}

/* ------------------------------------------------------------------ indexes, namespaces */

static int embedded_create_indexes(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                   const char *coll, const bson_t *specs, const bson_t *opts,
                                   bson_t *reply, mk_error_t *err)
{
    static const char *const reserved[] = {"createIndexes", "indexes", NULL};
    if (check_name("collection", coll, err) != MK_OK) return MK_ERR;
    if (!specs) return mk_error_setc(err, MK_CODE_BAD_VALUE, "index specs are NULL");
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
    BSON_APPEND_ARRAY(&cmd, "indexes", specs);
    int rc = append_opts(&cmd, opts, NULL, reserved, err);
    if (rc == MK_OK) rc = run_opt_reply(be, s, db, &cmd, reply, err);
    bson_destroy(&cmd);
    return rc;
}

static mk_backend_cursor_t *embedded_list_indexes(mk_backend_t *be, mk_backend_session_t *s,
                                                  const char *db, const char *coll, mk_error_t *err)
{
    if (check_name("collection", coll, err) != MK_OK) return NULL;
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "listIndexes", coll);
    mk_backend_cursor_t *c = cursor_from(be, s, db, &cmd, 0, err);
    bson_destroy(&cmd);
    return c;
}

static int embedded_drop_indexes(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                 const char *coll, const char *name, bson_t *reply, mk_error_t *err)
{
    if (check_name("collection", coll, err) != MK_OK || check_name("index", name, err) != MK_OK)
        return MK_ERR;
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "dropIndexes", coll);
    BSON_APPEND_UTF8(&cmd, "index", name);
    int rc = run_opt_reply(be, s, db, &cmd, reply, err);
    bson_destroy(&cmd);
    return rc;
}

static mk_backend_cursor_t *embedded_list_collections(mk_backend_t *be, mk_backend_session_t *s,
                                                      const char *db, const bson_t *filter,
                                                      const bson_t *opts, mk_error_t *err)
{
    static const char *const reserved[] = {"listCollections", "filter", NULL};
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "listCollections", 1);
    if (filter) BSON_APPEND_DOCUMENT(&cmd, "filter", filter);
    mk_backend_cursor_t *c = NULL;
    if (append_opts(&cmd, opts, NULL, reserved, err) == MK_OK)
        c = cursor_from(be, s, db, &cmd, 0, err);
    bson_destroy(&cmd);
    return c;
}

static int embedded_drop_collection(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                    const char *coll, bson_t *reply, mk_error_t *err)
{
    if (check_name("collection", coll, err) != MK_OK) return MK_ERR;
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "drop", coll);
    int rc = run_opt_reply(be, s, db, &cmd, reply, err);
    bson_destroy(&cmd);
    return rc;
}

static int embedded_drop_database(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                  bson_t *reply, mk_error_t *err)
{
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "dropDatabase", 1);
    int rc = run_opt_reply(be, s, db, &cmd, reply, err);
    bson_destroy(&cmd);
    return rc;
}

/* ---------------------------------------------------------------------------- sessions */

static mk_backend_session_t *embedded_session_start(mk_backend_t *be, mk_error_t *err)
{
    mk_backend_session_t *s = malloc(sizeof *s);
    if (!s) {
        mk_error_nomem(err);
        return NULL;
    }
    s->be = be;
    if (!(s->impl = mk_session_start(engine_of(be), err))) {
        free(s);
        return NULL;
    }
    return s;
}

static void embedded_session_end(mk_backend_session_t *s)
{
    mk_session_end(s->impl);
    free(s);
}

static int embedded_start_transaction(mk_backend_session_t *s, const bson_t *opts, mk_error_t *err)
{
    static const char *const accepted[] = {"readConcern", "writeConcern", "maxCommitTimeMS", NULL};
    bson_iter_t it;
    if (opts && bson_iter_init(&it, opts))
        while (bson_iter_next(&it))
            if (!in_list(bson_iter_key(&it), accepted))
                return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                     "transaction option '%s' is not supported",
                                     bson_iter_key(&it));
    return mk_session_start_transaction(s->impl, err);
}

static int embedded_commit_transaction(mk_backend_session_t *s, mk_error_t *err)
{
    return mk_session_commit_transaction(s->impl, err);
}

static int embedded_abort_transaction(mk_backend_session_t *s, mk_error_t *err)
{
    return mk_session_abort_transaction(s->impl, err);
}

static bool embedded_in_transaction(const mk_backend_session_t *s)
{
    return mk_session_in_transaction(s->impl);
}

/* ------------------------------------------------------------------------------- misc */

static int embedded_explain(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                            const bson_t *command, const char *verbosity, bson_t *reply,
                            mk_error_t *err)
{
    if (!command) return mk_error_setc(err, MK_CODE_BAD_VALUE, "explain needs a command");
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&cmd, "explain", command);
    BSON_APPEND_UTF8(&cmd, "verbosity", verbosity ? verbosity : "queryPlanner");
    int rc = run_opt_reply(be, s, db, &cmd, reply, err);
    bson_destroy(&cmd);
    return rc;
}

static int embedded_run_command(mk_backend_t *be, mk_backend_session_t *s, const char *db,
                                const bson_t *cmd, bson_t *reply, mk_error_t *err)
{
    return run_opt_reply(be, s, db, cmd, reply, err);
}

static void embedded_destroy(mk_backend_t *be)
{
    free(be->impl);
    free(be);
}

static const mk_backend_ops_t embedded_ops = {
    .name = "embedded",
    .insert_many = embedded_insert_many,
    .update = embedded_update,
    .delete_ = embedded_delete,
    .bulk_write = embedded_bulk_write,
    .find_and_modify = embedded_find_and_modify,
    .find = embedded_find,
    .aggregate = embedded_aggregate,
    .count_documents = embedded_count_documents,
    .estimated_count = embedded_estimated_count,
    .distinct = embedded_distinct,
    .cursor_next = embedded_cursor_next,
    .cursor_destroy = embedded_cursor_destroy,
    .create_indexes = embedded_create_indexes,
    .list_indexes = embedded_list_indexes,
    .drop_indexes = embedded_drop_indexes,
    .list_collections = embedded_list_collections,
    .drop_collection = embedded_drop_collection,
    .drop_database = embedded_drop_database,
    .session_start = embedded_session_start,
    .session_end = embedded_session_end,
    .start_transaction = embedded_start_transaction,
    .commit_transaction = embedded_commit_transaction,
    .abort_transaction = embedded_abort_transaction,
    .in_transaction = embedded_in_transaction,
    .explain = embedded_explain,
    .run_command = embedded_run_command,
    .destroy = embedded_destroy,
};

mk_backend_t *mk_backend_embedded_new(mk_engine_t *eng, mk_error_t *err)
{
    if (!eng) {
        mk_error_setc(err, MK_CODE_BAD_VALUE, "engine is NULL");
        return NULL;
    }
    mk_backend_t *be = malloc(sizeof *be);
    embedded_t *e = malloc(sizeof *e);
    if (!be || !e) {
        free(be);
        free(e);
        mk_error_nomem(err);
        return NULL;
    }
    e->eng = eng;
    be->ops = &embedded_ops;
    be->impl = e;
    return be;
}

/* -------------------------------------------------- reply helpers (backend-independent) */

int mk_backend_first_write_error(const bson_t *reply, mk_error_t *err)
{
    bson_iter_t it, e, f;
    const char *fields[] = {"writeErrors", "writeConcernError"};
    for (int i = 0; i < 2; i++) {
        if (!bson_iter_init_find(&it, reply, fields[i])) continue;
        if (i == 0) {
            if (!bson_iter_recurse(&it, &e) || !bson_iter_next(&e)) continue;
        } else {
            e = it;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&e) || !bson_iter_recurse(&e, &f)) continue;
        int code = MK_CODE_INTERNAL;
        const char *msg = "write error", *name = NULL;
        while (bson_iter_next(&f)) {
            const char *k = bson_iter_key(&f);
            if (strcmp(k, "code") == 0 && BSON_ITER_HOLDS_NUMBER(&f))
                code = (int)bson_iter_as_int64(&f);
            else if (strcmp(k, "errmsg") == 0 && BSON_ITER_HOLDS_UTF8(&f))
                msg = bson_iter_utf8(&f, NULL);
            else if (strcmp(k, "codeName") == 0 && BSON_ITER_HOLDS_UTF8(&f))
                name = bson_iter_utf8(&f, NULL);
        }
        return mk_error_set(err, code, name ? name : mk_error_code_name(code), "%s", msg);
    }
    return MK_OK;
}

size_t mk_backend_inserted(const bson_t *reply, size_t n, bool ordered, bool *inserted)
{
    bson_iter_t it, we, f;
    for (size_t i = 0; i < n; i++) inserted[i] = true;
    if (bson_iter_init_find(&it, reply, "ok") && !bson_iter_as_bool(&it)) {
        for (size_t i = 0; i < n; i++) inserted[i] = false;
        return 0;
    }
    size_t first_failed = n;
    if (bson_iter_init_find(&it, reply, "writeErrors") && bson_iter_recurse(&it, &we)) {
        while (bson_iter_next(&we)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&we) || !bson_iter_recurse(&we, &f) ||
                !bson_iter_find(&f, "index") || !BSON_ITER_HOLDS_NUMBER(&f))
                continue;
            int64_t idx = bson_iter_as_int64(&f);
            if (idx < 0 || (uint64_t)idx >= n) continue;
            inserted[idx] = false;
            if ((size_t)idx < first_failed) first_failed = (size_t)idx;
        }
    }
    if (ordered)
        for (size_t i = first_failed; i < n; i++) inserted[i] = false;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) count += inserted[i];
    return count;
}
