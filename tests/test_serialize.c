/* Document#toObject / toJSON: options, getters, virtuals, minimize, transforms, maps. The
 * expected objects are what Mongoose 8.24 gives for the same schema and stored document
 * (checked with Model.hydrate(stored).toObject(...) / toJSON(...)); where Mongoose's own
 * field order comes from its in-memory _doc rather than from the stored document, the stored
 * order is kept here. */
#include "testutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odm/serialize.h"

#define OID1 "5f1d7f3b0000000000000001"
#define OID2 "5f1d7f3b0000000000000002"
#define OID3 "5f1d7f3b0000000000000003"

/* ---- helpers ---- */

static mk_schema_t *schema(const char *def, const char *opts)
{
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse(def, opts, &err);
    if (!s) fail_msg("schema: %s", err.message);
    return s;
}

static void ok(int rc, const mk_error_t *err)
{
    if (rc != MK_OK) fail_msg("rc %d: %s %s", rc, err->kind, err->message);
}

/* Per-call options: -1 everywhere but the ones given. */
static mk_to_object_opts_t opts_none(void)
{
    return MK_TO_OBJECT_DEFAULTS;
}

/* Serializes `stored` (relaxed JSON) as toJSON (json) or toObject with per-call options `in`
 * (NULL: none); `doc` is handed to callbacks. A new document. */
static bson_t *ser_doc(const mk_schema_t *s, mk_doc_t *doc, bool json,
                       const mk_to_object_opts_t *in, const char *stored)
{
    mk_error_t err = {0};
    mk_ser_opts_t o;
    mk_ser_resolve(s, json, in, &o);
    bson_t *b = tu_bson(stored);
    bson_t *out = bson_new();
    ok(mk_serialize(s, doc, b, &o, out, &err), &err);
    bson_destroy(b);
    return out;
}

static bson_t *ser(const mk_schema_t *s, bool json, const mk_to_object_opts_t *in,
                   const char *stored)
{
    return ser_doc(s, NULL, json, in, stored);
}

#define EXPECT(s, json, in, stored, expect)                                                        \
    do {                                                                                           \
        bson_t *got_ = ser((s), (json), (in), (stored));                                           \
        tu_assert_bson_eq(got_, (expect));                                                         \
        bson_destroy(got_);                                                                        \
    } while (0)

/* Runs a serialization that must fail; returns its code and leaves the error in *err. */
static int ser_fail(const mk_schema_t *s, bool json, const mk_to_object_opts_t *in,
                    const char *stored, mk_error_t *err)
{
    mk_ser_opts_t o;
    mk_ser_resolve(s, json, in, &o);
    bson_t *b = tu_bson(stored);
    bson_t *out = bson_new();
    int rc = mk_serialize(s, NULL, b, &o, out, err);
    bson_destroy(b);
    bson_destroy(out);
    assert_int_not_equal(rc, MK_OK);
    return rc;
}

static void set_str(bson_value_t *out, const char *s, size_t n)
{
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.str = bson_strndup(s, n);
    out->value.v_utf8.len = (uint32_t)n;
}

/* ---- getters ---- */

static int g_upper(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                   mk_error_t *err)
{
    if (!in) return MK_OK; /* undefined stays undefined (out untouched) */
    if (in->value_type != BSON_TYPE_UTF8) {
        bson_value_copy(in, out);
        return MK_OK;
    }
    set_str(out, in->value.v_utf8.str, in->value.v_utf8.len);
    for (char *p = out->value.v_utf8.str; *p; p++) *p = (char)toupper((unsigned char)*p);
    return MK_OK;
}

/* Appends ud (a string) to a string value. */
static int g_suffix(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                    mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_UTF8) {
        out->value_type = BSON_TYPE_UNDEFINED;
        return MK_OK;
    }
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%s%s", in->value.v_utf8.str, (const char *)ud);
    set_str(out, buf, (size_t)n);
    return MK_OK;
}

/* A default for undefined: ud. */
static int g_default(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                     mk_error_t *err)
{
    if (in)
        bson_value_copy(in, out);
    else
        set_str(out, ud, strlen(ud));
    return MK_OK;
}

static int g_undef(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                   mk_error_t *err)
{
    out->value_type = BSON_TYPE_UNDEFINED;
    return MK_OK;
}

/* An array's length. */
static int g_len(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                 mk_error_t *err)
{
    bson_t arr;
    assert_non_null(in);
    assert_int_equal(in->value_type, BSON_TYPE_ARRAY);
    assert_true(bson_init_static(&arr, in->value.v_doc.data, in->value.v_doc.data_len));
    out->value_type = BSON_TYPE_INT32;
    out->value.v_int32 = (int32_t)bson_count_keys(&arr);
    return MK_OK;
}

static char seen_paths[1024];

/* Records ctx->path (and whether the value was defined) and keeps the value. */
static int g_record(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                    mk_error_t *err)
{
    size_t n = strlen(seen_paths);
    snprintf(seen_paths + n, sizeof seen_paths - n, "%s%s%s", n ? " " : "", ctx->path,
             in ? "" : "(undefined)");
    if (in) bson_value_copy(in, out);
    return MK_OK;
}

static int g_fail(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                  mk_error_t *err)
{
    return mk_error_set(err, 0, "Error", "getter refused %s", ctx->path);
}

static int g_nomem(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                   mk_error_t *err)
{
    return mk_error_nomem(err);
}

static void getter(mk_schema_t *s, const char *path, mk_getter_fn fn, void *ud)
{
    mk_error_t err = {0};
    ok(mk_schema_path_getter(s, path, fn, ud, &err), &err);
}

/* ---- virtuals ---- */

static int v_const(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    set_str(out, ud, strlen(ud));
    return MK_OK;
}

static int v_null(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    out->value_type = BSON_TYPE_NULL;
    return MK_OK;
}

static int v_undef(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    return MK_OK; /* out left untouched: undefined */
}

/* The tests hand callbacks a stand-in document: the stored BSON. */
typedef struct fake_doc {
    const bson_t *stored;
} fake_doc_t;

/* The seed's displayName: this.name. */
static int v_display_name(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    const fake_doc_t *d = (const fake_doc_t *)doc;
    bson_iter_t it;
    if (bson_iter_init_find(&it, d->stored, "name")) bson_value_copy(bson_iter_value(&it), out);
    return MK_OK;
}

/* "<sub-document path>:<its name>", from mk_ser_current_subdoc; "top" at the top level. */
static int v_where(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    const char *path;
    const bson_t *stored;
    if (!mk_ser_current_subdoc(&path, &stored)) {
        set_str(out, "top", 3);
        return MK_OK;
    }
    bson_iter_t it;
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%s:%s", path,
                     bson_iter_init_find(&it, stored, "name") && BSON_ITER_HOLDS_UTF8(&it)
                         ? bson_iter_utf8(&it, NULL)
                         : "-");
    set_str(out, buf, (size_t)n);
    return MK_OK;
}

/* A getter giving the sub-document it runs for ("top" at the top level). */
static int g_where(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                   mk_error_t *err)
{
    const char *path;
    if (!mk_ser_current_subdoc(&path, NULL)) path = "top";
    set_str(out, path, strlen(path));
    return MK_OK;
}

/* Serializes another document (ud: its schema) from inside a virtual: the inner call's
 * callbacks run for its own top level. The inner result's `where` is the value. */
static int v_nested_call(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    const mk_schema_t *inner = ud;
    mk_ser_opts_t o;
    mk_to_object_opts_t in = MK_TO_OBJECT_DEFAULTS;
    in.virtuals = 1;
    mk_ser_resolve(inner, true, &in, &o);
    bson_t stored = BSON_INITIALIZER, res = BSON_INITIALIZER;
    int rc = mk_serialize(inner, doc, &stored, &o, &res, err);
    bson_iter_t it;
    if (rc == MK_OK && bson_iter_init_find(&it, &res, "where"))
        bson_value_copy(bson_iter_value(&it), out);
    bson_destroy(&res);
    bson_destroy(&stored);
    return rc;
}

static int v_fail(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    return mk_error_set(err, 0, "Error", "virtual refused");
}

static int v_nomem(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    return mk_error_nomem(err);
}

static void virtual(mk_schema_t *s, const char *name, mk_virtual_get_fn fn, void *ud)
{
    mk_error_t err = {0};
    ok(mk_schema_virtual(s, name, fn, NULL, ud, &err), &err);
}

/* ---- transforms ---- */

/* The seed's toJSON transform: ret.id = ret._id.toString(); delete ret._id, ret.__v,
 * ret.passwordHash. An `id` already in ret keeps its place; otherwise it is appended. */
static int t_seed(mk_doc_t *doc, const bson_t *ret, bson_t *out, void *ud, mk_error_t *err)
{
    bson_iter_t it;
    char id[25] = "";
    bool have_id = false, placed = false;
    if (bson_iter_init_find(&it, ret, "_id") && BSON_ITER_HOLDS_OID(&it)) {
        bson_oid_to_string(bson_iter_oid(&it), id);
        have_id = true;
    }
    bson_iter_init(&it, ret);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "_id") || !strcmp(k, "__v") || !strcmp(k, "passwordHash")) continue;
        if (!strcmp(k, "id") && have_id) {
            BSON_APPEND_UTF8(out, "id", id);
            placed = true;
        } else {
            bson_append_iter(out, NULL, 0, &it);
        }
    }
    if (have_id && !placed) BSON_APPEND_UTF8(out, "id", id);
    return MK_OK;
}

/* Drops `secret`, adds t: ud. */
static int t_mark(mk_doc_t *doc, const bson_t *ret, bson_t *out, void *ud, mk_error_t *err)
{
    bson_copy_to_excluding_noinit(ret, out, "secret", NULL);
    BSON_APPEND_UTF8(out, "t", ud);
    return MK_OK;
}

static int t_empty(mk_doc_t *doc, const bson_t *ret, bson_t *out, void *ud, mk_error_t *err)
{
    return MK_OK;
}

static int t_fail(mk_doc_t *doc, const bson_t *ret, bson_t *out, void *ud, mk_error_t *err)
{
    return mk_error_set(err, 0, "Error", "transform refused");
}

/* Wraps ret as { where: <mk_ser_current_subdoc path or "top">, ret }. */
static int t_where(mk_doc_t *doc, const bson_t *ret, bson_t *out, void *ud, mk_error_t *err)
{
    const char *path;
    BSON_APPEND_UTF8(out, "where", mk_ser_current_subdoc(&path, NULL) ? path : "top");
    BSON_APPEND_DOCUMENT(out, "ret", ret);
    return MK_OK;
}

static void transform(mk_schema_t *s, const char *which, mk_transform_fn fn, void *ud)
{
    mk_error_t err = {0};
    ok(mk_schema_transform(s, which, fn, ud, &err), &err);
}

/* A child schema embedded with mk_schema_add_schema (its own options, as `new Schema`). */
static void embed(mk_schema_t *parent, const char *path, const mk_schema_t *child, bool array,
                  const char *opts)
{
    mk_error_t err = {0};
    ok(mk_schema_add_schema(parent, path, child, array, opts, &err), &err);
}

/* ---- plain copies and options ---- */

static void test_plain_copy(void **state)
{
    mk_schema_t *s = schema("{ name: String, age: Number, tags: [String], when: Date }", NULL);
    /* order, types and unknown fields as stored */
    EXPECT(s, false, NULL,
           "{ extra: 'x', _id: ObjectId('" OID1 "'), age: NumberLong(7), name: 'n', tags: [], "
           "when: ISODate('2020-01-01T00:00:00Z'), d: NumberDecimal('1.5'), n: null, __v: 3 }",
           "{ extra: 'x', _id: ObjectId('" OID1 "'), age: NumberLong(7), name: 'n', tags: [], "
           "when: ISODate('2020-01-01T00:00:00Z'), d: NumberDecimal('1.5'), n: null, __v: 3 }");
    EXPECT(s, true, NULL, "{}", "{}");

    /* an array whose keys are not 0, 1, ... comes out numbered */
    bson_t odd, arr;
    bson_init(&odd);
    bson_append_array_begin(&odd, "tags", 4, &arr);
    BSON_APPEND_UTF8(&arr, "5", "a");
    BSON_APPEND_UTF8(&arr, "7", "b");
    bson_append_array_end(&odd, &arr);
    mk_ser_opts_t o;
    mk_error_t err = {0};
    mk_ser_resolve(s, false, NULL, &o);
    bson_t *out = bson_new();
    ok(mk_serialize(s, NULL, &odd, &o, out, &err), &err);
    bson_iter_t it, e;
    assert_true(bson_iter_init_find(&it, out, "tags") && bson_iter_recurse(&it, &e));
    assert_true(bson_iter_next(&e));
    assert_string_equal(bson_iter_key(&e), "0");
    assert_string_equal(bson_iter_utf8(&e, NULL), "a");
    assert_true(bson_iter_next(&e));
    assert_string_equal(bson_iter_key(&e), "1");
    bson_destroy(out);
    bson_destroy(&odd);
    mk_schema_destroy(s);
}

static void test_resolve_defaults(void **state)
{
    mk_schema_t *s = schema("{ a: String }", NULL);
    mk_ser_opts_t o;
    mk_ser_resolve(s, false, NULL, &o);
    assert_false(o.getters);
    assert_false(o.virtuals);
    assert_true(o.version_key);
    assert_true(o.minimize);
    assert_false(o.transform); /* no transform registered */
    assert_false(o.flatten_maps);
    assert_false(o.json);
    assert_int_equal(o.called.getters, -1);
    mk_ser_resolve(s, true, NULL, &o);
    assert_true(o.flatten_maps); /* toJSON flattens maps by default */
    assert_true(o.json);
    transform(s, "toJSON", t_empty, NULL);
    mk_ser_resolve(s, true, NULL, &o);
    assert_true(o.transform);
    mk_ser_resolve(s, false, NULL, &o);
    assert_false(o.transform); /* the toJSON transform is not toObject's */

    mk_to_object_opts_t in = opts_none();
    in.getters = 1; /* getters: true applies virtuals too ... */
    mk_ser_resolve(s, false, &in, &o);
    assert_true(o.getters);
    assert_true(o.virtuals);
    in.virtuals = 0; /* ... unless virtuals: false */
    mk_ser_resolve(s, false, &in, &o);
    assert_false(o.virtuals);
    in = opts_none();
    in.flatten_maps = 0;
    in.transform = 0;
    in.version_key = 0;
    in.minimize = 0;
    mk_ser_resolve(s, true, &in, &o);
    assert_false(o.flatten_maps);
    assert_false(o.transform);
    assert_false(o.version_key);
    assert_false(o.minimize);
    assert_int_equal(o.called.minimize, 0);
    mk_schema_destroy(s);

    /* schema options: the toJSON document for toJSON, toObject's for toObject */
    s = schema("{ a: String }", "{ minimize: false, toJSON: { virtuals: true, getters: true, "
                                "versionKey: false, flattenMaps: false }, "
                                "toObject: { minimize: true } }");
    mk_ser_resolve(s, true, NULL, &o);
    assert_true(o.virtuals);
    assert_true(o.getters);
    assert_false(o.version_key);
    assert_false(o.flatten_maps);
    assert_false(o.minimize); /* schema minimize: false */
    mk_ser_resolve(s, false, NULL, &o);
    assert_false(o.virtuals);
    assert_false(o.getters);
    assert_true(o.version_key);
    assert_true(o.minimize); /* toObject.minimize wins over the schema's minimize */
    in = opts_none();
    in.virtuals = 0;
    in.minimize = 1;
    mk_ser_resolve(s, true, &in, &o); /* per-call wins */
    assert_false(o.virtuals);
    assert_true(o.minimize);
    mk_schema_destroy(s);
}

static void test_version_key(void **state)
{
    mk_schema_t *s = schema("{ a: String }", NULL);
    mk_to_object_opts_t in = opts_none();
    in.version_key = 0;
    EXPECT(s, false, &in, "{ a: 'x', __v: 2, b: { __v: 1 } }", "{ a: 'x', b: { __v: 1 } }");
    EXPECT(s, false, NULL, "{ a: 'x', __v: 2 }", "{ a: 'x', __v: 2 }");
    in.version_key = 1;
    EXPECT(s, false, &in, "{ a: 'x', __v: 2 }", "{ a: 'x', __v: 2 }");
    mk_schema_destroy(s);

    /* a renamed key, and the schema option */
    s = schema("{ a: String }", "{ versionKey: '_rev', toJSON: { versionKey: false } }");
    EXPECT(s, true, NULL, "{ a: 'x', _rev: 2, __v: 1 }", "{ a: 'x', __v: 1 }");
    EXPECT(s, false, NULL, "{ a: 'x', _rev: 2 }", "{ a: 'x', _rev: 2 }");
    mk_schema_destroy(s);

    /* versionKey: false in the schema means there is no key to drop */
    s = schema("{ a: String }", "{ versionKey: false }");
    in.version_key = 0;
    EXPECT(s, false, &in, "{ a: 'x', __v: 2 }", "{ a: 'x', __v: 2 }");
    mk_schema_destroy(s);

    /* versionKey: false reaches sub-documents (their schemas have a version key too) */
    s = schema("{ a: String }", NULL);
    mk_schema_t *child = schema("{ n: String }", NULL);
    embed(s, "sub", child, false, NULL);
    embed(s, "list", child, true, NULL);
    EXPECT(s, false, &in, "{ __v: 1, sub: { n: 'x', __v: 5 }, list: [{ __v: 6, n: 'y' }] }",
           "{ sub: { n: 'x' }, list: [{ n: 'y' }] }");
    mk_schema_destroy(child);
    mk_schema_destroy(s);
}

/* ---- minimize ---- */

static void test_minimize_objects(void **state)
{
    mk_schema_t *s = schema("{ nest: { x: String, inner: { y: String } }, mixed: {}, "
                            "plain: [], tags: [String] }",
                            NULL);
    const char *stored = "{ _id: 1, nest: { inner: {} }, mixed: { a: {}, b: { c: {} }, arr: [{}], "
                         "e: [], s: 'kept' }, plain: [{}, { a: {} }, [{}]], tags: [], top: {}, "
                         "u: undefined, z: 0 }";
    /* empty objects go, recursively; empty arrays and array elements stay, but objects inside
     * array elements are minimized; an undefined field is not copied */
    EXPECT(s, false, NULL, stored,
           "{ _id: 1, mixed: { arr: [{}], e: [], s: 'kept' }, plain: [{}, {}, [{}]], tags: [], "
           "z: 0 }");
    mk_to_object_opts_t in = opts_none();
    in.minimize = 0;
    EXPECT(s, false, &in, stored,
           "{ _id: 1, nest: { inner: {} }, mixed: { a: {}, b: { c: {} }, arr: [{}], e: [], "
           "s: 'kept' }, plain: [{}, { a: {} }, [{}]], tags: [], top: {}, z: 0 }");
    /* the document itself stays {} */
    EXPECT(s, true, NULL, "{ nest: { inner: {} }, top: {} }", "{}");
    /* undefined array elements stay */
    EXPECT(s, true, NULL, "{ plain: [undefined, null] }", "{ plain: [undefined, null] }");
    mk_schema_destroy(s);

    /* the schema's minimize option and the toJSON / toObject minimize option */
    s = schema("{ nest: { x: String } }", "{ minimize: false, toJSON: { minimize: true } }");
    EXPECT(s, false, NULL, "{ nest: {} }", "{ nest: {} }");
    EXPECT(s, true, NULL, "{ nest: {} }", "{}");
    in.minimize = 0;
    EXPECT(s, true, &in, "{ nest: {} }", "{ nest: {} }");
    mk_schema_destroy(s);
}

static void test_minimize_subdocs(void **state)
{
    mk_schema_t *s = schema("{ x: String }", NULL);
    mk_schema_t *child = schema("{ name: String, deep: { q: String } }", "{ _id: false }");
    mk_schema_t *rchild = schema("{ name: String }", "{ _id: false }");
    embed(s, "sub", child, false, NULL);
    embed(s, "rsub", rchild, false, "{ required: true }");
    embed(s, "arr", child, true, NULL);
    mk_schema_destroy(child);
    mk_schema_destroy(rchild);
    /* an empty single nested sub-document goes unless required; array elements stay */
    EXPECT(s, false, NULL, "{ _id: 1, sub: { deep: {} }, rsub: {}, arr: [{}, { deep: {} }] }",
           "{ _id: 1, rsub: {}, arr: [{}, {}] }");
    mk_to_object_opts_t in = opts_none();
    in.minimize = 0;
    EXPECT(s, false, &in, "{ _id: 1, sub: { deep: {} }, rsub: {}, arr: [{ deep: {} }] }",
           "{ _id: 1, sub: { deep: {} }, rsub: {}, arr: [{ deep: {} }] }");
    /* null sub-documents are values */
    EXPECT(s, false, NULL, "{ sub: null, arr: [null] }", "{ sub: null, arr: [null] }");
    mk_schema_destroy(s);
}

static void test_minimize_subdoc_options(void **state)
{
    /* a sub-document's own schema option, and the path's minimize option over it */
    mk_schema_t *s = schema("{ x: String }", NULL);
    mk_schema_t *child = schema("{ a: String, b: {} }", "{ _id: false, minimize: false }");
    embed(s, "sub", child, false, "{ minimize: true }");
    embed(s, "sub2", child, false, NULL);
    EXPECT(s, false, NULL, "{ sub: { b: {} }, sub2: { b: {} } }", "{ sub2: { b: {} } }");
    /* per-call minimize wins everywhere */
    mk_to_object_opts_t in = opts_none();
    in.minimize = 1;
    EXPECT(s, false, &in, "{ sub: { b: {} }, sub2: { b: {} } }", "{}");
    in.minimize = 0;
    EXPECT(s, false, &in, "{ sub: { b: {} }, sub2: { b: {} } }",
           "{ sub: { b: {} }, sub2: { b: {} } }");
    mk_schema_destroy(child);
    mk_schema_destroy(s);

    /* path minimize: false keeps an empty sub-document of a minimizing parent */
    s = schema("{ x: String }", NULL);
    child = schema("{ a: String }", "{ _id: false }");
    embed(s, "keep", child, false, "{ minimize: false }");
    EXPECT(s, false, NULL, "{ keep: {} }", "{ keep: {} }");
    mk_schema_destroy(child);
    mk_schema_destroy(s);
}

/* ---- getters ---- */

static void test_getters_basic(void **state)
{
    mk_schema_t *s = schema("{ a: String, b: String, c: String, nest: { x: String, y: String }, "
                            "n: Number }",
                            NULL);
    getter(s, "a", g_upper, NULL);
    getter(s, "a", g_suffix, "!"); /* several getters run in order */
    getter(s, "nest.x", g_upper, NULL);
    getter(s, "b", g_undef, NULL);
    const char *stored = "{ _id: 1, a: 'x', b: 'gone', nest: { x: 'q', y: 'r' }, n: 1 }";
    /* off by default */
    EXPECT(s, false, NULL, stored, "{ _id: 1, a: 'x', b: 'gone', nest: { x: 'q', y: 'r' }, n: 1 }");
    mk_to_object_opts_t in = opts_none();
    in.getters = 1;
    in.virtuals = 0;
    EXPECT(s, false, &in, stored, "{ _id: 1, a: 'X!', nest: { x: 'Q', y: 'r' }, n: 1 }");
    /* the schema option */
    mk_schema_t *s2 = schema("{ a: String }", "{ toJSON: { getters: true, virtuals: false } }");
    getter(s2, "a", g_upper, NULL);
    EXPECT(s2, true, NULL, "{ a: 'x' }", "{ a: 'X' }");
    EXPECT(s2, false, NULL, "{ a: 'x' }", "{ a: 'x' }");
    mk_schema_destroy(s2);
    mk_schema_destroy(s);
}

static void test_getters_missing_paths(void **state)
{
    /* a getter runs for a missing path too; what it returns is appended, in reverse path order
     * (Mongoose walks schema.paths backwards) */
    mk_schema_t *s = schema("{ a: String, b: String, nest: { x: String, y: String }, "
                            "n2: { z: String }, c: String }",
                            NULL);
    getter(s, "a", g_default, "A");
    getter(s, "b", g_default, "B");
    getter(s, "nest.x", g_default, "nx");
    getter(s, "n2.z", g_default, "z");
    mk_to_object_opts_t in = opts_none();
    in.getters = 1;
    in.virtuals = 0;
    EXPECT(s, false, &in, "{ _id: 1, c: 'c' }",
           "{ _id: 1, c: 'c', n2: { z: 'z' }, nest: { x: 'nx' }, b: 'B', a: 'A' }");
    /* a nested object present but minimized away is rebuilt where it was */
    EXPECT(s, false, &in, "{ nest: { y: 'y' }, a: 'a' }",
           "{ nest: { y: 'y', x: 'nx' }, a: 'a', n2: { z: 'z' }, b: 'B' }");
    /* a null parent stops the walk */
    EXPECT(s, false, &in, "{ nest: null, n2: null }", "{ nest: null, n2: null, b: 'B', a: 'A' }");
    /* a parent that is not an object is left alone */
    EXPECT(s, false, &in, "{ nest: 'str', n2: 5 }", "{ nest: 'str', n2: 5, b: 'B', a: 'A' }");
    mk_schema_destroy(s);

    /* a getter that leaves a nested object empty: removed again with minimize, kept without */
    s = schema("{ nest: { x: String } }", NULL);
    getter(s, "nest.x", g_undef, NULL);
    EXPECT(s, false, &in, "{ nest: { x: 'q' } }", "{}");
    in.minimize = 0;
    EXPECT(s, false, &in, "{ nest: { x: 'q' } }", "{ nest: {} }");
    mk_schema_destroy(s);
}

static void test_getters_arrays(void **state)
{
    mk_schema_t *s = schema("{ tags: [String], counts: [String], other: [String] }", NULL);
    getter(s, "tags.$", g_upper, NULL);
    getter(s, "counts", g_len, NULL);
    getter(s, "counts.$", g_upper, NULL); /* runs on the path getter's result: a number */
    getter(s, "other.$", g_undef, NULL);
    mk_to_object_opts_t in = opts_none();
    in.getters = 1;
    in.virtuals = 0;
    EXPECT(s, false, &in, "{ tags: ['a', 'b', 3], counts: ['x', 'y'], other: ['z', 'w'] }",
           "{ tags: ['A', 'B', 3], counts: 2, other: [null, null] }");
    mk_schema_destroy(s);
}

static void test_getters_subdocs(void **state)
{
    mk_schema_t *s = schema("{ name: String, sub: { type: { name: String } }, "
                            "arr: [{ name: String, tags: [String] }], nest: { x: String } }",
                            NULL);
    getter(s, "name", g_record, NULL);
    getter(s, "sub.name", g_record, NULL); /* stored in the sub-schema's registry */
    getter(s, "arr.name", g_upper, NULL);
    getter(s, "arr.name", g_record, NULL);
    getter(s, "arr.tags.$", g_record, NULL);
    getter(s, "nest.x", g_record, NULL);
    mk_to_object_opts_t in = opts_none();
    in.getters = 1;
    in.virtuals = 0;
    seen_paths[0] = 0;
    EXPECT(s, false, &in,
           "{ _id: 1, name: 'top', sub: { _id: 2, name: 's' }, "
           "arr: [{ _id: 3, name: 'a', tags: ['t'] }, { _id: 4 }], nest: { x: 'q' } }",
           "{ _id: 1, name: 'top', sub: { _id: 2, name: 's' }, "
           "arr: [{ _id: 3, name: 'A', tags: ['t'] }, { _id: 4 }], nest: { x: 'q' } }");
    /* sub-documents first (they are built while the parent is copied), each level's paths in
     * reverse; the concrete full path of each value */
    assert_string_equal(seen_paths, "sub.name arr.0.tags.0 arr.0.name arr.1.name(undefined) "
                                    "nest.x name");
    mk_schema_destroy(s);
}

static void test_getters_minimize_again(void **state)
{
    /* after getters, Mongoose minimizes the whole object again: an empty required
     * sub-document and an empty flattened map go too */
    mk_schema_t *s = schema("{ a: String, e: { type: Map, of: String } }", NULL);
    mk_schema_t *child = schema("{ name: String }", "{ _id: false }");
    embed(s, "rsub", child, false, "{ required: true }");
    getter(s, "a", g_default, "A");
    EXPECT(s, true, NULL, "{ rsub: {}, e: {} }", "{ rsub: {}, e: {} }");
    mk_to_object_opts_t in = opts_none();
    in.getters = 1;
    in.virtuals = 0;
    EXPECT(s, true, &in, "{ rsub: {}, e: {} }", "{ a: 'A' }");
    in.virtuals = -1; /* getters: true brings virtuals: id is null without _id */
    EXPECT(s, true, &in, "{ rsub: {}, e: {} }", "{ a: 'A', id: null }");
    mk_schema_destroy(child);
    mk_schema_destroy(s);
}

/* ---- virtuals ---- */

static void test_virtuals_basic(void **state)
{
    mk_schema_t *s = schema("{ name: String, nest: { x: String } }", NULL);
    virtual(s, "v1", v_const, "one");
    virtual(s, "nest.vv", v_const, "vv");
    virtual(s, "nothing", v_undef, NULL);
    virtual(s, "nul", v_null, NULL);
    mk_error_t err = {0};
    ok(mk_schema_virtual(s, "setonly", NULL, NULL, NULL, &err), &err); /* no getter */
    const char *stored = "{ _id: ObjectId('" OID1 "'), name: 'n', nest: { x: 'q' }, __v: 0 }";
    EXPECT(s, false, NULL, stored, stored);
    mk_to_object_opts_t in = opts_none();
    in.virtuals = 1;
    EXPECT(s, false, &in, stored,
           "{ _id: ObjectId('" OID1 "'), name: 'n', nest: { x: 'q', vv: 'vv' }, __v: 0, "
           "v1: 'one', nul: null, id: '" OID1 "' }");
    /* a dotted virtual makes its parent object */
    EXPECT(s, true, &in, "{ _id: ObjectId('" OID1 "') }",
           "{ _id: ObjectId('" OID1 "'), v1: 'one', nest: { vv: 'vv' }, nul: null, id: '" OID1
           "' }");
    /* getters: true brings virtuals unless virtuals: false */
    in = opts_none();
    in.getters = 1;
    EXPECT(s, false, &in, "{ _id: 'abc' }",
           "{ _id: 'abc', v1: 'one', nest: { vv: 'vv' }, nul: null, id: 'abc' }");
    in.virtuals = 0;
    EXPECT(s, false, &in, "{ _id: 'abc' }", "{ _id: 'abc' }");
    mk_schema_destroy(s);
}

static void test_virtual_id(void **state)
{
    mk_schema_t *s = schema("{ name: String }", NULL);
    mk_to_object_opts_t in = opts_none();
    in.virtuals = 1;
    /* String(_id), null without one */
    EXPECT(s, false, &in, "{ _id: 42 }", "{ _id: 42, id: '42' }");
    EXPECT(s, false, &in, "{ _id: 1.5 }", "{ _id: 1.5, id: '1.5' }");
    EXPECT(s, false, &in, "{ name: 'x' }", "{ name: 'x', id: null }");
    EXPECT(s, false, &in, "{ _id: null }", "{ _id: null, id: null }");
    EXPECT(s, false, &in, "{ _id: UUID('0123456789abcdef0123456789abcdef') }",
           "{ _id: UUID('0123456789abcdef0123456789abcdef'), "
           "id: '01234567-89ab-cdef-0123-456789abcdef' }");
    /* an existing field named id is replaced in place */
    EXPECT(s, false, &in, "{ id: 'old', _id: 'k' }", "{ id: 'k', _id: 'k' }");
    mk_schema_destroy(s);

    /* id: false, _id: false, a path named id: no id virtual */
    s = schema("{ name: String }", "{ id: false }");
    EXPECT(s, false, &in, "{ _id: 1 }", "{ _id: 1 }");
    mk_schema_destroy(s);
    s = schema("{ name: String }", "{ _id: false }");
    EXPECT(s, false, &in, "{ _id: 1 }", "{ _id: 1 }");
    mk_schema_destroy(s);
    s = schema("{ id: Number }", NULL);
    EXPECT(s, false, &in, "{ _id: 1, id: 7 }", "{ _id: 1, id: 7 }");
    mk_schema_destroy(s);
    /* a virtual named id replaces it */
    s = schema("{ name: String }", NULL);
    virtual(s, "id", v_const, "mine");
    EXPECT(s, false, &in, "{ _id: 1 }", "{ _id: 1, id: 'mine' }");
    mk_schema_destroy(s);
}

static void test_virtuals_subdocs(void **state)
{
    mk_schema_t *s = schema("{ name: String, sub: { type: { name: String } }, "
                            "arr: [{ name: String }] }",
                            NULL);
    mk_schema_t *sub = (mk_schema_t *)mk_schema_path_schema(mk_schema_path(s, "sub"));
    mk_schema_t *arr = (mk_schema_t *)mk_schema_path_schema(mk_schema_path(s, "arr"));
    virtual(s, "where", v_where, NULL);
    virtual(sub, "where", v_where, NULL); /* virtuals of the sub-schemas */
    virtual(arr, "where", v_where, NULL);
    /* a dotted virtual of the parent: written into the sub-document's object, computed for the
     * parent; under an array it is a property of the array, which no output shows */
    virtual(s, "sub.pv", v_where, NULL);
    virtual(s, "arr.pv", v_where, NULL);
    mk_to_object_opts_t in = opts_none();
    in.virtuals = 1;
    EXPECT(s, true, &in,
           "{ _id: ObjectId('" OID1 "'), name: 't', sub: { _id: ObjectId('" OID2 "'), name: 's' }, "
           "arr: [{ _id: ObjectId('" OID3 "'), name: 'a' }, { name: 'b' }] }",
           "{ _id: ObjectId('" OID1 "'), name: 't', "
           "sub: { _id: ObjectId('" OID2 "'), name: 's', where: 'sub:s', id: '" OID2 "', "
           "pv: 'top' }, "
           "arr: [{ _id: ObjectId('" OID3 "'), name: 'a', where: 'arr.0:a', id: '" OID3 "' }, "
           "{ name: 'b', where: 'arr.1:b', id: null }], where: 'top', id: '" OID1 "' }");
    assert_false(mk_ser_current_subdoc(NULL, NULL)); /* nothing outside a call */
    mk_schema_destroy(s);

    /* a map's value getters in a sub-document run for it; a serialization started inside a
     * callback runs its own callbacks for its own top level */
    s = schema("{ x: String, list: [{ m: { type: Map, of: String } }] }", NULL);
    mk_schema_t *inner = schema("{ y: String }", NULL);
    virtual(inner, "where", v_where, NULL);
    mk_schema_t *list = (mk_schema_t *)mk_schema_path_schema(mk_schema_path(s, "list"));
    getter(list, "m.$*", g_where, NULL);
    virtual(list, "inner", v_nested_call, inner);
    EXPECT(s, true, &in, "{ list: [{ m: { a: 'x' } }] }",
           "{ list: [{ m: { a: 'list.0' }, inner: 'top', id: null }], id: null }");
    mk_schema_destroy(inner);
    mk_schema_destroy(s);
}

static void test_virtuals_option_inheritance(void **state)
{
    /* the parent's toJSON { virtuals: true } reaches an inline sub-schema (it inherits the
     * option) but not a schema built on its own (Mongoose 8: only the call's options and the
     * sub-document's own schema options count) */
    mk_schema_t *s =
        schema("{ name: String, inl: { type: { n: String } } }", "{ toJSON: { virtuals: true } }");
    mk_schema_t *child = schema("{ n: String }", NULL);
    embed(s, "sep", child, false, NULL);
    EXPECT(s, true, NULL, "{ _id: 1, inl: { _id: 2 }, sep: { _id: 3 } }",
           "{ _id: 1, inl: { _id: 2, id: '2' }, sep: { _id: 3 }, id: '1' }");
    mk_to_object_opts_t in = opts_none();
    in.virtuals = 1;
    EXPECT(s, true, &in, "{ _id: 1, inl: { _id: 2 }, sep: { _id: 3 } }",
           "{ _id: 1, inl: { _id: 2, id: '2' }, sep: { _id: 3, id: '3' }, id: '1' }");
    mk_schema_destroy(child);
    mk_schema_destroy(s);

    /* getters from the parent's schema option reach every sub-document; virtuals of a
     * grandchild come from its sub-document parent's options (false here), while a child of
     * the top document with no option of its own gets them from getters: true */
    s = schema("{ x: String }",
               "{ toJSON: { getters: true, virtuals: false, versionKey: false } }");
    mk_schema_t *gchild = schema("{ g: String }", NULL);
    getter(gchild, "g", g_upper, NULL);
    child = schema("{ name: String, __v: Number }", "{ toJSON: { virtuals: true } }");
    getter(child, "name", g_upper, NULL);
    embed(child, "gc", gchild, false, NULL);
    embed(s, "sub", child, false, NULL);
    embed(s, "s2", gchild, false, NULL);
    EXPECT(s, true, NULL,
           "{ _id: 1, sub: { _id: 2, name: 'x', __v: 5, gc: { _id: 3, g: 'gg' } }, "
           "s2: { _id: 4, g: 'h' }, __v: 2 }",
           "{ _id: 1, sub: { _id: 2, name: 'X', gc: { _id: 3, g: 'GG' }, id: '2' }, "
           "s2: { _id: 4, g: 'H', id: '4' } }");
    /* toObject: none of it */
    EXPECT(s, false, NULL, "{ _id: 1, sub: { _id: 2, name: 'x', __v: 5 }, __v: 2 }",
           "{ _id: 1, sub: { _id: 2, name: 'x', __v: 5 }, __v: 2 }");
    mk_schema_destroy(child);
    mk_schema_destroy(gchild);
    mk_schema_destroy(s);
}

static void test_aliases(void **state)
{
    mk_schema_t *s = schema("{ name: { type: String, alias: 'nm' }, deep: { q: { type: String, "
                            "alias: ['dq', 'dq2'] } }, sub: { type: { n: String }, alias: 'sb' }, "
                            "none: { type: String, alias: 'gone' } }",
                            NULL);
    getter(s, "name", g_upper, NULL); /* an alias shows the value through the path's getters */
    virtual(s, "uv", v_const, "uv");
    mk_to_object_opts_t in = opts_none();
    in.virtuals = 1;
    /* nested paths' aliases first (Mongoose defines them when their nested object is done),
     * then the top level's, the schema's virtuals, id */
    EXPECT(s, false, &in, "{ _id: 1, name: 'nm', deep: { q: 'dq' }, sub: { _id: 2, n: 'x' } }",
           "{ _id: 1, name: 'nm', deep: { q: 'dq' }, sub: { _id: 2, n: 'x', id: '2' }, dq: 'dq', "
           "dq2: 'dq', nm: 'NM', sb: { _id: 2, n: 'x', id: '2' }, uv: 'uv', id: '1' }");
    /* aliases: false in the schema option skips them */
    mk_schema_destroy(s);
    s = schema("{ name: { type: String, alias: 'nm' } }", "{ toObject: { aliases: false } }");
    EXPECT(s, false, &in, "{ _id: 1, name: 'x' }", "{ _id: 1, name: 'x', id: '1' }");
    EXPECT(s, true, &in, "{ _id: 1, name: 'x' }", "{ _id: 1, name: 'x', nm: 'x', id: '1' }");
    mk_schema_destroy(s);
    /* an alias named id replaces the id virtual */
    s = schema("{ code: { type: String, alias: 'id' } }", NULL);
    EXPECT(s, false, &in, "{ _id: 1, code: 'c' }", "{ _id: 1, code: 'c', id: 'c' }");
    mk_schema_destroy(s);
}

/* ---- transforms ---- */

static const char *seed_schema_def =
    "{ email: { type: String, required: true, unique: true, lowercase: true, trim: true, "
    "index: true },"
    "  name: { type: String, required: true, trim: true, minlength: 2, maxlength: 100 },"
    "  passwordHash: { type: String, required: true, select: false },"
    "  role: { type: String, enum: ['user', 'admin'], default: 'user' },"
    "  profile: { avatar: String, bio: { type: String, maxlength: 500 } },"
    "  preferences: { notifications: { type: Boolean, default: true },"
    "                 theme: { type: String, enum: ['light', 'dark'], default: 'light' } } }";

static void test_seed_transform(void **state)
{
    mk_schema_t *s = schema(seed_schema_def, "{ timestamps: true, toJSON: { virtuals: true } }");
    mk_error_t err = {0};
    ok(mk_schema_add_version_key(s, &err), &err);
    transform(s, "toJSON", t_seed, NULL);
    virtual(s, "displayName", v_display_name, NULL);
    const char *stored =
        "{ _id: ObjectId('" OID1 "'), email: 'ann@example.com', name: 'Ann', passwordHash: 'h', "
        "role: 'user', profile: { avatar: 'a.png' }, preferences: { notifications: true, "
        "theme: 'light' }, createdAt: ISODate('1970-01-01T00:00:00Z'), "
        "updatedAt: ISODate('1970-01-01T00:00:01Z'), __v: 0 }";
    bson_t *b = tu_bson(stored);
    fake_doc_t doc = {b};
    bson_t *got = ser_doc(s, (mk_doc_t *)&doc, true, NULL, stored);
    tu_assert_bson_eq(got, "{ email: 'ann@example.com', name: 'Ann', role: 'user', "
                           "profile: { avatar: 'a.png' }, preferences: { notifications: true, "
                           "theme: 'light' }, createdAt: ISODate('1970-01-01T00:00:00Z'), "
                           "updatedAt: ISODate('1970-01-01T00:00:01Z'), displayName: 'Ann', "
                           "id: '" OID1 "' }");
    bson_destroy(got);
    /* toObject has no transform and no virtuals */
    got = ser_doc(s, (mk_doc_t *)&doc, false, NULL, stored);
    tu_assert_bson_eq(got, stored);
    bson_destroy(got);
    /* without virtuals the transform appends id; transform: false skips it */
    mk_to_object_opts_t in = opts_none();
    in.virtuals = 0;
    EXPECT(s, true, &in, "{ _id: ObjectId('" OID1 "'), email: 'e', profile: {}, __v: 0 }",
           "{ email: 'e', id: '" OID1 "' }");
    in.transform = 0;
    EXPECT(s, true, &in, "{ _id: ObjectId('" OID1 "'), email: 'e', profile: {}, __v: 0 }",
           "{ _id: ObjectId('" OID1 "'), email: 'e', __v: 0 }");
    bson_destroy(b);
    mk_schema_destroy(s);
}

static void test_transform_subdocs(void **state)
{
    /* a sub-schema's transform runs for its sub-documents, before the parent's; the parent's
     * schema transform does not run for them */
    mk_schema_t *s = schema("{ name: String }", NULL);
    mk_schema_t *child = schema("{ name: String, secret: String }", NULL);
    transform(child, "toJSON", t_mark, "child");
    transform(child, "toObject", t_mark, "child-obj");
    embed(s, "sub", child, false, NULL);
    embed(s, "arr", child, true, NULL);
    transform(s, "toJSON", t_where, NULL);
    const char *stored = "{ _id: 1, name: 'n', sub: { _id: 2, name: 's', secret: 'x' }, "
                         "arr: [{ _id: 3, secret: 'y' }] }";
    EXPECT(s, true, NULL, stored,
           "{ where: 'top', ret: { _id: 1, name: 'n', sub: { _id: 2, name: 's', t: 'child' }, "
           "arr: [{ _id: 3, t: 'child' }] } }");
    EXPECT(s, false, NULL, stored,
           "{ _id: 1, name: 'n', sub: { _id: 2, name: 's', t: 'child-obj' }, "
           "arr: [{ _id: 3, t: 'child-obj' }] }");
    /* transform: false skips them all */
    mk_to_object_opts_t in = opts_none();
    in.transform = 0;
    EXPECT(s, true, &in, stored, stored);
    mk_schema_destroy(child);
    mk_schema_destroy(s);

    /* the transform sees the sub-document it runs for; an empty result is minimized away
     * (not in an array) */
    s = schema("{ x: String }", NULL);
    child = schema("{ name: String }", NULL);
    transform(child, "toJSON", t_where, NULL);
    mk_schema_t *empty = schema("{ name: String }", NULL);
    transform(empty, "toJSON", t_empty, NULL);
    embed(s, "sub", child, false, NULL);
    embed(s, "list", child, true, NULL);
    embed(s, "gone", empty, false, NULL);
    embed(s, "kept", empty, true, NULL);
    EXPECT(s, true, NULL,
           "{ sub: { name: 'a' }, list: [{ name: 'b' }], gone: { name: 'c' }, "
           "kept: [{ name: 'd' }] }",
           "{ sub: { where: 'sub', ret: { name: 'a' } }, "
           "list: [{ where: 'list.0', ret: { name: 'b' } }], kept: [{}] }");
    /* a schema option transform: false turns the registered one off */
    mk_schema_destroy(s);
    mk_schema_destroy(child);
    mk_schema_destroy(empty);
    s = schema("{ x: String }", "{ toJSON: { transform: false } }");
    transform(s, "toJSON", t_empty, NULL);
    EXPECT(s, true, NULL, "{ x: 'a' }", "{ x: 'a' }");
    mk_schema_destroy(s);
}

/* ---- maps ---- */

static void test_maps(void **state)
{
    mk_schema_t *s = schema("{ m: { type: Map, of: String }, mm: { type: Map }, "
                            "mo: { type: Map, of: { name: String, deep: { q: String } } }, "
                            "e: { type: Map, of: String } }",
                            NULL);
    const mk_schema_path_t *mo = mk_schema_path(s, "mo");
    assert_int_equal(mk_schema_path_kind(mk_schema_path_element(mo)), MK_TYPE_SUBDOC);
    getter(s, "m.$*", g_upper, NULL);
    getter(s, "m.$*", g_record, NULL);
    const char *stored = "{ m: { a: 'x', b: 'y' }, mm: { x: {}, y: { z: {} }, w: 1 }, "
                         "mo: { k: {}, j: { deep: {} }, l: { name: 'n' } }, e: {} }";
    /* toJSON flattens: value getters run (even without getters: true), empty objects among
     * the values go, an empty map stays */
    seen_paths[0] = 0;
    EXPECT(s, true, NULL, stored,
           "{ m: { a: 'X', b: 'Y' }, mm: { w: 1 }, mo: { l: { name: 'n' } }, "
           "e: {} }");
    assert_string_equal(seen_paths, "m.a m.b");
    /* toObject does not: values as stored (sub-documents still by their schema) */
    seen_paths[0] = 0;
    EXPECT(s, false, NULL, stored,
           "{ m: { a: 'x', b: 'y' }, mm: { x: {}, y: { z: {} }, w: 1 }, "
           "mo: { k: {}, j: {}, l: { name: 'n' } }, e: {} }");
    assert_string_equal(seen_paths, "");
    mk_to_object_opts_t in = opts_none();
    in.flatten_maps = 1;
    EXPECT(s, false, &in, stored,
           "{ m: { a: 'X', b: 'Y' }, mm: { w: 1 }, "
           "mo: { l: { name: 'n' } }, e: {} }");
    in.flatten_maps = 0;
    EXPECT(s, true, &in, stored,
           "{ m: { a: 'x', b: 'y' }, mm: { x: {}, y: { z: {} }, w: 1 }, "
           "mo: { k: {}, j: {}, l: { name: 'n' } }, e: {} }");
    mk_schema_destroy(s);
}

/* ---- errors ---- */

static void test_callback_errors(void **state)
{
    mk_error_t err = {0};
    mk_schema_t *s = schema("{ a: String, sub: { type: { b: String } } }", NULL);
    getter(s, "sub.b", g_fail, NULL);
    mk_to_object_opts_t in = opts_none();
    in.getters = 1;
    assert_int_equal(ser_fail(s, false, &in, "{ a: 'x', sub: { b: 'y' } }", &err), MK_ERR);
    assert_string_equal(err.message, "getter refused sub.b");
    /* not run when getters are off */
    EXPECT(s, false, NULL, "{ a: 'x', sub: { b: 'y' } }", "{ a: 'x', sub: { b: 'y' } }");
    mk_schema_destroy(s);

    s = schema("{ a: String }", NULL);
    getter(s, "a", g_nomem, NULL);
    memset(&err, 0, sizeof err);
    assert_int_equal(ser_fail(s, false, &in, "{ a: 'x' }", &err), MK_ENOMEM);
    mk_schema_destroy(s);

    s = schema("{ a: String }", NULL);
    virtual(s, "v", v_fail, NULL);
    in = opts_none();
    in.virtuals = 1;
    memset(&err, 0, sizeof err);
    assert_int_equal(ser_fail(s, false, &in, "{ a: 'x' }", &err), MK_ERR);
    assert_string_equal(err.message, "virtual refused");
    mk_schema_destroy(s);

    s = schema("{ a: String }", NULL);
    virtual(s, "v", v_nomem, NULL);
    assert_int_equal(ser_fail(s, false, &in, "{ a: 'x' }", &err), MK_ENOMEM);
    mk_schema_destroy(s);

    /* a transform's error, also from a sub-document */
    s = schema("{ a: String }", NULL);
    mk_schema_t *child = schema("{ b: String }", NULL);
    transform(child, "toObject", t_fail, NULL);
    embed(s, "list", child, true, NULL);
    memset(&err, 0, sizeof err);
    assert_int_equal(ser_fail(s, false, NULL, "{ list: [{ b: 'x' }] }", &err), MK_ERR);
    assert_string_equal(err.message, "transform refused");
    EXPECT(s, false, NULL, "{ list: [] }", "{ list: [] }");
    mk_schema_destroy(child);
    mk_schema_destroy(s);

    /* a dotted virtual under a value that is not an object */
    s = schema("{ a: String, nest: { x: String } }", NULL);
    virtual(s, "nest.v", v_const, "v");
    in = opts_none();
    in.virtuals = 1;
    memset(&err, 0, sizeof err);
    assert_int_equal(ser_fail(s, false, &in, "{ nest: 'str' }", &err), MK_ERR);
    assert_string_equal(err.kind, "TypeError");
    assert_string_equal(err.message, "Cannot create property 'v' on string 'str'");
    assert_int_equal(ser_fail(s, false, &in, "{ nest: 5 }", &err), MK_ERR);
    assert_string_equal(err.message, "Cannot create property 'v' on number '5'");
    /* on an object that is not a plain one (a date, an array) the property is invisible */
    EXPECT(s, false, &in, "{ _id: 1, nest: ISODate('2020-01-01T00:00:00Z') }",
           "{ _id: 1, nest: ISODate('2020-01-01T00:00:00Z'), id: '1' }");
    EXPECT(s, false, &in, "{ _id: 1, nest: [1] }", "{ _id: 1, nest: [1], id: '1' }");
    /* a falsy one is replaced by an object, as JS's `cur[p] || {}` */
    EXPECT(s, false, &in, "{ _id: 1, nest: null }", "{ _id: 1, nest: { v: 'v' }, id: '1' }");
    mk_schema_destroy(s);
}

static void test_bad_input(void **state)
{
    mk_error_t err = {0};
    mk_schema_t *s = schema("{ a: String }", "{ toJSON: { virtuals: ['x'] } }");
    assert_int_equal(ser_fail(s, true, NULL, "{ a: 'x' }", &err), MK_ERR);
    assert_non_null(strstr(err.message, "toJSON.virtuals"));
    EXPECT(s, false, NULL, "{ a: 'x' }", "{ a: 'x' }"); /* toObject does not read it */
    mk_schema_destroy(s);

    /* corrupt BSON inside the document */
    s = schema("{ a: String }", NULL);
    bson_t *b = tu_bson("{ a: 'x', n: { b: 'yy' } }");
    uint8_t *bytes = bson_malloc(b->len);
    memcpy(bytes, bson_get_data(b), b->len);
    /* the inner document's length claims more than it has */
    const uint8_t *inner = memmem(bytes, b->len, "n\0", 2);
    assert_non_null(inner);
    bytes[(inner - bytes) + 2] = 0x7f;
    bson_t bad;
    assert_true(bson_init_static(&bad, bytes, b->len));
    mk_ser_opts_t o;
    mk_ser_resolve(s, false, NULL, &o);
    bson_t *out = bson_new();
    memset(&err, 0, sizeof err);
    assert_int_equal(mk_serialize(s, NULL, &bad, &o, out, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_INVALID_BSON);
    bson_destroy(out);
    bson_free(bytes);
    bson_destroy(b);
    /* nesting deeper than any stored document can be */
    bson_t deep;
    bson_init(&deep);
    /* bson_t needs its 128-byte alignment, which calloc does not give */
    bson_t *levels = aligned_alloc(_Alignof(bson_t), 300 * sizeof *levels);
    assert_non_null(levels);
    bson_append_document_begin(&deep, "d", 1, &levels[0]);
    for (int i = 1; i < 300; i++) bson_append_document_begin(&levels[i - 1], "d", 1, &levels[i]);
    BSON_APPEND_INT32(&levels[299], "x", 1);
    for (int i = 299; i > 0; i--) bson_append_document_end(&levels[i - 1], &levels[i]);
    bson_append_document_end(&deep, &levels[0]);
    out = bson_new();
    memset(&err, 0, sizeof err);
    assert_int_equal(mk_serialize(s, NULL, &deep, &o, out, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_OVERFLOW);
    bson_destroy(out);
    free(levels);
    bson_destroy(&deep);
    /* missing arguments */
    memset(&err, 0, sizeof err);
    assert_int_equal(mk_serialize(s, NULL, NULL, &o, NULL, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    mk_schema_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_copy),
        cmocka_unit_test(test_resolve_defaults),
        cmocka_unit_test(test_version_key),
        cmocka_unit_test(test_minimize_objects),
        cmocka_unit_test(test_minimize_subdocs),
        cmocka_unit_test(test_minimize_subdoc_options),
        cmocka_unit_test(test_getters_basic),
        cmocka_unit_test(test_getters_missing_paths),
        cmocka_unit_test(test_getters_arrays),
        cmocka_unit_test(test_getters_subdocs),
        cmocka_unit_test(test_getters_minimize_again),
        cmocka_unit_test(test_virtuals_basic),
        cmocka_unit_test(test_virtual_id),
        cmocka_unit_test(test_virtuals_subdocs),
        cmocka_unit_test(test_virtuals_option_inheritance),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_seed_transform),
        cmocka_unit_test(test_transform_subdocs),
        cmocka_unit_test(test_maps),
        cmocka_unit_test(test_callback_errors),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
