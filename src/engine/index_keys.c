/* Key patterns and btree index key generation (see index_keys.h).
 *
 * Generation follows MongoDB's recursive walk. Each field of the pattern has a remaining path
 * and, once resolved, a value. At one level (the document, or an element of an array met one
 * level up) every unresolved field walks its path through sub-documents until it ends (value),
 * finds nothing (null) or meets an array, which stops the walk with the rest of the path kept.
 * All fields that meet an array must meet the same one (else parallel arrays); the level then
 * recurses once per element of that array, with fields whose path ended at the array taking the
 * element as value and the others continuing inside the element. A numeric component right
 * after an array ('a.1.b') selects the element by position instead, resolved once per array
 * ("positional info"). */
#include "engine/index_keys.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/format.h"
#include "bson/value.h"

/* MongoDB codes not (yet) in meerkat/error.h. */
#define CODE_CANNOT_CREATE_INDEX          67
#define CODE_CANNOT_INDEX_PARALLEL_ARRAYS 171
#define CODE_TOO_MANY_COMPOUND_KEYS       13103
#define CODE_AMBIGUOUS_FIELD_NAME         16746
#define MAX_PATTERN_BYTES                 2048

typedef struct kfield {
    char *path;
    int dir;
} kfield_t;

struct mk_keypattern {
    size_t n;
    size_t max_levels; /* bound on the recursion: total path components + 1 */
    kfield_t f[];
};

/* ------------------------------------------------------------------------------------------ */
/* Validation                                                                                   */

static int cannot_create(mk_error_t *err, const char *msg)
{
    return mk_error_set(err, CODE_CANNOT_CREATE_INDEX, "CannotCreateIndex", "%s", msg);
}

typedef struct named {
    const char *key;
    size_t len, pos;
} named_t;

static int cmp_named(const void *a, const void *b)
{
    const named_t *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, m);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* MongoDB reports the first field (in pattern order) whose name already appeared. Sorting by
 * (name, position) keeps this O(n log n) for patterns of any size. */
static int check_duplicates(const bson_t *pattern, mk_error_t *err)
{
    uint32_t count = bson_count_keys(pattern);
    if (count < 2) return MK_OK;
    named_t *v = malloc(count * sizeof *v);
    if (!v) return mk_error_nomem(err);
    bson_iter_t it;
    size_t n = 0;
    if (bson_iter_init(&it, pattern)) {
        while (bson_iter_next(&it) && n < count) {
            v[n] = (named_t){bson_iter_key(&it), bson_iter_key_len(&it), n};
            n++;
        }
    }
    qsort(v, n, sizeof *v, cmp_named);
    size_t first = SIZE_MAX, at = 0;
    for (size_t i = 1; i < n; i++) {
        if (v[i].len == v[i - 1].len && memcmp(v[i].key, v[i - 1].key, v[i].len) == 0 &&
            v[i].pos < first) {
            first = v[i].pos;
            at = i;
        }
    }
    int rc = MK_OK;
    if (first != SIZE_MAX) {
        char *text = mk_format_bson(pattern);
        rc = mk_error_setc(err, MK_CODE_BAD_VALUE,
                           "The field '%s' appears multiple times in the index key pattern %s",
                           v[at].key, text ? text : "");
        bson_free(text);
    }
    free(v);
    return rc;
}

static bool is_wildcard_field(const char *k, size_t len)
{
    return (len == 3 && memcmp(k, "$**", 3) == 0) ||
           (len > 4 && memcmp(k + len - 4, ".$**", 4) == 0);
}

/* MongoDB's plugin name: the last string value, unless a wildcard field comes first. */
static const char *plugin_name(const bson_t *pattern)
{
    const char *name = "";
    bson_iter_t it;
    if (!bson_iter_init(&it, pattern)) return name;
    while (bson_iter_next(&it)) {
        if (BSON_ITER_HOLDS_UTF8(&it))
            name = bson_iter_utf8(&it, NULL);
        else if (is_wildcard_field(bson_iter_key(&it), bson_iter_key_len(&it)))
            return "wildcard";
    }
    return name;
}

static bool known_plugin(const char *p)
{
    static const char *const known[] = {
        "",       "2d",       "2dsphere",    "2dsphere_bucket",           "text",
        "hashed", "wildcard", "columnstore", "queryable_encrypted_range", NULL};
    for (size_t i = 0; known[i]; i++)
        if (strcmp(p, known[i]) == 0) return true;
    return false;
}

static bool is_dbref_part(const char *s, size_t len)
{
    return (len == 3 && (memcmp(s, "$id", 3) == 0 || memcmp(s, "$db", 3) == 0)) ||
           (len == 4 && memcmp(s, "$ref", 4) == 0);
}

/* The field-name rules of one pattern element. */
static int check_field_name(const char *key, size_t klen, const bson_iter_t *it, const char *plugin,
                            mk_error_t *err)
{
    if (klen == 0) return cannot_create(err, "Index keys cannot be an empty field.");
    const char *str = BSON_ITER_HOLDS_UTF8(it) ? bson_iter_utf8(it, NULL) : "";
    if (klen == 3 && memcmp(key, "$**", 3) == 0 &&
        (mk_type_is_number(bson_iter_type(it)) || strcmp(str, "text") == 0 ||
         strcmp(str, "columnstore") == 0))
        return MK_OK;
    if (klen == 4 && memcmp(key, "_fts", 4) == 0 && strcmp(str, "text") != 0)
        return cannot_create(err, "Index key contains an illegal field name: '_fts'");
    const char *p = key, *end = key + klen;
    for (size_t i = 0;; i++) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t len = dot ? (size_t)(dot - p) : (size_t)(end - p);
        if (len == 0) return cannot_create(err, "Index keys cannot contain an empty field.");
        if (p[0] == '$') {
            bool dbref = i != 0 && is_dbref_part(p, len);
            bool wildcard = !dot && len == 3 && memcmp(p, "$**", 3) == 0 &&
                            (strcmp(plugin, "wildcard") == 0 || strcmp(plugin, "columnstore") == 0);
            if (!dbref && !wildcard)
                return cannot_create(err, "Index key contains an illegal field name: field name "
                                          "starts with '$'.");
        }
        if (!dot) return MK_OK;
        p = dot + 1;
    }
}

static int validate(const bson_t *pattern, const char **plugin_out, mk_error_t *err)
{
    int rc = check_duplicates(pattern, err);
    if (rc != MK_OK) return rc;
    if (pattern->len > MAX_PATTERN_BYTES) return cannot_create(err, "Index key pattern too large.");
    if (bson_empty(pattern)) return cannot_create(err, "Index keys cannot be empty.");
    const char *plugin = plugin_name(pattern);
    if (strcmp(plugin, "geoHaystack") == 0)
        return cannot_create(err, "GeoHaystack indexes cannot be created in version 5.0 and above");
    if (!known_plugin(plugin))
        return mk_error_set(err, CODE_CANNOT_CREATE_INDEX, "CannotCreateIndex",
                            "Unknown index plugin '%s'", plugin);
    bson_iter_t it;
    if (!bson_iter_init(&it, pattern))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in the key pattern");
    size_t n = 0;
    while (bson_iter_next(&it)) {
        n++;
        if (mk_type_is_number(bson_iter_type(&it))) {
            double d = mk_value_as_double(bson_iter_value(&it));
            if (isnan(d))
                return cannot_create(err, "Values in the index key pattern cannot be NaN.");
            if (d == 0) return cannot_create(err, "Values in the index key pattern cannot be 0.");
        } else if (!BSON_ITER_HOLDS_UTF8(&it)) {
            return mk_error_set(err, CODE_CANNOT_CREATE_INDEX, "CannotCreateIndex",
                                "Values in v:2 index key pattern cannot be of type %s. Only "
                                "numbers > 0, numbers < 0, and strings are allowed.",
                                mk_type_name(bson_iter_type(&it)));
        }
        if (BSON_ITER_HOLDS_UTF8(&it)) {
            const char *s = bson_iter_utf8(&it, NULL);
            if (strcmp(s, plugin) != 0)
                return cannot_create(err, "Can't use more than one index plugin for a single "
                                          "index.");
            if (strcmp(s, "wildcard") == 0)
                return cannot_create(err, "The key pattern value for an 'wildcard' index must be "
                                          "a non-zero number, not a string.");
        }
        rc = check_field_name(bson_iter_key(&it), bson_iter_key_len(&it), &it, plugin, err);
        if (rc != MK_OK) return rc;
    }
    bson_iter_init(&it, pattern);
    while (bson_iter_next(&it)) {
        if (BSON_ITER_HOLDS_UTF8(&it) && bson_iter_value(&it)->value.v_utf8.len == 0)
            return cannot_create(err, "Values in the index key pattern cannot be empty strings");
    }
    if (n > MK_KEYPATTERN_MAX_FIELDS)
        return mk_error_setc(err, CODE_TOO_MANY_COMPOUND_KEYS, "too many compound keys");
    *plugin_out = plugin;
    return MK_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Compiled pattern                                                                             */

mk_keypattern_t *mk_keypattern_compile(const bson_t *pattern, mk_error_t *err)
{
    const char *plugin = "";
    if (validate(pattern, &plugin, err) != MK_OK) return NULL;
    if (*plugin) {
        mk_error_setc(err, MK_CODE_BAD_VALUE, "%s indexes are not supported yet", plugin);
        return NULL;
    }
    size_t n = bson_count_keys(pattern);
    mk_keypattern_t *kp = calloc(1, sizeof *kp + n * sizeof kp->f[0]);
    if (!kp) {
        mk_error_nomem(err);
        return NULL;
    }
    kp->max_levels = 1;
    bson_iter_t it;
    bson_iter_init(&it, pattern);
    while (bson_iter_next(&it) && kp->n < n) {
        kfield_t *f = &kp->f[kp->n];
        f->path = strdup(bson_iter_key(&it));
        if (!f->path) {
            mk_keypattern_destroy(kp);
            mk_error_nomem(err);
            return NULL;
        }
        kp->n++;
        f->dir = mk_value_as_double(bson_iter_value(&it)) < 0 ? -1 : 1;
        for (const char *p = f->path; *p; p++) kp->max_levels += *p == '.';
        kp->max_levels++;
    }
    return kp;
}

void mk_keypattern_destroy(mk_keypattern_t *kp)
{
    if (!kp) return;
    for (size_t i = 0; i < kp->n; i++) free(kp->f[i].path);
    free(kp);
}

size_t mk_keypattern_nfields(const mk_keypattern_t *kp)
{
    return kp->n;
}

const char *mk_keypattern_field(const mk_keypattern_t *kp, size_t i)
{
    return i < kp->n ? kp->f[i].path : NULL;
}

int mk_keypattern_direction(const mk_keypattern_t *kp, size_t i)
{
    return i < kp->n ? kp->f[i].dir : 1;
}

void mk_keypattern_encode(const mk_keypattern_t *kp, const bson_value_t *values, mk_buf_t *out)
{
    for (size_t i = 0; i < kp->n; i++) {
        if (kp->f[i].dir > 0)
            mk_keyenc_value(out, &values[i]);
        else
            mk_keyenc_value_desc(out, &values[i]);
    }
}

int mk_keypattern_key_doc(const mk_keypattern_t *kp, const bson_value_t *values, bson_t *out)
{
    for (size_t i = 0; i < kp->n; i++)
        if (!bson_append_value(out, kp->f[i].path, -1, &values[i])) return MK_ERR;
    return MK_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Default names                                                                                */

/* A double as JavaScript's Number.prototype.toString prints it: the shortest digits that read
 * back as the same double, positional notation for exponents in [-7, 21). */
static void append_js_number(bson_string_t *s, double d)
{
    if (isnan(d)) {
        bson_string_append(s, "NaN");
        return;
    }
    if (d == 0) {
        bson_string_append(s, "0");
        return;
    }
    if (d < 0) {
        bson_string_append_c(s, '-');
        d = -d;
    }
    if (isinf(d)) {
        bson_string_append(s, "Infinity");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d) break;
    }
    /* buf is "D.DDDDe[+-]XX": collect the digits and the decimal exponent */
    char digits[20];
    int k = 0;
    char *e = strchr(buf, 'e');
    for (char *p = buf; p < e; p++)
        if (*p != '.') digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0') k--;
    int n = atoi(e + 1) + 1; /* value = 0.digits * 10^n */
    if (k <= n && n <= 21) {
        bson_string_append_printf(s, "%.*s", k, digits);
        for (int i = k; i < n; i++) bson_string_append_c(s, '0');
    } else if (0 < n && n <= 21) {
        bson_string_append_printf(s, "%.*s.%.*s", n, digits, k - n, digits + n);
    } else if (-6 < n && n <= 0) {
        bson_string_append(s, "0.");
        for (int i = n; i < 0; i++) bson_string_append_c(s, '0');
        bson_string_append_printf(s, "%.*s", k, digits);
    } else {
        bson_string_append_c(s, digits[0]);
        if (k > 1) bson_string_append_printf(s, ".%.*s", k - 1, digits + 1);
        bson_string_append_printf(s, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
}

char *mk_keypattern_default_name(const bson_t *pattern)
{
    bson_string_t *s = bson_string_new(NULL);
    bson_iter_t it;
    bool first = true;
    if (bson_iter_init(&it, pattern)) {
        while (bson_iter_next(&it)) {
            if (!first) bson_string_append_c(s, '_');
            first = false;
            bson_string_append(s, bson_iter_key(&it));
            bson_string_append_c(s, '_');
            const bson_value_t *v = bson_iter_value(&it);
            char dec[BSON_DECIMAL128_STRING];
            switch (v->value_type) {
            case BSON_TYPE_INT32:
                bson_string_append_printf(s, "%" PRId32, v->value.v_int32);
                break;
            case BSON_TYPE_INT64:
                bson_string_append_printf(s, "%" PRId64, v->value.v_int64);
                break;
            case BSON_TYPE_DOUBLE:
                append_js_number(s, v->value.v_double);
                break;
            case BSON_TYPE_DECIMAL128:
                bson_decimal128_to_string(&v->value.v_decimal128, dec);
                bson_string_append(s, dec);
                break;
            case BSON_TYPE_UTF8:
                bson_string_append(s, v->value.v_utf8.str);
                break;
            default: /* not a valid pattern value; named anyway */
                mk_format_value(s, v);
                break;
            }
        }
    }
    /* the caller frees with free(): hand over a malloc'd copy */
    char *name = strdup(s->str);
    bson_string_free(s, true);
    return name;
}

/* ------------------------------------------------------------------------------------------ */
/* Key generation                                                                               */

static const uint8_t empty_doc[5] = {5, 0, 0, 0, 0};
static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
static const bson_value_t undefined_value = {.value_type = BSON_TYPE_UNDEFINED};

/* An element found by a walk: its value (EOD when missing) and its field name for messages. */
typedef struct elt {
    bson_value_t v;
    const char *key;
} elt_t;

static inline bool elt_missing(const elt_t *e)
{
    return e->v.value_type == BSON_TYPE_EOD;
}

/* The field `name` (len bytes) of the document data/dlen. */
static bool lookup(const uint8_t *data, uint32_t dlen, const char *name, size_t len, elt_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, dlen)) return false;
    while (bson_iter_next(&it)) {
        if (bson_iter_key_len(&it) == len && memcmp(bson_iter_key(&it), name, len) == 0) {
            out->v = *bson_iter_value(&it);
            out->key = bson_iter_key(&it);
            return true;
        }
    }
    return false;
}

/* Walks *path through sub-documents of data: stops at the end of the path, or at the first
 * array met (then *path is the rest after it, "" when the array ends the path). Missing, or a
 * scalar before the end, gives EOD. */
static void walk(const uint8_t *data, uint32_t dlen, const char **path, elt_t *out)
{
    for (;;) {
        const char *p = *path;
        size_t len = strcspn(p, ".");
        *path = p[len] ? p + len + 1 : p + len;
        if (!lookup(data, dlen, p, len, out)) break;
        bson_type_t t = out->v.value_type;
        if (t == BSON_TYPE_ARRAY || **path == '\0') return;
        if (t != BSON_TYPE_DOCUMENT) break;
        data = out->v.value.v_doc.data;
        dlen = out->v.value.v_doc.data_len;
    }
    out->v.value_type = BSON_TYPE_EOD;
    out->key = NULL;
}

/* An element selected by position in the array of the level above ('a.1.b'): resolved once
 * per array, reused for every element of it. */
typedef struct posinfo {
    bool has;
    bool elt_is_array;       /* the selected element is itself an array */
    const char *elt_key;     /* its index, for messages */
    const uint8_t *arr_data; /* the array, for messages */
    uint32_t arr_len;
    const char *remaining; /* path left after walking from the array */
    elt_t dotted;          /* what that walk found */
} posinfo_t;

typedef struct keyrec {
    const uint8_t *p;
    size_t off, len, vidx;
} keyrec_t;

typedef struct gen {
    const mk_keypattern_t *kp;
    size_t n;
    bool sparse, multikey;
    mk_error_t *err;
    /* per-level state, max_levels frames of n entries each */
    const char **names;
    bson_value_t *fixed;
    posinfo_t *pos;
    size_t levels;
    /* collected keys */
    mk_buf_t keys;
    keyrec_t *recs;
    size_t nrecs, caprecs;
    bson_value_t *vals;
    size_t capvals;
    keyrec_t *recs_inline; /* the caller's stack storage, see keys_general */
    bson_value_t *vals_inline;
} gen_t;

/* Grows an array that starts in inline storage `inl` (cap elements there) to hold `need`. */
static bool grow(void **p, size_t *cap, size_t need, size_t elem, void *inl)
{
    if (need <= *cap) return true;
    size_t c = *cap * 2;
    while (c < need) c *= 2;
    void *q = *p == inl ? malloc(c * elem) : realloc(*p, c * elem);
    if (!q) return false;
    if (*p == inl) memcpy(q, inl, *cap * elem);
    *p = q;
    *cap = c;
    return true;
}

static int add_key(gen_t *g, const bson_value_t *fixed)
{
    size_t off = g->keys.len;
    mk_keypattern_encode(g->kp, fixed, &g->keys);
    if (g->keys.failed) return mk_error_nomem(g->err);
    if (!grow((void **)&g->recs, &g->caprecs, g->nrecs + 1, sizeof *g->recs, g->recs_inline) ||
        !grow((void **)&g->vals, &g->capvals, (g->nrecs + 1) * g->n, sizeof *g->vals,
              g->vals_inline))
        return mk_error_nomem(g->err);
    g->recs[g->nrecs] = (keyrec_t){NULL, off, g->keys.len - off, g->nrecs * g->n};
    memcpy(g->vals + g->nrecs * g->n, fixed, g->n * sizeof *fixed);
    g->nrecs++;
    return MK_OK;
}

static int parallel_arrays(gen_t *g, const elt_t *e, const elt_t *first)
{
    return mk_error_set(g->err, CODE_CANNOT_INDEX_PARALLEL_ARRAYS, "CannotIndexParallelArrays",
                        "cannot index parallel arrays [%s] [%s]", e->key, first->key);
}

static int ambiguous(gen_t *g, const posinfo_t *pi)
{
    bson_string_t *s = bson_string_new(NULL);
    mk_format_doc(s, pi->arr_data, pi->arr_len, false);
    mk_error_setc(g->err, CODE_AMBIGUOUS_FIELD_NAME,
                  "Ambiguous field name found in array (do not use numeric field names in "
                  "embedded elements in an array), field: '%s' for array: %s",
                  pi->elt_key, s->str);
    bson_string_free(s, true);
    return MK_ERR;
}

/* One level of the walk (see the top of the file). The frame of `level` already holds the
 * remaining paths and values; `pos` is the positional info of the array one level up. */
static int expand(gen_t *g, size_t level, const uint8_t *obj, uint32_t objlen, size_t notfound,
                  const posinfo_t *pos)
{
    const size_t n = g->n;
    const char **names = g->names + level * n;
    bson_value_t *fixed = g->fixed + level * n;
    elt_t arr = {.v.value_type = BSON_TYPE_EOD};
    uint32_t in_arr = 0; /* fields whose walk met `arr` */
    bool may_expand = true;

    for (size_t i = 0; i < n; i++) {
        if (!*names[i]) continue;
        elt_t e;
        bool nested = false;
        if (pos && pos[i].has) {
            elt_t own;
            if (lookup(obj, objlen, names[i], strcspn(names[i], "."), &own))
                return ambiguous(g, &pos[i]);
            nested = pos[i].elt_is_array;
            names[i] = pos[i].remaining;
            e = pos[i].dotted;
        } else {
            walk(obj, objlen, &names[i], &e);
        }
        if (elt_missing(&e)) {
            fixed[i] = null_value;
            names[i] = "";
            notfound++;
        } else if (e.v.value_type == BSON_TYPE_ARRAY) {
            in_arr |= 1u << i;
            if (elt_missing(&arr))
                arr = e;
            else if (e.v.value.v_doc.data != arr.v.value.v_doc.data)
                return parallel_arrays(g, &e, &arr);
            if (nested) may_expand = false;
        } else {
            fixed[i] = e.v;
        }
    }

    if (elt_missing(&arr)) {
        if (g->sparse && notfound == n) return MK_OK;
        return add_key(g, fixed);
    }
    if (level + 1 >= g->levels) /* cannot happen: every level consumes a path component */
        return mk_error_setc(g->err, MK_CODE_INTERNAL, "index key generation nested too deep");
    const char **cnames = names + n;
    bson_value_t *cfixed = fixed + n;
    const uint8_t *adata = arr.v.value.v_doc.data;
    uint32_t alen = arr.v.value.v_doc.data_len;

    if (alen <= 5) { /* an empty array indexes as undefined */
        if (may_expand && in_arr) g->multikey = true;
        memcpy(cnames, names, n * sizeof *names);
        memcpy(cfixed, fixed, n * sizeof *fixed);
        for (size_t i = 0; i < n; i++)
            if ((in_arr & (1u << i)) && !*names[i]) cfixed[i] = undefined_value;
        return expand(g, level + 1, empty_doc, sizeof empty_doc, notfound, NULL);
    }

    posinfo_t *sub = g->pos + level * n;
    bool any_sub = false;
    for (size_t i = 0; i < n; i++) {
        sub[i].has = false;
        if (!*names[i]) {
            if ((in_arr & (1u << i)) && may_expand) g->multikey = true;
            continue;
        }
        elt_t pie;
        if (!lookup(adata, alen, names[i], strcspn(names[i], "."), &pie)) {
            g->multikey = true; /* the array expands into its elements for this field */
            continue;
        }
        posinfo_t *pi = &sub[i];
        pi->has = any_sub = true;
        pi->elt_is_array = pie.v.value_type == BSON_TYPE_ARRAY;
        pi->elt_key = pie.key;
        pi->arr_data = adata;
        pi->arr_len = alen;
        pi->remaining = names[i];
        walk(adata, alen, &pi->remaining, &pi->dotted);
    }

    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, adata, alen))
        return mk_error_setc(g->err, MK_CODE_INVALID_BSON, "corrupt array in the document");
    while (bson_iter_next(&it)) {
        const bson_value_t *x = bson_iter_value(&it);
        memcpy(cnames, names, n * sizeof *names);
        memcpy(cfixed, fixed, n * sizeof *fixed);
        for (size_t i = 0; i < n; i++)
            if ((in_arr & (1u << i)) && !*names[i]) cfixed[i] = may_expand ? *x : arr.v;
        const uint8_t *cobj = empty_doc;
        uint32_t clen = sizeof empty_doc;
        if (x->value_type == BSON_TYPE_DOCUMENT) {
            cobj = x->value.v_doc.data;
            clen = x->value.v_doc.data_len;
        }
        int rc = expand(g, level + 1, cobj, clen, notfound, any_sub ? sub : NULL);
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

static int cmp_keyrec(const void *a, const void *b)
{
    const keyrec_t *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, m);
    if (c) return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* The walk over a document that has arrays on indexed paths: collect, sort, deduplicate. */
static int keys_general(const mk_keypattern_t *kp, const bson_t *doc, bool sparse,
                        mk_index_key_fn fn, void *ud, bool *multikey, mk_error_t *err)
{
    gen_t g = {.kp = kp, .n = kp->n, .sparse = sparse, .err = err, .levels = kp->max_levels};
    /* most multikey documents have few keys: no allocation for them */
    keyrec_t recs_inline[16];
    bson_value_t vals_inline[32];
    g.recs = g.recs_inline = recs_inline;
    g.caprecs = sizeof recs_inline / sizeof recs_inline[0];
    g.vals = g.vals_inline = vals_inline;
    g.capvals = sizeof vals_inline / sizeof vals_inline[0];
    mk_buf_init(&g.keys);
    /* one block for all frames; small patterns fit the stack */
    _Alignas(max_align_t) uint8_t stack[4096];
    size_t slots = g.levels * g.n;
    size_t need = slots * (sizeof(posinfo_t) + sizeof(bson_value_t) + sizeof(char *));
    uint8_t *block = need <= sizeof stack ? stack : malloc(need);
    if (!block) return mk_error_nomem(err);
    g.pos = (posinfo_t *)block;
    g.fixed = (bson_value_t *)(block + slots * sizeof(posinfo_t));
    g.names = (const char **)(block + slots * (sizeof(posinfo_t) + sizeof(bson_value_t)));
    for (size_t i = 0; i < g.n; i++) {
        g.names[i] = kp->f[i].path;
        g.fixed[i] = null_value;
    }

    int rc = expand(&g, 0, bson_get_data(doc), doc->len, 0, NULL);
    if (rc == MK_OK && g.nrecs == 0 && !sparse) {
        for (size_t i = 0; i < g.n; i++) g.fixed[i] = null_value;
        rc = add_key(&g, g.fixed);
    }
    if (rc == MK_OK) {
        for (size_t i = 0; i < g.nrecs; i++) g.recs[i].p = g.keys.data + g.recs[i].off;
        if (g.nrecs > 1) qsort(g.recs, g.nrecs, sizeof *g.recs, cmp_keyrec);
        size_t distinct = 0;
        for (size_t i = 0; i < g.nrecs && rc == MK_OK; i++) {
            if (i > 0 && cmp_keyrec(&g.recs[i - 1], &g.recs[i]) == 0) continue;
            distinct++;
            rc = fn(ud, g.recs[i].p, g.recs[i].len, g.vals + g.recs[i].vidx);
        }
        if (distinct > 1) g.multikey = true;
        if (multikey) *multikey = g.multikey;
    }
    if (block != stack) free(block);
    if (g.recs != g.recs_inline) free(g.recs);
    if (g.vals != g.vals_inline) free(g.vals);
    mk_buf_free(&g.keys);
    return rc;
}

int mk_keypattern_keys(const mk_keypattern_t *kp, const bson_t *doc, bool sparse,
                       mk_index_key_fn fn, void *ud, bool *multikey, mk_error_t *err)
{
    if (multikey) *multikey = false;
    /* Fast path: no array on any indexed path gives exactly one key (or none, sparse). */
    bson_value_t vals[MK_KEYPATTERN_MAX_FIELDS];
    size_t notfound = 0;
    for (size_t i = 0; i < kp->n; i++) {
        const char *path = kp->f[i].path;
        elt_t e;
        walk(bson_get_data(doc), doc->len, &path, &e);
        if (elt_missing(&e)) {
            vals[i] = null_value;
            notfound++;
        } else if (e.v.value_type == BSON_TYPE_ARRAY) {
            return keys_general(kp, doc, sparse, fn, ud, multikey, err);
        } else {
            vals[i] = e.v;
        }
    }
    if (sparse && notfound == kp->n) return MK_OK;
    mk_buf_t b;
    mk_buf_init(&b);
    mk_keypattern_encode(kp, vals, &b);
    int rc = b.failed ? mk_error_nomem(err) : fn(ud, b.data, b.len, vals);
    mk_buf_free(&b);
    return rc;
}
