/* `meerkat run`: one database command from the command line, or one per line of stdin, with
 * the reply printed as relaxed Extended JSON, as db.runCommand() gives it in mongosh. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* The reply a line that does not parse gets, shaped as the server's own FailedToParse. */
static bool print_parse_failure(const char *message, long line)
{
    char where[MK_ERROR_MSG_MAX + 64];
    cli_shift_position(message, (int)line, 1, where, sizeof where);
    bson_t reply = BSON_INITIALIZER;
    BSON_APPEND_DOUBLE(&reply, "ok", 0.0);
    BSON_APPEND_UTF8(&reply, "errmsg", where);
    BSON_APPEND_INT32(&reply, "code", MK_CODE_FAILED_TO_PARSE);
    BSON_APPEND_UTF8(&reply, "codeName", mk_error_code_name(MK_CODE_FAILED_TO_PARSE));
    bool ok = cli_print_doc(stdout, &reply);
    bson_destroy(&reply);
    return ok;
}

static bool blank_or_comment(const char *line)
{
    line += strspn(line, " \t\r\n\f\v");
    return *line == '\0' || *line == '#';
}

/* Runs one command per line of stdin in one process, so cursors outlive their command. */
static int run_lines(mk_engine_t *eng, const char *db)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int status = CLI_OK;
    bool io_ok = true;
    while (io_ok && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (blank_or_comment(line)) continue;
        bson_t cmd = BSON_INITIALIZER;
        mk_error_t err = {0};
        if (mk_json_parse_into(&cmd, line, (size_t)len, NULL, NULL, &err) != MK_OK) {
            io_ok = print_parse_failure(err.message, lineno);
            status = CLI_FAIL;
        } else {
            bson_t reply = BSON_INITIALIZER;
            if (!cli_command(eng, db, &cmd, &reply)) status = CLI_FAIL;
            io_ok = cli_print_doc(stdout, &reply);
            bson_destroy(&reply);
        }
        bson_destroy(&cmd);
        /* The reader may be waiting for this reply before it writes the next command. */
        if (fflush(stdout) != 0) io_ok = false;
    }
    if (ferror(stdin)) {
        cli_fail("run: error reading standard input");
        status = CLI_FAIL;
    }
    free(line);
    return cli_finish_output(status);
}

int cli_cmd_run(int argc, char **argv)
{
    cli_option_t opts[] = {CLI_OPT("--db", true), CLI_OPT("--no-sync", false), CLI_OPT_END};
    cli_args_t a;
    int rc = cli_parse_args("run", argc, argv, opts, &a);
    if (rc != CLI_OK) return rc;
    if (a.help) {
        cli_print_command_help(stdout, cli_find_command("run"));
        return CLI_OK;
    }
    if (a.npos != 2) return cli_usage_error("run", "expected DIR and COMMAND (or - for stdin)");
    const char *db = cli_opt(opts, "--db") ? cli_opt(opts, "--db") : "test";
    const char *dir = a.pos[0], *text = a.pos[1];

    bson_t *cmd = NULL;
    if (strcmp(text, "-") != 0 && !(cmd = cli_parse_json("run", "COMMAND", text, NULL)))
        return CLI_USAGE;
    mk_engine_t *eng = cli_open(dir, cli_opt(opts, "--no-sync") != NULL, false);
    if (!eng) {
        bson_destroy(cmd);
        return CLI_FAIL;
    }
    if (!cmd) {
        rc = run_lines(eng, db);
    } else {
        bson_t reply = BSON_INITIALIZER;
        rc = cli_command(eng, db, cmd, &reply) ? CLI_OK : CLI_FAIL;
        if (!cli_print_doc(stdout, &reply)) rc = CLI_FAIL;
        bson_destroy(&reply);
        bson_destroy(cmd);
        rc = cli_finish_output(rc);
    }
    mk_engine_close(eng);
    return rc;
}
