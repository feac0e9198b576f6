/* Aggregation expressions: literals, field paths, operators, result types and errors. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "bson/value.h"
#include "engine/expr.h"

typedef struct xcase {
    const char *expr;   /* the expression, written as the value of { e: ... } */
    const char *doc;    /* $$ROOT */
    const char *expect; /* the result as the value of { r: ... }; NULL: missing */
    bson_type_t type;   /* expected exact type (0: any of the compared-equal types) */
} xcase_t;

/* Compiles the expression written as the value of `{ e: <text> }`. */
static mk_expr_t *compile_text(const char *text, bson_t **holder, mk_error_t *err)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "{ e: %s }", text);
    *holder = tu_bson(buf);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, *holder, "e"));
    return mk_expr_compile(bson_iter_value(&it), err);
}

static void test_eval(void **state)
{
    (void)state;
    static const xcase_t t[] = {
        /* literals and structure */
        {"5", "{}", "5", BSON_TYPE_INT32},
        {"'abc'", "{}", "'abc'", BSON_TYPE_UTF8},
        {"null", "{}", "null", BSON_TYPE_NULL},
        {"true", "{}", "true", BSON_TYPE_BOOL},
        {"{ $literal: '$a' }", "{ a: 1 }", "'$a'", BSON_TYPE_UTF8},
        {"{ $literal: { $add: 1 } }", "{}", "{ $add: 1 }", BSON_TYPE_DOCUMENT},
        {"[1, '$a']", "{ a: 2 }", "[1, 2]", BSON_TYPE_ARRAY},
        {"['$missing']", "{}", "[null]", BSON_TYPE_ARRAY},
        {"{ x: '$a', y: '$missing' }", "{ a: 2 }", "{ x: 2 }", BSON_TYPE_DOCUMENT},
        {"{ x: { y: { $add: ['$a', 1] } } }", "{ a: 2 }", "{ x: { y: 3 } }", BSON_TYPE_DOCUMENT},
        {"{}", "{ a: 1 }", "{}", BSON_TYPE_DOCUMENT},
        /* field paths */
        {"'$a'", "{ a: 5 }", "5", BSON_TYPE_INT32},
        {"'$a'", "{}", NULL, 0},
        {"'$a.b'", "{ a: { b: 3 } }", "3", 0},
        {"'$a.b'", "{ a: [{ b: 1 }, { b: 2 }] }", "[1, 2]", BSON_TYPE_ARRAY},
        {"'$a.b'", "{ a: [{ b: 1 }, { c: 2 }, 3, [{ b: 4 }]] }", "[1]", BSON_TYPE_ARRAY},
        {"'$a.b.c'", "{ a: [{ b: [{ c: 1 }, { c: 2 }] }] }", "[[1, 2]]", BSON_TYPE_ARRAY},
        {"'$a.b.c'", "{ a: [{ b: { c: 1 } }, { b: { c: 2 } }] }", "[1, 2]", BSON_TYPE_ARRAY},
        {"'$a.0'", "{ a: [1, 2] }", "[]", BSON_TYPE_ARRAY},
        {"'$a.b'", "{ a: 5 }", NULL, 0},
        {"'$a'", "{ a: [1, 2] }", "[1, 2]", BSON_TYPE_ARRAY},
        {"'$$ROOT'", "{ a: 1, b: 'x' }", "{ a: 1, b: 'x' }", BSON_TYPE_DOCUMENT},
        {"'$$ROOT.a'", "{ a: 1 }", "1", 0},
        {"'$$CURRENT.a'", "{ a: 1 }", "1", 0},
        {"'$$CURRENT'", "{ a: 1 }", "{ a: 1 }", BSON_TYPE_DOCUMENT},
        {"'$$REMOVE'", "{ a: 1 }", NULL, 0},
        {"{ x: '$$REMOVE', y: 1 }", "{}", "{ y: 1 }", BSON_TYPE_DOCUMENT},
        /* comparisons: full BSON order, no type bracketing */
        {"{ $eq: [1, 1.0] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $eq: [1, NumberDecimal('1')] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $eq: ['$missing', null] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $lt: ['$missing', null] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $eq: ['$missing', '$other'] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $eq: ['$missing', undefined] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $gt: ['a', 1] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $gt: [null, MinKey] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $lt: [[1], [2]] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $lt: [{ a: 1 }, [0]] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $cmp: [1, 2] }", "{}", "-1", BSON_TYPE_INT32},
        {"{ $cmp: ['b', 'a'] }", "{}", "1", BSON_TYPE_INT32},
        {"{ $cmp: [1, 1.0] }", "{}", "0", BSON_TYPE_INT32},
        {"{ $ne: [1, 2] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $ne: [1, 1] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $gte: [2, 2] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $lte: [3, 2] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $eq: [NaN, NaN] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $lt: [NaN, -Infinity] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $eq: [{ a: 1, b: 2 }, { b: 2, a: 1 }] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $eq: ['$a', [1, 2]] }", "{ a: [1, 2] }", "true", BSON_TYPE_BOOL},
        {"{ $gt: ['$a', '$b'] }", "{ a: 2, b: 1 }", "true", BSON_TYPE_BOOL},
        /* boolean */
        {"{ $and: [] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $or: [] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $and: [1, 'x'] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $and: [1, 0] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $and: [1, -0.0] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $and: [NumberDecimal('0')] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $or: [0, null, '$missing', undefined, false] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $or: [0, []] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $or: [NaN] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $not: [0] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $not: 1 }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $not: ['$a'] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $and: [false, { $divide: [1, 0] }] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $or: [true, { $divide: [1, 0] }] }", "{}", "true", BSON_TYPE_BOOL},
        /* arithmetic and result types */
        {"{ $add: [1, 2] }", "{}", "3", BSON_TYPE_INT32},
        {"{ $add: [1, 2.5] }", "{}", "3.5", BSON_TYPE_DOUBLE},
        {"{ $add: [NumberLong(1), 2] }", "{}", "3", BSON_TYPE_INT64},
        {"{ $add: [2147483647, 1] }", "{}", "NumberLong(2147483648)", BSON_TYPE_INT64},
        {"{ $add: [NumberLong('9223372036854775807'), 1] }", "{}", "9223372036854775808.0",
         BSON_TYPE_DOUBLE},
        {"{ $add: [] }", "{}", "0", BSON_TYPE_INT32},
        {"{ $add: [1, null] }", "{}", "null", BSON_TYPE_NULL},
        {"{ $add: [1, '$missing'] }", "{}", "null", BSON_TYPE_NULL},
        {"{ $add: ['$a', '$b', 0.5] }", "{ a: 1, b: 2 }", "3.5", BSON_TYPE_DOUBLE},
        {"{ $add: [ISODate('2020-01-01T00:00:00Z'), 1000] }", "{}",
         "ISODate('2020-01-01T00:00:01Z')", BSON_TYPE_DATE_TIME},
        {"{ $add: [1000, ISODate('2020-01-01T00:00:00Z'), 1.4] }", "{}",
         "ISODate('2020-01-01T00:00:01.001Z')", BSON_TYPE_DATE_TIME},
        {"{ $subtract: [5, 3] }", "{}", "2", BSON_TYPE_INT32},
        {"{ $subtract: [5.5, 1] }", "{}", "4.5", BSON_TYPE_DOUBLE},
        {"{ $subtract: [-2147483648, 1] }", "{}", "NumberLong(-2147483649)", BSON_TYPE_INT64},
        {"{ $subtract: [ISODate('2020-01-01T00:00:01Z'), ISODate('2020-01-01T00:00:00Z')] }", "{}",
         "NumberLong(1000)", BSON_TYPE_INT64},
        {"{ $subtract: [ISODate('2020-01-01T00:00:01Z'), 1000] }", "{}",
         "ISODate('2020-01-01T00:00:00Z')", BSON_TYPE_DATE_TIME},
        {"{ $subtract: [null, 1] }", "{}", "null", BSON_TYPE_NULL},
        {"{ $multiply: [2, 3] }", "{}", "6", BSON_TYPE_INT32},
        {"{ $multiply: [] }", "{}", "1", BSON_TYPE_INT32},
        {"{ $multiply: [2, 1.5] }", "{}", "3.0", BSON_TYPE_DOUBLE},
        {"{ $multiply: [65536, 65536] }", "{}", "NumberLong(4294967296)", BSON_TYPE_INT64},
        {"{ $multiply: [NumberLong(4294967296), NumberLong(4294967296)] }", "{}",
         "18446744073709551616.0", BSON_TYPE_DOUBLE},
        {"{ $divide: [6, 3] }", "{}", "2.0", BSON_TYPE_DOUBLE},
        {"{ $divide: [1, 4] }", "{}", "0.25", BSON_TYPE_DOUBLE},
        {"{ $divide: [null, 0] }", "{}", "null", BSON_TYPE_NULL},
        {"{ $mod: [7, 3] }", "{}", "1", BSON_TYPE_INT32},
        {"{ $mod: [-7, 3] }", "{}", "-1", BSON_TYPE_INT32},
        {"{ $mod: [7.5, 2] }", "{}", "1.5", BSON_TYPE_DOUBLE},
        {"{ $mod: [NumberLong(7), 3] }", "{}", "NumberLong(1)", BSON_TYPE_INT64},
        {"{ $mod: [NumberLong('-9223372036854775808'), -1] }", "{}", "NumberLong(0)",
         BSON_TYPE_INT64},
        {"{ $mod: ['$missing', 3] }", "{}", "null", BSON_TYPE_NULL},
        {"{ $abs: [-5] }", "{}", "5", BSON_TYPE_INT32},
        {"{ $abs: -5 }", "{}", "5", BSON_TYPE_INT32},
        {"{ $abs: [-2147483648] }", "{}", "NumberLong(2147483648)", BSON_TYPE_INT64},
        {"{ $abs: [NumberLong(-3)] }", "{}", "NumberLong(3)", BSON_TYPE_INT64},
        {"{ $abs: [-1.5] }", "{}", "1.5", BSON_TYPE_DOUBLE},
        {"{ $abs: NumberDecimal('-1.5') }", "{}", "NumberDecimal('1.5')", BSON_TYPE_DECIMAL128},
        {"{ $abs: [null] }", "{}", "null", BSON_TYPE_NULL},
        {"{ $abs: '$missing' }", "{}", "null", BSON_TYPE_NULL},
        /* arrays, conditionals */
        {"{ $size: ['$a'] }", "{ a: [1, 2, 3] }", "3", BSON_TYPE_INT32},
        {"{ $size: '$a' }", "{ a: [] }", "0", BSON_TYPE_INT32},
        {"{ $size: [[1, 2]] }", "{}", "2", BSON_TYPE_INT32},
        {"{ $in: ['$a', [1, 2]] }", "{ a: 2 }", "true", BSON_TYPE_BOOL},
        {"{ $in: ['$a', [1, 2]] }", "{ a: 2.0 }", "true", BSON_TYPE_BOOL},
        {"{ $in: [3, '$arr'] }", "{ arr: [1, 2] }", "false", BSON_TYPE_BOOL},
        {"{ $in: ['$missing', [null]] }", "{}", "false", BSON_TYPE_BOOL},
        {"{ $in: [[1], [[1], 2]] }", "{}", "true", BSON_TYPE_BOOL},
        {"{ $ifNull: ['$a', 'd'] }", "{ a: 'x' }", "'x'", BSON_TYPE_UTF8},
        {"{ $ifNull: ['$a', 'd'] }", "{}", "'d'", BSON_TYPE_UTF8},
        {"{ $ifNull: ['$a', 'd'] }", "{ a: null }", "'d'", BSON_TYPE_UTF8},
        {"{ $ifNull: ['$a', 'd'] }", "{ a: false }", "false", BSON_TYPE_BOOL},
        {"{ $ifNull: [null, '$missing', 3] }", "{}", "3", BSON_TYPE_INT32},
        {"{ $ifNull: [null, '$missing'] }", "{}", NULL, 0},
        {"{ $cond: [true, 1, 2] }", "{}", "1", BSON_TYPE_INT32},
        {"{ $cond: [0, 1, 2] }", "{}", "2", BSON_TYPE_INT32},
        {"{ $cond: [null, 1, 2] }", "{}", "2", BSON_TYPE_INT32},
        {"{ $cond: { if: '$a', then: 'y', else: 'n' } }", "{ a: 1 }", "'y'", BSON_TYPE_UTF8},
        {"{ $cond: { else: 'n', if: '$a', then: 'y' } }", "{}", "'n'", BSON_TYPE_UTF8},
        {"{ $cond: { if: { $gte: ['$qty', 250] }, then: 30, else: 20 } }", "{ qty: 300 }", "30",
         BSON_TYPE_INT32},
        {"{ $cond: [true, '$missing', 2] }", "{}", NULL, 0},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        bson_t *holder;
        mk_error_t err = {0};
        mk_expr_t *e = compile_text(t[i].expr, &holder, &err);
        if (!e) {
            print_error("case %zu: %s does not compile: %s\n", i, t[i].expr, err.message);
            failures++;
            bson_destroy(holder);
            continue;
        }
        bson_t *doc = tu_bson(t[i].doc);
        bson_value_t out;
        if (mk_expr_eval(e, doc, &out, &err) != MK_OK) {
            print_error("case %zu: %s failed: %s\n", i, t[i].expr, err.message);
            failures++;
        } else {
            bson_t got = BSON_INITIALIZER;
            if (out.value_type != BSON_TYPE_EOD) bson_append_value(&got, "r", 1, &out);
            char want_text[1024];
            snprintf(want_text, sizeof want_text, t[i].expect ? "{ r: %s }" : "{}", t[i].expect);
            bson_t *want = tu_bson(want_text);
            bool ok = mk_bson_cmp(&got, want) == 0 && (!t[i].type || out.value_type == t[i].type);
            if (!ok) {
                char *g = bson_as_relaxed_extended_json(&got, NULL);
                print_error("case %zu: %s on %s: got %s (type %d), expected %s (type %d)\n", i,
                            t[i].expr, t[i].doc, g, out.value_type, want_text, t[i].type);
                bson_free(g);
                failures++;
            }
            bson_destroy(want);
            bson_destroy(&got);
            bson_value_destroy(&out);
        }
        bson_destroy(doc);
        bson_destroy(holder);
        mk_expr_destroy(e);
    }
    assert_int_equal(failures, 0);
}

typedef struct xerr {
    const char *expr;
    const char *doc; /* NULL: a compile error; else an evaluation error on this document */
    int code;
    const char *message; /* prefix */
} xerr_t;

static void test_errors(void **state)
{
    (void)state;
    static const xerr_t t[] = {
        {"{ $foo: 1 }", NULL, 168, "Unrecognized expression '$foo'"},
        {"{ a: { $foo: 1 } }", NULL, 168, "Unrecognized expression '$foo'"},
        {"[{ $foo: 1 }]", NULL, 168, "Unrecognized expression '$foo'"},
        {"{ $add: 1, $sub: 2 }", NULL, 15983,
         "an expression specification must contain exactly one field"},
        {"{ a: 1, $b: 2 }", NULL, 16410, "FieldPath field names may not start with '$'"},
        {"{ 'a.b': 1 }", NULL, 16412, "FieldPath field names may not contain '.'"},
        {"'$'", NULL, 16872, "'$' by itself is not a valid FieldPath"},
        {"'$a..b'", NULL, 15998, "FieldPath field names may not be empty strings."},
        {"'$a.'", NULL, 15998, "FieldPath field names may not be empty strings."},
        {"'$a.$b'", NULL, 16410, "FieldPath field names may not start with '$'"},
        {"'$$foo'", NULL, 17276, "Use of undefined variable: foo"},
        {"'$$'", NULL, 16869, "empty variable names are not allowed"},
        {"'$$ROOT.'", NULL, 15998, "FieldPath field names may not be empty strings."},
        {"{ $eq: [1] }", NULL, 16020,
         "Expression $eq takes exactly 2 arguments. 1 were passed in."},
        {"{ $eq: 1 }", NULL, 16020, "Expression $eq takes exactly 2 arguments. 1 were passed in."},
        {"{ $size: [1, 2] }", NULL, 16020, "Expression $size takes exactly 1 arguments. 2 were"},
        {"{ $not: [] }", NULL, 16020, "Expression $not takes exactly 1 arguments. 0 were"},
        {"{ $ifNull: [1] }", NULL, 1257300, "$ifNull needs at least two arguments, had: 1"},
        {"{ $cond: [1, 2] }", NULL, 16020, "Expression $cond takes exactly 3 arguments. 2 were"},
        {"{ $cond: { if: 1, then: 2 } }", NULL, 17082, "Missing 'else' parameter to $cond"},
        {"{ $cond: { then: 2, else: 1 } }", NULL, 17080, "Missing 'if' parameter to $cond"},
        {"{ $cond: { if: 1, then: 2, else: 3, x: 1 } }", NULL, 17083,
         "Unrecognized parameter to $cond: x"},
        {"{ $add: [ISODate('2020-01-01'), ISODate('2020-01-01')] }", "{}", 16612,
         "only one date allowed in an $add expression"},
        {"{ $add: [1, 'x'] }", "{}", 16554, "$add only supports numeric or date types, not string"},
        {"{ $add: [1, NumberDecimal('1')] }", "{}", 2,
         "$add on decimal values is not supported yet"},
        {"{ $subtract: [1, ISODate('2020-01-01')] }", "{}", 16556,
         "cant $subtract a date from a int"},
        {"{ $multiply: [2, 'x'] }", "{}", 16555,
         "$multiply only supports numeric types, not string"},
        {"{ $divide: [1, 0] }", "{}", 16608, "can't $divide by zero"},
        {"{ $divide: [1, 0.0] }", "{}", 16608, "can't $divide by zero"},
        {"{ $divide: [1, 'x'] }", "{}", 16609,
         "$divide only supports numeric types, not int and string"},
        {"{ $mod: [7, 0] }", "{}", 16610, "can't $mod by zero"},
        {"{ $mod: ['x', 1] }", "{}", 16611, "$mod only supports numeric types, not string and int"},
        {"{ $abs: [NumberLong('-9223372036854775808')] }", "{}", 28680,
         "can't take $abs of long long min"},
        {"{ $abs: ['x'] }", "{}", 28765, "$abs only supports numeric types, not string"},
        {"{ $size: 'x' }", "{}", 17124,
         "The argument to $size must be an array. Type of argument: string"},
        {"{ $size: '$nope' }", "{}", 17124,
         "The argument to $size must be an array. Type of argument: missing"},
        {"{ $in: [1, 'x'] }", "{}", 40081,
         "$in requires an array as a second argument, found: string"},
        {"{ x: { $divide: [1, 0] } }", "{}", 16608, "can't $divide by zero"},
        {"[1, { $divide: [1, 0] }]", "{}", 16608, "can't $divide by zero"},
        {"{ $eq: [1, { $divide: [1, 0] }] }", "{}", 16608, "can't $divide by zero"},
        {"{ $ifNull: [null, { $divide: [1, 0] }] }", "{}", 16608, "can't $divide by zero"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        bson_t *holder;
        mk_error_t err = {0};
        mk_expr_t *e = compile_text(t[i].expr, &holder, &err);
        if (t[i].doc) {
            if (!e) {
                print_error("case %zu: %s does not compile: %s\n", i, t[i].expr, err.message);
                failures++;
                bson_destroy(holder);
                continue;
            }
            bson_t *doc = tu_bson(t[i].doc);
            bson_value_t out;
            if (mk_expr_eval(e, doc, &out, &err) == MK_OK) {
                print_error("case %zu: %s evaluated\n", i, t[i].expr);
                bson_value_destroy(&out);
                failures++;
                err.code = t[i].code;
                snprintf(err.message, sizeof err.message, "%s", t[i].message);
            } else {
                assert_int_equal(out.value_type, BSON_TYPE_EOD);
            }
            bson_destroy(doc);
        } else if (e) {
            print_error("case %zu: %s compiled\n", i, t[i].expr);
            failures++;
            err.code = t[i].code;
            snprintf(err.message, sizeof err.message, "%s", t[i].message);
        }
        if (err.code != t[i].code || strncmp(err.message, t[i].message, strlen(t[i].message))) {
            print_error("case %zu: %s: expected %d '%s', got %d '%s'\n", i, t[i].expr, t[i].code,
                        t[i].message, err.code, err.message);
            failures++;
        }
        mk_expr_destroy(e);
        bson_destroy(holder);
    }
    assert_int_equal(failures, 0);

    mk_error_t err = {0};
    bson_t *holder;
    assert_null(compile_text("{ $foo: 1 }", &holder, &err));
    assert_string_equal(err.kind, "InvalidPipelineOperator");
    bson_destroy(holder);
    assert_null(compile_text("{ $eq: [1] }", &holder, &err));
    assert_string_equal(err.kind, "Location16020");
    bson_destroy(holder);
    assert_null(compile_text("{ $foo: 1 }", &holder, NULL));
    bson_destroy(holder);
    mk_expr_destroy(NULL);
}

static void test_spec_is_copied(void **state)
{
    (void)state;
    bson_t *holder;
    mk_error_t err = {0};
    mk_expr_t *e =
        compile_text("{ $cond: [{ $eq: ['$a', 'yes'] }, 'matched', { s: 'no' }] }", &holder, &err);
    assert_non_null(e);
    bson_destroy(holder); /* the expression does not borrow from the spec */
    bson_t *doc = tu_bson("{ a: 'yes' }");
    bson_value_t out;
    assert_int_equal(mk_expr_eval(e, doc, &out, &err), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_UTF8);
    assert_string_equal(out.value.v_utf8.str, "matched");
    bson_value_destroy(&out);
    bson_destroy(doc);
    doc = tu_bson("{ a: 'no' }");
    assert_int_equal(mk_expr_eval(e, doc, &out, &err), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_DOCUMENT);
    bson_value_destroy(&out);
    bson_destroy(doc);
    mk_expr_destroy(e);
}

static void test_truthy_and_order(void **state)
{
    (void)state;
    bson_value_t v = {0};
    v.value_type = BSON_TYPE_EOD;
    assert_false(mk_expr_truthy(&v));
    v.value_type = BSON_TYPE_NULL;
    assert_false(mk_expr_truthy(&v));
    v.value_type = BSON_TYPE_INT64;
    v.value.v_int64 = 0;
    assert_false(mk_expr_truthy(&v));
    v.value.v_int64 = -1;
    assert_true(mk_expr_truthy(&v));
    v.value_type = BSON_TYPE_UTF8;
    v.value.v_utf8.str = "";
    v.value.v_utf8.len = 0;
    assert_true(mk_expr_truthy(&v));

    bson_value_t missing = {.value_type = BSON_TYPE_EOD};
    bson_value_t undef = {.value_type = BSON_TYPE_UNDEFINED};
    bson_value_t null = {.value_type = BSON_TYPE_NULL};
    bson_value_t minkey = {.value_type = BSON_TYPE_MINKEY};
    bson_value_t one = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
    assert_int_equal(mk_expr_value_cmp(&missing, &undef), 0);
    assert_true(mk_expr_value_cmp(&missing, &null) < 0);
    assert_true(mk_expr_value_cmp(&null, &missing) > 0);
    assert_true(mk_expr_value_cmp(&minkey, &missing) < 0);
    assert_true(mk_expr_value_cmp(&one, &null) > 0);
    assert_int_equal(mk_expr_value_cmp(&one, &one), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_spec_is_copied),
        cmocka_unit_test(test_truthy_and_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
