/* Setters, and "setters then cast": what Mongoose's SchemaType#applySetters does to a value
 * before it is stored, used by documents, filters and updates alike.
 *
 * Order (Mongoose 8's SchemaType#_applySetters): a path keeps ONE list of setters and runs it
 * from the LAST entry to the first. The list is built in this order:
 *   1. the path options, in the order they are written: `lowercase`, `uppercase`, `trim`
 *      (String paths only, and only when truthy) and a named `set: 'fn'`, each appending
 *      its setter as Mongoose's SchemaType constructor does;
 *   2. setters added later with mk_schema_path_setter (schema.path(x).set(fn)), in
 *      registration order.
 * So the most recently added C setter runs first, and `{ lowercase: true, trim: true }` trims
 * before lowercasing. The registry cannot tell whether a `set: 'name'` option was already
 * resolved; when the option is present its setter is taken to be the first one registered for
 * the path (mk_schema_resolve_named puts it there).
 *
 * Every setter sees the value the previous one returned, undefined included: Mongoose calls
 * setters for undefined too (`in` == NULL here), and a setter may turn a value into undefined
 * (a BSON_TYPE_UNDEFINED result, passed on as NULL). The built-in lowercase / uppercase / trim
 * first cast a non-string to String (a CastError when that fails), leave null, undefined and ''
 * alone, and follow JS's toLowerCase / toUpperCase (Unicode simple case mapping plus ß -> SS)
 * and trim (JS white space). */
#ifndef MK_ODM_SETTERS_H
#define MK_ODM_SETTERS_H

#include <bson/bson.h>
#include <stdbool.h>

#include <meerkat/error.h>
#include <meerkat/schema.h>

#include "odm/cast.h"

/* Runs the setters of `path` (owned by `owner`: for a path inside a sub-document, the child
 * schema, where its setters are registered under the relative name). `in` is borrowed, NULL =
 * undefined. `ctx` may be NULL (a query context without document). *out always receives a new
 * value the caller destroys (BSON_TYPE_UNDEFINED for undefined). MK_OK, MK_ERR (a setter's
 * error, or the CastError of a built-in) or MK_ENOMEM. */
int mk_setters_apply(const mk_schema_t *owner, const mk_schema_path_t *path, const mk_fn_ctx_t *ctx,
                     const bson_value_t *in, bson_value_t *out, mk_error_t *err);

/* How mk_setters_cast reports and what it adds. A zeroed struct (or NULL) is the document form:
 * no model in CastError messages, unknown sub-document fields follow the child schema's
 * `strict`, no `_id`s added. */
typedef struct mk_setters_cast_opts {
    const char *model;    /* model name: CastErrors end with `for model "X"` (query form) */
    const char *err_path; /* path named in CastErrors; NULL: the path's name in its schema */
    bool has_strict;      /* true: `strict` below overrides the sub-schemas' own option */
    mk_strict_t strict;
    bool add_ids;    /* new sub-documents without `_id` get a fresh ObjectId first, as
                        Mongoose's sub-document constructor does when the child has an auto _id */
    bool query_form; /* SchemaType#castForQuery rather than #applySetters: a RegExp passes a
                        String path untouched, and single nested paths run their setters only
                        with the `runSetters` option */
} mk_setters_cast_opts_t;

/* Setters then cast, as SchemaType#applySetters (or #castForQuery with opts->query_form):
 *   scalars      setters, then mk_cast_value_at for the path's type (null stays null,
 *                undefined stays undefined)
 *   Mixed        setters only
 *   arrays       the array's setters on the whole value, a non-array wrapped in [value], then
 *                every element through the element type; a failing element is Mongoose's
 *                `Cast to [Number] failed for value "[ 1, 'x' ]" (type string) at path
 *                "nums.1" because of "CastError"`
 *   doc arrays   each object element cast field by field through the child schema (falsy
 *                elements kept as they are, other values a CastError to `embedded`)
 *   sub-docs     an object cast field by field through the child schema
 *   maps         each value through the map's value type
 * Fields of sub-documents keep their order; unknown ones follow `strict` (true: dropped,
 * false: kept, throw: StrictModeError `Field \`x\` is not in schema and strict mode is set to
 * throw.`). *out receives a new value the caller destroys. A scalar without setters costs one
 * cast and no other allocation. */
int mk_setters_cast(const mk_schema_t *owner, const mk_schema_path_t *path, const mk_fn_ctx_t *ctx,
                    const bson_value_t *in, const mk_setters_cast_opts_t *opts, bson_value_t *out,
                    mk_error_t *err);

/* The scalar cast type of a path kind; false for Mixed, arrays, sub-documents, maps, nested. */
bool mk_setters_cast_type(mk_schematype_t kind, mk_cast_type_t *out);

/* Casts every field of `doc` through `schema` as a (sub-)document: what mk_setters_cast does
 * for a sub-document, for a whole document (a replacement). Appends the fields to `out`. */
int mk_setters_cast_fields(const mk_schema_t *schema, const bson_t *doc, const mk_fn_ctx_t *ctx,
                           const mk_setters_cast_opts_t *opts, bson_t *out, mk_error_t *err);

/* ---- where a dotted path lands in a schema ---- */

typedef enum mk_loc_kind {
    MK_LOC_UNKNOWN = 0, /* no path of the schema, nor a prefix of it */
    MK_LOC_PATH,        /* a SchemaType: `owner`, `path` */
    MK_LOC_NESTED,      /* a plain nested object of `owner` */
    MK_LOC_CHILD,       /* inside a sub-document or document array: `owner` is the child
                           schema and `rest` the offset of the path within it */
    MK_LOC_OPAQUE,      /* below a path that has no sub-paths (Mixed, a String, `tags.foo`) */
} mk_loc_kind_t;

typedef struct mk_path_loc {
    mk_loc_kind_t kind;
    const mk_schema_t *owner;
    const mk_schema_path_t *path;  /* PATH: the SchemaType (an element type for "tags.0");
                                      CHILD, OPAQUE: the path the walk stopped at */
    const mk_schema_path_t *array; /* PATH reached through an array index: the array path,
                                      whose name Mongoose's element caster carries */
    bool element;                  /* PATH is one element of a document array ("comments.0") */
    size_t rest;                   /* CHILD: where the remaining path starts in `dotted` */
} mk_path_loc_t;

/* One level of lookup, as Mongoose's cast() does with schema.path(): the exact path, else the
 * longest prefix that is a SchemaType. Array components may be indexes or positional
 * operators ("0", "$", "$[]", "$[name]"). `dotted` is NUL-terminated. */
void mk_path_locate(const mk_schema_t *schema, const char *dotted, mk_path_loc_t *loc);
/* Follows CHILD results into the sub-schemas (Mongoose's schema._getSchema for updates):
 * the result is never CHILD; `owner` is the schema that owns what was found. */
void mk_path_locate_deep(const mk_schema_t *schema, const char *dotted, mk_path_loc_t *loc);

/* The name Mongoose's CastError carries for a located path: the array's name for elements. */
const char *mk_path_loc_name(const mk_path_loc_t *loc);

/* ---- errors shared by the casting code ---- */

/* A CastError with Mongoose's message:
 *   Cast to <kind> failed for value "<inspect(v)>" (type <T>) at path "<path>"
 * then ` for model "<model>"` when model is set, else ` because of "<reason>"` when reason is
 * set. Returns MK_ERR. */
int mk_cast_error(mk_error_t *err, const char *kind, const bson_value_t *v, const char *path,
                  const char *model, const char *reason);

/* JS truthiness of a BSON value (undefined, null, false, 0, NaN, '' are falsy). */
bool mk_js_truthy(const bson_value_t *v);

/* A new BSON_TYPE_UNDEFINED / BSON_TYPE_NULL value. */
void mk_value_set_undefined(bson_value_t *v);
void mk_value_set_null(bson_value_t *v);
/* Moves a finished bson_t into *out as a document or array value (the bson_t is destroyed). */
void mk_value_take_bson(bson_t *b, bool array, bson_value_t *out);

#endif
