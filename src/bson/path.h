/* Dotted paths over BSON documents.
 *
 * mk_path_get is the exact lookup used for sort keys, $expr field paths, and updates: each
 * component selects a field of a document, or an element of an array when it is a decimal
 * number ("a.0"); it does not traverse arrays of documents. The matcher does its own implicit
 * array traversal (see engine/matcher.c) because its rules differ per operator. */
#ifndef MK_BSON_PATH_H
#define MK_BSON_PATH_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

/* Positions `out` on the element at `path` in `doc`; false when absent. */
bool mk_path_get(const bson_t *doc, const char *path, bson_iter_t *out);
/* Same with an explicit path length (path need not be NUL-terminated). */
bool mk_path_getn(const bson_t *doc, const char *path, size_t len, bson_iter_t *out);

/* True when s (len bytes) is a non-empty run of decimal digits (an array index component);
 * *idx receives its value (false on overflow past 2^31). */
bool mk_path_component_index(const char *s, size_t len, uint32_t *idx);

#endif
