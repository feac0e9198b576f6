/* Projections the way Mongoose 8 builds them: Query#select() merging, and applyPaths, which
 * turns the selected fields plus the schema's `select: true / false` options into the
 * projection sent to the server.
 *
 *   select('name age')   { name: 1, age: 1 }          select('-rank')   { rank: 0 }
 *   select('+email')     email included although its path says `select: false`
 *
 * A projection mixing inclusion and exclusion is sent as it is: the server refuses it
 * (MongoDB 4.4+: "Cannot do exclusion on field age in inclusion projection"), which is what a
 * Mongoose 8 user sees. */
#include <stdlib.h>
#include <string.h>

#include "odm/query_internal.h"
#include "odm/setters.h"

/* ---------- the ordered field map ---------- */

void mk_fields_destroy(mk_fields_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->keys[i]);
        bson_value_destroy(&f->vals[i]);
    }
    free(f->keys);
    free(f->vals);
    memset(f, 0, sizeof *f);
}

ssize_t mk_fields_find(const mk_fields_t *f, const char *key)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->keys[i], key) == 0) return (ssize_t)i;
    return -1;
}

int mk_fields_set(mk_fields_t *f, const char *key, const bson_value_t *v)
{
    ssize_t at = mk_fields_find(f, key);
    if (at >= 0) {
        bson_value_t copy;
        bson_value_copy(v, &copy);
        bson_value_destroy(&f->vals[at]);
        f->vals[at] = copy;
        return MK_OK;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        char **keys = realloc(f->keys, cap * sizeof *keys);
        if (!keys) return MK_ENOMEM;
        f->keys = keys;
        bson_value_t *vals = realloc(f->vals, cap * sizeof *vals);
        if (!vals) return MK_ENOMEM;
        f->vals = vals;
        f->cap = cap;
    }
    if (!(f->keys[f->n] = strdup(key))) return MK_ENOMEM;
    bson_value_copy(v, &f->vals[f->n]);
    f->n++;
    return MK_OK;
}

void mk_fields_del(mk_fields_t *f, const char *key)
{
    ssize_t at = mk_fields_find(f, key);
    if (at < 0) return;
    free(f->keys[at]);
    bson_value_destroy(&f->vals[at]);
    size_t rest = f->n - (size_t)at - 1;
    memmove(&f->keys[at], &f->keys[at + 1], rest * sizeof *f->keys);
    memmove(&f->vals[at], &f->vals[at + 1], rest * sizeof *f->vals);
    f->n--;
}

int mk_fields_copy(mk_fields_t *dst, const mk_fields_t *src)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < src->n; i++)
        if (mk_fields_set(dst, src->keys[i], &src->vals[i]) != MK_OK) {
            mk_fields_destroy(dst);
            return MK_ENOMEM;
        }
    return MK_OK;
}

int mk_fields_to_bson(const mk_fields_t *f, bson_t *out)
{
    for (size_t i = 0; i < f->n; i++)
        if (!bson_append_value(out, f->keys[i], -1, &f->vals[i])) return MK_ENOMEM;
    return MK_OK;
}

static int set_int(mk_fields_t *f, const char *key, int32_t n)
{
    bson_value_t v = {.value_type = BSON_TYPE_INT32, .value.v_int32 = n};
    return mk_fields_set(f, key, &v);
}

/* The value at key, NULL when absent. */
static const bson_value_t *get(const mk_fields_t *f, const char *key)
{
    ssize_t at = mk_fields_find(f, key);
    return at < 0 ? NULL : &f->vals[at];
}

/* ---------- select() ---------- */

int mk_projection_parse(const char *text, mk_fields_t *out, mk_error_t *err)
{
    memset(out, 0, sizeof *out);
    const char *p = text ? text : "";
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p == '{') {
        bson_t *obj = mk_json_parse(p, NULL, err);
        if (!obj) return MK_ERR;
        bson_iter_t it;
        int rc = MK_OK;
        if (bson_iter_init(&it, obj))
            while (rc == MK_OK && bson_iter_next(&it))
                rc = mk_fields_set(out, bson_iter_key(&it), bson_iter_value(&it));
        bson_destroy(obj);
        if (rc != MK_OK) {
            mk_fields_destroy(out);
            return mk_error_nomem(err);
        }
        return MK_OK;
    }
    /* words separated by white space; "-x" keeps its minus (resolved at execution) */
    while (*p) {
        size_t n = strcspn(p, " \t\r\n");
        if (n > 0) {
            char *word = strndup(p, n);
            if (!word || set_int(out, word, word[0] == '-' ? 0 : 1) != MK_OK) {
                free(word);
                mk_fields_destroy(out);
                return mk_error_nomem(err);
            }
            free(word);
        }
        p += n;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    }
    return MK_OK;
}

/* Whether a projection value decides inclusive vs exclusive: everything but $meta / $slice
 * objects. */
static bool is_defining(const bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_DOCUMENT) return true;
    bson_t d;
    if (!bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len)) return true;
    return !bson_has_field(&d, "$meta") && !bson_has_field(&d, "$slice");
}

static bool is_inclusive_doc(const bson_t *d);

/* Mongoose's isInclusive over a value (documents recurse). */
static bool value_inclusive(const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_t d;
        return bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) &&
               is_inclusive_doc(&d);
    }
    return mk_js_truthy(v);
}

static bool is_inclusive_doc(const bson_t *d)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, d)) return false;
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        if (bson_iter_key(&it)[0] == '+') continue;
        if (is_defining(v) && mk_js_truthy(v)) return value_inclusive(v);
    }
    return false;
}

/* Mongoose's isInclusive: the first defining truthy value decides. */
static bool selected_inclusively(const mk_fields_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        if (f->keys[i][0] == '+') continue;
        if (is_defining(&f->vals[i]) && mk_js_truthy(&f->vals[i]))
            return value_inclusive(&f->vals[i]);
    }
    return false;
}

/* Mongoose's isExclusive (true only when it says the projection excludes). */
static bool selected_exclusively(const mk_fields_t *f)
{
    if (f->n == 1 && strcmp(f->keys[0], "_id") == 0) return !mk_js_truthy(&f->vals[0]);
    bool exclude = false;
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->keys[i], "_id") == 0 || !is_defining(&f->vals[i])) continue;
        /* an object value (an operator such as $elemMatch) counts as an inclusion */
        exclude = f->vals[i].value_type == BSON_TYPE_DOCUMENT ? false : !mk_js_truthy(&f->vals[i]);
        if (!exclude) break;
    }
    return exclude;
}

static bool is_subpath(const char *parent, const char *path)
{
    size_t n = strlen(parent);
    return strcmp(parent, path) == 0 || (strncmp(parent, path, n) == 0 && path[n] == '.');
}

/* Removes from fields and user every user-provided field at or below key. */
static void remove_user_fields(mk_fields_t *fields, mk_fields_t *user, const char *key)
{
    for (size_t i = 0; i < user->n;) {
        if (is_subpath(key, user->keys[i])) {
            char *k = user->keys[i];
            mk_fields_del(fields, k);
            mk_fields_del(user, k); /* frees k */
        } else {
            i++;
        }
    }
}

int mk_projection_select(mk_fields_t *fields, mk_fields_t *user, const mk_fields_t *arg,
                         mk_error_t *err)
{
    bool incl = selected_inclusively(fields);
    bool excl = !incl && selected_exclusively(fields);
    char buf[512];
    for (size_t i = 0; i < arg->n; i++) {
        const char *k = arg->keys[i];
        const bson_value_t *v = &arg->vals[i];
        bool truthy = mk_js_truthy(v);
        if ((incl && !truthy) || (excl && truthy)) { /* takes a field back out */
            remove_user_fields(fields, user, k);
            continue;
        }
        if (incl || excl) { /* an opposite-sign alias of the same field goes */
            int n = snprintf(buf, sizeof buf, "%c%s", incl ? '-' : '+', k);
            if (n > 0 && (size_t)n < sizeof buf) mk_fields_del(fields, buf);
        }
        if (mk_fields_set(fields, k, v) != MK_OK || mk_fields_set(user, k, v) != MK_OK)
            return mk_error_nomem(err);
    }
    return MK_OK;
}

/* ---------- applyPaths ---------- */

typedef struct resolve {
    mk_fields_t f;
    char **keys; /* the keys after minus paths were taken out (Mongoose's `keys`) */
    size_t nkeys;
    int exclude; /* -1 undecided, 0 inclusive, 1 exclusive */
    char **selected, **excluded, **skip;
    size_t nselected, nexcluded, nskip;
    size_t capselected, capexcluded, capskip;
    bool nomem;
} resolve_t;

static void push(resolve_t *r, char ***list, size_t *n, size_t *cap, const char *s)
{
    if (r->nomem) return;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        char **g = realloc(*list, c * sizeof *g);
        if (!g) {
            r->nomem = true;
            return;
        }
        *list = g;
        *cap = c;
    }
    if (!((*list)[*n] = strdup(s))) {
        r->nomem = true;
        return;
    }
    (*n)++;
}

static bool listed(char **list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0) return true;
    return false;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) free(list[i]);
    free(list);
}

/* -1: no `select` option (or null), else its truthiness. */
static int path_selected(const mk_schema_path_t *p)
{
    bson_iter_t it;
    if (!p || !mk_schema_path_option(p, "select", &it)) return -1;
    const bson_value_t *v = bson_iter_value(&it);
    if (v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) return -1;
    return mk_js_truthy(v) ? 1 : 0;
}

/* Mongoose's analyzePath: true when the path went into `selected` or `excluded`. */
static bool analyze_path(resolve_t *r, const char *path, const mk_schema_path_t *type)
{
    int sel = path_selected(type);
    if (sel < 0) return false;
    const bson_value_t *cur = get(&r->f, path);
    if (sel == 0 && cur && mk_js_truthy(cur)) return false; /* the user includes it */
    if (r->exclude == 0 && sel == 1 && cur && cur->value_type != BSON_TYPE_NULL &&
        !mk_js_truthy(cur)) {
        mk_fields_del(&r->f, path); /* `-path` of a select: true path in an inclusion */
        return false;
    }
    size_t len = strlen(path);
    char *plus = malloc(len + 2);
    if (!plus) {
        r->nomem = true;
        return false;
    }
    plus[0] = '+';
    memcpy(plus + 1, path, len + 1);
    bool has_plus = mk_fields_find(&r->f, plus) >= 0;
    if (has_plus) { /* forced inclusion */
        mk_fields_del(&r->f, plus);
        free(plus);
        if (r->exclude == 0 && r->nkeys > 1 && !listed(r->keys, r->nkeys, path) &&
            set_int(&r->f, path, 1) != MK_OK)
            r->nomem = true;
        return false;
    }
    free(plus);
    /* a parent already excluded covers this path */
    for (size_t i = 0; i <= len; i++)
        if (path[i] == '.' || path[i] == '\0') {
            char *prefix = strndup(path, i);
            if (!prefix) {
                r->nomem = true;
                return false;
            }
            bool covered = listed(r->excluded, r->nexcluded, prefix);
            free(prefix);
            if (covered) return false;
        }
    if (sel)
        push(r, &r->selected, &r->nselected, &r->capselected, path);
    else
        push(r, &r->excluded, &r->nexcluded, &r->capexcluded, path);
    return true;
}

static void analyze_schema(resolve_t *r, const mk_schema_t *s, const char *prefix, int depth)
{
    if (depth > 100) return;
    size_t n = mk_schema_path_count(s);
    for (size_t i = 0; i < n && !r->nomem; i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        mk_schematype_t kind = mk_schema_path_kind(p);
        if (kind == MK_TYPE_NESTED) continue;
        const char *name = mk_schema_path_name(p);
        char *full = NULL;
        if (*prefix) {
            size_t a = strlen(prefix), b = strlen(name);
            if (!(full = malloc(a + b + 2))) {
                r->nomem = true;
                return;
            }
            memcpy(full, prefix, a);
            full[a] = '.';
            memcpy(full + a + 1, name, b + 1);
        }
        const char *path = full ? full : name;
        if (kind == MK_TYPE_MAP) {
            char *plus = malloc(strlen(path) + 2);
            if (!plus) {
                r->nomem = true;
                free(full);
                return;
            }
            plus[0] = '+';
            strcpy(plus + 1, path);
            if (path_selected(p) == 0 && mk_fields_find(&r->f, plus) < 0)
                push(r, &r->excluded, &r->nexcluded, &r->capexcluded, path);
            free(plus);
            free(full);
            continue;
        }
        bool added = analyze_path(r, path, p);
        if (!added && kind == MK_TYPE_ARRAY) analyze_path(r, path, mk_schema_path_element(p));
        if ((kind == MK_TYPE_SUBDOC || kind == MK_TYPE_DOCARRAY) && mk_schema_path_schema(p))
            analyze_schema(r, mk_schema_path_schema(p), path, depth + 1);
        free(full);
    }
}

/* A parent of path (or path) is included. */
static bool selected_inclusive(const mk_fields_t *f, const char *path)
{
    size_t len = strlen(path);
    char buf[1024];
    if (len >= sizeof buf) return false;
    for (size_t i = 0; i <= len; i++)
        if (path[i] == '.' || path[i] == '\0') {
            memcpy(buf, path, i);
            buf[i] = '\0';
            const bson_value_t *v = get(f, buf);
            if (v && mk_js_truthy(v)) return true;
        }
    return false;
}

/* A strict parent of path is excluded in f. */
static bool ancestor_excluded(const mk_fields_t *f, const char *path)
{
    size_t len = strlen(path);
    char buf[1024];
    if (len >= sizeof buf) return false;
    for (size_t i = 0; i < len; i++)
        if (path[i] == '.') {
            memcpy(buf, path, i);
            buf[i] = '\0';
            const bson_value_t *v = get(f, buf);
            if (v && v->value_type != BSON_TYPE_NULL && !mk_js_truthy(v)) return true;
        }
    return false;
}

static void resolve_free(resolve_t *r)
{
    mk_fields_destroy(&r->f);
    free_list(r->keys, r->nkeys);
    free_list(r->selected, r->nselected);
    free_list(r->excluded, r->nexcluded);
    free_list(r->skip, r->nskip);
}

int mk_projection_resolve(const mk_schema_t *s, const mk_fields_t *fields, bson_t **out,
                          mk_error_t *err)
{
    *out = NULL;
    resolve_t r = {.exclude = -1};
    if (mk_fields_copy(&r.f, fields) != MK_OK) return mk_error_nomem(err);
    size_t capkeys = 0;
    /* minus paths come out; "-_id" is plainly `_id: 0` */
    char **minus = NULL;
    size_t nminus = 0, capminus = 0;
    for (size_t i = 0; i < r.f.n && !r.nomem;) {
        if (r.f.keys[i][0] != '-') {
            i++;
            continue;
        }
        char *k = strdup(r.f.keys[i]);
        if (!k) {
            r.nomem = true;
            break;
        }
        mk_fields_del(&r.f, k);
        if (strcmp(k, "-_id") == 0) {
            if (set_int(&r.f, "_id", 0) != MK_OK) r.nomem = true;
        } else {
            push(&r, &minus, &nminus, &capminus, k + 1);
        }
        free(k);
    }
    for (size_t i = 0; i < r.f.n && !r.nomem; i++)
        push(&r, &r.keys, &r.nkeys, &capkeys, r.f.keys[i]);
    /* the first defining value decides, skipping `_id` when there are other keys */
    for (size_t i = 0; i < r.f.n; i++) {
        if (r.f.keys[i][0] == '+' || !is_defining(&r.f.vals[i])) continue;
        if (strcmp(r.f.keys[i], "_id") == 0 && r.f.n > 1) continue;
        r.exclude = mk_js_truthy(&r.f.vals[i]) ? 0 : 1;
        break;
    }
    /* `-path`: an exclusion, unless it takes a select: true path out of an inclusion */
    for (size_t i = 0; i < nminus && !r.nomem; i++) {
        int sel = path_selected(mk_schema_path(s, minus[i]));
        if (sel != 1 || r.exclude != 0) {
            if (set_int(&r.f, minus[i], 0) != MK_OK) r.nomem = true;
            r.exclude = 1;
        } else {
            push(&r, &r.skip, &r.nskip, &r.capskip, minus[i]);
        }
    }
    free_list(minus, nminus);
    if (!r.nomem) analyze_schema(&r, s, "", 0);
    if (!r.nomem) {
        if (r.exclude == 1) {
            /* a path under one the user excluded is covered by it (two would collide) */
            for (size_t i = 0; i < r.nexcluded && !r.nomem; i++)
                if (!ancestor_excluded(&r.f, r.excluded[i]) &&
                    set_int(&r.f, r.excluded[i], 0) != MK_OK)
                    r.nomem = true;
        } else if (r.exclude == 0) {
            if (path_selected(mk_schema_path(s, "_id")) == 0 && set_int(&r.f, "_id", 0) != MK_OK)
                r.nomem = true;
            for (size_t i = 0; i < r.nselected && !r.nomem; i++) {
                const char *p = r.selected[i];
                if (listed(r.skip, r.nskip, p) || selected_inclusive(&r.f, p)) continue;
                const bson_value_t *v = get(&r.f, p);
                if ((!v || !mk_js_truthy(v)) && set_int(&r.f, p, 1) != MK_OK) r.nomem = true;
            }
        } else {
            for (size_t i = 0; i < r.nexcluded && !r.nomem; i++) {
                const bson_value_t *v = get(&r.f, r.excluded[i]);
                if (v && v->value_type != BSON_TYPE_NULL) continue;
                if (set_int(&r.f, r.excluded[i], 0) != MK_OK) r.nomem = true;
            }
        }
    }
    /* `+path` left over (not a select: false path): nothing to send */
    for (size_t i = 0; i < r.f.n && !r.nomem;) {
        if (r.f.keys[i][0] == '+') {
            char *k = strdup(r.f.keys[i]);
            if (!k) {
                r.nomem = true;
                break;
            }
            mk_fields_del(&r.f, k);
            free(k);
        } else {
            i++;
        }
    }
    int rc = MK_OK;
    if (r.nomem) {
        rc = mk_error_nomem(err);
    } else if (r.f.n > 0) {
        bson_t *p = bson_new();
        if (!p || mk_fields_to_bson(&r.f, p) != MK_OK) {
            if (p) bson_destroy(p);
            rc = mk_error_nomem(err);
        } else {
            *out = p;
        }
    }
    resolve_free(&r);
    return rc;
}
