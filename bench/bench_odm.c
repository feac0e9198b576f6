/* The ODM against Mongoose 8, side by side in one run.
 *
 * The workload is bench/mongoose/bench.js's, phase for phase, on the same schema (the seed's
 * User, with timestamps) and the same inputs (untrimmed mixed-case email, age as a string, ISO
 * date string), N = 100000 documents (--quick: 20000, --n N):
 *   construct   mk_doc_from_bson(User, input)                       new User(input)
 *   validate    mk_doc_validate (must be MK_OK)                      doc.validateSync()
 *   toObject    mk_doc_to_object                                     doc.toObject()
 *   hydrate     mk_doc_hydrate(User, stored BSON)                    User.hydrate(obj)
 *   modify      two mk_doc_set + mk_doc_delta on a hydrated document  two sets + getChanges()
 *               (checked: { $set: { name, age } })
 *   castFilter  the filter built as a query (mk_find with ? bound)     User.find(filter)
 *               and cast with mk_cast_filter                           .cast(User)
 *   castUpdate  the update built as a query (mk_update_one) and cast  User.updateOne(...)
 *               with mk_cast_update (no timestamps, as Mongoose's       ._castUpdate(update)
 *               cast)
 * and the memory figures: hydratedBytes, the malloc'd bytes one hydrated document keeps
 * (mallinfo2() before and after hydrating N documents that are all kept), and bsonBytes, the
 * mean size of the stored BSON. Mongoose's figures come from running
 *   node bench/mongoose/bench.js --json (--quick | --n N)
 * after meerkat's phases, when `node` is on PATH and bench/mongoose/node_modules exists
 * (--install runs `npm install` there first). The script is looked for in --mongoose-dir DIR,
 * then $MK_SOURCE_DIR/bench/mongoose, then MK_SOURCE_DIR (a compile definition, if given),
 * then bench/mongoose under the current directory and its parent, then next to the program
 * (../bench/mongoose from its directory); `make bench` runs from the source directory.
 *
 * Then the queries of issue 5, on a database holding the N stored documents:
 *   insertMany  Model.insertMany of the N documents (cast, validate, one round trip)
 *   find        all N documents hydrated, then `lean`, then the engine's raw find (the find and
 *               getMore commands through mk_conn_command, each document copied out of its
 *               batch: the same N owned BSON documents that lean returns)
 *   findOne     by email, on the schema's unique index (checked with explain: IXSCAN)
 * Mongoose has no counterpart here (its script never talks to a server); the targets are
 * ratios between meerkat's own figures: hydrated find at most 2x lean, lean at most 1.2x raw.
 *
 * Every phase warms up on min(2000, N) documents, then runs 3 times; the best run counts.
 * Timings use CLOCK_MONOTONIC. Each phase checks its result once and the program exits with
 * status 1 on a wrong result: the benchmark is also a smoke test. Targets print PASS / MISS
 * and are never asserted. */
#include <meerkat.h>
#include <meerkat/query.h>

#include <ctype.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "odm/cast_query.h"

#define RUNS          3
#define WARMUP_MAX    2000
#define TARGET_RATIO  30.0 /* every phase at least 30x Mongoose's docs/s */
#define TARGET_MEMORY 2.0  /* a hydrated document at most 2x its BSON */
#define TARGET_HYD    2.0  /* hydrated find at most 2x the cost of lean */
#define TARGET_LEAN   1.2  /* lean find at most 1.2x the cost of the raw find */

static const char *const USER_SCHEMA =
    "{ email: { type: String, required: true, unique: true, lowercase: true, trim: true },"
    "  name: { type: String, required: true, minlength: 2, maxlength: 100 },"
    "  age: { type: Number, min: 0, max: 150 },"
    "  role: { type: String, enum: ['user', 'admin'], default: 'user' },"
    "  tags: [String],"
    "  profile: { avatar: String, bio: { type: String, maxlength: 500 } },"
    "  lastLogin: Date }";

static const char *const FILTER_TEXT =
    "{ _id: ?, age: { $gte: ? }, role: { $in: ['user', 'admin'] },"
    "  'profile.bio': { $exists: true }, lastLogin: { $lt: '2025-01-01' } }";
static const char *const UPDATE_FILTER_TEXT = "{ email: 'X@Y.COM' }";
static const char *const UPDATE_TEXT = "{ name: ?, $inc: { age: '1' }, $push: { tags: 't' } }";

/* ---------------------------------------------------------------- utilities */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("\nbench_odm: FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void check(bool ok, const char *what)
{
    if (!ok) die("check failed: %s", what);
}

static void check_rc(int rc, const mk_error_t *err, const char *what)
{
    if (rc != MK_OK) die("%s: [%s] %s", what, err->kind, err->message);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "1,234,567" */
static const char *thousands(double v, char *buf, size_t cap)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", v);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- state */

static struct {
    size_t n, warmup;
    mk_conn_t *conn;
    mk_model_t *User;
    const mk_schema_t *schema;
    /* inputs, built before any timing */
    bson_t **inputs;
    char (*new_names)[32];
    char (*hex_ids)[25];
    char age_strs[10][12];
    char (*emails)[40];
    bson_t **stored; /* what the driver would hand back for each saved user */
    /* results of the phases */
    mk_doc_t **docs;
    bson_t **objs;
    mk_doc_t **hydrated;
    bson_t *first_delta, *first_filter, *first_update;
} g;

static void destroy_docs(mk_doc_t **docs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mk_doc_destroy(docs[i]);
        docs[i] = NULL;
    }
}

static void destroy_bsons(bson_t **b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i]) bson_destroy(b[i]);
        b[i] = NULL;
    }
}

static void build_inputs(void)
{
    mk_error_t err = {0};
    size_t n = g.n;
    g.inputs = xcalloc(n, sizeof *g.inputs);
    g.new_names = xcalloc(n, sizeof *g.new_names);
    g.hex_ids = xcalloc(n, sizeof *g.hex_ids);
    g.emails = xcalloc(n, sizeof *g.emails);
    for (int k = 0; k < 10; k++) snprintf(g.age_strs[k], sizeof g.age_strs[k], "%d", 18 + k);
    for (size_t i = 0; i < n; i++) {
        char email[48], name[32], age[24], tag[24], avatar[64], bio[48], when[32];
        snprintf(email, sizeof email, "  User%zu@Example.COM ", i);
        snprintf(name, sizeof name, "User %zu", i);
        snprintf(age, sizeof age, "%zu", 20 + i % 50);
        snprintf(tag, sizeof tag, "t%zu", i % 7);
        snprintf(avatar, sizeof avatar, "https://img.example.com/%zu.png", i);
        snprintf(bio, sizeof bio, "Bio of user %zu", i);
        time_t secs = (time_t)(1700000000 + i);
        struct tm tm;
        gmtime_r(&secs, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
        g.inputs[i] = mk_bson(&err,
                              "{ email: ?, name: ?, age: ?, tags: [?, 'common'],"
                              "  profile: { avatar: ?, bio: ? }, lastLogin: ? }",
                              MK_STR(email), MK_STR(name), MK_STR(age), MK_STR(tag), MK_STR(avatar),
                              MK_STR(bio), MK_STR(when));
        if (!g.inputs[i]) die("input %zu: %s", i, err.message);
        snprintf(g.new_names[i], sizeof g.new_names[i], "Renamed %zu", i);
        snprintf(g.hex_ids[i], sizeof g.hex_ids[i], "%024zx", i);
        snprintf(g.emails[i], sizeof g.emails[i], "user%zu@example.com", i);
    }
}

/* ---------------------------------------------------------------- timing */

typedef struct phase {
    const char *name;
    void (*prepare)(size_t count); /* untimed: state for one run (may be NULL) */
    void (*run)(size_t from, size_t to);
    void (*release)(size_t count); /* untimed: frees one run's results (may be NULL) */
} phase_t;

/* Warm-up, then RUNS timed runs; the last run's results stay for the phase's check (the
 * caller releases them). Returns docs/s of the best run. */
static double time_phase(const phase_t *p, size_t n)
{
    size_t warm = g.warmup < n ? g.warmup : n;
    if (p->prepare) p->prepare(warm);
    p->run(0, warm);
    if (p->release) p->release(warm);
    double best = 0;
    for (int r = 0; r < RUNS; r++) {
        if (r > 0 && p->release) p->release(n);
        if (p->prepare) p->prepare(n);
        double t0 = now();
        p->run(0, n);
        double t = now() - t0;
        if (r == 0 || t < best) best = t;
    }
    return best > 0 ? (double)n / best : 0;
}

/* ---------------------------------------------------------------- the in-memory phases */

static void construct_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    for (size_t i = from; i < to; i++) {
        g.docs[i] = mk_doc_from_bson(g.User, g.inputs[i], &err);
        if (!g.docs[i]) die("construct %zu: [%s] %s", i, err.kind, err.message);
    }
}

static void construct_release(size_t n)
{
    destroy_docs(g.docs, n);
}

static void validate_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    for (size_t i = from; i < to; i++)
        if (mk_doc_validate(g.docs[i], &err) != MK_OK)
            die("validate() on doc %zu: [%s] %s", i, err.kind, err.message);
}

static void to_object_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    for (size_t i = from; i < to; i++) {
        g.objs[i] = mk_doc_to_object(g.docs[i], NULL, &err);
        if (!g.objs[i]) die("toObject %zu: [%s] %s", i, err.kind, err.message);
    }
}

static void to_object_release(size_t n)
{
    destroy_bsons(g.objs, n);
}

static void hydrate_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    for (size_t i = from; i < to; i++) {
        g.hydrated[i] = mk_doc_hydrate(g.User, g.stored[i], &err);
        if (!g.hydrated[i]) die("hydrate %zu: [%s] %s", i, err.kind, err.message);
    }
}

static void hydrated_release(size_t n)
{
    destroy_docs(g.hydrated, n);
}

/* modify mutates its documents: each run gets freshly hydrated ones */
static void modify_prepare(size_t count)
{
    hydrate_run(0, count);
}

static void modify_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    for (size_t i = from; i < to; i++) {
        mk_doc_t *d = g.hydrated[i];
        if (mk_doc_set(d, "name", MK_STR(g.new_names[i]), &err) != MK_OK ||
            mk_doc_set(d, "age", MK_I32((int32_t)(30 + i % 40)), &err) != MK_OK)
            die("modify %zu: [%s] %s", i, err.kind, err.message);
        bson_t *delta = mk_doc_delta(d, &err);
        if (!delta) die("delta %zu: [%s] %s", i, err.kind, err.message);
        if (i == 0) {
            if (g.first_delta) bson_destroy(g.first_delta);
            g.first_delta = delta;
        } else {
            bson_destroy(delta);
        }
    }
}

static void cast_filter_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    for (size_t i = from; i < to; i++) {
        mk_query_t *q =
            mk_find(g.User, &err, FILTER_TEXT, MK_STR(g.hex_ids[i]), MK_STR(g.age_strs[i % 10]));
        if (!q) die("find %zu: [%s] %s", i, err.kind, err.message);
        bson_t out = BSON_INITIALIZER;
        if (mk_cast_filter(g.schema, "User", mk_query_get_filter(q), NULL, &out, &err) != MK_OK)
            die("castFilter %zu: [%s] %s", i, err.kind, err.message);
        if (i == 0) {
            if (g.first_filter) bson_destroy(g.first_filter);
            g.first_filter = bson_copy(&out);
        }
        bson_destroy(&out);
        mk_query_destroy(q);
    }
}

static void cast_update_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    mk_cast_update_opts_t opts = {0}; /* no timestamps: Mongoose adds them in middleware */
    for (size_t i = from; i < to; i++) {
        char name[24];
        snprintf(name, sizeof name, "N%zu", i);
        mk_query_t *q = mk_update_one(g.User, &err, UPDATE_FILTER_TEXT, UPDATE_TEXT, MK_STR(name));
        if (!q) die("updateOne %zu: [%s] %s", i, err.kind, err.message);
        bson_t out = BSON_INITIALIZER;
        if (mk_cast_update(g.schema, "User", mk_query_get_update(q), &opts, NULL, &out, &err) !=
            MK_OK)
            die("castUpdate %zu: [%s] %s", i, err.kind, err.message);
        if (i == 0) {
            if (g.first_update) bson_destroy(g.first_update);
            g.first_update = bson_copy(&out);
        }
        bson_destroy(&out);
        mk_query_destroy(q);
    }
}

/* ---------------------------------------------------------------- checks */

static bool find_value(const bson_t *doc, const char *path, bson_iter_t *it)
{
    bson_iter_t root;
    return bson_iter_init(&root, doc) && bson_iter_find_descendant(&root, path, it);
}

static bool has_str(const bson_t *doc, const char *path, const char *want)
{
    bson_iter_t it;
    return find_value(doc, path, &it) && BSON_ITER_HOLDS_UTF8(&it) &&
           strcmp(bson_iter_utf8(&it, NULL), want) == 0;
}

static bool has_number(const bson_t *doc, const char *path, double want)
{
    bson_iter_t it;
    return find_value(doc, path, &it) &&
           (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it) ||
            BSON_ITER_HOLDS_DOUBLE(&it)) &&
           bson_iter_as_double(&it) == want;
}

static bool has_type(const bson_t *doc, const char *path, bson_type_t type)
{
    bson_iter_t it;
    return find_value(doc, path, &it) && bson_iter_type(&it) == type;
}

static uint32_t count_keys(const bson_t *doc, const char *path)
{
    bson_iter_t it, child;
    if (!path) return bson_count_keys(doc);
    if (!find_value(doc, path, &it) || !bson_iter_recurse(&it, &child)) return 0;
    uint32_t n = 0;
    while (bson_iter_next(&child)) n++;
    return n;
}

static char *show(const bson_t *b)
{
    return b ? bson_as_relaxed_extended_json(b, NULL) : NULL;
}

static void check_doc(bool ok, const char *what, const bson_t *b)
{
    if (ok) return;
    char *s = show(b);
    die("check failed: %s, got %s", what, s ? s : "(null)");
}

static void check_construct(void)
{
    mk_doc_t *d = g.docs[0];
    const char *email = mk_doc_get_str(d, "email");
    const char *role = mk_doc_get_str(d, "role");
    bson_value_t age;
    check(email && strcmp(email, "user0@example.com") == 0 && role && strcmp(role, "user") == 0 &&
              mk_doc_get_raw(d, "age", &age) &&
              (age.value_type == BSON_TYPE_INT32 || age.value_type == BSON_TYPE_DOUBLE ||
               age.value_type == BSON_TYPE_INT64) &&
              mk_doc_get_i64(d, "age") == 20 && mk_doc_is_new(d),
          "construct casts email (trim+lowercase), age to number, role default");
}

/* The stored form: toObject plus what save() adds, as the driver would return it. */
static void build_stored(void)
{
    mk_error_t err = {0};
    g.stored = xcalloc(g.n, sizeof *g.stored);
    const int64_t saved = 1710000000000;
    for (size_t i = 0; i < g.n; i++) {
        bson_t *obj = mk_doc_to_object(g.docs[i], NULL, &err);
        if (!obj) die("stored %zu: [%s] %s", i, err.kind, err.message);
        bson_t *s = bson_new();
        bson_iter_t it;
        bson_iter_init(&it, obj);
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (strcmp(k, "createdAt") && strcmp(k, "updatedAt") && strcmp(k, "__v"))
                bson_append_value(s, k, -1, bson_iter_value(&it));
        }
        BSON_APPEND_DATE_TIME(s, "createdAt", saved);
        BSON_APPEND_DATE_TIME(s, "updatedAt", saved);
        BSON_APPEND_INT32(s, "__v", 0);
        bson_destroy(obj);
        g.stored[i] = s;
    }
    const bson_t *s0 = g.stored[0];
    check_doc(has_type(s0, "_id", BSON_TYPE_OID) &&
                  has_type(s0, "lastLogin", BSON_TYPE_DATE_TIME) && has_number(s0, "age", 20) &&
                  has_str(s0, "email", "user0@example.com"),
              "stored objects hold ObjectId, Date, number", s0);
}

static void check_to_object(void)
{
    const bson_t *o = g.objs[0];
    check_doc(has_type(o, "lastLogin", BSON_TYPE_DATE_TIME) &&
                  has_type(o, "tags", BSON_TYPE_ARRAY) && count_keys(o, "tags") == 2 &&
                  has_str(o, "profile.bio", "Bio of user 0"),
              "toObject gives a plain object with Date and array", o);
}

static void check_hydrate(void)
{
    mk_doc_t *d = g.hydrated[0];
    bson_iter_t it;
    const bson_oid_t *id = mk_doc_oid(d);
    check(!mk_doc_is_new(d) && id && find_value(g.stored[0], "_id", &it) &&
              bson_oid_equal(id, bson_iter_oid(&it)) && mk_doc_get_i64(d, "age") == 20 &&
              !mk_doc_is_modified(d, NULL),
          "hydrate gives a non-new, unmodified doc with the stored values");
}

static void check_modify(void)
{
    const bson_t *d = g.first_delta;
    check_doc(d && count_keys(d, NULL) == 1 && count_keys(d, "$set") == 2 &&
                  has_str(d, "$set.name", "Renamed 0") && has_number(d, "$set.age", 30),
              "the delta of doc 0 is { $set: { name: 'Renamed 0', age: 30 } }", d);
}

static void check_cast_filter(void)
{
    const bson_t *f = g.first_filter;
    check_doc(f && has_type(f, "_id", BSON_TYPE_OID) && has_number(f, "age.$gte", 18) &&
                  has_type(f, "lastLogin.$lt", BSON_TYPE_DATE_TIME) &&
                  count_keys(f, "role.$in") == 2,
              "castFilter casts _id to ObjectId, age to number, lastLogin to Date", f);
    /* the dotted key stays one key ({ 'profile.bio': { $exists: true } }) */
    bson_iter_t it, op;
    check_doc(bson_iter_init_find(&it, f, "profile.bio") && bson_iter_recurse(&it, &op) &&
                  bson_iter_find(&op, "$exists") && BSON_ITER_HOLDS_BOOL(&op) &&
                  bson_iter_bool(&op),
              "castFilter keeps { 'profile.bio': { $exists: true } }", f);
}

static void check_cast_update(void)
{
    const bson_t *u = g.first_update;
    /* Mongoose: { $push: { tags: 't' }, $inc: { age: 1 }, $set: { name: 'N0' } } (key order
     * aside, as isDeepStrictEqual) */
    check_doc(u && count_keys(u, NULL) == 3 && count_keys(u, "$set") == 1 &&
                  has_str(u, "$set.name", "N0") && count_keys(u, "$inc") == 1 &&
                  has_number(u, "$inc.age", 1) && !has_type(u, "$inc.age", BSON_TYPE_UTF8) &&
                  count_keys(u, "$push") == 1 && has_str(u, "$push.tags", "t"),
              "castUpdate moves name into $set and casts $inc to a number", u);
}

/* ---------------------------------------------------------------- memory */

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* Bytes one hydrated document keeps: N documents hydrated and all kept. */
static double hydrated_bytes(void)
{
    mk_doc_t **kept = xcalloc(g.n, sizeof *kept);
    mk_error_t err = {0};
    size_t before = heap_in_use();
    for (size_t i = 0; i < g.n; i++) {
        kept[i] = mk_doc_hydrate(g.User, g.stored[i], &err);
        if (!kept[i]) die("memory hydrate %zu: [%s] %s", i, err.kind, err.message);
    }
    size_t after = heap_in_use();
    const char *name = mk_doc_get_str(kept[g.n - 1], "name");
    char want[32];
    snprintf(want, sizeof want, "User %zu", g.n - 1);
    check(name && strcmp(name, want) == 0, "memory phase hydrated every document");
    destroy_docs(kept, g.n);
    free(kept);
    return after > before ? (double)(after - before) / (double)g.n : 0;
}

static double bson_bytes(void)
{
    double total = 0;
    for (size_t i = 0; i < g.n; i++) total += g.stored[i]->len;
    return total / (double)g.n;
}

/* ---------------------------------------------------------------- queries */

typedef struct query_figures {
    bool ran;
    double insert, find_hydrated, find_lean, find_raw, find_one;
} query_figures_t;

static void drop_users(void)
{
    mk_error_t err = {0};
    bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "drop", mk_model_collection_name(g.User));
    mk_conn_command(g.conn, &cmd, &reply, &err); /* NamespaceNotFound the first time */
    bson_destroy(&cmd);
    bson_destroy(&reply);
    check_rc(mk_model_ensure_indexes(g.User, &err), &err, "ensure indexes");
}

static bson_t *insert_batch; /* the documents of one insertMany, as a BSON array */
static mk_insert_many_result_t insert_result;

static void insert_prepare(size_t count)
{
    drop_users();
    insert_batch = bson_new();
    char key[24];
    for (size_t i = 0; i < count; i++) {
        snprintf(key, sizeof key, "%zu", i);
        BSON_APPEND_DOCUMENT(insert_batch, key, g.stored[i]);
    }
}

static void insert_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    memset(&insert_result, 0, sizeof insert_result);
    check_rc(mk_model_insert_many(g.User, insert_batch, NULL, &insert_result, &err), &err,
             "insertMany");
    check(insert_result.ndocs == to - from && insert_result.nfailures == 0,
          "insertMany inserted every document");
}

static void insert_release(size_t count)
{
    mk_insert_many_result_destroy(&insert_result);
    memset(&insert_result, 0, sizeof insert_result);
    bson_destroy(insert_batch);
    insert_batch = NULL;
}

static mk_query_result_t find_result;
static bool find_lean;

static void find_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    mk_query_t *q = mk_find(g.User, &err, "{}");
    if (!q) die("find: [%s] %s", err.kind, err.message);
    if (find_lean) mk_query_lean(q, true);
    memset(&find_result, 0, sizeof find_result);
    check_rc(mk_query_exec(q, &find_result, &err), &err, find_lean ? "lean find" : "find");
    mk_query_destroy(q);
    size_t got = find_lean ? find_result.nlean : find_result.ndocs;
    if (got != to - from) die("find returned %zu documents, expected %zu", got, to - from);
}

static void find_release(size_t count)
{
    mk_query_result_destroy(&find_result);
    memset(&find_result, 0, sizeof find_result);
}

/* The raw find: find + getMore, as a driver sends them, every document copied out. */
static bson_t **raw_docs;
static size_t raw_n;

static bool next_batch(const bson_t *reply, const char *batch, int64_t *cursor_id)
{
    bson_iter_t it, docs;
    if (!find_value(reply, "cursor.id", &it)) return false;
    *cursor_id = bson_iter_as_int64(&it);
    char path[32];
    snprintf(path, sizeof path, "cursor.%s", batch);
    if (!find_value(reply, path, &it) || !bson_iter_recurse(&it, &docs)) return false;
    while (bson_iter_next(&docs)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&docs, &len, &data);
        if (raw_n >= g.n) die("raw find returned more than %zu documents", g.n);
        raw_docs[raw_n] = bson_new_from_data(data, len);
        if (!raw_docs[raw_n]) die("out of memory");
        raw_n++;
    }
    return true;
}

static void raw_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    const char *coll = mk_model_collection_name(g.User);
    bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "find", coll);
    bson_t empty = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&cmd, "filter", &empty);
    check_rc(mk_conn_command(g.conn, &cmd, &reply, &err), &err, "raw find");
    int64_t id = 0;
    if (!next_batch(&reply, "firstBatch", &id)) die("raw find: no cursor in the reply");
    while (id != 0) {
        bson_reinit(&cmd);
        bson_reinit(&reply);
        BSON_APPEND_INT64(&cmd, "getMore", id);
        BSON_APPEND_UTF8(&cmd, "collection", coll);
        check_rc(mk_conn_command(g.conn, &cmd, &reply, &err), &err, "getMore");
        if (!next_batch(&reply, "nextBatch", &id)) die("getMore: no cursor in the reply");
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    if (raw_n != to - from) die("raw find returned %zu documents, expected %zu", raw_n, to - from);
}

static void raw_release(size_t count)
{
    destroy_bsons(raw_docs, raw_n);
    raw_n = 0;
}

static void find_one_run(size_t from, size_t to)
{
    mk_error_t err = {0};
    for (size_t i = from; i < to; i++) {
        size_t k = (i * 7919) % g.n; /* a scattered order */
        mk_query_t *q = mk_find_one(g.User, &err, "{ email: ? }", MK_STR(g.emails[k]));
        if (!q) die("findOne: [%s] %s", err.kind, err.message);
        mk_doc_t *d = mk_query_one(q, &err);
        if (!d) die("findOne %s: %s", g.emails[k], err.kind[0] ? err.message : "not found");
        mk_doc_destroy(d);
        mk_query_destroy(q);
    }
}

static bool plan_has_stage(const bson_t *plan, const char *stage, int depth)
{
    bson_iter_t it;
    if (depth > 20 || !bson_iter_init(&it, plan)) return false;
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "stage") == 0 && BSON_ITER_HOLDS_UTF8(&it) &&
            strcmp(bson_iter_utf8(&it, NULL), stage) == 0)
            return true;
        if (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_t child;
            if (BSON_ITER_HOLDS_DOCUMENT(&it))
                bson_iter_document(&it, &len, &data);
            else
                bson_iter_array(&it, &len, &data);
            if (bson_init_static(&child, data, len) && plan_has_stage(&child, stage, depth + 1))
                return true;
        }
    }
    return false;
}

static void check_find_results(void)
{
    mk_error_t err = {0};
    /* the hydrated find: documents with the stored values, not new */
    find_lean = false;
    find_run(0, g.n);
    mk_doc_t *d = find_result.docs[0];
    check(d && !mk_doc_is_new(d) && mk_doc_get_str(d, "email") &&
              strncmp(mk_doc_get_str(d, "email"), "user", 4) == 0,
          "find returns hydrated documents");
    find_release(g.n);
    find_lean = true;
    find_run(0, g.n);
    check(find_result.lean && find_result.lean[0] &&
              has_type(find_result.lean[0], "lastLogin", BSON_TYPE_DATE_TIME),
          "lean find returns the stored BSON");
    find_release(g.n);
    /* findOne by email: the right document, through the unique index */
    mk_query_t *q = mk_find_one(g.User, &err, "{ email: ? }", MK_STR(g.emails[g.n / 2]));
    if (!q) die("findOne: [%s] %s", err.kind, err.message);
    mk_doc_t *one = mk_query_one(q, &err);
    char want[32];
    snprintf(want, sizeof want, "User %zu", g.n / 2);
    check(one && mk_doc_get_str(one, "name") && strcmp(mk_doc_get_str(one, "name"), want) == 0,
          "findOne by email finds its user");
    mk_doc_destroy(one);
    bson_t plan = BSON_INITIALIZER;
    check_rc(mk_query_explain(q, "queryPlanner", &plan, &err), &err, "explain findOne");
    check_doc(plan_has_stage(&plan, "IXSCAN", 0), "findOne by email uses the email index", &plan);
    bson_destroy(&plan);
    mk_query_destroy(q);
}

static void query_phases(query_figures_t *f)
{
    phase_t insert = {"insertMany", insert_prepare, insert_run, insert_release};
    f->insert = time_phase(&insert, g.n);
    insert_release(g.n); /* the last run's N documents stay: the finds read them */

    check_find_results();
    phase_t find = {"find", NULL, find_run, find_release};
    /* a warm-up on the whole collection: find has no "first k documents" form here */
    size_t warmup = g.warmup;
    g.warmup = g.n;
    find_lean = false;
    f->find_hydrated = time_phase(&find, g.n);
    find_release(g.n);
    find_lean = true;
    f->find_lean = time_phase(&find, g.n);
    find_release(g.n);
    raw_docs = xcalloc(g.n, sizeof *raw_docs);
    phase_t raw = {"raw find", NULL, raw_run, raw_release};
    f->find_raw = time_phase(&raw, g.n);
    raw_release(g.n);
    free(raw_docs);
    g.warmup = warmup;

    phase_t one = {"findOne", NULL, find_one_run, NULL};
    f->find_one = time_phase(&one, g.n);
    f->ran = true;
}

/* ---------------------------------------------------------------- Mongoose */

typedef struct mongoose_figures {
    bool ran;
    char version[32], node[32];
    double phases[7];
    double hydrated_bytes, bson_bytes;
} mongoose_figures_t;

static const char *const PHASES[7] = {"construct", "validate",   "toObject",  "hydrate",
                                      "modify",    "castFilter", "castUpdate"};

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The bench/mongoose directory (holding bench.js), or false. Candidates that do not fit the
 * buffers are skipped. */
static bool find_mongoose_dir(const char *given, const char *argv0, char *out, size_t cap)
{
    char cand[8][1024];
    int n = 0;
#define CANDIDATE(...)                                                                             \
    do {                                                                                           \
        int w_ = snprintf(cand[n], sizeof cand[n], __VA_ARGS__);                                   \
        if (w_ > 0 && (size_t)w_ < sizeof cand[n]) n++;                                            \
    } while (0)
    if (given) CANDIDATE("%s", given);
    const char *env = getenv("MK_SOURCE_DIR");
    if (env && *env) CANDIDATE("%s/bench/mongoose", env);
#ifdef MK_SOURCE_DIR
    CANDIDATE("%s/bench/mongoose", MK_SOURCE_DIR);
#endif
    CANDIDATE("bench/mongoose");
    CANDIDATE("../bench/mongoose");
    const char *slash = strrchr(argv0, '/');
    if (slash) {
        int len = (int)(slash - argv0);
        CANDIDATE("%.*s/../bench/mongoose", len, argv0);
        CANDIDATE("%.*s/../../bench/mongoose", len, argv0);
    }
#undef CANDIDATE
    for (int i = 0; i < n; i++) {
        char script[1100];
        int w = snprintf(script, sizeof script, "%s/bench.js", cand[i]);
        if (w > 0 && (size_t)w < sizeof script && is_file(script)) {
            w = snprintf(out, cap, "%s", cand[i]);
            return w > 0 && (size_t)w < cap;
        }
    }
    return false;
}

/* 'text' for the shell */
static void shell_quote(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    out[o++] = '\'';
    for (; *s && o + 5 < cap; s++) {
        if (*s == '\'') {
            memcpy(out + o, "'\\''", 4);
            o += 4;
        } else {
            out[o++] = *s;
        }
    }
    out[o++] = '\'';
    out[o] = '\0';
}

static bool json_number(const bson_t *doc, const char *path, double *out)
{
    bson_iter_t it;
    if (!find_value(doc, path, &it) ||
        !(BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_DOUBLE(&it)))
        return false;
    *out = bson_iter_as_double(&it);
    return true;
}

static void json_string(const bson_t *doc, const char *path, char *out, size_t cap)
{
    bson_iter_t it;
    if (find_value(doc, path, &it) && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(out, cap, "%s", bson_iter_utf8(&it, NULL));
    else
        snprintf(out, cap, "?");
}

/* Runs the Mongoose script; false (with a message) when it cannot run or fails. */
static bool run_mongoose(const char *dir, bool install, mongoose_figures_t *m)
{
    if (system("command -v node >/dev/null 2>&1") != 0) {
        printf("Mongoose: skipped (node is not on PATH)\n");
        return false;
    }
    char qdir[2200], cmd[4600];
    shell_quote(dir, qdir, sizeof qdir);
    char modules[1100];
    snprintf(modules, sizeof modules, "%s/node_modules/mongoose", dir);
    if (!is_dir(modules)) {
        if (!install) {
            printf("Mongoose: skipped (%s/node_modules is missing: run npm install there, or "
                   "pass --install)\n",
                   dir);
            return false;
        }
        snprintf(cmd, sizeof cmd, "cd %s && npm install --no-audit --no-fund >&2", qdir);
        fprintf(stderr, "bench_odm: %s\n", cmd);
        if (system(cmd) != 0) {
            printf("Mongoose: skipped (npm install failed)\n");
            return false;
        }
    }
    snprintf(cmd, sizeof cmd, "node %s/bench.js --json --n %zu", qdir, g.n);
    fprintf(stderr, "bench_odm: running %s\n", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) {
        printf("Mongoose: skipped (cannot run node)\n");
        return false;
    }
    size_t cap = 4096, len = 0;
    char *text = xcalloc(cap, 1);
    size_t got;
    while ((got = fread(text + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 2) {
            char *bigger = realloc(text, cap * 2);
            if (!bigger) die("out of memory");
            text = bigger;
            cap *= 2;
        }
    }
    text[len] = '\0';
    int status = pclose(p);
    if (status != 0) {
        printf("Mongoose: failed (the script exited with status %d; see its message above)\n",
               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        free(text);
        return false;
    }
    mk_error_t err = {0};
    bson_t *r = mk_json_parse(text, NULL, &err);
    if (!r) {
        printf("Mongoose: failed (its output is not JSON: %s)\n", err.message);
        free(text);
        return false;
    }
    free(text);
    bool ok = true;
    for (int i = 0; i < 7; i++) {
        char path[64];
        snprintf(path, sizeof path, "phases.%s", PHASES[i]);
        ok = ok && json_number(r, path, &m->phases[i]) && m->phases[i] > 0;
    }
    double n = 0;
    ok = ok && json_number(r, "hydratedBytes", &m->hydrated_bytes) &&
         json_number(r, "bsonBytes", &m->bson_bytes) && json_number(r, "n", &n) && (size_t)n == g.n;
    json_string(r, "mongoose", m->version, sizeof m->version);
    json_string(r, "node", m->node, sizeof m->node);
    bson_destroy(r);
    if (!ok) {
        printf("Mongoose: failed (its JSON lacks a figure, or ran on another N)\n");
        return false;
    }
    m->ran = true;
    return true;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *to)
{
    fprintf(to, "usage: bench_odm [--quick | --n N] [--no-mongoose] [--install] "
                "[--mongoose-dir DIR]\n"
                "  --quick            N = 20000 (default 100000)\n"
                "  --no-mongoose      do not run bench/mongoose/bench.js\n"
                "  --install          run npm install in bench/mongoose when Mongoose is "
                "missing\n"
                "  --mongoose-dir DIR where bench.js is (default: found from the source tree)\n");
}

static void setup_model(void)
{
    mk_error_t err = {0};
    mk_engine_opts_t opts = {.no_sync = true};
    g.conn = mk_connect_opts("memory:bench", &opts, &err);
    if (!g.conn) die("connect: [%s] %s", err.kind, err.message);
    mk_schema_t *s = mk_schema_parse(USER_SCHEMA, "{ timestamps: true }", &err);
    if (!s) die("schema: [%s] %s", err.kind, err.message);
    g.User = mk_model(g.conn, "User", s, &err);
    mk_schema_destroy(s);
    if (!g.User) die("model: [%s] %s", err.kind, err.message);
    g.schema = mk_model_schema(g.User);
}

int main(int argc, char **argv)
{
    g.n = 100000;
    bool mongoose = true, install = false;
    const char *mongoose_dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0) {
            g.n = 20000;
        } else if (strcmp(a, "--n") == 0 && i + 1 < argc) {
            char *end;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (*end || v == 0 || v > 100000000ull || !isdigit((unsigned char)argv[i][0])) {
                fprintf(stderr, "bench_odm: --n needs a positive integer, got %s\n", argv[i]);
                return 2;
            }
            g.n = (size_t)v;
        } else if (strcmp(a, "--no-mongoose") == 0) {
            mongoose = false;
        } else if (strcmp(a, "--install") == 0) {
            install = true;
        } else if (strcmp(a, "--mongoose-dir") == 0 && i + 1 < argc) {
            mongoose_dir = argv[++i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    g.warmup = g.n < WARMUP_MAX ? g.n : WARMUP_MAX;
    setvbuf(stdout, NULL, _IOLBF, 0);
    setup_model();
    build_inputs();
    g.docs = xcalloc(g.n, sizeof *g.docs);
    g.objs = xcalloc(g.n, sizeof *g.objs);
    g.hydrated = xcalloc(g.n, sizeof *g.hydrated);
    printf("meerkat ODM benchmark, N=%zu (best of %d runs after a warm-up)\n", g.n, RUNS);

    double rate[7];
    phase_t construct = {"construct", NULL, construct_run, construct_release};
    rate[0] = time_phase(&construct, g.n);
    check_construct();
    build_stored();

    phase_t validate = {"validate", NULL, validate_run, NULL};
    rate[1] = time_phase(&validate, g.n);

    phase_t to_object = {"toObject", NULL, to_object_run, to_object_release};
    rate[2] = time_phase(&to_object, g.n);
    check_to_object();
    to_object_release(g.n);
    construct_release(g.n);

    phase_t hydrate = {"hydrate", NULL, hydrate_run, hydrated_release};
    rate[3] = time_phase(&hydrate, g.n);
    check_hydrate();
    hydrated_release(g.n);

    phase_t modify = {"modify", modify_prepare, modify_run, hydrated_release};
    rate[4] = time_phase(&modify, g.n);
    check_modify();
    hydrated_release(g.n);

    phase_t cast_filter = {"castFilter", NULL, cast_filter_run, NULL};
    rate[5] = time_phase(&cast_filter, g.n);
    check_cast_filter();

    phase_t cast_update = {"castUpdate", NULL, cast_update_run, NULL};
    rate[6] = time_phase(&cast_update, g.n);
    check_cast_update();

    double hyd_bytes = hydrated_bytes(), bson_avg = bson_bytes();

    query_figures_t qf = {0};
    query_phases(&qf);

    mongoose_figures_t mf = {0};
    char dir[1024];
    if (!mongoose)
        printf("Mongoose: skipped (--no-mongoose)\n");
    else if (!find_mongoose_dir(mongoose_dir, argv[0], dir, sizeof dir))
        printf("Mongoose: skipped (bench/mongoose/bench.js not found: run from the source "
               "directory or pass --mongoose-dir)\n");
    else
        run_mongoose(dir, install, &mf);

    /* ---- the report ---- */
    char a[32], b[32];
    printf("\n");
    if (mf.ran) printf("Mongoose %s on Node %s, same N, same workload\n", mf.version, mf.node);
    printf("%-12s %16s %16s %9s  %s\n", "phase", "meerkat docs/s", "Mongoose docs/s", "ratio",
           "target 30x");
    for (int i = 0; i < 7; i++) {
        if (mf.ran) {
            double ratio = rate[i] / mf.phases[i];
            printf("%-12s %16s %16s %8.1fx  %s\n", PHASES[i], thousands(rate[i], a, sizeof a),
                   thousands(mf.phases[i], b, sizeof b), ratio,
                   ratio >= TARGET_RATIO ? "PASS" : "MISS");
        } else {
            printf("%-12s %16s %16s %9s  %s\n", PHASES[i], thousands(rate[i], a, sizeof a), "n/a",
                   "n/a", "n/a");
        }
    }
    if (hyd_bytes > 0) {
        double mem_ratio = hyd_bytes / bson_avg;
        printf("\nmemory: a hydrated document keeps %.0f bytes, its BSON is %.0f bytes: %.2fx "
               "BSON (target <= %.0fx: %s)",
               hyd_bytes, bson_avg, mem_ratio, TARGET_MEMORY,
               mem_ratio <= TARGET_MEMORY ? "PASS" : "MISS");
    } else { /* a sanitizer's allocator does not feed mallinfo2() */
        printf("\nmemory: n/a (mallinfo2() saw no growth: not glibc's malloc?), BSON %.0f bytes",
               bson_avg);
    }
    if (mf.ran) printf("; Mongoose: %.0f bytes (BSON %.0f)", mf.hydrated_bytes, mf.bson_bytes);
    printf("\n");

    if (qf.ran) {
        double hyd_cost = qf.find_lean / qf.find_hydrated; /* cost ratio = inverse rates */
        double lean_cost = qf.find_raw / qf.find_lean;
        printf("\nqueries on %zu stored documents\n", g.n);
        printf("%-26s %16s\n", "operation", "docs/s");
        printf("%-26s %16s\n", "insertMany", thousands(qf.insert, a, sizeof a));
        printf("%-26s %16s\n", "find, hydrated", thousands(qf.find_hydrated, a, sizeof a));
        printf("%-26s %16s\n", "find, lean", thousands(qf.find_lean, a, sizeof a));
        printf("%-26s %16s\n", "find, engine (raw)", thousands(qf.find_raw, a, sizeof a));
        printf("%-26s %16s\n", "findOne by email (index)", thousands(qf.find_one, a, sizeof a));
        printf("hydrated find costs %.2fx lean (target <= %.1fx: %s)\n", hyd_cost, TARGET_HYD,
               hyd_cost <= TARGET_HYD ? "PASS" : "MISS");
        printf("lean find costs %.2fx the engine's raw find (target <= %.1fx: %s)\n", lean_cost,
               TARGET_LEAN, lean_cost <= TARGET_LEAN ? "PASS" : "MISS");
    }

    destroy_bsons(g.stored, g.n);
    destroy_bsons(g.inputs, g.n);
    if (g.first_delta) bson_destroy(g.first_delta);
    if (g.first_filter) bson_destroy(g.first_filter);
    if (g.first_update) bson_destroy(g.first_update);
    free(g.stored);
    free(g.inputs);
    free(g.new_names);
    free(g.hex_ids);
    free(g.emails);
    free(g.docs);
    free(g.objs);
    free(g.hydrated);
    mk_conn_close(g.conn);
    return 0;
}
