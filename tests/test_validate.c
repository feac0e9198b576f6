/* Mongoose's built-in validators, message templates and the ValidationError aggregate. */
#include "testutil.h"

#include "odm/validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bson_value_t str(const char *s)
{
    bson_value_t v = {.value_type = BSON_TYPE_UTF8};
    v.value.v_utf8.str = (char *)s;
    v.value.v_utf8.len = (uint32_t)strlen(s);
    return v;
}

static bson_value_t i32(int32_t n)
{
    bson_value_t v = {.value_type = BSON_TYPE_INT32};
    v.value.v_int32 = n;
    return v;
}

static bson_value_t i64(int64_t n)
{
    bson_value_t v = {.value_type = BSON_TYPE_INT64};
    v.value.v_int64 = n;
    return v;
}

static bson_value_t dbl(double d)
{
    bson_value_t v = {.value_type = BSON_TYPE_DOUBLE};
    v.value.v_double = d;
    return v;
}

static bson_value_t date(int64_t ms)
{
    bson_value_t v = {.value_type = BSON_TYPE_DATE_TIME};
    v.value.v_datetime = ms;
    return v;
}

static bson_value_t boolean(bool b)
{
    bson_value_t v = {.value_type = BSON_TYPE_BOOL};
    v.value.v_bool = b;
    return v;
}

static bson_value_t type_only(bson_type_t t)
{
    bson_value_t v = {.value_type = t};
    return v;
}

static bson_value_t binary(const uint8_t *data, uint32_t len)
{
    bson_value_t v = {.value_type = BSON_TYPE_BINARY};
    v.value.v_binary.subtype = BSON_SUBTYPE_BINARY;
    v.value.v_binary.data = (uint8_t *)data;
    v.value.v_binary.data_len = len;
    return v;
}

/* The only error recorded, with its message and kind. */
static void assert_one_error(const mk_verrors_t *errs, const char *path, const char *kind,
                             const char *message)
{
    assert_int_equal(errs->count, 1);
    assert_string_equal(errs->items[0].path, path);
    assert_string_equal(errs->items[0].kind, kind);
    assert_string_equal(errs->items[0].message, message);
}

/* The value of a one-field document as a bson_value_t borrowed from doc. */
static bson_value_t field(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, doc, key));
    return *bson_iter_value(&it);
}

/* ---- required ---- */

static void test_required_missing_and_null(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_required(NULL, MK_TYPE_STRING, NULL, "name", &errs), 0);
    assert_one_error(&errs, "name", "required", "Path `name` is required.");
    assert_int_equal(errs.items[0].value.value_type, BSON_TYPE_UNDEFINED);
    mk_verrors_destroy(&errs);

    mk_verrors_init(&errs);
    bson_value_t null = type_only(BSON_TYPE_NULL);
    assert_int_equal(mk_validate_required(&null, MK_TYPE_NUMBER, NULL, "age", &errs), 0);
    assert_one_error(&errs, "age", "required", "Path `age` is required.");
    assert_int_equal(errs.items[0].value.value_type, BSON_TYPE_NULL);
    mk_verrors_destroy(&errs);

    mk_verrors_init(&errs);
    bson_value_t undef = type_only(BSON_TYPE_UNDEFINED);
    assert_int_equal(mk_validate_required(&undef, MK_TYPE_MIXED, NULL, "m", &errs), 0);
    assert_int_equal(errs.count, 1);
    mk_verrors_destroy(&errs);
}

static void test_required_per_type(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    bson_value_t empty = str(""), s = str("x"), zero = i32(0), nan = dbl(NAN), f = boolean(false);
    bson_value_t d = date(0), big = i64(1);
    bson_value_t oid = {.value_type = BSON_TYPE_OID};
    bson_oid_init_from_string(&oid.value.v_oid, "5f1d7f3e1c9d440000a1b2c3");
    uint8_t bytes[] = {1, 2};
    bson_value_t buf = binary(bytes, 2), nobuf = binary(bytes, 0);
    bson_t *arr = tu_bson("{ a: [], d: {} }");
    bson_value_t empty_arr = field(arr, "a"), empty_doc = field(arr, "d");

    /* String's checkRequired rejects '' */
    assert_int_equal(mk_validate_required(&empty, MK_TYPE_STRING, NULL, "s", &errs), 0);
    assert_int_equal(mk_validate_required(&s, MK_TYPE_STRING, NULL, "s", &errs), 1);
    /* 0, NaN and false are present values */
    assert_int_equal(mk_validate_required(&zero, MK_TYPE_NUMBER, NULL, "n", &errs), 1);
    assert_int_equal(mk_validate_required(&nan, MK_TYPE_NUMBER, NULL, "n", &errs), 1);
    assert_int_equal(mk_validate_required(&f, MK_TYPE_BOOLEAN, NULL, "b", &errs), 1);
    assert_int_equal(mk_validate_required(&d, MK_TYPE_DATE, NULL, "d", &errs), 1);
    assert_int_equal(mk_validate_required(&oid, MK_TYPE_OBJECTID, NULL, "o", &errs), 1);
    assert_int_equal(mk_validate_required(&big, MK_TYPE_BIGINT, NULL, "g", &errs), 1);
    assert_int_equal(mk_validate_required(&buf, MK_TYPE_BUFFER, NULL, "buf", &errs), 1);
    /* an empty Buffer fails (its checkRequired tests .length) */
    assert_int_equal(mk_validate_required(&nobuf, MK_TYPE_BUFFER, NULL, "nobuf", &errs), 0);
    /* Mongoose 8: [] satisfies required on arrays; {} on sub-documents and Mixed */
    assert_int_equal(mk_validate_required(&empty_arr, MK_TYPE_ARRAY, NULL, "a", &errs), 1);
    assert_int_equal(mk_validate_required(&empty_arr, MK_TYPE_DOCARRAY, NULL, "a", &errs), 1);
    assert_int_equal(mk_validate_required(&empty_doc, MK_TYPE_SUBDOC, NULL, "d", &errs), 1);
    assert_int_equal(mk_validate_required(&empty_doc, MK_TYPE_MIXED, NULL, "d", &errs), 1);
    /* a value of the wrong type does not satisfy the type's check */
    assert_int_equal(mk_validate_required(&s, MK_TYPE_NUMBER, NULL, "wrong", &errs), 0);
    assert_int_equal(mk_validate_required(&zero, MK_TYPE_DATE, NULL, "wrong2", &errs), 0);

    assert_int_equal(errs.count, 4);
    assert_string_equal(errs.items[0].path, "s");
    assert_int_equal(errs.items[0].value.value_type, BSON_TYPE_UTF8);
    assert_string_equal(errs.items[1].path, "nobuf");
    assert_string_equal(errs.items[2].path, "wrong");
    assert_string_equal(errs.items[3].path, "wrong2");
    bson_destroy(arr);
    mk_verrors_destroy(&errs);
}

static void test_required_custom_message(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_required(NULL, MK_TYPE_STRING,
                                          "{PATH} is needed ({TYPE}, {VALUE})", "name", &errs),
                     0);
    assert_one_error(&errs, "name", "required", "name is needed (required, undefined)");
    mk_verrors_destroy(&errs);
}

/* ---- enum ---- */

static void test_enum_strings(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    bson_t *values = tu_bson("{ v: ['Jean-Luc Picard', 'William Riker', 'Deanna Troi'] }");
    bson_value_t arr = field(values, "v");
    bson_t list;
    assert_true(bson_init_static(&list, arr.value.v_doc.data, arr.value.v_doc.data_len));

    bson_value_t ok = str("William Riker"), bad = str("Kathryn Janeway"),
                 near = str("william riker");
    bson_value_t null = type_only(BSON_TYPE_NULL);
    assert_int_equal(mk_validate_enum(&ok, &list, NULL, "name", &errs), 1);
    assert_int_equal(mk_validate_enum(&null, &list, NULL, "name", &errs), 1);
    assert_int_equal(mk_validate_enum(NULL, &list, NULL, "name", &errs), 1);
    assert_int_equal(errs.count, 0);
    assert_int_equal(mk_validate_enum(&bad, &list, NULL, "name", &errs), 0);
    assert_one_error(&errs, "name", "enum",
                     "`Kathryn Janeway` is not a valid enum value for path `name`.");
    assert_int_equal(mk_validate_enum(&near, &list, NULL, "rank", &errs), 0);
    assert_int_equal(errs.count, 2);
    /* {ENUMVALUES} is String(array) */
    assert_int_equal(mk_validate_enum(&bad, &list, "{VALUE} not in {ENUMVALUES}", "x", &errs), 0);
    assert_string_equal(errs.items[2].message,
                        "Kathryn Janeway not in Jean-Luc Picard,William Riker,Deanna Troi");
    bson_destroy(values);
    mk_verrors_destroy(&errs);
}

static void test_enum_numbers(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    bson_t *values = tu_bson("{ v: [59, 60.5, 61] }");
    bson_value_t arr = field(values, "v");
    bson_t list;
    assert_true(bson_init_static(&list, arr.value.v_doc.data, arr.value.v_doc.data_len));
    bson_value_t a = i32(59), b = dbl(60.5), c = i64(61), d = dbl(59.0), bad = i32(22);
    bson_value_t s = str("59"), nan = dbl(NAN);
    assert_int_equal(mk_validate_enum(&a, &list, NULL, "age", &errs), 1);
    assert_int_equal(mk_validate_enum(&b, &list, NULL, "age", &errs), 1);
    assert_int_equal(mk_validate_enum(&c, &list, NULL, "age", &errs), 1);
    assert_int_equal(mk_validate_enum(&d, &list, NULL, "age", &errs), 1);
    assert_int_equal(errs.count, 0);
    assert_int_equal(mk_validate_enum(&bad, &list, NULL, "age", &errs), 0);
    assert_one_error(&errs, "age", "enum", "`22` is not a valid enum value for path `age`.");
    /* strict equality: '59' is not 59, NaN is never equal */
    assert_int_equal(mk_validate_enum(&s, &list, NULL, "s", &errs), 0);
    assert_int_equal(mk_validate_enum(&nan, &list, NULL, "n", &errs), 0);
    assert_string_equal(errs.items[2].message, "`NaN` is not a valid enum value for path `n`.");
    /* an empty or absent list rejects everything */
    assert_int_equal(mk_validate_enum(&a, NULL, NULL, "e", &errs), 0);
    assert_int_equal(errs.count, 4);
    /* values other than strings and numbers are not judged */
    bson_value_t dt = date(0);
    assert_int_equal(mk_validate_enum(&dt, &list, NULL, "d", &errs), MK_ERR);
    assert_non_null(strstr(errs.error.message, "Date"));
    assert_int_equal(errs.count, 4);
    bson_destroy(values);
    mk_verrors_destroy(&errs);
}

/* ---- match ---- */

static void test_match(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    bson_value_t ok = str("abc"), bad = str("bbb"), empty = str(""), upper = str("ABC");
    bson_value_t null = type_only(BSON_TYPE_NULL);
    assert_int_equal(mk_validate_match(&ok, "a", "", NULL, "name", &errs), 1);
    /* '' and null pass match */
    assert_int_equal(mk_validate_match(&empty, "a", "", NULL, "name", &errs), 1);
    assert_int_equal(mk_validate_match(&null, "a", NULL, NULL, "name", &errs), 1);
    assert_int_equal(mk_validate_match(NULL, "a", NULL, NULL, "name", &errs), 1);
    assert_int_equal(errs.count, 0);
    assert_int_equal(mk_validate_match(&bad, "a", "", NULL, "name", &errs), 0);
    assert_one_error(&errs, "name", "regexp", "Path `name` is invalid (bbb).");
    /* flags */
    assert_int_equal(mk_validate_match(&upper, "^abc$", "i", NULL, "u", &errs), 1);
    assert_int_equal(mk_validate_match(&upper, "^abc$", "", NULL, "u", &errs), 0);
    /* JS `$` without m does not match before a final newline */
    bson_value_t nl = str("abc\n");
    assert_int_equal(mk_validate_match(&nl, "^abc$", "", NULL, "nl", &errs), 0);
    assert_int_equal(mk_validate_match(&nl, "^abc$", "m", NULL, "nl2", &errs), 1);
    /* sticky tests from the start only; global is ignored */
    assert_int_equal(mk_validate_match(&ok, "b", "y", NULL, "y", &errs), 0);
    assert_int_equal(mk_validate_match(&ok, "b", "g", NULL, "g", &errs), 1);
    /* JS's \u escape */
    bson_value_t e = str("caf\xC3\xA9");
    assert_int_equal(mk_validate_match(&e, "\\u00e9$", "", NULL, "e", &errs), 1);
    assert_int_equal(errs.count, 4);
    /* {REGEXP} prints the regex with its flags in JS order */
    assert_int_equal(mk_validate_match(&bad, "^a", "mi", "{VALUE} !~ {REGEXP}", "r", &errs), 0);
    assert_string_equal(errs.items[4].message, "bbb !~ /^a/im");
    /* errors */
    assert_int_equal(mk_validate_match(&ok, "(", "", NULL, "p", &errs), MK_ERR);
    assert_non_null(strstr(errs.error.message, "Invalid regular expression: /(/"));
    assert_int_equal(mk_validate_match(&ok, "a", "x", NULL, "p", &errs), MK_ERR);
    assert_non_null(strstr(errs.error.message, "flag 'x'"));
    bson_value_t n = i32(1);
    assert_int_equal(mk_validate_match(&n, "a", "", NULL, "p", &errs), MK_ERR);
    assert_non_null(strstr(errs.error.message, "needs a string, not number"));
    assert_int_equal(errs.count, 5);
    mk_verrors_destroy(&errs);
}

/* ---- minlength / maxlength ---- */

static void test_lengths(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    bson_value_t ab = str("ab"), abc = str("abc"), abcd = str("abcd");
    bson_value_t null = type_only(BSON_TYPE_NULL);
    assert_int_equal(mk_validate_minlength(&abc, 3, NULL, "name", &errs), 1);
    assert_int_equal(mk_validate_maxlength(&abc, 3, NULL, "name", &errs), 1);
    assert_int_equal(mk_validate_minlength(&null, 3, NULL, "name", &errs), 1);
    assert_int_equal(mk_validate_maxlength(NULL, 3, NULL, "name", &errs), 1);
    assert_int_equal(errs.count, 0);
    assert_int_equal(mk_validate_minlength(&ab, 3, NULL, "name", &errs), 0);
    assert_one_error(&errs, "name", "minlength",
                     "Path `name` (`ab`) is shorter than the minimum allowed length (3).");
    assert_int_equal(mk_validate_maxlength(&abcd, 3, NULL, "bio", &errs), 0);
    assert_int_equal(errs.count, 2);
    assert_string_equal(errs.items[1].kind, "maxlength");
    assert_string_equal(errs.items[1].message,
                        "Path `bio` (`abcd`) is longer than the maximum allowed length (3).");
    /* '' is checked (only null/undefined are skipped) */
    bson_value_t empty = str("");
    assert_int_equal(mk_validate_minlength(&empty, 1, NULL, "e", &errs), 0);
    assert_string_equal(errs.items[2].message,
                        "Path `e` (``) is shorter than the minimum allowed length (1).");
    /* lengths count UTF-16 code units: é is 1, an emoji is 2 */
    bson_value_t cafe = str("caf\xC3\xA9"), emoji = str("\xF0\x9F\x98\x80");
    assert_int_equal(mk_validate_maxlength(&cafe, 4, NULL, "c", &errs), 1);
    assert_int_equal(mk_validate_minlength(&cafe, 5, NULL, "c", &errs), 0);
    assert_int_equal(mk_validate_minlength(&emoji, 2, NULL, "m", &errs), 1);
    assert_int_equal(mk_validate_maxlength(&emoji, 1, NULL, "m", &errs), 0);
    assert_int_equal(errs.count, 5);
    /* custom templates, the [15, 'message'] form */
    bson_value_t longname = str("fjeoifjweiojfowefij");
    assert_int_equal(mk_validate_maxlength(&longname, 15, "{PATH} is too long (max {MAXLENGTH})",
                                           "first", &errs),
                     0);
    assert_string_equal(errs.items[5].message, "first is too long (max 15)");
    bson_value_t n = i32(5);
    assert_int_equal(mk_validate_minlength(&n, 1, NULL, "x", &errs), MK_ERR);
    assert_non_null(strstr(errs.error.message, "minlength validator at path `x`"));
    mk_verrors_destroy(&errs);
}

/* ---- min / max ---- */

static void test_min_max_numbers(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    bson_value_t zero = i32(0), ten = i32(10), twenty = i32(20), big = i64(10);
    bson_value_t half = dbl(2.5), nan = dbl(NAN), null = type_only(BSON_TYPE_NULL);
    assert_int_equal(mk_validate_min(&ten, &zero, NULL, "age", &errs), 1);
    assert_int_equal(mk_validate_min(&zero, &zero, NULL, "age", &errs), 1);
    assert_int_equal(mk_validate_max(&ten, &ten, NULL, "age", &errs), 1);
    assert_int_equal(mk_validate_max(&big, &ten, NULL, "age", &errs), 1);
    assert_int_equal(mk_validate_min(&null, &ten, NULL, "age", &errs), 1);
    assert_int_equal(mk_validate_max(NULL, &ten, NULL, "age", &errs), 1);
    assert_int_equal(errs.count, 0);

    assert_int_equal(mk_validate_max(&twenty, &ten, NULL, "age", &errs), 0);
    assert_one_error(&errs, "age", "max",
                     "Path `age` (20) is more than maximum allowed value (10).");
    assert_int_equal(mk_validate_min(&half, &ten, NULL, "score", &errs), 0);
    assert_string_equal(errs.items[1].kind, "min");
    assert_string_equal(errs.items[1].message,
                        "Path `score` (2.5) is less than minimum allowed value (10).");
    /* NaN fails both bounds */
    assert_int_equal(mk_validate_min(&nan, &zero, NULL, "n", &errs), 0);
    assert_int_equal(mk_validate_max(&nan, &zero, NULL, "n2", &errs), 0);
    assert_string_equal(errs.items[2].message,
                        "Path `n` (NaN) is less than minimum allowed value (0).");
    assert_int_equal(errs.count, 4);
    /* custom message ([3, 'min 3'] form) */
    assert_int_equal(mk_validate_min(&zero, &ten, "Too few: {VALUE} < {MIN} ({TYPE})", "q", &errs),
                     0);
    assert_string_equal(errs.items[4].message, "Too few: 0 < 10 (min)");
    /* unsupported values and bounds */
    bson_value_t s = str("5");
    assert_int_equal(mk_validate_min(&s, &zero, NULL, "s", &errs), MK_ERR);
    assert_non_null(strstr(errs.error.message, "needs a number or a date, not string"));
    assert_int_equal(mk_validate_max(&ten, &s, NULL, "s", &errs), MK_ERR);
    assert_int_equal(mk_validate_max(&ten, NULL, NULL, "s", &errs), MK_ERR);
    assert_int_equal(errs.count, 5);
    mk_verrors_destroy(&errs);
}

static void test_min_max_dates(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    bson_value_t y2020 = date(1577836800000LL); /* 2020-01-01T00:00:00Z */
    bson_value_t y2019 = date(1546300800000LL); /* 2019-01-01T00:00:00Z */
    bson_value_t y2021 = date(1609459200000LL); /* 2021-01-01T00:00:00Z */
    assert_int_equal(mk_validate_min(&y2020, &y2020, NULL, "at", &errs), 1);
    assert_int_equal(mk_validate_max(&y2019, &y2020, NULL, "at", &errs), 1);
    assert_int_equal(mk_validate_min(&y2019, &y2020, NULL, "at", &errs), 0);
    assert_one_error(&errs, "at", "min",
                     "Path `at` (Tue Jan 01 2019 00:00:00 GMT+0000 (Coordinated Universal Time)) "
                     "is before minimum allowed value (Wed Jan 01 2020 00:00:00 GMT+0000 "
                     "(Coordinated Universal Time)).");
    assert_int_equal(mk_validate_max(&y2021, &y2020, NULL, "until", &errs), 0);
    assert_string_equal(errs.items[1].message,
                        "Path `until` (Fri Jan 01 2021 00:00:00 GMT+0000 (Coordinated Universal "
                        "Time)) is after maximum allowed value (Wed Jan 01 2020 00:00:00 GMT+0000 "
                        "(Coordinated Universal Time)).");
    assert_int_equal(errs.count, 2);
    mk_verrors_destroy(&errs);
}

/* ---- templating ---- */

static void test_message_format(void **state)
{
    bson_value_t v = str("bob");
    char *m = mk_validate_message_format("{PATH}={VALUE}", "name", &v, NULL);
    assert_string_equal(m, "name=bob");
    free(m);
    /* first occurrence only, as String.prototype.replace with a string pattern */
    m = mk_validate_message_format("{PATH} {PATH} {VALUE} {VALUE}", "p", &v, NULL);
    assert_string_equal(m, "p {PATH} bob {VALUE}");
    free(m);
    /* unknown placeholders stay; {FULLPATH} is the path */
    m = mk_validate_message_format("{NOPE} {FULLPATH}", "a.b", &v, NULL);
    assert_string_equal(m, "{NOPE} a.b");
    free(m);
    /* extra properties are uppercased and substituted before path and value */
    bson_t *extra = tu_bson("{ type: 'min', min: 5, message: 'ignored' }");
    m = mk_validate_message_format("{TYPE}:{MIN}:{MESSAGE}:{VALUE}", "x", NULL, extra);
    assert_string_equal(m, "min:5:{MESSAGE}:undefined");
    free(m);
    bson_destroy(extra);
    /* a value containing a placeholder is not expanded again (value comes last) */
    bson_value_t tricky = str("{PATH}");
    m = mk_validate_message_format("{VALUE}/{PATH}", "p", &tricky, NULL);
    assert_string_equal(m, "{PATH}/p");
    free(m);
    /* $-patterns in the substituted text behave as in JS's replace */
    bson_value_t dollars = str("a$$b $& $` $' $1");
    m = mk_validate_message_format("<{VALUE}>", "p", &dollars, NULL);
    assert_string_equal(m, "<a$b {VALUE} < > $1>");
    free(m);
    m = mk_validate_message_format(NULL, "p", &v, NULL);
    assert_string_equal(m, "");
    free(m);
}

static void test_js_string(void **state)
{
    bson_t *doc = tu_bson("{ a: [1, 'x', null, [2, 3], { k: 1 }], o: { k: 1 }, t: true, n: null,"
                          " d: 1.5, big: 1e21, neg0: -0.0 }");
    const char *keys[] = {"a", "o", "t", "n", "d", "big", "neg0"};
    const char *want[] = {
        "1,x,,2,3,[object Object]", "[object Object]", "true", "null", "1.5", "1e+21", "0"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        bson_value_t v = field(doc, keys[i]);
        char *s = mk_validate_js_string(&v);
        assert_string_equal(s, want[i]);
        free(s);
    }
    bson_destroy(doc);
    char *s = mk_validate_js_string(NULL);
    assert_string_equal(s, "undefined");
    free(s);
    bson_value_t oid = {.value_type = BSON_TYPE_OID};
    bson_oid_init_from_string(&oid.value.v_oid, "5f1d7f3e1c9d440000a1b2c3");
    s = mk_validate_js_string(&oid);
    assert_string_equal(s, "5f1d7f3e1c9d440000a1b2c3");
    free(s);
    bson_value_t before = date(-1); /* 1969-12-31T23:59:59.999Z */
    s = mk_validate_js_string(&before);
    assert_string_equal(s, "Wed Dec 31 1969 23:59:59 GMT+0000 (Coordinated Universal Time)");
    free(s);
    bson_value_t invalid = date(INT64_MAX);
    s = mk_validate_js_string(&invalid);
    assert_string_equal(s, "Invalid Date");
    free(s);
    bson_value_t re = {.value_type = BSON_TYPE_REGEX};
    re.value.v_regex.regex = "";
    re.value.v_regex.options = "gi";
    s = mk_validate_js_string(&re);
    assert_string_equal(s, "/(?:)/gi");
    free(s);
    uint8_t text[] = {'h', 'i', 0xFF};
    bson_value_t buf = binary(text, 3);
    s = mk_validate_js_string(&buf);
    assert_string_equal(s, "hi\xEF\xBF\xBD");
    free(s);
}

static void test_option_split(void **state)
{
    bson_t *doc = tu_bson("{ a: [5, 'too small'], b: 5, c: [1, 2], d: ['x', 'y', 'z'],"
                          " e: [true, 'Name is required'] }");
    bson_value_t opt, val;
    const char *msg;
    opt = field(doc, "a");
    mk_validate_option(&opt, &val, &msg);
    assert_int_equal(val.value_type, BSON_TYPE_INT32);
    assert_int_equal(val.value.v_int32, 5);
    assert_string_equal(msg, "too small");
    opt = field(doc, "b");
    mk_validate_option(&opt, &val, &msg);
    assert_int_equal(val.value.v_int32, 5);
    assert_null(msg);
    opt = field(doc, "c");
    mk_validate_option(&opt, &val, &msg);
    assert_int_equal(val.value_type, BSON_TYPE_ARRAY);
    assert_null(msg);
    opt = field(doc, "d");
    mk_validate_option(&opt, &val, &msg);
    assert_int_equal(val.value_type, BSON_TYPE_ARRAY);
    assert_null(msg);
    opt = field(doc, "e");
    mk_validate_option(&opt, &val, &msg);
    assert_int_equal(val.value_type, BSON_TYPE_BOOL);
    assert_string_equal(msg, "Name is required");
    bson_destroy(doc);
}

/* ---- the aggregate ---- */

static void test_validation_error_message(void **state)
{
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    mk_error_t err;
    mk_error_clear(&err);
    /* nothing failed: no error */
    assert_int_equal(mk_verrors_to_error(&errs, "User", &err), MK_OK);
    assert_string_equal(err.kind, "");

    bson_value_t a = str("a"), twenty = i32(20), ten = i32(10);
    assert_int_equal(mk_validate_required(NULL, MK_TYPE_STRING, NULL, "name", &errs), 0);
    assert_int_equal(mk_validate_minlength(&a, 3, NULL, "nick", &errs), 0);
    assert_int_equal(mk_validate_max(&twenty, &ten, NULL, "age", &errs), 0);
    assert_int_equal(mk_verrors_to_error(&errs, "User", &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_int_equal(err.code, 0);
    assert_string_equal(err.message,
                        "User validation failed: name: Path `name` is required., nick: Path "
                        "`nick` (`a`) is shorter than the minimum allowed length (3)., age: Path "
                        "`age` (20) is more than maximum allowed value (10).");
    /* without a model */
    assert_int_equal(mk_verrors_to_error(&errs, NULL, &err), MK_ERR);
    assert_true(strncmp(err.message, "Validation failed: name: ", 25) == 0);
    /* a later error for the same path replaces it in place */
    assert_int_equal(mk_verrors_add(&errs, "name", "cast", "Cast to string failed", NULL), MK_OK);
    assert_int_equal(errs.count, 3);
    assert_string_equal(mk_verrors_find(&errs, "name")->kind, "cast");
    assert_null(mk_verrors_find(&errs, "missing"));
    assert_int_equal(mk_verrors_to_error(&errs, "User", &err), MK_ERR);
    assert_true(strncmp(err.message,
                        "User validation failed: name: Cast to string failed, nick:", 58) == 0);
    /* the value is a copy owned by the collector */
    assert_int_equal(errs.items[2].value.value_type, BSON_TYPE_INT32);
    assert_int_equal(errs.items[2].value.value.v_int32, 20);
    /* NULL error pointer is allowed */
    assert_int_equal(mk_verrors_to_error(&errs, "User", NULL), MK_ERR);
    mk_verrors_destroy(&errs);
    mk_verrors_destroy(&errs); /* idempotent */
}

static void test_validation_error_key_order(void **state)
{
    /* JS enumerates integer-like keys first, ascending, then the others in insertion order */
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    assert_int_equal(mk_verrors_add(&errs, "b", "user defined", "B", NULL), MK_OK);
    assert_int_equal(mk_verrors_add(&errs, "10", "user defined", "ten", NULL), MK_OK);
    assert_int_equal(mk_verrors_add(&errs, "a", "user defined", "A", NULL), MK_OK);
    assert_int_equal(mk_verrors_add(&errs, "2", "user defined", "two", NULL), MK_OK);
    assert_int_equal(mk_verrors_add(&errs, "01", "user defined", "lead0", NULL), MK_OK);
    mk_error_t err;
    assert_int_equal(mk_verrors_to_error(&errs, "M", &err), MK_ERR);
    assert_string_equal(err.message, "M validation failed: 2: two, 10: ten, b: B, a: A, 01: lead0");
    mk_verrors_destroy(&errs);
}

int main(void)
{
    /* dates print in the local zone, as Date.prototype.toString does */
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_required_missing_and_null),
        cmocka_unit_test(test_required_per_type),
        cmocka_unit_test(test_required_custom_message),
        cmocka_unit_test(test_enum_strings),
        cmocka_unit_test(test_enum_numbers),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_min_max_numbers),
        cmocka_unit_test(test_min_max_dates),
        cmocka_unit_test(test_message_format),
        cmocka_unit_test(test_js_string),
        cmocka_unit_test(test_option_split),
        cmocka_unit_test(test_validation_error_message),
        cmocka_unit_test(test_validation_error_key_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
