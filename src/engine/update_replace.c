/* Replacement updates: the new document is the replacement, keeping the original `_id`. */
#include "engine/update_int.h"

#include <string.h>

#include <meerkat/engine.h>

#include "bson/format.h"
#include "bson/value.h"

/* Storage validation of the new document's top-level `$` fields (DBRefs are allowed). */
static int check_dollar_fields(const bson_t *doc, mk_error_t *err)
{
    bson_iter_t it;
    bool any = false;
    if (bson_iter_init(&it, doc))
        while (!any && bson_iter_next(&it)) any = bson_iter_key(&it)[0] == '$';
    if (!any) return MK_OK;
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    mk_tnode_t *root = mk_tree_root(&t);
    int rc = mk_tnode_expand(&t, root, err);
    for (uint32_t i = 0; rc == MK_OK && i < root->nkids; i++)
        rc = up_check_dollar_field(root, i, err);
    mk_tree_destroy(&t);
    return rc;
}

int up_apply_replacement(const mk_update_t *u, const bson_t *doc, bool inserting, int64_t now_ms,
                         bson_t *out, bool *changed, mk_error_t *err)
{
    const bson_t *repl = u->spec;
    bson_iter_t it, orig_id, new_id;
    bool has_orig = bson_iter_init_find(&orig_id, doc, "_id");
    bool has_new = bson_iter_init_find(&new_id, repl, "_id");
    *changed = false;

    if (has_orig && has_new &&
        mk_value_cmp(bson_iter_value(&orig_id), bson_iter_value(&new_id)) != 0) {
        bson_string_t *s = bson_string_new(NULL);
        mk_format_value(s, bson_iter_value(&new_id));
        mk_error_setc(err, MK_CODE_IMMUTABLE_FIELD,
                      "After applying the update, the (immutable) field '_id' was found to have "
                      "been altered to _id: %s",
                      s->str);
        bson_string_free(s, true);
        return MK_ERR;
    }

    /* _id first (the replacement's, else the original's), then the replacement's fields. */
    bool ok = true;
    if (has_new)
        ok = bson_append_iter(out, "_id", 3, &new_id);
    else if (has_orig)
        ok = bson_append_iter(out, "_id", 3, &orig_id);
    if (!bson_iter_init(&it, repl)) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON");
    while (ok && bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "_id") == 0) continue;
        uint32_t ts, inc;
        if (BSON_ITER_HOLDS_TIMESTAMP(&it) && (bson_iter_timestamp(&it, &ts, &inc), ts == 0) &&
            inc == 0) {
            /* As MongoDB: an empty timestamp at the top level is filled with the current time. */
            int64_t ms = now_ms < 0 ? 0 : now_ms;
            ok = bson_append_timestamp(out, key, -1, (uint32_t)(ms / 1000),
                                       (uint32_t)(ms % 1000) + 1);
        } else {
            ok = bson_append_iter(out, key, -1, &it);
        }
    }
    if (!ok) return up_check_size(UINT32_MAX, inserting, err);

    int rc = check_dollar_fields(out, err);
    if (rc != MK_OK) return rc;
    bson_iter_t id;
    if (bson_iter_init_find(&id, out, "_id") && (rc = up_check_id_type(bson_iter_value(&id), err)))
        return rc;
    int depth = mk_raw_depth(bson_get_data(out), out->len, MK_MAX_DEPTH);
    if (depth < 0) return mk_error_setc(err, MK_CODE_INVALID_BSON, "invalid BSON");
    if (depth > MK_MAX_DEPTH)
        return mk_error_setc(err, MK_CODE_OVERFLOW, "Document exceeds maximum nesting depth of %d",
                             MK_MAX_DEPTH);
    if ((rc = up_check_size(out->len, inserting, err)) != MK_OK) return rc;
    *changed =
        out->len != doc->len || memcmp(bson_get_data(out), bson_get_data(doc), doc->len) != 0;
    return MK_OK;
}
