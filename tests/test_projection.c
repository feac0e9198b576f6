/* Find projections (engine/projection.c): every form MongoDB accepts and every error. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "engine/matcher.h"
#include "engine/projection.h"

/* ---------- helpers ---------- */

/* Projects `doc` with `spec` (used with the query `filter`, which must match `doc` and gives
 * the positional details) and compares with `expect`. spec / filter may be NULL. */
static void check_(const char *spec, const char *filter, const char *doc, const char *expect,
                   int line)
{
    bson_t *s = spec ? tu_bson(spec) : NULL, *f = filter ? tu_bson(filter) : NULL;
    bson_t *d = tu_bson(doc);
    mk_error_t err = {0};
    mk_projection_t *p = mk_projection_compile(s, f, &err);
    if (!p) fail_msg("line %d: %s: %d %s", line, spec, err.code, err.message);
    mk_match_details_t md = {0};
    if (f) {
        mk_matcher_t *m = mk_matcher_compile(f, &err);
        if (!m) fail_msg("line %d: filter: %s", line, err.message);
        if (!mk_matcher_match(m, d, &md)) fail_msg("line %d: the filter does not match", line);
        mk_matcher_destroy(m);
    }
    bson_t out = BSON_INITIALIZER;
    if (mk_projection_apply(p, d, f ? &md : NULL, &out, &err) != MK_OK)
        fail_msg("line %d: apply: %d %s", line, err.code, err.message);
    tu_assert_bson_eq_(&out, expect, __FILE__, line);
    bson_destroy(&out);
    mk_projection_destroy(p);
    if (s) bson_destroy(s);
    if (f) bson_destroy(f);
    bson_destroy(d);
}
#define check(spec, doc, expect)           check_(spec, NULL, doc, expect, __LINE__)
#define check_q(spec, filter, doc, expect) check_(spec, filter, doc, expect, __LINE__)

static void compile_error_(const char *spec, const char *filter, int code, const char *kind,
                           const char *msg, int line)
{
    bson_t *s = tu_bson(spec), *f = filter ? tu_bson(filter) : NULL;
    mk_error_t err = {0};
    mk_projection_t *p = mk_projection_compile(s, f, &err);
    bson_destroy(s);
    if (f) bson_destroy(f);
    if (p) {
        mk_projection_destroy(p);
        fail_msg("line %d: %s compiled, expected error %d", line, spec, code);
    }
    if (err.code != code || (kind && strcmp(err.kind, kind) != 0) ||
        (msg && strcmp(err.message, msg) != 0))
        fail_msg("line %d: %s gave %d %s \"%s\", expected %d %s \"%s\"", line, spec, err.code,
                 err.kind, err.message, code, kind ? kind : "", msg ? msg : "");
}
#define compile_error(spec, code, kind, msg) compile_error_(spec, NULL, code, kind, msg, __LINE__)
#define compile_error_q(spec, filter, code, kind, msg)                                             \
    compile_error_(spec, filter, code, kind, msg, __LINE__)

/* ---------- identity, inclusion, exclusion ---------- */

static void test_identity(void **state)
{
    (void)state;
    const char *doc = "{ _id: 1, a: [1, { b: 2 }], c: 'x' }";
    check(NULL, doc, doc);
    check("{}", doc, doc);
    mk_error_t err = {0};
    mk_projection_t *p = mk_projection_compile(NULL, NULL, &err);
    assert_true(mk_projection_is_identity(p));
    assert_false(mk_projection_is_inclusion(p));
    assert_false(mk_projection_needs_details(p));
    mk_projection_destroy(p);
}

static void test_inclusion(void **state)
{
    (void)state;
    const char *doc = "{ _id: 1, age: 30, email: 'e@x', name: 'Ann', tags: ['a', 'b'] }";
    /* the document's order, not the projection's */
    check("{ name: 1, age: true }", doc, "{ _id: 1, age: 30, name: 'Ann' }");
    check("{ name: 1, _id: 0 }", doc, "{ name: 'Ann' }");
    check("{ _id: 0, name: 1 }", doc, "{ name: 'Ann' }");
    check("{ _id: false, tags: 1 }", doc, "{ tags: ['a', 'b'] }");
    /* any truthy number includes */
    check("{ name: 2 }", doc, "{ _id: 1, name: 'Ann' }");
    check("{ name: -1.5 }", doc, "{ _id: 1, name: 'Ann' }");
    check("{ name: NumberLong(1) }", doc, "{ _id: 1, name: 'Ann' }");
    check("{ name: NumberDecimal('0.1') }", doc, "{ _id: 1, name: 'Ann' }");
    check("{ name: NaN }", doc, "{ _id: 1, name: 'Ann' }");
    check("{ _id: 1 }", doc, "{ _id: 1 }");
    check("{ missing: 1 }", doc, "{ _id: 1 }");
    check("{ missing: 1, _id: 0 }", doc, "{}");
    /* _id keeps its place in the document */
    check("{ b: 1 }", "{ a: 1, _id: 5, b: 2 }", "{ _id: 5, b: 2 }");
    check("{ a: 1 }", "{ a: 1, _id: 5, b: 2 }", "{ a: 1, _id: 5 }");
    check("{ a: 1 }", "{ a: 1 }", "{ a: 1 }");
    /* a sub-path of _id replaces the default _id */
    check("{ '_id.x': 1 }", "{ _id: { x: 1, y: 2 }, a: 1 }", "{ _id: { x: 1 } }");

    mk_error_t err = {0};
    bson_t *s = tu_bson("{ name: 1 }");
    mk_projection_t *p = mk_projection_compile(s, NULL, &err);
    assert_true(mk_projection_is_inclusion(p));
    assert_false(mk_projection_is_identity(p));
    assert_false(mk_projection_needs_details(p));
    mk_projection_destroy(p);
    bson_destroy(s);
}

static void test_exclusion(void **state)
{
    (void)state;
    const char *doc = "{ _id: 1, name: 'Ann', rank: 3, email: 'e@x' }";
    check("{ rank: 0 }", doc, "{ _id: 1, name: 'Ann', email: 'e@x' }");
    check("{ rank: false, email: 0 }", doc, "{ _id: 1, name: 'Ann' }");
    check("{ _id: 0 }", doc, "{ name: 'Ann', rank: 3, email: 'e@x' }");
    check("{ _id: 1, rank: 0 }", doc, "{ _id: 1, name: 'Ann', email: 'e@x' }");
    check("{ rank: 0, _id: true }", doc, "{ _id: 1, name: 'Ann', email: 'e@x' }");
    check("{ rank: NumberLong(0) }", doc, "{ _id: 1, name: 'Ann', email: 'e@x' }");
    check("{ rank: 0.0 }", doc, "{ _id: 1, name: 'Ann', email: 'e@x' }");
    check("{ rank: -0.0 }", doc, "{ _id: 1, name: 'Ann', email: 'e@x' }");
    check("{ rank: NumberDecimal('0') }", doc, "{ _id: 1, name: 'Ann', email: 'e@x' }");
    check("{ nothing: 0 }", doc, doc);

    mk_error_t err = {0};
    bson_t *s = tu_bson("{ rank: 0 }");
    mk_projection_t *p = mk_projection_compile(s, NULL, &err);
    assert_false(mk_projection_is_inclusion(p));
    assert_false(mk_projection_is_identity(p));
    mk_projection_destroy(p);
    bson_destroy(s);
}

static void test_mixed_errors(void **state)
{
    (void)state;
    compile_error("{ name: 1, rank: 0 }", 31254, "Location31254",
                  "Cannot do exclusion on field rank in inclusion projection");
    compile_error("{ rank: 0, name: 1 }", 31253, "Location31253",
                  "Cannot do inclusion on field name in exclusion projection");
    compile_error("{ 'a.b': 1, 'c.d': 0 }", 31254, "Location31254",
                  "Cannot do exclusion on field c.d in inclusion projection");
    compile_error("{ a: { b: 1, c: 0 } }", 31254, "Location31254",
                  "Cannot do exclusion on field c in inclusion projection");
    compile_error("{ '_id.x': 0, a: 1 }", 31253, "Location31253",
                  "Cannot do inclusion on field a in exclusion projection");
    compile_error("{ a: 1, _id: { x: 0 } }", 31254, "Location31254",
                  "Cannot do exclusion on field x in inclusion projection");
}

/* ---------- paths ---------- */

static void test_dotted_paths(void **state)
{
    (void)state;
    const char *doc = "{ _id: 1, name: 'x', profile: { avatar: 'a.png', bio: 'hi' } }";
    check("{ 'profile.bio': 1 }", doc, "{ _id: 1, profile: { bio: 'hi' } }");
    check("{ profile: { bio: 1 } }", doc, "{ _id: 1, profile: { bio: 'hi' } }");
    check("{ profile: { bio: true, avatar: 1 } }", doc,
          "{ _id: 1, profile: { avatar: 'a.png', bio: 'hi' } }");
    check("{ 'profile.bio': 1 }", "{ _id: 1 }", "{ _id: 1 }");
    check("{ 'profile.bio': 1 }", "{ _id: 1, profile: 'scalar' }", "{ _id: 1 }");
    check("{ 'profile.bio': 1 }", "{ _id: 1, profile: { avatar: 'a' } }",
          "{ _id: 1, profile: {} }");
    check("{ 'profile.bio': 0 }", doc, "{ _id: 1, name: 'x', profile: { avatar: 'a.png' } }");
    check("{ profile: { bio: 0 } }", doc, "{ _id: 1, name: 'x', profile: { avatar: 'a.png' } }");
    check("{ 'profile.bio': 0 }", "{ _id: 1, profile: 7 }", "{ _id: 1, profile: 7 }");
    /* a dotted key inside a nested projection, and merging of both spellings */
    check("{ a: { 'b.c': 1 } }", "{ a: { b: { c: 1, d: 2 }, e: 3 } }", "{ a: { b: { c: 1 } } }");
    check("{ 'a.b': 1, a: { c: 1 } }", "{ _id: 0, a: { c: 3, b: 2, d: 1 } }",
          "{ _id: 0, a: { c: 3, b: 2 } }");
    check("{ 'a.b.c': 1 }", "{ a: { b: { c: { d: 1 } } } }", "{ a: { b: { c: { d: 1 } } } }");
}

static void test_paths_through_arrays(void **state)
{
    (void)state;
    const char *doc = "{ _id: 1, a: [{ b: 1, c: 2 }, 5, { c: 3 }, [{ b: 4, c: 5 }, 6]], d: 0 }";
    /* inclusion keeps documents (possibly empty) and nested arrays, drops scalars */
    check("{ 'a.b': 1 }", doc, "{ _id: 1, a: [{ b: 1 }, {}, [{ b: 4 }]] }");
    /* exclusion removes the field from every document element, keeps the rest */
    check("{ 'a.b': 0 }", doc, "{ _id: 1, a: [{ c: 2 }, 5, { c: 3 }, [{ c: 5 }, 6]], d: 0 }");
    check("{ 'a.b.c': 1 }", "{ a: [{ b: [{ c: 1, d: 2 }, { d: 3 }] }, { b: { c: 4, e: 1 } }] }",
          "{ a: [{ b: [{ c: 1 }, {}] }, { b: { c: 4 } }] }");
    check("{ 'a.b': 1 }", "{ _id: 1, a: [] }", "{ _id: 1, a: [] }");
    check("{ 'a.b': 1 }", "{ _id: 1, a: [1, 2] }", "{ _id: 1, a: [] }");
    check("{ 'a.b': 1, 'a.c': 1, d: 1 }", doc,
          "{ _id: 1, a: [{ b: 1, c: 2 }, { c: 3 }, [{ b: 4, c: 5 }]], d: 0 }");
}

static void test_path_errors(void **state)
{
    (void)state;
    compile_error("{ a: 1, 'a.b': 1 }", 31249, "Location31249",
                  "Path collision at a.b remaining portion b");
    compile_error("{ a: 1, 'a.b.c': 0 }", 31249, "Location31249",
                  "Path collision at a.b.c remaining portion b.c");
    compile_error("{ 'a.b': 1, a: 1 }", 31250, "Location31250", "Path collision at a");
    compile_error("{ 'a.b': 1, 'a.b': 1 }", 31250, "Location31250", "Path collision at a.b");
    compile_error("{ a: 1, a: 1 }", 31250, "Location31250", "Path collision at a");
    compile_error("{ 'a.b': 1, a: { b: 1 } }", 31250, "Location31250", "Path collision at b");
    compile_error("{ a: 1, a: { b: 1 } }", 31250, "Location31250", "Path collision at a");
    compile_error("{ '': 1 }", 40352, "Location40352",
                  "FieldPath cannot be constructed with empty string");
    compile_error("{ a: { '': 1 } }", 40352, "Location40352",
                  "FieldPath cannot be constructed with empty string");
    compile_error("{ 'a..b': 1 }", 15998, "Location15998",
                  "FieldPath field names may not be empty strings.");
    compile_error("{ 'a.': 0 }", 40353, "Location40353", "FieldPath must not end with a '.'.");
    compile_error("{ '$a': 1 }", 16410, "Location16410",
                  "FieldPath field names may not start with '$'. Consider using $getField or "
                  "$setField.");
    compile_error("{ 'a.$b': 0 }", 16410, "Location16410", NULL);
    compile_error("{ a: { $add: [1], b: 1 } }", 16410, "Location16410", NULL);
    compile_error("{ a: {} }", 51270, "Location51270",
                  "An empty sub-projection is not a valid value. Found empty object at path a");
    compile_error("{ a: { b: {} } }", 51270, "Location51270",
                  "An empty sub-projection is not a valid value. Found empty object at path a.b");

    /* limits on length and depth */
    bson_string_t *path = bson_string_new("a");
    for (int i = 0; i < 200; i++) bson_string_append(path, ".a");
    bson_t spec = BSON_INITIALIZER;
    BSON_APPEND_INT32(&spec, path->str, 1);
    mk_error_t err = {0};
    assert_null(mk_projection_compile(&spec, NULL, &err));
    assert_int_equal(err.code, MK_CODE_OVERFLOW);
    assert_string_equal(err.message, "FieldPath is too long");
    bson_destroy(&spec);
    bson_string_free(path, true);

    bson_t *levels[260];
    levels[0] = bson_new();
    BSON_APPEND_INT32(levels[0], "a", 1);
    for (int i = 1; i < 260; i++) {
        levels[i] = bson_new();
        BSON_APPEND_DOCUMENT(levels[i], "a", levels[i - 1]);
    }
    assert_null(mk_projection_compile(levels[259], NULL, &err));
    assert_int_equal(err.code, MK_CODE_OVERFLOW);
    for (int i = 0; i < 260; i++) bson_destroy(levels[i]);
}

/* ---------- $slice ---------- */

static void test_slice(void **state)
{
    (void)state;
    const char *doc = "{ _id: 1, a: [1, 2, 3, 4, 5], b: 'x' }";
    /* $slice alone keeps the other fields */
    check("{ a: { $slice: 2 } }", doc, "{ _id: 1, a: [1, 2], b: 'x' }");
    check("{ a: { $slice: -2 } }", doc, "{ _id: 1, a: [4, 5], b: 'x' }");
    check("{ a: { $slice: 10 } }", doc, doc);
    check("{ a: { $slice: -10 } }", doc, doc);
    check("{ a: { $slice: 0 } }", doc, "{ _id: 1, a: [], b: 'x' }");
    check("{ a: { $slice: 2.9 } }", doc, "{ _id: 1, a: [1, 2], b: 'x' }");
    check("{ a: { $slice: NumberLong(1) } }", doc, "{ _id: 1, a: [1], b: 'x' }");
    check("{ a: { $slice: [1, 2] } }", doc, "{ _id: 1, a: [2, 3], b: 'x' }");
    check("{ a: { $slice: [-2, 1] } }", doc, "{ _id: 1, a: [4], b: 'x' }");
    check("{ a: { $slice: [-2, 5] } }", doc, "{ _id: 1, a: [4, 5], b: 'x' }");
    check("{ a: { $slice: [-10, 2] } }", doc, "{ _id: 1, a: [1, 2], b: 'x' }");
    check("{ a: { $slice: [10, 2] } }", doc, "{ _id: 1, a: [], b: 'x' }");
    check("{ a: { $slice: [4, 5] } }", doc, "{ _id: 1, a: [5], b: 'x' }");
    check("{ a: { $slice: [0, 1] } }", doc, "{ _id: 1, a: [1], b: 'x' }");
    check("{ a: { $slice: [NumberLong(1), 1.5] } }", doc, "{ _id: 1, a: [2], b: 'x' }");
    /* not an array, or missing: unchanged */
    check("{ b: { $slice: 1 } }", doc, doc);
    check("{ z: { $slice: 1 } }", doc, doc);
    /* with an inclusion, or _id: 1, it is an inclusion projection */
    check("{ a: { $slice: 1 }, b: 1 }", doc, "{ _id: 1, a: [1], b: 'x' }");
    check("{ a: { $slice: 1 }, _id: 1 }", doc, "{ _id: 1, a: [1] }");
    check("{ _id: 0, a: { $slice: 1 } }", doc, "{ a: [1], b: 'x' }");
    check("{ a: { $slice: 1 }, b: 0 }", doc, "{ _id: 1, a: [1] }");

    /* MongoDB's documented example of an embedded array */
    const char *socks = "{ _id: 9, item: 'socks', qty: 100, details: { colors: ['blue', 'red'],"
                        "  sizes: ['S', 'M', 'L'] } }";
    check("{ qty: 1, 'details.colors': { $slice: 1 } }", socks,
          "{ _id: 9, qty: 100, details: { colors: ['blue'] } }");
    check("{ _id: 0, 'details.colors': { $slice: 1 } }", socks,
          "{ item: 'socks', qty: 100, details: { colors: ['blue'], sizes: ['S', 'M', 'L'] } }");

    /* through an array of documents, but not into nested arrays */
    const char *arr = "{ _id: 1, a: [{ b: [1, 2], c: 1 }, 7, [{ b: [3, 4] }]] }";
    check("{ 'a.b': { $slice: 1 } }", arr, "{ _id: 1, a: [{ b: [1], c: 1 }, 7, [{ b: [3, 4] }]] }");
    check("{ 'a.b': { $slice: -1 }, 'a.c': 1 }", arr,
          "{ _id: 1, a: [{ b: [2], c: 1 }, [{ b: [3, 4] }]] }");
}

static void test_slice_errors(void **state)
{
    (void)state;
    const char *form = "$slice array argument should be of form [skip, limit]";
    compile_error("{ a: { $slice: [1] } }", 31272, "Location31272", form);
    compile_error("{ a: { $slice: [] } }", 31272, "Location31272", form);
    compile_error("{ a: { $slice: [1, 2, 3] } }", 31272, "Location31272", form);
    compile_error("{ a: { $slice: [1, 0] } }", 31259, "Location31259",
                  "$slice limit must be positive, got 0");
    compile_error("{ a: { $slice: [1, -1] } }", 31259, "Location31259",
                  "$slice limit must be positive, got -1");
    compile_error("{ a: { $slice: 'x' } }", 31273, "Location31273",
                  "$slice only supports numbers and [skip, limit] arrays");
    compile_error("{ a: { $slice: ['$b', 1] } }", MK_CODE_BAD_VALUE, "BadValue",
                  "projection expression $slice (aggregation form) is not supported yet");
    compile_error("{ a: 1, 'a.b': { $slice: 1 } }", 31249, "Location31249",
                  "Path collision at a.b remaining portion b");
}

/* ---------- $elemMatch ---------- */

static void test_elem_match(void **state)
{
    (void)state;
    /* MongoDB's documented examples */
    const char *school1 = "{ _id: 1, zipcode: '63109', students: ["
                          "  { name: 'john', school: 102, age: 10 },"
                          "  { name: 'jess', school: 102, age: 11 },"
                          "  { name: 'jeff', school: 108, age: 15 } ] }";
    const char *school2 = "{ _id: 2, zipcode: '63110', students: ["
                          "  { name: 'ajax', school: 100, age: 7 } ] }";
    check("{ students: { $elemMatch: { school: 102 } } }", school1,
          "{ _id: 1, students: [{ name: 'john', school: 102, age: 10 }] }");
    check("{ students: { $elemMatch: { school: 102 } } }", school2, "{ _id: 2 }");
    check("{ students: { $elemMatch: { school: 102, age: { $gt: 10 } } } }", school1,
          "{ _id: 1, students: [{ name: 'jess', school: 102, age: 11 }] }");
    /* the $elemMatch field comes after the included fields */
    const char *player = "{ _id: 1, games: [{ game: 'abc', score: 8 }, { game: 'xyz', score: 5 }],"
                         "  joined: new Date(1), lastLogin: new Date(2), other: 1 }";
    check("{ games: { $elemMatch: { score: { $gt: 5 } } }, joined: 1, lastLogin: 1 }", player,
          "{ _id: 1, joined: new Date(1), lastLogin: new Date(2),"
          "  games: [{ game: 'abc', score: 8 }] }");
    /* values, not documents */
    const char *nums = "{ _id: 1, a: [1, 3, 5], x: 1, y: 2 }";
    check("{ a: { $elemMatch: { $gt: 2 } } }", nums, "{ _id: 1, a: [3] }");
    check("{ _id: 0, a: { $elemMatch: { $gt: 2 } } }", nums, "{ a: [3] }");
    check("{ a: { $elemMatch: { $gt: 9 } } }", nums, "{ _id: 1 }");
    check("{ x: { $elemMatch: { $gt: 0 } } }", nums, "{ _id: 1 }"); /* not an array */
    /* in an exclusion projection it rewrites the field in place */
    check("{ x: 0, a: { $elemMatch: { $gt: 2 } } }", nums, "{ _id: 1, a: [3], y: 2 }");
    check("{ x: 0, a: { $elemMatch: { $gt: 9 } } }", nums, "{ _id: 1, y: 2 }");
}

static void test_elem_match_errors(void **state)
{
    (void)state;
    compile_error("{ a: { $elemMatch: 1 } }", 31274, "Location31274",
                  "elemMatch: Invalid argument, object required, but got int");
    compile_error("{ a: { $elemMatch: [1] } }", 31274, "Location31274",
                  "elemMatch: Invalid argument, object required, but got array");
    compile_error("{ 'a.b': { $elemMatch: { x: 1 } } }", 31275, "Location31275",
                  "Cannot use $elemMatch projection on a nested field.");
    compile_error("{ a: { b: { $elemMatch: { x: 1 } } } }", 31275, "Location31275",
                  "Cannot use $elemMatch projection on a nested field.");
    compile_error_q("{ 'a.$': 1, b: { $elemMatch: { x: 1 } } }", "{ a: 1 }", 31255, "Location31255",
                    "Cannot specify positional operator and $elemMatch.");
    compile_error_q("{ b: { $elemMatch: { x: 1 } }, 'a.$': 1 }", "{ a: 1 }", 31256, "Location31256",
                    "Cannot specify positional operator and $elemMatch.");
    /* the matcher's own errors come through */
    compile_error("{ a: { $elemMatch: { $nosuch: 1 } } }", MK_CODE_BAD_VALUE, "BadValue", NULL);
}

/* ---------- positional ---------- */

static void test_positional(void **state)
{
    (void)state;
    const char *grades = "{ _id: 1, semester: 1, grades: [70, 87, 90] }";
    check_q("{ 'grades.$': 1 }", "{ semester: 1, grades: { $gte: 85 } }", grades,
            "{ _id: 1, grades: [87] }");
    check_q("{ 'grades.$': 1, semester: 1 }", "{ grades: { $gte: 88 } }", grades,
            "{ _id: 1, semester: 1, grades: [90] }");
    check_q("{ _id: 0, 'grades.$': 1 }", "{ grades: 70 }", grades, "{ grades: [70] }");
    /* anything after the first `.$` is ignored */
    check_q("{ 'grades.$.x': 1 }", "{ grades: 90 }", grades, "{ _id: 1, grades: [90] }");
    /* documents in the array */
    const char *means = "{ _id: 7, grades: [{ grade: 80, mean: 75 }, { grade: 85, mean: 90 },"
                        "  { grade: 85, mean: 85 }] }";
    check_q("{ 'grades.$': 1 }", "{ 'grades.mean': { $gt: 80 } }", means,
            "{ _id: 7, grades: [{ grade: 85, mean: 90 }] }");
    check_q("{ 'grades.$': 1 }", "{ grades: { $elemMatch: { mean: { $gt: 80 }, grade: 85 } } }",
            means, "{ _id: 7, grades: [{ grade: 85, mean: 90 }] }");
    /* the array below a document */
    check_q("{ 'a.b.$': 1 }", "{ 'a.b': 2 }", "{ _id: 1, a: { b: [1, 2, 3], c: 1 } }",
            "{ _id: 1, a: { b: [2] } }");
    /* the first array on the path takes the position, projected by the rest of the spec */
    const char *docs = "{ _id: 1, a: [{ b: 1, c: 'x', d: 0 }, { b: 2, c: 'y', d: 0 }] }";
    check_q("{ 'a.b.$': 1 }", "{ 'a.b': 2 }", docs, "{ _id: 1, a: [{ b: 2 }] }");
    check_q("{ 'a.b.$': 1, 'a.c': 1 }", "{ 'a.b': 2 }", docs, "{ _id: 1, a: [{ b: 2, c: 'y' }] }");
    /* only the first array takes the position; arrays below it are kept whole */
    check_q("{ 'a.b.$': 1 }", "{ 'a.b': 4 }", "{ _id: 1, a: [{ b: [1, 2] }, { b: [3, 4] }] }",
            "{ _id: 1, a: [{ b: [3, 4] }] }");
    check_q("{ 'a.b.c.$': 1 }", "{ 'a.b.c': 4 }",
            "{ _id: 1, a: [{ b: [{ c: 1 }, { c: 2 }] }, { b: [{ c: 3 }, { c: 4, d: 0 }] }] }",
            "{ _id: 1, a: [{ b: [{ c: 3 }, { c: 4 }] }] }");
    /* not an array: the field is included as it is */
    check_q("{ 'g.$': 1 }", "{ g: 5 }", "{ _id: 1, g: 5, h: 1 }", "{ _id: 1, g: 5 }");
    check_q("{ 'g.$': 1 }", "{ g: { $exists: false } }", "{ _id: 1, h: 1 }", "{ _id: 1 }");
    /* the query may name the field inside $and (and $or, see below) */
    check_q("{ 'grades.$': 1 }", "{ $and: [{ semester: 1 }, { 'grades': { $lt: 80 } }] }", grades,
            "{ _id: 1, grades: [70] }");

    mk_error_t err = {0};
    bson_t *s = tu_bson("{ 'grades.$': 1 }"), *f = tu_bson("{ grades: 1 }");
    mk_projection_t *p = mk_projection_compile(s, f, &err);
    assert_true(mk_projection_needs_details(p));
    assert_true(mk_projection_is_inclusion(p));
    mk_projection_destroy(p);
    bson_destroy(s);
    bson_destroy(f);
}

static void apply_error_(const char *spec, const char *filter, const char *doc,
                         const mk_match_details_t *md, int code, const char *msg, int line)
{
    bson_t *s = tu_bson(spec), *f = tu_bson(filter), *d = tu_bson(doc);
    mk_error_t err = {0};
    mk_projection_t *p = mk_projection_compile(s, f, &err);
    if (!p) fail_msg("line %d: %s", line, err.message);
    bson_t out = BSON_INITIALIZER;
    if (mk_projection_apply(p, d, md, &out, &err) == MK_OK)
        fail_msg("line %d: applied, expected error %d", line, code);
    if (err.code != code || strcmp(err.message, msg) != 0)
        fail_msg("line %d: %d \"%s\", expected %d \"%s\"", line, err.code, err.message, code, msg);
    assert_true(bson_empty(&out)); /* nothing half-written */
    bson_destroy(&out);
    mk_projection_destroy(p);
    bson_destroy(s);
    bson_destroy(f);
    bson_destroy(d);
}

static void test_positional_errors(void **state)
{
    (void)state;
    const char *nomatch = "positional operator '.$' couldn't find a matching element in the array";
    const char *grades = "{ _id: 1, semester: 1, grades: [70, 87, 90] }";
    apply_error_("{ 'grades.$': 1 }", "{ grades: 87 }", grades, NULL, 51246, nomatch, __LINE__);
    mk_match_details_t none = {.has_position = false};
    apply_error_("{ 'grades.$': 1 }", "{ grades: 87 }", grades, &none, 51246, nomatch, __LINE__);
    mk_match_details_t far = {.has_position = true, .position = 3};
    apply_error_("{ 'grades.$': 1 }", "{ grades: 87 }", grades, &far, 51247,
                 "positional operator '.$' element mismatch", __LINE__);
    /* the matched element was a scalar the inclusion drops */
    mk_match_details_t first = {.has_position = true, .position = 0};
    apply_error_("{ 'a.b.$': 1 }", "{ 'a.b': 1 }", "{ a: [7, { b: 1 }] }", &first, 51247,
                 "positional operator '.$' element mismatch", __LINE__);

    /* $or is accepted by the query check, but (as in MongoDB) records no position */
    bson_t *s = tu_bson("{ 'grades.$': 1 }"),
           *f = tu_bson("{ $or: [{ semester: 2 }, { grades: 90 }] }");
    bson_t *d = tu_bson(grades);
    mk_error_t err = {0};
    mk_projection_t *p = mk_projection_compile(s, f, &err);
    assert_non_null(p);
    mk_matcher_t *m = mk_matcher_compile(f, &err);
    mk_match_details_t md = {0};
    assert_true(mk_matcher_match(m, d, &md));
    bson_t out = BSON_INITIALIZER;
    assert_false(md.has_position);
    assert_int_equal(mk_projection_apply(p, d, &md, &out, &err), MK_ERR);
    assert_int_equal(err.code, 51246);
    bson_destroy(&out);
    mk_matcher_destroy(m);
    mk_projection_destroy(p);
    bson_destroy(s);
    bson_destroy(f);
    bson_destroy(d);

    compile_error_q("{ 'a.$': 1, 'b.$': 1 }", "{ a: 1, b: 1 }", 31276, "Location31276",
                    "Cannot specify more than one positional projection per query.");
    compile_error("{ 'a.$': 1 }", 51050, "Location51050",
                  "Projections with a positional operator require a matcher");
    compile_error_q("{ 'a.$': 1 }", "{ b: 1 }", 31277, "Location31277",
                    "Positional projection 'a.$' does not match the query document.");
    compile_error_q("{ 'a.$': 1 }", "{}", 31277, "Location31277", NULL);
    compile_error_q("{ 'a.$': 1 }", "{ $expr: { $eq: ['$a', 1] } }", 31277, "Location31277", NULL);
    compile_error_q("{ 'a.$': { $slice: 1 } }", "{ a: 1 }", 31271, "Location31271",
                    "positional projection cannot be used with an expression or sub object");
    compile_error_q("{ 'a.$': 'x' }", "{ a: 1 }", 31308, "Location31308",
                    "positional projection cannot be used with a literal");
    compile_error_q("{ 'a.$.b.$': 1 }", "{ a: 1 }", 31287, "Location31287",
                    "Cannot use positional operator twice: a.$.b.$");
    compile_error_q("{ 'a.$.': 1 }", "{ a: 1 }", 31270, "Location31270",
                    "Path cannot end with '.$.'");
    compile_error_q("{ 'a.$': 0 }", "{ a: 1 }", 16410, "Location16410", NULL);
    /* a lone '$' key reads as an expression, as in MongoDB */
    compile_error_q("{ grades: { '$': 1 } }", "{ grades: 87 }", 31325, "Location31325",
                    "Unknown expression $");
    compile_error_q("{ b: 0, 'a.$': 1 }", "{ a: 1 }", 31253, "Location31253",
                    "Cannot do inclusion on field a.$ in exclusion projection");
    compile_error_q("{ 'a.$': 1, 'a.b': 1 }", "{ a: 1 }", 31249, "Location31249",
                    "Path collision at a.b remaining portion b");
}

/* ---------- computed fields ---------- */

static void test_literals(void **state)
{
    (void)state;
    const char *doc = "{ _id: 1, name: 'Ann', z: 1 }";
    check("{ a: 'x' }", doc, "{ _id: 1, a: 'x' }");
    check("{ a: null }", doc, "{ _id: 1, a: null }");
    check("{ a: [1, 'two'] }", doc, "{ _id: 1, a: [1, 'two'] }");
    check("{ a: new Date(5) }", doc, "{ _id: 1, a: new Date(5) }");
    check("{ a: { $literal: 1 } }", doc, "{ _id: 1, a: 1 }");
    check("{ a: { $literal: '$name' } }", doc, "{ _id: 1, a: '$name' }");
    check("{ a: { $literal: { $gt: 1 } } }", doc, "{ _id: 1, a: { $gt: 1 } }");
    check("{ a: [1, { b: true }] }", doc, "{ _id: 1, a: [1, { b: true }] }");
    /* computed fields follow the included ones, in the projection's order */
    check("{ tag: 'new', name: 1, n: null }", doc, "{ _id: 1, name: 'Ann', tag: 'new', n: null }");
    check("{ name: 'lit' }", "{ name: 'Ann', _id: 1 }", "{ _id: 1, name: 'lit' }");
    check("{ _id: 0, a: 'x' }", doc, "{ a: 'x' }");
}

static void test_nested_computed(void **state)
{
    (void)state;
    const char *spec = "{ 'a.b': 'x', 'a.c': 1 }";
    check(spec, "{ _id: 1, a: { c: 2, d: 3 }, z: 0 }", "{ _id: 1, a: { c: 2, b: 'x' } }");
    check(spec, "{ _id: 1, z: 0 }", "{ _id: 1, a: { b: 'x' } }");
    check(spec, "{ _id: 1, a: 5, z: 0 }", "{ _id: 1, a: { b: 'x' } }");
    check(spec, "{ _id: 1, a: [{ c: 1 }, 7, [{ c: 2 }, 3]], z: 0 }",
          "{ _id: 1, a: [{ c: 1, b: 'x' }, { b: 'x' }, [{ c: 2, b: 'x' }, { b: 'x' }]] }");
    /* a level present in the document stays in place; a new one goes after */
    check("{ 'a.b': 'x', c: 1 }", "{ _id: 1, a: { q: 1 }, c: 2 }",
          "{ _id: 1, a: { b: 'x' }, c: 2 }");
    check("{ 'a.b': 'x', c: 1 }", "{ _id: 1, c: 2 }", "{ _id: 1, c: 2, a: { b: 'x' } }");
    check("{ a: { b: 'x' } }", "{ a: 'old' }", "{ a: { b: 'x' } }");
}

static void test_expressions(void **state)
{
    (void)state;
    const char *doc = "{ _id: 1, name: 'Ann', x: 2, p: { q: [{ r: 1 }, { r: 2 }] } }";
    check("{ n: '$name' }", doc, "{ _id: 1, n: 'Ann' }");
    check("{ n: '$missing' }", doc, "{ _id: 1 }");
    check("{ rs: '$p.q.r' }", doc, "{ _id: 1, rs: [1, 2] }");
    check("{ total: { $add: ['$x', 1] } }", doc, "{ _id: 1, total: 3 }");
    check("{ both: ['$x', '$name'] }", doc, "{ _id: 1, both: [2, 'Ann'] }");
    check("{ name: 1, 'sub.x2': { $multiply: ['$x', 2] } }", doc,
          "{ _id: 1, name: 'Ann', sub: { x2: 4 } }");
    check("{ root: '$$ROOT.x' }", doc, "{ _id: 1, root: 2 }");
    /* evaluated against the whole document even inside arrays */
    check("{ 'p.q.n': '$x' }", doc, "{ _id: 1, p: { q: [{ n: 2 }, { n: 2 }] } }");
}

static void test_computed_errors(void **state)
{
    (void)state;
    compile_error("{ a: 0, b: 'x' }", 31310, "Location31310",
                  "Cannot use an expression b: \"x\" in an exclusion projection");
    compile_error("{ a: 0, b: '$x' }", 31310, "Location31310",
                  "Cannot use an expression b: \"$x\" in an exclusion projection");
    compile_error("{ b: 'x', a: 0 }", 31254, "Location31254",
                  "Cannot do exclusion on field a in inclusion projection");
    compile_error("{ a: 0, b: { $add: [1, 2] } }", 31252, "Location31252",
                  "Cannot use expression other than $meta in exclusion projection");
    compile_error("{ a: 0, b: { $literal: 1 } }", 31252, "Location31252",
                  "Cannot use expression other than $meta in exclusion projection");
    compile_error("{ a: { $meta: 'textScore' } }", MK_CODE_BAD_VALUE, "BadValue",
                  "projection expression $meta is not supported yet");
    compile_error("{ a: { $function: { body: 'f', args: [], lang: 'js' } } }", MK_CODE_BAD_VALUE,
                  "BadValue", "projection expression $function is not supported yet");
    compile_error("{ a: { $foo: 1 } }", 31325, "Location31325", "Unknown expression $foo");
    compile_error("{ a: '$$NOW_NOT_A_VAR' }", 17276, NULL, NULL);
    compile_error("{ a: '$' }", 16872, NULL, NULL);
}

static void test_invalid_input(void **state)
{
    (void)state;
    /* documents that are not valid BSON are refused, not read past their end:
     * { a: 1, b: <a string whose length runs past the end> } */
    uint8_t top[] = {21, 0, 0, 0, 0x10, 'a', 0, 1, 0, 0, 0, 0x02, 'b', 0, 0x7f, 0, 0, 0, 'z', 0, 0};
    /* { x: { y: <the same> } } */
    uint8_t nested[] = {20, 0, 0, 0, 0x03, 'x', 0, 12, 0, 0, 0, 0x02, 'y', 0, 0x7f, 0, 0, 0, 0, 0};
    const char *specs[] = {"{ a: 1 }", "{ a: 0 }", "{ 'x.y': 1 }", "{ 'x.y': 0 }"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        for (int which = 0; which < 2; which++) {
            if (which == 1 && i < 2) continue; /* those never look inside x */
            bson_t d;
            assert_true(which ? bson_init_static(&d, nested, sizeof nested)
                              : bson_init_static(&d, top, sizeof top));
            bson_t *s = tu_bson(specs[i]);
            mk_error_t err = {0};
            mk_projection_t *p = mk_projection_compile(s, NULL, &err);
            bson_t out = BSON_INITIALIZER;
            assert_int_equal(mk_projection_apply(p, &d, NULL, &out, &err), MK_ERR);
            assert_int_equal(err.code, MK_CODE_INVALID_BSON);
            assert_true(bson_empty(&out));
            bson_destroy(&out);
            mk_projection_destroy(p);
            bson_destroy(s);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),          cmocka_unit_test(test_inclusion),
        cmocka_unit_test(test_exclusion),         cmocka_unit_test(test_mixed_errors),
        cmocka_unit_test(test_dotted_paths),      cmocka_unit_test(test_paths_through_arrays),
        cmocka_unit_test(test_path_errors),       cmocka_unit_test(test_slice),
        cmocka_unit_test(test_slice_errors),      cmocka_unit_test(test_elem_match),
        cmocka_unit_test(test_elem_match_errors), cmocka_unit_test(test_positional),
        cmocka_unit_test(test_positional_errors), cmocka_unit_test(test_literals),
        cmocka_unit_test(test_nested_computed),   cmocka_unit_test(test_expressions),
        cmocka_unit_test(test_computed_errors),   cmocka_unit_test(test_invalid_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
