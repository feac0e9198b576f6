/* The query planner: which access path answers a filter (and sort), and explain.
 *
 * Candidates are the indexes whose first field the filter constrains (bounds.h), and indexes
 * whose order gives the requested sort. With one candidate it wins; with several, each runs a
 * short trial (as MongoDB's multi-planner does) and the most productive wins: most documents
 * returned per key examined, then fewest keys. No candidate: a collection scan. A filter that
 * pins `_id` to one value is a point lookup (IDHACK). */
#ifndef MK_ENGINE_PLANNER_H
#define MK_ENGINE_PLANNER_H

#include "engine/bounds.h"
#include "engine/index.h"
#include "engine/scan.h"

typedef enum { MK_PLAN_COLLSCAN, MK_PLAN_IDHACK, MK_PLAN_IXSCAN } mk_plan_kind_t;

typedef struct mk_plan {
    mk_plan_kind_t kind;
    mk_index_t *ix;       /* IXSCAN: the index (owned by the collection's index set) */
    mk_bounds_t *bounds;  /* IXSCAN: owned */
    bool exact;           /* the bounds alone decide matching */
    int direction;        /* 1 forward, -1 backward */
    bool sorted;          /* produces the requested sort order */
    int ncandidates;      /* plans considered */
    mk_buf_t *min, *max;  /* find's min (inclusive) / max (exclusive) keys, or NULL */
    char rejected[8][64]; /* names of rejected candidate indexes (for explain) */
    int nrejected;
} mk_plan_t;

typedef struct mk_exec_stats {
    int64_t keys_examined, docs_examined, returned;
    int64_t work_limit; /* stop after this many keys + docs examined (0: no limit) */
    bool hit_limit;
} mk_exec_stats_t;

/* Chooses a plan. `sort` may be NULL/empty; `hint` (NULL when absent) is an index name or key
 * pattern ({ $natural: 1 } forces a collection scan); a hint naming no index is an error
 * (BadValue "hint provided does not correspond to an existing index"). */
int mk_plan_build(MDB_txn *txn, mk_coll_t *c, const bson_t *filter, const mk_matcher_t *m,
                  const bson_t *sort, const bson_iter_t *hint, mk_plan_t *plan, mk_error_t *err);
void mk_plan_clear(mk_plan_t *plan);

/* Runs a plan, calling fn for each matching document in plan order. For IXSCAN the key given
 * to fn is the index entry (the resume point), otherwise the record key. `after` resumes a
 * scan strictly after such a key. stats may be NULL. */
int mk_plan_run(MDB_txn *txn, mk_coll_t *c, const mk_plan_t *plan, const mk_matcher_t *m,
                const bson_value_t *id_eq, const MDB_val *after, bool want_details, mk_scan_fn fn,
                void *ud, mk_exec_stats_t *stats, mk_error_t *err);

/* Applies find's min / max (documents of the hinted index's fields, in its order) to an
 * IXSCAN plan: the scan is then limited to [min, max). Errors as MongoDB (51173 without a
 * hint, 51174 when the fields do not match the index). */
int mk_plan_set_min_max(mk_plan_t *plan, const bson_t *min, const bson_t *max, mk_error_t *err);

/* Plans and runs a filter without sort (count, distinct, update, delete): a point lookup when
 * it pins _id, otherwise the planner's choice. `hint` may be NULL. */
int mk_query_run(MDB_txn *txn, mk_coll_t *c, const bson_t *filter, const mk_matcher_t *m,
                 const bson_iter_t *hint, bool want_details, mk_scan_fn fn, void *ud,
                 mk_exec_stats_t *stats, mk_error_t *err);

/* True when the plan's index still exists (a dropped index kills the cursors using it). */
bool mk_plan_still_valid(const mk_plan_t *plan, mk_coll_t *c, MDB_txn *txn);

/* explain's stages for the plan (the stages above it are the caller's); with `stats`, the
 * per-stage figures of executionStats. */
int mk_plan_explain(const mk_plan_t *plan, const bson_t *filter, const mk_exec_stats_t *stats,
                    bson_t *out, mk_error_t *err);

#endif
