/* Casting values into a document: one value for one schema path (setters, then the SchemaType's
 * cast, recursing into arrays, maps and sub-documents), and whole objects for construction,
 * with defaults and the `strict` rules. Cast failures are recorded on the document as Mongoose
 * records them (the path stays unset, validation reports the CastError). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odm/doc_internal.h"
#include "odm/setters.h"
#include "odm/validate.h"

/* A value that owns a fresh document or array (bson_value_destroy frees it). */
static int value_from_bson(bson_t *b, bson_type_t type, bson_value_t *out, mk_error_t *err)
{
    uint32_t len = b->len;
    uint8_t *data = bson_destroy_with_steal(b, true, &len);
    if (!data) return mk_error_nomem(err);
    out->value_type = type;
    out->value.v_doc.data = data;
    out->value.v_doc.data_len = len;
    return MK_OK;
}

int mk_doc_record_cast_error(mk_doc_t *d, const char *path, const mk_error_t *cast,
                             const bson_value_t *value)
{
    if (!d->cast_errors) {
        d->cast_errors = malloc(sizeof *d->cast_errors);
        if (!d->cast_errors) return MK_ENOMEM;
        mk_verrors_init(d->cast_errors);
    }
    /* Mongoose's CastError.kind is the type named in the message ("Cast to Number failed") */
    char kind[64] = "cast:";
    const char *m = cast->message;
    if (strncmp(m, "Cast to ", 8) == 0) {
        size_t n = strcspn(m + 8, " ");
        if (n > sizeof kind - 6) n = sizeof kind - 6;
        memcpy(kind + 5, m + 8, n);
        kind[5 + n] = '\0';
    }
    return mk_verrors_add(d->cast_errors, path, kind, cast->message, value);
}

void mk_doc_clear_cast_errors(mk_doc_t *d, const char *path)
{
    mk_verrors_t *e = d->cast_errors;
    if (!e) return;
    size_t n = strlen(path), w = 0;
    for (size_t i = 0; i < e->count; i++) {
        const char *p = e->items[i].path;
        bool drop = strcmp(p, path) == 0 || (strncmp(p, path, n) == 0 && p[n] == '.');
        if (drop) {
            free(e->items[i].path);
            free(e->items[i].kind);
            free(e->items[i].message);
            bson_value_destroy(&e->items[i].value);
        } else {
            e->items[w++] = e->items[i];
        }
    }
    e->count = w;
}

/* Appends `v` under key `k`. */
static bool append_value(bson_t *out, const char *k, size_t klen, const bson_value_t *v)
{
    return bson_append_value(out, k, (int)klen, v);
}

static char *join_path(const char *a, const char *b, size_t blen)
{
    size_t na = strlen(a);
    char *s = malloc(na + blen + 2);
    if (!s) return NULL;
    if (na) {
        memcpy(s, a, na);
        s[na++] = '.';
    }
    memcpy(s + na, b, blen);
    s[na + blen] = '\0';
    return s;
}

/* Casts one array element (or map value) through the element's SchemaType. */
static int cast_elem(mk_doc_t *d, const mk_schema_t *owner, const mk_schema_path_t *elem,
                     const char *full, const bson_value_t *in, bson_value_t *out, mk_error_t *err)
{
    if (!elem) { /* Mixed */
        bson_value_copy(in, out);
        return MK_OK;
    }
    return mk_doc_cast_path(d, owner, elem, full, in, out, err);
}

/* Casts an array (a non-array value is wrapped, as Mongoose does) element by element. */
static int cast_array(mk_doc_t *d, const mk_schema_t *owner, const mk_schema_path_t *p,
                      const char *full, const bson_value_t *in, bson_value_t *out, mk_error_t *err)
{
    bson_t arr;
    bson_init(&arr);
    int rc = MK_OK;
    uint32_t n = 0;
    bool docarray = mk_schema_path_kind(p) == MK_TYPE_DOCARRAY;
    const mk_schema_t *child = mk_schema_path_schema(p);
    const mk_schema_path_t *elem = mk_schema_path_element(p);
    bson_iter_t it;
    bson_t src;
    bool wrapped = in->value_type != BSON_TYPE_ARRAY;
    if (!wrapped) bson_init_static(&src, in->value.v_doc.data, in->value.v_doc.data_len);
    if (!wrapped && !bson_iter_init(&it, &src)) {
        bson_destroy(&arr);
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt array at path %s", full);
    }
    for (;;) {
        bson_value_t ev;
        if (wrapped) {
            if (n > 0) break;
            ev = *in;
        } else {
            if (!bson_iter_next(&it)) break;
            ev = *bson_iter_value(&it);
        }
        char key[16];
        const char *k;
        size_t klen = bson_uint32_to_string(n, &k, key, sizeof key);
        char efull[512];
        snprintf(efull, sizeof efull, "%s.%u", full, n);
        bson_value_t cv = {0};
        if (docarray) {
            if (ev.value_type == BSON_TYPE_NULL) {
                bson_value_copy(&ev, &cv);
            } else if (ev.value_type != BSON_TYPE_DOCUMENT) {
                rc = mk_cast_error_for(&ev, "Embedded", efull, err);
            } else {
                bson_t sub, built;
                bson_init_static(&sub, ev.value.v_doc.data, ev.value.v_doc.data_len);
                bson_init(&built);
                rc = mk_doc_build_object(d, child, "", efull, &sub, &built, true, err);
                if (rc == MK_OK)
                    rc = value_from_bson(&built, BSON_TYPE_DOCUMENT, &cv, err);
                else
                    bson_destroy(&built);
            }
        } else {
            rc = cast_elem(d, owner, elem, efull, &ev, &cv, err);
        }
        if (rc != MK_OK) break;
        if (!append_value(&arr, k, klen, &cv)) rc = mk_error_nomem(err);
        bson_value_destroy(&cv);
        if (rc != MK_OK) break;
        n++;
    }
    if (rc != MK_OK) {
        bson_destroy(&arr);
        return rc;
    }
    return value_from_bson(&arr, BSON_TYPE_ARRAY, out, err);
}

int mk_cast_error_for(const bson_value_t *v, const char *kind, const char *path, mk_error_t *err)
{
    bson_string_t *s = bson_string_new(NULL);
    mk_cast_inspect(s, v);
    int rc = mk_error_set(err, 0, "CastError",
                          "Cast to %s failed for value \"%s\" (type %s) at path \"%s\"", kind,
                          s->str, mk_cast_js_type_name(v), path);
    bson_string_free(s, true);
    return rc;
}

int mk_doc_cast_path(mk_doc_t *d, const mk_schema_t *owner, const mk_schema_path_t *p,
                     const char *full, const bson_value_t *in, bson_value_t *out, mk_error_t *err)
{
    mk_schematype_t t = mk_schema_path_kind(p);
    if (in->value_type == BSON_TYPE_NULL || in->value_type == BSON_TYPE_UNDEFINED) {
        bson_value_copy(in, out);
        return MK_OK;
    }
    mk_fn_ctx_t ctx = {.doc = d, .path = full};
    mk_cast_type_t ct;
    if (mk_schematype_cast_type(t, &ct)) {
        bson_value_t set = {0};
        int rc = mk_setters_apply(owner, p, &ctx, in, &set, err);
        if (rc != MK_OK) return rc;
        if (set.value_type == BSON_TYPE_NULL || set.value_type == BSON_TYPE_UNDEFINED ||
            set.value_type == BSON_TYPE_EOD) {
            *out = set;
            if (out->value_type == BSON_TYPE_EOD) out->value_type = BSON_TYPE_NULL;
            return MK_OK;
        }
        rc = mk_cast_value_at(ct, &set, full, NULL, out, err);
        bson_value_destroy(&set);
        return rc;
    }
    switch (t) {
    case MK_TYPE_ARRAY:
    case MK_TYPE_DOCARRAY:
        return cast_array(d, owner, p, full, in, out, err);
    case MK_TYPE_SUBDOC: {
        if (in->value_type != BSON_TYPE_DOCUMENT)
            return mk_cast_error_for(in, "Embedded", full, err);
        bson_t sub, built;
        bson_init_static(&sub, in->value.v_doc.data, in->value.v_doc.data_len);
        bson_init(&built);
        int rc =
            mk_doc_build_object(d, mk_schema_path_schema(p), "", full, &sub, &built, true, err);
        if (rc != MK_OK) {
            bson_destroy(&built);
            return rc;
        }
        return value_from_bson(&built, BSON_TYPE_DOCUMENT, out, err);
    }
    case MK_TYPE_MAP: {
        if (in->value_type != BSON_TYPE_DOCUMENT) return mk_cast_error_for(in, "Map", full, err);
        bson_t src, built;
        bson_init_static(&src, in->value.v_doc.data, in->value.v_doc.data_len);
        bson_init(&built);
        bson_iter_t it;
        int rc = bson_iter_init(&it, &src) ? MK_OK : mk_error_nomem(err);
        const mk_schema_path_t *elem = mk_schema_path_element(p);
        while (rc == MK_OK && bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (k[0] == '$' || strchr(k, '.')) {
                rc = mk_error_set(err, 0, "Error",
                                  "Mongoose maps do not support keys that %s, got \"%s\"",
                                  k[0] == '$' ? "start with \"$\"" : "contain \".\"", k);
                break;
            }
            char *efull = join_path(full, k, strlen(k));
            if (!efull) {
                rc = mk_error_nomem(err);
                break;
            }
            bson_value_t cv = {0};
            const mk_schema_t *child = elem ? mk_schema_path_schema(elem) : NULL;
            if (child && mk_schema_path_kind(elem) == MK_TYPE_SUBDOC) {
                rc = mk_doc_cast_path(d, owner, elem, efull, bson_iter_value(&it), &cv, err);
            } else {
                rc = cast_elem(d, owner, elem, efull, bson_iter_value(&it), &cv, err);
            }
            free(efull);
            if (rc == MK_OK && !append_value(&built, k, strlen(k), &cv)) rc = mk_error_nomem(err);
            bson_value_destroy(&cv);
        }
        if (rc != MK_OK) {
            bson_destroy(&built);
            return rc;
        }
        return value_from_bson(&built, BSON_TYPE_DOCUMENT, out, err);
    }
    case MK_TYPE_NESTED: {
        if (in->value_type != BSON_TYPE_DOCUMENT) return mk_cast_error_for(in, "Object", full, err);
        bson_t src, built;
        bson_init_static(&src, in->value.v_doc.data, in->value.v_doc.data_len);
        bson_init(&built);
        int rc =
            mk_doc_build_object(d, owner, mk_schema_path_name(p), full, &src, &built, false, err);
        if (rc != MK_OK) {
            bson_destroy(&built);
            return rc;
        }
        return value_from_bson(&built, BSON_TYPE_DOCUMENT, out, err);
    }
    default: /* Mixed */
        bson_value_copy(in, out);
        return MK_OK;
    }
}

/* The default of a path: *has is false when the path has none. */
static int default_value(mk_doc_t *d, const mk_schema_t *owner, const mk_schema_path_t *p,
                         const char *full, bool *has, bson_value_t *out, mk_error_t *err)
{
    *has = false;
    size_t it = 0;
    const mk_path_fn_t *fn =
        mk_schema_path_fn_next(owner, mk_schema_path_name(p), MK_FN_DEFAULT, &it);
    mk_schematype_t t = mk_schema_path_kind(p);
    bson_value_t raw = {0};
    bool own_raw = false;
    bson_iter_t opt;
    if (fn) {
        mk_fn_ctx_t ctx = {.doc = d, .path = full};
        int rc = fn->fn.def(&ctx, &raw, fn->ud, err);
        if (rc != MK_OK) return rc;
        own_raw = true;
        if (raw.value_type == BSON_TYPE_UNDEFINED || raw.value_type == BSON_TYPE_EOD) {
            bson_value_destroy(&raw);
            return MK_OK;
        }
    } else if (mk_schema_path_option(p, "default", &opt)) {
        if (mk_schema_path_default_is_now(p)) {
            raw.value_type = BSON_TYPE_DATE_TIME;
            raw.value.v_datetime = mk_odm_now_ms();
        } else {
            raw = *bson_iter_value(&opt);
            if (raw.value_type == BSON_TYPE_UNDEFINED) return MK_OK; /* default: undefined */
        }
    } else if (t == MK_TYPE_ARRAY || t == MK_TYPE_DOCARRAY) {
        raw.value_type = BSON_TYPE_ARRAY; /* arrays default to [] */
        static const uint8_t empty[5] = {5, 0, 0, 0, 0};
        raw.value.v_doc.data = (uint8_t *)empty;
        raw.value.v_doc.data_len = 5;
    } else {
        return MK_OK;
    }
    mk_error_t cerr = {0};
    int rc = mk_doc_cast_path(d, owner, p, full, &raw, out, &cerr);
    if (rc == MK_ERR && strcmp(cerr.kind, "CastError") == 0) {
        rc = mk_doc_record_cast_error(d, full, &cerr, &raw) == MK_OK ? MK_OK : mk_error_nomem(err);
    } else if (rc == MK_OK) {
        *has = true;
    } else if (err) {
        *err = cerr;
    }
    if (own_raw) bson_value_destroy(&raw);
    return rc;
}

/* ---- the construction plan: per schema, its nesting levels and their paths, compiled once
 * (schema cache) so that building a document matches fields without scanning the schema ---- */

typedef struct level level_t;
typedef struct entry {
    const char *leaf; /* the name within its level */
    size_t leaflen;
    const mk_schema_path_t *p;
    mk_schematype_t kind;
    bool has_default; /* a default (value, Date.now, function) or an array's [] */
    level_t *nested;  /* NESTED: the level of its children */
} entry_t;

struct level {
    entry_t *e;
    size_t n;
    bool any_default; /* some entry here (or below) produces a value when the input lacks it */
};

typedef struct doc_plan {
    level_t root;
    const mk_schema_path_t *id; /* the _id path, NULL when the schema has none */
} doc_plan_t;

static void level_free(level_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->e[i].nested) {
            level_free(l->e[i].nested);
            free(l->e[i].nested);
        }
    free(l->e);
}

static void plan_free(void *ptr)
{
    doc_plan_t *pl = ptr;
    level_free(&pl->root);
    free(pl);
}

static bool direct_child(const char *name, const char *prefix, size_t plen)
{
    if (plen) {
        if (strncmp(name, prefix, plen) != 0 || name[plen] != '.') return false;
        name += plen + 1;
    }
    return strchr(name, '.') == NULL;
}

static bool build_level(const mk_schema_t *s, const char *prefix, level_t *l)
{
    size_t plen = strlen(prefix), np = mk_schema_path_count(s);
    l->e = calloc(np ? np : 1, sizeof *l->e);
    if (!l->e) return false;
    for (size_t i = 0; i < np; i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        const char *name = mk_schema_path_name(p);
        if (!direct_child(name, prefix, plen)) continue;
        entry_t *e = &l->e[l->n++];
        e->leaf = plen ? name + plen + 1 : name;
        e->leaflen = strlen(e->leaf);
        e->p = p;
        e->kind = mk_schema_path_kind(p);
        bson_iter_t it;
        e->has_default = mk_schema_path_option(p, "default", &it) ||
                         mk_schema_path_has_fn(s, name, MK_FN_DEFAULT) ||
                         e->kind == MK_TYPE_ARRAY || e->kind == MK_TYPE_DOCARRAY;
        if (e->kind == MK_TYPE_NESTED) {
            if (!(e->nested = calloc(1, sizeof *e->nested)) || !build_level(s, name, e->nested))
                return false;
            e->has_default = e->nested->any_default;
        }
        if (e->has_default) l->any_default = true;
    }
    return true;
}

static void *plan_build(const mk_schema_t *s)
{
    doc_plan_t *pl = calloc(1, sizeof *pl);
    if (!pl) return NULL;
    if (!build_level(s, "", &pl->root)) {
        plan_free(pl);
        return NULL;
    }
    pl->id = mk_schema_path(s, "_id");
    mk_schema_cache_set_free((mk_schema_t *)s, MK_SCHEMA_CACHE_DOC, plan_free);
    return pl;
}

/* The entry for `key` in a level (levels are small: a linear scan of lengths first). */
static const entry_t *level_find(const level_t *l, const char *key, size_t klen, size_t *idx)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->e[i].leaflen == klen && memcmp(l->e[i].leaf, key, klen) == 0) {
            *idx = i;
            return &l->e[i];
        }
    return NULL;
}

/* Appends "<base>.<key>" (or key when base is empty) into buf; false when it does not fit. */
static bool path_join(char *buf, size_t cap, const char *base, size_t blen, const char *key,
                      size_t klen)
{
    if (blen + klen + 2 > cap) return false;
    if (buf != base) memcpy(buf, base, blen);
    size_t n = blen;
    if (blen) buf[n++] = '.';
    memcpy(buf + n, key, klen);
    buf[n + klen] = '\0';
    return true;
}

const char *mk_schema_alias_target(const mk_schema_t *s, const char *name)
{
    size_t n = mk_schema_path_count(s);
    for (size_t i = 0; i < n; i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        bson_iter_t it;
        if (mk_schema_path_option(p, "alias", &it) && BSON_ITER_HOLDS_UTF8(&it) &&
            strcmp(bson_iter_utf8(&it, NULL), name) == 0)
            return mk_schema_path_name(p);
    }
    return NULL;
}

static int strict_reject(const char *full, mk_error_t *err)
{
    return mk_error_set(err, 0, "StrictModeError",
                        "Field `%s` is not in schema and strict mode is set to throw.", full);
}

static int build_level_object(mk_doc_t *d, const mk_schema_t *s, const doc_plan_t *pl,
                              const level_t *l, const char *full, const bson_t *in, bson_t *out,
                              bool is_schema_root, mk_error_t *err);

/* Casts one input field that the level knows. */
static int cast_field(mk_doc_t *d, const mk_schema_t *s, const doc_plan_t *pl, const entry_t *e,
                      const char *fpath, const bson_value_t *v, bson_t *out, mk_error_t *err)
{
    const mk_schema_options_t *so = mk_schema_options(s);
    if (e->kind == MK_TYPE_NESTED) {
        if (v->value_type == BSON_TYPE_DOCUMENT) {
            bson_t src, child;
            bson_init_static(&src, v->value.v_doc.data, v->value.v_doc.data_len);
            if (!bson_append_document_begin(out, e->leaf, (int)e->leaflen, &child))
                return mk_error_nomem(err);
            int rc = build_level_object(d, s, pl, e->nested, fpath, &src, &child, false, err);
            if (!bson_append_document_end(out, &child) && rc == MK_OK) rc = mk_error_nomem(err);
            return rc;
        }
        if (v->value_type == BSON_TYPE_NULL) /* null nested: keep the null */
            return bson_append_value(out, e->leaf, (int)e->leaflen, v) ? MK_OK
                                                                       : mk_error_nomem(err);
        if (so->strict == MK_STRICT_THROW)
            return mk_error_set(err, 0, "ObjectExpectedError",
                                "Tried to set nested object field `%s` to primitive value and "
                                "strict mode is set to throw.",
                                fpath);
        return MK_OK; /* Mongoose ignores a primitive for a nested object */
    }
    bson_value_t cv = {0};
    mk_error_t cerr;
    cerr.kind[0] = '\0';
    int rc = mk_doc_cast_path(d, s, e->p, fpath, v, &cv, &cerr);
    if (rc == MK_OK) {
        if (!bson_append_value(out, e->leaf, (int)e->leaflen, &cv)) rc = mk_error_nomem(err);
        bson_value_destroy(&cv);
    } else if (rc == MK_ERR && strcmp(cerr.kind, "CastError") == 0) {
        rc = mk_doc_record_cast_error(d, fpath, &cerr, v) == MK_OK ? MK_OK : mk_error_nomem(err);
    } else if (err) {
        *err = cerr;
    }
    return rc;
}

static int build_level_object(mk_doc_t *d, const mk_schema_t *s, const doc_plan_t *pl,
                              const level_t *l, const char *full, const bson_t *in, bson_t *out,
                              bool is_schema_root, mk_error_t *err)
{
    const mk_schema_options_t *so = mk_schema_options(s);
    size_t flen = strlen(full);
    bool top = is_schema_root && !flen;
    char fpath[1024];
    int rc = MK_OK;
    bool seen_stack[64];
    bool *seen = l->n <= 64 ? seen_stack : calloc(l->n, sizeof *seen);
    if (!seen) return mk_error_nomem(err);
    memset(seen, 0, (l->n <= 64 ? 64 : l->n) * sizeof *seen);
    bson_iter_t it;
    /* _id first for a top-level document */
    if (top && pl->id) {
        size_t idx = 0;
        if (level_find(l, "_id", 3, &idx)) seen[idx] = true;
        if (bson_iter_init_find(&it, in, "_id")) {
            const entry_t *e = &l->e[idx];
            rc = cast_field(d, s, pl, e, "_id", bson_iter_value(&it), out, err);
        } else if (mk_schema_path_kind(pl->id) == MK_TYPE_OBJECTID) {
            bson_oid_t oid;
            bson_oid_init(&oid, NULL);
            if (!BSON_APPEND_OID(out, "_id", &oid)) rc = mk_error_nomem(err);
        }
    }
    if (rc == MK_OK && !bson_iter_init(&it, in))
        rc = mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt document");
    while (rc == MK_OK && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        size_t klen = bson_iter_key_len(&it);
        if (top && pl->id && klen == 3 && memcmp(k, "_id", 3) == 0) continue;
        if (!path_join(fpath, sizeof fpath, full, flen, k, klen)) {
            rc = mk_error_setc(err, MK_CODE_BAD_VALUE, "path too long: %s.%s", full, k);
            break;
        }
        const bson_value_t *v = bson_iter_value(&it);
        size_t idx = 0;
        const entry_t *e = memchr(k, '.', klen) ? NULL : level_find(l, k, klen, &idx);
        if (!e) {
            if (top && (memchr(k, '.', klen) || mk_schema_virtual_find(s, k) ||
                        mk_schema_alias_target(s, k))) {
                rc = mk_doc_defer_set(d, fpath, v, err); /* dotted keys, virtuals: set later */
                continue;
            }
            if (so->strict == MK_STRICT_THROW) {
                rc = strict_reject(fpath, err);
                break;
            }
            if (so->strict == MK_STRICT_FALSE && !bson_append_value(out, k, (int)klen, v))
                rc = mk_error_nomem(err);
            continue;
        }
        seen[idx] = true;
        if (v->value_type == BSON_TYPE_UNDEFINED) continue; /* undefined: not set */
        rc = cast_field(d, s, pl, e, fpath, v, out, err);
    }
    /* defaults (and nested objects holding defaults) for what the input did not give */
    for (size_t i = 0; rc == MK_OK && l->any_default && i < l->n; i++) {
        const entry_t *e = &l->e[i];
        if (seen[i] || !e->has_default) continue;
        if (!path_join(fpath, sizeof fpath, full, flen, e->leaf, e->leaflen)) continue;
        if (e->kind == MK_TYPE_NESTED) {
            bson_t empty = BSON_INITIALIZER, built;
            bson_init(&built);
            rc = build_level_object(d, s, pl, e->nested, fpath, &empty, &built, false, err);
            if (rc == MK_OK && !bson_empty(&built) &&
                !bson_append_document(out, e->leaf, (int)e->leaflen, &built))
                rc = mk_error_nomem(err);
            bson_destroy(&built);
            continue;
        }
        bool has = false;
        bson_value_t dv = {0};
        rc = default_value(d, s, e->p, fpath, &has, &dv, err);
        if (rc == MK_OK && has) {
            if (!bson_append_value(out, e->leaf, (int)e->leaflen, &dv)) rc = mk_error_nomem(err);
            bson_value_destroy(&dv);
        }
    }
    /* a sub-document without an _id gets one (its schema's auto _id) */
    if (rc == MK_OK && is_schema_root && !top && pl->id &&
        mk_schema_path_kind(pl->id) == MK_TYPE_OBJECTID) {
        size_t idx = 0;
        if (level_find(l, "_id", 3, &idx) && !seen[idx]) {
            bson_oid_t oid;
            bson_oid_init(&oid, NULL);
            if (!BSON_APPEND_OID(out, "_id", &oid)) rc = mk_error_nomem(err);
        }
    }
    if (seen != seen_stack) free(seen);
    return rc;
}

int mk_doc_build_object(mk_doc_t *d, const mk_schema_t *s, const char *prefix, const char *full,
                        const bson_t *in, bson_t *out, bool is_schema_root, mk_error_t *err)
{
    const doc_plan_t *pl = mk_schema_cache(s, MK_SCHEMA_CACHE_DOC, plan_build);
    if (!pl) return mk_error_nomem(err);
    const level_t *l = &pl->root;
    /* a nested prefix: walk down its levels */
    for (const char *p = prefix; *p && l;) {
        size_t n = strcspn(p, ".");
        size_t idx;
        const entry_t *e = level_find(l, p, n, &idx);
        l = e ? e->nested : NULL;
        p += n;
        if (*p == '.') p++;
    }
    if (!l) return mk_error_setc(err, MK_CODE_BAD_VALUE, "no nested path %s", prefix);
    return build_level_object(d, s, pl, l, full, in, out, is_schema_root, err);
}
