/* Server-side cursors: what `find` could not return in its first batch, kept for `getMore`.
 *
 * A cursor never holds an LMDB transaction between batches (that would pin old pages and block
 * map growth). Either it owns the remaining documents (after an in-memory sort), or it
 * remembers the last record key it returned and resumes the scan after it, in a new
 * transaction, like MongoDB's yielding. Idle cursors are closed after the engine's timeout. */
#ifndef MK_ENGINE_CURSOR_H
#define MK_ENGINE_CURSOR_H

#include "engine/internal.h"
#include "engine/matcher.h"
#include "engine/planner.h"
#include "engine/projection.h"

/* A document held as its bytes. (libbson declares bson_t 128-byte aligned, so heap arrays of
 * bson_t would be misaligned; views are made with bson_init_static on the stack.) */
typedef struct mk_raw {
    uint8_t *data;
    uint32_t len;
} mk_raw_t;

/* Copies a document's bytes into raw; false when out of memory. */
bool mk_raw_copy(mk_raw_t *raw, const bson_t *doc);

struct mk_cursor {
    int64_t id;
    char db[64];
    char coll[224];
    int64_t last_used_ms;
    bool in_use; /* checked out by a getMore */
    struct mk_cursor *next;

    /* buffered mode: documents already projected */
    mk_raw_t *docs;
    size_t ndocs, pos;

    /* scan mode */
    bool scan;
    bson_t *projection_spec;
    mk_matcher_t *matcher;
    mk_projection_t *projection;
    bson_value_t id_eq; /* valid when has_id_eq (a copy) */
    bool has_id_eq;
    mk_plan_t plan;    /* how the scan runs (COLLSCAN when never planned) */
    mk_buf_t resume;   /* last record key returned */
    int64_t remaining; /* documents the limit still allows; -1: no limit */
    int64_t skip;      /* matches still to skip before the first returned document */
};

int64_t mk_now_ms(void);

/* A new cursor (not registered yet); NULL on allocation failure. */
mk_cursor_t *mk_cursor_new(const char *db, const char *coll);
void mk_cursor_free(mk_cursor_t *c);
/* Registers the cursor and assigns its id. */
void mk_cursor_register(mk_engine_t *eng, mk_cursor_t *c);
/* Takes a registered cursor for a getMore; NULL when unknown or busy (*busy tells which). */
mk_cursor_t *mk_cursor_checkout(mk_engine_t *eng, int64_t id, bool *busy);
/* Gives it back after a getMore; when `done` it is unregistered and freed. */
void mk_cursor_checkin(mk_engine_t *eng, mk_cursor_t *c, bool done);
/* Unregisters and frees; false when no such cursor. */
bool mk_cursor_kill(mk_engine_t *eng, int64_t id);
/* Closes cursors idle for longer than the engine's timeout. */
void mk_cursors_reap(mk_engine_t *eng);
void mk_cursors_free_all(mk_engine_t *eng);

#endif
