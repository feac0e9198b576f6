/* The backend seam over the embedded engine: every operation of the table, its options, its
 * errors, cursors across batches, and transactions. */
#include "testutil.h"

#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "bson/path.h"

static mk_engine_t *eng;
static mk_backend_t *be;
static char *dir;

static int setup(void **state)
{
    dir = tu_tmpdir("backend");
    mk_error_t err = {0};
    eng =
        mk_engine_open(dir, &(mk_engine_opts_t){.no_sync = true, .txn_lock_timeout_ms = 50}, &err);
    if (!eng) fail_msg("open: %s", err.message);
    be = mk_backend_embedded_new(eng, &err);
    if (!be) fail_msg("backend: %s", err.message);
    return 0;
}

static int teardown(void **state)
{
    mk_backend_destroy(be);
    mk_engine_close(eng);
    tu_rmdir(dir);
    free(dir);
    return 0;
}

/* A relaxed-JSON array as a bson_t with keys "0", "1", ... (caller destroys). */
static bson_t *tu_arr(const char *json)
{
    bson_t *b = bson_new();
    bool is_array = false;
    mk_error_t err = {0};
    if (mk_json_parse_into(b, json, strlen(json), NULL, &is_array, &err) != MK_OK || !is_array)
        fail_msg("tu_arr: %s in %s", err.message, json);
    return b;
}

static bool has(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    return mk_path_get(doc, path, &it);
}

/* Inserts the documents of a relaxed-JSON array into test.<coll>; asserts success. */
static void insert(mk_backend_session_t *s, const char *coll, const char *json)
{
    bson_t *arr = tu_arr(json);
    const bson_t *docs[64];
    bson_t views[64];
    size_t n = 0;
    bson_iter_t it;
    bson_iter_init(&it, arr);
    while (bson_iter_next(&it)) {
        assert_true(n < 64);
        const uint8_t *d;
        uint32_t l;
        bson_iter_document(&it, &l, &d);
        bson_init_static(&views[n], d, l);
        docs[n] = &views[n];
        n++;
    }
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err = {0};
    if (mk_backend_insert_many(be, s, "test", coll, docs, n, NULL, &reply, &err) != MK_OK)
        fail_msg("insert: %s", err.message);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), (int64_t)n);
    bson_destroy(&reply);
    bson_destroy(arr);
}

/* All documents of a cursor as { v: [ ... ] } compared with expect; destroys the cursor. */
static void assert_cursor(mk_backend_cursor_t *c, const char *expect)
{
    assert_non_null(c);
    bson_t all = BSON_INITIALIZER, arr;
    bson_append_array_begin(&all, "v", 1, &arr);
    const bson_t *doc;
    mk_error_t err = {0};
    int rc;
    uint32_t i = 0;
    char key[16];
    const char *k;
    while ((rc = mk_backend_cursor_next(c, &doc, &err)) == 1) {
        bson_uint32_to_string(i++, &k, key, sizeof key);
        BSON_APPEND_DOCUMENT(&arr, k, doc);
    }
    if (rc != 0) fail_msg("cursor: %s", err.message);
    bson_append_array_end(&all, &arr);
    tu_assert_bson_eq(&all, expect);
    bson_destroy(&all);
    mk_backend_cursor_destroy(c);
}

static void assert_find(mk_backend_session_t *s, const char *coll, const char *filter,
                        const char *opts, const char *expect)
{
    bson_t *f = tu_bson(filter), *o = opts ? tu_bson(opts) : NULL;
    mk_error_t err = {0};
    mk_backend_cursor_t *c = mk_backend_find(be, s, "test", coll, f, o, &err);
    if (!c) fail_msg("find: %s", err.message);
    assert_cursor(c, expect);
    bson_destroy(f);
    if (o) bson_destroy(o);
}

static int64_t count(mk_backend_session_t *s, const char *coll)
{
    int64_t n = -1;
    mk_error_t err = {0};
    if (mk_backend_count_documents(be, s, "test", coll, NULL, NULL, &n, &err) != MK_OK)
        fail_msg("count: %s", err.message);
    return n;
}

/* ---------------------------------------------------------------------------- writes */

static void test_insert_and_find(void **state)
{
    assert_string_equal(be->ops->name, "embedded");
    insert(NULL, "c", "[{ _id: 1, a: 'x' }, { _id: 2, a: 'y' }, { _id: 3, a: 'z' }]");
    assert_find(NULL, "c", "{}", NULL,
                "{ v: [{ _id: 1, a: 'x' }, { _id: 2, a: 'y' }, { _id: 3, a: 'z' }] }");
    assert_find(NULL, "c", "{ a: { $gte: 'y' } }", "{ sort: { _id: -1 }, projection: { a: 0 } }",
                "{ v: [{ _id: 3 }, { _id: 2 }] }");
    assert_find(NULL, "c", "{}", "{ sort: { _id: 1 }, skip: 1, limit: 1 }",
                "{ v: [{ _id: 2, a: 'y' }] }");
    assert_find(NULL, "c", "{ a: 'nothing' }", NULL, "{ v: [] }");
    assert_find(NULL, "nocoll", "{}", NULL, "{ v: [] }");
}

static void test_insert_write_errors(void **state)
{
    insert(NULL, "c", "[{ _id: 1 }]");
    bson_t *d0 = tu_bson("{ _id: 2 }"), *d1 = tu_bson("{ _id: 1 }"), *d2 = tu_bson("{ _id: 3 }");
    const bson_t *docs[] = {d0, d1, d2};
    bool inserted[3];
    mk_error_t err = {0};

    /* ordered (the default): stops at the duplicate */
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "c", docs, 3, NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 1);
    assert_int_equal(tu_get_int(&reply, "writeErrors.0.index"), 1);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_ERR);
    assert_int_equal(err.code, 11000);
    assert_string_equal(err.kind, "DuplicateKey");
    assert_non_null(strstr(err.message, "E11000 duplicate key error"));
    assert_int_equal(mk_backend_inserted(&reply, 3, true, inserted), 1);
    assert_true(inserted[0]);
    assert_false(inserted[1]);
    assert_false(inserted[2]);
    assert_int_equal(count(NULL, "c"), 2);

    /* unordered: the others go in */
    bson_t *opts = tu_bson("{ ordered: false }");
    bson_t *e0 = tu_bson("{ _id: 4 }"), *e2 = tu_bson("{ _id: 5 }");
    const bson_t *docs2[] = {e0, d1, e2};
    bson_reinit(&reply);
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "c", docs2, 3, opts, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 2);
    assert_int_equal(mk_backend_inserted(&reply, 3, false, inserted), 2);
    assert_true(inserted[0]);
    assert_false(inserted[1]);
    assert_true(inserted[2]);
    assert_int_equal(count(NULL, "c"), 4);

    /* no write errors: first_write_error is MK_OK */
    bson_t *e3 = tu_bson("{ _id: 6 }");
    const bson_t *docs3[] = {e3};
    bson_reinit(&reply);
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "c", docs3, 1, NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_OK);
    assert_int_equal(mk_backend_inserted(&reply, 1, true, inserted), 1);

    /* an empty batch and a NULL document are errors */
    bson_reinit(&reply);
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "c", docs3, 0, NULL, &reply, &err),
                     MK_ERR);
    assert_int_equal(err.code, MK_CODE_INVALID_OPTIONS);
    const bson_t *withnull[] = {e3, NULL};
    bson_reinit(&reply);
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "c", withnull, 2, NULL, &reply, &err),
                     MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    /* the operation's own fields cannot come in through the options */
    bson_t *bad = tu_bson("{ documents: [] }");
    bson_reinit(&reply);
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "c", docs3, 1, bad, &reply, &err),
                     MK_ERR);
    assert_non_null(strstr(err.message, "'documents'"));
    /* unknown options reach the engine, which names them */
    bson_t *unknown = tu_bson("{ frobnicate: true }");
    bson_reinit(&reply);
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "c", docs3, 1, unknown, &reply, &err),
                     MK_ERR);
    assert_non_null(strstr(err.message, "frobnicate"));

    bson_destroy(&reply);
    bson_destroy(opts);
    bson_destroy(bad);
    bson_destroy(unknown);
    bson_destroy(d0);
    bson_destroy(d1);
    bson_destroy(d2);
    bson_destroy(e0);
    bson_destroy(e2);
    bson_destroy(e3);
}

/* More than MongoDB's 100000 writes per batch: split into chunks as a driver does, with one
 * merged reply whose write error indexes count from the first document. */
static void test_insert_chunks(void **state)
{
    enum { N = 100005 };
    bson_t **docs = calloc(N, sizeof *docs);
    assert_non_null(docs);
    for (int i = 0; i < N; i++) {
        docs[i] = bson_new();
        BSON_APPEND_INT32(docs[i], "_id", i == N - 2 ? 7 : i); /* one duplicate near the end */
    }
    bson_t *opts = tu_bson("{ ordered: false }");
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err = {0};
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "big", (const bson_t *const *)docs, N,
                                            opts, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), N - 1);
    assert_int_equal(tu_get_int(&reply, "writeErrors.0.index"), N - 2);
    assert_int_equal(tu_get_int(&reply, "writeErrors.0.code"), 11000);
    assert_int_equal(tu_get_int(&reply, "ok"), 1);
    assert_false(has(&reply, "writeErrors.1"));
    bool *inserted = calloc(N, sizeof *inserted);
    assert_int_equal(mk_backend_inserted(&reply, N, false, inserted), N - 1);
    assert_false(inserted[N - 2]);
    assert_true(inserted[N - 1]);
    assert_int_equal(count(NULL, "big"), N - 1);
    free(inserted);
    bson_destroy(&reply);
    bson_destroy(opts);
    for (int i = 0; i < N; i++) bson_destroy(docs[i]);
    free(docs);
}

static int upd(const char *filter, const char *update, unsigned flags, const char *opts,
               bson_t *reply, mk_error_t *err)
{
    bson_t *f = tu_bson(filter), *u = tu_bson(update), *o = opts ? tu_bson(opts) : NULL;
    bson_reinit(reply);
    int rc = mk_backend_update(be, NULL, "test", "c", f, u, flags, o, reply, err);
    bson_destroy(f);
    bson_destroy(u);
    if (o) bson_destroy(o);
    return rc;
}

static void test_update(void **state)
{
    insert(NULL, "c", "[{ _id: 1, a: 1, t: [1, 5] }, { _id: 2, a: 1 }, { _id: 3, a: 2 }]");
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err = {0};

    assert_int_equal(upd("{ a: 1 }", "{ $set: { b: 1 } }", 0, NULL, &reply, &err), MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 1);
    assert_int_equal(tu_get_int(&reply, "nModified"), 1);
    assert_int_equal(upd("{ a: 1 }", "{ $inc: { b: 10 } }", MK_BE_MULTI, NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 2);
    assert_find(NULL, "c", "{ a: 1 }", "{ projection: { b: 1 } }",
                "{ v: [{ _id: 1, b: 11 }, { _id: 2, b: 10 }] }");

    /* upsert reports the new _id */
    assert_int_equal(upd("{ _id: 9 }", "{ $set: { a: 9 } }", 0, "{ upsert: true }", &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "upserted.0._id"), 9);
    assert_int_equal(tu_get_int(&reply, "upserted.0.index"), 0);
    assert_find(NULL, "c", "{ _id: 9 }", NULL, "{ v: [{ _id: 9, a: 9 }] }");

    /* arrayFilters is a statement option */
    assert_int_equal(upd("{ _id: 1 }", "{ $set: { 't.$[x]': 0 } }", 0,
                         "{ arrayFilters: [{ x: { $gt: 2 } }] }", &reply, &err),
                     MK_OK);
    assert_find(NULL, "c", "{ _id: 1 }", "{ projection: { t: 1 } }",
                "{ v: [{ _id: 1, t: [1, 0] }] }");

    /* replace one */
    assert_int_equal(upd("{ _id: 3 }", "{ z: 1 }", MK_BE_REPLACE, NULL, &reply, &err), MK_OK);
    assert_int_equal(tu_get_int(&reply, "nModified"), 1);
    assert_find(NULL, "c", "{ _id: 3 }", NULL, "{ v: [{ _id: 3, z: 1 }] }");

    /* what a driver refuses before sending */
    assert_int_equal(upd("{ _id: 3 }", "{ z: 2 }", 0, NULL, &reply, &err), MK_ERR);
    assert_non_null(strstr(err.message, "atomic operators"));
    assert_int_equal(upd("{ _id: 3 }", "{}", MK_BE_MULTI, NULL, &reply, &err), MK_ERR);
    assert_int_equal(upd("{ _id: 3 }", "{ $set: { z: 2 } }", MK_BE_REPLACE, NULL, &reply, &err),
                     MK_ERR);
    assert_non_null(strstr(err.message, "must not contain atomic operators"));
    assert_int_equal(upd("{}", "{ z: 2 }", MK_BE_REPLACE | MK_BE_MULTI, NULL, &reply, &err),
                     MK_ERR);
    assert_int_equal(upd("{}", "{ $set: { z: 2 } }", 0, "{ multi: true }", &reply, &err), MK_ERR);
    assert_non_null(strstr(err.message, "'multi'"));
    assert_find(NULL, "c", "{ _id: 3 }", NULL, "{ v: [{ _id: 3, z: 1 }] }");

    /* statement errors are write errors that stay in the reply, as MongoDB's */
    assert_int_equal(upd("{ a: { $bogus: 1 } }", "{ $set: { z: 2 } }", 0, NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 0);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    assert_string_equal(err.kind, "BadValue");
    assert_non_null(strstr(err.message, "$bogus"));
    assert_int_equal(upd("{ _id: 3 }", "{ $set: { _id: 4 } }", 0, NULL, &reply, &err), MK_OK);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_IMMUTABLE_FIELD);
    assert_string_equal(err.kind, "ImmutableField");
    /* reply may be NULL */
    bson_t *f = tu_bson("{ _id: 2 }"), *u = tu_bson("{ $set: { q: 1 } }");
    assert_int_equal(mk_backend_update(be, NULL, "test", "c", f, u, 0, NULL, NULL, &err), MK_OK);
    assert_find(NULL, "c", "{ q: 1 }", "{ projection: { _id: 1 } }", "{ v: [{ _id: 2 }] }");
    bson_destroy(f);
    bson_destroy(u);
    bson_destroy(&reply);
}

static void test_delete(void **state)
{
    insert(NULL, "c", "[{ _id: 1, a: 1 }, { _id: 2, a: 1 }, { _id: 3, a: 1 }, { _id: 4, a: 2 }]");
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err = {0};
    bson_t *f = tu_bson("{ a: 1 }");
    assert_int_equal(mk_backend_delete(be, NULL, "test", "c", f, 0, NULL, &reply, &err), MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 1);
    assert_int_equal(count(NULL, "c"), 3);
    bson_reinit(&reply);
    assert_int_equal(mk_backend_delete(be, NULL, "test", "c", f, MK_BE_MULTI, NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 2);
    assert_find(NULL, "c", "{}", NULL, "{ v: [{ _id: 4, a: 2 }] }");
    /* NULL filter: everything */
    assert_int_equal(mk_backend_delete(be, NULL, "test", "c", NULL, MK_BE_MULTI, NULL, NULL, &err),
                     MK_OK);
    assert_int_equal(count(NULL, "c"), 0);
    /* errors */
    bson_t *lim = tu_bson("{ limit: 0 }");
    assert_int_equal(mk_backend_delete(be, NULL, "test", "c", f, 0, lim, NULL, &err), MK_ERR);
    assert_non_null(strstr(err.message, "'limit'"));
    assert_int_equal(mk_backend_delete(be, NULL, "test", "c", f, MK_BE_REPLACE, NULL, NULL, &err),
                     MK_ERR);
    bson_t *bad = tu_bson("{ a: { $bogus: 1 } }");
    assert_int_equal(mk_backend_delete(be, NULL, "test", "c", bad, 0, NULL, &reply, &err), MK_OK);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    assert_non_null(strstr(err.message, "$bogus"));
    /* a command error: a bad collection name */
    assert_int_equal(mk_backend_delete(be, NULL, "test", "", f, 0, NULL, NULL, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_INVALID_NAMESPACE);
    bson_destroy(bad);
    bson_destroy(lim);
    bson_destroy(f);
    bson_destroy(&reply);
}

static void test_find_and_modify(void **state)
{
    insert(NULL, "c", "[{ _id: 1, a: 1 }, { _id: 2, a: 2 }]");
    mk_error_t err = {0};
    bson_t value = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    bool found = false;
    bson_t *q = tu_bson("{ a: { $gte: 1 } }");
    bson_t *o = tu_bson("{ sort: { a: -1 }, update: { $inc: { a: 10 } }, new: true }");
    assert_int_equal(
        mk_backend_find_and_modify(be, NULL, "test", "c", q, o, &value, &found, &reply, &err),
        MK_OK);
    assert_true(found);
    tu_assert_bson_eq(&value, "{ _id: 2, a: 12 }");
    assert_int_equal(tu_get_int(&reply, "lastErrorObject.n"), 1);
    bson_destroy(o);

    /* the old document, with fields */
    bson_reinit(&value);
    o = tu_bson("{ sort: { a: 1 }, update: { $set: { b: 1 } }, fields: { a: 1 } }");
    assert_int_equal(
        mk_backend_find_and_modify(be, NULL, "test", "c", q, o, &value, &found, NULL, &err), MK_OK);
    assert_true(found);
    tu_assert_bson_eq(&value, "{ _id: 1, a: 1 }");
    bson_destroy(o);

    /* nothing matches: value null */
    bson_t *none = tu_bson("{ a: 99 }");
    bson_reinit(&value);
    o = tu_bson("{ remove: true }");
    found = true;
    assert_int_equal(
        mk_backend_find_and_modify(be, NULL, "test", "c", none, o, &value, &found, NULL, &err),
        MK_OK);
    assert_false(found);
    assert_true(bson_empty(&value));

    /* remove */
    assert_int_equal(
        mk_backend_find_and_modify(be, NULL, "test", "c", q, o, &value, &found, NULL, &err), MK_OK);
    assert_true(found);
    assert_int_equal(count(NULL, "c"), 1);
    bson_destroy(o);

    /* upsert, returning the new document */
    bson_reinit(&value);
    o = tu_bson("{ update: { $set: { u: 1 } }, upsert: true, new: true }");
    assert_int_equal(
        mk_backend_find_and_modify(be, NULL, "test", "c", none, o, &value, &found, NULL, &err),
        MK_OK);
    assert_true(found);
    assert_int_equal(tu_get_int(&value, "a"), 99);
    assert_int_equal(tu_get_int(&value, "u"), 1);
    bson_destroy(o);

    /* errors: remove and update together, a bad operator */
    o = tu_bson("{ remove: true, update: { $set: { x: 1 } } }");
    assert_int_equal(
        mk_backend_find_and_modify(be, NULL, "test", "c", q, o, &value, &found, NULL, &err),
        MK_ERR);
    assert_true(err.code != 0);
    bson_destroy(o);
    bson_t *badq = tu_bson("{ a: { $nope: 1 } }");
    o = tu_bson("{ remove: true }");
    assert_int_equal(
        mk_backend_find_and_modify(be, NULL, "test", "c", badq, o, &value, &found, NULL, &err),
        MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    bson_destroy(o);
    bson_destroy(badq);
    bson_destroy(none);
    bson_destroy(q);
    bson_destroy(&value);
    bson_destroy(&reply);
}

static int bulk(const char *ops, const char *opts, bson_t *reply, mk_error_t *err)
{
    bson_t *o = tu_arr(ops), *p = opts ? tu_bson(opts) : NULL;
    bson_reinit(reply);
    int rc = mk_backend_bulk_write(be, NULL, "test", "c", o, p, reply, err);
    bson_destroy(o);
    if (p) bson_destroy(p);
    return rc;
}

static void test_bulk_write(void **state)
{
    insert(NULL, "c", "[{ _id: 1, a: 1 }, { _id: 2, a: 1 }, { _id: 3, a: 2 }]");
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err = {0};
    assert_int_equal(
        bulk("[{ insertOne: { document: { _id: 4, a: 3 } } },"
             " { insertOne: { document: { _id: 5, a: 3 } } },"
             " { updateMany: { filter: { a: 1 }, update: { $set: { b: 1 } } } },"
             " { updateOne: { filter: { _id: 9 }, update: { $set: { a: 9 } }, upsert: true } },"
             " { replaceOne: { filter: { _id: 3 }, replacement: { r: 1 } } },"
             " { deleteOne: { filter: { a: 3 } } },"
             " { deleteMany: { filter: { a: 99 } } }]",
             NULL, &reply, &err),
        MK_OK);
    tu_assert_bson_eq(&reply, "{ nInserted: 2, nMatched: 3, nModified: 3, nDeleted: 1,"
                              "  nUpserted: 1, upserted: [{ index: 3, _id: 9 }], ok: 1 }");
    assert_find(NULL, "c", "{}", NULL,
                "{ v: [{ _id: 1, a: 1, b: 1 }, { _id: 2, a: 1, b: 1 }, { _id: 3, r: 1 },"
                "      { _id: 5, a: 3 }, { _id: 9, a: 9 }] }");

    /* ordered: stops at the duplicate; the error's index is the model's */
    assert_int_equal(bulk("[{ deleteOne: { filter: { _id: 9 } } },"
                          " { insertOne: { document: { _id: 1 } } },"
                          " { insertOne: { document: { _id: 20 } } },"
                          " { deleteOne: { filter: { _id: 5 } } }]",
                          NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "nDeleted"), 1);
    assert_int_equal(tu_get_int(&reply, "nInserted"), 0);
    assert_int_equal(tu_get_int(&reply, "writeErrors.0.index"), 1);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_DUPLICATE_KEY);
    assert_int_equal(count(NULL, "c"), 4);

    /* unordered: everything else runs */
    assert_int_equal(bulk("[{ insertOne: { document: { _id: 1 } } },"
                          " { insertOne: { document: { _id: 20 } } },"
                          " { deleteOne: { filter: { _id: 5 } } },"
                          " { updateOne: { filter: { _id: 20 }, update: { $set: { _id: 21 } } } }]",
                          "{ ordered: false }", &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "nInserted"), 1);
    assert_int_equal(tu_get_int(&reply, "nDeleted"), 1);
    assert_int_equal(tu_get_int(&reply, "writeErrors.0.index"), 0);
    assert_int_equal(tu_get_int(&reply, "writeErrors.1.index"), 3);
    assert_int_equal(tu_get_int(&reply, "writeErrors.1.code"), MK_CODE_IMMUTABLE_FIELD);
    assert_find(NULL, "c", "{ _id: { $gte: 5 } }", NULL, "{ v: [{ _id: 20 }] }");

    /* models are checked before anything runs */
    const char *bad[] = {
        "[{ insertOne: { document: { _id: 30 } } }, { upsertOne: { filter: {} } }]",
        "[{ insertOne: { document: { _id: 30 } } }, { updateOne: { filter: {}, update: { x: 1 } } "
        "}]",
        "[{ insertOne: { document: { _id: 30 } } }, { replaceOne: { filter: {}, "
        "replacement: { $set: { x: 1 } } } }]",
        "[{ insertOne: { document: { _id: 30 } } }, { deleteOne: { } }]",
        "[{ insertOne: { document: { _id: 30 } } }, { deleteOne: { filter: {}, limit: 1 } }]",
        "[{ insertOne: { document: { _id: 30 } } }, { insertOne: { doc: {} } }]",
        "[{ insertOne: { document: { _id: 30 } } }, { insertOne: {}, deleteOne: {} }]",
        "[{ insertOne: { document: { _id: 30 } } }, 5]",
        "[{ insertOne: { document: { _id: 30 } } }, { updateOne: { filter: {}, "
        "update: [{ $set: { x: 1 } }] } }]",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.code = 0;
        assert_int_equal(bulk(bad[i], NULL, &reply, &err), MK_ERR);
        assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    }
    assert_int_equal(count(NULL, "c"), 4);
    assert_int_equal(bulk("[{ deleteOne: { filter: {} } }]", "{ deletes: [] }", &reply, &err),
                     MK_ERR);

    /* a statement error in a later group: the earlier groups stay applied */
    assert_int_equal(bulk("[{ insertOne: { document: { _id: 40 } } },"
                          " { deleteOne: { filter: { _id: 40 }, hint: 'no_such_index' } }]",
                          NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "nInserted"), 1);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_ERR);
    assert_int_equal(count(NULL, "c"), 5);
    bson_destroy(&reply);
}

/* ------------------------------------------------------------------------------ reads */

/* 250 documents with batchSize 10: the cursor issues getMore 24 times, transparently. */
static void test_cursor_batches(void **state)
{
    bson_t *docs[250];
    for (int i = 0; i < 250; i++) {
        docs[i] = bson_new();
        BSON_APPEND_INT32(docs[i], "_id", i);
        BSON_APPEND_INT32(docs[i], "sq", i * i);
    }
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err = {0};
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "many", (const bson_t *const *)docs,
                                            250, NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 250);
    bson_t *o = tu_bson("{ batchSize: 10, sort: { _id: 1 } }");
    bson_t *f = tu_bson("{}");
    mk_backend_cursor_t *c = mk_backend_find(be, NULL, "test", "many", f, o, &err);
    assert_non_null(c);
    const bson_t *doc;
    int i = 0, rc;
    while ((rc = mk_backend_cursor_next(c, &doc, &err)) == 1) {
        assert_int_equal(tu_get_int(doc, "_id"), i);
        assert_int_equal(tu_get_int(doc, "sq"), i * i);
        i++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(i, 250);
    assert_int_equal(mk_backend_cursor_next(c, &doc, &err), 0); /* stays at the end */
    assert_null(doc);
    mk_backend_cursor_destroy(c);

    /* abandoned half way: destroy kills the open cursor (no leak under LSan) */
    c = mk_backend_find(be, NULL, "test", "many", f, o, &err);
    for (i = 0; i < 15; i++) assert_int_equal(mk_backend_cursor_next(c, &doc, &err), 1);
    assert_int_equal(tu_get_int(doc, "_id"), 14);
    mk_backend_cursor_destroy(c);

    /* limit across batches */
    bson_destroy(o);
    o = tu_bson("{ batchSize: 7, limit: 23, sort: { _id: -1 } }");
    c = mk_backend_find(be, NULL, "test", "many", f, o, &err);
    for (i = 0; (rc = mk_backend_cursor_next(c, &doc, &err)) == 1; i++)
        assert_int_equal(tu_get_int(doc, "_id"), 249 - i);
    assert_int_equal(rc, 0);
    assert_int_equal(i, 23);
    mk_backend_cursor_destroy(c);

    /* the cursor dies on the server (idle timeout): getMore fails, and keeps failing */
    char *dir2 = tu_tmpdir("backend_timeout");
    mk_engine_t *eng2 =
        mk_engine_open(dir2, &(mk_engine_opts_t){.no_sync = true, .cursor_timeout_ms = 1}, &err);
    assert_non_null(eng2);
    mk_backend_t *be2 = mk_backend_embedded_new(eng2, &err);
    assert_non_null(be2);
    bson_reinit(&reply);
    assert_int_equal(mk_backend_insert_many(be2, NULL, "test", "many", (const bson_t *const *)docs,
                                            20, NULL, &reply, &err),
                     MK_OK);
    bson_destroy(o);
    o = tu_bson("{ batchSize: 2 }");
    c = mk_backend_find(be2, NULL, "test", "many", f, o, &err);
    assert_non_null(c);
    assert_int_equal(mk_backend_cursor_next(c, &doc, &err), 1);
    assert_int_equal(mk_backend_cursor_next(c, &doc, &err), 1);
    usleep(20 * 1000);
    bson_t *ping = tu_bson("{ ping: 1 }"); /* any command reaps idle cursors */
    bson_reinit(&reply);
    assert_int_equal(mk_backend_run_command(be2, NULL, "admin", ping, &reply, &err), MK_OK);
    assert_int_equal(mk_backend_cursor_next(c, &doc, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_CURSOR_NOT_FOUND);
    assert_string_equal(err.kind, "CursorNotFound");
    memset(&err, 0, sizeof err);
    assert_int_equal(mk_backend_cursor_next(c, &doc, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_CURSOR_NOT_FOUND);
    assert_null(doc);
    mk_backend_cursor_destroy(c);
    mk_backend_destroy(be2);
    mk_engine_close(eng2);
    tu_rmdir(dir2);
    free(dir2);

    bson_destroy(ping);
    bson_destroy(f);
    bson_destroy(o);
    bson_destroy(&reply);
    for (int j = 0; j < 250; j++) bson_destroy(docs[j]);
}

static void test_find_errors(void **state)
{
    insert(NULL, "c", "[{ _id: 1 }]");
    mk_error_t err = {0};
    bson_t *f = tu_bson("{ a: { $frob: 1 } }");
    assert_null(mk_backend_find(be, NULL, "test", "c", f, NULL, &err));
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    assert_string_equal(err.kind, "BadValue");
    assert_non_null(strstr(err.message, "unknown operator: $frob"));
    bson_destroy(f);

    f = tu_bson("{}");
    bson_t *o = tu_bson("{ skip: -1 }");
    assert_null(mk_backend_find(be, NULL, "test", "c", f, o, &err));
    assert_int_equal(err.code, 51024);
    bson_destroy(o);
    o = tu_bson("{ filter: { _id: 1 } }");
    assert_null(mk_backend_find(be, NULL, "test", "c", f, o, &err));
    assert_non_null(strstr(err.message, "'filter'"));
    bson_destroy(o);
    o = tu_bson("{ hint: 'no_such_index' }");
    assert_null(mk_backend_find(be, NULL, "test", "c", f, o, &err));
    assert_true(err.code != 0);
    bson_destroy(o);
    assert_null(mk_backend_find(be, NULL, "test", NULL, f, NULL, &err));
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    assert_null(mk_backend_find(be, NULL, "test", "", f, NULL, &err));
    assert_int_equal(err.code, MK_CODE_INVALID_NAMESPACE);
    bson_destroy(f);
}

static void test_counts_and_distinct(void **state)
{
    insert(NULL, "c",
           "[{ _id: 1, k: 'a', n: 1 }, { _id: 2, k: 'b', n: 2 }, { _id: 3, k: 'a', n: 3 },"
           " { _id: 4, k: ['c', 'a'], n: 4 }, { _id: 5, n: 5 }]");
    mk_error_t err = {0};
    int64_t n = -1;
    bson_t *f = tu_bson("{ n: { $gte: 2 } }");
    assert_int_equal(mk_backend_count_documents(be, NULL, "test", "c", f, NULL, &n, &err), MK_OK);
    assert_int_equal(n, 4);
    bson_t *o = tu_bson("{ skip: 1, limit: 2 }");
    assert_int_equal(mk_backend_count_documents(be, NULL, "test", "c", f, o, &n, &err), MK_OK);
    assert_int_equal(n, 2);
    assert_int_equal(mk_backend_estimated_count(be, NULL, "test", "c", NULL, &n, &err), MK_OK);
    assert_int_equal(n, 5);
    assert_int_equal(mk_backend_estimated_count(be, NULL, "test", "nothing", NULL, &n, &err),
                     MK_OK);
    assert_int_equal(n, 0);
    bson_t *bad = tu_bson("{ n: { $gtx: 1 } }");
    n = 77;
    assert_int_equal(mk_backend_count_documents(be, NULL, "test", "c", bad, NULL, &n, &err),
                     MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    assert_int_equal(n, 77);

    bson_t values = BSON_INITIALIZER;
    assert_int_equal(mk_backend_distinct(be, NULL, "test", "c", "k", NULL, NULL, &values, &err),
                     MK_OK);
    bson_t wrap = BSON_INITIALIZER;
    BSON_APPEND_ARRAY(&wrap, "v", &values);
    tu_assert_bson_eq(&wrap, "{ v: ['a', 'b', 'c'] }");
    bson_reinit(&values);
    bson_reinit(&wrap);
    assert_int_equal(mk_backend_distinct(be, NULL, "test", "c", "k", f, NULL, &values, &err),
                     MK_OK);
    BSON_APPEND_ARRAY(&wrap, "v", &values);
    tu_assert_bson_eq(&wrap, "{ v: ['a', 'b', 'c'] }");
    bson_reinit(&values);
    bson_reinit(&wrap);
    bson_t *one = tu_bson("{ _id: { $lt: 3 } }");
    assert_int_equal(mk_backend_distinct(be, NULL, "test", "c", "n", one, NULL, &values, &err),
                     MK_OK);
    BSON_APPEND_ARRAY(&wrap, "v", &values);
    tu_assert_bson_eq(&wrap, "{ v: [1, 2] }");
    assert_int_equal(mk_backend_distinct(be, NULL, "test", "c", "n", bad, NULL, &values, &err),
                     MK_ERR);
    assert_int_equal(mk_backend_distinct(be, NULL, "test", "c", NULL, NULL, NULL, &values, &err),
                     MK_ERR);
    bson_destroy(one);
    bson_destroy(&wrap);
    bson_destroy(&values);
    bson_destroy(bad);
    bson_destroy(o);
    bson_destroy(f);
}

/* The engine has no aggregate command yet: the seam passes it through and reports the
 * engine's answer; once it exists the cursor must give the right documents. */
static void test_aggregate(void **state)
{
    insert(NULL, "c", "[{ _id: 1, a: 1 }, { _id: 2, a: 2 }, { _id: 3, a: 3 }]");
    mk_error_t err = {0};
    bson_t *p = tu_arr("[{ $match: { a: { $gte: 2 } } }, { $sort: { _id: 1 } }]");
    bson_t *o = tu_bson("{ batchSize: 1 }");
    mk_backend_cursor_t *c = mk_backend_aggregate(be, NULL, "test", "c", p, o, &err);
    if (c)
        assert_cursor(c, "{ v: [{ _id: 2, a: 2 }, { _id: 3, a: 3 }] }");
    else
        assert_int_equal(err.code, MK_CODE_COMMAND_NOT_FOUND);
    bson_destroy(p);
    bson_destroy(o);
}

/* ---------------------------------------------------------------- indexes, namespaces */

static void test_indexes(void **state)
{
    insert(NULL, "c", "[{ _id: 1, email: 'a@x' }]");
    mk_error_t err = {0};
    bson_t reply = BSON_INITIALIZER;
    bson_t *specs = tu_arr("[{ key: { email: 1 }, name: 'email_1', unique: true },"
                           " { key: { n: -1 }, name: 'n_-1' }]");
    assert_int_equal(mk_backend_create_indexes(be, NULL, "test", "c", specs, NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(tu_get_int(&reply, "numIndexesAfter"), 3);
    assert_cursor(mk_backend_list_indexes(be, NULL, "test", "c", &err),
                  "{ v: [{ v: 2, key: { _id: 1 }, name: '_id_' },"
                  "      { v: 2, key: { email: 1 }, name: 'email_1', unique: true },"
                  "      { v: 2, key: { n: -1 }, name: 'n_-1' }] }");

    /* the unique index makes a duplicate key write error */
    bson_t *d = tu_bson("{ _id: 2, email: 'a@x' }");
    const bson_t *docs[] = {d};
    bson_reinit(&reply);
    assert_int_equal(mk_backend_insert_many(be, NULL, "test", "c", docs, 1, NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_DUPLICATE_KEY);
    assert_non_null(strstr(err.message, "email_1"));

    /* hint through the find options; explain shows the index */
    bson_t *f = tu_bson("{ email: 'a@x' }");
    bson_t *o = tu_bson("{ hint: 'email_1' }");
    assert_cursor(mk_backend_find(be, NULL, "test", "c", f, o, &err),
                  "{ v: [{ _id: 1, email: 'a@x' }] }");
    bson_t *ex = tu_bson("{ find: 'c', filter: { email: 'a@x' } }");
    bson_reinit(&reply);
    assert_int_equal(mk_backend_explain(be, NULL, "test", ex, "executionStats", &reply, &err),
                     MK_OK);
    char *json = bson_as_relaxed_extended_json(&reply, NULL);
    assert_non_null(strstr(json, "IXSCAN"));
    assert_non_null(strstr(json, "email_1"));
    assert_true(has(&reply, "executionStats.nReturned"));
    bson_free(json);
    bson_reinit(&reply);
    assert_int_equal(mk_backend_explain(be, NULL, "test", ex, "loud", &reply, &err), MK_ERR);
    assert_int_equal(mk_backend_explain(be, NULL, "test", NULL, NULL, &reply, &err), MK_ERR);

    /* drop one by name, then all */
    assert_int_equal(mk_backend_drop_indexes(be, NULL, "test", "c", "email_1", NULL, &err), MK_OK);
    assert_cursor(mk_backend_list_indexes(be, NULL, "test", "c", &err),
                  "{ v: [{ v: 2, key: { _id: 1 }, name: '_id_' },"
                  "      { v: 2, key: { n: -1 }, name: 'n_-1' }] }");
    assert_int_equal(mk_backend_drop_indexes(be, NULL, "test", "c", "email_1", NULL, &err), MK_ERR);
    assert_int_equal(err.code, 27); /* IndexNotFound */
    assert_int_equal(mk_backend_drop_indexes(be, NULL, "test", "c", "*", NULL, &err), MK_OK);
    assert_cursor(mk_backend_list_indexes(be, NULL, "test", "c", &err),
                  "{ v: [{ v: 2, key: { _id: 1 }, name: '_id_' }] }");

    /* bad specs */
    bson_t *badspec = tu_arr("[{ name: 'no_key' }]");
    bson_reinit(&reply);
    assert_int_equal(mk_backend_create_indexes(be, NULL, "test", "c", badspec, NULL, &reply, &err),
                     MK_ERR);
    assert_true(err.code != 0);
    assert_null(mk_backend_list_indexes(be, NULL, "test", "nothing", &err));
    assert_int_equal(err.code, MK_CODE_NAMESPACE_NOT_FOUND);

    bson_destroy(badspec);
    bson_destroy(ex);
    bson_destroy(o);
    bson_destroy(f);
    bson_destroy(d);
    bson_destroy(specs);
    bson_destroy(&reply);
}

static void test_collections(void **state)
{
    insert(NULL, "alpha", "[{ _id: 1 }]");
    insert(NULL, "beta", "[{ _id: 1 }]");
    mk_error_t err = {0};
    bson_t *o = tu_bson("{ nameOnly: true }");
    mk_backend_cursor_t *c = mk_backend_list_collections(be, NULL, "test", NULL, o, &err);
    assert_non_null(c);
    const bson_t *doc;
    int n = 0, rc;
    bool alpha = false, beta = false;
    while ((rc = mk_backend_cursor_next(c, &doc, &err)) == 1) {
        bson_iter_t it;
        assert_true(bson_iter_init_find(&it, doc, "name"));
        alpha |= strcmp(bson_iter_utf8(&it, NULL), "alpha") == 0;
        beta |= strcmp(bson_iter_utf8(&it, NULL), "beta") == 0;
        n++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, 2);
    assert_true(alpha && beta);
    mk_backend_cursor_destroy(c);

    bson_t *f = tu_bson("{ name: 'beta' }");
    assert_cursor(mk_backend_list_collections(be, NULL, "test", f, o, &err),
                  "{ v: [{ name: 'beta', type: 'collection' }] }");

    assert_int_equal(mk_backend_drop_collection(be, NULL, "test", "beta", NULL, &err), MK_OK);
    assert_cursor(mk_backend_list_collections(be, NULL, "test", f, o, &err), "{ v: [] }");
    assert_int_equal(count(NULL, "alpha"), 1);

    insert(NULL, "gamma", "[{ _id: 1 }]");
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(mk_backend_drop_database(be, NULL, "test", &reply, &err), MK_OK);
    assert_cursor(mk_backend_list_collections(be, NULL, "test", NULL, o, &err), "{ v: [] }");

    bson_t *ping = tu_bson("{ ping: 1 }");
    bson_reinit(&reply);
    assert_int_equal(mk_backend_run_command(be, NULL, "admin", ping, &reply, &err), MK_OK);
    tu_assert_bson_eq(&reply, "{ ok: 1 }");
    bson_t *nope = tu_bson("{ noSuchCommand: 1 }");
    bson_reinit(&reply);
    assert_int_equal(mk_backend_run_command(be, NULL, "admin", nope, &reply, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_COMMAND_NOT_FOUND);
    assert_string_equal(err.kind, "CommandNotFound");
    assert_int_equal(tu_get_int(&reply, "code"), MK_CODE_COMMAND_NOT_FOUND);
    bson_destroy(nope);
    bson_destroy(ping);
    bson_destroy(&reply);
    bson_destroy(f);
    bson_destroy(o);
}

/* ---------------------------------------------------------------------- transactions */

static void test_transaction_commit(void **state)
{
    insert(NULL, "acct", "[{ _id: 'a', bal: 100 }, { _id: 'b', bal: 0 }]");
    mk_error_t err = {0};
    mk_backend_session_t *s = mk_backend_session_start(be, &err);
    assert_non_null(s);
    assert_false(mk_backend_in_transaction(s));
    assert_int_equal(mk_backend_start_transaction(s, NULL, &err), MK_OK);
    assert_true(mk_backend_in_transaction(s));
    assert_int_equal(mk_backend_start_transaction(s, NULL, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_ILLEGAL_OPERATION);

    bson_t *fa = tu_bson("{ _id: 'a' }"), *fb = tu_bson("{ _id: 'b' }");
    bson_t *ua = tu_bson("{ $inc: { bal: -30 } }"), *ub = tu_bson("{ $inc: { bal: 30 } }");
    assert_int_equal(mk_backend_update(be, s, "test", "acct", fa, ua, 0, NULL, NULL, &err), MK_OK);
    assert_int_equal(mk_backend_update(be, s, "test", "acct", fb, ub, 0, NULL, NULL, &err), MK_OK);
    insert(s, "log", "[{ _id: 1, what: 'transfer' }]");
    /* the session sees its writes, through a cursor too */
    assert_find(s, "acct", "{}", "{ batchSize: 1 }",
                "{ v: [{ _id: 'a', bal: 70 }, { _id: 'b', bal: 30 }] }");
    assert_int_equal(count(s, "log"), 1);
    assert_int_equal(mk_backend_commit_transaction(s, &err), MK_OK);
    assert_false(mk_backend_in_transaction(s));
    assert_find(NULL, "acct", "{}", NULL, "{ v: [{ _id: 'a', bal: 70 }, { _id: 'b', bal: 30 }] }");
    assert_int_equal(count(NULL, "log"), 1);
    assert_int_equal(mk_backend_commit_transaction(s, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_NO_SUCH_TRANSACTION);

    /* options a driver sends are accepted; others are named */
    bson_t *txo = tu_bson("{ readConcern: { level: 'snapshot' }, writeConcern: { w: 1 } }");
    assert_int_equal(mk_backend_start_transaction(s, txo, &err), MK_OK);
    assert_int_equal(mk_backend_abort_transaction(s, &err), MK_OK);
    bson_t *badtxo = tu_bson("{ readPreference: 'secondary' }");
    assert_int_equal(mk_backend_start_transaction(s, badtxo, &err), MK_ERR);
    assert_non_null(strstr(err.message, "readPreference"));
    assert_false(mk_backend_in_transaction(s));

    /* outside a transaction, the session's operations apply at once */
    assert_int_equal(mk_backend_update(be, s, "test", "acct", fa, ua, 0, NULL, NULL, &err), MK_OK);
    assert_find(NULL, "acct", "{ _id: 'a' }", NULL, "{ v: [{ _id: 'a', bal: 40 }] }");

    mk_backend_session_end(s);
    bson_destroy(txo);
    bson_destroy(badtxo);
    bson_destroy(fa);
    bson_destroy(fb);
    bson_destroy(ua);
    bson_destroy(ub);
}

static void test_transaction_abort(void **state)
{
    insert(NULL, "acct", "[{ _id: 'a', bal: 100 }]");
    mk_error_t err = {0};
    mk_backend_session_t *s = mk_backend_session_start(be, &err);
    assert_non_null(s);
    assert_int_equal(mk_backend_start_transaction(s, NULL, &err), MK_OK);
    bson_t *fa = tu_bson("{ _id: 'a' }"), *ua = tu_bson("{ $set: { bal: 0 } }");
    assert_int_equal(mk_backend_update(be, s, "test", "acct", fa, ua, 0, NULL, NULL, &err), MK_OK);
    insert(s, "acct", "[{ _id: 'b', bal: 5 }]");
    assert_int_equal(mk_backend_delete(be, s, "test", "acct", fa, MK_BE_MULTI, NULL, NULL, &err),
                     MK_OK);
    assert_int_equal(count(s, "acct"), 1);
    assert_int_equal(mk_backend_abort_transaction(s, &err), MK_OK);
    assert_find(NULL, "acct", "{}", NULL, "{ v: [{ _id: 'a', bal: 100 }] }");
    assert_int_equal(mk_backend_abort_transaction(s, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_NO_SUCH_TRANSACTION);

    /* a duplicate key inside a transaction: a write error, and the transaction is over */
    assert_int_equal(mk_backend_start_transaction(s, NULL, &err), MK_OK);
    insert(s, "acct", "[{ _id: 'c' }]");
    bson_t *dup = tu_bson("{ _id: 'a' }");
    const bson_t *docs[] = {dup};
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(mk_backend_insert_many(be, s, "test", "acct", docs, 1, NULL, &reply, &err),
                     MK_OK);
    assert_int_equal(mk_backend_first_write_error(&reply, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_DUPLICATE_KEY);
    assert_find(NULL, "acct", "{}", NULL, "{ v: [{ _id: 'a', bal: 100 }] }");
    /* the transaction is over on the server; the session is in it until it is ended, and a
     * later statement fails rather than running outside it */
    assert_true(mk_backend_in_transaction(s));
    bson_t *late = tu_bson("{ _id: 'late' }");
    const bson_t *late_docs[] = {late};
    bson_t late_reply = BSON_INITIALIZER;
    assert_int_equal(
        mk_backend_insert_many(be, s, "test", "acct", late_docs, 1, NULL, &late_reply, &err),
        MK_ERR);
    assert_int_equal(err.code, MK_CODE_NO_SUCH_TRANSACTION);
    bson_destroy(&late_reply);
    bson_destroy(late);
    mk_backend_abort_transaction(s, NULL);
    assert_false(mk_backend_in_transaction(s));
    assert_find(NULL, "acct", "{}", NULL, "{ v: [{ _id: 'a', bal: 100 }] }");

    /* ending a session aborts its open transaction */
    assert_int_equal(mk_backend_start_transaction(s, NULL, &err), MK_OK);
    insert(s, "acct", "[{ _id: 'd' }]");
    mk_backend_session_end(s);
    assert_int_equal(count(NULL, "acct"), 1);

    bson_destroy(&reply);
    bson_destroy(dup);
    bson_destroy(fa);
    bson_destroy(ua);
}

static void test_constructor(void **state)
{
    mk_error_t err = {0};
    assert_null(mk_backend_embedded_new(NULL, &err));
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    mk_backend_destroy(NULL);
    mk_backend_session_end(NULL);
    mk_backend_cursor_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_and_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_write_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_and_modify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts_and_distinct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aggregate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indexes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transaction_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transaction_abort, setup, teardown),
        cmocka_unit_test(test_constructor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
