/* MongoDB's total order over BSON values, equality, and number helpers.
 *
 * Order of types (MongoDB's comparison/sort order):
 *   MinKey < null (undefined, missing) < numbers (int32, int64, double, decimal128) < symbol,
 *   string < object < array < binData < ObjectId < bool < date < timestamp < regex < MaxKey.
 * Numbers compare by value across types (exactly between int64 and double; decimal128 by its
 * value as a long double); NaN sorts below every other number and equals NaN; -0 equals 0.
 * Documents compare field by field (type rank, then field name, then value); so {a:1,b:2} and
 * {b:2,a:1} differ, as in MongoDB. Arrays compare element by element. */
#ifndef MK_BSON_VALUE_H
#define MK_BSON_VALUE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

/* MongoDB's truthiness of a value (aggregation, $exists, projection flags): missing, null,
 * undefined, false and numeric zero are false; NaN and everything else true. */
bool mk_value_truthy(const bson_value_t *v);

/* Canonical rank of a type in the order above (equal ranks compare by value). */
int mk_type_rank(bson_type_t t);

/* <0, 0, >0. Values borrowed from iterators (bson_iter_value) are fine: no copy is made. */
int mk_value_cmp(const bson_value_t *a, const bson_value_t *b);
static inline bool mk_value_equal(const bson_value_t *a, const bson_value_t *b)
{
    return mk_value_cmp(a, b) == 0;
}
/* Compares two BSON documents (or arrays) given as raw bytes, as above. */
int mk_doc_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen);
int mk_bson_cmp(const bson_t *a, const bson_t *b);

static inline bool mk_type_is_number(bson_type_t t)
{
    return t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE ||
           t == BSON_TYPE_DECIMAL128;
}
/* The value of a number as a double (decimal128 through its string form). */
double mk_value_as_double(const bson_value_t *v);
/* decimal128 -> long double (NaN for NaN, +-inf for infinities). */
long double mk_decimal_to_ld(const bson_decimal128_t *d);

/* Borrowed view of the element an iterator stands on (no copy). */
static inline const bson_value_t *mk_iter_value(bson_iter_t *it)
{
    return bson_iter_value(it);
}

/* Depth of nesting of a document (a flat document is 1). Stops counting past `limit`. */
int mk_bson_depth(const bson_t *doc, int limit);

/* A short name of the BSON type as used by $type and error messages ("double", "string",
 * "object", "array", "binData", "undefined", "objectId", "bool", "date", "null", "regex",
 * "dbPointer", "javascript", "symbol", "javascriptWithScope", "int", "timestamp", "long",
 * "decimal", "minKey", "maxKey"). */
const char *mk_type_name(bson_type_t t);

#endif
