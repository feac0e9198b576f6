/* Aggregation expressions (see expr.h).
 *
 * The spec is copied once; the compiled tree points into the copy. Every evaluation result is
 * an owned bson_value_t (libbson's allocator, so bson_value_destroy frees it); "missing" is
 * BSON_TYPE_EOD. Operators are rows of `ops` below: a name, an argument count and an
 * evaluation function, so adding one is adding a row and a function. */
#include "engine/expr.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"

#define MAX_EXPR_DEPTH                 150
#define CODE_INVALID_PIPELINE_OPERATOR 168

typedef struct xnode xnode_t;

/* What an evaluation sees: $$ROOT (and $$CURRENT, the same document for now). */
typedef struct xctx {
    const uint8_t *root;
    uint32_t root_len;
} xctx_t;

typedef int (*xeval_fn)(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err);

typedef struct opdef {
    const char *name;
    int min_args, max_args; /* -1: no limit */
    xeval_fn eval;
} opdef_t;

typedef enum xkind { X_CONST, X_PATH, X_OBJECT, X_ARRAY, X_OP } xkind_t;
enum { VAR_ROOT, VAR_CURRENT, VAR_REMOVE };

typedef struct comp {
    const char *s; /* not NUL-terminated */
    uint32_t len;
} comp_t;

struct xnode {
    xkind_t kind;
    bson_value_t c; /* X_CONST, borrowed from the spec copy */
    int var;        /* X_PATH */
    comp_t *comps;
    uint32_t ncomps;
    const char **keys; /* X_OBJECT field names, in the spec copy */
    xnode_t **kids;    /* X_OBJECT values, X_ARRAY elements, X_OP arguments */
    uint32_t nkids;
    const opdef_t *op;
};

struct mk_expr {
    bson_t *spec;
    xnode_t *root;
};

/* ------------------------------------------------------------------------------------------ */
/* Errors and small helpers */

static int xfail(mk_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int xfail(mk_error_t *err, int code, const char *fmt, ...)
{
    if (!err) return MK_ERR;
    char msg[MK_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char kind[MK_ERROR_KIND_MAX];
    const char *name = mk_error_code_name(code);
    if (code == CODE_INVALID_PIPELINE_OPERATOR)
        name = "InvalidPipelineOperator";
    else if (strcmp(name, "Location") == 0) {
        snprintf(kind, sizeof kind, "Location%d", code);
        name = kind;
    }
    return mk_error_set(err, code, name, "%s", msg);
}

static void set_null(bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_NULL;
}

static void set_missing(bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_EOD;
}

static void set_bool(bson_value_t *out, bool b)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_BOOL;
    out->value.v_bool = b;
}

static void set_i32(bson_value_t *out, int32_t i)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_INT32;
    out->value.v_int32 = i;
}

static void set_i64(bson_value_t *out, int64_t i)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_INT64;
    out->value.v_int64 = i;
}

static void set_double(bson_value_t *out, double d)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_DOUBLE;
    out->value.v_double = d;
}

static void set_date(bson_value_t *out, int64_t ms)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_DATE_TIME;
    out->value.v_datetime = ms;
}

/* Moves a built document or array into `out` (owned; bson_value_destroy frees it). */
static void take_doc(bson_t *b, bson_type_t t, bson_value_t *out)
{
    uint32_t len = 0;
    uint8_t *data = bson_destroy_with_steal(b, true, &len);
    memset(out, 0, sizeof *out);
    out->value_type = t;
    out->value.v_doc.data = data;
    out->value.v_doc.data_len = len;
}

static bool is_nullish(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_NULL ||
           v->value_type == BSON_TYPE_UNDEFINED;
}

static const char *tname(const bson_value_t *v)
{
    return mk_type_name(v->value_type);
}

bool mk_expr_truthy(const bson_value_t *v)
{
    return mk_value_truthy(v);
}

static int agg_rank(bson_type_t t)
{
    /* missing sorts with undefined, below null */
    return t == BSON_TYPE_EOD ? mk_type_rank(BSON_TYPE_UNDEFINED) : mk_type_rank(t);
}

int mk_expr_value_cmp(const bson_value_t *a, const bson_value_t *b)
{
    int ra = agg_rank(a->value_type), rb = agg_rank(b->value_type);
    if (ra != rb) return ra < rb ? -1 : 1;
    if (ra == mk_type_rank(BSON_TYPE_UNDEFINED)) return 0;
    return mk_value_cmp(a, b);
}

/* ------------------------------------------------------------------------------------------ */
/* Compilation */

typedef struct xstate {
    mk_error_t *err;
    int depth;
} xstate_t;

static void xnode_free(xnode_t *n)
{
    if (!n) return;
    for (uint32_t i = 0; i < n->nkids; i++) xnode_free(n->kids[i]);
    free(n->kids);
    free(n->keys);
    free(n->comps);
    free(n);
}

static xnode_t *xnode_new(xstate_t *xs, xkind_t kind)
{
    xnode_t *n = calloc(1, sizeof *n);
    if (!n)
        mk_error_nomem(xs->err);
    else
        n->kind = kind;
    return n;
}

static int compile(xstate_t *xs, const bson_value_t *v, xnode_t **out);

static const opdef_t *op_lookup(const char *name);

/* A field path '$a.b' or a variable '$$ROOT.a.b'. */
static int compile_path(xstate_t *xs, const char *s, uint32_t len, xnode_t **out)
{
    const char *p = s + 1, *end = s + len;
    int var = VAR_CURRENT;
    if (len == 1) return xfail(xs->err, 16872, "'$' by itself is not a valid FieldPath");
    if (*p == '$') {
        p++;
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t vlen = dot ? (size_t)(dot - p) : (size_t)(end - p);
        if (vlen == 0) return xfail(xs->err, 16869, "empty variable names are not allowed");
        if (vlen == 4 && !memcmp(p, "ROOT", 4))
            var = VAR_ROOT;
        else if (vlen == 7 && !memcmp(p, "CURRENT", 7))
            var = VAR_CURRENT;
        else if (vlen == 6 && !memcmp(p, "REMOVE", 6))
            var = VAR_REMOVE;
        else
            return xfail(xs->err, 17276, "Use of undefined variable: %.*s", (int)vlen, p);
        p = dot ? dot + 1 : end;
        if (dot && p == end)
            return xfail(xs->err, 15998, "FieldPath field names may not be empty strings.");
    }
    uint32_t n = 0;
    if (p < end) {
        n = 1;
        for (const char *q = p; q < end; q++) n += *q == '.';
    }
    xnode_t *x = xnode_new(xs, X_PATH);
    if (!x) return MK_ERR;
    x->var = var;
    if (n) {
        x->comps = calloc(n, sizeof *x->comps);
        if (!x->comps) {
            free(x);
            return mk_error_nomem(xs->err), MK_ERR;
        }
    }
    x->ncomps = n;
    for (uint32_t k = 0; k < n; k++) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *stop = dot ? dot : end;
        x->comps[k].s = p;
        x->comps[k].len = (uint32_t)(stop - p);
        int code = 0;
        const char *msg = NULL;
        if (stop == p)
            code = 15998, msg = "FieldPath field names may not be empty strings.";
        else if (*p == '$')
            code = 16410,
            msg = "FieldPath field names may not start with '$'. Consider using $getField or "
                  "$setField.";
        else if (memchr(p, '\0', (size_t)(stop - p)))
            code = 16411, msg = "FieldPath field names may not contain '\\0'.";
        if (code) {
            xnode_free(x);
            return xfail(xs->err, code, "%s", msg);
        }
        p = stop + 1;
    }
    *out = x;
    return MK_OK;
}

static int add_kid(xstate_t *xs, xnode_t *parent, xnode_t *kid, uint32_t *cap)
{
    if (parent->nkids == *cap) {
        uint32_t c = *cap ? *cap * 2 : 4;
        xnode_t **k = realloc(parent->kids, c * sizeof *k);
        if (!k) {
            xnode_free(kid);
            return mk_error_nomem(xs->err), MK_ERR;
        }
        parent->kids = k;
        *cap = c;
    }
    parent->kids[parent->nkids++] = kid;
    return MK_OK;
}

static int compile_array(xstate_t *xs, const bson_value_t *v, xnode_t *x)
{
    bson_iter_t it;
    uint32_t cap = 0;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
        return xfail(xs->err, MK_CODE_BAD_VALUE, "invalid BSON in expression");
    while (bson_iter_next(&it)) {
        xnode_t *kid;
        if (compile(xs, bson_iter_value(&it), &kid) != MK_OK) return MK_ERR;
        if (add_kid(xs, x, kid, &cap) != MK_OK) return MK_ERR;
    }
    return MK_OK;
}

/* { $cond: { if, then, else } } becomes the three arguments of the array form. */
static int compile_cond_object(xstate_t *xs, const bson_value_t *v, xnode_t *x)
{
    const bson_value_t *parts[3] = {NULL, NULL, NULL};
    static const char *const names[3] = {"if", "then", "else"};
    bson_value_t vals[3];
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
        return xfail(xs->err, MK_CODE_BAD_VALUE, "invalid BSON in expression");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        int i = !strcmp(k, "if") ? 0 : !strcmp(k, "then") ? 1 : !strcmp(k, "else") ? 2 : -1;
        if (i < 0) return xfail(xs->err, 17083, "Unrecognized parameter to $cond: %s", k);
        vals[i] = *bson_iter_value(&it);
        parts[i] = &vals[i];
    }
    for (int i = 0; i < 3; i++)
        if (!parts[i])
            return xfail(xs->err, 17080 + i, "Missing '%s' parameter to $cond", names[i]);
    uint32_t cap = 0;
    for (int i = 0; i < 3; i++) {
        xnode_t *kid;
        if (compile(xs, parts[i], &kid) != MK_OK || add_kid(xs, x, kid, &cap) != MK_OK)
            return MK_ERR;
    }
    return MK_OK;
}

static int compile_operator(xstate_t *xs, const char *name, const bson_value_t *arg, xnode_t **out)
{
    if (!strcmp(name, "$literal")) {
        xnode_t *x = xnode_new(xs, X_CONST);
        if (!x) return MK_ERR;
        x->c = *arg;
        *out = x;
        return MK_OK;
    }
    const opdef_t *op = op_lookup(name);
    if (!op)
        return xfail(xs->err, CODE_INVALID_PIPELINE_OPERATOR, "Unrecognized expression '%s'", name);
    xnode_t *x = xnode_new(xs, X_OP);
    if (!x) return MK_ERR;
    x->op = op;
    int rc;
    uint32_t cap = 0;
    if (!strcmp(name, "$cond") && arg->value_type == BSON_TYPE_DOCUMENT) {
        rc = compile_cond_object(xs, arg, x);
    } else if (arg->value_type == BSON_TYPE_ARRAY) {
        rc = compile_array(xs, arg, x);
    } else {
        xnode_t *kid;
        rc = compile(xs, arg, &kid);
        if (rc == MK_OK) rc = add_kid(xs, x, kid, &cap);
    }
    if (rc == MK_OK) {
        int n = (int)x->nkids;
        if (!strcmp(name, "$ifNull") && n < op->min_args)
            rc = xfail(xs->err, 1257300, "$ifNull needs at least two arguments, had: %d", n);
        else if (op->min_args == op->max_args && n != op->min_args)
            rc = xfail(xs->err, 16020,
                       "Expression %s takes exactly %d arguments. %d were passed in.", name,
                       op->min_args, n);
        else if (n < op->min_args || (op->max_args >= 0 && n > op->max_args))
            rc = xfail(xs->err, 16020, "Expression %s takes %d to %d arguments. %d were passed in.",
                       name, op->min_args, op->max_args, n);
    }
    if (rc != MK_OK) {
        xnode_free(x);
        return MK_ERR;
    }
    *out = x;
    return MK_OK;
}

static int compile_object(xstate_t *xs, const bson_value_t *v, xnode_t **out)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
        return xfail(xs->err, MK_CODE_BAD_VALUE, "invalid BSON in expression");
    uint32_t nfields = 0;
    bool op_first = false;
    while (bson_iter_next(&it)) {
        if (nfields++ == 0) op_first = bson_iter_key(&it)[0] == '$';
    }
    bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
    if (op_first) {
        if (nfields != 1)
            return xfail(xs->err, 15983,
                         "an expression specification must contain exactly one field, the name "
                         "of the expression. Found %u fields",
                         nfields);
        bson_iter_next(&it);
        bson_value_t arg = *bson_iter_value(&it);
        return compile_operator(xs, bson_iter_key(&it), &arg, out);
    }
    xnode_t *x = xnode_new(xs, X_OBJECT);
    if (!x) return MK_ERR;
    if (nfields) {
        x->keys = calloc(nfields, sizeof *x->keys);
        if (!x->keys) {
            xnode_free(x);
            return mk_error_nomem(xs->err), MK_ERR;
        }
    }
    uint32_t cap = 0;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        int code = 0;
        const char *msg = NULL;
        if (!*k)
            code = 16411, msg = "FieldPath field names may not be empty strings.";
        else if (*k == '$')
            code = 16410,
            msg = "FieldPath field names may not start with '$'. Consider using $getField or "
                  "$setField.";
        else if (strchr(k, '.'))
            code = 16412, msg = "FieldPath field names may not contain '.'.";
        xnode_t *kid = NULL;
        if (code) xfail(xs->err, code, "%s", msg);
        if (code || compile(xs, bson_iter_value(&it), &kid) != MK_OK ||
            add_kid(xs, x, kid, &cap) != MK_OK) {
            xnode_free(x);
            return MK_ERR;
        }
        x->keys[x->nkids - 1] = k;
    }
    *out = x;
    return MK_OK;
}

static int compile(xstate_t *xs, const bson_value_t *v, xnode_t **out)
{
    if (++xs->depth > MAX_EXPR_DEPTH)
        return xfail(xs->err, MK_CODE_BAD_VALUE, "expression is nested more than %d levels deep",
                     MAX_EXPR_DEPTH);
    int rc;
    if (v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.len > 0 &&
        v->value.v_utf8.str[0] == '$') {
        rc = compile_path(xs, v->value.v_utf8.str, v->value.v_utf8.len, out);
    } else if (v->value_type == BSON_TYPE_DOCUMENT) {
        rc = compile_object(xs, v, out);
    } else if (v->value_type == BSON_TYPE_ARRAY) {
        xnode_t *x = xnode_new(xs, X_ARRAY);
        rc = x ? compile_array(xs, v, x) : MK_ERR;
        if (rc == MK_OK)
            *out = x;
        else
            xnode_free(x);
    } else {
        xnode_t *x = xnode_new(xs, X_CONST);
        rc = x ? MK_OK : MK_ERR;
        if (x) {
            x->c = *v;
            *out = x;
        }
    }
    xs->depth--;
    return rc;
}

mk_expr_t *mk_expr_compile(const bson_value_t *spec, mk_error_t *err)
{
    mk_expr_t *e = calloc(1, sizeof *e);
    if (!e) {
        mk_error_nomem(err);
        return NULL;
    }
    e->spec = bson_new();
    bson_iter_t it;
    if (!bson_append_value(e->spec, "v", 1, spec) || !bson_iter_init_find(&it, e->spec, "v")) {
        xfail(err, MK_CODE_BAD_VALUE, "expression is not a valid BSON value");
        mk_expr_destroy(e);
        return NULL;
    }
    xstate_t xs = {err, 0};
    bson_value_t v = *bson_iter_value(&it);
    if (compile(&xs, &v, &e->root) != MK_OK) {
        mk_expr_destroy(e);
        return NULL;
    }
    return e;
}

void mk_expr_destroy(mk_expr_t *e)
{
    if (!e) return;
    xnode_free(e->root);
    if (e->spec) bson_destroy(e->spec);
    free(e);
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation */

static int eval(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err);

static bool find_comp(bson_iter_t *it, const comp_t *c)
{
    while (bson_iter_next(it))
        if (bson_iter_key_len(it) == c->len && memcmp(bson_iter_key(it), c->s, c->len) == 0)
            return true;
    return false;
}

static void eval_path(const uint8_t *data, uint32_t len, const xnode_t *n, uint32_t k,
                      bson_value_t *out);

/* '$a.b' where `a` is an array: the values of `b` in its document elements, as an array. */
static void eval_path_array(const bson_value_t *arr, const xnode_t *n, uint32_t k,
                            bson_value_t *out)
{
    bson_t b;
    bson_iter_t it;
    bson_init(&b);
    uint32_t i = 0;
    if (bson_iter_init_from_data(&it, arr->value.v_doc.data, arr->value.v_doc.data_len)) {
        while (bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            if (e->value_type != BSON_TYPE_DOCUMENT) continue;
            bson_value_t sub;
            eval_path(e->value.v_doc.data, e->value.v_doc.data_len, n, k, &sub);
            if (sub.value_type != BSON_TYPE_EOD) {
                char buf[16];
                const char *key;
                size_t klen = bson_uint32_to_string(i++, &key, buf, sizeof buf);
                bson_append_value(&b, key, (int)klen, &sub);
            }
            bson_value_destroy(&sub);
        }
    }
    take_doc(&b, BSON_TYPE_ARRAY, out);
}

static void eval_path(const uint8_t *data, uint32_t len, const xnode_t *n, uint32_t k,
                      bson_value_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len) || !find_comp(&it, &n->comps[k])) {
        set_missing(out);
        return;
    }
    const bson_value_t *v = bson_iter_value(&it);
    if (k + 1 == n->ncomps)
        bson_value_copy(v, out);
    else if (v->value_type == BSON_TYPE_DOCUMENT)
        eval_path(v->value.v_doc.data, v->value.v_doc.data_len, n, k + 1, out);
    else if (v->value_type == BSON_TYPE_ARRAY)
        eval_path_array(v, n, k + 1, out);
    else
        set_missing(out);
}

static int eval_object(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bson_t b;
    bson_init(&b);
    for (uint32_t i = 0; i < n->nkids; i++) {
        bson_value_t v;
        if (eval(n->kids[i], cx, &v, err) != MK_OK) {
            bson_destroy(&b);
            return MK_ERR;
        }
        if (v.value_type != BSON_TYPE_EOD) bson_append_value(&b, n->keys[i], -1, &v);
        bson_value_destroy(&v);
    }
    take_doc(&b, BSON_TYPE_DOCUMENT, out);
    return MK_OK;
}

static int eval_array(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bson_t b;
    bson_init(&b);
    for (uint32_t i = 0; i < n->nkids; i++) {
        bson_value_t v;
        if (eval(n->kids[i], cx, &v, err) != MK_OK) {
            bson_destroy(&b);
            return MK_ERR;
        }
        if (v.value_type == BSON_TYPE_EOD) set_null(&v); /* [ '$missing' ] is [ null ] */
        char buf[16];
        const char *key;
        size_t klen = bson_uint32_to_string(i, &key, buf, sizeof buf);
        bson_append_value(&b, key, (int)klen, &v);
        bson_value_destroy(&v);
    }
    take_doc(&b, BSON_TYPE_ARRAY, out);
    return MK_OK;
}

static int eval(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    switch (n->kind) {
    case X_CONST:
        bson_value_copy(&n->c, out);
        return MK_OK;
    case X_PATH:
        if (n->var == VAR_REMOVE)
            set_missing(out);
        else if (n->ncomps)
            eval_path(cx->root, cx->root_len, n, 0, out);
        else {
            bson_value_t doc = {.value_type = BSON_TYPE_DOCUMENT};
            doc.value.v_doc.data = (uint8_t *)cx->root;
            doc.value.v_doc.data_len = cx->root_len;
            bson_value_copy(&doc, out);
        }
        return MK_OK;
    case X_OBJECT:
        return eval_object(n, cx, out, err);
    case X_ARRAY:
        return eval_array(n, cx, out, err);
    case X_OP:
        return n->op->eval(n, cx, out, err);
    }
    return MK_ERR;
}

/* Evaluates the arguments a and b of a binary operator. */
static int eval2(const xnode_t *n, const xctx_t *cx, bson_value_t *a, bson_value_t *b,
                 mk_error_t *err)
{
    if (eval(n->kids[0], cx, a, err) != MK_OK) return MK_ERR;
    if (eval(n->kids[1], cx, b, err) != MK_OK) {
        bson_value_destroy(a);
        return MK_ERR;
    }
    return MK_OK;
}

/* ---- comparison ---- */

static int eval_compare(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bson_value_t a, b;
    if (eval2(n, cx, &a, &b, err) != MK_OK) return MK_ERR;
    int c = mk_expr_value_cmp(&a, &b);
    bson_value_destroy(&a);
    bson_value_destroy(&b);
    const char *name = n->op->name;
    if (!strcmp(name, "$cmp"))
        set_i32(out, c < 0 ? -1 : c > 0);
    else if (!strcmp(name, "$eq"))
        set_bool(out, c == 0);
    else if (!strcmp(name, "$ne"))
        set_bool(out, c != 0);
    else if (!strcmp(name, "$gt"))
        set_bool(out, c > 0);
    else if (!strcmp(name, "$gte"))
        set_bool(out, c >= 0);
    else if (!strcmp(name, "$lt"))
        set_bool(out, c < 0);
    else
        set_bool(out, c <= 0);
    return MK_OK;
}

/* ---- boolean ---- */

static int eval_and_or(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bool is_and = n->op->name[1] == 'a';
    for (uint32_t i = 0; i < n->nkids; i++) {
        bson_value_t v;
        if (eval(n->kids[i], cx, &v, err) != MK_OK) return MK_ERR;
        bool t = mk_expr_truthy(&v);
        bson_value_destroy(&v);
        if (t != is_and) { /* short circuit: a false in $and, a true in $or */
            set_bool(out, t);
            return MK_OK;
        }
    }
    set_bool(out, is_and);
    return MK_OK;
}

static int eval_not(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bson_value_t v;
    if (eval(n->kids[0], cx, &v, err) != MK_OK) return MK_ERR;
    bool t = mk_expr_truthy(&v);
    bson_value_destroy(&v);
    set_bool(out, !t);
    return MK_OK;
}

/* ---- arithmetic ---- */

/* A number being accumulated: int32, then int64 on overflow, then double. */
typedef struct num {
    enum { NUM_INT, NUM_LONG, NUM_DOUBLE } kind;
    int64_t i;
    double d;
} num_t;

static bool num_from(const bson_value_t *v, num_t *n)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        *n = (num_t){NUM_INT, v->value.v_int32, 0};
        return true;
    case BSON_TYPE_INT64:
        *n = (num_t){NUM_LONG, v->value.v_int64, 0};
        return true;
    case BSON_TYPE_DOUBLE:
        *n = (num_t){NUM_DOUBLE, 0, v->value.v_double};
        return true;
    default:
        return false;
    }
}

static double num_double(const num_t *n)
{
    return n->kind == NUM_DOUBLE ? n->d : (double)n->i;
}

/* Integral results keep the widest integer kind, widening int to long past int32. */
static void num_set_int(num_t *r, int64_t v, int kind)
{
    r->i = v;
    r->kind = kind;
    if (kind == NUM_INT && (v < INT32_MIN || v > INT32_MAX)) r->kind = NUM_LONG;
}

static void num_add(num_t *acc, const num_t *x)
{
    int64_t r;
    if (acc->kind == NUM_DOUBLE || x->kind == NUM_DOUBLE) {
        acc->d = num_double(acc) + num_double(x);
        acc->kind = NUM_DOUBLE;
    } else if (__builtin_add_overflow(acc->i, x->i, &r)) {
        acc->d = (double)acc->i + (double)x->i;
        acc->kind = NUM_DOUBLE;
    } else {
        num_set_int(acc, r, acc->kind > x->kind ? acc->kind : x->kind);
    }
}

static void num_mul(num_t *acc, const num_t *x)
{
    int64_t r;
    if (acc->kind == NUM_DOUBLE || x->kind == NUM_DOUBLE) {
        acc->d = num_double(acc) * num_double(x);
        acc->kind = NUM_DOUBLE;
    } else if (__builtin_mul_overflow(acc->i, x->i, &r)) {
        acc->d = (double)acc->i * (double)x->i;
        acc->kind = NUM_DOUBLE;
    } else {
        num_set_int(acc, r, acc->kind > x->kind ? acc->kind : x->kind);
    }
}

static void num_out(const num_t *n, bson_value_t *out)
{
    if (n->kind == NUM_DOUBLE)
        set_double(out, n->d);
    else if (n->kind == NUM_LONG)
        set_i64(out, n->i);
    else
        set_i32(out, (int32_t)n->i);
}

static int decimal_unsupported(mk_error_t *err, const char *op)
{
    return xfail(err, MK_CODE_BAD_VALUE, "%s on decimal values is not supported yet", op);
}

/* Milliseconds to add to a date: integers as they are, doubles rounded. */
static bool num_to_ms(const num_t *n, int64_t *ms)
{
    if (n->kind != NUM_DOUBLE) {
        *ms = n->i;
        return true;
    }
    double r = round(n->d);
    if (!(r >= -9223372036854775808.0 && r < 9223372036854775808.0)) return false;
    *ms = (int64_t)r;
    return true;
}

static int eval_add_mul(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bool add = n->op->name[1] == 'a';
    num_t acc = {NUM_INT, add ? 0 : 1, 0};
    bool have_date = false;
    int64_t date = 0;
    for (uint32_t i = 0; i < n->nkids; i++) {
        bson_value_t v;
        num_t x;
        if (eval(n->kids[i], cx, &v, err) != MK_OK) return MK_ERR;
        if (is_nullish(&v)) {
            bson_value_destroy(&v);
            set_null(out);
            return MK_OK;
        }
        if (num_from(&v, &x)) {
            if (add)
                num_add(&acc, &x);
            else
                num_mul(&acc, &x);
        } else if (v.value_type == BSON_TYPE_DECIMAL128) {
            return decimal_unsupported(err, n->op->name);
        } else if (add && v.value_type == BSON_TYPE_DATE_TIME) {
            if (have_date) return xfail(err, 16612, "only one date allowed in an $add expression");
            have_date = true;
            date = v.value.v_datetime;
        } else {
            int rc =
                add ? xfail(err, 16554, "$add only supports numeric or date types, not %s",
                            tname(&v))
                    : xfail(err, 16555, "$multiply only supports numeric types, not %s", tname(&v));
            bson_value_destroy(&v);
            return rc;
        }
        bson_value_destroy(&v);
    }
    if (have_date) {
        int64_t ms, r;
        if (!num_to_ms(&acc, &ms) || __builtin_add_overflow(date, ms, &r))
            return xfail(err, MK_CODE_OVERFLOW, "date overflow in $add");
        set_date(out, r);
        return MK_OK;
    }
    num_out(&acc, out);
    return MK_OK;
}

static int eval_subtract(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bson_value_t a, b;
    if (eval2(n, cx, &a, &b, err) != MK_OK) return MK_ERR;
    num_t x, y;
    int rc = MK_OK;
    if (is_nullish(&a) || is_nullish(&b)) {
        set_null(out);
    } else if (a.value_type == BSON_TYPE_DECIMAL128 || b.value_type == BSON_TYPE_DECIMAL128) {
        rc = decimal_unsupported(err, "$subtract");
    } else if (num_from(&a, &x) && num_from(&b, &y)) {
        if (y.kind == NUM_DOUBLE)
            y.d = -y.d;
        else if (y.i == INT64_MIN)
            y = (num_t){NUM_DOUBLE, 0, -(double)y.i};
        else
            y.i = -y.i;
        num_add(&x, &y);
        num_out(&x, out);
    } else if (a.value_type == BSON_TYPE_DATE_TIME && b.value_type == BSON_TYPE_DATE_TIME) {
        int64_t r;
        if (__builtin_sub_overflow(a.value.v_datetime, b.value.v_datetime, &r))
            rc = xfail(err, MK_CODE_OVERFLOW, "date overflow in $subtract");
        else
            set_i64(out, r);
    } else if (a.value_type == BSON_TYPE_DATE_TIME && num_from(&b, &y)) {
        int64_t ms, r;
        if (!num_to_ms(&y, &ms) || __builtin_sub_overflow(a.value.v_datetime, ms, &r))
            rc = xfail(err, MK_CODE_OVERFLOW, "date overflow in $subtract");
        else
            set_date(out, r);
    } else {
        rc = xfail(err, 16556, "cant $subtract a %s from a %s", tname(&b), tname(&a));
    }
    bson_value_destroy(&a);
    bson_value_destroy(&b);
    return rc;
}

static int eval_divide_mod(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bool divide = n->op->name[1] == 'd';
    bson_value_t a, b;
    if (eval2(n, cx, &a, &b, err) != MK_OK) return MK_ERR;
    num_t x, y;
    int rc = MK_OK;
    if (is_nullish(&a) || is_nullish(&b)) {
        set_null(out);
    } else if (a.value_type == BSON_TYPE_DECIMAL128 || b.value_type == BSON_TYPE_DECIMAL128) {
        rc = decimal_unsupported(err, n->op->name);
    } else if (!num_from(&a, &x) || !num_from(&b, &y)) {
        rc = divide ? xfail(err, 16609, "$divide only supports numeric types, not %s and %s",
                            tname(&a), tname(&b))
                    : xfail(err, 16611, "$mod only supports numeric types, not %s and %s",
                            tname(&a), tname(&b));
    } else if (num_double(&y) == 0) {
        rc = divide ? xfail(err, 16608, "can't $divide by zero")
                    : xfail(err, 16610, "can't $mod by zero");
    } else if (divide) {
        set_double(out, num_double(&x) / num_double(&y));
    } else if (x.kind == NUM_DOUBLE || y.kind == NUM_DOUBLE) {
        set_double(out, fmod(num_double(&x), num_double(&y)));
    } else {
        num_t r;
        num_set_int(&r, y.i == -1 ? 0 : x.i % y.i, x.kind > y.kind ? x.kind : y.kind);
        num_out(&r, out);
    }
    bson_value_destroy(&a);
    bson_value_destroy(&b);
    return rc;
}

static int eval_abs(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bson_value_t v;
    if (eval(n->kids[0], cx, &v, err) != MK_OK) return MK_ERR;
    int rc = MK_OK;
    switch (v.value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        set_null(out);
        break;
    case BSON_TYPE_INT32:
        if (v.value.v_int32 == INT32_MIN)
            set_i64(out, -(int64_t)INT32_MIN);
        else
            set_i32(out, v.value.v_int32 < 0 ? -v.value.v_int32 : v.value.v_int32);
        break;
    case BSON_TYPE_INT64:
        if (v.value.v_int64 == INT64_MIN)
            rc = xfail(err, 28680, "can't take $abs of long long min");
        else
            set_i64(out, v.value.v_int64 < 0 ? -v.value.v_int64 : v.value.v_int64);
        break;
    case BSON_TYPE_DOUBLE:
        set_double(out, fabs(v.value.v_double));
        break;
    case BSON_TYPE_DECIMAL128:
        *out = v;
        out->value.v_decimal128.high &= ~(UINT64_C(1) << 63); /* clear the sign bit */
        break;
    default:
        rc = xfail(err, 28765, "$abs only supports numeric types, not %s", tname(&v));
    }
    bson_value_destroy(&v);
    return rc;
}

/* ---- arrays and conditionals ---- */

static int eval_size(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bson_value_t v;
    if (eval(n->kids[0], cx, &v, err) != MK_OK) return MK_ERR;
    int rc = MK_OK;
    if (v.value_type != BSON_TYPE_ARRAY) {
        rc = xfail(err, 17124, "The argument to $size must be an array. Type of argument: %s",
                   tname(&v));
    } else {
        bson_iter_t it;
        int32_t count = 0;
        if (bson_iter_init_from_data(&it, v.value.v_doc.data, v.value.v_doc.data_len))
            while (bson_iter_next(&it)) count++;
        set_i32(out, count);
    }
    bson_value_destroy(&v);
    return rc;
}

static int eval_in(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bson_value_t a, arr;
    if (eval2(n, cx, &a, &arr, err) != MK_OK) return MK_ERR;
    int rc = MK_OK;
    if (arr.value_type != BSON_TYPE_ARRAY) {
        rc =
            xfail(err, 40081, "$in requires an array as a second argument, found: %s", tname(&arr));
    } else {
        bool found = false;
        bson_iter_t it;
        if (bson_iter_init_from_data(&it, arr.value.v_doc.data, arr.value.v_doc.data_len))
            while (!found && bson_iter_next(&it))
                found = mk_expr_value_cmp(&a, bson_iter_value(&it)) == 0;
        set_bool(out, found);
    }
    bson_value_destroy(&a);
    bson_value_destroy(&arr);
    return rc;
}

static int eval_if_null(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    for (uint32_t i = 0; i + 1 < n->nkids; i++) {
        if (eval(n->kids[i], cx, out, err) != MK_OK) return MK_ERR;
        if (!is_nullish(out)) return MK_OK;
        bson_value_destroy(out);
    }
    return eval(n->kids[n->nkids - 1], cx, out, err);
}

static int eval_cond(const xnode_t *n, const xctx_t *cx, bson_value_t *out, mk_error_t *err)
{
    bson_value_t c;
    if (eval(n->kids[0], cx, &c, err) != MK_OK) return MK_ERR;
    bool t = mk_expr_truthy(&c);
    bson_value_destroy(&c);
    return eval(n->kids[t ? 1 : 2], cx, out, err);
}

static const opdef_t ops[] = {
    {"$abs", 1, 1, eval_abs},
    {"$add", 0, -1, eval_add_mul},
    {"$and", 0, -1, eval_and_or},
    {"$cmp", 2, 2, eval_compare},
    {"$cond", 3, 3, eval_cond},
    {"$divide", 2, 2, eval_divide_mod},
    {"$eq", 2, 2, eval_compare},
    {"$gt", 2, 2, eval_compare},
    {"$gte", 2, 2, eval_compare},
    {"$ifNull", 2, -1, eval_if_null},
    {"$in", 2, 2, eval_in},
    {"$lt", 2, 2, eval_compare},
    {"$lte", 2, 2, eval_compare},
    {"$mod", 2, 2, eval_divide_mod},
    {"$multiply", 0, -1, eval_add_mul},
    {"$ne", 2, 2, eval_compare},
    {"$not", 1, 1, eval_not},
    {"$or", 0, -1, eval_and_or},
    {"$size", 1, 1, eval_size},
    {"$subtract", 2, 2, eval_subtract},
};

static const opdef_t *op_lookup(const char *name)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!strcmp(ops[i].name, name)) return &ops[i];
    return NULL;
}

int mk_expr_eval(const mk_expr_t *e, const bson_t *root, bson_value_t *out, mk_error_t *err)
{
    xctx_t cx = {bson_get_data(root), root->len};
    set_missing(out);
    if (eval(e->root, &cx, out, err) != MK_OK) {
        set_missing(out);
        return MK_ERR;
    }
    return MK_OK;
}
