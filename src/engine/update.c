/* Update compilation: the update document parsed into a tree of paths (see update_int.h), with
 * MongoDB's parse-time checks and messages. Applying lives in update_apply.c. */
#include "engine/update_int.h"

#include <stdlib.h>
#include <string.h>

#include <meerkat/engine.h>

#include "bson/format.h"
#include "bson/path.h"
#include "bson/value.h"

static const struct {
    const char *name;
    up_op_t op;
} modifiers[] = {
    {"$set", OP_SET}, {"$unset", OP_UNSET},   {"$setOnInsert", OP_SET_ON_INSERT},
    {"$inc", OP_INC}, {"$mul", OP_MUL},       {"$min", OP_MIN},
    {"$max", OP_MAX}, {"$rename", OP_RENAME}, {"$currentDate", OP_CURRENT_DATE},
    {"$bit", OP_BIT}, {"$push", OP_PUSH},     {"$addToSet", OP_ADD_TO_SET},
    {"$pop", OP_POP}, {"$pull", OP_PULL},     {"$pullAll", OP_PULL_ALL},
};

void *up_alloc(mk_update_t *u, size_t n)
{
    void *p = mk_tree_alloc(&u->mem, n);
    if (p) memset(p, 0, n);
    return p;
}

int up_field_cmp(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    bool plain = alen == 0 || blen == 0 || a[0] < '0' || a[0] > '9' || b[0] < '0' || b[0] > '9' ||
                 (a[0] == '0' && alen > 1) || (b[0] == '0' && blen > 1);
    if (!plain) {
        /* Numbers: the longer one is larger. Names merely starting with a digit are ordered by
         * length too, which is consistent if not meaningful (as MongoDB). */
        if (alen != blen) return alen < blen ? -1 : 1;
        for (uint32_t i = 0; i < alen; i++) {
            bool da = a[i] >= '0' && a[i] <= '9', db = b[i] >= '0' && b[i] <= '9';
            if (!da || !db) break;
            if (a[i] != b[i]) return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
        }
    }
    uint32_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c < 0 ? -1 : 1;
    return alen == blen ? 0 : (alen < blen ? -1 : 1);
}

void up_format_elem(bson_string_t *s, const char *key, uint32_t keylen, const up_val_t *v)
{
    bson_value_t val;
    bson_string_append_printf(s, "%.*s: ", (int)keylen, key);
    if (up_val_decode(v, &val))
        mk_format_value(s, &val);
    else
        bson_string_append(s, "?");
}

/* Fails with a message "<prefix>{<field>: <value>}<suffix>" (braces optional). */
static int fail_elem(mk_error_t *err, int code, const char *prefix, const up_leaf_t *l, bool braces,
                     const char *suffix)
{
    bson_string_t *s = bson_string_new(prefix);
    if (braces) bson_string_append_c(s, '{');
    up_format_elem(s, l->field, l->fieldlen, &l->arg);
    if (braces) bson_string_append_c(s, '}');
    bson_string_append(s, suffix);
    mk_error_setc(err, code, "%s", s->str);
    bson_string_free(s, true);
    return MK_ERR;
}

/* ------------------------------------------------------------------ array filters */

static bool valid_identifier(const char *s, uint32_t len)
{
    if (len == 0 || s[0] < 'a' || s[0] > 'z') return false;
    for (uint32_t i = 1; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

/* The top-level field name a filter is over (found in its fields and inside $and/$or/$nor). */
static int filter_placeholder(const uint8_t *data, uint32_t len, const char **id, uint32_t *idlen,
                              int depth, mk_error_t *err)
{
    mk_raw_iter_t it;
    bool bad;
    if (depth > MK_MAX_DEPTH || !mk_raw_iter_init(&it, data, len))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid array filter");
    while (mk_raw_iter_next(&it, &bad)) {
        if (it.keylen && it.key[0] == '$') {
            bool logical =
                (it.keylen == 4 && (!memcmp(it.key, "$and", 4) || !memcmp(it.key, "$nor", 4))) ||
                (it.keylen == 3 && !memcmp(it.key, "$or", 3));
            if (!logical || it.type != BSON_TYPE_ARRAY) continue;
            mk_raw_iter_t sub;
            bool subbad;
            if (!mk_raw_iter_init(&sub, it.value, it.vlen)) continue;
            while (mk_raw_iter_next(&sub, &subbad)) {
                if (sub.type != BSON_TYPE_DOCUMENT) continue;
                int rc = filter_placeholder(sub.value, sub.vlen, id, idlen, depth + 1, err);
                if (rc != MK_OK) return rc;
            }
            continue;
        }
        const char *dot = memchr(it.key, '.', it.keylen);
        uint32_t l = dot ? (uint32_t)(dot - it.key) : it.keylen;
        if (*id && (*idlen != l || memcmp(*id, it.key, l) != 0))
            return mk_error_setc(err, MK_CODE_FAILED_TO_PARSE,
                                 "Error parsing array filter :: caused by :: Expected a single "
                                 "top-level field name, found '%.*s' and '%.*s'",
                                 (int)*idlen, *id, (int)l, it.key);
        *id = it.key;
        *idlen = l;
    }
    return MK_OK;
}

static int parse_filters(mk_update_t *u, const bson_t *array_filters, mk_error_t *err)
{
    mk_raw_iter_t it;
    bool bad;
    if (!mk_raw_iter_init(&it, bson_get_data(array_filters), array_filters->len))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid arrayFilters");
    uint32_t count = 0;
    while (mk_raw_iter_next(&it, &bad)) count++;
    if (bad) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid arrayFilters");
    if (!count) return MK_OK;
    u->filters = up_alloc(u, count * sizeof *u->filters);
    if (!u->filters) return mk_error_nomem(err);

    mk_raw_iter_init(&it, bson_get_data(array_filters), array_filters->len);
    for (uint32_t i = 0; mk_raw_iter_next(&it, &bad); i++) {
        if (it.type != BSON_TYPE_DOCUMENT)
            return mk_error_setc(err, MK_CODE_TYPE_MISMATCH,
                                 "BSON field 'arrayFilters.%u' is the wrong type '%s', expected "
                                 "type 'object'",
                                 i, mk_type_name((bson_type_t)it.type));
        up_filter_t *f = &u->filters[u->nfilters];
        f->doc = bson_new_from_data(it.value, it.vlen);
        if (!f->doc) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid array filter");
        u->nfilters++; /* destroyed with the update from here on */
        mk_error_t sub = {0};
        f->matcher = mk_matcher_compile(f->doc, &sub);
        if (!f->matcher)
            return mk_error_set(err, sub.code, sub.kind,
                                "Error parsing array filter :: caused by :: %s", sub.message);
        int rc = filter_placeholder(it.value, it.vlen, &f->id, &f->idlen, 0, err);
        if (rc != MK_OK) return rc;
        if (!f->id)
            return mk_error_setc(err, MK_CODE_FAILED_TO_PARSE,
                                 "Cannot use an expression without a top-level field name in "
                                 "arrayFilters");
        if (!valid_identifier(f->id, f->idlen))
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "Error parsing array filter :: caused by :: The top-level field "
                                 "name must be an alphanumeric string beginning with a lowercase "
                                 "letter, found '%.*s'",
                                 (int)f->idlen, f->id);
        char *id = up_alloc(u, f->idlen + 1);
        if (!id) return mk_error_nomem(err);
        memcpy(id, f->id, f->idlen);
        f->id = id;
        for (uint32_t j = 0; j + 1 < u->nfilters; j++)
            if (u->filters[j].idlen == f->idlen && !memcmp(u->filters[j].id, f->id, f->idlen))
                return mk_error_setc(err, MK_CODE_FAILED_TO_PARSE,
                                     "Found multiple array filters with the same top-level field "
                                     "name %.*s",
                                     (int)f->idlen, f->id);
    }
    return MK_OK;
}

/* ------------------------------------------------------------------ leaves */

static int parse_number_op(up_leaf_t *l, mk_error_t *err)
{
    if (!mk_type_is_number((bson_type_t)l->arg.type))
        return fail_elem(err, MK_CODE_TYPE_MISMATCH,
                         l->op == OP_INC ? "Cannot increment with non-numeric argument: "
                                         : "Cannot multiply with non-numeric argument: ",
                         l, true, "");
    up_val_decode(&l->arg, &l->num);
    return MK_OK;
}

static int parse_current_date(up_leaf_t *l, mk_error_t *err)
{
    if (l->arg.type == BSON_TYPE_BOOL) {
        l->as_date = true;
        return MK_OK;
    }
    if (l->arg.type != BSON_TYPE_DOCUMENT)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "%s is not valid type for $currentDate. Please use a boolean "
                             "('true') or a $type expression ({$type: 'timestamp/date'}).",
                             mk_type_name((bson_type_t)l->arg.type));
    mk_raw_iter_t it;
    bool bad, found = false;
    mk_raw_iter_init(&it, l->arg.data, l->arg.len);
    while (mk_raw_iter_next(&it, &bad)) {
        if (it.keylen != 5 || memcmp(it.key, "$type", 5) != 0)
            return mk_error_setc(err, MK_CODE_BAD_VALUE, "Unrecognized $currentDate option: %.*s",
                                 (int)it.keylen, it.key);
        if (it.type != BSON_TYPE_UTF8) continue;
        bson_value_t v;
        mk_raw_to_value(it.type, it.value, it.vlen, &v);
        if (v.value.v_utf8.len == 4 && !memcmp(v.value.v_utf8.str, "date", 4)) {
            l->as_date = true;
            found = true;
        } else if (v.value.v_utf8.len == 9 && !memcmp(v.value.v_utf8.str, "timestamp", 9)) {
            l->as_date = false;
            found = true;
        }
    }
    if (!found)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "The '$type' string field is required to be 'date' or "
                             "'timestamp': {$currentDate: {field : {$type: 'date'}}}");
    return MK_OK;
}

static int parse_bit(mk_update_t *u, up_leaf_t *l, mk_error_t *err)
{
    if (l->arg.type != BSON_TYPE_DOCUMENT)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "The $bit modifier is not compatible with a %s. You must pass in an "
                             "embedded document: {$bit: {field: {and/or/xor: #}}",
                             mk_type_name((bson_type_t)l->arg.type));
    mk_raw_iter_t it;
    bool bad;
    uint32_t count = 0;
    mk_raw_iter_init(&it, l->arg.data, l->arg.len);
    while (mk_raw_iter_next(&it, &bad)) count++;
    if (count) {
        l->bits = up_alloc(u, count * sizeof *l->bits);
        if (!l->bits) return mk_error_nomem(err);
    }
    mk_raw_iter_init(&it, l->arg.data, l->arg.len);
    while (mk_raw_iter_next(&it, &bad)) {
        up_bit_t *b = &l->bits[l->nbits];
        up_val_t v = {it.type, it.value, it.vlen};
        if (it.keylen == 3 && !memcmp(it.key, "and", 3))
            b->op = BIT_AND;
        else if (it.keylen == 2 && !memcmp(it.key, "or", 2))
            b->op = BIT_OR;
        else if (it.keylen == 3 && !memcmp(it.key, "xor", 3))
            b->op = BIT_XOR;
        else {
            bson_string_t *s = bson_string_new(NULL);
            up_format_elem(s, it.key, it.keylen, &v);
            mk_error_setc(err, MK_CODE_BAD_VALUE,
                          "The $bit modifier only supports 'and', 'or', and 'xor', not '%.*s' "
                          "which is an unknown operator: {%s}",
                          (int)it.keylen, it.key, s->str);
            bson_string_free(s, true);
            return MK_ERR;
        }
        if (it.type != BSON_TYPE_INT32 && it.type != BSON_TYPE_INT64) {
            bson_string_t *s = bson_string_new(NULL);
            up_format_elem(s, it.key, it.keylen, &v);
            mk_error_setc(err, MK_CODE_BAD_VALUE,
                          "The $bit modifier field must be an Integer(32/64 bit); a '%s' is not "
                          "supported here: {%s}",
                          mk_type_name((bson_type_t)it.type), s->str);
            bson_string_free(s, true);
            return MK_ERR;
        }
        up_val_decode(&v, &b->operand);
        l->nbits++;
    }
    if (!l->nbits)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "You must pass in at least one bitwise operation. The format is: "
                             "{$bit: {field: {and/or/xor: #}}");
    return MK_OK;
}

static bool is_filter_identifier(const char *s, uint32_t len)
{
    return len >= 3 && s[0] == '$' && s[1] == '[' && s[len - 1] == ']';
}

static bool is_positional(const char *s, uint32_t len)
{
    return len == 1 && s[0] == '$';
}

static bool path_is_dynamic(const mk_tree_comp_t *c, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (is_positional(c[i].s, c[i].len) || is_filter_identifier(c[i].s, c[i].len)) return true;
    return false;
}

static int split(mk_update_t *u, const char *path, uint32_t len, mk_tree_comp_t **out, uint32_t *n,
                 mk_error_t *err)
{
    uint32_t count = 1;
    for (uint32_t i = 0; i < len; i++) count += path[i] == '.';
    mk_tree_comp_t *c = up_alloc(u, count * sizeof *c);
    if (!c) return mk_error_nomem(err);
    const char *p = path, *end = path + len;
    for (uint32_t i = 0; i < count; i++) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *stop = dot ? dot : end;
        c[i].s = p;
        c[i].len = (uint32_t)(stop - p);
        p = stop + 1;
    }
    *out = c;
    *n = count;
    return MK_OK;
}

static int parse_rename(mk_update_t *u, up_leaf_t *l, const mk_tree_comp_t *to, uint32_t nto,
                        mk_error_t *err)
{
    bson_value_t v;
    up_val_decode(&l->arg, &v);
    if (memchr(v.value.v_utf8.str, 0, v.value.v_utf8.len))
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "The 'to' field for $rename cannot contain an embedded null byte");
    int rc = split(u, l->field, l->fieldlen, &l->from, &l->nfrom, err);
    if (rc != MK_OK) return rc;
    uint32_t common = 0;
    while (common < l->nfrom && common < nto && l->from[common].len == to[common].len &&
           !memcmp(l->from[common].s, to[common].s, to[common].len))
        common++;
    if (common == l->nfrom && common == nto)
        return fail_elem(err, MK_CODE_BAD_VALUE,
                         "The source and target field for $rename must differ: ", l, false, "");
    if (common == l->nfrom || common == nto)
        return fail_elem(
            err, MK_CODE_BAD_VALUE,
            "The source and target field for $rename must not be on the same path: ", l, false, "");
    if (path_is_dynamic(l->from, l->nfrom))
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "The source field for $rename may not be dynamic: %.*s",
                             (int)l->fieldlen, l->field);
    if (path_is_dynamic(to, nto))
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "The destination field for $rename may not be dynamic: %.*s",
                             (int)v.value.v_utf8.len, v.value.v_utf8.str);
    return MK_OK;
}

static int init_leaf(mk_update_t *u, up_leaf_t *l, const mk_tree_comp_t *comps, uint32_t n,
                     mk_error_t *err)
{
    switch (l->op) {
    case OP_INC:
    case OP_MUL:
        return parse_number_op(l, err);
    case OP_CURRENT_DATE:
        return parse_current_date(l, err);
    case OP_BIT:
        return parse_bit(u, l, err);
    case OP_RENAME:
        return parse_rename(u, l, comps, n, err);
    case OP_PUSH:
        return up_parse_push(u, l, err);
    case OP_ADD_TO_SET:
        return up_parse_add_to_set(u, l, err);
    case OP_POP:
        return up_parse_pop(u, l, err);
    case OP_PULL:
        return up_parse_pull(u, l, err);
    case OP_PULL_ALL:
        return up_parse_pull_all(u, l, err);
    default:
        return MK_OK;
    }
}

/* ------------------------------------------------------------------ the path tree */

static up_node_t *find_child(up_node_t *n, const char *name, uint32_t len, uint32_t *at)
{
    uint32_t lo = 0, hi = n->nkids;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        int c = up_field_cmp(n->kids[mid].name, n->kids[mid].len, name, len);
        if (c == 0) return n->kids[mid].node;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return NULL;
}

static int add_child(mk_update_t *u, up_node_t *n, uint32_t at, const char *name, uint32_t len,
                     up_node_t *child, mk_error_t *err)
{
    if (n->nkids == n->cap) {
        uint32_t cap = n->cap ? n->cap * 2 : 4;
        up_child_t *kids = up_alloc(u, cap * sizeof *kids);
        if (!kids) return mk_error_nomem(err);
        if (n->nkids) memcpy(kids, n->kids, n->nkids * sizeof *kids);
        n->kids = kids;
        n->cap = cap;
    }
    memmove(n->kids + at + 1, n->kids + at, (n->nkids - at) * sizeof *n->kids);
    n->kids[at] = (up_child_t){name, len, child};
    n->nkids++;
    return MK_OK;
}

/* The child slot name of component c: the identifier of `$[id]`, else the field itself. */
static int child_name(mk_update_t *u, const char *path, uint32_t pathlen, const mk_tree_comp_t *c,
                      uint32_t i, const char **name, uint32_t *len, mk_error_t *err)
{
    if (!is_filter_identifier(c->s, c->len)) {
        *name = c->s;
        *len = c->len;
        return MK_OK;
    }
    if (i == 0)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "Cannot have array filter identifier (i.e. '$[<id>]') element in the "
                             "first position in path '%.*s'",
                             (int)pathlen, path);
    *name = c->s + 2;
    *len = c->len - 3;
    if (*len == 0) return MK_OK;
    for (uint32_t f = 0; f < u->nfilters; f++) {
        if (u->filters[f].idlen == *len && !memcmp(u->filters[f].id, *name, *len)) {
            u->filters[f].used = true;
            return MK_OK;
        }
    }
    return mk_error_setc(err, MK_CODE_BAD_VALUE,
                         "No array filter found for identifier '%.*s' in path '%.*s'", (int)*len,
                         *name, (int)pathlen, path);
}

static int conflict(const char *path, uint32_t pathlen, uint32_t prefixlen, mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_CONFLICTING_UPDATE_OPERATORS,
                         "Updating the path '%.*s' would create a conflict at '%.*s'", (int)pathlen,
                         path, (int)prefixlen, path);
}

static int parse_and_merge(mk_update_t *u, up_op_t op, const char *opname, const char *key,
                           uint32_t keylen, const up_val_t *val, mk_error_t *err)
{
    const char *path = key;
    uint32_t pathlen = keylen;
    if (op == OP_RENAME) {
        /* The source is reserved first (so that it conflicts with other updates), then the
         * rename itself lives at its destination. */
        int rc = parse_and_merge(u, OP_PLACEHOLDER, opname, key, keylen, val, err);
        if (rc != MK_OK) return rc;
        if (val->type != BSON_TYPE_UTF8) {
            up_leaf_t tmp = {.field = key, .fieldlen = keylen, .arg = *val};
            return fail_elem(err, MK_CODE_BAD_VALUE,
                             "The 'to' field for $rename must be a string: ", &tmp, false, "");
        }
        bson_value_t v;
        up_val_decode(val, &v);
        path = v.value.v_utf8.str;
        pathlen = v.value.v_utf8.len;
    }

    if (pathlen == 0)
        return mk_error_setc(err, MK_CODE_EMPTY_FIELD_NAME, "An empty update path is not valid.");
    mk_tree_comp_t *comps;
    uint32_t n;
    int rc = split(u, path, pathlen, &comps, &n, err);
    if (rc != MK_OK) return rc;
    uint32_t npos = 0, first_pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (comps[i].len == 0)
            return mk_error_setc(err, MK_CODE_EMPTY_FIELD_NAME,
                                 "The update path '%.*s' contains an empty field name, which is "
                                 "not allowed.",
                                 (int)pathlen, path);
        if (is_positional(comps[i].s, comps[i].len) && npos++ == 0) first_pos = i;
    }
    if (npos > 1)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "Too many positional (i.e. '$') elements found in path '%.*s'",
                             (int)pathlen, path);
    if (npos && first_pos == 0)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "Cannot have positional (i.e. '$') element in the first position in "
                             "path '%.*s'",
                             (int)pathlen, path);
    if (npos) u->positional = true;
    if (n > u->max_comps) u->max_comps = n;

    up_leaf_t *leaf = up_alloc(u, sizeof *leaf);
    up_node_t *leafnode = up_alloc(u, sizeof *leafnode);
    if (!leaf || !leafnode) return mk_error_nomem(err);
    leaf->op = op;
    leaf->opname = opname;
    leaf->field = key;
    leaf->fieldlen = keylen;
    leaf->arg = *val;
    leafnode->kind = UN_LEAF;
    leafnode->leaf = leaf;
    rc = init_leaf(u, leaf, comps, n, err);
    if (rc != MK_OK) return rc;

    up_node_t *cur = &u->root;
    for (uint32_t i = 0; i < n; i++) {
        const char *name = NULL;
        uint32_t len = 0, at = 0;
        rc = child_name(u, path, pathlen, &comps[i], i, &name, &len, err);
        if (rc != MK_OK) return rc;
        bool pos = cur->kind == UN_OBJECT && is_positional(name, len);
        up_node_t *child = pos ? cur->positional : find_child(cur, name, len, &at);
        if (i == n - 1) {
            if (child) return conflict(path, pathlen, pathlen, err);
            child = leafnode;
        } else {
            up_kind_t want =
                is_filter_identifier(comps[i + 1].s, comps[i + 1].len) ? UN_ARRAY : UN_OBJECT;
            if (child) {
                if (child->kind != want) {
                    uint32_t prefix = (uint32_t)(comps[i].s + comps[i].len - path);
                    return conflict(path, pathlen, prefix, err);
                }
                cur = child;
                continue;
            }
            child = up_alloc(u, sizeof *child);
            if (!child) return mk_error_nomem(err);
            child->kind = want;
        }
        if (pos)
            cur->positional = child;
        else if ((rc = add_child(u, cur, at, name, len, child, err)) != MK_OK)
            return rc;
        cur = child;
    }
    return MK_OK;
}

static int parse_operators(mk_update_t *u, mk_error_t *err)
{
    mk_raw_iter_t it;
    bool bad;
    mk_raw_iter_init(&it, bson_get_data(u->spec), u->spec->len);
    while (mk_raw_iter_next(&it, &bad)) {
        const char *opname = NULL;
        up_op_t op = OP_SET;
        for (size_t i = 0; i < sizeof modifiers / sizeof modifiers[0]; i++) {
            if (strlen(modifiers[i].name) == it.keylen &&
                !memcmp(modifiers[i].name, it.key, it.keylen)) {
                opname = modifiers[i].name;
                op = modifiers[i].op;
            }
        }
        if (!opname)
            return mk_error_setc(err, MK_CODE_FAILED_TO_PARSE,
                                 "Unknown modifier: %.*s. Expected a valid update modifier or "
                                 "pipeline-style update specified as an array",
                                 (int)it.keylen, it.key);
        if (it.type != BSON_TYPE_DOCUMENT) {
            up_leaf_t tmp = {
                .field = it.key, .fieldlen = it.keylen, .arg = {it.type, it.value, it.vlen}};
            bson_string_t *s = bson_string_new(NULL);
            bson_string_append_printf(s,
                                      "Modifiers operate on fields but we found type %s instead. "
                                      "For example: {$mod: {<field>: ...}} not ",
                                      mk_type_name((bson_type_t)it.type));
            fail_elem(err, MK_CODE_FAILED_TO_PARSE, s->str, &tmp, true, "");
            bson_string_free(s, true);
            return MK_ERR;
        }
        mk_raw_iter_t f;
        bool fbad;
        mk_raw_iter_init(&f, it.value, it.vlen);
        while (mk_raw_iter_next(&f, &fbad)) {
            up_val_t val = {f.type, f.value, f.vlen};
            int rc = parse_and_merge(u, op, opname, f.key, f.keylen, &val, err);
            if (rc != MK_OK) return rc;
        }
        if (fbad) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in update");
    }
    if (bad) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in update");
    /* MongoDB reports the first unused identifier in name order. */
    const up_filter_t *unused = NULL;
    for (uint32_t i = 0; i < u->nfilters; i++) {
        const up_filter_t *f = &u->filters[i];
        if (!f->used && (!unused || up_field_cmp(f->id, f->idlen, unused->id, unused->idlen) < 0))
            unused = f;
    }
    if (!unused) return MK_OK;
    char *text = mk_format_bson(u->spec);
    mk_error_setc(err, MK_CODE_FAILED_TO_PARSE,
                  "The array filter for identifier '%.*s' was not used in the update %s",
                  (int)unused->idlen, unused->id, text);
    bson_free(text);
    return MK_ERR;
}

mk_update_t *mk_update_compile(const bson_t *update, const bson_t *array_filters, mk_error_t *err)
{
    mk_update_t *u = calloc(1, sizeof *u);
    if (!u) {
        mk_error_nomem(err);
        return NULL;
    }
    mk_tree_init(&u->mem);
    u->root.kind = UN_OBJECT;
    u->spec = bson_new_from_data(bson_get_data(update), update->len);
    if (!u->spec) {
        mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in update");
        goto fail;
    }
    if (array_filters) {
        u->filters_spec = bson_new_from_data(bson_get_data(array_filters), array_filters->len);
        if (!u->filters_spec) {
            mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid arrayFilters");
            goto fail;
        }
        if (parse_filters(u, u->filters_spec, err) != MK_OK) goto fail;
    }

    mk_raw_iter_t it;
    bool bad;
    if (!mk_raw_iter_init(&it, bson_get_data(u->spec), u->spec->len)) {
        mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in update");
        goto fail;
    }
    u->replacement = !mk_raw_iter_next(&it, &bad) || it.keylen == 0 || it.key[0] != '$';
    if (bad) {
        mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON in update");
        goto fail;
    }
    if (!u->replacement && parse_operators(u, err) != MK_OK) goto fail;
    return u;
fail:
    mk_update_destroy(u);
    return NULL;
}

int up_keep_matcher(mk_update_t *u, mk_matcher_t *m, bson_t *doc, mk_error_t *err)
{
    if (u->nmatchers == u->capmatchers) {
        uint32_t cap = u->capmatchers ? u->capmatchers * 2 : 4;
        mk_matcher_t **ms = realloc(u->matchers, cap * sizeof *ms);
        if (ms) u->matchers = ms;
        bson_t **ds = ms ? realloc(u->matcher_docs, cap * sizeof *ds) : NULL;
        if (ds) u->matcher_docs = ds;
        if (!ms || !ds) {
            mk_matcher_destroy(m);
            bson_destroy(doc);
            return mk_error_nomem(err);
        }
        u->capmatchers = cap;
    }
    u->matchers[u->nmatchers] = m;
    u->matcher_docs[u->nmatchers] = doc;
    u->nmatchers++;
    return MK_OK;
}

void mk_update_destroy(mk_update_t *u)
{
    if (!u) return;
    for (uint32_t i = 0; i < u->nfilters; i++) {
        mk_matcher_destroy(u->filters[i].matcher);
        bson_destroy(u->filters[i].doc);
    }
    for (uint32_t i = 0; i < u->nmatchers; i++) {
        mk_matcher_destroy(u->matchers[i]);
        bson_destroy(u->matcher_docs[i]);
    }
    free(u->matchers);
    free(u->matcher_docs);
    if (u->spec) bson_destroy(u->spec);
    if (u->filters_spec) bson_destroy(u->filters_spec);
    mk_tree_destroy(&u->mem);
    free(u);
}

bool mk_update_is_replacement(const mk_update_t *u)
{
    return u->replacement;
}

bool mk_update_is_positional(const mk_update_t *u)
{
    return u->positional;
}
