/* Reading the documents of a collection that match a filter: a point lookup when the filter
 * pins `_id` to one value, otherwise a scan of the record table in _id order. The planner of
 * "The embedded engine, part 2" replaces the choice made here. */
#ifndef MK_ENGINE_SCAN_H
#define MK_ENGINE_SCAN_H

#include "engine/internal.h"
#include "engine/matcher.h"

/* Called for each matching document (borrowed, valid until the callback returns; `key` is the
 * record key). Return MK_OK to continue, MK_SCAN_STOP to stop, or an error code. */
#define MK_SCAN_STOP 1
typedef int (*mk_scan_fn)(void *ud, const bson_t *doc, const MDB_val *key,
                          const mk_match_details_t *md);

typedef struct mk_scan_spec {
    const mk_matcher_t *matcher; /* NULL matches everything */
    const bson_value_t *id_eq;   /* when set, only the document with this _id is considered */
    const MDB_val *after;        /* resume strictly after this record key (NULL: start) */
    bool want_details;           /* compute positional match details */
    int64_t *examined;           /* when set, counts the documents examined */
    int64_t work_limit;          /* stop after examining this many documents (0: no limit) */
} mk_scan_spec_t;

int mk_scan(MDB_txn *txn, mk_coll_t *c, const mk_scan_spec_t *spec, mk_scan_fn fn, void *ud,
            mk_error_t *err);

/* When the filter field `it` stands on pins its path to one value ({ a: 5 } or
 * { a: { $eq: 5 } }, not a document, array, regex, null or MinKey/MaxKey), positions *value
 * (may be NULL; borrowed) on it and returns true. */
bool mk_filter_point(bson_iter_t *it, bson_value_t *value);

/* When `filter` is exactly { _id: <value> } or { _id: { $eq: <value> } } with a value that is
 * not a document with operators, an array, a regex or null, positions *id on it (borrowed
 * from filter) and returns true. */
bool mk_filter_id_eq(const bson_t *filter, bson_value_t *id);

#endif
