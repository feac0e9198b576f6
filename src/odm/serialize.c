/* Document#toObject / toJSON (see serialize.h for the rules, checked against Mongoose 8.24). */
#include "odm/serialize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bson/path.h"
#include "bson/tree.h"
#include "bson/value.h"
#include "odm/schema_fns.h"
#include "odm/validate.h"

/* A JS option value as Mongoose tests it: unset (null / undefined / absent), strictly false,
 * truthy, or falsy without being false (0, '', NaN). `x === false`, `x !== false`, `x ?? y`
 * and `if (x)` all need telling these apart. */
enum { OPT_UNSET = -1, OPT_FALSE = 0, OPT_TRUE = 1, OPT_FALSY = 2 };

/* Sub-documents nest at most this deep (BSON documents from the engine stop at 100). */
#define MAX_DEPTH 200

/* Mongoose's `options` object as one level hands it to the next: per-call values first, then
 * the schema options of the levels above, top first. */
typedef struct merged {
    int getters, virtuals, version_key, flatten_maps, aliases;
} merged_t;

/* One document level: the document itself, a single nested sub-document, or one element of a
 * document array, with its schema and its resolved options. */
typedef struct level {
    const mk_schema_t *schema;
    merged_t merged;
    bool is_subdoc;
    bool minimize, getters, virtuals, drop_version_key, flatten_maps, aliases;
    mk_transform_fn transform;
    void *transform_ud;
    size_t base; /* length of this level's own path in the path buffer (0 at the top) */
} level_t;

typedef struct pathbuf {
    char *s;
    size_t len, cap;
} pathbuf_t;

typedef struct ser_ctx {
    mk_doc_t *doc;
    bool json;
    const mk_to_object_opts_t *called;
    pathbuf_t path; /* full path of the value being built: "comments.1.text" */
    int depth;
    mk_error_t *err;
} ser_ctx_t;

/* Flags of one value being cloned. */
enum {
    F_ARRAY_CHILD = 1, /* an array element: never left out, even when empty */
    F_RAW = 2,         /* a value of a map that is not flattened: copied as stored */
};

/* ---- the sub-document callbacks run for (mk_ser_current_subdoc) ---- */

/* Pushed by each sub-document level while it is built; its path string and BSON view are made
 * on the first question only. */
typedef struct current {
    const ser_ctx_t *c;
    size_t base;
    const uint8_t *data;
    uint32_t len;
    char *path;
    bool have_view;
    bson_t view;
} current_t;

static _Thread_local current_t *current;

bool mk_ser_current_subdoc(const char **path, const bson_t **stored)
{
    current_t *cur = current;
    if (path) *path = NULL;
    if (stored) *stored = NULL;
    if (!cur) return false;
    if (!cur->path) {
        const char *full = cur->c->path.s ? cur->c->path.s : "";
        if (!(cur->path = strndup(full, cur->base))) return false;
    }
    if (!cur->have_view) {
        if (!bson_init_static(&cur->view, cur->data, cur->len)) return false;
        cur->have_view = true;
    }
    if (path) *path = cur->path;
    if (stored) *stored = &cur->view;
    return true;
}

/* ---- small helpers ---- */

static int called_opt(int v)
{
    return v < 0 ? OPT_UNSET : v == 0 ? OPT_FALSE : OPT_TRUE;
}

static int first_set(int a, int b)
{
    return a != OPT_UNSET ? a : b;
}

/* JS truthiness of a BSON value (documents, arrays, dates, ObjectIds... are objects). */
static bool js_truthy(const bson_value_t *v)
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
        return v->value.v_double != 0 && !isnan(v->value.v_double);
    case BSON_TYPE_UTF8:
        return v->value.v_utf8.len > 0;
    default:
        return true;
    }
}

/* An option of a schema option document (NULL: none) as one of the OPT_* values; *type (may
 * be NULL) receives its BSON type (EOD when absent). */
static int opt_of(const bson_t *doc, const char *name, bson_type_t *type)
{
    bson_iter_t it;
    if (type) *type = BSON_TYPE_EOD;
    if (!doc || !bson_iter_init_find(&it, doc, name)) return OPT_UNSET;
    const bson_value_t *v = bson_iter_value(&it);
    if (type) *type = v->value_type;
    if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) return OPT_UNSET;
    if (v->value_type == BSON_TYPE_BOOL) return v->value.v_bool ? OPT_TRUE : OPT_FALSE;
    return js_truthy(v) ? OPT_TRUE : OPT_FALSY;
}

/* A path's `required` makes its empty sub-document stay: a truthy option or a C function. */
static bool path_required(const mk_schema_t *s, const mk_schema_path_t *p)
{
    if (!p) return false;
    if (opt_of(mk_schema_path_options(p), "required", NULL) == OPT_TRUE) return true;
    return s && mk_schema_path_has_fn(s, mk_schema_path_name(p), MK_FN_REQUIRED);
}

static int corrupt(mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_INVALID_BSON, "toObject: corrupt BSON in the document");
}

/* bson_iter_next stopped: at the end (true) or at corrupt bytes (false). */
static bool iter_finished_cleanly(const bson_iter_t *it)
{
    return it->err_off == 0;
}

/* ---- the path buffer ---- */

static int pb_push(pathbuf_t *pb, const char *key, size_t n, size_t *saved, mk_error_t *err)
{
    *saved = pb->len;
    size_t need = pb->len + (pb->len ? 1 : 0) + n + 1;
    if (need > pb->cap) {
        size_t cap = pb->cap ? pb->cap : 64;
        while (cap < need) cap *= 2;
        char *grown = realloc(pb->s, cap);
        if (!grown) return mk_error_nomem(err);
        pb->s = grown;
        pb->cap = cap;
    }
    if (pb->len) pb->s[pb->len++] = '.';
    memcpy(pb->s + pb->len, key, n);
    pb->len += n;
    pb->s[pb->len] = '\0';
    return MK_OK;
}

static void pb_pop(pathbuf_t *pb, size_t saved)
{
    pb->len = saved;
    if (pb->s) pb->s[saved] = '\0';
}

/* The path of the value being built, relative to the level's schema. */
static const char *rel_path(const ser_ctx_t *c, const level_t *L)
{
    if (!c->path.s) return "";
    return c->path.s + L->base + (L->base ? 1 : 0);
}

/* The path of the level's schema named exactly `rel` (len bytes): inside one level, stored
 * fields only ever meet the schema's own names ("profile.bio"), so no descent is needed. */
static const mk_schema_path_t *level_path(const mk_schema_t *s, const char *rel, size_t len)
{
    size_t n = mk_schema_path_count(s);
    for (size_t i = 0; i < n; i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        const char *name = mk_schema_path_name(p);
        if (name[0] == rel[0] && strncmp(name, rel, len) == 0 && name[len] == '\0') return p;
    }
    return NULL;
}

/* ---- options of one level ---- */

/* Resolves the options of a level as Mongoose's $toObject does for `s`; `parent` is NULL for
 * the top document, `holder` the path holding the sub-document (its `minimize` option). */
static int level_init(const mk_schema_t *s, bool json, const mk_to_object_opts_t *called,
                      const level_t *parent, const mk_schema_path_t *holder, level_t *L,
                      mk_error_t *err)
{
    const mk_schema_options_t *so = mk_schema_options(s);
    const bson_t *d = json ? so->to_json : so->to_object;
    const char *which = json ? "toJSON" : "toObject";
    bson_type_t virtuals_type;
    int d_getters = opt_of(d, "getters", NULL);
    int d_virtuals = opt_of(d, "virtuals", &virtuals_type);
    int d_version_key = opt_of(d, "versionKey", NULL);
    int d_minimize = opt_of(d, "minimize", NULL);
    int d_flatten = opt_of(d, "flattenMaps", NULL);
    int d_aliases = opt_of(d, "aliases", NULL);
    int d_transform = opt_of(d, "transform", NULL);
    int rc = MK_OK;
    if (virtuals_type == BSON_TYPE_ARRAY || virtuals_type == BSON_TYPE_DOCUMENT)
        rc = mk_error_setc(err, MK_CODE_BAD_VALUE,
                           "schema option %s.virtuals: a list of virtuals or pathsToSkip is not "
                           "supported (use true or false)",
                           which);

    merged_t in;
    if (parent) {
        in = parent->merged;
    } else {
        in.getters = called_opt(called->getters);
        in.virtuals = called_opt(called->virtuals);
        in.version_key = called_opt(called->version_key);
        in.flatten_maps = called_opt(called->flatten_maps);
        in.aliases = OPT_UNSET;
    }
    memset(L, 0, sizeof *L);
    L->schema = s;
    L->is_subdoc = parent != NULL;
    L->merged.getters = first_set(in.getters, d_getters);
    L->merged.virtuals = first_set(in.virtuals, d_virtuals);
    L->merged.version_key = first_set(in.version_key, d_version_key);
    L->merged.flatten_maps = first_set(in.flatten_maps, d_flatten);
    L->merged.aliases = first_set(in.aliases, d_aliases);

    L->getters = L->merged.getters == OPT_TRUE;
    /* virtuals: the call, this schema's option, then a sub-document parent's options */
    int virtuals = first_set(called_opt(called->virtuals), d_virtuals);
    if (virtuals == OPT_UNSET && parent && parent->is_subdoc) virtuals = parent->merged.virtuals;
    L->virtuals = virtuals == OPT_TRUE || (L->getters && virtuals != OPT_FALSE);

    int minimize = called_opt(called->minimize);
    if (minimize == OPT_UNSET && holder)
        minimize = opt_of(mk_schema_path_options(holder), "minimize", NULL);
    minimize = first_set(minimize, d_minimize);
    L->minimize = minimize == OPT_UNSET ? so->minimize : minimize == OPT_TRUE;

    L->drop_version_key = L->merged.version_key == OPT_FALSE && so->version_key != NULL;
    /* a map's toJSON flattens unless told false; toObject only when told true */
    L->flatten_maps =
        json ? L->merged.flatten_maps != OPT_FALSE : L->merged.flatten_maps == OPT_TRUE;
    L->aliases = L->merged.aliases != OPT_FALSE;
    if (called->transform != 0 && d_transform != OPT_FALSE &&
        !mk_schema_transform_get(s, json ? 1 : 0, &L->transform, &L->transform_ud)) {
        L->transform = NULL;
        L->transform_ud = NULL;
    }
    return rc;
}

void mk_ser_resolve(const mk_schema_t *s, bool json, const mk_to_object_opts_t *in,
                    mk_ser_opts_t *resolved)
{
    const mk_to_object_opts_t none = MK_TO_OBJECT_DEFAULTS;
    level_t L;
    memset(resolved, 0, sizeof *resolved);
    resolved->called = in ? *in : none;
    level_init(s, json, &resolved->called, NULL, NULL, &L, NULL);
    resolved->getters = L.getters;
    resolved->virtuals = L.virtuals;
    resolved->version_key = !L.drop_version_key;
    resolved->minimize = L.minimize;
    resolved->transform = L.transform != NULL;
    resolved->flatten_maps = L.flatten_maps;
    resolved->json = json;
}

/* ---- step 1: the stored values, copied with minimize ---- */

static int clone_value(ser_ctx_t *c, level_t *L, const mk_schema_path_t *p, bson_iter_t *it,
                       const char *key, size_t keylen, bson_t *dst, unsigned flags);
static int ser_level(ser_ctx_t *c, level_t *L, const uint8_t *data, uint32_t len, bson_t *dst);

static bool append_iter(bson_t *dst, const char *key, size_t keylen, const bson_iter_t *it)
{
    return bson_append_iter(dst, key, (int)keylen, it);
}

static int nomem_or(bool ok, mk_error_t *err)
{
    return ok ? MK_OK : mk_error_nomem(err);
}

static int enter(ser_ctx_t *c)
{
    if (++c->depth > MAX_DEPTH)
        return mk_error_setc(c->err, MK_CODE_OVERFLOW,
                             "toObject: the document nests deeper than %d levels", MAX_DEPTH);
    return MK_OK;
}

/* The fields of a document (`tracked`: its paths are paths of the level's schema, as at the
 * level's top and inside nested objects) cloned into `out`. */
static int clone_fields(ser_ctx_t *c, level_t *L, const uint8_t *data, uint32_t len, bool tracked,
                        bool top, bson_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len)) return corrupt(c->err);
    const char *vk = top && L->drop_version_key ? mk_schema_options(L->schema)->version_key : NULL;
    size_t vklen = vk ? strlen(vk) : 0;
    while (bson_iter_next(&it)) {
        uint32_t klen = bson_iter_key_len(&it);
        const char *key = bson_iter_key(&it);
        if (vk && vklen == klen && memcmp(vk, key, klen) == 0) continue;
        /* only documents and arrays need their schema path */
        bson_type_t type = bson_iter_type(&it);
        if (type != BSON_TYPE_DOCUMENT && type != BSON_TYPE_ARRAY) {
            if (type == BSON_TYPE_UNDEFINED) continue; /* an undefined field is not cloned */
            if (!append_iter(out, key, klen, &it)) return mk_error_nomem(c->err);
            continue;
        }
        size_t saved;
        int rc = pb_push(&c->path, key, klen, &saved, c->err);
        if (rc != MK_OK) return rc;
        const char *rel = rel_path(c, L);
        const mk_schema_path_t *p =
            tracked ? level_path(L->schema, rel, c->path.len - (size_t)(rel - c->path.s)) : NULL;
        rc = clone_value(c, L, p, &it, key, klen, out, 0);
        pb_pop(&c->path, saved);
        if (rc != MK_OK) return rc;
    }
    return iter_finished_cleanly(&it) ? MK_OK : corrupt(c->err);
}

/* A plain object (nested path, Mixed, unknown field, array element). */
static int clone_object(ser_ctx_t *c, level_t *L, const mk_schema_path_t *p, bson_iter_t *it,
                        const char *key, size_t keylen, bson_t *dst, unsigned flags)
{
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(it, &len, &data);
    bool tracked = p && mk_schema_path_kind(p) == MK_TYPE_NESTED;
    bson_t obj;
    bson_init(&obj);
    int rc = enter(c);
    if (rc == MK_OK) rc = clone_fields(c, L, data, len, tracked, false, &obj);
    c->depth--;
    if (rc == MK_OK && !(L->minimize && bson_empty(&obj) && !(flags & F_ARRAY_CHILD)))
        rc = nomem_or(bson_append_document(dst, key, (int)keylen, &obj), c->err);
    bson_destroy(&obj);
    return rc;
}

/* A single nested sub-document, a document-array element or a map's sub-document value,
 * serialized by its own schema. `holder` is the path whose type it is. */
static int clone_subdoc(ser_ctx_t *c, level_t *L, const mk_schema_path_t *holder, bson_iter_t *it,
                        const char *key, size_t keylen, bson_t *dst, unsigned flags)
{
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(it, &len, &data);
    const mk_schema_t *child = mk_schema_path_schema(holder);
    level_t sub;
    int rc = level_init(child, c->json, c->called, L, holder, &sub, c->err);
    if (rc != MK_OK) return rc;
    sub.base = c->path.len;
    bson_t obj;
    bson_init(&obj);
    rc = enter(c);
    if (rc == MK_OK) rc = ser_level(c, &sub, data, len, &obj);
    c->depth--;
    if (rc == MK_OK) {
        /* Mongoose drops an empty single nested sub-document, unless it is required, an array
         * element, or in a map that is not flattened */
        int minimize = called_opt(c->called->minimize);
        if (minimize == OPT_UNSET)
            minimize = opt_of(mk_schema_path_options(holder), "minimize", NULL);
        bool drop = bson_empty(&obj) && !(flags & (F_ARRAY_CHILD | F_RAW)) &&
                    (minimize == OPT_UNSET ? L->minimize : minimize == OPT_TRUE) &&
                    !path_required(L->schema, holder);
        if (!drop) rc = nomem_or(bson_append_document(dst, key, (int)keylen, &obj), c->err);
    }
    bson_destroy(&obj);
    return rc;
}

/* An array: elements are never left out; objects among them are still minimized inside. */
static int clone_array(ser_ctx_t *c, level_t *L, const mk_schema_path_t *p, bson_iter_t *it,
                       const char *key, size_t keylen, bson_t *dst, unsigned flags)
{
    mk_schematype_t kind = p ? mk_schema_path_kind(p) : 0;
    const mk_schema_path_t *elem = kind == MK_TYPE_ARRAY ? mk_schema_path_element(p) : NULL;
    bson_iter_t e;
    if (!bson_iter_recurse(it, &e)) return corrupt(c->err);
    bson_t arr;
    bson_init(&arr);
    int rc = enter(c);
    for (uint32_t i = 0; rc == MK_OK && bson_iter_next(&e); i++) {
        char buf[16];
        const char *k;
        size_t kl = bson_uint32_to_string(i, &k, buf, sizeof buf), saved;
        rc = pb_push(&c->path, k, kl, &saved, c->err);
        if (rc != MK_OK) break;
        if (kind == MK_TYPE_DOCARRAY && BSON_ITER_HOLDS_DOCUMENT(&e) && mk_schema_path_schema(p))
            rc = clone_subdoc(c, L, p, &e, k, kl, &arr, F_ARRAY_CHILD);
        else
            rc = clone_value(c, L, elem, &e, k, kl, &arr, F_ARRAY_CHILD | (flags & F_RAW));
        pb_pop(&c->path, saved);
    }
    c->depth--;
    if (rc == MK_OK && !iter_finished_cleanly(&e)) rc = corrupt(c->err);
    if (rc == MK_OK) rc = nomem_or(bson_append_array(dst, key, (int)keylen, &arr), c->err);
    bson_destroy(&arr);
    return rc;
}

/* Runs the getters registered for `name` in `s` over `in` (NULL: undefined). *out receives
 * the result (owned; BSON_TYPE_UNDEFINED for undefined). ctx->path is the current path. */
static int run_getters(ser_ctx_t *c, const mk_schema_t *s, const char *name, const bson_value_t *in,
                       bson_value_t *out)
{
    bson_value_t held = {.value_type = BSON_TYPE_UNDEFINED};
    const bson_value_t *cur = in;
    bool owned = false;
    size_t iter = 0;
    mk_fn_ctx_t ctx = {.doc = c->doc, .path = c->path.s ? c->path.s : ""};
    for (const mk_path_fn_t *f; (f = mk_schema_path_fn_next(s, name, MK_FN_GETTER, &iter));) {
        bson_value_t next = {.value_type = BSON_TYPE_UNDEFINED};
        const bson_value_t *arg = cur && cur->value_type != BSON_TYPE_UNDEFINED ? cur : NULL;
        int rc = f->fn.getter(&ctx, arg, &next, f->ud, c->err);
        if (owned) bson_value_destroy(&held);
        if (rc != MK_OK) {
            bson_value_destroy(&next);
            return rc;
        }
        if (next.value_type == BSON_TYPE_EOD) next.value_type = BSON_TYPE_UNDEFINED;
        held = next;
        owned = true;
        cur = &held;
    }
    if (owned) {
        *out = held;
    } else if (cur) {
        bson_value_copy(cur, out);
    } else {
        out->value_type = BSON_TYPE_UNDEFINED;
    }
    return MK_OK;
}

/* A value as an iterator (over a one-field document held in *tmp). */
static int value_iter(ser_ctx_t *c, const bson_value_t *v, bson_t *tmp, bson_iter_t *it)
{
    if (!bson_append_value(tmp, "v", 1, v) || !bson_iter_init_find(it, tmp, "v"))
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE,
                             "a getter returned a value BSON cannot hold");
    return MK_OK;
}

/* A map: always an object. Flattened (Mongoose's map.toJSON / toObject({ flattenMaps })),
 * every value goes through the value getters and is cloned with minimize; otherwise values
 * stay as stored, sub-documents aside. */
static int clone_map(ser_ctx_t *c, level_t *L, const mk_schema_path_t *p, bson_iter_t *it,
                     const char *key, size_t keylen, bson_t *dst)
{
    const mk_schema_path_t *elem = mk_schema_path_element(p);
    const char *elem_name = elem ? mk_schema_path_name(elem) : NULL;
    bool getters =
        L->flatten_maps && elem_name && mk_schema_path_has_fn(L->schema, elem_name, MK_FN_GETTER);
    bson_iter_t e;
    if (!bson_iter_recurse(it, &e)) return corrupt(c->err);
    bson_t map;
    bson_init(&map);
    int rc = enter(c);
    while (rc == MK_OK && bson_iter_next(&e)) {
        uint32_t kl = bson_iter_key_len(&e);
        const char *k = bson_iter_key(&e);
        size_t saved;
        rc = pb_push(&c->path, k, kl, &saved, c->err);
        if (rc != MK_OK) break;
        if (!L->flatten_maps) {
            rc = clone_value(c, L, elem, &e, k, kl, &map, F_RAW);
        } else if (!getters) {
            rc = clone_value(c, L, elem, &e, k, kl, &map, 0);
        } else {
            bson_value_t got;
            rc = run_getters(c, L->schema, elem_name, bson_iter_value(&e), &got);
            if (rc == MK_OK) {
                if (got.value_type != BSON_TYPE_UNDEFINED) {
                    bson_t tmp;
                    bson_iter_t gi;
                    bson_init(&tmp);
                    rc = value_iter(c, &got, &tmp, &gi);
                    if (rc == MK_OK) rc = clone_value(c, L, elem, &gi, k, kl, &map, 0);
                    bson_destroy(&tmp);
                }
                bson_value_destroy(&got);
            }
        }
        pb_pop(&c->path, saved);
    }
    c->depth--;
    if (rc == MK_OK && !iter_finished_cleanly(&e)) rc = corrupt(c->err);
    if (rc == MK_OK) rc = nomem_or(bson_append_document(dst, key, (int)keylen, &map), c->err);
    bson_destroy(&map);
    return rc;
}

static int clone_value(ser_ctx_t *c, level_t *L, const mk_schema_path_t *p, bson_iter_t *it,
                       const char *key, size_t keylen, bson_t *dst, unsigned flags)
{
    mk_schematype_t kind = p ? mk_schema_path_kind(p) : 0;
    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOCUMENT:
        if ((kind == MK_TYPE_SUBDOC) && mk_schema_path_schema(p))
            return clone_subdoc(c, L, p, it, key, keylen, dst, flags);
        if (kind == MK_TYPE_MAP && !(flags & F_RAW))
            return clone_map(c, L, p, it, key, keylen, dst);
        if (flags & F_RAW) break;
        return clone_object(c, L, p, it, key, keylen, dst, flags);
    case BSON_TYPE_ARRAY:
        if ((flags & F_RAW) && kind != MK_TYPE_DOCARRAY) break;
        return clone_array(c, L, p, it, key, keylen, dst, flags);
    case BSON_TYPE_UNDEFINED:
        /* an undefined field is not cloned (an undefined array element stays) */
        if (!(flags & (F_ARRAY_CHILD | F_RAW))) return MK_OK;
        break;
    default:
        break;
    }
    return nomem_or(append_iter(dst, key, keylen, it), c->err);
}

/* ---- the common case: nothing to change ---- */

/* Whether step 1 would give back the stored bytes: nothing to leave out, no sub-document whose
 * schema has callbacks, no map, arrays numbered as BSON wants. The level is then copied
 * whole, which is what toObject() with the defaults mostly is. *same is cleared as soon as
 * something would change. */
static int scan_value(ser_ctx_t *c, level_t *L, const mk_schema_path_t *p, bson_iter_t *it,
                      unsigned flags, bool *same);

static int scan_fields(ser_ctx_t *c, level_t *L, const uint8_t *data, uint32_t len, bool tracked,
                       bool top, bool *same)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len)) return corrupt(c->err);
    const char *vk = top && L->drop_version_key ? mk_schema_options(L->schema)->version_key : NULL;
    size_t vklen = vk ? strlen(vk) : 0;
    while (*same && bson_iter_next(&it)) {
        uint32_t klen = bson_iter_key_len(&it);
        const char *key = bson_iter_key(&it);
        bson_type_t type = bson_iter_type(&it);
        if ((vk && vklen == klen && memcmp(vk, key, klen) == 0) || type == BSON_TYPE_UNDEFINED) {
            *same = false;
        } else if (type == BSON_TYPE_DOCUMENT || type == BSON_TYPE_ARRAY) {
            size_t saved;
            int rc = pb_push(&c->path, key, klen, &saved, c->err);
            if (rc != MK_OK) return rc;
            const char *rel = rel_path(c, L);
            const mk_schema_path_t *p =
                tracked ? level_path(L->schema, rel, c->path.len - (size_t)(rel - c->path.s))
                        : NULL;
            rc = scan_value(c, L, p, &it, 0, same);
            pb_pop(&c->path, saved);
            if (rc != MK_OK) return rc;
        }
    }
    return *same && !iter_finished_cleanly(&it) ? corrupt(c->err) : MK_OK;
}

static int scan_subdoc(ser_ctx_t *c, level_t *L, const mk_schema_path_t *holder, bson_iter_t *it,
                       unsigned flags, bool *same)
{
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(it, &len, &data);
    level_t sub;
    int rc = level_init(mk_schema_path_schema(holder), c->json, c->called, L, holder, &sub, c->err);
    if (rc != MK_OK) return rc;
    sub.base = c->path.len;
    /* callbacks, or an empty one that the removal rules may drop: the slow way */
    if (sub.getters || sub.virtuals || sub.transform || (len <= 5 && !(flags & F_ARRAY_CHILD))) {
        *same = false;
        return MK_OK;
    }
    return scan_fields(c, &sub, data, len, true, true, same);
}

static int scan_value(ser_ctx_t *c, level_t *L, const mk_schema_path_t *p, bson_iter_t *it,
                      unsigned flags, bool *same)
{
    mk_schematype_t kind = p ? mk_schema_path_kind(p) : 0;
    uint32_t len;
    const uint8_t *data;
    int rc = enter(c);
    if (rc != MK_OK) {
        c->depth--;
        return rc;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        if (kind == MK_TYPE_SUBDOC && mk_schema_path_schema(p)) {
            rc = scan_subdoc(c, L, p, it, flags, same);
        } else if (kind == MK_TYPE_MAP) {
            *same = false;
        } else {
            bson_iter_document(it, &len, &data);
            if (len <= 5) /* {} */
                *same = !L->minimize || (flags & F_ARRAY_CHILD);
            else
                rc = scan_fields(c, L, data, len, kind == MK_TYPE_NESTED, false, same);
        }
    } else if (BSON_ITER_HOLDS_ARRAY(it)) {
        const mk_schema_path_t *elem = kind == MK_TYPE_ARRAY ? mk_schema_path_element(p) : NULL;
        bson_iter_t e;
        if (!bson_iter_recurse(it, &e)) rc = corrupt(c->err);
        for (uint32_t i = 0; rc == MK_OK && *same && bson_iter_next(&e); i++) {
            char buf[16];
            const char *k;
            size_t kl = bson_uint32_to_string(i, &k, buf, sizeof buf), saved;
            if (bson_iter_key_len(&e) != kl || memcmp(bson_iter_key(&e), k, kl) != 0) {
                *same = false; /* renumbered on the way out */
                break;
            }
            if (!BSON_ITER_HOLDS_DOCUMENT(&e) && !BSON_ITER_HOLDS_ARRAY(&e)) continue;
            rc = pb_push(&c->path, k, kl, &saved, c->err);
            if (rc != MK_OK) break;
            if (kind == MK_TYPE_DOCARRAY && BSON_ITER_HOLDS_DOCUMENT(&e) &&
                mk_schema_path_schema(p))
                rc = scan_subdoc(c, L, p, &e, F_ARRAY_CHILD, same);
            else
                rc = scan_value(c, L, elem, &e, F_ARRAY_CHILD, same);
            pb_pop(&c->path, saved);
        }
        if (rc == MK_OK && *same && !iter_finished_cleanly(&e)) rc = corrupt(c->err);
    }
    c->depth--;
    return rc;
}

/* ---- steps 2 to 4, on a tree of the object built so far ---- */

static bool tnode_is_doc(const mk_tnode_t *n)
{
    return n->type == BSON_TYPE_DOCUMENT;
}

static int tnode_falsy(mk_tree_t *t, mk_tnode_t *n, bool *falsy, mk_error_t *err)
{
    bson_value_t v;
    int rc = mk_tnode_value(t, n, &v, err);
    if (rc == MK_OK) *falsy = !js_truthy(&v);
    return rc;
}

/* Sets `key` of document node `parent` to v (replaced in place, or appended). */
static int tree_put(mk_tree_t *t, mk_tnode_t *parent, const char *key, size_t keylen,
                    const bson_value_t *v, mk_error_t *err)
{
    mk_tnode_t *n;
    int rc = mk_tnode_find(t, parent, key, keylen, &n, NULL, err);
    if (rc == MK_OK && !n) rc = mk_tnode_insert(t, parent, UINT32_MAX, key, keylen, &n, err);
    if (rc == MK_OK) rc = mk_tnode_set_value(t, n, v, err);
    return rc;
}

/* The object child `key` of `parent`, made {} when absent or falsy (JS's `o[k] || (o[k] = {})`).
 * *child is NULL when it holds something truthy that is not a document. */
static int tree_object_child(mk_tree_t *t, mk_tnode_t *parent, const char *key, size_t keylen,
                             mk_tnode_t **child, mk_error_t *err)
{
    mk_tnode_t *n;
    bool falsy = false;
    int rc = mk_tnode_find(t, parent, key, keylen, &n, NULL, err);
    if (rc == MK_OK && !n) {
        rc = mk_tnode_insert(t, parent, UINT32_MAX, key, keylen, &n, err);
        if (rc == MK_OK) mk_tnode_set_empty(n, BSON_TYPE_DOCUMENT);
    } else if (rc == MK_OK && !tnode_is_doc(n)) {
        rc = tnode_falsy(t, n, &falsy, err);
        if (rc == MK_OK && falsy)
            mk_tnode_set_empty(n, BSON_TYPE_DOCUMENT);
        else
            n = NULL;
    }
    *child = rc == MK_OK ? n : NULL;
    return rc;
}

/* The stored field `key` of a raw document; false when absent (data NULL: an empty one). */
static bool stored_find(const uint8_t *data, uint32_t len, const char *key, size_t keylen,
                        bson_iter_t *out)
{
    return data && bson_iter_init_from_data(out, data, len) &&
           bson_iter_find_w_len(out, key, (int)keylen);
}

/* Applies the getters of one schema path (and of its array elements) to the tree, walking
 * the stored document alongside as Mongoose's applyGetters does. */
static int getters_for_path(ser_ctx_t *c, level_t *L, mk_tree_t *t, const uint8_t *data,
                            uint32_t len, const mk_schema_path_t *p, bool own, const char *elem)
{
    const char *name = mk_schema_path_name(p);
    mk_tnode_t *branch = mk_tree_root(t);
    const uint8_t *cur = data;
    uint32_t curlen = len;
    const char *part = name;
    int rc = MK_OK;
    for (const char *dot; (dot = strchr(part, '.')); part = dot + 1) {
        size_t n = (size_t)(dot - part);
        bson_iter_t sit;
        bool found = stored_find(cur, curlen, part, n, &sit);
        /* a nested object missing from the stored document is {} in Mongoose's _doc; null
         * and other values stop the walk */
        if (found && !BSON_ITER_HOLDS_DOCUMENT(&sit)) return MK_OK;
        rc = tree_object_child(t, branch, part, n, &branch, c->err);
        if (rc != MK_OK || !branch) return rc;
        if (found)
            bson_iter_document(&sit, &curlen, &cur);
        else
            cur = NULL;
    }
    size_t last = strlen(part);
    mk_tnode_t *node;
    uint32_t pos = 0;
    rc = mk_tnode_find(t, branch, part, last, &node, &pos, c->err);
    if (rc != MK_OK) return rc;

    size_t saved;
    rc = pb_push(&c->path, name, strlen(name), &saved, c->err);
    if (rc != MK_OK) return rc;
    bson_value_t in, got = {.value_type = BSON_TYPE_UNDEFINED};
    if (node) rc = mk_tnode_value(t, node, &in, c->err);
    if (rc == MK_OK && own) rc = run_getters(c, L->schema, name, node ? &in : NULL, &got);
    if (rc == MK_OK && own) {
        if (got.value_type == BSON_TYPE_UNDEFINED) {
            if (node) mk_tnode_remove(branch, pos);
            node = NULL;
        } else {
            rc = tree_put(t, branch, part, last, &got, c->err);
            if (rc == MK_OK) rc = mk_tnode_find(t, branch, part, last, &node, NULL, c->err);
        }
    }
    bson_value_destroy(&got);
    /* element getters (`tags.$`), one element at a time */
    if (rc == MK_OK && elem && node && node->type == BSON_TYPE_ARRAY) {
        rc = mk_tnode_expand(t, node, c->err);
        for (uint32_t i = 0; rc == MK_OK && i < node->nkids; i++) {
            char buf[16];
            const char *k;
            size_t kl = bson_uint32_to_string(i, &k, buf, sizeof buf), esaved;
            bson_value_t ev, eout;
            rc = pb_push(&c->path, k, kl, &esaved, c->err);
            if (rc == MK_OK) rc = mk_tnode_value(t, node->kids[i], &ev, c->err);
            if (rc == MK_OK) rc = run_getters(c, L->schema, elem, &ev, &eout);
            if (rc == MK_OK) {
                if (eout.value_type == BSON_TYPE_UNDEFINED)
                    mk_tnode_set_null(node->kids[i]); /* undefined in an array prints as null */
                else
                    rc = mk_tnode_set_value(t, node->kids[i], &eout, c->err);
                bson_value_destroy(&eout);
            }
            pb_pop(&c->path, esaved);
        }
    }
    pb_pop(&c->path, saved);
    return rc;
}

static int apply_getters(ser_ctx_t *c, level_t *L, mk_tree_t *t, const uint8_t *data, uint32_t len)
{
    const mk_schema_t *s = L->schema;
    for (size_t i = mk_schema_path_count(s); i-- > 0;) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        if (mk_schema_path_kind(p) == MK_TYPE_NESTED) continue;
        bool own = mk_schema_path_has_fn(s, mk_schema_path_name(p), MK_FN_GETTER);
        const mk_schema_path_t *ep =
            mk_schema_path_kind(p) == MK_TYPE_ARRAY ? mk_schema_path_element(p) : NULL;
        const char *elem = ep && mk_schema_path_has_fn(s, mk_schema_path_name(ep), MK_FN_GETTER)
                               ? mk_schema_path_name(ep)
                               : NULL;
        if (!own && !elem) continue;
        size_t saved = c->path.len;
        int rc = getters_for_path(c, L, t, data, len, p, own, elem);
        pb_pop(&c->path, saved);
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

/* Mongoose's minimize(): empty objects (and undefined values) removed, recursively, arrays
 * left alone. *empty tells whether n ended up empty. */
static int minimize_node(mk_tree_t *t, mk_tnode_t *n, bool *empty, mk_error_t *err)
{
    int rc = mk_tnode_expand(t, n, err);
    for (uint32_t i = n->nkids; rc == MK_OK && i-- > 0;) {
        mk_tnode_t *k = n->kids[i];
        bool gone = k->type == BSON_TYPE_UNDEFINED;
        if (k->type == BSON_TYPE_DOCUMENT) rc = minimize_node(t, k, &gone, err);
        if (rc == MK_OK && gone) mk_tnode_remove(n, i);
    }
    *empty = n->nkids == 0;
    return rc;
}

/* JS's TypeError for `primitive.prop = v` in strict mode, when `held` is a string, number
 * or boolean; MK_OK for other values, which are objects in JS (arrays, dates, ObjectIds...):
 * the property is set on them and no output shows it. */
static int property_on_value(ser_ctx_t *c, mk_tree_t *t, mk_tnode_t *held, const char *prop,
                             size_t proplen)
{
    bson_value_t v;
    int rc = mk_tnode_value(t, held, &v, c->err);
    if (rc != MK_OK) return rc;
    const char *kind = v.value_type == BSON_TYPE_UTF8   ? "string"
                       : v.value_type == BSON_TYPE_BOOL ? "boolean"
                       : mk_type_is_number(v.value_type) && v.value_type != BSON_TYPE_DECIMAL128
                           ? "number"
                           : NULL;
    if (!kind) return MK_OK;
    char *shown = mk_validate_js_string(&v);
    if (!shown) return mk_error_nomem(c->err);
    rc = mk_error_set(c->err, 0, "TypeError", "Cannot create property '%.*s' on %s '%s'",
                      (int)proplen, prop, kind, shown);
    free(shown);
    return rc;
}

/* Puts a virtual's value at its (possibly dotted) name: parents are created as JS's
 * `cur[p] = cur[p] || {}` does. Under a value that is not a plain object nothing is written
 * (see property_on_value). */
static int put_virtual(ser_ctx_t *c, mk_tree_t *t, const char *name, const bson_value_t *v)
{
    mk_tnode_t *branch = mk_tree_root(t);
    const char *part = name;
    for (const char *dot; (dot = strchr(part, '.')); part = dot + 1) {
        size_t n = (size_t)(dot - part);
        mk_tnode_t *held;
        int rc = mk_tnode_find(t, branch, part, n, &held, NULL, c->err);
        if (rc == MK_OK) rc = tree_object_child(t, branch, part, n, &branch, c->err);
        if (rc != MK_OK) return rc;
        if (!branch) {
            const char *next = dot + 1, *end = strchr(next, '.');
            return property_on_value(c, t, held, next, end ? (size_t)(end - next) : strlen(next));
        }
    }
    return tree_put(t, branch, part, strlen(part), v, c->err);
}

/* JS's String(_id) for the `id` virtual. */
static int id_string(const bson_value_t *id, bson_value_t *out, mk_error_t *err)
{
    char *s;
    if (id->value_type == BSON_TYPE_BINARY && id->value.v_binary.subtype == BSON_SUBTYPE_UUID &&
        id->value.v_binary.data_len == 16) {
        const uint8_t *b = id->value.v_binary.data;
        s = malloc(37);
        if (s) {
            char *o = s;
            for (int i = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
                o += sprintf(o, "%02x", b[i]);
            }
        }
    } else {
        s = mk_validate_js_string(id);
    }
    if (!s) return mk_error_nomem(err);
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.str = s;
    out->value.v_utf8.len = (uint32_t)strlen(s);
    return MK_OK;
}

static bool alias_named(const mk_schema_t *s, const char *name)
{
    for (size_t i = 0; i < mk_schema_path_count(s); i++) {
        bson_iter_t it, a;
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        if (!mk_schema_path_option(p, "alias", &it)) continue;
        if (BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), name) == 0) return true;
        if (BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &a))
            while (bson_iter_next(&a))
                if (BSON_ITER_HOLDS_UTF8(&a) && strcmp(bson_iter_utf8(&a, NULL), name) == 0)
                    return true;
    }
    return false;
}

/* The value an alias shows (doc.get(path)): sub-documents, document arrays and maps as they
 * were just serialized, other values as stored, through the path's getters. */
static int alias_value(ser_ctx_t *c, level_t *L, mk_tree_t *t, const uint8_t *data, uint32_t len,
                       const mk_schema_path_t *p, bson_value_t *out)
{
    const char *name = mk_schema_path_name(p);
    mk_schematype_t kind = mk_schema_path_kind(p);
    bson_value_t v;
    bson_t view;
    bson_iter_t it;
    const bson_value_t *in = NULL;
    int rc = MK_OK;
    if (kind == MK_TYPE_SUBDOC || kind == MK_TYPE_DOCARRAY || kind == MK_TYPE_MAP) {
        mk_tnode_t *n;
        rc = mk_tree_get(t, name, strlen(name), &n, c->err);
        if (rc == MK_OK && n) rc = mk_tnode_value(t, n, &v, c->err);
        if (rc == MK_OK && n) in = &v;
    } else {
        if (!bson_init_static(&view, data, len)) return corrupt(c->err);
        if (mk_path_get(&view, name, &it)) in = bson_iter_value(&it);
    }
    if (rc != MK_OK) return rc;
    size_t saved;
    rc = pb_push(&c->path, name, strlen(name), &saved, c->err);
    if (rc == MK_OK) rc = run_getters(c, L->schema, name, in, out);
    pb_pop(&c->path, saved);
    return rc;
}

static int put_alias(ser_ctx_t *c, level_t *L, mk_tree_t *t, const uint8_t *data, uint32_t len,
                     const mk_schema_path_t *p, const char *alias)
{
    if (mk_schema_virtual_find(L->schema, alias)) return MK_OK; /* registered: applied later */
    bson_value_t v;
    int rc = alias_value(c, L, t, data, len, p, &v);
    if (rc != MK_OK) return rc;
    if (v.value_type != BSON_TYPE_UNDEFINED) rc = put_virtual(c, t, alias, &v);
    bson_value_destroy(&v);
    return rc;
}

/* Aliases in the order Mongoose defines their virtuals: the aliases of a nested object's paths
 * when that object is done, so deeper ones first, the top level's last. */
static int apply_aliases(ser_ctx_t *c, level_t *L, mk_tree_t *t, const uint8_t *data, uint32_t len,
                         const char *prefix)
{
    const mk_schema_t *s = L->schema;
    size_t pl = strlen(prefix);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < mk_schema_path_count(s); i++) {
            const mk_schema_path_t *p = mk_schema_path_at(s, i);
            const char *name = mk_schema_path_name(p);
            if (strncmp(name, prefix, pl) != 0 || strchr(name + pl, '.')) continue;
            bool nested = mk_schema_path_kind(p) == MK_TYPE_NESTED;
            int rc = MK_OK;
            if (pass == 0 && nested) {
                char *sub = malloc(strlen(name) + 2);
                if (!sub) return mk_error_nomem(c->err);
                strcpy(sub, name);
                strcat(sub, ".");
                rc = apply_aliases(c, L, t, data, len, sub);
                free(sub);
            } else if (pass == 1 && !nested) {
                bson_iter_t it, a;
                if (!mk_schema_path_option(p, "alias", &it)) continue;
                if (BSON_ITER_HOLDS_UTF8(&it)) {
                    rc = put_alias(c, L, t, data, len, p, bson_iter_utf8(&it, NULL));
                } else if (BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &a)) {
                    while (rc == MK_OK && bson_iter_next(&a))
                        if (BSON_ITER_HOLDS_UTF8(&a))
                            rc = put_alias(c, L, t, data, len, p, bson_iter_utf8(&a, NULL));
                }
            }
            if (rc != MK_OK) return rc;
        }
    }
    return MK_OK;
}

static bool any_alias(const mk_schema_t *s)
{
    for (size_t i = 0; i < mk_schema_path_count(s); i++) {
        bson_iter_t it;
        if (mk_schema_path_option(mk_schema_path_at(s, i), "alias", &it)) return true;
    }
    return false;
}

static int apply_virtuals(ser_ctx_t *c, level_t *L, mk_tree_t *t, const uint8_t *data, uint32_t len)
{
    const mk_schema_t *s = L->schema;
    bool aliases = any_alias(s);
    int rc = L->aliases && aliases ? apply_aliases(c, L, t, data, len, "") : MK_OK;
    for (size_t i = 0; rc == MK_OK && i < mk_schema_virtual_count(s); i++) {
        const mk_virtual_t *v = mk_schema_virtual_at(s, i);
        if (!v->get) continue;
        bson_value_t out = {.value_type = BSON_TYPE_UNDEFINED};
        rc = v->get(c->doc, &out, v->ud, c->err);
        if (rc == MK_OK && out.value_type != BSON_TYPE_UNDEFINED && out.value_type != BSON_TYPE_EOD)
            rc = put_virtual(c, t, v->name, &out);
        bson_value_destroy(&out);
    }
    /* `id`: added when the model is compiled, after the schema's own virtuals */
    if (rc == MK_OK && mk_schema_options(s)->id_virtual && mk_schema_path(s, "_id") &&
        !mk_schema_path(s, "id") && !mk_schema_virtual_find(s, "id") &&
        !(aliases && alias_named(s, "id"))) {
        bson_iter_t it;
        bson_value_t id = {.value_type = BSON_TYPE_NULL};
        if (stored_find(data, len, "_id", 3, &it) && !BSON_ITER_HOLDS_NULL(&it) &&
            !BSON_ITER_HOLDS_UNDEFINED(&it))
            rc = id_string(bson_iter_value(&it), &id, c->err);
        if (rc == MK_OK) rc = put_virtual(c, t, "id", &id);
        bson_value_destroy(&id);
    }
    return rc;
}

/* ---- one level ---- */

/* Steps 2 to 4 over `built` (step 1's object), the result appended to `dst`. */
static int tree_steps(ser_ctx_t *c, level_t *L, const uint8_t *data, uint32_t len,
                      const bson_t *built, bson_t *dst)
{
    mk_tree_t *t = malloc(sizeof *t);
    if (!t) return mk_error_nomem(c->err);
    mk_tree_init_bson(t, built);
    int rc = MK_OK;
    if (L->getters) {
        rc = apply_getters(c, L, t, data, len);
        bool empty;
        if (rc == MK_OK && L->minimize) rc = minimize_node(t, mk_tree_root(t), &empty, c->err);
    }
    if (rc == MK_OK && L->virtuals) rc = apply_virtuals(c, L, t, data, len);
    if (rc == MK_OK && L->drop_version_key) {
        const char *vk = mk_schema_options(L->schema)->version_key;
        mk_tnode_t *n;
        uint32_t pos;
        rc = mk_tnode_find(t, mk_tree_root(t), vk, strlen(vk), &n, &pos, c->err);
        if (rc == MK_OK && n) mk_tnode_remove(mk_tree_root(t), pos);
    }
    if (rc == MK_OK) rc = mk_tree_to_bson(t, dst, c->err);
    mk_tree_destroy(t);
    free(t);
    return rc;
}

/* The level's steps; the caller has set up what mk_ser_current_subdoc reports. */
static int level_steps(ser_ctx_t *c, level_t *L, const uint8_t *data, uint32_t len, bson_t *dst)
{
    bool tree = L->getters || L->virtuals;
    if (!tree && !L->transform) {
        bool same = true;
        size_t saved = c->path.len;
        int rc = scan_fields(c, L, data, len, true, true, &same);
        pb_pop(&c->path, saved);
        if (rc != MK_OK) return rc;
        if (!same) return clone_fields(c, L, data, len, true, true, dst);
        bson_t view;
        if (!bson_init_static(&view, data, len)) return corrupt(c->err);
        return nomem_or(bson_concat(dst, &view), c->err);
    }
    bson_t *built = bson_new();
    bson_t *shaped = NULL;
    int rc = clone_fields(c, L, data, len, true, true, built);
    if (rc == MK_OK && tree) {
        if (!L->transform) {
            rc = tree_steps(c, L, data, len, built, dst);
        } else {
            shaped = bson_new();
            rc = tree_steps(c, L, data, len, built, shaped);
        }
    }
    if (rc == MK_OK && L->transform)
        rc = L->transform(c->doc, shaped ? shaped : built, dst, L->transform_ud, c->err);
    if (shaped) bson_destroy(shaped);
    bson_destroy(built);
    return rc;
}

static int ser_level(ser_ctx_t *c, level_t *L, const uint8_t *data, uint32_t len, bson_t *dst)
{
    /* callbacks run while this level is built (its own, and a map's value getters) run for
     * this sub-document; at the top for none (also when a callback serializes another
     * document) */
    current_t here = {.c = c, .base = L->base, .data = data, .len = len};
    current_t *saved = current;
    current = L->is_subdoc ? &here : NULL;
    int rc = level_steps(c, L, data, len, dst);
    current = saved;
    free(here.path);
    return rc;
}

int mk_serialize(const mk_schema_t *s, mk_doc_t *doc, const bson_t *stored, const mk_ser_opts_t *o,
                 bson_t *out, mk_error_t *err)
{
    if (!s || !stored || !o || !out)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "mk_serialize needs a schema, a document, "
                             "options and an output document");
    ser_ctx_t c = {.doc = doc, .json = o->json, .called = &o->called, .err = err};
    level_t top;
    int rc = level_init(s, o->json, &o->called, NULL, NULL, &top, err);
    if (rc != MK_OK) return rc;
    /* the top document follows the resolved booleans (sub-documents resolve their own) */
    top.getters = o->getters;
    top.virtuals = o->virtuals;
    top.drop_version_key = !o->version_key && mk_schema_options(s)->version_key;
    top.minimize = o->minimize;
    top.flatten_maps = o->flatten_maps;
    if (!o->transform) top.transform = NULL;
    rc = ser_level(&c, &top, bson_get_data(stored), stored->len, out);
    free(c.path.s);
    return rc;
}
