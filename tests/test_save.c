/* save(): insert then minimal updates, timestamps, versioning (VersionError), optimistic
 * concurrency, DocumentNotFoundError, deleteOne; Model.insertMany ordered and unordered. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <meerkat.h>

#include "testutil.h"

typedef struct fixture {
    mk_conn_t *conn;
    mk_model_t *Post, *Strict;
} fixture_t;

static int setup(void **state)
{
    mk_error_t err = {0};
    fixture_t *f = calloc(1, sizeof *f);
    f->conn = mk_connect("memory:", &err);
    assert_non_null(f->conn);
    mk_schema_t *s = mk_schema_parse("{ title: { type: String, required: true, unique: true },"
                                     "  tags: [String], meta: { views: Number },"
                                     "  comments: [{ text: String }] }",
                                     "{ timestamps: true }", &err);
    f->Post = mk_model(f->conn, "Post", s, &err);
    assert_non_null(f->Post);
    mk_schema_destroy(s);
    s = mk_schema_parse("{ title: String, n: Number }", "{ optimisticConcurrency: true }", &err);
    f->Strict = mk_model(f->conn, "Strict", s, &err);
    assert_non_null(f->Strict);
    mk_schema_destroy(s);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    mk_conn_close(f->conn);
    free(f);
    return 0;
}

/* The stored document with this _id (a new bson_t) or NULL. */
static bson_t *stored(fixture_t *f, const char *coll, mk_doc_t *d)
{
    mk_error_t err = {0};
    bson_t *cmd =
        mk_bson(&err, "{ find: ?, filter: { _id: ? } }", MK_STR(coll), MK_OID(mk_doc_oid(d)));
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(mk_conn_command(f->conn, cmd, &reply, &err), MK_OK);
    bson_iter_t it, doc;
    bson_t *out = NULL;
    if (bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "cursor.firstBatch.0", &doc)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&doc, &len, &data);
        out = bson_new_from_data(data, len);
    }
    bson_destroy(&reply);
    bson_destroy(cmd);
    return out;
}

static mk_doc_t *reload(fixture_t *f, mk_model_t *m, const char *coll, mk_doc_t *d)
{
    mk_error_t err = {0};
    bson_t *b = stored(f, coll, d);
    assert_non_null(b);
    mk_doc_t *copy = mk_doc_hydrate(m, b, &err);
    bson_destroy(b);
    return copy;
}

static void insert_then_minimal_update(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *d = mk_doc_new(f->Post, &err, "{ title: 'Hello', tags: ['a'] }");
    assert_true(mk_doc_is_new(d));
    assert_int_equal(mk_doc_save(d, &err), MK_OK);
    assert_false(mk_doc_is_new(d));
    assert_false(mk_doc_is_modified(d, NULL));
    int64_t created = mk_doc_get_date(d, "createdAt");
    assert_true(created > 0);
    assert_int_equal(mk_doc_get_date(d, "updatedAt"), created);
    assert_int_equal(mk_doc_get_i64(d, "__v"), 0);
    bson_t *b = stored(f, "posts", d);
    assert_int_equal(tu_get_int(b, "__v"), 0);
    assert_string_equal(tu_get_str(b, "title"), "Hello");
    bson_destroy(b);
    /* nothing changed: nothing to send */
    bson_t *delta = mk_doc_delta(d, &err);
    assert_true(bson_empty(delta));
    bson_destroy(delta);
    assert_int_equal(mk_doc_save(d, &err), MK_OK);
    usleep(2000);
    assert_int_equal(mk_doc_set(d, "meta.views", MK_STR("7"), &err), MK_OK);
    delta = mk_doc_delta(d, &err);
    tu_assert_bson_eq(delta, "{ $set: { 'meta.views': 7 } }");
    bson_destroy(delta);
    assert_int_equal(mk_doc_save(d, &err), MK_OK);
    assert_true(mk_doc_get_date(d, "updatedAt") > created);
    assert_int_equal(mk_doc_get_date(d, "createdAt"), created);
    b = stored(f, "posts", d);
    assert_int_equal(tu_get_int(b, "meta.views"), 7);
    assert_int_equal(tu_get_int(b, "__v"), 0); /* a scalar $set does not bump the version */
    bson_destroy(b);
    /* an array push is a $push and bumps __v */
    assert_int_equal(mk_doc_push(d, "tags", MK_STR("b"), &err), MK_OK);
    assert_int_equal(mk_doc_save(d, &err), MK_OK);
    assert_int_equal(mk_doc_get_i64(d, "__v"), 1);
    b = stored(f, "posts", d);
    assert_int_equal(tu_get_int(b, "__v"), 1);
    assert_string_equal(tu_get_str(b, "tags.1"), "b");
    bson_destroy(b);
    mk_doc_destroy(d);
}

static void version_error_on_stale_array(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *d = mk_model_create(f->Post, &err, "{ title: 'V', tags: ['a', 'b'] }");
    assert_non_null(d);
    mk_doc_t *a = reload(f, f->Post, "posts", d), *b = reload(f, f->Post, "posts", d);
    /* a replaces the whole array: $set of an array checks and bumps the version */
    assert_int_equal(mk_doc_set_json(a, NULL, &err, "{ tags: ['x'] }"), MK_OK);
    assert_int_equal(mk_doc_save(a, &err), MK_OK);
    assert_int_equal(mk_doc_get_i64(a, "__v"), 1);
    /* b still holds version 0: its array change is refused */
    assert_int_equal(mk_doc_set_json(b, NULL, &err, "{ tags: ['y'] }"), MK_OK);
    assert_int_equal(mk_doc_save(b, &err), MK_ERR);
    assert_string_equal(err.kind, "VersionError");
    char expect[160];
    snprintf(expect, sizeof expect,
             "No matching document found for id \"%s\" version 0 modifiedPaths \"tags\"",
             mk_doc_id(b));
    assert_string_equal(err.message, expect);
    /* a scalar change on the stale copy is not versioned: it goes through */
    mk_doc_t *c = reload(f, f->Post, "posts", d);
    mk_doc_destroy(b);
    b = reload(f, f->Post, "posts", d);
    assert_int_equal(mk_doc_set(c, "title", MK_STR("V2"), &err), MK_OK);
    assert_int_equal(mk_doc_save(c, &err), MK_OK);
    mk_doc_destroy(a);
    mk_doc_destroy(b);
    mk_doc_destroy(c);
    mk_doc_destroy(d);
}

static void optimistic_concurrency(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *d = mk_model_create(f->Strict, &err, "{ title: 'O', n: 1 }");
    assert_non_null(d);
    mk_doc_t *a = reload(f, f->Strict, "stricts", d), *b = reload(f, f->Strict, "stricts", d);
    assert_int_equal(mk_doc_set(a, "n", MK_I32(2), &err), MK_OK);
    assert_int_equal(mk_doc_save(a, &err), MK_OK);
    assert_int_equal(mk_doc_get_i64(a, "__v"), 1); /* every save bumps it */
    assert_int_equal(mk_doc_set(b, "title", MK_STR("other"), &err), MK_OK);
    assert_int_equal(mk_doc_save(b, &err), MK_ERR); /* even a scalar change */
    assert_string_equal(err.kind, "VersionError");
    mk_doc_destroy(a);
    mk_doc_destroy(b);
    mk_doc_destroy(d);
}

static void document_not_found_and_delete(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *d = mk_model_create(f->Post, &err, "{ title: 'Gone' }");
    assert_non_null(d);
    mk_doc_t *copy = reload(f, f->Post, "posts", d);
    assert_int_equal(mk_doc_delete_one(d, &err), MK_OK);
    bson_t *b = stored(f, "posts", d);
    assert_null(b);
    assert_int_equal(mk_doc_set(copy, "meta.views", MK_I32(1), &err), MK_OK);
    assert_int_equal(mk_doc_save(copy, &err), MK_ERR);
    assert_string_equal(err.kind, "DocumentNotFoundError");
    char expect[160];
    snprintf(expect, sizeof expect,
             "No document found for query \"{ _id: new ObjectId('%s') }\" on model \"Post\"",
             mk_doc_id(copy));
    assert_string_equal(err.message, expect);
    mk_doc_destroy(copy);
    mk_doc_destroy(d);
}

static void duplicate_key_error(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *a = mk_model_create(f->Post, &err, "{ title: 'Same' }");
    assert_non_null(a);
    assert_null(mk_model_create(f->Post, &err, "{ title: 'Same' }"));
    assert_string_equal(err.kind, "MongoServerError");
    assert_int_equal(err.code, 11000);
    assert_non_null(strstr(err.message, "E11000 duplicate key error"));
    assert_non_null(strstr(err.message, "title_1"));
    mk_doc_destroy(a);
}

static void insert_many_ordered_and_unordered(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    bson_t *docs = tu_bson("{ '0': { title: 'm1' }, '1': {}, '2': { title: 'm3' } }");
    mk_insert_many_result_t r;
    /* ordered: a document that fails validation stops the batch before anything is written */
    assert_int_equal(mk_model_insert_many(f->Post, docs, NULL, &r, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_int_equal(r.ndocs, 0);
    assert_int_equal(r.nfailures, 1);
    assert_int_equal(r.failures[0].index, 1);
    mk_insert_many_result_destroy(&r);
    mk_query_t *count = mk_count_documents(f->Post, &err, "{}");
    int64_t n = -1;
    assert_int_equal(mk_query_count(count, &n, &err), MK_OK);
    assert_int_equal(n, 0);
    /* unordered: the valid ones are inserted, the failures listed by input index */
    mk_insert_many_opts_t o = {.unordered = true};
    assert_int_equal(mk_model_insert_many(f->Post, docs, &o, &r, &err), MK_ERR);
    assert_int_equal(r.ndocs, 2);
    assert_int_equal(r.nfailures, 1);
    assert_int_equal(r.failures[0].index, 1);
    assert_string_equal(mk_doc_get_str(r.docs[1], "title"), "m3");
    assert_false(mk_doc_is_new(r.docs[0]));
    mk_insert_many_result_destroy(&r);
    assert_int_equal(mk_query_count(count, &n, &err), MK_OK);
    assert_int_equal(n, 2);
    /* a duplicate is a per-document write error; the others go in when unordered */
    bson_t *more = tu_bson("{ '0': { title: 'm4' }, '1': { title: 'm1' }, '2': { title: 'm5' } }");
    assert_int_equal(mk_model_insert_many(f->Post, more, &o, &r, &err), MK_ERR);
    assert_int_equal(err.code, 11000);
    assert_int_equal(r.ndocs, 2);
    assert_int_equal(r.nfailures, 1);
    assert_int_equal(r.failures[0].index, 1);
    assert_int_equal(r.failures[0].error.code, 11000);
    mk_insert_many_result_destroy(&r);
    assert_int_equal(mk_query_count(count, &n, &err), MK_OK);
    assert_int_equal(n, 4);
    mk_query_destroy(count);
    bson_destroy(more);
    bson_destroy(docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(insert_then_minimal_update, setup, teardown),
        cmocka_unit_test_setup_teardown(version_error_on_stale_array, setup, teardown),
        cmocka_unit_test_setup_teardown(optimistic_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(document_not_found_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(duplicate_key_error, setup, teardown),
        cmocka_unit_test_setup_teardown(insert_many_ordered_and_unordered, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
