/* Many threads on one open data directory.
 *
 * Worker threads mix transactional transfers, single-document increments, inserts that race on
 * a unique index, point / range / index / sorted reads, cursors walked with getMore while
 * others write, and read-only transactions, for a fixed wall-clock budget. Each thread records
 * what the engine acknowledged; afterwards (and again after reopening the directory) the
 * stored state must be exactly what those acknowledgements imply, and `validate` must find
 * every index in step with its records. The only errors allowed are the documented ones:
 * WriteConflict with TransientTransactionError when a transaction cannot get the write lock in
 * time or finds the map full (retried, as drivers' withTransaction does), E11000 when a unique
 * key is taken on purpose, and QueryPlanKilled when the index a query runs on is dropped.
 *
 * The tests: readers proceed while a transaction holds the write lock; the whole mix on a small
 * map that must grow under load; the mix while an index and collections come and go; only
 * index churn against validate and queries planned on that index; transactions alone filling
 * the map.
 *
 * Threads never call cmocka's assertions (they longjmp); they log failures and stop everyone,
 * and the main thread asserts. MK_STRESS_MS overrides the time budget of the main run;
 * MK_STRESS_SEED the random seed (printed, for replaying a failing mix). */
#include "testutil.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DB         "stress"
#define NACCT      48
#define START_BAL  1000
#define TOTAL_BAL  ((int64_t)NACCT * START_BAL)
#define NTHREADS   6
#define MAX_EMAIL  65536
#define MAX_FAILS  8
#define HARD_EXTRA 10000 /* ms a transaction may keep retrying after the budget ran out */
#define SMALL_MAP  ((size_t)1 << 20)
#define EMAIL_SUCC 1
#define EMAIL_DUP  2

/* ---------------------------------------------------------------- shared state */

static struct {
    mk_engine_t *eng;
    char *dir;
    int64_t deadline_ms;
    int stop; /* set (atomically) by the first failure */
    int email_next;
    bool ddl_run; /* index ver_1 comes and goes */
    uint64_t seed;
    pthread_mutex_t mu;
    int nfail;
    char log[MAX_FAILS * 600];
    size_t loglen;
    /* owned here so that a failing assertion (a longjmp) leaks nothing: freed by teardown */
    struct worker *ws[NTHREADS];
    struct expect *expect;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool stopped(void)
{
    return __atomic_load_n(&g.stop, __ATOMIC_ACQUIRE) != 0;
}

static bool time_is_up(void)
{
    return stopped() || now_ms() >= g.deadline_ms;
}

typedef struct transfer {
    int from, to, amt;
} transfer_t;

enum {
    OP_TRANSFER,
    OP_COUNTER,
    OP_USER,
    OP_READ,
    OP_CURSOR,
    OP_SNAPSHOT,
    OP_DDL,
    OP_VALIDATE,
    OP_KINDS
};
static const char *const op_names[OP_KINDS] = {"transfer", "counter",  "insert", "read",
                                               "cursor",   "snapshot", "ddl",    "validate"};

typedef struct worker {
    int id;
    uint64_t rng;
    bool ddl;       /* this thread also churns indexes and collections */
    bool validator; /* this thread also validates often */
    mk_session_t *sess;
    /* what the engine acknowledged */
    int64_t ctr_acked, shared_acked;
    int64_t delta[NACCT], touches[NACCT];
    transfer_t *ledger; /* committed transfers; ledger document "t<id>-<i>" is ledger[i] */
    size_t nledger, capledger;
    uint8_t email_state[MAX_EMAIL];
    int64_t users_acked, user_seq;
    char last_uid[32];
    int64_t users_seen; /* monotonic reads: the last users count this thread saw */
    bool ver_index;     /* ddl: whether ver_1 exists now */
    int scratch_gen;
    /* statistics */
    int64_t ops[OP_KINDS], conflicts, declined, dups, max_attempts, max_read_ms, plans_killed;
} worker_t;

static void failf(worker_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(worker_t *w, const char *fmt, ...)
{
    pthread_mutex_lock(&g.mu);
    if (g.nfail < MAX_FAILS && g.loglen < sizeof g.log) {
        int n =
            snprintf(g.log + g.loglen, sizeof g.log - g.loglen, "  [thread %d] ", w ? w->id : -1);
        if (n > 0 && (size_t)n < sizeof g.log - g.loglen) g.loglen += (size_t)n;
        va_list ap;
        va_start(ap, fmt);
        n = vsnprintf(g.log + g.loglen, sizeof g.log - g.loglen, fmt, ap);
        va_end(ap);
        if (n > 0) g.loglen += (size_t)n;
        if (g.loglen >= sizeof g.log) g.loglen = sizeof g.log - 1;
        if (g.loglen + 1 < sizeof g.log) g.log[g.loglen++] = '\n';
        g.log[g.loglen] = 0;
    }
    g.nfail++;
    pthread_mutex_unlock(&g.mu);
    __atomic_store_n(&g.stop, 1, __ATOMIC_RELEASE);
}

static void assert_no_failures(void)
{
    if (g.nfail)
        fail_msg("%d failure(s) in worker threads (seed %llu):\n%s", g.nfail,
                 (unsigned long long)g.seed, g.log);
}

static uint32_t rnd(worker_t *w, uint32_t n)
{
    /* xorshift64* */
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    uint64_t r = w->rng * 2685821657736338717ull;
    return n ? (uint32_t)((r >> 32) % n) : 0;
}

/* ---------------------------------------------------------------- commands and replies */

/* Runs `text` (relaxed JSON with ? placeholders) plainly or through session s. */
static int run(worker_t *w, mk_session_t *s, bson_t *reply, mk_error_t *err, const char *text,
               const mk_arg_t *args)
{
    mk_error_t perr = {0};
    bson_reinit(reply);
    mk_error_clear(err);
    bson_t *cmd = mk_json_parse(text, args, &perr);
    if (!cmd) {
        failf(w, "test command does not parse (%s): %s", perr.message, text);
        return mk_error_setc(err, MK_CODE_INTERNAL, "test command does not parse");
    }
    int rc = s ? mk_session_command(s, DB, cmd, reply, err)
               : mk_engine_command(g.eng, DB, cmd, reply, err);
    bson_destroy(cmd);
    return rc;
}

#define RUN(w, s, reply, err, text, ...) run(w, s, reply, err, text, MK_ARGS(__VA_ARGS__))

static bool find_path(const bson_t *doc, const char *path, bson_iter_t *out)
{
    bson_iter_t it;
    return bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, out);
}

static bool get_int(const bson_t *doc, const char *path, int64_t *v)
{
    bson_iter_t it;
    if (!find_path(doc, path, &it) || !BSON_ITER_HOLDS_NUMBER(&it)) return false;
    *v = bson_iter_as_int64(&it);
    return true;
}

/* A number field of the document an array element holds. */
static bool elem_int(const bson_iter_t *el, const char *field, int64_t *v)
{
    bson_iter_t d;
    if (!BSON_ITER_HOLDS_DOCUMENT(el) || !bson_iter_recurse(el, &d) || !bson_iter_find(&d, field) ||
        !BSON_ITER_HOLDS_NUMBER(&d))
        return false;
    *v = bson_iter_as_int64(&d);
    return true;
}

static const char *elem_str(const bson_iter_t *el, const char *field)
{
    bson_iter_t d;
    if (!BSON_ITER_HOLDS_DOCUMENT(el) || !bson_iter_recurse(el, &d) || !bson_iter_find(&d, field) ||
        !BSON_ITER_HOLDS_UTF8(&d))
        return NULL;
    return bson_iter_utf8(&d, NULL);
}

static char *reply_text(const bson_t *reply)
{
    return bson_as_relaxed_extended_json(reply, NULL);
}

static void fail_reply(worker_t *w, const char *what, const bson_t *reply)
{
    char *s = reply_text(reply);
    failf(w, "%s: unexpected reply %s", what, s ? s : "?");
    bson_free(s);
}

/* rc must be MK_OK; otherwise the error is logged. */
static bool ok(worker_t *w, int rc, const mk_error_t *err, const char *what)
{
    if (rc == MK_OK) return true;
    failf(w, "%s failed: code %d (%s) labels %u: %s", what, err->code, err->kind, err->labels,
          err->message);
    return false;
}

/* A write that must succeed whole: ok, no writeErrors, n == want. */
static bool write_ok(worker_t *w, int rc, const mk_error_t *err, const bson_t *reply,
                     const char *what, int64_t want)
{
    if (!ok(w, rc, err, what)) return false;
    bson_iter_t it;
    int64_t n;
    if (bson_iter_init_find(&it, reply, "writeErrors") || !get_int(reply, "n", &n) || n != want) {
        fail_reply(w, what, reply);
        return false;
    }
    return true;
}

/* The batch array of a cursor reply and the cursor id. */
static bool open_batch(const bson_t *reply, bool first, bson_iter_t *arr, int64_t *id)
{
    bson_iter_t it;
    return find_path(reply, first ? "cursor.firstBatch" : "cursor.nextBatch", &it) &&
           BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, arr) &&
           get_int(reply, "cursor.id", id);
}

/* ---------------------------------------------------------------- transactions */

static bool transient(const mk_error_t *err)
{
    return err->code == MK_CODE_WRITE_CONFLICT && (err->labels & MK_LABEL_TRANSIENT_TRANSACTION);
}

/* After a failed attempt: the documented conflict is retried (true), anything else is logged. */
static bool retryable(worker_t *w, const mk_error_t *err, const char *what, const char *step,
                      int attempt)
{
    if (mk_session_in_transaction(w->sess)) {
        mk_error_t aerr = {0};
        if (mk_session_abort_transaction(w->sess, &aerr) != MK_OK)
            failf(w, "%s: abort after a failure failed: %s", what, aerr.message);
    }
    if (!transient(err)) {
        failf(w, "%s, at %s: code %d (%s) labels %u: '%s'", what, step, err->code, err->kind,
              err->labels, err->message);
        return false;
    }
    w->conflicts++;
    if (stopped() || (attempt > 1 && now_ms() > g.deadline_ms + HARD_EXTRA)) {
        if (!stopped()) failf(w, "%s: still conflicting after %d attempts", what, attempt);
        return false;
    }
    if (rnd(w, 4) == 0) usleep(rnd(w, 500));
    return true;
}

/* Leaves no transaction open after an unexpected failure (it would hold the write lock). */
static void abandon(worker_t *w)
{
    if (mk_session_in_transaction(w->sess)) mk_session_abort_transaction(w->sess, NULL);
}

static bool record_transfer(worker_t *w, int a, int b, int x)
{
    if (w->nledger == w->capledger) {
        size_t cap = w->capledger ? w->capledger * 2 : 256;
        transfer_t *nl = realloc(w->ledger, cap * sizeof *nl);
        if (!nl) {
            failf(w, "out of memory recording a transfer");
            return false;
        }
        w->ledger = nl;
        w->capledger = cap;
    }
    w->ledger[w->nledger++] = (transfer_t){a, b, x};
    w->delta[a] -= x;
    w->delta[b] += x;
    w->touches[a]++;
    w->touches[b]++;
    return true;
}

/* Moves x from account a to b with a ledger entry, in one transaction; declined (aborted)
 * when a has less than x. */
static void op_transfer(worker_t *w)
{
    int a = (int)rnd(w, NACCT), b = (int)rnd(w, NACCT - 1);
    if (b >= a) b++;
    int x = 1 + (int)rnd(w, 60);
    char lid[40];
    snprintf(lid, sizeof lid, "t%d-%zu", w->id, w->nledger);
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    for (int attempt = 1;; attempt++) {
        if (mk_session_start_transaction(w->sess, &err) != MK_OK) {
            ok(w, MK_ERR, &err, "startTransaction");
            break;
        }
        const char *step = "debit";
        int rc = RUN(w, w->sess, &reply, &err,
                     "{ update: 'acct', updates: [ { q: { _id: ?, bal: { $gte: ? } }, "
                     "u: { $inc: { bal: ?, ver: 1 } } } ] }",
                     MK_I32(a), MK_I32(x), MK_I32(-x));
        int64_t n = -1;
        if (rc == MK_OK) {
            bson_iter_t it;
            if (bson_iter_init_find(&it, &reply, "writeErrors") || !get_int(&reply, "n", &n) ||
                n > 1) {
                fail_reply(w, "debit", &reply);
                break;
            }
            if (n == 0) { /* insufficient funds: nothing to do */
                w->declined++;
                ok(w, mk_session_abort_transaction(w->sess, &err), &err, "abort of a declined");
                break;
            }
            step = "credit";
            rc = RUN(w, w->sess, &reply, &err,
                     "{ update: 'acct', updates: [ { q: { _id: ? }, "
                     "u: { $inc: { bal: ?, ver: 1 } } } ] }",
                     MK_I32(b), MK_I32(x));
            if (rc == MK_OK && !write_ok(w, rc, &err, &reply, "credit", 1)) break;
        }
        if (rc == MK_OK) {
            step = "ledger insert";
            rc = RUN(w, w->sess, &reply, &err,
                     "{ insert: 'ledger', documents: [ { _id: ?, t: ?, seq: ?, from: ?, to: ?, "
                     "amt: ? } ] }",
                     MK_STR(lid), MK_I32(w->id), MK_I64((int64_t)w->nledger), MK_I32(a), MK_I32(b),
                     MK_I32(x));
            if (rc == MK_OK && !write_ok(w, rc, &err, &reply, "ledger insert", 1)) break;
        }
        if (rc == MK_OK) {
            step = "commit";
            rc = mk_session_commit_transaction(w->sess, &err);
        }
        if (rc == MK_OK) {
            if (attempt > w->max_attempts) w->max_attempts = attempt;
            record_transfer(w, a, b, x);
            break;
        }
        if (!retryable(w, &err, "transfer", step, attempt)) break;
    }
    abandon(w);
    bson_destroy(&reply);
}

/* In one read-only transaction: every committed transfer bumped `ver` of two accounts and
 * wrote one ledger document, so sum(ver) == 2 * count(ledger) in any snapshot. */
static void op_snapshot(worker_t *w)
{
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    for (int attempt = 1;; attempt++) {
        if (mk_session_start_transaction(w->sess, &err) != MK_OK) {
            ok(w, MK_ERR, &err, "startTransaction");
            break;
        }
        const char *step = "find";
        int rc = RUN(w, w->sess, &reply, &err, "{ find: 'acct', batchSize: 1000 }");
        int64_t vers = 0, bal = 0, ndocs = 0, cid = -1, nledger = -1;
        if (rc == MK_OK) {
            bson_iter_t arr;
            if (!open_batch(&reply, true, &arr, &cid) || cid != 0) {
                fail_reply(w, "snapshot find", &reply);
                break;
            }
            while (bson_iter_next(&arr)) {
                int64_t v, bl;
                if (!elem_int(&arr, "ver", &v) || !elem_int(&arr, "bal", &bl)) {
                    fail_reply(w, "snapshot find document", &reply);
                    break;
                }
                vers += v;
                bal += bl;
                ndocs++;
            }
            step = "count";
            rc = RUN(w, w->sess, &reply, &err, "{ count: 'ledger' }");
            if (rc == MK_OK && !get_int(&reply, "n", &nledger)) {
                fail_reply(w, "snapshot count", &reply);
                break;
            }
        }
        if (rc == MK_OK) {
            step = "commit";
            rc = mk_session_commit_transaction(w->sess, &err);
        }
        if (rc == MK_OK) {
            if (ndocs != NACCT || bal != TOTAL_BAL || vers != 2 * nledger)
                failf(w,
                      "snapshot: %lld accounts, total %lld (want %lld), sum(ver) %lld but %lld "
                      "ledger entries",
                      (long long)ndocs, (long long)bal, (long long)TOTAL_BAL, (long long)vers,
                      (long long)nledger);
            break;
        }
        if (!retryable(w, &err, "snapshot transaction", step, attempt)) break;
    }
    abandon(w);
    bson_destroy(&reply);
}

/* ---------------------------------------------------------------- plain writes */

/* The thread's own counter (read back exactly by findAndModify) and one all threads share. */
static void op_counter(worker_t *w)
{
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    mk_session_t *s = rnd(w, 4) == 0 ? w->sess : NULL; /* a session outside a transaction */
    switch (rnd(w, 3)) {
    case 0: {
        int rc = RUN(w, s, &reply, &err,
                     "{ update: 'ctr', updates: [ { q: { _id: ? }, u: { $inc: { n: 1 } } } ] }",
                     MK_I32(w->id));
        if (write_ok(w, rc, &err, &reply, "counter update", 1)) w->ctr_acked++;
        break;
    }
    case 1: {
        int rc = RUN(w, s, &reply, &err,
                     "{ findAndModify: 'ctr', query: { _id: ? }, update: { $inc: { n: 1 } }, "
                     "new: true }",
                     MK_I32(w->id));
        int64_t n;
        if (!ok(w, rc, &err, "counter findAndModify")) break;
        if (!get_int(&reply, "value.n", &n) || n != w->ctr_acked + 1) {
            fail_reply(w, "counter findAndModify (lost or phantom increment)", &reply);
            break;
        }
        w->ctr_acked++;
        break;
    }
    default: {
        /* two statements in one command: both are acknowledged by n */
        int rc = RUN(w, s, &reply, &err,
                     "{ update: 'ctr', updates: [ { q: { _id: ? }, u: { $inc: { n: 1 } } }, "
                     "{ q: { _id: 'all' }, u: { $inc: { n: 1 } } } ] }",
                     MK_I32(w->id));
        if (write_ok(w, rc, &err, &reply, "counter pair", 2)) {
            w->ctr_acked++;
            w->shared_acked++;
        }
        break;
    }
    }
    bson_destroy(&reply);
}

/* An email number: often a fresh one, often one another thread has just taken or is taking. */
static int pick_email(worker_t *w)
{
    int next = __atomic_load_n(&g.email_next, __ATOMIC_RELAXED);
    if (next == 0 || rnd(w, 2) == 0) return __atomic_fetch_add(&g.email_next, 1, __ATOMIC_RELAXED);
    int back = next < 4 ? next : 4;
    return next - 1 - (int)rnd(w, (uint32_t)back);
}

static bool dup_error(const bson_iter_t *we, const char *index)
{
    int64_t code;
    const char *msg = elem_str(we, "errmsg");
    char want[64];
    snprintf(want, sizeof want, "index: %s dup key", index);
    return elem_int(we, "code", &code) && code == MK_CODE_DUPLICATE_KEY && msg && strstr(msg, want);
}

/* Inserts 1..3 users whose emails race with other threads' on the unique index. */
static void op_user(worker_t *w)
{
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    if (w->last_uid[0] && rnd(w, 10) == 0) {
        /* an _id that exists, with an email nobody uses: E11000 on _id_, and no trace */
        char email[64];
        snprintf(email, sizeof email, "ghost%d-%lld@x.test", w->id, (long long)w->user_seq++);
        int rc =
            RUN(w, NULL, &reply, &err, "{ insert: 'users', documents: [ { _id: ?, email: ? } ] }",
                MK_STR(w->last_uid), MK_STR(email));
        bson_iter_t we;
        int64_t n;
        if (ok(w, rc, &err, "insert of a taken _id") &&
            (!get_int(&reply, "n", &n) || n != 0 || !find_path(&reply, "writeErrors.0", &we) ||
             !dup_error(&we, "_id_")))
            fail_reply(w, "insert of a taken _id", &reply);
        w->dups++;
        bson_destroy(&reply);
        return;
    }
    int ndocs = 1 + (int)rnd(w, 3);
    bool ordered = rnd(w, 2) == 0;
    int ks[3];
    char ids[3][32];
    bson_t *docs = bson_new();
    for (int i = 0; i < ndocs; i++) {
        ks[i] = pick_email(w);
        if (ks[i] >= MAX_EMAIL) ks[i] = (int)rnd(w, MAX_EMAIL); /* only duplicates from now */
        snprintf(ids[i], sizeof ids[i], "u%d-%lld", w->id, (long long)w->user_seq++);
        char email[48], key[16];
        snprintf(email, sizeof email, "user%d@x.test", ks[i]);
        snprintf(key, sizeof key, "%d", i);
        bson_t d;
        bson_append_document_begin(docs, key, -1, &d);
        BSON_APPEND_UTF8(&d, "_id", ids[i]);
        BSON_APPEND_UTF8(&d, "email", email);
        BSON_APPEND_INT32(&d, "by", w->id);
        BSON_APPEND_INT32(&d, "k", ks[i]);
        bson_append_document_end(docs, &d);
    }
    int rc = RUN(w, NULL, &reply, &err, "{ insert: 'users', documents: ?, ordered: ? }",
                 MK_ARRAY(docs), MK_BOOL(ordered));
    bson_destroy(docs);
    if (!ok(w, rc, &err, "user insert")) goto out;
    /* which documents failed, and how */
    bool failed[3] = {false, false, false};
    int nfailed = 0, first_failed = ndocs;
    bson_iter_t it, we;
    if (bson_iter_init_find(&it, &reply, "writeErrors") && bson_iter_recurse(&it, &we)) {
        while (bson_iter_next(&we)) {
            int64_t index;
            if (!elem_int(&we, "index", &index) || index < 0 || index >= ndocs || failed[index] ||
                !dup_error(&we, "email_1")) {
                fail_reply(w, "user insert error", &reply);
                goto out;
            }
            failed[index] = true;
            nfailed++;
            if (index < first_failed) first_failed = (int)index;
        }
    }
    int attempted = ordered ? (first_failed < ndocs ? first_failed + 1 : ndocs) : ndocs;
    int64_t n;
    if (!get_int(&reply, "n", &n) || n != attempted - nfailed || (ordered && nfailed > 1)) {
        fail_reply(w, "user insert count", &reply);
        goto out;
    }
    for (int i = 0; i < attempted; i++) {
        w->email_state[ks[i]] |= failed[i] ? EMAIL_DUP : EMAIL_SUCC;
        if (failed[i]) {
            w->dups++;
        } else {
            w->users_acked++;
            memcpy(w->last_uid, ids[i], sizeof w->last_uid);
        }
    }
out:
    bson_destroy(&reply);
}

/* ---------------------------------------------------------------- reads */

/* All accounts in one command: one snapshot, so no transfer is ever half-visible. */
static void check_accounts_batch(worker_t *w, const bson_t *reply, const char *what, bool sorted)
{
    bson_iter_t arr;
    int64_t cid, sum = 0, vers = 0, n = 0, prev = INT64_MAX;
    if (!open_batch(reply, true, &arr, &cid) || cid != 0) {
        fail_reply(w, what, reply);
        return;
    }
    while (bson_iter_next(&arr)) {
        int64_t bal, ver;
        if (!elem_int(&arr, "bal", &bal) || !elem_int(&arr, "ver", &ver) || bal < 0 ||
            (sorted && bal > prev)) {
            fail_reply(w, what, reply);
            return;
        }
        prev = bal;
        sum += bal;
        vers += ver;
        n++;
    }
    if (n != NACCT || sum != TOTAL_BAL || vers % 2 != 0)
        failf(w, "%s: %lld accounts holding %lld (want %d holding %lld), sum(ver) %lld", what,
              (long long)n, (long long)sum, NACCT, (long long)TOTAL_BAL, (long long)vers);
}

static void expect_count(worker_t *w, const bson_t *reply, int64_t want, const char *what)
{
    int64_t n;
    if (!get_int(reply, "n", &n) || n != want) fail_reply(w, what, reply);
}

/* Checks every index entry of acct against the records, in one snapshot. */
static void op_validate(worker_t *w, mk_session_t *s)
{
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    int rc = RUN(w, s, &reply, &err, "{ validate: 'acct' }");
    bson_iter_t it;
    if (ok(w, rc, &err, "validate") &&
        (!bson_iter_init_find(&it, &reply, "valid") || !bson_iter_as_bool(&it)))
        fail_reply(w, "validate while others write", &reply);
    bson_destroy(&reply);
}

/* Planned on ver_1 while it exists. Dropping the index a running query uses kills the query
 * (QueryPlanKilled), as in MongoDB; nothing else may fail. */
static void op_find_on_ver(worker_t *w, mk_session_t *s)
{
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    int rc =
        RUN(w, s, &reply, &err, "{ find: 'acct', filter: { ver: { $gte: 0 } }, batchSize: 1000 }");
    if (rc != MK_OK && err.code == 175)
        w->plans_killed++;
    else if (ok(w, rc, &err, "find on ver"))
        check_accounts_batch(w, &reply, "find on ver", false);
    bson_destroy(&reply);
}

static void op_read(worker_t *w)
{
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    mk_session_t *s = rnd(w, 4) == 0 ? w->sess : NULL;
    int64_t t0 = now_ms();
    int rc;
    switch (rnd(w, 12)) {
    case 0:
        rc = RUN(w, s, &reply, &err, "{ find: 'acct', filter: {}, batchSize: 1000 }");
        if (ok(w, rc, &err, "find all")) check_accounts_batch(w, &reply, "find all", false);
        break;
    case 1:
        rc = RUN(w, s, &reply, &err,
                 "{ find: 'acct', filter: { bal: { $gte: 0 } }, sort: { bal: -1, _id: 1 }, "
                 "batchSize: 1000 }");
        if (ok(w, rc, &err, "sorted find")) check_accounts_batch(w, &reply, "sorted find", true);
        break;
    case 2: {
        int a = (int)rnd(w, NACCT);
        rc = RUN(w, s, &reply, &err, "{ find: 'acct', filter: { _id: ? } }", MK_I32(a));
        int64_t id, bal, cid;
        bson_iter_t arr;
        if (ok(w, rc, &err, "find by _id") &&
            (!open_batch(&reply, true, &arr, &cid) || cid != 0 || !bson_iter_next(&arr) ||
             !elem_int(&arr, "_id", &id) || id != a || !elem_int(&arr, "bal", &bal) || bal < 0 ||
             bal > TOTAL_BAL || bson_iter_next(&arr)))
            fail_reply(w, "find by _id", &reply);
        break;
    }
    case 3: {
        int lo = (int)rnd(w, 1400), hi = lo + 1 + (int)rnd(w, 400);
        rc = RUN(w, s, &reply, &err,
                 "{ find: 'acct', filter: { bal: { $gte: ?, $lt: ? } }, batchSize: 1000 }",
                 MK_I32(lo), MK_I32(hi));
        bson_iter_t arr;
        int64_t cid, n = 0;
        if (!ok(w, rc, &err, "range find")) break;
        if (!open_batch(&reply, true, &arr, &cid) || cid != 0) {
            fail_reply(w, "range find", &reply);
            break;
        }
        while (bson_iter_next(&arr)) {
            int64_t bal;
            n++;
            if (!elem_int(&arr, "bal", &bal) || bal < lo || bal >= hi || n > NACCT) {
                fail_reply(w, "range find (document outside the range)", &reply);
                break;
            }
        }
        break;
    }
    case 4:
        rc = RUN(w, s, &reply, &err, "{ count: 'acct' }");
        if (ok(w, rc, &err, "count")) expect_count(w, &reply, NACCT, "count");
        rc = RUN(w, s, &reply, &err, "{ count: 'acct', query: { bal: { $gte: 0 } } }");
        if (ok(w, rc, &err, "count with a filter"))
            expect_count(w, &reply, NACCT, "count with a filter");
        break;
    case 5: {
        /* read your own writes */
        rc = RUN(w, s, &reply, &err, "{ find: 'ctr', filter: { _id: ? } }", MK_I32(w->id));
        int64_t n;
        if (ok(w, rc, &err, "own counter") &&
            (!get_int(&reply, "cursor.firstBatch.0.n", &n) || n != w->ctr_acked))
            fail_reply(w, "own counter (read your own writes)", &reply);
        break;
    }
    case 6:
        /* monotonic reads: inserts only ever add users */
        rc = RUN(w, s, &reply, &err, "{ count: 'users' }");
        if (ok(w, rc, &err, "count users")) {
            int64_t users;
            if (!get_int(&reply, "n", &users) || users < w->users_seen || users < w->users_acked)
                failf(w, "users count went back: %lld after %lld (own %lld)",
                      (long long)(get_int(&reply, "n", &users) ? users : -1),
                      (long long)w->users_seen, (long long)w->users_acked);
            else
                w->users_seen = users;
        }
        break;
    case 7: {
        /* an email taken earlier is found exactly once, through the unique index */
        int next = __atomic_load_n(&g.email_next, __ATOMIC_RELAXED);
        int k = next > 0 ? (int)rnd(w, (uint32_t)(next < MAX_EMAIL ? next : MAX_EMAIL)) : 0;
        if (!(w->email_state[k] & EMAIL_SUCC)) break;
        char email[48];
        snprintf(email, sizeof email, "user%d@x.test", k);
        rc = RUN(w, s, &reply, &err, "{ count: 'users', query: { email: ? } }", MK_STR(email));
        if (ok(w, rc, &err, "count by email")) expect_count(w, &reply, 1, "count by email");
        break;
    }
    case 9:
        /* through bal_1 and FETCH: index entries and records of one snapshot */
        rc = RUN(w, s, &reply, &err,
                 "{ find: 'acct', filter: { bal: { $gte: 0 } }, hint: { bal: 1 }, "
                 "batchSize: 1000 }");
        if (ok(w, rc, &err, "find by bal_1"))
            check_accounts_batch(w, &reply, "find by bal_1", false);
        rc = RUN(w, s, &reply, &err,
                 "{ count: 'acct', query: { bal: { $gte: 0 } }, hint: 'bal_1' }");
        if (ok(w, rc, &err, "count by bal_1")) expect_count(w, &reply, NACCT, "count by bal_1");
        break;
    case 10:
        op_find_on_ver(w, s);
        break;
    default:
        op_validate(w, s);
        break;
    }
    int64_t took = now_ms() - t0;
    if (took > w->max_read_ms) w->max_read_ms = took;
    bson_destroy(&reply);
}

/* Cursors walked with getMore while others (and this thread, between batches) write. Each
 * getMore reads a fresh snapshot, so what holds across batches depends on the plan:
 *   SCAN    collection scan: resumes after the last _id, each account exactly once, in order;
 *   SORTED  blocking sort (no index provides { bal: 1, ver: -1 }): the whole result is taken
 *           from the find's one snapshot, so the batches together hold all the money;
 *   IXSCAN  bal_1: resumes after the last index key, so (bal, _id) strictly increases and
 *           every document fetched matches its key;
 *   VER     a filter on ver, planned on ver_1 while the DDL thread lets it exist; a getMore
 *           after the index was dropped fails with QueryPlanKilled, as MongoDB's does. */
enum { CUR_SCAN, CUR_SORTED, CUR_IXSCAN, CUR_VER, CUR_KINDS };

static void op_cursor(worker_t *w)
{
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    int kind = (int)rnd(w, g.ddl_run ? CUR_KINDS : CUR_VER);
    mk_arg_t batch = MK_I32(1 + (int)rnd(w, 8));
    static const char *const finds[CUR_KINDS] = {
        "{ find: 'acct', filter: {}, batchSize: ? }",
        "{ find: 'acct', filter: {}, sort: { bal: 1, ver: -1 }, batchSize: ? }",
        "{ find: 'acct', filter: { bal: { $gte: 0 } }, hint: { bal: 1 }, batchSize: ? }",
        "{ find: 'acct', filter: { ver: { $gte: 0 } }, batchSize: ? }",
    };
    int rc = RUN(w, NULL, &reply, &err, finds[kind], batch);
    if (rc != MK_OK && kind == CUR_VER && err.code == 175) { /* QueryPlanKilled */
        w->plans_killed++;
        goto out;
    }
    if (!ok(w, rc, &err, finds[kind])) goto out;
    int64_t sum = 0, n = 0, prev_bal = -1, prev_id = -1;
    bool first = true, complete = true;
    for (int round = 0;; round++) {
        bson_iter_t arr;
        int64_t cid;
        if (!open_batch(&reply, first, &arr, &cid)) {
            fail_reply(w, "cursor batch", &reply);
            goto out;
        }
        while (bson_iter_next(&arr)) {
            int64_t id, bal, ver;
            bool good = elem_int(&arr, "_id", &id) && elem_int(&arr, "bal", &bal) &&
                        elem_int(&arr, "ver", &ver) && bal >= 0 && ver >= 0;
            if (good && kind == CUR_SCAN) good = id == prev_id + 1;
            if (good && kind == CUR_SORTED) good = bal >= prev_bal;
            if (good && kind == CUR_IXSCAN)
                good = bal > prev_bal || (bal == prev_bal && id > prev_id);
            if (!good) {
                fail_reply(w, finds[kind], &reply);
                goto out;
            }
            prev_bal = bal;
            prev_id = id;
            sum += bal;
            n++;
        }
        if (cid == 0) break;
        first = false;
        if (rnd(w, 3) == 0) op_counter(w);
        if (rnd(w, 12) == 0) {
            rc = RUN(w, NULL, &reply, &err, "{ killCursors: 'acct', cursors: [ ? ] }", MK_I64(cid));
            int64_t k;
            if (ok(w, rc, &err, "killCursors") &&
                (!get_int(&reply, "cursorsKilled.0", &k) || k != cid))
                fail_reply(w, "killCursors", &reply);
            rc = RUN(w, NULL, &reply, &err, "{ getMore: ?, collection: 'acct' }", MK_I64(cid));
            if (rc == MK_OK || err.code != MK_CODE_CURSOR_NOT_FOUND)
                fail_reply(w, "getMore of a killed cursor", &reply);
            complete = false;
            break;
        }
        rc = RUN(w, NULL, &reply, &err, "{ getMore: ?, collection: 'acct', batchSize: ? }",
                 MK_I64(cid), MK_I32(1 + (int)rnd(w, 10)));
        if (rc != MK_OK && kind == CUR_VER && err.code == 175) { /* QueryPlanKilled */
            w->plans_killed++;
            complete = false;
            break;
        }
        if (!ok(w, rc, &err, "getMore")) goto out;
        if (round > 10 * NACCT) {
            failf(w, "%s: the cursor never ends", finds[kind]);
            goto out;
        }
    }
    if (complete && (kind == CUR_SCAN || kind == CUR_SORTED) && n != NACCT)
        failf(w, "%s: %lld accounts", finds[kind], (long long)n);
    if (complete && kind == CUR_SORTED && sum != TOTAL_BAL)
        failf(w, "%s: the batches hold %lld", finds[kind], (long long)sum);
out:
    bson_destroy(&reply);
}

/* ---------------------------------------------------------------- DDL */

/* Index and collection churn beside the workload: index ver_1 comes and goes on acct (every
 * transfer maintains it while it exists), and a scratch collection is created and dropped. */
static void op_ddl(worker_t *w)
{
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    int rc;
    switch (rnd(w, 3)) {
    case 0:
        if (!w->ver_index) {
            rc = RUN(w, NULL, &reply, &err,
                     "{ createIndexes: 'acct', indexes: [ { key: { ver: 1, bal: -1 }, "
                     "name: 'ver_1' } ] }");
            int64_t before, after;
            if (ok(w, rc, &err, "createIndexes") &&
                (!get_int(&reply, "numIndexesBefore", &before) ||
                 !get_int(&reply, "numIndexesAfter", &after) || after != before + 1))
                fail_reply(w, "createIndexes", &reply);
        } else {
            rc = RUN(w, NULL, &reply, &err, "{ dropIndexes: 'acct', index: 'ver_1' }");
            ok(w, rc, &err, "dropIndexes");
        }
        w->ver_index = !w->ver_index;
        break;
    case 1: {
        char name[32];
        snprintf(name, sizeof name, "scratch%d", w->scratch_gen++);
        rc = RUN(w, NULL, &reply, &err, "{ insert: ?, documents: [ { _id: 1 }, { _id: 2 } ] }",
                 MK_STR(name));
        if (write_ok(w, rc, &err, &reply, "scratch insert", 2)) {
            rc = RUN(w, NULL, &reply, &err, "{ count: ? }", MK_STR(name));
            if (ok(w, rc, &err, "scratch count")) expect_count(w, &reply, 2, "scratch count");
            rc = RUN(w, NULL, &reply, &err, "{ drop: ? }", MK_STR(name));
            ok(w, rc, &err, "scratch drop");
        }
        break;
    }
    default: {
        /* _id_ and bal_1, and ver_1 while it exists */
        rc = RUN(w, NULL, &reply, &err, "{ listIndexes: 'acct' }");
        int64_t cid;
        bson_iter_t arr;
        int n = 0;
        if (ok(w, rc, &err, "listIndexes") && open_batch(&reply, true, &arr, &cid))
            while (bson_iter_next(&arr)) n++;
        if (n != (w->ver_index ? 3 : 2)) fail_reply(w, "listIndexes", &reply);
        break;
    }
    }
    bson_destroy(&reply);
}

/* ---------------------------------------------------------------- workers */

static void *work(void *arg)
{
    worker_t *w = arg;
    mk_error_t err;
    w->sess = mk_session_start(g.eng, &err);
    if (!w->sess) {
        failf(w, "mk_session_start: %s", err.message);
        return NULL;
    }
    while (!time_is_up()) {
        uint32_t r = rnd(w, 100);
        int op = r < 28   ? OP_TRANSFER
                 : r < 42 ? OP_COUNTER
                 : r < 54 ? OP_USER
                 : r < 86 ? OP_READ
                 : r < 94 ? OP_CURSOR
                          : OP_SNAPSHOT;
        if (w->ddl && rnd(w, 3) == 0) op = OP_DDL;
        if (w->validator && rnd(w, 2) == 0) op = OP_VALIDATE;
        switch (op) {
        case OP_TRANSFER:
            op_transfer(w);
            break;
        case OP_COUNTER:
            op_counter(w);
            break;
        case OP_USER:
            op_user(w);
            break;
        case OP_READ:
            op_read(w);
            break;
        case OP_CURSOR:
            op_cursor(w);
            break;
        case OP_SNAPSHOT:
            op_snapshot(w);
            break;
        case OP_DDL:
            op_ddl(w);
            break;
        default:
            op_validate(w, NULL);
            break;
        }
        w->ops[op]++;
    }
    mk_session_end(w->sess);
    w->sess = NULL;
    return NULL;
}

/* ---------------------------------------------------------------- setup and verification */

static void open_engine(size_t map_size, int txn_lock_timeout_ms)
{
    mk_error_t err = {0};
    mk_engine_opts_t opts = {
        .no_sync = true, .map_size = map_size, .txn_lock_timeout_ms = txn_lock_timeout_ms};
    g.eng = mk_engine_open(g.dir, &opts, &err);
    if (!g.eng) fail_msg("open: %s", err.message);
}

static int setup(void **state)
{
    g.dir = tu_tmpdir("stress");
    g.stop = 0;
    g.nfail = 0;
    g.loglen = 0;
    g.log[0] = 0;
    g.email_next = 0;
    g.ddl_run = false;
    const char *seed = getenv("MK_STRESS_SEED");
    g.seed = seed && *seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL);
    return 0;
}

static void free_workers(void)
{
    for (int t = 0; t < NTHREADS; t++) {
        if (g.ws[t]) free(g.ws[t]->ledger);
        free(g.ws[t]);
        g.ws[t] = NULL;
    }
}

static void free_expect(void);

static int teardown(void **state)
{
    free_workers();
    free_expect();
    mk_engine_close(g.eng);
    g.eng = NULL;
    tu_rmdir(g.dir);
    free(g.dir);
    return 0;
}

/* Runs a command in the main thread, where cmocka may assert. */
static void must(bson_t *reply, const char *text, const mk_arg_t *args)
{
    mk_error_t err = {0};
    bson_reinit(reply);
    bson_t *cmd = mk_json_parse(text, args, &err);
    if (!cmd) fail_msg("does not parse: %s: %s", err.message, text);
    int rc = mk_engine_command(g.eng, DB, cmd, reply, &err);
    bson_destroy(cmd);
    if (rc != MK_OK) fail_msg("%s failed: %d %s", text, err.code, err.message);
}

#define MUST(reply, text, ...) must(reply, text, MK_ARGS(__VA_ARGS__))

static void load(void)
{
    bson_t reply = BSON_INITIALIZER;
    bson_t *docs = bson_new();
    for (int i = 0; i < NACCT; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        bson_t d;
        bson_append_document_begin(docs, key, -1, &d);
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_INT32(&d, "bal", START_BAL);
        BSON_APPEND_INT32(&d, "ver", 0);
        bson_append_document_end(docs, &d);
    }
    MUST(&reply, "{ insert: 'acct', documents: ? }", MK_ARRAY(docs));
    bson_destroy(docs);
    MUST(&reply, "{ createIndexes: 'acct', indexes: [ { key: { bal: 1 }, name: 'bal_1' } ] }");
    MUST(&reply, "{ createIndexes: 'users', indexes: [ { key: { email: 1 }, name: 'email_1', "
                 "unique: true }, { key: { by: 1, k: 1 }, name: 'by_1_k_1' } ] }");
    docs = bson_new();
    for (int i = 0; i < NTHREADS; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        bson_t d;
        bson_append_document_begin(docs, key, -1, &d);
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_INT32(&d, "n", 0);
        bson_append_document_end(docs, &d);
    }
    bson_t d;
    bson_append_document_begin(docs, "6", -1, &d);
    BSON_APPEND_UTF8(&d, "_id", "all");
    BSON_APPEND_INT32(&d, "n", 0);
    bson_append_document_end(docs, &d);
    MUST(&reply, "{ insert: 'ctr', documents: ? }", MK_ARRAY(docs));
    bson_destroy(docs);
    MUST(&reply, "{ create: 'ledger' }");
    MUST(&reply, "{ createIndexes: 'ledger', indexes: [ { key: { from: 1, amt: 1 }, "
                 "name: 'from_1_amt_1' } ] }");
    bson_destroy(&reply);
}

/* Calls visit on every document of coll (find + getMore) and returns how many. */
static int64_t each_doc(const char *coll, const char *sort, void (*visit)(void *, bson_iter_t *),
                        void *ud)
{
    bson_t reply = BSON_INITIALIZER;
    bson_t *sort_doc = tu_bson(sort);
    MUST(&reply, "{ find: ?, filter: {}, sort: ?, batchSize: 500 }", MK_STR(coll),
         MK_DOC(sort_doc));
    bson_destroy(sort_doc);
    int64_t n = 0;
    bool first = true;
    for (;;) {
        bson_iter_t arr;
        int64_t cid;
        assert_true(open_batch(&reply, first, &arr, &cid));
        while (bson_iter_next(&arr)) {
            visit(ud, &arr);
            n++;
        }
        if (cid == 0) break;
        first = false;
        MUST(&reply, "{ getMore: ?, collection: ?, batchSize: 500 }", MK_I64(cid), MK_STR(coll));
    }
    bson_destroy(&reply);
    return n;
}

typedef struct expect {
    worker_t **ws;
    int nw;
    int64_t bal[NACCT], ver[NACCT];
    int64_t next_acct;
    uint8_t *ledger_seen[NTHREADS];
    uint8_t *email_seen;
} expect_t;

static void visit_acct(void *ud, bson_iter_t *el)
{
    expect_t *e = ud;
    int64_t id = -1, bal = -1, ver = -1;
    assert_true(elem_int(el, "_id", &id) && elem_int(el, "bal", &bal) && elem_int(el, "ver", &ver));
    assert_int_equal(id, e->next_acct);
    if (bal != e->bal[id] || ver != e->ver[id])
        fail_msg("account %lld: bal %lld ver %lld, but the acknowledged transfers give bal %lld "
                 "ver %lld",
                 (long long)id, (long long)bal, (long long)ver, (long long)e->bal[id],
                 (long long)e->ver[id]);
    e->next_acct++;
}

static void visit_ledger(void *ud, bson_iter_t *el)
{
    expect_t *e = ud;
    int64_t t = -1, seq = -1, from = -1, to = -1, amt = -1;
    assert_true(elem_int(el, "t", &t) && elem_int(el, "seq", &seq) && elem_int(el, "from", &from) &&
                elem_int(el, "to", &to) && elem_int(el, "amt", &amt));
    if (t < 0 || t >= e->nw || seq < 0 || (size_t)seq >= e->ws[t]->nledger)
        fail_msg("ledger entry t%lld-%lld was never acknowledged", (long long)t, (long long)seq);
    const transfer_t *x = &e->ws[t]->ledger[seq];
    assert_int_equal(from, x->from);
    assert_int_equal(to, x->to);
    assert_int_equal(amt, x->amt);
    assert_false(e->ledger_seen[t][seq]);
    e->ledger_seen[t][seq] = 1;
}

static void visit_user(void *ud, bson_iter_t *el)
{
    expect_t *e = ud;
    int64_t by = -1, k = -1;
    const char *email = elem_str(el, "email");
    if (!elem_int(el, "by", &by) || !elem_int(el, "k", &k))
        fail_msg("a user document without by/k (email %s): a failed insert left a trace",
                 email ? email : "(none)");
    assert_true(by >= 0 && by < e->nw && k >= 0 && k < MAX_EMAIL);
    char want[48];
    snprintf(want, sizeof want, "user%lld@x.test", (long long)k);
    assert_non_null(email);
    assert_string_equal(email, want);
    if (!(e->ws[by]->email_state[k] & EMAIL_SUCC))
        fail_msg("user %s inserted by thread %lld was never acknowledged", email, (long long)by);
    if (e->email_seen[k]) fail_msg("email %s is stored twice despite the unique index", email);
    e->email_seen[k] = 1;
}

static void expect_valid(const char *coll)
{
    bson_t reply = BSON_INITIALIZER;
    MUST(&reply, "{ validate: ? }", MK_STR(coll));
    bson_iter_t it;
    if (!bson_iter_init_find(&it, &reply, "valid") || !bson_iter_as_bool(&it)) {
        char *s = reply_text(&reply);
        fail_msg("validate %s: %s", coll, s);
    }
    bson_destroy(&reply);
}

static int64_t count_of(const char *coll, const char *query)
{
    bson_t reply = BSON_INITIALIZER;
    bson_t *q = tu_bson(query);
    MUST(&reply, "{ count: ?, query: ? }", MK_STR(coll), MK_DOC(q));
    bson_destroy(q);
    int64_t n = -1;
    assert_true(get_int(&reply, "n", &n));
    bson_destroy(&reply);
    return n;
}

/* The stored state equals what the acknowledged operations imply. */
static void verify(worker_t **ws, int nw)
{
    expect_t *e = g.expect = calloc(1, sizeof *e);
    assert_non_null(e);
    e->ws = ws;
    e->nw = nw;
    for (int i = 0; i < NACCT; i++) e->bal[i] = START_BAL;
    int64_t transfers = 0, users = 0, shared = 0;
    for (int t = 0; t < nw; t++) {
        for (int i = 0; i < NACCT; i++) {
            e->bal[i] += ws[t]->delta[i];
            e->ver[i] += ws[t]->touches[i];
        }
        transfers += (int64_t)ws[t]->nledger;
        users += ws[t]->users_acked;
        shared += ws[t]->shared_acked;
        e->ledger_seen[t] = calloc(ws[t]->nledger + 1, 1);
        assert_non_null(e->ledger_seen[t]);
    }
    e->email_seen = calloc(MAX_EMAIL, 1);
    assert_non_null(e->email_seen);

    assert_int_equal(each_doc("acct", "{ _id: 1 }", visit_acct, e), NACCT);
    assert_int_equal(each_doc("ledger", "{}", visit_ledger, e), transfers);
    assert_int_equal(each_doc("users", "{}", visit_user, e), users);
    /* every email someone was refused is stored (exactly once, checked above) */
    for (int k = 0; k < MAX_EMAIL; k++) {
        int succ = 0, dup = 0;
        for (int t = 0; t < nw; t++) {
            succ += (ws[t]->email_state[k] & EMAIL_SUCC) != 0;
            dup += (ws[t]->email_state[k] & EMAIL_DUP) != 0;
        }
        if (succ > 1) fail_msg("email user%d@x.test acknowledged to %d threads", k, succ);
        if (dup && !succ) fail_msg("email user%d@x.test refused (11000) but never stored", k);
    }
    assert_int_equal(count_of("users", "{ email: /^ghost/ }"), 0);
    for (int t = 0; t < nw; t++) {
        char q[32];
        snprintf(q, sizeof q, "{ _id: %d, n: %lld }", t, (long long)ws[t]->ctr_acked);
        if (count_of("ctr", q) != 1)
            fail_msg("counter %d is not %lld", t, (long long)ws[t]->ctr_acked);
    }
    char q[64];
    snprintf(q, sizeof q, "{ _id: 'all', n: %lld }", (long long)shared);
    assert_int_equal(count_of("ctr", q), 1);
    assert_int_equal(count_of("acct", "{}"), NACCT);
    /* the indexes agree with the records */
    expect_valid("acct");
    expect_valid("users");
    expect_valid("ledger");
    expect_valid("ctr");
    free_expect();
}

static void free_expect(void)
{
    if (!g.expect) return;
    for (int t = 0; t < NTHREADS; t++) free(g.expect->ledger_seen[t]);
    free(g.expect->email_seen);
    free(g.expect);
    g.expect = NULL;
}

static int64_t budget_ms(int64_t dflt)
{
    const char *s = getenv("MK_STRESS_MS");
    return s && *s ? strtoll(s, NULL, 10) : dflt;
}

/* Runs NTHREADS workers for ms milliseconds, then checks everything, reopens, checks again. */
static void run_workload(int64_t ms, bool ddl)
{
    worker_t *ws[NTHREADS];
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        ws[t] = g.ws[t] = calloc(1, sizeof *ws[t]);
        assert_non_null(ws[t]);
        ws[t]->id = t;
        ws[t]->rng = (g.seed + 1) * 0x9E3779B97F4A7C15ull + (uint64_t)t * 0xBF58476D1CE4E5B9ull;
        if (!ws[t]->rng) ws[t]->rng = 1;
        ws[t]->ddl = ddl && t == 0;
        ws[t]->validator = ddl && t == 1;
    }
    g.deadline_ms = now_ms() + ms;
    int64_t t0 = now_ms();
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, work, ws[t]), 0);
    for (int t = 0; t < NTHREADS; t++) pthread_join(th[t], NULL);
    int64_t took = now_ms() - t0;

    int64_t tot[OP_KINDS] = {0}, conflicts = 0, declined = 0, dups = 0, max_att = 0, max_read = 0,
            killed = 0;
    for (int t = 0; t < NTHREADS; t++) {
        for (int k = 0; k < OP_KINDS; k++) tot[k] += ws[t]->ops[k];
        killed += ws[t]->plans_killed;
        conflicts += ws[t]->conflicts;
        declined += ws[t]->declined;
        dups += ws[t]->dups;
        if (ws[t]->max_attempts > max_att) max_att = ws[t]->max_attempts;
        if (ws[t]->max_read_ms > max_read) max_read = ws[t]->max_read_ms;
    }
    print_message("stress (seed %llu, %lld ms):", (unsigned long long)g.seed, (long long)took);
    for (int k = 0; k < OP_KINDS; k++)
        if (tot[k]) print_message(" %s %lld", op_names[k], (long long)tot[k]);
    print_message("\n  write conflicts retried %lld (most attempts for one transaction %lld), "
                  "declined %lld, E11000 %lld, QueryPlanKilled %lld, slowest read %lld ms\n",
                  (long long)conflicts, (long long)max_att, (long long)declined, (long long)dups,
                  (long long)killed, (long long)max_read);
    assert_no_failures();
    assert_true(tot[OP_TRANSFER] > 0 && tot[OP_READ] > 0 && tot[OP_USER] > 0);

    verify(ws, NTHREADS);
    /* what was acknowledged is what a fresh open of the directory finds */
    mk_engine_close(g.eng);
    open_engine(0, 0);
    verify(ws, NTHREADS);
    free_workers();
}

/* ---------------------------------------------------------------- tests */

/* The whole mix, on a deliberately small map so that it grows while everyone works. */
static void test_mixed_workload(void **state)
{
    open_engine(SMALL_MAP, 10);
    load();
    run_workload(budget_ms(6000), false);
}

/* The same, while one thread creates and drops an index on the busiest collection and creates
 * and drops collections. */
static void test_workload_with_ddl(void **state)
{
    g.ddl_run = true;
    open_engine(0, 0);
    load();
    run_workload(budget_ms(6000) / 3, true);
}

/* Only the churn and readers that use index tables (validate; a find planned on the index):
 * an index created or dropped while a reader's snapshot is open must not make that reader see
 * a mix of two states. */
static void *churn_index(void *arg)
{
    worker_t *w = arg;
    while (!time_is_up()) {
        bson_t reply = BSON_INITIALIZER;
        mk_error_t err;
        int rc = w->ver_index
                     ? RUN(w, NULL, &reply, &err, "{ dropIndexes: 'acct', index: 'ver_1' }")
                     : RUN(w, NULL, &reply, &err,
                           "{ createIndexes: 'acct', indexes: [ { key: { ver: 1 }, "
                           "name: 'ver_1' } ] }");
        ok(w, rc, &err, w->ver_index ? "dropIndexes" : "createIndexes");
        w->ver_index = !w->ver_index;
        w->ops[OP_DDL]++;
        bson_destroy(&reply);
    }
    return NULL;
}

static void *validate_loop(void *arg)
{
    worker_t *w = arg;
    while (!time_is_up()) {
        if (w->id % 2) {
            op_validate(w, NULL);
            w->ops[OP_VALIDATE]++;
        } else {
            op_find_on_ver(w, NULL);
            w->ops[OP_READ]++;
        }
    }
    return NULL;
}

static void test_validate_during_index_churn(void **state)
{
    open_engine(0, 0);
    load();
    enum { NVAL = 3 };
    worker_t *ws[NVAL + 1];
    pthread_t th[NVAL + 1];
    g.deadline_ms = now_ms() + budget_ms(6000) / 6;
    for (int i = 0; i <= NVAL; i++) {
        ws[i] = g.ws[i] = calloc(1, sizeof *ws[i]);
        assert_non_null(ws[i]);
        ws[i]->id = i;
        assert_int_equal(pthread_create(&th[i], NULL, i == 0 ? churn_index : validate_loop, ws[i]),
                         0);
    }
    for (int i = 0; i <= NVAL; i++) pthread_join(th[i], NULL);
    int64_t validations = 0, finds = 0, killed = 0;
    for (int i = 1; i <= NVAL; i++) {
        validations += ws[i]->ops[OP_VALIDATE];
        finds += ws[i]->ops[OP_READ];
        killed += ws[i]->plans_killed;
    }
    print_message("index churn: %lld index builds/drops, %lld validations, %lld finds on ver "
                  "(%lld QueryPlanKilled)\n",
                  (long long)ws[0]->ops[OP_DDL], (long long)validations, (long long)finds,
                  (long long)killed);
    assert_no_failures();
    assert_true(ws[0]->ops[OP_DDL] >= 1 && validations > 0 && finds > 0);
    expect_valid("acct");
}

typedef struct holder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stage; /* 1: transaction open and written; 2: readers are done */
    int rc;
    mk_error_t err;
    bool timed_out;
} holder_t;

/* Opens a transaction, writes, and keeps it open until the main thread is done reading. */
static void *hold_transaction(void *arg)
{
    holder_t *h = arg;
    mk_session_t *s = mk_session_start(g.eng, &h->err);
    bson_t reply = BSON_INITIALIZER;
    h->rc = s ? mk_session_start_transaction(s, &h->err) : MK_ERR;
    if (h->rc == MK_OK) {
        bson_t *cmd = tu_bson("{ update: 'acct', updates: [ { q: { _id: 0 }, "
                              "u: { $inc: { bal: -500, ver: 1 } } }, { q: { _id: 1 }, "
                              "u: { $inc: { bal: 500, ver: 1 } } } ] }");
        h->rc = mk_session_command(s, DB, cmd, &reply, &h->err);
        bson_destroy(cmd);
    }
    pthread_mutex_lock(&h->mu);
    h->stage = 1;
    pthread_cond_broadcast(&h->cv);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (h->stage != 2 && !h->timed_out)
        h->timed_out = pthread_cond_timedwait(&h->cv, &h->mu, &until) != 0;
    pthread_mutex_unlock(&h->mu);
    if (h->rc == MK_OK) h->rc = mk_session_commit_transaction(s, &h->err);
    bson_destroy(&reply);
    mk_session_end(s);
    return NULL;
}

typedef struct plain_writer {
    int rc;
    mk_error_t err;
    int done; /* atomic */
} plain_writer_t;

static void *plain_write(void *arg)
{
    plain_writer_t *p = arg;
    bson_t reply = BSON_INITIALIZER;
    bson_t *cmd = tu_bson("{ update: 'ctr', updates: [ { q: { _id: 'all' }, "
                          "u: { $inc: { n: 1 } } } ] }");
    p->rc = mk_engine_command(g.eng, DB, cmd, &reply, &p->err);
    __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
    bson_destroy(cmd);
    bson_destroy(&reply);
    return NULL;
}

static void *conflicting_transaction(void *arg)
{
    plain_writer_t *p = arg;
    mk_session_t *s = mk_session_start(g.eng, &p->err);
    bson_t reply = BSON_INITIALIZER;
    bson_t *cmd =
        tu_bson("{ update: 'ctr', updates: [ { q: { _id: 0 }, u: { $inc: { n: 1 } } } ] }");
    p->rc = s ? mk_session_start_transaction(s, &p->err) : MK_ERR;
    if (p->rc == MK_OK) p->rc = mk_session_command(s, DB, cmd, &reply, &p->err);
    bson_destroy(cmd);
    bson_destroy(&reply);
    mk_session_end(s);
    return NULL;
}

/* While a transaction holds the write lock: readers proceed (seeing the last committed state),
 * a plain write waits, another transaction gets the documented WriteConflict. */
static void test_readers_never_block(void **state)
{
    open_engine(0, 0);
    load();
    holder_t h = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold_transaction, &h), 0);
    pthread_mutex_lock(&h.mu);
    while (h.stage != 1) pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);
    assert_int_equal(h.rc, MK_OK);

    plain_writer_t pw = {0}, tx = {0};
    pthread_t wt, tt;
    assert_int_equal(pthread_create(&wt, NULL, plain_write, &pw), 0);
    assert_int_equal(pthread_create(&tt, NULL, conflicting_transaction, &tx), 0);
    pthread_join(tt, NULL);
    assert_int_equal(tx.rc, MK_ERR);
    assert_int_equal(tx.err.code, MK_CODE_WRITE_CONFLICT);
    assert_true(tx.err.labels & MK_LABEL_TRANSIENT_TRANSACTION);

    /* many reads while the lock is held; a blocked read stalls until the holder gives up
     * after 10 s and commits */
    /* thread 0's counter is 0: the conflicting transaction above did not commit */
    worker_t w = {.id = 0, .rng = 12345};
    bson_t reply = BSON_INITIALIZER;
    for (int i = 0; i < 200; i++) {
        op_read(&w);
        pthread_mutex_lock(&h.mu);
        bool blocked = h.timed_out;
        pthread_mutex_unlock(&h.mu);
        if (blocked) fail_msg("a read waited for the open transaction (gave up after 10 s)");
        MUST(&reply, "{ find: 'acct', filter: { _id: { $in: [ 0, 1 ] } }, sort: { _id: 1 } }");
        int64_t b0, b1;
        assert_true(get_int(&reply, "cursor.firstBatch.0.bal", &b0));
        assert_true(get_int(&reply, "cursor.firstBatch.1.bal", &b1));
        assert_int_equal(b0, START_BAL); /* the open transaction's writes are not visible */
        assert_int_equal(b1, START_BAL);
    }
    /* writes serialize behind the transaction */
    assert_int_equal(__atomic_load_n(&pw.done, __ATOMIC_ACQUIRE), 0);
    assert_no_failures();

    pthread_mutex_lock(&h.mu);
    h.stage = 2;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    pthread_join(th, NULL);
    pthread_join(wt, NULL);
    assert_false(h.timed_out);
    assert_int_equal(h.rc, MK_OK);
    assert_int_equal(pw.rc, MK_OK);
    MUST(&reply, "{ find: 'acct', filter: { _id: { $in: [ 0, 1 ] } }, sort: { _id: 1 } }");
    int64_t b0, b1;
    assert_true(get_int(&reply, "cursor.firstBatch.0.bal", &b0));
    assert_true(get_int(&reply, "cursor.firstBatch.1.bal", &b1));
    assert_int_equal(b0, START_BAL - 500);
    assert_int_equal(b1, START_BAL + 500);
    assert_int_equal(count_of("ctr", "{ _id: 'all', n: 1 }"), 1);
    bson_destroy(&reply);
}

typedef struct filler {
    int id, done;
    mk_error_t err;
} filler_t;

#define FILL_DOCS 150
#define FILL_SIZE 4000

/* Transactional inserts only, well past the initial map size. */
static void *fill_in_transactions(void *arg)
{
    filler_t *f = arg;
    worker_t w = {.id = f->id, .rng = (uint64_t)f->id + 7};
    w.sess = mk_session_start(g.eng, &f->err);
    if (!w.sess) {
        failf(&w, "mk_session_start: %s", f->err.message);
        return NULL;
    }
    char *pad = malloc(FILL_SIZE + 1);
    if (!pad) {
        failf(&w, "out of memory");
        mk_session_end(w.sess);
        return NULL;
    }
    memset(pad, 'x', FILL_SIZE);
    pad[FILL_SIZE] = 0;
    bson_t reply = BSON_INITIALIZER;
    mk_error_t err;
    for (int i = 0; i < FILL_DOCS && !stopped(); i++) {
        char id[32];
        snprintf(id, sizeof id, "f%d-%d", f->id, i);
        for (int attempt = 1;; attempt++) {
            if (mk_session_start_transaction(w.sess, &err) != MK_OK) {
                ok(&w, MK_ERR, &err, "startTransaction");
                break;
            }
            int rc = RUN(&w, w.sess, &reply, &err,
                         "{ insert: 'fill', documents: [ { _id: ?, pad: ? } ] }", MK_STR(id),
                         MK_STR(pad));
            const char *step = "insert";
            if (rc == MK_OK && !write_ok(&w, rc, &err, &reply, "fill insert", 1)) break;
            if (rc == MK_OK) {
                step = "commit";
                rc = mk_session_commit_transaction(w.sess, &err);
            }
            if (rc == MK_OK) {
                f->done++;
                break;
            }
            if (!retryable(&w, &err, "fill transaction", step, attempt)) break;
        }
        abandon(&w);
    }
    bson_destroy(&reply);
    free(pad);
    mk_session_end(w.sess);
    return NULL;
}

/* A transaction that finds the map full is told to retry (WriteConflict, transient); the retry
 * must then find room, even when no plain write ever grows the map. */
static void test_map_grows_for_transactions(void **state)
{
    open_engine(SMALL_MAP, 0);
    g.deadline_ms = now_ms() + 3000; /* plus HARD_EXTRA for a stuck retry loop */
    enum { NFILL = 3 };
    filler_t f[NFILL] = {{0}};
    pthread_t th[NFILL];
    for (int i = 0; i < NFILL; i++) {
        f[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, fill_in_transactions, &f[i]), 0);
    }
    for (int i = 0; i < NFILL; i++) pthread_join(th[i], NULL);
    assert_no_failures();
    int64_t done = 0;
    for (int i = 0; i < NFILL; i++) done += f[i].done;
    assert_int_equal(done, NFILL * FILL_DOCS);
    assert_int_equal(count_of("fill", "{}"), NFILL * FILL_DOCS);
    expect_valid("fill");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_readers_never_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed_workload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workload_with_ddl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_during_index_churn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grows_for_transactions, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
