/* The query matcher: a filter document compiled once into a tree, evaluated on raw BSON.
 *
 * Semantics are MongoDB's: implicit array traversal, null matching missing fields, $elemMatch,
 * numeric path components, type bracketing of comparisons, etc. */
#ifndef MK_ENGINE_MATCHER_H
#define MK_ENGINE_MATCHER_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include <meerkat/error.h>

typedef struct mk_matcher mk_matcher_t;

/* What a successful match learned, for the positional `$` operator of updates and `.$`
 * projections: the index, in the first array traversed on the way to a matching value, of the
 * element that matched (MongoDB's "elemMatchKey"). */
typedef struct mk_match_details {
    bool has_position;
    uint32_t position;
} mk_match_details_t;

/* Compiles `filter`. Errors (code BadValue 2 unless said otherwise) name the problem:
 * "unknown operator: $foo", "$in needs an array", "$size needs a number", ... Operators not
 * supported yet ($where, $text, geo, $jsonSchema) fail with a message naming them. */
mk_matcher_t *mk_matcher_compile(const bson_t *filter, mk_error_t *err);
void mk_matcher_destroy(mk_matcher_t *m);

/* True when `doc` matches. `details` may be NULL. */
bool mk_matcher_match(const mk_matcher_t *m, const bson_t *doc, mk_match_details_t *details);

/* Matches the single value `v` as if it were the field `name` of a document: { name: v }.
 * Used for $pull conditions, arrayFilters and $elemMatch projections. */
bool mk_matcher_match_value(const mk_matcher_t *m, const char *name, const bson_value_t *v);

/* True when the filter is empty ({}), i.e. it matches every document. */
bool mk_matcher_is_empty(const mk_matcher_t *m);

/* Like mk_matcher_match, but reports evaluation errors instead of treating them as "no match"
 * (only $expr can fail at match time, e.g. "can't $divide by zero"). Returns 1 (match),
 * 0 (no match) or MK_ERR with err filled. */
int mk_matcher_match_checked(const mk_matcher_t *m, const bson_t *doc, mk_match_details_t *details,
                             mk_error_t *err);

#endif
