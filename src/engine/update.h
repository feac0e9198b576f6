/* Updates: MongoDB's update language, compiled once and applied to documents.
 *
 * An update is either an operator document ({ $set: {...}, $inc: {...} }) or a replacement
 * document (no `$` keys; `{}` is an empty replacement). Semantics, error codes and messages are
 * MongoDB's (5.0 and later):
 *
 *   $set $unset $setOnInsert $inc $mul $min $max $rename $currentDate $bit
 *   $push ($each $slice $sort $position) $addToSet ($each) $pop $pull $pullAll
 *   positional `$`, `$[]`, `$[<id>]` with arrayFilters, nested combinations of them.
 *
 * Fields are processed in lexicographic order of their names (numeric names in numeric order),
 * so new fields are appended in that order; existing fields keep their place. An operator with
 * an empty operand ({ $set: {} }) is a no-op, as since MongoDB 5.0. Paths that conflict
 * ({ $set: { a: 1, 'a.b': 2 } }) fail with ConflictingUpdateOperators (40) at compile time.
 *
 * Not supported: pipeline updates (a BSON array: the caller must reject it with
 * "pipeline-style updates are not supported yet", since a bson_t cannot tell), collations. */
#ifndef MK_ENGINE_UPDATE_H
#define MK_ENGINE_UPDATE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include <meerkat/error.h>

#include "engine/matcher.h"

typedef struct mk_update mk_update_t;

/* Compiles `update` (copied: it need not outlive the result). A compiled update is immutable:
 * it may be applied any number of times, from several threads at once. `array_filters` is NULL or a
 * BSON array of filter documents ({ 'elem.grade': { $gte: 85 } }). Returns NULL with err filled on
 * parse errors: unknown modifiers (FailedToParse 9), bad operands, conflicting paths (40),
 * array filters missing for an identifier / not used (2 / 9), ... */
mk_update_t *mk_update_compile(const bson_t *update, const bson_t *array_filters, mk_error_t *err);
void mk_update_destroy(mk_update_t *u);

/* True for a replacement document (no update operators). */
bool mk_update_is_replacement(const mk_update_t *u);
/* True when the update uses the positional `$` operator (the caller must then pass the
 * matcher's position to mk_update_apply). */
bool mk_update_is_positional(const mk_update_t *u);

/* Applies `u` to `doc`. `out` (initialised, empty, not static) receives the new document;
 * *changed tells whether it differs from `doc` byte for byte (what nModified counts: a $set to
 * the same value, $inc by 0, $addToSet of a present element, $pull of nothing change nothing).
 * `position`: the matcher's details for the positional `$` (NULL or !has_position when none:
 * then `$` fails with BadValue "The positional operator did not find the match needed from the
 * query."). `inserting`: `doc` is an upsert's seed ($setOnInsert applies). `now_ms`: the time
 * for $currentDate, so that one operation uses one clock.
 *
 * Output checks: nesting deeper than MK_MAX_DEPTH fails (Overflow 15), a result larger than
 * MK_MAX_BSON_SIZE fails (17419 "Resulting document after update is larger than 16777216"),
 * `_id` can never change (ImmutableField 66; in an upsert it may be set when the seed has none),
 * an `_id` is moved to the front. On error `out` is left in an unspecified state (still to be
 * destroyed by the caller). */
int mk_update_apply(const mk_update_t *u, const bson_t *doc, const mk_match_details_t *position,
                    bool inserting, int64_t now_ms, bson_t *out, bool *changed, mk_error_t *err);

/* The seed of an upsert's new document from a filter's equality conditions, as MongoDB builds it:
 * top-level `{a: 1}`, `{a: {$eq: 1}}`, a one-element `$in`, `$all` elements, dotted paths
 * (`{'a.b': 1}` -> `{a: {b: 1}}`), conditions inside `$and` and inside an `$or` of one clause.
 * Other operators, `$or`s of several clauses and `$nor` contribute nothing. Paths matched twice
 * or nested in one another fail with NotSingleValueField (54) "cannot infer query fields to set,
 * path 'a' is matched twice". `out` is initialised and empty. */
int mk_update_upsert_seed(const bson_t *filter, bson_t *out, mk_error_t *err);

/* The whole document an upsert inserts, as MongoDB produces it: the seed (only `_id` for a
 * replacement, whose other filter fields are not copied), the update applied with `inserting`,
 * `_id` moved first. No `_id` is generated when neither filter nor update gives one (the
 * caller's insert does that). `out` is initialised and empty. */
int mk_update_upsert_doc(const mk_update_t *u, const bson_t *filter, int64_t now_ms, bson_t *out,
                         mk_error_t *err);

#endif
