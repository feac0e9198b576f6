/* Index bounds: which ranges of an index a filter needs (MongoDB's IndexBoundsBuilder rules).
 *
 * An index on { f1: d1, ..., fn: dn } stores per document the keys enc(v1) || ... || enc(vn)
 * (engine/keyenc.h, descending fields inverted), one per array element when an indexed path
 * holds an array (multikey), null for a missing field. mk_bounds_build turns a filter into
 *
 *   - per field, an ordered list of value intervals, which is what explain shows
 *     ({ age: [ "[18, inf.0]" ] }), and
 *   - the byte ranges of index keys to scan: a cartesian product of the leading fields that
 *     have point intervals (equality, $in) and of the intervals of the next field, as ranges of
 *     whole keys. Fields after that first non-point field are not part of the ranges.
 *
 * The ranges contain every key of every document that can match: the caller fetches each
 * document found and re-applies the whole filter, unless the bounds say they are exact. Bounds
 * follow MongoDB's rules: type bracketing ({ $gt: 5 } is (5, inf.0], numbers only), null
 * equality also scans undefined (the key of an empty array), equality to an array also scans
 * its first element, an anchored case-sensitive regex /^abc/ scans ["abc", "abd") and the regex
 * value itself (other regexes scan every string), $ne/$nin/$not scan the complement, $exists,
 * $type scan their type classes. On a multikey index two conditions on one field are only
 * intersected under one $elemMatch (else one of them is used), and two fields whose paths share
 * a prefix ('a.b', 'a.c') are only compounded under an $elemMatch on that prefix. Top-level $or,
 * $nor, $expr, $size, $mod, $bits* and the like give no bounds (they are left to the filter).
 *
 * The filter is expected to have passed mk_matcher_compile: malformed operators are not
 * diagnosed here, they just give no bounds. A sparse index must not be used for a filter that
 * matches missing fields (null equality, $exists: false, $ne...): that is the planner's call. */
#ifndef MK_ENGINE_BOUNDS_H
#define MK_ENGINE_BOUNDS_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <meerkat/error.h>

/* MongoDB's cap on the intervals of a compound product (internalQueryMaxScansToExplode): past
 * it the trailing fields are dropped from the product, which widens the ranges. A single field
 * may have any number of intervals ($in with 1000 values scans 1000 points). */
#define MK_BOUNDS_MAX_PRODUCT 200

/* One range of index keys, as byte strings compared with memcmp. A stored index entry belongs
 * to the range when its key bytes K — the encoded key, possibly shortened by mk_keyenc_fit, and
 * possibly followed by any suffix such as the encoded _id — satisfy lo <= K (lo < K when
 * !lo_incl) and K < hi (K <= hi when hi_incl). mk_bounds_build always gives lo_incl = true and
 * hi_incl = false, so a scan positions at lo (MDB_SET_RANGE) and stops at the first key >= hi. */
typedef struct mk_interval {
    const uint8_t *lo;
    size_t lo_len;
    bool lo_incl;
    const uint8_t *hi;
    size_t hi_len;
    bool hi_incl;
} mk_interval_t;

typedef struct mk_bounds mk_bounds_t;

/* Builds the bounds of the index with `nfields` fields (paths[i] a dotted path, dirs[i] 1 or -1)
 * for `filter`. `multikey`: some document made the index multikey.
 * Returns MK_OK and sets *out to the bounds (caller destroys), or to NULL when the index cannot
 * help: no condition of the filter bears on its first field. *exact (optional) is set to true
 * only when every document with a key in the ranges matches the filter, so the filter need not
 * be re-applied: a non-multikey index, a filter that is a conjunction of exact conditions on the
 * fields the ranges enforce, no decimal128 rounding at play (keyenc shares one key between
 * numbers that differ beyond double precision, so equality on a number is never exact).
 * Errors: BadValue for bad arguments (no fields, more than 32, a direction other than 1/-1,
 * an empty path), a filter nested more than 100 levels; out of memory. */
int mk_bounds_build(const bson_t *filter, const char *const *paths, const int *dirs, size_t nfields,
                    bool multikey, mk_bounds_t **out, bool *exact, mk_error_t *err);

/* The ranges, sorted by lo and disjoint. Zero ranges: no document can match. */
size_t mk_bounds_count(const mk_bounds_t *b);
/* Borrowed; valid until mk_bounds_destroy. */
const mk_interval_t *mk_bounds_get(const mk_bounds_t *b, size_t i);

/* True when the ranges cover the whole index (the index helps only with sort order). */
bool mk_bounds_is_full(const mk_bounds_t *b);

/* Appends explain's indexBounds fields to `out` (an initialized document, usually the one begun
 * for "indexBounds"): per index field, its path and an array of interval strings in index
 * order, as MongoDB writes them:
 *   { email: [ "[\"a@b.c\", \"a@b.c\"]" ], age: [ "[18, inf.0]" ], x: [ "[MinKey, MaxKey]" ] }
 * "[" / "]" include an end, "(" / ")" exclude it; descending fields list their intervals from
 * high to low ("[MaxKey, MinKey]", "(5, -inf.0]"). Every field shows the bounds its conditions
 * give, as in MongoDB, even a field after a range or past MK_BOUNDS_MAX_PRODUCT that the byte
 * ranges leave free (the filter then checks it). Returns MK_OK, or MK_ERR when out gets too
 * large. */
int mk_bounds_explain(const mk_bounds_t *b, bson_t *out, mk_error_t *err);

void mk_bounds_destroy(mk_bounds_t *b);

#endif
