/* Building queries (Mongoose's Query before exec): the model statics that create them, the
 * chain helpers that add conditions (mquery's where/equals/gt/...), and the options.
 * Nothing here touches the database; query_exec.c runs what is built. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "odm/query_internal.h"
#include "odm/setters.h"

const char *mk_query_op_name(mk_query_op_t op)
{
    switch (op) {
    case MK_OP_FIND:
        return "find";
    case MK_OP_FIND_ONE:
        return "findOne";
    case MK_OP_COUNT_DOCUMENTS:
        return "countDocuments";
    case MK_OP_ESTIMATED_DOCUMENT_COUNT:
        return "estimatedDocumentCount";
    case MK_OP_DISTINCT:
        return "distinct";
    case MK_OP_UPDATE_ONE:
        return "updateOne";
    case MK_OP_UPDATE_MANY:
        return "updateMany";
    case MK_OP_REPLACE_ONE:
        return "replaceOne";
    case MK_OP_DELETE_ONE:
        return "deleteOne";
    case MK_OP_DELETE_MANY:
        return "deleteMany";
    case MK_OP_FIND_ONE_AND_UPDATE:
        return "findOneAndUpdate";
    case MK_OP_FIND_ONE_AND_REPLACE:
        return "findOneAndReplace";
    case MK_OP_FIND_ONE_AND_DELETE:
        return "findOneAndDelete";
    }
    return NULL;
}

/* ---------- BSON helpers ---------- */

/* A copy of doc with `key` set to v (in place when present, else appended); v NULL removes
 * the key. Replaces *doc. */
static int doc_set_key(bson_t **doc, const char *key, const bson_value_t *v, mk_error_t *err)
{
    bson_t *out = bson_new();
    if (!out) return mk_error_nomem(err);
    bool done = false, ok = true;
    bson_iter_t it;
    if (*doc && bson_iter_init(&it, *doc))
        while (ok && bson_iter_next(&it)) {
            if (strcmp(bson_iter_key(&it), key) != 0) {
                ok = bson_append_iter(out, NULL, 0, &it);
            } else if (!done) {
                done = true;
                if (v) ok = bson_append_value(out, key, -1, v);
            }
        }
    if (ok && !done && v) ok = bson_append_value(out, key, -1, v);
    if (!ok) {
        bson_destroy(out);
        return mk_error_nomem(err);
    }
    if (*doc) bson_destroy(*doc);
    *doc = out;
    return MK_OK;
}

static bool view_doc(const bson_value_t *v, bson_t *out)
{
    return (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) &&
           bson_init_static(out, v->value.v_doc.data, v->value.v_doc.data_len);
}

/* Mongoose's merge with overwrite: documents merge key by key (recursively), other values
 * replace; new keys are appended. */
static bool merge_docs(const bson_t *to, const bson_t *from, bson_t *out, int depth)
{
    bson_iter_t it, f;
    if (!bson_iter_init(&it, to)) return false;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!bson_iter_init_find(&f, from, k)) {
            if (!bson_append_iter(out, NULL, 0, &it)) return false;
            continue;
        }
        bson_t a, b, child;
        if (depth < 100 && BSON_ITER_HOLDS_DOCUMENT(&it) && BSON_ITER_HOLDS_DOCUMENT(&f) &&
            view_doc(bson_iter_value(&it), &a) && view_doc(bson_iter_value(&f), &b)) {
            if (!bson_append_document_begin(out, k, -1, &child) ||
                !merge_docs(&a, &b, &child, depth + 1) || !bson_append_document_end(out, &child))
                return false;
        } else if (!bson_append_iter(out, k, -1, &f)) {
            return false;
        }
    }
    if (!bson_iter_init(&f, from)) return false;
    while (bson_iter_next(&f))
        if (!bson_has_field(to, bson_iter_key(&f)) && !bson_append_iter(out, NULL, 0, &f))
            return false;
    return true;
}

/* *dst = merge(*dst, src) (*dst NULL: a copy of src). */
static int merge_into(bson_t **dst, const bson_t *src, mk_error_t *err)
{
    bson_t *out = bson_new();
    if (!out) return mk_error_nomem(err);
    bson_t empty = BSON_INITIALIZER;
    if (!merge_docs(*dst ? *dst : &empty, src, out, 0)) {
        bson_destroy(out);
        return mk_error_nomem(err);
    }
    if (*dst) bson_destroy(*dst);
    *dst = out;
    return MK_OK;
}

/* ---------- placeholders of two texts ---------- */

/* The number of `?` placeholders in a relaxed JSON text: those outside strings, comments and
 * regular expression literals. */
static size_t count_placeholders(const char *s)
{
    size_t n = 0;
    for (const char *p = s; p && *p;) {
        char c = *p;
        if (c == '"' || c == '\'') {
            for (p++; *p && *p != c; p++)
                if (*p == '\\' && p[1]) p++;
            if (*p) p++;
        } else if (c == '/' && p[1] == '/') {
            while (*p && *p != '\n') p++;
        } else if (c == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e ? e + 2 : p + strlen(p);
        } else if (c == '/') { /* a regex literal: up to the unescaped '/' outside [...] */
            bool in_class = false;
            for (p++; *p && *p != '\n'; p++) {
                if (*p == '\\' && p[1]) {
                    p++;
                } else if (*p == '[') {
                    in_class = true;
                } else if (*p == ']') {
                    in_class = false;
                } else if (*p == '/' && !in_class) {
                    p++;
                    break;
                }
            }
        } else {
            if (c == '?') n++;
            p++;
        }
    }
    return n;
}

static size_t count_args(const mk_arg_t *args)
{
    size_t n = 0;
    while (args && args[n].type != MK_ARG_END) n++;
    return n;
}

/* Parses text (NULL: {}) with args[from, from + n) into a new document. */
static bson_t *parse_part(const char *text, const mk_arg_t *args, size_t from, size_t n,
                          mk_error_t *err)
{
    mk_arg_t *part = malloc((n + 1) * sizeof *part);
    if (!part) {
        mk_error_nomem(err);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) part[i] = args[from + i];
    part[n] = MK_END;
    bson_t *doc = mk_json_parse(text ? text : "{}", part, err);
    free(part);
    return doc;
}

/* Parses the filter text, then the update text, taking the arguments in order. */
static int parse_two(const char *filter, const char *update, const mk_arg_t *args, bson_t **f,
                     bson_t **u, mk_error_t *err)
{
    size_t total = count_args(args);
    size_t nf = filter ? count_placeholders(filter) : 0;
    if (nf > total) nf = total; /* the parser then reports the missing ones */
    if (update && nf < total && count_placeholders(update) == 0) nf = total;
    *f = parse_part(filter, args, 0, nf, err);
    if (!*f) return MK_ERR;
    if (!u) {
        if (nf < total) {
            bson_destroy(*f);
            *f = NULL;
            return mk_error_setc(err, MK_CODE_FAILED_TO_PARSE, "%zu placeholders but %zu arguments",
                                 nf, total);
        }
        return MK_OK;
    }
    *u = NULL;
    if (update && !(*u = parse_part(update, args, nf, total - nf, err))) {
        bson_destroy(*f);
        *f = NULL;
        return MK_ERR;
    }
    if (!update && nf < total) {
        bson_destroy(*f);
        *f = NULL;
        return mk_error_setc(err, MK_CODE_FAILED_TO_PARSE, "%zu placeholders but %zu arguments", nf,
                             total);
    }
    return MK_OK;
}

/* ---------- construction ---------- */

static bool valid_op(mk_query_op_t op)
{
    return op >= MK_OP_FIND && op <= MK_OP_FIND_ONE_AND_DELETE;
}

static bool op_has_update(mk_query_op_t op)
{
    return op == MK_OP_UPDATE_ONE || op == MK_OP_UPDATE_MANY || op == MK_OP_REPLACE_ONE ||
           op == MK_OP_FIND_ONE_AND_UPDATE || op == MK_OP_FIND_ONE_AND_REPLACE;
}

/* Takes ownership of filter and update. */
static mk_query_t *query_alloc(mk_model_t *model, mk_query_op_t op, bson_t *filter, bson_t *update,
                               mk_error_t *err)
{
    mk_query_t *q = calloc(1, sizeof *q);
    if (!q || !(q->options = bson_new())) {
        free(q);
        if (filter) bson_destroy(filter);
        if (update) bson_destroy(update);
        mk_error_nomem(err);
        return NULL;
    }
    q->model = model;
    q->op = op;
    q->filter = filter;
    q->update = update;
    q->timestamps = -1;
    q->set_defaults_on_insert = -1;
    return q;
}

static int check_new(mk_model_t *model, mk_query_op_t op, mk_error_t *err)
{
    if (!model) return mk_error_set(err, 0, "MongooseError", "a query needs a model");
    if (!valid_op(op)) return mk_error_set(err, 0, "MongooseError", "unknown query op %d", (int)op);
    return MK_OK;
}

mk_query_t *mk_query_new(mk_model_t *model, mk_query_op_t op, const char *filter,
                         const char *update, const mk_arg_t *args, mk_error_t *err)
{
    if (check_new(model, op, err) != MK_OK) return NULL;
    bson_t *f = NULL, *u = NULL;
    if (parse_two(filter, update, args, &f, &u, err) != MK_OK) return NULL;
    if (!u && op_has_update(op) && !(u = bson_new())) {
        bson_destroy(f);
        mk_error_nomem(err);
        return NULL;
    }
    return query_alloc(model, op, f, u, err);
}

mk_query_t *mk_query_new_bson(mk_model_t *model, mk_query_op_t op, const bson_t *filter,
                              const bson_t *update, mk_error_t *err)
{
    if (check_new(model, op, err) != MK_OK) return NULL;
    bson_t *f = filter ? bson_copy(filter) : bson_new();
    bson_t *u = update ? bson_copy(update) : op_has_update(op) ? bson_new() : NULL;
    if (!f || ((update || op_has_update(op)) && !u)) {
        if (f) bson_destroy(f);
        if (u) bson_destroy(u);
        mk_error_nomem(err);
        return NULL;
    }
    return query_alloc(model, op, f, u, err);
}

/* { _id: id } */
static bson_t *id_filter(mk_arg_t id, mk_error_t *err)
{
    mk_arg_t args[2] = {id, MK_END};
    return mk_json_parse("{ _id: ? }", args, err);
}

mk_query_t *mk_find_by_id(mk_model_t *model, mk_arg_t id, mk_error_t *err)
{
    if (check_new(model, MK_OP_FIND_ONE, err) != MK_OK) return NULL;
    bson_t *f = id_filter(id, err);
    return f ? query_alloc(model, MK_OP_FIND_ONE, f, NULL, err) : NULL;
}

mk_query_t *mk_find_by_id_and_update_args(mk_model_t *model, mk_arg_t id, const char *update,
                                          const mk_arg_t *args, mk_error_t *err)
{
    if (check_new(model, MK_OP_FIND_ONE_AND_UPDATE, err) != MK_OK) return NULL;
    bson_t *f = id_filter(id, err);
    if (!f) return NULL;
    bson_t *u = mk_json_parse(update ? update : "{}", args, err);
    if (!u) {
        bson_destroy(f);
        return NULL;
    }
    return query_alloc(model, MK_OP_FIND_ONE_AND_UPDATE, f, u, err);
}

mk_query_t *mk_find_by_id_and_delete(mk_model_t *model, mk_arg_t id, mk_error_t *err)
{
    if (check_new(model, MK_OP_FIND_ONE_AND_DELETE, err) != MK_OK) return NULL;
    bson_t *f = id_filter(id, err);
    return f ? query_alloc(model, MK_OP_FIND_ONE_AND_DELETE, f, NULL, err) : NULL;
}

mk_query_t *mk_distinct_args(mk_model_t *model, const char *field, const char *filter,
                             const mk_arg_t *args, mk_error_t *err)
{
    if (!field || !*field) {
        mk_error_set(err, 0, "MongooseError", "distinct() needs a field name");
        return NULL;
    }
    mk_query_t *q = mk_query_new(model, MK_OP_DISTINCT, filter, NULL, args, err);
    if (q && !(q->distinct_key = strdup(field))) {
        mk_query_destroy(q);
        mk_error_nomem(err);
        return NULL;
    }
    return q;
}

mk_query_t *mk_where(mk_model_t *model, const char *path, mk_error_t *err)
{
    mk_query_t *q = mk_query_new(model, MK_OP_FIND, NULL, NULL, NULL, err);
    if (q && path && !(q->path = strdup(path))) {
        mk_query_destroy(q);
        mk_error_nomem(err);
        return NULL;
    }
    return q;
}

/* ---------- the snapshot taken while middleware runs ---------- */

struct mk_query_snapshot {
    bson_t *filter, *update, *options;
    mk_fields_t fields, user_fields;
    bool lean, sanitize_filter, or_fail, failed;
    int timestamps, set_defaults_on_insert;
    mk_query_op_t op;
    char *path;
    mk_client_session_t *session;
    mk_error_t error;
};

static void snapshot_free(struct mk_query_snapshot *s)
{
    if (!s) return;
    if (s->filter) bson_destroy(s->filter);
    if (s->update) bson_destroy(s->update);
    if (s->options) bson_destroy(s->options);
    mk_fields_destroy(&s->fields);
    mk_fields_destroy(&s->user_fields);
    free(s->path);
    free(s);
}

int mk_query_save_state(mk_query_t *q, mk_error_t *err)
{
    if (!q->executing || q->snap) return MK_OK;
    struct mk_query_snapshot *s = calloc(1, sizeof *s);
    if (!s) return mk_error_nomem(err);
    s->filter = bson_copy(q->filter);
    s->update = q->update ? bson_copy(q->update) : NULL;
    s->options = bson_copy(q->options);
    s->path = q->path ? strdup(q->path) : NULL;
    if (!s->filter || (q->update && !s->update) || !s->options || (q->path && !s->path) ||
        mk_fields_copy(&s->fields, &q->fields) != MK_OK ||
        mk_fields_copy(&s->user_fields, &q->user_fields) != MK_OK) {
        snapshot_free(s);
        return mk_error_nomem(err);
    }
    s->lean = q->lean;
    s->sanitize_filter = q->sanitize_filter;
    s->or_fail = q->or_fail;
    s->failed = q->failed;
    s->error = q->error;
    s->timestamps = q->timestamps;
    s->set_defaults_on_insert = q->set_defaults_on_insert;
    s->op = q->op;
    s->session = q->session;
    q->snap = s;
    return MK_OK;
}

void mk_query_restore_state(mk_query_t *q)
{
    struct mk_query_snapshot *s = q->snap;
    if (!s) return;
    q->snap = NULL;
    bson_destroy(q->filter);
    q->filter = s->filter;
    if (q->update) bson_destroy(q->update);
    q->update = s->update;
    bson_destroy(q->options);
    q->options = s->options;
    mk_fields_destroy(&q->fields);
    q->fields = s->fields;
    mk_fields_destroy(&q->user_fields);
    q->user_fields = s->user_fields;
    free(q->path);
    q->path = s->path;
    q->lean = s->lean;
    q->sanitize_filter = s->sanitize_filter;
    q->or_fail = s->or_fail;
    q->failed = s->failed;
    q->error = s->error;
    q->timestamps = s->timestamps;
    q->set_defaults_on_insert = s->set_defaults_on_insert;
    q->op = s->op;
    q->session = s->session;
    free(s);
}

void mk_query_destroy(mk_query_t *q)
{
    if (!q) return;
    snapshot_free(q->snap);
    bson_destroy(q->filter);
    if (q->update) bson_destroy(q->update);
    bson_destroy(q->options);
    mk_fields_destroy(&q->fields);
    mk_fields_destroy(&q->user_fields);
    free(q->distinct_key);
    free(q->path);
    free(q);
}

mk_model_t *mk_query_model(const mk_query_t *q)
{
    return q ? q->model : NULL;
}

mk_query_op_t mk_query_op(const mk_query_t *q)
{
    return q ? q->op : 0;
}

int mk_query_set_op_args(mk_query_t *q, mk_query_op_t op, const char *update, const mk_arg_t *args,
                         mk_error_t *err)
{
    if (!q) return mk_error_set(err, 0, "MongooseError", "mk_query_set_op: query is NULL");
    if (!valid_op(op)) return mk_error_set(err, 0, "MongooseError", "unknown query op %d", (int)op);
    bson_t *u = NULL;
    if (update && !(u = mk_json_parse(update, args, err))) return MK_ERR;
    if (mk_query_save_state(q, err) != MK_OK) {
        if (u) bson_destroy(u);
        return MK_ENOMEM;
    }
    int rc = MK_OK;
    if (u) {
        rc = merge_into(&q->update, u, err);
        bson_destroy(u);
    } else if (!q->update && op_has_update(op) && !(q->update = bson_new())) {
        rc = mk_error_nomem(err);
    }
    if (rc == MK_OK) q->op = op;
    return rc;
}

/* ---------- chain helpers ---------- */

/* Records the first chain error and returns NULL. */
static mk_query_t *chain_fail(mk_query_t *q, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static mk_query_t *chain_fail(mk_query_t *q, const char *kind, const char *fmt, ...)
{
    if (!q->failed) {
        char msg[MK_ERROR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        mk_error_set(&q->error, 0, kind, "%s", msg);
        q->failed = true;
    }
    return NULL;
}

/* Records err (a parse failure, out of memory) as the chain error. */
static mk_query_t *chain_error(mk_query_t *q, const mk_error_t *e)
{
    if (!q->failed) {
        q->error = *e;
        q->failed = true;
    }
    return NULL;
}

static bool chain_ok(mk_query_t *q)
{
    if (!q || q->failed) return false;
    mk_error_t e = {0};
    if (mk_query_save_state(q, &e) != MK_OK) {
        chain_error(q, &e);
        return false;
    }
    return true;
}

mk_query_t *mk_query_where(mk_query_t *q, const char *path)
{
    if (!chain_ok(q)) return NULL;
    if (!path || !*path)
        return chain_fail(q, "Error", "Invalid argument to where(): a path is needed");
    char *p = strdup(path);
    if (!p) return chain_fail(q, "MongooseError", "out of memory");
    free(q->path);
    q->path = p;
    return q;
}

mk_query_t *mk_query_where_json(mk_query_t *q, const char *json, const mk_arg_t *args)
{
    if (!chain_ok(q)) return NULL;
    mk_error_t e = {0};
    bson_t *cond = mk_json_parse(json ? json : "{}", args, &e);
    if (!cond) return chain_error(q, &e);
    int rc = merge_into(&q->filter, cond, &e);
    bson_destroy(cond);
    return rc == MK_OK ? q : chain_error(q, &e);
}

/* The condition object at the current path gets `op: v` (mquery's conds[op] = val); op NULL
 * sets the path itself (equals). */
static mk_query_t *set_cond(mk_query_t *q, const char *method, const char *op,
                            const bson_value_t *v)
{
    if (!q->path)
        return chain_fail(q, "Error",
                          "%s() must be used after where() when called with these "
                          "arguments",
                          method);
    mk_error_t e = {0};
    if (!op) return doc_set_key(&q->filter, q->path, v, &e) == MK_OK ? q : chain_error(q, &e);
    bson_t *conds = NULL;
    bson_iter_t it;
    bson_t existing;
    if (bson_iter_init_find(&it, q->filter, q->path) && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        view_doc(bson_iter_value(&it), &existing) && !(conds = bson_copy(&existing)))
        return chain_fail(q, "MongooseError", "out of memory");
    int rc = doc_set_key(&conds, op, v, &e);
    if (rc == MK_OK) {
        bson_value_t cv = {.value_type = BSON_TYPE_DOCUMENT};
        cv.value.v_doc.data = (uint8_t *)bson_get_data(conds);
        cv.value.v_doc.data_len = conds->len;
        rc = doc_set_key(&q->filter, q->path, &cv, &e);
    }
    if (conds) bson_destroy(conds);
    return rc == MK_OK ? q : chain_error(q, &e);
}

/* The value of one bound argument: parsed into a holder document, viewed in *v. */
static bson_t *arg_value(mk_query_t *q, mk_arg_t a, bson_value_t *v)
{
    mk_arg_t args[2] = {a, MK_END};
    mk_error_t e = {0};
    bson_t *holder = mk_json_parse("{ v: ? }", args, &e);
    bson_iter_t it;
    if (!holder) {
        chain_error(q, &e);
        return NULL;
    }
    if (!bson_iter_init_find(&it, holder, "v")) {
        bson_destroy(holder);
        chain_fail(q, "MongooseError", "bad argument");
        return NULL;
    }
    *v = *bson_iter_value(&it);
    return holder;
}

static mk_query_t *cond_arg(mk_query_t *q, const char *method, const char *op, mk_arg_t a)
{
    if (!chain_ok(q)) return NULL;
    if (!q->path)
        return chain_fail(q, "Error",
                          "%s() must be used after where() when called with these "
                          "arguments",
                          method);
    bson_value_t v;
    bson_t *holder = arg_value(q, a, &v);
    if (!holder) return NULL;
    mk_query_t *r = set_cond(q, method, op, &v);
    bson_destroy(holder);
    return r;
}

mk_query_t *mk_query_equals(mk_query_t *q, mk_arg_t v)
{
    return cond_arg(q, "equals", NULL, v);
}
mk_query_t *mk_query_gt(mk_query_t *q, mk_arg_t v)
{
    return cond_arg(q, "gt", "$gt", v);
}
mk_query_t *mk_query_gte(mk_query_t *q, mk_arg_t v)
{
    return cond_arg(q, "gte", "$gte", v);
}
mk_query_t *mk_query_lt(mk_query_t *q, mk_arg_t v)
{
    return cond_arg(q, "lt", "$lt", v);
}
mk_query_t *mk_query_lte(mk_query_t *q, mk_arg_t v)
{
    return cond_arg(q, "lte", "$lte", v);
}
mk_query_t *mk_query_ne(mk_query_t *q, mk_arg_t v)
{
    return cond_arg(q, "ne", "$ne", v);
}

/* A JSON text (object or array, as `want_array` says) as a value under the current path. */
static mk_query_t *cond_json(mk_query_t *q, const char *method, const char *op, const char *json,
                             const mk_arg_t *args, bool want_array)
{
    if (!chain_ok(q)) return NULL;
    if (!q->path)
        return chain_fail(q, "Error",
                          "%s() must be used after where() when called with these "
                          "arguments",
                          method);
    bson_t doc = BSON_INITIALIZER;
    bool is_array = false;
    mk_error_t e = {0};
    const char *text = json ? json : (want_array ? "[]" : "{}");
    if (mk_json_parse_into(&doc, text, strlen(text), args, &is_array, &e) != MK_OK) {
        bson_destroy(&doc);
        return chain_error(q, &e);
    }
    if (is_array != want_array) {
        bson_destroy(&doc);
        return chain_fail(q, "TypeError", "%s() needs %s", method,
                          want_array ? "an array of values" : "an object");
    }
    bson_value_t v = {.value_type = is_array ? BSON_TYPE_ARRAY : BSON_TYPE_DOCUMENT};
    v.value.v_doc.data = (uint8_t *)bson_get_data(&doc);
    v.value.v_doc.data_len = doc.len;
    mk_query_t *r = set_cond(q, method, op, &v);
    bson_destroy(&doc);
    return r;
}

mk_query_t *mk_query_in(mk_query_t *q, const char *values, const mk_arg_t *args)
{
    return cond_json(q, "in", "$in", values, args, true);
}
mk_query_t *mk_query_nin(mk_query_t *q, const char *values, const mk_arg_t *args)
{
    return cond_json(q, "nin", "$nin", values, args, true);
}
mk_query_t *mk_query_all(mk_query_t *q, const char *values, const mk_arg_t *args)
{
    return cond_json(q, "all", "$all", values, args, true);
}
mk_query_t *mk_query_elem_match(mk_query_t *q, const char *json, const mk_arg_t *args)
{
    return cond_json(q, "elemMatch", "$elemMatch", json, args, false);
}

mk_query_t *mk_query_exists(mk_query_t *q, bool exists)
{
    if (!chain_ok(q)) return NULL;
    bson_value_t v = {.value_type = BSON_TYPE_BOOL, .value.v_bool = exists};
    return set_cond(q, "exists", "$exists", &v);
}

mk_query_t *mk_query_regex(mk_query_t *q, const char *pattern, const char *flags)
{
    if (!chain_ok(q)) return NULL;
    if (!pattern) return chain_fail(q, "TypeError", "regex() needs a pattern");
    bson_value_t v = {.value_type = BSON_TYPE_REGEX};
    v.value.v_regex.regex = (char *)pattern;
    v.value.v_regex.options = (char *)(flags ? flags : "");
    return set_cond(q, "regex", "$regex", &v);
}

static bson_value_t number_value(int64_t n)
{
    bson_value_t v;
    if (n >= INT32_MIN && n <= INT32_MAX) {
        v.value_type = BSON_TYPE_INT32;
        v.value.v_int32 = (int32_t)n;
    } else {
        v.value_type = BSON_TYPE_INT64;
        v.value.v_int64 = n;
    }
    return v;
}

mk_query_t *mk_query_size(mk_query_t *q, int64_t n)
{
    if (!chain_ok(q)) return NULL;
    bson_value_t v = number_value(n);
    return set_cond(q, "size", "$size", &v);
}

mk_query_t *mk_query_mod(mk_query_t *q, int64_t divisor, int64_t remainder)
{
    if (!chain_ok(q)) return NULL;
    bson_t arr = BSON_INITIALIZER;
    bson_value_t a = number_value(divisor), b = number_value(remainder);
    if (!bson_append_value(&arr, "0", 1, &a) || !bson_append_value(&arr, "1", 1, &b)) {
        bson_destroy(&arr);
        return chain_fail(q, "MongooseError", "out of memory");
    }
    bson_value_t v = {.value_type = BSON_TYPE_ARRAY};
    v.value.v_doc.data = (uint8_t *)bson_get_data(&arr);
    v.value.v_doc.data_len = arr.len;
    mk_query_t *r = set_cond(q, "mod", "$mod", &v);
    bson_destroy(&arr);
    return r;
}

/* $or / $and / $nor: the conditions are appended to the array the filter has. */
static mk_query_t *logical(mk_query_t *q, const char *op, const char *conditions,
                           const mk_arg_t *args)
{
    if (!chain_ok(q)) return NULL;
    bson_t parsed = BSON_INITIALIZER;
    bool is_array = false;
    mk_error_t e = {0};
    const char *text = conditions ? conditions : "[]";
    if (mk_json_parse_into(&parsed, text, strlen(text), args, &is_array, &e) != MK_OK) {
        bson_destroy(&parsed);
        return chain_error(q, &e);
    }
    bson_t arr = BSON_INITIALIZER;
    uint32_t n = 0;
    bool ok = true;
    char kb[16];
    const char *k;
    bson_iter_t it;
    if (bson_iter_init_find(&it, q->filter, op) && BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_t el;
        if (bson_iter_recurse(&it, &el))
            while (ok && bson_iter_next(&el)) {
                bson_uint32_to_string(n++, &k, kb, sizeof kb);
                ok = bson_append_iter(&arr, k, -1, &el);
            }
    }
    if (is_array) {
        bson_iter_t el;
        if (bson_iter_init(&el, &parsed))
            while (ok && bson_iter_next(&el)) {
                bson_uint32_to_string(n++, &k, kb, sizeof kb);
                ok = bson_append_iter(&arr, k, -1, &el);
            }
    } else { /* one object: as mquery, [object] */
        bson_uint32_to_string(n++, &k, kb, sizeof kb);
        ok = bson_append_document(&arr, k, -1, &parsed);
    }
    mk_query_t *r = q;
    if (!ok) {
        r = chain_fail(q, "MongooseError", "out of memory");
    } else {
        bson_value_t v = {.value_type = BSON_TYPE_ARRAY};
        v.value.v_doc.data = (uint8_t *)bson_get_data(&arr);
        v.value.v_doc.data_len = arr.len;
        if (doc_set_key(&q->filter, op, &v, &e) != MK_OK) r = chain_error(q, &e);
    }
    bson_destroy(&arr);
    bson_destroy(&parsed);
    return r;
}

mk_query_t *mk_query_or(mk_query_t *q, const char *conditions, const mk_arg_t *args)
{
    return logical(q, "$or", conditions, args);
}
mk_query_t *mk_query_and(mk_query_t *q, const char *conditions, const mk_arg_t *args)
{
    return logical(q, "$and", conditions, args);
}
mk_query_t *mk_query_nor(mk_query_t *q, const char *conditions, const mk_arg_t *args)
{
    return logical(q, "$nor", conditions, args);
}

const mk_error_t *mk_query_error(const mk_query_t *q)
{
    return q && q->failed ? &q->error : NULL;
}

/* ---------- options ---------- */

static mk_query_t *set_option(mk_query_t *q, const char *key, const bson_value_t *v)
{
    mk_error_t e = {0};
    return doc_set_key(&q->options, key, v, &e) == MK_OK ? q : chain_error(q, &e);
}

/* One sort value as mquery normalises it: 1 / -1 (asc, ascending, desc, descending, "1",
 * "-1"; a falsy value counts as 1), or a { $meta } object kept as it is. */
static int sort_direction(const char *field, const bson_value_t *v, bson_value_t *out,
                          mk_error_t *err)
{
    bson_t d;
    if (v->value_type == BSON_TYPE_DOCUMENT && view_doc(v, &d) && bson_has_field(&d, "$meta")) {
        *out = *v;
        return MK_OK;
    }
    char text[64] = "1";
    if (mk_js_truthy(v)) {
        switch (v->value_type) {
        case BSON_TYPE_INT32:
            snprintf(text, sizeof text, "%d", v->value.v_int32);
            break;
        case BSON_TYPE_INT64:
            snprintf(text, sizeof text, "%lld", (long long)v->value.v_int64);
            break;
        case BSON_TYPE_DOUBLE:
            mk_cast_js_number_string(v->value.v_double, text);
            break;
        case BSON_TYPE_UTF8:
            snprintf(text, sizeof text, "%s", v->value.v_utf8.str);
            for (char *c = text; *c; c++) *c = (char)tolower((unsigned char)*c);
            break;
        default:
            snprintf(text, sizeof text, "?");
            break;
        }
    }
    int dir = 0;
    if (!strcmp(text, "1") || !strcmp(text, "asc") || !strcmp(text, "ascending")) dir = 1;
    if (!strcmp(text, "-1") || !strcmp(text, "desc") || !strcmp(text, "descending")) dir = -1;
    if (!dir) {
        bson_string_t *s = bson_string_new(NULL);
        if (v->value_type == BSON_TYPE_UTF8)
            bson_string_append(s, v->value.v_utf8.str);
        else
            mk_cast_inspect(s, v);
        mk_error_set(err, 0, "TypeError", "Invalid sort value: {%s: %s }", field, s->str);
        bson_string_free(s, true);
        return MK_ERR;
    }
    out->value_type = BSON_TYPE_INT32;
    out->value.v_int32 = dir;
    return MK_OK;
}

/* Adds the keys of a sort (text or parsed document) to options.sort. */
static int sort_merge(mk_query_t *q, const bson_t *spec, const char *text, mk_error_t *err)
{
    bson_t *sort = NULL;
    bson_iter_t it;
    bson_t existing;
    if (bson_iter_init_find(&it, q->options, "sort") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        view_doc(bson_iter_value(&it), &existing) && !(sort = bson_copy(&existing)))
        return mk_error_nomem(err);
    if (!sort && !(sort = bson_new())) return mk_error_nomem(err);
    int rc = MK_OK;
    if (spec) {
        if (bson_iter_init(&it, spec))
            while (rc == MK_OK && bson_iter_next(&it)) {
                bson_value_t dir;
                const char *k = bson_iter_key(&it);
                if (!*k)
                    rc = mk_error_set(err, 0, "Error", "Invalid field \"\" passed to sort()");
                else if ((rc = sort_direction(k, bson_iter_value(&it), &dir, err)) == MK_OK)
                    rc = doc_set_key(&sort, k, &dir, err);
            }
    } else {
        for (const char *p = text; rc == MK_OK && *p;) {
            size_t n = strcspn(p, " \t\r\n");
            if (n > 0) {
                bool desc = p[0] == '-';
                char *field = strndup(p + desc, n - desc);
                bson_value_t dir = {.value_type = BSON_TYPE_INT32, .value.v_int32 = desc ? -1 : 1};
                if (!field)
                    rc = mk_error_nomem(err);
                else if (!*field)
                    rc = mk_error_set(err, 0, "Error", "Invalid field \"\" passed to sort()");
                else
                    rc = doc_set_key(&sort, field, &dir, err);
                free(field);
            }
            p += n;
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        }
    }
    if (rc == MK_OK) {
        bson_value_t v = {.value_type = BSON_TYPE_DOCUMENT};
        v.value.v_doc.data = (uint8_t *)bson_get_data(sort);
        v.value.v_doc.data_len = sort->len;
        rc = doc_set_key(&q->options, "sort", &v, err);
    }
    bson_destroy(sort);
    return rc;
}

static bool text_is_object(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    return *s == '{';
}

mk_query_t *mk_query_sort(mk_query_t *q, const char *sort)
{
    if (!chain_ok(q)) return NULL;
    if (!sort || !sort[strspn(sort, " \t\r\n")]) return q; /* sort('') does nothing */
    mk_error_t e = {0};
    int rc;
    if (text_is_object(sort)) {
        bson_t *spec = mk_json_parse(sort, NULL, &e);
        if (!spec) return chain_error(q, &e);
        rc = sort_merge(q, spec, NULL, &e);
        bson_destroy(spec);
    } else {
        rc = sort_merge(q, NULL, sort, &e);
    }
    return rc == MK_OK ? q : chain_error(q, &e);
}

mk_query_t *mk_query_skip(mk_query_t *q, int64_t n)
{
    if (!chain_ok(q)) return NULL;
    bson_value_t v = number_value(n);
    return set_option(q, "skip", &v);
}

mk_query_t *mk_query_limit(mk_query_t *q, int64_t n)
{
    if (!chain_ok(q)) return NULL;
    bson_value_t v = number_value(n);
    return set_option(q, "limit", &v);
}

mk_query_t *mk_query_batch_size(mk_query_t *q, int32_t n)
{
    if (!chain_ok(q)) return NULL;
    bson_value_t v = number_value(n);
    return set_option(q, "batchSize", &v);
}

mk_query_t *mk_query_max_time_ms(mk_query_t *q, int64_t ms)
{
    if (!chain_ok(q)) return NULL;
    bson_value_t v = number_value(ms);
    return set_option(q, "maxTimeMS", &v);
}

mk_query_t *mk_query_hint(mk_query_t *q, const char *hint)
{
    if (!chain_ok(q)) return NULL;
    if (!hint) return q;
    if (!text_is_object(hint)) {
        bson_value_t v = {.value_type = BSON_TYPE_UTF8};
        v.value.v_utf8.str = (char *)hint;
        v.value.v_utf8.len = (uint32_t)strlen(hint);
        return set_option(q, "hint", &v);
    }
    mk_error_t e = {0};
    bson_t *spec = mk_json_parse(hint, NULL, &e);
    if (!spec) return chain_error(q, &e);
    bson_value_t v = {.value_type = BSON_TYPE_DOCUMENT};
    v.value.v_doc.data = (uint8_t *)bson_get_data(spec);
    v.value.v_doc.data_len = spec->len;
    mk_query_t *r = set_option(q, "hint", &v);
    bson_destroy(spec);
    return r;
}

mk_query_t *mk_query_comment(mk_query_t *q, const char *comment)
{
    if (!chain_ok(q)) return NULL;
    if (!comment) return q;
    bson_value_t v = {.value_type = BSON_TYPE_UTF8};
    v.value.v_utf8.str = (char *)comment;
    v.value.v_utf8.len = (uint32_t)strlen(comment);
    return set_option(q, "comment", &v);
}

mk_query_t *mk_query_lean(mk_query_t *q, bool lean)
{
    if (!chain_ok(q)) return NULL;
    q->lean = lean;
    return q;
}

mk_query_t *mk_query_session(mk_query_t *q, mk_client_session_t *s)
{
    if (!chain_ok(q)) return NULL;
    q->session = s;
    return q;
}

mk_query_t *mk_query_or_fail(mk_query_t *q)
{
    if (!chain_ok(q)) return NULL;
    q->or_fail = true;
    return q;
}

mk_query_t *mk_query_select(mk_query_t *q, const char *projection)
{
    if (!chain_ok(q)) return NULL;
    if (!projection) return q;
    mk_fields_t arg;
    mk_error_t e = {0};
    if (mk_projection_parse(projection, &arg, &e) != MK_OK) return chain_error(q, &e);
    int rc = mk_projection_select(&q->fields, &q->user_fields, &arg, &e);
    mk_fields_destroy(&arg);
    return rc == MK_OK ? q : chain_error(q, &e);
}

/* Query#projection(arg): replaces the selected fields. */
static int set_projection(mk_query_t *q, const bson_value_t *v, mk_error_t *err)
{
    mk_fields_destroy(&q->fields);
    mk_fields_destroy(&q->user_fields);
    if (v->value_type == BSON_TYPE_NULL) return MK_OK;
    mk_fields_t arg;
    int rc;
    if (v->value_type == BSON_TYPE_UTF8) {
        rc = mk_projection_parse(v->value.v_utf8.str, &arg, err);
    } else {
        bson_t d;
        if (v->value_type != BSON_TYPE_DOCUMENT || !view_doc(v, &d))
            return mk_error_set(err, 0, "TypeError",
                                "Invalid select() argument. Must be string or object.");
        memset(&arg, 0, sizeof arg);
        bson_iter_t it;
        rc = MK_OK;
        if (bson_iter_init(&it, &d))
            while (rc == MK_OK && bson_iter_next(&it))
                if (mk_fields_set(&arg, bson_iter_key(&it), bson_iter_value(&it)) != MK_OK)
                    rc = mk_error_nomem(err);
    }
    if (rc == MK_OK) rc = mk_projection_select(&q->fields, &q->user_fields, &arg, err);
    mk_fields_destroy(&arg);
    return rc;
}

/* What setOptions accepts. Mongoose passes unknown options on to the driver; here they are an
 * error, so that a misspelt option is never silently ignored. */
static const char *const known_options[] = {"new",
                                            "returnDocument",
                                            "upsert",
                                            "sort",
                                            "projection",
                                            "runValidators",
                                            "context",
                                            "strict",
                                            "strictQuery",
                                            "sanitizeFilter",
                                            "timestamps",
                                            "overwriteDiscriminatorKey",
                                            "setDefaultsOnInsert",
                                            "lean",
                                            "skip",
                                            "limit",
                                            "batchSize",
                                            "maxTimeMS",
                                            "hint",
                                            "comment",
                                            "arrayFilters",
                                            "collation",
                                            NULL};
static const char *const unsupported_options[] = {
    "populate",          "session",        "includeResultMetadata", "rawResult", "translateAliases",
    "multipleCastError", "readPreference", "writeConcern",          "explain",   NULL};

static bool in_list(const char *const *list, const char *k)
{
    for (; *list; list++)
        if (strcmp(*list, k) == 0) return true;
    return false;
}

/* Checks one option's value before anything is applied. */
static int check_option(const char *k, const bson_value_t *v, mk_error_t *err)
{
    if (in_list(unsupported_options, k))
        return mk_error_set(err, 0, "MongooseError",
                            "setOptions: the option `%s` is not supported (yet)", k);
    if (!in_list(known_options, k))
        return mk_error_set(err, 0, "MongooseError", "setOptions: unknown option `%s`", k);
    bool number = v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64 ||
                  v->value_type == BSON_TYPE_DOUBLE;
    if ((!strcmp(k, "skip") || !strcmp(k, "limit") || !strcmp(k, "batchSize") ||
         !strcmp(k, "maxTimeMS")) &&
        !number)
        return mk_error_set(err, 0, "TypeError", "setOptions: `%s` must be a number", k);
    if (!strcmp(k, "returnDocument") &&
        (v->value_type != BSON_TYPE_UTF8 ||
         (strcmp(v->value.v_utf8.str, "before") && strcmp(v->value.v_utf8.str, "after"))))
        return mk_error_set(err, 0, "MongooseError",
                            "setOptions: `returnDocument` must be 'before' or 'after'");
    if (!strcmp(k, "context") && v->value_type != BSON_TYPE_NULL &&
        (v->value_type != BSON_TYPE_UTF8 || strcmp(v->value.v_utf8.str, "query")))
        return mk_error_set(err, 0, "MongooseError",
                            "setOptions: `context` can only be 'query' (or null)");
    if ((!strcmp(k, "strict") || !strcmp(k, "strictQuery")) && v->value_type != BSON_TYPE_BOOL &&
        (v->value_type != BSON_TYPE_UTF8 || strcmp(v->value.v_utf8.str, "throw")))
        return mk_error_set(err, 0, "MongooseError",
                            "setOptions: `%s` must be true, false or 'throw'", k);
    if (!strcmp(k, "sort") && v->value_type != BSON_TYPE_UTF8 &&
        v->value_type != BSON_TYPE_DOCUMENT)
        return mk_error_set(err, 0, "TypeError",
                            "Invalid sort() argument. Must be a string or object.");
    return MK_OK;
}

static int apply_option(mk_query_t *q, const char *k, const bson_value_t *v, mk_error_t *err)
{
    if (!strcmp(k, "sort")) {
        bson_t d;
        if (v->value_type == BSON_TYPE_UTF8) return sort_merge(q, NULL, v->value.v_utf8.str, err);
        return view_doc(v, &d) ? sort_merge(q, &d, NULL, err) : MK_OK;
    }
    if (!strcmp(k, "projection")) return set_projection(q, v, err);
    if (!strcmp(k, "lean")) {
        q->lean = mk_js_truthy(v);
        return MK_OK;
    }
    if (!strcmp(k, "sanitizeFilter")) {
        q->sanitize_filter = mk_js_truthy(v);
        return MK_OK;
    }
    if (!strcmp(k, "timestamps")) {
        q->timestamps = mk_js_truthy(v) ? 1 : 0;
        return MK_OK;
    }
    if (!strcmp(k, "setDefaultsOnInsert")) {
        q->set_defaults_on_insert = mk_js_truthy(v) ? 1 : 0;
        return MK_OK;
    }
    if (!strcmp(k, "overwriteDiscriminatorKey")) return MK_OK; /* no discriminators yet */
    return doc_set_key(&q->options, k, v, err);
}

int mk_query_set_options(mk_query_t *q, const char *json, const mk_arg_t *args, mk_error_t *err)
{
    if (!q) return mk_error_set(err, 0, "MongooseError", "mk_query_set_options: query is NULL");
    bson_t *opts = mk_json_parse(json ? json : "{}", args, err);
    if (!opts) return MK_ERR;
    bson_iter_t it;
    int rc = MK_OK;
    if (bson_iter_init(&it, opts))
        while (rc == MK_OK && bson_iter_next(&it))
            rc = check_option(bson_iter_key(&it), bson_iter_value(&it), err);
    if (rc == MK_OK) rc = mk_query_save_state(q, err);
    if (rc == MK_OK && bson_iter_init(&it, opts))
        while (rc == MK_OK && bson_iter_next(&it))
            rc = apply_option(q, bson_iter_key(&it), bson_iter_value(&it), err);
    bson_destroy(opts);
    return rc;
}

const bson_t *mk_query_get_options(const mk_query_t *q)
{
    return q ? q->options : NULL;
}

const bson_t *mk_query_get_filter(const mk_query_t *q)
{
    if (!q) return NULL;
    return q->cast_filter ? q->cast_filter : q->filter;
}

const bson_t *mk_query_get_update(const mk_query_t *q)
{
    if (!q) return NULL;
    return q->cast_update ? q->cast_update : q->update;
}

int mk_query_set_filter(mk_query_t *q, const char *json, const mk_arg_t *args, mk_error_t *err)
{
    if (!q) return mk_error_set(err, 0, "MongooseError", "mk_query_set_filter: query is NULL");
    bson_t *f = mk_json_parse(json ? json : "{}", args, err);
    if (!f) return MK_ERR;
    if (mk_query_save_state(q, err) != MK_OK) {
        bson_destroy(f);
        return MK_ENOMEM;
    }
    bson_destroy(q->filter);
    q->filter = f;
    q->cast_filter = NULL; /* casting the new filter is the execution's business */
    return MK_OK;
}

int mk_query_set_update(mk_query_t *q, const char *json, const mk_arg_t *args, mk_error_t *err)
{
    if (!q) return mk_error_set(err, 0, "MongooseError", "mk_query_set_update: query is NULL");
    bson_t *u = mk_json_parse(json ? json : "{}", args, err);
    if (!u) return MK_ERR;
    if (mk_query_save_state(q, err) != MK_OK) {
        bson_destroy(u);
        return MK_ENOMEM;
    }
    if (q->update) bson_destroy(q->update);
    q->update = u;
    q->cast_update = NULL;
    return MK_OK;
}

mk_client_session_t *mk_query_get_session(const mk_query_t *q)
{
    return q ? q->session : NULL;
}
