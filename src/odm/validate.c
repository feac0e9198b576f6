/* Mongoose 8's built-in validators, its message templating and the ValidationError aggregate. */
#include "odm/validate.h"

#include "odm/cast.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- a growable string that reports allocation failure instead of aborting ---- */

typedef struct sbuf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
} sbuf_t;

static void sb_addn(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_add(sbuf_t *b, const char *s)
{
    sb_addn(b, s, strlen(s));
}

/* The finished string, or NULL (and nothing leaked) when an append failed. */
static char *sb_finish(sbuf_t *b)
{
    if (!b->oom && !b->p) sb_addn(b, "", 0);
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

/* ---- JS String(value) ---- */

static const char *const WEEKDAYS[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Date.prototype.toString: "Wed Jan 01 2020 00:00:00 GMT+0000 (Coordinated Universal Time)".
 * The zone name comes from the C library (V8 prints ICU's long names; both agree for UTC). */
static void add_js_date(sbuf_t *b, int64_t ms)
{
    /* JS dates span +-8.64e15 ms around the epoch */
    if (ms > 8640000000000000LL || ms < -8640000000000000LL) {
        sb_add(b, "Invalid Date");
        return;
    }
    int64_t secs = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
    time_t t = (time_t)secs;
    struct tm tm;
    long off = 0;
    const char *zone = "Coordinated Universal Time";
    if (localtime_r(&t, &tm)) {
        off = tm.tm_gmtoff;
        if (off != 0 || (tm.tm_zone && strcmp(tm.tm_zone, "UTC") != 0 &&
                         strcmp(tm.tm_zone, "GMT") != 0 && tm.tm_zone[0] != '\0'))
            zone = tm.tm_zone ? tm.tm_zone : "";
    } else if (!gmtime_r(&t, &tm)) {
        sb_add(b, "Invalid Date");
        return;
    }
    long year = (long)tm.tm_year + 1900;
    long aoff = off < 0 ? -off : off;
    char tmp[160];
    char ybuf[16];
    if (year < 0)
        snprintf(ybuf, sizeof ybuf, "-%06ld", -year);
    else
        snprintf(ybuf, sizeof ybuf, "%04ld", year);
    snprintf(tmp, sizeof tmp, "%s %s %02d %s %02d:%02d:%02d GMT%c%02ld%02ld (%s)",
             WEEKDAYS[tm.tm_wday % 7], MONTHS[tm.tm_mon % 12], tm.tm_mday, ybuf, tm.tm_hour,
             tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+', aoff / 3600, (aoff / 60) % 60, zone);
    sb_add(b, tmp);
}

static void add_js_number(sbuf_t *b, double d)
{
    char num[32];
    mk_cast_js_number_string(d, num);
    sb_add(b, num);
}

/* Buffer.prototype.toString(): UTF-8 text; bytes that are not valid UTF-8 become U+FFFD. */
static void add_buffer_text(sbuf_t *b, const uint8_t *data, uint32_t len)
{
    if (len == 0 || !data) return; /* an empty Buffer prints as nothing (data may be NULL) */
    if (bson_utf8_validate((const char *)data, len, true)) {
        sb_addn(b, (const char *)data, len);
        return;
    }
    for (uint32_t i = 0; i < len; i++) {
        if (data[i] < 0x80)
            sb_addn(b, (const char *)data + i, 1);
        else
            sb_add(b, "\xEF\xBF\xBD");
    }
}

/* RegExp.prototype.toString: flags in the order of the `flags` getter. */
static void add_js_regex(sbuf_t *b, const char *pattern, const char *flags)
{
    sb_add(b, "/");
    sb_add(b, pattern[0] ? pattern : "(?:)");
    sb_add(b, "/");
    static const char order[] = "dgimsuvy";
    for (const char *f = order; *f; f++)
        if (flags && strchr(flags, *f)) sb_addn(b, f, 1);
}

static void add_js_string(sbuf_t *b, const bson_value_t *v);

/* Array.prototype.join(","): null and undefined elements print as "". */
static void add_js_array(sbuf_t *b, const uint8_t *data, uint32_t len)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len)) return;
    bool first = true;
    while (bson_iter_next(&it)) {
        if (!first) sb_add(b, ",");
        first = false;
        const bson_value_t *e = bson_iter_value(&it);
        if (e->value_type != BSON_TYPE_NULL && e->value_type != BSON_TYPE_UNDEFINED)
            add_js_string(b, e);
    }
}

static void add_js_string(sbuf_t *b, const bson_value_t *v)
{
    char tmp[64];
    if (!v) {
        sb_add(b, "undefined");
        return;
    }
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
        sb_addn(b, v->value.v_utf8.str, v->value.v_utf8.len);
        break;
    case BSON_TYPE_SYMBOL:
        sb_addn(b, v->value.v_symbol.symbol, v->value.v_symbol.len);
        break;
    case BSON_TYPE_CODE:
        sb_addn(b, v->value.v_code.code, v->value.v_code.code_len);
        break;
    case BSON_TYPE_INT32:
        add_js_number(b, (double)v->value.v_int32);
        break;
    case BSON_TYPE_INT64:
        add_js_number(b, (double)v->value.v_int64);
        break;
    case BSON_TYPE_DOUBLE:
        add_js_number(b, v->value.v_double);
        break;
    case BSON_TYPE_DECIMAL128: {
        char dec[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, dec);
        sb_add(b, dec);
        break;
    }
    case BSON_TYPE_BOOL:
        sb_add(b, v->value.v_bool ? "true" : "false");
        break;
    case BSON_TYPE_NULL:
        sb_add(b, "null");
        break;
    case BSON_TYPE_UNDEFINED:
        sb_add(b, "undefined");
        break;
    case BSON_TYPE_DATE_TIME:
        add_js_date(b, v->value.v_datetime);
        break;
    case BSON_TYPE_OID:
        bson_oid_to_string(&v->value.v_oid, tmp);
        sb_add(b, tmp);
        break;
    case BSON_TYPE_REGEX:
        add_js_regex(b, v->value.v_regex.regex, v->value.v_regex.options);
        break;
    case BSON_TYPE_ARRAY:
        add_js_array(b, v->value.v_doc.data, v->value.v_doc.data_len);
        break;
    case BSON_TYPE_BINARY:
        add_buffer_text(b, v->value.v_binary.data, v->value.v_binary.data_len);
        break;
    case BSON_TYPE_TIMESTAMP: /* js-bson's Timestamp prints as the unsigned 64-bit Long */
        snprintf(tmp, sizeof tmp, "%llu",
                 ((unsigned long long)v->value.v_timestamp.timestamp << 32) |
                     v->value.v_timestamp.increment);
        sb_add(b, tmp);
        break;
    default: /* documents and the remaining BSON types are plain objects to String() */
        sb_add(b, "[object Object]");
        break;
    }
}

char *mk_validate_js_string(const bson_value_t *value)
{
    sbuf_t b = {0};
    add_js_string(&b, value);
    return sb_finish(&b);
}

/* ---- message templating ---- */

/* msg.replace(key, repl) with a string pattern: the first occurrence only, and the replacement's
 * $-patterns expanded as String.prototype.replace does (GetSubstitution, no captures). A new
 * string, the unchanged input (no match), or NULL on allocation failure (input freed). */
static char *replace_first(char *msg, const char *key, const char *repl)
{
    char *at = strstr(msg, key);
    if (!at) return msg;
    size_t klen = strlen(key);
    sbuf_t b = {0};
    sb_addn(&b, msg, (size_t)(at - msg));
    for (const char *r = repl; *r; r++) {
        if (r[0] == '$' && r[1] == '$') {
            sb_add(&b, "$");
            r++;
        } else if (r[0] == '$' && r[1] == '&') {
            sb_addn(&b, at, klen);
            r++;
        } else if (r[0] == '$' && r[1] == '`') {
            sb_addn(&b, msg, (size_t)(at - msg));
            r++;
        } else if (r[0] == '$' && r[1] == '\'') {
            sb_add(&b, at + klen);
            r++;
        } else {
            sb_addn(&b, r, 1);
        }
    }
    sb_add(&b, at + klen);
    free(msg);
    return sb_finish(&b);
}

/* Replaces {KEY} (key uppercased) by String(value); frees msg on failure. */
static char *substitute(char *msg, const char *key, const bson_value_t *value)
{
    sbuf_t k = {0};
    sb_add(&k, "{");
    for (const char *c = key; *c; c++) {
        char u = (char)toupper((unsigned char)*c);
        sb_addn(&k, &u, 1);
    }
    sb_add(&k, "}");
    char *placeholder = sb_finish(&k);
    char *text = mk_validate_js_string(value);
    if (!placeholder || !text) {
        free(placeholder);
        free(text);
        free(msg);
        return NULL;
    }
    msg = replace_first(msg, placeholder, text);
    free(placeholder);
    free(text);
    return msg;
}

char *mk_validate_message_format(const char *template_, const char *path, const bson_value_t *value,
                                 const bson_t *extra)
{
    char *msg = strdup(template_ ? template_ : "");
    if (!msg) return NULL;
    bson_iter_t it;
    if (extra && bson_iter_init(&it, extra)) {
        while (msg && bson_iter_next(&it)) {
            if (strcmp(bson_iter_key(&it), "message") == 0) continue; /* never substituted */
            msg = substitute(msg, bson_iter_key(&it), bson_iter_value(&it));
        }
    }
    bson_value_t p = {.value_type = BSON_TYPE_UTF8};
    p.value.v_utf8.str = (char *)(path ? path : "");
    p.value.v_utf8.len = (uint32_t)strlen(p.value.v_utf8.str);
    if (msg) msg = substitute(msg, "path", &p);
    if (msg) msg = substitute(msg, "fullPath", &p);
    if (msg) msg = substitute(msg, "value", value);
    return msg;
}

void mk_validate_option(const bson_value_t *opt, bson_value_t *value, const char **message)
{
    *value = *opt;
    *message = NULL;
    if (opt->value_type != BSON_TYPE_ARRAY) return;
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, opt->value.v_doc.data, opt->value.v_doc.data_len)) return;
    bson_value_t first, second;
    if (!bson_iter_next(&it)) return;
    first = *bson_iter_value(&it);
    if (!bson_iter_next(&it) || !BSON_ITER_HOLDS_UTF8(&it)) return;
    second = *bson_iter_value(&it);
    if (bson_iter_next(&it)) return;
    *value = first;
    *message = second.value.v_utf8.str;
}

/* ---- the collector ---- */

void mk_verrors_init(mk_verrors_t *errs)
{
    memset(errs, 0, sizeof *errs);
}

static void verror_free(mk_verror_t *e)
{
    free(e->path);
    free(e->kind);
    free(e->message);
    bson_value_destroy(&e->value);
}

void mk_verrors_destroy(mk_verrors_t *errs)
{
    if (!errs) return;
    for (size_t i = 0; i < errs->count; i++) verror_free(&errs->items[i]);
    free(errs->items);
    errs->items = NULL;
    errs->count = errs->cap = 0;
}

const mk_verror_t *mk_verrors_find(const mk_verrors_t *errs, const char *path)
{
    for (size_t i = 0; i < errs->count; i++)
        if (strcmp(errs->items[i].path, path) == 0) return &errs->items[i];
    return NULL;
}

int mk_verrors_add(mk_verrors_t *errs, const char *path, const char *kind, const char *message,
                   const bson_value_t *value)
{
    mk_verror_t e = {0};
    e.path = strdup(path ? path : "");
    e.kind = strdup(kind ? kind : "");
    e.message = strdup(message ? message : "");
    if (value)
        bson_value_copy(value, &e.value);
    else
        e.value.value_type = BSON_TYPE_UNDEFINED;
    if (!e.path || !e.kind || !e.message) {
        verror_free(&e);
        return mk_error_nomem(&errs->error);
    }
    for (size_t i = 0; i < errs->count; i++) {
        if (strcmp(errs->items[i].path, e.path) == 0) { /* errors[path] = err keeps its slot */
            verror_free(&errs->items[i]);
            errs->items[i] = e;
            return MK_OK;
        }
    }
    if (errs->count == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 4;
        mk_verror_t *items = realloc(errs->items, cap * sizeof *items);
        if (!items) {
            verror_free(&e);
            return mk_error_nomem(&errs->error);
        }
        errs->items = items;
        errs->cap = cap;
    }
    errs->items[errs->count++] = e;
    return MK_OK;
}

/* A JS array index ("0", "17", no leading zeros, below 2^32 - 1): such object keys enumerate
 * first, in ascending order. */
static bool integer_key(const char *k, uint64_t *n)
{
    if (!*k || (k[0] == '0' && k[1])) return false;
    uint64_t v = 0;
    for (const char *c = k; *c; c++) {
        if (*c < '0' || *c > '9') return false;
        v = v * 10 + (uint64_t)(*c - '0');
        if (v >= 4294967295ULL) return false;
    }
    *n = v;
    return true;
}

static void append_entry(sbuf_t *b, const mk_verror_t *e, bool *first)
{
    sb_add(b, *first ? ": " : ", ");
    *first = false;
    sb_add(b, e->path);
    sb_add(b, ": ");
    sb_add(b, e->message);
}

int mk_verrors_to_error(const mk_verrors_t *errs, const char *model_name, mk_error_t *err)
{
    if (errs->count == 0) return MK_OK;
    sbuf_t b = {0};
    if (model_name) {
        sb_add(&b, model_name);
        sb_add(&b, " validation failed");
    } else {
        sb_add(&b, "Validation failed");
    }
    bool first = true;
    /* integer-like keys first, ascending: a selection pass per smallest remaining index */
    uint64_t last = 0;
    bool have_last = false;
    for (;;) {
        const mk_verror_t *best = NULL;
        uint64_t best_n = 0;
        for (size_t i = 0; i < errs->count; i++) {
            uint64_t n;
            if (!integer_key(errs->items[i].path, &n)) continue;
            if (have_last && n <= last) continue;
            if (!best || n < best_n) {
                best = &errs->items[i];
                best_n = n;
            }
        }
        if (!best) break;
        append_entry(&b, best, &first);
        last = best_n;
        have_last = true;
    }
    for (size_t i = 0; i < errs->count; i++) {
        uint64_t n;
        if (!integer_key(errs->items[i].path, &n)) append_entry(&b, &errs->items[i], &first);
    }
    char *msg = sb_finish(&b);
    if (!msg) return mk_error_nomem(err);
    mk_error_set(err, 0, "ValidationError", "%s", msg);
    free(msg);
    /* the per-path details, in the order errors were recorded */
    for (size_t i = 0; err && i < errs->count; i++) {
        const mk_verror_t *e = &errs->items[i];
        bool missing = e->value.value_type == BSON_TYPE_UNDEFINED;
        char *shown = mk_validate_js_string(missing ? NULL : &e->value);
        /* CastErrors are recorded with kind "cast:<Type>" (Mongoose's kind is the type) */
        bool cast = strncmp(e->kind, "cast", 4) == 0 && (e->kind[4] == ':' || !e->kind[4]);
        const char *kind = cast && e->kind[4] == ':' ? e->kind + 5 : e->kind;
        mk_error_add_detail(err, e->path, kind, cast ? "CastError" : "ValidatorError", e->message,
                            shown ? shown : "");
        free(shown);
    }
    return MK_ERR;
}

/* ---- the validators ---- */

static const char MSG_REQUIRED[] = "Path `{PATH}` is required.";
static const char MSG_ENUM[] = "`{VALUE}` is not a valid enum value for path `{PATH}`.";
static const char MSG_MATCH[] = "Path `{PATH}` is invalid ({VALUE}).";
static const char MSG_MINLENGTH[] =
    "Path `{PATH}` (`{VALUE}`) is shorter than the minimum allowed length ({MINLENGTH}).";
static const char MSG_MAXLENGTH[] =
    "Path `{PATH}` (`{VALUE}`) is longer than the maximum allowed length ({MAXLENGTH}).";
static const char MSG_NUMBER_MIN[] =
    "Path `{PATH}` ({VALUE}) is less than minimum allowed value ({MIN}).";
static const char MSG_NUMBER_MAX[] =
    "Path `{PATH}` ({VALUE}) is more than maximum allowed value ({MAX}).";
static const char MSG_DATE_MIN[] =
    "Path `{PATH}` ({VALUE}) is before minimum allowed value ({MIN}).";
static const char MSG_DATE_MAX[] =
    "Path `{PATH}` ({VALUE}) is after maximum allowed value ({MAX}).";

static bool nullish(const bson_value_t *v)
{
    return !v || v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED;
}

/* Formats the message from `extra` (which starts with the validator's type) and records it. */
static int fail(mk_verrors_t *errs, const char *path, const char *kind, const char *message,
                const char *default_message, const bson_value_t *v, bson_t *extra)
{
    char *msg = mk_validate_message_format(message ? message : default_message, path, v, extra);
    bson_destroy(extra);
    if (!msg) return mk_error_nomem(&errs->error);
    int rc = mk_verrors_add(errs, path, kind, msg, v);
    free(msg);
    return rc < 0 ? rc : 0;
}

/* extra = { type: kind }: the validator's properties start with its type, as Mongoose's do. */
static bool extra_init(bson_t *extra, const char *kind)
{
    bson_init(extra);
    return bson_append_utf8(extra, "type", -1, kind, -1);
}

static bool is_number(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64 ||
           v->value_type == BSON_TYPE_DOUBLE;
}

static double number_of(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return (double)v->value.v_int32;
    case BSON_TYPE_INT64:
        return (double)v->value.v_int64;
    case BSON_TYPE_DATE_TIME:
        return (double)v->value.v_datetime;
    default:
        return v->value.v_double;
    }
}

static bool check_required(const bson_value_t *v, mk_schematype_t type)
{
    if (nullish(v)) return false;
    switch (type) {
    case MK_TYPE_STRING:
        return v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.len > 0;
    case MK_TYPE_NUMBER:
    case MK_TYPE_DOUBLE:
    case MK_TYPE_INT32:
        return is_number(v);
    case MK_TYPE_BOOLEAN:
        return v->value_type == BSON_TYPE_BOOL;
    case MK_TYPE_DATE:
        return v->value_type == BSON_TYPE_DATE_TIME;
    case MK_TYPE_OBJECTID:
        return v->value_type == BSON_TYPE_OID;
    case MK_TYPE_BUFFER:
        return v->value_type == BSON_TYPE_BINARY && v->value.v_binary.data_len > 0;
    case MK_TYPE_DECIMAL128:
        return v->value_type == BSON_TYPE_DECIMAL128;
    case MK_TYPE_BIGINT:
        return v->value_type == BSON_TYPE_INT64;
    default: /* arrays (even empty), sub-documents, maps, Mixed, UUID: any non-null value */
        return true;
    }
}

int mk_validate_required(const bson_value_t *v, mk_schematype_t type, const char *message,
                         const char *path, mk_verrors_t *errs)
{
    if (check_required(v, type)) return 1;
    bson_t extra;
    if (!extra_init(&extra, "required")) {
        bson_destroy(&extra);
        return mk_error_nomem(&errs->error);
    }
    return fail(errs, path, "required", message, MSG_REQUIRED, v, &extra);
}

/* JS strict equality between a value and an enum member (strings and numbers). */
static bool strict_equal(const bson_value_t *a, const bson_value_t *b)
{
    if (a->value_type == BSON_TYPE_UTF8 && b->value_type == BSON_TYPE_UTF8)
        return a->value.v_utf8.len == b->value.v_utf8.len &&
               memcmp(a->value.v_utf8.str, b->value.v_utf8.str, a->value.v_utf8.len) == 0;
    if (is_number(a) && is_number(b)) return number_of(a) == number_of(b);
    if (a->value_type == BSON_TYPE_BOOL && b->value_type == BSON_TYPE_BOOL)
        return a->value.v_bool == b->value.v_bool;
    return false;
}

int mk_validate_enum(const bson_value_t *v, const bson_t *values, const char *message,
                     const char *path, mk_verrors_t *errs)
{
    if (nullish(v)) return 1;
    if (v->value_type != BSON_TYPE_UTF8 && !is_number(v))
        return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                            "enum validator at path `%s` supports strings and numbers, not %s",
                            path, mk_cast_js_type_name(v));
    bson_iter_t it;
    if (values && bson_iter_init(&it, values)) {
        while (bson_iter_next(&it))
            if (strict_equal(v, bson_iter_value(&it))) return 1;
    }
    bson_t extra;
    bool ok = extra_init(&extra, "enum");
    if (values)
        ok = ok && bson_append_array(&extra, "enumValues", -1, values);
    else {
        bson_t empty = BSON_INITIALIZER;
        ok = ok && bson_append_array(&extra, "enumValues", -1, &empty);
    }
    if (!ok) {
        bson_destroy(&extra);
        return mk_error_nomem(&errs->error);
    }
    return fail(errs, path, "enum", message, MSG_ENUM, v, &extra);
}

/* JS flags -> PCRE2 options; JS's `$` without `m` matches only at the very end. */
static int regex_options(const char *flags, uint32_t *opts, const char *path, mk_verrors_t *errs)
{
    *opts = PCRE2_UTF | PCRE2_ALT_BSUX;
    bool multiline = false;
    for (const char *f = flags ? flags : ""; *f; f++) {
        switch (*f) {
        case 'i':
            *opts |= PCRE2_CASELESS;
            break;
        case 'm':
            *opts |= PCRE2_MULTILINE;
            multiline = true;
            break;
        case 's':
            *opts |= PCRE2_DOTALL;
            break;
        case 'y': /* sticky from lastIndex 0, which Mongoose resets before each test */
            *opts |= PCRE2_ANCHORED;
            break;
        case 'u':
        case 'g': /* test() after lastIndex = 0 ignores global */
        case 'd':
            break;
        default:
            return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                                "match validator at path `%s`: unsupported regular expression "
                                "flag '%c'",
                                path, *f);
        }
    }
    if (!multiline) *opts |= PCRE2_DOLLAR_ENDONLY;
    return MK_OK;
}

int mk_validate_match(const bson_value_t *v, const char *pattern, const char *flags,
                      const char *message, const char *path, mk_verrors_t *errs)
{
    if (nullish(v)) return 1;
    if (v->value_type != BSON_TYPE_UTF8)
        return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                            "match validator at path `%s` needs a string, not %s", path,
                            mk_cast_js_type_name(v));
    if (v->value.v_utf8.len == 0) return 1; /* Mongoose lets '' pass `match` */
    uint32_t opts;
    if (regex_options(flags, &opts, path, errs) < 0) return MK_ERR;
    int code;
    PCRE2_SIZE off;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR why[256];
        pcre2_get_error_message(code, why, sizeof why);
        return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                            "Invalid regular expression: /%s/%s: %s", pattern, flags ? flags : "",
                            (const char *)why);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) {
        pcre2_code_free(re);
        return mk_error_nomem(&errs->error);
    }
    int rc = pcre2_match(re, (PCRE2_SPTR)v->value.v_utf8.str, v->value.v_utf8.len, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    if (rc >= 0) return 1;
    if (rc != PCRE2_ERROR_NOMATCH)
        return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                            "match validator at path `%s`: regular expression failed (%d)", path,
                            rc);
    bson_t extra;
    bool ok = extra_init(&extra, "regexp") &&
              bson_append_regex(&extra, "regexp", -1, pattern, flags ? flags : "");
    if (!ok) {
        bson_destroy(&extra);
        return mk_error_nomem(&errs->error);
    }
    return fail(errs, path, "regexp", message, MSG_MATCH, v, &extra);
}

/* JS's String.prototype.length: UTF-16 code units (4-byte UTF-8 sequences are two). */
static double utf16_length(const char *s, uint32_t len)
{
    double n = 0;
    for (uint32_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) == 0x80) continue;
        n += c >= 0xF0 ? 2 : 1;
    }
    return n;
}

static int validate_length(const bson_value_t *v, double bound, bool is_min, const char *message,
                           const char *path, mk_verrors_t *errs)
{
    const char *kind = is_min ? "minlength" : "maxlength";
    if (nullish(v)) return 1;
    if (v->value_type != BSON_TYPE_UTF8)
        return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                            "%s validator at path `%s` needs a string, not %s", kind, path,
                            mk_cast_js_type_name(v));
    double n = utf16_length(v->value.v_utf8.str, v->value.v_utf8.len);
    if (is_min ? n >= bound : n <= bound) return 1;
    bson_t extra;
    bool ok = extra_init(&extra, kind) && bson_append_double(&extra, kind, -1, bound);
    if (!ok) {
        bson_destroy(&extra);
        return mk_error_nomem(&errs->error);
    }
    return fail(errs, path, kind, message, is_min ? MSG_MINLENGTH : MSG_MAXLENGTH, v, &extra);
}

int mk_validate_minlength(const bson_value_t *v, double minlength, const char *message,
                          const char *path, mk_verrors_t *errs)
{
    return validate_length(v, minlength, true, message, path, errs);
}

int mk_validate_maxlength(const bson_value_t *v, double maxlength, const char *message,
                          const char *path, mk_verrors_t *errs)
{
    return validate_length(v, maxlength, false, message, path, errs);
}

static int validate_bound(const bson_value_t *v, const bson_value_t *bound, bool is_min,
                          const char *message, const char *path, mk_verrors_t *errs)
{
    const char *kind = is_min ? "min" : "max";
    if (nullish(v)) return 1;
    bool date = v->value_type == BSON_TYPE_DATE_TIME;
    if (!date && !is_number(v))
        return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                            "%s validator at path `%s` needs a number or a date, not %s", kind,
                            path, mk_cast_js_type_name(v));
    if (!bound || (!is_number(bound) && bound->value_type != BSON_TYPE_DATE_TIME))
        return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                            "%s validator at path `%s`: the bound must be a number or a date", kind,
                            path);
    double x = number_of(v), b = number_of(bound);
    if (is_min ? x >= b : x <= b) return 1; /* NaN on either side fails, as in JS */
    bson_t extra;
    bool ok = extra_init(&extra, kind) && bson_append_value(&extra, kind, -1, bound);
    if (!ok) {
        bson_destroy(&extra);
        return mk_error_nomem(&errs->error);
    }
    const char *def =
        date ? (is_min ? MSG_DATE_MIN : MSG_DATE_MAX) : (is_min ? MSG_NUMBER_MIN : MSG_NUMBER_MAX);
    return fail(errs, path, kind, message, def, v, &extra);
}

int mk_validate_min(const bson_value_t *v, const bson_value_t *min, const char *message,
                    const char *path, mk_verrors_t *errs)
{
    return validate_bound(v, min, true, message, path, errs);
}

int mk_validate_max(const bson_value_t *v, const bson_value_t *max, const char *message,
                    const char *path, mk_verrors_t *errs)
{
    return validate_bound(v, max, false, message, path, errs);
}
