/* Values printed the way MongoDB's server messages print them:
 *   { _id: ObjectId('65a1...'), email: "a@b.c", n: 1, d: new Date(1700000000000) }
 * Used in error messages (E11000 ... dup key: { ... }). */
#ifndef MK_BSON_FORMAT_H
#define MK_BSON_FORMAT_H

#include <bson/bson.h>

/* Appends the rendering to s (libbson string). Long values are cut with "...". */
void mk_format_value(bson_string_t *s, const bson_value_t *v);
void mk_format_doc(bson_string_t *s, const uint8_t *data, uint32_t len, bool is_array);
/* New string (bson_free) for a document. */
char *mk_format_bson(const bson_t *doc);

#endif
