/* The engine: one LMDB environment per data directory, transactions, map growth. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/cursor.h"
#include "engine/internal.h"

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define DEFAULT_READERS  512
#define MAX_COLLECTIONS  4096 /* LMDB named databases; one per collection (and index) */

int mk_lmdb_error(int rc, mk_error_t *err, const char *what)
{
    if (rc == MDB_MAP_FULL) return MK_EMAPFULL;
    mk_error_setc(err, MK_CODE_STORAGE, "storage error in %s: %s", what, mdb_strerror(rc));
    return MK_ERR;
}

static int mkdir_p(const char *dir)
{
    char *tmp = strdup(dir);
    if (!tmp) return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            free(tmp);
            return -1;
        }
        *p = '/';
    }
    int rc = mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(tmp);
    return rc;
}

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static mk_engine_t *open_engines;

static void really_close(mk_engine_t *eng);
static mk_engine_t *open_engine(const char *dir, const mk_engine_opts_t *opts, mk_error_t *err);

mk_engine_t *mk_engine_open(const char *dir, const mk_engine_opts_t *opts, mk_error_t *err)
{
    struct stat st;
    mk_engine_t *eng = NULL;
    pthread_mutex_lock(&open_lock);
    if (dir && *dir && stat(dir, &st) == 0) {
        for (mk_engine_t *e = open_engines; e && !eng; e = e->next_open)
            if (e->dev == st.st_dev && e->ino == st.st_ino) eng = e;
    }
    if (eng)
        eng->opens++; /* the same directory: share it (its first options stay) */
    else
        eng = open_engine(dir, opts, err);
    pthread_mutex_unlock(&open_lock);
    return eng;
}

static mk_engine_t *open_engine(const char *dir, const mk_engine_opts_t *opts, mk_error_t *err)
{
    if (!dir || !*dir) {
        mk_error_setc(err, MK_CODE_BAD_VALUE, "a data directory path is required");
        return NULL;
    }
    if (mkdir_p(dir) != 0) {
        mk_error_setc(err, MK_CODE_STORAGE, "cannot create data directory '%s': %s", dir,
                      strerror(errno));
        return NULL;
    }
    mk_engine_t *eng = calloc(1, sizeof *eng);
    if (!eng || !(eng->dir = strdup(dir))) {
        free(eng);
        mk_error_nomem(err);
        return NULL;
    }
    if (opts) eng->opts = *opts;
    eng->map_size = eng->opts.map_size ? eng->opts.map_size : DEFAULT_MAP_SIZE;
    if (!eng->opts.cursor_timeout_ms) eng->opts.cursor_timeout_ms = 10 * 60 * 1000;
    eng->next_cursor_id = 1;
    pthread_rwlock_init(&eng->resize, NULL);
    pthread_mutex_init(&eng->lock, NULL);
    pthread_mutex_init(&eng->wlock, NULL);
    pthread_rwlock_init(&eng->ddl, NULL);
    if (!eng->opts.txn_lock_timeout_ms) eng->opts.txn_lock_timeout_ms = 100;
    if (!eng->opts.write_lock_timeout_ms) eng->opts.write_lock_timeout_ms = 60 * 1000;
    if (!eng->opts.txn_lifetime_ms) eng->opts.txn_lifetime_ms = 60 * 1000;
    if (!eng->opts.session_timeout_ms) eng->opts.session_timeout_ms = 30 * 60 * 1000;

    int rc = mdb_env_create(&eng->env);
    if (rc == 0) rc = mdb_env_set_maxdbs(eng->env, MAX_COLLECTIONS);
    if (rc == 0) rc = mdb_env_set_mapsize(eng->env, eng->map_size);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(eng->env, eng->opts.max_readers ? eng->opts.max_readers
                                                                    : DEFAULT_READERS);
    /* MDB_NOTLS: read transactions are not bound to threads, so they can be pooled. */
    unsigned flags = MDB_NOTLS | (eng->opts.no_sync ? MDB_NOSYNC : 0);
    if (rc == 0) rc = mdb_env_open(eng->env, dir, flags, 0644);
    if (rc != 0) {
        mk_error_setc(err, MK_CODE_STORAGE, "cannot open data directory '%s': %s", dir,
                      mdb_strerror(rc));
        really_close(eng);
        return NULL;
    }
    MDB_envinfo info;
    if (mdb_env_info(eng->env, &info) == 0 && info.me_mapsize > eng->map_size)
        eng->map_size = info.me_mapsize;

    MDB_txn *txn;
    if (mk_txn_write(eng, &txn, err) != MK_OK) {
        really_close(eng);
        return NULL;
    }
    rc = mdb_dbi_open(txn, "catalog", MDB_CREATE, &eng->catalog);
    if (rc != 0) {
        mk_txn_abort(eng, txn);
        mk_lmdb_error(rc, err, "opening the catalog");
        really_close(eng);
        return NULL;
    }
    if (mk_catalog_load(eng, txn, err) != MK_OK) {
        mk_txn_abort(eng, txn);
        really_close(eng);
        return NULL;
    }
    if (mk_txn_commit(eng, txn, err) != MK_OK) {
        really_close(eng);
        return NULL;
    }
    if (mk_ttl_start(eng) != MK_OK) {
        mk_error_setc(err, MK_CODE_INTERNAL, "cannot start the TTL monitor thread");
        really_close(eng);
        return NULL;
    }
    struct stat st;
    if (stat(dir, &st) == 0) {
        eng->dev = st.st_dev;
        eng->ino = st.st_ino;
    }
    eng->opens = 1;
    eng->next_open = open_engines;
    open_engines = eng;
    return eng;
}

void mk_engine_close(mk_engine_t *eng)
{
    if (!eng) return;
    pthread_mutex_lock(&open_lock);
    if (--eng->opens > 0) {
        pthread_mutex_unlock(&open_lock);
        return;
    }
    for (mk_engine_t **pp = &open_engines; *pp; pp = &(*pp)->next_open)
        if (*pp == eng) {
            *pp = eng->next_open;
            break;
        }
    pthread_mutex_unlock(&open_lock);
    really_close(eng);
}

static void really_close(mk_engine_t *eng)
{
    mk_ttl_stop(eng);
    mk_sessions_free_all(eng);
    mk_cursors_free_all(eng);
    for (int i = 0; i < eng->read_pool_len; i++) mdb_txn_abort(eng->read_pool[i]);
    eng->read_pool_len = 0;
    mk_catalog_free(eng);
    mk_tables_free(eng);
    if (eng->env) mdb_env_close(eng->env);
    pthread_rwlock_destroy(&eng->resize);
    pthread_mutex_destroy(&eng->lock);
    pthread_mutex_destroy(&eng->wlock);
    pthread_rwlock_destroy(&eng->ddl);
    free(eng->dir);
    free(eng);
}

/* Another process grew the map: adopt its size and try again. */
static int begin(mk_engine_t *eng, unsigned flags, MDB_txn **txn, mk_error_t *err)
{
    int rc = mdb_txn_begin(eng->env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(eng->env, 0);
        rc = mdb_txn_begin(eng->env, NULL, flags, txn);
    }
    if (rc != 0) return mk_lmdb_error(rc, err, "beginning a transaction");
    return MK_OK;
}

int mk_txn_read(mk_engine_t *eng, MDB_txn **txn, mk_error_t *err)
{
    pthread_rwlock_rdlock(&eng->resize);
    MDB_txn *t = NULL;
    pthread_mutex_lock(&eng->lock);
    if (eng->read_pool_len) t = eng->read_pool[--eng->read_pool_len];
    pthread_mutex_unlock(&eng->lock);
    pthread_rwlock_rdlock(&eng->ddl);
    if (t) {
        if (mdb_txn_renew(t) == 0) {
            pthread_rwlock_unlock(&eng->ddl);
            *txn = t;
            return MK_OK;
        }
        mdb_txn_abort(t);
    }
    int rc = begin(eng, MDB_RDONLY, txn, err);
    pthread_rwlock_unlock(&eng->ddl);
    if (rc != MK_OK) {
        pthread_rwlock_unlock(&eng->resize);
        return MK_ERR;
    }
    return MK_OK;
}

void mk_txn_read_end(mk_engine_t *eng, MDB_txn *txn)
{
    mdb_txn_reset(txn);
    bool pooled = false;
    pthread_mutex_lock(&eng->lock);
    if (eng->read_pool_len < (int)(sizeof eng->read_pool / sizeof eng->read_pool[0])) {
        eng->read_pool[eng->read_pool_len++] = txn;
        pooled = true;
    }
    pthread_mutex_unlock(&eng->lock);
    if (!pooled) mdb_txn_abort(txn);
    pthread_rwlock_unlock(&eng->resize);
}

int mk_txn_write(mk_engine_t *eng, MDB_txn **txn, mk_error_t *err)
{
    return mk_txn_write_timed(eng, txn, eng->opts.write_lock_timeout_ms, err);
}

int mk_txn_write_timed(mk_engine_t *eng, MDB_txn **txn, int timeout_ms, mk_error_t *err)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int lrc = pthread_mutex_timedlock(&eng->wlock, &until);
    if (lrc != 0) {
        mk_error_setc(err, MK_CODE_WRITE_CONFLICT,
                      "Write conflict: another transaction holds the write lock (waited %d ms)",
                      timeout_ms);
        if (err) err->labels |= MK_LABEL_TRANSIENT_TRANSACTION;
        return MK_ERR;
    }
    pthread_rwlock_rdlock(&eng->resize);
    if (begin(eng, 0, txn, err) != MK_OK) {
        pthread_rwlock_unlock(&eng->resize);
        pthread_mutex_unlock(&eng->wlock);
        return MK_ERR;
    }
    __atomic_store_n(&eng->write_txn, *txn, __ATOMIC_RELEASE);
    return MK_OK;
}

int mk_txn_commit(mk_engine_t *eng, MDB_txn *txn, mk_error_t *err)
{
    __atomic_store_n(&eng->write_txn, NULL, __ATOMIC_RELEASE);
    size_t txnid = mdb_txn_id(txn); /* the id the commit gives the new snapshot */
    bool ddl = eng->ddl_dirty;
    eng->ddl_dirty = false;
    uint64_t version = 0;
    int rc = 0;
    int brc = ddl ? mk_catalog_bump(eng, txn, &version, err) : MK_OK;
    if (brc != MK_OK) {
        mk_catalog_rollback(eng, txn);
        mdb_txn_abort(txn);
        pthread_rwlock_unlock(&eng->resize);
        pthread_mutex_unlock(&eng->wlock);
        return brc;
    }
    if (ddl) pthread_rwlock_wrlock(&eng->ddl);
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        mk_catalog_rollback(eng, txn);
    } else {
        mk_catalog_commit(eng, txn, txnid);
        if (ddl) __atomic_store_n(&eng->ddl_seen, version, __ATOMIC_RELEASE);
    }
    if (ddl) pthread_rwlock_unlock(&eng->ddl);
    pthread_rwlock_unlock(&eng->resize);
    pthread_mutex_unlock(&eng->wlock);
    if (rc != 0) return mk_lmdb_error(rc, err, "commit");
    return MK_OK;
}

void mk_txn_abort(mk_engine_t *eng, MDB_txn *txn)
{
    if (eng->write_txn == txn) __atomic_store_n(&eng->write_txn, NULL, __ATOMIC_RELEASE);
    eng->ddl_dirty = false;
    mk_catalog_rollback(eng, txn);
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&eng->resize);
    pthread_mutex_unlock(&eng->wlock);
}

int mk_engine_grow(mk_engine_t *eng, mk_error_t *err)
{
    pthread_rwlock_wrlock(&eng->resize);
    pthread_mutex_lock(&eng->lock);
    for (int i = 0; i < eng->read_pool_len; i++) mdb_txn_abort(eng->read_pool[i]);
    eng->read_pool_len = 0;
    pthread_mutex_unlock(&eng->lock);
    size_t want = eng->map_size * 2;
    int rc = mdb_env_set_mapsize(eng->env, want);
    if (rc == 0) eng->map_size = want;
    pthread_rwlock_unlock(&eng->resize);
    if (rc != 0) return mk_lmdb_error(rc, err, "growing the data file map");
    return MK_OK;
}
