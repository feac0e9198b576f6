/* Tests of schema definitions (src/odm/schema.c): Mongoose's definition rules, options,
 * implicit paths, lookup, indexes, add/pick/clone, and the errors Mongoose gives. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include <meerkat/schema.h>

/* ---------- helpers ---------- */

static mk_schema_t *parse_ok_(const char *def, const char *opts, const char *file, int line)
{
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse(def, opts, &err);
    if (!s) {
        print_error("%s:%d: schema parse failed: [%s] %s\n", file, line, err.kind, err.message);
        _fail(file, line);
    }
    return s;
}
#define parse_ok(def, opts) parse_ok_((def), (opts), __FILE__, __LINE__)

/* Parsing fails with the given kind and a message starting with `msg`. */
static void parse_err_(const char *def, const char *opts, const char *kind, const char *msg,
                       const char *file, int line)
{
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse(def, opts, &err);
    bool ok = !s && strcmp(err.kind, kind) == 0 && strncmp(err.message, msg, strlen(msg)) == 0;
    if (!ok) {
        print_error("%s:%d: expected %s \"%s...\"\n  got: %s [%s] %s\n", file, line, kind, msg,
                    s ? "a schema" : "NULL", err.kind, err.message);
        mk_schema_destroy(s);
        _fail(file, line);
    }
}
#define parse_err(def, opts, kind, msg) parse_err_((def), (opts), (kind), (msg), __FILE__, __LINE__)

/* The schema's paths, in order, as "name:Type name:Type ...". */
static void assert_paths_(const mk_schema_t *s, const char *expect, const char *file, int line)
{
    char buf[2048] = "";
    size_t used = 0;
    for (size_t i = 0; i < mk_schema_path_count(s); i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        used +=
            (size_t)snprintf(buf + used, sizeof buf - used, "%s%s:%s", i ? " " : "",
                             mk_schema_path_name(p), mk_schematype_name(mk_schema_path_kind(p)));
        if (used >= sizeof buf) break;
    }
    if (strcmp(buf, expect) != 0) {
        print_error("%s:%d: paths\n  got:      %s\n  expected: %s\n", file, line, buf, expect);
        _fail(file, line);
    }
}
#define assert_paths(s, expect) assert_paths_((s), (expect), __FILE__, __LINE__)

static const mk_schema_path_t *path_ok_(const mk_schema_t *s, const char *name,
                                        mk_schematype_t type, const char *file, int line)
{
    const mk_schema_path_t *p = mk_schema_path(s, name);
    if (!p || mk_schema_path_kind(p) != type) {
        print_error("%s:%d: path %s: expected %s, got %s\n", file, line, name,
                    mk_schematype_name(type),
                    p ? mk_schematype_name(mk_schema_path_kind(p)) : "(none)");
        _fail(file, line);
    }
    return p;
}
#define path_ok(s, name, type) path_ok_((s), (name), (type), __FILE__, __LINE__)

static const char *const user_definition =
    "{\n"
    "  email: { type: String, required: true, unique: true, lowercase: true, trim: true,\n"
    "           index: true },\n"
    "  name: { type: String, required: true, trim: true, minlength: 2, maxlength: 100 },\n"
    "  passwordHash: { type: String, required: true, select: false },\n"
    "  role: { type: String, enum: ['user', 'admin'], default: 'user' },\n"
    "  profile: { avatar: String, bio: { type: String, maxlength: 500 } },\n"
    "  preferences: {\n"
    "    notifications: { type: Boolean, default: true },\n"
    "    theme: { type: String, enum: ['light', 'dark'], default: 'light' },\n"
    "  },\n"
    "}";

/* ---------- definitions ---------- */

static void test_shorthand(void **state)
{
    mk_schema_t *s = parse_ok("{ name: String, age: Number }", NULL);
    /* the book: Object.keys(schema.paths); // ['name', 'age', '_id'] */
    assert_paths(s, "name:String age:Number _id:ObjectId");
    assert_int_equal(mk_schema_path_type(s, "name"), MK_TYPE_STRING);
    assert_int_equal(mk_schema_path_type(s, "age"), MK_TYPE_NUMBER);
    assert_int_equal(mk_schema_path_type(s, "nope"), 0);
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "name")), "{}");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "_id")), "{ auto: true }");
    assert_null(mk_schema_path_at(s, 3));
    mk_schema_destroy(s);
}

static void test_all_type_names(void **state)
{
    mk_schema_t *s = parse_ok("{ a: String, b: Number, c: Boolean, d: Date, e: ObjectId,"
                              "  f: Buffer, g: Mixed, h: Object, i: Map, j: Decimal128,"
                              "  k: BigInt, l: Int32, m: Double, n: UUID, o: Array, p: Bool,"
                              "  q: Oid, r: Decimal }",
                              "{ _id: false }");
    assert_paths(s, "a:String b:Number c:Boolean d:Date e:ObjectId f:Buffer g:Mixed h:Mixed "
                    "i:Map j:Decimal128 k:BigInt l:Int32 m:Double n:UUID o:Array p:Boolean "
                    "q:ObjectId r:Decimal128");
    mk_schema_destroy(s);
}

static void test_quoted_and_namespaced_types(void **state)
{
    mk_schema_t *s = parse_ok("{ a: 'String', b: 'number', c: { type: \"ObjectId\" },"
                              "  d: Schema.Types.ObjectId, e: mongoose.ObjectId,"
                              "  f: mongoose.Schema.Types.Mixed, g: mongoose.Decimal128,"
                              "  h: mongoose.Types.ObjectId, i: { type: 'Schema.Types.String' },"
                              "  j: 'boolean' }",
                              NULL);
    assert_paths(s, "a:String b:Number c:ObjectId d:ObjectId e:ObjectId f:Mixed g:Decimal128 "
                    "h:ObjectId i:String j:Boolean _id:ObjectId");
    mk_schema_destroy(s);
}

static void test_full_form_options(void **state)
{
    mk_schema_t *s = parse_ok(user_definition, "{ timestamps: true, toJSON: { virtuals: true } }");
    assert_paths(s, "email:String name:String passwordHash:String role:String profile:Nested "
                    "profile.avatar:String profile.bio:String preferences:Nested "
                    "preferences.notifications:Boolean preferences.theme:String _id:ObjectId "
                    "createdAt:Date updatedAt:Date");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "email")),
                      "{ required: true, unique: true, lowercase: true, trim: true, index: true }");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "name")),
                      "{ required: true, trim: true, minlength: 2, maxlength: 100 }");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "role")),
                      "{ enum: ['user', 'admin'], default: 'user' }");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "profile.bio")),
                      "{ maxlength: 500 }");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "createdAt")),
                      "{ immutable: true }");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "updatedAt")), "{}");
    bson_iter_t it;
    assert_true(mk_schema_path_option(mk_schema_path(s, "passwordHash"), "select", &it));
    assert_false(bson_iter_bool(&it));
    assert_false(mk_schema_path_option(mk_schema_path(s, "passwordHash"), "default", &it));
    const mk_schema_options_t *o = mk_schema_options(s);
    assert_string_equal(o->created_at, "createdAt");
    assert_string_equal(o->updated_at, "updatedAt");
    assert_non_null(o->to_json);
    tu_assert_bson_eq(o->to_json, "{ virtuals: true }");
    assert_null(o->to_object);
    mk_schema_destroy(s);
}

static void test_nested_and_mixed(void **state)
{
    mk_schema_t *s = parse_ok("{ value: {}, meta: { type: {} }, profile: { a: { b: { c: Date } } },"
                              "  'x.y': String }",
                              "{ _id: false }");
    assert_paths(s, "value:Mixed meta:Mixed profile:Nested profile.a:Nested profile.a.b:Nested "
                    "profile.a.b.c:Date x:Nested x.y:String");
    mk_schema_destroy(s);
}

static void test_arrays(void **state)
{
    mk_schema_t *s =
        parse_ok("{ tags: [String], any: [], anyObj: [{}], matrix: [[Number]],"
                 "  members: [{ type: ObjectId, ref: 'Person' }],"
                 "  scores: { type: [Number], default: undefined },"
                 "  list: { type: Array }, nums: { type: Array, of: Number }, objs: Array }",
                 "{ _id: false }");
    assert_paths(s, "tags:Array any:Array anyObj:Array matrix:Array members:Array scores:Array "
                    "list:Array nums:Array objs:Array");
    const mk_schema_path_t *tags = path_ok(s, "tags", MK_TYPE_ARRAY);
    const mk_schema_path_t *el = mk_schema_path_element(tags);
    assert_non_null(el);
    assert_int_equal(mk_schema_path_kind(el), MK_TYPE_STRING);
    assert_string_equal(mk_schema_path_name(el), "tags.$");
    assert_null(mk_schema_path_schema(tags));
    assert_int_equal(mk_schema_path_kind(mk_schema_path_element(mk_schema_path(s, "any"))),
                     MK_TYPE_MIXED);
    assert_int_equal(mk_schema_path_kind(mk_schema_path_element(mk_schema_path(s, "anyObj"))),
                     MK_TYPE_MIXED);
    const mk_schema_path_t *m = mk_schema_path_element(mk_schema_path(s, "matrix"));
    assert_int_equal(mk_schema_path_kind(m), MK_TYPE_ARRAY);
    assert_int_equal(mk_schema_path_kind(mk_schema_path_element(m)), MK_TYPE_NUMBER);
    /* the book: `members` is an array of ObjectIds, not a document array */
    const mk_schema_path_t *mem = mk_schema_path_element(mk_schema_path(s, "members"));
    assert_int_equal(mk_schema_path_kind(mem), MK_TYPE_OBJECTID);
    tu_assert_bson_eq(mk_schema_path_options(mem), "{ ref: 'Person' }");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "members")), "{}");
    const mk_schema_path_t *sc = mk_schema_path(s, "scores");
    assert_int_equal(mk_schema_path_kind(mk_schema_path_element(sc)), MK_TYPE_NUMBER);
    bson_iter_t it;
    assert_true(mk_schema_path_option(sc, "default", &it));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_UNDEFINED);
    assert_int_equal(mk_schema_path_kind(mk_schema_path_element(mk_schema_path(s, "list"))),
                     MK_TYPE_MIXED);
    assert_int_equal(mk_schema_path_kind(mk_schema_path_element(mk_schema_path(s, "nums"))),
                     MK_TYPE_NUMBER);
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "nums")), "{}");
    assert_int_equal(mk_schema_path_kind(mk_schema_path_element(mk_schema_path(s, "objs"))),
                     MK_TYPE_MIXED);
    /* array element lookups */
    assert_ptr_equal(mk_schema_path(s, "tags.$"), el);
    assert_ptr_equal(mk_schema_path(s, "tags.3"), el);
    assert_null(mk_schema_path(s, "tags.x"));
    assert_null(mk_schema_path(s, "tags.0.x"));
    assert_int_equal(mk_schema_path_type(s, "matrix.0.1"), MK_TYPE_NUMBER);
    mk_schema_destroy(s);
}

static void test_document_arrays(void **state)
{
    mk_schema_t *s =
        parse_ok("{ comments: [{ user: String, text: String }],"
                 "  notes: [{ body: String, _id: false }],"
                 "  stops: [{ type: { city: String } }],"
                 "  members: [{ person: { type: ObjectId, ref: 'Person' }, rank: String }] }",
                 NULL);
    const mk_schema_path_t *c = path_ok(s, "comments", MK_TYPE_DOCARRAY);
    const mk_schema_t *child = mk_schema_path_schema(c);
    assert_non_null(child);
    assert_null(mk_schema_path_element(c));
    assert_paths(child, "user:String text:String _id:ObjectId");
    assert_paths(mk_schema_path_schema(mk_schema_path(s, "notes")), "body:String");
    assert_paths(mk_schema_path_schema(path_ok(s, "stops", MK_TYPE_DOCARRAY)),
                 "city:String _id:ObjectId");
    /* lookups into the sub-schema */
    path_ok(s, "comments.user", MK_TYPE_STRING);
    path_ok(s, "comments.0.user", MK_TYPE_STRING);
    path_ok(s, "comments.$.text", MK_TYPE_STRING);
    path_ok(s, "comments._id", MK_TYPE_OBJECTID);
    assert_null(mk_schema_path(s, "comments.0"));
    assert_null(mk_schema_path(s, "comments.nope"));
    const mk_schema_path_t *person = path_ok(s, "members.person", MK_TYPE_OBJECTID);
    tu_assert_bson_eq(mk_schema_path_options(person), "{ ref: 'Person' }");
    mk_schema_destroy(s);
}

static void test_subdocuments(void **state)
{
    mk_schema_t *s =
        parse_ok("{ address: { type: { street: String, zip: Number }, required: true },"
                 "  nested: { type: { inner: { type: { x: Number } } } } }",
                 "{ _id: false }");
    const mk_schema_path_t *a = path_ok(s, "address", MK_TYPE_SUBDOC);
    tu_assert_bson_eq(mk_schema_path_options(a), "{ required: true }");
    /* a single nested sub-document gets its own _id, as in Mongoose */
    assert_paths(mk_schema_path_schema(a), "street:String zip:Number _id:ObjectId");
    path_ok(s, "address.street", MK_TYPE_STRING);
    mk_schema_t *n = parse_ok("{ a: { type: { x: Number }, _id: false },"
                              "  b: { type: [{ y: Number }], _id: false } }",
                              NULL);
    assert_paths(mk_schema_path_schema(path_ok(n, "a", MK_TYPE_SUBDOC)), "x:Number");
    assert_paths(mk_schema_path_schema(path_ok(n, "b", MK_TYPE_DOCARRAY)), "y:Number");
    mk_schema_destroy(n);
    path_ok(s, "nested.inner", MK_TYPE_SUBDOC);
    path_ok(s, "nested.inner.x", MK_TYPE_NUMBER);
    assert_null(mk_schema_path(s, "address.nope"));
    mk_schema_destroy(s);
}

static void test_maps(void **state)
{
    mk_schema_t *s = parse_ok("{ attrs: { type: Map, of: String }, any: Map,"
                              "  scores: { type: Map, of: { type: Number, min: 0 }, default: {} },"
                              "  places: { type: Map, of: { street: String } },"
                              "  lists: { type: Map, of: [String] } }",
                              "{ _id: false }");
    const mk_schema_path_t *attrs = path_ok(s, "attrs", MK_TYPE_MAP);
    assert_int_equal(mk_schema_path_kind(mk_schema_path_element(attrs)), MK_TYPE_STRING);
    assert_string_equal(mk_schema_path_name(mk_schema_path_element(attrs)), "attrs.$*");
    tu_assert_bson_eq(mk_schema_path_options(attrs), "{}");
    assert_null(mk_schema_path_element(path_ok(s, "any", MK_TYPE_MAP)));
    const mk_schema_path_t *sc = path_ok(s, "scores", MK_TYPE_MAP);
    tu_assert_bson_eq(mk_schema_path_options(sc), "{ default: {} }");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path_element(sc)), "{ min: 0 }");
    const mk_schema_path_t *pl = mk_schema_path_element(path_ok(s, "places", MK_TYPE_MAP));
    assert_int_equal(mk_schema_path_kind(pl), MK_TYPE_SUBDOC);
    path_ok(s, "places.home.street", MK_TYPE_STRING);
    path_ok(s, "attrs.color", MK_TYPE_STRING);
    assert_null(mk_schema_path(s, "any.color"));
    const mk_schema_path_t *l = mk_schema_path_element(path_ok(s, "lists", MK_TYPE_MAP));
    assert_int_equal(mk_schema_path_kind(l), MK_TYPE_ARRAY);
    path_ok(s, "lists.k.0", MK_TYPE_STRING);
    mk_schema_destroy(s);
}

static void test_field_named_type(void **state)
{
    mk_schema_t *s =
        parse_ok("{ type: { type: String }, asset: { type: { type: String }, name: String } }",
                 "{ _id: false }");
    assert_paths(s, "type:String asset:Nested asset.type:String asset.name:String");
    mk_schema_destroy(s);
}

static void test_type_key_option(void **state)
{
    mk_schema_t *s = parse_ok("{ name: { $type: String, required: true },"
                              "  holder: { type: String, id: Number },"
                              "  list: [{ $type: Number }], sub: [{ type: String }] }",
                              "{ typeKey: '$type', _id: false }");
    assert_paths(s, "name:String holder:Nested holder.type:String holder.id:Number list:Array "
                    "sub:DocumentArray");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "name")), "{ required: true }");
    /* children inherit typeKey */
    assert_paths(mk_schema_path_schema(mk_schema_path(s, "sub")), "type:String _id:ObjectId");
    assert_string_equal(mk_schema_options(s)->type_key, "$type");
    mk_schema_destroy(s);
}

static void test_text_forms(void **state)
{
    /* type words inside strings, comments and regexes stay as written */
    mk_schema_t *s =
        parse_ok("{ // a String comment\n"
                 "  name: { type: String, default: 'Number one', match: /^[a-z/]+$/i },"
                 "  /* Foo */ at: { type: Date, default: Date.now },"
                 "  born: { type: Date, default: new Date(0) },"
                 "  label: { type: String, default: 'Date.now' },"
                 "  n: { type: Number, default: 1e3, max: -2.5E-1 } }",
                 NULL);
    const mk_schema_path_t *name = mk_schema_path(s, "name");
    bson_iter_t it;
    assert_true(mk_schema_path_option(name, "default", &it));
    assert_string_equal(bson_iter_utf8(&it, NULL), "Number one");
    assert_true(mk_schema_path_option(name, "match", &it));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_REGEX);
    const char *flags;
    assert_string_equal(bson_iter_regex(&it, &flags), "^[a-z/]+$");
    assert_string_equal(flags, "i");
    assert_true(mk_schema_path_default_is_now(mk_schema_path(s, "at")));
    assert_false(mk_schema_path_default_is_now(mk_schema_path(s, "born")));
    assert_false(mk_schema_path_default_is_now(mk_schema_path(s, "label")));
    assert_true(mk_schema_path_option(mk_schema_path(s, "born"), "default", &it));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_DATE_TIME);
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "n")),
                      "{ default: 1000, max: -0.25 }");
    mk_schema_destroy(s);
}

static void test_from_bson(void **state)
{
    bson_t *def = tu_bson("{ name: 'String', tags: ['String'] }");
    bson_t *opts = tu_bson("{ versionKey: false }");
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_from_bson(def, opts, &err);
    assert_non_null(s);
    assert_paths(s, "name:String tags:Array _id:ObjectId");
    assert_null(mk_schema_options(s)->version_key);
    mk_schema_destroy(s);
    bson_destroy(def);
    bson_destroy(opts);
    assert_null(mk_schema_from_bson(NULL, NULL, &err));
    assert_null(mk_schema_parse(NULL, NULL, &err));
}

/* ---------- implicit paths and options ---------- */

static void test_id_and_version_key(void **state)
{
    mk_schema_t *s = parse_ok("{ name: String }", "{ _id: false }");
    assert_paths(s, "name:String");
    mk_schema_destroy(s);
    s = parse_ok("{ _id: false, name: String }", NULL);
    assert_paths(s, "name:String");
    mk_schema_destroy(s);
    s = parse_ok("{ _id: Number, name: String }", NULL);
    assert_paths(s, "_id:Number name:String");
    mk_error_t err = {0};
    assert_string_equal(mk_schema_options(s)->version_key, "__v");
    assert_int_equal(mk_schema_add_version_key(s, &err), MK_OK);
    assert_int_equal(mk_schema_add_version_key(s, &err), MK_OK);
    assert_paths(s, "_id:Number name:String __v:Number");
    mk_schema_destroy(s);
    s = parse_ok("{ name: String }", "{ versionKey: '_version' }");
    assert_int_equal(mk_schema_add_version_key(s, &err), MK_OK);
    assert_paths(s, "name:String _id:ObjectId _version:Number");
    mk_schema_destroy(s);
    s = parse_ok("{ name: String }", "{ versionKey: false }");
    assert_int_equal(mk_schema_add_version_key(s, &err), MK_OK);
    assert_paths(s, "name:String _id:ObjectId");
    mk_schema_destroy(s);
}

static void test_timestamps(void **state)
{
    mk_schema_t *s = parse_ok("{ name: String }",
                              "{ timestamps: { createdAt: 'created_at', updatedAt: false } }");
    assert_paths(s, "name:String _id:ObjectId created_at:Date");
    assert_null(mk_schema_options(s)->updated_at);
    mk_schema_destroy(s);
    s = parse_ok("{ name: String }", "{ timestamps: { updatedAt: 'modified' } }");
    assert_paths(s, "name:String _id:ObjectId createdAt:Date modified:Date");
    mk_schema_destroy(s);
    /* a path the definition already has is kept */
    s = parse_ok("{ createdAt: Number }", "{ timestamps: true }");
    assert_paths(s, "createdAt:Number _id:ObjectId updatedAt:Date");
    mk_schema_destroy(s);
    s = parse_ok("{ name: String }", "{ timestamps: false }");
    assert_paths(s, "name:String _id:ObjectId");
    assert_null(mk_schema_options(s)->created_at);
    mk_schema_destroy(s);
}

static void test_options(void **state)
{
    mk_schema_t *s = parse_ok("{}", NULL);
    const mk_schema_options_t *o = mk_schema_options(s);
    assert_int_equal(o->strict, MK_STRICT_TRUE);
    assert_true(o->id_path && o->id_virtual && o->auto_index && o->minimize);
    assert_true(o->validate_before_save);
    assert_false(o->optimistic_concurrency);
    assert_null(o->collection);
    assert_string_equal(o->type_key, "type");
    assert_string_equal(o->discriminator_key, "__t");
    assert_null(o->to_json);
    assert_paths(s, "_id:ObjectId");
    mk_schema_destroy(s);

    s = parse_ok("{}", "{ strict: 'throw', strictQuery: false, collection: 'people', id: false,"
                       "  autoIndex: false, minimize: false, optimisticConcurrency: true,"
                       "  validateBeforeSave: false, toObject: { getters: true },"
                       "  capped: 1024, discriminatorKey: 'kind' }");
    o = mk_schema_options(s);
    assert_int_equal(o->strict, MK_STRICT_THROW);
    assert_int_equal(o->strict_query, MK_STRICT_FALSE);
    assert_string_equal(o->collection, "people");
    assert_false(o->id_virtual || o->auto_index || o->minimize || o->validate_before_save);
    assert_true(o->optimistic_concurrency);
    tu_assert_bson_eq(o->to_object, "{ getters: true }");
    assert_string_equal(o->discriminator_key, "kind");
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, o->raw, "capped"));
    mk_schema_destroy(s);

    parse_err("{}", "{ colection: 'x' }", "InvalidOptions", "unknown schema option `colection`");
    parse_err("{}", "{ strict: 'yes' }", "InvalidOptions", "schema option `strict` must be");
    parse_err("{}", "{ _id: 1 }", "InvalidOptions", "schema option `_id` must be a boolean");
    parse_err("{}", "{ collection: '' }", "InvalidOptions", "schema option `collection`");
    parse_err("{}", "{ versionKey: true }", "InvalidOptions", "schema option `versionKey`");
    parse_err("{}", "{ timestamps: 1 }", "InvalidOptions", "schema option `timestamps`");
    parse_err("{}", "{ timestamps: { currentTime: 1 } }", "InvalidOptions",
              "timestamps option `currentTime` is not supported");
    parse_err("{}", "{ toJSON: true }", "InvalidOptions", "schema option `toJSON` must be");
}

/* ---------- errors ---------- */

static void test_errors(void **state)
{
    parse_err("{ x: Foo }", NULL, "TypeError",
              "Invalid schema configuration: `Foo` is not a valid type at path `x`. See "
              "https://bit.ly/mongoose-schematypes");
    parse_err("{ a: { b: { type: 'Strin' } } }", NULL, "TypeError",
              "Invalid schema configuration: `Strin` is not a valid type at path `a.b`.");
    parse_err("{ x: Schema.Types.Foo }", NULL, "TypeError",
              "Invalid schema configuration: `Foo` is not a valid type at path `x`.");
    parse_err("{ tags: [Foo] }", NULL, "TypeError",
              "Invalid schema configuration: `Foo` is not a valid type within the array `tags`.");
    parse_err("{ tags: [{ type: Foo, ref: 'X' }] }", NULL, "TypeError",
              "Invalid schema configuration: `Foo` is not a valid type within the array `tags`.");
    parse_err("{ tags: [5] }", NULL, "TypeError",
              "Invalid schema configuration: Could not determine the embedded type for array "
              "`tags`.");
    parse_err("{ x: 5 }", NULL, "TypeError", "Invalid value for schema path `x`, got value \"5\"");
    parse_err("{ x: true }", NULL, "TypeError",
              "Invalid value for schema path `x`, got value \"true\"");
    parse_err("{ x: null }", NULL, "TypeError", "Invalid value for schema path `x`");
    parse_err("{ x: { type: 5 } }", NULL, "TypeError",
              "Invalid schema configuration: `5` is not a valid type at path `x`.");
    parse_err("{ m: { type: Map, of: Foo } }", NULL, "TypeError",
              "Invalid schema configuration: `Foo` is not a valid type at path `m.$*`.");
    parse_err("{ a: String, 'a.b': Number }", NULL, "TypeError",
              "Cannot set nested path `a.b`. Parent path `a` already set to type String.");
    parse_err("{ x: ( }", NULL, "FailedToParse", "line 1");
    parse_err("{ x: v => v }", NULL, "FailedToParse", "line 1");
    parse_err("{ x: String }", "{ x: ( }", "FailedToParse", "line 1");
    parse_err("[String]", NULL, "FailedToParse", "");
}

/* ---------- indexes ---------- */

static void test_indexes(void **state)
{
    mk_error_t err = {0};
    mk_schema_t *s = parse_ok(user_definition, "{ timestamps: true }");
    assert_int_equal(mk_schema_index(s, "{ createdAt: -1 }", NULL, &err), MK_OK);
    assert_int_equal(mk_schema_index(s, "{ name: 'text', email: 'text' }", NULL, &err), MK_OK);
    bson_t *ix = mk_schema_indexes(s, &err);
    assert_non_null(ix);
    tu_assert_bson_eq(ix, "{ '0': [ { email: 1 }, { unique: true } ],"
                          "  '1': [ { createdAt: -1 }, {} ],"
                          "  '2': [ { name: 'text', email: 'text' }, {} ] }");
    bson_destroy(ix);
    assert_int_equal(mk_schema_index(s, "{}", NULL, &err), MK_ERR);
    assert_int_equal(mk_schema_index(s, "{ a: ( }", NULL, &err), MK_ERR);
    assert_int_equal(mk_schema_index(s, "{ a: 1 }", "{ ( }", &err), MK_ERR);
    mk_schema_destroy(s);

    s = parse_ok(
        "{ a: { type: String, index: -1 }, b: { type: String, index: '2dsphere' },"
        "  c: { type: String, sparse: true }, d: { type: Date, expires: '1d' },"
        "  e: { type: Date, expires: 60 }, f: { type: String, index: { unique: true, name: 'f_1x' "
        "} },"
        "  g: { type: String, index: { text: true } }, h: { type: String, unique: false },"
        "  i: { type: String, index: 'desc' }, j: { type: String, index: false },"
        "  k: [{ type: ObjectId, index: true }], l: { type: String, unique: true, sparse: true },"
        "  m: { type: Date, expires: '1.5 hours' },"
        "  comments: [{ user: { type: String, index: true } }],"
        "  addr: { type: { zip: { type: String, unique: true } } },"
        "  skip: { type: [{ q: { type: String, index: true } }], excludeIndexes: true } }",
        "{ _id: false }");
    ix = mk_schema_indexes(s, &err);
    assert_non_null(ix);
    tu_assert_bson_eq(ix,
                      "{ '0': [ { a: -1 }, {} ], '1': [ { b: '2dsphere' }, {} ],"
                      "  '2': [ { c: 1 }, { sparse: true } ],"
                      "  '3': [ { d: 1 }, { expireAfterSeconds: 86400 } ],"
                      "  '4': [ { e: 1 }, { expireAfterSeconds: 60 } ],"
                      "  '5': [ { f: 1 }, { unique: true, name: 'f_1x' } ],"
                      "  '6': [ { g: 'text' }, {} ], '7': [ { i: 1 }, {} ],"
                      "  '8': [ { k: 1 }, {} ], '9': [ { l: 1 }, { unique: true, sparse: true } ],"
                      "  '10': [ { m: 1 }, { expireAfterSeconds: 5400 } ],"
                      "  '11': [ { 'comments.user': 1 }, {} ],"
                      "  '12': [ { 'addr.zip': 1 }, { unique: true } ] }");
    bson_destroy(ix);
    mk_schema_destroy(s);

    /* schema.index() inside a sub-schema is prefixed */
    mk_schema_t *sub = parse_ok("{ first: String, last: String }", NULL);
    assert_int_equal(mk_schema_index(sub, "{ first: 1, last: 1 }", "{ unique: true }", &err),
                     MK_OK);
    s = parse_ok("{ title: String }", NULL);
    assert_int_equal(mk_schema_add_schema(s, "authors", sub, true, NULL, &err), MK_OK);
    mk_schema_destroy(sub);
    ix = mk_schema_indexes(s, &err);
    tu_assert_bson_eq(ix,
                      "{ '0': [ { 'authors.first': 1, 'authors.last': 1 }, { unique: true } ] }");
    bson_destroy(ix);
    mk_schema_destroy(s);

    s = parse_ok("{ a: { type: String, index: false, unique: true } }", NULL);
    assert_null(mk_schema_indexes(s, &err));
    assert_string_equal(err.message,
                        "Path \"a\" may not have `index` set to false and `unique` set to true");
    mk_schema_destroy(s);
    s = parse_ok("{ a: { type: String, index: false, sparse: true } }", NULL);
    assert_null(mk_schema_indexes(s, &err));
    mk_schema_destroy(s);
    s = parse_ok("{ a: { type: Date, expires: 'soon' } }", NULL);
    assert_null(mk_schema_indexes(s, &err));
    assert_string_equal(err.message, "Invalid `expires` value for path `a`");
    mk_schema_destroy(s);
}

/* ---------- add, pick, clone, embed ---------- */

static void test_add(void **state)
{
    mk_error_t err = {0};
    mk_schema_t *s = parse_ok("{ name: String, profile: { bio: String } }", NULL);
    assert_int_equal(mk_schema_add(s,
                                   "{ age: Number, name: { type: String, required: true },"
                                   "  profile: { avatar: String } }",
                                   &err),
                     MK_OK);
    assert_paths(s, "name:String profile:Nested profile.bio:String _id:ObjectId age:Number "
                    "profile.avatar:String");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(s, "name")), "{ required: true }");
    /* a nested path replaced by a leaf loses its children */
    assert_int_equal(mk_schema_add(s, "{ profile: String }", &err), MK_OK);
    assert_paths(s, "name:String profile:String _id:ObjectId age:Number");
    assert_int_equal(mk_schema_add(s, "{ profile: { x: Number } }", &err), MK_ERR);
    assert_string_equal(err.kind, "TypeError");
    assert_string_equal(err.message,
                        "Cannot set nested path `profile.x`. Parent path `profile` already set "
                        "to type String.");
    assert_int_equal(mk_schema_add(s, "{ _id: false }", &err), MK_OK);
    assert_paths(s, "name:String profile:String age:Number");
    assert_int_equal(mk_schema_add(s, "{ y: Foo }", &err), MK_ERR);
    assert_int_equal(mk_schema_add(s, "{ y: ", &err), MK_ERR);
    assert_paths(s, "name:String profile:String age:Number");
    mk_schema_destroy(s);
}

static void test_pick(void **state)
{
    mk_error_t err = {0};
    mk_schema_t *user = parse_ok(user_definition, "{ timestamps: true }");
    const char *const fields[] = {"name", "email", "profile", NULL};
    mk_schema_t *author = mk_schema_pick(user, fields, &err);
    assert_non_null(author);
    assert_paths(author, "_id:ObjectId createdAt:Date updatedAt:Date name:String email:String "
                         "profile:Nested profile.avatar:String profile.bio:String");
    tu_assert_bson_eq(mk_schema_path_options(mk_schema_path(author, "name")),
                      "{ required: true, trim: true, minlength: 2, maxlength: 100 }");
    /* the book's blogPostSchema: author: userSchema.pick(['name', 'email']) */
    mk_schema_t *post =
        parse_ok("{ title: String, content: String, authorId: String, tags: [String] }", NULL);
    assert_int_equal(
        mk_schema_add_schema(post, "author", author, false, "{ required: true }", &err), MK_OK);
    mk_schema_destroy(author);
    const mk_schema_path_t *a = path_ok(post, "author", MK_TYPE_SUBDOC);
    tu_assert_bson_eq(mk_schema_path_options(a), "{ required: true }");
    path_ok(post, "author.profile.bio", MK_TYPE_STRING);
    mk_schema_destroy(post);

    const char *const bad[] = {"name", "nope", NULL};
    assert_null(mk_schema_pick(user, bad, &err));
    assert_string_equal(err.message, "Path `nope` is not in the schema");
    mk_schema_destroy(user);
}

static void test_clone_and_embed(void **state)
{
    mk_error_t err = {0};
    mk_schema_t *comment = parse_ok("{ user: String, comment: String }", "{ _id: false }");
    mk_schema_t *post = parse_ok("{ title: String }", "{ collection: 'posts' }");
    assert_int_equal(mk_schema_add_schema(post, "comments", comment, true, NULL, &err), MK_OK);
    mk_schema_destroy(comment);
    assert_int_equal(mk_schema_index(post, "{ title: 1 }", NULL, &err), MK_OK);
    mk_schema_t *copy = mk_schema_clone(post, &err);
    mk_schema_destroy(post);
    assert_non_null(copy);
    assert_paths(copy, "title:String _id:ObjectId comments:DocumentArray");
    assert_paths(mk_schema_path_schema(mk_schema_path(copy, "comments")),
                 "user:String comment:String");
    assert_string_equal(mk_schema_options(copy)->collection, "posts");
    bson_t *ix = mk_schema_indexes(copy, &err);
    tu_assert_bson_eq(ix, "{ '0': [ { title: 1 }, {} ] }");
    bson_destroy(ix);
    mk_schema_t *one = parse_ok("{ q: String }", NULL);
    assert_int_equal(mk_schema_add_schema(copy, "one", one, false, "{ _id: false }", &err), MK_OK);
    mk_schema_destroy(one);
    assert_paths(mk_schema_path_schema(mk_schema_path(copy, "one")), "q:String");
    assert_int_equal(mk_schema_add_schema(copy, "", copy, false, NULL, &err), MK_ERR);
    assert_int_equal(mk_schema_add_schema(copy, "x", copy, false, "{ ( }", &err), MK_ERR);
    assert_int_equal(mk_schema_add_schema(copy, "title.x", copy, false, NULL, &err), MK_ERR);
    mk_schema_destroy(copy);
}

static void test_type_names(void **state)
{
    assert_string_equal(mk_schematype_name(MK_TYPE_SUBDOC), "Embedded");
    assert_string_equal(mk_schematype_name(MK_TYPE_DOCARRAY), "DocumentArray");
    assert_string_equal(mk_schematype_name(MK_TYPE_NESTED), "Nested");
    assert_string_equal(mk_schematype_name(0), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shorthand),
        cmocka_unit_test(test_all_type_names),
        cmocka_unit_test(test_quoted_and_namespaced_types),
        cmocka_unit_test(test_full_form_options),
        cmocka_unit_test(test_nested_and_mixed),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_document_arrays),
        cmocka_unit_test(test_subdocuments),
        cmocka_unit_test(test_maps),
        cmocka_unit_test(test_field_named_type),
        cmocka_unit_test(test_type_key_option),
        cmocka_unit_test(test_text_forms),
        cmocka_unit_test(test_from_bson),
        cmocka_unit_test(test_id_and_version_key),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_indexes),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_clone_and_embed),
        cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
