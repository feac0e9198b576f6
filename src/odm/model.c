/* Models: a schema compiled for a connection and a collection (Mongoose's connection.model()),
 * and the model-level operations that are not queries (indexes, statics). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "odm/odm_internal.h"

int64_t mk_odm_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

bool mk_schematype_cast_type(mk_schematype_t t, mk_cast_type_t *out)
{
    switch (t) {
    case MK_TYPE_STRING:
        *out = MK_CAST_STRING;
        return true;
    case MK_TYPE_NUMBER:
        *out = MK_CAST_NUMBER;
        return true;
    case MK_TYPE_BOOLEAN:
        *out = MK_CAST_BOOLEAN;
        return true;
    case MK_TYPE_DATE:
        *out = MK_CAST_DATE;
        return true;
    case MK_TYPE_OBJECTID:
        *out = MK_CAST_OBJECTID;
        return true;
    case MK_TYPE_BUFFER:
        *out = MK_CAST_BUFFER;
        return true;
    case MK_TYPE_DECIMAL128:
        *out = MK_CAST_DECIMAL128;
        return true;
    case MK_TYPE_BIGINT:
        *out = MK_CAST_BIGINT;
        return true;
    case MK_TYPE_INT32:
        *out = MK_CAST_INT32;
        return true;
    case MK_TYPE_DOUBLE:
        *out = MK_CAST_DOUBLE;
        return true;
    case MK_TYPE_UUID:
        *out = MK_CAST_UUID;
        return true;
    default:
        return false;
    }
}

/* An index's default name, as MongoDB names it: field_direction joined by "_". */
static char *index_name(const bson_t *key)
{
    bson_string_t *s = bson_string_new(NULL);
    bson_iter_t it;
    bool first = true;
    if (bson_iter_init(&it, key)) {
        while (bson_iter_next(&it)) {
            if (!first) bson_string_append_c(s, '_');
            first = false;
            bson_string_append(s, bson_iter_key(&it));
            bson_string_append_c(s, '_');
            if (BSON_ITER_HOLDS_UTF8(&it)) {
                bson_string_append(s, bson_iter_utf8(&it, NULL));
            } else {
                char buf[32];
                snprintf(buf, sizeof buf, "%g", bson_iter_as_double(&it));
                bson_string_append(s, buf);
            }
        }
    }
    return bson_string_free(s, false);
}

int mk_model_ensure_indexes(mk_model_t *m, mk_error_t *err)
{
    bson_t *pairs = mk_schema_indexes(m->schema, err);
    if (!pairs) return MK_ERR;
    bson_t specs = BSON_INITIALIZER;
    bson_iter_t it;
    uint32_t n = 0;
    int rc = MK_OK;
    if (bson_iter_init(&it, pairs)) {
        while (rc == MK_OK && bson_iter_next(&it)) {
            bson_iter_t pair, key_it, opt_it;
            bson_t key, opts;
            uint32_t len;
            const uint8_t *data;
            if (!bson_iter_recurse(&it, &pair) || !bson_iter_find(&pair, "0")) continue;
            key_it = pair;
            if (!bson_iter_find(&pair, "1")) continue;
            opt_it = pair;
            bson_iter_document(&key_it, &len, &data);
            bson_init_static(&key, data, len);
            bson_iter_document(&opt_it, &len, &data);
            bson_init_static(&opts, data, len);
            char buf[16];
            const char *k;
            bson_uint32_to_string(n++, &k, buf, sizeof buf);
            bson_t spec;
            bson_iter_t name_it;
            char *name = bson_iter_init_find(&name_it, &opts, "name") ? NULL : index_name(&key);
            bool ok = bson_append_document_begin(&specs, k, -1, &spec) &&
                      BSON_APPEND_DOCUMENT(&spec, "key", &key) &&
                      (!name || BSON_APPEND_UTF8(&spec, "name", name));
            bson_iter_t o;
            if (ok && bson_iter_init(&o, &opts))
                while (ok && bson_iter_next(&o))
                    if (strcmp(bson_iter_key(&o), "background") != 0) /* a no-op since 4.2 */
                        ok = bson_append_iter(&spec, NULL, 0, &o);
            ok = ok && bson_append_document_end(&specs, &spec);
            bson_free(name);
            if (!ok) rc = mk_error_nomem(err);
        }
    }
    /* one createIndexes per index: an index the engine cannot build (a text index, duplicates
     * under a unique one) must not keep the others from being built */
    if (rc == MK_OK && n > 0) {
        bson_iter_t sit;
        int first = MK_OK;
        mk_error_t first_err = {0};
        bson_iter_init(&sit, &specs);
        while (bson_iter_next(&sit)) {
            bson_t one = BSON_INITIALIZER, reply = BSON_INITIALIZER;
            mk_error_t e = {0};
            int r = bson_append_value(&one, "0", 1, bson_iter_value(&sit))
                        ? m->conn->be->ops->create_indexes(m->conn->be, NULL, m->conn->db,
                                                           m->collection, &one, NULL, &reply, &e)
                        : mk_error_nomem(&e);
            if (r != MK_OK && first == MK_OK) {
                first = r;
                first_err = e;
            }
            bson_destroy(&one);
            bson_destroy(&reply);
        }
        if (first != MK_OK) {
            rc = first;
            if (err) *err = first_err;
        }
    }
    bson_destroy(&specs);
    bson_destroy(pairs);
    return rc;
}

int mk_model_init(mk_model_t *m, mk_error_t *err)
{
    if (!m->index_error) return MK_OK;
    if (err) *err = *m->index_error;
    return MK_ERR;
}

void mk_model_free(mk_model_t *m)
{
    if (!m) return;
    free(m->index_error);
    mk_schema_destroy(m->schema);
    free(m->name);
    free(m->collection);
    free(m);
}

static int apply_plugins(const mk_conn_t *c, mk_schema_t *s, mk_error_t *err)
{
    for (size_t i = 0; i < c->nplugins; i++)
        if (c->plugins[i].fn(s, c->plugins[i].opts, err) != MK_OK) return MK_ERR;
    return MK_OK;
}

mk_model_t *mk_model_collection(mk_conn_t *conn, const char *name, const mk_schema_t *schema,
                                const char *collection, mk_error_t *err)
{
    if (!conn || !name || !*name || !schema) {
        mk_error_set(err, 0, "MongooseError", "mk_model needs a connection, a name and a schema");
        return NULL;
    }
    if (mk_conn_find_model(conn, name)) {
        mk_error_set(err, 0, "OverwriteModelError", "Cannot overwrite `%s` model once compiled.",
                     name);
        return NULL;
    }
    mk_model_t *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name))) {
        free(m);
        mk_error_nomem(err);
        return NULL;
    }
    m->conn = conn;
    if (!(m->schema = mk_schema_clone(schema, err))) goto fail;
    /* connection plugins: the root's (mongoose.plugin) then this database's */
    if (conn->root != conn && apply_plugins(conn->root, m->schema, err) != MK_OK) goto fail;
    if (apply_plugins(conn, m->schema, err) != MK_OK) goto fail;
    if (mk_schema_resolve_named(m->schema, err) != MK_OK) goto fail;
    if (mk_schema_add_version_key(m->schema, err) != MK_OK) goto fail;
    m->has_hooks = mk_schema_hook_count(m->schema) > 0;
    const mk_schema_options_t *o = mk_schema_options(m->schema);
    if (!collection) collection = o->collection;
    m->collection = collection ? strdup(collection) : mk_pluralize(name);
    if (!m->collection) {
        mk_error_nomem(err);
        goto fail;
    }
    if (mk_conn_register_model(conn, m, err) != MK_OK) goto fail;
    /* as Mongoose: an index that cannot be built does not stop the model; Model.init()
     * (mk_model_init) reports it */
    if (o->auto_index) {
        mk_error_t ie = {0};
        if (mk_model_ensure_indexes(m, &ie) != MK_OK) {
            if (!(m->index_error = malloc(sizeof *m->index_error))) {
                mk_error_nomem(err);
                conn->nmodels--;
                goto fail;
            }
            *m->index_error = ie;
        }
    }
    return m;
fail:
    mk_model_free(m);
    return NULL;
}

mk_model_t *mk_model(mk_conn_t *conn, const char *name, const mk_schema_t *schema, mk_error_t *err)
{
    return mk_model_collection(conn, name, schema, NULL, err);
}

const char *mk_model_name(const mk_model_t *m)
{
    return m->name;
}

const char *mk_model_collection_name(const mk_model_t *m)
{
    return m->collection;
}

const mk_schema_t *mk_model_schema(const mk_model_t *m)
{
    return m->schema;
}

mk_conn_t *mk_model_conn(const mk_model_t *m)
{
    return m->conn;
}

int mk_model_call(mk_model_t *m, const char *name, void *args, mk_error_t *err)
{
    const mk_named_fn_t *f = name ? mk_schema_static_find(m->schema, name) : NULL;
    if (!f)
        return mk_error_set(err, 0, "TypeError", "%s.%s is not a function", m->name,
                            name ? name : "(null)");
    return f->fn.stat(m, args, f->ud, err);
}
