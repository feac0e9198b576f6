/* Secondary indexes: createIndexes/listIndexes/dropIndexes, unique constraints, maintenance on
 * every write, builds over existing data, and the validate command. */
#include "testutil.h"

#include <string.h>

#include "bson/path.h"
#include "bson/value.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static mk_engine_t *eng;
static char *dir;

static int setup(void **state)
{
    dir = tu_tmpdir("index");
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

static bson_t *run(const char *json)
{
    bson_t *cmd = tu_bson(json);
    bson_t *reply = bson_new();
    mk_engine_command(eng, "test", cmd, reply, NULL);
    bson_destroy(cmd);
    return reply;
}

static void ok(const char *json)
{
    bson_t *r = run(json);
    bson_iter_t it;
    if (!bson_iter_init_find(&it, r, "ok") || bson_iter_as_double(&it) != 1.0 ||
        bson_iter_init_find(&it, r, "writeErrors")) {
        char *s = bson_as_relaxed_extended_json(r, NULL);
        fail_msg("command failed: %s\n  reply: %s", json, s);
    }
    bson_destroy(r);
}

static void expect_error(const char *json, int code, const char *part)
{
    bson_t *r = run(json);
    int64_t got =
        tu_get_int(r, "ok") == 0 ? tu_get_int(r, "code") : tu_get_int(r, "writeErrors.0.code");
    const char *msg =
        tu_get_int(r, "ok") == 0 ? tu_get_str(r, "errmsg") : tu_get_str(r, "writeErrors.0.errmsg");
    if (got != code || (part && !strstr(msg, part)))
        fail_msg("expected %d '%s' for %s, got %lld '%s'", code, part ? part : "", json,
                 (long long)got, msg);
    bson_destroy(r);
}

static void assert_valid(const char *coll)
{
    char buf[128];
    snprintf(buf, sizeof buf, "{ validate: '%s' }", coll);
    bson_t *r = run(buf);
    bson_iter_t it;
    if (!bson_iter_init_find(&it, r, "valid") || !bson_iter_as_bool(&it)) {
        char *s = bson_as_relaxed_extended_json(r, NULL);
        fail_msg("validate failed: %s", s);
    }
    bson_destroy(r);
}

static void test_create_list_drop(void **state)
{
    ok("{ drop: 'users' }");
    bson_t *r = run("{ createIndexes: 'users', indexes: [ { key: { email: 1 }, name: 'email_1', "
                    "unique: true } ] }");
    tu_assert_bson_eq(r, "{ numIndexesBefore: 1, numIndexesAfter: 2, "
                         "createdCollectionAutomatically: true, ok: 1.0 }");
    bson_destroy(r);
    r = run("{ createIndexes: 'users', indexes: [ { key: { email: 1 }, name: 'email_1', unique: "
            "true } ] }");
    tu_assert_bson_eq(r, "{ numIndexesBefore: 2, numIndexesAfter: 2, note: 'all indexes already "
                         "exist', createdCollectionAutomatically: false, ok: 1.0 }");
    bson_destroy(r);
    /* default name; compound with mixed directions */
    ok("{ createIndexes: 'users', indexes: [ { key: { lastName: 1, firstName: -1 } } ] }");
    r = run("{ listIndexes: 'users' }");
    assert_string_equal(tu_get_str(r, "cursor.firstBatch.0.name"), "_id_");
    assert_string_equal(tu_get_str(r, "cursor.firstBatch.1.name"), "email_1");
    assert_int_equal(tu_get_int(r, "cursor.firstBatch.1.unique"), 1);
    assert_string_equal(tu_get_str(r, "cursor.firstBatch.2.name"), "lastName_1_firstName_-1");
    assert_string_equal(tu_get_str(r, "cursor.ns"), "test.users");
    bson_destroy(r);
    expect_error("{ createIndexes: 'users', indexes: [ { key: { other: 1 }, name: 'email_1' } ] }",
                 86, "same name");
    expect_error("{ createIndexes: 'users', indexes: [ { key: { email: 1 }, name: 'mail' , unique: "
                 "true } ] }",
                 85, "different name: email_1");
    expect_error("{ createIndexes: 'users', indexes: [ { key: { email: 1 }, name: 'email_1' } ] }",
                 85, NULL);
    expect_error("{ createIndexes: 'users', indexes: [ { key: { t: 'text' }, name: 't' } ] }", 2,
                 "not supported");
    expect_error("{ createIndexes: 'users', indexes: [ { key: { a: 1 }, name: 'a', collation: { "
                 "locale: 'fr' } } ] }",
                 2, "collation");
    expect_error("{ listIndexes: 'nope' }", 26, "ns does not exist");
    expect_error("{ dropIndexes: 'users', index: 'nope_1' }", 27,
                 "index not found with name [nope_1]");
    expect_error("{ dropIndexes: 'users', index: '_id_' }", 72, "cannot drop _id index");
    r = run("{ dropIndexes: 'users', index: { lastName: 1, firstName: -1 } }");
    assert_int_equal(tu_get_int(r, "nIndexesWas"), 3);
    bson_destroy(r);
    r = run("{ listIndexes: 'users' }");
    bson_iter_t it;
    assert_false(mk_path_get(r, "cursor.firstBatch.2", &it));
    bson_destroy(r);
    ok("{ dropIndexes: 'users', index: '*' }");
    r = run("{ listIndexes: 'users' }");
    assert_false(mk_path_get(r, "cursor.firstBatch.1", &it));
    bson_destroy(r);
}

static void test_unique(void **state)
{
    ok("{ drop: 'u' }");
    ok("{ createIndexes: 'u', indexes: [ { key: { email: 1 }, name: 'email_1', unique: true } ] }");
    ok("{ insert: 'u', documents: [ { _id: 1, email: 'a@b.c' }, { _id: 2, email: 'x@y.z' } ] }");
    bson_t *r = run("{ insert: 'u', documents: [ { _id: 3, email: 'a@b.c' } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 11000);
    assert_string_equal(tu_get_str(r, "writeErrors.0.errmsg"),
                        "E11000 duplicate key error collection: test.u index: email_1 dup key: { "
                        "email: \"a@b.c\" }");
    bson_destroy(r);
    /* the failed insert left nothing: neither record nor index entry */
    r = run("{ count: 'u' }");
    assert_int_equal(tu_get_int(r, "n"), 2);
    bson_destroy(r);
    assert_valid("u");
    /* an update onto a taken key fails and changes nothing */
    r = run("{ update: 'u', updates: [ { q: { _id: 2 }, u: { $set: { email: 'a@b.c' } } } ] }");
    assert_int_equal(tu_get_int(r, "writeErrors.0.code"), 11000);
    bson_destroy(r);
    r = run("{ find: 'u', filter: { _id: 2 } }");
    assert_string_equal(tu_get_str(r, "cursor.firstBatch.0.email"), "x@y.z");
    bson_destroy(r);
    /* moving a key frees the old one */
    ok("{ update: 'u', updates: [ { q: { _id: 1 }, u: { $set: { email: 'new@b.c' } } } ] }");
    ok("{ insert: 'u', documents: [ { _id: 3, email: 'a@b.c' } ] }");
    /* deleting frees it too */
    ok("{ delete: 'u', deletes: [ { q: { _id: 3 }, limit: 1 } ] }");
    ok("{ insert: 'u', documents: [ { _id: 4, email: 'a@b.c' } ] }");
    /* missing fields are null: two docs without email collide */
    ok("{ insert: 'u', documents: [ { _id: 5 } ] }");
    expect_error("{ insert: 'u', documents: [ { _id: 6 } ] }", 11000, "dup key: { email: null }");
    assert_valid("u");
}

static void test_unique_build_fails_cleanly(void **state)
{
    ok("{ drop: 'b' }");
    ok("{ insert: 'b', documents: [ { _id: 1, k: 1 }, { _id: 2, k: 2 }, { _id: 3, k: 1 } ] }");
    expect_error(
        "{ createIndexes: 'b', indexes: [ { key: { k: 1 }, name: 'k_1', unique: true } ] }", 11000,
        "index: k_1 dup key: { k: 1 }");
    bson_t *r = run("{ listIndexes: 'b' }");
    bson_iter_t it;
    assert_false(mk_path_get(r, "cursor.firstBatch.1", &it));
    bson_destroy(r);
    /* a non-unique build over the same data works and validates */
    ok("{ createIndexes: 'b', indexes: [ { key: { k: 1 }, name: 'k_1' } ] }");
    assert_valid("b");
}

static void test_multikey_sparse_partial(void **state)
{
    ok("{ drop: 'm' }");
    ok("{ createIndexes: 'm', indexes: [ { key: { tags: 1 }, name: 'tags_1' },"
       " { key: { s: 1 }, name: 's_1', sparse: true, unique: true },"
       " { key: { p: 1 }, name: 'p_1', unique: true, partialFilterExpression: { active: true } } ] "
       "}");
    ok("{ insert: 'm', documents: [ { _id: 1, tags: ['a', 'b', 'a'], p: 1 }, { _id: 2, tags: [], "
       "p: 1, active: true },"
       " { _id: 3, tags: 'c', s: 1, p: 1 } ] }");
    /* sparse unique: documents without s do not collide */
    ok("{ insert: 'm', documents: [ { _id: 4 } ] }");
    expect_error("{ insert: 'm', documents: [ { _id: 5, s: 1 } ] }", 11000, "s_1");
    /* partial unique: only active documents are constrained */
    ok("{ insert: 'm', documents: [ { _id: 6, p: 1 } ] }");
    expect_error("{ insert: 'm', documents: [ { _id: 7, p: 1, active: true } ] }", 11000, "p_1");
    assert_valid("m");
}

static void test_parallel_arrays(void **state)
{
    ok("{ drop: 'pa' }");
    ok("{ createIndexes: 'pa', indexes: [ { key: { a: 1, b: 1 }, name: 'a_1_b_1' } ] }");
    ok("{ insert: 'pa', documents: [ { _id: 1, a: [1, 2], b: 1 } ] }");
    expect_error("{ insert: 'pa', documents: [ { _id: 2, a: [1, 2], b: [1, 2] } ] }", 171,
                 "parallel arrays");
    bson_t *r = run("{ count: 'pa' }");
    assert_int_equal(tu_get_int(r, "n"), 1);
    bson_destroy(r);
    assert_valid("pa");
}

static void test_maintenance_under_many_writes(void **state)
{
    ok("{ drop: 'w' }");
    ok("{ createIndexes: 'w', indexes: [ { key: { a: 1 }, name: 'a_1' }, { key: { 'x.y': -1, a: 1 "
       "}, name: 'xy' },"
       " { key: { tags: 1 }, name: 'tags_1' } ] }");
    uint32_t seed = 12345;
    for (int i = 0; i < 400; i++) {
        seed = seed * 1103515245u + 12345u;
        int id = (int)(seed >> 8) % 60, v = (int)(seed >> 16) % 7;
        char buf[400];
        switch (seed % 5) {
        case 0:
            snprintf(buf, sizeof buf,
                     "{ insert: 'w', documents: [ { _id: %d, a: %d, x: { y: 'k%d' }, tags: ['t%d', "
                     "'t%d'] } ] }",
                     id, v, v, v, v + 1);
            break;
        case 1:
            snprintf(buf, sizeof buf,
                     "{ update: 'w', updates: [ { q: { _id: %d }, u: { $set: { a: %d, 'x.y': %d } "
                     "} } ] }",
                     id, v, v);
            break;
        case 2:
            snprintf(buf, sizeof buf,
                     "{ update: 'w', updates: [ { q: { a: %d }, u: { $push: { tags: 'p%d' } }, "
                     "multi: true } ] }",
                     v, v);
            break;
        case 3:
            snprintf(buf, sizeof buf, "{ delete: 'w', deletes: [ { q: { _id: %d }, limit: 1 } ] }",
                     id);
            break;
        default:
            snprintf(buf, sizeof buf,
                     "{ findAndModify: 'w', query: { _id: %d }, update: { _id: %d, a: %d }, "
                     "upsert: true }",
                     id, id, v);
            break;
        }
        bson_t *r = run(buf);
        bson_destroy(r);
    }
    assert_valid("w");
    /* indexes persist across reopen */
    mk_engine_close(eng);
    mk_error_t err = {0};
    eng = mk_engine_open(dir, NULL, &err);
    assert_non_null(eng);
    bson_t *r = run("{ listIndexes: 'w' }");
    assert_string_equal(tu_get_str(r, "cursor.firstBatch.3.name"), "tags_1");
    bson_destroy(r);
    assert_valid("w");
    ok("{ insert: 'w', documents: [ { _id: 1000, a: 1 } ] }");
    assert_valid("w");
}

static void test_ttl(void **state)
{
    char *d = tu_tmpdir("ttl");
    mk_error_t err = {0};
    mk_engine_t *e =
        mk_engine_open(d, &(mk_engine_opts_t){.no_sync = true, .ttl_interval_ms = 50}, &err);
    assert_non_null(e);
    int64_t now = (int64_t)time(NULL) * 1000;
    char buf[600];
    snprintf(buf, sizeof buf,
             "{ insert: 's', documents: [ { _id: 1, at: new Date(%lld) }, { _id: 2, at: new "
             "Date(%lld) },"
             " { _id: 3, at: 'not a date' }, { _id: 4 }, { _id: 5, at: [ new Date(%lld), new "
             "Date(%lld) ] } ] }",
             (long long)(now - 3600 * 1000), (long long)(now + 3600 * 1000),
             (long long)(now + 3600 * 1000), (long long)(now - 7200 * 1000));
    bson_t *cmd = tu_bson(buf), reply = BSON_INITIALIZER;
    assert_int_equal(mk_engine_command(e, "test", cmd, &reply, &err), MK_OK);
    bson_destroy(cmd);
    bson_reinit(&reply);
    cmd = tu_bson("{ createIndexes: 's', indexes: [ { key: { at: 1 }, name: 'at_1', "
                  "expireAfterSeconds: 60 } ] }");
    assert_int_equal(mk_engine_command(e, "test", cmd, &reply, &err), MK_OK);
    bson_destroy(cmd);
    /* the monitor runs every 50 ms here: wait for it */
    int64_t n = -1;
    for (int i = 0; i < 100 && n != 3; i++) {
        usleep(20 * 1000);
        bson_reinit(&reply);
        cmd = tu_bson("{ count: 's' }");
        assert_int_equal(mk_engine_command(e, "test", cmd, &reply, &err), MK_OK);
        bson_destroy(cmd);
        n = tu_get_int(&reply, "n");
    }
    assert_int_equal(n, 3); /* 1 (past) and 5 (earliest date past) expired; 2, 3, 4 stay */
    bson_reinit(&reply);
    cmd = tu_bson("{ find: 's', sort: { _id: 1 }, projection: { _id: 1 } }");
    assert_int_equal(mk_engine_command(e, "test", cmd, &reply, &err), MK_OK);
    bson_destroy(cmd);
    bson_t *want = tu_bson("{ v: [ { _id: 2 }, { _id: 3 }, { _id: 4 } ] }");
    bson_iter_t it, w;
    assert_true(mk_path_get(&reply, "cursor.firstBatch", &it));
    assert_true(bson_iter_init_find(&w, want, "v"));
    assert_int_equal(mk_value_cmp(bson_iter_value(&it), bson_iter_value(&w)), 0);
    bson_destroy(want);
    bson_destroy(&reply);
    mk_engine_close(e);
    tu_rmdir(d);
    free(d);
}

static void test_same_directory_twice(void **state)
{
    mk_error_t err = {0};
    mk_engine_t *again = mk_engine_open(dir, NULL, &err);
    assert_ptr_equal(again, eng); /* shared, not a second LMDB environment */
    bson_t *cmd = tu_bson("{ insert: 'twice', documents: [ { _id: 1 } ] }"),
           reply = BSON_INITIALIZER;
    assert_int_equal(mk_engine_command(again, "test", cmd, &reply, &err), MK_OK);
    bson_destroy(cmd);
    bson_destroy(&reply);
    mk_engine_close(again);
    ok("{ insert: 'twice', documents: [ { _id: 2 } ] }"); /* the first handle still works */
    assert_valid("twice");
}

/* Another process changes the indexes of a collection this process has cached: its writes
 * must maintain the new index (and stop maintaining a dropped one). */
static void test_other_process_ddl(void **state)
{
    ok("{ drop: 'mp' }");
    ok("{ insert: 'mp', documents: [ { _id: 1, k: 1 } ] }"); /* cached here, no index */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* not cmocka's handlers */
        signal(SIGABRT, SIG_DFL);
        mk_error_t err = {0};
        mk_engine_t *other = mk_engine_open(dir, NULL, &err);
        if (!other) _exit(2);
        bson_t *cmd = mk_json_parse(
            "{ createIndexes: 'mp', indexes: [ { key: { k: 1 }, name: 'k_1', unique: true } ] }",
            NULL, &err);
        bson_t reply = BSON_INITIALIZER;
        int rc = cmd ? mk_engine_command(other, "test", cmd, &reply, &err) : MK_ERR;
        mk_engine_close(other);
        _exit(rc == MK_OK ? 0 : 3);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* this process's next write sees the unique index */
    ok("{ insert: 'mp', documents: [ { _id: 2, k: 2 } ] }");
    expect_error("{ insert: 'mp', documents: [ { _id: 3, k: 1 } ] }", 11000, "k_1");
    assert_valid("mp");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_list_drop),
        cmocka_unit_test(test_unique),
        cmocka_unit_test(test_unique_build_fails_cleanly),
        cmocka_unit_test(test_multikey_sparse_partial),
        cmocka_unit_test(test_parallel_arrays),
        cmocka_unit_test(test_maintenance_under_many_writes),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_same_directory_twice),
        cmocka_unit_test(test_other_process_ddl),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
