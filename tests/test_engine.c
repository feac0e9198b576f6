/* End-to-end tests of the engine's command layer: MongoDB's commands, reply shapes, errors. */
#include "testutil.h"

#include <string.h>
#include <unistd.h>

#include "bson/path.h"

static mk_engine_t *eng;
static char *dir;

static int setup(void **state)
{
    dir = tu_tmpdir("engine");
    mk_error_t err = {0};
    eng = mk_engine_open(dir, &(mk_engine_opts_t){.no_sync = true}, &err);
    if (!eng) fail_msg("open: %s", err.message);
    return 0;
}

static int teardown(void **state)
{
    mk_engine_close(eng);
    tu_rmdir(dir);
    free(dir);
    return 0;
}

/* Runs a command; the reply is returned (caller destroys). */
static bson_t *run(const char *json)
{
    bson_t *cmd = tu_bson(json);
    bson_t *reply = bson_new();
    mk_error_t err = {0};
    mk_engine_command(eng, "test", cmd, reply, &err);
    bson_destroy(cmd);
    return reply;
}

static void ok(const char *json)
{
    bson_t *r = run(json);
    bson_iter_t it;
    if (!bson_iter_init_find(&it, r, "ok") || bson_iter_as_double(&it) != 1.0) {
        char *s = bson_as_relaxed_extended_json(r, NULL);
        fail_msg("command failed: %s\n  reply: %s", json, s);
    }
    bson_destroy(r);
}

/* Asserts the value at `path` of doc equals the relaxed JSON value in `expect_doc`'s field v. */
static void assert_field(const bson_t *doc, const char *path, const char *expect_doc)
{
    bson_iter_t it;
    bson_t *e = tu_bson(expect_doc);
    bson_iter_t eit;
    assert_true(bson_iter_init_find(&eit, e, "v"));
    if (!mk_path_get(doc, path, &it)) {
        char *s = bson_as_relaxed_extended_json(doc, NULL);
        fail_msg("no field %s in %s", path, s);
    }
    bson_t a = BSON_INITIALIZER;
    bson_append_value(&a, "v", 1, bson_iter_value(&it));
    tu_assert_bson_eq(&a, expect_doc);
    bson_destroy(&a);
    bson_destroy(e);
}

static void assert_error(const char *json, int code, const char *msg_part)
{
    bson_t *r = run(json);
    assert_int_equal(tu_get_int(r, "ok"), 0);
    if (tu_get_int(r, "code") != code || (msg_part && !strstr(tu_get_str(r, "errmsg"), msg_part))) {
        char *s = bson_as_relaxed_extended_json(r, NULL);
        fail_msg("expected error %d '%s' for %s\n  got: %s", code, msg_part ? msg_part : "", json,
                 s);
    }
    bson_destroy(r);
}

static void test_insert_find(void **state)
{
    ok("{ drop: 'users' }");
    bson_t *r = run("{ insert: 'users', documents: [ { _id: 1, name: 'Ann', age: 30 },"
                    " { _id: 2, name: 'Bob', age: 25 }, { name: 'Cy', age: 41 } ] }");
    tu_assert_bson_eq(r, "{ n: 3, ok: 1.0 }");
    bson_destroy(r);
    r = run("{ find: 'users', filter: { age: { $gte: 26 } }, sort: { age: -1 }, projection: { _id: "
            "0, name: 1 } }");
    assert_field(r, "cursor.firstBatch", "{ v: [ { name: 'Cy' }, { name: 'Ann' } ] }");
    assert_int_equal(tu_get_int(r, "cursor.id"), 0);
    assert_string_equal(tu_get_str(r, "cursor.ns"), "test.users");
    bson_destroy(r);
    /* generated _id is an ObjectId and comes first */
    r = run("{ find: 'users', filter: { name: 'Cy' } }");
    bson_iter_t it;
    assert_true(mk_path_get(r, "cursor.firstBatch.0._id", &it));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_OID);
    bson_destroy(r);
}

static void test_duplicate_key(void **state)
{
    ok("{ drop: 'dups' }");
    ok("{ insert: 'dups', documents: [ { _id: 1 } ] }");
    bson_t *r = run("{ insert: 'dups', documents: [ { _id: 2 }, { _id: 1.0 }, { _id: 3 } ] }");
    assert_int_equal(tu_get_int(r, "n"), 1); /* ordered: stops at the duplicate */
    assert_int_equal(tu_get_int(r, "writeErrors.0.index"), 1);
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 11000);
    assert_string_equal(
        tu_get_str(r, "writeErrors.0.errmsg"),
        "E11000 duplicate key error collection: test.dups index: _id_ dup key: { _id: 1.0 }");
    assert_field(r, "writeErrors.0.keyValue", "{ v: { _id: 1 } }");
    bson_destroy(r);
    r = run("{ insert: 'dups', documents: [ { _id: 1 }, { _id: 4 }, { _id: 2 }, { _id: 5 } ], "
            "ordered: false }");
    assert_int_equal(tu_get_int(r, "n"), 2);
    assert_int_equal(tu_get_int(r, "writeErrors.1.index"), 2);
    bson_destroy(r);
    r = run("{ count: 'dups' }");
    assert_int_equal(tu_get_int(r, "n"), 4); /* 1, 2, 4, 5 */
    bson_destroy(r);
}

static void test_get_more(void **state)
{
    ok("{ drop: 'many' }");
    bson_t *docs = bson_new();
    for (int i = 0; i < 250; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        bson_t d;
        bson_append_document_begin(docs, k, -1, &d);
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_INT32(&d, "odd", i % 2);
        bson_append_document_end(docs, &d);
    }
    bson_t *cmd = bson_new();
    BSON_APPEND_UTF8(cmd, "insert", "many");
    BSON_APPEND_ARRAY(cmd, "documents", docs);
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(mk_engine_command(eng, "test", cmd, &reply, NULL), MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 250);
    bson_destroy(&reply);
    bson_destroy(cmd);
    bson_destroy(docs);

    bson_t *r = run("{ find: 'many', filter: { odd: 1 } }");
    int64_t id = tu_get_int(r, "cursor.id");
    assert_true(id != 0);
    bson_iter_t it, arr;
    assert_true(mk_path_get(r, "cursor.firstBatch", &it));
    bson_iter_recurse(&it, &arr);
    int n = 0;
    while (bson_iter_next(&arr)) n++;
    assert_int_equal(n, 101);
    bson_destroy(r);

    char buf[200];
    snprintf(buf, sizeof buf, "{ getMore: NumberLong('%lld'), collection: 'many', batchSize: 10 }",
             (long long)id);
    r = run(buf);
    assert_int_equal(tu_get_int(r, "cursor.id"), id);
    assert_int_equal(tu_get_int(r, "cursor.nextBatch.0._id"), 203);
    assert_int_equal(tu_get_int(r, "cursor.nextBatch.9._id"), 221);
    bson_destroy(r);
    snprintf(buf, sizeof buf, "{ getMore: NumberLong('%lld'), collection: 'many' }", (long long)id);
    r = run(buf);
    assert_int_equal(tu_get_int(r, "cursor.id"), 0);
    assert_int_equal(tu_get_int(r, "cursor.nextBatch.13._id"), 249);
    bson_destroy(r);
    assert_error(buf, 43, "not found");

    /* limit + skip + sort through batches */
    r = run("{ find: 'many', sort: { _id: -1 }, skip: 5, limit: 3 }");
    assert_field(r, "cursor.firstBatch",
                 "{ v: [ { _id: 244, odd: 0 }, { _id: 243, odd: 1 }, { _id: 242, odd: 0 } ] }");
    assert_int_equal(tu_get_int(r, "cursor.id"), 0);
    bson_destroy(r);
    r = run("{ find: 'many', skip: 248, batchSize: 1 }");
    id = tu_get_int(r, "cursor.id");
    assert_int_equal(tu_get_int(r, "cursor.firstBatch.0._id"), 248);
    bson_destroy(r);
    snprintf(buf, sizeof buf,
             "{ killCursors: 'many', cursors: [ NumberLong('%lld'), NumberLong(7) ] }",
             (long long)id);
    r = run(buf);
    assert_int_equal(tu_get_int(r, "cursorsKilled.0"), id);
    assert_int_equal(tu_get_int(r, "cursorsNotFound.0"), 7);
    bson_destroy(r);
}

static void test_update(void **state)
{
    ok("{ drop: 'u' }");
    ok("{ insert: 'u', documents: [ { _id: 1, n: 1, tags: ['a'] }, { _id: 2, n: 2 }, { _id: 3, n: "
       "3 } ] }");
    bson_t *r = run("{ update: 'u', updates: [ { q: { n: { $gte: 2 } }, u: { $inc: { n: 10 } }, "
                    "multi: true } ] }");
    tu_assert_bson_eq(r, "{ n: 2, nModified: 2, ok: 1.0 }");
    bson_destroy(r);
    /* setting the same value matches but does not modify */
    r = run("{ update: 'u', updates: [ { q: { _id: 1 }, u: { $set: { n: 1 } } } ] }");
    tu_assert_bson_eq(r, "{ n: 1, nModified: 0, ok: 1.0 }");
    bson_destroy(r);
    r = run("{ update: 'u', updates: [ { q: { _id: 9, k: 'x' }, u: { $set: { y: 1 } }, upsert: "
            "true } ] }");
    tu_assert_bson_eq(r, "{ n: 1, nModified: 0, upserted: [ { index: 0, _id: 9 } ], ok: 1.0 }");
    bson_destroy(r);
    r = run("{ find: 'u', filter: { _id: 9 } }");
    assert_field(r, "cursor.firstBatch.0", "{ v: { _id: 9, k: 'x', y: 1 } }");
    bson_destroy(r);
    /* replacement keeps _id */
    ok("{ update: 'u', updates: [ { q: { _id: 2 }, u: { z: true } } ] }");
    r = run("{ find: 'u', filter: { _id: 2 } }");
    assert_field(r, "cursor.firstBatch.0", "{ v: { _id: 2, z: true } }");
    bson_destroy(r);
    /* positional $ */
    ok("{ update: 'u', updates: [ { q: { tags: 'a' }, u: { $set: { 'tags.$': 'b' } } } ] }");
    r = run("{ find: 'u', filter: { _id: 1 } }");
    assert_field(r, "cursor.firstBatch.0.tags", "{ v: ['b'] }");
    bson_destroy(r);
    /* errors are write errors */
    r = run("{ update: 'u', updates: [ { q: { _id: 1 }, u: { $set: { _id: 5 } } } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 66);
    assert_int_equal(tu_get_int(r, "nModified"), 0);
    bson_destroy(r);
    r = run("{ update: 'u', updates: [ { q: { _id: 1 }, u: { $inc: { tags: 1 } } } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 14);
    bson_destroy(r);
    r = run("{ update: 'u', updates: [ { q: {}, u: { a: 1 }, multi: true } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 9);
    bson_destroy(r);
}

static void test_delete_count_distinct(void **state)
{
    ok("{ drop: 'd' }");
    ok("{ insert: 'd', documents: [ { _id: 1, t: ['x', 'y'], g: 'a' }, { _id: 2, t: 'x', g: 'b' },"
       " { _id: 3, g: 'a' }, { _id: 4, t: null, g: 'c' } ] }");
    bson_t *r = run("{ distinct: 'd', key: 't' }");
    tu_assert_bson_eq(r, "{ values: [ null, 'x', 'y' ], ok: 1.0 }");
    bson_destroy(r);
    r = run("{ count: 'd', query: { g: 'a' } }");
    assert_int_equal(tu_get_int(r, "n"), 2);
    bson_destroy(r);
    r = run("{ delete: 'd', deletes: [ { q: { g: 'a' }, limit: 1 } ] }");
    tu_assert_bson_eq(r, "{ n: 1, ok: 1.0 }");
    bson_destroy(r);
    r = run("{ delete: 'd', deletes: [ { q: {}, limit: 0 } ] }");
    tu_assert_bson_eq(r, "{ n: 3, ok: 1.0 }");
    bson_destroy(r);
    r = run("{ delete: 'd', deletes: [ { q: {}, limit: 5 } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 9);
    bson_destroy(r);
}

static void test_find_and_modify(void **state)
{
    ok("{ drop: 'f' }");
    ok("{ insert: 'f', documents: [ { _id: 1, v: 5 }, { _id: 2, v: 3 } ] }");
    bson_t *r = run(
        "{ findAndModify: 'f', query: {}, sort: { v: 1 }, update: { $inc: { v: 1 } }, new: true }");
    assert_field(r, "value", "{ v: { _id: 2, v: 4 } }");
    assert_field(r, "lastErrorObject", "{ v: { n: 1, updatedExisting: true } }");
    bson_destroy(r);
    r = run("{ findAndModify: 'f', query: { _id: 1 }, update: { $set: { v: 0 } }, fields: { _id: 0 "
            "} }");
    assert_field(r, "value", "{ v: { v: 5 } }");
    bson_destroy(r);
    r = run("{ findAndModify: 'f', query: { _id: 7 }, update: { $set: { v: 7 } }, upsert: true, "
            "new: true }");
    assert_field(r, "value", "{ v: { _id: 7, v: 7 } }");
    assert_field(r, "lastErrorObject", "{ v: { n: 1, updatedExisting: false, upserted: 7 } }");
    bson_destroy(r);
    r = run("{ findAndModify: 'f', query: { _id: 7 }, remove: true }");
    assert_field(r, "value", "{ v: { _id: 7, v: 7 } }");
    bson_destroy(r);
    r = run("{ findAndModify: 'f', query: { _id: 7 }, remove: true }");
    assert_field(r, "value", "{ v: null }");
    assert_field(r, "lastErrorObject", "{ v: { n: 0 } }");
    bson_destroy(r);
    assert_error("{ findAndModify: 'f', query: {}, remove: true, update: { $set: { a: 1 } } }", 9,
                 "both");
}

static void test_admin(void **state)
{
    ok("{ drop: 'c1' }");
    ok("{ create: 'c1' }");
    assert_error("{ create: 'c1' }", 48, "already exists");
    assert_error("{ create: 'c2', capped: true, size: 100 }", 2, "capped");
    bson_t *r = run("{ listCollections: 1, filter: { name: 'c1' } }");
    assert_string_equal(tu_get_str(r, "cursor.firstBatch.0.name"), "c1");
    assert_string_equal(tu_get_str(r, "cursor.firstBatch.0.type"), "collection");
    bson_destroy(r);
    r = run("{ listDatabases: 1, nameOnly: true }");
    assert_string_equal(tu_get_str(r, "databases.0.name"), "test");
    bson_destroy(r);
    ok("{ ping: 1 }");
    r = run("{ hello: 1 }");
    assert_int_equal(tu_get_int(r, "maxBsonObjectSize"), 16777216);
    bson_destroy(r);
    assert_error("{ frobnicate: 1 }", 59, "no such command: 'frobnicate'");
    assert_error("{ find: 'x', bogus: 1 }", 40415, "unknown field");
    assert_error("{ find: 'x', filter: { a: { $foo: 1 } } }", 2, "unknown operator: $foo");
    assert_error("{ find: 'x', filter: { $where: 'true' } }", 2, "$where");
    assert_error("{ insert: 'bad$name', documents: [ {} ] }", 73, NULL);
    ok("{ dropDatabase: 1 }");
    r = run("{ listCollections: 1 }");
    assert_field(r, "cursor.firstBatch", "{ v: [] }");
    bson_destroy(r);
}

static void test_bad_documents(void **state)
{
    ok("{ drop: 'bad' }");
    bson_t *r = run("{ insert: 'bad', documents: [ { $set: 1 } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 52);
    bson_destroy(r);
    r = run("{ insert: 'bad', documents: [ { _id: [1, 2] } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 53);
    bson_destroy(r);
    r = run("{ insert: 'bad', documents: [ { a: { b: { $x: 1 } } } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 52);
    bson_destroy(r);
    /* depth limit */
    bson_t *doc = bson_new(), *cur = doc;
    bson_t stack[120];
    for (int i = 0; i < 110; i++) {
        bson_append_document_begin(cur, "a", 1, &stack[i]);
        cur = &stack[i];
    }
    for (int i = 109; i >= 0; i--) bson_append_document_end(i ? &stack[i - 1] : doc, &stack[i]);
    bson_t *cmd = bson_new();
    BSON_APPEND_UTF8(cmd, "insert", "bad");
    bson_t arr;
    bson_append_array_begin(cmd, "documents", -1, &arr);
    BSON_APPEND_DOCUMENT(&arr, "0", doc);
    bson_append_array_end(cmd, &arr);
    bson_t reply = BSON_INITIALIZER;
    mk_engine_command(eng, "test", cmd, &reply, NULL);
    assert_int_equal(tu_get_int(&reply, "writeErrors.0.code"), 15);
    bson_destroy(&reply);
    bson_destroy(cmd);
    bson_destroy(doc);
    r = run("{ count: 'bad' }");
    assert_int_equal(tu_get_int(r, "n"), 0);
    bson_destroy(r);
    /* invalid UTF-8 in a value or a field name (built with libbson, which does not check) */
    for (int which = 0; which < 2; which++) {
        bson_t *c2 = bson_new(), a2, d2;
        BSON_APPEND_UTF8(c2, "insert", "bad");
        bson_append_array_begin(c2, "documents", -1, &a2);
        bson_append_document_begin(&a2, "0", 1, &d2);
        if (which == 0)
            bson_append_utf8(&d2, "s", 1, "ok\xff\xfe", 4);
        else
            bson_append_int32(&d2, "k\xc3", 2, 1);
        bson_append_document_end(&a2, &d2);
        bson_append_array_end(c2, &a2);
        bson_t rep = BSON_INITIALIZER;
        assert_int_equal(mk_engine_command(eng, "test", c2, &rep, NULL), MK_OK);
        assert_int_equal(tu_get_int(&rep, "writeErrors.0.code"), 2);
        assert_non_null(strstr(tu_get_str(&rep, "writeErrors.0.errmsg"), "UTF-8"));
        bson_destroy(&rep);
        bson_destroy(c2);
    }
    r = run("{ count: 'bad' }");
    assert_int_equal(tu_get_int(r, "n"), 0);
    bson_destroy(r);
}

static void test_large_id(void **state)
{
    ok("{ drop: 'big' }");
    char *big = malloc(3000);
    memset(big, 'x', 2999);
    big[2999] = 0;
    char *json = malloc(6200);
    for (int i = 0; i < 3; i++) {
        big[2998] = (char)('a' + i);
        snprintf(json, 6200, "{ insert: 'big', documents: [ { _id: '%s', i: %d } ] }", big, i);
        ok(json);
    }
    snprintf(json, 6200, "{ insert: 'big', documents: [ { _id: '%s' } ] }", big);
    bson_t *r = run(json);
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 11000);
    bson_destroy(r);
    big[2998] = 'b';
    snprintf(json, 6200, "{ find: 'big', filter: { _id: '%s' } }", big);
    r = run(json);
    assert_int_equal(tu_get_int(r, "cursor.firstBatch.0.i"), 1);
    bson_destroy(r);
    r = run("{ find: 'big', sort: { i: -1 }, projection: { _id: 0 } }");
    assert_field(r, "cursor.firstBatch", "{ v: [ { i: 2 }, { i: 1 }, { i: 0 } ] }");
    bson_destroy(r);
    free(json);
    free(big);
}

static void test_persistence(void **state)
{
    ok("{ drop: 'p' }");
    ok("{ insert: 'p', documents: [ { _id: 'keep', v: 1 } ] }");
    mk_engine_close(eng);
    mk_error_t err = {0};
    eng = mk_engine_open(dir, NULL, &err);
    assert_non_null(eng);
    bson_t *r = run("{ find: 'p' }");
    assert_field(r, "cursor.firstBatch", "{ v: [ { _id: 'keep', v: 1 } ] }");
    bson_destroy(r);
}

static void test_cursor_timeout(void **state)
{
    char *d2 = tu_tmpdir("engine-timeout");
    mk_error_t err = {0};
    mk_engine_t *e2 =
        mk_engine_open(d2, &(mk_engine_opts_t){.no_sync = true, .cursor_timeout_ms = 50}, &err);
    assert_non_null(e2);
    bson_t *cmd = tu_bson("{ insert: 'c', documents: [ { _id: 1 }, { _id: 2 }, { _id: 3 } ] }");
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(mk_engine_command(e2, "test", cmd, &reply, &err), MK_OK);
    bson_destroy(cmd);
    bson_reinit(&reply);
    cmd = tu_bson("{ find: 'c', batchSize: 1 }");
    assert_int_equal(mk_engine_command(e2, "test", cmd, &reply, &err), MK_OK);
    bson_destroy(cmd);
    int64_t id = tu_get_int(&reply, "cursor.id");
    assert_true(id != 0);
    usleep(120 * 1000); /* idle past the timeout */
    char buf[128];
    snprintf(buf, sizeof buf, "{ getMore: NumberLong('%lld'), collection: 'c' }", (long long)id);
    cmd = tu_bson(buf);
    bson_reinit(&reply);
    assert_int_equal(mk_engine_command(e2, "test", cmd, &reply, &err), MK_ERR);
    assert_int_equal(err.code, 43);
    assert_string_equal(err.kind, "CursorNotFound");
    bson_destroy(cmd);
    bson_destroy(&reply);
    mk_engine_close(e2);
    tu_rmdir(d2);
    free(d2);
}

static void test_size_limit(void **state)
{
    ok("{ drop: 'big2' }");
    size_t n = 17 * 1024 * 1024;
    char *s = malloc(n);
    memset(s, 'x', n - 1);
    s[n - 1] = 0;
    bson_t *cmd = bson_new();
    BSON_APPEND_UTF8(cmd, "insert", "big2");
    bson_t arr, doc;
    bson_append_array_begin(cmd, "documents", -1, &arr);
    bson_append_document_begin(&arr, "0", 1, &doc);
    BSON_APPEND_UTF8(&doc, "s", s);
    bson_append_document_end(&arr, &doc);
    bson_append_document_begin(&arr, "1", 1, &doc);
    BSON_APPEND_INT32(&doc, "_id", 1);
    bson_append_document_end(&arr, &doc);
    bson_append_array_end(cmd, &arr);
    BSON_APPEND_BOOL(cmd, "ordered", false);
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(mk_engine_command(eng, "test", cmd, &reply, NULL), MK_OK);
    assert_int_equal(tu_get_int(&reply, "n"), 1);
    assert_int_equal(tu_get_int(&reply, "writeErrors.0.code"), 10334);
    bson_destroy(&reply);
    bson_destroy(cmd);
    /* an update that would grow a document past 16 MiB fails and changes nothing */
    s[10 * 1024 * 1024] = 0;
    cmd = bson_new();
    BSON_APPEND_UTF8(cmd, "update", "big2");
    bson_t ups, up, q, u, set;
    bson_append_array_begin(cmd, "updates", -1, &ups);
    bson_append_document_begin(&ups, "0", 1, &up);
    bson_append_document_begin(&up, "q", 1, &q);
    BSON_APPEND_INT32(&q, "_id", 1);
    bson_append_document_end(&up, &q);
    bson_append_document_begin(&up, "u", 1, &u);
    bson_append_document_begin(&u, "$set", 4, &set);
    BSON_APPEND_UTF8(&set, "a", s);
    BSON_APPEND_UTF8(&set, "b", s);
    bson_append_document_end(&u, &set);
    bson_append_document_end(&up, &u);
    bson_append_document_end(&ups, &up);
    bson_append_array_end(cmd, &ups);
    bson_init(&reply);
    assert_int_equal(mk_engine_command(eng, "test", cmd, &reply, NULL), MK_OK);
    assert_int_equal(tu_get_int(&reply, "nModified"), 0);
    assert_true(tu_get_int(&reply, "writeErrors.0.code") != 0);
    bson_destroy(&reply);
    bson_destroy(cmd);
    free(s);
    bson_t *r = run("{ find: 'big2' }");
    assert_field(r, "cursor.firstBatch", "{ v: [ { _id: 1 } ] }");
    bson_destroy(r);
}

static void test_expr_and_errors_in_find(void **state)
{
    ok("{ drop: 'e' }");
    ok("{ insert: 'e', documents: [ { _id: 1, a: 5, b: 3 }, { _id: 2, a: 1, b: 4 }, { _id: 3, a: "
       "2, b: 0 } ] }");
    bson_t *r = run("{ find: 'e', filter: { $expr: { $gt: ['$a', '$b'] } } }");
    assert_field(r, "cursor.firstBatch",
                 "{ v: [ { _id: 1, a: 5, b: 3 }, { _id: 3, a: 2, b: 0 } ] }");
    bson_destroy(r);
    /* a run-time expression error is an error, not a silent mismatch */
    r = run("{ find: 'e', filter: { $expr: { $gt: [ { $divide: ['$a', '$b'] }, 1 ] } } }");
    assert_int_equal(tu_get_int(r, "ok"), 0);
    bson_destroy(r);
    assert_error("{ find: 'e', collation: { locale: 'fr' } }", 2, "collation");
    assert_error("{ find: 'e', tailable: true }", 2, "tailable");
    assert_error("{ find: 'e', hint: 'nope_1' }", 2, "hint");
    assert_error("{ find: 'e', skip: -1 }", 51024, NULL);
    assert_error("{ find: 'e', limit: 'x' }", 14, NULL);
    r = run("{ update: 'e', updates: [ { q: {}, u: [ { $set: { a: 1 } } ] } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 2);
    assert_non_null(strstr(tu_get_str(r, "writeErrors.0.errmsg"), "pipeline"));
    bson_destroy(r);
}

static void test_max_time_ms(void **state)
{
    ok("{ drop: 'slow' }");
    /* strings that make /^(a+)+$/ backtrack for a while (milliseconds) on each document */
    bson_t *cmd = bson_new(), arr;
    BSON_APPEND_UTF8(cmd, "insert", "slow");
    bson_append_array_begin(cmd, "documents", -1, &arr);
    for (int i = 0; i < 40; i++) {
        char k[8];
        snprintf(k, sizeof k, "%d", i);
        bson_t d;
        bson_append_document_begin(&arr, k, -1, &d);
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_UTF8(&d, "s", "aaaaaaaaaaaaaaaaaaaaa!");
        bson_append_document_end(&arr, &d);
    }
    bson_append_array_end(cmd, &arr);
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(mk_engine_command(eng, "test", cmd, &reply, NULL), MK_OK);
    bson_destroy(&reply);
    bson_destroy(cmd);
    assert_error("{ find: 'slow', filter: { s: /^(a+)+$/ }, maxTimeMS: 1 }", 50,
                 "operation exceeded time limit");
    assert_error("{ count: 'slow', query: { s: /^(a+)+$/ }, maxTimeMS: 1 }", 50, NULL);
    bson_t *w =
        run("{ delete: 'slow', deletes: [ { q: { s: /^(a+)+$/ }, limit: 0 } ], maxTimeMS: 1 }");
    assert_int_equal(tu_get_int(w, "writeErrors.0.code"),
                     50); /* a write reports it per statement */
    assert_int_equal(tu_get_int(w, "n"), 0);
    bson_destroy(w);
    assert_error("{ find: 'slow', maxTimeMS: -5 }", 2, "maxTimeMS");
    /* a limit that is not reached changes nothing */
    bson_t *r = run("{ count: 'slow', maxTimeMS: 60000 }");
    assert_int_equal(tu_get_int(r, "n"), 40);
    bson_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_find),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_get_more),
        cmocka_unit_test(test_update),
        cmocka_unit_test(test_delete_count_distinct),
        cmocka_unit_test(test_find_and_modify),
        cmocka_unit_test(test_admin),
        cmocka_unit_test(test_bad_documents),
        cmocka_unit_test(test_large_id),
        cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_cursor_timeout),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_expr_and_errors_in_find),
        cmocka_unit_test(test_max_time_ms),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
