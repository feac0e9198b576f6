/* The registry of C functions attached to a schema, and the process-wide registry of named
 * functions that schema text refers to. */
#include "odm/schema_fns.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mk_schema_fns {
    mk_path_fn_t *pfns;
    size_t npfns, cappfns;
    mk_virtual_t *virt;
    size_t nvirt, capvirt;
    mk_named_fn_t *methods, *statics;
    size_t nmethods, capmethods, nstatics, capstatics;
    mk_hook_entry_t *hooks;
    size_t nhooks, caphooks;
    mk_transform_fn transform[2];
    void *transform_ud[2];
};

/* Grows an array of `size`-byte items to hold one more. */
static bool grow(void **items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : 4;
    void *g = realloc(*items, c * size);
    if (!g) return false;
    *items = g;
    *cap = c;
    return true;
}

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *ok = false;
    return d;
}

void mk_schema_fns_free(mk_schema_fns_t *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->npfns; i++) {
        free(f->pfns[i].path);
        free(f->pfns[i].message);
        free(f->pfns[i].type);
    }
    free(f->pfns);
    for (size_t i = 0; i < f->nvirt; i++) free(f->virt[i].name);
    free(f->virt);
    for (size_t i = 0; i < f->nmethods; i++) free(f->methods[i].name);
    free(f->methods);
    for (size_t i = 0; i < f->nstatics; i++) free(f->statics[i].name);
    free(f->statics);
    for (size_t i = 0; i < f->nhooks; i++) free(f->hooks[i].op);
    free(f->hooks);
    free(f);
}

static bool dup_named(mk_named_fn_t **dst, size_t *n, size_t *cap, const mk_named_fn_t *src,
                      size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (!grow((void **)dst, cap, *n, sizeof **dst)) return false;
        (*dst)[*n] = src[i];
        if (!((*dst)[*n].name = strdup(src[i].name))) return false;
        (*n)++;
    }
    return true;
}

mk_schema_fns_t *mk_schema_fns_dup(const mk_schema_fns_t *src)
{
    mk_schema_fns_t *f = calloc(1, sizeof *f);
    if (!f || !src) return f;
    bool ok = true;
    for (size_t i = 0; ok && i < src->npfns; i++) {
        if (!grow((void **)&f->pfns, &f->cappfns, f->npfns, sizeof *f->pfns)) {
            ok = false;
            break;
        }
        mk_path_fn_t *d = &f->pfns[f->npfns];
        *d = src->pfns[i];
        d->path = d->message = d->type = NULL;
        f->npfns++;
        d->path = dup_or_null(src->pfns[i].path, &ok);
        d->message = dup_or_null(src->pfns[i].message, &ok);
        d->type = dup_or_null(src->pfns[i].type, &ok);
    }
    for (size_t i = 0; ok && i < src->nvirt; i++) {
        if (!grow((void **)&f->virt, &f->capvirt, f->nvirt, sizeof *f->virt)) {
            ok = false;
            break;
        }
        f->virt[f->nvirt] = src->virt[i];
        ok = (f->virt[f->nvirt].name = strdup(src->virt[i].name)) != NULL;
        if (ok) f->nvirt++;
    }
    ok = ok && dup_named(&f->methods, &f->nmethods, &f->capmethods, src->methods, src->nmethods);
    ok = ok && dup_named(&f->statics, &f->nstatics, &f->capstatics, src->statics, src->nstatics);
    for (size_t i = 0; ok && i < src->nhooks; i++) {
        if (!grow((void **)&f->hooks, &f->caphooks, f->nhooks, sizeof *f->hooks)) {
            ok = false;
            break;
        }
        f->hooks[f->nhooks] = src->hooks[i];
        ok = (f->hooks[f->nhooks].op = strdup(src->hooks[i].op)) != NULL;
        if (ok) f->nhooks++;
    }
    memcpy(f->transform, src->transform, sizeof f->transform);
    memcpy(f->transform_ud, src->transform_ud, sizeof f->transform_ud);
    if (!ok) {
        mk_schema_fns_free(f);
        return NULL;
    }
    return f;
}

/* ---- path functions ---- */

static bool positional(const char *seg, size_t n)
{
    if (n == 1 && seg[0] == '$') return true;
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (seg[i] < '0' || seg[i] > '9') return false;
    return true;
}

/* Finds the schema that owns `dotted` and the path's name relative to it: "comments.text" on
 * a document array `comments` is "text" in the comments sub-schema. */
static int owner_of(mk_schema_t *s, const char *dotted, mk_schema_t **owner, const char **rel,
                    mk_error_t *err)
{
    for (;;) {
        if (mk_schema_path(s, dotted) == NULL)
            return mk_error_set(err, 0, "MongooseError", "Path `%s` is not in the schema", dotted);
        const char *dot = strchr(dotted, '.');
        bool descended = false;
        while (dot) {
            char *prefix = strndup(dotted, (size_t)(dot - dotted));
            if (!prefix) return mk_error_nomem(err);
            const mk_schema_path_t *p = mk_schema_path(s, prefix);
            free(prefix);
            mk_schematype_t t = p ? mk_schema_path_kind(p) : 0;
            if (t == MK_TYPE_SUBDOC || t == MK_TYPE_DOCARRAY) {
                const char *rest = dot + 1;
                const char *next = strchr(rest, '.');
                size_t n = next ? (size_t)(next - rest) : strlen(rest);
                if (t == MK_TYPE_DOCARRAY && positional(rest, n) && next) rest = next + 1;
                s = (mk_schema_t *)mk_schema_path_schema(p);
                dotted = rest;
                descended = true;
                break;
            }
            dot = strchr(dot + 1, '.');
        }
        if (!descended) {
            *owner = s;
            *rel = dotted;
            return MK_OK;
        }
    }
}

static int add_path_fn(mk_schema_t *s, const char *path, mk_path_fn_kind_t kind,
                       const mk_path_fn_t *tmpl, mk_error_t *err)
{
    mk_schema_t *owner = NULL;
    const char *rel = NULL;
    if (!s || !path) return mk_error_setc(err, MK_CODE_BAD_VALUE, "a schema and a path are needed");
    if (owner_of(s, path, &owner, &rel, err) != MK_OK) return MK_ERR;
    mk_schema_fns_t *f = mk_schema_fns_of(owner);
    if (!f || !grow((void **)&f->pfns, &f->cappfns, f->npfns, sizeof *f->pfns))
        return mk_error_nomem(err);
    mk_path_fn_t e = *tmpl;
    bool ok = true;
    e.kind = kind;
    e.path = dup_or_null(rel, &ok);
    e.message = dup_or_null(tmpl->message, &ok);
    e.type = dup_or_null(tmpl->type, &ok);
    if (!ok) {
        free(e.path);
        free(e.message);
        free(e.type);
        return mk_error_nomem(err);
    }
    f->pfns[f->npfns++] = e;
    return MK_OK;
}

int mk_schema_path_setter(mk_schema_t *s, const char *path, mk_setter_fn fn, void *ud,
                          mk_error_t *err)
{
    mk_path_fn_t t = {.fn.setter = fn, .ud = ud};
    return add_path_fn(s, path, MK_FN_SETTER, &t, err);
}

int mk_schema_path_getter(mk_schema_t *s, const char *path, mk_getter_fn fn, void *ud,
                          mk_error_t *err)
{
    mk_path_fn_t t = {.fn.getter = fn, .ud = ud};
    return add_path_fn(s, path, MK_FN_GETTER, &t, err);
}

int mk_schema_path_default(mk_schema_t *s, const char *path, mk_default_fn fn, void *ud,
                           mk_error_t *err)
{
    mk_path_fn_t t = {.fn.def = fn, .ud = ud};
    return add_path_fn(s, path, MK_FN_DEFAULT, &t, err);
}

int mk_schema_path_required(mk_schema_t *s, const char *path, mk_required_fn fn, void *ud,
                            const char *message, mk_error_t *err)
{
    mk_path_fn_t t = {.fn.required = fn, .ud = ud, .message = (char *)message};
    return add_path_fn(s, path, MK_FN_REQUIRED, &t, err);
}

int mk_schema_path_validator(mk_schema_t *s, const char *path, mk_validator_fn fn, void *ud,
                             const char *message, const char *type, mk_error_t *err)
{
    if (!fn) return mk_error_setc(err, MK_CODE_BAD_VALUE, "a validator function is needed");
    mk_path_fn_t t = {
        .fn.validator = fn, .ud = ud, .message = (char *)message, .type = (char *)type};
    return add_path_fn(s, path, MK_FN_VALIDATOR, &t, err);
}

const mk_path_fn_t *mk_schema_path_fn_next(const mk_schema_t *s, const char *path,
                                           mk_path_fn_kind_t kind, size_t *iter)
{
    const mk_schema_fns_t *f = s ? mk_schema_fns_peek(s) : NULL;
    if (!f) return NULL;
    for (size_t i = *iter; i < f->npfns; i++) {
        if (f->pfns[i].kind == kind && strcmp(f->pfns[i].path, path) == 0) {
            *iter = i + 1;
            return &f->pfns[i];
        }
    }
    *iter = f->npfns;
    return NULL;
}

bool mk_schema_path_has_fn(const mk_schema_t *s, const char *path, mk_path_fn_kind_t kind)
{
    size_t it = 0;
    return mk_schema_path_fn_next(s, path, kind, &it) != NULL;
}

/* ---- virtuals, methods, statics, transforms ---- */

int mk_schema_virtual(mk_schema_t *s, const char *name, mk_virtual_get_fn get,
                      mk_virtual_set_fn set, void *ud, mk_error_t *err)
{
    if (!s || !name || !*name)
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "a virtual needs a name");
    if (mk_schema_path(s, name))
        return mk_error_set(err, 0, "MongooseError",
                            "Virtual path \"%s\" conflicts with a real path in the schema", name);
    mk_schema_fns_t *f = mk_schema_fns_of(s);
    if (!f) return mk_error_nomem(err);
    for (size_t i = 0; i < f->nvirt; i++) {
        if (strcmp(f->virt[i].name, name) == 0) { /* schema.virtual(name) again adds to it */
            if (get) f->virt[i].get = get;
            if (set) f->virt[i].set = set;
            f->virt[i].ud = ud;
            return MK_OK;
        }
    }
    if (!grow((void **)&f->virt, &f->capvirt, f->nvirt, sizeof *f->virt))
        return mk_error_nomem(err);
    char *n = strdup(name);
    if (!n) return mk_error_nomem(err);
    f->virt[f->nvirt++] = (mk_virtual_t){.name = n, .get = get, .set = set, .ud = ud};
    return MK_OK;
}

size_t mk_schema_virtual_count(const mk_schema_t *s)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    return f ? f->nvirt : 0;
}

const mk_virtual_t *mk_schema_virtual_at(const mk_schema_t *s, size_t i)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    return f && i < f->nvirt ? &f->virt[i] : NULL;
}

const mk_virtual_t *mk_schema_virtual_find(const mk_schema_t *s, const char *name)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    for (size_t i = 0; f && i < f->nvirt; i++)
        if (strcmp(f->virt[i].name, name) == 0) return &f->virt[i];
    return NULL;
}

static int add_named(mk_named_fn_t **items, size_t *n, size_t *cap, const char *name,
                     mk_named_fn_t e, mk_error_t *err)
{
    if (!name || !*name) return mk_error_setc(err, MK_CODE_BAD_VALUE, "a name is needed");
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*items)[i].name, name) == 0) { /* redefining replaces */
            (*items)[i].fn = e.fn;
            (*items)[i].ud = e.ud;
            return MK_OK;
        }
    }
    if (!grow((void **)items, cap, *n, sizeof **items)) return mk_error_nomem(err);
    if (!(e.name = strdup(name))) return mk_error_nomem(err);
    (*items)[(*n)++] = e;
    return MK_OK;
}

int mk_schema_method(mk_schema_t *s, const char *name, mk_method_fn fn, void *ud, mk_error_t *err)
{
    mk_schema_fns_t *f = s ? mk_schema_fns_of(s) : NULL;
    if (!f) return s ? mk_error_nomem(err) : mk_error_setc(err, MK_CODE_BAD_VALUE, "no schema");
    return add_named(&f->methods, &f->nmethods, &f->capmethods, name,
                     (mk_named_fn_t){.fn.method = fn, .ud = ud}, err);
}

int mk_schema_static(mk_schema_t *s, const char *name, mk_static_fn fn, void *ud, mk_error_t *err)
{
    mk_schema_fns_t *f = s ? mk_schema_fns_of(s) : NULL;
    if (!f) return s ? mk_error_nomem(err) : mk_error_setc(err, MK_CODE_BAD_VALUE, "no schema");
    return add_named(&f->statics, &f->nstatics, &f->capstatics, name,
                     (mk_named_fn_t){.fn.stat = fn, .ud = ud}, err);
}

const mk_named_fn_t *mk_schema_method_find(const mk_schema_t *s, const char *name)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    for (size_t i = 0; f && i < f->nmethods; i++)
        if (strcmp(f->methods[i].name, name) == 0) return &f->methods[i];
    return NULL;
}

const mk_named_fn_t *mk_schema_static_find(const mk_schema_t *s, const char *name)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    for (size_t i = 0; f && i < f->nstatics; i++)
        if (strcmp(f->statics[i].name, name) == 0) return &f->statics[i];
    return NULL;
}

int mk_schema_transform(mk_schema_t *s, const char *which, mk_transform_fn fn, void *ud,
                        mk_error_t *err)
{
    int w;
    if (which && strcmp(which, "toObject") == 0)
        w = 0;
    else if (which && strcmp(which, "toJSON") == 0)
        w = 1;
    else
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "transform: expected \"toObject\" or \"toJSON\", got \"%s\"",
                             which ? which : "(null)");
    mk_schema_fns_t *f = mk_schema_fns_of(s);
    if (!f) return mk_error_nomem(err);
    f->transform[w] = fn;
    f->transform_ud[w] = ud;
    return MK_OK;
}

bool mk_schema_transform_get(const mk_schema_t *s, int which, mk_transform_fn *fn, void **ud)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    if (!f || which < 0 || which > 1 || !f->transform[which]) return false;
    *fn = f->transform[which];
    *ud = f->transform_ud[which];
    return true;
}

int mk_schema_plugin(mk_schema_t *s, mk_plugin_fn fn, void *opts, mk_error_t *err)
{
    if (!s || !fn) return mk_error_setc(err, MK_CODE_BAD_VALUE, "a schema and a plugin are needed");
    return fn(s, opts, err);
}

/* ---- middleware ---- */

static const char *const hook_ops[] = {
    "validate", "save", "init", "deleteOne", "updateOne", "insertMany",
    /* query middleware */
    "countDocuments", "deleteMany", "distinct", "estimatedDocumentCount", "find", "findOne",
    "findOneAndDelete", "findOneAndReplace", "findOneAndUpdate", "replaceOne", "updateMany",
    "aggregate"};

static bool known_op(const char *op, size_t n)
{
    for (size_t i = 0; i < sizeof hook_ops / sizeof hook_ops[0]; i++)
        if (strlen(hook_ops[i]) == n && memcmp(hook_ops[i], op, n) == 0) return true;
    return false;
}

static int add_hook(mk_schema_t *s, const char *ops, mk_hook_when_t when, unsigned flags,
                    mk_hook_fn fn, mk_error_hook_fn efn, mk_error_t *err, void *ud)
{
    if (!s || !ops || (!fn && !efn))
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "a schema, an op and a function are needed");
    /* check every name first, so that a bad list registers nothing */
    for (const char *p = ops; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, " ,");
        if (n && !known_op(p, n))
            return mk_error_set(err, 0, "MongooseError", "Unknown middleware `%.*s`", (int)n, p);
        p += n;
    }
    mk_schema_fns_t *f = mk_schema_fns_of(s);
    if (!f) return mk_error_nomem(err);
    for (const char *p = ops; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, " ,");
        if (n) {
            if (!grow((void **)&f->hooks, &f->caphooks, f->nhooks, sizeof *f->hooks))
                return mk_error_nomem(err);
            char *op = strndup(p, n);
            if (!op) return mk_error_nomem(err);
            f->hooks[f->nhooks++] = (mk_hook_entry_t){
                .op = op, .when = when, .flags = flags, .fn = fn, .efn = efn, .ud = ud};
        }
        p += n;
    }
    return MK_OK;
}

int mk_schema_pre(mk_schema_t *s, const char *ops, mk_hook_fn fn, void *ud, mk_error_t *err)
{
    return add_hook(s, ops, MK_HOOK_PRE, 0, fn, NULL, err, ud);
}

int mk_schema_post(mk_schema_t *s, const char *ops, mk_hook_fn fn, void *ud, mk_error_t *err)
{
    return add_hook(s, ops, MK_HOOK_POST, 0, fn, NULL, err, ud);
}

int mk_schema_post_error(mk_schema_t *s, const char *ops, mk_error_hook_fn fn, void *ud,
                         mk_error_t *err)
{
    return add_hook(s, ops, MK_HOOK_POST_ERROR, 0, NULL, fn, err, ud);
}

int mk_schema_pre_ex(mk_schema_t *s, const char *ops, unsigned flags, mk_hook_fn fn, void *ud,
                     mk_error_t *err)
{
    return add_hook(s, ops, MK_HOOK_PRE, flags, fn, NULL, err, ud);
}

int mk_schema_post_ex(mk_schema_t *s, const char *ops, unsigned flags, mk_hook_fn fn, void *ud,
                      mk_error_t *err)
{
    return add_hook(s, ops, MK_HOOK_POST, flags, fn, NULL, err, ud);
}

int mk_schema_post_error_ex(mk_schema_t *s, const char *ops, unsigned flags, mk_error_hook_fn fn,
                            void *ud, mk_error_t *err)
{
    return add_hook(s, ops, MK_HOOK_POST_ERROR, flags, NULL, fn, err, ud);
}

size_t mk_schema_hook_count(const mk_schema_t *s)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    return f ? f->nhooks : 0;
}

const mk_hook_entry_t *mk_schema_hook_at(const mk_schema_t *s, size_t i)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    return f && i < f->nhooks ? &f->hooks[i] : NULL;
}

/* ---- named functions: a process-wide registry ---- */

typedef struct named {
    mk_path_fn_kind_t kind;
    char *name;
    mk_path_fn_t fn;
} named_t;

static pthread_mutex_t named_lock = PTHREAD_MUTEX_INITIALIZER;
static named_t *named_items;
static size_t named_n, named_cap;

static int register_named(mk_path_fn_kind_t kind, const char *name, const mk_path_fn_t *fn)
{
    if (!name || !*name) return MK_ERR;
    int rc = MK_OK;
    pthread_mutex_lock(&named_lock);
    size_t i;
    for (i = 0; i < named_n; i++)
        if (named_items[i].kind == kind && strcmp(named_items[i].name, name) == 0) break;
    char *message = NULL;
    if (fn->message && !(message = strdup(fn->message))) {
        rc = MK_ENOMEM;
    } else if (i < named_n) {
        free(named_items[i].fn.message);
        named_items[i].fn = *fn;
        named_items[i].fn.message = message;
    } else if (!grow((void **)&named_items, &named_cap, named_n, sizeof *named_items)) {
        free(message);
        rc = MK_ENOMEM;
    } else {
        char *n = strdup(name);
        if (!n) {
            free(message);
            rc = MK_ENOMEM;
        } else {
            named_items[named_n] = (named_t){.kind = kind, .name = n, .fn = *fn};
            named_items[named_n++].fn.message = message;
        }
    }
    pthread_mutex_unlock(&named_lock);
    return rc;
}

int mk_register_setter(const char *name, mk_setter_fn fn, void *ud)
{
    mk_path_fn_t f = {.fn.setter = fn, .ud = ud};
    return register_named(MK_FN_SETTER, name, &f);
}

int mk_register_getter(const char *name, mk_getter_fn fn, void *ud)
{
    mk_path_fn_t f = {.fn.getter = fn, .ud = ud};
    return register_named(MK_FN_GETTER, name, &f);
}

int mk_register_default(const char *name, mk_default_fn fn, void *ud)
{
    mk_path_fn_t f = {.fn.def = fn, .ud = ud};
    return register_named(MK_FN_DEFAULT, name, &f);
}

int mk_register_validator(const char *name, mk_validator_fn fn, void *ud, const char *message)
{
    mk_path_fn_t f = {.fn.validator = fn, .ud = ud, .message = (char *)message};
    return register_named(MK_FN_VALIDATOR, name, &f);
}

int mk_register_required(const char *name, mk_required_fn fn, void *ud)
{
    mk_path_fn_t f = {.fn.required = fn, .ud = ud};
    return register_named(MK_FN_REQUIRED, name, &f);
}

/* Looks a name up; *out gets a copy of the entry (message borrowed under the lock's
 * protection is duplicated by the caller through add_path_fn). */
static bool lookup_named(mk_path_fn_kind_t kind, const char *name, mk_path_fn_t *out,
                         char **message)
{
    bool found = false;
    *message = NULL;
    pthread_mutex_lock(&named_lock);
    for (size_t i = 0; i < named_n; i++) {
        if (named_items[i].kind == kind && strcmp(named_items[i].name, name) == 0) {
            *out = named_items[i].fn;
            if (named_items[i].fn.message) *message = strdup(named_items[i].fn.message);
            out->message = NULL;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&named_lock);
    return found;
}

static const char *kind_word(mk_path_fn_kind_t k)
{
    switch (k) {
    case MK_FN_SETTER:
        return "setter";
    case MK_FN_GETTER:
        return "getter";
    case MK_FN_DEFAULT:
        return "default";
    case MK_FN_VALIDATOR:
        return "validator";
    case MK_FN_REQUIRED:
        return "required function";
    }
    return "function";
}

/* Registers the named function `name` of `kind` for `path` (message: a template overriding
 * the registered one, may be NULL). */
static int resolve_one(mk_schema_t *s, const char *path, mk_path_fn_kind_t kind, const char *name,
                       const char *message, mk_error_t *err)
{
    mk_path_fn_t fn;
    char *registered = NULL;
    if (!lookup_named(kind, name, &fn, &registered))
        return mk_error_set(
            err, 0, "MongooseError", "%s `%s` at path `%s` is not registered (mk_register_%s)",
            kind_word(kind), name, path, kind == MK_FN_REQUIRED ? "required" : kind_word(kind));
    fn.message = (char *)(message ? message : registered);
    int rc = add_path_fn(s, path, kind, &fn, err);
    free(registered);
    return rc;
}

static int resolve_validate(mk_schema_t *s, const char *path, bson_iter_t *it, mk_error_t *err)
{
    if (BSON_ITER_HOLDS_UTF8(it))
        return resolve_one(s, path, MK_FN_VALIDATOR, bson_iter_utf8(it, NULL), NULL, err);
    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_t c, v, m;
        if (!bson_iter_recurse(it, &c)) return MK_OK;
        bson_iter_t c2 = c;
        if (!bson_iter_find(&c, "validator") || !BSON_ITER_HOLDS_UTF8(&c))
            return mk_error_set(err, 0, "MongooseError",
                                "validate option at path `%s`: `validator` must name a "
                                "registered validator",
                                path);
        v = c;
        const char *msg = NULL;
        if (bson_iter_find(&c2, "message") && BSON_ITER_HOLDS_UTF8(&c2)) {
            m = c2;
            msg = bson_iter_utf8(&m, NULL);
        }
        return resolve_one(s, path, MK_FN_VALIDATOR, bson_iter_utf8(&v, NULL), msg, err);
    }
    if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_t c;
        if (!bson_iter_recurse(it, &c)) return MK_OK;
        while (bson_iter_next(&c))
            if (resolve_validate(s, path, &c, err) != MK_OK) return MK_ERR;
        return MK_OK;
    }
    return mk_error_set(err, 0, "MongooseError",
                        "validate option at path `%s`: expected a validator name, a list or "
                        "{ validator, message }",
                        path);
}

static int resolve_path(mk_schema_t *s, const mk_schema_path_t *p, mk_error_t *err)
{
    const char *name = mk_schema_path_name(p);
    bson_iter_t it;
    if (mk_schema_path_option(p, "validate", &it) && resolve_validate(s, name, &it, err) != MK_OK)
        return MK_ERR;
    if (mk_schema_path_option(p, "set", &it) && BSON_ITER_HOLDS_UTF8(&it) &&
        resolve_one(s, name, MK_FN_SETTER, bson_iter_utf8(&it, NULL), NULL, err) != MK_OK)
        return MK_ERR;
    if (mk_schema_path_option(p, "get", &it) && BSON_ITER_HOLDS_UTF8(&it) &&
        resolve_one(s, name, MK_FN_GETTER, bson_iter_utf8(&it, NULL), NULL, err) != MK_OK)
        return MK_ERR;
    if (mk_schema_path_option(p, "required", &it) && BSON_ITER_HOLDS_UTF8(&it) &&
        resolve_one(s, name, MK_FN_REQUIRED, bson_iter_utf8(&it, NULL), NULL, err) != MK_OK)
        return MK_ERR;
    const mk_schema_path_t *elem = mk_schema_path_element(p);
    if (elem && mk_schema_path_kind(p) == MK_TYPE_ARRAY && resolve_path(s, elem, err) != MK_OK)
        return MK_ERR;
    const mk_schema_t *child = mk_schema_path_schema(p);
    if (child && mk_schema_resolve_named((mk_schema_t *)child, err) != MK_OK) return MK_ERR;
    return MK_OK;
}

/* Named validators are registered before the ones added in C, as the `validate` option comes
 * first in Mongoose (it is applied when the path is created). */
static void move_new_first(mk_schema_t *s, size_t before)
{
    mk_schema_fns_t *f = (mk_schema_fns_t *)mk_schema_fns_peek(s);
    if (!f || f->npfns <= before || before == 0) return;
    size_t added = f->npfns - before;
    mk_path_fn_t *tmp = malloc(added * sizeof *tmp);
    if (!tmp) return; /* keeps registration order: still every function, only later */
    memcpy(tmp, f->pfns + before, added * sizeof *tmp);
    memmove(f->pfns + added, f->pfns, before * sizeof *tmp);
    memcpy(f->pfns, tmp, added * sizeof *tmp);
    free(tmp);
}

int mk_schema_resolve_named(mk_schema_t *s, mk_error_t *err)
{
    const mk_schema_fns_t *f = mk_schema_fns_peek(s);
    size_t before = f ? f->npfns : 0;
    for (size_t i = 0; i < mk_schema_path_count(s); i++)
        if (resolve_path(s, mk_schema_path_at(s, i), err) != MK_OK) return MK_ERR;
    move_new_first(s, before);
    return MK_OK;
}
