/* Key patterns and index key generation (engine/index_keys.c). Expected keys are MongoDB's
 * (btree key generation: multikey, empty arrays, nested arrays, positional paths, parallel
 * arrays, sparse). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bson/value.h"
#include "engine/index_keys.h"
#include "engine/keyenc.h"

/* ---------- helpers ---------- */

static mk_keypattern_t *compile_ok(const char *pattern)
{
    bson_t *p = tu_bson(pattern);
    mk_error_t err = {0};
    mk_keypattern_t *kp = mk_keypattern_compile(p, &err);
    if (!kp) fail_msg("compile %s: %s", pattern, err.message);
    bson_destroy(p);
    return kp;
}

/* Gathers the generated keys as { k: [ {<field>: <value>, ...}, ... ] } and checks on the way
 * that each key is the encoding of its values and that keys come strictly ascending. */
typedef struct collect {
    const mk_keypattern_t *kp;
    bson_t out, arr;
    size_t count;
    mk_buf_t prev;
    int stop_after; /* return 42 after this many keys (0: never) */
} collect_t;

static int collect_key(void *ud, const uint8_t *key, size_t len, const bson_value_t *values)
{
    collect_t *c = ud;
    mk_buf_t enc;
    mk_buf_init(&enc);
    mk_keypattern_encode(c->kp, values, &enc);
    assert_false(enc.failed);
    assert_int_equal(enc.len, len);
    assert_memory_equal(enc.data, key, len);
    mk_buf_free(&enc);
    if (c->count > 0) {
        size_t m = c->prev.len < len ? c->prev.len : len;
        int cmp = memcmp(c->prev.data, key, m);
        if (cmp == 0) cmp = c->prev.len < len ? -1 : (c->prev.len > len ? 1 : 0);
        if (cmp >= 0) fail_msg("keys not strictly ascending at key %zu", c->count);
    }
    mk_buf_reset(&c->prev);
    mk_buf_append(&c->prev, key, len);
    char idx[16];
    snprintf(idx, sizeof idx, "%zu", c->count);
    bson_t kd;
    bson_append_document_begin(&c->arr, idx, -1, &kd);
    assert_int_equal(mk_keypattern_key_doc(c->kp, values, &kd), MK_OK);
    bson_append_document_end(&c->arr, &kd);
    c->count++;
    if (c->stop_after && c->count == (size_t)c->stop_after) return 42;
    return MK_OK;
}

/* Generates the keys of `doc` for `pattern` and compares them with `expect` (a relaxed JSON
 * array of key documents) and the multikey flag with `multikey` (-1: don't check). */
static void check_keys_(const char *pattern, const char *doc, bool sparse, const char *expect,
                        int multikey, int line)
{
    mk_keypattern_t *kp = compile_ok(pattern);
    bson_t *d = tu_bson(doc);
    collect_t c = {.kp = kp};
    bson_init(&c.out);
    bson_append_array_begin(&c.out, "k", 1, &c.arr);
    mk_buf_init(&c.prev);
    mk_error_t err = {0};
    bool mk = !multikey;
    int rc = mk_keypattern_keys(kp, d, sparse, collect_key, &c, &mk, &err);
    if (rc != MK_OK) fail_msg("line %d: %s", line, err.message);
    bson_append_array_end(&c.out, &c.arr);
    char *want = NULL;
    assert_true(asprintf(&want, "{ k: %s }", expect) > 0);
    tu_assert_bson_eq_(&c.out, want, __FILE__, line);
    if (multikey >= 0 && mk != (multikey != 0))
        fail_msg("line %d: multikey is %d, expected %d", line, mk, multikey);
    free(want);
    mk_buf_free(&c.prev);
    bson_destroy(&c.out);
    bson_destroy(d);
    mk_keypattern_destroy(kp);
}
#define check_keys(p, d, e, mk)        check_keys_(p, d, false, e, mk, __LINE__)
#define check_sparse_keys(p, d, e, mk) check_keys_(p, d, true, e, mk, __LINE__)

static void check_keys_error_(const char *pattern, const char *doc, int code, const char *kind,
                              const char *message, int line)
{
    mk_keypattern_t *kp = compile_ok(pattern);
    bson_t *d = tu_bson(doc);
    collect_t c = {.kp = kp};
    bson_init(&c.out);
    bson_append_array_begin(&c.out, "k", 1, &c.arr);
    mk_buf_init(&c.prev);
    mk_error_t err = {0};
    int rc = mk_keypattern_keys(kp, d, false, collect_key, &c, NULL, &err);
    if (rc == MK_OK) fail_msg("line %d: expected error %d", line, code);
    if (err.code != code || strcmp(err.kind, kind) != 0 ||
        strncmp(err.message, message, strlen(message)) != 0)
        fail_msg("line %d: got %d %s '%s'", line, err.code, err.kind, err.message);
    bson_append_array_end(&c.out, &c.arr);
    mk_buf_free(&c.prev);
    bson_destroy(&c.out);
    bson_destroy(d);
    mk_keypattern_destroy(kp);
}
#define check_keys_error(p, d, code, kind, msg) check_keys_error_(p, d, code, kind, msg, __LINE__)

static void check_pattern_error_b(const bson_t *p, int code, const char *kind, const char *message,
                                  int line)
{
    mk_error_t err = {0};
    mk_keypattern_t *kp = mk_keypattern_compile(p, &err);
    if (kp) fail_msg("line %d: pattern accepted", line);
    if (err.code != code || strcmp(err.kind, kind) != 0 || strcmp(err.message, message) != 0)
        fail_msg("line %d: got %d %s '%s'", line, err.code, err.kind, err.message);
}

static void check_pattern_error_(const char *pattern, int code, const char *kind,
                                 const char *message, int line)
{
    bson_t *p = tu_bson(pattern);
    check_pattern_error_b(p, code, kind, message, line);
    bson_destroy(p);
}
#define check_pattern_error(p, code, kind, msg) check_pattern_error_(p, code, kind, msg, __LINE__)
#define CANNOT(p, msg)                          check_pattern_error(p, 67, "CannotCreateIndex", msg)

/* ---------- key patterns ---------- */

static void test_compile_fields(void **state)
{
    mk_keypattern_t *kp = compile_ok("{ a: 1, 'b.c': -1, c: 0.5, d: -2.5, e: NumberLong(-3),"
                                     "  f: NumberDecimal('-0.1'), g: NumberDecimal('7') }");
    assert_int_equal(mk_keypattern_nfields(kp), 7);
    const char *names[] = {"a", "b.c", "c", "d", "e", "f", "g"};
    int dirs[] = {1, -1, 1, -1, -1, -1, 1};
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(mk_keypattern_field(kp, i), names[i]);
        assert_int_equal(mk_keypattern_direction(kp, i), dirs[i]);
    }
    assert_null(mk_keypattern_field(kp, 7));
    mk_keypattern_destroy(kp);
    mk_keypattern_destroy(NULL);

    /* '$'-prefixed DBRef components after the first are allowed, as in MongoDB */
    kp = compile_ok("{ 'a.$id': 1, 'a.$ref': 1, 'a.$db': -1 }");
    assert_int_equal(mk_keypattern_nfields(kp), 3);
    mk_keypattern_destroy(kp);

    /* 32 fields is the limit, not an error */
    bson_t p = BSON_INITIALIZER;
    for (int i = 0; i < 32; i++) {
        char k[16];
        snprintf(k, sizeof k, "f%d", i);
        BSON_APPEND_INT32(&p, k, i % 2 ? 1 : -1);
    }
    mk_error_t err = {0};
    kp = mk_keypattern_compile(&p, &err);
    assert_non_null(kp);
    assert_int_equal(mk_keypattern_nfields(kp), 32);
    assert_int_equal(mk_keypattern_direction(kp, 0), -1);
    assert_int_equal(mk_keypattern_direction(kp, 31), 1);
    mk_keypattern_destroy(kp);
    BSON_APPEND_INT32(&p, "f32", 1);
    check_pattern_error_b(&p, 13103, "Location13103", "too many compound keys", __LINE__);
    bson_destroy(&p);
}

static void test_pattern_errors(void **state)
{
    CANNOT("{}", "Index keys cannot be empty.");
    CANNOT("{ a: 0 }", "Values in the index key pattern cannot be 0.");
    CANNOT("{ a: -0.0 }", "Values in the index key pattern cannot be 0.");
    CANNOT("{ a: NumberLong(0) }", "Values in the index key pattern cannot be 0.");
    CANNOT("{ a: NumberDecimal('0') }", "Values in the index key pattern cannot be 0.");
    CANNOT("{ a: 1, b: 0 }", "Values in the index key pattern cannot be 0.");
    CANNOT("{ a: NaN }", "Values in the index key pattern cannot be NaN.");
    CANNOT("{ a: NumberDecimal('NaN') }", "Values in the index key pattern cannot be NaN.");
    CANNOT("{ a: true }", "Values in v:2 index key pattern cannot be of type bool. Only numbers > "
                          "0, numbers < 0, and strings are allowed.");
    CANNOT("{ a: { x: 1 } }", "Values in v:2 index key pattern cannot be of type object. Only "
                              "numbers > 0, numbers < 0, and strings are allowed.");
    CANNOT("{ a: [1] }", "Values in v:2 index key pattern cannot be of type array. Only numbers > "
                         "0, numbers < 0, and strings are allowed.");
    CANNOT("{ a: null }", "Values in v:2 index key pattern cannot be of type null. Only numbers > "
                          "0, numbers < 0, and strings are allowed.");
    CANNOT("{ a: 'foo' }", "Unknown index plugin 'foo'");
    /* the plugin is checked before the values */
    CANNOT("{ a: 0, b: 'foo' }", "Unknown index plugin 'foo'");
    CANNOT("{ a: 'text', b: 'hashed' }",
           "Can't use more than one index plugin for a single index.");
    CANNOT("{ a: 'geoHaystack' }",
           "GeoHaystack indexes cannot be created in version 5.0 and above");
    CANNOT("{ a: 'wildcard' }", "The key pattern value for an 'wildcard' index must be a non-zero "
                                "number, not a string.");
    CANNOT("{ '': 1 }", "Index keys cannot be an empty field.");
    CANNOT("{ 'a..b': 1 }", "Index keys cannot contain an empty field.");
    CANNOT("{ '.a': 1 }", "Index keys cannot contain an empty field.");
    CANNOT("{ 'a.': 1 }", "Index keys cannot contain an empty field.");
    CANNOT("{ '$a': 1 }", "Index key contains an illegal field name: field name starts with '$'.");
    CANNOT("{ 'a.$b': 1 }",
           "Index key contains an illegal field name: field name starts with '$'.");
    CANNOT("{ '$id': 1 }", "Index key contains an illegal field name: field name starts with '$'.");
    CANNOT("{ _fts: 1 }", "Index key contains an illegal field name: '_fts'");
    CANNOT("{ a: '' }", "Values in the index key pattern cannot be empty strings");
    /* the first failing element is reported */
    CANNOT("{ a: true, '$b': 0 }", "Values in v:2 index key pattern cannot be of type bool. Only "
                                   "numbers > 0, numbers < 0, and strings are allowed.");

    /* duplicate fields: BadValue, reported before anything else */
    bson_t *p = tu_bson("{ a: 1, b: 1, b: -1, a: -1, c: 0 }");
    mk_error_t err = {0};
    assert_null(mk_keypattern_compile(p, &err));
    assert_int_equal(err.code, 2);
    assert_string_equal(err.kind, "BadValue");
    assert_non_null(strstr(err.message, "The field 'b' appears multiple times in the index key "
                                        "pattern { a: 1, b: 1, b: -1"));
    bson_destroy(p);

    /* a key pattern over 2048 bytes */
    char big[2101];
    memset(big, 'x', 2100);
    big[2100] = 0;
    bson_t q = BSON_INITIALIZER;
    BSON_APPEND_INT32(&q, big, 1);
    check_pattern_error_b(&q, 67, "CannotCreateIndex", "Index key pattern too large.", __LINE__);
    bson_destroy(&q);
}

static void test_special_indexes_unsupported(void **state)
{
    check_pattern_error("{ a: 'hashed' }", 2, "BadValue", "hashed indexes are not supported yet");
    check_pattern_error("{ a: 'text', b: 'text' }", 2, "BadValue",
                        "text indexes are not supported yet");
    check_pattern_error("{ a: '2d' }", 2, "BadValue", "2d indexes are not supported yet");
    check_pattern_error("{ loc: '2dsphere', b: 1 }", 2, "BadValue",
                        "2dsphere indexes are not supported yet");
    check_pattern_error("{ '$**': 1 }", 2, "BadValue", "wildcard indexes are not supported yet");
    check_pattern_error("{ 'a.$**': 1 }", 2, "BadValue", "wildcard indexes are not supported yet");
    check_pattern_error("{ '$**': 'text' }", 2, "BadValue", "text indexes are not supported yet");
    /* the generic checks still come first */
    CANNOT("{ a: 'hashed', b: 0 }", "Values in the index key pattern cannot be 0.");
}

static void check_name(const char *pattern, const char *expect)
{
    bson_t *p = tu_bson(pattern);
    char *name = mk_keypattern_default_name(p);
    assert_non_null(name);
    if (strcmp(name, expect) != 0) fail_msg("%s: name '%s', expected '%s'", pattern, name, expect);
    free(name);
    bson_destroy(p);
}

static void test_default_names(void **state)
{
    check_name("{ email: 1 }", "email_1");
    check_name("{ firstName: 1, lastName: -1 }", "firstName_1_lastName_-1");
    check_name("{ lastName: 1, 'address.city': -1 }", "lastName_1_address.city_-1");
    check_name("{ a: 1.5 }", "a_1.5");
    check_name("{ a: 1.0, b: -1.0 }", "a_1_b_-1");
    check_name("{ a: 0.5 }", "a_0.5");
    check_name("{ a: 0.1 }", "a_0.1");
    check_name("{ a: 1e21 }", "a_1e+21");
    check_name("{ a: 1e20 }", "a_100000000000000000000");
    check_name("{ a: 1e-7 }", "a_1e-7");
    check_name("{ a: 0.000001 }", "a_0.000001");
    check_name("{ a: -2.5e-10 }", "a_-2.5e-10");
    check_name("{ a: NumberLong(-3) }", "a_-3");
    check_name("{ a: 12345678901 }", "a_12345678901");
    check_name("{ a: NumberDecimal('1.5') }", "a_1.5");
    check_name("{ a: 'hashed' }", "a_hashed");
    check_name("{ content: 'text', a: 1 }", "content_text_a_1");
    check_name("{ loc: '2dsphere' }", "loc_2dsphere");
}

/* ---------- key generation ---------- */

static void test_single_field(void **state)
{
    check_keys("{ a: 1 }", "{ a: 5 }", "[ { a: 5 } ]", 0);
    check_keys("{ a: 1 }", "{ b: 1, a: 'x' }", "[ { a: 'x' } ]", 0);
    check_keys("{ a: -1 }", "{ a: 5 }", "[ { a: 5 } ]", 0);
    /* values of every kind are keys as they are */
    check_keys("{ a: 1 }", "{ a: { x: 1, y: [1, 2] } }", "[ { a: { x: 1, y: [1, 2] } } ]", 0);
    check_keys("{ a: 1 }", "{ a: undefined }", "[ { a: undefined } ]", 0);
    check_keys("{ a: 1 }", "{ a: MinKey }", "[ { a: MinKey } ]", 0);
    check_keys("{ a: 1 }", "{ a: MaxKey }", "[ { a: MaxKey } ]", 0);
    check_keys("{ a: 1 }", "{ a: /^abc/i }", "[ { a: /^abc/i } ]", 0);
    check_keys("{ a: 1 }", "{ a: new Date(1234567890000) }", "[ { a: new Date(1234567890000) } ]",
               0);
    /* dotted paths into sub-documents */
    check_keys("{ 'a.b.c': 1 }", "{ a: { b: { c: 1 } } }", "[ { 'a.b.c': 1 } ]", 0);
    check_keys("{ 'a.b': 1 }", "{ a: { b: { c: 1 } } }", "[ { 'a.b': { c: 1 } } ]", 0);
    /* the key of a document is its value, so that equal numbers give one key */
    mk_keypattern_t *kp = compile_ok("{ a: 1 }");
    const char *docs[] = {"{ a: 1 }", "{ a: 1.0 }", "{ a: NumberLong(1) }",
                          "{ a: NumberDecimal('1') }"};
    mk_buf_t first;
    mk_buf_init(&first);
    for (size_t i = 0; i < 4; i++) {
        bson_t *d = tu_bson(docs[i]);
        collect_t c = {.kp = kp};
        bson_init(&c.out);
        bson_append_array_begin(&c.out, "k", 1, &c.arr);
        mk_buf_init(&c.prev);
        assert_int_equal(mk_keypattern_keys(kp, d, false, collect_key, &c, NULL, NULL), MK_OK);
        assert_int_equal(c.count, 1);
        if (i == 0)
            mk_buf_append(&first, c.prev.data, c.prev.len);
        else
            assert_memory_equal(first.data, c.prev.data, first.len);
        bson_append_array_end(&c.out, &c.arr);
        bson_destroy(&c.out);
        mk_buf_free(&c.prev);
        bson_destroy(d);
    }
    mk_buf_free(&first);
    mk_keypattern_destroy(kp);
}

static void test_missing_and_sparse(void **state)
{
    check_keys("{ a: 1 }", "{ b: 1 }", "[ { a: null } ]", 0);
    check_sparse_keys("{ a: 1 }", "{ b: 1 }", "[]", 0);
    /* an explicit null is indexed even when sparse */
    check_sparse_keys("{ a: 1 }", "{ a: null }", "[ { a: null } ]", 0);
    check_keys("{ a: 1, b: 1 }", "{ c: 1 }", "[ { a: null, b: null } ]", 0);
    check_sparse_keys("{ a: 1, b: 1 }", "{ c: 1 }", "[]", 0);
    /* a sparse compound index keeps documents with any of its fields */
    check_sparse_keys("{ a: 1, b: 1 }", "{ a: 5 }", "[ { a: 5, b: null } ]", 0);
    check_sparse_keys("{ a: 1, b: 1 }", "{ b: 5 }", "[ { a: null, b: 5 } ]", 0);
    /* a path stopped by a scalar is missing */
    check_keys("{ 'a.b': 1 }", "{ a: 5 }", "[ { 'a.b': null } ]", 0);
    check_keys("{ 'a.b': 1 }", "{ a: 'str' }", "[ { 'a.b': null } ]", 0);
    check_sparse_keys("{ 'a.b': 1 }", "{ a: { c: 1 } }", "[]", 0);
}

static void test_multikey(void **state)
{
    check_keys("{ a: 1 }", "{ a: [3, 1, 2] }", "[ { a: 1 }, { a: 2 }, { a: 3 } ]", 1);
    /* duplicates (also across number types) are indexed once */
    check_keys("{ a: 1 }", "{ a: [1, 2, 2, 1.0, NumberLong(2), 1] }", "[ { a: 1 }, { a: 2 } ]", 1);
    /* a one-element array still makes the index multikey */
    check_keys("{ a: 1 }", "{ a: [5] }", "[ { a: 5 } ]", 1);
    check_keys("{ tags: 1 }", "{ tags: ['b', 'a', 'b'] }", "[ { tags: 'a' }, { tags: 'b' } ]", 1);
    /* descending field: keys still come in ascending key order, i.e. values descending */
    check_keys("{ a: -1 }", "{ a: [1, 3, 2] }", "[ { a: 3 }, { a: 2 }, { a: 1 } ]", 1);
    /* keys of mixed types follow MongoDB's type order */
    check_keys("{ a: 1 }", "{ a: ['x', 2, null, { b: 1 }, true] }",
               "[ { a: null }, { a: 2 }, { a: 'x' }, { a: { b: 1 } }, { a: true } ]", 1);
    /* an array under a sub-document */
    check_keys("{ 'a.b': 1 }", "{ a: { b: [1, 2] } }", "[ { 'a.b': 1 }, { 'a.b': 2 } ]", 1);
}

static void test_empty_arrays(void **state)
{
    check_keys("{ a: 1 }", "{ a: [] }", "[ { a: undefined } ]", 1);
    check_sparse_keys("{ a: 1 }", "{ a: [] }", "[ { a: undefined } ]", 1);
    /* a path continuing past an empty array finds nothing */
    check_keys("{ 'a.b': 1 }", "{ a: [] }", "[ { 'a.b': null } ]", 1);
    check_sparse_keys("{ 'a.b': 1 }", "{ a: [] }", "[]", 1);
    check_keys("{ 'a.b': 1 }", "{ a: [{ b: [] }, { b: 1 }] }",
               "[ { 'a.b': undefined }, { 'a.b': 1 } ]", 1);
    check_keys("{ a: 1, b: 1 }", "{ a: [], b: 2 }", "[ { a: undefined, b: 2 } ]", 1);
}

static void test_nested_arrays(void **state)
{
    /* an element that is an array is indexed whole */
    check_keys("{ a: 1 }", "{ a: [[1, 2], [3, 4]] }", "[ { a: [1, 2] }, { a: [3, 4] } ]", 1);
    check_keys("{ a: 1 }", "{ a: [[1, 2], 3, []] }", "[ { a: 3 }, { a: [] }, { a: [1, 2] } ]", 1);
    check_keys("{ a: 1 }", "{ a: [1, [1]] }", "[ { a: 1 }, { a: [1] } ]", 1);
    /* a dotted path does not reach into an array nested in an array */
    check_keys("{ 'a.b': 1 }", "{ a: [[{ b: 1 }]] }", "[ { 'a.b': null } ]", 1);
}

static void test_arrays_of_documents(void **state)
{
    check_keys("{ 'a.b': 1 }", "{ a: [{ b: 1 }, { b: 2 }] }", "[ { 'a.b': 1 }, { 'a.b': 2 } ]", 1);
    /* an element without the field gives null (not when sparse) */
    check_keys("{ 'a.b': 1 }", "{ a: [{ b: 1 }, { b: 2 }, { c: 3 }, 7] }",
               "[ { 'a.b': null }, { 'a.b': 1 }, { 'a.b': 2 } ]", 1);
    check_sparse_keys("{ 'a.b': 1 }", "{ a: [{ b: 1 }, { c: 3 }] }", "[ { 'a.b': 1 } ]", 1);
    check_keys("{ 'a.b.c': 1 }", "{ a: [{ b: { c: 10 } }, { b: { c: 20 } }] }",
               "[ { 'a.b.c': 10 }, { 'a.b.c': 20 } ]", 1);
    /* arrays at two levels of one path */
    check_keys("{ 'a.b': 1 }", "{ a: [{ b: [1, 2] }, { b: [2, 3] }] }",
               "[ { 'a.b': 1 }, { 'a.b': 2 }, { 'a.b': 3 } ]", 1);
    check_keys("{ 'a.b.c': 1 }", "{ a: [{ b: [{ c: 1 }, { c: 2 }] }, { b: { c: 3 } }] }",
               "[ { 'a.b.c': 1 }, { 'a.b.c': 2 }, { 'a.b.c': 3 } ]", 1);
}

static void test_compound(void **state)
{
    check_keys("{ a: 1, b: -1, c: 1 }", "{ a: 1, b: 2, c: 3 }", "[ { a: 1, b: 2, c: 3 } ]", 0);
    check_keys("{ 'a.b.c': 1, 'd.e.f': 1 }", "{ a: { b: { c: 1 } }, d: { e: { f: 2 } } }",
               "[ { 'a.b.c': 1, 'd.e.f': 2 } ]", 0);
    /* one array: the product with the other fields' values */
    check_keys("{ a: 1, b: 1 }", "{ a: [2, 1], b: 3 }", "[ { a: 1, b: 3 }, { a: 2, b: 3 } ]", 1);
    check_keys("{ a: 1, b: -1 }", "{ a: 1, b: [1, 3, 2] }",
               "[ { a: 1, b: 3 }, { a: 1, b: 2 }, { a: 1, b: 1 } ]", 1);
    /* fields under the same array take one element at a time: no cross product */
    check_keys("{ 'a.b': 1, 'a.c': 1 }", "{ a: [{ b: 1, c: 2 }, { b: 3, c: 4 }] }",
               "[ { 'a.b': 1, 'a.c': 2 }, { 'a.b': 3, 'a.c': 4 } ]", 1);
    check_keys("{ 'a.b': 1, 'a.c': 1 }", "{ a: [{ b: [1, 2], c: 5 }, { c: 6 }] }",
               "[ { 'a.b': null, 'a.c': 6 }, { 'a.b': 1, 'a.c': 5 }, { 'a.b': 2, 'a.c': 5 } ]", 1);
    /* the array itself and a path below it */
    check_keys("{ a: 1, 'a.b': 1 }", "{ a: [{ b: 1 }, { b: 2 }] }",
               "[ { a: { b: 1 }, 'a.b': 1 }, { a: { b: 2 }, 'a.b': 2 } ]", 1);
}

static void test_parallel_arrays(void **state)
{
    check_keys_error("{ a: 1, b: 1 }", "{ a: [1, 2], b: [3] }", 171, "CannotIndexParallelArrays",
                     "cannot index parallel arrays [b] [a]");
    check_keys_error("{ b: 1, a: 1 }", "{ a: [1, 2], b: [3] }", 171, "CannotIndexParallelArrays",
                     "cannot index parallel arrays [a] [b]");
    check_keys_error("{ 'a.b': 1, c: 1 }", "{ a: [{ b: 1 }], c: [] }", 171,
                     "CannotIndexParallelArrays", "cannot index parallel arrays [c] [a]");
    /* two arrays inside the same element */
    check_keys_error("{ 'a.b': 1, 'a.c': 1 }", "{ a: [{ b: [1, 2], c: [3] }] }", 171,
                     "CannotIndexParallelArrays", "cannot index parallel arrays [c] [b]");
    check_keys_error("{ 'a.b': 1, 'a.c': 1 }", "{ a: { b: [1], c: [2] } }", 171,
                     "CannotIndexParallelArrays", "cannot index parallel arrays [c] [b]");
    /* one array with a scalar elsewhere is fine */
    check_keys("{ a: 1, b: 1 }", "{ a: [1], b: { c: [1] } }", "[ { a: 1, b: { c: [1] } } ]", 1);
}

static void test_positional_paths(void **state)
{
    /* a numeric component selects the element: not multikey */
    check_keys("{ 'a.0': 1 }", "{ a: [5, 6] }", "[ { 'a.0': 5 } ]", 0);
    check_keys("{ 'a.1': 1 }", "{ a: [5, 6] }", "[ { 'a.1': 6 } ]", 0);
    check_keys("{ 'a.0.b': 1 }", "{ a: [{ b: 1 }, { b: 2 }] }", "[ { 'a.0.b': 1 } ]", 0);
    check_keys("{ 'a.1.b': -1 }", "{ a: [{ b: 1 }, { b: [2, 3] }] }",
               "[ { 'a.1.b': 3 }, { 'a.1.b': 2 } ]", 1);
    /* a field named '0' in a document */
    check_keys("{ 'a.0': 1 }", "{ a: { '0': 7 } }", "[ { 'a.0': 7 } ]", 0);
    /* past the end of the array: the elements are searched for a field '5' */
    check_keys("{ 'a.5': 1 }", "{ a: [1, 2] }", "[ { 'a.5': null } ]", 1);
    check_keys("{ 'a.5': 1 }", "{ a: [{ '5': 'x' }, 2] }", "[ { 'a.5': null }, { 'a.5': 'x' } ]",
               1);
    /* an array selected by position is indexed whole */
    check_keys("{ 'a.0': 1 }", "{ a: [[1, 2], 3] }", "[ { 'a.0': [1, 2] } ]", 0);
    check_keys("{ 'a.0': 1 }", "{ a: [] }", "[ { 'a.0': null } ]", 1);
    /* a positional field beside an expanded one */
    check_keys("{ 'a.0': 1, 'a.b': 1 }", "{ a: [{ b: 1 }, { b: 2 }] }",
               "[ { 'a.0': { b: 1 }, 'a.b': 1 }, { 'a.0': { b: 1 }, 'a.b': 2 } ]", 1);
    /* ambiguous: an element has a field named like the position */
    check_keys_error("{ 'a.1': 1 }", "{ a: [{ '1': 'x' }, 5] }", 16746, "Location16746",
                     "Ambiguous field name found in array (do not use numeric field names in "
                     "embedded elements in an array), field: '1' for array: ");
}

static void test_long_values(void **state)
{
    size_t n = 3000;
    char *s = malloc(n + 1), *t = malloc(n + 1);
    memset(s, 'x', n);
    s[n] = 0;
    memcpy(t, s, n + 1);
    t[n - 1] = 'y';
    bson_t d = BSON_INITIALIZER, arr;
    BSON_APPEND_UTF8(&d, "s", s);
    BSON_APPEND_ARRAY_BEGIN(&d, "m", &arr);
    BSON_APPEND_UTF8(&arr, "0", t);
    BSON_APPEND_UTF8(&arr, "1", s);
    BSON_APPEND_UTF8(&arr, "2", t);
    bson_append_array_end(&d, &arr);

    mk_keypattern_t *kp = compile_ok("{ s: 1 }");
    collect_t c = {.kp = kp};
    bson_init(&c.out);
    bson_append_array_begin(&c.out, "k", 1, &c.arr);
    mk_buf_init(&c.prev);
    assert_int_equal(mk_keypattern_keys(kp, &d, false, collect_key, &c, NULL, NULL), MK_OK);
    assert_int_equal(c.count, 1);
    assert_true(c.prev.len > MK_KEY_INLINE_MAX); /* not shortened */
    assert_true(c.prev.len > n);
    bson_append_array_end(&c.out, &c.arr);
    bson_destroy(&c.out);
    mk_buf_free(&c.prev);
    mk_keypattern_destroy(kp);

    kp = compile_ok("{ m: -1 }");
    c = (collect_t){.kp = kp};
    bson_init(&c.out);
    bson_append_array_begin(&c.out, "k", 1, &c.arr);
    mk_buf_init(&c.prev);
    bool multikey = false;
    assert_int_equal(mk_keypattern_keys(kp, &d, false, collect_key, &c, &multikey, NULL), MK_OK);
    assert_int_equal(c.count, 2);
    assert_true(multikey);
    bson_append_array_end(&c.out, &c.arr);
    /* descending: t ('...y') before s ('...x') */
    bson_iter_t it;
    bson_iter_t found;
    assert_true(bson_iter_init(&it, &c.out) && bson_iter_find_descendant(&it, "k.0.m", &found));
    assert_string_equal(bson_iter_utf8(&found, NULL), t);
    assert_true(bson_iter_init(&it, &c.out) && bson_iter_find_descendant(&it, "k.1.m", &found));
    it = found;
    assert_string_equal(bson_iter_utf8(&it, NULL), s);
    bson_destroy(&c.out);
    mk_buf_free(&c.prev);
    mk_keypattern_destroy(kp);
    bson_destroy(&d);
    free(s);
    free(t);
}

static void test_callback_stops(void **state)
{
    mk_keypattern_t *kp = compile_ok("{ a: 1 }");
    bson_t *d = tu_bson("{ a: [1, 2, 3] }");
    collect_t c = {.kp = kp, .stop_after = 2};
    bson_init(&c.out);
    bson_append_array_begin(&c.out, "k", 1, &c.arr);
    mk_buf_init(&c.prev);
    assert_int_equal(mk_keypattern_keys(kp, d, false, collect_key, &c, NULL, NULL), 42);
    assert_int_equal(c.count, 2);
    bson_destroy(d);
    /* also on the single-key path */
    d = tu_bson("{ a: 1 }");
    c.count = 0;
    c.stop_after = 1;
    assert_int_equal(mk_keypattern_keys(kp, d, false, collect_key, &c, NULL, NULL), 42);
    assert_int_equal(c.count, 1);
    bson_append_array_end(&c.out, &c.arr);
    bson_destroy(&c.out);
    mk_buf_free(&c.prev);
    bson_destroy(d);
    mk_keypattern_destroy(kp);
}

static void test_key_doc(void **state)
{
    mk_keypattern_t *kp = compile_ok("{ email: 1, 'address.city': -1 }");
    bson_value_t vals[2] = {{.value_type = BSON_TYPE_NULL}, {.value_type = BSON_TYPE_INT32}};
    vals[1].value.v_int32 = 7;
    bson_t out = BSON_INITIALIZER;
    assert_int_equal(mk_keypattern_key_doc(kp, vals, &out), MK_OK);
    tu_assert_bson_eq(&out, "{ email: null, 'address.city': 7 }");
    bson_destroy(&out);
    mk_keypattern_destroy(kp);
}

/* The memcmp order of compound keys is MongoDB's order: field by field, each in its direction. */
typedef struct onekey {
    mk_buf_t key;
    bson_value_t vals[2];
} onekey_t;

static int keep_key(void *ud, const uint8_t *key, size_t len, const bson_value_t *values)
{
    onekey_t *k = ud;
    mk_buf_append(&k->key, key, len);
    k->vals[0] = values[0];
    k->vals[1] = values[1];
    return MK_OK;
}

static void test_compound_order(void **state)
{
    bson_t *vals = tu_bson("{ v: [ MinKey, null, -1e300, -5, NumberLong(-5), -4.5, 0, 1, 1.5, 2,"
                           " NumberLong('9007199254740993'), Infinity, '', 'a', 'a\\u0000b', 'ab',"
                           " 'b', {}, { a: 1 }, { a: 1, b: 2 }, { b: 1 }, [], [1], [1, 2], [2],"
                           " ObjectId('000000000000000000000001'), false, true,"
                           " new Date(-1), new Date(0), new Date(5), Timestamp(1, 2), /a/, /a/i,"
                           " MaxKey ] }");
    const char *patterns[] = {"{ a: 1, b: 1 }", "{ a: 1, b: -1 }", "{ a: -1, b: 1 }",
                              "{ a: -1, b: -1 }"};
    bson_iter_t root, it;
    assert_true(bson_iter_init_find(&root, vals, "v") && bson_iter_recurse(&root, &it));
    bson_value_t v[64];
    size_t nv = 0;
    while (bson_iter_next(&it) && nv < 64) v[nv++] = *bson_iter_value(&it);

    for (size_t p = 0; p < 4; p++) {
        mk_keypattern_t *kp = compile_ok(patterns[p]);
        int da = mk_keypattern_direction(kp, 0), db = mk_keypattern_direction(kp, 1);
        /* documents { a: v[i], b: v[j] } (arrays would be multikey: pair them as values) */
        size_t nk = 0;
        onekey_t *keys = calloc(nv * nv, sizeof *keys);
        for (size_t i = 0; i < nv; i++) {
            for (size_t j = 0; j < nv; j++) {
                if (v[i].value_type == BSON_TYPE_ARRAY || v[j].value_type == BSON_TYPE_ARRAY)
                    continue;
                bson_t d = BSON_INITIALIZER;
                bson_append_value(&d, "a", 1, &v[i]);
                bson_append_value(&d, "b", 1, &v[j]);
                onekey_t *k = &keys[nk++];
                mk_buf_init(&k->key);
                assert_int_equal(mk_keypattern_keys(kp, &d, false, keep_key, k, NULL, NULL), MK_OK);
                /* the values point into d: re-point them at the stable array */
                k->vals[0] = v[i];
                k->vals[1] = v[j];
                bson_destroy(&d);
            }
        }
        for (size_t x = 0; x < nk; x++) {
            for (size_t y = 0; y < nk; y++) {
                int want = mk_value_cmp(&keys[x].vals[0], &keys[y].vals[0]) * da;
                if (want == 0) want = mk_value_cmp(&keys[x].vals[1], &keys[y].vals[1]) * db;
                want = (want > 0) - (want < 0);
                size_t m = keys[x].key.len < keys[y].key.len ? keys[x].key.len : keys[y].key.len;
                int got = memcmp(keys[x].key.data, keys[y].key.data, m);
                if (got == 0)
                    got = (keys[x].key.len > keys[y].key.len) - (keys[x].key.len < keys[y].key.len);
                got = (got > 0) - (got < 0);
                if (got != want)
                    fail_msg("%s: pair %zu/%zu: key order %d, value order %d", patterns[p], x, y,
                             got, want);
            }
        }
        for (size_t x = 0; x < nk; x++) mk_buf_free(&keys[x].key);
        free(keys);
        mk_keypattern_destroy(kp);
    }
    bson_destroy(vals);
}

/* Cases from MongoDB's own key generator tests (expected keys and multikey flags are
 * MongoDB's; multikey = some path is multikey, or more than one key). */
static const struct {
    const char *pattern, *doc;
    bool sparse;
    const char *keys;
    int multikey;
} reference_cases[] = {
    {"{ 'a.b': 1, 'a.c': 1 }", "{ a: [{ b: 1 }, { c: 2 }] }", false,
     "[ { 'a.b': null, 'a.c': 2 }, { 'a.b': 1, 'a.c': null } ]", 1},
    {"{ 'a.b': 1 }", "{ a: [{ b: [2] }] }", false, "[ { 'a.b': 2 } ]", 1},
    {"{ 'a.b': 1 }", "{ a: [{ foo: 41 }, { foo: 41 }] }", false, "[ { 'a.b': null } ]", 1},
    {"{ 'a.b': 1 }", "{ a: [1, 2] }", false, "[ { 'a.b': null } ]", 1},
    {"{ 'a.b': 1 }", "{ a: [{ b: 1 }, { b: [1, 2, 3] }] }", false,
     "[ { 'a.b': 1 }, { 'a.b': 2 }, { 'a.b': 3 } ]", 1},
    {"{ 'a.b': 1 }", "{ a: [{ b: [1, 2, 3] }, { b: [2] }, { b: [3, 1] }] }", false,
     "[ { 'a.b': 1 }, { 'a.b': 2 }, { 'a.b': 3 } ]", 1},
    {"{ 'a.b.c': 1 }", "{ a: { b: [{ c: 1 }, { c: 2 }] } }", false,
     "[ { 'a.b.c': 1 }, { 'a.b.c': 2 } ]", 1},
    {"{ a: 1 }", "{ a: null }", false, "[ { a: null } ]", 0},
    {"{ a: 1, b: 1 }", "{ a: 1, b: [] }", false, "[ { a: 1, b: undefined } ]", 1},
    {"{ 'a.b': 1, 'a.c': 1 }", "{ a: [] }", false, "[ { 'a.b': null, 'a.c': null } ]", 1},
    {"{ a: 1, 'a.b': 1 }", "{ a: [] }", false, "[ { a: undefined, 'a.b': null } ]", 1},
    {"{ a: 1, 'a.b': 1 }", "{ a: [{ b: 1 }] }", false, "[ { a: { b: 1 }, 'a.b': 1 } ]", 1},
    {"{ a: 1, 'a.b': 1 }", "{ a: [{ b: [] }] }", false, "[ { a: { b: [] }, 'a.b': undefined } ]",
     1},
    {"{ 'a.b': 1, a: 1 }", "{ a: [] }", false, "[ { 'a.b': null, a: undefined } ]", 1},
    {"{ 'a.b': 1, a: 1 }", "{ a: [] }", true, "[ { 'a.b': null, a: undefined } ]", 1},
    {"{ 'a.b': 1 }", "{ a: 1 }", true, "[]", 0},
    {"{ 'a.b': 1 }", "{ a: [] }", true, "[]", 1},
    {"{ 'a.b': 1 }", "{ a: [{ c: 1 }] }", true, "[]", 1},
    {"{ z: 1, 'a.b': 1 }", "{ a: 1 }", true, "[]", 0},
    {"{ z: 1, 'a.b': 1 }", "{ a: [] }", true, "[]", 1},
    {"{ z: 1, 'a.b': 1 }", "{ a: [{ c: 1 }] }", true, "[]", 1},
    {"{ 'a.b': 1 }", "{ a: [1] }", true, "[]", 1},
    {"{ 'a.b': 1 }", "{ a: [1, { b: 1 }] }", true, "[ { 'a.b': 1 } ]", 1},
    {"{ 'a.0': 1 }", "{ a: [1] }", false, "[ { 'a.0': 1 } ]", 0},
    {"{ 'a.0': 1 }", "{ a: [[1]] }", false, "[ { 'a.0': [1] } ]", 0},
    {"{ 'a.0': 1 }", "{ a: [[]] }", false, "[ { 'a.0': undefined } ]", 0},
    {"{ 'a.0': 1 }", "{ a: { '0': 1 } }", false, "[ { 'a.0': 1 } ]", 0},
    {"{ 'a.0.0': 1 }", "{ a: [[1]] }", false, "[ { 'a.0.0': 1 } ]", 0},
    {"{ 'a.0.0': 1 }", "{ a: [[]] }", false, "[ { 'a.0.0': null } ]", 0},
    {"{ 'a.0.0': 1 }", "{ a: [] }", false, "[ { 'a.0.0': null } ]", 1},
    {"{ 'a.0.0': 1 }", "{ a: [[[]]] }", false, "[ { 'a.0.0': undefined } ]", 0},
    {"{ 'a.0.b': 1 }", "{ a: [{ b: 1 }] }", false, "[ { 'a.0.b': 1 } ]", 0},
    {"{ 'a.0.b': 1 }", "{ a: [{ b: [1] }] }", false, "[ { 'a.0.b': 1 } ]", 1},
    {"{ 'a.0.b': 1 }", "{ a: [{ b: [[1]] }] }", false, "[ { 'a.0.b': [1] } ]", 1},
    {"{ 'a.0.b': 1 }", "{ a: [[{ b: 1 }]] }", false, "[ { 'a.0.b': 1 } ]", 1},
    {"{ 'a.0.b': 1 }", "{ a: [[{ b: [1] }]] }", false, "[ { 'a.0.b': 1 } ]", 1},
    {"{ 'a.0.b': 1 }", "{ a: [[{ b: [[1]] }]] }", false, "[ { 'a.0.b': [1] } ]", 1},
    {"{ 'a.0.b': 1 }", "{ a: [[{ b: [] }]] }", false, "[ { 'a.0.b': undefined } ]", 1},
    {"{ 'a.0.b': 1 }", "{ a: [[{ b: 1 }, { b: 2 }]] }", false, "[ { 'a.0.b': 1 }, { 'a.0.b': 2 } ]",
     1},
    {"{ 'a.b.c.3': 1 }", "{ a: { b: { c: [0, 1, 2, [3]] } } }", false, "[ { 'a.b.c.3': [3] } ]", 0},
    {"{ 'a.b.c.3': 1 }", "{ a: { b: { c: [0, 1, 2, []] } } }", false,
     "[ { 'a.b.c.3': undefined } ]", 0},
    {"{ 'a.0.1.2.b.0': 1 }", "{ a: [[1, [1, 2, [{ b: [[], 2] }]]], 1] }", false,
     "[ { 'a.0.1.2.b.0': undefined } ]", 1},
    {"{ 'a.0.b.0': 1 }", "{ a: [{ b: [1] }] }", false, "[ { 'a.0.b.0': 1 } ]", 0},
    {"{ 'a.b.c': 1 }", "{ a: [1, 2, { b: { c: [3, 4] } }] }", false,
     "[ { 'a.b.c': null }, { 'a.b.c': 3 }, { 'a.b.c': 4 } ]", 1},
    {"{ 'a.b.c': 1, 'a.b.d': 1 }", "{ a: [1, 2, { b: { c: [3, 4], d: 5 } }] }", false,
     "[ { 'a.b.c': null, 'a.b.d': null }, { 'a.b.c': 3, 'a.b.d': 5 },"
     "  { 'a.b.c': 4, 'a.b.d': 5 } ]",
     1},
    {"{ 'a.b.c.d': 1, 'a.g': 1, 'a.b.f': 1, 'a.b.c': 1, 'a.b.e': 1 }",
     "{ a: [1, { b: [2, { c: [3, { d: 1 }], e: 4 }, 5, { f: 6 }], g: 7 }] }", false,
     "[ { 'a.b.c.d': null, 'a.g': null, 'a.b.f': null, 'a.b.c': null, 'a.b.e': null },"
     "  { 'a.b.c.d': null, 'a.g': 7, 'a.b.f': null, 'a.b.c': null, 'a.b.e': null },"
     "  { 'a.b.c.d': null, 'a.g': 7, 'a.b.f': null, 'a.b.c': 3, 'a.b.e': 4 },"
     "  { 'a.b.c.d': null, 'a.g': 7, 'a.b.f': 6, 'a.b.c': null, 'a.b.e': null },"
     "  { 'a.b.c.d': 1, 'a.g': 7, 'a.b.f': null, 'a.b.c': { d: 1 }, 'a.b.e': 4 } ]",
     1},
    {"{ a: 1 }", "{ a: [[2]] }", false, "[ { a: [2] } ]", 1},
    {"{ 'a.2': 1 }", "{ a: [{ '2': 5 }] }", false, "[ { 'a.2': 5 } ]", 1},
    {"{ 'a.2': 1 }", "{ a: [[1, 2, 5]] }", false, "[ { 'a.2': null } ]", 1},
    {"{ 'a.2': 1 }", "{ a: [[1, 2, 5], [3, 4, 6], [0, 1, 2]] }", false, "[ { 'a.2': [0, 1, 2] } ]",
     0},
    {"{ 'a.2': 1 }", "{ a: [{ '0': 1, '1': 2, '2': 5 }] }", false, "[ { 'a.2': 5 } ]", 1},
    {"{ 'a.b.2': 1 }", "{ a: [{ b: [[1, 2, 5]] }] }", false, "[ { 'a.b.2': null } ]", 1},
    {"{ 'a.2': 1 }", "{ a: [[1, 2, 5], { '2': 6 }] }", false, "[ { 'a.2': null }, { 'a.2': 6 } ]",
     1},
    {"{ 'a.b': 1 }", "{ a: [[1, 2, 5]] }", false, "[ { 'a.b': null } ]", 1},
    {"{ a: 1, 'a.b': 1 }", "{ a: [1, { b: [2, 3, 4] }] }", false,
     "[ { a: 1, 'a.b': null }, { a: { b: [2, 3, 4] }, 'a.b': 2 },"
     "  { a: { b: [2, 3, 4] }, 'a.b': 3 }, { a: { b: [2, 3, 4] }, 'a.b': 4 } ]",
     1},
    {"{ 'a.0.0.b': 1 }", "{ a: [[{ b: 1 }]] }", false, "[ { 'a.0.0.b': 1 } ]", 0},
    {"{ 'a.0.0.b': 1 }", "{ a: [[{ b: [1, 2, 3] }]] }", false,
     "[ { 'a.0.0.b': 1 }, { 'a.0.0.b': 2 }, { 'a.0.0.b': 3 } ]", 1},
    {"{ 'a.0.0.b': 1 }", "{ a: [[[{ b: 1 }]]] }", false, "[ { 'a.0.0.b': 1 } ]", 1},
    {"{ 'a.0.0.b': 1 }", "{ a: [[[{ b: 1 }, { b: 2 }, { b: 3 }]]] }", false,
     "[ { 'a.0.0.b': 1 }, { 'a.0.0.b': 2 }, { 'a.0.0.b': 3 } ]", 1},
    {"{ 'a.0.0.b': 1 }", "{ a: [[[[{ b: 1 }]]]] }", false, "[ { 'a.0.0.b': null } ]", 1},
    {"{ 'a.b.1': 1 }", "{ a: [{ b: [1, 2] }] }", false, "[ { 'a.b.1': 2 } ]", 1},
    {"{ a: 1, 'a.b': 1, 'a.0.b': 1, 'a.b.0': 1, 'a.0.b.0': 1 }", "{ a: [{ b: [1, 2] }, { b: 3 }] }",
     false,
     "[ { a: { b: 3 }, 'a.b': 3, 'a.0.b': 1, 'a.b.0': null, 'a.0.b.0': 1 },"
     "  { a: { b: 3 }, 'a.b': 3, 'a.0.b': 2, 'a.b.0': null, 'a.0.b.0': 1 },"
     "  { a: { b: [1, 2] }, 'a.b': 1, 'a.0.b': 1, 'a.b.0': 1, 'a.0.b.0': 1 },"
     "  { a: { b: [1, 2] }, 'a.b': 2, 'a.0.b': 2, 'a.b.0': 1, 'a.0.b.0': 1 } ]",
     1},
    {"{ a: 1, 'a.b': 1, 'a.0.b': 1, 'a.b.0': 1, 'a.0.b.0': 1 }",
     "{ a: [{ b: [1, 2] }, { b: { '0': 3 } }] }", false,
     "[ { a: { b: { '0': 3 } }, 'a.b': { '0': 3 }, 'a.0.b': 1, 'a.b.0': 3, 'a.0.b.0': 1 },"
     "  { a: { b: { '0': 3 } }, 'a.b': { '0': 3 }, 'a.0.b': 2, 'a.b.0': 3, 'a.0.b.0': 1 },"
     "  { a: { b: [1, 2] }, 'a.b': 1, 'a.0.b': 1, 'a.b.0': 1, 'a.0.b.0': 1 },"
     "  { a: { b: [1, 2] }, 'a.b': 2, 'a.0.b': 2, 'a.b.0': 1, 'a.0.b.0': 1 } ]",
     1},
};

static void test_mongodb_reference_cases(void **state)
{
    for (size_t i = 0; i < sizeof reference_cases / sizeof reference_cases[0]; i++)
        check_keys_(reference_cases[i].pattern, reference_cases[i].doc, reference_cases[i].sparse,
                    reference_cases[i].keys, reference_cases[i].multikey, 10000 + (int)i);

    /* errors */
    check_keys_error("{ 'a.0': 1 }", "{ a: [{ '0': 1 }] }", 16746, "Location16746",
                     "Ambiguous field name found in array");
    check_keys_error("{ 'a.0': 1 }", "{ a: [1, { '0': 2 }] }", 16746, "Location16746",
                     "Ambiguous field name found in array");
    check_keys_error("{ 'a.a': 1, 'b.a': 1 }", "{ a: { a: [1] }, b: { a: [1] } }", 171,
                     "CannotIndexParallelArrays", "cannot index parallel arrays [a] [a]");
    check_keys_error("{ 'b.a': 1, a: 1 }", "{ b: { a: [1] }, a: [1, 2] }", 171,
                     "CannotIndexParallelArrays", "cannot index parallel arrays [a] [a]");
    check_keys_error("{ a: 1, b: 1 }", "{ a: [], b: [] }", 171, "CannotIndexParallelArrays",
                     "cannot index parallel arrays [b] [a]");
    check_keys_error("{ a: 1, b: 1 }", "{ a: [], b: [1, 2, 3] }", 171, "CannotIndexParallelArrays",
                     "cannot index parallel arrays [b] [a]");
    check_keys_error("{ 'a.b.c': 1, 'a.b.d': 1 }", "{ a: [{ b: [{ c: [1, 2, 3], d: [] }] }] }", 171,
                     "CannotIndexParallelArrays", "cannot index parallel arrays [d] [c]");
    check_keys_error("{ a: 1, 'b.0': 1 }", "{ a: [1], b: [2] }", 171, "CannotIndexParallelArrays",
                     "cannot index parallel arrays [b] [a]");
}

/* ---------- micro-benchmark (printed, never asserted) ---------- */

static int count_key(void *ud, const uint8_t *key, size_t len, const bson_value_t *values)
{
    (*(size_t *)ud) += len;
    return MK_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench(const char *pattern, const bson_t *d, int iters, const char *label)
{
    mk_keypattern_t *kp = compile_ok(pattern);
    size_t sink = 0;
    double t0 = now_s();
    for (int i = 0; i < iters; i++)
        if (mk_keypattern_keys(kp, d, false, count_key, &sink, NULL, NULL) != MK_OK) fail();
    double dt = now_s() - t0;
    printf("  index keys %-28s %-12s %6.2f M docs/s (%d docs, %.3f s, %zu bytes)\n", pattern, label,
           iters / dt / 1e6, iters, dt, sink);
    mk_keypattern_destroy(kp);
}

static void test_bench(void **state)
{
    bson_t *d =
        tu_bson("{ _id: ObjectId('65a1b2c3d4e5f60718293a4b'), name: 'Jane Q. Example',"
                "  email: 'jane.example@example.com', role: 'user', age: 42,"
                "  profile: { bio: 'Writes C for fun and profit, mostly profit.',"
                "             avatar: 'https://example.com/a/jane.png' },"
                "  tags: ['c', 'lmdb', 'bson', 'mongodb', 'c'],"
                "  createdAt: new Date(1700000000000), updatedAt: new Date(1700000000001) }");
    printf("  document: %u bytes\n", d->len);
    bench("{ email: 1 }", d, 2000000, "");
    bench("{ role: 1, age: -1 }", d, 1000000, "");
    bench("{ 'profile.avatar': 1 }", d, 1000000, "");
    bench("{ tags: 1 }", d, 500000, "(multikey)");
    bson_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_fields),
        cmocka_unit_test(test_pattern_errors),
        cmocka_unit_test(test_special_indexes_unsupported),
        cmocka_unit_test(test_default_names),
        cmocka_unit_test(test_single_field),
        cmocka_unit_test(test_missing_and_sparse),
        cmocka_unit_test(test_multikey),
        cmocka_unit_test(test_empty_arrays),
        cmocka_unit_test(test_nested_arrays),
        cmocka_unit_test(test_arrays_of_documents),
        cmocka_unit_test(test_compound),
        cmocka_unit_test(test_parallel_arrays),
        cmocka_unit_test(test_positional_paths),
        cmocka_unit_test(test_long_values),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_key_doc),
        cmocka_unit_test(test_compound_order),
        cmocka_unit_test(test_mongodb_reference_cases),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
