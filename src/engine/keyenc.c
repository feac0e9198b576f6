/* Order-preserving key encoding (see keyenc.h).
 *
 * Layout: a type byte (MongoDB's canonical rank, so types order as MongoDB orders them),
 * then a type-specific body:
 *   numbers    8 bytes: the largest double <= value, as order-preserving IEEE bits, then 2
 *              bytes: value minus that double (non-zero only for int64 beyond 2^53); NaN
 *              sorts below all numbers.
 *   strings    bytes with 0x00 escaped as 0x00 0xFF, terminated by 0x00 0x00.
 *   documents  per field: type byte, escaped name, body; then a 0x00 end byte (below any type).
 *   arrays     per element: type byte, body; then 0x00.
 *   binData    4-byte big-endian length, subtype, bytes (MongoDB orders by length first).
 *   others     fixed-width big-endian with the sign bit flipped where signed. */
#include "engine/keyenc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"

void mk_buf_init(mk_buf_t *b)
{
    b->data = b->inline_;
    b->len = 0;
    b->cap = sizeof b->inline_;
    b->failed = false;
}

void mk_buf_free(mk_buf_t *b)
{
    if (b->data != b->inline_) free(b->data);
    mk_buf_init(b);
}

void mk_buf_reset(mk_buf_t *b)
{
    b->len = 0;
    b->failed = false;
}

void mk_buf_append(mk_buf_t *b, const void *p, size_t n)
{
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap * 2;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = b->data == b->inline_ ? malloc(cap) : realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        if (b->data == b->inline_) memcpy(d, b->inline_, b->len);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_be64(mk_buf_t *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 7; i >= 0; i--, v >>= 8) x[i] = (uint8_t)v;
    mk_buf_append(b, x, 8);
}

static void put_be32(mk_buf_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    mk_buf_append(b, x, 4);
}

static void put_escaped(mk_buf_t *b, const char *s, size_t n)
{
    const char *end = s + n;
    while (s < end) {
        const char *z = memchr(s, 0, (size_t)(end - s));
        size_t run = z ? (size_t)(z - s) : (size_t)(end - s);
        mk_buf_append(b, s, run);
        s += run;
        if (z) {
            mk_buf_byte(b, 0x00);
            mk_buf_byte(b, 0xFF);
            s++;
        }
    }
    mk_buf_byte(b, 0x00);
    mk_buf_byte(b, 0x00);
}

static uint64_t double_bits_ordered(double d)
{
    if (d == 0) d = 0; /* -0 -> +0 */
    uint64_t u;
    memcpy(&u, &d, 8);
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

/* The largest double <= i, and i minus it (0..2047). */
static void split_i64(int64_t i, double *d, uint16_t *rem)
{
    double x = (double)i;
    if ((long double)x > (long double)i) x = nextafter(x, -INFINITY);
    *d = x;
    *rem = (uint16_t)((long double)i - (long double)x);
}

static void put_number(mk_buf_t *b, const bson_value_t *v)
{
    double d = 0;
    uint16_t rem = 0;
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        d = v->value.v_int32;
        break;
    case BSON_TYPE_INT64:
        split_i64(v->value.v_int64, &d, &rem);
        break;
    case BSON_TYPE_DOUBLE:
        d = v->value.v_double;
        break;
    default: {
        long double ld = mk_decimal_to_ld(&v->value.v_decimal128);
        d = (double)ld;
        if (!isnan(ld) && (long double)d > ld) d = nextafter(d, -INFINITY);
        break;
    }
    }
    if (isnan(d)) {
        put_be64(b, 0);
    } else {
        put_be64(b, double_bits_ordered(d));
    }
    mk_buf_byte(b, (uint8_t)(rem >> 8));
    mk_buf_byte(b, (uint8_t)rem);
}

static void put_body(mk_buf_t *b, const bson_value_t *v);

static void put_doc(mk_buf_t *b, const uint8_t *data, uint32_t len, bool is_array)
{
    bson_iter_t it;
    if (bson_iter_init_from_data(&it, data, len)) {
        while (bson_iter_next(&it)) {
            mk_buf_byte(b, (uint8_t)mk_type_rank(bson_iter_type(&it)));
            if (!is_array) put_escaped(b, bson_iter_key(&it), bson_iter_key_len(&it));
            put_body(b, bson_iter_value(&it));
        }
    }
    mk_buf_byte(b, 0x00);
}

static void put_body(mk_buf_t *b, const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        break;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128:
        put_number(b, v);
        break;
    case BSON_TYPE_UTF8:
        put_escaped(b, v->value.v_utf8.str, v->value.v_utf8.len);
        break;
    case BSON_TYPE_SYMBOL:
        put_escaped(b, v->value.v_symbol.symbol, v->value.v_symbol.len);
        break;
    case BSON_TYPE_DOCUMENT:
        put_doc(b, v->value.v_doc.data, v->value.v_doc.data_len, false);
        break;
    case BSON_TYPE_ARRAY:
        put_doc(b, v->value.v_doc.data, v->value.v_doc.data_len, true);
        break;
    case BSON_TYPE_BINARY:
        put_be32(b, v->value.v_binary.data_len);
        mk_buf_byte(b, (uint8_t)v->value.v_binary.subtype);
        mk_buf_append(b, v->value.v_binary.data, v->value.v_binary.data_len);
        break;
    case BSON_TYPE_OID:
        mk_buf_append(b, v->value.v_oid.bytes, 12);
        break;
    case BSON_TYPE_BOOL:
        mk_buf_byte(b, v->value.v_bool ? 1 : 0);
        break;
    case BSON_TYPE_DATE_TIME:
        put_be64(b, (uint64_t)v->value.v_datetime ^ 0x8000000000000000ull);
        break;
    case BSON_TYPE_TIMESTAMP:
        put_be32(b, v->value.v_timestamp.timestamp);
        put_be32(b, v->value.v_timestamp.increment);
        break;
    case BSON_TYPE_REGEX:
        put_escaped(b, v->value.v_regex.regex, strlen(v->value.v_regex.regex));
        put_escaped(b, v->value.v_regex.options, strlen(v->value.v_regex.options));
        break;
    case BSON_TYPE_DBPOINTER:
        put_escaped(b, v->value.v_dbpointer.collection, v->value.v_dbpointer.collection_len);
        mk_buf_append(b, v->value.v_dbpointer.oid.bytes, 12);
        break;
    case BSON_TYPE_CODE:
        put_escaped(b, v->value.v_code.code, v->value.v_code.code_len);
        break;
    case BSON_TYPE_CODEWSCOPE:
        put_escaped(b, v->value.v_codewscope.code, v->value.v_codewscope.code_len);
        put_doc(b, v->value.v_codewscope.scope_data, v->value.v_codewscope.scope_len, false);
        break;
    }
}

void mk_keyenc_value(mk_buf_t *b, const bson_value_t *v)
{
    mk_buf_byte(b, (uint8_t)mk_type_rank(v->value_type));
    put_body(b, v);
}

void mk_keyenc_value_desc(mk_buf_t *b, const bson_value_t *v)
{
    size_t start = b->len;
    mk_keyenc_value(b, v);
    if (b->failed) return;
    /* Inverting every byte reverses memcmp order; a trailing 0xFF keeps a value that is a
     * prefix of another ordered after it. */
    for (size_t i = start; i < b->len; i++) b->data[i] = (uint8_t)~b->data[i];
    mk_buf_byte(b, 0xFF);
}

/* 128-bit FNV-1a style hash in two 64-bit lanes with different seeds. */
static void hash128(const uint8_t *p, size_t n, uint8_t out[16])
{
    uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
    for (size_t i = 0; i < n; i++) {
        h1 = (h1 ^ p[i]) * 0x100000001b3ull;
        h2 = (h2 ^ p[i]) * 0x100000001b3ull + (h1 >> 29);
    }
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(h1 >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(h2 >> (56 - 8 * i));
    }
}

bool mk_keyenc_fit(mk_buf_t *b)
{
    if (b->len <= MK_KEY_INLINE_MAX) return false;
    uint8_t h[16];
    hash128(b->data, b->len, h);
    b->len = MK_KEY_PREFIX;
    mk_buf_append(b, h, 16);
    return true;
}
