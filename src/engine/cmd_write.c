/* Write commands: insert, update, delete, findAndModify.
 *
 * Each command runs in one LMDB write transaction. Statements that fail are reported in
 * writeErrors and change nothing (a record is written whole or not at all); an ordered command
 * stops at its first failing statement, an unordered one goes on, as MongoDB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"
#include "engine/command.h"
#include "engine/cursor.h"
#include "engine/projection.h"
#include "engine/planner.h"
#include "engine/scan.h"
#include "engine/sort.h"
#include "engine/update.h"

/* Errors that abort the whole command (and, for a full map, retry it) rather than one
 * statement. */
static bool fatal(int rc, const mk_error_t *e)
{
    return rc == MK_EMAPFULL || rc == MK_ENOMEM || (rc != MK_OK && e->code == MK_CODE_STORAGE);
}

typedef struct write_errors {
    bson_t arr;
    uint32_t n;
} write_errors_t;

static void add_write_error(write_errors_t *we, int32_t index, const mk_error_t *e,
                            const bson_value_t *dup_id)
{
    char key[16];
    const char *k;
    bson_uint32_to_string(we->n++, &k, key, sizeof key);
    bson_t d;
    bson_append_document_begin(&we->arr, k, -1, &d);
    BSON_APPEND_INT32(&d, "index", index);
    BSON_APPEND_INT32(&d, "code", e->code);
    BSON_APPEND_UTF8(&d, "errmsg", e->message);
    if (dup_id && e->code == MK_CODE_DUPLICATE_KEY) {
        bson_t kp, kv;
        bson_append_document_begin(&d, "keyPattern", -1, &kp);
        BSON_APPEND_INT32(&kp, "_id", 1);
        bson_append_document_end(&d, &kp);
        bson_append_document_begin(&d, "keyValue", -1, &kv);
        bson_append_value(&kv, "_id", 3, dup_id);
        bson_append_document_end(&d, &kv);
    }
    bson_append_document_end(&we->arr, &d);
}

static void finish_write_errors(mk_cmd_t *c, write_errors_t *we)
{
    if (we->n) bson_append_array(c->reply, "writeErrors", -1, &we->arr);
    bson_destroy(&we->arr);
}

static bool first_id(const bson_t *doc, bson_value_t *id)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "_id")) return false;
    *id = *bson_iter_value(&it);
    return true;
}

/* ---------------------------------------------------------------- insert */

typedef struct insert_args {
    const char *coll;
    bson_t docs;
    bool ordered;
} insert_args_t;

/* Inserts one document of the batch; *id is its _id (borrowed from *stored) when known. */
static int insert_one(mk_cmd_t *c, MDB_txn *txn, insert_args_t *a, mk_coll_t **coll,
                      bson_iter_t *it, int32_t index, bson_t *stored, bool *prepared, mk_error_t *e)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(it))
        return mk_error_setc(e, MK_CODE_TYPE_MISMATCH,
                             "BSON field 'insert.documents.%d' is the wrong type, expected type "
                             "'object'",
                             index);
    const uint8_t *data;
    uint32_t len;
    bson_iter_document(it, &len, &data);
    bson_t doc;
    if (!bson_init_static(&doc, data, len))
        return mk_error_setc(e, MK_CODE_INVALID_BSON, "invalid BSON document");
    if (mk_record_prepare(&doc, stored, e) != MK_OK) return MK_ERR;
    *prepared = true;
    int rc = MK_OK;
    if (!*coll) rc = mk_coll_ensure(c->eng, txn, c->db, a->coll, NULL, coll, NULL, e);
    if (rc == MK_OK) rc = mk_record_insert(txn, *coll, stored, e);
    return rc;
}

static int insert_body(mk_cmd_t *c, MDB_txn *txn, void *ud)
{
    insert_args_t *a = ud;
    write_errors_t we = {.n = 0};
    bson_init(&we.arr);
    mk_coll_t *coll = NULL;
    int32_t n = 0, index = -1;
    bson_iter_t it;
    bson_iter_init(&it, &a->docs);
    while (bson_iter_next(&it)) {
        index++;
        mk_error_t e = {0};
        bson_t stored;
        bool prepared = false;
        int rc = insert_one(c, txn, a, &coll, &it, index, &stored, &prepared, &e);
        if (rc == MK_OK) {
            n++;
        } else if (fatal(rc, &e)) {
            *c->err = e;
            if (prepared) bson_destroy(&stored);
            bson_destroy(&we.arr);
            return rc;
        } else {
            bson_value_t id;
            add_write_error(&we, index, &e, prepared && first_id(&stored, &id) ? &id : NULL);
        }
        if (prepared) bson_destroy(&stored);
        if (rc != MK_OK && a->ordered) break;
    }
    BSON_APPEND_INT32(c->reply, "n", n);
    finish_write_errors(c, &we);
    return MK_OK;
}

static const char *const insert_fields[] = {"documents", "ordered", NULL};

int mk_cmd_insert(mk_cmd_t *c)
{
    insert_args_t a = {.ordered = true};
    if (mk_cmd_coll_name(c, &a.coll) != MK_OK) return MK_ERR;
    if (mk_cmd_check_fields(c, insert_fields) != MK_OK) return MK_ERR;
    bool present;
    if (mk_opt_array(c->body, "documents", &a.docs, &present, c->err) != MK_OK ||
        mk_opt_bool(c->body, "ordered", &a.ordered, c->err) != MK_OK)
        return MK_ERR;
    if (!present)
        return mk_error_set(c->err, 40414, "Location40414",
                            "BSON field 'insert.documents' is missing but a required field");
    if (bson_empty(&a.docs))
        return mk_error_setc(c->err, MK_CODE_INVALID_OPTIONS,
                             "Write batch sizes must be between 1 and 100000. Got 0 operations.");
    return mk_cmd_write(c, insert_body, &a);
}

/* ---------------------------------------------------------------- shared by update/delete */

typedef struct targets {
    mk_raw_t *docs;
    size_t n, cap;
    bool first_only;
    mk_error_t *err;
} targets_t;

static int collect_target(void *ud, const bson_t *doc, const MDB_val *key,
                          const mk_match_details_t *md)
{
    targets_t *t = ud;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        mk_raw_t *d = realloc(t->docs, cap * sizeof *d);
        if (!d) return mk_error_nomem(t->err);
        t->docs = d;
        t->cap = cap;
    }
    if (!mk_raw_copy(&t->docs[t->n], doc)) return mk_error_nomem(t->err);
    t->n++;
    return t->first_only ? MK_SCAN_STOP : MK_OK;
}

/* A read-only view of target i (on the caller's stack, so properly aligned). */
static bson_t *target(targets_t *t, size_t i, bson_t *view)
{
    bson_init_static(view, t->docs[i].data, t->docs[i].len);
    return view;
}

static void targets_free(targets_t *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->docs[i].data);
    free(t->docs);
}

/* The documents a statement acts on, copied out of the transaction's pages (which the
 * writes that follow may recycle). */
static int find_targets(MDB_txn *txn, mk_coll_t *coll, const mk_matcher_t *m, const bson_t *filter,
                        const bson_iter_t *hint, bool first_only, targets_t *t, mk_error_t *err)
{
    t->first_only = first_only;
    t->err = err;
    if (!coll) return MK_OK;
    return mk_query_run(txn, coll, filter, m, hint, false, collect_target, t, NULL, err);
}

static int add_to_sorter(void *ud, const bson_t *doc, const MDB_val *key,
                         const mk_match_details_t *md)
{
    void **ctx = ud;
    return mk_sorter_add(ctx[0], doc, 0, ctx[1]);
}

/* The first document of the sort order among the matches (findAndModify with a sort). */
static int sorted_first(MDB_txn *txn, mk_coll_t *coll, const mk_matcher_t *m, const bson_t *filter,
                        const bson_t *sort_spec, targets_t *t, mk_error_t *err)
{
    t->err = err;
    if (!coll) return MK_OK;
    mk_sort_t *sort = mk_sort_compile(sort_spec, err);
    if (!sort) return MK_ERR;
    mk_sorter_t *st = mk_sorter_new(sort, 1, MK_SORT_MEMORY_LIMIT, err);
    int rc = st ? MK_OK : MK_ERR;
    if (rc == MK_OK) {
        void *ctx[2] = {st, err};
        rc = mk_query_run(txn, coll, filter, m, NULL, false, add_to_sorter, ctx, NULL, err);
    }
    if (rc == MK_OK) {
        mk_sorter_finish(st);
        bson_t view;
        if (mk_sorter_get(st, 0, &view, NULL)) {
            t->first_only = true;
            rc = collect_target(t, &view, NULL, NULL);
            if (rc == MK_SCAN_STOP) rc = MK_OK;
        }
    }
    mk_sorter_destroy(st);
    mk_sort_destroy(sort);
    return rc;
}

/* Applies a compiled update to one stored document and writes it back when it changed. */
static int update_doc(MDB_txn *txn, mk_coll_t *coll, const mk_matcher_t *m, const mk_update_t *u,
                      const bson_t *doc, int64_t now, bson_t *out, bool *changed, mk_error_t *e)
{
    mk_match_details_t md = {0};
    mk_matcher_match(m, doc, &md);
    bson_init(out);
    int rc = mk_update_apply(u, doc, &md, false, now, out, changed, e);
    if (rc == MK_OK && *changed) {
        /* mk_update_apply keeps _id immutable (66) */
        rc = mk_record_check(out, e);
        if (rc == MK_OK) rc = mk_record_replace(txn, coll, doc, out, e);
    }
    return rc;
}

/* The document an upsert inserts: the filter's equality fields, then the update. */
static int upsert_doc(const bson_t *filter, const mk_update_t *u, int64_t now, bson_t *out,
                      mk_error_t *e)
{
    bson_t applied = BSON_INITIALIZER;
    int rc = mk_update_upsert_doc(u, filter, now, &applied, e);
    if (rc == MK_OK) rc = mk_record_prepare(&applied, out, e);
    bson_destroy(&applied);
    return rc;
}

static int statement_doc(bson_iter_t *it, const char *cmd, const char *list, int32_t index,
                         bson_t *out, mk_error_t *e)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(it))
        return mk_error_setc(e, MK_CODE_TYPE_MISMATCH,
                             "BSON field '%s.%s.%d' is the wrong type, expected type 'object'", cmd,
                             list, index);
    const uint8_t *data;
    uint32_t len;
    bson_iter_document(it, &len, &data);
    if (!bson_init_static(out, data, len))
        return mk_error_setc(e, MK_CODE_INVALID_BSON, "invalid BSON document");
    return MK_OK;
}

static int check_stmt_fields(const bson_t *stmt, const char *prefix, const char *const *known,
                             mk_error_t *e)
{
    bson_iter_t it;
    bson_iter_init(&it, stmt);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool ok = false;
        for (const char *const *p = known; *p && !ok; p++) ok = strcmp(*p, k) == 0;
        if (!ok)
            return mk_error_set(e, 40415, "Location40415",
                                "BSON field '%s.%s' is an unknown field.", prefix, k);
        if (strcmp(k, "collation") == 0)
            return mk_error_setc(e, MK_CODE_BAD_VALUE, "collation is not supported yet");
    }
    return MK_OK;
}

/* ---------------------------------------------------------------- update */

/* update and delete: a list of statements and `ordered`. */
typedef struct stmt_args {
    const char *coll;
    bson_t stmts;
    bool ordered;
} stmt_args_t;

static int parse_stmt_args(mk_cmd_t *c, const char *list, stmt_args_t *a)
{
    a->ordered = true;
    if (mk_cmd_coll_name(c, &a->coll) != MK_OK) return MK_ERR;
    const char *const known[] = {list, "ordered", NULL};
    if (mk_cmd_check_fields(c, known) != MK_OK) return MK_ERR;
    bool present;
    if (mk_opt_array(c->body, list, &a->stmts, &present, c->err) != MK_OK ||
        mk_opt_bool(c->body, "ordered", &a->ordered, c->err) != MK_OK)
        return MK_ERR;
    if (!present)
        return mk_error_set(c->err, 40414, "Location40414",
                            "BSON field '%s.%s' is missing but a required field", c->name, list);
    return MK_OK;
}

/* Runs each statement; a failing one becomes a write error (an ordered list stops there),
 * and only errors that doom the whole command (full map, memory, storage) abort it. */
typedef int (*stmt_fn)(mk_cmd_t *c, MDB_txn *txn, void *ctx, const bson_t *stmt, int32_t index,
                       mk_error_t *e);

static int run_statements(mk_cmd_t *c, MDB_txn *txn, const stmt_args_t *a, const char *list,
                          stmt_fn fn, void *ctx, write_errors_t *we)
{
    bson_iter_t it;
    bson_iter_init(&it, &a->stmts);
    int32_t index = -1;
    while (bson_iter_next(&it)) {
        index++;
        mk_error_t e = {0};
        bson_t stmt;
        int rc = statement_doc(&it, c->name, list, index, &stmt, &e);
        if (rc == MK_OK) rc = fn(c, txn, ctx, &stmt, index, &e);
        if (rc == MK_OK) continue;
        if (fatal(rc, &e)) {
            *c->err = e;
            return rc;
        }
        add_write_error(we, index, &e, NULL);
        if (a->ordered) break;
    }
    return MK_OK;
}

typedef struct update_totals {
    int64_t n, modified;
    bson_t upserted;
    uint32_t nupserted;
} update_totals_t;

static const char *const update_stmt_fields[] = {
    "q", "u", "upsert", "multi", "arrayFilters", "hint", "collation", "c", NULL};

static int update_stmt(mk_cmd_t *c, MDB_txn *txn, const stmt_args_t *a, mk_coll_t **coll,
                       const bson_t *stmt, int32_t index, update_totals_t *tot, mk_error_t *e)
{
    if (check_stmt_fields(stmt, "update.updates", update_stmt_fields, e) != MK_OK) return MK_ERR;
    bson_t q, u, filters;
    bool has_q, has_u = false, has_filters, upsert = false, multi = false;
    bson_iter_t uit;
    if (mk_opt_doc(stmt, "q", &q, &has_q, e) != MK_OK ||
        mk_opt_array(stmt, "arrayFilters", &filters, &has_filters, e) != MK_OK ||
        mk_opt_bool(stmt, "upsert", &upsert, e) != MK_OK ||
        mk_opt_bool(stmt, "multi", &multi, e) != MK_OK)
        return MK_ERR;
    if (!has_q)
        return mk_error_set(e, 40414, "Location40414",
                            "BSON field 'update.updates.q' is missing but a required field");
    if (bson_iter_init_find(&uit, stmt, "u")) {
        if (BSON_ITER_HOLDS_ARRAY(&uit))
            return mk_error_setc(e, MK_CODE_BAD_VALUE,
                                 "pipeline-style updates are not supported yet");
        if (mk_opt_doc(stmt, "u", &u, &has_u, e) != MK_OK) return MK_ERR;
    }
    if (!has_u)
        return mk_error_set(e, 40414, "Location40414",
                            "BSON field 'update.updates.u' is missing but a required field");
    mk_matcher_t *m = mk_matcher_compile(&q, e);
    if (!m) return MK_ERR;
    mk_update_t *upd = mk_update_compile(&u, has_filters ? &filters : NULL, e);
    if (!upd) {
        mk_matcher_destroy(m);
        return MK_ERR;
    }
    int rc = MK_OK;
    if (multi && mk_update_is_replacement(upd))
        rc = mk_error_setc(e, MK_CODE_FAILED_TO_PARSE,
                           "multi update is not supported for replacement-style update");
    if (rc == MK_OK && !*coll) rc = mk_coll_find(c->eng, txn, c->db, a->coll, coll, e);
    targets_t t = {0};
    bson_iter_t hint;
    bool has_hint = bson_iter_init_find(&hint, stmt, "hint");
    if (rc == MK_OK) rc = find_targets(txn, *coll, m, &q, has_hint ? &hint : NULL, !multi, &t, e);
    int64_t now = mk_now_ms();
    for (size_t i = 0; rc == MK_OK && i < t.n; i++) {
        bson_t out;
        bool changed = false;
        bson_t view;
        rc = update_doc(txn, *coll, m, upd, target(&t, i, &view), now, &out, &changed, e);
        bson_destroy(&out);
        if (rc == MK_OK) {
            tot->n++;
            tot->modified += changed;
        }
    }
    if (rc == MK_OK && t.n == 0 && upsert) {
        bson_t doc;
        rc = upsert_doc(&q, upd, now, &doc, e);
        if (rc == MK_OK) {
            if (!*coll) rc = mk_coll_ensure(c->eng, txn, c->db, a->coll, NULL, coll, NULL, e);
            if (rc == MK_OK) rc = mk_record_insert(txn, *coll, &doc, e);
            bson_value_t id;
            if (rc == MK_OK && first_id(&doc, &id)) {
                char key[16];
                const char *k;
                bson_uint32_to_string(tot->nupserted++, &k, key, sizeof key);
                bson_t up;
                bson_append_document_begin(&tot->upserted, k, -1, &up);
                BSON_APPEND_INT32(&up, "index", index);
                bson_append_value(&up, "_id", 3, &id);
                bson_append_document_end(&tot->upserted, &up);
                tot->n++;
            }
            bson_destroy(&doc);
        }
    }
    targets_free(&t);
    mk_update_destroy(upd);
    mk_matcher_destroy(m);
    return rc;
}

typedef struct update_ctx {
    const stmt_args_t *a;
    mk_coll_t *coll;
    update_totals_t tot;
} update_ctx_t;

static int update_one(mk_cmd_t *c, MDB_txn *txn, void *ctx, const bson_t *stmt, int32_t index,
                      mk_error_t *e)
{
    update_ctx_t *u = ctx;
    return update_stmt(c, txn, u->a, &u->coll, stmt, index, &u->tot, e);
}

static int update_body(mk_cmd_t *c, MDB_txn *txn, void *ud)
{
    update_ctx_t u = {.a = ud};
    bson_init(&u.tot.upserted);
    write_errors_t we = {.n = 0};
    bson_init(&we.arr);
    int rc = run_statements(c, txn, u.a, "updates", update_one, &u, &we);
    if (rc == MK_OK) {
        BSON_APPEND_INT32(c->reply, "n", (int32_t)u.tot.n);
        BSON_APPEND_INT32(c->reply, "nModified", (int32_t)u.tot.modified);
        if (u.tot.nupserted) bson_append_array(c->reply, "upserted", -1, &u.tot.upserted);
        finish_write_errors(c, &we);
    } else {
        bson_destroy(&we.arr);
    }
    bson_destroy(&u.tot.upserted);
    return rc;
}

int mk_cmd_update(mk_cmd_t *c)
{
    stmt_args_t a;
    if (parse_stmt_args(c, "updates", &a) != MK_OK) return MK_ERR;
    return mk_cmd_write(c, update_body, &a);
}

/* ---------------------------------------------------------------- delete */

static const char *const delete_stmt_fields[] = {"q", "limit", "hint", "collation", NULL};

static int delete_stmt(mk_cmd_t *c, MDB_txn *txn, const char *collname, mk_coll_t **coll,
                       const bson_t *stmt, int64_t *n, mk_error_t *e)
{
    if (check_stmt_fields(stmt, "delete.deletes", delete_stmt_fields, e) != MK_OK) return MK_ERR;
    bson_t q;
    bool has_q;
    int64_t limit = -1;
    if (mk_opt_doc(stmt, "q", &q, &has_q, e) != MK_OK ||
        mk_opt_int64(stmt, "limit", &limit, e) != MK_OK)
        return MK_ERR;
    if (!has_q)
        return mk_error_set(e, 40414, "Location40414",
                            "BSON field 'delete.deletes.q' is missing but a required field");
    if (limit == -1)
        return mk_error_set(e, 40414, "Location40414",
                            "BSON field 'delete.deletes.limit' is missing but a required field");
    if (limit != 0 && limit != 1)
        return mk_error_setc(e, MK_CODE_FAILED_TO_PARSE,
                             "The limit field in delete objects must be 0 or 1. Got %lld",
                             (long long)limit);
    mk_matcher_t *m = mk_matcher_compile(&q, e);
    if (!m) return MK_ERR;
    int rc = MK_OK;
    if (!*coll) rc = mk_coll_find(c->eng, txn, c->db, collname, coll, e);
    targets_t t = {0};
    bson_iter_t hint;
    bool has_hint = bson_iter_init_find(&hint, stmt, "hint");
    if (rc == MK_OK)
        rc = find_targets(txn, *coll, m, &q, has_hint ? &hint : NULL, limit == 1, &t, e);
    for (size_t i = 0; rc == MK_OK && i < t.n; i++) {
        bson_value_t id;
        bson_t view;
        if (!first_id(target(&t, i, &view), &id)) continue;
        rc = mk_record_delete(txn, *coll, &view, e);
        if (rc == MK_OK) (*n)++;
    }
    targets_free(&t);
    mk_matcher_destroy(m);
    return rc;
}

typedef struct delete_ctx {
    const stmt_args_t *a;
    mk_coll_t *coll;
    int64_t n;
} delete_ctx_t;

static int delete_one(mk_cmd_t *c, MDB_txn *txn, void *ctx, const bson_t *stmt, int32_t index,
                      mk_error_t *e)
{
    delete_ctx_t *d = ctx;
    return delete_stmt(c, txn, d->a->coll, &d->coll, stmt, &d->n, e);
}

static int delete_body(mk_cmd_t *c, MDB_txn *txn, void *ud)
{
    delete_ctx_t d = {.a = ud};
    write_errors_t we = {.n = 0};
    bson_init(&we.arr);
    int rc = run_statements(c, txn, d.a, "deletes", delete_one, &d, &we);
    if (rc != MK_OK) {
        bson_destroy(&we.arr);
        return rc;
    }
    BSON_APPEND_INT32(c->reply, "n", (int32_t)d.n);
    finish_write_errors(c, &we);
    return MK_OK;
}

int mk_cmd_delete(mk_cmd_t *c)
{
    stmt_args_t a;
    if (parse_stmt_args(c, "deletes", &a) != MK_OK) return MK_ERR;
    return mk_cmd_write(c, delete_body, &a);
}

/* ---------------------------------------------------------------- findAndModify */

typedef struct fam_args {
    const char *coll;
    bson_t query, sort, fields, update;
    bson_t filters;
    bool has_sort, has_fields, has_update, has_filters;
    bool remove, return_new, upsert;
} fam_args_t;

static int project_value(fam_args_t *a, const bson_t *doc, bson_t *reply, mk_error_t *e)
{
    if (!doc) {
        BSON_APPEND_NULL(reply, "value");
        return MK_OK;
    }
    if (!a->has_fields || bson_empty(&a->fields)) {
        BSON_APPEND_DOCUMENT(reply, "value", doc);
        return MK_OK;
    }
    mk_projection_t *p = mk_projection_compile(&a->fields, &a->query, e);
    if (!p) return MK_ERR;
    bson_t out = BSON_INITIALIZER;
    int rc = mk_projection_apply(p, doc, NULL, &out, e);
    if (rc == MK_OK) BSON_APPEND_DOCUMENT(reply, "value", &out);
    bson_destroy(&out);
    mk_projection_destroy(p);
    return rc;
}

static int fam_body(mk_cmd_t *c, MDB_txn *txn, void *ud)
{
    fam_args_t *a = ud;
    mk_error_t *e = c->err;
    mk_matcher_t *m = mk_matcher_compile(&a->query, e);
    if (!m) return MK_ERR;
    mk_update_t *upd = NULL;
    if (a->has_update &&
        !(upd = mk_update_compile(&a->update, a->has_filters ? &a->filters : NULL, e))) {
        mk_matcher_destroy(m);
        return MK_ERR;
    }
    mk_coll_t *coll = NULL;
    targets_t t = {0};
    int rc = mk_coll_find(c->eng, txn, c->db, a->coll, &coll, e);
    bool sorted = a->has_sort && !bson_empty(&a->sort);
    if (rc == MK_OK && sorted)
        rc = sorted_first(txn, coll, m, &a->query, &a->sort, &t, e);
    else if (rc == MK_OK) {
        bson_iter_t hint;
        bool has_hint = bson_iter_init_find(&hint, c->body, "hint");
        rc = find_targets(txn, coll, m, &a->query, has_hint ? &hint : NULL, true, &t, e);
    }
    bson_t leo;
    int64_t now = mk_now_ms();
    if (rc != MK_OK) goto out;
    if (t.n > 0 && a->remove) {
        bson_value_t id;
        bson_t view;
        if (first_id(target(&t, 0, &view), &id)) rc = mk_record_delete(txn, coll, &view, e);
        if (rc != MK_OK) goto out;
        bson_append_document_begin(c->reply, "lastErrorObject", -1, &leo);
        BSON_APPEND_INT32(&leo, "n", 1);
        bson_append_document_end(c->reply, &leo);
        rc = project_value(a, &view, c->reply, e);
    } else if (t.n > 0) {
        bson_t after;
        bool changed = false;
        bson_t view;
        target(&t, 0, &view);
        rc = update_doc(txn, coll, m, upd, &view, now, &after, &changed, e);
        if (rc == MK_OK) {
            bson_append_document_begin(c->reply, "lastErrorObject", -1, &leo);
            BSON_APPEND_INT32(&leo, "n", 1);
            BSON_APPEND_BOOL(&leo, "updatedExisting", true);
            bson_append_document_end(c->reply, &leo);
            rc = project_value(a, a->return_new ? (changed ? &after : &view) : &view, c->reply, e);
        }
        bson_destroy(&after);
    } else if (a->upsert && upd) {
        bson_t doc;
        rc = upsert_doc(&a->query, upd, now, &doc, e);
        if (rc != MK_OK) goto out;
        if (!coll) rc = mk_coll_ensure(c->eng, txn, c->db, a->coll, NULL, &coll, NULL, e);
        if (rc == MK_OK) rc = mk_record_insert(txn, coll, &doc, e);
        bson_value_t id;
        if (rc == MK_OK && first_id(&doc, &id)) {
            bson_append_document_begin(c->reply, "lastErrorObject", -1, &leo);
            BSON_APPEND_INT32(&leo, "n", 1);
            BSON_APPEND_BOOL(&leo, "updatedExisting", false);
            bson_append_value(&leo, "upserted", -1, &id);
            bson_append_document_end(c->reply, &leo);
            rc = project_value(a, a->return_new ? &doc : NULL, c->reply, e);
        }
        bson_destroy(&doc);
    } else {
        bson_append_document_begin(c->reply, "lastErrorObject", -1, &leo);
        BSON_APPEND_INT32(&leo, "n", 0);
        if (!a->remove) BSON_APPEND_BOOL(&leo, "updatedExisting", false);
        bson_append_document_end(c->reply, &leo);
        BSON_APPEND_NULL(c->reply, "value");
    }
out:
    targets_free(&t);
    mk_update_destroy(upd);
    mk_matcher_destroy(m);
    return rc;
}

static const char *const fam_fields[] = {"query",  "sort",   "remove",       "update", "new",
                                         "fields", "upsert", "arrayFilters", "hint",   NULL};

int mk_cmd_find_and_modify(mk_cmd_t *c)
{
    fam_args_t a = {0};
    bson_init(&a.query);
    if (mk_cmd_coll_name(c, &a.coll) != MK_OK) return MK_ERR;
    if (mk_cmd_check_fields(c, fam_fields) != MK_OK) return MK_ERR;
    bson_iter_t uit;
    if (bson_iter_init_find(&uit, c->body, "update") && BSON_ITER_HOLDS_ARRAY(&uit))
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE,
                             "pipeline-style updates are not supported yet");
    if (mk_opt_doc(c->body, "query", &a.query, NULL, c->err) != MK_OK ||
        mk_opt_doc(c->body, "sort", &a.sort, &a.has_sort, c->err) != MK_OK ||
        mk_opt_doc(c->body, "fields", &a.fields, &a.has_fields, c->err) != MK_OK ||
        mk_opt_doc(c->body, "update", &a.update, &a.has_update, c->err) != MK_OK ||
        mk_opt_array(c->body, "arrayFilters", &a.filters, &a.has_filters, c->err) != MK_OK ||
        mk_opt_bool(c->body, "remove", &a.remove, c->err) != MK_OK ||
        mk_opt_bool(c->body, "new", &a.return_new, c->err) != MK_OK ||
        mk_opt_bool(c->body, "upsert", &a.upsert, c->err) != MK_OK)
        return MK_ERR;
    if (a.remove && a.has_update)
        return mk_error_setc(c->err, MK_CODE_FAILED_TO_PARSE,
                             "Cannot specify both an update and remove=true");
    if (!a.remove && !a.has_update)
        return mk_error_setc(c->err, MK_CODE_FAILED_TO_PARSE,
                             "Either an update or remove=true must be specified");
    if (a.remove && a.upsert)
        return mk_error_setc(c->err, MK_CODE_FAILED_TO_PARSE,
                             "Cannot specify both upsert=true and remove=true");
    if (a.remove && a.return_new)
        return mk_error_setc(c->err, MK_CODE_FAILED_TO_PARSE,
                             "Cannot specify both new=true and remove=true; 'remove' always "
                             "returns the deleted document");
    return mk_cmd_write(c, fam_body, &a);
}
