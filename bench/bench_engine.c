/* The embedded engine against raw LMDB and SQLite, side by side in one run.
 *
 * The same deterministic User-shaped documents (the seeds' userSchema: email, name, role, age,
 * tags, profile, createdAt/updatedAt) go through the same operations on three stores:
 *   meerkat  mk_engine_command with the database commands a driver sends;
 *   LMDB     liblmdb directly: the engine's record key (13 bytes: a type byte and the
 *            12-byte ObjectId) and the same BSON bytes, the floor under the engine;
 *   SQLite   a (id TEXT PRIMARY KEY, doc TEXT) table holding the documents as JSON text,
 *            prepared statements, json_extract / json_set, the usual "just use SQLite".
 * Then secondary indexes (no-sync): a findOne on a unique email index against the same lookup
 * as a collection scan and SQLite's expression index, age ranges, index builds, and the insert
 * cost of 0, 1 and 3 indexes; and transactions of two updates committed through the session
 * API (no-sync and durable) against the same updates without a transaction and SQLite's
 * BEGIN; UPDATE; UPDATE; COMMIT.
 * Each phase checks its result (documents found, matched, modified, deleted; the query plans
 * through explain) and the program stops with a message when one is wrong: the benchmark is
 * also a smoke test.
 * Targets are printed as PASS/MISS and never asserted: timings belong here, not in tests. */
#include <meerkat.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef MK_HAVE_SQLITE
#include <sqlite3.h>
#endif

#define BATCH      1000
#define SCAN_REPS  3
#define KEY_LEN    13   /* the engine's encoding of an ObjectId _id: type byte + 12 bytes */
#define KEY_TYPE   0x07 /* any constant: only the key length and order matter here */
#define COLL       "users"
#define SCAN_VALUE "NZ"
#define AGE_MIN    18
#define AGE_SPAN   60 /* ages are AGE_MIN .. AGE_MIN + AGE_SPAN - 1, uniformly */

enum { OP_INSERT, OP_FIND, OP_SCAN, OP_UPDATE, OP_DELETE, N_OPS };
enum { ST_MEERKAT, ST_LMDB, ST_SQLITE, N_STORES };

static const char *const op_names[N_OPS] = {
    "insertMany (1000/batch)", "find by _id (random)", "scan profile.country",
    "update $set by _id",      "delete by _id",
};

/* ---- small utilities ---- */

static char base_dir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
    if (base_dir[0]) rm_tree(base_dir);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("\nbench_engine: FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: a fixed seed makes every run generate the same documents. */
static uint64_t rng_state = 0x6d65657263617421ull;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(rng() % n);
}

/* ---- the documents ---- */

typedef struct dataset {
    size_t n;
    bson_t **docs;
    bson_oid_t *ids;
    uint8_t (*keys)[KEY_LEN];
    char (*hex)[25];
    char **json;       /* relaxed Extended JSON for SQLite */
    uint32_t *age_off; /* byte offset of the int32 value of "age" in each document */
    int32_t *age;
    size_t *order;       /* a random permutation of 0..n-1 */
    size_t scan_matches; /* documents whose profile.country is SCAN_VALUE */
    const char **email;  /* each document's email (borrowed from its BSON) */
    size_t age_count[AGE_SPAN];
    size_t bson_bytes, json_bytes;
} dataset_t;

static const char *const first_names[] = {"Ada",   "Alan",    "Grace",  "Linus",    "Barbara",
                                          "Ken",   "Donald",  "Edsger", "Margaret", "Dennis",
                                          "Radia", "Frances", "John",   "Niklaus",  "Hedy"};
static const char *const last_names[] = {"Lovelace", "Turing", "Hopper",   "Torvalds", "Liskov",
                                         "Thompson", "Knuth",  "Dijkstra", "Hamilton", "Ritchie",
                                         "Perlman",  "Allen",  "Backus",   "Wirth"};
static const char *const tag_words[] = {"mongodb", "c",    "lmdb",   "rust", "go",     "books",
                                        "chess",   "jazz", "hiking", "ops",  "design", "math"};
static const char *const countries[] = {"NZ", "AU", "US", "GB", "FR", "DE", "JP", "BR", "IN", "CA",
                                        "ES", "IT", "NL", "SE", "NO", "KR", "MX", "ZA", "IE", "CH"};
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static void make_oid(size_t i, bson_oid_t *oid)
{
    /* ObjectId layout: 4-byte time, 5 "random" bytes, 3-byte counter; increasing in i. */
    uint32_t t = 0x65000000u + (uint32_t)(i >> 24);
    uint8_t *b = oid->bytes;
    b[0] = (uint8_t)(t >> 24), b[1] = (uint8_t)(t >> 16), b[2] = (uint8_t)(t >> 8);
    b[3] = (uint8_t)t;
    memcpy(b + 4, "MEERK", 5);
    b[9] = (uint8_t)(i >> 16), b[10] = (uint8_t)(i >> 8), b[11] = (uint8_t)i;
}

static bson_t *make_user(size_t i, const bson_oid_t *oid, int32_t age, const char *country)
{
    char email[64], name[64], avatar[64], bio[64];
    const char *first = first_names[rng_below(COUNT_OF(first_names))];
    const char *last = last_names[rng_below(COUNT_OF(last_names))];
    snprintf(email, sizeof email, "%c%s.%zu@example.com", first[0] | 0x20, last, i);
    for (char *p = email; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p | 0x20);
    snprintf(name, sizeof name, "%s %s", first, last);
    snprintf(avatar, sizeof avatar, "/avatars/%zu.png", i);
    snprintf(bio, sizeof bio, "Likes %s and %s.", tag_words[rng_below(COUNT_OF(tag_words))],
             tag_words[rng_below(COUNT_OF(tag_words))]);
    int64_t created = 1600000000000ll + (int64_t)rng_below(100000000) * 1000;

    bson_t *d = bson_new(), tags, profile;
    BSON_APPEND_OID(d, "_id", oid);
    BSON_APPEND_UTF8(d, "email", email);
    BSON_APPEND_UTF8(d, "name", name);
    BSON_APPEND_UTF8(d, "role", rng_below(10) == 0 ? "admin" : "user");
    BSON_APPEND_INT32(d, "age", age);
    BSON_APPEND_ARRAY_BEGIN(d, "tags", &tags);
    uint32_t ntags = 1 + rng_below(3);
    for (uint32_t t = 0; t < ntags; t++) {
        char kb[16];
        const char *key;
        size_t kl = bson_uint32_to_string(t, &key, kb, sizeof kb);
        bson_append_utf8(&tags, key, (int)kl, tag_words[rng_below(COUNT_OF(tag_words))], -1);
    }
    bson_append_array_end(d, &tags);
    BSON_APPEND_DOCUMENT_BEGIN(d, "profile", &profile);
    BSON_APPEND_UTF8(&profile, "avatar", avatar);
    BSON_APPEND_UTF8(&profile, "bio", bio);
    BSON_APPEND_UTF8(&profile, "country", country);
    bson_append_document_end(d, &profile);
    BSON_APPEND_DATE_TIME(d, "createdAt", created);
    BSON_APPEND_DATE_TIME(d, "updatedAt", created + (int64_t)rng_below(1000000) * 1000);
    return d;
}

static void dataset_init(dataset_t *ds, size_t n)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->docs = xmalloc(n * sizeof *ds->docs);
    ds->ids = xmalloc(n * sizeof *ds->ids);
    ds->keys = xmalloc(n * sizeof *ds->keys);
    ds->hex = xmalloc(n * sizeof *ds->hex);
    ds->json = xmalloc(n * sizeof *ds->json);
    ds->age_off = xmalloc(n * sizeof *ds->age_off);
    ds->age = xmalloc(n * sizeof *ds->age);
    ds->order = xmalloc(n * sizeof *ds->order);
    ds->email = xmalloc(n * sizeof *ds->email);
    for (size_t i = 0; i < n; i++) {
        make_oid(i, &ds->ids[i]);
        ds->keys[i][0] = KEY_TYPE;
        memcpy(ds->keys[i] + 1, ds->ids[i].bytes, 12);
        bson_oid_to_string(&ds->ids[i], ds->hex[i]);
        const char *country = countries[rng_below(COUNT_OF(countries))];
        if (strcmp(country, SCAN_VALUE) == 0) ds->scan_matches++;
        ds->age[i] = AGE_MIN + (int32_t)rng_below(AGE_SPAN);
        ds->age_count[ds->age[i] - AGE_MIN]++;
        ds->docs[i] = make_user(i, &ds->ids[i], ds->age[i], country);
        if (!ds->docs[i]) die("out of memory building documents");
        bson_iter_t it;
        if (!bson_iter_init_find(&it, ds->docs[i], "age")) die("generated document has no age");
        /* The int32 value ends the element; its offset is stable for put-overwrite. */
        ds->age_off[i] = bson_iter_offset(&it) + 1 + 4; /* type byte + "age\0" */
        if (!bson_iter_init_find(&it, ds->docs[i], "email")) die("generated document has no email");
        ds->email[i] = bson_iter_utf8(&it, NULL);
        ds->json[i] = bson_as_relaxed_extended_json(ds->docs[i], NULL);
        if (!ds->json[i]) die("out of memory building JSON");
        ds->bson_bytes += ds->docs[i]->len;
        ds->json_bytes += strlen(ds->json[i]);
        ds->order[i] = i;
    }
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(rng() % i);
        size_t t = ds->order[i - 1];
        ds->order[i - 1] = ds->order[j];
        ds->order[j] = t;
    }
}

static void dataset_free(dataset_t *ds)
{
    for (size_t i = 0; i < ds->n; i++) {
        bson_destroy(ds->docs[i]);
        bson_free(ds->json[i]);
    }
    free(ds->docs);
    free(ds->ids);
    free(ds->keys);
    free(ds->hex);
    free(ds->json);
    free(ds->age_off);
    free(ds->age);
    free(ds->order);
    free(ds->email);
}

/* What one run measures: `n` documents; updates and deletes on `n_write` of them (the
 * documents order[0..n_write) are updated, order[n - n_write..n) deleted). */
typedef struct plan {
    const dataset_t *ds;
    size_t n_write;
    bool no_sync;
    size_t map_size;
} plan_t;

/* The new age an update sets: always different from the stored one, so nModified is 1. */
static int32_t new_age(const plan_t *p, size_t i)
{
    return p->ds->age[i] + 100;
}

static char *store_dir(const char *name, bool no_sync)
{
    char *dir = NULL;
    if (asprintf(&dir, "%s/%s-%s", base_dir, name, no_sync ? "nosync" : "durable") < 0)
        die("out of memory");
    rm_tree(dir);
    if (mkdir(dir, 0755) != 0) die("mkdir %s: %s", dir, strerror(errno));
    return dir;
}

/* ---- meerkat ---- */

static void engine_run(mk_engine_t *eng, const bson_t *cmd, bson_t *reply, const char *what)
{
    mk_error_t err = {0};
    bson_reinit(reply);
    if (mk_engine_command(eng, "bench", cmd, reply, &err) != MK_OK)
        die("meerkat %s: %s (%s)", what, err.message, err.kind);
}

static int64_t reply_int(const bson_t *reply, const char *path)
{
    bson_iter_t it, f;
    if (bson_iter_init(&it, reply) && bson_iter_find_descendant(&it, path, &f) &&
        BSON_ITER_HOLDS_NUMBER(&f))
        return bson_iter_as_int64(&f);
    return -1;
}

/* Counts the documents of cursor.<batch> and returns cursor.id. */
static int64_t cursor_batch(const bson_t *reply, const char *batch, size_t *count)
{
    bson_iter_t it, f, docs;
    char path[32];
    snprintf(path, sizeof path, "cursor.%s", batch);
    if (!bson_iter_init(&it, reply) || !bson_iter_find_descendant(&it, path, &f) ||
        !BSON_ITER_HOLDS_ARRAY(&f) || !bson_iter_recurse(&f, &docs))
        die("meerkat: reply without %s", path);
    while (bson_iter_next(&docs)) ++*count;
    return reply_int(reply, "cursor.id");
}

/* Inserts all the documents into `coll` with insert commands of BATCH documents. */
static void meerkat_insert_all(mk_engine_t *eng, const char *coll, const dataset_t *ds)
{
    bson_t cmd, reply = BSON_INITIALIZER, arr;
    for (size_t b = 0; b < ds->n; b += BATCH) {
        size_t end = b + BATCH < ds->n ? b + BATCH : ds->n;
        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "insert", coll);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "documents", &arr);
        for (size_t i = b; i < end; i++) {
            char kb[16];
            const char *key;
            size_t kl = bson_uint32_to_string((uint32_t)(i - b), &key, kb, sizeof kb);
            bson_append_document(&arr, key, (int)kl, ds->docs[i]);
        }
        bson_append_array_end(&cmd, &arr);
        engine_run(eng, &cmd, &reply, "insert");
        if (reply_int(&reply, "n") != (int64_t)(end - b))
            die("meerkat insert into %s: n = %" PRId64 ", expected %zu", coll,
                reply_int(&reply, "n"), end - b);
        bson_destroy(&cmd);
    }
    bson_destroy(&reply);
}

/* Runs a find command and its getMores to the end, as a driver iterating a cursor does;
 * returns the number of documents. */
static size_t meerkat_drain(mk_engine_t *eng, const bson_t *find, const char *coll)
{
    bson_t cmd, reply = BSON_INITIALIZER;
    engine_run(eng, find, &reply, "find");
    size_t got = 0;
    int64_t id = cursor_batch(&reply, "firstBatch", &got);
    while (id > 0) {
        bson_init(&cmd);
        BSON_APPEND_INT64(&cmd, "getMore", id);
        BSON_APPEND_UTF8(&cmd, "collection", coll);
        engine_run(eng, &cmd, &reply, "getMore");
        bson_destroy(&cmd);
        id = cursor_batch(&reply, "nextBatch", &got);
    }
    bson_destroy(&reply);
    return got;
}

static void meerkat_run(const plan_t *p, double secs[N_OPS])
{
    const dataset_t *ds = p->ds;
    char *dir = store_dir("meerkat", p->no_sync);
    mk_engine_opts_t opts = {.no_sync = p->no_sync, .map_size = p->map_size};
    mk_error_t err = {0};
    mk_engine_t *eng = mk_engine_open(dir, &opts, &err);
    if (!eng) die("mk_engine_open: %s", err.message);
    bson_t cmd, reply = BSON_INITIALIZER, arr, sub, inner;

    double t0 = now();
    meerkat_insert_all(eng, COLL, ds);
    secs[OP_INSERT] = now() - t0;

    t0 = now();
    for (size_t k = 0; k < ds->n; k++) {
        size_t i = ds->order[k];
        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "find", COLL);
        BSON_APPEND_DOCUMENT_BEGIN(&cmd, "filter", &sub);
        BSON_APPEND_OID(&sub, "_id", &ds->ids[i]);
        bson_append_document_end(&cmd, &sub);
        BSON_APPEND_INT32(&cmd, "limit", 1);
        BSON_APPEND_BOOL(&cmd, "singleBatch", true);
        engine_run(eng, &cmd, &reply, "find");
        size_t got = 0;
        if (cursor_batch(&reply, "firstBatch", &got) != 0 || got != 1)
            die("meerkat find by _id %s: %zu documents", ds->hex[i], got);
        bson_destroy(&cmd);
    }
    secs[OP_FIND] = now() - t0;

    t0 = now();
    for (int r = 0; r < SCAN_REPS; r++) {
        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "find", COLL);
        BSON_APPEND_DOCUMENT_BEGIN(&cmd, "filter", &sub);
        BSON_APPEND_UTF8(&sub, "profile.country", SCAN_VALUE);
        bson_append_document_end(&cmd, &sub);
        size_t got = meerkat_drain(eng, &cmd, COLL);
        bson_destroy(&cmd);
        if (got != ds->scan_matches)
            die("meerkat scan matched %zu documents, expected %zu", got, ds->scan_matches);
    }
    secs[OP_SCAN] = now() - t0;

    t0 = now();
    for (size_t k = 0; k < p->n_write; k++) {
        size_t i = ds->order[k];
        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "update", COLL);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "updates", &arr);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &sub);
        BSON_APPEND_DOCUMENT_BEGIN(&sub, "q", &inner);
        BSON_APPEND_OID(&inner, "_id", &ds->ids[i]);
        bson_append_document_end(&sub, &inner);
        bson_t u, set;
        BSON_APPEND_DOCUMENT_BEGIN(&sub, "u", &u);
        BSON_APPEND_DOCUMENT_BEGIN(&u, "$set", &set);
        BSON_APPEND_INT32(&set, "age", new_age(p, i));
        bson_append_document_end(&u, &set);
        bson_append_document_end(&sub, &u);
        bson_append_document_end(&arr, &sub);
        bson_append_array_end(&cmd, &arr);
        engine_run(eng, &cmd, &reply, "update");
        if (reply_int(&reply, "n") != 1 || reply_int(&reply, "nModified") != 1)
            die("meerkat update of %s: n = %" PRId64 ", nModified = %" PRId64, ds->hex[i],
                reply_int(&reply, "n"), reply_int(&reply, "nModified"));
        bson_destroy(&cmd);
    }
    secs[OP_UPDATE] = now() - t0;

    t0 = now();
    for (size_t k = 0; k < p->n_write; k++) {
        size_t i = ds->order[ds->n - 1 - k];
        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "delete", COLL);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "deletes", &arr);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &sub);
        BSON_APPEND_DOCUMENT_BEGIN(&sub, "q", &inner);
        BSON_APPEND_OID(&inner, "_id", &ds->ids[i]);
        bson_append_document_end(&sub, &inner);
        BSON_APPEND_INT32(&sub, "limit", 1);
        bson_append_document_end(&arr, &sub);
        bson_append_array_end(&cmd, &arr);
        engine_run(eng, &cmd, &reply, "delete");
        if (reply_int(&reply, "n") != 1)
            die("meerkat delete of %s: n = %" PRId64, ds->hex[i], reply_int(&reply, "n"));
        bson_destroy(&cmd);
    }
    secs[OP_DELETE] = now() - t0;

    /* The updates are visible and the deletes counted. */
    bson_init(&cmd);
    BSON_APPEND_UTF8(&cmd, "count", COLL);
    engine_run(eng, &cmd, &reply, "count");
    if (reply_int(&reply, "n") != (int64_t)(ds->n - p->n_write))
        die("meerkat count after deletes: %" PRId64 ", expected %zu", reply_int(&reply, "n"),
            ds->n - p->n_write);
    bson_destroy(&cmd);
    if (p->n_write > 0 && p->n_write < ds->n) {
        size_t i = ds->order[0];
        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "count", COLL);
        BSON_APPEND_DOCUMENT_BEGIN(&cmd, "query", &sub);
        BSON_APPEND_OID(&sub, "_id", &ds->ids[i]);
        BSON_APPEND_INT32(&sub, "age", new_age(p, i));
        bson_append_document_end(&cmd, &sub);
        engine_run(eng, &cmd, &reply, "count");
        if (reply_int(&reply, "n") != 1) die("meerkat: an updated document lost its update");
        bson_destroy(&cmd);
    }
    bson_destroy(&reply);
    mk_engine_close(eng);
    rm_tree(dir);
    free(dir);
}

/* ---- raw LMDB ---- */

#define MDB_CHECK(call)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) die("LMDB %s: %s", #call, mdb_strerror(rc_));                                \
    } while (0)

static void lmdb_run(const plan_t *p, double secs[N_OPS])
{
    const dataset_t *ds = p->ds;
    char *dir = store_dir("lmdb", p->no_sync);
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    MDB_CHECK(mdb_env_create(&env));
    MDB_CHECK(mdb_env_set_maxdbs(env, 4));
    MDB_CHECK(mdb_env_set_mapsize(env, p->map_size));
    MDB_CHECK(mdb_env_open(env, dir, MDB_NOTLS | (p->no_sync ? MDB_NOSYNC : 0), 0644));
    MDB_CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    MDB_CHECK(mdb_dbi_open(txn, "records", MDB_CREATE, &dbi));
    MDB_CHECK(mdb_txn_commit(txn));

    double t0 = now();
    for (size_t b = 0; b < ds->n; b += BATCH) {
        size_t end = b + BATCH < ds->n ? b + BATCH : ds->n;
        MDB_CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        for (size_t i = b; i < end; i++) {
            MDB_val k = {KEY_LEN, ds->keys[i]};
            MDB_val v = {ds->docs[i]->len, (void *)bson_get_data(ds->docs[i])};
            MDB_CHECK(mdb_put(txn, dbi, &k, &v, MDB_NOOVERWRITE));
        }
        MDB_CHECK(mdb_txn_commit(txn));
    }
    secs[OP_INSERT] = now() - t0;

    /* One read transaction per get, reset and renewed as the engine's pooled readers are; the
     * value is copied out, as the engine copies the document into its reply. */
    uint8_t *copy = xmalloc(64 * 1024);
    MDB_CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    mdb_txn_reset(txn);
    t0 = now();
    for (size_t k = 0; k < ds->n; k++) {
        size_t i = ds->order[k];
        MDB_CHECK(mdb_txn_renew(txn));
        MDB_val key = {KEY_LEN, ds->keys[i]}, v;
        int rc = mdb_get(txn, dbi, &key, &v);
        if (rc != 0) die("LMDB get %s: %s", ds->hex[i], mdb_strerror(rc));
        if (v.mv_size > 64 * 1024) die("LMDB get: unexpected value size");
        memcpy(copy, v.mv_data, v.mv_size);
        mdb_txn_reset(txn);
    }
    secs[OP_FIND] = now() - t0;

    /* Full scan: an LMDB cursor and libbson's lookup of the dotted field, copying matches. */
    t0 = now();
    for (int r = 0; r < SCAN_REPS; r++) {
        MDB_cursor *cur;
        MDB_val k, v;
        size_t got = 0;
        MDB_CHECK(mdb_txn_renew(txn));
        MDB_CHECK(mdb_cursor_open(txn, dbi, &cur));
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            bson_iter_t it, f;
            if (!bson_iter_init_from_data(&it, v.mv_data, v.mv_size)) die("LMDB scan: bad BSON");
            if (bson_iter_find_descendant(&it, "profile.country", &f) && BSON_ITER_HOLDS_UTF8(&f) &&
                strcmp(bson_iter_utf8(&f, NULL), SCAN_VALUE) == 0) {
                memcpy(copy, v.mv_data, v.mv_size);
                got++;
            }
        }
        mdb_cursor_close(cur);
        mdb_txn_reset(txn);
        if (got != ds->scan_matches)
            die("LMDB scan matched %zu documents, expected %zu", got, ds->scan_matches);
    }
    secs[OP_SCAN] = now() - t0;
    mdb_txn_abort(txn);

    /* put-overwrite of the same bytes with the new age, one write transaction each. */
    t0 = now();
    for (size_t k = 0; k < p->n_write; k++) {
        size_t i = ds->order[k];
        const bson_t *d = ds->docs[i];
        memcpy(copy, bson_get_data(d), d->len);
        int32_t age = new_age(p, i);
        uint32_t le = BSON_UINT32_TO_LE((uint32_t)age);
        memcpy(copy + ds->age_off[i], &le, 4);
        MDB_CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        MDB_val key = {KEY_LEN, ds->keys[i]}, v = {d->len, copy};
        MDB_CHECK(mdb_put(txn, dbi, &key, &v, 0));
        MDB_CHECK(mdb_txn_commit(txn));
    }
    secs[OP_UPDATE] = now() - t0;

    t0 = now();
    for (size_t k = 0; k < p->n_write; k++) {
        size_t i = ds->order[ds->n - 1 - k];
        MDB_CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        MDB_val key = {KEY_LEN, ds->keys[i]};
        MDB_CHECK(mdb_del(txn, dbi, &key, NULL));
        MDB_CHECK(mdb_txn_commit(txn));
    }
    secs[OP_DELETE] = now() - t0;

    MDB_stat st;
    MDB_CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    MDB_CHECK(mdb_stat(txn, dbi, &st));
    mdb_txn_abort(txn);
    if (st.ms_entries != ds->n - p->n_write)
        die("LMDB entries after deletes: %zu, expected %zu", (size_t)st.ms_entries,
            ds->n - p->n_write);
    free(copy);
    mdb_env_close(env);
    rm_tree(dir);
    free(dir);
}

/* ---- SQLite ---- */

#ifdef MK_HAVE_SQLITE
static void sql_check(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        die("SQLite %s: %s", what, sqlite3_errmsg(db));
}

static void sql_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "SQLite: %s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        die("SQLite statement failed");
    }
}

static sqlite3_stmt *sql_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    sql_check(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL), sql);
    return st;
}

/* Inserts all the documents with the prepared INSERT `ins`, one transaction per BATCH. */
static void sqlite_insert_all(sqlite3 *db, sqlite3_stmt *ins, const dataset_t *ds)
{
    for (size_t b = 0; b < ds->n; b += BATCH) {
        size_t end = b + BATCH < ds->n ? b + BATCH : ds->n;
        sql_exec(db, "BEGIN");
        for (size_t i = b; i < end; i++) {
            sqlite3_bind_text(ins, 1, ds->hex[i], 24, SQLITE_STATIC);
            sqlite3_bind_text(ins, 2, ds->json[i], -1, SQLITE_STATIC);
            sql_check(db, sqlite3_step(ins), "insert");
            sqlite3_reset(ins);
        }
        sql_exec(db, "COMMIT");
    }
}

static void sqlite_run(const plan_t *p, double secs[N_OPS])
{
    const dataset_t *ds = p->ds;
    char *dir = store_dir("sqlite", p->no_sync), *path = NULL;
    if (asprintf(&path, "%s/bench.db", dir) < 0) die("out of memory");
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) die("sqlite3_open %s", path);
    sql_exec(db, "PRAGMA journal_mode=WAL");
    sql_exec(db, p->no_sync ? "PRAGMA synchronous=OFF" : "PRAGMA synchronous=FULL");
    sql_exec(db, "CREATE TABLE users (id TEXT PRIMARY KEY, doc TEXT)");
    sqlite3_stmt *ins = sql_prepare(db, "INSERT INTO users (id, doc) VALUES (?, ?)");
    sqlite3_stmt *get = sql_prepare(db, "SELECT doc FROM users WHERE id = ?");
    sqlite3_stmt *scan =
        sql_prepare(db, "SELECT doc FROM users WHERE json_extract(doc, '$.profile.country') = ?");
    sqlite3_stmt *upd = sql_prepare(db, "UPDATE users SET doc = json_set(doc, '$.age', ?) "
                                        "WHERE id = ?");
    sqlite3_stmt *del = sql_prepare(db, "DELETE FROM users WHERE id = ?");
    sqlite3_stmt *cnt = sql_prepare(db, "SELECT count(*) FROM users");
    char *copy = xmalloc(64 * 1024);

    double t0 = now();
    sqlite_insert_all(db, ins, ds);
    secs[OP_INSERT] = now() - t0;

    t0 = now();
    for (size_t k = 0; k < ds->n; k++) {
        size_t i = ds->order[k];
        sqlite3_bind_text(get, 1, ds->hex[i], 24, SQLITE_STATIC);
        if (sqlite3_step(get) != SQLITE_ROW) die("SQLite find %s: no row", ds->hex[i]);
        int len = sqlite3_column_bytes(get, 0);
        if (len > 64 * 1024) die("SQLite find: unexpected size");
        memcpy(copy, sqlite3_column_text(get, 0), (size_t)len);
        if (sqlite3_step(get) != SQLITE_DONE) die("SQLite find %s: several rows", ds->hex[i]);
        sqlite3_reset(get);
    }
    secs[OP_FIND] = now() - t0;

    t0 = now();
    for (int r = 0; r < SCAN_REPS; r++) {
        size_t got = 0;
        int rc;
        sqlite3_bind_text(scan, 1, SCAN_VALUE, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(scan)) == SQLITE_ROW) {
            int len = sqlite3_column_bytes(scan, 0);
            if (len > 64 * 1024) die("SQLite scan: unexpected size");
            memcpy(copy, sqlite3_column_text(scan, 0), (size_t)len);
            got++;
        }
        sql_check(db, rc, "scan");
        sqlite3_reset(scan);
        if (got != ds->scan_matches)
            die("SQLite scan matched %zu rows, expected %zu", got, ds->scan_matches);
    }
    secs[OP_SCAN] = now() - t0;

    t0 = now();
    for (size_t k = 0; k < p->n_write; k++) {
        size_t i = ds->order[k];
        sqlite3_bind_int(upd, 1, new_age(p, i));
        sqlite3_bind_text(upd, 2, ds->hex[i], 24, SQLITE_STATIC);
        sql_check(db, sqlite3_step(upd), "update");
        sqlite3_reset(upd);
        if (sqlite3_changes(db) != 1) die("SQLite update %s: no row changed", ds->hex[i]);
    }
    secs[OP_UPDATE] = now() - t0;

    t0 = now();
    for (size_t k = 0; k < p->n_write; k++) {
        size_t i = ds->order[ds->n - 1 - k];
        sqlite3_bind_text(del, 1, ds->hex[i], 24, SQLITE_STATIC);
        sql_check(db, sqlite3_step(del), "delete");
        sqlite3_reset(del);
        if (sqlite3_changes(db) != 1) die("SQLite delete %s: no row deleted", ds->hex[i]);
    }
    secs[OP_DELETE] = now() - t0;

    if (sqlite3_step(cnt) != SQLITE_ROW ||
        sqlite3_column_int64(cnt, 0) != (sqlite3_int64)(ds->n - p->n_write))
        die("SQLite count after deletes is wrong");
    sqlite3_reset(cnt);

    sqlite3_stmt *all[] = {ins, get, scan, upd, del, cnt};
    for (size_t i = 0; i < COUNT_OF(all); i++) sqlite3_finalize(all[i]);
    sqlite3_close(db);
    free(copy);
    rm_tree(dir);
    free(dir);
    free(path);
}
#endif

/* ---- secondary indexes ----
 * One no-sync store each: collections users0, users1 and users3 receive the documents with 0, 1
 * and 3 secondary indexes declared beforehand (the insert cost of an index); then users0, which
 * has none, builds the three (the build cost) and serves the indexed queries and, through
 * hint { $natural: 1 }, the same queries as collection scans. */

#define N_INDEXES     3
#define RANGE_QUERIES 150 /* age ranges of two years: about n / 30 documents each */
#define RANGE_SCANS   5   /* the same ranges as collection scans */

static const char *const index_colls[] = {"users0", "users1", "users3"};
static const int index_colls_n[] = {0, 1, 3}; /* secondary indexes of each */
#define N_INDEX_COLLS 3

/* The secondary indexes, in the order they are added: the relaxed JSON of the createIndexes
 * spec and the equivalent SQLite expression index (its name is the table's name + suffix). */
static const struct {
    const char *name, *spec, *sql_suffix, *sql;
} bench_indexes[N_INDEXES] = {
    {"email_1", "{ key: { email: 1 }, name: 'email_1', unique: true }", "_email",
     "CREATE UNIQUE INDEX %s_email ON %s (json_extract(doc, '$.email'))"},
    {"age_1", "{ key: { age: 1 }, name: 'age_1' }", "_age",
     "CREATE INDEX %s_age ON %s (json_extract(doc, '$.age'))"},
    {"role_1_createdAt_-1", "{ key: { role: 1, createdAt: -1 }, name: 'role_1_createdAt_-1' }",
     "_role_created",
     "CREATE INDEX %s_role_created ON %s (json_extract(doc, '$.role'), "
     "json_extract(doc, '$.createdAt.\"$date\"') DESC)"},
};

typedef struct ix_plan {
    const dataset_t *ds;
    size_t map_size;
    size_t scan_lookups; /* email lookups measured as collection scans */
} ix_plan_t;

typedef struct ix_secs {
    double insert[N_INDEX_COLLS]; /* inserting every document into index_colls[c] */
    double build[N_INDEXES];      /* adding bench_indexes[k] to the full users0 */
    double find, find_scan;       /* n email lookups; scan_lookups of them as scans */
    double range, range_scan;     /* RANGE_QUERIES age ranges; RANGE_SCANS of them as scans */
} ix_secs_t;

/* The lower bound of age range q and the number of documents in [a, a + 2). */
static int32_t range_low(size_t q)
{
    return AGE_MIN + (int32_t)(q % (AGE_SPAN - 1));
}
static size_t range_expected(const dataset_t *ds, size_t q)
{
    int32_t a = range_low(q) - AGE_MIN;
    return ds->age_count[a] + ds->age_count[a + 1];
}
static size_t range_docs(const dataset_t *ds, size_t queries)
{
    size_t total = 0;
    for (size_t q = 0; q < queries; q++) total += range_expected(ds, q);
    return total;
}

/* Runs a command written as relaxed JSON with bound arguments (setup only: the timed loops
 * build their commands with libbson, as a driver does). */
static void engine_json(mk_engine_t *eng, bson_t *reply, const char *what, const char *text,
                        const mk_arg_t *args)
{
    mk_error_t err = {0};
    bson_t *cmd = mk_json_parse(text, args, &err);
    if (!cmd) die("meerkat %s: bad command text: %s", what, err.message);
    engine_run(eng, cmd, reply, what);
    bson_destroy(cmd);
}

static void meerkat_create_index(mk_engine_t *eng, const char *coll, int k)
{
    char text[256];
    snprintf(text, sizeof text, "{ createIndexes: ?, indexes: [%s] }", bench_indexes[k].spec);
    bson_t reply = BSON_INITIALIZER;
    engine_json(eng, &reply, "createIndexes", text, MK_ARGS(MK_STR(coll)));
    if (reply_int(&reply, "numIndexesAfter") != reply_int(&reply, "numIndexesBefore") + 1)
        die("meerkat createIndexes %s on %s did not add one index", bench_indexes[k].name, coll);
    bson_destroy(&reply);
}

/* find { email } as a driver's findOne sends it, optionally with hint { $natural: 1 }. */
static void email_find_cmd(bson_t *cmd, const char *coll, const char *email, bool scan)
{
    bson_t sub;
    bson_init(cmd);
    BSON_APPEND_UTF8(cmd, "find", coll);
    BSON_APPEND_DOCUMENT_BEGIN(cmd, "filter", &sub);
    BSON_APPEND_UTF8(&sub, "email", email);
    bson_append_document_end(cmd, &sub);
    BSON_APPEND_INT32(cmd, "limit", 1);
    BSON_APPEND_BOOL(cmd, "singleBatch", true);
    if (scan) {
        BSON_APPEND_DOCUMENT_BEGIN(cmd, "hint", &sub);
        BSON_APPEND_INT32(&sub, "$natural", 1);
        bson_append_document_end(cmd, &sub);
    }
}

/* find { age: { $gte: a, $lt: a + 2 } }, optionally with hint { $natural: 1 }. */
static void range_find_cmd(bson_t *cmd, const char *coll, int32_t a, bool scan)
{
    bson_t sub, range;
    bson_init(cmd);
    BSON_APPEND_UTF8(cmd, "find", coll);
    BSON_APPEND_DOCUMENT_BEGIN(cmd, "filter", &sub);
    BSON_APPEND_DOCUMENT_BEGIN(&sub, "age", &range);
    BSON_APPEND_INT32(&range, "$gte", a);
    BSON_APPEND_INT32(&range, "$lt", a + 2);
    bson_append_document_end(&sub, &range);
    bson_append_document_end(cmd, &sub);
    if (scan) {
        BSON_APPEND_DOCUMENT_BEGIN(cmd, "hint", &sub);
        BSON_APPEND_INT32(&sub, "$natural", 1);
        bson_append_document_end(cmd, &sub);
    }
}

/* Checks that a findOne reply holds exactly the document with _id `id`. */
static void check_found(const bson_t *reply, const bson_oid_t *id, const char *email)
{
    size_t got = 0;
    if (cursor_batch(reply, "firstBatch", &got) != 0 || got != 1)
        die("meerkat find by email %s: %zu documents", email, got);
    bson_iter_t it, f;
    if (!bson_iter_init(&it, reply) ||
        !bson_iter_find_descendant(&it, "cursor.firstBatch.0._id", &f) ||
        !BSON_ITER_HOLDS_OID(&f) || !bson_oid_equal(bson_iter_oid(&f), id))
        die("meerkat find by email %s returned another document", email);
}

/* What explain says of a find: the stages of the winning plan and the execution figures. */
typedef struct explained {
    bool ixscan, collscan, sort;
    char index[64];
    int64_t keys, docs, returned;
} explained_t;

static void explain_find(mk_engine_t *eng, const bson_t *find, explained_t *x)
{
    bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&cmd, "explain", find);
    BSON_APPEND_UTF8(&cmd, "verbosity", "executionStats");
    engine_run(eng, &cmd, &reply, "explain");
    memset(x, 0, sizeof *x);
    bson_iter_t it, stage;
    if (!bson_iter_init(&it, &reply) ||
        !bson_iter_find_descendant(&it, "queryPlanner.winningPlan", &stage) ||
        !BSON_ITER_HOLDS_DOCUMENT(&stage))
        die("meerkat explain: no queryPlanner.winningPlan");
    for (int depth = 0; depth < 16; depth++) { /* down the inputStage chain */
        bson_iter_t f;
        if (!bson_iter_recurse(&stage, &f)) die("meerkat explain: bad stage");
        bool more = false;
        while (bson_iter_next(&f)) {
            const char *k = bson_iter_key(&f);
            if (strcmp(k, "stage") == 0 && BSON_ITER_HOLDS_UTF8(&f)) {
                const char *s = bson_iter_utf8(&f, NULL);
                x->ixscan |= strcmp(s, "IXSCAN") == 0;
                x->collscan |= strcmp(s, "COLLSCAN") == 0;
                x->sort |= strcmp(s, "SORT") == 0;
            } else if (strcmp(k, "indexName") == 0 && BSON_ITER_HOLDS_UTF8(&f)) {
                snprintf(x->index, sizeof x->index, "%s", bson_iter_utf8(&f, NULL));
            } else if (strcmp(k, "inputStage") == 0 && BSON_ITER_HOLDS_DOCUMENT(&f)) {
                stage = f;
                more = true;
            }
        }
        if (!more) break;
    }
    x->keys = reply_int(&reply, "executionStats.totalKeysExamined");
    x->docs = reply_int(&reply, "executionStats.totalDocsExamined");
    x->returned = reply_int(&reply, "executionStats.nReturned");
    bson_destroy(&cmd);
    bson_destroy(&reply);
}

static void expect_ixscan(const explained_t *x, const char *what, const char *index,
                          int64_t returned)
{
    if (!x->ixscan || x->collscan || strcmp(x->index, index) != 0)
        die("meerkat explain %s: expected IXSCAN on %s, got %s%s%s", what, index,
            x->ixscan ? "IXSCAN " : "", x->collscan ? "COLLSCAN " : "", x->index);
    /* an index scan may look at the one key past its last match, not more */
    if (x->returned != returned || x->docs != returned || x->keys < returned ||
        x->keys > returned + 1)
        die("meerkat explain %s: nReturned %" PRId64 ", totalDocsExamined %" PRId64
            ", totalKeysExamined %" PRId64 ", expected %" PRId64 " of each",
            what, x->returned, x->docs, x->keys, returned);
}

static void expect_collscan(const explained_t *x, const char *what, int64_t returned,
                            int64_t min_docs)
{
    if (!x->collscan || x->ixscan) die("meerkat explain %s: expected COLLSCAN", what);
    if (x->returned != returned || x->keys != 0 || x->docs < min_docs)
        die("meerkat explain %s: nReturned %" PRId64 ", totalDocsExamined %" PRId64
            ", totalKeysExamined %" PRId64,
            what, x->returned, x->docs, x->keys);
}

/* The plans the timed queries get, checked once: the benchmark must measure what it says. */
static void meerkat_check_plans(mk_engine_t *eng, const dataset_t *ds)
{
    explained_t x;
    bson_t cmd;
    size_t i = ds->order[0];
    email_find_cmd(&cmd, "users0", ds->email[i], false);
    explain_find(eng, &cmd, &x);
    bson_destroy(&cmd);
    expect_ixscan(&x, "find { email }", "email_1", 1);
    email_find_cmd(&cmd, "users0", ds->email[i], true);
    explain_find(eng, &cmd, &x);
    bson_destroy(&cmd);
    expect_collscan(&x, "find { email } hint { $natural: 1 }", 1, 1);

    range_find_cmd(&cmd, "users0", range_low(0), false);
    explain_find(eng, &cmd, &x);
    bson_destroy(&cmd);
    expect_ixscan(&x, "find { age range }", "age_1", (int64_t)range_expected(ds, 0));
    range_find_cmd(&cmd, "users0", range_low(0), true);
    explain_find(eng, &cmd, &x);
    bson_destroy(&cmd);
    expect_collscan(&x, "find { age range } hint { $natural: 1 }", (int64_t)range_expected(ds, 0),
                    (int64_t)ds->n);

    /* the compound index serves an equality on role and the sort on its key pattern (the
     * planner does not yet drop a blocking sort on createdAt alone after an equality on role) */
    int64_t admins = 0;
    for (size_t d = 0; d < ds->n; d++) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, ds->docs[d], "role") &&
            strcmp(bson_iter_utf8(&it, NULL), "admin") == 0)
            admins++;
    }
    mk_error_t err = {0};
    bson_t *find = mk_bson(&err, "{ find: 'users0', filter: { role: 'admin' }, "
                                 "sort: { role: 1, createdAt: -1 } }");
    if (!find) die("bad command text: %s", err.message);
    explain_find(eng, find, &x);
    bson_destroy(find);
    expect_ixscan(&x, "find { role } sort { role: 1, createdAt: -1 }", "role_1_createdAt_-1",
                  admins);
    if (x.sort) die("meerkat explain: the sort on role, createdAt was not served by the index");
}

/* The index maintenance of the insert phase, checked by the engine's own validate. */
static void meerkat_check_valid(mk_engine_t *eng, const char *coll, const dataset_t *ds)
{
    bson_t reply = BSON_INITIALIZER;
    engine_json(eng, &reply, "validate", "{ validate: ?, full: true }", MK_ARGS(MK_STR(coll)));
    bson_iter_t it;
    if (!bson_iter_init_find(&it, &reply, "valid") || !bson_iter_as_bool(&it))
        die("meerkat validate %s: not valid", coll);
    if (reply_int(&reply, "nrecords") != (int64_t)ds->n)
        die("meerkat validate %s: nrecords %" PRId64 ", expected %zu", coll,
            reply_int(&reply, "nrecords"), ds->n);
    bson_destroy(&reply);
}

static void meerkat_index_run(const ix_plan_t *p, ix_secs_t *secs)
{
    const dataset_t *ds = p->ds;
    char *dir = store_dir("meerkat-indexes", true);
    mk_engine_opts_t opts = {.no_sync = true, .map_size = p->map_size};
    mk_error_t err = {0};
    mk_engine_t *eng = mk_engine_open(dir, &opts, &err);
    if (!eng) die("mk_engine_open: %s", err.message);
    bson_t cmd, reply = BSON_INITIALIZER;

    for (int c = 0; c < N_INDEX_COLLS; c++) {
        for (int k = 0; k < index_colls_n[c]; k++) meerkat_create_index(eng, index_colls[c], k);
        double t0 = now();
        meerkat_insert_all(eng, index_colls[c], ds);
        secs->insert[c] = now() - t0;
    }
    meerkat_check_valid(eng, index_colls[N_INDEX_COLLS - 1], ds);

    for (int k = 0; k < N_INDEXES; k++) {
        double t0 = now();
        meerkat_create_index(eng, "users0", k);
        secs->build[k] = now() - t0;
    }
    meerkat_check_valid(eng, "users0", ds);
    meerkat_check_plans(eng, ds);

    double t0 = now();
    for (size_t k = 0; k < ds->n; k++) {
        size_t i = ds->order[k];
        email_find_cmd(&cmd, "users0", ds->email[i], false);
        engine_run(eng, &cmd, &reply, "find by email");
        check_found(&reply, &ds->ids[i], ds->email[i]);
        bson_destroy(&cmd);
    }
    secs->find = now() - t0;

    t0 = now();
    for (size_t k = 0; k < p->scan_lookups; k++) {
        size_t i = ds->order[k];
        email_find_cmd(&cmd, "users0", ds->email[i], true);
        engine_run(eng, &cmd, &reply, "find by email, collection scan");
        check_found(&reply, &ds->ids[i], ds->email[i]);
        bson_destroy(&cmd);
    }
    secs->find_scan = now() - t0;

    for (int scan = 0; scan < 2; scan++) {
        size_t queries = scan ? RANGE_SCANS : RANGE_QUERIES;
        t0 = now();
        for (size_t q = 0; q < queries; q++) {
            range_find_cmd(&cmd, "users0", range_low(q), scan);
            size_t got = meerkat_drain(eng, &cmd, "users0");
            bson_destroy(&cmd);
            if (got != range_expected(ds, q))
                die("meerkat age range [%d, %d)%s: %zu documents, expected %zu", range_low(q),
                    range_low(q) + 2, scan ? " as a scan" : "", got, range_expected(ds, q));
        }
        *(scan ? &secs->range_scan : &secs->range) = now() - t0;
    }
    bson_destroy(&reply);
    mk_engine_close(eng);
    rm_tree(dir);
    free(dir);
}

#ifdef MK_HAVE_SQLITE
static void sqlite_create_index(sqlite3 *db, const char *table, int k)
{
    char sql[512];
    snprintf(sql, sizeof sql, bench_indexes[k].sql, table, table);
    sql_exec(db, sql);
}

/* SQLite must use the expression index for the statement, or the comparison means nothing. */
static void sqlite_expect_index(sqlite3 *db, const char *select, const char *index)
{
    char *sql = NULL;
    if (asprintf(&sql, "EXPLAIN QUERY PLAN %s", select) < 0) die("out of memory");
    sqlite3_stmt *st = sql_prepare(db, sql);
    bool used = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(st, 3);
        used |= detail && strstr(detail, index) != NULL;
    }
    sqlite3_finalize(st);
    free(sql);
    if (!used) die("SQLite does not use %s for: %s", index, select);
}

static void sqlite_index_run(const ix_plan_t *p, ix_secs_t *secs)
{
    const dataset_t *ds = p->ds;
    char *dir = store_dir("sqlite-indexes", true), *path = NULL;
    if (asprintf(&path, "%s/bench.db", dir) < 0) die("out of memory");
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) die("sqlite3_open %s", path);
    sql_exec(db, "PRAGMA journal_mode=WAL");
    sql_exec(db, "PRAGMA synchronous=OFF");

    for (int c = 0; c < N_INDEX_COLLS; c++) {
        char sql[160];
        snprintf(sql, sizeof sql, "CREATE TABLE %s (id TEXT PRIMARY KEY, doc TEXT)",
                 index_colls[c]);
        sql_exec(db, sql);
        for (int k = 0; k < index_colls_n[c]; k++) sqlite_create_index(db, index_colls[c], k);
        snprintf(sql, sizeof sql, "INSERT INTO %s (id, doc) VALUES (?, ?)", index_colls[c]);
        sqlite3_stmt *ins = sql_prepare(db, sql);
        double t0 = now();
        sqlite_insert_all(db, ins, ds);
        secs->insert[c] = now() - t0;
        sqlite3_finalize(ins);
    }
    for (int k = 0; k < N_INDEXES; k++) {
        double t0 = now();
        sqlite_create_index(db, "users0", k);
        secs->build[k] = now() - t0;
    }

    const char *by_email = "SELECT doc FROM users0 WHERE json_extract(doc, '$.email') = ?";
    const char *by_age = "SELECT doc FROM users0 WHERE json_extract(doc, '$.age') >= ? AND "
                         "json_extract(doc, '$.age') < ?";
    sqlite_expect_index(db, by_email, "users0_email");
    sqlite_expect_index(db, by_age, "users0_age");
    sqlite3_stmt *get = sql_prepare(db, by_email), *range = sql_prepare(db, by_age);
    char *copy = xmalloc(64 * 1024);

    double t0 = now();
    for (size_t k = 0; k < ds->n; k++) {
        size_t i = ds->order[k];
        sqlite3_bind_text(get, 1, ds->email[i], -1, SQLITE_STATIC);
        if (sqlite3_step(get) != SQLITE_ROW) die("SQLite find by email %s: no row", ds->email[i]);
        int len = sqlite3_column_bytes(get, 0);
        if (len > 64 * 1024) die("SQLite find: unexpected size");
        memcpy(copy, sqlite3_column_text(get, 0), (size_t)len);
        if (sqlite3_step(get) != SQLITE_DONE) die("SQLite find %s: several rows", ds->email[i]);
        sqlite3_reset(get);
    }
    secs->find = now() - t0;

    t0 = now();
    for (size_t q = 0; q < RANGE_QUERIES; q++) {
        size_t got = 0;
        int rc;
        sqlite3_bind_int(range, 1, range_low(q));
        sqlite3_bind_int(range, 2, range_low(q) + 2);
        while ((rc = sqlite3_step(range)) == SQLITE_ROW) {
            int len = sqlite3_column_bytes(range, 0);
            if (len > 64 * 1024) die("SQLite range: unexpected size");
            memcpy(copy, sqlite3_column_text(range, 0), (size_t)len);
            got++;
        }
        sql_check(db, rc, "range");
        sqlite3_reset(range);
        if (got != range_expected(ds, q))
            die("SQLite age range [%d, %d): %zu rows, expected %zu", range_low(q), range_low(q) + 2,
                got, range_expected(ds, q));
    }
    secs->range = now() - t0;

    sqlite3_finalize(get);
    sqlite3_finalize(range);
    sqlite3_close(db);
    free(copy);
    rm_tree(dir);
    free(dir);
    free(path);
}
#endif

/* ---- transactions ----
 * Transfers between ACCOUNTS accounts: each moves 1 from one balance to another with two
 * updates ($inc -1, $inc +1), committed together in a transaction; the same pairs of updates
 * then run again without a transaction, as two commits. */

#define ACCOUNTS      1000
#define START_BALANCE 1000000

typedef struct transfers {
    size_t n;
    uint32_t (*pair)[2]; /* from, to */
} transfers_t;

static void transfers_init(transfers_t *t, size_t n)
{
    t->n = n;
    t->pair = xmalloc(n * sizeof *t->pair);
    for (size_t k = 0; k < n; k++) {
        uint32_t from = rng_below(ACCOUNTS);
        t->pair[k][0] = from;
        t->pair[k][1] = (from + 1 + rng_below(ACCOUNTS - 1)) % ACCOUNTS;
    }
}

/* The balances after the first n transfers. */
static int64_t *expected_balances(const transfers_t *t, size_t n)
{
    int64_t *b = xmalloc(ACCOUNTS * sizeof *b);
    for (size_t a = 0; a < ACCOUNTS; a++) b[a] = START_BALANCE;
    for (size_t k = 0; k < n; k++) b[t->pair[k][0]]--, b[t->pair[k][1]]++;
    return b;
}

static void inc_cmd(bson_t *cmd, const char *coll, uint32_t id, int32_t delta)
{
    bson_t arr, stmt, q, u, inc;
    bson_init(cmd);
    BSON_APPEND_UTF8(cmd, "update", coll);
    BSON_APPEND_ARRAY_BEGIN(cmd, "updates", &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &stmt);
    BSON_APPEND_DOCUMENT_BEGIN(&stmt, "q", &q);
    BSON_APPEND_INT32(&q, "_id", (int32_t)id);
    bson_append_document_end(&stmt, &q);
    BSON_APPEND_DOCUMENT_BEGIN(&stmt, "u", &u);
    BSON_APPEND_DOCUMENT_BEGIN(&u, "$inc", &inc);
    BSON_APPEND_INT32(&inc, "balance", delta);
    bson_append_document_end(&u, &inc);
    bson_append_document_end(&stmt, &u);
    bson_append_document_end(&arr, &stmt);
    bson_append_array_end(cmd, &arr);
}

static void check_one_modified(const bson_t *reply, const char *what, uint32_t id)
{
    if (reply_int(reply, "n") != 1 || reply_int(reply, "nModified") != 1)
        die("meerkat %s of account %u: n = %" PRId64 ", nModified = %" PRId64, what, id,
            reply_int(reply, "n"), reply_int(reply, "nModified"));
}

static void meerkat_verify_accounts(mk_engine_t *eng, const char *coll, const int64_t *expected)
{
    bson_t reply = BSON_INITIALIZER;
    engine_json(eng, &reply, "find accounts",
                "{ find: ?, filter: {}, batchSize: ?, singleBatch: true }",
                MK_ARGS(MK_STR(coll), MK_I32(ACCOUNTS + 1)));
    bson_iter_t it, docs, d;
    size_t seen = 0;
    if (!bson_iter_init(&it, &reply) ||
        !bson_iter_find_descendant(&it, "cursor.firstBatch", &docs) ||
        !bson_iter_recurse(&docs, &d))
        die("meerkat find accounts: no firstBatch");
    while (bson_iter_next(&d)) {
        bson_iter_t id, bal;
        if (!bson_iter_recurse(&d, &id) || !bson_iter_find(&id, "_id") ||
            !BSON_ITER_HOLDS_INT32(&id) || !bson_iter_recurse(&d, &bal) ||
            !bson_iter_find(&bal, "balance"))
            die("meerkat %s: an account without an int _id and a balance", coll);
        int32_t a = bson_iter_int32(&id);
        if (a < 0 || a >= ACCOUNTS || bson_iter_as_int64(&bal) != expected[a])
            die("meerkat %s: account %d has balance %" PRId64, coll, a, bson_iter_as_int64(&bal));
        seen++;
    }
    if (seen != ACCOUNTS) die("meerkat %s: %zu accounts, expected %d", coll, seen, ACCOUNTS);
    bson_destroy(&reply);
}

/* secs[0]: the transfers as transactions; secs[1]: the same updates without one. */
static void meerkat_txn_run(const transfers_t *t, size_t n, bool no_sync, double secs[2])
{
    static const char *const colls[2] = {"accounts_txn", "accounts_plain"};
    char *dir = store_dir("meerkat-txn", no_sync);
    mk_engine_opts_t opts = {.no_sync = no_sync};
    mk_error_t err = {0};
    mk_engine_t *eng = mk_engine_open(dir, &opts, &err);
    if (!eng) die("mk_engine_open: %s", err.message);
    bson_t cmd, reply = BSON_INITIALIZER, arr, doc;
    for (int c = 0; c < 2; c++) {
        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "insert", colls[c]);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "documents", &arr);
        for (uint32_t a = 0; a < ACCOUNTS; a++) {
            char kb[16];
            const char *key;
            size_t kl = bson_uint32_to_string(a, &key, kb, sizeof kb);
            bson_append_document_begin(&arr, key, (int)kl, &doc);
            BSON_APPEND_INT32(&doc, "_id", (int32_t)a);
            BSON_APPEND_INT64(&doc, "balance", START_BALANCE);
            bson_append_document_end(&arr, &doc);
        }
        bson_append_array_end(&cmd, &arr);
        engine_run(eng, &cmd, &reply, "insert accounts");
        bson_destroy(&cmd);
    }

    mk_session_t *s = mk_session_start(eng, &err);
    if (!s) die("mk_session_start: %s", err.message);
    double t0 = now();
    for (size_t k = 0; k < n; k++) {
        if (mk_session_start_transaction(s, &err) != MK_OK)
            die("mk_session_start_transaction: %s", err.message);
        for (int side = 0; side < 2; side++) {
            uint32_t id = t->pair[k][side];
            inc_cmd(&cmd, colls[0], id, side ? 1 : -1);
            bson_reinit(&reply);
            if (mk_session_command(s, "bench", &cmd, &reply, &err) != MK_OK)
                die("meerkat update in a transaction: %s (%s)", err.message, err.kind);
            check_one_modified(&reply, "update in a transaction", id);
            bson_destroy(&cmd);
        }
        if (mk_session_commit_transaction(s, &err) != MK_OK)
            die("mk_session_commit_transaction: %s (%s)", err.message, err.kind);
    }
    secs[0] = now() - t0;
    mk_session_end(s);

    t0 = now();
    for (size_t k = 0; k < n; k++) {
        for (int side = 0; side < 2; side++) {
            uint32_t id = t->pair[k][side];
            inc_cmd(&cmd, colls[1], id, side ? 1 : -1);
            engine_run(eng, &cmd, &reply, "update");
            check_one_modified(&reply, "update", id);
            bson_destroy(&cmd);
        }
    }
    secs[1] = now() - t0;

    int64_t *expected = expected_balances(t, n);
    for (int c = 0; c < 2; c++) meerkat_verify_accounts(eng, colls[c], expected);
    free(expected);
    bson_destroy(&reply);
    mk_engine_close(eng);
    rm_tree(dir);
    free(dir);
}

#ifdef MK_HAVE_SQLITE
/* BEGIN; UPDATE; UPDATE; COMMIT with prepared statements, on the same JSON documents. */
static double sqlite_txn_run(const transfers_t *t, size_t n, bool no_sync)
{
    char *dir = store_dir("sqlite-txn", no_sync), *path = NULL;
    if (asprintf(&path, "%s/bench.db", dir) < 0) die("out of memory");
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) die("sqlite3_open %s", path);
    sql_exec(db, "PRAGMA journal_mode=WAL");
    sql_exec(db, no_sync ? "PRAGMA synchronous=OFF" : "PRAGMA synchronous=FULL");
    sql_exec(db, "CREATE TABLE accounts (id INTEGER PRIMARY KEY, doc TEXT)");
    sql_exec(db, "BEGIN");
    sqlite3_stmt *ins = sql_prepare(db, "INSERT INTO accounts (id, doc) VALUES (?, ?)");
    for (int a = 0; a < ACCOUNTS; a++) {
        char json[64];
        snprintf(json, sizeof json, "{\"_id\":%d,\"balance\":%d}", a, START_BALANCE);
        sqlite3_bind_int(ins, 1, a);
        sqlite3_bind_text(ins, 2, json, -1, SQLITE_TRANSIENT);
        sql_check(db, sqlite3_step(ins), "insert account");
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    sql_exec(db, "COMMIT");

    sqlite3_stmt *begin = sql_prepare(db, "BEGIN"), *commit = sql_prepare(db, "COMMIT");
    sqlite3_stmt *upd = sql_prepare(db, "UPDATE accounts SET doc = json_set(doc, '$.balance', "
                                        "json_extract(doc, '$.balance') + ?) WHERE id = ?");
    double t0 = now();
    for (size_t k = 0; k < n; k++) {
        sql_check(db, sqlite3_step(begin), "BEGIN");
        sqlite3_reset(begin);
        for (int side = 0; side < 2; side++) {
            sqlite3_bind_int(upd, 1, side ? 1 : -1);
            sqlite3_bind_int(upd, 2, (int)t->pair[k][side]);
            sql_check(db, sqlite3_step(upd), "update");
            sqlite3_reset(upd);
            if (sqlite3_changes(db) != 1)
                die("SQLite update of account %u: no row", t->pair[k][side]);
        }
        sql_check(db, sqlite3_step(commit), "COMMIT");
        sqlite3_reset(commit);
    }
    double secs = now() - t0;

    int64_t *expected = expected_balances(t, n);
    sqlite3_stmt *all = sql_prepare(db, "SELECT id, json_extract(doc, '$.balance') FROM accounts");
    size_t seen = 0;
    while (sqlite3_step(all) == SQLITE_ROW) {
        int a = sqlite3_column_int(all, 0);
        if (a < 0 || a >= ACCOUNTS || sqlite3_column_int64(all, 1) != expected[a])
            die("SQLite account %d has a wrong balance", a);
        seen++;
    }
    if (seen != ACCOUNTS) die("SQLite: %zu accounts, expected %d", seen, ACCOUNTS);
    free(expected);
    sqlite3_stmt *stmts[] = {begin, commit, upd, all};
    for (size_t i = 0; i < COUNT_OF(stmts); i++) sqlite3_finalize(stmts[i]);
    sqlite3_close(db);
    rm_tree(dir);
    free(dir);
    free(path);
    return secs;
}
#endif

/* ---- the report ---- */

typedef struct result {
    double rate[N_STORES][N_OPS]; /* operations (or scanned documents) per second; 0: n/a */
    size_t ops[N_OPS];
} result_t;

static void human(char *out, size_t len, double v)
{
    if (v <= 0)
        snprintf(out, len, "n/a");
    else if (v >= 1e6)
        snprintf(out, len, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(out, len, "%.1fk", v / 1e3);
    else
        snprintf(out, len, "%.0f", v);
}

static int passes, misses;

static const char *verdict(bool ok)
{
    if (ok)
        passes++;
    else
        misses++;
    return ok ? "PASS" : "MISS";
}

static void print_table(const char *title, const result_t *r, bool no_sync, bool have_sqlite)
{
    printf("\n== %s\n", title);
    printf("%-24s %7s %10s %10s %7s %10s %7s  %s\n", "operation", "ops", "meerkat/s", "LMDB/s",
           "vs LMDB", "SQLite/s", "vs SQL", "target");
    for (int op = 0; op < N_OPS; op++) {
        char m[16], l[16], s[16], rl[16] = "n/a", rs[16] = "n/a", target[96] = "";
        double mk = r->rate[ST_MEERKAT][op], lm = r->rate[ST_LMDB][op], sq = r->rate[ST_SQLITE][op];
        human(m, sizeof m, mk);
        human(l, sizeof l, lm);
        human(s, sizeof s, sq);
        if (lm > 0) snprintf(rl, sizeof rl, "%.2fx", mk / lm);
        if (sq > 0) snprintf(rs, sizeof rs, "%.2fx", mk / sq);
        size_t tl = 0;
        if (no_sync && op == OP_INSERT)
            tl += (size_t)snprintf(target + tl, sizeof target - tl, ">=0.4x LMDB %s; ",
                                   verdict(mk >= 0.4 * lm));
        if (no_sync && op == OP_FIND)
            tl += (size_t)snprintf(target + tl, sizeof target - tl, ">=0.5x LMDB %s; ",
                                   verdict(mk >= 0.5 * lm));
        if (have_sqlite) snprintf(target + tl, sizeof target - tl, ">SQLite %s", verdict(mk > sq));
        char ops[24];
        snprintf(ops, sizeof ops, "%zu", r->ops[op]);
        printf("%-24s %7s %10s %10s %7s %10s %7s  %s\n", op_names[op], ops, m, l, rl, s, rs,
               target);
    }
}

/* A row of the index and transaction tables: "other" is the same work done another way (as a
 * collection scan, with fewer indexes, without a transaction), as the table's title says. */
typedef struct row {
    const char *name;
    size_t ops;
    double mk, other, sq; /* rates; 0: n/a */
    char target[128];
} row_t;

static double rate(size_t ops, double secs)
{
    return secs > 0 ? (double)ops / secs : 0;
}

static void ratio(char *out, size_t len, double a, double b)
{
    if (a <= 0 || b <= 0)
        snprintf(out, len, "n/a");
    else if (a / b >= 100)
        snprintf(out, len, "%.0fx", a / b);
    else
        snprintf(out, len, "%.2fx", a / b);
}

static void print_rows(const char *title, const row_t *rows, size_t n)
{
    printf("\n== %s\n", title);
    printf("%-33s %7s %10s %10s %8s %10s %7s  %s\n", "operation", "ops", "meerkat/s", "other/s",
           "vs other", "SQLite/s", "vs SQL", "target");
    for (size_t i = 0; i < n; i++) {
        const row_t *r = &rows[i];
        char m[16], o[16], s[16], ro[16], rs[16], ops[24];
        human(m, sizeof m, r->mk);
        human(o, sizeof o, r->other);
        human(s, sizeof s, r->sq);
        ratio(ro, sizeof ro, r->mk, r->other);
        ratio(rs, sizeof rs, r->mk, r->sq);
        snprintf(ops, sizeof ops, "%zu", r->ops);
        printf("%-33s %7s %10s %10s %8s %10s %7s  %s\n", r->name, ops, m, o, ro, s, rs, r->target);
    }
}

/* ">SQLite PASS" after what `t` already holds, when SQLite ran. */
static void target_sqlite(row_t *r, size_t used, bool have_sqlite)
{
    if (have_sqlite)
        snprintf(r->target + used, sizeof r->target - used, "%s>SQLite %s", used ? "; " : "",
                 verdict(r->mk > r->sq));
}

static void print_index_table(const ix_plan_t *p, const ix_secs_t *m, const ix_secs_t *s,
                              bool have_sqlite)
{
    static const char *const build_rows[N_INDEXES] = {
        "createIndexes email_1 unique", "createIndexes age_1", "createIndexes role_1_createdAt_-1"};
    static const char *const insert_rows[N_INDEX_COLLS] = {
        "insertMany, 0 indexes", "insertMany, 1 index (email)", "insertMany, 3 indexes"};
    const dataset_t *ds = p->ds;
    row_t rows[2 + N_INDEXES + N_INDEX_COLLS];
    size_t nr = 0, used;
    memset(rows, 0, sizeof rows);

    row_t *r = &rows[nr++];
    r->name = "find by email (unique index)";
    r->ops = ds->n;
    r->mk = rate(ds->n, m->find);
    r->other = rate(p->scan_lookups, m->find_scan);
    r->sq = rate(ds->n, s->find);
    used = (size_t)snprintf(r->target, sizeof r->target, ">=10x COLLSCAN %s",
                            verdict(r->mk >= 10 * r->other));
    target_sqlite(r, used, have_sqlite);

    r = &rows[nr++];
    r->name = "age range [a, a+2) (documents)";
    r->ops = range_docs(ds, RANGE_QUERIES);
    r->mk = rate(r->ops, m->range);
    r->other = rate(range_docs(ds, RANGE_SCANS), m->range_scan);
    r->sq = rate(r->ops, s->range);
    target_sqlite(r, 0, have_sqlite);

    for (int k = 0; k < N_INDEXES; k++) {
        r = &rows[nr++];
        r->name = build_rows[k];
        r->ops = ds->n;
        r->mk = rate(ds->n, m->build[k]);
        r->sq = rate(ds->n, s->build[k]);
        used = (size_t)snprintf(r->target, sizeof r->target, "%.3f s", m->build[k]);
        if (have_sqlite)
            used += (size_t)snprintf(r->target + used, sizeof r->target - used, " (SQLite %.3f s)",
                                     s->build[k]);
        target_sqlite(r, used, have_sqlite);
    }

    for (int c = 0; c < N_INDEX_COLLS; c++) {
        r = &rows[nr++];
        r->name = insert_rows[c];
        r->ops = ds->n;
        r->mk = rate(ds->n, m->insert[c]);
        r->sq = rate(ds->n, s->insert[c]);
        used = 0;
        if (c > 0) {
            /* the time each added index adds, relative to the row above */
            int added = index_colls_n[c] - index_colls_n[c - 1];
            double per = (m->insert[c] / m->insert[c - 1] - 1) / added;
            r->other = rate(ds->n, m->insert[c - 1]);
            used = (size_t)snprintf(r->target, sizeof r->target, "%+.0f%%/index <=30%% %s",
                                    per * 100, verdict(per <= 0.30));
        }
        target_sqlite(r, used, have_sqlite);
    }
    print_rows("indexes, no-sync (other: the same query as a COLLSCAN, hint { $natural: 1 }; "
               "for inserts, the row above)",
               rows, nr);
}

static void run_mode(const dataset_t *ds, bool no_sync, size_t n_write, size_t map_size,
                     bool have_sqlite, result_t *r)
{
    plan_t p = {.ds = ds, .n_write = n_write, .no_sync = no_sync, .map_size = map_size};
    double secs[N_STORES][N_OPS] = {{0}};
    fprintf(stderr, "  %s: meerkat...", no_sync ? "no-sync" : "durable");
    meerkat_run(&p, secs[ST_MEERKAT]);
    fprintf(stderr, " LMDB...");
    lmdb_run(&p, secs[ST_LMDB]);
#ifdef MK_HAVE_SQLITE
    fprintf(stderr, " SQLite...");
    sqlite_run(&p, secs[ST_SQLITE]);
#endif
    fprintf(stderr, " done\n");
    r->ops[OP_INSERT] = ds->n;
    r->ops[OP_FIND] = ds->n;
    r->ops[OP_SCAN] = ds->n * SCAN_REPS;
    r->ops[OP_UPDATE] = n_write;
    r->ops[OP_DELETE] = n_write;
    memset(r->rate, 0, sizeof r->rate);
    for (int s = 0; s < N_STORES; s++) {
        if (s == ST_SQLITE && !have_sqlite) continue;
        for (int op = 0; op < N_OPS; op++)
            if (secs[s][op] > 0) r->rate[s][op] = (double)r->ops[op] / secs[s][op];
    }
}

/* Commits per second of the transfers in each mode that runs (n[0]: no-sync, n[1]: durable). */
static void run_transactions(const transfers_t *t, const size_t n[2], const bool run[2],
                             bool have_sqlite)
{
    static const char *const names[2] = {"txn of 2 x $inc, no-sync", "txn of 2 x $inc, durable"};
    row_t rows[2];
    size_t nr = 0;
    memset(rows, 0, sizeof rows);
    for (int d = 0; d < 2; d++) {
        if (!run[d]) continue;
        bool no_sync = d == 0;
        double secs[2] = {0}, sq = 0;
        fprintf(stderr, "  transactions, %s: meerkat...", no_sync ? "no-sync" : "durable");
        meerkat_txn_run(t, n[d], no_sync, secs);
#ifdef MK_HAVE_SQLITE
        fprintf(stderr, " SQLite...");
        sq = sqlite_txn_run(t, n[d], no_sync);
#endif
        fprintf(stderr, " done\n");
        row_t *r = &rows[nr++];
        r->name = names[d];
        r->ops = n[d];
        r->mk = rate(n[d], secs[0]);
        r->other = rate(n[d], secs[1]);
        r->sq = rate(n[d], sq);
        target_sqlite(r, 0, have_sqlite);
    }
    print_rows("transactions, commits/s (other: the same 2 updates without a transaction, two "
               "commits; SQLite: BEGIN; UPDATE; UPDATE; COMMIT)",
               rows, nr);
}

static void usage(FILE *out)
{
    fputs("usage: bench_engine [--n N] [--quick] [--durable-ops N] [--mode both|nosync|durable]\n"
          "                    [--dir BASE]\n"
          "  --n N            documents (default 100000)\n"
          "  --quick          10000 documents and 200 durable updates/deletes, a few seconds\n"
          "  --durable-ops N  updates and deletes measured in durable mode (default 2000),\n"
          "                   since every one of them waits for fsync; transactions: N/2\n"
          "  --mode M         run only the no-sync or only the durable measurements\n"
          "  --dir BASE       where the temporary data directories go (default /tmp)\n",
          out);
}

static size_t parse_size(const char *opt, const char *v)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v ? v : "", &end, 10);
    if (!v || !*v || *end || errno || x == 0 || x > 100000000ull || v[0] == '-') {
        fprintf(stderr, "bench_engine: %s needs a positive integer\n", opt);
        exit(2);
    }
    return (size_t)x;
}

int main(int argc, char **argv)
{
    size_t n = 100000, durable_ops = 2000;
    bool ops_given = false, quick = false;
    const char *mode = "both", *base = "/tmp";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--n") == 0) {
            n = parse_size(a, v), i++;
        } else if (strcmp(a, "--quick") == 0) {
            n = 10000;
            quick = true;
        } else if (strcmp(a, "--durable-ops") == 0) {
            durable_ops = parse_size(a, v), i++;
            ops_given = true;
        } else if (strcmp(a, "--mode") == 0 && v &&
                   (!strcmp(v, "both") || !strcmp(v, "nosync") || !strcmp(v, "durable"))) {
            mode = v, i++;
        } else if (strcmp(a, "--dir") == 0 && v) {
            base = v, i++;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_engine: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (quick && !ops_given) durable_ops = 200; /* each waits for the disk */
    if (snprintf(base_dir, sizeof base_dir, "%s/meerkat-bench-XXXXXX", base) >=
        (int)sizeof base_dir)
        die("--dir path too long");
    if (!mkdtemp(base_dir)) {
        base_dir[0] = '\0';
        die("cannot create a temporary directory under %s: %s", base, strerror(errno));
    }
    atexit(cleanup);

    bool have_sqlite = false;
    const char *sqlite_version = "not built (libsqlite3-dev missing)";
#ifdef MK_HAVE_SQLITE
    have_sqlite = true;
    sqlite_version = sqlite3_libversion();
#endif
    fprintf(stderr, "generating %zu documents...\n", n);
    dataset_t ds;
    dataset_init(&ds, n);
    /* The same map size for meerkat and LMDB, large enough that neither has to grow. */
    size_t map_size = (size_t)1 << 30;
    while (map_size < ds.bson_bytes * 8) map_size *= 2;

    printf("meerkat %s engine benchmark: %zu User documents (BSON %.0f bytes, JSON %.0f bytes "
           "on average)\n",
           MEERKAT_VERSION, n, (double)ds.bson_bytes / (double)n,
           (double)ds.json_bytes / (double)n);
    int lmaj, lmin, lpatch;
    mdb_version(&lmaj, &lmin, &lpatch);
    printf("libbson %s, LMDB %d.%d.%d, SQLite %s; data under %s\n", bson_get_version(), lmaj, lmin,
           lpatch, sqlite_version, base_dir);
    printf("ratios are meerkat / baseline: above 1.00x meerkat is faster\n");

    result_t r;
    if (strcmp(mode, "durable") != 0) {
        run_mode(&ds, true, n, map_size, have_sqlite, &r);
        print_table("no-sync: meerkat no_sync, LMDB MDB_NOSYNC, SQLite WAL + synchronous=OFF", &r,
                    true, have_sqlite);
    }
    if (strcmp(mode, "nosync") != 0) {
        size_t nw = durable_ops < n ? durable_ops : n;
        run_mode(&ds, false, nw, map_size, have_sqlite, &r);
        char title[160];
        snprintf(title, sizeof title,
                 "durable: fsync on every commit, SQLite WAL + synchronous=FULL "
                 "(updates/deletes: %zu ops)",
                 nw);
        print_table(title, &r, false, have_sqlite);
    }
    /* collection-scan lookups: about a million documents examined, within [5, 200] */
    ix_plan_t ip = {.ds = &ds, .map_size = map_size, .scan_lookups = 1000000 / n};
    if (ip.scan_lookups < 5) ip.scan_lookups = 5;
    if (ip.scan_lookups > 200) ip.scan_lookups = 200;
    if (ip.scan_lookups > n) ip.scan_lookups = n;
    if (strcmp(mode, "durable") != 0) {
        ix_secs_t ms = {0}, ss = {0};
        fprintf(stderr, "  indexes: meerkat...");
        meerkat_index_run(&ip, &ms);
#ifdef MK_HAVE_SQLITE
        fprintf(stderr, " SQLite...");
        sqlite_index_run(&ip, &ss);
#endif
        fprintf(stderr, " done\n");
        print_index_table(&ip, &ms, &ss, have_sqlite);
    }
    /* durable commits wait for the disk: fewer of them, as many commits without a transaction
     * as --durable-ops */
    size_t n_txn[2] = {n / 5 ? n / 5 : 1, n / 40 ? n / 40 : 1};
    if (n_txn[1] > durable_ops / 2) n_txn[1] = durable_ops / 2 ? durable_ops / 2 : 1;
    bool run_txn[2] = {strcmp(mode, "durable") != 0, strcmp(mode, "nosync") != 0};
    transfers_t transfers;
    transfers_init(&transfers, n_txn[0] > n_txn[1] ? n_txn[0] : n_txn[1]);
    run_transactions(&transfers, n_txn, run_txn, have_sqlite);
    free(transfers.pair);
    printf("\nHow each operation is measured (same documents, keys and random order for all):\n"
           "  insertMany  meerkat: insert commands of 1000 documents; LMDB: mdb_put of the same\n"
           "              13-byte keys and BSON bytes, one write txn per 1000; SQLite: INSERT,\n"
           "              one transaction per 1000\n"
           "  find        one document by _id in random order; LMDB: mdb_get in its own read\n"
           "              txn (reset/renew, as the engine pools readers), value copied out;\n"
           "              SQLite: SELECT doc WHERE id = ?\n"
           "  scan        %d full scans for profile.country = '%s' (%zu matches), counted in\n"
           "              documents scanned; LMDB: cursor + libbson dotted lookup; SQLite:\n"
           "              json_extract(doc, '$.profile.country') = ?\n"
           "  update      $set of age by _id, one commit each; LMDB: put-overwrite of the\n"
           "              patched bytes; SQLite: json_set\n"
           "  delete      by _id, one commit each; LMDB: mdb_del\n"
           "  find by email  findOne { email } on the unique index email_1, random order;\n"
           "              other: %zu of them with hint { $natural: 1 } (the scan stops at the\n"
           "              match); SQLite: SELECT doc WHERE json_extract(doc, '$.email') = ? on\n"
           "              a UNIQUE expression index\n"
           "  age range   %d queries { age: { $gte: a, $lt: a + 2 } } (about n/30 documents\n"
           "              each, find + getMore), counted in documents returned; other: %d of\n"
           "              them as collection scans; SQLite: an index on json_extract(doc,'$.age')\n"
           "  createIndexes  one index added to the %zu documents of a collection without\n"
           "              secondary indexes, keys/s; SQLite: CREATE INDEX on the same\n"
           "              json_extract expressions\n"
           "  insertMany  as above, into collections with 0, 1 (email unique) and 3 (email\n"
           "              unique, age, { role: 1, createdAt: -1 }) indexes declared first;\n"
           "              %%/index: (time / time of the row above - 1) / indexes added\n"
           "  txn         a transfer between two of %d accounts: mk_session_start_transaction,\n"
           "              two update commands ($inc balance -1 / +1) through mk_session_command,\n"
           "              mk_session_commit_transaction; other: the same two updates as two\n"
           "              commands (two commits), in transfers/s; durable: %zu transfers\n"
           "the plans are checked with explain (IXSCAN on the index for the indexed queries,\n"
           "COLLSCAN with the hint) and SQLite's with EXPLAIN QUERY PLAN, before measuring\n"
           "durable single-document writes wait for the disk: their rates follow fsync latency\n"
           "and vary from run to run (an LMDB commit syncs twice, data then meta page; a SQLite\n"
           "WAL commit once)\n"
           "targets (never asserted by tests): %d PASS, %d MISS\n",
           SCAN_REPS, SCAN_VALUE, ds.scan_matches, ip.scan_lookups, RANGE_QUERIES, RANGE_SCANS, n,
           ACCOUNTS, n_txn[1], passes, misses);
    dataset_free(&ds);
    return 0;
}
