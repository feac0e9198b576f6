/* quickstart — the embedded engine in five minutes.
 *
 *   build/quickstart data      (what `make run` does)
 *
 * Opens (or creates) a database directory, refills a `users` collection, and runs the
 * everyday operations as MongoDB database commands, printing each result. Commands are
 * written as relaxed JSON, as in mongosh; values from variables are never pasted into the
 * text but bound to `?` placeholders (MK_STR, MK_I32, MK_DATE, ...), so a string from a user
 * can never turn into an operator. */
#include <meerkat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct user {
    const char *email, *name, *role;
    int age;
    const char *tags[2];
    const char *country, *bio;
    int64_t created_at; /* milliseconds since the epoch */
} user_t;

static const user_t seed_users[] = {
    {"ada@example.com",
     "Ada Lovelace",
     "admin",
     36,
     {"math", "poetry"},
     "GB",
     "First programmer.",
     1700000000000},
    {"alan@example.com",
     "Alan Turing",
     "user",
     41,
     {"math", "running"},
     "GB",
     "Thinks about machines.",
     1700086400000},
    {"grace@example.com",
     "Grace Hopper",
     "user",
     85,
     {"navy", "compilers"},
     "US",
     "Found the first bug.",
     1700172800000},
    {"linus@example.com",
     "Linus Torvalds",
     "user",
     21,
     {"kernels", "diving"},
     "FI",
     "Just a hobby.",
     1700259200000},
    {"kid@example.com",
     "Young Coder",
     "user",
     15,
     {"games", "math"},
     "NZ",
     "Learning C.",
     1700345600000},
    {"barbara@example.com",
     "Barbara Liskov",
     "user",
     84,
     {"types", "compilers"},
     "US",
     "Substitutable.",
     1700432000000},
};
#define N_USERS (sizeof seed_users / sizeof seed_users[0])

static mk_engine_t *eng;

/* Runs a command built by mk_bson (destroying it) and returns the reply, or exits with the
 * error: an example should fail loudly. */
static bson_t *run(const char *what, bson_t *cmd, mk_error_t *parse_err)
{
    if (!cmd) {
        fprintf(stderr, "quickstart: %s: bad command text: %s\n", what, parse_err->message);
        exit(1);
    }
    bson_t *reply = bson_new();
    mk_error_t err = {0};
    if (!reply || mk_engine_command(eng, "quickstart", cmd, reply, &err) != MK_OK) {
        fprintf(stderr, "quickstart: %s failed: %s (%s)\n", what, err.message, err.kind);
        exit(1);
    }
    bson_destroy(cmd);
    return reply;
}

static void print_doc(const char *indent, const bson_t *doc)
{
    char *json = mk_json_from_bson(doc);
    printf("%s%s\n", indent, json ? json : "(out of memory)");
    bson_free(json);
}

/* Prints every document of cursor.firstBatch (our results are small: one batch). */
static void print_batch(const bson_t *reply)
{
    bson_iter_t it, batch, docs;
    if (!bson_iter_init(&it, reply) ||
        !bson_iter_find_descendant(&it, "cursor.firstBatch", &batch) ||
        !bson_iter_recurse(&batch, &docs))
        return;
    while (bson_iter_next(&docs)) {
        uint32_t len;
        const uint8_t *data;
        bson_t doc;
        bson_iter_document(&docs, &len, &data);
        if (bson_init_static(&doc, data, len)) print_doc("    ", &doc);
    }
}

static int64_t reply_number(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : -1;
}

static void caption(const char *text)
{
    printf("\n%s\n", text);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "data";
    mk_error_t err = {0};
    eng = mk_engine_open(dir, NULL, &err);
    if (!eng) {
        fprintf(stderr, "quickstart: cannot open %s: %s\n", dir, err.message);
        return 1;
    }
    printf("meerkat %s quickstart: database 'quickstart' in directory '%s'\n", MEERKAT_VERSION,
           dir);

    /* Start from a clean collection so that every run prints the same thing. Dropping a
     * collection that does not exist is an error (NamespaceNotFound), which is fine here. */
    bson_t *drop = mk_bson(&err, "{ drop: 'users' }");
    bson_t reply = BSON_INITIALIZER;
    if (drop) mk_engine_command(eng, "quickstart", drop, &reply, NULL);
    bson_destroy(&reply);
    bson_destroy(drop);

    /* Each document is relaxed JSON with its values bound to placeholders. */
    bson_t docs = BSON_INITIALIZER;
    for (size_t i = 0; i < N_USERS; i++) {
        const user_t *u = &seed_users[i];
        bson_t *doc = mk_bson(&err,
                              "{ email: ?, name: ?, role: ?, age: ?, tags: [?, ?],"
                              "  profile: { country: ?, bio: ? }, createdAt: ? }",
                              MK_STR(u->email), MK_STR(u->name), MK_STR(u->role), MK_I32(u->age),
                              MK_STR(u->tags[0]), MK_STR(u->tags[1]), MK_STR(u->country),
                              MK_STR(u->bio), MK_DATE(u->created_at));
        if (!doc) {
            fprintf(stderr, "quickstart: %s\n", err.message);
            return 1;
        }
        char key[16];
        snprintf(key, sizeof key, "%zu", i);
        BSON_APPEND_DOCUMENT(&docs, key, doc);
        bson_destroy(doc);
    }
    bson_t *r =
        run("insert", mk_bson(&err, "{ insert: 'users', documents: ? }", MK_ARRAY(&docs)), &err);
    bson_destroy(&docs);
    printf("\ninsert %zu users -> inserted n = %lld\n", N_USERS, (long long)reply_number(r, "n"));
    bson_destroy(r);

    caption("find adults with role 'user', oldest first, name and age only:\n"
            "  { find: 'users', filter: { age: { $gte: ? }, role: ? }, sort: { age: -1 },\n"
            "    projection: { _id: 0, name: 1, age: 1 } }   with ? = 18, 'user'");
    r = run("find",
            mk_bson(&err,
                    "{ find: 'users', filter: { age: { $gte: ? }, role: ? }, sort: { age: -1 },"
                    "  projection: { _id: 0, name: 1, age: 1 } }",
                    MK_I32(18), MK_STR("user")),
            &err);
    print_batch(r);
    bson_destroy(r);

    caption("count users tagged 'math':  { count: 'users', query: { tags: ? } }");
    r = run("count", mk_bson(&err, "{ count: 'users', query: { tags: ? } }", MK_STR("math")), &err);
    printf("    %lld\n", (long long)reply_number(r, "n"));
    bson_destroy(r);

    caption("a bound string is data, never an operator: count where email = \"{ $ne: null }\"");
    r = run("count",
            mk_bson(&err, "{ count: 'users', query: { email: ? } }", MK_STR("{ $ne: null }")),
            &err);
    printf("    %lld (no user has that literal email)\n", (long long)reply_number(r, "n"));
    bson_destroy(r);

    caption("updateOne Alan: $set a bio, $inc age, $push a tag");
    r = run(
        "update",
        mk_bson(&err,
                "{ update: 'users', updates: [ { q: { email: ? },"
                "  u: { $set: { 'profile.bio': ? }, $inc: { age: ? }, $push: { tags: ? } } } ] }",
                MK_STR("alan@example.com"), MK_STR("Broke Enigma."), MK_I32(1), MK_STR("crypto")),
        &err);
    printf("    matched n = %lld, nModified = %lld\n", (long long)reply_number(r, "n"),
           (long long)reply_number(r, "nModified"));
    bson_destroy(r);

    caption("findAndModify: promote Grace to admin and return the new document");
    r = run("findAndModify",
            mk_bson(&err,
                    "{ findAndModify: 'users', query: { email: ? }, update: { $set: { role: ? } },"
                    "  new: true, fields: { _id: 0, name: 1, role: 1, age: 1, tags: 1 } }",
                    MK_STR("grace@example.com"), MK_STR("admin")),
            &err);
    bson_iter_t it;
    if (bson_iter_init_find(&it, r, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_t value;
        bson_iter_document(&it, &len, &data);
        if (bson_init_static(&value, data, len)) print_doc("    ", &value);
    }
    bson_destroy(r);

    caption("distinct countries:  { distinct: 'users', key: 'profile.country' }");
    r = run("distinct", mk_bson(&err, "{ distinct: 'users', key: 'profile.country' }"), &err);
    if (bson_iter_init_find(&it, r, "values") && BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_t shown = BSON_INITIALIZER; /* a document around the array, to print it as one */
        BSON_APPEND_VALUE(&shown, "values", bson_iter_value(&it));
        print_doc("    ", &shown);
        bson_destroy(&shown);
    }
    bson_destroy(r);

    caption("deleteMany minors:  { delete: 'users', deletes: [ { q: { age: { $lt: ? } }, "
            "limit: 0 } ] }");
    r = run("delete",
            mk_bson(&err, "{ delete: 'users', deletes: [ { q: { age: { $lt: ? } }, limit: 0 } ] }",
                    MK_I32(18)),
            &err);
    printf("    deleted n = %lld\n", (long long)reply_number(r, "n"));
    bson_destroy(r);

    caption("final contents, by name:");
    r = run(
        "find",
        mk_bson(&err, "{ find: 'users', sort: { name: 1 }, projection: { _id: 0, createdAt: 0 } }"),
        &err);
    print_batch(r);
    bson_destroy(r);

    mk_engine_close(eng);
    printf("\nDone. Run it again: it starts over. Try the CLI too:\n"
           "  meerkat find %s users '{ role: \"admin\" }' --db quickstart\n",
           dir);
    return 0;
}
