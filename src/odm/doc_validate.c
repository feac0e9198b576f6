/* Mongoose 8's document validation pipeline and its update validators. */
#include "odm/doc_validate.h"

#include "odm/cast.h"
#include "odm/schema_fns.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

/* Mongoose's default message for a custom validator (lib/error/messages.js general.default). */
static const char MSG_USER_DEFAULT[] = "Validator failed for path `{PATH}` with value `{VALUE}`";
/* The Date bound messages, needed to show a bound as written ({MIN} of `min: '2020-01-01'`). */
static const char MSG_DATE_MIN[] =
    "Path `{PATH}` ({VALUE}) is before minimum allowed value ({MIN}).";
static const char MSG_DATE_MAX[] =
    "Path `{PATH}` ({VALUE}) is after maximum allowed value ({MAX}).";

/* Updates and documents from outside may nest without bound; the walks recurse per level. */
#define MAX_DEPTH 200

/* ---- keys: full dotted paths, on the stack when short ---- */

typedef struct kbuf {
    char *p;
    char buf[192];
} kbuf_t;

/* a + b + c into k; NULL when out of memory. */
static const char *kb_set(kbuf_t *k, const char *a, const char *b, const char *c)
{
    if (!*a && !c) { /* nothing to join: borrow b */
        k->p = NULL;
        return b;
    }
    size_t na = strlen(a), nb = strlen(b), nc = c ? strlen(c) : 0;
    size_t n = na + nb + nc + 1;
    k->p = n <= sizeof k->buf ? k->buf : malloc(n);
    if (!k->p) return NULL;
    memcpy(k->p, a, na);
    memcpy(k->p + na, b, nb);
    if (c) memcpy(k->p + na + nb, c, nc);
    k->p[n - 1] = '\0';
    return k->p;
}

static void kb_free(kbuf_t *k)
{
    if (k->p && k->p != k->buf) free(k->p);
    k->p = NULL;
}

static char *concat3(const char *a, const char *b, const char *c)
{
    size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
    char *s = malloc(na + nb + nc + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    memcpy(s + na, b, nb);
    memcpy(s + na + nb, c, nc + 1);
    return s;
}

/* `s` is `pre` followed by '.' and more. */
static bool under(const char *s, const char *pre)
{
    size_t n = strlen(pre);
    return strncmp(s, pre, n) == 0 && s[n] == '.';
}

/* ---- one validation run ---- */

/* A sub-document waiting to be validated: Mongoose finishes sub-documents after their parent
 * level, so they are queued and validated breadth first. */
typedef struct job {
    struct job *next;
    const mk_schema_t *schema;
    const uint8_t *data; /* borrowed from the validated BSON */
    uint32_t len;
    char prefix[]; /* full key prefix with its trailing dot: "comments.1." */
} job_t;

typedef struct run {
    const mk_dv_opts_t *o; /* NULL: no path selection */
    mk_doc_t *doc;
    mk_query_t *query;
    mk_verrors_t *errs;
    mk_verrors_t scratch; /* a built-in validator's error before it is re-keyed */
    job_t *head, *tail;
} run_t;

static void run_init(run_t *r, const mk_dv_opts_t *o, mk_doc_t *doc, mk_query_t *query,
                     mk_verrors_t *errs)
{
    memset(r, 0, sizeof *r);
    r->o = o;
    r->doc = doc;
    r->query = query;
    r->errs = errs;
    mk_verrors_init(&r->scratch);
}

static void run_free(run_t *r)
{
    while (r->head) {
        job_t *j = r->head;
        r->head = j->next;
        free(j);
    }
    r->tail = NULL;
    mk_verrors_destroy(&r->scratch);
}

static int nomem(run_t *r)
{
    return mk_error_nomem(&r->errs->error);
}

static int enqueue(run_t *r, const mk_schema_t *schema, const bson_value_t *v, const char *key)
{
    size_t n = strlen(key);
    job_t *j = malloc(sizeof *j + n + 2);
    if (!j) return nomem(r);
    j->next = NULL;
    j->schema = schema;
    j->data = v->value.v_doc.data;
    j->len = v->value.v_doc.data_len;
    memcpy(j->prefix, key, n);
    j->prefix[n] = '.';
    j->prefix[n + 1] = '\0';
    if (r->tail)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    return MK_OK;
}

/* ---- path selection: validate(pathsToValidate) and validateModifiedOnly ---- */

/* A listed path equals key or is a parent of it; with `below`, also a child of it. */
static bool listed(const char *const *v, const char *key, bool below)
{
    for (; v && *v; v++)
        if (strcmp(*v, key) == 0 || under(key, *v) || (below && under(*v, key))) return true;
    return false;
}

/* Whether the path's own validators run. `required` (a required path) keeps the path under
 * modified_and_required, where only modified and required paths are validated. */
static bool want(const run_t *r, const char *key, bool required)
{
    if (!r->o) return true;
    if (r->o->only_paths && !listed(r->o->only_paths, key, false)) return false;
    /* isModified(key): the path, a parent or a child was modified */
    bool modified = listed(r->o->modified_paths, key, true);
    if (r->o->validate_modified_only && !modified) return false;
    if (r->o->modified_and_required && !modified && !required) return false;
    return true;
}

/* Whether anything under key may be validated. */
static bool want_below(const run_t *r, const char *key, bool required)
{
    if (!r->o) return true;
    if (r->o->only_paths && !listed(r->o->only_paths, key, true)) return false;
    bool modified = listed(r->o->modified_paths, key, true);
    if (r->o->validate_modified_only && !modified) return false;
    if (r->o->modified_and_required && !modified && !required) return false;
    return true;
}

/* ---- validators of one value ---- */

/* What a value is validated as. */
typedef struct vt {
    const mk_schema_t *owner;    /* the schema holding the path (and its registry) */
    const mk_schema_path_t *p;   /* the SchemaType (an array's element for elements) */
    const mk_schema_path_t *arr; /* the array whose element p is (its `enum` applies), or NULL */
    const char *msg_path;        /* the path messages name */
    const char *key;             /* where the error is recorded */
} vt_t;

static bool is_nullish_type(bson_type_t t)
{
    return t == BSON_TYPE_NULL || t == BSON_TYPE_UNDEFINED;
}

static bool is_num(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64 ||
           v->value_type == BSON_TYPE_DOUBLE;
}

static double num(const bson_value_t *v)
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

/* Moves the error a built-in validator left in the scratch collector to its key. rc is the
 * validator's result: 1 passed, 0 failed, < 0 error. Returns 0 passed, 1 failed, < 0. */
static int builtin_done(run_t *r, const vt_t *t, int rc)
{
    if (rc == 1) return 0;
    if (rc < 0) {
        if (rc == MK_ENOMEM) return nomem(r);
        r->errs->error = r->scratch.error;
        return rc;
    }
    int out = 1;
    if (r->scratch.count > 0) {
        const mk_verror_t *e = &r->scratch.items[0];
        bool missing = e->value.value_type == BSON_TYPE_UNDEFINED;
        if (mk_verrors_add(r->errs, t->key, e->kind, e->message, missing ? NULL : &e->value) < 0)
            out = MK_ENOMEM;
    }
    mk_verrors_destroy(&r->scratch);
    return out;
}

static int option_error(run_t *r, const vt_t *t, const char *option, const char *what)
{
    return mk_error_set(&r->errs->error, MK_CODE_BAD_VALUE, "BadValue",
                        "`%s` option at path `%s`: %s", option, t->msg_path, what);
}

/* The last required function registered for the path (a later one replaces an earlier one, as
 * calling required() again does in Mongoose). */
static const mk_path_fn_t *required_fn(const vt_t *t)
{
    const mk_path_fn_t *last = NULL, *f;
    size_t it = 0;
    while ((f = mk_schema_path_fn_next(t->owner, mk_schema_path_name(t->p), MK_FN_REQUIRED, &it)))
        last = f;
    return last;
}

typedef struct req {
    bool on;
    const mk_path_fn_t *fn;
    const char *message;
} req_t;

/* Reads `required`: true, [true, 'message'], 'message', or a function from the registry (the
 * schema text's `required: 'name'` is resolved into one). As in Mongoose, only false, null and
 * undefined turn it off. */
static int required_of(run_t *r, const vt_t *t, req_t *out)
{
    memset(out, 0, sizeof *out);
    out->fn = required_fn(t);
    bson_iter_t it;
    bool on = false;
    const char *msg = NULL;
    if (mk_schema_path_option(t->p, "required", &it)) {
        bson_value_t val;
        mk_validate_option(bson_iter_value(&it), &val, &msg);
        switch (val.value_type) {
        case BSON_TYPE_BOOL:
            on = val.value.v_bool;
            break;
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            break;
        case BSON_TYPE_UTF8: /* a message, unless it named the registered function */
            on = true;
            if (!out->fn && !msg) msg = val.value.v_utf8.str;
            break;
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
            on = true;
            break;
        default:
            return option_error(r, t, "required",
                                "expected true, false, a message, [true, message] or a "
                                "registered function name");
        }
    }
    if (out->fn) {
        out->on = true;
        out->message = out->fn->message ? out->fn->message : msg;
    } else if (on) {
        out->on = true;
        out->message = msg;
    }
    return MK_OK;
}

static bool has_required(const mk_schema_t *owner, const mk_schema_path_t *p)
{
    if (mk_schema_path_has_fn(owner, mk_schema_path_name(p), MK_FN_REQUIRED)) return true;
    bson_iter_t it;
    if (!mk_schema_path_option(p, "required", &it)) return false;
    bson_value_t val;
    const char *msg;
    mk_validate_option(bson_iter_value(&it), &val, &msg);
    if (val.value_type == BSON_TYPE_BOOL) return val.value.v_bool;
    return !is_nullish_type(val.value_type);
}

/* String enum values are cast to strings when the schema is built ([1, 2] holds '1', '2'). */
static int enum_values_as_strings(run_t *r, const vt_t *t, const bson_t *in, bson_t *out)
{
    bson_iter_t it;
    uint32_t n = 0;
    if (!bson_iter_init(&it, in)) return option_error(r, t, "enum", "malformed list");
    while (bson_iter_next(&it)) {
        const bson_value_t *e = bson_iter_value(&it);
        char key[16];
        const char *k;
        bson_uint32_to_string(n, &k, key, sizeof key);
        bool ok = true;
        if (e->value_type == BSON_TYPE_UTF8) {
            ok = bson_append_utf8(out, k, -1, e->value.v_utf8.str, (int)e->value.v_utf8.len);
        } else if (is_num(e)) {
            char buf[32];
            mk_cast_js_number_string(num(e), buf);
            ok = bson_append_utf8(out, k, -1, buf, -1);
        } else if (e->value_type == BSON_TYPE_BOOL) {
            ok = bson_append_utf8(out, k, -1, e->value.v_bool ? "true" : "false", -1);
        } else if (is_nullish_type(e->value_type)) {
            continue; /* matches nothing a string can be */
        } else {
            return option_error(r, t, "enum", "a value cannot be cast to String");
        }
        if (!ok) return nomem(r);
        n++;
    }
    return MK_OK;
}

static bool all_strings(const bson_t *values)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, values)) return false;
    while (bson_iter_next(&it))
        if (!BSON_ITER_HOLDS_UTF8(&it)) return false;
    return true;
}

/* `enum`: [values], { values: [...], message }, an object (its values, as a TypeScript enum),
 * or a single value. An empty list adds no validator. */
static int run_enum(run_t *r, const vt_t *t, const bson_value_t *v, const bson_iter_t *opt,
                    bool numeric)
{
    const bson_value_t *ov = bson_iter_value((bson_iter_t *)opt);
    const char *msg = NULL;
    bson_t view; /* the option's list, read in place */
    bson_t own;  /* a list built here (single value, or cast to strings) */
    const bson_t *list = &view;
    bson_init(&own);
    int rc = MK_OK;
    bool as_array = true;
    if (ov->value_type == BSON_TYPE_ARRAY || ov->value_type == BSON_TYPE_DOCUMENT) {
        if (!bson_init_static(&view, ov->value.v_doc.data, ov->value.v_doc.data_len)) {
            rc = option_error(r, t, "enum", "malformed value");
            goto out;
        }
        if (ov->value_type == BSON_TYPE_ARRAY && bson_empty(&view)) goto out; /* enum: [] */
        bson_iter_t vi, mi;
        /* an object without `values` lists its values (keys dropped): rebuilt as an array */
        as_array = ov->value_type == BSON_TYPE_ARRAY;
        if (ov->value_type == BSON_TYPE_DOCUMENT && bson_iter_init_find(&vi, &view, "values") &&
            BSON_ITER_HOLDS_ARRAY(&vi)) {
            as_array = true;
            uint32_t n;
            const uint8_t *d;
            if (bson_iter_init_find(&mi, &view, "message") && BSON_ITER_HOLDS_UTF8(&mi))
                msg = bson_iter_utf8(&mi, NULL);
            bson_iter_array(&vi, &n, &d);
            if (!bson_init_static(&view, d, n)) {
                rc = option_error(r, t, "enum", "malformed values");
                goto out;
            }
        }
    } else if (is_nullish_type(ov->value_type) ||
               (ov->value_type == BSON_TYPE_BOOL && !ov->value.v_bool)) {
        goto out; /* enum: false / null adds no validator */
    } else {
        if (!bson_append_value(&own, "0", 1, ov)) {
            rc = nomem(r);
            goto out;
        }
        list = &own;
    }
    if (!numeric && (!as_array || !all_strings(list))) {
        bson_t cast = BSON_INITIALIZER;
        rc = enum_values_as_strings(r, t, list, &cast);
        bson_destroy(&own);
        bson_init(&own);
        if (rc == MK_OK && !bson_concat(&own, &cast)) rc = nomem(r);
        bson_destroy(&cast);
        if (rc != MK_OK) goto out;
        list = &own;
    }
    rc = builtin_done(r, t, mk_validate_enum(v, list, msg, t->msg_path, &r->scratch));
out:
    bson_destroy(&own);
    return rc;
}

static int run_match(run_t *r, const vt_t *t, const bson_value_t *v, const bson_iter_t *opt)
{
    bson_value_t re;
    const char *msg;
    mk_validate_option(bson_iter_value((bson_iter_t *)opt), &re, &msg);
    if (is_nullish_type(re.value_type)) return 0;
    if (re.value_type != BSON_TYPE_REGEX)
        return option_error(r, t, "match", "expected a regular expression or [regexp, message]");
    int rc = mk_validate_match(v, re.value.v_regex.regex, re.value.v_regex.options, msg,
                               t->msg_path, &r->scratch);
    return builtin_done(r, t, rc);
}

static int run_length(run_t *r, const vt_t *t, const bson_value_t *v, const bson_iter_t *opt,
                      bool is_min)
{
    bson_value_t b;
    const char *msg;
    mk_validate_option(bson_iter_value((bson_iter_t *)opt), &b, &msg);
    if (is_nullish_type(b.value_type)) return 0;
    if (!is_num(&b))
        return option_error(r, t, bson_iter_key(opt), "expected a number or [number, message]");
    int rc = is_min ? mk_validate_minlength(v, num(&b), msg, t->msg_path, &r->scratch)
                    : mk_validate_maxlength(v, num(&b), msg, t->msg_path, &r->scratch);
    return builtin_done(r, t, rc);
}

/* Replaces the first `key` of a template (NULL: `fallback`) with `text`. A new string. */
static char *preformat(const char *tmpl, const char *key, const char *text)
{
    const char *at = strstr(tmpl, key);
    if (!at) return strdup(tmpl);
    size_t nk = strlen(key), nt = strlen(text), n = strlen(tmpl);
    char *s = malloc(n - nk + nt + 1);
    if (!s) return NULL;
    size_t pre = (size_t)(at - tmpl);
    memcpy(s, tmpl, pre);
    memcpy(s + pre, text, nt);
    memcpy(s + pre + nt, at + nk, n - pre - nk + 1);
    return s;
}

/* `min` / `max` on Number and Date paths. A Date bound may be written as a date, a number (ms),
 * a date string or Date.now; the message shows it as written, as Mongoose's does. */
static int run_bound(run_t *r, const vt_t *t, const bson_value_t *v, const bson_iter_t *opt,
                     bool is_min)
{
    const char *name = is_min ? "min" : "max";
    bson_value_t b;
    const char *msg;
    mk_validate_option(bson_iter_value((bson_iter_t *)opt), &b, &msg);
    if (is_nullish_type(b.value_type)) return 0;
    bool date_path = mk_schema_path_kind(t->p) == MK_TYPE_DATE;
    if (!date_path) {
        if (!is_num(&b)) return option_error(r, t, name, "expected a number or [number, message]");
        int rc = is_min ? mk_validate_min(v, &b, msg, t->msg_path, &r->scratch)
                        : mk_validate_max(v, &b, msg, t->msg_path, &r->scratch);
        return builtin_done(r, t, rc);
    }
    if (b.value_type == BSON_TYPE_BOOL && !b.value.v_bool) return 0; /* `if (value)` in Mongoose */
    bson_value_t bound = {.value_type = BSON_TYPE_DATE_TIME};
    char *shown = NULL; /* the bound as the message shows it, when not a date */
    if (b.value_type == BSON_TYPE_DATE_TIME) {
        bound = b;
    } else if (b.value_type == BSON_TYPE_UTF8 && strcmp(b.value.v_utf8.str, "Date.now") == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        bound.value.v_datetime = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        shown = strdup("Date.now()");
        if (!shown) return nomem(r);
    } else if (b.value_type == BSON_TYPE_UTF8 || is_num(&b)) {
        mk_error_t cerr;
        bson_value_t cast;
        if (mk_cast_value(MK_CAST_DATE, &b, &cast, &cerr) != MK_OK) {
            bson_value_destroy(&cast);
            return option_error(r, t, name, "the bound is not a valid date");
        }
        bound = cast; /* a date_time owns no memory */
        shown = mk_validate_js_string(&b);
        if (!shown) return nomem(r);
    } else {
        return option_error(r, t, name, "expected a date, a number, a date string or Date.now");
    }
    char *tmpl = NULL;
    if (shown) {
        tmpl = preformat(msg ? msg : (is_min ? MSG_DATE_MIN : MSG_DATE_MAX),
                         is_min ? "{MIN}" : "{MAX}", shown);
        free(shown);
        if (!tmpl) return nomem(r);
        msg = tmpl;
    }
    int rc = is_min ? mk_validate_min(v, &bound, msg, t->msg_path, &r->scratch)
                    : mk_validate_max(v, &bound, msg, t->msg_path, &r->scratch);
    free(tmpl);
    return builtin_done(r, t, rc);
}

/* How many named validators a `validate` option holds (each became a registry entry, ahead of
 * the ones added in C; see mk_schema_resolve_named). */
static size_t count_named(const bson_iter_t *opt)
{
    bson_iter_t it = *opt;
    if (BSON_ITER_HOLDS_UTF8(&it)) return 1;
    bson_iter_t c;
    if (BSON_ITER_HOLDS_DOCUMENT(&it))
        return bson_iter_recurse(&it, &c) && bson_iter_find(&c, "validator") &&
                       BSON_ITER_HOLDS_UTF8(&c)
                   ? 1
                   : 0;
    size_t n = 0;
    if (BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &c))
        while (bson_iter_next(&c)) n += count_named(&c);
    return n;
}

/* Runs the registered validators of the path with index in [from, to). */
static int run_custom(run_t *r, const vt_t *t, const bson_value_t *v, size_t from, size_t to)
{
    const char *fn_path = mk_schema_path_name(t->p);
    const mk_path_fn_t *f;
    size_t it = 0, idx = 0;
    while (idx < to && (f = mk_schema_path_fn_next(t->owner, fn_path, MK_FN_VALIDATOR, &it))) {
        if (idx++ < from) continue;
        mk_fn_ctx_t ctx = {.doc = r->doc, .query = r->query, .path = t->key};
        mk_error_t e;
        e.message[0] = '\0';
        e.kind[0] = '\0';
        e.ndetails = 0;
        int rc = f->fn.validator(&ctx, v, f->ud, &e);
        if (rc > 0) continue;
        if (rc == MK_ENOMEM) return nomem(r);
        /* a thrown error's message replaces the template, as in Mongoose */
        const char *tmpl = rc < 0 && e.message[0] ? e.message : f->message;
        if (!tmpl) tmpl = MSG_USER_DEFAULT;
        const char *kind = f->type ? f->type : "user defined";
        bson_t extra = BSON_INITIALIZER;
        if (!BSON_APPEND_UTF8(&extra, "type", kind)) {
            bson_destroy(&extra);
            return nomem(r);
        }
        char *msg = mk_validate_message_format(tmpl, t->msg_path, v, &extra);
        bson_destroy(&extra);
        if (!msg) return nomem(r);
        int arc = mk_verrors_add(r->errs, t->key, kind, msg, v);
        free(msg);
        return arc < 0 ? arc : 1;
    }
    return 0;
}

/* Validates one value (NULL = undefined) in Mongoose's validator order; the first failing
 * validator is the path's error. 0 passed, 1 failed (recorded), < 0 error. */
static int run_validators(run_t *r, const vt_t *t, const bson_value_t *v)
{
    if (v && v->value_type == BSON_TYPE_UNDEFINED) v = NULL;
    mk_schematype_t type = mk_schema_path_kind(t->p);
    req_t rq;
    int rc = required_of(r, t, &rq);
    if (rc < 0) return rc;
    if (rq.on) {
        bool check = true;
        if (rq.fn) {
            mk_fn_ctx_t ctx = {.doc = r->doc, .query = r->query, .path = t->key};
            int q = rq.fn->fn.required(&ctx, rq.fn->ud);
            if (q == MK_ENOMEM) return nomem(r);
            if (q < 0)
                return mk_error_set(&r->errs->error, MK_CODE_INTERNAL, "InternalError",
                                    "the required function of path `%s` failed", t->msg_path);
            check = q != 0;
        }
        if (check) {
            rc = builtin_done(r, t,
                              mk_validate_required(v, type, rq.message, t->msg_path, &r->scratch));
            if (rc != 0) return rc;
        }
    }
    if (!v) return 0; /* Mongoose calls no other validator for undefined */

    size_t named = 0; /* registry validators taken by the `validate` option */
    bool seen_validate = false;
    bson_iter_t it;
    if (bson_iter_init(&it, mk_schema_path_options(t->p))) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            rc = 0;
            if (type == MK_TYPE_STRING && strcmp(k, "enum") == 0)
                rc = run_enum(r, t, v, &it, false);
            else if (type == MK_TYPE_NUMBER && strcmp(k, "enum") == 0) /* Mongoose 8 */
                rc = run_enum(r, t, v, &it, true);
            else if (type == MK_TYPE_STRING && strcmp(k, "match") == 0)
                rc = run_match(r, t, v, &it);
            else if (type == MK_TYPE_STRING &&
                     (strcmp(k, "minlength") == 0 || strcmp(k, "minLength") == 0))
                rc = run_length(r, t, v, &it, true);
            else if (type == MK_TYPE_STRING &&
                     (strcmp(k, "maxlength") == 0 || strcmp(k, "maxLength") == 0))
                rc = run_length(r, t, v, &it, false);
            else if ((type == MK_TYPE_NUMBER || type == MK_TYPE_DATE) && strcmp(k, "min") == 0)
                rc = run_bound(r, t, v, &it, true);
            else if ((type == MK_TYPE_NUMBER || type == MK_TYPE_DATE) && strcmp(k, "max") == 0)
                rc = run_bound(r, t, v, &it, false);
            else if (strcmp(k, "validate") == 0 && !seen_validate) {
                seen_validate = true;
                named = count_named(&it);
                rc = run_custom(r, t, v, 0, named);
            }
            if (rc != 0) return rc;
        }
    }
    /* an array's `enum` is its element's (SchemaArray.prototype.enum), added after the
     * element's own validators */
    if (t->arr && type == MK_TYPE_STRING && mk_schema_path_option(t->arr, "enum", &it)) {
        rc = run_enum(r, t, v, &it, false);
        if (rc != 0) return rc;
    }
    return run_custom(r, t, v, named, SIZE_MAX);
}

/* Whether validating elements of an array (or map values) can find anything. */
static bool elem_validates(const mk_schema_t *owner, const mk_schema_path_t *container)
{
    const mk_schema_path_t *e = mk_schema_path_element(container);
    if (!e) return false;
    mk_schematype_t k = mk_schema_path_kind(e);
    if (k == MK_TYPE_ARRAY || k == MK_TYPE_SUBDOC) return true;
    bson_iter_t it;
    if (k == MK_TYPE_STRING && mk_schema_path_option(container, "enum", &it)) return true;
    static const char *const names[] = {"required",  "enum",      "match", "minlength", "minLength",
                                        "maxlength", "maxLength", "min",   "max",       "validate"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (mk_schema_path_option(e, names[i], &it)) return true;
    const char *n = mk_schema_path_name(e);
    return mk_schema_path_has_fn(owner, n, MK_FN_VALIDATOR) ||
           mk_schema_path_has_fn(owner, n, MK_FN_REQUIRED);
}

/* ---- whole documents ---- */

static const mk_schema_path_t *find_exact(const mk_schema_t *s, const char *name, size_t len)
{
    size_t n = mk_schema_path_count(s);
    for (size_t i = 0; i < n; i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        const char *pn = mk_schema_path_name(p);
        if (pn[0] == name[0] && strncmp(pn, name, len) == 0 && pn[len] == '\0') return p;
    }
    return NULL;
}

/* The value at a dotted path through nested objects; false when undefined. */
static bool lookup(const bson_t *doc, const char *dotted, bson_value_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) return false;
    for (;;) {
        const char *dot = strchr(dotted, '.');
        size_t n = dot ? (size_t)(dot - dotted) : strlen(dotted);
        if (!bson_iter_find_w_len(&it, dotted, (int)n)) return false;
        if (!dot) {
            *out = *bson_iter_value(&it);
            return out->value_type != BSON_TYPE_UNDEFINED;
        }
        bson_iter_t child;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &child)) return false;
        it = child;
        dotted = dot + 1;
    }
}

/* Array elements and map entries found at one level, validated after its paths (Mongoose adds
 * their paths to the set last). */
typedef struct later {
    const mk_schema_path_t *p;
    char *name; /* relative to the level's schema */
    char *key;  /* full */
    bson_value_t v;
} later_t;

typedef struct level {
    run_t *r;
    const mk_schema_t *s;
    const char *prefix;
    later_t *arrays, *maps;
    size_t narrays, nmaps, caparrays, capmaps;
} level_t;

static int defer(level_t *L, bool map, const mk_schema_path_t *p, const char *name, const char *key,
                 const bson_value_t *v)
{
    later_t **items = map ? &L->maps : &L->arrays;
    size_t *n = map ? &L->nmaps : &L->narrays, *cap = map ? &L->capmaps : &L->caparrays;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        later_t *g = realloc(*items, c * sizeof *g);
        if (!g) return nomem(L->r);
        *items = g;
        *cap = c;
    }
    later_t *e = &(*items)[*n];
    e->p = p;
    e->v = *v;
    e->name = strdup(name);
    e->key = strdup(key);
    if (!e->name || !e->key) {
        free(e->name);
        free(e->key);
        return nomem(L->r);
    }
    (*n)++;
    return MK_OK;
}

static void level_free(level_t *L)
{
    for (size_t i = 0; i < L->narrays; i++) {
        free(L->arrays[i].name);
        free(L->arrays[i].key);
    }
    for (size_t i = 0; i < L->nmaps; i++) {
        free(L->maps[i].name);
        free(L->maps[i].key);
    }
    free(L->arrays);
    free(L->maps);
}

/* A present value of path p (name relative to the level's schema). */
static int validate_present(level_t *L, const mk_schema_path_t *p, const char *name,
                            const bson_value_t *v)
{
    run_t *r = L->r;
    kbuf_t kb = {0};
    const char *key = kb_set(&kb, L->prefix, name, NULL);
    if (!key) return nomem(r);
    vt_t t = {.owner = L->s, .p = p, .msg_path = name, .key = key};
    int rc = 0;
    mk_schematype_t type = mk_schema_path_kind(p);
    bool req = has_required(L->s, p);
    bool below = want_below(r, key, req);
    if (want(r, key, req)) rc = run_validators(r, &t, v);
    if (rc < 0) goto done;
    switch (type) {
    case MK_TYPE_SUBDOC:
        /* a failing validator of the sub-document path skips its contents */
        if (rc == 0 && v->value_type == BSON_TYPE_DOCUMENT && below)
            rc = enqueue(r, mk_schema_path_schema(p), v, key);
        break;
    case MK_TYPE_DOCARRAY: {
        if (rc != 0 || v->value_type != BSON_TYPE_ARRAY || !below) break;
        bson_iter_t it;
        if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) break;
        while (rc == 0 && bson_iter_next(&it)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) continue; /* null elements are skipped */
            kbuf_t eb = {0};
            const char *ekey = kb_set(&eb, key, ".", bson_iter_key(&it));
            if (!ekey) {
                rc = nomem(r);
                break;
            }
            if (want_below(r, ekey, true))
                rc = enqueue(r, mk_schema_path_schema(p), bson_iter_value(&it), ekey);
            kb_free(&eb);
        }
        break;
    }
    case MK_TYPE_ARRAY:
        rc = 0; /* elements are validated whatever the array's own validators said */
        if (v->value_type == BSON_TYPE_ARRAY && elem_validates(L->s, p) && below)
            rc = defer(L, false, p, name, key, v);
        break;
    case MK_TYPE_MAP:
        rc = 0;
        if (v->value_type == BSON_TYPE_DOCUMENT && elem_validates(L->s, p) && below)
            rc = defer(L, true, p, name, key, v);
        break;
    default:
        break;
    }
    if (rc > 0) rc = 0;
done:
    kb_free(&kb);
    return rc;
}

/* Present paths in document order, through nested objects. */
static int walk(level_t *L, const bson_t *doc, const char *nested, int depth)
{
    if (depth > MAX_DEPTH)
        return mk_error_set(&L->r->errs->error, MK_CODE_BAD_VALUE, "BadValue",
                            "document nests too deeply to validate");
    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) return MK_OK;
    while (bson_iter_next(&it)) {
        kbuf_t nb = {0};
        uint32_t klen = bson_iter_key_len(&it);
        const char *name = kb_set(&nb, nested, bson_iter_key(&it), NULL);
        if (!name) return nomem(L->r);
        const mk_schema_path_t *p = find_exact(L->s, name, strlen(nested) + klen);
        int rc = MK_OK;
        if (p && !BSON_ITER_HOLDS_UNDEFINED(&it)) {
            if (mk_schema_path_kind(p) == MK_TYPE_NESTED) {
                bson_t child;
                uint32_t n;
                const uint8_t *d;
                if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
                    bson_iter_document(&it, &n, &d);
                    kbuf_t cb = {0};
                    const char *np = kb_set(&cb, name, ".", NULL);
                    if (!np)
                        rc = nomem(L->r);
                    else if (bson_init_static(&child, d, n))
                        rc = walk(L, &child, np, depth + 1);
                    kb_free(&cb);
                }
            } else {
                bson_value_t v = *bson_iter_value(&it);
                rc = validate_present(L, p, name, &v);
            }
        }
        kb_free(&nb);
        if (rc < 0) return rc;
    }
    return MK_OK;
}

/* Elements of an array path ("tags.1"); arrays of arrays go one level deeper ("m.0.1"), as
 * Mongoose's _pushNestedArrayPaths. */
static int validate_elements(level_t *L, const mk_schema_path_t *arr, const char *name,
                             const char *key, const bson_value_t *v, int depth)
{
    run_t *r = L->r;
    const mk_schema_path_t *e = mk_schema_path_element(arr);
    if (!e || depth > MAX_DEPTH) return MK_OK;
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) return MK_OK;
    int rc = MK_OK;
    while (rc >= 0 && bson_iter_next(&it)) {
        kbuf_t nb = {0}, kb = {0};
        const char *ename = kb_set(&nb, name, ".", bson_iter_key(&it));
        const char *ekey = ename ? kb_set(&kb, key, ".", bson_iter_key(&it)) : NULL;
        if (!ekey) {
            kb_free(&nb);
            return nomem(r);
        }
        bson_value_t ev = *bson_iter_value(&it);
        if (mk_schema_path_kind(e) == MK_TYPE_ARRAY && ev.value_type == BSON_TYPE_ARRAY) {
            rc = validate_elements(L, e, ename, ekey, &ev, depth + 1);
        } else if (want(r, ekey, true)) {
            vt_t t = {.owner = L->s, .p = e, .arr = arr, .msg_path = ename, .key = ekey};
            rc = run_validators(r, &t, &ev);
        }
        kb_free(&nb);
        kb_free(&kb);
    }
    return rc < 0 ? rc : MK_OK;
}

/* Values of a map path ("prices.eur"): the `of` type's validators; sub-documents are queued. */
static int validate_map(level_t *L, const later_t *m)
{
    run_t *r = L->r;
    const mk_schema_path_t *e = mk_schema_path_element(m->p);
    bson_iter_t it;
    if (!e || !bson_iter_init_from_data(&it, m->v.value.v_doc.data, m->v.value.v_doc.data_len))
        return MK_OK;
    int rc = MK_OK;
    while (rc >= 0 && bson_iter_next(&it)) {
        kbuf_t nb = {0}, kb = {0};
        const char *ename = kb_set(&nb, m->name, ".", bson_iter_key(&it));
        const char *ekey = ename ? kb_set(&kb, m->key, ".", bson_iter_key(&it)) : NULL;
        if (!ekey) {
            kb_free(&nb);
            return nomem(r);
        }
        bson_value_t ev = *bson_iter_value(&it);
        int failed = 0;
        if (want(r, ekey, true)) {
            vt_t t = {.owner = L->s, .p = e, .msg_path = ename, .key = ekey};
            failed = rc = run_validators(r, &t, &ev);
        }
        if (rc >= 0 && !failed && mk_schema_path_kind(e) == MK_TYPE_SUBDOC &&
            ev.value_type == BSON_TYPE_DOCUMENT && want_below(r, ekey, true))
            rc = enqueue(r, mk_schema_path_schema(e), &ev, ekey);
        kb_free(&nb);
        kb_free(&kb);
    }
    return rc < 0 ? rc : MK_OK;
}

/* One level: a document or a sub-document validated with its schema. */
static int validate_level(run_t *r, const mk_schema_t *s, const bson_t *doc, const char *prefix)
{
    level_t L = {.r = r, .s = s, .prefix = prefix};
    int rc = MK_OK;
    /* required paths that are missing, in Schema#requiredPaths order (reversed) */
    for (size_t i = mk_schema_path_count(s); rc >= 0 && i-- > 0;) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        if (mk_schema_path_kind(p) == MK_TYPE_NESTED || !has_required(s, p)) continue;
        const char *name = mk_schema_path_name(p);
        bson_value_t v;
        if (lookup(doc, name, &v)) continue;
        kbuf_t kb = {0};
        const char *key = kb_set(&kb, prefix, name, NULL);
        if (!key) {
            rc = nomem(r);
            break;
        }
        if (want(r, key, true)) {
            vt_t t = {.owner = s, .p = p, .msg_path = name, .key = key};
            rc = run_validators(r, &t, NULL);
        }
        kb_free(&kb);
    }
    if (rc >= 0) rc = walk(&L, doc, "", 0);
    for (size_t i = 0; rc >= 0 && i < L.narrays; i++)
        rc = validate_elements(&L, L.arrays[i].p, L.arrays[i].name, L.arrays[i].key, &L.arrays[i].v,
                               0);
    for (size_t i = 0; rc >= 0 && i < L.nmaps; i++) rc = validate_map(&L, &L.maps[i]);
    level_free(&L);
    return rc < 0 ? rc : MK_OK;
}

/* Validates a document and then its queued sub-documents, breadth first. */
static int run_document(run_t *r, const mk_schema_t *s, const bson_t *doc, const char *prefix)
{
    int rc = validate_level(r, s, doc, prefix);
    while (rc >= 0 && r->head) {
        job_t *j = r->head;
        r->head = j->next;
        if (!r->head) r->tail = NULL;
        bson_t sub;
        if (bson_init_static(&sub, j->data, j->len))
            rc = validate_level(r, j->schema, &sub, j->prefix);
        free(j);
    }
    return rc < 0 ? rc : MK_OK;
}

int mk_validate_document(const mk_schema_t *s, mk_doc_t *doc, const bson_t *current,
                         const mk_dv_opts_t *o, mk_verrors_t *errs)
{
    if (!s || !current || !errs) {
        if (errs)
            return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                                "mk_validate_document needs a schema and a document");
        return MK_ERR;
    }
    run_t r;
    bool select = o && (o->only_paths || o->validate_modified_only || o->modified_and_required);
    run_init(&r, select ? o : NULL, doc, NULL, errs);
    int rc = run_document(&r, s, current, "");
    run_free(&r);
    return rc;
}

/* ---- update validators ---- */

/* Mongoose's _getSchema for an update path: the SchemaType a value at that path is validated
 * with. */
typedef enum { T_PATH, T_ELEM, T_DOCELEM } tkind_t;
typedef struct target {
    tkind_t kind;
    const mk_schema_t *owner;
    const mk_schema_path_t *p;   /* T_PATH: the path; T_ELEM: the element; T_DOCELEM: the array */
    const mk_schema_path_t *arr; /* T_ELEM: the array or map */
    const char *msg_path;        /* the SchemaType's own path, as its messages show */
} target_t;

static bool digits(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static bool resolve(const mk_schema_t *s, const char *path, target_t *t, int depth)
{
    if (depth > MAX_DEPTH) return false;
    const mk_schema_path_t *p = find_exact(s, path, strlen(path));
    if (p) {
        if (mk_schema_path_kind(p) == MK_TYPE_NESTED) return false;
        *t = (target_t){T_PATH, s, p, NULL, mk_schema_path_name(p)};
        return true;
    }
    /* the longest prefix that is a SchemaType, then the rest inside it */
    for (const char *dot = strrchr(path, '.'); dot;) {
        size_t len = (size_t)(dot - path);
        const mk_schema_path_t *q = find_exact(s, path, len);
        if (q) {
            const char *rest = dot + 1;
            const char *rdot = strchr(rest, '.');
            size_t seg = rdot ? (size_t)(rdot - rest) : strlen(rest);
            switch (mk_schema_path_kind(q)) {
            case MK_TYPE_SUBDOC:
                return resolve(mk_schema_path_schema(q), rest, t, depth + 1);
            case MK_TYPE_DOCARRAY:
                if (digits(rest, seg)) {
                    if (!rdot) {
                        *t = (target_t){T_DOCELEM, s, q, NULL, mk_schema_path_name(q)};
                        return true;
                    }
                    return resolve(mk_schema_path_schema(q), rdot + 1, t, depth + 1);
                }
                return resolve(mk_schema_path_schema(q), rest, t, depth + 1);
            case MK_TYPE_ARRAY: {
                /* arrays of arrays: each index goes one element deeper */
                const mk_schema_path_t *a = q;
                for (;;) {
                    const mk_schema_path_t *e = mk_schema_path_element(a);
                    if (!e || !digits(rest, seg) || mk_schema_path_kind(e) == MK_TYPE_MIXED)
                        return false;
                    if (!rdot) {
                        /* the element SchemaType's path is the array's (SchemaArray sets
                         * caster.path = key) */
                        *t = (target_t){T_ELEM, s, e, a, mk_schema_path_name(q)};
                        return true;
                    }
                    if (mk_schema_path_kind(e) != MK_TYPE_ARRAY) return false;
                    a = e;
                    rest = rdot + 1;
                    rdot = strchr(rest, '.');
                    seg = rdot ? (size_t)(rdot - rest) : strlen(rest);
                }
            }
            case MK_TYPE_MAP: {
                const mk_schema_path_t *e = mk_schema_path_element(q);
                if (!e || mk_schema_path_kind(e) == MK_TYPE_MIXED) return false;
                if (!rdot) {
                    *t = (target_t){T_ELEM, s, e, q, mk_schema_path_name(e)};
                    return true;
                }
                if (mk_schema_path_kind(e) != MK_TYPE_SUBDOC) return false;
                return resolve(mk_schema_path_schema(e), rdot + 1, t, depth + 1);
            }
            default: /* under a Mixed or a leaf: not validated */
                return false;
            }
        }
        /* previous dot */
        const char *prev = NULL;
        for (const char *c = path; c < dot; c++)
            if (*c == '.') prev = c;
        dot = prev;
    }
    return false;
}

/* One flattened update path. */
typedef struct uent {
    char *path;
    bson_value_t v; /* borrowed from the update; BSON_TYPE_UNDEFINED for undefined */
    bool pull;
} uent_t;

/* The flattened update in key order, with a hash index so that large updates stay linear
 * (a JS object's key lookup). */
typedef struct ulist {
    uent_t *items;
    size_t n, cap;
    size_t *slots; /* index + 1 into items, 0 = empty; nslots is a power of two */
    size_t nslots;
} ulist_t;

static void ul_free(ulist_t *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->items[i].path);
    free(l->items);
    free(l->slots);
    memset(l, 0, sizeof *l);
}

static size_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

static ssize_t ul_find(const ulist_t *l, const char *path)
{
    if (!l->nslots) return -1;
    for (size_t i = hash_str(path) & (l->nslots - 1);; i = (i + 1) & (l->nslots - 1)) {
        size_t at = l->slots[i];
        if (!at) return -1;
        if (strcmp(l->items[at - 1].path, path) == 0) return (ssize_t)(at - 1);
    }
}

/* Keeps the table at most half full. */
static bool ul_rehash(ulist_t *l)
{
    if (l->nslots && (l->n + 1) * 2 <= l->nslots) return true;
    size_t ns = l->nslots ? l->nslots * 2 : 16;
    size_t *slots = calloc(ns, sizeof *slots);
    if (!slots) return false;
    for (size_t k = 0; k < l->n; k++) {
        size_t i = hash_str(l->items[k].path) & (ns - 1);
        while (slots[i]) i = (i + 1) & (ns - 1);
        slots[i] = k + 1;
    }
    free(l->slots);
    l->slots = slots;
    l->nslots = ns;
    return true;
}

/* obj[path] = v as in JS: a known key keeps its place. Takes `path`. */
static int ul_put(ulist_t *l, char *path, const bson_value_t *v, bool pull, bool set_pull)
{
    bson_value_t undef = {.value_type = BSON_TYPE_UNDEFINED};
    ssize_t i = ul_find(l, path);
    if (i >= 0) {
        free(path);
        l->items[i].v = v ? *v : undef;
        if (set_pull) l->items[i].pull = pull;
        return MK_OK;
    }
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 8;
        uent_t *g = realloc(l->items, c * sizeof *g);
        if (!g) {
            free(path);
            return MK_ENOMEM;
        }
        l->items = g;
        l->cap = c;
    }
    if (!ul_rehash(l)) {
        free(path);
        return MK_ENOMEM;
    }
    size_t h = hash_str(path) & (l->nslots - 1);
    while (l->slots[h]) h = (h + 1) & (l->nslots - 1);
    l->items[l->n] = (uent_t){path, v ? *v : undef, pull};
    l->slots[h] = ++l->n;
    return MK_OK;
}

/* Mongoose's flatten(update, prefix, null, schema): every key with its value, objects and
 * non-empty arrays also flattened into their children (not under Mixed paths); setting a
 * nested object makes its other schema paths undefined. */
static int flatten(const mk_schema_t *s, const char *prefix, const bson_value_t *obj, ulist_t *out,
                   int depth)
{
    if (depth > MAX_DEPTH) return MK_ERR;
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, obj->value.v_doc.data, obj->value.v_doc.data_len))
        return MK_OK;
    while (bson_iter_next(&it)) {
        char *path = prefix ? concat3(prefix, ".", bson_iter_key(&it)) : strdup(bson_iter_key(&it));
        char *own = path ? strdup(path) : NULL; /* ul_put takes `path` */
        if (!own) {
            free(path);
            return MK_ENOMEM;
        }
        bson_value_t v = *bson_iter_value(&it);
        const mk_schema_path_t *ks = mk_schema_path(s, own);
        bool mixed = ks && mk_schema_path_kind(ks) == MK_TYPE_MIXED;
        const mk_schema_path_t *nested = find_exact(s, own, strlen(own));
        bool is_nested = nested && mk_schema_path_kind(nested) == MK_TYPE_NESTED;
        bool flat = v.value_type == BSON_TYPE_DOCUMENT ||
                    (v.value_type == BSON_TYPE_ARRAY && v.value.v_doc.data_len > 5);
        int rc = ul_put(out, path, &v, false, false);
        if (rc == MK_OK && !mixed && flat) rc = flatten(s, own, &v, out, depth + 1);
        for (size_t i = 0; rc == MK_OK && is_nested && i < mk_schema_path_count(s); i++) {
            const mk_schema_path_t *q = mk_schema_path_at(s, i);
            const char *qn = mk_schema_path_name(q);
            if (mk_schema_path_kind(q) == MK_TYPE_NESTED || !under(qn, own) ||
                ul_find(out, qn) >= 0)
                continue;
            char *copy = strdup(qn);
            rc = copy ? ul_put(out, copy, NULL, false, false) : MK_ENOMEM;
        }
        free(own);
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

/* cleanPositionalOperators: `$`, `$[]` and `$[id]` segments become index 0. */
static char *clean_positional(const char *path)
{
    char *out = malloc(strlen(path) + 1);
    if (!out) return NULL;
    char *w = out;
    const char *seg = path;
    bool first = true;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        bool positional = !first && ((n == 1 && seg[0] == '$') ||
                                     (n >= 3 && seg[0] == '$' && seg[1] == '[' &&
                                      seg[n - 1] == ']' && !memchr(seg + 2, ']', n - 3)));
        if (!first) *w++ = '.';
        if (positional) {
            *w++ = '0';
        } else {
            memcpy(w, seg, n);
            w += n;
        }
        first = false;
        if (!dot) break;
        seg = dot + 1;
    }
    *w = '\0';
    return out;
}

/* Values pushed to one array path ($push / $addToSet, $each expanded), in update order. */
typedef struct atomic {
    char *path;
    bson_value_t *vals;
    size_t n, cap;
} atomic_t;

typedef struct atomics {
    atomic_t *items;
    size_t n, cap;
} atomics_t;

static void atomics_free(atomics_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->items[i].path);
        free(a->items[i].vals);
    }
    free(a->items);
}

static int atomic_push(atomics_t *a, const char *path, const bson_value_t *v)
{
    atomic_t *e = NULL;
    for (size_t i = 0; i < a->n && !e; i++)
        if (strcmp(a->items[i].path, path) == 0) e = &a->items[i];
    if (!e) {
        if (a->n == a->cap) {
            size_t c = a->cap ? a->cap * 2 : 4;
            atomic_t *g = realloc(a->items, c * sizeof *g);
            if (!g) return MK_ENOMEM;
            a->items = g;
            a->cap = c;
        }
        e = &a->items[a->n];
        memset(e, 0, sizeof *e);
        if (!(e->path = strdup(path))) return MK_ENOMEM;
        a->n++;
    }
    if (e->n == e->cap) {
        size_t c = e->cap ? e->cap * 2 : 4;
        bson_value_t *g = realloc(e->vals, c * sizeof *g);
        if (!g) return MK_ENOMEM;
        e->vals = g;
        e->cap = c;
    }
    e->vals[e->n++] = *v;
    return MK_OK;
}

static int collect_atomics(const bson_value_t *op, atomics_t *a)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, op->value.v_doc.data, op->value.v_doc.data_len))
        return MK_OK;
    while (bson_iter_next(&it)) {
        bson_iter_t each;
        int rc;
        if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &each) &&
            bson_iter_find(&each, "$each")) {
            bson_iter_t e;
            if (BSON_ITER_HOLDS_ARRAY(&each) && bson_iter_recurse(&each, &e)) {
                while (bson_iter_next(&e))
                    if ((rc = atomic_push(a, bson_iter_key(&it), bson_iter_value(&e))) != MK_OK)
                        return rc;
                continue;
            }
            rc = atomic_push(a, bson_iter_key(&it), bson_iter_value(&each));
        } else {
            rc = atomic_push(a, bson_iter_key(&it), bson_iter_value(&it));
        }
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

/* Validates a sub-document on its own (subdoc.validate()) into `out`; keys (and the paths
 * callbacks see) start with `prefix` ("author."). */
static int validate_subdoc(run_t *parent, const mk_schema_t *child, const bson_value_t *v,
                           const char *prefix, mk_verrors_t *out)
{
    bson_t d;
    if (!bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len)) return MK_OK;
    run_t sub;
    run_init(&sub, NULL, parent->doc, parent->query, out);
    int rc = run_document(&sub, child, &d, prefix);
    run_free(&sub);
    if (rc < 0) parent->errs->error = out->error;
    return rc;
}

/* Records a sub-document's errors (keys starting with `key` and a dot) as one nested
 * ValidationError at `key`, its message naming the paths relative to the sub-document
 * ("Validation failed: name: Path `name` is required."). */
static int add_nested(mk_verrors_t *dst, const char *key, const mk_verrors_t *sub,
                      const bson_value_t *v)
{
    size_t skip = strlen(key) + 1;
    mk_verrors_t rel;
    mk_verrors_init(&rel);
    int rc = MK_OK;
    for (size_t i = 0; rc == MK_OK && i < sub->count; i++) {
        const mk_verror_t *x = &sub->items[i];
        bool missing = x->value.value_type == BSON_TYPE_UNDEFINED;
        rc = mk_verrors_add(&rel, strlen(x->path) >= skip ? x->path + skip : x->path, x->kind,
                            x->message, missing ? NULL : &x->value);
    }
    mk_error_t e;
    mk_error_clear(&e);
    if (rc == MK_OK && mk_verrors_to_error(&rel, NULL, &e) == MK_ENOMEM) rc = MK_ENOMEM;
    mk_verrors_destroy(&rel);
    if (rc != MK_OK) return rc;
    return mk_verrors_add(dst, key, "ValidationError", e.message, v);
}

typedef struct uctx {
    run_t *r;          /* errors of simple paths go to r->errs */
    mk_verrors_t late; /* errors found inside sub-documents, added after the others */
    const mk_schema_t *s;
} uctx_t;

static int uv_target(uctx_t *u, const target_t *t, const char *key, const bson_value_t *v)
{
    vt_t vt = {.owner = t->owner, .p = t->p, .arr = t->arr, .msg_path = t->msg_path, .key = key};
    return run_validators(u->r, &vt, v);
}

static int uv_path(uctx_t *u, const uent_t *e, char ***done, size_t *ndone, size_t *capdone)
{
    run_t *r = u->r;
    target_t t;
    if (!resolve(u->s, e->path, &t, 0)) return MK_OK;
    const bson_value_t *v = e->v.value_type == BSON_TYPE_UNDEFINED ? NULL : &e->v;
    bson_iter_t in;
    if (v && v->value_type == BSON_TYPE_DOCUMENT) {
        bson_t d;
        if (bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) &&
            bson_iter_init_find(&in, &d, "$in") && BSON_ITER_HOLDS_ARRAY(&in)) {
            bson_iter_t el;
            if (!bson_iter_recurse(&in, &el)) return MK_OK;
            while (bson_iter_next(&el)) {
                kbuf_t kb = {0};
                const char *key = kb_set(&kb, e->path, ".$in.", bson_iter_key(&el));
                if (!key) return nomem(r);
                bson_value_t ev = *bson_iter_value(&el);
                int rc = uv_target(u, &t, key, &ev);
                kb_free(&kb);
                if (rc < 0) return rc;
            }
            return MK_OK;
        }
    }
    mk_schematype_t k = mk_schema_path_kind(t.p);
    if (e->pull && t.kind == T_PATH && (k == MK_TYPE_ARRAY || k == MK_TYPE_DOCARRAY)) return MK_OK;
    bool mark = false;
    if (t.kind == T_DOCELEM && v && v->value_type == BSON_TYPE_DOCUMENT) {
        mark = true;
    } else {
        for (size_t i = 0; i < *ndone; i++)
            if (under(e->path, (*done)[i])) return MK_OK;
        mark = t.kind == T_PATH && k == MK_TYPE_SUBDOC;
    }
    if (mark) { /* the paths under it are validated with it */
        if (*ndone == *capdone) {
            size_t c = *capdone ? *capdone * 2 : 4;
            char **g = realloc(*done, c * sizeof *g);
            if (!g) return nomem(r);
            *done = g;
            *capdone = c;
        }
        if (!((*done)[*ndone] = strdup(e->path))) return nomem(r);
        (*ndone)++;
    }
    if (t.kind == T_DOCELEM) {
        if (!mark) return MK_OK; /* a null element: nothing to validate */
        mk_verrors_t sub;
        mk_verrors_init(&sub);
        kbuf_t pb = {0};
        const char *prefix = kb_set(&pb, e->path, ".", "");
        int rc =
            prefix ? validate_subdoc(r, mk_schema_path_schema(t.p), v, prefix, &sub) : nomem(r);
        kb_free(&pb);
        for (size_t i = 0; rc >= 0 && i < sub.count; i++) { /* flattened under the element */
            const mk_verror_t *x = &sub.items[i];
            bool missing = x->value.value_type == BSON_TYPE_UNDEFINED;
            if (mk_verrors_add(&u->late, x->path, x->kind, x->message, missing ? NULL : &x->value) <
                0)
                rc = nomem(r);
        }
        mk_verrors_destroy(&sub);
        return rc < 0 ? rc : MK_OK;
    }
    int rc = uv_target(u, &t, e->path, v);
    if (rc != 0 || t.kind != T_PATH || k != MK_TYPE_SUBDOC || !v ||
        v->value_type != BSON_TYPE_DOCUMENT)
        return rc < 0 ? rc : MK_OK;
    mk_verrors_t sub;
    mk_verrors_init(&sub);
    kbuf_t pb = {0};
    const char *prefix = kb_set(&pb, e->path, ".", "");
    rc = prefix ? validate_subdoc(r, mk_schema_path_schema(t.p), v, prefix, &sub) : nomem(r);
    kb_free(&pb);
    if (rc >= 0 && sub.count && add_nested(&u->late, e->path, &sub, v) < 0) rc = nomem(r);
    mk_verrors_destroy(&sub);
    return rc < 0 ? rc : MK_OK;
}

static int uv_atomic(uctx_t *u, const atomic_t *a)
{
    run_t *r = u->r;
    target_t t;
    if (resolve(u->s, a->path, &t, 0) && t.kind == T_PATH &&
        mk_schema_path_kind(t.p) == MK_TYPE_DOCARRAY) {
        /* the array's own validators see the pushed values, then each pushed sub-document is
         * validated; the last failing one is the error */
        bson_t arr = BSON_INITIALIZER;
        for (size_t i = 0; i < a->n; i++) {
            char kb[16];
            const char *k;
            bson_uint32_to_string((uint32_t)i, &k, kb, sizeof kb);
            if (!bson_append_value(&arr, k, -1, &a->vals[i])) {
                bson_destroy(&arr);
                return nomem(r);
            }
        }
        bson_value_t av = {.value_type = BSON_TYPE_ARRAY};
        av.value.v_doc.data = (uint8_t *)bson_get_data(&arr);
        av.value.v_doc.data_len = arr.len;
        int rc = uv_target(u, &t, a->path, &av);
        bson_destroy(&arr);
        if (rc != 0) return rc < 0 ? rc : MK_OK;
        mk_verrors_t last;
        mk_verrors_init(&last);
        const bson_value_t *lastv = NULL;
        kbuf_t pb = {0}; /* callbacks see "comments.text": the index is not known */
        const char *prefix = kb_set(&pb, a->path, ".", "");
        for (size_t i = 0; rc >= 0 && i < a->n; i++) {
            if (a->vals[i].value_type != BSON_TYPE_DOCUMENT) continue;
            mk_verrors_t sub;
            mk_verrors_init(&sub);
            rc = prefix ? validate_subdoc(r, mk_schema_path_schema(t.p), &a->vals[i], prefix, &sub)
                        : nomem(r);
            if (rc >= 0 && sub.count) {
                mk_verrors_destroy(&last);
                last = sub;
                lastv = &a->vals[i];
            } else {
                mk_verrors_destroy(&sub);
            }
        }
        if (rc >= 0 && lastv && add_nested(&u->late, a->path, &last, lastv) < 0) rc = nomem(r);
        kb_free(&pb);
        mk_verrors_destroy(&last);
        return rc < 0 ? rc : MK_OK;
    }
    kbuf_t kb = {0};
    const char *elem = kb_set(&kb, a->path, ".0", NULL);
    if (!elem) return nomem(r);
    bool found = resolve(u->s, elem, &t, 0);
    kb_free(&kb);
    if (!found) return MK_OK;
    for (size_t i = 0; i < a->n; i++) {
        int rc = uv_target(u, &t, a->path, &a->vals[i]);
        if (rc < 0) return rc;
    }
    return MK_OK;
}

static bool op_is(const char *k, const char *name)
{
    return strcmp(k, name) == 0;
}

int mk_validate_update(const mk_schema_t *s, const bson_t *update, bool upsert,
                       const mk_fn_ctx_t *ctx, mk_verrors_t *errs)
{
    (void)upsert; /* Mongoose 8 validates $setOnInsert either way */
    if (!s || !update || !errs) {
        if (errs)
            return mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                                "mk_validate_update needs a schema and an update");
        return MK_ERR;
    }
    run_t r;
    run_init(&r, NULL, NULL, ctx ? ctx->query : NULL, errs);
    uctx_t u = {.r = &r, .s = s};
    mk_verrors_init(&u.late);
    ulist_t vals = {0};
    atomics_t atom = {0};
    char **done = NULL;
    size_t ndone = 0, capdone = 0;
    int rc = MK_OK;

    bool has_op = false;
    bson_iter_t it;
    if (!bson_iter_init(&it, update)) {
        rc = mk_error_setc(&errs->error, MK_CODE_INVALID_BSON, "malformed update");
        goto out;
    }
    while (rc == MK_OK && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] != '$') continue;
        has_op = true;
        const bson_value_t *opv = bson_iter_value(&it);
        if (opv->value_type != BSON_TYPE_DOCUMENT) {
            rc = mk_error_set(&errs->error, MK_CODE_FAILED_TO_PARSE, "FailedToParse",
                              "Modifiers operate on fields but we found type %s instead. For "
                              "example: {$mod: {<field>: ...}} not {%s: %s}",
                              mk_cast_js_type_name(opv), k, mk_cast_js_type_name(opv));
            break;
        }
        bson_value_t op = *opv;
        if (op_is(k, "$push") || op_is(k, "$addToSet")) {
            if (collect_atomics(&op, &atom) != MK_OK) rc = nomem(&r);
            continue;
        }
        bool set = op_is(k, "$set") || op_is(k, "$setOnInsert");
        bool pull = op_is(k, "$pull") || op_is(k, "$pullAll");
        bool unset = op_is(k, "$unset");
        if (!set && !pull && !unset) continue; /* $inc, $mul, ...: not validated */
        ulist_t flat = {0};
        rc = flatten(s, NULL, &op, &flat, 0);
        if (rc == MK_ERR)
            rc = mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                              "update nests too deeply to validate");
        else if (rc != MK_OK)
            rc = nomem(&r);
        for (size_t i = 0; rc == MK_OK && i < flat.n; i++) {
            char *clean = clean_positional(flat.items[i].path);
            if (!clean) {
                rc = nomem(&r);
                break;
            }
            if (strchr(clean, '$')) { /* e.g. under $in: handled with its parent */
                free(clean);
                continue;
            }
            if (unset)
                rc = ul_put(&vals, clean, NULL, false, false);
            else
                rc = ul_put(&vals, clean, &flat.items[i].v, pull, true);
            if (rc != MK_OK) rc = nomem(&r);
        }
        ul_free(&flat);
    }
    if (rc == MK_OK && !has_op) { /* a replacement-style update is validated as a $set */
        bson_value_t whole = {.value_type = BSON_TYPE_DOCUMENT};
        whole.value.v_doc.data = (uint8_t *)bson_get_data(update);
        whole.value.v_doc.data_len = update->len;
        rc = flatten(s, NULL, &whole, &vals, 0);
        if (rc == MK_ERR)
            rc = mk_error_set(&errs->error, MK_CODE_BAD_VALUE, "BadValue",
                              "update nests too deeply to validate");
        else if (rc != MK_OK)
            rc = nomem(&r);
    }
    for (size_t i = 0; rc == MK_OK && i < vals.n; i++)
        rc = uv_path(&u, &vals.items[i], &done, &ndone, &capdone);
    for (size_t i = 0; rc == MK_OK && i < atom.n; i++) rc = uv_atomic(&u, &atom.items[i]);
    for (size_t i = 0; rc == MK_OK && i < u.late.count; i++) {
        const mk_verror_t *x = &u.late.items[i];
        bool missing = x->value.value_type == BSON_TYPE_UNDEFINED;
        if (mk_verrors_add(errs, x->path, x->kind, x->message, missing ? NULL : &x->value) < 0)
            rc = MK_ENOMEM;
    }
out:
    for (size_t i = 0; i < ndone; i++) free(done[i]);
    free(done);
    ul_free(&vals);
    atomics_free(&atom);
    mk_verrors_destroy(&u.late);
    run_free(&r);
    return rc < 0 ? rc : MK_OK;
}
