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
    bool no_sync;          /* skip fsync on commit: faster, an OS crash may lose recent writes */
    size_t map_size;       /* initial LMDB map size in bytes (0: 1 GiB); it doubles when full */
    unsigned max_readers;  /* LMDB reader slots (0: 512) */
    int cursor_timeout_ms; /* idle cursors are closed after this (0: 10 minutes, as MongoDB) */
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

/* Maximum BSON document size and nesting depth accepted, as MongoDB. */
#define MK_MAX_BSON_SIZE (16 * 1024 * 1024)
#define MK_MAX_DEPTH     100

#ifdef __cplusplus
}
#endif
#endif
