/* TTL indexes: a background thread that deletes expired documents.
 *
 * Every ttl_interval_ms (default 60 s, as MongoDB's TTL monitor) the thread finds the indexes
 * with expireAfterSeconds and deletes, through the ordinary delete command (so through the
 * index itself), the documents whose indexed field is a date older than the expiry: for an
 * array of dates the earliest counts, as in MongoDB; other values never expire. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/cursor.h"
#include "engine/index.h"
#include "engine/internal.h"

typedef struct ttl_job {
    char db[64], coll[224], field[256];
    int64_t expire_s;
} ttl_job_t;

typedef struct ttl_scan {
    mk_engine_t *eng;
    MDB_txn *txn;
    ttl_job_t *jobs;
    size_t n, cap;
} ttl_scan_t;

static int collect(void *ud, const char *ns, const bson_t *entry)
{
    ttl_scan_t *s = ud;
    const char *dot = strchr(ns, '.');
    if (!dot) return MK_OK;
    char db[64];
    snprintf(db, sizeof db, "%.*s", (int)(dot - ns), ns);
    mk_coll_t *c;
    mk_error_t err;
    if (mk_coll_find(s->eng, s->txn, db, dot + 1, &c, &err) != MK_OK || !c) return MK_OK;
    const mk_indexset_t *set = mk_coll_indexes(c, s->txn);
    for (size_t i = 0; i < set->n; i++) {
        mk_index_t *ix = set->v[i];
        if (ix->expire_after < 0 || mk_keypattern_nfields(ix->kp) != 1) continue;
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 8;
            ttl_job_t *j = realloc(s->jobs, cap * sizeof *j);
            if (!j) return MK_ENOMEM;
            s->jobs = j;
            s->cap = cap;
        }
        ttl_job_t *j = &s->jobs[s->n++];
        snprintf(j->db, sizeof j->db, "%s", db);
        snprintf(j->coll, sizeof j->coll, "%s", dot + 1);
        snprintf(j->field, sizeof j->field, "%s", mk_keypattern_field(ix->kp, 0));
        j->expire_s = ix->expire_after;
    }
    return MK_OK;
}

/* One pass over every TTL index; returns the number of documents deleted. */
int64_t mk_ttl_sweep(mk_engine_t *eng)
{
    ttl_scan_t s = {.eng = eng};
    mk_error_t err;
    if (mk_txn_read(eng, &s.txn, &err) != MK_OK) return 0;
    mk_catalog_each(eng, s.txn, NULL, collect, &s, &err);
    mk_txn_read_end(eng, s.txn);
    int64_t deleted = 0, now = mk_now_ms();
    for (size_t i = 0; i < s.n; i++) {
        ttl_job_t *j = &s.jobs[i];
        bson_t cmd = BSON_INITIALIZER, dels, del, q, cond, reply = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&cmd, "delete", j->coll);
        bson_append_array_begin(&cmd, "deletes", -1, &dels);
        bson_append_document_begin(&dels, "0", 1, &del);
        bson_append_document_begin(&del, "q", 1, &q);
        bson_append_document_begin(&q, j->field, -1, &cond);
        BSON_APPEND_DATE_TIME(&cond, "$lt", now - j->expire_s * 1000);
        bson_append_document_end(&q, &cond);
        bson_append_document_end(&del, &q);
        BSON_APPEND_INT32(&del, "limit", 0);
        bson_append_document_end(&dels, &del);
        bson_append_array_end(&cmd, &dels);
        if (mk_engine_command(eng, j->db, &cmd, &reply, &err) == MK_OK) {
            bson_iter_t it;
            if (bson_iter_init_find(&it, &reply, "n")) deleted += bson_iter_as_int64(&it);
        }
        bson_destroy(&cmd);
        bson_destroy(&reply);
    }
    free(s.jobs);
    return deleted;
}

static void *ttl_main(void *arg)
{
    mk_engine_t *eng = arg;
    pthread_mutex_lock(&eng->ttl_lock);
    while (!eng->ttl_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int ms = eng->opts.ttl_interval_ms;
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&eng->ttl_cond, &eng->ttl_lock, &until);
        if (eng->ttl_stop) break;
        pthread_mutex_unlock(&eng->ttl_lock);
        mk_ttl_sweep(eng);
        pthread_mutex_lock(&eng->ttl_lock);
    }
    pthread_mutex_unlock(&eng->ttl_lock);
    return NULL;
}

int mk_ttl_start(mk_engine_t *eng)
{
    if (eng->opts.ttl_interval_ms < 0) return MK_OK; /* disabled */
    if (!eng->opts.ttl_interval_ms) eng->opts.ttl_interval_ms = 60 * 1000;
    pthread_mutex_init(&eng->ttl_lock, NULL);
    pthread_cond_init(&eng->ttl_cond, NULL);
    eng->ttl_stop = false;
    if (pthread_create(&eng->ttl_thread, NULL, ttl_main, eng) != 0) return MK_ERR;
    eng->ttl_running = true;
    return MK_OK;
}

void mk_ttl_stop(mk_engine_t *eng)
{
    if (!eng->ttl_running) return;
    pthread_mutex_lock(&eng->ttl_lock);
    eng->ttl_stop = true;
    pthread_cond_signal(&eng->ttl_cond);
    pthread_mutex_unlock(&eng->ttl_lock);
    pthread_join(eng->ttl_thread, NULL);
    pthread_mutex_destroy(&eng->ttl_lock);
    pthread_cond_destroy(&eng->ttl_cond);
    eng->ttl_running = false;
}
