/* The mutable document tree: lazy expansion, paths, insertion order, arrays, output, limits. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson/tree.h"

static void assert_tree_eq(mk_tree_t *t, const char *expect)
{
    bson_t out = BSON_INITIALIZER;
    mk_error_t err = {0};
    assert_int_equal(mk_tree_to_bson(t, &out, &err), MK_OK);
    bson_t *want = tu_bson(expect);
    if (out.len != want->len || memcmp(bson_get_data(&out), bson_get_data(want), want->len)) {
        char *a = bson_as_canonical_extended_json(&out, NULL);
        char *b = bson_as_canonical_extended_json(want, NULL);
        print_error("trees differ\n  actual:   %s\n  expected: %s\n", a, b);
        bson_free(a);
        bson_free(b);
        fail();
    }
    bson_destroy(want);
    bson_destroy(&out);
}

static mk_tnode_t *get(mk_tree_t *t, const char *path)
{
    mk_tnode_t *n = NULL;
    mk_error_t err = {0};
    assert_int_equal(mk_tree_get(t, path, strlen(path), &n, &err), MK_OK);
    return n;
}

static void test_roundtrip_untouched(void **state)
{
    bson_t *doc = tu_bson("{_id: 1, a: {b: [1, 2, {c: 'x'}]}, d: 1.5, e: NumberLong(7)}");
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    bson_t out = BSON_INITIALIZER;
    assert_int_equal(mk_tree_to_bson(&t, &out, NULL), MK_OK);
    assert_int_equal(out.len, doc->len);
    assert_memory_equal(bson_get_data(&out), bson_get_data(doc), doc->len);
    bson_destroy(&out);
    /* Expanding everything and writing it back gives the same bytes too. */
    assert_non_null(get(&t, "a.b.2.c"));
    bson_init(&out);
    assert_int_equal(mk_tree_to_bson(&t, &out, NULL), MK_OK);
    assert_memory_equal(bson_get_data(&out), bson_get_data(doc), doc->len);
    bson_destroy(&out);
    mk_tree_destroy(&t);
    bson_destroy(doc);
}

static void test_lazy_expansion(void **state)
{
    bson_t *doc = tu_bson("{a: {x: 1}, b: {y: [1, 2]}}");
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    mk_tnode_t *root = mk_tree_root(&t);
    assert_false(root->flags & MK_TNODE_EXPANDED);
    mk_tnode_t *x = get(&t, "a.x");
    assert_non_null(x);
    assert_true(root->flags & MK_TNODE_EXPANDED);
    mk_tnode_t *b = get(&t, "b");
    assert_false(b->flags & MK_TNODE_EXPANDED); /* untouched: still raw bytes */
    mk_tree_destroy(&t);
    bson_destroy(doc);
}

static void test_get(void **state)
{
    bson_t *doc = tu_bson("{a: {b: [10, {c: 'x'}]}, s: 1}");
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    bson_value_t v;
    mk_tnode_t *n = get(&t, "a.b.0");
    assert_non_null(n);
    assert_int_equal(mk_tnode_value(&t, n, &v, NULL), MK_OK);
    assert_int_equal(v.value_type, BSON_TYPE_INT32);
    assert_int_equal(v.value.v_int32, 10);
    n = get(&t, "a.b.1.c");
    assert_int_equal(mk_tnode_value(&t, n, &v, NULL), MK_OK);
    assert_int_equal(v.value_type, BSON_TYPE_UTF8);
    assert_string_equal(v.value.v_utf8.str, "x");
    assert_null(get(&t, "a.b.2"));
    assert_null(get(&t, "a.b.c")); /* arrays take indexes only */
    assert_null(get(&t, "s.t"));   /* scalars have no children */
    assert_null(get(&t, "missing"));
    mk_error_t err = {0};
    assert_int_equal(mk_tree_get(&t, "a..b", 4, &n, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_EMPTY_FIELD_NAME);
    mk_tree_destroy(&t);
    bson_destroy(doc);
}

static void test_set(void **state)
{
    bson_t *doc = tu_bson("{z: 1, a: {b: 1}, arr: [1, 2]}");
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    mk_error_t err = {0};
    bson_value_t v = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 5};
    /* Existing fields keep their place, new ones are appended. */
    assert_int_equal(mk_tree_set(&t, "z", 1, &v, NULL, &err), MK_OK);
    assert_int_equal(mk_tree_set(&t, "n", 1, &v, NULL, &err), MK_OK);
    assert_int_equal(mk_tree_set(&t, "a.c.d", 5, &v, NULL, &err), MK_OK);
    assert_int_equal(mk_tree_set(&t, "arr.4", 5, &v, NULL, &err), MK_OK);
    assert_int_equal(mk_tree_set(&t, "arr.0", 5, &v, NULL, &err), MK_OK);
    assert_tree_eq(&t, "{z: 5, a: {b: 1, c: {d: 5}}, arr: [5, 2, null, null, 5], n: 5}");

    /* Through a scalar: MongoDB's PathNotViable. */
    assert_int_equal(mk_tree_set(&t, "a.b.x", 5, &v, NULL, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_PATH_NOT_VIABLE);
    assert_string_equal(err.message, "Cannot create field 'x' in element {b: 1}");
    assert_int_equal(mk_tree_set(&t, "arr.x", 5, &v, NULL, &err), MK_ERR);
    assert_string_equal(err.message,
                        "Cannot create field 'x' in element {arr: [ 5, 2, null, null, 5 ]}");
    /* A null value when v is NULL; the node is handed back. */
    mk_tnode_t *n = NULL;
    assert_int_equal(mk_tree_set(&t, "q", 1, NULL, &n, &err), MK_OK);
    assert_non_null(n);
    assert_int_equal(n->type, BSON_TYPE_NULL);
    mk_tree_destroy(&t);
    bson_destroy(doc);
}

static void test_set_value_copies(void **state)
{
    mk_tree_t t;
    mk_tree_init(&t);
    mk_error_t err = {0};
    char *text = strdup("temporary");
    bson_value_t v = {.value_type = BSON_TYPE_UTF8};
    v.value.v_utf8.str = text;
    v.value.v_utf8.len = (uint32_t)strlen(text);
    assert_int_equal(mk_tree_set(&t, "s", 1, &v, NULL, &err), MK_OK);
    bson_t *sub = tu_bson("{k: [1, 2]}");
    bson_value_t d = {.value_type = BSON_TYPE_DOCUMENT};
    d.value.v_doc.data = (uint8_t *)bson_get_data(sub);
    d.value.v_doc.data_len = sub->len;
    assert_int_equal(mk_tree_set(&t, "d", 1, &d, NULL, &err), MK_OK);
    memset(text, '#', strlen(text));
    free(text);
    bson_destroy(sub);
    assert_tree_eq(&t, "{s: 'temporary', d: {k: [1, 2]}}");
    /* and the copied sub-document can be expanded and changed */
    bson_value_t three = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 3};
    assert_int_equal(mk_tree_set(&t, "d.k.2", 5, &three, NULL, &err), MK_OK);
    assert_tree_eq(&t, "{s: 'temporary', d: {k: [1, 2, 3]}}");
    mk_tree_destroy(&t);
}

static void test_unset(void **state)
{
    bson_t *doc = tu_bson("{a: 1, b: {c: 1, d: 2}, e: [1, 2, 3]}");
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    bool removed;
    assert_int_equal(mk_tree_unset(&t, "b.c", 3, &removed, NULL), MK_OK);
    assert_true(removed);
    assert_int_equal(mk_tree_unset(&t, "e.1", 3, &removed, NULL), MK_OK);
    assert_true(removed);
    assert_int_equal(mk_tree_unset(&t, "x.y", 3, &removed, NULL), MK_OK);
    assert_false(removed);
    assert_int_equal(mk_tree_unset(&t, "a.y", 3, &removed, NULL), MK_OK);
    assert_false(removed);
    assert_int_equal(mk_tree_unset(&t, "a", 1, &removed, NULL), MK_OK);
    assert_tree_eq(&t, "{b: {d: 2}, e: [1, null, 3]}");
    mk_tree_destroy(&t);
    bson_destroy(doc);
}

static void test_nodes(void **state)
{
    bson_t *doc = tu_bson("{arr: [1, 2, 3]}");
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    mk_error_t err = {0};
    mk_tnode_t *arr = get(&t, "arr"), *n;
    assert_int_equal(mk_tnode_insert(&t, arr, 0, "", 0, &n, &err), MK_OK);
    mk_tnode_set_empty(n, BSON_TYPE_ARRAY);
    assert_int_equal(mk_tnode_insert(&t, arr, 2, "", 0, &n, &err), MK_OK);
    mk_tnode_set_empty(n, BSON_TYPE_DOCUMENT);
    assert_int_equal(mk_tnode_insert(&t, arr, UINT32_MAX, "", 0, &n, &err), MK_OK);
    assert_int_equal(mk_tnode_index_of(arr, n), 5);
    assert_tree_eq(&t, "{arr: [[], 1, {}, 2, 3, null]}");
    mk_tnode_remove(arr, 0);
    mk_tnode_remove(arr, 4);
    mk_tnode_remove(arr, 99); /* out of range: nothing */
    assert_tree_eq(&t, "{arr: [1, {}, 2, 3]}");

    /* find by name and by index */
    uint32_t pos = 0;
    mk_tnode_t *f;
    assert_int_equal(mk_tnode_find(&t, arr, "2", 1, &f, &pos, &err), MK_OK);
    assert_int_equal(pos, 2);
    assert_int_equal(mk_tnode_find(&t, arr, "x", 1, &f, &pos, &err), MK_OK);
    assert_null(f);
    assert_int_equal(mk_tnode_find(&t, f ? f : get(&t, "arr.0"), "x", 1, &f, NULL, &err), MK_OK);
    assert_null(f); /* a scalar has no children */

    /* move a value with copy_value */
    mk_tnode_t *root = mk_tree_root(&t), *dst;
    assert_int_equal(mk_tnode_insert(&t, root, UINT32_MAX, "moved", 5, &dst, &err), MK_OK);
    mk_tnode_copy_value(dst, arr);
    mk_tnode_remove(root, mk_tnode_index_of(root, arr));
    assert_tree_eq(&t, "{moved: [1, {}, 2, 3]}");
    mk_tree_destroy(&t);
    bson_destroy(doc);
}

static void test_binary_equal_and_format(void **state)
{
    bson_t *doc = tu_bson("{a: 1, b: 1.0, c: {x: [1]}, d: {x: [1]}, e: 'str'}");
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    bool eq;
    assert_int_equal(mk_tnode_binary_equal(&t, get(&t, "a"), get(&t, "b"), &eq, NULL), MK_OK);
    assert_false(eq); /* 1 and 1.0 are equal values but not the same bytes */
    /* an expanded container against a raw one */
    assert_non_null(get(&t, "c.x.0"));
    assert_int_equal(mk_tnode_binary_equal(&t, get(&t, "c"), get(&t, "d"), &eq, NULL), MK_OK);
    assert_true(eq);
    bson_string_t *s = bson_string_new(NULL);
    mk_tnode_format(&t, get(&t, "c"), s);
    bson_string_append(s, " | ");
    mk_tnode_format(&t, get(&t, "e"), s);
    assert_string_equal(s->str, "c: { x: [ 1 ] } | e: \"str\"");
    bson_string_free(s, true);
    mk_tree_destroy(&t);
    bson_destroy(doc);
}

static void test_array_keys_renumbered(void **state)
{
    /* An array stored with odd keys is written with "0", "1", ... once expanded. */
    bson_t arr = BSON_INITIALIZER;
    BSON_APPEND_INT32(&arr, "7", 1);
    BSON_APPEND_INT32(&arr, "x", 2);
    bson_t *sub = bson_new();
    BSON_APPEND_DOCUMENT(sub, "a", &arr);
    /* libbson refuses such an array, so turn the document into one by its type byte */
    uint8_t *bytes = malloc(sub->len);
    memcpy(bytes, bson_get_data(sub), sub->len);
    assert_int_equal(bytes[4], BSON_TYPE_DOCUMENT);
    bytes[4] = BSON_TYPE_ARRAY;
    bson_t *doc = bson_new_from_data(bytes, sub->len);
    free(bytes);
    bson_destroy(sub);
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    mk_error_t err = {0};
    mk_tnode_t *a = get(&t, "a"), *n;
    assert_int_equal(mk_tnode_insert(&t, a, UINT32_MAX, "", 0, &n, &err), MK_OK);
    assert_tree_eq(&t, "{a: [1, 2, null]}");
    mk_tree_destroy(&t);
    bson_destroy(doc);
    bson_destroy(&arr);
}

static void test_many_fields_arena(void **state)
{
    bson_t *doc = bson_new();
    char key[16];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "f%d", i);
        BSON_APPEND_INT32(doc, key, i);
    }
    mk_tree_t t;
    mk_tree_init_bson(&t, doc);
    mk_error_t err = {0};
    bson_value_t v = {.value_type = BSON_TYPE_UTF8};
    v.value.v_utf8.str = "new";
    v.value.v_utf8.len = 3;
    for (int i = 0; i < 5000; i += 7) {
        snprintf(key, sizeof key, "f%d", i);
        assert_int_equal(mk_tree_set(&t, key, strlen(key), &v, NULL, &err), MK_OK);
        snprintf(key, sizeof key, "g%d", i);
        assert_int_equal(mk_tree_set(&t, key, strlen(key), &v, NULL, &err), MK_OK);
    }
    bson_t out = BSON_INITIALIZER;
    assert_int_equal(mk_tree_to_bson(&t, &out, &err), MK_OK);
    assert_int_equal(bson_count_keys(&out), 5000 + (5000 + 6) / 7);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, &out, "f7"));
    assert_string_equal(bson_iter_utf8(&it, NULL), "new");
    assert_true(bson_iter_init_find(&it, &out, "f8"));
    assert_int_equal(bson_iter_int32(&it), 8);
    bson_destroy(&out);
    mk_tree_destroy(&t);
    bson_destroy(doc);
}

static void test_corrupt(void **state)
{
    /* A document whose embedded document claims more bytes than it has. */
    uint8_t bad[] = {17, 0, 0, 0, 3, 'a', 0, 200, 0, 0, 0, 16, 'b', 0, 1, 0, 0};
    bad[sizeof bad - 1] = 0;
    mk_tree_t t;
    mk_tree_init_data(&t, bad, sizeof bad);
    mk_error_t err = {0};
    mk_tnode_t *n;
    assert_int_equal(mk_tree_get(&t, "a.b", 3, &n, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_INVALID_BSON);
    mk_tree_destroy(&t);

    uint8_t short_doc[] = {3, 0, 0};
    mk_tree_init_data(&t, short_doc, sizeof short_doc);
    assert_int_equal(mk_tree_get(&t, "a", 1, &n, &err), MK_ERR);
    mk_tree_destroy(&t);
}

static void test_depth(void **state)
{
    mk_tree_t t;
    mk_tree_init(&t);
    mk_error_t err = {0};
    char path[512] = "";
    for (int i = 0; i < 99; i++) strcat(path, "a.");
    strcat(path, "b"); /* 'b' at level 100: the limit */
    bson_value_t v = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
    assert_int_equal(mk_tree_set(&t, path, strlen(path), &v, NULL, &err), MK_OK);
    uint32_t size;
    assert_int_equal(mk_tree_size(&t, &size, &err), MK_OK);
    strcat(path, ".c");
    mk_tnode_t *n;
    assert_int_equal(mk_tree_set(&t, path, strlen(path) - 2, NULL, &n, &err), MK_OK);
    mk_tnode_set_empty(n, BSON_TYPE_DOCUMENT);
    assert_int_equal(mk_tree_size(&t, &size, &err), MK_OK); /* an empty document adds no level */
    assert_int_equal(mk_tree_set(&t, path, strlen(path), &v, NULL, &err), MK_OK);
    assert_int_equal(mk_tree_size(&t, &size, &err), MK_ERR);
    assert_int_equal(err.code, MK_CODE_OVERFLOW);
    assert_string_equal(err.message, "Document exceeds maximum nesting depth of 100");
    mk_tree_destroy(&t);

    /* A raw value placed at depth is measured too. */
    bson_t *deep = bson_new();
    BSON_APPEND_INT32(deep, "x", 1);
    for (int i = 0; i < 99; i++) {
        bson_t *outer = bson_new();
        BSON_APPEND_DOCUMENT(outer, "d", deep);
        bson_destroy(deep);
        deep = outer;
    }
    mk_tree_init(&t);
    bson_value_t dv = {.value_type = BSON_TYPE_DOCUMENT};
    dv.value.v_doc.data = (uint8_t *)bson_get_data(deep);
    dv.value.v_doc.data_len = deep->len;
    assert_int_equal(mk_tree_set(&t, "v", 1, &dv, NULL, &err), MK_OK); /* x at level 101 */
    assert_int_equal(mk_tree_size(&t, &size, &err), MK_ERR);
    mk_tree_destroy(&t);
    /* but the same bytes as the source document are trusted */
    mk_tree_init_bson(&t, deep);
    assert_int_equal(mk_tree_size(&t, &size, &err), MK_OK);
    assert_int_equal(size, deep->len);
    mk_tree_destroy(&t);
    bson_destroy(deep);
}

static void test_padding_limit(void **state)
{
    mk_tree_t t;
    mk_tree_init(&t);
    mk_error_t err = {0};
    mk_tnode_t *a;
    assert_int_equal(mk_tree_set(&t, "a", 1, NULL, &a, &err), MK_OK);
    mk_tnode_set_empty(a, BSON_TYPE_ARRAY);
    assert_int_equal(mk_tree_set(&t, "a.1500001", 9, NULL, NULL, &err), MK_ERR);
    assert_int_equal(err.code, 105);
    assert_int_equal(mk_tree_set(&t, "a.20", 4, NULL, NULL, &err), MK_OK);
    assert_int_equal(a->nkids, 21);
    mk_tree_destroy(&t);
}

/* 0 when both values encode to the same bytes. */
static int same_bytes_cmp(const bson_value_t *a, const bson_value_t *b)
{
    bson_t x = BSON_INITIALIZER, y = BSON_INITIALIZER;
    assert_true(bson_append_value(&x, "", 0, a));
    assert_true(bson_append_value(&y, "", 0, b));
    int r = x.len != y.len || memcmp(bson_get_data(&x), bson_get_data(&y), x.len) != 0;
    bson_destroy(&x);
    bson_destroy(&y);
    return r;
}

/* Every BSON type survives the raw walker, the value decoder and the encoder. */
static void test_all_types(void **state)
{
    bson_t *doc =
        tu_bson("{d: 1.5, s: 'str', o: {a: 1}, a: [1], b: BinData(0, 'AAEC'), u: undefined,"
                " id: ObjectId('5f0000000000000000000001'), t: true, dt: new Date(5),"
                " n: null, r: /ab/i, i: 1, ts: Timestamp(1, 2), l: NumberLong(3),"
                " dec: NumberDecimal('1.5'), mn: MinKey, mx: MaxKey}");
    bson_append_code(doc, "code", -1, "f()");
    bson_append_symbol(doc, "sym", -1, "sy", 2);
    bson_t scope = BSON_INITIALIZER;
    BSON_APPEND_INT32(&scope, "x", 1);
    bson_append_code_with_scope(doc, "cws", -1, "g()", &scope);
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, "5f0000000000000000000002");
    bson_append_dbpointer(doc, "dbp", -1, "coll", &oid);

    mk_raw_iter_t r;
    bson_iter_t it;
    bool bad;
    assert_true(mk_raw_iter_init(&r, bson_get_data(doc), doc->len));
    assert_true(bson_iter_init(&it, doc));
    mk_tree_t t;
    mk_tree_init(&t);
    int count = 0;
    while (bson_iter_next(&it)) {
        assert_true(mk_raw_iter_next(&r, &bad));
        assert_string_equal(r.key, bson_iter_key(&it));
        assert_int_equal(r.type, bson_iter_type(&it));
        bson_value_t v;
        assert_true(mk_raw_to_value(r.type, r.value, r.vlen, &v));
        assert_int_equal(same_bytes_cmp(&v, bson_iter_value(&it)), 0);
        /* through the tree's encoder and back */
        mk_tnode_t *n;
        assert_int_equal(mk_tree_set(&t, r.key, r.keylen, &v, &n, NULL), MK_OK);
        bson_value_t back;
        assert_int_equal(mk_tnode_value(&t, n, &back, NULL), MK_OK);
        assert_int_equal(same_bytes_cmp(&back, &v), 0);
        count++;
    }
    assert_false(mk_raw_iter_next(&r, &bad));
    assert_false(bad);
    assert_int_equal(count, 21);
    bson_t out = BSON_INITIALIZER;
    assert_int_equal(mk_tree_to_bson(&t, &out, NULL), MK_OK);
    assert_int_equal(out.len, doc->len);
    assert_memory_equal(bson_get_data(&out), bson_get_data(doc), doc->len);
    bson_destroy(&out);
    mk_tree_destroy(&t);
    bson_destroy(&scope);
    bson_destroy(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_untouched),
        cmocka_unit_test(test_lazy_expansion),
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_set_value_copies),
        cmocka_unit_test(test_unset),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_binary_equal_and_format),
        cmocka_unit_test(test_array_keys_renumbered),
        cmocka_unit_test(test_many_fields_arena),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_padding_limit),
        cmocka_unit_test(test_all_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
