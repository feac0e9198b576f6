/* meerkat — the object-document mapper: connections, models and documents (Mongoose's
 * Connection, Model and Document).
 *
 *   mk_conn_t *db = mk_connect("data/app", &err);           // or "file:data/app", "memory:"
 *   mk_model_t *User = mk_model(db, "User", schema, &err);  // collection "users"
 *   mk_doc_t *u = mk_doc_new(User, &err, "{ email: ?, age: ? }", MK_STR(email), MK_STR("42"));
 *   mk_doc_get_i64(u, "age");                                 // 42 (cast from the string)
 *   if (mk_doc_save(u, &err) != MK_OK) ...                    // ValidationError, E11000, ...
 *
 * Ownership: a connection owns its models (and the databases opened with mk_conn_use_db);
 * a model owns its compiled copy of the schema, so the caller may destroy its own. Documents
 * belong to the caller (mk_doc_destroy) and must not outlive their model's connection.
 * Threads: connections and models may be shared; a document belongs to one thread. */
#ifndef MEERKAT_ODM_H
#define MEERKAT_ODM_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <meerkat/error.h>
#include <meerkat/json.h>
#include <meerkat/schema.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_conn mk_conn_t;
typedef struct mk_client_session mk_client_session_t; /* meerkat/query.h */

/* ---- connections ---- */

/* Opens a connection. `uri` is a directory path ("data/app": the database is "app", the last
 * component; the directory is created), "file:PATH" (same), or "memory:" / "memory:NAME" (a
 * temporary directory removed on close; database "test" or NAME). "mongodb://" and
 * "mongodb+srv://" URIs fail with kind "MongooseError" ("... not supported yet") until the
 * libmongoc backend lands. Free with mk_conn_close. */
mk_conn_t *mk_connect(const char *uri, mk_error_t *err);
/* Same, with engine options (NULL: defaults) for the embedded engine. */
struct mk_engine_opts;
mk_conn_t *mk_connect_opts(const char *uri, const struct mk_engine_opts *opts, mk_error_t *err);
/* Closes the connection, its models and its useDb connections. Documents of its models must
 * be destroyed first. NULL is ignored. */
void mk_conn_close(mk_conn_t *conn);
/* Another database on the same storage (Mongoose's useDb): same engine, own models.
 * Borrowed: it lives until the parent is closed; asking twice gives the same connection. */
mk_conn_t *mk_conn_use_db(mk_conn_t *conn, const char *db_name, mk_error_t *err);
const char *mk_conn_db_name(const mk_conn_t *conn);
/* A plugin applied to every schema compiled into a model on this connection afterwards
 * (mongoose.plugin()), before the model is built. */
int mk_conn_plugin(mk_conn_t *conn, mk_plugin_fn fn, void *opts, mk_error_t *err);
/* Runs a database command (ping, listCollections, ...) on the connection's database. reply:
 * an initialised bson_t. */
int mk_conn_command(mk_conn_t *conn, const bson_t *cmd, bson_t *reply, mk_error_t *err);

/* ---- models ---- */

/* Compiles `schema` into a model named `name` on the connection (Mongoose's
 * connection.model(name, schema)). The model takes a copy of the schema, applies connection
 * plugins, resolves named functions, adds the version key, and — when autoIndex is on —
 * creates the schema's indexes (see mk_model_init for index errors). The collection is the schema's
 * `collection` option or the model name pluralised as Mongoose does (User -> users, Person ->
 * people, Category -> categories). A name already taken is an OverwriteModelError. Borrowed from
 * the connection. */
mk_model_t *mk_model(mk_conn_t *conn, const char *name, const mk_schema_t *schema, mk_error_t *err);
/* Same, with an explicit collection name (NULL: as above). */
mk_model_t *mk_model_collection(mk_conn_t *conn, const char *name, const mk_schema_t *schema,
                                const char *collection, mk_error_t *err);
/* The model registered under `name` (for `ref`), or NULL (MissingSchemaError in err). */
mk_model_t *mk_model_get(mk_conn_t *conn, const char *name, mk_error_t *err);
const char *mk_model_name(const mk_model_t *model);
const char *mk_model_collection_name(const mk_model_t *model);
const mk_schema_t *mk_model_schema(const mk_model_t *model);
mk_conn_t *mk_model_conn(const mk_model_t *model);
/* Model.init(): MK_OK when autoIndex built every index of the schema, else the first index
 * error (a text index the engine does not support, duplicates under a unique index, ...).
 * As in Mongoose, such an error does not stop mk_model: the model works without that index. */
int mk_model_init(mk_model_t *model, mk_error_t *err);
/* Creates the schema's indexes (Model.syncIndexes without dropping: createIndexes), one by
 * one; returns the first failure after trying them all. */
int mk_model_ensure_indexes(mk_model_t *model, mk_error_t *err);
/* Calls a static registered with mk_schema_static. */
int mk_model_call(mk_model_t *model, const char *name, void *args, mk_error_t *err);

/* Model.create: constructs, validates and saves one document; the saved document (give), or
 * NULL. `json` may hold `?` placeholders filled from the mk_arg_t arguments. */
#define mk_model_create(model, err, json, ...)                                                     \
    mk_model_create_args((model), (json), MK_ARGS(__VA_ARGS__), (err))
mk_doc_t *mk_model_create_args(mk_model_t *model, const char *json, const mk_arg_t *args,
                               mk_error_t *err);

/* Model.insertMany. `docs` is a BSON array (or a document whose values are the documents).
 * Every document is cast and validated first; then the valid ones are inserted in one
 * round trip. ordered (default true): the first invalid document or write error stops the
 * batch (documents before it are inserted); unordered: every valid document is tried.
 * The result lists the inserted documents and the failures by input index. */
typedef struct mk_insert_many_opts {
    bool unordered;  /* ordered: false */
    bool raw_result; /* unused for now: the result below is always filled */
    bool skip_hooks; /* do not run insertMany middleware */
    bool lean;       /* skip casting, defaults and validation (Mongoose's lean: true) */
    mk_client_session_t *session; /* run inside this session (NULL: none) */
} mk_insert_many_opts_t;
typedef struct mk_insert_failure {
    size_t index;     /* position in the input */
    mk_error_t error; /* ValidationError, MongoServerError (E11000), ... */
} mk_insert_failure_t;
typedef struct mk_insert_many_result {
    mk_doc_t **docs; /* the inserted documents, in input order (owned by the result) */
    size_t ndocs;
    mk_insert_failure_t *failures;
    size_t nfailures;
} mk_insert_many_result_t;
/* MK_OK when every document was inserted; MK_ERR otherwise, err holding the first failure
 * (as Mongoose throws it) and `result` (may be NULL) holding all of them. */
int mk_model_insert_many(mk_model_t *model, const bson_t *docs, const mk_insert_many_opts_t *opts,
                         mk_insert_many_result_t *result, mk_error_t *err);
void mk_insert_many_result_destroy(mk_insert_many_result_t *result);

/* ---- documents ---- */

/* A new document (isNew) built from relaxed JSON with `?` placeholders: values are cast
 * through the schema, defaults applied, setters run, unknown paths dropped (strict), kept
 * (strict: false) or refused (strict: 'throw', StrictModeError). A value that cannot be cast
 * does not fail construction: as in Mongoose it leaves the path unset and records a CastError
 * that makes validate() and save() fail until the path is set to a castable value.
 * NULL on a parse error, StrictModeError or out of memory. */
#define mk_doc_new(model, err, json, ...)                                                          \
    mk_doc_new_args((model), (json), MK_ARGS(__VA_ARGS__), (err))
mk_doc_t *mk_doc_new_args(mk_model_t *model, const char *json, const mk_arg_t *args,
                          mk_error_t *err);
/* Same from BSON (NULL: an empty document). */
mk_doc_t *mk_doc_from_bson(mk_model_t *model, const bson_t *obj, mk_error_t *err);
/* A document from stored BSON (Model.hydrate): no casting, no defaults for present paths,
 * not new, nothing modified; runs `init` middleware. The bytes are copied. */
mk_doc_t *mk_doc_hydrate(mk_model_t *model, const bson_t *stored, mk_error_t *err);
mk_doc_t *mk_doc_hydrate_data(mk_model_t *model, const uint8_t *data, size_t len, mk_error_t *err);
void mk_doc_destroy(mk_doc_t *doc);

mk_model_t *mk_doc_model(const mk_doc_t *doc);
bool mk_doc_is_new(const mk_doc_t *doc);
/* The _id (NULL when the document has none or it is not an ObjectId). */
const bson_oid_t *mk_doc_oid(const mk_doc_t *doc);
/* The `id` virtual: _id as a string (hex for ObjectIds), NULL when there is none. Borrowed
 * until the next change of the document. */
const char *mk_doc_id(mk_doc_t *doc);
/* Same _id (Mongoose's doc.equals). */
bool mk_doc_equals(mk_doc_t *a, mk_doc_t *b);

/* get: the value at a dotted path ("profile.bio", "tags.0", "comments.1.text"), getters
 * applied, virtuals included. *out is borrowed until the next change of the document (or the
 * next get that runs a getter). Returns true when the path has a value (null included),
 * false for undefined. */
bool mk_doc_get(mk_doc_t *doc, const char *path, bson_value_t *out);
/* The stored value, without getters (Mongoose's doc.get(path, null, { getters: false })). */
bool mk_doc_get_raw(mk_doc_t *doc, const char *path, bson_value_t *out);
/* Typed conveniences (getters applied). Missing, null or another type: NULL / 0 / false. A
 * number of any BSON numeric type converts. */
const char *mk_doc_get_str(mk_doc_t *doc, const char *path);
int64_t mk_doc_get_i64(mk_doc_t *doc, const char *path);
double mk_doc_get_f64(mk_doc_t *doc, const char *path);
bool mk_doc_get_bool(mk_doc_t *doc, const char *path);
int64_t mk_doc_get_date(mk_doc_t *doc, const char *path); /* ms since the epoch */
const bson_oid_t *mk_doc_get_oid(mk_doc_t *doc, const char *path);
/* Length of the array at path (-1 when the path is not an array). */
int64_t mk_doc_array_len(mk_doc_t *doc, const char *path);
/* The value at `path` as a new document, getters applied (NULL when not a document/array). */
bson_t *mk_doc_get_bson(mk_doc_t *doc, const char *path);

/* set: casts `value` through the path's SchemaType (setters first) and stores it, marking the
 * path modified when the value changed. A value that cannot be cast keeps the previous value,
 * records a CastError on the document (save fails until the path is set again) and returns
 * MK_ERR with the CastError. Unknown paths follow `strict`. Virtuals call their setter (none:
 * nothing happens). Immutable paths of a saved document are left as they are. Setting a
 * document value on a nested or sub-document path merges as Mongoose's set does. */
int mk_doc_set(mk_doc_t *doc, const char *path, mk_arg_t value, mk_error_t *err);
int mk_doc_set_value(mk_doc_t *doc, const char *path, const bson_value_t *value, mk_error_t *err);
/* set(path, object) / set(object) from relaxed JSON with placeholders: path NULL sets every
 * field of the object (doc.set({ ... })). */
#define mk_doc_set_json(doc, path, err, json, ...)                                                 \
    mk_doc_set_json_args((doc), (path), (json), MK_ARGS(__VA_ARGS__), (err))
int mk_doc_set_json_args(mk_doc_t *doc, const char *path, const char *json, const mk_arg_t *args,
                         mk_error_t *err);
/* Sets the path to undefined (removed on save with $unset). */
int mk_doc_unset(mk_doc_t *doc, const char *path, mk_error_t *err);

/* Change tracking, with Mongoose's rules: isModified("a") is true when "a", a parent of "a"
 * or a child of "a" was modified; NULL path: anything modified. */
bool mk_doc_is_modified(const mk_doc_t *doc, const char *path);
/* Only the path itself or a parent (Mongoose's isDirectModified). */
bool mk_doc_is_direct_modified(const mk_doc_t *doc, const char *path);
/* The modified paths: every modified path and its parents ("profile", "profile.bio"); with
 * include_children also the children of modified sub-documents and nested objects. A new
 * NULL-terminated array (free with mk_strv_free), NULL on allocation failure. */
char **mk_doc_modified_paths(mk_doc_t *doc, bool include_children);
/* Only the paths that were set directly. */
char **mk_doc_direct_modified_paths(const mk_doc_t *doc);
void mk_strv_free(char **v);
/* Marks a path modified (needed after changing a Mixed value in place). */
int mk_doc_mark_modified(mk_doc_t *doc, const char *path, mk_error_t *err);
void mk_doc_unmark_modified(mk_doc_t *doc, const char *path);

/* Arrays and document arrays (the path must be an Array or DocumentArray). Values are cast to
 * the element type; documents pushed into a document array are cast through its schema and
 * get an _id when the sub-schema has one. */
int mk_doc_push(mk_doc_t *doc, const char *path, mk_arg_t value, mk_error_t *err);
#define mk_doc_push_json(doc, path, err, json, ...)                                                \
    mk_doc_push_json_args((doc), (path), (json), MK_ARGS(__VA_ARGS__), (err))
int mk_doc_push_json_args(mk_doc_t *doc, const char *path, const char *json, const mk_arg_t *args,
                          mk_error_t *err);
/* addToSet: pushes when no element is equal. *added (may be NULL) tells whether it did. */
int mk_doc_add_to_set(mk_doc_t *doc, const char *path, mk_arg_t value, bool *added,
                      mk_error_t *err);
/* pull: removes every element equal to the value (for a document array, an ObjectId or an
 * object with _id removes the sub-document with that _id). *removed counts them. */
int mk_doc_pull(mk_doc_t *doc, const char *path, mk_arg_t value, size_t *removed, mk_error_t *err);
/* The index of the sub-document with this _id in a document array (MongooseDocumentArray.id),
 * or -1. `id` is an ObjectId or its hex string. */
int64_t mk_doc_array_id(mk_doc_t *doc, const char *path, mk_arg_t id);

/* Per-document user data (Mongoose's $locals), for hooks to pass values along. */
int mk_doc_local_set(mk_doc_t *doc, const char *key, void *value, mk_error_t *err);
void *mk_doc_local_get(const mk_doc_t *doc, const char *key);

/* Calls a method registered with mk_schema_method. */
int mk_doc_call(mk_doc_t *doc, const char *name, void *args, mk_error_t *err);

/* ---- validation and persistence ---- */

/* Runs validation (with validate middleware): casts errors recorded by set, required paths,
 * built-in and custom validators, nested paths, sub-documents and array elements. MK_OK, or
 * MK_ERR with a ValidationError whose details list every failing path. */
int mk_doc_validate(mk_doc_t *doc, mk_error_t *err);
/* Validates only the listed paths (NULL-terminated; Mongoose's validate(pathsToValidate)). */
int mk_doc_validate_paths(mk_doc_t *doc, const char *const *paths, mk_error_t *err);

typedef struct mk_save_opts {
    bool validate_before_save_off; /* validateBeforeSave: false */
    bool validate_modified_only;   /* validateModifiedOnly: true */
    bool timestamps_off;           /* timestamps: false for this save */
    mk_client_session_t *session;  /* NULL: the document's own session, if any */
} mk_save_opts_t;
/* save(): pre('save') hooks (after validate and its hooks), then an insert of a new document
 * or the minimal update of a saved one ($set / $unset of the modified paths, array pushes and
 * pulls as $push / $pull, __v handling), then post('save'). Saving an unmodified document
 * sends nothing. A saved document whose stored copy is gone fails with DocumentNotFoundError,
 * a stale version with VersionError. */
int mk_doc_save(mk_doc_t *doc, mk_error_t *err);
int mk_doc_save_opts(mk_doc_t *doc, const mk_save_opts_t *opts, mk_error_t *err);
/* The update save() would send now ({ $set: {...}, $unset: {...}, ... }), or an empty
 * document when nothing changed; for a new document, the document to insert. A new bson_t. */
bson_t *mk_doc_delta(mk_doc_t *doc, mk_error_t *err);
/* doc.deleteOne(): deletes the stored document by _id (deleteOne document middleware). */
int mk_doc_delete_one(mk_doc_t *doc, mk_error_t *err);
/* doc.updateOne(update): Model.updateOne({ _id: doc._id }, update) (updateOne document
 * middleware). The document itself is not changed. */
#define mk_doc_update_one(doc, err, json, ...)                                                     \
    mk_doc_update_one_args((doc), (json), MK_ARGS(__VA_ARGS__), (err))
int mk_doc_update_one_args(mk_doc_t *doc, const char *json, const mk_arg_t *args, mk_error_t *err);

/* ---- output ---- */

/* toObject / toJSON options; NULL = the schema's toObject / toJSON option, else Mongoose's
 * defaults (getters and virtuals off, versionKey kept, minimize on, transform applied). */
typedef struct mk_to_object_opts {
    int getters;     /* -1: as the schema option says; 0 / 1 */
    int virtuals;    /* -1, 0, 1 (1 includes the `id` virtual when the schema has it) */
    int version_key; /* -1, 0 (drop __v), 1 */
    int minimize;    /* -1, 0, 1 (drop empty objects) */
    int transform;   /* -1, 0 (skip the schema's transform), 1 */
    int flatten_maps;
} mk_to_object_opts_t;
#define MK_TO_OBJECT_DEFAULTS ((mk_to_object_opts_t){-1, -1, -1, -1, -1, -1})
/* The document as a plain object (a new bson_t), or NULL. */
bson_t *mk_doc_to_object(mk_doc_t *doc, const mk_to_object_opts_t *opts, mk_error_t *err);
bson_t *mk_doc_to_json(mk_doc_t *doc, const mk_to_object_opts_t *opts, mk_error_t *err);
/* JSON.stringify(doc): toJSON then relaxed Extended JSON text (free with bson_free). */
char *mk_doc_to_ejson(mk_doc_t *doc, mk_error_t *err);
/* The document as stored, with no options applied (borrowed until the next change). */
const bson_t *mk_doc_bson(mk_doc_t *doc, mk_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
