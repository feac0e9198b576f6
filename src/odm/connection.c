/* Connections: which storage a URI names, the databases opened on it, and the models registered
 * on each (Mongoose's Connection). */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "odm/odm_internal.h"

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

/* MongoDB's rules for database names: not empty, under 64 bytes, none of / \ . " $ space. */
static bool valid_db_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 64 && strcspn(s, "/\\. \"$") == n;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static mk_conn_t *conn_new(mk_conn_t *root, const char *db, mk_error_t *err)
{
    mk_conn_t *c = calloc(1, sizeof *c);
    if (!c || !(c->db = strdup(db))) {
        free(c);
        mk_error_nomem(err);
        return NULL;
    }
    c->root = root ? root : c;
    return c;
}

static void models_free(mk_conn_t *c)
{
    for (size_t i = 0; i < c->nmodels; i++) mk_model_free(c->models[i]);
    free(c->models);
    free(c->plugins);
}

void mk_conn_close(mk_conn_t *c)
{
    if (!c) return;
    if (c->root != c) return; /* useDb connections live as long as their root */
    for (size_t i = 0; i < c->nchildren; i++) {
        models_free(c->children[i]);
        free(c->children[i]->db);
        free(c->children[i]);
    }
    free(c->children);
    models_free(c);
    mk_backend_destroy(c->be);
    mk_engine_close(c->engine);
    if (c->tmpdir) {
        remove_tree(c->tmpdir);
        free(c->tmpdir);
    }
    free(c->db);
    free(c);
}

/* The database name a directory gives: its last component. */
static int db_from_dir(const char *dir, char *out, size_t cap, mk_error_t *err)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/') start--;
    size_t len = n - start;
    if (len == 0 || len >= cap)
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE,
                             "cannot derive a database name from the path \"%s\"", dir);
    memcpy(out, dir + start, len);
    out[len] = '\0';
    if (!valid_db_name(out))
        return mk_error_setc(err, MK_CODE_INVALID_NAMESPACE,
                             "the directory name \"%s\" is not a valid database name (no . / \\ "
                             "\" $ or space, under 64 bytes); name the directory accordingly",
                             out);
    return MK_OK;
}

mk_conn_t *mk_connect_opts(const char *uri, const mk_engine_opts_t *opts, mk_error_t *err)
{
    if (!uri || !*uri) {
        mk_error_set(err, 0, "MongooseError",
                     "The `uri` parameter to `mk_connect()` must be a string, got \"%s\"",
                     uri ? "" : "null");
        return NULL;
    }
    if (strncmp(uri, "mongodb://", 10) == 0 || strncmp(uri, "mongodb+srv://", 14) == 0) {
        mk_error_set(err, 0, "MongooseError",
                     "%.*s URIs are not supported yet: the libmongoc backend has not landed; "
                     "use a directory path, file:PATH or memory:",
                     (int)strcspn(uri, ":") + 3, uri);
        return NULL;
    }
    char dbname[64];
    char *tmpdir = NULL;
    const char *dir;
    mk_engine_opts_t o = opts ? *opts : (mk_engine_opts_t){0};
    if (strncmp(uri, "memory:", 7) == 0) {
        const char *name = uri[7] ? uri + 7 : "test";
        if (strlen(name) >= sizeof dbname || !valid_db_name(name)) {
            mk_error_setc(err, MK_CODE_INVALID_NAMESPACE, "invalid database name \"%s\"", name);
            return NULL;
        }
        snprintf(dbname, sizeof dbname, "%s", name);
        const char *base = getenv("TMPDIR");
        if (!base || !*base) base = "/tmp";
        if (asprintf(&tmpdir, "%s/meerkat-memory-XXXXXX", base) < 0) {
            mk_error_nomem(err);
            return NULL;
        }
        if (!mkdtemp(tmpdir)) {
            mk_error_setc(err, MK_CODE_STORAGE, "cannot create a temporary directory in %s: %s",
                          base, strerror(errno));
            free(tmpdir);
            return NULL;
        }
        dir = tmpdir;
        o.no_sync = true; /* nothing outlives the connection: durability buys nothing */
    } else {
        dir = strncmp(uri, "file:", 5) == 0 ? uri + 5 : uri;
        if (!*dir) {
            mk_error_set(err, 0, "MongooseError", "file: needs a path (file:data/app)");
            return NULL;
        }
        if (strstr(uri, "://")) {
            mk_error_set(err, 0, "MongooseError", "URI scheme of \"%s\" is not supported", uri);
            return NULL;
        }
        if (db_from_dir(dir, dbname, sizeof dbname, err) != MK_OK) return NULL;
    }
    mk_conn_t *c = conn_new(NULL, dbname, err);
    if (!c) goto fail;
    c->tmpdir = tmpdir;
    tmpdir = NULL;
    if (!(c->engine = mk_engine_open(dir, &o, err))) goto fail;
    if (!(c->be = mk_backend_embedded_new(c->engine, err))) goto fail;
    return c;
fail:
    if (tmpdir) {
        remove_tree(tmpdir);
        free(tmpdir);
    }
    mk_conn_close(c);
    return NULL;
}

mk_conn_t *mk_connect(const char *uri, mk_error_t *err)
{
    return mk_connect_opts(uri, NULL, err);
}

mk_conn_t *mk_conn_use_db(mk_conn_t *conn, const char *db, mk_error_t *err)
{
    mk_conn_t *root = conn->root;
    if (!db || !valid_db_name(db)) {
        mk_error_setc(err, MK_CODE_INVALID_NAMESPACE, "Invalid database name \"%s\"", db ? db : "");
        return NULL;
    }
    if (strcmp(root->db, db) == 0) return root;
    for (size_t i = 0; i < root->nchildren; i++)
        if (strcmp(root->children[i]->db, db) == 0) return root->children[i];
    if (!grow((void **)&root->children, &root->capchildren, root->nchildren,
              sizeof *root->children)) {
        mk_error_nomem(err);
        return NULL;
    }
    mk_conn_t *c = conn_new(root, db, err);
    if (!c) return NULL;
    c->be = root->be;
    root->children[root->nchildren++] = c;
    return c;
}

const char *mk_conn_db_name(const mk_conn_t *conn)
{
    return conn->db;
}

int mk_conn_plugin(mk_conn_t *conn, mk_plugin_fn fn, void *opts, mk_error_t *err)
{
    if (!fn) return mk_error_setc(err, MK_CODE_BAD_VALUE, "a plugin function is needed");
    if (!grow((void **)&conn->plugins, &conn->capplugins, conn->nplugins, sizeof *conn->plugins))
        return mk_error_nomem(err);
    conn->plugins[conn->nplugins++] = (struct conn_plugin){fn, opts};
    return MK_OK;
}

int mk_conn_command(mk_conn_t *conn, const bson_t *cmd, bson_t *reply, mk_error_t *err)
{
    return conn->be->ops->run_command(conn->be, NULL, conn->db, cmd, reply, err);
}

/* ---- the model registry ---- */

int mk_conn_register_model(mk_conn_t *conn, mk_model_t *m, mk_error_t *err)
{
    if (!grow((void **)&conn->models, &conn->capmodels, conn->nmodels, sizeof *conn->models))
        return mk_error_nomem(err);
    conn->models[conn->nmodels++] = m;
    return MK_OK;
}

mk_model_t *mk_conn_find_model(const mk_conn_t *conn, const char *name)
{
    for (size_t i = 0; i < conn->nmodels; i++)
        if (strcmp(conn->models[i]->name, name) == 0) return conn->models[i];
    return NULL;
}

mk_model_t *mk_model_get(mk_conn_t *conn, const char *name, mk_error_t *err)
{
    mk_model_t *m = name ? mk_conn_find_model(conn, name) : NULL;
    if (!m)
        mk_error_set(err, 0, "MissingSchemaError",
                     "Schema hasn't been registered for model \"%s\".\nUse "
                     "mongoose.model(name, schema)",
                     name ? name : "");
    return m;
}
