/* The catalog: which collections exist, their ids and options.
 *
 * Stored in the LMDB sub-database "catalog": key "c:<db>.<coll>" -> BSON
 * { ns, id, options, uuid }, and "m:next_id" -> { v: <next collection id> }. Each collection's
 * records live in the sub-database "r<id>". A cache of mk_coll_t entries keeps the DBI handles;
 * entries made or dropped by an open transaction are visible only to it until it commits. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/index.h"
#include "engine/internal.h"

int mk_check_db_name(const char *db, mk_error_t *err)
{
    size_t n = db ? strlen(db) : 0;
    if (n == 0)
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE, "database name cannot be empty");
    if (n >= 64)
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE, "db name is too long: '%s'", db);
    if (strpbrk(db, "/\\. \"$*<>:|?"))
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE,
                             "Invalid database name: '%s' contains an invalid character", db);
    return MK_OK;
}

int mk_check_coll_name(const char *coll, mk_error_t *err)
{
    size_t n = coll ? strlen(coll) : 0;
    if (n == 0)
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE,
                             "Invalid namespace specified: collection name cannot be empty");
    if (n > 200)
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE,
                             "Fully qualified namespace is too long: '%s'", coll);
    if (strchr(coll, '$'))
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE,
                             "Invalid collection name: '%s' contains '$'", coll);
    if (coll[0] == '.' || coll[n - 1] == '.')
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE, "Invalid collection name: '%s'", coll);
    if (strncmp(coll, "system.", 7) == 0)
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE,
                             "Invalid collection name: '%s': system collections are reserved",
                             coll);
    return MK_OK;
}

static void tables_settle(mk_engine_t *eng, MDB_txn *txn, bool committed);

/* Another transaction created ns and has not published it yet. Called with eng->lock held. */
static bool being_published(mk_engine_t *eng, const char *ns, MDB_txn *txn)
{
    for (mk_coll_t *c = eng->colls; c; c = c->next)
        if (c->created_by && c->created_by != txn && strcmp(c->ns, ns) == 0) return true;
    return false;
}

static bool visible(const mk_coll_t *c, MDB_txn *txn)
{
    if (c->created_by && c->created_by != txn) return false;
    if (c->dropped_by && c->dropped_by == txn) return false;
    return true;
}

static mk_coll_t *cache_find(mk_engine_t *eng, const char *ns, MDB_txn *txn)
{
    for (mk_coll_t *c = eng->colls; c; c = c->next)
        if (strcmp(c->ns, ns) == 0 && visible(c, txn)) return c;
    return NULL;
}

static int make_ns(const char *db, const char *coll, char *ns, size_t cap, mk_error_t *err)
{
    if (mk_check_db_name(db, err) != MK_OK) return MK_ERR;
    if (mk_check_coll_name(coll, err) != MK_OK) return MK_ERR;
    size_t dl = strlen(db), cl = strlen(coll);
    if (dl + 1 + cl >= cap)
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE,
                             "Fully qualified namespace is too long: '%s.%s'", db, coll);
    memcpy(ns, db, dl);
    ns[dl] = '.';
    memcpy(ns + dl + 1, coll, cl + 1);
    return MK_OK;
}

int mk_table_open(MDB_txn *txn, char prefix, uint64_t id, bool create, MDB_dbi *dbi,
                  mk_error_t *err)
{
    char name[32];
    snprintf(name, sizeof name, "%c%llu", prefix, (unsigned long long)id);
    int rc = mdb_dbi_open(txn, name, create ? MDB_CREATE : 0, dbi);
    if (rc != 0) return mk_lmdb_error(rc, err, "opening a table");
    return MK_OK;
}

static int open_records(MDB_txn *txn, uint64_t id, unsigned flags, MDB_dbi *dbi, mk_error_t *err)
{
    return mk_table_open(txn, 'r', id, flags & MDB_CREATE, dbi, err);
}

static void coll_free(mk_coll_t *c)
{
    mk_indexset_free(c->indexes);
    mk_indexset_free(c->pending);
    free(c->ns);
    free(c);
}

void mk_catalog_free(mk_engine_t *eng)
{
    for (mk_coll_t *c = eng->retired, *n; c; c = n) {
        n = c->next;
        coll_free(c);
    }
    eng->retired = NULL;
    for (mk_coll_t *c = eng->colls, *n; c; c = n) {
        n = c->next;
        coll_free(c);
    }
    eng->colls = NULL;
}

/* Takes ownership of `indexes` (freed here on failure). */
static mk_coll_t *cache_add(mk_engine_t *eng, const char *ns, size_t db_len, uint64_t id,
                            MDB_dbi dbi, MDB_txn *created_by, mk_indexset_t *indexes)
{
    mk_coll_t *c = calloc(1, sizeof *c);
    if (!c || !(c->ns = strdup(ns))) {
        free(c);
        mk_indexset_free(indexes);
        return NULL;
    }
    c->indexes = indexes;
    c->eng = eng;
    c->db_len = db_len;
    c->id = id;
    c->dbi = dbi;
    c->created_by = created_by;
    c->next = eng->colls;
    eng->colls = c;
    return c;
}

/* A transaction only knows the table handles that existed when it began. */
static bool handles_known(mk_coll_t *c, MDB_txn *txn)
{
    unsigned flags;
    if (mdb_dbi_flags(txn, c->dbi, &flags) != 0) return false;
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    for (size_t i = 0; i < s->n; i++)
        if (mdb_dbi_flags(txn, s->v[i]->dbi, &flags) != 0) return false;
    return true;
}

static uint64_t read_ddl(mk_engine_t *eng, MDB_txn *txn)
{
    MDB_val k = {5, "m:ddl"}, v;
    uint64_t n = 0;
    if (mdb_get(txn, eng->catalog, &k, &v) == 0 && v.mv_size == 8) memcpy(&n, v.mv_data, 8);
    return n;
}

int mk_catalog_bump(mk_engine_t *eng, MDB_txn *txn, uint64_t *value, mk_error_t *err)
{
    uint64_t n = read_ddl(eng, txn) + 1;
    MDB_val k = {5, "m:ddl"}, v = {8, &n};
    int rc = mdb_put(txn, eng->catalog, &k, &v, 0);
    if (rc != 0) return mk_lmdb_error(rc, err, "writing the catalog");
    *value = n;
    return MK_OK;
}

/* Another process changed the catalog: forget the cached collections (not the ones an open
 * transaction of ours is creating or dropping), so that lookups load them again from the
 * snapshot. Entries are retired, not freed: other threads may still be using them. */
static void refresh_if_foreign_ddl(mk_engine_t *eng, MDB_txn *txn)
{
    /* The counter only grows with snapshots: a snapshot no newer than one already checked
     * cannot show a newer value, so most lookups skip the read. */
    size_t snap = mdb_txn_id(txn);
    if (snap <= __atomic_load_n(&eng->ddl_checked, __ATOMIC_ACQUIRE)) return;
    uint64_t v = read_ddl(eng, txn);
    if (txn != __atomic_load_n(&eng->write_txn, __ATOMIC_ACQUIRE)) {
        size_t seen = __atomic_load_n(&eng->ddl_checked, __ATOMIC_ACQUIRE);
        while (snap > seen && !__atomic_compare_exchange_n(&eng->ddl_checked, &seen, snap, false,
                                                           __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {}
    }
    if (v <= __atomic_load_n(&eng->ddl_seen, __ATOMIC_ACQUIRE)) return;
    pthread_mutex_lock(&eng->lock);
    if (v > eng->ddl_seen) {
        for (mk_coll_t **pp = &eng->colls; *pp;) {
            mk_coll_t *c = *pp;
            if (c->created_by || c->dropped_by || c->pending) {
                pp = &c->next;
                continue;
            }
            *pp = c->next;
            c->next = eng->retired;
            eng->retired = c;
        }
        __atomic_store_n(&eng->ddl_seen, v, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&eng->lock);
}

int mk_coll_find(mk_engine_t *eng, MDB_txn *txn, const char *db, const char *coll, mk_coll_t **out,
                 mk_error_t *err)
{
    char ns[256];
    *out = NULL;
    if (make_ns(db, coll, ns, sizeof ns, err) != MK_OK) return MK_ERR;
    refresh_if_foreign_ddl(eng, txn);
    mk_coll_t *c;
    for (int spins = 0;; spins++) {
        pthread_mutex_lock(&eng->lock);
        c = cache_find(eng, ns, txn);
        bool publishing = !c && spins < 100000 && being_published(eng, ns, txn);
        pthread_mutex_unlock(&eng->lock);
        if (!publishing) break;
        /* Committed a moment ago by another thread, which has not published its cache
         * entry yet (it does right after LMDB's commit): wait for it rather than load a
         * second entry that later DDL would leave stale. Only when our snapshot already has
         * the collection, so that a collection made inside an open transaction is simply
         * absent, as it should be. */
        MDB_val k = {0, NULL}, v;
        char key[260];
        k.mv_size = (size_t)snprintf(key, sizeof key, "c:%s", ns);
        k.mv_data = key;
        if (mdb_get(txn, eng->catalog, &k, &v) != 0) break;
        sched_yield();
    }
    if (c) {
        if (txn != __atomic_load_n(&eng->write_txn, __ATOMIC_ACQUIRE) && !handles_known(c, txn)) {
            /* published after this read transaction began: move it to the present */
            mdb_txn_reset(txn);
            int rrc = mdb_txn_renew(txn);
            if (rrc != 0) return mk_lmdb_error(rrc, err, "renewing a read transaction");
        }
        *out = c;
        return MK_OK;
    }
    /* Not cached: created by another process or before this open. */
    char key[260];
    int klen = snprintf(key, sizeof key, "c:%s", ns);
    MDB_val k = {(size_t)klen, key}, v;
    int rc = mdb_get(txn, eng->catalog, &k, &v);
    if (rc == MDB_NOTFOUND) return MK_OK;
    if (rc != 0) return mk_lmdb_error(rc, err, "reading the catalog");
    bson_t entry;
    bson_iter_t it;
    if (!bson_init_static(&entry, v.mv_data, v.mv_size) || !bson_iter_init_find(&it, &entry, "id"))
        return mk_error_setc(err, MK_CODE_STORAGE, "corrupt catalog entry for %s", ns);
    uint64_t id = (uint64_t)bson_iter_as_int64(&it);
    /* Made by another process after we opened. A handle opened in a transaction is private to
     * it until it commits, and a transaction only knows the handles that existed when it
     * began. In the write transaction: open the tables there (published at commit). In a read
     * transaction: open them in a short read transaction committed at once, then renew the
     * caller's transaction so that it sees the handles (callers look collections up first). */
    MDB_dbi dbi;
    MDB_txn *creator = NULL, *otx = txn;
    mk_indexset_t *set = NULL;
    if (txn == eng->write_txn) {
        creator = txn;
    } else {
        rc = mdb_txn_begin(eng->env, NULL, MDB_RDONLY, &otx);
        if (rc != 0) return mk_lmdb_error(rc, err, "opening a collection");
        rc = mdb_get(otx, eng->catalog, &k, &v); /* the entry, read again in otx */
        if (rc != 0 || !bson_init_static(&entry, v.mv_data, v.mv_size)) {
            mdb_txn_abort(otx);
            return rc == MDB_NOTFOUND ? MK_OK : mk_lmdb_error(rc, err, "reading the catalog");
        }
    }
    rc = open_records(otx, id, 0, &dbi, err);
    if (rc == MK_OK) rc = mk_indexset_load(eng, otx, &entry, &set, err);
    if (otx != txn) {
        if (rc != MK_OK) {
            mdb_txn_abort(otx);
            return rc;
        }
        int lrc = mdb_txn_commit(otx);
        if (lrc == 0) {
            mdb_txn_reset(txn);
            lrc = mdb_txn_renew(txn);
        }
        if (lrc != 0) {
            mk_indexset_free(set);
            return mk_lmdb_error(lrc, err, "opening a collection");
        }
    } else if (rc != MK_OK) {
        return rc;
    }
    pthread_mutex_lock(&eng->lock);
    c = cache_find(eng, ns, txn);
    if (!c)
        c = cache_add(eng, ns, strlen(db), id, dbi, creator, set);
    else
        mk_indexset_free(set);
    pthread_mutex_unlock(&eng->lock);
    if (!c) return mk_error_nomem(err);
    *out = c;
    return MK_OK;
}

static int load_one(void *ud, const char *ns, const bson_t *entry)
{
    void **ctx = ud;
    mk_engine_t *eng = ctx[0];
    MDB_txn *txn = ctx[1];
    bson_iter_t it;
    if (!bson_iter_init_find(&it, entry, "id")) return MK_OK;
    uint64_t id = (uint64_t)bson_iter_as_int64(&it);
    MDB_dbi dbi;
    mk_indexset_t *set;
    if (open_records(txn, id, 0, &dbi, ctx[2]) != MK_OK) return MK_ERR;
    if (mk_indexset_load(eng, txn, entry, &set, ctx[2]) != MK_OK) return MK_ERR;
    const char *dot = strchr(ns, '.');
    mk_coll_t *c = cache_add(eng, ns, dot ? (size_t)(dot - ns) : 0, id, dbi, NULL, set);
    return c ? MK_OK : mk_error_nomem(ctx[2]);
}

int mk_catalog_load(mk_engine_t *eng, MDB_txn *txn, mk_error_t *err)
{
    eng->ddl_seen = read_ddl(eng, txn);
    void *ctx[3] = {eng, txn, err};
    return mk_catalog_each(eng, txn, NULL, load_one, ctx, err);
}

int mk_catalog_next_id(mk_engine_t *eng, MDB_txn *txn, uint64_t *id, mk_error_t *err)
{
    MDB_val k = {9, "m:next_id"}, v;
    uint64_t n = 1;
    int rc = mdb_get(txn, eng->catalog, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        memcpy(&n, v.mv_data, 8);
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return mk_lmdb_error(rc, err, "reading the catalog");
    *id = n;
    n++;
    v.mv_size = 8;
    v.mv_data = &n;
    rc = mdb_put(txn, eng->catalog, &k, &v, 0);
    if (rc != 0) return mk_lmdb_error(rc, err, "writing the catalog");
    return MK_OK;
}

int mk_coll_ensure(mk_engine_t *eng, MDB_txn *txn, const char *db, const char *coll,
                   const bson_t *options, mk_coll_t **out, bool *created, mk_error_t *err)
{
    if (created) *created = false;
    int rc = mk_coll_find(eng, txn, db, coll, out, err);
    if (rc != MK_OK || *out) return rc;
    char ns[256];
    if (make_ns(db, coll, ns, sizeof ns, err) != MK_OK) return MK_ERR;
    uint64_t id = 0;
    MDB_dbi dbi;
    if ((rc = mk_table_create(eng, txn, 'r', &id, &dbi, err)) != MK_OK) return rc;

    bson_t entry = BSON_INITIALIZER, empty = BSON_INITIALIZER;
    uint8_t uuid[16];
    bson_oid_t rnd;
    bson_oid_init(&rnd, NULL);
    memcpy(uuid, rnd.bytes, 12);
    memcpy(uuid + 12, &id, 4);
    uuid[6] = (uint8_t)((uuid[6] & 0x0F) | 0x40);
    uuid[8] = (uint8_t)((uuid[8] & 0x3F) | 0x80);
    BSON_APPEND_UTF8(&entry, "ns", ns);
    BSON_APPEND_INT64(&entry, "id", (int64_t)id);
    BSON_APPEND_DOCUMENT(&entry, "options", options ? options : &empty);
    bson_append_binary(&entry, "uuid", 4, BSON_SUBTYPE_UUID, uuid, 16);
    char key[260];
    int klen = snprintf(key, sizeof key, "c:%s", ns);
    MDB_val k = {(size_t)klen, key}, v = {entry.len, (void *)bson_get_data(&entry)};
    rc = mdb_put(txn, eng->catalog, &k, &v, 0);
    bson_destroy(&entry);
    if (rc != 0) return mk_lmdb_error(rc, err, "writing the catalog");
    bson_t entry_for_set = BSON_INITIALIZER; /* no indexes yet */

    mk_indexset_t *set;
    if (mk_indexset_load(eng, txn, &entry_for_set, &set, err) != MK_OK) return MK_ERR;
    pthread_mutex_lock(&eng->lock);
    mk_coll_t *c = cache_add(eng, ns, strlen(db), id, dbi, txn, set);
    pthread_mutex_unlock(&eng->lock);
    if (!c) return mk_error_nomem(err);
    *out = c;
    if (created) *created = true;
    return MK_OK;
}

int mk_coll_drop(mk_engine_t *eng, MDB_txn *txn, mk_coll_t *c, mk_error_t *err)
{
    char key[260];
    int klen = snprintf(key, sizeof key, "c:%s", c->ns);
    MDB_val k = {(size_t)klen, key};
    int rc = mdb_del(txn, eng->catalog, &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND) return mk_lmdb_error(rc, err, "writing the catalog");
    if (mk_indexes_drop_all(txn, c, err) != MK_OK) return MK_ERR;
    if (mk_table_drop(eng, txn, 'r', c->id, c->dbi, err) != MK_OK) return MK_ERR;
    pthread_mutex_lock(&eng->lock);
    c->dropped_by = txn;
    pthread_mutex_unlock(&eng->lock);
    return MK_OK;
}

int mk_catalog_each(mk_engine_t *eng, MDB_txn *txn, const char *db, mk_coll_visit_fn fn, void *ud,
                    mk_error_t *err)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, eng->catalog, &cur);
    if (rc != 0) return mk_lmdb_error(rc, err, "reading the catalog");
    char prefix[80];
    int plen =
        db ? snprintf(prefix, sizeof prefix, "c:%s.", db) : snprintf(prefix, sizeof prefix, "c:");
    MDB_val k = {(size_t)plen, prefix}, v;
    int result = MK_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < (size_t)plen || memcmp(k.mv_data, prefix, (size_t)plen) != 0) break;
        char ns[256];
        size_t n = k.mv_size - 2 < sizeof ns - 1 ? k.mv_size - 2 : sizeof ns - 1;
        memcpy(ns, (char *)k.mv_data + 2, n);
        ns[n] = 0;
        bson_t entry;
        if (!bson_init_static(&entry, v.mv_data, v.mv_size)) continue;
        if ((result = fn(ud, ns, &entry)) != MK_OK) break;
    }
    mdb_cursor_close(cur);
    if (result == MK_OK && rc != 0 && rc != MDB_NOTFOUND)
        return mk_lmdb_error(rc, err, "reading the catalog");
    return result;
}

void mk_catalog_rollback(mk_engine_t *eng, MDB_txn *txn)
{
    pthread_mutex_lock(&eng->lock);
    tables_settle(eng, txn, false);
    for (mk_coll_t **pp = &eng->colls; *pp;) {
        mk_coll_t *c = *pp;
        if (c->dropped_by == txn) c->dropped_by = NULL;
        if (c->created_by == txn) {
            *pp = c->next;
            coll_free(c);
            continue;
        }
        mk_indexes_rollback(c, txn);
        pp = &c->next;
    }
    pthread_mutex_unlock(&eng->lock);
}

void mk_catalog_commit(mk_engine_t *eng, MDB_txn *txn, size_t txnid)
{
    pthread_mutex_lock(&eng->lock);
    tables_settle(eng, txn, true);
    for (mk_coll_t **pp = &eng->colls; *pp;) {
        mk_coll_t *c = *pp;
        if (c->created_by == txn) c->created_by = NULL;
        if (c->dropped_by == txn) {
            *pp = c->next;
            coll_free(c);
            continue;
        }
        mk_indexes_commit(c, txn, txnid);
        pp = &c->next;
    }
    pthread_mutex_unlock(&eng->lock);
}

int mk_catalog_set_indexes(mk_engine_t *eng, MDB_txn *txn, mk_coll_t *c, const bson_t *indexes,
                           mk_error_t *err)
{
    eng->ddl_dirty = true;
    char key[260];
    int klen = snprintf(key, sizeof key, "c:%s", c->ns);
    MDB_val k = {(size_t)klen, key}, v;
    int rc = mdb_get(txn, eng->catalog, &k, &v);
    if (rc != 0) return mk_lmdb_error(rc, err, "reading the catalog");
    bson_t old, entry = BSON_INITIALIZER;
    if (!bson_init_static(&old, v.mv_data, v.mv_size))
        return mk_error_setc(err, MK_CODE_STORAGE, "corrupt catalog entry for %s", c->ns);
    bson_copy_to_excluding_noinit(&old, &entry, "indexes", NULL);
    BSON_APPEND_ARRAY(&entry, "indexes", indexes);
    v.mv_size = entry.len;
    v.mv_data = (void *)bson_get_data(&entry);
    rc = mdb_put(txn, eng->catalog, &k, &v, 0);
    bson_destroy(&entry);
    if (rc != 0) return mk_lmdb_error(rc, err, "writing the catalog");
    return MK_OK;
}

/* ---------------------------------------------------------------- table reuse */

typedef enum { FT_FREE, FT_DROPPING, FT_TAKEN } ft_state_t;

typedef struct mk_free_table {
    char prefix;
    uint64_t id;
    MDB_dbi dbi;
    ft_state_t state;
    MDB_txn *txn; /* the transaction dropping or taking it */
    struct mk_free_table *next;
} mk_free_table_t;

int mk_table_create(mk_engine_t *eng, MDB_txn *txn, char prefix, uint64_t *id, MDB_dbi *dbi,
                    mk_error_t *err)
{
    eng->ddl_dirty = true;
    pthread_mutex_lock(&eng->lock);
    for (mk_free_table_t *f = eng->free_tables; f; f = f->next) {
        if (f->state == FT_FREE && f->prefix == prefix) {
            f->state = FT_TAKEN;
            f->txn = txn;
            *id = f->id;
            *dbi = f->dbi;
            pthread_mutex_unlock(&eng->lock);
            return MK_OK;
        }
    }
    pthread_mutex_unlock(&eng->lock);
    int rc = mk_catalog_next_id(eng, txn, id, err);
    if (rc == MK_OK) rc = mk_table_open(txn, prefix, *id, true, dbi, err);
    return rc;
}

int mk_table_drop(mk_engine_t *eng, MDB_txn *txn, char prefix, uint64_t id, MDB_dbi dbi,
                  mk_error_t *err)
{
    eng->ddl_dirty = true;
    mk_free_table_t *f = calloc(1, sizeof *f);
    if (!f) return mk_error_nomem(err);
    int rc = mdb_drop(txn, dbi, 0); /* empty it, keep the handle */
    if (rc != 0) {
        free(f);
        return mk_lmdb_error(rc, err, "dropping a table");
    }
    f->prefix = prefix;
    f->id = id;
    f->dbi = dbi;
    f->state = FT_DROPPING;
    f->txn = txn;
    pthread_mutex_lock(&eng->lock);
    f->next = eng->free_tables;
    eng->free_tables = f;
    pthread_mutex_unlock(&eng->lock);
    return MK_OK;
}

/* Called with eng->lock held. */
static void tables_settle(mk_engine_t *eng, MDB_txn *txn, bool committed)
{
    for (mk_free_table_t **pp = &eng->free_tables; *pp;) {
        mk_free_table_t *f = *pp;
        if (f->txn != txn || f->state == FT_FREE) {
            pp = &f->next;
            continue;
        }
        bool keep = (f->state == FT_DROPPING) == committed; /* dropped: now free; taken: undone */
        if (keep) {
            f->state = FT_FREE;
            f->txn = NULL;
            pp = &f->next;
        } else {
            *pp = f->next;
            free(f);
        }
    }
}

void mk_tables_free(mk_engine_t *eng)
{
    while (eng->free_tables) {
        mk_free_table_t *f = eng->free_tables;
        eng->free_tables = f->next;
        free(f);
    }
}
