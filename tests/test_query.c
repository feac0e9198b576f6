/* Queries (include/meerkat/query.h): building, chain helpers, options, every op and its
 * result, casting at execution, projections, lean, cursors, orFail, explain, sessions and
 * query middleware, checked against Mongoose 8's behaviour and messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <meerkat/query.h>

/* ---------- helpers ---------- */

static void assert_ok_(int rc, const mk_error_t *err, const char *file, int line)
{
    if (rc != MK_OK) {
        print_error("%s:%d: expected MK_OK, got %d: [%s] %s\n", file, line, rc, err->kind,
                    err->message);
        _fail(file, line);
    }
}
#define assert_ok(rc, err) assert_ok_((rc), (err), __FILE__, __LINE__)

static void assert_fails_(int rc, const mk_error_t *err, const char *kind, const char *msg,
                          const char *file, int line)
{
    if (rc == MK_OK) {
        print_error("%s:%d: expected [%s] %s, got MK_OK\n", file, line, kind, msg);
        _fail(file, line);
    }
    if (strcmp(err->kind, kind) != 0 || (msg && strcmp(err->message, msg) != 0)) {
        print_error("%s:%d: expected [%s] %s\n              got [%s] %s\n", file, line, kind,
                    msg ? msg : "*", err->kind, err->message);
        _fail(file, line);
    }
}
#define assert_fails(rc, err, kind, msg)                                                           \
    assert_fails_((rc), (err), (kind), (msg), __FILE__, __LINE__)

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

/* A model from a schema the caller prepared (hooks, validators); the schema is destroyed. */
static mk_model_t *model_from_(mk_conn_t *conn, const char *name, mk_schema_t *schema,
                               const char *file, int line)
{
    mk_error_t err = {0};
    mk_model_t *model = mk_model(conn, name, schema, &err);
    mk_schema_destroy(schema);
    if (!model) {
        print_error("%s:%d: model %s: [%s] %s\n", file, line, name, err.kind, err.message);
        _fail(file, line);
    }
    return model;
}
#define model_from(conn, name, schema) model_from_((conn), (name), (schema), __FILE__, __LINE__)

static mk_schema_t *schema_ok_(const char *def, const char *opts, const char *file, int line)
{
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse(def, opts, &err);
    if (!s) {
        print_error("%s:%d: schema: [%s] %s\n", file, line, err.kind, err.message);
        _fail(file, line);
    }
    return s;
}
#define schema_ok(def, opts) schema_ok_((def), (opts), __FILE__, __LINE__)

/* Model.create(json), the document dropped. */
static void create_(mk_model_t *m, const char *json, const char *file, int line)
{
    mk_error_t err = {0};
    mk_doc_t *d = mk_model_create_args(m, json, NULL, &err);
    if (!d) {
        print_error("%s:%d: create %s: [%s] %s\n", file, line, json, err.kind, err.message);
        _fail(file, line);
    }
    mk_doc_destroy(d);
}
#define create(m, json) create_((m), (json), __FILE__, __LINE__)

/* Executes q (which must build) expecting success; q is destroyed. */
static void run_(mk_query_t *q, mk_query_result_t *r, const mk_error_t *built, const char *file,
                 int line)
{
    if (!q) {
        print_error("%s:%d: query not built: [%s] %s\n", file, line, built->kind, built->message);
        _fail(file, line);
    }
    mk_error_t err = {0};
    int rc = mk_query_exec(q, r, &err);
    mk_query_destroy(q);
    if (rc != MK_OK) {
        print_error("%s:%d: exec failed: [%s] %s\n", file, line, err.kind, err.message);
        _fail(file, line);
    }
}
#define run(q, r) run_((q), (r), &err, __FILE__, __LINE__)

/* Executes q expecting an error; q is destroyed. */
static void run_fails_(mk_query_t *q, const mk_error_t *built, const char *kind, const char *msg,
                       const char *file, int line)
{
    if (!q) {
        print_error("%s:%d: query not built: [%s] %s\n", file, line, built->kind, built->message);
        _fail(file, line);
    }
    mk_error_t err = {0};
    mk_query_result_t r;
    int rc = mk_query_exec(q, &r, &err);
    mk_query_destroy(q);
    if (rc == MK_OK) mk_query_result_destroy(&r);
    assert_fails_(rc, &err, kind, msg, file, line);
    assert_int_equal(r.ndocs + r.nlean, 0);
    assert_null(r.doc);
}
#define run_fails(q, kind, msg) run_fails_((q), &err, (kind), (msg), __FILE__, __LINE__)

/* The `name` of each document of a find, joined with ",". */
static void assert_names_(const mk_query_result_t *r, const char *expect, const char *file,
                          int line)
{
    char buf[1024] = "";
    for (size_t i = 0; i < r->ndocs; i++) {
        const char *n = mk_doc_get_str(r->docs[i], "name");
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? "," : "", n ? n : "-");
    }
    for (size_t i = 0; i < r->nlean; i++) {
        bson_iter_t it;
        const char *n = bson_iter_init_find(&it, r->lean[i], "name") && BSON_ITER_HOLDS_UTF8(&it)
                            ? bson_iter_utf8(&it, NULL)
                            : "-";
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? "," : "", n);
    }
    if (strcmp(buf, expect) != 0) {
        print_error("%s:%d: names: got \"%s\", expected \"%s\"\n", file, line, buf, expect);
        _fail(file, line);
    }
}
#define assert_names(r, expect) assert_names_((r), (expect), __FILE__, __LINE__)

static void assert_str_(const char *got, const char *expect, const char *file, int line)
{
    if (!got || strcmp(got, expect) != 0) {
        print_error("%s:%d: got %s%s%s, expected \"%s\"\n", file, line, got ? "\"" : "",
                    got ? got : "NULL", got ? "\"" : "", expect);
        _fail(file, line);
    }
}
#define assert_str(got, expect) assert_str_((got), (expect), __FILE__, __LINE__)

/* A document's stored BSON (no options), for exact comparisons. */
static void assert_doc_bson_(mk_doc_t *d, const char *expect, bool drop_id, const char *file,
                             int line)
{
    mk_error_t err = {0};
    const bson_t *b = mk_doc_bson(d, &err);
    if (!b) _fail(file, line);
    bson_t copy = BSON_INITIALIZER;
    bson_copy_to_excluding_noinit(b, &copy, drop_id ? "_id" : "", NULL);
    tu_assert_bson_eq_(&copy, expect, file, line);
    bson_destroy(&copy);
}
#define assert_doc_bson(d, expect) assert_doc_bson_((d), (expect), true, __FILE__, __LINE__)

static bool has_field(mk_doc_t *d, const char *path)
{
    bson_value_t v;
    return mk_doc_get_raw(d, path, &v);
}

/* Every test gets a fresh in-memory database. */
static int setup(void **state)
{
    mk_error_t err = {0};
    mk_conn_t *conn = mk_connect("memory:", &err);
    if (!conn) {
        print_error("mk_connect: [%s] %s\n", err.kind, err.message);
        return -1;
    }
    *state = conn;
    return 0;
}

static int teardown(void **state)
{
    mk_conn_close(*state);
    return 0;
}

/* The book's Character model with three documents. */
static mk_model_t *characters(mk_conn_t *conn)
{
    mk_model_t *m =
        model_ok(conn, "Character", "{ name: String, age: Number, rank: String }", NULL);
    create(m, "{ name: 'Jean-Luc Picard', age: 59 }");
    create(m, "{ name: 'Will Riker', age: 29 }");
    create(m, "{ name: 'Deanna Troi', age: 29 }");
    return m;
}

/* A hook log shared by the middleware tests. */
static char hook_log[2048];
static void log_add(const char *s)
{
    size_t n = strlen(hook_log);
    snprintf(hook_log + n, sizeof hook_log - n, "%s%s", n ? "," : "", s);
}

/* ---------- op names and construction ---------- */

static void test_op_names(void **state)
{
    (void)state;
    static const char *const names[] = {"find",
                                        "findOne",
                                        "countDocuments",
                                        "estimatedDocumentCount",
                                        "distinct",
                                        "updateOne",
                                        "updateMany",
                                        "replaceOne",
                                        "deleteOne",
                                        "deleteMany",
                                        "findOneAndUpdate",
                                        "findOneAndReplace",
                                        "findOneAndDelete"};
    for (int op = MK_OP_FIND; op <= MK_OP_FIND_ONE_AND_DELETE; op++)
        assert_str(mk_query_op_name((mk_query_op_t)op), names[op - MK_OP_FIND]);
    assert_null(mk_query_op_name((mk_query_op_t)0));
}

static void test_build_placeholders(void **state)
{
    mk_model_t *m = model_ok(*state, "Character", "{ name: String, age: Number }", NULL);
    mk_error_t err = {0};
    /* the arguments fill the filter's placeholders, then the update's */
    mk_query_t *q =
        mk_update_one(m, &err, "{ name: ?, note: '?', re: /a?b/ }",
                      "{ $set: { age: ?, tag: \"x?\" } } // ?", MK_STR("Will"), MK_I32(30));
    assert_non_null(q);
    assert_int_equal(mk_query_op(q), MK_OP_UPDATE_ONE);
    assert_ptr_equal(mk_query_model(q), m);
    tu_assert_bson_eq(mk_query_get_filter(q), "{ name: 'Will', note: '?', re: /a?b/ }");
    tu_assert_bson_eq(mk_query_get_update(q), "{ $set: { age: 30, tag: 'x?' } }");
    mk_query_destroy(q);

    /* too few / too many arguments */
    q = mk_update_one(m, &err, "{ name: ? }", "{ age: ? }", MK_STR("Will"));
    assert_null(q);
    assert_str(err.kind, "FailedToParse");
    q = mk_find(m, &err, "{ name: ? }", MK_STR("a"), MK_STR("b"));
    assert_null(q);
    assert_str(err.kind, "FailedToParse");
    assert_non_null(strstr(err.message, "1 placeholders but 2 arguments"));
    /* a parse error names the place */
    q = mk_find(m, &err, "{ name: }");
    assert_null(q);
    assert_str(err.kind, "FailedToParse");
    /* a NULL filter is {} and a find has no update */
    q = mk_find(m, &err, NULL);
    assert_non_null(q);
    tu_assert_bson_eq(mk_query_get_filter(q), "{}");
    assert_null(mk_query_get_update(q));
    mk_query_destroy(q);
    /* BSON form copies its inputs */
    bson_t *f = tu_bson("{ age: 29 }");
    q = mk_query_new_bson(m, MK_OP_UPDATE_MANY, f, NULL, &err);
    bson_destroy(f);
    tu_assert_bson_eq(mk_query_get_filter(q), "{ age: 29 }");
    tu_assert_bson_eq(mk_query_get_update(q), "{}");
    mk_query_destroy(q);
    /* bad arguments */
    assert_null(mk_query_new(NULL, MK_OP_FIND, NULL, NULL, NULL, &err));
    assert_str(err.kind, "MongooseError");
    assert_null(mk_query_new(m, (mk_query_op_t)99, NULL, NULL, NULL, &err));
    assert_str(err.message, "unknown query op 99");
    assert_null(mk_distinct(m, &err, "", NULL));
    assert_str(err.message, "distinct() needs a field name");
}

static void test_lazy_and_reexec(void **state)
{
    mk_model_t *m = model_ok(*state, "Character", "{ name: String, age: Number }", NULL);
    mk_error_t err = {0};
    mk_query_t *q = mk_count_documents(m, &err, "{ age: { $lt: ? } }", MK_STR("30"));
    mk_query_result_t r;
    /* nothing ran when the query was built: documents created later are counted */
    create(m, "{ name: 'Will Riker', age: 29 }");
    assert_ok(mk_query_exec(q, &r, &err), &err);
    assert_int_equal(r.op, MK_OP_COUNT_DOCUMENTS);
    assert_int_equal(r.count, 1);
    mk_query_result_destroy(&r);
    /* executed again: a second, separate operation, cast again from the raw filter */
    create(m, "{ name: 'Deanna Troi', age: 29 }");
    assert_ok(mk_query_exec(q, &r, &err), &err);
    assert_int_equal(r.count, 2);
    mk_query_result_destroy(&r);
    tu_assert_bson_eq(mk_query_get_filter(q), "{ age: { $lt: '30' } }");
    /* a filter replaced between executions is what the next one uses */
    assert_ok(mk_query_set_filter(q, "{ name: ? }", MK_ARGS(MK_STR("Will Riker")), &err), &err);
    assert_ok(mk_query_exec(q, &r, &err), &err);
    assert_int_equal(r.count, 1);
    mk_query_result_destroy(&r);
    /* a CastError fails only the execution, each time */
    assert_ok(mk_query_set_filter(q, "{ age: 'x' }", NULL, &err), &err);
    for (int i = 0; i < 2; i++) {
        assert_fails(mk_query_exec(q, &r, &err), &err, "CastError",
                     "Cast to Number failed for value \"x\" (type string) at path \"age\" for "
                     "model \"Character\"");
        assert_int_equal(r.count, 0);
    }
    mk_query_destroy(q);
}

/* ---------- reads ---------- */

static void test_find_findone_count(void **state)
{
    mk_model_t *m = characters(*state);
    mk_error_t err = {0};
    mk_query_result_t r;
    run(mk_find(m, &err, "{ age: { $lt: 30 } }"), &r);
    assert_int_equal(r.op, MK_OP_FIND);
    assert_names(&r, "Will Riker,Deanna Troi");
    assert_false(mk_doc_is_new(r.docs[0])); /* hydrated, not new */
    assert_false(mk_doc_is_modified(r.docs[0], NULL));
    assert_int_equal(mk_doc_get_i64(r.docs[0], "age"), 29);
    mk_query_result_destroy(&r);
    /* nothing found: an empty list */
    run(mk_find(m, &err, "{ age: { $gt: 100 } }"), &r);
    assert_int_equal(r.ndocs, 0);
    assert_null(r.docs);
    mk_query_result_destroy(&r);

    run(mk_find_one(m, &err, "{ age: { $lt: 30 } }"), &r);
    assert_non_null(r.doc);
    assert_int_equal(r.ndocs, 0);
    assert_str(mk_doc_get_str(r.doc, "name"), "Will Riker");
    mk_query_result_destroy(&r);
    run(mk_find_one(m, &err, "{ name: 'nobody' }"), &r);
    assert_null(r.doc);
    mk_query_result_destroy(&r);

    run(mk_count_documents(m, &err, "{ age: { $lt: 30 } }"), &r);
    assert_int_equal(r.count, 2);
    mk_query_result_destroy(&r);
    run(mk_estimated_document_count(m, &err), &r);
    assert_int_equal(r.count, 3);
    mk_query_result_destroy(&r);

    /* conveniences */
    mk_doc_t **docs;
    size_t n;
    mk_query_t *q = mk_find(m, &err, "{}");
    mk_query_sort(q, "name");
    assert_ok(mk_query_docs(q, &docs, &n, &err), &err);
    assert_int_equal(n, 3);
    assert_str(mk_doc_get_str(docs[0], "name"), "Deanna Troi");
    for (size_t i = 0; i < n; i++) mk_doc_destroy(docs[i]);
    free(docs);
    mk_query_destroy(q);
    q = mk_find_one(m, &err, "{ name: 'Will Riker' }");
    mk_doc_t *d = mk_query_one(q, &err);
    assert_non_null(d);
    assert_int_equal(mk_doc_get_i64(d, "age"), 29);
    mk_doc_destroy(d);
    mk_query_destroy(q);
    q = mk_find_one(m, &err, "{ name: 'nobody' }");
    strcpy(err.kind, "stale");
    assert_null(mk_query_one(q, &err));
    assert_str(err.kind, ""); /* not found is not an error */
    mk_query_destroy(q);
    int64_t count = -1;
    q = mk_count_documents(m, &err, NULL);
    assert_ok(mk_query_count(q, &count, &err), &err);
    assert_int_equal(count, 3);
    mk_query_destroy(q);
    /* conveniences refuse ops they do not fit */
    q = mk_find(m, &err, NULL);
    assert_fails(mk_query_count(q, &count, &err), &err, "MongooseError",
                 "mk_query_count: a find query is not a count");
    assert_null(mk_query_one(q, &err));
    assert_str(err.message, "mk_query_one: a find query does not return documents");
    mk_query_lean(q, true);
    assert_fails(mk_query_docs(q, &docs, &n, &err), &err, "MongooseError",
                 "mk_query_docs: the query is lean; read its BSON with mk_query_exec");
    mk_query_destroy(q);
}

static void test_distinct(void **state)
{
    mk_model_t *m = characters(*state);
    mk_error_t err = {0};
    mk_query_result_t r;
    run(mk_distinct(m, &err, "age", NULL), &r);
    assert_int_equal(r.op, MK_OP_DISTINCT);
    tu_assert_bson_eq(r.values, "{ '0': 29, '1': 59 }");
    mk_query_result_destroy(&r);
    run(mk_distinct(m, &err, "name", "{ age: { $lte: ? } }", MK_STR("29")), &r);
    tu_assert_bson_eq(r.values, "{ '0': 'Deanna Troi', '1': 'Will Riker' }");
    mk_query_result_destroy(&r);
    /* the filter is cast */
    run_fails(mk_distinct(m, &err, "name", "{ age: 'old' }"), "CastError",
              "Cast to Number failed for value \"old\" (type string) at path \"age\" for model "
              "\"Character\"");
}

static void test_exists(void **state)
{
    mk_model_t *m = characters(*state);
    mk_error_t err = {0};
    bson_t *id = mk_exists(m, &err, "{ name: ? }", MK_STR("Will Riker"));
    assert_non_null(id);
    bson_iter_t it;
    assert_true(bson_iter_init(&it, id) && bson_iter_next(&it));
    assert_str(bson_iter_key(&it), "_id");
    assert_true(BSON_ITER_HOLDS_OID(&it));
    assert_false(bson_iter_next(&it)); /* only { _id } */
    bson_destroy(id);
    strcpy(err.kind, "stale");
    assert_null(mk_exists(m, &err, "{ name: 'nobody' }"));
    assert_str(err.kind, "");
    assert_null(mk_exists(m, &err, "{ age: 'x' }"));
    assert_str(err.kind, "CastError");
}

/* ---------- chain helpers ---------- */

static void test_chain_helpers(void **state)
{
    mk_model_t *m = model_ok(*state, "Post",
                             "{ name: String, age: Number, tags: [String],"
                             "  comments: [{ user: String, text: String }] }",
                             NULL);
    create(m, "{ name: 'a', age: 10, tags: ['x', 'y'], comments: [{ user: 'u1', text: 'hi' }] }");
    create(m, "{ name: 'b', age: 20, tags: ['y'], comments: [] }");
    create(m, "{ name: 'c', age: 30, tags: [], comments: [{ user: 'u2', text: 'yo' }] }");
    mk_error_t err = {0};
    mk_query_result_t r;

    mk_query_t *q = mk_find(m, &err, NULL);
    assert_ptr_equal(mk_query_where(q, "age"), q);
    assert_ptr_equal(mk_query_gte(q, MK_I32(10)), q);
    assert_ptr_equal(mk_query_lt(q, MK_STR("30")), q);
    assert_ptr_equal(mk_query_ne(q, MK_I32(20)), q);
    mk_query_gt(q, MK_I32(5)); /* replaces nothing, adds $gt */
    mk_query_lte(q, MK_I32(100));
    mk_query_gte(q, MK_I32(1)); /* set again: in place */
    tu_assert_bson_eq(mk_query_get_filter(q),
                      "{ age: { $gte: 1, $lt: '30', $ne: 20, $gt: 5, $lte: 100 } }");
    mk_query_sort(q, "name");
    run(q, &r);
    assert_names(&r, "a");
    mk_query_result_destroy(&r);

    q = mk_where(m, "name", &err);
    mk_query_equals(q, MK_STR("b"));
    tu_assert_bson_eq(mk_query_get_filter(q), "{ name: 'b' }");
    run(q, &r);
    assert_names(&r, "b");
    mk_query_result_destroy(&r);

    q = mk_find(m, &err, NULL);
    mk_query_in(mk_query_where(q, "name"), "['a', ?]", MK_ARGS(MK_STR("c")));
    mk_query_nin(mk_query_where(q, "age"), "[30]", NULL);
    tu_assert_bson_eq(mk_query_get_filter(q), "{ name: { $in: ['a', 'c'] }, age: { $nin: [30] } }");
    run(q, &r);
    assert_names(&r, "a");
    mk_query_result_destroy(&r);

    q = mk_find(m, &err, NULL);
    mk_query_all(mk_query_where(q, "tags"), "['x', 'y']", NULL);
    run(q, &r);
    assert_names(&r, "a");
    mk_query_result_destroy(&r);

    q = mk_find(m, &err, NULL);
    mk_query_size(mk_query_where(q, "tags"), 0);
    mk_query_exists(mk_query_where(q, "comments"), true);
    tu_assert_bson_eq(mk_query_get_filter(q),
                      "{ tags: { $size: 0 }, comments: { $exists: true } }");
    run(q, &r);
    assert_names(&r, "c");
    mk_query_result_destroy(&r);

    q = mk_find(m, &err, NULL);
    mk_query_regex(mk_query_where(q, "name"), "^[AB]$", "i");
    mk_query_sort(q, "-name");
    tu_assert_bson_eq(mk_query_get_filter(q), "{ name: { $regex: /^[AB]$/i } }");
    run(q, &r);
    assert_names(&r, "b,a");
    mk_query_result_destroy(&r);

    q = mk_find(m, &err, NULL);
    mk_query_mod(mk_query_where(q, "age"), 20, 10);
    tu_assert_bson_eq(mk_query_get_filter(q), "{ age: { $mod: [20, 10] } }");
    mk_query_sort(q, "age");
    run(q, &r);
    assert_names(&r, "a,c");
    mk_query_result_destroy(&r);

    q = mk_find(m, &err, NULL);
    mk_query_elem_match(mk_query_where(q, "comments"), "{ user: ?, text: 'yo' }",
                        MK_ARGS(MK_STR("u2")));
    run(q, &r);
    assert_names(&r, "c");
    mk_query_result_destroy(&r);

    /* $or / $and / $nor append to the filter's arrays; one object counts as [object] */
    q = mk_find(m, &err, "{ $or: [{ name: 'a' }] }");
    mk_query_or(q, "[{ name: ? }]", MK_ARGS(MK_STR("b")));
    mk_query_or(q, "{ age: 30 }", NULL);
    tu_assert_bson_eq(mk_query_get_filter(q),
                      "{ $or: [{ name: 'a' }, { name: 'b' }, { age: 30 }] }");
    mk_query_nor(q, "[{ name: 'c' }]", NULL);
    mk_query_and(q, "[{ age: { $gte: 10 } }, { age: { $lte: 20 } }]", NULL);
    mk_query_sort(q, "name");
    run(q, &r);
    assert_names(&r, "a,b");
    mk_query_result_destroy(&r);

    /* where(object) merges, deeply, into the conditions */
    q = mk_find(m, &err, "{ age: { $gte: 10 }, name: 'x' }");
    mk_query_where_json(q, "{ age: { $lt: ? }, name: 'a' }", MK_ARGS(MK_I32(25)));
    tu_assert_bson_eq(mk_query_get_filter(q), "{ age: { $gte: 10, $lt: 25 }, name: 'a' }");
    run(q, &r);
    assert_names(&r, "a");
    mk_query_result_destroy(&r);

    /* a value helper without a current path: mquery's error, kept for the execution */
    q = mk_find(m, &err, NULL);
    assert_null(mk_query_gt(q, MK_I32(1)));
    const mk_error_t *e = mk_query_error(q);
    assert_non_null(e);
    assert_str(e->kind, "Error");
    assert_str(e->message, "gt() must be used after where() when called with these arguments");
    /* later calls on NULL are no-ops; the first error stays */
    assert_null(mk_query_lt(mk_query_equals(NULL, MK_I32(1)), MK_I32(2)));
    assert_null(mk_query_where(q, "age")); /* a failed query takes no more calls */
    assert_str(mk_query_error(q)->message,
               "gt() must be used after where() when called with these arguments");
    run_fails(q, "Error", "gt() must be used after where() when called with these arguments");
    static const struct {
        const char *name;
        int which;
    } helpers[] = {{"equals", 0}, {"gte", 1},  {"lt", 2},        {"lte", 3},    {"ne", 4},
                   {"in", 5},     {"nin", 6},  {"all", 7},       {"exists", 8}, {"regex", 9},
                   {"size", 10},  {"mod", 11}, {"elemMatch", 12}};
    for (size_t i = 0; i < sizeof helpers / sizeof helpers[0]; i++) {
        q = mk_find(m, &err, NULL);
        mk_query_t *res = NULL;
        switch (helpers[i].which) {
        case 0:
            res = mk_query_equals(q, MK_I32(1));
            break;
        case 1:
            res = mk_query_gte(q, MK_I32(1));
            break;
        case 2:
            res = mk_query_lt(q, MK_I32(1));
            break;
        case 3:
            res = mk_query_lte(q, MK_I32(1));
            break;
        case 4:
            res = mk_query_ne(q, MK_I32(1));
            break;
        case 5:
            res = mk_query_in(q, "[1]", NULL);
            break;
        case 6:
            res = mk_query_nin(q, "[1]", NULL);
            break;
        case 7:
            res = mk_query_all(q, "[1]", NULL);
            break;
        case 8:
            res = mk_query_exists(q, true);
            break;
        case 9:
            res = mk_query_regex(q, "a", NULL);
            break;
        case 10:
            res = mk_query_size(q, 1);
            break;
        case 11:
            res = mk_query_mod(q, 2, 1);
            break;
        case 12:
            res = mk_query_elem_match(q, "{ a: 1 }", NULL);
            break;
        }
        assert_null(res);
        char msg[128];
        snprintf(msg, sizeof msg,
                 "%s() must be used after where() when called with these arguments",
                 helpers[i].name);
        assert_str(mk_query_error(q)->message, msg);
        mk_query_destroy(q);
    }
    /* in() wants an array, elemMatch an object */
    q = mk_where(m, "age", &err);
    assert_null(mk_query_in(q, "{ a: 1 }", NULL));
    assert_str(mk_query_error(q)->message, "in() needs an array of values");
    mk_query_destroy(q);
    q = mk_where(m, "comments", &err);
    assert_null(mk_query_elem_match(q, "[1]", NULL));
    assert_str(mk_query_error(q)->message, "elemMatch() needs an object");
    mk_query_destroy(q);
    q = mk_find(m, &err, NULL);
    assert_null(mk_query_where_json(q, "{ a: ", NULL));
    assert_str(mk_query_error(q)->kind, "FailedToParse");
    mk_query_destroy(q);
}

/* ---------- options ---------- */

static void test_sort_skip_limit(void **state)
{
    mk_model_t *m = model_ok(*state, "Character", "{ name: String, age: Number }", NULL);
    create(m, "{ name: 'Jean-Luc Picard', age: 59 }");
    create(m, "{ name: 'Beverly Crusher', age: 40 }");
    create(m, "{ name: 'Will Riker', age: 29 }");
    create(m, "{ name: 'Deanna Troi', age: 29 }");
    mk_error_t err = {0};
    mk_query_result_t r;
    mk_query_t *q = mk_find(m, &err, NULL);
    mk_query_sort(q, "-age name");
    tu_assert_bson_eq(mk_query_get_options(q), "{ sort: { age: -1, name: 1 } }");
    run(q, &r);
    assert_names(&r, "Jean-Luc Picard,Beverly Crusher,Deanna Troi,Will Riker");
    mk_query_result_destroy(&r);
    /* sort() adds keys; object form with the words mquery accepts */
    q = mk_find(m, &err, NULL);
    mk_query_sort(q, "{ age: 'asc' }");
    mk_query_sort(q, "{ name: 'descending', age: -1 }");
    tu_assert_bson_eq(mk_query_get_options(q), "{ sort: { age: -1, name: -1 } }");
    mk_query_skip(q, 1);
    mk_query_limit(q, 2);
    tu_assert_bson_eq(mk_query_get_options(q),
                      "{ sort: { age: -1, name: -1 }, skip: 1, limit: 2 }");
    run(q, &r);
    assert_names(&r, "Beverly Crusher,Will Riker");
    mk_query_result_destroy(&r);
    /* sort('') and sort(NULL) do nothing */
    q = mk_find(m, &err, NULL);
    assert_ptr_equal(mk_query_sort(mk_query_sort(q, "  "), NULL), q);
    tu_assert_bson_eq(mk_query_get_options(q), "{}");
    mk_query_destroy(q);
    /* bad sort values */
    q = mk_find(m, &err, NULL);
    assert_null(mk_query_sort(q, "{ age: 2 }"));
    assert_str(mk_query_error(q)->kind, "TypeError");
    assert_str(mk_query_error(q)->message, "Invalid sort value: {age: 2 }");
    mk_query_destroy(q);
    q = mk_find(m, &err, NULL);
    assert_null(mk_query_sort(q, "{ age: 'up' }"));
    assert_str(mk_query_error(q)->message, "Invalid sort value: {age: up }");
    mk_query_destroy(q);
    q = mk_find(m, &err, NULL);
    assert_null(mk_query_sort(q, "name -"));
    assert_str(mk_query_error(q)->message, "Invalid field \"\" passed to sort()");
    mk_query_destroy(q);
    /* findOne honours sort and skip */
    q = mk_find_one(m, &err, NULL);
    mk_query_sort(q, "age name");
    mk_query_skip(q, 1);
    run(q, &r);
    assert_str(mk_doc_get_str(r.doc, "name"), "Will Riker");
    mk_query_result_destroy(&r);
    /* countDocuments honours skip and limit */
    q = mk_count_documents(m, &err, NULL);
    mk_query_skip(q, 1);
    mk_query_limit(q, 2);
    run(q, &r);
    assert_int_equal(r.count, 2);
    mk_query_result_destroy(&r);
}

static void test_set_options(void **state)
{
    mk_model_t *m = characters(*state);
    mk_error_t err = {0};
    mk_query_t *q =
        mk_find_one_and_update(m, &err, "{ name: 'Will Riker' }", "{ rank: 'Commander' }");
    assert_ok(mk_query_set_options(q,
                                   "{ new: true, upsert: false, runValidators: ?, sort: 'name' }",
                                   MK_ARGS(MK_BOOL(true)), &err),
              &err);
    tu_assert_bson_eq(mk_query_get_options(q),
                      "{ new: true, upsert: false, runValidators: true, sort: { name: 1 } }");
    /* Mongoose keeps lean, sanitizeFilter and timestamps out of getOptions() */
    assert_ok(mk_query_set_options(q, "{ lean: true, timestamps: false, sanitizeFilter: true }",
                                   NULL, &err),
              &err);
    tu_assert_bson_eq(mk_query_get_options(q),
                      "{ new: true, upsert: false, runValidators: true, sort: { name: 1 } }");
    mk_query_result_t r;
    mk_query_t *copy = q;
    assert_ok(mk_query_exec(copy, &r, &err), &err);
    assert_non_null(r.lean); /* lean applied */
    assert_int_equal(r.nlean, 1);
    assert_str(tu_get_str(r.lean[0], "rank"), "Commander"); /* new: true applied */
    mk_query_result_destroy(&r);
    /* unknown and unsupported options are errors naming them; nothing is applied */
    assert_fails(mk_query_set_options(q, "{ limit: 3, nope: 1 }", NULL, &err), &err,
                 "MongooseError", "setOptions: unknown option `nope`");
    assert_fails(mk_query_set_options(q, "{ populate: 'x' }", NULL, &err), &err, "MongooseError",
                 "setOptions: the option `populate` is not supported (yet)");
    tu_assert_bson_eq(mk_query_get_options(q),
                      "{ new: true, upsert: false, runValidators: true, sort: { name: 1 } }");
    assert_fails(mk_query_set_options(q, "{ returnDocument: 'later' }", NULL, &err), &err,
                 "MongooseError", "setOptions: `returnDocument` must be 'before' or 'after'");
    assert_fails(mk_query_set_options(q, "{ limit: 'ten' }", NULL, &err), &err, "TypeError",
                 "setOptions: `limit` must be a number");
    assert_fails(mk_query_set_options(q, "{ strict: 'maybe' }", NULL, &err), &err, "MongooseError",
                 "setOptions: `strict` must be true, false or 'throw'");
    assert_fails(mk_query_set_options(q, "{ context: 'doc' }", NULL, &err), &err, "MongooseError",
                 "setOptions: `context` can only be 'query' (or null)");
    assert_fails(mk_query_set_options(q, "{ a: ", NULL, &err), &err, "FailedToParse", NULL);
    mk_query_destroy(q);

    /* setOptions' projection, skip, limit, hint, comment, maxTimeMS, batchSize */
    q = mk_find(m, &err, NULL);
    assert_ok(
        mk_query_set_options(q,
                             "{ projection: 'name', sort: { age: -1 }, skip: 1, limit: 1,"
                             "  hint: { _id: 1 }, comment: 'c', maxTimeMS: 1000, batchSize: 5 }",
                             NULL, &err),
        &err);
    tu_assert_bson_eq(mk_query_get_options(q), "{ sort: { age: -1 }, skip: 1, limit: 1,"
                                               " hint: { _id: 1 }, comment: 'c', maxTimeMS: 1000,"
                                               " batchSize: 5 }");
    run(q, &r);
    assert_int_equal(r.ndocs, 1);
    assert_doc_bson(r.docs[0], "{ name: 'Will Riker' }");
    mk_query_result_destroy(&r);
    /* the helpers set the same options */
    q = mk_find(m, &err, NULL);
    mk_query_hint(q, "_id_");
    mk_query_comment(q, "hello");
    mk_query_max_time_ms(q, 500);
    mk_query_batch_size(q, 2);
    tu_assert_bson_eq(mk_query_get_options(q),
                      "{ hint: '_id_', comment: 'hello', maxTimeMS: 500, batchSize: 2 }");
    run(q, &r);
    assert_int_equal(r.ndocs, 3);
    mk_query_result_destroy(&r);
    /* a hint naming no index is the server's error */
    q = mk_find(m, &err, NULL);
    mk_query_hint(q, "nope_1");
    run_fails(q, "MongoServerError", NULL);
}

/* ---------- writes ---------- */

static void test_update_ops(void **state)
{
    mk_model_t *m = characters(*state);
    mk_error_t err = {0};
    mk_query_result_t r;
    /* a plain object is wrapped in $set; counts as the driver reports them */
    run(mk_update_one(m, &err, "{ age: { $lt: 30 } }", "{ rank: 'Commander' }"), &r);
    assert_int_equal(r.op, MK_OP_UPDATE_ONE);
    assert_true(r.acknowledged);
    assert_int_equal(r.matched_count, 1);
    assert_int_equal(r.modified_count, 1);
    assert_int_equal(r.upserted_count, 0);
    assert_false(r.has_upserted_id);
    mk_query_result_destroy(&r);
    run(mk_update_many(m, &err, "{ age: { $lt: 30 } }", "{ rank: 'Commander' }"), &r);
    assert_int_equal(r.matched_count, 2);
    assert_int_equal(r.modified_count, 1); /* one already was */
    mk_query_result_destroy(&r);
    run(mk_count_documents(m, &err, "{ rank: 'Commander' }"), &r);
    assert_int_equal(r.count, 2);
    mk_query_result_destroy(&r);
    /* updates are cast: '60' becomes 60 */
    run(mk_update_one(m, &err, "{ name: 'Jean-Luc Picard' }", "{ $inc: { age: ? } }", MK_STR("1")),
        &r);
    mk_query_result_destroy(&r);
    run(mk_find_one(m, &err, "{ name: 'Jean-Luc Picard' }"), &r);
    assert_int_equal(mk_doc_get_i64(r.doc, "age"), 60);
    mk_query_result_destroy(&r);
    /* update CastErrors do not name the model */
    run_fails(mk_update_one(m, &err, "{}", "{ age: 'not a number' }"), "CastError",
              "Cast to Number failed for value \"not a number\" (type string) at path \"age\"");
    /* filter CastErrors do */
    run_fails(mk_update_many(m, &err, "{ age: 'x' }", "{ age: 1 }"), "CastError",
              "Cast to Number failed for value \"x\" (type string) at path \"age\" for model "
              "\"Character\"");
    /* nothing left after casting (unknown paths are dropped): not sent, not acknowledged */
    run(mk_update_one(m, &err, "{}", "{ unknown: 1 }"), &r);
    assert_false(r.acknowledged);
    assert_int_equal(r.matched_count, 0);
    mk_query_result_destroy(&r);
    /* strict: 'throw' as a query option */
    mk_query_t *q = mk_update_one(m, &err, "{}", "{ unknown: 1 }");
    mk_query_set_options(q, "{ strict: 'throw' }", NULL, &err);
    run_fails(q, "StrictModeError",
              "Field `unknown` is not in schema and strict mode is set to throw.");
    /* strict: false keeps unknown paths */
    q = mk_update_one(m, &err, "{ name: 'Will Riker' }", "{ unknown: 1 }");
    mk_query_set_options(q, "{ strict: false }", NULL, &err);
    run(q, &r);
    assert_int_equal(r.modified_count, 1);
    mk_query_result_destroy(&r);
    q = mk_find_one(m, &err, "{ unknown: 1 }");
    mk_query_set_options(q, "{ strictQuery: false }", NULL, &err);
    run(q, &r);
    assert_non_null(r.doc);
    mk_query_result_destroy(&r);
}

static void test_upsert(void **state)
{
    mk_model_t *m = model_ok(*state, "User",
                             "{ name: String, role: { type: String, default: 'user' },"
                             "  tags: [String], age: Number, prefs: { theme: { type: String, "
                             "default: 'light' } } }",
                             "{ timestamps: true }");
    mk_error_t err = {0};
    mk_query_result_t r;
    mk_query_t *q = mk_update_one(m, &err, "{ name: ? }", "{ $set: { age: 30 } }", MK_STR("Ann"));
    mk_query_set_options(q, "{ upsert: true }", NULL, &err);
    run(q, &r);
    assert_true(r.acknowledged);
    assert_int_equal(r.matched_count, 0);
    assert_int_equal(r.modified_count, 0);
    assert_int_equal(r.upserted_count, 1);
    assert_true(r.has_upserted_id);
    assert_int_equal(r.upserted_id.value_type, BSON_TYPE_OID);
    bson_oid_t id;
    bson_oid_copy(&r.upserted_id.value.v_oid, &id);
    mk_query_result_destroy(&r);
    run(mk_find_by_id(m, MK_OID(&id), &err), &r);
    mk_doc_t *d = r.doc;
    assert_non_null(d);
    assert_str(mk_doc_get_str(d, "name"), "Ann");
    assert_int_equal(mk_doc_get_i64(d, "age"), 30);
    /* setDefaultsOnInsert (Mongoose 6+ default) and timestamps on the upsert */
    assert_str(mk_doc_get_str(d, "role"), "user");
    assert_str(mk_doc_get_str(d, "prefs.theme"), "light");
    assert_int_equal(mk_doc_array_len(d, "tags"), 0);
    int64_t created = mk_doc_get_date(d, "createdAt"), updated = mk_doc_get_date(d, "updatedAt");
    assert_true(created > 0);
    assert_int_equal(created, updated);
    mk_query_result_destroy(&r);

    /* the filter's equality conditions and the update's paths keep their values */
    q = mk_update_one(m, &err, "{ name: 'Bob', role: 'admin' }",
                      "{ $set: { 'prefs.theme': 'dark' } }");
    mk_query_set_options(q, "{ upsert: true }", NULL, &err);
    run(q, &r);
    mk_query_result_destroy(&r);
    run(mk_find_one(m, &err, "{ name: 'Bob' }"), &r);
    assert_str(mk_doc_get_str(r.doc, "role"), "admin");
    assert_str(mk_doc_get_str(r.doc, "prefs.theme"), "dark");
    mk_query_result_destroy(&r);
    /* setDefaultsOnInsert: false */
    q = mk_update_one(m, &err, "{ name: 'Cy' }", "{ age: 1 }");
    mk_query_set_options(q, "{ upsert: true, setDefaultsOnInsert: false }", NULL, &err);
    run(q, &r);
    mk_query_result_destroy(&r);
    run(mk_find_one(m, &err, "{ name: 'Cy' }"), &r);
    assert_false(has_field(r.doc, "role"));
    assert_false(has_field(r.doc, "tags"));
    mk_query_result_destroy(&r);

    /* an update of an existing document: updatedAt moves, createdAt stays */
    q = mk_update_one(m, &err, "{ _id: ? }", "{ age: 31 }", MK_OID(&id));
    mk_query_set_options(q, "{ upsert: true }", NULL, &err);
    run(q, &r);
    assert_int_equal(r.matched_count, 1);
    assert_int_equal(r.upserted_count, 0);
    assert_false(r.has_upserted_id);
    mk_query_result_destroy(&r);
    run(mk_find_by_id(m, MK_OID(&id), &err), &r);
    assert_int_equal(mk_doc_get_date(r.doc, "createdAt"), created);
    assert_true(mk_doc_get_date(r.doc, "updatedAt") >= updated);
    int64_t updated2 = mk_doc_get_date(r.doc, "updatedAt");
    mk_query_result_destroy(&r);
    /* timestamps: false leaves updatedAt alone */
    q = mk_update_one(m, &err, "{ _id: ? }", "{ age: 32 }", MK_OID(&id));
    mk_query_set_options(q, "{ timestamps: false }", NULL, &err);
    run(q, &r);
    mk_query_result_destroy(&r);
    run(mk_find_by_id(m, MK_OID(&id), &err), &r);
    assert_int_equal(mk_doc_get_i64(r.doc, "age"), 32);
    assert_int_equal(mk_doc_get_date(r.doc, "updatedAt"), updated2);
    mk_query_result_destroy(&r);
    /* a string id is cast to an ObjectId */
    char hex[25];
    bson_oid_to_string(&id, hex);
    run(mk_find_by_id(m, MK_STR(hex), &err), &r);
    assert_non_null(r.doc);
    mk_query_result_destroy(&r);
    run_fails(mk_find_by_id(m, MK_STR("nope"), &err), "CastError",
              "Cast to ObjectId failed for value \"nope\" (type string) at path \"_id\" for model "
              "\"User\"");
}

static void test_replace_one(void **state)
{
    mk_model_t *m = model_ok(*state, "Character",
                             "{ name: String, age: Number, rank: { type: String, enum: ['Captain', "
                             "'Commander'] }, ship: { type: String, default: 'Enterprise' } }",
                             NULL);
    create(m, "{ name: 'Will Riker', age: 29 }");
    mk_error_t err = {0};
    mk_query_result_t r;
    /* sets rank, unsets age; the replacement is cast as a document (defaults included) */
    run(mk_replace_one(m, &err, "{ age: { $lt: 30 } }",
                       "{ name: 'Will Riker', rank: 'Commander' }"),
        &r);
    assert_int_equal(r.matched_count, 1);
    assert_int_equal(r.modified_count, 1);
    mk_query_result_destroy(&r);
    run(mk_find(m, &err, "{ name: 'Will Riker' }"), &r);
    assert_int_equal(r.ndocs, 1);
    assert_non_null(mk_doc_oid(r.docs[0]));
    assert_doc_bson(r.docs[0], "{ name: 'Will Riker', rank: 'Commander', ship: 'Enterprise' }");
    mk_query_result_destroy(&r);
    /* a replacement value that cannot be cast: the document's ValidationError */
    run_fails(mk_replace_one(m, &err, "{}", "{ age: 'old' }"), "ValidationError",
              "Character validation failed: age: Cast to Number failed for value \"old\" (type "
              "string) at path \"age\"");
    /* runValidators validates the whole replacement document */
    mk_query_t *q = mk_replace_one(m, &err, "{}", "{ name: 'x', rank: 'Ensign' }");
    mk_query_set_options(q, "{ runValidators: true }", NULL, &err);
    run_fails(q, "ValidationError",
              "Character validation failed: rank: `Ensign` is not a valid enum value for path "
              "`rank`.");
    /* operators are not a replacement */
    run_fails(mk_replace_one(m, &err, "{}", "{ $set: { name: 'x' } }"), "MongoInvalidArgumentError",
              "Replacement document must not contain atomic operators");
    /* upsert: the replacement is inserted */
    q = mk_replace_one(m, &err, "{ name: 'Data' }", "{ name: 'Data', age: 30 }");
    mk_query_set_options(q, "{ upsert: true }", NULL, &err);
    run(q, &r);
    assert_int_equal(r.upserted_count, 1);
    assert_true(r.has_upserted_id);
    mk_query_result_destroy(&r);
    run(mk_count_documents(m, &err, "{ name: 'Data', age: 30, ship: 'Enterprise' }"), &r);
    assert_int_equal(r.count, 1);
    mk_query_result_destroy(&r);
}

static void test_delete_ops(void **state)
{
    mk_model_t *m = characters(*state);
    mk_error_t err = {0};
    mk_query_result_t r;
    run(mk_delete_one(m, &err, "{ age: { $lt: 30 } }"), &r);
    assert_int_equal(r.op, MK_OP_DELETE_ONE);
    assert_true(r.acknowledged);
    assert_int_equal(r.deleted_count, 1);
    mk_query_result_destroy(&r);
    create(m, "{ name: 'Will Riker', age: 29 }");
    run(mk_delete_many(m, &err, "{ age: { $lt: 30 } }"), &r);
    assert_int_equal(r.deleted_count, 2);
    mk_query_result_destroy(&r);
    run(mk_delete_many(m, &err, "{ age: { $lt: 30 } }"), &r);
    assert_int_equal(r.deleted_count, 0);
    mk_query_result_destroy(&r);
    run_fails(mk_delete_many(m, &err, "{ age: 'x' }"), "CastError", NULL);
    /* findOneAndDelete returns the deleted document */
    run(mk_find_one_and_delete(m, &err, "{ name: 'Jean-Luc Picard' }"), &r);
    assert_non_null(r.doc);
    assert_int_equal(mk_doc_get_i64(r.doc, "age"), 59);
    mk_query_result_destroy(&r);
    run(mk_estimated_document_count(m, &err), &r);
    assert_int_equal(r.count, 0);
    mk_query_result_destroy(&r);
    run(mk_find_one_and_delete(m, &err, "{ name: 'Jean-Luc Picard' }"), &r);
    assert_null(r.doc);
    mk_query_result_destroy(&r);
}

static void test_sort_on_single_writes(void **state)
{
    mk_model_t *m = characters(*state);
    mk_error_t err = {0};
    mk_query_result_t r;
    /* the book: update the character with the highest age */
    mk_query_t *q = mk_update_one(m, &err, "{}", "{ rank: 'Captain' }");
    mk_query_sort(q, "-age");
    run(q, &r);
    assert_int_equal(r.matched_count, 1);
    mk_query_result_destroy(&r);
    run(mk_find_one(m, &err, "{ rank: 'Captain' }"), &r);
    assert_str(mk_doc_get_str(r.doc, "name"), "Jean-Luc Picard");
    mk_query_result_destroy(&r);
    /* delete the first by name among those older than 25 */
    q = mk_delete_one(m, &err, "{ age: { $gt: 25 } }");
    mk_query_sort(q, "name");
    run(q, &r);
    assert_int_equal(r.deleted_count, 1);
    mk_query_result_destroy(&r);
    q = mk_find(m, &err, NULL);
    mk_query_sort(q, "name");
    run(q, &r);
    assert_names(&r, "Jean-Luc Picard,Will Riker");
    mk_query_result_destroy(&r);
    /* replaceOne takes the last by name */
    q = mk_replace_one(m, &err, "{}", "{ name: 'Worf' }");
    mk_query_sort(q, "-name");
    run(q, &r);
    mk_query_result_destroy(&r);
    q = mk_find(m, &err, NULL);
    mk_query_sort(q, "name");
    run(q, &r);
    assert_names(&r, "Jean-Luc Picard,Worf");
    mk_query_result_destroy(&r);
    /* nothing matches: nothing is written, upsert still works */
    q = mk_update_one(m, &err, "{ name: 'Q' }", "{ age: 1 }");
    mk_query_sort(q, "name");
    mk_query_set_options(q, "{ upsert: true }", NULL, &err);
    run(q, &r);
    assert_int_equal(r.upserted_count, 1);
    mk_query_result_destroy(&r);
}

static void test_find_one_and_update(void **state)
{
    mk_model_t *m =
        model_ok(*state, "Character", "{ name: String, age: Number, rank: String }", NULL);
    create(m, "{ name: 'Will Riker', age: 29 }");
    mk_error_t err = {0};
    mk_query_result_t r;
    /* the document before the update by default */
    run(mk_find_one_and_update(m, &err, "{ name: 'Will Riker' }", "{ rank: 'Commander' }"), &r);
    assert_int_equal(r.op, MK_OP_FIND_ONE_AND_UPDATE);
    assert_str(mk_doc_get_str(r.doc, "name"), "Will Riker");
    assert_null(mk_doc_get_str(r.doc, "rank"));
    assert_false(mk_doc_is_new(r.doc));
    mk_query_result_destroy(&r);
    /* after, with new: true or returnDocument: 'after'; `new` wins over returnDocument */
    mk_query_t *q =
        mk_find_one_and_update(m, &err, "{ name: 'Will Riker' }", "{ $inc: { age: 1 } }");
    mk_query_set_options(q, "{ returnDocument: 'after' }", NULL, &err);
    run(q, &r);
    assert_int_equal(mk_doc_get_i64(r.doc, "age"), 30);
    mk_query_result_destroy(&r);
    q = mk_find_one_and_update(m, &err, "{ name: 'Will Riker' }", "{ $inc: { age: 1 } }");
    mk_query_set_options(q, "{ returnDocument: 'after', new: false }", NULL, &err);
    run(q, &r);
    assert_int_equal(mk_doc_get_i64(r.doc, "age"), 30);
    mk_query_result_destroy(&r);
    /* the string '30' is cast to a number */
    q = mk_find_one_and_update(m, &err, "{ name: 'Will Riker' }", "{ age: '30' }");
    mk_query_set_options(q, "{ new: true }", NULL, &err);
    run(q, &r);
    bson_value_t v;
    assert_true(mk_doc_get(r.doc, "age", &v));
    assert_int_equal(v.value_type, BSON_TYPE_INT32);
    assert_int_equal(v.value.v_int32, 30);
    mk_query_result_destroy(&r);
    /* nothing matched: NULL; upsert inserts, and returns NULL unless new */
    run(mk_find_one_and_update(m, &err, "{ name: 'Data' }", "{ age: 1 }"), &r);
    assert_null(r.doc);
    mk_query_result_destroy(&r);
    q = mk_find_one_and_update(m, &err, "{ name: 'Data' }", "{ age: 1 }");
    mk_query_set_options(q, "{ upsert: true }", NULL, &err);
    run(q, &r);
    assert_null(r.doc);
    mk_query_result_destroy(&r);
    q = mk_find_one_and_update(m, &err, "{ name: 'Lore' }", "{ age: 2 }");
    mk_query_set_options(q, "{ upsert: true, new: true }", NULL, &err);
    run(q, &r);
    assert_str(mk_doc_get_str(r.doc, "name"), "Lore");
    assert_int_equal(mk_doc_get_i64(r.doc, "age"), 2);
    mk_query_result_destroy(&r);
    /* an update with nothing left after casting is a findOne */
    run(mk_find_one_and_update(m, &err, "{ name: 'Lore' }", "{ nope: 1 }"), &r);
    assert_str(mk_doc_get_str(r.doc, "name"), "Lore");
    mk_query_result_destroy(&r);
    /* with upsert it still upserts ({ $set: {} }) */
    q = mk_find_one_and_update(m, &err, "{ name: 'Tasha' }", "{ nope: 1 }");
    mk_query_set_options(q, "{ upsert: true, new: true }", NULL, &err);
    run(q, &r);
    assert_str(mk_doc_get_str(r.doc, "name"), "Tasha");
    mk_query_result_destroy(&r);
    /* sort picks which one */
    q = mk_find_one_and_update(m, &err, "{}", "{ rank: 'Ensign' }");
    mk_query_sort(q, "-name");
    mk_query_set_options(q, "{ new: true }", NULL, &err);
    run(q, &r);
    assert_str(mk_doc_get_str(r.doc, "name"), "Will Riker");
    mk_query_result_destroy(&r);
    /* findOneAndReplace, before and after */
    run(mk_find_one_and_replace(m, &err, "{ name: 'Lore' }", "{ name: 'Lore', rank: 'Android' }"),
        &r);
    assert_int_equal(r.op, MK_OP_FIND_ONE_AND_REPLACE);
    assert_int_equal(mk_doc_get_i64(r.doc, "age"), 2);
    mk_query_result_destroy(&r);
    q = mk_find_one_and_replace(m, &err, "{ name: 'Lore' }", "{ name: 'Lore' }");
    mk_query_set_options(q, "{ new: true }", NULL, &err);
    run(q, &r);
    assert_null(mk_doc_get_str(r.doc, "rank"));
    assert_false(has_field(r.doc, "age"));
    mk_query_result_destroy(&r);
    /* findByIdAndUpdate / findByIdAndDelete */
    run(mk_find_one(m, &err, "{ name: 'Lore' }"), &r);
    bson_oid_t id;
    bson_oid_copy(mk_doc_oid(r.doc), &id);
    mk_query_result_destroy(&r);
    q = mk_find_by_id_and_update(m, &err, MK_OID(&id), "{ $set: { age: ? } }", MK_I32(7));
    assert_int_equal(mk_query_op(q), MK_OP_FIND_ONE_AND_UPDATE);
    mk_query_set_options(q, "{ new: true }", NULL, &err);
    run(q, &r);
    assert_int_equal(mk_doc_get_i64(r.doc, "age"), 7);
    mk_query_result_destroy(&r);
    q = mk_find_by_id_and_delete(m, MK_OID(&id), &err);
    assert_int_equal(mk_query_op(q), MK_OP_FIND_ONE_AND_DELETE);
    run(q, &r);
    assert_str(mk_doc_get_str(r.doc, "name"), "Lore");
    mk_query_result_destroy(&r);
    run(mk_find_by_id(m, MK_OID(&id), &err), &r);
    assert_null(r.doc);
    mk_query_result_destroy(&r);
    /* findById(null) is findOne({ _id: null }) */
    q = mk_find_by_id(m, MK_NULL, &err);
    tu_assert_bson_eq(mk_query_get_filter(q), "{ _id: null }");
    run(q, &r);
    assert_null(r.doc);
    mk_query_result_destroy(&r);
}

/* A validator that reads the query's cast update, as the book's ageRankValidator does. */
static mk_query_t *seen_query;
static int age_rank(const mk_fn_ctx_t *ctx, const bson_value_t *v, void *ud, mk_error_t *err)
{
    seen_query = ctx->query;
    if (!ctx->query && !ctx->doc) return 1; /* `this` is null: nothing to compare with */
    if (v->value_type != BSON_TYPE_UTF8 || strcmp(v->value.v_utf8.str, "Captain") != 0) return 1;
    int64_t age = -1;
    if (ctx->query) {
        const bson_t *u = mk_query_get_update(ctx->query);
        bson_iter_t it;
        if (u && bson_iter_init(&it, u) && bson_iter_find_descendant(&it, "$set.age", &it))
            age = bson_iter_as_int64(&it);
    } else if (ctx->doc) {
        age = mk_doc_get_i64(ctx->doc, "age");
    }
    return age >= 30 ? 1 : mk_error_set(err, 0, "Error", "Captains must be at least 30");
}

static void test_run_validators(void **state)
{
    mk_schema_t *s =
        schema_ok("{ name: { type: String, required: true }, age: { type: Number, min: 0 },"
                  "  rank: { type: String, enum: ['Captain', 'Commander'] } }",
                  NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_path_validator(s, "rank", age_rank, NULL, NULL, NULL, &err), &err);
    mk_model_t *m = model_from(*state, "Character", s);
    create(m, "{ name: 'Will Riker', rank: 'Commander', age: 29 }");
    mk_query_result_t r;
    /* off by default */
    mk_query_t *q = mk_find_one_and_update(m, &err, "{}", "{ rank: 'Lollipop' }");
    mk_query_set_options(q, "{ new: true }", NULL, &err);
    run(q, &r);
    assert_str(mk_doc_get_str(r.doc, "rank"), "Lollipop");
    mk_query_result_destroy(&r);
    /* on: the update's paths only; no model name in the message */
    q = mk_find_one_and_update(m, &err, "{}", "{ rank: 'Lollipop' }");
    mk_query_set_options(q, "{ runValidators: true }", NULL, &err);
    run_fails(q, "ValidationError",
              "Validation failed: rank: `Lollipop` is not a valid enum value for path `rank`.");
    q = mk_update_many(m, &err, "{}", "{ $set: { age: -1 }, $unset: { name: 1 } }");
    mk_query_set_options(q, "{ runValidators: true }", NULL, &err);
    run_fails(q, "ValidationError",
              "Validation failed: age: Path `age` (-1) is less than minimum allowed value (0)., "
              "name: Path `name` is required.");
    /* the filter is not validated, even with runValidators */
    q = mk_find_one(m, &err, "{ rank: 'Lollipop' }");
    mk_query_set_options(q, "{ runValidators: true }", NULL, &err);
    run(q, &r);
    assert_non_null(r.doc);
    mk_query_result_destroy(&r);
    /* context: 'query' gives the validator the query (and its cast update) */
    seen_query = (mk_query_t *)1;
    q = mk_find_one_and_update(m, &err, "{}", "{ age: 29, rank: 'Captain' }");
    mk_query_set_options(q, "{ runValidators: true, context: 'query' }", NULL, &err);
    mk_query_t *keep = q;
    mk_query_result_t r2;
    assert_fails(mk_query_exec(q, &r2, &err), &err, "ValidationError",
                 "Validation failed: rank: Captains must be at least 30");
    assert_ptr_equal(seen_query, keep);
    /* after the execution getUpdate() shows the update as given again */
    tu_assert_bson_eq(mk_query_get_update(q), "{ age: 29, rank: 'Captain' }");
    mk_query_destroy(q);
    /* without context, `this` is null */
    seen_query = (mk_query_t *)1;
    q = mk_update_one(m, &err, "{}", "{ age: 31, rank: 'Captain' }");
    mk_query_set_options(q, "{ runValidators: true }", NULL, &err);
    run(q, &r);
    assert_null(seen_query);
    mk_query_result_destroy(&r);
    q = mk_update_one(m, &err, "{}", "{ age: 31, rank: 'Captain' }");
    mk_query_set_options(q, "{ runValidators: true, context: 'query' }", NULL, &err);
    run(q, &r);
    assert_int_equal(r.modified_count, 0); /* the values were already those */
    assert_int_equal(r.matched_count, 1);
    mk_query_result_destroy(&r);
}

/* ---------- orFail ---------- */

static void test_or_fail(void **state)
{
    mk_model_t *m = model_ok(*state, "User", "{ name: String, age: Number }", NULL);
    create(m, "{ name: 'a', age: 1 }");
    mk_error_t err = {0};
    mk_query_result_t r;
    bson_oid_t id;
    bson_oid_init_from_string(&id, "5dd57639649ce0bd87750caa");
    char expect[256];
    snprintf(expect, sizeof expect,
             "No document found for query \"{ _id: new ObjectId('5dd57639649ce0bd87750caa') }\" on "
             "model \"User\"");
    /* the filter shown is the cast one: the string became an ObjectId */
    run_fails(mk_query_or_fail(mk_find_by_id(m, MK_STR("5dd57639649ce0bd87750caa"), &err)),
              "DocumentNotFoundError", expect);
    run_fails(mk_query_or_fail(mk_find(m, &err, "{ name: 'b' }")), "DocumentNotFoundError",
              "No document found for query \"{ name: 'b' }\" on model \"User\"");
    run_fails(mk_query_or_fail(mk_update_one(m, &err, "{ age: { $gt: 5 } }", "{ age: 2 }")),
              "DocumentNotFoundError",
              "No document found for query \"{ age: { '$gt': 5 } }\" on model \"User\"");
    run_fails(mk_query_or_fail(mk_update_many(m, &err, "{ name: 'z' }", "{ age: 2 }")),
              "DocumentNotFoundError", NULL);
    run_fails(mk_query_or_fail(mk_replace_one(m, &err, "{ name: 'z' }", "{ age: 2 }")),
              "DocumentNotFoundError", NULL);
    run_fails(mk_query_or_fail(mk_delete_one(m, &err, "{ name: 'z' }")), "DocumentNotFoundError",
              NULL);
    run_fails(mk_query_or_fail(mk_delete_many(m, &err, "{ name: 'z' }")), "DocumentNotFoundError",
              NULL);
    run_fails(mk_query_or_fail(mk_find_one_and_update(m, &err, "{ name: 'z' }", "{ age: 2 }")),
              "DocumentNotFoundError", NULL);
    run_fails(mk_query_or_fail(mk_find_one_and_replace(m, &err, "{ name: 'z' }", "{ age: 2 }")),
              "DocumentNotFoundError", NULL);
    run_fails(mk_query_or_fail(mk_find_one_and_delete(m, &err, "{ name: 'z' }")),
              "DocumentNotFoundError", NULL);
    /* when something matched, orFail changes nothing */
    run(mk_query_or_fail(mk_find_one(m, &err, "{ name: 'a' }")), &r);
    assert_non_null(r.doc);
    mk_query_result_destroy(&r);
    run(mk_query_or_fail(mk_update_many(m, &err, "{ name: 'a' }", "{ age: 1 }")), &r);
    assert_int_equal(r.matched_count, 1);
    assert_int_equal(r.modified_count, 0);
    mk_query_result_destroy(&r);
    /* orFail's error goes through error-handling middleware like any other (see below) and
     * leaves no result behind */
    mk_query_t *q = mk_query_or_fail(mk_delete_one(m, &err, "{ name: 'a' }"));
    run(q, &r);
    assert_int_equal(r.deleted_count, 1);
    mk_query_result_destroy(&r);
}

/* ---------- projections ---------- */

static void test_projections(void **state)
{
    mk_model_t *m =
        model_ok(*state, "User",
                 "{ name: String, email: { type: String, select: false },"
                 "  age: Number, rank: String, nick: { type: String, select: true },"
                 "  profile: { bio: String, secret: { type: String, select: false } } }",
                 NULL);
    create(m, "{ name: 'John', email: 'john@gmail.com', age: 30, rank: 'x', nick: 'J',"
              "  profile: { bio: 'b', secret: 's' } }");
    mk_error_t err = {0};
    mk_query_result_t r;
    static const struct {
        const char *select;
        const char *expect; /* the document without _id */
    } cases[] = {
        /* schema-level select: false excludes by default */
        {NULL, "{ name: 'John', age: 30, rank: 'x', nick: 'J', profile: { bio: 'b' }, __v: 0 }"},
        {"name age", "{ name: 'John', age: 30, nick: 'J' }"},
        {"{ name: 1, age: true }", "{ name: 'John', age: 30, nick: 'J' }"},
        {"-rank", "{ name: 'John', age: 30, nick: 'J', profile: { bio: 'b' }, __v: 0 }"},
        {"{ rank: 0, age: false }", "{ name: 'John', nick: 'J', profile: { bio: 'b' }, __v: 0 }"},
        /* +path includes a select: false path without excluding anything else */
        {"+email", "{ name: 'John', email: 'john@gmail.com', age: 30, rank: 'x', nick: 'J',"
                   "  profile: { bio: 'b' }, __v: 0 }"},
        {"name +email", "{ name: 'John', email: 'john@gmail.com', nick: 'J' }"},
        {"+profile.secret -age",
         "{ name: 'John', rank: 'x', nick: 'J', profile: { bio: 'b', secret: 's' }, __v: 0 }"},
        /* selecting a select: false path by name includes only it (and select: true paths) */
        {"email", "{ email: 'john@gmail.com', nick: 'J' }"},
        /* -path of a select: true path takes it out of an inclusion (Mongoose 7+) */
        {"name -nick", "{ name: 'John' }"},
        /* a selected parent includes its select: false children (Mongoose gh-6804) */
        {"profile", "{ nick: 'J', profile: { bio: 'b', secret: 's' } }"},
        /* an excluded parent covers its select: false children */
        {"-profile", "{ name: 'John', age: 30, rank: 'x', nick: 'J', __v: 0 }"},
        {"name -_id", "{ name: 'John', nick: 'J' }"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mk_query_t *q = mk_find_one(m, &err, NULL);
        if (cases[i].select) assert_non_null(mk_query_select(q, cases[i].select));
        run(q, &r);
        assert_non_null(r.doc);
        assert_doc_bson(r.doc, cases[i].expect);
        mk_query_result_destroy(&r);
    }
    /* -_id really drops it */
    mk_query_t *q = mk_find_one(m, &err, NULL);
    mk_query_select(q, "name -_id");
    run(q, &r);
    assert_null(mk_doc_oid(r.doc));
    mk_query_result_destroy(&r);
    /* a later select() adds to or takes from the projection (Mongoose 7+) */
    q = mk_find_one(m, &err, NULL);
    mk_query_select(q, "{ name: 1, age: 1 }");
    mk_query_select(q, "{ age: 0 }");
    run(q, &r);
    assert_doc_bson(r.doc, "{ name: 'John', nick: 'J' }");
    mk_query_result_destroy(&r);
    q = mk_find_one(m, &err, NULL);
    mk_query_select(q, "{ age: 0, rank: 0 }");
    mk_query_select(q, "{ rank: 1 }");
    run(q, &r);
    assert_doc_bson(r.doc, "{ name: 'John', rank: 'x', nick: 'J', profile: { bio: 'b' }, __v: 0 }");
    mk_query_result_destroy(&r);
    /* as in Mongoose, a "-rank" word is kept under its own key, which { rank: 1 } does not name */
    q = mk_find_one(m, &err, NULL);
    mk_query_select(q, "-age -rank");
    mk_query_select(q, "{ rank: 1 }");
    run(q, &r);
    assert_doc_bson(r.doc, "{ name: 'John', nick: 'J', profile: { bio: 'b' }, __v: 0 }");
    mk_query_result_destroy(&r);
    /* the mixed projection is the server's error (MongoDB 4.4+ wording) */
    q = mk_find_one(m, &err, NULL);
    mk_query_select(q, "{ name: 1, age: 0 }");
    run_fails(q, "MongoServerError", "Cannot do exclusion on field age in inclusion projection");
    q = mk_find_one(m, &err, NULL);
    mk_query_select(q, "name -age");
    run_fails(q, "MongoServerError", "Cannot do exclusion on field age in inclusion projection");
    /* find, lean and findOneAndUpdate results are projected too */
    q = mk_find(m, &err, NULL);
    mk_query_select(q, "name");
    mk_query_lean(q, true);
    run(q, &r);
    assert_int_equal(r.nlean, 1);
    bson_t noid = BSON_INITIALIZER;
    bson_copy_to_excluding_noinit(r.lean[0], &noid, "_id", NULL);
    tu_assert_bson_eq(&noid, "{ name: 'John', nick: 'J' }");
    bson_destroy(&noid);
    mk_query_result_destroy(&r);
    q = mk_find_one_and_update(m, &err, "{}", "{ age: 44, rank: 'Captain' }");
    mk_query_set_options(q, "{ new: true }", NULL, &err);
    mk_query_select(q, "{ name: 1, age: 1 }");
    run(q, &r);
    assert_doc_bson(r.doc, "{ name: 'John', age: 44, nick: 'J' }");
    mk_query_result_destroy(&r);
    q = mk_find_one_and_update(m, &err, "{}", "{ age: 45 }");
    run(q, &r); /* select: false applies to findOneAndUpdate results */
    assert_false(has_field(r.doc, "email"));
    mk_query_result_destroy(&r);
    /* projections have no effect on updateOne's result */
    q = mk_update_one(m, &err, "{}", "{ age: 46 }");
    mk_query_select(q, "{ nModified: 0 }");
    run(q, &r);
    assert_int_equal(r.modified_count, 1);
    mk_query_result_destroy(&r);
    /* select(null) does nothing; a projection option replaces the selection */
    q = mk_find_one(m, &err, NULL);
    assert_ptr_equal(mk_query_select(q, NULL), q);
    mk_query_select(q, "name");
    assert_ok(mk_query_set_options(q, "{ projection: { age: 1 } }", NULL, &err), &err);
    run(q, &r);
    assert_doc_bson(r.doc, "{ age: 46, nick: 'J' }");
    mk_query_result_destroy(&r);
    q = mk_find_one(m, &err, NULL);
    assert_null(mk_query_select(q, "{ name: "));
    assert_str(mk_query_error(q)->kind, "FailedToParse");
    mk_query_destroy(q);
}

/* ---------- lean ---------- */

static void test_lean(void **state)
{
    mk_model_t *m = characters(*state);
    mk_error_t err = {0};
    mk_query_result_t r;
    mk_query_t *q = mk_find(m, &err, "{}");
    mk_query_sort(q, "age name");
    mk_query_lean(q, true);
    run(q, &r);
    assert_int_equal(r.ndocs, 0);
    assert_null(r.docs);
    assert_int_equal(r.nlean, 3);
    assert_names(&r, "Deanna Troi,Will Riker,Jean-Luc Picard");
    assert_int_equal(tu_get_int(r.lean[2], "age"), 59);
    assert_int_equal(tu_get_int(r.lean[2], "__v"), 0);
    mk_query_result_destroy(&r);
    q = mk_find_one(m, &err, "{ name: 'Will Riker' }");
    mk_query_lean(q, true);
    run(q, &r);
    assert_null(r.doc);
    assert_int_equal(r.nlean, 1);
    assert_str(tu_get_str(r.lean[0], "name"), "Will Riker");
    mk_query_result_destroy(&r);
    q = mk_find_one(m, &err, "{ name: 'nobody' }");
    mk_query_lean(q, true);
    run(q, &r);
    assert_int_equal(r.nlean, 0);
    mk_query_result_destroy(&r);
    /* lean(false) turns it off again */
    q = mk_find_one(m, &err, "{ name: 'Will Riker' }");
    mk_query_lean(mk_query_lean(q, true), false);
    run(q, &r);
    assert_non_null(r.doc);
    mk_query_result_destroy(&r);
    /* findOneAndUpdate lean */
    q = mk_find_one_and_delete(m, &err, "{ name: 'Will Riker' }");
    mk_query_lean(q, true);
    run(q, &r);
    assert_int_equal(r.nlean, 1);
    assert_int_equal(tu_get_int(r.lean[0], "age"), 29);
    mk_query_result_destroy(&r);
}

/* ---------- cursors ---------- */

static void test_cursor(void **state)
{
    mk_model_t *m = model_ok(*state, "Item", "{ name: String, n: Number }", NULL);
    for (int i = 1; i <= 5; i++) {
        char json[64];
        snprintf(json, sizeof json, "{ name: 'item%d', n: '%d' }", i, i);
        create(m, json);
    }
    mk_error_t err = {0};
    /* batchSize 2 over 5 documents: three batches, every document once, in order */
    mk_query_t *q = mk_find(m, &err, "{ n: { $gte: ? } }", MK_STR("1"));
    mk_query_sort(q, "n");
    mk_query_batch_size(q, 2);
    mk_cursor_t *c = mk_query_cursor(q, &err);
    assert_non_null(c);
    int seen = 0;
    mk_doc_t *kept = NULL;
    for (mk_doc_t *d; (d = mk_cursor_next(c, &err));) {
        seen++;
        assert_int_equal(mk_doc_get_i64(d, "n"), seen);
        assert_false(mk_doc_is_new(d));
        if (seen == 3) {
            kept = mk_cursor_take(c);
            assert_ptr_equal(kept, d);
            assert_null(mk_cursor_take(c));
        }
    }
    assert_str(err.kind, ""); /* the end, not an error */
    assert_int_equal(seen, 5);
    assert_null(mk_cursor_next(c, &err)); /* stays at the end */
    mk_cursor_destroy(c);
    assert_str(mk_doc_get_str(kept, "name"), "item3");
    mk_doc_destroy(kept);
    mk_query_destroy(q);

    /* streaming: documents inserted while the cursor is open show up in later batches,
     * which a cursor that had read everything at once could not see */
    q = mk_find(m, &err, NULL);
    mk_query_batch_size(q, 2);
    c = mk_query_cursor(q, &err);
    assert_non_null(mk_cursor_next(c, &err));
    create(m, "{ name: 'item6', n: 6 }");
    seen = 1;
    while (mk_cursor_next(c, &err)) seen++;
    assert_int_equal(seen, 6);
    mk_cursor_destroy(c);
    mk_query_destroy(q);

    /* lean: raw BSON, borrowed until the next call */
    q = mk_find(m, &err, "{ n: { $gt: 4 } }");
    mk_query_sort(q, "-n");
    mk_query_lean(q, true);
    mk_query_select(q, "n -_id");
    c = mk_query_cursor(q, &err);
    const bson_t *b = mk_cursor_next_bson(c, &err);
    assert_non_null(b);
    tu_assert_bson_eq(b, "{ n: 6 }");
    b = mk_cursor_next_bson(c, &err);
    tu_assert_bson_eq(b, "{ n: 5 }");
    assert_null(mk_cursor_next_bson(c, &err));
    assert_str(err.kind, "");
    mk_cursor_destroy(c);
    mk_query_destroy(q);
    /* an empty result */
    q = mk_find(m, &err, "{ n: 100 }");
    c = mk_query_cursor(q, &err);
    assert_null(mk_cursor_next(c, &err));
    assert_str(err.kind, "");
    mk_cursor_destroy(c);
    mk_query_destroy(q);
    /* errors: casting at open, ops other than find */
    q = mk_find(m, &err, "{ n: 'x' }");
    assert_null(mk_query_cursor(q, &err));
    assert_str(err.kind, "CastError");
    mk_query_destroy(q);
    q = mk_find_one(m, &err, NULL);
    assert_null(mk_query_cursor(q, &err));
    assert_str(err.message, "cursor() is only for find queries, not findOne");
    mk_query_destroy(q);
    mk_cursor_destroy(NULL);
    assert_null(mk_cursor_next(NULL, &err));
}

/* ---------- explain ---------- */

static void test_explain(void **state)
{
    mk_model_t *m =
        model_ok(*state, "User",
                 "{ email: { type: String, unique: true, lowercase: true }, age: Number }", NULL);
    create(m, "{ email: 'a@x.io', age: 1 }");
    create(m, "{ email: 'b@x.io', age: 2 }");
    mk_error_t err = {0};
    bson_t reply = BSON_INITIALIZER;
    /* the filter is cast (lowercase setter) and the index is used */
    mk_query_t *q = mk_find_one(m, &err, "{ email: 'B@X.IO' }");
    assert_ok(mk_query_explain(q, "executionStats", &reply, &err), &err);
    assert_str(tu_get_str(&reply, "queryPlanner.winningPlan.stage"), "LIMIT");
    assert_str(tu_get_str(&reply, "queryPlanner.winningPlan.inputStage.stage"), "FETCH");
    assert_str(tu_get_str(&reply, "queryPlanner.winningPlan.inputStage.inputStage.stage"),
               "IXSCAN");
    assert_int_equal(tu_get_int(&reply, "executionStats.nReturned"), 1);
    bson_destroy(&reply);
    mk_query_destroy(q);
    static const struct {
        mk_query_op_t op;
        const char *update;
    } ops[] = {{MK_OP_FIND, NULL},
               {MK_OP_COUNT_DOCUMENTS, NULL},
               {MK_OP_ESTIMATED_DOCUMENT_COUNT, NULL},
               {MK_OP_UPDATE_ONE, "{ age: 3 }"},
               {MK_OP_UPDATE_MANY, "{ age: 3 }"},
               {MK_OP_REPLACE_ONE, "{ age: 3 }"},
               {MK_OP_DELETE_ONE, NULL},
               {MK_OP_DELETE_MANY, NULL},
               {MK_OP_FIND_ONE_AND_UPDATE, "{ age: 3 }"},
               {MK_OP_FIND_ONE_AND_REPLACE, "{ age: 3 }"},
               {MK_OP_FIND_ONE_AND_DELETE, NULL}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        q = mk_query_new(m, ops[i].op, "{ age: { $gte: 1 } }", ops[i].update, NULL, &err);
        bool ok;
        bson_init(&reply);
        if (mk_query_explain(q, NULL, &reply, &err) != MK_OK)
            fail_msg("explain %s: [%s] %s", mk_query_op_name(ops[i].op), err.kind, err.message);
        bson_iter_t it;
        ok = bson_iter_init_find(&it, &reply, "queryPlanner");
        assert_true(ok);
        bson_destroy(&reply);
        mk_query_destroy(q);
    }
    /* nothing was written by explaining writes */
    mk_query_result_t r;
    run(mk_count_documents(m, &err, "{ age: 3 }"), &r);
    assert_int_equal(r.count, 0);
    mk_query_result_destroy(&r);
    q = mk_distinct(m, &err, "age", NULL);
    bson_init(&reply);
    assert_ok(mk_query_explain(q, "queryPlanner", &reply, &err), &err);
    bson_destroy(&reply);
    mk_query_destroy(q);
    /* casting errors and bad verbosity */
    q = mk_find(m, &err, "{ age: 'x' }");
    bson_init(&reply);
    assert_fails(mk_query_explain(q, NULL, &reply, &err), &err, "CastError", NULL);
    bson_destroy(&reply);
    mk_query_destroy(q);
}

/* ---------- sessions ---------- */

static void test_sessions(void **state)
{
    mk_conn_t *conn = *state;
    mk_model_t *m = characters(conn);
    mk_error_t err = {0};
    mk_client_session_t *s = mk_conn_start_session(conn, &err);
    assert_non_null(s);
    mk_query_result_t r;
    mk_query_t *q = mk_find(m, &err, "{}");
    assert_null(mk_query_get_session(q));
    mk_query_session(q, s);
    assert_ptr_equal(mk_query_get_session(q), s);
    run(q, &r);
    assert_int_equal(r.ndocs, 3);
    for (size_t i = 0; i < r.ndocs; i++) assert_ptr_equal(mk_doc_session(r.docs[i]), s);
    mk_query_result_destroy(&r);
    /* without a session documents have none */
    run(mk_find_one(m, &err, "{}"), &r);
    assert_null(mk_doc_session(r.doc));
    mk_query_result_destroy(&r);

    /* inside a transaction: the session sees its writes, others do not until commit */
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    q = mk_delete_many(m, &err, "{ age: { $lt: 30 } }");
    mk_query_session(q, s);
    run(q, &r);
    assert_int_equal(r.deleted_count, 2);
    mk_query_result_destroy(&r);
    q = mk_count_documents(m, &err, NULL);
    mk_query_session(q, s);
    run(q, &r);
    assert_int_equal(r.count, 1);
    mk_query_result_destroy(&r);
    run(mk_count_documents(m, &err, NULL), &r);
    assert_int_equal(r.count, 3);
    mk_query_result_destroy(&r);
    q = mk_find_one_and_update(m, &err, "{ name: 'Jean-Luc Picard' }", "{ rank: 'Captain' }");
    mk_query_session(q, s);
    mk_query_set_options(q, "{ new: true }", NULL, &err);
    run(q, &r);
    assert_ptr_equal(mk_doc_session(r.doc), s);
    mk_query_result_destroy(&r);
    assert_ok(mk_client_session_abort_transaction(s, &err), &err);
    run(mk_count_documents(m, &err, "{ rank: { $exists: true } }"), &r);
    assert_int_equal(r.count, 0);
    mk_query_result_destroy(&r);
    run(mk_count_documents(m, &err, NULL), &r);
    assert_int_equal(r.count, 3);
    mk_query_result_destroy(&r);
    /* a cursor in a session */
    q = mk_find(m, &err, NULL);
    mk_query_session(q, s);
    mk_cursor_t *c = mk_query_cursor(q, &err);
    mk_doc_t *d = mk_cursor_next(c, &err);
    assert_ptr_equal(mk_doc_session(d), s);
    mk_cursor_destroy(c);
    mk_query_destroy(q);
    mk_client_session_end(s);
}

/* ---------- middleware ---------- */

static int log_hook(mk_hook_t *h, void *ud, mk_error_t *err)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s:%s", (const char *)ud, h->op);
    log_add(buf);
    assert_non_null(h->query);
    assert_null(h->doc);
    assert_non_null(h->model);
    if (strncmp((const char *)ud, "post", 4) == 0) {
        const mk_query_result_t *r = h->result;
        assert_non_null(r);
        assert_int_equal(r->op, mk_query_op(h->query));
    } else {
        assert_null(h->result);
    }
    return MK_OK;
}

static void test_middleware_all_ops(void **state)
{
    static const char *const ops =
        "countDocuments deleteMany deleteOne distinct estimatedDocumentCount find findOne "
        "findOneAndDelete findOneAndReplace findOneAndUpdate replaceOne updateMany updateOne";
    mk_schema_t *s = schema_ok("{ name: String, age: Number }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(s, ops, log_hook, "pre", &err), &err);
    assert_ok(mk_schema_post(s, ops, log_hook, "post", &err), &err);
    mk_model_t *m = model_from(*state, "Character", s);
    create(m, "{ name: 'a', age: 1 }");
    for (int op = MK_OP_FIND; op <= MK_OP_FIND_ONE_AND_DELETE; op++) {
        hook_log[0] = '\0';
        mk_query_t *q = op == MK_OP_DISTINCT
                            ? mk_distinct(m, &err, "name", NULL)
                            : mk_query_new(m, (mk_query_op_t)op, "{}", "{ name: 'a' }", NULL, &err);
        /* building runs nothing */
        assert_str(hook_log, "");
        mk_query_result_t r;
        run(q, &r);
        mk_query_result_destroy(&r);
        char expect[128];
        const char *name = mk_query_op_name((mk_query_op_t)op);
        snprintf(expect, sizeof expect, "pre:%s,post:%s", name, name);
        assert_str(hook_log, expect);
    }
    /* findById runs findOne middleware */
    hook_log[0] = '\0';
    mk_query_result_t r;
    run(mk_find_by_id(m, MK_NULL, &err), &r);
    mk_query_result_destroy(&r);
    assert_str(hook_log, "pre:findOne,post:findOne");
    /* the op in force at execution decides: find(...).updateOne(...) runs updateOne hooks */
    create(m, "{ name: 'a', age: 1 }");
    hook_log[0] = '\0';
    mk_query_t *q = mk_find(m, &err, "{ name: 'a' }");
    assert_ok(mk_query_set_op(q, MK_OP_UPDATE_ONE, &err, "{ $set: { age: ? } }", MK_I32(70)), &err);
    assert_int_equal(mk_query_op(q), MK_OP_UPDATE_ONE);
    tu_assert_bson_eq(mk_query_get_update(q), "{ $set: { age: 70 } }");
    run(q, &r);
    assert_int_equal(r.op, MK_OP_UPDATE_ONE);
    assert_int_equal(r.modified_count, 1);
    mk_query_result_destroy(&r);
    assert_str(hook_log, "pre:updateOne,post:updateOne");
    /* a failed execution runs no post hooks */
    hook_log[0] = '\0';
    run_fails(mk_find(m, &err, "{ age: 'x' }"), "CastError", NULL);
    assert_str(hook_log, "pre:find");
}

static int doc_only_hook(mk_hook_t *h, void *ud, mk_error_t *err)
{
    log_add("document-hook");
    return MK_OK;
}

static int query_also_hook(mk_hook_t *h, void *ud, mk_error_t *err)
{
    log_add(h->query ? "query-hook" : "doc-hook");
    return MK_OK;
}

static void test_middleware_document_vs_query(void **state)
{
    mk_schema_t *s = schema_ok("{ name: String }", NULL);
    mk_error_t err = {0};
    /* { document: true, query: false }: never as query middleware */
    assert_ok(
        mk_schema_pre_ex(s, "updateOne deleteOne", MK_HOOK_DOCUMENT, doc_only_hook, NULL, &err),
        &err);
    /* { document: true, query: true } and the default (query) */
    assert_ok(mk_schema_pre_ex(s, "updateOne", MK_HOOK_DOCUMENT | MK_HOOK_QUERY, query_also_hook,
                               NULL, &err),
              &err);
    assert_ok(mk_schema_pre(s, "deleteOne", query_also_hook, NULL, &err), &err);
    mk_model_t *m = model_from(*state, "Character", s);
    create(m, "{ name: 'a' }");
    mk_query_result_t r;
    hook_log[0] = '\0';
    run(mk_update_one(m, &err, "{}", "{ name: 'b' }"), &r);
    mk_query_result_destroy(&r);
    assert_str(hook_log, "query-hook");
    hook_log[0] = '\0';
    run(mk_delete_one(m, &err, "{}"), &r);
    mk_query_result_destroy(&r);
    assert_str(hook_log, "query-hook");
}

static int tag_hook(mk_hook_t *h, void *ud, mk_error_t *err)
{
    log_add((const char *)ud);
    return MK_OK;
}

static void test_middleware_order_and_cursor(void **state)
{
    mk_schema_t *s = schema_ok("{ name: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_post(s, "find", tag_hook, "post1", &err), &err);
    assert_ok(mk_schema_pre(s, "find", tag_hook, "pre1", &err), &err);
    assert_ok(mk_schema_pre(s, "find", tag_hook, "pre2", &err), &err);
    assert_ok(mk_schema_post(s, "find", tag_hook, "post2", &err), &err);
    mk_model_t *m = model_from(*state, "Character", s);
    create(m, "{ name: 'a' }");
    mk_query_result_t r;
    hook_log[0] = '\0';
    run(mk_find(m, &err, NULL), &r);
    mk_query_result_destroy(&r);
    /* pre hooks in registration order, then post hooks in registration order */
    assert_str(hook_log, "pre1,pre2,post1,post2");
    /* a cursor runs the pre('find') hooks when opened, and no post hooks */
    hook_log[0] = '\0';
    mk_query_t *q = mk_find(m, &err, NULL);
    mk_cursor_t *c = mk_query_cursor(q, &err);
    assert_non_null(c);
    assert_str(hook_log, "pre1,pre2");
    while (mk_cursor_next(c, &err)) {}
    mk_cursor_destroy(c);
    mk_query_destroy(q);
    assert_str(hook_log, "pre1,pre2");
}

/* pre hooks that change the query: a soft-delete filter, an update, options */
static int soft_delete(mk_hook_t *h, void *ud, mk_error_t *err)
{
    mk_query_t *q = h->query;
    tu_assert_bson_eq(mk_query_get_filter(q), "{ age: { $lte: '30' } }"); /* before casting */
    return mk_query_where_json(q, "{ isDeleted: { $ne: true } }", NULL) ? MK_OK : MK_ERR;
}

static int add_updated_by(mk_hook_t *h, void *ud, mk_error_t *err)
{
    const bson_t *u = mk_query_get_update(h->query);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, u, "$set"));
    return mk_query_set_update(h->query, "{ $set: { name: 'changed', by: ? } }",
                               MK_ARGS(MK_STR("hook")), err);
}

static int see_cast(mk_hook_t *h, void *ud, mk_error_t *err)
{
    /* post hooks see the filter and update as cast */
    tu_assert_bson_eq(mk_query_get_filter(h->query), (const char *)ud);
    return MK_OK;
}

static void test_middleware_changes_query(void **state)
{
    mk_schema_t *s =
        schema_ok("{ name: String, age: Number, isDeleted: Boolean, by: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(s, "find", soft_delete, NULL, &err), &err);
    assert_ok(mk_schema_post(s, "find", see_cast, "{ age: { $lte: 30 }, isDeleted: { $ne: true } }",
                             &err),
              &err);
    assert_ok(mk_schema_pre(s, "updateMany", add_updated_by, NULL, &err), &err);
    mk_model_t *m = model_from(*state, "User", s);
    create(m, "{ name: 'Jean-Luc Picard', age: 59 }");
    create(m, "{ name: 'Will Riker', age: 29 }");
    create(m, "{ name: 'Tasha Yar', age: 28, isDeleted: true }");
    mk_query_result_t r;
    mk_query_t *q = mk_find(m, &err, "{ age: { $lte: '30' } }");
    for (int i = 0; i < 2; i++) { /* twice: the hook's change does not pile up */
        assert_ok(mk_query_exec(q, &r, &err), &err);
        assert_names(&r, "Will Riker");
        mk_query_result_destroy(&r);
        /* after execution the query is as built */
        tu_assert_bson_eq(mk_query_get_filter(q), "{ age: { $lte: '30' } }");
    }
    mk_query_destroy(q);
    q = mk_update_many(m, &err, "{ age: { $lt: 30 } }", "{ $set: { name: 'x' } }");
    run(q, &r);
    assert_int_equal(r.modified_count, 2);
    mk_query_result_destroy(&r);
    run(mk_count_documents(m, &err, "{ name: 'changed', by: 'hook' }"), &r);
    assert_int_equal(r.count, 2);
    mk_query_result_destroy(&r);
}

/* Error-handling middleware sees errors from pre hooks, the operation and post hooks, and may
 * rewrite them. */
static int fail_pre(mk_hook_t *h, void *ud, mk_error_t *err)
{
    return mk_error_set(err, 0, "Error", "Oops!");
}

static int fail_post(mk_hook_t *h, void *ud, mk_error_t *err)
{
    const mk_query_result_t *r = h->result;
    return mk_error_set(err, 0, "Error", "post saw %d", (int)r->count);
}

static void rewrite_error(mk_hook_t *h, mk_error_t *error, void *ud)
{
    char buf[MK_ERROR_MSG_MAX];
    snprintf(buf, sizeof buf, "%s", error->message);
    log_add(error->kind);
    mk_error_set(error, 0, "Error", "handled %s: %s", h->op, buf);
}

static void test_middleware_errors(void **state)
{
    mk_schema_t *s = schema_ok("{ name: String, age: Number }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(s, "deleteMany", fail_pre, NULL, &err), &err);
    assert_ok(mk_schema_post(s, "countDocuments", fail_post, NULL, &err), &err);
    assert_ok(mk_schema_post_error(s, "deleteMany countDocuments find", rewrite_error, NULL, &err),
              &err);
    assert_ok(mk_schema_pre(s, "updateOne", log_hook, "pre", &err), &err);
    mk_model_t *m = model_from(*state, "Character", s);
    create(m, "{ name: 'a', age: 1 }");
    mk_query_result_t r;
    hook_log[0] = '\0';
    run_fails(mk_delete_many(m, &err, "{}"), "Error", "handled deleteMany: Oops!");
    assert_str(hook_log, "Error");
    run(mk_estimated_document_count(m, &err), &r); /* the delete did not run */
    assert_int_equal(r.count, 1);
    mk_query_result_destroy(&r);
    hook_log[0] = '\0';
    run_fails(mk_count_documents(m, &err, "{}"), "Error", "handled countDocuments: post saw 1");
    /* the operation's own error */
    hook_log[0] = '\0';
    run_fails(mk_find(m, &err, "{ age: 'x' }"), "Error",
              "handled find: Cast to Number failed for value \"x\" (type string) at path \"age\" "
              "for model \"Character\"");
    assert_str(hook_log, "CastError");
    /* no error handler: the error as it is */
    run_fails(mk_update_one(m, &err, "{ age: 'x' }", "{ age: 1 }"), "CastError", NULL);
}

/* A pre hook that runs another query on the model (the article's duplicate check). */
static int nested_query(mk_hook_t *h, void *ud, mk_error_t *err)
{
    mk_query_t *q = mk_query_new_bson(h->model, MK_OP_COUNT_DOCUMENTS,
                                      mk_query_get_filter(h->query), NULL, err);
    if (!q) return MK_ERR;
    mk_query_result_t r;
    int rc = mk_query_exec(q, &r, err);
    mk_query_destroy(q);
    if (rc != MK_OK) return rc;
    int64_t n = r.count;
    mk_query_result_destroy(&r);
    /* a query cannot execute itself from its own middleware */
    mk_query_result_t again;
    mk_error_t e = {0};
    assert_int_equal(mk_query_exec(h->query, &again, &e), MK_ERR);
    assert_str(e.message, "Query is being executed: its middleware cannot execute it again");
    return n > 0 ? MK_OK : mk_error_set(err, 0, "Error", "nothing to update");
}

static void test_middleware_nested(void **state)
{
    mk_schema_t *s = schema_ok("{ name: String }", NULL);
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(s, "updateOne", nested_query, NULL, &err), &err);
    mk_model_t *m = model_from(*state, "Character", s);
    create(m, "{ name: 'a' }");
    mk_query_result_t r;
    run(mk_update_one(m, &err, "{ name: 'a' }", "{ name: 'b' }"), &r);
    assert_int_equal(r.modified_count, 1);
    mk_query_result_destroy(&r);
    run_fails(mk_update_one(m, &err, "{ name: 'a' }", "{ name: 'c' }"), "Error",
              "nothing to update");
}

/* ---------- casting options ---------- */

static void test_sanitize_and_strict_query(void **state)
{
    mk_model_t *m = model_ok(*state, "User", "{ name: String, pass: String }", NULL);
    create(m, "{ name: 'admin', pass: 'secret' }");
    mk_error_t err = {0};
    mk_query_result_t r;
    /* a user-supplied object with operators matches everything... */
    bson_t *evil = tu_bson("{ $ne: null }");
    run(mk_find_one(m, &err, "{ name: 'admin', pass: ? }", MK_DOC(evil)), &r);
    assert_non_null(r.doc);
    mk_query_result_destroy(&r);
    /* ...unless sanitizeFilter wraps it in $eq, where it is a value that is not a string */
    mk_query_t *q = mk_find_one(m, &err, "{ name: 'admin', pass: ? }", MK_DOC(evil));
    assert_ok(mk_query_set_options(q, "{ sanitizeFilter: true }", NULL, &err), &err);
    run_fails(q, "CastError",
              "Cast to string failed for value \"{ '$ne': null }\" (type Object) at path \"pass\" "
              "for model \"User\"");
    q = mk_find_one(m, &err, "{ name: 'admin', pass: ? }", MK_STR("secret"));
    assert_ok(mk_query_set_options(q, "{ sanitizeFilter: true }", NULL, &err), &err);
    run(q, &r);
    assert_non_null(r.doc);
    mk_query_result_destroy(&r);
    bson_destroy(evil);
    /* strictQuery: unknown paths kept by default (Mongoose 8), dropped or refused on request */
    run(mk_find_one(m, &err, "{ nope: 1 }"), &r);
    assert_null(r.doc);
    mk_query_result_destroy(&r);
    q = mk_find_one(m, &err, "{ nope: 1 }");
    mk_query_set_options(q, "{ strictQuery: true }", NULL, &err);
    run(q, &r);
    assert_non_null(r.doc);
    mk_query_result_destroy(&r);
    q = mk_find_one(m, &err, "{ nope: 1 }");
    mk_query_set_options(q, "{ strictQuery: 'throw' }", NULL, &err);
    run_fails(q, "StrictModeError", "Path \"nope\" is not in schema and strictQuery is 'throw'.");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_names),
        cmocka_unit_test_setup_teardown(test_build_placeholders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lazy_and_reexec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_findone_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_distinct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sort_skip_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upsert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sort_on_single_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_one_and_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_validators, setup, teardown),
        cmocka_unit_test_setup_teardown(test_or_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_projections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_middleware_all_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_middleware_document_vs_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_middleware_order_and_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_middleware_changes_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_middleware_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_middleware_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sanitize_and_strict_query, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
