/* Administrative commands: create, drop, dropDatabase, listCollections, listDatabases, and
 * the handshake commands drivers send (ping, hello/isMaster, buildInfo). */
#include <stdio.h>
#include <string.h>

#include "engine/command.h"
#include "engine/cursor.h"
#include "engine/matcher.h"

#define MK_SERVER_VERSION "7.0.0"

static const char *const create_fields[] = {"capped",
                                            "size",
                                            "max",
                                            "timeseries",
                                            "validator",
                                            "validationLevel",
                                            "validationAction",
                                            "viewOn",
                                            "pipeline",
                                            "clusteredIndex",
                                            "changeStreamPreAndPostImages",
                                            "storageEngine",
                                            "indexOptionDefaults",
                                            "expireAfterSeconds",
                                            "encryptedFields",
                                            NULL};

static int create_body(mk_cmd_t *c, MDB_txn *txn, void *ud)
{
    const char *coll = ud;
    mk_coll_t *existing;
    if (mk_coll_find(c->eng, txn, c->db, coll, &existing, c->err) != MK_OK) return MK_ERR;
    if (existing)
        return mk_error_setc(c->err, MK_CODE_NAMESPACE_EXISTS, "Collection %s.%s already exists.",
                             c->db, coll);
    mk_coll_t *made;
    return mk_coll_ensure(c->eng, txn, c->db, coll, NULL, &made, NULL, c->err);
}

int mk_cmd_create(mk_cmd_t *c)
{
    const char *coll;
    if (mk_cmd_coll_name(c, &coll) != MK_OK) return MK_ERR;
    if (mk_cmd_check_fields(c, create_fields) != MK_OK) return MK_ERR;
    /* Every option create knows changes behaviour we do not have yet: refuse, naming it. */
    bson_iter_t it;
    bson_iter_init(&it, c->body);
    bson_iter_next(&it);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        for (const char *const *f = create_fields; *f; f++)
            if (strcmp(*f, k) == 0 && !(strcmp(k, "capped") == 0 && !bson_iter_as_bool(&it)))
                return mk_error_setc(c->err, MK_CODE_BAD_VALUE,
                                     "create option '%s' is not supported yet", k);
    }
    return mk_cmd_write(c, create_body, (void *)coll);
}

static int drop_body(mk_cmd_t *c, MDB_txn *txn, void *ud)
{
    const char *coll = ud;
    mk_coll_t *cl;
    if (mk_coll_find(c->eng, txn, c->db, coll, &cl, c->err) != MK_OK) return MK_ERR;
    char ns[300];
    snprintf(ns, sizeof ns, "%s.%s", c->db, coll);
    if (!cl) return MK_OK; /* as MongoDB 7: dropping a missing collection succeeds */
    if (mk_coll_drop(c->eng, txn, cl, c->err) != MK_OK) return MK_ERR;
    BSON_APPEND_INT32(c->reply, "nIndexesWas", 1);
    BSON_APPEND_UTF8(c->reply, "ns", ns);
    return MK_OK;
}

int mk_cmd_drop(mk_cmd_t *c)
{
    const char *coll;
    if (mk_cmd_coll_name(c, &coll) != MK_OK) return MK_ERR;
    static const char *const none[] = {NULL};
    if (mk_cmd_check_fields(c, none) != MK_OK) return MK_ERR;
    return mk_cmd_write(c, drop_body, (void *)coll);
}

typedef struct name_list {
    char names[256][256];
    int n;
    bool more;
} name_list_t;

static int collect_name(void *ud, const char *ns, const bson_t *entry)
{
    name_list_t *l = ud;
    if (l->n == 256) {
        l->more = true;
        return 1;
    }
    snprintf(l->names[l->n++], sizeof l->names[0], "%s", ns);
    return MK_OK;
}

static int drop_db_body(mk_cmd_t *c, MDB_txn *txn, void *ud)
{
    static __thread name_list_t list;
    for (;;) {
        list.n = 0;
        list.more = false;
        int rc = mk_catalog_each(c->eng, txn, c->db, collect_name, &list, c->err);
        if (rc != MK_OK && rc != 1) return rc;
        if (list.n == 0) break;
        for (int i = 0; i < list.n; i++) {
            mk_coll_t *cl;
            const char *coll = list.names[i] + strlen(c->db) + 1;
            if (mk_coll_find(c->eng, txn, c->db, coll, &cl, c->err) != MK_OK) return MK_ERR;
            if (cl && mk_coll_drop(c->eng, txn, cl, c->err) != MK_OK) return MK_ERR;
        }
        if (!list.more) break;
    }
    BSON_APPEND_UTF8(c->reply, "dropped", c->db);
    return MK_OK;
}

int mk_cmd_drop_database(mk_cmd_t *c)
{
    return mk_cmd_write(c, drop_db_body, NULL);
}

typedef struct list_ctx {
    mk_cmd_t *c;
    bson_t *arr;
    uint32_t n;
    bool name_only;
    mk_matcher_t *filter;
    char last_db[64];
} list_ctx_t;

static int list_coll_entry(void *ud, const char *ns, const bson_t *entry)
{
    list_ctx_t *l = ud;
    const char *name = strchr(ns, '.') + 1;
    bson_t info = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&info, "name", name);
    BSON_APPEND_UTF8(&info, "type", "collection");
    if (!l->name_only) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, entry, "options"))
            bson_append_value(&info, "options", -1, bson_iter_value(&it));
        bson_t i2;
        bson_append_document_begin(&info, "info", -1, &i2);
        BSON_APPEND_BOOL(&i2, "readOnly", false);
        if (bson_iter_init_find(&it, entry, "uuid"))
            bson_append_value(&i2, "uuid", -1, bson_iter_value(&it));
        bson_append_document_end(&info, &i2);
        bson_t idx, key;
        bson_append_document_begin(&info, "idIndex", -1, &idx);
        BSON_APPEND_INT32(&idx, "v", 2);
        bson_append_document_begin(&idx, "key", -1, &key);
        BSON_APPEND_INT32(&key, "_id", 1);
        bson_append_document_end(&idx, &key);
        BSON_APPEND_UTF8(&idx, "name", "_id_");
        bson_append_document_end(&info, &idx);
    }
    if (!l->filter || mk_matcher_match(l->filter, &info, NULL)) {
        char k[16];
        const char *kp;
        bson_uint32_to_string(l->n++, &kp, k, sizeof k);
        bson_append_document(l->arr, kp, -1, &info);
    }
    bson_destroy(&info);
    return MK_OK;
}

static const char *const list_coll_fields[] = {"filter", "nameOnly", "authorizedCollections",
                                               "cursor", NULL};

int mk_cmd_list_collections(mk_cmd_t *c)
{
    if (mk_cmd_check_fields(c, list_coll_fields) != MK_OK) return MK_ERR;
    bson_t filter, arr = BSON_INITIALIZER;
    bool has_filter;
    list_ctx_t l = {.c = c, .arr = &arr};
    if (mk_opt_doc(c->body, "filter", &filter, &has_filter, c->err) != MK_OK ||
        mk_opt_bool(c->body, "nameOnly", &l.name_only, c->err) != MK_OK)
        return MK_ERR;
    if (has_filter && !(l.filter = mk_matcher_compile(&filter, c->err))) return MK_ERR;
    MDB_txn *txn;
    int rc = mk_cmd_read(c, &txn);
    if (rc == MK_OK) {
        rc = mk_catalog_each(c->eng, txn, c->db, list_coll_entry, &l, c->err);
        mk_cmd_read_done(c, txn);
    }
    mk_matcher_destroy(l.filter);
    if (rc == MK_OK) {
        bson_t cur;
        bson_append_document_begin(c->reply, "cursor", -1, &cur);
        BSON_APPEND_INT64(&cur, "id", 0);
        char ns[128];
        snprintf(ns, sizeof ns, "%s.$cmd.listCollections", c->db);
        BSON_APPEND_UTF8(&cur, "ns", ns);
        bson_append_array(&cur, "firstBatch", -1, &arr);
        bson_append_document_end(c->reply, &cur);
    }
    bson_destroy(&arr);
    return rc;
}

static int list_db_entry(void *ud, const char *ns, const bson_t *entry)
{
    list_ctx_t *l = ud;
    const char *dot = strchr(ns, '.');
    size_t len = (size_t)(dot - ns);
    if (strlen(l->last_db) == len && strncmp(l->last_db, ns, len) == 0) return MK_OK;
    snprintf(l->last_db, sizeof l->last_db, "%.*s", (int)len, ns);
    bson_t info = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&info, "name", l->last_db);
    if (!l->name_only) {
        BSON_APPEND_INT64(&info, "sizeOnDisk", 0);
        BSON_APPEND_BOOL(&info, "empty", false);
    }
    if (!l->filter || mk_matcher_match(l->filter, &info, NULL)) {
        char k[16];
        const char *kp;
        bson_uint32_to_string(l->n++, &kp, k, sizeof k);
        bson_append_document(l->arr, kp, -1, &info);
    }
    bson_destroy(&info);
    return MK_OK;
}

static const char *const list_db_fields[] = {"filter", "nameOnly", "authorizedDatabases", NULL};

int mk_cmd_list_databases(mk_cmd_t *c)
{
    if (mk_cmd_check_fields(c, list_db_fields) != MK_OK) return MK_ERR;
    bson_t filter, arr = BSON_INITIALIZER;
    bool has_filter;
    list_ctx_t l = {.c = c, .arr = &arr};
    if (mk_opt_doc(c->body, "filter", &filter, &has_filter, c->err) != MK_OK ||
        mk_opt_bool(c->body, "nameOnly", &l.name_only, c->err) != MK_OK)
        return MK_ERR;
    if (has_filter && !(l.filter = mk_matcher_compile(&filter, c->err))) return MK_ERR;
    MDB_txn *txn;
    int rc = mk_cmd_read(c, &txn);
    if (rc == MK_OK) {
        rc = mk_catalog_each(c->eng, txn, NULL, list_db_entry, &l, c->err);
        mk_cmd_read_done(c, txn);
    }
    mk_matcher_destroy(l.filter);
    if (rc == MK_OK) {
        bson_append_array(c->reply, "databases", -1, &arr);
        if (!l.name_only) {
            MDB_envinfo info;
            MDB_stat st;
            int64_t size = 0;
            if (mdb_env_info(c->eng->env, &info) == 0 && mdb_env_stat(c->eng->env, &st) == 0)
                size = (int64_t)(info.me_last_pgno + 1) * st.ms_psize;
            BSON_APPEND_INT64(c->reply, "totalSize", size);
            BSON_APPEND_INT64(c->reply, "totalSizeMb", size / (1024 * 1024));
        }
    }
    bson_destroy(&arr);
    return rc;
}

int mk_cmd_ping(mk_cmd_t *c)
{
    return MK_OK;
}

int mk_cmd_hello(mk_cmd_t *c)
{
    bool legacy = strcmp(c->name, "hello") != 0;
    BSON_APPEND_BOOL(c->reply, legacy ? "ismaster" : "isWritablePrimary", true);
    BSON_APPEND_INT32(c->reply, "maxBsonObjectSize", MK_MAX_BSON_SIZE);
    BSON_APPEND_INT32(c->reply, "maxMessageSizeBytes", 48000000);
    BSON_APPEND_INT32(c->reply, "maxWriteBatchSize", 100000);
    BSON_APPEND_DATE_TIME(c->reply, "localTime", mk_now_ms());
    BSON_APPEND_INT32(c->reply, "logicalSessionTimeoutMinutes", 30);
    BSON_APPEND_INT32(c->reply, "connectionId", 1);
    BSON_APPEND_INT32(c->reply, "minWireVersion", 0);
    BSON_APPEND_INT32(c->reply, "maxWireVersion", 21);
    BSON_APPEND_BOOL(c->reply, "readOnly", false);
    return MK_OK;
}

int mk_cmd_build_info(mk_cmd_t *c)
{
    BSON_APPEND_UTF8(c->reply, "version", MK_SERVER_VERSION);
    BSON_APPEND_UTF8(c->reply, "gitVersion", "meerkat");
    bson_t arr;
    bson_append_array_begin(c->reply, "versionArray", -1, &arr);
    BSON_APPEND_INT32(&arr, "0", 7);
    BSON_APPEND_INT32(&arr, "1", 0);
    BSON_APPEND_INT32(&arr, "2", 0);
    BSON_APPEND_INT32(&arr, "3", 0);
    bson_append_array_end(c->reply, &arr);
    BSON_APPEND_INT32(c->reply, "bits", 64);
    BSON_APPEND_BOOL(c->reply, "debug", false);
    BSON_APPEND_INT32(c->reply, "maxBsonObjectSize", MK_MAX_BSON_SIZE);
    BSON_APPEND_UTF8(c->reply, "meerkat", "0.1.0");
    return MK_OK;
}
