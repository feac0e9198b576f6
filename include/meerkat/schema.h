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

/* Mongoose's SchemaType name: "String", "Number", "ObjectId", "Array", "DocumentArray",
 * "Embedded" (sub-document), "Map", "Mixed", "Nested", ... */
const char *mk_schematype_name(mk_schematype_t type);

#ifdef __cplusplus
}
#endif
#endif
