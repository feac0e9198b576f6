/* The `meerkat` command line: helpers shared by the subcommands (tools/cmd_*.c).
 *
 * Exit statuses: 0 success, 1 the database said no (a reply with ok: 0 or write errors, a
 * directory that cannot be opened, bad input data), 2 usage errors (bad arguments, a JSON
 * argument that does not parse). Messages go to stderr and start with "meerkat: ". */
#ifndef MK_TOOLS_CLI_H
#define MK_TOOLS_CLI_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <meerkat.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* A subcommand: its entry point gets argv[0] = the subcommand name. */
typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis; /* one or more lines: "meerkat run [--db NAME] DIR 'COMMAND'" */
    const char *summary;  /* one line for `meerkat help` */
    const char *details;  /* the rest of `meerkat help CMD` */
} cli_command_t;

/* Subcommand lookup (defined in meerkat.c); NULL when unknown. */
const cli_command_t *cli_find_command(const char *name);
/* Prints `meerkat help CMD` for one command. */
void cli_print_command_help(FILE *out, const cli_command_t *cmd);
/* Prints "meerkat: ARGS" plus a pointer to `meerkat help CMD` to stderr; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "meerkat: ..." to stderr; returns CLI_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- arguments ----
 * Options may come before, between or after the positional arguments; "--name=value" and
 * "--name value" both work; "--" ends the options; a lone "-" is positional (stdin). */
typedef struct cli_option {
    const char *name;  /* "--sort" */
    bool has_value;    /* takes an argument */
    const char *value; /* output: the argument, "" for a flag that was given, NULL if absent */
} cli_option_t;

/* Option table entries: CLI_OPT("--sort", true), ..., CLI_OPT_END. */
#define CLI_OPT(n, v)                                                                              \
    {                                                                                              \
        .name = (n), .has_value = (v)                                                              \
    }
#define CLI_OPT_END                                                                                \
    {                                                                                              \
        .name = NULL                                                                               \
    }

#define CLI_MAX_POSITIONAL 64

typedef struct cli_args {
    const char *pos[CLI_MAX_POSITIONAL];
    int npos;
    bool help; /* -h or --help was given */
} cli_args_t;

/* Fills `opts` (terminated by a NULL name) and `out`; prints a usage error and returns
 * CLI_USAGE on an unknown option, a missing value, or too many arguments. */
int cli_parse_args(const char *cmd, int argc, char **argv, cli_option_t *opts, cli_args_t *out);
/* The value of option `name` in `opts` (NULL when absent). */
const char *cli_opt(const cli_option_t *opts, const char *name);
/* Parses a non-negative decimal integer option; CLI_USAGE (printed) when it is not one. */
int cli_parse_count(const char *cmd, const char *opt, const char *text, int64_t *out);

/* ---- JSON ---- */
/* Parses relaxed JSON given on the command line. `what` names it in errors ("FILTER").
 * When is_array is not NULL an array is accepted too. Prints a usage error naming the line
 * and column and returns NULL when the text does not parse. */
bson_t *cli_parse_json(const char *cmd, const char *what, const char *text, bool *is_array);
/* Turns a parser message "line L, column C: msg" that refers to text which started at
 * (line0, col0) of some input into absolute positions, written to out. */
void cli_shift_position(const char *msg, int line0, int col0, char *out, size_t outlen);
/* Prints doc as relaxed Extended JSON on one line; false on allocation or write failure. */
bool cli_print_doc(FILE *out, const bson_t *doc);
/* A sort or projection given as JSON ("{ age: -1 }") or as a Mongoose-style field list
 * ("-age name"): each field is 1, or -1 for sort / 0 for projection when prefixed by '-'. */
bson_t *cli_parse_fields(const char *cmd, const char *what, const char *text, int minus_value);

/* ---- the engine ---- */
/* Opens DIR (creating it unless must_exist); prints a clear message and returns NULL when it
 * cannot be opened. */
mk_engine_t *cli_open(const char *dir, bool no_sync, bool must_exist);
/* Runs one command; `reply` (initialised, empty) always receives a reply document (built from
 * the error when the engine could not produce one). Returns true when cli_reply_ok. */
bool cli_command(mk_engine_t *eng, const char *db, const bson_t *cmd, bson_t *reply);
/* ok: 1 and neither writeErrors nor writeConcernError. */
bool cli_reply_ok(const bson_t *reply);
/* Prints the error carried by a reply: "meerkat: CMD: errmsg (codeName)", or the message of
 * its first write error. Returns CLI_FAIL. */
int cli_report_reply(const char *cmd, const bson_t *reply);
/* The numeric field `key` of a reply as int64 (0 when absent). */
int64_t cli_reply_i64(const bson_t *reply, const char *key);

/* Iterates the documents of a cursor reply ({ cursor: { id, firstBatch } }), issuing getMore
 * on collection `coll` until the cursor is exhausted. `each` returns false to stop (the
 * cursor is then killed). Returns CLI_OK, or CLI_FAIL after printing what went wrong. */
typedef bool (*cli_each_fn)(const bson_t *doc, void *ud);
int cli_drain_cursor(const char *cmd, mk_engine_t *eng, const char *db, const char *coll,
                     const bson_t *first_reply, cli_each_fn each, void *ud);

/* Ends a subcommand that printed to stdout: reports a write error (EPIPE, disk full) as
 * CLI_FAIL, otherwise returns status unchanged. */
int cli_finish_output(int status);

/* ---- batched inserts (insert and import) ----
 * Documents are sent in insert commands of at most CLI_BATCH_DOCS documents (or about
 * CLI_BATCH_BYTES of BSON), ordered, so a failure stops at the first bad document and every
 * document before it is stored. */
#define CLI_BATCH_DOCS  1000
#define CLI_BATCH_BYTES (8u * 1024u * 1024u)

typedef struct cli_inserter {
    mk_engine_t *eng;
    const char *cmd; /* subcommand name for messages */
    const char *db;
    const char *coll;
    const char *label; /* how a document is named in errors: "line" or "document" */
    bson_t batch;      /* the insert command being built */
    bson_t docs;       /* its open "documents" array */
    bool open;
    uint32_t count; /* documents in the batch */
    long labels[CLI_BATCH_DOCS];
    int64_t inserted; /* documents stored so far */
} cli_inserter_t;

void cli_inserter_init(cli_inserter_t *ins, mk_engine_t *eng, const char *cmd, const char *db,
                       const char *coll, const char *label);
/* Adds a document, sending the batch when full. `where` is its line or position. */
int cli_inserter_add(cli_inserter_t *ins, const bson_t *doc, long where);
/* Sends what is pending. Returns CLI_OK or CLI_FAIL after printing the error. */
int cli_inserter_flush(cli_inserter_t *ins);
void cli_inserter_destroy(cli_inserter_t *ins);

/* Subcommands (tools/cmd_*.c). */
int cli_cmd_run(int argc, char **argv);
int cli_cmd_insert(int argc, char **argv);
int cli_cmd_find(int argc, char **argv);
int cli_cmd_export(int argc, char **argv);
int cli_cmd_update(int argc, char **argv);
int cli_cmd_delete(int argc, char **argv);
int cli_cmd_count(int argc, char **argv);
int cli_cmd_import(int argc, char **argv);

#endif
