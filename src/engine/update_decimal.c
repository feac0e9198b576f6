/* Decimal128 addition and multiplication for $inc and $mul, as MongoDB computes them: IEEE
 * 754-2008 decimal arithmetic with 34 significant digits, rounding half to even, the ideal
 * exponent for exact results (the smaller one for a sum, the sum of both for a product), and
 * int / long / double operands converted first (a double to 15 significant digits). */
#include "engine/update_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

#define MAX_DIGITS 34
#define EXP_MIN    (-6176)
#define EXP_MAX    6111
#define EXP_BIAS   6176

enum { FINITE, INF, NAN_ };

typedef struct dec {
    int kind;
    bool neg;
    u128 coef; /* < 10^34 for finite values */
    int exp;
} dec_t;

static u128 pow10_128(int n)
{
    u128 p = 1;
    while (n-- > 0) p *= 10;
    return p;
}

static dec_t from_bid(const bson_decimal128_t *d)
{
    dec_t r = {FINITE, (d->high >> 63) != 0, 0, 0};
    uint64_t hi = d->high;
    if (((hi >> 58) & 0x1f) == 0x1f) {
        r.kind = NAN_;
        return r;
    }
    if (((hi >> 58) & 0x1f) == 0x1e) {
        r.kind = INF;
        return r;
    }
    if (((hi >> 61) & 3) == 3) {
        /* The large-coefficient form only encodes values past 10^34: non-canonical, zero. */
        r.exp = (int)((hi >> 47) & 0x3fff) - EXP_BIAS;
        return r;
    }
    r.exp = (int)((hi >> 49) & 0x3fff) - EXP_BIAS;
    r.coef = ((u128)(hi & 0x1ffffffffffffULL) << 64) | d->low;
    if (r.coef >= pow10_128(MAX_DIGITS)) r.coef = 0;
    return r;
}

static bson_decimal128_t to_bid(const dec_t *d)
{
    bson_decimal128_t r;
    uint64_t sign = d->neg ? (1ULL << 63) : 0;
    if (d->kind == NAN_) {
        r.high = 0x7c00000000000000ULL;
        r.low = 0;
    } else if (d->kind == INF) {
        r.high = sign | 0x7800000000000000ULL;
        r.low = 0;
    } else {
        r.high = sign | ((uint64_t)(d->exp + EXP_BIAS) << 49) | (uint64_t)(d->coef >> 64);
        r.low = (uint64_t)d->coef;
    }
    return r;
}

/* ---- 256-bit unsigned integers, for products of two coefficients */

typedef struct u256 {
    uint64_t w[4]; /* little-endian words */
} u256_t;

static u256_t mul_128(u128 a, u128 b)
{
    uint64_t x[2] = {(uint64_t)a, (uint64_t)(a >> 64)}, y[2] = {(uint64_t)b, (uint64_t)(b >> 64)};
    u256_t r = {{0, 0, 0, 0}};
    for (int i = 0; i < 2; i++) {
        u128 carry = 0;
        for (int j = 0; j < 2; j++) {
            u128 t = (u128)x[i] * y[j] + r.w[i + j] + carry;
            r.w[i + j] = (uint64_t)t;
            carry = t >> 64;
        }
        r.w[i + 2] = (uint64_t)carry;
    }
    return r;
}

/* Divides by 10 in place; returns the remainder. */
static unsigned div10_256(u256_t *a)
{
    u128 rem = 0;
    for (int i = 3; i >= 0; i--) {
        u128 cur = (rem << 64) | a->w[i];
        a->w[i] = (uint64_t)(cur / 10);
        rem = cur % 10;
    }
    return (unsigned)rem;
}

static bool fits_128(const u256_t *a)
{
    return a->w[2] == 0 && a->w[3] == 0;
}

/* ---- rounding */

static int digits(u128 c)
{
    int n = 1;
    while (c >= 10) {
        c /= 10;
        n++;
    }
    return n;
}

/* The finite value c * 10^exp (plus less than one unit of c's last digit when `sticky`) rounded
 * half to even to 34 digits within the exponent range: below it digits are dropped (subnormal
 * values), above it the coefficient is padded with zeros if it can be, else the result is
 * infinite. */
static dec_t finish(bool neg, u128 c, int exp, bool sticky)
{
    dec_t r = {FINITE, neg, c, exp};
    int drop = digits(c) - MAX_DIGITS;
    if (EXP_MIN - exp > drop) drop = EXP_MIN - exp;
    if (drop > 0) {
        u128 q = 0, rem = c, half = 0;
        bool above_half; /* more than half a unit of the new last digit is dropped */
        bool at_half;
        if (drop <= 38) {
            u128 p = pow10_128(drop);
            q = c / p;
            rem = c % p;
            half = p / 2;
            above_half = rem > half || (rem == half && sticky);
            at_half = rem == half && !sticky;
        } else {
            above_half = at_half = false; /* c < 10^38: less than half of 10^39 */
        }
        if (above_half || (at_half && (q & 1))) q++;
        r.coef = q;
        r.exp = exp + drop;
        if (r.coef == pow10_128(MAX_DIGITS)) { /* 9.99..9 rounded up to 10.00..0 */
            r.coef /= 10;
            r.exp++;
        }
    }
    u128 limit = pow10_128(MAX_DIGITS);
    while (r.exp > EXP_MAX && r.coef != 0 && r.coef * 10 < limit) {
        r.coef *= 10;
        r.exp--;
    }
    if (r.exp > EXP_MAX) {
        if (r.coef == 0)
            r.exp = EXP_MAX;
        else
            r.kind = INF;
    }
    return r;
}

/* ---- operands */

/* A double as MongoDB's Decimal128(double): rounded to 15 significant digits. */
static dec_t from_double(double d)
{
    dec_t r = {FINITE, signbit(d) != 0, 0, 0};
    if (isnan(d)) {
        r.kind = NAN_;
        return r;
    }
    if (isinf(d)) {
        r.kind = INF;
        return r;
    }
    if (d == 0) return r;
    char buf[40];
    snprintf(buf, sizeof buf, "%.14e", fabs(d)); /* d.dddddddddddddde[+-]x */
    char *e = strchr(buf, 'e');
    if (!e) return r;
    for (char *p = buf; p < e; p++)
        if (*p >= '0' && *p <= '9') r.coef = r.coef * 10 + (u128)(*p - '0');
    r.exp = atoi(e + 1) - 14;
    return r;
}

static dec_t operand(const bson_value_t *v)
{
    dec_t r = {FINITE, false, 0, 0};
    int64_t i;
    switch (v->value_type) {
    case BSON_TYPE_DECIMAL128:
        return from_bid(&v->value.v_decimal128);
    case BSON_TYPE_DOUBLE:
        return from_double(v->value.v_double);
    case BSON_TYPE_INT32:
        i = v->value.v_int32;
        break;
    default:
        i = v->value.v_int64;
        break;
    }
    r.neg = i < 0;
    r.coef = i < 0 ? (u128)(-(i + 1)) + 1 : (u128)i;
    return r;
}

/* ---- the operations */

static dec_t add(dec_t a, dec_t b)
{
    dec_t r = {NAN_, false, 0, 0};
    if (a.kind == NAN_ || b.kind == NAN_) return r;
    if (a.kind == INF || b.kind == INF) {
        if (a.kind == INF && b.kind == INF && a.neg != b.neg) return r;
        return a.kind == INF ? a : b;
    }
    if (a.exp < b.exp) {
        dec_t t = a;
        a = b;
        b = t;
    }
    /* a has the larger exponent: scale it up toward b's, as far as 37 digits allow. */
    int diff = a.exp - b.exp, scale = 0;
    u128 ca = a.coef, limit = pow10_128(37);
    while (scale < diff && ca != 0 && ca < limit / 10) {
        ca *= 10;
        scale++;
    }
    if (ca == 0) scale = diff;
    int rest = diff - scale, exp = a.exp - scale;
    /* b is brought up to that exponent, keeping only whether it lost digits. */
    u128 cb = b.coef;
    bool sticky = false;
    if (rest > 40) {
        sticky = cb != 0;
        cb = 0;
    } else if (rest > 0) {
        u128 p = pow10_128(rest);
        sticky = cb % p != 0;
        cb /= p;
    }
    if (a.neg == b.neg) return finish(a.neg, ca + cb, exp, sticky);
    if (ca > cb) {
        /* ca - (cb + fraction): borrow one unit when b was truncated. */
        u128 c = ca - cb - (sticky ? 1 : 0);
        return finish(a.neg, c, exp, sticky);
    }
    if (ca == cb) return finish(false, 0, exp, false); /* x + -x is +0 */
    return finish(b.neg, cb - ca, exp, sticky);
}

static dec_t mul(dec_t a, dec_t b)
{
    dec_t r = {NAN_, false, 0, 0};
    if (a.kind == NAN_ || b.kind == NAN_) return r;
    bool neg = a.neg != b.neg;
    if (a.kind == INF || b.kind == INF) {
        if ((a.kind == FINITE && a.coef == 0) || (b.kind == FINITE && b.coef == 0)) return r;
        r.kind = INF;
        r.neg = neg;
        return r;
    }
    u256_t p = mul_128(a.coef, b.coef);
    int exp = a.exp + b.exp;
    bool sticky = false;
    /* Bring the product within 128 bits; what is dropped only matters as "non-zero". */
    while (!fits_128(&p)) {
        sticky = div10_256(&p) != 0 || sticky;
        exp++;
    }
    u128 c = ((u128)p.w[1] << 64) | p.w[0];
    return finish(neg, c, exp, sticky);
}

int up_decimal_arith(bool multiply, const bson_value_t *a, const bson_value_t *b, bson_value_t *out)
{
    dec_t x = operand(a), y = operand(b);
    dec_t r = multiply ? mul(x, y) : add(x, y);
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_DECIMAL128;
    out->value.v_decimal128 = to_bid(&r);
    return MK_OK;
}

bool up_decimal_identical(const bson_value_t *a, const bson_value_t *b)
{
    if (a->value_type != BSON_TYPE_DECIMAL128 || b->value_type != BSON_TYPE_DECIMAL128)
        return false;
    dec_t x = from_bid(&a->value.v_decimal128), y = from_bid(&b->value.v_decimal128);
    if (x.kind == NAN_ || y.kind == NAN_) return false;
    if (x.kind == INF || y.kind == INF) return x.kind == y.kind && x.neg == y.neg;
    if (x.coef == 0 || y.coef == 0) return x.coef == y.coef;
    if (x.neg != y.neg) return false;
    while (x.coef % 10 == 0) {
        x.coef /= 10;
        x.exp++;
    }
    while (y.coef % 10 == 0) {
        y.coef /= 10;
        y.exp++;
    }
    return x.coef == y.coef && x.exp == y.exp;
}
