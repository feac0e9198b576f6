/* Mongoose 8's validation pipeline over whole documents, and its update validators
 * (runValidators).
 *
 * Both walk a schema against BSON and add ValidatorErrors to an mk_verrors_t (odm/validate.h);
 * mk_verrors_to_error then builds the ValidationError. Per path, validators run in Mongoose's
 * order and the first failing one is the path's error (later ones are not called):
 *   1. `required` (true, [true, 'msg'], 'msg', or a required function from the registry),
 *   2. the built-in validators and the `validate` option in the order the options are written
 *      (String: enum, match, minlength/minLength, maxlength/maxLength; Number and Date: min,
 *      max), the named validators of a `validate` option taking that option's place,
 *   3. validators added in C (mk_schema_path_validator), in registration order.
 * Only `required` sees a missing value (undefined); every other validator lets it pass, as
 * Mongoose does not call them for undefined. `enum` on a Number path is a no-op, as the book
 * shows (chapter 2).
 *
 * Error keys are full dotted paths ("comments.1.text", "tags.2", "profile.bio"); messages name
 * the path as Mongoose's ValidatorError does, relative to the sub-document that owns it
 * ("comments.1.text": "Path `text` is required.").
 *
 * Callbacks receive an mk_fn_ctx_t whose `path` is the full key of the value (for sub-documents
 * pushed with $push / $addToSet, whose index is unknown, the path without it:
 * "comments.text"); `doc` is the top-level document (Mongoose passes the sub-document as
 * `this` for paths inside one). A nested ValidationError (below) is recorded with kind
 * "ValidationError". */
#ifndef MK_ODM_DOC_VALIDATE_H
#define MK_ODM_DOC_VALIDATE_H

#include <bson/bson.h>
#include <stdbool.h>

#include <meerkat/schema.h>

#include "odm/validate.h"

typedef struct mk_dv_opts {
    /* validate(pathsToValidate): NULL = every path. A listed path also selects what is under
     * it ("profile" validates profile.*); sub-documents are entered to reach listed children. */
    const char *const *only_paths;
    /* validateModifiedOnly: with validate_modified_only, a path is validated when
     * isModified(path) holds for these paths (the path, a parent or a child was modified). */
    const char *const *modified_paths;
    bool validate_modified_only;
    /* Mongoose validates the paths in states require, init, modify and default. A document
     * created by save() and changed since has no `init` paths: set this for it, and only the
     * modified paths (modified_paths, with isModified's parent/child rules) and the required
     * paths are validated, as in the book's chapter 5 profile example. Leave it false for new
     * and hydrated documents (every present path is validated). */
    bool modified_and_required;
} mk_dv_opts_t;

/* Validates `current` (the document's full BSON, cast values) against schema `s`, as
 * doc.validate() does: every required path, and every schema path present in the document
 * (paths not in the schema are not validated), recursing into nested objects, single nested
 * sub-documents (their errors under "profile.x"), document arrays (elements validated with the
 * child schema after the array's own validators pass), arrays of primitives (each element
 * "tags.1" with the element's validators, besides the array's own) and maps.
 *
 * Errors are added in Mongoose's order: at each level, required paths that are missing first
 * (in reverse schema order, as Schema#requiredPaths lists them), then the present paths in
 * document order, then array elements and map entries; errors inside sub-documents come after
 * those of their parent level (breadth first), as Mongoose's asynchronous validation of
 * sub-documents finishes later.
 *
 * `doc` (may be NULL) is passed to validator and required callbacks as ctx->doc; `o` may be
 * NULL. MK_OK (also when errors were added), MK_ENOMEM, or MK_ERR for an internal failure (an
 * option this module cannot use, a failing required function; errs->error says which). */
int mk_validate_document(const mk_schema_t *s, mk_doc_t *doc, const bson_t *current,
                         const mk_dv_opts_t *o, mk_verrors_t *errs);

/* Update validators (runValidators): validates only the paths an already-cast update touches.
 *   $set, $setOnInsert   the values (objects flattened into their paths; setting a nested
 *                        object whole makes its absent children undefined)
 *   $unset               undefined: only `required` can fail
 *   $push, $addToSet     each pushed value ($each expanded) with the element validators; the
 *                        error key is the array path. Document arrays: the array's own
 *                        validators on the pushed values, then each pushed sub-document; a
 *                        failing one is reported at the array path as a nested ValidationError
 *                        ("Validation failed: text: Path `text` is required.")
 *   $pull, $pullAll      validated unless the path is an array (i.e. only sub-paths of
 *                        document arrays); `{ $in: [...] }` values per element
 *   other operators      ($inc, $mul, $min, $max, $rename, $pop, $currentDate, $bit) are not
 *                        validated
 * An update without operators is validated as a $set. Positional segments ($, $[], $[id]) count
 * as index 0, as Mongoose's cleanPositionalOperators does. A single nested sub-document set
 * whole is validated as a whole, its errors reported at its path as a nested ValidationError;
 * a document array element set whole ("comments.0") reports its errors at "comments.0.text".
 * Required validators do not fail for paths absent from the update.
 *
 * `upsert` does not change the result: like Mongoose 8, $setOnInsert is validated whether or
 * not the update upserts. `ctx` (may be NULL) is passed to callbacks: { doc: NULL, query } with
 * context 'query', all NULL otherwise; ctx->path is ignored (each call gets its own).
 * Returns as mk_validate_document. */
int mk_validate_update(const mk_schema_t *s, const bson_t *update, bool upsert,
                       const mk_fn_ctx_t *ctx, mk_verrors_t *errs);

#endif
