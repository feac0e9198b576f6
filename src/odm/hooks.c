/* Running middleware: the hooks a schema registered for an op, in registration order, filtered
 * by whether the call is document or query middleware (Mongoose's { document, query }). */
#include <string.h>

#include "odm/odm_internal.h"

/* Whether an entry registered with `flags` runs for this kind of call. Mongoose's defaults:
 * deleteOne and updateOne are query middleware unless { document: true } is given; validate,
 * save, init and insertMany are document (or model) middleware. */
static bool applies(const mk_hook_entry_t *h, const char *op, bool as_document)
{
    if (strcmp(h->op, op) != 0) return false;
    unsigned flags = h->flags;
    if (flags == 0) {
        if (strcmp(op, "deleteOne") == 0 || strcmp(op, "updateOne") == 0)
            flags = MK_HOOK_QUERY;
        else if (strcmp(op, "validate") == 0 || strcmp(op, "save") == 0 ||
                 strcmp(op, "init") == 0 || strcmp(op, "insertMany") == 0)
            flags = MK_HOOK_DOCUMENT;
        else
            flags = MK_HOOK_QUERY;
    }
    return (flags & (as_document ? MK_HOOK_DOCUMENT : MK_HOOK_QUERY)) != 0;
}

bool mk_hooks_any(const mk_model_t *model, const char *op, bool as_document)
{
    if (!model->has_hooks) return false;
    size_t n = mk_schema_hook_count(model->schema);
    for (size_t i = 0; i < n; i++)
        if (applies(mk_schema_hook_at(model->schema, i), op, as_document)) return true;
    return false;
}

int mk_hooks_run(const mk_model_t *model, const char *op, mk_hook_when_t when, bool as_document,
                 mk_hook_t *hook, mk_error_t *err)
{
    if (!model->has_hooks) return MK_OK;
    size_t n = mk_schema_hook_count(model->schema);
    hook->op = op;
    hook->model = (mk_model_t *)model;
    for (size_t i = 0; i < n; i++) {
        const mk_hook_entry_t *h = mk_schema_hook_at(model->schema, i);
        if (h->when != when || !h->fn || !applies(h, op, as_document)) continue;
        mk_error_t e = {0};
        int rc = h->fn(hook, h->ud, &e);
        if (rc != MK_OK) {
            if (err) {
                *err = e;
                if (!err->kind[0]) /* a hook that failed without saying why */
                    mk_error_set(err, 0, "Error", "%s hook for %s failed",
                                 when == MK_HOOK_PRE ? "pre" : "post", op);
            }
            return rc == MK_ENOMEM ? MK_ENOMEM : MK_ERR;
        }
    }
    return MK_OK;
}

void mk_hooks_run_error(const mk_model_t *model, const char *op, bool as_document, mk_hook_t *hook,
                        mk_error_t *error)
{
    if (!model->has_hooks || !error) return;
    size_t n = mk_schema_hook_count(model->schema);
    hook->op = op;
    hook->model = (mk_model_t *)model;
    for (size_t i = 0; i < n; i++) {
        const mk_hook_entry_t *h = mk_schema_hook_at(model->schema, i);
        if (h->when == MK_HOOK_POST_ERROR && h->efn && applies(h, op, as_document))
            h->efn(hook, error, h->ud);
    }
}

int mk_hooks_post(const mk_model_t *model, const char *op, bool as_document, mk_hook_t *hook,
                  int rc, mk_error_t *err)
{
    if (!model->has_hooks) return rc;
    mk_error_t local = {0};
    mk_error_t *e = err ? err : &local;
    size_t n = mk_schema_hook_count(model->schema);
    hook->op = op;
    hook->model = (mk_model_t *)model;
    /* post hooks and error handlers form one chain in registration order (as kareem runs
     * them): while there is no error the post hooks run; from the first error on, only the
     * error handlers that come after it */
    for (size_t i = 0; i < n; i++) {
        const mk_hook_entry_t *h = mk_schema_hook_at(model->schema, i);
        if (!applies(h, op, as_document)) continue;
        if (rc == MK_OK && h->when == MK_HOOK_POST && h->fn) {
            mk_error_t he = {0};
            int hr = h->fn(hook, h->ud, &he);
            if (hr != MK_OK) {
                *e = he;
                if (!e->kind[0]) mk_error_set(e, 0, "Error", "post hook for %s failed", op);
                rc = hr == MK_ENOMEM ? MK_ENOMEM : MK_ERR;
            }
        } else if (rc != MK_OK && h->when == MK_HOOK_POST_ERROR && h->efn) {
            h->efn(hook, e, h->ud);
        }
    }
    return rc;
}
