/* The document an upsert inserts: the filter's equality conditions, then the update. */
#include "engine/update_int.h"

#include <stdlib.h>
#include <string.h>

#include <meerkat/engine.h>

#include "bson/value.h"

typedef struct equality {
    const char *path;
    uint32_t len;
    bson_value_t value; /* borrowed from the filter */
} equality_t;

typedef struct equalities {
    equality_t *items;
    uint32_t n, cap;
    bool only_id; /* a replacement takes only `_id` from the filter */
} equalities_t;

static bool key_is(const mk_raw_iter_t *it, const char *name)
{
    size_t n = strlen(name);
    return it->keylen == n && memcmp(it->key, name, n) == 0;
}

/* True when path a (alen) is b or a prefix of it at a component boundary. */
static bool path_prefix(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    return alen <= blen && memcmp(a, b, alen) == 0 && (alen == blen || b[alen] == '.');
}

static int add(equalities_t *e, const char *path, uint32_t len, const bson_value_t *v,
               mk_error_t *err)
{
    if (e->only_id) {
        /* Only `_id` matters, and it must be given whole. */
        if (!path_prefix("_id", 3, path, len)) return MK_OK;
        if (len > 3)
            return mk_error_set(err, 111, "NotExactValueField",
                                "field at '_id' must be exactly specified, field at sub-path "
                                "'%.*s'found",
                                (int)len, path);
    }
    for (uint32_t i = 0; i < e->n; i++) {
        const equality_t *o = &e->items[i];
        if (o->len == len && memcmp(o->path, path, len) == 0)
            return mk_error_setc(err, MK_CODE_NOT_SINGLE_VALUE_FIELD,
                                 "cannot infer query fields to set, path '%.*s' is matched twice",
                                 (int)len, path);
        bool longer_new = path_prefix(o->path, o->len, path, len);
        if (longer_new || path_prefix(path, len, o->path, o->len)) {
            const char *lp = longer_new ? path : o->path, *sp = longer_new ? o->path : path;
            uint32_t ll = longer_new ? len : o->len, sl = longer_new ? o->len : len;
            return mk_error_setc(err, MK_CODE_NOT_SINGLE_VALUE_FIELD,
                                 "cannot infer query fields to set, both paths '%.*s' and '%.*s' "
                                 "are matched",
                                 (int)ll, lp, (int)sl, sp);
        }
    }
    if (e->n == e->cap) {
        uint32_t cap = e->cap ? e->cap * 2 : 8;
        equality_t *items = realloc(e->items, cap * sizeof *items);
        if (!items) return mk_error_nomem(err);
        e->items = items;
        e->cap = cap;
    }
    e->items[e->n++] = (equality_t){path, len, *v};
    return MK_OK;
}

static int collect(equalities_t *e, const uint8_t *data, uint32_t len, int depth, mk_error_t *err);

/* The clauses of $and (all) or $or (when it has exactly one). */
static int collect_clauses(equalities_t *e, const mk_raw_iter_t *it, bool all, int depth,
                           mk_error_t *err)
{
    if (it->type != BSON_TYPE_ARRAY) return MK_OK;
    mk_raw_iter_t sub;
    bool bad;
    uint32_t n = 0;
    mk_raw_iter_init(&sub, it->value, it->vlen);
    while (mk_raw_iter_next(&sub, &bad)) n++;
    if (!all && n != 1) return MK_OK;
    mk_raw_iter_init(&sub, it->value, it->vlen);
    while (mk_raw_iter_next(&sub, &bad)) {
        if (sub.type != BSON_TYPE_DOCUMENT) continue;
        int rc = collect(e, sub.value, sub.vlen, depth + 1, err);
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

/* The equalities of an operator object { $eq: 1, $in: [2], $all: [3] }. */
static int collect_operators(equalities_t *e, const mk_raw_iter_t *field, mk_error_t *err)
{
    mk_raw_iter_t op;
    bool bad;
    mk_raw_iter_init(&op, field->value, field->vlen);
    while (mk_raw_iter_next(&op, &bad)) {
        bson_value_t v;
        if (key_is(&op, "$eq")) {
            mk_raw_to_value(op.type, op.value, op.vlen, &v);
            int rc = add(e, field->key, field->keylen, &v, err);
            if (rc != MK_OK) return rc;
            continue;
        }
        bool in = key_is(&op, "$in"), all = key_is(&op, "$all");
        if ((!in && !all) || op.type != BSON_TYPE_ARRAY) continue;
        mk_raw_iter_t el;
        bool elbad;
        uint32_t n = 0;
        mk_raw_iter_init(&el, op.value, op.vlen);
        while (mk_raw_iter_next(&el, &elbad)) n++;
        if (in && n != 1) continue; /* only a one-element $in is an equality */
        mk_raw_iter_init(&el, op.value, op.vlen);
        while (mk_raw_iter_next(&el, &elbad)) {
            if (el.type == BSON_TYPE_REGEX) continue;
            if (el.type == BSON_TYPE_DOCUMENT) {
                mk_raw_iter_t first;
                bool fb;
                mk_raw_iter_init(&first, el.value, el.vlen);
                if (mk_raw_iter_next(&first, &fb) && key_is(&first, "$elemMatch")) continue;
            }
            mk_raw_to_value(el.type, el.value, el.vlen, &v);
            int rc = add(e, field->key, field->keylen, &v, err);
            if (rc != MK_OK) return rc;
        }
    }
    return MK_OK;
}

static int collect(equalities_t *e, const uint8_t *data, uint32_t len, int depth, mk_error_t *err)
{
    mk_raw_iter_t it;
    bool bad;
    if (depth > MK_MAX_DEPTH || !mk_raw_iter_init(&it, data, len))
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "invalid filter");
    while (mk_raw_iter_next(&it, &bad)) {
        int rc = MK_OK;
        if (it.keylen && it.key[0] == '$') {
            if (key_is(&it, "$and"))
                rc = collect_clauses(e, &it, true, depth, err);
            else if (key_is(&it, "$or"))
                rc = collect_clauses(e, &it, false, depth, err);
            else if (key_is(&it, "$expr"))
                rc = mk_error_set(err, 224, "QueryFeatureNotAllowed",
                                  "$expr is not allowed in the query predicate for an upsert");
        } else if (it.type == BSON_TYPE_REGEX) {
            /* a pattern match, not an equality */
        } else {
            bool operators = false;
            if (it.type == BSON_TYPE_DOCUMENT) {
                mk_raw_iter_t first;
                bool fb;
                mk_raw_iter_init(&first, it.value, it.vlen);
                operators = mk_raw_iter_next(&first, &fb) && first.keylen && first.key[0] == '$';
            }
            if (operators) {
                rc = collect_operators(e, &it, err);
            } else {
                bson_value_t v;
                mk_raw_to_value(it.type, it.value, it.vlen, &v);
                rc = add(e, it.key, it.keylen, &v, err);
            }
        }
        if (rc != MK_OK) return rc;
    }
    if (bad) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in filter");
    return MK_OK;
}

static int seed(const bson_t *filter, bool only_id, bson_t *out, mk_error_t *err)
{
    equalities_t e = {.only_id = only_id};
    int rc = collect(&e, bson_get_data(filter), filter->len, 0, err);
    mk_tree_t t;
    mk_tree_init(&t);
    for (uint32_t i = 0; rc == MK_OK && i < e.n; i++)
        rc = mk_tree_set(&t, e.items[i].path, e.items[i].len, &e.items[i].value, NULL, err);
    if (rc == MK_OK) {
        mk_tnode_t *root = mk_tree_root(&t);
        for (uint32_t i = 1; i < root->nkids; i++) {
            mk_tnode_t *k = root->kids[i];
            if (k->keylen == 3 && !memcmp(k->key, "_id", 3)) {
                memmove(root->kids + 1, root->kids, i * sizeof *root->kids);
                root->kids[0] = k;
                break;
            }
        }
        rc = mk_tree_to_bson(&t, out, err);
    }
    mk_tree_destroy(&t);
    free(e.items);
    return rc;
}

int mk_update_upsert_seed(const bson_t *filter, bson_t *out, mk_error_t *err)
{
    return seed(filter, false, out, err);
}

int mk_update_upsert_doc(const mk_update_t *u, const bson_t *filter, int64_t now_ms, bson_t *out,
                         mk_error_t *err)
{
    bson_t s;
    bson_init(&s);
    bool changed;
    int rc = seed(filter, u->replacement, &s, err);
    if (rc == MK_OK) rc = mk_update_apply(u, &s, NULL, true, now_ms, out, &changed, err);
    bson_destroy(&s);
    return rc;
}
