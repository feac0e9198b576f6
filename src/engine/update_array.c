/* Array update modifiers: $push (with $each, $slice, $sort, $position), $addToSet, $pop,
 * $pull and $pullAll — parsing and applying, with MongoDB's messages. */
#include "engine/update_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bson/format.h"
#include "bson/path.h"
#include "bson/value.h"

/* The name the $pull conditions are compiled under ({ v: { $gte: 6 } }). */
#define PULL_FIELD "v"

/* ------------------------------------------------------------------ parsing helpers */

static bool key_is(const mk_raw_iter_t *it, const char *name)
{
    size_t n = strlen(name);
    return it->keylen == n && memcmp(it->key, name, n) == 0;
}

/* The elements of a raw array as values. */
static int array_values(mk_update_t *u, const uint8_t *data, uint32_t len, up_val_t **out,
                        uint32_t *n, mk_error_t *err)
{
    mk_raw_iter_t it;
    bool bad;
    uint32_t count = 0;
    *out = NULL;
    *n = 0;
    if (!mk_raw_iter_init(&it, data, len))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in update");
    while (mk_raw_iter_next(&it, &bad)) count++;
    if (bad) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in update");
    if (!count) return MK_OK;
    up_val_t *v = up_alloc(u, count * sizeof *v);
    if (!v) return mk_error_nomem(err);
    mk_raw_iter_init(&it, data, len);
    for (uint32_t i = 0; mk_raw_iter_next(&it, &bad); i++)
        v[i] = (up_val_t){it.type, it.value, it.vlen};
    *out = v;
    *n = count;
    return MK_OK;
}

/* MongoDB's parseIntegerElementToLong: 0 ok, 1 not a number, 2 NaN, 3 out of range, 4 not
 * integral. */
static int to_long(const up_val_t *in, int64_t *out)
{
    bson_value_t v;
    if (!up_val_decode(in, &v)) return 1;
    switch (v.value_type) {
    case BSON_TYPE_INT32:
        *out = v.value.v_int32;
        return 0;
    case BSON_TYPE_INT64:
        *out = v.value.v_int64;
        return 0;
    case BSON_TYPE_DOUBLE: {
        double d = v.value.v_double;
        if (isnan(d)) return 2;
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return 3;
        if (d != trunc(d)) return 4;
        *out = (int64_t)d;
        return 0;
    }
    case BSON_TYPE_DECIMAL128: {
        long double d = mk_decimal_to_ld(&v.value.v_decimal128);
        if (isnan(d)) return 2;
        if (!(d >= -9223372036854775808.0L && d < 9223372036854775808.0L)) return 3;
        if (d != truncl(d)) return 4;
        *out = (int64_t)d;
        return 0;
    }
    default:
        return 1;
    }
}

/* ------------------------------------------------------------------ $push */

static int parse_sort(mk_update_t *u, up_leaf_t *l, const mk_raw_iter_t *c, mk_error_t *err)
{
    up_val_t v = {c->type, c->value, c->vlen};
    if (c->type == BSON_TYPE_DOCUMENT) {
        mk_raw_iter_t it;
        bool bad;
        uint32_t count = 0;
        mk_raw_iter_init(&it, c->value, c->vlen);
        while (mk_raw_iter_next(&it, &bad)) count++;
        if (!count)
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "The $sort pattern is empty when it should be a set of fields.");
        l->sort_keys = up_alloc(u, count * sizeof *l->sort_keys);
        if (!l->sort_keys) return mk_error_nomem(err);
        mk_raw_iter_init(&it, c->value, c->vlen);
        while (mk_raw_iter_next(&it, &bad)) {
            bson_value_t d;
            double dir = 0;
            up_val_t kv = {it.type, it.value, it.vlen};
            if (mk_type_is_number((bson_type_t)it.type) && up_val_decode(&kv, &d))
                dir = mk_value_as_double(&d);
            if (dir != 1 && dir != -1)
                return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                     "The $sort element value must be either 1 or -1");
            if (it.keylen == 0)
                return mk_error_setc(err, MK_CODE_BAD_VALUE, "The $sort field cannot be empty");
            bool empty_part = it.key[0] == '.' || it.key[it.keylen - 1] == '.';
            for (uint32_t i = 0; i + 1 < it.keylen; i++)
                if (it.key[i] == '.' && it.key[i + 1] == '.') empty_part = true;
            if (empty_part)
                return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                     "The $sort field is a dotted field but has an empty part: "
                                     "%.*s",
                                     (int)it.keylen, it.key);
            l->sort_keys[l->nsort_keys++] = (up_sort_key_t){it.key, it.keylen, dir < 0 ? -1 : 1};
        }
        l->sort = SORT_FIELDS;
        return MK_OK;
    }
    if (mk_type_is_number((bson_type_t)c->type)) {
        bson_value_t d;
        up_val_decode(&v, &d);
        double dir = mk_value_as_double(&d);
        if (dir != 1 && dir != -1)
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "The $sort element value must be either 1 or -1");
        l->sort = SORT_WHOLE;
        l->sort_dir = dir < 0 ? -1 : 1;
        return MK_OK;
    }
    return mk_error_setc(
        err, MK_CODE_BAD_VALUE,
        "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} "
        "to sort embedded fields");
}

static bool has_each(const up_val_t *arg)
{
    if (arg->type != BSON_TYPE_DOCUMENT) return false;
    mk_raw_iter_t it;
    bool bad;
    mk_raw_iter_init(&it, arg->data, arg->len);
    while (mk_raw_iter_next(&it, &bad))
        if (key_is(&it, "$each")) return true;
    return false;
}

int up_parse_push(mk_update_t *u, up_leaf_t *l, mk_error_t *err)
{
    if (!has_each(&l->arg)) {
        /* Any other value, documents included, is the one element to push. */
        l->values = &l->arg;
        l->nvalues = 1;
        return MK_OK;
    }
    static const char *const clauses[] = {"$each", "$slice", "$sort", "$position"};
    mk_raw_iter_t found[4];
    bool seen[4] = {false, false, false, false};
    mk_raw_iter_t it;
    bool bad;
    mk_raw_iter_init(&it, l->arg.data, l->arg.len);
    while (mk_raw_iter_next(&it, &bad)) {
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (key_is(&it, clauses[i])) k = i;
        if (k < 0)
            return mk_error_setc(err, MK_CODE_BAD_VALUE, "Unrecognized clause in $push: %.*s",
                                 (int)it.keylen, it.key);
        if (seen[k])
            return mk_error_setc(err, MK_CODE_BAD_VALUE, "Only one %s is supported.", clauses[k]);
        seen[k] = true;
        found[k] = it;
    }
    if (found[0].type != BSON_TYPE_ARRAY)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "The argument to $each in $push must be an array but it was of "
                             "type: %s",
                             mk_type_name((bson_type_t)found[0].type));
    int rc = array_values(u, found[0].value, found[0].vlen, &l->values, &l->nvalues, err);
    if (rc != MK_OK) return rc;
    if (seen[1]) {
        up_val_t v = {found[1].type, found[1].value, found[1].vlen};
        if (to_long(&v, &l->slice) != 0)
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "The value for $slice must be an integer value but was given "
                                 "type: %s",
                                 mk_type_name((bson_type_t)found[1].type));
        l->has_slice = true;
    }
    if (seen[2] && (rc = parse_sort(u, l, &found[2], err)) != MK_OK) return rc;
    if (seen[3]) {
        up_val_t v = {found[3].type, found[3].value, found[3].vlen};
        if (to_long(&v, &l->position) != 0)
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "The value for $position must be an integer value, not of type: "
                                 "%s",
                                 mk_type_name((bson_type_t)found[3].type));
        l->has_position = true;
    }
    return MK_OK;
}

/* ------------------------------------------------------------------ $addToSet */

static int raw_cmp(const up_val_t *a, const up_val_t *b)
{
    bson_value_t va, vb;
    if (!up_val_decode(a, &va) || !up_val_decode(b, &vb)) return 1;
    return mk_value_cmp(&va, &vb);
}

int up_parse_add_to_set(mk_update_t *u, up_leaf_t *l, mk_error_t *err)
{
    bool each = false;
    if (l->arg.type == BSON_TYPE_DOCUMENT) {
        mk_raw_iter_t it;
        bool bad;
        mk_raw_iter_init(&it, l->arg.data, l->arg.len);
        if (mk_raw_iter_next(&it, &bad) && key_is(&it, "$each")) {
            each = true;
            if (it.type != BSON_TYPE_ARRAY)
                return mk_error_setc(err, MK_CODE_TYPE_MISMATCH,
                                     "The argument to $each in $addToSet must be an array but it "
                                     "was of type %s",
                                     mk_type_name((bson_type_t)it.type));
            mk_raw_iter_t more = it;
            if (mk_raw_iter_next(&more, &bad)) {
                bson_string_t *s = bson_string_new(NULL);
                mk_format_doc(s, l->arg.data, l->arg.len, false);
                mk_error_setc(err, MK_CODE_BAD_VALUE,
                              "Found unexpected fields after $each in $addToSet: %s", s->str);
                bson_string_free(s, true);
                return MK_ERR;
            }
            int rc = array_values(u, it.value, it.vlen, &l->values, &l->nvalues, err);
            if (rc != MK_OK) return rc;
        }
    }
    if (!each) {
        l->values = &l->arg;
        l->nvalues = 1;
        return MK_OK;
    }
    /* Duplicates among the values are dropped, keeping the first (by MongoDB's equality). */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < l->nvalues; i++) {
        bool dup = false;
        for (uint32_t j = 0; j < kept && !dup; j++)
            dup = raw_cmp(&l->values[j], &l->values[i]) == 0;
        if (!dup) l->values[kept++] = l->values[i];
    }
    l->nvalues = kept;
    return MK_OK;
}

/* ------------------------------------------------------------------ $pop, $pullAll, $pull */

int up_parse_pop(mk_update_t *u, up_leaf_t *l, mk_error_t *err)
{
    int64_t v = 0;
    const char *what = NULL;
    switch (to_long(&l->arg, &v)) {
    case 1:
        what = "Expected a number in: ";
        break;
    case 2:
        what = "Expected an integer, but found NaN in: ";
        break;
    case 3:
        what = "Cannot represent as a 64-bit integer: ";
        break;
    case 4:
        what = "Expected an integer: ";
        break;
    }
    if (what) {
        bson_string_t *s = bson_string_new(what);
        up_format_elem(s, l->field, l->fieldlen, &l->arg);
        mk_error_setc(err, MK_CODE_FAILED_TO_PARSE, "%s", s->str);
        bson_string_free(s, true);
        return MK_ERR;
    }
    if (v != 1 && v != -1)
        return mk_error_setc(err, MK_CODE_FAILED_TO_PARSE, "$pop expects 1 or -1, found: %lld",
                             (long long)v);
    l->pop_front = v == -1;
    return MK_OK;
}

int up_parse_pull_all(mk_update_t *u, up_leaf_t *l, mk_error_t *err)
{
    if (l->arg.type != BSON_TYPE_ARRAY)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "$pullAll requires an array argument but was given a %s",
                             mk_type_name((bson_type_t)l->arg.type));
    return array_values(u, l->arg.data, l->arg.len, &l->values, &l->nvalues, err);
}

/* Operators that apply to a path: { $pull: { a: { $gte: 6 } } } is a condition on each element,
 * while { $pull: { a: { score: 8 } } } is a query on element documents. */
static bool path_operator(const char *k, uint32_t len)
{
    static const char *const ops[] = {
        "$eq",           "$ne",
        "$gt",           "$gte",
        "$lt",           "$lte",
        "$in",           "$nin",
        "$all",          "$elemMatch",
        "$exists",       "$type",
        "$size",         "$mod",
        "$regex",        "$options",
        "$not",          "$bitsAllSet",
        "$bitsAllClear", "$bitsAnySet",
        "$bitsAnyClear", "$geoIntersects",
        "$geoWithin",    "$near",
        "$nearSphere",   "$within",
        "$maxDistance",  "$minDistance",
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strlen(ops[i]) == len && !memcmp(ops[i], k, len)) return true;
    return false;
}

int up_parse_pull(mk_update_t *u, up_leaf_t *l, mk_error_t *err)
{
    bson_t *doc = NULL;
    if (l->arg.type == BSON_TYPE_DOCUMENT) {
        mk_raw_iter_t it;
        bool bad;
        mk_raw_iter_init(&it, l->arg.data, l->arg.len);
        bool first = mk_raw_iter_next(&it, &bad);
        if (first && path_operator(it.key, it.keylen)) {
            l->pull_mode = PULL_CONDITION;
        } else {
            l->pull_mode = PULL_QUERY;
            doc = bson_new_from_data(l->arg.data, l->arg.len);
            if (!doc) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid $pull document");
        }
    } else if (l->arg.type == BSON_TYPE_REGEX) {
        l->pull_mode = PULL_CONDITION;
    } else {
        l->pull_mode = PULL_EQUAL;
        return MK_OK;
    }
    if (!doc) {
        bson_value_t v;
        up_val_decode(&l->arg, &v);
        doc = bson_new();
        if (!bson_append_value(doc, PULL_FIELD, -1, &v)) {
            bson_destroy(doc);
            return mk_error_nomem(err);
        }
    }
    l->matcher = mk_matcher_compile(doc, err);
    if (!l->matcher) {
        bson_destroy(doc);
        return MK_ERR;
    }
    return up_keep_matcher(u, l->matcher, doc, err);
}

/* ------------------------------------------------------------------ applying */

static int fail_type(up_ctx_t *c, int code, const char *fmt_before, bool full_path,
                     const char *middle, const mk_tnode_t *elem, const char *after, bool with_id)
{
    bson_string_t *s = bson_string_new(fmt_before);
    if (full_path)
        up_path_append(c, 0, c->ntaken, s);
    else
        bson_string_append_printf(s, "%.*s", (int)c->comps[c->ntaken - 1].len,
                                  c->comps[c->ntaken - 1].s);
    bson_string_append(s, middle);
    bson_string_append(s, mk_type_name((bson_type_t)elem->type));
    bson_string_append(s, after);
    if (with_id) {
        bson_string_append(s, " in document {");
        up_id_append(c, s);
        bson_string_append(s, "}");
    }
    return up_fail(c, code, s);
}

static int insert_value(up_ctx_t *c, mk_tnode_t *arr, uint32_t pos, const up_val_t *v)
{
    mk_tnode_t *n;
    int rc = mk_tnode_insert(c->t, arr, pos, "", 0, &n, c->err);
    if (rc == MK_OK) mk_tnode_set_raw(n, (bson_type_t)v->type, v->data, v->len);
    return rc;
}

/* One element prepared for sorting: its value, or its sort keys. */
typedef struct sort_item {
    mk_tnode_t *node;
    bson_value_t *keys; /* SORT_FIELDS: one per key */
    bson_value_t whole;
} sort_item_t;

static int item_cmp(const up_leaf_t *l, const sort_item_t *a, const sort_item_t *b)
{
    if (l->sort == SORT_WHOLE) {
        int r = mk_value_cmp(&a->whole, &b->whole);
        return l->sort_dir < 0 ? -r : r;
    }
    for (uint32_t k = 0; k < l->nsort_keys; k++) {
        int r = mk_value_cmp(&a->keys[k], &b->keys[k]);
        if (r) return l->sort_keys[k].dir < 0 ? -r : r;
    }
    return 0;
}

/* Stable merge sort of items[0..n) using tmp. */
static void merge_sort(const up_leaf_t *l, sort_item_t *items, sort_item_t *tmp, uint32_t n)
{
    if (n < 2) return;
    uint32_t mid = n / 2;
    merge_sort(l, items, tmp, mid);
    merge_sort(l, items + mid, tmp, n - mid);
    uint32_t i = 0, j = mid, k = 0;
    while (i < mid && j < n)
        tmp[k++] = item_cmp(l, &items[j], &items[i]) < 0 ? items[j++] : items[i++];
    while (i < mid) tmp[k++] = items[i++];
    while (j < n) tmp[k++] = items[j++];
    memcpy(items, tmp, n * sizeof *items);
}

static int sort_array(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *arr)
{
    uint32_t n = arr->nkids;
    if (n < 2) return MK_OK;
    sort_item_t *items = mk_tree_alloc(c->t, 2 * (size_t)n * sizeof *items);
    if (!items) return mk_error_nomem(c->err);
    static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
    for (uint32_t i = 0; i < n; i++) {
        sort_item_t *it = &items[i];
        it->node = arr->kids[i];
        int rc = up_value(c, it->node, &it->whole);
        if (rc != MK_OK) return rc;
        if (l->sort != SORT_FIELDS) continue;
        it->keys = mk_tree_alloc(c->t, l->nsort_keys * sizeof *it->keys);
        if (!it->keys) return mk_error_nomem(c->err);
        bson_t doc;
        bool is_doc =
            it->whole.value_type == BSON_TYPE_DOCUMENT &&
            bson_init_static(&doc, it->whole.value.v_doc.data, it->whole.value.v_doc.data_len);
        for (uint32_t k = 0; k < l->nsort_keys; k++) {
            bson_iter_t found;
            /* A missing field (or a non-document element) sorts as null. */
            if (is_doc && mk_path_getn(&doc, l->sort_keys[k].path, l->sort_keys[k].len, &found))
                it->keys[k] = *bson_iter_value(&found);
            else
                it->keys[k] = null_value;
        }
    }
    merge_sort(l, items, items + n, n);
    for (uint32_t i = 0; i < n; i++) arr->kids[i] = items[i].node;
    return MK_OK;
}

/* Performs $push on the array `arr` (expanded). */
static int push(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *arr, bool *changed)
{
    int rc;
    uint32_t size = arr->nkids;
    if (l->nvalues) {
        /* Where the first value goes (MongoDB's rules for $position). */
        uint32_t at = size;
        if (l->has_position && size > 0) {
            int64_t p = l->position;
            if (p > (int64_t)size)
                at = size;
            else if (p > 0)
                at = (uint32_t)p;
            else if (p < 0 && p > -(int64_t)size)
                at = (uint32_t)((int64_t)size + p);
            else
                at = 0;
        }
        for (uint32_t i = 0; i < l->nvalues; i++)
            if ((rc = insert_value(c, arr, at + i, &l->values[i])) != MK_OK) return rc;
        *changed = true;
    }
    if (l->sort != SORT_NONE) {
        *changed = true;
        if ((rc = sort_array(c, l, arr)) != MK_OK) return rc;
    }
    if (l->has_slice) {
        uint64_t keep = l->slice == INT64_MIN ? (uint64_t)INT64_MAX
                                              : (uint64_t)(l->slice < 0 ? -l->slice : l->slice);
        while (arr->nkids > keep) {
            *changed = true;
            mk_tnode_remove(arr, l->slice >= 0 ? arr->nkids - 1 : 0);
        }
    }
    return MK_OK;
}

static int add_to_set(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *arr, bool *changed)
{
    uint32_t existing = arr->nkids;
    bson_value_t *have = existing ? mk_tree_alloc(c->t, existing * sizeof *have) : NULL;
    if (existing && !have) return mk_error_nomem(c->err);
    for (uint32_t i = 0; i < existing; i++) {
        int rc = up_value(c, arr->kids[i], &have[i]);
        if (rc != MK_OK) return rc;
    }
    for (uint32_t v = 0; v < l->nvalues; v++) {
        bson_value_t val;
        if (!up_val_decode(&l->values[v], &val))
            return mk_error_setc(c->err, MK_CODE_INVALID_BSON, "invalid BSON in update");
        bool present = false;
        for (uint32_t i = 0; i < existing && !present; i++)
            present = mk_value_cmp(&have[i], &val) == 0;
        if (present) continue;
        int rc = insert_value(c, arr, UINT32_MAX, &l->values[v]);
        if (rc != MK_OK) return rc;
        *changed = true;
    }
    return MK_OK;
}

static int pull_matches(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *elem, bool *match)
{
    bson_value_t v;
    int rc = up_value(c, elem, &v);
    if (rc != MK_OK) return rc;
    *match = false;
    if (l->op == OP_PULL_ALL) {
        for (uint32_t i = 0; i < l->nvalues && !*match; i++) {
            bson_value_t w;
            if (up_val_decode(&l->values[i], &w)) *match = mk_value_cmp(&v, &w) == 0;
        }
        return MK_OK;
    }
    switch (l->pull_mode) {
    case PULL_EQUAL: {
        bson_value_t w;
        if (up_val_decode(&l->arg, &w)) *match = mk_value_cmp(&v, &w) == 0;
        break;
    }
    case PULL_QUERY: {
        bson_t doc;
        if (v.value_type == BSON_TYPE_DOCUMENT &&
            bson_init_static(&doc, v.value.v_doc.data, v.value.v_doc.data_len))
            *match = mk_matcher_match(l->matcher, &doc, NULL);
        break;
    }
    default:
        *match = mk_matcher_match_value(l->matcher, PULL_FIELD, &v);
        break;
    }
    return MK_OK;
}

static int pull(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *arr, bool *changed)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < arr->nkids; i++) {
        bool match;
        int rc = pull_matches(c, l, arr->kids[i], &match);
        if (rc != MK_OK) return rc;
        if (match)
            *changed = true;
        else
            arr->kids[kept++] = arr->kids[i];
    }
    arr->nkids = kept;
    return MK_OK;
}

int up_array_existing(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *arr, bool *changed)
{
    *changed = false;
    if (arr->type != BSON_TYPE_ARRAY) {
        switch (l->op) {
        case OP_PUSH:
            return fail_type(c, MK_CODE_BAD_VALUE, "The field '", true,
                             "' must be an array but is of type ", arr, "", true);
        case OP_ADD_TO_SET:
            return fail_type(c, MK_CODE_BAD_VALUE,
                             "Cannot apply $addToSet to non-array field. Field named '", false,
                             "' has non-array type ", arr, "", false);
        case OP_POP:
            return fail_type(c, MK_CODE_TYPE_MISMATCH, "Path '", true,
                             "' contains an element of non-array type '", arr, "'", false);
        default:
            return mk_error_setc(c->err, MK_CODE_BAD_VALUE,
                                 "Cannot apply $pull to a non-array value");
        }
    }
    int rc = mk_tnode_expand(c->t, arr, c->err);
    if (rc != MK_OK) return rc;
    switch (l->op) {
    case OP_PUSH:
        return push(c, l, arr, changed);
    case OP_ADD_TO_SET:
        return add_to_set(c, l, arr, changed);
    case OP_POP:
        if (arr->nkids == 0) return MK_OK;
        mk_tnode_remove(arr, l->pop_front ? 0 : arr->nkids - 1);
        *changed = true;
        return MK_OK;
    default:
        return pull(c, l, arr, changed);
    }
}

int up_array_fresh(up_ctx_t *c, const up_leaf_t *l, mk_tnode_t *fresh)
{
    bool changed = false;
    mk_tnode_set_empty(fresh, BSON_TYPE_ARRAY);
    if (l->op == OP_PUSH) return push(c, l, fresh, &changed);
    for (uint32_t v = 0; v < l->nvalues; v++) {
        int rc = insert_value(c, fresh, UINT32_MAX, &l->values[v]);
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}
