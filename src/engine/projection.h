/* Find projections: a projection document compiled once into a tree, applied to raw BSON.
 *
 * Semantics are MongoDB's (4.4 and later, as MongoDB 8):
 * - inclusion { a: 1, 'b.c': true } or exclusion { a: 0 }; `_id` is included unless excluded,
 *   and may be excluded from an inclusion or included in an exclusion; mixing is an error
 *   (31253 "Cannot do inclusion on field b in exclusion projection", 31254 the other way);
 * - dotted paths and nested projection documents ({ a: { b: 1 } } is { 'a.b': 1 }), through
 *   arrays of documents; path collisions are errors (31249, 31250);
 * - literal values ({ a: 'x' }, { a: [1, 2] }, { a: null }, { a: { $literal: 1 } }) are
 *   computed fields and make the projection an inclusion (31310 / 31252 in an exclusion);
 * - find-only operators: $slice (n, -n, [skip, limit]), $elemMatch (first matching element,
 *   top-level fields only) and the positional `.$` (the element the query matched);
 * - aggregation expressions ({ a: '$b.c' }, { a: { $add: ['$x', 1] } }) are computed fields too,
 *   evaluated by engine/expr against the whole document (a missing result omits the field);
 *   operators engine/expr does not evaluate yet, and $meta, fail with BadValue
 *   "projection expression $op is not supported yet";
 * - output fields keep the document's order; computed fields ($elemMatch, literals,
 *   expressions) follow the included fields of their level, in the projection's order.
 *
 * Applying does not modify a compiled projection; it is as shareable between threads as the
 * matcher of a $elemMatch inside it (see engine/matcher.h). */
#ifndef MK_ENGINE_PROJECTION_H
#define MK_ENGINE_PROJECTION_H

#include <bson/bson.h>
#include <stdbool.h>

#include <meerkat/error.h>

#include "engine/matcher.h"

typedef struct mk_projection mk_projection_t;

/* Compiles `spec` (NULL or {} is the identity). `filter` is the query the projection is used
 * with, needed only to validate a positional `.$` projection (MongoDB requires the query to
 * name the projected array: 31277 "Positional projection 'a.$' does not match the query
 * document."; with a NULL filter a positional projection fails with 51050). Returns NULL with
 * `err` filled on a bad spec. */
mk_projection_t *mk_projection_compile(const bson_t *spec, const bson_t *filter, mk_error_t *err);
void mk_projection_destroy(mk_projection_t *p);

/* Projects `doc` into `out` (an initialised, empty bson_t). `details` is what the query's
 * matcher learned about `doc` (mk_matcher_match), used by a positional projection; it may be
 * NULL when mk_projection_needs_details() is false. On error (e.g. 51246 "positional operator
 * '.$' couldn't find a matching element in the array") `out` is left empty. The command layer
 * prefixes MongoDB's "Executor error during find command :: caused by :: " itself. */
int mk_projection_apply(const mk_projection_t *p, const bson_t *doc,
                        const mk_match_details_t *details, bson_t *out, mk_error_t *err);

/* True for NULL / {}: documents pass through unchanged. */
bool mk_projection_is_identity(const mk_projection_t *p);
/* True for an inclusion projection (only named fields are returned), false for exclusion. */
bool mk_projection_is_inclusion(const mk_projection_t *p);
/* True when the projection has a positional `.$`, so apply needs the matcher's details. */
bool mk_projection_needs_details(const mk_projection_t *p);

#endif
