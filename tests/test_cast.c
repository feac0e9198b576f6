/* Mongoose 8 casting of single values (src/odm/cast.c), table-driven. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "odm/cast.h"

/* The value of field "v" of a relaxed-JSON document. */
static bson_t *holder;
static const bson_value_t *val(const char *json)
{
    if (holder) bson_destroy(holder);
    holder = tu_bson(json);
    static bson_iter_t it; /* bson_iter_value points into the iterator */
    assert_true(bson_iter_init_find(&it, holder, "v"));
    return bson_iter_value(&it);
}

typedef struct {
    mk_cast_type_t to;
    const char *in;     /* "{ v: ... }" */
    const char *expect; /* "{ v: ... }" the cast value, NULL when it is a CastError */
    bson_type_t type;   /* expected BSON type of the result */
} ok_case_t;

static void check_ok(const ok_case_t *c)
{
    bson_value_t out;
    mk_error_t err = {0};
    int rc = mk_cast_value(c->to, val(c->in), &out, &err);
    if (rc != MK_OK) fail_msg("%s as %s: %s", c->in, mk_cast_kind(c->to), err.message);
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&doc, "v", &out);
    if (out.value_type != c->type)
        fail_msg("%s as %s: type %d, want %d", c->in, mk_cast_kind(c->to), out.value_type, c->type);
    tu_assert_bson_eq(&doc, c->expect);
    bson_destroy(&doc);
    bson_value_destroy(&out);
}

static void test_casts_ok(void **state)
{
    static const ok_case_t cases[] = {
        /* nullish pass through */
        {MK_CAST_NUMBER, "{ v: null }", "{ v: null }", BSON_TYPE_NULL},
        {MK_CAST_STRING, "{ v: undefined }", "{ v: null }", BSON_TYPE_NULL},
        {MK_CAST_OBJECTID, "{ v: null }", "{ v: null }", BSON_TYPE_NULL},
        /* String */
        {MK_CAST_STRING, "{ v: 'x' }", "{ v: 'x' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: 42 }", "{ v: '42' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: 1.5 }", "{ v: '1.5' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: 1e21 }", "{ v: '1e+21' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: 0.000001 }", "{ v: '0.000001' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: 1e-7 }", "{ v: '1e-7' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: 0.1 }", "{ v: '0.1' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: -0.0 }", "{ v: '0' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: NumberLong(123456789012) }", "{ v: '123456789012' }",
         BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: true }", "{ v: 'true' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: ObjectId('5dd57639649ce0bd87750caa') }",
         "{ v: '5dd57639649ce0bd87750caa' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: NumberDecimal('1.50') }", "{ v: '1.50' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: { _id: 'abc', n: 1 } }", "{ v: 'abc' }", BSON_TYPE_UTF8},
        {MK_CAST_STRING, "{ v: /a.b/i }", "{ v: '/a.b/i' }", BSON_TYPE_UTF8},
        /* Number */
        {MK_CAST_NUMBER, "{ v: '42' }", "{ v: 42 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: ' 42 ' }", "{ v: 42 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: '1e3' }", "{ v: 1000 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: '0x10' }", "{ v: 16 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: '0b101' }", "{ v: 5 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: '-1.5' }", "{ v: -1.5 }", BSON_TYPE_DOUBLE},
        {MK_CAST_NUMBER, "{ v: '.5' }", "{ v: 0.5 }", BSON_TYPE_DOUBLE},
        {MK_CAST_NUMBER, "{ v: '' }", "{ v: null }", BSON_TYPE_NULL},
        {MK_CAST_NUMBER, "{ v: '  ' }", "{ v: 0 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: '3000000000' }", "{ v: 3000000000 }", BSON_TYPE_DOUBLE},
        {MK_CAST_NUMBER, "{ v: true }", "{ v: 1 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: false }", "{ v: 0 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: 2.0 }", "{ v: 2 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: NumberLong(7) }", "{ v: 7 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: new Date(86400000) }", "{ v: 86400000 }", BSON_TYPE_INT32},
        {MK_CAST_NUMBER, "{ v: NumberDecimal('2.5') }", "{ v: 2.5 }", BSON_TYPE_DOUBLE},
        {MK_CAST_NUMBER, "{ v: '-0' }", "{ v: 0 }", BSON_TYPE_DOUBLE},
        /* Boolean */
        {MK_CAST_BOOLEAN, "{ v: 'true' }", "{ v: true }", BSON_TYPE_BOOL},
        {MK_CAST_BOOLEAN, "{ v: 'yes' }", "{ v: true }", BSON_TYPE_BOOL},
        {MK_CAST_BOOLEAN, "{ v: '1' }", "{ v: true }", BSON_TYPE_BOOL},
        {MK_CAST_BOOLEAN, "{ v: 1 }", "{ v: true }", BSON_TYPE_BOOL},
        {MK_CAST_BOOLEAN, "{ v: 1.0 }", "{ v: true }", BSON_TYPE_BOOL},
        {MK_CAST_BOOLEAN, "{ v: 'no' }", "{ v: false }", BSON_TYPE_BOOL},
        {MK_CAST_BOOLEAN, "{ v: '0' }", "{ v: false }", BSON_TYPE_BOOL},
        {MK_CAST_BOOLEAN, "{ v: 0 }", "{ v: false }", BSON_TYPE_BOOL},
        {MK_CAST_BOOLEAN, "{ v: 'false' }", "{ v: false }", BSON_TYPE_BOOL},
        {MK_CAST_BOOLEAN, "{ v: false }", "{ v: false }", BSON_TYPE_BOOL},
        /* Date */
        {MK_CAST_DATE, "{ v: 0 }", "{ v: new Date(0) }", BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: 1.9 }", "{ v: new Date(1) }", BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '1577836800000' }", "{ v: new Date(1577836800000) }",
         BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '2020' }", "{ v: new Date(1577836800000) }", BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '2020-01-01' }", "{ v: new Date(1577836800000) }",
         BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '2020-01' }", "{ v: new Date(1577836800000) }", BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '2020-01-01T00:00:00.123Z' }", "{ v: new Date(1577836800123) }",
         BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '2020-01-01T00:00:00.1239Z' }", "{ v: new Date(1577836800123) }",
         BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '2020-01-01T02:00+02:00' }", "{ v: new Date(1577836800000) }",
         BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '2020-01-01T00:00:00' }", "{ v: new Date(1577836800000) }",
         BSON_TYPE_DATE_TIME}, /* local time; the test runs with TZ=UTC */
        {MK_CAST_DATE, "{ v: '2019-12-31T24:00:00Z' }", "{ v: new Date(1577836800000) }",
         BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '2019-11-31' }", "{ v: new Date(1575158400000) }",
         BSON_TYPE_DATE_TIME}, /* V8 rolls day 31 of November into December 1 */
        {MK_CAST_DATE, "{ v: '-000001-01-01T00:00:00Z' }", "{ v: new Date(-62198755200000) }",
         BSON_TYPE_DATE_TIME},
        {MK_CAST_DATE, "{ v: '' }", "{ v: null }", BSON_TYPE_NULL},
        {MK_CAST_DATE, "{ v: new Date(5) }", "{ v: new Date(5) }", BSON_TYPE_DATE_TIME},
        /* ObjectId */
        {MK_CAST_OBJECTID, "{ v: '5dd57639649ce0bd87750caa' }",
         "{ v: ObjectId('5dd57639649ce0bd87750caa') }", BSON_TYPE_OID},
        {MK_CAST_OBJECTID, "{ v: '5DD57639649CE0BD87750CAA' }",
         "{ v: ObjectId('5dd57639649ce0bd87750caa') }", BSON_TYPE_OID},
        {MK_CAST_OBJECTID, "{ v: { _id: ObjectId('5dd57639649ce0bd87750caa'), name: 'x' } }",
         "{ v: ObjectId('5dd57639649ce0bd87750caa') }", BSON_TYPE_OID},
        {MK_CAST_OBJECTID, "{ v: { _id: '5dd57639649ce0bd87750caa' } }",
         "{ v: ObjectId('5dd57639649ce0bd87750caa') }", BSON_TYPE_OID},
        {MK_CAST_OBJECTID, "{ v: ObjectId('5dd57639649ce0bd87750caa') }",
         "{ v: ObjectId('5dd57639649ce0bd87750caa') }", BSON_TYPE_OID},
        /* Buffer */
        {MK_CAST_BUFFER, "{ v: 'ab' }", "{ v: BinData(0, 'YWI=') }", BSON_TYPE_BINARY},
        {MK_CAST_BUFFER, "{ v: [97, 98, 354, -1, 'x'] }", "{ v: BinData(0, 'YWJi/wA=') }",
         BSON_TYPE_BINARY},
        {MK_CAST_BUFFER, "{ v: 65 }", "{ v: BinData(0, 'QQ==') }", BSON_TYPE_BINARY},
        {MK_CAST_BUFFER, "{ v: { type: 'Buffer', data: [97] } }", "{ v: BinData(0, 'YQ==') }",
         BSON_TYPE_BINARY},
        {MK_CAST_BUFFER, "{ v: BinData(5, 'YQ==') }", "{ v: BinData(5, 'YQ==') }",
         BSON_TYPE_BINARY},
        /* Decimal128 */
        {MK_CAST_DECIMAL128, "{ v: '1.50' }", "{ v: NumberDecimal('1.50') }", BSON_TYPE_DECIMAL128},
        {MK_CAST_DECIMAL128, "{ v: 0.1 }", "{ v: NumberDecimal('0.1') }", BSON_TYPE_DECIMAL128},
        {MK_CAST_DECIMAL128, "{ v: 42 }", "{ v: NumberDecimal('42') }", BSON_TYPE_DECIMAL128},
        {MK_CAST_DECIMAL128, "{ v: { $numberDecimal: '7' } }", "{ v: NumberDecimal('7') }",
         BSON_TYPE_DECIMAL128},
        /* BigInt */
        {MK_CAST_BIGINT, "{ v: '42' }", "{ v: NumberLong(42) }", BSON_TYPE_INT64},
        {MK_CAST_BIGINT, "{ v: ' -9223372036854775808 ' }",
         "{ v: NumberLong('-9223372036854775808') }", BSON_TYPE_INT64},
        {MK_CAST_BIGINT, "{ v: '0x10' }", "{ v: NumberLong(16) }", BSON_TYPE_INT64},
        {MK_CAST_BIGINT, "{ v: 42.0 }", "{ v: NumberLong(42) }", BSON_TYPE_INT64},
        {MK_CAST_BIGINT, "{ v: 7 }", "{ v: NumberLong(7) }", BSON_TYPE_INT64},
        {MK_CAST_BIGINT, "{ v: '' }", "{ v: null }", BSON_TYPE_NULL},
        /* Int32 */
        {MK_CAST_INT32, "{ v: '42' }", "{ v: 42 }", BSON_TYPE_INT32},
        {MK_CAST_INT32, "{ v: 42.0 }", "{ v: 42 }", BSON_TYPE_INT32},
        {MK_CAST_INT32, "{ v: true }", "{ v: 1 }", BSON_TYPE_INT32},
        {MK_CAST_INT32, "{ v: [5] }", "{ v: 5 }", BSON_TYPE_INT32},
        {MK_CAST_INT32, "{ v: -2147483648 }", "{ v: -2147483648 }", BSON_TYPE_INT32},
        {MK_CAST_INT32, "{ v: '' }", "{ v: null }", BSON_TYPE_NULL},
        /* Double */
        {MK_CAST_DOUBLE, "{ v: 42 }", "{ v: 42.0 }", BSON_TYPE_DOUBLE},
        {MK_CAST_DOUBLE, "{ v: '1.5e2' }", "{ v: 150.0 }", BSON_TYPE_DOUBLE},
        {MK_CAST_DOUBLE, "{ v: [ '2.5' ] }", "{ v: 2.5 }", BSON_TYPE_DOUBLE},
        {MK_CAST_DOUBLE, "{ v: true }", "{ v: 1.0 }", BSON_TYPE_DOUBLE},
        /* UUID */
        {MK_CAST_UUID, "{ v: '7c401d91-3852-4818-985d-7e7b79f771c3' }",
         "{ v: UUID('7c401d91-3852-4818-985d-7e7b79f771c3') }", BSON_TYPE_BINARY},
        {MK_CAST_UUID, "{ v: '7C401D91-3852-4818-985D-7E7B79F771C3' }",
         "{ v: UUID('7c401d91-3852-4818-985d-7e7b79f771c3') }", BSON_TYPE_BINARY},
        {MK_CAST_UUID, "{ v: UUID('7c401d91-3852-4818-985d-7e7b79f771c3') }",
         "{ v: UUID('7c401d91-3852-4818-985d-7e7b79f771c3') }", BSON_TYPE_BINARY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_ok(&cases[i]);
}

typedef struct {
    mk_cast_type_t to;
    const char *in;
    const char *path, *model;
    const char *message; /* exact */
} err_case_t;

static void test_cast_errors(void **state)
{
    static const err_case_t cases[] = {
        {MK_CAST_NUMBER, "{ v: 'fail' }", "age", NULL,
         "Cast to Number failed for value \"fail\" (type string) at path \"age\""},
        {MK_CAST_NUMBER, "{ v: 'fail' }", "age", "Character",
         "Cast to Number failed for value \"fail\" (type string) at path \"age\" for model "
         "\"Character\""},
        {MK_CAST_NUMBER, "{ v: 'not a number' }", "age", NULL,
         "Cast to Number failed for value \"not a number\" (type string) at path \"age\""},
        {MK_CAST_NUMBER, "{ v: { a: 1 } }", "age", NULL,
         "Cast to Number failed for value \"{ a: 1 }\" (type Object) at path \"age\""},
        {MK_CAST_NUMBER, "{ v: [1, 2] }", "age", NULL,
         "Cast to Number failed for value \"[ 1, 2 ]\" (type Array) at path \"age\""},
        {MK_CAST_NUMBER, "{ v: [5] }", "age", NULL,
         "Cast to Number failed for value \"[ 5 ]\" (type Array) at path \"age\""},
        {MK_CAST_NUMBER, "{ v: '0x' }", "n", NULL,
         "Cast to Number failed for value \"0x\" (type string) at path \"n\""},
        {MK_CAST_NUMBER, "{ v: '1e' }", "n", NULL,
         "Cast to Number failed for value \"1e\" (type string) at path \"n\""},
        {MK_CAST_NUMBER, "{ v: NaN }", "n", NULL,
         "Cast to Number failed for value \"NaN\" (type number) at path \"n\""},
        {MK_CAST_STRING, "{ v: { a: 'x', 'b-c': [1, { d: { e: 1 } }] } }", "name", NULL,
         "Cast to string failed for value \"{ a: 'x', 'b-c': [ 1, { d: [Object] } ] }\" (type "
         "Object) at path \"name\""},
        {MK_CAST_STRING, "{ v: [] }", "name", NULL,
         "Cast to string failed for value \"[]\" (type Array) at path \"name\""},
        {MK_CAST_STRING, "{ v: {} }", "name", NULL,
         "Cast to string failed for value \"{}\" (type Object) at path \"name\""},
        {MK_CAST_BOOLEAN, "{ v: 'maybe' }", "ok", NULL,
         "Cast to Boolean failed for value \"maybe\" (type string) at path \"ok\" because of "
         "\"CastError\""},
        {MK_CAST_BOOLEAN, "{ v: 2 }", "ok", "M",
         "Cast to Boolean failed for value \"2\" (type number) at path \"ok\" for model \"M\""},
        {MK_CAST_BOOLEAN, "{ v: 'TRUE' }", "ok", "M",
         "Cast to Boolean failed for value \"TRUE\" (type string) at path \"ok\" for model \"M\""},
        {MK_CAST_DATE, "{ v: 'not a date' }", "d", NULL,
         "Cast to date failed for value \"not a date\" (type string) at path \"d\""},
        {MK_CAST_DATE, "{ v: true }", "d", NULL,
         "Cast to date failed for value \"true\" (type boolean) at path \"d\""},
        {MK_CAST_DATE, "{ v: '2020-13-01' }", "d", NULL,
         "Cast to date failed for value \"2020-13-01\" (type string) at path \"d\""},
        {MK_CAST_DATE, "{ v: 9e15 }", "d", NULL,
         "Cast to date failed for value \"9000000000000000\" (type number) at path \"d\""},
        {MK_CAST_OBJECTID, "{ v: 'abc' }", "_id", "Character",
         "Cast to ObjectId failed for value \"abc\" (type string) at path \"_id\" for model "
         "\"Character\""},
        {MK_CAST_OBJECTID, "{ v: 'abc' }", "_id", NULL,
         "Cast to ObjectId failed for value \"abc\" (type string) at path \"_id\" because of "
         "\"BSONError\""},
        {MK_CAST_OBJECTID, "{ v: 42 }", "_id", "M",
         "Cast to ObjectId failed for value \"42\" (type number) at path \"_id\" for model \"M\""},
        {MK_CAST_OBJECTID, "{ v: { a: 1 } }", "_id", "M",
         "Cast to ObjectId failed for value \"{ a: 1 }\" (type Object) at path \"_id\" for "
         "model \"M\""},
        {MK_CAST_BUFFER, "{ v: true }", "b", NULL,
         "Cast to Buffer failed for value \"true\" (type boolean) at path \"b\""},
        {MK_CAST_DECIMAL128, "{ v: 'x1' }", "p", "M",
         "Cast to Decimal128 failed for value \"x1\" (type string) at path \"p\" for model \"M\""},
        {MK_CAST_DECIMAL128, "{ v: true }", "p", NULL,
         "Cast to Decimal128 failed for value \"true\" (type boolean) at path \"p\""},
        {MK_CAST_BIGINT, "{ v: 42.5 }", "n", NULL,
         "Cast to BigInt failed for value \"42.5\" (type number) at path \"n\" because of "
         "\"RangeError\""},
        {MK_CAST_BIGINT, "{ v: '1e3' }", "n", NULL,
         "Cast to BigInt failed for value \"1e3\" (type string) at path \"n\" because of "
         "\"SyntaxError\""},
        {MK_CAST_BIGINT, "{ v: '9223372036854775808' }", "n", NULL,
         "Cast to BigInt failed for value \"9223372036854775808\" (type string) at path \"n\""},
        {MK_CAST_BIGINT, "{ v: true }", "n", NULL,
         "Cast to BigInt failed for value \"true\" (type boolean) at path \"n\""},
        {MK_CAST_INT32, "{ v: 42.5 }", "n", NULL,
         "Cast to Int32 failed for value \"42.5\" (type number) at path \"n\""},
        {MK_CAST_INT32, "{ v: 2147483648 }", "n", NULL,
         "Cast to Int32 failed for value \"2147483648\" (type number) at path \"n\""},
        {MK_CAST_INT32, "{ v: 'abc' }", "n", NULL,
         "Cast to Int32 failed for value \"abc\" (type string) at path \"n\""},
        {MK_CAST_DOUBLE, "{ v: ' 1' }", "n", "M",
         "Cast to Double failed for value \" 1\" (type string) at path \"n\" for model \"M\""},
        {MK_CAST_DOUBLE, "{ v: '0x10' }", "n", "M",
         "Cast to Double failed for value \"0x10\" (type string) at path \"n\" for model \"M\""},
        {MK_CAST_DOUBLE, "{ v: [1, 2] }", "n", NULL,
         "Cast to Double failed for value \"[ 1, 2 ]\" (type Array) at path \"n\""},
        {MK_CAST_UUID, "{ v: 'nope' }", "u", NULL,
         "Cast to UUID failed for value \"nope\" (type string) at path \"u\""},
        {MK_CAST_UUID, "{ v: 'x7c401d91-3852-4818-985d-7e7b79f771c3' }", "u", NULL,
         "Cast to UUID failed for value \"x7c401d91-3852-4818-985d-7e7b79f771c3\" (type string) "
         "at path \"u\" because of \"BSONError\""},
        {MK_CAST_UUID, "{ v: '7c401d91-3852-c818-985d-7e7b79f771c3' }", "u", NULL,
         "Cast to UUID failed for value \"7c401d91-3852-c818-985d-7e7b79f771c3\" (type string) "
         "at path \"u\""},
        /* how strings are shown: quotes and escapes as util.inspect */
        {MK_CAST_NUMBER, "{ v: \"it's\" }", "n", NULL,
         "Cast to Number failed for value \"it's\" (type string) at path \"n\""},
        {MK_CAST_NUMBER, "{ v: 'a\\nb' }", "n", NULL,
         "Cast to Number failed for value \"a\\nb\" (type string) at path \"n\""},
        {MK_CAST_NUMBER, "{ v: ObjectId('5dd57639649ce0bd87750caa') }", "n", NULL,
         "Cast to Number failed for value \"new ObjectId('5dd57639649ce0bd87750caa')\" (type "
         "ObjectId) at path \"n\""},
        {MK_CAST_BOOLEAN, "{ v: new Date(0) }", "n", "M",
         "Cast to Boolean failed for value \"1970-01-01T00:00:00.000Z\" (type Date) at path "
         "\"n\" for model \"M\""},
        {MK_CAST_DATE, "{ v: BinData(0, 'YWI=') }", "n", NULL,
         "Cast to date failed for value \"<Buffer 61 62>\" (type Buffer) at path \"n\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const err_case_t *c = &cases[i];
        bson_value_t out;
        mk_error_t err = {0};
        int rc = mk_cast_value_at(c->to, val(c->in), c->path, c->model, &out, &err);
        if (rc != MK_ERR) fail_msg("%s as %s: expected a CastError", c->in, mk_cast_kind(c->to));
        assert_int_equal(out.value_type, BSON_TYPE_NULL);
        assert_string_equal(err.kind, "CastError");
        if (strcmp(err.message, c->message) != 0)
            fail_msg("got  %s\nwant %s", err.message, c->message);
    }
}

static void test_js_helpers(void **state)
{
    char b[32];
    mk_cast_js_number_string(123456789012345680000.0, b);
    assert_string_equal(b, "123456789012345680000");
    mk_cast_js_number_string(-1.5e-7, b);
    assert_string_equal(b, "-1.5e-7");
    mk_cast_js_number_string(5e-324, b);
    assert_string_equal(b, "5e-324");
    mk_cast_js_number_string(1.7976931348623157e308, b);
    assert_string_equal(b, "1.7976931348623157e+308");
    assert_true(isinf(mk_cast_js_string_number("-Infinity", 9)));
    assert_true(isnan(mk_cast_js_string_number("-0x10", 5)));
    assert_true(isnan(mk_cast_js_string_number("infinity", 8)));
    assert_true(mk_cast_js_string_number("\xc2\xa0 7\n", 5) == 7);
    int64_t ms;
    assert_false(mk_cast_parse_date("2020-01-01T25:00Z", 17, &ms));
    assert_false(mk_cast_parse_date("20-01-01", 8, &ms));
    assert_false(mk_cast_parse_date("2020-01-01T10:00:00.Z", 21, &ms));
    assert_true(mk_cast_parse_date("+275760-09-13T00:00:00Z", 23, &ms));
    assert_true(ms == 8640000000000000LL);
    assert_false(mk_cast_parse_date("+275760-09-13T00:00:00.001Z", 27, &ms));
}

static void test_no_err_out(void **state)
{
    bson_value_t out;
    assert_int_equal(mk_cast_value(MK_CAST_NUMBER, val("{ v: 'x' }"), &out, NULL), MK_ERR);
    assert_int_equal(out.value_type, BSON_TYPE_NULL);
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_casts_ok),
        cmocka_unit_test(test_cast_errors),
        cmocka_unit_test(test_js_helpers),
        cmocka_unit_test(test_no_err_out),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (holder) bson_destroy(holder);
    return rc;
}
