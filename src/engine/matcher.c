/* The query matcher (see matcher.h).
 *
 * A filter is copied once and compiled into a tree of nodes whose values, field names and
 * regex patterns point into that copy. Matching walks raw BSON with bson_iter_t: no copies and
 * no allocation (a regex owns one PCRE2 match-data block, created at compile time).
 *
 * Path traversal follows MongoDB's element iterator: each path component selects a field of a
 * document; an array met before the last component is traversed one level (its document
 * elements continue the path, and a numeric component also selects the element at that index);
 * an array at the end of the path yields each element and then the array itself, except for
 * $size and $elemMatch which look at the array only. A missing field yields "missing" once,
 * which is what lets { a: null } match documents without `a`.
 *
 * A compiled matcher is immutable except for the PCRE2 match data of its regexes, so it may be
 * used from one thread at a time (one matcher per cursor or command). */
#include "engine/matcher.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "bson/value.h"
#include "engine/expr.h"

/* MongoDB before 8.0 lets { a: null } (and $in: [null]) match undefined as well as missing. */
#define NULL_MATCHES_UNDEFINED 1
/* Deepest nesting of operators accepted in a filter ($and in $or in $elemMatch ...). */
#define MAX_TREE_DEPTH 100

typedef enum kind {
    N_AND,
    N_OR,
    N_NOR,
    N_NOT,
    N_TRUE,
    N_FALSE,
    N_EXPR,
    /* leaves: a path and a predicate on one value */
    N_CMP,
    N_IN,
    N_REGEX,
    N_EXISTS,
    N_TYPE,
    N_MOD,
    N_SIZE,
    N_BITS,
    N_ELEM_OBJ, /* $elemMatch with a query on element documents */
    N_ELEM_VAL, /* $elemMatch with operators on element values */
} kind_t;

enum { OP_EQ, OP_LT, OP_LTE, OP_GT, OP_GTE };
enum { BITS_ALL_SET, BITS_ALL_CLEAR, BITS_ANY_SET, BITS_ANY_CLEAR };

/* $type mask: bit n for BSON type code n (1..19), plus these. */
#define TYPE_BIT_MINKEY (1u << 20)
#define TYPE_BIT_MAXKEY (1u << 21)
#define TYPE_BIT_NUMBER (1u << 22)

typedef struct comp {
    const char *s; /* not NUL-terminated */
    uint32_t len;
    bool digits; /* all decimal digits: may also name an array index */
} comp_t;

typedef struct path {
    comp_t *c;
    uint32_t n;
} path_t;

typedef struct mregex {
    pcre2_code *code;
    pcre2_match_data *md;
    const char *pattern; /* NUL-terminated, in the filter copy */
    const char *flags;   /* as written, for equality with stored regex values */
} mregex_t;

typedef struct node node_t;
struct node {
    kind_t kind;
    int op;
    path_t path;
    node_t **kids;
    uint32_t nkids, cap;
    bson_value_t v; /* N_CMP operand, borrowed from the filter copy */
    bool v_nan;     /* the operand is a NaN number */
    union {
        struct {
            bson_value_t *vals; /* sorted by mk_value_cmp */
            uint32_t nvals;
            mregex_t *res;
            uint32_t nres;
            bool has_null;
        } in;
        mregex_t re;
        uint32_t types;
        struct {
            int64_t div, rem;
        } mod;
        int64_t size;
        struct {
            uint32_t *pos;
            uint32_t npos;
        } bits;
        mk_expr_t *expr;
    } u;
};

struct mk_matcher {
    uint8_t *raw; /* the filter copy that nodes point into */
    uint32_t len;
    node_t *root;
    bool empty;
};

/* ------------------------------------------------------------------------------------------ */
/* Nodes */

static void regex_free(mregex_t *re)
{
    if (re->md) pcre2_match_data_free(re->md);
    if (re->code) pcre2_code_free(re->code);
    re->md = NULL;
    re->code = NULL;
}

static void node_free(node_t *n)
{
    if (!n) return;
    for (uint32_t i = 0; i < n->nkids; i++) node_free(n->kids[i]);
    free(n->kids);
    free(n->path.c);
    switch (n->kind) {
    case N_IN:
        free(n->u.in.vals);
        for (uint32_t i = 0; i < n->u.in.nres; i++) regex_free(&n->u.in.res[i]);
        free(n->u.in.res);
        break;
    case N_REGEX:
        regex_free(&n->u.re);
        break;
    case N_BITS:
        free(n->u.bits.pos);
        break;
    case N_EXPR:
        mk_expr_destroy(n->u.expr);
        break;
    default:
        break;
    }
    free(n);
}

/* ------------------------------------------------------------------------------------------ */
/* Compile state and errors */

typedef enum level { LEVEL_TOP, LEVEL_SUB } level_t;

typedef struct cstate {
    mk_error_t *err;
    int depth;
} cstate_t;

static int cfail(cstate_t *cs, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfail(cstate_t *cs, int code, const char *fmt, ...)
{
    if (!cs->err) return MK_ERR;
    char msg[MK_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *name = mk_error_code_name(code);
    if (strcmp(name, "Location") == 0) {
        char kind[MK_ERROR_KIND_MAX];
        snprintf(kind, sizeof kind, "Location%d", code);
        return mk_error_set(cs->err, code, kind, "%s", msg);
    }
    return mk_error_setc(cs->err, code, "%s", msg);
}

static int cnomem(cstate_t *cs)
{
    mk_error_nomem(cs->err);
    return MK_ERR;
}

static node_t *node_new(cstate_t *cs, kind_t kind)
{
    node_t *n = calloc(1, sizeof *n);
    if (!n)
        cnomem(cs);
    else
        n->kind = kind;
    return n;
}

/* Appends `kid` to `parent`, taking ownership of it (freed on failure). */
static int node_add(cstate_t *cs, node_t *parent, node_t *kid)
{
    if (parent->nkids == parent->cap) {
        uint32_t cap = parent->cap ? parent->cap * 2 : 4;
        node_t **k = realloc(parent->kids, cap * sizeof *k);
        if (!k) {
            node_free(kid);
            return cnomem(cs);
        }
        parent->kids = k;
        parent->cap = cap;
    }
    parent->kids[parent->nkids++] = kid;
    return MK_OK;
}

static int path_split(cstate_t *cs, const char *s, uint32_t len, path_t *out)
{
    uint32_t n = 1;
    for (uint32_t i = 0; i < len; i++) n += s[i] == '.';
    out->c = calloc(n, sizeof *out->c);
    if (!out->c) return cnomem(cs);
    out->n = n;
    uint32_t k = 0, start = 0;
    for (uint32_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') continue;
        comp_t *c = &out->c[k++];
        c->s = s + start;
        c->len = i - start;
        c->digits = c->len > 0;
        for (uint32_t j = 0; j < c->len; j++)
            if (c->s[j] < '0' || c->s[j] > '9') c->digits = false;
        start = i + 1;
    }
    return MK_OK;
}

static int path_copy(cstate_t *cs, const path_t *p, path_t *out)
{
    out->n = p->n;
    out->c = NULL;
    if (!p->n) return MK_OK;
    out->c = malloc(p->n * sizeof *out->c);
    if (!out->c) return cnomem(cs);
    memcpy(out->c, p->c, p->n * sizeof *out->c);
    return MK_OK;
}

/* A new leaf node on (a copy of) path `p`. */
static node_t *leaf_new(cstate_t *cs, kind_t kind, const path_t *p)
{
    node_t *n = node_new(cs, kind);
    if (n && path_copy(cs, p, &n->path) != MK_OK) {
        free(n);
        return NULL;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Value helpers */

static bool doc_iter(const bson_value_t *v, bson_iter_t *it)
{
    return bson_iter_init_from_data(it, v->value.v_doc.data, v->value.v_doc.data_len);
}

static bool is_doc(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_DOCUMENT;
}

static bool key_is(const bson_iter_t *it, const char *s)
{
    return strcmp(bson_iter_key(it), s) == 0;
}

static bool decimal_is_nan(const bson_decimal128_t *d)
{
    return ((d->high >> 58) & 0x1f) == 0x1f;
}

static bool number_is_nan(const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_DOUBLE) return isnan(v->value.v_double);
    if (v->value_type == BSON_TYPE_DECIMAL128) return decimal_is_nan(&v->value.v_decimal128);
    return false;
}

/* A short rendering of a value for error messages ("1.5", "\"x\"", "an object"...). */
static const char *describe(char *buf, size_t n, const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        snprintf(buf, n, "%d", v->value.v_int32);
        break;
    case BSON_TYPE_INT64:
        snprintf(buf, n, "%lld", (long long)v->value.v_int64);
        break;
    case BSON_TYPE_DOUBLE: {
        double d = v->value.v_double;
        if (isfinite(d) && d == floor(d) && fabs(d) < 1e15) {
            snprintf(buf, n, "%.1f", d);
        } else {
            /* the shortest spelling that reads back as the same double */
            for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, n, "%.*g", prec, d);
                if (strtod(buf, NULL) == d || isnan(d)) break;
            }
        }
        break;
    }
    case BSON_TYPE_DECIMAL128: {
        char tmp[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, tmp);
        snprintf(buf, n, "NumberDecimal(\"%s\")", tmp);
        break;
    }
    case BSON_TYPE_UTF8:
        snprintf(buf, n, "\"%.*s\"", (int)v->value.v_utf8.len, v->value.v_utf8.str);
        break;
    default:
        snprintf(buf, n, "%s", mk_type_name(v->value_type));
        break;
    }
    return buf;
}

/* A number as int64, truncated toward zero, MongoDB's way for $mod operands.
 * 0: ok; -1: NaN or infinity; -2: out of range. */
static int number_to_i64_trunc(const bson_value_t *v, int64_t *out)
{
    long double d;
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        *out = v->value.v_int32;
        return 0;
    case BSON_TYPE_INT64:
        *out = v->value.v_int64;
        return 0;
    case BSON_TYPE_DOUBLE:
        d = v->value.v_double;
        break;
    case BSON_TYPE_DECIMAL128:
        d = mk_decimal_to_ld(&v->value.v_decimal128);
        break;
    default:
        return -1;
    }
    if (isnan(d) || isinf(d)) return -1;
    d = truncl(d);
    if (d < -9223372036854775808.0L || d >= 9223372036854775808.0L) return -2;
    *out = (int64_t)d;
    return 0;
}

/* An integral number as int64 ($bitsAllSet operands and values).
 * 0: ok; -1: NaN; -2: out of range; -3: not integral. */
static int number_to_i64_exact(const bson_value_t *v, int64_t *out)
{
    long double d;
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        *out = v->value.v_int32;
        return 0;
    case BSON_TYPE_INT64:
        *out = v->value.v_int64;
        return 0;
    case BSON_TYPE_DOUBLE:
        d = v->value.v_double;
        break;
    case BSON_TYPE_DECIMAL128:
        d = mk_decimal_to_ld(&v->value.v_decimal128);
        break;
    default:
        return -3;
    }
    if (isnan(d)) return -1;
    if (d < -9223372036854775808.0L || d >= 9223372036854775808.0L) return -2;
    if (d != truncl(d)) return -3;
    *out = (int64_t)d;
    return 0;
}

static int cmp_values_qsort(const void *a, const void *b)
{
    return mk_value_cmp(a, b);
}

/* ------------------------------------------------------------------------------------------ */
/* Regexes */

static int regex_init(cstate_t *cs, mregex_t *re, const char *pat, size_t patlen, const char *flags)
{
    if (patlen > 32764) return cfail(cs, MK_CODE_BAD_VALUE, "Regular expression is too long");
    if (memchr(pat, 0, patlen))
        return cfail(cs, MK_CODE_BAD_VALUE,
                     "Regular expression cannot contain an embedded null byte");
    uint32_t opts = 0;
    for (const char *f = flags; *f; f++) {
        switch (*f) {
        case 'i':
            opts |= PCRE2_CASELESS;
            break;
        case 'm':
            opts |= PCRE2_MULTILINE;
            break;
        case 's':
            opts |= PCRE2_DOTALL;
            break;
        case 'x':
            opts |= PCRE2_EXTENDED;
            break;
        case 'u':
            break; /* UTF is the default */
        default:
            return cfail(cs, 51108, "invalid flag in regex options: %c", *f);
        }
    }
    if (bson_utf8_validate(pat, patlen, false)) opts |= PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    int code;
    PCRE2_SIZE off;
    re->code = pcre2_compile((PCRE2_SPTR)pat, patlen, opts, &code, &off, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0) snprintf((char *)msg, 16, "?");
        return cfail(cs, 51091, "Regular expression is invalid: %s", (const char *)msg);
    }
    re->md = pcre2_match_data_create(1, NULL);
    if (!re->md) {
        regex_free(re);
        return cnomem(cs);
    }
    re->pattern = pat;
    re->flags = flags;
    return MK_OK;
}

static bool regex_match(const mregex_t *re, const char *s, size_t len)
{
    /* >= 0: matched (0 only says the one-pair ovector was too small for the groups) */
    return pcre2_match(re->code, (PCRE2_SPTR)s, len, 0, 0, re->md, NULL) >= 0;
}

/* MongoDB's regex predicate: strings and symbols by pattern; a stored regex by identity. */
static bool regex_single(const mregex_t *re, const bson_value_t *v)
{
    if (!v) return false;
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
        return regex_match(re, v->value.v_utf8.str, v->value.v_utf8.len);
    case BSON_TYPE_SYMBOL:
        return regex_match(re, v->value.v_symbol.symbol, v->value.v_symbol.len);
    case BSON_TYPE_REGEX:
        return strcmp(v->value.v_regex.regex, re->pattern) == 0 &&
               strcmp(v->value.v_regex.options ? v->value.v_regex.options : "", re->flags) == 0;
    default:
        return false;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing */

static int parse_query(cstate_t *cs, const uint8_t *data, uint32_t len, level_t level,
                       node_t **out);
static int parse_ops(cstate_t *cs, node_t *and, const path_t *path, const char *name,
                     const bson_value_t *ops, level_t level);

/* True for the name of an operator that applies to a field ($gt, $in, $elemMatch...). */
static bool is_field_operator(const char *name)
{
    static const char *const names[] = {
        "$eq",
        "$ne",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$in",
        "$nin",
        "$not",
        "$exists",
        "$type",
        "$size",
        "$mod",
        "$regex",
        "$options",
        "$elemMatch",
        "$all",
        "$bitsAllSet",
        "$bitsAllClear",
        "$bitsAnySet",
        "$bitsAnyClear",
        "$geoWithin",
        "$geoIntersects",
        "$within",
        "$near",
        "$nearSphere",
        "$geoNear",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i])) return true;
    return false;
}

/* MongoDB's "expression document": a non-empty document whose first field starts with '$' and
 * which is not a DBRef ({ $ref, $id [, $db] }, or any of them when `incomplete_dbref`). */
static bool is_operator_doc(const bson_value_t *v, bool incomplete_dbref)
{
    bson_iter_t it;
    if (!is_doc(v) || !doc_iter(v, &it) || !bson_iter_next(&it)) return false;
    if (bson_iter_key(&it)[0] != '$') return false;
    bool ref = false, id = false, db = false;
    do {
        if (key_is(&it, "$ref"))
            ref = true;
        else if (key_is(&it, "$id"))
            id = true;
        else if (key_is(&it, "$db"))
            db = true;
    } while (bson_iter_next(&it));
    return incomplete_dbref ? !(ref || id || db) : !(ref && id);
}

static int add_cmp(cstate_t *cs, node_t *and, const path_t *path, int op, const bson_value_t *v,
                   bool negate)
{
    if (v->value_type == BSON_TYPE_UNDEFINED)
        return cfail(cs, MK_CODE_BAD_VALUE, "cannot compare to undefined");
    node_t *n = leaf_new(cs, N_CMP, path);
    if (!n) return MK_ERR;
    n->op = op;
    n->v = *v;
    n->v_nan = number_is_nan(v);
    if (negate) {
        node_t *not = node_new(cs, N_NOT);
        if (!not ) {
            node_free(n);
            return MK_ERR;
        }
        if (node_add(cs, not, n) != MK_OK) {
            node_free(not );
            return MK_ERR;
        }
        n = not ;
    }
    return node_add(cs, and, n);
}

static int add_regex(cstate_t *cs, node_t *and, const path_t *path, const char *pat, size_t patlen,
                     const char *flags)
{
    node_t *n = leaf_new(cs, N_REGEX, path);
    if (!n) return MK_ERR;
    if (regex_init(cs, &n->u.re, pat, patlen, flags) != MK_OK) {
        node_free(n);
        return MK_ERR;
    }
    return node_add(cs, and, n);
}

/* { $regex: 'x' | /x/f, $options: 'f' } (the $regex field's part of an operator document). */
static int parse_regex_doc(cstate_t *cs, node_t *and, const path_t *path, const bson_value_t *ops)
{
    const char *pat = NULL, *flags = NULL;
    size_t patlen = 0;
    bool regex_flags = false;
    bson_iter_t it;
    if (!doc_iter(ops, &it)) return cfail(cs, MK_CODE_BAD_VALUE, "invalid BSON in filter");
    while (bson_iter_next(&it)) {
        if (key_is(&it, "$regex")) {
            if (BSON_ITER_HOLDS_UTF8(&it)) {
                uint32_t l;
                pat = bson_iter_utf8(&it, &l);
                patlen = l;
            } else if (BSON_ITER_HOLDS_REGEX(&it)) {
                const char *o;
                pat = bson_iter_regex(&it, &o);
                patlen = strlen(pat);
                if (o && *o) {
                    if (flags) goto both;
                    flags = o;
                    regex_flags = true;
                }
            } else {
                return cfail(cs, MK_CODE_BAD_VALUE, "$regex has to be a string");
            }
        } else if (key_is(&it, "$options")) {
            if (!BSON_ITER_HOLDS_UTF8(&it))
                return cfail(cs, MK_CODE_BAD_VALUE, "$options has to be a string");
            if (regex_flags) goto both;
            uint32_t flen;
            flags = bson_iter_utf8(&it, &flen);
            if (strlen(flags) != flen)
                return cfail(cs, MK_CODE_BAD_VALUE,
                             "Regular expression options string cannot "
                             "contain an embedded null byte");
        }
    }
    return add_regex(cs, and, path, pat ? pat : "", patlen, flags ? flags : "");
both:
    return cfail(cs, 51075, "options set in both $regex and $options");
}

static int parse_in(cstate_t *cs, node_t *and, const path_t *path, const char *opname,
                    const bson_value_t *arr, bool negate)
{
    if (arr->value_type != BSON_TYPE_ARRAY)
        return cfail(cs, MK_CODE_BAD_VALUE, "%s needs an array", opname);
    node_t *n = leaf_new(cs, N_IN, path);
    if (!n) return MK_ERR;
    bson_iter_t it;
    uint32_t count = 0;
    if (doc_iter(arr, &it))
        while (bson_iter_next(&it)) count++;
    if (count) {
        n->u.in.vals = calloc(count, sizeof *n->u.in.vals);
        n->u.in.res = calloc(count, sizeof *n->u.in.res);
        if (!n->u.in.vals || !n->u.in.res) {
            node_free(n);
            return cnomem(cs);
        }
    }
    if (doc_iter(arr, &it)) {
        while (bson_iter_next(&it)) {
            const bson_value_t *v = bson_iter_value(&it);
            if (is_operator_doc(v, false)) {
                node_free(n);
                return cfail(cs, MK_CODE_BAD_VALUE, "cannot nest $ under $in");
            }
            if (v->value_type == BSON_TYPE_REGEX) {
                mregex_t *re = &n->u.in.res[n->u.in.nres];
                const char *o = v->value.v_regex.options ? v->value.v_regex.options : "";
                if (regex_init(cs, re, v->value.v_regex.regex, strlen(v->value.v_regex.regex), o) !=
                    MK_OK) {
                    node_free(n);
                    return MK_ERR;
                }
                n->u.in.nres++;
            } else if (v->value_type == BSON_TYPE_UNDEFINED) {
                node_free(n);
                return cfail(cs, MK_CODE_BAD_VALUE,
                             "InMatchExpression equality cannot be undefined");
            } else {
                if (v->value_type == BSON_TYPE_NULL) n->u.in.has_null = true;
                n->u.in.vals[n->u.in.nvals++] = *v;
            }
        }
    }
    if (n->u.in.nvals > 1)
        qsort(n->u.in.vals, n->u.in.nvals, sizeof *n->u.in.vals, cmp_values_qsort);
    if (negate) {
        node_t *not = node_new(cs, N_NOT);
        if (!not || node_add(cs, not, n) != MK_OK) {
            if (!not ) node_free(n);
            node_free(not );
            return MK_ERR;
        }
        n = not ;
    }
    return node_add(cs, and, n);
}

static bool type_code_valid(int64_t code)
{
    return code == -1 || code == 127 || (code >= 1 && code <= 19);
}

static int type_bit(cstate_t *cs, const bson_value_t *v, uint32_t *mask)
{
    char buf[64];
    if (v->value_type == BSON_TYPE_UTF8) {
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
        };
        const char *s = v->value.v_utf8.str;
        if (strlen(s) == v->value.v_utf8.len && strcmp(s, "number") == 0) {
            *mask |= TYPE_BIT_NUMBER;
            return MK_OK;
        }
        for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
            if (strlen(s) == v->value.v_utf8.len && strcmp(s, aliases[i].name) == 0) {
                int c = aliases[i].code;
                *mask |= c == -1 ? TYPE_BIT_MINKEY : c == 127 ? TYPE_BIT_MAXKEY : 1u << c;
                return MK_OK;
            }
        }
        return cfail(cs, MK_CODE_BAD_VALUE, "Unknown type name alias: %.*s",
                     (int)v->value.v_utf8.len, s);
    }
    if (!mk_type_is_number(v->value_type))
        return cfail(cs, MK_CODE_TYPE_MISMATCH, "type must be represented as a number or a string");
    int64_t code;
    if (number_to_i64_exact(v, &code) != 0 || !type_code_valid(code))
        return cfail(cs, MK_CODE_BAD_VALUE, "Invalid numerical type code: %s%s",
                     describe(buf, sizeof buf, v),
                     number_to_i64_exact(v, &code) == 0 && code == 0
                         ? ". Instead use {$exists:false}."
                         : "");
    *mask |= code == -1 ? TYPE_BIT_MINKEY : code == 127 ? TYPE_BIT_MAXKEY : 1u << code;
    return MK_OK;
}

static int parse_type(cstate_t *cs, node_t *and, const path_t *path, const bson_value_t *v)
{
    uint32_t mask = 0;
    if (v->value_type == BSON_TYPE_ARRAY) {
        bson_iter_t it;
        if (doc_iter(v, &it))
            while (bson_iter_next(&it))
                if (type_bit(cs, bson_iter_value(&it), &mask) != MK_OK) return MK_ERR;
        if (!mask) return cfail(cs, MK_CODE_FAILED_TO_PARSE, "$type must match at least one type");
    } else if (type_bit(cs, v, &mask) != MK_OK) {
        return MK_ERR;
    }
    node_t *n = leaf_new(cs, N_TYPE, path);
    if (!n) return MK_ERR;
    n->u.types = mask;
    return node_add(cs, and, n);
}

static int parse_size(cstate_t *cs, node_t *and, const path_t *path, const bson_value_t *v)
{
    int64_t size;
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        size = v->value.v_int32;
        break;
    case BSON_TYPE_INT64:
        if (v->value.v_int64 < INT32_MIN || v->value.v_int64 > INT32_MAX)
            return cfail(cs, MK_CODE_BAD_VALUE, "$size must be representable as a 32-bit integer");
        size = v->value.v_int64;
        break;
    case BSON_TYPE_DOUBLE: {
        double d = v->value.v_double;
        if (!(d >= INT32_MIN && d <= INT32_MAX) || d != floor(d))
            return cfail(cs, MK_CODE_BAD_VALUE, "$size must be a whole number");
        size = (int64_t)d;
        break;
    }
    default:
        return cfail(cs, MK_CODE_BAD_VALUE, "$size needs a number");
    }
    if (size < 0) return cfail(cs, MK_CODE_BAD_VALUE, "$size may not be negative");
    node_t *n = leaf_new(cs, N_SIZE, path);
    if (!n) return MK_ERR;
    n->u.size = size;
    return node_add(cs, and, n);
}

static int mod_operand(cstate_t *cs, const bson_value_t *v, const char *what, int64_t *out)
{
    int rc = number_to_i64_trunc(v, out);
    if (rc == -1)
        return cfail(cs, MK_CODE_BAD_VALUE,
                     "malformed mod, %s value is invalid :: caused by :: Unable to coerce NaN/Inf "
                     "to integral type",
                     what);
    if (rc == -2)
        return cfail(cs, MK_CODE_BAD_VALUE,
                     "malformed mod, %s value is invalid :: caused by :: Out of bounds coercing to "
                     "integral value",
                     what);
    return MK_OK;
}

static int parse_mod(cstate_t *cs, node_t *and, const path_t *path, const bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_ARRAY)
        return cfail(cs, MK_CODE_BAD_VALUE, "malformed mod, needs to be an array");
    bson_iter_t it;
    const bson_value_t *d, *r;
    if (!doc_iter(v, &it) || !bson_iter_next(&it))
        return cfail(cs, MK_CODE_BAD_VALUE, "malformed mod, not enough elements");
    bson_value_t dv = *bson_iter_value(&it);
    d = &dv;
    if (!mk_type_is_number(d->value_type))
        return cfail(cs, MK_CODE_BAD_VALUE, "malformed mod, divisor not a number");
    if (!bson_iter_next(&it))
        return cfail(cs, MK_CODE_BAD_VALUE, "malformed mod, not enough elements");
    r = bson_iter_value(&it);
    if (!mk_type_is_number(r->value_type))
        return cfail(cs, MK_CODE_BAD_VALUE, "malformed mod, remainder not a number");
    int64_t div, rem;
    if (mod_operand(cs, d, "divisor", &div) != MK_OK ||
        mod_operand(cs, r, "remainder", &rem) != MK_OK)
        return MK_ERR;
    if (bson_iter_next(&it))
        return cfail(cs, MK_CODE_BAD_VALUE, "malformed mod, too many elements");
    if (div == 0) return cfail(cs, MK_CODE_BAD_VALUE, "divisor cannot be 0");
    node_t *n = leaf_new(cs, N_MOD, path);
    if (!n) return MK_ERR;
    n->u.mod.div = div;
    n->u.mod.rem = rem;
    return node_add(cs, and, n);
}

static int bits_push(cstate_t *cs, node_t *n, uint32_t *cap, uint32_t pos)
{
    if (n->u.bits.npos == *cap) {
        uint32_t c = *cap ? *cap * 2 : 8;
        uint32_t *p = realloc(n->u.bits.pos, c * sizeof *p);
        if (!p) return cnomem(cs);
        n->u.bits.pos = p;
        *cap = c;
    }
    n->u.bits.pos[n->u.bits.npos++] = pos;
    return MK_OK;
}

static int parse_bits(cstate_t *cs, node_t *and, const path_t *path, const char *opname, int op,
                      const bson_value_t *v)
{
    char buf[96];
    node_t *n = leaf_new(cs, N_BITS, path);
    if (!n) return MK_ERR;
    n->op = op;
    uint32_t cap = 0;
    int rc = MK_OK;
    if (v->value_type == BSON_TYPE_ARRAY) {
        bson_iter_t it;
        if (doc_iter(v, &it)) {
            while (rc == MK_OK && bson_iter_next(&it)) {
                const bson_value_t *e = bson_iter_value(&it);
                int64_t p = 0;
                int conv = mk_type_is_number(e->value_type) ? number_to_i64_exact(e, &p) : -3;
                describe(buf, sizeof buf, e);
                if (conv == -1)
                    rc = cfail(cs, MK_CODE_BAD_VALUE, "bit positions cannot take a NaN: %s", buf);
                else if (conv == -2 || (conv == 0 && (p > INT32_MAX || p < INT32_MIN)))
                    rc = cfail(cs, MK_CODE_BAD_VALUE,
                               "bit positions cannot be represented as a 32-bit signed integer: %s",
                               buf);
                else if (conv == -3)
                    rc = cfail(cs, MK_CODE_BAD_VALUE,
                               "bit positions must be an integer but got: %s", buf);
                else if (p < 0)
                    rc =
                        cfail(cs, MK_CODE_BAD_VALUE, "bit positions must be >= 0 but got: %s", buf);
                else
                    rc = bits_push(cs, n, &cap, (uint32_t)p);
            }
        }
    } else if (mk_type_is_number(v->value_type)) {
        int64_t mask = 0;
        int conv = number_to_i64_exact(v, &mask);
        describe(buf, sizeof buf, v);
        if (conv == -1)
            rc = cfail(cs, MK_CODE_FAILED_TO_PARSE, "Expected an integer, but found NaN in: %s: %s",
                       opname, buf);
        else if (conv == -2)
            rc = cfail(cs, MK_CODE_FAILED_TO_PARSE, "Cannot represent as a 64-bit integer: %s: %s",
                       opname, buf);
        else if (conv == -3)
            rc = cfail(cs, MK_CODE_FAILED_TO_PARSE, "Expected an integer: %s: %s", opname, buf);
        else if (mask < 0)
            rc = cfail(cs, MK_CODE_FAILED_TO_PARSE, "Expected a positive number in: %s: %s", opname,
                       buf);
        for (uint32_t b = 0; rc == MK_OK && b < 63; b++)
            if ((uint64_t)mask >> b & 1) rc = bits_push(cs, n, &cap, b);
    } else if (v->value_type == BSON_TYPE_BINARY) {
        for (uint32_t i = 0; rc == MK_OK && i < v->value.v_binary.data_len; i++)
            for (uint32_t b = 0; rc == MK_OK && b < 8; b++)
                if (v->value.v_binary.data[i] >> b & 1) rc = bits_push(cs, n, &cap, i * 8 + b);
    } else {
        rc = cfail(cs, MK_CODE_BAD_VALUE,
                   "%s takes an Array, a number, or a BinData but received: %s", opname,
                   describe(buf, sizeof buf, v));
    }
    if (rc != MK_OK) {
        node_free(n);
        return MK_ERR;
    }
    return node_add(cs, and, n);
}

static int parse_elem_match(cstate_t *cs, node_t *and, const path_t *path, const bson_value_t *v)
{
    if (!is_doc(v)) return cfail(cs, MK_CODE_BAD_VALUE, "$elemMatch needs an Object");
    bool value_form = false;
    if (is_operator_doc(v, true)) {
        bson_iter_t it;
        doc_iter(v, &it);
        bson_iter_next(&it);
        const char *k = bson_iter_key(&it);
        /* operators that apply to a whole document make it the query form */
        static const char *const pathless[] = {
            "$and",        "$or",      "$nor",        "$expr",       "$where",
            "$text",       "$comment", "$jsonSchema", "$alwaysTrue", "$alwaysFalse",
            "$sampleRate", "$id",      "$ref",        "$db"};
        value_form = true;
        for (size_t i = 0; i < sizeof pathless / sizeof pathless[0]; i++)
            if (strcmp(k, pathless[i]) == 0) value_form = false;
    }
    node_t *n;
    if (value_form) {
        n = leaf_new(cs, N_ELEM_VAL, path);
        if (!n) return MK_ERR;
        path_t none = {NULL, 0};
        if (parse_ops(cs, n, &none, "", v, LEVEL_SUB) != MK_OK) {
            node_free(n);
            return MK_ERR;
        }
    } else {
        node_t *sub;
        if (parse_query(cs, v->value.v_doc.data, v->value.v_doc.data_len, LEVEL_SUB, &sub) != MK_OK)
            return MK_ERR;
        n = leaf_new(cs, N_ELEM_OBJ, path);
        if (!n) {
            node_free(sub);
            return MK_ERR;
        }
        if (node_add(cs, n, sub) != MK_OK) {
            node_free(n);
            return MK_ERR;
        }
    }
    return node_add(cs, and, n);
}

static int parse_all(cstate_t *cs, node_t *and, const path_t *path, const bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_ARRAY)
        return cfail(cs, MK_CODE_BAD_VALUE, "$all needs an array");
    bson_iter_t it;
    bool elem_match = false, any = false;
    if (doc_iter(v, &it) && bson_iter_next(&it)) {
        any = true;
        const bson_value_t *first = bson_iter_value(&it);
        bson_iter_t f;
        elem_match =
            is_doc(first) && doc_iter(first, &f) && bson_iter_next(&f) && key_is(&f, "$elemMatch");
    }
    if (!any) {
        node_t *n = node_new(cs, N_FALSE); /* $all: [] matches nothing */
        return n ? node_add(cs, and, n) : MK_ERR;
    }
    doc_iter(v, &it);
    while (bson_iter_next(&it)) {
        const bson_value_t *e = bson_iter_value(&it);
        if (elem_match) {
            bson_iter_t f;
            if (!is_doc(e) || !doc_iter(e, &f) || !bson_iter_next(&f) || !key_is(&f, "$elemMatch"))
                return cfail(cs, MK_CODE_BAD_VALUE, "$all/$elemMatch has to be consistent");
            if (parse_elem_match(cs, and, path, bson_iter_value(&f)) != MK_OK) return MK_ERR;
        } else if (e->value_type == BSON_TYPE_REGEX) {
            const char *o = e->value.v_regex.options ? e->value.v_regex.options : "";
            if (add_regex(cs, and, path, e->value.v_regex.regex, strlen(e->value.v_regex.regex),
                          o) != MK_OK)
                return MK_ERR;
        } else {
            bson_iter_t f;
            if (is_doc(e) && doc_iter(e, &f) && bson_iter_next(&f) &&
                is_field_operator(bson_iter_key(&f)))
                return cfail(cs, MK_CODE_BAD_VALUE, "no $ expressions in $all");
            if (add_cmp(cs, and, path, OP_EQ, e, false) != MK_OK) return MK_ERR;
        }
    }
    return MK_OK;
}

static int parse_not(cstate_t *cs, node_t *and, const path_t *path, const char *name,
                     const bson_value_t *v, level_t level)
{
    node_t *inner = node_new(cs, N_AND);
    if (!inner) return MK_ERR;
    int rc;
    if (v->value_type == BSON_TYPE_REGEX) {
        const char *o = v->value.v_regex.options ? v->value.v_regex.options : "";
        rc = add_regex(cs, inner, path, v->value.v_regex.regex, strlen(v->value.v_regex.regex), o);
    } else if (!is_doc(v)) {
        rc = cfail(cs, MK_CODE_BAD_VALUE, "$not needs a regex or a document");
    } else if (v->value.v_doc.data_len <= 5) {
        rc = cfail(cs, MK_CODE_BAD_VALUE, "$not cannot be empty");
    } else {
        rc = parse_ops(cs, inner, path, name, v, level);
    }
    node_t *not = rc == MK_OK ? node_new(cs, N_NOT) : NULL;
    if (!not ) {
        node_free(inner);
        return MK_ERR;
    }
    if (node_add(cs, not, inner) != MK_OK) {
        node_free(not );
        return MK_ERR;
    }
    return node_add(cs, and, not );
}

static int unsupported(cstate_t *cs, const char *op)
{
    return cfail(cs, MK_CODE_BAD_VALUE, "%s is not supported yet", op);
}

/* The operators of one operator document { $gt: 1, $lt: 5 } on `path`, added to `and`. */
static int parse_ops(cstate_t *cs, node_t *and, const path_t *path, const char *name,
                     const bson_value_t *ops, level_t level)
{
    if (++cs->depth > MAX_TREE_DEPTH)
        return cfail(cs, MK_CODE_BAD_VALUE, "filter is nested more than %d levels deep",
                     MAX_TREE_DEPTH);
    bson_iter_t it;
    bool has_regex = false;
    if (!doc_iter(ops, &it)) return cfail(cs, MK_CODE_BAD_VALUE, "invalid BSON in filter");
    while (bson_iter_next(&it))
        if (key_is(&it, "$regex")) has_regex = true;
    doc_iter(ops, &it);
    int rc = MK_OK;
    bool regex_done = false;
    while (rc == MK_OK && bson_iter_next(&it)) {
        const char *op = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (!strcmp(op, "$eq")) {
            rc = add_cmp(cs, and, path, OP_EQ, v, false);
        } else if (!strcmp(op, "$lt") || !strcmp(op, "$lte") || !strcmp(op, "$gt") ||
                   !strcmp(op, "$gte")) {
            if (v->value_type == BSON_TYPE_REGEX)
                return cfail(cs, MK_CODE_BAD_VALUE,
                             "Can't have RegEx as arg to predicate over field '%s'.", name);
            int cmp = op[1] == 'g' ? (op[3] ? OP_GTE : OP_GT) : (op[3] ? OP_LTE : OP_LT);
            rc = add_cmp(cs, and, path, cmp, v, false);
        } else if (!strcmp(op, "$ne")) {
            if (v->value_type == BSON_TYPE_REGEX)
                return cfail(cs, MK_CODE_BAD_VALUE, "Can't have regex as arg to $ne.");
            rc = add_cmp(cs, and, path, OP_EQ, v, true);
        } else if (!strcmp(op, "$in") || !strcmp(op, "$nin")) {
            rc = parse_in(cs, and, path, op, v, op[1] == 'n');
        } else if (!strcmp(op, "$not")) {
            rc = parse_not(cs, and, path, name, v, level);
        } else if (!strcmp(op, "$exists")) {
            node_t *n = leaf_new(cs, N_EXISTS, path);
            if (!n) return MK_ERR;
            if (!mk_value_truthy(v)) {
                node_t *not = node_new(cs, N_NOT);
                if (!not || node_add(cs, not, n) != MK_OK) {
                    if (!not ) node_free(n);
                    node_free(not );
                    return MK_ERR;
                }
                n = not ;
            }
            rc = node_add(cs, and, n);
        } else if (!strcmp(op, "$type")) {
            rc = parse_type(cs, and, path, v);
        } else if (!strcmp(op, "$size")) {
            rc = parse_size(cs, and, path, v);
        } else if (!strcmp(op, "$mod")) {
            rc = parse_mod(cs, and, path, v);
        } else if (!strcmp(op, "$regex")) {
            if (!regex_done) rc = parse_regex_doc(cs, and, path, ops);
            regex_done = true;
        } else if (!strcmp(op, "$options")) {
            if (!has_regex) return cfail(cs, MK_CODE_BAD_VALUE, "$options needs a $regex");
        } else if (!strcmp(op, "$elemMatch")) {
            rc = parse_elem_match(cs, and, path, v);
        } else if (!strcmp(op, "$all")) {
            rc = parse_all(cs, and, path, v);
        } else if (!strcmp(op, "$bitsAllSet")) {
            rc = parse_bits(cs, and, path, op, BITS_ALL_SET, v);
        } else if (!strcmp(op, "$bitsAllClear")) {
            rc = parse_bits(cs, and, path, op, BITS_ALL_CLEAR, v);
        } else if (!strcmp(op, "$bitsAnySet")) {
            rc = parse_bits(cs, and, path, op, BITS_ANY_SET, v);
        } else if (!strcmp(op, "$bitsAnyClear")) {
            rc = parse_bits(cs, and, path, op, BITS_ANY_CLEAR, v);
        } else if (!strcmp(op, "$geoWithin") || !strcmp(op, "$geoIntersects") ||
                   !strcmp(op, "$within") || !strcmp(op, "$near") || !strcmp(op, "$nearSphere") ||
                   !strcmp(op, "$geoNear")) {
            return unsupported(cs, op);
        } else if (!strcmp(op, "$where")) {
            return cfail(cs, MK_CODE_BAD_VALUE, "$where cannot be applied to a field");
        } else {
            return cfail(cs, MK_CODE_BAD_VALUE, "unknown operator: %s", op);
        }
    }
    cs->depth--;
    return rc;
}

/* $and / $or / $nor: a non-empty array of filter documents. */
static int parse_tree(cstate_t *cs, node_t *and, kind_t kind, const char *op, const bson_value_t *v,
                      level_t level)
{
    if (v->value_type != BSON_TYPE_ARRAY)
        return cfail(cs, MK_CODE_BAD_VALUE, "%s must be an array", op);
    bson_iter_t it;
    if (!doc_iter(v, &it) || v->value.v_doc.data_len <= 5)
        return cfail(cs, MK_CODE_BAD_VALUE, "$and/$or/$nor must be a nonempty array");
    node_t *n = node_new(cs, kind);
    if (!n) return MK_ERR;
    while (bson_iter_next(&it)) {
        const bson_value_t *e = bson_iter_value(&it);
        node_t *sub;
        if (!is_doc(e)) {
            node_free(n);
            return cfail(cs, MK_CODE_BAD_VALUE, "$or/$and/$nor entries need to be full objects");
        }
        if (parse_query(cs, e->value.v_doc.data, e->value.v_doc.data_len, level, &sub) != MK_OK ||
            node_add(cs, n, sub) != MK_OK) {
            node_free(n);
            return MK_ERR;
        }
    }
    return node_add(cs, and, n);
}

static int parse_always(cstate_t *cs, node_t *and, const char *op, const bson_value_t *v)
{
    char buf[64];
    int64_t one = 0;
    if (!mk_type_is_number(v->value_type))
        return cfail(cs, MK_CODE_FAILED_TO_PARSE, "Expected a number in: %s: %s", op,
                     describe(buf, sizeof buf, v));
    if (number_to_i64_exact(v, &one) != 0 || one != 1)
        return cfail(cs, MK_CODE_FAILED_TO_PARSE, "%s must be an integer value of 1", op);
    node_t *n = node_new(cs, op[7] == 'T' ? N_TRUE : N_FALSE);
    return n ? node_add(cs, and, n) : MK_ERR;
}

/* One top-level (or $elemMatch-level) field: an operator like $or, or a path condition. */
static int parse_field(cstate_t *cs, node_t *and, bson_iter_t *it, level_t level)
{
    const char *key = bson_iter_key(it);
    uint32_t klen = bson_iter_key_len(it);
    const bson_value_t *v = bson_iter_value(it);
    if (key[0] == '$') {
        if (!strcmp(key, "$and")) return parse_tree(cs, and, N_AND, key, v, level);
        if (!strcmp(key, "$or")) return parse_tree(cs, and, N_OR, key, v, level);
        if (!strcmp(key, "$nor")) return parse_tree(cs, and, N_NOR, key, v, level);
        if (!strcmp(key, "$comment")) return MK_OK;
        if (!strcmp(key, "$alwaysTrue") || !strcmp(key, "$alwaysFalse"))
            return parse_always(cs, and, key, v);
        if (!strcmp(key, "$expr")) {
            if (level == LEVEL_SUB)
                return cfail(cs, MK_CODE_BAD_VALUE,
                             "$expr can only be applied to the top-level document");
            node_t *n = node_new(cs, N_EXPR);
            if (!n) return MK_ERR;
            n->u.expr = mk_expr_compile(v, cs->err);
            if (!n->u.expr) {
                free(n);
                return MK_ERR;
            }
            return node_add(cs, and, n);
        }
        if (!strcmp(key, "$text") && level == LEVEL_SUB)
            return cfail(cs, MK_CODE_BAD_VALUE,
                         "$text can only be applied to the top-level document");
        if (!strcmp(key, "$where") || !strcmp(key, "$text") || !strcmp(key, "$jsonSchema") ||
            !strcmp(key, "$sampleRate"))
            return unsupported(cs, key);
        if (!strcmp(key, "$id") || !strcmp(key, "$ref") || !strcmp(key, "$db")) {
            path_t p = {&(comp_t){key, klen, false}, 1}; /* DBRef field: one literal name */
            return add_cmp(cs, and, &p, OP_EQ, v, false);
        }
        return cfail(cs, MK_CODE_BAD_VALUE, "unknown top level operator: %s", key);
    }
    path_t p;
    if (path_split(cs, key, klen, &p) != MK_OK) return MK_ERR;
    int rc;
    if (is_operator_doc(v, false)) {
        rc = parse_ops(cs, and, &p, key, v, level);
    } else if (v->value_type == BSON_TYPE_REGEX) {
        const char *o = v->value.v_regex.options ? v->value.v_regex.options : "";
        rc = add_regex(cs, and, &p, v->value.v_regex.regex, strlen(v->value.v_regex.regex), o);
    } else {
        rc = add_cmp(cs, and, &p, OP_EQ, v, false);
    }
    free(p.c);
    return rc;
}

/* A filter document: the AND of its fields (a single condition is returned as is). */
static int parse_query(cstate_t *cs, const uint8_t *data, uint32_t len, level_t level, node_t **out)
{
    if (++cs->depth > MAX_TREE_DEPTH)
        return cfail(cs, MK_CODE_BAD_VALUE, "filter is nested more than %d levels deep",
                     MAX_TREE_DEPTH);
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len))
        return cfail(cs, MK_CODE_BAD_VALUE, "invalid BSON in filter");
    node_t *and = node_new(cs, N_AND);
    if (!and) return MK_ERR;
    while (bson_iter_next(&it)) {
        if (parse_field(cs, and, &it, level) != MK_OK) {
            node_free(and);
            return MK_ERR;
        }
    }
    if (and->nkids == 1) {
        *out = and->kids[0];
        and->nkids = 0;
        node_free(and);
    } else {
        *out = and;
    }
    cs->depth--;
    return MK_OK;
}

mk_matcher_t *mk_matcher_compile(const bson_t *filter, mk_error_t *err)
{
    cstate_t cs = {err, 0};
    mk_matcher_t *m = calloc(1, sizeof *m);
    if (!m) {
        mk_error_nomem(err);
        return NULL;
    }
    m->len = filter->len;
    m->raw = malloc(m->len);
    if (!m->raw) {
        free(m);
        mk_error_nomem(err);
        return NULL;
    }
    memcpy(m->raw, bson_get_data(filter), m->len);
    if (parse_query(&cs, m->raw, m->len, LEVEL_TOP, &m->root) != MK_OK) {
        free(m->raw);
        free(m);
        return NULL;
    }
    m->empty = m->root->kind == N_AND && m->root->nkids == 0;
    return m;
}

void mk_matcher_destroy(mk_matcher_t *m)
{
    if (!m) return;
    node_free(m->root);
    free(m->raw);
    free(m);
}

bool mk_matcher_is_empty(const mk_matcher_t *m)
{
    return m->empty;
}

/* ------------------------------------------------------------------------------------------ */
/* Matching */

/* The document a condition is evaluated against: raw bytes, or the virtual { name: value } of
 * mk_matcher_match_value. `doc`, when set, is the same document as a bson_t (for $expr). */
typedef struct root {
    const uint8_t *data;
    uint32_t len;
    const char *name;
    const bson_value_t *value;
    const bson_t *doc;
} root_t;

typedef struct mctx {
    mk_error_t *err;
    bool failed; /* a $expr failed to evaluate */
} mctx_t;

static bool eval(const node_t *n, const root_t *r, mk_match_details_t *d, mctx_t *mc);
static bool single(const node_t *n, const bson_value_t *v, int32_t *inner);

/* One path condition being evaluated: the leaf and, once matched, the array position. */
typedef struct walk {
    const node_t *leaf;
    bool leaf_arrays; /* an array at the end of the path also yields its elements */
    int32_t pos;
} walk_t;

static bool yield(walk_t *w, const bson_value_t *v, int32_t off)
{
    int32_t inner = -1;
    if (!single(w->leaf, v, &inner)) return false;
    w->pos = off >= 0 ? off : inner;
    return true;
}

static bool find_field(bson_iter_t *it, const comp_t *c)
{
    while (bson_iter_next(it))
        if (bson_iter_key_len(it) == c->len && memcmp(bson_iter_key(it), c->s, c->len) == 0)
            return true;
    return false;
}

static bool index_matches(const comp_t *c, const bson_iter_t *it)
{
    return c->digits && bson_iter_key_len(it) == c->len &&
           memcmp(bson_iter_key(it), c->s, c->len) == 0;
}

static bool walk_value(walk_t *w, uint32_t k, const bson_value_t *v, int32_t off);

/* Looks up component k in a document. `off` is the position in the outermost array traversed
 * so far (-1: none); positions of inner arrays only show when there is no outer one. */
static bool walk_doc(walk_t *w, uint32_t k, const uint8_t *data, uint32_t len, int32_t off)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len) || !find_field(&it, &w->leaf->path.c[k]))
        return yield(w, NULL, off);
    return walk_value(w, k, bson_iter_value(&it), off);
}

/* `arr` stands at component k and the path continues at k + 1. */
static bool walk_array(walk_t *w, uint32_t k, const bson_value_t *arr, int32_t off)
{
    const path_t *p = &w->leaf->path;
    const comp_t *next = &p->c[k + 1];
    bool next_is_last = k + 2 == p->n;
    bson_iter_t it;
    if (!doc_iter(arr, &it)) return false;
    for (int32_t j = 0; bson_iter_next(&it); j++) {
        const bson_value_t *e = bson_iter_value(&it);
        if (e->value_type == BSON_TYPE_DOCUMENT) {
            if (walk_doc(w, k + 1, e->value.v_doc.data, e->value.v_doc.data_len,
                         off >= 0 ? off : j))
                return true;
            if (index_matches(next, &it)) {
                if (next_is_last
                        ? yield(w, e, off)
                        : walk_doc(w, k + 2, e->value.v_doc.data, e->value.v_doc.data_len, off))
                    return true;
            }
        } else if (index_matches(next, &it)) {
            if (next_is_last) {
                if (yield(w, e, off)) return true;
            } else if (e->value_type == BSON_TYPE_ARRAY) {
                if (walk_array(w, k + 1, e, off)) return true;
            }
        }
    }
    return false;
}

/* `v` is the value found at component k. */
static bool walk_value(walk_t *w, uint32_t k, const bson_value_t *v, int32_t off)
{
    if (k + 1 == w->leaf->path.n) {
        if (v->value_type == BSON_TYPE_ARRAY && w->leaf_arrays) {
            bson_iter_t it;
            if (doc_iter(v, &it))
                for (int32_t j = 0; bson_iter_next(&it); j++)
                    if (yield(w, bson_iter_value(&it), off >= 0 ? off : j)) return true;
        }
        return yield(w, v, off);
    }
    if (v->value_type == BSON_TYPE_DOCUMENT)
        return walk_doc(w, k + 1, v->value.v_doc.data, v->value.v_doc.data_len, off);
    if (v->value_type == BSON_TYPE_ARRAY) return walk_array(w, k, v, off);
    return yield(w, NULL, off); /* a scalar where the path continues: missing */
}

static bool minmax_match(int op, const bson_value_t *rhs)
{
    if (rhs->value_type == BSON_TYPE_MAXKEY) return op == OP_LT || op == OP_LTE;
    if (rhs->value_type == BSON_TYPE_MINKEY) return op == OP_GT || op == OP_GTE;
    return false;
}

/* $eq/$lt/...: only values of the operand's canonical type compare ("type bracketing"). */
static bool cmp_single(const node_t *n, const bson_value_t *v)
{
    const bson_value_t *r = &n->v;
    int op = n->op;
    if (!v || v->value_type == BSON_TYPE_UNDEFINED) {
        if (r->value_type == BSON_TYPE_NULL && (v == NULL || NULL_MATCHES_UNDEFINED))
            return op == OP_EQ || op == OP_LTE || op == OP_GTE;
        return minmax_match(op, r);
    }
    if (mk_type_rank(v->value_type) != mk_type_rank(r->value_type)) return minmax_match(op, r);
    if (mk_type_is_number(v->value_type)) {
        bool vn = number_is_nan(v);
        if (vn || n->v_nan) /* NaN equals NaN and is neither below nor above anything */
            return vn && n->v_nan && op != OP_LT && op != OP_GT;
    }
    int c = mk_value_cmp(v, r);
    switch (op) {
    case OP_EQ:
        return c == 0;
    case OP_LT:
        return c < 0;
    case OP_LTE:
        return c <= 0;
    case OP_GT:
        return c > 0;
    default:
        return c >= 0;
    }
}

static bool in_single(const node_t *n, const bson_value_t *v)
{
    if (!v || v->value_type == BSON_TYPE_UNDEFINED)
        return n->u.in.has_null && (v == NULL || NULL_MATCHES_UNDEFINED);
    if (n->u.in.nvals &&
        bsearch(v, n->u.in.vals, n->u.in.nvals, sizeof *n->u.in.vals, cmp_values_qsort))
        return true;
    for (uint32_t i = 0; i < n->u.in.nres; i++)
        if (regex_single(&n->u.in.res[i], v)) return true;
    return false;
}

static bool type_single(uint32_t mask, const bson_value_t *v)
{
    if (!v) return false;
    bson_type_t t = v->value_type;
    if ((mask & TYPE_BIT_NUMBER) && mk_type_is_number(t)) return true;
    if (t == BSON_TYPE_MINKEY) return mask & TYPE_BIT_MINKEY;
    if (t == BSON_TYPE_MAXKEY) return mask & TYPE_BIT_MAXKEY;
    return (unsigned)t >= 1 && (unsigned)t <= 19 && (mask >> (unsigned)t & 1);
}

static bool mod_single(const node_t *n, const bson_value_t *v)
{
    int64_t x;
    if (!v || !mk_type_is_number(v->value_type) || number_to_i64_trunc(v, &x) != 0) return false;
    int64_t div = n->u.mod.div;
    int64_t m = div == -1 ? 0 : x % div; /* INT64_MIN % -1 would trap */
    return m == n->u.mod.rem;
}

static bool bits_single(const node_t *n, const bson_value_t *v)
{
    if (!v) return false;
    int64_t x = 0;
    const uint8_t *bytes = NULL;
    uint32_t nbytes = 0;
    if (v->value_type == BSON_TYPE_BINARY) {
        bytes = v->value.v_binary.data;
        nbytes = v->value.v_binary.data_len;
    } else if (!mk_type_is_number(v->value_type) || number_to_i64_exact(v, &x) != 0) {
        return false;
    }
    for (uint32_t i = 0; i < n->u.bits.npos; i++) {
        uint32_t p = n->u.bits.pos[i];
        bool set;
        if (bytes)
            set = p / 8 < nbytes && (bytes[p / 8] >> (p % 8) & 1);
        else
            set = p < 64 ? ((uint64_t)x >> p & 1) : x < 0; /* sign extension */
        switch (n->op) {
        case BITS_ALL_SET:
            if (!set) return false;
            break;
        case BITS_ALL_CLEAR:
            if (set) return false;
            break;
        case BITS_ANY_SET:
            if (set) return true;
            break;
        default:
            if (!set) return true;
            break;
        }
    }
    return n->op == BITS_ALL_SET || n->op == BITS_ALL_CLEAR;
}

static bool elem_match_single(const node_t *n, const bson_value_t *v, int32_t *inner)
{
    if (!v || v->value_type != BSON_TYPE_ARRAY) return false;
    bson_iter_t it;
    if (!doc_iter(v, &it)) return false;
    for (int32_t j = 0; bson_iter_next(&it); j++) {
        const bson_value_t *e = bson_iter_value(&it);
        bool ok;
        if (n->kind == N_ELEM_OBJ) {
            if (e->value_type != BSON_TYPE_DOCUMENT && e->value_type != BSON_TYPE_ARRAY) continue;
            root_t sub = {e->value.v_doc.data, e->value.v_doc.data_len, NULL, NULL, NULL};
            mctx_t mc = {NULL, false};
            ok = eval(n->kids[0], &sub, NULL, &mc);
        } else {
            ok = true;
            for (uint32_t i = 0; ok && i < n->nkids; i++) ok = single(n->kids[i], e, NULL);
        }
        if (ok) {
            if (inner) *inner = j;
            return true;
        }
    }
    return false;
}

/* The predicate of a node on one value (NULL: missing). */
static bool single(const node_t *n, const bson_value_t *v, int32_t *inner)
{
    switch (n->kind) {
    case N_AND:
        for (uint32_t i = 0; i < n->nkids; i++)
            if (!single(n->kids[i], v, NULL)) return false;
        return true;
    case N_NOT:
        return !single(n->kids[0], v, NULL);
    case N_TRUE:
        return true;
    case N_CMP:
        return cmp_single(n, v);
    case N_IN:
        return in_single(n, v);
    case N_REGEX:
        return regex_single(&n->u.re, v);
    case N_EXISTS:
        return v != NULL;
    case N_TYPE:
        return type_single(n->u.types, v);
    case N_MOD:
        return mod_single(n, v);
    case N_SIZE: {
        if (!v || v->value_type != BSON_TYPE_ARRAY) return false;
        bson_iter_t it;
        int64_t count = 0;
        if (doc_iter(v, &it))
            while (bson_iter_next(&it)) count++;
        return count == n->u.size;
    }
    case N_BITS:
        return bits_single(n, v);
    case N_ELEM_OBJ:
    case N_ELEM_VAL:
        return elem_match_single(n, v, inner);
    default:
        return false; /* $or, $nor, $expr never apply to a lone value */
    }
}

static bool eval_leaf(const node_t *n, const root_t *r, mk_match_details_t *d)
{
    walk_t w = {n, n->kind != N_SIZE && n->kind != N_ELEM_OBJ && n->kind != N_ELEM_VAL, -1};
    const comp_t *c0 = &n->path.c[0];
    bool ok;
    if (!n->path.n)
        ok = false;
    else if (r->data)
        ok = walk_doc(&w, 0, r->data, r->len, -1);
    else if (strlen(r->name) == c0->len && memcmp(r->name, c0->s, c0->len) == 0)
        ok = walk_value(&w, 0, r->value, -1);
    else
        ok = yield(&w, NULL, -1);
    if (ok && d && w.pos >= 0) {
        d->has_position = true;
        d->position = (uint32_t)w.pos;
    }
    return ok;
}

static bool eval_expr(const node_t *n, const root_t *r, mctx_t *mc)
{
    bson_t tmp;
    const bson_t *doc = r->doc;
    bool built = false;
    if (!doc) {
        if (r->data) {
            if (!bson_init_static(&tmp, r->data, r->len)) return false;
        } else {
            bson_init(&tmp);
            built = true;
            if (!bson_append_value(&tmp, r->name, -1, r->value)) {
                bson_destroy(&tmp);
                return false;
            }
        }
        doc = &tmp;
    }
    bson_value_t out;
    mk_error_t local;
    int rc = mk_expr_eval(n->u.expr, doc, &out, mc->err ? mc->err : &local);
    if (built) bson_destroy(&tmp);
    if (rc != MK_OK) {
        mc->failed = true;
        return false;
    }
    bool t = mk_expr_truthy(&out);
    bson_value_destroy(&out);
    return t;
}

static bool eval(const node_t *n, const root_t *r, mk_match_details_t *d, mctx_t *mc)
{
    switch (n->kind) {
    case N_AND:
        for (uint32_t i = 0; i < n->nkids; i++)
            if (!eval(n->kids[i], r, d, mc)) return false;
        return true;
    case N_OR:
        /* positions are only reported through $and, as MongoDB does */
        for (uint32_t i = 0; i < n->nkids; i++)
            if (eval(n->kids[i], r, n->nkids == 1 ? d : NULL, mc)) return true;
        return false;
    case N_NOR:
        for (uint32_t i = 0; i < n->nkids; i++)
            if (eval(n->kids[i], r, NULL, mc)) return false;
        return true;
    case N_NOT:
        return !eval(n->kids[0], r, NULL, mc);
    case N_TRUE:
        return true;
    case N_FALSE:
        return false;
    case N_EXPR:
        return eval_expr(n, r, mc);
    default:
        return eval_leaf(n, r, d);
    }
}

static int match_root(const mk_matcher_t *m, const root_t *r, mk_match_details_t *details,
                      mk_error_t *err)
{
    mctx_t mc = {err, false};
    mk_match_details_t d = {false, 0};
    bool ok = eval(m->root, r, &d, &mc);
    if (mc.failed) return MK_ERR;
    if (details) *details = ok ? d : (mk_match_details_t){false, 0};
    return ok ? 1 : 0;
}

bool mk_matcher_match(const mk_matcher_t *m, const bson_t *doc, mk_match_details_t *details)
{
    return mk_matcher_match_checked(m, doc, details, NULL) == 1;
}

int mk_matcher_match_checked(const mk_matcher_t *m, const bson_t *doc, mk_match_details_t *details,
                             mk_error_t *err)
{
    root_t r = {bson_get_data(doc), doc->len, NULL, NULL, doc};
    int rc = match_root(m, &r, details, err);
    if (rc != 1 && details) *details = (mk_match_details_t){false, 0};
    return rc;
}

bool mk_matcher_match_value(const mk_matcher_t *m, const char *name, const bson_value_t *v)
{
    root_t r = {NULL, 0, name, v, NULL};
    return match_root(m, &r, NULL, NULL) == 1;
}
