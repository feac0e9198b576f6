/* Crash safety: a writer killed with SIGKILL loses nothing it acknowledged, and a crash never
 * leaves a partly applied command or a corrupt database behind.
 *
 * Each round forks a child that opens the data directory and runs a seeded stream of write
 * commands on collection `c` (single and batch inserts, $set/$inc by _id, multi updates,
 * multi-statement updates and deletes, deletes by filter, findAndModify, building and dropping
 * an index, creating collections); `c` carries secondary indexes (one unique) on the fields
 * those commands change, and the validate command must find them in step. Some commands are
 * multi-document transactions through the session API: inserts into `c`, an $inc of a document
 * of `c`, an upsert of the counter document of `t` and an insert into `o` of the database
 * `otherdb`, then a commit (or an abort, whose effects must never appear); a transaction counts
 * as acknowledged only once its commit returned, and one in flight at the kill must be visible
 * whole or not at all, across both collections and both databases. Before each command the
 * child sends the parent an INTENT record describing it, and after the command returned ok an
 * ACK record, both fixed-size writes to a pipe (atomic below PIPE_BUF). The parent kills the
 * child at a random moment, reopens the directory and checks that the documents are exactly
 * those of every acknowledged command, plus the one command that may have been in flight,
 * applied whole or not at all. The directory carries over from round to round, so later rounds
 * also recover from earlier crashes.
 *
 * MK_CRASH_SEED=<n> replays a seed (the command streams; kill timing still varies) and
 * MK_CRASH_SECONDS=<s> sets the time budget of the durable test (default 20 s). */
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NGROUPS           4
#define MAX_IDS           4    /* ids named by one multi-statement command */
#define MAX_OPS_PER_ROUND 400  /* a child that gets this far exits on its own */
#define MAX_EXTRA_COLLS   60   /* collections k<seq> made by NEWCOLL commands */
#define LIVE_SOFT_MAX     1200 /* past this many documents the stream favours deletes */
#define PAD_MAX           40000
#define MIN_ROUNDS        5
#define HANG_US           (20 * 1000000LL) /* a child without a single ack this long is stuck */
#define REPORT_MAX        16384

/* ------------------------------------------------------------------ commands and records */

enum op_kind {
    OP_INS1,     /* insert one document */
    OP_INSN,     /* insert a batch of `count` documents: all or nothing */
    OP_INC,      /* $inc n by _id */
    OP_SET,      /* $set s: seq by _id */
    OP_MULTI,    /* $inc m on every document of group g (multi: true) */
    OP_UPD2,     /* one update command, one statement per id: $inc n / $set s alternately */
    OP_DEL,      /* delete by _id */
    OP_DEL2,     /* one delete command, one statement per id */
    OP_DELMANY,  /* delete { g, _id: { $lt: first } }, limit 0 */
    OP_FAM,      /* findAndModify $inc n + $set s by _id, new: true */
    OP_FAMDEL,   /* findAndModify remove the smallest _id of group g */
    OP_NEWCOLL,  /* insert into a new collection k<seq> (a catalog change) */
    OP_INDEX,    /* count 1: build index n_1_m_1 over every document; count 0: drop it */
    OP_TXN,      /* transaction: insert `count` documents from `first`, $inc n of ids[0] (when
                    nids), upsert t's counter { _id: 1 } ($inc n, $set last: seq), insert
                    { _id: seq } into otherdb.o; commit */
    OP_TXNABORT, /* the same statements, then abort: never applied */
    OP_KINDS
};

static const char *const op_names[OP_KINDS] = {
    "insert-one",       "insert-batch",   "inc-by-id",    "set-by-id",    "multi-inc-group",
    "update-stmts",     "delete-id",      "delete-stmts", "delete-group", "fam-inc-by-id",
    "fam-remove-group", "new-collection", "toggle-index", "txn-commit",   "txn-abort"};

typedef struct op {
    uint32_t kind;
    int32_t g;
    int64_t seq;   /* unique across rounds: the value $set writes, the k<seq> name */
    int64_t first; /* inserts: first new _id; OP_DELMANY: the _id bound */
    int64_t count; /* inserts: documents; OP_MULTI / OP_DELMANY: documents affected */
    int64_t ids[MAX_IDS];
    uint32_t nids;
} op_t;

enum rec_kind { REC_INTENT = 1, REC_ACK, REC_FAIL, REC_DONE };
#define REC_MAGIC 0x6d6b6372u

typedef struct rec {
    uint32_t magic;
    uint32_t kind;
    op_t op;
    char msg[512];
} rec_t;

_Static_assert(sizeof(rec_t) <= PIPE_BUF, "records must be written atomically");

/* ------------------------------------------------------------------ the expected state */

typedef struct doc_state {
    bool live;
    int32_t n, m;
    int64_t s;
    uint32_t pos; /* index in model.live */
} doc_state_t;

typedef struct model {
    doc_state_t *docs; /* indexed by _id; _ids start at 1 */
    size_t docs_cap;
    int64_t *live; /* the live _ids, unordered */
    size_t nlive, live_cap;
    int64_t next_id, next_seq;
    bool c_exists;
    int64_t colls[MAX_EXTRA_COLLS]; /* seq of each collection k<seq> */
    size_t ncolls;
    bool extra_index; /* n_1_m_1 exists */
    /* what committed transactions left outside c */
    int32_t t_n;    /* t's counter document { _id: 1, n, last }: committed transactions */
    int64_t t_last; /* seq of the last one */
    int64_t *o_ids; /* the _ids in otherdb.o, ascending (acknowledgements come in order) */
    size_t no, o_cap;
} model_t;

/* Secondary indexes of c, on fields the commands change: every write must keep them in step
 * with the records, in the same transaction. One is unique (its entries are laid out
 * differently); the last one comes and goes with OP_INDEX. */
static const char *const index_names[] = {"_id_", "g_1_n_1", "s_-1", "m_1__id_1", "n_1_m_1"};
#define NINDEXES 4 /* always there */

static int32_t group_of(int64_t id)
{
    return (int32_t)(id % NGROUPS);
}

/* The array p with room for `need` elements (zero-filled past the old end), or NULL when out
 * of memory (p is then left as it was). */
static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need) cap2 *= 2;
    char *q = realloc(p, cap2 * elem);
    if (!q) return NULL;
    memset(q + *cap * elem, 0, (cap2 - *cap) * elem);
    *cap = cap2;
    return q;
}

static bool model_reserve(model_t *m, int64_t id_end)
{
    doc_state_t *d = grow(m->docs, &m->docs_cap, (size_t)id_end, sizeof *d);
    if (d) m->docs = d;
    return d != NULL;
}

static bool doc_add(model_t *m, int64_t id)
{
    if (!model_reserve(m, id + 1)) return false;
    int64_t *live = grow(m->live, &m->live_cap, m->nlive + 1, sizeof *live);
    if (!live) return false;
    m->live = live;
    m->docs[id] = (doc_state_t){.live = true, .pos = (uint32_t)m->nlive};
    m->live[m->nlive++] = id;
    return true;
}

static void doc_del(model_t *m, int64_t id)
{
    doc_state_t *d = &m->docs[id];
    int64_t last = m->live[--m->nlive];
    m->live[d->pos] = last;
    m->docs[last].pos = d->pos;
    d->live = false;
}

static void model_free(model_t *m)
{
    free(m->docs);
    free(m->live);
    free(m->o_ids);
    memset(m, 0, sizeof *m);
}

/* Counters a command used up, whether or not it was applied. */
static bool op_reserve(model_t *m, const op_t *op)
{
    if (op->seq >= m->next_seq) m->next_seq = op->seq + 1;
    if (op->kind != OP_INS1 && op->kind != OP_INSN && op->kind != OP_TXN && op->kind != OP_TXNABORT)
        return true;
    if (op->first + op->count > m->next_id) m->next_id = op->first + op->count;
    return model_reserve(m, m->next_id);
}

/* What a command does to the state when it is applied. */
static bool op_apply(model_t *m, const op_t *op)
{
    switch (op->kind) {
    case OP_INS1:
    case OP_INSN:
        for (int64_t id = op->first; id < op->first + op->count; id++)
            if (!doc_add(m, id)) return false;
        m->c_exists = true;
        break;
    case OP_INC:
        m->docs[op->ids[0]].n++;
        break;
    case OP_SET:
        m->docs[op->ids[0]].s = op->seq;
        break;
    case OP_MULTI:
        for (size_t i = 0; i < m->nlive; i++)
            if (group_of(m->live[i]) == op->g) m->docs[m->live[i]].m++;
        break;
    case OP_UPD2:
        for (uint32_t i = 0; i < op->nids; i++) {
            if (i % 2 == 0)
                m->docs[op->ids[i]].n++;
            else
                m->docs[op->ids[i]].s = op->seq;
        }
        break;
    case OP_DEL:
    case OP_DEL2:
    case OP_FAMDEL:
        for (uint32_t i = 0; i < op->nids; i++) doc_del(m, op->ids[i]);
        break;
    case OP_DELMANY:
        /* backwards: a swap-remove only moves an already visited id into place */
        for (size_t i = m->nlive; i-- > 0;)
            if (group_of(m->live[i]) == op->g && m->live[i] < op->first) doc_del(m, m->live[i]);
        break;
    case OP_FAM:
        m->docs[op->ids[0]].n++;
        m->docs[op->ids[0]].s = op->seq;
        break;
    case OP_NEWCOLL:
        m->colls[m->ncolls++] = op->seq;
        break;
    case OP_INDEX:
        m->extra_index = op->count != 0;
        break;
    case OP_TXN: {
        for (int64_t id = op->first; id < op->first + op->count; id++)
            if (!doc_add(m, id)) return false;
        m->c_exists = true;
        if (op->nids) m->docs[op->ids[0]].n++;
        m->t_n++;
        m->t_last = op->seq;
        int64_t *o = grow(m->o_ids, &m->o_cap, m->no + 1, sizeof *o);
        if (!o) return false;
        m->o_ids = o;
        m->o_ids[m->no++] = op->seq;
        break;
    }
    case OP_TXNABORT:
        break; /* an aborted transaction leaves nothing behind */
    }
    return true;
}

static void op_describe(const op_t *op, char *buf, size_t cap)
{
    int k = snprintf(buf, cap, "#%" PRId64 " %s", op->seq, op_names[op->kind]);
    if (k < 0 || (size_t)k >= cap) return;
    if (op->kind == OP_INS1 || op->kind == OP_INSN)
        snprintf(buf + k, cap - k, " _id %" PRId64 "..%" PRId64, op->first,
                 op->first + op->count - 1);
    else if (op->kind == OP_MULTI)
        snprintf(buf + k, cap - k, " g %d (%" PRId64 " docs)", op->g, op->count);
    else if (op->kind == OP_DELMANY)
        snprintf(buf + k, cap - k, " g %d _id < %" PRId64 " (%" PRId64 " docs)", op->g, op->first,
                 op->count);
    else if (op->kind == OP_NEWCOLL)
        snprintf(buf + k, cap - k, " k%" PRId64, op->seq);
    else if (op->kind == OP_INDEX)
        snprintf(buf + k, cap - k, op->count ? " create n_1_m_1" : " drop n_1_m_1");
    else if (op->kind == OP_TXN || op->kind == OP_TXNABORT) {
        int w = snprintf(buf + k, cap - k, " insert _id %" PRId64 "..%" PRId64, op->first,
                         op->first + op->count - 1);
        if (w > 0 && (size_t)(k + w) < cap && op->nids)
            snprintf(buf + k + w, cap - k - w, ", $inc _id %" PRId64, op->ids[0]);
    } else
        for (uint32_t i = 0; i < op->nids && (size_t)k < cap; i++) {
            int w = snprintf(buf + k, cap - k, " _id %" PRId64, op->ids[i]);
            if (w < 0) return;
            k += w;
        }
}

/* ------------------------------------------------------------------ deterministic randomness */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(rng_next(s) % n);
}

static int64_t random_live(const model_t *m, uint64_t *rng)
{
    return m->live[rng_below(rng, (uint32_t)m->nlive)];
}

/* The padding of a document depends on its _id only; some span several overflow pages. */
static char pad_buf[PAD_MAX + 1];

static const char *pad_for(int64_t id)
{
    size_t n = id % 499 == 0  ? 20000 + (size_t)(id % 20000)
               : id % 37 == 0 ? 2000 + (size_t)(id % 2000)
                              : (size_t)((id * 131) % 120);
    for (size_t i = 0; i < n; i++) pad_buf[i] = (char)('a' + (id + (int64_t)i) % 26);
    pad_buf[n] = 0;
    return pad_buf;
}

/* The next command of the stream; it draws only on the state and the generator. */
static void gen_op(model_t *m, uint64_t *rng, op_t *op)
{
    memset(op, 0, sizeof *op);
    op->seq = m->next_seq++;
    int w[OP_KINDS] = {0};
    bool crowded = m->nlive > LIVE_SOFT_MAX;
    w[OP_INS1] = crowded ? 2 : 10;
    w[OP_INSN] = crowded ? 1 : 8;
    if (m->nlive > 0) {
        w[OP_INC] = 12;
        w[OP_SET] = 8;
        w[OP_MULTI] = 5;
        w[OP_DEL] = crowded ? 16 : 6;
        w[OP_DELMANY] = crowded ? 4 : 1;
        w[OP_FAM] = 8;
        w[OP_FAMDEL] = 4;
    }
    if (m->nlive >= 2) {
        w[OP_UPD2] = 8;
        w[OP_DEL2] = crowded ? 8 : 3;
    }
    if (m->ncolls < MAX_EXTRA_COLLS) w[OP_NEWCOLL] = 1;
    w[OP_INDEX] = 1;
    w[OP_TXN] = 6;
    w[OP_TXNABORT] = 2;
    int total = 0;
    for (int k = 0; k < OP_KINDS; k++) total += w[k];
    int pick = (int)rng_below(rng, (uint32_t)total);
    int kind = 0;
    while (pick >= w[kind]) pick -= w[kind++];
    op->kind = (uint32_t)kind;

    switch (op->kind) {
    case OP_INS1:
    case OP_INSN:
        op->count = op->kind == OP_INS1      ? 1
                    : rng_below(rng, 8) == 0 ? 30 + rng_below(rng, 91)
                                             : 2 + rng_below(rng, 7);
        op->first = m->next_id;
        m->next_id += op->count;
        break;
    case OP_INC:
    case OP_SET:
    case OP_DEL:
    case OP_FAM:
        op->ids[0] = random_live(m, rng);
        op->nids = 1;
        break;
    case OP_UPD2:
    case OP_DEL2: {
        uint32_t k = 2 + rng_below(rng, MAX_IDS - 1);
        if (k > m->nlive) k = (uint32_t)m->nlive;
        while (op->nids < k) {
            int64_t id = random_live(m, rng);
            bool dup = false;
            for (uint32_t i = 0; i < op->nids; i++) dup |= op->ids[i] == id;
            if (!dup) op->ids[op->nids++] = id;
        }
        break;
    }
    case OP_MULTI:
        op->g = (int32_t)rng_below(rng, NGROUPS);
        for (size_t i = 0; i < m->nlive; i++) op->count += group_of(m->live[i]) == op->g;
        break;
    case OP_DELMANY: {
        int64_t x = random_live(m, rng);
        op->g = group_of(x);
        op->first = x + 1;
        for (size_t i = 0; i < m->nlive; i++)
            op->count += group_of(m->live[i]) == op->g && m->live[i] < op->first;
        break;
    }
    case OP_INDEX:
        op->count = !m->extra_index;
        break;
    case OP_TXN:
    case OP_TXNABORT:
        op->count = 1 + rng_below(rng, 3);
        op->first = m->next_id;
        m->next_id += op->count;
        if (m->nlive > 0) {
            op->ids[0] = random_live(m, rng);
            op->nids = 1;
        }
        break;
    case OP_FAMDEL:
        op->g = group_of(random_live(m, rng));
        op->ids[0] = INT64_MAX;
        for (size_t i = 0; i < m->nlive; i++)
            if (group_of(m->live[i]) == op->g && m->live[i] < op->ids[0]) op->ids[0] = m->live[i];
        op->nids = 1;
        break;
    }
}

/* ------------------------------------------------------------------ the child: the writer */

static void send_rec(int fd, uint32_t kind, const op_t *op, const char *msg)
{
    rec_t r;
    memset(&r, 0, sizeof r);
    r.magic = REC_MAGIC;
    r.kind = kind;
    if (op) r.op = *op;
    if (msg) snprintf(r.msg, sizeof r.msg, "%s", msg);
    const char *p = (const char *)&r;
    size_t left = sizeof r;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(3); /* the parent is gone */
        p += w;
        left -= (size_t)w;
    }
}

static int64_t field_int(const bson_t *doc, const char *path, bool *found)
{
    bson_iter_t it, f;
    *found = bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &f) &&
             BSON_ITER_HOLDS_NUMBER(&f);
    return *found ? bson_iter_as_int64(&f) : 0;
}

/* Runs cmd (consumed; NULL when building it failed) against database db, in session s when s
 * is not NULL, and checks ok: 1, no writeErrors, and the integer at `path` equals `want` (when
 * path is not NULL). */
static bool exec_in(mk_engine_t *eng, mk_session_t *s_, const char *db, bson_t *cmd,
                    const mk_error_t *build_err, bson_t *reply, const char *path, int64_t want,
                    char *why, size_t cap)
{
    if (!cmd) {
        snprintf(why, cap, "building the command failed: %.200s", build_err->message);
        return false;
    }
    mk_error_t err = {0};
    bson_reinit(reply);
    int rc = s_ ? mk_session_command(s_, db, cmd, reply, &err)
                : mk_engine_command(eng, db, cmd, reply, &err);
    bson_destroy(cmd);
    bson_iter_t it;
    bool found = false;
    int64_t got = path ? field_int(reply, path, &found) : 0;
    if (rc == MK_OK && !bson_iter_init_find(&it, reply, "writeErrors") &&
        (!path || (found && got == want)))
        return true;
    char *s = bson_as_relaxed_extended_json(reply, NULL);
    if (rc != MK_OK)
        snprintf(why, cap, "command failed: %.200s (reply %.300s)", err.message, s ? s : "?");
    else
        snprintf(why, cap, "unexpected reply, wanted %s = %" PRId64 ": %.300s", path ? path : "ok",
                 want, s ? s : "?");
    bson_free(s);
    return false;
}

static bool exec_cmd(mk_engine_t *eng, bson_t *cmd, const mk_error_t *build_err, bson_t *reply,
                     const char *path, int64_t want, char *why, size_t cap)
{
    return exec_in(eng, NULL, "test", cmd, build_err, reply, path, want, why, cap);
}

/* Builds { _id, g, n: 0, m: 0, s: 0, pad } as a user would, with bound values. */
static bson_t *new_doc(int64_t id, mk_error_t *e)
{
    return mk_bson(e, "{ _id: ?, g: ?, n: 0, m: 0, s: ?, pad: ? }", MK_I64(id),
                   MK_I32(group_of(id)), MK_I64(0), MK_STR(pad_for(id)));
}

/* Appends doc (consumed) as element i of array arr. */
static bool push_doc(bson_t *arr, uint32_t i, bson_t *doc)
{
    if (!doc) return false;
    char key[16];
    const char *k;
    bson_uint32_to_string(i, &k, key, sizeof key);
    bool ok = bson_append_document(arr, k, -1, doc);
    bson_destroy(doc);
    return ok;
}

/* The statements of an OP_TXN / OP_TXNABORT transaction in session s, then its commit or
 * abort. A statement reads back the transaction's own earlier writes (the counter and the
 * $inc), which no other reader may see before the commit. */
static bool run_txn(mk_session_t *s, const model_t *m, const op_t *op, char *why, size_t cap)
{
    mk_error_t e = {0};
    bson_t reply = BSON_INITIALIZER;
    bson_t arr = BSON_INITIALIZER;
    bson_t *cmd;
    bool ok = mk_session_start_transaction(s, &e) == MK_OK;
    if (!ok) snprintf(why, cap, "startTransaction failed: %.200s", e.message);
    for (int64_t i = 0; ok && i < op->count; i++)
        ok = push_doc(&arr, (uint32_t)i, new_doc(op->first + i, &e));
    if (ok) {
        cmd = mk_bson(&e, "{ insert: 'c', documents: ? }", MK_ARRAY(&arr));
        ok = exec_in(NULL, s, "test", cmd, &e, &reply, "n", op->count, why, cap);
    }
    if (ok && op->nids) {
        cmd = mk_bson(&e,
                      "{ findAndModify: 'c', query: { _id: ? }, update: { $inc: { n: 1 } }, new: "
                      "true }",
                      MK_I64(op->ids[0]));
        ok = exec_in(NULL, s, "test", cmd, &e, &reply, "value.n", m->docs[op->ids[0]].n + 1, why,
                     cap);
    }
    if (ok) {
        cmd = mk_bson(&e,
                      "{ update: 't', updates: [ { q: { _id: 1 }, u: { $inc: { n: 1 }, $set: { "
                      "last: ? } }, upsert: true } ] }",
                      MK_I64(op->seq));
        ok = exec_in(NULL, s, "test", cmd, &e, &reply, "n", 1, why, cap);
    }
    if (ok) {
        cmd = mk_bson(&e, "{ insert: 'o', documents: [ { _id: ?, v: 'o' } ] }", MK_I64(op->seq));
        ok = exec_in(NULL, s, "otherdb", cmd, &e, &reply, "n", 1, why, cap);
    }
    if (ok) {
        /* the transaction sees its own counter update */
        cmd = mk_bson(&e, "{ find: 't', filter: { _id: 1 } }");
        ok = exec_in(NULL, s, "test", cmd, &e, &reply, "cursor.firstBatch.0.n", m->t_n + 1, why,
                     cap);
    }
    if (ok) {
        bool commit = op->kind == OP_TXN;
        int rc =
            commit ? mk_session_commit_transaction(s, &e) : mk_session_abort_transaction(s, &e);
        if (rc != MK_OK) {
            snprintf(why, cap, "%s failed: %.200s",
                     commit ? "commitTransaction" : "abortTransaction", e.message);
            ok = false;
        }
    }
    bson_destroy(&arr);
    bson_destroy(&reply);
    return ok;
}

static bool run_op(mk_engine_t *eng, mk_session_t *sess, const model_t *m, const op_t *op,
                   char *why, size_t cap)
{
    if (op->kind == OP_TXN || op->kind == OP_TXNABORT) return run_txn(sess, m, op, why, cap);

    mk_error_t e = {0};
    bson_t reply = BSON_INITIALIZER;
    bson_t arr = BSON_INITIALIZER;
    bson_t *cmd = NULL;
    bool ok = true;
    const doc_state_t *d = op->nids ? &m->docs[op->ids[0]] : NULL;
    char name[32];
    switch (op->kind) {
    case OP_INS1:
    case OP_INSN:
        for (int64_t i = 0; ok && i < op->count; i++)
            ok = push_doc(&arr, (uint32_t)i, new_doc(op->first + i, &e));
        cmd = ok ? mk_bson(&e, "{ insert: 'c', documents: ? }", MK_ARRAY(&arr)) : NULL;
        ok = exec_cmd(eng, cmd, &e, &reply, "n", op->count, why, cap);
        break;
    case OP_INC:
        cmd = mk_bson(&e, "{ update: 'c', updates: [ { q: { _id: ? }, u: { $inc: { n: 1 } } } ] }",
                      MK_I64(op->ids[0]));
        ok = exec_cmd(eng, cmd, &e, &reply, "nModified", 1, why, cap);
        break;
    case OP_SET:
        cmd = mk_bson(&e, "{ update: 'c', updates: [ { q: { _id: ? }, u: { $set: { s: ? } } } ] }",
                      MK_I64(op->ids[0]), MK_I64(op->seq));
        ok = exec_cmd(eng, cmd, &e, &reply, "nModified", 1, why, cap);
        break;
    case OP_MULTI:
        cmd = mk_bson(&e,
                      "{ update: 'c', updates: [ { q: { g: ? }, u: { $inc: { m: 1 } }, multi: true "
                      "} ] }",
                      MK_I32(op->g));
        ok = exec_cmd(eng, cmd, &e, &reply, "nModified", op->count, why, cap);
        break;
    case OP_UPD2:
        for (uint32_t i = 0; ok && i < op->nids; i++)
            ok = push_doc(&arr, i,
                          i % 2 == 0 ? mk_bson(&e, "{ q: { _id: ? }, u: { $inc: { n: 1 } } }",
                                               MK_I64(op->ids[i]))
                                     : mk_bson(&e, "{ q: { _id: ? }, u: { $set: { s: ? } } }",
                                               MK_I64(op->ids[i]), MK_I64(op->seq)));
        cmd = ok ? mk_bson(&e, "{ update: 'c', updates: ? }", MK_ARRAY(&arr)) : NULL;
        ok = exec_cmd(eng, cmd, &e, &reply, "nModified", op->nids, why, cap);
        break;
    case OP_DEL:
        cmd = mk_bson(&e, "{ delete: 'c', deletes: [ { q: { _id: ? }, limit: 1 } ] }",
                      MK_I64(op->ids[0]));
        ok = exec_cmd(eng, cmd, &e, &reply, "n", 1, why, cap);
        break;
    case OP_DEL2:
        for (uint32_t i = 0; ok && i < op->nids; i++)
            ok = push_doc(&arr, i, mk_bson(&e, "{ q: { _id: ? }, limit: 1 }", MK_I64(op->ids[i])));
        cmd = ok ? mk_bson(&e, "{ delete: 'c', deletes: ? }", MK_ARRAY(&arr)) : NULL;
        ok = exec_cmd(eng, cmd, &e, &reply, "n", op->nids, why, cap);
        break;
    case OP_DELMANY:
        cmd =
            mk_bson(&e, "{ delete: 'c', deletes: [ { q: { g: ?, _id: { $lt: ? } }, limit: 0 } ] }",
                    MK_I32(op->g), MK_I64(op->first));
        ok = exec_cmd(eng, cmd, &e, &reply, "n", op->count, why, cap);
        break;
    case OP_FAM:
        cmd = mk_bson(&e,
                      "{ findAndModify: 'c', query: { _id: ? }, update: { $inc: { n: 1 }, $set: { "
                      "s: ? } }, new: true }",
                      MK_I64(op->ids[0]), MK_I64(op->seq));
        ok = exec_cmd(eng, cmd, &e, &reply, "value.n", d->n + 1, why, cap);
        break;
    case OP_FAMDEL:
        cmd = mk_bson(&e, "{ findAndModify: 'c', query: { g: ? }, sort: { _id: 1 }, remove: true }",
                      MK_I32(op->g));
        ok = exec_cmd(eng, cmd, &e, &reply, "value._id", op->ids[0], why, cap);
        break;
    case OP_NEWCOLL:
        snprintf(name, sizeof name, "k%" PRId64, op->seq);
        cmd = mk_bson(&e, "{ insert: ?, documents: [ { _id: ?, v: 'k' } ] }", MK_STR(name),
                      MK_I64(op->seq));
        ok = exec_cmd(eng, cmd, &e, &reply, "n", 1, why, cap);
        break;
    case OP_INDEX:
        if (op->count)
            cmd = mk_bson(&e,
                          "{ createIndexes: 'c', indexes: [ { key: { n: 1, m: 1 }, name: ? } "
                          "] }",
                          MK_STR(index_names[NINDEXES]));
        else
            cmd = mk_bson(&e, "{ dropIndexes: 'c', index: ? }", MK_STR(index_names[NINDEXES]));
        ok = exec_cmd(eng, cmd, &e, &reply, op->count ? "numIndexesAfter" : "nIndexesWas",
                      NINDEXES + 1, why, cap);
        break;
    case OP_TXN:
    case OP_TXNABORT:
        break; /* run_txn */
    }
    if (!ok && !why[0]) snprintf(why, cap, "building the command failed: %.200s", e.message);
    if (ok && op->kind == OP_FAM) {
        bool found;
        int64_t s = field_int(&reply, "value.s", &found);
        if (!found || s != op->seq) {
            snprintf(why, cap, "findAndModify returned s = %" PRId64 ", wanted %" PRId64, s,
                     op->seq);
            ok = false;
        }
    }
    bson_destroy(&arr);
    bson_destroy(&reply);
    return ok;
}

static void child_fail(int fd, const op_t *op, const char *why)
{
    char desc[160] = "";
    if (op) op_describe(op, desc, sizeof desc);
    char msg[512];
    snprintf(msg, sizeof msg, "%.150s%s%.340s", desc, op ? ": " : "", why);
    send_rec(fd, REC_FAIL, op, msg);
    _exit(2);
}

/* Runs the stream and never returns; the model is the parent's, copied by fork. */
static void child_main(int fd, const char *dir, const mk_engine_opts_t *opts, model_t *m,
                       uint64_t seed)
{
    mk_error_t err = {0};
    mk_engine_t *eng = mk_engine_open(dir, opts, &err);
    if (!eng) child_fail(fd, NULL, err.message);
    mk_session_t *sess = mk_session_start(eng, &err);
    if (!sess) child_fail(fd, NULL, err.message);
    uint64_t rng = seed;
    for (int i = 0; i < MAX_OPS_PER_ROUND; i++) {
        op_t op;
        gen_op(m, &rng, &op);
        if (!op_reserve(m, &op)) child_fail(fd, &op, "out of memory");
        send_rec(fd, REC_INTENT, &op, NULL);
        char why[600] = "";
        if (!run_op(eng, sess, m, &op, why, sizeof why)) child_fail(fd, &op, why);
        if (!op_apply(m, &op)) child_fail(fd, &op, "out of memory");
        send_rec(fd, REC_ACK, &op, NULL);
    }
    mk_session_end(sess);
    mk_engine_close(eng);
    send_rec(fd, REC_DONE, NULL, NULL);
    _exit(0);
}

/* ------------------------------------------------------------------ the parent: the checker */

typedef struct crash_ctx {
    const char *name;
    char *dir;
    const mk_engine_opts_t *opts; /* NULL: the defaults, which are durable */
    model_t model;
    uint64_t base_seed;
    char report[REPORT_MAX];
    size_t report_len;
    bool failed;
    /* the current round, for reports */
    int round;
    uint64_t seed;
    op_t log[MAX_OPS_PER_ROUND];
    size_t nlog;
    /* totals */
    int64_t acked;
    int inflight_applied, inflight_dropped, none_inflight, completed, kill_modes[3];
    int64_t txn_committed, txn_aborted; /* acknowledged */
    int txn_inflight_applied, txn_inflight_dropped, abort_inflight;
} crash_ctx_t;

typedef struct round_state {
    bool pending, done, failed;
    op_t inflight;
    uint32_t acks, intents;
    int64_t intent_at, busy_us; /* when the last command started; time spent in commands */
    char child_msg[512];
} round_state_t;

static bool failf(crash_ctx_t *cx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool failf(crash_ctx_t *cx, const char *fmt, ...)
{
    cx->failed = true;
    if (cx->report_len < sizeof cx->report) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(cx->report + cx->report_len, sizeof cx->report - cx->report_len, fmt, ap);
        va_end(ap);
        if (k > 0) cx->report_len += (size_t)k;
        if (cx->report_len > sizeof cx->report) cx->report_len = sizeof cx->report;
    }
    return false;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool take_record(crash_ctx_t *cx, round_state_t *rd, const rec_t *r)
{
    char desc[160];
    if (r->magic != REC_MAGIC) return failf(cx, "corrupt record from the child\n");
    switch (r->kind) {
    case REC_INTENT:
        if (rd->pending) return failf(cx, "two commands in flight at once\n");
        if (r->op.kind >= OP_KINDS || r->op.nids > MAX_IDS)
            return failf(cx, "corrupt record from the child\n");
        rd->pending = true;
        rd->inflight = r->op;
        rd->intents++;
        rd->intent_at = now_us();
        if (cx->nlog < MAX_OPS_PER_ROUND) cx->log[cx->nlog++] = r->op;
        if (!op_reserve(&cx->model, &r->op)) return failf(cx, "out of memory\n");
        return true;
    case REC_ACK:
        if (!rd->pending || r->op.seq != rd->inflight.seq) {
            op_describe(&r->op, desc, sizeof desc);
            return failf(cx, "acknowledgement of %s without its intent\n", desc);
        }
        rd->pending = false;
        rd->acks++;
        rd->busy_us += now_us() - rd->intent_at;
        cx->acked++;
        cx->txn_committed += r->op.kind == OP_TXN;
        cx->txn_aborted += r->op.kind == OP_TXNABORT;
        if (!op_apply(&cx->model, &rd->inflight)) return failf(cx, "out of memory\n");
        return true;
    case REC_FAIL:
        rd->failed = true;
        snprintf(rd->child_msg, sizeof rd->child_msg, "%s", r->msg);
        return true;
    case REC_DONE:
        rd->done = true;
        return true;
    }
    return failf(cx, "corrupt record from the child\n");
}

/* Reads what is available; *eof when the child's end is closed. Whole records only: a torn
 * tail (impossible for atomic pipe writes, but cheap to allow for) stays in buf and is ignored. */
static bool read_records(crash_ctx_t *cx, round_state_t *rd, int fd, unsigned char *buf,
                         size_t *have, size_t cap, bool *eof)
{
    ssize_t r = read(fd, buf + *have, cap - *have);
    if (r < 0 && errno == EINTR) return true;
    if (r < 0) return failf(cx, "reading the pipe: %s\n", strerror(errno));
    if (r == 0) {
        *eof = true;
        return true;
    }
    *have += (size_t)r;
    size_t off = 0;
    for (; *have - off >= sizeof(rec_t); off += sizeof(rec_t)) {
        rec_t rec;
        memcpy(&rec, buf + off, sizeof rec);
        if (!take_record(cx, rd, &rec)) return false;
    }
    memmove(buf, buf + off, *have - off);
    *have -= off;
    return true;
}

/* Watches the child and kills it at the moment this round's seed picks: after a random delay,
 * after the N-th acknowledgement, or just after the N-th command started (most likely to hit a
 * command mid-commit). Returns with the child reaped. */
static bool watch_and_kill(crash_ctx_t *cx, round_state_t *rd, pid_t pid, int fd, uint64_t *rng)
{
    int mode = (int)rng_below(rng, 3);
    cx->kill_modes[mode]++;
    int64_t t0 = now_us();
    int64_t kill_at = t0 + (int64_t)rng_below(rng, 50001);
    uint32_t target = mode == 1 ? rng_below(rng, 40) : 1 + rng_below(rng, 40);
    uint64_t frac = rng_next(rng);
    unsigned char buf[sizeof(rec_t) * 8];
    size_t have = 0;
    bool eof = false, killed = false, ok = true, hung = false;
    while (!eof) {
        int64_t t = now_us();
        if (!killed) {
            bool fire =
                mode == 0 ? t >= kill_at : (mode == 1 ? rd->acks >= target : rd->intents >= target);
            if (!ok || t - t0 >= HANG_US) {
                hung = ok && rd->acks == 0 && !rd->done;
                fire = true;
            } else if (fire && mode == 1) {
                usleep((useconds_t)(frac % 3000));
            } else if (fire && mode == 2) {
                /* somewhere inside a command of typical length, so that many kills land in
                 * the middle of a commit */
                int64_t typical = rd->acks ? rd->busy_us / rd->acks + 1 : 1500;
                usleep((useconds_t)(frac % (uint64_t)typical));
            }
            if (fire) {
                kill(pid, SIGKILL); /* not reaped yet, so pid is still our child */
                killed = true;
            }
        }
        int64_t wait_us = killed ? -1 : mode == 0 ? kill_at - t : t0 + HANG_US - t;
        if (wait_us < 0 && !killed) wait_us = 0;
        struct timespec ts = {.tv_sec = wait_us / 1000000, .tv_nsec = (wait_us % 1000000) * 1000};
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = ppoll(&p, 1, killed ? NULL : &ts, NULL);
        if (n < 0 && errno != EINTR) {
            ok = failf(cx, "poll: %s\n", strerror(errno));
            if (killed) break;
            continue;
        }
        if (n > 0 && ok && !read_records(cx, rd, fd, buf, &have, sizeof buf, &eof)) ok = false;
        if (n > 0 && !ok) {
            /* keep draining so the child is never blocked on a full pipe */
            ssize_t r = read(fd, buf, sizeof buf);
            if (r == 0) eof = true;
        }
    }
    if (!killed) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!ok) return false;
    if (hung) return failf(cx, "the child acknowledged nothing in %lld s\n", HANG_US / 1000000);
    if (rd->failed) return failf(cx, "the child failed: %s\n", rd->child_msg);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return true;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && rd->done) {
        cx->completed++;
        return true;
    }
    if (WIFSIGNALED(status)) return failf(cx, "the child died of signal %d\n", WTERMSIG(status));
    return failf(cx, "the child exited with status %d\n", WEXITSTATUS(status));
}

/* ---- what the directory holds */

typedef struct actual {
    bson_t **docs; /* collection c, in the order find returned them */
    size_t n, cap;
    char **colls;
    size_t ncolls, colls_cap;
    char **indexes; /* of c */
    size_t nindexes, indexes_cap;
    bson_t *t_doc; /* t's documents, when there is exactly one */
    size_t t_count;
    int64_t *o_ids; /* otherdb.o's _ids, ascending */
    size_t no, o_cap;
    bool o_bad;     /* a document of otherdb.o is not { _id: <int64>, v: 'o' } */
    size_t o_colls; /* collections listed in otherdb */
} actual_t;

static void actual_free(actual_t *a)
{
    for (size_t i = 0; i < a->n; i++) bson_destroy(a->docs[i]);
    for (size_t i = 0; i < a->ncolls; i++) free(a->colls[i]);
    for (size_t i = 0; i < a->nindexes; i++) free(a->indexes[i]);
    free(a->docs);
    free(a->colls);
    free(a->indexes);
    if (a->t_doc) bson_destroy(a->t_doc);
    free(a->o_ids);
    memset(a, 0, sizeof *a);
}

/* Runs a read command against database db; *reply is set on success (caller destroys). */
static bool query_db(crash_ctx_t *cx, mk_engine_t *eng, const char *db, bson_t *cmd,
                     const mk_error_t *build_err, bson_t **reply)
{
    *reply = NULL;
    if (!cmd) return failf(cx, "building a command failed: %s\n", build_err->message);
    bson_t *r = bson_new();
    mk_error_t err = {0};
    int rc = mk_engine_command(eng, db, cmd, r, &err);
    if (rc != MK_OK) {
        char *c = bson_as_relaxed_extended_json(cmd, NULL);
        failf(cx, "%s failed after the crash: %s\n", c ? c : "a command", err.message);
        bson_free(c);
        bson_destroy(cmd);
        bson_destroy(r);
        return false;
    }
    bson_destroy(cmd);
    *reply = r;
    return true;
}

static bool query(crash_ctx_t *cx, mk_engine_t *eng, bson_t *cmd, const mk_error_t *build_err,
                  bson_t **reply)
{
    return query_db(cx, eng, "test", cmd, build_err, reply);
}

/* A short, readable form of a document (long strings by their length). */
static void describe_doc(const bson_t *doc, char *buf, size_t cap)
{
    size_t k = 0;
    bson_iter_t it;
    buf[0] = 0;
    if (!bson_iter_init(&it, doc)) {
        snprintf(buf, cap, "<unreadable>");
        return;
    }
    k += (size_t)snprintf(buf, cap, "{");
    while (bson_iter_next(&it) && k < cap) {
        const char *key = bson_iter_key(&it);
        const char *sep = k > 1 ? ", " : " ";
        int w;
        if (BSON_ITER_HOLDS_INT32(&it))
            w = snprintf(buf + k, cap - k, "%s%s: %d", sep, key, bson_iter_int32(&it));
        else if (BSON_ITER_HOLDS_INT64(&it))
            w = snprintf(buf + k, cap - k, "%s%s: %" PRId64 "L", sep, key, bson_iter_int64(&it));
        else if (BSON_ITER_HOLDS_UTF8(&it)) {
            uint32_t len;
            const char *s = bson_iter_utf8(&it, &len);
            if (len <= 12)
                w = snprintf(buf + k, cap - k, "%s%s: '%s'", sep, key, s);
            else
                w = snprintf(buf + k, cap - k, "%s%s: <%u chars %.6s..>", sep, key, len, s);
        } else
            w = snprintf(buf + k, cap - k, "%s%s: <type %d>", sep, key, (int)bson_iter_type(&it));
        if (w < 0) break;
        k += (size_t)w;
    }
    if (k < cap) snprintf(buf + k, cap - k, " }");
}

static void expected_doc(const model_t *m, int64_t id, bson_t *out)
{
    const doc_state_t *d = &m->docs[id];
    bson_reinit(out);
    BSON_APPEND_INT64(out, "_id", id);
    BSON_APPEND_INT32(out, "g", group_of(id));
    BSON_APPEND_INT32(out, "n", d->n);
    BSON_APPEND_INT32(out, "m", d->m);
    BSON_APPEND_INT64(out, "s", d->s);
    BSON_APPEND_UTF8(out, "pad", pad_for(id));
}

/* Collects one batch of a cursor reply into a; *cursor_id is the id to continue with. */
static bool take_batch(crash_ctx_t *cx, const bson_t *reply, const char *batch, actual_t *a,
                       int64_t *cursor_id)
{
    bson_iter_t it, arr;
    bool found;
    *cursor_id = field_int(reply, "cursor.id", &found);
    if (!found || !bson_iter_init(&it, reply) || !bson_iter_find_descendant(&it, batch, &arr) ||
        !BSON_ITER_HOLDS_ARRAY(&arr) || !bson_iter_recurse(&arr, &it))
        return failf(cx, "find reply without %s\n", batch);
    while (bson_iter_next(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_t view;
        size_t off;
        bson_iter_t f;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) return failf(cx, "find returned a non-document\n");
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&view, data, len) || !bson_validate(&view, BSON_VALIDATE_UTF8, &off))
            return failf(cx, "find returned invalid BSON (document %zu)\n", a->n);
        if (!bson_iter_init(&f, &view) || !bson_iter_next(&f) ||
            strcmp(bson_iter_key(&f), "_id") != 0 || !BSON_ITER_HOLDS_INT64(&f)) {
            char d[200];
            describe_doc(&view, d, sizeof d);
            return failf(cx, "document without an int64 _id first: %s\n", d);
        }
        bson_t *copy = bson_copy(&view);
        bson_t **docs = copy ? grow(a->docs, &a->cap, a->n + 1, sizeof *docs) : NULL;
        if (!docs) {
            if (copy) bson_destroy(copy);
            return failf(cx, "out of memory\n");
        }
        a->docs = docs;
        a->docs[a->n++] = copy;
    }
    return true;
}

static bool has_name(char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return true;
    return false;
}

/* The "name" of each entry of a listCollections / listIndexes reply (one batch). */
static bool take_names(crash_ctx_t *cx, const bson_t *reply, char ***names, size_t *n, size_t *cap)
{
    bson_iter_t it, arr;
    bool found;
    if (field_int(reply, "cursor.id", &found) != 0 || !found || !bson_iter_init(&it, reply) ||
        !bson_iter_find_descendant(&it, "cursor.firstBatch", &arr) ||
        !BSON_ITER_HOLDS_ARRAY(&arr) || !bson_iter_recurse(&arr, &it))
        return failf(cx, "unexpected listCollections/listIndexes reply\n");
    while (bson_iter_next(&it)) {
        bson_iter_t name;
        char *s = NULL, **v = NULL;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &name) ||
            !bson_iter_find(&name, "name") || !BSON_ITER_HOLDS_UTF8(&name))
            return failf(cx, "listCollections/listIndexes entry without a name\n");
        if (!(s = strdup(bson_iter_utf8(&name, NULL))) ||
            !(v = grow(*names, cap, *n + 1, sizeof *v))) {
            free(s);
            return failf(cx, "out of memory\n");
        }
        *names = v;
        v[(*n)++] = s;
    }
    return true;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x, y;
    memcpy(&x, a, sizeof x);
    memcpy(&y, b, sizeof y);
    return (x > y) - (x < y);
}

/* What the transactions wrote outside c: t's documents and otherdb.o (one batch each, as both
 * stay small enough; cursor.id 0 is checked). */
static bool collect_txn_colls(crash_ctx_t *cx, mk_engine_t *eng, actual_t *a)
{
    mk_error_t e = {0};
    bson_t *r;
    bson_iter_t it, arr;
    bool found, ok;
    if (!query(cx, eng, mk_bson(&e, "{ find: 't', batchSize: 1000 }"), &e, &r)) return false;
    ok = field_int(r, "cursor.id", &found) == 0 && found && bson_iter_init(&it, r) &&
         bson_iter_find_descendant(&it, "cursor.firstBatch", &arr) && BSON_ITER_HOLDS_ARRAY(&arr) &&
         bson_iter_recurse(&arr, &it);
    while (ok && bson_iter_next(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_t view;
        ok = BSON_ITER_HOLDS_DOCUMENT(&it);
        if (!ok) break;
        bson_iter_document(&it, &len, &data);
        if (a->t_count++ == 0 && bson_init_static(&view, data, len) &&
            !(a->t_doc = bson_copy(&view)))
            ok = failf(cx, "out of memory\n");
    }
    bson_destroy(r);
    if (!ok) return failf(cx, "unexpected find reply for t\n");

    if (!query_db(cx, eng, "otherdb", mk_bson(&e, "{ find: 'o', batchSize: 100000 }"), &e, &r))
        return false;
    ok = field_int(r, "cursor.id", &found) == 0 && found && bson_iter_init(&it, r) &&
         bson_iter_find_descendant(&it, "cursor.firstBatch", &arr) && BSON_ITER_HOLDS_ARRAY(&arr) &&
         bson_iter_recurse(&arr, &it);
    while (ok && bson_iter_next(&it)) {
        bson_iter_t f;
        ok = BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &f);
        if (!ok) break;
        /* exactly { _id: <int64>, v: 'o' } */
        int64_t id = 0;
        bool good = bson_iter_next(&f) && strcmp(bson_iter_key(&f), "_id") == 0 &&
                    BSON_ITER_HOLDS_INT64(&f);
        if (good) id = bson_iter_int64(&f);
        good = good && bson_iter_next(&f) && strcmp(bson_iter_key(&f), "v") == 0 &&
               BSON_ITER_HOLDS_UTF8(&f) && strcmp(bson_iter_utf8(&f, NULL), "o") == 0 &&
               !bson_iter_next(&f);
        a->o_bad |= !good;
        int64_t *v = grow(a->o_ids, &a->o_cap, a->no + 1, sizeof *v);
        if (!v) {
            bson_destroy(r);
            return failf(cx, "out of memory\n");
        }
        a->o_ids = v;
        a->o_ids[a->no++] = id;
    }
    bson_destroy(r);
    if (!ok) return failf(cx, "unexpected find reply for otherdb.o\n");
    if (a->no) qsort(a->o_ids, a->no, sizeof *a->o_ids, cmp_i64);

    if (!query_db(cx, eng, "otherdb", mk_bson(&e, "{ listCollections: 1, nameOnly: true }"), &e,
                  &r))
        return false;
    char **names = NULL;
    size_t n = 0, cap = 0;
    ok = take_names(cx, r, &names, &n, &cap);
    bson_destroy(r);
    a->o_colls = n;
    if (ok && n == 1 && strcmp(names[0], "o") != 0) a->o_colls = SIZE_MAX;
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return ok;
}

/* Reads collection c whole (through getMore), its count, and the collection list, checking
 * the structure as it goes; the k<seq> collections must each hold their one document. */
static bool collect_actual(crash_ctx_t *cx, mk_engine_t *eng, actual_t *a)
{
    mk_error_t e = {0};
    bson_t *r;
    int64_t id;
    if (!query(cx, eng, mk_bson(&e, "{ find: 'c', batchSize: 300 }"), &e, &r)) return false;
    bool ok = take_batch(cx, r, "cursor.firstBatch", a, &id);
    bson_destroy(r);
    while (ok && id != 0) {
        if (!query(cx, eng,
                   mk_bson(&e, "{ getMore: ?, collection: 'c', batchSize: 300 }", MK_I64(id)), &e,
                   &r))
            return false;
        ok = take_batch(cx, r, "cursor.nextBatch", a, &id);
        bson_destroy(r);
    }
    if (!ok) return false;

    if (!query(cx, eng, mk_bson(&e, "{ count: 'c' }"), &e, &r)) return false;
    bool found;
    int64_t n = field_int(r, "n", &found);
    bson_destroy(r);
    if (!found || n != (int64_t)a->n)
        return failf(cx, "count says %" PRId64 " documents, find returned %zu\n", n, a->n);

    if (!query(cx, eng, mk_bson(&e, "{ listCollections: 1, nameOnly: true }"), &e, &r))
        return false;
    ok = take_names(cx, r, &a->colls, &a->ncolls, &a->colls_cap);
    bson_destroy(r);
    if (ok && has_name(a->colls, a->ncolls, "c")) {
        if (!query(cx, eng, mk_bson(&e, "{ listIndexes: 'c' }"), &e, &r)) return false;
        ok = take_names(cx, r, &a->indexes, &a->nindexes, &a->indexes_cap);
        bson_destroy(r);
    }

    for (size_t i = 0; ok && i < a->ncolls; i++) {
        const char *name = a->colls[i];
        if (name[0] != 'k') continue;
        int64_t seq = strtoll(name + 1, NULL, 10);
        if (!query(cx, eng, mk_bson(&e, "{ find: ? }", MK_STR(name)), &e, &r)) return false;
        bson_t *want = mk_bson(&e, "{ v: [ { _id: ?, v: 'k' } ] }", MK_I64(seq));
        bson_iter_t it, got, wit;
        const uint8_t *data, *wdata;
        uint32_t len, wlen;
        ok = want && bson_iter_init(&it, r) &&
             bson_iter_find_descendant(&it, "cursor.firstBatch", &got) &&
             BSON_ITER_HOLDS_ARRAY(&got) && bson_iter_init_find(&wit, want, "v");
        if (ok) {
            /* the batch must be byte for byte the one-document array */
            bson_iter_array(&got, &len, &data);
            bson_iter_array(&wit, &wlen, &wdata);
            ok = len == wlen && memcmp(data, wdata, len) == 0;
        }
        if (!ok) {
            char *s = bson_as_relaxed_extended_json(r, NULL);
            failf(cx, "collection %s should hold { _id: %" PRId64 "L, v: 'k' }, find says %.300s\n",
                  name, seq, s ? s : "?");
            bson_free(s);
        }
        if (want) bson_destroy(want);
        bson_destroy(r);
    }
    return ok && collect_txn_colls(cx, eng, a);
}

/* Compares the directory with a model state; the differences are described in out. */
static size_t diff_state(const model_t *m, const actual_t *a, char *out, size_t cap)
{
    size_t ndiff = 0, k = 0;
    out[0] = 0;
#define NOTE(...)                                                                                  \
    do {                                                                                           \
        if (ndiff++ < 12 && k < cap) {                                                             \
            int w_ = snprintf(out + k, cap - k, "    " __VA_ARGS__);                               \
            if (w_ > 0) k += (size_t)w_;                                                           \
        }                                                                                          \
    } while (0)
    bool *seen = calloc((size_t)m->next_id + 1, sizeof *seen);
    if (!seen) {
        snprintf(out, cap, "    out of memory\n");
        return 1;
    }
    bson_t want = BSON_INITIALIZER;
    char da[256], dw[256];
    for (size_t i = 0; i < a->n; i++) {
        bson_iter_t it;
        bson_iter_init_find(&it, a->docs[i], "_id");
        int64_t id = bson_iter_int64(&it);
        describe_doc(a->docs[i], da, sizeof da);
        if (id < 1 || id >= m->next_id || !m->docs[id].live) {
            NOTE("unexpected document %s\n", da);
            continue;
        }
        if (seen[id]) {
            NOTE("duplicate document %s\n", da);
            continue;
        }
        seen[id] = true;
        expected_doc(m, id, &want);
        if (!bson_equal(&want, a->docs[i])) {
            describe_doc(&want, dw, sizeof dw);
            NOTE("_id %" PRId64 ": expected %s\n      found    %s%s\n", id, dw, da,
                 strcmp(dw, da) == 0 ? " (bytes differ)" : "");
        }
    }
    for (size_t i = 0; i < m->nlive; i++) {
        int64_t id = m->live[i];
        if (seen[id]) continue;
        expected_doc(m, id, &want);
        describe_doc(&want, dw, sizeof dw);
        NOTE("missing document %s\n", dw);
    }
    free(seen);
    bson_destroy(&want);
    /* the transactions' collections */
    bool t_exists = m->t_n > 0;
    if (t_exists != (a->t_count > 0) || a->t_count > 1)
        NOTE("collection t holds %zu documents, expected %d\n", a->t_count, t_exists);
    else if (t_exists) {
        bson_t tw = BSON_INITIALIZER;
        /* an upsert's operators create fields in lexicographic order (MongoDB 5.0+) */
        BSON_APPEND_INT32(&tw, "_id", 1);
        BSON_APPEND_INT64(&tw, "last", m->t_last);
        BSON_APPEND_INT32(&tw, "n", m->t_n);
        if (!bson_equal(&tw, a->t_doc)) {
            describe_doc(a->t_doc, da, sizeof da);
            NOTE("t's counter is %s, expected { _id: 1, last: %" PRId64 "L, n: %d }\n", da,
                 m->t_last, m->t_n);
        }
        bson_destroy(&tw);
    }
    if (a->o_bad) NOTE("otherdb.o holds a document other than { _id: <long>, v: 'o' }\n");
    for (size_t i = 0, j = 0; i < m->no || j < a->no;) {
        if (j >= a->no || (i < m->no && m->o_ids[i] < a->o_ids[j]))
            NOTE("otherdb.o lacks _id %" PRId64 "\n", m->o_ids[i++]);
        else if (i >= m->no || a->o_ids[j] < m->o_ids[i])
            NOTE("otherdb.o has an unexpected _id %" PRId64 "\n", a->o_ids[j++]);
        else
            i++, j++;
    }
    if (a->o_colls != (m->no > 0 ? 1 : 0))
        NOTE("otherdb lists %zd collections, expected only o (%d)\n", (ssize_t)a->o_colls,
             m->no > 0);
    size_t nexpect = m->ncolls + (m->c_exists ? 1 : 0) + (t_exists ? 1 : 0);
    if (m->c_exists != has_name(a->colls, a->ncolls, "c"))
        NOTE("collection c %s\n", m->c_exists ? "missing" : "unexpected");
    if (t_exists != has_name(a->colls, a->ncolls, "t"))
        NOTE("collection t %s\n", t_exists ? "missing" : "unexpected");
    for (size_t i = 0; i < m->ncolls; i++) {
        char name[32];
        snprintf(name, sizeof name, "k%" PRId64, m->colls[i]);
        if (!has_name(a->colls, a->ncolls, name)) NOTE("missing collection %s\n", name);
    }
    if (a->ncolls != nexpect) NOTE("%zu collections listed, expected %zu\n", a->ncolls, nexpect);
    size_t nindexes = m->c_exists ? NINDEXES + m->extra_index : 0;
    for (size_t i = 0; i < nindexes; i++)
        if (!has_name(a->indexes, a->nindexes, index_names[i]))
            NOTE("missing index %s\n", index_names[i]);
    if (a->nindexes != nindexes) NOTE("%zu indexes listed, expected %zu\n", a->nindexes, nindexes);
    if (ndiff > 12 && k < cap)
        snprintf(out + k, cap - k, "    ... %zu differences in all\n", ndiff);
#undef NOTE
    return ndiff;
}

/* Reads through the matcher (count by group) and the _id point lookup, which must agree with
 * the resolved state. */
static bool check_queries(crash_ctx_t *cx, mk_engine_t *eng, uint64_t *rng)
{
    const model_t *m = &cx->model;
    mk_error_t e = {0};
    bson_t *r;
    bool found;
    for (int32_t g = 0; g < NGROUPS; g++) {
        int64_t want = 0;
        for (size_t i = 0; i < m->nlive; i++) want += group_of(m->live[i]) == g;
        if (!query(cx, eng, mk_bson(&e, "{ count: 'c', query: { g: ? } }", MK_I32(g)), &e, &r))
            return false;
        int64_t n = field_int(r, "n", &found);
        bson_destroy(r);
        if (n != want)
            return failf(cx, "count of group %d is %" PRId64 ", expected %" PRId64 "\n", g, n,
                         want);
    }
    for (int i = 0; i < 3 && m->nlive; i++) {
        int64_t id = random_live(m, rng);
        if (!query(cx, eng, mk_bson(&e, "{ find: 'c', filter: { _id: ? } }", MK_I64(id)), &e, &r))
            return false;
        bson_iter_t it;
        bson_t want = BSON_INITIALIZER, got;
        const uint8_t *data;
        uint32_t len;
        expected_doc(m, id, &want);
        bson_iter_t first, second;
        bool ok = bson_iter_init(&it, r) &&
                  bson_iter_find_descendant(&it, "cursor.firstBatch.0", &first) &&
                  BSON_ITER_HOLDS_DOCUMENT(&first);
        if (ok) {
            bson_iter_document(&first, &len, &data);
            ok = bson_init_static(&got, data, len) && bson_equal(&got, &want);
        }
        ok = ok && !(bson_iter_init(&it, r) &&
                     bson_iter_find_descendant(&it, "cursor.firstBatch.1", &second));
        bson_destroy(&want);
        bson_destroy(r);
        if (!ok) return failf(cx, "find by _id %" PRId64 " does not return the document\n", id);
    }
    return true;
}

/* The validate command walks every record and checks its index entries, and counts each
 * index's entries: a crash must never leave an index out of step with the records. */
static bool check_indexes(crash_ctx_t *cx, mk_engine_t *eng, size_t ndocs)
{
    mk_error_t e = {0};
    bson_t *r;
    if (!query(cx, eng, mk_bson(&e, "{ validate: 'c' }"), &e, &r)) return false;
    bson_iter_t it;
    bool ok =
        bson_iter_init_find(&it, r, "valid") && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
    for (size_t i = 0; ok && i < (size_t)NINDEXES + cx->model.extra_index; i++) {
        char path[64];
        bool found;
        snprintf(path, sizeof path, "keysPerIndex.%s", index_names[i]);
        ok = field_int(r, path, &found) == (int64_t)ndocs && found;
    }
    if (!ok) {
        char *s = bson_as_relaxed_extended_json(r, NULL);
        failf(cx, "validate finds the indexes out of step with the %zu documents: %.2000s\n", ndocs,
              s ? s : "?");
        bson_free(s);
    }
    bson_destroy(r);
    /* the collections transactions create implicitly */
    const model_t *m = &cx->model;
    for (int i = 0; ok && i < 2; i++) {
        const char *db = i ? "otherdb" : "test", *coll = i ? "o" : "t";
        int64_t want = i ? (int64_t)m->no : m->t_n > 0;
        if (want == 0) continue;
        if (!query_db(cx, eng, db, mk_bson(&e, "{ validate: ? }", MK_STR(coll)), &e, &r))
            return false;
        bool found;
        ok = bson_iter_init_find(&it, r, "valid") && BSON_ITER_HOLDS_BOOL(&it) &&
             bson_iter_bool(&it) && field_int(r, "keysPerIndex._id_", &found) == want && found;
        if (!ok) {
            char *s = bson_as_relaxed_extended_json(r, NULL);
            failf(cx, "validate of %s.%s (%" PRId64 " documents) fails: %.1000s\n", db, coll, want,
                  s ? s : "?");
            bson_free(s);
        }
        bson_destroy(r);
    }
    return ok;
}

static bool verify(crash_ctx_t *cx, round_state_t *rd, uint64_t *rng)
{
    mk_error_t err = {0};
    mk_engine_t *eng = mk_engine_open(cx->dir, cx->opts, &err);
    if (!eng) return failf(cx, "reopening the data directory failed: %s\n", err.message);
    actual_t a = {0};
    bool ok = collect_actual(cx, eng, &a);
    char *without = NULL, *with = NULL;
    if (ok && !(without = malloc(4096))) ok = failf(cx, "out of memory\n");
    bool txn = rd->pending && rd->inflight.kind == OP_TXN;
    cx->abort_inflight += rd->pending && rd->inflight.kind == OP_TXNABORT;
    if (ok && diff_state(&cx->model, &a, without, 4096) == 0) {
        if (rd->pending)
            cx->inflight_dropped++;
        else
            cx->none_inflight++;
        cx->txn_inflight_dropped += txn;
    } else if (ok && !rd->pending) {
        ok = failf(cx, "the data differs from the acknowledged commands (none was in flight):\n%s",
                   without);
    } else if (ok) {
        char desc[160];
        op_describe(&rd->inflight, desc, sizeof desc);
        if (!op_apply(&cx->model, &rd->inflight) || !(with = malloc(4096)))
            ok = failf(cx, "out of memory\n");
        else if (diff_state(&cx->model, &a, with, 4096) == 0) {
            cx->inflight_applied++;
            cx->txn_inflight_applied += txn;
        } else
            ok = failf(cx,
                       "the data matches neither outcome of the command in flight (%s):\n"
                       "  compared with it not applied:\n%s  compared with it applied:\n%s",
                       desc, without, with);
    }
    if (ok) ok = check_queries(cx, eng, rng);
    if (ok) ok = check_indexes(cx, eng, a.n);
    free(without);
    free(with);
    actual_free(&a);
    mk_engine_close(eng);
    return ok;
}

static bool run_round(crash_ctx_t *cx)
{
    round_state_t rd = {0};
    uint64_t rng = cx->seed ^ 0x5bd1e995u;
    cx->nlog = 0;
    int fds[2];
    if (pipe(fds) != 0) return failf(cx, "pipe: %s\n", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return failf(cx, "fork: %s\n", strerror(errno));
    }
    if (pid == 0) {
        /* cmocka's handlers would longjmp a crashing child back into the test runner, where it
         * would go on running tests: the child dies of its signals instead */
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
        close(fds[0]);
        child_main(fds[1], cx->dir, cx->opts, &cx->model, cx->seed);
    }
    close(fds[1]);
    bool ok = watch_and_kill(cx, &rd, pid, fds[0], &rng);
    close(fds[0]);
    return ok && verify(cx, &rd, &rng);
}

static void report_round(crash_ctx_t *cx)
{
    char desc[160];
    size_t from = cx->nlog > 15 ? cx->nlog - 15 : 0;
    failf(cx, "  commands of this round (%zu, the last may have been in flight):\n", cx->nlog);
    for (size_t i = from; i < cx->nlog; i++) {
        op_describe(&cx->log[i], desc, sizeof desc);
        failf(cx, "    %s\n", desc);
    }
    failf(cx, "  data directory kept at %s\n", cx->dir);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 0) : dflt;
}

/* Creates c with its secondary indexes, before any writer runs. */
static bool create_indexes(crash_ctx_t *cx)
{
    mk_error_t err = {0};
    mk_engine_t *eng = mk_engine_open(cx->dir, cx->opts, &err);
    if (!eng) return failf(cx, "opening the data directory failed: %s\n", err.message);
    bson_t *r;
    bool ok = query(cx, eng,
                    mk_bson(&err,
                            "{ createIndexes: 'c', indexes: [ { key: { g: 1, n: 1 }, name: ? }, "
                            "{ key: { s: -1 }, name: ? }, { key: { m: 1, _id: 1 }, name: ?, "
                            "unique: true } ] }",
                            MK_STR(index_names[1]), MK_STR(index_names[2]), MK_STR(index_names[3])),
                    &err, &r);
    if (ok) bson_destroy(r);
    mk_engine_close(eng);
    cx->model.c_exists = true;
    return ok;
}

static void crash_run(crash_ctx_t *cx, const char *name, const mk_engine_opts_t *opts,
                      double budget_s)
{
    cx->name = name;
    cx->opts = opts;
    cx->dir = tu_tmpdir(name);
    cx->model.next_id = 1;
    cx->model.next_seq = 1;
    cx->base_seed = env_u64("MK_CRASH_SEED", (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20));
    if (!create_indexes(cx)) fail_msg("%s: %s", name, cx->report);
    int64_t t0 = now_us();
    for (cx->round = 0;; cx->round++) {
        double elapsed = (double)(now_us() - t0) / 1e6;
        if (cx->round >= MIN_ROUNDS && elapsed >= budget_s) break;
        uint64_t s = cx->base_seed + (uint64_t)cx->round;
        cx->seed = rng_next(&s);
        if (!run_round(cx)) {
            report_round(cx);
            /* cmocka truncates long messages: the details go to stderr whole */
            fprintf(stderr,
                    "%s: round %d failed (MK_CRASH_SEED=%" PRIu64 ", round seed %" PRIu64 "):\n%s",
                    name, cx->round, cx->base_seed, cx->seed, cx->report);
            fail_msg("%s: round %d failed, details above", name, cx->round);
        }
    }
    printf("[ crash    ] %s: %d rounds in %.1f s (seed %" PRIu64 "), %" PRId64
           " commands acknowledged and kept; command in flight at the kill: applied whole %d, "
           "not at all %d, none in flight %d; %d streams ran to the end; kills by delay/ack/start "
           "%d/%d/%d; %zu documents and %zu extra collections at the end\n",
           name, cx->round, (double)(now_us() - t0) / 1e6, cx->base_seed, cx->acked,
           cx->inflight_applied, cx->inflight_dropped, cx->none_inflight, cx->completed,
           cx->kill_modes[0], cx->kill_modes[1], cx->kill_modes[2], cx->model.nlive,
           cx->model.ncolls);
    printf("[ crash    ] %s: transactions acknowledged: %" PRId64 " committed, %" PRId64
           " aborted; committing one in flight at the kill: applied whole %d, not at all %d; "
           "aborting one in flight %d\n",
           name, cx->txn_committed, cx->txn_aborted, cx->txn_inflight_applied,
           cx->txn_inflight_dropped, cx->abort_inflight);
}

/* ------------------------------------------------------------------ tests */

static int setup(void **state)
{
    crash_ctx_t *cx = calloc(1, sizeof *cx);
    if (!cx) return -1;
    *state = cx;
    return 0;
}

static int teardown(void **state)
{
    crash_ctx_t *cx = *state;
    if (cx->dir && !cx->failed) tu_rmdir(cx->dir);
    free(cx->dir);
    model_free(&cx->model);
    free(cx);
    return 0;
}

/* The defaults are durable: every acknowledged write survives the writer's death. */
static void test_crash_default_durable(void **state)
{
    crash_run(*state, "crash-durable", NULL, (double)env_u64("MK_CRASH_SECONDS", 20));
}

/* no_sync skips fsync, which only matters when the OS itself crashes: the page cache outlives
 * a killed process, so nothing acknowledged may be lost here either. */
static void test_crash_no_sync(void **state)
{
    static const mk_engine_opts_t opts = {.no_sync = true};
    crash_run(*state, "crash-nosync", &opts, (double)env_u64("MK_CRASH_SECONDS", 20) / 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crash_default_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_no_sync, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
