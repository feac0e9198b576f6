/* Client sessions and transactions in the ODM: documents saved and deleted inside a
 * transaction, the drivers' state machine (commit, abort and their misuse), withTransaction's
 * retries (TransientTransactionError, UnknownTransactionCommitResult, MaxTimeMSExpired, the
 * time limit), the thread that owns a transaction, and the article's cascade delete, which is
 * all-or-nothing. Commit failures that the embedded engine never produces are simulated by a
 * backend whose commit is wrapped (the seam of DESIGN.md §4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <meerkat.h>

#include "odm/odm_internal.h"
#include "testutil.h"

typedef struct fixture {
    mk_conn_t *conn;
    mk_model_t *User;
} fixture_t;

static void assert_ok_(int rc, const mk_error_t *err, const char *file, int line)
{
    if (rc != MK_OK) {
        print_error("%s:%d: expected MK_OK, got %d: [%s] %s\n", file, line, rc, err->kind,
                    err->message);
        _fail(file, line);
    }
}
#define assert_ok(rc, err) assert_ok_((rc), (err), __FILE__, __LINE__)

static mk_model_t *model_ok(mk_conn_t *conn, const char *name, const char *def)
{
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse(def, NULL, &err);
    if (!s) fail_msg("schema %s: [%s] %s", name, err.kind, err.message);
    mk_model_t *m = mk_model(conn, name, s, &err);
    mk_schema_destroy(s);
    if (!m) fail_msg("model %s: [%s] %s", name, err.kind, err.message);
    return m;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    mk_error_t err = {0};
    mk_engine_opts_t opts = {.no_sync = true, .txn_lock_timeout_ms = 50};
    f->conn = mk_connect_opts("memory:", &opts, &err);
    if (!f->conn) fail_msg("connect: [%s] %s", err.kind, err.message);
    f->User = model_ok(f->conn, "User",
                       "{ email: { type: String, required: true, lowercase: true },"
                       "  name: String, age: Number }");
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

/* countDocuments(filter) on a model's collection, through a session or outside any (NULL). */
static int64_t count_in(mk_model_t *m, mk_client_session_t *s, const char *filter)
{
    mk_error_t err = {0};
    bson_t *f = tu_bson(filter ? filter : "{}");
    int64_t n = -1;
    int rc = mk_backend_count_documents(m->conn->be, mk_client_session_backend(s), m->conn->db,
                                        m->collection, f, NULL, &n, &err);
    bson_destroy(f);
    assert_ok(rc, &err);
    return n;
}
#define count_of(m, filter) count_in((m), NULL, (filter))

/* The stored document matching `filter` (outside any transaction), or NULL. Caller destroys. */
static bson_t *stored(mk_model_t *m, const char *filter)
{
    mk_error_t err = {0};
    bson_t *f = tu_bson(filter);
    mk_backend_cursor_t *c =
        mk_backend_find(m->conn->be, NULL, m->conn->db, m->collection, f, NULL, &err);
    bson_destroy(f);
    if (!c) fail_msg("find: [%s] %s", err.kind, err.message);
    const bson_t *doc;
    bson_t *out = NULL;
    int rc = mk_backend_cursor_next(c, &doc, &err);
    if (rc < 0) fail_msg("cursor: [%s] %s", err.kind, err.message);
    if (rc == 1) out = bson_copy(doc);
    mk_backend_cursor_destroy(c);
    return out;
}

static mk_doc_t *new_user(mk_model_t *User, const char *email, int age)
{
    mk_error_t err = {0};
    mk_doc_t *d =
        mk_doc_new(User, &err, "{ email: ?, name: 'N', age: ? }", MK_STR(email), MK_I32(age));
    if (!d) fail_msg("new user: [%s] %s", err.kind, err.message);
    return d;
}

static mk_client_session_t *start_session(mk_conn_t *conn)
{
    mk_error_t err = {0};
    mk_client_session_t *s = mk_conn_start_session(conn, &err);
    if (!s) fail_msg("startSession: [%s] %s", err.kind, err.message);
    return s;
}

/* ------------------------------------------------------------ commit, abort, documents */

static void test_saves_in_a_transaction_appear_on_commit(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    assert_false(mk_client_session_in_transaction(s));
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    assert_true(mk_client_session_in_transaction(s));

    /* one document saved with the session option, one that carries its session */
    mk_doc_t *a = new_user(f->User, "A@X.COM", 30);
    mk_save_opts_t opts = {.session = s};
    assert_ok(mk_doc_save_opts(a, &opts, &err), &err);
    mk_doc_t *b = new_user(f->User, "b@x.com", 40);
    assert_null(mk_doc_session(b));
    mk_doc_set_session(b, s);
    assert_ptr_equal(mk_doc_session(b), s);
    assert_ok(mk_doc_save(b, &err), &err);

    /* the transaction sees its writes, nobody else does */
    assert_int_equal(count_in(f->User, s, NULL), 2);
    assert_int_equal(count_of(f->User, NULL), 0);

    /* a change to a saved document inside the same transaction */
    assert_ok(mk_doc_set(b, "age", MK_I32(41), &err), &err);
    assert_ok(mk_doc_save(b, &err), &err);
    assert_int_equal(count_in(f->User, s, "{ age: 41 }"), 1);
    assert_int_equal(count_of(f->User, "{ age: 41 }"), 0);

    assert_ok(mk_client_session_commit_transaction(s, &err), &err);
    assert_false(mk_client_session_in_transaction(s));
    assert_int_equal(count_of(f->User, NULL), 2);
    bson_t *got = stored(f->User, "{ email: 'a@x.com' }");
    assert_non_null(got);
    assert_int_equal(tu_get_int(got, "age"), 30);
    bson_destroy(got);
    assert_int_equal(count_of(f->User, "{ email: 'b@x.com', age: 41 }"), 1);

    /* detaching: the document no longer uses the session */
    mk_doc_set_session(b, NULL);
    assert_null(mk_doc_session(b));
    mk_doc_destroy(a);
    mk_doc_destroy(b);
    mk_client_session_end(s);
}

static void test_abort_discards_saves_and_deletes(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *kept = new_user(f->User, "kept@x.com", 20);
    assert_ok(mk_doc_save(kept, &err), &err);

    mk_client_session_t *s = start_session(f->conn);
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    mk_doc_t *fresh = new_user(f->User, "fresh@x.com", 21);
    mk_save_opts_t opts = {.session = s};
    assert_ok(mk_doc_save_opts(fresh, &opts, &err), &err);
    mk_doc_set_session(kept, s);
    assert_ok(mk_doc_set(kept, "age", MK_I32(99), &err), &err);
    assert_ok(mk_doc_save(kept, &err), &err);
    assert_int_equal(count_in(f->User, s, "{ age: 99 }"), 1);
    assert_int_equal(count_in(f->User, s, NULL), 2);

    mk_doc_t *gone = new_user(f->User, "other@x.com", 22);
    mk_doc_set_session(gone, s);
    assert_ok(mk_doc_save(gone, &err), &err);
    assert_ok(mk_doc_delete_one(kept, &err), &err);
    assert_int_equal(count_in(f->User, s, NULL), 2); /* fresh and other; kept deleted */

    assert_ok(mk_client_session_abort_transaction(s, &err), &err);
    assert_false(mk_client_session_in_transaction(s));
    /* as before the transaction: only `kept`, unchanged */
    assert_int_equal(count_of(f->User, NULL), 1);
    bson_t *got = stored(f->User, "{}");
    assert_string_equal(tu_get_str(got, "email"), "kept@x.com");
    assert_int_equal(tu_get_int(got, "age"), 20);
    bson_destroy(got);

    /* the session can run another transaction afterwards */
    mk_doc_t *later = new_user(f->User, "later@x.com", 23);
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    assert_ok(mk_doc_save_opts(later, &opts, &err), &err);
    assert_ok(mk_client_session_commit_transaction(s, &err), &err);
    assert_int_equal(count_of(f->User, NULL), 2);

    mk_doc_destroy(kept);
    mk_doc_destroy(fresh);
    mk_doc_destroy(gone);
    mk_doc_destroy(later);
    mk_client_session_end(s);
}

static void expect_txn_error(int rc, const mk_error_t *err, const char *message)
{
    assert_int_equal(rc, MK_ERR);
    assert_string_equal(err->kind, "MongoTransactionError");
    assert_string_equal(err->message, message);
}

/* The drivers' ClientSession state machine and its error messages. */
static void test_transaction_state_machine(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);

    expect_txn_error(mk_client_session_commit_transaction(s, &err), &err, "No transaction started");
    expect_txn_error(mk_client_session_abort_transaction(s, &err), &err, "No transaction started");

    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    expect_txn_error(mk_client_session_start_transaction(s, &err), &err,
                     "Transaction already in progress");
    assert_true(mk_client_session_in_transaction(s));
    /* an empty transaction commits; committing again is fine, aborting now is not */
    assert_ok(mk_client_session_commit_transaction(s, &err), &err);
    assert_ok(mk_client_session_commit_transaction(s, &err), &err);
    expect_txn_error(mk_client_session_abort_transaction(s, &err), &err,
                     "Cannot call abortTransaction after calling commitTransaction");

    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    mk_doc_t *d = new_user(f->User, "sm@x.com", 1);
    mk_doc_set_session(d, s);
    assert_ok(mk_doc_save(d, &err), &err);
    assert_ok(mk_client_session_abort_transaction(s, &err), &err);
    expect_txn_error(mk_client_session_abort_transaction(s, &err), &err,
                     "Cannot call abortTransaction twice");
    expect_txn_error(mk_client_session_commit_transaction(s, &err), &err,
                     "Cannot call commitTransaction after calling abortTransaction");
    assert_false(mk_client_session_in_transaction(s));
    assert_int_equal(count_of(f->User, NULL), 0);

    /* a committed transaction with writes, committed twice: one copy */
    mk_doc_destroy(d);
    d = new_user(f->User, "sm@x.com", 1);
    mk_doc_set_session(d, s);
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    assert_ok(mk_doc_save(d, &err), &err);
    assert_ok(mk_client_session_commit_transaction(s, &err), &err);
    assert_ok(mk_client_session_commit_transaction(s, &err), &err);
    assert_int_equal(count_of(f->User, NULL), 1);

    /* NULL sessions are refused, not dereferenced */
    assert_int_equal(mk_client_session_start_transaction(NULL, &err), MK_ERR);
    assert_false(mk_client_session_in_transaction(NULL));
    assert_null(mk_doc_session(NULL));
    mk_client_session_end(NULL);
    mk_doc_destroy(d);
    mk_client_session_end(s);
}

/* A failing statement aborts the transaction (as a server does): what ran before it is gone,
 * the session still says "in transaction" until it is ended, and the commit answers
 * NoSuchTransaction labelled TransientTransactionError, so that withTransaction retries. */
static void test_failed_statement_aborts_transaction(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *first = new_user(f->User, "dup@x.com", 1);
    assert_ok(mk_doc_save(first, &err), &err);
    bson_t *firstb = bson_copy(mk_doc_bson(first, &err));

    mk_client_session_t *s = start_session(f->conn);
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    mk_doc_t *ok = new_user(f->User, "ok@x.com", 2);
    mk_doc_set_session(ok, s);
    assert_ok(mk_doc_save(ok, &err), &err);
    /* the same _id again: E11000 */
    mk_doc_t *again = mk_doc_from_bson(f->User, firstb, &err);
    assert_non_null(again);
    mk_doc_set_session(again, s);
    assert_int_equal(mk_doc_save(again, &err), MK_ERR);
    assert_int_equal(err.code, 11000);

    assert_true(mk_client_session_in_transaction(s));
    assert_int_equal(mk_client_session_commit_transaction(s, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_NO_SUCH_TRANSACTION);
    assert_string_equal(err.kind, "NoSuchTransaction");
    assert_true(err.labels & MK_LABEL_TRANSIENT_TRANSACTION);
    assert_false(mk_client_session_in_transaction(s));
    assert_int_equal(count_of(f->User, "{ email: 'ok@x.com' }"), 0);

    /* aborting instead of committing is quiet, as the drivers' abort */
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    assert_int_equal(mk_doc_save(again, &err), MK_ERR);
    assert_ok(mk_client_session_abort_transaction(s, &err), &err);
    assert_int_equal(count_of(f->User, NULL), 1);

    bson_destroy(firstb);
    mk_doc_destroy(first);
    mk_doc_destroy(ok);
    mk_doc_destroy(again);
    mk_client_session_end(s);
}

/* Ending a session with an open transaction aborts it. */
static void test_end_session_aborts(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    mk_doc_t *d = new_user(f->User, "end@x.com", 3);
    mk_save_opts_t opts = {.session = s};
    assert_ok(mk_doc_save_opts(d, &opts, &err), &err);
    mk_client_session_end(s);
    assert_int_equal(count_of(f->User, NULL), 0);
    /* the write lock is free again: a plain save succeeds */
    mk_doc_t *e = new_user(f->User, "after@x.com", 4);
    assert_ok(mk_doc_save(e, &err), &err);
    assert_int_equal(count_of(f->User, NULL), 1);
    mk_doc_destroy(d);
    mk_doc_destroy(e);
}

/* A transaction belongs to the thread that started it (the engine's LMDB write transaction):
 * another thread's commit or abort is refused and leaves the transaction usable. */
typedef struct other_thread {
    mk_client_session_t *s;
    int commit_rc, abort_rc;
    mk_error_t commit_err, abort_err;
} other_thread_t;

static void *end_from_other_thread(void *arg)
{
    other_thread_t *o = arg;
    o->commit_rc = mk_client_session_commit_transaction(o->s, &o->commit_err);
    o->abort_rc = mk_client_session_abort_transaction(o->s, &o->abort_err);
    return NULL;
}

static void test_transaction_belongs_to_its_thread(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    mk_doc_t *d = new_user(f->User, "thread@x.com", 5);
    mk_doc_set_session(d, s);
    assert_ok(mk_doc_save(d, &err), &err);

    other_thread_t o = {.s = s};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, end_from_other_thread, &o), 0);
    pthread_join(t, NULL);
    assert_int_equal(o.commit_rc, MK_ERR);
    assert_int_equal(o.commit_err.code, MK_CODE_ILLEGAL_OPERATION);
    assert_non_null(strstr(o.commit_err.message, "thread that started it"));
    assert_int_equal(o.abort_rc, MK_ERR);
    assert_int_equal(o.abort_err.code, MK_CODE_ILLEGAL_OPERATION);

    assert_true(mk_client_session_in_transaction(s));
    assert_ok(mk_client_session_commit_transaction(s, &err), &err);
    assert_int_equal(count_of(f->User, NULL), 1);
    mk_doc_destroy(d);
    mk_client_session_end(s);
}

/* ------------------------------------------------------------ withTransaction */

typedef struct txn_run {
    mk_model_t *User;
    int calls;
    int fail_first;  /* fail this many calls ... */
    unsigned labels; /* ... with an error carrying these labels */
    int end_itself;  /* 1: the callback commits, 2: it aborts */
    const char *email;
} txn_run_t;

/* Saves one user (the same _id-less email every time) and fails as told. */
static int save_user_fn(mk_client_session_t *s, void *ud, mk_error_t *err)
{
    txn_run_t *r = ud;
    r->calls++;
    mk_doc_t *d = new_user(r->User, r->email ? r->email : "wt@x.com", r->calls);
    mk_save_opts_t opts = {.session = s};
    int rc = mk_doc_save_opts(d, &opts, err);
    mk_doc_destroy(d);
    if (rc != MK_OK) return rc;
    if (r->calls <= r->fail_first) {
        mk_error_set(err, 0, "Error", "simulated failure %d", r->calls);
        err->labels = r->labels;
        return MK_ERR;
    }
    if (r->end_itself == 1) return mk_client_session_commit_transaction(s, err);
    if (r->end_itself == 2) return mk_client_session_abort_transaction(s, err);
    return MK_OK;
}

static void test_with_transaction_commits(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    txn_run_t r = {.User = f->User};
    assert_ok(mk_client_session_with_transaction(s, save_user_fn, &r, &err), &err);
    assert_int_equal(r.calls, 1);
    assert_false(mk_client_session_in_transaction(s));
    assert_int_equal(count_of(f->User, "{ email: 'wt@x.com', age: 1 }"), 1);
    mk_client_session_end(s);
}

static void test_with_transaction_retries_transient_errors(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    txn_run_t r = {.User = f->User, .fail_first = 3, .labels = MK_LABEL_TRANSIENT_TRANSACTION};
    assert_ok(mk_client_session_with_transaction(s, save_user_fn, &r, &err), &err);
    assert_int_equal(r.calls, 4);
    /* the failed attempts were aborted: only the last attempt's document exists */
    assert_int_equal(count_of(f->User, NULL), 1);
    assert_int_equal(count_of(f->User, "{ age: 4 }"), 1);
    mk_client_session_end(s);
}

static void test_with_transaction_other_errors_abort(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    /* no label: not retried, aborted, the callback's error returned as it was */
    txn_run_t r = {.User = f->User, .fail_first = 5};
    assert_int_equal(mk_client_session_with_transaction(s, save_user_fn, &r, &err), MK_ERR);
    assert_int_equal(r.calls, 1);
    assert_string_equal(err.kind, "Error");
    assert_string_equal(err.message, "simulated failure 1");
    assert_false(mk_client_session_in_transaction(s));
    assert_int_equal(count_of(f->User, NULL), 0);

    /* UnknownTransactionCommitResult from the callback (it committed by hand): returned */
    txn_run_t u = {.User = f->User, .fail_first = 5, .labels = MK_LABEL_UNKNOWN_COMMIT_RESULT};
    assert_int_equal(mk_client_session_with_transaction(s, save_user_fn, &u, &err), MK_ERR);
    assert_int_equal(u.calls, 1);
    assert_true(err.labels & MK_LABEL_UNKNOWN_COMMIT_RESULT);
    assert_int_equal(count_of(f->User, NULL), 0);

    /* the error is returned even when the caller passes no err */
    txn_run_t n = {.User = f->User, .fail_first = 5};
    assert_int_equal(mk_client_session_with_transaction(s, save_user_fn, &n, NULL), MK_ERR);
    assert_int_equal(count_of(f->User, NULL), 0);
    mk_client_session_end(s);
}

static void test_with_transaction_time_limit(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    txn_run_t r = {
        .User = f->User, .fail_first = 1 << 30, .labels = MK_LABEL_TRANSIENT_TRANSACTION};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(mk_client_session_with_transaction_timeout(s, save_user_fn, &r, 40, &err),
                     MK_ERR);
    clock_gettime(CLOCK_MONOTONIC, &b);
    int64_t ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    /* retried until the limit, then the last error, labels kept */
    assert_true(r.calls >= 2);
    assert_true(ms < 40 + 600); /* one backoff at most past the limit */
    assert_true(err.labels & MK_LABEL_TRANSIENT_TRANSACTION);
    assert_non_null(strstr(err.message, "simulated failure"));
    assert_false(mk_client_session_in_transaction(s));
    assert_int_equal(count_of(f->User, NULL), 0);
    mk_client_session_end(s);
}

static void test_with_transaction_callback_ends_it(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    txn_run_t aborts = {.User = f->User, .end_itself = 2};
    assert_ok(mk_client_session_with_transaction(s, save_user_fn, &aborts, &err), &err);
    assert_int_equal(aborts.calls, 1);
    assert_int_equal(count_of(f->User, NULL), 0);
    txn_run_t commits = {.User = f->User, .end_itself = 1};
    assert_ok(mk_client_session_with_transaction(s, save_user_fn, &commits, &err), &err);
    assert_int_equal(commits.calls, 1);
    assert_int_equal(count_of(f->User, NULL), 1);
    mk_client_session_end(s);
}

/* ---- commit failures, simulated through a wrapped backend ---- */

typedef enum { COMMIT_UNKNOWN_NOT_SENT, COMMIT_MAXTIME_AFTER, COMMIT_TRANSIENT } commit_fault_t;

static struct {
    const mk_backend_ops_t *real;
    commit_fault_t fault;
    int failures; /* fail this many commits */
    int calls;
} flaky;

static int flaky_commit(mk_backend_session_t *bs, mk_error_t *err)
{
    flaky.calls++;
    if (flaky.calls > flaky.failures) return flaky.real->commit_transaction(bs, err);
    switch (flaky.fault) {
    case COMMIT_UNKNOWN_NOT_SENT: /* a network error before the commit reached the server */
        mk_error_set(err, 9001, "SocketException", "connection reset");
        err->labels = MK_LABEL_UNKNOWN_COMMIT_RESULT;
        return MK_ERR;
    case COMMIT_MAXTIME_AFTER: /* committed, but the reply says it ran out of time */
        if (flaky.real->commit_transaction(bs, err) != MK_OK) return MK_ERR;
        return mk_error_setc(err, MK_CODE_MAX_TIME_MS_EXPIRED, "operation exceeded time limit");
    case COMMIT_TRANSIENT: /* the server aborted it */
        flaky.real->abort_transaction(bs, NULL);
        mk_error_setc(err, MK_CODE_WRITE_CONFLICT, "write conflict at commit");
        err->labels = MK_LABEL_TRANSIENT_TRANSACTION;
        return MK_ERR;
    }
    return MK_ERR;
}

static mk_backend_ops_t flaky_ops;

static void make_commit_flaky(fixture_t *f, commit_fault_t fault, int failures)
{
    flaky.real = f->conn->be->ops;
    flaky.fault = fault;
    flaky.failures = failures;
    flaky.calls = 0;
    flaky_ops = *flaky.real;
    flaky_ops.commit_transaction = flaky_commit;
    f->conn->be->ops = &flaky_ops;
}

static void restore_backend(fixture_t *f)
{
    f->conn->be->ops = flaky.real;
}

static void test_with_transaction_retries_unknown_commit(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    make_commit_flaky(f, COMMIT_UNKNOWN_NOT_SENT, 2);
    txn_run_t r = {.User = f->User};
    int rc = mk_client_session_with_transaction(s, save_user_fn, &r, &err);
    restore_backend(f);
    assert_ok(rc, &err);
    assert_int_equal(r.calls, 1);     /* the callback ran once ... */
    assert_int_equal(flaky.calls, 3); /* ... the commit three times */
    assert_int_equal(count_of(f->User, NULL), 1);
    mk_client_session_end(s);
}

static void test_with_transaction_max_time_commit_not_retried(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    make_commit_flaky(f, COMMIT_MAXTIME_AFTER, 1);
    txn_run_t r = {.User = f->User};
    int rc = mk_client_session_with_transaction(s, save_user_fn, &r, &err);
    restore_backend(f);
    assert_int_equal(rc, MK_ERR);
    assert_int_equal(err.code, MK_CODE_MAX_TIME_MS_EXPIRED);
    /* labelled as the drivers label it, yet not retried */
    assert_true(err.labels & MK_LABEL_UNKNOWN_COMMIT_RESULT);
    assert_int_equal(r.calls, 1);
    assert_int_equal(flaky.calls, 1);
    assert_int_equal(count_of(f->User, NULL), 1); /* it did commit */

    /* the core API labels it too, and a second commit asks again */
    make_commit_flaky(f, COMMIT_UNKNOWN_NOT_SENT, 1);
    assert_ok(mk_client_session_start_transaction(s, &err), &err);
    mk_doc_t *d = new_user(f->User, "core@x.com", 7);
    mk_doc_set_session(d, s);
    assert_ok(mk_doc_save(d, &err), &err);
    rc = mk_client_session_commit_transaction(s, &err);
    assert_int_equal(rc, MK_ERR);
    assert_true(err.labels & MK_LABEL_UNKNOWN_COMMIT_RESULT);
    assert_false(mk_client_session_in_transaction(s));
    rc = mk_client_session_commit_transaction(s, &err);
    restore_backend(f);
    assert_ok(rc, &err);
    assert_int_equal(flaky.calls, 2);
    assert_int_equal(count_of(f->User, NULL), 2);
    mk_doc_destroy(d);
    mk_client_session_end(s);
}

static void test_with_transaction_transient_commit_retries_all(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    make_commit_flaky(f, COMMIT_TRANSIENT, 1);
    txn_run_t r = {.User = f->User};
    int rc = mk_client_session_with_transaction(s, save_user_fn, &r, &err);
    restore_backend(f);
    assert_ok(rc, &err);
    assert_int_equal(r.calls, 2); /* the whole transaction again */
    assert_int_equal(flaky.calls, 2);
    assert_int_equal(count_of(f->User, NULL), 1);
    assert_int_equal(count_of(f->User, "{ age: 2 }"), 1);
    mk_client_session_end(s);
}

/* ------------------------------------------------------------ the article's cascade delete */

/* projectSchema.post('deleteOne', { document: true, query: false }, ...): deletes the
 * project's sprints and pulls the project from the users' roles, in the document's session. */
typedef struct cascade {
    mk_model_t *Sprint, *Member;
    bool fail_second_step_in_odm;    /* the hook fails before the updateMany */
    bool fail_second_step_in_engine; /* the updateMany itself fails on the engine */
    int ran;
} cascade_t;

static int cascade_delete(mk_hook_t *h, void *ud, mk_error_t *err)
{
    cascade_t *c = ud;
    c->ran++;
    mk_client_session_t *s = mk_doc_session(h->doc);
    const bson_oid_t *id = mk_doc_oid(h->doc);
    if (!id) return mk_error_set(err, 0, "Error", "project without an ObjectId");
    bson_t *filter = mk_bson(err, "{ project: ? }", MK_OID(id));
    if (!filter) return MK_ERR;
    bson_t reply = BSON_INITIALIZER;
    mk_backend_t *be = c->Sprint->conn->be;
    int rc = mk_backend_delete(be, mk_client_session_backend(s), c->Sprint->conn->db,
                               c->Sprint->collection, filter, MK_BE_MULTI, NULL, &reply, err);
    bson_destroy(filter);
    bson_destroy(&reply);
    if (rc != MK_OK) return rc;
    if (c->fail_second_step_in_odm)
        return mk_error_set(err, 0, "Error", "cannot update the members");
    filter = mk_bson(err, "{ roles: { $elemMatch: { project: ? } } }", MK_OID(id));
    bson_t *update =
        c->fail_second_step_in_engine
            ? mk_bson(err, "{ $pull: { roles: { project: ? } }, $bogus: { a: 1 } }", MK_OID(id))
            : mk_bson(err, "{ $pull: { roles: { project: ? } } }", MK_OID(id));
    bson_init(&reply);
    rc = filter && update ? mk_backend_update(be, mk_client_session_backend(s), c->Member->conn->db,
                                              c->Member->collection, filter, update, MK_BE_MULTI,
                                              NULL, &reply, err)
                          : MK_ERR;
    if (rc == MK_OK) rc = mk_backend_first_write_error(&reply, err);
    bson_destroy(&reply);
    bson_destroy(filter);
    bson_destroy(update);
    return rc;
}

typedef struct cascade_world {
    mk_model_t *Project, *Sprint, *Member;
    cascade_t hook;
    bson_oid_t project, other;
} cascade_world_t;

static void cascade_setup(fixture_t *f, cascade_world_t *w)
{
    mk_error_t err = {0};
    memset(w, 0, sizeof *w);
    mk_schema_t *ps = mk_schema_parse("{ title: { type: String, required: true } }", NULL, &err);
    assert_non_null(ps);
    assert_ok(mk_schema_post_ex(ps, "deleteOne", MK_HOOK_DOCUMENT, cascade_delete, &w->hook, &err),
              &err);
    w->Project = mk_model(f->conn, "Project", ps, &err);
    mk_schema_destroy(ps);
    assert_non_null(w->Project);
    w->Sprint = model_ok(f->conn, "Sprint", "{ name: String, project: Schema.Types.ObjectId }");
    w->Member =
        model_ok(f->conn, "Member",
                 "{ name: String, roles: [{ project: Schema.Types.ObjectId, role: String }] }");
    w->hook.Sprint = w->Sprint;
    w->hook.Member = w->Member;

    bson_oid_init(&w->project, NULL);
    bson_oid_init(&w->other, NULL);
    mk_doc_t *p = mk_doc_new(w->Project, &err, "{ _id: ?, title: 'Apollo' }", MK_OID(&w->project));
    mk_doc_t *q = mk_doc_new(w->Project, &err, "{ _id: ?, title: 'Gemini' }", MK_OID(&w->other));
    assert_non_null(p);
    assert_non_null(q);
    assert_ok(mk_doc_save(p, &err), &err);
    assert_ok(mk_doc_save(q, &err), &err);
    mk_doc_destroy(p);
    mk_doc_destroy(q);
    const char *sprints[][2] = {{"s1", "p"}, {"s2", "p"}, {"s3", "o"}};
    for (int i = 0; i < 3; i++) {
        mk_doc_t *s = mk_doc_new(w->Sprint, &err, "{ name: ?, project: ? }", MK_STR(sprints[i][0]),
                                 MK_OID(sprints[i][1][0] == 'p' ? &w->project : &w->other));
        assert_non_null(s);
        assert_ok(mk_doc_save(s, &err), &err);
        mk_doc_destroy(s);
    }
    mk_doc_t *m = mk_doc_new(w->Member, &err,
                             "{ name: 'Ann', roles: [{ project: ?, role: 'lead' },"
                             "                       { project: ?, role: 'dev' }] }",
                             MK_OID(&w->project), MK_OID(&w->other));
    assert_non_null(m);
    assert_ok(mk_doc_save(m, &err), &err);
    mk_doc_destroy(m);
}

/* Nothing changed: both projects, three sprints, both roles. */
static void assert_cascade_untouched(cascade_world_t *w)
{
    assert_int_equal(count_of(w->Project, NULL), 2);
    assert_int_equal(count_of(w->Sprint, NULL), 3);
    bson_t *m = stored(w->Member, "{ name: 'Ann' }");
    assert_non_null(m);
    assert_string_equal(tu_get_str(m, "roles.0.role"), "lead");
    assert_string_equal(tu_get_str(m, "roles.1.role"), "dev");
    bson_destroy(m);
}

static mk_doc_t *load_project(cascade_world_t *w, const bson_oid_t *id)
{
    mk_error_t err = {0};
    char hex[25];
    bson_oid_to_string(id, hex);
    char filter[64];
    snprintf(filter, sizeof filter, "{ _id: ObjectId('%s') }", hex);
    bson_t *b = stored(w->Project, filter);
    assert_non_null(b);
    mk_doc_t *d = mk_doc_hydrate(w->Project, b, &err);
    bson_destroy(b);
    assert_non_null(d);
    return d;
}

/* The article's flow: startTransaction, deleteOne, commitTransaction (abort on error). */
static int delete_project(mk_client_session_t *s, mk_doc_t *project, mk_error_t *err)
{
    int rc = mk_client_session_start_transaction(s, err);
    if (rc != MK_OK) return rc;
    mk_doc_set_session(project, s);
    rc = mk_doc_delete_one(project, err);
    if (rc == MK_OK) rc = mk_client_session_commit_transaction(s, err);
    if (rc != MK_OK && mk_client_session_in_transaction(s))
        mk_client_session_abort_transaction(s, NULL);
    return rc;
}

static void test_cascade_delete_commits_everything(void **state)
{
    fixture_t *f = *state;
    cascade_world_t w;
    cascade_setup(f, &w);
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    mk_doc_t *p = load_project(&w, &w.project);
    assert_ok(delete_project(s, p, &err), &err);
    assert_int_equal(w.hook.ran, 1);
    assert_int_equal(count_of(w.Project, NULL), 1);
    assert_int_equal(count_of(w.Sprint, NULL), 1);
    assert_int_equal(count_of(w.Sprint, "{ name: 's3' }"), 1);
    /* Ann keeps only her role in the other project */
    bson_t *m = stored(w.Member, "{ name: 'Ann' }");
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, m, "roles"));
    bson_t roles;
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    assert_true(bson_init_static(&roles, data, len));
    assert_int_equal(bson_count_keys(&roles), 1);
    assert_string_equal(tu_get_str(m, "roles.0.role"), "dev");
    bson_destroy(m);
    mk_doc_destroy(p);
    mk_client_session_end(s);
}

static void test_cascade_delete_is_all_or_nothing(void **state)
{
    fixture_t *f = *state;
    cascade_world_t w;
    cascade_setup(f, &w);
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);

    /* the second step fails in the hook: the first step (sprints deleted) and the project's
     * own deletion are rolled back by the abort */
    w.hook.fail_second_step_in_odm = true;
    mk_doc_t *p = load_project(&w, &w.project);
    assert_int_equal(delete_project(s, p, &err), MK_ERR);
    assert_string_equal(err.message, "cannot update the members");
    assert_int_equal(w.hook.ran, 1);
    assert_false(mk_client_session_in_transaction(s));
    assert_cascade_untouched(&w);

    /* the second step fails on the engine (which aborts the transaction at once) */
    w.hook.fail_second_step_in_odm = false;
    w.hook.fail_second_step_in_engine = true;
    assert_int_equal(delete_project(s, p, &err), MK_ERR);
    assert_int_equal(w.hook.ran, 2);
    assert_cascade_untouched(&w);

    mk_doc_destroy(p);
    mk_client_session_end(s);
}

/* withTransaction around the cascade: the callback deletes the project with its session. */
static int delete_in_txn(mk_client_session_t *s, void *ud, mk_error_t *err)
{
    mk_doc_t *project = ud;
    mk_doc_set_session(project, s);
    return mk_doc_delete_one(project, err);
}

static void test_cascade_delete_with_transaction(void **state)
{
    fixture_t *f = *state;
    cascade_world_t w;
    cascade_setup(f, &w);
    mk_error_t err = {0};
    mk_client_session_t *s = start_session(f->conn);
    mk_doc_t *p = load_project(&w, &w.project);

    w.hook.fail_second_step_in_odm = true;
    assert_int_equal(mk_client_session_with_transaction(s, delete_in_txn, p, &err), MK_ERR);
    assert_string_equal(err.message, "cannot update the members");
    assert_int_equal(w.hook.ran, 1);
    assert_cascade_untouched(&w);

    w.hook.fail_second_step_in_odm = false;
    assert_ok(mk_client_session_with_transaction(s, delete_in_txn, p, &err), &err);
    assert_int_equal(w.hook.ran, 2);
    assert_int_equal(count_of(w.Project, NULL), 1);
    assert_int_equal(count_of(w.Sprint, NULL), 1);
    assert_int_equal(count_of(w.Member, "{ 'roles.role': 'lead' }"), 0);
    assert_int_equal(count_of(w.Member, "{ 'roles.role': 'dev' }"), 1);
    mk_doc_destroy(p);
    mk_client_session_end(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_saves_in_a_transaction_appear_on_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abort_discards_saves_and_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transaction_state_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_statement_aborts_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_session_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transaction_belongs_to_its_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_with_transaction_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_with_transaction_retries_transient_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_with_transaction_other_errors_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_with_transaction_time_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_with_transaction_callback_ends_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_with_transaction_retries_unknown_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_with_transaction_max_time_commit_not_retried, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_with_transaction_transient_commit_retries_all, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cascade_delete_commits_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cascade_delete_is_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cascade_delete_with_transaction, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
