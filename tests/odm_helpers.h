/* Helpers shared by the ODM tests written from the book and the seeds (test_book_*.c,
 * test_seed_user.c): connections, schemas, models and documents that fail the test with the
 * error's kind and message, and field-by-field comparisons. Include after testutil.h. */
#ifndef MK_ODM_HELPERS_H
#define MK_ODM_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static __attribute__((unused)) void assert_ok_(int rc, const mk_error_t *err, const char *file,
                                               int line)
{
    if (rc != MK_OK) {
        print_error("%s:%d: expected MK_OK, got %d: [%s] %s\n", file, line, rc, err->kind,
                    err->message);
        _fail(file, line);
    }
}
#define assert_ok(rc, err) assert_ok_((rc), (err), __FILE__, __LINE__)

/* A connection to a fresh temporary database ("memory:"). */
static __attribute__((unused)) mk_conn_t *open_memory(void)
{
    mk_error_t err = {0};
    mk_conn_t *conn = mk_connect("memory:", &err);
    if (!conn) fail_msg("mk_connect(memory:): [%s] %s", err.kind, err.message);
    return conn;
}

/* A new document or a failed test. */
static __attribute__((unused)) mk_doc_t *doc_ok_(mk_doc_t *doc, const mk_error_t *err,
                                                 const char *file, int line)
{
    if (!doc) {
        print_error("%s:%d: no document: [%s] %s\n", file, line, err->kind, err->message);
        _fail(file, line);
    }
    return doc;
}
#define doc_ok(doc, err) doc_ok_((doc), (err), __FILE__, __LINE__)

/* The string at `path` of a document (getters applied) equals `expect`. */
static __attribute__((unused)) void assert_doc_str_(mk_doc_t *doc, const char *path,
                                                    const char *expect, const char *file, int line)
{
    const char *got = mk_doc_get_str(doc, path);
    if (!got || strcmp(got, expect) != 0) {
        print_error("%s:%d: %s: got %s%s%s, expected \"%s\"\n", file, line, path, got ? "\"" : "",
                    got ? got : "no string", got ? "\"" : "", expect);
        _fail(file, line);
    }
}
#define assert_doc_str(doc, path, expect)                                                          \
    assert_doc_str_((doc), (path), (expect), __FILE__, __LINE__)

/* The stored document with this _id, read with the raw `find` command (NULL: none). */
static __attribute__((unused)) bson_t *find_by_id(mk_conn_t *conn, const char *coll,
                                                  const bson_oid_t *oid)
{
    mk_error_t err = {0};
    bson_t *cmd = mk_bson(&err, "{ find: ?, filter: { _id: ? } }", MK_STR(coll), MK_OID(oid));
    assert_non_null(cmd);
    bson_t reply = BSON_INITIALIZER;
    int rc = mk_conn_command(conn, cmd, &reply, &err);
    bson_destroy(cmd);
    if (rc != MK_OK) {
        bson_destroy(&reply);
        fail_msg("find on %s: [%s] %s", coll, err.kind, err.message);
    }
    bson_t *found = NULL;
    bson_iter_t it, child;
    if (bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "cursor.firstBatch.0", &child) &&
        BSON_ITER_HOLDS_DOCUMENT(&child)) {
        const uint8_t *data = NULL;
        uint32_t len = 0;
        bson_iter_document(&child, &len, &data);
        found = bson_new_from_data(data, len);
        assert_non_null(found);
    }
    bson_destroy(&reply);
    return found;
}

/* Copies `actual` into `out` with its fields in the order of `expected` (recursively for
 * sub-documents), then the fields `expected` does not name: the comparison that follows then
 * ignores field order but still fails on a missing, extra or different field. */
static __attribute__((unused)) void reorder_like(const bson_t *actual, const bson_t *expected,
                                                 bson_t *out)
{
    bson_iter_t e, a;
    assert_true(bson_iter_init(&e, expected));
    while (bson_iter_next(&e)) {
        const char *key = bson_iter_key(&e);
        if (!bson_iter_init_find(&a, actual, key)) continue;
        if (BSON_ITER_HOLDS_DOCUMENT(&a) && BSON_ITER_HOLDS_DOCUMENT(&e)) {
            const uint8_t *ad = NULL, *ed = NULL;
            uint32_t alen = 0, elen = 0;
            bson_iter_document(&a, &alen, &ad);
            bson_iter_document(&e, &elen, &ed);
            bson_t asub, esub, osub;
            assert_true(bson_init_static(&asub, ad, alen));
            assert_true(bson_init_static(&esub, ed, elen));
            assert_true(bson_append_document_begin(out, key, -1, &osub));
            reorder_like(&asub, &esub, &osub);
            assert_true(bson_append_document_end(out, &osub));
        } else {
            assert_true(bson_append_iter(out, key, -1, &a));
        }
    }
    assert_true(bson_iter_init(&a, actual));
    while (bson_iter_next(&a))
        if (!bson_iter_init_find(&e, expected, bson_iter_key(&a)))
            assert_true(bson_append_iter(out, bson_iter_key(&a), -1, &a));
}

/* `actual` has exactly the fields and values of `expect` (relaxed JSON), in any order. */
static __attribute__((unused)) void assert_fields_(const bson_t *actual, const char *expect,
                                                   const char *file, int line)
{
    assert_non_null(actual);
    bson_t *expected = tu_bson(expect);
    bson_t ordered = BSON_INITIALIZER;
    reorder_like(actual, expected, &ordered);
    bson_destroy(expected);
    tu_assert_bson_eq_(&ordered, expect, file, line);
    bson_destroy(&ordered);
}
#define assert_fields(actual, expect) assert_fields_((actual), (expect), __FILE__, __LINE__)

/* A parsed schema, for registering C functions before the model is compiled. */
static __attribute__((unused)) mk_schema_t *schema_ok_(const char *def, const char *opts,
                                                       const char *file, int line)
{
    mk_error_t err = {0};
    mk_schema_t *schema = mk_schema_parse(def, opts, &err);
    if (!schema) {
        print_error("%s:%d: schema: [%s] %s\n", file, line, err.kind, err.message);
        _fail(file, line);
    }
    return schema;
}
#define schema_ok(def, opts) schema_ok_((def), (opts), __FILE__, __LINE__)

/* Compiles `schema` (then destroyed: the model keeps its own copy). */
static __attribute__((unused)) mk_model_t *
compile_ok_(mk_conn_t *conn, const char *name, mk_schema_t *schema, const char *file, int line)
{
    mk_error_t err = {0};
    mk_model_t *model = mk_model(conn, name, schema, &err);
    mk_schema_destroy(schema);
    if (!model) {
        print_error("%s:%d: model %s: [%s] %s\n", file, line, name, err.kind, err.message);
        _fail(file, line);
    }
    return model;
}
#define compile_ok(conn, name, schema) compile_ok_((conn), (name), (schema), __FILE__, __LINE__)

/* Number of documents in a collection (the raw `count` command). */
static __attribute__((unused)) int64_t count_in(mk_conn_t *conn, const char *coll)
{
    mk_error_t err = {0};
    bson_t *cmd = mk_bson(&err, "{ count: ? }", MK_STR(coll));
    assert_non_null(cmd);
    bson_t reply = BSON_INITIALIZER;
    int rc = mk_conn_command(conn, cmd, &reply, &err);
    bson_destroy(cmd);
    if (rc != MK_OK) {
        bson_destroy(&reply);
        fail_msg("count on %s: [%s] %s", coll, err.kind, err.message);
    }
    int64_t n = tu_get_int(&reply, "n");
    bson_destroy(&reply);
    return n;
}

/* The ValidationError detail for `path` has this name ("ValidatorError", "CastError"), kind and
 * message. */
static __attribute__((unused)) void assert_detail_(const mk_error_t *err, const char *path,
                                                   const char *name, const char *kind,
                                                   const char *message, const char *file, int line)
{
    mk_error_detail_t d;
    if (!mk_error_detail_find(err, path, &d)) {
        print_error("%s:%d: no error for path %s in: %s\n", file, line, path, err->message);
        _fail(file, line);
    }
    _assert_string_equal(d.path, path, file, line);
    _assert_string_equal(d.name, name, file, line);
    _assert_string_equal(d.kind, kind, file, line);
    _assert_string_equal(d.message, message, file, line);
}
#define assert_detail(err, path, name, kind, message)                                              \
    assert_detail_((err), (path), (name), (kind), (message), __FILE__, __LINE__)

/* The _id of a document as 24 hex digits. */
static __attribute__((unused)) void oid_hex(mk_doc_t *doc, char hex[25])
{
    const bson_oid_t *oid = mk_doc_oid(doc);
    assert_non_null(oid);
    bson_oid_to_string(oid, hex);
}

#endif
