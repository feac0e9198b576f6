/* MongoDB's value order (bson/value.c) and the key encoding that must agree with it. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "bson/format.h"
#include "bson/path.h"
#include "bson/value.h"
#include "engine/keyenc.h"

/* Values in strictly increasing MongoDB order, one per line of the array, except where
 * marked equal (pairs listed in `equal_pairs`). */
static const char *ordered =
    "[ MinKey, null, NaN, -Infinity, -1e300, NumberLong('-9223372036854775808'), -2147483649,"
    "  -1.5, -1, -0.5, 0, 0.5, 1, NumberLong('9007199254740993'), 1e16, "
    "  NumberLong('9223372036854775807'), 1e300, Infinity,"
    "  '', 'A', 'a', 'a\\u0000', 'a\\u0000b', 'ab', 'b',"
    "  {}, { a: 1 }, { a: 1, b: 1 }, { b: 0 }, { a: 'x' },"
    "  [], [1], [1, 2], [2],"
    "  BinData(0, ''), BinData(0, 'AA=='), BinData(1, 'AA=='), BinData(0, 'AAA='),"
    "  ObjectId('000000000000000000000000'), ObjectId('ffffffffffffffffffffffff'),"
    "  false, true, new Date(-1), new Date(0), new Date(1),"
    "  Timestamp(1, 1), Timestamp(1, 2), Timestamp(2, 0), /a/, /a/i, /b/, MaxKey ]";

static void values_of(bson_t *arr, bson_value_t *out, int *n)
{
    bson_iter_t it;
    bson_iter_init(&it, arr);
    *n = 0;
    while (bson_iter_next(&it)) out[(*n)++] = *bson_iter_value(&it);
}

static int sign(int x)
{
    return x < 0 ? -1 : x > 0;
}

static int key_cmp(const bson_value_t *a, const bson_value_t *b)
{
    mk_buf_t ka, kb;
    mk_buf_init(&ka);
    mk_buf_init(&kb);
    mk_keyenc_value(&ka, a);
    mk_keyenc_value(&kb, b);
    size_t n = ka.len < kb.len ? ka.len : kb.len;
    int c = memcmp(ka.data, kb.data, n);
    if (!c) c = ka.len < kb.len ? -1 : ka.len > kb.len;
    mk_buf_free(&ka);
    mk_buf_free(&kb);
    return sign(c);
}

static int key_cmp_desc(const bson_value_t *a, const bson_value_t *b)
{
    mk_buf_t ka, kb;
    mk_buf_init(&ka);
    mk_buf_init(&kb);
    mk_keyenc_value_desc(&ka, a);
    mk_keyenc_value_desc(&kb, b);
    size_t n = ka.len < kb.len ? ka.len : kb.len;
    int c = memcmp(ka.data, kb.data, n);
    if (!c) c = ka.len < kb.len ? -1 : ka.len > kb.len;
    mk_buf_free(&ka);
    mk_buf_free(&kb);
    return sign(c);
}

static void test_total_order(void **state)
{
    mk_error_t err = {0};
    bool is_array;
    bson_t arr = BSON_INITIALIZER;
    assert_int_equal(mk_json_parse_into(&arr, ordered, strlen(ordered), NULL, &is_array, &err),
                     MK_OK);
    bson_value_t v[64];
    int n;
    values_of(&arr, v, &n);
    assert_true(n > 40);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            int want = i < j ? -1 : i > j;
            if (sign(mk_value_cmp(&v[i], &v[j])) != want)
                fail_msg("mk_value_cmp(%d, %d) != %d", i, j, want);
            if (key_cmp(&v[i], &v[j]) != want) fail_msg("key order (%d, %d) != %d", i, j, want);
            if (key_cmp_desc(&v[i], &v[j]) != -want)
                fail_msg("descending key order (%d, %d) != %d", i, j, -want);
        }
    }
    bson_destroy(&arr);
}

static void test_numeric_equality(void **state)
{
    const char *eq = "[ 1, 1.0, NumberLong(1), NumberDecimal('1'), NumberDecimal('1.00') ]";
    bson_t arr = BSON_INITIALIZER;
    mk_error_t err = {0};
    bool is_array;
    assert_int_equal(mk_json_parse_into(&arr, eq, strlen(eq), NULL, &is_array, &err), MK_OK);
    bson_value_t v[8];
    int n;
    values_of(&arr, v, &n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            assert_int_equal(mk_value_cmp(&v[i], &v[j]), 0);
            assert_int_equal(key_cmp(&v[i], &v[j]), 0);
        }
    bson_destroy(&arr);
    /* -0 and 0 */
    bson_value_t z = {.value_type = BSON_TYPE_DOUBLE, .value.v_double = 0.0};
    bson_value_t nz = {.value_type = BSON_TYPE_DOUBLE, .value.v_double = -0.0};
    assert_int_equal(mk_value_cmp(&z, &nz), 0);
    assert_int_equal(key_cmp(&z, &nz), 0);
    /* int64 beyond 2^53 against the nearest double */
    bson_value_t big = {.value_type = BSON_TYPE_INT64, .value.v_int64 = 9007199254740993LL};
    bson_value_t dbl = {.value_type = BSON_TYPE_DOUBLE, .value.v_double = 9007199254740992.0};
    assert_true(mk_value_cmp(&big, &dbl) > 0);
    assert_true(key_cmp(&big, &dbl) > 0);
    bson_value_t nan1 = {.value_type = BSON_TYPE_DOUBLE, .value.v_double = NAN};
    assert_int_equal(mk_value_cmp(&nan1, &nan1), 0);
}

static void test_field_order_matters(void **state)
{
    bson_t *a = tu_bson("{ a: 1, b: 2 }"), *b = tu_bson("{ b: 2, a: 1 }");
    assert_true(mk_bson_cmp(a, b) != 0);
    bson_destroy(a);
    bson_destroy(b);
}

static void test_path_get(void **state)
{
    bson_t *d = tu_bson("{ a: { b: [ 10, { c: 'x' } ] }, 'e.f': 1 }");
    bson_iter_t it;
    assert_true(mk_path_get(d, "a.b.0", &it));
    assert_int_equal(bson_iter_int32(&it), 10);
    assert_true(mk_path_get(d, "a.b.1.c", &it));
    assert_string_equal(bson_iter_utf8(&it, NULL), "x");
    assert_false(mk_path_get(d, "a.b.c", &it)); /* exact lookup does not traverse arrays */
    assert_false(mk_path_get(d, "a.b.2", &it));
    assert_false(mk_path_get(d, "a.x", &it));
    bson_destroy(d);
    uint32_t idx;
    assert_true(mk_path_component_index("12", 2, &idx));
    assert_int_equal(idx, 12);
    assert_false(mk_path_component_index("1a", 2, &idx));
    assert_false(mk_path_component_index("", 0, &idx));
}

static void test_format(void **state)
{
    bson_t *d = tu_bson(
        "{ _id: ObjectId('65a1b2c3d4e5f60718293a4b'), email: 'a@b.c', n: 1.0, l: [1, 'x'] }");
    char *s = mk_format_bson(d);
    assert_string_equal(
        s,
        "{ _id: ObjectId('65a1b2c3d4e5f60718293a4b'), email: \"a@b.c\", n: 1.0, l: [ 1, \"x\" ] }");
    bson_free(s);
    bson_destroy(d);
}

static void test_depth(void **state)
{
    bson_t *d = tu_bson("{ a: { b: [ { c: 1 } ] } }");
    assert_int_equal(mk_bson_depth(d, 100), 4);
    bson_destroy(d);
}

static void test_long_keys(void **state)
{
    mk_buf_t b;
    mk_buf_init(&b);
    char s[1000];
    memset(s, 'q', sizeof s);
    bson_value_t v = {.value_type = BSON_TYPE_UTF8, .value.v_utf8 = {s, sizeof s}};
    mk_keyenc_value(&b, &v);
    assert_true(b.len > MK_KEY_INLINE_MAX);
    assert_true(mk_keyenc_fit(&b));
    assert_int_equal(b.len, MK_KEY_PREFIX + 16);
    mk_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_total_order),
        cmocka_unit_test(test_numeric_equality),
        cmocka_unit_test(test_field_order_matters),
        cmocka_unit_test(test_path_get),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_long_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
