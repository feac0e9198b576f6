/* Secondary indexes: catalog, tables and maintenance (see index.h). */
#include "engine/index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"

static const mk_indexset_t empty_set = {0};

/* ---------------------------------------------------------------- sets */

static void index_free(mk_index_t *ix)
{
    if (!ix) return;
    free(ix->name);
    if (ix->spec) bson_destroy(ix->spec);
    mk_keypattern_destroy(ix->kp);
    mk_matcher_destroy(ix->partial);
    free(ix);
}

void mk_indexset_free(mk_indexset_t *s)
{
    while (s) {
        mk_indexset_t *older = s->graveyard;
        for (size_t i = 0; i < s->n; i++) index_free(s->v[i]);
        free(s->v);
        free(s);
        s = older;
    }
}

const mk_indexset_t *mk_coll_indexes(mk_coll_t *c, MDB_txn *txn)
{
    /* pending and write_txn belong to the writer thread; others only compare them */
    if (__atomic_load_n(&c->pending_txn, __ATOMIC_ACQUIRE) == txn && txn && c->pending)
        return c->pending;
    const mk_indexset_t *s = __atomic_load_n(&c->indexes, __ATOMIC_ACQUIRE);
    if (s && txn && txn != __atomic_load_n(&c->eng->write_txn, __ATOMIC_ACQUIRE)) {
        size_t snapshot = mdb_txn_id(txn);
        while (s->txnid > snapshot && s->graveyard) s = s->graveyard;
    }
    return s ? s : &empty_set;
}

mk_index_t *mk_indexset_find(const mk_indexset_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i]->name, name) == 0) return s->v[i];
    return NULL;
}

void mk_indexes_commit(mk_coll_t *c, MDB_txn *txn, size_t txnid)
{
    if (!c->pending || c->pending_txn != txn) return;
    c->pending->txnid = txnid;
    /* Readers may still hold the old set: keep it until the engine closes. */
    c->pending->graveyard = c->indexes;
    __atomic_store_n(&c->indexes, c->pending, __ATOMIC_RELEASE);
    c->pending = NULL;
    c->pending_txn = NULL;
}

void mk_indexes_rollback(mk_coll_t *c, MDB_txn *txn)
{
    if (!c->pending || c->pending_txn != txn) return;
    mk_indexset_free(c->pending);
    c->pending = NULL;
    c->pending_txn = NULL;
}

/* Builds one index from a catalog element { ...spec..., mk: { id, multikey } }. */
static int index_from_entry(MDB_txn *txn, const bson_t *el, mk_index_t **out, mk_error_t *err)
{
    mk_index_t *ix = calloc(1, sizeof *ix);
    if (!ix) return mk_error_nomem(err);
    ix->expire_after = -1;
    bson_iter_t it;
    int rc = MK_OK;
    if (!(ix->spec = bson_new())) rc = mk_error_nomem(err);
    if (rc == MK_OK) bson_copy_to_excluding_noinit(el, ix->spec, "mk", NULL);
    if (rc == MK_OK && bson_iter_init_find(&it, el, "name") && BSON_ITER_HOLDS_UTF8(&it))
        ix->name = strdup(bson_iter_utf8(&it, NULL));
    if (rc == MK_OK && !ix->name) rc = mk_error_setc(err, MK_CODE_STORAGE, "corrupt index entry");
    if (rc == MK_OK && bson_iter_init_find(&it, el, "key") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *d;
        uint32_t l;
        bson_t key;
        bson_iter_document(&it, &l, &d);
        if (bson_init_static(&key, d, l)) ix->kp = mk_keypattern_compile(&key, err);
    }
    if (rc == MK_OK && !ix->kp) rc = MK_ERR;
    if (rc == MK_OK && bson_iter_init_find(&it, el, "unique")) ix->unique = bson_iter_as_bool(&it);
    if (rc == MK_OK && bson_iter_init_find(&it, el, "sparse")) ix->sparse = bson_iter_as_bool(&it);
    if (rc == MK_OK && bson_iter_init_find(&it, el, "expireAfterSeconds"))
        ix->expire_after = bson_iter_as_int64(&it);
    if (rc == MK_OK && bson_iter_init_find(&it, el, "partialFilterExpression") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *d;
        uint32_t l;
        bson_t pf;
        bson_iter_document(&it, &l, &d);
        if (bson_init_static(&pf, d, l) && !(ix->partial = mk_matcher_compile(&pf, err)))
            rc = MK_ERR;
    }
    if (rc == MK_OK) {
        bson_iter_t mk, f;
        if (!bson_iter_init_find(&mk, el, "mk") || !bson_iter_recurse(&mk, &f))
            rc = mk_error_setc(err, MK_CODE_STORAGE, "corrupt index entry %s", ix->name);
        while (rc == MK_OK && bson_iter_next(&f)) {
            if (strcmp(bson_iter_key(&f), "id") == 0) ix->id = (uint64_t)bson_iter_as_int64(&f);
            if (strcmp(bson_iter_key(&f), "multikey") == 0) ix->multikey = bson_iter_as_bool(&f);
        }
    }
    if (rc == MK_OK) rc = mk_table_open(txn, 'x', ix->id, false, &ix->dbi, err);
    if (rc != MK_OK) {
        index_free(ix);
        return rc;
    }
    *out = ix;
    return MK_OK;
}

int mk_indexset_load(mk_engine_t *eng, MDB_txn *txn, const bson_t *entry, mk_indexset_t **out,
                     mk_error_t *err)
{
    mk_indexset_t *s = calloc(1, sizeof *s);
    if (!s) return mk_error_nomem(err);
    bson_iter_t it, arr;
    if (bson_iter_init_find(&it, entry, "indexes") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr)) {
        uint32_t n = 0;
        bson_iter_t count = arr;
        while (bson_iter_next(&count)) n++;
        if (n && !(s->v = calloc(n, sizeof *s->v))) {
            free(s);
            return mk_error_nomem(err);
        }
        while (bson_iter_next(&arr)) {
            const uint8_t *d;
            uint32_t l;
            bson_t el;
            if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) continue;
            bson_iter_document(&arr, &l, &d);
            if (!bson_init_static(&el, d, l) ||
                index_from_entry(txn, &el, &s->v[s->n], err) != MK_OK) {
                mk_indexset_free(s);
                return MK_ERR;
            }
            s->n++;
        }
    }
    *out = s;
    return MK_OK;
}

/* The catalog form of a set: each spec plus mk: { id, multikey }. */
static void set_to_catalog(const mk_indexset_t *s, const mk_index_t *skip, bson_t *arr)
{
    uint32_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        const mk_index_t *ix = s->v[i];
        if (ix == skip) continue;
        char k[16];
        const char *kp;
        bson_uint32_to_string(n++, &kp, k, sizeof k);
        bson_t el, mk;
        bson_append_document_begin(arr, kp, -1, &el);
        bson_concat(&el, ix->spec);
        bson_append_document_begin(&el, "mk", 2, &mk);
        BSON_APPEND_INT64(&mk, "id", (int64_t)ix->id);
        BSON_APPEND_BOOL(&mk, "multikey", ix->multikey);
        bson_append_document_end(&el, &mk);
        bson_append_document_end(arr, &el);
    }
}

/* Publishes `arr` as the collection's index list inside txn: catalog entry plus pending set. */
static int install(MDB_txn *txn, mk_coll_t *c, const bson_t *arr, mk_error_t *err)
{
    if (mk_catalog_set_indexes(c->eng, txn, c, arr, err) != MK_OK) return MK_ERR;
    bson_t entry = BSON_INITIALIZER;
    BSON_APPEND_ARRAY(&entry, "indexes", arr);
    mk_indexset_t *s;
    int rc = mk_indexset_load(c->eng, txn, &entry, &s, err);
    bson_destroy(&entry);
    if (rc != MK_OK) return rc;
    if (c->pending && c->pending_txn == txn) mk_indexset_free(c->pending);
    c->pending = s;
    __atomic_store_n(&c->pending_txn, txn, __ATOMIC_RELEASE);
    return MK_OK;
}

/* An index just became multikey: remember it (in memory at once, on disk in this txn). Turning
 * the flag on early is harmless: it only makes the planner more careful. */
static int mark_multikey(MDB_txn *txn, mk_coll_t *c, mk_index_t *ix, mk_error_t *err)
{
    ix->multikey = true;
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    bson_t arr = BSON_INITIALIZER;
    set_to_catalog(s, NULL, &arr);
    int rc = mk_catalog_set_indexes(c->eng, txn, c, &arr, err);
    bson_destroy(&arr);
    return rc;
}

/* ---------------------------------------------------------------- entries of one document */

typedef struct entry {
    mk_index_t *ix;
    size_t off, len; /* the entry key in entries_t.bytes */
} entry_t;

typedef struct entries {
    entry_t *v;
    size_t n, cap;
    mk_buf_t bytes;
    /* generation context */
    mk_index_t *ix;
    const uint8_t *reckey;
    size_t reckey_len;
    MDB_txn *txn; /* set: check unique keys against the table */
    const char *ns;
    mk_error_t *err;
} entries_t;

static void entries_init(entries_t *e)
{
    memset(e, 0, sizeof *e);
    mk_buf_init(&e->bytes);
}

static void entries_free(entries_t *e)
{
    free(e->v);
    mk_buf_free(&e->bytes);
}

static int add_key(void *ud, const uint8_t *key, size_t len, const bson_value_t *values)
{
    entries_t *e = ud;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        entry_t *v = realloc(e->v, cap * sizeof *v);
        if (!v) return mk_error_nomem(e->err);
        e->v = v;
        e->cap = cap;
    }
    mk_buf_t k;
    mk_buf_init(&k);
    mk_buf_append(&k, key, len);
    if (!e->ix->unique) mk_buf_append(&k, e->reckey, e->reckey_len);
    mk_keyenc_fit(&k);
    if (k.failed) {
        mk_buf_free(&k);
        return mk_error_nomem(e->err);
    }
    if (e->ix->unique && e->txn) {
        MDB_val mk = {k.len, k.data}, mv;
        int rc = mdb_get(e->txn, e->ix->dbi, &mk, &mv);
        if (rc == 0 &&
            !(mv.mv_size == e->reckey_len && memcmp(mv.mv_data, e->reckey, e->reckey_len) == 0)) {
            mk_buf_free(&k);
            bson_t kd = BSON_INITIALIZER;
            mk_keypattern_key_doc(e->ix->kp, values, &kd);
            mk_dup_key_error(e->err, e->ns, e->ix->name, &kd);
            bson_destroy(&kd);
            return MK_ERR;
        }
        if (rc != 0 && rc != MDB_NOTFOUND) {
            mk_buf_free(&k);
            return mk_lmdb_error(rc, e->err, "reading an index");
        }
    }
    e->v[e->n].ix = e->ix;
    e->v[e->n].off = e->bytes.len;
    e->v[e->n].len = k.len;
    mk_buf_append(&e->bytes, k.data, k.len);
    mk_buf_free(&k);
    if (e->bytes.failed) return mk_error_nomem(e->err);
    e->n++;
    return MK_OK;
}

/* All index entries of doc over the set. `check_unique`: look unique keys up in the tables. */
static int doc_entries(MDB_txn *txn, mk_coll_t *c, const mk_indexset_t *s, const bson_t *doc,
                       const mk_buf_t *reckey, bool check_unique, entries_t *e, mk_error_t *err)
{
    e->reckey = reckey->data;
    e->reckey_len = reckey->len;
    e->txn = check_unique ? txn : NULL;
    e->ns = c->ns;
    e->err = err;
    for (size_t i = 0; i < s->n; i++) {
        mk_index_t *ix = s->v[i];
        if (ix->partial && !mk_matcher_match(ix->partial, doc, NULL)) continue;
        e->ix = ix;
        bool multikey = false;
        int rc = mk_keypattern_keys(ix->kp, doc, ix->sparse, add_key, e, &multikey, err);
        if (rc != MK_OK) return rc;
        if (multikey && !ix->multikey && mark_multikey(txn, c, ix, err) != MK_OK) return MK_ERR;
    }
    return MK_OK;
}

static int record_key_of(const bson_t *doc, mk_buf_t *key, mk_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "_id"))
        return mk_error_setc(err, MK_CODE_INVALID_ID_FIELD, "document has no _id");
    mk_record_key(key, bson_iter_value(&it));
    return key->failed ? mk_error_nomem(err) : MK_OK;
}

static bool has_entry(const entries_t *e, const entry_t *x, const entries_t *xs)
{
    for (size_t i = 0; i < e->n; i++)
        if (e->v[i].ix == x->ix && e->v[i].len == x->len &&
            memcmp(e->bytes.data + e->v[i].off, xs->bytes.data + x->off, x->len) == 0)
            return true;
    return false;
}

static int put_entries(MDB_txn *txn, const entries_t *e, const entries_t *except,
                       const mk_buf_t *reckey, mk_error_t *err)
{
    for (size_t i = 0; i < e->n; i++) {
        if (except && has_entry(except, &e->v[i], e)) continue;
        MDB_val k = {e->v[i].len, e->bytes.data + e->v[i].off}, v = {reckey->len, reckey->data};
        int rc = mdb_put(txn, e->v[i].ix->dbi, &k, &v, 0);
        if (rc != 0) return mk_lmdb_error(rc, err, "writing an index");
    }
    return MK_OK;
}

static int del_entries(MDB_txn *txn, const entries_t *e, const entries_t *except, mk_error_t *err)
{
    for (size_t i = 0; i < e->n; i++) {
        if (except && has_entry(except, &e->v[i], e)) continue;
        MDB_val k = {e->v[i].len, e->bytes.data + e->v[i].off};
        int rc = mdb_del(txn, e->v[i].ix->dbi, &k, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND) return mk_lmdb_error(rc, err, "writing an index");
    }
    return MK_OK;
}

int mk_index_insert_doc(MDB_txn *txn, mk_coll_t *c, const bson_t *doc, mk_error_t *err)
{
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    if (s->n == 0) return MK_OK;
    mk_buf_t reckey;
    mk_buf_init(&reckey);
    entries_t e;
    entries_init(&e);
    int rc = record_key_of(doc, &reckey, err);
    if (rc == MK_OK) rc = doc_entries(txn, c, s, doc, &reckey, true, &e, err);
    if (rc == MK_OK) rc = put_entries(txn, &e, NULL, &reckey, err);
    entries_free(&e);
    mk_buf_free(&reckey);
    return rc;
}

int mk_index_replace_doc(MDB_txn *txn, mk_coll_t *c, const bson_t *old, const bson_t *doc,
                         mk_error_t *err)
{
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    if (s->n == 0) return MK_OK;
    mk_buf_t reckey;
    mk_buf_init(&reckey);
    entries_t before, after;
    entries_init(&before);
    entries_init(&after);
    int rc = record_key_of(doc, &reckey, err);
    if (rc == MK_OK) rc = doc_entries(txn, c, s, old, &reckey, false, &before, err);
    if (rc == MK_OK) rc = doc_entries(txn, c, s, doc, &reckey, true, &after, err);
    if (rc == MK_OK) rc = del_entries(txn, &before, &after, err);
    if (rc == MK_OK) rc = put_entries(txn, &after, &before, &reckey, err);
    entries_free(&before);
    entries_free(&after);
    mk_buf_free(&reckey);
    return rc;
}

int mk_index_delete_doc(MDB_txn *txn, mk_coll_t *c, const bson_t *old, mk_error_t *err)
{
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    if (s->n == 0) return MK_OK;
    mk_buf_t reckey;
    mk_buf_init(&reckey);
    entries_t e;
    entries_init(&e);
    int rc = record_key_of(old, &reckey, err);
    if (rc == MK_OK) rc = doc_entries(txn, c, s, old, &reckey, false, &e, err);
    if (rc == MK_OK) rc = del_entries(txn, &e, NULL, err);
    entries_free(&e);
    mk_buf_free(&reckey);
    return rc;
}

/* ---------------------------------------------------------------- createIndexes */

static bool is_id_pattern(const bson_t *key)
{
    bson_iter_t it;
    return bson_iter_init(&it, key) && bson_iter_next(&it) &&
           strcmp(bson_iter_key(&it), "_id") == 0 && !bson_iter_next(&it);
}

/* Options that change an index's behaviour, for "same index?" comparisons. */
static bool same_options(const bson_t *a, const bson_t *b)
{
    static const char *const opts[] = {"unique", "sparse", "partialFilterExpression",
                                       "expireAfterSeconds", NULL};
    for (const char *const *o = opts; *o; o++) {
        bson_iter_t ia, ib;
        bool ha = bson_iter_init_find(&ia, a, *o), hb = bson_iter_init_find(&ib, b, *o);
        if (strcmp(*o, "unique") == 0 || strcmp(*o, "sparse") == 0) {
            if ((ha && bson_iter_as_bool(&ia)) != (hb && bson_iter_as_bool(&ib))) return false;
            continue;
        }
        if (ha != hb) return false;
        if (ha && mk_value_cmp(bson_iter_value(&ia), bson_iter_value(&ib)) != 0) return false;
    }
    return true;
}

static int spec_error(mk_error_t *err, int code, const char *kind, const bson_t *spec,
                      const char *why)
{
    char *s = bson_as_relaxed_extended_json(spec, NULL);
    mk_error_set(err, code, kind, "Error in specification %s :: caused by :: %s", s ? s : "{}",
                 why);
    bson_free(s);
    return MK_ERR;
}

/* Validates one requested spec into `out` (normalised: v, key, name, options). */
static int parse_spec(const bson_t *spec, bson_t *out, bson_t *key, mk_error_t *err)
{
    bson_iter_t it;
    bool has_key = false;
    char *name = NULL;
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "key") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it))
                return spec_error(err, MK_CODE_TYPE_MISMATCH, NULL, spec,
                                  "The field 'key' must be an object");
            const uint8_t *d;
            uint32_t l;
            bson_iter_document(&it, &l, &d);
            bson_init_static(key, d, l);
            has_key = true;
        } else if (strcmp(k, "name") == 0) {
            if (!BSON_ITER_HOLDS_UTF8(&it) || !*bson_iter_utf8(&it, NULL))
                return spec_error(err, MK_CODE_TYPE_MISMATCH, NULL, spec,
                                  "The field 'name' must be a non-empty string");
        } else if (strcmp(k, "unique") == 0 || strcmp(k, "sparse") == 0 ||
                   strcmp(k, "background") == 0 || strcmp(k, "v") == 0 || strcmp(k, "ns") == 0) {
        } else if (strcmp(k, "partialFilterExpression") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it))
                return spec_error(err, MK_CODE_TYPE_MISMATCH, NULL, spec,
                                  "The field 'partialFilterExpression' must be an object");
        } else if (strcmp(k, "expireAfterSeconds") == 0) {
            if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_int64(&it) < 0)
                return spec_error(err, MK_CODE_INVALID_OPTIONS, NULL, spec,
                                  "expireAfterSeconds must be a non-negative number");
        } else {
            char why[160];
            snprintf(why, sizeof why, "index option '%s' is not supported yet", k);
            return spec_error(err, MK_CODE_BAD_VALUE, NULL, spec, why);
        }
    }
    if (!has_key)
        return spec_error(err, MK_CODE_FAILED_TO_PARSE, NULL, spec,
                          "The 'key' field is a required property of an index specification");
    mk_keypattern_t *kp = mk_keypattern_compile(key, err);
    if (!kp) return MK_ERR;
    mk_keypattern_destroy(kp);
    if (bson_iter_init_find(&it, spec, "name") && BSON_ITER_HOLDS_UTF8(&it))
        name = strdup(bson_iter_utf8(&it, NULL));
    else
        name = mk_keypattern_default_name(key); /* the shell and drivers send one; be kind */
    if (!name) return mk_error_nomem(err);
    bson_init(out);
    BSON_APPEND_INT32(out, "v", 2);
    BSON_APPEND_DOCUMENT(out, "key", key);
    BSON_APPEND_UTF8(out, "name", name);
    free(name);
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "unique") == 0 || strcmp(k, "sparse") == 0) {
            if (bson_iter_as_bool(&it)) BSON_APPEND_BOOL(out, k, true);
        } else if (strcmp(k, "partialFilterExpression") == 0 ||
                   strcmp(k, "expireAfterSeconds") == 0) {
            bson_append_value(out, k, -1, bson_iter_value(&it));
        }
    }
    bson_iter_t pf;
    if (bson_iter_init_find(&pf, out, "partialFilterExpression")) {
        const uint8_t *d;
        uint32_t l;
        bson_t f;
        bson_iter_document(&pf, &l, &d);
        bson_init_static(&f, d, l);
        mk_matcher_t *m = mk_matcher_compile(&f, err);
        if (!m) {
            bson_destroy(out);
            return MK_ERR;
        }
        mk_matcher_destroy(m);
    }
    return MK_OK;
}

typedef struct build {
    MDB_txn *txn;
    mk_coll_t *c;
    mk_index_t *ix;
    entries_t e;
    mk_error_t *err;
} build_t;

/* Adds the entries of every stored document to a new index. */
static int build_index(MDB_txn *txn, mk_coll_t *c, mk_index_t *ix, mk_error_t *err)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->dbi, &cur);
    if (rc != 0) return mk_lmdb_error(rc, err, "building an index");
    mk_indexset_t one = {.n = 1, .v = &ix};
    MDB_val k, v;
    int result = MK_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && result == MK_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        bson_t doc;
        if (!bson_init_static(&doc, v.mv_data, v.mv_size)) continue;
        mk_buf_t reckey;
        mk_buf_init(&reckey);
        mk_buf_append(&reckey, k.mv_data, k.mv_size);
        entries_t e;
        entries_init(&e);
        result = doc_entries(txn, c, &one, &doc, &reckey, true, &e, err);
        if (result == MK_OK) result = put_entries(txn, &e, NULL, &reckey, err);
        entries_free(&e);
        mk_buf_free(&reckey);
    }
    mdb_cursor_close(cur);
    if (result == MK_OK && rc != MDB_NOTFOUND) result = mk_lmdb_error(rc, err, "building an index");
    return result;
}

int mk_indexes_create(mk_engine_t *eng, MDB_txn *txn, mk_coll_t *c, const bson_t *specs,
                      bson_t *reply, mk_error_t *err)
{
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    int before = (int)s->n + 1;
    bson_t arr = BSON_INITIALIZER;
    set_to_catalog(s, NULL, &arr);
    uint32_t n = (uint32_t)s->n;
    int added = 0, rc = MK_OK;
    /* New indexes are built against a temporary set holding just them. */
    bson_iter_t it;
    bson_iter_init(&it, specs);
    while (rc == MK_OK && bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            rc = mk_error_setc(err, MK_CODE_TYPE_MISMATCH,
                               "The elements of the 'indexes' array must be objects");
            break;
        }
        const uint8_t *d;
        uint32_t l;
        bson_t spec, norm, key;
        bson_iter_document(&it, &l, &d);
        bson_init_static(&spec, d, l);
        if ((rc = parse_spec(&spec, &norm, &key, err)) != MK_OK) break;
        bson_iter_t nit;
        bson_iter_init_find(&nit, &norm, "name");
        const char *name = bson_iter_utf8(&nit, NULL);
        if (is_id_pattern(&key) || strcmp(name, "_id_") == 0) {
            if (!(is_id_pattern(&key) && strcmp(name, "_id_") == 0) &&
                !(is_id_pattern(&key) && !bson_has_field(&spec, "name")))
                rc = mk_error_set(err, 86, "IndexKeySpecsConflict",
                                  "An existing index has the same name as the requested index. "
                                  "Requested index: %s, existing index: { v: 2, key: { _id: 1 }, "
                                  "name: \"_id_\" }",
                                  name);
            bson_destroy(&norm);
            continue;
        }
        /* compare with existing ones (and ones added by this command) */
        bson_iter_t ai;
        bool skip = false;
        bson_iter_init(&ai, &arr);
        while (rc == MK_OK && !skip && bson_iter_next(&ai)) {
            bson_t ex;
            bson_iter_document(&ai, &l, &d);
            bson_init_static(&ex, d, l);
            bson_iter_t en, ek;
            bson_iter_init_find(&en, &ex, "name");
            bson_iter_init_find(&ek, &ex, "key");
            bson_t exkey;
            bson_iter_document(&ek, &l, &d);
            bson_init_static(&exkey, d, l);
            bool same_name = strcmp(bson_iter_utf8(&en, NULL), name) == 0;
            bool same_key = mk_bson_cmp(&exkey, &key) == 0;
            if (same_name && same_key && same_options(&ex, &norm))
                skip = true;
            else if (same_name && !same_key)
                rc = mk_error_set(err, 86, "IndexKeySpecsConflict",
                                  "An existing index has the same name as the requested index. "
                                  "When index names are not specified, they are auto generated and "
                                  "can cause conflicts. Please refer to our documentation. "
                                  "Requested index: %s, existing index: %s",
                                  name, bson_iter_utf8(&en, NULL));
            else if (same_key && !same_name && same_options(&ex, &norm))
                rc = mk_error_set(err, 85, "IndexOptionsConflict",
                                  "Index already exists with a different name: %s",
                                  bson_iter_utf8(&en, NULL));
            else if (same_name || (same_key && !same_options(&ex, &norm) && same_name))
                rc = mk_error_set(err, 85, "IndexOptionsConflict",
                                  "An equivalent index already exists with the same name but "
                                  "different options. Requested index: %s",
                                  name);
        }
        if (rc == MK_OK && !skip) {
            uint64_t id;
            MDB_dbi dbi;
            rc = mk_table_create(eng, txn, 'x', &id, &dbi, err);
            if (rc == MK_OK) {
                char k[16];
                const char *kp;
                bson_uint32_to_string(n++, &kp, k, sizeof k);
                bson_t el, mk;
                bson_append_document_begin(&arr, kp, -1, &el);
                bson_concat(&el, &norm);
                bson_append_document_begin(&el, "mk", 2, &mk);
                BSON_APPEND_INT64(&mk, "id", (int64_t)id);
                BSON_APPEND_BOOL(&mk, "multikey", false);
                bson_append_document_end(&el, &mk);
                bson_append_document_end(&arr, &el);
                added++;
            }
        }
        bson_destroy(&norm);
    }
    if (rc == MK_OK && added) rc = install(txn, c, &arr, err);
    /* Build the new ones (the last `added` of the pending set) over the stored documents. */
    if (rc == MK_OK && added) {
        const mk_indexset_t *ns = mk_coll_indexes(c, txn);
        for (size_t i = ns->n - (size_t)added; rc == MK_OK && i < ns->n; i++)
            rc = build_index(txn, c, ns->v[i], err);
    }
    bson_destroy(&arr);
    if (rc != MK_OK) return rc;
    BSON_APPEND_INT32(reply, "numIndexesBefore", before);
    BSON_APPEND_INT32(reply, "numIndexesAfter", before + added);
    if (!added) BSON_APPEND_UTF8(reply, "note", "all indexes already exist");
    return MK_OK;
}

/* ---------------------------------------------------------------- dropIndexes */

static bool matches_request(const mk_index_t *ix, bson_iter_t *which)
{
    if (BSON_ITER_HOLDS_UTF8(which)) return strcmp(bson_iter_utf8(which, NULL), ix->name) == 0;
    if (BSON_ITER_HOLDS_DOCUMENT(which)) {
        const uint8_t *d;
        uint32_t l;
        bson_t key;
        bson_iter_document(which, &l, &d);
        bson_init_static(&key, d, l);
        bson_iter_t k;
        if (!bson_iter_init_find(&k, ix->spec, "key")) return false;
        return mk_value_cmp(bson_iter_value(&k), bson_iter_value(which)) == 0;
    }
    return false;
}

int mk_indexes_drop(mk_engine_t *eng, MDB_txn *txn, mk_coll_t *c, bson_iter_t *which, bson_t *reply,
                    mk_error_t *err)
{
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    bool *drop = s->n ? calloc(s->n, sizeof *drop) : NULL;
    if (s->n && !drop) return mk_error_nomem(err);
    int rc = MK_OK;
    bool all = BSON_ITER_HOLDS_UTF8(which) && strcmp(bson_iter_utf8(which, NULL), "*") == 0;
    if (all) {
        for (size_t i = 0; i < s->n; i++) drop[i] = true;
    } else if (BSON_ITER_HOLDS_ARRAY(which)) {
        bson_iter_t el;
        bson_iter_recurse(which, &el);
        while (rc == MK_OK && bson_iter_next(&el)) {
            bool found = false;
            for (size_t i = 0; i < s->n; i++)
                if (matches_request(s->v[i], &el)) found = drop[i] = true;
            if (!found && BSON_ITER_HOLDS_UTF8(&el) &&
                strcmp(bson_iter_utf8(&el, NULL), "_id_") == 0)
                rc = mk_error_setc(err, MK_CODE_INVALID_OPTIONS, "cannot drop _id index");
            else if (!found)
                rc = mk_error_set(err, 27, "IndexNotFound", "index not found with name [%s]",
                                  BSON_ITER_HOLDS_UTF8(&el) ? bson_iter_utf8(&el, NULL) : "?");
        }
    } else if (BSON_ITER_HOLDS_UTF8(which) || BSON_ITER_HOLDS_DOCUMENT(which)) {
        bool found = false;
        for (size_t i = 0; i < s->n; i++)
            if (matches_request(s->v[i], which)) found = drop[i] = true;
        bool id =
            BSON_ITER_HOLDS_UTF8(which) ? strcmp(bson_iter_utf8(which, NULL), "_id_") == 0 : false;
        if (!found && BSON_ITER_HOLDS_DOCUMENT(which)) {
            const uint8_t *d;
            uint32_t l;
            bson_t key;
            bson_iter_document(which, &l, &d);
            bson_init_static(&key, d, l);
            id = is_id_pattern(&key);
        }
        if (!found && id)
            rc = mk_error_setc(err, MK_CODE_INVALID_OPTIONS, "cannot drop _id index");
        else if (!found && BSON_ITER_HOLDS_UTF8(which))
            rc = mk_error_set(err, 27, "IndexNotFound", "index not found with name [%s]",
                              bson_iter_utf8(which, NULL));
        else if (!found)
            rc = mk_error_set(err, 27, "IndexNotFound", "can't find index with key: %s",
                              "the requested key pattern");
    } else {
        rc = mk_error_setc(err, MK_CODE_TYPE_MISMATCH,
                           "BSON field 'dropIndexes.index' is the wrong type, expected a string, "
                           "an object or an array");
    }
    if (rc == MK_OK) {
        bson_t arr = BSON_INITIALIZER;
        uint32_t n = 0;
        for (size_t i = 0; i < s->n && rc == MK_OK; i++) {
            if (drop[i]) {
                rc = mk_table_drop(c->eng, txn, 'x', s->v[i]->id, s->v[i]->dbi, err);
                continue;
            }
            /* keep: re-emit its catalog element */
            mk_indexset_t one = {.n = 1, .v = &s->v[i]};
            bson_t tmp = BSON_INITIALIZER;
            set_to_catalog(&one, NULL, &tmp);
            bson_iter_t ti;
            bson_iter_init(&ti, &tmp);
            bson_iter_next(&ti);
            char k[16];
            const char *kp;
            bson_uint32_to_string(n++, &kp, k, sizeof k);
            bson_append_value(&arr, kp, -1, bson_iter_value(&ti));
            bson_destroy(&tmp);
        }
        if (rc == MK_OK) {
            BSON_APPEND_INT32(reply, "nIndexesWas", (int32_t)s->n + 1);
            rc = install(txn, c, &arr, err);
        }
        bson_destroy(&arr);
    }
    free(drop);
    (void)eng;
    return rc;
}

int mk_indexes_drop_all(MDB_txn *txn, mk_coll_t *c, mk_error_t *err)
{
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    for (size_t i = 0; i < s->n; i++) {
        if (mk_table_drop(c->eng, txn, 'x', s->v[i]->id, s->v[i]->dbi, err) != MK_OK) return MK_ERR;
    }
    return MK_OK;
}

void mk_indexes_list(mk_coll_t *c, MDB_txn *txn, const char *ns, bson_t *arr)
{
    bson_t id, key;
    bson_append_document_begin(arr, "0", 1, &id);
    BSON_APPEND_INT32(&id, "v", 2);
    bson_append_document_begin(&id, "key", 3, &key);
    BSON_APPEND_INT32(&key, "_id", 1);
    bson_append_document_end(&id, &key);
    BSON_APPEND_UTF8(&id, "name", "_id_");
    bson_append_document_end(arr, &id);
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    for (size_t i = 0; i < s->n; i++) {
        char k[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)i + 1, &kp, k, sizeof k);
        bson_append_document(arr, kp, -1, s->v[i]->spec);
    }
    (void)ns;
}

/* ---------------------------------------------------------------- validate */

int mk_indexes_validate(MDB_txn *txn, mk_coll_t *c, bson_t *reply, bool *valid, mk_error_t *err)
{
    const mk_indexset_t *s = mk_coll_indexes(c, txn);
    *valid = true;
    size_t n = s->n;
    int64_t *expected = n ? calloc(n, sizeof *expected) : NULL;
    int64_t missing = 0, nrecords = 0;
    bool *bad = n ? calloc(n, sizeof *bad) : NULL;
    if (n && !expected) return mk_error_nomem(err);
    bson_t errors = BSON_INITIALIZER;
    uint32_t nerr = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->dbi, &cur);
    if (rc != 0) {
        free(expected);
        bson_destroy(&errors);
        return mk_lmdb_error(rc, err, "validating");
    }
    MDB_val k, v;
    int result = MK_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && result == MK_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        nrecords++;
        bson_t doc;
        if (!bson_init_static(&doc, v.mv_data, v.mv_size)) {
            *valid = false;
            continue;
        }
        mk_buf_t reckey;
        mk_buf_init(&reckey);
        mk_buf_append(&reckey, k.mv_data, k.mv_size);
        entries_t e;
        entries_init(&e);
        mk_error_t gen_err;
        if (doc_entries(txn, c, s, &doc, &reckey, false, &e, &gen_err) == MK_OK) {
            for (size_t i = 0; i < e.n; i++) {
                size_t ix = 0;
                while (ix < n && s->v[ix] != e.v[i].ix) ix++;
                if (ix < n) expected[ix]++;
                MDB_val ek = {e.v[i].len, e.bytes.data + e.v[i].off}, ev;
                int g = mdb_get(txn, e.v[i].ix->dbi, &ek, &ev);
                if (g != 0 || ev.mv_size != reckey.len ||
                    memcmp(ev.mv_data, reckey.data, reckey.len) != 0) {
                    missing++;
                    *valid = false;
                    if (ix < n && bad) bad[ix] = true;
                }
            }
        } else {
            *valid = false;
        }
        entries_free(&e);
        mk_buf_free(&reckey);
    }
    mdb_cursor_close(cur);
    bson_t per, details;
    bson_append_document_begin(reply, "keysPerIndex", -1, &per);
    BSON_APPEND_INT64(&per, "_id_", nrecords);
    for (size_t i = 0; i < n; i++) {
        MDB_stat st;
        int64_t entries = mdb_stat(txn, s->v[i]->dbi, &st) == 0 ? (int64_t)st.ms_entries : -1;
        BSON_APPEND_INT64(&per, s->v[i]->name, entries);
        if (entries != expected[i]) {
            *valid = false;
            if (bad) bad[i] = true;
            char key[16], msg[300];
            const char *kp;
            bson_uint32_to_string(nerr++, &kp, key, sizeof key);
            snprintf(msg, sizeof msg, "index '%s' has %lld entries but its documents give %lld",
                     s->v[i]->name, (long long)entries, (long long)expected[i]);
            BSON_APPEND_UTF8(&errors, kp, msg);
        }
    }
    bson_append_document_end(reply, &per);
    if (missing) {
        char key[16], msg[120];
        const char *kp;
        bson_uint32_to_string(nerr++, &kp, key, sizeof key);
        snprintf(msg, sizeof msg, "%lld index entries are missing or point elsewhere",
                 (long long)missing);
        BSON_APPEND_UTF8(&errors, kp, msg);
    }
    bson_append_document_begin(reply, "indexDetails", -1, &details);
    for (size_t i = 0; i < n; i++) {
        bson_t d;
        bson_append_document_begin(&details, s->v[i]->name, -1, &d);
        BSON_APPEND_BOOL(&d, "valid", !(bad && bad[i]));
        bson_append_document_end(&details, &d);
    }
    bson_append_document_end(reply, &details);
    BSON_APPEND_INT64(reply, "nrecords", nrecords);
    BSON_APPEND_INT32(reply, "nIndexes", (int32_t)n + 1);
    BSON_APPEND_INT32(reply, "nInvalidDocuments", 0);
    BSON_APPEND_BOOL(reply, "valid", *valid);
    BSON_APPEND_ARRAY(reply, "errors", &errors);
    bson_destroy(&errors);
    free(expected);
    free(bad);
    if (result == MK_OK && rc != MDB_NOTFOUND) return mk_lmdb_error(rc, err, "validating");
    return result;
}
