/* Document#toObject / toJSON: a document's stored state turned into a plain object, as
 * Mongoose 8's $toObject builds it. For each document level (the document, then every
 * single nested sub-document and document-array element with its own schema):
 *
 *   1. the stored fields are copied in order; sub-documents are serialized first (each by its
 *      own schema, transform included); with `minimize`, empty objects are left out — not
 *      empty arrays, not array elements, not maps, not a required single nested sub-document,
 *      and never the top document itself, which stays {};
 *   2. getters: each path's getters run over the value built so far, in reverse path order
 *      (a missing path with a getter that returns a value is appended; array element getters
 *      `tags.$` run per element); then empty objects are removed again;
 *   3. virtuals: aliases, the schema's virtuals in registration order, then `id` (the _id as a
 *      string, null without _id); dotted names create their parent objects;
 *   4. versionKey: false removes the schema's version key at this level;
 *   5. the schema's own transform (toJSON or toObject) replaces the object.
 *
 * Options are resolved per level as Mongoose does: per-call options win; then `getters`,
 * `versionKey` and `flattenMaps` come from the nearest ancestor schema option that sets them
 * (the top document's first), `virtuals` from this level's schema option (or its parent's
 * when the parent is itself a sub-document), `minimize` from the sub-document path's
 * `minimize` option, then this schema's toJSON/toObject option, then its `minimize` option.
 * `getters: true` turns virtuals on unless `virtuals` is false. A schema transform applies to
 * the documents of that schema only; `transform: false` in the call skips them all.
 *
 * Maps are embedded documents in BSON, so they are objects in the output either way. What
 * `flattenMaps` (toJSON: on unless false; toObject: off unless true) changes is what Mongoose
 * does to the values: flattened, each value goes through the map's value getters (`m.$*`)
 * and empty objects among them are removed; not flattened, the values are copied as stored
 * (sub-document values are still serialized by their schema, never removed).
 *
 * Values that no rule touches are copied as stored, in stored order. A getter, virtual or
 * transform that returns undefined (BSON_TYPE_UNDEFINED, or *out left untouched) leaves the
 * field out (BSON has no undefined); an array element that becomes undefined is null, as
 * JSON.stringify prints it. */
#ifndef MK_ODM_SERIALIZE_H
#define MK_ODM_SERIALIZE_H

#include <bson/bson.h>
#include <stdbool.h>

#include <meerkat/error.h>
#include <meerkat/odm.h>
#include <meerkat/schema.h>

/* Options for one call. The booleans are the top document's options after resolving the
 * per-call -1s against the schema option document and Mongoose's defaults (virtuals here
 * means "virtuals are applied": also true for getters: true without virtuals: false).
 * `called` keeps the per-call options as given: sub-documents resolve their own from them
 * and their schemas, so fill this struct with mk_ser_resolve. */
typedef struct mk_ser_opts {
    bool getters, virtuals, version_key, minimize, transform, flatten_maps, json;
    mk_to_object_opts_t called;
} mk_ser_opts_t;

/* Fills `resolved` from `in` (NULL: no per-call options), the schema's toJSON (json) or
 * toObject option (mk_schema_options(s)->to_json / to_object) and Mongoose's defaults:
 * getters false, virtuals false, versionKey true, minimize = the schema's minimize option,
 * transform on when the schema has one, flattenMaps true for toJSON and false for toObject.
 * A schema option value of a kind Mongoose accepts but meerkat does not (virtuals as a list
 * of names) is reported by mk_serialize. */
void mk_ser_resolve(const mk_schema_t *s, bool json, const mk_to_object_opts_t *in,
                    mk_ser_opts_t *resolved);

/* Appends the plain object for `stored` (the document's current full BSON) to `out`
 * (initialised, empty). `doc` is handed to getters (ctx->doc), virtuals and transforms; it
 * may be NULL when no callback needs it. Getters see ctx->path as the value's full concrete
 * path ("comments.1.text", "tags.0"). MK_OK; the error of a callback (its return code, err
 * as it left it); InvalidBSON for corrupt input; MK_ENOMEM. On failure `out` holds a partial
 * object: discard it. */
int mk_serialize(const mk_schema_t *s, mk_doc_t *doc, const bson_t *stored, const mk_ser_opts_t *o,
                 bson_t *out, mk_error_t *err);

/* The sub-document a callback runs for. Virtual getters and transforms receive the top
 * document only, but Mongoose runs those of a sub-schema with `this` = the sub-document: while
 * mk_serialize runs a callback of a sub-document's schema (getter, virtual, transform), this
 * gives that sub-document's full path ("comments.1", "author") and its stored BSON (both
 * borrowed for the duration of the callback). false at the top level and outside
 * mk_serialize. Per thread. */
bool mk_ser_current_subdoc(const char **path, const bson_t **stored);

#endif
