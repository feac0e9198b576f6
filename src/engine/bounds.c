/* Index bounds (see bounds.h).
 *
 * Three steps:
 *   1. The filter's top-level conjunction (through $and and $elemMatch on documents) becomes a
 *      list of predicates, each a path and an ordered interval list (OIL) of the values a key
 *      must have for a document to possibly satisfy it, plus whether the OIL is exact: a key
 *      value is in it exactly when the value satisfies the predicate (needed to complement it
 *      for $ne/$nin/$not, and for exact bounds).
 *   2. Each index field gets the intersection of its predicates (non-multikey index), or one of
 *      them (multikey: two predicates may be satisfied by different array elements). Compound
 *      fields whose paths share a prefix that may be an array only combine under $elemMatch.
 *   3. The per-field OILs turn into byte ranges of whole keys: every combination of the point
 *      values of the leading fields, followed by each interval of the next field; later fields
 *      are left free. A point p is the range [P, succ(P)) where P is the key prefix and succ(P)
 *      the first byte string above every string that starts with P — index entries carry a
 *      suffix (the _id) and are compared as raw bytes.
 *
 * Intervals are computed on values (mk_value_cmp, the order of keyenc) and only encoded at the
 * end. keyenc rounds decimal128 values down to a double (and keeps int64 exact), so numeric
 * ends of ranges are widened when encoded: a lower end becomes the largest double at or below
 * it, inclusive; a decimal upper end becomes the next double above, exclusive. */
#include "engine/bounds.h"

#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/format.h"
#include "bson/value.h"
#include "engine/keyenc.h"

#define MAX_DEPTH  100
#define MAX_FIELDS 32

/* ------------------------------------------------------------------------------------------ */
/* Values that bound the type classes (MongoDB's minimum/maximum of each canonical type)       */

static const uint8_t empty_doc_bytes[5] = {5, 0, 0, 0, 0};
static const uint8_t no_bytes[1] = {0};

static const bson_value_t V_MINKEY = {.value_type = BSON_TYPE_MINKEY};
static const bson_value_t V_MAXKEY = {.value_type = BSON_TYPE_MAXKEY};
static const bson_value_t V_NULL = {.value_type = BSON_TYPE_NULL};
static const bson_value_t V_UNDEFINED = {.value_type = BSON_TYPE_UNDEFINED};
static const bson_value_t V_NAN = {.value_type = BSON_TYPE_DOUBLE, .value.v_double = NAN};
static const bson_value_t V_NEG_INF = {.value_type = BSON_TYPE_DOUBLE, .value.v_double = -INFINITY};
static const bson_value_t V_POS_INF = {.value_type = BSON_TYPE_DOUBLE, .value.v_double = INFINITY};
static const bson_value_t V_EMPTY_STR = {.value_type = BSON_TYPE_UTF8,
                                         .value.v_utf8 = {.str = (char *)"", .len = 0}};
static const bson_value_t V_EMPTY_DOC = {
    .value_type = BSON_TYPE_DOCUMENT,
    .value.v_doc = {.data = (uint8_t *)empty_doc_bytes, .data_len = 5}};
static const bson_value_t V_EMPTY_ARR = {
    .value_type = BSON_TYPE_ARRAY,
    .value.v_doc = {.data = (uint8_t *)empty_doc_bytes, .data_len = 5}};
static const bson_value_t V_MIN_BIN = {
    .value_type = BSON_TYPE_BINARY,
    .value.v_binary = {.data = (uint8_t *)no_bytes, .data_len = 0, .subtype = BSON_SUBTYPE_BINARY}};
static const bson_value_t V_MIN_OID = {.value_type = BSON_TYPE_OID, .value.v_oid = {{0}}};
static const bson_value_t V_MAX_OID = {
    .value_type = BSON_TYPE_OID,
    .value.v_oid = {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}};
static const bson_value_t V_FALSE = {.value_type = BSON_TYPE_BOOL, .value.v_bool = false};
static const bson_value_t V_TRUE = {.value_type = BSON_TYPE_BOOL, .value.v_bool = true};
static const bson_value_t V_MIN_DATE = {.value_type = BSON_TYPE_DATE_TIME,
                                        .value.v_datetime = INT64_MIN};
static const bson_value_t V_MAX_DATE = {.value_type = BSON_TYPE_DATE_TIME,
                                        .value.v_datetime = INT64_MAX};
static const bson_value_t V_MIN_TS = {.value_type = BSON_TYPE_TIMESTAMP,
                                      .value.v_timestamp = {.timestamp = 0, .increment = 0}};
static const bson_value_t V_MAX_TS = {
    .value_type = BSON_TYPE_TIMESTAMP,
    .value.v_timestamp = {.timestamp = UINT32_MAX, .increment = UINT32_MAX}};

/* The interval of one canonical type, for type bracketing. false: no such interval (the type
 * has no range bounds we build: regex, code, dbPointer; arrays, whose keys are elements). */
static bool type_class(bson_type_t t, const bson_value_t **lo, bool *lo_incl,
                       const bson_value_t **hi, bool *hi_incl)
{
    *lo_incl = *hi_incl = true;
    switch (t) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128:
        *lo = &V_NEG_INF; /* NaN sorts below -inf and is neither below nor above anything */
        *hi = &V_POS_INF;
        return true;
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL:
        *lo = &V_EMPTY_STR;
        *hi = &V_EMPTY_DOC;
        *hi_incl = false;
        return true;
    case BSON_TYPE_DOCUMENT:
        *lo = &V_EMPTY_DOC;
        *hi = &V_EMPTY_ARR;
        *hi_incl = false;
        return true;
    case BSON_TYPE_BINARY:
        *lo = &V_MIN_BIN;
        *hi = &V_MIN_OID;
        *hi_incl = false;
        return true;
    case BSON_TYPE_OID:
        *lo = &V_MIN_OID;
        *hi = &V_MAX_OID;
        return true;
    case BSON_TYPE_BOOL:
        *lo = &V_FALSE;
        *hi = &V_TRUE;
        return true;
    case BSON_TYPE_DATE_TIME:
        *lo = &V_MIN_DATE;
        *hi = &V_MAX_DATE;
        return true;
    case BSON_TYPE_TIMESTAMP:
        *lo = &V_MIN_TS;
        *hi = &V_MAX_TS;
        return true;
    default:
        return false;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Ordered interval lists over values                                                          */

typedef struct viv {
    bson_value_t lo, hi; /* borrowed: the filter copy, the constants above, or the arena */
    bool lo_incl, hi_incl;
} viv_t;

typedef struct oil {
    viv_t *v;
    size_t n, cap;
} oil_t;

static void oil_free(oil_t *o)
{
    free(o->v);
    o->v = NULL;
    o->n = o->cap = 0;
}

/* Types with a single value, whose neighbours leave nothing between them. */
static bool single_valued(bson_type_t t)
{
    return t == BSON_TYPE_MINKEY || t == BSON_TYPE_UNDEFINED || t == BSON_TYPE_NULL ||
           t == BSON_TYPE_MAXKEY;
}

static bool viv_empty(const viv_t *v)
{
    int c = mk_value_cmp(&v->lo, &v->hi);
    if (c > 0 || (c == 0 && !(v->lo_incl && v->hi_incl))) return true;
    /* (undefined, null) holds no value */
    return !v->lo_incl && !v->hi_incl && single_valued(v->lo.value_type) &&
           single_valued(v->hi.value_type) &&
           mk_type_rank(v->hi.value_type) == mk_type_rank(v->lo.value_type) + 1;
}

static bool viv_point(const viv_t *v)
{
    return v->lo_incl && v->hi_incl && mk_value_cmp(&v->lo, &v->hi) == 0;
}

/* Appends an interval (skipped when empty). MK_OK or MK_ENOMEM. */
static int oil_push(oil_t *o, const bson_value_t *lo, bool lo_incl, const bson_value_t *hi,
                    bool hi_incl)
{
    viv_t x = {*lo, *hi, lo_incl, hi_incl};
    if (viv_empty(&x)) return MK_OK;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4;
        viv_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) return MK_ENOMEM;
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = x;
    return MK_OK;
}

static int oil_point(oil_t *o, const bson_value_t *v)
{
    return oil_push(o, v, true, v, true);
}

static int oil_full(oil_t *o)
{
    return oil_push(o, &V_MINKEY, true, &V_MAXKEY, true);
}

static bool oil_is_full(const oil_t *o)
{
    return o->n == 1 && o->v[0].lo_incl && o->v[0].hi_incl &&
           o->v[0].lo.value_type == BSON_TYPE_MINKEY && o->v[0].hi.value_type == BSON_TYPE_MAXKEY;
}

static bool oil_all_points(const oil_t *o)
{
    for (size_t i = 0; i < o->n; i++)
        if (!viv_point(&o->v[i])) return false;
    return true;
}

static bool oil_contains(const oil_t *o, const bson_value_t *x)
{
    for (size_t i = 0; i < o->n; i++) {
        int a = mk_value_cmp(&o->v[i].lo, x), b = mk_value_cmp(x, &o->v[i].hi);
        if ((a < 0 || (a == 0 && o->v[i].lo_incl)) && (b < 0 || (b == 0 && o->v[i].hi_incl)))
            return true;
    }
    return false;
}

static int cmp_viv(const void *pa, const void *pb)
{
    const viv_t *a = pa, *b = pb;
    int c = mk_value_cmp(&a->lo, &b->lo);
    if (c) return c;
    return (int)b->lo_incl - (int)a->lo_incl; /* an inclusive start first */
}

/* Sorts and merges overlapping or touching intervals. */
static void oil_normalize(oil_t *o)
{
    if (o->n < 2) return;
    qsort(o->v, o->n, sizeof *o->v, cmp_viv);
    size_t w = 0;
    for (size_t i = 1; i < o->n; i++) {
        viv_t *cur = &o->v[w], *nx = &o->v[i];
        viv_t gap = {cur->hi, nx->lo, !cur->hi_incl, !nx->lo_incl};
        /* overlapping or touching; or nothing in between, except between two points which
         * MongoDB lists apart ([undefined, undefined], [null, null]) */
        int c = mk_value_cmp(&nx->lo, &cur->hi);
        bool touch = c < 0 || (c == 0 && (cur->hi_incl || nx->lo_incl));
        if (touch || (viv_empty(&gap) && !(viv_point(cur) && viv_point(nx)))) {
            int d = mk_value_cmp(&nx->hi, &cur->hi);
            if (d > 0) {
                cur->hi = nx->hi;
                cur->hi_incl = nx->hi_incl;
            } else if (d == 0) {
                cur->hi_incl = cur->hi_incl || nx->hi_incl;
            }
        } else {
            o->v[++w] = *nx;
        }
    }
    o->n = w + 1;
}

/* out = a ∩ b (both normalized); out is normalized. */
static int oil_intersect(const oil_t *a, const oil_t *b, oil_t *out)
{
    size_t i = 0, j = 0;
    while (i < a->n && j < b->n) {
        const viv_t *x = &a->v[i], *y = &b->v[j];
        const bson_value_t *lo, *hi;
        bool li, hinc;
        int c = mk_value_cmp(&x->lo, &y->lo);
        if (c > 0 || (c == 0 && !x->lo_incl)) {
            lo = &x->lo;
            li = x->lo_incl;
        } else {
            lo = &y->lo;
            li = y->lo_incl;
        }
        int d = mk_value_cmp(&x->hi, &y->hi);
        if (d < 0 || (d == 0 && !x->hi_incl)) {
            hi = &x->hi;
            hinc = x->hi_incl;
        } else {
            hi = &y->hi;
            hinc = y->hi_incl;
        }
        if (oil_push(out, lo, li, hi, hinc) != MK_OK) return MK_ENOMEM;
        if (d < 0)
            i++;
        else if (d > 0)
            j++;
        else {
            i++;
            j++;
        }
    }
    return MK_OK;
}

/* out = [MinKey, MaxKey] \ a (a normalized). */
static int oil_complement(const oil_t *a, oil_t *out)
{
    const bson_value_t *prev = &V_MINKEY;
    bool prev_incl = true;
    for (size_t i = 0; i < a->n; i++) {
        if (oil_push(out, prev, prev_incl, &a->v[i].lo, !a->v[i].lo_incl) != MK_OK)
            return MK_ENOMEM;
        prev = &a->v[i].hi;
        prev_incl = !a->v[i].hi_incl;
    }
    return oil_push(out, prev, prev_incl, &V_MAXKEY, true);
}

/* Appends the intervals of src to dst (not normalized). */
static int oil_append(oil_t *dst, const oil_t *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (oil_push(dst, &src->v[i].lo, src->v[i].lo_incl, &src->v[i].hi, src->v[i].hi_incl) !=
            MK_OK)
            return MK_ENOMEM;
    return MK_OK;
}

/* dst ∪= src (dst normalized afterwards). */
static int oil_union(oil_t *dst, const oil_t *src)
{
    if (oil_append(dst, src) != MK_OK) return MK_ENOMEM;
    oil_normalize(dst);
    return MK_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The bounds object and the build state                                                       */

typedef struct ablock {
    struct ablock *next;
    alignas(max_align_t) unsigned char data[];
} ablock_t;

typedef struct rec {
    size_t lo_off, lo_len, hi_off, hi_len;
} rec_t;

struct mk_bounds {
    uint8_t *filter; /* private copy: predicate values point into it */
    ablock_t *arena; /* values made up while building (regex prefixes) */
    size_t nfields;
    char **paths;
    int *dirs;
    oil_t *fields; /* per field, as explain shows it */
    mk_interval_t *iv;
    size_t niv;
    uint8_t *bytes; /* lo/hi of every interval */
    bool full;
};

static void *arena_alloc(mk_bounds_t *b, size_t n)
{
    ablock_t *blk = malloc(sizeof *blk + n);
    if (!blk) return NULL;
    blk->next = b->arena;
    b->arena = blk;
    return blk->data;
}

/* What a condition says about the key values of its path. */
typedef struct item {
    oil_t oil;
    bool exact;      /* a key value is in oil iff it satisfies the condition */
    bool positive;   /* only satisfied by values that are present (for positional paths) */
    bool elem_value; /* an $elemMatch on values: the array's elements are the keys */
} item_t;

typedef struct items {
    item_t *v;
    size_t n, cap;
} items_t;

static void items_free(items_t *l)
{
    for (size_t i = 0; i < l->n; i++) oil_free(&l->v[i].oil);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/* An $elemMatch on documents: its conditions are on paths below `ncomp` components. */
typedef struct ctx {
    int parent;
    size_t ncomp;
} ctx_t;

typedef struct pred {
    char *path;
    int ctx;
    item_t it;
} pred_t;

typedef struct builder {
    mk_bounds_t *b;
    mk_error_t *err;
    bool multikey;
    bool residual; /* some condition is not represented by a predicate: bounds not exact */
    pred_t *preds;
    size_t npreds, cappreds;
    ctx_t *ctxs;
    size_t nctxs, capctxs;
    int depth;
} builder_t;

static int nomem(builder_t *bl)
{
    return mk_error_nomem(bl->err);
}

static int items_push(builder_t *bl, items_t *l, item_t *it)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        item_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            oil_free(&it->oil);
            return nomem(bl);
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *it;
    return MK_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Conditions -> items                                                                          */

static int item_full(builder_t *bl, item_t *it)
{
    *it = (item_t){.exact = false};
    return oil_full(&it->oil) == MK_OK ? MK_OK : nomem(bl);
}

static int push_nullish(oil_t *o)
{
    /* missing fields index as null; MongoDB < 8 also lets null match undefined, which is also
     * the key of an empty array */
    if (oil_point(o, &V_UNDEFINED) != MK_OK) return MK_ENOMEM;
    return oil_point(o, &V_NULL);
}

static void finish_item(item_t *it, bool positive_kind)
{
    oil_normalize(&it->oil);
    it->positive =
        positive_kind && !oil_contains(&it->oil, &V_NULL) && !oil_contains(&it->oil, &V_UNDEFINED);
}

/* { path: v } / { $eq: v } */
static int eq_item(builder_t *bl, const bson_value_t *v, item_t *it)
{
    *it = (item_t){.exact = true};
    int rc = MK_OK;
    switch (v->value_type) {
    case BSON_TYPE_NULL:
        rc = push_nullish(&it->oil);
        break;
    case BSON_TYPE_UNDEFINED: /* rejected by the matcher */
        return item_full(bl, it);
    case BSON_TYPE_ARRAY: {
        /* a whole array equal to v has its elements as keys: scan its first element too (an
         * empty array indexes as undefined); an array nested in an array is indexed whole */
        it->exact = false;
        rc = oil_point(&it->oil, v);
        bson_iter_t ai;
        if (rc == MK_OK &&
            bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len)) {
            if (bson_iter_next(&ai))
                rc = oil_point(&it->oil, bson_iter_value(&ai));
            else
                rc = oil_point(&it->oil, &V_UNDEFINED);
        }
        break;
    }
    default:
        rc = oil_point(&it->oil, v);
        break;
    }
    if (rc != MK_OK) {
        oil_free(&it->oil);
        return nomem(bl);
    }
    finish_item(it, true);
    return MK_OK;
}

/* $gt/$gte/$lt/$lte with type bracketing. */
static int range_item(builder_t *bl, const char *op, const bson_value_t *v, item_t *it)
{
    bool gt = op[1] == 'g', incl = op[3] == 'e';
    *it = (item_t){.exact = true};
    int rc = MK_OK;
    const bson_value_t *clo, *chi;
    bool clo_incl, chi_incl;
    switch (v->value_type) {
    case BSON_TYPE_MINKEY:
        if (gt)
            rc = oil_push(&it->oil, &V_MINKEY, incl, &V_MAXKEY, true);
        else if (incl)
            rc = oil_point(&it->oil, &V_MINKEY);
        break;
    case BSON_TYPE_MAXKEY:
        if (!gt)
            rc = oil_push(&it->oil, &V_MINKEY, true, &V_MAXKEY, incl);
        else if (incl)
            rc = oil_point(&it->oil, &V_MAXKEY);
        break;
    case BSON_TYPE_NULL: /* $gte/$lte: null compare like equality; $gt/$lt: nothing */
        if (incl) rc = push_nullish(&it->oil);
        break;
    default:
        if (mk_type_is_number(v->value_type) && isnan(mk_value_as_double(v))) {
            if (incl) rc = oil_point(&it->oil, &V_NAN);
            break;
        }
        if (!type_class(v->value_type, &clo, &clo_incl, &chi, &chi_incl))
            return item_full(bl, it); /* arrays, regexes, code...: left to the filter */
        if (gt)
            rc = oil_push(&it->oil, v, incl, chi, chi_incl);
        else
            rc = oil_push(&it->oil, clo, clo_incl, v, incl);
        break;
    }
    if (rc != MK_OK) {
        oil_free(&it->oil);
        return nomem(bl);
    }
    finish_item(it, true);
    return MK_OK;
}

/* The literal text every match of `pat` starts with, when the regex is anchored at the start
 * of the string and its flags keep ^ and literals plain (no i, m, x). `out` has room for
 * strlen(pat) bytes. *pure: the pattern is nothing but ^ and that literal. */
static bool regex_prefix(const char *pat, const char *flags, char *out, size_t *outlen, bool *pure)
{
    for (const char *f = flags; *f; f++)
        if (*f != 's' && *f != 'u') return false;
    if (strchr(pat, '|')) return false; /* a top-level alternative would not be anchored */
    const unsigned char *p;
    if (pat[0] == '^')
        p = (const unsigned char *)pat + 1;
    else if (pat[0] == '\\' && pat[1] == 'A')
        p = (const unsigned char *)pat + 2;
    else
        return false;
    size_t n = 0, last = 0;
    *pure = false;
    for (;;) {
        unsigned char c = *p;
        if (c == 0) {
            *pure = true;
            break;
        }
        if (c == '\\') {
            unsigned char e = p[1];
            bool punct =
                e && e < 0x80 &&
                !((e >= '0' && e <= '9') || (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z'));
            if (!punct) break; /* \d, \Q, \x.., back-references...: stop here */
            last = n;
            out[n++] = (char)e;
            p += 2;
            continue;
        }
        if (strchr("^$.[]()*+?{}|", c)) {
            if (c == '*' || c == '?' || c == '{') n = last; /* the last literal may be absent */
            break;
        }
        last = n;
        out[n++] = (char)*p++;
        if (c >= 0xC0) /* one UTF-8 character: a quantifier after it repeats it whole */
            while (*p >= 0x80 && *p < 0xC0) out[n++] = (char)*p++;
    }
    *outlen = n;
    return true;
}

/* /pat/flags: the strings it can match, and the regex value itself (a stored regex matches a
 * regex condition when it is the same regex). */
static int regex_item(builder_t *bl, const char *pat, const char *flags, item_t *it)
{
    *it = (item_t){.exact = false};
    bson_value_t re = {.value_type = BSON_TYPE_REGEX};
    re.value.v_regex.regex = (char *)pat;
    re.value.v_regex.options = (char *)flags;
    size_t plen = strlen(pat), n = 0;
    bool pure = false;
    char *buf = arena_alloc(bl->b, plen + 1);
    if (!buf) return nomem(bl);
    int rc;
    if (regex_prefix(pat, flags, buf, &n, &pure)) {
        bson_value_t lo = {.value_type = BSON_TYPE_UTF8};
        lo.value.v_utf8.str = buf;
        lo.value.v_utf8.len = (uint32_t)n;
        /* the first string above every string starting with the prefix */
        size_t m = n;
        while (m > 0 && (unsigned char)buf[m - 1] == 0xFF) m--;
        if (m == 0) {
            rc = oil_push(&it->oil, &lo, true, &V_EMPTY_DOC, false);
        } else {
            char *up = arena_alloc(bl->b, m);
            if (!up) return nomem(bl);
            memcpy(up, buf, m);
            up[m - 1] = (char)((unsigned char)up[m - 1] + 1);
            bson_value_t hi = {.value_type = BSON_TYPE_UTF8};
            hi.value.v_utf8.str = up;
            hi.value.v_utf8.len = (uint32_t)m;
            rc = oil_push(&it->oil, &lo, true, &hi, false);
        }
        it->exact = pure;
    } else {
        rc = oil_push(&it->oil, &V_EMPTY_STR, true, &V_EMPTY_DOC, false);
    }
    if (rc == MK_OK) rc = oil_point(&it->oil, &re);
    if (rc != MK_OK) {
        oil_free(&it->oil);
        return nomem(bl);
    }
    finish_item(it, true);
    return MK_OK;
}

/* $in: [...] — equalities and regexes. */
static int in_item(builder_t *bl, const bson_value_t *arr, item_t *it)
{
    *it = (item_t){.exact = true};
    if (arr->value_type != BSON_TYPE_ARRAY) return item_full(bl, it);
    bson_iter_t ai;
    if (!bson_iter_init_from_data(&ai, arr->value.v_doc.data, arr->value.v_doc.data_len))
        return item_full(bl, it);
    while (bson_iter_next(&ai)) {
        const bson_value_t *e = bson_iter_value(&ai);
        item_t sub;
        int rc = e->value_type == BSON_TYPE_REGEX
                     ? regex_item(bl, e->value.v_regex.regex,
                                  e->value.v_regex.options ? e->value.v_regex.options : "", &sub)
                     : eq_item(bl, e, &sub);
        if (rc != MK_OK) {
            oil_free(&it->oil);
            return rc;
        }
        it->exact = it->exact && sub.exact;
        rc = oil_append(&it->oil, &sub.oil); /* normalized once, by finish_item */
        oil_free(&sub.oil);
        if (rc != MK_OK) {
            oil_free(&it->oil);
            return nomem(bl);
        }
    }
    finish_item(it, true);
    return MK_OK;
}

/* $ne/$nin/$not: the values `in` excludes. Only an exact OIL can be complemented. On a
 * multikey index an empty array (key undefined) or a scalar where a dotted path continues (key
 * null) gives keys the matcher never sees as values: keep those keys in. */
static int complement_item(builder_t *bl, item_t *in, item_t *it)
{
    if (!in->exact) {
        oil_free(&in->oil);
        return item_full(bl, it);
    }
    *it = (item_t){.exact = !bl->multikey};
    int rc = oil_complement(&in->oil, &it->oil);
    oil_free(&in->oil);
    if (rc == MK_OK && bl->multikey) rc = push_nullish(&it->oil);
    if (rc != MK_OK) {
        oil_free(&it->oil);
        return nomem(bl);
    }
    finish_item(it, false);
    return MK_OK;
}

/* The interval of a $type code (number) or alias (string); false when there is none. */
static bool type_code_of(const bson_value_t *v, int *code)
{
    static const struct {
        const char *name;
        int code;
    } aliases[] = {
        {"double", 1},      {"string", 2},     {"object", 3},
        {"array", 4},       {"binData", 5},    {"undefined", 6},
        {"objectId", 7},    {"bool", 8},       {"date", 9},
        {"null", 10},       {"regex", 11},     {"dbPointer", 12},
        {"javascript", 13}, {"symbol", 14},    {"javascriptWithScope", 15},
        {"int", 16},        {"timestamp", 17}, {"long", 18},
        {"decimal", 19},    {"minKey", -1},    {"maxKey", 127},
        {"number", 1000},
    };
    if (v->value_type == BSON_TYPE_UTF8) {
        for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
            if (strlen(aliases[i].name) == v->value.v_utf8.len &&
                memcmp(aliases[i].name, v->value.v_utf8.str, v->value.v_utf8.len) == 0) {
                *code = aliases[i].code;
                return true;
            }
        }
        return false;
    }
    if (!mk_type_is_number(v->value_type)) return false;
    double d = mk_value_as_double(v);
    if (!(d >= -1 && d <= 127) || d != floor(d)) return false;
    *code = (int)d;
    return true;
}

static int type_one(oil_t *o, int code, bool *all)
{
    const bson_value_t *lo, *hi;
    bool li, hinc;
    switch (code) {
    case 1:
    case 16:
    case 18:
    case 19:
    case 1000: /* numbers, NaN included */
        return oil_push(o, &V_NAN, true, &V_POS_INF, true);
    case -1:
        return oil_point(o, &V_MINKEY);
    case 127:
        return oil_point(o, &V_MAXKEY);
    case 6:
        return oil_point(o, &V_UNDEFINED);
    case 10:
        return oil_point(o, &V_NULL);
    case 2:
    case 14:
        type_class(BSON_TYPE_UTF8, &lo, &li, &hi, &hinc);
        break;
    case 3:
        type_class(BSON_TYPE_DOCUMENT, &lo, &li, &hi, &hinc);
        break;
    case 5:
        type_class(BSON_TYPE_BINARY, &lo, &li, &hi, &hinc);
        break;
    case 7:
        type_class(BSON_TYPE_OID, &lo, &li, &hi, &hinc);
        break;
    case 8:
        type_class(BSON_TYPE_BOOL, &lo, &li, &hi, &hinc);
        break;
    case 9:
        type_class(BSON_TYPE_DATE_TIME, &lo, &li, &hi, &hinc);
        break;
    case 17:
        type_class(BSON_TYPE_TIMESTAMP, &lo, &li, &hi, &hinc);
        break;
    default: /* arrays (keys are their elements), regex, code...: anything */
        *all = true;
        return MK_OK;
    }
    return oil_push(o, lo, li, hi, hinc);
}

static int type_item(builder_t *bl, const bson_value_t *v, item_t *it)
{
    *it = (item_t){.exact = false};
    bool all = false;
    int code, rc = MK_OK;
    if (v->value_type == BSON_TYPE_ARRAY) {
        bson_iter_t ai;
        if (bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len)) {
            while (rc == MK_OK && !all && bson_iter_next(&ai)) {
                if (type_code_of(bson_iter_value(&ai), &code))
                    rc = type_one(&it->oil, code, &all);
                else
                    all = true;
            }
        }
    } else if (type_code_of(v, &code)) {
        rc = type_one(&it->oil, code, &all);
    } else {
        all = true;
    }
    if (rc != MK_OK) {
        oil_free(&it->oil);
        return nomem(bl);
    }
    if (all) {
        oil_free(&it->oil);
        return item_full(bl, it);
    }
    finish_item(it, false);
    return MK_OK;
}

static bool truthy(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_EOD:
        return false;
    case BSON_TYPE_BOOL:
        return v->value.v_bool;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128:
        return mk_value_as_double(v) != 0;
    default:
        return true;
    }
}

/* Intersection of all items (one value satisfying all of them). */
static int intersect_items(builder_t *bl, items_t *l, item_t *it)
{
    *it = (item_t){.exact = true};
    if (oil_full(&it->oil) != MK_OK) return nomem(bl);
    for (size_t i = 0; i < l->n; i++) {
        oil_t out = {0};
        if (oil_intersect(&it->oil, &l->v[i].oil, &out) != MK_OK) {
            oil_free(&out);
            oil_free(&it->oil);
            return nomem(bl);
        }
        oil_free(&it->oil);
        it->oil = out;
        it->exact = it->exact && l->v[i].exact;
    }
    return MK_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing the filter                                                                           */

static bool key_is(const bson_iter_t *it, const char *s)
{
    return strcmp(bson_iter_key(it), s) == 0;
}

/* MongoDB's operator document: first field starts with '$', and it is not a DBRef. */
static bool is_operator_doc(const bson_value_t *v)
{
    bson_iter_t it;
    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_next(&it) || bson_iter_key(&it)[0] != '$')
        return false;
    bool ref = false, id = false;
    do {
        if (key_is(&it, "$ref")) ref = true;
        if (key_is(&it, "$id")) id = true;
    } while (bson_iter_next(&it));
    return !(ref && id);
}

/* An $elemMatch argument whose first operator applies to values ({ $gt: 1 }), not documents. */
static bool elem_match_on_values(const bson_value_t *v)
{
    static const char *const pathless[] = {
        "$and",        "$or",         "$nor",         "$expr",       "$where", "$text", "$comment",
        "$jsonSchema", "$alwaysTrue", "$alwaysFalse", "$sampleRate", "$id",    "$ref",  "$db"};
    bson_iter_t it;
    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_next(&it) || bson_iter_key(&it)[0] != '$')
        return false;
    for (size_t i = 0; i < sizeof pathless / sizeof pathless[0]; i++)
        if (key_is(&it, pathless[i])) return false;
    return true;
}

static int parse_query(builder_t *bl, const uint8_t *data, uint32_t len, int ctx,
                       const char *prefix);

static size_t count_components(const char *path)
{
    size_t n = 1;
    for (const char *p = path; *p; p++) n += *p == '.';
    return n;
}

/* $elemMatch on documents at `path`: its query's paths continue `path`, in a new context. */
static int elem_match_docs(builder_t *bl, const char *path, int ctx, const bson_value_t *v)
{
    if (bl->nctxs == bl->capctxs) {
        size_t cap = bl->capctxs * 2;
        ctx_t *c = realloc(bl->ctxs, cap * sizeof *c);
        if (!c) return nomem(bl);
        bl->ctxs = c;
        bl->capctxs = cap;
    }
    int id = (int)bl->nctxs++;
    bl->ctxs[id] = (ctx_t){ctx, count_components(path)};
    return parse_query(bl, v->value.v_doc.data, v->value.v_doc.data_len, id, path);
}

static int ops_items(builder_t *bl, const bson_value_t *ops, const char *path, int ctx,
                     items_t *out, bool *incomplete);

/* $elemMatch on values: one item, the intersection of its operators (one element satisfies all
 * of them, and elements are keys). */
static int elem_match_values(builder_t *bl, const bson_value_t *v, item_t *it)
{
    items_t sub = {0};
    bool inc = false;
    int rc = ops_items(bl, v, NULL, 0, &sub, &inc);
    if (rc == MK_OK) rc = intersect_items(bl, &sub, it);
    items_free(&sub);
    if (rc != MK_OK) return rc;
    it->exact = false; /* it also needs an array */
    it->elem_value = true;
    finish_item(it, false);
    return MK_OK;
}

/* Regex of an operator document: { $regex: 'p' | /p/f, $options: 'f' }. */
static int regex_ops_item(builder_t *bl, const bson_value_t *ops, item_t *it)
{
    const char *pat = "", *flags = NULL;
    bson_iter_t oi;
    if (bson_iter_init_from_data(&oi, ops->value.v_doc.data, ops->value.v_doc.data_len)) {
        while (bson_iter_next(&oi)) {
            if (key_is(&oi, "$regex")) {
                if (BSON_ITER_HOLDS_UTF8(&oi)) {
                    pat = bson_iter_utf8(&oi, NULL);
                } else if (BSON_ITER_HOLDS_REGEX(&oi)) {
                    const char *o = NULL;
                    pat = bson_iter_regex(&oi, &o);
                    if (o && *o) flags = o;
                } else {
                    return item_full(bl, it);
                }
            } else if (key_is(&oi, "$options") && BSON_ITER_HOLDS_UTF8(&oi) && !flags) {
                flags = bson_iter_utf8(&oi, NULL);
            }
        }
    }
    return regex_item(bl, pat, flags ? flags : "", it);
}

/* The items of an operator document { $gt: 1, $lt: 5, ... }, one per operator that bounds
 * values. `path` is NULL inside $not and $elemMatch on values, where conditions on documents
 * cannot become predicates. *incomplete: some operator gave no item. */
static int ops_items(builder_t *bl, const bson_value_t *ops, const char *path, int ctx,
                     items_t *out, bool *incomplete)
{
    if (++bl->depth > MAX_DEPTH)
        return mk_error_setc(bl->err, MK_CODE_BAD_VALUE,
                             "filter is nested more than %d levels deep", MAX_DEPTH);
    bson_iter_t oi;
    if (!bson_iter_init_from_data(&oi, ops->value.v_doc.data, ops->value.v_doc.data_len)) {
        *incomplete = true;
        bl->depth--;
        return MK_OK;
    }
    bool regex_done = false;
    int rc = MK_OK;
    while (rc == MK_OK && bson_iter_next(&oi)) {
        const char *op = bson_iter_key(&oi);
        const bson_value_t *v = bson_iter_value(&oi);
        item_t it;
        bool have = true;
        if (!strcmp(op, "$eq")) {
            rc = eq_item(bl, v, &it);
        } else if (!strcmp(op, "$gt") || !strcmp(op, "$gte") || !strcmp(op, "$lt") ||
                   !strcmp(op, "$lte")) {
            rc = range_item(bl, op, v, &it);
        } else if (!strcmp(op, "$ne")) {
            item_t in;
            rc = eq_item(bl, v, &in);
            if (rc == MK_OK) rc = complement_item(bl, &in, &it);
        } else if (!strcmp(op, "$in")) {
            rc = in_item(bl, v, &it);
        } else if (!strcmp(op, "$nin")) {
            item_t in;
            rc = in_item(bl, v, &in);
            if (rc == MK_OK) rc = complement_item(bl, &in, &it);
        } else if (!strcmp(op, "$not")) {
            item_t in;
            if (v->value_type == BSON_TYPE_REGEX) {
                rc = regex_item(bl, v->value.v_regex.regex,
                                v->value.v_regex.options ? v->value.v_regex.options : "", &in);
            } else if (v->value_type == BSON_TYPE_DOCUMENT) {
                items_t sub = {0};
                bool inc = false;
                rc = ops_items(bl, v, NULL, 0, &sub, &inc);
                size_t nsub = sub.n;
                if (rc == MK_OK) rc = intersect_items(bl, &sub, &in);
                items_free(&sub);
                if (rc == MK_OK && (inc || nsub == 0)) in.exact = false;
            } else {
                rc = item_full(bl, &in);
            }
            if (rc == MK_OK) rc = complement_item(bl, &in, &it);
        } else if (!strcmp(op, "$exists")) {
            it = (item_t){.exact = false};
            if (truthy(v)) {
                rc = item_full(bl, &it);
            } else {
                rc = oil_point(&it.oil, &V_NULL) == MK_OK ? MK_OK : nomem(bl);
                if (rc == MK_OK) finish_item(&it, false);
            }
        } else if (!strcmp(op, "$type")) {
            rc = type_item(bl, v, &it);
        } else if (!strcmp(op, "$regex")) {
            if (regex_done)
                have = false;
            else
                rc = regex_ops_item(bl, ops, &it);
            regex_done = true;
        } else if (!strcmp(op, "$options")) {
            have = false;
        } else if (!strcmp(op, "$elemMatch")) {
            *incomplete = true; /* it needs an array: never exact */
            if (!path) {
                /* under $not, or on the elements of an $elemMatch: those arrays are indexed
                 * whole, not element by element */
                have = false;
            } else if (elem_match_on_values(v)) {
                rc = elem_match_values(bl, v, &it);
            } else {
                have = false;
                if (v->value_type == BSON_TYPE_DOCUMENT) rc = elem_match_docs(bl, path, ctx, v);
            }
        } else if (!strcmp(op, "$all")) {
            /* each element is a condition of its own: { $all: [1, 2] } is 1 and 2 */
            *incomplete = true;
            have = false;
            bson_iter_t ai;
            if (v->value_type == BSON_TYPE_ARRAY &&
                bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len)) {
                while (rc == MK_OK && bson_iter_next(&ai)) {
                    const bson_value_t *e = bson_iter_value(&ai);
                    bson_iter_t ei;
                    item_t ait;
                    bool got = true;
                    if (e->value_type == BSON_TYPE_REGEX) {
                        rc = regex_item(bl, e->value.v_regex.regex,
                                        e->value.v_regex.options ? e->value.v_regex.options : "",
                                        &ait);
                    } else if (e->value_type == BSON_TYPE_DOCUMENT &&
                               bson_iter_init_from_data(&ei, e->value.v_doc.data,
                                                        e->value.v_doc.data_len) &&
                               bson_iter_next(&ei) && key_is(&ei, "$elemMatch")) {
                        const bson_value_t *em = bson_iter_value(&ei);
                        if (!path) {
                            got = false;
                        } else if (elem_match_on_values(em)) {
                            rc = elem_match_values(bl, em, &ait);
                        } else {
                            got = false;
                            if (em->value_type == BSON_TYPE_DOCUMENT)
                                rc = elem_match_docs(bl, path, ctx, em);
                        }
                    } else {
                        rc = eq_item(bl, e, &ait);
                    }
                    if (rc == MK_OK && got) rc = items_push(bl, out, &ait);
                }
            }
        } else {
            /* $size, $mod, $bits*, geo...: no bounds */
            *incomplete = true;
            have = false;
        }
        if (rc == MK_OK && have) rc = items_push(bl, out, &it);
    }
    bl->depth--;
    return rc;
}

static int pred_add(builder_t *bl, const char *path, int ctx, item_t *it)
{
    if (bl->npreds == bl->cappreds) {
        size_t cap = bl->cappreds ? bl->cappreds * 2 : 8;
        pred_t *p = realloc(bl->preds, cap * sizeof *p);
        if (!p) {
            oil_free(&it->oil);
            return nomem(bl);
        }
        bl->preds = p;
        bl->cappreds = cap;
    }
    char *copy = strdup(path);
    if (!copy) {
        oil_free(&it->oil);
        return nomem(bl);
    }
    bl->preds[bl->npreds++] = (pred_t){copy, ctx, *it};
    return MK_OK;
}

/* bson_count_keys for a borrowed array value. */
static uint32_t count_keys_value(const bson_value_t *v)
{
    bson_iter_t it;
    uint32_t n = 0;
    if (bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
        while (bson_iter_next(&it)) n++;
    return n;
}

/* One field of a query document: a path condition, or $and / $or / ... */
static int parse_field(builder_t *bl, bson_iter_t *fi, int ctx, const char *prefix)
{
    const char *key = bson_iter_key(fi);
    const bson_value_t *v = bson_iter_value(fi);
    if (key[0] == '$') {
        bool is_and = !strcmp(key, "$and"), is_or = !strcmp(key, "$or");
        if (!strcmp(key, "$comment")) return MK_OK;
        bson_iter_t ai;
        if ((is_and || is_or) && v->value_type == BSON_TYPE_ARRAY &&
            bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len)) {
            /* $and: every clause holds; $or of one clause: that clause holds */
            if (is_or && count_keys_value(v) != 1) {
                bl->residual = true;
                return MK_OK;
            }
            while (bson_iter_next(&ai)) {
                const bson_value_t *e = bson_iter_value(&ai);
                if (e->value_type != BSON_TYPE_DOCUMENT) {
                    bl->residual = true;
                    continue;
                }
                int rc = parse_query(bl, e->value.v_doc.data, e->value.v_doc.data_len, ctx, prefix);
                if (rc != MK_OK) return rc;
            }
            return MK_OK;
        }
        bl->residual = true; /* $or, $nor, $expr, $where, $text...: left to the filter */
        return MK_OK;
    }
    char *path;
    if (prefix) {
        if (asprintf(&path, "%s.%s", prefix, key) < 0) return nomem(bl);
    } else {
        path = strdup(key);
        if (!path) return nomem(bl);
    }
    int rc = MK_OK;
    item_t it;
    if (is_operator_doc(v)) {
        items_t l = {0};
        bool inc = false;
        rc = ops_items(bl, v, path, ctx, &l, &inc);
        if (inc) bl->residual = true;
        for (size_t i = 0; rc == MK_OK && i < l.n; i++) {
            rc = pred_add(bl, path, ctx, &l.v[i]);
            l.v[i].oil = (oil_t){0}; /* moved (or freed on failure) */
        }
        items_free(&l);
    } else if (v->value_type == BSON_TYPE_REGEX) {
        rc = regex_item(bl, v->value.v_regex.regex,
                        v->value.v_regex.options ? v->value.v_regex.options : "", &it);
        if (rc == MK_OK) rc = pred_add(bl, path, ctx, &it);
    } else {
        rc = eq_item(bl, v, &it);
        if (rc == MK_OK) rc = pred_add(bl, path, ctx, &it);
    }
    free(path);
    return rc;
}

static int parse_query(builder_t *bl, const uint8_t *data, uint32_t len, int ctx,
                       const char *prefix)
{
    if (++bl->depth > MAX_DEPTH)
        return mk_error_setc(bl->err, MK_CODE_BAD_VALUE,
                             "filter is nested more than %d levels deep", MAX_DEPTH);
    bson_iter_t fi;
    if (!bson_iter_init_from_data(&fi, data, len)) {
        bl->residual = true;
        bl->depth--;
        return MK_OK;
    }
    while (bson_iter_next(&fi)) {
        int rc = parse_field(bl, &fi, ctx, prefix);
        if (rc != MK_OK) return rc;
    }
    bl->depth--;
    return MK_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Assigning predicates to index fields                                                         */

/* Number of leading path components a and b have in common. */
static size_t common_components(const char *a, const char *b)
{
    size_t n = 0;
    for (;;) {
        size_t la = strcspn(a, "."), lb = strcspn(b, ".");
        if (la != lb || memcmp(a, b, la) != 0) return n;
        n++;
        if (!a[la] || !b[lb]) return n;
        a += la + 1;
        b += lb + 1;
    }
}

static bool has_numeric_component(const char *path)
{
    for (const char *p = path; *p;) {
        size_t l = strcspn(p, ".");
        bool digits = l > 0;
        for (size_t i = 0; i < l; i++)
            if (p[i] < '0' || p[i] > '9') digits = false;
        if (digits) return true;
        p += l;
        if (*p) p++;
    }
    return false;
}

static bool ctx_is_ancestor(const builder_t *bl, int anc, int c)
{
    for (; c >= 0; c = bl->ctxs[c].parent)
        if (c == anc) return true;
    return false;
}

/* Can the bounds of p and q (on two fields of a multikey index) be compounded? Keys pair the
 * values of both fields from the same array element, so only when their paths part ways where
 * one $elemMatch holding both conditions put them in the same element (or at the top). */
static bool compoundable(const builder_t *bl, const pred_t *p, const pred_t *q)
{
    int d = p->ctx;
    while (!ctx_is_ancestor(bl, d, q->ctx)) d = bl->ctxs[d].parent;
    return common_components(p->path, q->path) == bl->ctxs[d].ncomp;
}

/* Preference among the predicates of one field of a multikey index: points, then ranges. */
static int pred_rank(const pred_t *p)
{
    if (oil_all_points(&p->it.oil)) return 0;
    return oil_is_full(&p->it.oil) ? 2 : 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                     */

typedef struct emit {
    mk_buf_t bytes;
    rec_t *recs;
    size_t n, cap;
    bool inexact;
} emit_t;

static void enc(mk_buf_t *b, const bson_value_t *v, int dir)
{
    if (dir < 0)
        mk_keyenc_value_desc(b, v);
    else
        mk_keyenc_value(b, v);
}

/* The first byte string above every string that starts with b[from..len). */
static void successor(mk_buf_t *b, size_t from)
{
    while (b->len > from && b->data[b->len - 1] == 0xFF) b->len--;
    if (b->len > from)
        b->data[b->len - 1]++;
    else
        mk_buf_byte(b, 0xFF); /* cannot happen: no key starts with 0xFF */
}

/* The largest double <= v (a number that is not NaN). */
static double floor_double(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return v->value.v_int32;
    case BSON_TYPE_INT64: {
        double x = (double)v->value.v_int64;
        if ((long double)x > (long double)v->value.v_int64) x = nextafter(x, -INFINITY);
        return x;
    }
    case BSON_TYPE_DOUBLE:
        return v->value.v_double;
    default: {
        long double ld = mk_decimal_to_ld(&v->value.v_decimal128);
        double x = (double)ld;
        if ((long double)x > ld) x = nextafter(x, -INFINITY);
        return x;
    }
    }
}

/* A number keyenc encodes exactly, with no other number sharing its key. */
static bool number_exact(const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_DOUBLE) return true;
    if (v->value_type == BSON_TYPE_INT64)
        return (long double)floor_double(v) == (long double)v->value.v_int64;
    return false;
}

static bool is_nan_number(const bson_value_t *v)
{
    return mk_type_is_number(v->value_type) && isnan(mk_value_as_double(v));
}

/* Widens the numeric ends of a range to what keyenc's rounding of decimal128 needs (see the
 * top of the file). `low` is the lower end in value order. */
static void widen(bson_value_t *v, bool *incl, bool low, bool *inexact)
{
    if (!mk_type_is_number(v->value_type) || is_nan_number(v)) return;
    if (low) {
        if (!*incl || !number_exact(v)) *inexact = true;
        double d = floor_double(v);
        *v = (bson_value_t){.value_type = BSON_TYPE_DOUBLE, .value.v_double = d};
        *incl = true;
        return;
    }
    bool pos_inf = v->value_type == BSON_TYPE_DOUBLE && v->value.v_double == INFINITY;
    if ((*incl && !pos_inf) || !number_exact(v)) *inexact = true;
    if (v->value_type != BSON_TYPE_DECIMAL128) return;
    double d = floor_double(v);
    if (d == INFINITY) { /* decimal +Infinity */
        *v = (bson_value_t){.value_type = BSON_TYPE_DOUBLE, .value.v_double = d};
        return;
    }
    *v = (bson_value_t){.value_type = BSON_TYPE_DOUBLE, .value.v_double = nextafter(d, INFINITY)};
    *incl = false;
}

/* Cuts a bound longer than what mk_keyenc_fit keeps exactly (its shortened keys keep the first
 * MK_KEY_PREFIX bytes). */
static void fit(emit_t *e, size_t start, bool upper)
{
    if (e->bytes.len - start <= MK_KEY_PREFIX) return;
    e->inexact = true;
    e->bytes.len = start + MK_KEY_PREFIX;
    if (upper) successor(&e->bytes, start);
}

/* Records the range whose lo is bytes[lo_off, hi_off) and whose hi is bytes[hi_off, len). */
static int emit_rec(emit_t *e, size_t lo_off, size_t hi_off)
{
    if (e->bytes.failed) return MK_ENOMEM;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        rec_t *r = realloc(e->recs, cap * sizeof *r);
        if (!r) return MK_ENOMEM;
        e->recs = r;
        e->cap = cap;
    }
    e->recs[e->n++] = (rec_t){lo_off, hi_off - lo_off, hi_off, e->bytes.len - hi_off};
    return MK_OK;
}

/* Emits the range of keys starting with `prefix` whose next field lies in iv. iv NULL: any
 * key starting with the prefix. */
static int emit_range(emit_t *e, const mk_buf_t *prefix, const viv_t *iv, int dir)
{
    size_t lo_off = e->bytes.len;
    if (!iv || viv_point(iv)) {
        /* [P v, succ(P v)): every key whose fields so far are P and v */
        if (iv && mk_type_is_number(iv->lo.value_type) && !is_nan_number(&iv->lo))
            e->inexact = true; /* keyenc shares the key of close decimals */
        size_t hi_off = 0;
        for (int pass = 0; pass < 2; pass++) { /* the same bytes twice: lo, then hi */
            size_t off = e->bytes.len;
            mk_buf_append(&e->bytes, prefix->data, prefix->len);
            if (iv) enc(&e->bytes, &iv->lo, dir);
            if (e->bytes.failed) return MK_ENOMEM;
            if (pass == 0) {
                fit(e, off, false);
                hi_off = e->bytes.len;
            } else {
                if (e->bytes.len - off > MK_KEY_PREFIX) e->bytes.len = off + MK_KEY_PREFIX;
                successor(&e->bytes, off);
            }
        }
        return emit_rec(e, lo_off, hi_off);
    }
    bson_value_t lo = iv->lo, hi = iv->hi;
    bool li = iv->lo_incl, hinc = iv->hi_incl;
    widen(&lo, &li, true, &e->inexact);
    widen(&hi, &hinc, false, &e->inexact);
    const bson_value_t *start = dir > 0 ? &lo : &hi, *end = dir > 0 ? &hi : &lo;
    bool start_incl = dir > 0 ? li : hinc, end_incl = dir > 0 ? hinc : li;
    mk_buf_append(&e->bytes, prefix->data, prefix->len);
    enc(&e->bytes, start, dir);
    if (e->bytes.failed) return MK_ENOMEM;
    if (!start_incl) successor(&e->bytes, lo_off);
    fit(e, lo_off, false);
    size_t hi_off = e->bytes.len;
    mk_buf_append(&e->bytes, prefix->data, prefix->len);
    enc(&e->bytes, end, dir);
    if (e->bytes.failed) return MK_ENOMEM;
    if (end_incl) successor(&e->bytes, hi_off);
    fit(e, hi_off, true);
    return emit_rec(e, lo_off, hi_off);
}

static int cmp_bytes(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return (al > bl) - (al < bl);
}

static int cmp_interval(const void *pa, const void *pb)
{
    const mk_interval_t *a = pa, *b = pb;
    return cmp_bytes(a->lo, a->lo_len, b->lo, b->lo_len);
}

/* ------------------------------------------------------------------------------------------ */
/* Build                                                                                        */

static void builder_free(builder_t *bl)
{
    for (size_t i = 0; i < bl->npreds; i++) {
        free(bl->preds[i].path);
        oil_free(&bl->preds[i].it.oil);
    }
    free(bl->preds);
    free(bl->ctxs);
}

void mk_bounds_destroy(mk_bounds_t *b)
{
    if (!b) return;
    free(b->filter);
    while (b->arena) {
        ablock_t *n = b->arena->next;
        free(b->arena);
        b->arena = n;
    }
    if (b->paths)
        for (size_t i = 0; i < b->nfields; i++) free(b->paths[i]);
    free(b->paths);
    free(b->dirs);
    if (b->fields)
        for (size_t i = 0; i < b->nfields; i++) oil_free(&b->fields[i]);
    free(b->fields);
    free(b->iv);
    free(b->bytes);
    free(b);
}

static int check_args(const char *const *paths, const int *dirs, size_t nfields, mk_error_t *err)
{
    if (!paths || !dirs || nfields == 0)
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "index bounds need at least one field");
    if (nfields > MAX_FIELDS)
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "index bounds: more than %d fields",
                             MAX_FIELDS);
    for (size_t i = 0; i < nfields; i++) {
        if (!paths[i] || !*paths[i])
            return mk_error_setc(err, MK_CODE_BAD_VALUE, "index bounds: field %zu has no path", i);
        if (dirs[i] != 1 && dirs[i] != -1)
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "index bounds: direction of '%s' must be 1 or -1, not %d",
                                 paths[i], dirs[i]);
    }
    return MK_OK;
}

/* Step 2: the OIL of every field into b->fields; *used[i] tells which predicates were used. */
static int assign(builder_t *bl, mk_bounds_t *b, const char *const *paths, size_t nfields,
                  bool *used, bool *any_first)
{
    int *chosen = malloc(nfields * sizeof *chosen);
    if (!chosen) return nomem(bl);
    int rc = MK_OK;
    *any_first = false;
    for (size_t f = 0; f < nfields && rc == MK_OK; f++) {
        chosen[f] = -1;
        bool numeric = has_numeric_component(paths[f]);
        oil_t acc = {0};
        bool have = false;
        for (int pass = 0; pass < 3 && rc == MK_OK; pass++) {
            for (size_t i = 0; i < bl->npreds && rc == MK_OK; i++) {
                pred_t *p = &bl->preds[i];
                if (strcmp(p->path, paths[f]) != 0) continue;
                /* Positional paths ('a.0'): the matcher also looks for a field "0" in the
                 * array's documents and sees "missing" there, which the keys do not show. */
                if (numeric && (p->ctx != 0 || p->it.elem_value || !p->it.positive)) continue;
                if (numeric) p->it.exact = false;
                if (f == 0) *any_first = true;
                if (!bl->multikey) {
                    if (pass > 0) continue;
                    if (!have) {
                        rc = oil_union(&acc, &p->it.oil) == MK_OK ? MK_OK : nomem(bl);
                        have = true;
                    } else {
                        oil_t out = {0};
                        if (oil_intersect(&acc, &p->it.oil, &out) != MK_OK) {
                            oil_free(&out);
                            rc = nomem(bl);
                        }
                        oil_free(&acc);
                        acc = out;
                    }
                    used[i] = true;
                    continue;
                }
                if (have || pred_rank(p) != pass) continue;
                bool ok = true;
                for (size_t g = 0; g < f && ok; g++)
                    if (chosen[g] >= 0) ok = compoundable(bl, &bl->preds[chosen[g]], p);
                if (!ok) continue;
                rc = oil_union(&acc, &p->it.oil) == MK_OK ? MK_OK : nomem(bl);
                have = true;
                chosen[f] = (int)i;
                used[i] = true;
            }
        }
        if (rc == MK_OK && !have) rc = oil_full(&acc) == MK_OK ? MK_OK : nomem(bl);
        b->fields[f] = acc;
    }
    free(chosen);
    return rc;
}

/* Step 3: the byte ranges of fields 0..k (points on 0..k-1). */
static int encode(builder_t *bl, mk_bounds_t *b, size_t k, emit_t *e)
{
    size_t idx[MAX_FIELDS] = {0};
    mk_buf_t prefix;
    mk_buf_init(&prefix);
    int rc = MK_OK;
    for (;;) {
        mk_buf_reset(&prefix);
        for (size_t f = 0; f < k; f++) {
            const oil_t *o = &b->fields[f];
            size_t j = b->dirs[f] > 0 ? idx[f] : o->n - 1 - idx[f];
            if (mk_type_is_number(o->v[j].lo.value_type) && !is_nan_number(&o->v[j].lo))
                e->inexact = true;
            enc(&prefix, &o->v[j].lo, b->dirs[f]);
        }
        if (prefix.failed) {
            rc = MK_ENOMEM;
            break;
        }
        if (k == b->nfields) {
            rc = emit_range(e, &prefix, NULL, 1);
        } else {
            const oil_t *o = &b->fields[k];
            for (size_t i = 0; i < o->n && rc == MK_OK; i++) {
                size_t j = b->dirs[k] > 0 ? i : o->n - 1 - i;
                rc = emit_range(e, &prefix, &o->v[j], b->dirs[k]);
            }
        }
        if (rc != MK_OK) break;
        /* next combination of the leading points, last field fastest (index order) */
        size_t f = k;
        while (f > 0) {
            f--;
            if (++idx[f] < b->fields[f].n) break;
            idx[f] = 0;
            if (f == 0) goto done;
        }
        if (k == 0) break;
    }
done:
    mk_buf_free(&prefix);
    return rc == MK_OK ? MK_OK : nomem(bl);
}

/* Sorts the ranges, merges those that overlap, and hands them to b. */
static int finish_ranges(builder_t *bl, mk_bounds_t *b, emit_t *e)
{
    size_t total = e->bytes.len;
    b->bytes = malloc(total ? total : 1);
    if (!b->bytes) return nomem(bl);
    if (total) memcpy(b->bytes, e->bytes.data, total);
    if (!e->n) return MK_OK;
    b->iv = calloc(e->n, sizeof *b->iv);
    if (!b->iv) return nomem(bl);
    for (size_t i = 0; i < e->n; i++) {
        const rec_t *r = &e->recs[i];
        b->iv[i] = (mk_interval_t){b->bytes + r->lo_off, r->lo_len, true,
                                   b->bytes + r->hi_off, r->hi_len, false};
    }
    qsort(b->iv, e->n, sizeof *b->iv, cmp_interval);
    size_t w = 0;
    for (size_t i = 0; i < e->n; i++) {
        mk_interval_t r = b->iv[i];
        if (cmp_bytes(r.lo, r.lo_len, r.hi, r.hi_len) >= 0) continue; /* empty */
        if (w > 0) {
            mk_interval_t *cur = &b->iv[w - 1];
            if (cmp_bytes(r.lo, r.lo_len, cur->hi, cur->hi_len) <= 0) {
                if (cmp_bytes(r.hi, r.hi_len, cur->hi, cur->hi_len) > 0) {
                    cur->hi = r.hi;
                    cur->hi_len = r.hi_len;
                }
                continue;
            }
        }
        b->iv[w++] = r;
    }
    b->niv = w;
    return MK_OK;
}

int mk_bounds_build(const bson_t *filter, const char *const *paths, const int *dirs, size_t nfields,
                    bool multikey, mk_bounds_t **out, bool *exact, mk_error_t *err)
{
    *out = NULL;
    if (exact) *exact = false;
    if (check_args(paths, dirs, nfields, err) != MK_OK) return MK_ERR;
    mk_bounds_t *b = calloc(1, sizeof *b);
    builder_t bl = {.b = b, .err = err, .multikey = multikey};
    bool *used = NULL;
    emit_t e = {.inexact = false};
    mk_buf_init(&e.bytes);
    int rc = MK_OK;
    if (!b) return mk_error_nomem(err);
    b->nfields = nfields;
    b->filter = malloc(filter->len);
    b->paths = calloc(nfields, sizeof *b->paths);
    b->dirs = malloc(nfields * sizeof *b->dirs);
    b->fields = calloc(nfields, sizeof *b->fields);
    bl.ctxs = malloc(8 * sizeof *bl.ctxs);
    if (!b->filter || !b->paths || !b->dirs || !b->fields || !bl.ctxs) goto nomem;
    bl.capctxs = 8;
    bl.nctxs = 1;
    bl.ctxs[0] = (ctx_t){-1, 0};
    memcpy(b->filter, bson_get_data(filter), filter->len);
    for (size_t i = 0; i < nfields; i++) {
        b->paths[i] = strdup(paths[i]);
        if (!b->paths[i]) goto nomem;
        b->dirs[i] = dirs[i];
    }

    /* 1. predicates */
    rc = parse_query(&bl, b->filter, filter->len, 0, NULL);
    if (rc != MK_OK) goto fail;

    /* 2. per-field intervals */
    used = calloc(bl.npreds ? bl.npreds : 1, sizeof *used);
    if (!used) goto nomem;
    bool any_first = false;
    rc = assign(&bl, b, paths, nfields, used, &any_first);
    if (rc != MK_OK) goto fail;
    if (!any_first) { /* nothing bears on the leading field: the index cannot help */
        rc = MK_OK;
        goto unusable;
    }

    /* 3. ranges: points on the leading fields, then one field of intervals */
    bool none = false;
    for (size_t f = 0; f < nfields; f++) none = none || b->fields[f].n == 0;
    size_t k = 0;
    while (k < nfields && oil_all_points(&b->fields[k])) k++;
    for (;;) { /* MongoDB's cap on the product */
        size_t prod = 1;
        bool over = false;
        for (size_t f = 0; f <= k && f < nfields && !over; f++) {
            prod *= b->fields[f].n ? b->fields[f].n : 1;
            over = prod > MK_BOUNDS_MAX_PRODUCT;
        }
        if (!over || k == 0) break;
        k--;
    }
    if (!none) {
        rc = encode(&bl, b, k, &e);
        if (rc != MK_OK) goto fail;
    }
    rc = finish_ranges(&bl, b, &e);
    if (rc != MK_OK) goto fail;
    b->full = oil_is_full(&b->fields[0]);

    if (exact) {
        bool ok = !multikey && !bl.residual && !e.inexact;
        for (size_t i = 0; i < bl.npreds && ok; i++) {
            const pred_t *p = &bl.preds[i];
            size_t f = 0;
            while (f < nfields && strcmp(p->path, paths[f]) != 0) f++;
            /* on a field the ranges enforce: the leading points and field k */
            ok = used[i] && p->it.exact && f <= k && f < nfields;
        }
        *exact = ok || none;
    }
    free(used);
    mk_buf_free(&e.bytes);
    free(e.recs);
    builder_free(&bl);
    *out = b;
    return MK_OK;

nomem:
    rc = nomem(&bl);
fail:
unusable:
    free(used);
    mk_buf_free(&e.bytes);
    free(e.recs);
    builder_free(&bl);
    mk_bounds_destroy(b);
    return rc;
}

size_t mk_bounds_count(const mk_bounds_t *b)
{
    return b->niv;
}

const mk_interval_t *mk_bounds_get(const mk_bounds_t *b, size_t i)
{
    return i < b->niv ? &b->iv[i] : NULL;
}

bool mk_bounds_is_full(const mk_bounds_t *b)
{
    return b->full;
}

/* ------------------------------------------------------------------------------------------ */
/* Explain                                                                                      */

/* A double as MongoDB prints it: 5.0, 0.1, 1e+20, inf.0, -inf.0, nan.0. */
static void render_double(bson_string_t *s, double d)
{
    if (isnan(d)) {
        bson_string_append(s, "nan.0");
        return;
    }
    if (isinf(d)) {
        bson_string_append(s, d > 0 ? "inf.0" : "-inf.0");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    bson_string_append(s, buf);
    if (!strpbrk(buf, ".e")) bson_string_append(s, ".0");
}

static void render_value(bson_string_t *s, const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_DOUBLE:
        render_double(s, v->value.v_double);
        break;
    case BSON_TYPE_DECIMAL128: {
        char buf[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, buf);
        bson_string_append_printf(s, "NumberDecimal(\"%s\")", buf);
        break;
    }
    case BSON_TYPE_BINARY:
        bson_string_append_printf(s, "BinData(%d, ", (int)v->value.v_binary.subtype);
        for (uint32_t i = 0; i < v->value.v_binary.data_len && i < 512; i++)
            bson_string_append_printf(s, "%02X", v->value.v_binary.data[i]);
        bson_string_append(s, ")");
        break;
    default:
        mk_format_value(s, v);
        break;
    }
}

int mk_bounds_explain(const mk_bounds_t *b, bson_t *out, mk_error_t *err)
{
    for (size_t f = 0; f < b->nfields; f++) {
        bson_t arr;
        if (!bson_append_array_begin(out, b->paths[f], -1, &arr)) goto big;
        const oil_t *o = &b->fields[f];
        for (size_t i = 0; i < o->n; i++) {
            const viv_t *iv = &o->v[b->dirs[f] > 0 ? i : o->n - 1 - i];
            const bson_value_t *start = b->dirs[f] > 0 ? &iv->lo : &iv->hi;
            const bson_value_t *end = b->dirs[f] > 0 ? &iv->hi : &iv->lo;
            bool si = b->dirs[f] > 0 ? iv->lo_incl : iv->hi_incl;
            bool ei = b->dirs[f] > 0 ? iv->hi_incl : iv->lo_incl;
            bson_string_t *s = bson_string_new(si ? "[" : "(");
            render_value(s, start);
            bson_string_append(s, ", ");
            render_value(s, end);
            bson_string_append(s, ei ? "]" : ")");
            char key[16];
            const char *k;
            bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
            bool ok = bson_append_utf8(&arr, k, -1, s->str, (int)s->len);
            bson_string_free(s, true);
            if (!ok) {
                bson_append_array_end(out, &arr);
                goto big;
            }
        }
        if (!bson_append_array_end(out, &arr)) goto big;
    }
    return MK_OK;
big:
    return mk_error_setc(err, MK_CODE_BSON_OBJECT_TOO_LARGE,
                         "explain's index bounds are too large");
}
