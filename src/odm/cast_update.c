/* Casting updates through a schema: Mongoose 8's castUpdate / walkUpdatePath / castUpdateVal,
 * with applyTimestampsToUpdate and moveImmutableProperties (see cast_query.h). */
#include "odm/cast_query.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "odm/schema_fns.h"

static const char *const update_ops[] = {
    "$currentDate", "$inc",      "$min", "$max",  "$mul",  "$rename",  "$set", "$setOnInsert",
    "$unset",       "$addToSet", "$pop", "$pull", "$push", "$pullAll", "$bit"};

static bool is_update_op(const char *k)
{
    if (k[0] != '$') return false;
    for (size_t i = 0; i < sizeof update_ops / sizeof update_ops[0]; i++)
        if (update_ops[i][1] == k[1] && strcmp(k, update_ops[i]) == 0) return true;
    return false;
}

static bool eq(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* Operators whose values are written as data (castOps). */
static bool is_cast_op(const char *op)
{
    return eq(op, "$push") || eq(op, "$addToSet") || eq(op, "$set") || eq(op, "$setOnInsert");
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

/* castUpdateVal(schematype, val, op, $conditional): `loc` NULL when the path is not in the
 * schema. */
static int update_value(uctx_t *u, const mk_path_loc_t *loc, const bson_value_t *v, const char *op,
                        const char *key, const char *full, bson_value_t *out)
{
    mk_value_set_undefined(out);
    bool number_op = eq(op, "$pop") || eq(op, "$inc");
    if (!loc) {
        if (!number_op) {
            bson_value_copy(v, out);
            return MK_OK;
        }
        if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) {
            bson_value_copy(v, out);
            return MK_OK;
        }
        if (mk_cast_value_at(MK_CAST_NUMBER, v, NULL, NULL, out, NULL) == MK_OK) return MK_OK;
        return mk_cast_error(u->err, "number", v, full, NULL, NULL);
    }
    bool object_or_array = v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY;
    if (is_array_kind(loc) && (eq(op, "$push") || eq(op, "$addToSet")) && object_or_array)
        return push_value(u, loc, v, out);
    if (eq(op, "$unset")) {
        bson_value_copy(v, out);
        return MK_OK;
    }
    const char *name = mk_path_loc_name(loc);
    if (number_op) {
        if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED)
            return mk_cast_error(u->err, "number", v, name, NULL, NULL);
        if (eq(op, "$inc")) return mk_cast_for_query(&u->q, loc, NULL, v, out);
        if (mk_cast_value_at(MK_CAST_NUMBER, v, NULL, NULL, out, NULL) == MK_OK) return MK_OK;
        return mk_cast_error(u->err, "number", v, name, NULL, NULL);
    }
    if (eq(op, "$currentDate")) {
        if (v->value_type == BSON_TYPE_DOCUMENT) {
            bson_t d, r;
            bson_iter_t it;
            if (!view_doc(v, &d)) return corrupt(u->err);
            bson_init(&r);
            if (bson_iter_init_find(&it, &d, "$type"))
                bson_append_iter(&r, "$type", 5, &it);
            else
                bson_append_null(&r, "$type", 5);
            mk_value_take_bson(&r, false, out);
            return MK_OK;
        }
        out->value_type = BSON_TYPE_BOOL;
        out->value.v_bool = mk_js_truthy(v);
        return MK_OK;
    }
    if (is_update_op(key)) return mk_cast_for_query(&u->q, loc, key, v, out);
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    if (eq(op, "$set") || eq(op, "$setOnInsert")) {
        bool whole_array = v->value_type != BSON_TYPE_NULL &&
                           v->value_type != BSON_TYPE_UNDEFINED && is_array_kind(loc) &&
                           !ends_with_index(full);
        if (whole_array || kind == MK_TYPE_MIXED || loc->element || kind == MK_TYPE_SUBDOC) {
            mk_setters_cast_opts_t so = doc_opts(u);
            so.query_form = kind == MK_TYPE_SUBDOC;
            so.err_path = loc->element ? NULL : mk_path_loc_name(loc);
            if (loc->element) {
                if (v->value_type != BSON_TYPE_DOCUMENT)
                    return mk_cast_for_query(&u->q, loc, NULL, v, out);
                bson_t d, b;
                if (!view_doc(v, &d)) return corrupt(u->err);
                bson_init(&b);
                bson_oid_t oid;
                bson_iter_t idit;
                const mk_schema_t *child = mk_schema_path_schema(loc->path);
                const mk_schema_path_t *id = mk_schema_path(child, "_id");
                bson_iter_t auto_opt;
                if (id && mk_schema_path_option(id, "auto", &auto_opt) &&
                    mk_js_truthy(bson_iter_value(&auto_opt)) &&
                    !bson_iter_init_find(&idit, &d, "_id")) {
                    bson_oid_init(&oid, NULL);
                    bson_append_oid(&b, "_id", 3, &oid);
                }
                int rc = mk_setters_cast_fields(child, &d, u->q.fn, &so, &b, u->err);
                if (rc != MK_OK) {
                    bson_destroy(&b);
                    return rc;
                }
                mk_value_take_bson(&b, false, out);
                return MK_OK;
            }
            return mk_setters_cast(loc->owner, loc->path, u->q.fn, v, &so, out, u->err);
        }
    }
    return mk_cast_for_query(&u->q, loc, NULL, v, out);
}

/* ---------- walkUpdatePath ---------- */

static bool immutable(const mk_path_loc_t *loc)
{
    bson_iter_t it;
    return loc && mk_schema_path_option(loc->path, "immutable", &it) &&
           mk_js_truthy(bson_iter_value(&it));
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
static const mk_path_loc_t *schematype_of(const mk_schema_t *root, const char *path,
                                          const char *key, mk_path_loc_t *loc)
{
    mk_path_locate_deep(root, path, loc);
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
    bool heap;
} name_t;

static bool name_join(name_t *n, const char *prefix, const char *key)
{
    n->heap = false;
    if (!prefix) {
        n->s = (char *)key;
        return true;
    }
    size_t a = strlen(prefix), b = strlen(key), len = a + b + 2;
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

static int emit_value(bson_t *dst, const char *key, bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_UNDEFINED) bson_append_value(dst, key, -1, v);
    bson_value_destroy(v);
    return MK_OK;
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
static int each_modifier(uctx_t *u, const mk_path_loc_t *st, const bson_t *val, const char *op,
                         const char *key, const char *full, bson_t *dst)
{
    bson_iter_t it;
    bson_t m;
    int rc = MK_OK;
    bson_append_document_begin(dst, key, -1, &m);
    if (bson_iter_init_find(&it, val, "$each")) {
        bson_value_t c;
        rc = update_value(u, st, bson_iter_value(&it), op, key, full, &c);
        if (rc == MK_OK) emit_value(&m, "$each", &c);
    }
    if (rc == MK_OK && bson_iter_init_find(&it, val, "$slice") && !BSON_ITER_HOLDS_NULL(&it) &&
        !BSON_ITER_HOLDS_UNDEFINED(&it))
        bson_append_int32(&m, "$slice", 6, js_int32(bson_iter_value(&it)));
    if (rc == MK_OK && bson_iter_init_find(&it, val, "$sort") && mk_js_truthy(bson_iter_value(&it)))
        bson_append_iter(&m, "$sort", 5, &it);
    if (rc == MK_OK && bson_iter_init_find(&it, val, "$position") && !BSON_ITER_HOLDS_NULL(&it) &&
        !BSON_ITER_HOLDS_UNDEFINED(&it)) {
        bson_value_t c;
        rc = mk_cast_number_or_assert(u->err, bson_iter_value(&it), &c);
        if (rc == MK_OK) emit_value(&m, "$position", &c);
    }
    bson_append_document_end(dst, &m);
    return rc;
}

static int walk(uctx_t *u, const char *op, const bson_t *obj, const char *prefix, bson_t *dst);

/* A key whose value is a plain object. */
static int walk_object(uctx_t *u, const char *op, const char *key, const char *full,
                       const bson_value_t *v, bson_t *dst)
{
    bson_t val;
    if (!view_doc(v, &val)) return corrupt(u->err);
    mk_path_loc_t loc;
    const mk_path_loc_t *st = schematype_of(u->root, full, key, &loc);
    if (!eq(op, "$setOnInsert")) {
        int im = handle_immutable(u, st, full);
        if (im != 0) return im == 1 ? MK_OK : im;
    }
    if (st && has_caster(st) && is_cast_op(op)) {
        bson_iter_t each;
        if (bson_iter_init_find(&each, &val, "$each"))
            return each_modifier(u, st, &val, op, key, full, dst);
        bson_value_t c;
        int rc;
        if (mk_schema_path_kind(st->path) == MK_TYPE_SUBDOC && !st->element) {
            mk_setters_cast_opts_t so = doc_opts(u);
            so.query_form = true;
            so.err_path = mk_path_loc_name(st);
            rc = mk_setters_cast(st->owner, st->path, u->q.fn, v, &so, &c, u->err);
        } else {
            rc = update_value(u, st, v, op, key, full, &c);
        }
        if (rc != MK_OK) return rc;
        return emit_value(dst, key, &c);
    }
    if (eq(op, "$currentDate") || (is_cast_op(op) && st)) {
        bson_value_t c;
        int rc = update_value(u, st, v, op, key, full, &c);
        if (rc != MK_OK) return rc;
        return emit_value(dst, key, &c);
    }
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
    bson_t sub;
    bson_append_document_begin(dst, key, -1, &sub);
    int rc = walk(u, op, &val, full, &sub);
    bson_append_document_end(dst, &sub);
    return rc;
}

static bool is_modifier_key(const char *k)
{
    return eq(k, "$each") || eq(k, "$or") || eq(k, "$and") || eq(k, "$in");
}

/* A key whose value is not a plain object. */
static int walk_value(uctx_t *u, const char *op, const char *key, const char *prefix,
                      const char *full, const bson_value_t *v, bson_t *dst)
{
    bool modifier = is_modifier_key(key);
    if (modifier && !prefix)
        return mk_error_set(u->err, 0, "MongooseError",
                            "Invalid update: Unexpected modifier \"%s\" as a key in operator. Did "
                            "you mean something like { $addToSet: { fieldName: { $each: [...] } "
                            "} }? Modifiers such as \"$each\", \"$or\", \"$and\", \"$in\" must "
                            "appear under a valid field path.",
                            key);
    const char *check = modifier ? prefix : full;
    mk_path_loc_t loc;
    const mk_path_loc_t *st = schematype_of(u->root, check, key, &loc);
    if (!eq(op, "$setOnInsert")) {
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
    if (eq(op, "$rename")) {
        bson_append_value(dst, key, -1, v); /* Mongoose 8 leaves $rename values alone */
        return MK_OK;
    }
    bson_value_t c;
    int rc = update_value(u, st, v, op, key, full, &c);
    if (rc != MK_OK) return rc;
    if (c.value_type == BSON_TYPE_ARRAY && (eq(op, "$addToSet") || eq(op, "$push")) &&
        !eq(key, "$each") && st && !st->element) {
        mk_schematype_t k = mk_schema_path_kind(st->path);
        const mk_schema_path_t *e = mk_schema_path_element(st->path);
        bool wrap = k == MK_TYPE_DOCARRAY ||
                    (k == MK_TYPE_ARRAY && e && mk_schema_path_kind(e) != MK_TYPE_ARRAY &&
                     mk_schema_path_kind(e) != MK_TYPE_MIXED);
        if (wrap) { /* pushing an array pushes its elements */
            bson_t m;
            bson_append_document_begin(dst, key, -1, &m);
            emit_value(&m, "$each", &c);
            bson_append_document_end(dst, &m);
            return MK_OK;
        }
    }
    return emit_value(dst, key, &c);
}

/* $pull on a sub-document or document array: its value is a filter of the child schema. */
static int walk_pull_filter(uctx_t *u, const char *key, const mk_path_loc_t *st,
                            const bson_value_t *v, bson_t *dst)
{
    bson_t f, c;
    if (v->value_type != BSON_TYPE_DOCUMENT) {
        bson_append_value(dst, key, -1, v);
        return MK_OK;
    }
    if (!view_doc(v, &f)) return corrupt(u->err);
    bson_append_document_begin(dst, key, -1, &c);
    int rc = mk_cast_filter_into(&u->q, mk_schema_path_schema(st->path), &f, &c);
    bson_append_document_end(dst, &c);
    return rc;
}

static int walk(uctx_t *u, const char *op, const bson_t *obj, const char *prefix, bson_t *dst)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, obj)) return corrupt(u->err);
    int result = MK_OK;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        name_t full;
        if (!name_join(&full, prefix, key)) return mk_error_nomem(u->err);
        int rc = MK_OK;
        bool done = false;
        if (eq(op, "$pull")) {
            mk_path_loc_t loc;
            mk_path_locate_deep(u->root, full.s, &loc);
            mk_schematype_t k = loc.kind == MK_LOC_PATH ? mk_schema_path_kind(loc.path) : 0;
            if (k == MK_TYPE_DOCARRAY || k == MK_TYPE_SUBDOC) {
                rc = walk_pull_filter(u, key, &loc, v, dst);
                done = true;
            }
        }
        if (!done && eq(op, "$bit") && v->value_type == BSON_TYPE_DOCUMENT) {
            /* { and|or|xor: n } is kept; only the path follows `strict` */
            mk_path_loc_t loc;
            mk_path_locate_deep(u->root, full.s, &loc);
            if (loc.kind == MK_LOC_PATH || strict_at(u, loc.owner) == MK_STRICT_FALSE)
                bson_append_value(dst, key, -1, v);
            else if (strict_at(u, loc.owner) == MK_STRICT_THROW)
                rc = mk_error_set(u->err, 0, "StrictModeError",
                                  "Field `%s` is not in schema and strict mode is set to throw.",
                                  full.s);
            done = true;
        }
        if (!done) {
            if (v->value_type == BSON_TYPE_DOCUMENT)
                rc = walk_object(u, op, key, full.s, v, dst);
            else
                rc = walk_value(u, op, key, prefix, full.s, v, dst);
        }
        name_free(&full);
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

/* One operator's fields, cast into `out` unless nothing is left. */
static int cast_op(uctx_t *u, const char *op, const bson_value_t *val, bson_t *out)
{
    bson_t src, res;
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
                            "Invalid atomic update value for %s. Expected an object, received %s",
                            op, js_typeof(val));
    }
    if (!view_doc(val, &src)) return corrupt(u->err);
    bson_init(&res);
    int rc = walk(u, op, &src, NULL, &res);
    if (rc == MK_OK && !bson_empty(&res)) bson_append_document(out, op, -1, &res);
    bson_destroy(&res);
    return rc;
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
static bool each_moved(const uctx_t *u, const bson_t *update, bson_t *soi)
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
                if (soi) bson_append_iter(soi, NULL, 0, &f);
            }
        } else if (!is_update_op(k) && !is_ts(u->o->created_at, k) && moves_to_insert(u, k)) {
            any = true;
            if (soi) bson_append_iter(soi, NULL, 0, &it);
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
static void normalize(uctx_t *u, const bson_t *update, bson_t *norm)
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
            bson_t set;
            bson_iter_t f;
            bson_append_document_begin(norm, "$set", 4, &set);
            if (explicit_set && bson_iter_recurse(&set_it, &f))
                while (bson_iter_next(&f))
                    if (stays_in_set(u, bson_iter_key(&f), set_updated))
                        bson_append_iter(&set, NULL, 0, &f);
            if (bson_iter_init(&f, update))
                while (bson_iter_next(&f))
                    if (!is_update_op(bson_iter_key(&f)) &&
                        stays_in_set(u, bson_iter_key(&f), set_updated))
                        bson_append_iter(&set, NULL, 0, &f);
            if (set_updated) bson_append_date_time(&set, o->updated_at, -1, o->now);
            bson_append_document_end(norm, &set);
        } else if (eq(k, "$setOnInsert") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            if (soi_done) continue;
            soi_done = true;
            bson_t soi;
            bson_iter_t f;
            bson_append_document_begin(norm, k, -1, &soi);
            if (bson_iter_recurse(&it, &f))
                while (bson_iter_next(&f))
                    if (!is_ts(o->created_at, bson_iter_key(&f)))
                        bson_append_iter(&soi, NULL, 0, &f);
            each_moved(u, update, &soi);
            if (o->created_at) bson_append_date_time(&soi, o->created_at, -1, o->now);
            bson_append_document_end(norm, &soi);
        } else {
            bson_append_iter(norm, NULL, 0, &it);
        }
    }
    if (!set_done && set_updated) {
        bson_t set;
        bson_append_document_begin(norm, "$set", 4, &set);
        bson_append_date_time(&set, o->updated_at, -1, o->now);
        bson_append_document_end(norm, &set);
    }
    if (!soi_done && (o->created_at || each_moved(u, update, NULL))) {
        bson_t soi;
        bson_append_document_begin(norm, "$setOnInsert", -1, &soi);
        each_moved(u, update, &soi);
        if (o->created_at) bson_append_date_time(&soi, o->created_at, -1, o->now);
        bson_append_document_end(norm, &soi);
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
    u.q = (mk_qcast_t){.root = s, .model = NULL, .fn = ctx, .fopts = &u.fopts, .err = err};
    if (opts->overwrite) return cast_replacement(&u, update, out);
    bson_t norm;
    bson_init(&norm);
    normalize(&u, update, &norm);
    bson_iter_t it;
    int result = MK_OK;
    if (bson_iter_init(&it, &norm)) {
        while (bson_iter_next(&it)) {
            int rc = cast_op(&u, bson_iter_key(&it), bson_iter_value(&it), out);
            if (rc == MK_ENOMEM) {
                result = rc;
                break;
            }
            if (rc != MK_OK) result = rc;
        }
    }
    bson_destroy(&norm);
    return result;
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
