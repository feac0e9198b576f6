/* Logical sessions and multi-document transactions, with MongoDB's command protocol.
 *
 * A command carrying `lsid` belongs to a session; with `txnNumber` and `autocommit: false` it
 * runs inside the session's transaction, which the first such command opens
 * (`startTransaction: true`) and `commitTransaction` / `abortTransaction` end. The transaction
 * is one LMDB write transaction, so it is serializable and atomic across collections and
 * databases; other writers wait for the engine's write lock (bounded, then WriteConflict with
 * TransientTransactionError), readers keep reading the last committed snapshot. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/command.h"
#include "engine/cursor.h"
#include "engine/internal.h"

typedef enum { TXN_NONE, TXN_ACTIVE, TXN_COMMITTED, TXN_ABORTED } txn_state_t;

typedef struct mk_sess {
    uint8_t key[64]; /* the lsid's id, as BSON value bytes (a UUID in practice) */
    size_t key_len;
    int64_t txn_number; /* the highest transaction number seen */
    txn_state_t state;
    MDB_txn *txn;
    pthread_t owner; /* the thread that opened the transaction */
    int64_t started_ms, last_used_ms;
    bool busy; /* a command of this session is running */
    struct mk_sess *next;
} mk_sess_t;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The identity of a session: the bytes of its lsid.id value. */
static bool session_key(const bson_t *lsid, uint8_t *key, size_t *len)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, lsid, "id")) return false;
    mk_buf_t b;
    mk_buf_init(&b);
    mk_keyenc_value(&b, bson_iter_value(&it));
    bool ok = !b.failed && b.len <= 64;
    if (ok) {
        memcpy(key, b.data, b.len);
        *len = b.len;
    }
    mk_buf_free(&b);
    return ok;
}

/* Finds (or creates) a session and marks it busy; NULL when busy elsewhere or out of memory. */
static mk_sess_t *acquire(mk_engine_t *eng, const uint8_t *key, size_t len, bool create,
                          mk_error_t *err)
{
    pthread_mutex_lock(&eng->lock);
    mk_sess_t *s = eng->sessions;
    while (s && !(s->key_len == len && memcmp(s->key, key, len) == 0)) s = s->next;
    if (!s && create && (s = calloc(1, sizeof *s))) {
        memcpy(s->key, key, len);
        s->key_len = len;
        s->txn_number = -1;
        s->next = eng->sessions;
        __atomic_store_n(&eng->sessions, s, __ATOMIC_RELEASE);
    }
    if (s && s->busy) {
        pthread_mutex_unlock(&eng->lock);
        mk_error_set(err, 263, "OperationNotSupportedInTransaction",
                     "another operation of this session is in progress");
        return NULL;
    }
    if (s) {
        s->busy = true;
        s->last_used_ms = mono_ms();
    }
    pthread_mutex_unlock(&eng->lock);
    if (!s && create) mk_error_nomem(err);
    if (!s && !create) mk_error_setc(err, MK_CODE_NO_SUCH_SESSION, "no such session");
    return s;
}

static void release(mk_engine_t *eng, mk_sess_t *s)
{
    pthread_mutex_lock(&eng->lock);
    s->busy = false;
    s->last_used_ms = mono_ms();
    pthread_mutex_unlock(&eng->lock);
}

static void abort_txn(mk_engine_t *eng, mk_sess_t *s)
{
    if (s->state == TXN_ACTIVE && s->txn) mk_txn_abort(eng, s->txn);
    s->txn = NULL;
    if (s->state == TXN_ACTIVE) s->state = TXN_ABORTED;
}

static int no_such_transaction(mk_error_t *err, int64_t n, const char *why)
{
    mk_error_setc(err, MK_CODE_NO_SUCH_TRANSACTION, "Transaction with { txnNumber: %lld } %s",
                  (long long)n, why);
    err->labels |= MK_LABEL_TRANSIENT_TRANSACTION;
    return MK_ERR;
}

/* The session fields of a command, read in one pass. */
typedef struct sess_fields {
    bool has_lsid, has_txn, has_autocommit, autocommit, start;
    bson_t lsid;
    int64_t txn_number;
} sess_fields_t;

static int read_fields(const bson_t *cmd, sess_fields_t *f, mk_error_t *err)
{
    memset(f, 0, sizeof *f);
    bson_iter_t it;
    bson_iter_init(&it, cmd);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] != 'l' && k[0] != 't' && k[0] != 'a' && k[0] != 's') continue;
        if (strcmp(k, "lsid") == 0) {
            const uint8_t *d;
            uint32_t l;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it))
                return mk_error_setc(err, MK_CODE_TYPE_MISMATCH, "lsid must be an object");
            bson_iter_document(&it, &l, &d);
            if (!bson_init_static(&f->lsid, d, l))
                return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid lsid");
            f->has_lsid = true;
        } else if (strcmp(k, "txnNumber") == 0) {
            if (!BSON_ITER_HOLDS_INT(&it))
                return mk_error_setc(err, MK_CODE_TYPE_MISMATCH, "txnNumber must be a long");
            f->txn_number = bson_iter_as_int64(&it);
            f->has_txn = true;
        } else if (strcmp(k, "autocommit") == 0) {
            f->has_autocommit = true;
            f->autocommit = bson_iter_as_bool(&it);
        } else if (strcmp(k, "startTransaction") == 0) {
            f->start = bson_iter_as_bool(&it);
        }
    }
    if (f->has_autocommit && f->autocommit)
        return mk_error_set(err, 50768, "Location50768",
                            "autocommit:true is not supported; omit it for a command outside a "
                            "transaction");
    if ((f->has_autocommit || f->start) && (!f->has_txn || !f->has_lsid))
        return mk_error_setc(err, MK_CODE_INVALID_OPTIONS,
                             "a transaction needs lsid and txnNumber");
    if (f->start && !f->has_autocommit)
        return mk_error_setc(err, MK_CODE_INVALID_OPTIONS,
                             "startTransaction requires autocommit: false");
    return MK_OK;
}

static int commit_or_abort(mk_cmd_t *c, mk_sess_t *s, const sess_fields_t *f, bool commit)
{
    if (!f->has_txn || !f->has_autocommit)
        return mk_error_setc(c->err, MK_CODE_INVALID_OPTIONS,
                             "%s requires txnNumber and autocommit: false", c->name);
    if (f->txn_number != s->txn_number)
        return no_such_transaction(c->err, f->txn_number,
                                   "does not match the session's current transaction");
    if (commit) {
        if (s->state == TXN_COMMITTED) return MK_OK; /* a retried commit */
        if (s->state != TXN_ACTIVE)
            return no_such_transaction(c->err, f->txn_number, "has been aborted.");
        if (!pthread_equal(s->owner, pthread_self()))
            return mk_error_setc(c->err, MK_CODE_ILLEGAL_OPERATION,
                                 "a transaction must be committed by the thread that started it");
        MDB_txn *txn = s->txn;
        s->txn = NULL;
        int crc = mk_txn_commit(c->eng, txn, c->err);
        if (crc != MK_OK) {
            s->state = TXN_ABORTED;
            if (crc == MK_EMAPFULL) {
                /* LMDB aborted it: grow the map so that a retry fits */
                mk_engine_grow(c->eng, NULL);
                mk_error_set(c->err, MK_CODE_WRITE_CONFLICT, "WriteConflict",
                             "the data file was full and has grown; retry the transaction");
            }
            c->err->labels |= MK_LABEL_TRANSIENT_TRANSACTION;
            return MK_ERR;
        }
        s->state = TXN_COMMITTED;
        return MK_OK;
    }
    if (s->state == TXN_COMMITTED)
        return mk_error_setc(c->err, MK_CODE_TRANSACTION_COMMITTED,
                             "Cannot call abortTransaction after calling commitTransaction.");
    if (s->state != TXN_ACTIVE)
        return no_such_transaction(c->err, f->txn_number, "has been aborted.");
    if (!pthread_equal(s->owner, pthread_self()))
        return mk_error_setc(c->err, MK_CODE_ILLEGAL_OPERATION,
                             "a transaction must be aborted by the thread that started it");
    abort_txn(c->eng, s);
    return MK_OK;
}

static bool has_write_errors(const bson_t *reply)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, reply, "writeErrors");
}

static int in_transaction(mk_cmd_t *c, mk_sess_t *s, const sess_fields_t *f,
                          int (*run)(mk_cmd_t *c))
{
    mk_engine_t *eng = c->eng;
    if (f->start) {
        if (f->txn_number < s->txn_number)
            return mk_error_setc(c->err, MK_CODE_TRANSACTION_TOO_OLD,
                                 "Cannot start transaction %lld on session because a newer "
                                 "transaction %lld has already started",
                                 (long long)f->txn_number, (long long)s->txn_number);
        if (f->txn_number == s->txn_number)
            return mk_error_set(c->err, 251, "NoSuchTransaction",
                                "Transaction %lld has already been started",
                                (long long)f->txn_number);
        if (s->state == TXN_ACTIVE) {
            if (!pthread_equal(s->owner, pthread_self()))
                return mk_error_setc(c->err, MK_CODE_ILLEGAL_OPERATION,
                                     "the session's open transaction belongs to another thread");
            abort_txn(eng, s);
        }
        MDB_txn *txn;
        if (mk_txn_write_timed(eng, &txn, eng->opts.txn_lock_timeout_ms, c->err) != MK_OK)
            return MK_ERR; /* WriteConflict, TransientTransactionError */
        s->txn = txn;
        s->txn_number = f->txn_number;
        s->state = TXN_ACTIVE;
        s->owner = pthread_self();
        s->started_ms = mono_ms();
    } else if (f->txn_number != s->txn_number || s->state != TXN_ACTIVE) {
        return no_such_transaction(c->err, f->txn_number,
                                   s->state == TXN_ABORTED && f->txn_number == s->txn_number
                                       ? "has been aborted."
                                       : "is not in progress.");
    } else if (!pthread_equal(s->owner, pthread_self())) {
        return mk_error_setc(c->err, MK_CODE_ILLEGAL_OPERATION,
                             "a transaction must be used from the thread that started it");
    }
    c->txn = s->txn;
    int rc = run(c);
    c->txn = NULL;
    /* As MongoDB: a failing statement aborts the transaction. */
    if (rc != MK_OK || has_write_errors(c->reply)) {
        abort_txn(eng, s);
        if (c->map_full) mk_engine_grow(eng, NULL);
        /* only conflicts are worth retrying; a bad statement stays bad (MongoDB labels
         * WriteConflict-like errors, not BadValue) */
        if (rc != MK_OK && (c->err->code == MK_CODE_WRITE_CONFLICT || c->err->code == 24))
            c->err->labels |= MK_LABEL_TRANSIENT_TRANSACTION;
    }
    return rc;
}

/* True when the command may carry session fields (the common case is: none). */
static bool maybe_session(const bson_t *cmd)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, cmd)) return false;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if ((k[0] == 'l' && strcmp(k, "lsid") == 0) ||
            (k[0] == 'a' && strcmp(k, "autocommit") == 0) ||
            (k[0] == 's' && strcmp(k, "startTransaction") == 0))
            return true;
    }
    return false;
}

int mk_session_dispatch(mk_cmd_t *c, int (*run)(mk_cmd_t *c), bool *handled)
{
    *handled = false;
    bool commit_or_abort_cmd = c->name[0] == 'c' || c->name[0] == 'a';
    if (!commit_or_abort_cmd && !maybe_session(c->body)) return MK_OK;
    bool commit = strcmp(c->name, "commitTransaction") == 0;
    bool abort = strcmp(c->name, "abortTransaction") == 0;
    sess_fields_t f;
    if (read_fields(c->body, &f, c->err) != MK_OK) {
        *handled = true;
        return MK_ERR;
    }
    if (!f.has_lsid) {
        if (commit || abort || f.has_autocommit) {
            *handled = true;
            return mk_error_setc(c->err, MK_CODE_INVALID_OPTIONS, "%s requires a session (lsid)",
                                 c->name);
        }
        return MK_OK;
    }
    *handled = true;
    uint8_t key[64];
    size_t len;
    if (!session_key(&f.lsid, key, &len))
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE, "lsid must be { id: <UUID> }");
    mk_sess_t *s = acquire(c->eng, key, len, true, c->err);
    if (!s) return MK_ERR;
    int rc;
    if (commit || abort)
        rc = commit_or_abort(c, s, &f, commit);
    else if (f.has_autocommit)
        rc = in_transaction(c, s, &f, run);
    else
        rc = run(c); /* a session command outside a transaction */
    release(c->eng, s);
    return rc;
}

static void unlink_and_free(mk_engine_t *eng, mk_sess_t *s)
{
    for (mk_sess_t **pp = &eng->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    free(s);
}

/* Ends idle sessions and over-age transactions. A transaction can only be aborted by its own
 * thread (LMDB), so others' are only marked; their thread aborts them at its next command. */
void mk_sessions_reap(mk_engine_t *eng)
{
    if (!__atomic_load_n(&eng->sessions, __ATOMIC_RELAXED)) return;
    int64_t now = mono_ms();
    pthread_t self = pthread_self();
    mk_sess_t *ended = NULL, *expired[16];
    int nexpired = 0;
    pthread_mutex_lock(&eng->lock);
    for (mk_sess_t **pp = &eng->sessions; *pp;) {
        mk_sess_t *s = *pp;
        if (s->busy) { /* its thread owns its fields right now */
            pp = &s->next;
            continue;
        }
        bool mine = s->state == TXN_ACTIVE && pthread_equal(s->owner, self);
        if (!s->busy && now - s->last_used_ms > eng->opts.session_timeout_ms &&
            (s->state != TXN_ACTIVE || mine)) {
            *pp = s->next;
            s->next = ended;
            ended = s;
            continue;
        }
        if (!s->busy && mine && now - s->started_ms > eng->opts.txn_lifetime_ms && nexpired < 16) {
            s->busy = true;
            expired[nexpired++] = s;
        }
        pp = &s->next;
    }
    pthread_mutex_unlock(&eng->lock);
    /* aborting takes the engine lock itself: done outside it */
    for (int i = 0; i < nexpired; i++) {
        abort_txn(eng, expired[i]);
        release(eng, expired[i]);
    }
    while (ended) {
        mk_sess_t *n = ended->next;
        abort_txn(eng, ended);
        free(ended);
        ended = n;
    }
}

void mk_sessions_free_all(mk_engine_t *eng)
{
    while (eng->sessions) {
        mk_sess_t *s = eng->sessions;
        abort_txn(eng, s);
        eng->sessions = s->next;
        free(s);
    }
}

/* ---------------------------------------------------------------- session commands */

int mk_cmd_end_sessions(mk_cmd_t *c)
{
    if (!BSON_ITER_HOLDS_ARRAY(&c->first))
        return mk_error_setc(c->err, MK_CODE_TYPE_MISMATCH, "endSessions takes an array of lsids");
    bson_iter_t el;
    bson_iter_recurse(&c->first, &el);
    while (bson_iter_next(&el)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&el)) continue;
        const uint8_t *d;
        uint32_t l;
        bson_t lsid;
        bson_iter_document(&el, &l, &d);
        uint8_t key[64];
        size_t len;
        if (!bson_init_static(&lsid, d, l) || !session_key(&lsid, key, &len)) continue;
        mk_error_t ignored;
        mk_sess_t *s = acquire(c->eng, key, len, false, &ignored);
        if (!s) continue;
        if (s->state == TXN_ACTIVE && !pthread_equal(s->owner, pthread_self())) {
            release(c->eng, s); /* its own thread will end it */
            continue;
        }
        abort_txn(c->eng, s);
        pthread_mutex_lock(&c->eng->lock);
        unlink_and_free(c->eng, s);
        pthread_mutex_unlock(&c->eng->lock);
    }
    return MK_OK;
}

int mk_cmd_start_session(mk_cmd_t *c)
{
    uint8_t uuid[16];
    bson_oid_t a, b;
    bson_oid_init(&a, NULL);
    bson_oid_init(&b, NULL);
    memcpy(uuid, a.bytes, 12);
    memcpy(uuid + 12, b.bytes + 8, 4);
    uuid[6] = (uint8_t)((uuid[6] & 0x0F) | 0x40);
    uuid[8] = (uint8_t)((uuid[8] & 0x3F) | 0x80);
    bson_t id;
    bson_append_document_begin(c->reply, "id", 2, &id);
    bson_append_binary(&id, "id", 2, BSON_SUBTYPE_UUID, uuid, 16);
    bson_append_document_end(c->reply, &id);
    BSON_APPEND_INT32(c->reply, "timeoutMinutes", c->eng->opts.session_timeout_ms / 60000);
    return MK_OK;
}

int mk_cmd_refresh_sessions(mk_cmd_t *c)
{
    return MK_OK;
}

/* commitTransaction / abortTransaction arrive through mk_session_dispatch; reaching this
 * means they came without a session. */
int mk_cmd_txn_without_session(mk_cmd_t *c)
{
    return mk_error_setc(c->err, MK_CODE_INVALID_OPTIONS, "%s requires a session (lsid)", c->name);
}

/* ---------------------------------------------------------------- C API */

struct mk_session {
    mk_engine_t *eng;
    bson_t *lsid; /* a pointer: bson_t wants 128-byte alignment, which calloc does not give */
    int64_t txn_number;
    bool pending_start; /* the next command starts the transaction */
    bool in_txn;
};

mk_session_t *mk_session_start(mk_engine_t *eng, mk_error_t *err)
{
    mk_session_t *s = calloc(1, sizeof *s);
    if (!s) {
        mk_error_nomem(err);
        return NULL;
    }
    s->eng = eng;
    if (!(s->lsid = bson_new())) {
        free(s);
        mk_error_nomem(err);
        return NULL;
    }
    bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "startSession", 1);
    int rc = mk_engine_command(eng, "admin", &cmd, &reply, err);
    bson_iter_t it;
    if (rc == MK_OK && bson_iter_init_find(&it, &reply, "id") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *d;
        uint32_t l;
        bson_iter_document(&it, &l, &d);
        bson_t id;
        bson_init_static(&id, d, l);
        bson_concat(s->lsid, &id);
    } else if (rc == MK_OK) {
        rc = mk_error_setc(err, MK_CODE_INTERNAL, "startSession gave no id");
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    if (rc != MK_OK) {
        bson_destroy(s->lsid);
        free(s);
        return NULL;
    }
    return s;
}

const bson_t *mk_session_lsid(const mk_session_t *s)
{
    return s->lsid;
}

bool mk_session_in_transaction(const mk_session_t *s)
{
    return s->in_txn;
}

/* cmd plus the session's fields (without any it already has). */
static void with_session_fields(mk_session_t *s, const bson_t *cmd, bson_t *out, bool txn_fields)
{
    bson_init(out);
    bson_iter_t it;
    bson_iter_init(&it, cmd);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "lsid") == 0 || strcmp(k, "txnNumber") == 0 || strcmp(k, "autocommit") == 0 ||
            strcmp(k, "startTransaction") == 0)
            continue;
        bson_append_value(out, k, -1, bson_iter_value(&it));
    }
    BSON_APPEND_DOCUMENT(out, "lsid", s->lsid);
    if (txn_fields) {
        BSON_APPEND_INT64(out, "txnNumber", s->txn_number);
        BSON_APPEND_BOOL(out, "autocommit", false);
        if (s->pending_start) BSON_APPEND_BOOL(out, "startTransaction", true);
    }
}

int mk_session_command(mk_session_t *s, const char *db, const bson_t *cmd, bson_t *reply,
                       mk_error_t *err)
{
    bson_t full;
    with_session_fields(s, cmd, &full, s->in_txn);
    int rc = mk_engine_command(s->eng, db, &full, reply, err);
    bson_destroy(&full);
    /* A failed statement aborted the transaction on the engine's side; the session stays in
     * it, so that later statements get NoSuchTransaction rather than running on their own
     * (as a driver keeps sending txnNumber until commit or abort). */
    if (s->in_txn) s->pending_start = false;
    return rc;
}

int mk_session_start_transaction(mk_session_t *s, mk_error_t *err)
{
    if (s->in_txn)
        return mk_error_setc(err, MK_CODE_ILLEGAL_OPERATION, "Transaction already in progress");
    s->txn_number++;
    s->in_txn = true;
    s->pending_start = true;
    return MK_OK;
}

static int end_txn(mk_session_t *s, const char *name, mk_error_t *err)
{
    if (!s->in_txn)
        return mk_error_setc(err, MK_CODE_NO_SUCH_TRANSACTION, "No transaction started");
    s->in_txn = false;
    if (s->pending_start) { /* nothing ran: nothing to end */
        s->pending_start = false;
        return MK_OK;
    }
    bson_t cmd = BSON_INITIALIZER, full, reply = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, name, 1);
    s->in_txn = true;
    with_session_fields(s, &cmd, &full, true);
    s->in_txn = false;
    int rc = mk_engine_command(s->eng, "admin", &full, &reply, err);
    bson_destroy(&cmd);
    bson_destroy(&full);
    bson_destroy(&reply);
    return rc;
}

int mk_session_commit_transaction(mk_session_t *s, mk_error_t *err)
{
    return end_txn(s, "commitTransaction", err);
}

/* As the drivers do, errors of the abort itself are ignored: the transaction is over either
 * way (it may already have been aborted by a failed statement, or never have started). */
int mk_session_abort_transaction(mk_session_t *s, mk_error_t *err)
{
    if (!s->in_txn) return end_txn(s, "abortTransaction", err); /* "No transaction started" */
    mk_error_t ignored = {0};
    end_txn(s, "abortTransaction", &ignored);
    return MK_OK;
}

void mk_session_end(mk_session_t *s)
{
    if (!s) return;
    if (s->in_txn) mk_session_abort_transaction(s, NULL);
    bson_t cmd = BSON_INITIALIZER, arr, reply = BSON_INITIALIZER;
    bson_append_array_begin(&cmd, "endSessions", -1, &arr);
    BSON_APPEND_DOCUMENT(&arr, "0", s->lsid);
    bson_append_array_end(&cmd, &arr);
    mk_engine_command(s->eng, "admin", &cmd, &reply, NULL);
    bson_destroy(&cmd);
    bson_destroy(&reply);
    bson_destroy(s->lsid);
    free(s);
}
