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
    if (k[0] != '$') return false;
    switch (k[1]) { /* not $ref, $id or $db */
    case 'r':
        return strcmp(k + 2, "ef") != 0;
    case 'i':
        return strcmp(k + 2, "d") != 0;
    case 'd':
        return strcmp(k + 2, "b") != 0;
    default:
        return true;
    }
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

/* Writes a result as it is; undefined stays BSON undefined (see null_if_undefined). */
static void put(mk_bw_t *w, const char *key, size_t kl, const bson_value_t *v)
{
    mk_bw_result(w, key, kl, v);
}

/* Writes an owned result when rc is MK_OK, and frees it either way. */
static int put_owned(mk_bw_t *w, const char *key, size_t kl, int rc, bson_value_t *v)
{
    if (rc == MK_OK) put(w, key, kl, v);
    mk_value_release(v);
    return rc;
}

/* A filter sends an undefined result to the server as null (the driver's default). */
static void null_if_undefined(mk_bw_t *w, size_t at)
{
    if (mk_bw_type_at(w, at) == BSON_TYPE_UNDEFINED) w->buf[at] = BSON_TYPE_NULL;
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

static op_id_t op_id_n(const char *op, size_t n)
{
    if (n < 3 || op[0] != '$') return OP_OTHER;
    const char *s = op + 1;
    size_t m = n - 1;
#define IS(lit) (m == sizeof lit - 1 && memcmp(s, lit, sizeof lit - 1) == 0)
    switch (s[0]) {
    case 'e':
        return IS("eq")          ? OP_EQ
               : IS("exists")    ? OP_EXISTS
               : IS("elemMatch") ? OP_ELEMMATCH
                                 : OP_OTHER;
    case 'n':
        return IS("ne")           ? OP_NE
               : IS("nin")        ? OP_NIN
               : IS("not")        ? OP_NOT
               : IS("nor")        ? OP_LOGICAL
               : IS("near")       ? OP_GEO
               : IS("nearSphere") ? OP_GEO
                                  : OP_OTHER;
    case 'g':
        return IS("gt") || IS("gte")                    ? OP_RANGE
               : IS("geoWithin") || IS("geoIntersects") ? OP_GEO
                                                        : OP_OTHER;
    case 'l':
        return IS("lt") || IS("lte") ? OP_RANGE : OP_OTHER;
    case 'i':
        return IS("in") ? OP_IN : OP_OTHER;
    case 'a':
        return IS("all") ? OP_ALL : IS("and") ? OP_LOGICAL : OP_OTHER;
    case 't':
        return IS("type") ? OP_TYPE : OP_OTHER;
    case 'r':
        return IS("regex") ? OP_REGEX : OP_OTHER;
    case 'o':
        return IS("options") ? OP_OPTIONS : IS("or") ? OP_LOGICAL : OP_OTHER;
    case 'm':
        return IS("mod") ? OP_MOD : IS("minDistance") || IS("maxDistance") ? OP_GEO : OP_OTHER;
    case 's':
        return IS("size") ? OP_SIZE : OP_OTHER;
    case 'b':
        return IS("bitsAllClear") || IS("bitsAnyClear") || IS("bitsAllSet") || IS("bitsAnySet")
                   ? OP_BITS
                   : OP_OTHER;
    case 'w':
        return IS("within") ? OP_GEO : OP_OTHER;
    default:
        return OP_OTHER;
    }
#undef IS
}

static op_id_t op_id(const char *op)
{
    return op_id_n(op, strlen(op));
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

/* ---------- the cast of one value by a SchemaType ----------
 *
 * Each *_put function writes its result to `w` as the element `key` (an undefined result as
 * BSON undefined), or nothing when it fails. */

typedef int (*put_fn)(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, mk_bw_t *w,
                      const char *key, size_t kl);

static int cast_op_id_put(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op, op_id_t id,
                          const bson_value_t *v, mk_bw_t *w, const char *key, size_t kl);
static int cast_op_put(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op,
                       const bson_value_t *v, mk_bw_t *w, const char *key, size_t kl);
static int filter_into(mk_qcast_t *q, const mk_schema_t *s, mk_br_t *r, mk_bw_t *w);

static bool is_array_path(const mk_path_loc_t *loc)
{
    mk_schematype_t k = mk_schema_path_kind(loc->path);
    return (k == MK_TYPE_ARRAY || k == MK_TYPE_DOCARRAY) && !loc->element;
}

static bool is_nullish(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED ||
           v->value_type == BSON_TYPE_EOD;
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
static int subdoc_put(mk_qcast_t *q, const mk_schema_t *child, const bson_value_t *v, mk_bw_t *w,
                      const char *key, size_t kl)
{
    if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) {
        put(w, key, kl, v);
        return MK_OK;
    }
    bson_t doc, b;
    if (v->value_type != BSON_TYPE_DOCUMENT) return object_parameter_error(q->err, v);
    if (!view_doc(v, &doc)) return corrupt(q->err);
    mk_setters_cast_opts_t o = {.model = q->model, .query_form = true};
    bson_init(&b);
    int rc = mk_setters_cast_fields(child, &doc, q->fn, &o, &b, q->err);
    if (rc == MK_OK) {
        size_t at = mk_bw_begin(w, BSON_TYPE_DOCUMENT, key, kl);
        mk_bw_fields(w, &b);
        mk_bw_end(w, at);
    }
    bson_destroy(&b);
    return rc;
}

/* mk_cast_value_at, written; a string cast to String is itself (no copy). */
static int cast_put(mk_cast_type_t ct, const bson_value_t *v, const char *path, const char *model,
                    mk_bw_t *w, const char *key, size_t kl, mk_error_t *err)
{
    if (ct == MK_CAST_STRING && v->value_type == BSON_TYPE_UTF8) {
        mk_bw_value(w, key, kl, v);
        return MK_OK;
    }
    bson_value_t c;
    int rc = mk_cast_value_at(ct, v, path, model, &c, err);
    return put_owned(w, key, kl, rc, &c);
}

static int eq_put(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, mk_bw_t *w,
                  const char *key, size_t kl);

/* One element of an array path compared by value (the caster's castForQuery(null, e)). */
static int elem_eq_put(mk_qcast_t *q, const mk_path_loc_t *arr, const bson_value_t *e, mk_bw_t *w,
                       const char *key, size_t kl)
{
    if (mk_schema_path_kind(arr->path) == MK_TYPE_DOCARRAY)
        return subdoc_put(q, mk_schema_path_schema(arr->path), e, w, key, kl);
    const mk_schema_path_t *ep = mk_schema_path_element(arr->path);
    if (!ep || mk_schema_path_kind(ep) == MK_TYPE_MIXED) {
        put(w, key, kl, e);
        return MK_OK;
    }
    const mk_path_info_t *ai = mk_loc_info(arr);
    mk_path_loc_t el = {.kind = MK_LOC_PATH,
                        .owner = arr->owner,
                        .path = ep,
                        .array = arr->path,
                        .info = ai ? ai->elem : NULL};
    return eq_put(q, &el, e, w, key, kl);
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
static int array_value_put(mk_qcast_t *q, const mk_path_loc_t *arr, const bson_value_t *v,
                           mk_bw_t *w, const char *key, size_t kl)
{
    if (v->value_type != BSON_TYPE_ARRAY) return elem_eq_put(q, arr, v, w, key, kl);
    bson_value_t set;
    const bson_value_t *sv = v; /* without setters the value is its own result */
    bool owned = false;
    int rc = MK_OK;
    if (!mk_loc_setters_none(arr)) {
        rc = mk_setters_apply(arr->owner, arr->path, q->fn, v, &set, q->err);
        if (rc != MK_OK) return rc;
        sv = &set;
        owned = true;
    }
    mk_br_t r;
    if (sv->value_type != BSON_TYPE_ARRAY) {
        if (sv->value_type == BSON_TYPE_UNDEFINED || sv->value_type == BSON_TYPE_NULL)
            put(w, key, kl, sv);
        else
            rc = elem_eq_put(q, arr, sv, w, key, kl);
    } else if (!mk_br_init_value(&r, sv)) {
        rc = corrupt(q->err);
    } else {
        size_t mark = mk_bw_mark(w);
        size_t at = mk_bw_begin(w, BSON_TYPE_ARRAY, key, kl);
        mk_elem_t e;
        uint32_t i = 0;
        while (mk_br_next(&r, &e)) {
            char buf[16];
            const char *ik;
            size_t ikl = mk_bw_index_key(i++, buf, &ik);
            size_t el = mk_bw_mark(w);
            if (has_truthy_key(&e.v, "$elemMatch"))
                put(w, ik, ikl, &e.v);
            else if ((rc = elem_eq_put(q, arr, &e.v, w, ik, ikl)) != MK_OK)
                break;
            null_if_undefined(w, el);
        }
        if (rc != MK_OK)
            mk_bw_rollback(w, mark);
        else
            mk_bw_end(w, at);
    }
    if (owned) bson_value_destroy(&set);
    return rc;
}

/* castForQuery(null, v): setters then cast. */
static int eq_put(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, mk_bw_t *w,
                  const char *key, size_t kl)
{
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    if (loc->element) return subdoc_put(q, mk_schema_path_schema(loc->path), v, w, key, kl);
    if (kind == MK_TYPE_MIXED || kind == MK_TYPE_NESTED) {
        put(w, key, kl, v);
        return MK_OK;
    }
    if (kind == MK_TYPE_ARRAY || kind == MK_TYPE_DOCARRAY)
        return array_value_put(q, loc, v, w, key, kl);
    mk_cast_type_t ct;
    if (mk_setters_cast_type(kind, &ct) && mk_loc_setters_none(loc)) {
        /* what mk_setters_cast does for a scalar without setters */
        if (is_nullish(v) || (kind == MK_TYPE_STRING && v->value_type == BSON_TYPE_REGEX)) {
            put(w, key, kl, v);
            return MK_OK;
        }
        return cast_put(ct, v, loc_name(loc), q->model, w, key, kl, q->err);
    }
    mk_setters_cast_opts_t o = {.model = q->model, .err_path = loc_name(loc), .query_form = true};
    bson_value_t c;
    mk_value_set_undefined(&c);
    int rc = mk_setters_cast(loc->owner, loc->path, q->fn, v, &o, &c, q->err);
    return put_owned(w, key, kl, rc, &c);
}

/* SchemaType#cast: no setters (the handlers of $gt... on most types, $mod, $regex...). */
static int plain_put(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, mk_bw_t *w,
                     const char *key, size_t kl)
{
    mk_cast_type_t ct;
    if (!mk_setters_cast_type(mk_schema_path_kind(loc->path), &ct) ||
        v->value_type == BSON_TYPE_UNDEFINED) {
        put(w, key, kl, v);
        return MK_OK;
    }
    return cast_put(ct, v, loc_name(loc), q->model, w, key, kl, q->err);
}

/* handleArray / handle$in: a list cast element by element (a non-array is a list of one);
 * with keep_empty, empty arrays inside stay as they are (`$in: [1, []]`). */
static int list_put(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, put_fn fn,
                    bool keep_empty, mk_bw_t *w, const char *key, size_t kl)
{
    size_t mark = mk_bw_mark(w);
    size_t at = mk_bw_begin(w, BSON_TYPE_ARRAY, key, kl);
    int rc = MK_OK;
    mk_br_t r;
    if (v->value_type != BSON_TYPE_ARRAY) {
        size_t el = mk_bw_mark(w);
        rc = fn(q, loc, v, w, "0", 1);
        null_if_undefined(w, el);
    } else if (!mk_br_init_value(&r, v)) {
        rc = corrupt(q->err);
    } else {
        mk_elem_t e;
        uint32_t i = 0;
        while (mk_br_next(&r, &e)) {
            char buf[16];
            const char *ik;
            size_t ikl = mk_bw_index_key(i++, buf, &ik);
            size_t el = mk_bw_mark(w);
            if (keep_empty && e.v.value_type == BSON_TYPE_ARRAY &&
                mk_doc_ok(e.v.value.v_doc.data, e.v.value.v_doc.data_len) &&
                !e.v.value.v_doc.data[4]) /* bson_empty */
                put(w, ik, ikl, &e.v);
            else if ((rc = fn(q, loc, &e.v, w, ik, ikl)) != MK_OK)
                break;
            null_if_undefined(w, el);
        }
    }
    if (rc != MK_OK) {
        mk_bw_rollback(w, mark);
        return rc;
    }
    mk_bw_end(w, at);
    return MK_OK;
}

/* The bitwise operators: a number (Number(x)), a list of bit positions, or a Buffer. */
static int bits_one_put(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, mk_bw_t *w,
                        const char *key, size_t kl)
{
    double d;
    if (!js_number(v, &d)) return mk_error_nomem(q->err);
    if (isnan(d)) return mk_cast_error(q->err, "number", v, loc_name(loc), q->model, NULL);
    bson_value_t c;
    set_js_number(&c, d);
    put(w, key, kl, &c);
    return MK_OK;
}

static int bits_put(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, mk_bw_t *w,
                    const char *key, size_t kl)
{
    if (v->value_type == BSON_TYPE_BINARY) {
        put(w, key, kl, v);
        return MK_OK;
    }
    if (v->value_type == BSON_TYPE_ARRAY)
        return list_put(q, loc, v, bits_one_put, false, w, key, kl);
    return bits_one_put(q, loc, v, w, key, kl);
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

static int number_assert_put(mk_qcast_t *q, const bson_value_t *v, mk_bw_t *w, const char *key,
                             size_t kl)
{
    bson_value_t c;
    mk_value_set_undefined(&c);
    int rc = mk_cast_number_or_assert(q->err, v, &c);
    return put_owned(w, key, kl, rc, &c);
}

/* $exists: castBoolean, whose failure is a CastError to `boolean`. */
static int exists_put(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, mk_bw_t *w,
                      const char *key, size_t kl)
{
    if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) {
        put(w, key, kl, v);
        return MK_OK;
    }
    bson_value_t c;
    if (mk_cast_value_at(MK_CAST_BOOLEAN, v, NULL, NULL, &c, NULL) == MK_OK) {
        put(w, key, kl, &c);
        return MK_OK;
    }
    return mk_cast_error(q->err, "boolean", v, loc ? loc_name(loc) : NULL, q->model, "CastError");
}

static int type_put(mk_qcast_t *q, const bson_value_t *v, mk_bw_t *w, const char *key, size_t kl)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_UTF8:
        put(w, key, kl, v);
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
static int array_all_put(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v, mk_bw_t *w,
                         const char *key, size_t kl)
{
    mk_br_t r;
    mk_bw_t list;
    mk_bw_init(&list);
    int rc = MK_OK;
    const mk_schema_t *child = mk_schema_path_schema(loc->path);
    if (v->value_type != BSON_TYPE_ARRAY) {
        mk_bw_value(&list, "0", 1, v);
    } else if (!mk_br_init_value(&r, v)) {
        mk_bw_free(&list);
        return corrupt(q->err);
    } else {
        mk_elem_t el;
        uint32_t i = 0;
        {
            while (mk_br_next(&r, &el)) {
                const bson_value_t *e = &el.v;
                bson_t ed;
                bson_iter_t f;
                char buf[16];
                const char *ik;
                size_t ikl = mk_bw_index_key(i++, buf, &ik);
                if (child && e->value_type == BSON_TYPE_DOCUMENT && view_doc(e, &ed) &&
                    bson_iter_init_find(&f, &ed, "$elemMatch") && BSON_ITER_HOLDS_DOCUMENT(&f)) {
                    bson_t sub;
                    const uint8_t *data;
                    uint32_t len;
                    bson_iter_document(&f, &len, &data);
                    if (!bson_init_static(&sub, data, len)) {
                        rc = corrupt(q->err);
                        break;
                    }
                    size_t em = mk_bw_begin(&list, BSON_TYPE_DOCUMENT, ik, ikl);
                    size_t cm = mk_bw_begin(&list, BSON_TYPE_DOCUMENT, "$elemMatch", 10);
                    rc = mk_cast_filter_into(q, child, &sub, &list);
                    mk_bw_end(&list, cm);
                    mk_bw_end(&list, em);
                    if (rc != MK_OK) break;
                } else {
                    mk_bw_value(&list, ik, ikl, e);
                }
            }
        }
    }
    bson_t view;
    if (rc == MK_OK && !mk_bw_finish(&list, &view)) rc = mk_error_nomem(q->err);
    if (rc == MK_OK) {
        bson_value_t lv;
        lv.value_type = BSON_TYPE_ARRAY;
        lv.value.v_doc.data = (uint8_t *)bson_get_data(&view);
        lv.value.v_doc.data_len = view.len;
        rc = array_value_put(q, loc, &lv, w, key, kl);
    }
    mk_bw_free(&list);
    return rc;
}

/* $elemMatch on a primitive array: its operators cast by the array's handlers. */
static int array_elem_match_put(mk_qcast_t *q, const mk_path_loc_t *loc, const bson_value_t *v,
                                mk_bw_t *w, const char *key, size_t kl)
{
    mk_br_t r;
    int rc = MK_OK;
    size_t mark = mk_bw_mark(w);
    if (mk_schema_path_kind(loc->path) == MK_TYPE_DOCARRAY && v->value_type == BSON_TYPE_DOCUMENT) {
        if (!mk_br_init_value(&r, v)) return corrupt(q->err);
        size_t at = mk_bw_begin(w, BSON_TYPE_DOCUMENT, key, kl);
        rc = filter_into(q, mk_schema_path_schema(loc->path), &r, w);
        if (rc != MK_OK) {
            mk_bw_rollback(w, mark);
            return rc;
        }
        mk_bw_end(w, at);
        return MK_OK;
    }
    if (v->value_type != BSON_TYPE_DOCUMENT) {
        put(w, key, kl, v);
        return MK_OK;
    }
    if (!mk_br_init_value(&r, v)) return corrupt(q->err);
    size_t at = mk_bw_begin(w, BSON_TYPE_DOCUMENT, key, kl);
    mk_elem_t e;
    while (mk_br_next(&r, &e)) {
        if (mk_is_query_operator(e.key) && e.v.value_type != BSON_TYPE_NULL &&
            e.v.value_type != BSON_TYPE_UNDEFINED) {
            size_t el = mk_bw_mark(w);
            if ((rc = cast_op_id_put(q, loc, e.key, op_id_n(e.key, e.keylen), &e.v, w, e.key,
                                     e.keylen)) != MK_OK)
                break;
            null_if_undefined(w, el);
        } else {
            mk_bw_value(w, e.key, e.keylen, &e.v);
        }
    }
    if (rc != MK_OK) {
        mk_bw_rollback(w, mark);
        return rc;
    }
    mk_bw_end(w, at);
    return MK_OK;
}

/* $or/$and/$nor under an array path: each condition through the child schema (or the model's
 * schema for primitive arrays). */
static int array_logical_put(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op,
                             const bson_value_t *v, mk_bw_t *w, const char *key, size_t kl)
{
    mk_br_t r;
    if (v->value_type != BSON_TYPE_ARRAY)
        return mk_error_set(q->err, 0, "TypeError", "conditional %s requires an array", op);
    if (!mk_br_init_value(&r, v)) return corrupt(q->err);
    const mk_schema_t *s = mk_schema_path_schema(loc->path);
    if (!s) s = q->root;
    size_t mark = mk_bw_mark(w);
    size_t at = mk_bw_begin(w, BSON_TYPE_ARRAY, key, kl);
    mk_elem_t e;
    int rc = MK_OK;
    uint32_t i = 0;
    while (mk_br_next(&r, &e)) {
        char buf[16];
        const char *ik;
        size_t ikl = mk_bw_index_key(i++, buf, &ik);
        if (e.v.value_type != BSON_TYPE_DOCUMENT) {
            mk_bw_value(w, ik, ikl, &e.v);
            continue;
        }
        mk_br_t sub;
        if (!mk_br_init_value(&sub, &e.v)) {
            rc = corrupt(q->err);
            break;
        }
        size_t c = mk_bw_begin(w, BSON_TYPE_DOCUMENT, ik, ikl);
        rc = filter_into(q, s, &sub, w);
        mk_bw_end(w, c);
        if (rc != MK_OK) break;
    }
    if (rc != MK_OK) {
        mk_bw_rollback(w, mark);
        return rc;
    }
    mk_bw_end(w, at);
    return MK_OK;
}

static int array_op_put(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op, op_id_t id,
                        const bson_value_t *v, mk_bw_t *w, const char *key, size_t kl)
{
    switch (id) {
    case OP_ALL:
        return array_all_put(q, loc, v, w, key, kl);
    case OP_OPTIONS: { /* String(value) */
        char *s = mk_validate_js_string(v);
        if (!s) return mk_error_nomem(q->err);
        mk_bw_utf8(w, key, kl, s, strlen(s));
        free(s);
        return MK_OK;
    }
    case OP_ELEMMATCH:
        return array_elem_match_put(q, loc, v, w, key, kl);
    case OP_LOGICAL:
        return array_logical_put(q, loc, op, v, w, key, kl);
    case OP_GEO:
        return geo_unsupported(q->err, op);
    case OP_SIZE:
        return number_assert_put(q, v, w, key, kl);
    case OP_EXISTS:
        return exists_put(q, loc, v, w, key, kl);
    case OP_TYPE:
        return type_put(q, v, w, key, kl);
    case OP_EQ:
    case OP_NE:
    case OP_RANGE:
    case OP_NOT:
    case OP_REGEX:
        return array_value_put(q, loc, v, w, key, kl);
    case OP_IN:
    case OP_NIN:
        return list_put(q, loc, v, array_value_put, true, w, key, kl);
    default:
        return cant_use(q, op, "Array");
    }
}

/* castForQuery(op, v) of a non-array SchemaType. */
static int scalar_op_put(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op, op_id_t id,
                         const bson_value_t *v, mk_bw_t *w, const char *key, size_t kl)
{
    mk_schematype_t kind = loc->element ? MK_TYPE_SUBDOC : mk_schema_path_kind(loc->path);
    /* SchemaType.prototype.$conditionalHandlers, shared by every type */
    switch (id) {
    case OP_EQ:
    case OP_NE:
        return eq_put(q, loc, v, w, key, kl);
    case OP_IN:
    case OP_NIN:
        return list_put(q, loc, v, eq_put, true, w, key, kl);
    case OP_ALL:
        return list_put(q, loc, v, eq_put, false, w, key, kl);
    case OP_EXISTS:
        return exists_put(q, loc, v, w, key, kl);
    case OP_TYPE:
        return type_put(q, v, w, key, kl);
    default:
        break;
    }
    switch (kind) {
    case MK_TYPE_STRING:
        if (id == OP_RANGE || id == OP_NOT) return eq_put(q, loc, v, w, key, kl);
        if (id == OP_OPTIONS) return plain_put(q, loc, v, w, key, kl);
        if (id == OP_REGEX) {
            if (v->value_type == BSON_TYPE_REGEX) {
                put(w, key, kl, v);
                return MK_OK;
            }
            return plain_put(q, loc, v, w, key, kl);
        }
        return cant_use(q, op, "String");
    case MK_TYPE_NUMBER:
        if (id == OP_RANGE) return plain_put(q, loc, v, w, key, kl);
        if (id == OP_MOD) return list_put(q, loc, v, plain_put, false, w, key, kl);
        if (id == OP_BITS) return bits_put(q, loc, v, w, key, kl);
        return mk_cast_error(q->err, "number", v, loc_name(loc), q->model, NULL);
    case MK_TYPE_DATE:
        if (id == OP_RANGE) return plain_put(q, loc, v, w, key, kl);
        return cant_use(q, op, "Date");
    case MK_TYPE_OBJECTID:
    case MK_TYPE_DECIMAL128:
        if (id == OP_RANGE) return plain_put(q, loc, v, w, key, kl);
        return cant_use(q, op, NULL);
    case MK_TYPE_BOOLEAN:
        return eq_put(q, loc, v, w, key, kl); /* any other operator: the operand as a value */
    case MK_TYPE_BIGINT:
    case MK_TYPE_DOUBLE:
    case MK_TYPE_INT32:
        if (id == OP_RANGE) return plain_put(q, loc, v, w, key, kl);
        if (kind == MK_TYPE_INT32 && id == OP_BITS) return bits_put(q, loc, v, w, key, kl);
        return eq_put(q, loc, v, w, key, kl);
    case MK_TYPE_BUFFER:
        if (id == OP_RANGE) return plain_put(q, loc, v, w, key, kl);
        if (id == OP_BITS) return bits_put(q, loc, v, w, key, kl);
        return cant_use(q, op, "Buffer");
    case MK_TYPE_UUID:
        if (id == OP_RANGE) return plain_put(q, loc, v, w, key, kl);
        if (id == OP_BITS) return bits_put(q, loc, v, w, key, kl);
        return cant_use(q, op, "UUID");
    default: /* sub-documents, maps */
        return cant_use(q, op, NULL);
    }
}

static int cast_op_id_put(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op, op_id_t id,
                          const bson_value_t *v, mk_bw_t *w, const char *key, size_t kl)
{
    if (!op) return eq_put(q, loc, v, w, key, kl);
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    if (!loc->element && (kind == MK_TYPE_MIXED || kind == MK_TYPE_NESTED)) {
        put(w, key, kl, v); /* Mixed#castForQuery returns the value as it is */
        return MK_OK;
    }
    if (is_array_path(loc)) return array_op_put(q, loc, op, id, v, w, key, kl);
    return scalar_op_put(q, loc, op, id, v, w, key, kl);
}

static int cast_op_put(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op,
                       const bson_value_t *v, mk_bw_t *w, const char *key, size_t kl)
{
    return cast_op_id_put(q, loc, op, op ? op_id(op) : OP_OTHER, v, w, key, kl);
}

int mk_cast_for_query_put(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op,
                          const bson_value_t *v, mk_bw_t *w, const char *key, size_t keylen)
{
    return cast_op_put(q, loc, op, v, w, key, keylen);
}

int mk_cast_for_query(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op,
                      const bson_value_t *v, bson_value_t *out)
{
    mk_value_set_undefined(out);
    mk_bw_t w;
    mk_bw_init(&w);
    int rc = cast_op_put(q, loc, op, v, &w, "", 0);
    bson_t view;
    bson_iter_t it;
    if (rc == MK_OK && (w.oom || !mk_bw_finish(&w, &view)))
        rc = mk_error_nomem(q->err);
    else if (rc == MK_OK && bson_iter_init(&it, &view) && bson_iter_next(&it) &&
             !BSON_ITER_HOLDS_UNDEFINED(&it))
        bson_value_copy(bson_iter_value(&it), out);
    mk_bw_free(&w);
    return rc;
}

/* ---------- lib/cast.js ---------- */

/* `{ path: { $op: v, ... } }` on a located SchemaType; `e` is its first condition, `r` reads
 * the others. */
static int cast_conditions(mk_qcast_t *q, const mk_path_loc_t *loc, const char *key, size_t kl,
                           mk_br_t *r, mk_elem_t *e, mk_bw_t *w)
{
    size_t at = mk_bw_begin(w, BSON_TYPE_DOCUMENT, key, kl);
    int result = MK_OK;
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    const mk_schema_t *child = loc->element || kind == MK_TYPE_DOCARRAY || kind == MK_TYPE_SUBDOC
                                   ? mk_schema_path_schema(loc->path)
                                   : NULL;
    do {
        const char *op = e->key;
        size_t opl = e->keylen;
        const bson_value_t *nested = &e->v;
        bool truthy = mk_js_truthy(nested);
        int rc = MK_OK;
        size_t el = mk_bw_mark(w);
        op_id_t id = op_id_n(op, opl);
        if (id == OP_ELEMMATCH) {
            mk_br_t sub;
            if (truthy && child && nested->value_type == BSON_TYPE_DOCUMENT &&
                mk_br_init_value(&sub, nested)) {
                size_t cm = mk_bw_begin(w, BSON_TYPE_DOCUMENT, op, opl);
                rc = filter_into(q, child, &sub, w);
                mk_bw_end(w, cm);
            } else if (truthy && kind == MK_TYPE_ARRAY && !loc->element &&
                       !has_non_null_key(nested, "$not")) {
                rc = cast_op_id_put(q, loc, op, id, nested, w, op, opl);
                null_if_undefined(w, el);
            } else {
                mk_bw_value(w, op, opl, nested);
            }
        } else if (id == OP_NOT && truthy) {
            mk_br_t sub;
            mk_elem_t first;
            if (nested->value_type == BSON_TYPE_DOCUMENT && mk_br_init_value(&sub, nested) &&
                mk_br_next(&sub, &first) && mk_is_query_operator(first.key)) {
                size_t cn = mk_bw_begin(w, BSON_TYPE_DOCUMENT, op, opl);
                do { /* a for...in: the first failure stops */
                    size_t ne = mk_bw_mark(w);
                    rc = cast_op_id_put(q, loc, first.key, op_id_n(first.key, first.keylen),
                                        &first.v, w, first.key, first.keylen);
                    if (rc != MK_OK) break;
                    null_if_undefined(w, ne);
                } while (mk_br_next(&sub, &first));
                mk_bw_end(w, cn);
            } else {
                rc = cast_op_id_put(q, loc, op, id, nested, w, op, opl);
                null_if_undefined(w, el);
            }
        } else if (id == OP_NOT) {
            mk_bw_value(w, op, opl, nested);
        } else {
            rc = cast_op_id_put(q, loc, op, id, nested, w, op, opl);
            null_if_undefined(w, el);
        }
        if (rc == MK_ENOMEM) {
            mk_bw_end(w, at);
            return rc;
        }
        if (rc != MK_OK) result = rc; /* keys are walked last to first: the first wins */
    } while (mk_br_next(r, e));
    mk_bw_end(w, at);
    return result;
}

/* A path that the schema defines. */
static int cast_located(mk_qcast_t *q, const mk_path_loc_t *loc, const char *key, size_t kl,
                        const bson_value_t *val, mk_bw_t *w)
{
    mk_schematype_t kind = mk_schema_path_kind(loc->path);
    if (val->value_type == BSON_TYPE_NULL || val->value_type == BSON_TYPE_UNDEFINED) {
        mk_bw_null(w, key, kl);
        return MK_OK;
    }
    if (val->value_type == BSON_TYPE_DOCUMENT) {
        mk_br_t r;
        mk_elem_t e;
        bool any_op = false, first = true;
        if (!mk_br_init_value(&r, val)) return corrupt(q->err);
        while (!any_op && mk_br_next(&r, &e)) {
            any_op = mk_is_query_operator(e.key);
            if (!any_op) first = false;
        }
        if (any_op) {
            if (!first) { /* conditions are cast from the first key on */
                mk_br_init_value(&r, val);
                mk_br_next(&r, &e);
            }
            return cast_conditions(q, loc, key, kl, &r, &e, w);
        }
    } else if (val->value_type == BSON_TYPE_ARRAY && kind != MK_TYPE_BUFFER &&
               (loc->element || (kind != MK_TYPE_ARRAY && kind != MK_TYPE_DOCARRAY))) {
        /* an array against a non-array path: implicit $in */
        size_t mark = mk_bw_mark(w);
        size_t at = mk_bw_begin(w, BSON_TYPE_DOCUMENT, key, kl);
        int rc = list_put(q, loc, val, eq_put, false, w, "$in", 3);
        if (rc != MK_OK) {
            mk_bw_rollback(w, mark);
            return rc;
        }
        mk_bw_end(w, at);
        return MK_OK;
    }
    size_t el = mk_bw_mark(w);
    int rc = cast_op_put(q, loc, NULL, val, w, key, kl);
    null_if_undefined(w, el);
    return rc;
}

static mk_strict_t strict_query_of(const mk_qcast_t *q, const mk_schema_t *s)
{
    if (q->fopts->has_strict_query) return q->fopts->strict_query;
    if (mk_schema_names_strict_query(s)) return mk_schema_options(s)->strict_query;
    return MK_STRICT_FALSE; /* Mongoose 8's default */
}

/* A path the schema does not define. */
static int cast_unknown(mk_qcast_t *q, const mk_schema_t *s, const char *path, const char *key,
                        size_t kl, const bson_value_t *val, mk_bw_t *w)
{
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
    mk_bw_value(w, key, kl, val);
    return MK_OK;
}

static int cast_logical(mk_qcast_t *q, const mk_schema_t *s, const char *key, size_t kl,
                        const bson_value_t *val, mk_bw_t *w)
{
    if (val->value_type != BSON_TYPE_ARRAY)
        return mk_cast_error(q->err, "Array", val, key, q->model, NULL);
    mk_br_t r;
    if (!mk_br_init_value(&r, val)) return corrupt(q->err);
    size_t arr = mk_bw_begin(w, BSON_TYPE_ARRAY, key, kl);
    mk_elem_t e;
    int rc = MK_OK;
    uint32_t i = 0;
    while (mk_br_next(&r, &e)) { /* a for loop: the first failure stops */
        char buf[16];
        const char *ik;
        size_t ikl = mk_bw_index_key(i, buf, &ik);
        const bson_value_t *ev = &e.v;
        if (ev->value_type == BSON_TYPE_ARRAY) {
            rc = mk_error_set(q->err, 0, "Error", "Query filter must be an object, got an array ");
            break;
        }
        if (ev->value_type != BSON_TYPE_DOCUMENT) {
            bson_string_t *p = bson_string_new(key);
            bson_string_append_printf(p, ".%u", i);
            rc = mk_cast_error(q->err, "Object", ev, p->str, q->model, NULL);
            bson_string_free(p, true);
            break;
        }
        mk_br_t sub;
        if (!mk_br_init_value(&sub, ev)) {
            rc = corrupt(q->err);
            break;
        }
        size_t c = mk_bw_begin(w, BSON_TYPE_DOCUMENT, ik, ikl);
        rc = filter_into(q, s, &sub, w);
        mk_bw_end(w, c);
        if (rc != MK_OK) break;
        i++;
    }
    mk_bw_end(w, arr);
    return rc;
}

/* One key of a filter; `path` is what is looked up in `s` (the key itself, or its remainder
 * inside a sub-schema), `key` what is written. */
static int cast_key(mk_qcast_t *q, const mk_schema_t *s, const char *path, const char *key,
                    size_t kl, const bson_value_t *val, mk_bw_t *w)
{
    if (path[0] == '$') {
        op_id_t id = op_id_n(path, kl - (size_t)(path - key));
        if (id == OP_LOGICAL) return cast_logical(q, s, key, kl, val, w);
        if (id == OP_ELEMMATCH && val->value_type == BSON_TYPE_DOCUMENT) {
            mk_br_t sub;
            if (!mk_br_init_value(&sub, val)) return corrupt(q->err);
            size_t c = mk_bw_begin(w, BSON_TYPE_DOCUMENT, key, kl);
            int rc = filter_into(q, s, &sub, w);
            mk_bw_end(w, c);
            return rc;
        }
        if (is_op(path, "$where")) {
            if (val->value_type != BSON_TYPE_UTF8 && val->value_type != BSON_TYPE_CODE &&
                val->value_type != BSON_TYPE_CODEWSCOPE)
                return mk_error_set(q->err, 0, "Error",
                                    "Must have a string or function for $where");
            mk_bw_value(w, key, kl, val);
            return MK_OK;
        }
        if (is_op(path, "$expr") || is_op(path, "$text")) {
            mk_bw_value(w, key, kl, val);
            return MK_OK;
        }
    }
    if (!s) { /* no casting below Mixed */
        mk_bw_value(w, key, kl, val);
        return MK_OK;
    }
    mk_path_loc_t loc;
    mk_path_locate_plan(s, s == q->root ? q->root_plan : NULL, path, kl - (size_t)(path - key),
                        &loc);
    switch (loc.kind) {
    case MK_LOC_PATH:
        return cast_located(q, &loc, key, kl, val, w);
    case MK_LOC_CHILD:
        return cast_key(q, loc.owner, path + loc.rest, key, kl, val, w);
    case MK_LOC_OPAQUE:
    case MK_LOC_NESTED: /* Mongoose does not cast a nested object compared whole */
        mk_bw_value(w, key, kl, val);
        return MK_OK;
    default:
        return cast_unknown(q, s, path, key, kl, val, w);
    }
}

static int filter_into(mk_qcast_t *q, const mk_schema_t *s, mk_br_t *r, mk_bw_t *w)
{
    int result = MK_OK;
    mk_elem_t e;
    while (mk_br_next(r, &e)) {
        int rc = cast_key(q, s, e.key, e.key, e.keylen, &e.v, w);
        if (rc == MK_ENOMEM) return rc;
        if (rc != MK_OK) result = rc; /* Mongoose walks keys last to first: the first wins */
    }
    return result;
}

int mk_cast_filter_into(mk_qcast_t *q, const mk_schema_t *s, const bson_t *filter, mk_bw_t *w)
{
    mk_br_t r;
    if (!mk_br_init_bson(&r, filter)) return corrupt(q->err);
    return filter_into(q, s, &r, w);
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
    mk_qcast_t q = {.root = s,
                    .model = model_name,
                    .fn = opts->ctx,
                    .fopts = opts,
                    .err = err,
                    .root_plan = mk_cast_plan(s)};
    bson_t clean;
    if (opts->sanitize_filter) {
        bson_init(&clean);
        int rc = sanitize(filter, &clean, err);
        if (rc != MK_OK) {
            bson_destroy(&clean);
            return rc;
        }
        filter = &clean;
    }
    /* written in one buffer, then appended to `out` at once (also after a failure, as the
     * fields cast so far were always left in `out`) */
    mk_bw_t w;
    mk_bw_init(&w);
    int rc = mk_cast_filter_into(&q, s, filter, &w);
    bson_t view;
    if (w.oom || !mk_bw_finish(&w, &view))
        rc = mk_error_nomem(err);
    else
        bson_concat(out, &view);
    mk_bw_free(&w);
    if (opts->sanitize_filter) bson_destroy(&clean);
    return rc;
}
