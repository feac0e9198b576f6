/* Query cursors (Mongoose's QueryCursor): a find streamed batch by batch from the backend
 * cursor, each raw document hydrated when it is asked for (or handed out as BSON), so that
 * a result never has to fit in memory. As in Mongoose, opening the cursor runs the pre('find')
 * middleware; post('find') middleware does not run for cursors. */
#include <stdlib.h>
#include <string.h>

#include "odm/query_internal.h"

struct mk_cursor {
    mk_model_t *model;
    mk_client_session_t *session;
    mk_backend_cursor_t *bc;
    mk_doc_t *current; /* the last document mk_cursor_next returned, until the next call */
};

mk_cursor_t *mk_query_cursor(mk_query_t *q, mk_error_t *err)
{
    if (!q) {
        mk_error_set(err, 0, "MongooseError", "mk_query_cursor: query is NULL");
        return NULL;
    }
    if (q->op != MK_OP_FIND) {
        mk_error_set(err, 0, "MongooseError", "cursor() is only for find queries, not %s",
                     mk_query_op_name(q->op));
        return NULL;
    }
    if (q->executing) {
        mk_error_set(err, 0, "MongooseError",
                     "Query is being executed: its middleware cannot open a cursor on it");
        return NULL;
    }
    if (q->failed) {
        if (err) *err = q->error;
        return NULL;
    }
    mk_cursor_t *c = calloc(1, sizeof *c);
    if (!c) {
        mk_error_nomem(err);
        return NULL;
    }
    c->model = q->model;
    q->executing = true;
    mk_hook_t h = {.query = q};
    mk_error_t e = {0};
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    int rc = mk_hooks_run(q->model, "find", MK_HOOK_PRE, false, &h, &e);
    if (rc == MK_OK && q->failed) {
        e = q->error;
        rc = MK_ERR;
    }
    if (rc == MK_OK) rc = mk_query_prepare_find(q, false, &filter, &opts, &e);
    if (rc == MK_OK) {
        /* the session as the middleware left it */
        c->session = q->session;
        c->bc = mk_backend_find(q->model->conn->be, mk_client_session_backend(q->session),
                                q->model->conn->db, q->model->collection, &filter, &opts, &e);
        if (!c->bc) rc = mk_query_server_error(&e, MK_ERR);
    }
    if (rc != MK_OK) mk_hooks_run_error(q->model, "find", false, &h, &e);
    bson_destroy(&filter);
    bson_destroy(&opts);
    mk_query_restore_state(q);
    q->executing = false;
    if (rc != MK_OK) {
        if (err) *err = e;
        free(c);
        return NULL;
    }
    return c;
}

/* End of the stream: err says nothing went wrong. */
static void clear_err(mk_error_t *err)
{
    if (!err) return;
    err->code = 0;
    err->kind[0] = '\0';
    err->message[0] = '\0';
}

/* The next raw document (borrowed from the backend until the next call), or NULL. */
static const bson_t *next_raw(mk_cursor_t *c, mk_error_t *err)
{
    if (!c) {
        mk_error_set(err, 0, "MongooseError", "mk_cursor_next: cursor is NULL");
        return NULL;
    }
    if (c->current) {
        mk_doc_destroy(c->current);
        c->current = NULL;
    }
    const bson_t *doc = NULL;
    int n = mk_backend_cursor_next(c->bc, &doc, err);
    if (n == 1) return doc;
    if (n == 0)
        clear_err(err);
    else
        mk_query_server_error(err, n);
    return NULL;
}

mk_doc_t *mk_cursor_next(mk_cursor_t *c, mk_error_t *err)
{
    const bson_t *raw = next_raw(c, err);
    if (!raw) return NULL;
    mk_doc_t *d = mk_doc_hydrate_data(c->model, bson_get_data(raw), raw->len, err);
    if (!d) return NULL;
    d->session = c->session;
    c->current = d;
    return d;
}

const bson_t *mk_cursor_next_bson(mk_cursor_t *c, mk_error_t *err)
{
    return next_raw(c, err);
}

mk_doc_t *mk_cursor_take(mk_cursor_t *c)
{
    if (!c) return NULL;
    mk_doc_t *d = c->current;
    c->current = NULL;
    return d;
}

void mk_cursor_destroy(mk_cursor_t *c)
{
    if (!c) return;
    mk_doc_destroy(c->current);
    mk_backend_cursor_destroy(c->bc);
    free(c);
}
