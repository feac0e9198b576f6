/* Find projections (see projection.h).
 *
 * The spec is compiled into a tree with one node per path component. Applying it walks the
 * document's raw BSON once, appending straight into the output: included fields in document
 * order, then the computed fields of each level (literals, expressions, $elemMatch) in the
 * spec's order.
 * MongoDB applies $slice and the positional `.$` as a second pass over the projected document;
 * here they are fused into the same walk, which gives the same result because both only ever
 * rewrite the array found on their own path. */
#include "engine/projection.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/format.h"
#include "bson/value.h"
#include "engine/expr.h"

#define MAX_PATH_COMPONENTS 200 /* MongoDB's FieldPath limit */
#define MAX_DEPTH           200 /* recursion guard for specs and documents */

enum { TYPE_UNKNOWN = 0, TYPE_INCLUSION = 1, TYPE_EXCLUSION = -1 };

typedef enum node_kind {
    NODE_PATH,       /* interior node: the projection continues in its children */
    NODE_INCLUDE,    /* { a: 1 } */
    NODE_EXCLUDE,    /* { a: 0 } */
    NODE_SLICE,      /* { a: { $slice: ... } } */
    NODE_ELEM_MATCH, /* { a: { $elemMatch: ... } } (top level only) */
    NODE_POSITIONAL, /* { 'a.$': 1 }: included; the matched element once an array is reached */
    NODE_LITERAL,    /* { a: 'x' }: a computed field */
    NODE_EXPR,       /* { a: '$b' }, { a: { $add: [...] } }: a computed field */
} node_kind_t;

typedef struct node {
    char *name;
    uint32_t name_len;
    node_kind_t kind;
    struct node **children; /* in the spec's order, which orders computed fields */
    size_t nchildren, cap;
    bool has_computed;    /* the subtree computes fields (literals, expressions) */
    bool positional_path; /* an interior node on the way to the positional node */
    bool has_skip;        /* $slice: [skip, limit] rather than $slice: n */
    int32_t skip, limit;
    mk_matcher_t *matcher; /* $elemMatch: compiled { <name>: { $elemMatch: ... } } */
    bson_value_t literal;
    bool has_literal;
    mk_expr_t *expr;
} node_t;

struct mk_projection {
    node_t root;
    bool identity;
    bool inclusion;
    bool positional;
};

/* ---------- errors ---------- */

/* Codes without a name are reported as "Location<code>" (mk_error_setc does that). */
#define loc_error mk_error_setc

static int not_supported(mk_error_t *err, const char *what)
{
    return mk_error_setc(err, MK_CODE_BAD_VALUE, "projection expression %s is not supported yet",
                         what);
}

static int too_large(mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_BSON_OBJECT_TOO_LARGE,
                         "projection result exceeds the maximum BSON size");
}

/* ---------- tree ---------- */

static void node_free_contents(node_t *n)
{
    for (size_t i = 0; i < n->nchildren; i++) {
        node_free_contents(n->children[i]);
        free(n->children[i]);
    }
    free(n->children);
    free(n->name);
    if (n->matcher) mk_matcher_destroy(n->matcher);
    if (n->has_literal) bson_value_destroy(&n->literal);
    if (n->expr) mk_expr_destroy(n->expr);
}

static node_t *find_child(const node_t *n, const char *name, size_t len)
{
    for (size_t i = 0; i < n->nchildren; i++) {
        node_t *c = n->children[i];
        if (c->name_len == len && memcmp(c->name, name, len) == 0) return c;
    }
    return NULL;
}

static node_t *add_child(node_t *parent, const char *name, size_t len, node_kind_t kind,
                         mk_error_t *err)
{
    if (parent->nchildren == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        node_t **c = realloc(parent->children, cap * sizeof *c);
        if (!c) {
            mk_error_nomem(err);
            return NULL;
        }
        parent->children = c;
        parent->cap = cap;
    }
    node_t *n = calloc(1, sizeof *n);
    if (!n || !(n->name = malloc(len + 1))) {
        free(n);
        mk_error_nomem(err);
        return NULL;
    }
    memcpy(n->name, name, len);
    n->name[len] = '\0';
    n->name_len = (uint32_t)len;
    n->kind = kind;
    parent->children[parent->nchildren++] = n;
    return n;
}

static void remove_child(node_t *parent, node_t *child)
{
    for (size_t i = 0; i < parent->nchildren; i++) {
        if (parent->children[i] != child) continue;
        node_free_contents(child);
        free(child);
        memmove(&parent->children[i], &parent->children[i + 1],
                (parent->nchildren - i - 1) * sizeof *parent->children);
        parent->nchildren--;
        return;
    }
}

/* Adds a leaf of `kind` at the dotted `path` below `parent`, creating interior nodes; a path
 * that meets an existing leaf, or ends on an existing node, is a collision (as MongoDB). */
static node_t *add_leaf(node_t *parent, const char *path, size_t len, node_kind_t kind,
                        mk_error_t *err)
{
    const char *p = path, *end = path + len;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t clen = dot ? (size_t)(dot - p) : (size_t)(end - p);
        node_t *child = find_child(parent, p, clen);
        if (!dot) {
            if (child) {
                loc_error(err, 31250, "Path collision at %.*s", (int)len, path);
                return NULL;
            }
            return add_child(parent, p, clen, kind, err);
        }
        if (!child) {
            child = add_child(parent, p, clen, NODE_PATH, err);
            if (!child) return NULL;
        } else if (child->kind != NODE_PATH) {
            const char *tail = memchr(path, '.', len) + 1;
            loc_error(err, 31249, "Path collision at %.*s remaining portion %.*s", (int)len, path,
                      (int)(end - tail), tail);
            return NULL;
        }
        parent = child;
        p = dot + 1;
    }
}

/* The interior node at the dotted `path` (a nested projection document), created or reused. */
static node_t *get_path_node(node_t *parent, const char *path, size_t len, mk_error_t *err)
{
    const char *p = path, *end = path + len;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t clen = dot ? (size_t)(dot - p) : (size_t)(end - p);
        node_t *child = find_child(parent, p, clen);
        if (!child) {
            child = add_child(parent, p, clen, NODE_PATH, err);
            if (!child) return NULL;
        } else if (child->kind != NODE_PATH) {
            loc_error(err, 31250, "Path collision at %.*s", (int)len, path);
            return NULL;
        }
        if (!dot) return child;
        parent = child;
        p = dot + 1;
    }
}

/* ---------- spec parsing ---------- */

typedef struct parse_ctx {
    const bson_t *filter;
    int type;
    bool id_specified, id_included, id_excluded;
    bool has_positional, has_elem_match, has_slice;
    mk_error_t *err;
} parse_ctx_t;

/* FieldPath's rules for a dotted path written in a projection. */
static int check_field_path(const char *path, size_t len, mk_error_t *err)
{
    if (len == 0) return loc_error(err, 40352, "FieldPath cannot be constructed with empty string");
    if (path[len - 1] == '.') return loc_error(err, 40353, "FieldPath must not end with a '.'.");
    size_t ncomp = 0;
    const char *p = path, *end = path + len;
    for (;;) {
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
        if (++ncomp > MAX_PATH_COMPONENTS)
            return mk_error_setc(err, MK_CODE_OVERFLOW, "FieldPath is too long");
        if (!dot) return MK_OK;
        p = dot + 1;
    }
}

/* Where the first positional `.$` of a key is: "a.$.b" and "a.$" give [1, 4) and [1, 3);
 * the whole key "$" counts too. False when there is none. */
static bool find_positional(const char *key, size_t len, size_t *begin, size_t *end)
{
    for (size_t i = 0; i + 2 < len; i++) {
        if (key[i] == '.' && key[i + 1] == '$' && key[i + 2] == '.') {
            *begin = i;
            *end = i + 3;
            return true;
        }
    }
    if (len >= 2 && key[len - 2] == '.' && key[len - 1] == '$') {
        *begin = len - 2;
        *end = len;
        return true;
    }
    if (len == 1 && key[0] == '$') {
        *begin = 0;
        *end = 1;
        return true;
    }
    return false;
}

/* Whether the query names `field` as the first component of a path, looking through $and, $or
 * and $nor (MongoDB's check that a positional projection can be satisfied). */
static bool filter_mentions(const uint8_t *data, uint32_t len, const char *field, size_t flen,
                            int depth)
{
    bson_iter_t it;
    if (depth > MAX_DEPTH || !bson_iter_init_from_data(&it, data, len)) return false;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        size_t klen = bson_iter_key_len(&it);
        if (key[0] == '$') {
            bool logical = !strcmp(key, "$and") || !strcmp(key, "$or") || !strcmp(key, "$nor");
            if (!logical || !BSON_ITER_HOLDS_ARRAY(&it)) continue;
            bson_iter_t arr;
            if (!bson_iter_recurse(&it, &arr)) continue;
            while (bson_iter_next(&arr)) {
                if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) continue;
                uint32_t dlen;
                const uint8_t *d;
                bson_iter_document(&arr, &dlen, &d);
                if (filter_mentions(d, dlen, field, flen, depth + 1)) return true;
            }
            continue;
        }
        const char *dot = memchr(key, '.', klen);
        size_t plen = dot ? (size_t)(dot - key) : klen;
        if (plen == flen && memcmp(key, field, flen) == 0) return true;
    }
    return false;
}

/* MongoDB's aggregation expression operators, space-separated: { a: { $op: ... } } is an
 * expression rather than a nested projection, and knowing the names tells an operator that
 * engine/expr does not evaluate yet from one that does not exist. */
static const char expression_names[] =
    " $abs $acos $acosh $add $allElementsTrue $and $anyElementTrue $arrayElemAt "
    "$arrayToObject $asin $asinh $atan $atan2 $atanh $avg $binarySize $bitAnd $bitNot $bitOr "
    "$bitXor $bsonSize $ceil $cmp $concat $concatArrays $cond $convert $cos $cosh $dateAdd "
    "$dateDiff $dateFromParts $dateFromString $dateSubtract $dateToParts $dateToString "
    "$dateTrunc $dayOfMonth $dayOfWeek $dayOfYear $degreesToRadians $divide $eq $exp $filter "
    "$first $firstN $floor $function $getField $gt $gte $hour $ifNull $in $indexOfArray "
    "$indexOfBytes $indexOfCP $isArray $isNumber $isoDayOfWeek $isoWeek $isoWeekYear $last "
    "$lastN $let $literal $ln $log $log10 $lt $lte $ltrim $map $max $maxN $median "
    "$mergeObjects $meta $millisecond $min $minN $minute $mod $month $multiply $ne $not "
    "$objectToArray $or $percentile $pow $radiansToDegrees $rand $range $reduce $regexFind "
    "$regexFindAll $regexMatch $replaceAll $replaceOne $reverseArray $round $rtrim "
    "$sampleRate $second $setDifference $setEquals $setField $setIntersection $setIsSubset "
    "$setUnion $sin $sinh $size $slice $sortArray $split $sqrt $stdDevPop $stdDevSamp "
    "$strLenBytes $strLenCP $strcasecmp $substr $substrBytes $substrCP $subtract $sum "
    "$switch $tan $tanh $toBool $toDate $toDecimal $toDouble $toHashedIndexKey $toInt "
    "$toLong $toLower $toObjectId $toString $toUUID $toUpper $trim $trunc $tsIncrement "
    "$tsSecond $type $unsetField $week $year $zip ";

static bool is_expression_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || strchr(name, ' ')) return false;
    for (const char *p = strstr(expression_names, name); p; p = strstr(p + 1, name))
        if (p[-1] == ' ' && p[len] == ' ') return true;
    return false;
}

static int add_literal(parse_ctx_t *ctx, node_t *parent, const char *key, size_t klen,
                       const bson_value_t *v)
{
    node_t *n = add_leaf(parent, key, klen, NODE_LITERAL, ctx->err);
    if (!n) return MK_ERR;
    bson_value_copy(v, &n->literal);
    n->has_literal = true;
    return MK_OK;
}

/* A value is a plain literal unless MongoDB would read an expression into it: a string
 * starting with '$' (a field path or variable), or documents inside arrays (expression objects,
 * whose values may be expressions again). */
static bool needs_expr(const bson_value_t *v, int depth)
{
    if (v->value_type == BSON_TYPE_UTF8)
        return v->value.v_utf8.len > 0 && v->value.v_utf8.str[0] == '$';
    if (v->value_type == BSON_TYPE_DOCUMENT) return depth > 0;
    if (v->value_type != BSON_TYPE_ARRAY) return false;
    bson_iter_t it;
    if (depth > MAX_DEPTH ||
        !bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
        return true; /* let the expression compiler report it */
    while (bson_iter_next(&it))
        if (needs_expr(bson_iter_value(&it), depth + 1)) return true;
    return false;
}

/* Compiles an expression into a computed field. An operator MongoDB knows but engine/expr does
 * not evaluate yet is reported as not supported rather than as unknown. */
static int add_expr(parse_ctx_t *ctx, node_t *parent, const char *key, size_t klen,
                    const bson_value_t *v)
{
    mk_expr_t *e = mk_expr_compile(v, ctx->err);
    if (!e) {
        mk_error_t *err = ctx->err;
        const char *q = err ? strchr(err->message, '\'') : NULL;
        const char *q2 = q ? strchr(q + 1, '\'') : NULL;
        if (q2 && err->code == 168 && (size_t)(q2 - q) < 64) {
            char op[64];
            snprintf(op, sizeof op, "%.*s", (int)(q2 - q - 1), q + 1);
            if (is_expression_name(op)) return not_supported(err, op);
        }
        return MK_ERR;
    }
    node_t *n = add_leaf(parent, key, klen, NODE_EXPR, ctx->err);
    if (!n) {
        mk_expr_destroy(e);
        return MK_ERR;
    }
    n->expr = e;
    return MK_OK;
}

static int parse_object(parse_ctx_t *ctx, bson_iter_t *it, node_t *parent, const char *path,
                        size_t path_len, int depth);

/* A number as an int32, truncated toward zero and clamped (NaN is 0). */
static int32_t clamp_i32(const bson_value_t *v)
{
    long double d;
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return v->value.v_int32;
    case BSON_TYPE_INT64:
        return v->value.v_int64 > INT32_MAX   ? INT32_MAX
               : v->value.v_int64 < INT32_MIN ? INT32_MIN
                                              : (int32_t)v->value.v_int64;
    case BSON_TYPE_DOUBLE:
        d = v->value.v_double;
        break;
    default:
        d = mk_decimal_to_ld(&v->value.v_decimal128);
    }
    if (d != d) return 0;
    if (d >= 2147483647.0L) return INT32_MAX;
    if (d <= -2147483648.0L) return INT32_MIN;
    return (int32_t)d;
}

static int parse_slice(parse_ctx_t *ctx, node_t *parent, const char *key, size_t klen,
                       bson_iter_t *arg)
{
    mk_error_t *err = ctx->err;
    int32_t skip = 0, limit;
    bool has_skip = false;
    if (mk_type_is_number(bson_iter_type(arg))) {
        limit = clamp_i32(bson_iter_value(arg));
    } else if (BSON_ITER_HOLDS_ARRAY(arg)) {
        bson_iter_t a, s, l;
        if (!bson_iter_recurse(arg, &a) || !bson_iter_next(&a))
            return loc_error(err, 31272, "$slice array argument should be of form [skip, limit]");
        s = a;
        if (!bson_iter_next(&a) || (l = a, bson_iter_next(&a)))
            return loc_error(err, 31272, "$slice array argument should be of form [skip, limit]");
        if (!mk_type_is_number(bson_iter_type(&s)) || !mk_type_is_number(bson_iter_type(&l))) {
            /* MongoDB then reads it as the aggregation $slice expression */
            return not_supported(err, "$slice (aggregation form)");
        }
        skip = clamp_i32(bson_iter_value(&s));
        limit = clamp_i32(bson_iter_value(&l));
        if (limit <= 0)
            return loc_error(err, 31259, "$slice limit must be positive, got %d", limit);
        has_skip = true;
    } else {
        return loc_error(err, 31273, "$slice only supports numbers and [skip, limit] arrays");
    }
    node_t *n = add_leaf(parent, key, klen, NODE_SLICE, err);
    if (!n) return MK_ERR;
    n->has_skip = has_skip;
    n->skip = skip;
    n->limit = limit;
    ctx->has_slice = true;
    return MK_OK;
}

static int parse_elem_match(parse_ctx_t *ctx, node_t *parent, bool at_root, const char *key,
                            size_t klen, bson_iter_t *arg)
{
    mk_error_t *err = ctx->err;
    if (!BSON_ITER_HOLDS_DOCUMENT(arg))
        return loc_error(err, 31274, "elemMatch: Invalid argument, object required, but got %s",
                         mk_type_name(bson_iter_type(arg)));
    if (ctx->has_positional)
        return loc_error(err, 31255, "Cannot specify positional operator and $elemMatch.");
    if (!at_root || memchr(key, '.', klen))
        return loc_error(err, 31275, "Cannot use $elemMatch projection on a nested field.");
    uint32_t alen;
    const uint8_t *adata;
    bson_iter_document(arg, &alen, &adata);
    bson_t argdoc, filter, sub;
    if (!bson_init_static(&argdoc, adata, alen))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in projection");
    bson_init(&filter);
    bson_append_document_begin(&filter, key, (int)klen, &sub);
    bson_append_document(&sub, "$elemMatch", -1, &argdoc);
    bson_append_document_end(&filter, &sub);
    mk_matcher_t *m = mk_matcher_compile(&filter, err);
    bson_destroy(&filter);
    if (!m) return MK_ERR;
    node_t *n = add_leaf(parent, key, klen, NODE_ELEM_MATCH, err);
    if (!n) {
        mk_matcher_destroy(m);
        return MK_ERR;
    }
    n->matcher = m;
    ctx->has_elem_match = true;
    return MK_OK;
}

/* { key: { ... } }: an operator or expression when its only key starts with '$', otherwise a
 * nested projection. */
static int parse_sub_object(parse_ctx_t *ctx, bson_iter_t *it, node_t *parent, const char *path,
                            size_t path_len, int depth)
{
    mk_error_t *err = ctx->err;
    const char *key = bson_iter_key(it);
    size_t klen = bson_iter_key_len(it);
    if (check_field_path(key, klen, err) != MK_OK) return MK_ERR;
    bson_iter_t sub;
    if (!bson_iter_recurse(it, &sub))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in projection");
    bson_iter_t first = sub;
    size_t nfields = 0;
    for (bson_iter_t c = sub; bson_iter_next(&c);) nfields++;

    if (nfields == 1 && bson_iter_next(&first) && bson_iter_key(&first)[0] == '$') {
        const char *op = bson_iter_key(&first);
        if (!strcmp(op, "$slice")) return parse_slice(ctx, parent, key, klen, &first);
        if (!strcmp(op, "$elemMatch"))
            return parse_elem_match(ctx, parent, path == NULL, key, klen, &first);
        if (is_expression_name(op)) {
            bool meta = !strcmp(op, "$meta");
            if (ctx->type == TYPE_EXCLUSION && !meta)
                return loc_error(err, 31252,
                                 "Cannot use expression other than $meta in exclusion projection");
            if (meta) return not_supported(err, op);
            ctx->type = TYPE_INCLUSION;
            if (!strcmp(op, "$literal"))
                return add_literal(ctx, parent, key, klen, bson_iter_value(&first));
            return add_expr(ctx, parent, key, klen, bson_iter_value(it));
        }
        if (check_field_path(op, strlen(op), NULL) != MK_OK)
            return loc_error(err, 31325, "Unknown expression %s", op);
    }
    char *full = malloc(path_len + klen + 2);
    if (!full) return mk_error_nomem(err);
    size_t full_len = 0;
    if (path) {
        memcpy(full, path, path_len);
        full[path_len] = '.';
        full_len = path_len + 1;
    }
    memcpy(full + full_len, key, klen);
    full_len += klen;
    full[full_len] = '\0';
    int rc = MK_ERR;
    if (nfields == 0) {
        loc_error(err, 51270,
                  "An empty sub-projection is not a valid value. Found empty object "
                  "at path %s",
                  full);
    } else if (depth >= MAX_DEPTH) {
        mk_error_setc(err, MK_CODE_OVERFLOW, "projection is nested too deeply");
    } else {
        node_t *n = get_path_node(parent, key, klen, err);
        if (n) rc = parse_object(ctx, &sub, n, full, full_len, depth + 1);
    }
    free(full);
    return rc;
}

static int parse_inclusion(parse_ctx_t *ctx, bson_iter_t *it, node_t *parent, const char *path,
                           size_t path_len)
{
    mk_error_t *err = ctx->err;
    const char *key = bson_iter_key(it);
    size_t klen = bson_iter_key_len(it);
    bool top_id = path == NULL && !strcmp(key, "_id");
    size_t pbegin, pend;
    if (!find_positional(key, klen, &pbegin, &pend)) {
        if (check_field_path(key, klen, err) != MK_OK) return MK_ERR;
        if (!add_leaf(parent, key, klen, NODE_INCLUDE, err)) return MK_ERR;
        if (top_id) ctx->id_included = true;
    } else {
        if (ctx->has_positional)
            return loc_error(err, 31276,
                             "Cannot specify more than one positional projection per query.");
        if (ctx->has_elem_match)
            return loc_error(err, 31256, "Cannot specify positional operator and $elemMatch.");
        const char *mf = path ? path : key;
        size_t mlen = path ? path_len : klen;
        const char *dot = memchr(mf, '.', mlen);
        if (dot) mlen = (size_t)(dot - mf);
        if (!ctx->filter)
            return loc_error(err, 51050,
                             "Projections with a positional operator require a matcher");
        if (!filter_mentions(bson_get_data(ctx->filter), ctx->filter->len, mf, mlen, 0))
            return loc_error(err, 31277,
                             "Positional projection '%s' does not match the query document.", key);
        if (klen >= 3 && !memcmp(key + klen - 3, ".$.", 3))
            return loc_error(err, 31270, "Path cannot end with '.$.'");
        size_t b2, e2;
        const char *rest = key + pend;
        size_t rlen = klen - pend;
        if (find_positional(rest, rlen, &b2, &e2))
            return loc_error(err, 31287, "Cannot use positional operator twice: %s", key);
        if (check_field_path(key, pbegin, err) != MK_OK) return MK_ERR;
        if (!add_leaf(parent, key, pbegin, NODE_POSITIONAL, err)) return MK_ERR;
        ctx->has_positional = true;
    }
    if (!top_id) {
        if (ctx->type == TYPE_EXCLUSION)
            return loc_error(err, 31253, "Cannot do inclusion on field %s in exclusion projection",
                             key);
        ctx->type = TYPE_INCLUSION;
    }
    return MK_OK;
}

static int parse_exclusion(parse_ctx_t *ctx, bson_iter_t *it, node_t *parent, const char *path)
{
    mk_error_t *err = ctx->err;
    const char *key = bson_iter_key(it);
    size_t klen = bson_iter_key_len(it);
    if (check_field_path(key, klen, err) != MK_OK) return MK_ERR;
    if (!add_leaf(parent, key, klen, NODE_EXCLUDE, err)) return MK_ERR;
    if (path == NULL && !strcmp(key, "_id")) {
        ctx->id_excluded = true;
        return MK_OK;
    }
    if (ctx->type == TYPE_INCLUSION)
        return loc_error(err, 31254, "Cannot do exclusion on field %s in inclusion projection",
                         key);
    ctx->type = TYPE_EXCLUSION;
    return MK_OK;
}

static int parse_literal(parse_ctx_t *ctx, bson_iter_t *it, node_t *parent)
{
    mk_error_t *err = ctx->err;
    const char *key = bson_iter_key(it);
    size_t klen = bson_iter_key_len(it);
    const bson_value_t *v = bson_iter_value(it);
    if (check_field_path(key, klen, err) != MK_OK) return MK_ERR;
    int rc = needs_expr(v, 0) ? add_expr(ctx, parent, key, klen, v)
                              : add_literal(ctx, parent, key, klen, v);
    if (rc != MK_OK) return MK_ERR;
    if (ctx->type == TYPE_EXCLUSION) {
        bson_string_t *s = bson_string_new(NULL);
        mk_format_value(s, v);
        loc_error(err, 31310, "Cannot use an expression %s: %s in an exclusion projection", key,
                  s->str);
        bson_string_free(s, true);
        return MK_ERR;
    }
    ctx->type = TYPE_INCLUSION;
    return MK_OK;
}

static int parse_element(parse_ctx_t *ctx, bson_iter_t *it, node_t *parent, const char *path,
                         size_t path_len, int depth)
{
    const char *key = bson_iter_key(it);
    size_t klen = bson_iter_key_len(it);
    size_t pb, pe;
    bool positional = find_positional(key, klen, &pb, &pe);
    bson_type_t t = bson_iter_type(it);
    if (t == BSON_TYPE_DOCUMENT) {
        if (positional)
            return loc_error(ctx->err, 31271,
                             "positional projection cannot be used with an expression or sub "
                             "object");
        return parse_sub_object(ctx, it, parent, path, path_len, depth);
    }
    if (t == BSON_TYPE_BOOL || mk_type_is_number(t)) {
        if (mk_value_truthy(bson_iter_value((bson_iter_t *)it)))
            return parse_inclusion(ctx, it, parent, path, path_len);
        return parse_exclusion(ctx, it, parent, path);
    }
    if (positional)
        return loc_error(ctx->err, 31308, "positional projection cannot be used with a literal");
    return parse_literal(ctx, it, parent);
}

static int parse_object(parse_ctx_t *ctx, bson_iter_t *it, node_t *parent, const char *path,
                        size_t path_len, int depth)
{
    while (bson_iter_next(it)) {
        if (!path) {
            const char *key = bson_iter_key(it);
            if (!strcmp(key, "_id") || !strncmp(key, "_id.", 4)) ctx->id_specified = true;
        }
        if (parse_element(ctx, it, parent, path, path_len, depth) != MK_OK) return MK_ERR;
    }
    return MK_OK;
}

/* Marks interior nodes whose subtree holds literals, or the positional node. */
static void mark_nodes(node_t *n)
{
    for (size_t i = 0; i < n->nchildren; i++) {
        node_t *c = n->children[i];
        if (c->kind == NODE_PATH) {
            mark_nodes(c);
            if (c->has_computed) n->has_computed = true;
            if (c->positional_path) n->positional_path = true;
        } else if (c->kind == NODE_LITERAL || c->kind == NODE_EXPR) {
            n->has_computed = true;
        } else if (c->kind == NODE_POSITIONAL) {
            n->positional_path = true;
        }
    }
}

mk_projection_t *mk_projection_compile(const bson_t *spec, const bson_t *filter, mk_error_t *err)
{
    mk_projection_t *p = calloc(1, sizeof *p);
    if (!p) {
        mk_error_nomem(err);
        return NULL;
    }
    p->root.kind = NODE_PATH;
    if (!spec || bson_empty(spec)) {
        p->identity = true;
        return p;
    }
    parse_ctx_t ctx = {.filter = filter, .err = err};
    bson_iter_t it;
    if (!bson_iter_init(&it, spec)) {
        mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in projection");
        goto fail;
    }
    if (parse_object(&ctx, &it, &p->root, NULL, 0, 0) != MK_OK) goto fail;

    /* MongoDB's rules for projections that named neither an inclusion nor an exclusion */
    if (ctx.type == TYPE_UNKNOWN) {
        if (ctx.has_slice)
            ctx.type = ctx.id_included ? TYPE_INCLUSION : TYPE_EXCLUSION;
        else if (ctx.has_elem_match || ctx.id_included)
            ctx.type = TYPE_INCLUSION;
        else
            ctx.type = TYPE_EXCLUSION;
    }
    p->inclusion = ctx.type == TYPE_INCLUSION;
    p->positional = ctx.has_positional;
    if (p->inclusion && !ctx.id_specified) {
        if (!add_child(&p->root, "_id", 3, NODE_INCLUDE, err)) goto fail;
    }
    if (!p->inclusion && ctx.id_included) {
        node_t *id = find_child(&p->root, "_id", 3);
        if (id) remove_child(&p->root, id);
    }
    mark_nodes(&p->root);
    if (!p->inclusion && p->root.nchildren == 0) p->identity = true;
    return p;
fail:
    mk_projection_destroy(p);
    return NULL;
}

void mk_projection_destroy(mk_projection_t *p)
{
    if (!p) return;
    node_free_contents(&p->root);
    free(p);
}

bool mk_projection_is_identity(const mk_projection_t *p)
{
    return p->identity;
}

bool mk_projection_is_inclusion(const mk_projection_t *p)
{
    return !p->identity && p->inclusion;
}

bool mk_projection_needs_details(const mk_projection_t *p)
{
    return p->positional;
}

/* ---------- applying ---------- */

enum {
    F_IN_ARRAY = 1,     /* an array was crossed: the positional operator no longer applies */
    F_NESTED_ARRAY = 2, /* inside an array of arrays: $slice no longer applies */
};

typedef struct apply_ctx {
    const bson_t *doc;
    const mk_match_details_t *details;
    mk_error_t *err;
} apply_ctx_t;

#define APPEND_OR_FAIL(call)                                                                       \
    do {                                                                                           \
        if (!(call)) return too_large(ctx->err);                                                   \
    } while (0)

static int depth_error(mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_OVERFLOW, "document is nested too deeply to project");
}

static int invalid_bson(mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON document");
}

/* An iteration that stopped on corrupt bytes rather than at the end of its level. */
static int level_end(const bson_iter_t *it, mk_error_t *err)
{
    if (it->err_off)
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON document at offset %u",
                             (unsigned)it->err_off);
    return MK_OK;
}

/* Appends the elements [start, start + count) of the array at `it` as a new array. */
static int append_slice(apply_ctx_t *ctx, const node_t *n, bson_iter_t *it, bson_t *out)
{
    bson_iter_t arr;
    if (!bson_iter_recurse(it, &arr)) return invalid_bson(ctx->err);
    int64_t len = 0;
    for (bson_iter_t c = arr; bson_iter_next(&c);) len++;
    int64_t start = 0, count;
    if (!n->has_skip) {
        if (n->limit < 0) {
            start = len + n->limit > 0 ? len + n->limit : 0;
            count = len - start;
        } else {
            count = n->limit < len ? n->limit : len;
        }
    } else {
        if (n->skip < 0)
            start = len + n->skip > 0 ? len + n->skip : 0;
        else
            start = n->skip < len ? n->skip : len;
        count = len - start < n->limit ? len - start : n->limit;
    }
    bson_t child;
    APPEND_OR_FAIL(
        bson_append_array_begin(out, bson_iter_key(it), (int)bson_iter_key_len(it), &child));
    int64_t i = 0;
    uint32_t out_idx = 0;
    while (bson_iter_next(&arr) && i < start + count) {
        if (i++ < start) continue;
        char buf[16];
        const char *k;
        size_t kl = bson_uint32_to_string(out_idx++, &k, buf, sizeof buf);
        if (!bson_append_iter(&child, k, (int)kl, &arr)) {
            bson_append_array_end(out, &child);
            return too_large(ctx->err);
        }
    }
    APPEND_OR_FAIL(bson_append_array_end(out, &child));
    return MK_OK;
}

/* Positions `el` on element `pos` of the array at `it`. */
static bool array_element(bson_iter_t *it, uint32_t pos, bson_iter_t *el)
{
    if (!bson_iter_recurse(it, el)) return false;
    uint32_t i = 0;
    while (bson_iter_next(el))
        if (i++ == pos) return true;
    return false;
}

static int incl_doc(apply_ctx_t *ctx, const node_t *n, bson_iter_t *it, bson_t *out, int flags,
                    int depth);
static int incl_array(apply_ctx_t *ctx, const node_t *n, bson_iter_t *arr, bson_t *out, int flags,
                      int depth);

/* Projects one element of an array with node `n` as key `key`; false in *kept when an
 * inclusion drops it (a scalar with nothing computed below). */
static int incl_element(apply_ctx_t *ctx, const node_t *n, bson_iter_t *el, const char *key,
                        int klen, bson_t *out, int flags, int depth, bool *kept)
{
    bson_t child;
    bson_iter_t sub;
    int rc;
    *kept = true;
    switch (bson_iter_type(el)) {
    case BSON_TYPE_DOCUMENT:
        if (!bson_iter_recurse(el, &sub)) return invalid_bson(ctx->err);
        APPEND_OR_FAIL(bson_append_document_begin(out, key, klen, &child));
        rc = incl_doc(ctx, n, &sub, &child, flags | F_IN_ARRAY, depth + 1);
        if (!bson_append_document_end(out, &child) && rc == MK_OK) rc = too_large(ctx->err);
        return rc;
    case BSON_TYPE_ARRAY:
        if (!bson_iter_recurse(el, &sub)) return invalid_bson(ctx->err);
        APPEND_OR_FAIL(bson_append_array_begin(out, key, klen, &child));
        rc = incl_array(ctx, n, &sub, &child, flags | F_IN_ARRAY | F_NESTED_ARRAY, depth + 1);
        if (!bson_append_array_end(out, &child) && rc == MK_OK) rc = too_large(ctx->err);
        return rc;
    default:
        if (!n->has_computed) {
            *kept = false;
            return MK_OK;
        }
        /* a scalar gives way to a document of the computed fields, as in MongoDB */
        APPEND_OR_FAIL(bson_append_document_begin(out, key, klen, &child));
        rc = incl_doc(ctx, n, NULL, &child, flags | F_IN_ARRAY, depth + 1);
        if (!bson_append_document_end(out, &child) && rc == MK_OK) rc = too_large(ctx->err);
        return rc;
    }
}

static int incl_array(apply_ctx_t *ctx, const node_t *n, bson_iter_t *arr, bson_t *out, int flags,
                      int depth)
{
    if (depth > MAX_DEPTH) return depth_error(ctx->err);
    uint32_t idx = 0;
    while (bson_iter_next(arr)) {
        char buf[16];
        const char *k;
        size_t kl = bson_uint32_to_string(idx, &k, buf, sizeof buf);
        bool kept;
        if (incl_element(ctx, n, arr, k, (int)kl, out, flags, depth, &kept) != MK_OK) return MK_ERR;
        if (kept) idx++;
    }
    return level_end(arr, ctx->err);
}

/* The array at `it` on the positional path, replaced by the element the query matched (as
 * projected by `n` when it is an interior node). */
static int apply_positional(apply_ctx_t *ctx, const node_t *n, bson_iter_t *it, bson_t *out,
                            int flags, int depth)
{
    if (!ctx->details || !ctx->details->has_position)
        return loc_error(ctx->err, 51246,
                         "positional operator '.$' couldn't find a matching element in the array");
    bson_iter_t el;
    if (!array_element(it, ctx->details->position, &el))
        return loc_error(ctx->err, 51247, "positional operator '.$' element mismatch");
    bson_t child;
    APPEND_OR_FAIL(
        bson_append_array_begin(out, bson_iter_key(it), (int)bson_iter_key_len(it), &child));
    int rc = MK_OK;
    if (n->kind == NODE_POSITIONAL) {
        if (!bson_append_iter(&child, "0", 1, &el)) rc = too_large(ctx->err);
    } else {
        bool kept;
        rc = incl_element(ctx, n, &el, "0", 1, &child, flags, depth, &kept);
        if (rc == MK_OK && !kept)
            rc = loc_error(ctx->err, 51247, "positional operator '.$' element mismatch");
    }
    if (!bson_append_array_end(out, &child) && rc == MK_OK) rc = too_large(ctx->err);
    return rc;
}

/* The first element matching the $elemMatch, as a one-element array; nothing when none. */
static int append_elem_match(apply_ctx_t *ctx, const node_t *n, bson_t *out)
{
    mk_match_details_t d = {0};
    if (!mk_matcher_match(n->matcher, ctx->doc, &d)) return MK_OK;
    bson_iter_t it, el;
    if (!bson_iter_init_find_w_len(&it, ctx->doc, n->name, (int)n->name_len) ||
        !BSON_ITER_HOLDS_ARRAY(&it))
        return MK_OK;
    if (!d.has_position || !array_element(&it, d.position, &el))
        return mk_error_setc(ctx->err, MK_CODE_INTERNAL,
                             "$elemMatch projection: the matcher reported no matching position");
    bson_t child;
    APPEND_OR_FAIL(bson_append_array_begin(out, n->name, (int)n->name_len, &child));
    bool ok = bson_append_iter(&child, "0", 1, &el);
    if (!bson_append_array_end(out, &child) || !ok) return too_large(ctx->err);
    return MK_OK;
}

/* An expression's value (evaluated against the whole document); nothing when missing. */
static int append_expr(apply_ctx_t *ctx, const node_t *n, bson_t *out)
{
    bson_value_t v;
    if (mk_expr_eval(n->expr, ctx->doc, &v, ctx->err) != MK_OK) return MK_ERR;
    bool ok =
        v.value_type == BSON_TYPE_EOD || bson_append_value(out, n->name, (int)n->name_len, &v);
    bson_value_destroy(&v);
    return ok ? MK_OK : too_large(ctx->err);
}

/* Whether the level iterated from `start` holds `name` as a document or an array, i.e. whether
 * the first pass already wrote it. */
static bool written_in_place(const bson_iter_t *start, const node_t *c)
{
    if (!start) return false;
    bson_iter_t it = *start;
    while (bson_iter_next(&it)) {
        if (bson_iter_key_len(&it) == c->name_len &&
            !memcmp(bson_iter_key(&it), c->name, c->name_len))
            return BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it);
    }
    return false;
}

static int incl_field(apply_ctx_t *ctx, const node_t *c, bson_iter_t *it, bson_t *out, int flags,
                      int depth)
{
    bson_type_t t = bson_iter_type(it);
    bson_t child;
    bson_iter_t sub;
    int rc;
    switch (c->kind) {
    case NODE_INCLUDE:
        APPEND_OR_FAIL(bson_append_iter(out, NULL, 0, it));
        return MK_OK;
    case NODE_POSITIONAL:
        if (t == BSON_TYPE_ARRAY && !(flags & F_IN_ARRAY))
            return apply_positional(ctx, c, it, out, flags, depth);
        APPEND_OR_FAIL(bson_append_iter(out, NULL, 0, it));
        return MK_OK;
    case NODE_SLICE:
        if (t == BSON_TYPE_ARRAY && !(flags & F_NESTED_ARRAY)) return append_slice(ctx, c, it, out);
        APPEND_OR_FAIL(bson_append_iter(out, NULL, 0, it));
        return MK_OK;
    case NODE_PATH:
        if (t == BSON_TYPE_DOCUMENT) {
            if (!bson_iter_recurse(it, &sub)) return invalid_bson(ctx->err);
            APPEND_OR_FAIL(bson_append_document_begin(out, bson_iter_key(it),
                                                      (int)bson_iter_key_len(it), &child));
            rc = incl_doc(ctx, c, &sub, &child, flags, depth + 1);
            if (!bson_append_document_end(out, &child) && rc == MK_OK) rc = too_large(ctx->err);
            return rc;
        }
        if (t == BSON_TYPE_ARRAY) {
            if (c->positional_path && !(flags & F_IN_ARRAY))
                return apply_positional(ctx, c, it, out, flags, depth);
            if (!bson_iter_recurse(it, &sub)) return invalid_bson(ctx->err);
            APPEND_OR_FAIL(bson_append_array_begin(out, bson_iter_key(it),
                                                   (int)bson_iter_key_len(it), &child));
            rc = incl_array(ctx, c, &sub, &child, flags | F_IN_ARRAY, depth + 1);
            if (!bson_append_array_end(out, &child) && rc == MK_OK) rc = too_large(ctx->err);
            return rc;
        }
        return MK_OK; /* a scalar has no sub-fields to include */
    default:
        return MK_OK; /* exclusions of _id, computed fields (written after) */
    }
}

/* Inclusion: the fields of the level iterated by `it` (NULL: an absent level) that `n` names,
 * in document order, then `n`'s computed fields in the spec's order. */
static int incl_doc(apply_ctx_t *ctx, const node_t *n, bson_iter_t *it, bson_t *out, int flags,
                    int depth)
{
    if (depth > MAX_DEPTH) return depth_error(ctx->err);
    bson_iter_t start;
    memset(&start, 0, sizeof start);
    if (it) {
        start = *it;
        while (bson_iter_next(it)) {
            const node_t *c = find_child(n, bson_iter_key(it), bson_iter_key_len(it));
            if (c && incl_field(ctx, c, it, out, flags, depth) != MK_OK) return MK_ERR;
        }
        if (level_end(it, ctx->err) != MK_OK) return MK_ERR;
    }
    for (size_t i = 0; i < n->nchildren; i++) {
        const node_t *c = n->children[i];
        if (c->kind == NODE_LITERAL) {
            APPEND_OR_FAIL(bson_append_value(out, c->name, (int)c->name_len, &c->literal));
        } else if (c->kind == NODE_EXPR) {
            if (append_expr(ctx, c, out) != MK_OK) return MK_ERR;
        } else if (c->kind == NODE_ELEM_MATCH) {
            if (append_elem_match(ctx, c, out) != MK_OK) return MK_ERR;
        } else if (c->kind == NODE_PATH && c->has_computed &&
                   !written_in_place(it ? &start : NULL, c)) {
            bson_t child;
            APPEND_OR_FAIL(bson_append_document_begin(out, c->name, (int)c->name_len, &child));
            int rc = incl_doc(ctx, c, NULL, &child, flags, depth + 1);
            if (!bson_append_document_end(out, &child) && rc == MK_OK) rc = too_large(ctx->err);
            if (rc != MK_OK) return rc;
        }
    }
    return MK_OK;
}

static int excl_doc(apply_ctx_t *ctx, const node_t *n, bson_iter_t *it, bson_t *out, int flags,
                    int depth);

/* Exclusion inside an array: documents lose the excluded fields, arrays recurse, scalars stay. */
static int excl_array(apply_ctx_t *ctx, const node_t *n, bson_iter_t *arr, bson_t *out, int flags,
                      int depth)
{
    if (depth > MAX_DEPTH) return depth_error(ctx->err);
    uint32_t idx = 0;
    while (bson_iter_next(arr)) {
        char buf[16];
        const char *k;
        int kl = (int)bson_uint32_to_string(idx++, &k, buf, sizeof buf);
        bson_t child;
        bson_iter_t sub;
        int rc;
        switch (bson_iter_type(arr)) {
        case BSON_TYPE_DOCUMENT:
            if (!bson_iter_recurse(arr, &sub)) return invalid_bson(ctx->err);
            APPEND_OR_FAIL(bson_append_document_begin(out, k, kl, &child));
            rc = excl_doc(ctx, n, &sub, &child, flags | F_IN_ARRAY, depth + 1);
            if (!bson_append_document_end(out, &child) && rc == MK_OK) rc = too_large(ctx->err);
            break;
        case BSON_TYPE_ARRAY:
            if (!bson_iter_recurse(arr, &sub)) return invalid_bson(ctx->err);
            APPEND_OR_FAIL(bson_append_array_begin(out, k, kl, &child));
            rc = excl_array(ctx, n, &sub, &child, flags | F_IN_ARRAY | F_NESTED_ARRAY, depth + 1);
            if (!bson_append_array_end(out, &child) && rc == MK_OK) rc = too_large(ctx->err);
            break;
        default:
            rc = bson_append_iter(out, k, kl, arr) ? MK_OK : too_large(ctx->err);
        }
        if (rc != MK_OK) return rc;
    }
    return level_end(arr, ctx->err);
}

/* Exclusion: every field of the level but the excluded ones; $slice and $elemMatch rewrite
 * their field in place. */
static int excl_doc(apply_ctx_t *ctx, const node_t *n, bson_iter_t *it, bson_t *out, int flags,
                    int depth)
{
    if (depth > MAX_DEPTH) return depth_error(ctx->err);
    while (bson_iter_next(it)) {
        const node_t *c = find_child(n, bson_iter_key(it), bson_iter_key_len(it));
        bson_type_t t = bson_iter_type(it);
        bson_t child;
        bson_iter_t sub;
        int rc = MK_OK;
        if (!c) {
            APPEND_OR_FAIL(bson_append_iter(out, NULL, 0, it));
            continue;
        }
        switch (c->kind) {
        case NODE_EXCLUDE:
            break;
        case NODE_SLICE:
            if (t == BSON_TYPE_ARRAY && !(flags & F_NESTED_ARRAY))
                rc = append_slice(ctx, c, it, out);
            else
                rc = bson_append_iter(out, NULL, 0, it) ? MK_OK : too_large(ctx->err);
            break;
        case NODE_ELEM_MATCH:
            rc = append_elem_match(ctx, c, out);
            break;
        case NODE_PATH:
            if (t == BSON_TYPE_DOCUMENT || t == BSON_TYPE_ARRAY) {
                const char *k = bson_iter_key(it);
                int kl = (int)bson_iter_key_len(it);
                if (!bson_iter_recurse(it, &sub)) return invalid_bson(ctx->err);
                bool doc = t == BSON_TYPE_DOCUMENT;
                APPEND_OR_FAIL(doc ? bson_append_document_begin(out, k, kl, &child)
                                   : bson_append_array_begin(out, k, kl, &child));
                rc = doc ? excl_doc(ctx, c, &sub, &child, flags, depth + 1)
                         : excl_array(ctx, c, &sub, &child, flags | F_IN_ARRAY, depth + 1);
                bool ok = doc ? bson_append_document_end(out, &child)
                              : bson_append_array_end(out, &child);
                if (!ok && rc == MK_OK) rc = too_large(ctx->err);
                break;
            }
            rc = bson_append_iter(out, NULL, 0, it) ? MK_OK : too_large(ctx->err);
            break;
        default: /* inclusion nodes do not occur in an exclusion projection */
            rc = bson_append_iter(out, NULL, 0, it) ? MK_OK : too_large(ctx->err);
        }
        if (rc != MK_OK) return rc;
    }
    return level_end(it, ctx->err);
}

int mk_projection_apply(const mk_projection_t *p, const bson_t *doc,
                        const mk_match_details_t *details, bson_t *out, mk_error_t *err)
{
    if (p->identity) {
        if (!bson_concat(out, doc)) return too_large(err);
        return MK_OK;
    }
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON document");
    apply_ctx_t ctx = {.doc = doc, .details = details, .err = err};
    int rc = p->inclusion ? incl_doc(&ctx, &p->root, &it, out, 0, 0)
                          : excl_doc(&ctx, &p->root, &it, out, 0, 0);
    if (rc != MK_OK) bson_reinit(out);
    return rc;
}
