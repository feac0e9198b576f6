/* Secondary indexes: their catalog entries, their tables, and keeping them in step with the
 * records.
 *
 * Each index is one LMDB table "x<id>". An entry's key is the index key (index_keys.h), followed
 * for a non-unique index by the record key so that entries stay distinct, shortened with
 * mk_keyenc_fit when long; its value is the record key. Every write updates the record and all
 * its index entries in the caller's LMDB write transaction, so they can never disagree.
 *
 * A collection's set of indexes is immutable once published: DDL builds a new set, visible to
 * its own transaction at once and to everyone when that transaction commits. */
#ifndef MK_ENGINE_INDEX_H
#define MK_ENGINE_INDEX_H

#include "engine/index_keys.h"
#include "engine/internal.h"
#include "engine/matcher.h"

typedef struct mk_index {
    char *name;
    bson_t *spec; /* as listIndexes returns it: { v, key, name, unique, ... } */
    mk_keypattern_t *kp;
    bool unique, sparse;
    mk_matcher_t *partial; /* partialFilterExpression, or NULL */
    int64_t expire_after;  /* expireAfterSeconds, or -1 */
    uint64_t id;
    MDB_dbi dbi;
    bool multikey; /* some document has (had) several keys: only ever turns on */
} mk_index_t;

struct mk_indexset {
    size_t txnid; /* the LMDB transaction that published it (0: loaded at open) */
    size_t n;
    mk_index_t **v;
    struct mk_indexset *graveyard; /* replaced sets, freed at engine close */
};

/* The indexes a transaction sees: its own pending DDL, or the newest set published no later
 * than its snapshot (older sets are kept for readers that started before a DDL). Never NULL. */
const mk_indexset_t *mk_coll_indexes(mk_coll_t *c, MDB_txn *txn);
mk_index_t *mk_indexset_find(const mk_indexset_t *s, const char *name);

/* Parses the "indexes" array of a catalog entry into a set, opening tables in txn. */
int mk_indexset_load(mk_engine_t *eng, MDB_txn *txn, const bson_t *entry, mk_indexset_t **out,
                     mk_error_t *err);
void mk_indexset_free(mk_indexset_t *s);
/* Publishes or drops the pending sets of a transaction (called from catalog commit/rollback). */
void mk_indexes_commit(mk_coll_t *c, MDB_txn *txn, size_t txnid);
void mk_indexes_rollback(mk_coll_t *c, MDB_txn *txn);

/* Write-path maintenance. `doc` has its _id first; old is the stored document being replaced
 * or deleted. Unique violations are E11000 errors naming the index and key, detected before
 * anything is written so that a failing document changes nothing. */
int mk_index_insert_doc(MDB_txn *txn, mk_coll_t *c, const bson_t *doc, mk_error_t *err);
int mk_index_replace_doc(MDB_txn *txn, mk_coll_t *c, const bson_t *old, const bson_t *doc,
                         mk_error_t *err);
int mk_index_delete_doc(MDB_txn *txn, mk_coll_t *c, const bson_t *old, mk_error_t *err);

/* Commands. */
int mk_indexes_create(mk_engine_t *eng, MDB_txn *txn, mk_coll_t *c, const bson_t *specs,
                      bson_t *reply, mk_error_t *err);
int mk_indexes_drop(mk_engine_t *eng, MDB_txn *txn, mk_coll_t *c, bson_iter_t *which, bson_t *reply,
                    mk_error_t *err);
/* Drops every index table of a collection (the collection is being dropped). */
int mk_indexes_drop_all(MDB_txn *txn, mk_coll_t *c, mk_error_t *err);
/* Appends listIndexes' documents (the _id index first) to arr. */
void mk_indexes_list(mk_coll_t *c, MDB_txn *txn, const char *ns, bson_t *arr);
/* Checks every index against the records (the validate command's core). */
int mk_indexes_validate(MDB_txn *txn, mk_coll_t *c, bson_t *reply, bool *valid, mk_error_t *err);

#endif
