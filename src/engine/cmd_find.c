/* Read commands: find, getMore, killCursors, count, distinct. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"
#include "engine/command.h"
#include "engine/cursor.h"
#include "engine/scan.h"
#include "engine/sort.h"

#define DEFAULT_FIRST_BATCH 101
/* Room left in a 16 MiB reply for the envelope around the batch. */
#define BATCH_BYTES (MK_MAX_BSON_SIZE - 16 * 1024)

typedef struct batch {
    bson_t *arr;      /* the batch array being filled */
    uint32_t n;       /* documents in it */
    int64_t max;      /* documents wanted (0 < max) */
    size_t bytes;     /* bytes in it */
    int64_t skip;     /* matches still to skip */
    mk_cursor_t *cur; /* projection, limit, resume key */
    bool full;        /* stopped because the batch is full */
    mk_error_t *err;
} batch_t;

static int append_doc(batch_t *b, const bson_t *doc)
{
    char key[16];
    const char *k;
    bson_uint32_to_string(b->n, &k, key, sizeof key);
    if (!bson_append_document(b->arr, k, -1, doc)) return mk_error_nomem(b->err);
    b->n++;
    b->bytes += doc->len;
    return MK_OK;
}

static int scan_into_batch(void *ud, const bson_t *doc, const MDB_val *key,
                           const mk_match_details_t *md)
{
    batch_t *b = ud;
    mk_cursor_t *c = b->cur;
    if (b->n >= b->max || (b->n > 0 && b->bytes + doc->len > BATCH_BYTES)) {
        b->full = true;
        return MK_SCAN_STOP;
    }
    if (b->skip > 0) {
        b->skip--;
    } else if (c->projection && !mk_projection_is_identity(c->projection)) {
        bson_t out = BSON_INITIALIZER;
        if (mk_projection_apply(c->projection, doc, md, &out, b->err) != MK_OK) {
            bson_destroy(&out);
            return MK_ERR;
        }
        int rc = append_doc(b, &out);
        bson_destroy(&out);
        if (rc != MK_OK) return rc;
    } else if (append_doc(b, doc) != MK_OK) {
        return MK_ERR;
    }
    mk_buf_reset(&c->resume);
    mk_buf_append(&c->resume, key->mv_data, key->mv_size);
    if (c->resume.failed) return mk_error_nomem(b->err);
    if (c->remaining > 0 && --c->remaining == 0) return MK_SCAN_STOP;
    return MK_OK;
}

/* Fills one batch from cursor c; *done when it is exhausted (or its limit reached). */
static int fill_batch(mk_cmd_t *cmd, mk_cursor_t *c, int64_t max, bson_t *arr, bool *done,
                      mk_error_t *err)
{
    *done = false;
    if (!c->scan) {
        batch_t b = {.arr = arr, .max = max, .err = err};
        while (c->pos < c->ndocs && b.n < max) {
            mk_raw_t *d = &c->docs[c->pos];
            if (b.n > 0 && b.bytes + d->len > BATCH_BYTES) break;
            bson_t view;
            if (!bson_init_static(&view, d->data, d->len) || append_doc(&b, &view) != MK_OK)
                return mk_error_nomem(err);
            free(d->data);
            c->pos++;
        }
        *done = c->pos >= c->ndocs;
        return MK_OK;
    }
    if (c->remaining == 0) {
        *done = true;
        return MK_OK;
    }
    MDB_txn *txn;
    mk_engine_t *eng = cmd->eng;
    if (mk_cmd_read(cmd, &txn) != MK_OK) return MK_ERR;
    mk_coll_t *coll;
    int rc = mk_coll_find(eng, txn, c->db, c->coll, &coll, err);
    if (rc != MK_OK || !coll) {
        mk_cmd_read_done(cmd, txn);
        *done = true;
        return rc;
    }
    if (!mk_plan_still_valid(&c->plan, coll, txn)) {
        mk_cmd_read_done(cmd, txn);
        return mk_error_set(err, 175, "QueryPlanKilled",
                            "query plan killed :: caused by :: index '%s' dropped",
                            c->plan.ix->name);
    }
    MDB_val after = {c->resume.len, c->resume.data};
    batch_t b = {.arr = arr, .max = max, .skip = c->skip, .cur = c, .err = err};
    rc = mk_plan_run(txn, coll, &c->plan, c->matcher, c->has_id_eq ? &c->id_eq : NULL,
                     c->resume.len ? &after : NULL,
                     c->projection && mk_projection_needs_details(c->projection), scan_into_batch,
                     &b, NULL, err);
    mk_cmd_read_done(cmd, txn);
    c->skip = b.skip;
    if (rc != MK_OK) return rc;
    *done = !b.full || c->remaining == 0;
    return MK_OK;
}

/* Errors raised while a plan runs carry MongoDB's executor prefix. */
static int executor_error(mk_cmd_t *c, const char *cmd)
{
    if (c->err->code == MK_CODE_INTERNAL || strncmp(c->err->message, "Executor error", 14) == 0)
        return MK_ERR;
    char cause[MK_ERROR_MSG_MAX];
    memcpy(cause, c->err->message, sizeof cause);
    cause[sizeof cause - 1] = 0;
    int n = snprintf(c->err->message, sizeof c->err->message,
                     "Executor error during %s command :: caused by :: ", cmd);
    if (n > 0 && (size_t)n < sizeof c->err->message) {
        size_t room = sizeof c->err->message - 1 - (size_t)n, len = strlen(cause);
        memcpy(c->err->message + n, cause, len < room ? len : room);
        c->err->message[n + (int)(len < room ? len : room)] = 0;
    }
    return MK_ERR;
}

/* The batch is written straight into the reply (no copy): cursor_begin opens
 * { cursor: { <field>: [ ... ] and cursor_end closes the array and adds id and ns. */
static void cursor_begin(mk_cmd_t *c, const char *field, bson_t *cur, bson_t *arr)
{
    bson_append_document_begin(c->reply, "cursor", 6, cur);
    bson_append_array_begin(cur, field, -1, arr);
}

static void cursor_end(mk_cmd_t *c, const char *coll, int64_t id, bson_t *cur, bson_t *arr)
{
    bson_append_array_end(cur, arr);
    BSON_APPEND_INT64(cur, "id", id);
    char ns[300];
    size_t dl = strlen(c->db), cl = strlen(coll); /* validated names: dl < 64, cl <= 200 */
    memcpy(ns, c->db, dl);
    ns[dl] = '.';
    memcpy(ns + dl + 1, coll, cl);
    bson_append_utf8(cur, "ns", 2, ns, (int)(dl + 1 + cl));
    bson_append_document_end(c->reply, cur);
}

/* Chooses the cursor's plan (a point lookup needs none). */
static int plan_cursor(mk_cmd_t *c, mk_cursor_t *cur, const bson_t *filter, const bson_t *sort,
                       const bson_iter_t *hint)
{
    if (cur->has_id_eq && !hint) {
        cur->plan.kind = MK_PLAN_IDHACK;
        return MK_OK;
    }
    if (!cur->matcher && !(cur->matcher = mk_matcher_compile(filter, c->err))) return MK_ERR;
    MDB_txn *txn;
    if (mk_cmd_read(c, &txn) != MK_OK) return MK_ERR;
    mk_coll_t *coll;
    int rc = mk_coll_find(c->eng, txn, c->db, cur->coll, &coll, c->err);
    if (rc == MK_OK && coll)
        rc = mk_plan_build(txn, coll, filter, cur->matcher, sort, hint, &cur->plan, c->err);
    mk_cmd_read_done(c, txn);
    return rc;
}

/* Compiles the query's filter and projection into the cursor. A filter that pins `_id` to
 * one value needs no matcher: the record key encodes MongoDB's equality exactly (decimals
 * excepted, see keyenc.h, and shortened keys are confirmed against the stored _id). */
static int prepare_cursor(mk_cmd_t *c, mk_cursor_t *cur, const bson_t *filter,
                          const bson_t *projection)
{
    bson_value_t id;
    if (mk_filter_id_eq(filter, &id)) {
        bson_value_copy(&id, &cur->id_eq);
        cur->has_id_eq = true;
    }
    if (!cur->has_id_eq || id.value_type == BSON_TYPE_DECIMAL128) {
        if (!(cur->matcher = mk_matcher_compile(filter, c->err))) return MK_ERR;
    }
    if (projection && !bson_empty(projection)) {
        if (!(cur->projection_spec = bson_copy(projection))) return mk_error_nomem(c->err);
        cur->projection = mk_projection_compile(cur->projection_spec, filter, c->err);
        if (!cur->projection) return MK_ERR;
    }
    return MK_OK;
}

static int add_to_sorter(void *ud, const bson_t *doc, const MDB_val *key,
                         const mk_match_details_t *md)
{
    void **ctx = ud;
    return mk_sorter_add(ctx[0], doc, 0, ctx[1]);
}

/* Runs the query with a blocking sort into a buffered cursor: sort (keeping only skip + limit
 * documents when there is a limit), skip, project. */
static int sorted_into_cursor(mk_cmd_t *c, mk_cursor_t *cur, const bson_t *sort_spec, int64_t skip,
                              int64_t limit)
{
    mk_sort_t *sort = mk_sort_compile(sort_spec, c->err);
    if (!sort) return MK_ERR;
    uint64_t keep = limit > 0 ? (uint64_t)skip + (uint64_t)limit : 0;
    mk_sorter_t *st = mk_sorter_new(sort, keep, MK_SORT_MEMORY_LIMIT, c->err);
    if (!st) {
        mk_sort_destroy(sort);
        return MK_ERR;
    }
    MDB_txn *txn;
    int rc = mk_cmd_read(c, &txn);
    if (rc == MK_OK) {
        mk_coll_t *coll;
        rc = mk_coll_find(c->eng, txn, c->db, cur->coll, &coll, c->err);
        if (rc == MK_OK && coll) {
            void *ctx[2] = {st, c->err};
            rc = mk_plan_run(txn, coll, &cur->plan, cur->matcher,
                             cur->has_id_eq ? &cur->id_eq : NULL, NULL, false, add_to_sorter, ctx,
                             NULL, c->err);
        }
        mk_cmd_read_done(c, txn);
    }
    size_t total = 0, n = 0;
    if (rc == MK_OK) {
        mk_sorter_finish(st);
        total = mk_sorter_count(st);
        if ((uint64_t)skip < total && !(cur->docs = calloc(total - (size_t)skip, sizeof(mk_raw_t))))
            rc = mk_error_nomem(c->err);
    }
    bool project = cur->projection && !mk_projection_is_identity(cur->projection);
    for (size_t i = (size_t)skip; rc == MK_OK && i < total; i++) {
        bson_t view;
        mk_sorter_get(st, i, &view, NULL);
        if (!project) {
            if (!mk_raw_copy(&cur->docs[n++], &view)) rc = mk_error_nomem(c->err);
            continue;
        }
        mk_match_details_t md = {0};
        if (mk_projection_needs_details(cur->projection))
            mk_matcher_match(cur->matcher, &view, &md);
        bson_t out = BSON_INITIALIZER;
        rc = mk_projection_apply(cur->projection, &view, &md, &out, c->err);
        if (rc == MK_OK && !mk_raw_copy(&cur->docs[n++], &out)) rc = mk_error_nomem(c->err);
        bson_destroy(&out);
    }
    mk_sorter_destroy(st);
    mk_sort_destroy(sort);
    cur->ndocs = n;
    cur->pos = 0;
    cur->scan = false;
    return rc;
}

int mk_cmd_find(mk_cmd_t *c)
{
    const char *coll;
    if (mk_cmd_coll_name(c, &coll) != MK_OK) return MK_ERR;
    bson_t filter = BSON_INITIALIZER, sort, projection;
    bool has_sort = false, has_proj = false, has_hint = false, batch_given = false;
    int64_t skip = 0, limit = 0, batch = DEFAULT_FIRST_BATCH;
    bool single = false, disk_use = false, has_min = false, has_max = false;
    bson_t min_doc, max_doc;
    bson_iter_t hint;
    const mk_optspec_t spec[] = {
        {"filter", MK_OPT_DOC, &filter, NULL},
        {"sort", MK_OPT_DOC, &sort, &has_sort},
        {"projection", MK_OPT_DOC, &projection, &has_proj},
        {"skip", MK_OPT_INT64, &skip, NULL},
        {"limit", MK_OPT_INT64, &limit, NULL},
        {"batchSize", MK_OPT_INT64, &batch, &batch_given},
        {"singleBatch", MK_OPT_BOOL, &single, NULL},
        {"hint", MK_OPT_ITER, &hint, &has_hint},
        {"allowDiskUse", MK_OPT_BOOL, &disk_use, NULL},
        {"noCursorTimeout", MK_OPT_IGNORE, NULL, NULL},
        {"allowPartialResults", MK_OPT_IGNORE, NULL, NULL},
        {"readOnce", MK_OPT_IGNORE, NULL, NULL},
        {"oplogReplay", MK_OPT_IGNORE, NULL, NULL},
        {"returnKey", MK_OPT_UNSUPPORTED, NULL, NULL},
        {"showRecordId", MK_OPT_UNSUPPORTED, NULL, NULL},
        {"tailable", MK_OPT_UNSUPPORTED, NULL, NULL},
        {"awaitData", MK_OPT_UNSUPPORTED, NULL, NULL},
        {"min", MK_OPT_DOC, &min_doc, &has_min},
        {"max", MK_OPT_DOC, &max_doc, &has_max},
        {NULL, MK_OPT_NONE, NULL, NULL},
    };
    if (mk_cmd_parse(c, spec) != MK_OK) return MK_ERR;
    if (skip < 0)
        return mk_error_set(c->err, 51024, "Location51024",
                            "BSON field 'skip' value must be >= 0, actual value '%lld'",
                            (long long)skip);
    if (batch < 0)
        return mk_error_set(c->err, 51024, "Location51024",
                            "BSON field 'batchSize' value must be >= 0, actual value '%lld'",
                            (long long)batch);
    if (limit < 0) {
        /* legacy negative limit: one batch of |limit| documents */
        if (limit == INT64_MIN) limit = INT64_MAX;
        limit = -limit;
        single = true;
    }
    if (limit > 0 && (!batch_given || batch > limit)) batch = limit;
    if (!batch_given && batch == 0) batch = DEFAULT_FIRST_BATCH;

    mk_cursor_t *cur = mk_cursor_new(c->db, coll);
    if (!cur) return mk_error_nomem(c->err);
    cur->scan = true;
    cur->remaining = limit > 0 ? limit : -1;
    cur->skip = skip;
    if (prepare_cursor(c, cur, &filter, has_proj ? &projection : NULL) != MK_OK) {
        mk_cursor_free(cur);
        return MK_ERR;
    }
    if ((has_min || has_max) && !has_hint) {
        mk_cursor_free(cur);
        return mk_error_set(c->err, 51173, "Location51173",
                            "When using min()/max() a hint of which index to use must be "
                            "provided");
    }
    int rc = plan_cursor(c, cur, &filter, has_sort ? &sort : NULL, has_hint ? &hint : NULL);
    bool no_coll = cur->plan.kind == MK_PLAN_COLLSCAN && cur->plan.ncandidates == 0;
    if (rc == MK_OK && (has_min || has_max) && !no_coll)
        rc = mk_plan_set_min_max(&cur->plan, has_min ? &min_doc : NULL, has_max ? &max_doc : NULL,
                                 c->err);
    if (rc != MK_OK) {
        mk_cursor_free(cur);
        return MK_ERR;
    }
    bson_t nosort = BSON_INITIALIZER;
    if (has_sort && !bson_empty(&sort) && !cur->plan.sorted) {
        cur->skip = 0;
        rc = sorted_into_cursor(c, cur, &sort, skip, limit);
    } else if (cur->plan.kind == MK_PLAN_IXSCAN && cur->plan.ix->multikey) {
        /* a multikey scan removes duplicates with a set that cannot outlive the batch */
        cur->skip = 0;
        rc = sorted_into_cursor(c, cur, &nosort, skip, limit);
    }
    bson_t cdoc, arr;
    bool done = false;
    cursor_begin(c, "firstBatch", &cdoc, &arr);
    if (rc == MK_OK && batch > 0) rc = fill_batch(c, cur, batch, &arr, &done, c->err);
    if (rc != MK_OK) {
        cursor_end(c, coll, 0, &cdoc, &arr); /* closed, then replaced by the error reply */
        mk_cursor_free(cur);
        if (disk_use && c->err->code == 292)
            mk_error_set(c->err, 292, "QueryExceededMemoryLimitNoDiskUseAllowed",
                         "Sort exceeded memory limit of %d bytes: meerkat does not spill sorts "
                         "to disk yet, allowDiskUse cannot help; add an index for the sort or a "
                         "limit",
                         MK_SORT_MEMORY_LIMIT);
        return executor_error(c, "find");
    }
    int64_t id = 0;
    if (!done && !single) {
        mk_cursor_register(c->eng, cur);
        id = cur->id;
    } else {
        mk_cursor_free(cur);
    }
    cursor_end(c, coll, id, &cdoc, &arr);
    return MK_OK;
}

static int cursor_id_of(mk_cmd_t *c, int64_t *id)
{
    switch (bson_iter_type(&c->first)) {
    case BSON_TYPE_INT64:
        *id = bson_iter_int64(&c->first);
        return MK_OK;
    case BSON_TYPE_INT32:
        *id = bson_iter_int32(&c->first);
        return MK_OK;
    default:
        return mk_error_setc(
            c->err, MK_CODE_TYPE_MISMATCH,
            "BSON field 'getMore.getMore' is the wrong type, expected type 'long'");
    }
}

static const char *const get_more_fields[] = {"collection", "batchSize", "term",
                                              "lastKnownCommittedOpTime", NULL};

int mk_cmd_get_more(mk_cmd_t *c)
{
    int64_t id = 0;
    if (cursor_id_of(c, &id) != MK_OK) return MK_ERR;
    if (mk_cmd_check_fields(c, get_more_fields) != MK_OK) return MK_ERR;
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->body, "collection") || !BSON_ITER_HOLDS_UTF8(&it))
        return mk_error_set(c->err, 40414, "Location40414",
                            "BSON field 'getMore.collection' is missing but a required field");
    const char *coll = bson_iter_utf8(&it, NULL);
    int64_t batch = INT64_MAX;
    if (mk_opt_int64(c->body, "batchSize", &batch, c->err) != MK_OK) return MK_ERR;
    if (batch <= 0) batch = INT64_MAX;
    bool busy;
    mk_cursor_t *cur = mk_cursor_checkout(c->eng, id, &busy);
    if (!cur) {
        if (busy)
            return mk_error_set(c->err, 143, "CursorInUse", "cursor id %lld is already in use",
                                (long long)id);
        return mk_error_setc(c->err, MK_CODE_CURSOR_NOT_FOUND, "cursor id %lld not found",
                             (long long)id);
    }
    if (strcmp(cur->db, c->db) != 0 || strcmp(cur->coll, coll) != 0) {
        mk_cursor_checkin(c->eng, cur, false);
        return mk_error_set(c->err, 13, "Unauthorized",
                            "Requested getMore on namespace '%s.%s', but cursor belongs to a "
                            "different namespace",
                            c->db, coll);
    }
    bson_t cdoc, arr;
    bool done;
    cursor_begin(c, "nextBatch", &cdoc, &arr);
    int rc = fill_batch(c, cur, batch, &arr, &done, c->err);
    mk_cursor_checkin(c->eng, cur, done || rc != MK_OK);
    if (rc != MK_OK) {
        cursor_end(c, coll, 0, &cdoc, &arr);
        return executor_error(c, "getMore");
    }
    cursor_end(c, coll, done ? 0 : id, &cdoc, &arr);
    return MK_OK;
}

int mk_cmd_kill_cursors(mk_cmd_t *c)
{
    const char *coll;
    if (mk_cmd_coll_name(c, &coll) != MK_OK) return MK_ERR;
    bson_t ids;
    bool present;
    if (mk_opt_array(c->body, "cursors", &ids, &present, c->err) != MK_OK) return MK_ERR;
    if (!present)
        return mk_error_set(c->err, 40414, "Location40414",
                            "BSON field 'killCursors.cursors' is missing but a required field");
    bson_t killed, not_found, alive, unknown;
    bson_t *lists[2];
    (void)lists;
    bson_iter_t it;
    uint32_t nk = 0, nn = 0;
    bson_append_array_begin(c->reply, "cursorsKilled", -1, &killed);
    bson_t nf_tmp = BSON_INITIALIZER;
    bson_iter_init(&it, &ids);
    while (bson_iter_next(&it)) {
        int64_t id = bson_iter_as_int64(&it);
        char key[16];
        const char *k;
        if (mk_cursor_kill(c->eng, id)) {
            bson_uint32_to_string(nk++, &k, key, sizeof key);
            bson_append_int64(&killed, k, -1, id);
        } else {
            bson_uint32_to_string(nn++, &k, key, sizeof key);
            bson_append_int64(&nf_tmp, k, -1, id);
        }
    }
    bson_append_array_end(c->reply, &killed);
    bson_append_array_begin(c->reply, "cursorsNotFound", -1, &not_found);
    bson_iter_init(&it, &nf_tmp);
    while (bson_iter_next(&it))
        bson_append_value(&not_found, bson_iter_key(&it), -1, bson_iter_value(&it));
    bson_append_array_end(c->reply, &not_found);
    bson_destroy(&nf_tmp);
    bson_append_array_begin(c->reply, "cursorsAlive", -1, &alive);
    bson_append_array_end(c->reply, &alive);
    bson_append_array_begin(c->reply, "cursorsUnknown", -1, &unknown);
    bson_append_array_end(c->reply, &unknown);
    return MK_OK;
}

typedef struct counter {
    int64_t n, skip, limit;
} counter_t;

static int count_doc(void *ud, const bson_t *doc, const MDB_val *key, const mk_match_details_t *md)
{
    counter_t *ct = ud;
    if (ct->skip > 0) {
        ct->skip--;
        return MK_OK;
    }
    ct->n++;
    return ct->limit > 0 && ct->n >= ct->limit ? MK_SCAN_STOP : MK_OK;
}

static const char *const count_fields[] = {"query", "limit", "skip", "hint", "fields", NULL};

int mk_cmd_count(mk_cmd_t *c)
{
    const char *coll;
    if (mk_cmd_coll_name(c, &coll) != MK_OK) return MK_ERR;
    if (mk_cmd_check_fields(c, count_fields) != MK_OK) return MK_ERR;
    bson_t query = BSON_INITIALIZER;
    counter_t ct = {0};
    if (mk_opt_doc(c->body, "query", &query, NULL, c->err) != MK_OK ||
        mk_opt_int64(c->body, "skip", &ct.skip, c->err) != MK_OK ||
        mk_opt_int64(c->body, "limit", &ct.limit, c->err) != MK_OK)
        return MK_ERR;
    if (ct.skip < 0)
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE, "skip value is negative in count query");
    if (ct.limit < 0) ct.limit = -ct.limit;
    mk_matcher_t *m = mk_matcher_compile(&query, c->err);
    if (!m) return MK_ERR;
    MDB_txn *txn;
    if (mk_cmd_read(c, &txn) != MK_OK) {
        mk_matcher_destroy(m);
        return MK_ERR;
    }
    mk_coll_t *cl;
    int rc = mk_coll_find(c->eng, txn, c->db, coll, &cl, c->err);
    if (rc == MK_OK && cl) {
        MDB_stat st;
        if (mk_matcher_is_empty(m) && mdb_stat(txn, cl->dbi, &st) == 0) {
            int64_t n = (int64_t)st.ms_entries - ct.skip;
            if (n < 0) n = 0;
            if (ct.limit > 0 && n > ct.limit) n = ct.limit;
            ct.n = n;
        } else {
            bson_iter_t hint;
            bool has_hint = bson_iter_init_find(&hint, c->body, "hint");
            rc = mk_query_run(txn, cl, &query, m, has_hint ? &hint : NULL, false, count_doc, &ct,
                              NULL, c->err);
        }
    }
    mk_cmd_read_done(c, txn);
    mk_matcher_destroy(m);
    if (rc != MK_OK) return rc;
    if (ct.n <= INT32_MAX)
        BSON_APPEND_INT32(c->reply, "n", (int32_t)ct.n);
    else
        BSON_APPEND_INT64(c->reply, "n", ct.n);
    return MK_OK;
}

typedef struct distinct {
    bson_value_t *vals;
    size_t n, cap;
    const char *path;
    mk_error_t *err;
    int rc;
} distinct_t;

static void add_value(distinct_t *d, const bson_value_t *v)
{
    if (d->rc != MK_OK) return;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 32;
        bson_value_t *nv = realloc(d->vals, cap * sizeof *nv);
        if (!nv) {
            d->rc = mk_error_nomem(d->err);
            return;
        }
        d->vals = nv;
        d->cap = cap;
    }
    bson_value_copy(v, &d->vals[d->n++]);
}

/* Values reached by the rest of the path from the element `it` stands on: arrays of
 * documents are traversed, and an array at the end contributes its elements. */
static void walk(distinct_t *d, bson_iter_t *it, const char *rest)
{
    bson_type_t t = bson_iter_type(it);
    if (!rest) {
        if (t == BSON_TYPE_ARRAY) {
            bson_iter_t el;
            if (!bson_iter_recurse(it, &el)) return;
            while (bson_iter_next(&el)) add_value(d, bson_iter_value(&el));
        } else {
            add_value(d, bson_iter_value(it));
        }
        return;
    }
    if (t != BSON_TYPE_DOCUMENT && t != BSON_TYPE_ARRAY) return;
    const char *dot = strchr(rest, '.');
    size_t len = dot ? (size_t)(dot - rest) : strlen(rest);
    const char *next = dot ? dot + 1 : NULL;
    bson_iter_t child;
    if (!bson_iter_recurse(it, &child)) return;
    if (t == BSON_TYPE_ARRAY) {
        bool numeric = true;
        for (size_t i = 0; i < len; i++) numeric &= rest[i] >= '0' && rest[i] <= '9';
        while (bson_iter_next(&child)) {
            if (numeric && bson_iter_key_len(&child) == len &&
                memcmp(bson_iter_key(&child), rest, len) == 0) {
                walk(d, &child, next);
            } else if (BSON_ITER_HOLDS_DOCUMENT(&child)) {
                bson_iter_t sub;
                if (!bson_iter_recurse(&child, &sub)) continue;
                while (bson_iter_next(&sub))
                    if (bson_iter_key_len(&sub) == len &&
                        memcmp(bson_iter_key(&sub), rest, len) == 0)
                        walk(d, &sub, next);
            }
        }
        return;
    }
    while (bson_iter_next(&child))
        if (bson_iter_key_len(&child) == len && memcmp(bson_iter_key(&child), rest, len) == 0)
            walk(d, &child, next);
}

static int distinct_doc(void *ud, const bson_t *doc, const MDB_val *key,
                        const mk_match_details_t *md)
{
    distinct_t *d = ud;
    bson_iter_t root;
    /* Treat the document itself as the element the walk starts from. */
    bson_t wrapper = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&wrapper, "r", doc);
    if (bson_iter_init_find(&root, &wrapper, "r")) walk(d, &root, d->path);
    bson_destroy(&wrapper);
    return d->rc;
}

static int cmp_values(const void *a, const void *b)
{
    return mk_value_cmp(a, b);
}

static const char *const distinct_fields[] = {"key", "query", "hint", NULL};

int mk_cmd_distinct(mk_cmd_t *c)
{
    const char *coll;
    if (mk_cmd_coll_name(c, &coll) != MK_OK) return MK_ERR;
    if (mk_cmd_check_fields(c, distinct_fields) != MK_OK) return MK_ERR;
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->body, "key"))
        return mk_error_set(c->err, 40414, "Location40414",
                            "BSON field 'distinct.key' is missing but a required field");
    if (!BSON_ITER_HOLDS_UTF8(&it))
        return mk_error_setc(c->err, MK_CODE_TYPE_MISMATCH,
                             "BSON field 'distinct.key' is the wrong type, expected type 'string'");
    const char *path = bson_iter_utf8(&it, NULL);
    if (!*path)
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE,
                             "FieldPath cannot be constructed with empty string");
    bson_t query = BSON_INITIALIZER;
    if (mk_opt_doc(c->body, "query", &query, NULL, c->err) != MK_OK) return MK_ERR;
    mk_matcher_t *m = mk_matcher_compile(&query, c->err);
    if (!m) return MK_ERR;
    distinct_t d = {.path = path, .err = c->err};
    MDB_txn *txn;
    if (mk_cmd_read(c, &txn) != MK_OK) {
        mk_matcher_destroy(m);
        return MK_ERR;
    }
    mk_coll_t *cl;
    int rc = mk_coll_find(c->eng, txn, c->db, coll, &cl, c->err);
    if (rc == MK_OK && cl) {
        bson_iter_t hint;
        bool has_hint = bson_iter_init_find(&hint, c->body, "hint");
        rc = mk_query_run(txn, cl, &query, m, has_hint ? &hint : NULL, false, distinct_doc, &d,
                          NULL, c->err);
    }
    mk_cmd_read_done(c, txn);
    mk_matcher_destroy(m);
    if (rc == MK_OK) {
        qsort(d.vals, d.n, sizeof *d.vals, cmp_values);
        bson_t arr;
        bson_append_array_begin(c->reply, "values", 6, &arr);
        uint32_t out = 0;
        for (size_t i = 0; i < d.n; i++) {
            if (i > 0 && mk_value_cmp(&d.vals[i - 1], &d.vals[i]) == 0) continue;
            char key[16];
            const char *k;
            bson_uint32_to_string(out++, &k, key, sizeof key);
            bson_append_value(&arr, k, -1, &d.vals[i]);
        }
        bson_append_array_end(c->reply, &arr);
        if (c->reply->len > MK_MAX_BSON_SIZE)
            rc = mk_error_set(c->err, 17217, "Location17217", "distinct too big, 16mb cap");
    }
    for (size_t i = 0; i < d.n; i++) bson_value_destroy(&d.vals[i]);
    free(d.vals);
    return rc;
}
