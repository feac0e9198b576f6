/* Records: documents stored in a collection's table, keyed by the encoded _id.
 *
 * An _id whose encoding exceeds LMDB's key limit is stored under a shortened key (keyenc.h);
 * every lookup then confirms the stored document's _id, so a hash collision can never return
 * or overwrite the wrong document. */
#include <stdio.h>
#include <string.h>

#include "bson/format.h"
#include "bson/value.h"
#include "engine/index.h"
#include "engine/internal.h"

void mk_record_key(mk_buf_t *key, const bson_value_t *id)
{
    mk_buf_reset(key);
    mk_keyenc_value(key, id);
    mk_keyenc_fit(key);
}

static bool id_of(const uint8_t *data, size_t len, bson_value_t *id)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len) || !bson_iter_next(&it)) return false;
    if (strcmp(bson_iter_key(&it), "_id") != 0 && !bson_iter_find(&it, "_id")) return false;
    *id = *bson_iter_value(&it);
    return true;
}

/* For a shortened key, true when the stored document really has this _id. */
static bool same_id(const MDB_val *stored, const bson_value_t *id)
{
    bson_value_t have;
    return id_of(stored->mv_data, stored->mv_size, &have) && mk_value_cmp(&have, id) == 0;
}

int mk_record_get(MDB_txn *txn, mk_coll_t *c, const bson_value_t *id, bson_t *doc, bool *found,
                  mk_error_t *err)
{
    mk_buf_t key;
    mk_buf_init(&key);
    mk_record_key(&key, id);
    int rc =
        key.failed ? mk_error_nomem(err) : mk_record_get_by_key(txn, c, id, &key, doc, found, err);
    mk_buf_free(&key);
    return rc;
}

int mk_record_get_by_key(MDB_txn *txn, mk_coll_t *c, const bson_value_t *id, const mk_buf_t *key,
                         bson_t *doc, bool *found, mk_error_t *err)
{
    MDB_val k = {key->len, key->data}, v;
    int rc = mdb_get(txn, c->dbi, &k, &v);
    bool shortened = key->len > MK_KEY_PREFIX;
    *found = false;
    if (rc == MDB_NOTFOUND) return MK_OK;
    if (rc != 0) return mk_lmdb_error(rc, err, "reading a record");
    if (shortened && !same_id(&v, id)) return MK_OK;
    if (!bson_init_static(doc, v.mv_data, v.mv_size))
        return mk_error_setc(err, MK_CODE_STORAGE, "corrupt record in %s", c->ns);
    *found = true;
    return MK_OK;
}

int mk_dup_key_error(mk_error_t *err, const char *ns, const char *index, const bson_t *keydoc)
{
    char *k = mk_format_bson(keydoc);
    mk_error_setc(err, MK_CODE_DUPLICATE_KEY,
                  "E11000 duplicate key error collection: %s index: %s dup key: %s", ns, index, k);
    bson_free(k);
    return MK_ERR;
}

static int id_dup_error(mk_error_t *err, const char *ns, const bson_value_t *id)
{
    bson_t kd = BSON_INITIALIZER;
    bson_append_value(&kd, "_id", 3, id);
    mk_dup_key_error(err, ns, "_id_", &kd);
    bson_destroy(&kd);
    return MK_ERR;
}

static int delete_key(MDB_txn *txn, mk_coll_t *c, const bson_value_t *id, mk_error_t *err);

static int put(MDB_txn *txn, mk_coll_t *c, const bson_t *doc, bool insert, mk_error_t *err)
{
    bson_value_t id;
    if (!id_of(bson_get_data(doc), doc->len, &id))
        return mk_error_setc(err, MK_CODE_INVALID_ID_FIELD, "document has no _id");
    mk_buf_t key;
    mk_buf_init(&key);
    mk_record_key(&key, &id);
    if (key.failed) return mk_error_nomem(err);
    MDB_val k = {key.len, key.data}, v = {doc->len, (void *)bson_get_data(doc)};
    int rc = mdb_put(txn, c->dbi, &k, &v, insert ? MDB_NOOVERWRITE : 0);
    int result = MK_OK;
    if (rc == MDB_KEYEXIST) {
        /* v now holds the existing record; with a shortened key it may be another _id. */
        if (key.len > MK_KEY_PREFIX && !same_id(&v, &id))
            result = mk_error_setc(err, MK_CODE_INTERNAL,
                                   "record key hash collision for a very large _id in %s", c->ns);
        else
            result = id_dup_error(err, c->ns, &id);
    } else if (rc != 0) {
        result = mk_lmdb_error(rc, err, "writing a record");
    }
    mk_buf_free(&key);
    return result;
}

/* The record is written first only when its _id is new (MDB_NOOVERWRITE fails without
 * writing); index checks come before any index write, and a failing index step removes the
 * record again, so a failed insert leaves nothing behind. */
int mk_record_insert(MDB_txn *txn, mk_coll_t *c, const bson_t *doc, mk_error_t *err)
{
    int rc = put(txn, c, doc, true, err);
    if (rc != MK_OK) return rc;
    rc = mk_index_insert_doc(txn, c, doc, err);
    if (rc != MK_OK && rc != MK_EMAPFULL) {
        bson_value_t id;
        mk_error_t ignored;
        if (id_of(bson_get_data(doc), doc->len, &id)) delete_key(txn, c, &id, &ignored);
    }
    return rc;
}

int mk_record_replace(MDB_txn *txn, mk_coll_t *c, const bson_t *old, const bson_t *doc,
                      mk_error_t *err)
{
    int rc = mk_index_replace_doc(txn, c, old, doc, err);
    if (rc != MK_OK) return rc;
    return put(txn, c, doc, false, err);
}

int mk_record_delete(MDB_txn *txn, mk_coll_t *c, const bson_t *old, mk_error_t *err)
{
    bson_value_t id;
    if (!id_of(bson_get_data(old), old->len, &id))
        return mk_error_setc(err, MK_CODE_INVALID_ID_FIELD, "stored document has no _id");
    int rc = mk_index_delete_doc(txn, c, old, err);
    if (rc != MK_OK) return rc;
    return delete_key(txn, c, &id, err);
}

static int delete_key(MDB_txn *txn, mk_coll_t *c, const bson_value_t *id, mk_error_t *err)
{
    mk_buf_t key;
    mk_buf_init(&key);
    mk_record_key(&key, id);
    if (key.failed) return mk_error_nomem(err);
    MDB_val k = {key.len, key.data};
    int rc = mdb_del(txn, c->dbi, &k, NULL);
    mk_buf_free(&key);
    if (rc != 0 && rc != MDB_NOTFOUND) return mk_lmdb_error(rc, err, "deleting a record");
    return MK_OK;
}

/* Field names: no '$' prefix (DBRef's $ref/$id/$db excepted) at any depth. */
/* Strings must be UTF-8 (MongoDB's drivers and server reject others). ASCII is the common
 * case, so look for a high byte before running the full check. */
static bool valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return bson_utf8_validate(s + i, n - i, false);
    return true;
}

static int check_names(bson_iter_t *it, int depth, mk_error_t *err)
{
    if (depth > MK_MAX_DEPTH)
        return mk_error_setc(err, MK_CODE_OVERFLOW,
                             "Document nesting depth exceeds the maximum of %d", MK_MAX_DEPTH);
    while (bson_iter_next(it)) {
        const char *k = bson_iter_key(it);
        if (k[0] == '$' && strcmp(k, "$ref") != 0 && strcmp(k, "$id") != 0 && strcmp(k, "$db") != 0)
            return mk_error_setc(err, MK_CODE_DOLLAR_PREFIXED_FIELD_NAME,
                                 "Document can't have $ prefixed field names: %s", k);
        bson_type_t t = bson_iter_type(it);
        if (!valid_utf8(k, bson_iter_key_len(it)))
            return mk_error_setc(err, MK_CODE_BAD_VALUE, "Invalid UTF-8 in a field name");
        if (t == BSON_TYPE_UTF8 || t == BSON_TYPE_SYMBOL || t == BSON_TYPE_CODE) {
            uint32_t len;
            const char *str = t == BSON_TYPE_UTF8     ? bson_iter_utf8(it, &len)
                              : t == BSON_TYPE_SYMBOL ? bson_iter_symbol(it, &len)
                                                      : bson_iter_code(it, &len);
            if (!valid_utf8(str, len))
                return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                     "Invalid UTF-8 in the string of field '%s'", k);
        }
        if (t == BSON_TYPE_DOCUMENT || t == BSON_TYPE_ARRAY) {
            bson_iter_t child;
            if (!bson_iter_recurse(it, &child))
                return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON document");
            if (check_names(&child, depth + 1, err) != MK_OK) return MK_ERR;
        }
    }
    if (it->err_off) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON document");
    return MK_OK;
}

static int check_id(const bson_value_t *id, mk_error_t *err)
{
    switch (id->value_type) {
    case BSON_TYPE_ARRAY:
    case BSON_TYPE_REGEX:
    case BSON_TYPE_UNDEFINED:
        return mk_error_setc(err, MK_CODE_INVALID_ID_FIELD, "The '_id' value cannot be of type %s",
                             mk_type_name(id->value_type));
    default:
        return MK_OK;
    }
}

int mk_record_check(const bson_t *doc, mk_error_t *err)
{
    if (doc->len > MK_MAX_BSON_SIZE)
        return mk_error_setc(err, MK_CODE_BSON_OBJECT_TOO_LARGE,
                             "object to insert too large. size in bytes: %u, max size: %d",
                             doc->len, MK_MAX_BSON_SIZE);
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON document");
    if (check_names(&it, 1, err) != MK_OK) return MK_ERR;
    bson_value_t id;
    if (id_of(bson_get_data(doc), doc->len, &id) && check_id(&id, err) != MK_OK) return MK_ERR;
    return MK_OK;
}

int mk_record_prepare(const bson_t *doc, bson_t *out, mk_error_t *err)
{
    if (mk_record_check(doc, err) != MK_OK) return MK_ERR;
    bson_iter_t it;
    bson_iter_init(&it, doc);
    bool first_is_id = bson_iter_next(&it) && strcmp(bson_iter_key(&it), "_id") == 0;
    if (first_is_id) {
        bson_copy_to(doc, out);
        return MK_OK;
    }
    bson_init(out);
    bson_iter_t idit;
    if (bson_iter_init_find(&idit, doc, "_id")) {
        bson_append_value(out, "_id", 3, bson_iter_value(&idit));
    } else {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(out, "_id", &oid);
    }
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "_id") == 0) continue;
        bson_append_value(out, bson_iter_key(&it), (int)bson_iter_key_len(&it),
                          bson_iter_value(&it));
    }
    if (out->len > MK_MAX_BSON_SIZE) {
        bson_destroy(out);
        return mk_error_setc(err, MK_CODE_BSON_OBJECT_TOO_LARGE,
                             "object to insert too large. size in bytes: %u, max size: %d",
                             out->len, MK_MAX_BSON_SIZE);
    }
    return MK_OK;
}
