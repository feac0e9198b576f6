/* What the document files share (document.c, doc_cast.c, doc_array.c, doc_save.c). */
#ifndef MK_ODM_DOC_INTERNAL_H
#define MK_ODM_DOC_INTERNAL_H

#include "odm/odm_internal.h"

/* Casts `in` for schema path `p` of `owner` at document path `full`: setters, then the
 * SchemaType's cast; arrays element by element; sub-documents and document arrays through the
 * child schema (with _id); maps value by value. *out is owned. A failed cast is MK_ERR with a
 * CastError in err (not recorded). */
int mk_doc_cast_path(mk_doc_t *d, const mk_schema_t *owner, const mk_schema_path_t *p,
                     const char *full, const bson_value_t *in, bson_value_t *out, mk_error_t *err);
/* Builds the object for `in` under schema `s` (prefix: the nested path inside s, "" for the
 * schema's top; full: the document path of the object): casts known paths, applies `strict`
 * to the others, records CastErrors on d, then appends defaults. is_schema_root: the object
 * is s's top (a document or sub-document: it gets an _id). */
int mk_doc_build_object(mk_doc_t *d, const mk_schema_t *s, const char *prefix, const char *full,
                        const bson_t *in, bson_t *out, bool is_schema_root, mk_error_t *err);
/* The path whose `alias` option is `name` (Mongoose makes the alias a virtual over the
 * path), or NULL. */
const char *mk_schema_alias_target(const mk_schema_t *s, const char *name);
/* A "Cast to <kind> failed for value ..." CastError. */
int mk_cast_error_for(const bson_value_t *v, const char *kind, const char *path, mk_error_t *err);
int mk_doc_record_cast_error(mk_doc_t *d, const char *path, const mk_error_t *cast,
                             const bson_value_t *value);
/* Forgets the CastErrors at path and below. */
void mk_doc_clear_cast_errors(mk_doc_t *d, const char *path);
/* Remembers a set to run once construction is done (dotted keys, virtuals). */
int mk_doc_defer_set(mk_doc_t *d, const char *path, const bson_value_t *v, mk_error_t *err);

/* A bound argument as a borrowed BSON value (strings are checked for UTF-8). */
int mk_arg_value(mk_arg_t a, bson_value_t *out, mk_error_t *err);

/* The current state as a bson_t view (valid until the next change). */
int mk_doc_view(mk_doc_t *d, bson_t *view, mk_error_t *err);
/* The raw value at a path (borrowed until the next change); false when undefined. */
bool mk_doc_lookup(mk_doc_t *d, const char *path, bson_value_t *out);
/* Stores a value (NULL: removes the path) without casting or tracking. */
int mk_doc_store(mk_doc_t *d, const char *path, const bson_value_t *v, mk_error_t *err);
/* Makes the tree's state the document's bytes again (after a save). */
int mk_doc_settle(mk_doc_t *d, mk_error_t *err);
/* Change tracking. */
int mk_doc_mark(mk_doc_t *d, const char *path, mk_error_t *err);
void mk_doc_reset_tracking(mk_doc_t *d);
mk_atomic_t *mk_doc_atomic(mk_doc_t *d, const char *path);
void mk_doc_drop_atomic(mk_doc_t *d, const char *path);
/* The document's schema path for a dotted document path, with the schema that owns it. */
const mk_schema_path_t *mk_doc_schema_path(const mk_doc_t *d, const char *path,
                                           const mk_schema_t **owner);
#endif
