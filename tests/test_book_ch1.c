/* "Mastering Mongoose", chapter 1 (Getting Started): every example whose comments state a
 * result, as meerkat tests. The assertions are the values in the book's comments; where the book
 * and Mongoose 8 disagree, Mongoose 8 wins and a NOTE says so. Reading documents back uses the
 * raw `find` command and mk_doc_hydrate, because queries (Model.findOne) come in part 2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "odm_helpers.h"

#include <stdio.h>
#include <string.h>

#include <meerkat/odm.h>

/* ---------- helpers ---------- */

/* Parses a schema and compiles it into a model; the model keeps its own copy. */
static mk_model_t *model_ok_(mk_conn_t *conn, const char *name, const char *def, const char *opts,
                             const char *file, int line)
{
    mk_error_t err = {0};
    mk_schema_t *schema = mk_schema_parse(def, opts, &err);
    if (!schema) {
        print_error("%s:%d: schema: [%s] %s\n", file, line, err.kind, err.message);
        _fail(file, line);
    }
    mk_model_t *model = mk_model(conn, name, schema, &err);
    mk_schema_destroy(schema);
    if (!model) {
        print_error("%s:%d: model %s: [%s] %s\n", file, line, name, err.kind, err.message);
        _fail(file, line);
    }
    return model;
}
#define model_ok(conn, name, def, opts) model_ok_((conn), (name), (def), (opts), __FILE__, __LINE__)

/* ---------- 1. Connecting to MongoDB ---------- */

/* "mongoose.connect('mongodb://localhost:27017/mydb');" and "The mydb section of the connection
 * string tells Mongoose which database to use." (ch. 1, Connecting to MongoDB)
 * NOTE: meerkat's embedded engine takes "memory:NAME" / a directory; a mongodb:// URI is a
 * clear "not supported yet" error until the libmongoc backend lands (meerkat/odm.h). */
static void ch1_connect_database_name_from_connection_string(void **state)
{
    mk_error_t err = {0};
    mk_conn_t *conn = mk_connect("memory:mydb", &err);
    assert_non_null(conn);
    assert_string_equal(mk_conn_db_name(conn), "mydb");
    mk_conn_close(conn);

    conn = mk_connect("memory:", &err);
    assert_non_null(conn);
    assert_string_equal(mk_conn_db_name(conn), "test");
    mk_conn_close(conn);

    mk_error_clear(&err);
    conn = mk_connect("mongodb://localhost:27017/mydb", &err);
    assert_null(conn);
    assert_string_equal(err.kind, "MongooseError");
    assert_non_null(strstr(err.message, "not supported yet"));
}

/* ---------- 1. Defining a schema ---------- */

static const char *const product_definition =
    "{\n"
    "  // A product has two properties: `name` and `price`\n"
    "  name: String,\n"
    "  price: Number\n"
    "}";

/* const product = new Product({ name: 'iPhone', price: '800', notInSchema: 'foo' });
 * product.name; // 'iPhone'
 * product.price; // 800, Mongoose converted this to a number
 * // undefined, Mongoose removes props that aren't in the schema
 * product.notInSchema;
 * (ch. 1, Defining a Schema) */
static void ch1_schema_casts_price_and_drops_unknown_paths(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Product = model_ok(conn, "Product", product_definition, NULL);
    assert_string_equal(mk_model_name(Product), "Product");
    assert_string_equal(mk_model_collection_name(Product), "products");

    mk_error_t err = {0};
    mk_doc_t *product = doc_ok(
        mk_doc_new(Product, &err,
                   "{ name: 'iPhone', price: '800', // Note that this is a string, not a number\n"
                   "  notInSchema: 'foo' }"),
        &err);
    assert_doc_str(product, "name", "iPhone");

    bson_value_t v;
    assert_true(mk_doc_get(product, "price", &v));
    assert_int_equal(v.value_type, BSON_TYPE_INT32); /* a number, no longer the string '800' */
    assert_int_equal(mk_doc_get_i64(product, "price"), 800);

    assert_false(mk_doc_get(product, "notInSchema", &v));
    assert_null(mk_doc_get_str(product, "notInSchema"));

    /* the document holds only schema paths: name, price and the implicit _id */
    bson_t *obj = mk_doc_to_object(product, NULL, &err);
    assert_non_null(obj);
    char expect[160];
    char hex[25];
    assert_non_null(mk_doc_oid(product));
    bson_oid_to_string(mk_doc_oid(product), hex);
    snprintf(expect, sizeof expect, "{ name: 'iPhone', price: 800, _id: ObjectId('%s') }", hex);
    assert_fields(obj, expect);
    bson_destroy(obj);

    mk_doc_destroy(product);
    mk_conn_close(conn);
}

/* const productSchema = new mongoose.Schema({ name: { type: String, lowercase: true }, ... });
 * const product = new Product({ name: 'iPhone', price: 800 });
 * product.name; // 'iphone', lowercased
 * (ch. 1, Defining a Schema) */
static void ch1_schema_lowercase_option(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Product = model_ok(conn, "Product",
                                   "{\n"
                                   "  // The below means the `name` property should be a string\n"
                                   "  // with an option `lowercase` set to `true`.\n"
                                   "  name: { type: String, lowercase: true },\n"
                                   "  price: Number\n"
                                   "}",
                                   NULL);
    mk_error_t err = {0};
    mk_doc_t *product = doc_ok(mk_doc_new(Product, &err, "{ name: 'iPhone', price: 800 }"), &err);
    assert_doc_str(product, "name", "iphone");
    assert_int_equal(mk_doc_get_i64(product, "price"), 800);

    /* the setter runs on assignment too */
    assert_ok(mk_doc_set(product, "name", MK_STR("Galaxy S"), &err), &err);
    assert_doc_str(product, "name", "galaxy s");

    mk_doc_destroy(product);
    mk_conn_close(conn);
}

/* ---------- 1. Storing and querying documents ---------- */

/* // `doc` is just in Node.js, you haven't persisted it to MongoDB yet
 * const doc = new Product({ name: 'iPhone', price: 800 });
 * // Store `doc` in MongoDB
 * await doc.save();
 * ...
 * let product = await Product.findOne();
 * product.name; // "iPhone"
 * product.price; // 800
 * const products = await Product.find();
 * product = products[0];
 * product.name; // "iPhone"
 * product.price; // 800
 * (ch. 1, Storing and Querying Documents)
 * NOTE: Product.findOne() / find() are queries (part 2); the stored document is read with the
 * raw `find` command and hydrated as a query would (Model.hydrate). */
static void ch1_save_then_load(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Product = model_ok(conn, "Product", product_definition, NULL);
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Product, &err, "{ name: 'iPhone', price: 800 }"), &err);

    /* not persisted yet */
    assert_true(mk_doc_is_new(doc));
    const bson_oid_t *oid = mk_doc_oid(doc);
    assert_non_null(oid);
    bson_oid_t id = *oid;
    bson_t *stored = find_by_id(conn, "products", &id);
    assert_null(stored);

    /* save() sends an insertOne */
    assert_ok(mk_doc_save(doc, &err), &err);
    assert_false(mk_doc_is_new(doc));
    assert_false(mk_doc_is_modified(doc, NULL));

    stored = find_by_id(conn, "products", &id);
    assert_non_null(stored);
    char hex[25], expect[160];
    bson_oid_to_string(&id, hex);
    snprintf(expect, sizeof expect, "{ _id: ObjectId('%s'), name: 'iPhone', price: 800, __v: 0 }",
             hex);
    assert_fields(stored, expect);

    mk_doc_t *product = doc_ok(mk_doc_hydrate(Product, stored, &err), &err);
    bson_destroy(stored);
    assert_false(mk_doc_is_new(product));
    assert_false(mk_doc_is_modified(product, NULL));
    assert_doc_str(product, "name", "iPhone");
    assert_int_equal(mk_doc_get_i64(product, "price"), 800);
    assert_true(mk_doc_equals(product, doc));
    assert_int_equal(mk_doc_get_i64(product, "__v"), 0);

    mk_doc_destroy(product);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ch1_connect_database_name_from_connection_string),
        cmocka_unit_test(ch1_schema_casts_price_and_drops_unknown_paths),
        cmocka_unit_test(ch1_schema_lowercase_option),
        cmocka_unit_test(ch1_save_then_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
