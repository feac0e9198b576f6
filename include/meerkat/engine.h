/* meerkat — the embedded MongoDB-compatible engine.
 *
 * One engine is one data directory (one LMDB environment) holding any number of databases.
 * Commands are MongoDB's database commands, BSON in and BSON out, with MongoDB's reply shapes,
 * error codes and codeNames. */
#ifndef MEERKAT_ENGINE_H
#define MEERKAT_ENGINE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include <meerkat/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_engine mk_engine_t;

typedef struct mk_engine_opts {
    bool no_sync;            /* skip fsync on commit: faster, an OS crash may lose recent writes */
    size_t map_size;         /* initial LMDB map size in bytes (0: 1 GiB); it doubles when full */
    unsigned max_readers;    /* LMDB reader slots (0: 512) */
    int cursor_timeout_ms;   /* idle cursors are closed after this (0: 10 minutes, as MongoDB) */
    int txn_lock_timeout_ms; /* a transaction waits this long for the write lock, then fails
                                with a TransientTransactionError WriteConflict (0: 100 ms) */
    int write_lock_timeout_ms; /* other writes wait this long (0: 60 s) */
    int txn_lifetime_ms;       /* older transactions are aborted (0: 60 s, as MongoDB) */
    int session_timeout_ms;    /* idle sessions are ended (0: 30 minutes, as MongoDB) */
    int ttl_interval_ms;       /* TTL indexes are swept this often (0: 60 s, as MongoDB;
                                  negative: never) */
} mk_engine_opts_t;

/* Opens (creating if needed) the data directory `dir`. opts may be NULL for defaults. */
mk_engine_t *mk_engine_open(const char *dir, const mk_engine_opts_t *opts, mk_error_t *err);
void mk_engine_close(mk_engine_t *eng);

/* Runs one database command against database `db` (a "$db" field in cmd overrides it).
 * `reply` must be an initialised empty bson_t; it always receives MongoDB's reply document:
 * { ok: 1, ... } on success or { ok: 0, errmsg, code, codeName } on a command error.
 * Returns MK_OK when the command succeeded (ok: 1), MK_ERR with err filled otherwise. */
int mk_engine_command(mk_engine_t *eng, const char *db, const bson_t *cmd, bson_t *reply,
                      mk_error_t *err);

/* Deletes the documents TTL indexes say have expired, now (the background monitor does this
 * every ttl_interval_ms). Returns the number deleted. */
int64_t mk_ttl_sweep(mk_engine_t *eng);

/* ---- sessions and transactions ----
 * A session groups commands; inside a transaction they see each other's writes, other readers
 * do not until the commit, and the commit is atomic across collections and databases of the
 * data directory. mk_session_command adds lsid / txnNumber / autocommit / startTransaction to
 * the command as a driver does; the same protocol works through mk_engine_command directly.
 * A transaction holds the engine's write lock from its first command to its commit or abort,
 * and must be driven from the thread that started it (LMDB's write transactions are bound to
 * their thread). */
typedef struct mk_session mk_session_t;

mk_session_t *mk_session_start(mk_engine_t *eng, mk_error_t *err);
/* Ends the session (an open transaction is aborted). */
void mk_session_end(mk_session_t *s);
/* The session's lsid document { id: UUID } (borrowed). */
const bson_t *mk_session_lsid(const mk_session_t *s);
int mk_session_command(mk_session_t *s, const char *db, const bson_t *cmd, bson_t *reply,
                       mk_error_t *err);
/* Starts a transaction: the next command of the session opens it. */
int mk_session_start_transaction(mk_session_t *s, mk_error_t *err);
int mk_session_commit_transaction(mk_session_t *s, mk_error_t *err);
int mk_session_abort_transaction(mk_session_t *s, mk_error_t *err);
bool mk_session_in_transaction(const mk_session_t *s);

/* Maximum BSON document size and nesting depth accepted, as MongoDB. */
#define MK_MAX_BSON_SIZE (16 * 1024 * 1024)
#define MK_MAX_DEPTH     100

#ifdef __cplusplus
}
#endif
#endif
