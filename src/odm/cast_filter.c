/* Casting query filters through a schema: Mongoose 8's lib/cast.js and the castForQuery /
 * $conditionalHandlers of each SchemaType (see cast_query.h for the rules and messages). */
#include "odm/cast_query.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "odm/validate.h"

/* ---------- small helpers ---------- */

bool mk_is_query_operator(const char *k)
{
    return k[0] == '$' && strcmp(k, "$ref") != 0 && strcmp(k, "$id") != 0 && strcmp(k, "$db") != 0;
}

static bool view_doc(const bson_value_t *v, bson_t *b)
{
    return (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) &&
           bson_init_static(b, v->value.v_doc.data, v->value.v_doc.data_len);
}

static int corrupt(mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt BSON in a query filter");
}

/* Appends a cast value; undefined goes to the server as null (the driver's default). */
static void emit(bson_t *out, const char *key, int keylen, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_UNDEFINED || v->value_type == BSON_TYPE_EOD)
        bson_append_null(out, key, keylen);
    else
        bson_append_value(out, key, keylen, v);
}

static void emit_index(bson_t *arr, uint32_t i, const bson_value_t *v)
{
    char buf[16];
    const char *key;
    bson_uint32_to_string(i, &key, buf, sizeof buf);
    emit(arr, key, -1, v);
}

static const char *loc_name(const mk_path_loc_t *loc)
{
    return mk_path_loc_name(loc);
}

static bool is_op(const char *op, const char *name)
{
    return strcmp(op, name) == 0;
}

/* The query operators the casting code tells apart, classified once per operator. */
typedef enum {
    OP_OTHER,
    OP_EQ,
    OP_NE,
    OP_RANGE, /* $gt $gte $lt $lte */
    OP_IN,
    OP_NIN,
    OP_ALL,
    OP_EXISTS,
    OP_TYPE,
    OP_REGEX,
    OP_OPTIONS,
    OP_NOT,
    OP_MOD,
    OP_SIZE,
    OP_ELEMMATCH,
    OP_LOGICAL, /* $or $and $nor */
    OP_BITS,    /* $bitsAllClear $bitsAnyClear $bitsAllSet $bitsAnySet */
    OP_GEO,     /* $near $nearSphere $within $geoWithin $geoIntersects $minDistance
                   $maxDistance */
} op_id_t;

static const struct {
    const char *name;
    op_id_t id;
} op_names[] = {
    {"$eq", OP_EQ},
    {"$ne", OP_NE},
    {"$gt", OP_RANGE},
    {"$gte", OP_RANGE},
    {"$lt", OP_RANGE},
    {"$lte", OP_RANGE},
    {"$in", OP_IN},
    {"$nin", OP_NIN},
    {"$all", OP_ALL},
    {"$exists", OP_EXISTS},
    {"$type", OP_TYPE},
    {"$regex", OP_REGEX},
    {"$options", OP_OPTIONS},
    {"$not", OP_NOT},
    {"$mod", OP_MOD},
    {"$size", OP_SIZE},
    {"$elemMatch", OP_ELEMMATCH},
    {"$or", OP_LOGICAL},
    {"$and", OP_LOGICAL},
    {"$nor", OP_LOGICAL},
    {"$bitsAllClear", OP_BITS},
    {"$bitsAnyClear", OP_BITS},
    {"$bitsAllSet", OP_BITS},
    {"$bitsAnySet", OP_BITS},
    {"$near", OP_GEO},
    {"$nearSphere", OP_GEO},
    {"$within", OP_GEO},
    {"$geoWithin", OP_GEO},
    {"$geoIntersects", OP_GEO},
    {"$minDistance", OP_GEO},
    {"$maxDistance", OP_GEO},
};

static op_id_t op_id(const char *op)
{
    if (op[0] != '$') return OP_OTHER;
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++)
        if (op_names[i].name[1] == op[1] && strcmp(op_names[i].name, op) == 0)
            return op_names[i].id;
    return OP_OTHER;
}

static int geo_unsupported(mk_error_t *err, const char *op)
{
    return mk_error_setc(err, MK_CODE_BAD_VALUE,
                         "%s is not supported: meerkat does not cast geospatial queries", op);
}

/* JS's Number(x); false when out of memory. */
static bool js_number(const bson_value_t *v, double *d)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        *d = v->value.v_int32;
        return true;
    case BSON_TYPE_INT64:
        *d = (double)v->value.v_int64;
        return true;
    case BSON_TYPE_DOUBLE:
        *d = v->value.v_double;
        return true;
    case BSON_TYPE_BOOL:
        *d = v->value.v_bool ? 1 : 0;
        return true;
    case BSON_TYPE_NULL:
        *d = 0;
        return true;
    case BSON_TYPE_DATE_TIME:
        *d = (double)v->value.v_datetime;
        return true;
    case BSON_TYPE_UTF8:
        *d = mk_cast_js_string_number(v->value.v_utf8.str, v->value.v_utf8.len);
        return true;
    case BSON_TYPE_ARRAY:
    case BSON_TYPE_OID:
    case BSON_TYPE_DECIMAL128:
    case BSON_TYPE_BINARY: {
        char *s = mk_validate_js_string(v);
        if (!s) return false;
        *d = mk_cast_js_string_number(s, strlen(s));
        free(s);
        return true;
    }
    default:
        *d = NAN;
        return true;
    }
}

static void set_js_number(bson_value_t *out, double d)
{
    memset(out, 0, sizeof *out);
    if (d == floor(d) && d >= INT32_MIN && d <= INT32_MAX && !(d == 0 && signbit(d))) {
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = (int32_t)d;
    } else {
        out->value_type = BSON_TYPE_DOUBLE;
        out->value.v_double = d;
    }
}

/* ---------- the cast of one value by a SchemaType ---------- */

static int cast_op(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op, const bson_value_t *v,
                   bson_value_t *out);

static bool is_array_path(const mk_path_loc_t *loc)
{
    mk_schematype_t k = mk_schema_path_kind(loc->path);
    return (k == MK_TYPE_ARRAY || k == MK_TYPE_DOCARRAY) && !loc->element;
}

/* Document(obj) with a value that is not an object. */
static int object_parameter_error(mk_error_t *err, const bson_value_t *v)
{
    char *s = mk_validate_js_string(v);
    if (!s) return mk_error_nomem(err);
    int rc = mk_error_set(err, 0, "ObjectParameterError",
                          "Parameter \"obj\" to Document() must be an object, got \"%s\" (type "
                          "%s)",
                          s,
                          v->value_type == BSON_TYPE_UTF8   ? "string"
                          : v->value_type == BSON_TYPE_BOOL ? "boolean"
                          : (v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64 ||
                             v->value_type == BSON_TYPE_DOUBLE)
                              ? "number"
                              : "object");
    free(s);
    return rc;
}

/* A sub-document as a query value: `new Constructor(v)`, its fields cast by the child. */
static int subdoc_value(mk_qcast_t *q, const mk_schema_t *child, const bson_value_t *v,
                        bson_value_t *out)
{
    if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) {
        bson_value_copy(v, out);
        return MK_OK;
    }
    bson_t doc, b;
    if (v->value_type != BSON_TYPE_DOCUMENT) return object_parameter_error(q->err, v);
    if (!view_doc(v, &doc)) return corrupt(q->err);
    mk_setters_cast_opts_t o = {.model = q->model, .query_form = true};
    bson_init(&b);
    int rc = mk_setters_cast_fields(child, &doc, q->fn, &o, &b, q->err);
    if (rc != MK_OK) {
        bson_destroy(&b);
        return rc;
    }
    mk_value_take_bson(&b, false, out);
    return MK_OK;
}

static int eq_cast(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                   bson_value_t *out);

/* One element of an array path compared by value (the caster's castForQuery(null, e)). */
static int elem_eq(mk_qcast_t *q, const mk_path_loc_t *arr, const bson_value_t *e,
                   bson_value_t *out)
{
    if (mk_schema_path_kind(arr->path) == MK_TYPE_DOCARRAY)
        return subdoc_value(q, mk_schema_path_schema(arr->path), e, out);
    const mk_schema_path_t *ep = mk_schema_path_element(arr->path);
    if (!ep || mk_schema_path_kind(ep) == MK_TYPE_MIXED) {
        bson_value_copy(e, out);
        return MK_OK;
    }
    mk_path_loc_t el = {.kind = MK_LOC_PATH, .owner = arr->owner, .path = ep, .array = arr->path};
    return eq_cast(q, &el, e, out);
}

static bool has_truthy_key(const bson_value_t *v, const char *key)
{
    bson_t d;
    bson_iter_t it;
    return v->value_type == BSON_TYPE_DOCUMENT && view_doc(v, &d) &&
           bson_iter_init_find(&it, &d, key) && mk_js_truthy(bson_iter_value(&it));
}

static bool has_non_null_key(const bson_value_t *v, const char *key)
{
    bson_t d;
    bson_iter_t it;
    return v->value_type == BSON_TYPE_DOCUMENT && view_doc(v, &d) &&
           bson_iter_init_find(&it, &d, key) && !BSON_ITER_HOLDS_NULL(&it) &&
           !BSON_ITER_HOLDS_UNDEFINED(&it);
}

/* SchemaArray#_castForQuery: an array element-wise (after the array's own setters), anything
 * else as one element. */
static int array_value(mk_qcast_t *q, const mk_path_loc_t *arr, const bson_value_t *v,
                       bson_value_t *out)
{
    if (v->value_type != BSON_TYPE_ARRAY) return elem_eq(q, arr, v, out);
    bson_value_t set;
    int rc = mk_setters_apply(arr->owner, arr->path, q->fn, v, &set, q->err);
    if (rc != MK_OK) return rc;
    bson_t src, res;
    if (set.value_type != BSON_TYPE_ARRAY) {
        if (set.value_type == BSON_TYPE_UNDEFINED || set.value_type == BSON_TYPE_NULL) {
            bson_value_copy(&set, out);
            rc = MK_OK;
        } else {
            rc = elem_eq(q, arr, &set, out);
        }
        bson_value_destroy(&set);
        return rc;
    }
    if (!view_doc(&set, &src)) {
        bson_value_destroy(&set);
        return corrupt(q->err);
    }
    bson_init(&res);
    bson_iter_t it;
    uint32_t i = 0;
    if (bson_iter_init(&it, &src)) {
        while (bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            bson_value_t c;
            if (has_truthy_key(e, "$elemMatch")) {
                bson_value_copy(e, &c);
            } else if ((rc = elem_eq(q, arr, e, &c)) != MK_OK) {
                break;
            }
            emit_index(&res, i++, &c);
            bson_value_destroy(&c);
        }
    }
    bson_value_destroy(&set);
    if (rc != MK_OK) {
        bson_destroy(&res);
        return rc;
    }
    mk_value_take_bson(&res, true, out);
    return MK_OK;
}

/* castForQuery(null, v): setters then cast. */
static int eq_cast(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                   bson_value_t *out)
{
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    if (loc->element) return subdoc_value(q, mk_schema_path_schema(loc->path), v, out);
    if (kind == MK_TYPE_MIXED || kind == MK_TYPE_NESTED) {
        bson_value_copy(v, out);
        return MK_OK;
    }
    if (kind == MK_TYPE_ARRAY || kind == MK_TYPE_DOCARRAY) return array_value(q, loc, v, out);
    mk_setters_cast_opts_t o = {.model = q->model, .err_path = loc_name(loc), .query_form = true};
    return mk_setters_cast(loc->owner, loc->path, q->fn, v, &o, out, q->err);
}

/* SchemaType#cast: no setters (the handlers of $gt... on most types, $mod, $regex...). */
static int plain_cast(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                      bson_value_t *out)
{
    mk_cast_type_t ct;
    if (!mk_setters_cast_type(mk_schema_path_kind(loc->path), &ct)) {
        bson_value_copy(v, out);
        return MK_OK;
    }
    if (v->value_type == BSON_TYPE_UNDEFINED) {
        bson_value_copy(v, out);
        return MK_OK;
    }
    return mk_cast_value_at(ct, v, loc_name(loc), q->model, out, q->err);
}

typedef int (*value_fn)(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                        bson_value_t *out);

/* handleArray / handle$in: a list cast element by element (a non-array is a list of one);
 * with keep_empty, empty arrays inside stay as they are (`$in: [1, []]`). */
static int list_cast(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, value_fn fn,
                     bool keep_empty, bson_value_t *out)
{
    bson_t res, src;
    bson_init(&res);
    int rc = MK_OK;
    if (v->value_type != BSON_TYPE_ARRAY) {
        bson_value_t c;
        rc = fn(q, loc, v, &c);
        if (rc == MK_OK) {
            emit_index(&res, 0, &c);
            bson_value_destroy(&c);
        }
    } else if (!view_doc(v, &src)) {
        rc = corrupt(q->err);
    } else {
        bson_iter_t it;
        uint32_t i = 0;
        if (bson_iter_init(&it, &src)) {
            while (bson_iter_next(&it)) {
                const bson_value_t *e = bson_iter_value(&it);
                bson_value_t c;
                bson_t inner;
                if (keep_empty && e->value_type == BSON_TYPE_ARRAY && view_doc(e, &inner) &&
                    bson_empty(&inner))
                    bson_value_copy(e, &c);
                else if ((rc = fn(q, loc, e, &c)) != MK_OK)
                    break;
                emit_index(&res, i++, &c);
                bson_value_destroy(&c);
            }
        }
    }
    if (rc != MK_OK) {
        bson_destroy(&res);
        return rc;
    }
    mk_value_take_bson(&res, true, out);
    return MK_OK;
}

/* The bitwise operators: a number (Number(x)), a list of bit positions, or a Buffer. */
static int bits_one(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                    bson_value_t *out)
{
    double d;
    if (!js_number(v, &d)) return mk_error_nomem(q->err);
    if (isnan(d)) return mk_cast_error(q->err, "number", v, loc_name(loc), q->model, NULL);
    set_js_number(out, d);
    return MK_OK;
}

static int bits_cast(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                     bson_value_t *out)
{
    if (v->value_type == BSON_TYPE_BINARY) {
        bson_value_copy(v, out);
        return MK_OK;
    }
    if (v->value_type == BSON_TYPE_ARRAY) return list_cast(q, loc, v, bits_one, false, out);
    return bits_one(q, loc, v, out);
}

/* castNumber (lib/cast/number.js), whose failures are Node assertion errors. */
int mk_cast_number_or_assert(mk_error_t *err, const bson_value_t *v, bson_value_t *out)
{
    if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) {
        bson_value_copy(v, out);
        return MK_OK;
    }
    if (mk_cast_value_at(MK_CAST_NUMBER, v, NULL, NULL, out, NULL) == MK_OK) return MK_OK;
    double d = NAN;
    if (v->value_type == BSON_TYPE_ARRAY && !js_number(v, &d)) return mk_error_nomem(err);
    /* an array that Number() accepts fails the second assertion, everything else the first */
    return mk_error_set(err, 0, "AssertionError",
                        "The expression evaluated to a falsy value:\n\n  assert.ok(%s)\n",
                        isnan(d) ? "!isNaN(val)" : "false");
}

/* $exists: castBoolean, whose failure is a CastError to `boolean`. */
static int exists_cast(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                       bson_value_t *out)
{
    if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) {
        bson_value_copy(v, out);
        return MK_OK;
    }
    if (mk_cast_value_at(MK_CAST_BOOLEAN, v, NULL, NULL, out, NULL) == MK_OK) return MK_OK;
    return mk_cast_error(q->err, "boolean", v, loc ? loc_name(loc) : NULL, q->model, "CastError");
}

static int type_cast(mk_qcast_t *q, const bson_value_t *v, bson_value_t *out)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_UTF8:
        bson_value_copy(v, out);
        return MK_OK;
    default:
        return mk_error_set(q->err, 0, "Error", "$type parameter must be number or string");
    }
}

static int cant_use(mk_qcast_t *q, const char *op, const char *type)
{
    if (type) return mk_error_set(q->err, 0, "Error", "Can't use %s with %s.", op, type);
    return mk_error_set(q->err, 0, "Error", "Can't use %s", op);
}

/* $all on an array path: $elemMatch entries cast through the child schema, then the list is
 * cast as an array value. */
static int array_all(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                     bson_value_t *out)
{
    bson_t list, src;
    bson_init(&list);
    int rc = MK_OK;
    const mk_schema_t *child = mk_schema_path_schema(loc->path);
    if (v->value_type != BSON_TYPE_ARRAY) {
        bson_append_value(&list, "0", 1, v);
    } else if (!view_doc(v, &src)) {
        bson_destroy(&list);
        return corrupt(q->err);
    } else {
        bson_iter_t it;
        uint32_t i = 0;
        if (bson_iter_init(&it, &src)) {
            while (bson_iter_next(&it)) {
                const bson_value_t *e = bson_iter_value(&it);
                bson_t ed, em;
                bson_iter_t f;
                char buf[16];
                const char *key;
                bson_uint32_to_string(i++, &key, buf, sizeof buf);
                if (child && e->value_type == BSON_TYPE_DOCUMENT && view_doc(e, &ed) &&
                    bson_iter_init_find(&f, &ed, "$elemMatch") && BSON_ITER_HOLDS_DOCUMENT(&f)) {
                    bson_t sub, cast;
                    const uint8_t *data;
                    uint32_t len;
                    bson_iter_document(&f, &len, &data);
                    if (!bson_init_static(&sub, data, len)) {
                        rc = corrupt(q->err);
                        break;
                    }
                    bson_append_document_begin(&list, key, -1, &em);
                    bson_append_document_begin(&em, "$elemMatch", -1, &cast);
                    rc = mk_cast_filter_into(q, child, &sub, &cast);
                    bson_append_document_end(&em, &cast);
                    bson_append_document_end(&list, &em);
                    if (rc != MK_OK) break;
                } else {
                    bson_append_value(&list, key, -1, e);
                }
            }
        }
    }
    if (rc == MK_OK) {
        bson_value_t lv;
        lv.value_type = BSON_TYPE_ARRAY;
        lv.value.v_doc.data = (uint8_t *)bson_get_data(&list);
        lv.value.v_doc.data_len = list.len;
        rc = array_value(q, loc, &lv, out);
    }
    bson_destroy(&list);
    return rc;
}

/* $elemMatch on a primitive array: its operators cast by the array's handlers. */
static int array_elem_match(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                            bson_value_t *out)
{
    bson_t src, res;
    if (mk_schema_path_kind(loc->path) == MK_TYPE_DOCARRAY && v->value_type == BSON_TYPE_DOCUMENT) {
        if (!view_doc(v, &src)) return corrupt(q->err);
        bson_init(&res);
        int rc = mk_cast_filter_into(q, mk_schema_path_schema(loc->path), &src, &res);
        if (rc != MK_OK) {
            bson_destroy(&res);
            return rc;
        }
        mk_value_take_bson(&res, false, out);
        return MK_OK;
    }
    if (v->value_type != BSON_TYPE_DOCUMENT) {
        bson_value_copy(v, out);
        return MK_OK;
    }
    if (!view_doc(v, &src)) return corrupt(q->err);
    bson_init(&res);
    bson_iter_t it;
    int rc = MK_OK;
    if (bson_iter_init(&it, &src)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            const bson_value_t *e = bson_iter_value(&it);
            if (mk_is_query_operator(k) && e->value_type != BSON_TYPE_NULL &&
                e->value_type != BSON_TYPE_UNDEFINED) {
                bson_value_t c;
                if ((rc = cast_op(q, loc, k, e, &c)) != MK_OK) break;
                emit(&res, k, -1, &c);
                bson_value_destroy(&c);
            } else {
                bson_append_value(&res, k, -1, e);
            }
        }
    }
    if (rc != MK_OK) {
        bson_destroy(&res);
        return rc;
    }
    mk_value_take_bson(&res, false, out);
    return MK_OK;
}

/* $or/$and/$nor under an array path: each condition through the child schema (or the model's
 * schema for primitive arrays). */
static int array_logical(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op,
                         const bson_value_t *v, bson_value_t *out)
{
    bson_t src, res;
    if (v->value_type != BSON_TYPE_ARRAY)
        return mk_error_set(q->err, 0, "TypeError", "conditional %s requires an array", op);
    if (!view_doc(v, &src)) return corrupt(q->err);
    const mk_schema_t *s = mk_schema_path_schema(loc->path);
    if (!s) s = q->root;
    bson_init(&res);
    bson_iter_t it;
    int rc = MK_OK;
    uint32_t i = 0;
    if (bson_iter_init(&it, &src)) {
        while (bson_iter_next(&it)) {
            char buf[16];
            const char *key;
            bson_uint32_to_string(i++, &key, buf, sizeof buf);
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bson_append_iter(&res, key, -1, &it);
                continue;
            }
            bson_t sub, c;
            const uint8_t *data;
            uint32_t len;
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&sub, data, len)) {
                rc = corrupt(q->err);
                break;
            }
            bson_append_document_begin(&res, key, -1, &c);
            rc = mk_cast_filter_into(q, s, &sub, &c);
            bson_append_document_end(&res, &c);
            if (rc != MK_OK) break;
        }
    }
    if (rc != MK_OK) {
        bson_destroy(&res);
        return rc;
    }
    mk_value_take_bson(&res, true, out);
    return MK_OK;
}

static int array_op(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op, const bson_value_t *v,
                    bson_value_t *out)
{
    switch (op_id(op)) {
    case OP_ALL:
        return array_all(q, loc, v, out);
    case OP_OPTIONS: { /* String(value) */
        char *s = mk_validate_js_string(v);
        if (!s) return mk_error_nomem(q->err);
        memset(out, 0, sizeof *out);
        out->value_type = BSON_TYPE_UTF8;
        out->value.v_utf8.len = (uint32_t)strlen(s);
        out->value.v_utf8.str = bson_strdup(s);
        free(s);
        return MK_OK;
    }
    case OP_ELEMMATCH:
        return array_elem_match(q, loc, v, out);
    case OP_LOGICAL:
        return array_logical(q, loc, op, v, out);
    case OP_GEO:
        return geo_unsupported(q->err, op);
    case OP_SIZE:
        return mk_cast_number_or_assert(q->err, v, out);
    case OP_EXISTS:
        return exists_cast(q, loc, v, out);
    case OP_TYPE:
        return type_cast(q, v, out);
    case OP_EQ:
    case OP_NE:
    case OP_RANGE:
    case OP_NOT:
    case OP_REGEX:
        return array_value(q, loc, v, out);
    case OP_IN:
    case OP_NIN:
        return list_cast(q, loc, v, array_value, true, out);
    default:
        return cant_use(q, op, "Array");
    }
}

/* castForQuery(op, v) of a non-array SchemaType. */
static int scalar_op(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op, const bson_value_t *v,
                     bson_value_t *out)
{
    mk_schematype_t kind = loc->element ? MK_TYPE_SUBDOC : mk_schema_path_kind(loc->path);
    op_id_t id = op_id(op);
    /* SchemaType.prototype.$conditionalHandlers, shared by every type */
    switch (id) {
    case OP_EQ:
    case OP_NE:
        return eq_cast(q, loc, v, out);
    case OP_IN:
    case OP_NIN:
        return list_cast(q, loc, v, eq_cast, true, out);
    case OP_ALL:
        return list_cast(q, loc, v, eq_cast, false, out);
    case OP_EXISTS:
        return exists_cast(q, loc, v, out);
    case OP_TYPE:
        return type_cast(q, v, out);
    default:
        break;
    }
    switch (kind) {
    case MK_TYPE_STRING:
        if (id == OP_RANGE || id == OP_NOT) return eq_cast(q, loc, v, out);
        if (id == OP_OPTIONS) return plain_cast(q, loc, v, out);
        if (id == OP_REGEX) {
            if (v->value_type == BSON_TYPE_REGEX) {
                bson_value_copy(v, out);
                return MK_OK;
            }
            return plain_cast(q, loc, v, out);
        }
        return cant_use(q, op, "String");
    case MK_TYPE_NUMBER:
        if (id == OP_RANGE) return plain_cast(q, loc, v, out);
        if (id == OP_MOD) return list_cast(q, loc, v, plain_cast, false, out);
        if (id == OP_BITS) return bits_cast(q, loc, v, out);
        return mk_cast_error(q->err, "number", v, loc_name(loc), q->model, NULL);
    case MK_TYPE_DATE:
        if (id == OP_RANGE) return plain_cast(q, loc, v, out);
        return cant_use(q, op, "Date");
    case MK_TYPE_OBJECTID:
    case MK_TYPE_DECIMAL128:
        if (id == OP_RANGE) return plain_cast(q, loc, v, out);
        return cant_use(q, op, NULL);
    case MK_TYPE_BOOLEAN:
        return eq_cast(q, loc, v, out); /* any other operator: the operand cast as a value */
    case MK_TYPE_BIGINT:
    case MK_TYPE_DOUBLE:
    case MK_TYPE_INT32:
        if (id == OP_RANGE) return plain_cast(q, loc, v, out);
        if (kind == MK_TYPE_INT32 && id == OP_BITS) return bits_cast(q, loc, v, out);
        return eq_cast(q, loc, v, out);
    case MK_TYPE_BUFFER:
        if (id == OP_RANGE) return plain_cast(q, loc, v, out);
        if (id == OP_BITS) return bits_cast(q, loc, v, out);
        return cant_use(q, op, "Buffer");
    case MK_TYPE_UUID:
        if (id == OP_RANGE) return plain_cast(q, loc, v, out);
        if (id == OP_BITS) return bits_cast(q, loc, v, out);
        return cant_use(q, op, "UUID");
    default: /* sub-documents, maps */
        return cant_use(q, op, NULL);
    }
}

static int cast_op(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op, const bson_value_t *v,
                   bson_value_t *out)
{
    mk_value_set_undefined(out);
    if (!op) return eq_cast(q, loc, v, out);
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    if (!loc->element && (kind == MK_TYPE_MIXED || kind == MK_TYPE_NESTED)) {
        bson_value_copy(v, out); /* Mixed#castForQuery returns the value as it is */
        return MK_OK;
    }
    if (is_array_path(loc)) return array_op(q, loc, op, v, out);
    return scalar_op(q, loc, op, v, out);
}

int mk_cast_for_query(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op,
                      const bson_value_t *v, bson_value_t *out)
{
    return cast_op(q, loc, op, v, out);
}

/* ---------- lib/cast.js ---------- */

static int keep(bson_t *out, const char *key, bson_iter_t *it)
{
    bson_append_iter(out, key, -1, it);
    return MK_OK;
}

/* `{ path: { $op: v, ... } }` on a located SchemaType. */
static int cast_conditions(mk_qcast_t *q, const mk_path_loc_t *loc, const char *key,
                           const bson_value_t *val, bson_t *out)
{
    bson_t src, res;
    if (!view_doc(val, &src)) return corrupt(q->err);
    bson_append_document_begin(out, key, -1, &res);
    bson_iter_t it;
    int result = MK_OK;
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    const mk_schema_t *child = loc->element || kind == MK_TYPE_DOCARRAY || kind == MK_TYPE_SUBDOC
                                   ? mk_schema_path_schema(loc->path)
                                   : NULL;
    if (bson_iter_init(&it, &src)) {
        while (bson_iter_next(&it)) {
            const char *op = bson_iter_key(&it);
            const bson_value_t *nested = bson_iter_value(&it);
            bool truthy = mk_js_truthy(nested);
            bson_value_t c;
            int rc = MK_OK;
            if (is_op(op, "$elemMatch")) {
                bson_t sub, cm;
                if (truthy && child && view_doc(nested, &sub) &&
                    nested->value_type == BSON_TYPE_DOCUMENT) {
                    bson_append_document_begin(&res, op, -1, &cm);
                    rc = mk_cast_filter_into(q, child, &sub, &cm);
                    bson_append_document_end(&res, &cm);
                } else if (truthy && kind == MK_TYPE_ARRAY && !loc->element &&
                           !has_non_null_key(nested, "$not")) {
                    rc = cast_op(q, loc, op, nested, &c);
                    if (rc == MK_OK) emit(&res, op, -1, &c);
                    bson_value_destroy(&c);
                } else {
                    bson_append_value(&res, op, -1, nested);
                }
            } else if (is_op(op, "$not") && truthy) {
                bson_t sub;
                bson_iter_t first;
                if (nested->value_type == BSON_TYPE_DOCUMENT && view_doc(nested, &sub) &&
                    bson_iter_init(&first, &sub) && bson_iter_next(&first) &&
                    mk_is_query_operator(bson_iter_key(&first))) {
                    bson_t cn;
                    bson_iter_t ni;
                    bson_append_document_begin(&res, op, -1, &cn);
                    if (bson_iter_init(&ni, &sub)) {
                        while (bson_iter_next(&ni)) { /* a for...in: the first failure stops */
                            rc = cast_op(q, loc, bson_iter_key(&ni), bson_iter_value(&ni), &c);
                            if (rc != MK_OK) break;
                            emit(&cn, bson_iter_key(&ni), -1, &c);
                            bson_value_destroy(&c);
                        }
                    }
                    bson_append_document_end(&res, &cn);
                } else {
                    rc = cast_op(q, loc, op, nested, &c);
                    if (rc == MK_OK) emit(&res, op, -1, &c);
                    bson_value_destroy(&c);
                }
            } else if (is_op(op, "$not")) {
                bson_append_value(&res, op, -1, nested);
            } else {
                rc = cast_op(q, loc, op, nested, &c);
                if (rc == MK_OK) emit(&res, op, -1, &c);
                bson_value_destroy(&c);
            }
            if (rc == MK_ENOMEM) {
                bson_append_document_end(out, &res);
                return rc;
            }
            if (rc != MK_OK) result = rc; /* keys are walked last to first: the first wins */
        }
    }
    bson_append_document_end(out, &res);
    return result;
}

/* A path that the schema defines. */
static int cast_located(mk_qcast_t *q, const mk_path_loc_t *loc, const char *key, bson_iter_t *it,
                        bson_t *out)
{
    const bson_value_t *val = bson_iter_value(it);
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    if (val->value_type == BSON_TYPE_NULL || val->value_type == BSON_TYPE_UNDEFINED) {
        emit(out, key, -1, val);
        return MK_OK;
    }
    if (val->value_type == BSON_TYPE_DOCUMENT) {
        bson_t d;
        bson_iter_t k;
        bool any_op = false;
        if (!view_doc(val, &d) || !bson_iter_init(&k, &d)) return corrupt(q->err);
        while (!any_op && bson_iter_next(&k)) any_op = mk_is_query_operator(bson_iter_key(&k));
        if (any_op) return cast_conditions(q, loc, key, val, out);
    } else if (val->value_type == BSON_TYPE_ARRAY && kind != MK_TYPE_BUFFER &&
               (loc->element || (kind != MK_TYPE_ARRAY && kind != MK_TYPE_DOCARRAY))) {
        /* an array against a non-array path: implicit $in */
        bson_value_t c;
        int rc = list_cast(q, loc, val, eq_cast, false, &c);
        if (rc != MK_OK) return rc;
        bson_t in;
        bson_append_document_begin(out, key, -1, &in);
        bson_append_value(&in, "$in", 3, &c);
        bson_append_document_end(out, &in);
        bson_value_destroy(&c);
        return MK_OK;
    }
    bson_value_t c;
    int rc = cast_op(q, loc, NULL, val, &c);
    if (rc == MK_OK) emit(out, key, -1, &c);
    bson_value_destroy(&c);
    return rc;
}

static mk_strict_t strict_query_of(const mk_qcast_t *q, const mk_schema_t *s)
{
    if (q->fopts->has_strict_query) return q->fopts->strict_query;
    const mk_schema_options_t *o = mk_schema_options(s);
    bson_iter_t it;
    if (o->raw && bson_iter_init_find(&it, o->raw, "strictQuery")) return o->strict_query;
    return MK_STRICT_FALSE; /* Mongoose 8's default */
}

/* A path the schema does not define. */
static int cast_unknown(mk_qcast_t *q, const mk_schema_t *s, const char *path, const char *key,
                        bson_iter_t *it, bson_t *out)
{
    const bson_value_t *val = bson_iter_value(it);
    if (val->value_type == BSON_TYPE_DOCUMENT) {
        bson_t d;
        bson_iter_t g;
        static const char *const geo[] = {"$near", "$nearSphere", "$within", "$geoIntersects",
                                          "$geoWithin"};
        if (view_doc(val, &d))
            for (size_t i = 0; i < sizeof geo / sizeof geo[0]; i++)
                if (bson_iter_init_find(&g, &d, geo[i]) && mk_js_truthy(bson_iter_value(&g)))
                    return geo_unsupported(q->err, geo[i]);
    }
    mk_strict_t strict = q->fopts->has_strict ? q->fopts->strict : mk_schema_options(s)->strict;
    if (q->fopts->upsert && strict == MK_STRICT_THROW)
        return mk_error_set(q->err, 0, "StrictModeError",
                            "Field `%s` is not in schema and strict mode is set to throw.", path);
    if (q->fopts->upsert && strict == MK_STRICT_TRUE)
        return mk_error_set(q->err, 0, "StrictModeError",
                            "Path \"%s\" is not in schema, strict mode is `true`, and upsert is "
                            "`true`.",
                            path);
    mk_strict_t sq = strict_query_of(q, s);
    if (sq == MK_STRICT_THROW)
        return mk_error_set(q->err, 0, "StrictModeError",
                            "Path \"%s\" is not in schema and strictQuery is 'throw'.", path);
    if (sq == MK_STRICT_TRUE) return MK_OK;
    return keep(out, key, it);
}

static int cast_logical(mk_qcast_t *q, const mk_schema_t *s, const char *key, bson_iter_t *it,
                        bson_t *out)
{
    const bson_value_t *val = bson_iter_value(it);
    if (val->value_type != BSON_TYPE_ARRAY)
        return mk_cast_error(q->err, "Array", val, key, q->model, NULL);
    bson_t src, arr;
    if (!view_doc(val, &src)) return corrupt(q->err);
    bson_append_array_begin(out, key, -1, &arr);
    bson_iter_t e;
    int rc = MK_OK;
    uint32_t i = 0;
    if (bson_iter_init(&e, &src)) {
        while (bson_iter_next(&e)) { /* a for loop: the first failure stops */
            char buf[16];
            const char *ik;
            bson_uint32_to_string(i, &ik, buf, sizeof buf);
            const bson_value_t *ev = bson_iter_value(&e);
            if (ev->value_type == BSON_TYPE_ARRAY) {
                rc = mk_error_set(q->err, 0, "Error",
                                  "Query filter must be an object, got an array ");
                break;
            }
            if (ev->value_type != BSON_TYPE_DOCUMENT) {
                bson_string_t *p = bson_string_new(key);
                bson_string_append_printf(p, ".%u", i);
                rc = mk_cast_error(q->err, "Object", ev, p->str, q->model, NULL);
                bson_string_free(p, true);
                break;
            }
            bson_t sub, c;
            if (!view_doc(ev, &sub)) {
                rc = corrupt(q->err);
                break;
            }
            bson_append_document_begin(&arr, ik, -1, &c);
            rc = mk_cast_filter_into(q, s, &sub, &c);
            bson_append_document_end(&arr, &c);
            if (rc != MK_OK) break;
            i++;
        }
    }
    bson_append_array_end(out, &arr);
    return rc;
}

/* One key of a filter; `path` is what is looked up in `s` (the key itself, or its remainder
 * inside a sub-schema), `key` what is written. */
static int cast_key(mk_qcast_t *q, const mk_schema_t *s, const char *path, const char *key,
                    bson_iter_t *it, bson_t *out)
{
    const bson_value_t *val = bson_iter_value(it);
    if (path[0] == '$') {
        op_id_t id = op_id(path);
        if (id == OP_LOGICAL) return cast_logical(q, s, key, it, out);
        if (id == OP_ELEMMATCH && val->value_type == BSON_TYPE_DOCUMENT) {
            bson_t sub, c;
            if (!view_doc(val, &sub)) return corrupt(q->err);
            bson_append_document_begin(out, key, -1, &c);
            int rc = mk_cast_filter_into(q, s, &sub, &c);
            bson_append_document_end(out, &c);
            return rc;
        }
    }
    if (path[0] == '$' && is_op(path, "$where")) {
        if (val->value_type != BSON_TYPE_UTF8 && val->value_type != BSON_TYPE_CODE &&
            val->value_type != BSON_TYPE_CODEWSCOPE)
            return mk_error_set(q->err, 0, "Error", "Must have a string or function for $where");
        return keep(out, key, it);
    }
    if (path[0] == '$' && (is_op(path, "$expr") || is_op(path, "$text"))) return keep(out, key, it);
    if (!s) return keep(out, key, it); /* no casting below Mixed */
    mk_path_loc_t loc;
    mk_path_locate(s, path, &loc);
    switch (loc.kind) {
    case MK_LOC_PATH:
        return cast_located(q, &loc, key, it, out);
    case MK_LOC_CHILD:
        return cast_key(q, loc.owner, path + loc.rest, key, it, out);
    case MK_LOC_OPAQUE:
    case MK_LOC_NESTED: /* Mongoose does not cast a nested object compared whole */
        return keep(out, key, it);
    default:
        return cast_unknown(q, s, path, key, it, out);
    }
}

int mk_cast_filter_into(mk_qcast_t *q, const mk_schema_t *s, const bson_t *filter, bson_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, filter)) return corrupt(q->err);
    int result = MK_OK;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        int rc = cast_key(q, s, key, key, &it, out);
        if (rc == MK_ENOMEM) return rc;
        if (rc != MK_OK) result = rc; /* Mongoose walks keys last to first: the first wins */
    }
    return result;
}

/* ---------- sanitizeFilter ---------- */

static bool has_dollar_keys(const bson_value_t *v, bool *only_eq)
{
    bson_t d;
    bson_iter_t it;
    *only_eq = false;
    if (v->value_type != BSON_TYPE_DOCUMENT || !view_doc(v, &d) || !bson_iter_init(&it, &d))
        return false;
    bool any = false;
    size_t n = 0;
    bool first_eq = false;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (n == 0) first_eq = strcmp(k, "$eq") == 0;
        n++;
        if (k[0] == '$') any = true;
    }
    *only_eq = n == 1 && first_eq;
    return any;
}

static int sanitize(const bson_t *in, bson_t *out, mk_error_t *err);

static int sanitize_list(const bson_value_t *v, bson_t *out, const char *key, mk_error_t *err)
{
    bson_t src, arr;
    if (!view_doc(v, &src)) return corrupt(err);
    bson_append_array_begin(out, key, -1, &arr);
    bson_iter_t it;
    int rc = MK_OK;
    if (bson_iter_init(&it, &src)) {
        while (rc == MK_OK && bson_iter_next(&it)) {
            if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bson_t sub, c;
                if (!view_doc(bson_iter_value(&it), &sub)) {
                    rc = corrupt(err);
                    break;
                }
                bson_append_document_begin(&arr, bson_iter_key(&it), -1, &c);
                rc = sanitize(&sub, &c, err);
                bson_append_document_end(&arr, &c);
            } else {
                bson_append_iter(&arr, NULL, 0, &it);
            }
        }
    }
    bson_append_array_end(out, &arr);
    return rc;
}

static int sanitize(const bson_t *in, bson_t *out, mk_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, in)) return corrupt(err);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        bool only_eq;
        int rc = MK_OK;
        if ((is_op(k, "$and") || is_op(k, "$or") || is_op(k, "$nor")) &&
            v->value_type == BSON_TYPE_ARRAY) {
            rc = sanitize_list(v, out, k, err);
        } else if (has_dollar_keys(v, &only_eq)) {
            if (only_eq) {
                bson_append_iter(out, NULL, 0, &it);
            } else {
                bson_t w;
                bson_append_document_begin(out, k, -1, &w);
                bson_append_value(&w, "$eq", 3, v);
                bson_append_document_end(out, &w);
            }
        } else if (v->value_type == BSON_TYPE_DOCUMENT && !mk_is_query_operator(k)) {
            bson_t sub, c;
            if (!view_doc(v, &sub)) return corrupt(err);
            bson_append_document_begin(out, k, -1, &c);
            rc = sanitize(&sub, &c, err);
            bson_append_document_end(out, &c);
        } else {
            bson_append_iter(out, NULL, 0, &it);
        }
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

int mk_cast_filter(const mk_schema_t *s, const char *model_name, const bson_t *filter,
                   const mk_cast_filter_opts_t *opts, bson_t *out, mk_error_t *err)
{
    static const mk_cast_filter_opts_t none = {0};
    if (!s || !filter || !out)
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "mk_cast_filter needs a schema and a filter");
    if (!opts) opts = &none;
    mk_qcast_t q = {.root = s, .model = model_name, .fn = opts->ctx, .fopts = opts, .err = err};
    if (!opts->sanitize_filter) return mk_cast_filter_into(&q, s, filter, out);
    bson_t clean;
    bson_init(&clean);
    int rc = sanitize(filter, &clean, err);
    if (rc == MK_OK) rc = mk_cast_filter_into(&q, s, &clean, out);
    bson_destroy(&clean);
    return rc;
}
