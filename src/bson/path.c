/* Exact dotted-path lookup (see path.h). */
#include "bson/path.h"

#include <string.h>

bool mk_path_component_index(const char *s, size_t len, uint32_t *idx)
{
    if (len == 0 || len > 10) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > INT32_MAX) return false;
    if (idx) *idx = (uint32_t)v;
    return true;
}

/* Finds key `k` (klen bytes) among the fields iterated by `it`. */
static bool find_key(bson_iter_t *it, const char *k, size_t klen)
{
    while (bson_iter_next(it)) {
        if (bson_iter_key_len(it) == klen && memcmp(bson_iter_key(it), k, klen) == 0) return true;
    }
    return false;
}

bool mk_path_getn(const bson_t *doc, const char *path, size_t len, bson_iter_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) return false;
    const char *p = path, *end = path + len;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t clen = dot ? (size_t)(dot - p) : (size_t)(end - p);
        /* Array element keys are "0", "1", ...: an exact key match is an index match. */
        if (!find_key(&it, p, clen)) return false;
        if (!dot) {
            *out = it;
            return true;
        }
        bson_type_t t = bson_iter_type(&it);
        if (t != BSON_TYPE_DOCUMENT && t != BSON_TYPE_ARRAY) return false;
        bson_iter_t child;
        if (!bson_iter_recurse(&it, &child)) return false;
        it = child;
        p = dot + 1;
    }
}

bool mk_path_get(const bson_t *doc, const char *path, bson_iter_t *out)
{
    return mk_path_getn(doc, path, strlen(path), out);
}
