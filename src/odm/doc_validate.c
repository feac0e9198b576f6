/* Mongoose 8's document validation pipeline and its update validators.
 *
 * What a schema's options say is read once into a validation plan (per schema, in the schema's
 * cache slot MK_SCHEMA_CACHE_VALIDATE): per path its `required` rule, its validators in order
 * with their bounds, messages, enum lists and compiled regexes, the registry functions, and an
 * index from a document's field names to schema paths. Validating a document then walks its
 * BSON once against the plan; a built-in validator that passes costs no allocation, and only a
 * failing one builds its message (by calling the validator of odm/validate.h, which stays the
 * one place that decides and words a failure). */
#include "odm/doc_validate.h"

#include "odm/cast.h"
#include "odm/schema_fns.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <limits.h>
#include <pthread.h>
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
static const char REQUIRED_FORMS[] = "expected true, false, a message, [true, message] or a "
                                     "registered function name";

/* Updates and documents from outside may nest without bound; the walks recurse per level. */
#define MAX_DEPTH 200

/* ---- keys: full dotted paths, on the stack when short ---- */

typedef struct kbuf {
    char *p;
    char buf[192];
} kbuf_t;

/* Declares an empty kbuf without zeroing its buffer (`= {0}` would, on every call). */
#define KBUF(name)                                                                                 \
    kbuf_t name;                                                                                   \
    name.p = NULL

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

/* Grows an array that starts in a caller's inline buffer `local` to hold one more item. */
static bool grow_items(void **items, size_t *cap, size_t n, size_t size, void *local)
{
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : 8;
    void *g = *items == local ? malloc(c * size) : realloc(*items, c * size);
    if (!g) return false;
    if (*items == local && n) memcpy(g, local, n * size);
    *items = g;
    *cap = c;
    return true;
}

/* ---- the validation plan ---- */

/* One validator of a path after `required`, in the order Mongoose runs them. */
typedef enum ck_kind {
    CK_ENUM,   /* value in a list (already cast to strings on String paths) */
    CK_MATCH,  /* a regular expression */
    CK_LENGTH, /* minlength / maxlength */
    CK_BOUND,  /* min / max */
    CK_CUSTOM, /* registry validators [from, to) */
    CK_BAD,    /* an option this module cannot use: its error, raised when the check is reached */
} ck_kind_t;

/* An enum member as the quick comparison reads it (strings and numbers; others never match
 * there and leave the verdict to mk_validate_enum). */
typedef struct member {
    bool is_str, is_num;
    uint32_t len;
    const char *str;
    double d;
} member_t;

typedef struct check {
    ck_kind_t kind;
    bool is_min;
    const char *msg; /* the option's message template, or NULL */
    union {
        struct {
            bson_t *list; /* what mk_validate_enum is given */
            member_t *m;
            size_t n;
        } en;
        struct {
            const char *pattern, *flags;
            pcre2_code *re; /* NULL: mk_validate_match decides every value */
        } match;
        double length;
        bson_value_t bound; /* borrowed from the path's options */
        struct {
            size_t from, to;
        } custom;
        struct {
            const char *option, *what;
        } bad;
    } u;
} check_t;

/* A SchemaType as validation reads it: p, or an array's element p with `arr` its array. */
typedef struct pplan {
    const mk_schema_path_t *p;
    const mk_schema_path_t *arr;
    const char *name; /* the path's name, relative to its schema */
    mk_schematype_t type;
    bool has_req; /* required (decides the missing-path pass and path selection) */
    bool req_on;  /* the required validator runs */
    bool req_bad; /* `required` holds a value this module cannot use */
    bool inert;   /* nothing validates a value of the path */
    bool skip;    /* inert, and a present value has no contents to visit either */
    bool elem_ok; /* ARRAY / MAP: validating elements can find something */
    /* Registry entries are copied: a registration reallocates the registry's array (the
     * strings they point to live as long as the schema). */
    bool has_req_fn;
    mk_path_fn_t req_fn;
    const char *req_msg;
    check_t *checks;
    size_t nchecks, capchecks;
    mk_path_fn_t *fns; /* registry validators, in registration order */
    size_t nfns;
    struct pplan *elem;       /* ARRAY: the element (arr = this array); MAP: the value */
    struct pplan *elem_upd;   /* MAP: the value with the map as arr (update validators) */
    const mk_schema_t *child; /* SUBDOC / DOCARRAY */
    uint32_t node;            /* NESTED: the name index node of its children */
} pplan_t;

/* The name index: (node, field name) -> path. Node 0 is the schema's top level, node i + 1
 * the inside of NESTED path i; a node's names are the paths' names without its prefix, so a
 * field named "profile.bio" at the top level finds path "profile.bio" as a lookup of the full
 * name would. */
typedef struct nslot {
    const char *key; /* NULL: empty */
    uint64_t head;   /* the name's first 8 bytes (zero-padded), compared at once */
    uint32_t len, node, hash, path;
    bool dotted; /* the name has a dot: a lookup of a dotted path never meets such a field */
} nslot_t;

typedef struct plan {
    struct plan *older; /* plans this one replaced, freed with the holder */
    /* what the plan was built from: the schema changed if any differs */
    const mk_schema_fns_t *fns;
    size_t npfns;
    size_t n;
    const mk_schema_path_t **paths;
    pplan_t *pp;        /* one per schema path, in schema order */
    uint32_t *required; /* required paths (not NESTED), in Schema#requiredPaths order */
    size_t nrequired;
    nslot_t *slots;
    size_t nslots; /* a power of two, at most half full */
} plan_t;

static void pplan_free(pplan_t *pp)
{
    for (size_t i = 0; i < pp->nchecks; i++) {
        check_t *c = &pp->checks[i];
        if (c->kind == CK_ENUM) {
            if (c->u.en.list) bson_destroy(c->u.en.list);
            free(c->u.en.m);
        } else if (c->kind == CK_MATCH && c->u.match.re) {
            pcre2_code_free(c->u.match.re);
        }
    }
    free(pp->checks);
    free(pp->fns);
    if (pp->elem) pplan_free(pp->elem);
    free(pp->elem);
    if (pp->elem_upd) pplan_free(pp->elem_upd);
    free(pp->elem_upd);
}

static void plan_free(plan_t *pl)
{
    for (size_t i = 0; pl->pp && i < pl->n; i++) pplan_free(&pl->pp[i]);
    free(pl->pp);
    free(pl->paths);
    free(pl->required);
    free(pl->slots);
    free(pl);
}

/* A new check at the end of the list, zeroed; NULL when out of memory. */
static check_t *add_check(pplan_t *pp, ck_kind_t kind)
{
    if (pp->nchecks == pp->capchecks) {
        size_t c = pp->capchecks ? pp->capchecks * 2 : 4;
        check_t *g = realloc(pp->checks, c * sizeof *g);
        if (!g) return NULL;
        pp->checks = g;
        pp->capchecks = c;
    }
    check_t *c = &pp->checks[pp->nchecks++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    return c;
}

static int add_bad(pplan_t *pp, const char *option, const char *what)
{
    check_t *c = add_check(pp, CK_BAD);
    if (!c) return MK_ENOMEM;
    c->u.bad.option = option;
    c->u.bad.what = what;
    return MK_OK;
}

/* String enum values are cast to strings when the schema is built ([1, 2] holds '1', '2').
 * MK_ERR with *what for a value that cannot be. */
static int enum_values_as_strings(const bson_t *in, bson_t *out, const char **what)
{
    bson_iter_t it;
    uint32_t n = 0;
    if (!bson_iter_init(&it, in)) {
        *what = "malformed list";
        return MK_ERR;
    }
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
            *what = "a value cannot be cast to String";
            return MK_ERR;
        }
        if (!ok) return MK_ENOMEM;
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
 * or a single value. An empty list, false and null add no validator (*list stays NULL). */
static int enum_list(const bson_value_t *ov, bool numeric, bson_t **list, const char **msg,
                     const char **what)
{
    *list = NULL;
    *msg = NULL;
    bson_t view; /* the option's list, read in place */
    bson_t own;  /* a list built here (single value, or cast to strings) */
    const bson_t *src = &view;
    bson_init(&own);
    int rc = MK_OK;
    bool as_array = true;
    if (ov->value_type == BSON_TYPE_ARRAY || ov->value_type == BSON_TYPE_DOCUMENT) {
        if (!bson_init_static(&view, ov->value.v_doc.data, ov->value.v_doc.data_len)) {
            *what = "malformed value";
            rc = MK_ERR;
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
                *msg = bson_iter_utf8(&mi, NULL);
            bson_iter_array(&vi, &n, &d);
            if (!bson_init_static(&view, d, n)) {
                *what = "malformed values";
                rc = MK_ERR;
                goto out;
            }
        }
    } else if (is_nullish_type(ov->value_type) ||
               (ov->value_type == BSON_TYPE_BOOL && !ov->value.v_bool)) {
        goto out; /* enum: false / null adds no validator */
    } else {
        if (!bson_append_value(&own, "0", 1, ov)) {
            rc = MK_ENOMEM;
            goto out;
        }
        src = &own;
    }
    if (!numeric && (!as_array || !all_strings(src))) {
        bson_t cast = BSON_INITIALIZER;
        rc = enum_values_as_strings(src, &cast, what);
        bson_destroy(&own);
        bson_init(&own);
        if (rc == MK_OK && !bson_concat(&own, &cast)) rc = MK_ENOMEM;
        bson_destroy(&cast);
        if (rc != MK_OK) goto out;
        src = &own;
    }
    if (!(*list = bson_copy(src))) rc = MK_ENOMEM;
out:
    bson_destroy(&own);
    return rc;
}

static int add_enum(pplan_t *pp, const bson_value_t *ov, bool numeric)
{
    bson_t *list = NULL;
    const char *msg = NULL, *what = NULL;
    int rc = enum_list(ov, numeric, &list, &msg, &what);
    if (rc == MK_ERR) return add_bad(pp, "enum", what);
    if (rc != MK_OK || !list) return rc;
    check_t *c = add_check(pp, CK_ENUM);
    if (!c) {
        bson_destroy(list);
        return MK_ENOMEM;
    }
    c->msg = msg;
    c->u.en.list = list;
    uint32_t count = bson_count_keys(list);
    if (count && !(c->u.en.m = calloc(count, sizeof *c->u.en.m))) return MK_ENOMEM;
    bson_iter_t it;
    if (count && bson_iter_init(&it, list)) {
        while (c->u.en.n < count && bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            member_t *m = &c->u.en.m[c->u.en.n++];
            if (e->value_type == BSON_TYPE_UTF8) {
                m->is_str = true;
                m->str = e->value.v_utf8.str; /* inside `list`, which never changes */
                m->len = e->value.v_utf8.len;
            } else if (is_num(e)) {
                m->is_num = true;
                m->d = num(e);
            }
        }
    }
    return MK_OK;
}

/* JS regex flags as PCRE2 options, as mk_validate_match maps them; false for a flag it
 * rejects (the value is then left to mk_validate_match, which reports it). */
static bool regex_options(const char *flags, uint32_t *opts)
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
        case 'y':
            *opts |= PCRE2_ANCHORED;
            break;
        case 'u':
        case 'g':
        case 'd':
            break;
        default:
            return false;
        }
    }
    if (!multiline) *opts |= PCRE2_DOLLAR_ENDONLY;
    return true;
}

static int add_match(pplan_t *pp, const bson_value_t *opt)
{
    bson_value_t re;
    const char *msg;
    mk_validate_option(opt, &re, &msg);
    if (is_nullish_type(re.value_type)) return MK_OK;
    if (re.value_type != BSON_TYPE_REGEX)
        return add_bad(pp, "match", "expected a regular expression or [regexp, message]");
    check_t *c = add_check(pp, CK_MATCH);
    if (!c) return MK_ENOMEM;
    c->msg = msg;
    c->u.match.pattern = re.value.v_regex.regex;
    c->u.match.flags = re.value.v_regex.options;
    uint32_t opts;
    int code;
    PCRE2_SIZE off;
    if (regex_options(c->u.match.flags, &opts)) /* NULL when invalid: reported when matched */
        c->u.match.re = pcre2_compile((PCRE2_SPTR)c->u.match.pattern, PCRE2_ZERO_TERMINATED, opts,
                                      &code, &off, NULL);
    return MK_OK;
}

static int add_length(pplan_t *pp, const bson_iter_t *opt, bool is_min)
{
    bson_value_t b;
    const char *msg;
    mk_validate_option(bson_iter_value((bson_iter_t *)opt), &b, &msg);
    if (is_nullish_type(b.value_type)) return MK_OK;
    if (!is_num(&b))
        return add_bad(pp, bson_iter_key(opt), "expected a number or [number, message]");
    check_t *c = add_check(pp, CK_LENGTH);
    if (!c) return MK_ENOMEM;
    c->is_min = is_min;
    c->msg = msg;
    c->u.length = num(&b);
    return MK_OK;
}

/* `min` / `max` on Number and Date paths. Date bounds are read when validating (Date.now, and
 * a bound written as a string or a number keeps its text for the message). */
static int add_bound(pplan_t *pp, const bson_value_t *opt, bool is_min)
{
    bson_value_t b;
    const char *msg;
    mk_validate_option(opt, &b, &msg);
    if (is_nullish_type(b.value_type)) return MK_OK;
    if (pp->type != MK_TYPE_DATE && !is_num(&b))
        return add_bad(pp, is_min ? "min" : "max", "expected a number or [number, message]");
    if (pp->type == MK_TYPE_DATE && b.value_type == BSON_TYPE_BOOL && !b.value.v_bool)
        return MK_OK; /* `if (value)` in Mongoose */
    check_t *c = add_check(pp, CK_BOUND);
    if (!c) return MK_ENOMEM;
    c->is_min = is_min;
    c->msg = msg;
    c->u.bound = b;
    return MK_OK;
}

/* Registry validators with index in [from, to), when there are any. */
static int add_custom(pplan_t *pp, size_t from, size_t to)
{
    if (from >= (to < pp->nfns ? to : pp->nfns)) return MK_OK;
    check_t *c = add_check(pp, CK_CUSTOM);
    if (!c) return MK_ENOMEM;
    c->u.custom.from = from;
    c->u.custom.to = to;
    return MK_OK;
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

/* `required`: true, [true, 'message'], 'message', or a function from the registry (the schema
 * text's `required: 'name'` is resolved into one; the last one registered counts, as calling
 * required() again does in Mongoose). Only false, null and undefined turn it off. */
static void plan_required(const mk_schema_t *owner, pplan_t *pp)
{
    const mk_path_fn_t *f;
    size_t it = 0;
    while ((f = mk_schema_path_fn_next(owner, pp->name, MK_FN_REQUIRED, &it))) {
        pp->req_fn = *f;
        pp->has_req_fn = true;
    }
    bson_iter_t oi;
    bool on = false, has = pp->has_req_fn;
    const char *msg = NULL;
    if (mk_schema_path_option(pp->p, "required", &oi)) {
        bson_value_t val;
        mk_validate_option(bson_iter_value(&oi), &val, &msg);
        if (!has)
            has = val.value_type == BSON_TYPE_BOOL ? val.value.v_bool
                                                   : !is_nullish_type(val.value_type);
        switch (val.value_type) {
        case BSON_TYPE_BOOL:
            on = val.value.v_bool;
            break;
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            break;
        case BSON_TYPE_UTF8: /* a message, unless it named the registered function */
            on = true;
            if (!pp->has_req_fn && !msg) msg = val.value.v_utf8.str;
            break;
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
            on = true;
            break;
        default:
            pp->req_bad = true;
        }
    }
    pp->has_req = has;
    if (pp->has_req_fn) {
        pp->req_on = true;
        pp->req_msg = pp->req_fn.message ? pp->req_fn.message : msg;
    } else if (on) {
        pp->req_on = true;
        pp->req_msg = msg;
    }
}

static int pplan_build(const mk_schema_t *owner, const mk_schema_path_t *p,
                       const mk_schema_path_t *arr, pplan_t *pp);

/* The element (or map value) plans of a container. */
static int plan_elements(const mk_schema_t *owner, pplan_t *pp)
{
    const mk_schema_path_t *e = mk_schema_path_element(pp->p);
    pp->elem_ok = elem_validates(owner, pp->p);
    if (!e) return MK_OK;
    bool map = pp->type == MK_TYPE_MAP;
    if (!(pp->elem = calloc(1, sizeof *pp->elem))) return MK_ENOMEM;
    int rc = pplan_build(owner, e, map ? NULL : pp->p, pp->elem);
    if (rc != MK_OK || !map) return rc;
    if (!(pp->elem_upd = calloc(1, sizeof *pp->elem_upd))) return MK_ENOMEM;
    return pplan_build(owner, e, pp->p, pp->elem_upd);
}

/* Reads path p (of schema `owner`; an element of `arr` when arr is set) into pp. Options are
 * taken in the order they are written, as run_validators used to meet them. MK_OK or
 * MK_ENOMEM; pp is freed with pplan_free either way. */
static int pplan_build(const mk_schema_t *owner, const mk_schema_path_t *p,
                       const mk_schema_path_t *arr, pplan_t *pp)
{
    memset(pp, 0, sizeof *pp);
    pp->p = p;
    pp->arr = arr;
    pp->name = mk_schema_path_name(p);
    pp->type = mk_schema_path_kind(p);
    pp->child = mk_schema_path_schema(p);
    size_t it = 0, cap = 0;
    const mk_path_fn_t *f;
    while ((f = mk_schema_path_fn_next(owner, pp->name, MK_FN_VALIDATOR, &it))) {
        if (pp->nfns == cap) {
            size_t c = cap ? cap * 2 : 4;
            mk_path_fn_t *g = realloc(pp->fns, c * sizeof *g);
            if (!g) return MK_ENOMEM;
            pp->fns = g;
            cap = c;
        }
        pp->fns[pp->nfns++] = *f;
    }
    plan_required(owner, pp);

    mk_schematype_t type = pp->type;
    size_t named = 0; /* registry validators taken by the `validate` option */
    bool seen_validate = false;
    bson_iter_t oi;
    int rc = MK_OK;
    if (bson_iter_init(&oi, mk_schema_path_options(p))) {
        while (rc == MK_OK && bson_iter_next(&oi)) {
            const char *k = bson_iter_key(&oi);
            const bson_value_t *ov = bson_iter_value(&oi);
            if (type == MK_TYPE_STRING && strcmp(k, "enum") == 0)
                rc = add_enum(pp, ov, false);
            else if (type == MK_TYPE_NUMBER && strcmp(k, "enum") == 0) /* Mongoose 8 */
                rc = add_enum(pp, ov, true);
            else if (type == MK_TYPE_STRING && strcmp(k, "match") == 0)
                rc = add_match(pp, ov);
            else if (type == MK_TYPE_STRING &&
                     (strcmp(k, "minlength") == 0 || strcmp(k, "minLength") == 0))
                rc = add_length(pp, &oi, true);
            else if (type == MK_TYPE_STRING &&
                     (strcmp(k, "maxlength") == 0 || strcmp(k, "maxLength") == 0))
                rc = add_length(pp, &oi, false);
            else if ((type == MK_TYPE_NUMBER || type == MK_TYPE_DATE) && strcmp(k, "min") == 0)
                rc = add_bound(pp, ov, true);
            else if ((type == MK_TYPE_NUMBER || type == MK_TYPE_DATE) && strcmp(k, "max") == 0)
                rc = add_bound(pp, ov, false);
            else if (strcmp(k, "validate") == 0 && !seen_validate) {
                seen_validate = true;
                named = count_named(&oi);
                rc = add_custom(pp, 0, named);
            }
        }
    }
    /* an array's `enum` is its element's (SchemaArray.prototype.enum), added after the
     * element's own validators */
    if (rc == MK_OK && arr && type == MK_TYPE_STRING && mk_schema_path_option(arr, "enum", &oi))
        rc = add_enum(pp, bson_iter_value(&oi), false);
    if (rc == MK_OK) rc = add_custom(pp, named, SIZE_MAX);
    if (rc == MK_OK && (type == MK_TYPE_ARRAY || type == MK_TYPE_MAP))
        rc = plan_elements(owner, pp);
    pp->inert = !pp->req_on && !pp->req_bad && pp->nchecks == 0;
    pp->skip = pp->inert && type != MK_TYPE_SUBDOC && type != MK_TYPE_DOCARRAY &&
               !((type == MK_TYPE_ARRAY || type == MK_TYPE_MAP) && pp->elem_ok);
    return rc;
}

/* The first (up to) 8 bytes of a name, zero-padded: most field names fit whole. */
static uint64_t name_head(const char *key, uint32_t len)
{
    uint64_t w = 0;
    memcpy(&w, key, len < 8 ? len : 8);
    return w;
}

/* Mixes the node, the length and the head of the name: names that collide are told apart by
 * comparing them. */
static uint32_t name_hash(uint64_t head, uint32_t len, uint32_t node)
{
    uint64_t h = head ^ ((uint64_t)len << 56) ^ ((uint64_t)node * 0x9E3779B97F4A7C15u);
    h *= 0xBF58476D1CE4E5B9u;
    h ^= h >> 31;
    return (uint32_t)(h ^ (h >> 29));
}

/* Field names are short: a plain loop beats a call to memcmp. */
static bool same_bytes(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static void name_put(plan_t *pl, uint32_t node, const char *key, uint32_t path)
{
    uint32_t len = (uint32_t)strlen(key);
    uint64_t head = name_head(key, len);
    uint32_t h = name_hash(head, len, node);
    size_t i = h & (pl->nslots - 1);
    while (pl->slots[i].key) i = (i + 1) & (pl->nslots - 1);
    pl->slots[i] = (nslot_t){key, head, len, node, h, path, strchr(key, '.') != NULL};
}

/* The entry of the path called `key` (of `len` bytes, `head` its name_head) inside node
 * `node`, or NULL. */
static const nslot_t *name_find(const plan_t *pl, uint32_t node, const char *key, uint32_t len,
                                uint64_t head)
{
    uint32_t h = name_hash(head, len, node);
    for (size_t i = h & (pl->nslots - 1);; i = (i + 1) & (pl->nslots - 1)) {
        const nslot_t *s = &pl->slots[i];
        if (!s->key) return NULL;
        if (s->hash == h && s->head == head && s->len == len && s->node == node &&
            (len <= 8 || same_bytes(s->key + 8, key + 8, len - 8)))
            return s;
    }
}

static int plan_names(plan_t *pl)
{
    size_t entries = pl->n;
    for (size_t j = 0; j < pl->n; j++) {
        if (pl->pp[j].type != MK_TYPE_NESTED) continue;
        for (size_t i = 0; i < pl->n; i++) entries += under(pl->pp[i].name, pl->pp[j].name);
    }
    pl->nslots = 8;
    while (pl->nslots < entries * 2) pl->nslots *= 2;
    if (!(pl->slots = calloc(pl->nslots, sizeof *pl->slots))) return MK_ENOMEM;
    for (size_t i = 0; i < pl->n; i++) name_put(pl, 0, pl->pp[i].name, (uint32_t)i);
    for (size_t j = 0; j < pl->n; j++) {
        if (pl->pp[j].type != MK_TYPE_NESTED) continue;
        pl->pp[j].node = (uint32_t)j + 1;
        size_t skip = strlen(pl->pp[j].name) + 1;
        for (size_t i = 0; i < pl->n; i++)
            if (under(pl->pp[i].name, pl->pp[j].name))
                name_put(pl, (uint32_t)j + 1, pl->pp[i].name + skip, (uint32_t)i);
    }
    return MK_OK;
}

/* How many path functions the schema's registry holds (registrations only append). */
static size_t registry_size(const mk_schema_t *s, size_t from)
{
    size_t it = from;
    while (mk_schema_path_fn_next(s, "", MK_FN_VALIDATOR, &it)) {}
    return it;
}

static plan_t *plan_build(const mk_schema_t *s)
{
    plan_t *pl = calloc(1, sizeof *pl);
    if (!pl) return NULL;
    pl->fns = mk_schema_fns_peek(s);
    pl->npfns = registry_size(s, 0);
    pl->n = mk_schema_path_count(s);
    size_t n = pl->n ? pl->n : 1;
    pl->paths = calloc(n, sizeof *pl->paths);
    pl->pp = calloc(n, sizeof *pl->pp);
    pl->required = calloc(n, sizeof *pl->required);
    int rc = pl->paths && pl->pp && pl->required ? MK_OK : MK_ENOMEM;
    for (size_t i = 0; rc == MK_OK && i < pl->n; i++) {
        pl->paths[i] = mk_schema_path_at(s, i);
        rc = pplan_build(s, pl->paths[i], NULL, &pl->pp[i]);
    }
    /* Schema#requiredPaths lists them last first */
    for (size_t i = pl->n; rc == MK_OK && i-- > 0;)
        if (pl->pp[i].type != MK_TYPE_NESTED && pl->pp[i].has_req)
            pl->required[pl->nrequired++] = (uint32_t)i;
    if (rc == MK_OK) rc = plan_names(pl);
    if (rc != MK_OK) {
        plan_free(pl);
        return NULL;
    }
    return pl;
}

/* Whether the schema is still what the plan was built from. Changes made through
 * mk_schema_add clear the cache; registering a function or replacing a path with
 * mk_schema_add_schema do not, so they are checked here (registrations only append, and a
 * replaced path is a new object). */
static bool plan_fresh(const plan_t *pl, const mk_schema_t *s)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    if (f != pl->fns || (f && registry_size(s, pl->npfns) != pl->npfns)) return false;
    if (mk_schema_path_count(s) != pl->n) return false;
    for (size_t i = 0; i < pl->n; i++)
        if (mk_schema_path_at(s, i) != pl->paths[i]) return false;
    return true;
}

/* The cache slot's value: the current plan, rebuilt when the schema changed under it. Plans
 * it replaced stay allocated until the schema goes (another thread may still read one). */
typedef struct holder {
    pthread_mutex_t lock;
    plan_t *cur;
} holder_t;

static void holder_free(void *ptr)
{
    holder_t *h = ptr;
    for (plan_t *p = h->cur, *older; p; p = older) {
        older = p->older;
        plan_free(p);
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
}

static void *holder_new(const mk_schema_t *s)
{
    holder_t *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    if (pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h);
        return NULL;
    }
    mk_schema_cache_set_free((mk_schema_t *)s, MK_SCHEMA_CACHE_VALIDATE, holder_free);
    return h;
}

/* The schema's plan; NULL when out of memory. */
static const plan_t *plan_of(const mk_schema_t *s)
{
    holder_t *h = mk_schema_cache(s, MK_SCHEMA_CACHE_VALIDATE, holder_new);
    if (!h) return NULL;
    plan_t *pl = __atomic_load_n(&h->cur, __ATOMIC_ACQUIRE);
    if (pl && plan_fresh(pl, s)) return pl;
    pthread_mutex_lock(&h->lock);
    pl = h->cur;
    if (!pl || !plan_fresh(pl, s)) {
        plan_t *fresh = plan_build(s);
        if (fresh) {
            fresh->older = pl;
            __atomic_store_n(&h->cur, fresh, __ATOMIC_RELEASE);
        }
        pl = fresh;
    }
    pthread_mutex_unlock(&h->lock);
    return pl;
}

static const pplan_t *pp_search(const pplan_t *pp, const mk_schema_path_t *p,
                                const mk_schema_path_t *arr)
{
    if (!pp) return NULL;
    if (pp->p == p && pp->arr == arr) return pp;
    const pplan_t *f = pp_search(pp->elem, p, arr);
    return f ? f : pp_search(pp->elem_upd, p, arr);
}

/* The plan of SchemaType p (an element of arr when arr is set) in schema plan pl. */
static const pplan_t *pp_find(const plan_t *pl, const mk_schema_path_t *p,
                              const mk_schema_path_t *arr)
{
    for (size_t i = 0; i < pl->n; i++) {
        const pplan_t *f = pp_search(&pl->pp[i], p, arr);
        if (f) return f;
    }
    return NULL;
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

/* Jobs are carved from blocks that live as long as the run: one allocation serves many
 * sub-documents. */
typedef struct block {
    struct block *next;
    size_t used, cap;
    size_t align; /* unused: keeps the data after the header 16-byte aligned */
} block_t;

#define BLOCK_SIZE 4096

typedef struct run {
    const mk_dv_opts_t *o; /* NULL: no path selection */
    mk_doc_t *doc;
    mk_query_t *query;
    mk_verrors_t *errs;
    mk_verrors_t scratch; /* a built-in validator's error before it is re-keyed */
    pcre2_match_data *md; /* for `match`, made on first use (plans are shared by threads) */
    job_t *head, *tail;
    block_t *blocks;
} run_t;

static void run_init(run_t *r, const mk_dv_opts_t *o, mk_doc_t *doc, mk_query_t *query,
                     mk_verrors_t *errs)
{
    r->o = o;
    r->doc = doc;
    r->query = query;
    r->errs = errs;
    r->md = NULL;
    r->head = r->tail = NULL;
    r->blocks = NULL;
    /* an empty collector, set up field by field: its error is kilobytes that only a failing
     * validator writes (and builtin_done reads only then) */
    r->scratch.items = NULL;
    r->scratch.count = r->scratch.cap = 0;
    r->scratch.error.code = 0;
    r->scratch.error.labels = 0;
    r->scratch.error.kind[0] = r->scratch.error.message[0] = '\0';
    r->scratch.error.ndetails = r->scratch.error.ndetails_lost = 0;
    r->scratch.error.details_used = 0;
}

static void run_free(run_t *r)
{
    while (r->blocks) {
        block_t *b = r->blocks;
        r->blocks = b->next;
        free(b);
    }
    r->head = r->tail = NULL;
    mk_verrors_destroy(&r->scratch);
    if (r->md) pcre2_match_data_free(r->md);
    r->md = NULL;
}

static int nomem(run_t *r)
{
    return mk_error_nomem(&r->errs->error);
}

static void *run_alloc(run_t *r, size_t n)
{
    _Static_assert(sizeof(block_t) % 16 == 0, "block data alignment");
    n = (n + 15) & ~(size_t)15;
    block_t *b = r->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > BLOCK_SIZE ? n : BLOCK_SIZE;
        if (!(b = malloc(sizeof *b + cap))) return NULL;
        b->next = r->blocks;
        b->used = 0;
        b->cap = cap;
        r->blocks = b;
    }
    void *p = (char *)(b + 1) + b->used;
    b->used += n;
    return p;
}

/* Where a value is: up to four strings joined as they are (the caller writes the dots); a
 * NULL part ends them. */
typedef struct parts {
    const char *p[4];
} parts_t;

/* The parts joined into k (a single non-empty part is borrowed); NULL when out of memory. */
static const char *kb_join(kbuf_t *k, const parts_t *parts)
{
    size_t len[4] = {0}, n = 0;
    int count = 0, last = 0;
    for (int i = 0; i < 4 && parts->p[i]; i++) {
        len[i] = strlen(parts->p[i]);
        n += len[i];
        if (len[i]) {
            count++;
            last = i;
        }
    }
    k->p = NULL;
    if (count <= 1) return count ? parts->p[last] : "";
    k->p = n < sizeof k->buf ? k->buf : malloc(n + 1);
    if (!k->p) return NULL;
    char *w = k->p;
    for (int i = 0; i < 4 && parts->p[i]; i++) {
        memcpy(w, parts->p[i], len[i]);
        w += len[i];
    }
    *w = '\0';
    return k->p;
}

/* Queues sub-document v of `schema`, found at key `key`. */
static int enqueue(run_t *r, const mk_schema_t *schema, const bson_value_t *v, parts_t key)
{
    size_t len[4] = {0}, n = 0;
    for (int i = 0; i < 4 && key.p[i]; i++) n += len[i] = strlen(key.p[i]);
    job_t *j = run_alloc(r, sizeof *j + n + 2);
    if (!j) return nomem(r);
    j->next = NULL;
    j->schema = schema;
    j->data = v->value.v_doc.data;
    j->len = v->value.v_doc.data_len;
    char *w = j->prefix;
    for (int i = 0; i < 4 && key.p[i]; i++) {
        memcpy(w, key.p[i], len[i]);
        w += len[i];
    }
    w[0] = '.';
    w[1] = '\0';
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

/* With path selection (run_t.o set): whether the path's own validators run. `required` (a
 * required path) keeps the path under modified_and_required, where only modified and required
 * paths are validated. */
static bool selected(const run_t *r, const char *key, bool required)
{
    if (r->o->only_paths && !listed(r->o->only_paths, key, false)) return false;
    /* isModified(key): the path, a parent or a child was modified */
    bool modified = listed(r->o->modified_paths, key, true);
    if (r->o->validate_modified_only && !modified) return false;
    if (r->o->modified_and_required && !modified && !required) return false;
    return true;
}

/* With path selection: whether anything under key may be validated. */
static bool selected_below(const run_t *r, const char *key, bool required)
{
    if (r->o->only_paths && !listed(r->o->only_paths, key, true)) return false;
    bool modified = listed(r->o->modified_paths, key, true);
    if (r->o->validate_modified_only && !modified) return false;
    if (r->o->modified_and_required && !modified && !required) return false;
    return true;
}

/* ---- validators of one value ---- */

/* What a value is validated as, and where. Its key (where an error is recorded) and the path
 * its messages name are joined from their parts only when something needs them: a failing
 * validator, a callback, path selection. */
typedef struct vt {
    const pplan_t *pp; /* the SchemaType (an array's element for elements) */
    parts_t kparts, mparts;
    const char *key, *msg_path; /* NULL until joined */
    kbuf_t kbuf, mbuf;
} vt_t;

static void vt_init(vt_t *t, const pplan_t *pp, parts_t key, parts_t msg_path)
{
    t->pp = pp;
    t->kparts = key;
    t->mparts = msg_path;
    t->key = t->msg_path = NULL;
    t->kbuf.p = t->mbuf.p = NULL;
}

static void vt_free(vt_t *t)
{
    kb_free(&t->kbuf);
    kb_free(&t->mbuf);
}

static int vt_names(run_t *r, vt_t *t)
{
    if (!t->key && !(t->key = kb_join(&t->kbuf, &t->kparts))) return nomem(r);
    if (!t->msg_path && !(t->msg_path = kb_join(&t->mbuf, &t->mparts))) return nomem(r);
    return MK_OK;
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

/* A string or number in the list; anything else is mk_validate_enum's to judge. */
static bool enum_passes(const bson_value_t *v, const check_t *c)
{
    const member_t *m = c->u.en.m;
    size_t n = c->u.en.n;
    if (v->value_type == BSON_TYPE_UTF8) {
        uint32_t len = v->value.v_utf8.len;
        for (size_t i = 0; i < n; i++)
            if (m[i].is_str && m[i].len == len && same_bytes(m[i].str, v->value.v_utf8.str, len))
                return true;
    } else if (is_num(v)) {
        double x = num(v);
        for (size_t i = 0; i < n; i++)
            if (m[i].is_num && m[i].d == x) return true;
    }
    return false;
}

/* A string the compiled regex matches: 1; anything else is mk_validate_match's to judge (it
 * reports bad patterns and flags, and words the failure): 0; MK_ENOMEM. */
static int match_passes(run_t *r, const bson_value_t *v, const check_t *c)
{
    if (!c->u.match.re || v->value_type != BSON_TYPE_UTF8 || v->value.v_utf8.len == 0) return 0;
    if (!r->md && !(r->md = pcre2_match_data_create(1, NULL))) return nomem(r);
    return pcre2_match(c->u.match.re, (PCRE2_SPTR)v->value.v_utf8.str, v->value.v_utf8.len, 0, 0,
                       r->md, NULL) >= 0;
}

static uint64_t utf16_units(const unsigned char *s, uint32_t n)
{
    uint64_t units = 0;
    uint32_t i = 0;
    for (; n - i >= 8; i += 8) { /* ASCII runs count a byte each */
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080u) break;
        units += 8;
    }
    for (; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) units += s[i] >= 0xF0 ? 2 : 1;
    return units;
}

/* A string whose length (in UTF-16 code units, JS's .length, counted as mk_validate_minlength
 * counts them) is within the bound; anything else is the validator's to judge. *units: the
 * value's length once counted, -1 before. */
static bool length_passes(const bson_value_t *v, const check_t *c, int64_t *units)
{
    if (v->value_type != BSON_TYPE_UTF8) return false;
    if (*units < 0)
        *units =
            (int64_t)utf16_units((const unsigned char *)v->value.v_utf8.str, v->value.v_utf8.len);
    double len = (double)*units;
    return c->is_min ? len >= c->u.length : len <= c->u.length;
}

/* A number within a Number path's bound; anything else is the validator's to judge. */
static bool number_passes(const pplan_t *pp, const bson_value_t *v, const check_t *c)
{
    if (pp->type == MK_TYPE_DATE || !is_num(v) || !is_num(&c->u.bound)) return false;
    double x = num(v), b = num(&c->u.bound);
    return c->is_min ? x >= b : x <= b; /* NaN goes to the validator */
}

/* Replaces the first `key` of a template with `text`. A new string. */
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

/* `min` / `max`. A Date bound may be written as a date, a number (ms), a date string or
 * Date.now; the message shows it as written, as Mongoose's does. */
static int run_bound(run_t *r, const vt_t *t, const bson_value_t *v, const check_t *c)
{
    bool is_min = c->is_min;
    const char *msg = c->msg;
    const bson_value_t *b = &c->u.bound;
    if (t->pp->type != MK_TYPE_DATE) {
        int rc = is_min ? mk_validate_min(v, b, msg, t->msg_path, &r->scratch)
                        : mk_validate_max(v, b, msg, t->msg_path, &r->scratch);
        return builtin_done(r, t, rc);
    }
    const char *name = is_min ? "min" : "max";
    bson_value_t bound = {.value_type = BSON_TYPE_DATE_TIME};
    char *shown = NULL; /* the bound as the message shows it, when not a date */
    if (b->value_type == BSON_TYPE_DATE_TIME) {
        bound = *b;
    } else if (b->value_type == BSON_TYPE_UTF8 && strcmp(b->value.v_utf8.str, "Date.now") == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        bound.value.v_datetime = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        shown = strdup("Date.now()");
        if (!shown) return nomem(r);
    } else if (b->value_type == BSON_TYPE_UTF8 || is_num(b)) {
        mk_error_t cerr;
        bson_value_t cast;
        if (mk_cast_value(MK_CAST_DATE, b, &cast, &cerr) != MK_OK) {
            bson_value_destroy(&cast);
            return option_error(r, t, name, "the bound is not a valid date");
        }
        bound = cast; /* a date_time owns no memory */
        shown = mk_validate_js_string(b);
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

/* Runs the registry validators of the path with index in [from, to). */
static int run_custom(run_t *r, const vt_t *t, const bson_value_t *v, size_t from, size_t to)
{
    const pplan_t *pp = t->pp;
    if (to > pp->nfns) to = pp->nfns;
    for (size_t i = from; i < to; i++) {
        const mk_path_fn_t *f = &pp->fns[i];
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

/* Runs one check on a present value: 0 passed, 1 failed (recorded), < 0 error. A check that
 * passes at once needs no names; anything else goes to the validator of odm/validate.h. */
static int run_check(run_t *r, vt_t *t, const bson_value_t *v, const check_t *c, int64_t *units)
{
    int rc = 0;
    switch (c->kind) {
    case CK_ENUM:
        if (enum_passes(v, c)) return 0;
        break;
    case CK_MATCH:
        if ((rc = match_passes(r, v, c)) != 0) return rc > 0 ? 0 : rc;
        break;
    case CK_LENGTH:
        if (length_passes(v, c, units)) return 0;
        break;
    case CK_BOUND:
        if (number_passes(t->pp, v, c)) return 0;
        break;
    default:
        break;
    }
    if ((rc = vt_names(r, t)) != MK_OK) return rc;
    switch (c->kind) {
    case CK_ENUM:
        return builtin_done(r, t,
                            mk_validate_enum(v, c->u.en.list, c->msg, t->msg_path, &r->scratch));
    case CK_MATCH:
        return builtin_done(r, t,
                            mk_validate_match(v, c->u.match.pattern, c->u.match.flags, c->msg,
                                              t->msg_path, &r->scratch));
    case CK_LENGTH:
        return builtin_done(
            r, t,
            c->is_min ? mk_validate_minlength(v, c->u.length, c->msg, t->msg_path, &r->scratch)
                      : mk_validate_maxlength(v, c->u.length, c->msg, t->msg_path, &r->scratch));
    case CK_BOUND:
        return run_bound(r, t, v, c);
    case CK_CUSTOM:
        return run_custom(r, t, v, c->u.custom.from, c->u.custom.to);
    default:
        return option_error(r, t, c->u.bad.option, c->u.bad.what);
    }
}

/* Validates one value (NULL = undefined) in Mongoose's validator order: `required`, then the
 * built-in validators and the `validate` option in the order the options are written, the
 * array's `enum` for elements, then validators added in C. The first failing validator is the
 * path's error. 0 passed, 1 failed (recorded), < 0 error. */
static int run_validators(run_t *r, vt_t *t, const bson_value_t *v)
{
    const pplan_t *pp = t->pp;
    int rc;
    if (v && v->value_type == BSON_TYPE_UNDEFINED) v = NULL;
    if (pp->req_bad) {
        if ((rc = vt_names(r, t)) != MK_OK) return rc;
        return option_error(r, t, "required", REQUIRED_FORMS);
    }
    if (pp->req_on) {
        bool check = true;
        if (pp->has_req_fn) {
            if ((rc = vt_names(r, t)) != MK_OK) return rc;
            mk_fn_ctx_t ctx = {.doc = r->doc, .query = r->query, .path = t->key};
            int q = pp->req_fn.fn.required(&ctx, pp->req_fn.ud);
            if (q == MK_ENOMEM) return nomem(r);
            if (q < 0)
                return mk_error_set(&r->errs->error, MK_CODE_INTERNAL, "InternalError",
                                    "the required function of path `%s` failed", t->msg_path);
            check = q != 0;
        }
        /* a non-empty string passes at once (a String path's checkRequired) */
        bool filled = v && pp->type == MK_TYPE_STRING && v->value_type == BSON_TYPE_UTF8 &&
                      v->value.v_utf8.len > 0;
        if (check && !filled) {
            if ((rc = vt_names(r, t)) != MK_OK) return rc;
            rc = builtin_done(
                r, t, mk_validate_required(v, pp->type, pp->req_msg, t->msg_path, &r->scratch));
            if (rc != 0) return rc;
        }
    }
    if (!v) return 0; /* Mongoose calls no other validator for undefined */
    int64_t units = -1;
    for (size_t i = 0; i < pp->nchecks; i++)
        if ((rc = run_check(r, t, v, &pp->checks[i], &units)) != 0) return rc;
    return 0;
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

/* A present value of a schema path, found while walking the level. */
typedef struct found {
    const pplan_t *pp;
    bson_value_t v;
} found_t;

#define LOCAL_FOUND 32
#define LOCAL_LATER 8
#define LOCAL_MARKS 256

/* Per schema path while walking a level: whether a field of the name was met as a lookup of
 * the dotted name would meet it (first such field of each parent object, no dots in field
 * names), and whether its value was defined. */
enum { MARK_SEEN = 1, MARK_PRESENT = 2 };

typedef struct level {
    run_t *r;
    const plan_t *pl;
    const char *prefix;
    found_t *found; /* present paths in document order, through nested objects */
    size_t nfound, capfound;
    bool too_deep; /* nested objects deeper than MAX_DEPTH: reported after the paths before */
    uint8_t *marks;
    /* array elements and map entries, validated after the level's paths (Mongoose adds their
     * paths to the set last) */
    found_t *arrays, *maps;
    size_t narrays, nmaps, caparrays, capmaps;
    found_t local_found[LOCAL_FOUND];
    found_t local_arrays[LOCAL_LATER], local_maps[LOCAL_LATER];
    uint8_t local_marks[LOCAL_MARKS];
} level_t;

static int level_init(level_t *L, run_t *r, const plan_t *pl, const char *prefix)
{
    L->r = r;
    L->pl = pl;
    L->prefix = prefix;
    L->found = L->local_found;
    L->capfound = LOCAL_FOUND;
    L->nfound = 0;
    L->too_deep = false;
    L->arrays = L->local_arrays;
    L->maps = L->local_maps;
    L->caparrays = L->capmaps = LOCAL_LATER;
    L->narrays = L->nmaps = 0;
    L->marks = pl->n <= LOCAL_MARKS ? L->local_marks : calloc(pl->n, 1);
    if (!L->marks) return MK_ENOMEM;
    if (L->marks == L->local_marks) memset(L->marks, 0, pl->n);
    return MK_OK;
}

static void level_free(level_t *L)
{
    if (L->found != L->local_found) free(L->found);
    if (L->arrays != L->local_arrays) free(L->arrays);
    if (L->maps != L->local_maps) free(L->maps);
    if (L->marks && L->marks != L->local_marks) free(L->marks);
}

static int defer(level_t *L, bool map, const pplan_t *pp, const bson_value_t *v)
{
    found_t **items = map ? &L->maps : &L->arrays;
    size_t *n = map ? &L->nmaps : &L->narrays, *cap = map ? &L->capmaps : &L->caparrays;
    if (!grow_items((void **)items, cap, *n, sizeof **items,
                    map ? (void *)L->local_maps : (void *)L->local_arrays))
        return nomem(L->r);
    (*items)[(*n)++] = (found_t){pp, *v};
    return MK_OK;
}

/* Notes a field of the level naming path sl->path. A lookup of a dotted path takes the first
 * field of each name in each object, and never a field whose name has a dot; `first` says the
 * objects this field is in were such fields. Returns whether this field is one too. */
static bool mark(level_t *L, const nslot_t *sl, bool first, bson_type_t type)
{
    if (!first || sl->dotted || (L->marks[sl->path] & MARK_SEEN)) return false;
    L->marks[sl->path] |= type == BSON_TYPE_UNDEFINED ? MARK_SEEN : MARK_SEEN | MARK_PRESENT;
    return true;
}

static int add_found(level_t *L, const pplan_t *pp, const bson_value_t *v)
{
    if (!grow_items((void **)&L->found, &L->capfound, L->nfound, sizeof *L->found, L->local_found))
        return MK_ENOMEM;
    L->found[L->nfound].pp = pp;
    L->found[L->nfound++].v = *v;
    return MK_OK;
}

/* Marks what lookups of dotted paths find inside an object the walk does not enter: one that
 * bson_init_static refuses (bson_iter_recurse, what a lookup uses, reads it anyway), or one
 * nested too deeply for the walk. Lookups only go as deep as the schema's nested paths, so
 * this recursion is bounded by the schema, not by the document. */
static void mark_inside(level_t *L, bson_iter_t *it, uint32_t node)
{
    while (bson_iter_next(it)) {
        const char *key = bson_iter_key(it);
        uint32_t klen = bson_iter_key_len(it);
        const nslot_t *sl = name_find(L->pl, node, key, klen, name_head(key, klen));
        if (!sl || !mark(L, sl, true, bson_iter_type(it))) continue;
        bson_iter_t in;
        if (L->pl->pp[sl->path].type == MK_TYPE_NESTED && BSON_ITER_HOLDS_DOCUMENT(it) &&
            bson_iter_recurse(it, &in))
            mark_inside(L, &in, L->pl->pp[sl->path].node);
    }
}

/* Collects the level's present paths in document order, through nested objects, with
 * bson_iter. Past nested objects deeper than MAX_DEPTH nothing more is collected (the walk
 * stops there with an error) but lookups are still marked. MK_OK or MK_ENOMEM. */
static int scan(level_t *L, const bson_t *doc, uint32_t node, bool first, int depth)
{
    bson_iter_t it;
    if (depth > MAX_DEPTH) {
        L->too_deep = true;
        if (first && bson_iter_init(&it, doc)) mark_inside(L, &it, node);
        return MK_OK;
    }
    if (!bson_iter_init(&it, doc)) return MK_OK;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        uint32_t klen = bson_iter_key_len(&it);
        const nslot_t *sl = name_find(L->pl, node, key, klen, name_head(key, klen));
        if (!sl) continue;
        const pplan_t *pp = &L->pl->pp[sl->path];
        bson_type_t type = bson_iter_type(&it);
        bool lookup = mark(L, sl, first, type);
        if (type == BSON_TYPE_UNDEFINED) continue;
        if (pp->type == MK_TYPE_NESTED) {
            uint32_t n;
            const uint8_t *d;
            bson_t child;
            if (type != BSON_TYPE_DOCUMENT) continue;
            bson_iter_document(&it, &n, &d);
            if (!bson_init_static(&child, d, n)) {
                bson_iter_t in;
                if (lookup && bson_iter_recurse(&it, &in)) mark_inside(L, &in, pp->node);
                continue;
            }
            int rc = scan(L, &child, pp->node, lookup, depth + 1);
            if (rc != MK_OK) return rc;
            continue;
        }
        if (pp->skip || L->too_deep) continue; /* nothing to validate in it, or no more */
        if (add_found(L, pp, bson_iter_value(&it)) != MK_OK) return MK_ENOMEM;
    }
    return MK_OK;
}

/* ---- the quick walk: well-formed BSON read directly, anything else left to scan() ---- */

static uint32_t le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return BSON_UINT32_FROM_LE(v);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return BSON_UINT64_FROM_LE(v);
}

/* An element as the quick walk reads it. */
typedef struct qel {
    bson_type_t type;
    const char *key;
    uint32_t klen;
    uint64_t head;      /* name_head(key, klen) */
    const uint8_t *val; /* the value's bytes */
    uint32_t size;      /* and their count */
} qel_t;

enum { QUICK_BAIL = 2 };

/* Moves *o (in d[0, len)) to the NUL that ends the name starting there, and sets *head to
 * the name's name_head; false if there is no NUL. */
static bool key_end(const uint8_t *d, uint32_t len, uint32_t *o, uint64_t *head)
{
    uint32_t start = *o, at = start;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* eight bytes at a time: the lowest byte flagged by the zero-byte test is the first NUL */
    while (len - at >= 8) {
        uint64_t w;
        memcpy(&w, d + at, 8);
        uint64_t z = (w - 0x0101010101010101u) & ~w & 0x8080808080808080u;
        if (z) {
            uint32_t k = (uint32_t)(__builtin_ctzll(z) >> 3);
            *o = at + k;
            if (at == start)
                *head = k ? w & (~0ull >> (64 - 8 * k)) : 0;
            else
                *head = name_head((const char *)d + start, 8);
            return true;
        }
        at += 8;
    }
#endif
    while (at < len && d[at]) at++;
    *o = at;
    if (at >= len) return false;
    *head = name_head((const char *)d + start, at - start);
    return true;
}

/* Reads the element at *off of d[0, len). 1: an element (*off moves past it); 0: the
 * document's end; QUICK_BAIL for a type it does not read or bytes bson_iter would not accept as
 * they are (the level is then walked with bson_iter). Each check is bson_iter_next's or
 * stricter. */
static int quick_next(const uint8_t *d, uint32_t len, uint32_t *off, qel_t *e)
{
    uint32_t at = *off;
    if (at >= len) return QUICK_BAIL;
    uint8_t type = d[at];
    if (type == BSON_TYPE_EOD) return at == len - 1 ? 0 : QUICK_BAIL;
    uint32_t o = at + 1;
    e->key = (const char *)d + o;
    if (!key_end(d, len, &o, &e->head)) return QUICK_BAIL;
    e->klen = o - at - 1;
    o++;
    uint32_t room = len - o, size;
    switch (type) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DATE_TIME:
    case BSON_TYPE_INT64:
        size = 8;
        break;
    case BSON_TYPE_INT32:
        size = 4;
        break;
    case BSON_TYPE_DECIMAL128:
        size = 16;
        break;
    case BSON_TYPE_OID:
        size = 12;
        break;
    case BSON_TYPE_BOOL:
        if (room < 2 || d[o] > 1) return QUICK_BAIL;
        size = 1;
        break;
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        size = 0;
        break;
    case BSON_TYPE_UTF8: { /* int32 length (with the NUL), bytes, NUL */
        if (room < 5) return QUICK_BAIL;
        uint32_t l = le32(d + o);
        if (l == 0 || l > room - 4 || d[o + 4 + l - 1] != 0) return QUICK_BAIL;
        size = 4 + l;
        break;
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: { /* as bson_init_static accepts it */
        if (room < 5) return QUICK_BAIL;
        uint32_t l = le32(d + o);
        if (l < 5 || l > room || d[o + l - 1] != 0) return QUICK_BAIL;
        size = l;
        break;
    }
    default:
        return QUICK_BAIL;
    }
    if (size >= room) return QUICK_BAIL; /* the document's last byte follows every element */
    e->type = (bson_type_t)type;
    e->val = d + o;
    e->size = size;
    *off = o + size;
    return 1;
}

/* The element's value as bson_iter_value gives it. */
static void quick_value(const qel_t *e, bson_value_t *v)
{
    v->value_type = e->type;
    switch (e->type) {
    case BSON_TYPE_DOUBLE: {
        uint64_t bits = le64(e->val);
        memcpy(&v->value.v_double, &bits, sizeof bits);
        break;
    }
    case BSON_TYPE_DATE_TIME:
        v->value.v_datetime = (int64_t)le64(e->val);
        break;
    case BSON_TYPE_INT64:
        v->value.v_int64 = (int64_t)le64(e->val);
        break;
    case BSON_TYPE_INT32:
        v->value.v_int32 = (int32_t)le32(e->val);
        break;
    case BSON_TYPE_DECIMAL128:
        v->value.v_decimal128.low = le64(e->val);
        v->value.v_decimal128.high = le64(e->val + 8);
        break;
    case BSON_TYPE_OID:
        memcpy(&v->value.v_oid, e->val, 12);
        break;
    case BSON_TYPE_BOOL:
        v->value.v_bool = e->val[0] != 0;
        break;
    case BSON_TYPE_UTF8:
        v->value.v_utf8.str = (char *)e->val + 4;
        v->value.v_utf8.len = e->size - 5;
        break;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        v->value.v_doc.data = (uint8_t *)e->val;
        v->value.v_doc.data_len = e->size;
        break;
    default: /* null, undefined */
        break;
    }
}

/* scan() for well-formed documents of common types; QUICK_BAIL when it cannot tell. */
static int scan_quick(level_t *L, const uint8_t *d, uint32_t len, uint32_t node, bool first,
                      int depth)
{
    if (depth > MAX_DEPTH) return QUICK_BAIL;
    uint32_t off = 4;
    qel_t e;
    int got;
    while ((got = quick_next(d, len, &off, &e)) == 1) {
        const nslot_t *sl = name_find(L->pl, node, e.key, e.klen, e.head);
        if (!sl) continue;
        const pplan_t *pp = &L->pl->pp[sl->path];
        bool lookup = mark(L, sl, first, e.type);
        if (e.type == BSON_TYPE_UNDEFINED) continue;
        if (pp->type == MK_TYPE_NESTED) {
            if (e.type != BSON_TYPE_DOCUMENT) continue;
            int rc = scan_quick(L, e.val, e.size, pp->node, lookup, depth + 1);
            if (rc != MK_OK) return rc;
            continue;
        }
        if (pp->skip) continue;
        bson_value_t v;
        quick_value(&e, &v);
        if (add_found(L, pp, &v) != MK_OK) return MK_ENOMEM;
    }
    return got == 0 ? MK_OK : got;
}

/* Walks the level: quickly, or with bson_iter from the start when the quick walk cannot. */
static int walk(level_t *L, const bson_t *doc)
{
    if (doc->len < 5) return MK_OK; /* bson_iter_init refuses it */
    int rc = scan_quick(L, bson_get_data(doc), doc->len, 0, true, 0);
    if (rc != QUICK_BAIL) return rc;
    L->nfound = 0;
    memset(L->marks, 0, L->pl->n);
    return scan(L, doc, 0, true, 0);
}

/* Elements of an array or object: read by the quick walk when the whole container reads so,
 * with bson_iter otherwise. */
typedef struct elit {
    bool quick;
    const uint8_t *d;
    uint32_t len, off;
    qel_t e;
    bson_iter_t it;
} elit_t;

/* False for the data bson_iter_init_from_data refuses. */
static bool elit_init(elit_t *x, const uint8_t *data, uint32_t len)
{
    if (len < 5 || len > INT_MAX || le32(data) != len || data[len - 1] != 0) return false;
    x->d = data;
    x->len = len;
    x->off = 4;
    uint32_t off = 4;
    int got;
    while ((got = quick_next(data, len, &off, &x->e)) == 1) {}
    x->quick = got == 0;
    return x->quick || bson_iter_init_from_data(&x->it, data, len);
}

static bool elit_next(elit_t *x)
{
    return x->quick ? quick_next(x->d, x->len, &x->off, &x->e) == 1 : bson_iter_next(&x->it);
}

static const char *elit_key(const elit_t *x)
{
    return x->quick ? x->e.key : bson_iter_key(&x->it);
}

static bson_type_t elit_type(const elit_t *x)
{
    return x->quick ? x->e.type : bson_iter_type(&x->it);
}

static void elit_value(elit_t *x, bson_value_t *v)
{
    if (x->quick)
        quick_value(&x->e, v);
    else
        *v = *bson_iter_value(&x->it);
}

/* A present value of a path of the level. */
static int validate_present(level_t *L, const pplan_t *pp, const bson_value_t *v)
{
    run_t *r = L->r;
    vt_t t;
    vt_init(&t, pp, (parts_t){{L->prefix, pp->name}}, (parts_t){{pp->name}});
    int rc = 0;
    bool go = true, below = true;
    if (r->o) {
        if ((rc = vt_names(r, &t)) != MK_OK) goto done;
        go = selected(r, t.key, pp->has_req);
        below = selected_below(r, t.key, pp->has_req);
    }
    if (!pp->inert && go) rc = run_validators(r, &t, v);
    if (rc < 0) goto done;
    switch (pp->type) {
    case MK_TYPE_SUBDOC:
        /* a failing validator of the sub-document path skips its contents */
        if (rc == 0 && v->value_type == BSON_TYPE_DOCUMENT && below)
            rc = enqueue(r, pp->child, v, (parts_t){{L->prefix, pp->name}});
        break;
    case MK_TYPE_DOCARRAY: {
        if (rc != 0 || v->value_type != BSON_TYPE_ARRAY || !below) break;
        elit_t it;
        if (!elit_init(&it, v->value.v_doc.data, v->value.v_doc.data_len)) break;
        while (rc == 0 && elit_next(&it)) {
            if (elit_type(&it) != BSON_TYPE_DOCUMENT) continue; /* null elements are skipped */
            parts_t ekey = {{L->prefix, pp->name, ".", elit_key(&it)}};
            if (r->o) {
                KBUF(eb);
                const char *k = kb_join(&eb, &ekey);
                bool wanted = k && selected_below(r, k, true);
                kb_free(&eb);
                if (!k) {
                    rc = nomem(r);
                    break;
                }
                if (!wanted) continue;
            }
            bson_value_t ev;
            elit_value(&it, &ev);
            rc = enqueue(r, pp->child, &ev, ekey);
        }
        break;
    }
    case MK_TYPE_ARRAY:
        rc = 0; /* elements are validated whatever the array's own validators said */
        if (v->value_type == BSON_TYPE_ARRAY && pp->elem_ok && below) rc = defer(L, false, pp, v);
        break;
    case MK_TYPE_MAP:
        rc = 0;
        if (v->value_type == BSON_TYPE_DOCUMENT && pp->elem_ok && below) rc = defer(L, true, pp, v);
        break;
    default:
        break;
    }
    if (rc > 0) rc = 0;
done:
    vt_free(&t);
    return rc;
}

/* Elements of an array path ("tags.1"): messages name `aname`.<index>, keys are
 * `kpre``kname`.<index>. Arrays of arrays go one level deeper ("m.0.1"), as Mongoose's
 * _pushNestedArrayPaths. */
static int validate_elements(level_t *L, const pplan_t *arr, const char *aname, const char *kpre,
                             const char *kname, const bson_value_t *v, int depth)
{
    run_t *r = L->r;
    const pplan_t *e = arr->elem;
    if (!e || depth > MAX_DEPTH) return MK_OK;
    elit_t it;
    if (!elit_init(&it, v->value.v_doc.data, v->value.v_doc.data_len)) return MK_OK;
    int rc = MK_OK;
    while (rc >= 0 && elit_next(&it)) {
        bool nested = e->type == MK_TYPE_ARRAY && elit_type(&it) == BSON_TYPE_ARRAY;
        if (!nested && e->inert) continue; /* nothing would run */
        const char *idx = elit_key(&it);
        bson_value_t ev;
        elit_value(&it, &ev);
        vt_t t;
        vt_init(&t, e, (parts_t){{kpre, kname, ".", idx}}, (parts_t){{aname, ".", idx}});
        if (nested) {
            if ((rc = vt_names(r, &t)) == MK_OK)
                rc = validate_elements(L, e, t.msg_path, "", t.key, &ev, depth + 1);
        } else {
            bool go = true;
            if (r->o && (rc = vt_names(r, &t)) == MK_OK) go = selected(r, t.key, true);
            if (rc >= 0 && go) rc = run_validators(r, &t, &ev);
        }
        vt_free(&t);
    }
    return rc < 0 ? rc : MK_OK;
}

/* Values of a map path ("prices.eur"): the `of` type's validators; sub-documents are queued. */
static int validate_map(level_t *L, const found_t *m)
{
    run_t *r = L->r;
    const pplan_t *e = m->pp->elem;
    const char *name = m->pp->name;
    elit_t it;
    if (!e || !elit_init(&it, m->v.value.v_doc.data, m->v.value.v_doc.data_len)) return MK_OK;
    int rc = MK_OK;
    while (rc >= 0 && elit_next(&it)) {
        const char *k = elit_key(&it);
        bson_value_t ev;
        elit_value(&it, &ev);
        vt_t t;
        vt_init(&t, e, (parts_t){{L->prefix, name, ".", k}}, (parts_t){{name, ".", k}});
        int failed = 0;
        bool go = true, below = true;
        if (r->o && (rc = vt_names(r, &t)) == MK_OK) {
            go = selected(r, t.key, true);
            below = selected_below(r, t.key, true);
        }
        if (rc >= 0 && !e->inert && go) failed = rc = run_validators(r, &t, &ev);
        if (rc >= 0 && !failed && e->type == MK_TYPE_SUBDOC &&
            ev.value_type == BSON_TYPE_DOCUMENT && below)
            rc = enqueue(r, e->child, &ev, (parts_t){{L->prefix, name, ".", k}});
        vt_free(&t);
    }
    return rc < 0 ? rc : MK_OK;
}

/* One level: a document or a sub-document validated with its schema. */
static int validate_level(run_t *r, const mk_schema_t *s, const bson_t *doc, const char *prefix)
{
    const plan_t *pl = plan_of(s);
    if (!pl) return nomem(r);
    level_t L;
    int rc = level_init(&L, r, pl, prefix);
    if (rc == MK_OK) rc = walk(&L, doc);
    if (rc == MK_ENOMEM) rc = nomem(r);
    /* required paths that are missing, in Schema#requiredPaths order */
    for (size_t k = 0; rc >= 0 && k < pl->nrequired; k++) {
        const pplan_t *pp = &pl->pp[pl->required[k]];
        if (L.marks[pl->required[k]] & MARK_PRESENT) continue;
        vt_t t;
        vt_init(&t, pp, (parts_t){{prefix, pp->name}}, (parts_t){{pp->name}});
        bool go = true;
        if (r->o && (rc = vt_names(r, &t)) == MK_OK) go = selected(r, t.key, true);
        if (rc >= 0 && go) rc = run_validators(r, &t, NULL);
        vt_free(&t);
    }
    if (rc >= 0) rc = MK_OK;
    for (size_t k = 0; rc == MK_OK && k < L.nfound; k++)
        rc = validate_present(&L, L.found[k].pp, &L.found[k].v);
    if (rc == MK_OK && L.too_deep)
        rc = mk_error_set(&r->errs->error, MK_CODE_BAD_VALUE, "BadValue",
                          "document nests too deeply to validate");
    for (size_t k = 0; rc >= 0 && k < L.narrays; k++) {
        const found_t *a = &L.arrays[k];
        rc = validate_elements(&L, a->pp, a->pp->name, prefix, a->pp->name, &a->v, 0);
    }
    for (size_t k = 0; rc >= 0 && k < L.nmaps; k++) rc = validate_map(&L, &L.maps[k]);
    level_free(&L);
    return rc < 0 ? rc : MK_OK;
}

/* Validates a document and then its queued sub-documents, breadth first. */
static int run_document(run_t *r, const mk_schema_t *s, const bson_t *doc, const char *prefix)
{
    int rc = validate_level(r, s, doc, prefix);
    while (rc >= 0 && r->head) {
        job_t *j = r->head; /* its memory goes with the run */
        r->head = j->next;
        if (!r->head) r->tail = NULL;
        bson_t sub;
        if (bson_init_static(&sub, j->data, j->len))
            rc = validate_level(r, j->schema, &sub, j->prefix);
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
    const plan_t *pl = plan_of(t->owner);
    if (!pl) return nomem(u->r);
    const pplan_t *pp = pp_find(pl, t->p, t->arr);
    if (!pp)
        return mk_error_set(&u->r->errs->error, MK_CODE_INTERNAL, "InternalError",
                            "no validation plan for path `%s`", t->msg_path);
    vt_t vt;
    vt_init(&vt, pp, (parts_t){{key}}, (parts_t){{t->msg_path}});
    int rc = run_validators(u->r, &vt, v);
    vt_free(&vt);
    return rc;
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
