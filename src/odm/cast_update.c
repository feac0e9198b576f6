/* Casting updates through a schema: Mongoose 8's castUpdate / walkUpdatePath / castUpdateVal,
 * with applyTimestampsToUpdate and moveImmutableProperties (see cast_query.h). */
#include "odm/cast_query.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "odm/schema_fns.h"

/* The update operators. */
typedef enum {
    U_CURRENTDATE,
    U_INC,
    U_MIN,
    U_MAX,
    U_MUL,
    U_RENAME,
    U_SET,
    U_SETONINSERT,
    U_UNSET,
    U_ADDTOSET,
    U_POP,
    U_PULL,
    U_PUSH,
    U_PULLALL,
    U_BIT,
    U_NONE, /* not an update operator */
} uop_t;

static uop_t update_op_n(const char *k, size_t n)
{
    if (n < 4 || k[0] != '$') return U_NONE;
    const char *s = k + 1;
    size_t m = n - 1;
#define IS(lit) (m == sizeof lit - 1 && memcmp(s, lit, sizeof lit - 1) == 0)
    switch (s[0]) {
    case 'c':
        return IS("currentDate") ? U_CURRENTDATE : U_NONE;
    case 'i':
        return IS("inc") ? U_INC : U_NONE;
    case 'm':
        return IS("min") ? U_MIN : IS("max") ? U_MAX : IS("mul") ? U_MUL : U_NONE;
    case 'r':
        return IS("rename") ? U_RENAME : U_NONE;
    case 's':
        return IS("set") ? U_SET : IS("setOnInsert") ? U_SETONINSERT : U_NONE;
    case 'u':
        return IS("unset") ? U_UNSET : U_NONE;
    case 'a':
        return IS("addToSet") ? U_ADDTOSET : U_NONE;
    case 'p':
        return IS("pop")       ? U_POP
               : IS("pull")    ? U_PULL
               : IS("push")    ? U_PUSH
               : IS("pullAll") ? U_PULLALL
                               : U_NONE;
    case 'b':
        return IS("bit") ? U_BIT : U_NONE;
    default:
        return U_NONE;
    }
#undef IS
}

static uop_t update_op(const char *k)
{
    return update_op_n(k, strlen(k));
}

static bool is_update_op(const char *k)
{
    return update_op(k) != U_NONE;
}

static bool eq(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* Operators whose values are written as data (castOps). */
static bool is_cast_op(uop_t op)
{
    return op == U_PUSH || op == U_ADDTOSET || op == U_SET || op == U_SETONINSERT;
}

static int corrupt(mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt BSON in an update");
}

static bool view_doc(const bson_value_t *v, bson_t *b)
{
    return (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) &&
           bson_init_static(b, v->value.v_doc.data, v->value.v_doc.data_len);
}

typedef struct uctx {
    const mk_schema_t *root;
    const mk_cast_update_opts_t *o;
    mk_qcast_t q;                /* castForQuery and $pull filters (no model, as Mongoose) */
    mk_cast_filter_opts_t fopts; /* cast() options inside $pull: the update's strict/upsert */
    mk_error_t *err;
} uctx_t;

static mk_strict_t strict_at(const uctx_t *u, const mk_schema_t *s)
{
    return u->o->has_strict ? u->o->strict : mk_schema_options(s ? s : u->root)->strict;
}

static mk_setters_cast_opts_t doc_opts(const uctx_t *u)
{
    mk_setters_cast_opts_t so = {
        .has_strict = u->o->has_strict, .strict = u->o->strict, .add_ids = true};
    return so;
}

/* Writes an owned result when rc is MK_OK, and frees it either way. */
static int put_owned(mk_bw_t *w, const char *key, size_t kl, int rc, bson_value_t *v)
{
    if (rc == MK_OK) mk_bw_result(w, key, kl, v);
    mk_value_release(v);
    return rc;
}

/* An update leaves out a field whose cast value is undefined. */
static void drop_undefined(mk_bw_t *w, size_t at)
{
    if (mk_bw_type_at(w, at) == BSON_TYPE_UNDEFINED) mk_bw_rollback(w, at);
}

/* ---------- castUpdateVal ---------- */

static bool is_array_kind(const mk_path_loc_t *loc)
{
    mk_schematype_t k = mk_schema_path_kind(loc->path);
    return (k == MK_TYPE_ARRAY || k == MK_TYPE_DOCARRAY) && !loc->element;
}

static bool ends_with_index(const char *path)
{
    size_t n = strlen(path);
    return n > 0 && path[n - 1] >= '0' && path[n - 1] <= '9';
}

static bool is_nullish(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED;
}

/* $push/$addToSet of an object or array to an array path: wrapped to the array's depth, cast
 * as an array (new sub-documents get their _id), then unwrapped. */
static int push_value(uctx_t *u, const mk_path_loc_t *loc, const bson_value_t *v, bson_value_t *out)
{
    int schema_depth = 0;
    for (const mk_schema_path_t *p = loc->path; p; p = mk_schema_path_element(p)) {
        mk_schematype_t k = mk_schema_path_kind(p);
        if (k != MK_TYPE_ARRAY && k != MK_TYPE_DOCARRAY) break;
        schema_depth++;
        if (k == MK_TYPE_DOCARRAY) break;
    }
    int value_depth = 0;
    bson_value_t probe = *v;
    while (probe.value_type == BSON_TYPE_ARRAY) {
        value_depth++;
        bson_t a;
        bson_iter_t it;
        if (!view_doc(&probe, &a) || !bson_iter_init(&it, &a) || !bson_iter_next(&it)) break;
        probe = *bson_iter_value(&it);
    }
    int extra = schema_depth - value_depth;
    bson_value_t wrapped;
    bson_value_copy(v, &wrapped);
    for (int d = value_depth; d < schema_depth; d++) {
        bson_t a;
        bson_init(&a);
        bson_append_value(&a, "0", 1, &wrapped);
        bson_value_destroy(&wrapped);
        mk_value_take_bson(&a, true, &wrapped);
    }
    mk_setters_cast_opts_t so = doc_opts(u);
    bson_value_t cast;
    int rc = mk_setters_cast(loc->owner, loc->path, u->q.fn, &wrapped, &so, &cast, u->err);
    bson_value_destroy(&wrapped);
    if (rc != MK_OK) return rc;
    for (int i = 0; i < extra; i++) {
        bson_t a;
        bson_iter_t it;
        if (cast.value_type != BSON_TYPE_ARRAY || !view_doc(&cast, &a) ||
            !bson_iter_init(&it, &a) || !bson_iter_next(&it))
            break;
        bson_value_t first;
        bson_value_copy(bson_iter_value(&it), &first);
        bson_value_destroy(&cast);
        cast = first;
    }
    *out = cast;
    return MK_OK;
}

/* A new element of a document array under $set: the child's fields cast, with an _id first
 * when the child has an auto one. */
static int set_element(uctx_t *u, const mk_path_loc_t *loc, const bson_value_t *v,
                       const mk_setters_cast_opts_t *so, mk_bw_t *w, const char *dk, size_t dkl)
{
    bson_t d, b;
    if (!view_doc(v, &d)) return corrupt(u->err);
    bson_init(&b);
    bson_oid_t oid;
    bson_iter_t idit;
    const mk_schema_t *child = mk_schema_path_schema(loc->path);
    const mk_schema_path_t *id = mk_schema_path(child, "_id");
    bson_iter_t auto_opt;
    if (id && mk_schema_path_option(id, "auto", &auto_opt) &&
        mk_js_truthy(bson_iter_value(&auto_opt)) && !bson_iter_init_find(&idit, &d, "_id")) {
        bson_oid_init(&oid, NULL);
        bson_append_oid(&b, "_id", 3, &oid);
    }
    int rc = mk_setters_cast_fields(child, &d, u->q.fn, so, &b, u->err);
    if (rc == MK_OK) {
        size_t at = mk_bw_begin(w, BSON_TYPE_DOCUMENT, dk, dkl);
        mk_bw_fields(w, &b);
        mk_bw_end(w, at);
    }
    bson_destroy(&b);
    return rc;
}

/* castUpdateVal(schematype, val, op, $conditional), written to `w` as the element `dk` (an
 * undefined result as BSON undefined, nothing on failure): `loc` NULL when the path is not in
 * the schema. */
static int update_put(uctx_t *u, const mk_path_loc_t *loc, const bson_value_t *v, uop_t op,
                      const char *key, const char *full, mk_bw_t *w, const char *dk, size_t dkl)
{
    bool number_op = op == U_POP || op == U_INC;
    bson_value_t c;
    if (!loc) {
        if (!number_op || is_nullish(v)) {
            mk_bw_result(w, dk, dkl, v);
            return MK_OK;
        }
        if (mk_cast_value_at(MK_CAST_NUMBER, v, NULL, NULL, &c, NULL) == MK_OK)
            return put_owned(w, dk, dkl, MK_OK, &c);
        return mk_cast_error(u->err, "number", v, full, NULL, NULL);
    }
    bool object_or_array = v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY;
    if (is_array_kind(loc) && (op == U_PUSH || op == U_ADDTOSET) && object_or_array) {
        mk_value_set_undefined(&c);
        int rc = push_value(u, loc, v, &c);
        return put_owned(w, dk, dkl, rc, &c);
    }
    if (op == U_UNSET) {
        mk_bw_result(w, dk, dkl, v);
        return MK_OK;
    }
    const char *name = mk_path_loc_name(loc);
    if (number_op) {
        if (is_nullish(v)) return mk_cast_error(u->err, "number", v, name, NULL, NULL);
        if (op == U_INC) return mk_cast_for_query_put(&u->q, loc, NULL, v, w, dk, dkl);
        if (mk_cast_value_at(MK_CAST_NUMBER, v, NULL, NULL, &c, NULL) == MK_OK)
            return put_owned(w, dk, dkl, MK_OK, &c);
        return mk_cast_error(u->err, "number", v, name, NULL, NULL);
    }
    if (op == U_CURRENTDATE) {
        if (v->value_type == BSON_TYPE_DOCUMENT) {
            bson_t d;
            bson_iter_t it;
            if (!view_doc(v, &d)) return corrupt(u->err);
            size_t at = mk_bw_begin(w, BSON_TYPE_DOCUMENT, dk, dkl);
            if (bson_iter_init_find(&it, &d, "$type"))
                mk_bw_iter(w, "$type", 5, &it);
            else
                mk_bw_null(w, "$type", 5);
            mk_bw_end(w, at);
            return MK_OK;
        }
        c.value_type = BSON_TYPE_BOOL;
        c.value.v_bool = mk_js_truthy(v);
        mk_bw_value(w, dk, dkl, &c);
        return MK_OK;
    }
    if (is_update_op(key)) return mk_cast_for_query_put(&u->q, loc, key, v, w, dk, dkl);
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    if (op == U_SET || op == U_SETONINSERT) {
        bool whole_array = !is_nullish(v) && is_array_kind(loc) && !ends_with_index(full);
        if (whole_array || kind == MK_TYPE_MIXED || loc->element || kind == MK_TYPE_SUBDOC) {
            mk_setters_cast_opts_t so = doc_opts(u);
            so.query_form = kind == MK_TYPE_SUBDOC;
            so.err_path = loc->element ? NULL : mk_path_loc_name(loc);
            if (loc->element) {
                if (v->value_type != BSON_TYPE_DOCUMENT)
                    return mk_cast_for_query_put(&u->q, loc, NULL, v, w, dk, dkl);
                return set_element(u, loc, v, &so, w, dk, dkl);
            }
            mk_value_set_undefined(&c);
            int rc = mk_setters_cast(loc->owner, loc->path, u->q.fn, v, &so, &c, u->err);
            return put_owned(w, dk, dkl, rc, &c);
        }
    }
    return mk_cast_for_query_put(&u->q, loc, NULL, v, w, dk, dkl);
}

/* update_put, then what Mongoose does with an undefined result: the field is left out. */
static int update_emit(uctx_t *u, const mk_path_loc_t *loc, const bson_value_t *v, uop_t op,
                       const char *key, const char *full, mk_bw_t *w, const char *dk, size_t dkl)
{
    size_t at = mk_bw_mark(w);
    int rc = update_put(u, loc, v, op, key, full, w, dk, dkl);
    if (rc == MK_OK) drop_undefined(w, at);
    return rc;
}

/* ---------- walkUpdatePath ---------- */

static bool immutable(const mk_path_loc_t *loc)
{
    if (!loc) return false;
    const mk_path_info_t *pi = mk_loc_info(loc);
    if (pi) return pi->immutable;
    bson_iter_t it;
    return mk_schema_path_option(loc->path, "immutable", &it) && mk_js_truthy(bson_iter_value(&it));
}

/* handleImmutable: 1 when the key is removed, 0 when kept, MK_ERR for strict 'throw'. */
static int handle_immutable(uctx_t *u, const mk_path_loc_t *loc, const char *full)
{
    if (!immutable(loc)) return 0;
    mk_strict_t st = strict_at(u, NULL);
    if (st == MK_STRICT_FALSE) return 0;
    if (st == MK_STRICT_THROW)
        return mk_error_set(u->err, 0, "StrictModeError",
                            "Field %s is immutable and strict = 'throw'", full);
    return 1;
}

/* The SchemaType Mongoose's schema._getSchema finds for a path, or NULL. Below a Mixed path
 * that is the Mixed path; an operator below an array ($pull conditions) is the array. */
static const mk_path_loc_t *schematype_of(const uctx_t *u, const char *path, size_t len,
                                          const char *key, mk_path_loc_t *loc)
{
    mk_path_locate_deep_plan(u->root, u->q.root_plan, path, len, loc);
    if (loc->kind == MK_LOC_PATH) return loc;
    if (loc->kind == MK_LOC_OPAQUE) {
        mk_schematype_t k = mk_schema_path_kind(loc->path);
        if (k == MK_TYPE_MIXED) {
            loc->kind = MK_LOC_PATH;
            loc->array = NULL;
            return loc;
        }
        if (key[0] == '$' && (k == MK_TYPE_ARRAY || k == MK_TYPE_DOCARRAY)) {
            loc->kind = MK_LOC_PATH;
            loc->array = NULL;
            loc->element = false;
            return loc;
        }
    }
    return NULL;
}

static bool has_caster(const mk_path_loc_t *st)
{
    mk_schematype_t k = mk_schema_path_kind(st->path);
    return st->element || k == MK_TYPE_ARRAY || k == MK_TYPE_DOCARRAY || k == MK_TYPE_SUBDOC;
}

/* A dotted name in a growable buffer. */
typedef struct {
    char inline_[256];
    char *s;
    size_t len;
    bool heap;
} name_t;

static bool name_join(name_t *n, const char *prefix, const char *key)
{
    n->heap = false;
    if (!prefix) {
        n->s = (char *)key;
        n->len = strlen(key);
        return true;
    }
    size_t a = strlen(prefix), b = strlen(key), len = a + b + 2;
    n->len = a + 1 + b;
    n->s = n->inline_;
    if (len > sizeof n->inline_) {
        n->s = malloc(len);
        if (!n->s) return false;
        n->heap = true;
    }
    memcpy(n->s, prefix, a);
    n->s[a] = '.';
    memcpy(n->s + a + 1, key, b + 1);
    return true;
}

static void name_free(name_t *n)
{
    if (n->heap) free(n->s);
}

/* ToInt32(Number(x)), what `x | 0` gives. */
static int32_t js_int32(const bson_value_t *v)
{
    bson_value_t n;
    double d = NAN;
    if (v->value_type == BSON_TYPE_BOOL)
        d = v->value.v_bool;
    else if (mk_cast_value_at(MK_CAST_NUMBER, v, NULL, NULL, &n, NULL) == MK_OK) {
        d = n.value_type == BSON_TYPE_INT32    ? n.value.v_int32
            : n.value_type == BSON_TYPE_DOUBLE ? n.value.v_double
                                               : 0;
        bson_value_destroy(&n);
    }
    if (!isfinite(d)) return 0;
    double t = fmod(trunc(d), 4294967296.0);
    if (t < 0) t += 4294967296.0;
    return (int32_t)(uint32_t)t;
}

/* { $each: [...], $slice, $sort, $position } under $push / $addToSet. */
static int each_modifier(uctx_t *u, const mk_path_loc_t *st, const bson_t *val, uop_t op,
                         const char *key, size_t kl, const char *full, mk_bw_t *w)
{
    bson_iter_t it;
    int rc = MK_OK;
    size_t m = mk_bw_begin(w, BSON_TYPE_DOCUMENT, key, kl);
    if (bson_iter_init_find(&it, val, "$each"))
        rc = update_emit(u, st, bson_iter_value(&it), op, key, full, w, "$each", 5);
    if (rc == MK_OK && bson_iter_init_find(&it, val, "$slice") && !BSON_ITER_HOLDS_NULL(&it) &&
        !BSON_ITER_HOLDS_UNDEFINED(&it))
        mk_bw_int32(w, "$slice", 6, js_int32(bson_iter_value(&it)));
    if (rc == MK_OK && bson_iter_init_find(&it, val, "$sort") && mk_js_truthy(bson_iter_value(&it)))
        mk_bw_iter(w, "$sort", 5, &it);
    if (rc == MK_OK && bson_iter_init_find(&it, val, "$position") && !BSON_ITER_HOLDS_NULL(&it) &&
        !BSON_ITER_HOLDS_UNDEFINED(&it)) {
        bson_value_t c;
        mk_value_set_undefined(&c);
        size_t at = mk_bw_mark(w);
        rc = put_owned(w, "$position", 9,
                       mk_cast_number_or_assert(u->err, bson_iter_value(&it), &c), &c);
        if (rc == MK_OK) drop_undefined(w, at);
    }
    mk_bw_end(w, m);
    return rc;
}

static int walk(uctx_t *u, uop_t op, mk_br_t *r, const char *prefix, mk_bw_t *w);

/* A key whose value is a plain object. */
static int walk_object(uctx_t *u, uop_t op, const char *key, size_t kl, const char *full,
                       size_t flen, const bson_value_t *v, mk_bw_t *w)
{
    bson_t val;
    if (!view_doc(v, &val)) return corrupt(u->err);
    mk_path_loc_t loc;
    const mk_path_loc_t *st = schematype_of(u, full, flen, key, &loc);
    if (op != U_SETONINSERT) {
        int im = handle_immutable(u, st, full);
        if (im != 0) return im == 1 ? MK_OK : im;
    }
    if (st && has_caster(st) && is_cast_op(op)) {
        bson_iter_t each;
        if (bson_iter_init_find(&each, &val, "$each"))
            return each_modifier(u, st, &val, op, key, kl, full, w);
        if (mk_schema_path_kind(st->path) == MK_TYPE_SUBDOC && !st->element) {
            mk_setters_cast_opts_t so = doc_opts(u);
            so.query_form = true;
            so.err_path = mk_path_loc_name(st);
            bson_value_t c;
            mk_value_set_undefined(&c);
            size_t at = mk_bw_mark(w);
            int rc = put_owned(
                w, key, kl, mk_setters_cast(st->owner, st->path, u->q.fn, v, &so, &c, u->err), &c);
            if (rc == MK_OK) drop_undefined(w, at);
            return rc;
        }
        return update_emit(u, st, v, op, key, full, w, key, kl);
    }
    if (op == U_CURRENTDATE || (is_cast_op(op) && st))
        return update_emit(u, st, v, op, key, full, w, key, kl);
    /* walk into the object: a nested path, or a path not in the schema */
    if (loc.kind == MK_LOC_UNKNOWN ||
        (loc.kind == MK_LOC_OPAQUE && mk_schema_path_kind(loc.path) != MK_TYPE_MIXED)) {
        mk_strict_t strict = strict_at(u, loc.owner);
        if (strict == MK_STRICT_THROW)
            return mk_error_set(u->err, 0, "StrictModeError",
                                "Field `%s` is not in schema and strict mode is set to throw.",
                                full);
        if (strict == MK_STRICT_TRUE) return MK_OK;
    }
    size_t sub = mk_bw_begin(w, BSON_TYPE_DOCUMENT, key, kl);
    mk_br_t r;
    mk_br_init(&r, v->value.v_doc.data, v->value.v_doc.data_len);
    int rc = walk(u, op, &r, full, w);
    mk_bw_end(w, sub);
    return rc;
}

static bool is_modifier_key(const char *k)
{
    return eq(k, "$each") || eq(k, "$or") || eq(k, "$and") || eq(k, "$in");
}

/* A key whose value is not a plain object. */
static int walk_value(uctx_t *u, uop_t op, const char *key, size_t kl, const char *prefix,
                      const char *full, size_t flen, const bson_value_t *v, mk_bw_t *w)
{
    bool modifier = key[0] == '$' && is_modifier_key(key);
    if (modifier && !prefix)
        return mk_error_set(u->err, 0, "MongooseError",
                            "Invalid update: Unexpected modifier \"%s\" as a key in operator. Did "
                            "you mean something like { $addToSet: { fieldName: { $each: [...] } "
                            "} }? Modifiers such as \"$each\", \"$or\", \"$and\", \"$in\" must "
                            "appear under a valid field path.",
                            key);
    const char *check = modifier ? prefix : full;
    mk_path_loc_t loc;
    const mk_path_loc_t *st = schematype_of(u, check, modifier ? strlen(check) : flen, key, &loc);
    if (op != U_SETONINSERT) {
        int im = handle_immutable(u, st, full);
        if (im != 0) return im == 1 ? MK_OK : im;
    }
    if (!st && loc.kind != MK_LOC_NESTED) {
        mk_strict_t strict = strict_at(u, loc.owner);
        if (strict == MK_STRICT_THROW && !mk_schema_virtual_find(u->root, check))
            return mk_error_set(u->err, 0, "StrictModeError",
                                "Field `%s` is not in schema and strict mode is set to throw.",
                                full);
        if (strict != MK_STRICT_FALSE) return MK_OK;
    }
    if (op == U_RENAME) {
        mk_bw_value(w, key, kl, v); /* Mongoose 8 leaves $rename values alone */
        return MK_OK;
    }
    size_t at = mk_bw_mark(w);
    int rc = update_emit(u, st, v, op, key, full, w, key, kl);
    if (rc != MK_OK) return rc;
    if (mk_bw_type_at(w, at) == BSON_TYPE_ARRAY && (op == U_ADDTOSET || op == U_PUSH) &&
        !eq(key, "$each") && st && !st->element) {
        mk_schematype_t k = mk_schema_path_kind(st->path);
        const mk_schema_path_t *e = mk_schema_path_element(st->path);
        bool wrap = k == MK_TYPE_DOCARRAY ||
                    (k == MK_TYPE_ARRAY && e && mk_schema_path_kind(e) != MK_TYPE_ARRAY &&
                     mk_schema_path_kind(e) != MK_TYPE_MIXED);
        if (wrap) mk_bw_wrap(w, at, "$each"); /* pushing an array pushes its elements */
    }
    return MK_OK;
}

/* $pull on a sub-document or document array: its value is a filter of the child schema. */
static int walk_pull_filter(uctx_t *u, const char *key, size_t kl, const mk_path_loc_t *st,
                            const bson_value_t *v, mk_bw_t *w)
{
    bson_t f;
    if (v->value_type != BSON_TYPE_DOCUMENT) {
        mk_bw_value(w, key, kl, v);
        return MK_OK;
    }
    if (!view_doc(v, &f)) return corrupt(u->err);
    size_t c = mk_bw_begin(w, BSON_TYPE_DOCUMENT, key, kl);
    int rc = mk_cast_filter_into(&u->q, mk_schema_path_schema(st->path), &f, w);
    mk_bw_end(w, c);
    return rc;
}

/* One field of an operator's object: `key` under `prefix` (NULL at the top). */
static int walk_key(uctx_t *u, uop_t op, const char *key, size_t kl, const bson_value_t *v,
                    const char *prefix, mk_bw_t *w)
{
    name_t full;
    if (!name_join(&full, prefix, key)) return mk_error_nomem(u->err);
    int rc = MK_OK;
    bool done = false;
    if (op == U_PULL) {
        mk_path_loc_t loc;
        mk_path_locate_deep(u->root, full.s, &loc);
        mk_schematype_t k = loc.kind == MK_LOC_PATH ? mk_schema_path_kind(loc.path) : 0;
        if (k == MK_TYPE_DOCARRAY || k == MK_TYPE_SUBDOC) {
            rc = walk_pull_filter(u, key, kl, &loc, v, w);
            done = true;
        }
    }
    if (!done && op == U_BIT && v->value_type == BSON_TYPE_DOCUMENT) {
        /* { and|or|xor: n } is kept; only the path follows `strict` */
        mk_path_loc_t loc;
        mk_path_locate_deep(u->root, full.s, &loc);
        if (loc.kind == MK_LOC_PATH || strict_at(u, loc.owner) == MK_STRICT_FALSE)
            mk_bw_value(w, key, kl, v);
        else if (strict_at(u, loc.owner) == MK_STRICT_THROW)
            rc = mk_error_set(u->err, 0, "StrictModeError",
                              "Field `%s` is not in schema and strict mode is set to throw.",
                              full.s);
        done = true;
    }
    if (!done) {
        if (v->value_type == BSON_TYPE_DOCUMENT)
            rc = walk_object(u, op, key, kl, full.s, full.len, v, w);
        else
            rc = walk_value(u, op, key, kl, prefix, full.s, full.len, v, w);
    }
    name_free(&full);
    return rc;
}

static int walk(uctx_t *u, uop_t op, mk_br_t *r, const char *prefix, mk_bw_t *w)
{
    int result = MK_OK;
    mk_elem_t e;
    while (mk_br_next(r, &e)) {
        int rc = walk_key(u, op, e.key, e.keylen, &e.v, prefix, w);
        if (rc == MK_ENOMEM) return rc;
        if (rc != MK_OK) result = rc; /* Mongoose walks keys last to first: the first wins */
    }
    return result;
}

/* ---------- the update as a whole ---------- */

static const char *js_typeof(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL:
        return "string";
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
        return "number";
    case BSON_TYPE_BOOL:
        return "boolean";
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_EOD:
        return "undefined";
    default:
        return "object";
    }
}

/* A top-level field of an update. */
typedef struct {
    const char *key;
    uint32_t keylen;
    uop_t op;
    bson_value_t v; /* a view into the update */
} top_t;

/* One operator's fields (those of `val`, then the `nsugar` sugar keys merged into $set), cast
 * into `w` unless nothing is left. */
static int cast_op(uctx_t *u, uop_t op, const char *name, const bson_value_t *val,
                   const top_t *sugar, size_t nsugar, mk_bw_t *w)
{
    mk_br_t r;
    if (val) {
        switch (val->value_type) {
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            break;
        case BSON_TYPE_DATE_TIME:
        case BSON_TYPE_OID:
        case BSON_TYPE_REGEX:
        case BSON_TYPE_DECIMAL128:
        case BSON_TYPE_TIMESTAMP:
        case BSON_TYPE_MINKEY:
        case BSON_TYPE_MAXKEY:
            return MK_OK; /* an object without keys: nothing to update */
        default:
            return mk_error_set(u->err, 0, "Error",
                                "Invalid atomic update value for %s. Expected an object, "
                                "received %s",
                                name, js_typeof(val));
        }
        if (!mk_br_init_value(&r, val)) return corrupt(u->err);
    }
    size_t mark = mk_bw_mark(w);
    size_t at = mk_bw_begin(w, BSON_TYPE_DOCUMENT, name, strlen(name));
    int rc = val ? walk(u, op, &r, NULL, w) : MK_OK;
    for (size_t i = 0; i < nsugar && rc != MK_ENOMEM; i++) {
        if (sugar[i].op != U_NONE) continue;
        int sr = walk_key(u, op, sugar[i].key, sugar[i].keylen, &sugar[i].v, NULL, w);
        if (sr != MK_OK) rc = sr;
    }
    mk_bw_end(w, at);
    if (rc != MK_OK || (!w->oom && w->len == at + 5)) mk_bw_rollback(w, mark); /* empty */
    return rc;
}

#define MAX_TOP 32

/* Casts the operators of an update in order. With `merge_sugar` (no timestamps, no upsert: the
 * update is its own normal form), the keys that are not operators are merged into $set as
 * normalize() would: the explicit $set's fields first, at the place of the first of them. */
static int cast_ops(uctx_t *u, const bson_t *update, bool merge_sugar, mk_bw_t *w)
{
    mk_br_t r;
    mk_elem_t e;
    top_t local[MAX_TOP], *tops = local;
    size_t n = 0, cap = MAX_TOP;
    if (!mk_br_init_bson(&r, update)) return MK_OK;
    while (mk_br_next(&r, &e)) {
        if (n == cap) { /* a long update */
            top_t *g =
                tops == local ? malloc(2 * cap * sizeof *g) : realloc(tops, 2 * cap * sizeof *g);
            if (!g) {
                if (tops != local) free(tops);
                return mk_error_nomem(u->err);
            }
            if (tops == local) memcpy(g, local, sizeof local);
            tops = g;
            cap *= 2;
        }
        tops[n].key = e.key;
        tops[n].keylen = e.keylen;
        tops[n].op = update_op_n(e.key, e.keylen);
        tops[n].v = e.v;
        n++;
    }
    const bson_value_t *explicit_set = NULL;
    if (merge_sugar)
        for (size_t i = 0; i < n; i++)
            if (tops[i].op == U_SET) {
                if (tops[i].v.value_type == BSON_TYPE_DOCUMENT) explicit_set = &tops[i].v;
                break;
            }
    bool set_done = false, soi_done = false;
    int result = MK_OK;
    for (size_t i = 0; i < n; i++) {
        uop_t op = tops[i].op;
        int rc;
        if (merge_sugar && (op == U_NONE || (op == U_SET && explicit_set))) {
            if (set_done) continue;
            set_done = true;
            rc = cast_op(u, U_SET, "$set", explicit_set, tops, n, w);
        } else if (merge_sugar && op == U_SETONINSERT &&
                   tops[i].v.value_type == BSON_TYPE_DOCUMENT) {
            if (soi_done) continue;
            soi_done = true;
            rc = cast_op(u, op, tops[i].key, &tops[i].v, NULL, 0, w);
        } else {
            rc = cast_op(u, op, tops[i].key, &tops[i].v, NULL, 0, w);
        }
        if (rc == MK_ENOMEM) {
            result = rc;
            break;
        }
        if (rc != MK_OK) result = rc;
    }
    if (tops != local) free(tops);
    return result;
}

/* The path a key of $set / a top-level key designates is immutable (moveImmutableProperties). */
static bool moves_to_insert(const uctx_t *u, const char *path)
{
    mk_path_loc_t loc;
    mk_path_locate_deep(u->root, path, &loc);
    return loc.kind == MK_LOC_PATH && immutable(&loc);
}

static bool is_ts(const char *name, const char *key)
{
    return name && strcmp(name, key) == 0;
}

/* Calls fn for each field of an upsert's $set and each top-level sugar key whose path is
 * immutable (moveImmutableProperties moves them to $setOnInsert). */
static bool each_moved(const uctx_t *u, const bson_t *update, mk_bw_t *soi)
{
    bool any = false;
    bson_iter_t it, f;
    if (!u->o->upsert || !bson_iter_init(&it, update)) return false;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (eq(k, "$set") && BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &f)) {
            while (bson_iter_next(&f)) {
                if (is_ts(u->o->created_at, bson_iter_key(&f)) ||
                    !moves_to_insert(u, bson_iter_key(&f)))
                    continue;
                any = true;
                if (soi) mk_bw_iter(soi, NULL, 0, &f);
            }
        } else if (!is_update_op(k) && !is_ts(u->o->created_at, k) && moves_to_insert(u, k)) {
            any = true;
            if (soi) mk_bw_iter(soi, NULL, 0, &it);
        }
    }
    return any;
}

/* Whether a key of $set (or a sugar key) stays in $set. */
static bool stays_in_set(const uctx_t *u, const char *k, bool set_updated)
{
    if (is_ts(u->o->created_at, k) || (set_updated && is_ts(u->o->updated_at, k))) return false;
    return !(u->o->upsert && moves_to_insert(u, k));
}

/* Builds the update Mongoose casts: timestamps applied (applyTimestampsToUpdate runs in a
 * pre hook, before casting), keys that are not update operators merged into $set after the
 * $set fields, immutable paths of an upsert moved to $setOnInsert. $set takes the place of
 * the first of $set and the merged keys; $setOnInsert its own place, or the end. */
static void normalize(uctx_t *u, const bson_t *update, mk_bw_t *norm)
{
    const mk_cast_update_opts_t *o = u->o;
    bson_iter_t it, cd, set_it;
    bool current_date_updated = o->updated_at && bson_iter_init_find(&it, update, "$currentDate") &&
                                BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &cd) &&
                                bson_iter_find(&cd, o->updated_at);
    bool set_updated = o->updated_at && !current_date_updated;
    bool explicit_set =
        bson_iter_init_find(&set_it, update, "$set") && BSON_ITER_HOLDS_DOCUMENT(&set_it);
    bool set_done = false, soi_done = false;
    if (!bson_iter_init(&it, update)) return;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool sugar = !is_update_op(k);
        if (sugar || (eq(k, "$set") && explicit_set)) {
            if (set_done) continue;
            set_done = true;
            bson_iter_t f;
            size_t set = mk_bw_begin(norm, BSON_TYPE_DOCUMENT, "$set", 4);
            if (explicit_set && bson_iter_recurse(&set_it, &f))
                while (bson_iter_next(&f))
                    if (stays_in_set(u, bson_iter_key(&f), set_updated))
                        mk_bw_iter(norm, NULL, 0, &f);
            if (bson_iter_init(&f, update))
                while (bson_iter_next(&f))
                    if (!is_update_op(bson_iter_key(&f)) &&
                        stays_in_set(u, bson_iter_key(&f), set_updated))
                        mk_bw_iter(norm, NULL, 0, &f);
            if (set_updated) mk_bw_date(norm, o->updated_at, strlen(o->updated_at), o->now);
            mk_bw_end(norm, set);
        } else if (eq(k, "$setOnInsert") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            if (soi_done) continue;
            soi_done = true;
            bson_iter_t f;
            size_t soi = mk_bw_begin(norm, BSON_TYPE_DOCUMENT, k, strlen(k));
            if (bson_iter_recurse(&it, &f))
                while (bson_iter_next(&f))
                    if (!is_ts(o->created_at, bson_iter_key(&f))) mk_bw_iter(norm, NULL, 0, &f);
            each_moved(u, update, norm);
            if (o->created_at) mk_bw_date(norm, o->created_at, strlen(o->created_at), o->now);
            mk_bw_end(norm, soi);
        } else {
            mk_bw_iter(norm, NULL, 0, &it);
        }
    }
    if (!set_done && set_updated) {
        size_t set = mk_bw_begin(norm, BSON_TYPE_DOCUMENT, "$set", 4);
        mk_bw_date(norm, o->updated_at, strlen(o->updated_at), o->now);
        mk_bw_end(norm, set);
    }
    if (!soi_done && (o->created_at || each_moved(u, update, NULL))) {
        size_t soi = mk_bw_begin(norm, BSON_TYPE_DOCUMENT, "$setOnInsert", 12);
        each_moved(u, update, norm);
        if (o->created_at) mk_bw_date(norm, o->created_at, strlen(o->created_at), o->now);
        mk_bw_end(norm, soi);
    }
}

/* A replacement: timestamps filled in when missing (or falsy), then cast as a document. */
static int cast_replacement(uctx_t *u, const bson_t *update, bson_t *out)
{
    const mk_cast_update_opts_t *o = u->o;
    bson_t doc;
    bson_init(&doc);
    bson_iter_t it;
    bool has_upd = false, has_cre = false;
    if (bson_iter_init(&it, update)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            bool falsy = !mk_js_truthy(bson_iter_value(&it));
            if (is_ts(o->updated_at, k)) {
                has_upd = true;
                if (falsy) {
                    bson_append_date_time(&doc, k, -1, o->now);
                    continue;
                }
            } else if (is_ts(o->created_at, k)) {
                has_cre = true;
                if (falsy) {
                    bson_append_date_time(&doc, k, -1, o->now);
                    continue;
                }
            }
            bson_append_iter(&doc, NULL, 0, &it);
        }
    }
    if (o->updated_at && !has_upd) bson_append_date_time(&doc, o->updated_at, -1, o->now);
    if (o->created_at && !has_cre) bson_append_date_time(&doc, o->created_at, -1, o->now);
    mk_setters_cast_opts_t so = doc_opts(u);
    int rc = mk_setters_cast_fields(u->root, &doc, u->q.fn, &so, out, u->err);
    bson_destroy(&doc);
    return rc;
}

int mk_cast_update(const mk_schema_t *s, const char *model_name, const bson_t *update,
                   const mk_cast_update_opts_t *opts, const mk_fn_ctx_t *ctx, bson_t *out,
                   mk_error_t *err)
{
    static const mk_cast_update_opts_t none = {0};
    (void)model_name; /* Mongoose's update CastErrors do not name the model */
    if (!s || !update || !out)
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "mk_cast_update needs a schema and an update");
    if (!opts) opts = &none;
    uctx_t u = {.root = s, .o = opts, .err = err};
    u.fopts.upsert = opts->upsert;
    u.fopts.has_strict = true;
    u.fopts.strict = strict_at(&u, s);
    u.fopts.ctx = ctx;
    u.q = (mk_qcast_t){.root = s,
                       .model = NULL,
                       .fn = ctx,
                       .fopts = &u.fopts,
                       .err = err,
                       .root_plan = mk_cast_plan(s)};
    if (opts->overwrite) return cast_replacement(&u, update, out);
    mk_bw_t w, norm;
    mk_bw_init(&w);
    mk_bw_init(&norm);
    int rc;
    bson_t view;
    if (!opts->upsert && !opts->created_at && !opts->updated_at) {
        /* nothing to add or move: the update is its own normal form, its sugar keys merged
         * into $set as they are met */
        rc = cast_ops(&u, update, true, &w);
    } else {
        normalize(&u, update, &norm);
        if (norm.oom || !mk_bw_finish(&norm, &view))
            rc = mk_error_nomem(err);
        else
            rc = cast_ops(&u, &view, false, &w);
    }
    if (w.oom || !mk_bw_finish(&w, &view))
        rc = mk_error_nomem(err);
    else
        bson_concat(out, &view);
    mk_bw_free(&w);
    mk_bw_free(&norm);
    return rc;
}

/* ---------- touched paths ---------- */

static int add_path(mk_update_paths_t *ps, const char *op, const char *path, const bson_value_t *v,
                    mk_error_t *err)
{
    if (ps->count == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        mk_update_path_t *g = realloc(ps->items, cap * sizeof *g);
        if (!g) return mk_error_nomem(err);
        ps->items = g;
        ps->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy) return mk_error_nomem(err);
    ps->items[ps->count++] = (mk_update_path_t){.op = op, .path = copy, .value = *v};
    return MK_OK;
}

static bool first_key_is_modifier(const bson_value_t *v)
{
    bson_t d;
    bson_iter_t it;
    return view_doc(v, &d) && bson_iter_init(&it, &d) && bson_iter_next(&it) &&
           bson_iter_key(&it)[0] == '$';
}

static int touched(const mk_schema_t *s, const char *op, const bson_t *obj, const char *prefix,
                   mk_update_paths_t *ps, mk_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, obj)) return corrupt(err);
    while (bson_iter_next(&it)) {
        name_t full;
        if (!name_join(&full, prefix, bson_iter_key(&it))) return mk_error_nomem(err);
        const bson_value_t *v = bson_iter_value(&it);
        int rc;
        bool flatten = false;
        if (v->value_type == BSON_TYPE_DOCUMENT && !first_key_is_modifier(v)) {
            mk_path_loc_t loc;
            mk_path_locate_deep(s, full.s, &loc);
            flatten = loc.kind == MK_LOC_NESTED || loc.kind == MK_LOC_UNKNOWN;
        }
        if (flatten) {
            bson_t sub;
            rc = view_doc(v, &sub) ? touched(s, op, &sub, full.s, ps, err) : corrupt(err);
        } else {
            rc = add_path(ps, op, full.s, v, err);
        }
        name_free(&full);
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

int mk_update_touched_paths(const mk_schema_t *s, const bson_t *cast_update, mk_update_paths_t *out,
                            mk_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, cast_update)) return corrupt(err);
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) continue;
        bson_t sub;
        if (!view_doc(bson_iter_value(&it), &sub)) return corrupt(err);
        int rc = touched(s, bson_iter_key(&it), &sub, NULL, out, err);
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

void mk_update_paths_destroy(mk_update_paths_t *paths)
{
    if (!paths) return;
    for (size_t i = 0; i < paths->count; i++) free(paths->items[i].path);
    free(paths->items);
    paths->items = NULL;
    paths->count = paths->cap = 0;
}
