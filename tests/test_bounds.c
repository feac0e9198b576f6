/* Index bounds: explain strings for the usual cases, byte-level checks, and a brute-force
 * property test — for random key patterns, documents and filters, every document the matcher
 * accepts has an index key inside the bounds, and exact bounds hold no key of a document the
 * matcher rejects. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"
#include "engine/bounds.h"
#include "engine/index_keys.h"
#include "engine/keyenc.h"
#include "engine/matcher.h"

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                      */

typedef struct built {
    mk_bounds_t *b;
    bool exact;
    bson_t explain;
} built_t;

/* Builds bounds of `filter` (relaxed JSON) on the index (paths, dirs); the explain document
 * lands in out->explain. Fails the test on error or when the index is not usable. */
static void build(built_t *out, const char *filter, const char *const *paths, const int *dirs,
                  size_t n, bool multikey)
{
    bson_t *f = tu_bson(filter);
    mk_error_t err = {0};
    int rc = mk_bounds_build(f, paths, dirs, n, multikey, &out->b, &out->exact, &err);
    if (rc != MK_OK) fail_msg("mk_bounds_build(%s): %s", filter, err.message);
    if (!out->b) fail_msg("mk_bounds_build(%s): index not usable", filter);
    bson_init(&out->explain);
    assert_int_equal(mk_bounds_explain(out->b, &out->explain, &err), MK_OK);
    bson_destroy(f);
}

static void built_free(built_t *x)
{
    mk_bounds_destroy(x->b);
    bson_destroy(&x->explain);
}

/* Bounds on one ascending field `a`-like path, checked against an explain document. */
static void check1(const char *path, int dir, bool multikey, const char *filter,
                   const char *explain, int exact)
{
    built_t x;
    build(&x, filter, &path, &dir, 1, multikey);
    tu_assert_bson_eq(&x.explain, explain);
    if (exact >= 0) {
        if (x.exact != (exact == 1)) fail_msg("%s: exact is %d", filter, (int)x.exact);
    }
    built_free(&x);
}

static bool unusable(const char *filter, const char *const *paths, const int *dirs, size_t n,
                     bool multikey)
{
    bson_t *f = tu_bson(filter);
    mk_bounds_t *b = (mk_bounds_t *)1;
    bool exact = true;
    mk_error_t err = {0};
    assert_int_equal(mk_bounds_build(f, paths, dirs, n, multikey, &b, &exact, &err), MK_OK);
    bson_destroy(f);
    if (b) mk_bounds_destroy(b);
    return b == NULL && !exact;
}

static int cmp_bytes(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return (al > bl) - (al < bl);
}

static bool in_interval(const mk_interval_t *iv, const uint8_t *k, size_t kl)
{
    int c = cmp_bytes(iv->lo, iv->lo_len, k, kl);
    if (c > 0 || (c == 0 && !iv->lo_incl)) return false;
    c = cmp_bytes(k, kl, iv->hi, iv->hi_len);
    return c < 0 || (c == 0 && iv->hi_incl);
}

static bool in_bounds(const mk_bounds_t *b, const uint8_t *k, size_t kl)
{
    for (size_t i = 0; i < mk_bounds_count(b); i++)
        if (in_interval(mk_bounds_get(b, i), k, kl)) return true;
    return false;
}

/* The ranges are sorted, non-empty and disjoint. */
static void check_ranges(const mk_bounds_t *b)
{
    for (size_t i = 0; i < mk_bounds_count(b); i++) {
        const mk_interval_t *iv = mk_bounds_get(b, i);
        assert_true(iv->lo_incl);
        assert_false(iv->hi_incl);
        assert_true(cmp_bytes(iv->lo, iv->lo_len, iv->hi, iv->hi_len) < 0);
        if (i > 0) {
            const mk_interval_t *pv = mk_bounds_get(b, i - 1);
            assert_true(cmp_bytes(pv->hi, pv->hi_len, iv->lo, iv->lo_len) < 0);
        }
    }
    assert_null(mk_bounds_get(b, mk_bounds_count(b)));
}

/* The encoding of a one-field key of `json`'s field v, followed by an _id-like suffix. */
static void key_of(mk_buf_t *k, const char *json, int dir)
{
    bson_t *d = tu_bson(json);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, d, "v"));
    mk_buf_reset(k);
    if (dir > 0)
        mk_keyenc_value(k, bson_iter_value(&it));
    else
        mk_keyenc_value_desc(k, bson_iter_value(&it));
    mk_keyenc_fit(k);
    bson_value_t id = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 42};
    mk_keyenc_value(k, &id);
    assert_false(k->failed);
    bson_destroy(d);
}

static bool scans(const mk_bounds_t *b, const char *json, int dir)
{
    mk_buf_t k;
    mk_buf_init(&k);
    key_of(&k, json, dir);
    bool r = in_bounds(b, k.data, k.len);
    mk_buf_free(&k);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Explain strings                                                                              */

static void test_equality(void **state)
{
    (void)state;
    check1("email", 1, false, "{ email: 'a@b.c' }", "{ email: ['[\"a@b.c\", \"a@b.c\"]'] }", 1);
    check1("email", 1, false, "{ email: { $eq: 'a@b.c' } }",
           "{ email: ['[\"a@b.c\", \"a@b.c\"]'] }", 1);
    /* numbers as MongoDB prints them; numbers share keys with close decimals: never exact */
    check1("n", 1, false, "{ n: 5 }", "{ n: ['[5, 5]'] }", 0);
    check1("n", 1, false, "{ n: 5.5 }", "{ n: ['[5.5, 5.5]'] }", 0);
    check1("n", 1, false, "{ n: 5.0 }", "{ n: ['[5.0, 5.0]'] }", 0);
    check1("n", 1, false, "{ n: NumberLong(7) }", "{ n: ['[7, 7]'] }", 0);
    check1("n", 1, false, "{ n: NaN }", "{ n: ['[nan.0, nan.0]'] }", 1);
    check1("n", 1, false, "{ n: NumberDecimal('1.5') }",
           "{ n: ['[NumberDecimal(\"1.5\"), NumberDecimal(\"1.5\")]'] }", 0);
    check1("d", 1, false, "{ d: new Date(1000) }", "{ d: ['[new Date(1000), new Date(1000)]'] }",
           1);
    check1("o", 1, false, "{ o: ObjectId('65a1b2c3d4e5f60718293a4b') }",
           "{ o: [\"[ObjectId('65a1b2c3d4e5f60718293a4b'), "
           "ObjectId('65a1b2c3d4e5f60718293a4b')]\"] }",
           1);
    check1("t", 1, false, "{ t: true }", "{ t: ['[true, true]'] }", 1);
    check1("s", 1, false, "{ s: { b: 1 } }", "{ s: ['[{ b: 1 }, { b: 1 }]'] }", 1);
    check1("s", 1, false, "{ s: MinKey }", "{ s: ['[MinKey, MinKey]'] }", 1);
    check1("s", 1, false, "{ s: Timestamp(1, 2) }", "{ s: ['[Timestamp(1, 2), Timestamp(1, 2)]'] }",
           1);
    check1("s", 1, false, "{ s: BinData(0, 'AQI=') }",
           "{ s: ['[BinData(0, 0102), BinData(0, 0102)]'] }", 1);
    check1("s", 1, false, "{ s: { $eq: /x/ } }", "{ s: ['[/x/, /x/]'] }", 1);
    /* null: missing fields index as null, and null also matches undefined */
    check1("a", 1, false, "{ a: null }", "{ a: ['[undefined, undefined]', '[null, null]'] }", 1);
    check1("a", 1, true, "{ a: null }", "{ a: ['[undefined, undefined]', '[null, null]'] }", 0);
    /* an array: the array (nested in an array) and its first element */
    check1("a", 1, true, "{ a: [1, 2] }", "{ a: ['[1, 1]', '[[ 1, 2 ], [ 1, 2 ]]'] }", 0);
    check1("a", 1, true, "{ a: [] }", "{ a: ['[undefined, undefined]', '[[], []]'] }", 0);
    /* a DBRef is a value, not operators */
    check1("r", 1, false, "{ r: { $ref: 'c', $id: 1 } }",
           "{ r: ['[{ $ref: \"c\", $id: 1 }, { $ref: \"c\", $id: 1 }]'] }", 1);
}

static void test_ranges(void **state)
{
    (void)state;
    check1("age", 1, false, "{ age: { $gte: 18 } }", "{ age: ['[18, inf.0]'] }", 1);
    check1("age", 1, false, "{ age: { $gt: 18 } }", "{ age: ['(18, inf.0]'] }", 0);
    check1("age", 1, false, "{ age: { $lt: 30 } }", "{ age: ['[-inf.0, 30)'] }", 1);
    check1("age", 1, false, "{ age: { $lte: 30 } }", "{ age: ['[-inf.0, 30]'] }", 0);
    check1("age", 1, false, "{ age: { $gte: 18, $lt: 30 } }", "{ age: ['[18, 30)'] }", 1);
    check1("age", 1, false, "{ age: { $gt: 18 }, $and: [{ age: { $lt: 30 } }] }",
           "{ age: ['(18, 30)'] }", 0);
    check1("age", 1, false, "{ age: { $gt: 30, $lt: 18 } }", "{ age: [] }", 1);
    check1("s", 1, false, "{ s: { $gte: 'b', $gt: 'b' } }", "{ s: ['(\"b\", {})'] }", 1);
    check1("s", 1, false, "{ s: { $gt: 'b', $gte: 'b' } }", "{ s: ['(\"b\", {})'] }", 1);
    check1("s", 1, false, "{ s: { $lte: 'b', $lt: 'b' } }", "{ s: ['[\"\", \"b\")'] }", 1);
    check1("s", 1, false, "{ s: { $lt: 'b', $lte: 'b' } }", "{ s: ['[\"\", \"b\")'] }", 1);
    check1("age", 1, false, "{ age: { $gt: 2.5 } }", "{ age: ['(2.5, inf.0]'] }", 0);
    check1("age", 1, false, "{ age: { $gte: -Infinity } }", "{ age: ['[-inf.0, inf.0]'] }", 1);
    check1("age", 1, false, "{ age: { $gt: Infinity } }", "{ age: [] }", 1);
    check1("age", 1, false, "{ age: { $gte: NaN } }", "{ age: ['[nan.0, nan.0]'] }", 1);
    check1("age", 1, false, "{ age: { $lt: NaN } }", "{ age: [] }", 1);
    /* multikey: [1, 40] matches $gt 18 and $lt 30 with different elements: no intersection */
    check1("age", 1, true, "{ age: { $gte: 18, $lt: 30 } }", "{ age: ['[18, inf.0]'] }", 0);
    /* type bracketing for every type */
    check1("s", 1, false, "{ s: { $gt: 'm' } }", "{ s: ['(\"m\", {})'] }", 1);
    check1("s", 1, false, "{ s: { $lte: 'm' } }", "{ s: ['[\"\", \"m\"]'] }", 1);
    check1("s", 1, false, "{ s: { $gt: { b: 1 } } }", "{ s: ['({ b: 1 }, [])'] }", 1);
    check1("s", 1, false, "{ s: { $lt: { b: 1 } } }", "{ s: ['[{}, { b: 1 })'] }", 1);
    check1("d", 1, false, "{ d: { $gt: new Date(5) } }",
           "{ d: ['(new Date(5), new Date(9223372036854775807)]'] }", 1);
    check1("d", 1, false, "{ d: { $lt: new Date(5) } }",
           "{ d: ['[new Date(-9223372036854775808), new Date(5))'] }", 1);
    check1("o", 1, false, "{ o: { $gte: ObjectId('65a1b2c3d4e5f60718293a4b') } }",
           "{ o: [\"[ObjectId('65a1b2c3d4e5f60718293a4b'), "
           "ObjectId('ffffffffffffffffffffffff')]\"] }",
           1);
    check1("t", 1, false, "{ t: { $gt: false } }", "{ t: ['(false, true]'] }", 1);
    check1("t", 1, false, "{ t: { $lt: Timestamp(5, 1) } }",
           "{ t: ['[Timestamp(0, 0), Timestamp(5, 1))'] }", 1);
    check1("t", 1, false, "{ t: { $gt: BinData(0, 'AQI=') } }",
           "{ t: [\"(BinData(0, 0102), ObjectId('000000000000000000000000'))\"] }", 1);
    /* MinKey / MaxKey cross all types; null compares like equality */
    check1("m", 1, false, "{ m: { $gt: MinKey } }", "{ m: ['(MinKey, MaxKey]'] }", 1);
    check1("m", 1, false, "{ m: { $lt: MaxKey } }", "{ m: ['[MinKey, MaxKey)'] }", 1);
    check1("m", 1, false, "{ m: { $gte: MaxKey } }", "{ m: ['[MaxKey, MaxKey]'] }", 1);
    check1("m", 1, false, "{ m: { $lt: MinKey } }", "{ m: [] }", 1);
    check1("m", 1, false, "{ m: { $gte: null } }",
           "{ m: ['[undefined, undefined]', '[null, null]'] }", 1);
    check1("m", 1, false, "{ m: { $gt: null } }", "{ m: [] }", 1);
    /* array operands compare whole arrays: left to the filter */
    check1("m", 1, false, "{ m: { $gt: [1] } }", "{ m: ['[MinKey, MaxKey]'] }", 0);
}

static void test_in_ne_not(void **state)
{
    (void)state;
    check1("status", 1, false, "{ status: { $in: ['D', 'A', 'A'] } }",
           "{ status: ['[\"A\", \"A\"]', '[\"D\", \"D\"]'] }", 1);
    check1("status", 1, false, "{ status: { $in: [] } }", "{ status: [] }", 1);
    check1("status", 1, false, "{ status: { $in: [null, 1] } }",
           "{ status: ['[undefined, undefined]', '[null, null]', '[1, 1]'] }", 0);
    check1("status", 1, false, "{ status: { $in: ['x', /^ab/] } }",
           "{ status: ['[\"ab\", \"ac\")', '[\"x\", \"x\"]', '[/^ab/, /^ab/]'] }", 1);
    check1("n", 1, false, "{ n: { $ne: 5 } }", "{ n: ['[MinKey, 5)', '(5, MaxKey]'] }", 0);
    check1("s", 1, false, "{ s: { $ne: 'x' } }", "{ s: ['[MinKey, \"x\")', '(\"x\", MaxKey]'] }",
           1);
    check1("s", 1, false, "{ s: { $ne: null } }",
           "{ s: ['[MinKey, undefined)', '(null, MaxKey]'] }", 1);
    /* multikey: an empty array (key undefined) is not null, and a scalar where a path goes on
     * is keyed null but never seen as null: keep both in */
    check1("s", 1, true, "{ s: { $ne: null } }", "{ s: ['[MinKey, MaxKey]'] }", 0);
    check1("s", 1, true, "{ s: { $ne: 'x' } }", "{ s: ['[MinKey, \"x\")', '(\"x\", MaxKey]'] }", 0);
    check1("s", 1, false, "{ s: { $nin: ['x', 'y'] } }",
           "{ s: ['[MinKey, \"x\")', '(\"x\", \"y\")', '(\"y\", MaxKey]'] }", 1);
    check1("s", 1, false, "{ s: { $not: { $gt: 'm' } } }",
           "{ s: ['[MinKey, \"m\"]', '[{}, MaxKey]'] }", 1);
    check1("s", 1, false, "{ s: { $not: { $gt: 'c', $lt: 'm' } } }",
           "{ s: ['[MinKey, \"c\"]', '[\"m\", MaxKey]'] }", 1);
    /* an anchored literal regex is exact: its complement is fine */
    check1("s", 1, false, "{ s: { $not: /^ab/ } }",
           "{ s: ['[MinKey, \"ab\")', '[\"ac\", /^ab/)', '(/^ab/, MaxKey]'] }", 1);
    /* not exact inside: no complement */
    check1("s", 1, false, "{ s: { $not: /ab/ } }", "{ s: ['[MinKey, MaxKey]'] }", 0);
    check1("s", 1, false, "{ s: { $not: /^a.b/ } }", "{ s: ['[MinKey, MaxKey]'] }", 0);
    check1("s", 1, false, "{ s: { $not: { $size: 2 } } }", "{ s: ['[MinKey, MaxKey]'] }", 0);
    check1("s", 1, false, "{ s: { $ne: [1] } }", "{ s: ['[MinKey, MaxKey]'] }", 0);
}

static void test_regex_exists_type(void **state)
{
    (void)state;
    check1("name", 1, false, "{ name: /^Jo/ }", "{ name: ['[\"Jo\", \"Jp\")', '[/^Jo/, /^Jo/]'] }",
           1);
    check1("name", 1, false, "{ name: { $regex: '^Jo', $options: 's' } }",
           "{ name: ['[\"Jo\", \"Jp\")', '[/^Jo/s, /^Jo/s]'] }", 1);
    check1("name", 1, false, "{ name: { $regex: /^Jo/ } }",
           "{ name: ['[\"Jo\", \"Jp\")', '[/^Jo/, /^Jo/]'] }", 1);
    check1("name", 1, false, "{ name: /^Jo.*n/ }",
           "{ name: ['[\"Jo\", \"Jp\")', '[/^Jo.*n/, /^Jo.*n/]'] }", 0);
    check1("name", 1, false, "{ name: /^Joh?n/ }",
           "{ name: ['[\"Jo\", \"Jp\")', '[/^Joh?n/, /^Joh?n/]'] }", 0);
    check1("name", 1, false, "{ name: /^Jo+/ }",
           "{ name: ['[\"Jo\", \"Jp\")', '[/^Jo+/, /^Jo+/]'] }", 0);
    check1("name", 1, false, "{ name: /^a\\.b/ }",
           "{ name: ['[\"a.b\", \"a.c\")', '[/^a\\\\.b/, /^a\\\\.b/]'] }", 1);
    check1("name", 1, false, "{ name: /\\Aab/ }",
           "{ name: ['[\"ab\", \"ac\")', '[/\\\\Aab/, /\\\\Aab/]'] }", 1);
    /* not anchored, case-insensitive, multi-line, alternatives: every string */
    check1("name", 1, false, "{ name: /Jo/ }", "{ name: ['[\"\", {})', '[/Jo/, /Jo/]'] }", 0);
    check1("name", 1, false, "{ name: /^Jo/i }", "{ name: ['[\"\", {})', '[/^Jo/i, /^Jo/i]'] }", 0);
    check1("name", 1, false, "{ name: /^Jo/m }", "{ name: ['[\"\", {})', '[/^Jo/m, /^Jo/m]'] }", 0);
    check1("name", 1, false, "{ name: /^Jo|x/ }", "{ name: ['[\"\", {})', '[/^Jo|x/, /^Jo|x/]'] }",
           0);
    check1("name", 1, false, "{ name: /^/ }", "{ name: ['[\"\", {})', '[/^/, /^/]'] }", 1);

    check1("e", 1, false, "{ e: { $exists: true } }", "{ e: ['[MinKey, MaxKey]'] }", 0);
    check1("e", 1, false, "{ e: { $exists: false } }", "{ e: ['[null, null]'] }", 0);
    check1("e", 1, false, "{ e: { $exists: 0 } }", "{ e: ['[null, null]'] }", 0);
    check1("e", 1, false, "{ e: { $type: 'string' } }", "{ e: ['[\"\", {})'] }", 0);
    check1("e", 1, false, "{ e: { $type: 'number' } }", "{ e: ['[nan.0, inf.0]'] }", 0);
    check1("e", 1, false, "{ e: { $type: ['bool', 10] } }",
           "{ e: ['[null, null]', '[false, true]'] }", 0);
    check1("e", 1, false, "{ e: { $type: 'array' } }", "{ e: ['[MinKey, MaxKey]'] }", 0);
    /* conditions that give no bounds do not make the index usable */
    const char *e = "e";
    int d = 1;
    assert_true(unusable("{ e: { $size: 2 } }", &e, &d, 1, true));
    assert_true(unusable("{ e: { $mod: [2, 0] } }", &e, &d, 1, false));
    assert_true(unusable("{ $expr: { $eq: ['$e', 1] } }", &e, &d, 1, false));
    assert_true(unusable("{ $nor: [{ e: 1 }] }", &e, &d, 1, false));
    assert_true(unusable("{ 'e.x': 1 }", &e, &d, 1, false));
}

static void test_elem_match(void **state)
{
    (void)state;
    /* MongoDB's survey example: $elemMatch lets a multikey index intersect */
    check1("ratings", 1, true, "{ ratings: { $elemMatch: { $gte: 3, $lte: 6 } } }",
           "{ ratings: ['[3, 6]'] }", 0);
    check1("ratings", 1, true, "{ ratings: { $gte: 3, $lte: 6 } }", "{ ratings: ['[3, inf.0]'] }",
           0);
    /* compound multikey on paths below one array */
    const char *paths[] = {"ratings.score", "ratings.by"};
    int dirs[] = {1, 1};
    built_t x;
    build(&x, "{ 'ratings.score': { $lte: 5 }, 'ratings.by': 'anon' }", paths, dirs, 2, true);
    tu_assert_bson_eq(&x.explain,
                      "{ 'ratings.score': ['[-inf.0, 5]'], 'ratings.by': ['[MinKey, MaxKey]'] }");
    built_free(&x);
    build(&x, "{ ratings: { $elemMatch: { score: { $lte: 5 }, by: 'anon' } } }", paths, dirs, 2,
          true);
    tu_assert_bson_eq(
        &x.explain, "{ 'ratings.score': ['[-inf.0, 5]'], 'ratings.by': ['[\"anon\", \"anon\"]'] }");
    assert_false(x.exact);
    built_free(&x);
    /* not multikey: both compound */
    build(&x, "{ 'ratings.score': { $lte: 5 }, 'ratings.by': 'anon' }", paths, dirs, 2, false);
    tu_assert_bson_eq(
        &x.explain, "{ 'ratings.score': ['[-inf.0, 5]'], 'ratings.by': ['[\"anon\", \"anon\"]'] }");
    built_free(&x);
    /* the preference of a multikey field: a point before a range */
    check1("a", 1, true, "{ a: { $gt: 1 }, $and: [{ a: 7 }] }", "{ a: ['[7, 7]'] }", 0);
    /* $all is several conditions */
    check1("a", 1, false, "{ a: { $all: ['x', 'y'] } }", "{ a: [] }", 1);
    check1("a", 1, true, "{ a: { $all: ['x', 'y'] } }", "{ a: ['[\"x\", \"x\"]'] }", 0);
    check1("a", 1, true, "{ a: { $all: [{ $elemMatch: { $gt: 1, $lt: 3 } }] } }",
           "{ a: ['(1, 3)'] }", 0);
    const char *pb[] = {"a.b"};
    int d1[] = {1};
    build(&x, "{ a: { $all: [{ $elemMatch: { b: 5 } }] } }", pb, d1, 1, true);
    tu_assert_bson_eq(&x.explain, "{ 'a.b': ['[5, 5]'] }");
    built_free(&x);
    /* nested $elemMatch on values inside one on values: the inner array is indexed whole */
    check1("a", 1, true, "{ a: { $elemMatch: { $elemMatch: { $gt: 1 } } } }",
           "{ a: ['[MinKey, MaxKey]'] }", 0);
}

static void test_compound(void **state)
{
    (void)state;
    const char *paths[] = {"lastName", "firstName"};
    int dirs[] = {1, -1};
    built_t x;
    build(&x, "{ lastName: 'Smith', firstName: { $gt: 'A' } }", paths, dirs, 2, false);
    tu_assert_bson_eq(&x.explain,
                      "{ lastName: ['[\"Smith\", \"Smith\"]'], firstName: ['({}, \"A\")'] }");
    assert_true(x.exact);
    assert_int_equal(mk_bounds_count(x.b), 1);
    built_free(&x);

    build(&x, "{ lastName: 'Smith' }", paths, dirs, 2, false);
    tu_assert_bson_eq(&x.explain,
                      "{ lastName: ['[\"Smith\", \"Smith\"]'], firstName: ['[MaxKey, MinKey]'] }");
    assert_true(x.exact);
    built_free(&x);

    build(&x, "{ lastName: { $in: ['B', 'A'] }, firstName: { $in: ['x', 'y'] } }", paths, dirs, 2,
          false);
    tu_assert_bson_eq(&x.explain, "{ lastName: ['[\"A\", \"A\"]', '[\"B\", \"B\"]'],"
                                  "  firstName: ['[\"y\", \"y\"]', '[\"x\", \"x\"]'] }");
    assert_int_equal(mk_bounds_count(x.b), 4);
    assert_true(x.exact);
    built_free(&x);

    /* a field after a range shows its bounds (as MongoDB's explain does) but the ranges do not
     * enforce it: not exact */
    const char *p3[] = {"a", "b", "c"};
    int d3[] = {1, 1, -1};
    build(&x, "{ a: 'x', b: { $gte: 2 }, c: 'z' }", p3, d3, 3, false);
    tu_assert_bson_eq(&x.explain,
                      "{ a: ['[\"x\", \"x\"]'], b: ['[2, inf.0]'], c: ['[\"z\", \"z\"]'] }");
    assert_false(x.exact);
    assert_int_equal(mk_bounds_count(x.b), 1);
    built_free(&x);

    /* no condition on the first field: the index cannot help; $or alone does not count */
    assert_true(unusable("{ firstName: 'x' }", paths, dirs, 2, false));
    assert_true(unusable("{ $or: [{ lastName: 'a' }, { lastName: 'b' }] }", paths, dirs, 2, false));
    assert_true(unusable("{}", paths, dirs, 2, false));
    /* an $or of one clause is that clause */
    build(&x, "{ $or: [{ lastName: 'a' }] }", paths, dirs, 2, false);
    tu_assert_bson_eq(&x.explain,
                      "{ lastName: ['[\"a\", \"a\"]'], firstName: ['[MaxKey, MinKey]'] }");
    built_free(&x);
    /* other conditions make the bounds inexact */
    build(&x, "{ lastName: 'a', age: 3 }", paths, dirs, 2, false);
    assert_false(x.exact);
    built_free(&x);
    build(&x, "{ lastName: 'a', $or: [{ x: 1 }, { y: 1 }] }", paths, dirs, 2, false);
    assert_false(x.exact);
    built_free(&x);
    build(&x, "{ lastName: 'a', $comment: 'hi' }", paths, dirs, 2, false);
    assert_true(x.exact);
    built_free(&x);
}

static void test_descending(void **state)
{
    (void)state;
    check1("a", -1, false, "{ a: { $gt: 5 } }", "{ a: ['[inf.0, 5)'] }", 0);
    check1("a", -1, false, "{ a: { $in: [1, 'x', 3] } }",
           "{ a: ['[\"x\", \"x\"]', '[3, 3]', '[1, 1]'] }", 0);
    check1("a", -1, false, "{ a: { $ne: 'x' } }", "{ a: ['[MaxKey, \"x\")', '(\"x\", MinKey]'] }",
           1);
    const char *p = "a";
    int d = -1;
    built_t x;
    build(&x, "{ a: { $gte: 'b', $lt: 'd' } }", &p, &d, 1, false);
    assert_true(scans(x.b, "{ v: 'b' }", -1));
    assert_true(scans(x.b, "{ v: 'c' }", -1));
    assert_true(scans(x.b, "{ v: 'cz' }", -1));
    assert_false(scans(x.b, "{ v: 'd' }", -1));
    assert_false(scans(x.b, "{ v: 'a' }", -1));
    assert_false(scans(x.b, "{ v: 'bZ' }", 1)); /* an ascending key is not in these ranges */
    built_free(&x);
}

static void test_bytes(void **state)
{
    (void)state;
    const char *p = "a";
    int d = 1;
    built_t x;
    build(&x, "{ a: 5 }", &p, &d, 1, false);
    assert_int_equal(mk_bounds_count(x.b), 1);
    assert_true(scans(x.b, "{ v: 5 }", 1));
    assert_true(scans(x.b, "{ v: 5.0 }", 1));
    assert_true(scans(x.b, "{ v: NumberLong(5) }", 1));
    assert_true(scans(x.b, "{ v: NumberDecimal('5.00') }", 1));
    assert_false(scans(x.b, "{ v: 6 }", 1));
    assert_false(scans(x.b, "{ v: '5' }", 1));
    assert_false(mk_bounds_is_full(x.b));
    built_free(&x);

    /* a decimal just above 5 shares the key of 5: an exclusive lower end at 5 must keep it */
    build(&x, "{ a: { $gt: 5 } }", &p, &d, 1, false);
    assert_true(scans(x.b, "{ v: NumberDecimal('5.000000000000000000000001') }", 1));
    assert_true(scans(x.b, "{ v: Infinity }", 1));
    assert_false(scans(x.b, "{ v: 'a' }", 1));
    assert_false(scans(x.b, "{ v: NaN }", 1));
    assert_false(x.exact);
    built_free(&x);
    build(&x, "{ a: { $lt: NumberDecimal('5.000000000000000000000001') } }", &p, &d, 1, false);
    assert_true(scans(x.b, "{ v: 5 }", 1));
    assert_false(scans(x.b, "{ v: 6 }", 1));
    built_free(&x);
    /* int64 beyond 2^53 next to a decimal between it and the double below */
    build(&x, "{ a: { $gte: NumberLong('1152921504606846977') } }", &p, &d, 1, false);
    assert_true(scans(x.b, "{ v: NumberDecimal('1152921504606846977.5') }", 1));
    assert_true(scans(x.b, "{ v: NumberLong('1152921504606846977') }", 1));
    assert_false(x.exact);
    built_free(&x);

    /* why equality on a number is never exact: a decimal next to it shares its key */
    bson_t *f2 = tu_bson("{ a: 2 }");
    bson_t *d2 = tu_bson("{ a: NumberDecimal('2.000000000000000001') }");
    mk_matcher_t *m = mk_matcher_compile(f2, NULL);
    assert_non_null(m);
    assert_false(mk_matcher_match(m, d2, NULL));
    build(&x, "{ a: 2 }", &p, &d, 1, false);
    assert_true(scans(x.b, "{ v: NumberDecimal('2.000000000000000001') }", 1));
    assert_false(x.exact);
    built_free(&x);
    build(&x, "{ a: { $in: [2, /^a/] } }", &p, &d, 1, false); /* points beside a range */
    assert_false(x.exact);
    built_free(&x);
    build(&x, "{ a: { $in: ['x', /^a/] } }", &p, &d, 1, false);
    assert_true(x.exact);
    built_free(&x);
    mk_matcher_destroy(m);
    bson_destroy(f2);
    bson_destroy(d2);

    build(&x, "{ a: { $exists: true } }", &p, &d, 1, false);
    assert_true(mk_bounds_is_full(x.b));
    assert_true(scans(x.b, "{ v: MinKey }", 1));
    assert_true(scans(x.b, "{ v: MaxKey }", 1));
    built_free(&x);

    /* long keys are stored shortened (keyenc.h): bounds on them still hold them */
    char big[700];
    memset(big, 'q', 600);
    strcpy(big + 600, "' }");
    char filter[800], doc[800];
    snprintf(filter, sizeof filter, "{ a: '%.600s' }", big);
    snprintf(doc, sizeof doc, "{ v: '%.600s' }", big);
    build(&x, filter, &p, &d, 1, false);
    assert_true(scans(x.b, doc, 1));
    assert_false(x.exact);
    snprintf(doc, sizeof doc, "{ v: '%.300s' }", big);
    assert_false(scans(x.b, doc, 1));
    built_free(&x);
    snprintf(filter, sizeof filter, "{ a: { $gt: 'a', $lte: '%.600s' } }", big);
    build(&x, filter, &p, &d, 1, false);
    snprintf(doc, sizeof doc, "{ v: '%.600s' }", big);
    assert_true(scans(x.b, doc, 1));
    built_free(&x);
    d = -1;
    build(&x, filter, &p, &d, 1, false);
    assert_true(scans(x.b, doc, -1));
    built_free(&x);
}

static void test_cap(void **state)
{
    (void)state;
    const char *paths[] = {"a", "b"};
    int dirs[] = {1, 1};
    built_t x;
    char f[1024];
    strcpy(f, "{ a: { $in: [");
    for (int i = 0; i < 15; i++) sprintf(f + strlen(f), "%s'x%02d'", i ? ", " : "", i);
    strcat(f, "] }, b: { $in: [");
    for (int i = 0; i < 15; i++) sprintf(f + strlen(f), "%s'y%02d'", i ? ", " : "", i);
    strcat(f, "] } }");
    build(&x, f, paths, dirs, 2, false);
    /* 15 x 15 > 200: only a's points are scanned, and b is left to the filter */
    assert_int_equal(mk_bounds_count(x.b), 15);
    assert_false(x.exact);
    bson_iter_t it, arr;
    assert_true(bson_iter_init_find(&it, &x.explain, "b"));
    assert_true(bson_iter_recurse(&it, &arr));
    int n = 0;
    while (bson_iter_next(&arr)) n++;
    assert_int_equal(n, 15);
    built_free(&x);

    /* a single field may have many points */
    char *g = malloc(20000);
    strcpy(g, "{ a: { $in: [");
    for (int i = 0; i < 1000; i++) sprintf(g + strlen(g), "%s%d", i ? ", " : "", i);
    strcat(g, "] } }");
    build(&x, g, paths, dirs, 2, false);
    assert_int_equal(mk_bounds_count(x.b), 1000);
    built_free(&x);
    free(g);
}

static void test_errors(void **state)
{
    (void)state;
    bson_t *f = tu_bson("{ a: 1 }");
    mk_error_t err = {0};
    mk_bounds_t *b = NULL;
    const char *p[] = {"a", ""};
    int d[] = {2, 1};
    assert_int_equal(mk_bounds_build(f, p, d, 0, false, &b, NULL, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    assert_null(b);
    assert_int_equal(mk_bounds_build(f, p, d, 1, false, &b, NULL, &err), MK_ERR);
    assert_non_null(strstr(err.message, "direction"));
    int d2[] = {1, 1};
    assert_int_equal(mk_bounds_build(f, p, d2, 2, false, &b, NULL, &err), MK_ERR);
    assert_non_null(strstr(err.message, "no path"));
    assert_int_equal(mk_bounds_build(f, p, d2, 33, false, &b, NULL, &err), MK_ERR);
    bson_destroy(f);

    /* nesting past 100 levels: { a: 1, $and: [{ a: 1, $and: [...] }] } */
    f = tu_bson("{ a: 1 }");
    for (int i = 0; i < 120; i++) {
        bson_t *outer = bson_new(), arr;
        bson_append_int32(outer, "a", -1, 1);
        bson_append_array_begin(outer, "$and", -1, &arr);
        bson_append_document(&arr, "0", -1, f);
        bson_append_array_end(outer, &arr);
        bson_destroy(f);
        f = outer;
    }
    assert_int_equal(mk_bounds_build(f, p, d2, 1, false, &b, NULL, &err), MK_ERR);
    assert_non_null(strstr(err.message, "nested"));
    bson_destroy(f);
}

/* ------------------------------------------------------------------------------------------ */
/* A tiny key generator for top-level fields: the concatenation of each field's encoding, one  */
/* key per element of the (single) array, undefined for an empty array, null when missing.    */
/* It checks the test's understanding of keys against index_keys.c on simple patterns.        */

typedef struct keyset {
    mk_buf_t *k;
    size_t n, cap;
} keyset_t;

static void keyset_add(keyset_t *ks, const uint8_t *key, size_t len)
{
    for (size_t i = 0; i < ks->n; i++)
        if (ks->k[i].len == len && memcmp(ks->k[i].data, key, len) == 0) return;
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 8;
        ks->k = realloc(ks->k, ks->cap * sizeof *ks->k);
        assert_non_null(ks->k);
    }
    mk_buf_init(&ks->k[ks->n]);
    mk_buf_append(&ks->k[ks->n], key, len);
    ks->n++;
}

static void keyset_free(keyset_t *ks)
{
    for (size_t i = 0; i < ks->n; i++) mk_buf_free(&ks->k[i]);
    free(ks->k);
    ks->k = NULL;
    ks->n = ks->cap = 0;
}

/* false: two arrays (parallel arrays). */
static bool local_keys(const bson_t *doc, const char *const *paths, const int *dirs, size_t n,
                       keyset_t *out)
{
    static const bson_value_t null_v = {.value_type = BSON_TYPE_NULL};
    static const bson_value_t undef_v = {.value_type = BSON_TYPE_UNDEFINED};
    bson_value_t vals[8];
    int arr = -1;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, paths[i]))
            vals[i] = *bson_iter_value(&it);
        else
            vals[i] = null_v;
        if (vals[i].value_type == BSON_TYPE_ARRAY) {
            if (arr >= 0) return false;
            arr = (int)i;
        }
    }
    bson_value_t elems[64];
    size_t ne = 0;
    if (arr >= 0) {
        bson_iter_t ai;
        assert_true(bson_iter_init_from_data(&ai, vals[arr].value.v_doc.data,
                                             vals[arr].value.v_doc.data_len));
        while (bson_iter_next(&ai) && ne < 64) elems[ne++] = *bson_iter_value(&ai);
        if (ne == 0) elems[ne++] = undef_v;
    } else {
        ne = 1;
    }
    for (size_t e = 0; e < ne; e++) {
        mk_buf_t k;
        mk_buf_init(&k);
        for (size_t i = 0; i < n; i++) {
            const bson_value_t *v = (int)i == arr ? &elems[e] : &vals[i];
            if (dirs[i] > 0)
                mk_keyenc_value(&k, v);
            else
                mk_keyenc_value_desc(&k, v);
        }
        keyset_add(out, k.data, k.len);
        mk_buf_free(&k);
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Property test                                                                                */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 33) % n;
}

/* Values documents and filters are made of (held by `pool`). */
static bson_t *pool;
static bson_value_t scalars[64];
static size_t nscalars;
static bson_value_t composites[32];
static size_t ncomposites;
static bson_value_t core[16]; /* a few values used most of the time, so that they meet */
static size_t ncore;
static char long_str[601];

static void pool_init(void)
{
    pool = tu_bson(
        "{ s: [ -1, 0, 1, 2, 5, 7, 5.0, 2.5, -2.5, NaN, Infinity, -Infinity, NumberLong(5),"
        "       NumberLong('1152921504606846977'), NumberLong('1152921504606846976'),"
        "       NumberDecimal('5'), NumberDecimal('5.0000000000000000000000001'),"
        "       NumberDecimal('2.5'), NumberDecimal('1152921504606846977.5'),"
        "       NumberDecimal('NaN'), NumberDecimal('-Infinity'),"
        "       '', 'a', 'ab', 'abc', 'abd', 'ac', 'b', 'B', 'a.b', '\\u03a9', '\\u03a9x',"
        "       null, MinKey, MaxKey, true, false, new Date(0), new Date(1000),"
        "       ObjectId('65a1b2c3d4e5f60718293a4b'), Timestamp(1, 2), BinData(0, 'AQI='),"
        "       { b: 1 }, { b: 'abc', c: 2 }, { c: 1 }, {} ],"
        "  c: [ [], [1, 2], [[1]], [{ b: 1 }, { b: 2, c: 3 }], [null], [1, 'a'], ['ab', 'b'],"
        "       [{ b: [1, 5] }], [[]] ],"
        "  k: [ 1, 2, 5, 2.5, 'a', 'ab', 'b', null, NumberDecimal('2.000000000000000001'),"
        "       [], { b: 1 }, NumberLong('1152921504606846977'),"
        "       NumberDecimal('1152921504606846977.5') ] }");
    bson_iter_t it, sub;
    assert_true(bson_iter_init_find(&it, pool, "s") && bson_iter_recurse(&it, &sub));
    while (bson_iter_next(&sub)) scalars[nscalars++] = *bson_iter_value(&sub);
    assert_true(bson_iter_init_find(&it, pool, "c") && bson_iter_recurse(&it, &sub));
    while (bson_iter_next(&sub)) composites[ncomposites++] = *bson_iter_value(&sub);
    assert_true(bson_iter_init_find(&it, pool, "k") && bson_iter_recurse(&it, &sub));
    while (bson_iter_next(&sub)) core[ncore++] = *bson_iter_value(&sub);
    memset(long_str, 'l', 600);
}

static const bson_value_t *any_scalar(void)
{
    const bson_value_t *v;
    do v = rnd(10) < 6 ? &core[rnd((uint32_t)ncore)] : &scalars[rnd((uint32_t)nscalars)];
    while (v->value_type == BSON_TYPE_ARRAY);
    return v;
}

static const bson_value_t *core_value(void)
{
    return &core[rnd((uint32_t)ncore)];
}

static const bson_value_t *any_value(void)
{
    return rnd(5) == 0 ? &composites[rnd((uint32_t)ncomposites)] : any_scalar();
}

static void gen_value(bson_t *parent, const char *key, int depth, bool arrays)
{
    uint32_t r = rnd(100);
    if (depth >= 3 || r < 55) {
        const bson_value_t *v =
            arrays && rnd(8) == 0 ? &composites[rnd((uint32_t)ncomposites)] : any_scalar();
        if (!arrays && v->value_type == BSON_TYPE_ARRAY) v = any_scalar();
        if (rnd(40) == 0) {
            bson_append_undefined(parent, key, -1);
        } else if (rnd(60) == 0) {
            /* long keys are stored shortened: two that share their first 460 bytes */
            long_str[599] = rnd(2) ? 'l' : 'm';
            bson_append_utf8(parent, key, -1, long_str, 600);
        } else if (rnd(60) == 0) {
            bson_append_utf8(parent, key, -1, "a\0b", 3);
        } else {
            bson_append_value(parent, key, -1, v);
        }
    } else if (r < 78 || !arrays) {
        bson_t sub;
        bson_append_document_begin(parent, key, -1, &sub);
        static const char *names[] = {"b", "c", "0"};
        for (int i = 0; i < 3; i++)
            if (rnd(100) < (i == 2 ? 10u : 55u)) gen_value(&sub, names[i], depth + 1, arrays);
        bson_append_document_end(parent, &sub);
    } else {
        bson_t sub;
        bson_append_array_begin(parent, key, -1, &sub);
        uint32_t n = rnd(4);
        bool docs = rnd(3) == 0; /* an array of documents: paths below it meet per element */
        for (uint32_t i = 0; i < n; i++) {
            char k[16];
            snprintf(k, sizeof k, "%u", i);
            if (docs) {
                bson_t el;
                bson_append_document_begin(&sub, k, -1, &el);
                if (rnd(3)) bson_append_value(&el, "b", -1, core_value());
                if (rnd(3)) bson_append_value(&el, "c", -1, core_value());
                bson_append_document_end(&sub, &el);
            } else {
                gen_value(&sub, k, depth + 1, arrays);
            }
        }
        bson_append_array_end(parent, &sub);
    }
}

static bson_t *gen_doc(bool arrays)
{
    bson_t *d = bson_new();
    static const char *fields[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        if (i == 0 && arrays && rnd(4) == 0) {
            /* a: [{ b, c }, ...]: fields below one array pair up per element */
            bson_t arr, el;
            bson_append_array_begin(d, "a", -1, &arr);
            for (uint32_t j = 0, n = 1 + rnd(3); j < n; j++) {
                char k[16];
                snprintf(k, sizeof k, "%u", j);
                bson_append_document_begin(&arr, k, -1, &el);
                if (rnd(4)) bson_append_value(&el, "b", -1, core_value());
                if (rnd(4)) bson_append_value(&el, "c", -1, core_value());
                bson_append_document_end(&arr, &el);
            }
            bson_append_array_end(d, &arr);
        } else if (rnd(100) < 75) {
            gen_value(d, fields[i], 0, arrays);
        }
    }
    return d;
}

static const char *const index_paths[] = {"a", "b", "c", "a.b", "a.c", "a.b.c", "c.b", "a.0"};
static const char *const sub_paths[] = {"b", "c", "b.c", "0"};

static const char *regexes[][2] = {
    {"^ab", ""},  {"^a", ""},       {"^a.c", ""}, {"b", ""},     {"^ab", "i"},   {"^a\\.b", ""},
    {"^ab*", ""}, {"^\\u03a9", ""}, {"^$", ""},   {"^abc?", ""}, {"^(a|b)", ""}, {"^", "s"},
};

static void append_regex(bson_t *f, const char *key)
{
    int i = (int)rnd(sizeof regexes / sizeof regexes[0]);
    char pat[32];
    /* \u03a9 written as its UTF-8 bytes */
    const char *src = regexes[i][0];
    const char *omega = strstr(src, "\\u03a9");
    if (omega)
        snprintf(pat, sizeof pat, "%.*s\xce\xa9%s", (int)(omega - src), src, omega + 6);
    else
        snprintf(pat, sizeof pat, "%s", src);
    bson_append_regex(f, key, -1, pat, regexes[i][1]);
}

/* A value usable as an operand of $eq/$in (no undefined) — or of a comparison. */
static void append_operand(bson_t *f, const char *key, bool composite_ok)
{
    if (rnd(40) == 0) {
        long_str[599] = "klm"[rnd(3)];
        bson_append_utf8(f, key, -1, long_str, 600);
        return;
    }
    const bson_value_t *v = composite_ok ? any_value() : any_scalar();
    bson_append_value(f, key, -1, v);
}

static void gen_cond(bson_t *f, const char *const *paths, size_t npaths, const char *const *sub,
                     size_t nsub, int depth);

static void gen_ops(bson_t *f, const char *path, int depth, bool in_not)
{
    bson_t ops, arr;
    static const char *cmp[] = {"$gt", "$gte", "$lt", "$lte"};
    uint32_t r = rnd(in_not ? 6 : 14);
    bson_append_document_begin(f, path, -1, &ops);
    switch (r) {
    case 0:
        append_operand(&ops, cmp[rnd(4)], rnd(10) == 0);
        break;
    case 1:
        append_operand(&ops, cmp[rnd(2)], false);
        append_operand(&ops, cmp[2 + rnd(2)], false);
        break;
    case 2:
    case 3:
        bson_append_array_begin(&ops, r == 2 ? "$in" : "$nin", -1, &arr);
        for (uint32_t i = 0, n = rnd(4); i < n; i++) {
            char k[16];
            snprintf(k, sizeof k, "%u", i);
            if (rnd(6) == 0)
                append_regex(&arr, k);
            else
                append_operand(&arr, k, true);
        }
        bson_append_array_end(&ops, &arr);
        break;
    case 4:
        append_operand(&ops, rnd(2) ? "$eq" : "$ne", true);
        break;
    case 5: {
        static const char *types[] = {"string", "number", "null", "array",    "object",
                                      "bool",   "date",   "int",  "undefined"};
        bson_append_utf8(&ops, "$type", -1, types[rnd(9)], -1);
        break;
    }
    case 6:
        bson_append_bool(&ops, "$exists", -1, rnd(2));
        break;
    case 7:
        if (rnd(2)) {
            append_regex(&ops, "$not");
        } else if (depth < 3) {
            gen_ops(&ops, "$not", depth + 1, true);
        } else {
            bson_append_int32(&ops, "$size", -1, 1);
        }
        break;
    case 8: { /* $elemMatch on values */
        bson_t em;
        bson_append_document_begin(&ops, "$elemMatch", -1, &em);
        append_operand(&em, cmp[rnd(2)], false);
        if (rnd(2)) append_operand(&em, cmp[2 + rnd(2)], false);
        if (rnd(4) == 0) append_operand(&em, "$ne", false);
        bson_append_document_end(&ops, &em);
        break;
    }
    case 9: /* $elemMatch on documents */
        if (depth < 3) {
            bson_t em;
            bson_append_document_begin(&ops, "$elemMatch", -1, &em);
            for (uint32_t i = 0, n = 1 + rnd(2); i < n; i++)
                gen_cond(&em, sub_paths, 4, sub_paths, 4, depth + 1);
            bson_append_document_end(&ops, &em);
        } else {
            bson_append_int32(&ops, "$size", -1, 0);
        }
        break;
    case 10: {
        bool em = rnd(3) == 0;
        bson_append_array_begin(&ops, "$all", -1, &arr);
        for (uint32_t i = 0, n = 1 + rnd(2); i < n; i++) {
            char k[16];
            snprintf(k, sizeof k, "%u", i);
            if (em) { /* $all of $elemMatch: on values or on documents */
                bson_t el, emq;
                bson_append_document_begin(&arr, k, -1, &el);
                bson_append_document_begin(&el, "$elemMatch", -1, &emq);
                if (rnd(2))
                    append_operand(&emq, cmp[rnd(4)], false);
                else
                    gen_cond(&emq, sub_paths, 4, sub_paths, 4, 2);
                bson_append_document_end(&el, &emq);
                bson_append_document_end(&arr, &el);
            } else {
                append_operand(&arr, k, true);
            }
        }
        bson_append_array_end(&ops, &arr);
        break;
    }
    case 11:
        bson_append_int32(&ops, "$size", -1, (int32_t)rnd(3));
        break;
    case 12:
        bson_append_utf8(&ops, "$regex", -1, rnd(2) ? "^ab" : "b", -1);
        if (rnd(2)) bson_append_utf8(&ops, "$options", -1, rnd(2) ? "i" : "s", -1);
        break;
    default:
        bson_append_array_begin(&ops, "$mod", -1, &arr);
        bson_append_int32(&arr, "0", -1, 2);
        bson_append_int32(&arr, "1", -1, 1);
        bson_append_array_end(&ops, &arr);
        break;
    }
    bson_append_document_end(f, &ops);
}

static void gen_cond(bson_t *f, const char *const *paths, size_t npaths, const char *const *sub,
                     size_t nsub, int depth)
{
    uint32_t r = rnd(20);
    if (depth < 2 && r >= 17) { /* $and / $or / $nor */
        static const char *ops[] = {"$and", "$or", "$nor"};
        bson_t arr, cl;
        bson_append_array_begin(f, ops[r - 17], -1, &arr);
        for (uint32_t i = 0, n = 1 + rnd(2); i < n; i++) {
            char k[16];
            snprintf(k, sizeof k, "%u", i);
            bson_append_document_begin(&arr, k, -1, &cl);
            gen_cond(&cl, paths, npaths, sub, nsub, depth + 1);
            bson_append_document_end(&arr, &cl);
        }
        bson_append_array_end(f, &arr);
        return;
    }
    const char *path = rnd(8) == 0 ? "x" : paths[rnd((uint32_t)npaths)];
    if (r < 6)
        append_operand(f, path, true);
    else if (r < 8)
        append_regex(f, path);
    else
        gen_ops(f, path, depth, false);
}

typedef struct pcase {
    const char *paths[3];
    int dirs[3];
    size_t n;
} pcase_t;

static void gen_pattern(pcase_t *pc)
{
    static const char *const siblings[][2] = {
        {"a.b", "a.c"}, {"a", "a.b"}, {"a.b", "a.b.c"}, {"a.c", "a.b"}, {"a.0", "a.b"}};
    if (rnd(3) == 0) { /* fields below one array */
        int i = (int)rnd(5);
        pc->n = 2;
        pc->paths[0] = siblings[i][0];
        pc->paths[1] = siblings[i][1];
        pc->dirs[0] = rnd(2) ? 1 : -1;
        pc->dirs[1] = rnd(2) ? 1 : -1;
        return;
    }
    pc->n = 1 + rnd(3);
    for (size_t i = 0; i < pc->n; i++) {
        const char *p;
        bool dup;
        do {
            p = index_paths[rnd(8)];
            dup = false;
            for (size_t j = 0; j < i; j++) dup = dup || !strcmp(pc->paths[j], p);
        } while (dup);
        pc->paths[i] = p;
        pc->dirs[i] = rnd(2) ? 1 : -1;
    }
}

typedef struct stats {
    size_t cases, usable, matched_docs, exact, exact_checked, filters_rejected, local_checked;
} stats_t;

typedef struct dockeys {
    bson_t *doc;
    keyset_t keys; /* stored form: fit + an _id suffix */
    bool ok;       /* indexable (no parallel arrays...) */
} dockeys_t;

typedef struct collect {
    keyset_t *ks;
    int id;
} collect_t;

static int collect_key(void *ud, const uint8_t *key, size_t len, const bson_value_t *values)
{
    (void)values;
    collect_t *c = ud;
    mk_buf_t k;
    mk_buf_init(&k);
    mk_buf_append(&k, key, len);
    mk_keyenc_fit(&k);
    bson_value_t id = {.value_type = BSON_TYPE_INT32, .value.v_int32 = c->id};
    mk_keyenc_value(&k, &id);
    keyset_add(c->ks, k.data, k.len);
    mk_buf_free(&k);
    return MK_OK;
}

static bool any_key_in(const mk_bounds_t *b, const keyset_t *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        if (in_bounds(b, ks->k[i].data, ks->k[i].len)) return true;
    return false;
}

static void check_case(const pcase_t *pc, dockeys_t *docs, size_t ndocs, bool multikey,
                       const bson_t *filter, stats_t *st)
{
    mk_error_t err = {0};
    mk_matcher_t *m = mk_matcher_compile(filter, &err);
    if (!m) {
        st->filters_rejected++;
        return;
    }
    st->cases++;
    mk_bounds_t *b = NULL;
    bool exact = false;
    int rc = mk_bounds_build(filter, pc->paths, pc->dirs, pc->n, multikey, &b, &exact, &err);
    if (rc != MK_OK) fail_msg("mk_bounds_build: %s", err.message);
    if (!b) {
        assert_false(exact);
        mk_matcher_destroy(m);
        return;
    }
    st->usable++;
    check_ranges(b);
    bson_t ex = BSON_INITIALIZER;
    assert_int_equal(mk_bounds_explain(b, &ex, &err), MK_OK);
    if (exact) st->exact++;
    for (size_t i = 0; i < ndocs; i++) {
        if (!docs[i].ok) continue;
        bool match = mk_matcher_match(m, docs[i].doc, NULL);
        bool in = any_key_in(b, &docs[i].keys);
        if (match) st->matched_docs++;
        if (exact && in) st->exact_checked++;
        if ((match && !in) || (exact && in && !match)) {
            char *fj = bson_as_relaxed_extended_json(filter, NULL);
            char *dj = bson_as_relaxed_extended_json(docs[i].doc, NULL);
            char *ej = bson_as_relaxed_extended_json(&ex, NULL);
            print_error("index:");
            for (size_t f = 0; f < pc->n; f++) print_error(" %s:%d", pc->paths[f], pc->dirs[f]);
            print_error(" multikey=%d exact=%d\n filter: %s\n doc: %s\n bounds: %s\n %s\n",
                        (int)multikey, (int)exact, fj, dj, ej,
                        match ? "matching document outside the bounds"
                              : "exact bounds hold a document that does not match");
            bson_free(fj);
            bson_free(dj);
            bson_free(ej);
            fail();
        }
    }
    bson_destroy(&ex);
    mk_bounds_destroy(b);
    mk_matcher_destroy(m);
}

static void run_pattern(const pcase_t *pc, bool arrays, int nfilters, stats_t *st)
{
    enum { NDOCS = 48 };
    dockeys_t docs[NDOCS];
    mk_error_t err = {0};
    bson_t pat = BSON_INITIALIZER;
    for (size_t i = 0; i < pc->n; i++) bson_append_int32(&pat, pc->paths[i], -1, pc->dirs[i]);
    mk_keypattern_t *kp = mk_keypattern_compile(&pat, &err);
    if (!kp) fail_msg("keypattern: %s", err.message);
    bool multikey = false, toplevel = true;
    for (size_t i = 0; i < pc->n; i++) toplevel = toplevel && !strchr(pc->paths[i], '.');
    for (int i = 0; i < NDOCS; i++) {
        docs[i].doc = gen_doc(arrays);
        docs[i].keys = (keyset_t){0};
        collect_t c = {&docs[i].keys, i};
        bool mk = false;
        docs[i].ok =
            mk_keypattern_keys(kp, docs[i].doc, false, collect_key, &c, &mk, &err) == MK_OK;
        multikey = multikey || (docs[i].ok && mk);
        if (!docs[i].ok) keyset_free(&docs[i].keys);
        if (docs[i].ok && toplevel) {
            /* the local generator agrees with index_keys.c */
            keyset_t mine = {0};
            assert_true(local_keys(docs[i].doc, pc->paths, pc->dirs, pc->n, &mine));
            keyset_t theirs = {0};
            collect_t c2 = {&theirs, 0};
            assert_int_equal(
                mk_keypattern_keys(kp, docs[i].doc, false, collect_key, &c2, NULL, &err), MK_OK);
            keyset_t mine_fit = {0};
            for (size_t k = 0; k < mine.n; k++) {
                collect_t c3 = {&mine_fit, 0};
                collect_key(&c3, mine.k[k].data, mine.k[k].len, NULL);
            }
            assert_int_equal(mine_fit.n, theirs.n);
            for (size_t k = 0; k < mine_fit.n; k++) {
                bool found = false;
                for (size_t j = 0; j < theirs.n && !found; j++)
                    found = mine_fit.k[k].len == theirs.k[j].len &&
                            !memcmp(mine_fit.k[k].data, theirs.k[j].data, theirs.k[j].len);
                assert_true(found);
            }
            keyset_free(&mine);
            keyset_free(&mine_fit);
            keyset_free(&theirs);
            st->local_checked++;
        }
    }
    if (!arrays) assert_false(multikey); /* no arrays, except positional paths that see none */
    for (int f = 0; f < nfilters; f++) {
        bson_t *filter = bson_new();
        /* conditions mostly on the index's own paths */
        const char *paths[4];
        size_t np = 0;
        for (size_t i = 0; i < pc->n; i++) paths[np++] = pc->paths[i];
        paths[np++] = index_paths[rnd(8)];
        uint32_t mode = rnd(10);
        if (mode < 2) {
            /* a condition that may be exact on the first field, and another one */
            static const char *ops[] = {"$eq", "$gte", "$lt", "$ne", "$in"};
            const char *op = ops[rnd(5)];
            bson_t c, arr;
            bson_append_document_begin(filter, pc->paths[0], -1, &c);
            if (op[1] == 'i') {
                bson_append_array_begin(&c, op, -1, &arr);
                bson_append_utf8(&arr, "0", -1, "ab", -1);
                bson_append_utf8(&arr, "1", -1, "b", -1);
                bson_append_array_end(&c, &arr);
            } else if (rnd(2)) {
                bson_append_utf8(&c, op, -1, rnd(2) ? "ab" : "b", -1);
            } else {
                bson_append_value(&c, op, -1, core_value());
            }
            bson_append_document_end(filter, &c);
            if (rnd(2)) gen_cond(filter, paths, np, sub_paths, 4, 0);
        } else if (mode < 4) {
            /* several conditions on the fields of the index */
            for (size_t i = 0; i < pc->n; i++) {
                if (rnd(2))
                    bson_append_value(filter, pc->paths[i], -1, core_value());
                else
                    gen_cond(filter, &pc->paths[i], 1, sub_paths, 4, 1);
                if (rnd(2)) gen_cond(filter, &pc->paths[i], 1, sub_paths, 4, 1);
            }
        } else if (mode < 6) {
            /* conditions that match missing or null */
            static const char *nulls[] = {"{ $ne: null }",
                                          "{ $exists: false }",
                                          "{ $exists: true }",
                                          "{ $nin: [null] }",
                                          "{ $not: { $eq: null } }",
                                          "{ $in: [null, 'ab'] }",
                                          "{ $eq: null }",
                                          "{ $not: { $gt: 1 } }",
                                          "{ $ne: 1 }",
                                          "{ $ne: [] }",
                                          "{ $eq: [] }",
                                          "{ $not: { $ne: null } }",
                                          "{ $not: { $nin: [null, 'ab'] } }",
                                          "{ $gte: 'ab', $gt: 'ab' }",
                                          "{ $lt: 'b', $lte: 'b' }"};
            bson_t *c = tu_bson(nulls[rnd(15)]);
            bson_append_document(filter, paths[rnd((uint32_t)np)], -1, c);
            bson_destroy(c);
        } else {
            for (uint32_t i = 0, n = 1 + (rnd(10) < 3) + (rnd(10) < 1); i < n; i++)
                gen_cond(filter, paths, np, sub_paths, 4, 0);
        }
        check_case(pc, docs, NDOCS, multikey, filter, st);
        if (!multikey) check_case(pc, docs, NDOCS, true, filter, st); /* always allowed */
        bson_destroy(filter);
    }
    for (int i = 0; i < NDOCS; i++) {
        bson_destroy(docs[i].doc);
        keyset_free(&docs[i].keys);
    }
    mk_keypattern_destroy(kp);
    bson_destroy(&pat);
}

static void test_property(void **state)
{
    (void)state;
    rng_state = 0x9E3779B97F4A7C15ull;
    pool_init();
    stats_t st = {0};
    for (int p = 0; p < 60; p++) {
        pcase_t pc;
        gen_pattern(&pc);
        run_pattern(&pc, true, 14, &st);
        run_pattern(&pc, false, 8, &st);
    }
    print_message("property: %zu cases (%zu usable, %zu exact), %zu matching documents, %zu "
                  "exact keys checked, %zu filters rejected, %zu local key sets\n",
                  st.cases, st.usable, st.exact, st.matched_docs, st.exact_checked,
                  st.filters_rejected, st.local_checked);
    /* the test is meaningful only if it covers enough */
    assert_true(st.cases >= 1500);
    assert_true(st.usable >= 500);
    assert_true(st.exact >= 50);
    assert_true(st.matched_docs >= 2000);
    assert_true(st.exact_checked >= 150);
    assert_true(st.local_checked >= 100);
    bson_destroy(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equality),   cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_in_ne_not),  cmocka_unit_test(test_regex_exists_type),
        cmocka_unit_test(test_elem_match), cmocka_unit_test(test_compound),
        cmocka_unit_test(test_descending), cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_cap),        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
