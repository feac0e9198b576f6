/* The friendly subcommands: insert, find, export, update, delete, count. Each builds the
 * database command a driver would send and prints what mongosh's helper of the same name
 * prints (insertMany, updateMany, deleteMany results) or the documents themselves. */
#include "cli.h"

#include <string.h>

#define COMMON_OPTIONS CLI_OPT("--db", true), CLI_OPT("--no-sync", false)

static const char *db_name(const cli_option_t *opts)
{
    const char *db = cli_opt(opts, "--db");
    return db ? db : "test";
}

/* Parses options; prints help for -h. Returns -1 after help (exit 0), else a status. */
static int parse(const char *cmd, int argc, char **argv, cli_option_t *opts, cli_args_t *a,
                 int min_pos, int max_pos, const char *expected)
{
    int rc = cli_parse_args(cmd, argc, argv, opts, a);
    if (rc != CLI_OK) return rc;
    if (a->help) {
        cli_print_command_help(stdout, cli_find_command(cmd));
        return -1;
    }
    if (a->npos < min_pos || a->npos > max_pos)
        return cli_usage_error(cmd, "expected %s", expected);
    return CLI_OK;
}

static int help_or(int rc)
{
    return rc < 0 ? CLI_OK : rc;
}

/* ---- insert ---- */

/* A copy of doc with a fresh ObjectId `_id` first when it has none (as drivers do, so that
 * the ids can be reported); *id receives the document's _id. */
static bson_t *with_id(const bson_t *doc, bson_value_t *id)
{
    bson_iter_t it;
    bson_t *out = bson_new();
    if (!out) return NULL;
    if (bson_iter_init_find(&it, doc, "_id")) {
        bson_value_copy(bson_iter_value(&it), id);
        bson_concat(out, doc);
        return out;
    }
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    id->value_type = BSON_TYPE_OID;
    bson_oid_copy(&oid, &id->value.v_oid);
    if (!BSON_APPEND_OID(out, "_id", &oid) || !bson_concat(out, doc)) {
        bson_destroy(out);
        return NULL;
    }
    return out;
}

typedef struct insert_state {
    cli_inserter_t ins;
    bson_t ids; /* "0": id, "1": id, ... */
    uint32_t n;
} insert_state_t;

static int insert_one(insert_state_t *st, const bson_t *doc, long where)
{
    bson_value_t id = {0};
    bson_t *full = with_id(doc, &id);
    if (!full) return cli_fail("insert: out of memory");
    char keybuf[16];
    const char *key;
    size_t klen = bson_uint32_to_string(st->n++, &key, keybuf, sizeof keybuf);
    bson_append_value(&st->ids, key, (int)klen, &id);
    bson_value_destroy(&id);
    int rc = cli_inserter_add(&st->ins, full, where);
    bson_destroy(full);
    return rc;
}

/* Adds the documents of one argument (a document, or an array of documents). */
static int insert_arg(insert_state_t *st, const char *text, long *where)
{
    bool is_array = false;
    bson_t *doc = cli_parse_json("insert", "DOC", text, &is_array);
    if (!doc) return CLI_USAGE;
    int rc = CLI_OK;
    if (!is_array) {
        rc = insert_one(st, doc, ++*where);
    } else {
        bson_iter_t it;
        bson_iter_init(&it, doc);
        while (rc == CLI_OK && bson_iter_next(&it)) {
            ++*where;
            uint32_t len;
            const uint8_t *data;
            bson_t elem;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                rc = cli_usage_error("insert", "document %ld: array elements must be documents",
                                     *where);
                break;
            }
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&elem, data, len)) {
                rc = cli_fail("insert: document %ld: malformed", *where);
                break;
            }
            rc = insert_one(st, &elem, *where);
        }
    }
    bson_destroy(doc);
    return rc;
}

int cli_cmd_insert(int argc, char **argv)
{
    cli_option_t opts[] = {COMMON_OPTIONS, CLI_OPT_END};
    cli_args_t a;
    int rc = parse("insert", argc, argv, opts, &a, 3, CLI_MAX_POSITIONAL,
                   "DIR COLL and at least one DOC");
    if (rc != CLI_OK) return help_or(rc);

    /* Parse everything before opening: a typo in the last document inserts nothing. */
    for (int i = 2; i < a.npos; i++) {
        bool is_array;
        bson_t *doc = cli_parse_json("insert", "DOC", a.pos[i], &is_array);
        if (!doc) return CLI_USAGE;
        bson_destroy(doc);
    }
    mk_engine_t *eng = cli_open(a.pos[0], cli_opt(opts, "--no-sync") != NULL, false);
    if (!eng) return CLI_FAIL;

    insert_state_t st = {.n = 0};
    bson_init(&st.ids);
    cli_inserter_init(&st.ins, eng, "insert", db_name(opts), a.pos[1], "document");
    long where = 0;
    for (int i = 2; rc == CLI_OK && i < a.npos; i++) rc = insert_arg(&st, a.pos[i], &where);
    if (rc == CLI_OK) rc = cli_inserter_flush(&st.ins);
    cli_inserter_destroy(&st.ins);

    if (rc == CLI_OK) {
        bson_t out = BSON_INITIALIZER;
        bson_iter_t it;
        BSON_APPEND_BOOL(&out, "acknowledged", true);
        if (st.n == 1 && bson_iter_init(&it, &st.ids) && bson_iter_next(&it))
            BSON_APPEND_VALUE(&out, "insertedId", bson_iter_value(&it));
        else
            BSON_APPEND_DOCUMENT(&out, "insertedIds", &st.ids);
        if (!cli_print_doc(stdout, &out)) rc = CLI_FAIL;
        bson_destroy(&out);
    } else if (st.ins.inserted > 0) {
        fprintf(stderr, "meerkat: insert: %" PRId64 " of %u documents were inserted\n",
                st.ins.inserted, st.n);
    }
    bson_destroy(&st.ids);
    mk_engine_close(eng);
    return cli_finish_output(rc);
}

/* ---- find / export ---- */

static bool print_each(const bson_t *doc, void *ud)
{
    bool canonical = *(bool *)ud;
    if (!canonical) return cli_print_doc(stdout, doc);
    char *json = bson_as_canonical_extended_json(doc, NULL);
    if (!json) return false;
    bool ok = fputs(json, stdout) >= 0 && fputc('\n', stdout) != EOF;
    bson_free(json);
    return ok;
}

/* Appends an option given as a document (sort, projection) to the find command. */
static int append_fields(bson_t *cmd, const char *name, const char *cmdname, const char *what,
                         const char *text, int minus)
{
    if (!text) return CLI_OK;
    bson_t *doc = cli_parse_fields(cmdname, what, text, minus);
    if (!doc) return CLI_USAGE;
    bool ok = bson_append_document(cmd, name, -1, doc);
    bson_destroy(doc);
    return ok ? CLI_OK : cli_fail("%s: out of memory", cmdname);
}

static int append_count(bson_t *cmd, const char *name, const char *cmdname, const char *opt,
                        const char *text)
{
    int64_t n;
    if (!text) return CLI_OK;
    if (cli_parse_count(cmdname, opt, text, &n) != CLI_OK) return CLI_USAGE;
    return BSON_APPEND_INT64(cmd, name, n) ? CLI_OK : cli_fail("%s: out of memory", cmdname);
}

/* find and export are the same query; export's name pairs with import. */
static int find_like(const char *cmdname, int argc, char **argv)
{
    cli_option_t opts[] = {COMMON_OPTIONS,
                           CLI_OPT("--sort", true),
                           CLI_OPT("--limit", true),
                           CLI_OPT("--skip", true),
                           CLI_OPT("--projection", true),
                           CLI_OPT("--batch-size", true),
                           CLI_OPT("--canonical", false),
                           CLI_OPT_END};
    cli_args_t a;
    int rc = parse(cmdname, argc, argv, opts, &a, 2, 3, "DIR COLL [FILTER]");
    if (rc != CLI_OK) return help_or(rc);
    const char *coll = a.pos[1];

    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "find", coll);
    if (a.npos == 3) {
        bson_t *filter = cli_parse_json(cmdname, "FILTER", a.pos[2], NULL);
        if (!filter) rc = CLI_USAGE;
        if (filter && !BSON_APPEND_DOCUMENT(&cmd, "filter", filter)) rc = CLI_FAIL;
        bson_destroy(filter);
    }
    if (rc == CLI_OK)
        rc = append_fields(&cmd, "sort", cmdname, "--sort", cli_opt(opts, "--sort"), -1);
    if (rc == CLI_OK)
        rc = append_fields(&cmd, "projection", cmdname, "--projection",
                           cli_opt(opts, "--projection"), 0);
    if (rc == CLI_OK) rc = append_count(&cmd, "skip", cmdname, "--skip", cli_opt(opts, "--skip"));
    if (rc == CLI_OK)
        rc = append_count(&cmd, "limit", cmdname, "--limit", cli_opt(opts, "--limit"));
    if (rc == CLI_OK)
        rc =
            append_count(&cmd, "batchSize", cmdname, "--batch-size", cli_opt(opts, "--batch-size"));
    if (rc != CLI_OK) {
        bson_destroy(&cmd);
        return rc;
    }

    mk_engine_t *eng = cli_open(a.pos[0], cli_opt(opts, "--no-sync") != NULL, true);
    if (!eng) {
        bson_destroy(&cmd);
        return CLI_FAIL;
    }
    const char *db = db_name(opts);
    bool canonical = cli_opt(opts, "--canonical") != NULL;
    bson_t reply = BSON_INITIALIZER;
    if (!cli_command(eng, db, &cmd, &reply))
        rc = cli_report_reply(cmdname, &reply);
    else
        rc = cli_drain_cursor(cmdname, eng, db, coll, &reply, print_each, &canonical);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mk_engine_close(eng);
    return cli_finish_output(rc);
}

int cli_cmd_find(int argc, char **argv)
{
    return find_like("find", argc, argv);
}

int cli_cmd_export(int argc, char **argv)
{
    return find_like("export", argc, argv);
}

/* ---- update ---- */

/* mongosh's UpdateResult from an update command reply. */
static void update_result(const bson_t *reply, bson_t *out)
{
    int64_t n = cli_reply_i64(reply, "n"), modified = cli_reply_i64(reply, "nModified");
    int64_t upserted = 0;
    bson_iter_t it, arr, f;
    BSON_APPEND_BOOL(out, "acknowledged", true);
    bool have_id = false;
    if (bson_iter_init_find(&it, reply, "upserted") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr)) {
        while (bson_iter_next(&arr)) {
            upserted++;
            if (!have_id && BSON_ITER_HOLDS_DOCUMENT(&arr) && bson_iter_recurse(&arr, &f) &&
                bson_iter_find(&f, "_id")) {
                BSON_APPEND_VALUE(out, "insertedId", bson_iter_value(&f));
                have_id = true;
            }
        }
    }
    if (!have_id) BSON_APPEND_NULL(out, "insertedId");
    BSON_APPEND_INT64(out, "matchedCount", n - upserted);
    BSON_APPEND_INT64(out, "modifiedCount", modified);
    BSON_APPEND_INT64(out, "upsertedCount", upserted);
}

int cli_cmd_update(int argc, char **argv)
{
    cli_option_t opts[] = {COMMON_OPTIONS, CLI_OPT("--multi", false), CLI_OPT("--upsert", false),
                           CLI_OPT_END};
    cli_args_t a;
    int rc = parse("update", argc, argv, opts, &a, 4, 4, "DIR COLL FILTER UPDATE");
    if (rc != CLI_OK) return help_or(rc);
    bool is_pipeline = false;
    bson_t *filter = cli_parse_json("update", "FILTER", a.pos[2], NULL);
    bson_t *update = filter ? cli_parse_json("update", "UPDATE", a.pos[3], &is_pipeline) : NULL;
    if (!update) {
        bson_destroy(filter);
        return CLI_USAGE;
    }
    bool upsert = cli_opt(opts, "--upsert") != NULL;

    bson_t cmd = BSON_INITIALIZER, updates, one;
    BSON_APPEND_UTF8(&cmd, "update", a.pos[1]);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "updates", &updates);
    BSON_APPEND_DOCUMENT_BEGIN(&updates, "0", &one);
    BSON_APPEND_DOCUMENT(&one, "q", filter);
    if (is_pipeline)
        BSON_APPEND_ARRAY(&one, "u", update);
    else
        BSON_APPEND_DOCUMENT(&one, "u", update);
    BSON_APPEND_BOOL(&one, "multi", cli_opt(opts, "--multi") != NULL);
    BSON_APPEND_BOOL(&one, "upsert", upsert);
    bson_append_document_end(&updates, &one);
    bson_append_array_end(&cmd, &updates);
    bson_destroy(filter);
    bson_destroy(update);

    mk_engine_t *eng = cli_open(a.pos[0], cli_opt(opts, "--no-sync") != NULL, !upsert);
    if (!eng) {
        bson_destroy(&cmd);
        return CLI_FAIL;
    }
    bson_t reply = BSON_INITIALIZER;
    if (cli_command(eng, db_name(opts), &cmd, &reply)) {
        bson_t out = BSON_INITIALIZER;
        update_result(&reply, &out);
        if (!cli_print_doc(stdout, &out)) rc = CLI_FAIL;
        bson_destroy(&out);
    } else {
        rc = cli_report_reply("update", &reply);
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mk_engine_close(eng);
    return cli_finish_output(rc);
}

/* ---- delete ---- */

int cli_cmd_delete(int argc, char **argv)
{
    cli_option_t opts[] = {COMMON_OPTIONS, CLI_OPT("--one", false), CLI_OPT_END};
    cli_args_t a;
    int rc = parse("delete", argc, argv, opts, &a, 3, 3, "DIR COLL FILTER");
    if (rc != CLI_OK) return help_or(rc);
    bson_t *filter = cli_parse_json("delete", "FILTER", a.pos[2], NULL);
    if (!filter) return CLI_USAGE;

    bson_t cmd = BSON_INITIALIZER, deletes, one;
    BSON_APPEND_UTF8(&cmd, "delete", a.pos[1]);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "deletes", &deletes);
    BSON_APPEND_DOCUMENT_BEGIN(&deletes, "0", &one);
    BSON_APPEND_DOCUMENT(&one, "q", filter);
    BSON_APPEND_INT32(&one, "limit", cli_opt(opts, "--one") ? 1 : 0);
    bson_append_document_end(&deletes, &one);
    bson_append_array_end(&cmd, &deletes);
    bson_destroy(filter);

    mk_engine_t *eng = cli_open(a.pos[0], cli_opt(opts, "--no-sync") != NULL, true);
    if (!eng) {
        bson_destroy(&cmd);
        return CLI_FAIL;
    }
    bson_t reply = BSON_INITIALIZER;
    if (cli_command(eng, db_name(opts), &cmd, &reply)) {
        bson_t out = BSON_INITIALIZER;
        BSON_APPEND_BOOL(&out, "acknowledged", true);
        BSON_APPEND_INT64(&out, "deletedCount", cli_reply_i64(&reply, "n"));
        if (!cli_print_doc(stdout, &out)) rc = CLI_FAIL;
        bson_destroy(&out);
    } else {
        rc = cli_report_reply("delete", &reply);
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mk_engine_close(eng);
    return cli_finish_output(rc);
}

/* ---- count ---- */

int cli_cmd_count(int argc, char **argv)
{
    cli_option_t opts[] = {COMMON_OPTIONS, CLI_OPT_END};
    cli_args_t a;
    int rc = parse("count", argc, argv, opts, &a, 2, 3, "DIR COLL [FILTER]");
    if (rc != CLI_OK) return help_or(rc);
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "count", a.pos[1]);
    if (a.npos == 3) {
        bson_t *filter = cli_parse_json("count", "FILTER", a.pos[2], NULL);
        if (!filter) {
            bson_destroy(&cmd);
            return CLI_USAGE;
        }
        BSON_APPEND_DOCUMENT(&cmd, "query", filter);
        bson_destroy(filter);
    }
    mk_engine_t *eng = cli_open(a.pos[0], cli_opt(opts, "--no-sync") != NULL, true);
    if (!eng) {
        bson_destroy(&cmd);
        return CLI_FAIL;
    }
    bson_t reply = BSON_INITIALIZER;
    if (cli_command(eng, db_name(opts), &cmd, &reply))
        printf("%" PRId64 "\n", cli_reply_i64(&reply, "n"));
    else
        rc = cli_report_reply("count", &reply);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mk_engine_close(eng);
    return cli_finish_output(rc);
}
