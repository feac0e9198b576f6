/* Relaxed JSON (mongo-shell syntax) -> BSON, with bound `?` placeholders.
 *
 * One pass of recursive descent that appends straight into the caller's bson_t (sub-documents
 * through bson_append_document_begin/end, so one buffer grows). The nesting depth is checked
 * before every descent, so hostile input cannot exhaust the C stack. Strings without escapes
 * are appended from the text itself; decoded strings go to one scratch buffer (on the stack
 * until it outgrows it) addressed by offsets, so no token costs a malloc.
 *
 * Choices worth knowing:
 * - Duplicate keys are kept as written, in order (BSON can hold both; nothing is silently
 *   dropped, and the engine reports what it makes of them).
 * - A `?` is a placeholder only in value position; a bound value is appended as data and never
 *   parsed, so a bound string cannot turn into an operator or a key.
 * - An object whose first key is an Extended JSON wrapper ($oid, $date, ...) is that BSON
 *   value; a wrong shape is an error, never silently a document. `$regex`/`$options` and `$type`
 *   stay ordinary keys: they are query operators.
 * - Dates written without an offset are UTC (as ISODate does), never local time.
 * - -0 is the double -0.0 (as mongosh stores it), other integer literals int32 or int64.
 * - Errors are FailedToParse (9) with "line L, column C: " (columns count characters), except
 *   a result beyond 16 MiB, which is BSONObjectTooLarge (10334) as in MongoDB. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l */
#endif
#include <meerkat/engine.h>
#include <meerkat/json.h>

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------- small character helpers ---------- */

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool is_ident_start(unsigned char c)
{
    return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_' || c == '$';
}

static bool is_ident_char(unsigned char c)
{
    return is_ident_start(c) || is_digit(c);
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Non-ASCII code points JavaScript treats as white space or line ends. */
static bool is_unicode_space(uint32_t cp)
{
    return cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

/* Length (1..4) of the well-formed UTF-8 sequence at p, or 0 (overlong, surrogate, truncated,
 * beyond U+10FFFF). */
static size_t utf8_seq(const char *s, const char *e, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s, *end = (const unsigned char *)e;
    unsigned c = p[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool span_eq(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(s, lit, l) == 0;
}

/* ---------- numbers, dates, encodings (pure functions on text) ---------- */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* strtod in the C locale (the program's LC_NUMERIC must not change what "1.5" means).
 * Returns 0, MK_ERR when the whole text is not a number, MK_ENOMEM. */
static int text_to_double(const char *s, size_t len, double *out)
{
    char buf[128], *t = buf;
    if (len >= sizeof buf) {
        t = malloc(len + 1);
        if (!t) return MK_ENOMEM;
    }
    memcpy(t, s, len);
    t[len] = '\0';
    pthread_once(&c_locale_once, c_locale_init);
    char *e;
    *out = c_locale ? strtod_l(t, &e, c_locale) : strtod(t, &e);
    bool ok = len > 0 && e == t + len;
    if (t != buf) free(t);
    return ok ? 0 : MK_ERR;
}

typedef enum num_type { NUM_I32, NUM_I64, NUM_DBL } num_type_t;

typedef struct num {
    num_type_t type;
    int64_t i; /* NUM_I32, NUM_I64 */
    double d;  /* NUM_DBL */
} num_t;

static const char *const ERR_NOMEM_TEXT = "out of memory";

/* Scans a JavaScript number literal at s: [+-] then Infinity, NaN, 0x hex, or decimal with
 * optional fraction and exponent. Sets *stop after it. Returns NULL, or a detail of what is
 * wrong (possibly "") to append to "invalid number '...'", or ERR_NOMEM_TEXT. */
static const char *scan_number(const char *s, const char *end, num_t *n, const char **stop)
{
    const char *p = s;
    bool neg = false;
    if (p < end && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if ((size_t)(end - p) >= 8 && memcmp(p, "Infinity", 8) == 0) {
        n->type = NUM_DBL, n->d = neg ? -INFINITY : INFINITY;
        *stop = p + 8;
        return NULL;
    }
    if ((size_t)(end - p) >= 3 && memcmp(p, "NaN", 3) == 0) {
        n->type = NUM_DBL, n->d = NAN;
        *stop = p + 3;
        return NULL;
    }
    uint64_t u = 0;
    bool overflow = false;
    if (end - p >= 2 && p[0] == '0' && (p[1] | 0x20) == 'x') {
        const char *h = p + 2, *q = h;
        for (; q < end && hex_val((unsigned char)*q) >= 0; q++) {
            if (u > (UINT64_MAX >> 4)) overflow = true;
            u = (u << 4) | (uint64_t)hex_val((unsigned char)*q);
        }
        if (q == h) return "";
        *stop = q;
        if (overflow) {
            /* Beyond 64 bits: strtod rounds hex text exactly. */
            int rc = text_to_double(s, (size_t)(q - s), &n->d);
            if (rc == MK_ENOMEM) return ERR_NOMEM_TEXT;
            n->type = NUM_DBL;
            return rc ? "" : NULL;
        }
    } else {
        const char *ip = p;
        while (p < end && is_digit((unsigned char)*p)) p++;
        size_t nint = (size_t)(p - ip), nfrac = 0;
        bool is_float = false;
        if (p < end && *p == '.') {
            p++;
            const char *fp = p;
            while (p < end && is_digit((unsigned char)*p)) p++;
            nfrac = (size_t)(p - fp);
            is_float = true;
        }
        if (nint == 0 && nfrac == 0) return "";
        if (p < end && (*p | 0x20) == 'e') {
            p++;
            if (p < end && (*p == '+' || *p == '-')) p++;
            const char *ep = p;
            while (p < end && is_digit((unsigned char)*p)) p++;
            if (p == ep) return ": the exponent has no digits";
            is_float = true;
        }
        if (nint > 1 && *ip == '0') return ": leading zeros are not allowed";
        *stop = p;
        if (!is_float) {
            for (const char *q = ip; q < ip + nint; q++) {
                unsigned dgt = (unsigned)(*q - '0');
                if (u > (UINT64_MAX - dgt) / 10) {
                    overflow = true;
                    break;
                }
                u = u * 10 + dgt;
            }
        }
        if (is_float || overflow) {
            int rc = text_to_double(s, (size_t)(p - s), &n->d);
            if (rc == MK_ENOMEM) return ERR_NOMEM_TEXT;
            n->type = NUM_DBL;
            return rc ? "" : NULL;
        }
    }
    /* An integer: int32 when it fits, else int64, else double; -0 is the double -0.0. */
    if (neg && u == 0) {
        n->type = NUM_DBL, n->d = -0.0;
    } else if (!neg && u <= INT32_MAX) {
        n->type = NUM_I32, n->i = (int64_t)u;
    } else if (neg && u <= (uint64_t)INT32_MAX + 1) {
        n->type = NUM_I32, n->i = -(int64_t)u;
    } else if (!neg && u <= INT64_MAX) {
        n->type = NUM_I64, n->i = (int64_t)u;
    } else if (neg && u <= (uint64_t)INT64_MAX + 1) {
        n->type = NUM_I64, n->i = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        n->type = NUM_DBL, n->d = neg ? -(double)u : (double)u;
    }
    return NULL;
}

/* An integral value of a number literal (doubles only when integral and within int64). */
static bool num_to_int64(const num_t *n, int64_t *out)
{
    if (n->type != NUM_DBL) {
        *out = n->i;
        return true;
    }
    /* -2^63 <= d < 2^63 */
    if (!(n->d >= -9223372036854775808.0 && n->d < 9223372036854775808.0)) return false;
    if (n->d != trunc(n->d)) return false;
    *out = (int64_t)n->d;
    return true;
}

/* Strict decimal integer text: [+-]digits, nothing else, within int64. */
static bool text_to_int64(const char *s, size_t len, int64_t *out)
{
    const char *p = s, *end = s + len;
    bool neg = false;
    if (p < end && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if (p == end) return false;
    uint64_t u = 0;
    for (; p < end; p++) {
        if (!is_digit((unsigned char)*p)) return false;
        unsigned d = (unsigned)(*p - '0');
        if (u > (UINT64_MAX - d) / 10) return false;
        u = u * 10 + d;
    }
    if (!neg) {
        if (u > INT64_MAX) return false;
        *out = (int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX + 1) return false;
        *out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    }
    return true;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dm[m - 1];
}

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (400-year eras of 146097 days,
 * years counted from March so that the leap day ends a year). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    if (m <= 2) y -= 1;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Reads exactly n digits. */
static bool read_digits(const char **pp, const char *end, int n, int64_t *out)
{
    const char *p = *pp;
    int64_t v = 0;
    if (end - p < n) return false;
    for (int i = 0; i < n; i++) {
        if (!is_digit((unsigned char)p[i])) return false;
        v = v * 10 + (p[i] - '0');
    }
    *pp = p + n;
    *out = v;
    return true;
}

/* ISO-8601 date-time as mongosh's ISODate takes it: [+-]YYYY[YYYYY]-MM-DD or YYYYMMDD,
 * optionally [T ]HH:MM[:SS[.fff]] (colons optional), optionally Z or +-HH[:MM]. Without an
 * offset the time is UTC. Fractions beyond milliseconds are truncated. */
static bool parse_iso_date(const char *s, size_t len, int64_t *ms_out)
{
    const char *p = s, *end = s + len;
    int sign = 1;
    if (p < end && (*p == '+' || *p == '-')) sign = *p++ == '-' ? -1 : 1;
    const char *yp = p;
    while (p < end && is_digit((unsigned char)*p)) p++;
    size_t ny = (size_t)(p - yp);
    int64_t year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, ms = 0, offset_min = 0;
    const char *q = yp;
    if (ny == 8 && sign == 1 && yp[0] != '+' && (p == end || *p != '-')) {
        read_digits(&q, end, 4, &year);
        read_digits(&q, end, 2, &month);
        read_digits(&q, end, 2, &day);
        p = q;
    } else {
        if (ny < 4 || ny > 9) return false;
        read_digits(&q, end, (int)ny, &year);
        if (p >= end || *p != '-') return false;
        p++;
        if (!read_digits(&p, end, 2, &month)) return false;
        if (p >= end || *p != '-') return false;
        p++;
        if (!read_digits(&p, end, 2, &day)) return false;
    }
    year *= sign;
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, (int)month)) return false;
    if (p < end && (*p == 'T' || *p == 't' || *p == ' ')) {
        p++;
        if (!read_digits(&p, end, 2, &hour)) return false;
        if (p < end && *p == ':') p++;
        if (!read_digits(&p, end, 2, &minute)) return false;
        if (p < end && (*p == ':' || is_digit((unsigned char)*p))) {
            if (*p == ':') p++;
            if (!read_digits(&p, end, 2, &second)) return false;
            if (p < end && *p == '.') {
                p++;
                const char *f = p;
                while (p < end && is_digit((unsigned char)*p)) {
                    if (p - f < 3) ms = ms * 10 + (*p - '0');
                    p++;
                }
                if (p == f) return false;
                for (ptrdiff_t k = p - f; k < 3; k++) ms *= 10;
            }
        }
        if (hour > 23 || minute > 59 || second > 59) return false;
        if (p < end && (*p == 'Z' || *p == 'z')) {
            p++;
        } else if (p < end && (*p == '+' || *p == '-')) {
            int osign = *p++ == '-' ? -1 : 1;
            int64_t oh, om = 0;
            if (!read_digits(&p, end, 2, &oh)) return false;
            if (p < end && *p == ':') p++;
            if (p < end && !read_digits(&p, end, 2, &om)) return false;
            if (oh > 23 || om > 59) return false;
            offset_min = osign * (oh * 60 + om);
        }
    }
    if (p != end) return false;
    int64_t days = days_from_civil(year, (int)month, (int)day), t;
    int64_t in_day = ((hour * 60 + minute - offset_min) * 60 + second) * 1000 + ms;
    if (__builtin_mul_overflow(days, (int64_t)86400000, &t) ||
        __builtin_add_overflow(t, in_day, &t))
        return false;
    *ms_out = t;
    return true;
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict standard base64 with padding; out needs len / 4 * 3 bytes. */
static bool b64_decode(const char *s, size_t len, uint8_t *out, size_t *out_len)
{
    if (len % 4) return false;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t t = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)s[i + j];
            int v = 0;
            if (c == '=') {
                if (i + 4 != len || j < 2) return false;
                pad++;
            } else {
                if (pad) return false;
                v = b64_val(c);
                if (v < 0) return false;
            }
            t = (t << 6) | (uint32_t)v;
        }
        out[o++] = (uint8_t)(t >> 16);
        if (pad < 2) out[o++] = (uint8_t)(t >> 8);
        if (pad < 1) out[o++] = (uint8_t)t;
    }
    *out_len = o;
    return true;
}

/* 32 hex digits, or 36 characters with dashes at 8-4-4-4-12. */
static bool parse_uuid(const char *s, size_t len, uint8_t out[16])
{
    bool dashed = len == 36;
    if (len != 32 && !dashed) return false;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (dashed && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (s[i] != '-') return false;
            i++;
            continue;
        }
        int hi = hex_val((unsigned char)s[i]), lo = hex_val((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[o++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return o == 16;
}

/* MongoDB's regex options, validated and stored sorted ("ilmsux"). Returns len when all are
 * valid, else the index of the first unknown or repeated flag. */
static size_t regex_options(const char *s, size_t len, char out[8])
{
    static const char order[] = "ilmsux";
    bool seen[6] = {false};
    for (size_t i = 0; i < len; i++) {
        const char *at = s[i] ? strchr(order, s[i]) : NULL;
        if (!at || seen[at - order]) return i;
        seen[at - order] = true;
    }
    size_t o = 0;
    for (int k = 0; k < 6; k++)
        if (seen[k]) out[o++] = order[k];
    out[o] = '\0';
    return len;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- parser state and errors ---------- */

/* A string: in the text (base != NULL) or at an offset of the scratch buffer, which may move. */
typedef struct span {
    const char *base;
    size_t off, len;
} span_t;

typedef struct parser {
    const char *start, *p, *end;
    const mk_arg_t *args;
    size_t nargs, used_args;
    int depth; /* BSON depth of the container being filled (top level = 1) */
    char *scratch;
    size_t slen, scap;
    mk_error_t *err;
    int rc; /* the first error, 0 while none */
    char sbuf[512];
} parser_t;

static const char *sp(const parser_t *P, span_t s)
{
    return s.base ? s.base : P->scratch + s.off;
}

#define KEY(P, k) sp((P), (k)), (int)(k).len

/* Line and column (in characters, from 1) of pos. */
static void locate(const parser_t *P, const char *pos, unsigned long *line, unsigned long *col)
{
    const char *ls = P->start;
    unsigned long l = 1, c = 1;
    for (const char *q = P->start; q < pos; q++) {
        if (*q == '\n' || (*q == '\r' && (q + 1 >= P->end || q[1] != '\n'))) {
            l++;
            ls = q + 1;
        }
    }
    for (const char *q = ls; q < pos; q++)
        if (((unsigned char)*q & 0xC0) != 0x80) c++;
    *line = l;
    *col = c;
}

static int vfail(parser_t *P, int code, const char *pos, const char *fmt, va_list ap)
{
    if (P->rc) return P->rc;
    P->rc = MK_ERR;
    if (!P->err) return MK_ERR;
    unsigned long line, col;
    locate(P, pos, &line, &col);
    char msg[MK_ERROR_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    mk_error_set(P->err, code, mk_error_code_name(code), "line %lu, column %lu: %s", line, col,
                 msg);
    return MK_ERR;
}

__attribute__((format(printf, 3, 4))) static int fail_at(parser_t *P, const char *pos,
                                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(P, MK_CODE_FAILED_TO_PARSE, pos, fmt, ap);
    va_end(ap);
    return rc;
}

__attribute__((format(printf, 4, 5))) static int fail_code(parser_t *P, int code, const char *pos,
                                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(P, code, pos, fmt, ap);
    va_end(ap);
    return rc;
}

static int fail_size(parser_t *P, const char *pos)
{
    return fail_code(P, MK_CODE_BSON_OBJECT_TOO_LARGE, pos,
                     "document exceeds the maximum BSON size of %d bytes", MK_MAX_BSON_SIZE);
}

static int nomem(parser_t *P)
{
    if (P->rc) return P->rc;
    P->rc = MK_ENOMEM;
    mk_error_nomem(P->err);
    return MK_ENOMEM;
}

#define SHOW_MAX 80

/* A printable excerpt of s for a message: control bytes escaped, cut after ~70 bytes. */
static const char *show(char *buf, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (o + 8 >= cap) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        size_t n = c >= 0x80 ? utf8_seq(s + i, s + len, &cp) : 1;
        if (c < 0x20 || c == 0x7f || n == 0) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
            i++;
        } else {
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
        }
    }
    buf[o] = '\0';
    return buf;
}

static const char *show_span(const parser_t *P, char *buf, size_t cap, span_t s)
{
    return show(buf, cap, sp(P, s), s.len);
}

static const char *describe(const parser_t *P, const char *pos, char *buf, size_t cap)
{
    if (pos >= P->end) return "end of input";
    unsigned char c = (unsigned char)*pos;
    uint32_t cp;
    size_t n = c >= 0x80 ? utf8_seq(pos, P->end, &cp) : 1;
    if (c >= 0x20 && c != 0x7f && n)
        snprintf(buf, cap, "'%.*s'", (int)n, pos);
    else
        snprintf(buf, cap, "byte 0x%02x", c);
    return buf;
}

/* "<expected>, found 'x'" -- or the more precise NUL / invalid UTF-8 complaint. */
static int fail_unexpected(parser_t *P, const char *pos, const char *expected)
{
    uint32_t cp;
    if (pos < P->end && *pos == '\0') return fail_at(P, pos, "NUL byte in input");
    if (pos < P->end && (unsigned char)*pos >= 0x80 && !utf8_seq(pos, P->end, &cp))
        return fail_at(P, pos, "invalid UTF-8 in input");
    char buf[16];
    return fail_at(P, pos, "%s, found %s", expected, describe(P, pos, buf, sizeof buf));
}

/* ---------- scratch buffer ---------- */

static int scratch_reserve(parser_t *P, size_t need)
{
    if (need <= P->scap - P->slen) return 0;
    if (need > SIZE_MAX / 4 - P->slen) return nomem(P);
    size_t cap = P->scap * 2;
    while (cap < P->slen + need) cap *= 2;
    char *n = P->scratch == P->sbuf ? malloc(cap) : realloc(P->scratch, cap);
    if (!n) return nomem(P);
    if (P->scratch == P->sbuf) memcpy(n, P->sbuf, P->slen);
    P->scratch = n;
    P->scap = cap;
    return 0;
}

/* s must not point into the scratch buffer. */
static int scratch_put(parser_t *P, const char *s, size_t n)
{
    if (scratch_reserve(P, n)) return P->rc;
    memcpy(P->scratch + P->slen, s, n);
    P->slen += n;
    return 0;
}

/* A NUL-terminated copy of s in the scratch buffer, at *off. */
static int scratch_cstr(parser_t *P, span_t s, size_t *off)
{
    if (scratch_reserve(P, s.len + 1)) return P->rc;
    memcpy(P->scratch + P->slen, sp(P, s), s.len);
    P->scratch[P->slen + s.len] = '\0';
    *off = P->slen;
    P->slen += s.len + 1;
    return 0;
}

/* ---------- lexer ---------- */

/* Skips white space and comments. */
static int skip_ws(parser_t *P)
{
    const char *p = P->p, *end = P->end;
    uint32_t cp;
    for (;;) {
        while (p < end && is_space((unsigned char)*p)) p++;
        if (p >= end) break;
        unsigned char c = (unsigned char)*p;
        if (c == '/' && p + 1 < end && (p[1] == '/' || p[1] == '*')) {
            const char *open = p;
            bool block = p[1] == '*';
            for (p += 2;;) {
                if (p >= end) {
                    if (block) return fail_at(P, open, "unterminated comment");
                    break;
                }
                c = (unsigned char)*p;
                if (!block && (c == '\n' || c == '\r')) break;
                if (block && c == '*' && p + 1 < end && p[1] == '/') {
                    p += 2;
                    break;
                }
                if (c == 0) return fail_at(P, p, "NUL byte in input");
                if (c >= 0x80) {
                    size_t n = utf8_seq(p, end, &cp);
                    if (!n) return fail_at(P, p, "invalid UTF-8 in input");
                    p += n;
                } else {
                    p++;
                }
            }
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq(p, end, &cp);
            if (n && is_unicode_space(cp)) {
                p += n;
                continue;
            }
        }
        break;
    }
    P->p = p;
    return 0;
}

/* \uXXXX or \u{X...}; *pp is at the 'u' and moves past the escape. */
static int read_u_escape(parser_t *P, const char **pp, const char *esc, uint32_t *cp)
{
    const char *p = *pp + 1, *end = P->end;
    uint32_t v = 0;
    if (p < end && *p == '{') {
        const char *h = ++p;
        while (p < end && hex_val((unsigned char)*p) >= 0 && v <= 0x10FFFF)
            v = v * 16 + (uint32_t)hex_val((unsigned char)*p++);
        if (p == h || p >= end || *p != '}' || v > 0x10FFFF)
            return fail_at(P, esc, "invalid \\u{...} escape");
        p++;
    } else {
        for (int i = 0; i < 4; i++, p++) {
            if (p >= end || hex_val((unsigned char)*p) < 0)
                return fail_at(P, esc, "invalid \\u escape: expected 4 hex digits");
            v = v * 16 + (uint32_t)hex_val((unsigned char)*p);
        }
    }
    *pp = p;
    *cp = v;
    return 0;
}

/* One escape sequence after the backslash at esc (*pp is past the backslash); appends the
 * decoded bytes to the scratch buffer. */
static int decode_escape(parser_t *P, const char **pp, const char *esc)
{
    const char *p = *pp, *end = P->end;
    char out[8];
    size_t n = 1;
    uint32_t cp;
    switch (*p) {
    case 'n':
        out[0] = '\n', p++;
        break;
    case 't':
        out[0] = '\t', p++;
        break;
    case 'r':
        out[0] = '\r', p++;
        break;
    case 'b':
        out[0] = '\b', p++;
        break;
    case 'f':
        out[0] = '\f', p++;
        break;
    case 'v':
        out[0] = '\v', p++;
        break;
    case '0':
        if (p + 1 < end && is_digit((unsigned char)p[1]))
            return fail_at(P, esc, "octal escape sequences are not allowed");
        out[0] = '\0', p++;
        break;
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return fail_at(P, esc, "octal escape sequences are not allowed");
    case 'x': {
        int hi = end - p > 2 ? hex_val((unsigned char)p[1]) : -1;
        int lo = end - p > 2 ? hex_val((unsigned char)p[2]) : -1;
        if (hi < 0 || lo < 0) return fail_at(P, esc, "invalid \\x escape: expected 2 hex digits");
        n = utf8_put(out, (uint32_t)(hi * 16 + lo));
        p += 3;
        break;
    }
    case 'u':
        if (read_u_escape(P, &p, esc, &cp)) return P->rc;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* A high surrogate must be followed by a low one: together one code point. */
            uint32_t lo = 0;
            const char *esc2 = p;
            if (end - p >= 2 && p[0] == '\\' && p[1] == 'u') {
                p++;
                if (read_u_escape(P, &p, esc2, &lo)) return P->rc;
            }
            if (lo < 0xDC00 || lo > 0xDFFF)
                return fail_at(P, esc, "invalid \\u escape: lone surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return fail_at(P, esc, "invalid \\u escape: lone surrogate");
        }
        n = utf8_put(out, cp);
        break;
    case '\r': /* line continuation */
        p++;
        if (p < end && *p == '\n') p++;
        n = 0;
        break;
    case '\n':
        p++, n = 0;
        break;
    case '\0':
        return fail_at(P, p, "NUL byte in input");
    default:
        /* Any other character stands for itself (\' \" \\ \/ ...), as in JavaScript. */
        if ((unsigned char)*p >= 0x80) {
            n = utf8_seq(p, end, &cp);
            if (!n) return fail_at(P, p, "invalid UTF-8 in string");
            memcpy(out, p, n);
            p += n;
        } else {
            out[0] = *p++;
        }
        break;
    }
    *pp = p;
    return n ? scratch_put(P, out, n) : 0;
}

/* A single- or double-quoted string at P->p. */
static int lex_string(parser_t *P, span_t *out)
{
    const char *open = P->p, *end = P->end;
    const unsigned char q = (unsigned char)*open;
    const char *s = open + 1, *p = s;
    uint32_t cp;
    /* Fast path: no escapes, the string is a slice of the text. */
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == q) {
            *out = (span_t){s, 0, (size_t)(p - s)};
            P->p = p + 1;
            return 0;
        }
        if (c == '\\') break;
        if (c >= 0x80) {
            size_t n = utf8_seq(p, end, &cp);
            if (!n) return fail_at(P, p, "invalid UTF-8 in string");
            p += n;
            continue;
        }
        if (c == '\n' || c == '\r') return fail_at(P, open, "unterminated string");
        if (c == 0) return fail_at(P, p, "NUL byte in input");
        p++;
    }
    size_t off = P->slen;
    if (scratch_put(P, s, (size_t)(p - s))) return P->rc;
    while (p < end) {
        const char *run = p;
        while (p < end) {
            unsigned char c = (unsigned char)*p;
            if (c == q || c == '\\' || c == '\n' || c == '\r' || c == 0) break;
            if (c >= 0x80) {
                size_t n = utf8_seq(p, end, &cp);
                if (!n) return fail_at(P, p, "invalid UTF-8 in string");
                p += n;
            } else {
                p++;
            }
        }
        if (scratch_put(P, run, (size_t)(p - run))) return P->rc;
        if (p >= end) break;
        unsigned char c = (unsigned char)*p;
        if (c == q) {
            *out = (span_t){NULL, off, P->slen - off};
            P->p = p + 1;
            return 0;
        }
        if (c == '\n' || c == '\r') return fail_at(P, open, "unterminated string");
        if (c == 0) return fail_at(P, p, "NUL byte in input");
        const char *esc = p++;
        if (p >= end) break;
        if (decode_escape(P, &p, esc)) return P->rc;
    }
    return fail_at(P, open, "unterminated string");
}

/* True when the character at p would continue a token (so a number or name ends badly). */
static bool glued(const parser_t *P, const char *p)
{
    if (p >= P->end) return false;
    unsigned char c = (unsigned char)*p;
    if (c < 0x80) return is_ident_char(c) || c == '.';
    uint32_t cp;
    size_t n = utf8_seq(p, P->end, &cp);
    return !n || !is_unicode_space(cp);
}

/* An identifier: [A-Za-z_$] then also digits; non-ASCII letters are taken as they come. */
static int lex_ident(parser_t *P, span_t *out)
{
    const char *s = P->p, *p = s, *end = P->end;
    uint32_t cp;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x80) {
            if (!is_ident_char(c)) break;
            p++;
        } else {
            size_t n = utf8_seq(p, end, &cp);
            if (!n) return fail_at(P, p, "invalid UTF-8 in input");
            if (is_unicode_space(cp)) break;
            p += n;
        }
    }
    *out = (span_t){s, 0, (size_t)(p - s)};
    P->p = p;
    return 0;
}

/* A key: quoted string, identifier, or digits. */
static int lex_key(parser_t *P, span_t *key)
{
    const char *pos = P->p;
    uint32_t cp;
    if (pos >= P->end) return fail_unexpected(P, pos, "expected a key or '}'");
    unsigned char c = (unsigned char)*pos;
    if (c == '"' || c == '\'') {
        if (lex_string(P, key)) return P->rc;
        if (memchr(sp(P, *key), 0, key->len))
            return fail_at(P, pos, "a key cannot contain a NUL character");
    } else if (is_ident_start(c) || (c >= 0x80 && utf8_seq(pos, P->end, &cp))) {
        if (lex_ident(P, key)) return P->rc;
    } else if (is_digit(c)) {
        const char *p = pos;
        while (p < P->end && is_digit((unsigned char)*p)) p++;
        *key = (span_t){pos, 0, (size_t)(p - pos)};
        P->p = p;
    } else if (c == '?') {
        return fail_at(P, pos, "a placeholder '?' is not allowed in key position");
    } else {
        return fail_unexpected(P, pos, "expected a key or '}'");
    }
    if (key->len > MK_MAX_BSON_SIZE) return fail_size(P, pos);
    return 0;
}

static int expect_colon(parser_t *P, span_t key)
{
    if (skip_ws(P)) return P->rc;
    if (P->p < P->end && *P->p == ':') {
        P->p++;
        return 0;
    }
    char k[SHOW_MAX], m[SHOW_MAX + 32];
    snprintf(m, sizeof m, "expected ':' after key \"%s\"", show_span(P, k, sizeof k, key));
    return fail_unexpected(P, P->p, m);
}

/* A number literal; text receives its spelling (NumberDecimal(0.1) keeps it exact). */
static int lex_number(parser_t *P, num_t *n, span_t *text)
{
    const char *s = P->p, *stop = s;
    const char *why = scan_number(s, P->end, n, &stop);
    if (why == ERR_NOMEM_TEXT) return nomem(P);
    if (!why && glued(P, stop)) why = "";
    if (why) {
        const char *e = s;
        if (e < P->end && (*e == '+' || *e == '-')) e++;
        while (e < P->end && (is_ident_char((unsigned char)*e) || *e == '.' ||
                              ((*e == '+' || *e == '-') && (e[-1] | 0x20) == 'e')))
            e++;
        if (e == s) e = s + 1;
        char b[SHOW_MAX];
        return fail_at(P, s, "invalid number '%s'%s", show(b, sizeof b, s, (size_t)(e - s)), why);
    }
    *text = (span_t){s, 0, (size_t)(stop - s)};
    P->p = stop;
    return 0;
}

/* ---------- small values: wrapper contents and constructor arguments ---------- */

typedef enum wv_kind { WV_STR, WV_NUM, WV_TRUE, WV_FALSE, WV_NULL, WV_OBJ } wv_kind_t;

typedef struct wval {
    wv_kind_t kind;
    const char *pos;    /* where it starts, for messages */
    span_t s;           /* WV_STR: the decoded string; otherwise the token's text */
    num_t n;            /* WV_NUM */
    int64_t ts_t, ts_i; /* Timestamp({t, i}) */
} wval_t;

/* A string, number, true/false/null, or the '{' of an object (not consumed). */
static int lex_wval(parser_t *P, wval_t *v, const char *ctx)
{
    if (skip_ws(P)) return P->rc;
    const char *pos = P->p;
    v->pos = pos;
    char m[96];
    if (pos >= P->end) {
        snprintf(m, sizeof m, "expected a value inside %s", ctx);
        return fail_unexpected(P, pos, m);
    }
    unsigned char c = (unsigned char)*pos;
    if (c == '"' || c == '\'') {
        v->kind = WV_STR;
        return lex_string(P, &v->s);
    }
    if (is_digit(c) || c == '-' || c == '+' || c == '.') {
        v->kind = WV_NUM;
        return lex_number(P, &v->n, &v->s);
    }
    if (c == '{') {
        v->kind = WV_OBJ;
        v->s = (span_t){pos, 0, 1};
        return 0;
    }
    if (c == '?') return fail_at(P, pos, "a placeholder '?' is not allowed inside %s", ctx);
    if (is_ident_start(c)) {
        if (lex_ident(P, &v->s)) return P->rc;
        const char *s = v->s.base;
        size_t n = v->s.len;
        if (span_eq(s, n, "true")) {
            v->kind = WV_TRUE;
        } else if (span_eq(s, n, "false")) {
            v->kind = WV_FALSE;
        } else if (span_eq(s, n, "null")) {
            v->kind = WV_NULL;
        } else if (span_eq(s, n, "Infinity") || span_eq(s, n, "NaN")) {
            v->kind = WV_NUM;
            v->n.type = NUM_DBL;
            v->n.d = *s == 'I' ? INFINITY : NAN;
        } else {
            char b[SHOW_MAX];
            return fail_at(P, pos, "unexpected '%s' inside %s", show(b, sizeof b, s, n), ctx);
        }
        return 0;
    }
    snprintf(m, sizeof m, "expected a value inside %s", ctx);
    return fail_unexpected(P, pos, m);
}

/* Next member of an object whose '{' is consumed: 1 when a key and its ':' were read (*kpos
 * at the key), 0 when the closing '}' was consumed, -1 on error. *first: no ',' expected. */
static int next_member(parser_t *P, span_t *key, bool *first, const char *ctx, const char **kpos)
{
    if (skip_ws(P)) return -1;
    if (!*first) {
        if (P->p < P->end && *P->p == ',') {
            P->p++;
            if (skip_ws(P)) return -1;
        } else if (P->p < P->end && *P->p == '}') {
            P->p++;
            return 0;
        } else {
            char m[96];
            snprintf(m, sizeof m, "expected ',' or '}' inside %s", ctx);
            fail_unexpected(P, P->p, m);
            return -1;
        }
    }
    *first = false;
    if (P->p < P->end && *P->p == '}') {
        P->p++;
        return 0;
    }
    *kpos = P->p;
    if (lex_key(P, key) || expect_colon(P, *key)) return -1;
    return 1;
}

/* The object's closing '}' (after an optional ','); any other member is an error. */
static int wrap_end(parser_t *P, const char *ctx)
{
    bool first = false;
    span_t k;
    const char *kpos = P->p;
    int r = next_member(P, &k, &first, ctx, &kpos);
    if (r < 0) return P->rc;
    if (r == 1) {
        char b[SHOW_MAX];
        return fail_at(P, kpos, "unexpected field \"%s\" in %s", show_span(P, b, sizeof b, k), ctx);
    }
    return 0;
}

static int fail_field(parser_t *P, const char *kpos, span_t k, const char *ctx)
{
    char b[SHOW_MAX];
    return fail_at(P, kpos, "unexpected or repeated field \"%s\" in %s",
                   show_span(P, b, sizeof b, k), ctx);
}

static bool key_is(const parser_t *P, span_t k, const char *lit)
{
    return span_eq(sp(P, k), k.len, lit);
}

static int make_oid(parser_t *P, const wval_t *v, bson_oid_t *oid)
{
    if (v->kind != WV_STR)
        return fail_at(P, v->pos, "invalid ObjectId: expected a string of 24 hex characters");
    const char *s = sp(P, v->s);
    if (!bson_oid_is_valid(s, v->s.len)) {
        char b[SHOW_MAX];
        return fail_at(P, v->pos, "invalid ObjectId '%s': must be 24 hex characters",
                       show(b, sizeof b, s, v->s.len));
    }
    bson_oid_init_from_string(oid, s);
    return 0;
}

/* truncate: drop a fraction of a millisecond, as JavaScript's Date does (Extended JSON's $date
 * wants whole milliseconds). */
static int make_date(parser_t *P, const wval_t *v, int64_t *ms, bool truncate, const char *ctx)
{
    char b[SHOW_MAX];
    if (v->kind == WV_STR) {
        if (parse_iso_date(sp(P, v->s), v->s.len, ms)) return 0;
        return fail_at(P, v->pos,
                       "invalid date '%s' in %s: expected ISO-8601 such as "
                       "'2024-01-31T12:00:00Z'",
                       show_span(P, b, sizeof b, v->s), ctx);
    }
    if (v->kind == WV_NUM) {
        num_t t = v->n;
        if (t.type == NUM_DBL && truncate) t.d = trunc(t.d);
        if (num_to_int64(&t, ms)) return 0;
        return fail_at(P, v->pos, "invalid date %s in %s: expected whole milliseconds within int64",
                       show_span(P, b, sizeof b, v->s), ctx);
    }
    return fail_at(P, v->pos, "invalid %s: expected an ISO-8601 string or milliseconds", ctx);
}

/* An integer from a string, or also from a number literal unless strings_only. */
static int make_int(parser_t *P, const wval_t *v, int64_t *out, int64_t lo, int64_t hi,
                    bool strings_only, const char *what, const char *ctx)
{
    bool ok;
    if (v->kind == WV_STR)
        ok = text_to_int64(sp(P, v->s), v->s.len, out);
    else if (v->kind == WV_NUM && !strings_only)
        ok = num_to_int64(&v->n, out);
    else
        return fail_at(P, v->pos, "invalid %s: expected %s", ctx,
                       strings_only ? "a string" : "an integer");
    if (ok && *out >= lo && *out <= hi) return 0;
    char b[SHOW_MAX];
    return fail_at(P, v->pos, "invalid %s '%s': expected an integer within %s", ctx,
                   show_span(P, b, sizeof b, v->s), what);
}

static int make_decimal(parser_t *P, const wval_t *v, bson_decimal128_t *dec, const char *ctx)
{
    char b[SHOW_MAX];
    if (v->kind == WV_STR || v->kind == WV_NUM) {
        /* libbson reads the exponent with sscanf, past any length: give it a C string. */
        size_t off = 0;
        if (memchr(sp(P, v->s), 0, v->s.len) == NULL) {
            if (scratch_cstr(P, v->s, &off)) return P->rc;
            if (bson_decimal128_from_string(P->scratch + off, dec)) return 0;
        }
        return fail_at(P, v->pos, "invalid %s '%s': not a decimal number", ctx,
                       show_span(P, b, sizeof b, v->s));
    }
    return fail_at(P, v->pos, "invalid %s: expected a string such as '1.5'", ctx);
}

/* A double from a number or a decimal string ("Infinity", "-Infinity", "NaN" too). */
static int make_double(parser_t *P, const wval_t *v, double *d, bool strings_only, const char *ctx)
{
    num_t n;
    bool ok = false;
    if (v->kind == WV_NUM && !strings_only) {
        n = v->n;
        ok = true;
    } else if (v->kind == WV_STR) {
        const char *s = sp(P, v->s), *stop = s;
        const char *why = scan_number(s, s + v->s.len, &n, &stop);
        if (why == ERR_NOMEM_TEXT) return nomem(P);
        ok = !why && stop == s + v->s.len && !memchr(s, 'x', v->s.len) && !memchr(s, 'X', v->s.len);
    }
    if (ok) {
        *d = n.type == NUM_DBL ? n.d : (double)n.i;
        return 0;
    }
    char b[SHOW_MAX];
    if (v->kind == WV_STR)
        return fail_at(P, v->pos, "invalid %s '%s': not a number", ctx,
                       show_span(P, b, sizeof b, v->s));
    return fail_at(P, v->pos, "invalid %s: expected %s", ctx,
                   strings_only ? "a string" : "a number");
}

static int make_string(parser_t *P, const wval_t *v, const char *ctx)
{
    if (v->kind == WV_STR) return 0;
    return fail_at(P, v->pos, "invalid %s: expected a string", ctx);
}

/* A binary subtype written as 1 or 2 hex digits ("00", "4", "80"). */
static int make_subtype_hex(parser_t *P, const wval_t *v, int *subtype, const char *ctx)
{
    if (v->kind == WV_STR && (v->s.len == 1 || v->s.len == 2)) {
        const char *s = sp(P, v->s);
        int hi = v->s.len == 2 ? hex_val((unsigned char)s[0]) : 0;
        int lo = hex_val((unsigned char)s[v->s.len - 1]);
        if (hi >= 0 && lo >= 0) {
            *subtype = hi * 16 + lo;
            return 0;
        }
    }
    return fail_at(P, v->pos, "invalid %s subType: expected 1 or 2 hex digits such as '00'", ctx);
}

static int append_ok(parser_t *P, bool ok, const char *pos)
{
    return ok ? 0 : fail_size(P, pos);
}

/* Decodes base64 (or hex) text into the scratch buffer and appends it as binary. */
static int append_binary(parser_t *P, bson_t *b, span_t key, const wval_t *data, int subtype,
                         bool hex, const char *ctx)
{
    size_t len = data->s.len, out_len = 0;
    if (len > MK_MAX_BSON_SIZE * 2) return fail_size(P, data->pos);
    if (scratch_reserve(P, len / 2 + len / 4 * 3 + 4)) return P->rc;
    const char *s = sp(P, data->s);
    uint8_t *out = (uint8_t *)P->scratch + P->slen;
    bool ok = true;
    if (hex) {
        ok = len % 2 == 0;
        for (size_t i = 0; ok && i < len; i += 2) {
            int hi = hex_val((unsigned char)s[i]), lo = hex_val((unsigned char)s[i + 1]);
            ok = hi >= 0 && lo >= 0;
            if (ok) out[out_len++] = (uint8_t)(hi << 4 | lo);
        }
    } else {
        ok = b64_decode(s, len, out, &out_len);
    }
    if (!ok) {
        char bb[SHOW_MAX];
        return fail_at(P, data->pos, "invalid %s data '%s' in %s", hex ? "hex" : "base64",
                       show(bb, sizeof bb, s, len), ctx);
    }
    return append_ok(
        P, bson_append_binary(b, KEY(P, key), (bson_subtype_t)subtype, out, (uint32_t)out_len),
        data->pos);
}

static int append_uuid(parser_t *P, bson_t *b, span_t key, const wval_t *v, const char *ctx)
{
    uint8_t u[16];
    if (make_string(P, v, ctx)) return P->rc;
    if (!parse_uuid(sp(P, v->s), v->s.len, u)) {
        char bb[SHOW_MAX];
        return fail_at(P, v->pos,
                       "invalid UUID '%s': expected 32 hex digits, optionally as "
                       "8-4-4-4-12",
                       show_span(P, bb, sizeof bb, v->s));
    }
    return append_ok(P, bson_append_binary(b, KEY(P, key), BSON_SUBTYPE_UUID, u, 16), v->pos);
}

/* flags_pos: where the flags are written; in_text: flags are that text itself (so the bad one
 * can be pointed at), not a decoded string. */
static int append_regex(parser_t *P, bson_t *b, span_t key, const wval_t *pattern,
                        const char *flags, size_t flags_len, const char *flags_pos, bool in_text)
{
    char opts[8];
    size_t bad = regex_options(flags, flags_len, opts);
    if (bad < flags_len) {
        char fb[SHOW_MAX];
        return fail_at(P, in_text ? flags_pos + bad : flags_pos,
                       "invalid regular expression flag '%s' (MongoDB accepts i, m, s, x, l, u)",
                       show(fb, sizeof fb, flags + bad, 1));
    }
    const char *pat = sp(P, pattern->s);
    if (memchr(pat, 0, pattern->s.len))
        return fail_at(P, pattern->pos, "a regular expression cannot contain a NUL character");
    if (pattern->s.len > MK_MAX_BSON_SIZE) return fail_size(P, pattern->pos);
    return append_ok(P, bson_append_regex_w_len(b, KEY(P, key), pat, (int)pattern->s.len, opts),
                     pattern->pos);
}

/* {t: n, i: n} with '{' at P->p; both are unsigned 32-bit integers. */
static int parse_ts_fields(parser_t *P, int64_t *t, int64_t *i, const char *ctx)
{
    const char *open = P->p;
    bool first = true, have_t = false, have_i = false;
    P->p++;
    for (;;) {
        span_t k;
        const char *kpos;
        int r = next_member(P, &k, &first, ctx, &kpos);
        if (r < 0) return P->rc;
        if (r == 0) break;
        wval_t v;
        if (lex_wval(P, &v, ctx)) return P->rc;
        if (key_is(P, k, "t") && !have_t) {
            if (make_int(P, &v, t, 0, UINT32_MAX, false, "0..4294967295", ctx)) return P->rc;
            have_t = true;
        } else if (key_is(P, k, "i") && !have_i) {
            if (make_int(P, &v, i, 0, UINT32_MAX, false, "0..4294967295", ctx)) return P->rc;
            have_i = true;
        } else {
            return fail_field(P, kpos, k, ctx);
        }
    }
    if (!have_t || !have_i) return fail_at(P, open, "invalid %s: expected {t: n, i: n}", ctx);
    return 0;
}

/* ---------- Extended JSON wrappers ---------- */

typedef enum wrapper {
    W_NONE,
    W_OID,
    W_DATE,
    W_INT,
    W_LONG,
    W_DOUBLE,
    W_DECIMAL,
    W_BINARY,
    W_UUID,
    W_REGEX,
    W_TIMESTAMP,
    W_MINKEY,
    W_MAXKEY,
    W_UNDEFINED,
    W_SYMBOL,
    W_CODE,
    W_DBPOINTER,
    W_COUNT
} wrapper_t;

static const char *const wrapper_names[W_COUNT] = {
    [W_OID] = "$oid",
    [W_DATE] = "$date",
    [W_INT] = "$numberInt",
    [W_LONG] = "$numberLong",
    [W_DOUBLE] = "$numberDouble",
    [W_DECIMAL] = "$numberDecimal",
    [W_BINARY] = "$binary",
    [W_UUID] = "$uuid",
    [W_REGEX] = "$regularExpression",
    [W_TIMESTAMP] = "$timestamp",
    [W_MINKEY] = "$minKey",
    [W_MAXKEY] = "$maxKey",
    [W_UNDEFINED] = "$undefined",
    [W_SYMBOL] = "$symbol",
    [W_CODE] = "$code",
    [W_DBPOINTER] = "$dbPointer",
};

static wrapper_t wrapper_lookup(const char *s, size_t n)
{
    if (n < 2 || s[0] != '$') return W_NONE;
    for (int w = W_OID; w < W_COUNT; w++)
        if (span_eq(s, n, wrapper_names[w])) return (wrapper_t)w;
    return W_NONE;
}

/* At '{': when the first key names a wrapper, consumes through that key and sets *w;
 * otherwise leaves the position as it was. */
static int peek_wrapper(parser_t *P, wrapper_t *w)
{
    const char *save = P->p;
    size_t mark = P->slen;
    *w = W_NONE;
    P->p++;
    if (skip_ws(P)) return P->rc;
    if (P->p < P->end) {
        char c = *P->p;
        bool quoted =
            (c == '"' || c == '\'') && P->p + 1 < P->end && (P->p[1] == '$' || P->p[1] == '\\');
        if (c == '$' || quoted) {
            span_t k;
            if (lex_key(P, &k)) return P->rc;
            *w = wrapper_lookup(sp(P, k), k.len);
        }
    }
    if (*w == W_NONE) P->p = save;
    P->slen = mark;
    return 0;
}

static int parse_members(parser_t *P, bson_t *b, size_t outer);

static int parse_wrapper(parser_t *P, wrapper_t w, bson_t *b, span_t key, size_t outer)
{
    const char *name = wrapper_names[w];
    wval_t v;
    span_t k;
    const char *kpos;
    bool first;
    int r;
    if (expect_colon(P, (span_t){name, 0, strlen(name)}) || lex_wval(P, &v, name)) return P->rc;
    switch (w) {
    case W_OID: {
        bson_oid_t oid;
        if (make_oid(P, &v, &oid) || wrap_end(P, name)) return P->rc;
        return append_ok(P, bson_append_oid(b, KEY(P, key), &oid), v.pos);
    }
    case W_DATE: {
        int64_t ms;
        if (v.kind == WV_OBJ) {
            /* {$date: {$numberLong: "ms"}} */
            P->p++;
            first = true;
            r = next_member(P, &k, &first, name, &kpos);
            if (r < 0) return P->rc;
            if (r == 0 || !key_is(P, k, "$numberLong"))
                return fail_at(P, v.pos,
                               "invalid $date: expected an ISO-8601 string, "
                               "milliseconds, or {$numberLong: '...'}");
            wval_t n;
            if (lex_wval(P, &n, "$numberLong") ||
                make_int(P, &n, &ms, INT64_MIN, INT64_MAX, true, "int64", "$numberLong") ||
                wrap_end(P, "$numberLong"))
                return P->rc;
        } else if (make_date(P, &v, &ms, false, name)) {
            return P->rc;
        }
        if (wrap_end(P, name)) return P->rc;
        return append_ok(P, bson_append_date_time(b, KEY(P, key), ms), v.pos);
    }
    case W_INT:
    case W_LONG: {
        int64_t i;
        bool is32 = w == W_INT;
        if (make_int(P, &v, &i, is32 ? INT32_MIN : INT64_MIN, is32 ? INT32_MAX : INT64_MAX, true,
                     is32 ? "int32" : "int64", name) ||
            wrap_end(P, name))
            return P->rc;
        return append_ok(P,
                         is32 ? bson_append_int32(b, KEY(P, key), (int32_t)i)
                              : bson_append_int64(b, KEY(P, key), i),
                         v.pos);
    }
    case W_DOUBLE: {
        double d;
        if (make_double(P, &v, &d, true, name) || wrap_end(P, name)) return P->rc;
        return append_ok(P, bson_append_double(b, KEY(P, key), d), v.pos);
    }
    case W_DECIMAL: {
        bson_decimal128_t dec;
        if (v.kind != WV_STR) return make_string(P, &v, name);
        if (make_decimal(P, &v, &dec, name) || wrap_end(P, name)) return P->rc;
        return append_ok(P, bson_append_decimal128(b, KEY(P, key), &dec), v.pos);
    }
    case W_BINARY: {
        wval_t data = {0}, st = {0};
        if (v.kind == WV_OBJ) {
            /* {$binary: {base64: "...", subType: "hex"}} */
            bool have_d = false, have_t = false;
            P->p++;
            first = true;
            while ((r = next_member(P, &k, &first, name, &kpos)) == 1) {
                wval_t f;
                if (lex_wval(P, &f, name)) return P->rc;
                if (key_is(P, k, "base64") && !have_d) {
                    if (make_string(P, &f, "$binary base64")) return P->rc;
                    data = f, have_d = true;
                } else if (key_is(P, k, "subType") && !have_t) {
                    st = f, have_t = true;
                } else {
                    return fail_field(P, kpos, k, name);
                }
            }
            if (r < 0) return P->rc;
            if (!have_d || !have_t)
                return fail_at(P, v.pos,
                               "invalid $binary: expected {base64: '...', subType: 'hex'}");
        } else if (v.kind == WV_STR) {
            /* legacy {$binary: "...", $type: "hex"} */
            data = v;
            first = false;
            r = next_member(P, &k, &first, name, &kpos);
            if (r < 0) return P->rc;
            if (r == 0 || !key_is(P, k, "$type"))
                return fail_at(P, r == 0 ? v.pos : kpos,
                               "invalid $binary: the legacy form needs \"$type\"");
            if (lex_wval(P, &st, name)) return P->rc;
        } else {
            return fail_at(P, v.pos, "invalid $binary: expected {base64: '...', subType: 'hex'}");
        }
        int subtype = 0;
        if (make_subtype_hex(P, &st, &subtype, name) || wrap_end(P, name)) return P->rc;
        return append_binary(P, b, key, &data, subtype, false, name);
    }
    case W_UUID:
        if (wrap_end(P, name)) return P->rc;
        return append_uuid(P, b, key, &v, name);
    case W_REGEX: {
        /* {$regularExpression: {pattern: "...", options: "..."}} */
        wval_t pat = {0}, opt = {0};
        bool have_p = false, have_o = false;
        if (v.kind != WV_OBJ)
            return fail_at(P, v.pos,
                           "invalid $regularExpression: expected {pattern: '...', "
                           "options: '...'}");
        P->p++;
        first = true;
        while ((r = next_member(P, &k, &first, name, &kpos)) == 1) {
            wval_t f;
            if (lex_wval(P, &f, name)) return P->rc;
            if (key_is(P, k, "pattern") && !have_p) {
                if (make_string(P, &f, "$regularExpression pattern")) return P->rc;
                pat = f, have_p = true;
            } else if (key_is(P, k, "options") && !have_o) {
                if (make_string(P, &f, "$regularExpression options")) return P->rc;
                opt = f, have_o = true;
            } else {
                return fail_field(P, kpos, k, name);
            }
        }
        if (r < 0) return P->rc;
        if (!have_p || !have_o)
            return fail_at(P, v.pos,
                           "invalid $regularExpression: expected {pattern: '...', "
                           "options: '...'}");
        if (wrap_end(P, name)) return P->rc;
        return append_regex(P, b, key, &pat, sp(P, opt.s), opt.s.len, opt.pos, false);
    }
    case W_TIMESTAMP: {
        int64_t t, i;
        if (v.kind != WV_OBJ) return fail_at(P, v.pos, "invalid $timestamp: expected {t: n, i: n}");
        if (parse_ts_fields(P, &t, &i, name) || wrap_end(P, name)) return P->rc;
        return append_ok(P, bson_append_timestamp(b, KEY(P, key), (uint32_t)t, (uint32_t)i), v.pos);
    }
    case W_MINKEY:
    case W_MAXKEY:
        if (v.kind != WV_NUM || v.n.type != NUM_I32 || v.n.i != 1)
            return fail_at(P, v.pos, "invalid %s: expected 1", name);
        if (wrap_end(P, name)) return P->rc;
        return append_ok(P,
                         w == W_MINKEY ? bson_append_minkey(b, KEY(P, key))
                                       : bson_append_maxkey(b, KEY(P, key)),
                         v.pos);
    case W_UNDEFINED:
        if (v.kind != WV_TRUE) return fail_at(P, v.pos, "invalid $undefined: expected true");
        if (wrap_end(P, name)) return P->rc;
        return append_ok(P, bson_append_undefined(b, KEY(P, key)), v.pos);
    case W_SYMBOL:
        if (make_string(P, &v, name) || wrap_end(P, name)) return P->rc;
        if (v.s.len > MK_MAX_BSON_SIZE) return fail_size(P, v.pos);
        return append_ok(P, bson_append_symbol(b, KEY(P, key), sp(P, v.s), (int)v.s.len), v.pos);
    case W_CODE: {
        size_t code = 0;
        if (make_string(P, &v, name)) return P->rc;
        if (memchr(sp(P, v.s), 0, v.s.len))
            return fail_at(P, v.pos, "invalid $code: a NUL character is not supported");
        if (scratch_cstr(P, v.s, &code)) return P->rc;
        first = false;
        r = next_member(P, &k, &first, name, &kpos);
        if (r < 0) return P->rc;
        if (r == 0) return append_ok(P, bson_append_code(b, KEY(P, key), P->scratch + code), v.pos);
        if (!key_is(P, k, "$scope")) return fail_field(P, kpos, k, name);
        /* {$code: "...", $scope: {...}}: the scope is a document one level down. */
        if (skip_ws(P)) return P->rc;
        if (P->p >= P->end || *P->p != '{')
            return fail_unexpected(P, P->p, "expected '{' for $scope");
        if (P->depth >= MK_MAX_DEPTH)
            return fail_at(P, P->p, "nesting depth exceeds %d", MK_MAX_DEPTH);
        const char *spos = P->p;
        bson_t scope;
        bson_init(&scope);
        P->p++;
        P->depth++;
        int rc = parse_members(P, &scope, outer + b->len);
        P->depth--;
        if (!rc) rc = wrap_end(P, name);
        if (!rc)
            rc = append_ok(
                P, bson_append_code_with_scope(b, KEY(P, key), P->scratch + code, &scope), spos);
        bson_destroy(&scope);
        return rc;
    }
    case W_DBPOINTER: {
        /* {$dbPointer: {$ref: "ns", $id: {$oid: "..."}}} */
        wval_t ref = {0};
        bson_oid_t oid = {{0}};
        bool have_r = false, have_i = false;
        if (v.kind != WV_OBJ)
            return fail_at(P, v.pos,
                           "invalid $dbPointer: expected {$ref: '...', $id: {$oid: "
                           "'...'}}");
        P->p++;
        first = true;
        while ((r = next_member(P, &k, &first, name, &kpos)) == 1) {
            wval_t f;
            if (lex_wval(P, &f, name)) return P->rc;
            if (key_is(P, k, "$ref") && !have_r) {
                if (make_string(P, &f, "$dbPointer $ref")) return P->rc;
                ref = f, have_r = true;
            } else if (key_is(P, k, "$id") && !have_i) {
                bool f2 = true;
                span_t k2;
                const char *k2pos;
                wval_t o;
                if (f.kind != WV_OBJ)
                    return fail_at(P, f.pos, "invalid $dbPointer $id: expected {$oid: '...'}");
                P->p++;
                int r2 = next_member(P, &k2, &f2, "$id", &k2pos);
                if (r2 < 0) return P->rc;
                if (r2 == 0 || !key_is(P, k2, "$oid"))
                    return fail_at(P, f.pos, "invalid $dbPointer $id: expected {$oid: '...'}");
                if (lex_wval(P, &o, "$oid") || make_oid(P, &o, &oid) || wrap_end(P, "$id"))
                    return P->rc;
                have_i = true;
            } else {
                return fail_field(P, kpos, k, name);
            }
        }
        if (r < 0) return P->rc;
        if (!have_r || !have_i)
            return fail_at(P, v.pos,
                           "invalid $dbPointer: expected {$ref: '...', $id: {$oid: "
                           "'...'}}");
        if (memchr(sp(P, ref.s), 0, ref.s.len))
            return fail_at(P, ref.pos, "invalid $dbPointer: a NUL character is not supported");
        size_t ns = 0;
        if (scratch_cstr(P, ref.s, &ns) || wrap_end(P, name)) return P->rc;
        return append_ok(P, bson_append_dbpointer(b, KEY(P, key), P->scratch + ns, &oid), v.pos);
    }
    default:
        return fail_at(P, v.pos, "unsupported Extended JSON type %s", name);
    }
}

/* ---------- shell constructors: ObjectId('...'), ISODate('...'), ... ---------- */

typedef enum ctor {
    C_NONE,
    C_OBJECTID,
    C_ISODATE,
    C_DATE,
    C_INT32,
    C_INT64,
    C_DECIMAL,
    C_DOUBLE,
    C_UUID,
    C_BINDATA,
    C_HEXDATA,
    C_TIMESTAMP,
    C_REGEXP,
    C_MINKEY,
    C_MAXKEY,
} ctor_t;

static const struct {
    const char *name;
    ctor_t c;
} ctors[] = {
    {"ObjectId", C_OBJECTID},  {"ISODate", C_ISODATE},
    {"Date", C_DATE},          {"NumberInt", C_INT32},
    {"Int32", C_INT32},        {"NumberLong", C_INT64},
    {"Long", C_INT64},         {"NumberDecimal", C_DECIMAL},
    {"Decimal128", C_DECIMAL}, {"Double", C_DOUBLE},
    {"UUID", C_UUID},          {"BinData", C_BINDATA},
    {"HexData", C_HEXDATA},    {"Timestamp", C_TIMESTAMP},
    {"RegExp", C_REGEXP},      {"MinKey", C_MINKEY},
    {"MaxKey", C_MAXKEY},
};

#define MAX_CALL_ARGS 8

/* "(args)" after a constructor name; only Timestamp takes an object ({t, i}). */
static int parse_call(parser_t *P, ctor_t c, const char *ctx, wval_t *a, int *na)
{
    char m[64];
    *na = 0;
    if (skip_ws(P)) return P->rc;
    if (P->p >= P->end || *P->p != '(') {
        snprintf(m, sizeof m, "expected '(' after %.*s", (int)(strlen(ctx) - 2), ctx);
        return fail_unexpected(P, P->p, m);
    }
    P->p++;
    for (;;) {
        if (skip_ws(P)) return P->rc;
        if (P->p < P->end && *P->p == ')') {
            P->p++;
            return 0;
        }
        if (*na == MAX_CALL_ARGS) return fail_at(P, P->p, "too many arguments to %s", ctx);
        wval_t *v = &a[(*na)++];
        if (lex_wval(P, v, ctx)) return P->rc;
        if (v->kind == WV_OBJ) {
            if (c != C_TIMESTAMP) return fail_at(P, v->pos, "unexpected object inside %s", ctx);
            if (parse_ts_fields(P, &v->ts_t, &v->ts_i, ctx)) return P->rc;
        }
        if (skip_ws(P)) return P->rc;
        if (P->p < P->end && *P->p == ',') {
            P->p++;
            continue;
        }
        if (P->p < P->end && *P->p == ')') {
            P->p++;
            return 0;
        }
        snprintf(m, sizeof m, "expected ',' or ')' in %s", ctx);
        return fail_unexpected(P, P->p, m);
    }
}

static int want_args(parser_t *P, const char *pos, const char *ctx, int na, int lo, int hi)
{
    if (na >= lo && na <= hi) return 0;
    if (lo == hi)
        return fail_at(P, pos, "%s takes %d argument%s, not %d", ctx, lo, lo == 1 ? "" : "s", na);
    return fail_at(P, pos, "%s takes %d to %d arguments, not %d", ctx, lo, hi, na);
}

/* A name in value position: a literal (true, null, ...) or a constructor call. */
static int parse_ident_value(parser_t *P, bson_t *b, span_t key)
{
    const char *pos = P->p;
    span_t id;
    if (lex_ident(P, &id)) return P->rc;
    const char *s = id.base;
    size_t n = id.len;
    bool is_new = span_eq(s, n, "new");
    if (is_new) {
        if (skip_ws(P)) return P->rc;
        if (P->p >= P->end || !is_ident_start((unsigned char)*P->p))
            return fail_unexpected(P, P->p, "expected a constructor name after 'new'");
        if (lex_ident(P, &id)) return P->rc;
        s = id.base, n = id.len;
    } else {
        bool ok = false, literal = true;
        if (span_eq(s, n, "true") || span_eq(s, n, "false"))
            ok = bson_append_bool(b, KEY(P, key), *s == 't');
        else if (span_eq(s, n, "null"))
            ok = bson_append_null(b, KEY(P, key));
        else if (span_eq(s, n, "undefined"))
            ok = bson_append_undefined(b, KEY(P, key));
        else if (span_eq(s, n, "Infinity"))
            ok = bson_append_double(b, KEY(P, key), INFINITY);
        else if (span_eq(s, n, "NaN"))
            ok = bson_append_double(b, KEY(P, key), NAN);
        else
            literal = false;
        if (literal) return append_ok(P, ok, pos);
    }
    ctor_t c = C_NONE;
    for (size_t i = 0; i < sizeof ctors / sizeof ctors[0]; i++)
        if (span_eq(s, n, ctors[i].name)) c = ctors[i].c;
    char ctx[32], bb[SHOW_MAX];
    if (c == C_NONE)
        return fail_at(P, s, is_new ? "unknown constructor '%s'" : "unknown identifier '%s'",
                       show(bb, sizeof bb, s, n));
    snprintf(ctx, sizeof ctx, "%.*s()", (int)n, s);
    wval_t a[MAX_CALL_ARGS];
    int na = 0;
    if (c == C_MINKEY || c == C_MAXKEY) {
        /* MinKey, MinKey() */
        if (skip_ws(P)) return P->rc;
        if (P->p < P->end && *P->p == '(' &&
            (parse_call(P, c, ctx, a, &na) || want_args(P, pos, ctx, na, 0, 0)))
            return P->rc;
        return append_ok(P,
                         c == C_MINKEY ? bson_append_minkey(b, KEY(P, key))
                                       : bson_append_maxkey(b, KEY(P, key)),
                         pos);
    }
    if (parse_call(P, c, ctx, a, &na)) return P->rc;
    switch (c) {
    case C_OBJECTID: {
        bson_oid_t oid;
        if (want_args(P, pos, ctx, na, 0, 1)) return P->rc;
        if (na == 0)
            bson_oid_init(&oid, NULL); /* ObjectId(): a new one, as in the shell */
        else if (make_oid(P, &a[0], &oid))
            return P->rc;
        return append_ok(P, bson_append_oid(b, KEY(P, key), &oid), pos);
    }
    case C_ISODATE:
    case C_DATE: {
        int64_t ms;
        if (na > 1)
            return fail_at(P, pos,
                           "%s with several arguments is not supported (it depends on the "
                           "local time zone): write ISODate('...')",
                           ctx);
        if (na == 0)
            ms = now_ms();
        else if (make_date(P, &a[0], &ms, true, ctx))
            return P->rc;
        return append_ok(P, bson_append_date_time(b, KEY(P, key), ms), pos);
    }
    case C_INT32:
    case C_INT64: {
        int64_t i = 0;
        bool is32 = c == C_INT32;
        if (want_args(P, pos, ctx, na, 0, 1) ||
            (na == 1 &&
             make_int(P, &a[0], &i, is32 ? INT32_MIN : INT64_MIN, is32 ? INT32_MAX : INT64_MAX,
                      false, is32 ? "int32" : "int64", ctx)))
            return P->rc;
        return append_ok(P,
                         is32 ? bson_append_int32(b, KEY(P, key), (int32_t)i)
                              : bson_append_int64(b, KEY(P, key), i),
                         pos);
    }
    case C_DECIMAL: {
        bson_decimal128_t dec;
        if (want_args(P, pos, ctx, na, 1, 1) || make_decimal(P, &a[0], &dec, ctx)) return P->rc;
        return append_ok(P, bson_append_decimal128(b, KEY(P, key), &dec), pos);
    }
    case C_DOUBLE: {
        double d;
        if (want_args(P, pos, ctx, na, 1, 1) || make_double(P, &a[0], &d, false, ctx)) return P->rc;
        return append_ok(P, bson_append_double(b, KEY(P, key), d), pos);
    }
    case C_UUID:
        if (want_args(P, pos, ctx, na, 1, 1)) return P->rc;
        return append_uuid(P, b, key, &a[0], ctx);
    case C_BINDATA:
    case C_HEXDATA: {
        int64_t st;
        if (want_args(P, pos, ctx, na, 2, 2) ||
            make_int(P, &a[0], &st, 0, 255, false, "0..255", ctx) || make_string(P, &a[1], ctx))
            return P->rc;
        return append_binary(P, b, key, &a[1], (int)st, c == C_HEXDATA, ctx);
    }
    case C_TIMESTAMP: {
        int64_t t = 0, i = 0; /* Timestamp(): 0, 0 (the server fills it in on insert) */
        if (want_args(P, pos, ctx, na, 0, 2)) return P->rc;
        if (na == 1) {
            if (a[0].kind != WV_OBJ)
                return fail_at(P, a[0].pos,
                               "invalid %s: expected Timestamp(t, i) or Timestamp({t, i})", ctx);
            t = a[0].ts_t, i = a[0].ts_i;
        } else if (na == 2) {
            if (make_int(P, &a[0], &t, 0, UINT32_MAX, false, "0..4294967295", ctx) ||
                make_int(P, &a[1], &i, 0, UINT32_MAX, false, "0..4294967295", ctx))
                return P->rc;
        }
        return append_ok(P, bson_append_timestamp(b, KEY(P, key), (uint32_t)t, (uint32_t)i), pos);
    }
    case C_REGEXP:
        if (want_args(P, pos, ctx, na, 1, 2) || make_string(P, &a[0], ctx) ||
            (na == 2 && make_string(P, &a[1], ctx)))
            return P->rc;
        return append_regex(P, b, key, &a[0], na == 2 ? sp(P, a[1].s) : "",
                            na == 2 ? a[1].s.len : 0, na == 2 ? a[1].pos : pos, false);
    default:
        return fail_at(P, pos, "unsupported constructor %s", ctx);
    }
}

/* /pattern/flags -- the pattern is kept as written (JavaScript's RegExp source). */
static int parse_regex_literal(parser_t *P, bson_t *b, span_t key)
{
    const char *open = P->p, *p = open + 1, *end = P->end;
    bool in_class = false;
    uint32_t cp;
    for (;;) {
        if (p >= end) return fail_at(P, open, "unterminated regular expression");
        unsigned char c = (unsigned char)*p;
        if (c == '\n' || c == '\r') return fail_at(P, open, "unterminated regular expression");
        if (c == 0) return fail_at(P, p, "NUL byte in input");
        if (c >= 0x80) {
            size_t n = utf8_seq(p, end, &cp);
            if (!n) return fail_at(P, p, "invalid UTF-8 in regular expression");
            p += n;
            continue;
        }
        if (c == '\\') {
            /* The escaped character is checked by the next round unless plain ASCII. */
            p++;
            if (p < end && (unsigned char)*p < 0x80 && *p != '\n' && *p != '\r' && *p != 0) p++;
            continue;
        }
        if (c == '/' && !in_class) break;
        if (c == '[')
            in_class = true;
        else if (c == ']')
            in_class = false;
        p++;
    }
    wval_t pat = {.kind = WV_STR, .pos = open, .s = {open + 1, 0, (size_t)(p - open - 1)}};
    const char *flags = ++p;
    while (p < end && is_ident_char((unsigned char)*p)) p++;
    P->p = p;
    return append_regex(P, b, key, &pat, flags, (size_t)(p - flags), flags, true);
}

/* ---------- bound arguments ---------- */

#define RAW_MALFORMED (-1)
#define RAW_BAD_UTF8  (-2)

static bool utf8_ok(const char *s, size_t len, bool allow_nul)
{
    return s && bson_utf8_validate(s, len, allow_nul);
}

/* Walks raw BSON checking its structure and the UTF-8 of every key and string (libbson's
 * bson_validate lets some invalid sequences through). Returns the nesting depth (flat = 1), at
 * most limit + 1, or RAW_MALFORMED / RAW_BAD_UTF8. Recursion is bounded by limit. */
static int walk_raw(const uint8_t *data, uint32_t len, int limit)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len)) return RAW_MALFORMED;
    int depth = 1;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it), *str = NULL, *str2 = NULL;
        uint32_t l = 0;
        const uint8_t *d = NULL;
        if (!utf8_ok(key, strlen(key), false)) return RAW_BAD_UTF8;
        switch (bson_iter_type(&it)) {
        case BSON_TYPE_UTF8:
            str = bson_iter_utf8(&it, &l);
            if (!utf8_ok(str, l, true)) return RAW_BAD_UTF8;
            break;
        case BSON_TYPE_SYMBOL:
            str = bson_iter_symbol(&it, &l);
            if (!utf8_ok(str, l, true)) return RAW_BAD_UTF8;
            break;
        case BSON_TYPE_CODE:
            str = bson_iter_code(&it, &l);
            if (!utf8_ok(str, l, true)) return RAW_BAD_UTF8;
            break;
        case BSON_TYPE_REGEX:
            str = bson_iter_regex(&it, &str2);
            if (!str || !str2 || !utf8_ok(str, strlen(str), false) ||
                !utf8_ok(str2, strlen(str2), false))
                return RAW_BAD_UTF8;
            break;
        case BSON_TYPE_DBPOINTER: {
            const bson_oid_t *oid;
            bson_iter_dbpointer(&it, &l, &str, &oid);
            if (!utf8_ok(str, l, true)) return RAW_BAD_UTF8;
            break;
        }
        case BSON_TYPE_CODEWSCOPE: {
            uint32_t sl = 0;
            str = bson_iter_codewscope(&it, &l, &sl, &d);
            if (!utf8_ok(str, l, true)) return RAW_BAD_UTF8;
            l = sl;
            break;
        }
        case BSON_TYPE_DOCUMENT:
            bson_iter_document(&it, &l, &d);
            break;
        case BSON_TYPE_ARRAY:
            bson_iter_array(&it, &l, &d);
            break;
        default:
            break;
        }
        if (!d) continue;
        if (limit <= 1) return limit + 1;
        int sub = walk_raw(d, l, limit - 1);
        if (sub < 0) return sub;
        if (sub + 1 > depth) depth = sub + 1;
        if (depth > limit) return depth;
    }
    return it.err_off ? RAW_MALFORMED : depth;
}

/* A bound document (or array): well-formed BSON, valid UTF-8, within the depth limit, and for
 * an array keyed "0", "1", ... */
static int check_bound_doc(parser_t *P, const uint8_t *data, uint32_t len, bool is_array,
                           size_t idx, const char *pos)
{
    bson_t tmp;
    if (!data || !bson_init_static(&tmp, data, len))
        return fail_at(P, pos, "argument %zu is not valid BSON", idx);
    int d = walk_raw(data, len, MK_MAX_DEPTH);
    if (d == RAW_BAD_UTF8) return fail_at(P, pos, "argument %zu contains invalid UTF-8", idx);
    if (d < 0 || !bson_validate(&tmp, BSON_VALIDATE_NONE, NULL))
        return fail_at(P, pos, "argument %zu is not valid BSON", idx);
    if (P->depth + d > MK_MAX_DEPTH)
        return fail_at(P, pos, "nesting depth exceeds %d", MK_MAX_DEPTH);
    if (is_array) {
        bson_iter_t it;
        uint32_t i = 0;
        bson_iter_init(&it, &tmp);
        while (bson_iter_next(&it)) {
            char buf[16];
            const char *k;
            bson_uint32_to_string(i++, &k, buf, sizeof buf);
            if (strcmp(bson_iter_key(&it), k) != 0)
                return fail_at(P, pos,
                               "argument %zu is not an array: its keys must be \"0\", \"1\", ...",
                               idx);
        }
    }
    return 0;
}

static int check_bound_value(parser_t *P, const bson_value_t *v, size_t idx, const char *pos)
{
    char opts[8];
    if (!v) return fail_at(P, pos, "argument %zu: NULL value", idx);
    switch (v->value_type) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_BOOL:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_OID:
    case BSON_TYPE_DATE_TIME:
    case BSON_TYPE_TIMESTAMP:
    case BSON_TYPE_DECIMAL128:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        return 0;
    case BSON_TYPE_UTF8:
        if (v->value.v_utf8.str && v->value.v_utf8.len <= MK_MAX_BSON_SIZE &&
            bson_utf8_validate(v->value.v_utf8.str, v->value.v_utf8.len, true))
            return 0;
        break;
    case BSON_TYPE_SYMBOL:
        if (v->value.v_symbol.symbol && v->value.v_symbol.len <= MK_MAX_BSON_SIZE &&
            bson_utf8_validate(v->value.v_symbol.symbol, v->value.v_symbol.len, true))
            return 0;
        break;
    case BSON_TYPE_CODE:
        if (v->value.v_code.code && v->value.v_code.code_len <= MK_MAX_BSON_SIZE &&
            bson_utf8_validate(v->value.v_code.code, v->value.v_code.code_len, false))
            return 0;
        break;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        return check_bound_doc(P, v->value.v_doc.data, v->value.v_doc.data_len,
                               v->value_type == BSON_TYPE_ARRAY, idx, pos);
    case BSON_TYPE_BINARY:
        if (v->value.v_binary.data || v->value.v_binary.data_len == 0) return 0;
        break;
    case BSON_TYPE_REGEX: {
        const char *re = v->value.v_regex.regex, *o = v->value.v_regex.options;
        if (re && bson_utf8_validate(re, strlen(re), false) &&
            (!o || regex_options(o, strlen(o), opts) == strlen(o)))
            return 0;
        break;
    }
    case BSON_TYPE_DBPOINTER:
        if (v->value.v_dbpointer.collection &&
            bson_utf8_validate(v->value.v_dbpointer.collection, v->value.v_dbpointer.collection_len,
                               false))
            return 0;
        break;
    case BSON_TYPE_CODEWSCOPE:
        if (!v->value.v_codewscope.code ||
            !bson_utf8_validate(v->value.v_codewscope.code, v->value.v_codewscope.code_len, false))
            break;
        return check_bound_doc(P, v->value.v_codewscope.scope_data, v->value.v_codewscope.scope_len,
                               false, idx, pos);
    default:
        return fail_at(P, pos, "argument %zu: unsupported BSON type 0x%02x", idx,
                       (unsigned)v->value_type);
    }
    return fail_at(P, pos, "argument %zu: malformed %s value", idx,
                   v->value_type == BSON_TYPE_REGEX ? "regex" : "bson_value_t");
}

/* Appends the next bound argument under key. Nothing of it is parsed: a string stays a
 * string. */
static int append_arg(parser_t *P, bson_t *b, span_t key, const char *pos)
{
    if (P->used_args >= P->nargs)
        return fail_at(P, pos,
                       "too few arguments for placeholders: placeholder %zu has no argument "
                       "(%zu given)",
                       P->used_args + 1, P->nargs);
    const mk_arg_t *a = &P->args[P->used_args++];
    size_t idx = P->used_args;
    bool ok;
    switch (a->type) {
    case MK_ARG_STR: {
        if (!a->v.s) return fail_at(P, pos, "argument %zu: NULL string", idx);
        size_t n = strlen(a->v.s);
        if (n > MK_MAX_BSON_SIZE) return fail_size(P, pos);
        if (!bson_utf8_validate(a->v.s, n, false))
            return fail_at(P, pos, "argument %zu: the string is not valid UTF-8", idx);
        ok = bson_append_utf8(b, KEY(P, key), a->v.s, (int)n);
        break;
    }
    case MK_ARG_I32:
        ok = bson_append_int32(b, KEY(P, key), a->v.i32);
        break;
    case MK_ARG_I64:
        ok = bson_append_int64(b, KEY(P, key), a->v.i64);
        break;
    case MK_ARG_F64:
        ok = bson_append_double(b, KEY(P, key), a->v.f64);
        break;
    case MK_ARG_BOOL:
        ok = bson_append_bool(b, KEY(P, key), a->v.b);
        break;
    case MK_ARG_DATE:
        ok = bson_append_date_time(b, KEY(P, key), a->v.i64);
        break;
    case MK_ARG_NULL:
        ok = bson_append_null(b, KEY(P, key));
        break;
    case MK_ARG_OID:
        if (!a->v.oid) return fail_at(P, pos, "argument %zu: NULL ObjectId", idx);
        ok = bson_append_oid(b, KEY(P, key), a->v.oid);
        break;
    case MK_ARG_DOC:
    case MK_ARG_ARRAY: {
        const bson_t *d = a->v.doc;
        if (!d) return fail_at(P, pos, "argument %zu: NULL document", idx);
        if (check_bound_doc(P, bson_get_data(d), d->len, a->type == MK_ARG_ARRAY, idx, pos))
            return P->rc;
        ok = a->type == MK_ARG_DOC ? bson_append_document(b, KEY(P, key), d)
                                   : bson_append_array(b, KEY(P, key), d);
        break;
    }
    case MK_ARG_VALUE:
        if (check_bound_value(P, a->v.value, idx, pos)) return P->rc;
        ok = bson_append_value(b, KEY(P, key), a->v.value);
        break;
    default:
        return fail_at(P, pos, "argument %zu: unknown argument type %d", idx, (int)a->type);
    }
    return append_ok(P, ok, pos);
}

/* ---------- documents and arrays ---------- */

static int parse_elements(parser_t *P, bson_t *b, size_t outer);

/* A sub-document or sub-array at '{' / '['; depth is checked before descending. */
static int parse_container(parser_t *P, bson_t *b, span_t key, size_t outer, bool array)
{
    const char *open = P->p;
    bson_t child;
    if (P->depth >= MK_MAX_DEPTH) return fail_at(P, open, "nesting depth exceeds %d", MK_MAX_DEPTH);
    bool ok = array ? bson_append_array_begin(b, KEY(P, key), &child)
                    : bson_append_document_begin(b, KEY(P, key), &child);
    if (!ok) return fail_size(P, open);
    P->p++;
    P->depth++;
    int rc = array ? parse_elements(P, &child, outer + b->len)
                   : parse_members(P, &child, outer + b->len);
    P->depth--;
    /* Always close the child, also on error, so that the parent can be reset. */
    ok = array ? bson_append_array_end(b, &child) : bson_append_document_end(b, &child);
    if (rc) return rc;
    return append_ok(P, ok, open);
}

static int parse_value(parser_t *P, bson_t *b, span_t key, size_t outer)
{
    if (skip_ws(P)) return P->rc;
    const char *pos = P->p;
    if (pos >= P->end) return fail_unexpected(P, pos, "expected a value");
    unsigned char c = (unsigned char)*pos;
    switch (c) {
    case '{': {
        wrapper_t w;
        if (peek_wrapper(P, &w)) return P->rc;
        if (w != W_NONE) return parse_wrapper(P, w, b, key, outer);
        return parse_container(P, b, key, outer, false);
    }
    case '[':
        return parse_container(P, b, key, outer, true);
    case '"':
    case '\'': {
        span_t s;
        if (lex_string(P, &s)) return P->rc;
        if (s.len > MK_MAX_BSON_SIZE) return fail_size(P, pos);
        return append_ok(P, bson_append_utf8(b, KEY(P, key), sp(P, s), (int)s.len), pos);
    }
    case '/':
        return parse_regex_literal(P, b, key);
    case '?':
        P->p++;
        return append_arg(P, b, key, pos);
    default:
        break;
    }
    if (is_digit(c) || c == '-' || c == '+' || c == '.') {
        num_t n;
        span_t text;
        bool ok;
        if (lex_number(P, &n, &text)) return P->rc;
        if (n.type == NUM_I32)
            ok = bson_append_int32(b, KEY(P, key), (int32_t)n.i);
        else if (n.type == NUM_I64)
            ok = bson_append_int64(b, KEY(P, key), n.i);
        else
            ok = bson_append_double(b, KEY(P, key), n.d);
        return append_ok(P, ok, pos);
    }
    if (is_ident_start(c)) return parse_ident_value(P, b, key);
    return fail_unexpected(P, pos, "expected a value");
}

/* Members of an object whose '{' is consumed, through its '}'. */
static int parse_members(parser_t *P, bson_t *b, size_t outer)
{
    char kb[SHOW_MAX], m[SHOW_MAX + 64];
    for (;;) {
        if (skip_ws(P)) return P->rc;
        if (P->p < P->end && *P->p == '}') {
            P->p++;
            return 0;
        }
        size_t mark = P->slen;
        const char *kpos = P->p;
        span_t key;
        if (lex_key(P, &key) || expect_colon(P, key) || parse_value(P, b, key, outer)) return P->rc;
        if (outer + b->len > MK_MAX_BSON_SIZE) return fail_size(P, kpos);
        if (skip_ws(P)) return P->rc;
        if (P->p < P->end && (*P->p == ',' || *P->p == '}')) {
            if (*P->p++ == '}') return 0;
            P->slen = mark;
            continue;
        }
        snprintf(m, sizeof m, "expected ',' or '}' after the value of key \"%s\"",
                 show_span(P, kb, sizeof kb, key));
        return fail_unexpected(P, P->p, m);
    }
}

/* Elements of an array whose '[' is consumed, through its ']'. */
static int parse_elements(parser_t *P, bson_t *b, size_t outer)
{
    char m[64];
    for (uint32_t i = 0;; i++) {
        if (skip_ws(P)) return P->rc;
        if (P->p < P->end && *P->p == ']') {
            P->p++;
            return 0;
        }
        if (P->p < P->end && *P->p == ',')
            return fail_at(P, P->p,
                           "expected a value or ']', found ',' (array holes are not "
                           "supported)");
        size_t mark = P->slen;
        const char *vpos = P->p;
        char buf[16];
        const char *k;
        size_t kl = bson_uint32_to_string(i, &k, buf, sizeof buf);
        if (parse_value(P, b, (span_t){k, 0, kl}, outer)) return P->rc;
        if (outer + b->len > MK_MAX_BSON_SIZE) return fail_size(P, vpos);
        P->slen = mark;
        if (skip_ws(P)) return P->rc;
        if (P->p < P->end && (*P->p == ',' || *P->p == ']')) {
            if (*P->p++ == ']') return 0;
            continue;
        }
        snprintf(m, sizeof m, "expected ',' or ']' after array element %u", i);
        return fail_unexpected(P, P->p, m);
    }
}

static int parse_top(parser_t *P, bson_t *out, bool *is_array)
{
    if (P->end - P->p >= 3 && memcmp(P->p, "\xEF\xBB\xBF", 3) == 0) P->p += 3; /* BOM */
    if (skip_ws(P)) return P->rc;
    const char *pos = P->p;
    P->depth = 1;
    if (pos < P->end && *pos == '{') {
        wrapper_t w;
        if (peek_wrapper(P, &w)) return P->rc;
        if (w != W_NONE)
            return fail_at(P, pos,
                           "the top level must be a document, not an Extended JSON %s value",
                           wrapper_names[w]);
        P->p++;
        if (parse_members(P, out, 0)) return P->rc;
    } else if (pos < P->end && *pos == '[' && is_array) {
        P->p++;
        if (parse_elements(P, out, 0)) return P->rc;
        *is_array = true;
    } else {
        return fail_unexpected(P, pos,
                               is_array ? "expected '{' or '[' at the start of the input"
                                        : "expected '{' at the start of the document");
    }
    if (skip_ws(P)) return P->rc;
    if (P->p < P->end) {
        char m[64];
        snprintf(m, sizeof m, "expected the end of input after the %s",
                 is_array && *is_array ? "array" : "document");
        return fail_unexpected(P, P->p, m);
    }
    if (P->used_args != P->nargs)
        return fail_at(P, P->p, "%zu placeholders but %zu arguments", P->used_args, P->nargs);
    return 0;
}

/* ---------- public API ---------- */

int mk_json_parse_into(bson_t *out, const char *text, size_t len, const mk_arg_t *args,
                       bool *is_array, mk_error_t *err)
{
    if (is_array) *is_array = false;
    if (!out) return mk_error_setc(err, MK_CODE_BAD_VALUE, "mk_json_parse_into: out is NULL");
    if (out->len != 5)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "mk_json_parse_into: out must be an empty document");
    if (!text && len)
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "mk_json_parse_into: text is NULL");
    parser_t P; /* fields set one by one: zeroing the scratch array would cost a memset */
    P.start = P.p = text ? text : "";
    P.end = P.start + len;
    P.args = args;
    P.nargs = P.used_args = 0;
    P.depth = 0;
    P.scratch = P.sbuf;
    P.slen = 0;
    P.scap = sizeof P.sbuf;
    P.err = err;
    P.rc = 0;
    while (args && args[P.nargs].type != MK_ARG_END) P.nargs++;
    int rc = parse_top(&P, out, is_array);
    if (P.scratch != P.sbuf) free(P.scratch);
    if (rc) {
        bson_reinit(out);
        if (is_array) *is_array = false;
        return P.rc ? P.rc : MK_ERR;
    }
    return MK_OK;
}

bson_t *mk_json_parse(const char *text, const mk_arg_t *args, mk_error_t *err)
{
    if (!text) {
        mk_error_setc(err, MK_CODE_BAD_VALUE, "mk_json_parse: text is NULL");
        return NULL;
    }
    bson_t *b = bson_new();
    if (mk_json_parse_into(b, text, strlen(text), args, NULL, err) != MK_OK) {
        bson_destroy(b);
        return NULL;
    }
    return b;
}

char *mk_json_from_bson(const bson_t *doc)
{
    return doc ? bson_as_relaxed_extended_json(doc, NULL) : NULL;
}
