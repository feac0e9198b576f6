/* The query planner and index scans (see planner.h). */
#include "engine/planner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"

#define TRIAL_WORKS 101 /* keys + documents each candidate may examine in a trial */

static void free_key(mk_buf_t *b)
{
    if (!b) return;
    mk_buf_free(b);
    free(b);
}

void mk_plan_clear(mk_plan_t *plan)
{
    mk_bounds_destroy(plan->bounds);
    free_key(plan->min);
    free_key(plan->max);
    memset(plan, 0, sizeof *plan);
}

/* ---------------------------------------------------------------- index scan */

/* A set of record keys already returned (a multikey index yields a document once per key). */
typedef struct seen {
    uint8_t **keys;
    size_t *lens;
    size_t cap, n;
} seen_t;

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Adds key; *fresh tells whether it was new. */
static int seen_add(seen_t *s, const uint8_t *k, size_t n, bool *fresh, mk_error_t *err)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint8_t **keys = calloc(cap, sizeof *keys);
        size_t *lens = calloc(cap, sizeof *lens);
        if (!keys || !lens) {
            free(keys);
            free(lens);
            return mk_error_nomem(err);
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->keys[i]) continue;
            size_t j = hash_bytes(s->keys[i], s->lens[i]) & (cap - 1);
            while (keys[j]) j = (j + 1) & (cap - 1);
            keys[j] = s->keys[i];
            lens[j] = s->lens[i];
        }
        free(s->keys);
        free(s->lens);
        s->keys = keys;
        s->lens = lens;
        s->cap = cap;
    }
    size_t j = hash_bytes(k, n) & (s->cap - 1);
    while (s->keys[j]) {
        if (s->lens[j] == n && memcmp(s->keys[j], k, n) == 0) {
            *fresh = false;
            return MK_OK;
        }
        j = (j + 1) & (s->cap - 1);
    }
    if (!(s->keys[j] = malloc(n ? n : 1))) return mk_error_nomem(err);
    memcpy(s->keys[j], k, n);
    s->lens[j] = n;
    s->n++;
    *fresh = true;
    return MK_OK;
}

static void seen_free(seen_t *s)
{
    for (size_t i = 0; i < s->cap; i++) free(s->keys[i]);
    free(s->keys);
    free(s->lens);
}

/* Compares an index entry with an interval end. Entries of non-unique indexes carry the record
 * key after the index key, and compound bounds may constrain only a prefix of the key, so an
 * end is a prefix: an entry that starts with it compares "equal". An entry that may have been
 * shortened (keyenc.h) is only compared on its exact prefix; past it the answer is "equal",
 * which widens the scan (the filter is re-applied). */
static int cmp_end(const MDB_val *e, const uint8_t *b, size_t blen)
{
    size_t elen = e->mv_size, n = elen < blen ? elen : blen;
    bool maybe_short = elen == MK_KEY_PREFIX + 16;
    if (maybe_short && n > MK_KEY_PREFIX) n = MK_KEY_PREFIX;
    int c = memcmp(e->mv_data, b, n);
    if (c) return c < 0 ? -1 : 1;
    if (maybe_short && blen > MK_KEY_PREFIX) return 0;
    if (elen < blen) return -1; /* the entry is a proper prefix of the end: below it */
    return 0;                   /* the entry starts with the end */
}

static bool above_lo(const MDB_val *e, const mk_interval_t *iv)
{
    int c = cmp_end(e, iv->lo, iv->lo_len);
    return c > 0 || (c == 0 && iv->lo_incl);
}

static bool below_hi(const MDB_val *e, const mk_interval_t *iv)
{
    int c = cmp_end(e, iv->hi, iv->hi_len);
    return c < 0 || (c == 0 && iv->hi_incl);
}

typedef struct ixrun {
    MDB_txn *txn;
    mk_coll_t *c;
    const mk_plan_t *plan;
    const mk_matcher_t *m;
    bool want_details;
    mk_scan_fn fn;
    void *ud;
    mk_exec_stats_t *stats;
    seen_t seen;
    uint64_t tick;
    mk_error_t *err;
} ixrun_t;

static bool over_limit(mk_exec_stats_t *st)
{
    if (st->work_limit && st->keys_examined + st->docs_examined >= st->work_limit) {
        st->hit_limit = true;
        return true;
    }
    return false;
}

/* One entry: fetch its document, filter, hand it over. */
static int visit_entry(ixrun_t *r, const MDB_val *k, const MDB_val *v)
{
    if (mk_op_check(&r->tick, r->err) != MK_OK) return MK_ERR;
    r->stats->keys_examined++;
    if (r->plan->ix->multikey) {
        bool fresh;
        if (seen_add(&r->seen, v->mv_data, v->mv_size, &fresh, r->err) != MK_OK) return MK_ERR;
        if (!fresh) return MK_OK;
    }
    MDB_val rv;
    MDB_val rk = *v;
    int rc = mdb_get(r->txn, r->c->dbi, &rk, &rv);
    if (rc == MDB_NOTFOUND) return MK_OK; /* cannot happen: same transaction as the entry */
    if (rc != 0) return mk_lmdb_error(rc, r->err, "fetching a document");
    r->stats->docs_examined++;
    bson_t doc;
    if (!bson_init_static(&doc, rv.mv_data, rv.mv_size))
        return mk_error_setc(r->err, MK_CODE_STORAGE, "corrupt record");
    mk_match_details_t md = {0};
    if (r->m && (!r->plan->exact || r->want_details)) {
        int ok = mk_matcher_match_checked(r->m, &doc, r->want_details ? &md : NULL, r->err);
        if (ok < 0) return MK_ERR;
        if (!ok) return MK_OK;
    }
    r->stats->returned++;
    return r->fn(r->ud, &doc, k, &md);
}

static int full_cmp(const MDB_val *a, const MDB_val *b)
{
    size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    int c = memcmp(a->mv_data, b->mv_data, n);
    if (c) return c;
    return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

/* Scans one interval in the plan's direction, strictly after `after` when resuming. */
static int scan_interval(ixrun_t *r, MDB_cursor *cur, const mk_interval_t *iv, const MDB_val *after)
{
    MDB_val k, v;
    int rc;
    if (r->plan->direction >= 0) {
        MDB_val lo = {iv->lo_len > MK_KEY_PREFIX ? MK_KEY_PREFIX : iv->lo_len, (void *)iv->lo};
        k = after && full_cmp(after, &lo) > 0 ? *after : lo;
        rc = k.mv_size ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                       : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (after && full_cmp(&k, after) <= 0) continue;
            if (!above_lo(&k, iv)) continue;
            if (!below_hi(&k, iv)) break;
            if (over_limit(r->stats)) return MK_SCAN_STOP;
            int vr = visit_entry(r, &k, &v);
            if (vr != MK_OK) return vr;
        }
    } else {
        if (after) {
            k = *after;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        } else {
            /* the last entry not above hi */
            k.mv_data = (void *)iv->hi;
            k.mv_size = iv->hi_len > MK_KEY_PREFIX ? MK_KEY_PREFIX : iv->hi_len;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            while (rc == 0 && below_hi(&k, iv)) rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        rc =
            rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV) : mdb_cursor_get(cur, &k, &v, MDB_LAST);
        for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
            if (after && full_cmp(&k, after) >= 0) continue;
            if (!below_hi(&k, iv)) continue;
            if (!above_lo(&k, iv)) break;
            if (over_limit(r->stats)) return MK_SCAN_STOP;
            int vr = visit_entry(r, &k, &v);
            if (vr != MK_OK) return vr;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return mk_lmdb_error(rc, r->err, "scanning an index");
    return MK_OK;
}

static int run_ixscan(ixrun_t *r, const MDB_val *after)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(r->txn, r->plan->ix->dbi, &cur);
    if (rc != 0) return mk_lmdb_error(rc, r->err, "scanning an index");
    size_t n = mk_bounds_count(r->plan->bounds);
    int result = MK_OK;
    if (r->plan->min || r->plan->max) {
        /* find's min/max replace the bounds: one range [min, max) */
        static const uint8_t top[] = {0xFF, 0xFF, 0xFF, 0xFF};
        mk_interval_t iv = {
            .lo = r->plan->min ? r->plan->min->data : top,
            .lo_len = r->plan->min ? r->plan->min->len : 0,
            .lo_incl = true,
            .hi = r->plan->max ? r->plan->max->data : top,
            .hi_len = r->plan->max ? r->plan->max->len : sizeof top,
            .hi_incl = false,
        };
        result = scan_interval(r, cur, &iv, after);
        n = 0;
    }
    for (size_t i = 0; i < n && result == MK_OK; i++) {
        size_t at = r->plan->direction >= 0 ? i : n - 1 - i;
        result = scan_interval(r, cur, mk_bounds_get(r->plan->bounds, at), after);
    }
    mdb_cursor_close(cur);
    return result == MK_SCAN_STOP ? MK_OK : result;
}

/* Counts examined documents of a collection scan and forwards matches. */
typedef struct counting {
    mk_scan_fn fn;
    void *ud;
    mk_exec_stats_t *stats;
} counting_t;

static int count_match(void *ud, const bson_t *doc, const MDB_val *key,
                       const mk_match_details_t *md)
{
    counting_t *ct = ud;
    ct->stats->returned++;
    return ct->fn(ct->ud, doc, key, md);
}

int mk_plan_run(MDB_txn *txn, mk_coll_t *c, const mk_plan_t *plan, const mk_matcher_t *m,
                const bson_value_t *id_eq, const MDB_val *after, bool want_details, mk_scan_fn fn,
                void *ud, mk_exec_stats_t *stats, mk_error_t *err)
{
    mk_exec_stats_t local = {0};
    if (!stats) stats = &local;
    if (plan->kind == MK_PLAN_IXSCAN) {
        ixrun_t r = {.txn = txn,
                     .c = c,
                     .plan = plan,
                     .m = m,
                     .want_details = want_details,
                     .fn = fn,
                     .ud = ud,
                     .stats = stats,
                     .err = err};
        int rc = run_ixscan(&r, after);
        seen_free(&r.seen);
        return rc;
    }
    counting_t ct = {.fn = fn, .ud = ud, .stats = stats};
    mk_scan_spec_t spec = {.matcher = m,
                           .id_eq = plan->kind == MK_PLAN_IDHACK ? id_eq : NULL,
                           .after = after,
                           .want_details = want_details,
                           .examined = &stats->docs_examined,
                           .work_limit = stats->work_limit};
    if (plan->kind == MK_PLAN_IDHACK) stats->keys_examined++;
    int rc = mk_scan(txn, c, &spec, count_match, &ct, err);
    if (stats->work_limit && stats->docs_examined >= stats->work_limit) stats->hit_limit = true;
    return rc;
}

/* ---------------------------------------------------------------- choosing */

static bool index_matches_hint(const mk_index_t *ix, const bson_iter_t *hint)
{
    bson_iter_t h = *hint;
    if (BSON_ITER_HOLDS_UTF8(&h)) return strcmp(bson_iter_utf8(&h, NULL), ix->name) == 0;
    bson_iter_t k;
    if (!bson_iter_init_find(&k, ix->spec, "key")) return false;
    return mk_value_cmp(bson_iter_value(&k), bson_iter_value(&h)) == 0;
}

/* 1: the index yields the sort order forward, -1: backward, 0: not at all. The sort must be a
 * prefix of the index's fields, all in the same or all in the opposite directions. */
/* True when the filter pins `path` to one scalar value at the top level ({ a: 5 } or
 * { a: { $eq: 5 } }): the index's entries for that value are ordered by its next fields. */
static bool filter_point(const bson_t *filter, const char *path)
{
    bson_iter_t it;
    return filter && bson_iter_init_find(&it, filter, path) && mk_filter_point(&it, NULL);
}

/* Whether the filter can bear on `path` at all (top level or under $and), so that building
 * bounds is worth it: an exact key, or a key and path that are dotted prefixes of each other. */
static bool filter_mentions(const bson_t *filter, const char *path)
{
    bson_iter_t it;
    if (!filter || !bson_iter_init(&it, filter)) return false;
    size_t plen = strlen(path);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        size_t klen = bson_iter_key_len(&it);
        if (strcmp(k, "$and") == 0 && BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_t el;
            bson_iter_recurse(&it, &el);
            while (bson_iter_next(&el)) {
                if (!BSON_ITER_HOLDS_DOCUMENT(&el)) continue;
                const uint8_t *d;
                uint32_t l;
                bson_t sub;
                bson_iter_document(&el, &l, &d);
                if (bson_init_static(&sub, d, l) && filter_mentions(&sub, path)) return true;
            }
            continue;
        }
        size_t n = klen < plen ? klen : plen;
        if (memcmp(k, path, n) == 0 &&
            (klen == plen || (klen < plen && path[klen] == '.') || (plen < klen && k[plen] == '.')))
            return true;
    }
    return false;
}

static int sort_direction(const mk_index_t *ix, const bson_t *sort, const bson_t *filter)
{
    if (!sort || bson_empty(sort) || ix->multikey) return 0;
    bson_iter_t it;
    bson_iter_init(&it, sort);
    size_t i = 0;
    int dir = 0;
    /* leading fields pinned to one value by the filter need not be in the sort */
    bson_iter_t first = it;
    if (bson_iter_next(&first))
        while (i + 1 < mk_keypattern_nfields(ix->kp) &&
               strcmp(bson_iter_key(&first), mk_keypattern_field(ix->kp, i)) != 0 &&
               filter_point(filter, mk_keypattern_field(ix->kp, i)))
            i++;
    while (bson_iter_next(&it)) {
        if (i >= mk_keypattern_nfields(ix->kp)) return 0;
        if (strcmp(bson_iter_key(&it), mk_keypattern_field(ix->kp, i)) != 0) return 0;
        if (!BSON_ITER_HOLDS_NUMBER(&it)) return 0;
        int want = bson_iter_as_int64(&it) < 0 ? -1 : 1;
        int d = want == mk_keypattern_direction(ix->kp, i) ? 1 : -1;
        if (dir && d != dir) return 0;
        dir = d;
        i++;
    }
    return dir;
}

/* Bounds of an index for the filter; *out NULL when the index cannot help. */
static int index_bounds(const mk_index_t *ix, const bson_t *filter, mk_bounds_t **out, bool *exact,
                        mk_error_t *err)
{
    size_t n = mk_keypattern_nfields(ix->kp);
    const char *paths[MK_KEYPATTERN_MAX_FIELDS];
    int dirs[MK_KEYPATTERN_MAX_FIELDS];
    for (size_t i = 0; i < n; i++) {
        paths[i] = mk_keypattern_field(ix->kp, i);
        dirs[i] = mk_keypattern_direction(ix->kp, i);
    }
    return mk_bounds_build(filter, paths, dirs, n, ix->multikey, out, exact, err);
}

/* Full-range bounds (for a hinted or sort-providing index the filter does not constrain). */
static int full_bounds(const mk_index_t *ix, mk_bounds_t **out, mk_error_t *err)
{
    bson_t empty = BSON_INITIALIZER;
    bool exact;
    size_t n = mk_keypattern_nfields(ix->kp);
    const char *paths[MK_KEYPATTERN_MAX_FIELDS];
    int dirs[MK_KEYPATTERN_MAX_FIELDS];
    for (size_t i = 0; i < n; i++) {
        paths[i] = mk_keypattern_field(ix->kp, i);
        dirs[i] = mk_keypattern_direction(ix->kp, i);
    }
    /* { field: { $exists: true } } would narrow a sparse index; { } gives no bounds, so ask
     * for the bounds of a condition that admits every value: $gte MinKey. */
    bson_t f = BSON_INITIALIZER, cond;
    bson_append_document_begin(&f, paths[0], -1, &cond);
    BSON_APPEND_MINKEY(&cond, "$gte");
    bson_append_document_end(&f, &cond);
    int rc = mk_bounds_build(&f, paths, dirs, n, ix->multikey, out, &exact, err);
    bson_destroy(&f);
    bson_destroy(&empty);
    return rc;
}

/* A sparse or partial index may miss documents the filter matches: use it only when hinted
 * (as MongoDB, a hint forces it) or when it cannot miss any (not decided here: skipped). */
static bool usable_unhinted(const mk_index_t *ix)
{
    return !ix->sparse && !ix->partial;
}

static int discard(void *ud, const bson_t *doc, const MDB_val *key, const mk_match_details_t *md)
{
    return MK_OK;
}

int mk_plan_build(MDB_txn *txn, mk_coll_t *c, const bson_t *filter, const mk_matcher_t *m,
                  const bson_t *sort, const bson_iter_t *hint, mk_plan_t *plan, mk_error_t *err)
{
    memset(plan, 0, sizeof *plan);
    plan->direction = 1;
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    if (hint) {
        bson_iter_t h = *hint;
        bool natural = false;
        if (BSON_ITER_HOLDS_DOCUMENT(&h)) {
            bson_iter_t k;
            bson_iter_recurse(&h, &k);
            if (!bson_iter_next(&k))
                natural = true; /* {} : no hint */
            else if (strcmp(bson_iter_key(&k), "$natural") == 0) {
                natural = true;
                plan->direction = bson_iter_as_int64(&k) < 0 ? -1 : 1;
            } else if (strcmp(bson_iter_key(&k), "_id") == 0 && !bson_iter_next(&k)) {
                natural = true; /* the _id index is the record table itself */
            }
        } else if (BSON_ITER_HOLDS_UTF8(&h) && strcmp(bson_iter_utf8(&h, NULL), "_id_") == 0) {
            natural = true;
        }
        if (natural) {
            plan->kind = MK_PLAN_COLLSCAN;
            plan->ncandidates = 1;
            return MK_OK;
        }
        for (size_t i = 0; i < s->n; i++) {
            if (!index_matches_hint(s->v[i], &h)) continue;
            plan->kind = MK_PLAN_IXSCAN;
            plan->ix = s->v[i];
            plan->ncandidates = 1;
            if (index_bounds(s->v[i], filter, &plan->bounds, &plan->exact, err) != MK_OK)
                return MK_ERR;
            if (!plan->bounds && full_bounds(s->v[i], &plan->bounds, err) != MK_OK) return MK_ERR;
            if (!plan->bounds) {
                plan->kind = MK_PLAN_COLLSCAN;
                plan->ix = NULL;
                return MK_OK;
            }
            int sd = sort_direction(s->v[i], sort, filter);
            if (sd) {
                plan->sorted = true;
                plan->direction = sd;
            }
            return MK_OK;
        }
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "error processing query: planner returned error :: caused by :: "
                             "hint provided does not correspond to an existing index");
    }

    /* candidates */
    mk_plan_t cand[16];
    int nc = 0;
    for (size_t i = 0; i < s->n && nc < 16; i++) {
        mk_index_t *ix = s->v[i];
        if (!usable_unhinted(ix)) continue;
        mk_bounds_t *b = NULL;
        bool exact = false;
        int sd = sort_direction(ix, sort, filter);
        if (!sd && !filter_mentions(filter, mk_keypattern_field(ix->kp, 0))) continue;
        if (index_bounds(ix, filter, &b, &exact, err) != MK_OK) goto fail;
        if (!b && sd && full_bounds(ix, &b, err) != MK_OK) goto fail;
        if (!b) continue;
        if (mk_bounds_is_full(b) && !sd) {
            mk_bounds_destroy(b);
            continue;
        }
        cand[nc] = (mk_plan_t){.kind = MK_PLAN_IXSCAN,
                               .ix = ix,
                               .bounds = b,
                               .exact = exact,
                               .direction = sd ? sd : 1,
                               .sorted = sd != 0};
        nc++;
    }
    if (nc == 0) {
        plan->kind = MK_PLAN_COLLSCAN;
        plan->ncandidates = 1;
        return MK_OK;
    }
    int best = 0;
    if (nc > 1) {
        /* the trial: each candidate examines at most TRIAL_WORKS keys + documents */
        double best_score = -1;
        int64_t best_work = 0;
        for (int i = 0; i < nc; i++) {
            mk_exec_stats_t st = {.work_limit = TRIAL_WORKS};
            if (mk_plan_run(txn, c, &cand[i], m, NULL, NULL, false, discard, NULL, &st, err) !=
                MK_OK)
                goto fail;
            int64_t work = st.keys_examined + st.docs_examined;
            /* finishing early is best; then results per work; ties go to a plan that gives
             * the sort order, then to one the filter bounds */
            double score = (double)st.returned / (double)(work ? work : 1) +
                           (st.hit_limit ? 0.0 : 1.0) + (cand[i].sorted ? 0.001 : 0.0) +
                           (mk_bounds_is_full(cand[i].bounds) ? 0.0 : 0.0005);
            if (score > best_score || (score == best_score && work < best_work)) {
                best_score = score;
                best_work = work;
                best = i;
            }
        }
    }
    *plan = cand[best];
    plan->ncandidates = nc;
    for (int i = 0; i < nc; i++) {
        if (i == best) continue;
        if (plan->nrejected < 8) {
            snprintf(plan->rejected[plan->nrejected], sizeof plan->rejected[0], "%s",
                     cand[i].ix->name);
            plan->nrejected++;
        }
        mk_bounds_destroy(cand[i].bounds);
    }
    return MK_OK;
fail:
    for (int i = 0; i < nc; i++) mk_bounds_destroy(cand[i].bounds);
    return MK_ERR;
}

/* ---------------------------------------------------------------- explain */

int mk_plan_explain(const mk_plan_t *plan, const bson_t *filter, const mk_exec_stats_t *stats,
                    bson_t *out, mk_error_t *err)
{
    bool has_filter = filter && !bson_empty(filter);
    if (plan->kind == MK_PLAN_COLLSCAN) {
        BSON_APPEND_UTF8(out, "stage", "COLLSCAN");
        if (has_filter) BSON_APPEND_DOCUMENT(out, "filter", filter);
        BSON_APPEND_UTF8(out, "direction", plan->direction < 0 ? "backward" : "forward");
        if (stats) {
            BSON_APPEND_INT64(out, "nReturned", stats->returned);
            BSON_APPEND_INT64(out, "docsExamined", stats->docs_examined);
        }
        return MK_OK;
    }
    if (plan->kind == MK_PLAN_IDHACK) {
        BSON_APPEND_UTF8(out, "stage", "IDHACK");
        if (stats) {
            BSON_APPEND_INT64(out, "nReturned", stats->returned);
            BSON_APPEND_INT64(out, "keysExamined", stats->keys_examined);
            BSON_APPEND_INT64(out, "docsExamined", stats->docs_examined);
        }
        return MK_OK;
    }
    BSON_APPEND_UTF8(out, "stage", "FETCH");
    if (has_filter && !plan->exact) BSON_APPEND_DOCUMENT(out, "filter", filter);
    if (stats) {
        BSON_APPEND_INT64(out, "nReturned", stats->returned);
        BSON_APPEND_INT64(out, "docsExamined", stats->docs_examined);
    }
    bson_t in, bounds;
    bson_append_document_begin(out, "inputStage", -1, &in);
    BSON_APPEND_UTF8(&in, "stage", "IXSCAN");
    bson_iter_t k;
    if (bson_iter_init_find(&k, plan->ix->spec, "key"))
        bson_append_value(&in, "keyPattern", -1, bson_iter_value(&k));
    BSON_APPEND_UTF8(&in, "indexName", plan->ix->name);
    BSON_APPEND_BOOL(&in, "isMultiKey", plan->ix->multikey);
    BSON_APPEND_BOOL(&in, "isUnique", plan->ix->unique);
    BSON_APPEND_BOOL(&in, "isSparse", plan->ix->sparse);
    BSON_APPEND_BOOL(&in, "isPartial", plan->ix->partial != NULL);
    BSON_APPEND_INT32(&in, "indexVersion", 2);
    BSON_APPEND_UTF8(&in, "direction", plan->direction < 0 ? "backward" : "forward");
    if (stats) {
        BSON_APPEND_INT64(&in, "nReturned", stats->keys_examined);
        BSON_APPEND_INT64(&in, "keysExamined", stats->keys_examined);
    }
    bson_append_document_begin(&in, "indexBounds", -1, &bounds);
    int rc = mk_bounds_explain(plan->bounds, &bounds, err);
    bson_append_document_end(&in, &bounds);
    bson_append_document_end(out, &in);
    return rc;
}

int mk_query_run(MDB_txn *txn, mk_coll_t *c, const bson_t *filter, const mk_matcher_t *m,
                 const bson_iter_t *hint, bool want_details, mk_scan_fn fn, void *ud,
                 mk_exec_stats_t *stats, mk_error_t *err)
{
    mk_plan_t plan;
    bson_value_t id;
    if (!hint && mk_filter_id_eq(filter, &id)) {
        memset(&plan, 0, sizeof plan);
        plan.kind = MK_PLAN_IDHACK;
        return mk_plan_run(txn, c, &plan, m, &id, NULL, want_details, fn, ud, stats, err);
    }
    if (mk_plan_build(txn, c, filter, m, NULL, hint, &plan, err) != MK_OK) return MK_ERR;
    int rc = mk_plan_run(txn, c, &plan, m, NULL, NULL, want_details, fn, ud, stats, err);
    mk_plan_clear(&plan);
    return rc;
}

bool mk_plan_still_valid(const mk_plan_t *plan, mk_coll_t *c, MDB_txn *txn)
{
    if (plan->kind != MK_PLAN_IXSCAN) return true;
    /* the same table may have been reused by an index of the same name: compare specs too */
    mk_index_t *now = mk_indexset_find(mk_coll_indexes(c, txn), plan->ix->name);
    return now && now->id == plan->ix->id && mk_bson_cmp(now->spec, plan->ix->spec) == 0;
}

/* The key of a min/max document for the plan's index, or an error. */
static int min_max_key(const mk_plan_t *plan, const bson_t *doc, const char *which, mk_buf_t **out,
                       mk_error_t *err)
{
    const mk_keypattern_t *kp = plan->ix->kp;
    size_t n = mk_keypattern_nfields(kp), i = 0;
    bson_value_t values[MK_KEYPATTERN_MAX_FIELDS];
    bson_iter_t it;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        if (i >= n || strcmp(bson_iter_key(&it), mk_keypattern_field(kp, i)) != 0)
            return mk_error_set(err, 51174, "Location51174",
                                "The index chosen is not equivalent to the %s pattern", which);
        values[i++] = *bson_iter_value(&it);
    }
    if (i != n)
        return mk_error_set(err, 51174, "Location51174",
                            "The index chosen is not equivalent to the %s pattern", which);
    mk_buf_t *b = malloc(sizeof *b);
    if (!b) return mk_error_nomem(err);
    mk_buf_init(b);
    mk_keypattern_encode(kp, values, b);
    if (b->failed) {
        free_key(b);
        return mk_error_nomem(err);
    }
    *out = b;
    return MK_OK;
}

int mk_plan_set_min_max(mk_plan_t *plan, const bson_t *min, const bson_t *max, mk_error_t *err)
{
    if (plan->kind != MK_PLAN_IXSCAN)
        return mk_error_set(err, 51173, "Location51173",
                            "When using min()/max() a hint of which index to use must be "
                            "provided");
    if (min && min_max_key(plan, min, "min", &plan->min, err) != MK_OK) return MK_ERR;
    if (max && min_max_key(plan, max, "max", &plan->max, err) != MK_OK) return MK_ERR;
    plan->sorted = false; /* a plain forward scan of the range */
    plan->direction = 1;
    return MK_OK;
}
