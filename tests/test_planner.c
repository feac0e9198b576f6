/* The planner and explain: index scans chosen for equality, ranges, $in, prefixes and sorts,
 * the same results as a collection scan, MongoDB's explain shapes (the book's walkthrough). */
#include "testutil.h"

#include <string.h>

#include "bson/path.h"
#include "bson/value.h"

static mk_engine_t *eng;
static char *dir;

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

static int setup(void **state)
{
    dir = tu_tmpdir("planner");
    mk_error_t err = {0};
    eng = mk_engine_open(dir, &(mk_engine_opts_t){.no_sync = true}, &err);
    if (!eng) fail_msg("open: %s", err.message);
    /* 1200 users: the book's example in small */
    bson_t *cmd = bson_new(), arr;
    BSON_APPEND_UTF8(cmd, "insert", "users");
    bson_append_array_begin(cmd, "documents", -1, &arr);
    for (int i = 0; i < 1200; i++) {
        char k[16], email[32], tag[8];
        snprintf(k, sizeof k, "%d", i);
        snprintf(email, sizeof email, "u%04d@x.io", i);
        bson_t d, tags;
        bson_append_document_begin(&arr, k, -1, &d);
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_UTF8(&d, "firstName", "Agent");
        BSON_APPEND_UTF8(&d, "lastName", i == 1199 ? "Brown" : "Smith");
        if (i == 1198) BSON_APPEND_UTF8(&d, "test", "test");
        BSON_APPEND_UTF8(&d, "email", email);
        if (i % 10)
            BSON_APPEND_INT32(&d, "age", i % 90);
        else if (i % 20 == 0)
            BSON_APPEND_NULL(&d, "age");
        bson_append_array_begin(&d, "tags", -1, &tags);
        snprintf(tag, sizeof tag, "t%d", i % 7);
        BSON_APPEND_UTF8(&tags, "0", tag);
        snprintf(tag, sizeof tag, "t%d", i % 5);
        BSON_APPEND_UTF8(&tags, "1", tag);
        bson_append_array_end(&d, &tags);
        bson_append_document_end(&arr, &d);
    }
    bson_append_array_end(cmd, &arr);
    bson_t reply = BSON_INITIALIZER;
    if (mk_engine_command(eng, "test", cmd, &reply, &err) != MK_OK) fail_msg("%s", err.message);
    bson_destroy(&reply);
    bson_destroy(cmd);
    return 0;
}

static int teardown(void **state)
{
    mk_engine_close(eng);
    tu_rmdir(dir);
    free(dir);
    return 0;
}

static void test_book_walkthrough(void **state)
{
    /* without an index: COLLSCAN under LIMIT */
    bson_t *r = run("{ explain: { find: 'users', filter: { firstName: 'Agent', lastName: 'Smith' "
                    "}, limit: 1 } }");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.stage"), "LIMIT");
    assert_int_equal(tu_get_int(r, "queryPlanner.winningPlan.limitAmount"), 1);
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.stage"), "COLLSCAN");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.direction"), "forward");
    assert_string_equal(tu_get_str(r, "queryPlanner.namespace"), "test.users");
    bson_destroy(r);
    ok("{ createIndexes: 'users', indexes: [ { key: { firstName: 1, lastName: 1 }, name: "
       "'firstName_1_lastName_1' } ] }");
    r = run("{ explain: { find: 'users', filter: { firstName: 'Agent', lastName: 'Smith' }, limit: "
            "1 } }");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.stage"), "LIMIT");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.stage"), "FETCH");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.inputStage.stage"),
                        "IXSCAN");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.inputStage.indexName"),
                        "firstName_1_lastName_1");
    assert_string_equal(
        tu_get_str(r, "queryPlanner.winningPlan.inputStage.inputStage.indexBounds.firstName.0"),
        "[\"Agent\", \"Agent\"]");
    assert_string_equal(
        tu_get_str(r, "queryPlanner.winningPlan.inputStage.inputStage.indexBounds.lastName.0"),
        "[\"Smith\", \"Smith\"]");
    assert_int_equal(tu_get_int(r, "queryPlanner.winningPlan.inputStage.inputStage.isMultiKey"), 0);
    bson_destroy(r);
    /* executionStats: one result, found with one key */
    r = run("{ explain: { find: 'users', filter: { firstName: 'Agent', lastName: 'Brown' } }, "
            "verbosity: 'executionStats' }");
    assert_int_equal(tu_get_int(r, "executionStats.nReturned"), 1);
    assert_int_equal(tu_get_int(r, "executionStats.totalKeysExamined"), 1);
    assert_int_equal(tu_get_int(r, "executionStats.totalDocsExamined"), 1);
    assert_string_equal(tu_get_str(r, "executionStats.executionStages.inputStage.stage"), "IXSCAN");
    bson_destroy(r);
    /* poor specificity: the index yields 1199 keys for one result */
    r = run("{ explain: { find: 'users', filter: { firstName: 'Agent', lastName: 'Smith', test: "
            "'test' } }, verbosity: 'executionStats' }");
    assert_int_equal(tu_get_int(r, "executionStats.nReturned"), 1);
    assert_int_equal(tu_get_int(r, "executionStats.executionStages.inputStage.nReturned"), 1199);
    assert_int_equal(tu_get_int(r, "executionStats.totalDocsExamined"), 1199);
    bson_destroy(r);
}

/* The documents of a find, as an array, with and without forcing a collection scan. */
static bson_t *results(const char *filter, const char *extra, bool natural)
{
    char buf[600];
    snprintf(buf, sizeof buf, "{ find: 'users', filter: %s, batchSize: 5000 %s %s }", filter, extra,
             natural ? ", hint: { $natural: 1 }" : "");
    bson_t *r = run(buf);
    bson_iter_t it;
    if (!mk_path_get(r, "cursor.firstBatch", &it)) {
        char *s = bson_as_relaxed_extended_json(r, NULL);
        fail_msg("find failed: %s -> %s", buf, s);
    }
    bson_t *out = bson_new();
    bson_append_value(out, "v", 1, bson_iter_value(&it));
    bson_destroy(r);
    return out;
}

static void test_same_results_as_collscan(void **state)
{
    ok("{ createIndexes: 'users', indexes: [ { key: { age: 1 }, name: 'age_1' }, { key: { email: "
       "-1 }, name: 'email_-1' },"
       " { key: { tags: 1 }, name: 'tags_1' }, { key: { lastName: 1, age: -1 }, name: 'la' } ] }");
    static const char *filters[] = {
        "{ age: 30 }",
        "{ age: { $gte: 80 } }",
        "{ age: { $gt: 10, $lte: 12 } }",
        "{ age: null }",
        "{ age: { $in: [1, 2, 89, null] } }",
        "{ age: { $exists: false } }",
        "{ age: { $ne: 5 } }",
        "{ age: { $nin: [5, 6] } }",
        "{ age: { $lt: 'a' } }",
        "{ email: 'u0042@x.io' }",
        "{ email: /^u00[1-2]/ }",
        "{ email: { $gt: 'u1190' } }",
        "{ tags: 't3' }",
        "{ tags: { $all: ['t3', 't1'] } }",
        "{ tags: { $in: ['t6', 't4'] } }",
        "{ lastName: 'Smith', age: { $lt: 3 } }",
        "{ lastName: { $in: ['Brown', 'Smith'] }, age: 7 }",
        "{ age: { $not: { $gt: 5 } } }",
        "{ $or: [ { age: 3 }, { email: 'u0001@x.io' } ] }",
        "{ age: { $elemMatch: { $gt: 1 } } }",
        "{ tags: { $elemMatch: { $gt: 't5' } } }",
        "{ age: { $type: 'number', $lt: 4 } }",
    };
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        bson_t *a = results(filters[i], ", sort: { _id: 1 }", false);
        bson_t *b = results(filters[i], ", sort: { _id: 1 }", true);
        if (mk_bson_cmp(a, b) != 0) fail_msg("index and collection scan differ for %s", filters[i]);
        bson_destroy(a);
        bson_destroy(b);
    }
}

static void test_sort_from_index(void **state)
{
    bson_t *r =
        run("{ explain: { find: 'users', filter: { age: { $gte: 50 } }, sort: { age: -1 } } }");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.stage"),
                        "FETCH"); /* no SORT stage */
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.direction"), "backward");
    bson_destroy(r);
    /* the results really are sorted, across getMore batches */
    r = run("{ find: 'users', filter: { age: { $gte: 50 } }, sort: { age: -1 }, batchSize: 7, "
            "projection: { age: 1 } }");
    int64_t id = tu_get_int(r, "cursor.id");
    int64_t last = tu_get_int(r, "cursor.firstBatch.0.age");
    assert_int_equal(last, 89);
    int seen = 7;
    bson_destroy(r);
    while (id) {
        char buf[120];
        snprintf(buf, sizeof buf,
                 "{ getMore: NumberLong('%lld'), collection: 'users', batchSize: 50 }",
                 (long long)id);
        r = run(buf);
        id = tu_get_int(r, "cursor.id");
        bson_iter_t it, el;
        assert_true(mk_path_get(r, "cursor.nextBatch", &it));
        bson_iter_recurse(&it, &el);
        while (bson_iter_next(&el)) {
            bson_iter_t age;
            bson_iter_recurse(&el, &age);
            assert_true(bson_iter_find(&age, "age"));
            assert_true(bson_iter_as_int64(&age) <= last);
            last = bson_iter_as_int64(&age);
            seen++;
        }
        bson_destroy(r);
    }
    bson_t *c = run("{ count: 'users', query: { age: { $gte: 50 } } }");
    assert_int_equal(seen, tu_get_int(c, "n"));
    bson_destroy(c);
    /* a leading field pinned by equality need not be in the sort: { lastName: 1, age: -1 } */
    r = run("{ explain: { find: 'users', filter: { lastName: 'Smith' }, sort: { age: -1 } } }");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.stage"), "FETCH");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.indexName"), "la");
    bson_destroy(r);
    bson_t *a =
        results("{ lastName: 'Smith', age: { $gte: 85 } }", ", sort: { age: -1, _id: 1 }", false);
    bson_t *b =
        results("{ lastName: 'Smith', age: { $gte: 85 } }", ", sort: { age: -1, _id: 1 }", true);
    assert_int_equal(mk_bson_cmp(a, b), 0);
    bson_destroy(a);
    bson_destroy(b);
    a = results("{ lastName: 'Smith' }", ", sort: { age: -1 }, projection: { age: 1, _id: 0 }",
                false);
    b = results("{ lastName: 'Smith' }", ", sort: { age: -1 }, projection: { age: 1, _id: 0 }",
                true);
    assert_int_equal(mk_bson_cmp(a, b), 0); /* same order of ages (ties may differ in _id) */
    bson_destroy(a);
    bson_destroy(b);
}

static void test_hints_and_killed_cursors(void **state)
{
    bson_t *r = run("{ explain: { find: 'users', filter: { age: 3 }, hint: 'email_-1' } }");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.indexName"), "email_-1");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.indexBounds.email.0"),
                        "[MaxKey, MinKey]");
    bson_destroy(r);
    r = run("{ explain: { find: 'users', filter: { age: 3 }, hint: { age: 1 } } }");
    assert_string_equal(tu_get_str(r, "queryPlanner.winningPlan.inputStage.indexName"), "age_1");
    bson_destroy(r);
    r = run("{ find: 'users', filter: { age: 3 }, hint: 'nope' }");
    assert_int_equal(tu_get_int(r, "code"), 2);
    bson_destroy(r);
    /* a cursor over an index that is dropped is killed */
    ok("{ createIndexes: 'users', indexes: [ { key: { email: 1 }, name: 'email_1' } ] }");
    r = run("{ find: 'users', filter: { email: { $gte: 'u' } }, hint: 'email_1', batchSize: 2 }");
    int64_t id = tu_get_int(r, "cursor.id");
    bson_destroy(r);
    ok("{ dropIndexes: 'users', index: 'email_1' }");
    char buf[120];
    snprintf(buf, sizeof buf, "{ getMore: NumberLong('%lld'), collection: 'users' }",
             (long long)id);
    r = run(buf);
    assert_int_equal(tu_get_int(r, "code"), 175);
    bson_destroy(r);
}

static void test_min_max(void **state)
{
    bson_t *a = results(
        "{}", ", hint: 'age_1', min: { age: 10 }, max: { age: 12 }, sort: { _id: 1 }", false);
    bson_t *b = results("{ age: { $gte: 10, $lt: 12 } }", ", sort: { _id: 1 }", true);
    assert_int_equal(mk_bson_cmp(a, b), 0);
    bson_t *empty = tu_bson("{ v: [] }");
    assert_true(mk_bson_cmp(a, empty) != 0);
    bson_destroy(empty);
    bson_destroy(a);
    bson_destroy(b);
    bson_t *r = run("{ find: 'users', min: { age: 10 } }");
    assert_int_equal(tu_get_int(r, "code"), 51173);
    bson_destroy(r);
    r = run("{ find: 'users', hint: 'age_1', max: { email: 'x' } }");
    assert_int_equal(tu_get_int(r, "code"), 51174);
    bson_destroy(r);
}

static void test_writes_through_indexes(void **state)
{
    ok("{ update: 'users', updates: [ { q: { age: 33 }, u: { $inc: { age: 1000 } }, multi: true } "
       "] }");
    bson_t *r = run("{ count: 'users', query: { age: { $gte: 1000 } } }");
    int64_t moved = tu_get_int(r, "n");
    assert_true(moved > 0);
    bson_destroy(r);
    r = run("{ count: 'users', query: { age: 33 } }");
    assert_int_equal(tu_get_int(r, "n"), 0);
    bson_destroy(r);
    r = run("{ delete: 'users', deletes: [ { q: { age: { $gte: 1000 } }, limit: 0 } ] }");
    assert_int_equal(tu_get_int(r, "n"), moved);
    bson_destroy(r);
    r = run("{ validate: 'users' }");
    assert_int_equal(tu_get_int(r, "valid"), 1);
    bson_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_book_walkthrough), cmocka_unit_test(test_same_results_as_collscan),
        cmocka_unit_test(test_sort_from_index),  cmocka_unit_test(test_hints_and_killed_cursors),
        cmocka_unit_test(test_min_max),          cmocka_unit_test(test_writes_through_indexes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
