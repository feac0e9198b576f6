/* meerkat — the command line: dispatch, help and version. The subcommands live in
 * tools/cmd_*.c; a new one is a function and one entry in `commands` below. */
#include "cli.h"

#include <lmdb.h>
#include <string.h>

static int cmd_help(int argc, char **argv);

static const cli_command_t commands[] = {
    {"run", cli_cmd_run,
     "meerkat run [--db NAME] [--no-sync] DIR 'COMMAND'\n"
     "meerkat run [--db NAME] [--no-sync] DIR -",
     "run database commands and print MongoDB's replies",
     "Runs one MongoDB database command, written as relaxed JSON (mongosh syntax), against the\n"
     "database NAME (default: test) of the data directory DIR (created if missing), and prints\n"
     "the reply on one line as relaxed Extended JSON, as db.runCommand() does in mongosh.\n"
     "\n"
     "With - instead of COMMAND, reads one command per line from standard input and prints one\n"
     "reply per line, in one process, so a cursor opened by find can be continued by getMore.\n"
     "Blank lines and lines starting with # are skipped. A line that does not parse gets a\n"
     "FailedToParse reply ({ ok: 0, code: 9 }) naming its line and column, and reading goes on.\n"
     "A \"$db\" field in a command selects its database.\n"
     "\n"
     "Commands: insert, find, getMore, killCursors, update, delete, findAndModify, count,\n"
     "distinct, create, drop, dropDatabase, listCollections, listDatabases, ping, hello,\n"
     "buildInfo, and whatever else the engine implements.\n"
     "\n"
     "Options:\n"
     "  --db NAME   database used when the command has no \"$db\" field (default: test)\n"
     "  --no-sync   do not fsync on commit (faster; an OS crash may lose the last writes)\n"
     "\n"
     "Exit status: 0 when every reply has ok: 1 and no writeErrors, 1 otherwise (replies are\n"
     "still printed), 2 for bad arguments or a COMMAND that is not valid JSON.\n"
     "\n"
     "Examples:\n"
     "  meerkat run data '{ insert: \"users\", documents: [{ name: \"Ada\", age: 36 }] }'\n"
     "  meerkat run data '{ find: \"users\", filter: { age: { $gte: 18 } }, batchSize: 2 }'\n"
     "  printf '%s\\n' '{ ping: 1 }' '{ count: \"users\" }' | meerkat run data -\n"},
    {"insert", cli_cmd_insert, "meerkat insert [--db NAME] [--no-sync] DIR COLL 'DOC' ['DOC'...]",
     "insert documents into a collection",
     "Inserts the documents into collection COLL. Each DOC is a document or a JSON array of\n"
     "documents. Documents without an _id get a new ObjectId, as drivers do. Everything is\n"
     "parsed before anything is written; inserts are ordered and stop at the first error.\n"
     "Prints mongosh's result: { acknowledged: true, insertedId(s): ... }.\n"
     "\n"
     "Example:\n"
     "  meerkat insert data users '{ name: \"Ada\", age: 36 }' '{ name: \"Alan\", age: 41 }'\n"},
    {"find", cli_cmd_find,
     "meerkat find [--db NAME] DIR COLL ['FILTER'] [--sort S] [--projection P] [--skip N]\n"
     "             [--limit N] [--batch-size N] [--canonical]",
     "print the documents matching a filter, one per line",
     "Prints the documents of COLL matching FILTER (default: all), one per line as relaxed\n"
     "Extended JSON (--canonical: canonical Extended JSON, which keeps every number's type),\n"
     "following the cursor with getMore until it is exhausted.\n"
     "\n"
     "--sort and --projection take a document ('{ age: -1 }') or a Mongoose-style list of\n"
     "fields ('-age name': a leading - sorts descending / excludes the field).\n"
     "\n"
     "Example:\n"
     "  meerkat find data users '{ age: { $gte: 18 } }' --sort -age --projection 'name -_id'\n"},
    {"update", cli_cmd_update,
     "meerkat update [--db NAME] [--no-sync] DIR COLL 'FILTER' 'UPDATE' [--multi] [--upsert]",
     "update the documents matching a filter",
     "Applies UPDATE (update operators such as { $set: { a: 1 } }, a replacement document, or\n"
     "an aggregation pipeline [...]) to the first document matching FILTER, or to all of them\n"
     "with --multi; --upsert inserts a document when none matches. Prints mongosh's result:\n"
     "{ acknowledged, insertedId, matchedCount, modifiedCount, upsertedCount }.\n"
     "\n"
     "Example:\n"
     "  meerkat update data users '{ name: \"Ada\" }' '{ $inc: { age: 1 } }'\n"},
    {"delete", cli_cmd_delete, "meerkat delete [--db NAME] [--no-sync] DIR COLL 'FILTER' [--one]",
     "delete the documents matching a filter",
     "Deletes every document of COLL matching FILTER ('{}' deletes them all), or only the first\n"
     "one with --one. Prints { acknowledged: true, deletedCount: N }.\n"},
    {"count", cli_cmd_count, "meerkat count [--db NAME] DIR COLL ['FILTER']",
     "print the number of documents matching a filter",
     "Prints the number of documents of COLL matching FILTER (default: all) as a bare number.\n"},
    {"import", cli_cmd_import, "meerkat import [--db NAME] [--no-sync] [--drop] DIR COLL FILE",
     "load documents from a JSON file (or - for stdin)",
     "Inserts the documents of FILE (- reads standard input) into COLL, in batches of 1000\n"
     "documents per insert command. The format is detected: a JSON array of documents, or a\n"
     "sequence of documents (JSON lines, as written by `meerkat export` or mongoexport, or\n"
     "documents spread over several lines). Relaxed JSON and canonical or relaxed Extended\n"
     "JSON are all accepted. The file is streamed: memory holds one batch.\n"
     "\n"
     "Prints 'imported N documents'; shows progress on stderr when it is a terminal. An error\n"
     "names the line (and column) of the bad document; the documents before it are kept.\n"
     "--drop drops the collection first.\n"},
    {"export", cli_cmd_export,
     "meerkat export [--db NAME] DIR COLL ['FILTER'] [--sort S] [--projection P] [--skip N]\n"
     "               [--limit N] [--canonical]",
     "write a collection as JSON lines",
     "Writes the documents of COLL matching FILTER (default: all) as JSON lines: one document\n"
     "per line, relaxed Extended JSON (--canonical keeps every number's exact type). Documents\n"
     "are streamed with getMore, so memory stays flat however large the collection. The\n"
     "output can be loaded back with `meerkat import`.\n"
     "\n"
     "Example:\n"
     "  meerkat export data users > users.jsonl && meerkat import copy users users.jsonl\n"},
    {"help", cmd_help, "meerkat help [COMMAND]", "show help for meerkat or one command", ""},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

const cli_command_t *cli_find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

void cli_print_command_help(FILE *out, const cli_command_t *cmd)
{
    if (!cmd) return;
    fprintf(out, "usage: %s\n\n%s — %s.\n", cmd->synopsis, cmd->name, cmd->summary);
    if (cmd->details[0]) fprintf(out, "\n%s", cmd->details);
}

static void print_usage(FILE *out)
{
    fputs("usage: meerkat COMMAND [ARGS...]\n"
          "\n"
          "meerkat works on an embedded MongoDB-compatible database: a directory on disk (DIR),\n"
          "created on first write. Documents, filters and commands are written as in mongosh:\n"
          "{ name: 'Ada', age: { $gte: 18 } }.\n"
          "\n"
          "Commands:\n",
          out);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fputs("\n"
          "Options for every command: --db NAME (default: test), --no-sync, --help.\n"
          "Run 'meerkat help COMMAND' for the details of one command; 'meerkat --version'.\n"
          "Exit status: 0 success, 1 a failed command or an error, 2 bad usage.\n",
          out);
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stdout);
        return cli_finish_output(CLI_OK);
    }
    if (argc > 2) return cli_usage_error("help", "expected at most one COMMAND");
    const cli_command_t *cmd = cli_find_command(argv[1]);
    if (!cmd) return cli_usage_error(NULL, "unknown command '%s'", argv[1]);
    cli_print_command_help(stdout, cmd);
    return cli_finish_output(CLI_OK);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        int maj, min, patch;
        mdb_version(&maj, &min, &patch);
        printf("meerkat %s (libbson %s, LMDB %d.%d.%d)\n", MEERKAT_VERSION, bson_get_version(), maj,
               min, patch);
        return cli_finish_output(CLI_OK);
    }
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) return cmd_help(1, argv);
    const cli_command_t *cmd = cli_find_command(name);
    if (!cmd) {
        fprintf(stderr, "meerkat: unknown command '%s'\n\n", name);
        print_usage(stderr);
        return CLI_USAGE;
    }
    return cmd->run(argc - 1, argv + 1);
}
