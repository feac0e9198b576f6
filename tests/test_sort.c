/* Sort specifications, sort keys and the blocking sorter (engine/sort.c). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/value.h"
#include "engine/sort.h"

/* ---------- helpers ---------- */

#define IDS(...) (const int[]){__VA_ARGS__}, sizeof((int[]){__VA_ARGS__}) / sizeof(int)

/* Sorts the documents of the array `docs` (relaxed JSON, each with an int `_id`) by `spec`,
 * keeping `limit` (0: all), and checks the order of their _ids. */
static void check_order_(const char *spec, const char *docs, uint64_t limit, const int *expect,
                         size_t n, int line)
{
    char *text = NULL;
    assert_true(asprintf(&text, "{ d: %s }", docs) > 0);
    bson_t *holder = tu_bson(text);
    free(text);
    bson_t *sspec = tu_bson(spec);
    mk_error_t err = {0};
    mk_sort_t *s = mk_sort_compile(sspec, &err);
    if (!s) fail_msg("line %d: %s", line, err.message);
    mk_sorter_t *st = mk_sorter_new(s, limit, 0, &err);
    assert_non_null(st);
    bson_iter_t it, arr;
    assert_true(bson_iter_init_find(&it, holder, "d") && bson_iter_recurse(&it, &arr));
    uint64_t tag = 0;
    while (bson_iter_next(&arr)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&arr, &len, &data);
        bson_t doc;
        assert_true(bson_init_static(&doc, data, len));
        if (mk_sorter_add(st, &doc, tag++, &err) != MK_OK)
            fail_msg("line %d: %s", line, err.message);
    }
    mk_sorter_finish(st);
    if (mk_sorter_count(st) != n)
        fail_msg("line %d: %zu documents, expected %zu", line, mk_sorter_count(st), n);
    for (size_t i = 0; i < n; i++) {
        bson_t view;
        uint64_t t;
        assert_true(mk_sorter_get(st, i, &view, &t));
        bson_iter_t id;
        assert_true(bson_iter_init_find(&id, &view, "_id"));
        if (bson_iter_int32(&id) != expect[i]) {
            char *got = bson_strdup("");
            for (size_t j = 0; j < n; j++) {
                bson_t v;
                mk_sorter_get(st, j, &v, NULL);
                bson_iter_init_find(&id, &v, "_id");
                char *next = bson_strdup_printf("%s %d", got, bson_iter_int32(&id));
                bson_free(got);
                got = next;
            }
            print_error("line %d: order:%s\n", line, got);
            bson_free(got);
            fail_msg("line %d: position %zu is _id %d, expected %d", line, i, bson_iter_int32(&id),
                     expect[i]);
        }
    }
    bson_t view;
    assert_false(mk_sorter_get(st, n, &view, NULL));
    mk_sorter_destroy(st);
    mk_sort_destroy(s);
    bson_destroy(sspec);
    bson_destroy(holder);
}
#define check_order(spec, docs, ...)   check_order_(spec, docs, 0, IDS(__VA_ARGS__), __LINE__)
#define check_topk(spec, docs, k, ...) check_order_(spec, docs, k, IDS(__VA_ARGS__), __LINE__)

static void expect_compile_error_(const char *spec, int code, const char *kind, const char *msg,
                                  int line)
{
    bson_t *b = tu_bson(spec);
    mk_error_t err = {0};
    mk_sort_t *s = mk_sort_compile(b, &err);
    bson_destroy(b);
    if (s) {
        mk_sort_destroy(s);
        fail_msg("line %d: %s compiled, expected error %d", line, spec, code);
    }
    if (err.code != code || strcmp(err.kind, kind) != 0 || strcmp(err.message, msg) != 0)
        fail_msg("line %d: %s gave %d %s \"%s\", expected %d %s \"%s\"", line, spec, err.code,
                 err.kind, err.message, code, kind, msg);
}
#define expect_compile_error(spec, code, kind, msg)                                                \
    expect_compile_error_(spec, code, kind, msg, __LINE__)

/* The sort key of `doc` as a document { k0: ..., k1: ... } for comparison. */
static void check_key_(const char *spec, const char *doc, const char *expect, int line)
{
    bson_t *sspec = tu_bson(spec), *d = tu_bson(doc);
    mk_error_t err = {0};
    mk_sort_t *s = mk_sort_compile(sspec, &err);
    assert_non_null(s);
    bson_value_t keys[MK_SORT_MAX_KEYS];
    if (mk_sort_key(s, d, keys, &err) != MK_OK) fail_msg("line %d: %s", line, err.message);
    bson_t got = BSON_INITIALIZER;
    for (size_t i = 0; i < mk_sort_nkeys(s); i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", (int)i);
        if (keys[i].value_type == BSON_TYPE_UNDEFINED)
            BSON_APPEND_UTF8(&got, k, "<undefined>");
        else
            BSON_APPEND_VALUE(&got, k, &keys[i]);
    }
    tu_assert_bson_eq_(&got, expect, __FILE__, line);
    bson_destroy(&got);
    mk_sort_destroy(s);
    bson_destroy(sspec);
    bson_destroy(d);
}
#define check_key(spec, doc, expect) check_key_(spec, doc, expect, __LINE__)

/* ---------- spec validation ---------- */

static void test_spec_errors(void **state)
{
    (void)state;
    expect_compile_error("{ a: 'asc' }", 15974, "Location15974",
                         "Illegal key in $sort specification: a: \"asc\"");
    expect_compile_error("{ a: true }", 15974, "Location15974",
                         "Illegal key in $sort specification: a: true");
    expect_compile_error("{ a: null }", 15974, "Location15974",
                         "Illegal key in $sort specification: a: null");
    const char *ordering = "$sort key ordering must be 1 (for ascending) or -1 (for descending)";
    expect_compile_error("{ a: 2 }", 15975, "Location15975", ordering);
    expect_compile_error("{ a: 0 }", 15975, "Location15975", ordering);
    expect_compile_error("{ a: 0.5 }", 15975, "Location15975", ordering);
    expect_compile_error("{ a: -2.5 }", 15975, "Location15975", ordering);
    expect_compile_error("{ a: NaN }", 15975, "Location15975", ordering);
    expect_compile_error("{ a: NumberLong('9223372036854775807') }", 15975, "Location15975",
                         ordering);
    expect_compile_error("{ a: 1, b: 42.12 }", 15975, "Location15975", ordering);
    expect_compile_error("{ a: {} }", 17312, "Location17312",
                         "$meta is the only expression supported by $sort right now");
    expect_compile_error("{ a: { $sum: 1 } }", 17312, "Location17312",
                         "$meta is the only expression supported by $sort right now");
    expect_compile_error("{ a: { $meta: 'textScore', b: 1 } }", MK_CODE_FAILED_TO_PARSE,
                         "FailedToParse",
                         "Cannot have additional keys in a $meta sort specification");
    expect_compile_error("{ a: { $meta: 'bogus' } }", 31138, "Location31138",
                         "Illegal $meta sort: $meta: \"bogus\"");
    expect_compile_error("{ a: { $meta: 'textScore' } }", MK_CODE_BAD_VALUE, "BadValue",
                         "sort by { $meta: \"textScore\" } is not supported yet");
    expect_compile_error("{ '': 1 }", 40352, "Location40352",
                         "FieldPath cannot be constructed with empty string");
    expect_compile_error("{ 'a..b': 1 }", 15998, "Location15998",
                         "FieldPath field names may not be empty strings.");
    expect_compile_error("{ '.a': 1 }", 15998, "Location15998",
                         "FieldPath field names may not be empty strings.");
    expect_compile_error("{ 'a.': 1 }", 40353, "Location40353",
                         "FieldPath must not end with a '.'.");
    expect_compile_error("{ '$a': 1 }", 16410, "Location16410",
                         "FieldPath field names may not start with '$'. Consider using $getField "
                         "or $setField.");
    expect_compile_error("{ 'a.$b': 1 }", 16410, "Location16410",
                         "FieldPath field names may not start with '$'. Consider using $getField "
                         "or $setField.");
    expect_compile_error("{ a: 1, b: 1, a: -1 }", 7472500, "Location7472500",
                         "$sort key must not contain duplicate keys (duplicate: 'a')");

    /* 32 keys are fine, 33 are not */
    char spec[1024] = "{";
    for (int i = 0; i < 33; i++) {
        char part[16];
        snprintf(part, sizeof part, "%sk%d: 1", i ? ", " : " ", i);
        if (i == 32) {
            strcat(spec, " }");
            bson_t *b = tu_bson(spec);
            mk_error_t err = {0};
            mk_sort_t *s = mk_sort_compile(b, &err);
            assert_non_null(s);
            assert_int_equal(mk_sort_nkeys(s), 32);
            mk_sort_destroy(s);
            bson_destroy(b);
            spec[strlen(spec) - 2] = '\0';
        }
        strcat(spec, part);
    }
    strcat(spec, " }");
    expect_compile_error(spec, 13103, "Location13103", "too many compound keys");
}

static void test_spec_accepted(void **state)
{
    (void)state;
    bson_t *b = tu_bson("{ a: 1, 'b.c': -1, d: 1.0, e: -1.0, f: NumberLong(1), g: NumberLong(-1),"
                        "  h: NumberDecimal('1'), i: NumberDecimal('-1'), j: 1.5, k: -1.9,"
                        "  '$id': 1, 'x.$ref': -1 }");
    mk_error_t err = {0};
    mk_sort_t *s = mk_sort_compile(b, &err);
    if (!s) fail_msg("%s", err.message);
    const int dirs[] = {1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1};
    assert_int_equal(mk_sort_nkeys(s), 12);
    for (size_t i = 0; i < 12; i++) assert_int_equal(mk_sort_direction(s, i), dirs[i]);
    assert_string_equal(mk_sort_path(s, 1), "b.c");
    assert_null(mk_sort_path(s, 12));
    assert_int_equal(mk_sort_direction(s, 12), 0);
    mk_sort_destroy(s);
    bson_destroy(b);

    /* no sort at all */
    s = mk_sort_compile(NULL, &err);
    assert_non_null(s);
    assert_int_equal(mk_sort_nkeys(s), 0);
    mk_sort_destroy(s);
    b = tu_bson("{}");
    s = mk_sort_compile(b, &err);
    assert_non_null(s);
    assert_int_equal(mk_sort_nkeys(s), 0);
    mk_sort_destroy(s);
    bson_destroy(b);
}

/* ---------- sort keys ---------- */

static void test_keys(void **state)
{
    (void)state;
    check_key("{ a: 1 }", "{ a: 5 }", "{ k0: 5 }");
    check_key("{ a: 1 }", "{ b: 5 }", "{ k0: null }");
    check_key("{ a: 1 }", "{ a: [3, 1, 2] }", "{ k0: 1 }");
    check_key("{ a: -1 }", "{ a: [3, 1, 2] }", "{ k0: 3 }");
    check_key("{ a: 1 }", "{ a: [] }", "{ k0: '<undefined>' }");
    check_key("{ a: -1 }", "{ a: [] }", "{ k0: '<undefined>' }");
    check_key("{ a: 1 }", "{ a: undefined }", "{ k0: '<undefined>' }");
    /* one level of expansion: inner arrays compare as arrays */
    check_key("{ a: 1 }", "{ a: [[1, 2], [0]] }", "{ k0: [0] }");
    check_key("{ a: -1 }", "{ a: [[1, 2], [0]] }", "{ k0: [1, 2] }");
    check_key("{ a: 1 }", "{ a: [5, [0]] }", "{ k0: 5 }");
    check_key("{ a: -1 }", "{ a: [5, [0]] }", "{ k0: [0] }");
    check_key("{ a: 1 }", "{ a: [[]] }", "{ k0: [] }");
    /* mixed types: the type order decides */
    check_key("{ a: 1 }", "{ a: ['x', 2, null] }", "{ k0: null }");
    check_key("{ a: -1 }", "{ a: ['x', 2, null] }", "{ k0: 'x' }");
    /* dotted paths */
    check_key("{ 'a.b': 1 }", "{ a: { b: 7 } }", "{ k0: 7 }");
    check_key("{ 'a.b': 1 }", "{ a: 7 }", "{ k0: null }");
    check_key("{ 'a.b': 1 }", "{ a: { c: 7 } }", "{ k0: null }");
    check_key("{ 'a.b.c': 1 }", "{ a: { b: { c: 'deep' } } }", "{ k0: 'deep' }");
    /* through arrays of documents: every element contributes; lacking the field is null */
    check_key("{ 'a.b': 1 }", "{ a: [{ b: 3 }, { b: 1 }] }", "{ k0: 1 }");
    check_key("{ 'a.b': -1 }", "{ a: [{ b: 3 }, { b: 1 }] }", "{ k0: 3 }");
    check_key("{ 'a.b': 1 }", "{ a: [{ b: 3 }, { c: 1 }] }", "{ k0: null }");
    check_key("{ 'a.b': -1 }", "{ a: [{ b: 3 }, { c: 1 }] }", "{ k0: 3 }");
    check_key("{ 'a.b': 1 }", "{ a: [{ b: 3 }, 4] }", "{ k0: null }");
    check_key("{ 'a.b': 1 }", "{ a: [{ b: [5, 2] }, { b: 4 }] }", "{ k0: 2 }");
    check_key("{ 'a.b': -1 }", "{ a: [{ b: [5, 2] }, { b: 4 }] }", "{ k0: 5 }");
    /* an empty array past the end of the path is null, at its end undefined */
    check_key("{ 'a.b': 1 }", "{ a: [] }", "{ k0: null }");
    check_key("{ 'a.b': 1 }", "{ a: [{ b: [] }] }", "{ k0: '<undefined>' }");
    /* nested arrays on the way are not traversed */
    check_key("{ 'a.b': 1 }", "{ a: [[{ b: 1 }]] }", "{ k0: null }");
    /* numeric components index arrays and name fields of documents */
    check_key("{ 'a.1': 1 }", "{ a: [10, 20, 30] }", "{ k0: 20 }");
    check_key("{ 'a.1': 1 }", "{ a: { '1': 'one' } }", "{ k0: 'one' }");
    check_key("{ 'a.5': 1 }", "{ a: [10, 20] }", "{ k0: null }");
    check_key("{ 'a.0.b': 1 }", "{ a: [{ b: 9 }, { b: 1 }] }", "{ k0: 9 }");
    check_key("{ 'a.0': 1 }", "{ a: [[3, 1], 2] }", "{ k0: 1 }");
    /* compound keys through the same array come from the same element */
    check_key("{ 'a.x': 1, 'a.y': 1 }", "{ a: [{ x: 2, y: 0 }, { x: 1, y: 9 }] }",
              "{ k0: 1, k1: 9 }");
    check_key("{ 'a.x': 1, 'a.y': -1 }", "{ a: [{ x: 1, y: 0 }, { x: 1, y: 9 }] }",
              "{ k0: 1, k1: 9 }");
    check_key("{ a: 1, 'a.y': 1 }", "{ a: [{ y: 5 }, 3] }", "{ k0: 3, k1: null }");
    /* one array and scalars */
    check_key("{ a: 1, b: -1 }", "{ a: [4, 2], b: 'x' }", "{ k0: 2, k1: 'x' }");
    check_key("{ b: 1, a: -1 }", "{ a: [4, 2], b: 'x' }", "{ k0: 'x', k1: 4 }");
}

static void test_parallel_arrays(void **state)
{
    (void)state;
    bson_t *spec = tu_bson("{ a: 1, b: 1 }");
    bson_t *doc = tu_bson("{ a: [1, 2], b: [3, 4] }");
    mk_error_t err = {0};
    mk_sort_t *s = mk_sort_compile(spec, &err);
    bson_value_t keys[MK_SORT_MAX_KEYS];
    assert_int_equal(mk_sort_key(s, doc, keys, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    assert_string_equal(err.kind, "BadValue");
    assert_string_equal(err.message, "cannot sort with keys that are parallel arrays");

    /* the sorter passes it on */
    mk_sorter_t *st = mk_sorter_new(s, 0, 0, &err);
    mk_error_clear(&err);
    assert_int_equal(mk_sorter_add(st, doc, 0, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    assert_int_equal(mk_sorter_count(st), 0);
    mk_sorter_destroy(st);

    /* parallel arrays inside the elements of a shared array too */
    bson_destroy(spec);
    bson_destroy(doc);
    mk_sort_destroy(s);
    spec = tu_bson("{ 'a.b': 1, 'a.c': 1 }");
    doc = tu_bson("{ a: [{ b: [1, 2], c: [3, 4] }] }");
    s = mk_sort_compile(spec, &err);
    assert_int_equal(mk_sort_key(s, doc, keys, &err), MK_ERR);
    assert_string_equal(err.message, "cannot sort with keys that are parallel arrays");

    /* an array with a scalar is fine */
    bson_destroy(doc);
    doc = tu_bson("{ a: [{ b: [1, 2], c: 3 }] }");
    assert_int_equal(mk_sort_key(s, doc, keys, &err), MK_OK);
    assert_int_equal(keys[0].value.v_int32, 1);
    assert_int_equal(keys[1].value.v_int32, 3);
    mk_sort_destroy(s);
    bson_destroy(spec);
    bson_destroy(doc);
}

static void test_cmp_directions(void **state)
{
    (void)state;
    bson_t *spec = tu_bson("{ a: 1, b: -1 }");
    mk_error_t err = {0};
    mk_sort_t *s = mk_sort_compile(spec, &err);
    bson_t *d1 = tu_bson("{ a: 1, b: 1 }"), *d2 = tu_bson("{ a: 1, b: 2 }"),
           *d3 = tu_bson("{ a: 2, b: 9 }");
    bson_value_t k1[2], k2[2], k3[2];
    assert_int_equal(mk_sort_key(s, d1, k1, &err), MK_OK);
    assert_int_equal(mk_sort_key(s, d2, k2, &err), MK_OK);
    assert_int_equal(mk_sort_key(s, d3, k3, &err), MK_OK);
    assert_true(mk_sort_cmp(s, k2, k1) < 0); /* b descending */
    assert_true(mk_sort_cmp(s, k1, k2) > 0);
    assert_true(mk_sort_cmp(s, k1, k3) < 0); /* a ascending first */
    assert_true(mk_sort_cmp(s, k3, k2) > 0);
    assert_int_equal(mk_sort_cmp(s, k1, k1), 0);
    mk_sort_destroy(s);
    bson_destroy(spec);
    bson_destroy(d1);
    bson_destroy(d2);
    bson_destroy(d3);
}

/* ---------- sorting ---------- */

static void test_single_key(void **state)
{
    (void)state;
    const char *docs = "[{ _id: 1, n: 3 }, { _id: 2, n: 1 }, { _id: 3, n: 2 }]";
    check_order("{ n: 1 }", docs, 2, 3, 1);
    check_order("{ n: -1 }", docs, 1, 3, 2);
    check_order("{}", docs, 1, 2, 3); /* no keys: scan order */
}

static void test_multi_key_mixed_directions(void **state)
{
    (void)state;
    const char *docs = "[{ _id: 1, age: 30, name: 'bo' }, { _id: 2, age: 25, name: 'al' },"
                       " { _id: 3, age: 30, name: 'al' }, { _id: 4, age: 25, name: 'cy' },"
                       " { _id: 5, age: 40, name: 'al' }]";
    check_order("{ age: -1, name: 1 }", docs, 5, 3, 1, 2, 4);
    check_order("{ age: 1, name: -1 }", docs, 4, 2, 1, 3, 5);
    check_order("{ name: 1, age: 1 }", docs, 2, 3, 5, 1, 4);
    check_order("{ name: -1, age: -1 }", docs, 4, 1, 5, 3, 2);
}

static void test_type_order(void **state)
{
    (void)state;
    /* MinKey < null/missing < numbers < strings < objects < arrays' elements < binData <
     * ObjectId < bool < date < timestamp < regex < MaxKey */
    const char *docs =
        "[{ _id: 1, v: MaxKey }, { _id: 2, v: /re/ }, { _id: 3, v: Timestamp(1, 1) },"
        " { _id: 4, v: new Date(5) }, { _id: 5, v: true },"
        " { _id: 6, v: ObjectId('507f1f77bcf86cd799439011') },"
        " { _id: 7, v: BinData(0, 'AA==') }, { _id: 8, v: { x: 1 } },"
        " { _id: 9, v: 'str' }, { _id: 10, v: 42 }, { _id: 11, v: null },"
        " { _id: 12, v: MinKey }, { _id: 13, v: false }, { _id: 14 },"
        " { _id: 15, v: [[1]] }]";
    check_order("{ v: 1 }", docs, 12, 11, 14, 10, 9, 8, 15, 7, 6, 13, 5, 4, 3, 2, 1);
    check_order("{ v: -1 }", docs, 1, 2, 3, 4, 5, 13, 6, 7, 15, 8, 9, 10, 11, 14, 12);
}

static void test_numbers_across_types(void **state)
{
    (void)state;
    const char *docs =
        "[{ _id: 1, n: NumberLong(2) }, { _id: 2, n: 1.5 }, { _id: 3, n: 1 },"
        " { _id: 4, n: NumberDecimal('1.25') }, { _id: 5, n: -Infinity },"
        " { _id: 6, n: NaN }, { _id: 7, n: NumberLong('9007199254740993') },"
        " { _id: 8, n: 9007199254740992.0 }, { _id: 9, n: 1.0 }, { _id: 10, n: -0.0 },"
        " { _id: 11, n: 0 }]";
    /* equal values (1 and 1.0, -0 and 0) keep scan order */
    check_order("{ n: 1 }", docs, 6, 5, 10, 11, 3, 9, 4, 2, 1, 8, 7);
    check_order("{ n: -1 }", docs, 7, 8, 1, 2, 4, 3, 9, 10, 11, 5, 6);
}

static void test_arrays_min_max(void **state)
{
    (void)state;
    /* MongoDB's own example (DOCS-2760): {} {a: 1} {a: []} {a: [1]} {a: [0, 1]} */
    const char *docs = "[{ _id: 1 }, { _id: 2, a: 1 }, { _id: 3, a: [] }, { _id: 4, a: [1] },"
                       " { _id: 5, a: [0, 1] }]";
    check_order("{ a: 1 }", docs, 3, 1, 5, 2, 4);
    check_order("{ a: -1 }", docs, 2, 4, 5, 1, 3);

    const char *mixed = "[{ _id: 1, a: [5, 10] }, { _id: 2, a: 7 }, { _id: 3, a: [1, 20] },"
                        " { _id: 4, a: ['s', 6] }]";
    check_order("{ a: 1 }", mixed, 3, 1, 4, 2);  /* mins: 5, 7, 1, 6 */
    check_order("{ a: -1 }", mixed, 4, 3, 1, 2); /* maxes: 10, 7, 20, 's' */

    /* null inside an array vs a missing field */
    const char *nulls = "[{ _id: 1, a: [null, 3] }, { _id: 2 }, { _id: 3, a: [2] }]";
    check_order("{ a: 1 }", nulls, 1, 2, 3);
    check_order("{ a: -1 }", nulls, 1, 3, 2);
}

static void test_missing_fields(void **state)
{
    (void)state;
    const char *docs = "[{ _id: 1, a: 2 }, { _id: 2 }, { _id: 3, a: null }, { _id: 4, a: 1 },"
                       " { _id: 5, a: undefined }]";
    /* missing and null tie (scan order); undefined sorts below null */
    check_order("{ a: 1 }", docs, 5, 2, 3, 4, 1);
    check_order("{ a: -1 }", docs, 1, 4, 2, 3, 5);
}

static void test_dotted_paths(void **state)
{
    (void)state;
    const char *docs = "[{ _id: 1, p: { age: 40 } }, { _id: 2, p: { age: 20 } },"
                       " { _id: 3, p: 'scalar' }, { _id: 4, p: [{ age: 30 }, { age: 10 }] },"
                       " { _id: 5, p: [{ age: 35 }, { other: 1 }] }, { _id: 6 }]";
    /* keys asc: 40, 20, null, 10, null, null; desc: 40, 20, null, 30, 35, null */
    check_order("{ 'p.age': 1 }", docs, 3, 5, 6, 4, 2, 1);
    check_order("{ 'p.age': -1 }", docs, 1, 5, 4, 2, 3, 6);
}

static void test_ties_deterministic(void **state)
{
    (void)state;
    const char *docs = "[{ _id: 1, g: 'b' }, { _id: 2, g: 'a' }, { _id: 3, g: 'b' },"
                       " { _id: 4, g: 'a' }, { _id: 5, g: 'b' }]";
    check_order("{ g: 1 }", docs, 2, 4, 1, 3, 5);
    check_order("{ g: -1 }", docs, 1, 3, 5, 2, 4);
}

static void test_topk(void **state)
{
    (void)state;
    const char *docs = "[{ _id: 1, n: 5 }, { _id: 2, n: 3 }, { _id: 3, n: 9 }, { _id: 4, n: 1 },"
                       " { _id: 5, n: 3 }, { _id: 6, n: 7 }, { _id: 7, n: 3 }, { _id: 8, n: 0 }]";
    check_order("{ n: 1 }", docs, 8, 4, 2, 5, 7, 1, 6, 3);
    check_topk("{ n: 1 }", docs, 1, 8);
    check_topk("{ n: 1 }", docs, 3, 8, 4, 2);
    check_topk("{ n: 1 }", docs, 4, 8, 4, 2, 5); /* ties: the earliest scanned win */
    check_topk("{ n: 1 }", docs, 5, 8, 4, 2, 5, 7);
    check_topk("{ n: -1 }", docs, 2, 3, 6);
    check_topk("{ n: -1 }", docs, 4, 3, 6, 1, 2);
    check_topk("{ n: 1 }", docs, 100, 8, 4, 2, 5, 7, 1, 6, 3);
    check_topk("{}", docs, 3, 1, 2, 3);

    /* a larger run agrees with the full sort */
    bson_t *spec = tu_bson("{ v: 1, i: -1 }");
    mk_error_t err = {0};
    mk_sort_t *s = mk_sort_compile(spec, &err);
    mk_sorter_t *all = mk_sorter_new(s, 0, 0, &err), *top = mk_sorter_new(s, 37, 0, &err);
    uint32_t x = 12345;
    for (int i = 0; i < 1000; i++) {
        x = x * 1103515245u + 12345u;
        bson_t d = BSON_INITIALIZER;
        BSON_APPEND_INT32(&d, "v", (int32_t)((x >> 16) % 50));
        BSON_APPEND_INT32(&d, "i", i % 7);
        assert_int_equal(mk_sorter_add(all, &d, (uint64_t)i, &err), MK_OK);
        assert_int_equal(mk_sorter_add(top, &d, (uint64_t)i, &err), MK_OK);
        bson_destroy(&d);
    }
    mk_sorter_finish(all);
    mk_sorter_finish(top);
    assert_int_equal(mk_sorter_count(all), 1000);
    assert_int_equal(mk_sorter_count(top), 37);
    for (size_t i = 0; i < 37; i++) {
        bson_t a, b;
        uint64_t ta, tb;
        assert_true(mk_sorter_get(all, i, &a, &ta));
        assert_true(mk_sorter_get(top, i, &b, &tb));
        assert_int_equal(ta, tb);
        assert_int_equal(mk_bson_cmp(&a, &b), 0);
    }
    /* and the full sort is ordered, ties by arrival */
    for (size_t i = 1; i < 1000; i++) {
        bson_t a, b;
        uint64_t ta, tb;
        mk_sorter_get(all, i - 1, &a, &ta);
        mk_sorter_get(all, i, &b, &tb);
        bson_value_t ka[2], kb[2];
        mk_sort_key(s, &a, ka, &err);
        mk_sort_key(s, &b, kb, &err);
        int c = mk_sort_cmp(s, ka, kb);
        assert_true(c < 0 || (c == 0 && ta < tb));
    }
    mk_sorter_destroy(all);
    mk_sorter_destroy(top);
    mk_sort_destroy(s);
    bson_destroy(spec);
}

static void test_sorter_memory_limit(void **state)
{
    (void)state;
    bson_t *spec = tu_bson("{ n: 1 }");
    mk_error_t err = {0};
    mk_sort_t *s = mk_sort_compile(spec, &err);
    mk_sorter_t *st = mk_sorter_new(s, 0, 4096, &err);
    bson_t *d =
        tu_bson("{ n: 1, pad: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }");
    int rc = MK_OK, added = 0;
    while ((rc = mk_sorter_add(st, d, 0, &err)) == MK_OK) added++;
    assert_int_equal(rc, MK_ERR);
    assert_true(added > 10 && added < 4096 / (int)d->len);
    assert_int_equal(err.code, 292);
    assert_string_equal(err.kind, "QueryExceededMemoryLimitNoDiskUseAllowed");
    assert_string_equal(err.message, "Sort exceeded memory limit of 4096 bytes, but did not opt in "
                                     "to external sorting.");
    mk_sorter_destroy(st);

    /* a top-k sort holds only k documents, so the same limit is never reached */
    st = mk_sorter_new(s, 3, 4096, &err);
    for (int i = 0; i < 1000; i++) assert_int_equal(mk_sorter_add(st, d, (uint64_t)i, &err), MK_OK);
    mk_sorter_finish(st);
    assert_int_equal(mk_sorter_count(st), 3);
    uint64_t tag;
    bson_t view;
    assert_true(mk_sorter_get(st, 2, &view, &tag));
    assert_int_equal(tag, 2);
    mk_sorter_destroy(st);
    mk_sort_destroy(s);
    bson_destroy(spec);
    bson_destroy(d);
}

static void test_sorter_misuse_and_copies(void **state)
{
    (void)state;
    bson_t *spec = tu_bson("{ name: 1 }");
    mk_error_t err = {0};
    mk_sort_t *s = mk_sort_compile(spec, &err);
    mk_sorter_t *st = mk_sorter_new(s, 0, 0, &err);
    /* the sorter copies documents: the caller's buffer may change afterwards */
    bson_t *d = tu_bson("{ name: 'zed' }");
    assert_int_equal(mk_sorter_add(st, d, 7, &err), MK_OK);
    bson_destroy(d);
    d = tu_bson("{ name: 'amy' }");
    assert_int_equal(mk_sorter_add(st, d, 8, &err), MK_OK);
    bson_destroy(d);
    mk_sorter_finish(st);
    mk_sorter_finish(st); /* idempotent */
    bson_t view;
    uint64_t tag;
    assert_true(mk_sorter_get(st, 0, &view, &tag));
    assert_int_equal(tag, 8);
    tu_assert_bson_eq(&view, "{ name: 'amy' }");
    assert_true(mk_sorter_get(st, 1, &view, NULL));
    tu_assert_bson_eq(&view, "{ name: 'zed' }");
    d = tu_bson("{ name: 'late' }");
    assert_int_equal(mk_sorter_add(st, d, 9, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_INTERNAL);
    bson_destroy(d);
    mk_sorter_destroy(st);
    mk_sort_destroy(s);
    bson_destroy(spec);
}

static void test_invalid_bson(void **state)
{
    (void)state;
    /* { a: 1, b: <a string whose length runs past the end> } and { x: [1, <the same>] } */
    uint8_t top[] = {21, 0, 0, 0, 0x10, 'a', 0, 1, 0, 0, 0, 0x02, 'b', 0, 0x7f, 0, 0, 0, 'z', 0, 0};
    uint8_t arr[] = {27, 0, 0, 0, 0x04, 'x', 0, 19,   0, 0, 0, 0x10, '0', 0,
                     1,  0, 0, 0, 0x02, '1', 0, 0x7f, 0, 0, 0, 0,    0};
    const struct {
        const uint8_t *data;
        uint32_t len;
        const char *spec;
        bool ok;
    } cases[] = {
        {top, sizeof top, "{ a: 1 }", true}, /* found before the damage */
        {top, sizeof top, "{ b: 1 }", false}, {top, sizeof top, "{ c: 1 }", false},
        {arr, sizeof arr, "{ x: 1 }", false}, {arr, sizeof arr, "{ 'x.y': 1 }", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t *spec = tu_bson(cases[i].spec);
        mk_error_t err = {0};
        mk_sort_t *s = mk_sort_compile(spec, &err);
        bson_value_t keys[1];
        int rc = mk_sort_key_raw(s, cases[i].data, cases[i].len, keys, &err);
        if (cases[i].ok) {
            assert_int_equal(rc, MK_OK);
        } else {
            assert_int_equal(rc, MK_ERR);
            assert_int_equal(err.code, MK_CODE_INVALID_BSON);
        }
        mk_sort_destroy(s);
        bson_destroy(spec);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_spec_accepted),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_parallel_arrays),
        cmocka_unit_test(test_cmp_directions),
        cmocka_unit_test(test_single_key),
        cmocka_unit_test(test_multi_key_mixed_directions),
        cmocka_unit_test(test_type_order),
        cmocka_unit_test(test_numbers_across_types),
        cmocka_unit_test(test_arrays_min_max),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_dotted_paths),
        cmocka_unit_test(test_ties_deterministic),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_sorter_memory_limit),
        cmocka_unit_test(test_sorter_misuse_and_copies),
        cmocka_unit_test(test_invalid_bson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
