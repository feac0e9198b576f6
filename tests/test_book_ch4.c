/* "Mastering Mongoose", chapter 4 (Middleware), the document and model middleware: pre/post,
 * order, async hooks, `this` and `res`, save() triggering validate(), insertMany(), the
 * document side of updateOne / deleteOne, and error handling middleware. The assertions are what
 * the book's examples print (console.log is `say`, collected in a log) and the values in its
 * comments; where the book and Mongoose 8 disagree, Mongoose 8 wins and a NOTE says so.
 * Aggregation and query middleware (including the query half of updateOne hooks) are part 2. */
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

/* console.log: lines collected for the test to compare. */
static char printed[4096];

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    size_t used = strlen(printed);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(printed + used, sizeof printed - used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + 2 > sizeof printed - used) fail_msg("log full");
    strcat(printed, "\n");
}

static int reset_log(void **state)
{
    printed[0] = '\0';
    return 0;
}

/* A hook that prints the fixed text it was registered with. */
static int print_text(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    say("%s", (const char *)ud);
    return MK_OK;
}

/* The `name` of `this` (hook->doc), or "?" */
static const char *this_name(mk_hook_t *hook)
{
    const char *name = hook->doc ? mk_doc_get_str(hook->doc, "name") : NULL;
    return name ? name : "?";
}

/* A `Schema({ name: String })` model named `name` with the hooks registered by `setup`. */
typedef void (*setup_fn)(mk_schema_t *schema);
static mk_model_t *test_model(mk_conn_t *conn, const char *name, const char *def, setup_fn setup)
{
    mk_schema_t *schema = schema_ok(def, NULL);
    setup(schema);
    return compile_ok(conn, name, schema);
}

/* new Model({ name: 'test' }) and save() */
static void new_and_save(mk_model_t *Model)
{
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Model, &err, "{ name: 'test' }"), &err);
    assert_ok(mk_doc_save(doc, &err), &err);
    mk_doc_destroy(doc);
}

/* ---------- 4.1 pre() and post() ---------- */

/* schema.pre('save', function middleware() { console.log('Saving', this.name); }); */
static int saving(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    say("Saving %s", this_name(hook));
    return MK_OK;
}

static void setup_pre_saving(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "save", saving, NULL, &err), &err);
}

/* const schema = Schema({ name: String });
 * // `middleware` is a function that Mongoose will call for you
 * // when you call `save()`
 * schema.pre('save', function middleware() {
 *   console.log('Saving', this.name);
 * });
 * const doc = new Model({ name: 'test' });
 * // Prints "Saving test"
 * await doc.save();
 * (ch. 4, Middleware) */
static void ch4_pre_save(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Model = test_model(conn, "Test", "{ name: String }", setup_pre_saving);
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Model, &err, "{ name: 'test' }"), &err);
    assert_string_equal(printed, ""); /* nothing runs before save() */
    assert_ok(mk_doc_save(doc, &err), &err);
    assert_string_equal(printed, "Saving test\n");
    assert_int_equal(count_in(conn, "tests"), 1);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* schema.post('save', function postFn() { console.log('Saved', this.name); }); */
static int saved(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    say("Saved %s", this_name(hook));
    return MK_OK;
}

static void setup_pre_and_post(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "save", saving, NULL, &err), &err);
    assert_ok(mk_schema_post(schema, "save", saved, NULL, &err), &err);
}

/* // Mongoose will execute `preFn()` before saving the document...
 * schema.pre('save', function preFn() { console.log('Saving', this.name); });
 * // And `postFn()` after saving the document
 * schema.post('save', function postFn() { console.log('Saved', this.name); });
 * // Prints "Saving test\nSaved test"
 * await doc.save();
 * (ch. 4, pre() and post()) */
static void ch4_pre_and_post_save(void **state)
{
    mk_conn_t *conn = open_memory();
    new_and_save(test_model(conn, "Test", "{ name: String }", setup_pre_and_post));
    assert_string_equal(printed, "Saving test\nSaved test\n");
    mk_conn_close(conn);
}

static void setup_two_pre(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "save", print_text, "pre save 1", &err), &err);
    assert_ok(mk_schema_pre(schema, "save", print_text, "pre save 2", &err), &err);
}

/* schema.pre('save', () => console.log('pre save 1'));
 * schema.pre('save', () => console.log('pre save 2'));
 * // Prints "pre save 1" followed by "pre save 2"
 * await doc.save();
 * (ch. 4, pre() and post()) */
static void ch4_hooks_run_in_registration_order(void **state)
{
    mk_conn_t *conn = open_memory();
    new_and_save(test_model(conn, "Test", "{ name: String }", setup_two_pre));
    assert_string_equal(printed, "pre save 1\npre save 2\n");
    mk_conn_close(conn);
}

/* schema.post('save', function(doc) { console.log('Saved:', doc.name); }); */
static int saved_res(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    mk_doc_t *doc = (mk_doc_t *)hook->result;
    const char *name = doc ? mk_doc_get_str(doc, "name") : NULL;
    say("Saved: %s", name ? name : "?");
    return MK_OK;
}

static void setup_post_res(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_post(schema, "save", saved_res, NULL, &err), &err);
}

/* schema.post('save', function(doc) {
 *   console.log('Saved:', doc.name);
 * });
 * // Prints "Saved: test"
 * await doc.save();
 * (ch. 4, pre() and post(): post middleware receives the result) */
static void ch4_post_save_receives_document(void **state)
{
    mk_conn_t *conn = open_memory();
    new_and_save(test_model(conn, "Test", "{ name: String }", setup_post_res));
    assert_string_equal(printed, "Saved: test\n");
    mk_conn_close(conn);
}

/* schema.pre('save', async function() {
 *   console.log('Waiting');
 *   await new Promise(resolve => setTimeout(resolve, 50));
 *   console.log('First Done');
 * }); */
static int waiting_then_done(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    say("Waiting");
    say("First Done");
    return MK_OK;
}

static void setup_async(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "save", waiting_then_done, NULL, &err), &err);
    assert_ok(mk_schema_pre(schema, "save", print_text, "Second", &err), &err);
}

/* schema.pre('save', async function() { ... 'Waiting' ... 'First Done' });
 * schema.pre('save', () => console.log('Second'));
 * // Prints "Waiting", "First Done", "Second"
 * await doc.save();
 * (ch. 4, pre() and post(): async middleware)
 * NOTE: C hooks are synchronous: a hook finishes before the next one starts, which is what
 * awaiting the promise gives. */
static void ch4_async_hooks_run_in_series(void **state)
{
    mk_conn_t *conn = open_memory();
    new_and_save(test_model(conn, "Test", "{ name: String }", setup_async));
    assert_string_equal(printed, "Waiting\nFirst Done\nSecond\n");
    mk_conn_close(conn);
}

/* schema.pre('save', function(next) {
 *   console.log('1');
 *   setTimeout(() => { console.log('2'); next(); }, 50);
 * }); */
static int one_two(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    say("1");
    say("2");
    return MK_OK;
}

/* schema.post('save', function(doc, next) {
 *   console.log('4');
 *   setTimeout(() => { console.log('5'); next(); }, 50);
 * }); */
static int four_five(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    say("4");
    say("5");
    return MK_OK;
}

static void setup_next(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "save", one_two, NULL, &err), &err);
    assert_ok(mk_schema_pre(schema, "save", print_text, "3", &err), &err);
    assert_ok(mk_schema_post(schema, "save", four_five, NULL, &err), &err);
    assert_ok(mk_schema_post(schema, "save", print_text, "6", &err), &err);
}

/* schema.pre('save', function(next) { ... '1' ... '2'; next() });
 * schema.pre('save', () => console.log('3'));
 * // For post hooks, `next()` is the 2nd parameter
 * schema.post('save', function(doc, next) { ... '4' ... '5'; next() });
 * schema.post('save', () => console.log('6'));
 * // Prints "1", "2", "3", "4", "5", "6"
 * await doc.save();
 * (ch. 4, pre() and post(): next())
 * NOTE: returning MK_OK from a C hook is calling next(). */
static void ch4_next_style_hooks(void **state)
{
    mk_conn_t *conn = open_memory();
    new_and_save(test_model(conn, "Test", "{ name: String }", setup_next));
    assert_string_equal(printed, "1\n2\n3\n4\n5\n6\n");
    mk_conn_close(conn);
}

/* ---------- 4.2 Document middleware: `this` and `res` ---------- */

typedef struct this_check {
    mk_doc_t *doc; /* the document save() is called on */
    int pre_calls, post_calls;
    int pre_this_ok, post_this_ok, post_res_ok, op_ok;
} this_check_t;

/* schema.pre('save', function() { doc === this; // true }); */
static int check_pre_this(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    this_check_t *c = ud;
    c->pre_calls++;
    c->pre_this_ok += hook->doc == c->doc;
    c->op_ok += hook->op && strcmp(hook->op, "save") == 0;
    return MK_OK;
}

/* schema.post('save', function(res) { res === this; // true  res === doc; // true }); */
static int check_post_this(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    this_check_t *c = ud;
    c->post_calls++;
    c->post_this_ok += hook->doc == c->doc;
    c->post_res_ok += hook->result == (const void *)hook->doc && hook->result == c->doc;
    c->op_ok += hook->op && strcmp(hook->op, "save") == 0;
    return MK_OK;
}

/* const schema = Schema({ name: String });
 * schema.pre('save', function() {
 *   doc === this; // true
 * });
 * ...
 * schema.post('save', function(res) {
 *   res === this; // true
 *   res === doc; // true
 * });
 * // When you call `doc.save()`, Mongoose calls your pre save middleware
 * // with `this` equal to `doc`.
 * await doc.save();
 * (ch. 4, Document middleware) */
static void ch4_document_middleware_this_and_res(void **state)
{
    mk_conn_t *conn = open_memory();
    this_check_t check = {0};
    mk_schema_t *schema = schema_ok("{ name: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "save", check_pre_this, &check, &err), &err);
    assert_ok(mk_schema_post(schema, "save", check_post_this, &check, &err), &err);
    mk_model_t *Model = compile_ok(conn, "Test", schema);
    mk_doc_t *doc = doc_ok(mk_doc_new(Model, &err, "{ name: 'test' }"), &err);
    check.doc = doc;
    assert_ok(mk_doc_save(doc, &err), &err);
    assert_int_equal(check.pre_calls, 1);
    assert_int_equal(check.post_calls, 1);
    assert_int_equal(check.pre_this_ok, 1);
    assert_int_equal(check.post_this_ok, 1);
    assert_int_equal(check.post_res_ok, 1);
    assert_int_equal(check.op_ok, 2);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

typedef struct ops_check {
    mk_doc_t *doc;
    int this_is_doc, res_is_this;
} ops_check_t;

/* schema.post(['save', 'validate', 'remove'], function(res) {
 *   res === this; // true
 *   res === doc; // true
 * }); */
static int log_op(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    ops_check_t *c = ud;
    say("%s", hook->op ? hook->op : "?");
    c->this_is_doc += hook->doc == c->doc;
    c->res_is_this += hook->result == (const void *)hook->doc;
    return MK_OK;
}

/* schema.post(['save', 'validate', 'remove'], function(res) { ... });
 * // Triggers post('validate') hook
 * await doc.validate();
 * // Triggers post('save') **and** post('validate') hook
 * await doc.save();
 * // Triggers post('remove') hook
 * await doc.remove();
 * (ch. 4, Document middleware: "There are 5 document functions you can attach middleware to")
 * NOTE: Mongoose 7 removed Document#remove() and 'remove' middleware; the Mongoose 8 way is
 * doc.deleteOne() with a hook registered { document: true, query: false }. */
static void ch4_post_hook_on_several_document_ops(void **state)
{
    mk_conn_t *conn = open_memory();
    ops_check_t check = {0};
    mk_schema_t *schema = schema_ok("{ name: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_post_ex(schema, "save validate deleteOne", MK_HOOK_DOCUMENT, log_op, &check,
                                &err),
              &err);
    mk_model_t *Model = compile_ok(conn, "Test", schema);
    mk_doc_t *doc = doc_ok(mk_doc_new(Model, &err, "{ name: 'test' }"), &err);
    check.doc = doc;

    assert_ok(mk_doc_validate(doc, &err), &err);
    assert_string_equal(printed, "validate\n");
    assert_ok(mk_doc_save(doc, &err), &err);
    assert_string_equal(printed, "validate\nvalidate\nsave\n");
    assert_int_equal(count_in(conn, "tests"), 1);
    assert_ok(mk_doc_delete_one(doc, &err), &err);
    assert_string_equal(printed, "validate\nvalidate\nsave\ndeleteOne\n");
    assert_int_equal(count_in(conn, "tests"), 0);
    assert_int_equal(check.this_is_doc, 4);
    assert_int_equal(check.res_is_this, 4);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* ---------- 4.3 save() triggers validate() middleware ---------- */

static void setup_pre_validate(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "validate", print_text, "pre validate", &err), &err);
}

/* schema.pre('validate', () => console.log('pre validate'));
 * const doc = new Model({ name: 'test' });
 * // Prints "pre validate"
 * await doc.save();
 * (ch. 4, save() Triggers validate() Middleware) */
static void ch4_save_triggers_validate_middleware(void **state)
{
    mk_conn_t *conn = open_memory();
    new_and_save(test_model(conn, "Test", "{ name: String }", setup_pre_validate));
    assert_string_equal(printed, "pre validate\n");
    mk_conn_close(conn);
}

static void setup_four(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "validate", print_text, "pre validate", &err), &err);
    assert_ok(mk_schema_post(schema, "validate", print_text, "post validate", &err), &err);
    assert_ok(mk_schema_pre(schema, "save", print_text, "pre save", &err), &err);
    assert_ok(mk_schema_post(schema, "save", print_text, "post save", &err), &err);
}

static void setup_four_reversed(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_post(schema, "save", print_text, "post save", &err), &err);
    assert_ok(mk_schema_pre(schema, "save", print_text, "pre save", &err), &err);
    assert_ok(mk_schema_post(schema, "validate", print_text, "post validate", &err), &err);
    assert_ok(mk_schema_pre(schema, "validate", print_text, "pre validate", &err), &err);
}

/* schema.pre('validate', () => console.log('pre validate'));
 * schema.post('validate', () => console.log('post validate'));
 * schema.pre('save', () => console.log('pre save'));
 * schema.post('save', () => console.log('post save'));
 * // Prints "pre validate", "post validate", "pre save", "post save"
 * await doc.save();
 * (ch. 4, save() Triggers validate() Middleware: the order of execution)
 * The order does not depend on the order of registration: validate runs as the first pre('save')
 * step. */
static void ch4_validate_and_save_hook_order(void **state)
{
    mk_conn_t *conn = open_memory();
    new_and_save(test_model(conn, "Test", "{ name: String }", setup_four));
    assert_string_equal(printed, "pre validate\npost validate\npre save\npost save\n");
    printed[0] = '\0';
    new_and_save(test_model(conn, "Test2", "{ name: String }", setup_four_reversed));
    assert_string_equal(printed, "pre validate\npost validate\npre save\npost save\n");
    mk_conn_close(conn);
}

/* ---------- 4.4 Model middleware: insertMany() ---------- */

typedef struct insert_many_check {
    mk_model_t *Model;
    int calls, this_is_model, res_are_docs;
    char first_name[32];
} insert_many_check_t;

/* schema.post('insertMany', function(res) {
 *   this === Model; // true
 *   res[0] instanceof Model; // true
 *   res[0].name; // 'test'
 * }); */
static int check_insert_many(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    insert_many_check_t *c = ud;
    c->calls++;
    c->this_is_model += hook->model == c->Model && hook->doc == NULL;
    mk_doc_t *const *res = hook->result;
    if (res && hook->ndocs == 1 && mk_doc_model(res[0]) == c->Model) {
        c->res_are_docs++;
        const char *name = mk_doc_get_str(res[0], "name");
        snprintf(c->first_name, sizeof c->first_name, "%s", name ? name : "?");
    }
    return MK_OK;
}

/* const schema = Schema({ name: String });
 * schema.post('insertMany', function(res) {
 *   this === Model; // true
 *   res[0] instanceof Model; // true
 *   res[0].name; // 'test'
 * });
 * // Triggers `post('insertMany')` hooks
 * await Model.insertMany([{ name: 'test' }]);
 * (ch. 4, Model middleware) */
static void ch4_insert_many_post_hook(void **state)
{
    mk_conn_t *conn = open_memory();
    insert_many_check_t check = {0};
    mk_schema_t *schema = schema_ok("{ name: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_post(schema, "insertMany", check_insert_many, &check, &err), &err);
    mk_model_t *Model = compile_ok(conn, "Test", schema);
    check.Model = Model;

    bson_t docs = BSON_INITIALIZER;
    bool is_array = false;
    const char *text = "[{ name: 'test' }]";
    assert_ok(mk_json_parse_into(&docs, text, strlen(text), NULL, &is_array, &err), &err);
    assert_true(is_array);
    mk_insert_many_opts_t opts = {0};
    mk_insert_many_result_t result = {0};
    assert_ok(mk_model_insert_many(Model, &docs, &opts, &result, &err), &err);
    bson_destroy(&docs);

    assert_int_equal(check.calls, 1);
    assert_int_equal(check.this_is_model, 1);
    assert_int_equal(check.res_are_docs, 1);
    assert_string_equal(check.first_name, "test");
    assert_int_equal(result.ndocs, 1);
    assert_int_equal(result.nfailures, 0);
    assert_doc_str(result.docs[0], "name", "test");
    assert_false(mk_doc_is_new(result.docs[0]));
    assert_int_equal(count_in(conn, "tests"), 1);
    mk_insert_many_result_destroy(&result);
    mk_conn_close(conn);
}

/* ---------- 4.5 updateOne() and deleteOne(): document or query middleware ---------- */

/* schema.pre('updateOne', function() {
 *   console.log('updateOne', this.constructor.name);
 * }); */
static int update_one_who(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    say("%s %s", hook->op ? hook->op : "?", hook->doc ? "model" : hook->query ? "Query" : "?");
    return MK_OK;
}

/* A saved { name: 'Jean-Luc Picard', age: 59 } document of a model whose schema `setup` hooks. */
static mk_doc_t *saved_picard(mk_conn_t *conn, setup_fn setup)
{
    mk_model_t *Model = test_model(conn, "UserModel", "{ name: String, age: Number }", setup);
    assert_string_equal(mk_model_collection_name(Model), "usermodels");
    mk_error_t err = {0};
    return doc_ok(mk_model_create(Model, &err, "{ name: 'Jean-Luc Picard', age: 59 }"), &err);
}

/* doc.updateOne({ age: N }) and the stored age is N; the document itself is unchanged. */
static void update_age(mk_conn_t *conn, mk_doc_t *doc, int age)
{
    mk_error_t err = {0};
    assert_ok(mk_doc_update_one(doc, &err, "{ age: ? }", MK_I32(age)), &err);
    bson_t *stored = find_by_id(conn, "usermodels", mk_doc_oid(doc));
    assert_non_null(stored);
    assert_int_equal(tu_get_int(stored, "age"), age);
    bson_destroy(stored);
    assert_int_equal(mk_doc_get_i64(doc, "age"), 59);
}

static void setup_update_one_default(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "updateOne", update_one_who, NULL, &err), &err);
}

/* schema.pre('updateOne', function() {
 *   console.log('updateOne', this.constructor.name);
 * });
 * const doc = await Model.create({ name: 'Jean-Luc Picard', age: 59 });
 * // Prints "updateOne model" followed by "updateOne Query".
 * // `Document#updateOne()` triggers both document and query hooks
 * await doc.updateOne({ age: 60 });
 * (ch. 4, Query middleware: "By default, Mongoose treats updateOne and deleteOne middleware as
 * just query middleware")
 * NOTE: the comment contradicts the book's own rule; in Mongoose 8 a default
 * pre('updateOne') is query middleware only, so doc.updateOne() never calls it with the
 * document: it prints only "updateOne Query". */
static void ch4_update_one_hook_is_query_middleware_by_default(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_doc_t *doc = saved_picard(conn, setup_update_one_default);
    update_age(conn, doc, 60);
    assert_string_equal(printed, "updateOne Query\n");
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

static void setup_update_one_document(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre_ex(schema, "updateOne", MK_HOOK_DOCUMENT | MK_HOOK_QUERY,
                               update_one_who, NULL, &err),
              &err);
}

/* // The `options.document` parameter tells Mongoose to call
 * // 'updateOne' hooks as both document and query middleware
 * schema.pre('updateOne', { document: true }, function() {
 *   console.log('updateOne', this.constructor.name);
 * });
 * // Prints "updateOne model" followed by "updateOne Query"
 * await doc.updateOne({ age: 60 });
 * (ch. 4, Query middleware: options.document)
 * (registered here with MK_HOOK_DOCUMENT | MK_HOOK_QUERY: both kinds) */
static void ch4_update_one_document_option(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_doc_t *doc = saved_picard(conn, setup_update_one_document);
    update_age(conn, doc, 60);
    assert_string_equal(printed, "updateOne model\nupdateOne Query\n");
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

static void setup_update_one_document_only(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_post_ex(schema, "updateOne", MK_HOOK_DOCUMENT, update_one_who, NULL, &err),
              &err);
}

/* // Only call this middleware function as document middleware for
 * // updateOne, not as query middleware.
 * schema.post('updateOne', { document: true, query: false }, function() {
 *   console.log('updateOne', this.constructor.name);
 * });
 * // Prints "updateOne model"
 * await doc.updateOne({ age: 60 });
 * (ch. 4, Query middleware: options.query) */
static void ch4_update_one_document_only(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_doc_t *doc = saved_picard(conn, setup_update_one_document_only);
    update_age(conn, doc, 60);
    assert_string_equal(printed, "updateOne model\n");
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

static void setup_delete_one_document(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre_ex(schema, "deleteOne", MK_HOOK_DOCUMENT, update_one_who, NULL, &err),
              &err);
}

/* // By default, `schema.pre('remove')` only registers document
 * // middleware, **not** query middleware.
 * schema.pre('remove', function() {
 *   console.log('remove', this.constructor.name);
 * });
 * const doc = await Model.create({ name: 'Jean-Luc Picard', age: 59 });
 * // Prints "remove model"
 * await doc.remove({ age: 60 });
 * (ch. 4, Query middleware: remove())
 * NOTE: Mongoose 7 removed remove(); in Mongoose 8 the same is
 * schema.pre('deleteOne', { document: true, query: false }, fn) and doc.deleteOne(), which prints
 * "deleteOne model". A 'remove' hook is an unknown op. */
static void ch4_remove_is_delete_one_document_middleware(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_doc_t *doc = saved_picard(conn, setup_delete_one_document);
    assert_int_equal(count_in(conn, "usermodels"), 1);
    mk_error_t err = {0};
    assert_ok(mk_doc_delete_one(doc, &err), &err);
    assert_string_equal(printed, "deleteOne model\n");
    assert_int_equal(count_in(conn, "usermodels"), 0);
    mk_doc_destroy(doc);

    mk_schema_t *schema = schema_ok("{ name: String }", NULL);
    assert_int_equal(mk_schema_pre(schema, "remove", print_text, "remove", &err), MK_ERR);
    mk_schema_destroy(schema);
    mk_conn_close(conn);
}

/* ---------- 4.6 Error handling middleware ---------- */

/* schema.post('save', function errorHandler(err, doc, next) {
 *   console.log('Error:', err.message);
 *   next(err);
 * }); */
static void print_error_message(mk_hook_t *hook, mk_error_t *error, void *ud)
{
    say("Error: %s", error->message);
}

static void setup_error_handler(mk_schema_t *schema)
{
    mk_error_t err = {0};
    /* This is normal post middleware. */
    assert_ok(mk_schema_post(schema, "save", print_text, "this wont print", &err), &err);
    /* If a post middleware function takes exactly 3 parameters, Mongoose
     * will treat it as error handling middleware. */
    assert_ok(mk_schema_post_error(schema, "save", print_error_message, NULL, &err), &err);
}

/* // This is normal post middleware.
 * schema.post('save', () => console.log('this wont print'));
 * // If a post middleware function takes exactly 3 parameters, Mongoose
 * // will treat it as error handling middleware.
 * schema.post('save', function errorHandler(err, doc, next) {
 *   console.log('Error:', err.message);
 *   next(err);
 * });
 * try {
 *   // Prints "Error: UserModel validation failed..." because
 *   // of the `errorHandler()` function
 *   await Model.create({ age: 'not a number' });
 * } catch (error) {
 *   error.message; // "UserModel validation failed..."
 * }
 * (ch. 4, Error handling middleware) */
static void ch4_error_handler_sees_validation_error(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Model =
        test_model(conn, "UserModel", "{ name: String, age: Number }", setup_error_handler);
    mk_error_t err = {0};
    mk_doc_t *doc = mk_model_create(Model, &err, "{ age: 'not a number' }");
    assert_null(doc);
    const char *message = "UserModel validation failed: age: Cast to Number failed for value "
                          "\"not a number\" (type string) at path \"age\"";
    assert_string_equal(err.kind, "ValidationError");
    assert_string_equal(err.message, message);
    char expect[512];
    snprintf(expect, sizeof expect, "Error: %s\n", message);
    assert_string_equal(printed, expect);
    assert_int_equal(count_in(conn, "usermodels"), 0);

    /* a save that succeeds runs the normal post hook and not the error handler */
    printed[0] = '\0';
    doc = doc_ok(mk_model_create(Model, &err, "{ name: 'test', age: '42' }"), &err);
    assert_string_equal(printed, "this wont print\n");
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* schema.pre('save', () => { throw new Error('Oops!') }); */
static int throw_oops(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    return mk_error_set(err, 0, "Error", "Oops!");
}

static void setup_pre_throws(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "save", throw_oops, NULL, &err), &err);
    assert_ok(mk_schema_post(schema, "save", print_text, "this wont print", &err), &err);
    assert_ok(mk_schema_post_error(schema, "save", print_error_message, NULL, &err), &err);
}

/* // Errors in pre hooks will trigger error handling middleware
 * schema.pre('save', () => { throw new Error('Oops!)' });
 * (ch. 4, Error handling middleware: "Mongoose calls error handling middleware if a pre() hook
 * errored out") */
static void ch4_error_handler_sees_pre_hook_error(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *Model =
        test_model(conn, "UserModel", "{ name: String, age: Number }", setup_pre_throws);
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(Model, &err, "{ name: 'test' }"), &err);
    assert_int_equal(mk_doc_save(doc, &err), MK_ERR);
    assert_string_equal(err.kind, "Error");
    assert_string_equal(err.message, "Oops!");
    assert_string_equal(printed, "Error: Oops!\n");
    assert_true(mk_doc_is_new(doc));
    assert_int_equal(count_in(conn, "usermodels"), 0);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

/* schema.post('save', () => { throw new Error('Oops!'); }); */
static int post_throws(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    say("post throws");
    return mk_error_set(err, 0, "Error", "Oops!");
}

static void setup_post_throws_then_handler(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_post(schema, "save", post_throws, NULL, &err), &err);
    assert_ok(mk_schema_post(schema, "save", print_text, "this wont print", &err), &err);
    assert_ok(mk_schema_post_error(schema, "save", print_error_message, NULL, &err), &err);
}

static void setup_handler_then_post_throws(mk_schema_t *schema)
{
    mk_error_t err = {0};
    assert_ok(mk_schema_post_error(schema, "save", print_error_message, NULL, &err), &err);
    assert_ok(mk_schema_post(schema, "save", post_throws, NULL, &err), &err);
}

/* // Errors in post hooks also trigger error handling, but only if the
 * // error handler is defined after the hook that errors out.
 * schema.post('save', () => { throw new Error('Oops!'); });
 * (ch. 4, Error handling middleware)
 * The document was written before the post hooks ran: it stays stored. */
static void ch4_error_handler_after_failing_post_hook(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *After = test_model(conn, "UserModel", "{ name: String, age: Number }",
                                   setup_post_throws_then_handler);
    mk_error_t err = {0};
    mk_doc_t *doc = doc_ok(mk_doc_new(After, &err, "{ name: 'test' }"), &err);
    assert_int_equal(mk_doc_save(doc, &err), MK_ERR);
    assert_string_equal(err.message, "Oops!");
    assert_string_equal(printed, "post throws\nError: Oops!\n");
    assert_int_equal(count_in(conn, "usermodels"), 1);
    mk_doc_destroy(doc);

    /* an error handler registered before the failing hook is not called */
    printed[0] = '\0';
    mk_model_t *Before =
        test_model(conn, "Other", "{ name: String, age: Number }", setup_handler_then_post_throws);
    doc = doc_ok(mk_doc_new(Before, &err, "{ name: 'test' }"), &err);
    mk_error_clear(&err);
    assert_int_equal(mk_doc_save(doc, &err), MK_ERR);
    assert_string_equal(err.message, "Oops!");
    assert_string_equal(printed, "post throws\n");
    assert_int_equal(count_in(conn, "others"), 1);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

typedef struct dup_seen {
    int calls;
    int code;
    char kind[MK_ERROR_KIND_MAX];
    char message[MK_ERROR_MSG_MAX];
} dup_seen_t;

/* schema.post('save', function errorHandler(err, doc, next) {
 *   // By default, duplicate `_id` errors look like this:
 *   // "E11000 duplicate key error collection: test.usermodels"
 *   // Error handling middleware can make the error more readable
 *   if (err.code === 11000) return next(Error('Duplicate _id'));
 *   next(err);
 * }); */
static void readable_duplicate(mk_hook_t *hook, mk_error_t *error, void *ud)
{
    dup_seen_t *seen = ud;
    seen->calls++;
    seen->code = error->code;
    snprintf(seen->kind, sizeof seen->kind, "%s", error->kind);
    snprintf(seen->message, sizeof seen->message, "%s", error->message);
    if (error->code == 11000) mk_error_set(error, 0, "Error", "Duplicate _id");
}

/* schema.post('save', function errorHandler(err, doc, next) { ... });
 * const doc = await Model.create({ name: 'test' });
 * await Model.create({ _id: doc._id }); // Throws "Duplicate _id"
 * (ch. 4, Error handling middleware: readable error messages)
 * The original error is MongoDB's, as Mongoose 8 shows it: a MongoServerError, code 11000,
 * "E11000 duplicate key error collection: test.usermodels index: _id_ dup key: { _id:
 * ObjectId('...') }". */
static void ch4_error_handler_rewrites_duplicate_key(void **state)
{
    mk_conn_t *conn = open_memory();
    dup_seen_t seen = {0};
    mk_schema_t *schema = schema_ok("{ name: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_post_error(schema, "save", readable_duplicate, &seen, &err), &err);
    mk_model_t *Model = compile_ok(conn, "UserModel", schema);

    mk_doc_t *doc = doc_ok(mk_model_create(Model, &err, "{ name: 'test' }"), &err);
    assert_int_equal(seen.calls, 0);
    bson_oid_t id = *mk_doc_oid(doc);
    mk_doc_t *dup = mk_model_create(Model, &err, "{ _id: ? }", MK_OID(&id));
    assert_null(dup);
    assert_string_equal(err.message, "Duplicate _id");
    assert_string_equal(err.kind, "Error");
    assert_int_equal(err.code, 0);

    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.code, 11000);
    assert_string_equal(seen.kind, "MongoServerError");
    char hex[25], expect[256];
    bson_oid_to_string(&id, hex);
    snprintf(expect, sizeof expect,
             "E11000 duplicate key error collection: test.usermodels index: _id_ dup key: { _id: "
             "ObjectId('%s') }",
             hex);
    assert_string_equal(seen.message, expect);
    assert_int_equal(count_in(conn, "usermodels"), 1);
    mk_doc_destroy(doc);
    mk_conn_close(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(ch4_pre_save, reset_log),
        cmocka_unit_test_setup(ch4_pre_and_post_save, reset_log),
        cmocka_unit_test_setup(ch4_hooks_run_in_registration_order, reset_log),
        cmocka_unit_test_setup(ch4_post_save_receives_document, reset_log),
        cmocka_unit_test_setup(ch4_async_hooks_run_in_series, reset_log),
        cmocka_unit_test_setup(ch4_next_style_hooks, reset_log),
        cmocka_unit_test_setup(ch4_document_middleware_this_and_res, reset_log),
        cmocka_unit_test_setup(ch4_post_hook_on_several_document_ops, reset_log),
        cmocka_unit_test_setup(ch4_save_triggers_validate_middleware, reset_log),
        cmocka_unit_test_setup(ch4_validate_and_save_hook_order, reset_log),
        cmocka_unit_test_setup(ch4_insert_many_post_hook, reset_log),
        cmocka_unit_test_setup(ch4_update_one_hook_is_query_middleware_by_default, reset_log),
        cmocka_unit_test_setup(ch4_update_one_document_option, reset_log),
        cmocka_unit_test_setup(ch4_update_one_document_only, reset_log),
        cmocka_unit_test_setup(ch4_remove_is_delete_one_document_middleware, reset_log),
        cmocka_unit_test_setup(ch4_error_handler_sees_validation_error, reset_log),
        cmocka_unit_test_setup(ch4_error_handler_sees_pre_hook_error, reset_log),
        cmocka_unit_test_setup(ch4_error_handler_after_failing_post_hook, reset_log),
        cmocka_unit_test_setup(ch4_error_handler_rewrites_duplicate_key, reset_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
