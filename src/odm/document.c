/* Documents: construction, hydration, get/set with casting, and change tracking.
 *
 * A document keeps its state as BSON bytes until the first change; the first change opens a
 * lazy tree (bson/tree.h) over those bytes, so a hydrated document costs little more than its
 * BSON, and a change touches only the containers along its path. Modified paths are kept as
 * Mongoose keeps them: the paths set directly, from which isModified, modifiedPaths and the
 * save's update are derived. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/tree.h"
#include "bson/value.h"
#include "odm/doc_internal.h"
#include "odm/serialize.h"
#include "odm/validate.h"

static bool grow(void **items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : 4;
    void *g = realloc(*items, c * size);
    if (!g) return false;
    *items = g;
    *cap = c;
    return true;
}

/* ---- state ---- */

static void drop_scratch(mk_doc_t *d)
{
    for (size_t i = 0; i < d->nscratch; i++) bson_value_destroy(&d->scratch[i]);
    d->nscratch = 0;
}

static void invalidate(mk_doc_t *d)
{
    if (d->flat) {
        bson_destroy(d->flat);
        d->flat = NULL;
    }
    drop_scratch(d);
}

int mk_doc_view(mk_doc_t *d, bson_t *view, mk_error_t *err)
{
    if (!d->tree) {
        if (!bson_init_static(view, d->data, d->len))
            return mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt document");
        return MK_OK;
    }
    if (!d->flat) {
        bson_t tmp = BSON_INITIALIZER;
        if (mk_tree_to_bson(d->tree, &tmp, err) != MK_OK) {
            bson_destroy(&tmp);
            return MK_ERR;
        }
        d->flat = bson_copy(&tmp);
        bson_destroy(&tmp);
        if (!d->flat) return mk_error_nomem(err);
    }
    return bson_init_static(view, bson_get_data(d->flat), d->flat->len)
               ? MK_OK
               : mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt document");
}

const bson_t *mk_doc_bson(mk_doc_t *d, mk_error_t *err)
{
    if (!d->flat) {
        if (d->tree) {
            bson_t v;
            if (mk_doc_view(d, &v, err) != MK_OK) return NULL;
        } else if (!(d->flat = bson_new_from_data(d->data, d->len))) {
            mk_error_nomem(err);
            return NULL;
        }
    }
    return d->flat;
}

bool mk_doc_lookup(mk_doc_t *d, const char *path, bson_value_t *out)
{
    if (d->tree) {
        mk_tnode_t *n = NULL;
        if (mk_tree_get(d->tree, path, strlen(path), &n, NULL) != MK_OK || !n) return false;
        return mk_tnode_value(d->tree, n, out, NULL) == MK_OK;
    }
    bson_t view;
    bson_iter_t it, found;
    if (!bson_init_static(&view, d->data, d->len) || !bson_iter_init(&it, &view)) return false;
    if (strchr(path, '.') ? !bson_iter_find_descendant(&it, path, &found)
                          : !bson_iter_find(&it, path))
        return false;
    if (!strchr(path, '.')) found = it;
    *out = *bson_iter_value(&found);
    return true;
}

static int ensure_tree(mk_doc_t *d, mk_error_t *err)
{
    if (d->tree) return MK_OK;
    mk_tree_t *t = malloc(sizeof *t);
    if (!t) return mk_error_nomem(err);
    mk_tree_init_data(t, d->data, d->len);
    d->tree = t;
    return MK_OK;
}

int mk_doc_store(mk_doc_t *d, const char *path, const bson_value_t *v, mk_error_t *err)
{
    if (ensure_tree(d, err) != MK_OK) return MK_ENOMEM;
    invalidate(d);
    if (!v) return mk_tree_unset(d->tree, path, strlen(path), NULL, err);
    return mk_tree_set(d->tree, path, strlen(path), v, NULL, err);
}

/* ---- construction ---- */

static mk_doc_t *doc_alloc(mk_model_t *m)
{
    mk_doc_t *d = calloc(1, sizeof *d);
    if (d) d->model = m;
    return d;
}

int mk_doc_defer_set(mk_doc_t *d, const char *path, const bson_value_t *v, mk_error_t *err)
{
    if (!d->deferred && !(d->deferred = bson_new())) return mk_error_nomem(err);
    return bson_append_value(d->deferred, path, -1, v) ? MK_OK : mk_error_nomem(err);
}

static int adopt(mk_doc_t *d, bson_t *built, mk_error_t *err)
{
    uint32_t len = built->len;
    uint8_t *data = bson_destroy_with_steal(built, true, &len);
    if (!data) return mk_error_nomem(err);
    d->data = data;
    d->len = len;
    return MK_OK;
}

/* Marks every top-level path a new document was given as modified, as Mongoose's constructor
 * does through set(). */
static int mark_given(mk_doc_t *d, const bson_t *in, mk_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, in)) return MK_OK;
    while (bson_iter_next(&it)) {
        bson_value_t v;
        const char *k = bson_iter_key(&it);
        if (mk_doc_lookup(d, k, &v) && mk_doc_mark(d, k, err) != MK_OK) return MK_ENOMEM;
    }
    return MK_OK;
}

/* Functions that run during construction (setters, defaults, virtual setters) may set other
 * paths of the document being built (`this.set(...)`): those changes land in a tree over an
 * empty document and are merged into the built object afterwards, each field the build did
 * not produce itself. */
static int merge_side_sets(mk_doc_t *d, bson_t *built, mk_error_t *err)
{
    if (!d->tree) return MK_OK;
    bson_t side;
    if (mk_doc_view(d, &side, err) != MK_OK) return MK_ERR;
    bson_iter_t it, probe;
    int rc = MK_OK;
    if (bson_iter_init(&it, &side))
        while (rc == MK_OK && bson_iter_next(&it))
            if (!bson_iter_init_find(&probe, built, bson_iter_key(&it)) &&
                !bson_append_iter(built, NULL, 0, &it))
                rc = mk_error_nomem(err);
    if (d->flat) {
        bson_destroy(d->flat);
        d->flat = NULL;
    }
    mk_tree_destroy(d->tree);
    free(d->tree);
    d->tree = NULL;
    return rc;
}

static const uint8_t empty_doc[5] = {5, 0, 0, 0, 0};

mk_doc_t *mk_doc_from_bson(mk_model_t *m, const bson_t *obj, mk_error_t *err)
{
    mk_doc_t *d = doc_alloc(m);
    if (!d || !(d->data = malloc(sizeof empty_doc))) {
        free(d);
        mk_error_nomem(err);
        return NULL;
    }
    memcpy(d->data, empty_doc, sizeof empty_doc);
    d->len = sizeof empty_doc;
    d->is_new = true;
    bson_t empty = BSON_INITIALIZER;
    if (!obj) obj = &empty;
    bson_t built;
    bson_init(&built);
    if (mk_doc_build_object(d, m->schema, "", "", obj, &built, true, err) != MK_OK ||
        merge_side_sets(d, &built, err) != MK_OK) {
        bson_destroy(&built);
        mk_doc_destroy(d);
        return NULL;
    }
    free(d->data);
    d->data = NULL;
    if (adopt(d, &built, err) != MK_OK) {
        bson_destroy(&built);
        mk_doc_destroy(d);
        return NULL;
    }
    if (mark_given(d, obj, err) != MK_OK) goto fail;
    if (d->deferred) {
        bson_t *deferred = d->deferred;
        d->deferred = NULL;
        bson_iter_t it;
        int rc = MK_OK;
        if (bson_iter_init(&it, deferred))
            while (rc != MK_ENOMEM && bson_iter_next(&it)) {
                mk_error_t e = {0};
                rc = mk_doc_set_value(d, bson_iter_key(&it), bson_iter_value(&it), &e);
                if (rc != MK_OK && strcmp(e.kind, "CastError") != 0) { /* casts are recorded */
                    if (err) *err = e;
                    bson_destroy(deferred);
                    goto fail;
                }
            }
        bson_destroy(deferred);
        if (rc == MK_ENOMEM) {
            mk_error_nomem(err);
            goto fail;
        }
    }
    return d;
fail:
    mk_doc_destroy(d);
    return NULL;
}

mk_doc_t *mk_doc_new_args(mk_model_t *m, const char *json, const mk_arg_t *args, mk_error_t *err)
{
    bson_t *obj = mk_json_parse(json ? json : "{}", args, err);
    if (!obj) return NULL;
    mk_doc_t *d = mk_doc_from_bson(m, obj, err);
    bson_destroy(obj);
    return d;
}

mk_doc_t *mk_doc_hydrate_data(mk_model_t *m, const uint8_t *data, size_t len, mk_error_t *err)
{
    if (len < 5 || len > INT32_MAX) {
        mk_error_setc(err, MK_CODE_INVALID_BSON, "hydrate: not a BSON document");
        return NULL;
    }
    mk_doc_t *d = doc_alloc(m);
    if (!d || !(d->data = malloc(len))) {
        free(d);
        mk_error_nomem(err);
        return NULL;
    }
    memcpy(d->data, data, len);
    d->len = (uint32_t)len;
    d->hydrated = true;
    if (m->has_hooks) {
        mk_hook_t h = {.doc = d};
        int rc = mk_hooks_run(m, "init", MK_HOOK_PRE, true, &h, err);
        h.result = d;
        if (mk_hooks_post(m, "init", true, &h, rc, err) != MK_OK) goto fail;
    }
    return d;
fail:
    mk_doc_destroy(d);
    return NULL;
}

mk_doc_t *mk_doc_hydrate(mk_model_t *m, const bson_t *stored, mk_error_t *err)
{
    return mk_doc_hydrate_data(m, bson_get_data(stored), stored->len, err);
}

void mk_doc_reset_tracking(mk_doc_t *d)
{
    for (size_t i = 0; i < d->nmod; i++) free(d->modified[i]);
    d->nmod = 0;
    for (size_t i = 0; i < d->natomics; i++) {
        free(d->atomics[i].path);
        bson_destroy(d->atomics[i].values);
    }
    d->natomics = 0;
    d->version = 0;
}

void mk_doc_destroy(mk_doc_t *d)
{
    if (!d) return;
    mk_doc_reset_tracking(d);
    free(d->modified);
    free(d->atomics);
    if (d->cast_errors) {
        mk_verrors_destroy(d->cast_errors);
        free(d->cast_errors);
    }
    for (size_t i = 0; i < d->nlocals; i++) free(d->locals[i].key);
    free(d->locals);
    drop_scratch(d);
    free(d->scratch);
    if (d->flat) bson_destroy(d->flat);
    if (d->deferred) bson_destroy(d->deferred);
    if (d->tree) {
        mk_tree_destroy(d->tree);
        free(d->tree);
    }
    free(d->data);
    free(d);
}

/* Makes the tree's state the document's bytes (after a save), dropping the tree. */
int mk_doc_settle(mk_doc_t *d, mk_error_t *err)
{
    if (!d->tree) return MK_OK;
    bson_t view;
    if (mk_doc_view(d, &view, err) != MK_OK) return MK_ERR;
    uint8_t *copy = malloc(view.len);
    if (!copy) return mk_error_nomem(err);
    memcpy(copy, bson_get_data(&view), view.len);
    uint32_t len = view.len;
    invalidate(d);
    mk_tree_destroy(d->tree);
    free(d->tree);
    d->tree = NULL;
    free(d->data);
    d->data = copy;
    d->len = len;
    return MK_OK;
}

/* ---- accessors ---- */

mk_model_t *mk_doc_model(const mk_doc_t *d)
{
    return d->model;
}

bool mk_doc_is_new(const mk_doc_t *d)
{
    return d->is_new;
}

/* A pointer to the ObjectId stored at `path` (in the document's bytes or its tree). */
static const bson_oid_t *oid_at(mk_doc_t *d, const char *path)
{
    if (d->tree) {
        mk_tnode_t *n = NULL;
        if (mk_tree_get(d->tree, path, strlen(path), &n, NULL) == MK_OK && n &&
            n->type == BSON_TYPE_OID && n->data)
            return (const bson_oid_t *)n->data;
        return NULL;
    }
    bson_t view;
    bson_iter_t it, f;
    if (bson_init_static(&view, d->data, d->len) && bson_iter_init(&it, &view) &&
        bson_iter_find_descendant(&it, path, &f) && BSON_ITER_HOLDS_OID(&f))
        return bson_iter_oid(&f);
    return NULL;
}

const bson_oid_t *mk_doc_oid(const mk_doc_t *d)
{
    return oid_at((mk_doc_t *)d, "_id");
}

const char *mk_doc_id(mk_doc_t *d)
{
    bson_value_t v;
    if (!mk_doc_lookup(d, "_id", &v)) return NULL;
    if (v.value_type == BSON_TYPE_OID) {
        bson_oid_to_string(&v.value.v_oid, d->idbuf);
        return d->idbuf;
    }
    if (v.value_type == BSON_TYPE_UTF8) return v.value.v_utf8.str;
    if (v.value_type == BSON_TYPE_INT32) {
        snprintf(d->idbuf, sizeof d->idbuf, "%d", v.value.v_int32);
        return d->idbuf;
    }
    if (v.value_type == BSON_TYPE_INT64) {
        snprintf(d->idbuf, sizeof d->idbuf, "%lld", (long long)v.value.v_int64);
        return d->idbuf;
    }
    return NULL;
}

bool mk_doc_equals(mk_doc_t *a, mk_doc_t *b)
{
    bson_value_t x, y;
    bool hx = mk_doc_lookup(a, "_id", &x), hy = mk_doc_lookup(b, "_id", &y);
    if (!hx || !hy) return a == b;
    return mk_value_cmp(&x, &y) == 0;
}

const mk_schema_path_t *mk_doc_schema_path(const mk_doc_t *d, const char *path,
                                           const mk_schema_t **owner)
{
    const mk_schema_t *s = d->model->schema;
    const char *rest = path;
    char prefix[512];
    for (;;) {
        bool descended = false;
        for (const char *dot = strchr(rest, '.'); dot; dot = strchr(dot + 1, '.')) {
            size_t n = (size_t)(dot - rest);
            if (n >= sizeof prefix) return NULL;
            memcpy(prefix, rest, n);
            prefix[n] = '\0';
            const mk_schema_path_t *p = mk_schema_path(s, prefix);
            if (!p) break;
            mk_schematype_t t = mk_schema_path_kind(p);
            if (t != MK_TYPE_SUBDOC && t != MK_TYPE_DOCARRAY) continue;
            const char *next = dot + 1;
            if (t == MK_TYPE_DOCARRAY) { /* skip the element index */
                const char *d2 = strchr(next, '.');
                if (!d2) return p == NULL ? NULL : mk_schema_path(s, rest);
                next = d2 + 1;
            }
            s = mk_schema_path_schema(p);
            rest = next;
            descended = true;
            break;
        }
        if (!descended) break;
    }
    if (owner) *owner = s;
    return mk_schema_path(s, rest);
}

/* Keeps a getter's result alive until the next change. */
static bool keep(mk_doc_t *d, bson_value_t *v, bson_value_t *out)
{
    if (!grow((void **)&d->scratch, &d->capscratch, d->nscratch, sizeof *d->scratch)) {
        bson_value_destroy(v);
        return false;
    }
    d->scratch[d->nscratch++] = *v;
    *out = *v;
    return true;
}

static bool get_virtual(mk_doc_t *d, const char *path, bson_value_t *out, bool *handled)
{
    const mk_virtual_t *vt = mk_schema_virtual_find(d->model->schema, path);
    *handled = vt != NULL;
    if (!vt) {
        const mk_schema_options_t *o = mk_schema_options(d->model->schema);
        if (o->id_virtual && strcmp(path, "id") == 0 && !mk_schema_path(d->model->schema, "id")) {
            *handled = true;
            const char *id = mk_doc_id(d);
            if (!id) return false;
            out->value_type = BSON_TYPE_UTF8;
            out->value.v_utf8.str = (char *)id;
            out->value.v_utf8.len = (uint32_t)strlen(id);
            return true;
        }
        return false;
    }
    if (!vt->get) return false;
    bson_value_t v = {0};
    mk_error_t e = {0};
    if (vt->get(d, &v, vt->ud, &e) != MK_OK) return false;
    if (v.value_type == BSON_TYPE_EOD || v.value_type == BSON_TYPE_UNDEFINED) {
        bson_value_destroy(&v);
        return false;
    }
    return keep(d, &v, out);
}

bool mk_doc_get_raw(mk_doc_t *d, const char *path, bson_value_t *out)
{
    return path && mk_doc_lookup(d, path, out);
}

bool mk_doc_get(mk_doc_t *d, const char *path, bson_value_t *out)
{
    if (!path) return false;
    bool handled;
    bool found = get_virtual(d, path, out, &handled);
    if (handled) return found;
    if (!mk_schema_path(d->model->schema, path)) {
        const char *real = mk_schema_alias_target(d->model->schema, path);
        if (real) path = real;
    }
    bson_value_t raw;
    bool has = mk_doc_lookup(d, path, &raw);
    const mk_schema_t *owner = NULL;
    const mk_schema_path_t *p = mk_doc_schema_path(d, path, &owner);
    if (!p || !mk_schema_path_has_fn(owner, mk_schema_path_name(p), MK_FN_GETTER)) {
        if (has) *out = raw;
        return has;
    }
    /* getters run in order, each on the previous one's result; undefined is passed as NULL */
    bson_value_t cur = {0};
    bool have_cur = false;
    size_t it = 0;
    const mk_path_fn_t *fn;
    mk_fn_ctx_t ctx = {.doc = d, .path = path};
    while ((fn = mk_schema_path_fn_next(owner, mk_schema_path_name(p), MK_FN_GETTER, &it))) {
        bson_value_t next = {0};
        mk_error_t e = {0};
        const bson_value_t *in = have_cur ? &cur : (has ? &raw : NULL);
        if (fn->fn.getter(&ctx, in, &next, fn->ud, &e) != MK_OK) {
            if (have_cur) bson_value_destroy(&cur);
            return false;
        }
        if (have_cur) bson_value_destroy(&cur);
        cur = next;
        have_cur = true;
    }
    if (!have_cur || cur.value_type == BSON_TYPE_EOD || cur.value_type == BSON_TYPE_UNDEFINED) {
        if (have_cur) bson_value_destroy(&cur);
        return false;
    }
    return keep(d, &cur, out);
}

const char *mk_doc_get_str(mk_doc_t *d, const char *path)
{
    bson_value_t v;
    if (!mk_doc_get(d, path, &v) || v.value_type != BSON_TYPE_UTF8) return NULL;
    return v.value.v_utf8.str;
}

static bool as_number(const bson_value_t *v, double *out)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        *out = v->value.v_int32;
        return true;
    case BSON_TYPE_INT64:
        *out = (double)v->value.v_int64;
        return true;
    case BSON_TYPE_DOUBLE:
        *out = v->value.v_double;
        return true;
    case BSON_TYPE_DECIMAL128:
        *out = (double)mk_decimal_to_ld(&v->value.v_decimal128);
        return true;
    default:
        return false;
    }
}

int64_t mk_doc_get_i64(mk_doc_t *d, const char *path)
{
    bson_value_t v;
    if (!mk_doc_get(d, path, &v)) return 0;
    if (v.value_type == BSON_TYPE_INT64) return v.value.v_int64;
    if (v.value_type == BSON_TYPE_INT32) return v.value.v_int32;
    double x;
    if (!as_number(&v, &x) || x != x) return 0;
    if (x >= 9.2233720368547758e18) return INT64_MAX;
    if (x <= -9.2233720368547758e18) return INT64_MIN;
    return (int64_t)x;
}

double mk_doc_get_f64(mk_doc_t *d, const char *path)
{
    bson_value_t v;
    double x;
    return mk_doc_get(d, path, &v) && as_number(&v, &x) ? x : 0;
}

bool mk_doc_get_bool(mk_doc_t *d, const char *path)
{
    bson_value_t v;
    return mk_doc_get(d, path, &v) && v.value_type == BSON_TYPE_BOOL && v.value.v_bool;
}

int64_t mk_doc_get_date(mk_doc_t *d, const char *path)
{
    bson_value_t v;
    return mk_doc_get(d, path, &v) && v.value_type == BSON_TYPE_DATE_TIME ? v.value.v_datetime : 0;
}

const bson_oid_t *mk_doc_get_oid(mk_doc_t *d, const char *path)
{
    bson_value_t v;
    if (!mk_doc_get(d, path, &v) || v.value_type != BSON_TYPE_OID) return NULL;
    /* a getter's result lives in the scratch list; a stored value in the document */
    if (d->nscratch && d->scratch[d->nscratch - 1].value_type == BSON_TYPE_OID &&
        memcmp(&d->scratch[d->nscratch - 1].value.v_oid, &v.value.v_oid, 12) == 0)
        return &d->scratch[d->nscratch - 1].value.v_oid;
    return oid_at(d, path);
}

int64_t mk_doc_array_len(mk_doc_t *d, const char *path)
{
    bson_value_t v;
    if (!mk_doc_lookup(d, path, &v) || v.value_type != BSON_TYPE_ARRAY) return -1;
    bson_t arr;
    if (!bson_init_static(&arr, v.value.v_doc.data, v.value.v_doc.data_len)) return -1;
    return bson_count_keys(&arr);
}

bson_t *mk_doc_get_bson(mk_doc_t *d, const char *path)
{
    bson_value_t v;
    if (!mk_doc_get(d, path, &v) ||
        (v.value_type != BSON_TYPE_DOCUMENT && v.value_type != BSON_TYPE_ARRAY))
        return NULL;
    return bson_new_from_data(v.value.v_doc.data, v.value.v_doc.data_len);
}

/* ---- change tracking ---- */

static bool is_prefix(const char *parent, const char *path)
{
    size_t n = strlen(parent);
    return strncmp(parent, path, n) == 0 && path[n] == '.';
}

int mk_doc_mark(mk_doc_t *d, const char *path, mk_error_t *err)
{
    for (size_t i = 0; i < d->nmod; i++)
        if (strcmp(d->modified[i], path) == 0) return MK_OK;
    if (!grow((void **)&d->modified, &d->capmod, d->nmod, sizeof *d->modified))
        return mk_error_nomem(err);
    char *copy = strdup(path);
    if (!copy) return mk_error_nomem(err);
    d->modified[d->nmod++] = copy;
    return MK_OK;
}

bool mk_doc_is_modified(const mk_doc_t *d, const char *path)
{
    if (!path) return d->nmod > 0;
    for (size_t i = 0; i < d->nmod; i++) {
        const char *m = d->modified[i];
        if (strcmp(m, path) == 0 || is_prefix(path, m) || is_prefix(m, path)) return true;
    }
    return false;
}

bool mk_doc_is_direct_modified(const mk_doc_t *d, const char *path)
{
    for (size_t i = 0; i < d->nmod; i++) {
        const char *m = d->modified[i];
        if (strcmp(m, path) == 0 || is_prefix(m, path)) return true;
    }
    return false;
}

void mk_strv_free(char **v)
{
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

typedef struct strv {
    char **items;
    size_t n, cap;
    bool failed;
} strv_t;

static void strv_add(strv_t *v, const char *s, size_t len)
{
    if (v->failed) return;
    for (size_t i = 0; i < v->n; i++)
        if (strlen(v->items[i]) == len && memcmp(v->items[i], s, len) == 0) return;
    if (!grow((void **)&v->items, &v->cap, v->n + 1, sizeof *v->items)) {
        v->failed = true;
        return;
    }
    char *c = strndup(s, len);
    if (!c) {
        v->failed = true;
        return;
    }
    v->items[v->n++] = c;
    v->items[v->n] = NULL;
}

static char **strv_finish(strv_t *v)
{
    if (v->failed) {
        if (v->items) v->items[v->n] = NULL;
        mk_strv_free(v->items);
        return NULL;
    }
    if (!v->items) {
        v->items = calloc(1, sizeof *v->items);
        return v->items;
    }
    return v->items;
}

/* Adds the children of the value at `path` (documents and arrays, recursively). */
static void add_children(strv_t *v, const char *path, const bson_value_t *val, int depth)
{
    if (depth > 100 ||
        (val->value_type != BSON_TYPE_DOCUMENT && val->value_type != BSON_TYPE_ARRAY))
        return;
    bson_t b;
    bson_iter_t it;
    if (!bson_init_static(&b, val->value.v_doc.data, val->value.v_doc.data_len) ||
        !bson_iter_init(&it, &b))
        return;
    while (bson_iter_next(&it)) {
        char *child = NULL;
        if (asprintf(&child, "%s.%s", path, bson_iter_key(&it)) < 0) {
            v->failed = true;
            return;
        }
        strv_add(v, child, strlen(child));
        add_children(v, child, bson_iter_value(&it), depth + 1);
        free(child);
    }
}

char **mk_doc_modified_paths(mk_doc_t *d, bool include_children)
{
    strv_t v = {0};
    for (size_t i = 0; i < d->nmod; i++) {
        const char *m = d->modified[i];
        for (const char *dot = strchr(m, '.'); dot; dot = strchr(dot + 1, '.'))
            strv_add(&v, m, (size_t)(dot - m));
        strv_add(&v, m, strlen(m));
        if (include_children) {
            bson_value_t val;
            if (mk_doc_lookup(d, m, &val)) add_children(&v, m, &val, 0);
        }
    }
    return strv_finish(&v);
}

char **mk_doc_direct_modified_paths(const mk_doc_t *d)
{
    strv_t v = {0};
    for (size_t i = 0; i < d->nmod; i++) strv_add(&v, d->modified[i], strlen(d->modified[i]));
    return strv_finish(&v);
}

int mk_doc_mark_modified(mk_doc_t *d, const char *path, mk_error_t *err)
{
    if (!path || !*path) return mk_error_setc(err, MK_CODE_BAD_VALUE, "markModified needs a path");
    return mk_doc_mark(d, path, err);
}

void mk_doc_unmark_modified(mk_doc_t *d, const char *path)
{
    size_t w = 0;
    for (size_t i = 0; i < d->nmod; i++) {
        if (strcmp(d->modified[i], path) == 0)
            free(d->modified[i]);
        else
            d->modified[w++] = d->modified[i];
    }
    d->nmod = w;
}

mk_atomic_t *mk_doc_atomic(mk_doc_t *d, const char *path)
{
    for (size_t i = 0; i < d->natomics; i++)
        if (strcmp(d->atomics[i].path, path) == 0) return &d->atomics[i];
    return NULL;
}

void mk_doc_drop_atomic(mk_doc_t *d, const char *path)
{
    for (size_t i = 0; i < d->natomics; i++) {
        if (strcmp(d->atomics[i].path, path) == 0 || is_prefix(path, d->atomics[i].path) ||
            is_prefix(d->atomics[i].path, path)) {
            free(d->atomics[i].path);
            bson_destroy(d->atomics[i].values);
            d->atomics[i] = d->atomics[--d->natomics];
            i--;
        }
    }
}

/* ---- set ---- */

/* Whether a path not in the schema lies under a Mixed path (anything goes there). */
static bool under_mixed(const mk_doc_t *d, const char *path)
{
    char prefix[512];
    for (const char *dot = strchr(path, '.'); dot; dot = strchr(dot + 1, '.')) {
        size_t n = (size_t)(dot - path);
        if (n >= sizeof prefix) return false;
        memcpy(prefix, path, n);
        prefix[n] = '\0';
        const mk_schema_path_t *p = mk_doc_schema_path(d, prefix, NULL);
        if (p && mk_schema_path_kind(p) == MK_TYPE_MIXED) return true;
    }
    return false;
}

static bool option_true(const mk_schema_path_t *p, const char *name)
{
    bson_iter_t it;
    return mk_schema_path_option(p, name, &it) && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
}

/* Stores the cast value unless it equals the current one, and tracks the change. */
static int assign(mk_doc_t *d, const char *path, const bson_value_t *v, mk_error_t *err)
{
    bson_value_t cur;
    mk_doc_clear_cast_errors(d, path);
    if (mk_doc_lookup(d, path, &cur) && cur.value_type == v->value_type &&
        mk_value_cmp(&cur, v) == 0) {
        if (v->value_type != BSON_TYPE_DOCUMENT && v->value_type != BSON_TYPE_ARRAY) return MK_OK;
        if (cur.value.v_doc.data_len == v->value.v_doc.data_len &&
            memcmp(cur.value.v_doc.data, v->value.v_doc.data, cur.value.v_doc.data_len) == 0)
            return MK_OK;
    }
    int rc = mk_doc_store(d, path, v, err);
    if (rc != MK_OK) return rc;
    mk_doc_drop_atomic(d, path);
    return mk_doc_mark(d, path, err);
}

int mk_doc_set_value(mk_doc_t *d, const char *path, const bson_value_t *value, mk_error_t *err)
{
    if (!path || !*path || !value)
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "set needs a path and a value");
    const mk_schema_t *root = d->model->schema;
    const mk_virtual_t *vt = mk_schema_virtual_find(root, path);
    if (vt) {
        if (!vt->set) return MK_OK; /* a virtual without a setter ignores the value */
        invalidate(d);
        return vt->set(d, value, vt->ud, err);
    }
    const mk_schema_t *owner = NULL;
    const mk_schema_path_t *p = mk_doc_schema_path(d, path, &owner);
    if (!p && !strchr(path, '.')) {
        const char *real = mk_schema_alias_target(d->model->schema, path);
        if (real) {
            path = real;
            p = mk_doc_schema_path(d, path, &owner);
        }
    }
    if (!p) {
        const mk_schema_options_t *o = mk_schema_options(root);
        if (under_mixed(d, path) || o->strict == MK_STRICT_FALSE) {
            if (value->value_type == BSON_TYPE_UNDEFINED) return mk_doc_unset(d, path, err);
            return assign(d, path, value, err);
        }
        if (o->strict == MK_STRICT_THROW)
            return mk_error_set(err, 0, "StrictModeError",
                                "Field `%s` is not in schema and strict mode is set to throw.",
                                path);
        return MK_OK; /* strict: the value is dropped */
    }
    if (!d->is_new && option_true(p, "immutable")) return MK_OK; /* Mongoose ignores it */
    if (value->value_type == BSON_TYPE_UNDEFINED) return mk_doc_unset(d, path, err);
    bson_value_t cv = {0};
    mk_error_t cerr = {0};
    int rc = mk_doc_cast_path(d, owner, p, path, value, &cv, &cerr);
    if (rc == MK_ERR && strcmp(cerr.kind, "CastError") == 0) {
        /* the value stays as it was; the error makes validation fail until a good set */
        if (mk_doc_record_cast_error(d, path, &cerr, value) != MK_OK) return mk_error_nomem(err);
        if (err) *err = cerr;
        return MK_ERR;
    }
    if (rc != MK_OK) {
        if (err) *err = cerr;
        return rc;
    }
    rc = assign(d, path, &cv, err);
    bson_value_destroy(&cv);
    return rc;
}

int mk_arg_value(mk_arg_t a, bson_value_t *out, mk_error_t *err)
{
    memset(out, 0, sizeof *out);
    switch (a.type) {
    case MK_ARG_STR:
        if (!a.v.s || !bson_utf8_validate(a.v.s, strlen(a.v.s), false))
            return mk_error_setc(err, MK_CODE_BAD_VALUE, "a string argument is not valid UTF-8");
        out->value_type = BSON_TYPE_UTF8;
        out->value.v_utf8.str = (char *)a.v.s;
        out->value.v_utf8.len = (uint32_t)strlen(a.v.s);
        return MK_OK;
    case MK_ARG_I32:
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = a.v.i32;
        return MK_OK;
    case MK_ARG_I64:
        out->value_type = BSON_TYPE_INT64;
        out->value.v_int64 = a.v.i64;
        return MK_OK;
    case MK_ARG_F64:
        out->value_type = BSON_TYPE_DOUBLE;
        out->value.v_double = a.v.f64;
        return MK_OK;
    case MK_ARG_BOOL:
        out->value_type = BSON_TYPE_BOOL;
        out->value.v_bool = a.v.b;
        return MK_OK;
    case MK_ARG_OID:
        if (!a.v.oid) return mk_error_setc(err, MK_CODE_BAD_VALUE, "a NULL ObjectId argument");
        out->value_type = BSON_TYPE_OID;
        bson_oid_copy(a.v.oid, &out->value.v_oid);
        return MK_OK;
    case MK_ARG_DATE:
        out->value_type = BSON_TYPE_DATE_TIME;
        out->value.v_datetime = a.v.i64;
        return MK_OK;
    case MK_ARG_DOC:
    case MK_ARG_ARRAY:
        if (!a.v.doc) return mk_error_setc(err, MK_CODE_BAD_VALUE, "a NULL document argument");
        out->value_type = a.type == MK_ARG_DOC ? BSON_TYPE_DOCUMENT : BSON_TYPE_ARRAY;
        out->value.v_doc.data = (uint8_t *)bson_get_data(a.v.doc);
        out->value.v_doc.data_len = a.v.doc->len;
        return MK_OK;
    case MK_ARG_VALUE:
        if (!a.v.value) return mk_error_setc(err, MK_CODE_BAD_VALUE, "a NULL value argument");
        *out = *a.v.value;
        return MK_OK;
    case MK_ARG_NULL:
        out->value_type = BSON_TYPE_NULL;
        return MK_OK;
    default:
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "no value given");
    }
}

int mk_doc_set(mk_doc_t *d, const char *path, mk_arg_t value, mk_error_t *err)
{
    bson_value_t v;
    if (mk_arg_value(value, &v, err) != MK_OK) return MK_ERR;
    return mk_doc_set_value(d, path, &v, err);
}

int mk_doc_set_json_args(mk_doc_t *d, const char *path, const char *json, const mk_arg_t *args,
                         mk_error_t *err)
{
    bson_t *obj = mk_json_parse(json, args, err);
    if (!obj) return MK_ERR;
    int rc = MK_OK;
    if (path) {
        bson_value_t v = {.value_type = BSON_TYPE_DOCUMENT};
        v.value.v_doc.data = (uint8_t *)bson_get_data(obj);
        v.value.v_doc.data_len = obj->len;
        rc = mk_doc_set_value(d, path, &v, err);
    } else { /* doc.set({ ... }): each field in turn, nested objects merged */
        bson_iter_t it;
        bson_iter_init(&it, obj);
        while (rc == MK_OK && bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            const mk_schema_path_t *p = mk_doc_schema_path(d, k, NULL);
            if (p && mk_schema_path_kind(p) == MK_TYPE_NESTED && BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bson_iter_t c;
                bson_iter_recurse(&it, &c);
                while (rc == MK_OK && bson_iter_next(&c)) {
                    char *sub = NULL;
                    if (asprintf(&sub, "%s.%s", k, bson_iter_key(&c)) < 0) {
                        rc = mk_error_nomem(err);
                        break;
                    }
                    rc = mk_doc_set_value(d, sub, bson_iter_value(&c), err);
                    free(sub);
                }
            } else {
                rc = mk_doc_set_value(d, k, bson_iter_value(&it), err);
            }
        }
    }
    bson_destroy(obj);
    return rc;
}

int mk_doc_unset(mk_doc_t *d, const char *path, mk_error_t *err)
{
    bson_value_t cur;
    mk_doc_clear_cast_errors(d, path);
    if (!mk_doc_lookup(d, path, &cur)) return MK_OK;
    const mk_schema_path_t *p = mk_doc_schema_path(d, path, NULL);
    if (p && !d->is_new && option_true(p, "immutable")) return MK_OK;
    int rc = mk_doc_store(d, path, NULL, err);
    if (rc != MK_OK) return rc;
    mk_doc_drop_atomic(d, path);
    return mk_doc_mark(d, path, err);
}

/* ---- locals, methods ---- */

int mk_doc_local_set(mk_doc_t *d, const char *key, void *value, mk_error_t *err)
{
    for (size_t i = 0; i < d->nlocals; i++) {
        if (strcmp(d->locals[i].key, key) == 0) {
            d->locals[i].value = value;
            return MK_OK;
        }
    }
    if (!grow((void **)&d->locals, &d->caplocals, d->nlocals, sizeof *d->locals))
        return mk_error_nomem(err);
    char *k = strdup(key);
    if (!k) return mk_error_nomem(err);
    d->locals[d->nlocals++] = (mk_local_t){k, value};
    return MK_OK;
}

void *mk_doc_local_get(const mk_doc_t *d, const char *key)
{
    for (size_t i = 0; i < d->nlocals; i++)
        if (strcmp(d->locals[i].key, key) == 0) return d->locals[i].value;
    return NULL;
}

int mk_doc_call(mk_doc_t *d, const char *name, void *args, mk_error_t *err)
{
    const mk_named_fn_t *f = name ? mk_schema_method_find(d->model->schema, name) : NULL;
    if (!f)
        return mk_error_set(err, 0, "TypeError", "doc.%s is not a function",
                            name ? name : "(null)");
    return f->fn.method(d, args, f->ud, err);
}

/* ---- output ---- */

static bson_t *to_plain(mk_doc_t *d, bool json, const mk_to_object_opts_t *opts, mk_error_t *err)
{
    bson_t view;
    if (mk_doc_view(d, &view, err) != MK_OK) return NULL;
    mk_ser_opts_t o;
    mk_ser_resolve(d->model->schema, json, opts, &o);
    bson_t *out = bson_new();
    if (!out) {
        mk_error_nomem(err);
        return NULL;
    }
    /* the view may be invalidated by callbacks that change the document: work on a copy */
    bson_t *copy = bson_copy(&view);
    if (!copy) {
        bson_destroy(out);
        mk_error_nomem(err);
        return NULL;
    }
    int rc = mk_serialize(d->model->schema, d, copy, &o, out, err);
    bson_destroy(copy);
    if (rc != MK_OK) {
        bson_destroy(out);
        return NULL;
    }
    return out;
}

bson_t *mk_doc_to_object(mk_doc_t *d, const mk_to_object_opts_t *opts, mk_error_t *err)
{
    return to_plain(d, false, opts, err);
}

bson_t *mk_doc_to_json(mk_doc_t *d, const mk_to_object_opts_t *opts, mk_error_t *err)
{
    return to_plain(d, true, opts, err);
}

char *mk_doc_to_ejson(mk_doc_t *d, mk_error_t *err)
{
    bson_t *o = to_plain(d, true, NULL, err);
    if (!o) return NULL;
    char *s = mk_json_from_bson(o);
    bson_destroy(o);
    if (!s) mk_error_nomem(err);
    return s;
}
