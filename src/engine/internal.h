/* Engine internals shared by the engine's files: the environment, the catalog, records and
 * cursors. Nothing outside src/engine includes this. */
#ifndef MK_ENGINE_INTERNAL_H
#define MK_ENGINE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <sys/types.h>
#include <stdbool.h>
#include <stdint.h>

#include <meerkat/engine.h>

#include "engine/keyenc.h"

/* Internal status beside MK_OK/MK_ERR: the LMDB map is full; the caller aborts its write
 * transaction, the engine grows the map and the command runs again. */
#define MK_EMAPFULL -100

typedef struct mk_indexset mk_indexset_t;
typedef struct mk_engine mk_engine_t;

typedef struct mk_coll {
    mk_engine_t *eng;
    char *ns;               /* "db.coll" */
    size_t db_len;          /* length of the "db" part */
    uint64_t id;            /* stable id; the record table is named "r<id>" */
    MDB_dbi dbi;            /* record table, keyed by the encoded _id */
    mk_indexset_t *indexes; /* committed secondary indexes (never NULL once loaded) */
    mk_indexset_t *pending; /* a DDL transaction's new set, visible to it alone */
    MDB_txn *pending_txn;
    MDB_txn *created_by; /* set until the creating transaction commits */
    MDB_txn *dropped_by; /* set while a transaction that dropped it is open */
    struct mk_coll *next;
} mk_coll_t;

typedef struct mk_cursor mk_cursor_t;

struct mk_engine {
    /* One engine per data directory per process (LMDB must not open a file twice in one
     * process): opening it again returns the same engine, counted. */
    dev_t dev;
    ino_t ino;
    int opens;
    struct mk_engine *next_open;
    MDB_env *env;
    MDB_dbi catalog;
    char *dir;
    mk_engine_opts_t opts;
    size_t map_size;
    /* Every transaction holds `resize` shared; growing the map holds it exclusively, because
     * LMDB allows mdb_env_set_mapsize only when no transaction of the process is active. */
    pthread_rwlock_t resize;
    pthread_mutex_t lock; /* guards colls, cursors, txn pool, sessions */
    /* Held by the process's write transaction, so that waiting for it can be bounded (LMDB's
     * own writer lock cannot time out). */
    pthread_mutex_t wlock;
    /* A commit that changes the catalog (collections, indexes) publishes its in-memory side
     * right after LMDB's commit. Readers take a snapshot only outside that window (shared),
     * so a snapshot never shows data that in-memory catalog state does not match yet. */
    pthread_rwlock_t ddl;
    bool ddl_dirty; /* the open write transaction changed the catalog */
    /* Catalog changes made by other processes: every catalog-changing commit bumps the
     * counter "m:ddl" in the catalog; a snapshot showing a value this process has not seen
     * retires the collection cache (entries stay allocated for their users until close). */
    uint64_t ddl_seen;
    size_t ddl_checked; /* newest read snapshot whose counter was compared with ddl_seen */
    mk_coll_t *retired;
    struct mk_sess *sessions;
    struct mk_free_table *free_tables; /* emptied tables kept open for reuse (catalog.c) */
    /* TTL monitor (ttl.c) */
    pthread_t ttl_thread;
    pthread_mutex_t ttl_lock;
    pthread_cond_t ttl_cond;
    bool ttl_stop, ttl_running;
    mk_coll_t *colls; /* collections known to committed transactions */
    mk_cursor_t *cursors;
    int64_t next_cursor_id;
    MDB_txn *write_txn;    /* the process's open write transaction (LMDB allows one) */
    MDB_txn *read_pool[8]; /* reset read-only transactions ready for mdb_txn_renew */
    int read_pool_len;
};

/* ---- time limits (command.c) ---- */
/* The running command's maxTimeMS deadline, per thread (0: none). Scans call mk_op_check()
 * as they go; it fails with MaxTimeMSExpired (50) once the deadline has passed. */
extern __thread int64_t mk_op_deadline_ns;
int mk_op_check_slow(mk_error_t *err);
static inline int mk_op_check(uint64_t *tick, mk_error_t *err)
{
    if (!mk_op_deadline_ns || (++*tick & 7)) return MK_OK;
    return mk_op_check_slow(err);
}

/* ---- transactions (engine.c) ---- */
int mk_txn_read(mk_engine_t *eng, MDB_txn **txn, mk_error_t *err);
void mk_txn_read_end(mk_engine_t *eng, MDB_txn *txn);
int mk_txn_write(mk_engine_t *eng, MDB_txn **txn, mk_error_t *err);
/* Same, waiting at most timeout_ms for the write lock: then a WriteConflict error labelled
 * TransientTransactionError. */
int mk_txn_write_timed(mk_engine_t *eng, MDB_txn **txn, int timeout_ms, mk_error_t *err);
int mk_txn_commit(mk_engine_t *eng, MDB_txn *txn, mk_error_t *err);
void mk_txn_abort(mk_engine_t *eng, MDB_txn *txn);
/* Maps an LMDB return code to an error (MK_EMAPFULL for MDB_MAP_FULL). */
int mk_lmdb_error(int rc, mk_error_t *err, const char *what);
/* Frees the collection cache (engine close). */
void mk_catalog_free(mk_engine_t *eng);
/* Bumps the catalog's change counter in write txn (before a catalog-changing commit); *value
 * receives the new value. */
int mk_catalog_bump(mk_engine_t *eng, MDB_txn *txn, uint64_t *value, mk_error_t *err);
/* Opens the record tables of every collection in the catalog (at engine open). */
int mk_catalog_load(mk_engine_t *eng, MDB_txn *txn, mk_error_t *err);
/* Doubles the map size (called with no transaction active in this thread). */
int mk_engine_grow(mk_engine_t *eng, mk_error_t *err);

/* ---- TTL (ttl.c) ---- */
int mk_ttl_start(mk_engine_t *eng);
void mk_ttl_stop(mk_engine_t *eng);

/* ---- sessions (session.c) ---- */
/* Runs a command that carries session fields (lsid, txnNumber, autocommit, startTransaction)
 * or is a transaction command; *handled is false when the command has nothing of a session. */
struct mk_cmd;
int mk_session_dispatch(struct mk_cmd *c, int (*run)(struct mk_cmd *c), bool *handled);
void mk_sessions_reap(mk_engine_t *eng);
void mk_sessions_free_all(mk_engine_t *eng);

/* ---- catalog (catalog.c) ---- */
/* Validates a database name / collection name as MongoDB does (InvalidNamespace errors). */
int mk_check_db_name(const char *db, mk_error_t *err);
int mk_check_coll_name(const char *coll, mk_error_t *err);
/* Finds a collection; *out is NULL when it does not exist (not an error). */
int mk_coll_find(mk_engine_t *eng, MDB_txn *txn, const char *db, const char *coll, mk_coll_t **out,
                 mk_error_t *err);
/* Finds or creates (implicitly, as on first write) a collection inside write txn. `created`
 * (may be NULL) tells whether it was made now. `options` (may be NULL) is stored. */
int mk_coll_ensure(mk_engine_t *eng, MDB_txn *txn, const char *db, const char *coll,
                   const bson_t *options, mk_coll_t **out, bool *created, mk_error_t *err);
int mk_coll_drop(mk_engine_t *eng, MDB_txn *txn, mk_coll_t *c, mk_error_t *err);
/* Calls fn for every collection of database db (or all when db is NULL), with its catalog
 * entry { name, type, options, info: { readOnly, uuid } }. */
typedef int (*mk_coll_visit_fn)(void *ud, const char *ns, const bson_t *entry);
int mk_catalog_each(mk_engine_t *eng, MDB_txn *txn, const char *db, mk_coll_visit_fn fn, void *ud,
                    mk_error_t *err);
/* Forget collections created by a transaction that aborted (their DBI handles died). */
void mk_catalog_rollback(mk_engine_t *eng, MDB_txn *txn);
/* Publish what a transaction that committed created or dropped. */
void mk_catalog_commit(mk_engine_t *eng, MDB_txn *txn, size_t txnid);

/* Rewrites the catalog entry of c with a new "indexes" array (inside write txn). */
int mk_catalog_set_indexes(mk_engine_t *eng, MDB_txn *txn, mk_coll_t *c, const bson_t *indexes,
                           mk_error_t *err);
/* Allocates a new table id (collections and indexes share the counter). */
int mk_catalog_next_id(mk_engine_t *eng, MDB_txn *txn, uint64_t *id, mk_error_t *err);
/* A new empty table "<prefix><id>" in write txn: an emptied one is reused when there is one.
 * Tables are never deleted: a dropped table is emptied and kept open, because LMDB closes a
 * deleted table's handle at commit, under the feet of readers still using it. */
int mk_table_create(mk_engine_t *eng, MDB_txn *txn, char prefix, uint64_t *id, MDB_dbi *dbi,
                    mk_error_t *err);
int mk_table_drop(mk_engine_t *eng, MDB_txn *txn, char prefix, uint64_t id, MDB_dbi dbi,
                  mk_error_t *err);
void mk_tables_free(mk_engine_t *eng);
/* Opens (creating when `create`) table "<prefix><id>". */
int mk_table_open(MDB_txn *txn, char prefix, uint64_t id, bool create, MDB_dbi *dbi,
                  mk_error_t *err);

/* ---- records (records.c) ---- */
/* Encodes the record key of an _id value. */
void mk_record_key(mk_buf_t *key, const bson_value_t *id);
/* Looks up the document with this _id. Returns MK_OK with *found; doc borrows LMDB memory,
 * valid until the transaction ends. */
int mk_record_get(MDB_txn *txn, mk_coll_t *c, const bson_value_t *id, bson_t *doc, bool *found,
                  mk_error_t *err);
/* Same with the record key already encoded (mk_record_key). */
int mk_record_get_by_key(MDB_txn *txn, mk_coll_t *c, const bson_value_t *id, const mk_buf_t *key,
                         bson_t *doc, bool *found, mk_error_t *err);
/* Inserts doc (which must have _id first) and its index entries; 11000 when the _id or a
 * unique index key exists. Nothing is written when it fails. */
int mk_record_insert(MDB_txn *txn, mk_coll_t *c, const bson_t *doc, mk_error_t *err);
/* Replaces the stored document `old` by doc (same _id), index entries included. */
int mk_record_replace(MDB_txn *txn, mk_coll_t *c, const bson_t *old, const bson_t *doc,
                      mk_error_t *err);
/* Deletes the stored document `old` and its index entries. */
int mk_record_delete(MDB_txn *txn, mk_coll_t *c, const bson_t *old, mk_error_t *err);
/* Ensures _id is present (an ObjectId is generated) and first: `out` receives the document to
 * store. Checks size, depth, field names and the _id type. */
int mk_record_prepare(const bson_t *doc, bson_t *out, mk_error_t *err);
/* Checks a document produced by an update (size, depth, $-prefixed names, _id type). */
int mk_record_check(const bson_t *doc, mk_error_t *err);
/* The E11000 error for key `keydoc` in index `index` of collection ns. */
int mk_dup_key_error(mk_error_t *err, const char *ns, const char *index, const bson_t *keydoc);

#endif
