/* Tests of the relaxed-JSON parser (src/bson/json.c). Expected documents are built with
 * libbson directly (bson_append_* / BCON), never with the parser itself, and compared byte for
 * byte, so types and field order are checked exactly. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- helpers ---------- */

static void dump_diff(const bson_t *got, const bson_t *exp, const char *text, const char *file,
                      int line)
{
    char *a = bson_as_canonical_extended_json(got, NULL);
    char *b = bson_as_canonical_extended_json(exp, NULL);
    print_error("%s:%d: %s\n  got:      %s\n  expected: %s\n", file, line, text, a ? a : "(null)",
                b ? b : "(null)");
    bson_free(a);
    bson_free(b);
}

/* Parses text with args and compares with `expected` (which it destroys). */
static void expect_doc_(const char *text, const mk_arg_t *args, bson_t *expected, const char *file,
                        int line)
{
    mk_error_t err = {0};
    bson_t *got = mk_json_parse(text, args, &err);
    if (!got) {
        print_error("%s:%d: parse failed: %s\n  in: %s\n", file, line, err.message, text);
        bson_destroy(expected);
        _fail(file, line);
        return;
    }
    bool same = got->len == expected->len &&
                memcmp(bson_get_data(got), bson_get_data(expected), got->len) == 0;
    if (!same) dump_diff(got, expected, text, file, line);
    bson_destroy(got);
    bson_destroy(expected);
    if (!same) _fail(file, line);
}
#define expect_doc(text, expected)       expect_doc_((text), NULL, (expected), __FILE__, __LINE__)
#define expect_doc_args(text, args, exp) expect_doc_((text), (args), (exp), __FILE__, __LINE__)

/* Parses len bytes and checks a FailedToParse error whose message equals msg (or starts with
 * it when msg ends with '*'), and that the output was left empty. */
static void expect_err_(const char *text, size_t len, const mk_arg_t *args, bool *is_array,
                        const char *msg, const char *file, int line)
{
    mk_error_t err = {0};
    bson_t out;
    bson_init(&out);
    int rc = mk_json_parse_into(&out, text, len, args, is_array, &err);
    size_t ml = strlen(msg);
    bool prefix = ml && msg[ml - 1] == '*';
    bool msg_ok = prefix ? strncmp(err.message, msg, ml - 1) == 0 : strcmp(err.message, msg) == 0;
    bool ok = rc == MK_ERR && err.code == MK_CODE_FAILED_TO_PARSE &&
              strcmp(err.kind, "FailedToParse") == 0 && msg_ok && out.len == 5;
    if (!ok)
        print_error("%s:%d: rc %d code %d kind %s out.len %u\n  message:  %s\n  expected: %s\n"
                    "  in: %.200s\n",
                    file, line, rc, err.code, err.kind, out.len, err.message, msg, text);
    bson_destroy(&out);
    if (!ok) _fail(file, line);
}
#define expect_err(text, msg)                                                                      \
    expect_err_((text), strlen(text), NULL, NULL, (msg), __FILE__, __LINE__)
#define expect_err_args(text, args, msg)                                                           \
    expect_err_((text), strlen(text), (args), NULL, (msg), __FILE__, __LINE__)
#define expect_err_len(text, len, msg)                                                             \
    expect_err_((text), (len), NULL, NULL, (msg), __FILE__, __LINE__)

static bson_t *oid_doc(const char *key, const char *hex)
{
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, hex);
    return BCON_NEW(key, BCON_OID(&oid));
}

static bson_t *date_doc(int64_t ms)
{
    return BCON_NEW("d", BCON_DATE_TIME(ms));
}

/* ---------- syntax ---------- */

static void test_basic_syntax(void **state)
{
    (void)state;
    expect_doc("{}", bson_new());
    expect_doc("  {  }  ", bson_new());
    expect_doc("{ a: 1, 'b': 'x', \"c\": \"y\" }",
               BCON_NEW("a", BCON_INT32(1), "b", BCON_UTF8("x"), "c", BCON_UTF8("y")));
    /* identifiers with $ and _, digits inside; quoted dotted keys; digit keys */
    expect_doc("{ $set: { _id: 1, a_b$2: 2 }, 'a.b': 3, \"x.y.z\": 4, 0: 5, 12: 6 }",
               BCON_NEW("$set", "{", "_id", BCON_INT32(1), "a_b$2", BCON_INT32(2), "}", "a.b",
                        BCON_INT32(3), "x.y.z", BCON_INT32(4), "0", BCON_INT32(5), "12",
                        BCON_INT32(6)));
    /* trailing commas in objects and arrays */
    expect_doc("{ a: [1, 2,], b: { c: 1, }, }", BCON_NEW("a", "[", BCON_INT32(1), BCON_INT32(2),
                                                         "]", "b", "{", "c", BCON_INT32(1), "}"));
    /* comments anywhere white space may go */
    expect_doc("// leading\n{ /* a */ a /* b */ : /* c */ 1 // d\n , b: [ /* e */ 2 /* f */ ] "
               "/* g */ } // trailing",
               BCON_NEW("a", BCON_INT32(1), "b", "[", BCON_INT32(2), "]"));
    expect_doc("{ a: 1 /* multi\nline\ncomment */ }", BCON_NEW("a", BCON_INT32(1)));
    /* white space of every kind, a UTF-8 BOM, non-ASCII spaces */
    expect_doc("\xEF\xBB\xBF\t{\r\n\ta\v:\f1\xC2\xA0}", BCON_NEW("a", BCON_INT32(1)));
    /* nesting */
    expect_doc("{ a: { b: { c: [ [ ], { }, [ { d: null } ] ] } } }",
               BCON_NEW("a", "{", "b", "{", "c", "[", "[", "]", "{", "}", "[", "{", "d", BCON_NULL,
                        "}", "]", "]", "}", "}"));
    /* duplicate keys are kept as written, in order */
    expect_doc("{ a: 1, a: 2 }", BCON_NEW("a", BCON_INT32(1), "a", BCON_INT32(2)));
    /* keywords are fine as keys */
    expect_doc("{ true: 1, null: 2, new: 3, ObjectId: 4 }",
               BCON_NEW("true", BCON_INT32(1), "null", BCON_INT32(2), "new", BCON_INT32(3),
                        "ObjectId", BCON_INT32(4)));
    /* $-keys that are not Extended JSON wrappers are ordinary keys (operators) */
    expect_doc("{ a: { $gt: 1, $lt: 5 }, b: { $regex: 'x', $options: 'i' }, c: { $type: 'string' "
               "}, d: { $in: [1] } }",
               BCON_NEW("a", "{", "$gt", BCON_INT32(1), "$lt", BCON_INT32(5), "}", "b", "{",
                        "$regex", BCON_UTF8("x"), "$options", BCON_UTF8("i"), "}", "c", "{",
                        "$type", BCON_UTF8("string"), "}", "d", "{", "$in", "[", BCON_INT32(1), "]",
                        "}"));
    /* a wrapper key that is not first is an ordinary key */
    expect_doc("{ a: { x: 1, $oid: 'zz' } }",
               BCON_NEW("a", "{", "x", BCON_INT32(1), "$oid", BCON_UTF8("zz"), "}"));
    /* non-ASCII keys, unquoted and quoted */
    expect_doc("{ café: 1, 'ключ': 2 }", BCON_NEW("café", BCON_INT32(1), "ключ", BCON_INT32(2)));
    /* the empty key */
    expect_doc("{ '': 1 }", BCON_NEW("", BCON_INT32(1)));
}

static void test_strings(void **state)
{
    (void)state;
    expect_doc("{ a: 'it\\'s', b: \"say \\\"hi\\\"\", c: \"it's\", d: 'say \"hi\"' }",
               BCON_NEW("a", BCON_UTF8("it's"), "b", BCON_UTF8("say \"hi\""), "c",
                        BCON_UTF8("it's"), "d", BCON_UTF8("say \"hi\"")));
    expect_doc("{ a: '\\n\\t\\r\\b\\f\\v\\\\\\/' }", BCON_NEW("a", BCON_UTF8("\n\t\r\b\f\v\\/")));
    expect_doc("{ a: '\\x41\\x7a\\xe9' }", BCON_NEW("a", BCON_UTF8("Az\xC3\xA9")));
    expect_doc("{ a: '\\u0041\\u00e9\\u20AC\\u{1F600}\\u{41}' }",
               BCON_NEW("a", BCON_UTF8("A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"
                                       "A")));
    /* surrogate pair -> one code point (U+1F600) */
    expect_doc("{ a: '\\uD83D\\uDE00' }", BCON_NEW("a", BCON_UTF8("\xF0\x9F\x98\x80")));
    /* raw UTF-8 passes through */
    expect_doc("{ a: 'héllo wörld 😀' }", BCON_NEW("a", BCON_UTF8("héllo wörld 😀")));
    /* identity escapes and line continuation, as in JavaScript */
    expect_doc("{ a: '\\$\\q\\é', b: 'ab\\\ncd' }",
               BCON_NEW("a", BCON_UTF8("$q\xC3\xA9"), "b", BCON_UTF8("abcd")));
    /* an escaped NUL is a character of a string value (BSON strings carry a length) */
    bson_t *nul = bson_new();
    bson_append_utf8(nul, "a", -1, "x\0y", 3);
    bson_append_utf8(nul, "b", -1, "\0", 1);
    expect_doc("{ a: 'x\\u0000y', b: '\\0' }", nul);
    /* escapes in keys */
    expect_doc("{ 'a\\u0062': 1, \"\\x63\": 2 }",
               BCON_NEW("ab", BCON_INT32(1), "c", BCON_INT32(2)));
    /* a '?' or comment markers inside a string are just characters */
    expect_doc("{ a: '?', b: '// no', c: '/* no */', d: '[{:,}]' }",
               BCON_NEW("a", BCON_UTF8("?"), "b", BCON_UTF8("// no"), "c", BCON_UTF8("/* no */"),
                        "d", BCON_UTF8("[{:,}]")));
    /* a long escaped string outgrows the scratch buffer */
    size_t n = 5000;
    char *text = malloc(n * 2 + 32), *want = malloc(n + 1);
    assert_non_null(text);
    assert_non_null(want);
    char *p = text + sprintf(text, "{ a: '");
    for (size_t i = 0; i < n; i++) *p++ = '\\', *p++ = 'n', want[i] = '\n';
    strcpy(p, "' }");
    want[n] = '\0';
    expect_doc(text, BCON_NEW("a", BCON_UTF8(want)));
    free(text);
    free(want);
}

/* ---------- numbers ---------- */

static void test_number_boundaries(void **state)
{
    (void)state;
    expect_doc(
        "{ a: 0, b: 2147483647, c: -2147483648 }",
        BCON_NEW("a", BCON_INT32(0), "b", BCON_INT32(INT32_MAX), "c", BCON_INT32(INT32_MIN)));
    expect_doc("{ a: 2147483648, b: -2147483649 }",
               BCON_NEW("a", BCON_INT64(2147483648LL), "b", BCON_INT64(-2147483649LL)));
    expect_doc("{ a: 9223372036854775807, b: -9223372036854775808 }",
               BCON_NEW("a", BCON_INT64(INT64_MAX), "b", BCON_INT64(INT64_MIN)));
    expect_doc("{ a: 9223372036854775808, b: -9223372036854775809 }",
               BCON_NEW("a", BCON_DOUBLE(9223372036854775808.0), "b",
                        BCON_DOUBLE(-9223372036854775808.0)));
    expect_doc("{ a: 18446744073709551616, b: 123456789012345678901234567890 }",
               BCON_NEW("a", BCON_DOUBLE(18446744073709551616.0), "b",
                        BCON_DOUBLE(123456789012345678901234567890.0)));
}

static void test_number_forms(void **state)
{
    (void)state;
    expect_doc("{ a: 1.5, b: -0.25, c: .5, d: 5., e: 1e3, f: 1E-2, g: -2.5e+2, h: 0.0 }",
               BCON_NEW("a", BCON_DOUBLE(1.5), "b", BCON_DOUBLE(-0.25), "c", BCON_DOUBLE(0.5), "d",
                        BCON_DOUBLE(5.0), "e", BCON_DOUBLE(1000.0), "f", BCON_DOUBLE(0.01), "g",
                        BCON_DOUBLE(-250.0), "h", BCON_DOUBLE(0.0)));
    expect_doc("{ a: +5, b: +1.5, c: -7 }",
               BCON_NEW("a", BCON_INT32(5), "b", BCON_DOUBLE(1.5), "c", BCON_INT32(-7)));
    expect_doc("{ a: 0x1F, b: 0XfF, c: -0x10, d: 0x7fffffff, e: 0x80000000, f: "
               "0x7FFFFFFFFFFFFFFF, g: 0x10000000000000000 }",
               BCON_NEW("a", BCON_INT32(31), "b", BCON_INT32(255), "c", BCON_INT32(-16), "d",
                        BCON_INT32(INT32_MAX), "e", BCON_INT64(2147483648LL), "f",
                        BCON_INT64(INT64_MAX), "g", BCON_DOUBLE(18446744073709551616.0)));
    expect_doc("{ a: 0.1, b: 1.7976931348623157e308, c: 5e-324 }",
               BCON_NEW("a", BCON_DOUBLE(0.1), "b", BCON_DOUBLE(1.7976931348623157e308), "c",
                        BCON_DOUBLE(5e-324)));
    expect_doc("{ a: Infinity, b: -Infinity, c: +Infinity, d: 1e400 }",
               BCON_NEW("a", BCON_DOUBLE(INFINITY), "b", BCON_DOUBLE(-INFINITY), "c",
                        BCON_DOUBLE(INFINITY), "d", BCON_DOUBLE(INFINITY)));

    /* NaN: compare the type and NaN-ness (payloads may differ) */
    bson_t *b = tu_bson("{ a: NaN, b: -NaN }");
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, b, "a"));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_DOUBLE);
    assert_true(isnan(bson_iter_double(&it)));
    assert_true(bson_iter_init_find(&it, b, "b"));
    assert_true(isnan(bson_iter_double(&it)));
    bson_destroy(b);

    /* -0 is the double -0.0, as mongosh stores it */
    b = tu_bson("{ a: -0, b: -0.0, c: 0 }");
    assert_true(bson_iter_init_find(&it, b, "a"));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_DOUBLE);
    assert_true(bson_iter_double(&it) == 0.0 && signbit(bson_iter_double(&it)));
    assert_true(bson_iter_init_find(&it, b, "b"));
    assert_true(signbit(bson_iter_double(&it)));
    assert_true(bson_iter_init_find(&it, b, "c"));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_INT32);
    bson_destroy(b);

    expect_doc("{ a: [1, -1, 1.0] }",
               BCON_NEW("a", "[", BCON_INT32(1), BCON_INT32(-1), BCON_DOUBLE(1.0), "]"));
}

static void test_number_errors(void **state)
{
    (void)state;
    expect_err("{ a: 1e }", "line 1, column 6: invalid number '1e': the exponent has no digits");
    expect_err("{ a: 007 }", "line 1, column 6: invalid number '007': leading zeros are not "
                             "allowed");
    expect_err("{ a: 1.2.3 }", "line 1, column 6: invalid number '1.2.3'");
    expect_err("{ a: 12abc }", "line 1, column 6: invalid number '12abc'");
    expect_err("{ a: 0x }", "line 1, column 6: invalid number '0x'");
    expect_err("{ a: 0xZZ }", "line 1, column 6: invalid number '0xZZ'");
    expect_err("{ a: - }", "line 1, column 6: invalid number '-'");
    expect_err("{ a: . }", "line 1, column 6: invalid number '.'");
    expect_err("{ a: -foo }", "line 1, column 6: invalid number '-foo'");
    expect_err("{ a: 1_000 }", "line 1, column 6: invalid number '1_000'");
}

/* ---------- literals and shell constructors ---------- */

static void test_literals(void **state)
{
    (void)state;
    expect_doc(
        "{ a: true, b: false, c: null, d: undefined }",
        BCON_NEW("a", BCON_BOOL(true), "b", BCON_BOOL(false), "c", BCON_NULL, "d", BCON_UNDEFINED));
    expect_doc("{ a: MinKey, b: MinKey(), c: MaxKey, d: MaxKey ( ), e: [MinKey, MaxKey] }",
               BCON_NEW("a", BCON_MINKEY, "b", BCON_MINKEY, "c", BCON_MAXKEY, "d", BCON_MAXKEY, "e",
                        "[", BCON_MINKEY, BCON_MAXKEY, "]"));
    expect_err("{ a: foo }", "line 1, column 6: unknown identifier 'foo'");
    expect_err("{ a: True }", "line 1, column 6: unknown identifier 'True'");
    expect_err("{ a: new Foo(1) }", "line 1, column 10: unknown constructor 'Foo'");
    expect_err("{ a: new 5 }", "line 1, column 10: expected a constructor name after 'new', "
                               "found '5'");
    expect_err("{ a: MinKey(1) }", "line 1, column 6: MinKey() takes 0 arguments, not 1");
    expect_err("{ a: é }", "line 1, column 6: expected a value, found 'é'");
}

static void test_objectid(void **state)
{
    (void)state;
    const char *hex = "0123456789abcdef01234567";
    expect_doc("{ _id: ObjectId('0123456789abcdef01234567') }", oid_doc("_id", hex));
    expect_doc("{ _id: ObjectId(\"0123456789ABCDEF01234567\") }", oid_doc("_id", hex));
    expect_doc("{ _id: new ObjectId( '0123456789abcdef01234567', ) }", oid_doc("_id", hex));

    /* ObjectId() makes a fresh one, as the shell does */
    bson_t *b = tu_bson("{ a: ObjectId(), b: ObjectId() }");
    bson_iter_t ia, ib;
    assert_true(bson_iter_init_find(&ia, b, "a"));
    assert_true(bson_iter_init_find(&ib, b, "b"));
    assert_int_equal(bson_iter_type(&ia), BSON_TYPE_OID);
    assert_false(bson_oid_equal(bson_iter_oid(&ia), bson_iter_oid(&ib)));
    bson_destroy(b);

    expect_err("{ _id: ObjectId('123') }",
               "line 1, column 17: invalid ObjectId '123': must be 24 hex characters");
    expect_err("{ _id: ObjectId('0123456789abcdef0123456g') }",
               "line 1, column 17: invalid ObjectId '0123456789abcdef0123456g': must be 24 hex "
               "characters");
    expect_err("{ _id: ObjectId(5) }",
               "line 1, column 17: invalid ObjectId: expected a string of 24 hex characters");
    expect_err("{ _id: ObjectId('0123456789abcdef01234567', 1) }",
               "line 1, column 8: ObjectId() takes 0 to 1 arguments, not 2");
    expect_err("{ _id: ObjectId }", "line 1, column 17: expected '(' after ObjectId, found '}'");
    expect_err("{ _id: ObjectId('0123456789abcdef01234567' }",
               "line 1, column 44: expected ',' or ')' in ObjectId(), found '}'");
    expect_err("{ _id: ObjectId(",
               "line 1, column 17: expected a value inside ObjectId(), found end of input");
}

static void test_dates(void **state)
{
    (void)state;
    expect_doc("{ d: ISODate('2024-01-31T12:00:00.123+01:00') }", date_doc(1706698800123LL));
    expect_doc("{ d: ISODate('2024-01-31T11:00:00.123Z') }", date_doc(1706698800123LL));
    expect_doc("{ d: ISODate('2024-02-29') }", date_doc(1709164800000LL));
    expect_doc("{ d: ISODate('1970-01-01') }", date_doc(0));
    expect_doc("{ d: ISODate('1970-01-01T00:00') }", date_doc(0));
    expect_doc("{ d: ISODate('1970-01-01 00:00:01Z') }", date_doc(1000));
    expect_doc("{ d: ISODate('1970-01-01T00:00:00.5Z') }", date_doc(500));
    expect_doc("{ d: ISODate('1970-01-01T00:00:00.9999Z') }", date_doc(999));
    expect_doc("{ d: ISODate('1969-12-31T23:59:59.999Z') }", date_doc(-1));
    expect_doc("{ d: ISODate('2000-01-01T00:00:00-05:30') }", date_doc(946704600000LL));
    expect_doc("{ d: ISODate('2000-01-01T00:00:00-0530') }", date_doc(946704600000LL));
    expect_doc("{ d: ISODate('2000-01-01T05:00:00+05') }", date_doc(946684800000LL));
    expect_doc("{ d: ISODate('20000101T000000Z') }", date_doc(946684800000LL));
    expect_doc("{ d: ISODate('1900-03-01') }", date_doc(-2203891200000LL));
    expect_doc("{ d: ISODate('0001-01-01') }", date_doc(-62135596800000LL));
    expect_doc("{ d: ISODate('10000-01-01T00:00:00Z') }", date_doc(253402300800000LL));
    expect_doc("{ d: ISODate('+010000-01-01T00:00:00Z') }", date_doc(253402300800000LL));
    expect_doc("{ d: new Date(86400000) }", date_doc(86400000));
    expect_doc("{ d: new Date(-1) }", date_doc(-1));
    expect_doc("{ d: new Date(1.9) }", date_doc(1));
    expect_doc("{ d: new Date('1970-01-02') }", date_doc(86400000));
    expect_doc("{ d: Date(0) }", date_doc(0));
    expect_doc("{ d: new ISODate('1970-01-01T00:00:00Z') }", date_doc(0));

    /* no argument: now */
    bson_t *b = tu_bson("{ a: new Date(), b: ISODate() }");
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, b, "a"));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_DATE_TIME);
    assert_true(bson_iter_date_time(&it) > 1700000000000LL);
    bson_destroy(b);

    expect_err("{ d: ISODate('2023-02-29') }",
               "line 1, column 14: invalid date '2023-02-29' in ISODate(): expected ISO-8601 "
               "such as '2024-01-31T12:00:00Z'");
    expect_err("{ d: ISODate('2024-13-01') }", "line 1, column 14: invalid date '2024-13-01'*");
    expect_err("{ d: ISODate('2024-01-01T24:00:00Z') }", "line 1, column 14: invalid date*");
    expect_err("{ d: ISODate('2024-01-01T10:60Z') }", "line 1, column 14: invalid date*");
    expect_err("{ d: ISODate('2024-1-1') }", "line 1, column 14: invalid date*");
    expect_err("{ d: ISODate('2024-01-01T10:00:00+25:00') }", "line 1, column 14: invalid date*");
    expect_err("{ d: ISODate('2024-01-01x') }", "line 1, column 14: invalid date*");
    expect_err("{ d: ISODate('yesterday') }", "line 1, column 14: invalid date 'yesterday'*");
    expect_err("{ d: new Date(2024, 1, 1) }",
               "line 1, column 6: Date() with several arguments is not supported*");
    expect_err(
        "{ d: new Date(1e300) }",
        "line 1, column 15: invalid date 1e300 in Date(): expected whole milliseconds within "
        "int64");
    expect_err("{ d: new Date(true) }",
               "line 1, column 15: invalid Date(): expected an ISO-8601 string or milliseconds");
}

static void test_number_constructors(void **state)
{
    (void)state;
    expect_doc("{ a: NumberInt(5), b: NumberInt('-7'), c: NumberInt(), d: Int32(2147483647), e: "
               "NumberInt(1e3) }",
               BCON_NEW("a", BCON_INT32(5), "b", BCON_INT32(-7), "c", BCON_INT32(0), "d",
                        BCON_INT32(INT32_MAX), "e", BCON_INT32(1000)));
    expect_doc("{ a: NumberLong(5), b: NumberLong('9223372036854775807'), c: "
               "NumberLong('-9223372036854775808'), d: Long(-1), e: NumberLong() }",
               BCON_NEW("a", BCON_INT64(5), "b", BCON_INT64(INT64_MAX), "c", BCON_INT64(INT64_MIN),
                        "d", BCON_INT64(-1), "e", BCON_INT64(0)));
    bson_decimal128_t d1, d2, d3, d4;
    bson_decimal128_from_string("1.5", &d1);
    bson_decimal128_from_string("0.1", &d2);
    bson_decimal128_from_string("-1E+400", &d3);
    bson_decimal128_from_string("Infinity", &d4);
    expect_doc("{ a: NumberDecimal('1.5'), b: NumberDecimal(0.1), c: Decimal128('-1E+400'), d: "
               "NumberDecimal('Infinity') }",
               BCON_NEW("a", BCON_DECIMAL128(&d1), "b", BCON_DECIMAL128(&d2), "c",
                        BCON_DECIMAL128(&d3), "d", BCON_DECIMAL128(&d4)));
    expect_doc("{ a: Double(1), b: Double('2.5'), c: Double('-Infinity') }",
               BCON_NEW("a", BCON_DOUBLE(1.0), "b", BCON_DOUBLE(2.5), "c", BCON_DOUBLE(-INFINITY)));

    expect_err("{ a: NumberInt(2147483648) }",
               "line 1, column 16: invalid NumberInt() '2147483648': expected an integer within "
               "int32");
    expect_err("{ a: NumberInt('1.5') }",
               "line 1, column 16: invalid NumberInt() '1.5': expected an integer within int32");
    expect_err("{ a: NumberInt(1.5) }", "line 1, column 16: invalid NumberInt() '1.5'*");
    expect_err("{ a: NumberLong('9223372036854775808') }",
               "line 1, column 17: invalid NumberLong() '9223372036854775808': expected an "
               "integer within int64");
    expect_err("{ a: NumberLong(9223372036854775808) }",
               "line 1, column 17: invalid NumberLong() '9223372036854775808'*");
    expect_err("{ a: NumberLong('12abc') }", "line 1, column 17: invalid NumberLong() '12abc'*");
    expect_err("{ a: NumberDecimal('abc') }",
               "line 1, column 20: invalid NumberDecimal() 'abc': not a decimal number");
    expect_err("{ a: NumberDecimal() }",
               "line 1, column 6: NumberDecimal() takes 1 argument, not 0");
    expect_err("{ a: Double('x') }", "line 1, column 13: invalid Double() 'x': not a number");
}

static void test_binary_constructors(void **state)
{
    (void)state;
    const uint8_t uuid[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                              0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    expect_doc("{ u: UUID('00112233-4455-6677-8899-aabbccddeeff'), v: "
               "UUID('00112233445566778899AABBCCDDEEFF') }",
               BCON_NEW("u", BCON_BIN(BSON_SUBTYPE_UUID, uuid, 16), "v",
                        BCON_BIN(BSON_SUBTYPE_UUID, uuid, 16)));
    expect_doc("{ a: BinData(0, 'YWJj'), b: BinData(128, ''), c: BinData(5, 'YQ=='), d: "
               "BinData(0, 'YWI='), e: HexData(0, '616263') }",
               BCON_NEW("a", BCON_BIN(BSON_SUBTYPE_BINARY, (const uint8_t *)"abc", 3), "b",
                        BCON_BIN(BSON_SUBTYPE_USER, (const uint8_t *)"", 0), "c",
                        BCON_BIN(BSON_SUBTYPE_MD5, (const uint8_t *)"a", 1), "d",
                        BCON_BIN(BSON_SUBTYPE_BINARY, (const uint8_t *)"ab", 2), "e",
                        BCON_BIN(BSON_SUBTYPE_BINARY, (const uint8_t *)"abc", 3)));
    expect_err("{ u: UUID('0011') }", "line 1, column 11: invalid UUID '0011': expected 32 hex "
                                      "digits, optionally as 8-4-4-4-12");
    expect_err("{ u: UUID('00112233-4455-6677-8899_aabbccddeeff') }",
               "line 1, column 11: invalid UUID*");
    expect_err("{ u: UUID() }", "line 1, column 6: UUID() takes 1 argument, not 0");
    expect_err("{ b: BinData(0, 'YWJ') }",
               "line 1, column 17: invalid base64 data 'YWJ' in BinData()");
    expect_err("{ b: BinData(0, 'Y=Jj') }", "line 1, column 17: invalid base64 data*");
    expect_err("{ b: BinData(0, 'YW!j') }", "line 1, column 17: invalid base64 data*");
    expect_err("{ b: BinData(256, 'YWJj') }",
               "line 1, column 14: invalid BinData() '256': expected an integer within 0..255");
    expect_err("{ b: BinData(0) }", "line 1, column 6: BinData() takes 2 arguments, not 1");
    expect_err("{ b: HexData(0, '6162z3') }", "line 1, column 17: invalid hex data '6162z3'*");
    expect_err("{ b: HexData(0, '616') }", "line 1, column 17: invalid hex data*");
}

static void test_timestamp_and_regexp_constructors(void **state)
{
    (void)state;
    expect_doc("{ a: Timestamp(1, 2), b: Timestamp({ t: 4294967295, i: 7 }), c: Timestamp(), d: "
               "new Timestamp(0x10, 0) }",
               BCON_NEW("a", BCON_TIMESTAMP(1, 2), "b", BCON_TIMESTAMP(4294967295u, 7), "c",
                        BCON_TIMESTAMP(0, 0), "d", BCON_TIMESTAMP(16, 0)));
    expect_err("{ a: Timestamp(-1, 0) }", "line 1, column 16: invalid Timestamp() '-1': expected "
                                          "an integer within 0..4294967295");
    expect_err("{ a: Timestamp(4294967296, 0) }", "line 1, column 16: invalid Timestamp()*");
    expect_err("{ a: Timestamp({ t: 1 }) }",
               "line 1, column 16: invalid Timestamp(): expected {t: n, i: n}");
    expect_err("{ a: Timestamp({ t: 1, i: 2, x: 3 }) }",
               "line 1, column 30: unexpected or repeated field \"x\" in Timestamp()");
    expect_err("{ a: Timestamp(1) }", "line 1, column 16: invalid Timestamp(): expected "
                                      "Timestamp(t, i) or Timestamp({t, i})");
    expect_err("{ a: ObjectId({ t: 1 }) }",
               "line 1, column 15: unexpected object inside ObjectId()");

    expect_doc("{ a: RegExp('a+b', 'mi'), b: new RegExp('^x') }",
               BCON_NEW("a", BCON_REGEX("a+b", "im"), "b", BCON_REGEX("^x", "")));
    expect_err("{ a: RegExp('x', 'g') }",
               "line 1, column 18: invalid regular expression flag 'g' (MongoDB accepts i, m, "
               "s, x, l, u)");
    expect_err("{ a: RegExp('x\\u0000') }",
               "line 1, column 13: a regular expression cannot contain a NUL character");
}

static void test_regex_literals(void **state)
{
    (void)state;
    expect_doc("{ a: /ab+c/, b: /x/i, c: /y/xsmi, d: /z/lu, e: /a\\/b/, f: /[/]x/, g: /é\\d/ }",
               BCON_NEW("a", BCON_REGEX("ab+c", ""), "b", BCON_REGEX("x", "i"), "c",
                        BCON_REGEX("y", "imsx"), "d", BCON_REGEX("z", "lu"), "e",
                        BCON_REGEX("a\\/b", ""), "f", BCON_REGEX("[/]x", ""), "g",
                        BCON_REGEX("é\\d", "")));
    /* in arrays and as operator values; a comment right after is still a comment */
    expect_doc("{ a: [ /a/, /b/i, ], b: { $in: [/^x/] }, c: /q/ // done\n }",
               BCON_NEW("a", "[", BCON_REGEX("a", ""), BCON_REGEX("b", "i"), "]", "b", "{", "$in",
                        "[", BCON_REGEX("^x", ""), "]", "}", "c", BCON_REGEX("q", "")));
    expect_err("{ a: /x/g }", "line 1, column 9: invalid regular expression flag 'g' (MongoDB "
                              "accepts i, m, s, x, l, u)");
    expect_err("{ a: /x/ii }", "line 1, column 10: invalid regular expression flag 'i'*");
    expect_err("{ a: /abc }", "line 1, column 6: unterminated regular expression");
    expect_err("{ a: /ab\nc/ }", "line 1, column 6: unterminated regular expression");
    expect_err("{ a: /[/ }", "line 1, column 6: unterminated regular expression");
    /* '/' in key position is not a regex */
    expect_err("{ /a/: 1 }", "line 1, column 3: expected a key or '}', found '/'");
}

/* ---------- Extended JSON ---------- */

static void test_extended_json_canonical(void **state)
{
    (void)state;
    const char *hex = "0123456789abcdef01234567";
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, hex);
    bson_decimal128_t dec;
    bson_decimal128_from_string("1.5", &dec);
    const uint8_t uuid[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                              0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    bson_t *scope = BCON_NEW("x", BCON_INT32(1));
    bson_t *want = BCON_NEW(
        "oid", BCON_OID(&oid), "date1", BCON_DATE_TIME(1000), "date2", BCON_DATE_TIME(-5), "date3",
        BCON_DATE_TIME(1234), "i", BCON_INT32(-7), "l", BCON_INT64(INT64_MAX), "d1",
        BCON_DOUBLE(1.5), "d2", BCON_DOUBLE(INFINITY), "d3", BCON_DOUBLE(-INFINITY), "dec",
        BCON_DECIMAL128(&dec), "bin", BCON_BIN(BSON_SUBTYPE_USER, (const uint8_t *)"abc", 3),
        "legacy", BCON_BIN(BSON_SUBTYPE_BINARY, (const uint8_t *)"abc", 3), "uuid",
        BCON_BIN(BSON_SUBTYPE_UUID, uuid, 16), "re", BCON_REGEX("^a", "imx"), "ts",
        BCON_TIMESTAMP(4294967295u, 1), "min", BCON_MINKEY, "max", BCON_MAXKEY, "undef",
        BCON_UNDEFINED, "sym", BCON_SYMBOL("s"), "code", BCON_CODE("f()"), "cws",
        BCON_CODEWSCOPE("g()", scope), "dbp", BCON_DBPOINTER("db.c", &oid));
    expect_doc("{\"oid\": {\"$oid\": \"0123456789abcdef01234567\"},"
               " \"date1\": {\"$date\": \"1970-01-01T00:00:01Z\"},"
               " \"date2\": {\"$date\": {\"$numberLong\": \"-5\"}},"
               " \"date3\": {\"$date\": 1234},"
               " \"i\": {\"$numberInt\": \"-7\"},"
               " \"l\": {\"$numberLong\": \"9223372036854775807\"},"
               " \"d1\": {\"$numberDouble\": \"1.5\"},"
               " \"d2\": {\"$numberDouble\": \"Infinity\"},"
               " \"d3\": {\"$numberDouble\": \"-Infinity\"},"
               " \"dec\": {\"$numberDecimal\": \"1.5\"},"
               " \"bin\": {\"$binary\": {\"base64\": \"YWJj\", \"subType\": \"80\"}},"
               " \"legacy\": {\"$binary\": \"YWJj\", \"$type\": \"00\"},"
               " \"uuid\": {\"$uuid\": \"00112233-4455-6677-8899-aabbccddeeff\"},"
               " \"re\": {\"$regularExpression\": {\"pattern\": \"^a\", \"options\": \"xmi\"}},"
               " \"ts\": {\"$timestamp\": {\"t\": 4294967295, \"i\": 1}},"
               " \"min\": {\"$minKey\": 1}, \"max\": {\"$maxKey\": 1},"
               " \"undef\": {\"$undefined\": true},"
               " \"sym\": {\"$symbol\": \"s\"},"
               " \"code\": {\"$code\": \"f()\"},"
               " \"cws\": {\"$code\": \"g()\", \"$scope\": {\"x\": 1}},"
               " \"dbp\": {\"$dbPointer\": {\"$ref\": \"db.c\", \"$id\": {\"$oid\": "
               "\"0123456789abcdef01234567\"}}}}",
               want);
    bson_destroy(scope);

    /* NaN through $numberDouble */
    bson_t *b = tu_bson("{ a: { $numberDouble: 'NaN' } }");
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, b, "a"));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_DOUBLE);
    assert_true(isnan(bson_iter_double(&it)));
    bson_destroy(b);
}

static void test_extended_json_relaxed(void **state)
{
    (void)state;
    /* written the relaxed way: unquoted keys, single quotes, trailing commas, in arrays */
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, "0123456789abcdef01234567");
    expect_doc("{ ids: [ { $oid: '0123456789abcdef01234567' }, ], at: { $date: "
               "'2024-01-31T11:00:00.123Z', }, n: { '$numberLong': '5' }, x: { $binary: { "
               "subType: '0', base64: '' } } }",
               BCON_NEW("ids", "[", BCON_OID(&oid), "]", "at", BCON_DATE_TIME(1706698800123LL), "n",
                        BCON_INT64(5), "x", BCON_BIN(BSON_SUBTYPE_BINARY, (const uint8_t *)"", 0)));
    /* a wrapper key spelled with escapes is still the wrapper */
    expect_doc("{ a: { \"\\u0024oid\": '0123456789abcdef01234567' } }",
               oid_doc("a", "0123456789abcdef01234567"));
    /* MongoDB's relaxed output for doubles, dates past 9999, negative dates */
    expect_doc("{ a: 1.0, b: 1e+20, c: -0.0, d: 0.10000000000000000555 }",
               BCON_NEW("a", BCON_DOUBLE(1.0), "b", BCON_DOUBLE(1e20), "c", BCON_DOUBLE(-0.0), "d",
                        BCON_DOUBLE(0.1)));
    expect_doc("{ d: { $date: '292278994-08-17T07:12:55.807Z' } }", date_doc(INT64_MAX));
    expect_doc("{ d: { $date: { $numberLong: '-9223372036854775808' } } }", date_doc(INT64_MIN));
}

static void test_extended_json_errors(void **state)
{
    (void)state;
    expect_err("{ a: { $oid: 5 } }",
               "line 1, column 14: invalid ObjectId: expected a string of 24 hex characters");
    expect_err("{ a: { $oid: 'xyz' } }",
               "line 1, column 14: invalid ObjectId 'xyz': must be 24 hex characters");
    expect_err("{ a: { $oid: '0123456789abcdef01234567', b: 1 } }",
               "line 1, column 42: unexpected field \"b\" in $oid");
    expect_err("{ a: { $oid } }", "line 1, column 13: expected ':' after key \"$oid\", found '}'");
    expect_err("{ a: { $date: 'nope' } }", "line 1, column 15: invalid date 'nope' in $date*");
    expect_err("{ a: { $date: { $numberLong: 5 } } }",
               "line 1, column 30: invalid $numberLong: expected a string");
    expect_err("{ a: { $date: { x: '5' } } }", "line 1, column 15: invalid $date: expected an "
                                               "ISO-8601 string, milliseconds, or {$numberLong: "
                                               "'...'}");
    expect_err(
        "{ a: { $date: 1.5 } }",
        "line 1, column 15: invalid date 1.5 in $date: expected whole milliseconds within int64");
    expect_err("{ a: { $date: true } }",
               "line 1, column 15: invalid $date: expected an ISO-8601 string or milliseconds");
    expect_err("{ a: { $numberInt: 5 } }", "line 1, column 20: invalid $numberInt: expected a "
                                           "string");
    expect_err("{ a: { $numberInt: '2147483648' } }",
               "line 1, column 20: invalid $numberInt '2147483648': expected an integer within "
               "int32");
    expect_err("{ a: { $numberLong: '1.0' } }", "line 1, column 21: invalid $numberLong '1.0'*");
    expect_err("{ a: { $numberDouble: 'abc' } }",
               "line 1, column 23: invalid $numberDouble 'abc': not a number");
    expect_err("{ a: { $numberDouble: '0x10' } }",
               "line 1, column 23: invalid $numberDouble '0x10': not a number");
    expect_err("{ a: { $numberDecimal: 1.5 } }",
               "line 1, column 24: invalid $numberDecimal: expected a string");
    expect_err("{ a: { $numberDecimal: 'x' } }",
               "line 1, column 24: invalid $numberDecimal 'x': not a decimal number");
    expect_err("{ a: { $binary: { base64: 'YWJj' } } }",
               "line 1, column 17: invalid $binary: expected {base64: '...', subType: 'hex'}");
    expect_err("{ a: { $binary: { base64: 'YWJj', subType: '00', x: 1 } } }",
               "line 1, column 50: unexpected or repeated field \"x\" in $binary");
    expect_err("{ a: { $binary: { base64: 'YWJj', subType: 'zz' } } }",
               "line 1, column 44: invalid $binary subType: expected 1 or 2 hex digits such as "
               "'00'");
    expect_err("{ a: { $binary: { base64: 'YWJ', subType: '00' } } }",
               "line 1, column 27: invalid base64 data 'YWJ' in $binary");
    expect_err("{ a: { $binary: 'YWJj' } }",
               "line 1, column 17: invalid $binary: the legacy form needs \"$type\"");
    expect_err("{ a: { $binary: 5 } }",
               "line 1, column 17: invalid $binary: expected {base64: '...', subType: 'hex'}");
    expect_err("{ a: { $uuid: '1234' } }", "line 1, column 15: invalid UUID '1234'*");
    expect_err("{ a: { $regularExpression: 'x' } }",
               "line 1, column 28: invalid $regularExpression: expected {pattern: '...', "
               "options: '...'}");
    expect_err("{ a: { $regularExpression: { pattern: 'x' } } }",
               "line 1, column 28: invalid $regularExpression*");
    expect_err("{ a: { $regularExpression: { pattern: 'x', options: 'q' } } }",
               "line 1, column 53: invalid regular expression flag 'q'*");
    expect_err("{ a: { $timestamp: { t: 1 } } }",
               "line 1, column 20: invalid $timestamp: expected {t: n, i: n}");
    expect_err("{ a: { $timestamp: 5 } }",
               "line 1, column 20: invalid $timestamp: expected {t: n, i: n}");
    expect_err("{ a: { $timestamp: { t: -1, i: 0 } } }",
               "line 1, column 25: invalid $timestamp '-1': expected an integer within "
               "0..4294967295");
    expect_err("{ a: { $minKey: 2 } }", "line 1, column 17: invalid $minKey: expected 1");
    expect_err("{ a: { $maxKey: '1' } }", "line 1, column 17: invalid $maxKey: expected 1");
    expect_err("{ a: { $undefined: false } }",
               "line 1, column 20: invalid $undefined: expected true");
    expect_err("{ a: { $symbol: 1 } }", "line 1, column 17: invalid $symbol: expected a string");
    expect_err("{ a: { $code: 'f()', $other: 1 } }",
               "line 1, column 22: unexpected or repeated field \"$other\" in $code");
    expect_err("{ a: { $code: 'f()', $scope: 1 } }",
               "line 1, column 30: expected '{' for $scope, found '1'");
    expect_err("{ a: { $dbPointer: { $ref: 'a.b' } } }",
               "line 1, column 20: invalid $dbPointer: expected {$ref: '...', $id: {$oid: "
               "'...'}}");
    expect_err("{ a: { $oid: ? } }", "line 1, column 14: a placeholder '?' is not allowed inside "
                                     "$oid");
    /* the top level is a document, never a wrapper value */
    expect_err("{ $oid: '0123456789abcdef01234567' }",
               "line 1, column 1: the top level must be a document, not an Extended JSON $oid "
               "value");
}

/* ---------- top-level arrays ---------- */

static void test_top_level_array(void **state)
{
    (void)state;
    mk_error_t err = {0};
    bson_t out;
    bool is_array = true;
    const char *text = "[1, 'a', { b: [] }, ]";
    bson_init(&out);
    assert_int_equal(mk_json_parse_into(&out, text, strlen(text), NULL, &is_array, &err), MK_OK);
    assert_true(is_array);
    bson_t *want = BCON_NEW("0", BCON_INT32(1), "1", BCON_UTF8("a"), "2", "{", "b", "[", "]", "}");
    assert_true(bson_equal(&out, want));
    bson_destroy(want);
    bson_destroy(&out);

    text = "{ a: 1 }";
    bson_init(&out);
    assert_int_equal(mk_json_parse_into(&out, text, strlen(text), NULL, &is_array, &err), MK_OK);
    assert_false(is_array);
    bson_destroy(&out);

    text = "[]";
    bson_init(&out);
    assert_int_equal(mk_json_parse_into(&out, text, strlen(text), NULL, &is_array, &err), MK_OK);
    assert_true(is_array);
    assert_int_equal(out.len, 5);
    bson_destroy(&out);

    /* without is_array an array is refused */
    expect_err("[1]", "line 1, column 1: expected '{' at the start of the document, found '['");
    is_array = true;
    expect_err_("42", 2, NULL, &is_array,
                "line 1, column 1: expected '{' or '[' at the start of the input, found '4'",
                __FILE__, __LINE__);
    assert_false(is_array);
    expect_err_("[1] x", 5, NULL, &is_array,
                "line 1, column 5: expected the end of input after the array, found 'x'", __FILE__,
                __LINE__);
    expect_err_("[1,,2]", 6, NULL, &is_array,
                "line 1, column 4: expected a value or ']', found ',' (array holes are not "
                "supported)",
                __FILE__, __LINE__);
    expect_err_("[1 2]", 5, NULL, &is_array,
                "line 1, column 4: expected ',' or ']' after array element 0, found '2'", __FILE__,
                __LINE__);
}

/* ---------- placeholders ---------- */

static void test_placeholders_every_type(void **state)
{
    (void)state;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, "0123456789abcdef01234567");
    bson_t *sub = BCON_NEW("$gt", BCON_INT32(5), "x", "[", BCON_UTF8("y"), "]");
    bson_t *arr = BCON_NEW("0", BCON_INT32(1), "1", BCON_UTF8("two"));
    bson_value_t val = {.value_type = BSON_TYPE_DECIMAL128};
    bson_decimal128_from_string("2.5", &val.value.v_decimal128);
    bson_value_t sval = {.value_type = BSON_TYPE_UTF8};
    sval.value.v_utf8.str = "v";
    sval.value.v_utf8.len = 1;
    expect_doc_args(
        "{ s: ?, i: ?, l: ?, f: ?, b: ?, o: ?, d: ?, doc: ?, arr: ?, v: ?, sv: ?, n: "
        "? }",
        MK_ARGS(MK_STR("hello"), MK_I32(-3), MK_I64(INT64_MAX), MK_F64(2.5), MK_BOOL(true),
                MK_OID(&oid), MK_DATE(-1000), MK_DOC(sub), MK_ARRAY(arr), MK_VALUE(&val),
                MK_VALUE(&sval), MK_NULL),
        BCON_NEW("s", BCON_UTF8("hello"), "i", BCON_INT32(-3), "l", BCON_INT64(INT64_MAX), "f",
                 BCON_DOUBLE(2.5), "b", BCON_BOOL(true), "o", BCON_OID(&oid), "d",
                 BCON_DATE_TIME(-1000), "doc", BCON_DOCUMENT(sub), "arr", BCON_ARRAY(arr), "v",
                 BCON_DECIMAL128(&val.value.v_decimal128), "sv", BCON_UTF8("v"), "n", BCON_NULL));
    /* in arrays, nested, next to literals, in operator position */
    expect_doc_args("{ a: [?, 1, ?], b: { $in: ?, $ne: ? }, c: ?}",
                    MK_ARGS(MK_I32(1), MK_STR("x"), MK_ARRAY(arr), MK_NULL, MK_BOOL(false)),
                    BCON_NEW("a", "[", BCON_INT32(1), BCON_INT32(1), BCON_UTF8("x"), "]", "b", "{",
                             "$in", BCON_ARRAY(arr), "$ne", BCON_NULL, "}", "c", BCON_BOOL(false)));
    /* a '?' inside a string or a comment is not a placeholder */
    expect_doc_args("{ a: '?', /* ? */ b: ? // ?\n }", MK_ARGS(MK_I32(9)),
                    BCON_NEW("a", BCON_UTF8("?"), "b", BCON_INT32(9)));
    /* an empty string and an empty document are fine */
    bson_t empty = BSON_INITIALIZER;
    expect_doc_args("{ a: ?, b: ? }", MK_ARGS(MK_STR(""), MK_DOC(&empty)),
                    BCON_NEW("a", BCON_UTF8(""), "b", "{", "}"));
    /* a top-level array with placeholders */
    bson_t out = BSON_INITIALIZER;
    bool is_array;
    mk_error_t err = {0};
    assert_int_equal(
        mk_json_parse_into(&out, "[?, ?]", 6, MK_ARGS(MK_I32(1), MK_I32(2)), &is_array, &err),
        MK_OK);
    bson_t *want = BCON_NEW("0", BCON_INT32(1), "1", BCON_INT32(2));
    assert_true(bson_equal(&out, want));
    bson_destroy(want);
    bson_destroy(&out);
    bson_destroy(sub);
    bson_destroy(arr);
}

static void test_placeholders_injection(void **state)
{
    (void)state;
    /* Hostile strings stay strings: never operators, keys, or more text. */
    const char *hostile[] = {
        "{ $gt: '' }",
        "{\"$ne\": null}",
        "'; db.dropDatabase(); '",
        "\", $where: \"1 == 1",
        "' }, $or: [ { a: 1 } ], x: { '",
        "?",
        "$gt",
        "ObjectId('0123456789abcdef01234567')",
        "/.*/",
        "\\u0000",
        "// comment",
        "*/ } { /*",
        "{ $oid: '0123456789abcdef01234567' }",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        expect_doc_args("{ name: ?, pass: { $eq: ? } }",
                        MK_ARGS(MK_STR(hostile[i]), MK_STR(hostile[i])),
                        BCON_NEW("name", BCON_UTF8(hostile[i]), "pass", "{", "$eq",
                                 BCON_UTF8(hostile[i]), "}"));
    }
    /* the classic login bypass: the bound document is the program's, a string never is */
    bson_t *got =
        mk_bson(NULL, "{ user: ?, password: ? }", MK_STR("admin"), MK_STR("{ \"$gt\": \"\" }"));
    assert_non_null(got);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, got, "password"));
    assert_int_equal(bson_iter_type(&it), BSON_TYPE_UTF8);
    assert_string_equal(bson_iter_utf8(&it, NULL), "{ \"$gt\": \"\" }");
    bson_destroy(got);
}

static void test_placeholder_errors(void **state)
{
    (void)state;
    expect_err("{ a: ? }", "line 1, column 6: too few arguments for placeholders: placeholder 1 "
                           "has no argument (0 given)");
    expect_err_args("{ a: ?, b: ? }", MK_ARGS(MK_I32(1)),
                    "line 1, column 12: too few arguments for placeholders: placeholder 2 has no "
                    "argument (1 given)");
    expect_err_args("{ a: ? }", MK_ARGS(MK_I32(1), MK_I32(2)),
                    "line 1, column 9: 1 placeholders but 2 arguments");
    expect_err_args("{ a: 1 }", MK_ARGS(MK_I32(1)),
                    "line 1, column 9: 0 placeholders but 1 arguments");
    expect_err_args("{ ?: 1 }", MK_ARGS(MK_STR("k")),
                    "line 1, column 3: a placeholder '?' is not allowed in key position");
    expect_err_args("{ a: 1, ?: 1 }", MK_ARGS(MK_STR("k")),
                    "line 1, column 9: a placeholder '?' is not allowed in key position");
    expect_err_args("{ a: ObjectId(?) }", MK_ARGS(MK_STR("0123456789abcdef01234567")),
                    "line 1, column 15: a placeholder '?' is not allowed inside ObjectId()");
    expect_err_args("{ a: -? }", MK_ARGS(MK_I32(1)), "line 1, column 6: invalid number '-'");
    /* bound strings are validated */
    expect_err_args("{ a: ? }", MK_ARGS(MK_STR("bad \xC3\x28")),
                    "line 1, column 6: argument 1: the string is not valid UTF-8");
    expect_err_args("{ a: ? }", MK_ARGS(MK_STR(NULL)), "line 1, column 6: argument 1: NULL string");
    expect_err_args("{ a: ? }", MK_ARGS(MK_OID(NULL)),
                    "line 1, column 6: argument 1: NULL ObjectId");
    expect_err_args("{ a: ? }", MK_ARGS(MK_DOC(NULL)),
                    "line 1, column 6: argument 1: NULL document");
    expect_err_args("{ a: ? }", MK_ARGS(MK_VALUE(NULL)),
                    "line 1, column 6: argument 1: NULL value");
    mk_arg_t bad_type[] = {{.type = (mk_arg_type_t)99}, MK_END};
    expect_err_args("{ a: ? }", bad_type, "line 1, column 6: argument 1: unknown argument type 99");

    /* bound documents are validated: corrupt bytes, bad UTF-8 inside, array keys */
    static const uint8_t corrupt[] = {14, 0, 0, 0, 2, 'a', 0, 100, 0, 0, 0, 'x', 0, 0};
    bson_t bad;
    assert_true(bson_init_static(&bad, corrupt, sizeof corrupt)); /* a string runs past the end */
    expect_err_args("{ a: ? }", MK_ARGS(MK_DOC(&bad)),
                    "line 1, column 6: argument 1 is not "
                    "valid BSON*");
    bson_t badutf = BSON_INITIALIZER;
    bson_append_utf8(&badutf, "s", -1, "\xFF\xFE", 2);
    expect_err_args("{ a: ? }", MK_ARGS(MK_DOC(&badutf)),
                    "line 1, column 6: argument 1 contains invalid UTF-8");
    bson_destroy(&badutf);
    bson_t *notarr = BCON_NEW("x", BCON_INT32(1));
    expect_err_args("{ a: ? }", MK_ARGS(MK_ARRAY(notarr)),
                    "line 1, column 6: argument 1 is not an array: its keys must be \"0\", \"1\", "
                    "...");
    bson_destroy(notarr);
    bson_value_t v = {.value_type = BSON_TYPE_UTF8};
    v.value.v_utf8.str = "\xC3";
    v.value.v_utf8.len = 1;
    expect_err_args("{ a: ? }", MK_ARGS(MK_VALUE(&v)),
                    "line 1, column 6: argument 1: malformed bson_value_t value");
    v.value_type = BSON_TYPE_EOD;
    expect_err_args("{ a: ? }", MK_ARGS(MK_VALUE(&v)),
                    "line 1, column 6: argument 1: unsupported BSON type 0x00");
    v.value_type = BSON_TYPE_REGEX;
    v.value.v_regex.regex = "x";
    v.value.v_regex.options = "g";
    expect_err_args("{ a: ? }", MK_ARGS(MK_VALUE(&v)),
                    "line 1, column 6: argument 1: malformed regex value");

    /* a bound document counts toward the nesting limit */
    bson_t *deep = bson_new();
    for (int i = 0; i < 99; i++) {
        bson_t *outer = bson_new();
        bson_append_document(outer, "d", -1, deep);
        bson_destroy(deep);
        deep = outer;
    } /* depth 100 */
    expect_err_args("{ a: ? }", MK_ARGS(MK_DOC(deep)),
                    "line 1, column 6: nesting depth exceeds 100");
    bson_t *ok = mk_bson(NULL, "[?]", MK_DOC(deep));
    assert_null(ok); /* mk_json_parse takes documents only */
    bson_t out = BSON_INITIALIZER;
    bool is_array;
    assert_int_equal(
        mk_json_parse_into(&out, "{ a: ? }", 8, MK_ARGS(MK_DOC(deep)), &is_array, NULL), MK_ERR);
    bson_destroy(&out);
    bson_t *shallow = bson_new();
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, deep, "d"));
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t inner;
    assert_true(bson_init_static(&inner, data, len)); /* depth 99 */
    bson_t *fits = mk_bson(NULL, "{ a: ? }", MK_DOC(&inner));
    assert_non_null(fits);
    bson_destroy(fits);
    bson_destroy(shallow);
    bson_destroy(deep);
}

/* ---------- errors with positions ---------- */

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_err("", "line 1, column 1: expected '{' at the start of the document, found end of "
                   "input");
    expect_err("   // only a comment\n", "line 2, column 1: expected '{' at the start of the "
                                         "document, found end of input");
    expect_err("{", "line 1, column 2: expected a key or '}', found end of input");
    expect_err("{ a", "line 1, column 4: expected ':' after key \"a\", found end of input");
    expect_err("{ name 'x' }", "line 1, column 8: expected ':' after key \"name\", found '''");
    expect_err("{ a: }", "line 1, column 6: expected a value, found '}'");
    expect_err("{ a: 1 b: 2 }", "line 1, column 8: expected ',' or '}' after the value of key "
                                "\"a\", found 'b'");
    expect_err("{ a: 1,, b: 2 }", "line 1, column 8: expected a key or '}', found ','");
    expect_err("{ , }", "line 1, column 3: expected a key or '}', found ','");
    expect_err("{ a: [1, 2 }", "line 1, column 12: expected ',' or ']' after array element 1, "
                               "found '}'");
    expect_err("{ a: 'x }", "line 1, column 6: unterminated string");
    expect_err("{ a: 'x\ny' }", "line 1, column 6: unterminated string");
    expect_err("{ a: \"x' }", "line 1, column 6: unterminated string");
    expect_err("{ a: 1 /* never closed", "line 1, column 8: unterminated comment");
    expect_err("{ a: 1 } x", "line 1, column 10: expected the end of input after the document, "
                             "found 'x'");
    expect_err("{ a: 1 } {}", "line 1, column 10: expected the end of input after the document, "
                              "found '{'");
    expect_err("{ a.b: 1 }", "line 1, column 4: expected ':' after key \"a\", found '.'");
    expect_err("{ 'a\\u0000b': 1 }", "line 1, column 3: a key cannot contain a NUL character");
    /* escapes */
    expect_err("{ a: '\\x4' }", "line 1, column 7: invalid \\x escape: expected 2 hex digits");
    expect_err("{ a: '\\u12' }", "line 1, column 7: invalid \\u escape: expected 4 hex digits");
    expect_err("{ a: '\\u{110000}' }", "line 1, column 7: invalid \\u{...} escape");
    expect_err("{ a: '\\uD83D' }", "line 1, column 7: invalid \\u escape: lone surrogate");
    expect_err("{ a: '\\uD83Dx' }", "line 1, column 7: invalid \\u escape: lone surrogate");
    expect_err("{ a: '\\uDE00' }", "line 1, column 7: invalid \\u escape: lone surrogate");
    expect_err("{ a: '\\uD83D\\u0041' }", "line 1, column 7: invalid \\u escape: lone surrogate");
    expect_err("{ a: '\\12' }", "line 1, column 7: octal escape sequences are not allowed");
    expect_err("{ a: '\\01' }", "line 1, column 7: octal escape sequences are not allowed");
    /* lines and columns: columns count characters, not bytes */
    expect_err("{\n  name: 'x',\n  bad: ObjectId('123')\n}",
               "line 3, column 17: invalid ObjectId '123': must be 24 hex characters");
    expect_err("{ é: 'ü', x: foo }", "line 1, column 14: unknown identifier 'foo'");
    expect_err("{ a: 1,\r\n  b: nope }", "line 2, column 6: unknown identifier 'nope'");
    expect_err("{ a: 1,\r  b: nope }", "line 2, column 6: unknown identifier 'nope'");
    expect_err("{ a: '😀😀', b: ? }", "line 1, column 15: too few arguments*");
    /* a long token is cut in the message */
    char text[300];
    snprintf(text, sizeof text, "{ a: 1%0199dz }", 0);
    expect_err(text, "line 1, column 6: invalid number '1000000000*");
}

static void test_invalid_utf8_and_nul(void **state)
{
    (void)state;
    expect_err("{ a: 'x\xFFy' }", "line 1, column 8: invalid UTF-8 in string");
    expect_err("{ a: '\xC0\x80' }", "line 1, column 7: invalid UTF-8 in string"); /* overlong */
    expect_err("{ a: '\xED\xA0\x80' }",
               "line 1, column 7: invalid UTF-8 in string"); /* surrogate */
    expect_err("{ a: '\xF4\x90\x80\x80' }", "line 1, column 7: invalid UTF-8 in string");
    expect_err("{ a: '\xE2\x82' }", "line 1, column 7: invalid UTF-8 in string"); /* truncated */
    expect_err("{ a: 'esc\\n\xFF' }", "line 1, column 12: invalid UTF-8 in string");
    expect_err("{ k\xFF: 1 }", "line 1, column 4: invalid UTF-8 in input");
    expect_err("{ \xFF: 1 }", "line 1, column 3: invalid UTF-8 in input");
    expect_err("{ a: 1 } // \xFF", "line 1, column 13: invalid UTF-8 in input");
    expect_err("{ a: 1 /* \xFF */ }", "line 1, column 11: invalid UTF-8 in input");
    expect_err("{ a: /\xFF/ }", "line 1, column 7: invalid UTF-8 in regular expression");
    expect_err("{ a: \xFF }", "line 1, column 6: invalid UTF-8 in input");
    /* NUL bytes within len */
    expect_err_len("{ a: 1 }\0", 9, "line 1, column 9: NUL byte in input");
    expect_err_len("{ a: 'x\0y' }", 12, "line 1, column 8: NUL byte in input");
    expect_err_len("{ a\0: 1 }", 9, "line 1, column 4: NUL byte in input");
    expect_err_len("{ a: \0 }", 8, "line 1, column 6: NUL byte in input");
    expect_err_len("{ a: 1 // \0\n}", 13, "line 1, column 11: NUL byte in input");
    expect_err_len("{ a: '\\\0' }", 11, "line 1, column 8: NUL byte in input");
    expect_err_len("{ a: /x\0/ }", 11, "line 1, column 8: NUL byte in input");
    /* len is honoured: bytes past it are not read */
    bson_t out = BSON_INITIALIZER;
    mk_error_t err = {0};
    assert_int_equal(mk_json_parse_into(&out, "{ a: 1 }garbage", 8, NULL, NULL, &err), MK_OK);
    bson_destroy(&out);
}

/* ---------- limits ---------- */

static char *nested(const char *open, const char *close, int depth, const char *inner)
{
    size_t ol = strlen(open), cl = strlen(close), il = strlen(inner);
    char *s = malloc((size_t)depth * (ol + cl) + il + 1), *p = s;
    assert_non_null(s);
    for (int i = 0; i < depth; i++) memcpy(p, open, ol), p += ol;
    memcpy(p, inner, il), p += il;
    for (int i = 0; i < depth; i++) memcpy(p, close, cl), p += cl;
    *p = '\0';
    return s;
}

static void test_depth_limit(void **state)
{
    (void)state;
    /* the top-level document is depth 1: 99 more levels are fine, 100 are too many */
    char *s = nested("{a:", "}", 99, "{}");
    bson_t *b = tu_bson(s);
    bson_destroy(b);
    free(s);
    s = nested("{a:", "}", 100, "{}");
    expect_err(s, "line 1, column 301: nesting depth exceeds 100");
    free(s);
    /* arrays count too */
    s = nested("[", "]", 99, "1");
    char *t = malloc(strlen(s) + 16);
    sprintf(t, "{ a: %s }", s);
    b = tu_bson(t);
    bson_destroy(b);
    free(s);
    free(t);
    s = nested("{a:[", "]}", 50, "[1]"); /* 101 levels */
    expect_err(s, "line 1, column 201: nesting depth exceeds 100");
    free(s);
    /* an Extended JSON value is a scalar: it does not add a level */
    s = nested("{a:", "}", 99, "{ $oid: '0123456789abcdef01234567' }");
    b = tu_bson(s);
    bson_destroy(b);
    free(s);
    /* $scope is a document: it does */
    s = nested("{a:", "}", 99, "{ $code: 'f', $scope: {} }");
    b = tu_bson(s);
    bson_destroy(b);
    free(s);
    s = nested("{a:", "}", 100, "{ $code: 'f', $scope: {} }");
    expect_err(s, "line 1, column 323: nesting depth exceeds 100");
    free(s);
    /* hostile depth: a million levels fail fast without exhausting the stack */
    int million = 1000000;
    s = nested("[", "]", million, "");
    bool is_array;
    expect_err_(s, strlen(s), NULL, &is_array, "line 1, column 101: nesting depth exceeds 100",
                __FILE__, __LINE__);
    free(s);
    s = nested("{a:", "}", million, "1");
    expect_err(s, "line 1, column 301: nesting depth exceeds 100");
    free(s);
}

static void test_size_limit(void **state)
{
    (void)state;
    /* { a: "<n bytes>" } is 13 + n bytes of BSON: exactly 16 MiB is allowed */
    size_t n = MK_MAX_BSON_SIZE - 13;
    char *text = malloc(n + 32);
    assert_non_null(text);
    memcpy(text, "{ a: '", 6);
    memset(text + 6, 'x', n);
    strcpy(text + 6 + n, "' }");
    bson_t *b = tu_bson(text);
    assert_int_equal(b->len, MK_MAX_BSON_SIZE);
    bson_destroy(b);
    strcpy(text + 6 + n, "x' }");
    mk_error_t err = {0};
    b = mk_json_parse(text, NULL, &err);
    assert_null(b);
    assert_int_equal(err.code, MK_CODE_BSON_OBJECT_TOO_LARGE);
    assert_string_equal(err.kind, "BSONObjectTooLarge");
    assert_string_equal(err.message,
                        "line 1, column 3: document exceeds the maximum BSON size of 16777216 "
                        "bytes");
    free(text);

    /* many small elements in nested arrays: the total counts, not each level */
    size_t count = 1500000; /* ~ 1.5M * 12 bytes */
    text = malloc(count * 2 + 64);
    assert_non_null(text);
    char *p = text + sprintf(text, "{ a: { b: [");
    for (size_t i = 0; i < count; i++) *p++ = '1', *p++ = ',';
    strcpy(p, "] } }");
    memset(&err, 0, sizeof err);
    b = mk_json_parse(text, NULL, &err);
    assert_null(b);
    assert_int_equal(err.code, MK_CODE_BSON_OBJECT_TOO_LARGE);
    free(text);

    /* bound arguments count too */
    size_t big = MK_MAX_BSON_SIZE / 2;
    char *s = malloc(big + 1);
    assert_non_null(s);
    memset(s, 'y', big);
    s[big] = '\0';
    memset(&err, 0, sizeof err);
    b = mk_json_parse("{ a: ?, b: ?, c: ? }", MK_ARGS(MK_STR(s), MK_STR(s), MK_STR(s)), &err);
    assert_null(b);
    assert_int_equal(err.code, MK_CODE_BSON_OBJECT_TOO_LARGE);
    assert_string_equal(err.message,
                        "line 1, column 9: document exceeds the maximum BSON size of 16777216 "
                        "bytes");
    free(s);
}

/* ---------- API contract ---------- */

static void test_failure_leaves_output_empty(void **state)
{
    (void)state;
    bson_t out;
    bson_init(&out);
    mk_error_t err = {0};
    const char *bad = "{ a: { b: [ { c: 1 }, { d: [ 1, 2, nope ] } ] } }";
    assert_int_equal(mk_json_parse_into(&out, bad, strlen(bad), NULL, NULL, &err), MK_ERR);
    assert_int_equal(out.len, 5);
    assert_string_equal(err.message, "line 1, column 36: unknown identifier 'nope'");
    /* the same bson_t is usable again */
    const char *good = "{ x: [1] }";
    assert_int_equal(mk_json_parse_into(&out, good, strlen(good), NULL, NULL, &err), MK_OK);
    bson_t *want = BCON_NEW("x", "[", BCON_INT32(1), "]");
    assert_true(bson_equal(&out, want));
    bson_destroy(want);
    /* a non-empty output is refused */
    assert_int_equal(mk_json_parse_into(&out, good, strlen(good), NULL, NULL, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    bson_destroy(&out);

    /* failure after the scratch buffer moved to the heap: nothing leaks (LSan checks) */
    char *text = malloc(4096);
    assert_non_null(text);
    char *p = text + sprintf(text, "{ a: '");
    for (int i = 0; i < 1000; i++) *p++ = '\\', *p++ = 't';
    strcpy(p, "', b: oops }");
    expect_err(text, "line 1, column 2013: unknown identifier 'oops'");
    free(text);

    /* mk_json_parse: NULL on failure, err optional */
    assert_null(mk_json_parse("{ a: }", NULL, NULL));
    assert_null(mk_json_parse(NULL, NULL, &err));
    assert_int_equal(err.code, MK_CODE_BAD_VALUE);
    bson_init(&out);
    assert_int_equal(mk_json_parse_into(&out, NULL, 0, NULL, NULL, &err), MK_ERR);
    assert_string_equal(err.message, "line 1, column 1: expected '{' at the start of the "
                                     "document, found end of input");
    bson_destroy(&out);
}

static void test_from_bson(void **state)
{
    (void)state;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, "0123456789abcdef01234567");
    bson_t *b = BCON_NEW("_id", BCON_OID(&oid), "n", BCON_INT32(1), "l", BCON_INT64(2), "d",
                         BCON_DOUBLE(1.5), "s", BCON_UTF8("x\"y"), "t", BCON_DATE_TIME(0));
    char *json = mk_json_from_bson(b);
    assert_non_null(json);
    assert_string_equal(json, "{ \"_id\" : { \"$oid\" : \"0123456789abcdef01234567\" }, \"n\" : 1, "
                              "\"l\" : 2, \"d\" : 1.5, \"s\" : \"x\\\"y\", \"t\" : { \"$date\" : "
                              "\"1970-01-01T00:00:00Z\" } }");
    /* and it parses back (relaxed JSON loses int64-ness of small numbers, as in mongosh) */
    bson_t *back = tu_bson(json);
    bson_t *want = BCON_NEW("_id", BCON_OID(&oid), "n", BCON_INT32(1), "l", BCON_INT32(2), "d",
                            BCON_DOUBLE(1.5), "s", BCON_UTF8("x\"y"), "t", BCON_DATE_TIME(0));
    assert_true(bson_equal(back, want));
    bson_destroy(want);
    bson_destroy(back);
    bson_free(json);
    bson_destroy(b);
    assert_null(mk_json_from_bson(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_syntax),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_number_boundaries),
        cmocka_unit_test(test_number_forms),
        cmocka_unit_test(test_number_errors),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_objectid),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_number_constructors),
        cmocka_unit_test(test_binary_constructors),
        cmocka_unit_test(test_timestamp_and_regexp_constructors),
        cmocka_unit_test(test_regex_literals),
        cmocka_unit_test(test_extended_json_canonical),
        cmocka_unit_test(test_extended_json_relaxed),
        cmocka_unit_test(test_extended_json_errors),
        cmocka_unit_test(test_top_level_array),
        cmocka_unit_test(test_placeholders_every_type),
        cmocka_unit_test(test_placeholders_injection),
        cmocka_unit_test(test_placeholder_errors),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_invalid_utf8_and_nul),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_failure_leaves_output_empty),
        cmocka_unit_test(test_from_bson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
