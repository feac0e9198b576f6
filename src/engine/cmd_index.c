/* Index commands: createIndexes, listIndexes, dropIndexes, and validate. */
#include <stdio.h>
#include <string.h>

#include "engine/command.h"
#include "engine/index.h"

static void append_ns(mk_cmd_t *c, bson_t *doc, const char *field, const char *coll)
{
    char ns[300];
    snprintf(ns, sizeof ns, "%s.%s", c->db, coll);
    BSON_APPEND_UTF8(doc, field, ns);
}

typedef struct create_args {
    const char *coll;
    bson_t specs;
} create_args_t;

static int create_body(mk_cmd_t *c, MDB_txn *txn, void *ud)
{
    create_args_t *a = ud;
    mk_coll_t *coll;
    bool created;
    if (mk_coll_ensure(c->eng, txn, c->db, a->coll, NULL, &coll, &created, c->err) != MK_OK)
        return MK_ERR;
    int rc = mk_indexes_create(c->eng, txn, coll, &a->specs, c->reply, c->err);
    if (rc == MK_OK) BSON_APPEND_BOOL(c->reply, "createdCollectionAutomatically", created);
    return rc;
}

int mk_cmd_create_indexes(mk_cmd_t *c)
{
    create_args_t a;
    if (mk_cmd_coll_name(c, &a.coll) != MK_OK) return MK_ERR;
    bool present = false;
    const mk_optspec_t spec[] = {
        {"indexes", MK_OPT_ARRAY, &a.specs, &present},
        {"commitQuorum", MK_OPT_IGNORE, NULL, NULL},
        {NULL, MK_OPT_NONE, NULL, NULL},
    };
    if (mk_cmd_parse(c, spec) != MK_OK) return MK_ERR;
    if (!present)
        return mk_error_set(c->err, 40414, "Location40414",
                            "BSON field 'createIndexes.indexes' is missing but a required field");
    if (bson_empty(&a.specs))
        return mk_error_setc(c->err, MK_CODE_BAD_VALUE,
                             "Must specify at least one index to create");
    return mk_cmd_write(c, create_body, &a);
}

int mk_cmd_list_indexes(mk_cmd_t *c)
{
    const char *name;
    if (mk_cmd_coll_name(c, &name) != MK_OK) return MK_ERR;
    const mk_optspec_t spec[] = {{"cursor", MK_OPT_IGNORE, NULL, NULL},
                                 {NULL, MK_OPT_NONE, NULL, NULL}};
    if (mk_cmd_parse(c, spec) != MK_OK) return MK_ERR;
    MDB_txn *txn;
    if (mk_cmd_read(c, &txn) != MK_OK) return MK_ERR;
    mk_coll_t *coll;
    int rc = mk_coll_find(c->eng, txn, c->db, name, &coll, c->err);
    if (rc == MK_OK && !coll)
        rc = mk_error_setc(c->err, MK_CODE_NAMESPACE_NOT_FOUND, "ns does not exist: %s.%s", c->db,
                           name);
    if (rc == MK_OK) {
        bson_t cur, arr = BSON_INITIALIZER;
        mk_indexes_list(coll, txn, NULL, &arr);
        bson_append_document_begin(c->reply, "cursor", -1, &cur);
        BSON_APPEND_INT64(&cur, "id", 0);
        append_ns(c, &cur, "ns", name);
        bson_append_array(&cur, "firstBatch", -1, &arr);
        bson_append_document_end(c->reply, &cur);
        bson_destroy(&arr);
    }
    mk_cmd_read_done(c, txn);
    return rc;
}

typedef struct drop_args {
    const char *coll;
    bson_iter_t which;
} drop_args_t;

static int drop_body(mk_cmd_t *c, MDB_txn *txn, void *ud)
{
    drop_args_t *a = ud;
    mk_coll_t *coll;
    if (mk_coll_find(c->eng, txn, c->db, a->coll, &coll, c->err) != MK_OK) return MK_ERR;
    if (!coll)
        return mk_error_setc(c->err, MK_CODE_NAMESPACE_NOT_FOUND, "ns not found %s.%s", c->db,
                             a->coll);
    return mk_indexes_drop(c->eng, txn, coll, &a->which, c->reply, c->err);
}

int mk_cmd_drop_indexes(mk_cmd_t *c)
{
    drop_args_t a;
    if (mk_cmd_coll_name(c, &a.coll) != MK_OK) return MK_ERR;
    bool present = false;
    const mk_optspec_t spec[] = {{"index", MK_OPT_ITER, &a.which, &present},
                                 {NULL, MK_OPT_NONE, NULL, NULL}};
    if (mk_cmd_parse(c, spec) != MK_OK) return MK_ERR;
    if (!present)
        return mk_error_set(c->err, 40414, "Location40414",
                            "BSON field 'dropIndexes.index' is missing but a required field");
    return mk_cmd_write(c, drop_body, &a);
}

int mk_cmd_validate(mk_cmd_t *c)
{
    const char *name;
    if (mk_cmd_coll_name(c, &name) != MK_OK) return MK_ERR;
    const mk_optspec_t spec[] = {{"full", MK_OPT_IGNORE, NULL, NULL},
                                 {"repair", MK_OPT_UNSUPPORTED, NULL, NULL},
                                 {"background", MK_OPT_IGNORE, NULL, NULL},
                                 {"checkBSONConformance", MK_OPT_IGNORE, NULL, NULL},
                                 {NULL, MK_OPT_NONE, NULL, NULL}};
    if (mk_cmd_parse(c, spec) != MK_OK) return MK_ERR;
    MDB_txn *txn;
    if (mk_cmd_read(c, &txn) != MK_OK) return MK_ERR;
    mk_coll_t *coll;
    int rc = mk_coll_find(c->eng, txn, c->db, name, &coll, c->err);
    if (rc == MK_OK && !coll)
        rc = mk_error_setc(c->err, MK_CODE_NAMESPACE_NOT_FOUND,
                           "Collection '%s.%s' does not exist to validate.", c->db, name);
    if (rc == MK_OK) {
        bool valid;
        append_ns(c, c->reply, "ns", name);
        rc = mk_indexes_validate(txn, coll, c->reply, &valid, c->err);
    }
    mk_cmd_read_done(c, txn);
    return rc;
}
