/* Index key patterns and index key generation, as MongoDB's btree indexes do it.
 *
 * A key pattern ({ email: 1 }, { lastName: 1, 'address.city': -1 }) is compiled once per
 * index; mk_keypattern_keys then turns a document into its index keys. Each key is the
 * concatenation of the per-field encodings of engine/keyenc.h (descending fields inverted), so
 * the memcmp order of keys is the index order MongoDB gives the pattern.
 *
 * Rules (MongoDB's, see index_keys.c for the walk):
 *   - a missing field indexes as null; a sparse index skips a document (or, under an array, an
 *     array element) in which every field of the pattern is missing;
 *   - an array on a path gives one key per element (the index becomes multikey); an empty array
 *     gives `undefined`; an element that is itself an array is indexed whole;
 *   - dotted paths walk into documents and through arrays of documents; a numeric component
 *     ('a.0') selects an array element by position;
 *   - compound keys expand at most one array per document level; two different arrays
 *     give CannotIndexParallelArrays (171). Fields below the same array take their values from
 *     the same element: {'a.b': 1, 'a.c': 1} on a: [{b: 1, c: 2}, {b: 3, c: 4}] gives the keys
 *     (1, 2) and (3, 4), not a cross product;
 *   - equal keys (1, 1.0, NumberLong(1) encode alike) are produced once, in ascending order. */
#ifndef MK_ENGINE_INDEX_KEYS_H
#define MK_ENGINE_INDEX_KEYS_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <meerkat/error.h>

#include "engine/keyenc.h"

/* MongoDB's limit on the fields of a compound index. */
#define MK_KEYPATTERN_MAX_FIELDS 32

typedef struct mk_keypattern mk_keypattern_t;

/* Validates and compiles a key pattern, with MongoDB's checks and messages (in MongoDB's order):
 *   duplicate field                  BadValue (2) "The field 'a' appears multiple times in the
 *                                    index key pattern { a: 1, a: -1 }"
 *   pattern over 2048 bytes          CannotCreateIndex (67) "Index key pattern too large."
 *   empty pattern                    67 "Index keys cannot be empty."
 *   unknown string value             67 "Unknown index plugin 'foo'"
 *   0 / NaN                          67 "Values in the index key pattern cannot be 0." / "...NaN."
 *   other value types                67 "Values in v:2 index key pattern cannot be of type bool.
 *                                    Only numbers > 0, numbers < 0, and strings are allowed."
 *   two different strings            67 "Can't use more than one index plugin for a single index."
 *   empty field name / component     67 "Index keys cannot be an empty field." / "...contain an
 *                                    empty field."
 *   '$'-prefixed component           67 "Index key contains an illegal field name: field name
 *                                    starts with '$'." ($id, $ref, $db after the first component
 *                                    are allowed, as MongoDB allows them for DBRefs)
 *   empty string value               67 "Values in the index key pattern cannot be empty strings"
 *   more than 32 fields              13103 (Location13103) "too many compound keys"
 * A valid pattern of a special index type ('hashed', 'text', '2d', '2dsphere', '$**', ...) fails
 * with BadValue "<type> indexes are not supported yet". Returns NULL on error. */
mk_keypattern_t *mk_keypattern_compile(const bson_t *pattern, mk_error_t *err);
void mk_keypattern_destroy(mk_keypattern_t *kp);

size_t mk_keypattern_nfields(const mk_keypattern_t *kp);
/* The dotted path of field i (borrowed, NUL-terminated). */
const char *mk_keypattern_field(const mk_keypattern_t *kp, size_t i);
/* 1 or -1 (MongoDB: any negative number is descending). */
int mk_keypattern_direction(const mk_keypattern_t *kp, size_t i);

/* MongoDB's (the drivers') default index name: each field and its value joined by '_':
 * { email: 1 } -> "email_1", { firstName: 1, lastName: -1 } -> "firstName_1_lastName_-1",
 * { a: 1.5 } -> "a_1.5", { a: 'hashed' } -> "a_hashed". Numbers print as JavaScript prints them
 * (1.0 -> "1"), as the Node.js driver and mongosh name indexes. Needs no validation. malloc'd;
 * NULL when out of memory. */
char *mk_keypattern_default_name(const bson_t *pattern);

/* Receives one index key: `key`/`len` is its encoding (not shortened: keys longer than
 * MK_KEY_INLINE_MAX are the caller's to mk_keyenc_fit), `values` the nfields values of the key
 * (borrowed from the document, valid during the call; missing fields are null). Return MK_OK to
 * go on; anything else stops generation and is returned by mk_keypattern_keys. */
typedef int (*mk_index_key_fn)(void *ud, const uint8_t *key, size_t len,
                               const bson_value_t *values);

/* Calls fn once per distinct index key of doc, in ascending key order (see the rules above).
 * `sparse`: the index is sparse. `*multikey` (optional) is set when the document makes the
 * index multikey (an array on an indexed path, or more than one key). Errors:
 * CannotIndexParallelArrays (171) "cannot index parallel arrays [b] [a]"; Location16746
 * "Ambiguous field name found in array ..." when an array element has a field named like the
 * numeric component of the path that also selects an element; out of memory. A document
 * without any key (sparse) calls fn zero times and returns MK_OK. No allocation when the
 * document has no array on the indexed paths and the key fits 128 bytes. */
int mk_keypattern_keys(const mk_keypattern_t *kp, const bson_t *doc, bool sparse,
                       mk_index_key_fn fn, void *ud, bool *multikey, mk_error_t *err);

/* Appends the encoding of a key given its nfields values (ascending or descending per field):
 * how the planner builds the bounds of an index scan. Check out->failed. */
void mk_keypattern_encode(const mk_keypattern_t *kp, const bson_value_t *values, mk_buf_t *out);

/* Builds { <field>: <value>, ... } from a key's values, the keyValue of an E11000 error
 * ("dup key: { email: \"a@b.c\" }"). `out` must be initialized (bson_init). Returns MK_OK, or
 * MK_ERR when the document would be too large. */
int mk_keypattern_key_doc(const mk_keypattern_t *kp, const bson_value_t *values, bson_t *out);

#endif
