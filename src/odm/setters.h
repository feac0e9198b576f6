/* Setters, and "setters then cast": what Mongoose's SchemaType#applySetters does to a value
 * before it is stored, used by documents, filters and updates alike. Also what the casting code
 * shares below that: where a dotted path lands in a schema (with a per-schema plan that makes
 * the lookup a hash probe), and a BSON reader and writer for its hot loops.
 *
 * Order (Mongoose 8's SchemaType#_applySetters): a path keeps ONE list of setters and runs it
 * from the LAST entry to the first. The list is built in this order:
 *   1. the path options, in the order they are written: `lowercase`, `uppercase`, `trim`
 *      (String paths only, and only when truthy) and a named `set: 'fn'`, each appending
 *      its setter as Mongoose's SchemaType constructor does;
 *   2. setters added later with mk_schema_path_setter (schema.path(x).set(fn)), in
 *      registration order.
 * So the most recently added C setter runs first, and `{ lowercase: true, trim: true }` trims
 * before lowercasing. The registry cannot tell whether a `set: 'name'` option was already
 * resolved; when the option is present its setter is taken to be the first one registered for
 * the path (mk_schema_resolve_named puts it there).
 *
 * Every setter sees the value the previous one returned, undefined included: Mongoose calls
 * setters for undefined too (`in` == NULL here), and a setter may turn a value into undefined
 * (a BSON_TYPE_UNDEFINED result, passed on as NULL). The built-in lowercase / uppercase / trim
 * first cast a non-string to String (a CastError when that fails), leave null, undefined and ''
 * alone, and follow JS's toLowerCase / toUpperCase (Unicode simple case mapping plus ß -> SS)
 * and trim (JS white space). */
#ifndef MK_ODM_SETTERS_H
#define MK_ODM_SETTERS_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <meerkat/error.h>
#include <meerkat/schema.h>

#include "odm/cast.h"

/* Runs the setters of `path` (owned by `owner`: for a path inside a sub-document, the child
 * schema, where its setters are registered under the relative name). `in` is borrowed, NULL =
 * undefined. `ctx` may be NULL (a query context without document). *out always receives a new
 * value the caller destroys (BSON_TYPE_UNDEFINED for undefined). MK_OK, MK_ERR (a setter's
 * error, or the CastError of a built-in) or MK_ENOMEM. */
int mk_setters_apply(const mk_schema_t *owner, const mk_schema_path_t *path, const mk_fn_ctx_t *ctx,
                     const bson_value_t *in, bson_value_t *out, mk_error_t *err);

/* How mk_setters_cast reports and what it adds. A zeroed struct (or NULL) is the document form:
 * no model in CastError messages, unknown sub-document fields follow the child schema's
 * `strict`, no `_id`s added. */
typedef struct mk_setters_cast_opts {
    const char *model;    /* model name: CastErrors end with `for model "X"` (query form) */
    const char *err_path; /* path named in CastErrors; NULL: the path's name in its schema */
    bool has_strict;      /* true: `strict` below overrides the sub-schemas' own option */
    mk_strict_t strict;
    bool add_ids;    /* new sub-documents without `_id` get a fresh ObjectId first, as
                        Mongoose's sub-document constructor does when the child has an auto _id */
    bool query_form; /* SchemaType#castForQuery rather than #applySetters: a RegExp passes a
                        String path untouched, and single nested paths run their setters only
                        with the `runSetters` option */
} mk_setters_cast_opts_t;

/* Setters then cast, as SchemaType#applySetters (or #castForQuery with opts->query_form):
 *   scalars      setters, then mk_cast_value_at for the path's type (null stays null,
 *                undefined stays undefined)
 *   Mixed        setters only
 *   arrays       the array's setters on the whole value, a non-array wrapped in [value], then
 *                every element through the element type; a failing element is Mongoose's
 *                `Cast to [Number] failed for value "[ 1, 'x' ]" (type string) at path
 *                "nums.1" because of "CastError"`
 *   doc arrays   each object element cast field by field through the child schema (falsy
 *                elements kept as they are, other values a CastError to `embedded`)
 *   sub-docs     an object cast field by field through the child schema
 *   maps         each value through the map's value type
 * Fields of sub-documents keep their order; unknown ones follow `strict` (true: dropped,
 * false: kept, throw: StrictModeError `Field \`x\` is not in schema and strict mode is set to
 * throw.`). *out receives a new value the caller destroys. A scalar without setters costs one
 * cast and no other allocation. */
int mk_setters_cast(const mk_schema_t *owner, const mk_schema_path_t *path, const mk_fn_ctx_t *ctx,
                    const bson_value_t *in, const mk_setters_cast_opts_t *opts, bson_value_t *out,
                    mk_error_t *err);

/* The scalar cast type of a path kind; false for Mixed, arrays, sub-documents, maps, nested. */
bool mk_setters_cast_type(mk_schematype_t kind, mk_cast_type_t *out);

/* Casts every field of `doc` through `schema` as a (sub-)document: what mk_setters_cast does
 * for a sub-document, for a whole document (a replacement). Appends the fields to `out`. */
int mk_setters_cast_fields(const mk_schema_t *schema, const bson_t *doc, const mk_fn_ctx_t *ctx,
                           const mk_setters_cast_opts_t *opts, bson_t *out, mk_error_t *err);

/* ---- where a dotted path lands in a schema ---- */

typedef struct mk_path_info mk_path_info_t; /* see "the per-schema cast plan" below */

typedef enum mk_loc_kind {
    MK_LOC_UNKNOWN = 0, /* no path of the schema, nor a prefix of it */
    MK_LOC_PATH,        /* a SchemaType: `owner`, `path` */
    MK_LOC_NESTED,      /* a plain nested object of `owner` */
    MK_LOC_CHILD,       /* inside a sub-document or document array: `owner` is the child
                           schema and `rest` the offset of the path within it */
    MK_LOC_OPAQUE,      /* below a path that has no sub-paths (Mixed, a String, `tags.foo`) */
} mk_loc_kind_t;

typedef struct mk_path_loc {
    mk_loc_kind_t kind;
    const mk_schema_t *owner;
    const mk_schema_path_t *path;    /* PATH: the SchemaType (an element type for "tags.0");
                                        CHILD, OPAQUE: the path the walk stopped at */
    const mk_schema_path_t *array;   /* PATH reached through an array index: the array path,
                                        whose name Mongoose's element caster carries */
    bool element;                    /* PATH is one element of a document array ("comments.0") */
    size_t rest;                     /* CHILD: where the remaining path starts in `dotted` */
    const struct mk_path_info *info; /* the cast plan's entry for `path` when known, or NULL */
} mk_path_loc_t;

/* One level of lookup, as Mongoose's cast() does with schema.path(): the exact path, else the
 * longest prefix that is a SchemaType. Array components may be indexes or positional
 * operators ("0", "$", "$[]", "$[name]"). `dotted` is NUL-terminated. */
void mk_path_locate(const mk_schema_t *schema, const char *dotted, mk_path_loc_t *loc);
/* The same when strlen(dotted) is known. */
void mk_path_locate_n(const mk_schema_t *schema, const char *dotted, size_t len,
                      mk_path_loc_t *loc);
/* The same with the schema's cast plan (mk_cast_plan(schema), fetched once by a caller that
 * locates many paths; NULL: fetched here). */
void mk_path_locate_plan(const mk_schema_t *schema, const void *plan, const char *dotted,
                         size_t len, mk_path_loc_t *loc);
/* Follows CHILD results into the sub-schemas (Mongoose's schema._getSchema for updates):
 * the result is never CHILD; `owner` is the schema that owns what was found. */
void mk_path_locate_deep(const mk_schema_t *schema, const char *dotted, mk_path_loc_t *loc);
void mk_path_locate_deep_plan(const mk_schema_t *schema, const void *plan, const char *dotted,
                              size_t len, mk_path_loc_t *loc);

/* The name Mongoose's CastError carries for a located path: the array's name for elements. */
const char *mk_path_loc_name(const mk_path_loc_t *loc);

/* ---- the per-schema cast plan ----
 *
 * What the casting code reads about a schema on every value, computed once per schema and kept
 * in its MK_SCHEMA_CACHE_CAST slot: a hash of path names (mk_path_locate), and per path
 * (array elements and map values included) the options that matter. The functions registered
 * in C are not part of it (they are read live), so registering a setter later is seen. A plan
 * whose schema changed without its cache being cleared is detected and bypassed. */

struct mk_path_info {
    const mk_schema_path_t *path;
    mk_schematype_t kind;
    bool has_cast; /* `cast` is the path's scalar cast type */
    mk_cast_type_t cast;
    bool immutable;    /* the `immutable` option is truthy */
    bool run_setters;  /* the `runSetters` option is truthy */
    bool auto_id;      /* the `auto` option is truthy */
    bool setops_known; /* false: too many setter options to keep, read the options instead */
    uint8_t nsetops;   /* built-in setters and `set: 'name'` options, in option order */
    uint8_t setops[6];
    const struct mk_path_info *elem; /* the entry of the array element / map value type */
};

/* The plan's entry for a path of `owner` (or an element of one); NULL when unknown. */
const mk_path_info_t *mk_path_info(const mk_schema_t *owner, const mk_schema_path_t *path);
/* The plan's entry for a located path (loc->info when it is the path's), or NULL. */
const struct mk_path_info *mk_loc_info(const mk_path_loc_t *loc);
/* True when no setter runs for a located path (no built-in, no named, no C setter): casting it
 * is just mk_cast_value_at. False when unsure. */
bool mk_loc_setters_none(const mk_path_loc_t *loc);
/* The schema's cast plan, for mk_path_locate_plan (NULL when it cannot be had: the plan-less
 * lookups are used then). Valid while the schema is not changed. */
const void *mk_cast_plan(const mk_schema_t *s);
/* Whether the schema's options name `strictQuery` (Mongoose then uses the option's value). */
bool mk_schema_names_strict_query(const mk_schema_t *s);
/* The child schema's `_id` path is an auto ObjectId (new sub-documents get one). */
bool mk_schema_has_auto_id(const mk_schema_t *child);

/* ---- a small BSON reader ----
 *
 * bson_iter_next + bson_iter_key + bson_iter_value in one step, for the casting code's loops:
 * it accepts and rejects exactly what bson_iter_next does (reading stops at the end or at the
 * first corrupt element), and gives the same values (binaries, regexes, code, symbols and
 * DBPointers are decoded by libbson itself). */

typedef struct mk_br {
    const uint8_t *raw; /* NULL once the end or a corrupt element was reached */
    uint32_t len, next;
} mk_br_t;

typedef struct mk_elem {
    const char *key;
    uint32_t keylen;
    bson_value_t v; /* a view into the document */
} mk_elem_t;

/* Starts reading `len` bytes of BSON, as bson_iter_init does (false when len < 5). */
static inline bool mk_br_init(mk_br_t *r, const uint8_t *data, uint32_t len)
{
    r->raw = len >= 5 ? data : NULL;
    r->len = len;
    r->next = 4;
    return r->raw != NULL;
}

static inline bool mk_br_init_bson(mk_br_t *r, const bson_t *b)
{
    return mk_br_init(r, bson_get_data(b), b->len);
}

/* What bson_init_static accepts: a length header equal to `len` and a final NUL. */
static inline bool mk_doc_ok(const uint8_t *data, uint32_t len)
{
    uint32_t n;
    if (len < 5 || len > INT32_MAX) return false;
    memcpy(&n, data, 4);
    return BSON_UINT32_FROM_LE(n) == len && data[len - 1] == 0;
}

/* A document or array value, after the checks of bson_init_static (false when they fail). */
static inline bool mk_br_init_value(mk_br_t *r, const bson_value_t *v)
{
    if ((v->value_type != BSON_TYPE_DOCUMENT && v->value_type != BSON_TYPE_ARRAY) ||
        !mk_doc_ok(v->value.v_doc.data, v->value.v_doc.data_len)) {
        r->raw = NULL;
        return false;
    }
    return mk_br_init(r, v->value.v_doc.data, v->value.v_doc.data_len);
}

/* The offset of the first NUL at or after `o` (before len), or len: a word at a time. */
static inline uint32_t mk_br_key_end(const uint8_t *raw, uint32_t o, uint32_t len)
{
#if BSON_BYTE_ORDER == BSON_LITTLE_ENDIAN
    while (len - o >= 8) {
        uint64_t v;
        memcpy(&v, raw + o, 8);
        uint64_t z = (v - 0x0101010101010101ull) & ~v & 0x8080808080808080ull;
        if (z) return o + (uint32_t)(__builtin_ctzll(z) >> 3); /* the lowest is exact */
        o += 8;
    }
#endif
    while (o < len && raw[o]) o++;
    return o;
}

/* mk_br_next for every type and every corrupt case. */
bool mk_br_next_slow(mk_br_t *r, mk_elem_t *e);

/* The next element; false at the end or at a corrupt element (then always false). The common
 * types are read here; anything else (or anything doubtful) by mk_br_next_slow. */
static inline bool mk_br_next(mk_br_t *r, mk_elem_t *e)
{
    const uint8_t *raw = r->raw;
    if (!raw) return false;
    uint32_t len = r->len, off = r->next, o = off + 1, l;
    if (raw[off] == BSON_TYPE_EOD) { /* the end (or a corrupt document): bson_iter_next stops */
        r->raw = NULL;
        return false;
    }
    o = mk_br_key_end(raw, o, len); /* the key's NUL, or len */
    if (++o >= len) return mk_br_next_slow(r, e);
    switch (raw[off]) {
    case BSON_TYPE_UTF8:
        if (o + 4 >= len) break;
        memcpy(&l, raw + o, 4);
        l = BSON_UINT32_FROM_LE(l);
        if (l == 0 || l >= len - (o + 4) || raw[o + 3 + l] != 0) break;
        e->v.value.v_utf8.str = (char *)raw + o + 4;
        e->v.value.v_utf8.len = l - 1;
        r->next = o + 4 + l;
        goto done;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        if (o >= len - 4) break;
        memcpy(&l, raw + o, 4);
        l = BSON_UINT32_FROM_LE(l);
        if (l >= len - o) break;
        e->v.value.v_doc.data = (uint8_t *)raw + o;
        e->v.value.v_doc.data_len = l;
        r->next = o + l;
        goto done;
    case BSON_TYPE_INT32:
        if (o + 4 >= len) break;
        memcpy(&l, raw + o, 4);
        e->v.value.v_int32 = (int32_t)BSON_UINT32_FROM_LE(l);
        r->next = o + 4;
        goto done;
    case BSON_TYPE_BOOL:
        if (o + 1 >= len || raw[o] > 1) break;
        e->v.value.v_bool = raw[o] != 0;
        r->next = o + 1;
        goto done;
    case BSON_TYPE_NULL:
        r->next = o;
        goto done;
    default:
        break;
    }
    return mk_br_next_slow(r, e);
done:
    e->key = (const char *)raw + off + 1;
    e->keylen = o - off - 2;
    e->v.value_type = (bson_type_t)raw[off];
    return true;
}

/* ---- a small BSON writer ----
 *
 * The casting code writes its results with this rather than bson_append_*: appends are a few
 * stores, nested documents are patched in place, and a failed element is undone by resetting
 * `len` (mk_bw_mark / mk_bw_rollback). The bytes are exactly those libbson would write
 * (regexes, binaries, code with scope and DBPointers go through libbson itself). It starts on
 * the stack and moves to the heap when it outgrows `local`; an allocation failure sets `oom`,
 * after which nothing is written (check it before using the result). Never copy one. */

#define MK_BW_LOCAL 480

typedef struct mk_bw {
    uint8_t *buf;
    size_t len, cap;
    bool oom;
    uint8_t local[MK_BW_LOCAL];
} mk_bw_t;

/* Starts a document (its length is written by mk_bw_finish). */
void mk_bw_init(mk_bw_t *w);
void mk_bw_free(mk_bw_t *w);
/* Ends the document; false when out of memory. `view` then reads it (static, borrowed). */
bool mk_bw_finish(mk_bw_t *w, bson_t *view);
/* Makes room for n more bytes (false, and oom set, when that fails). */
bool mk_bw_grow(mk_bw_t *w, size_t n);

static inline bool mk_bw_room(mk_bw_t *w, size_t n)
{
    return !w->oom && (w->cap - w->len >= n || mk_bw_grow(w, n));
}

static inline size_t mk_bw_mark(const mk_bw_t *w)
{
    return w->len;
}

static inline void mk_bw_rollback(mk_bw_t *w, size_t mark)
{
    if (!w->oom && mark <= w->len) w->len = mark;
}

/* memcpy for the short keys of documents, without a call. */
static inline void mk_bw_copy(uint8_t *d, const char *s, size_t n)
{
    if (n >= 8 && n <= 16) { /* two overlapping words */
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++) d[i] = (uint8_t)s[i];
    } else {
        memcpy(d, s, n);
    }
}

/* bson_value_destroy for values that own memory (the others have nothing to free). */
static inline void mk_value_release(bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
    case BSON_TYPE_BINARY:
    case BSON_TYPE_REGEX:
    case BSON_TYPE_DBPOINTER:
    case BSON_TYPE_CODE:
    case BSON_TYPE_SYMBOL:
    case BSON_TYPE_CODEWSCOPE:
        bson_value_destroy(v);
        break;
    default:
        break;
    }
}

/* An element's type byte and key; false when out of memory. */
static inline bool mk_bw_head(mk_bw_t *w, bson_type_t type, const char *key, size_t keylen,
                              size_t extra)
{
    if (!mk_bw_room(w, keylen + 2 + extra)) return false;
    uint8_t *p = w->buf + w->len;
    p[0] = (uint8_t)type;
    mk_bw_copy(p + 1, key, keylen);
    p[keylen + 1] = 0;
    w->len += keylen + 2;
    return true;
}

/* Opens a sub-document or array; returns where its length goes, for mk_bw_end. */
static inline size_t mk_bw_begin(mk_bw_t *w, bson_type_t type, const char *key, size_t keylen)
{
    if (!mk_bw_head(w, type, key, keylen, 5)) return 0;
    size_t at = w->len;
    w->len += 4;
    return at;
}

static inline void mk_bw_end(mk_bw_t *w, size_t at)
{
    if (!mk_bw_room(w, 1)) return;
    w->buf[w->len++] = 0;
    uint32_t n = BSON_UINT32_TO_LE((uint32_t)(w->len - at));
    memcpy(w->buf + at, &n, 4);
}

/* The type byte of the element written at `at` (0 when none). */
static inline uint8_t mk_bw_type_at(const mk_bw_t *w, size_t at)
{
    return !w->oom && at < w->len ? w->buf[at] : 0;
}

/* Appends a value as bson_append_value does (EOD: nothing). */
void mk_bw_value(mk_bw_t *w, const char *key, size_t keylen, const bson_value_t *v);
/* Appends the iterator's element as bson_append_iter does; key NULL: the iterator's own. */
void mk_bw_iter(mk_bw_t *w, const char *key, size_t keylen, const bson_iter_t *it);
/* Appends the fields of a document (bson_concat). */
void mk_bw_fields(mk_bw_t *w, const bson_t *doc);
void mk_bw_null(mk_bw_t *w, const char *key, size_t keylen);
void mk_bw_undefined(mk_bw_t *w, const char *key, size_t keylen);
void mk_bw_int32(mk_bw_t *w, const char *key, size_t keylen, int32_t v);
void mk_bw_date(mk_bw_t *w, const char *key, size_t keylen, int64_t ms);
void mk_bw_utf8(mk_bw_t *w, const char *key, size_t keylen, const char *s, size_t len);
/* A cast result: undefined (or EOD) as BSON undefined, for the caller to turn into null
 * (filters) or drop (updates); anything else as mk_bw_value. */
static inline void mk_bw_result(mk_bw_t *w, const char *key, size_t keylen, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_UNDEFINED || v->value_type == BSON_TYPE_EOD)
        mk_bw_undefined(w, key, keylen);
    else
        mk_bw_value(w, key, keylen, v);
}
/* Turns the element written at `at` into `{ inner: <its value> }` under the same key. */
void mk_bw_wrap(mk_bw_t *w, size_t at, const char *inner);
/* The key of array index i ("0", "1", ...): points into buf (16 bytes) or a static table. */
size_t mk_bw_index_key(uint32_t i, char buf[16], const char **key);

/* ---- errors shared by the casting code ---- */

/* A CastError with Mongoose's message:
 *   Cast to <kind> failed for value "<inspect(v)>" (type <T>) at path "<path>"
 * then ` for model "<model>"` when model is set, else ` because of "<reason>"` when reason is
 * set. Returns MK_ERR. */
int mk_cast_error(mk_error_t *err, const char *kind, const bson_value_t *v, const char *path,
                  const char *model, const char *reason);

/* JS truthiness of a BSON value (undefined, null, false, 0, NaN, '' are falsy). */
bool mk_js_truthy(const bson_value_t *v);

/* A new BSON_TYPE_UNDEFINED / BSON_TYPE_NULL value. */
void mk_value_set_undefined(bson_value_t *v);
void mk_value_set_null(bson_value_t *v);
/* Moves a finished bson_t into *out as a document or array value (the bson_t is destroyed). */
void mk_value_take_bson(bson_t *b, bool array, bson_value_t *out);

#endif
