/* Sessions and multi-document transactions: MongoDB's command protocol, isolation, atomicity
 * across collections and databases, write conflicts and their labels. */
#include "testutil.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "bson/path.h"

static mk_engine_t *eng;
static char *dir;

static int setup(void **state)
{
    dir = tu_tmpdir("txn");
    mk_error_t err = {0};
    eng =
        mk_engine_open(dir, &(mk_engine_opts_t){.no_sync = true, .txn_lock_timeout_ms = 50}, &err);
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

/* Runs json in db through the session (or plainly when s is NULL); returns MK_OK/MK_ERR. */
static int run(mk_session_t *s, const char *db, const char *json, bson_t *reply, mk_error_t *err)
{
    bson_t *cmd = tu_bson(json);
    bson_reinit(reply);
    int rc = s ? mk_session_command(s, db, cmd, reply, err)
               : mk_engine_command(eng, db, cmd, reply, err);
    bson_destroy(cmd);
    return rc;
}

static int64_t count(mk_session_t *s, const char *db, const char *coll)
{
    char buf[100];
    snprintf(buf, sizeof buf, "{ count: '%s' }", coll);
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    if (run(s, db, buf, &reply, &err) != MK_OK) fail_msg("count: %s", err.message);
    int64_t n = tu_get_int(&reply, "n");
    bson_destroy(&reply);
    return n;
}

static bool has_label(const bson_t *reply, const char *label)
{
    bson_iter_t it, el;
    if (!bson_iter_init_find(&it, reply, "errorLabels") || !bson_iter_recurse(&it, &el))
        return false;
    while (bson_iter_next(&el))
        if (BSON_ITER_HOLDS_UTF8(&el) && strcmp(bson_iter_utf8(&el, NULL), label) == 0) return true;
    return false;
}

static void test_commit_is_atomic_and_isolated(void **state)
{
    mk_error_t err = {0};
    bson_t reply = BSON_INITIALIZER;
    mk_session_t *s = mk_session_start(eng, &err);
    assert_non_null(s);
    assert_int_equal(mk_session_start_transaction(s, &err), MK_OK);
    assert_int_equal(
        run(s, "shop", "{ insert: 'orders', documents: [ { _id: 1, total: 10 } ] }", &reply, &err),
        MK_OK);
    assert_int_equal(run(s, "billing",
                         "{ insert: 'invoices', documents: [ { _id: 1, order: 1 } ] }", &reply,
                         &err),
                     MK_OK);
    assert_int_equal(
        run(s, "shop",
            "{ update: 'orders', updates: [ { q: { _id: 1 }, u: { $inc: { total: 5 } } } ] }",
            &reply, &err),
        MK_OK);
    /* the transaction sees its own writes */
    assert_int_equal(run(s, "shop", "{ find: 'orders', filter: { _id: 1 } }", &reply, &err), MK_OK);
    assert_int_equal(tu_get_int(&reply, "cursor.firstBatch.0.total"), 15);
    assert_int_equal(count(s, "billing", "invoices"), 1);
    /* others do not, in either database */
    assert_int_equal(count(NULL, "shop", "orders"), 0);
    assert_int_equal(count(NULL, "billing", "invoices"), 0);
    assert_int_equal(mk_session_commit_transaction(s, &err), MK_OK);
    assert_int_equal(count(NULL, "shop", "orders"), 1);
    assert_int_equal(count(NULL, "billing", "invoices"), 1);
    mk_session_end(s);
    bson_destroy(&reply);
}

static void test_abort_discards_everything(void **state)
{
    mk_error_t err = {0};
    bson_t reply = BSON_INITIALIZER;
    mk_session_t *s = mk_session_start(eng, &err);
    assert_int_equal(mk_session_start_transaction(s, &err), MK_OK);
    assert_int_equal(run(s, "shop", "{ insert: 'fresh', documents: [ { _id: 1 } ] }", &reply, &err),
                     MK_OK);
    assert_int_equal(
        run(s, "shop",
            "{ createIndexes: 'orders', indexes: [ { key: { total: 1 }, name: 'total_1' } ] }",
            &reply, &err),
        MK_OK);
    assert_int_equal(
        run(s, "shop", "{ delete: 'orders', deletes: [ { q: {}, limit: 0 } ] }", &reply, &err),
        MK_OK);
    assert_int_equal(count(s, "shop", "orders"), 0);
    assert_int_equal(mk_session_abort_transaction(s, &err), MK_OK);
    assert_int_equal(count(NULL, "shop", "orders"), 1);
    assert_int_equal(
        run(NULL, "shop", "{ listCollections: 1, filter: { name: 'fresh' } }", &reply, &err),
        MK_OK);
    bson_iter_t it;
    assert_false(mk_path_get(&reply, "cursor.firstBatch.0", &it));
    assert_int_equal(run(NULL, "shop", "{ listIndexes: 'orders' }", &reply, &err), MK_OK);
    assert_false(mk_path_get(&reply, "cursor.firstBatch.1", &it));
    /* the engine is usable afterwards, and the session too */
    assert_int_equal(
        run(NULL, "shop", "{ insert: 'fresh', documents: [ { _id: 2 } ] }", &reply, &err), MK_OK);
    assert_int_equal(mk_session_start_transaction(s, &err), MK_OK);
    assert_int_equal(run(s, "shop", "{ insert: 'fresh', documents: [ { _id: 3 } ] }", &reply, &err),
                     MK_OK);
    assert_int_equal(mk_session_commit_transaction(s, &err), MK_OK);
    assert_int_equal(count(NULL, "shop", "fresh"), 2);
    mk_session_end(s);
    bson_destroy(&reply);
}

static void test_failed_statement_aborts(void **state)
{
    mk_error_t err = {0};
    bson_t reply = BSON_INITIALIZER;
    mk_session_t *s = mk_session_start(eng, &err);
    assert_int_equal(mk_session_start_transaction(s, &err), MK_OK);
    assert_int_equal(run(s, "shop", "{ insert: 'dup', documents: [ { _id: 1 } ] }", &reply, &err),
                     MK_OK);
    run(s, "shop", "{ insert: 'dup', documents: [ { _id: 1 } ] }", &reply, &err);
    assert_int_equal(tu_get_int(&reply, "writeErrors.0.code"), 11000);
    assert_int_equal(count(NULL, "shop", "dup"), 0);
    /* the session stays in its (now aborted) transaction, as a driver's does: a later
     * statement must not run on its own, it gets NoSuchTransaction */
    assert_true(mk_session_in_transaction(s));
    assert_int_equal(run(s, "shop", "{ insert: 'dup', documents: [ { _id: 2 } ] }", &reply, &err),
                     MK_ERR);
    assert_int_equal(err.code, MK_CODE_NO_SUCH_TRANSACTION);
    assert_true(err.labels & MK_LABEL_TRANSIENT_TRANSACTION);
    assert_int_equal(count(NULL, "shop", "dup"), 0);
    assert_int_equal(mk_session_commit_transaction(s, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_NO_SUCH_TRANSACTION);
    assert_false(mk_session_in_transaction(s));
    /* a statement error that is not a conflict is not worth retrying */
    assert_int_equal(mk_session_start_transaction(s, &err), MK_OK);
    assert_int_equal(run(s, "shop", "{ find: 'dup', filter: { $foo: 1 } }", &reply, &err), MK_ERR);
    assert_false(err.labels & MK_LABEL_TRANSIENT_TRANSACTION);
    mk_session_abort_transaction(s, NULL);
    mk_session_end(s);
    bson_destroy(&reply);
}

static void test_protocol_errors(void **state)
{
    mk_error_t err = {0};
    bson_t reply = BSON_INITIALIZER;
    const char *lsid = "lsid: { id: UUID('0123456789abcdef0123456789abcdef') }";
    char buf[400];
    snprintf(buf, sizeof buf,
             "{ commitTransaction: 1, %s, txnNumber: NumberLong(1), autocommit: false }", lsid);
    assert_int_equal(run(NULL, "admin", buf, &reply, &err), MK_ERR);
    assert_int_equal(err.code, 251);
    assert_true(has_label(&reply, "TransientTransactionError"));
    snprintf(buf, sizeof buf,
             "{ insert: 'p', documents: [ {} ], %s, txnNumber: NumberLong(5), autocommit: false, "
             "startTransaction: true }",
             lsid);
    assert_int_equal(run(NULL, "t", buf, &reply, &err), MK_OK);
    /* a statement with another number */
    snprintf(buf, sizeof buf, "{ find: 'p', %s, txnNumber: NumberLong(6), autocommit: false }",
             lsid);
    assert_int_equal(run(NULL, "t", buf, &reply, &err), MK_ERR);
    assert_int_equal(err.code, 251);
    snprintf(buf, sizeof buf,
             "{ commitTransaction: 1, %s, txnNumber: NumberLong(5), autocommit: false }", lsid);
    assert_int_equal(run(NULL, "admin", buf, &reply, &err), MK_OK);
    assert_int_equal(run(NULL, "admin", buf, &reply, &err), MK_OK); /* a retried commit */
    snprintf(buf, sizeof buf,
             "{ abortTransaction: 1, %s, txnNumber: NumberLong(5), autocommit: false }", lsid);
    assert_int_equal(run(NULL, "admin", buf, &reply, &err), MK_ERR);
    assert_int_equal(err.code, 256);
    snprintf(buf, sizeof buf,
             "{ insert: 'p', documents: [ {} ], %s, txnNumber: NumberLong(4), autocommit: false, "
             "startTransaction: true }",
             lsid);
    assert_int_equal(run(NULL, "t", buf, &reply, &err), MK_ERR);
    assert_int_equal(err.code, 225);
    assert_int_equal(run(NULL, "admin", "{ commitTransaction: 1 }", &reply, &err), MK_ERR);
    snprintf(buf, sizeof buf,
             "{ endSessions: [ { id: UUID('0123456789abcdef0123456789abcdef') } ] }");
    assert_int_equal(run(NULL, "admin", buf, &reply, &err), MK_OK);
    assert_int_equal(count(NULL, "t", "p"), 1);
    bson_destroy(&reply);
}

typedef struct racer {
    int rc;
    mk_error_t err;
    bson_t reply;
    int64_t waited_ms;
} racer_t;

static void *start_second_txn(void *arg)
{
    racer_t *r = arg;
    mk_session_t *s = mk_session_start(eng, &r->err);
    mk_session_start_transaction(s, &r->err);
    bson_init(&r->reply);
    r->rc = run(s, "shop", "{ insert: 'race', documents: [ { _id: 'b' } ] }", &r->reply, &r->err);
    mk_session_end(s);
    return NULL;
}

static void *plain_write(void *arg)
{
    racer_t *r = arg;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    bson_init(&r->reply);
    r->rc =
        run(NULL, "shop", "{ insert: 'race', documents: [ { _id: 'c' } ] }", &r->reply, &r->err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    r->waited_ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    return NULL;
}

static void test_write_conflict_and_waiting(void **state)
{
    mk_error_t err = {0};
    bson_t reply = BSON_INITIALIZER;
    mk_session_t *s = mk_session_start(eng, &err);
    assert_int_equal(mk_session_start_transaction(s, &err), MK_OK);
    assert_int_equal(
        run(s, "shop", "{ insert: 'race', documents: [ { _id: 'a' } ] }", &reply, &err), MK_OK);
    /* a second transaction cannot get the write lock: WriteConflict, TransientTransactionError */
    racer_t r2 = {0};
    pthread_t t2;
    pthread_create(&t2, NULL, start_second_txn, &r2);
    pthread_join(t2, NULL);
    assert_int_equal(r2.rc, MK_ERR);
    assert_int_equal(r2.err.code, 112);
    assert_true(has_label(&r2.reply, "TransientTransactionError"));
    bson_destroy(&r2.reply);
    /* a plain write waits until the transaction ends, then succeeds */
    racer_t r3 = {0};
    pthread_t t3;
    pthread_create(&t3, NULL, plain_write, &r3);
    usleep(150 * 1000);
    assert_int_equal(mk_session_commit_transaction(s, &err), MK_OK);
    pthread_join(t3, NULL);
    assert_int_equal(r3.rc, MK_OK);
    assert_true(r3.waited_ms >= 100);
    bson_destroy(&r3.reply);
    assert_int_equal(count(NULL, "shop", "race"), 2);
    mk_session_end(s);
    bson_destroy(&reply);
}

/* The drivers' withTransaction loop, written against the C API. */
static int transfer(mk_session_t *s, int amount, mk_error_t *err)
{
    bson_t reply = BSON_INITIALIZER;
    int rc = MK_OK;
    for (int attempt = 0; attempt < 10; attempt++) {
        mk_session_start_transaction(s, err);
        char buf[200];
        snprintf(buf, sizeof buf,
                 "{ update: 'acct', updates: [ { q: { _id: 'a' }, u: { $inc: { bal: %d } } } ] }",
                 -amount);
        rc = run(s, "bank", buf, &reply, err);
        if (rc == MK_OK) {
            snprintf(
                buf, sizeof buf,
                "{ update: 'acct', updates: [ { q: { _id: 'b' }, u: { $inc: { bal: %d } } } ] }",
                amount);
            rc = run(s, "bank", buf, &reply, err);
        }
        if (rc == MK_OK)
            rc = mk_session_commit_transaction(s, err);
        else if (mk_session_in_transaction(s))
            mk_session_abort_transaction(s, NULL);
        if (rc == MK_OK || !(err->labels & MK_LABEL_TRANSIENT_TRANSACTION)) break;
        usleep(1000);
    }
    bson_destroy(&reply);
    return rc;
}

static void *transfer_many(void *arg)
{
    mk_error_t err;
    mk_session_t *s = mk_session_start(eng, &err);
    int *failures = arg;
    for (int i = 0; i < 50; i++)
        if (transfer(s, 1, &err) != MK_OK) (*failures)++;
    mk_session_end(s);
    return NULL;
}

static void test_with_transaction_retries(void **state)
{
    mk_error_t err = {0};
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(
        run(NULL, "bank",
            "{ insert: 'acct', documents: [ { _id: 'a', bal: 1000 }, { _id: 'b', bal: 0 } ] }",
            &reply, &err),
        MK_OK);
    pthread_t t[3];
    int failures[3] = {0};
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, transfer_many, &failures[i]);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    assert_int_equal(failures[0] + failures[1] + failures[2], 0);
    assert_int_equal(run(NULL, "bank", "{ find: 'acct', sort: { _id: 1 } }", &reply, &err), MK_OK);
    assert_int_equal(tu_get_int(&reply, "cursor.firstBatch.0.bal"), 1000 - 150);
    assert_int_equal(tu_get_int(&reply, "cursor.firstBatch.1.bal"), 150);
    bson_destroy(&reply);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_is_atomic_and_isolated),
        cmocka_unit_test(test_abort_discards_everything),
        cmocka_unit_test(test_failed_statement_aborts),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_write_conflict_and_waiting),
        cmocka_unit_test(test_with_transaction_retries),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
