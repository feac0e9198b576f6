/* Aggregation expressions: { $add: ['$price', '$tax'] }, '$a.b', { $cond: [...] } ...
 *
 * An expression is compiled once and evaluated against documents. Semantics are MongoDB's
 * aggregation semantics, which differ from the query matcher's: comparisons use the full BSON
 * order with no type bracketing, a missing field is "missing" (it sorts with undefined, below
 * null), and a field path through an array of documents yields an array ('$a.b' on
 * a: [{b: 1}, {b: 2}] is [1, 2]).
 *
 * Supported now: literals and $literal, field paths, $$ROOT, $$CURRENT, $$REMOVE, expression
 * objects and arrays, $eq $ne $gt $gte $lt $lte $cmp, $and $or $not, $add $subtract $multiply
 * $divide $mod $abs, $size, $in, $ifNull, $cond. Operators are rows of a table in expr.c; an
 * unknown one fails to compile with "Unrecognized expression '$foo'" (code 168). */
#ifndef MK_ENGINE_EXPR_H
#define MK_ENGINE_EXPR_H

#include <bson/bson.h>
#include <stdbool.h>

#include <meerkat/error.h>

typedef struct mk_expr mk_expr_t;

/* Compiles `spec` (any BSON value; it is copied, so it need not outlive the expression). */
mk_expr_t *mk_expr_compile(const bson_value_t *spec, mk_error_t *err);
void mk_expr_destroy(mk_expr_t *e);

/* Evaluates `e` with $$ROOT = $$CURRENT = `root`. On MK_OK, `out` receives an owned value
 * (free with bson_value_destroy); "missing" is a value of type BSON_TYPE_EOD. */
int mk_expr_eval(const mk_expr_t *e, const bson_t *root, bson_value_t *out, mk_error_t *err);

/* Aggregation truthiness: false, null, undefined, missing and numeric zero are false. */
bool mk_expr_truthy(const bson_value_t *v);

/* Aggregation order: MongoDB's BSON order, with missing (BSON_TYPE_EOD) equal to undefined and
 * below null. */
int mk_expr_value_cmp(const bson_value_t *a, const bson_value_t *b);

#endif
