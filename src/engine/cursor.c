/* The cursor registry (see cursor.h). */
#include "engine/cursor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t mk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool mk_raw_copy(mk_raw_t *raw, const bson_t *doc)
{
    raw->len = doc->len;
    raw->data = malloc(doc->len);
    if (!raw->data) return false;
    memcpy(raw->data, bson_get_data(doc), doc->len);
    return true;
}

mk_cursor_t *mk_cursor_new(const char *db, const char *coll)
{
    mk_cursor_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    size_t dl = strlen(db), cl = strlen(coll); /* both validated: they fit */
    memcpy(c->db, db, dl < sizeof c->db ? dl : sizeof c->db - 1);
    memcpy(c->coll, coll, cl < sizeof c->coll ? cl : sizeof c->coll - 1);
    mk_buf_init(&c->resume);
    c->remaining = -1;
    return c;
}

void mk_cursor_free(mk_cursor_t *c)
{
    if (!c) return;
    for (size_t i = c->pos; i < c->ndocs; i++) free(c->docs[i].data);
    free(c->docs);
    mk_matcher_destroy(c->matcher);
    mk_projection_destroy(c->projection);
    if (c->projection_spec) bson_destroy(c->projection_spec);
    if (c->has_id_eq) bson_value_destroy(&c->id_eq);
    mk_plan_clear(&c->plan);
    mk_buf_free(&c->resume);
    free(c);
}

void mk_cursor_register(mk_engine_t *eng, mk_cursor_t *c)
{
    pthread_mutex_lock(&eng->lock);
    /* Ids are unpredictable positive 63-bit numbers, as MongoDB's. */
    if (eng->next_cursor_id == 1) {
        bson_oid_t seed;
        bson_oid_init(&seed, NULL);
        int64_t s;
        memcpy(&s, seed.bytes + 4, 8);
        eng->next_cursor_id = (s & 0x0000FFFFFFFFFFFFll) | 0x0001000000000000ll;
    }
    c->id = eng->next_cursor_id++;
    c->last_used_ms = monotonic_ms();
    c->next = eng->cursors;
    __atomic_store_n(&eng->cursors, c, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&eng->lock);
}

static mk_cursor_t *unlink_cursor(mk_engine_t *eng, int64_t id)
{
    for (mk_cursor_t **pp = &eng->cursors; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            mk_cursor_t *c = *pp;
            *pp = c->next;
            return c;
        }
    }
    return NULL;
}

mk_cursor_t *mk_cursor_checkout(mk_engine_t *eng, int64_t id, bool *busy)
{
    *busy = false;
    pthread_mutex_lock(&eng->lock);
    mk_cursor_t *c = eng->cursors;
    while (c && c->id != id) c = c->next;
    if (c && c->in_use) {
        *busy = true;
        c = NULL;
    }
    if (c) c->in_use = true;
    pthread_mutex_unlock(&eng->lock);
    return c;
}

void mk_cursor_checkin(mk_engine_t *eng, mk_cursor_t *c, bool done)
{
    pthread_mutex_lock(&eng->lock);
    c->in_use = false;
    c->last_used_ms = monotonic_ms();
    if (done) unlink_cursor(eng, c->id);
    pthread_mutex_unlock(&eng->lock);
    if (done) mk_cursor_free(c);
}

bool mk_cursor_kill(mk_engine_t *eng, int64_t id)
{
    pthread_mutex_lock(&eng->lock);
    mk_cursor_t *c = eng->cursors;
    while (c && c->id != id) c = c->next;
    if (c && !c->in_use)
        unlink_cursor(eng, id);
    else
        c = NULL;
    pthread_mutex_unlock(&eng->lock);
    if (!c) return false;
    mk_cursor_free(c);
    return true;
}

void mk_cursors_reap(mk_engine_t *eng)
{
    if (!__atomic_load_n(&eng->cursors, __ATOMIC_RELAXED)) return; /* the common case */
    int64_t now = monotonic_ms();
    mk_cursor_t *dead = NULL;
    pthread_mutex_lock(&eng->lock);
    for (mk_cursor_t **pp = &eng->cursors; *pp;) {
        mk_cursor_t *c = *pp;
        if (!c->in_use && now - c->last_used_ms > eng->opts.cursor_timeout_ms) {
            *pp = c->next;
            c->next = dead;
            dead = c;
            continue;
        }
        pp = &c->next;
    }
    pthread_mutex_unlock(&eng->lock);
    while (dead) {
        mk_cursor_t *n = dead->next;
        mk_cursor_free(dead);
        dead = n;
    }
}

void mk_cursors_free_all(mk_engine_t *eng)
{
    for (mk_cursor_t *c = eng->cursors, *n; c; c = n) {
        n = c->next;
        mk_cursor_free(c);
    }
    eng->cursors = NULL;
}
