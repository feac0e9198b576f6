/* Mongoose 8's casting of single values (see cast.h). Each cast_* follows the rules of the
 * matching file of lib/cast; the JS coercions they lean on (Number(x), String(x), Date.parse,
 * BigInt(x)) are modelled on BSON values below. */
#include "odm/cast.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DATE_MS 8.64e15 /* ECMAScript's TimeClip bound */

/* A failed cast: the JS error class Mongoose saw, printed as ` because of "X"` unless it is
 * an assertion or a plain Error (NULL). */
typedef struct {
    const char *reason;
} fail_t;

enum { CAST_OK = 0, CAST_FAIL = 1 };

static int fail(fail_t *f, const char *reason)
{
    f->reason = reason;
    return CAST_FAIL;
}

/* ---------- JS number <-> string ---------- */

void mk_cast_js_number_string(double d, char buf[32])
{
    if (isnan(d)) {
        strcpy(buf, "NaN");
        return;
    }
    if (isinf(d)) {
        strcpy(buf, d < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (d == 0) {
        strcpy(buf, "0"); /* String(-0) is "0" too */
        return;
    }
    if (d == trunc(d) && fabs(d) < 1e15) { /* integers print as their digits */
        snprintf(buf, 32, "%lld", (long long)d);
        return;
    }
    /* shortest digits that round-trip, as ECMAScript's Number::toString requires */
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    char digits[20];
    int k = 0;
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p)) digits[k++] = *p;
    int e = atoi(p + 1);
    while (k > 1 && digits[k - 1] == '0') k--;
    digits[k] = 0;
    int n = e + 1; /* position of the decimal point */
    char *o = buf;
    if (neg) *o++ = '-';
    if (k <= n && n <= 21) {
        memcpy(o, digits, (size_t)k);
        o += k;
        for (int i = k; i < n; i++) *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, digits + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -n; i++) *o++ = '0';
        memcpy(o, digits, (size_t)k);
        o += k;
    } else {
        *o++ = digits[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += sprintf(o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    *o = 0;
}

/* Length of the JS white space / line terminator starting at s (0 when none). */
static size_t js_space(const unsigned char *s, size_t len)
{
    if (len == 0) return 0;
    if (s[0] == ' ' || (s[0] >= 0x09 && s[0] <= 0x0d)) return 1;
    if (len >= 2 && s[0] == 0xc2 && s[1] == 0xa0) return 2; /* NBSP */
    if (len >= 3) {
        unsigned cp = ((unsigned)(s[0] & 0x0f) << 12) | ((unsigned)(s[1] & 0x3f) << 6) |
                      (unsigned)(s[2] & 0x3f);
        if ((s[0] & 0xf0) != 0xe0) return 0;
        if (cp == 0xfeff || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
            cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000)
            return 3;
    }
    return 0;
}

static void js_trim(const char **s, size_t *len)
{
    const unsigned char *b = (const unsigned char *)*s;
    size_t n = *len, w;
    while ((w = js_space(b, n)) > 0) b += w, n -= w;
    /* trailing: scan candidates from the end (1..3 byte sequences) */
    for (bool again = true; again && n > 0;) {
        again = false;
        for (size_t back = 1; back <= 3 && back <= n; back++)
            if (js_space(b + n - back, back) == back) {
                n -= back;
                again = true;
                break;
            }
    }
    *s = (const char *)b;
    *len = n;
}

static int digit_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'z') return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
    return 99;
}

double mk_cast_js_string_number(const char *s, size_t len)
{
    if (len > 0) {
        /* up to 15 digits (with a sign): nothing to trim, exact in a double, no strtod */
        size_t i = s[0] == '+' || s[0] == '-';
        if (len - i >= 1 && len - i <= 15) {
            uint64_t v = 0;
            size_t j = i;
            while (j < len && s[j] >= '0' && s[j] <= '9') v = v * 10 + (uint64_t)(s[j++] - '0');
            if (j == len) return s[0] == '-' ? -(double)v : (double)v;
            /* after digits, only '.', an exponent, a radix letter ("0x") or trailing white
             * space can follow in a number ("2020-01-01" is not one) */
            unsigned char c = (unsigned char)s[j];
            if (j > i && c < 0x80 && c != ' ' && !(c >= 0x09 && c <= 0x0d) &&
                !strchr(".eExXoObB", c))
                return NAN;
        }
    }
    js_trim(&s, &len);
    if (len == 0) return 0;
    if (len >= 2 && s[0] == '0' && strchr("xXoObB", s[1])) {
        int base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
        if (len == 2) return NAN;
        double v = 0;
        for (size_t i = 2; i < len; i++) {
            int d = digit_value(s[i]);
            if (d >= base) return NAN;
            v = v * base + d;
        }
        return v;
    }
    size_t i = 0;
    bool neg = false;
    if (s[i] == '+' || s[i] == '-') neg = s[i++] == '-';
    if (len - i == 8 && memcmp(s + i, "Infinity", 8) == 0) return neg ? -INFINITY : INFINITY;
    size_t int_digits = 0, frac_digits = 0;
    while (i < len && isdigit((unsigned char)s[i])) i++, int_digits++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && isdigit((unsigned char)s[i])) i++, frac_digits++;
    }
    if (int_digits + frac_digits == 0) return NAN;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        size_t exp_digits = 0;
        while (i < len && isdigit((unsigned char)s[i])) i++, exp_digits++;
        if (exp_digits == 0) return NAN;
    }
    if (i != len) return NAN;
    /* the grammar is checked, so strtod reads exactly this text (and rounds correctly) */
    char small[64];
    char *copy = len < sizeof small ? small : malloc(len + 1);
    if (!copy) return NAN;
    memcpy(copy, s, len);
    copy[len] = 0;
    double v = strtod(copy, NULL);
    if (copy != small) free(copy);
    return v;
}

/* ---------- dates ---------- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

/* Offset of local time from UTC in ms at the UTC instant `ms`, and the zone's name. */
static int64_t local_offset(int64_t ms, const char **zone)
{
    time_t t = (time_t)floor_div(ms, 1000);
    struct tm tm;
    if (zone) *zone = "UTC";
    if (!localtime_r(&t, &tm)) return 0;
    if (zone && tm.tm_zone) *zone = tm.tm_zone;
    return (int64_t)tm.tm_gmtoff * 1000;
}

static bool read_digits(const char *s, size_t len, size_t *i, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (*i >= len || !isdigit((unsigned char)s[*i])) return false;
        v = v * 10 + (s[(*i)++] - '0');
    }
    *out = v;
    return true;
}

static bool d2(const char *s, int *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return false;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

bool mk_cast_parse_date(const char *s, size_t len, int64_t *ms)
{
    int hi, lo, mm, dd;
    if (len == 10 && s[4] == '-' && s[7] == '-' && d2(s, &hi) && d2(s + 2, &lo) && d2(s + 5, &mm) &&
        d2(s + 8, &dd)) { /* YYYY-MM-DD, the common case: UTC midnight */
        if (mm < 1 || mm > 12 || dd < 1 || dd > 31) return false;
        *ms = (days_from_civil(hi * 100 + lo, mm, 1) + (dd - 1)) * 86400000;
        return true;
    }
    size_t i = 0;
    int64_t year;
    int v, month = 1, day = 1, hh = 0, mi = 0, ss = 0;
    int64_t frac_ms = 0;
    if (len > 0 && (s[0] == '+' || s[0] == '-')) {
        bool neg = s[0] == '-';
        i = 1;
        if (!read_digits(s, len, &i, 6, &v)) return false;
        if (neg && v == 0) return false; /* -000000 is not a year */
        year = neg ? -v : v;
    } else {
        if (!read_digits(s, len, &i, 4, &v)) return false;
        year = v;
    }
    if (i < len && s[i] == '-') {
        i++;
        if (!read_digits(s, len, &i, 2, &month) || month < 1 || month > 12) return false;
        if (i < len && s[i] == '-') {
            i++;
            /* V8 accepts any day 1..31 and lets it roll into the next month */
            if (!read_digits(s, len, &i, 2, &day) || day < 1 || day > 31) return false;
        }
    }
    bool has_time = false, has_zone = false;
    int64_t offset_min = 0;
    if (i < len && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        i++;
        has_time = true;
        if (!read_digits(s, len, &i, 2, &hh) || i >= len || s[i++] != ':' ||
            !read_digits(s, len, &i, 2, &mi))
            return false;
        if (i < len && s[i] == ':') {
            i++;
            if (!read_digits(s, len, &i, 2, &ss)) return false;
            if (i < len && s[i] == '.') {
                i++;
                int nd = 0;
                while (i < len && isdigit((unsigned char)s[i])) {
                    if (nd < 3) frac_ms = frac_ms * 10 + (s[i] - '0');
                    nd++, i++;
                }
                if (nd == 0) return false;
                for (; nd < 3; nd++) frac_ms *= 10;
            }
        }
        if (hh > 24 || mi > 59 || ss > 59) return false;
        if (hh == 24 && (mi || ss || frac_ms)) return false;
        if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
            has_zone = true;
        } else if (i < len && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i++] == '-' ? -1 : 1, oh, om;
            if (!read_digits(s, len, &i, 2, &oh) || i >= len || s[i++] != ':' ||
                !read_digits(s, len, &i, 2, &om) || oh > 23 || om > 59)
                return false;
            offset_min = sign * (oh * 60 + om);
            has_zone = true;
        }
    }
    if (i != len) return false;
    int64_t days = days_from_civil(year, month, 1) + (day - 1);
    int64_t t = days * 86400000 + ((int64_t)hh * 3600 + mi * 60 + ss) * 1000 + frac_ms;
    if (has_zone)
        t -= offset_min * 60000;
    else if (has_time)
        t -= local_offset(t - local_offset(t, NULL), NULL); /* local wall time -> UTC */
    if (t > MAX_DATE_MS || t < -MAX_DATE_MS) return false;
    *ms = t;
    return true;
}

static const char *const wday_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Date.prototype.toISOString. */
static void date_iso(bson_string_t *s, int64_t ms)
{
    int64_t days = floor_div(ms, 86400000), rem = ms - days * 86400000, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (y >= 0 && y <= 9999)
        bson_string_append_printf(s, "%04d", (int)y);
    else
        bson_string_append_printf(s, "%c%06lld", y < 0 ? '-' : '+', (long long)llabs(y));
    bson_string_append_printf(s, "-%02d-%02dT%02d:%02d:%02d.%03dZ", m, d, (int)(rem / 3600000),
                              (int)(rem / 60000 % 60), (int)(rem / 1000 % 60), (int)(rem % 1000));
}

/* Date.prototype.toString: "Wed Jan 01 2020 00:00:00 GMT+0000 (Coordinated Universal Time)". */
static void date_string(bson_string_t *s, int64_t ms)
{
    const char *zone;
    int64_t off = local_offset(ms, &zone), local = ms + off;
    int64_t days = floor_div(local, 86400000), rem = local - days * 86400000, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int wd = (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
    bson_string_append_printf(s, "%s %s %02d ", wday_names[wd], month_names[m - 1], d);
    if (y >= 0)
        bson_string_append_printf(s, "%04d", (int)y);
    else
        bson_string_append_printf(s, "-%06lld", (long long)-y);
    int64_t offm = off / 60000;
    if (strcmp(zone, "UTC") == 0 || (strcmp(zone, "GMT") == 0 && offm == 0))
        zone = "Coordinated Universal Time";
    bson_string_append_printf(s, " %02d:%02d:%02d GMT%c%02d%02d (%s)", (int)(rem / 3600000),
                              (int)(rem / 60000 % 60), (int)(rem / 1000 % 60), offm < 0 ? '-' : '+',
                              (int)(llabs(offm) / 60), (int)(llabs(offm) % 60), zone);
}

/* ---------- JS view of BSON values ---------- */

static bool is_number(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64 ||
           v->value_type == BSON_TYPE_DOUBLE;
}

static double number_of(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return v->value.v_int32;
    case BSON_TYPE_INT64:
        return (double)v->value.v_int64;
    default:
        return v->value.v_double;
    }
}

const char *mk_cast_js_type_name(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_UNDEFINED:
        return "undefined";
    case BSON_TYPE_NULL:
        return "null";
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
        return "number";
    case BSON_TYPE_UTF8:
        return "string";
    case BSON_TYPE_BOOL:
        return "boolean";
    case BSON_TYPE_DOCUMENT:
        return "Object";
    case BSON_TYPE_ARRAY:
        return "Array";
    case BSON_TYPE_DATE_TIME:
        return "Date";
    case BSON_TYPE_OID:
        return "ObjectId";
    case BSON_TYPE_BINARY:
        return "Buffer";
    case BSON_TYPE_DECIMAL128:
        return "Decimal128";
    case BSON_TYPE_REGEX:
        return "RegExp";
    case BSON_TYPE_TIMESTAMP:
        return "Timestamp";
    case BSON_TYPE_MINKEY:
        return "MinKey";
    case BSON_TYPE_MAXKEY:
        return "MaxKey";
    case BSON_TYPE_CODE:
    case BSON_TYPE_CODEWSCOPE:
        return "Code";
    case BSON_TYPE_SYMBOL:
        return "BSONSymbol";
    case BSON_TYPE_DBPOINTER:
        return "DBRef";
    }
    return "Object";
}

/* Appends the UTF-8 decoding of bytes, as Buffer#toString does (bad bytes -> U+FFFD). */
static void append_utf8_lossy(bson_string_t *s, const uint8_t *b, uint32_t n)
{
    uint32_t i = 0;
    while (i < n) {
        uint32_t w = b[i] < 0x80             ? 1
                     : (b[i] & 0xe0) == 0xc0 ? 2
                     : (b[i] & 0xf0) == 0xe0 ? 3
                     : (b[i] & 0xf8) == 0xf0 ? 4
                                             : 0;
        if (w && i + w <= n && bson_utf8_validate((const char *)b + i, w, true)) {
            bson_string_append_printf(s, "%.*s", (int)w, (const char *)b + i);
            i += w;
        } else {
            bson_string_append(s, "\xef\xbf\xbd");
            i++;
        }
    }
}

static bool doc_of(const bson_value_t *v, bson_t *doc)
{
    return bson_init_static(doc, v->value.v_doc.data, v->value.v_doc.data_len);
}

/* JS's String(x) (ToString); false when the value has no useful string in JS (a plain Object
 * gives "[object Object]" which callers treat as not castable). */
static bool js_to_string(bson_string_t *s, const bson_value_t *v);

static bool array_join(bson_string_t *s, const bson_value_t *v)
{
    bson_t arr;
    bson_iter_t it;
    if (!doc_of(v, &arr) || !bson_iter_init(&it, &arr)) return false;
    bool first = true;
    while (bson_iter_next(&it)) {
        if (!first) bson_string_append_c(s, ',');
        first = false;
        const bson_value_t *e = bson_iter_value(&it);
        if (e->value_type == BSON_TYPE_NULL || e->value_type == BSON_TYPE_UNDEFINED) continue;
        if (!js_to_string(s, e)) bson_string_append(s, "[object Object]");
    }
    return true;
}

static bool js_to_string(bson_string_t *s, const bson_value_t *v)
{
    char num[32];
    switch (v->value_type) {
    case BSON_TYPE_NULL:
        bson_string_append(s, "null");
        return true;
    case BSON_TYPE_UNDEFINED:
        bson_string_append(s, "undefined");
        return true;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
        mk_cast_js_number_string(number_of(v), num);
        bson_string_append(s, num);
        return true;
    case BSON_TYPE_UTF8:
        bson_string_append_printf(s, "%.*s", (int)v->value.v_utf8.len, v->value.v_utf8.str);
        return true;
    case BSON_TYPE_SYMBOL:
        bson_string_append_printf(s, "%.*s", (int)v->value.v_symbol.len, v->value.v_symbol.symbol);
        return true;
    case BSON_TYPE_BOOL:
        bson_string_append(s, v->value.v_bool ? "true" : "false");
        return true;
    case BSON_TYPE_DATE_TIME: {
        int64_t ms = v->value.v_datetime;
        if (ms > MAX_DATE_MS || ms < -MAX_DATE_MS)
            bson_string_append(s, "Invalid Date");
        else
            date_string(s, ms);
        return true;
    }
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(&v->value.v_oid, hex);
        bson_string_append(s, hex);
        return true;
    }
    case BSON_TYPE_DECIMAL128: {
        char dec[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, dec);
        bson_string_append(s, dec);
        return true;
    }
    case BSON_TYPE_BINARY:
        append_utf8_lossy(s, v->value.v_binary.data, v->value.v_binary.data_len);
        return true;
    case BSON_TYPE_REGEX:
        bson_string_append_printf(s, "/%s/%s", v->value.v_regex.regex, v->value.v_regex.options);
        return true;
    case BSON_TYPE_TIMESTAMP:
        bson_string_append_printf(s, "%llu",
                                  ((unsigned long long)v->value.v_timestamp.timestamp << 32) |
                                      v->value.v_timestamp.increment);
        return true;
    case BSON_TYPE_ARRAY:
        return array_join(s, v);
    default:
        return false; /* documents, MinKey, MaxKey, Code: Object.prototype.toString */
    }
}

/* JS's Number(x). */
static double js_to_number(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_NULL:
        return 0;
    case BSON_TYPE_BOOL:
        return v->value.v_bool ? 1 : 0;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
        return number_of(v);
    case BSON_TYPE_DATE_TIME: {
        int64_t ms = v->value.v_datetime;
        return (ms > MAX_DATE_MS || ms < -MAX_DATE_MS) ? NAN : (double)ms;
    }
    case BSON_TYPE_UTF8: /* String(x) stops at a NUL, as js_to_string's %.*s does */
        return mk_cast_js_string_number(v->value.v_utf8.str,
                                        strnlen(v->value.v_utf8.str, v->value.v_utf8.len));
    case BSON_TYPE_SYMBOL:
        return mk_cast_js_string_number(v->value.v_symbol.symbol,
                                        strnlen(v->value.v_symbol.symbol, v->value.v_symbol.len));
    case BSON_TYPE_ARRAY:
    case BSON_TYPE_OID:
    case BSON_TYPE_DECIMAL128:
    case BSON_TYPE_BINARY: {
        bson_string_t *s = bson_string_new(NULL);
        double d = js_to_string(s, v) ? mk_cast_js_string_number(s->str, s->len) : NAN;
        bson_string_free(s, true);
        return d;
    }
    default:
        return NAN;
    }
}

/* ---------- util.inspect ---------- */

static void inspect_string(bson_string_t *s, const char *str, uint32_t len)
{
    char q = '\'';
    if (memchr(str, '\'', len)) {
        if (!memchr(str, '"', len))
            q = '"';
        else if (!memchr(str, '`', len))
            q = '`';
    }
    bson_string_append_c(s, q);
    for (uint32_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)str[i];
        switch (c) {
        case '\b':
            bson_string_append(s, "\\b");
            break;
        case '\t':
            bson_string_append(s, "\\t");
            break;
        case '\n':
            bson_string_append(s, "\\n");
            break;
        case '\f':
            bson_string_append(s, "\\f");
            break;
        case '\r':
            bson_string_append(s, "\\r");
            break;
        case '\\':
            bson_string_append(s, "\\\\");
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                bson_string_append_printf(s, "\\x%02X", c);
            else if (c == (unsigned char)q) {
                bson_string_append_c(s, '\\');
                bson_string_append_c(s, (char)c);
            } else
                bson_string_append_c(s, (char)c);
        }
    }
    bson_string_append_c(s, q);
}

static bool is_identifier(const char *k)
{
    if (!*k || !(isalpha((unsigned char)*k) || *k == '_')) return false;
    for (; *k; k++)
        if (!(isalnum((unsigned char)*k) || *k == '_')) return false;
    return true;
}

static void inspect(bson_string_t *s, const bson_value_t *v, int depth)
{
    char num[32];
    switch (v->value_type) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE: {
        double d = number_of(v);
        if (d == 0 && signbit(d))
            bson_string_append(s, "-0");
        else {
            mk_cast_js_number_string(d, num);
            bson_string_append(s, num);
        }
        return;
    }
    case BSON_TYPE_UTF8:
        inspect_string(s, v->value.v_utf8.str, v->value.v_utf8.len);
        return;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bool arr = v->value_type == BSON_TYPE_ARRAY;
        bson_t doc;
        bson_iter_t it;
        if (!doc_of(v, &doc) || !bson_iter_init(&it, &doc)) {
            bson_string_append(s, arr ? "[]" : "{}");
            return;
        }
        if (depth > 2) { /* util.inspect's default depth */
            bson_string_append(s, arr ? "[Array]" : "[Object]");
            return;
        }
        bool first = true;
        while (bson_iter_next(&it)) {
            bson_string_append(s, first ? (arr ? "[ " : "{ ") : ", ");
            first = false;
            if (!arr) {
                const char *k = bson_iter_key(&it);
                if (is_identifier(k))
                    bson_string_append(s, k);
                else
                    inspect_string(s, k, (uint32_t)strlen(k));
                bson_string_append(s, ": ");
            }
            inspect(s, bson_iter_value(&it), depth + 1);
        }
        bson_string_append(s, first ? (arr ? "[]" : "{}") : (arr ? " ]" : " }"));
        return;
    }
    case BSON_TYPE_DATE_TIME: {
        int64_t ms = v->value.v_datetime;
        if (ms > MAX_DATE_MS || ms < -MAX_DATE_MS)
            bson_string_append(s, "Invalid Date");
        else
            date_iso(s, ms);
        return;
    }
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(&v->value.v_oid, hex);
        bson_string_append_printf(s, "new ObjectId('%s')", hex);
        return;
    }
    case BSON_TYPE_BINARY: {
        uint32_t n = v->value.v_binary.data_len;
        bson_string_append(s, "<Buffer");
        for (uint32_t i = 0; i < n && i < 50; i++)
            bson_string_append_printf(s, " %02x", v->value.v_binary.data[i]);
        if (n > 50) bson_string_append_printf(s, " ... %u more bytes", n - 50);
        bson_string_append_c(s, '>');
        return;
    }
    case BSON_TYPE_DECIMAL128: {
        char dec[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, dec);
        bson_string_append_printf(s, "new Decimal128('%s')", dec);
        return;
    }
    case BSON_TYPE_TIMESTAMP:
        bson_string_append_printf(s, "new Timestamp({ t: %u, i: %u })",
                                  v->value.v_timestamp.timestamp, v->value.v_timestamp.increment);
        return;
    case BSON_TYPE_MINKEY:
        bson_string_append(s, "new MinKey()");
        return;
    case BSON_TYPE_MAXKEY:
        bson_string_append(s, "new MaxKey()");
        return;
    case BSON_TYPE_EOD:
    case BSON_TYPE_UNDEFINED:
        bson_string_append(s, "undefined");
        return;
    case BSON_TYPE_NULL:
        bson_string_append(s, "null");
        return;
    case BSON_TYPE_BOOL:
        bson_string_append(s, v->value.v_bool ? "true" : "false");
        return;
    case BSON_TYPE_CODE:
        bson_string_append(s, "new Code(");
        inspect_string(s, v->value.v_code.code, v->value.v_code.code_len);
        bson_string_append_c(s, ')');
        return;
    default:
        js_to_string(s, v);
        return; /* regex, symbol: their string form */
    }
}

void mk_cast_inspect(bson_string_t *s, const bson_value_t *v)
{
    inspect(s, v, 0);
}

/* ---------- the casts ---------- */

static void set_double(bson_value_t *out, double d)
{
    out->value_type = BSON_TYPE_DOUBLE;
    out->value.v_double = d;
}

/* A JS number as the driver stores it: int32 when integral and in range, else double. */
static void set_js_number(bson_value_t *out, double d)
{
    if (d == floor(d) && d >= INT32_MIN && d <= INT32_MAX && !(d == 0 && signbit(d))) {
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = (int32_t)d;
    } else
        set_double(out, d);
}

static int set_utf8(bson_value_t *out, const char *s, size_t len)
{
    char *copy = bson_malloc(len + 1);
    memcpy(copy, s, len);
    copy[len] = 0;
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.str = copy;
    out->value.v_utf8.len = (uint32_t)len;
    return CAST_OK;
}

static int set_binary(bson_value_t *out, bson_subtype_t sub, const uint8_t *data, uint32_t n)
{
    out->value_type = BSON_TYPE_BINARY;
    out->value.v_binary.subtype = sub;
    out->value.v_binary.data_len = n;
    out->value.v_binary.data = bson_malloc(n ? n : 1);
    if (n) memcpy(out->value.v_binary.data, data, n);
    return CAST_OK;
}

static bool is_empty_string(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.len == 0;
}

static int cast_string(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    if (in->value_type == BSON_TYPE_ARRAY) return fail(f, NULL);
    if (in->value_type == BSON_TYPE_DOCUMENT) {
        /* a document given for a string path casts to its _id when that is a string */
        bson_t doc;
        bson_iter_t it;
        if (doc_of(in, &doc) && bson_iter_init_find(&it, &doc, "_id") &&
            BSON_ITER_HOLDS_UTF8(&it)) {
            uint32_t n;
            const char *id = bson_iter_utf8(&it, &n);
            return set_utf8(out, id, n);
        }
        return fail(f, NULL);
    }
    if (in->value_type == BSON_TYPE_UTF8)
        return set_utf8(out, in->value.v_utf8.str, in->value.v_utf8.len);
    bson_string_t *s = bson_string_new(NULL);
    int rc = js_to_string(s, in) ? set_utf8(out, s->str, s->len) : fail(f, NULL);
    bson_string_free(s, true);
    return rc;
}

static int cast_number(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    if (is_empty_string(in)) return CAST_OK; /* '' is null for Number */
    if (in->value_type == BSON_TYPE_ARRAY) return fail(f, NULL);
    double d = js_to_number(in);
    if (isnan(d)) return fail(f, NULL);
    set_js_number(out, d);
    return CAST_OK;
}

static bool number_is(const bson_value_t *v, double x)
{
    return is_number(v) && number_of(v) == x;
}

static bool string_is(const bson_value_t *v, const char *s)
{
    return v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.len == strlen(s) &&
           memcmp(v->value.v_utf8.str, s, v->value.v_utf8.len) == 0;
}

static int cast_boolean(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    bool t = (in->value_type == BSON_TYPE_BOOL && in->value.v_bool) || number_is(in, 1) ||
             string_is(in, "true") || string_is(in, "1") || string_is(in, "yes");
    bool fa = (in->value_type == BSON_TYPE_BOOL && !in->value.v_bool) || number_is(in, 0) ||
              string_is(in, "false") || string_is(in, "0") || string_is(in, "no");
    if (!t && !fa) return fail(f, "CastError"); /* castBoolean throws a CastError itself */
    out->value_type = BSON_TYPE_BOOL;
    out->value.v_bool = t;
    return CAST_OK;
}

static int set_date(bson_value_t *out, double ms, fail_t *f)
{
    if (isnan(ms) || ms > MAX_DATE_MS || ms < -MAX_DATE_MS) return fail(f, NULL);
    out->value_type = BSON_TYPE_DATE_TIME;
    out->value.v_datetime = (int64_t)trunc(ms) + 0; /* TimeClip truncates toward zero */
    return CAST_OK;
}

static int cast_date(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    switch (in->value_type) {
    case BSON_TYPE_DATE_TIME:
        return set_date(out, (double)in->value.v_datetime, f);
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
        return set_date(out, number_of(in), f);
    case BSON_TYPE_UTF8: {
        if (in->value.v_utf8.len == 0) return CAST_OK; /* '' is null (empty form values) */
        double n = mk_cast_js_string_number(in->value.v_utf8.str, in->value.v_utf8.len);
        /* numbers outside the range of years are milliseconds; '2020' is a year */
        if (!isnan(n) && (n >= 275761 || n < -271820)) return set_date(out, n, f);
        int64_t ms;
        if (!mk_cast_parse_date(in->value.v_utf8.str, in->value.v_utf8.len, &ms))
            return fail(f, NULL);
        return set_date(out, (double)ms, f);
    }
    default:
        return fail(f, NULL); /* booleans, documents, arrays, ObjectIds, ... */
    }
}

static bool js_truthy(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        return false;
    case BSON_TYPE_BOOL:
        return v->value.v_bool;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE: {
        double d = number_of(v);
        return d != 0 && !isnan(d);
    }
    case BSON_TYPE_UTF8:
        return v->value.v_utf8.len > 0;
    default:
        return true;
    }
}

/* A hex digit's value plus one; 0 for anything else. */
static const uint8_t hex_value1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

static int oid_from_string_of(const bson_value_t *v, bson_value_t *out, fail_t *f)
{
    if (v->value_type == BSON_TYPE_UTF8) { /* 24 hex digits (String(x) stops at a NUL) */
        const unsigned char *str = (const unsigned char *)v->value.v_utf8.str;
        if (v->value.v_utf8.len < 24 || (v->value.v_utf8.len > 24 && str[24] != 0))
            return fail(f, "BSONError");
        bool ok = true;
        for (int i = 0; i < 12; i++) {
            uint8_t hi = hex_value1[str[2 * i]], lo = hex_value1[str[2 * i + 1]];
            ok &= hi && lo;
            out->value.v_oid.bytes[i] = (uint8_t)(((hi - 1u) << 4) | (lo - 1u));
        }
        if (!ok) return fail(f, "BSONError");
        out->value_type = BSON_TYPE_OID;
        return CAST_OK;
    }
    bson_string_t *s = bson_string_new(NULL);
    bool ok = js_to_string(s, v) && s->len == 24 && bson_oid_is_valid(s->str, 24);
    if (ok) {
        out->value_type = BSON_TYPE_OID;
        bson_oid_init_from_string(&out->value.v_oid, s->str);
    }
    bson_string_free(s, true);
    return ok ? CAST_OK : fail(f, "BSONError"); /* new ObjectId(str) throws a BSONError */
}

static int cast_objectid(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    if (in->value_type == BSON_TYPE_OID) {
        *out = *in;
        return CAST_OK;
    }
    if (in->value_type == BSON_TYPE_DOCUMENT) {
        bson_t doc;
        bson_iter_t it;
        if (doc_of(in, &doc) && bson_iter_init_find(&it, &doc, "_id")) {
            const bson_value_t *id = bson_iter_value(&it);
            if (js_truthy(id)) {
                if (id->value_type == BSON_TYPE_OID) {
                    *out = *id;
                    return CAST_OK;
                }
                return oid_from_string_of(id, out, f);
            }
        }
        return fail(f, "BSONError"); /* "[object Object]" */
    }
    return oid_from_string_of(in, out, f);
}

/* Buffer.from([...]) stores each element as ToUint8(Number(x)). */
static uint8_t to_uint8(double d)
{
    if (!isfinite(d)) return 0;
    double t = fmod(trunc(d), 256);
    if (t < 0) t += 256;
    return (uint8_t)t;
}

static int bytes_from_array(const bson_value_t *arr, bson_value_t *out)
{
    bson_t doc;
    bson_iter_t it;
    uint32_t n = 0;
    if (doc_of(arr, &doc) && bson_iter_init(&it, &doc))
        while (bson_iter_next(&it)) n++;
    uint8_t *bytes = bson_malloc(n ? n : 1);
    uint32_t i = 0;
    if (n && bson_iter_init(&it, &doc))
        while (bson_iter_next(&it) && i < n) {
            const bson_value_t *e = bson_iter_value(&it);
            bytes[i++] = e->value_type == BSON_TYPE_UNDEFINED ? 0 : to_uint8(js_to_number(e));
        }
    out->value_type = BSON_TYPE_BINARY;
    out->value.v_binary.subtype = BSON_SUBTYPE_BINARY;
    out->value.v_binary.data = bytes;
    out->value.v_binary.data_len = i;
    return CAST_OK;
}

static int cast_buffer(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    switch (in->value_type) {
    case BSON_TYPE_BINARY:
        return set_binary(out, in->value.v_binary.subtype, in->value.v_binary.data,
                          in->value.v_binary.data_len);
    case BSON_TYPE_UTF8:
        return set_binary(out, BSON_SUBTYPE_BINARY, (const uint8_t *)in->value.v_utf8.str,
                          in->value.v_utf8.len);
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE: {
        uint8_t b = to_uint8(number_of(in));
        return set_binary(out, BSON_SUBTYPE_BINARY, &b, 1);
    }
    case BSON_TYPE_ARRAY:
        return bytes_from_array(in, out);
    case BSON_TYPE_DOCUMENT: {
        /* a Buffer's JSON form: { type: 'Buffer', data: [ ... ] } */
        bson_t doc;
        bson_iter_t t, d;
        if (doc_of(in, &doc) && bson_iter_init_find(&t, &doc, "type") &&
            bson_iter_init_find(&d, &doc, "data") && BSON_ITER_HOLDS_ARRAY(&d) &&
            string_is(bson_iter_value(&t), "Buffer"))
            return bytes_from_array(bson_iter_value(&d), out);
        return fail(f, NULL);
    }
    default:
        return fail(f, NULL);
    }
}

static int decimal_from_string(const char *s, size_t len, bson_value_t *out, fail_t *f)
{
    if (len == 0 || !bson_decimal128_from_string_w_len(s, (int)len, &out->value.v_decimal128))
        return fail(f, "BSONError"); /* Decimal128.fromString throws a BSONError */
    out->value_type = BSON_TYPE_DECIMAL128;
    return CAST_OK;
}

static int cast_decimal(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    char num[32];
    switch (in->value_type) {
    case BSON_TYPE_DECIMAL128:
        *out = *in;
        return CAST_OK;
    case BSON_TYPE_UTF8:
        return decimal_from_string(in->value.v_utf8.str, in->value.v_utf8.len, out, f);
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE: /* through String(number): 0.1 is exactly 0.1 */
        mk_cast_js_number_string(number_of(in), num);
        return decimal_from_string(num, strlen(num), out, f);
    case BSON_TYPE_BINARY: /* 16 raw bytes, little-endian as BSON stores them */
        if (in->value.v_binary.data_len != 16) return fail(f, "BSONError");
        memcpy(&out->value.v_decimal128.low, in->value.v_binary.data, 8);
        memcpy(&out->value.v_decimal128.high, in->value.v_binary.data + 8, 8);
        out->value.v_decimal128.low = BSON_UINT64_FROM_LE(out->value.v_decimal128.low);
        out->value.v_decimal128.high = BSON_UINT64_FROM_LE(out->value.v_decimal128.high);
        out->value_type = BSON_TYPE_DECIMAL128;
        return CAST_OK;
    case BSON_TYPE_DOCUMENT: {
        bson_t doc;
        bson_iter_t it;
        if (doc_of(in, &doc) && bson_iter_init_find(&it, &doc, "$numberDecimal") &&
            BSON_ITER_HOLDS_UTF8(&it)) {
            uint32_t n;
            const char *s = bson_iter_utf8(&it, &n);
            return decimal_from_string(s, n, out, f);
        }
        return fail(f, NULL);
    }
    default:
        return fail(f, NULL);
    }
}

/* JS's BigInt(string) into int64: 0 = ok, 1 = SyntaxError, 2 = out of int64's range. */
static int bigint_from_string(const char *s, size_t len, int64_t *out)
{
    js_trim(&s, &len);
    if (len == 0) {
        *out = 0;
        return 0;
    }
    int base = 10;
    size_t i = 0;
    bool neg = false;
    if (len > 2 && s[0] == '0' && strchr("xXoObB", s[1])) {
        base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
        i = 2;
    } else if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == len) return 1;
    uint64_t mag = 0;
    bool big = false;
    for (; i < len; i++) {
        int d = digit_value(s[i]);
        if (d >= base) return 1;
        if (mag > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            big = true;
        else
            mag = mag * (uint64_t)base + (uint64_t)d;
    }
    if (big || mag > (uint64_t)INT64_MAX + (neg ? 1 : 0)) return 2;
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

static int cast_bigint(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    int64_t v;
    switch (in->value_type) {
    case BSON_TYPE_INT64:
        v = in->value.v_int64;
        break;
    case BSON_TYPE_INT32:
        v = in->value.v_int32;
        break;
    case BSON_TYPE_DOUBLE: {
        double d = in->value.v_double;
        if (!isfinite(d) || d != trunc(d)) return fail(f, "RangeError");
        if (d >= 0x1p63 || d < -0x1p63) return fail(f, NULL); /* Mongoose's range Error */
        v = (int64_t)d;
        break;
    }
    case BSON_TYPE_UTF8: {
        if (in->value.v_utf8.len == 0) return CAST_OK; /* '' is null */
        int rc = bigint_from_string(in->value.v_utf8.str, in->value.v_utf8.len, &v);
        if (rc == 1) return fail(f, "SyntaxError");
        if (rc == 2) return fail(f, NULL);
        break;
    }
    default:
        return fail(f, NULL);
    }
    out->value_type = BSON_TYPE_INT64;
    out->value.v_int64 = v;
    return CAST_OK;
}

static int cast_int32(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    if (is_empty_string(in)) return CAST_OK;
    double d = js_to_number(in);
    if (isnan(d) || d != trunc(d) || d < INT32_MIN || d > INT32_MAX) return fail(f, NULL);
    out->value_type = BSON_TYPE_INT32;
    out->value.v_int32 = (int32_t)d;
    return CAST_OK;
}

/* BSON's Double.fromString: decimal or exponential notation only, no white space. */
static int double_from_string(const char *s, size_t len, bson_value_t *out, fail_t *f)
{
    if (len == 3 && memcmp(s, "NaN", 3) == 0) return set_double(out, NAN), CAST_OK;
    if (len == 8 && memcmp(s, "Infinity", 8) == 0) return set_double(out, INFINITY), CAST_OK;
    if (len == 9 && memcmp(s, "-Infinity", 9) == 0) return set_double(out, -INFINITY), CAST_OK;
    double d = mk_cast_js_string_number(s, len);
    if (!isfinite(d) || len == 0) return fail(f, "BSONError");
    for (size_t i = 0; i < len; i++)
        if (!strchr("-0123456789.+eE", s[i]) || s[i] == 0) return fail(f, "BSONError");
    set_double(out, d);
    return CAST_OK;
}

static int cast_double(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    bson_value_t one;
    if (in->value_type == BSON_TYPE_ARRAY) {
        /* an array of exactly one (non-array) element casts that element */
        bson_t doc;
        bson_iter_t it;
        if (!doc_of(in, &doc) || !bson_iter_init(&it, &doc) || !bson_iter_next(&it))
            return fail(f, NULL);
        one = *bson_iter_value(&it);
        if (bson_iter_next(&it) || one.value_type == BSON_TYPE_ARRAY) return fail(f, NULL);
        if (one.value_type == BSON_TYPE_NULL || one.value_type == BSON_TYPE_UNDEFINED)
            return CAST_OK;
        in = &one;
    }
    switch (in->value_type) {
    case BSON_TYPE_UTF8:
        return double_from_string(in->value.v_utf8.str, in->value.v_utf8.len, out, f);
    case BSON_TYPE_SYMBOL:
        return double_from_string(in->value.v_symbol.symbol, in->value.v_symbol.len, out, f);
    default:
        set_double(out, js_to_number(in));
        return CAST_OK; /* {} becomes NaN, as in JS */
    }
}

static bool uuid_at(const char *s, size_t len)
{
    static const char shape[] = "xxxxxxxx-xxxx-vxxx-nxxx-xxxxxxxxxxxx";
    if (len < 36) return false;
    for (size_t i = 0; i < 36; i++) {
        char c = (char)tolower((unsigned char)s[i]);
        bool hex = isxdigit((unsigned char)c);
        if ((shape[i] == '-' && c != '-') || (shape[i] == 'x' && !hex) ||
            (shape[i] == 'v' && !isdigit((unsigned char)c)) ||
            (shape[i] == 'n' && !(c == '8' || c == '9' || c == 'a' || c == 'b')))
            return false;
    }
    return true;
}

static int uuid_from_text(const char *s, size_t len, bson_value_t *out, fail_t *f)
{
    if (len == 36 && uuid_at(s, len)) {
        uint8_t b[16];
        for (size_t i = 0, k = 0; i < 36 && k < 16; i++) {
            if (s[i] == '-') continue;
            b[k++] = (uint8_t)(digit_value(s[i]) * 16 + digit_value(s[i + 1]));
            i++;
        }
        return set_binary(out, BSON_SUBTYPE_UUID, b, 16);
    }
    /* Mongoose's UUID pattern is unanchored: text around a UUID passes it, then new UUID()
     * rejects the whole string with a BSONError */
    for (size_t i = 0; i + 36 <= len; i++)
        if (uuid_at(s + i, len - i)) return fail(f, "BSONError");
    return fail(f, NULL);
}

static int cast_uuid(const bson_value_t *in, bson_value_t *out, fail_t *f)
{
    if (in->value_type == BSON_TYPE_BINARY && in->value.v_binary.subtype == BSON_SUBTYPE_UUID &&
        in->value.v_binary.data_len == 16)
        return set_binary(out, BSON_SUBTYPE_UUID, in->value.v_binary.data, 16);
    if (in->value_type == BSON_TYPE_DOCUMENT) return fail(f, NULL);
    bson_string_t *s = bson_string_new(NULL);
    int rc = js_to_string(s, in) ? uuid_from_text(s->str, s->len, out, f) : fail(f, NULL);
    bson_string_free(s, true);
    return rc;
}

const char *mk_cast_kind(mk_cast_type_t to)
{
    switch (to) {
    case MK_CAST_STRING:
        return "string";
    case MK_CAST_NUMBER:
        return "Number";
    case MK_CAST_BOOLEAN:
        return "Boolean";
    case MK_CAST_DATE:
        return "date";
    case MK_CAST_OBJECTID:
        return "ObjectId";
    case MK_CAST_BUFFER:
        return "Buffer";
    case MK_CAST_DECIMAL128:
        return "Decimal128";
    case MK_CAST_BIGINT:
        return "BigInt";
    case MK_CAST_INT32:
        return "Int32";
    case MK_CAST_DOUBLE:
        return "Double";
    case MK_CAST_UUID:
        return "UUID";
    }
    return "unknown";
}

static int cast_error(mk_cast_type_t to, const bson_value_t *in, const char *path,
                      const char *model, const char *reason, mk_error_t *err)
{
    if (!err) return MK_ERR;
    bson_string_t *s = bson_string_new(NULL);
    inspect(s, in, 0);
    /* CastError#stringValue: the leading/trailing ' of a string become ", else quoted */
    const char *shown = s->str;
    size_t n = s->len;
    bool quoted = n >= 2 && shown[0] == '\'' && shown[n - 1] == '\'';
    bool starts_dq = n > 0 && shown[0] == '"';
    bson_string_t *msg = bson_string_new("Cast to ");
    bson_string_append_printf(msg, "%s failed for value ", mk_cast_kind(to));
    if (quoted)
        bson_string_append_printf(msg, "\"%.*s\"", (int)(n - 2), shown + 1);
    else if (starts_dq)
        bson_string_append(msg, shown);
    else
        bson_string_append_printf(msg, "\"%s\"", shown);
    bson_string_append_printf(msg, " (type %s) at path \"%s\"", mk_cast_js_type_name(in),
                              path ? path : "");
    if (model)
        bson_string_append_printf(msg, " for model \"%s\"", model);
    else if (reason)
        bson_string_append_printf(msg, " because of \"%s\"", reason);
    mk_error_set(err, 0, "CastError", "%s", msg->str);
    bson_string_free(msg, true);
    bson_string_free(s, true);
    return MK_ERR;
}

int mk_cast_value_at(mk_cast_type_t to, const bson_value_t *in, const char *path, const char *model,
                     bson_value_t *out, mk_error_t *err)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_NULL;
    if (in->value_type == BSON_TYPE_NULL || in->value_type == BSON_TYPE_UNDEFINED ||
        in->value_type == BSON_TYPE_EOD)
        return MK_OK; /* nullish values are valid for every type */
    fail_t f = {NULL};
    int rc;
    switch (to) {
    case MK_CAST_STRING:
        rc = cast_string(in, out, &f);
        break;
    case MK_CAST_NUMBER:
        rc = cast_number(in, out, &f);
        break;
    case MK_CAST_BOOLEAN:
        rc = cast_boolean(in, out, &f);
        break;
    case MK_CAST_DATE:
        rc = cast_date(in, out, &f);
        break;
    case MK_CAST_OBJECTID:
        rc = cast_objectid(in, out, &f);
        break;
    case MK_CAST_BUFFER:
        rc = cast_buffer(in, out, &f);
        break;
    case MK_CAST_DECIMAL128:
        rc = cast_decimal(in, out, &f);
        break;
    case MK_CAST_BIGINT:
        rc = cast_bigint(in, out, &f);
        break;
    case MK_CAST_INT32:
        rc = cast_int32(in, out, &f);
        break;
    case MK_CAST_DOUBLE:
        rc = cast_double(in, out, &f);
        break;
    case MK_CAST_UUID:
        rc = cast_uuid(in, out, &f);
        break;
    default:
        return mk_error_set(err, 0, "CastError", "unknown cast type %d", (int)to);
    }
    if (rc == CAST_OK) return MK_OK;
    out->value_type = BSON_TYPE_NULL;
    return cast_error(to, in, path, model, f.reason, err);
}
