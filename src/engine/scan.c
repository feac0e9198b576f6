/* Point lookups and collection scans (see scan.h). */
#include "engine/scan.h"

#include <string.h>

bool mk_filter_point(bson_iter_t *it, bson_value_t *value)
{
    const bson_value_t *v = bson_iter_value(it);
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_t sub;
        if (!bson_iter_recurse(it, &sub) || !bson_iter_next(&sub)) return false;
        if (strcmp(bson_iter_key(&sub), "$eq") != 0) return false; /* operators or a literal */
        bson_iter_t more = sub;
        if (bson_iter_next(&more)) return false;
        v = bson_iter_value(&sub);
    }
    switch (v->value_type) {
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
    case BSON_TYPE_REGEX:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        return false;
    default:
        if (value) *value = *v;
        return true;
    }
}

bool mk_filter_id_eq(const bson_t *filter, bson_value_t *id)
{
    bson_iter_t it;
    if (!filter || !bson_iter_init(&it, filter) || !bson_iter_next(&it)) return false;
    if (strcmp(bson_iter_key(&it), "_id") != 0) return false;
    bson_iter_t only = it;
    if (bson_iter_next(&only)) return false; /* more than one condition */
    return mk_filter_point(&it, id);
}

static int visit(const mk_scan_spec_t *spec, const MDB_val *k, const MDB_val *v, mk_scan_fn fn,
                 void *ud, mk_error_t *err)
{
    bson_t doc;
    if (!bson_init_static(&doc, v->mv_data, v->mv_size))
        return mk_error_setc(err, MK_CODE_STORAGE, "corrupt record");
    if (spec->examined) {
        if (spec->work_limit && *spec->examined >= spec->work_limit) return MK_SCAN_STOP;
        (*spec->examined)++;
    }
    mk_match_details_t md = {0};
    if (spec->matcher) {
        /* checked: an $expr may fail at run time (e.g. division by zero) */
        int m = mk_matcher_match_checked(spec->matcher, &doc, spec->want_details ? &md : NULL, err);
        if (m < 0) return MK_ERR;
        if (m == 0) return MK_OK;
    }
    return fn(ud, &doc, k, &md);
}

int mk_scan(MDB_txn *txn, mk_coll_t *c, const mk_scan_spec_t *spec, mk_scan_fn fn, void *ud,
            mk_error_t *err)
{
    if (spec->id_eq) {
        if (spec->after) return MK_OK; /* a point lookup yields at most one document */
        bson_t doc;
        bool found = false;
        mk_buf_t key;
        mk_buf_init(&key);
        mk_record_key(&key, spec->id_eq);
        int rc = key.failed ? mk_error_nomem(err)
                            : mk_record_get_by_key(txn, c, spec->id_eq, &key, &doc, &found, err);
        if (rc == MK_OK && found) {
            MDB_val k = {key.len, key.data}, v = {doc.len, (void *)bson_get_data(&doc)};
            rc = visit(spec, &k, &v, fn, ud, err);
        }
        mk_buf_free(&key);
        return rc == MK_SCAN_STOP ? MK_OK : rc;
    }
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->dbi, &cur);
    if (rc != 0) return mk_lmdb_error(rc, err, "scanning a collection");
    MDB_val k, v;
    if (spec->after) {
        k = *spec->after;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == spec->after->mv_size &&
            memcmp(k.mv_data, spec->after->mv_data, k.mv_size) == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    int result = MK_OK;
    uint64_t tick = 0;
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if ((result = mk_op_check(&tick, err)) != MK_OK) break;
        result = visit(spec, &k, &v, fn, ud, err);
        if (result != MK_OK) break;
    }
    mdb_cursor_close(cur);
    if (result == MK_SCAN_STOP) return MK_OK;
    if (result != MK_OK) return result;
    if (rc != MDB_NOTFOUND) return mk_lmdb_error(rc, err, "scanning a collection");
    return MK_OK;
}
