/* `meerkat import`: documents from a file or stdin into a collection, streamed.
 *
 * The format is detected from the first character: '[' is a JSON array of documents, '{' a
 * sequence of documents (JSON lines, or documents spread over several lines such as
 * pretty-printed or mongoexport Extended JSON). A small scanner finds where each document
 * ends (braces outside strings, comments and /regex/ literals) so that memory holds one
 * document and one batch, whatever the file size; the relaxed-JSON parser then reads each
 * document and its errors are shifted to the document's line and column in the file. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct reader {
    FILE *in;
    int peeked; /* a character read ahead, or -2 */
    long line, col;
    char *buf; /* the current document's text */
    size_t len, cap;
    int mode; /* 0 not started, '[' array, '{' sequence, 'e' finished */
    bool first_elem;
    char err[MK_ERROR_MSG_MAX + 64];
} reader_t;

static int rd_get(reader_t *r)
{
    int c;
    if (r->peeked != -2) {
        c = r->peeked;
        r->peeked = -2;
    } else {
        c = getc_unlocked(r->in);
    }
    if (c == '\n') {
        r->line++;
        r->col = 1;
    } else if (c != EOF) {
        r->col++;
    }
    return c;
}

static int rd_peek(reader_t *r)
{
    if (r->peeked == -2) r->peeked = getc_unlocked(r->in);
    return r->peeked;
}

static bool rd_keep(reader_t *r, int c)
{
    if (r->len + 1 >= r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4096;
        if (cap > (size_t)MK_MAX_BSON_SIZE * 8) return false; /* far beyond any document */
        char *p = realloc(r->buf, cap);
        if (!p) return false;
        r->buf = p;
        r->cap = cap;
    }
    r->buf[r->len++] = (char)c;
    return true;
}

/* Returned by the scanners on an error (distinct from EOF, which is -1). */
#define RD_ERR (-3)

static int rd_error(reader_t *r, long line, long col, const char *msg)
{
    snprintf(r->err, sizeof r->err, "line %ld, column %ld: %s", line, col, msg);
    return RD_ERR;
}

/* Skips whitespace and comments between values. Returns the next significant character
 * (not consumed), EOF, or RD_ERR with r->err set. */
static int skip_space(reader_t *r)
{
    for (;;) {
        int c = rd_peek(r);
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            rd_get(r);
        } else if (c == '/') {
            long line = r->line, col = r->col;
            rd_get(r);
            int d = rd_get(r);
            if (d == '/') {
                while ((c = rd_get(r)) != EOF && c != '\n') {}
            } else if (d == '*') {
                int prev = 0;
                while ((c = rd_get(r)) != EOF && !(prev == '*' && c == '/')) prev = c;
                if (c == EOF) return rd_error(r, line, col, "unterminated comment");
            } else {
                return rd_error(r, line, col, "unexpected '/'");
            }
        } else {
            return c;
        }
    }
}

/* Copies the rest of a quoted string (opening quote already kept). */
static int scan_string(reader_t *r, int quote, long line, long col)
{
    for (;;) {
        int c = rd_get(r);
        if (c == EOF) return rd_error(r, line, col, "unterminated string");
        if (!rd_keep(r, c)) return rd_error(r, line, col, "document too large or out of memory");
        if (c == '\\') {
            c = rd_get(r);
            if (c == EOF) return rd_error(r, line, col, "unterminated string");
            if (!rd_keep(r, c)) return rd_error(r, line, col, "out of memory");
        } else if (c == quote) {
            return 0;
        }
    }
}

/* Copies a /regex/ literal's body (opening slash already kept). */
static int scan_regex(reader_t *r, long line, long col)
{
    bool in_class = false;
    for (;;) {
        int c = rd_get(r);
        if (c == EOF || c == '\n') return rd_error(r, line, col, "unterminated regular expression");
        if (!rd_keep(r, c)) return rd_error(r, line, col, "out of memory");
        if (c == '\\') {
            c = rd_get(r);
            if (c == EOF) return rd_error(r, line, col, "unterminated regular expression");
            if (!rd_keep(r, c)) return rd_error(r, line, col, "out of memory");
        } else if (c == '[') {
            in_class = true;
        } else if (c == ']') {
            in_class = false;
        } else if (c == '/' && !in_class) {
            return 0;
        }
    }
}

/* Copies one document starting at '{' into r->buf, up to its matching '}'. */
static int scan_document(reader_t *r)
{
    long line = r->line, col = r->col;
    int depth = 0, last = 0; /* last significant character, to tell a regex from a division */
    r->len = 0;
    for (;;) {
        int c = rd_get(r);
        if (c == EOF) return rd_error(r, line, col, "document is not closed (missing '}')");
        long cl = r->line, cc = r->col - 1;
        if (!rd_keep(r, c)) return rd_error(r, line, col, "document too large or out of memory");
        if (c == '"' || c == '\'') {
            if (scan_string(r, c, cl, cc) == RD_ERR) return RD_ERR;
        } else if (c == '/' && rd_peek(r) == '/') {
            while ((c = rd_get(r)) != EOF && c != '\n')
                if (!rd_keep(r, c)) return rd_error(r, line, col, "out of memory");
            if (c == '\n' && !rd_keep(r, c)) return rd_error(r, line, col, "out of memory");
            continue;
        } else if (c == '/' && rd_peek(r) == '*') {
            int prev = 0;
            if (!rd_keep(r, rd_get(r))) return rd_error(r, line, col, "out of memory");
            while ((c = rd_get(r)) != EOF) {
                if (!rd_keep(r, c)) return rd_error(r, line, col, "out of memory");
                if (prev == '*' && c == '/') break;
                prev = c;
            }
            if (c == EOF) return rd_error(r, cl, cc, "unterminated comment");
            continue;
        } else if (c == '/' && (last == ':' || last == ',' || last == '[' || last == '(')) {
            if (scan_regex(r, cl, cc) == RD_ERR) return RD_ERR;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) break;
        }
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') last = c;
    }
    if (!rd_keep(r, '\0')) return rd_error(r, line, col, "out of memory");
    r->len--;
    return 1;
}

/* Positions r on the next document. Returns 1 (text in r->buf, starting at *line:*col),
 * 0 at the end of the input, RD_ERR with r->err set. */
static int next_document(reader_t *r, long *line, long *col)
{
    int c = skip_space(r);
    if (c == RD_ERR) return RD_ERR;
    if (r->mode == 0) {
        if (c == EOF) return 0;
        if (c == '[') {
            rd_get(r);
            r->mode = '[';
            r->first_elem = true;
            c = skip_space(r);
            if (c == RD_ERR) return RD_ERR;
        } else if (c == '{') {
            r->mode = '{';
        } else {
            return rd_error(r, r->line, r->col, "expected a JSON array '[' or a document '{'");
        }
    }
    if (r->mode == 'e') {
        if (c == EOF) return 0;
        return rd_error(r, r->line, r->col, "unexpected text after the closing ']'");
    }
    if (r->mode == '[') {
        if (!r->first_elem && c == ',') {
            rd_get(r);
            c = skip_space(r);
            if (c == RD_ERR) return RD_ERR;
        } else if (!r->first_elem && c == EOF) {
            return rd_error(r, r->line, r->col, "the array is not closed (missing ']')");
        } else if (!r->first_elem && c != ']') {
            return rd_error(r, r->line, r->col, "expected ',' or ']' after a document");
        }
        if (c == ']') {
            rd_get(r);
            r->mode = 'e';
            return next_document(r, line, col);
        }
        if (c == EOF) return rd_error(r, r->line, r->col, "the array is not closed (missing ']')");
        r->first_elem = false;
    } else if (c == EOF) {
        return 0;
    }
    if (c != '{') return rd_error(r, r->line, r->col, "expected a document '{'");
    *line = r->line;
    *col = r->col;
    return scan_document(r);
}

static void progress(int64_t n, bool tty)
{
    if (tty) fprintf(stderr, "\r imported %" PRId64 " document%s", n, n == 1 ? "" : "s");
}

/* Drops the collection, ignoring "ns not found". */
static int drop_collection(mk_engine_t *eng, const char *db, const char *coll)
{
    bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "drop", coll);
    int rc = CLI_OK;
    if (!cli_command(eng, db, &cmd, &reply) &&
        cli_reply_i64(&reply, "code") != MK_CODE_NAMESPACE_NOT_FOUND)
        rc = cli_report_reply("import", &reply);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return rc;
}

static int import_stream(cli_inserter_t *ins, reader_t *r, bool tty)
{
    int64_t reported = 0;
    for (;;) {
        long line = 0, col = 0;
        int got = next_document(r, &line, &col);
        if (got == 0) break;
        if (got == RD_ERR) {
            int rc = cli_inserter_flush(ins); /* everything before the bad text is stored */
            if (tty) fputc('\n', stderr);
            return rc != CLI_OK ? rc : cli_fail("import: %s", r->err);
        }
        bson_t doc = BSON_INITIALIZER;
        mk_error_t err = {0};
        if (mk_json_parse_into(&doc, r->buf, r->len, NULL, NULL, &err) != MK_OK) {
            bson_destroy(&doc);
            char where[sizeof r->err];
            cli_shift_position(err.message, (int)line, (int)col, where, sizeof where);
            int rc = cli_inserter_flush(ins);
            if (tty) fputc('\n', stderr);
            return rc != CLI_OK ? rc : cli_fail("import: %s", where);
        }
        int rc = cli_inserter_add(ins, &doc, line);
        bson_destroy(&doc);
        if (rc != CLI_OK) {
            if (tty) fputc('\n', stderr);
            return rc;
        }
        if (ins->inserted != reported) progress(reported = ins->inserted, tty);
    }
    int rc = cli_inserter_flush(ins);
    if (rc == CLI_OK) progress(ins->inserted, tty);
    if (tty) fputc('\n', stderr);
    return rc;
}

int cli_cmd_import(int argc, char **argv)
{
    cli_option_t opts[] = {CLI_OPT("--db", true), CLI_OPT("--no-sync", false),
                           CLI_OPT("--drop", false), CLI_OPT_END};
    cli_args_t a;
    int rc = cli_parse_args("import", argc, argv, opts, &a);
    if (rc != CLI_OK) return rc;
    if (a.help) {
        cli_print_command_help(stdout, cli_find_command("import"));
        return CLI_OK;
    }
    if (a.npos != 3) return cli_usage_error("import", "expected DIR COLL FILE (or - for stdin)");
    const char *db = cli_opt(opts, "--db") ? cli_opt(opts, "--db") : "test";
    const char *path = a.pos[2];

    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) return cli_fail("import: cannot open '%s': %s", path, strerror(errno));
    mk_engine_t *eng = cli_open(a.pos[0], cli_opt(opts, "--no-sync") != NULL, false);
    if (!eng) {
        if (in != stdin) fclose(in);
        return CLI_FAIL;
    }

    if (cli_opt(opts, "--drop")) rc = drop_collection(eng, db, a.pos[1]);
    cli_inserter_t *ins = malloc(sizeof *ins);
    reader_t r = {.in = in, .peeked = -2, .line = 1, .col = 1};
    if (!ins) rc = cli_fail("import: out of memory");
    if (rc == CLI_OK) {
        cli_inserter_init(ins, eng, "import", db, a.pos[1], "line");
        /* A UTF-8 byte order mark is not part of the JSON. */
        if (rd_peek(&r) == 0xEF) {
            unsigned char bom[2];
            r.peeked = -2;
            if (fread(bom, 1, 2, in) != 2 || bom[0] != 0xBB || bom[1] != 0xBF)
                rc = cli_fail("import: the input starts with an invalid UTF-8 byte");
        }
        if (rc == CLI_OK) rc = import_stream(ins, &r, isatty(STDERR_FILENO));
        if (rc == CLI_OK && ferror(in)) rc = cli_fail("import: error reading '%s'", path);
        if (rc == CLI_OK)
            printf("imported %" PRId64 " document%s\n", ins->inserted,
                   ins->inserted == 1 ? "" : "s");
        else if (ins->inserted > 0)
            fprintf(stderr, "meerkat: import: %" PRId64 " document%s imported before the error\n",
                    ins->inserted, ins->inserted == 1 ? " was" : "s were");
        cli_inserter_destroy(ins);
    }
    free(ins);
    free(r.buf);
    if (in != stdin) fclose(in);
    mk_engine_close(eng);
    return cli_finish_output(rc);
}
