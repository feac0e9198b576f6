/* Setters and "setters then cast" (see setters.h), and the lookup of dotted paths that the
 * document, filter and update casting share. */
#include "odm/setters.h"

#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "odm/schema_fns.h"
#include "odm/validate.h"

/* ---------- small value helpers ---------- */

void mk_value_set_undefined(bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_UNDEFINED;
}

void mk_value_set_null(bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_NULL;
}

void mk_value_take_bson(bson_t *b, bool array, bson_value_t *out)
{
    uint32_t len = 0;
    uint8_t *data = bson_destroy_with_steal(b, true, &len);
    memset(out, 0, sizeof *out);
    out->value_type = array ? BSON_TYPE_ARRAY : BSON_TYPE_DOCUMENT;
    out->value.v_doc.data = data;
    out->value.v_doc.data_len = len;
}

static bool is_nullish(const bson_value_t *v)
{
    return !v || v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED ||
           v->value_type == BSON_TYPE_EOD;
}

bool mk_js_truthy(const bson_value_t *v)
{
    if (!v) return false;
    switch (v->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_NULL:
        return false;
    case BSON_TYPE_BOOL:
        return v->value.v_bool;
    case BSON_TYPE_INT32:
        return v->value.v_int32 != 0;
    case BSON_TYPE_INT64:
        return v->value.v_int64 != 0;
    case BSON_TYPE_DOUBLE:
        return v->value.v_double != 0 && !isnan(v->value.v_double);
    case BSON_TYPE_UTF8:
        return v->value.v_utf8.len > 0;
    default:
        return true; /* objects, arrays, dates, ObjectIds... */
    }
}

static bool iter_truthy(const bson_iter_t *it)
{
    return mk_js_truthy(bson_iter_value((bson_iter_t *)it));
}

/* Copies `in` (NULL = undefined) into a new value. */
static void copy_or_undefined(const bson_value_t *in, bson_value_t *out)
{
    if (!in || in->value_type == BSON_TYPE_EOD)
        mk_value_set_undefined(out);
    else
        bson_value_copy(in, out);
}

/* ---------- the BSON writer ---------- */

void mk_bw_init(mk_bw_t *w)
{
    w->buf = w->local;
    w->cap = sizeof w->local;
    w->len = 4; /* the document's length, written by mk_bw_finish */
    w->oom = false;
}

void mk_bw_free(mk_bw_t *w)
{
    if (w->buf != w->local) free(w->buf);
    w->buf = w->local;
    w->cap = sizeof w->local;
    w->len = 0;
}

bool mk_bw_grow(mk_bw_t *w, size_t n)
{
    if (w->oom) return false;
    size_t need = w->len + n;
    if (need < w->len || need > INT32_MAX) { /* libbson's limit too */
        w->oom = true;
        return false;
    }
    size_t cap = w->cap;
    while (cap < need) cap *= 2;
    uint8_t *b = w->buf == w->local ? malloc(cap) : realloc(w->buf, cap);
    if (!b) {
        w->oom = true;
        return false;
    }
    if (w->buf == w->local) memcpy(b, w->local, w->len);
    w->buf = b;
    w->cap = cap;
    return true;
}

bool mk_bw_finish(mk_bw_t *w, bson_t *view)
{
    if (!mk_bw_room(w, 1)) return false;
    w->buf[w->len++] = 0;
    uint32_t n = BSON_UINT32_TO_LE((uint32_t)w->len);
    memcpy(w->buf, &n, 4);
    return bson_init_static(view, w->buf, w->len);
}

static void put_raw(mk_bw_t *w, const void *p, size_t n)
{
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put_u32(mk_bw_t *w, uint32_t v)
{
    v = BSON_UINT32_TO_LE(v);
    put_raw(w, &v, 4);
}

static void put_u64(mk_bw_t *w, uint64_t v)
{
    v = BSON_UINT64_TO_LE(v);
    put_raw(w, &v, 8);
}

/* Element bytes written by libbson itself (types whose encoding it normalises). */
static void put_via_libbson(mk_bw_t *w, const char *key, size_t keylen, const bson_value_t *v,
                            const bson_iter_t *it)
{
    bson_t tmp;
    bson_init(&tmp);
    bool ok = it ? bson_append_iter(&tmp, key, (int)keylen, it)
                 : bson_append_value(&tmp, key, (int)keylen, v);
    if (ok && mk_bw_room(w, tmp.len - 5)) put_raw(w, bson_get_data(&tmp) + 4, tmp.len - 5);
    bson_destroy(&tmp);
}

void mk_bw_value(mk_bw_t *w, const char *key, size_t keylen, const bson_value_t *v)
{
    bson_type_t t = v->value_type;
    switch (t) {
    case BSON_TYPE_DOUBLE: {
        uint64_t bits;
        memcpy(&bits, &v->value.v_double, 8);
        if (mk_bw_head(w, t, key, keylen, 8)) put_u64(w, bits);
        return;
    }
    case BSON_TYPE_UTF8: {
        uint32_t n = v->value.v_utf8.len;
        if (!v->value.v_utf8.str) { /* bson_append_utf8 writes null for a NULL string */
            mk_bw_head(w, BSON_TYPE_NULL, key, keylen, 0);
            return;
        }
        if (n >= INT32_MAX || !mk_bw_head(w, t, key, keylen, (size_t)n + 5)) return;
        put_u32(w, n + 1);
        put_raw(w, v->value.v_utf8.str, n);
        w->buf[w->len++] = 0;
        return;
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        /* bson_append_value appends nothing when bson_init_static would fail */
        if (!mk_doc_ok(v->value.v_doc.data, v->value.v_doc.data_len)) return;
        if (mk_bw_head(w, t, key, keylen, v->value.v_doc.data_len))
            put_raw(w, v->value.v_doc.data, v->value.v_doc.data_len);
        return;
    }
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_NULL:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        mk_bw_head(w, t, key, keylen, 0);
        return;
    case BSON_TYPE_OID:
        if (mk_bw_head(w, t, key, keylen, 12)) put_raw(w, v->value.v_oid.bytes, 12);
        return;
    case BSON_TYPE_BOOL:
        if (mk_bw_head(w, t, key, keylen, 1)) w->buf[w->len++] = v->value.v_bool ? 1 : 0;
        return;
    case BSON_TYPE_DATE_TIME:
        if (mk_bw_head(w, t, key, keylen, 8)) put_u64(w, (uint64_t)v->value.v_datetime);
        return;
    case BSON_TYPE_INT32:
        if (mk_bw_head(w, t, key, keylen, 4)) put_u32(w, (uint32_t)v->value.v_int32);
        return;
    case BSON_TYPE_INT64:
        if (mk_bw_head(w, t, key, keylen, 8)) put_u64(w, (uint64_t)v->value.v_int64);
        return;
    case BSON_TYPE_TIMESTAMP:
        if (mk_bw_head(w, t, key, keylen, 8))
            put_u64(w, ((uint64_t)v->value.v_timestamp.timestamp << 32) |
                           v->value.v_timestamp.increment);
        return;
    case BSON_TYPE_DECIMAL128:
        if (mk_bw_head(w, t, key, keylen, 16)) {
            put_u64(w, v->value.v_decimal128.low);
            put_u64(w, v->value.v_decimal128.high);
        }
        return;
    case BSON_TYPE_EOD:
        return;
    default: /* binary, regex, code, symbol, code with scope, DBPointer */
        if (!w->oom) put_via_libbson(w, key, keylen, v, NULL);
        return;
    }
}

void mk_bw_iter(mk_bw_t *w, const char *key, size_t keylen, const bson_iter_t *it)
{
    if (!key) {
        key = bson_iter_key(it);
        keylen = strlen(key);
    }
    switch (bson_iter_type(it)) {
    case BSON_TYPE_BINARY:
    case BSON_TYPE_REGEX:
    case BSON_TYPE_CODE:
    case BSON_TYPE_SYMBOL:
    case BSON_TYPE_CODEWSCOPE:
    case BSON_TYPE_DBPOINTER:
        if (!w->oom) put_via_libbson(w, key, keylen, NULL, it);
        return;
    default:
        mk_bw_value(w, key, keylen, bson_iter_value((bson_iter_t *)it));
        return;
    }
}

void mk_bw_fields(mk_bw_t *w, const bson_t *doc)
{
    if (!bson_empty(doc) && mk_bw_room(w, doc->len - 5))
        put_raw(w, bson_get_data(doc) + 4, doc->len - 5);
}

void mk_bw_null(mk_bw_t *w, const char *key, size_t keylen)
{
    mk_bw_head(w, BSON_TYPE_NULL, key, keylen, 0);
}

void mk_bw_undefined(mk_bw_t *w, const char *key, size_t keylen)
{
    mk_bw_head(w, BSON_TYPE_UNDEFINED, key, keylen, 0);
}

void mk_bw_int32(mk_bw_t *w, const char *key, size_t keylen, int32_t v)
{
    if (mk_bw_head(w, BSON_TYPE_INT32, key, keylen, 4)) put_u32(w, (uint32_t)v);
}

void mk_bw_date(mk_bw_t *w, const char *key, size_t keylen, int64_t ms)
{
    if (mk_bw_head(w, BSON_TYPE_DATE_TIME, key, keylen, 8)) put_u64(w, (uint64_t)ms);
}

void mk_bw_utf8(mk_bw_t *w, const char *key, size_t keylen, const char *str, size_t len)
{
    bson_value_t v = {.value_type = BSON_TYPE_UTF8};
    v.value.v_utf8.str = (char *)str;
    v.value.v_utf8.len = (uint32_t)len;
    mk_bw_value(w, key, keylen, &v);
}

void mk_bw_wrap(mk_bw_t *w, size_t at, const char *inner)
{
    if (w->oom || at >= w->len) return;
    size_t kl = strlen((const char *)w->buf + at + 1), il = strlen(inner);
    size_t vs = at + kl + 2, vlen = w->len - vs, head = 4 + 1 + il + 1;
    if (!mk_bw_room(w, head + 1)) return;
    memmove(w->buf + vs + head, w->buf + vs, vlen);
    uint32_t total = BSON_UINT32_TO_LE((uint32_t)(head + vlen + 1));
    memcpy(w->buf + vs, &total, 4);
    w->buf[vs + 4] = w->buf[at]; /* the wrapped value keeps its type */
    memcpy(w->buf + vs + 5, inner, il + 1);
    w->len += head;
    w->buf[w->len++] = 0;
    w->buf[at] = BSON_TYPE_DOCUMENT;
}

size_t mk_bw_index_key(uint32_t i, char buf[16], const char **key)
{
    return bson_uint32_to_string(i, key, buf, 16);
}

/* ---------- the BSON reader ---------- */

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return BSON_UINT32_FROM_LE(v);
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return BSON_UINT64_FROM_LE(v);
}

/* The element at `off` through libbson (types this reader does not decode itself). */
static bool br_via_libbson(mk_br_t *r, uint32_t off, uint32_t keylen, mk_elem_t *e)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data_at_offset(&it, r->raw, r->len, off, keylen)) {
        r->raw = NULL;
        return false;
    }
    e->v = *bson_iter_value(&it);
    r->next = it.next_off;
    return true;
}

bool mk_br_next_slow(mk_br_t *r, mk_elem_t *e)
{
    const uint8_t *raw = r->raw;
    if (!raw) return false;
    uint32_t len = r->len, off = r->next, key = off + 1, o = key, next;
    while (o < len && raw[o]) o++; /* the key */
    if (o >= len) goto invalid;
    o++; /* the value */
    e->key = (const char *)raw + key;
    e->keylen = o - key - 1;
    bson_type_t type = (bson_type_t)raw[off];
    switch (type) {
    case BSON_TYPE_DATE_TIME:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT64:
    case BSON_TYPE_TIMESTAMP:
        next = o + 8;
        break;
    case BSON_TYPE_UTF8: {
        if (o + 4 >= len) goto invalid;
        uint32_t l = rd32(raw + o);
        if (l > len - (o + 4)) goto invalid;
        next = o + 4 + l;
        if (l == 0 || next >= len || raw[o + 4 + l - 1] != 0) goto invalid;
        e->v.value.v_utf8.str = (char *)raw + o + 4;
        e->v.value.v_utf8.len = l - 1;
        break;
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        if (o >= len - 4) goto invalid;
        uint32_t l = rd32(raw + o);
        if (l > len || l > len - o) goto invalid;
        next = o + l;
        e->v.value.v_doc.data = (uint8_t *)raw + o;
        e->v.value.v_doc.data_len = l;
        break;
    }
    case BSON_TYPE_OID:
        next = o + 12;
        break;
    case BSON_TYPE_BOOL:
        if (o >= len || raw[o] > 1) goto invalid;
        next = o + 1;
        break;
    case BSON_TYPE_INT32:
        next = o + 4;
        break;
    case BSON_TYPE_DECIMAL128:
        next = o + 16;
        break;
    case BSON_TYPE_MAXKEY:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        next = o;
        break;
    case BSON_TYPE_BINARY:
    case BSON_TYPE_REGEX:
    case BSON_TYPE_DBPOINTER:
    case BSON_TYPE_CODE:
    case BSON_TYPE_SYMBOL:
    case BSON_TYPE_CODEWSCOPE:
        return br_via_libbson(r, off, e->keylen, e);
    default: /* the end, or a type BSON does not have */
        goto invalid;
    }
    if (next >= len) goto invalid;
    e->v.value_type = type;
    switch (type) {
    case BSON_TYPE_DOUBLE: {
        uint64_t bits = rd64(raw + o);
        memcpy(&e->v.value.v_double, &bits, 8);
        break;
    }
    case BSON_TYPE_DATE_TIME:
        e->v.value.v_datetime = (int64_t)rd64(raw + o);
        break;
    case BSON_TYPE_INT64:
        e->v.value.v_int64 = (int64_t)rd64(raw + o);
        break;
    case BSON_TYPE_TIMESTAMP: {
        uint64_t t = rd64(raw + o);
        e->v.value.v_timestamp.timestamp = (uint32_t)(t >> 32);
        e->v.value.v_timestamp.increment = (uint32_t)t;
        break;
    }
    case BSON_TYPE_OID:
        memcpy(e->v.value.v_oid.bytes, raw + o, 12);
        break;
    case BSON_TYPE_BOOL:
        e->v.value.v_bool = raw[o] != 0;
        break;
    case BSON_TYPE_INT32:
        e->v.value.v_int32 = (int32_t)rd32(raw + o);
        break;
    case BSON_TYPE_DECIMAL128:
        e->v.value.v_decimal128.low = rd64(raw + o);
        e->v.value.v_decimal128.high = rd64(raw + o + 8);
        break;
    default:
        break;
    }
    r->next = next;
    return true;
invalid:
    r->raw = NULL;
    return false;
}

/* ---------- the cast plan ---------- */

enum { SLOT_LOWER = 1, SLOT_UPPER, SLOT_TRIM, SLOT_FN, SLOT_SETOPT };

typedef struct {
    const char *name; /* into the plan's own copy; NULL: an empty slot */
    uint32_t len, hash;
    size_t index; /* where the path was when the plan was built */
    const mk_schema_path_t *path;
    const mk_path_info_t *info;
} name_slot_t;

typedef struct cast_plan {
    size_t npaths;
    const mk_schema_path_t *last; /* with npaths: tells a schema changed behind the cache */
    name_slot_t *names;
    size_t name_mask;
    mk_path_info_t *infos; /* by path pointer; path NULL: an empty slot */
    size_t info_mask;
    char *arena; /* the names */
    bool strict_query_named;
} cast_plan_t;

/* Cheap on purpose: the length and three characters (collisions only cost a comparison). */
static uint32_t name_hash(const char *s, size_t n)
{
    if (n == 0) return 0;
    uint32_t h = (uint32_t)n * 0x9E3779B1u;
    h = (h ^ (uint8_t)s[0]) * 0x85EBCA77u;
    h = (h ^ (uint8_t)s[n / 2]) * 0xC2B2AE3Du;
    h = (h ^ (uint8_t)s[n - 1]) * 0x27D4EB2Fu;
    return h ^ (h >> 15);
}

static bool same_name(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static size_t ptr_hash(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 7);
}

static void plan_free(void *p)
{
    cast_plan_t *pl = p;
    if (!pl) return;
    free(pl->names);
    free(pl->infos);
    free(pl->arena);
    free(pl);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 8;
    while (c < n) c *= 2;
    return c;
}

/* What collect_setters reads from the options, and the options casting checks per value. */
static void info_fill(mk_path_info_t *pi, const mk_schema_path_t *p)
{
    memset(pi, 0, sizeof *pi);
    pi->path = p;
    pi->kind = mk_schema_path_kind(p);
    pi->has_cast = mk_setters_cast_type(pi->kind, &pi->cast);
    pi->setops_known = true;
    bool string = pi->kind == MK_TYPE_STRING;
    bool seen_immutable = false, seen_run = false, seen_auto = false;
    bson_iter_t oi;
    if (!bson_iter_init(&oi, mk_schema_path_options(p))) return;
    while (bson_iter_next(&oi)) {
        const char *k = bson_iter_key(&oi);
        int op = 0;
        /* the first occurrence is what mk_schema_path_option finds */
        if (!seen_immutable && strcmp(k, "immutable") == 0) {
            seen_immutable = true;
            pi->immutable = iter_truthy(&oi);
        } else if (!seen_run && strcmp(k, "runSetters") == 0) {
            seen_run = true;
            pi->run_setters = iter_truthy(&oi);
        } else if (!seen_auto && strcmp(k, "auto") == 0) {
            seen_auto = true;
            pi->auto_id = iter_truthy(&oi);
        } else if (string && strcmp(k, "lowercase") == 0) {
            op = iter_truthy(&oi) ? SLOT_LOWER : 0;
        } else if (string && strcmp(k, "uppercase") == 0) {
            op = iter_truthy(&oi) ? SLOT_UPPER : 0;
        } else if (string && strcmp(k, "trim") == 0) {
            op = iter_truthy(&oi) ? SLOT_TRIM : 0;
        } else if (strcmp(k, "set") == 0 && BSON_ITER_HOLDS_UTF8(&oi)) {
            op = SLOT_SETOPT;
        }
        if (!op) continue;
        if (pi->nsetops == sizeof pi->setops)
            pi->setops_known = false;
        else
            pi->setops[pi->nsetops++] = (uint8_t)op;
    }
}

static const mk_path_info_t *info_add(cast_plan_t *pl, const mk_schema_path_t *p)
{
    size_t i = ptr_hash(p) & pl->info_mask;
    while (pl->infos[i].path) {
        if (pl->infos[i].path == p) return &pl->infos[i];
        i = (i + 1) & pl->info_mask;
    }
    info_fill(&pl->infos[i], p);
    return &pl->infos[i];
}

static const mk_path_info_t *plan_find_ptr(const cast_plan_t *pl, const mk_schema_path_t *path)
{
    if (!pl || !path) return NULL;
    for (size_t i = ptr_hash(path) & pl->info_mask; pl->infos[i].path; i = (i + 1) & pl->info_mask)
        if (pl->infos[i].path == path) return &pl->infos[i];
    return NULL;
}

static void *plan_build(const mk_schema_t *s)
{
    mk_schema_cache_set_free((mk_schema_t *)s, MK_SCHEMA_CACHE_CAST, plan_free);
    cast_plan_t *pl = calloc(1, sizeof *pl);
    if (!pl) return NULL;
    size_t n = mk_schema_path_count(s), ninfo = 0, chars = 0;
    for (size_t i = 0; i < n; i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        chars += strlen(mk_schema_path_name(p)) + 1;
        for (const mk_schema_path_t *e = p; e; e = mk_schema_path_element(e)) ninfo++;
    }
    pl->npaths = n;
    pl->last = n ? mk_schema_path_at(s, n - 1) : NULL;
    size_t ncap = pow2_at_least(n * 2), icap = pow2_at_least(ninfo * 2);
    pl->names = calloc(ncap, sizeof *pl->names);
    pl->infos = calloc(icap, sizeof *pl->infos);
    pl->arena = malloc(chars ? chars : 1);
    if (!pl->names || !pl->infos || !pl->arena) {
        plan_free(pl);
        return NULL;
    }
    pl->name_mask = ncap - 1;
    pl->info_mask = icap - 1;
    char *a = pl->arena;
    for (size_t i = 0; i < n; i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        const char *name = mk_schema_path_name(p);
        size_t len = strlen(name);
        uint32_t h = name_hash(name, len);
        size_t k = h & pl->name_mask;
        bool dup = false;
        for (; pl->names[k].name; k = (k + 1) & pl->name_mask)
            if (pl->names[k].len == len && memcmp(pl->names[k].name, name, len) == 0) dup = true;
        const mk_path_info_t *info = info_add(pl, p);
        if (!dup) { /* the first path of a name is the one a scan finds */
            memcpy(a, name, len + 1);
            pl->names[k] = (name_slot_t){
                .name = a, .len = (uint32_t)len, .hash = h, .index = i, .path = p, .info = info};
            a += len + 1;
        }
        for (const mk_schema_path_t *e = mk_schema_path_element(p); e;
             e = mk_schema_path_element(e))
            info_add(pl, e);
    }
    for (size_t i = 0; i <= pl->info_mask; i++)
        if (pl->infos[i].path)
            pl->infos[i].elem = plan_find_ptr(pl, mk_schema_path_element(pl->infos[i].path));
    const mk_schema_options_t *o = mk_schema_options(s);
    bson_iter_t it;
    pl->strict_query_named = o->raw && bson_iter_init_find(&it, o->raw, "strictQuery");
    return pl;
}

/* The schema's plan, NULL when it cannot be built or the schema changed since. */
static const cast_plan_t *plan_of(const mk_schema_t *s)
{
    if (!s) return NULL;
    const cast_plan_t *pl = mk_schema_cache(s, MK_SCHEMA_CACHE_CAST, plan_build);
    if (!pl) return NULL;
    size_t n = mk_schema_path_count(s);
    if (n != pl->npaths || (n && mk_schema_path_at(s, n - 1) != pl->last)) return NULL;
    return pl;
}

const mk_path_info_t *mk_path_info(const mk_schema_t *owner, const mk_schema_path_t *path)
{
    return path ? plan_find_ptr(plan_of(owner), path) : NULL;
}

const void *mk_cast_plan(const mk_schema_t *s)
{
    return plan_of(s);
}

bool mk_schema_names_strict_query(const mk_schema_t *s)
{
    const cast_plan_t *pl = plan_of(s);
    if (pl) return pl->strict_query_named;
    const mk_schema_options_t *o = mk_schema_options(s);
    bson_iter_t it;
    return o->raw && bson_iter_init_find(&it, o->raw, "strictQuery");
}

/* ---------- CastError ---------- */

int mk_cast_error(mk_error_t *err, const char *kind, const bson_value_t *v, const char *path,
                  const char *model, const char *reason)
{
    if (!err) return MK_ERR;
    bson_value_t undef;
    if (!v) {
        mk_value_set_undefined(&undef);
        v = &undef;
    }
    bson_string_t *shown = bson_string_new(NULL);
    mk_cast_inspect(shown, v);
    /* CastError's stringValue: a leading and a trailing ' become ", then quoted unless it
     * starts with " */
    char *s = shown->str;
    size_t n = shown->len;
    if (n > 0 && s[0] == '\'') s[0] = '"';
    if (n > 1 && s[n - 1] == '\'') s[n - 1] = '"';
    bson_string_t *msg = bson_string_new("Cast to ");
    bson_string_append_printf(msg, "%s failed for value ", kind);
    if (n > 0 && s[0] == '"')
        bson_string_append(msg, s);
    else
        bson_string_append_printf(msg, "\"%s\"", s);
    bson_string_append_printf(msg, " (type %s) at path \"%s\"", mk_cast_js_type_name(v),
                              path ? path : "");
    if (model)
        bson_string_append_printf(msg, " for model \"%s\"", model);
    else if (reason)
        bson_string_append_printf(msg, " because of \"%s\"", reason);
    mk_error_set(err, 0, "CastError", "%s", msg->str);
    bson_string_free(msg, true);
    bson_string_free(shown, true);
    return MK_ERR;
}

/* ---------- JS string helpers for the built-in setters ---------- */

static pthread_once_t case_once = PTHREAD_ONCE_INIT;
static locale_t case_locale; /* (locale_t)0: ASCII case mapping only */

static void case_locale_init(void)
{
    case_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!case_locale) case_locale = newlocale(LC_CTYPE_MASK, "C.utf8", (locale_t)0);
}

/* Decodes one UTF-8 sequence; returns its length (1 for a bad byte, *cp = the byte). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t w = (s[0] & 0xe0) == 0xc0   ? 2
               : (s[0] & 0xf0) == 0xe0 ? 3
               : (s[0] & 0xf8) == 0xf0 ? 4
                                       : 0;
    if (w == 0 || w > n) {
        *cp = s[0] | 0x80000000u; /* marks a raw byte */
        return 1;
    }
    uint32_t c = s[0] & (0x7f >> w);
    for (size_t i = 1; i < w; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = s[0] | 0x80000000u;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3f);
    }
    *cp = c;
    return w;
}

static size_t utf8_encode(uint32_t cp, char *o)
{
    if (cp & 0x80000000u) {
        o[0] = (char)(cp & 0xff);
        return 1;
    }
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* JS's toLowerCase / toUpperCase: Unicode simple case mapping, plus ß -> SS. */
static int js_case(const char *s, uint32_t len, bool upper, bson_value_t *out)
{
    pthread_once(&case_once, case_locale_init);
    size_t cap = (size_t)len * 2 + 1; /* a mapping grows a character by at most 2x (ß -> SS) */
    char *buf = bson_malloc(cap);
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utf8_decode(p + i, len - i, &cp);
        if (!(cp & 0x80000000u)) {
            if (upper && cp == 0xdf) {
                buf[o++] = 'S';
                buf[o++] = 'S';
                continue;
            }
            if (cp < 0x80)
                cp = (uint32_t)(upper ? toupper((int)cp) : tolower((int)cp));
            else if (case_locale)
                cp = (uint32_t)(upper ? towupper_l((wint_t)cp, case_locale)
                                      : towlower_l((wint_t)cp, case_locale));
        }
        o += utf8_encode(cp, buf + o);
    }
    buf[o] = 0;
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.str = buf;
    out->value.v_utf8.len = (uint32_t)o;
    return MK_OK;
}

/* JS WhiteSpace and LineTerminator code points (what String#trim removes). */
static bool js_space_cp(uint32_t c)
{
    return c == 0x09 || c == 0x0a || c == 0x0b || c == 0x0c || c == 0x0d || c == 0x20 ||
           c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000 || c == 0xfeff;
}

static int js_trim(const char *s, uint32_t len, bson_value_t *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t b = 0, e = len;
    while (b < e) {
        uint32_t cp;
        size_t w = utf8_decode(p + b, e - b, &cp);
        if (!js_space_cp(cp)) break;
        b += w;
    }
    while (e > b) {
        size_t start = e - 1; /* back to the lead byte of the last character */
        while (start > b && (p[start] & 0xc0) == 0x80 && e - start < 4) start--;
        uint32_t cp;
        size_t w = utf8_decode(p + start, e - start, &cp);
        if (start + w != e || !js_space_cp(cp)) break;
        e = start;
    }
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.len = (uint32_t)(e - b);
    out->value.v_utf8.str = bson_malloc(e - b + 1);
    memcpy(out->value.v_utf8.str, s + b, e - b);
    out->value.v_utf8.str[e - b] = 0;
    return MK_OK;
}

/* ---------- the setter list ---------- */

typedef struct {
    int kind;
    const mk_path_fn_t *fn;
} slot_t;

#define INLINE_SLOTS 8

typedef struct {
    slot_t inline_[INLINE_SLOTS];
    slot_t *items;
    size_t n, cap;
} slots_t;

static bool slots_push(slots_t *s, int kind, const mk_path_fn_t *fn)
{
    if (s->n == s->cap) {
        size_t cap = s->cap * 2;
        slot_t *g =
            s->items == s->inline_ ? malloc(cap * sizeof *g) : realloc(s->items, cap * sizeof *g);
        if (!g) return false;
        if (s->items == s->inline_) memcpy(g, s->inline_, s->n * sizeof *g);
        s->items = g;
        s->cap = cap;
    }
    s->items[s->n++] = (slot_t){kind, fn};
    return true;
}

static void slots_free(slots_t *s)
{
    if (s->items != s->inline_) free(s->items);
}

/* Builds the path's setter list in Mongoose's order (see setters.h). */
static int collect_setters(const mk_schema_t *owner, const mk_schema_path_t *path, slots_t *s,
                           mk_error_t *err)
{
    s->items = s->inline_;
    s->n = 0;
    s->cap = INLINE_SLOTS;
    const char *name = mk_schema_path_name(path);
    size_t it = 0;
    const mk_path_fn_t *first = mk_schema_path_fn_next(owner, name, MK_FN_SETTER, &it);
    const mk_path_fn_t *named = NULL;
    const mk_path_info_t *pi = mk_path_info(owner, path);
    if (pi && pi->setops_known) {
        if (pi->nsetops == 0 && !first) return MK_OK;
        for (size_t i = 0; i < pi->nsetops; i++) {
            int kind = pi->setops[i];
            if (kind == SLOT_SETOPT) {
                if (!first || named) continue;
                named = first; /* the resolved `set: 'name'` is registered first */
                kind = SLOT_FN;
            }
            if (!slots_push(s, kind, kind == SLOT_FN ? named : NULL)) goto nomem;
        }
    } else {
        bson_iter_t oi;
        if (bson_iter_init(&oi, mk_schema_path_options(path))) {
            bool string = mk_schema_path_kind(path) == MK_TYPE_STRING;
            while (bson_iter_next(&oi)) {
                const char *k = bson_iter_key(&oi);
                int kind = 0;
                if (k[0] != 'l' && k[0] != 'u' && k[0] != 't' && k[0] != 's') continue;
                if (string && strcmp(k, "lowercase") == 0)
                    kind = SLOT_LOWER;
                else if (string && strcmp(k, "uppercase") == 0)
                    kind = SLOT_UPPER;
                else if (string && strcmp(k, "trim") == 0)
                    kind = SLOT_TRIM;
                else if (strcmp(k, "set") == 0 && BSON_ITER_HOLDS_UTF8(&oi) && first && !named) {
                    named = first; /* the resolved `set: 'name'` is registered first */
                    if (!slots_push(s, SLOT_FN, named)) goto nomem;
                    continue;
                }
                if (kind && iter_truthy(&oi) && !slots_push(s, kind, NULL)) goto nomem;
            }
        }
    }
    for (const mk_path_fn_t *f = first; f;
         f = mk_schema_path_fn_next(owner, name, MK_FN_SETTER, &it))
        if (f != named && !slots_push(s, SLOT_FN, f)) goto nomem;
    return MK_OK;
nomem:
    slots_free(s);
    return mk_error_nomem(err);
}

static bool no_setters(const mk_schema_t *owner, const mk_path_info_t *pi)
{
    if (!pi || !pi->setops_known || pi->nsetops) return false;
    if (!mk_schema_fns_peek(owner)) return true; /* no C function at all */
    size_t it = 0;
    return !mk_schema_path_fn_next(owner, mk_schema_path_name(pi->path), MK_FN_SETTER, &it);
}

const mk_path_info_t *mk_loc_info(const mk_path_loc_t *loc)
{
    if (loc->info && loc->info->path == loc->path) return loc->info;
    return mk_path_info(loc->owner, loc->path);
}

bool mk_loc_setters_none(const mk_path_loc_t *loc)
{
    return no_setters(loc->owner, mk_loc_info(loc));
}

/* One built-in string setter: cast a non-string to String, leave falsy values alone. */
static int run_builtin(int kind, const bson_value_t *cur, const char *errpath, const char *model,
                       bson_value_t *out, mk_error_t *err)
{
    bson_value_t str;
    const bson_value_t *v = cur;
    bool owned = false;
    if (is_nullish(cur)) {
        copy_or_undefined(cur, out);
        return MK_OK;
    }
    if (cur->value_type != BSON_TYPE_UTF8) {
        int rc = mk_cast_value_at(MK_CAST_STRING, cur, errpath, model, &str, err);
        if (rc != MK_OK) return rc;
        v = &str;
        owned = true;
    }
    int rc;
    if (v->value_type != BSON_TYPE_UTF8 || v->value.v_utf8.len == 0) {
        bson_value_copy(v, out);
        rc = MK_OK;
    } else if (kind == SLOT_TRIM) {
        rc = js_trim(v->value.v_utf8.str, v->value.v_utf8.len, out);
    } else {
        rc = js_case(v->value.v_utf8.str, v->value.v_utf8.len, kind == SLOT_UPPER, out);
    }
    if (owned) bson_value_destroy(&str);
    return rc;
}

/* Runs the setters. *res is `in` itself when the path has no setters (nothing allocated),
 * else `tmp`, which the caller destroys when *owned is set. A NULL *res is undefined. */
static int run_setters(const mk_schema_t *owner, const mk_schema_path_t *path,
                       const mk_fn_ctx_t *ctx, const bson_value_t *in, const char *errpath,
                       const char *model, bson_value_t *tmp, const bson_value_t **res, bool *owned,
                       mk_error_t *err)
{
    *owned = false;
    *res = in;
    slots_t s;
    int rc = collect_setters(owner, path, &s, err);
    if (rc != MK_OK) return rc;
    if (s.n == 0) {
        slots_free(&s);
        return MK_OK;
    }
    mk_fn_ctx_t local = {0};
    if (ctx) local = *ctx;
    if (!local.path) local.path = errpath;
    /* setters see undefined as NULL, null as a null value */
    const bson_value_t *cur =
        (!in || in->value_type == BSON_TYPE_UNDEFINED || in->value_type == BSON_TYPE_EOD) ? NULL
                                                                                          : in;
    for (size_t i = s.n; i-- > 0;) {
        bson_value_t next;
        mk_value_set_undefined(&next);
        if (s.items[i].kind == SLOT_FN) {
            /* the setter writes into its own error: `err` may hold one recorded earlier */
            const mk_path_fn_t *f = s.items[i].fn;
            mk_error_t own; /* mk_error_set fills every field it uses */
            own.kind[0] = 0;
            own.message[0] = 0;
            own.code = 0;
            own.labels = 0;
            own.ndetails = own.ndetails_lost = own.details_used = 0;
            rc = f->fn.setter(&local, cur, &next, f->ud, &own);
            if (rc != MK_OK) {
                bson_value_destroy(&next);
                if (rc == MK_ENOMEM)
                    mk_error_nomem(err);
                else if (!own.kind[0])
                    mk_error_set(err, 0, "Error", "setter for path `%s` failed", errpath);
                else if (err)
                    *err = own;
                if (rc != MK_ENOMEM) rc = MK_ERR;
            }
        } else {
            rc = run_builtin(s.items[i].kind, cur, errpath, model, &next, err);
        }
        if (rc != MK_OK) {
            if (*owned) bson_value_destroy(tmp);
            *owned = false;
            slots_free(&s);
            return rc;
        }
        if (*owned) bson_value_destroy(tmp);
        *tmp = next;
        *owned = true;
        cur =
            tmp->value_type == BSON_TYPE_UNDEFINED || tmp->value_type == BSON_TYPE_EOD ? NULL : tmp;
    }
    slots_free(&s);
    *res = cur;
    return MK_OK;
}

int mk_setters_apply(const mk_schema_t *owner, const mk_schema_path_t *path, const mk_fn_ctx_t *ctx,
                     const bson_value_t *in, bson_value_t *out, mk_error_t *err)
{
    bson_value_t tmp;
    const bson_value_t *res = NULL;
    bool owned = false;
    int rc =
        run_setters(owner, path, ctx, in, mk_schema_path_name(path), NULL, &tmp, &res, &owned, err);
    if (rc != MK_OK) return rc;
    if (owned && res == &tmp) {
        *out = tmp;
        return MK_OK;
    }
    copy_or_undefined(res, out);
    if (owned) bson_value_destroy(&tmp);
    return MK_OK;
}

/* ---------- path lookup ---------- */

static const mk_schema_path_t *own_path_scan(const mk_schema_t *s, const char *name, size_t len)
{
    size_t n = mk_schema_path_count(s);
    for (size_t i = 0; i < n; i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        const char *pn = mk_schema_path_name(p);
        if (strncmp(pn, name, len) == 0 && pn[len] == 0) return p;
    }
    return NULL;
}

/* The path named exactly name[0..len) of `s` (not inside sub-schemas), or NULL; *info is its
 * plan entry when known. */
static const mk_schema_path_t *plan_find_name(const cast_plan_t *pl, const mk_schema_t *s,
                                              const char *name, size_t len,
                                              const mk_path_info_t **info)
{
    *info = NULL;
    if (!pl) return own_path_scan(s, name, len);
    uint32_t h = name_hash(name, len);
    for (size_t i = h & pl->name_mask; pl->names[i].name; i = (i + 1) & pl->name_mask) {
        const name_slot_t *e = &pl->names[i];
        if (e->hash != h || e->len != len || !same_name(e->name, name, len)) continue;
        if (mk_schema_path_at(s, e->index) != e->path)
            return own_path_scan(s, name, len); /* replaced behind the cache */
        *info = e->info;
        return e->path;
    }
    return NULL;
}

static const mk_schema_path_t *own_path(const mk_schema_t *s, const char *name, size_t len)
{
    const mk_path_info_t *info;
    return plan_find_name(plan_of(s), s, name, len, &info);
}

bool mk_schema_has_auto_id(const mk_schema_t *child)
{
    const mk_schema_path_t *id = own_path(child, "_id", 3);
    if (!id || mk_schema_path_kind(id) != MK_TYPE_OBJECTID) return false;
    const mk_path_info_t *pi = mk_path_info(child, id);
    if (pi) return pi->auto_id;
    bson_iter_t it;
    return mk_schema_path_option(id, "auto", &it) && iter_truthy(&it);
}

/* An array index or positional operator: "0", "$", "$[]", "$[elem]". */
static bool positional(const char *c, size_t n)
{
    if (n == 0) return false;
    if (n == 1 && c[0] == '$') return true;
    if (c[0] == '$') {
        if (n < 3 || c[1] != '[' || c[n - 1] != ']') return false;
        for (size_t i = 2; i + 1 < n; i++)
            if (!isalnum((unsigned char)c[i]) && c[i] != '_') return false;
        return true;
    }
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)c[i])) return false;
    return true;
}

static void loc_set(mk_path_loc_t *loc, mk_loc_kind_t kind, const mk_schema_t *owner,
                    const mk_schema_path_t *path)
{
    loc->kind = kind;
    loc->owner = owner;
    loc->path = path;
}

/* Resolves what follows path `p` of `s` (dotted + pos) inside arrays, maps and sub-schemas. */
static void descend(const mk_schema_t *s, const mk_schema_path_t *p, const char *dotted, size_t pos,
                    mk_path_loc_t *loc)
{
    for (;;) {
        const char *comp = dotted + pos;
        const char *dot = strchr(comp, '.');
        size_t n = dot ? (size_t)(dot - comp) : strlen(comp);
        size_t next = dot ? pos + n + 1 : pos + n;
        switch (mk_schema_path_kind(p)) {
        case MK_TYPE_SUBDOC:
            loc_set(loc, MK_LOC_CHILD, mk_schema_path_schema(p), p);
            loc->rest = pos;
            return;
        case MK_TYPE_DOCARRAY:
            if (positional(comp, n)) {
                if (!dot) {
                    loc_set(loc, MK_LOC_PATH, s, p);
                    loc->element = true;
                    loc->array = p;
                    return;
                }
                pos = next;
            }
            loc_set(loc, MK_LOC_CHILD, mk_schema_path_schema(p), p);
            loc->rest = pos;
            return;
        case MK_TYPE_ARRAY: {
            const mk_schema_path_t *e = mk_schema_path_element(p);
            if (!positional(comp, n) || !e) {
                loc_set(loc, MK_LOC_OPAQUE, s, p);
                return;
            }
            loc->array = p;
            if (!dot) {
                loc_set(loc, MK_LOC_PATH, s, e);
                return;
            }
            p = e;
            pos = next;
            break;
        }
        case MK_TYPE_MAP: {
            const mk_schema_path_t *e = mk_schema_path_element(p);
            if (!e) {
                loc_set(loc, MK_LOC_OPAQUE, s, p);
                return;
            }
            loc->array = NULL;
            if (!dot) {
                loc_set(loc, MK_LOC_PATH, s, e);
                return;
            }
            p = e;
            pos = next;
            break;
        }
        default:
            loc_set(loc, MK_LOC_OPAQUE, s, p);
            return;
        }
    }
}

void mk_path_locate(const mk_schema_t *s, const char *dotted, mk_path_loc_t *loc)
{
    mk_path_locate_n(s, dotted, strlen(dotted), loc);
}

void mk_path_locate_n(const mk_schema_t *s, const char *dotted, size_t len, mk_path_loc_t *loc)
{
    mk_path_locate_plan(s, NULL, dotted, len, loc);
}

void mk_path_locate_plan(const mk_schema_t *s, const void *plan, const char *dotted, size_t len,
                         mk_path_loc_t *loc)
{
    memset(loc, 0, sizeof *loc);
    const cast_plan_t *pl = plan ? plan : plan_of(s);
    const mk_path_info_t *info;
    const mk_schema_path_t *p = plan_find_name(pl, s, dotted, len, &info);
    if (p) {
        loc_set(loc, mk_schema_path_kind(p) == MK_TYPE_NESTED ? MK_LOC_NESTED : MK_LOC_PATH, s, p);
        loc->info = info;
        return;
    }
    /* the longest prefix that is a SchemaType of this schema (nested objects are not) */
    for (size_t i = len; i-- > 0;) {
        if (dotted[i] != '.') continue;
        p = plan_find_name(pl, s, dotted, i, &info);
        if (!p || mk_schema_path_kind(p) == MK_TYPE_NESTED) continue;
        descend(s, p, dotted, i + 1, loc);
        loc->info = plan_find_ptr(pl, loc->path);
        return;
    }
    loc->kind = MK_LOC_UNKNOWN;
    loc->owner = s;
}

void mk_path_locate_deep(const mk_schema_t *s, const char *dotted, mk_path_loc_t *loc)
{
    mk_path_locate_deep_plan(s, NULL, dotted, strlen(dotted), loc);
}

void mk_path_locate_deep_plan(const mk_schema_t *s, const void *plan, const char *dotted,
                              size_t len, mk_path_loc_t *loc)
{
    size_t base = 0;
    for (;;) {
        mk_path_locate_plan(s, plan, dotted + base, len - base, loc);
        plan = NULL; /* the plan is the first schema's */
        if (loc->kind != MK_LOC_CHILD) {
            loc->rest = base;
            return;
        }
        s = loc->owner;
        base += loc->rest;
    }
}

const char *mk_path_loc_name(const mk_path_loc_t *loc)
{
    if (loc->array) return mk_schema_path_name(loc->array);
    return loc->path ? mk_schema_path_name(loc->path) : "";
}

/* ---------- setters then cast ---------- */

bool mk_setters_cast_type(mk_schematype_t kind, mk_cast_type_t *out)
{
    switch (kind) {
    case MK_TYPE_STRING:
        *out = MK_CAST_STRING;
        return true;
    case MK_TYPE_NUMBER:
        *out = MK_CAST_NUMBER;
        return true;
    case MK_TYPE_BOOLEAN:
        *out = MK_CAST_BOOLEAN;
        return true;
    case MK_TYPE_DATE:
        *out = MK_CAST_DATE;
        return true;
    case MK_TYPE_OBJECTID:
        *out = MK_CAST_OBJECTID;
        return true;
    case MK_TYPE_BUFFER:
        *out = MK_CAST_BUFFER;
        return true;
    case MK_TYPE_DECIMAL128:
        *out = MK_CAST_DECIMAL128;
        return true;
    case MK_TYPE_BIGINT:
        *out = MK_CAST_BIGINT;
        return true;
    case MK_TYPE_INT32:
        *out = MK_CAST_INT32;
        return true;
    case MK_TYPE_DOUBLE:
        *out = MK_CAST_DOUBLE;
        return true;
    case MK_TYPE_UUID:
        *out = MK_CAST_UUID;
        return true;
    default:
        return false;
    }
}

static const mk_setters_cast_opts_t default_opts = {0};

static int cast_path(const mk_schema_t *owner, const mk_schema_path_t *p, const mk_fn_ctx_t *ctx,
                     const bson_value_t *in, const mk_setters_cast_opts_t *o, const char *errpath,
                     bson_value_t *out, mk_error_t *err);
static int cast_fields(const mk_schema_t *s, const char *prefix, const bson_t *doc,
                       const mk_fn_ctx_t *ctx, const mk_setters_cast_opts_t *o, bson_t *out,
                       mk_error_t *err);

static bool doc_of_value(const bson_value_t *v, bson_t *doc)
{
    return (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) &&
           bson_init_static(doc, v->value.v_doc.data, v->value.v_doc.data_len);
}

/* The kind in a CastError message ("Cast to [Number] failed ..."), for wrapping. */
static bool cast_error_kind(const mk_error_t *err, char *kind, size_t cap)
{
    if (!err || strcmp(err->kind, "CastError") != 0) return false;
    const char *m = err->message;
    if (strncmp(m, "Cast to ", 8) != 0) return false;
    const char *end = strstr(m + 8, " failed for value ");
    if (!end || (size_t)(end - (m + 8)) >= cap) return false;
    memcpy(kind, m + 8, (size_t)(end - (m + 8)));
    kind[end - (m + 8)] = 0;
    return true;
}

/* SchemaArray#cast's error for element i: the whole array (cast up to i) shown as text. */
static int array_element_error(const bson_t *done, bson_iter_t *rest, uint32_t i,
                               const char *arrname, const char *model, mk_error_t *err)
{
    char inner[MK_ERROR_KIND_MAX + 64];
    if (!cast_error_kind(err, inner, sizeof inner)) return MK_ERR; /* not a CastError: as is */
    bson_t partial;
    bson_copy_to(done, &partial);
    uint32_t k = i;
    char key[16];
    const char *kp;
    do {
        bson_uint32_to_string(k++, &kp, key, sizeof key);
        bson_append_value(&partial, kp, -1, bson_iter_value(rest));
    } while (bson_iter_next(rest));
    bson_value_t arr, text;
    arr.value_type = BSON_TYPE_ARRAY;
    arr.value.v_doc.data = (uint8_t *)bson_get_data(&partial);
    arr.value.v_doc.data_len = partial.len;
    bson_string_t *s = bson_string_new(NULL);
    mk_cast_inspect(s, &arr);
    text.value_type = BSON_TYPE_UTF8;
    text.value.v_utf8.str = s->str;
    text.value.v_utf8.len = (uint32_t)s->len;
    char kind[MK_ERROR_KIND_MAX + 70];
    snprintf(kind, sizeof kind, "[%s]", inner);
    bson_string_t *path = bson_string_new(arrname);
    bson_string_append_printf(path, ".%u", i);
    mk_cast_error(err, kind, &text, path->str, model, "CastError");
    bson_string_free(path, true);
    bson_string_free(s, true);
    bson_destroy(&partial);
    return MK_ERR;
}

/* Appends a cast element; undefined inside an array is stored as null. */
static void append_element(bson_t *arr, uint32_t i, const bson_value_t *v)
{
    char key[16];
    const char *kp;
    bson_uint32_to_string(i, &kp, key, sizeof key);
    if (v->value_type == BSON_TYPE_UNDEFINED)
        bson_append_null(arr, kp, -1);
    else
        bson_append_value(arr, kp, -1, v);
}

static int cast_array(const mk_schema_t *owner, const mk_schema_path_t *p, const mk_fn_ctx_t *ctx,
                      const bson_value_t *v, const mk_setters_cast_opts_t *o, const char *errpath,
                      bson_value_t *out, mk_error_t *err)
{
    const mk_schema_path_t *e = mk_schema_path_element(p);
    bson_t src, arr;
    bson_iter_t it;
    bool wrapped = v->value_type != BSON_TYPE_ARRAY; /* castNonArrays: x is [x] */
    bson_t one;
    if (wrapped) {
        bson_init(&one);
        bson_append_value(&one, "0", 1, v);
    } else if (!doc_of_value(v, &src)) {
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt array at path `%s`", errpath);
    }
    bson_init(&arr);
    int rc = MK_OK;
    uint32_t i = 0;
    mk_setters_cast_opts_t eo = *o;
    eo.err_path = NULL;
    if (bson_iter_init(&it, wrapped ? &one : &src)) {
        while (bson_iter_next(&it)) {
            const bson_value_t *ev = bson_iter_value(&it);
            bson_value_t cv;
            if (!e || mk_schema_path_kind(e) == MK_TYPE_MIXED) {
                bson_value_copy(ev, &cv);
            } else {
                rc = cast_path(owner, e, ctx, ev, &eo, errpath, &cv, err);
                if (rc == MK_ERR) rc = array_element_error(&arr, &it, i, errpath, o->model, err);
                if (rc != MK_OK) break;
            }
            append_element(&arr, i++, &cv);
            bson_value_destroy(&cv);
        }
    }
    if (wrapped) bson_destroy(&one);
    if (rc != MK_OK) {
        bson_destroy(&arr);
        return rc;
    }
    mk_value_take_bson(&arr, true, out);
    return MK_OK;
}

/* One sub-document through its schema. */
static int cast_subdoc(const mk_schema_t *child, const mk_fn_ctx_t *ctx, const bson_value_t *v,
                       const mk_setters_cast_opts_t *o, bson_value_t *out, mk_error_t *err)
{
    bson_t doc, b;
    if (!doc_of_value(v, &doc)) return mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt document");
    bson_init(&b);
    bson_iter_t it;
    if (o->add_ids && mk_schema_has_auto_id(child) && !bson_iter_init_find(&it, &doc, "_id")) {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        bson_append_oid(&b, "_id", 3, &oid);
    }
    mk_setters_cast_opts_t co = *o;
    co.err_path = NULL;
    int rc = cast_fields(child, NULL, &doc, ctx, &co, &b, err);
    if (rc != MK_OK) {
        bson_destroy(&b);
        return rc;
    }
    mk_value_take_bson(&b, false, out);
    return MK_OK;
}

static int cast_docarray(const mk_schema_t *child, const mk_fn_ctx_t *ctx, const bson_value_t *v,
                         const mk_setters_cast_opts_t *o, const char *errpath, bson_value_t *out,
                         mk_error_t *err)
{
    bson_t src, arr, one;
    bool wrapped = v->value_type != BSON_TYPE_ARRAY;
    if (wrapped) {
        bson_init(&one);
        bson_append_value(&one, "0", 1, v);
    } else if (!doc_of_value(v, &src)) {
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt array at path `%s`", errpath);
    }
    bson_init(&arr);
    bson_iter_t it;
    int rc = MK_OK;
    uint32_t i = 0;
    if (bson_iter_init(&it, wrapped ? &one : &src)) {
        while (bson_iter_next(&it)) {
            const bson_value_t *ev = bson_iter_value(&it);
            bson_value_t cv;
            if (!mk_js_truthy(ev)) {
                bson_value_copy(ev, &cv); /* DocumentArray#cast skips falsy entries */
            } else if (ev->value_type == BSON_TYPE_DOCUMENT) {
                rc = cast_subdoc(child, ctx, ev, o, &cv, err);
                if (rc != MK_OK) break;
            } else {
                rc = mk_cast_error(err, "embedded", ev, errpath, o->model, "ObjectParameterError");
                break;
            }
            append_element(&arr, i++, &cv);
            bson_value_destroy(&cv);
        }
    }
    if (wrapped) bson_destroy(&one);
    if (rc != MK_OK) {
        bson_destroy(&arr);
        return rc;
    }
    mk_value_take_bson(&arr, true, out);
    return MK_OK;
}

static int cast_map(const mk_schema_t *owner, const mk_schema_path_t *p, const mk_fn_ctx_t *ctx,
                    const bson_value_t *v, const mk_setters_cast_opts_t *o, const char *errpath,
                    bson_value_t *out, mk_error_t *err)
{
    bson_t src, b;
    if (v->value_type != BSON_TYPE_DOCUMENT || !doc_of_value(v, &src))
        return mk_cast_error(err, "Map", v, errpath, o->model, NULL);
    const mk_schema_path_t *e = mk_schema_path_element(p);
    bson_init(&b);
    bson_iter_t it;
    int rc = MK_OK;
    mk_setters_cast_opts_t eo = *o;
    eo.err_path = NULL;
    if (bson_iter_init(&it, &src)) {
        while (bson_iter_next(&it)) {
            bson_value_t cv;
            if (!e) {
                bson_value_copy(bson_iter_value(&it), &cv);
            } else {
                rc = cast_path(owner, e, ctx, bson_iter_value(&it), &eo, NULL, &cv, err);
                if (rc != MK_OK) break;
            }
            if (cv.value_type != BSON_TYPE_UNDEFINED)
                bson_append_value(&b, bson_iter_key(&it), -1, &cv);
            bson_value_destroy(&cv);
        }
    }
    if (rc != MK_OK) {
        bson_destroy(&b);
        return rc;
    }
    mk_value_take_bson(&b, false, out);
    return MK_OK;
}

/* Mongoose's "Tried to set nested object field `x` to primitive value `v`". */
static int object_expected(mk_error_t *err, const char *kind, const char *path,
                           const bson_value_t *v, const char *suffix)
{
    char *shown = mk_validate_js_string(v);
    if (!shown) return mk_error_nomem(err);
    int rc =
        mk_error_set(err, 0, kind, "Tried to set nested object field `%s` to %s `%s`%s", path,
                     v->value_type == BSON_TYPE_ARRAY ? "array" : "primitive value", shown, suffix);
    free(shown);
    return rc;
}

static int cast_path(const mk_schema_t *owner, const mk_schema_path_t *p, const mk_fn_ctx_t *ctx,
                     const bson_value_t *in, const mk_setters_cast_opts_t *o, const char *errpath,
                     bson_value_t *out, mk_error_t *err)
{
    if (!errpath) errpath = o->err_path ? o->err_path : mk_schema_path_name(p);
    mk_schematype_t kind = mk_schema_path_kind(p);
    if (o->query_form && kind == MK_TYPE_STRING && in && in->value_type == BSON_TYPE_REGEX) {
        bson_value_copy(in, out); /* castForQuery lets a RegExp through a String path */
        return MK_OK;
    }
    bson_value_t tmp;
    const bson_value_t *v = in;
    bool owned = false;
    int rc = MK_OK;
    bool setters = true;
    if (kind == MK_TYPE_SUBDOC && o->query_form) {
        const mk_path_info_t *pi = mk_path_info(owner, p);
        bson_iter_t rs;
        setters =
            pi ? pi->run_setters : mk_schema_path_option(p, "runSetters", &rs) && iter_truthy(&rs);
    }
    if (setters) {
        rc = run_setters(owner, p, ctx, in, errpath, o->model, &tmp, &v, &owned, err);
        if (rc != MK_OK) return rc;
    }
    mk_cast_type_t ct;
    if (is_nullish(v)) {
        copy_or_undefined(v, out);
    } else if (mk_setters_cast_type(kind, &ct)) {
        rc = mk_cast_value_at(ct, v, errpath, o->model, out, err);
    } else {
        switch (kind) {
        case MK_TYPE_ARRAY:
            rc = cast_array(owner, p, ctx, v, o, errpath, out, err);
            break;
        case MK_TYPE_DOCARRAY:
            rc = cast_docarray(mk_schema_path_schema(p), ctx, v, o, errpath, out, err);
            break;
        case MK_TYPE_SUBDOC:
            if (v->value_type == BSON_TYPE_DOCUMENT)
                rc = cast_subdoc(mk_schema_path_schema(p), ctx, v, o, out, err);
            else if (o->query_form)
                rc = mk_cast_error(err, "Embedded", v, errpath, o->model, "ObjectParameterError");
            else
                rc = object_expected(err, "ObjectExpectedError", errpath, v, "");
            break;
        case MK_TYPE_MAP:
            rc = cast_map(owner, p, ctx, v, o, errpath, out, err);
            break;
        case MK_TYPE_NESTED:
            if (v->value_type == BSON_TYPE_DOCUMENT) {
                bson_t doc, b;
                bson_init(&b);
                rc = doc_of_value(v, &doc)
                         ? cast_fields(owner, mk_schema_path_name(p), &doc, ctx, o, &b, err)
                         : mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt document");
                if (rc == MK_OK)
                    mk_value_take_bson(&b, false, out);
                else
                    bson_destroy(&b);
            } else {
                bson_value_copy(v, out);
            }
            break;
        default: /* Mixed: setters only */
            bson_value_copy(v, out);
            break;
        }
    }
    if (owned) bson_value_destroy(&tmp);
    return rc;
}

int mk_setters_cast(const mk_schema_t *owner, const mk_schema_path_t *path, const mk_fn_ctx_t *ctx,
                    const bson_value_t *in, const mk_setters_cast_opts_t *opts, bson_value_t *out,
                    mk_error_t *err)
{
    mk_value_set_undefined(out);
    return cast_path(owner, path, ctx, in, opts ? opts : &default_opts, NULL, out, err);
}

/* ---------- fields of a (sub-)document ---------- */

static mk_strict_t strict_of(const mk_schema_t *s, const mk_setters_cast_opts_t *o)
{
    return o->has_strict ? o->strict : mk_schema_options(s)->strict;
}

static int not_in_schema(const char *path, mk_strict_t strict, mk_error_t *err)
{
    (void)strict;
    return mk_error_set(err, 0, "StrictModeError",
                        "Field `%s` is not in schema and strict mode is set to throw.", path);
}

/* A "prefix.key" name in a small buffer; *heap is set when it had to be allocated. */
static char *join_name(const char *prefix, const char *key, char *buf, size_t cap, bool *heap)
{
    *heap = false;
    if (!prefix) return (char *)key;
    size_t a = strlen(prefix), b = strlen(key), n = a + 1 + b + 1;
    char *s = buf;
    if (n > cap) {
        s = malloc(n);
        if (!s) return NULL;
        *heap = true;
    }
    memcpy(s, prefix, a);
    s[a] = '.';
    memcpy(s + a + 1, key, b + 1);
    return s;
}

static int cast_fields(const mk_schema_t *s, const char *prefix, const bson_t *doc,
                       const mk_fn_ctx_t *ctx, const mk_setters_cast_opts_t *o, bson_t *out,
                       mk_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt document");
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        char buf[256];
        bool heap;
        char *full = join_name(prefix, key, buf, sizeof buf, &heap);
        if (!full) return mk_error_nomem(err);
        mk_path_loc_t loc;
        mk_path_locate_deep(s, full, &loc);
        int rc = MK_OK;
        bool keep_raw = false;
        switch (loc.kind) {
        case MK_LOC_PATH: {
            bson_value_t cv;
            if (loc.element && mk_schema_path_kind(loc.path) == MK_TYPE_DOCARRAY) {
                if (v->value_type == BSON_TYPE_DOCUMENT)
                    rc = cast_subdoc(mk_schema_path_schema(loc.path), ctx, v, o, &cv, err);
                else if (!mk_js_truthy(v))
                    bson_value_copy(v, &cv), rc = MK_OK;
                else
                    rc = mk_cast_error(err, "embedded", v, mk_path_loc_name(&loc), o->model,
                                       "ObjectParameterError");
            } else {
                mk_setters_cast_opts_t po = *o;
                po.err_path = NULL;
                rc = cast_path(loc.owner, loc.path, ctx, v, &po, mk_path_loc_name(&loc), &cv, err);
            }
            if (rc == MK_OK) {
                if (cv.value_type != BSON_TYPE_UNDEFINED) bson_append_value(out, key, -1, &cv);
                bson_value_destroy(&cv);
            }
            break;
        }
        case MK_LOC_NESTED:
            if (v->value_type == BSON_TYPE_DOCUMENT) {
                bson_t sub, child;
                if (!doc_of_value(v, &sub)) {
                    rc = mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt document");
                    break;
                }
                bson_append_document_begin(out, key, -1, &child);
                rc = cast_fields(loc.owner, mk_schema_path_name(loc.path), &sub, ctx, o, &child,
                                 err);
                bson_append_document_end(out, &child);
            } else if (v->value_type == BSON_TYPE_NULL) {
                keep_raw = true;
            } else if (strict_of(loc.owner, o) == MK_STRICT_THROW) {
                rc = object_expected(err, "StrictModeError", full, v,
                                     " and strict mode is set to throw.");
            } else if (strict_of(loc.owner, o) == MK_STRICT_FALSE) {
                keep_raw = true;
            }
            break;
        case MK_LOC_OPAQUE:
            /* below Mixed anything goes; below a path without sub-paths is not in the schema */
            if (mk_schema_path_kind(loc.path) == MK_TYPE_MIXED) {
                keep_raw = true;
                break;
            }
            __attribute__((fallthrough));
        default: {
            mk_strict_t st = strict_of(loc.owner ? loc.owner : s, o);
            if (st == MK_STRICT_THROW)
                rc = not_in_schema(full, st, err);
            else if (st == MK_STRICT_FALSE)
                keep_raw = true;
            break;
        }
        }
        if (keep_raw) bson_append_value(out, key, -1, v);
        if (heap) free(full);
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

int mk_setters_cast_fields(const mk_schema_t *schema, const bson_t *doc, const mk_fn_ctx_t *ctx,
                           const mk_setters_cast_opts_t *opts, bson_t *out, mk_error_t *err)
{
    return cast_fields(schema, NULL, doc, ctx, opts ? opts : &default_opts, out, err);
}
