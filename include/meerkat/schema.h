/* meerkat — schemas: Mongoose schema definitions parsed into a tree of paths.
 *
 * A definition is written exactly as a Mongoose user writes it, as relaxed JSON:
 *
 *   { email: { type: String, required: true, unique: true, lowercase: true },
 *     tags: [String], comments: [{ user: String, text: String }],
 *     profile: { avatar: String, bio: { type: String, maxlength: 500 } } }
 *
 * Bare type names (String, Number, Boolean, Date, ObjectId, Buffer, Mixed, Object, Array, Map,
 * Decimal128, BigInt, Int32, Double, UUID, with or without a `mongoose.`, `Schema.Types.`,
 * `mongoose.Schema.Types.` or `mongoose.Types.` prefix) and quoted ones ('String', 'string')
 * are both accepted. Functions cannot be written in text: getters, setters and validators are
 * referenced by registered name (`validate: 'isEmail'`) and kept as options for the layers
 * above. `default: Date.now` is kept as the string "Date.now" (on a Date path that means "the
 * current time"; see mk_schema_path_default_is_now).
 *
 * A schema is a flat list of paths in definition order, as Mongoose's `schema.paths`, plus
 * entries of type MK_TYPE_NESTED for plain nested objects (Mongoose keeps those in
 * `schema.nested`): `profile` (NESTED), `profile.avatar`, `profile.bio`. Sub-documents and
 * document arrays own a child schema. The implicit `_id` and the timestamps paths are added
 * after the defined ones; the version key path is added by mk_schema_add_version_key (Mongoose
 * adds it when the model is compiled).
 *
 * Schemas are immutable once a model uses them and may then be shared between threads. */
#ifndef MEERKAT_SCHEMA_H
#define MEERKAT_SCHEMA_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

#include <meerkat/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_schema mk_schema_t;
typedef struct mk_schema_path mk_schema_path_t;
typedef struct mk_doc mk_doc_t;     /* a document (meerkat/odm.h) */
typedef struct mk_model mk_model_t; /* a compiled model (meerkat/odm.h) */
typedef struct mk_query mk_query_t; /* a query (meerkat/query.h) */

typedef enum mk_schematype {
    MK_TYPE_STRING = 1,
    MK_TYPE_NUMBER,
    MK_TYPE_BOOLEAN,
    MK_TYPE_DATE,
    MK_TYPE_OBJECTID,
    MK_TYPE_BUFFER,
    MK_TYPE_MIXED,
    MK_TYPE_ARRAY,    /* array of a primitive (or of arrays): see mk_schema_path_element */
    MK_TYPE_DOCARRAY, /* array of sub-documents: see mk_schema_path_schema */
    MK_TYPE_SUBDOC,   /* single nested sub-document: see mk_schema_path_schema */
    MK_TYPE_MAP,      /* values typed by `of`: see mk_schema_path_element (NULL = Mixed) */
    MK_TYPE_DECIMAL128,
    MK_TYPE_BIGINT,
    MK_TYPE_INT32,
    MK_TYPE_DOUBLE,
    MK_TYPE_UUID,
    MK_TYPE_NESTED, /* plain nested object: its children are paths "parent.child" */
} mk_schematype_t;

typedef enum mk_strict {
    MK_STRICT_FALSE = 0, /* unknown paths are kept */
    MK_STRICT_TRUE,      /* unknown paths are silently dropped (the default) */
    MK_STRICT_THROW,     /* unknown paths are an error */
} mk_strict_t;

/* Schema options, with Mongoose's defaults. Strings are owned by the schema. */
typedef struct mk_schema_options {
    mk_strict_t strict;
    mk_strict_t strict_query;
    bool id_path;                  /* `_id` option: add the implicit _id path (true) */
    bool id_virtual;               /* `id` option: the `id` string virtual (true) */
    const char *version_key;       /* "__v", or NULL when versionKey: false */
    const char *collection;        /* NULL: derived from the model name */
    const char *type_key;          /* "type" */
    const char *created_at;        /* timestamps: path name or NULL (no timestamps: both NULL) */
    const char *updated_at;        /* timestamps: path name or NULL */
    const char *discriminator_key; /* "__t" */
    bool auto_index;               /* true */
    bool auto_create;              /* true */
    bool minimize;                 /* true */
    bool optimistic_concurrency;   /* false */
    bool validate_before_save;     /* true */
    bool select_populated_paths;   /* true */
    const bson_t *to_json;         /* toJSON option document, or NULL */
    const bson_t *to_object;       /* toObject option document, or NULL */
    const bson_t *raw;             /* every option as written */
} mk_schema_options_t;

/* Parses a definition and options (NULL or relaxed JSON text). Errors: FailedToParse from the
 * JSON parser; kind "TypeError" with Mongoose's message for a bad definition ("Invalid schema
 * configuration: `Foo` is not a valid type at path `x`. ..."); InvalidOptions for a bad option.
 * Free with mk_schema_destroy. */
mk_schema_t *mk_schema_parse(const char *definition, const char *options, mk_error_t *err);
/* Same from BSON (type names as strings). */
mk_schema_t *mk_schema_from_bson(const bson_t *definition, const bson_t *options, mk_error_t *err);
void mk_schema_destroy(mk_schema_t *schema);
/* A deep copy (Mongoose's schema.clone()). */
mk_schema_t *mk_schema_clone(const mk_schema_t *schema, mk_error_t *err);
/* A new schema with only the given paths (NULL-terminated), same types and options, and this
 * schema's options (Mongoose's schema.pick()). A nested path picks all its children. */
mk_schema_t *mk_schema_pick(const mk_schema_t *schema, const char *const *paths, mk_error_t *err);

/* Adds (or replaces) paths from a definition (Mongoose's schema.add()). */
int mk_schema_add(mk_schema_t *schema, const char *definition, mk_error_t *err);
int mk_schema_add_bson(mk_schema_t *schema, const bson_t *definition, mk_error_t *err);
/* Embeds a copy of `sub` at `path` as a single nested sub-document, or as a document array
 * when `array` is true; `options` is NULL or relaxed JSON path options ({ required: true }).
 * This is what `{ author: userSchema.pick([...]) }` and `{ comments: [commentSchema] }` do. */
int mk_schema_add_schema(mk_schema_t *schema, const char *path, const mk_schema_t *sub, bool array,
                         const char *options, mk_error_t *err);
/* Adds the version key path (a Number) when the versionKey option is on and the path is not
 * defined yet; the model layer calls it when compiling. Idempotent. */
int mk_schema_add_version_key(mk_schema_t *schema, mk_error_t *err);

/* Declares an index (Mongoose's schema.index(fields, options)); `options` may be NULL. */
int mk_schema_index(mk_schema_t *schema, const char *fields, const char *options, mk_error_t *err);
/* All index specs (Mongoose's schema.indexes()): path-level ones (index, unique, sparse,
 * expires, also those of sub-schemas with prefixed paths) in path order, then schema.index()
 * ones. A new BSON array (keys "0", "1", ...) of [keyPattern, options] pairs, or NULL. */
bson_t *mk_schema_indexes(const mk_schema_t *schema, mk_error_t *err);

const mk_schema_options_t *mk_schema_options(const mk_schema_t *schema);

/* Paths in definition order (NESTED entries included, before their children). */
size_t mk_schema_path_count(const mk_schema_t *schema);
const mk_schema_path_t *mk_schema_path_at(const mk_schema_t *schema, size_t i);
/* Looks a dotted path up, also inside sub-documents and document arrays ("comments.user",
 * "comments.0.user", "comments.$.user") and array elements ("tags.$", "tags.0"). Borrowed;
 * NULL when the schema does not define it. */
const mk_schema_path_t *mk_schema_path(const mk_schema_t *schema, const char *dotted);
/* The type of a path, 0 when the path is not in the schema. */
mk_schematype_t mk_schema_path_type(const mk_schema_t *schema, const char *dotted);

/* The full dotted name of a path within its schema. */
const char *mk_schema_path_name(const mk_schema_path_t *path);
mk_schematype_t mk_schema_path_kind(const mk_schema_path_t *path);
/* Options as written (required, default, enum, min, max, minlength, maxlength, match,
 * lowercase, uppercase, trim, select, immutable, alias, index, unique, sparse, expires, ref,
 * get, set, validate, ...), without the type key and `of`. Borrowed; never NULL. */
const bson_t *mk_schema_path_options(const mk_schema_path_t *path);
/* Finds one option; false when absent. */
bool mk_schema_path_option(const mk_schema_path_t *path, const char *name, bson_iter_t *out);
/* ARRAY: the element's SchemaType (its options include the element's own, such as ref in
 * `[{ type: ObjectId, ref: 'Person' }]`); MAP: the value type, NULL for Mixed values. */
const mk_schema_path_t *mk_schema_path_element(const mk_schema_path_t *path);
/* SUBDOC, DOCARRAY: the child schema. */
const mk_schema_t *mk_schema_path_schema(const mk_schema_path_t *path);
/* True when the path's default is `Date.now`. */
bool mk_schema_path_default_is_now(const mk_schema_path_t *path);

/* ---- C functions attached to a schema ----
 *
 * Mongoose's functions in a schema (setters, getters, defaults, validators, `required`
 * functions, virtuals, methods, statics, middleware, plugins, transforms) are C callbacks with
 * a `void *ud` here. Every registration is kept in order; mk_schema_clone, mk_schema_pick and
 * mk_schema_add_schema copy them (the `ud` pointers are shared, not copied). */

/* What a path function sees. `doc` is the document (`this` in Mongoose), NULL when the
 * function runs for a query (casting an update, update validators with context 'query'),
 * where `query` is set instead. `prior` is the current value for setters (NULL: undefined). */
typedef struct mk_fn_ctx {
    mk_doc_t *doc;
    mk_query_t *query;
    const char *path;
    const bson_value_t *prior;
} mk_fn_ctx_t;

/* Setter and getter: `in` is borrowed (NULL = undefined); write a new value into *out (a copy
 * the caller destroys with bson_value_destroy) and return MK_OK, or fail with an error. */
typedef int (*mk_setter_fn)(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out,
                            void *ud, mk_error_t *err);
typedef mk_setter_fn mk_getter_fn;
/* A default: write the value into *out (a copy the caller destroys). */
typedef int (*mk_default_fn)(const mk_fn_ctx_t *ctx, bson_value_t *out, void *ud, mk_error_t *err);
/* A validator: 1 valid, 0 invalid (the registered message is used), or MK_ERR with
 * err->message, which becomes the ValidatorError's message (as a thrown error in Mongoose). */
typedef int (*mk_validator_fn)(const mk_fn_ctx_t *ctx, const bson_value_t *value, void *ud,
                               mk_error_t *err);
/* `required` as a function: 1 when the path is required for this document. */
typedef int (*mk_required_fn)(const mk_fn_ctx_t *ctx, void *ud);

/* Path functions; `path` must be defined in the schema (array elements: "tags.$"). Setters
 * run before casting, in Mongoose's order: the setter list (built-in lowercase / uppercase /
 * trim and named `set` in the order the options are written, then setters added here) runs
 * from last to first, so a setter added here runs before the built-ins. `message` may be NULL
 * (Mongoose's default message "Validator failed for path `{PATH}` with value `{VALUE}`"); `type`
 * may be NULL ("user defined"). */
int mk_schema_path_setter(mk_schema_t *schema, const char *path, mk_setter_fn fn, void *ud,
                          mk_error_t *err);
int mk_schema_path_getter(mk_schema_t *schema, const char *path, mk_getter_fn fn, void *ud,
                          mk_error_t *err);
int mk_schema_path_default(mk_schema_t *schema, const char *path, mk_default_fn fn, void *ud,
                           mk_error_t *err);
int mk_schema_path_required(mk_schema_t *schema, const char *path, mk_required_fn fn, void *ud,
                            const char *message, mk_error_t *err);
int mk_schema_path_validator(mk_schema_t *schema, const char *path, mk_validator_fn fn, void *ud,
                             const char *message, const char *type, mk_error_t *err);

/* Named functions for schema text (`validate: 'isEmail'`, `set: 'slugify'`, `get: 'cents'`,
 * `default: 'newToken'`, `required: 'hasEmail'`; `validate` also takes a list and
 * `{ validator: 'name', message: '...' }`). A process-wide registry; names are resolved when
 * a model is compiled, and an unknown name is an error then. Registering a name again
 * replaces it. MK_OK or MK_ENOMEM. */
int mk_register_setter(const char *name, mk_setter_fn fn, void *ud);
int mk_register_getter(const char *name, mk_getter_fn fn, void *ud);
int mk_register_default(const char *name, mk_default_fn fn, void *ud);
int mk_register_validator(const char *name, mk_validator_fn fn, void *ud, const char *message);
int mk_register_required(const char *name, mk_required_fn fn, void *ud);

/* Virtuals: a getter writes a new value into *out (destroyed by the caller); a setter receives
 * the value. Either may be NULL: reading a virtual without getter gives undefined, setting one
 * without setter does nothing (as Mongoose). */
typedef int (*mk_virtual_get_fn)(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err);
typedef int (*mk_virtual_set_fn)(mk_doc_t *doc, const bson_value_t *value, void *ud,
                                 mk_error_t *err);
int mk_schema_virtual(mk_schema_t *schema, const char *name, mk_virtual_get_fn get,
                      mk_virtual_set_fn set, void *ud, mk_error_t *err);

/* Methods (called on a document) and statics (called on a model), by name; `args` and the
 * result are whatever the caller and the function agree on. */
typedef int (*mk_method_fn)(mk_doc_t *doc, void *args, void *ud, mk_error_t *err);
typedef int (*mk_static_fn)(mk_model_t *model, void *args, void *ud, mk_error_t *err);
int mk_schema_method(mk_schema_t *schema, const char *name, mk_method_fn fn, void *ud,
                     mk_error_t *err);
int mk_schema_static(mk_schema_t *schema, const char *name, mk_static_fn fn, void *ud,
                     mk_error_t *err);

/* toJSON / toObject transform: `ret` is the plain object built so far; append the object to
 * return to `out` (initialised, empty). The seed's transform that renames `_id` to `id` and
 * drops fields copies `ret` field by field. */
typedef int (*mk_transform_fn)(mk_doc_t *doc, const bson_t *ret, bson_t *out, void *ud,
                               mk_error_t *err);
/* `which` is "toJSON" or "toObject". */
int mk_schema_transform(mk_schema_t *schema, const char *which, mk_transform_fn fn, void *ud,
                        mk_error_t *err);

/* A plugin is applied at once (schema.plugin(fn, opts)); connection-wide plugins are applied
 * when a model is compiled (see mk_conn_plugin). */
typedef int (*mk_plugin_fn)(mk_schema_t *schema, void *opts, mk_error_t *err);
int mk_schema_plugin(mk_schema_t *schema, mk_plugin_fn fn, void *opts, mk_error_t *err);

/* ---- middleware ----
 *
 * What a hook sees. For document middleware (validate, save, init, deleteOne and updateOne
 * with { document: true }) `doc` is the document; for query middleware `query` is the query;
 * for insertMany `docs` holds the documents. `result` is set for post hooks:
 *   save, validate, init, deleteOne/updateOne (document): the document
 *   insertMany: the array of inserted documents (mk_doc_t *const *, `ndocs` of them)
 *   query ops: see meerkat/query.h. */
typedef struct mk_hook {
    const char *op;
    mk_model_t *model;
    mk_doc_t *doc;
    mk_query_t *query;
    mk_doc_t *const *docs;
    size_t ndocs;
    const void *result;
} mk_hook_t;

/* pre and post hooks return MK_OK, or an error that stops the operation (a pre hook) or
 * replaces its result (a post hook), as a thrown error or next(err) does in Mongoose. */
typedef int (*mk_hook_fn)(mk_hook_t *hook, void *ud, mk_error_t *err);
/* An error-handling post hook (Mongoose's `function (error, doc, next)`): it sees the error and
 * may rewrite it in place; the operation fails with whatever *error holds afterwards. */
typedef void (*mk_error_hook_fn)(mk_hook_t *hook, mk_error_t *error, void *ud);

/* Flags: run as document middleware, as query middleware. 0 = Mongoose's default for the op
 * (deleteOne / updateOne: query only; validate, save, init: document). */
enum { MK_HOOK_DOCUMENT = 1, MK_HOOK_QUERY = 2 };

/* `ops` names one op or several separated by spaces ("updateOne deleteOne"). Hooks run in
 * registration order. Unknown op names are an error. */
int mk_schema_pre(mk_schema_t *schema, const char *ops, mk_hook_fn fn, void *ud, mk_error_t *err);
int mk_schema_post(mk_schema_t *schema, const char *ops, mk_hook_fn fn, void *ud, mk_error_t *err);
int mk_schema_post_error(mk_schema_t *schema, const char *ops, mk_error_hook_fn fn, void *ud,
                         mk_error_t *err);
int mk_schema_pre_ex(mk_schema_t *schema, const char *ops, unsigned flags, mk_hook_fn fn, void *ud,
                     mk_error_t *err);
int mk_schema_post_ex(mk_schema_t *schema, const char *ops, unsigned flags, mk_hook_fn fn, void *ud,
                      mk_error_t *err);
int mk_schema_post_error_ex(mk_schema_t *schema, const char *ops, unsigned flags,
                            mk_error_hook_fn fn, void *ud, mk_error_t *err);

/* ---- builder API: the same schema without writing text ---- */

/* Adds one path of `type` with options (relaxed JSON or NULL): equivalent to
 * mk_schema_add(s, "{ <path>: { type: <Type>, <options> } }"). Dotted paths create nested
 * objects. */
int mk_schema_add_path(mk_schema_t *schema, const char *path, mk_schematype_t type,
                       const char *options, mk_error_t *err);
/* An array of `elem_type` ([String]) at path, with options for the array path. */
int mk_schema_add_array(mk_schema_t *schema, const char *path, mk_schematype_t elem_type,
                        const char *options, mk_error_t *err);

/* Mongoose's SchemaType name: "String", "Number", "ObjectId", "Array", "DocumentArray",
 * "Embedded" (sub-document), "Map", "Mixed", "Nested", ... */
const char *mk_schematype_name(mk_schematype_t type);

#ifdef __cplusplus
}
#endif
#endif
