/* Mutable BSON document tree (see tree.h). */
#include "bson/tree.h"

#include <stdlib.h>
#include <string.h>

#include <meerkat/engine.h>

#include "bson/format.h"
#include "bson/path.h"

#define MAX_PADDING 1500000u /* MongoDB refuses to pad an array with more nulls than this */

struct mk_tree_block {
    mk_tree_block_t *next;
    size_t size;
    _Alignas(16) uint8_t data[];
};

/* ------------------------------------------------------------------ arena */

void mk_tree_init(mk_tree_t *t)
{
    memset(&t->root, 0, sizeof t->root);
    t->blocks = NULL;
    t->cur = t->first;
    t->end = t->first + sizeof t->first;
    mk_tnode_set_empty(&t->root, BSON_TYPE_DOCUMENT);
}

void mk_tree_init_data(mk_tree_t *t, const uint8_t *data, uint32_t len)
{
    mk_tree_init(t);
    t->root.flags = 0;
    t->root.data = data;
    t->root.len = len;
}

void mk_tree_destroy(mk_tree_t *t)
{
    mk_tree_block_t *b = t->blocks;
    while (b) {
        mk_tree_block_t *next = b->next;
        free(b);
        b = next;
    }
    t->blocks = NULL;
    t->cur = t->end = NULL;
}

void *mk_tree_alloc(mk_tree_t *t, size_t n)
{
    if (n > ((size_t)1 << 40)) return NULL;
    n = (n + 7) & ~(size_t)7;
    if ((size_t)(t->end - t->cur) < n) {
        size_t size = t->blocks ? t->blocks->size * 2 : 8192;
        if (size > ((size_t)1 << 24)) size = (size_t)1 << 24; /* grow, but not without bound */
        if (size < n) size = n;
        mk_tree_block_t *b = malloc(sizeof *b + size);
        if (!b) return NULL;
        b->size = size;
        b->next = t->blocks;
        t->blocks = b;
        t->cur = b->data;
        t->end = b->data + size;
    }
    void *p = t->cur;
    t->cur += n;
    return p;
}

/* ------------------------------------------------------------------ raw BSON */

static uint32_t rd_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return BSON_UINT32_FROM_LE(v);
}

static uint64_t rd_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return BSON_UINT64_FROM_LE(v);
}

static void wr_u32(uint8_t *p, uint32_t v)
{
    v = BSON_UINT32_TO_LE(v);
    memcpy(p, &v, 4);
}

/* A length-prefixed, NUL-terminated string (string, code, symbol) at p. */
static bool string_len(const uint8_t *p, size_t avail, uint32_t *len)
{
    if (avail < 5) return false;
    uint32_t l = rd_u32(p);
    if (l < 1 || l > avail - 4 || p[4 + l - 1] != 0) return false;
    *len = 4 + l;
    return true;
}

bool mk_raw_value_len(uint8_t type, const uint8_t *p, size_t avail, uint32_t *len)
{
    uint32_t l;
    const uint8_t *nul;
    switch (type) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DATE_TIME:
    case BSON_TYPE_INT64:
    case BSON_TYPE_TIMESTAMP:
        l = 8;
        break;
    case BSON_TYPE_INT32:
        l = 4;
        break;
    case BSON_TYPE_DECIMAL128:
        l = 16;
        break;
    case BSON_TYPE_OID:
        l = 12;
        break;
    case BSON_TYPE_BOOL:
        l = 1;
        break;
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_NULL:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        l = 0;
        break;
    case BSON_TYPE_UTF8:
    case BSON_TYPE_CODE:
    case BSON_TYPE_SYMBOL:
        return string_len(p, avail, len);
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        if (avail < 5) return false;
        l = rd_u32(p);
        if (l < 5 || l > avail || p[l - 1] != 0) return false;
        break;
    case BSON_TYPE_BINARY:
        if (avail < 5) return false;
        l = rd_u32(p);
        if (l > avail - 5) return false;
        l += 5;
        break;
    case BSON_TYPE_REGEX: {
        nul = memchr(p, 0, avail);
        if (!nul) return false;
        size_t first = (size_t)(nul - p) + 1;
        nul = memchr(p + first, 0, avail - first);
        if (!nul) return false;
        l = (uint32_t)(nul - p) + 1;
        break;
    }
    case BSON_TYPE_DBPOINTER:
        if (!string_len(p, avail, &l) || avail - l < 12) return false;
        l += 12;
        break;
    case BSON_TYPE_CODEWSCOPE: {
        if (avail < 14) return false;
        l = rd_u32(p);
        uint32_t sl;
        if (l < 14 || l > avail || !string_len(p + 4, l - 4, &sl)) return false;
        uint32_t dl;
        if (!mk_raw_value_len(BSON_TYPE_DOCUMENT, p + 4 + sl, l - 4 - sl, &dl) || 4 + sl + dl != l)
            return false;
        break;
    }
    default:
        return false;
    }
    if (l > avail) return false;
    *len = l;
    return true;
}

bool mk_raw_to_value(uint8_t type, const uint8_t *p, uint32_t len, bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->value_type = (bson_type_t)type;
    uint64_t u;
    switch (type) {
    case BSON_TYPE_DOUBLE:
        u = rd_u64(p);
        memcpy(&v->value.v_double, &u, 8);
        return true;
    case BSON_TYPE_UTF8:
        v->value.v_utf8.len = len - 5;
        v->value.v_utf8.str = (char *)(p + 4);
        return true;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        v->value.v_doc.data = (uint8_t *)p;
        v->value.v_doc.data_len = len;
        return true;
    case BSON_TYPE_BINARY:
        v->value.v_binary.data_len = len - 5;
        v->value.v_binary.subtype = (bson_subtype_t)p[4];
        v->value.v_binary.data = (uint8_t *)(p + 5);
        return true;
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_NULL:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        return true;
    case BSON_TYPE_OID:
        memcpy(v->value.v_oid.bytes, p, 12);
        return true;
    case BSON_TYPE_BOOL:
        v->value.v_bool = p[0] != 0;
        return true;
    case BSON_TYPE_DATE_TIME:
        v->value.v_datetime = (int64_t)rd_u64(p);
        return true;
    case BSON_TYPE_REGEX:
        v->value.v_regex.regex = (char *)p;
        v->value.v_regex.options = (char *)p + strlen((const char *)p) + 1;
        return true;
    case BSON_TYPE_DBPOINTER: {
        uint32_t sl = rd_u32(p);
        v->value.v_dbpointer.collection_len = sl - 1;
        v->value.v_dbpointer.collection = (char *)(p + 4);
        memcpy(v->value.v_dbpointer.oid.bytes, p + 4 + sl, 12);
        return true;
    }
    case BSON_TYPE_CODE:
        v->value.v_code.code_len = len - 5;
        v->value.v_code.code = (char *)(p + 4);
        return true;
    case BSON_TYPE_SYMBOL:
        v->value.v_symbol.len = len - 5;
        v->value.v_symbol.symbol = (char *)(p + 4);
        return true;
    case BSON_TYPE_CODEWSCOPE: {
        uint32_t sl = rd_u32(p + 4);
        v->value.v_codewscope.code_len = sl - 1;
        v->value.v_codewscope.code = (char *)(p + 8);
        v->value.v_codewscope.scope_data = (uint8_t *)(p + 8 + sl);
        v->value.v_codewscope.scope_len = len - 8 - sl;
        return true;
    }
    case BSON_TYPE_INT32:
        v->value.v_int32 = (int32_t)rd_u32(p);
        return true;
    case BSON_TYPE_TIMESTAMP:
        v->value.v_timestamp.increment = rd_u32(p);
        v->value.v_timestamp.timestamp = rd_u32(p + 4);
        return true;
    case BSON_TYPE_INT64:
        v->value.v_int64 = (int64_t)rd_u64(p);
        return true;
    case BSON_TYPE_DECIMAL128:
        v->value.v_decimal128.low = rd_u64(p);
        v->value.v_decimal128.high = rd_u64(p + 8);
        return true;
    }
    return false;
}

bool mk_raw_iter_init(mk_raw_iter_t *it, const uint8_t *doc, uint32_t len)
{
    memset(it, 0, sizeof *it);
    if (len < 5 || rd_u32(doc) != len || doc[len - 1] != 0) return false;
    it->p = doc + 4;
    it->end = doc + len - 1; /* the trailing NUL */
    return true;
}

bool mk_raw_iter_next(mk_raw_iter_t *it, bool *bad)
{
    *bad = false;
    if (!it->p || it->p >= it->end) return false;
    const uint8_t *start = it->p;
    uint8_t type = *it->p++;
    const uint8_t *nul = memchr(it->p, 0, (size_t)(it->end - it->p));
    if (type == 0 || !nul) goto corrupt;
    it->type = type;
    it->key = (const char *)it->p;
    it->keylen = (uint32_t)(nul - it->p);
    it->value = nul + 1;
    if (!mk_raw_value_len(type, it->value, (size_t)(it->end - it->value), &it->vlen)) goto corrupt;
    it->p = it->value + it->vlen;
    it->elem = start;
    it->elen = (uint32_t)(it->p - start);
    return true;
corrupt:
    it->p = NULL;
    *bad = true;
    return false;
}

static int corrupt(mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON: corrupt document");
}

/* ------------------------------------------------------------------ nodes */

int mk_tnode_expand(mk_tree_t *t, mk_tnode_t *n, mk_error_t *err)
{
    if (!mk_tnode_is_container(n) || (n->flags & MK_TNODE_EXPANDED)) return MK_OK;
    mk_raw_iter_t it;
    bool bad = false;
    uint32_t count = 0;
    if (!mk_raw_iter_init(&it, n->data, n->len)) return corrupt(err);
    while (mk_raw_iter_next(&it, &bad)) count++;
    if (bad) return corrupt(err);

    mk_tnode_t **kids = NULL;
    mk_tnode_t *nodes = NULL;
    if (count) {
        kids = mk_tree_alloc(t, count * sizeof *kids);
        nodes = mk_tree_alloc(t, count * sizeof *nodes);
        if (!kids || !nodes) return mk_error_nomem(err);
    }
    /* Containers inside a value placed by a change are checked for depth on output too. */
    uint8_t inherited = n->flags & MK_TNODE_FOREIGN;
    mk_raw_iter_init(&it, n->data, n->len);
    for (uint32_t i = 0; mk_raw_iter_next(&it, &bad); i++) {
        mk_tnode_t *c = &nodes[i];
        memset(c, 0, sizeof *c);
        c->key = it.key;
        c->keylen = it.keylen;
        c->type = it.type;
        c->data = it.value;
        c->len = it.vlen;
        if (mk_tnode_is_container(c)) c->flags = inherited;
        kids[i] = c;
    }
    n->kids = kids;
    n->nkids = n->cap = count;
    n->flags |= MK_TNODE_EXPANDED;
    return MK_OK;
}

int mk_tnode_find(mk_tree_t *t, mk_tnode_t *n, const char *key, size_t keylen, mk_tnode_t **out,
                  uint32_t *pos, mk_error_t *err)
{
    *out = NULL;
    if (!mk_tnode_is_container(n)) return MK_OK;
    int rc = mk_tnode_expand(t, n, err);
    if (rc != MK_OK) return rc;
    if (n->type == BSON_TYPE_ARRAY) {
        uint32_t idx;
        if (!mk_path_component_index(key, keylen, &idx) || idx >= n->nkids) return MK_OK;
        *out = n->kids[idx];
        if (pos) *pos = idx;
        return MK_OK;
    }
    for (uint32_t i = 0; i < n->nkids; i++) {
        mk_tnode_t *c = n->kids[i];
        if (c->keylen == keylen && memcmp(c->key, key, keylen) == 0) {
            *out = c;
            if (pos) *pos = i;
            return MK_OK;
        }
    }
    return MK_OK;
}

int mk_tnode_insert(mk_tree_t *t, mk_tnode_t *n, uint32_t pos, const char *key, size_t keylen,
                    mk_tnode_t **out, mk_error_t *err)
{
    int rc = mk_tnode_expand(t, n, err);
    if (rc != MK_OK) return rc;
    if (keylen > UINT32_MAX - 1 || n->nkids == UINT32_MAX)
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "field name or array too long");
    if (n->nkids == n->cap) {
        uint32_t cap = n->cap < 4 ? 8 : (n->cap > UINT32_MAX / 2 ? UINT32_MAX : n->cap * 2);
        mk_tnode_t **kids = mk_tree_alloc(t, (size_t)cap * sizeof *kids);
        if (!kids) return mk_error_nomem(err);
        if (n->nkids) memcpy(kids, n->kids, n->nkids * sizeof *kids);
        n->kids = kids;
        n->cap = cap;
    }
    mk_tnode_t *c = mk_tree_alloc(t, sizeof *c);
    char *k = mk_tree_alloc(t, keylen + 1);
    if (!c || !k) return mk_error_nomem(err);
    memset(c, 0, sizeof *c);
    if (keylen) memcpy(k, key, keylen);
    k[keylen] = 0;
    c->key = k;
    c->keylen = (uint32_t)keylen;
    c->type = BSON_TYPE_NULL;
    if (pos > n->nkids) pos = n->nkids;
    memmove(n->kids + pos + 1, n->kids + pos, (n->nkids - pos) * sizeof *n->kids);
    n->kids[pos] = c;
    n->nkids++;
    *out = c;
    return MK_OK;
}

void mk_tnode_remove(mk_tnode_t *n, uint32_t pos)
{
    if (pos >= n->nkids) return;
    memmove(n->kids + pos, n->kids + pos + 1, (n->nkids - pos - 1) * sizeof *n->kids);
    n->nkids--;
}

uint32_t mk_tnode_index_of(const mk_tnode_t *n, const mk_tnode_t *c)
{
    if (!(n->flags & MK_TNODE_EXPANDED)) return UINT32_MAX;
    for (uint32_t i = 0; i < n->nkids; i++)
        if (n->kids[i] == c) return i;
    return UINT32_MAX;
}

void mk_tnode_set_raw(mk_tnode_t *n, bson_type_t type, const uint8_t *data, uint32_t len)
{
    n->type = (uint8_t)type;
    n->data = data;
    n->len = len;
    n->kids = NULL;
    n->nkids = n->cap = 0;
    n->flags = mk_tnode_is_container(n) ? MK_TNODE_FOREIGN : 0;
}

int mk_tnode_set_value(mk_tree_t *t, mk_tnode_t *n, const bson_value_t *v, mk_error_t *err)
{
    /* libbson encodes the value into a one-field document; its value bytes are kept. */
    bson_t tmp;
    bson_init(&tmp);
    if (!bson_append_value(&tmp, "", 0, v)) {
        bson_destroy(&tmp);
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "value cannot be stored in BSON");
    }
    const uint8_t *d = bson_get_data(&tmp);
    uint32_t len = tmp.len - 4 - 2 - 1; /* length, type byte, empty key, trailing NUL */
    uint8_t *copy = mk_tree_alloc(t, len ? len : 1);
    if (!copy) {
        bson_destroy(&tmp);
        return mk_error_nomem(err);
    }
    memcpy(copy, d + 6, len);
    bson_destroy(&tmp);
    mk_tnode_set_raw(n, v->value_type, copy, len);
    return MK_OK;
}

void mk_tnode_set_null(mk_tnode_t *n)
{
    mk_tnode_set_raw(n, BSON_TYPE_NULL, NULL, 0);
}

void mk_tnode_set_empty(mk_tnode_t *n, bson_type_t doc_or_array)
{
    n->type = (uint8_t)doc_or_array;
    n->data = NULL;
    n->len = 0;
    n->kids = NULL;
    n->nkids = n->cap = 0;
    n->flags = MK_TNODE_EXPANDED;
}

void mk_tnode_copy_value(mk_tnode_t *dst, const mk_tnode_t *src)
{
    const char *key = dst->key;
    uint32_t keylen = dst->keylen;
    *dst = *src;
    dst->key = key;
    dst->keylen = keylen;
    /* The value may now sit deeper than it did: check it on output. */
    if (mk_tnode_is_container(dst)) dst->flags |= MK_TNODE_FOREIGN;
    /* Children are shared: dst must not append into src's kids array. */
    dst->cap = dst->nkids;
}

/* ------------------------------------------------------------------ output */

static uint32_t index_key(uint32_t i, char *buf)
{
    char tmp[10];
    uint32_t n = 0;
    do {
        tmp[n++] = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    for (uint32_t j = 0; j < n; j++) buf[j] = tmp[n - 1 - j];
    return n;
}

static uint32_t index_key_len(uint32_t i)
{
    uint32_t n = 1;
    while (i >= 10) {
        i /= 10;
        n++;
    }
    return n;
}

static int depth_error(mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_OVERFLOW, "Document exceeds maximum nesting depth of %d",
                         MK_MAX_DEPTH);
}

int mk_raw_depth(const uint8_t *data, uint32_t len, int limit)
{
    mk_raw_iter_t it;
    bool bad;
    if (!mk_raw_iter_init(&it, data, len)) return -1;
    int max = 0;
    while (mk_raw_iter_next(&it, &bad)) {
        int d = 1;
        if (it.type == BSON_TYPE_DOCUMENT || it.type == BSON_TYPE_ARRAY) {
            if (limit <= 1) return limit + 1;
            int sub = mk_raw_depth(it.value, it.vlen, limit - 1);
            if (sub < 0) return -1;
            d = 1 + sub;
        }
        if (d > max) max = d;
        if (max > limit) return max;
    }
    return bad ? -1 : max;
}

/* The serialized size of n's value; `level` is the nesting level of n's children (the root's
 * fields are level 1), checked against MK_MAX_DEPTH when `check`. Caches sizes of expanded
 * containers in n->len. */
static int node_size(mk_tnode_t *n, int level, bool check, uint32_t *out, mk_error_t *err)
{
    if (!mk_tnode_is_container(n) || !(n->flags & MK_TNODE_EXPANDED)) {
        if (check && mk_tnode_is_container(n) && (n->flags & MK_TNODE_FOREIGN)) {
            int d = mk_raw_depth(n->data, n->len, MK_MAX_DEPTH - level + 1);
            if (d < 0) return corrupt(err);
            if (d > 0 && level + d - 1 > MK_MAX_DEPTH) return depth_error(err);
        }
        *out = n->len;
        return MK_OK;
    }
    if (check && n->nkids && level > MK_MAX_DEPTH) return depth_error(err);
    uint64_t size = 5;
    bool array = n->type == BSON_TYPE_ARRAY;
    for (uint32_t i = 0; i < n->nkids; i++) {
        mk_tnode_t *c = n->kids[i];
        uint32_t cs = 0;
        int rc = node_size(c, level + 1, check, &cs, err);
        if (rc != MK_OK) return rc;
        size += 2 + (array ? index_key_len(i) : c->keylen) + (uint64_t)cs;
        if (size > INT32_MAX)
            return mk_error_setc(err, MK_CODE_BSON_OBJECT_TOO_LARGE, "document is too large");
    }
    n->len = (uint32_t)size;
    *out = n->len;
    return MK_OK;
}

static uint8_t *write_node(const mk_tnode_t *n, uint8_t *p)
{
    if (!mk_tnode_is_container(n) || !(n->flags & MK_TNODE_EXPANDED)) {
        if (n->len) memcpy(p, n->data, n->len);
        return p + n->len;
    }
    wr_u32(p, n->len);
    p += 4;
    bool array = n->type == BSON_TYPE_ARRAY;
    for (uint32_t i = 0; i < n->nkids; i++) {
        const mk_tnode_t *c = n->kids[i];
        *p++ = c->type;
        if (array) {
            p += index_key(i, (char *)p);
        } else {
            memcpy(p, c->key, c->keylen);
            p += c->keylen;
        }
        *p++ = 0;
        p = write_node(c, p);
    }
    *p++ = 0;
    return p;
}

int mk_tree_size(mk_tree_t *t, uint32_t *size, mk_error_t *err)
{
    return node_size(&t->root, 1, true, size, err);
}

int mk_tree_to_bson(mk_tree_t *t, bson_t *out, mk_error_t *err)
{
    uint32_t size;
    int rc = node_size(&t->root, 1, true, &size, err);
    if (rc != MK_OK) return rc;
    uint8_t *buf = bson_reserve_buffer(out, size);
    if (!buf) return mk_error_nomem(err);
    write_node(&t->root, buf);
    return MK_OK;
}

int mk_tnode_bytes(mk_tree_t *t, mk_tnode_t *n, const uint8_t **data, uint32_t *len,
                   mk_error_t *err)
{
    if (!mk_tnode_is_container(n) || !(n->flags & MK_TNODE_EXPANDED)) {
        *data = n->data;
        *len = n->len;
        return MK_OK;
    }
    uint32_t size;
    int rc = node_size(n, 1, false, &size, err); /* depth is the output's business */
    if (rc != MK_OK) return rc;
    uint8_t *buf = mk_tree_alloc(t, size);
    if (!buf) return mk_error_nomem(err);
    write_node(n, buf);
    *data = buf;
    *len = size;
    return MK_OK;
}

int mk_tnode_value(mk_tree_t *t, mk_tnode_t *n, bson_value_t *out, mk_error_t *err)
{
    const uint8_t *data = NULL;
    uint32_t len = 0;
    int rc = mk_tnode_bytes(t, n, &data, &len, err);
    if (rc != MK_OK) return rc;
    static const uint8_t none[1] = {0};
    if (!mk_raw_to_value(n->type, data ? data : none, len, out)) return corrupt(err);
    return MK_OK;
}

int mk_tnode_binary_equal(mk_tree_t *t, mk_tnode_t *a, mk_tnode_t *b, bool *equal, mk_error_t *err)
{
    *equal = false;
    if (a->type != b->type) return MK_OK;
    const uint8_t *da, *db;
    uint32_t la, lb;
    int rc = mk_tnode_bytes(t, a, &da, &la, err);
    if (rc == MK_OK) rc = mk_tnode_bytes(t, b, &db, &lb, err);
    if (rc != MK_OK) return rc;
    *equal = la == lb && (la == 0 || memcmp(da, db, la) == 0);
    return MK_OK;
}

void mk_tnode_format(mk_tree_t *t, mk_tnode_t *n, bson_string_t *s)
{
    bson_value_t v;
    bson_string_append_printf(s, "%.*s: ", (int)n->keylen, n->key ? n->key : "");
    if (mk_tnode_value(t, n, &v, NULL) == MK_OK)
        mk_format_value(s, &v);
    else
        bson_string_append(s, "?");
}

/* ------------------------------------------------------------------ paths */

static size_t split_path(const char *path, size_t len, mk_tree_comp_t *comps, size_t max)
{
    size_t n = 0;
    const char *p = path, *end = path + len;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *stop = dot ? dot : end;
        if (n < max) {
            comps[n].s = p;
            comps[n].len = (uint32_t)(stop - p);
        }
        n++;
        if (!dot) break;
        p = dot + 1;
    }
    return n;
}

static int empty_path(mk_error_t *err)
{
    return mk_error_setc(err, MK_CODE_EMPTY_FIELD_NAME, "An empty path is not valid.");
}

/* Splits `path` into arena-allocated components (*comps, *n). */
static int path_comps(mk_tree_t *t, const char *path, size_t len, mk_tree_comp_t **comps, size_t *n,
                      mk_error_t *err)
{
    if (len == 0) return empty_path(err);
    size_t count = split_path(path, len, NULL, 0);
    *comps = mk_tree_alloc(t, count * sizeof **comps);
    if (!*comps) return mk_error_nomem(err);
    *n = split_path(path, len, *comps, count);
    for (size_t i = 0; i < *n; i++)
        if ((*comps)[i].len == 0)
            return mk_error_setc(err, MK_CODE_EMPTY_FIELD_NAME,
                                 "The path '%.*s' contains an empty field name", (int)len, path);
    return MK_OK;
}

int mk_tree_get(mk_tree_t *t, const char *path, size_t len, mk_tnode_t **out, mk_error_t *err)
{
    mk_tree_comp_t *comps;
    size_t n;
    *out = NULL;
    int rc = path_comps(t, path, len, &comps, &n, err);
    mk_tnode_t *cur = &t->root;
    for (size_t i = 0; rc == MK_OK && i < n && cur; i++)
        rc = mk_tnode_find(t, cur, comps[i].s, comps[i].len, &cur, NULL, err);
    if (rc == MK_OK) *out = cur;
    return rc;
}

static int not_viable(mk_tree_t *t, mk_tnode_t *parent, const mk_tree_comp_t *c, mk_error_t *err)
{
    bson_string_t *s = bson_string_new(NULL);
    mk_tnode_format(t, parent, s);
    mk_error_setc(err, MK_CODE_PATH_NOT_VIABLE, "Cannot create field '%.*s' in element {%s}",
                  (int)c->len, c->s, s->str);
    bson_string_free(s, true);
    return MK_ERR;
}

int mk_tree_create_path(mk_tree_t *t, mk_tnode_t *parent, const mk_tree_comp_t *comps, size_t n,
                        mk_tnode_t **leaf, mk_tnode_t **first, mk_error_t *err)
{
    if (n == 0) return empty_path(err);
    if (!mk_tnode_is_container(parent)) return not_viable(t, parent, &comps[0], err);
    int rc = mk_tnode_expand(t, parent, err);
    if (rc != MK_OK) return rc;
    mk_tnode_t *cur;
    if (parent->type == BSON_TYPE_ARRAY) {
        uint32_t idx;
        if (!mk_path_component_index(comps[0].s, comps[0].len, &idx))
            return not_viable(t, parent, &comps[0], err);
        if (idx < parent->nkids)
            return mk_error_setc(err, MK_CODE_INTERNAL, "array element %u already exists", idx);
        if (idx - parent->nkids > MAX_PADDING)
            return mk_error_set(err, 105, "CannotBackfillArray",
                                "can't backfill more than %u elements", MAX_PADDING);
        while (parent->nkids < idx) {
            mk_tnode_t *pad;
            rc = mk_tnode_insert(t, parent, UINT32_MAX, "", 0, &pad, err);
            if (rc != MK_OK) return rc;
        }
    }
    rc = mk_tnode_insert(t, parent, UINT32_MAX, comps[0].s, comps[0].len, &cur, err);
    if (rc != MK_OK) return rc;
    *first = cur;
    for (size_t i = 1; i < n; i++) {
        mk_tnode_set_empty(cur, BSON_TYPE_DOCUMENT);
        rc = mk_tnode_insert(t, cur, UINT32_MAX, comps[i].s, comps[i].len, &cur, err);
        if (rc != MK_OK) return rc;
    }
    *leaf = cur;
    return MK_OK;
}

int mk_tree_set(mk_tree_t *t, const char *path, size_t len, const bson_value_t *v,
                mk_tnode_t **node, mk_error_t *err)
{
    mk_tree_comp_t *comps;
    size_t n;
    int rc = path_comps(t, path, len, &comps, &n, err);
    if (rc != MK_OK) return rc;
    mk_tnode_t *cur = &t->root, *next = NULL, *leaf = NULL, *first;
    size_t i = 0;
    for (; i < n; i++) {
        rc = mk_tnode_find(t, cur, comps[i].s, comps[i].len, &next, NULL, err);
        if (rc != MK_OK) return rc;
        if (!next) break;
        cur = next;
    }
    if (i == n) {
        leaf = cur;
        mk_tnode_set_null(leaf);
    } else {
        rc = mk_tree_create_path(t, cur, comps + i, n - i, &leaf, &first, err);
        if (rc != MK_OK) return rc;
    }
    if (v) {
        rc = mk_tnode_set_value(t, leaf, v, err);
        if (rc != MK_OK) return rc;
    }
    if (node) *node = leaf;
    return MK_OK;
}

int mk_tree_unset(mk_tree_t *t, const char *path, size_t len, bool *removed, mk_error_t *err)
{
    mk_tree_comp_t *comps;
    size_t n;
    if (removed) *removed = false;
    int rc = path_comps(t, path, len, &comps, &n, err);
    if (rc != MK_OK) return rc;
    mk_tnode_t *parent = NULL, *cur = &t->root;
    uint32_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        parent = cur;
        rc = mk_tnode_find(t, parent, comps[i].s, comps[i].len, &cur, &pos, err);
        if (rc != MK_OK) return rc;
        if (!cur) return MK_OK;
    }
    if (parent->type == BSON_TYPE_ARRAY)
        mk_tnode_set_null(cur);
    else
        mk_tnode_remove(parent, pos);
    if (removed) *removed = true;
    return MK_OK;
}
