/* Schema definitions: Mongoose's definition syntax (as relaxed JSON) to a tree of paths.
 *
 * The rules follow Mongoose's Schema#add / Schema#interpretAsType: an object with a type key
 * is a SchemaType with options; an object without one is a nested path (or Mixed when empty);
 * an object under the type key is a single nested sub-document; `[X]` is an array of X, and an
 * array of objects without a type key is a document array. */
#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <meerkat/json.h>
#include <meerkat/schema.h>

#include "odm/schema_fns.h"

struct mk_schema_path {
    char *name;
    mk_schematype_t type;
    bson_t options;
    mk_schema_path_t *elem; /* ARRAY element / MAP value */
    mk_schema_t *schema;    /* SUBDOC / DOCARRAY */
};

struct mk_schema {
    mk_schema_path_t **paths;
    size_t npaths, cap;
    bson_t indexes; /* schema.index() calls, as an array of [key, options] */
    uint32_t nindexes;
    bson_t raw; /* options as written */
    bson_t to_json, to_object;
    char *version_key, *collection, *type_key, *created_at, *updated_at, *discriminator_key;
    mk_schema_options_t opts;
    mk_schema_fns_t *fns; /* C functions (schema_fns.c), NULL until the first registration */
    /* Derived data the layers above compute once per schema (validation plans, cast plans):
     * built on first use under `cache_lock`, freed with the schema. */
    pthread_mutex_t cache_lock;
    struct schema_cache {
        void *ptr;
        void (*free_fn)(void *);
    } cache[MK_SCHEMA_CACHE_SLOTS];
};

void *mk_schema_cache(const mk_schema_t *cs, int slot, void *(*build)(const mk_schema_t *))
{
    mk_schema_t *s = (mk_schema_t *)cs;
    if (slot < 0 || slot >= MK_SCHEMA_CACHE_SLOTS) return NULL;
    void *p = __atomic_load_n(&s->cache[slot].ptr, __ATOMIC_ACQUIRE);
    if (p) return p;
    pthread_mutex_lock(&s->cache_lock);
    p = s->cache[slot].ptr;
    if (!p && build && (p = build(cs))) __atomic_store_n(&s->cache[slot].ptr, p, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->cache_lock);
    return p;
}

void mk_schema_cache_set_free(mk_schema_t *s, int slot, void (*free_fn)(void *))
{
    if (slot >= 0 && slot < MK_SCHEMA_CACHE_SLOTS) s->cache[slot].free_fn = free_fn;
}

/* Changing a schema invalidates what was derived from it. */
static void cache_clear(mk_schema_t *s)
{
    for (int i = 0; i < MK_SCHEMA_CACHE_SLOTS; i++) {
        if (s->cache[i].ptr && s->cache[i].free_fn) s->cache[i].free_fn(s->cache[i].ptr);
        s->cache[i].ptr = NULL;
    }
}

mk_schema_fns_t *mk_schema_fns_of(mk_schema_t *s)
{
    if (!s->fns) s->fns = mk_schema_fns_dup(NULL);
    return s->fns;
}

const mk_schema_fns_t *mk_schema_fns_peek(const mk_schema_t *s)
{
    return s->fns;
}

/* Copies src's registry into dst (replacing dst's). */
static int copy_fns(mk_schema_t *dst, const mk_schema_t *src, mk_error_t *err)
{
    if (!src->fns) return MK_OK;
    mk_schema_fns_t *f = mk_schema_fns_dup(src->fns);
    if (!f) return mk_error_nomem(err);
    mk_schema_fns_free(dst->fns);
    dst->fns = f;
    return MK_OK;
}

#define INVALID_TYPE_HINT                                                                          \
    "See https://bit.ly/mongoose-schematypes for a list of valid schema types."

static int type_error(mk_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int type_error(mk_error_t *err, const char *fmt, ...)
{
    char msg[MK_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mk_error_set(err, 0, "TypeError", "%s", msg);
}

static int option_error(mk_error_t *err, const char *name, const char *what)
{
    return mk_error_setc(err, MK_CODE_INVALID_OPTIONS, "schema option `%s` %s", name, what);
}

/* bson_t demands 128-byte alignment, which malloc does not give: structs embedding one are
 * allocated with this. */
static void *zalloc_aligned(size_t size)
{
    size_t align = _Alignof(bson_t);
    size_t rounded = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

/* ---- type names ---- */

static const struct {
    const char *name;
    mk_schematype_t type;
} type_names[] = {
    {"String", MK_TYPE_STRING},
    {"Number", MK_TYPE_NUMBER},
    {"Boolean", MK_TYPE_BOOLEAN},
    {"Bool", MK_TYPE_BOOLEAN},
    {"Date", MK_TYPE_DATE},
    {"ObjectId", MK_TYPE_OBJECTID},
    {"ObjectID", MK_TYPE_OBJECTID},
    {"Oid", MK_TYPE_OBJECTID},
    {"Buffer", MK_TYPE_BUFFER},
    {"Mixed", MK_TYPE_MIXED},
    {"Object", MK_TYPE_MIXED},
    {"Array", MK_TYPE_ARRAY},
    {"Map", MK_TYPE_MAP},
    {"Decimal128", MK_TYPE_DECIMAL128},
    {"Decimal", MK_TYPE_DECIMAL128},
    {"BigInt", MK_TYPE_BIGINT},
    {"Int32", MK_TYPE_INT32},
    {"Double", MK_TYPE_DOUBLE},
    {"UUID", MK_TYPE_UUID},
};

/* The written name without its namespace (`mongoose.Schema.Types.ObjectId` -> `ObjectId`). */
static const char *strip_namespace(const char *name)
{
    static const char *const prefixes[] = {"mongoose.Schema.Types.", "mongoose.Types.", "mongoose.",
                                           "Schema.Types.",          "Schema.",         "Types."};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(name, prefixes[i], n) == 0) return name + n;
    }
    return name;
}

/* Mongoose capitalises the first letter of a type given as a string ('string' is String). */
static mk_schematype_t resolve_type(const char *written)
{
    const char *name = strip_namespace(written);
    if (!*name) return 0;
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
        const char *t = type_names[i].name;
        if (toupper((unsigned char)name[0]) == t[0] && strcmp(name + 1, t + 1) == 0)
            return type_names[i].type;
    }
    return 0;
}

const char *mk_schematype_name(mk_schematype_t type)
{
    switch (type) {
    case MK_TYPE_STRING:
        return "String";
    case MK_TYPE_NUMBER:
        return "Number";
    case MK_TYPE_BOOLEAN:
        return "Boolean";
    case MK_TYPE_DATE:
        return "Date";
    case MK_TYPE_OBJECTID:
        return "ObjectId";
    case MK_TYPE_BUFFER:
        return "Buffer";
    case MK_TYPE_MIXED:
        return "Mixed";
    case MK_TYPE_ARRAY:
        return "Array";
    case MK_TYPE_DOCARRAY:
        return "DocumentArray";
    case MK_TYPE_SUBDOC:
        return "Embedded";
    case MK_TYPE_MAP:
        return "Map";
    case MK_TYPE_DECIMAL128:
        return "Decimal128";
    case MK_TYPE_BIGINT:
        return "BigInt";
    case MK_TYPE_INT32:
        return "Int32";
    case MK_TYPE_DOUBLE:
        return "Double";
    case MK_TYPE_UUID:
        return "UUID";
    case MK_TYPE_NESTED:
        return "Nested";
    }
    return "Unknown";
}

/* ---- bare identifiers to strings ---- */

static bool ident_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c == '$';
}

static bool ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$';
}

/* Identifiers the JSON parser understands by itself. */
static bool json_word(const char *s, size_t n)
{
    static const char *const words[] = {"true",   "false",  "null", "undefined", "new",
                                        "MinKey", "MaxKey", "NaN",  "Infinity"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0) return true;
    return false;
}

/* Quotes bare identifier chains in value position (`String`, `Schema.Types.ObjectId`,
 * `Date.now`), leaving strings, comments, regexes, numbers, keys (followed by ':'), calls
 * (followed by '(') and the JSON parser's own words alone. Returns malloc'd text or NULL. */
static char *quote_identifiers(const char *text)
{
    size_t len = strlen(text);
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(len * 3 + 1), *o = out;
    if (!out) return NULL;
    const char *p = text, *end = text + len;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\'') {
            *o++ = *p++;
            while (p < end && (unsigned char)*p != c) {
                if (*p == '\\' && p + 1 < end) *o++ = *p++;
                *o++ = *p++;
            }
            if (p < end) *o++ = *p++;
        } else if (c == '/' && p + 1 < end && p[1] == '/') {
            while (p < end && *p != '\n') *o++ = *p++;
        } else if (c == '/' && p + 1 < end && p[1] == '*') {
            const char *close = strstr(p + 2, "*/");
            const char *stop = close ? close + 2 : end;
            while (p < stop) *o++ = *p++;
        } else if (c == '/') { /* a regex literal, then its flags */
            bool in_class = false;
            *o++ = *p++;
            while (p < end && (*p != '/' || in_class)) {
                if (*p == '\\' && p + 1 < end)
                    *o++ = *p++;
                else if (*p == '[')
                    in_class = true;
                else if (*p == ']')
                    in_class = false;
                *o++ = *p++;
            }
            if (p < end) *o++ = *p++;
            while (p < end && ident_char((unsigned char)*p)) *o++ = *p++;
        } else if (isdigit(c) || (c == '.' && p + 1 < end && isdigit((unsigned char)p[1]))) {
            while (p < end && (isalnum((unsigned char)*p) || *p == '.' ||
                               ((*p == '+' || *p == '-') && (p[-1] == 'e' || p[-1] == 'E'))))
                *o++ = *p++;
        } else if (ident_start(c)) {
            const char *s = p;
            for (;;) {
                while (p < end && ident_char((unsigned char)*p)) p++;
                if (p + 1 < end && *p == '.' && ident_start((unsigned char)p[1]))
                    p++;
                else
                    break;
            }
            size_t n = (size_t)(p - s);
            const char *q = p;
            while (q < end && isspace((unsigned char)*q)) q++;
            bool keep = json_word(s, n) || (q < end && (*q == ':' || *q == '('));
            if (!keep) *o++ = '"';
            memcpy(o, s, n);
            o += n;
            if (!keep) *o++ = '"';
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static bson_t *parse_text(const char *text, const char *what, mk_error_t *err)
{
    if (!text) {
        mk_error_setc(err, MK_CODE_BAD_VALUE, "schema %s is NULL", what);
        return NULL;
    }
    char *quoted = quote_identifiers(text);
    if (!quoted) {
        mk_error_nomem(err);
        return NULL;
    }
    bson_t *doc = mk_json_parse(quoted, NULL, err);
    free(quoted);
    return doc;
}

/* ---- paths ---- */

static mk_schema_path_t *path_new(const char *name, mk_schematype_t type)
{
    mk_schema_path_t *p = zalloc_aligned(sizeof *p);
    if (!p) return NULL;
    p->name = strdup(name);
    if (!p->name) {
        free(p);
        return NULL;
    }
    p->type = type;
    bson_init(&p->options);
    return p;
}

static void path_free(mk_schema_path_t *p)
{
    if (!p) return;
    path_free(p->elem);
    mk_schema_destroy(p->schema);
    bson_destroy(&p->options);
    free(p->name);
    free(p);
}

static mk_schema_path_t *path_dup(const mk_schema_path_t *src, const char *name, mk_error_t *err)
{
    mk_schema_path_t *p = path_new(name ? name : src->name, src->type);
    if (!p) goto nomem;
    bson_destroy(&p->options);
    bson_copy_to(&src->options, &p->options);
    if (src->elem && !(p->elem = path_dup(src->elem, NULL, err))) goto fail;
    if (src->schema && !(p->schema = mk_schema_clone(src->schema, err))) goto fail;
    return p;
nomem:
    mk_error_nomem(err);
fail:
    path_free(p);
    return NULL;
}

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 2);
    if (!s) return NULL;
    memcpy(s, a, na);
    s[na] = '.';
    memcpy(s + na + 1, b, nb + 1);
    return s;
}

static ssize_t find_index(const mk_schema_t *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->npaths; i++)
        if (strncmp(s->paths[i]->name, name, len) == 0 && s->paths[i]->name[len] == '\0')
            return (ssize_t)i;
    return -1;
}

static int append_path(mk_schema_t *s, mk_schema_path_t *p, mk_error_t *err)
{
    if (s->npaths == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        mk_schema_path_t **grown = realloc(s->paths, cap * sizeof *grown);
        if (!grown) {
            path_free(p);
            return mk_error_nomem(err);
        }
        s->paths = grown;
        s->cap = cap;
    }
    s->paths[s->npaths++] = p;
    return MK_OK;
}

static void remove_at(mk_schema_t *s, size_t i)
{
    path_free(s->paths[i]);
    memmove(s->paths + i, s->paths + i + 1, (s->npaths - i - 1) * sizeof *s->paths);
    s->npaths--;
}

static void remove_children(mk_schema_t *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->npaths;) {
        if (strncmp(s->paths[i]->name, name, n) == 0 && s->paths[i]->name[n] == '.')
            remove_at(s, i);
        else
            i++;
    }
}

/* Adds p (taking it), creating NESTED parents for dotted names; a path already defined is
 * replaced in place, as Schema#add overwrites. */
static int put_path(mk_schema_t *s, mk_schema_path_t *p, mk_error_t *err)
{
    for (const char *dot = strchr(p->name, '.'); dot; dot = strchr(dot + 1, '.')) {
        size_t len = (size_t)(dot - p->name);
        ssize_t i = find_index(s, p->name, len);
        if (i >= 0 && s->paths[i]->type != MK_TYPE_NESTED) {
            int rc = type_error(err,
                                "Cannot set nested path `%s`. Parent path `%.*s` already set "
                                "to type %s.",
                                p->name, (int)len, p->name, mk_schematype_name(s->paths[i]->type));
            path_free(p);
            return rc;
        }
        if (i < 0) {
            char *parent = strndup(p->name, len);
            mk_schema_path_t *n = parent ? path_new(parent, MK_TYPE_NESTED) : NULL;
            free(parent);
            if (!n) {
                path_free(p);
                return mk_error_nomem(err);
            }
            if (append_path(s, n, err) != MK_OK) {
                path_free(p);
                return MK_ENOMEM;
            }
        }
    }
    ssize_t i = find_index(s, p->name, strlen(p->name));
    if (i < 0) return append_path(s, p, err);
    mk_schema_path_t *old = s->paths[i];
    if (old->type == MK_TYPE_NESTED && p->type == MK_TYPE_NESTED) {
        path_free(p); /* adding to a nested object keeps its existing children */
        return MK_OK;
    }
    if (old->type == MK_TYPE_NESTED) remove_children(s, old->name);
    i = find_index(s, p->name, strlen(p->name));
    path_free(s->paths[i]);
    s->paths[i] = p;
    return MK_OK;
}

static bool doc_of(const bson_iter_t *it, bson_t *out)
{
    uint32_t n;
    const uint8_t *data;
    if (BSON_ITER_HOLDS_DOCUMENT(it))
        bson_iter_document(it, &n, &data);
    else if (BSON_ITER_HOLDS_ARRAY(it))
        bson_iter_array(it, &n, &data);
    else
        return false;
    return bson_init_static(out, data, n);
}

/* ---- options ---- */

static int set_str(char **slot, const char *v, mk_error_t *err)
{
    char *copy = NULL;
    if (v && !(copy = strdup(v))) return mk_error_nomem(err);
    free(*slot);
    *slot = copy;
    return MK_OK;
}

static int parse_strict(const bson_iter_t *it, mk_strict_t *out, mk_error_t *err)
{
    if (BSON_ITER_HOLDS_BOOL(it)) {
        *out = bson_iter_bool(it) ? MK_STRICT_TRUE : MK_STRICT_FALSE;
        return MK_OK;
    }
    if (BSON_ITER_HOLDS_UTF8(it) && strcmp(bson_iter_utf8(it, NULL), "throw") == 0) {
        *out = MK_STRICT_THROW;
        return MK_OK;
    }
    return option_error(err, bson_iter_key(it), "must be true, false or 'throw'");
}

static int parse_bool(const bson_iter_t *it, bool *out, mk_error_t *err)
{
    if (!BSON_ITER_HOLDS_BOOL(it)) return option_error(err, bson_iter_key(it), "must be a boolean");
    *out = bson_iter_bool(it);
    return MK_OK;
}

static int parse_name(const bson_iter_t *it, char **slot, mk_error_t *err)
{
    if (!BSON_ITER_HOLDS_UTF8(it) || !*bson_iter_utf8(it, NULL))
        return option_error(err, bson_iter_key(it), "must be a non-empty string");
    return set_str(slot, bson_iter_utf8(it, NULL), err);
}

/* timestamps: true, false, or { createdAt: name | bool, updatedAt: name | bool } */
static int parse_timestamps(mk_schema_t *s, const bson_iter_t *it, mk_error_t *err)
{
    const char *created = "createdAt", *updated = "updatedAt";
    if (BSON_ITER_HOLDS_BOOL(it)) {
        if (!bson_iter_bool(it)) created = updated = NULL;
    } else if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_t sub;
        bson_iter_recurse(it, &sub);
        while (bson_iter_next(&sub)) {
            const char *k = bson_iter_key(&sub);
            const char **slot = strcmp(k, "createdAt") == 0   ? &created
                                : strcmp(k, "updatedAt") == 0 ? &updated
                                                              : NULL;
            if (!slot)
                return mk_error_setc(err, MK_CODE_INVALID_OPTIONS,
                                     "timestamps option `%s` is not supported", k);
            if (BSON_ITER_HOLDS_BOOL(&sub)) {
                if (!bson_iter_bool(&sub)) *slot = NULL;
            } else if (BSON_ITER_HOLDS_UTF8(&sub) && *bson_iter_utf8(&sub, NULL)) {
                *slot = bson_iter_utf8(&sub, NULL);
            } else {
                return mk_error_setc(err, MK_CODE_INVALID_OPTIONS,
                                     "timestamps.%s must be a boolean or a path name", k);
            }
        }
    } else {
        return option_error(err, "timestamps", "must be a boolean or an object");
    }
    if (set_str(&s->created_at, created, err) || set_str(&s->updated_at, updated, err))
        return MK_ENOMEM;
    return MK_OK;
}

/* Mongoose options kept as written for the layers that use them. */
static bool known_option(const char *k)
{
    static const char *const kept[] = {"bufferCommands",
                                       "bufferTimeoutMS",
                                       "capped",
                                       "collation",
                                       "collectionOptions",
                                       "read",
                                       "writeConcern",
                                       "shardKey",
                                       "skipVersioning",
                                       "storeSubdocValidationError",
                                       "timeseries",
                                       "excludeIndexes",
                                       "autoSearchIndex",
                                       "pluginTags",
                                       "virtuals",
                                       "methods",
                                       "statics",
                                       "query",
                                       "overwriteModels",
                                       "suppressReservedKeysWarning",
                                       "strictPopulate",
                                       "toJSON",
                                       "toObject",
                                       "expireAfterSeconds"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        if (strcmp(kept[i], k) == 0) return true;
    return false;
}

static int apply_options(mk_schema_t *s, const bson_t *opts, mk_error_t *err)
{
    mk_schema_options_t *o = &s->opts;
    o->strict = MK_STRICT_TRUE;
    o->strict_query = MK_STRICT_FALSE; /* Mongoose 8: strictQuery is off by default */
    o->id_path = o->id_virtual = true;
    o->auto_index = o->auto_create = o->minimize = o->validate_before_save = true;
    o->select_populated_paths = true;
    o->optimistic_concurrency = false;
    if (set_str(&s->version_key, "__v", err) || set_str(&s->type_key, "type", err) ||
        set_str(&s->discriminator_key, "__t", err))
        return MK_ENOMEM;
    if (opts) {
        bson_destroy(&s->raw);
        bson_copy_to(opts, &s->raw);
    }
    bson_iter_t it;
    if (!bson_iter_init(&it, &s->raw))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "bad options");
    int rc = MK_OK;
    while (rc == MK_OK && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "strict") == 0)
            rc = parse_strict(&it, &o->strict, err);
        else if (strcmp(k, "strictQuery") == 0)
            rc = parse_strict(&it, &o->strict_query, err);
        else if (strcmp(k, "_id") == 0)
            rc = parse_bool(&it, &o->id_path, err);
        else if (strcmp(k, "id") == 0)
            rc = parse_bool(&it, &o->id_virtual, err);
        else if (strcmp(k, "autoIndex") == 0)
            rc = parse_bool(&it, &o->auto_index, err);
        else if (strcmp(k, "autoCreate") == 0)
            rc = parse_bool(&it, &o->auto_create, err);
        else if (strcmp(k, "minimize") == 0)
            rc = parse_bool(&it, &o->minimize, err);
        else if (strcmp(k, "optimisticConcurrency") == 0)
            rc = parse_bool(&it, &o->optimistic_concurrency, err);
        else if (strcmp(k, "validateBeforeSave") == 0)
            rc = parse_bool(&it, &o->validate_before_save, err);
        else if (strcmp(k, "selectPopulatedPaths") == 0)
            rc = parse_bool(&it, &o->select_populated_paths, err);
        else if (strcmp(k, "collection") == 0)
            rc = parse_name(&it, &s->collection, err);
        else if (strcmp(k, "typeKey") == 0)
            rc = parse_name(&it, &s->type_key, err);
        else if (strcmp(k, "discriminatorKey") == 0)
            rc = parse_name(&it, &s->discriminator_key, err);
        else if (strcmp(k, "timestamps") == 0)
            rc = parse_timestamps(s, &it, err);
        else if (strcmp(k, "versionKey") == 0) {
            if (BSON_ITER_HOLDS_BOOL(&it) && !bson_iter_bool(&it))
                rc = set_str(&s->version_key, NULL, err);
            else
                rc = parse_name(&it, &s->version_key, err);
        } else if (strcmp(k, "toJSON") == 0 || strcmp(k, "toObject") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                rc = option_error(err, k, "must be an object");
                break;
            }
            bson_t view;
            bson_t *dst = k[2] == 'J' ? &s->to_json : &s->to_object;
            bson_destroy(dst);
            if (doc_of(&it, &view))
                bson_copy_to(&view, dst);
            else
                bson_init(dst);
            if (k[2] == 'J')
                o->to_json = dst;
            else
                o->to_object = dst;
        } else if (!known_option(k))
            rc = mk_error_setc(err, MK_CODE_INVALID_OPTIONS, "unknown schema option `%s`", k);
    }
    o->version_key = s->version_key;
    o->collection = s->collection;
    o->type_key = s->type_key;
    o->created_at = s->created_at;
    o->updated_at = s->updated_at;
    o->discriminator_key = s->discriminator_key;
    o->raw = &s->raw;
    return rc;
}

static mk_schema_t *schema_new(const bson_t *opts, mk_error_t *err)
{
    mk_schema_t *s = zalloc_aligned(sizeof *s);
    if (!s) {
        mk_error_nomem(err);
        return NULL;
    }
    pthread_mutex_init(&s->cache_lock, NULL);
    bson_init(&s->raw);
    bson_init(&s->indexes);
    bson_init(&s->to_json);
    bson_init(&s->to_object);
    if (apply_options(s, opts, err) != MK_OK) {
        mk_schema_destroy(s);
        return NULL;
    }
    return s;
}

/* The options a child schema inherits from its parent, as Mongoose passes them. */
static void child_options(const mk_schema_t *parent, bson_t *out)
{
    static const char *const inherited[] = {"typeKey",  "strict", "strictQuery",
                                            "minimize", "toJSON", "toObject"};
    bson_init(out);
    bson_iter_t it;
    if (!bson_iter_init(&it, &parent->raw)) return;
    while (bson_iter_next(&it))
        for (size_t i = 0; i < sizeof inherited / sizeof inherited[0]; i++)
            if (strcmp(bson_iter_key(&it), inherited[i]) == 0) bson_append_iter(out, NULL, 0, &it);
}

/* ---- definitions ---- */

static int add_definition(mk_schema_t *s, const bson_t *def, const char *prefix, bool *no_id,
                          mk_error_t *err);
static int finish(mk_schema_t *s, bool no_id, mk_error_t *err);

static mk_schema_t *child_schema(const mk_schema_t *parent, const bson_t *def, mk_error_t *err)
{
    bson_t opts;
    child_options(parent, &opts);
    mk_schema_t *c = schema_new(&opts, err);
    bson_destroy(&opts);
    bool no_id = false;
    if (c && (add_definition(c, def, "", &no_id, err) != MK_OK || finish(c, no_id, err) != MK_OK)) {
        mk_schema_destroy(c);
        return NULL;
    }
    return c;
}

/* Whether a definition object names its type: it has the type key, unless that is `type`
 * holding an object with its own `type` (then `type` is a field: { type: { type: String } }). */
static bool has_type_key(const mk_schema_t *s, const bson_t *obj, bson_iter_t *tk)
{
    if (!bson_iter_init_find(tk, obj, s->type_key)) return false;
    if (strcmp(s->type_key, "type") == 0 && BSON_ITER_HOLDS_DOCUMENT(tk)) {
        bson_t inner;
        bson_iter_t x;
        if (doc_of(tk, &inner) && bson_iter_init_find(&x, &inner, "type")) return false;
    }
    return true;
}

static void describe(const bson_iter_t *it, char *buf, size_t cap)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_BOOL:
        snprintf(buf, cap, "%s", bson_iter_bool(it) ? "true" : "false");
        break;
    case BSON_TYPE_INT32:
        snprintf(buf, cap, "%d", bson_iter_int32(it));
        break;
    case BSON_TYPE_INT64:
        snprintf(buf, cap, "%lld", (long long)bson_iter_int64(it));
        break;
    case BSON_TYPE_DOUBLE:
        snprintf(buf, cap, "%g", bson_iter_double(it));
        break;
    case BSON_TYPE_NULL:
        snprintf(buf, cap, "null");
        break;
    case BSON_TYPE_UNDEFINED:
        snprintf(buf, cap, "undefined");
        break;
    default:
        snprintf(buf, cap, "a BSON %#x", (unsigned)bson_iter_type(it));
        break;
    }
}

static mk_schema_path_t *build_type(mk_schema_t *s, const char *name, const bson_iter_t *type,
                                    const bson_t *opts, const char *in_array, mk_error_t *err);

static mk_schema_path_t *mixed_elem(const char *name, const char *suffix, mk_error_t *err)
{
    char *n = join(name, suffix);
    mk_schema_path_t *p = n ? path_new(n, MK_TYPE_MIXED) : NULL;
    free(n);
    if (!p) mk_error_nomem(err);
    return p;
}

/* Makes p an array of `cast` (the first element of `[...]`, or `of`; NULL: Mixed). */
static int array_of(mk_schema_t *s, mk_schema_path_t *p, const bson_iter_t *cast, mk_error_t *err)
{
    p->type = MK_TYPE_ARRAY;
    if (!cast) return (p->elem = mixed_elem(p->name, "$", err)) ? MK_OK : MK_ERR;
    char *elem_name = join(p->name, "$");
    if (!elem_name) return mk_error_nomem(err);
    int rc = MK_OK;
    bson_t obj;
    bson_iter_t tk;
    if (BSON_ITER_HOLDS_DOCUMENT(cast) && doc_of(cast, &obj)) {
        if (!has_type_key(s, &obj, &tk)) {
            if (bson_empty(&obj)) {
                p->elem = path_new(elem_name, MK_TYPE_MIXED);
                if (!p->elem) rc = mk_error_nomem(err);
            } else {
                p->type = MK_TYPE_DOCARRAY;
                if (!(p->schema = child_schema(s, &obj, err))) rc = MK_ERR;
            }
        } else if (BSON_ITER_HOLDS_DOCUMENT(&tk)) {
            bson_t tdef;
            doc_of(&tk, &tdef);
            if (bson_empty(&tdef)) {
                p->elem = path_new(elem_name, MK_TYPE_MIXED);
                if (!p->elem) rc = mk_error_nomem(err);
            } else {
                p->type = MK_TYPE_DOCARRAY; /* [{ type: { street: String } }] */
                if (!(p->schema = child_schema(s, &tdef, err))) rc = MK_ERR;
            }
        } else {
            p->elem = build_type(s, elem_name, &tk, &obj, p->name, err);
            if (!p->elem) rc = MK_ERR;
        }
    } else if (BSON_ITER_HOLDS_UTF8(cast) || BSON_ITER_HOLDS_ARRAY(cast)) {
        p->elem = build_type(s, elem_name, cast, NULL, p->name, err);
        if (!p->elem) rc = MK_ERR;
    } else {
        rc = type_error(err,
                        "Invalid schema configuration: Could not determine the embedded type "
                        "for array `%s`. See https://mongoosejs.com/docs/guide.html#definition "
                        "for more info on supported schema syntaxes.",
                        p->name);
    }
    free(elem_name);
    return rc;
}

/* A Map's `of`: a type, a type with options, or an object (a sub-document). */
static int map_of(mk_schema_t *s, mk_schema_path_t *p, const bson_iter_t *of, mk_error_t *err)
{
    char *elem_name = join(p->name, "$*");
    if (!elem_name) return mk_error_nomem(err);
    bson_t obj;
    bson_iter_t tk;
    if (BSON_ITER_HOLDS_DOCUMENT(of) && doc_of(of, &obj) && !has_type_key(s, &obj, &tk)) {
        p->elem = path_new(elem_name, bson_empty(&obj) ? MK_TYPE_MIXED : MK_TYPE_SUBDOC);
        if (!p->elem) {
            free(elem_name);
            return mk_error_nomem(err);
        }
        if (!bson_empty(&obj) && !(p->elem->schema = child_schema(s, &obj, err))) {
            free(elem_name);
            return MK_ERR;
        }
    } else if (BSON_ITER_HOLDS_DOCUMENT(of)) {
        p->elem = build_type(s, elem_name, &tk, &obj, NULL, err);
    } else {
        p->elem = build_type(s, elem_name, of, NULL, NULL, err);
    }
    free(elem_name);
    return p->elem ? MK_OK : MK_ERR;
}

/* `_id: false` as a path option removes the sub-schema's _id, as Mongoose's handleIdOption. */
static void drop_child_id(mk_schema_path_t *p)
{
    bson_iter_t it;
    if (!p->schema || !bson_iter_init_find(&it, &p->options, "_id") || !BSON_ITER_HOLDS_BOOL(&it) ||
        bson_iter_bool(&it))
        return;
    ssize_t i = find_index(p->schema, "_id", 3);
    if (i >= 0) remove_at(p->schema, (size_t)i);
}

/* A SchemaType from its type value and (when written as an object) its options. */
static mk_schema_path_t *build_type(mk_schema_t *s, const char *name, const bson_iter_t *type,
                                    const bson_t *opts, const char *in_array, mk_error_t *err)
{
    mk_schema_path_t *p = path_new(name, MK_TYPE_MIXED);
    if (!p) {
        mk_error_nomem(err);
        return NULL;
    }
    bson_iter_t of;
    bool has_of = false;
    if (opts) {
        bson_destroy(&p->options);
        bson_init(&p->options);
        bson_copy_to_excluding_noinit(opts, &p->options, s->type_key, "of", NULL);
        has_of = bson_iter_init_find(&of, opts, "of");
    }
    int rc = MK_OK;
    bson_t obj;
    if (BSON_ITER_HOLDS_UTF8(type)) {
        const char *written = bson_iter_utf8(type, NULL);
        p->type = resolve_type(written);
        if (!p->type) {
            if (in_array)
                rc = type_error(err,
                                "Invalid schema configuration: `%s` is not a valid type within "
                                "the array `%s`. " INVALID_TYPE_HINT,
                                strip_namespace(written), in_array);
            else
                rc = type_error(err,
                                "Invalid schema configuration: `%s` is not a valid type at path "
                                "`%s`. " INVALID_TYPE_HINT,
                                strip_namespace(written), name);
        } else if (p->type == MK_TYPE_ARRAY) {
            rc = array_of(s, p, has_of ? &of : NULL, err);
        } else if (p->type == MK_TYPE_MAP && has_of) {
            rc = map_of(s, p, &of, err);
        }
    } else if (BSON_ITER_HOLDS_ARRAY(type) && doc_of(type, &obj)) {
        bson_iter_t first;
        bool has = bson_iter_init(&first, &obj) && bson_iter_next(&first);
        rc = array_of(s, p, has ? &first : NULL, err);
    } else if (BSON_ITER_HOLDS_DOCUMENT(type) && doc_of(type, &obj)) {
        if (!bson_empty(&obj)) { /* an object under the type key is a sub-document */
            p->type = MK_TYPE_SUBDOC;
            if (!(p->schema = child_schema(s, &obj, err))) rc = MK_ERR;
        }
    } else {
        char v[64];
        describe(type, v, sizeof v);
        rc = type_error(err,
                        "Invalid schema configuration: `%s` is not a valid type at path "
                        "`%s`. " INVALID_TYPE_HINT,
                        v, name);
    }
    if (rc == MK_OK) drop_child_id(p);
    if (rc != MK_OK) {
        path_free(p);
        return NULL;
    }
    return p;
}

static int add_field(mk_schema_t *s, const char *prefix, bson_iter_t *it, bool *no_id,
                     mk_error_t *err)
{
    const char *key = bson_iter_key(it);
    if (!*key) return type_error(err, "Invalid schema configuration: empty path name");
    if (!*prefix && strcmp(key, "_id") == 0 && BSON_ITER_HOLDS_BOOL(it) && !bson_iter_bool(it)) {
        *no_id = true; /* { _id: false } in a definition disables the implicit _id */
        ssize_t i = find_index(s, "_id", 3);
        if (i >= 0) remove_at(s, (size_t)i);
        return MK_OK;
    }
    char *full = *prefix ? join(prefix, key) : strdup(key);
    if (!full) return mk_error_nomem(err);
    int rc = MK_OK;
    mk_schema_path_t *p = NULL;
    bson_t obj;
    bson_iter_t tk;
    if (BSON_ITER_HOLDS_DOCUMENT(it) && doc_of(it, &obj)) {
        if (has_type_key(s, &obj, &tk)) {
            p = build_type(s, full, &tk, &obj, NULL, err);
            rc = p ? put_path(s, p, err) : MK_ERR;
        } else if (bson_empty(&obj)) {
            p = path_new(full, MK_TYPE_MIXED);
            rc = p ? put_path(s, p, err) : mk_error_nomem(err);
        } else {
            /* over an existing leaf, the children report Mongoose's "Cannot set nested path" */
            if (find_index(s, full, strlen(full)) < 0) {
                p = path_new(full, MK_TYPE_NESTED);
                rc = p ? put_path(s, p, err) : mk_error_nomem(err);
            }
            if (rc == MK_OK) rc = add_definition(s, &obj, full, no_id, err);
        }
    } else if (BSON_ITER_HOLDS_UTF8(it) || BSON_ITER_HOLDS_ARRAY(it)) {
        p = build_type(s, full, it, NULL, NULL, err);
        rc = p ? put_path(s, p, err) : MK_ERR;
    } else {
        char v[64];
        describe(it, v, sizeof v);
        rc = type_error(err, "Invalid value for schema path `%s`, got value \"%s\"", full, v);
    }
    free(full);
    return rc;
}

static int add_definition(mk_schema_t *s, const bson_t *def, const char *prefix, bool *no_id,
                          mk_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, def))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "bad definition");
    while (bson_iter_next(&it)) {
        int rc = add_field(s, prefix, &it, no_id, err);
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

static int add_simple(mk_schema_t *s, const char *name, mk_schematype_t type, const char *opt,
                      mk_error_t *err)
{
    if (find_index(s, name, strlen(name)) >= 0) return MK_OK;
    mk_schema_path_t *p = path_new(name, type);
    if (!p) return mk_error_nomem(err);
    if (opt && !BSON_APPEND_BOOL(&p->options, opt, true)) {
        path_free(p);
        return mk_error_nomem(err);
    }
    return put_path(s, p, err);
}

/* The implicit paths Mongoose's Schema constructor adds after the definition. */
static int finish(mk_schema_t *s, bool no_id, mk_error_t *err)
{
    if (!no_id && s->opts.id_path && add_simple(s, "_id", MK_TYPE_OBJECTID, "auto", err))
        return MK_ERR;
    if (s->created_at && add_simple(s, s->created_at, MK_TYPE_DATE, "immutable", err))
        return MK_ERR;
    if (s->updated_at && add_simple(s, s->updated_at, MK_TYPE_DATE, NULL, err)) return MK_ERR;
    return MK_OK;
}

/* ---- public ---- */

mk_schema_t *mk_schema_from_bson(const bson_t *definition, const bson_t *options, mk_error_t *err)
{
    if (!definition) {
        mk_error_setc(err, MK_CODE_BAD_VALUE, "schema definition is NULL");
        return NULL;
    }
    mk_schema_t *s = schema_new(options, err);
    bool no_id = false;
    if (s && (add_definition(s, definition, "", &no_id, err) != MK_OK ||
              finish(s, no_id, err) != MK_OK)) {
        mk_schema_destroy(s);
        return NULL;
    }
    return s;
}

mk_schema_t *mk_schema_parse(const char *definition, const char *options, mk_error_t *err)
{
    bson_t *def = parse_text(definition, "definition", err);
    if (!def) return NULL;
    bson_t *opts = NULL;
    if (options && !(opts = parse_text(options, "options", err))) {
        bson_destroy(def);
        return NULL;
    }
    mk_schema_t *s = mk_schema_from_bson(def, opts, err);
    bson_destroy(def);
    if (opts) bson_destroy(opts);
    return s;
}

void mk_schema_destroy(mk_schema_t *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->npaths; i++) path_free(s->paths[i]);
    free(s->paths);
    bson_destroy(&s->indexes);
    bson_destroy(&s->raw);
    bson_destroy(&s->to_json);
    bson_destroy(&s->to_object);
    free(s->version_key);
    free(s->collection);
    free(s->type_key);
    free(s->created_at);
    free(s->updated_at);
    free(s->discriminator_key);
    mk_schema_fns_free(s->fns);
    cache_clear(s);
    pthread_mutex_destroy(&s->cache_lock);
    free(s);
}

mk_schema_t *mk_schema_clone(const mk_schema_t *src, mk_error_t *err)
{
    mk_schema_t *s = schema_new(&src->raw, err);
    if (!s) return NULL;
    for (size_t i = 0; i < src->npaths; i++) {
        mk_schema_path_t *p = path_dup(src->paths[i], NULL, err);
        if (!p || append_path(s, p, err) != MK_OK) {
            mk_schema_destroy(s);
            return NULL;
        }
    }
    bson_destroy(&s->indexes);
    bson_copy_to(&src->indexes, &s->indexes);
    s->nindexes = src->nindexes;
    if (copy_fns(s, src, err) != MK_OK) {
        mk_schema_destroy(s);
        return NULL;
    }
    return s;
}

mk_schema_t *mk_schema_pick(const mk_schema_t *src, const char *const *paths, mk_error_t *err)
{
    mk_schema_t *s = schema_new(&src->raw, err);
    if (!s || finish(s, false, err) != MK_OK) goto fail;
    for (size_t k = 0; paths && paths[k]; k++) {
        ssize_t i = find_index(src, paths[k], strlen(paths[k]));
        if (i < 0) {
            mk_error_set(err, 0, "MongooseError", "Path `%s` is not in the schema", paths[k]);
            goto fail;
        }
        size_t n = strlen(paths[k]);
        for (size_t j = (size_t)i; j < src->npaths; j++) {
            const char *name = src->paths[j]->name;
            if (j != (size_t)i && !(strncmp(name, paths[k], n) == 0 && name[n] == '.')) continue;
            mk_schema_path_t *p = path_dup(src->paths[j], NULL, err);
            if (!p || put_path(s, p, err) != MK_OK) goto fail;
        }
    }
    if (copy_fns(s, src, err) != MK_OK) goto fail;
    return s;
fail:
    mk_schema_destroy(s);
    return NULL;
}

int mk_schema_add_bson(mk_schema_t *s, const bson_t *definition, mk_error_t *err)
{
    cache_clear(s);
    bool no_id = false;
    return add_definition(s, definition, "", &no_id, err);
}

int mk_schema_add(mk_schema_t *s, const char *definition, mk_error_t *err)
{
    bson_t *def = parse_text(definition, "definition", err);
    if (!def) return MK_ERR;
    int rc = mk_schema_add_bson(s, def, err);
    bson_destroy(def);
    return rc;
}

int mk_schema_add_schema(mk_schema_t *s, const char *path, const mk_schema_t *sub, bool array,
                         const char *options, mk_error_t *err)
{
    cache_clear(s);
    if (!path || !*path || !sub)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "mk_schema_add_schema needs a path and a schema");
    mk_schema_path_t *p = path_new(path, array ? MK_TYPE_DOCARRAY : MK_TYPE_SUBDOC);
    if (!p) return mk_error_nomem(err);
    if (options) {
        bson_t *o = parse_text(options, "path options", err);
        if (!o) {
            path_free(p);
            return MK_ERR;
        }
        bson_destroy(&p->options);
        bson_init(&p->options);
        bson_copy_to_excluding_noinit(o, &p->options, s->type_key, NULL);
        bson_destroy(o);
    }
    if (!(p->schema = mk_schema_clone(sub, err))) {
        path_free(p);
        return MK_ERR;
    }
    drop_child_id(p);
    return put_path(s, p, err);
}

int mk_schema_add_version_key(mk_schema_t *s, mk_error_t *err)
{
    cache_clear(s);
    if (!s->version_key) return MK_OK;
    return add_simple(s, s->version_key, MK_TYPE_NUMBER, NULL, err);
}

const mk_schema_options_t *mk_schema_options(const mk_schema_t *s)
{
    return &s->opts;
}

size_t mk_schema_path_count(const mk_schema_t *s)
{
    return s->npaths;
}

const mk_schema_path_t *mk_schema_path_at(const mk_schema_t *s, size_t i)
{
    return i < s->npaths ? s->paths[i] : NULL;
}

static bool positional(const char *seg, size_t n)
{
    if (n == 1 && seg[0] == '$') return true;
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)seg[i])) return false;
    return true;
}

/* Resolves `rest` (what follows a path p) inside an array, map or sub-document. */
static const mk_schema_path_t *descend(const mk_schema_path_t *p, const char *rest)
{
    while (p && *rest) {
        const char *dot = strchr(rest, '.');
        size_t n = dot ? (size_t)(dot - rest) : strlen(rest);
        const char *next = dot ? dot + 1 : rest + n;
        switch (p->type) {
        case MK_TYPE_SUBDOC:
            return mk_schema_path(p->schema, rest);
        case MK_TYPE_DOCARRAY:
            if (positional(rest, n)) {
                if (!*next) return NULL;
                rest = next;
            }
            return mk_schema_path(p->schema, rest);
        case MK_TYPE_ARRAY:
            if (!positional(rest, n)) return NULL;
            p = p->elem;
            rest = next;
            break;
        case MK_TYPE_MAP:
            if (!p->elem) return NULL;
            p = p->elem;
            rest = next;
            break;
        default:
            return NULL;
        }
    }
    return p;
}

const mk_schema_path_t *mk_schema_path(const mk_schema_t *s, const char *dotted)
{
    if (!s || !dotted) return NULL;
    ssize_t i = find_index(s, dotted, strlen(dotted));
    if (i >= 0) return s->paths[i];
    for (const char *dot = strchr(dotted, '.'); dot; dot = strchr(dot + 1, '.')) {
        i = find_index(s, dotted, (size_t)(dot - dotted));
        if (i < 0) return NULL;
        if (s->paths[i]->type != MK_TYPE_NESTED) return descend(s->paths[i], dot + 1);
    }
    return NULL;
}

mk_schematype_t mk_schema_path_type(const mk_schema_t *s, const char *dotted)
{
    const mk_schema_path_t *p = mk_schema_path(s, dotted);
    return p ? p->type : 0;
}

const char *mk_schema_path_name(const mk_schema_path_t *p)
{
    return p->name;
}

mk_schematype_t mk_schema_path_kind(const mk_schema_path_t *p)
{
    return p->type;
}

const bson_t *mk_schema_path_options(const mk_schema_path_t *p)
{
    return &p->options;
}

bool mk_schema_path_option(const mk_schema_path_t *p, const char *name, bson_iter_t *out)
{
    return bson_iter_init_find(out, &p->options, name);
}

const mk_schema_path_t *mk_schema_path_element(const mk_schema_path_t *p)
{
    return p->elem;
}

const mk_schema_t *mk_schema_path_schema(const mk_schema_path_t *p)
{
    return p->schema;
}

bool mk_schema_path_default_is_now(const mk_schema_path_t *p)
{
    bson_iter_t it;
    return p->type == MK_TYPE_DATE && bson_iter_init_find(&it, &p->options, "default") &&
           BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), "Date.now") == 0;
}

/* ---- indexes ---- */

int mk_schema_index(mk_schema_t *s, const char *fields, const char *options, mk_error_t *err)
{
    bson_t *key = parse_text(fields, "index fields", err);
    if (!key) return MK_ERR;
    bson_t *opts = options ? parse_text(options, "index options", err) : bson_new();
    int rc = MK_OK;
    if (!opts)
        rc = MK_ERR;
    else if (bson_empty(key))
        rc = mk_error_setc(err, MK_CODE_BAD_VALUE, "schema.index() needs at least one field");
    if (rc == MK_OK) {
        char idx[16];
        const char *k;
        bson_uint32_to_string(s->nindexes, &k, idx, sizeof idx);
        bson_t pair;
        if (!bson_append_array_begin(&s->indexes, k, -1, &pair) ||
            !BSON_APPEND_DOCUMENT(&pair, "0", key) || !BSON_APPEND_DOCUMENT(&pair, "1", opts) ||
            !bson_append_array_end(&s->indexes, &pair))
            rc = mk_error_nomem(err);
        else
            s->nindexes++;
    }
    bson_destroy(key);
    if (opts) bson_destroy(opts);
    return rc;
}

/* `expires` as seconds: a number, or an `ms`-style string ("1d", "10 minutes", "1.5h"). */
static int expires_seconds(const bson_iter_t *it, const char *path, double *out, mk_error_t *err)
{
    if (BSON_ITER_HOLDS_NUMBER(it)) {
        *out = bson_iter_as_double(it);
        return MK_OK;
    }
    if (BSON_ITER_HOLDS_UTF8(it)) {
        static const struct {
            const char *unit;
            double ms;
        } units[] = {{"ms", 1},
                     {"s", 1e3},
                     {"sec", 1e3},
                     {"secs", 1e3},
                     {"second", 1e3},
                     {"seconds", 1e3},
                     {"m", 6e4},
                     {"min", 6e4},
                     {"mins", 6e4},
                     {"minute", 6e4},
                     {"minutes", 6e4},
                     {"h", 3.6e6},
                     {"hr", 3.6e6},
                     {"hrs", 3.6e6},
                     {"hour", 3.6e6},
                     {"hours", 3.6e6},
                     {"d", 8.64e7},
                     {"day", 8.64e7},
                     {"days", 8.64e7},
                     {"w", 6.048e8},
                     {"week", 6.048e8},
                     {"weeks", 6.048e8},
                     {"y", 3.15576e10},
                     {"year", 3.15576e10},
                     {"years", 3.15576e10},
                     {"", 1}};
        const char *text = bson_iter_utf8(it, NULL);
        char *end;
        errno = 0;
        double n = strtod(text, &end);
        if (end != text && errno == 0) {
            while (*end == ' ') end++;
            for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
                if (strcasecmp(end, units[i].unit) == 0) {
                    *out = n * units[i].ms / 1000.0;
                    return MK_OK;
                }
            }
        }
    }
    return type_error(err, "Invalid `expires` value for path `%s`", path);
}

static bool is_index_type(const char *t)
{
    return strcmp(t, "text") == 0 || strcmp(t, "2d") == 0 || strcmp(t, "2dsphere") == 0 ||
           strcmp(t, "hashed") == 0;
}

static bool truthy(const bson_iter_t *it)
{
    return bson_iter_as_bool(it);
}

/* The index a path declares with index / unique / sparse / expires, appended to `out`. */
static int path_index(const mk_schema_path_t *p, const char *field, bson_t *out, uint32_t *n,
                      mk_error_t *err)
{
    const bson_t *o = &p->options;
    if (p->type == MK_TYPE_ARRAY && p->elem && bson_empty(o)) o = &p->elem->options;
    bson_iter_t index, unique, sparse, expires;
    bool has_index = bson_iter_init_find(&index, o, "index");
    bool has_unique = bson_iter_init_find(&unique, o, "unique");
    bool has_sparse = bson_iter_init_find(&sparse, o, "sparse");
    bool has_expires = bson_iter_init_find(&expires, o, "expires");
    if (has_index && BSON_ITER_HOLDS_BOOL(&index) && !bson_iter_bool(&index)) {
        if (has_unique && truthy(&unique))
            return mk_error_set(err, 0, "Error",
                                "Path \"%s\" may not have `index` set to false and `unique` "
                                "set to true",
                                p->name);
        if (has_sparse && truthy(&sparse))
            return mk_error_set(err, 0, "Error",
                                "Path \"%s\" may not have `index` set to false and `sparse` "
                                "set to true",
                                p->name);
        return MK_OK;
    }
    bool want = (has_index && truthy(&index)) || (has_unique && truthy(&unique)) ||
                (has_sparse && truthy(&sparse)) || has_expires;
    if (has_index && BSON_ITER_HOLDS_DOCUMENT(&index)) want = true;
    if (has_index && BSON_ITER_HOLDS_UTF8(&index)) want = true;
    if (!want) return MK_OK;

    bson_t key, opts;
    bson_init(&key);
    bson_init(&opts);
    bool ok = true;
    const char *type = NULL;
    int dir = 1;
    if (has_index && BSON_ITER_HOLDS_UTF8(&index)) {
        type = bson_iter_utf8(&index, NULL);
        if (!is_index_type(type)) type = NULL;
    } else if (has_index && BSON_ITER_HOLDS_NUMBER(&index)) {
        dir = bson_iter_as_double(&index) == -1 ? -1 : 1;
    } else if (has_index && BSON_ITER_HOLDS_DOCUMENT(&index)) {
        bson_t idoc;
        bson_iter_t t;
        doc_of(&index, &idoc);
        if (bson_iter_init_find(&t, &idoc, "type") && BSON_ITER_HOLDS_UTF8(&t) &&
            is_index_type(bson_iter_utf8(&t, NULL)))
            type = bson_iter_utf8(&t, NULL);
        else if (bson_iter_init_find(&t, &idoc, "text") && truthy(&t))
            type = "text";
        bson_copy_to_excluding_noinit(&idoc, &opts, "type", "text", NULL);
    }
    ok = type ? BSON_APPEND_UTF8(&key, field, type) : BSON_APPEND_INT32(&key, field, dir);
    if (has_unique && (truthy(&unique) || has_index)) {
        bson_iter_t dup;
        if (!bson_iter_init_find(&dup, &opts, "unique"))
            ok = ok && BSON_APPEND_BOOL(&opts, "unique", truthy(&unique));
    }
    if (has_sparse && truthy(&sparse)) ok = ok && BSON_APPEND_BOOL(&opts, "sparse", true);
    int rc = MK_OK;
    if (has_expires) {
        double secs = 0;
        rc = expires_seconds(&expires, p->name, &secs, err);
        if (rc == MK_OK) {
            if (secs == (double)(int32_t)secs)
                ok = ok && BSON_APPEND_INT32(&opts, "expireAfterSeconds", (int32_t)secs);
            else
                ok = ok && BSON_APPEND_DOUBLE(&opts, "expireAfterSeconds", secs);
        }
    }
    if (rc == MK_OK) {
        char buf[16];
        const char *k;
        bson_uint32_to_string(*n, &k, buf, sizeof buf);
        bson_t pair;
        ok = ok && bson_append_array_begin(out, k, -1, &pair) &&
             BSON_APPEND_DOCUMENT(&pair, "0", &key) && BSON_APPEND_DOCUMENT(&pair, "1", &opts) &&
             bson_append_array_end(out, &pair);
        if (!ok)
            rc = mk_error_nomem(err);
        else
            (*n)++;
    }
    bson_destroy(&key);
    bson_destroy(&opts);
    return rc;
}

static int collect_indexes(const mk_schema_t *s, const char *prefix, bson_t *out, uint32_t *n,
                           mk_error_t *err)
{
    for (size_t i = 0; i < s->npaths; i++) {
        const mk_schema_path_t *p = s->paths[i];
        if (p->type == MK_TYPE_NESTED) continue;
        char *field = *prefix ? join(prefix, p->name) : strdup(p->name);
        if (!field) return mk_error_nomem(err);
        int rc = path_index(p, field, out, n, err);
        bson_iter_t ex;
        if (rc == MK_OK && p->schema &&
            !(bson_iter_init_find(&ex, &p->options, "excludeIndexes") && truthy(&ex)))
            rc = collect_indexes(p->schema, field, out, n, err);
        free(field);
        if (rc != MK_OK) return rc;
    }
    /* schema.index() declarations, their fields prefixed inside a sub-schema */
    bson_iter_t it;
    if (!bson_iter_init(&it, &s->indexes)) return MK_OK;
    while (bson_iter_next(&it)) {
        bson_t pair, key, opts, prefixed, newpair;
        bson_iter_t part, f;
        doc_of(&it, &pair);
        bson_iter_init(&part, &pair);
        bson_iter_next(&part);
        doc_of(&part, &key);
        bson_iter_next(&part);
        doc_of(&part, &opts);
        bson_init(&prefixed);
        bool ok = bson_iter_init(&f, &key);
        while (ok && bson_iter_next(&f)) {
            char *name = *prefix ? join(prefix, bson_iter_key(&f)) : strdup(bson_iter_key(&f));
            ok = name && bson_append_iter(&prefixed, name, -1, &f);
            free(name);
        }
        char buf[16];
        const char *k;
        bson_uint32_to_string(*n, &k, buf, sizeof buf);
        ok = ok && bson_append_array_begin(out, k, -1, &newpair) &&
             BSON_APPEND_DOCUMENT(&newpair, "0", &prefixed) &&
             BSON_APPEND_DOCUMENT(&newpair, "1", &opts) && bson_append_array_end(out, &newpair);
        bson_destroy(&prefixed);
        if (!ok) return mk_error_nomem(err);
        (*n)++;
    }
    return MK_OK;
}

bson_t *mk_schema_indexes(const mk_schema_t *s, mk_error_t *err)
{
    bson_t *out = bson_new();
    uint32_t n = 0;
    if (!out) {
        mk_error_nomem(err);
        return NULL;
    }
    if (collect_indexes(s, "", out, &n, err) != MK_OK) {
        bson_destroy(out);
        return NULL;
    }
    return out;
}

/* ---- builder API ---- */

/* The definition name of a type, as schema text writes it. */
static const char *written_type(mk_schematype_t t)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (type_names[i].type == t) return type_names[i].name;
    return NULL;
}

/* Appends { <last component>: value } nested under the components of `path`. */
static int build_nested(bson_t *out, const char *path, const bson_t *leaf)
{
    const char *dot = strchr(path, '.');
    if (!dot) return bson_append_document(out, path, -1, leaf) ? MK_OK : MK_ERR;
    bson_t child;
    if (!bson_append_document_begin(out, path, (int)(dot - path), &child)) return MK_ERR;
    int rc = build_nested(&child, dot + 1, leaf);
    if (!bson_append_document_end(out, &child)) rc = MK_ERR;
    return rc;
}

static int add_typed(mk_schema_t *s, const char *path, mk_schematype_t type, bool array,
                     const char *options, mk_error_t *err)
{
    const char *tname = written_type(type);
    if (!tname || type == MK_TYPE_ARRAY || type == MK_TYPE_NESTED)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "mk_schema_add_path: type %s cannot be added this way (use "
                             "mk_schema_add_schema for sub-documents, mk_schema_add_array for "
                             "arrays)",
                             mk_schematype_name(type));
    if (!path || !*path) return mk_error_setc(err, MK_CODE_BAD_VALUE, "a path is needed");
    bson_t *opts = options ? parse_text(options, "path options", err) : bson_new();
    if (!opts) return options ? MK_ERR : mk_error_nomem(err);
    bson_t leaf, def, arr;
    bson_init(&leaf);
    bson_init(&def);
    int rc = MK_OK;
    if (array) {
        bson_init(&arr);
        bson_t elem;
        bson_init(&elem);
        bool ok = BSON_APPEND_UTF8(&elem, s->type_key, tname) &&
                  bson_append_document(&arr, "0", 1, &elem);
        bson_destroy(&elem);
        ok = ok && bson_append_array(&leaf, s->type_key, -1, &arr);
        bson_destroy(&arr);
        if (!ok) rc = mk_error_nomem(err);
    } else if (!BSON_APPEND_UTF8(&leaf, s->type_key, tname)) {
        rc = mk_error_nomem(err);
    }
    bson_iter_t it;
    if (rc == MK_OK && bson_iter_init(&it, opts))
        while (bson_iter_next(&it))
            if (strcmp(bson_iter_key(&it), s->type_key) != 0 &&
                !bson_append_iter(&leaf, NULL, 0, &it))
                rc = mk_error_nomem(err);
    if (rc == MK_OK && build_nested(&def, path, &leaf) != MK_OK) rc = mk_error_nomem(err);
    if (rc == MK_OK) rc = mk_schema_add_bson(s, &def, err);
    bson_destroy(&leaf);
    bson_destroy(&def);
    bson_destroy(opts);
    return rc;
}

int mk_schema_add_path(mk_schema_t *s, const char *path, mk_schematype_t type, const char *options,
                       mk_error_t *err)
{
    return add_typed(s, path, type, false, options, err);
}

int mk_schema_add_array(mk_schema_t *s, const char *path, mk_schematype_t elem_type,
                        const char *options, mk_error_t *err)
{
    return add_typed(s, path, elem_type, true, options, err);
}
