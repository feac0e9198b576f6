/* Running a query (Mongoose 8's Query#exec): pre middleware, casting of the filter and the
 * update through the schema, the operation through the backend, the result (hydrated
 * documents, lean BSON, counts), orFail, post middleware, and error-handling middleware for
 * whatever failed on the way.
 *
 * Every execution starts from the query as built: the raw filter and update are cast again,
 * and what middleware changed during one execution is undone at its end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "odm/cast_query.h"
#include "odm/doc_internal.h"
#include "odm/doc_validate.h"
#include "odm/query_internal.h"
#include "odm/schema_fns.h"
#include "odm/setters.h"
#include "odm/validate.h"

int mk_query_server_error(mk_error_t *err, int rc)
{
    if (rc != MK_ENOMEM && err && err->code != 0)
        snprintf(err->kind, sizeof err->kind, "%s", "MongoServerError");
    return rc;
}

/* One execution's state. The cast filter and update are heap documents because post
 * middleware reads them (getFilter / getUpdate) after the operation returned. */
typedef struct run {
    mk_query_t *q;
    mk_model_t *m;
    mk_backend_t *be;
    mk_backend_session_t *bs;
    const char *db, *coll;
    bson_t *filter; /* cast */
    bson_t *update; /* cast, or the replacement */
    mk_query_result_t *r;
    mk_error_t *err;
} run_t;

static void run_init(run_t *x, mk_query_t *q, mk_query_result_t *r, mk_error_t *err)
{
    memset(x, 0, sizeof *x);
    x->q = q;
    x->m = q->model;
    x->be = q->model->conn->be;
    x->bs = mk_client_session_backend(q->session);
    x->db = q->model->conn->db;
    x->coll = q->model->collection;
    x->r = r;
    x->err = err;
}

static void run_done(run_t *x)
{
    x->q->cast_filter = NULL;
    x->q->cast_update = NULL;
    if (x->filter) bson_destroy(x->filter);
    if (x->update) bson_destroy(x->update);
    x->filter = x->update = NULL;
}

/* ---------- options ---------- */

/* The option `key` (NULL when unset or null), viewed through the caller's iterator, which must
 * outlive the use of the value. */
static const bson_value_t *opt(const mk_query_t *q, const char *key, bson_iter_t *it)
{
    if (!bson_iter_init_find(it, q->options, key)) return NULL;
    const bson_value_t *v = bson_iter_value(it);
    return v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED ? NULL : v;
}

static bool opt_true(const mk_query_t *q, const char *key)
{
    bson_iter_t opt_it;
    const bson_value_t *v = opt(q, key, &opt_it);
    return v && mk_js_truthy(v);
}

/* strict / strictQuery: true, false or 'throw'. */
static bool opt_strict(const mk_query_t *q, const char *key, mk_strict_t *out)
{
    bson_iter_t opt_it;
    const bson_value_t *v = opt(q, key, &opt_it);
    if (!v) return false;
    if (v->value_type == BSON_TYPE_UTF8 && strcmp(v->value.v_utf8.str, "throw") == 0)
        *out = MK_STRICT_THROW;
    else
        *out = mk_js_truthy(v) ? MK_STRICT_TRUE : MK_STRICT_FALSE;
    return true;
}

/* Copies the listed options that are set into opts. */
static int copy_opts(const mk_query_t *q, bson_t *opts, const char *const *keys, mk_error_t *err)
{
    for (; *keys; keys++) {
        bson_iter_t opt_it;
        const bson_value_t *v = opt(q, *keys, &opt_it);
        if (v && !bson_append_value(opts, *keys, -1, v)) return mk_error_nomem(err);
    }
    return MK_OK;
}

/* new / returnDocument: whether findOneAndUpdate / Replace return the document after the
 * change (`new` wins when both are given, as Mongoose converts it last). */
static bool return_after(const mk_query_t *q)
{
    bson_iter_t new_it;
    const bson_value_t *n = opt(q, "new", &new_it);
    if (n) return mk_js_truthy(n);
    bson_iter_t rd_it;
    const bson_value_t *rd = opt(q, "returnDocument", &rd_it);
    return rd && rd->value_type == BSON_TYPE_UTF8 && strcmp(rd->value.v_utf8.str, "after") == 0;
}

/* ---------- casting ---------- */

static int cast_filter(run_t *x, bool upsert)
{
    mk_query_t *q = x->q;
    mk_cast_filter_opts_t o = {.upsert = upsert, .sanitize_filter = q->sanitize_filter};
    o.has_strict_query = opt_strict(q, "strictQuery", &o.strict_query);
    o.has_strict = opt_strict(q, "strict", &o.strict);
    mk_fn_ctx_t ctx = {.query = q};
    o.ctx = &ctx;
    if (!(x->filter = bson_new())) return mk_error_nomem(x->err);
    int rc = mk_cast_filter(x->m->schema, x->m->name, q->filter, &o, x->filter, x->err);
    if (rc == MK_OK) q->cast_filter = x->filter;
    return rc;
}

static bool timestamps_on(const mk_query_t *q)
{
    return q->timestamps != 0;
}

static int cast_update(run_t *x, bool upsert)
{
    mk_query_t *q = x->q;
    const mk_schema_options_t *so = mk_schema_options(x->m->schema);
    mk_cast_update_opts_t o = {.upsert = upsert, .now = mk_odm_now_ms()};
    o.has_strict = opt_strict(q, "strict", &o.strict);
    if (timestamps_on(q)) {
        o.created_at = so->created_at;
        o.updated_at = so->updated_at;
    }
    mk_fn_ctx_t ctx = {.query = q};
    bson_t empty = BSON_INITIALIZER;
    if (!(x->update = bson_new())) return mk_error_nomem(x->err);
    int rc = mk_cast_update(x->m->schema, x->m->name, q->update ? q->update : &empty, &o, &ctx,
                            x->update, x->err);
    if (rc == MK_OK) q->cast_update = x->update;
    return rc;
}

/* ---------- setDefaultsOnInsert ---------- */

typedef struct paths {
    char **v;
    size_t n, cap;
} paths_t;

static int paths_add(paths_t *p, const char *prefix, const char *key)
{
    if (p->n == p->cap) {
        size_t c = p->cap ? p->cap * 2 : 16;
        char **g = realloc(p->v, c * sizeof *g);
        if (!g) return MK_ENOMEM;
        p->v = g;
        p->cap = c;
    }
    size_t a = prefix ? strlen(prefix) : 0, b = strlen(key);
    char *s = malloc(a + b + 2);
    if (!s) return MK_ENOMEM;
    if (a) {
        memcpy(s, prefix, a);
        s[a] = '.';
        memcpy(s + a + 1, key, b + 1);
    } else {
        memcpy(s, key, b + 1);
    }
    p->v[p->n++] = s;
    return MK_OK;
}

static void paths_free(paths_t *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->v[i]);
    free(p->v);
}

/* Mongoose's modifiedPaths: every key of an update operand and, below objects and arrays,
 * every nested key. */
static int collect_modified(paths_t *p, const bson_t *doc, const char *prefix, int depth)
{
    bson_iter_t it;
    if (depth > 100 || !bson_iter_init(&it, doc)) return MK_OK;
    while (bson_iter_next(&it)) {
        if (paths_add(p, prefix, bson_iter_key(&it)) != MK_OK) return MK_ENOMEM;
        const bson_value_t *v = bson_iter_value(&it);
        bson_t child;
        if ((v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) &&
            bson_init_static(&child, v->value.v_doc.data, v->value.v_doc.data_len)) {
            char *path = strdup(p->v[p->n - 1]);
            if (!path) return MK_ENOMEM;
            int rc = collect_modified(p, &child, path, depth + 1);
            free(path);
            if (rc != MK_OK) return rc;
        }
    }
    return MK_OK;
}

/* The path, a parent of it or a child of it was modified. */
static bool is_modified(const paths_t *p, const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < p->n; i++) {
        const char *m = p->v[i];
        size_t k = strlen(m);
        if (k == n && memcmp(m, path, n) == 0) return true;
        if (k < n && memcmp(m, path, k) == 0 && path[k] == '.') return true;
        if (k > n && memcmp(m, path, n) == 0 && m[n] == '.') return true;
    }
    return false;
}

/* The default of a top-level schema path, cast (getDefault(null, true)); *has false when the
 * path has none. */
static int path_default(run_t *x, const mk_schema_path_t *p, bool *has, bson_value_t *out)
{
    const mk_schema_t *s = x->m->schema;
    const char *name = mk_schema_path_name(p);
    mk_schematype_t kind = mk_schema_path_kind(p);
    *has = false;
    size_t it = 0;
    const mk_path_fn_t *fn = mk_schema_path_fn_next(s, name, MK_FN_DEFAULT, &it);
    mk_fn_ctx_t ctx = {.path = name};
    bson_value_t raw = {0};
    bool own = false;
    bson_iter_t o;
    static const uint8_t empty_array[5] = {5, 0, 0, 0, 0};
    if (fn) {
        int rc = fn->fn.def(&ctx, &raw, fn->ud, x->err);
        if (rc != MK_OK) return rc;
        own = true;
    } else if (mk_schema_path_option(p, "default", &o)) {
        if (mk_schema_path_default_is_now(p)) {
            raw.value_type = BSON_TYPE_DATE_TIME;
            raw.value.v_datetime = mk_odm_now_ms();
        } else {
            raw = *bson_iter_value(&o);
        }
    } else if (kind == MK_TYPE_ARRAY || kind == MK_TYPE_DOCARRAY) {
        raw.value_type = BSON_TYPE_ARRAY;
        raw.value.v_doc.data = (uint8_t *)empty_array;
        raw.value.v_doc.data_len = 5;
    } else {
        return MK_OK;
    }
    int rc = MK_OK;
    if (raw.value_type != BSON_TYPE_UNDEFINED && raw.value_type != BSON_TYPE_EOD) {
        mk_setters_cast_opts_t so = {.model = x->m->name, .add_ids = true};
        rc = mk_setters_cast(s, p, &ctx, &raw, &so, out, x->err);
        if (rc == MK_OK) {
            if (out->value_type == BSON_TYPE_UNDEFINED)
                bson_value_destroy(out);
            else
                *has = true;
        }
    }
    if (own) bson_value_destroy(&raw);
    return rc;
}

/* Mongoose's setDefaultsOnInsert (on by default since Mongoose 6): with upsert, the defaults of
 * paths that neither the update nor the filter's equality conditions set go in $setOnInsert. */
static int defaults_on_insert(run_t *x, bool upsert)
{
    if (!upsert || x->q->set_defaults_on_insert == 0) return MK_OK;
    paths_t mod = {0};
    int rc = MK_OK;
    bson_iter_t it;
    if (bson_iter_init(&it, x->update))
        while (rc == MK_OK && bson_iter_next(&it)) {
            bson_t operand;
            const bson_value_t *v = bson_iter_value(&it);
            if (bson_iter_key(&it)[0] == '$' && v->value_type == BSON_TYPE_DOCUMENT &&
                bson_init_static(&operand, v->value.v_doc.data, v->value.v_doc.data_len))
                rc = collect_modified(&mod, &operand, NULL, 0);
        }
    /* equality conditions of the filter become fields of the inserted document */
    if (rc == MK_OK && bson_iter_init(&it, x->filter))
        while (rc == MK_OK && bson_iter_next(&it)) {
            const bson_value_t *v = bson_iter_value(&it);
            bson_t cond;
            bson_iter_t c;
            bool has_op = false;
            if (v->value_type == BSON_TYPE_DOCUMENT &&
                bson_init_static(&cond, v->value.v_doc.data, v->value.v_doc.data_len) &&
                bson_iter_init(&c, &cond))
                while (!has_op && bson_iter_next(&c)) has_op = bson_iter_key(&c)[0] == '$';
            if (!has_op) rc = paths_add(&mod, NULL, bson_iter_key(&it));
        }
    bson_t extra = BSON_INITIALIZER;
    const mk_schema_t *s = x->m->schema;
    size_t n = mk_schema_path_count(s);
    for (size_t i = 0; i < n && rc == MK_OK; i++) {
        const mk_schema_path_t *p = mk_schema_path_at(s, i);
        if (mk_schema_path_kind(p) == MK_TYPE_NESTED || is_modified(&mod, mk_schema_path_name(p)))
            continue;
        bool has = false;
        bson_value_t dv;
        rc = path_default(x, p, &has, &dv);
        if (rc == MK_OK && has) {
            if (!bson_append_value(&extra, mk_schema_path_name(p), -1, &dv))
                rc = mk_error_nomem(x->err);
            bson_value_destroy(&dv);
        }
    }
    paths_free(&mod);
    if (rc == MK_ENOMEM) mk_error_nomem(x->err);
    if (rc != MK_OK || bson_empty(&extra)) {
        bson_destroy(&extra);
        return rc;
    }
    /* the update with the defaults added to (or as) its $setOnInsert */
    bson_t *out = bson_new();
    bool done = false, ok = out != NULL;
    if (ok && bson_iter_init(&it, x->update))
        while (ok && bson_iter_next(&it)) {
            const bson_value_t *v = bson_iter_value(&it);
            bson_t operand, child;
            if (strcmp(bson_iter_key(&it), "$setOnInsert") == 0 &&
                v->value_type == BSON_TYPE_DOCUMENT &&
                bson_init_static(&operand, v->value.v_doc.data, v->value.v_doc.data_len)) {
                done = true;
                ok = bson_append_document_begin(out, "$setOnInsert", -1, &child) &&
                     bson_concat(&child, &operand) && bson_concat(&child, &extra) &&
                     bson_append_document_end(out, &child);
            } else {
                ok = bson_append_iter(out, NULL, 0, &it);
            }
        }
    if (ok && !done) ok = BSON_APPEND_DOCUMENT(out, "$setOnInsert", &extra);
    bson_destroy(&extra);
    if (!ok) {
        if (out) bson_destroy(out);
        return mk_error_nomem(x->err);
    }
    bson_destroy(x->update);
    x->update = out;
    x->q->cast_update = out;
    return MK_OK;
}

/* runValidators: update validators over the cast update; their failures become one
 * ValidationError "Validation failed: path: message" (no model name, as in Mongoose). */
static int run_update_validators(run_t *x, bool upsert)
{
    mk_query_t *q = x->q;
    if (!opt_true(q, "runValidators")) return MK_OK;
    mk_fn_ctx_t ctx = {0};
    bson_iter_t opt_it;
    const bson_value_t *c = opt(q, "context", &opt_it);
    if (c && c->value_type == BSON_TYPE_UTF8 && strcmp(c->value.v_utf8.str, "query") == 0)
        ctx.query = q;
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    int rc = mk_validate_update(x->m->schema, x->update, upsert, &ctx, &errs);
    if (rc != MK_OK) {
        if (x->err) *x->err = errs.error;
        if (rc == MK_ENOMEM) mk_error_nomem(x->err);
    } else if (errs.count > 0) {
        rc = mk_verrors_to_error(&errs, NULL, x->err);
    }
    mk_verrors_destroy(&errs);
    return rc;
}

/* A replacement (replaceOne / findOneAndReplace) is built as Mongoose builds it: a new
 * document of the model (cast, defaults applied, no automatic _id), validated as a document
 * with runValidators (its CastErrors fail it either way), timestamps set. */
static int build_replacement(run_t *x)
{
    mk_query_t *q = x->q;
    bson_t empty = BSON_INITIALIZER;
    const bson_t *raw = q->update ? q->update : &empty;
    bson_iter_t it;
    if (bson_iter_init(&it, raw) && bson_iter_next(&it) && bson_iter_key(&it)[0] == '$')
        return mk_error_set(x->err, 0, "MongoInvalidArgumentError",
                            "Replacement document must not contain atomic operators");
    bool has_id = bson_has_field(raw, "_id");
    mk_doc_t *d = mk_doc_from_bson(x->m, raw, x->err);
    if (!d) return MK_ERR;
    d->session = q->session;
    int rc = MK_OK;
    if (opt_true(q, "runValidators"))
        rc = mk_doc_validate(d, x->err);
    else if (d->cast_errors && d->cast_errors->count > 0)
        rc = mk_verrors_to_error(d->cast_errors, x->m->name, x->err);
    const bson_t *built = rc == MK_OK ? mk_doc_bson(d, x->err) : NULL;
    if (rc == MK_OK && !built) rc = MK_ERR;
    const mk_schema_options_t *so = mk_schema_options(x->m->schema);
    const char *created = timestamps_on(q) ? so->created_at : NULL;
    const char *updated = timestamps_on(q) ? so->updated_at : NULL;
    if (rc == MK_OK) {
        int64_t now = mk_odm_now_ms();
        bool ok = (x->update = bson_new()) != NULL, seen_updated = false, seen_created = false;
        if (ok && bson_iter_init(&it, built))
            while (ok && bson_iter_next(&it)) {
                const char *k = bson_iter_key(&it);
                if (!has_id && strcmp(k, "_id") == 0) continue;
                if (updated && strcmp(k, updated) == 0) {
                    seen_updated = true;
                    ok = BSON_APPEND_DATE_TIME(x->update, k, now);
                    continue;
                }
                if (created && strcmp(k, created) == 0) seen_created = true;
                ok = bson_append_iter(x->update, NULL, 0, &it);
            }
        if (ok && updated && !seen_updated) ok = BSON_APPEND_DATE_TIME(x->update, updated, now);
        if (ok && created && !seen_created) ok = BSON_APPEND_DATE_TIME(x->update, created, now);
        if (!ok)
            rc = mk_error_nomem(x->err);
        else
            q->cast_update = x->update;
    }
    mk_doc_destroy(d);
    return rc;
}

/* ---------- results ---------- */

/* Room for item n of an array whose capacity is the next power of two (the result has no
 * capacity field; the count says it). */
static bool grow(void **items, size_t n, size_t size)
{
    if (n & (n - 1)) return true; /* not a power of two (nor 0): there is room */
    size_t cap = n ? n * 2 : 1;
    if (cap > SIZE_MAX / size) return false;
    void *g = realloc(*items, cap * size);
    if (!g) return false;
    *items = g;
    return true;
}

static int add_doc(run_t *x, const bson_t *raw)
{
    mk_query_result_t *r = x->r;
    if (x->q->lean) {
        if (!grow((void **)&r->lean, r->nlean, sizeof *r->lean)) return mk_error_nomem(x->err);
        if (!(r->lean[r->nlean] = bson_copy(raw))) return mk_error_nomem(x->err);
        r->nlean++;
        return MK_OK;
    }
    mk_doc_t *d = mk_doc_hydrate_data(x->m, bson_get_data(raw), raw->len, x->err);
    if (!d) return MK_ERR;
    d->session = x->q->session;
    if (!grow((void **)&r->docs, r->ndocs, sizeof *r->docs)) {
        mk_doc_destroy(d);
        return mk_error_nomem(x->err);
    }
    r->docs[r->ndocs++] = d;
    return MK_OK;
}

/* findOne-style result: docs[0] becomes doc. */
static void single_result(mk_query_result_t *r)
{
    if (r->ndocs == 1) {
        r->doc = r->docs[0];
        free(r->docs);
        r->docs = NULL;
        r->ndocs = 0;
    }
}

/* DocumentNotFoundError for orFail: `No document found for query "<inspect(filter)>" on model
 * "<Model>"`, the filter as cast. */
static int not_found(run_t *x)
{
    bson_string_t *s = bson_string_new(NULL);
    bson_value_t v = {.value_type = BSON_TYPE_DOCUMENT};
    v.value.v_doc.data = (uint8_t *)bson_get_data(x->filter);
    v.value.v_doc.data_len = x->filter->len;
    mk_cast_inspect(s, &v);
    mk_error_set(x->err, 0, "DocumentNotFoundError",
                 "No document found for query \"%s\" on model \"%s\"", s->str, x->m->name);
    bson_string_free(s, true);
    return MK_ERR;
}

void mk_query_result_destroy(mk_query_result_t *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->ndocs; i++) mk_doc_destroy(r->docs[i]);
    free(r->docs);
    mk_doc_destroy(r->doc);
    for (size_t i = 0; i < r->nlean; i++) bson_destroy(r->lean[i]);
    free(r->lean);
    if (r->values) bson_destroy(r->values);
    if (r->has_upserted_id) bson_value_destroy(&r->upserted_id);
    mk_query_op_t op = r->op;
    memset(r, 0, sizeof *r);
    r->op = op;
}

/* ---------- reads ---------- */

static const char *const find_opts[] = {"skip",    "batchSize", "hint", "maxTimeMS",
                                        "comment", "collation", NULL};

static int find_options(run_t *x, bool one, bson_t *opts)
{
    mk_query_t *q = x->q;
    bson_iter_t opt_it;
    const bson_value_t *sort = opt(q, "sort", &opt_it);
    if (sort && !bson_append_value(opts, "sort", 4, sort)) return mk_error_nomem(x->err);
    bson_t *proj = NULL;
    if (mk_projection_resolve(x->m->schema, &q->fields, &proj, x->err) != MK_OK) return MK_ERR;
    bool ok = !proj || BSON_APPEND_DOCUMENT(opts, "projection", proj);
    if (proj) bson_destroy(proj);
    if (!ok) return mk_error_nomem(x->err);
    if (copy_opts(q, opts, find_opts, x->err) != MK_OK) return MK_ENOMEM;
    if (one) {
        if (!BSON_APPEND_INT32(opts, "limit", 1)) return mk_error_nomem(x->err);
    } else if (copy_opts(q, opts, (const char *const[]){"limit", NULL}, x->err) != MK_OK) {
        return MK_ENOMEM;
    }
    return MK_OK;
}

int mk_query_prepare_find(mk_query_t *q, bool one, bson_t *filter, bson_t *opts, mk_error_t *err)
{
    mk_query_result_t r = {0};
    run_t x;
    run_init(&x, q, &r, err);
    int rc = cast_filter(&x, false);
    if (rc == MK_OK && !bson_concat(filter, x.filter)) rc = mk_error_nomem(err);
    if (rc == MK_OK) rc = find_options(&x, one, opts);
    run_done(&x);
    return rc;
}

static int exec_find(run_t *x, bool one)
{
    bson_t opts = BSON_INITIALIZER;
    int rc = cast_filter(x, false);
    if (rc == MK_OK) rc = find_options(x, one, &opts);
    mk_backend_cursor_t *c = NULL;
    if (rc == MK_OK) {
        c = mk_backend_find(x->be, x->bs, x->db, x->coll, x->filter, &opts, x->err);
        if (!c) rc = mk_query_server_error(x->err, MK_ERR);
    }
    while (rc == MK_OK) {
        const bson_t *doc = NULL;
        int n = mk_backend_cursor_next(c, &doc, x->err);
        if (n == 0) break;
        if (n < 0) {
            rc = mk_query_server_error(x->err, n);
            break;
        }
        rc = add_doc(x, doc);
    }
    mk_backend_cursor_destroy(c);
    bson_destroy(&opts);
    if (rc != MK_OK) return rc;
    if (one) single_result(x->r);
    size_t got = x->r->ndocs + x->r->nlean + (x->r->doc != NULL);
    if (x->q->or_fail && got == 0) return not_found(x);
    return MK_OK;
}

static int exec_count(run_t *x)
{
    static const char *const keys[] = {"skip",    "limit",     "hint", "maxTimeMS",
                                       "comment", "collation", NULL};
    bson_t opts = BSON_INITIALIZER;
    int rc = cast_filter(x, false);
    if (rc == MK_OK) rc = copy_opts(x->q, &opts, keys, x->err);
    if (rc == MK_OK)
        rc = mk_query_server_error(x->err, mk_backend_count_documents(x->be, x->bs, x->db, x->coll,
                                                                      x->filter, &opts,
                                                                      &x->r->count, x->err));
    bson_destroy(&opts);
    return rc;
}

static int exec_estimated(run_t *x)
{
    static const char *const keys[] = {"maxTimeMS", "comment", NULL};
    bson_t opts = BSON_INITIALIZER;
    int rc = copy_opts(x->q, &opts, keys, x->err);
    if (rc == MK_OK)
        rc = mk_query_server_error(x->err, mk_backend_estimated_count(x->be, x->bs, x->db, x->coll,
                                                                      &opts, &x->r->count, x->err));
    bson_destroy(&opts);
    return rc;
}

static int exec_distinct(run_t *x)
{
    static const char *const keys[] = {"maxTimeMS", "comment", "collation", NULL};
    if (!x->q->distinct_key)
        return mk_error_set(x->err, 0, "MongooseError", "distinct() needs a field name");
    bson_t opts = BSON_INITIALIZER;
    int rc = cast_filter(x, false);
    if (rc == MK_OK) rc = copy_opts(x->q, &opts, keys, x->err);
    if (rc == MK_OK && !(x->r->values = bson_new())) rc = mk_error_nomem(x->err);
    if (rc == MK_OK)
        rc = mk_query_server_error(x->err, mk_backend_distinct(x->be, x->bs, x->db, x->coll,
                                                               x->q->distinct_key, x->filter, &opts,
                                                               x->r->values, x->err));
    bson_destroy(&opts);
    return rc;
}

/* ---------- writes ---------- */

/* updateOne / replaceOne / deleteOne with a sort (the book's `updateOne(...).sort('-age')`):
 * the first match in sort order is found and the write is narrowed to its _id. The write
 * itself still carries the whole filter, so a document changed in between is not touched. */
static int narrow_to_first(run_t *x, bson_t **target)
{
    *target = NULL;
    bson_iter_t opt_it;
    const bson_value_t *sort = opt(x->q, "sort", &opt_it);
    if (!sort) return MK_OK;
    bson_t opts = BSON_INITIALIZER;
    bool ok = bson_append_value(&opts, "sort", 4, sort) && BSON_APPEND_INT32(&opts, "limit", 1);
    bson_t proj;
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj) &&
         BSON_APPEND_INT32(&proj, "_id", 1) && bson_append_document_end(&opts, &proj);
    if (!ok) {
        bson_destroy(&opts);
        return mk_error_nomem(x->err);
    }
    mk_backend_cursor_t *c =
        mk_backend_find(x->be, x->bs, x->db, x->coll, x->filter, &opts, x->err);
    bson_destroy(&opts);
    if (!c) return mk_query_server_error(x->err, MK_ERR);
    const bson_t *doc = NULL;
    int n = mk_backend_cursor_next(c, &doc, x->err);
    int rc = n < 0 ? mk_query_server_error(x->err, n) : MK_OK;
    bson_iter_t id;
    if (n == 1 && bson_iter_init_find(&id, doc, "_id")) {
        bson_t *t = bson_new();
        bson_t arr, a;
        ok = t && BSON_APPEND_ARRAY_BEGIN(t, "$and", &arr) &&
             BSON_APPEND_DOCUMENT(&arr, "0", x->filter) &&
             BSON_APPEND_DOCUMENT_BEGIN(&arr, "1", &a) && bson_append_iter(&a, "_id", 3, &id) &&
             bson_append_document_end(&arr, &a) && bson_append_array_end(t, &arr);
        if (!ok) {
            if (t) bson_destroy(t);
            rc = mk_error_nomem(x->err);
        } else {
            *target = t;
        }
    }
    mk_backend_cursor_destroy(c);
    return rc;
}

static int64_t reply_int(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : 0;
}

static int exec_update(run_t *x, mk_query_op_t op)
{
    static const char *const keys[] = {"arrayFilters", "hint",    "collation",
                                       "maxTimeMS",    "comment", NULL};
    mk_query_t *q = x->q;
    mk_query_result_t *r = x->r;
    bool upsert = opt_true(q, "upsert");
    bool replace = op == MK_OP_REPLACE_ONE;
    int rc = cast_filter(x, upsert);
    if (rc == MK_OK && replace) rc = build_replacement(x);
    if (rc == MK_OK && !replace) {
        rc = cast_update(x, upsert);
        if (rc == MK_OK && bson_empty(x->update)) { /* nothing to send: Mongoose answers this */
            r->acknowledged = false;
            return MK_OK;
        }
        if (rc == MK_OK) rc = defaults_on_insert(x, upsert);
        if (rc == MK_OK) rc = run_update_validators(x, upsert);
    }
    bson_t *target = NULL;
    if (rc == MK_OK && op != MK_OP_UPDATE_MANY) rc = narrow_to_first(x, &target);
    bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    if (rc == MK_OK) rc = copy_opts(q, &opts, keys, x->err);
    if (rc == MK_OK && upsert && !BSON_APPEND_BOOL(&opts, "upsert", true))
        rc = mk_error_nomem(x->err);
    if (rc == MK_OK) {
        unsigned flags = op == MK_OP_UPDATE_MANY ? MK_BE_MULTI : replace ? MK_BE_REPLACE : 0;
        rc = mk_backend_update(x->be, x->bs, x->db, x->coll, target ? target : x->filter, x->update,
                               flags, &opts, &reply, x->err);
        if (rc == MK_OK) rc = mk_backend_first_write_error(&reply, x->err);
        rc = mk_query_server_error(x->err, rc);
    }
    if (rc == MK_OK) {
        bson_iter_t it, up, f;
        int64_t n = reply_int(&reply, "n"), upserted = 0;
        if (bson_iter_init_find(&it, &reply, "upserted") && bson_iter_recurse(&it, &up))
            while (bson_iter_next(&up)) {
                if (upserted == 0 && BSON_ITER_HOLDS_DOCUMENT(&up) && bson_iter_recurse(&up, &f) &&
                    bson_iter_find(&f, "_id")) {
                    bson_value_copy(bson_iter_value(&f), &r->upserted_id);
                    r->has_upserted_id = true;
                }
                upserted++;
            }
        r->acknowledged = true;
        r->upserted_count = upserted;
        r->matched_count = n - upserted;
        r->modified_count = reply_int(&reply, "nModified");
        if (q->or_fail && r->matched_count == 0) rc = not_found(x);
    }
    if (target) bson_destroy(target);
    bson_destroy(&opts);
    bson_destroy(&reply);
    return rc;
}

static int exec_delete(run_t *x, mk_query_op_t op)
{
    static const char *const keys[] = {"hint", "collation", "maxTimeMS", "comment", NULL};
    mk_query_t *q = x->q;
    int rc = cast_filter(x, false);
    bson_t *target = NULL;
    if (rc == MK_OK && op == MK_OP_DELETE_ONE) rc = narrow_to_first(x, &target);
    bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    if (rc == MK_OK) rc = copy_opts(q, &opts, keys, x->err);
    if (rc == MK_OK) {
        rc = mk_backend_delete(x->be, x->bs, x->db, x->coll, target ? target : x->filter,
                               op == MK_OP_DELETE_MANY ? MK_BE_MULTI : 0, &opts, &reply, x->err);
        if (rc == MK_OK) rc = mk_backend_first_write_error(&reply, x->err);
        rc = mk_query_server_error(x->err, rc);
    }
    if (rc == MK_OK) {
        x->r->acknowledged = true;
        x->r->deleted_count = reply_int(&reply, "n");
        if (q->or_fail && x->r->deleted_count == 0) rc = not_found(x);
    }
    if (target) bson_destroy(target);
    bson_destroy(&opts);
    bson_destroy(&reply);
    return rc;
}

static int exec_find_and_modify(run_t *x, mk_query_op_t op)
{
    static const char *const keys[] = {"arrayFilters", "hint",    "collation",
                                       "maxTimeMS",    "comment", NULL};
    mk_query_t *q = x->q;
    bool remove = op == MK_OP_FIND_ONE_AND_DELETE;
    bool upsert = !remove && opt_true(q, "upsert");
    int rc = cast_filter(x, upsert);
    if (rc == MK_OK && op == MK_OP_FIND_ONE_AND_REPLACE) rc = build_replacement(x);
    if (rc == MK_OK && op == MK_OP_FIND_ONE_AND_UPDATE) {
        rc = cast_update(x, upsert);
        if (rc == MK_OK && bson_empty(x->update)) {
            if (!upsert) { /* nothing to change: Mongoose runs a findOne */
                bson_destroy(x->filter);
                x->filter = NULL;
                q->cast_filter = NULL;
                return exec_find(x, true);
            }
            bson_t empty;
            bool ok = BSON_APPEND_DOCUMENT_BEGIN(x->update, "$set", &empty) &&
                      bson_append_document_end(x->update, &empty);
            if (!ok) rc = mk_error_nomem(x->err);
        }
        if (rc == MK_OK) rc = defaults_on_insert(x, upsert);
        if (rc == MK_OK) rc = run_update_validators(x, upsert);
    }
    bson_t opts = BSON_INITIALIZER, value = BSON_INITIALIZER;
    bson_iter_t opt_it;
    const bson_value_t *sort = opt(q, "sort", &opt_it);
    if (rc == MK_OK && sort && !bson_append_value(&opts, "sort", 4, sort))
        rc = mk_error_nomem(x->err);
    bson_t *proj = NULL;
    if (rc == MK_OK) rc = mk_projection_resolve(x->m->schema, &q->fields, &proj, x->err);
    if (rc == MK_OK && proj && !BSON_APPEND_DOCUMENT(&opts, "fields", proj))
        rc = mk_error_nomem(x->err);
    if (proj) bson_destroy(proj);
    if (rc == MK_OK) {
        bool ok = remove ? BSON_APPEND_BOOL(&opts, "remove", true)
                         : BSON_APPEND_DOCUMENT(&opts, "update", x->update) &&
                               BSON_APPEND_BOOL(&opts, "new", return_after(q)) &&
                               BSON_APPEND_BOOL(&opts, "upsert", upsert);
        if (!ok) rc = mk_error_nomem(x->err);
    }
    if (rc == MK_OK) rc = copy_opts(q, &opts, keys, x->err);
    bool found = false;
    if (rc == MK_OK)
        rc = mk_query_server_error(x->err, mk_backend_find_and_modify(x->be, x->bs, x->db, x->coll,
                                                                      x->filter, &opts, &value,
                                                                      &found, NULL, x->err));
    if (rc == MK_OK && found) {
        rc = add_doc(x, &value);
        single_result(x->r);
    }
    if (rc == MK_OK && !found && q->or_fail) rc = not_found(x);
    bson_destroy(&opts);
    bson_destroy(&value);
    return rc;
}

static int run_op(run_t *x, mk_query_op_t op)
{
    switch (op) {
    case MK_OP_FIND:
        return exec_find(x, false);
    case MK_OP_FIND_ONE:
        return exec_find(x, true);
    case MK_OP_COUNT_DOCUMENTS:
        return exec_count(x);
    case MK_OP_ESTIMATED_DOCUMENT_COUNT:
        return exec_estimated(x);
    case MK_OP_DISTINCT:
        return exec_distinct(x);
    case MK_OP_UPDATE_ONE:
    case MK_OP_UPDATE_MANY:
    case MK_OP_REPLACE_ONE:
        return exec_update(x, op);
    case MK_OP_DELETE_ONE:
    case MK_OP_DELETE_MANY:
        return exec_delete(x, op);
    case MK_OP_FIND_ONE_AND_UPDATE:
    case MK_OP_FIND_ONE_AND_REPLACE:
    case MK_OP_FIND_ONE_AND_DELETE:
        return exec_find_and_modify(x, op);
    }
    return mk_error_set(x->err, 0, "MongooseError", "unknown query op %d", (int)op);
}

/* ---------- exec ---------- */

int mk_query_exec(mk_query_t *q, mk_query_result_t *r, mk_error_t *err)
{
    if (!r) return mk_error_set(err, 0, "MongooseError", "mk_query_exec: result is NULL");
    memset(r, 0, sizeof *r);
    if (!q) return mk_error_set(err, 0, "MongooseError", "mk_query_exec: query is NULL");
    if (q->executing)
        return mk_error_set(err, 0, "MongooseError",
                            "Query is being executed: its middleware cannot execute it again");
    mk_query_op_t op = q->op;
    r->op = op;
    const char *name = mk_query_op_name(op);
    mk_error_t e = {0};
    if (q->failed) { /* a chain helper failed: Mongoose would have thrown there */
        if (err) *err = q->error;
        return MK_ERR;
    }
    q->executing = true;
    mk_hook_t h = {.query = q};
    int rc = mk_hooks_run(q->model, name, MK_HOOK_PRE, false, &h, &e);
    if (rc == MK_OK && q->failed) { /* a pre hook broke the chain */
        e = q->error;
        rc = MK_ERR;
    }
    run_t x;
    run_init(&x, q, r, &e);
    if (rc == MK_OK) rc = run_op(&x, op);
    if (rc == MK_OK) {
        h.result = r;
        rc = mk_hooks_run(q->model, name, MK_HOOK_POST, false, &h, &e);
    }
    if (rc != MK_OK) {
        mk_query_result_destroy(r);
        if (rc == MK_ENOMEM && !e.kind[0]) mk_error_nomem(&e);
        h.result = NULL;
        mk_hooks_run_error(q->model, name, false, &h, &e);
        if (err) *err = e;
        rc = rc == MK_ENOMEM ? MK_ENOMEM : MK_ERR;
    }
    run_done(&x);
    mk_query_restore_state(q);
    q->executing = false;
    return rc;
}

/* ---------- conveniences ---------- */

static bool returns_one(mk_query_op_t op)
{
    return op == MK_OP_FIND_ONE || op == MK_OP_FIND_ONE_AND_UPDATE ||
           op == MK_OP_FIND_ONE_AND_REPLACE || op == MK_OP_FIND_ONE_AND_DELETE;
}

static int check_hydrated(mk_query_t *q, const char *fn, bool find_ok, mk_error_t *err)
{
    if (!q) return mk_error_set(err, 0, "MongooseError", "%s: query is NULL", fn);
    if (!(returns_one(q->op) || (find_ok && q->op == MK_OP_FIND)))
        return mk_error_set(err, 0, "MongooseError", "%s: a %s query does not return documents", fn,
                            mk_query_op_name(q->op));
    if (q->lean)
        return mk_error_set(err, 0, "MongooseError",
                            "%s: the query is lean; read its BSON with mk_query_exec", fn);
    return MK_OK;
}

int mk_query_docs(mk_query_t *q, mk_doc_t ***docs, size_t *n, mk_error_t *err)
{
    *docs = NULL;
    *n = 0;
    if (check_hydrated(q, "mk_query_docs", true, err) != MK_OK) return MK_ERR;
    mk_query_result_t r;
    int rc = mk_query_exec(q, &r, err);
    if (rc != MK_OK) return rc;
    if (r.doc) {
        mk_doc_t **one = malloc(sizeof *one);
        if (!one) {
            mk_query_result_destroy(&r);
            return mk_error_nomem(err);
        }
        one[0] = r.doc;
        r.doc = NULL;
        *docs = one;
        *n = 1;
    } else {
        *docs = r.docs;
        *n = r.ndocs;
        r.docs = NULL;
        r.ndocs = 0;
    }
    mk_query_result_destroy(&r);
    return MK_OK;
}

mk_doc_t *mk_query_one(mk_query_t *q, mk_error_t *err)
{
    if (check_hydrated(q, "mk_query_one", false, err) != MK_OK) return NULL;
    mk_query_result_t r;
    if (mk_query_exec(q, &r, err) != MK_OK) return NULL;
    mk_doc_t *d = r.doc;
    r.doc = NULL;
    mk_query_result_destroy(&r);
    if (!d && err) {
        err->code = 0;
        err->kind[0] = '\0';
        err->message[0] = '\0';
    }
    return d;
}

int mk_query_count(mk_query_t *q, int64_t *count, mk_error_t *err)
{
    *count = 0;
    if (!q) return mk_error_set(err, 0, "MongooseError", "mk_query_count: query is NULL");
    if (q->op != MK_OP_COUNT_DOCUMENTS && q->op != MK_OP_ESTIMATED_DOCUMENT_COUNT)
        return mk_error_set(err, 0, "MongooseError", "mk_query_count: a %s query is not a count",
                            mk_query_op_name(q->op));
    mk_query_result_t r;
    int rc = mk_query_exec(q, &r, err);
    if (rc == MK_OK) *count = r.count;
    mk_query_result_destroy(&r);
    return rc;
}

bson_t *mk_exists_args(mk_model_t *model, const char *filter, const mk_arg_t *args, mk_error_t *err)
{
    mk_query_t *q = mk_query_new(model, MK_OP_FIND_ONE, filter, NULL, args, err);
    if (!q) return NULL;
    bson_t *out = NULL;
    if (mk_query_select(q, "{ _id: 1 }") && mk_query_lean(q, true)) {
        mk_query_result_t r;
        if (mk_query_exec(q, &r, err) == MK_OK) {
            if (r.nlean > 0) {
                out = r.lean[0];
                r.lean[0] = NULL;
                r.nlean = 0;
            } else if (err) {
                err->code = 0;
                err->kind[0] = '\0';
                err->message[0] = '\0';
            }
            mk_query_result_destroy(&r);
        }
    } else if (err) {
        *err = q->error;
    }
    mk_query_destroy(q);
    return out;
}

/* ---------- explain ---------- */

/* The command the query would send, for the backend's explain. */
static int explain_command(run_t *x, bson_t *cmd)
{
    mk_query_t *q = x->q;
    mk_query_op_t op = q->op;
    bool ok = true;
    int rc = MK_OK;
    switch (op) {
    case MK_OP_FIND:
    case MK_OP_FIND_ONE: {
        bson_t opts = BSON_INITIALIZER;
        rc = cast_filter(x, false);
        if (rc == MK_OK) rc = find_options(x, op == MK_OP_FIND_ONE, &opts);
        ok = rc != MK_OK ||
             (BSON_APPEND_UTF8(cmd, "find", x->coll) &&
              BSON_APPEND_DOCUMENT(cmd, "filter", x->filter) && bson_concat(cmd, &opts));
        bson_destroy(&opts);
        break;
    }
    case MK_OP_COUNT_DOCUMENTS:
    case MK_OP_ESTIMATED_DOCUMENT_COUNT: {
        ok = BSON_APPEND_UTF8(cmd, "count", x->coll);
        if (op == MK_OP_COUNT_DOCUMENTS) {
            rc = cast_filter(x, false);
            ok = ok && (rc != MK_OK || BSON_APPEND_DOCUMENT(cmd, "query", x->filter));
            if (rc == MK_OK)
                rc =
                    copy_opts(q, cmd, (const char *const[]){"skip", "limit", "hint", NULL}, x->err);
        }
        break;
    }
    case MK_OP_DISTINCT:
        if (!q->distinct_key)
            return mk_error_set(x->err, 0, "MongooseError", "distinct() needs a field name");
        rc = cast_filter(x, false);
        ok = rc != MK_OK || (BSON_APPEND_UTF8(cmd, "distinct", x->coll) &&
                             BSON_APPEND_UTF8(cmd, "key", q->distinct_key) &&
                             BSON_APPEND_DOCUMENT(cmd, "query", x->filter));
        break;
    case MK_OP_UPDATE_ONE:
    case MK_OP_UPDATE_MANY:
    case MK_OP_REPLACE_ONE: {
        bool upsert = opt_true(q, "upsert");
        rc = cast_filter(x, upsert);
        if (rc == MK_OK)
            rc = op == MK_OP_REPLACE_ONE ? build_replacement(x) : cast_update(x, upsert);
        bson_t arr, st;
        ok = rc != MK_OK ||
             (BSON_APPEND_UTF8(cmd, "update", x->coll) &&
              BSON_APPEND_ARRAY_BEGIN(cmd, "updates", &arr) &&
              BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &st) &&
              BSON_APPEND_DOCUMENT(&st, "q", x->filter) &&
              BSON_APPEND_DOCUMENT(&st, "u", x->update) &&
              BSON_APPEND_BOOL(&st, "multi", op == MK_OP_UPDATE_MANY) &&
              BSON_APPEND_BOOL(&st, "upsert", upsert) && bson_append_document_end(&arr, &st) &&
              bson_append_array_end(cmd, &arr));
        break;
    }
    case MK_OP_DELETE_ONE:
    case MK_OP_DELETE_MANY: {
        rc = cast_filter(x, false);
        bson_t arr, st;
        ok = rc != MK_OK ||
             (BSON_APPEND_UTF8(cmd, "delete", x->coll) &&
              BSON_APPEND_ARRAY_BEGIN(cmd, "deletes", &arr) &&
              BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &st) &&
              BSON_APPEND_DOCUMENT(&st, "q", x->filter) &&
              BSON_APPEND_INT32(&st, "limit", op == MK_OP_DELETE_ONE ? 1 : 0) &&
              bson_append_document_end(&arr, &st) && bson_append_array_end(cmd, &arr));
        break;
    }
    case MK_OP_FIND_ONE_AND_UPDATE:
    case MK_OP_FIND_ONE_AND_REPLACE:
    case MK_OP_FIND_ONE_AND_DELETE: {
        bool remove = op == MK_OP_FIND_ONE_AND_DELETE;
        bool upsert = !remove && opt_true(q, "upsert");
        rc = cast_filter(x, upsert);
        if (rc == MK_OK && op == MK_OP_FIND_ONE_AND_UPDATE) rc = cast_update(x, upsert);
        if (rc == MK_OK && op == MK_OP_FIND_ONE_AND_REPLACE) rc = build_replacement(x);
        bson_iter_t opt_it;
        const bson_value_t *sort = opt(q, "sort", &opt_it);
        ok = rc != MK_OK || (BSON_APPEND_UTF8(cmd, "findAndModify", x->coll) &&
                             BSON_APPEND_DOCUMENT(cmd, "query", x->filter) &&
                             (!sort || bson_append_value(cmd, "sort", 4, sort)) &&
                             (remove ? BSON_APPEND_BOOL(cmd, "remove", true)
                                     : BSON_APPEND_DOCUMENT(cmd, "update", x->update) &&
                                           BSON_APPEND_BOOL(cmd, "new", return_after(q)) &&
                                           BSON_APPEND_BOOL(cmd, "upsert", upsert)));
        break;
    }
    }
    if (!ok) return mk_error_nomem(x->err);
    return rc;
}

int mk_query_explain(mk_query_t *q, const char *verbosity, bson_t *reply, mk_error_t *err)
{
    if (!q) return mk_error_set(err, 0, "MongooseError", "mk_query_explain: query is NULL");
    if (q->failed) {
        if (err) *err = q->error;
        return MK_ERR;
    }
    mk_query_result_t r = {0};
    run_t x;
    run_init(&x, q, &r, err);
    bson_t cmd = BSON_INITIALIZER;
    int rc = explain_command(&x, &cmd);
    if (rc == MK_OK)
        rc = mk_query_server_error(
            err, mk_backend_explain(x.be, x.bs, x.db, &cmd, verbosity, reply, err));
    bson_destroy(&cmd);
    run_done(&x);
    return rc;
}
