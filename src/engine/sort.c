/* Sort order (see sort.h).
 *
 * Sort keys follow MongoDB's SortKeyGenerator, which sorts a document where an index over the
 * sort fields would put it: the document's index keys are generated (arrays expanded one
 * level, missing values null, an empty array undefined) and the best one under the sort
 * directions is its sort key. The generator below walks the raw BSON without copying: keys
 * borrow values from the document. */
#include "engine/sort.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/format.h"
#include "bson/path.h"
#include "bson/value.h"

#define MAX_PATH_COMPONENTS 200 /* MongoDB's FieldPath limit */

typedef struct component {
    uint32_t off, len;
    bool numeric; /* an array index when the value there is an array ("a.0") */
    uint32_t index;
} component_t;

typedef struct sort_key {
    char *path;
    int dir;
    component_t *comps;
    uint16_t ncomps;
} sort_key_t;

struct mk_sort {
    size_t nkeys;
    sort_key_t keys[MK_SORT_MAX_KEYS];
};

/* Codes without a name are reported as "Location<code>" (mk_error_setc does that). */
#define loc_error mk_error_setc

/* ---------- compiling ---------- */

/* Splits `path` into components with FieldPath's validation. */
static int split_path(sort_key_t *k, const char *path, size_t len, mk_error_t *err)
{
    if (len == 0) return loc_error(err, 40352, "FieldPath cannot be constructed with empty string");
    if (path[len - 1] == '.') return loc_error(err, 40353, "FieldPath must not end with a '.'.");
    size_t n = 1;
    for (size_t i = 0; i < len; i++) n += path[i] == '.';
    if (n > MAX_PATH_COMPONENTS)
        return mk_error_setc(err, MK_CODE_OVERFLOW, "FieldPath is too long");
    k->comps = calloc(n, sizeof *k->comps);
    if (!k->comps) return mk_error_nomem(err);
    const char *p = path, *end = path + len;
    for (size_t c = 0; c < n; c++) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t clen = dot ? (size_t)(dot - p) : (size_t)(end - p);
        if (clen == 0)
            return loc_error(err, 15998, "FieldPath field names may not be empty strings.");
        bool dbref = (clen == 3 && (memcmp(p, "$id", 3) == 0 || memcmp(p, "$db", 3) == 0)) ||
                     (clen == 4 && memcmp(p, "$ref", 4) == 0);
        if (p[0] == '$' && !dbref)
            return loc_error(err, 16410,
                             "FieldPath field names may not start with '$'. Consider using "
                             "$getField or $setField.");
        component_t *cp = &k->comps[c];
        cp->off = (uint32_t)(p - path);
        cp->len = (uint32_t)clen;
        cp->numeric = mk_path_component_index(p, clen, &cp->index);
        k->ncomps++;
        p = dot ? dot + 1 : end;
    }
    return MK_OK;
}

/* The direction a number asks for, truncated toward zero as MongoDB's safeNumberLong (so 1.5
 * is 1 and 0.5 is 0); 0 when it is neither 1 nor -1. */
static int direction_of(const bson_value_t *v)
{
    long double d;
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        d = v->value.v_int32;
        break;
    case BSON_TYPE_INT64:
        d = (long double)v->value.v_int64;
        break;
    case BSON_TYPE_DOUBLE:
        d = v->value.v_double;
        break;
    default:
        d = mk_decimal_to_ld(&v->value.v_decimal128);
    }
    if (d >= 1.0L && d < 2.0L) return 1;
    if (d <= -1.0L && d > -2.0L) return -1;
    return 0; /* also NaN */
}

static int meta_sort_error(bson_iter_t *it, mk_error_t *err)
{
    bson_iter_t sub;
    size_t n = 0;
    bool meta_first = false;
    if (bson_iter_recurse(it, &sub)) {
        bson_iter_t c = sub;
        while (bson_iter_next(&c)) {
            if (n++ == 0) meta_first = !strcmp(bson_iter_key(&c), "$meta");
        }
    }
    if (!meta_first)
        return loc_error(err, 17312, "$meta is the only expression supported by $sort right now");
    if (n != 1)
        return mk_error_setc(err, MK_CODE_FAILED_TO_PARSE,
                             "Cannot have additional keys in a $meta sort specification");
    bson_iter_next(&sub);
    static const char *const valid[] = {"textScore",   "randVal",           "geoNearDistance",
                                        "searchScore", "vectorSearchScore", "score"};
    const char *name = BSON_ITER_HOLDS_UTF8(&sub) ? bson_iter_utf8(&sub, NULL) : NULL;
    bool ok = false;
    for (size_t i = 0; name && i < sizeof valid / sizeof valid[0]; i++)
        ok |= !strcmp(name, valid[i]);
    if (!ok) {
        bson_string_t *s = bson_string_new(NULL);
        mk_format_value(s, bson_iter_value(&sub));
        loc_error(err, 31138, "Illegal $meta sort: $meta: %s", s->str);
        bson_string_free(s, true);
        return MK_ERR;
    }
    return mk_error_setc(err, MK_CODE_BAD_VALUE, "sort by { $meta: \"%s\" } is not supported yet",
                         name);
}

mk_sort_t *mk_sort_compile(const bson_t *spec, mk_error_t *err)
{
    mk_sort_t *s = calloc(1, sizeof *s);
    if (!s) {
        mk_error_nomem(err);
        return NULL;
    }
    if (!spec) return s;
    bson_iter_t it;
    if (!bson_iter_init(&it, spec)) {
        mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in sort specification");
        goto fail;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        size_t klen = bson_iter_key_len(&it);
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            meta_sort_error(&it, err);
            goto fail;
        }
        if (!mk_type_is_number(bson_iter_type(&it))) {
            bson_string_t *str = bson_string_new(NULL);
            mk_format_value(str, bson_iter_value(&it));
            loc_error(err, 15974, "Illegal key in $sort specification: %s: %s", key, str->str);
            bson_string_free(str, true);
            goto fail;
        }
        int dir = direction_of(bson_iter_value(&it));
        if (!dir) {
            loc_error(err, 15975,
                      "$sort key ordering must be 1 (for ascending) or -1 (for descending)");
            goto fail;
        }
        if (s->nkeys == MK_SORT_MAX_KEYS) {
            loc_error(err, 13103, "too many compound keys");
            goto fail;
        }
        sort_key_t *k = &s->keys[s->nkeys++];
        k->dir = dir;
        if (split_path(k, key, klen, err) != MK_OK) goto fail;
        for (size_t i = 0; i + 1 < s->nkeys; i++) {
            if (!strcmp(s->keys[i].path, key)) {
                loc_error(err, 7472500,
                          "$sort key must not contain duplicate keys (duplicate: '%s')", key);
                goto fail;
            }
        }
        if (!(k->path = strdup(key))) {
            mk_error_nomem(err);
            goto fail;
        }
    }
    return s;
fail:
    mk_sort_destroy(s);
    return NULL;
}

void mk_sort_destroy(mk_sort_t *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nkeys; i++) {
        free(s->keys[i].path);
        free(s->keys[i].comps);
    }
    free(s);
}

size_t mk_sort_nkeys(const mk_sort_t *s)
{
    return s->nkeys;
}

const char *mk_sort_path(const mk_sort_t *s, size_t i)
{
    return i < s->nkeys ? s->keys[i].path : NULL;
}

int mk_sort_direction(const mk_sort_t *s, size_t i)
{
    return i < s->nkeys ? s->keys[i].dir : 0;
}

/* ---------- comparing ---------- */

/* MongoDB's order, with undefined (an empty array's key) between MinKey and null. */
static int key_cmp(const bson_value_t *a, const bson_value_t *b)
{
    bool ua = a->value_type == BSON_TYPE_UNDEFINED, ub = b->value_type == BSON_TYPE_UNDEFINED;
    if (ua || ub) {
        if (ua && ub) return 0;
        const bson_value_t *other = ua ? b : a;
        int c = other->value_type == BSON_TYPE_MINKEY ? 1 : -1; /* undefined vs other */
        return ua ? c : -c;
    }
    int c = mk_value_cmp(a, b);
    return (c > 0) - (c < 0);
}

int mk_sort_cmp(const mk_sort_t *s, const bson_value_t *ka, const bson_value_t *kb)
{
    for (size_t i = 0; i < s->nkeys; i++) {
        int c = key_cmp(&ka[i], &kb[i]);
        if (c) return s->keys[i].dir < 0 ? -c : c;
    }
    return 0;
}

/* ---------- sort keys ---------- */

typedef struct slot {
    const uint8_t *base; /* document in which the rest of the path is looked up */
    uint32_t base_len;
    uint16_t comp; /* next component */
    bool pending;
} slot_t;

typedef struct keygen {
    const mk_sort_t *s;
    slot_t slots[MK_SORT_MAX_KEYS];
    bson_value_t cur[MK_SORT_MAX_KEYS];
    bson_value_t *best;
    bool have_best;
    mk_error_t *err;
} keygen_t;

enum { RESOLVED, REACHED_ARRAY, RESOLVE_ERROR };

static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
static const bson_value_t undefined_value = {.value_type = BSON_TYPE_UNDEFINED};

static bool find_field(bson_iter_t *it, const char *name, uint32_t len)
{
    while (bson_iter_next(it))
        if (bson_iter_key_len(it) == len && memcmp(bson_iter_key(it), name, len) == 0) return true;
    return false;
}

/* Follows key i's path from its slot through documents (and array indexes) until it ends on a
 * value (cur[i] set) or meets an array to expand (*arr on it, *rem the next component). */
static int resolve(keygen_t *kg, size_t i, bson_iter_t *arr, uint16_t *rem)
{
    const sort_key_t *k = &kg->s->keys[i];
    const slot_t *sl = &kg->slots[i];
    const uint8_t *data = sl->base;
    uint32_t len = sl->base_len;
    uint16_t c = sl->comp;
    bson_iter_t it;
    for (;;) {
        if (!bson_iter_init_from_data(&it, data, len)) {
            mk_error_setc(kg->err, MK_CODE_INVALID_BSON, "invalid BSON while computing a sort key");
            return RESOLVE_ERROR;
        }
        if (!find_field(&it, k->path + k->comps[c].off, k->comps[c].len)) {
            if (it.err_off) { /* stopped on corrupt bytes, not at the end */
                mk_error_setc(kg->err, MK_CODE_INVALID_BSON,
                              "invalid BSON while computing a sort key");
                return RESOLVE_ERROR;
            }
            kg->cur[i] = null_value;
            return RESOLVED;
        }
        c++;
        for (;;) { /* the value at `it`, components [0, c) consumed */
            bson_type_t t = bson_iter_type(&it);
            if (c == k->ncomps) {
                if (t == BSON_TYPE_ARRAY) {
                    *arr = it;
                    *rem = c;
                    return REACHED_ARRAY;
                }
                kg->cur[i] = *bson_iter_value(&it);
                return RESOLVED;
            }
            if (t == BSON_TYPE_DOCUMENT) {
                bson_iter_document(&it, &len, &data);
                break;
            }
            if (t == BSON_TYPE_ARRAY && !k->comps[c].numeric) {
                *arr = it;
                *rem = c;
                return REACHED_ARRAY;
            }
            if (t == BSON_TYPE_ARRAY) { /* "a.1": the element at that index */
                bson_iter_t el;
                uint32_t idx = 0;
                bool found = false;
                if (bson_iter_recurse(&it, &el)) {
                    while (bson_iter_next(&el))
                        if (idx++ == k->comps[c].index) {
                            found = true;
                            break;
                        }
                }
                if (!found) {
                    kg->cur[i] = null_value;
                    return RESOLVED;
                }
                it = el;
                c++;
                continue;
            }
            kg->cur[i] = null_value; /* a scalar has no sub-fields */
            return RESOLVED;
        }
    }
}

static void consider(keygen_t *kg)
{
    if (!kg->have_best || mk_sort_cmp(kg->s, kg->cur, kg->best) < 0) {
        memcpy(kg->best, kg->cur, kg->s->nkeys * sizeof *kg->best);
        kg->have_best = true;
    }
}

/* Resolves the pending keys; when they reach an array, every element yields keys in turn
 * (keys reaching the same array take their values from the same element). */
static int generate(keygen_t *kg)
{
    size_t n = kg->s->nkeys;
    bson_iter_t arr;
    const uint8_t *arr_data = NULL;
    uint16_t rem[MK_SORT_MAX_KEYS];
    bool group[MK_SORT_MAX_KEYS];
    for (size_t i = 0; i < n; i++) {
        group[i] = false;
        if (!kg->slots[i].pending) continue;
        kg->slots[i].pending = false;
        bson_iter_t a;
        uint16_t r;
        int rc = resolve(kg, i, &a, &r);
        if (rc == RESOLVE_ERROR) return MK_ERR;
        if (rc == RESOLVED) continue;
        uint32_t alen;
        const uint8_t *adata;
        bson_iter_array(&a, &alen, &adata);
        if (arr_data && adata != arr_data)
            return mk_error_setc(kg->err, MK_CODE_BAD_VALUE,
                                 "cannot sort with keys that are parallel arrays");
        arr = a;
        arr_data = adata;
        group[i] = true;
        rem[i] = r;
    }
    if (!arr_data) {
        consider(kg);
        return MK_OK;
    }
    bson_iter_t el;
    bool any = false;
    if (bson_iter_recurse(&arr, &el)) {
        while (bson_iter_next(&el)) {
            any = true;
            for (size_t i = 0; i < n; i++) {
                if (!group[i]) continue;
                if (rem[i] == kg->s->keys[i].ncomps) {
                    kg->cur[i] = *bson_iter_value(&el); /* nested arrays stay whole */
                } else if (BSON_ITER_HOLDS_DOCUMENT(&el)) {
                    slot_t *sl = &kg->slots[i];
                    bson_iter_document(&el, &sl->base_len, &sl->base);
                    sl->comp = rem[i];
                    sl->pending = true;
                } else {
                    kg->cur[i] = null_value;
                }
            }
            if (generate(kg) != MK_OK) return MK_ERR;
        }
        if (el.err_off)
            return mk_error_setc(kg->err, MK_CODE_INVALID_BSON,
                                 "invalid BSON while computing a sort key");
    }
    if (!any) { /* an empty array: undefined where it ends the path, null past it */
        for (size_t i = 0; i < n; i++)
            if (group[i])
                kg->cur[i] = rem[i] == kg->s->keys[i].ncomps ? undefined_value : null_value;
        consider(kg);
    }
    return MK_OK;
}

int mk_sort_key_raw(const mk_sort_t *s, const uint8_t *data, uint32_t len, bson_value_t *keys,
                    mk_error_t *err)
{
    if (s->nkeys == 0) return MK_OK;
    keygen_t kg;
    kg.s = s;
    kg.best = keys;
    kg.have_best = false;
    kg.err = err;
    for (size_t i = 0; i < s->nkeys; i++)
        kg.slots[i] = (slot_t){.base = data, .base_len = len, .comp = 0, .pending = true};
    return generate(&kg);
}

int mk_sort_key(const mk_sort_t *s, const bson_t *doc, bson_value_t *keys, mk_error_t *err)
{
    return mk_sort_key_raw(s, bson_get_data(doc), doc->len, keys, err);
}

/* ---------- blocking sort ---------- */

typedef struct entry {
    uint64_t seq, tag;
    uint32_t len;
    uint8_t *data;       /* the copied document, after the keys */
    bson_value_t keys[]; /* borrow from data */
} entry_t;

struct mk_sorter {
    const mk_sort_t *s;
    uint64_t limit;
    size_t max_bytes, bytes;
    entry_t **v;
    size_t n, cap;
    uint64_t seq;
    bool finished;
};

/* Sort order, ties broken by arrival so that results are deterministic. */
static int entry_cmp(const mk_sort_t *s, const entry_t *a, const entry_t *b)
{
    int c = mk_sort_cmp(s, a->keys, b->keys);
    if (c) return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int entry_qsort_cmp(const void *a, const void *b, void *s)
{
    return entry_cmp(s, *(entry_t *const *)a, *(entry_t *const *)b);
}

static size_t entry_size(const mk_sort_t *s, uint32_t len)
{
    return sizeof(entry_t) + s->nkeys * sizeof(bson_value_t) + len;
}

mk_sorter_t *mk_sorter_new(const mk_sort_t *s, uint64_t limit, size_t max_bytes, mk_error_t *err)
{
    mk_sorter_t *st = calloc(1, sizeof *st);
    if (!st) {
        mk_error_nomem(err);
        return NULL;
    }
    st->s = s;
    st->limit = limit;
    st->max_bytes = max_bytes;
    return st;
}

void mk_sorter_destroy(mk_sorter_t *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free(st->v[i]);
    free(st->v);
    free(st);
}

/* The heap of a top-k sort keeps its worst entry at the root. */
static void sift_up(mk_sorter_t *st, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (entry_cmp(st->s, st->v[i], st->v[parent]) <= 0) return;
        entry_t *t = st->v[i];
        st->v[i] = st->v[parent];
        st->v[parent] = t;
        i = parent;
    }
}

static void sift_down(mk_sorter_t *st, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < st->n && entry_cmp(st->s, st->v[l], st->v[worst]) > 0) worst = l;
        if (r < st->n && entry_cmp(st->s, st->v[r], st->v[worst]) > 0) worst = r;
        if (worst == i) return;
        entry_t *t = st->v[i];
        st->v[i] = st->v[worst];
        st->v[worst] = t;
        i = worst;
    }
}

static entry_t *make_entry(mk_sorter_t *st, const bson_t *doc, uint64_t seq, uint64_t tag,
                           mk_error_t *err)
{
    size_t size = entry_size(st->s, doc->len);
    if (st->max_bytes && st->bytes + size > st->max_bytes) {
        mk_error_set(err, 292, "QueryExceededMemoryLimitNoDiskUseAllowed",
                     "Sort exceeded memory limit of %zu bytes, but did not opt in to external "
                     "sorting.",
                     st->max_bytes);
        return NULL;
    }
    entry_t *e = malloc(size);
    if (!e) {
        mk_error_nomem(err);
        return NULL;
    }
    e->seq = seq;
    e->tag = tag;
    e->len = doc->len;
    e->data = (uint8_t *)&e->keys[st->s->nkeys];
    memcpy(e->data, bson_get_data(doc), doc->len);
    if (mk_sort_key_raw(st->s, e->data, e->len, e->keys, err) != MK_OK) {
        free(e);
        return NULL;
    }
    st->bytes += size;
    return e;
}

int mk_sorter_add(mk_sorter_t *st, const bson_t *doc, uint64_t tag, mk_error_t *err)
{
    if (st->finished)
        return mk_error_setc(err, MK_CODE_INTERNAL, "mk_sorter_add after mk_sorter_finish");
    uint64_t seq = st->seq++;
    if (st->limit && st->n == st->limit) {
        /* full: only a document better than the worst kept one gets in; on a tie the earlier
         * one stays */
        bson_value_t keys[MK_SORT_MAX_KEYS];
        if (mk_sort_key(st->s, doc, keys, err) != MK_OK) return MK_ERR;
        if (mk_sort_cmp(st->s, keys, st->v[0]->keys) >= 0) return MK_OK;
        st->bytes -= entry_size(st->s, st->v[0]->len);
        free(st->v[0]);
        entry_t *e = make_entry(st, doc, seq, tag, err);
        if (!e) { /* keep the heap whole: fill the hole with the last entry */
            st->v[0] = st->v[--st->n];
            sift_down(st, 0);
            return MK_ERR;
        }
        st->v[0] = e;
        sift_down(st, 0);
        return MK_OK;
    }
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        if (st->limit && cap > st->limit) cap = (size_t)st->limit;
        entry_t **v = realloc(st->v, cap * sizeof *v);
        if (!v) return mk_error_nomem(err);
        st->v = v;
        st->cap = cap;
    }
    entry_t *e = make_entry(st, doc, seq, tag, err);
    if (!e) return MK_ERR;
    st->v[st->n++] = e;
    if (st->limit) sift_up(st, st->n - 1);
    return MK_OK;
}

void mk_sorter_finish(mk_sorter_t *st)
{
    if (st->finished) return;
    st->finished = true;
    if (st->n > 1) qsort_r(st->v, st->n, sizeof *st->v, entry_qsort_cmp, (void *)st->s);
}

size_t mk_sorter_count(const mk_sorter_t *st)
{
    return st->n;
}

bool mk_sorter_get(const mk_sorter_t *st, size_t i, bson_t *view, uint64_t *tag)
{
    if (i >= st->n) return false;
    const entry_t *e = st->v[i];
    if (tag) *tag = e->tag;
    return bson_init_static(view, e->data, e->len);
}
