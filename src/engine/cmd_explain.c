/* The explain command: the plan a find, count, distinct, update, delete or findAndModify
 * would use, in MongoDB's shapes (queryPlanner.winningPlan with COLLSCAN / IXSCAN / FETCH /
 * SORT / SKIP / LIMIT / PROJECTION stages; executionStats with nReturned, totalKeysExamined,
 * totalDocsExamined, executionTimeMillis and per-stage figures). Writes are never performed:
 * their explain runs the plan's read side only. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/command.h"
#include "engine/planner.h"

typedef struct query {
    const char *verb; /* find, count, distinct, update, delete, findAndModify */
    const char *coll;
    bson_t filter, sort, projection;
    bool has_sort, has_projection, has_hint;
    bson_iter_t hint;
    int64_t skip, limit;
} query_t;

static void sub_doc(bson_iter_t *it, bson_t *out, bool *present)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) return;
    const uint8_t *d;
    uint32_t l;
    bson_iter_document(it, &l, &d);
    if (bson_init_static(out, d, l) && present) *present = true;
}

/* Reads what explain needs from the inner command (the command itself validates the rest). */
static int read_query(mk_cmd_t *c, const bson_t *inner, query_t *q)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, inner) || !bson_iter_next(&it))
        return mk_error_setc(c->err, MK_CODE_FAILED_TO_PARSE, "explain needs a command");
    q->verb = bson_iter_key(&it);
    static const char *const verbs[] = {"find",   "count",         "distinct",      "update",
                                        "delete", "findAndModify", "findandmodify", NULL};
    bool known = false;
    for (const char *const *v = verbs; *v && !known; v++) known = strcmp(*v, q->verb) == 0;
    if (!known)
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE, "explain of '%s' is not supported yet",
                             q->verb);
    if (!BSON_ITER_HOLDS_UTF8(&it))
        return mk_error_setc(c->err, MK_CODE_INVALID_NAMESPACE, "collection name must be a string");
    q->coll = bson_iter_utf8(&it, NULL);
    bson_init(&q->filter);
    const char *filter_field = strcmp(q->verb, "find") == 0 ? "filter" : "query";
    bool is_write = strcmp(q->verb, "update") == 0 || strcmp(q->verb, "delete") == 0;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, filter_field) == 0)
            sub_doc(&it, &q->filter, NULL);
        else if (strcmp(k, "sort") == 0)
            sub_doc(&it, &q->sort, &q->has_sort);
        else if (strcmp(k, "projection") == 0 || strcmp(k, "fields") == 0)
            sub_doc(&it, &q->projection, &q->has_projection);
        else if (strcmp(k, "hint") == 0) {
            q->hint = it;
            q->has_hint = true;
        } else if (strcmp(k, "skip") == 0 && BSON_ITER_HOLDS_NUMBER(&it))
            q->skip = bson_iter_as_int64(&it);
        else if (strcmp(k, "limit") == 0 && BSON_ITER_HOLDS_NUMBER(&it))
            q->limit =
                bson_iter_as_int64(&it) < 0 ? -bson_iter_as_int64(&it) : bson_iter_as_int64(&it);
        else if (is_write && (strcmp(k, "updates") == 0 || strcmp(k, "deletes") == 0) &&
                 BSON_ITER_HOLDS_ARRAY(&it)) {
            /* the first statement's q (and hint) */
            bson_iter_t st, f;
            if (bson_iter_recurse(&it, &st) && bson_iter_next(&st) &&
                BSON_ITER_HOLDS_DOCUMENT(&st) && bson_iter_recurse(&st, &f)) {
                while (bson_iter_next(&f)) {
                    if (strcmp(bson_iter_key(&f), "q") == 0) sub_doc(&f, &q->filter, NULL);
                    if (strcmp(bson_iter_key(&f), "hint") == 0) {
                        q->hint = f;
                        q->has_hint = true;
                    }
                    if (strcmp(bson_iter_key(&f), "limit") == 0) q->limit = bson_iter_as_int64(&f);
                    if (strcmp(bson_iter_key(&f), "multi") == 0 && !bson_iter_as_bool(&f))
                        q->limit = 1;
                }
            }
        }
    }
    if (strcmp(q->verb, "update") == 0 && q->limit == 0) {
        /* update without multi touches one document */
        q->limit = 1;
        bson_iter_t u;
        if (bson_iter_init_find(&u, inner, "updates")) {
            bson_iter_t st, f;
            if (bson_iter_recurse(&u, &st) && bson_iter_next(&st) && bson_iter_recurse(&st, &f) &&
                bson_iter_find(&f, "multi") && bson_iter_as_bool(&f))
                q->limit = 0;
        }
    }
    if (strncmp(q->verb, "findAndModify", 13) == 0 || strcmp(q->verb, "findandmodify") == 0)
        q->limit = 1;
    return MK_OK;
}

typedef struct counted {
    int64_t n, skip, limit;
    bool sorted_needed; /* a blocking sort: everything must be read */
} counted_t;

static int count_result(void *ud, const bson_t *doc, const MDB_val *key,
                        const mk_match_details_t *md)
{
    counted_t *ct = ud;
    ct->n++;
    if (!ct->sorted_needed && ct->limit > 0 && ct->n >= ct->skip + ct->limit) return MK_SCAN_STOP;
    return MK_OK;
}

static int64_t elapsed_ms(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static int stages(const query_t *q, const mk_plan_t *plan, bool stats, int64_t n_final,
                  const mk_exec_stats_t *st, bson_t *out, mk_error_t *err)
{
    /* layers from the top: PROJECTION, LIMIT, SKIP, SORT, then the access plan */
    const char *names[4];
    int n = 0;
    bool find = strcmp(q->verb, "find") == 0;
    if (find && q->has_projection && !bson_empty(&q->projection)) names[n++] = "PROJECTION_DEFAULT";
    if (q->limit > 0) names[n++] = "LIMIT";
    if (find && q->skip > 0) names[n++] = "SKIP";
    if (q->has_sort && !bson_empty(&q->sort) && !plan->sorted) names[n++] = "SORT";
    bson_t levels[5];
    bson_t *cur = out;
    for (int i = 0; i < n; i++) {
        BSON_APPEND_UTF8(cur, "stage", names[i]);
        if (strcmp(names[i], "LIMIT") == 0) BSON_APPEND_INT64(cur, "limitAmount", q->limit);
        if (strcmp(names[i], "SKIP") == 0) BSON_APPEND_INT64(cur, "skipAmount", q->skip);
        if (strcmp(names[i], "SORT") == 0) {
            BSON_APPEND_DOCUMENT(cur, "sortPattern", &q->sort);
            BSON_APPEND_INT32(cur, "memLimit", MK_SORT_MEMORY_LIMIT);
            BSON_APPEND_UTF8(cur, "type", "simple");
        }
        if (strcmp(names[i], "PROJECTION_DEFAULT") == 0)
            BSON_APPEND_DOCUMENT(cur, "transformBy", &q->projection);
        if (stats) BSON_APPEND_INT64(cur, "nReturned", n_final);
        bson_append_document_begin(cur, "inputStage", -1, &levels[i]);
        cur = &levels[i];
    }
    int rc = mk_plan_explain(plan, &q->filter, stats ? st : NULL, cur, err);
    for (int i = n - 1; i >= 0; i--) bson_append_document_end(i ? &levels[i - 1] : out, &levels[i]);
    return rc;
}

int mk_cmd_explain(mk_cmd_t *c)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(&c->first))
        return mk_error_setc(c->err, MK_CODE_TYPE_MISMATCH,
                             "explain command requires a nested object");
    const uint8_t *d;
    uint32_t l;
    bson_t inner;
    bson_iter_document(&c->first, &l, &d);
    bson_init_static(&inner, d, l);
    const char *verbosity = "allPlansExecution";
    bson_iter_t vit;
    if (bson_iter_init_find(&vit, c->body, "verbosity")) {
        if (!BSON_ITER_HOLDS_UTF8(&vit))
            return mk_error_setc(c->err, MK_CODE_TYPE_MISMATCH, "verbosity must be a string");
        verbosity = bson_iter_utf8(&vit, NULL);
        if (strcmp(verbosity, "queryPlanner") && strcmp(verbosity, "executionStats") &&
            strcmp(verbosity, "allPlansExecution"))
            return mk_error_setc(c->err, MK_CODE_FAILED_TO_PARSE,
                                 "verbosity string must be one of {'queryPlanner', "
                                 "'executionStats', 'allPlansExecution'}");
    }
    bool stats = strcmp(verbosity, "queryPlanner") != 0;
    query_t q = {0};
    if (read_query(c, &inner, &q) != MK_OK) return MK_ERR;
    if (mk_check_coll_name(q.coll, c->err) != MK_OK) return MK_ERR;
    mk_matcher_t *m = mk_matcher_compile(&q.filter, c->err);
    if (!m) return MK_ERR;
    MDB_txn *txn;
    if (mk_cmd_read(c, &txn) != MK_OK) {
        mk_matcher_destroy(m);
        return MK_ERR;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mk_coll_t *coll;
    mk_plan_t plan;
    memset(&plan, 0, sizeof plan);
    plan.direction = 1;
    bson_value_t id;
    int rc = mk_coll_find(c->eng, txn, c->db, q.coll, &coll, c->err);
    if (rc == MK_OK && coll && !q.has_hint && mk_filter_id_eq(&q.filter, &id))
        plan.kind = MK_PLAN_IDHACK;
    else if (rc == MK_OK && coll)
        rc = mk_plan_build(txn, coll, &q.filter, m, q.has_sort ? &q.sort : NULL,
                           q.has_hint ? &q.hint : NULL, &plan, c->err);
    mk_exec_stats_t st = {0};
    counted_t ct = {.skip = q.skip,
                    .limit = q.limit,
                    .sorted_needed = q.has_sort && !bson_empty(&q.sort) && !plan.sorted};
    if (rc == MK_OK && coll && stats)
        rc = mk_plan_run(txn, coll, &plan, m, plan.kind == MK_PLAN_IDHACK ? &id : NULL, NULL, false,
                         count_result, &ct, &st, c->err);
    mk_cmd_read_done(c, txn);
    int64_t n_final = ct.n - q.skip;
    if (n_final < 0) n_final = 0;
    if (q.limit > 0 && n_final > q.limit) n_final = q.limit;
    if (rc == MK_OK) {
        bson_t qp, wp, rej, es, stages_doc;
        char ns[300];
        snprintf(ns, sizeof ns, "%s.%s", c->db, q.coll);
        bson_append_document_begin(c->reply, "queryPlanner", -1, &qp);
        BSON_APPEND_INT32(&qp, "plannerVersion", 1);
        BSON_APPEND_UTF8(&qp, "namespace", ns);
        BSON_APPEND_BOOL(&qp, "indexFilterSet", false);
        BSON_APPEND_DOCUMENT(&qp, "parsedQuery", &q.filter);
        bson_append_document_begin(&qp, "winningPlan", -1, &wp);
        rc = stages(&q, &plan, false, 0, NULL, &wp, c->err);
        bson_append_document_end(&qp, &wp);
        bson_append_array_begin(&qp, "rejectedPlans", -1, &rej);
        for (int i = 0; i < plan.nrejected; i++) {
            char k[16];
            const char *kp;
            bson_uint32_to_string((uint32_t)i, &kp, k, sizeof k);
            bson_t r;
            bson_append_document_begin(&rej, kp, -1, &r);
            BSON_APPEND_UTF8(&r, "stage", "FETCH");
            bson_t in;
            bson_append_document_begin(&r, "inputStage", -1, &in);
            BSON_APPEND_UTF8(&in, "stage", "IXSCAN");
            BSON_APPEND_UTF8(&in, "indexName", plan.rejected[i]);
            bson_append_document_end(&r, &in);
            bson_append_document_end(&rej, &r);
        }
        bson_append_array_end(&qp, &rej);
        bson_append_document_end(c->reply, &qp);
        if (stats && rc == MK_OK) {
            bson_append_document_begin(c->reply, "executionStats", -1, &es);
            BSON_APPEND_BOOL(&es, "executionSuccess", true);
            BSON_APPEND_INT64(&es, "nReturned", n_final);
            BSON_APPEND_INT64(&es, "executionTimeMillis", elapsed_ms(&t0));
            BSON_APPEND_INT64(&es, "totalKeysExamined", st.keys_examined);
            BSON_APPEND_INT64(&es, "totalDocsExamined", st.docs_examined);
            bson_append_document_begin(&es, "executionStages", -1, &stages_doc);
            rc = stages(&q, &plan, true, n_final, &st, &stages_doc, c->err);
            bson_append_document_end(&es, &stages_doc);
            bson_append_document_end(c->reply, &es);
        }
        BSON_APPEND_DOCUMENT(c->reply, "command", &inner);
        bson_t si;
        bson_append_document_begin(c->reply, "serverInfo", -1, &si);
        BSON_APPEND_UTF8(&si, "host", "meerkat");
        BSON_APPEND_UTF8(&si, "version", "7.0.0");
        bson_append_document_end(c->reply, &si);
    }
    mk_plan_clear(&plan);
    mk_matcher_destroy(m);
    return rc;
}
