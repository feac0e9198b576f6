/* Casting query filters and updates through a schema, as Mongoose 8's lib/cast.js and
 * lib/helpers/query/castUpdate.js do.
 *
 * Errors (err->kind, message):
 *   CastError        `Cast to Number failed for value "fail" (type string) at path "age" for
 *                    model "Character"` (filters name the model; updates do not, as in
 *                    Mongoose, whose update CastErrors never get setModel())
 *   StrictModeError  `Path "x" is not in schema and strictQuery is 'throw'.` (filters)
 *                    `Path "x" is not in schema, strict mode is \`true\`, and upsert is \`true\`.`
 *                    (filters of upserts, strict true)
 *                    `Field \`x\` is not in schema and strict mode is set to throw.` (strict
 *                    'throw': updates, and filters of upserts)
 *                    `Field x is immutable and strict = 'throw'` (updates)
 *   Error            `Can't use $foo with String.` (also Date, Array, Buffer, UUID; ObjectId,
 *                    Decimal128, sub-documents and maps say `Can't use $foo`; Number paths give
 *                    a CastError to `number` instead; Boolean, BigInt, Int32 and Double cast
 *                    the operand as a value), `$type parameter must be number or string`,
 *                    `Must have a string or function for $where`,
 *                    `Query filter must be an object, got an array `,
 *                    `Invalid atomic update value for $inc. Expected an object, received number`
 *   TypeError        `conditional $or requires an array` (under an array path)
 *   AssertionError   `$size` (and `$position`) values that are not numbers, with Node's
 *                    message `The expression evaluated to a falsy value:\n\n
 * assert.ok(!isNaN(val))\n` BadValue         geospatial operators ($near, $nearSphere, $geoWithin,
 * $within, $geoIntersects, $minDistance, $maxDistance): not supported When several values fail, the
 * one Mongoose reports is reported: Mongoose walks the keys of an object from the last to the first
 * (and the elements of $and/$or/$nor and $in arrays from the first), stopping at the first failure.
 *
 * Setters run where Mongoose runs them: on equality values, $eq, $ne, $in, $nin, $all (and
 * $gt/$gte/$lt/$lte/$not on String paths); not on $gt... of other types, $regex, $options,
 * $mod. Update values under $set, $setOnInsert, $push, $addToSet, $inc, $min, $max, $mul,
 * $pull and $pullAll go through the setters too. */
#ifndef MK_ODM_CAST_QUERY_H
#define MK_ODM_CAST_QUERY_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include <meerkat/error.h>
#include <meerkat/schema.h>

typedef struct mk_cast_filter_opts {
    /* strictQuery: the query's option when has_strict_query, else the schema's `strictQuery`
     * when its options name it, else false (Mongoose 8's default). Unknown paths are kept
     * (false), dropped (true) or an error (throw). */
    bool has_strict_query;
    mk_strict_t strict_query;
    /* With upsert, unknown paths are an error when `strict` (the query's option when
     * has_strict, else the schema's) is true or throw: the filter may become the document. */
    bool upsert;
    bool has_strict;
    mk_strict_t strict;
    /* sanitizeFilter: a value that is an object with `$` keys (other than a lone $eq) is
     * wrapped in { $eq: value } before casting, also inside $and/$or/$nor and nested objects,
     * so user input cannot inject operators. */
    bool sanitize_filter;
    const mk_fn_ctx_t *ctx; /* what setters see (NULL: nothing) */
} mk_cast_filter_opts_t;

/* Casts `filter` into `out` (initialised, empty; filled even on failure, the caller destroys
 * it either way). `model_name` names the model in CastErrors. opts may be NULL.
 *   - each path value through its SchemaType (see above for operators); `_id` strings become
 *     ObjectIds; dates come from ISO strings and numbers; a RegExp passes a String path
 *   - arrays: a scalar against an array path casts to the element type, an array casts
 *     element-wise; an array against a non-array path becomes { $in: [...] }
 *   - $elemMatch into document arrays casts through the child schema; into primitive arrays
 *     its operators cast to the element type
 *   - dotted paths into sub-documents and document arrays ("comments.text",
 *     "comments.0.text") use the child schema; a plain nested object on a nested path is not
 *     cast (as in Mongoose); a path below a Mixed or primitive path passes unchanged
 *   - $and/$or/$nor recursively; $where must be a string or code; $expr and $text pass
 *     unchanged. */
int mk_cast_filter(const mk_schema_t *s, const char *model_name, const bson_t *filter,
                   const mk_cast_filter_opts_t *opts, bson_t *out, mk_error_t *err);

typedef struct mk_cast_update_opts {
    bool has_strict; /* strict: this when has_strict, else the schema's option */
    mk_strict_t strict;
    bool upsert;    /* $set on immutable paths moves to $setOnInsert, as Mongoose does */
    bool overwrite; /* the update is a replacement document, cast as a whole document */
    /* Timestamps (Mongoose's applyTimestampsToUpdate), names or NULL: `$set.<updated_at> = now`
     * (unless $currentDate sets it; a value the update gives is overwritten) and
     * `$setOnInsert.<created_at> = now` (always: it only matters when a document is inserted;
     * a createdAt the update gives is removed). A replacement gets both unless it has them. */
    const char *created_at;
    const char *updated_at;
    int64_t now; /* ms since the epoch */
} mk_cast_update_opts_t;

/* Casts `update` into `out` (initialised, empty; the caller destroys it). A plain object (no
 * update operator keys) is wrapped in $set; keys that are not update operators are merged
 * into $set. `ctx` is what setters see (doc NULL, query set; may be NULL). `model_name` is
 * accepted for symmetry; Mongoose's update errors do not name the model.
 *   $set $setOnInsert   setters then cast to the path type; arrays and document arrays
 *                       whole; sub-documents as documents (new ones get their auto _id);
 *                       nested objects walked path by path
 *   $push $addToSet     elements cast to the element type; an array value becomes
 *                       { $each: [...] }; $each cast, $slice to an integer, $sort kept,
 *                       $position to a number
 *   $inc                cast through the path's type; null, or a non-number on a path not in
 *                       the schema, is a CastError to `number`
 *   $min $max $mul      cast through the path's type
 *   $pull               document arrays: cast as a filter of the child schema; arrays: the
 *                       values (and operator operands) cast to the element type
 *   $pullAll            elements cast to the element type
 *   $pop                to a number
 *   $unset $rename      values kept; the paths follow `strict`
 *   $currentDate        true/false, or { $type: ... }
 *   $bit                kept
 * Positional paths into arrays ("comments.0.text", "comments.$.text", "comments.$[].text",
 * "comments.$[elem].text") use the child schema. Unknown paths follow `strict`. Immutable
 * paths are removed (strict true), kept (strict false) or an error (throw), except under
 * $setOnInsert. Operators left empty are dropped; an empty result is allowed. */
int mk_cast_update(const mk_schema_t *s, const char *model_name, const bson_t *update,
                   const mk_cast_update_opts_t *opts, const mk_fn_ctx_t *ctx, bson_t *out,
                   mk_error_t *err);

/* ---- what a cast update touches (for update validators) ---- */

typedef struct mk_update_path {
    const char *op;     /* "$set", "$push", ...: borrowed from the cast update */
    char *path;         /* full dotted path as written, nested objects flattened ("profile.bio") */
    bson_value_t value; /* borrowed view into the cast update */
} mk_update_path_t;

typedef struct mk_update_paths {
    mk_update_path_t *items;
    size_t count, cap;
} mk_update_paths_t;

/* Lists the (op, path, value) triples of a cast update in order. A value that is a plain
 * object is flattened into its fields when its path is a nested object or not in the schema
 * (as Mongoose's update validators flatten updates); sub-documents, Mixed values, arrays and
 * modifier objects ({ $each: [...] }) are one entry. `out` must be zeroed; free it with
 * mk_update_paths_destroy. The views stay valid as long as cast_update is unchanged. */
int mk_update_touched_paths(const mk_schema_t *s, const bson_t *cast_update, mk_update_paths_t *out,
                            mk_error_t *err);
void mk_update_paths_destroy(mk_update_paths_t *paths);

/* ---- shared by cast_filter.c and cast_update.c ---- */

#include "odm/setters.h"

typedef struct mk_qcast {
    const mk_schema_t *root;            /* the model's schema (a Query's `schema`) */
    const char *model;                  /* model name in CastErrors, or NULL */
    const mk_fn_ctx_t *fn;              /* what setters see */
    const mk_cast_filter_opts_t *fopts; /* never NULL */
    mk_error_t *err;
    const void *root_plan; /* mk_cast_plan(root), or NULL */
} mk_qcast_t;

/* SchemaType#castForQuery(op, v) for the located path (op NULL: a plain value). */
int mk_cast_for_query(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op,
                      const bson_value_t *v, bson_value_t *out);
/* The same, written to `w` as one element `key`: an undefined result is written as BSON
 * undefined (the caller decides: null in filters, dropped in updates). Nothing is written when
 * it fails. */
int mk_cast_for_query_put(mk_qcast_t *q, const mk_path_loc_t *loc, const char *op,
                          const bson_value_t *v, mk_bw_t *w, const char *key, size_t keylen);
/* lib/cast.js over `filter` with schema `s` (NULL: nothing is cast), appended to `w`. */
int mk_cast_filter_into(mk_qcast_t *q, const mk_schema_t *s, const bson_t *filter, mk_bw_t *w);
/* lib/cast/number.js: null and undefined kept, else a number or Node's AssertionError. */
int mk_cast_number_or_assert(mk_error_t *err, const bson_value_t *v, bson_value_t *out);
/* Mongoose's isOperator: starts with `$` and is not $ref, $id or $db. */
bool mk_is_query_operator(const char *key);

#endif
