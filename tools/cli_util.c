/* Helpers shared by the meerkat subcommands: arguments, JSON in and out, engine calls,
 * cursor draining. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("meerkat: ", stderr);
    if (cmd) fprintf(stderr, "%s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nTry 'meerkat help %s'.\n", cmd);
    else
        fputs("\nTry 'meerkat help'.\n", stderr);
    return CLI_USAGE;
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("meerkat: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

/* ---- arguments ---- */

static cli_option_t *find_option(cli_option_t *opts, const char *name, size_t len)
{
    for (cli_option_t *o = opts; o->name; o++)
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0) return o;
    return NULL;
}

int cli_parse_args(const char *cmd, int argc, char **argv, cli_option_t *opts, cli_args_t *out)
{
    memset(out, 0, sizeof *out);
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            out->help = true;
            continue;
        }
        if (!options_done && a[0] == '-' && a[1] != '\0') {
            const char *eq = strchr(a, '=');
            size_t len = eq ? (size_t)(eq - a) : strlen(a);
            cli_option_t *o = find_option(opts, a, len);
            if (!o) return cli_usage_error(cmd, "unknown option '%.*s'", (int)len, a);
            if (!o->has_value) {
                if (eq) return cli_usage_error(cmd, "option '%s' takes no value", o->name);
                o->value = "";
            } else if (eq) {
                o->value = eq + 1;
            } else if (i + 1 < argc) {
                o->value = argv[++i];
            } else {
                return cli_usage_error(cmd, "option '%s' needs a value", o->name);
            }
            continue;
        }
        if (out->npos == CLI_MAX_POSITIONAL)
            return cli_usage_error(cmd, "too many arguments (at most %d)", CLI_MAX_POSITIONAL);
        out->pos[out->npos++] = a;
    }
    return CLI_OK;
}

const char *cli_opt(const cli_option_t *opts, const char *name)
{
    for (const cli_option_t *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o->value;
    return NULL;
}

int cli_parse_count(const char *cmd, const char *opt, const char *text, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!*text || *end || errno || v < 0 || text[0] == '+' || text[0] == ' ')
        return cli_usage_error(cmd, "%s needs a non-negative integer, not '%s'", opt, text);
    *out = (int64_t)v;
    return CLI_OK;
}

/* ---- JSON ---- */

bson_t *cli_parse_json(const char *cmd, const char *what, const char *text, bool *is_array)
{
    bson_t *doc = bson_new();
    if (!doc) {
        cli_fail("out of memory");
        return NULL;
    }
    mk_error_t err = {0};
    if (mk_json_parse_into(doc, text, strlen(text), NULL, is_array, &err) != MK_OK) {
        bson_destroy(doc);
        if (err.code == MK_CODE_FAILED_TO_PARSE)
            cli_usage_error(cmd, "invalid JSON in %s: %s", what, err.message);
        else
            cli_usage_error(cmd, "%s: %s", what, err.message);
        return NULL;
    }
    return doc;
}

void cli_shift_position(const char *msg, int line0, int col0, char *out, size_t outlen)
{
    int line = 0, col = 0, used = 0;
    if (sscanf(msg, "line %d, column %d: %n", &line, &col, &used) == 2 && used > 0 && line > 0) {
        int abs_col = line == 1 ? col0 + col - 1 : col;
        snprintf(out, outlen, "line %d, column %d: %s", line0 + line - 1, abs_col, msg + used);
    } else {
        snprintf(out, outlen, "line %d: %s", line0, msg);
    }
}

bool cli_print_doc(FILE *out, const bson_t *doc)
{
    char *json = mk_json_from_bson(doc);
    if (!json) {
        cli_fail("out of memory while printing a document");
        return false;
    }
    bool ok = fputs(json, out) >= 0 && fputc('\n', out) != EOF;
    bson_free(json);
    return ok;
}

/* Appends one "name" or "-name" token of a field list. */
static bool append_field(bson_t *doc, const char *tok, size_t len, int minus_value)
{
    int v = 1;
    if (tok[0] == '-' || tok[0] == '+') {
        v = tok[0] == '-' ? minus_value : 1;
        tok++;
        len--;
    }
    if (len == 0) return false;
    return bson_append_int32(doc, tok, (int)len, v);
}

bson_t *cli_parse_fields(const char *cmd, const char *what, const char *text, int minus_value)
{
    const char *p = text;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '{') return cli_parse_json(cmd, what, text, NULL);
    bson_t *doc = bson_new();
    if (!doc) {
        cli_fail("out of memory");
        return NULL;
    }
    while (*p) {
        size_t len = strcspn(p, " ,\t");
        if (len > 0 && !append_field(doc, p, len, minus_value)) {
            bson_destroy(doc);
            cli_usage_error(cmd, "%s: bad field list '%s'", what, text);
            return NULL;
        }
        p += len;
        p += strspn(p, " ,\t");
    }
    return doc;
}

/* ---- the engine ---- */

mk_engine_t *cli_open(const char *dir, bool no_sync, bool must_exist)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || must_exist) {
            cli_fail("cannot open database directory '%s': %s", dir,
                     errno == ENOENT ? "no such directory" : strerror(errno));
            return NULL;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        cli_fail("cannot open database directory '%s': not a directory", dir);
        return NULL;
    }
    mk_engine_opts_t opts = {.no_sync = no_sync};
    mk_error_t err = {0};
    mk_engine_t *eng = mk_engine_open(dir, &opts, &err);
    if (!eng) cli_fail("cannot open database directory '%s': %s", dir, err.message);
    return eng;
}

bool cli_reply_ok(const bson_t *reply)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, reply, "ok") || !BSON_ITER_HOLDS_NUMBER(&it) ||
        bson_iter_as_double(&it) != 1.0)
        return false;
    if (bson_iter_init_find(&it, reply, "writeErrors")) return false;
    if (bson_iter_init_find(&it, reply, "writeConcernError")) return false;
    return true;
}

bool cli_command(mk_engine_t *eng, const char *db, const bson_t *cmd, bson_t *reply)
{
    mk_error_t err = {0};
    int rc = mk_engine_command(eng, db, cmd, reply, &err);
    if (bson_empty(reply)) {
        /* The engine always fills the reply; this is a last line of defence (out of memory) so
         * that callers can print something meaningful. */
        if (rc == MK_OK) {
            BSON_APPEND_DOUBLE(reply, "ok", 1.0);
        } else {
            int code = err.code ? err.code : MK_CODE_INTERNAL;
            BSON_APPEND_DOUBLE(reply, "ok", 0.0);
            BSON_APPEND_UTF8(reply, "errmsg", err.message[0] ? err.message : "command failed");
            BSON_APPEND_INT32(reply, "code", code);
            BSON_APPEND_UTF8(reply, "codeName", err.kind[0] ? err.kind : mk_error_code_name(code));
        }
    }
    return cli_reply_ok(reply);
}

static const char *reply_str(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

int cli_report_reply(const char *cmd, const bson_t *reply)
{
    bson_iter_t it, arr;
    if (bson_iter_init_find(&it, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr) && bson_iter_next(&arr) && BSON_ITER_HOLDS_DOCUMENT(&arr)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&arr, &len, &data);
        bson_t we;
        if (bson_init_static(&we, data, len)) {
            const char *msg = reply_str(&we, "errmsg");
            return cli_fail("%s: %s", cmd, msg ? msg : "write error");
        }
    }
    if (bson_iter_init_find(&it, reply, "writeConcernError")) {
        return cli_fail("%s: write concern error", cmd);
    }
    const char *msg = reply_str(reply, "errmsg");
    const char *name = reply_str(reply, "codeName");
    if (name) return cli_fail("%s: %s (%s)", cmd, msg ? msg : "command failed", name);
    return cli_fail("%s: %s", cmd, msg ? msg : "command failed");
}

int64_t cli_reply_i64(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

/* Calls `each` on every document of the array at `it`. False when `each` asked to stop. */
static bool each_in_batch(bson_iter_t *it, cli_each_fn each, void *ud, bool *bad)
{
    bson_iter_t docs;
    if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &docs)) {
        *bad = true;
        return false;
    }
    while (bson_iter_next(&docs)) {
        uint32_t len;
        const uint8_t *data;
        bson_t doc;
        if (!BSON_ITER_HOLDS_DOCUMENT(&docs)) {
            *bad = true;
            return false;
        }
        bson_iter_document(&docs, &len, &data);
        if (!bson_init_static(&doc, data, len)) {
            *bad = true;
            return false;
        }
        if (!each(&doc, ud)) return false;
    }
    return true;
}

/* Reads cursor.id and walks cursor.<batch_key>. */
static int walk_reply(const char *cmd, const bson_t *reply, const char *batch_key, int64_t *id,
                      cli_each_fn each, void *ud, bool *stopped)
{
    bson_iter_t it, cur;
    bool bad = false;
    if (!bson_iter_init_find(&it, reply, "cursor") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &cur))
        return cli_fail("%s: the reply has no cursor", cmd);
    *id = 0;
    bool have_batch = false;
    while (bson_iter_next(&cur)) {
        const char *key = bson_iter_key(&cur);
        if (strcmp(key, "id") == 0 && BSON_ITER_HOLDS_INT(&cur)) {
            *id = bson_iter_as_int64(&cur);
        } else if (strcmp(key, batch_key) == 0) {
            have_batch = true;
            if (!*stopped && !each_in_batch(&cur, each, ud, &bad)) *stopped = true;
            if (bad) return cli_fail("%s: malformed cursor batch in the reply", cmd);
        }
    }
    if (!have_batch) return cli_fail("%s: the reply has no cursor.%s", cmd, batch_key);
    return CLI_OK;
}

static void kill_cursor(mk_engine_t *eng, const char *db, const char *coll, int64_t id)
{
    bson_t cmd = BSON_INITIALIZER, ids, reply = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "killCursors", coll);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "cursors", &ids);
    BSON_APPEND_INT64(&ids, "0", id);
    bson_append_array_end(&cmd, &ids);
    cli_command(eng, db, &cmd, &reply);
    bson_destroy(&reply);
    bson_destroy(&cmd);
}

int cli_drain_cursor(const char *cmd, mk_engine_t *eng, const char *db, const char *coll,
                     const bson_t *first_reply, cli_each_fn each, void *ud)
{
    int64_t id = 0;
    bool stopped = false;
    int rc = walk_reply(cmd, first_reply, "firstBatch", &id, each, ud, &stopped);
    while (rc == CLI_OK && id != 0 && !stopped) {
        bson_t more = BSON_INITIALIZER, reply = BSON_INITIALIZER;
        BSON_APPEND_INT64(&more, "getMore", id);
        BSON_APPEND_UTF8(&more, "collection", coll);
        if (!cli_command(eng, db, &more, &reply)) {
            rc = cli_report_reply(cmd, &reply);
            id = 0; /* a failed getMore leaves no cursor to kill */
        } else {
            rc = walk_reply(cmd, &reply, "nextBatch", &id, each, ud, &stopped);
        }
        bson_destroy(&reply);
        bson_destroy(&more);
    }
    if (id != 0) kill_cursor(eng, db, coll, id);
    return rc;
}

int cli_finish_output(int status)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_fail("error writing to standard output: %s", strerror(errno));
        return CLI_FAIL;
    }
    return status;
}
