/* Internals of the updater shared by update*.c: the compiled update tree and the apply context.
 *
 * The compiled form mirrors MongoDB's: an object node per path prefix whose children are kept in
 * MongoDB's field order (lexicographic; numeric names numerically), a positional child for `$`,
 * array nodes for `$[]` / `$[<id>]` keyed by identifier ("" for `$[]`), and leaves holding one
 * modifier each. Every pointer into the update points into u->spec, a private copy. */
#ifndef MK_ENGINE_UPDATE_INT_H
#define MK_ENGINE_UPDATE_INT_H

#include "engine/update.h"

#include "bson/tree.h"

typedef enum up_op {
    OP_SET,
    OP_SET_ON_INSERT,
    OP_UNSET,
    OP_INC,
    OP_MUL,
    OP_MIN,
    OP_MAX,
    OP_RENAME,
    OP_PLACEHOLDER, /* the source path of a $rename: reserved against conflicts, does nothing */
    OP_CURRENT_DATE,
    OP_BIT,
    OP_PUSH,
    OP_ADD_TO_SET,
    OP_POP,
    OP_PULL,
    OP_PULL_ALL,
} up_op_t;

/* A BSON value borrowed from the update's bytes. */
typedef struct up_val {
    uint8_t type;
    const uint8_t *data;
    uint32_t len;
} up_val_t;

enum { SORT_NONE, SORT_WHOLE, SORT_FIELDS };
enum { PULL_EQUAL, PULL_QUERY, PULL_CONDITION };
enum { BIT_AND, BIT_OR, BIT_XOR };

typedef struct up_bit {
    int op;
    bson_value_t operand; /* int32 or int64 */
} up_bit_t;

typedef struct up_sort_key {
    const char *path;
    uint32_t len;
    int dir;
} up_sort_key_t;

typedef struct up_leaf {
    up_op_t op;
    const char *opname; /* "$inc" */
    const char *field;  /* the key as written: "a.b" (the source path for $rename) */
    uint32_t fieldlen;
    up_val_t arg;     /* the operand */
    bson_value_t num; /* $inc / $mul operand */
    /* $push / $addToSet / $pullAll values */
    up_val_t *values;
    uint32_t nvalues;
    /* $push modifiers */
    bool has_slice, has_position;
    int64_t slice, position;
    int sort; /* SORT_* */
    int sort_dir;
    up_sort_key_t *sort_keys;
    uint32_t nsort_keys;
    /* $pop */
    bool pop_front;
    /* $pull */
    int pull_mode; /* PULL_* */
    mk_matcher_t *matcher;
    /* $bit */
    up_bit_t *bits;
    uint32_t nbits;
    /* $currentDate */
    bool as_date;
    /* $rename: components of the source path */
    mk_tree_comp_t *from;
    uint32_t nfrom;
} up_leaf_t;

typedef enum up_kind { UN_OBJECT, UN_ARRAY, UN_LEAF } up_kind_t;

typedef struct up_node up_node_t;

typedef struct up_child {
    const char *name; /* field name (object) or identifier (array, "" for `$[]`) */
    uint32_t len;
    up_node_t *node;
} up_child_t;

struct up_node {
    up_kind_t kind;
    up_child_t *kids; /* sorted */
    uint32_t nkids, cap;
    up_node_t *positional; /* object nodes: the `$` child */
    up_leaf_t *leaf;
};

typedef struct up_filter {
    const char *id; /* NUL-terminated (a copy) */
    uint32_t idlen;
    mk_matcher_t *matcher;
    bson_t *doc; /* what the matcher was compiled from */
    bool used;
} up_filter_t;

struct mk_update {
    /* Heap-allocated by libbson (a bson_t wants an alignment malloc does not promise). */
    bson_t *spec;         /* private copy of the update */
    bson_t *filters_spec; /* private copy of the array filters, or NULL */
    bool replacement;
    bool positional;
    uint32_t max_comps; /* the longest path, in components */
    up_node_t root;
    up_filter_t *filters;
    uint32_t nfilters;
    mk_matcher_t **matchers; /* $pull matchers, destroyed with the update */
    bson_t **matcher_docs;
    uint32_t nmatchers, capmatchers;
    mk_tree_t mem; /* arena of the compiled form */
};

/* ---- apply context */

typedef struct up_comp {
    const char *s;
    uint32_t len;
    mk_tnode_t *node; /* the element reached (components taken) */
    char num[12];     /* storage for array indexes produced by `$`, `$[]` */
} up_comp_t;

typedef struct up_ctx {
    const mk_update_t *u;
    mk_tree_t *t;
    bool inserting;
    int64_t now_ms;
    bool has_pos;
    char pos[12];
    uint32_t poslen;
    bool changed;
    mk_error_t *err;
    /* The path walked: comps[0..ntaken) exist in the document, the next ncreate do not. */
    up_comp_t *comps;
    uint32_t ntaken, ncreate, cap;
} up_ctx_t;

/* MongoDB's order of fields in an update: byte order, but numbers (no leading zero) by value. */
int up_field_cmp(const char *a, uint32_t alen, const char *b, uint32_t blen);

/* The current element (the last component taken, or the root). */
static inline mk_tnode_t *up_elem(up_ctx_t *c)
{
    return c->ntaken ? c->comps[c->ntaken - 1].node : mk_tree_root(c->t);
}

/* Appends the dotted path comps[from..to) to s. */
void up_path_append(const up_ctx_t *c, uint32_t from, uint32_t to, bson_string_t *s);
/* "_id: 1" of the document being updated, or "no id". */
void up_id_append(up_ctx_t *c, bson_string_t *s);
/* Sets err from a bson_string message (freed) and returns MK_ERR. */
int up_fail(up_ctx_t *c, int code, bson_string_t *msg);

/* A node's value (borrowed view); decoding errors go to c->err. */
int up_value(up_ctx_t *c, mk_tnode_t *n, bson_value_t *v);
static inline bool up_val_decode(const up_val_t *in, bson_value_t *out)
{
    return mk_raw_to_value(in->type, in->data, in->len, out);
}

/* Array modifiers (update_array.c). `arr` is the existing element (NULL when the field is being
 * created: `fresh` then receives the new array's value). *changed reports a modification. */
int up_array_existing(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *arr, bool *changed);
int up_array_fresh(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *fresh);

/* Parsing of array modifiers (update_array.c); the leaf's op, arg, field are set. */
int up_parse_push(mk_update_t *u, up_leaf_t *l, mk_error_t *err);
int up_parse_add_to_set(mk_update_t *u, up_leaf_t *l, mk_error_t *err);
int up_parse_pop(mk_update_t *u, up_leaf_t *l, mk_error_t *err);
int up_parse_pull(mk_update_t *u, up_leaf_t *l, mk_error_t *err);
int up_parse_pull_all(mk_update_t *u, up_leaf_t *l, mk_error_t *err);

/* Renders "field: value" of a raw value into s (server style). */
void up_format_elem(bson_string_t *s, const char *key, uint32_t keylen, const up_val_t *v);

/* Arena allocation of the compiled form (zeroed). */
void *up_alloc(mk_update_t *u, size_t n);
/* Registers a $pull matcher and the document it was compiled from (owned) for destruction;
 * on failure both are destroyed. */
int up_keep_matcher(mk_update_t *u, mk_matcher_t *m, bson_t *doc, mk_error_t *err);

/* Decimal128 arithmetic (update_decimal.c): a + b or a * b where at least one is a decimal
 * and the other any number; the result is a decimal. Identical: both decimals, equal values
 * (1.0 and 1.00 are identical, as MongoDB's no-op check has it). */
int up_decimal_arith(bool multiply, const bson_value_t *a, const bson_value_t *b,
                     bson_value_t *out);
bool up_decimal_identical(const bson_value_t *a, const bson_value_t *b);

/* The replacement path (update_replace.c). */
int up_apply_replacement(const mk_update_t *u, const bson_t *doc, bool inserting, int64_t now_ms,
                         bson_t *out, bool *changed, mk_error_t *err);

/* Storage checks shared by both paths (update_apply.c): a top-level `$` field (only DBRef
 * fields in order are allowed; `idx` indexes root->kids), the type of `_id`, the size limit. */
int up_check_dollar_field(mk_tnode_t *root, uint32_t idx, mk_error_t *err);
int up_check_id_type(const bson_value_t *id, mk_error_t *err);
int up_check_size(uint32_t len, bool inserting, mk_error_t *err);

#endif
