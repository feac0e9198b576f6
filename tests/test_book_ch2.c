/* "Mastering Mongoose", chapter 2 (Core Concepts): every example whose comments state a result,
 * as meerkat tests: the five core concepts, casting, validation, change tracking, schemas and
 * SchemaTypes, getters, setters, virtuals, and multiple connections. The assertions are the
 * values in the book's comments; where the book and Mongoose 8 disagree, Mongoose 8 wins and a
 * NOTE says so. JavaScript functions in schemas are C callbacks. Queries (Model.findOne,
 * Model.updateOne, the Query class) are part 2: stored documents are read with the raw `find`
 * command and hydrated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "odm_helpers.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <meerkat/odm.h>

/* ---------- helpers ---------- */

/* A new UTF-8 value (bson_value_destroy frees it). */
static int str_value(bson_value_t *out, const char *s, size_t len, mk_error_t *err)
{
    char *copy = bson_strndup(s, len);
    if (!copy) return mk_error_nomem(err);
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.str = copy;
    out->value.v_utf8.len = (uint32_t)len;
    return MK_OK;
}

/* What JavaScript throws when the book's function calls a string method on a value that is not a
 * string (`v.toLowerCase()` with v undefined, null or a number). */
static int not_a_string(const bson_value_t *v, const char *method, mk_error_t *err)
{
    if (!v || v->value_type == BSON_TYPE_UNDEFINED || v->value_type == BSON_TYPE_NULL)
        return mk_error_set(err, 0, "TypeError", "Cannot read properties of %s (reading '%s')",
                            v && v->value_type == BSON_TYPE_NULL ? "null" : "undefined", method);
    return mk_error_set(err, 0, "TypeError", "v.%s is not a function", method);
}

/* JS `email.slice(email.indexOf('@') + 1)`: everything after the first '@' (all of it when there
 * is none, as indexOf gives -1). */
static const char *after_at(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    return at ? at + 1 : s;
}

/* ---------- 2.1 The five core concepts ---------- */

/* const conn = mongoose.createConnection();
 * conn instanceof mongoose.Connection; // true
 * const schema = new mongoose.Schema({ name: String });
 * const MyModel = conn.model('ModelName', schema);
 * const document = new MyModel();
 * document instanceof MyModel; // true
 * ...
 * mongoose.model('MyModel', new mongoose.Schema({}));
 * (ch. 2, Mongoose's Core Concepts)
 * NOTE: the instanceof / prototype checks become "the document's model is MyModel", "the model
 * is registered on the connection under its name". MyModel.find() (a Query) is part 2. */
static void ch2_core_concepts_connection_schema_model_document(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *schema = schema_ok("{ name: String }", NULL);
    mk_model_t *MyModel = compile_ok(conn, "ModelName", schema);
    assert_string_equal(mk_model_name(MyModel), "ModelName");
    assert_string_equal(mk_model_collection_name(MyModel), "modelnames");
    assert_ptr_equal(mk_model_conn(MyModel), conn);
    mk_error_t err = {0};
    assert_ptr_equal(mk_model_get(conn, "ModelName", &err), MyModel);
    assert_int_equal(mk_schema_path_type(mk_model_schema(MyModel), "name"), MK_TYPE_STRING);

    mk_doc_t *document = doc_ok(mk_doc_new(MyModel, &err, "{}"), &err);
    assert_ptr_equal(mk_doc_model(document), MyModel);
    assert_true(mk_doc_is_new(document));
    mk_doc_destroy(document);

    /* mongoose.model('MyModel', new mongoose.Schema({})) */
    mk_model_t *Empty = compile_ok(conn, "MyModel", schema_ok("{}", NULL));
    assert_string_equal(mk_model_collection_name(Empty), "mymodels");
    assert_ptr_equal(mk_model_get(conn, "MyModel", &err), Empty);

    /* a model name nobody registered */
    mk_error_clear(&err);
    assert_null(mk_model_get(conn, "Nobody", &err));
    assert_string_equal(err.kind, "MissingSchemaError");
    mk_conn_close(conn);
}

/* ---------- 2.2 Documents: casting ---------- */

/* const schema = Schema({ name: String, age: Number });
 * const MyModel = mongoose.model('MyModel', schema);
 * const doc = new MyModel({});
 * doc.age = 'not a number';
 * // Throws CastError: Cast to Number failed for value
 * // "not a number" at path "age"
 * await doc.save();
 * (ch. 2, Casting)
 * NOTE: Mongoose 8 rejects save() with a ValidationError whose errors.age is the CastError, and
 * the message has "(type string)". In C the assignment itself also returns the CastError. */
static void ch2_casting_age_not_a_number(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *MyModel =
        compile_ok(conn, "MyModel", schema_ok("{ name: String, age: Number }", NULL));
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(MyModel, &err, "{}"), &err);

    assert_int_equal(mk_doc_set(doc, "age", MK_STR("not a number"), &err), MK_ERR);
    assert_string_equal(err.kind, "CastError");
    assert_string_equal(
        err.message,
        "Cast to Number failed for value \"not a number\" (type string) at path \"age\"");

    mk_error_clear(&err);
    assert_int_equal(mk_doc_save(doc, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_string_equal(err.message, "MyModel validation failed: age: Cast to Number failed for "
                                     "value \"not a number\" (type string) at path \"age\"");
    assert_int_equal(mk_error_detail_count(&err), 1);
    /* NOTE: Mongoose's CastError.kind is the type name ('Number'). */
    assert_detail(&err, "age", "CastError", "Number",
                  "Cast to Number failed for value \"not a number\" (type string) at path \"age\"");

    /* nothing was stored */
    assert_true(mk_doc_is_new(doc));
    assert_int_equal(count_in(conn, "mymodels"), 0);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* const doc = new Person({ name: 'Jean-Luc Picard', age: 59 });
 * doc.age = 'not a number';
 * doc.age; // 59
 * (ch. 2, Casting: "If casting fails, Mongoose will not overwrite the current value") */
static void ch2_casting_failed_cast_keeps_value(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Person =
        compile_ok(conn, "Person", schema_ok("{ name: String, age: Number }", NULL));
    assert_string_equal(mk_model_collection_name(Person), "people");
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Person, &err, "{ name: 'Jean-Luc Picard', age: 59 }"), &err);

    assert_int_equal(mk_doc_set(doc, "age", MK_STR("not a number"), &err), MK_ERR);
    assert_int_equal(mk_doc_get_i64(doc, "age"), 59);
    bson_value_t v;
    assert_true(mk_doc_get(doc, "age", &v));
    assert_int_equal(v.value_type, BSON_TYPE_INT32);
    assert_int_equal(v.value.v_int32, 59);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* const doc = new Person({ name: 'Jean-Luc Picard', age: 59 });
 * doc.age = 'not a number';
 * doc.age; // 59
 * doc.age = '12';
 * doc.age; // 12 as a number
 * // Saving succeeds, because Mongoose successfully converted the
 * // string '12' to a number and cleared the previous CastError
 * await doc.save();
 * (ch. 2, Casting) */
static void ch2_casting_castable_value_clears_cast_error(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Person =
        compile_ok(conn, "Person", schema_ok("{ name: String, age: Number }", NULL));
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Person, &err, "{ name: 'Jean-Luc Picard', age: 59 }"), &err);

    assert_int_equal(mk_doc_set(doc, "age", MK_STR("not a number"), &err), MK_ERR);
    assert_int_equal(mk_doc_get_i64(doc, "age"), 59);
    assert_int_equal(mk_doc_validate(doc, &err), MK_ERR); /* the CastError is recorded */

    assert_ok(mk_doc_set(doc, "age", MK_STR("12"), &err), &err);
    bson_value_t v;
    assert_true(mk_doc_get(doc, "age", &v));
    assert_int_equal(v.value_type, BSON_TYPE_INT32); /* 12 as a number */
    assert_int_equal(v.value.v_int32, 12);

    assert_ok(mk_doc_save(doc, &err), &err);
    char hex[25], expect[200];
    oid_hex(doc, hex);
    bson_t *stored = find_by_id(conn, "people", mk_doc_oid(doc));
    snprintf(expect, sizeof expect,
             "{ _id: ObjectId('%s'), name: 'Jean-Luc Picard', age: 12, __v: 0 }", hex);
    assert_fields(stored, expect);
    bson_destroy(stored);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* doc.age = null;
 * doc.name = undefined;
 * // Succeeds, because Mongoose casting lets `null` and `undefined`.
 * // `name` and `age` will _both_ be `null` in the database.
 * await doc.save();
 * (ch. 2, Casting: nullish values)
 * NOTE: Mongoose 8 saves `doc.name = undefined` as { $unset: { name: 1 } }: `name` is removed
 * from the stored document, not stored as null. `age` is null. `undefined` is mk_doc_unset. */
static void ch2_casting_nullish_values_pass(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Person =
        compile_ok(conn, "Person", schema_ok("{ name: String, age: Number }", NULL));
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Person, &err, "{ name: 'Jean-Luc Picard', age: 59 }"), &err);
    assert_ok(mk_doc_set(doc, "age", MK_STR("12"), &err), &err);
    assert_ok(mk_doc_save(doc, &err), &err);

    assert_ok(mk_doc_set(doc, "age", MK_NULL, &err), &err);
    assert_ok(mk_doc_unset(doc, "name", &err), &err);
    bson_value_t v;
    assert_true(mk_doc_get(doc, "age", &v));
    assert_int_equal(v.value_type, BSON_TYPE_NULL);
    assert_false(mk_doc_get(doc, "name", &v));

    bson_t *delta = mk_doc_delta(doc, &err);
    assert_non_null(delta);
    tu_assert_bson_eq(delta, "{ $set: { age: null }, $unset: { name: 1 } }");
    bson_destroy(delta);

    assert_ok(mk_doc_save(doc, &err), &err);
    char hex[25], expect[160];
    oid_hex(doc, hex);
    bson_t *stored = find_by_id(conn, "people", mk_doc_oid(doc));
    snprintf(expect, sizeof expect, "{ _id: ObjectId('%s'), age: null, __v: 0 }", hex);
    assert_fields(stored, expect);
    bson_destroy(stored);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* ---------- 2.2 Documents: validation ---------- */

/* const schema = new mongoose.Schema({
 *   name: { type: String, enum: ['Jean-Luc Picard', 'William Riker', 'Deanna Troi'] } });
 * const doc = new Person({ name: 'Kathryn Janeway' });
 * await doc.save().catch(error => {
 *   // ValidationError: Person validation failed: name:
 *   // `Kathryn Janeway` is not a valid enum value for path `name`.
 *   error;
 *   // ValidatorError: `Kathryn Janeway` is not a valid enum
 *   // value for path `name`.
 *   error.errors['name'];
 *   Object.keys(error.errors); // ['name']
 * });
 * (ch. 2, Validation) */
static void ch2_validation_enum(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Person =
        compile_ok(conn, "Person",
                   schema_ok("{ name: { type: String,\n"
                             "    // `enum` adds a validator to `name`. The built-in `enum`\n"
                             "    // validator ensures `name` will be one of the below values.\n"
                             "    enum: ['Jean-Luc Picard', 'William Riker', 'Deanna Troi'] } }",
                             NULL));
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Person, &err, "{ name: 'Kathryn Janeway' }"), &err);

    assert_int_equal(mk_doc_save(doc, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_string_equal(err.message, "Person validation failed: name: `Kathryn Janeway` is not a "
                                     "valid enum value for path `name`.");
    assert_int_equal(mk_error_detail_count(&err), 1); /* Object.keys(error.errors) */
    mk_error_detail_t d;
    assert_true(mk_error_detail(&err, 0, &d));
    assert_string_equal(d.path, "name");
    assert_detail(&err, "name", "ValidatorError", "enum",
                  "`Kathryn Janeway` is not a valid enum value for path `name`.");
    assert_int_equal(count_in(conn, "people"), 0);

    /* validate() alone gives the same error */
    mk_error_clear(&err);
    assert_int_equal(mk_doc_validate(doc, &err), MK_ERR);
    assert_string_equal(err.message, "Person validation failed: name: `Kathryn Janeway` is not a "
                                     "valid enum value for path `name`.");
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* const schema = new mongoose.Schema({ age: { type: Number, enum: [59, 60, 61] } });
 * const doc = new Person({ age: 22 });
 * // No error, `enum` does nothing for `type: Number`
 * await doc.validate();
 * (ch. 2, Validation)
 * NOTE: Mongoose 8 has an `enum` validator for Number paths (SchemaNumber.prototype.enum), so
 * validate() fails: "Person validation failed: age: `22` is not a valid enum value for path
 * `age`." A value in the list passes. */
static void ch2_validation_enum_on_number(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Person = compile_ok(
        conn, "Person", schema_ok("{ age: { type: Number, enum: [59, 60, 61] } }", NULL));
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Person, &err, "{ age: 22 }"), &err);
    assert_int_equal(mk_doc_validate(doc, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_string_equal(
        err.message,
        "Person validation failed: age: `22` is not a valid enum value for path `age`.");
    assert_detail(&err, "age", "ValidatorError", "enum",
                  "`22` is not a valid enum value for path `age`.");

    assert_ok(mk_doc_set(doc, "age", MK_I32(60), &err), &err);
    assert_ok(mk_doc_validate(doc, &err), &err);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* const schema = new mongoose.Schema({ name: { type: String, required: true } });
 * const doc = new Person({ name: null });
 * await doc.validate().catch(error => {
 *   // ValidationError: Person validation failed: name: Path
 *   // `name` is required.
 *   error;
 *   // ValidatorError: Path `name` is required.
 *   error.errors['name'];
 * });
 * (ch. 2, Validation: the required validator) */
static void ch2_validation_required(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Person =
        compile_ok(conn, "Person",
                   schema_ok("{ name: { type: String,\n"
                             "    // Adds the `required` validator to the `name` path\n"
                             "    required: true } }",
                             NULL));
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Person, &err, "{ name: null }"), &err);
    assert_int_equal(mk_doc_validate(doc, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_string_equal(err.message, "Person validation failed: name: Path `name` is required.");
    assert_int_equal(mk_error_detail_count(&err), 1);
    assert_detail(&err, "name", "ValidatorError", "required", "Path `name` is required.");

    /* the required validator disallows nullish values: undefined too */
    mk_doc_t *empty = doc_ok(mk_doc_new(Person, &err, "{}"), &err);
    mk_error_clear(&err);
    assert_int_equal(mk_doc_save(empty, &err), MK_ERR);
    assert_string_equal(err.message, "Person validation failed: name: Path `name` is required.");

    assert_ok(mk_doc_set(doc, "name", MK_STR("Jean-Luc Picard"), &err), &err);
    assert_ok(mk_doc_validate(doc, &err), &err);
    mk_doc_destroy(empty);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* ---------- 2.2 Documents: change tracking ---------- */

/* const doc = new MyModel({});
 * doc.name = 'Jean Valjean';
 * doc.age = 27;
 * await doc.save(); // Persist `doc` to MongoDB
 * const doc = await MyModel.findOne();
 * doc.name; // "Jean Valjean"
 * doc.name = 'Monsieur Leblanc';
 * doc.modifiedPaths(); // ['name']
 * // `save()` only sends updated paths to MongoDB. Mongoose doesn't
 * // send `age`.
 * await doc.save();
 * (ch. 2, Change Tracking)
 * NOTE: findOne() is part 2: the stored document is read with `find` and hydrated. */
static void ch2_change_tracking_minimal_update(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *MyModel =
        compile_ok(conn, "MyModel", schema_ok("{ name: String, age: Number }", NULL));
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(MyModel, &err, "{}"), &err);
    assert_ok(mk_doc_set(doc, "name", MK_STR("Jean Valjean"), &err), &err);
    assert_ok(mk_doc_set(doc, "age", MK_I32(27), &err), &err);
    assert_ok(mk_doc_save(doc, &err), &err);
    bson_oid_t id = *mk_doc_oid(doc);
    mk_doc_destroy(doc);

    bson_t *stored = find_by_id(conn, "mymodels", &id);
    assert_non_null(stored);
    doc = doc_ok(mk_doc_hydrate(MyModel, stored, &err), &err);
    bson_destroy(stored);
    assert_doc_str(doc, "name", "Jean Valjean");
    assert_false(mk_doc_is_modified(doc, NULL));

    assert_ok(mk_doc_set(doc, "name", MK_STR("Monsieur Leblanc"), &err), &err);
    char **paths = mk_doc_modified_paths(doc, false);
    assert_non_null(paths);
    assert_non_null(paths[0]);
    assert_string_equal(paths[0], "name");
    assert_null(paths[1]);
    mk_strv_free(paths);
    assert_true(mk_doc_is_modified(doc, "name"));
    assert_false(mk_doc_is_modified(doc, "age"));

    /* only `name` is sent */
    bson_t *delta = mk_doc_delta(doc, &err);
    assert_non_null(delta);
    tu_assert_bson_eq(delta, "{ $set: { name: 'Monsieur Leblanc' } }");
    bson_destroy(delta);

    assert_ok(mk_doc_save(doc, &err), &err);
    assert_false(mk_doc_is_modified(doc, NULL));
    char hex[25], expect[200];
    bson_oid_to_string(&id, hex);
    stored = find_by_id(conn, "mymodels", &id);
    snprintf(expect, sizeof expect,
             "{ _id: ObjectId('%s'), name: 'Monsieur Leblanc', age: 27, __v: 0 }", hex);
    assert_fields(stored, expect);
    bson_destroy(stored);

    /* saving again sends nothing */
    delta = mk_doc_delta(doc, &err);
    assert_non_null(delta);
    tu_assert_bson_eq(delta, "{}");
    bson_destroy(delta);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* ---------- 2.3 Schemas and SchemaTypes ---------- */

/* const schema = Schema({ name: String, age: Number });
 * Object.keys(schema.paths); // ['name', 'age', '_id']
 * schema.path('name'); // SchemaString { path: 'name', ... }
 * schema.path('age'); // SchemaNumber { path: 'age', ... }
 * schema.path('name') instanceof mongoose.Schema.Types.String; // true
 * (ch. 2, Schemas and SchemaTypes) */
static void ch2_schema_paths_and_schematypes(void **state)
{
    mk_schema_t *schema = schema_ok("{ name: String, age: Number }", NULL);
    assert_int_equal(mk_schema_path_count(schema), 3);
    assert_string_equal(mk_schema_path_name(mk_schema_path_at(schema, 0)), "name");
    assert_string_equal(mk_schema_path_name(mk_schema_path_at(schema, 1)), "age");
    assert_string_equal(mk_schema_path_name(mk_schema_path_at(schema, 2)), "_id");

    const mk_schema_path_t *name = mk_schema_path(schema, "name");
    assert_non_null(name);
    assert_string_equal(mk_schema_path_name(name), "name");
    assert_int_equal(mk_schema_path_kind(name), MK_TYPE_STRING);
    assert_string_equal(mk_schematype_name(mk_schema_path_kind(name)), "String");
    const mk_schema_path_t *age = mk_schema_path(schema, "age");
    assert_non_null(age);
    assert_int_equal(mk_schema_path_kind(age), MK_TYPE_NUMBER);
    assert_string_equal(mk_schematype_name(mk_schema_path_kind(age)), "Number");
    assert_int_equal(mk_schema_path_type(schema, "_id"), MK_TYPE_OBJECTID);
    assert_null(mk_schema_path(schema, "notInSchema"));

    /* compiling the model adds the version key `__v` to the model's copy */
    mk_conn_t *conn = open_memory();
    mk_model_t *Model = compile_ok(conn, "Person", schema);
    const mk_schema_t *compiled = mk_model_schema(Model);
    assert_int_equal(mk_schema_path_count(compiled), 4);
    assert_string_equal(mk_schema_path_name(mk_schema_path_at(compiled, 3)), "__v");
    assert_int_equal(mk_schema_path_type(compiled, "__v"), MK_TYPE_NUMBER);
    mk_conn_close(conn);
}

/* ---------- 2.4 Getters ---------- */

/* schema.path('email').get(v => v.replace('@', ' [at] ')); */
static int obfuscate(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                     mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_UTF8) return not_a_string(in, "replace", err);
    const char *s = in->value.v_utf8.str;
    size_t len = in->value.v_utf8.len;
    const char *at = memchr(s, '@', len);
    if (!at) return str_value(out, s, len, err);
    size_t head = (size_t)(at - s);
    char *buf = bson_malloc(len + 6);
    if (!buf) return mk_error_nomem(err);
    memcpy(buf, s, head);
    memcpy(buf + head, " [at] ", 6);
    memcpy(buf + head + 6, at + 1, len - head - 1);
    int rc = str_value(out, buf, len + 5, err);
    bson_free(buf);
    return rc;
}

/* const schema = new mongoose.Schema({ email: String });
 * // `v` is the underlying value stored in the database
 * schema.path('email').get(v => v.replace('@', ' [at] '));
 * const doc = new Model({ email: 'test@gmail.com' });
 * doc.email; // 'test [at] gmail.com'
 * doc.get('email'); // 'test [at] gmail.com'
 * "If you save doc, the email property will be 'test@gmail.com' in the database."
 * doc.get('email', null, { getters: false }); // 'test@gmail.com'
 * (ch. 2, Getters) */
static void ch2_getter_email(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *schema = schema_ok("{ email: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_path_getter(schema, "email", obfuscate, NULL, &err), &err);
    mk_model_t *Model = compile_ok(conn, "User", schema);
    mk_doc_t *doc = doc_ok(mk_doc_new(Model, &err, "{ email: 'test@gmail.com' }"), &err);

    assert_doc_str(doc, "email", "test [at] gmail.com");
    bson_value_t v;
    assert_true(mk_doc_get(doc, "email", &v));
    assert_int_equal(v.value_type, BSON_TYPE_UTF8);
    assert_string_equal(v.value.v_utf8.str, "test [at] gmail.com");
    /* getters: false */
    assert_true(mk_doc_get_raw(doc, "email", &v));
    assert_int_equal(v.value_type, BSON_TYPE_UTF8);
    assert_string_equal(v.value.v_utf8.str, "test@gmail.com");

    assert_ok(mk_doc_save(doc, &err), &err);
    bson_t *stored = find_by_id(conn, "users", mk_doc_oid(doc));
    assert_non_null(stored);
    assert_string_equal(tu_get_str(stored, "email"), "test@gmail.com");
    bson_destroy(stored);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* "Mongoose applies getters when converting a document to JSON ... To disable running getters
 * when converting a document to JSON, set the toJSON.getters option to false":
 * const userSchema = new Schema({
 *   email: { type: String, get: obfuscate }
 * }, { toJSON: { getters: false } });
 * (ch. 2, Getters)
 * NOTE: in Mongoose 8 toJSON() does not run getters unless asked ({ toJSON: { getters: true } }
 * or toJSON({ getters: true })); `getters: false` is the default. `get: obfuscate` names the C
 * function registered as "obfuscate". */
static void ch2_getter_to_json_option(void **state)
{
    assert_int_equal(mk_register_getter("obfuscate", obfuscate, NULL), MK_OK);
    mk_conn_t *conn = open_memory();
    mk_error_t err = {0};
    const char *def = "{ email: { type: String, get: 'obfuscate' } }";

    /* { toJSON: { getters: false } }: the stored value */
    mk_model_t *Off = compile_ok(conn, "UserOff", schema_ok(def, "{ toJSON: { getters: false } }"));
    mk_doc_t *doc = doc_ok(mk_doc_new(Off, &err, "{ email: 'test@gmail.com' }"), &err);
    assert_doc_str(doc, "email", "test [at] gmail.com");
    bson_t *json = mk_doc_to_json(doc, NULL, &err);
    assert_non_null(json);
    assert_string_equal(tu_get_str(json, "email"), "test@gmail.com");
    bson_destroy(json);
    mk_doc_destroy(doc);

    /* no option: Mongoose 8's default is no getters either */
    mk_model_t *Default = compile_ok(conn, "UserDefault", schema_ok(def, NULL));
    doc = doc_ok(mk_doc_new(Default, &err, "{ email: 'test@gmail.com' }"), &err);
    json = mk_doc_to_json(doc, NULL, &err);
    assert_non_null(json);
    assert_string_equal(tu_get_str(json, "email"), "test@gmail.com");
    bson_destroy(json);
    /* ... unless asked for this call */
    mk_to_object_opts_t opts = MK_TO_OBJECT_DEFAULTS;
    opts.getters = 1;
    json = mk_doc_to_json(doc, &opts, &err);
    assert_non_null(json);
    assert_string_equal(tu_get_str(json, "email"), "test [at] gmail.com");
    bson_destroy(json);
    mk_doc_destroy(doc);

    /* { toJSON: { getters: true } }: what res.json(doc) shows in the book */
    mk_model_t *On = compile_ok(conn, "UserOn", schema_ok(def, "{ toJSON: { getters: true } }"));
    doc = doc_ok(mk_doc_new(On, &err, "{ email: 'test@gmail.com' }"), &err);
    json = mk_doc_to_json(doc, NULL, &err);
    assert_non_null(json);
    assert_string_equal(tu_get_str(json, "email"), "test [at] gmail.com");
    bson_destroy(json);
    /* toObject has its own option: no getters */
    bson_t *obj = mk_doc_to_object(doc, NULL, &err);
    assert_non_null(obj);
    assert_string_equal(tu_get_str(obj, "email"), "test@gmail.com");
    bson_destroy(obj);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* s.path('objectid').get(v => v.toString()); */
static int objectid_to_string(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out,
                              void *ud, mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_OID) {
        if (in && in->value_type != BSON_TYPE_NULL && in->value_type != BSON_TYPE_UNDEFINED) {
            bson_value_copy(in, out);
            return MK_OK;
        }
        return not_a_string(in, "toString", err);
    }
    char hex[25];
    bson_oid_to_string(&in->value.v_oid, hex);
    return str_value(out, hex, 24, err);
}

/* const str = '5d124083fc741d44eca250fd';
 * const schema = Schema({ objectid: mongoose.ObjectId });
 * const doc1 = new Model({ objectid: str });
 * const doc2 = new Model({ objectid: str });
 * // Mongoose casted the string `str` to an ObjectId
 * typeof doc1.objectid; // 'object'
 * doc1.objectid instanceof mongoose.Types.ObjectId; // true
 * doc1.objectid === doc2.objectid; // false
 * (ch. 2, Getters)
 * NOTE: JS object identity has no C meaning; both values are ObjectIds with equal bytes. */
static void ch2_objectid_cast_from_string(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Model =
        compile_ok(conn, "ObjectIdTest", schema_ok("{ objectid: mongoose.ObjectId }", NULL));
    assert_string_equal(mk_model_collection_name(Model), "objectidtests");
    mk_error_t err = {0};
    const char *str = "5d124083fc741d44eca250fd";
    mk_doc_t *doc1 = doc_ok(mk_doc_new(Model, &err, "{ objectid: ? }", MK_STR(str)), &err);
    mk_doc_t *doc2 = doc_ok(mk_doc_new(Model, &err, "{ objectid: ? }", MK_STR(str)), &err);
    bson_value_t v1, v2;
    assert_true(mk_doc_get(doc1, "objectid", &v1));
    assert_int_equal(v1.value_type, BSON_TYPE_OID);
    bson_oid_t o1 = v1.value.v_oid;
    assert_true(mk_doc_get(doc2, "objectid", &v2));
    assert_int_equal(v2.value_type, BSON_TYPE_OID);
    assert_true(bson_oid_equal(&o1, &v2.value.v_oid));
    char hex[25];
    bson_oid_to_string(&o1, hex);
    assert_string_equal(hex, str);
    mk_doc_destroy(doc1);
    mk_doc_destroy(doc2);
    mk_conn_close(conn);
}

/* const s = Schema({ objectid: mongoose.ObjectId }, { _id: false });
 * // Add a custom getter that converts ObjectId values to strings
 * s.path('objectid').get(v => v.toString());
 * const doc1 = new Model({ objectid: str });
 * const doc2 = new Model({ objectid: str });
 * // Mongoose now converts `objectid` to a string for you
 * typeof doc1.objectid; // 'string'
 * // The raw value stored in MongoDB is still an ObjectId
 * typeof doc1.get('objectid', null, { getters: false }); // 'object'
 * doc1.objectid === doc2.objectid; // true
 * assert.deepEqual(doc1.toObject(), doc2.toObject()); // passes
 * (ch. 2, Getters) */
static void ch2_objectid_getter_to_string(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *s = schema_ok("{ objectid: mongoose.ObjectId }", "{ _id: false }");
    mk_error_t err = {0};
    assert_ok(mk_schema_path_getter(s, "objectid", objectid_to_string, NULL, &err), &err);
    mk_model_t *Model = compile_ok(conn, "ObjectIdTest", s);
    const char *str = "5d124083fc741d44eca250fd";
    mk_doc_t *doc1 = doc_ok(mk_doc_new(Model, &err, "{ objectid: ? }", MK_STR(str)), &err);
    mk_doc_t *doc2 = doc_ok(mk_doc_new(Model, &err, "{ objectid: ? }", MK_STR(str)), &err);

    bson_value_t v;
    assert_true(mk_doc_get(doc1, "objectid", &v));
    assert_int_equal(v.value_type, BSON_TYPE_UTF8);
    assert_doc_str(doc1, "objectid", str);
    assert_doc_str(doc2, "objectid", str); /* doc1.objectid === doc2.objectid */
    assert_true(mk_doc_get_raw(doc1, "objectid", &v));
    assert_int_equal(v.value_type, BSON_TYPE_OID);
    assert_null(mk_doc_oid(doc1)); /* _id: false */

    bson_t *o1 = mk_doc_to_object(doc1, NULL, &err);
    bson_t *o2 = mk_doc_to_object(doc2, NULL, &err);
    assert_non_null(o1);
    assert_non_null(o2);
    tu_assert_bson_eq(o1, "{ objectid: ObjectId('5d124083fc741d44eca250fd') }");
    tu_assert_bson_eq(o2, "{ objectid: ObjectId('5d124083fc741d44eca250fd') }");
    bson_destroy(o1);
    bson_destroy(o2);
    mk_doc_destroy(doc1);
    mk_doc_destroy(doc2);
    mk_conn_close(conn);
}

/* const accountSchema = Schema({ balance: mongoose.Decimal128 });
 * await Account.create({ balance: 0.1 });
 * await Account.updateOne({}, { $inc: { balance: 0.2 } });
 * const account = await Account.findOne();
 * account.balance.toString(); // 0.3
 * (ch. 2, Getters)
 * NOTE: updateOne / findOne are part 2; this checks what create() stores: 0.1 cast to the
 * Decimal128 0.1 (Mongoose casts a number through its string form). */
static void ch2_decimal128_create(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Account =
        compile_ok(conn, "Account", schema_ok("{ balance: mongoose.Decimal128 }", NULL));
    mk_error_t err = {0};
    mk_doc_t *account = doc_ok(mk_model_create(Account, &err, "{ balance: 0.1 }"), &err);
    bson_t *stored = find_by_id(conn, "accounts", mk_doc_oid(account));
    assert_non_null(stored);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, stored, "balance"));
    assert_true(BSON_ITER_HOLDS_DECIMAL128(&it));
    bson_decimal128_t dec;
    assert_true(bson_iter_decimal128(&it, &dec));
    char text[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(&dec, text);
    assert_string_equal(text, "0.1");
    bson_destroy(stored);
    mk_doc_destroy(account);
    mk_conn_close(conn);
}

/* get: v => parseFloat(v.toString()) */
static int decimal_to_number(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out,
                             void *ud, mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_DECIMAL128) return not_a_string(in, "toString", err);
    char text[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(&in->value.v_decimal128, text);
    out->value_type = BSON_TYPE_DOUBLE;
    out->value.v_double = strtod(text, NULL);
    return MK_OK;
}

/* set: v => mongoose.Types.Decimal128.fromString(v.toFixed(2)) */
static int number_to_decimal(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out,
                             void *ud, mk_error_t *err)
{
    double d;
    if (in && in->value_type == BSON_TYPE_DOUBLE)
        d = in->value.v_double;
    else if (in && in->value_type == BSON_TYPE_INT32)
        d = in->value.v_int32;
    else if (in && in->value_type == BSON_TYPE_INT64)
        d = (double)in->value.v_int64;
    else
        return not_a_string(in, "toFixed", err);
    char fixed[64];
    snprintf(fixed, sizeof fixed, "%.2f", d);
    out->value_type = BSON_TYPE_DECIMAL128;
    if (!bson_decimal128_from_string(fixed, &out->value.v_decimal128))
        return mk_error_set(err, 0, "Error", "%s is not a valid Decimal128 string", fixed);
    return MK_OK;
}

/* const accountSchema = Schema({
 *   balance: {
 *     type: mongoose.Decimal128,
 *     // Convert the raw decimal value to a native JS number
 *     // when accessing the `balance` property
 *     get: v => parseFloat(v.toString()),
 *     // When setting the `balance` property, round to 2
 *     // decimal places and convert to a MongoDB decimal
 *     set: v => mongoose.Types.Decimal128.fromString(v.toFixed(2))
 *   }
 * });
 * const account = new Account({ balance: 0.1 });
 * account.balance += 0.2;
 * account.balance; // 0.3
 * (ch. 2, Getters) */
static void ch2_decimal128_getter_setter(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *schema = schema_ok("{ balance: { type: mongoose.Decimal128 } }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_path_getter(schema, "balance", decimal_to_number, NULL, &err), &err);
    assert_ok(mk_schema_path_setter(schema, "balance", number_to_decimal, NULL, &err), &err);
    mk_model_t *Account = compile_ok(conn, "Account", schema);
    mk_doc_t *account = doc_ok(mk_doc_new(Account, &err, "{ balance: 0.1 }"), &err);
    assert_true(mk_doc_get_f64(account, "balance") == 0.1);

    /* account.balance += 0.2 */
    double sum = mk_doc_get_f64(account, "balance") + 0.2;
    assert_ok(mk_doc_set(account, "balance", MK_F64(sum), &err), &err);
    bson_value_t v;
    assert_true(mk_doc_get(account, "balance", &v));
    assert_int_equal(v.value_type, BSON_TYPE_DOUBLE);
    assert_true(v.value.v_double == 0.3);
    assert_true(mk_doc_get_f64(account, "balance") == 0.3);

    /* stored: the decimal rounded to 2 places */
    assert_true(mk_doc_get_raw(account, "balance", &v));
    assert_int_equal(v.value_type, BSON_TYPE_DECIMAL128);
    char text[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(&v.value.v_decimal128, text);
    assert_string_equal(text, "0.30");
    mk_doc_destroy(account);
    mk_conn_close(conn);
}

/* ---------- 2.4 Setters ---------- */

/* userSchema.path('email').set(v => v.toLowerCase()); */
static int to_lower_case(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out,
                         void *ud, mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_UTF8) return not_a_string(in, "toLowerCase", err);
    int rc = str_value(out, in->value.v_utf8.str, in->value.v_utf8.len, err);
    if (rc != MK_OK) return rc;
    for (uint32_t i = 0; i < out->value.v_utf8.len; i++)
        out->value.v_utf8.str[i] = (char)tolower((unsigned char)out->value.v_utf8.str[i]);
    return MK_OK;
}

/* const userSchema = Schema({ email: String });
 * userSchema.path('email').set(v => v.toLowerCase());
 * const user = new User({ email: 'TEST@gmail.com' });
 * user.email; // 'test@gmail.com'
 * "Mongoose will call the custom setter regardless of which syntax you use":
 * doc.email = 'TEST@gmail.com'; doc.set('email', 'TEST@gmail.com');
 * Object.assign(doc, { email: 'TEST@gmail.com' })
 * (ch. 2, Setters)
 * NOTE: setters on updateOne() and the other update queries are part 2. */
static void ch2_setter_lowercase_email(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *schema = schema_ok("{ email: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_path_setter(schema, "email", to_lower_case, NULL, &err), &err);
    mk_model_t *User = compile_ok(conn, "User", schema);
    mk_doc_t *user = doc_ok(mk_doc_new(User, &err, "{ email: 'TEST@gmail.com' }"), &err);
    assert_doc_str(user, "email", "test@gmail.com");

    /* doc.email = ... / doc.set('email', ...) */
    assert_ok(mk_doc_set(user, "email", MK_STR("FIRST@Gmail.COM"), &err), &err);
    assert_doc_str(user, "email", "first@gmail.com");
    /* Object.assign(doc, { email: ... }) */
    assert_ok(mk_doc_set_json(user, NULL, &err, "{ email: 'SECOND@gmail.com' }"), &err);
    assert_doc_str(user, "email", "second@gmail.com");
    /* the stored value is the set value */
    bson_value_t v;
    assert_true(mk_doc_get_raw(user, "email", &v));
    assert_string_equal(v.value.v_utf8.str, "second@gmail.com");
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* userSchema.path('email').set(function(v) {
 *   this.domain = v.slice(v.indexOf('@') + 1);
 *   return v;
 * }); */
static int email_sets_domain(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out,
                             void *ud, mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_UTF8) return not_a_string(in, "indexOf", err);
    /* In a setter function, `this` may refer to a document or a query. */
    if (ctx->doc) {
        const char *domain = after_at(in->value.v_utf8.str, in->value.v_utf8.len);
        size_t len = in->value.v_utf8.len - (size_t)(domain - in->value.v_utf8.str);
        char *copy = bson_strndup(domain, len);
        if (!copy) return mk_error_nomem(err);
        int rc = mk_doc_set(ctx->doc, "domain", MK_STR(copy), err);
        bson_free(copy);
        if (rc != MK_OK) return rc;
    }
    bson_value_copy(in, out);
    return MK_OK;
}

/* const userSchema = Schema({ email: String, domain: String });
 * // Whenever you set `email`, make sure you update `domain`.
 * userSchema.path('email').set(function(v) { ... });
 * const user = new User({ email: 'test@gmail.com' });
 * user.email; // 'test@gmail.com'
 * user.domain; // 'gmail.com'
 * // Since `domain` is a real property, you can `set()` it and
 * // overwrite the computed value.
 * let user = new User({ email: 'test@gmail.com', domain: 'oops' });
 * user.domain; // 'oops'
 * (ch. 2, Setters: computed properties) */
static void ch2_setter_computed_domain(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *schema = schema_ok("{ email: String, domain: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_path_setter(schema, "email", email_sets_domain, NULL, &err), &err);
    mk_model_t *User = compile_ok(conn, "User", schema);

    mk_doc_t *user = doc_ok(mk_doc_new(User, &err, "{ email: 'test@gmail.com' }"), &err);
    assert_doc_str(user, "email", "test@gmail.com");
    assert_doc_str(user, "domain", "gmail.com");
    /* assigning email later recomputes domain */
    assert_ok(mk_doc_set(user, "email", MK_STR("test@test.com"), &err), &err);
    assert_doc_str(user, "domain", "test.com");
    mk_doc_destroy(user);

    user = doc_ok(mk_doc_new(User, &err, "{ email: 'test@gmail.com', domain: 'oops' }"), &err);
    assert_doc_str(user, "domain", "oops");
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* // Setters are order dependent. If `domain` is the first key,
 * // the setter will actually work.
 * user = new User({ domain: 'oops', email: 'test@gmail.com' });
 * user.domain; // 'gmail.com'
 * (ch. 2, Setters: computed properties)
 * NOTE: Mongoose 8 sets the keys of a constructor object in schema order
 * (getKeysInSchemaOrder), not in the object's order: `email` (first in the schema) runs its
 * setter, then `domain: 'oops'` overwrites it, whatever the key order. user.domain is 'oops'. */
static void ch2_setter_computed_domain_key_order(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *schema = schema_ok("{ email: String, domain: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_path_setter(schema, "email", email_sets_domain, NULL, &err), &err);
    mk_model_t *User = compile_ok(conn, "User", schema);
    mk_doc_t *user =
        doc_ok(mk_doc_new(User, &err, "{ domain: 'oops', email: 'test@gmail.com' }"), &err);
    assert_doc_str(user, "email", "test@gmail.com");
    assert_doc_str(user, "domain", "oops");
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* userSchema.path('email').set(function setter(v) {
 *   const domain = v.slice(v.indexOf('@') + 1);
 *   // Queries and documents both have a `set()` function
 *   this.set({ domain });
 *   return v;
 * }); */
static int email_sets_domain_with_set(const mk_fn_ctx_t *ctx, const bson_value_t *in,
                                      bson_value_t *out, void *ud, mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_UTF8) return not_a_string(in, "indexOf", err);
    /* NOTE: the query half (`this` a Query, for updateOne) is part 2: no query set() yet. */
    if (ctx->doc) {
        const char *domain = after_at(in->value.v_utf8.str, in->value.v_utf8.len);
        size_t len = in->value.v_utf8.len - (size_t)(domain - in->value.v_utf8.str);
        char *copy = bson_strndup(domain, len);
        if (!copy) return mk_error_nomem(err);
        int rc = mk_doc_set_json(ctx->doc, NULL, err, "{ domain: ? }", MK_STR(copy));
        bson_free(copy);
        if (rc != MK_OK) return rc;
    }
    bson_value_copy(in, out);
    return MK_OK;
}

/* let doc = await User.create({ email: 'test@gmail.com' });
 * doc.domain; // 'gmail.com'
 * (ch. 2, Setters: computed properties with this.set())
 * NOTE: the rest of the example (User.updateOne(...) running the setter on the query, then
 * doc.domain; // 'test.com') is part 2. */
static void ch2_setter_this_set_domain(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *schema = schema_ok("{ email: String, domain: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_path_setter(schema, "email", email_sets_domain_with_set, NULL, &err), &err);
    mk_model_t *User = compile_ok(conn, "User", schema);
    mk_doc_t *doc = doc_ok(mk_model_create(User, &err, "{ email: 'test@gmail.com' }"), &err);
    assert_doc_str(doc, "domain", "gmail.com");
    assert_false(mk_doc_is_new(doc));
    bson_t *stored = find_by_id(conn, "users", mk_doc_oid(doc));
    assert_non_null(stored);
    assert_string_equal(tu_get_str(stored, "email"), "test@gmail.com");
    assert_string_equal(tu_get_str(stored, "domain"), "gmail.com");
    bson_destroy(stored);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* ---------- 2.5 Virtuals ---------- */

/* userSchema.virtual('domain').get(function() {
 *   return this.email.slice(this.email.indexOf('@') + 1);
 * }); */
static int domain_virtual(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    const char *email = mk_doc_get_str(doc, "email");
    if (!email) return not_a_string(NULL, "slice", err);
    const char *domain = after_at(email, strlen(email));
    return str_value(out, domain, strlen(domain), err);
}

/* const userSchema = Schema({ email: String });
 * userSchema.virtual('domain').get(function() { ... });
 * let doc = await User.create({ email: 'test@gmail.com' });
 * doc.domain; // 'gmail.com'
 * // Mongoose ignores setting virtuals that don't have a setter
 * doc.set({ email: 'test@test.com', domain: 'foo' });
 * doc.domain; // 'test.com
 * "you cannot query documents by virtual properties": the stored document has no `domain`.
 * (ch. 2, Virtuals) */
static void ch2_virtual_domain(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *schema = schema_ok("{ email: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_virtual(schema, "domain", domain_virtual, NULL, NULL, &err), &err);
    mk_model_t *User = compile_ok(conn, "User", schema);
    mk_doc_t *doc = doc_ok(mk_model_create(User, &err, "{ email: 'test@gmail.com' }"), &err);
    assert_doc_str(doc, "domain", "gmail.com");

    assert_ok(mk_doc_set_json(doc, NULL, &err, "{ email: 'test@test.com', domain: 'foo' }"), &err);
    assert_doc_str(doc, "email", "test@test.com");
    assert_doc_str(doc, "domain", "test.com");
    /* setting the virtual alone is a no-op too */
    assert_ok(mk_doc_set(doc, "domain", MK_STR("bar"), &err), &err);
    assert_doc_str(doc, "domain", "test.com");
    assert_false(mk_doc_is_modified(doc, "domain"));

    assert_ok(mk_doc_save(doc, &err), &err);
    char hex[25], expect[160];
    oid_hex(doc, hex);
    bson_t *stored = find_by_id(conn, "users", mk_doc_oid(doc));
    snprintf(expect, sizeof expect, "{ _id: ObjectId('%s'), email: 'test@test.com', __v: 0 }", hex);
    assert_fields(stored, expect);
    bson_destroy(stored);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* // Opt in to Mongoose putting virtuals in `toJSON()` output
 * // for `JSON.stringify()`, and in `toObject()` output.
 * const opts = { toJSON: { virtuals: true } };
 * const userSchema = Schema({ email: String }, opts);
 * const doc = await User.create({ email: 'test@gmail.com' });
 * // { _id: ..., email: 'test@gmail.com', domain: 'gmail.com' }
 * doc.toJSON();
 * // {"_id":...,"email":"test@gmail.com","domain":"gmail.com"}
 * JSON.stringify(doc);
 * (ch. 2, Virtuals with JSON.stringify())
 * NOTE: Mongoose 8's toJSON({ virtuals: true }) also has the `id` virtual and the saved
 * document's __v: 0. The `toJSON` option does not change toObject(), which has no virtuals.
 * JSON.stringify is mk_doc_to_ejson: Extended JSON, so _id is { "$oid": ... } where JS prints
 * the hex string. */
static void ch2_virtuals_in_to_json(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_schema_t *schema = schema_ok("{ email: String }", "{ toJSON: { virtuals: true } }");
    mk_error_t err = {0};
    assert_ok(mk_schema_virtual(schema, "domain", domain_virtual, NULL, NULL, &err), &err);
    mk_model_t *User = compile_ok(conn, "User", schema);
    mk_doc_t *doc = doc_ok(mk_model_create(User, &err, "{ email: 'test@gmail.com' }"), &err);
    char hex[25], expect[256];
    oid_hex(doc, hex);
    assert_string_equal(mk_doc_id(doc), hex);

    bson_t *json = mk_doc_to_json(doc, NULL, &err);
    snprintf(expect, sizeof expect,
             "{ _id: ObjectId('%s'), email: 'test@gmail.com', domain: 'gmail.com', id: '%s', "
             "__v: 0 }",
             hex, hex);
    assert_fields(json, expect);
    bson_destroy(json);

    char *text = mk_doc_to_ejson(doc, &err);
    assert_non_null(text);
    bson_t *parsed = tu_bson(text);
    bson_free(text);
    assert_fields(parsed, expect);
    bson_destroy(parsed);

    bson_t *obj = mk_doc_to_object(doc, NULL, &err);
    snprintf(expect, sizeof expect, "{ _id: ObjectId('%s'), email: 'test@gmail.com', __v: 0 }",
             hex);
    assert_fields(obj, expect);
    bson_destroy(obj);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* ---------- 2.7 The Mongoose global and multiple connections ---------- */

/* const conn1 = mongoose.createConnection('mongodb://localhost:27017/db1', ...);
 * const conn2 = mongoose.createConnection('mongodb://localhost:27017/db2', ...);
 * // Will store data in the 'db1' database's 'tests' collection
 * const Model1 = conn1.model('Test', mongoose.Schema({ name: String }));
 * // Will store data in the 'db2' database's 'tests' collection
 * const Model2 = conn2.model('Test', mongoose.Schema({ name: String }));
 * (ch. 2, The Mongoose Global and Multiple Connections)
 * NOTE: the connections are embedded ("memory:db1", "memory:db2"). The Mongoose instance
 * examples (mongoose1.set('toJSON', ...), readyState, mongoose.connections) have no C
 * counterpart. */
static void ch2_multiple_connections(void **state)
{
    mk_error_t err = {0};
    mk_conn_t *conn1 = mk_connect("memory:db1", &err);
    assert_non_null(conn1);
    mk_conn_t *conn2 = mk_connect("memory:db2", &err);
    assert_non_null(conn2);
    assert_string_equal(mk_conn_db_name(conn1), "db1");
    assert_string_equal(mk_conn_db_name(conn2), "db2");

    mk_model_t *Model1 = compile_ok(conn1, "Test", schema_ok("{ name: String }", NULL));
    mk_model_t *Model2 = compile_ok(conn2, "Test", schema_ok("{ name: String }", NULL));
    assert_ptr_not_equal(Model1, Model2);
    assert_string_equal(mk_model_collection_name(Model1), "tests");
    assert_string_equal(mk_model_collection_name(Model2), "tests");
    assert_ptr_equal(mk_model_get(conn1, "Test", &err), Model1);
    assert_ptr_equal(mk_model_get(conn2, "Test", &err), Model2);

    mk_doc_t *a = doc_ok(mk_model_create(Model1, &err, "{ name: 'in db1' }"), &err);
    mk_doc_t *b = doc_ok(mk_model_create(Model2, &err, "{ name: 'in db2' }"), &err);
    mk_doc_t *c = doc_ok(mk_model_create(Model2, &err, "{ name: 'also in db2' }"), &err);
    assert_int_equal(count_in(conn1, "tests"), 1);
    assert_int_equal(count_in(conn2, "tests"), 2);
    bson_t *stored = find_by_id(conn1, "tests", mk_doc_oid(a));
    assert_non_null(stored);
    assert_string_equal(tu_get_str(stored, "name"), "in db1");
    bson_destroy(stored);
    assert_null(find_by_id(conn2, "tests", mk_doc_oid(a)));
    assert_null(find_by_id(conn1, "tests", mk_doc_oid(b)));

    mk_doc_destroy(a);
    mk_doc_destroy(b);
    mk_doc_destroy(c);
    mk_conn_close(conn1);
    mk_conn_close(conn2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ch2_core_concepts_connection_schema_model_document),
        cmocka_unit_test(ch2_casting_age_not_a_number),
        cmocka_unit_test(ch2_casting_failed_cast_keeps_value),
        cmocka_unit_test(ch2_casting_castable_value_clears_cast_error),
        cmocka_unit_test(ch2_casting_nullish_values_pass),
        cmocka_unit_test(ch2_validation_enum),
        cmocka_unit_test(ch2_validation_enum_on_number),
        cmocka_unit_test(ch2_validation_required),
        cmocka_unit_test(ch2_change_tracking_minimal_update),
        cmocka_unit_test(ch2_schema_paths_and_schematypes),
        cmocka_unit_test(ch2_getter_email),
        cmocka_unit_test(ch2_getter_to_json_option),
        cmocka_unit_test(ch2_objectid_cast_from_string),
        cmocka_unit_test(ch2_objectid_getter_to_string),
        cmocka_unit_test(ch2_decimal128_create),
        cmocka_unit_test(ch2_decimal128_getter_setter),
        cmocka_unit_test(ch2_setter_lowercase_email),
        cmocka_unit_test(ch2_setter_computed_domain),
        cmocka_unit_test(ch2_setter_computed_domain_key_order),
        cmocka_unit_test(ch2_setter_this_set_domain),
        cmocka_unit_test(ch2_virtual_domain),
        cmocka_unit_test(ch2_virtuals_in_to_json),
        cmocka_unit_test(ch2_multiple_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
