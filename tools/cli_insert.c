/* Batched, ordered inserts shared by `meerkat insert` and `meerkat import`. */
#include "cli.h"

#include <string.h>

void cli_inserter_init(cli_inserter_t *ins, mk_engine_t *eng, const char *cmd, const char *db,
                       const char *coll, const char *label)
{
    memset(ins, 0, sizeof *ins);
    ins->eng = eng;
    ins->cmd = cmd;
    ins->db = db;
    ins->coll = coll;
    ins->label = label;
}

static bool begin_batch(cli_inserter_t *ins)
{
    bson_init(&ins->batch);
    ins->open = true;
    ins->count = 0;
    return BSON_APPEND_UTF8(&ins->batch, "insert", ins->coll) &&
           BSON_APPEND_BOOL(&ins->batch, "ordered", true) &&
           BSON_APPEND_ARRAY_BEGIN(&ins->batch, "documents", &ins->docs);
}

/* The error of a failed batch, naming the document by its label (line or position). */
static int report_batch_error(cli_inserter_t *ins, const bson_t *reply)
{
    bson_iter_t it, arr, f;
    if (bson_iter_init_find(&it, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr) && bson_iter_next(&arr) && BSON_ITER_HOLDS_DOCUMENT(&arr) &&
        bson_iter_recurse(&arr, &f)) {
        int64_t index = -1;
        const char *msg = "write error";
        while (bson_iter_next(&f)) {
            if (strcmp(bson_iter_key(&f), "index") == 0 && BSON_ITER_HOLDS_INT(&f))
                index = bson_iter_as_int64(&f);
            else if (strcmp(bson_iter_key(&f), "errmsg") == 0 && BSON_ITER_HOLDS_UTF8(&f))
                msg = bson_iter_utf8(&f, NULL);
        }
        if (index >= 0 && index < (int64_t)ins->count)
            return cli_fail("%s: %s %ld: %s", ins->cmd, ins->label, ins->labels[index], msg);
        return cli_fail("%s: %s", ins->cmd, msg);
    }
    return cli_report_reply(ins->cmd, reply);
}

int cli_inserter_flush(cli_inserter_t *ins)
{
    if (!ins->open || ins->count == 0) return CLI_OK;
    if (!bson_append_array_end(&ins->batch, &ins->docs))
        return cli_fail("%s: batch of documents too large", ins->cmd);
    bson_t reply = BSON_INITIALIZER;
    bool ok = cli_command(ins->eng, ins->db, &ins->batch, &reply);
    ins->inserted += cli_reply_i64(&reply, "n");
    int rc = ok ? CLI_OK : report_batch_error(ins, &reply);
    bson_destroy(&reply);
    bson_destroy(&ins->batch);
    ins->open = false;
    ins->count = 0;
    return rc;
}

int cli_inserter_add(cli_inserter_t *ins, const bson_t *doc, long where)
{
    if (ins->open && ins->docs.len + doc->len > CLI_BATCH_BYTES) {
        int rc = cli_inserter_flush(ins);
        if (rc != CLI_OK) return rc;
    }
    if (!ins->open && !begin_batch(ins)) {
        bson_destroy(&ins->batch);
        ins->open = false;
        return cli_fail("%s: out of memory", ins->cmd);
    }
    char keybuf[16];
    const char *key;
    size_t klen = bson_uint32_to_string(ins->count, &key, keybuf, sizeof keybuf);
    if (!bson_append_document(&ins->docs, key, (int)klen, doc))
        return cli_fail("%s: %s %ld: document too large", ins->cmd, ins->label, where);
    ins->labels[ins->count++] = where;
    if (ins->count == CLI_BATCH_DOCS) return cli_inserter_flush(ins);
    return CLI_OK;
}

void cli_inserter_destroy(cli_inserter_t *ins)
{
    if (ins->open) {
        /* The child array must be closed before its parent can be destroyed. */
        bson_append_array_end(&ins->batch, &ins->docs);
        bson_destroy(&ins->batch);
        ins->open = false;
    }
}
