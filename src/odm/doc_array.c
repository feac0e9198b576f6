/* Array helpers of documents (MongooseArray / MongooseDocumentArray): push, addToSet, pull and
 * id(). Each change is remembered as the array's pending atomic ($push, $addToSet, $pull) so
 * that save() sends that operator rather than the whole array; mixing kinds falls back to
 * $set of the array, as Mongoose does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"
#include "odm/doc_internal.h"

static int array_path(mk_doc_t *d, const char *path, const mk_schema_t **owner,
                      const mk_schema_path_t **p, mk_error_t *err)
{
    *p = path ? mk_doc_schema_path(d, path, owner) : NULL;
    mk_schematype_t t = *p ? mk_schema_path_kind(*p) : 0;
    if (t != MK_TYPE_ARRAY && t != MK_TYPE_DOCARRAY)
        return mk_error_set(err, 0, "TypeError", "`%s` is not an array path of the schema",
                            path ? path : "(null)");
    return MK_OK;
}

/* Casts one element for the array at `path` (index n, for the CastError path). */
static int cast_element(mk_doc_t *d, const mk_schema_t *owner, const mk_schema_path_t *p,
                        const char *path, int64_t n, const bson_value_t *in, bson_value_t *out,
                        mk_error_t *err)
{
    char full[600];
    snprintf(full, sizeof full, "%s.%lld", path, (long long)n);
    if (mk_schema_path_kind(p) == MK_TYPE_DOCARRAY) {
        if (in->value_type != BSON_TYPE_DOCUMENT)
            return mk_cast_error_for(in, "Embedded", full, err);
        bson_t sub, built;
        bson_init_static(&sub, in->value.v_doc.data, in->value.v_doc.data_len);
        bson_init(&built);
        int rc =
            mk_doc_build_object(d, mk_schema_path_schema(p), "", full, &sub, &built, true, err);
        if (rc != MK_OK) {
            bson_destroy(&built);
            return rc;
        }
        uint32_t len = built.len;
        uint8_t *data = bson_destroy_with_steal(&built, true, &len);
        if (!data) return mk_error_nomem(err);
        out->value_type = BSON_TYPE_DOCUMENT;
        out->value.v_doc.data = data;
        out->value.v_doc.data_len = len;
        return MK_OK;
    }
    const mk_schema_path_t *elem = mk_schema_path_element(p);
    if (!elem) {
        bson_value_copy(in, out);
        return MK_OK;
    }
    return mk_doc_cast_path(d, owner, elem, full, in, out, err);
}

/* The current array (a copy appended to by the callers) and its length. */
static int current_array(mk_doc_t *d, const char *path, bson_t *out, uint32_t *n)
{
    bson_value_t v;
    bson_init(out);
    *n = 0;
    if (!mk_doc_lookup(d, path, &v) || v.value_type != BSON_TYPE_ARRAY) return MK_OK;
    bson_t arr;
    bson_iter_t it;
    if (!bson_init_static(&arr, v.value.v_doc.data, v.value.v_doc.data_len) ||
        !bson_iter_init(&it, &arr))
        return MK_ERR;
    while (bson_iter_next(&it)) {
        char key[16];
        const char *k;
        size_t kl = bson_uint32_to_string(*n, &k, key, sizeof key);
        if (!bson_append_value(out, k, (int)kl, bson_iter_value(&it))) return MK_ENOMEM;
        (*n)++;
    }
    return MK_OK;
}

static int store_array(mk_doc_t *d, const char *path, bson_t *arr, mk_error_t *err)
{
    bson_value_t v = {.value_type = BSON_TYPE_ARRAY};
    v.value.v_doc.data = (uint8_t *)bson_get_data(arr);
    v.value.v_doc.data_len = arr->len;
    return mk_doc_store(d, path, &v, err);
}

/* Records `v` under the array's pending atomic `op`; a different pending op (or a direct set
 * of the array) turns the change into a $set of the whole array. */
static int record_atomic(mk_doc_t *d, const char *path, mk_atomic_op_t op, const bson_value_t *v,
                         mk_error_t *err)
{
    bool direct = false;
    for (size_t i = 0; i < d->nmod; i++)
        if (strcmp(d->modified[i], path) == 0) direct = true;
    mk_atomic_t *a = mk_doc_atomic(d, path);
    if (!a && direct) return MK_OK; /* already a $set of the array */
    if (!a) {
        if (d->natomics == d->capatomics) {
            size_t cap = d->capatomics ? d->capatomics * 2 : 4;
            mk_atomic_t *g = realloc(d->atomics, cap * sizeof *g);
            if (!g) return mk_error_nomem(err);
            d->atomics = g;
            d->capatomics = cap;
        }
        char *p = strdup(path);
        bson_t *vals = bson_new();
        if (!p || !vals) {
            free(p);
            if (vals) bson_destroy(vals);
            return mk_error_nomem(err);
        }
        d->atomics[d->natomics++] = (mk_atomic_t){.path = p, .op = op, .values = vals};
        a = &d->atomics[d->natomics - 1];
    }
    if (a->op != op) {
        a->op = ATOMIC_SET;
        return MK_OK;
    }
    char key[16];
    const char *k;
    size_t kl = bson_uint32_to_string(a->nvalues, &k, key, sizeof key);
    if (!bson_append_value(a->values, k, (int)kl, v)) return mk_error_nomem(err);
    a->nvalues++;
    return MK_OK;
}

/* Marks the array modified without dropping its atomic (mk_doc_mark keeps the list). */
static int mark_array(mk_doc_t *d, const char *path, mk_error_t *err)
{
    /* a direct mark would make record_atomic treat later changes as $set: track the atomic's
     * path separately from direct sets by checking the atomic first */
    for (size_t i = 0; i < d->nmod; i++)
        if (strcmp(d->modified[i], path) == 0) return MK_OK;
    return mk_doc_mark(d, path, err);
}

static int push_value(mk_doc_t *d, const char *path, const bson_value_t *in, bool unique,
                      bool *added, mk_error_t *err)
{
    const mk_schema_t *owner = NULL;
    const mk_schema_path_t *p = NULL;
    if (array_path(d, path, &owner, &p, err) != MK_OK) return MK_ERR;
    bson_t arr;
    uint32_t n;
    int rc = current_array(d, path, &arr, &n);
    if (rc != MK_OK) {
        bson_destroy(&arr);
        return rc == MK_ENOMEM ? mk_error_nomem(err)
                               : mk_error_setc(err, MK_CODE_INVALID_BSON, "corrupt array");
    }
    bson_value_t cv = {0};
    mk_error_t cerr = {0};
    rc = cast_element(d, owner, p, path, n, in, &cv, &cerr);
    if (rc != MK_OK) {
        if (err) *err = cerr;
        bson_destroy(&arr);
        return rc;
    }
    if (added) *added = true;
    if (unique) {
        bson_iter_t it;
        bson_iter_init(&it, &arr);
        while (bson_iter_next(&it))
            if (mk_value_cmp(bson_iter_value(&it), &cv) == 0) {
                if (added) *added = false;
                bson_value_destroy(&cv);
                bson_destroy(&arr);
                return MK_OK;
            }
    }
    char key[16];
    const char *k;
    size_t kl = bson_uint32_to_string(n, &k, key, sizeof key);
    if (!bson_append_value(&arr, k, (int)kl, &cv)) rc = mk_error_nomem(err);
    bool was_tracked = mk_doc_atomic(d, path) != NULL;
    bool direct = false;
    for (size_t i = 0; i < d->nmod; i++)
        if (strcmp(d->modified[i], path) == 0) direct = true;
    if (rc == MK_OK) rc = store_array(d, path, &arr, err);
    if (rc == MK_OK && (was_tracked || !direct))
        rc = record_atomic(d, path, unique ? ATOMIC_ADD_TO_SET : ATOMIC_PUSH, &cv, err);
    if (rc == MK_OK) rc = mark_array(d, path, err);
    bson_value_destroy(&cv);
    bson_destroy(&arr);
    return rc;
}

/* The holder is kept for symmetry with the callers' cleanup: values are borrowed. */
static int arg_value(mk_arg_t value, bson_t **holder, bson_value_t *out, mk_error_t *err)
{
    *holder = NULL;
    return mk_arg_value(value, out, err);
}

int mk_doc_push(mk_doc_t *d, const char *path, mk_arg_t value, mk_error_t *err)
{
    bson_t *h;
    bson_value_t v;
    if (arg_value(value, &h, &v, err) != MK_OK) return MK_ERR;
    int rc = push_value(d, path, &v, false, NULL, err);
    if (h) bson_destroy(h);
    return rc;
}

int mk_doc_push_json_args(mk_doc_t *d, const char *path, const char *json, const mk_arg_t *args,
                          mk_error_t *err)
{
    bson_t *obj = mk_json_parse(json, args, err);
    if (!obj) return MK_ERR;
    bson_value_t v = {.value_type = BSON_TYPE_DOCUMENT};
    v.value.v_doc.data = (uint8_t *)bson_get_data(obj);
    v.value.v_doc.data_len = obj->len;
    int rc = push_value(d, path, &v, false, NULL, err);
    bson_destroy(obj);
    return rc;
}

int mk_doc_add_to_set(mk_doc_t *d, const char *path, mk_arg_t value, bool *added, mk_error_t *err)
{
    bson_t *h;
    bson_value_t v;
    if (arg_value(value, &h, &v, err) != MK_OK) return MK_ERR;
    int rc = push_value(d, path, &v, true, added, err);
    if (h) bson_destroy(h);
    return rc;
}

/* The _id a pull / id() lookup means: an ObjectId, a 24-hex string, or a document's _id. */
static bool wanted_id(const bson_value_t *v, bson_value_t *id, bson_oid_t *tmp)
{
    if (v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.len == 24 &&
        bson_oid_is_valid(v->value.v_utf8.str, 24)) {
        bson_oid_init_from_string(tmp, v->value.v_utf8.str);
        id->value_type = BSON_TYPE_OID;
        id->value.v_oid = *tmp;
        return true;
    }
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_t b;
        bson_iter_t it;
        if (bson_init_static(&b, v->value.v_doc.data, v->value.v_doc.data_len) &&
            bson_iter_init_find(&it, &b, "_id")) {
            *id = *bson_iter_value(&it);
            return true;
        }
        return false;
    }
    *id = *v;
    return true;
}

static bool elem_id(const bson_value_t *elem, bson_value_t *id)
{
    if (elem->value_type != BSON_TYPE_DOCUMENT) return false;
    bson_t b;
    bson_iter_t it;
    if (!bson_init_static(&b, elem->value.v_doc.data, elem->value.v_doc.data_len) ||
        !bson_iter_init_find(&it, &b, "_id"))
        return false;
    *id = *bson_iter_value(&it);
    return true;
}

int mk_doc_pull(mk_doc_t *d, const char *path, mk_arg_t value, size_t *removed, mk_error_t *err)
{
    const mk_schema_t *owner = NULL;
    const mk_schema_path_t *p = NULL;
    if (removed) *removed = 0;
    if (array_path(d, path, &owner, &p, err) != MK_OK) return MK_ERR;
    bson_t *h;
    bson_value_t in;
    if (arg_value(value, &h, &in, err) != MK_OK) return MK_ERR;
    bool docarray = mk_schema_path_kind(p) == MK_TYPE_DOCARRAY;
    bson_value_t target = {0}, id;
    bson_oid_t tmp;
    int rc = MK_OK;
    bool own_target = false;
    if (docarray) {
        if (!wanted_id(&in, &id, &tmp)) {
            if (h) bson_destroy(h);
            return mk_error_set(err, 0, "TypeError",
                                "pull on a document array needs an _id or a document with _id");
        }
        target = id;
    } else {
        mk_error_t cerr = {0};
        rc = cast_element(d, owner, p, path, 0, &in, &target, &cerr);
        if (rc != MK_OK) {
            if (err) *err = cerr;
            if (h) bson_destroy(h);
            return rc;
        }
        own_target = true;
    }
    bson_value_t cur;
    size_t n_removed = 0;
    if (mk_doc_lookup(d, path, &cur) && cur.value_type == BSON_TYPE_ARRAY) {
        bson_t arr, kept = BSON_INITIALIZER;
        bson_iter_t it;
        uint32_t n = 0;
        bson_init_static(&arr, cur.value.v_doc.data, cur.value.v_doc.data_len);
        bson_iter_init(&it, &arr);
        while (rc == MK_OK && bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            bson_value_t eid;
            bool match = docarray ? elem_id(e, &eid) && mk_value_cmp(&eid, &target) == 0
                                  : mk_value_cmp(e, &target) == 0;
            if (match) {
                n_removed++;
                continue;
            }
            char key[16];
            const char *k;
            size_t kl = bson_uint32_to_string(n++, &k, key, sizeof key);
            if (!bson_append_value(&kept, k, (int)kl, e)) rc = mk_error_nomem(err);
        }
        if (rc == MK_OK && n_removed) {
            rc = store_array(d, path, &kept, err);
            bool direct = false;
            for (size_t i = 0; i < d->nmod; i++)
                if (strcmp(d->modified[i], path) == 0) direct = true;
            bool was_tracked = mk_doc_atomic(d, path) != NULL;
            if (rc == MK_OK && (was_tracked || !direct))
                rc = record_atomic(d, path, ATOMIC_PULL, &target, err);
            if (rc == MK_OK) rc = mark_array(d, path, err);
        }
        bson_destroy(&kept);
    }
    if (removed) *removed = n_removed;
    if (own_target) bson_value_destroy(&target);
    if (h) bson_destroy(h);
    return rc;
}

int64_t mk_doc_array_id(mk_doc_t *d, const char *path, mk_arg_t idarg)
{
    bson_t *h;
    bson_value_t in, id, cur;
    bson_oid_t tmp;
    if (arg_value(idarg, &h, &in, NULL) != MK_OK) return -1;
    int64_t found = -1;
    if (wanted_id(&in, &id, &tmp) && mk_doc_lookup(d, path, &cur) &&
        cur.value_type == BSON_TYPE_ARRAY) {
        bson_t arr;
        bson_iter_t it;
        bson_init_static(&arr, cur.value.v_doc.data, cur.value.v_doc.data_len);
        bson_iter_init(&it, &arr);
        for (int64_t i = 0; bson_iter_next(&it); i++) {
            bson_value_t eid;
            if (elem_id(bson_iter_value(&it), &eid) && mk_value_cmp(&eid, &id) == 0) {
                found = i;
                break;
            }
        }
    }
    if (h) bson_destroy(h);
    return found;
}
