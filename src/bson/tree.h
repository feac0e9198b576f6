/* A mutable BSON document: ordered fields, values that are scalars or child documents/arrays.
 *
 * Built lazily from raw BSON: a document or array stays a slice of the source bytes until
 * something looks inside it, so an update that touches one field of a large document expands
 * only the containers along that field's path and copies everything else as raw bytes when the
 * tree is serialized.
 *
 * Memory: every node, key and copied value lives in the tree's arena, freed all at once by
 * mk_tree_destroy (no per-node frees). The tree BORROWS the bytes it was built from and any bytes
 * handed to mk_tnode_set_raw: they must outlive the tree. mk_tnode_set_value copies.
 *
 * Field order is insertion order: existing fields keep their place, new ones are appended, as
 * MongoDB does. Array elements carry no keys; they are renumbered "0", "1", ... on output. */
#ifndef MK_BSON_TREE_H
#define MK_BSON_TREE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <meerkat/error.h>

typedef struct mk_tnode mk_tnode_t;

struct mk_tnode {
    const char *key; /* field name, not NUL-terminated (ignored for array elements) */
    uint32_t keylen;
    uint8_t type;  /* bson_type_t */
    uint8_t flags; /* MK_TNODE_* */
    /* Scalars: the value's BSON bytes. Unexpanded documents/arrays: the embedded document's
     * bytes (length prefix to trailing NUL). Expanded containers: `len` caches the serialized
     * size during output. */
    const uint8_t *data;
    uint32_t len;
    uint32_t nkids, cap; /* expanded containers: children in order */
    mk_tnode_t **kids;
};

enum {
    MK_TNODE_EXPANDED = 1, /* a document/array whose children are in kids[] */
    MK_TNODE_FOREIGN = 2,  /* a raw container placed by a change: its depth is checked on output */
};

typedef struct mk_tree_block mk_tree_block_t;

typedef struct mk_tree {
    mk_tnode_t root;
    mk_tree_block_t *blocks;          /* heap blocks of the arena, newest first */
    uint8_t *cur, *end;               /* free space of the current block */
    _Alignas(16) uint8_t first[2048]; /* the first arena block: small documents never malloc */
} mk_tree_t;

/* An empty document. */
void mk_tree_init(mk_tree_t *t);
/* A tree over `len` bytes of BSON (a document), borrowed. The bytes are checked only as far as
 * they are expanded: corrupt BSON is reported by the call that first looks inside it. */
void mk_tree_init_data(mk_tree_t *t, const uint8_t *data, uint32_t len);
static inline void mk_tree_init_bson(mk_tree_t *t, const bson_t *doc)
{
    mk_tree_init_data(t, bson_get_data(doc), doc->len);
}
void mk_tree_destroy(mk_tree_t *t);

static inline mk_tnode_t *mk_tree_root(mk_tree_t *t)
{
    return &t->root;
}

/* Scratch memory that lives as long as the tree (8-byte aligned; NULL when out of memory). */
void *mk_tree_alloc(mk_tree_t *t, size_t n);

static inline bool mk_tnode_is_container(const mk_tnode_t *n)
{
    return n->type == BSON_TYPE_DOCUMENT || n->type == BSON_TYPE_ARRAY;
}

/* Makes the children of a document/array node available in n->kids. MK_OK (also for scalars,
 * which have none), MK_ENOMEM, or MK_ERR for corrupt BSON (code InvalidBSON). */
int mk_tnode_expand(mk_tree_t *t, mk_tnode_t *n, mk_error_t *err);

/* The child of `n` named `key` (a document) or at the decimal index `key` (an array). *out is
 * NULL when there is none (also when n is a scalar); *pos (may be NULL) receives its index. */
int mk_tnode_find(mk_tree_t *t, mk_tnode_t *n, const char *key, size_t keylen, mk_tnode_t **out,
                  uint32_t *pos, mk_error_t *err);

/* Inserts a new null child at index `pos` (UINT32_MAX or past the end: appends). The key is
 * copied. n must be a document or array. */
int mk_tnode_insert(mk_tree_t *t, mk_tnode_t *n, uint32_t pos, const char *key, size_t keylen,
                    mk_tnode_t **out, mk_error_t *err);
/* Removes the child at `pos` (n expanded). */
void mk_tnode_remove(mk_tnode_t *n, uint32_t pos);
/* The index of child `c` in expanded `n`, or UINT32_MAX. */
uint32_t mk_tnode_index_of(const mk_tnode_t *n, const mk_tnode_t *c);

/* Value setters. set_raw borrows `data` (the value's BSON bytes, or a whole embedded document
 * for documents/arrays); set_value copies `v` into the arena. */
void mk_tnode_set_raw(mk_tnode_t *n, bson_type_t type, const uint8_t *data, uint32_t len);
int mk_tnode_set_value(mk_tree_t *t, mk_tnode_t *n, const bson_value_t *v, mk_error_t *err);
void mk_tnode_set_null(mk_tnode_t *n);
/* An empty, expanded document or array. */
void mk_tnode_set_empty(mk_tnode_t *n, bson_type_t doc_or_array);
/* Gives `dst` the value of `src` (a shallow copy: expanded children are shared, so use it to
 * move a value, not to duplicate one that will change). The key of dst is kept. */
void mk_tnode_copy_value(mk_tnode_t *dst, const mk_tnode_t *src);

/* A borrowed view of the node's value (expanded containers are serialized into the arena). */
int mk_tnode_value(mk_tree_t *t, mk_tnode_t *n, bson_value_t *out, mk_error_t *err);
/* The value's BSON bytes (as mk_tnode_value, without decoding). */
int mk_tnode_bytes(mk_tree_t *t, mk_tnode_t *n, const uint8_t **data, uint32_t *len,
                   mk_error_t *err);
/* True when both values have the same type and the same bytes (MongoDB's "binary equal"). */
int mk_tnode_binary_equal(mk_tree_t *t, mk_tnode_t *a, mk_tnode_t *b, bool *equal, mk_error_t *err);

/* Appends "key: value" the way server messages print an element ("a: 1", "b: { c: \"x\" }"). */
void mk_tnode_format(mk_tree_t *t, mk_tnode_t *n, bson_string_t *s);

/* Serializes the whole tree into `out` (initialised and empty, not static). Fails with code
 * Overflow (15) "Document exceeds maximum nesting depth of 100" when an element would nest
 * deeper than MK_MAX_DEPTH (raw containers copied from the source are trusted; values placed by
 * changes are checked), and with BSONObjectTooLarge (10334) past 2 GiB. Size limits below that
 * are the caller's business (see mk_tree_size). */
int mk_tree_to_bson(mk_tree_t *t, bson_t *out, mk_error_t *err);
/* The serialized size of the tree (and the depth check), without writing. */
int mk_tree_size(mk_tree_t *t, uint32_t *size, mk_error_t *err);

/* ---- dotted paths ("a.b.0.c": numeric components index arrays) */

/* Exact lookup; *out is NULL when the path does not exist. */
int mk_tree_get(mk_tree_t *t, const char *path, size_t len, mk_tnode_t **out, mk_error_t *err);
/* Sets the value at `path`, creating missing documents along it and padding arrays with nulls
 * ("a.5" on a 2-element array), as MongoDB's $set. Setting through a scalar fails with
 * PathNotViable (28) "Cannot create field 'b' in element {a: 1}". *node (may be NULL) receives
 * the node, whose value the caller may then set; `v` may be NULL to leave it null. */
int mk_tree_set(mk_tree_t *t, const char *path, size_t len, const bson_value_t *v,
                mk_tnode_t **node, mk_error_t *err);
/* Removes the field at `path`; an array element becomes null instead (as $unset). *removed (may
 * be NULL) tells whether something was there. */
int mk_tree_unset(mk_tree_t *t, const char *path, size_t len, bool *removed, mk_error_t *err);

/* Creates the missing components comps[0..n) under `parent` (a document, or an array when
 * comps[0] is a decimal index: padded with nulls) and returns the new leaf node (null) in *leaf
 * and the first created node in *first. Errors as mk_tree_set. Used by mk_tree_set and updates.
 * Arrays are padded with at most 1500000 nulls (MongoDB's limit). */
typedef struct mk_tree_comp {
    const char *s;
    uint32_t len;
} mk_tree_comp_t;
int mk_tree_create_path(mk_tree_t *t, mk_tnode_t *parent, const mk_tree_comp_t *comps, size_t n,
                        mk_tnode_t **leaf, mk_tnode_t **first, mk_error_t *err);

/* ---- raw BSON helpers shared with the updater */

/* Length of the value of type `type` at p (at most `avail` bytes); false when malformed. */
bool mk_raw_value_len(uint8_t type, const uint8_t *p, size_t avail, uint32_t *len);
/* Decodes value bytes into a borrowed bson_value_t; false when malformed. */
bool mk_raw_to_value(uint8_t type, const uint8_t *p, uint32_t len, bson_value_t *out);

/* Levels of nesting of the elements of a raw document (0 when empty, 1 when flat), counting
 * stops past `limit`; -1 when corrupt. */
int mk_raw_depth(const uint8_t *doc, uint32_t len, int limit);

/* Iterates the elements of a raw document: init, then next until it returns false; *bad is set
 * when the bytes are malformed. */
typedef struct mk_raw_iter {
    const uint8_t *p, *end;
    uint8_t type;
    const char *key;
    uint32_t keylen;
    const uint8_t *value; /* value bytes */
    uint32_t vlen;
    const uint8_t *elem; /* the whole element: type byte, key, value */
    uint32_t elen;
} mk_raw_iter_t;
bool mk_raw_iter_init(mk_raw_iter_t *it, const uint8_t *doc, uint32_t len);
bool mk_raw_iter_next(mk_raw_iter_t *it, bool *bad);

#endif
