/* The command layer: MongoDB database commands, BSON in and BSON out. */
#ifndef MK_ENGINE_COMMAND_H
#define MK_ENGINE_COMMAND_H

#include "engine/internal.h"

/* MongoDB's limit for a blocking in-memory sort without allowDiskUse. */
#define MK_SORT_MEMORY_LIMIT (100 * 1024 * 1024)

typedef struct mk_cmd {
    mk_engine_t *eng;
    const char *db;     /* target database */
    const bson_t *body; /* the command document */
    const char *name;   /* its first key */
    bson_iter_t first;  /* positioned on the first element */
    bson_t *reply;      /* the command appends its fields; `ok` is added by the dispatcher */
    MDB_txn *txn;       /* the session's open transaction, when the command runs inside one */
    bool map_full;      /* the transaction ran out of map space: grow once it is aborted */
    mk_error_t *err;
} mk_cmd_t;

typedef int (*mk_cmd_fn)(mk_cmd_t *c);

/* Runs body(c, txn, ud) in a write transaction and commits; when the map is full the
 * transaction is aborted, the map grown, the reply emptied and body run again. */
typedef int (*mk_write_body)(mk_cmd_t *c, MDB_txn *txn, void *ud);
int mk_cmd_write(mk_cmd_t *c, mk_write_body body, void *ud);

/* A transaction to read in: the session's transaction when there is one (so that it sees its
 * own writes), otherwise a pooled read-only snapshot. */
int mk_cmd_read(mk_cmd_t *c, MDB_txn **txn);
void mk_cmd_read_done(mk_cmd_t *c, MDB_txn *txn);

/* The collection name a command names in its first field (a string), with validation. */
int mk_cmd_coll_name(mk_cmd_t *c, const char **coll);

/* Option readers. Each returns MK_OK when absent (leaving *out unchanged) or valid, and a
 * TypeMismatch error naming the field otherwise. */
int mk_opt_int64(const bson_t *cmd, const char *field, int64_t *out, mk_error_t *err);
int mk_opt_bool(const bson_t *cmd, const char *field, bool *out, mk_error_t *err);
/* A document option: *out is a static view into cmd (no copy) or left untouched. */
int mk_opt_doc(const bson_t *cmd, const char *field, bson_t *out, bool *present, mk_error_t *err);
int mk_opt_array(const bson_t *cmd, const char *field, bson_t *out, bool *present, mk_error_t *err);

/* Rejects fields a command does not know, as MongoDB does (code 40415 "BSON field
 * 'find.foo' is an unknown field."). `known` is NULL-terminated; generic fields every command
 * may carry ($db, lsid, comment, maxTimeMS, writeConcern, readConcern, ...) are accepted. */
int mk_cmd_check_fields(mk_cmd_t *c, const char *const *known);

/* One pass over a command's fields, filling the options named in `spec` (terminated by a
 * { NULL } entry). Unknown fields fail with 40415; the generic fields every command may carry
 * are accepted; `collation` other than { locale: 'simple' } and `let` fail as not supported. */
typedef enum mk_opt_kind {
    MK_OPT_NONE,
    MK_OPT_DOC,         /* out: bson_t * (static view) */
    MK_OPT_ARRAY,       /* out: bson_t * (static view) */
    MK_OPT_INT64,       /* out: int64_t * */
    MK_OPT_BOOL,        /* out: bool * */
    MK_OPT_ITER,        /* out: bson_iter_t * positioned on the field, for the caller to read */
    MK_OPT_IGNORE,      /* accepted, no effect on results (e.g. noCursorTimeout) */
    MK_OPT_UNSUPPORTED, /* refused with an error naming it when true or a document */
} mk_opt_kind_t;

typedef struct mk_optspec {
    const char *name;
    mk_opt_kind_t kind;
    void *out;
    bool *present; /* may be NULL; set when the field is present and not null */
} mk_optspec_t;

int mk_cmd_parse(mk_cmd_t *c, const mk_optspec_t *spec);

/* Appends a write error { index, code, errmsg [, keyPattern, keyValue] } to `arr`. */
void mk_append_write_error(bson_t *arr, uint32_t n, int32_t index, const mk_error_t *e);

/* Command implementations. */
int mk_cmd_find(mk_cmd_t *c);
int mk_cmd_get_more(mk_cmd_t *c);
int mk_cmd_kill_cursors(mk_cmd_t *c);
int mk_cmd_count(mk_cmd_t *c);
int mk_cmd_distinct(mk_cmd_t *c);
int mk_cmd_insert(mk_cmd_t *c);
int mk_cmd_update(mk_cmd_t *c);
int mk_cmd_delete(mk_cmd_t *c);
int mk_cmd_find_and_modify(mk_cmd_t *c);
int mk_cmd_create(mk_cmd_t *c);
int mk_cmd_drop(mk_cmd_t *c);
int mk_cmd_drop_database(mk_cmd_t *c);
int mk_cmd_list_collections(mk_cmd_t *c);
int mk_cmd_list_databases(mk_cmd_t *c);
int mk_cmd_ping(mk_cmd_t *c);
int mk_cmd_hello(mk_cmd_t *c);
int mk_cmd_build_info(mk_cmd_t *c);
int mk_cmd_create_indexes(mk_cmd_t *c);
int mk_cmd_list_indexes(mk_cmd_t *c);
int mk_cmd_drop_indexes(mk_cmd_t *c);
int mk_cmd_validate(mk_cmd_t *c);
int mk_cmd_explain(mk_cmd_t *c);
int mk_cmd_end_sessions(mk_cmd_t *c);
int mk_cmd_start_session(mk_cmd_t *c);
int mk_cmd_refresh_sessions(mk_cmd_t *c);
int mk_cmd_txn_without_session(mk_cmd_t *c);

#endif
