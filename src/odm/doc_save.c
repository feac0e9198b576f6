/* Validation and persistence of documents: validate(), save() with Mongoose's minimal update
 * and versioning rules, deleteOne() / updateOne() on a document, Model.create and insertMany. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"
#include "odm/doc_internal.h"
#include "odm/doc_validate.h"
#include "odm/validate.h"

/* ---- validation ---- */

static int run_validation(mk_doc_t *d, const mk_dv_opts_t *opts, mk_error_t *err)
{
    mk_model_t *m = d->model;
    /* a document created and saved here has no `init` paths: Mongoose validates only its
     * modified and required paths */
    mk_dv_opts_t local = *opts;
    const mk_dv_opts_t *o = &local;
    char **mods = NULL;
    if (!d->is_new && !d->hydrated && !local.validate_modified_only) {
        if (!(mods = mk_doc_direct_modified_paths(d))) return mk_error_nomem(err);
        local.modified_and_required = true;
        local.modified_paths = (const char *const *)mods;
    }
    mk_hook_t h = {.doc = d};
    int rc = mk_hooks_run(m, "validate", MK_HOOK_PRE, true, &h, err);
    if (rc == MK_OK) {
        bson_t view;
        rc = mk_doc_view(d, &view, err);
        mk_verrors_t errs, found;
        mk_verrors_init(&errs);
        mk_verrors_init(&found);
        /* CastErrors recorded by set come first and win over validators of the same path */
        for (size_t i = 0; rc == MK_OK && d->cast_errors && i < d->cast_errors->count; i++) {
            const mk_verror_t *e = &d->cast_errors->items[i];
            if (mk_verrors_add(&errs, e->path, e->kind, e->message, &e->value) != MK_OK)
                rc = mk_error_nomem(err);
        }
        if (rc == MK_OK) {
            bson_t *copy = bson_copy(&view); /* validators may read the document */
            rc = copy ? mk_validate_document(m->schema, d, copy, o, &found) : MK_ENOMEM;
            if (copy) bson_destroy(copy);
            if (rc == MK_ENOMEM)
                mk_error_nomem(err);
            else if (rc != MK_OK && err)
                *err = found.error;
        }
        for (size_t i = 0; rc == MK_OK && i < found.count; i++) {
            const mk_verror_t *e = &found.items[i];
            if (mk_verrors_find(&errs, e->path)) continue;
            const bson_value_t *v = e->value.value_type == BSON_TYPE_UNDEFINED ? NULL : &e->value;
            if (mk_verrors_add(&errs, e->path, e->kind, e->message, v) != MK_OK)
                rc = mk_error_nomem(err);
        }
        if (rc == MK_OK) rc = mk_verrors_to_error(&errs, m->name, err);
        mk_verrors_destroy(&errs);
        mk_verrors_destroy(&found);
    }
    h.result = d;
    rc = mk_hooks_post(m, "validate", true, &h, rc, err);
    mk_strv_free(mods);
    return rc;
}

int mk_doc_validate(mk_doc_t *d, mk_error_t *err)
{
    mk_dv_opts_t o = {0};
    return run_validation(d, &o, err);
}

int mk_doc_validate_paths(mk_doc_t *d, const char *const *paths, mk_error_t *err)
{
    mk_dv_opts_t o = {.only_paths = paths};
    return run_validation(d, &o, err);
}

/* ---- the update save() sends ---- */

static bool positional_path(const char *p)
{
    /* Mongoose's /\.\d+\.|\.\d+$/ */
    for (const char *s = strchr(p, '.'); s; s = strchr(s + 1, '.')) {
        const char *q = s + 1;
        if (*q < '0' || *q > '9') continue;
        while (*q >= '0' && *q <= '9') q++;
        if (*q == '.' || *q == '\0') return true;
    }
    return false;
}

typedef struct delta {
    bson_t set, unset, push, add_to_set, pull;
    bool has_set, has_unset, has_push, has_add, has_pull;
    char *paths; /* modified paths joined by ", " (VersionError) */
} delta_t;

static void delta_init(delta_t *x)
{
    bson_init(&x->set);
    bson_init(&x->unset);
    bson_init(&x->push);
    bson_init(&x->add_to_set);
    bson_init(&x->pull);
    x->has_set = x->has_unset = x->has_push = x->has_add = x->has_pull = false;
    x->paths = NULL;
}

static void delta_destroy(delta_t *x)
{
    bson_destroy(&x->set);
    bson_destroy(&x->unset);
    bson_destroy(&x->push);
    bson_destroy(&x->add_to_set);
    bson_destroy(&x->pull);
    free(x->paths);
}

static bool covered(const mk_doc_t *d, const char *path)
{
    for (size_t i = 0; i < d->nmod; i++) {
        size_t n = strlen(d->modified[i]);
        if (strncmp(d->modified[i], path, n) == 0 && path[n] == '.') return true;
    }
    return false;
}

/* Builds the operators for the modified paths and the version bits Mongoose would use. */
static int build_delta(mk_doc_t *d, delta_t *x, mk_error_t *err)
{
    bson_string_t *names = bson_string_new(NULL);
    bool ok = true;
    for (size_t i = 0; ok && i < d->nmod; i++) {
        const char *path = d->modified[i];
        if (covered(d, path)) continue; /* a parent is sent whole */
        if (names->len) bson_string_append(names, ", ");
        bson_string_append(names, path);
        mk_atomic_t *a = mk_doc_atomic(d, path);
        if (a && a->op != ATOMIC_SET) {
            bson_t inner;
            const mk_schema_path_t *p = mk_doc_schema_path(d, path, NULL);
            bool docarray = p && mk_schema_path_kind(p) == MK_TYPE_DOCARRAY;
            if (a->op == ATOMIC_PUSH || a->op == ATOMIC_ADD_TO_SET) {
                bson_t *dst = a->op == ATOMIC_PUSH ? &x->push : &x->add_to_set;
                ok = bson_append_document_begin(dst, path, -1, &inner) &&
                     BSON_APPEND_ARRAY(&inner, "$each", a->values) &&
                     bson_append_document_end(dst, &inner);
                if (a->op == ATOMIC_PUSH)
                    x->has_push = true;
                else
                    x->has_add = true;
            } else {
                bson_t in;
                ok = bson_append_document_begin(&x->pull, path, -1, &inner);
                if (docarray) {
                    bson_t idc;
                    ok = ok && bson_append_document_begin(&inner, "_id", 3, &idc) &&
                         BSON_APPEND_ARRAY(&idc, "$in", a->values) &&
                         bson_append_document_end(&inner, &idc);
                } else {
                    (void)in;
                    ok = ok && BSON_APPEND_ARRAY(&inner, "$in", a->values);
                }
                ok = ok && bson_append_document_end(&x->pull, &inner);
                x->has_pull = true;
            }
            /* Mongoose: $push/$addToSet/$pull bump the version; positional paths also check it */
            d->version |= positional_path(path) ? VERSION_ALL : VERSION_INC;
            continue;
        }
        bson_value_t v;
        if (mk_doc_lookup(d, path, &v)) {
            ok = bson_append_value(&x->set, path, -1, &v);
            x->has_set = true;
            if (v.value_type == BSON_TYPE_ARRAY)
                d->version |= VERSION_ALL;
            else if (positional_path(path))
                d->version |= VERSION_WHERE;
        } else {
            ok = BSON_APPEND_INT32(&x->unset, path, 1);
            x->has_unset = true;
            if (positional_path(path)) d->version |= VERSION_WHERE;
        }
    }
    x->paths = bson_string_free(names, false);
    return ok && x->paths ? MK_OK : mk_error_nomem(err);
}

static bool delta_empty(const delta_t *x)
{
    return !x->has_set && !x->has_unset && !x->has_push && !x->has_add && !x->has_pull;
}

static bool append_ops(bson_t *update, delta_t *x)
{
    bool ok = true;
    if (x->has_set) ok = ok && BSON_APPEND_DOCUMENT(update, "$set", &x->set);
    if (x->has_unset) ok = ok && BSON_APPEND_DOCUMENT(update, "$unset", &x->unset);
    if (x->has_push) ok = ok && BSON_APPEND_DOCUMENT(update, "$push", &x->push);
    if (x->has_add) ok = ok && BSON_APPEND_DOCUMENT(update, "$addToSet", &x->add_to_set);
    if (x->has_pull) ok = ok && BSON_APPEND_DOCUMENT(update, "$pull", &x->pull);
    return ok;
}

bson_t *mk_doc_delta(mk_doc_t *d, mk_error_t *err)
{
    bson_t *out = bson_new();
    if (!out) {
        mk_error_nomem(err);
        return NULL;
    }
    if (d->is_new) {
        bson_t view;
        if (mk_doc_view(d, &view, err) != MK_OK) {
            bson_destroy(out);
            return NULL;
        }
        bson_concat(out, &view);
        return out;
    }
    unsigned saved = d->version;
    delta_t x;
    delta_init(&x);
    int rc = build_delta(d, &x, err);
    d->version = saved; /* asking for the delta changes nothing */
    if (rc != MK_OK || !append_ops(out, &x)) {
        if (rc == MK_OK) mk_error_nomem(err);
        delta_destroy(&x);
        bson_destroy(out);
        return NULL;
    }
    delta_destroy(&x);
    return out;
}

/* ---- save ---- */

/* A server error as Mongoose reports it: kind MongoServerError, the server's code kept. */
static void as_server_error(mk_error_t *err)
{
    if (err && err->code != 0) snprintf(err->kind, sizeof err->kind, "%s", "MongoServerError");
}

static const char *collection(const mk_doc_t *d)
{
    return d->model->collection;
}

static mk_backend_t *backend(const mk_doc_t *d)
{
    return d->model->conn->be;
}

static void inspect_filter(bson_string_t *s, const bson_value_t *id)
{
    bson_string_append(s, "{ _id: ");
    mk_cast_inspect(s, id);
    bson_string_append(s, " }");
}

static int not_found(mk_doc_t *d, const bson_value_t *id, mk_error_t *err)
{
    bson_string_t *s = bson_string_new(NULL);
    inspect_filter(s, id);
    int rc =
        mk_error_set(err, 0, "DocumentNotFoundError",
                     "No document found for query \"%s\" on model \"%s\"", s->str, d->model->name);
    bson_string_free(s, true);
    return rc;
}

static int insert_new(mk_doc_t *d, const mk_save_opts_t *o, mk_error_t *err)
{
    const mk_schema_options_t *so = mk_schema_options(d->model->schema);
    bson_value_t v;
    int64_t now = mk_odm_now_ms();
    bson_value_t date = {.value_type = BSON_TYPE_DATE_TIME};
    date.value.v_datetime = now;
    if (!(o && o->timestamps_off)) {
        if (so->created_at && !mk_doc_lookup(d, so->created_at, &v) &&
            mk_doc_store(d, so->created_at, &date, err) != MK_OK)
            return MK_ERR;
        if (so->updated_at && !mk_doc_lookup(d, so->updated_at, &v) &&
            mk_doc_store(d, so->updated_at, &date, err) != MK_OK)
            return MK_ERR;
    }
    if (so->version_key && !mk_doc_lookup(d, so->version_key, &v)) {
        bson_value_t zero = {.value_type = BSON_TYPE_INT32};
        if (mk_doc_store(d, so->version_key, &zero, err) != MK_OK) return MK_ERR;
    }
    bson_t view;
    if (mk_doc_view(d, &view, err) != MK_OK) return MK_ERR;
    const bson_t *docs[1] = {&view};
    bson_t reply = BSON_INITIALIZER;
    int rc = mk_backend_insert_many(
        backend(d), mk_client_session_backend(o && o->session ? o->session : d->session),
        d->model->conn->db, collection(d), docs, 1, NULL, &reply, err);
    if (rc == MK_OK && mk_backend_first_write_error(&reply, err) != MK_OK) rc = MK_ERR;
    bson_destroy(&reply);
    if (rc != MK_OK) as_server_error(err);
    return rc;
}

static int update_saved(mk_doc_t *d, const mk_save_opts_t *o, mk_error_t *err)
{
    const mk_schema_options_t *so = mk_schema_options(d->model->schema);
    bson_value_t id;
    if (!mk_doc_lookup(d, "_id", &id))
        return mk_error_set(err, 0, "MongooseError",
                            "This document has no _id; it cannot be saved as an update");
    delta_t x;
    delta_init(&x);
    d->version = 0;
    int rc = build_delta(d, &x, err);
    if (rc != MK_OK || delta_empty(&x)) {
        delta_destroy(&x);
        return rc;
    }
    if (!(o && o->timestamps_off) && so->updated_at && !mk_doc_is_modified(d, so->updated_at)) {
        bson_value_t date = {.value_type = BSON_TYPE_DATE_TIME};
        date.value.v_datetime = mk_odm_now_ms();
        if (mk_doc_store(d, so->updated_at, &date, err) != MK_OK ||
            !bson_append_value(&x.set, so->updated_at, -1, &date)) {
            delta_destroy(&x);
            return MK_ERR;
        }
        x.has_set = true;
    }
    bool versioned = so->version_key != NULL;
    if (versioned && so->optimistic_concurrency) d->version = VERSION_ALL;
    if (!versioned) d->version = 0;
    bson_value_t ver;
    bool has_ver = versioned && mk_doc_lookup(d, so->version_key, &ver);
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    bool ok = bson_append_value(&filter, "_id", 3, &id);
    bool where = (d->version & VERSION_WHERE) && has_ver;
    if (where) ok = ok && bson_append_value(&filter, so->version_key, -1, &ver);
    ok = ok && append_ops(&update, &x);
    if (versioned && (d->version & VERSION_INC)) {
        bson_t inc;
        ok = ok && bson_append_document_begin(&update, "$inc", 4, &inc) &&
             BSON_APPEND_INT32(&inc, so->version_key, 1) && bson_append_document_end(&update, &inc);
    }
    bson_t reply = BSON_INITIALIZER;
    if (!ok) rc = mk_error_nomem(err);
    if (rc == MK_OK)
        rc = mk_backend_update(
            backend(d), mk_client_session_backend(o && o->session ? o->session : d->session),
            d->model->conn->db, collection(d), &filter, &update, 0, NULL, &reply, err);
    if (rc == MK_OK && mk_backend_first_write_error(&reply, err) != MK_OK) {
        as_server_error(err);
        rc = MK_ERR;
    }
    if (rc == MK_OK) {
        bson_iter_t it;
        int64_t n = bson_iter_init_find(&it, &reply, "n") ? bson_iter_as_int64(&it) : 0;
        if (n == 0) {
            if (where) {
                char idhex[64] = "";
                const char *ids = mk_doc_id(d);
                snprintf(idhex, sizeof idhex, "%s", ids ? ids : "");
                int64_t vn = ver.value_type == BSON_TYPE_INT32   ? ver.value.v_int32
                             : ver.value_type == BSON_TYPE_INT64 ? ver.value.v_int64
                                                                 : (int64_t)ver.value.v_double;
                rc = mk_error_set(err, 0, "VersionError",
                                  "No matching document found for id \"%s\" version %lld "
                                  "modifiedPaths \"%s\"",
                                  idhex, (long long)vn, x.paths);
            } else {
                rc = not_found(d, &id, err);
            }
        } else if (versioned && (d->version & VERSION_INC)) {
            bson_value_t next = {.value_type = BSON_TYPE_INT32};
            int64_t cur = !has_ver                            ? 0
                          : ver.value_type == BSON_TYPE_INT32 ? ver.value.v_int32
                          : ver.value_type == BSON_TYPE_INT64 ? ver.value.v_int64
                                                              : (int64_t)ver.value.v_double;
            next.value.v_int32 = (int32_t)(cur + 1);
            rc = mk_doc_store(d, so->version_key, &next, err);
        }
    }
    bson_destroy(&reply);
    bson_destroy(&filter);
    bson_destroy(&update);
    delta_destroy(&x);
    return rc;
}

int mk_doc_save_opts(mk_doc_t *d, const mk_save_opts_t *o, mk_error_t *err)
{
    mk_model_t *m = d->model;
    const mk_schema_options_t *so = mk_schema_options(m->schema);
    mk_hook_t h = {.doc = d};
    int rc = MK_OK;
    mk_error_t e = {0};
    if (o && o->session) d->session = o->session; /* the document remembers it ($session()) */
    if (so->validate_before_save && !(o && o->validate_before_save_off)) {
        mk_dv_opts_t vo = {0};
        char **mods = NULL;
        if (o && o->validate_modified_only) {
            mods = mk_doc_modified_paths(d, false);
            if (!mods) rc = mk_error_nomem(&e);
            vo.validate_modified_only = true;
            vo.modified_paths = (const char *const *)mods;
        }
        if (rc == MK_OK) rc = run_validation(d, &vo, &e);
        mk_strv_free(mods);
    }
    if (rc == MK_OK) rc = mk_hooks_run(m, "save", MK_HOOK_PRE, true, &h, &e);
    if (rc == MK_OK) rc = d->is_new ? insert_new(d, o, &e) : update_saved(d, o, &e);
    if (rc == MK_OK) {
        d->is_new = false;
        mk_doc_reset_tracking(d);
        rc = mk_doc_settle(d, &e);
    }
    h.result = d;
    rc = mk_hooks_post(m, "save", true, &h, rc, &e);
    if (rc != MK_OK && err) *err = e;
    return rc;
}

int mk_doc_save(mk_doc_t *d, mk_error_t *err)
{
    return mk_doc_save_opts(d, NULL, err);
}

/* ---- deleteOne / updateOne on a document ---- */

int mk_doc_delete_one(mk_doc_t *d, mk_error_t *err)
{
    mk_model_t *m = d->model;
    bson_value_t id;
    if (!mk_doc_lookup(d, "_id", &id))
        return mk_error_set(err, 0, "MongooseError", "This document has no _id to delete by");
    mk_hook_t h = {.doc = d};
    mk_error_t e = {0};
    int rc = mk_hooks_run(m, "deleteOne", MK_HOOK_PRE, true, &h, &e);
    if (rc == MK_OK) {
        bson_t filter = BSON_INITIALIZER, reply = BSON_INITIALIZER;
        rc = bson_append_value(&filter, "_id", 3, &id) ? MK_OK : mk_error_nomem(&e);
        if (rc == MK_OK)
            rc = mk_backend_delete(m->conn->be, mk_client_session_backend(d->session), m->conn->db,
                                   m->collection, &filter, 0, NULL, &reply, &e);
        if (rc == MK_OK && mk_backend_first_write_error(&reply, &e) != MK_OK) {
            as_server_error(&e);
            rc = MK_ERR;
        }
        bson_destroy(&filter);
        bson_destroy(&reply);
    }
    h.result = d;
    rc = mk_hooks_post(m, "deleteOne", true, &h, rc, &e);
    if (rc != MK_OK && err) *err = e;
    return rc;
}

/* doc.updateOne(update): the document's updateOne middleware (registered with
 * MK_HOOK_DOCUMENT) around Model.updateOne({ _id }, update), which runs the query middleware. */
int mk_doc_update_one_args(mk_doc_t *d, const char *json, const mk_arg_t *args, mk_error_t *err)
{
    mk_model_t *m = d->model;
    bson_value_t id;
    if (!mk_doc_lookup(d, "_id", &id))
        return mk_error_set(err, 0, "MongooseError", "This document has no _id to update by");
    bson_t *update = mk_json_parse(json, args, err);
    if (!update) return MK_ERR;
    mk_hook_t h = {.doc = d};
    mk_error_t e = {0};
    int rc = mk_hooks_run(m, "updateOne", MK_HOOK_PRE, true, &h, &e);
    if (rc == MK_OK) {
        bson_t filter = BSON_INITIALIZER;
        mk_query_t *q = bson_append_value(&filter, "_id", 3, &id)
                            ? mk_query_new_bson(m, MK_OP_UPDATE_ONE, &filter, update, &e)
                            : NULL;
        if (!q) {
            rc = e.kind[0] ? MK_ERR : mk_error_nomem(&e);
        } else {
            if (d->session) mk_query_session(q, d->session);
            mk_query_result_t r;
            rc = mk_query_exec(q, &r, &e);
            if (rc == MK_OK) mk_query_result_destroy(&r);
            mk_query_destroy(q);
        }
        bson_destroy(&filter);
    }
    h.result = d;
    rc = mk_hooks_post(m, "updateOne", true, &h, rc, &e);
    if (rc != MK_OK && err) *err = e;
    bson_destroy(update);
    return rc;
}

/* ---- Model.create / insertMany ---- */

mk_doc_t *mk_model_create_args(mk_model_t *m, const char *json, const mk_arg_t *args,
                               mk_error_t *err)
{
    mk_doc_t *d = mk_doc_new_args(m, json, args, err);
    if (!d) return NULL;
    if (mk_doc_save(d, err) != MK_OK) {
        mk_doc_destroy(d);
        return NULL;
    }
    return d;
}

void mk_insert_many_result_destroy(mk_insert_many_result_t *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->ndocs; i++) mk_doc_destroy(r->docs[i]);
    free(r->docs);
    free(r->failures);
    memset(r, 0, sizeof *r);
}

static int add_failure(mk_insert_many_result_t *r, size_t *cap, size_t index, const mk_error_t *e)
{
    if (r->nfailures == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        mk_insert_failure_t *g = realloc(r->failures, c * sizeof *g);
        if (!g) return MK_ENOMEM;
        r->failures = g;
        *cap = c;
    }
    r->failures[r->nfailures].index = index;
    r->failures[r->nfailures].error = *e;
    r->nfailures++;
    return MK_OK;
}

int mk_model_insert_many(mk_model_t *m, const bson_t *input, const mk_insert_many_opts_t *o,
                         mk_insert_many_result_t *result, mk_error_t *err)
{
    mk_insert_many_result_t local = {0};
    mk_insert_many_result_t *r = result ? result : &local;
    memset(r, 0, sizeof *r);
    bool ordered = !(o && o->unordered);
    size_t n = input ? bson_count_keys(input) : 0;
    mk_doc_t **docs = calloc(n ? n : 1, sizeof *docs);
    size_t *index = calloc(n ? n : 1, sizeof *index);
    size_t fcap = 0, nvalid = 0;
    int rc = docs && index ? MK_OK : mk_error_nomem(err);
    mk_error_t first = {0};
    bool failed = false;
    mk_hook_t h = {.docs = docs, .ndocs = 0};
    if (rc == MK_OK && !(o && o->skip_hooks))
        rc = mk_hooks_run(m, "insertMany", MK_HOOK_PRE, true, &h, err);
    bson_iter_t it;
    size_t i = 0;
    if (rc == MK_OK && bson_iter_init(&it, input)) {
        for (; rc == MK_OK && bson_iter_next(&it); i++) {
            mk_error_t e = {0};
            mk_doc_t *d = NULL;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                mk_error_set(&e, 0, "ObjectParameterError",
                             "Parameter \"obj\" to Document() must be an object, got \"%s\"",
                             bson_iter_key(&it));
            } else {
                uint32_t len;
                const uint8_t *data;
                bson_t sub;
                bson_iter_document(&it, &len, &data);
                bson_init_static(&sub, data, len);
                d = mk_doc_from_bson(m, &sub, &e);
                if (d && !(o && o->lean) && run_validation(d, &(mk_dv_opts_t){0}, &e) != MK_OK) {
                    mk_doc_destroy(d);
                    d = NULL;
                }
            }
            if (!d) {
                if (e.code == MK_CODE_INTERNAL && strcmp(e.kind, "OutOfMemory") == 0) {
                    rc = mk_error_nomem(err);
                    break;
                }
                if (!failed) first = e;
                failed = true;
                if (add_failure(r, &fcap, i, &e) != MK_OK) rc = mk_error_nomem(err);
                continue;
            }
            docs[nvalid] = d;
            index[nvalid++] = i;
        }
    }
    /* ordered: a document that fails validation stops the batch before anything is written */
    if (rc == MK_OK && !(ordered && failed) && nvalid > 0) {
        const bson_t **views = calloc(nvalid, sizeof *views);
        bson_t *storage = views ? aligned_alloc(_Alignof(bson_t), nvalid * sizeof(bson_t)) : NULL;
        const mk_schema_options_t *so = mk_schema_options(m->schema);
        int64_t now = mk_odm_now_ms();
        bson_value_t date = {.value_type = BSON_TYPE_DATE_TIME},
                     zero = {.value_type = BSON_TYPE_INT32};
        date.value.v_datetime = now;
        if (!views || !storage) rc = mk_error_nomem(err);
        for (size_t k = 0; rc == MK_OK && k < nvalid; k++) {
            bson_value_t v;
            mk_doc_t *d = docs[k];
            if (so->created_at && !mk_doc_lookup(d, so->created_at, &v))
                rc = mk_doc_store(d, so->created_at, &date, err);
            if (rc == MK_OK && so->updated_at && !mk_doc_lookup(d, so->updated_at, &v))
                rc = mk_doc_store(d, so->updated_at, &date, err);
            if (rc == MK_OK && so->version_key && !mk_doc_lookup(d, so->version_key, &v))
                rc = mk_doc_store(d, so->version_key, &zero, err);
            if (rc == MK_OK) rc = mk_doc_settle(d, err);
            if (rc == MK_OK) {
                bson_init_static(&storage[k], d->data, d->len);
                views[k] = &storage[k];
            }
        }
        bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
        BSON_APPEND_BOOL(&opts, "ordered", ordered);
        if (rc == MK_OK)
            rc = mk_backend_insert_many(
                m->conn->be, mk_client_session_backend(o ? o->session : NULL), m->conn->db,
                m->collection, views, nvalid, &opts, &reply, err);
        if (rc == MK_OK) {
            bool *inserted = calloc(nvalid, sizeof *inserted);
            if (!inserted) {
                rc = mk_error_nomem(err);
            } else {
                mk_backend_inserted(&reply, nvalid, ordered, inserted);
                /* the write errors, by position in the batch */
                bson_iter_t we, e1;
                if (bson_iter_init_find(&we, &reply, "writeErrors") && bson_iter_recurse(&we, &e1))
                    while (rc == MK_OK && bson_iter_next(&e1)) {
                        bson_t one;
                        uint32_t len;
                        const uint8_t *data;
                        bson_iter_document(&e1, &len, &data);
                        bson_init_static(&one, data, len);
                        bson_iter_t f;
                        size_t at = bson_iter_init_find(&f, &one, "index")
                                        ? (size_t)bson_iter_as_int64(&f)
                                        : 0;
                        bson_t wrap = BSON_INITIALIZER, arr;
                        bson_append_array_begin(&wrap, "writeErrors", -1, &arr);
                        BSON_APPEND_DOCUMENT(&arr, "0", &one);
                        bson_append_array_end(&wrap, &arr);
                        mk_error_t e = {0};
                        mk_backend_first_write_error(&wrap, &e);
                        as_server_error(&e);
                        bson_destroy(&wrap);
                        if (!failed) first = e;
                        failed = true;
                        if (at < nvalid && add_failure(r, &fcap, index[at], &e) != MK_OK)
                            rc = mk_error_nomem(err);
                    }
                for (size_t k = 0; k < nvalid; k++) {
                    if (inserted[k]) {
                        docs[k]->is_new = false;
                        mk_doc_reset_tracking(docs[k]);
                        docs[r->ndocs++] = docs[k];
                    } else {
                        mk_doc_destroy(docs[k]);
                    }
                    docs[k] = k < r->ndocs ? docs[k] : NULL;
                }
                nvalid = 0;
                free(inserted);
            }
        }
        bson_destroy(&opts);
        bson_destroy(&reply);
        free(views);
        free(storage);
    }
    for (size_t k = 0; k < nvalid; k++) mk_doc_destroy(docs[k]); /* not inserted */
    r->docs = docs;
    docs = NULL;
    free(index);
    if (rc == MK_OK && failed) {
        if (err) *err = first;
        rc = MK_ERR;
    }
    if (!(o && o->skip_hooks)) {
        h.docs = r->docs;
        h.ndocs = r->ndocs;
        h.result = r->docs;
        rc = mk_hooks_post(m, "insertMany", true, &h, rc, err);
    }
    if (!result) mk_insert_many_result_destroy(&local);
    return rc;
}
