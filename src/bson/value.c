/* MongoDB's total order over BSON values (see value.h). */
#include "bson/value.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int mk_type_rank(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_MINKEY:
        return 1;
    case BSON_TYPE_UNDEFINED:
        return 2;
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
        return 3;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128:
        return 4;
    case BSON_TYPE_SYMBOL:
    case BSON_TYPE_UTF8:
        return 5;
    case BSON_TYPE_DOCUMENT:
        return 6;
    case BSON_TYPE_ARRAY:
        return 7;
    case BSON_TYPE_BINARY:
        return 8;
    case BSON_TYPE_OID:
        return 9;
    case BSON_TYPE_BOOL:
        return 10;
    case BSON_TYPE_DATE_TIME:
        return 11;
    case BSON_TYPE_TIMESTAMP:
        return 12;
    case BSON_TYPE_REGEX:
        return 13;
    case BSON_TYPE_DBPOINTER:
        return 14;
    case BSON_TYPE_CODE:
        return 15;
    case BSON_TYPE_CODEWSCOPE:
        return 16;
    case BSON_TYPE_MAXKEY:
        return 17;
    }
    return 0;
}

bool mk_value_truthy(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        return false;
    case BSON_TYPE_BOOL:
        return v->value.v_bool;
    case BSON_TYPE_INT32:
        return v->value.v_int32 != 0;
    case BSON_TYPE_INT64:
        return v->value.v_int64 != 0;
    case BSON_TYPE_DOUBLE:
        return v->value.v_double != 0; /* NaN is true */
    case BSON_TYPE_DECIMAL128:
        return mk_decimal_to_ld(&v->value.v_decimal128) != 0;
    default:
        return true;
    }
}

const char *mk_type_name(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_DOUBLE:
        return "double";
    case BSON_TYPE_UTF8:
        return "string";
    case BSON_TYPE_DOCUMENT:
        return "object";
    case BSON_TYPE_ARRAY:
        return "array";
    case BSON_TYPE_BINARY:
        return "binData";
    case BSON_TYPE_UNDEFINED:
        return "undefined";
    case BSON_TYPE_OID:
        return "objectId";
    case BSON_TYPE_BOOL:
        return "bool";
    case BSON_TYPE_DATE_TIME:
        return "date";
    case BSON_TYPE_NULL:
        return "null";
    case BSON_TYPE_REGEX:
        return "regex";
    case BSON_TYPE_DBPOINTER:
        return "dbPointer";
    case BSON_TYPE_CODE:
        return "javascript";
    case BSON_TYPE_SYMBOL:
        return "symbol";
    case BSON_TYPE_CODEWSCOPE:
        return "javascriptWithScope";
    case BSON_TYPE_INT32:
        return "int";
    case BSON_TYPE_TIMESTAMP:
        return "timestamp";
    case BSON_TYPE_INT64:
        return "long";
    case BSON_TYPE_DECIMAL128:
        return "decimal";
    case BSON_TYPE_MINKEY:
        return "minKey";
    case BSON_TYPE_MAXKEY:
        return "maxKey";
    case BSON_TYPE_EOD:
        return "missing";
    }
    return "unknown";
}

long double mk_decimal_to_ld(const bson_decimal128_t *d)
{
    char buf[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(d, buf);
    if (strcmp(buf, "NaN") == 0) return NAN;
    if (strcmp(buf, "Infinity") == 0) return INFINITY;
    if (strcmp(buf, "-Infinity") == 0) return -INFINITY;
    return strtold(buf, NULL);
}

double mk_value_as_double(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return v->value.v_int32;
    case BSON_TYPE_INT64:
        return (double)v->value.v_int64;
    case BSON_TYPE_DOUBLE:
        return v->value.v_double;
    case BSON_TYPE_DECIMAL128:
        return (double)mk_decimal_to_ld(&v->value.v_decimal128);
    default:
        return 0.0;
    }
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

/* Exact comparison of an int64 with a long double (NaN below everything). */
static int cmp_i64_ld(int64_t i, long double d)
{
    if (isnan(d)) return 1;
    if (d < -9223372036854775808.0L) return 1;
    if (d >= 9223372036854775808.0L) return -1;
    int64_t t = (int64_t)d; /* in range: truncation toward zero is defined */
    if (i != t) return i < t ? -1 : 1;
    long double frac = d - (long double)t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int cmp_ld(long double a, long double b)
{
    if (isnan(a)) return isnan(b) ? 0 : -1;
    if (isnan(b)) return 1;
    return a < b ? -1 : a > b; /* -0 == 0 */
}

static long double as_ld(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return v->value.v_int32;
    case BSON_TYPE_INT64:
        return (long double)v->value.v_int64;
    case BSON_TYPE_DOUBLE:
        return v->value.v_double;
    default:
        return mk_decimal_to_ld(&v->value.v_decimal128);
    }
}

static int cmp_numbers(const bson_value_t *a, const bson_value_t *b)
{
    bson_type_t ta = a->value_type, tb = b->value_type;
    bool ia = ta == BSON_TYPE_INT32 || ta == BSON_TYPE_INT64;
    bool ib = tb == BSON_TYPE_INT32 || tb == BSON_TYPE_INT64;
    if (ia && ib) {
        int64_t x = ta == BSON_TYPE_INT32 ? a->value.v_int32 : a->value.v_int64;
        int64_t y = tb == BSON_TYPE_INT32 ? b->value.v_int32 : b->value.v_int64;
        return cmp_i64(x, y);
    }
    if (ia) {
        int64_t x = ta == BSON_TYPE_INT32 ? a->value.v_int32 : a->value.v_int64;
        return cmp_i64_ld(x, as_ld(b));
    }
    if (ib) {
        int64_t y = tb == BSON_TYPE_INT32 ? b->value.v_int32 : b->value.v_int64;
        return -cmp_i64_ld(y, as_ld(a));
    }
    if (ta == BSON_TYPE_DOUBLE && tb == BSON_TYPE_DOUBLE) {
        double x = a->value.v_double, y = b->value.v_double;
        if (isnan(x)) return isnan(y) ? 0 : -1;
        if (isnan(y)) return 1;
        return x < y ? -1 : x > y;
    }
    return cmp_ld(as_ld(a), as_ld(b));
}

static int cmp_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c < 0 ? -1 : 1;
    return alen < blen ? -1 : alen > blen;
}

static int cmp_strings(const bson_value_t *a, const bson_value_t *b)
{
    const char *sa, *sb;
    uint32_t la, lb;
    if (a->value_type == BSON_TYPE_UTF8) {
        sa = a->value.v_utf8.str;
        la = a->value.v_utf8.len;
    } else {
        sa = a->value.v_symbol.symbol;
        la = a->value.v_symbol.len;
    }
    if (b->value_type == BSON_TYPE_UTF8) {
        sb = b->value.v_utf8.str;
        lb = b->value.v_utf8.len;
    } else {
        sb = b->value.v_symbol.symbol;
        lb = b->value.v_symbol.len;
    }
    return cmp_bytes(sa, la, sb, lb);
}

int mk_doc_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    bson_iter_t ia, ib;
    if (!bson_iter_init_from_data(&ia, a, alen) || !bson_iter_init_from_data(&ib, b, blen))
        return cmp_bytes(a, alen, b, blen); /* malformed: any stable order */
    for (;;) {
        bool na = bson_iter_next(&ia), nb = bson_iter_next(&ib);
        if (!na || !nb) return na == nb ? 0 : (na ? 1 : -1);
        int ra = mk_type_rank(bson_iter_type(&ia)), rb = mk_type_rank(bson_iter_type(&ib));
        if (ra != rb) return ra < rb ? -1 : 1;
        int c = cmp_bytes(bson_iter_key(&ia), bson_iter_key_len(&ia), bson_iter_key(&ib),
                          bson_iter_key_len(&ib));
        if (c) return c;
        c = mk_value_cmp(bson_iter_value(&ia), bson_iter_value(&ib));
        if (c) return c;
    }
}

int mk_bson_cmp(const bson_t *a, const bson_t *b)
{
    return mk_doc_cmp(bson_get_data(a), a->len, bson_get_data(b), b->len);
}

int mk_value_cmp(const bson_value_t *a, const bson_value_t *b)
{
    int ra = mk_type_rank(a->value_type), rb = mk_type_rank(b->value_type);
    if (ra != rb) return ra < rb ? -1 : 1;
    int c;
    switch (a->value_type) {
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_NULL:
    case BSON_TYPE_EOD:
        return 0;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128:
        return cmp_numbers(a, b);
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL:
        return cmp_strings(a, b);
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        return mk_doc_cmp(a->value.v_doc.data, a->value.v_doc.data_len, b->value.v_doc.data,
                          b->value.v_doc.data_len);
    case BSON_TYPE_BINARY:
        /* MongoDB: by length, then subtype, then bytes */
        if (a->value.v_binary.data_len != b->value.v_binary.data_len)
            return a->value.v_binary.data_len < b->value.v_binary.data_len ? -1 : 1;
        if (a->value.v_binary.subtype != b->value.v_binary.subtype)
            return a->value.v_binary.subtype < b->value.v_binary.subtype ? -1 : 1;
        return cmp_bytes(a->value.v_binary.data, a->value.v_binary.data_len, b->value.v_binary.data,
                         b->value.v_binary.data_len);
    case BSON_TYPE_OID:
        return cmp_bytes(a->value.v_oid.bytes, 12, b->value.v_oid.bytes, 12);
    case BSON_TYPE_BOOL:
        return (int)a->value.v_bool - (int)b->value.v_bool;
    case BSON_TYPE_DATE_TIME:
        return cmp_i64(a->value.v_datetime, b->value.v_datetime);
    case BSON_TYPE_TIMESTAMP:
        if (a->value.v_timestamp.timestamp != b->value.v_timestamp.timestamp)
            return a->value.v_timestamp.timestamp < b->value.v_timestamp.timestamp ? -1 : 1;
        if (a->value.v_timestamp.increment != b->value.v_timestamp.increment)
            return a->value.v_timestamp.increment < b->value.v_timestamp.increment ? -1 : 1;
        return 0;
    case BSON_TYPE_REGEX:
        c = strcmp(a->value.v_regex.regex, b->value.v_regex.regex);
        if (c) return c < 0 ? -1 : 1;
        c = strcmp(a->value.v_regex.options, b->value.v_regex.options);
        return c < 0 ? -1 : c > 0;
    case BSON_TYPE_DBPOINTER:
        c = cmp_bytes(a->value.v_dbpointer.collection, a->value.v_dbpointer.collection_len,
                      b->value.v_dbpointer.collection, b->value.v_dbpointer.collection_len);
        if (c) return c;
        return cmp_bytes(a->value.v_dbpointer.oid.bytes, 12, b->value.v_dbpointer.oid.bytes, 12);
    case BSON_TYPE_CODE:
        return cmp_bytes(a->value.v_code.code, a->value.v_code.code_len, b->value.v_code.code,
                         b->value.v_code.code_len);
    case BSON_TYPE_CODEWSCOPE:
        c = cmp_bytes(a->value.v_codewscope.code, a->value.v_codewscope.code_len,
                      b->value.v_codewscope.code, b->value.v_codewscope.code_len);
        if (c) return c;
        return mk_doc_cmp(a->value.v_codewscope.scope_data, a->value.v_codewscope.scope_len,
                          b->value.v_codewscope.scope_data, b->value.v_codewscope.scope_len);
    }
    return 0;
}

static int depth_of(bson_iter_t *it, int depth, int limit)
{
    int max = depth;
    while (bson_iter_next(it)) {
        bson_type_t t = bson_iter_type(it);
        if (t != BSON_TYPE_DOCUMENT && t != BSON_TYPE_ARRAY) continue;
        if (depth + 1 > limit) return depth + 1;
        bson_iter_t child;
        if (!bson_iter_recurse(it, &child)) continue;
        int d = depth_of(&child, depth + 1, limit);
        if (d > max) max = d;
        if (max > limit) return max;
    }
    return max;
}

int mk_bson_depth(const bson_t *doc, int limit)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) return 0;
    return depth_of(&it, 1, limit);
}
