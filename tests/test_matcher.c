/* The query matcher: every operator, the traversal rules and MongoDB's pitfalls, as tables of
 * (filter, document, expected) cases; compile errors with code and message; positions. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/matcher.h"

typedef struct mcase {
    const char *filter;
    const char *doc;
    bool expect;
} mcase_t;

/* Runs a table; reports every failing row before failing. */
static void run_cases(const mcase_t *cases, size_t n)
{
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        bson_t *f = tu_bson(cases[i].filter);
        bson_t *d = tu_bson(cases[i].doc);
        mk_error_t err = {0};
        mk_matcher_t *m = mk_matcher_compile(f, &err);
        if (!m) {
            print_error("case %zu: %s does not compile: %s\n", i, cases[i].filter, err.message);
            failures++;
        } else {
            bool got = mk_matcher_match(m, d, NULL);
            if (got != cases[i].expect) {
                print_error("case %zu: filter %s on %s: expected %s, got %s\n", i, cases[i].filter,
                            cases[i].doc, cases[i].expect ? "match" : "no match",
                            got ? "match" : "no match");
                failures++;
            }
            mk_matcher_destroy(m);
        }
        bson_destroy(f);
        bson_destroy(d);
    }
    assert_int_equal(failures, 0);
}

#define RUN(table) run_cases(table, sizeof table / sizeof table[0])

static void test_equality(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ a: 5 }", "{ a: 5 }", true},
        {"{ a: 5 }", "{ a: 6 }", false},
        {"{ a: 5 }", "{ b: 5 }", false},
        {"{ a: 5 }", "{ a: [1, 5] }", true},
        {"{ a: 5 }", "{ a: [[5]] }", false},
        {"{ a: 5 }", "{ a: [] }", false},
        {"{ a: [1, 5] }", "{ a: [1, 5] }", true},
        {"{ a: [1, 5] }", "{ a: [5, 1] }", false},
        {"{ a: [1, 5] }", "{ a: [[1, 5], 2] }", true},
        {"{ a: [1, 5] }", "{ a: [1, 5, 6] }", false},
        {"{ a: [1, 5] }", "{ a: 1 }", false},
        {"{ a: [] }", "{ a: [] }", true},
        {"{ a: [] }", "{ a: [[], 1] }", true},
        {"{ a: [] }", "{ a: [1] }", false},
        {"{ a: { b: 1 } }", "{ a: { b: 1 } }", true},
        {"{ a: { b: 1 } }", "{ a: { b: 1, c: 2 } }", false},
        {"{ a: { b: 1, c: 2 } }", "{ a: { c: 2, b: 1 } }", false},
        {"{ a: { b: 1, c: 2 } }", "{ a: { b: 1, c: 2 } }", true},
        {"{ a: { b: 1 } }", "{ a: [{ b: 1 }, { b: 2 }] }", true},
        {"{ a: { b: 1 } }", "{ a: { b: 1.0 } }", true},
        {"{ a: {} }", "{ a: {} }", true},
        {"{ a: {} }", "{ a: { b: 1 } }", false},
        {"{ a: 'x' }", "{ a: 'x' }", true},
        {"{ a: 'x' }", "{ a: 'X' }", false},
        {"{ a: 'x' }", "{ a: { $symbol: 'x' } }", true},
        {"{ a: 1 }", "{ a: 1.0 }", true},
        {"{ a: 1 }", "{ a: NumberLong(1) }", true},
        {"{ a: 1 }", "{ a: NumberDecimal('1') }", true},
        {"{ a: NumberDecimal('1.0') }", "{ a: 1 }", true},
        {"{ a: NumberLong(1) }", "{ a: 1.0 }", true},
        {"{ a: 0 }", "{ a: -0.0 }", true},
        {"{ a: -0.0 }", "{ a: 0 }", true},
        {"{ a: NaN }", "{ a: NaN }", true},
        {"{ a: NaN }", "{ a: 1 }", false},
        {"{ a: 1 }", "{ a: NaN }", false},
        {"{ a: 1 }", "{ a: '1' }", false},
        {"{ a: 1 }", "{ a: true }", false},
        {"{ a: true }", "{ a: 1 }", false},
        {"{ a: 9007199254740993 }", "{ a: 9007199254740992.0 }", false},
        {"{ a: ObjectId('5f1d7a3b9c1e4a0012345678') }",
         "{ a: ObjectId('5f1d7a3b9c1e4a0012345678') }", true},
        {"{ a: ISODate('2020-01-01T00:00:00Z') }", "{ a: ISODate('2020-01-01T00:00:00Z') }", true},
        {"{ a: { $ref: 'c', $id: 1 } }", "{ a: { $ref: 'c', $id: 1 } }", true},
        {"{ '': 1 }", "{ '': 1 }", true},
        {"{ a: 1, b: 2 }", "{ b: 2, a: 1 }", true},
        {"{ a: 1, b: 2 }", "{ a: 1 }", false},
        {"{ a: { $eq: [1, 2] } }", "{ a: [1, 2] }", true},
        {"{ a: { $eq: { b: 1 } } }", "{ a: { b: 1 } }", true},
        {"{ a: { $eq: 5 } }", "{ a: [5] }", true},
        {"{ a: { $eq: /x/ } }", "{ a: 'x' }", false},
        {"{ a: { $eq: /x/ } }", "{ a: /x/ }", true},
        {"{ a: { $eq: { $gt: 1 } } }", "{ a: { $gt: 1 } }", true},
    };
    RUN(t);
}

/* Decimal NaN is built directly (the relaxed JSON parser has no spelling for it). */
static void test_decimal_nan(void **state)
{
    (void)state;
    bson_decimal128_t nan;
    assert_true(bson_decimal128_from_string("NaN", &nan));
    bson_t doc;
    bson_init(&doc);
    BSON_APPEND_DECIMAL128(&doc, "a", &nan);
    static const struct {
        const char *filter;
        bool expect;
    } t[] = {
        {"{ a: NaN }", true},
        {"{ a: { $gte: NaN } }", true},
        {"{ a: { $gt: NaN } }", false},
        {"{ a: { $lt: 1 } }", false},
        {"{ a: { $gt: -Infinity } }", false},
        {"{ a: { $in: [1, NaN] } }", true},
        {"{ a: { $type: 'decimal' } }", true},
        {"{ a: { $mod: [2, 0] } }", false},
        {"{ a: { $bitsAllClear: [0] } }", false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        bson_t *f = tu_bson(t[i].filter);
        mk_matcher_t *m = mk_matcher_compile(f, NULL);
        assert_non_null(m);
        if (mk_matcher_match(m, &doc, NULL) != t[i].expect)
            fail_msg("decimal NaN case %zu: %s", i, t[i].filter);
        mk_matcher_destroy(m);
        bson_destroy(f);
    }
    bson_destroy(&doc);
}

static void test_paths(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ 'a.b': 1 }", "{ a: { b: 1 } }", true},
        {"{ 'a.b': 1 }", "{ a: [{ b: 1 }] }", true},
        {"{ 'a.b': 1 }", "{ a: [{ b: [1, 2] }] }", true},
        {"{ 'a.b': 1 }", "{ a: [[{ b: 1 }]] }", false},
        {"{ 'a.b': 1 }", "{ a: [{ c: 1 }, { b: 2 }] }", false},
        {"{ 'a.b': 1 }", "{ a: 1 }", false},
        {"{ 'a.b': 1 }", "{ a: { b: [[1]] } }", false},
        {"{ 'a.b.c': 1 }", "{ a: [{ b: [{ c: 1 }] }] }", true},
        {"{ 'a.b.c': 1 }", "{ a: { b: [{ c: [1] }] } }", true},
        {"{ 'a.b.c': 1 }", "{ a: [{ b: { c: 2 } }, { b: { c: 1 } }] }", true},
        {"{ 'a.b': [1, 2] }", "{ a: [{ b: [1, 2] }] }", true},
        {"{ 'a.b': { c: 1 } }", "{ a: { b: { c: 1 } } }", true},
        {"{ 'comments.user': 'jpicard', 'comments.text': 'Make it so!' }",
         "{ comments: [{ user: 'wriker', text: 'Make it so!' }, { user: 'jpicard', text: 'no' }] "
         "}",
         true},
        /* numeric components: an index and also a field name */
        {"{ 'a.0': 5 }", "{ a: [5, 6] }", true},
        {"{ 'a.1': 5 }", "{ a: [5, 6] }", false},
        {"{ 'a.1': 6 }", "{ a: [5, 6] }", true},
        {"{ 'a.0': 5 }", "{ a: [{ '0': 5 }] }", true},
        {"{ 'a.0': 5 }", "{ a: { '0': 5 } }", true},
        {"{ 'a.0': { '0': 5 } }", "{ a: [{ '0': 5 }] }", true},
        {"{ 'a.0.b': 1 }", "{ a: [{ b: 1 }] }", true},
        {"{ 'a.0.b': 1 }", "{ a: [{ b: 2 }, { b: 1 }] }", false},
        {"{ 'a.1.b': 1 }", "{ a: [{ b: 2 }, { b: 1 }] }", true},
        {"{ 'a.1': 7 }", "{ a: [{ '1': 7 }, { x: 1 }] }", true},
        {"{ 'a.1': { x: 1 } }", "{ a: [{ '1': 7 }, { x: 1 }] }", true},
        {"{ 'a.0.0': 1 }", "{ a: [[1, 2]] }", true},
        {"{ 'a.0': 1 }", "{ a: [[1, 2]] }", false},
        {"{ 'a.0': [1, 2] }", "{ a: [[1, 2]] }", true},
        {"{ 'a.0.b': 1 }", "{ a: [[{ b: 1 }]] }", true},
        {"{ 'a.01': 2 }", "{ a: [1, 2] }", false},
        {"{ 'a.b.0': 1 }", "{ a: [{ b: [1] }] }", true},
        {"{ 'a.b.1': 1 }", "{ a: [{ b: [1] }] }", false},
        {"{ 'a.5': { $exists: false } }", "{ a: [1, 2] }", true},
        {"{ 'a.1': { $exists: true } }", "{ a: [1, 2] }", true},
        {"{ 'a.0': { $exists: true } }", "{ a: [] }", false},
        {"{ 'a.0': { $gt: 4 } }", "{ a: [5, 1] }", true},
        {"{ 'a.1': { $gt: 4 } }", "{ a: [5, 1] }", false},
        {"{ 'a.0': null }", "{ a: [] }", false},
        {"{ 'a.0': null }", "{ a: [{ b: 1 }] }", true},
    };
    RUN(t);
}

static void test_null_and_missing(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ a: null }", "{}", true},
        {"{ a: null }", "{ a: null }", true},
        {"{ a: null }", "{ a: undefined }", true},
        {"{ a: null }", "{ a: 0 }", false},
        {"{ a: null }", "{ a: false }", false},
        {"{ a: null }", "{ a: [1, null] }", true},
        {"{ a: null }", "{ a: [1, 2] }", false},
        {"{ a: null }", "{ a: [] }", false},
        {"{ 'a.b': null }", "{ a: [{ b: 1 }, { c: 2 }] }", true},
        {"{ 'a.b': null }", "{ a: [{ b: 1 }, { b: 2 }] }", false},
        {"{ 'a.b': null }", "{ a: 5 }", true},
        {"{ 'a.b': null }", "{ a: [1, 2] }", false},
        {"{ 'a.b': null }", "{}", true},
        {"{ 'a.b': null }", "{ a: { b: null } }", true},
        {"{ 'a.b': null }", "{ a: { b: [null] } }", true},
        {"{ a: { $eq: null } }", "{}", true},
        {"{ a: { $ne: null } }", "{}", false},
        {"{ a: { $ne: null } }", "{ a: null }", false},
        {"{ a: { $ne: null } }", "{ a: 1 }", true},
        {"{ a: { $ne: null } }", "{ a: [1, null] }", false},
        {"{ a: { $ne: null } }", "{ a: [1, 2] }", true},
        {"{ 'a.b': { $ne: null } }", "{ a: [{ b: 1 }, { c: 2 }] }", false},
        {"{ 'a.b': { $ne: null } }", "{ a: [{ b: 1 }, { b: 2 }] }", true},
        {"{ a: { $in: [null] } }", "{}", true},
        {"{ a: { $in: [null] } }", "{ a: undefined }", true},
        {"{ a: { $in: [null, 5] } }", "{ a: 5 }", true},
        {"{ a: { $in: [null] } }", "{ a: [1, null] }", true},
        {"{ a: { $in: [null] } }", "{ a: 1 }", false},
        {"{ 'a.b': { $in: [null] } }", "{ a: [{ c: 1 }] }", true},
        {"{ a: { $nin: [null] } }", "{}", false},
        {"{ a: { $nin: [null] } }", "{ a: 3 }", true},
        {"{ a: { $nin: [null] } }", "{ a: [3, null] }", false},
        {"{ a: { $gte: null } }", "{}", true},
        {"{ a: { $gte: null } }", "{ a: null }", true},
        {"{ a: { $lte: null } }", "{ a: null }", true},
        {"{ a: { $lte: null } }", "{}", true},
        {"{ a: { $gt: null } }", "{ a: null }", false},
        {"{ a: { $gt: null } }", "{}", false},
        {"{ a: { $lt: null } }", "{}", false},
        {"{ a: { $lt: null } }", "{ a: null }", false},
        {"{ a: { $gte: null } }", "{ a: 42 }", false},
        {"{ a: { $gt: null } }", "{ a: undefined }", false},
        {"{ a: { $exists: true } }", "{ a: null }", true},
        {"{ a: { $exists: false } }", "{ a: null }", false},
        {"{ a: { $type: 'null' } }", "{}", false},
        {"{ a: { $type: 'null' } }", "{ a: null }", true},
        {"{ a: { $all: [null] } }", "{}", true},
        {"{ a: { $elemMatch: { b: null } } }", "{ a: [{ c: 1 }] }", true},
    };
    RUN(t);
}

static void test_ne_nin(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ tags: { $ne: 'x' } }", "{ tags: ['x', 'y'] }", false},
        {"{ tags: { $ne: 'x' } }", "{ tags: ['y', 'z'] }", true},
        {"{ tags: { $ne: 'x' } }", "{}", true},
        {"{ tags: { $ne: 'x' } }", "{ tags: 'x' }", false},
        {"{ tags: { $ne: 'x' } }", "{ tags: 'y' }", true},
        {"{ tags: { $ne: ['x'] } }", "{ tags: ['x'] }", false},
        {"{ tags: { $ne: 1 } }", "{ tags: 1.0 }", false},
        {"{ tags: { $nin: ['x', 'q'] } }", "{ tags: ['y', 'q'] }", false},
        {"{ tags: { $nin: ['x', 'q'] } }", "{ tags: ['y', 'z'] }", true},
        {"{ tags: { $nin: ['x'] } }", "{}", true},
        {"{ tags: { $nin: [] } }", "{ tags: 1 }", true},
        {"{ tags: { $in: [] } }", "{ tags: 1 }", false},
        {"{ tags: { $in: [] } }", "{}", false},
        {"{ 'a.b': { $ne: 1 } }", "{ a: [{ b: 2 }, { b: 1 }] }", false},
        {"{ 'a.b': { $ne: 1 } }", "{ a: [{ b: 2 }, { c: 1 }] }", true},
        {"{ a: { $nin: [1, 2] } }", "{ a: [3, 2] }", false},
        {"{ a: { $nin: [/^a/] } }", "{ a: 'abc' }", false},
        {"{ a: { $nin: [/^a/] } }", "{ a: 'xbc' }", true},
    };
    RUN(t);
}

static void test_comparison(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ a: { $gt: 5 } }", "{ a: 6 }", true},
        {"{ a: { $gt: 5 } }", "{ a: 5 }", false},
        {"{ a: { $gte: 5 } }", "{ a: 5 }", true},
        {"{ a: { $gte: 5 } }", "{ a: 4 }", false},
        {"{ a: { $lt: 5 } }", "{ a: 4.5 }", true},
        {"{ a: { $lt: 5 } }", "{ a: 5 }", false},
        {"{ a: { $lte: 5 } }", "{ a: NumberLong(5) }", true},
        {"{ a: { $lte: 5 } }", "{ a: 5.5 }", false},
        {"{ a: { $gt: 5 } }", "{ a: 'hello' }", false},
        {"{ a: { $lt: 5 } }", "{ a: 'hello' }", false},
        {"{ a: { $gt: 'a' } }", "{ a: 5 }", false},
        {"{ a: { $lte: '42' } }", "{ a: 42 }", false},
        {"{ a: { $gt: 5 } }", "{}", false},
        {"{ a: { $lt: 5 } }", "{}", false},
        {"{ a: { $gt: 5 } }", "{ a: null }", false},
        {"{ a: { $gt: 5 } }", "{ a: true }", false},
        {"{ a: { $gt: 10, $lt: 20 } }", "{ a: [5, 25] }", true},
        {"{ a: { $gt: 10, $lt: 20 } }", "{ a: [5, 6] }", false},
        {"{ a: { $gt: 10, $lt: 20 } }", "{ a: 15 }", true},
        {"{ age: { $gte: 30, $lt: 40 } }", "{ age: 40 }", false},
        {"{ a: { $gt: MinKey } }", "{ a: 'x' }", true},
        {"{ a: { $gt: MinKey } }", "{ a: null }", true},
        {"{ a: { $gte: MinKey } }", "{}", true},
        {"{ a: { $gt: MinKey } }", "{ a: MinKey }", false},
        {"{ a: { $lt: MaxKey } }", "{ a: { b: 1 } }", true},
        {"{ a: { $lte: MaxKey } }", "{ a: MaxKey }", true},
        {"{ a: { $lt: MaxKey } }", "{ a: MaxKey }", false},
        {"{ a: { $gt: MaxKey } }", "{ a: 5 }", false},
        {"{ a: { $lt: MinKey } }", "{ a: 5 }", false},
        {"{ a: { $eq: MinKey } }", "{ a: MinKey }", true},
        {"{ a: { $eq: MinKey } }", "{ a: 1 }", false},
        {"{ a: { $gt: NaN } }", "{ a: 5 }", false},
        {"{ a: { $lt: NaN } }", "{ a: 5 }", false},
        {"{ a: { $gte: NaN } }", "{ a: NaN }", true},
        {"{ a: { $lte: NaN } }", "{ a: NaN }", true},
        {"{ a: { $gt: NaN } }", "{ a: NaN }", false},
        {"{ a: { $lt: 5 } }", "{ a: NaN }", false},
        {"{ a: { $gt: -Infinity } }", "{ a: NaN }", false},
        {"{ a: { $gt: -Infinity } }", "{ a: -1e308 }", true},
        {"{ a: { $lt: Infinity } }", "{ a: NumberLong('9223372036854775807') }", true},
        {"{ a: { $gt: 1 } }", "{ a: NumberDecimal('1.5') }", true},
        {"{ a: { $lt: NumberDecimal('2.5') } }", "{ a: 2 }", true},
        {"{ a: { $gt: 9007199254740992 } }", "{ a: NumberLong('9007199254740993') }", true},
        {"{ a: { $gt: 9007199254740992.0 } }", "{ a: NumberLong('9007199254740993') }", true},
        {"{ a: { $gt: 'abc' } }", "{ a: 'abd' }", true},
        {"{ a: { $gt: 'abc' } }", "{ a: 'ab' }", false},
        {"{ a: { $gt: 'abc' } }", "{ a: { $symbol: 'abd' } }", true},
        {"{ a: { $gt: ISODate('2020-01-01') } }", "{ a: ISODate('2021-01-01') }", true},
        {"{ a: { $gt: ISODate('2020-01-01') } }", "{ a: Timestamp(1, 1) }", false},
        {"{ a: { $gt: ISODate('2020-01-01') } }", "{ a: 1e15 }", false},
        {"{ a: { $lt: [2] } }", "{ a: [1] }", true},
        {"{ a: { $gt: { x: 1 } } }", "{ a: { x: 2 } }", true},
        {"{ a: { $gt: { x: 1 } } }", "{ a: [1] }", false},
        {"{ a: { $gt: true } }", "{ a: false }", false},
        {"{ a: { $gte: false } }", "{ a: true }", true},
        {"{ a: { $lt: ObjectId('ffffffffffffffffffffffff') } }",
         "{ a: ObjectId('000000000000000000000000') }", true},
        {"{ a: { $gt: 3 } }", "{ a: [1, 2, [4]] }", false},
        {"{ a: { $gte: [4] } }", "{ a: [1, 2, [4]] }", true},
    };
    RUN(t);
}

static void test_in(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ a: { $in: [1, 2, 3] } }", "{ a: 2 }", true},
        {"{ a: { $in: [1, 2, 3] } }", "{ a: 4 }", false},
        {"{ a: { $in: [1, 2, 3] } }", "{ a: [4, 3] }", true},
        {"{ a: { $in: [1, 2, 3] } }", "{}", false},
        {"{ a: { $in: [[1, 2]] } }", "{ a: [1, 2] }", true},
        {"{ a: { $in: [/^ab/, 'z'] } }", "{ a: 'abc' }", true},
        {"{ a: { $in: [/^ab/i, 'z'] } }", "{ a: 'ABc' }", true},
        {"{ a: { $in: [/^ab/, 'z'] } }", "{ a: 'z' }", true},
        {"{ a: { $in: [/^ab/, 'z'] } }", "{ a: 'y' }", false},
        {"{ a: { $in: [1.0, 'x'] } }", "{ a: NumberLong(1) }", true},
        {"{ a: { $in: ['x', 1.0] } }", "{ a: NumberDecimal('1.00') }", true},
        {"{ a: { $in: [NaN] } }", "{ a: NaN }", true},
        {"{ a: { $in: [{ b: 1 }] } }", "{ a: { b: 1 } }", true},
        {"{ a: { $in: [{ b: 1 }] } }", "{ a: [{ b: 1 }] }", true},
        {"{ a: { $in: [{ $ref: 'c', $id: 1 }] } }", "{ a: { $ref: 'c', $id: 1 } }", true},
        {"{ a: { $in: [true, 'b', null, 3, ObjectId('000000000000000000000001')] } }",
         "{ a: ObjectId('000000000000000000000001') }", true},
        {"{ a: { $in: [true, 'b', 3] } }", "{ a: false }", false},
        {"{ name: { $in: ['Jean-Luc Picard', 'Will Riker'] } }", "{ name: 'Will Riker' }", true},
    };
    RUN(t);
}

static void test_in_large(void **state)
{
    (void)state;
    /* a large $in list is kept sorted and searched by bisection */
    size_t cap = 16 * 1024;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, cap, "{ a: { $in: [");
    for (int i = 999; i >= 0; i--) n += (size_t)snprintf(text + n, cap - n, "%d, ", i * 3);
    snprintf(text + n, cap - n, "'x'] } }");
    bson_t *f = tu_bson(text);
    free(text);
    mk_matcher_t *m = mk_matcher_compile(f, NULL);
    assert_non_null(m);
    for (int v = -1; v < 3001; v++) {
        char doc[64];
        snprintf(doc, sizeof doc, "{ a: %d }", v);
        bson_t *d = tu_bson(doc);
        bool expect = v >= 0 && v % 3 == 0 && v < 3000;
        if (mk_matcher_match(m, d, NULL) != expect) fail_msg("$in large: value %d", v);
        bson_destroy(d);
    }
    bson_t *d = tu_bson("{ a: [7, 'x'] }");
    assert_true(mk_matcher_match(m, d, NULL));
    bson_destroy(d);
    d = tu_bson("{ a: 300.0 }");
    assert_true(mk_matcher_match(m, d, NULL));
    bson_destroy(d);
    mk_matcher_destroy(m);
    bson_destroy(f);
}

static void test_exists_type(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ a: { $exists: true } }", "{ a: 1 }", true},
        {"{ a: { $exists: true } }", "{}", false},
        {"{ a: { $exists: false } }", "{}", true},
        {"{ a: { $exists: false } }", "{ a: 1 }", false},
        {"{ a: { $exists: 1 } }", "{ a: 0 }", true},
        {"{ a: { $exists: 0 } }", "{ a: 0 }", false},
        {"{ a: { $exists: 'yes' } }", "{}", false},
        {"{ a: { $exists: null } }", "{}", true},
        {"{ a: { $exists: true } }", "{ a: [] }", true},
        {"{ a: { $exists: true } }", "{ a: undefined }", true},
        {"{ 'a.b': { $exists: true } }", "{ a: [{ b: 1 }] }", true},
        {"{ 'a.b': { $exists: true } }", "{ a: [{ c: 1 }] }", false},
        {"{ 'a.b': { $exists: false } }", "{ a: [{ c: 1 }, { b: 2 }] }", false},
        {"{ 'a.b': { $exists: false } }", "{ a: [1, 2] }", true},
        {"{ 'a.b': { $exists: true } }", "{ a: { b: null } }", true},
        {"{ a: { $type: 'number' } }", "{ a: 1 }", true},
        {"{ a: { $type: 'number' } }", "{ a: NumberDecimal('1') }", true},
        {"{ a: { $type: 'number' } }", "{ a: NumberLong(1) }", true},
        {"{ a: { $type: 'number' } }", "{ a: 1.5 }", true},
        {"{ a: { $type: 'number' } }", "{ a: '1' }", false},
        {"{ a: { $type: 'int' } }", "{ a: 29 }", true},
        {"{ a: { $type: 'int' } }", "{ a: 29.5 }", false},
        {"{ a: { $type: 'double' } }", "{ a: 29.5 }", true},
        {"{ a: { $type: 1 } }", "{ a: 29.5 }", true},
        {"{ a: { $type: 2 } }", "{ a: 'x' }", true},
        {"{ a: { $type: 2.0 } }", "{ a: 'x' }", true},
        {"{ a: { $type: NumberLong(16) } }", "{ a: 3 }", true},
        {"{ a: { $type: 'string' } }", "{}", false},
        {"{ a: { $type: ['string', 'int'] } }", "{ a: 5 }", true},
        {"{ a: { $type: ['string', 'bool'] } }", "{ a: 5 }", false},
        {"{ a: { $type: [2, 'number'] } }", "{ a: 5 }", true},
        {"{ a: { $type: 'array' } }", "{ a: [] }", true},
        {"{ a: { $type: 'array' } }", "{ a: [1] }", true},
        {"{ a: { $type: 'array' } }", "{ a: 1 }", false},
        {"{ a: { $type: 4 } }", "{ a: [[1]] }", true},
        {"{ a: { $type: 'string' } }", "{ a: [1, 'x'] }", true},
        {"{ a: { $type: 'object' } }", "{ a: {} }", true},
        {"{ a: { $type: 'object' } }", "{ a: [{}] }", true},
        {"{ a: { $type: 'minKey' } }", "{ a: MinKey }", true},
        {"{ a: { $type: 127 } }", "{ a: MaxKey }", true},
        {"{ a: { $type: -1 } }", "{ a: MinKey }", true},
        {"{ a: { $type: -1 } }", "{ a: MaxKey }", false},
        {"{ a: { $type: 'undefined' } }", "{ a: undefined }", true},
        {"{ a: { $type: 'long' } }", "{ a: NumberLong(1) }", true},
        {"{ a: { $type: 'decimal' } }", "{ a: NumberDecimal('1') }", true},
        {"{ a: { $type: 'date' } }", "{ a: ISODate('2020-01-01') }", true},
        {"{ a: { $type: 'objectId' } }", "{ a: ObjectId('5f1d7a3b9c1e4a0012345678') }", true},
        {"{ a: { $type: 'regex' } }", "{ a: /x/ }", true},
        {"{ a: { $type: 'bool' } }", "{ a: false }", true},
        {"{ a: { $type: 'timestamp' } }", "{ a: Timestamp(1, 2) }", true},
        {"{ a: { $type: 'binData' } }", "{ a: BinData(0, 'AQID') }", true},
        {"{ a: { $type: 'symbol' } }", "{ a: { $symbol: 'x' } }", true},
        {"{ a: { $type: 'string' } }", "{ a: { $symbol: 'x' } }", false},
        {"{ a: { $type: 'javascript' } }", "{ a: { $code: 'f()' } }", true},
        {"{ a: { $not: { $type: 'string' } } }", "{}", true},
        {"{ a: { $not: { $type: 'string' } } }", "{ a: 29 }", true},
        {"{ a: { $not: { $type: 'string' } } }", "{ a: 'x' }", false},
    };
    RUN(t);
}

static void test_regex(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ name: /^a/i }", "{ name: 'Alice' }", true},
        {"{ name: /^a/ }", "{ name: 'Alice' }", false},
        {"{ name: { $regex: 'picard', $options: 'i' } }", "{ name: 'Jean-Luc Picard' }", true},
        {"{ name: { $regex: /picard/i } }", "{ name: 'Jean-Luc Picard' }", true},
        {"{ name: { $regex: /picard/, $options: 'i' } }", "{ name: 'Jean-Luc Picard' }", true},
        {"{ name: { $options: 'i', $regex: 'picard' } }", "{ name: 'Jean-Luc Picard' }", true},
        {"{ name: { $regex: 'picard' } }", "{ name: 'Jean-Luc Picard' }", false},
        {"{ name: /x/ }", "{ name: ['a', 'xyz'] }", true},
        {"{ name: /x/ }", "{ name: ['a', 'b'] }", false},
        {"{ name: /x/ }", "{ name: 5 }", false},
        {"{ name: /x/ }", "{}", false},
        {"{ name: /x/ }", "{ name: null }", false},
        {"{ name: /x/ }", "{ name: { x: 'x' } }", false},
        {"{ name: /x/ }", "{ name: { $symbol: 'axb' } }", true},
        {"{ name: /x/ }", "{ name: /x/ }", true},
        {"{ name: /x/i }", "{ name: /x/ }", false},
        {"{ name: /^a.c$/ }", "{ name: 'a\\nc' }", false},
        {"{ name: { $regex: '^a.c$', $options: 's' } }", "{ name: 'a\\nc' }", true},
        {"{ name: { $regex: '^b', $options: 'm' } }", "{ name: 'a\\nb' }", true},
        {"{ name: { $regex: '^b' } }", "{ name: 'a\\nb' }", false},
        {"{ name: { $regex: 'a b # comment', $options: 'x' } }", "{ name: 'ab' }", true},
        {"{ name: { $regex: 'a', $options: 'u' } }", "{ name: 'ab' }", true},
        {"{ name: /^\xc3\xa9/i }",
         "{ name: '\xc3\x89"
         "cole' }",
         true},
        {"{ name: /^.$/ }", "{ name: '\xc3\xa9' }", true},
        {"{ name: { $regex: 'a', $ne: 'abc' } }", "{ name: 'abc' }", false},
        {"{ name: { $regex: 'a', $ne: 'abc' } }", "{ name: 'xa' }", true},
        {"{ name: { $not: /^a/ } }", "{ name: 'abc' }", false},
        {"{ name: { $not: /^a/ } }", "{ name: 'b' }", true},
        {"{ name: { $not: /^a/ } }", "{}", true},
        {"{ name: { $not: /^a/ } }", "{ name: ['b', 'ab'] }", false},
        {"{ name: { $not: { $regex: '^a' } } }", "{ name: 'b' }", true},
        {"{ 'a.b': /x/ }", "{ a: [{ b: 'x' }] }", true},
        {"{ a: /^$/ }", "{ a: '' }", true},
        {"{ a: /b/ }", "{ a: 'a\\u0000b' }", true},
    };
    RUN(t);
}

static void test_mod_bits(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ a: { $mod: [4, 0] } }", "{ a: 8 }", true},
        {"{ a: { $mod: [4, 0] } }", "{ a: 9 }", false},
        {"{ a: { $mod: [4, 1] } }", "{ a: 9.9 }", true},
        {"{ a: { $mod: [4.5, 0] } }", "{ a: 8 }", true},
        {"{ a: { $mod: [4, 0.9] } }", "{ a: 8 }", true},
        {"{ a: { $mod: [3, -2] } }", "{ a: -5 }", true},
        {"{ a: { $mod: [3, 1] } }", "{ a: -5 }", false},
        {"{ a: { $mod: [4, 0] } }", "{ a: '8' }", false},
        {"{ a: { $mod: [4, 0] } }", "{}", false},
        {"{ a: { $mod: [4, 0] } }", "{ a: [1, 12] }", true},
        {"{ a: { $mod: [4, 0] } }", "{ a: NaN }", false},
        {"{ a: { $mod: [4, 0] } }", "{ a: Infinity }", false},
        {"{ a: { $mod: [4, 0] } }", "{ a: 1e300 }", false},
        {"{ a: { $mod: [-1, 0] } }", "{ a: NumberLong('-9223372036854775808') }", true},
        {"{ a: { $mod: [4, 0] } }", "{ a: NumberDecimal('8.7') }", true},
        {"{ a: { $mod: [NumberLong(10), 3] } }", "{ a: NumberLong(13) }", true},
        {"{ a: { $bitsAllSet: [1, 5] } }", "{ a: 54 }", true},
        {"{ a: { $bitsAllSet: 35 } }", "{ a: 54 }", false},
        {"{ a: { $bitsAllSet: 34 } }", "{ a: 54 }", true},
        {"{ a: { $bitsAllClear: [0, 3] } }", "{ a: 54 }", true},
        {"{ a: { $bitsAllClear: [0, 1] } }", "{ a: 54 }", false},
        {"{ a: { $bitsAnySet: [0, 1] } }", "{ a: 54 }", true},
        {"{ a: { $bitsAnySet: [0, 3] } }", "{ a: 54 }", false},
        {"{ a: { $bitsAnyClear: [1, 2] } }", "{ a: 54 }", false},
        {"{ a: { $bitsAnyClear: [0, 2] } }", "{ a: 54 }", true},
        {"{ a: { $bitsAllSet: [100] } }", "{ a: -1 }", true},
        {"{ a: { $bitsAllSet: [100] } }", "{ a: 1 }", false},
        {"{ a: { $bitsAllSet: [0] } }", "{ a: 1.5 }", false},
        {"{ a: { $bitsAllSet: [0] } }", "{ a: 1.0 }", true},
        {"{ a: { $bitsAllSet: [0] } }", "{ a: 'x' }", false},
        {"{ a: { $bitsAllSet: [0] } }", "{}", false},
        {"{ a: { $bitsAllSet: BinData(0, 'AQ==') } }", "{ a: 1 }", true},
        {"{ a: { $bitsAnySet: [8] } }", "{ a: BinData(0, 'AAE=') }", true},
        {"{ a: { $bitsAnySet: [16] } }", "{ a: BinData(0, 'AAE=') }", false},
        {"{ a: { $bitsAllClear: [] } }", "{ a: 5 }", true},
        {"{ a: { $bitsAnySet: [] } }", "{ a: 5 }", false},
        {"{ a: { $bitsAllSet: 5 } }", "{ a: [1, 7] }", true},
        {"{ a: { $bitsAllSet: 0 } }", "{ a: 0 }", true},
    };
    RUN(t);
}

static void test_all_size(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ a: { $all: [1, 2] } }", "{ a: [2, 3, 1] }", true},
        {"{ a: { $all: [1, 2] } }", "{ a: [2, 3] }", false},
        {"{ a: { $all: [5] } }", "{ a: 5 }", true},
        {"{ a: { $all: [5] } }", "{}", false},
        {"{ a: { $all: [] } }", "{ a: [] }", false},
        {"{ a: { $all: [] } }", "{ a: [1] }", false},
        {"{ a: { $all: [[1, 2]] } }", "{ a: [1, 2] }", true},
        {"{ a: { $all: [[1, 2]] } }", "{ a: [[1, 2], 3] }", true},
        {"{ a: { $all: [/^x/, 'b'] } }", "{ a: ['xy', 'b'] }", true},
        {"{ a: { $all: [/^x/, 'b'] } }", "{ a: ['y', 'b'] }", false},
        {"{ a: { $all: [{ b: 1 }] } }", "{ a: [{ b: 1 }] }", true},
        {"{ a: { $all: [{ $foo: 1 }] } }", "{ a: [{ $foo: 1 }] }", true},
        {"{ 'comments.user': { $all: ['wriker', 'jpicard'] } }",
         "{ comments: [{ user: 'wriker' }, { user: 'jpicard' }] }", true},
        {"{ 'comments.user': { $all: ['wriker', 'jpicard'] } }",
         "{ comments: [{ user: 'jpicard' }] }", false},
        {"{ a: { $all: [{ $elemMatch: { x: 1 } }, { $elemMatch: { y: 2 } }] } }",
         "{ a: [{ x: 1 }, { y: 2 }] }", true},
        {"{ a: { $all: [{ $elemMatch: { x: 1 } }, { $elemMatch: { y: 2 } }] } }",
         "{ a: [{ x: 1 }] }", false},
        {"{ a: { $all: [{ $elemMatch: { $gt: 5 } }] } }", "{ a: [1, 6] }", true},
        {"{ a: { $all: [{ $elemMatch: { $gt: 5 } }] } }", "{ a: [1, 2] }", false},
        {"{ a: { $size: 2 } }", "{ a: [1, 2] }", true},
        {"{ a: { $size: 2 } }", "{ a: [1] }", false},
        {"{ a: { $size: 0 } }", "{ a: [] }", true},
        {"{ a: { $size: 0 } }", "{}", false},
        {"{ a: { $size: 1 } }", "{ a: 'x' }", false},
        {"{ a: { $size: 1 } }", "{ a: [[5, 5]] }", true},
        {"{ a: { $size: 2 } }", "{ a: [[5, 5]] }", false},
        {"{ 'a.b': { $size: 2 } }", "{ a: [{ b: [1, 2] }] }", true},
        {"{ 'a.b': { $size: 2 } }", "{ a: [{ b: [1] }, { b: [1, 2] }] }", true},
        {"{ a: { $size: 2.0 } }", "{ a: [1, 2] }", true},
        {"{ a: { $size: NumberLong(2) } }", "{ a: [1, 2] }", true},
        {"{ a: { $not: { $size: 0 } } }", "{ a: [1] }", true},
        {"{ a: { $not: { $size: 0 } } }", "{}", true},
        {"{ a: { $not: { $size: 0 } } }", "{ a: [] }", false},
        {"{ comments: { $size: 2 } }", "{ comments: [{ user: 'wriker' }, { user: 'jpicard' }] }",
         true},
    };
    RUN(t);
}

static void test_elem_match(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ results: { $elemMatch: { $gte: 80, $lt: 85 } } }", "{ results: [82, 85, 88] }", true},
        {"{ results: { $elemMatch: { $gte: 80, $lt: 85 } } }", "{ results: [75, 88, 89] }", false},
        {"{ a: { $elemMatch: { $gt: 10, $lt: 20 } } }", "{ a: [5, 25] }", false},
        {"{ a: { $elemMatch: { $gt: 10, $lt: 20 } } }", "{ a: [5, 15] }", true},
        {"{ results: { $elemMatch: { product: 'xyz', score: { $gte: 8 } } } }",
         "{ results: [{ product: 'abc', score: 10 }, { product: 'xyz', score: 5 }] }", false},
        {"{ results: { $elemMatch: { product: 'xyz', score: { $gte: 8 } } } }",
         "{ results: [{ product: 'abc', score: 10 }, { product: 'xyz', score: 9 }] }", true},
        {"{ comments: { $elemMatch: { user: 'jpicard', text: 'Make it so!' } } }",
         "{ comments: [{ user: 'wriker', text: 'Make it so!' }, { user: 'jpicard', text: 'no' }] "
         "}",
         false},
        {"{ comments: { $elemMatch: { user: 'jpicard', text: 'Make it so!' } } }",
         "{ comments: [{ user: 'jpicard', text: 'Make it so!' }] }", true},
        {"{ a: { $elemMatch: { b: 1 } } }", "{ a: { b: 1 } }", false},
        {"{ a: { $elemMatch: { $eq: 5 } } }", "{ a: 5 }", false},
        {"{ a: { $elemMatch: { $eq: 5 } } }", "{ a: [[5]] }", false},
        {"{ a: { $elemMatch: { $eq: [5] } } }", "{ a: [[5]] }", true},
        {"{ a: { $elemMatch: { $or: [{ b: 1 }, { c: 1 }] } } }", "{ a: [{ c: 1 }] }", true},
        {"{ a: { $elemMatch: { $or: [{ b: 1 }, { c: 1 }] } } }", "{ a: [{ d: 1 }] }", false},
        {"{ a: { $elemMatch: { b: { $elemMatch: { c: 1 } } } } }", "{ a: [{ b: [{ c: 1 }] }] }",
         true},
        {"{ a: { $elemMatch: { $elemMatch: { $gt: 1 } } } }", "{ a: [[0, 2]] }", true},
        {"{ a: { $elemMatch: { $elemMatch: { $gt: 1 } } } }", "{ a: [[0, 1]] }", false},
        {"{ 'a.b': { $elemMatch: { $gt: 1 } } }", "{ a: [{ b: [0, 2] }] }", true},
        {"{ a: { $elemMatch: {} } }", "{ a: [{ x: 1 }] }", true},
        {"{ a: { $elemMatch: {} } }", "{ a: [1] }", false},
        {"{ a: { $elemMatch: { '0': 1 } } }", "{ a: [[1, 2]] }", true},
        {"{ a: { $elemMatch: { $ne: 1 } } }", "{ a: [1, 1] }", false},
        {"{ a: { $elemMatch: { $ne: 1 } } }", "{ a: [1, 2] }", true},
        {"{ a: { $elemMatch: { $not: { $gt: 5 } } } }", "{ a: [7, 3] }", true},
        {"{ a: { $elemMatch: { $not: { $gt: 5 } } } }", "{ a: [7, 8] }", false},
        {"{ a: { $elemMatch: { $in: [1, 2] } } }", "{ a: [3, 2] }", true},
        {"{ a: { $elemMatch: { $nin: [1, 2] } } }", "{ a: [1, 2] }", false},
        {"{ a: { $elemMatch: { $exists: true } } }", "{ a: [] }", false},
        {"{ a: { $elemMatch: { $exists: true } } }", "{ a: [1] }", true},
        {"{ a: { $elemMatch: { $type: 'string' } } }", "{ a: [1, 'x'] }", true},
        {"{ a: { $elemMatch: { $regex: '^x' } } }", "{ a: ['ax', 'xa'] }", true},
        {"{ a: { $elemMatch: { $regex: '^x' } } }", "{ a: ['ax', 'ya'] }", false},
        {"{ a: { $elemMatch: { $size: 1 } } }", "{ a: [[1], 2] }", true},
        {"{ a: { $elemMatch: { $all: [] } } }", "{ a: [1] }", false},
        /* operators inside $elemMatch see each element as one value: no traversal */
        {"{ a: { $elemMatch: { $all: [1, 2] } } }", "{ a: [[1, 2]] }", false},
        {"{ a: { $elemMatch: { $all: [[1, 2]] } } }", "{ a: [[1, 2]] }", true},
        {"{ a: { $elemMatch: { $mod: [2, 0] } } }", "{ a: [1, 4] }", true},
        {"{ a: { $elemMatch: { b: 1, c: 2 } } }", "{ a: [{ b: 1 }, { c: 2 }] }", false},
        {"{ a: { $elemMatch: { b: 1, c: 2 } } }", "{ a: [{ b: 1, c: 2 }] }", true},
        {"{ a: { $elemMatch: { 'b.c': 1 } } }", "{ a: [{ b: [{ c: 1 }] }] }", true},
        {"{ a: { $elemMatch: { $ref: 'x' } } }", "{ a: [{ $ref: 'x' }] }", true},
    };
    RUN(t);
}

static void test_logical(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{}", "{ anything: 1 }", true},
        {"{}", "{}", true},
        {"{ $and: [{ a: 1 }, { b: 2 }] }", "{ a: 1, b: 2 }", true},
        {"{ $and: [{ a: 1 }, { b: 2 }] }", "{ a: 1, b: 3 }", false},
        {"{ $and: [{ a: { $gt: 0 } }, { a: { $lt: 2 } }] }", "{ a: 1 }", true},
        {"{ $or: [{ a: 1 }, { b: 2 }] }", "{ a: 0, b: 2 }", true},
        {"{ $or: [{ a: 1 }, { b: 2 }] }", "{}", false},
        {"{ $or: [{ a: null }] }", "{}", true},
        {"{ $nor: [{ a: 1 }, { b: 2 }] }", "{}", true},
        {"{ $nor: [{ a: 1 }, { b: 2 }] }", "{ a: 1 }", false},
        {"{ $nor: [{ a: { $exists: false } }] }", "{ a: null }", true},
        {"{ a: 1, $or: [{ b: 1 }, { c: 1 }] }", "{ a: 1, c: 1 }", true},
        {"{ a: 1, $or: [{ b: 1 }, { c: 1 }] }", "{ a: 2, c: 1 }", false},
        {"{ $or: [{ $and: [{ a: 1 }, { b: 1 }] }, { c: 1 }] }", "{ a: 1, b: 1 }", true},
        {"{ $or: [{ $and: [{ a: 1 }, { b: 1 }] }, { c: 1 }] }", "{ a: 1 }", false},
        {"{ a: { $not: { $gt: 5 } } }", "{ a: 3 }", true},
        {"{ a: { $not: { $gt: 5 } } }", "{ a: 7 }", false},
        {"{ a: { $not: { $gt: 5 } } }", "{}", true},
        {"{ a: { $not: { $gt: 5 } } }", "{ a: 'x' }", true},
        {"{ a: { $not: { $gt: 5 } } }", "{ a: [3, 7] }", false},
        {"{ a: { $not: { $gt: 5, $lt: 10 } } }", "{ a: 7 }", false},
        {"{ a: { $not: { $gt: 5, $lt: 10 } } }", "{ a: 12 }", true},
        {"{ a: { $not: { $eq: null } } }", "{}", false},
        {"{ a: { $not: { $elemMatch: { $gt: 1 } } } }", "{ a: [0, 1] }", true},
        {"{ a: { $not: { $not: { $gt: 1 } } } }", "{ a: 2 }", true},
        {"{ $comment: 'hi', a: 1 }", "{ a: 1 }", true},
        {"{ $comment: 'hi', a: 1 }", "{ a: 2 }", false},
        {"{ $alwaysTrue: 1 }", "{}", true},
        {"{ $alwaysFalse: 1 }", "{}", false},
        {"{ $and: [{ $or: [{ a: 1 }, { a: 2 }] }, { $nor: [{ b: 1 }] }] }", "{ a: 2, b: 2 }", true},
        {"{ $and: [{ $or: [{ a: 1 }, { a: 2 }] }, { $nor: [{ b: 1 }] }] }", "{ a: 2, b: 1 }",
         false},
        {"{ $id: 1 }", "{ $id: 1 }", true},
    };
    RUN(t);
}

static void test_expr(void **state)
{
    (void)state;
    static const mcase_t t[] = {
        {"{ $expr: { $gt: ['$a', '$b'] } }", "{ a: 5, b: 3 }", true},
        {"{ $expr: { $gt: ['$a', '$b'] } }", "{ a: 1, b: 3 }", false},
        {"{ $expr: { $eq: ['$a', null] } }", "{}", false},
        {"{ $expr: { $eq: ['$a', null] } }", "{ a: null }", true},
        {"{ $expr: { $lt: ['$a', null] } }", "{}", true},
        {"{ $expr: '$a' }", "{ a: 0 }", false},
        {"{ $expr: '$a' }", "{ a: 1 }", true},
        {"{ $expr: '$a' }", "{}", false},
        {"{ $expr: '$a' }", "{ a: [] }", true},
        {"{ $expr: '$a' }", "{ a: null }", false},
        {"{ $expr: '$a' }", "{ a: '' }", true},
        {"{ $expr: true }", "{}", true},
        {"{ $expr: 0 }", "{}", false},
        {"{ $expr: { $lt: ['$a', 5] } }", "{ a: 'x' }", false},
        {"{ $expr: { $gt: ['$a', 5] } }", "{ a: 'x' }", true},
        {"{ $expr: { $eq: ['$a', 5] } }", "{ a: [5] }", false},
        {"{ $expr: { $eq: ['$a.b', [1, 2]] } }", "{ a: [{ b: 1 }, { b: 2 }] }", true},
        {"{ $expr: { $gt: [{ $size: '$a' }, 1] } }", "{ a: [1, 2] }", true},
        {"{ $expr: { $eq: [{ $add: ['$a', 1] }, 3] } }", "{ a: 2 }", true},
        {"{ $or: [{ $expr: { $eq: ['$a', 1] } }, { b: 1 }] }", "{ a: 1 }", true},
        {"{ $or: [{ $expr: { $eq: ['$a', 1] } }, { b: 1 }] }", "{ b: 1 }", true},
        {"{ $or: [{ $expr: { $eq: ['$a', 1] } }, { b: 1 }] }", "{ b: 2 }", false},
        {"{ $expr: { $in: ['$a', [1, 2]] } }", "{ a: 2 }", true},
        {"{ $expr: { $cond: { if: '$a', then: true, else: false } } }", "{ a: 1 }", true},
        {"{ $expr: { $cond: ['$a', false, true] } }", "{ a: 1 }", false},
        {"{ a: 1, $expr: { $eq: ['$$ROOT.a', 1] } }", "{ a: 1 }", true},
        {"{ $expr: { $and: ['$a', { $not: '$b' }] } }", "{ a: 1, b: 0 }", true},
    };
    RUN(t);
}

/* ------------------------------------------------------------------------------------------ */

typedef struct ecase {
    const char *filter;
    int code;
    const char *message; /* prefix of the message */
} ecase_t;

static void test_errors(void **state)
{
    (void)state;
    static const ecase_t t[] = {
        {"{ a: { $foo: 1 } }", 2, "unknown operator: $foo"},
        {"{ a: { $eq: 1, $foo: 1 } }", 2, "unknown operator: $foo"},
        {"{ $foo: 1 }", 2, "unknown top level operator: $foo"},
        {"{ a: { $gt: 1, b: 2 } }", 2, "unknown operator: b"},
        {"{ a: { $in: 5 } }", 2, "$in needs an array"},
        {"{ a: { $nin: 5 } }", 2, "$nin needs an array"},
        {"{ a: { $in: [{ $gt: 1 }] } }", 2, "cannot nest $ under $in"},
        {"{ a: { $in: [undefined] } }", 2, "InMatchExpression equality cannot be undefined"},
        {"{ a: { $all: 5 } }", 2, "$all needs an array"},
        {"{ a: { $all: [{ $elemMatch: { b: 1 } }, 5] } }", 2,
         "$all/$elemMatch has to be consistent"},
        {"{ a: { $all: [{ $elemMatch: { b: 1 } }, { b: 1 }] } }", 2,
         "$all/$elemMatch has to be consistent"},
        {"{ a: { $all: [{ $gt: 1 }] } }", 2, "no $ expressions in $all"},
        {"{ a: { $elemMatch: 5 } }", 2, "$elemMatch needs an Object"},
        {"{ a: { $elemMatch: { $foo: 1 } } }", 2, "unknown operator: $foo"},
        {"{ a: { $size: -1 } }", 2, "$size may not be negative"},
        {"{ a: { $size: 1.5 } }", 2, "$size must be a whole number"},
        {"{ a: { $size: 'x' } }", 2, "$size needs a number"},
        {"{ a: { $size: NumberLong('4294967296') } }", 2,
         "$size must be representable as a 32-bit integer"},
        {"{ a: { $mod: [0, 1] } }", 2, "divisor cannot be 0"},
        {"{ a: { $mod: [0.5, 1] } }", 2, "divisor cannot be 0"},
        {"{ a: { $mod: 5 } }", 2, "malformed mod, needs to be an array"},
        {"{ a: { $mod: [] } }", 2, "malformed mod, not enough elements"},
        {"{ a: { $mod: [1] } }", 2, "malformed mod, not enough elements"},
        {"{ a: { $mod: [1, 2, 3] } }", 2, "malformed mod, too many elements"},
        {"{ a: { $mod: ['a', 1] } }", 2, "malformed mod, divisor not a number"},
        {"{ a: { $mod: [1, 'a'] } }", 2, "malformed mod, remainder not a number"},
        {"{ a: { $mod: [NaN, 1] } }", 2, "malformed mod, divisor value is invalid"},
        {"{ a: { $mod: [1, Infinity] } }", 2, "malformed mod, remainder value is invalid"},
        {"{ a: { $mod: [1e300, 1] } }", 2, "malformed mod, divisor value is invalid"},
        {"{ a: { $bitsAllSet: 1e300 } }", 9,
         "Cannot represent as a 64-bit integer: $bitsAllSet: 1e+300"},
        {"{ a: { $bitsAllSet: [3e9] } }", 2,
         "bit positions cannot be represented as a 32-bit signed integer: 3000000000.0"},
        {"{ a: { $not: 5 } }", 2, "$not needs a regex or a document"},
        {"{ a: { $not: {} } }", 2, "$not cannot be empty"},
        {"{ a: { $not: { b: 1 } } }", 2, "unknown operator: b"},
        {"{ $and: [] }", 2, "$and/$or/$nor must be a nonempty array"},
        {"{ $or: [] }", 2, "$and/$or/$nor must be a nonempty array"},
        {"{ $nor: [] }", 2, "$and/$or/$nor must be a nonempty array"},
        {"{ $and: 5 }", 2, "$and must be an array"},
        {"{ $or: { a: 1 } }", 2, "$or must be an array"},
        {"{ $or: [5] }", 2, "$or/$and/$nor entries need to be full objects"},
        {"{ $or: [{ a: { $foo: 1 } }] }", 2, "unknown operator: $foo"},
        {"{ a: { $type: 'foo' } }", 2, "Unknown type name alias: foo"},
        {"{ a: { $type: 99 } }", 2, "Invalid numerical type code: 99"},
        {"{ a: { $type: 0 } }", 2, "Invalid numerical type code: 0"},
        {"{ a: { $type: 2.5 } }", 2, "Invalid numerical type code: 2.5"},
        {"{ a: { $type: true } }", 14, "type must be represented as a number or a string"},
        {"{ a: { $type: [] } }", 9, "$type must match at least one type"},
        {"{ a: { $type: ['int', 'nope'] } }", 2, "Unknown type name alias: nope"},
        {"{ a: { $regex: 5 } }", 2, "$regex has to be a string"},
        {"{ a: { $options: 'i' } }", 2, "$options needs a $regex"},
        {"{ a: { $regex: 'x', $options: 5 } }", 2, "$options has to be a string"},
        {"{ a: { $regex: /x/i, $options: 'm' } }", 51075,
         "options set in both $regex and $options"},
        {"{ a: { $regex: 'x', $options: 'q' } }", 51108, "invalid flag in regex options: q"},
        {"{ a: { $regex: '(' } }", 51091, "Regular expression is invalid"},
        {"{ a: { $regex: 'a\\u0000b' } }", 2, "Regular expression cannot contain an embedded null"},
        {"{ a: { $regex: 'a', $options: 'i\\u0000m' } }", 2,
         "Regular expression options string cannot contain an embedded null byte"},
        {"{ a: { $regex: 'x', $options: 'ig' } }", 51108, "invalid flag in regex options: g"},
        {"{ a: { $ne: /x/ } }", 2, "Can't have regex as arg to $ne."},
        {"{ a: { $gt: /x/ } }", 2, "Can't have RegEx as arg to predicate over field 'a'."},
        {"{ a: undefined }", 2, "cannot compare to undefined"},
        {"{ a: { $lt: undefined } }", 2, "cannot compare to undefined"},
        {"{ $where: 'this.a' }", 2, "$where is not supported yet"},
        {"{ $text: { $search: 'x' } }", 2, "$text is not supported yet"},
        {"{ a: { $near: [0, 0] } }", 2, "$near is not supported yet"},
        {"{ a: { $nearSphere: [0, 0] } }", 2, "$nearSphere is not supported yet"},
        {"{ a: { $geoWithin: {} } }", 2, "$geoWithin is not supported yet"},
        {"{ a: { $geoIntersects: {} } }", 2, "$geoIntersects is not supported yet"},
        {"{ $jsonSchema: {} }", 2, "$jsonSchema is not supported yet"},
        {"{ $sampleRate: 0.5 }", 2, "$sampleRate is not supported yet"},
        {"{ a: { $where: 'x' } }", 2, "$where cannot be applied to a field"},
        {"{ a: { $elemMatch: { $expr: { $eq: [1, 1] } } } }", 2,
         "$expr can only be applied to the top-level document"},
        {"{ a: { $elemMatch: { $text: { $search: 'x' } } } }", 2,
         "$text can only be applied to the top-level document"},
        {"{ $expr: { $foo: 1 } }", 168, "Unrecognized expression '$foo'"},
        {"{ a: { $bitsAllSet: -1 } }", 9, "Expected a positive number in: $bitsAllSet: -1"},
        {"{ a: { $bitsAllSet: 1.5 } }", 9, "Expected an integer: $bitsAllSet: 1.5"},
        {"{ a: { $bitsAnySet: NaN } }", 9, "Expected an integer, but found NaN"},
        {"{ a: { $bitsAllSet: [-1] } }", 2, "bit positions must be >= 0 but got: -1"},
        {"{ a: { $bitsAllSet: [1.5] } }", 2, "bit positions must be an integer but got: 1.5"},
        {"{ a: { $bitsAllSet: ['x'] } }", 2, "bit positions must be an integer"},
        {"{ a: { $bitsAllClear: 'x' } }", 2,
         "$bitsAllClear takes an Array, a number, or a BinData"},
        {"{ $alwaysTrue: 2 }", 9, "$alwaysTrue must be an integer value of 1"},
        {"{ $alwaysFalse: 'x' }", 9, "Expected a number in: $alwaysFalse"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        bson_t *f = tu_bson(t[i].filter);
        mk_error_t err = {0};
        mk_matcher_t *m = mk_matcher_compile(f, &err);
        if (m) {
            print_error("error case %zu: %s compiled\n", i, t[i].filter);
            failures++;
            mk_matcher_destroy(m);
        } else if (err.code != t[i].code ||
                   strncmp(err.message, t[i].message, strlen(t[i].message)) != 0) {
            print_error("error case %zu: %s: expected %d '%s', got %d '%s'\n", i, t[i].filter,
                        t[i].code, t[i].message, err.code, err.message);
            failures++;
        }
        bson_destroy(f);
    }
    assert_int_equal(failures, 0);

    /* codeNames */
    mk_error_t err = {0};
    bson_t *f = tu_bson("{ a: { $foo: 1 } }");
    assert_null(mk_matcher_compile(f, &err));
    assert_string_equal(err.kind, "BadValue");
    bson_destroy(f);
    f = tu_bson("{ $expr: { $foo: 1 } }");
    assert_null(mk_matcher_compile(f, &err));
    assert_string_equal(err.kind, "InvalidPipelineOperator");
    bson_destroy(f);
    f = tu_bson("{ a: { $regex: '(' } }");
    assert_null(mk_matcher_compile(f, &err));
    assert_string_equal(err.kind, "Location51091");
    bson_destroy(f);
    /* a NULL error pointer is allowed */
    f = tu_bson("{ a: { $foo: 1 } }");
    assert_null(mk_matcher_compile(f, NULL));
    bson_destroy(f);
}

/* { $and: [ { $and: [ ... { a: 1 } ] } ] } nested `levels` deep, built directly (the relaxed
 * JSON parser stops at depth 100). */
static void nest_and(bson_t *b, int levels)
{
    if (levels == 0) {
        BSON_APPEND_INT32(b, "a", 1);
        return;
    }
    bson_t arr, doc;
    BSON_APPEND_ARRAY_BEGIN(b, "$and", &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &doc);
    nest_and(&doc, levels - 1);
    bson_append_document_end(&arr, &doc);
    bson_append_array_end(b, &arr);
}

static void test_depth_limit(void **state)
{
    (void)state;
    /* too deep: rejected with a clear error, not a stack overflow */
    bson_t f;
    bson_init(&f);
    nest_and(&f, 150);
    mk_error_t err = {0};
    assert_null(mk_matcher_compile(&f, &err));
    assert_int_equal(err.code, 2);
    assert_non_null(strstr(err.message, "nested"));
    bson_destroy(&f);
    /* 90 levels are fine */
    bson_init(&f);
    nest_and(&f, 90);
    mk_matcher_t *m = mk_matcher_compile(&f, &err);
    assert_non_null(m);
    bson_t *d = tu_bson("{ a: 1 }");
    assert_true(mk_matcher_match(m, d, NULL));
    bson_destroy(d);
    d = tu_bson("{ a: 2 }");
    assert_false(mk_matcher_match(m, d, NULL));
    bson_destroy(d);
    mk_matcher_destroy(m);
    bson_destroy(&f);
}

/* ------------------------------------------------------------------------------------------ */

typedef struct pcase {
    const char *filter;
    const char *doc;
    bool has_position;
    uint32_t position;
} pcase_t;

static void test_positions(void **state)
{
    (void)state;
    static const pcase_t t[] = {
        {"{ grades: { $gte: 85 } }", "{ grades: [80, 85, 90] }", true, 1},
        {"{ 'items.qty': 5 }", "{ items: [{ qty: 1 }, { qty: 5 }] }", true, 1},
        {"{ items: { $elemMatch: { qty: 5 } } }", "{ items: [{ qty: 1 }, { qty: 5 }] }", true, 1},
        {"{ a: 5 }", "{ a: 5 }", false, 0},
        {"{ a: [1, 5] }", "{ a: [1, 5] }", false, 0},
        {"{ a: [1, 5] }", "{ a: [0, [1, 5]] }", true, 1},
        {"{ 'a.b': 2 }", "{ a: [{ b: [1] }, { b: [3, 2] }] }", true, 1},
        {"{ 'a.b.c': 2 }", "{ a: [{ b: [{ c: 1 }, { c: 2 }] }] }", true, 0},
        {"{ 'a.1': 5 }", "{ a: [4, 5] }", false, 0},
        {"{ 'a.b': { $elemMatch: { $gt: 1 } } }", "{ a: [{ b: [0] }, { b: [0, 2] }] }", true, 1},
        {"{ x: 1, grades: { $gt: 85 } }", "{ x: 1, grades: [80, 90] }", true, 1},
        {"{ grades: { $gt: 85 }, x: 1 }", "{ x: 1, grades: [80, 90] }", true, 1},
        {"{ $or: [{ a: 5 }, { b: 1 }] }", "{ a: [1, 5] }", false, 0},
        {"{ $and: [{ a: 5 }] }", "{ a: [1, 5] }", true, 1},
        {"{ 'a.b': null }", "{ a: [{ b: 1 }, { c: 2 }] }", true, 1},
        {"{ a: { $all: [2, 3] } }", "{ a: [1, 2, 3] }", true, 2},
        {"{ a: { $in: [7, 8] } }", "{ a: [1, 8, 7] }", true, 1},
        {"{ a: /b/ }", "{ a: ['a', 'b'] }", true, 1},
        {"{ a: { $ne: 3 } }", "{ a: [1, 2] }", false, 0},
        {"{ a: { $size: 2 } }", "{ a: [1, 2] }", false, 0},
        {"{ a: { $gte: 85 } }", "{ a: [80] }", false, 0}, /* no match: no position */
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        bson_t *f = tu_bson(t[i].filter);
        bson_t *d = tu_bson(t[i].doc);
        mk_matcher_t *m = mk_matcher_compile(f, NULL);
        assert_non_null(m);
        mk_match_details_t det = {true, 99};
        mk_matcher_match(m, d, &det);
        if (det.has_position != t[i].has_position ||
            (det.has_position && det.position != t[i].position)) {
            print_error("position case %zu: %s on %s: expected %d/%u, got %d/%u\n", i, t[i].filter,
                        t[i].doc, t[i].has_position, t[i].position, det.has_position, det.position);
            failures++;
        }
        mk_matcher_destroy(m);
        bson_destroy(f);
        bson_destroy(d);
    }
    assert_int_equal(failures, 0);
}

/* ------------------------------------------------------------------------------------------ */

typedef struct vcase {
    const char *filter;
    const char *name;
    const char *value; /* the value, written as { v: <value> } */
    bool expect;
} vcase_t;

static void test_match_value(void **state)
{
    (void)state;
    static const vcase_t t[] = {
        {"{ x: { $gte: 5 } }", "x", "{ v: 7 }", true},
        {"{ x: { $gte: 5 } }", "x", "{ v: 3 }", false},
        {"{ 'x.grade': { $gte: 85 } }", "x", "{ v: { grade: 90, mean: 1 } }", true},
        {"{ 'x.grade': { $gte: 85 } }", "x", "{ v: { grade: 80 } }", false},
        {"{ y: 1 }", "x", "{ v: 1 }", false},
        {"{ y: null }", "x", "{ v: 1 }", true},
        {"{ x: { $in: [1, 2] } }", "x", "{ v: [3, 2] }", true},
        {"{ x: { $size: 2 } }", "x", "{ v: [3, 2] }", true},
        {"{ x: { $elemMatch: { $gt: 2 } } }", "x", "{ v: [3, 2] }", true},
        {"{ 'x.0': 3 }", "x", "{ v: [3, 2] }", true},
        {"{ $expr: { $eq: ['$x', 5] } }", "x", "{ v: 5 }", true},
        {"{ $expr: { $eq: ['$x', 5] } }", "x", "{ v: 6 }", false},
        {"{}", "x", "{ v: 6 }", true},
        {"{ $or: [{ x: 1 }, { x: 6 }] }", "x", "{ v: 6 }", true},
        {"{ x: /^a/ }", "x", "{ v: 'abc' }", true},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        bson_t *f = tu_bson(t[i].filter);
        bson_t *holder = tu_bson(t[i].value);
        bson_iter_t it;
        assert_true(bson_iter_init_find(&it, holder, "v"));
        mk_matcher_t *m = mk_matcher_compile(f, NULL);
        assert_non_null(m);
        if (mk_matcher_match_value(m, t[i].name, bson_iter_value(&it)) != t[i].expect)
            fail_msg("match_value case %zu: %s with %s=%s", i, t[i].filter, t[i].name, t[i].value);
        mk_matcher_destroy(m);
        bson_destroy(f);
        bson_destroy(holder);
    }
}

static void test_is_empty_and_reuse(void **state)
{
    (void)state;
    bson_t *f = tu_bson("{}");
    mk_matcher_t *m = mk_matcher_compile(f, NULL);
    assert_true(mk_matcher_is_empty(m));
    mk_matcher_destroy(m);
    bson_destroy(f);
    f = tu_bson("{ $comment: 'only a comment' }");
    m = mk_matcher_compile(f, NULL);
    assert_true(mk_matcher_is_empty(m));
    mk_matcher_destroy(m);
    bson_destroy(f);
    f = tu_bson("{ a: 1 }");
    m = mk_matcher_compile(f, NULL);
    assert_false(mk_matcher_is_empty(m));
    /* the matcher owns a copy: the filter may go away */
    bson_destroy(f);
    bson_t *d = tu_bson("{ a: [0, 1] }");
    for (int i = 0; i < 3; i++) assert_true(mk_matcher_match(m, d, NULL));
    bson_destroy(d);
    mk_matcher_destroy(m);
    mk_matcher_destroy(NULL);

    /* a regex matcher is reusable across many documents */
    f = tu_bson("{ s: { $regex: '^item-[0-9]+$' } }");
    m = mk_matcher_compile(f, NULL);
    bson_destroy(f);
    for (int i = 0; i < 200; i++) {
        char text[64];
        snprintf(text, sizeof text, "{ s: 'item-%d%s' }", i, i % 2 ? "x" : "");
        d = tu_bson(text);
        assert_int_equal(mk_matcher_match(m, d, NULL), i % 2 == 0);
        bson_destroy(d);
    }
    mk_matcher_destroy(m);
}

static void test_regex_length_limit(void **state)
{
    (void)state;
    static char pat[32766];
    memset(pat, 'a', sizeof pat - 1);
    bson_t f;
    bson_t ops;
    bson_init(&f);
    BSON_APPEND_DOCUMENT_BEGIN(&f, "s", &ops);
    BSON_APPEND_UTF8(&ops, "$regex", pat); /* 32765 bytes: one too many */
    bson_append_document_end(&f, &ops);
    mk_error_t err = {0};
    assert_null(mk_matcher_compile(&f, &err));
    assert_string_equal(err.message, "Regular expression is too long");
    bson_destroy(&f);
    pat[sizeof pat - 2] = '\0'; /* 32764 bytes: accepted */
    bson_init(&f);
    BSON_APPEND_REGEX(&f, "s", pat, "");
    mk_matcher_t *m = mk_matcher_compile(&f, &err);
    assert_non_null(m);
    mk_matcher_destroy(m);
    bson_destroy(&f);
}

static void test_expr_runtime_error(void **state)
{
    (void)state;
    bson_t *f = tu_bson("{ $expr: { $gt: [{ $divide: ['$a', '$b'] }, 1] } }");
    mk_matcher_t *m = mk_matcher_compile(f, NULL);
    assert_non_null(m);
    bson_t *d = tu_bson("{ a: 4, b: 0 }");
    mk_error_t err = {0};
    mk_match_details_t det;
    assert_int_equal(mk_matcher_match_checked(m, d, &det, &err), MK_ERR);
    assert_int_equal(err.code, 16608);
    assert_string_equal(err.message, "can't $divide by zero");
    assert_false(det.has_position);
    assert_false(mk_matcher_match(m, d, NULL));
    bson_destroy(d);
    d = tu_bson("{ a: 4, b: 2 }");
    assert_int_equal(mk_matcher_match_checked(m, d, NULL, &err), 1);
    bson_destroy(d);
    d = tu_bson("{ a: 1, b: 2 }");
    assert_int_equal(mk_matcher_match_checked(m, d, NULL, &err), 0);
    bson_destroy(d);
    mk_matcher_destroy(m);
    bson_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equality),
        cmocka_unit_test(test_decimal_nan),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_null_and_missing),
        cmocka_unit_test(test_ne_nin),
        cmocka_unit_test(test_comparison),
        cmocka_unit_test(test_in),
        cmocka_unit_test(test_in_large),
        cmocka_unit_test(test_exists_type),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_mod_bits),
        cmocka_unit_test(test_all_size),
        cmocka_unit_test(test_elem_match),
        cmocka_unit_test(test_logical),
        cmocka_unit_test(test_expr),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_match_value),
        cmocka_unit_test(test_is_empty_and_reuse),
        cmocka_unit_test(test_regex_length_limit),
        cmocka_unit_test(test_expr_runtime_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
