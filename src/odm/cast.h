/* Casting one value to a SchemaType, as Mongoose 8 does (its lib/cast and lib/schema files).
 *
 * Values are BSON values seen the way the Node driver hands them to Mongoose: int32, int64
 * and double are JS numbers, binData is a Buffer, a document is a plain Object. null and
 * undefined pass through as null for every type; a value that cannot be cast gives a CastError
 * with Mongoose's message:
 *   Cast to Number failed for value "fail" (type string) at path "age" for model "Character"
 *
 * Results (what is stored):
 *   STRING     utf8             NUMBER   int32 when integral and in range (not -0), else double
 *   BOOLEAN    bool             DATE     date_time (ms)      OBJECTID  oid
 *   BUFFER     binary (subtype kept, 0 when built)           DECIMAL128 decimal128
 *   BIGINT     int64            INT32    int32               DOUBLE    double
 *   UUID       binary subtype 4 (16 bytes) */
#ifndef MK_ODM_CAST_H
#define MK_ODM_CAST_H

#include <bson/bson.h>
#include <meerkat/error.h>

typedef enum mk_cast_type {
    MK_CAST_STRING,
    MK_CAST_NUMBER,
    MK_CAST_BOOLEAN,
    MK_CAST_DATE,
    MK_CAST_OBJECTID,
    MK_CAST_BUFFER,
    MK_CAST_DECIMAL128,
    MK_CAST_BIGINT,
    MK_CAST_INT32,
    MK_CAST_DOUBLE,
    MK_CAST_UUID,
} mk_cast_type_t;

/* Casts `in` (borrowed) into `out` (owned: bson_value_destroy it) for the path `path` (may be
 * NULL: "") of model `model` (NULL in the document form, the model name in the query form).
 * MK_OK, or MK_ERR with err->kind "CastError" (out is then a null value), or MK_ENOMEM. */
int mk_cast_value_at(mk_cast_type_t to, const bson_value_t *in, const char *path, const char *model,
                     bson_value_t *out, mk_error_t *err);
static inline int mk_cast_value(mk_cast_type_t to, const bson_value_t *in, bson_value_t *out,
                                mk_error_t *err)
{
    return mk_cast_value_at(to, in, NULL, NULL, out, err);
}

/* The kind Mongoose prints after "Cast to " ("string", "Number", "Boolean", "date", ...). */
const char *mk_cast_kind(mk_cast_type_t to);

/* The value type Mongoose prints in "(type X)": "string", "number", "boolean", "Object",
 * "Array", "Date", "ObjectId", "Buffer", "Decimal128", "RegExp", "null", "undefined"... */
const char *mk_cast_js_type_name(const bson_value_t *v);

/* Appends the value as Node's util.inspect prints it on one line: 'fail', 42, { a: 1 },
 * [ 1, 2 ], new ObjectId('...'), 2020-01-01T00:00:00.000Z, <Buffer 61 62>. */
void mk_cast_inspect(bson_string_t *s, const bson_value_t *v);

/* JS's String(number): 42 -> "42", 0.1 -> "0.1", 1e21 -> "1e+21". buf holds 32 bytes. */
void mk_cast_js_number_string(double d, char buf[32]);

/* JS's Number(string) (StringToNumber): trims whitespace, "" -> 0, 0x/0o/0b, Infinity;
 * NaN when not a number. */
double mk_cast_js_string_number(const char *s, size_t len);

/* JS's Date.parse for the ISO-8601 forms (YYYY, YYYY-MM, YYYY-MM-DD, with THH:mm[:ss[.sss]]
 * and Z or +HH:mm; a space for T; date-only is UTC, date-time without an offset is local
 * time). false when the text is not one of those forms or out of range. */
bool mk_cast_parse_date(const char *s, size_t len, int64_t *ms);

#endif
