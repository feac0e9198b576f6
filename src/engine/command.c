/* Command dispatch and the helpers every command shares. */
#include "bson/value.h"
#include "engine/command.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/cursor.h"

static const struct {
    const char *name;
    mk_cmd_fn fn;
} commands[] = {
    {"find", mk_cmd_find},
    {"getMore", mk_cmd_get_more},
    {"insert", mk_cmd_insert},
    {"update", mk_cmd_update},
    {"delete", mk_cmd_delete},
    {"findAndModify", mk_cmd_find_and_modify},
    {"findandmodify", mk_cmd_find_and_modify},
    {"killCursors", mk_cmd_kill_cursors},
    {"count", mk_cmd_count},
    {"distinct", mk_cmd_distinct},
    {"create", mk_cmd_create},
    {"drop", mk_cmd_drop},
    {"dropDatabase", mk_cmd_drop_database},
    {"listCollections", mk_cmd_list_collections},
    {"listDatabases", mk_cmd_list_databases},
    {"ping", mk_cmd_ping},
    {"hello", mk_cmd_hello},
    {"isMaster", mk_cmd_hello},
    {"ismaster", mk_cmd_hello},
    {"buildInfo", mk_cmd_build_info},
    {"buildinfo", mk_cmd_build_info},
    {"createIndexes", mk_cmd_create_indexes},
    {"listIndexes", mk_cmd_list_indexes},
    {"dropIndexes", mk_cmd_drop_indexes},
    {"deleteIndexes", mk_cmd_drop_indexes},
    {"validate", mk_cmd_validate},
    {"explain", mk_cmd_explain},
    {"commitTransaction", mk_cmd_txn_without_session},
    {"abortTransaction", mk_cmd_txn_without_session},
    {"endSessions", mk_cmd_end_sessions},
    {"startSession", mk_cmd_start_session},
    {"refreshSessions", mk_cmd_refresh_sessions},
};

__thread int64_t mk_op_deadline_ns;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int mk_op_check_slow(mk_error_t *err)
{
    if (mono_ns() < mk_op_deadline_ns) return MK_OK;
    return mk_error_setc(err, MK_CODE_MAX_TIME_MS_EXPIRED, "operation exceeded time limit");
}

/* Reads maxTimeMS (0: no limit) into the thread's deadline. */
static int set_deadline(bson_iter_t it, mk_error_t *err)
{
    if (!BSON_ITER_HOLDS_NUMBER(&it))
        return mk_error_setc(err, MK_CODE_BAD_VALUE, "maxTimeMS must be a number");
    int64_t ms = bson_iter_as_int64(&it);
    if (ms < 0 || ms > INT32_MAX)
        return mk_error_setc(err, MK_CODE_BAD_VALUE,
                             "%lld value for maxTimeMS is out of range [0, 2147483647]",
                             (long long)ms);
    if (ms > 0) mk_op_deadline_ns = mono_ns() + ms * 1000000;
    return MK_OK;
}

static void error_reply(bson_t *reply, const mk_error_t *e)
{
    bson_reinit(reply);
    BSON_APPEND_DOUBLE(reply, "ok", 0.0);
    BSON_APPEND_UTF8(reply, "errmsg", e->message);
    BSON_APPEND_INT32(reply, "code", e->code);
    BSON_APPEND_UTF8(reply, "codeName", e->kind);
    if (e->labels) {
        bson_t labels;
        uint32_t n = 0;
        bson_append_array_begin(reply, "errorLabels", -1, &labels);
        if (e->labels & MK_LABEL_TRANSIENT_TRANSACTION) {
            BSON_APPEND_UTF8(&labels, "0", "TransientTransactionError");
            n++;
        }
        if (e->labels & MK_LABEL_UNKNOWN_COMMIT_RESULT)
            BSON_APPEND_UTF8(&labels, n ? "1" : "0", "UnknownTransactionCommitResult");
        bson_append_array_end(reply, &labels);
    }
}

int mk_engine_command(mk_engine_t *eng, const char *db, const bson_t *cmd, bson_t *reply,
                      mk_error_t *err)
{
    mk_error_t local;
    if (!err) memset(&local, 0, sizeof local);
    mk_error_t *e = err ? err : &local;
    mk_cmd_t c = {.eng = eng, .db = db, .body = cmd, .reply = reply, .err = e};
    int rc = MK_OK;

    mk_cursors_reap(eng);
    mk_sessions_reap(eng);
    if (!cmd || !bson_iter_init(&c.first, cmd) || !bson_iter_next(&c.first)) {
        rc = mk_error_setc(e, MK_CODE_FAILED_TO_PARSE, "empty command document");
        goto done;
    }
    /* one pass for the generic fields the dispatcher itself reads */
    mk_op_deadline_ns = 0;
    bson_iter_t f = c.first;
    while (bson_iter_next(&f)) {
        const char *k = bson_iter_key(&f);
        if (k[0] == '$' && strcmp(k, "$db") == 0) {
            if (!BSON_ITER_HOLDS_UTF8(&f)) {
                rc = mk_error_setc(e, MK_CODE_TYPE_MISMATCH,
                                   "BSON field '$db' is the wrong type '%s', expected type "
                                   "'string'",
                                   bson_iter_type(&f) == BSON_TYPE_INT32 ? "int" : "other");
                goto done;
            }
            c.db = bson_iter_utf8(&f, NULL);
        } else if (k[0] == 'm' && strcmp(k, "maxTimeMS") == 0) {
            if (set_deadline(f, e) != MK_OK) {
                rc = MK_ERR;
                goto done;
            }
        }
    }
    if (!c.db || !*c.db) c.db = "test";
    if (mk_check_db_name(c.db, e) != MK_OK) {
        rc = MK_ERR;
        goto done;
    }
    c.name = bson_iter_key(&c.first);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, c.name) == 0) {
            bool handled;
            rc = mk_session_dispatch(&c, commands[i].fn, &handled);
            if (!handled) rc = commands[i].fn(&c);
            goto done;
        }
    }
    rc = mk_error_setc(e, MK_CODE_COMMAND_NOT_FOUND, "no such command: '%s'", c.name);
done:
    mk_op_deadline_ns = 0;
    if (rc == MK_OK) {
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
        return MK_OK;
    }
    if (rc == MK_ENOMEM && !e->kind[0]) mk_error_nomem(e);
    error_reply(reply, e);
    return MK_ERR;
}

int mk_cmd_read(mk_cmd_t *c, MDB_txn **txn)
{
    if (c->txn) {
        *txn = c->txn;
        return MK_OK;
    }
    return mk_txn_read(c->eng, txn, c->err);
}

void mk_cmd_read_done(mk_cmd_t *c, MDB_txn *txn)
{
    if (txn != c->txn) mk_txn_read_end(c->eng, txn);
}

int mk_cmd_write(mk_cmd_t *c, mk_write_body body, void *ud)
{
    if (c->txn) {
        /* Inside a transaction: no commit here, and a full map cannot be retried in place. */
        int rc = body(c, c->txn, ud);
        if (rc == MK_EMAPFULL) {
            c->map_full = true;
            mk_error_set(c->err, MK_CODE_WRITE_CONFLICT, "WriteConflict",
                         "the data file was full and grows now; retry the transaction");
            c->err->labels |= MK_LABEL_TRANSIENT_TRANSACTION;
            return MK_ERR;
        }
        return rc;
    }
    for (int attempt = 0;; attempt++) {
        MDB_txn *txn;
        if (mk_txn_write(c->eng, &txn, c->err) != MK_OK) return MK_ERR;
        int rc = body(c, txn, ud);
        if (rc == MK_OK) {
            rc = mk_txn_commit(c->eng, txn, c->err);
            if (rc == MK_OK) return MK_OK;
        } else {
            mk_txn_abort(c->eng, txn);
        }
        if (rc != MK_EMAPFULL || attempt > 30) {
            if (rc == MK_EMAPFULL)
                mk_error_setc(c->err, MK_CODE_STORAGE, "the data file cannot grow any further");
            return rc == MK_EMAPFULL ? MK_ERR : rc;
        }
        if (mk_engine_grow(c->eng, c->err) != MK_OK) return MK_ERR;
        bson_reinit(c->reply);
    }
}

int mk_cmd_coll_name(mk_cmd_t *c, const char **coll)
{
    if (!BSON_ITER_HOLDS_UTF8(&c->first))
        return mk_error_setc(c->err, MK_CODE_INVALID_NAMESPACE,
                             "collection name has invalid type %s",
                             bson_iter_type(&c->first) == BSON_TYPE_INT32 ? "int" : "non-string");
    *coll = bson_iter_utf8(&c->first, NULL);
    return mk_check_coll_name(*coll, c->err);
}

static int iter_int64(bson_iter_t *it, const char *field, int64_t *out, mk_error_t *err)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_INT32:
        *out = bson_iter_int32(it);
        return MK_OK;
    case BSON_TYPE_INT64:
        *out = bson_iter_int64(it);
        return MK_OK;
    case BSON_TYPE_DOUBLE: {
        double d = bson_iter_double(it);
        if (d != d || d > 9.2e18 || d < -9.2e18 || d != (double)(int64_t)d)
            return mk_error_setc(err, MK_CODE_BAD_VALUE,
                                 "Expected field %s to have a whole number value, but found %g",
                                 field, d);
        *out = (int64_t)d;
        return MK_OK;
    }
    case BSON_TYPE_NULL:
        return MK_OK;
    default:
        return mk_error_setc(err, MK_CODE_TYPE_MISMATCH,
                             "BSON field '%s' is the wrong type '%s', expected types '[long, int, "
                             "decimal, double]'",
                             field, mk_type_name(bson_iter_type(it)));
    }
}

static int iter_bool(bson_iter_t *it, const char *field, bool *out, mk_error_t *err)
{
    bson_type_t t = bson_iter_type(it);
    if (t == BSON_TYPE_BOOL || t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 ||
        t == BSON_TYPE_DOUBLE) {
        *out = bson_iter_as_bool(it);
        return MK_OK;
    }
    if (t == BSON_TYPE_NULL) return MK_OK;
    return mk_error_setc(err, MK_CODE_TYPE_MISMATCH,
                         "BSON field '%s' is the wrong type '%s', expected type 'bool'", field,
                         mk_type_name(t));
}

static int iter_sub(bson_iter_t *it, const char *field, bson_type_t want, bson_t *out,
                    bool *present, mk_error_t *err)
{
    if (present) *present = false;
    if (bson_iter_type(it) == BSON_TYPE_NULL) return MK_OK;
    if (bson_iter_type(it) != want)
        return mk_error_setc(err, MK_CODE_TYPE_MISMATCH,
                             "BSON field '%s' is the wrong type '%s', expected type '%s'", field,
                             mk_type_name(bson_iter_type(it)),
                             want == BSON_TYPE_ARRAY ? "array" : "object");
    const uint8_t *data;
    uint32_t len;
    if (want == BSON_TYPE_ARRAY)
        bson_iter_array(it, &len, &data);
    else
        bson_iter_document(it, &len, &data);
    if (!bson_init_static(out, data, len))
        return mk_error_setc(err, MK_CODE_INVALID_BSON, "field '%s' is not valid BSON", field);
    if (present) *present = true;
    return MK_OK;
}

int mk_opt_int64(const bson_t *cmd, const char *field, int64_t *out, mk_error_t *err)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, cmd, field) ? iter_int64(&it, field, out, err) : MK_OK;
}

int mk_opt_bool(const bson_t *cmd, const char *field, bool *out, mk_error_t *err)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, cmd, field) ? iter_bool(&it, field, out, err) : MK_OK;
}

int mk_opt_doc(const bson_t *cmd, const char *field, bson_t *out, bool *present, mk_error_t *err)
{
    bson_iter_t it;
    if (present) *present = false;
    if (!bson_iter_init_find(&it, cmd, field)) return MK_OK;
    return iter_sub(&it, field, BSON_TYPE_DOCUMENT, out, present, err);
}

int mk_opt_array(const bson_t *cmd, const char *field, bson_t *out, bool *present, mk_error_t *err)
{
    bson_iter_t it;
    if (present) *present = false;
    if (!bson_iter_init_find(&it, cmd, field)) return MK_OK;
    return iter_sub(&it, field, BSON_TYPE_ARRAY, out, present, err);
}

static const char *const generic_fields[] = {"$db",
                                             "lsid",
                                             "txnNumber",
                                             "autocommit",
                                             "startTransaction",
                                             "$clusterTime",
                                             "readConcern",
                                             "writeConcern",
                                             "comment",
                                             "maxTimeMS",
                                             "$readPreference",
                                             "apiVersion",
                                             "apiStrict",
                                             "apiDeprecationErrors",
                                             "bypassDocumentValidation",
                                             "$audit",
                                             "$client",
                                             "let",
                                             "collation",
                                             NULL};

static bool is_generic(const char *k)
{
    for (const char *const *p = generic_fields; *p; p++)
        if (strcmp(*p, k) == 0) return true;
    return false;
}

/* A field the command itself does not know: accepted when every command may carry it. */
static int check_generic(mk_cmd_t *c, bson_iter_t *it)
{
    const char *k = bson_iter_key(it);
    if (!is_generic(k))
        return mk_error_set(c->err, 40415, "Location40415",
                            "BSON field '%s.%s' is an unknown field.", c->name, k);
    if (strcmp(k, "collation") == 0) {
        bson_iter_t loc;
        if (BSON_ITER_HOLDS_DOCUMENT(it) && bson_iter_recurse(it, &loc) &&
            bson_iter_find(&loc, "locale") && BSON_ITER_HOLDS_UTF8(&loc) &&
            strcmp(bson_iter_utf8(&loc, NULL), "simple") == 0)
            return MK_OK;
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE,
                             "collation is not supported yet (only { locale: 'simple' })");
    }
    if (strcmp(k, "let") == 0)
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE, "'let' variables are not supported yet");
    return MK_OK;
}

int mk_cmd_parse(mk_cmd_t *c, const mk_optspec_t *spec)
{
    bson_iter_t it = c->first;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const mk_optspec_t *o = spec;
        while (o->name && strcmp(o->name, k) != 0) o++;
        int rc = MK_OK;
        switch (o->name ? o->kind : MK_OPT_NONE) {
        case MK_OPT_DOC:
            rc = iter_sub(&it, k, BSON_TYPE_DOCUMENT, o->out, o->present, c->err);
            break;
        case MK_OPT_ARRAY:
            rc = iter_sub(&it, k, BSON_TYPE_ARRAY, o->out, o->present, c->err);
            break;
        case MK_OPT_INT64:
            rc = iter_int64(&it, k, o->out, c->err);
            if (o->present) *o->present = true;
            break;
        case MK_OPT_BOOL:
            rc = iter_bool(&it, k, o->out, c->err);
            if (o->present) *o->present = true;
            break;
        case MK_OPT_ITER:
            *(bson_iter_t *)o->out = it;
            if (o->present) *o->present = true;
            break;
        case MK_OPT_IGNORE:
            break;
        case MK_OPT_UNSUPPORTED:
            if (BSON_ITER_HOLDS_DOCUMENT(&it) || bson_iter_as_bool(&it))
                rc = mk_error_setc(c->err, MK_CODE_BAD_VALUE, "%s option '%s' is not supported yet",
                                   c->name, k);
            break;
        case MK_OPT_NONE:
            rc = check_generic(c, &it);
            break;
        }
        if (rc != MK_OK) return rc;
    }
    return MK_OK;
}

int mk_cmd_check_fields(mk_cmd_t *c, const char *const *known)
{
    bson_iter_t it = c->first;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool ok = false;
        for (const char *const *p = known; *p && !ok; p++) ok = strcmp(*p, k) == 0;
        if (!ok && check_generic(c, &it) != MK_OK) return MK_ERR;
    }
    return MK_OK;
}

void mk_append_write_error(bson_t *arr, uint32_t n, int32_t index, const mk_error_t *e)
{
    char key[16];
    const char *k;
    bson_uint32_to_string(n, &k, key, sizeof key);
    bson_t we;
    bson_append_document_begin(arr, k, -1, &we);
    BSON_APPEND_INT32(&we, "index", index);
    BSON_APPEND_INT32(&we, "code", e->code);
    BSON_APPEND_UTF8(&we, "errmsg", e->message);
    bson_append_document_end(arr, &we);
}
