/* Client sessions and transactions (Mongoose's ClientSession, i.e. the driver's).
 *
 * The backend session does the work; this layer keeps the transaction state machine the
 * drivers specify (no transaction, in progress, committed, aborted), because it decides what a
 * second commit, an abort after a commit or withTransaction's retries do, and because a
 * backend may drop its transaction on its own (the embedded engine aborts a transaction when
 * one of its statements fails, as a server does).
 *
 * withTransaction follows the drivers' convenient-transaction specification: the callback is
 * retried while its error is labelled TransientTransactionError, the commit is retried while its
 * error is labelled UnknownTransactionCommitResult (but not after MaxTimeMSExpired), a commit
 * error labelled TransientTransactionError retries the whole transaction, all within 120 s,
 * with an exponential backoff with jitter between attempts of the transaction. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "odm/odm_internal.h"

typedef enum { TXN_NONE, TXN_ACTIVE, TXN_COMMITTED, TXN_ABORTED } txn_state_t;

/* What every mk_client_session_t really is: the shared struct plus the driver's state. Only
 * mk_conn_start_session creates sessions, so the cast back is always valid. */
typedef struct session_state {
    struct mk_client_session pub; /* first: a mk_client_session_t * points here */
    txn_state_t state;
    bool commit_ok;  /* the last commit succeeded (a repeated commit answers the same) */
    pthread_t owner; /* the thread that started the transaction */
    int64_t txn_number;
} session_state_t;

enum {
    WITH_TXN_TIMEOUT_MS = 120000, /* the drivers' limit for withTransaction's retries */
    BACKOFF_INITIAL_MS = 5,
    BACKOFF_MAX_MS = 500,
};

static session_state_t *state_of(mk_client_session_t *s)
{
    return (session_state_t *)s;
}

static const session_state_t *cstate_of(const mk_client_session_t *s)
{
    return (const session_state_t *)s;
}

static int txn_error(mk_error_t *err, const char *msg)
{
    return mk_error_set(err, 0, "MongoTransactionError", "%s", msg);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- sessions */

mk_client_session_t *mk_conn_start_session(mk_conn_t *conn, mk_error_t *err)
{
    if (!conn || !conn->be) {
        mk_error_set(err, 0, "MongooseError", "startSession() needs an open connection");
        return NULL;
    }
    session_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        mk_error_nomem(err);
        return NULL;
    }
    st->pub.conn = conn;
    st->pub.bs = mk_backend_session_start(conn->be, err);
    if (!st->pub.bs) {
        free(st);
        return NULL;
    }
    st->state = TXN_NONE;
    return &st->pub;
}

/* endSession(): an open transaction is aborted (by the backend, which owns it; the engine can
 * only abort it from the thread that started it, so end a session on that thread). */
void mk_client_session_end(mk_client_session_t *s)
{
    if (!s) return;
    mk_backend_session_end(s->bs);
    free(state_of(s));
}

/* ---------------------------------------------------------------- transactions */

bool mk_client_session_in_transaction(const mk_client_session_t *s)
{
    return s && cstate_of(s)->state == TXN_ACTIVE;
}

int mk_client_session_start_transaction(mk_client_session_t *s, mk_error_t *err)
{
    if (!s) return mk_error_setc(err, MK_CODE_BAD_VALUE, "startTransaction() needs a session");
    session_state_t *st = state_of(s);
    if (st->state == TXN_ACTIVE) return txn_error(err, "Transaction already in progress");
    int rc = mk_backend_start_transaction(s->bs, NULL, err);
    if (rc != MK_OK) return rc;
    st->state = TXN_ACTIVE;
    st->commit_ok = false;
    st->owner = pthread_self();
    st->txn_number++;
    return MK_OK;
}

/* The engine binds a transaction to the thread that opened it (one LMDB write transaction):
 * refuse before the backend sees the call, so that the session's state stays consistent. */
static int check_owner(const session_state_t *st, const char *what, mk_error_t *err)
{
    if (pthread_equal(st->owner, pthread_self())) return MK_OK;
    return mk_error_setc(err, MK_CODE_ILLEGAL_OPERATION,
                         "a transaction must be %s by the thread that started it", what);
}

/* A server answers a commit of a transaction it no longer has with NoSuchTransaction, labelled
 * TransientTransactionError: the whole transaction may be retried. */
static int no_such_transaction(const session_state_t *st, mk_error_t *err)
{
    if (!err) return MK_ERR;
    mk_error_setc(err, MK_CODE_NO_SUCH_TRANSACTION,
                  "Transaction with { txnNumber: %lld } has been aborted.",
                  (long long)st->txn_number);
    err->labels |= MK_LABEL_TRANSIENT_TRANSACTION;
    return MK_ERR;
}

/* Commit errors whose outcome is unknown (the transaction may have committed), labelled
 * UnknownTransactionCommitResult as the drivers do: MaxTimeMSExpired, write concern failures
 * and the retryable (network, primary change) errors. */
static bool unknown_commit_result(int code)
{
    static const int codes[] = {
        50,    /* MaxTimeMSExpired */
        64,    /* WriteConcernFailed */
        6,     /* HostUnreachable */
        7,     /* HostNotFound */
        89,    /* NetworkTimeout */
        91,    /* ShutdownInProgress */
        189,   /* PrimarySteppedDown */
        262,   /* ExceededTimeLimit */
        9001,  /* SocketException */
        10107, /* NotWritablePrimary */
        11600, /* InterruptedAtShutdown */
        11602, /* InterruptedDueToReplStateChange */
        13435, /* NotPrimaryNoSecondaryOk */
        13436, /* NotPrimaryOrSecondary */
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i] == code) return true;
    return false;
}

static int backend_commit(session_state_t *st, mk_error_t *err)
{
    mk_error_t e = {0};
    int rc = mk_backend_commit_transaction(st->pub.bs, &e);
    st->state =
        TXN_COMMITTED; /* as the drivers: also after a failed commit, which may be retried */
    st->commit_ok = rc == MK_OK;
    if (rc != MK_OK && unknown_commit_result(e.code)) e.labels |= MK_LABEL_UNKNOWN_COMMIT_RESULT;
    if (rc != MK_OK && err) *err = e;
    return rc;
}

int mk_client_session_commit_transaction(mk_client_session_t *s, mk_error_t *err)
{
    if (!s) return mk_error_setc(err, MK_CODE_BAD_VALUE, "commitTransaction() needs a session");
    session_state_t *st = state_of(s);
    switch (st->state) {
    case TXN_NONE:
        return txn_error(err, "No transaction started");
    case TXN_ABORTED:
        return txn_error(err, "Cannot call commitTransaction after calling abortTransaction");
    case TXN_COMMITTED:
        /* a repeated commit: a committed transaction stays committed */
        if (st->commit_ok) return MK_OK;
        break;
    case TXN_ACTIVE:
        break;
    }
    if (check_owner(st, "committed", err) != MK_OK) return MK_ERR;
    if (!mk_backend_in_transaction(s->bs)) {
        /* the backend dropped it (a failed statement aborted it) */
        st->state = TXN_COMMITTED;
        st->commit_ok = false;
        return no_such_transaction(st, err);
    }
    return backend_commit(st, err);
}

int mk_client_session_abort_transaction(mk_client_session_t *s, mk_error_t *err)
{
    if (!s) return mk_error_setc(err, MK_CODE_BAD_VALUE, "abortTransaction() needs a session");
    session_state_t *st = state_of(s);
    switch (st->state) {
    case TXN_NONE:
        return txn_error(err, "No transaction started");
    case TXN_ABORTED:
        return txn_error(err, "Cannot call abortTransaction twice");
    case TXN_COMMITTED:
        return txn_error(err, "Cannot call abortTransaction after calling commitTransaction");
    case TXN_ACTIVE:
        break;
    }
    if (check_owner(st, "aborted", err) != MK_OK) return MK_ERR;
    /* As the drivers, errors of the abort itself are ignored: the transaction is over either
     * way (a server aborts it when it times out). */
    if (mk_backend_in_transaction(s->bs)) mk_backend_abort_transaction(s->bs, NULL);
    st->state = TXN_ABORTED;
    return MK_OK;
}

/* ---------------------------------------------------------------- withTransaction */

static bool has_label(const mk_error_t *e, unsigned label)
{
    return (e->labels & label) != 0;
}

/* A uniform draw in [0, 1) for the jitter; only spreading retries, so rand_r is enough. */
static double jitter(unsigned *seed)
{
    return (double)rand_r(seed) / ((double)RAND_MAX + 1.0);
}

static void sleep_ms(double ms)
{
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                          .tv_nsec = (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
    while (nanosleep(&ts, &ts) != 0) {}
}

/* withTransaction with an explicit limit for the retries (the drivers' timeoutMS; 0: 120 s). */
int mk_client_session_with_transaction_timeout(mk_client_session_t *s, mk_transaction_fn fn,
                                               void *ud, int64_t timeout_ms, mk_error_t *err)
{
    if (!s || !fn)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "withTransaction() needs a session and a function");
    if (timeout_ms <= 0) timeout_ms = WITH_TXN_TIMEOUT_MS;
    session_state_t *st = state_of(s);
    const int64_t start = mono_ms();
    unsigned seed = (unsigned)start ^ (unsigned)(uintptr_t)s;
    mk_error_t e = {0}; /* labels are needed even when the caller passes no err */
    int result = MK_ERR;
    double growth = 1.0; /* 1.5 ** (attempt - 1) */
    for (int attempt = 0;; attempt++) {
        if (attempt > 0) {
            double cap = BACKOFF_INITIAL_MS * growth;
            if (cap > BACKOFF_MAX_MS)
                cap = BACKOFF_MAX_MS;
            else
                growth *= 1.5;
            double backoff = jitter(&seed) * cap;
            /* the retry would not fit in the limit: report the error that asked for it */
            if ((double)(mono_ms() - start) + backoff >= (double)timeout_ms) break;
            sleep_ms(backoff);
        }
        mk_error_clear(&e);
        if ((result = mk_client_session_start_transaction(s, &e)) != MK_OK) break;

        int rc = fn(s, ud, &e);
        if (rc != MK_OK) {
            result = rc == MK_ENOMEM ? MK_ENOMEM : MK_ERR;
            if (e.kind[0] == '\0' && e.message[0] == '\0')
                mk_error_set(&e, 0, "Error", "the transaction callback failed (%d)", rc);
            if (st->state == TXN_ACTIVE) {
                mk_error_t ignored;
                mk_client_session_abort_transaction(s, &ignored);
            }
            if (has_label(&e, MK_LABEL_TRANSIENT_TRANSACTION) && mono_ms() - start < timeout_ms)
                continue;
            break;
        }
        /* the callback committed or aborted the transaction itself */
        if (st->state != TXN_ACTIVE) return MK_OK;

        for (;;) {
            mk_error_clear(&e);
            if (mk_client_session_commit_transaction(s, &e) == MK_OK) return MK_OK;
            result = MK_ERR;
            if (mono_ms() - start >= timeout_ms) goto failed;
            if (e.code != MK_CODE_MAX_TIME_MS_EXPIRED &&
                has_label(&e, MK_LABEL_UNKNOWN_COMMIT_RESULT))
                continue; /* the outcome is unknown: ask again */
            break;
        }
        if (has_label(&e, MK_LABEL_TRANSIENT_TRANSACTION)) continue;
        break;
    }
failed:
    /* As the drivers without timeoutMS: the error that stopped the retries, labels included. */
    if (err) *err = e;
    return result;
}

int mk_client_session_with_transaction(mk_client_session_t *s, mk_transaction_fn fn, void *ud,
                                       mk_error_t *err)
{
    return mk_client_session_with_transaction_timeout(s, fn, ud, 0, err);
}

/* ---------------------------------------------------------------- documents */

/* doc.$session(s): NULL detaches. The document borrows the session. */
void mk_doc_set_session(mk_doc_t *doc, mk_client_session_t *s)
{
    if (doc) doc->session = s;
}

mk_client_session_t *mk_doc_session(const mk_doc_t *doc)
{
    return doc ? doc->session : NULL;
}
