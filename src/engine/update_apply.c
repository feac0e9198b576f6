/* Applying a compiled operator update to a document (see update_int.h).
 *
 * The update tree is walked together with the document tree. The path walked so far is a stack
 * of components: those that exist in the document ("taken") and, after the first missing one,
 * those that would have to be created. Leaves apply their modifier to the element reached, or
 * create the missing components (modifiers that only remove — $unset, $pop, $pull — do
 * nothing on a missing path). This is MongoDB's model, so its rules and messages carry over. */
#include "engine/update_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <meerkat/engine.h>

#include "bson/format.h"
#include "bson/path.h"
#include "bson/value.h"

/* ------------------------------------------------------------------ helpers */

int up_value(up_ctx_t *c, mk_tnode_t *n, bson_value_t *v)
{
    return mk_tnode_value(c->t, n, v, c->err);
}

void up_path_append(const up_ctx_t *c, uint32_t from, uint32_t to, bson_string_t *s)
{
    for (uint32_t i = from; i < to; i++) {
        if (i > from) bson_string_append_c(s, '.');
        bson_string_append_printf(s, "%.*s", (int)c->comps[i].len, c->comps[i].s);
    }
}

void up_id_append(up_ctx_t *c, bson_string_t *s)
{
    mk_tnode_t *id = NULL;
    if (mk_tnode_find(c->t, mk_tree_root(c->t), "_id", 3, &id, NULL, NULL) == MK_OK && id)
        mk_tnode_format(c->t, id, s);
    else
        bson_string_append(s, "no id");
}

int up_fail(up_ctx_t *c, int code, bson_string_t *msg)
{
    mk_error_setc(c->err, code, "%s", msg->str);
    bson_string_free(msg, true);
    return MK_ERR;
}

static bool is_id(const up_comp_t *p)
{
    return p->len == 3 && memcmp(p->s, "_id", 3) == 0;
}

static bool node_key_is(const mk_tnode_t *n, const char *k)
{
    size_t l = strlen(k);
    return n->keylen == l && memcmp(n->key, k, l) == 0;
}

/* MongoDB's storage rule for a top-level field named with a `$`: only the DBRef fields $ref, $id,
 * $db, in that order, are allowed. `idx` is the field's index among the root's children. */
int up_check_dollar_field(mk_tnode_t *root, uint32_t idx, mk_error_t *err)
{
    mk_tnode_t *n = root->kids[idx];
    if (n->keylen == 0 || n->key[0] != '$') return MK_OK;
    mk_tnode_t *cur = n;
    uint32_t at = idx;
    if (node_key_is(cur, "$db")) {
        if (cur->type != BSON_TYPE_UTF8)
            return mk_error_set(err, 10, "InvalidDBRef",
                                "The DBRef $db field must be a String, not a %s",
                                mk_type_name((bson_type_t)cur->type));
        if (at == 0 || !node_key_is(root->kids[at - 1], "$id"))
            return mk_error_set(err, 10, "InvalidDBRef",
                                "Found $db field without a $id before it, which is invalid.");
        cur = root->kids[--at];
    }
    if (node_key_is(cur, "$id")) {
        if (at == 0 || !node_key_is(root->kids[at - 1], "$ref"))
            return mk_error_set(err, 10, "InvalidDBRef",
                                "Found $id field without a $ref before it, which is invalid.");
        cur = root->kids[--at];
    }
    if (node_key_is(cur, "$ref")) {
        if (cur->type != BSON_TYPE_UTF8)
            return mk_error_set(err, 10, "InvalidDBRef",
                                "The DBRef $ref field must be a String, not a %s",
                                mk_type_name((bson_type_t)cur->type));
        if (at + 1 >= root->nkids || !node_key_is(root->kids[at + 1], "$id"))
            return mk_error_set(err, 10, "InvalidDBRef",
                                "The DBRef $ref field must be followed by a $id field");
        return MK_OK;
    }
    return mk_error_setc(err, MK_CODE_DOLLAR_PREFIXED_FIELD_NAME,
                         "The dollar ($) prefixed field '%.*s' in '%.*s' is not allowed in the "
                         "context of an update's replacement document. Consider using an "
                         "aggregation pipeline with $replaceWith.",
                         (int)n->keylen, n->key, (int)n->keylen, n->key);
}

/* Storage validation of a top-level element that a modifier created or changed. */
static int check_top_level(up_ctx_t *c, mk_tnode_t *n)
{
    if (n->keylen == 0 || n->key[0] != '$') return MK_OK;
    mk_tnode_t *root = mk_tree_root(c->t);
    return up_check_dollar_field(root, mk_tnode_index_of(root, n), c->err);
}

/* Encodes a fixed-size scalar into the arena and makes it n's value. */
static int set_scalar(up_ctx_t *c, mk_tnode_t *n, const bson_value_t *v)
{
    uint8_t buf[16];
    uint32_t len;
    uint64_t u64;
    uint32_t u32;
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        u32 = BSON_UINT32_TO_LE((uint32_t)v->value.v_int32);
        memcpy(buf, &u32, 4);
        len = 4;
        break;
    case BSON_TYPE_INT64:
        u64 = BSON_UINT64_TO_LE((uint64_t)v->value.v_int64);
        memcpy(buf, &u64, 8);
        len = 8;
        break;
    case BSON_TYPE_DATE_TIME:
        u64 = BSON_UINT64_TO_LE((uint64_t)v->value.v_datetime);
        memcpy(buf, &u64, 8);
        len = 8;
        break;
    case BSON_TYPE_DOUBLE:
        memcpy(&u64, &v->value.v_double, 8);
        u64 = BSON_UINT64_TO_LE(u64);
        memcpy(buf, &u64, 8);
        len = 8;
        break;
    case BSON_TYPE_TIMESTAMP:
        u32 = BSON_UINT32_TO_LE(v->value.v_timestamp.increment);
        memcpy(buf, &u32, 4);
        u32 = BSON_UINT32_TO_LE(v->value.v_timestamp.timestamp);
        memcpy(buf + 4, &u32, 4);
        len = 8;
        break;
    default:
        return mk_tnode_set_value(c->t, n, v, c->err);
    }
    uint8_t *p = mk_tree_alloc(c->t, len);
    if (!p) return mk_error_nomem(c->err);
    memcpy(p, buf, len);
    mk_tnode_set_raw(n, v->value_type, p, len);
    return MK_OK;
}

static void set_arg(mk_tnode_t *n, const up_leaf_t *l)
{
    mk_tnode_set_raw(n, (bson_type_t)l->arg.type, l->arg.data, l->arg.len);
}

/* ------------------------------------------------------------------ arithmetic */

enum { AR_OK, AR_OVERFLOW };

/* MongoDB's SafeNum: int32 results that overflow become int64; int64 overflow is an error;
 * a double makes the result a double, a decimal a decimal. */
static int arith(bool mul, const bson_value_t *a, const bson_value_t *b, bson_value_t *r)
{
    bson_type_t ta = a->value_type, tb = b->value_type;
    memset(r, 0, sizeof *r);
    if (ta == BSON_TYPE_DECIMAL128 || tb == BSON_TYPE_DECIMAL128) {
        up_decimal_arith(mul, a, b, r);
        return AR_OK;
    }
    if (ta == BSON_TYPE_DOUBLE || tb == BSON_TYPE_DOUBLE) {
        double x = mk_value_as_double(a), y = mk_value_as_double(b);
        r->value_type = BSON_TYPE_DOUBLE;
        r->value.v_double = mul ? x * y : x + y;
        return AR_OK;
    }
    int64_t x = ta == BSON_TYPE_INT32 ? a->value.v_int32 : a->value.v_int64;
    int64_t y = tb == BSON_TYPE_INT32 ? b->value.v_int32 : b->value.v_int64;
    int64_t z;
    if (mul ? __builtin_mul_overflow(x, y, &z) : __builtin_add_overflow(x, y, &z))
        return AR_OVERFLOW;
    if (ta == BSON_TYPE_INT32 && tb == BSON_TYPE_INT32 && z >= INT32_MIN && z <= INT32_MAX) {
        r->value_type = BSON_TYPE_INT32;
        r->value.v_int32 = (int32_t)z;
    } else {
        r->value_type = BSON_TYPE_INT64;
        r->value.v_int64 = z;
    }
    return AR_OK;
}

/* Same type and value (MongoDB's SafeNum::isIdentical). */
static bool identical_number(const bson_value_t *a, const bson_value_t *b)
{
    if (a->value_type != b->value_type) return false;
    switch (a->value_type) {
    case BSON_TYPE_INT32:
        return a->value.v_int32 == b->value.v_int32;
    case BSON_TYPE_INT64:
        return a->value.v_int64 == b->value.v_int64;
    case BSON_TYPE_DOUBLE:
        return a->value.v_double == b->value.v_double;
    case BSON_TYPE_DECIMAL128:
        return up_decimal_identical(a, b);
    default:
        return false;
    }
}

static int bits(const up_leaf_t *l, const bson_value_t *start, bson_value_t *r)
{
    *r = *start;
    for (uint32_t i = 0; i < l->nbits; i++) {
        const bson_value_t *o = &l->bits[i].operand;
        bool wide = r->value_type == BSON_TYPE_INT64 || o->value_type == BSON_TYPE_INT64;
        int64_t x = r->value_type == BSON_TYPE_INT32 ? r->value.v_int32 : r->value.v_int64;
        int64_t y = o->value_type == BSON_TYPE_INT32 ? o->value.v_int32 : o->value.v_int64;
        int64_t z = l->bits[i].op == BIT_AND  ? (x & y)
                    : l->bits[i].op == BIT_OR ? (x | y)
                                              : (x ^ y);
        if (wide) {
            r->value_type = BSON_TYPE_INT64;
            r->value.v_int64 = z;
        } else {
            r->value_type = BSON_TYPE_INT32;
            r->value.v_int32 = (int32_t)z;
        }
    }
    return MK_OK;
}

static void current_time(const up_ctx_t *c, const up_leaf_t *l, bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    if (l->as_date) {
        v->value_type = BSON_TYPE_DATE_TIME;
        v->value.v_datetime = c->now_ms;
    } else {
        /* Seconds, and the milliseconds as the increment so values differ within a second. */
        int64_t ms = c->now_ms < 0 ? 0 : c->now_ms;
        v->value_type = BSON_TYPE_TIMESTAMP;
        v->value.v_timestamp.timestamp = (uint32_t)(ms / 1000);
        v->value.v_timestamp.increment = (uint32_t)(ms % 1000) + 1;
    }
}

/* ------------------------------------------------------------------ leaves */

/* The value a creating modifier gives a new element. */
static int set_new_value(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *n)
{
    bson_value_t v;
    switch (l->op) {
    case OP_MUL: {
        bson_value_t zero = {.value_type = BSON_TYPE_INT32};
        arith(true, &l->num, &zero, &v); /* 0 of the multiplier's type; cannot overflow */
        return set_scalar(c, n, &v);
    }
    case OP_CURRENT_DATE:
        current_time(c, l, &v);
        return set_scalar(c, n, &v);
    case OP_BIT: {
        bson_value_t zero = {.value_type = BSON_TYPE_INT32};
        bits(l, &zero, &v);
        return set_scalar(c, n, &v);
    }
    case OP_PUSH:
    case OP_ADD_TO_SET:
        return up_array_fresh(c, l, n);
    default: /* $set, $setOnInsert, $inc, $min, $max */
        set_arg(n, l);
        return MK_OK;
    }
}

static int temp_comps(up_ctx_t *c, mk_tree_comp_t **out)
{
    mk_tree_comp_t *tc = mk_tree_alloc(c->t, c->ncreate * sizeof *tc);
    if (!tc) return mk_error_nomem(c->err);
    for (uint32_t i = 0; i < c->ncreate; i++) {
        tc[i].s = c->comps[c->ntaken + i].s;
        tc[i].len = c->comps[c->ntaken + i].len;
    }
    *out = tc;
    return MK_OK;
}

/* Creates the missing components under the current element, gives the new element its value
 * (the modifier's, or src's for a $rename), then checks what was created. */
static int create_path(up_ctx_t *c, const up_leaf_t *l, const mk_tnode_t *src)
{
    mk_tree_comp_t *tc = NULL;
    mk_tnode_t *first, *leaf;
    int rc = temp_comps(c, &tc);
    if (rc == MK_OK)
        rc = mk_tree_create_path(c->t, up_elem(c), tc, c->ncreate, &leaf, &first, c->err);
    if (rc != MK_OK) return rc;
    if (src)
        mk_tnode_copy_value(leaf, src);
    else if ((rc = set_new_value(c, l, leaf)) != MK_OK)
        return rc;
    if (c->ntaken == 0 && (rc = check_top_level(c, first)) != MK_OK) return rc;
    if (c->ntaken > 0 && is_id(&c->comps[0])) {
        /* Adding to an existing _id ('_id.x') modifies it. */
        bson_string_t *s = bson_string_new("Updating the path '");
        up_path_append(c, 0, c->ntaken, s);
        bson_string_append(s, "' to ");
        mk_tnode_format(c->t, up_elem(c), s);
        bson_string_append(s, " would modify the immutable field '_id'");
        return up_fail(c, MK_CODE_IMMUTABLE_FIELD, s);
    }
    c->changed = true;
    return MK_OK;
}

/* The checks after a modifier changed an existing element. */
static int changed_existing(up_ctx_t *c)
{
    if (is_id(&c->comps[0])) {
        bson_string_t *s = bson_string_new("Performing an update on the path '");
        up_path_append(c, 0, c->ntaken, s);
        bson_string_append(s, "' would modify the immutable field '_id'");
        return up_fail(c, MK_CODE_IMMUTABLE_FIELD, s);
    }
    if (c->ntaken == 1) {
        int rc = check_top_level(c, up_elem(c));
        if (rc != MK_OK) return rc;
    }
    c->changed = true;
    return MK_OK;
}

static int apply_missing(up_ctx_t *c, const up_leaf_t *l)
{
    switch (l->op) {
    case OP_UNSET:
        return MK_OK;
    case OP_POP:
    case OP_PULL:
    case OP_PULL_ALL: {
        /* Nothing to remove, but the path must be one that could exist. */
        mk_tnode_t *e = up_elem(c);
        const up_comp_t *next = &c->comps[c->ntaken];
        if (e->type == BSON_TYPE_DOCUMENT ||
            (e->type == BSON_TYPE_ARRAY && mk_path_component_index(next->s, next->len, NULL)))
            return MK_OK;
        bson_string_t *s = bson_string_new(NULL);
        bson_string_append_printf(s, "Cannot use the part (%.*s) of (", (int)next->len, next->s);
        up_path_append(c, 0, c->ntaken, s);
        bson_string_append_c(s, '.');
        up_path_append(c, c->ntaken, c->ntaken + c->ncreate, s);
        bson_string_append(s, ") to traverse the element ({");
        mk_tnode_format(c->t, e, s);
        bson_string_append(s, "})");
        return up_fail(c, MK_CODE_PATH_NOT_VIABLE, s);
    }
    default:
        return create_path(c, l, NULL);
    }
}

static int non_numeric(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *e)
{
    bson_string_t *s = bson_string_new(NULL);
    bson_string_append_printf(s, "Cannot apply %s to a value of non-numeric type. {", l->opname);
    up_id_append(c, s);
    bson_string_append_printf(s, "} has the field '%.*s' of non-numeric type %s",
                              (int)c->comps[c->ntaken - 1].len, c->comps[c->ntaken - 1].s,
                              mk_type_name((bson_type_t)e->type));
    return up_fail(c, MK_CODE_TYPE_MISMATCH, s);
}

static int apply_arith(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *e, bool *changed)
{
    bson_value_t cur, res;
    if (!mk_type_is_number((bson_type_t)e->type)) return non_numeric(c, l, e);
    int rc = up_value(c, e, &cur);
    if (rc != MK_OK) return rc;
    if (arith(l->op == OP_MUL, &l->num, &cur, &res) == AR_OVERFLOW) {
        bson_string_t *s = bson_string_new(NULL);
        bson_string_append_printf(
            s, "Failed to apply %s operations to current value (%s%" PRId64 ") for document {",
            l->opname, cur.value_type == BSON_TYPE_INT32 ? "(NumberInt)" : "(NumberLong)",
            cur.value_type == BSON_TYPE_INT32 ? (int64_t)cur.value.v_int32 : cur.value.v_int64);
        up_id_append(c, s);
        bson_string_append(s, "}");
        return up_fail(c, MK_CODE_BAD_VALUE, s);
    }
    if (identical_number(&cur, &res)) return MK_OK;
    *changed = true;
    return set_scalar(c, e, &res);
}

static int apply_bit(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *e, bool *changed)
{
    bson_value_t cur, res;
    if (e->type != BSON_TYPE_INT32 && e->type != BSON_TYPE_INT64) {
        bson_string_t *s = bson_string_new("Cannot apply $bit to a value of non-integral type.");
        up_id_append(c, s);
        bson_string_append_printf(s, " has the field %.*s of non-integer type %s",
                                  (int)c->comps[c->ntaken - 1].len, c->comps[c->ntaken - 1].s,
                                  mk_type_name((bson_type_t)e->type));
        return up_fail(c, MK_CODE_BAD_VALUE, s);
    }
    int rc = up_value(c, e, &cur);
    if (rc != MK_OK) return rc;
    bits(l, &cur, &res);
    if (identical_number(&cur, &res)) return MK_OK;
    *changed = true;
    return set_scalar(c, e, &res);
}

static int apply_existing(up_ctx_t *c, const up_leaf_t *l)
{
    mk_tnode_t *e = up_elem(c);
    bool changed = false;
    int rc = MK_OK;
    switch (l->op) {
    case OP_SET:
    case OP_SET_ON_INSERT: {
        const uint8_t *d;
        uint32_t len;
        if (e->type == l->arg.type) {
            rc = mk_tnode_bytes(c->t, e, &d, &len, c->err);
            if (rc != MK_OK) return rc;
            if (len == l->arg.len && (len == 0 || memcmp(d, l->arg.data, len) == 0)) return MK_OK;
        }
        set_arg(e, l);
        changed = true;
        break;
    }
    case OP_UNSET: {
        mk_tnode_t *parent = c->ntaken > 1 ? c->comps[c->ntaken - 2].node : mk_tree_root(c->t);
        /* Array elements become null, so that positions do not shift. */
        if (parent->type == BSON_TYPE_ARRAY)
            mk_tnode_set_null(e);
        else
            mk_tnode_remove(parent, mk_tnode_index_of(parent, e));
        if (is_id(&c->comps[0])) return changed_existing(c);
        c->changed = true;
        return MK_OK;
    }
    case OP_INC:
    case OP_MUL:
        rc = apply_arith(c, l, e, &changed);
        break;
    case OP_MIN:
    case OP_MAX: {
        bson_value_t cur, arg;
        if ((rc = up_value(c, e, &cur)) != MK_OK) return rc;
        up_val_decode(&l->arg, &arg);
        int cmp = mk_value_cmp(&cur, &arg);
        if (cmp == 0 || (l->op == OP_MAX ? cmp > 0 : cmp < 0)) return MK_OK;
        set_arg(e, l);
        changed = true;
        break;
    }
    case OP_CURRENT_DATE: {
        bson_value_t v;
        current_time(c, l, &v);
        rc = set_scalar(c, e, &v);
        changed = true;
        break;
    }
    case OP_BIT:
        rc = apply_bit(c, l, e, &changed);
        break;
    default:
        rc = up_array_existing(c, l, e, &changed);
        break;
    }
    if (rc == MK_OK && changed) rc = changed_existing(c);
    return rc;
}

/* $rename: applied at the destination. The value moves; the source is then removed. */
static int apply_rename(up_ctx_t *c, const up_leaf_t *l)
{
    mk_tnode_t *root = mk_tree_root(c->t);
    mk_tnode_t **chain = mk_tree_alloc(c->t, l->nfrom * sizeof *chain);
    if (!chain) return mk_error_nomem(c->err);
    mk_tnode_t *cur = root;
    for (uint32_t i = 0; i < l->nfrom; i++) {
        const mk_tree_comp_t *p = &l->from[i];
        bool viable = cur->type == BSON_TYPE_DOCUMENT ||
                      (cur->type == BSON_TYPE_ARRAY && mk_path_component_index(p->s, p->len, NULL));
        if (!viable) {
            bson_string_t *s = bson_string_new(NULL);
            bson_string_append_printf(s,
                                      "Cannot use the part (%.*s) of (%.*s) to traverse the "
                                      "element ({",
                                      (int)p->len, p->s, (int)l->fieldlen, l->field);
            mk_tnode_format(c->t, cur, s);
            bson_string_append(s, "})");
            return up_fail(c, MK_CODE_PATH_NOT_VIABLE, s);
        }
        int rc = mk_tnode_find(c->t, cur, p->s, p->len, &cur, NULL, c->err);
        if (rc != MK_OK) return rc;
        if (!cur) return MK_OK; /* nothing to rename */
        chain[i] = cur;
    }
    mk_tnode_t *src = chain[l->nfrom - 1];
    bson_value_t to;
    up_val_decode(&l->arg, &to);

    /* Neither the source nor the destination may be inside an array. */
    for (uint32_t i = l->nfrom - 1; i-- > 0;) {
        if (chain[i]->type != BSON_TYPE_ARRAY) continue;
        bson_string_t *s = bson_string_new(NULL);
        bson_string_append_printf(s,
                                  "The source field cannot be an array element, '%.*s' in doc "
                                  "with ",
                                  (int)l->fieldlen, l->field);
        up_id_append(c, s);
        bson_string_append_printf(s, " has an array field called '%.*s'", (int)l->from[i].len,
                                  l->from[i].s);
        return up_fail(c, MK_CODE_BAD_VALUE, s);
    }
    uint32_t top = c->ncreate ? c->ntaken : c->ntaken - 1;
    for (uint32_t i = top; i-- > 0;) {
        if (c->comps[i].node->type != BSON_TYPE_ARRAY) continue;
        bson_string_t *s = bson_string_new(NULL);
        bson_string_append_printf(s,
                                  "The destination field cannot be an array element, '%.*s' in "
                                  "doc with ",
                                  (int)to.value.v_utf8.len, to.value.v_utf8.str);
        up_id_append(c, s);
        bson_string_append_printf(s, " has an array field called '%.*s'", (int)c->comps[i].len,
                                  c->comps[i].s);
        return up_fail(c, MK_CODE_BAD_VALUE, s);
    }

    int rc;
    if (c->ncreate) {
        if ((rc = create_path(c, l, src)) != MK_OK) return rc;
    } else {
        mk_tnode_t *dst = up_elem(c);
        bool same;
        if ((rc = mk_tnode_binary_equal(c->t, dst, src, &same, c->err)) != MK_OK) return rc;
        if (!same) {
            mk_tnode_copy_value(dst, src);
            if ((rc = changed_existing(c)) != MK_OK) return rc;
        }
    }

    if (l->from[0].len == 3 && memcmp(l->from[0].s, "_id", 3) == 0)
        return mk_error_setc(c->err, MK_CODE_IMMUTABLE_FIELD,
                             "Performing an update on the path '%.*s' would modify the immutable "
                             "field '_id'",
                             (int)l->fieldlen, l->field);
    mk_tnode_t *parent = l->nfrom > 1 ? chain[l->nfrom - 2] : root;
    mk_tnode_remove(parent, mk_tnode_index_of(parent, src));
    c->changed = true;
    return MK_OK;
}

static int apply_leaf(up_ctx_t *c, const up_leaf_t *l)
{
    switch (l->op) {
    case OP_PLACEHOLDER:
        return MK_OK;
    case OP_SET_ON_INSERT:
        if (!c->inserting) return MK_OK;
        break;
    case OP_RENAME:
        return apply_rename(c, l);
    default:
        break;
    }
    return c->ncreate ? apply_missing(c, l) : apply_existing(c, l);
}

/* ------------------------------------------------------------------ internal nodes */

static int apply_node(up_ctx_t *c, const up_node_t *n);

/* Once a child created the missing part of the path, it exists: take it. */
static int advance(up_ctx_t *c)
{
    while (c->ncreate) {
        up_comp_t *p = &c->comps[c->ntaken];
        mk_tnode_t *found;
        int rc = mk_tnode_find(c->t, up_elem(c), p->s, p->len, &found, NULL, c->err);
        if (rc != MK_OK) return rc;
        if (!found) break;
        p->node = found;
        c->ntaken++;
        c->ncreate--;
    }
    return MK_OK;
}

/* Applies `child` to the field `name` of the current element. `copy` stores the name in the
 * component (for names that are not in the update's bytes). */
static int apply_child(up_ctx_t *c, const up_node_t *child, const char *name, uint32_t len,
                       bool copy)
{
    uint32_t idx = c->ntaken + c->ncreate;
    if (idx >= c->cap) return mk_error_setc(c->err, MK_CODE_INTERNAL, "update path too deep");
    up_comp_t *p = &c->comps[idx];
    if (copy && len < sizeof p->num) {
        memcpy(p->num, name, len);
        name = p->num;
    }
    p->s = name;
    p->len = len;
    p->node = NULL;
    if (c->ncreate == 0) {
        int rc = mk_tnode_find(c->t, up_elem(c), name, len, &p->node, NULL, c->err);
        if (rc != MK_OK) return rc;
    }
    if (p->node)
        c->ntaken++;
    else
        c->ncreate++;
    int rc = apply_node(c, child);
    if (c->ncreate)
        c->ncreate--;
    else
        c->ntaken--;
    if (rc != MK_OK) return rc;
    return advance(c);
}

/* Two updates meeting at the same place (`$` resolving to a named field, `$[]` and `$[id]`
 * selecting the same element) are merged, unless both modify the same path. */
static int merge(up_ctx_t *c, const up_node_t *a, const up_node_t *b, bson_string_t *path,
                 const up_node_t **out)
{
    if (a->kind != b->kind || a->kind == UN_LEAF)
        return mk_error_setc(c->err, MK_CODE_CONFLICTING_UPDATE_OPERATORS,
                             "Update created a conflict at '%s'", path->str);
    up_node_t *m = mk_tree_alloc(c->t, sizeof *m);
    up_child_t *kids = mk_tree_alloc(c->t, ((size_t)a->nkids + b->nkids) * sizeof *kids + 1);
    if (!m || !kids) return mk_error_nomem(c->err);
    memset(m, 0, sizeof *m);
    m->kind = a->kind;
    m->kids = kids;
    uint32_t i = 0, j = 0, base = path->len;
    while (i < a->nkids || j < b->nkids) {
        int cmp = i == a->nkids   ? 1
                  : j == b->nkids ? -1
                                  : up_field_cmp(a->kids[i].name, a->kids[i].len, b->kids[j].name,
                                                 b->kids[j].len);
        if (cmp < 0) {
            kids[m->nkids++] = a->kids[i++];
        } else if (cmp > 0) {
            kids[m->nkids++] = b->kids[j++];
        } else {
            up_child_t k = a->kids[i];
            bson_string_append_printf(path, ".%.*s", (int)k.len, k.name);
            int rc = merge(c, a->kids[i].node, b->kids[j].node, path, (const up_node_t **)&k.node);
            bson_string_truncate(path, base);
            if (rc != MK_OK) return rc;
            kids[m->nkids++] = k;
            i++;
            j++;
        }
    }
    m->cap = m->nkids;
    if (a->positional && b->positional) {
        bson_string_append(path, ".$");
        int rc = merge(c, a->positional, b->positional, path, (const up_node_t **)&m->positional);
        bson_string_truncate(path, base);
        if (rc != MK_OK) return rc;
    } else {
        m->positional = a->positional ? a->positional : b->positional;
    }
    *out = m;
    return MK_OK;
}

static int merge_at(up_ctx_t *c, const up_node_t *a, const up_node_t *b, const char *name,
                    uint32_t len, const up_node_t **out)
{
    bson_string_t *path = bson_string_new(NULL);
    up_path_append(c, 0, c->ntaken + c->ncreate, path);
    bson_string_append_printf(path, "%s%.*s", path->len ? "." : "", (int)len, name);
    int rc = merge(c, a, b, path, out);
    bson_string_free(path, true);
    return rc;
}

static int apply_object(up_ctx_t *c, const up_node_t *n)
{
    bool positional = n->positional != NULL;
    if (positional && !c->has_pos)
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE,
                             "The positional operator did not find the match needed from the "
                             "query.");
    int rc;
    for (uint32_t i = 0; i < n->nkids; i++) {
        const up_child_t *k = &n->kids[i];
        if (positional) {
            int cmp = up_field_cmp(c->pos, c->poslen, k->name, k->len);
            if (cmp == 0) {
                const up_node_t *m;
                if ((rc = merge_at(c, k->node, n->positional, k->name, k->len, &m)) != MK_OK ||
                    (rc = apply_child(c, m, k->name, k->len, false)) != MK_OK)
                    return rc;
                positional = false;
                continue;
            }
            if (cmp < 0) {
                if ((rc = apply_child(c, n->positional, c->pos, c->poslen, true)) != MK_OK)
                    return rc;
                positional = false;
            }
        }
        if ((rc = apply_child(c, k->node, k->name, k->len, false)) != MK_OK) return rc;
    }
    if (positional) return apply_child(c, n->positional, c->pos, c->poslen, true);
    return MK_OK;
}

static const up_filter_t *filter_for(const mk_update_t *u, const char *id, uint32_t len)
{
    for (uint32_t i = 0; i < u->nfilters; i++)
        if (u->filters[i].idlen == len && !memcmp(u->filters[i].id, id, len)) return &u->filters[i];
    return NULL;
}

static int apply_array(up_ctx_t *c, const up_node_t *n)
{
    if (c->ncreate) {
        bson_string_t *s = bson_string_new("The path '");
        up_path_append(c, 0, c->ntaken + c->ncreate, s);
        bson_string_append(s, "' must exist in the document in order to apply array updates.");
        return up_fail(c, MK_CODE_BAD_VALUE, s);
    }
    mk_tnode_t *arr = up_elem(c);
    if (arr->type != BSON_TYPE_ARRAY) {
        bson_string_t *s = bson_string_new("Cannot apply array updates to non-array element ");
        mk_tnode_format(c->t, arr, s);
        return up_fail(c, MK_CODE_BAD_VALUE, s);
    }
    int rc = mk_tnode_expand(c->t, arr, c->err);
    if (rc != MK_OK) return rc;
    uint32_t count = arr->nkids;
    for (uint32_t i = 0; i < count && i < arr->nkids; i++) {
        mk_tnode_t *e = arr->kids[i];
        char num[12];
        uint32_t numlen = (uint32_t)snprintf(num, sizeof num, "%" PRIu32, i);
        const up_node_t *pending_node = NULL;
        bool have_value = false;
        bson_value_t v;
        for (uint32_t k = 0; k < n->nkids; k++) {
            const up_child_t *ch = &n->kids[k];
            bool match = ch->len == 0;
            if (!match) {
                const up_filter_t *f = filter_for(c->u, ch->name, ch->len);
                if (!f) return mk_error_setc(c->err, MK_CODE_INTERNAL, "array filter missing");
                if (!have_value && (rc = up_value(c, e, &v)) != MK_OK) return rc;
                have_value = true;
                match = mk_matcher_match_value(f->matcher, f->id, &v);
            }
            if (!match) continue;
            if (pending_node) {
                if ((rc = merge_at(c, pending_node, ch->node, num, numlen, &pending_node)) != MK_OK)
                    return rc;
            } else {
                pending_node = ch->node;
            }
        }
        if (!pending_node) continue;
        up_comp_t *p = &c->comps[c->ntaken];
        if (c->ntaken >= c->cap)
            return mk_error_setc(c->err, MK_CODE_INTERNAL, "update path too deep");
        memcpy(p->num, num, numlen + 1);
        p->s = p->num;
        p->len = numlen;
        p->node = e;
        c->ntaken++;
        rc = apply_node(c, pending_node);
        c->ntaken--;
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

static int apply_node(up_ctx_t *c, const up_node_t *n)
{
    switch (n->kind) {
    case UN_LEAF:
        return apply_leaf(c, n->leaf);
    case UN_ARRAY:
        return apply_array(c, n);
    default:
        return apply_object(c, n);
    }
}

/* ------------------------------------------------------------------ entry points */

static int copy_doc(const bson_t *doc, bson_t *out, mk_error_t *err)
{
    uint8_t *buf = bson_reserve_buffer(out, doc->len);
    if (!buf) return mk_error_nomem(err);
    memcpy(buf, bson_get_data(doc), doc->len);
    return MK_OK;
}

static void id_first(mk_tnode_t *root)
{
    for (uint32_t i = 1; i < root->nkids; i++) {
        mk_tnode_t *k = root->kids[i];
        if (k->keylen == 3 && memcmp(k->key, "_id", 3) == 0) {
            memmove(root->kids + 1, root->kids, i * sizeof *root->kids);
            root->kids[0] = k;
            return;
        }
    }
}

int up_check_id_type(const bson_value_t *id, mk_error_t *err)
{
    bson_type_t t = id->value_type;
    if (t == BSON_TYPE_ARRAY || t == BSON_TYPE_REGEX || t == BSON_TYPE_UNDEFINED)
        return mk_error_setc(err, MK_CODE_INVALID_ID_FIELD, "The '_id' value cannot be of type %s",
                             mk_type_name(t));
    return MK_OK;
}

int up_check_size(uint32_t len, bool inserting, mk_error_t *err)
{
    if (len <= MK_MAX_BSON_SIZE) return MK_OK;
    if (inserting)
        return mk_error_set(err, 17420, "Location17420", "Document to upsert is larger than %d",
                            MK_MAX_BSON_SIZE);
    return mk_error_set(err, 17419, "Location17419",
                        "Resulting document after update is larger than %d", MK_MAX_BSON_SIZE);
}

int mk_update_apply(const mk_update_t *u, const bson_t *doc, const mk_match_details_t *position,
                    bool inserting, int64_t now_ms, bson_t *out, bool *changed, mk_error_t *err)
{
    *changed = false;
    if (u->replacement) return up_apply_replacement(u, doc, inserting, now_ms, out, changed, err);

    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    up_ctx_t c = {.u = u, .t = &t, .inserting = inserting, .now_ms = now_ms, .err = err};
    c.cap = u->max_comps + 1;
    c.comps = mk_tree_alloc(&t, c.cap * sizeof *c.comps);
    int rc = c.comps ? MK_OK : mk_error_nomem(err);
    if (position && position->has_position) {
        c.has_pos = true;
        c.poslen = (uint32_t)snprintf(c.pos, sizeof c.pos, "%" PRIu32, position->position);
    }
    if (rc == MK_OK) rc = apply_object(&c, &u->root);
    if (rc == MK_OK && !c.changed) rc = copy_doc(doc, out, err);
    if (rc == MK_OK && c.changed) {
        mk_tnode_t *root = mk_tree_root(&t);
        id_first(root);
        if (inserting && root->nkids && root->kids[0]->keylen == 3 &&
            !memcmp(root->kids[0]->key, "_id", 3)) {
            bson_value_t id;
            rc = mk_tnode_value(&t, root->kids[0], &id, err);
            if (rc == MK_OK) rc = up_check_id_type(&id, err);
        }
        if (rc == MK_OK) rc = mk_tree_to_bson(&t, out, err);
        if (rc == MK_OK) rc = up_check_size(out->len, inserting, err);
        /* A modifier may have rewritten a value with itself (an already sorted $push $sort, an
         * array element $unset twice): only a different result counts as a change. */
        *changed = rc == MK_OK && (out->len != doc->len ||
                                   memcmp(bson_get_data(out), bson_get_data(doc), doc->len) != 0);
    }
    mk_tree_destroy(&t);
    return rc;
}
