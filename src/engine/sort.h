/* Sort order: a sort specification ({ age: -1, name: 1 }) compiled once, sort keys extracted
 * from raw BSON, and a blocking sorter with a top-k mode for sorts with a limit.
 *
 * Semantics are MongoDB's: values compare in MongoDB's type order (bson/value.h); a missing
 * field sorts as null; an array contributes its smallest element to an ascending sort and its
 * largest to a descending one, and an empty array sorts below null (so before a missing field
 * ascending, after it descending). Dotted paths reach into arrays
 * of documents (each element lacking the field contributes null). A compound sort picks the
 * best key an index over the sort fields would give the document, so fields inside the same
 * array are taken from the same element, and two different arrays on two sort paths are an
 * error (BadValue "cannot sort with keys that are parallel arrays"), as in MongoDB. Ties keep
 * the order in which documents were added, so results are deterministic. */
#ifndef MK_ENGINE_SORT_H
#define MK_ENGINE_SORT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <meerkat/error.h>

#define MK_SORT_MAX_KEYS 32

typedef struct mk_sort mk_sort_t;

/* Compiles a sort specification. NULL or {} gives a sort with no keys (every document ties:
 * find's "no sort"; the $sort stage rejects it itself with 15976). Errors as MongoDB:
 * 15974 "Illegal key in $sort specification: a: \"asc\"" (not a number), 15975 "$sort key
 * ordering must be 1 (for ascending) or -1 (for descending)", 17312 / 31138 for objects other
 * than a valid { $meta: ... }, FieldPath errors (40352, 15998, 16410, 40353), 7472500 for a
 * duplicate key, 13103 "too many compound keys" past 32 keys. { $meta: 'textScore' } (and the
 * other $meta sorts) fail with BadValue "... is not supported yet". */
mk_sort_t *mk_sort_compile(const bson_t *spec, mk_error_t *err);
void mk_sort_destroy(mk_sort_t *s);

size_t mk_sort_nkeys(const mk_sort_t *s);
/* The dotted path and direction (1 or -1) of key i, for the planner. */
const char *mk_sort_path(const mk_sort_t *s, size_t i);
int mk_sort_direction(const mk_sort_t *s, size_t i);

/* Fills keys[0 .. nkeys) with the sort key of the document `data` (`len` bytes). The values
 * borrow from `data` (valid while it is) or are constant null / undefined (an empty array);
 * nothing is allocated. Fails on invalid BSON and on parallel arrays. */
int mk_sort_key_raw(const mk_sort_t *s, const uint8_t *data, uint32_t len, bson_value_t *keys,
                    mk_error_t *err);
int mk_sort_key(const mk_sort_t *s, const bson_t *doc, bson_value_t *keys, mk_error_t *err);

/* <0, 0, >0: a sorts before, with, after b (directions applied). */
int mk_sort_cmp(const mk_sort_t *s, const bson_value_t *ka, const bson_value_t *kb);

/* ---- blocking sort ----
 * Usage: mk_sorter_new; mk_sorter_add for each matching document in scan order;
 * mk_sorter_finish; then read mk_sorter_get(0 .. mk_sorter_count - 1).
 * With `limit` > 0 (pass skip + limit) only the best `limit` documents are kept (a bounded
 * heap, so memory stays O(limit)). With `max_bytes` > 0, holding more than that many bytes
 * fails with MongoDB's 292 QueryExceededMemoryLimitNoDiskUseAllowed ("Sort exceeded memory
 * limit of N bytes, but did not opt in to external sorting."). */
typedef struct mk_sorter mk_sorter_t;

mk_sorter_t *mk_sorter_new(const mk_sort_t *s, uint64_t limit, size_t max_bytes, mk_error_t *err);
void mk_sorter_destroy(mk_sorter_t *st);
/* Copies `doc`; `tag` is the caller's (e.g. the record id or the matcher's position for a
 * positional projection) and is handed back by mk_sorter_get. */
int mk_sorter_add(mk_sorter_t *st, const bson_t *doc, uint64_t tag, mk_error_t *err);
/* Sorts what was added. Adding after finishing is an error. */
void mk_sorter_finish(mk_sorter_t *st);
size_t mk_sorter_count(const mk_sorter_t *st);
/* Document i in sorted order, as a read-only view valid until mk_sorter_destroy; *tag (may be
 * NULL) receives its tag. False past the end. */
bool mk_sorter_get(const mk_sorter_t *st, size_t i, bson_t *view, uint64_t *tag);

#endif
