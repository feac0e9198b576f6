/* meerkat — relaxed JSON (mongo-shell syntax) to BSON, with bound `?` placeholders.
 *
 * Accepts what a Mongoose or mongosh user writes: unquoted keys, single or double quotes,
 * trailing commas, // and block comments, ObjectId('..'), ISODate('..'), new Date(ms|'iso'),
 * NumberInt, NumberLong, NumberDecimal, UUID('..'), BinData(t,'b64'), Timestamp(t,i),
 * /re/flags, MinKey, MaxKey, true/false/null/undefined, and canonical or relaxed Extended
 * JSON ({"$oid": ...}). Integer literals that fit int32 become int32, other integers int64,
 * everything else double.
 *
 * A `?` outside a string is a placeholder, filled in order from the typed arguments. A value
 * bound this way is data only: a bound string can never become an operator or a key. */
#ifndef MEERKAT_JSON_H
#define MEERKAT_JSON_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include <meerkat/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mk_arg_type {
    MK_ARG_END = 0, /* terminates an argument list */
    MK_ARG_STR,     /* NUL-terminated UTF-8 string (validated) */
    MK_ARG_I32,
    MK_ARG_I64,
    MK_ARG_F64,
    MK_ARG_BOOL,
    MK_ARG_OID,   /* const bson_oid_t * */
    MK_ARG_DATE,  /* milliseconds since the epoch */
    MK_ARG_DOC,   /* const bson_t *, embedded as a sub-document */
    MK_ARG_ARRAY, /* const bson_t * whose keys are "0", "1", ..., embedded as an array */
    MK_ARG_VALUE, /* const bson_value_t *, any type */
    MK_ARG_NULL,
} mk_arg_type_t;

typedef struct mk_arg {
    mk_arg_type_t type;
    union {
        const char *s;
        int32_t i32;
        int64_t i64;
        double f64;
        bool b;
        const bson_oid_t *oid;
        const bson_t *doc;
        const bson_value_t *value;
    } v;
} mk_arg_t;

#define MK_STR(x)   ((mk_arg_t){.type = MK_ARG_STR, .v.s = (x)})
#define MK_I32(x)   ((mk_arg_t){.type = MK_ARG_I32, .v.i32 = (x)})
#define MK_I64(x)   ((mk_arg_t){.type = MK_ARG_I64, .v.i64 = (x)})
#define MK_F64(x)   ((mk_arg_t){.type = MK_ARG_F64, .v.f64 = (x)})
#define MK_BOOL(x)  ((mk_arg_t){.type = MK_ARG_BOOL, .v.b = (x)})
#define MK_OID(x)   ((mk_arg_t){.type = MK_ARG_OID, .v.oid = (x)})
#define MK_DATE(x)  ((mk_arg_t){.type = MK_ARG_DATE, .v.i64 = (x)})
#define MK_DOC(x)   ((mk_arg_t){.type = MK_ARG_DOC, .v.doc = (x)})
#define MK_ARRAY(x) ((mk_arg_t){.type = MK_ARG_ARRAY, .v.doc = (x)})
#define MK_VALUE(x) ((mk_arg_t){.type = MK_ARG_VALUE, .v.value = (x)})
#define MK_NULL     ((mk_arg_t){.type = MK_ARG_NULL})
#define MK_END      ((mk_arg_t){.type = MK_ARG_END})

/* Builds an MK_END-terminated argument array from the macro arguments (possibly none). */
#define MK_ARGS(...) ((const mk_arg_t[]){__VA_ARGS__ __VA_OPT__(, ) MK_END})

/* Parses `len` bytes of text (a document `{...}` or, when is_array is not NULL, also an array
 * `[...]`, whose elements are stored under keys "0", "1", ...) into `out`, which must be an
 * initialised, empty bson_t. `args` is NULL or MK_END-terminated; the number of `?` must equal
 * the number of arguments. Errors (code FailedToParse) give line and column:
 *   "line 1, column 9: expected ':' after key". On failure `out` is left empty. */
int mk_json_parse_into(bson_t *out, const char *text, size_t len, const mk_arg_t *args,
                       bool *is_array, mk_error_t *err);

/* Convenience: a new bson_t (free with bson_destroy) or NULL. Text is NUL-terminated. */
bson_t *mk_json_parse(const char *text, const mk_arg_t *args, mk_error_t *err);

/* mk_bson(err, "{ a: ?, b: ? }", MK_I32(1), MK_STR("x")) -> bson_t * or NULL */
#define mk_bson(err, text, ...) mk_json_parse((text), MK_ARGS(__VA_ARGS__), (err))

/* Relaxed Extended JSON text of a document (as mongosh prints it); free with bson_free. */
char *mk_json_from_bson(const bson_t *doc);

#ifdef __cplusplus
}
#endif
#endif
