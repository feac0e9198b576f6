/* Documents: construction with casting and defaults, get/set, change tracking, arrays,
 * virtuals, methods, the update save() would send; connections and model naming. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <meerkat.h>

#include "testutil.h"

static const char *USER_SCHEMA =
    "{ email: { type: String, required: true, lowercase: true, trim: true },"
    "  name: { type: String, required: true, minlength: 2 },"
    "  age: { type: Number, min: 0 },"
    "  role: { type: String, enum: ['user', 'admin'], default: 'user' },"
    "  tags: [String],"
    "  scores: [Number],"
    "  profile: { avatar: String, bio: String },"
    "  comments: [{ text: String, votes: { type: Number, default: 0 } }],"
    "  meta: {} }";

typedef struct fixture {
    mk_conn_t *conn;
    mk_schema_t *schema;
    mk_model_t *User;
} fixture_t;

static int setup(void **state)
{
    mk_error_t err = {0};
    fixture_t *f = calloc(1, sizeof *f);
    f->conn = mk_connect("memory:", &err);
    assert_non_null(f->conn);
    f->schema = mk_schema_parse(USER_SCHEMA, "{ timestamps: true }", &err);
    assert_non_null(f->schema);
    f->User = mk_model(f->conn, "User", f->schema, &err);
    assert_non_null(f->User);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    mk_schema_destroy(f->schema);
    mk_conn_close(f->conn);
    free(f);
    return 0;
}

static void assert_doc(mk_doc_t *d, const char *expect)
{
    mk_error_t err = {0};
    const bson_t *b = mk_doc_bson(d, &err);
    assert_non_null(b);
    bson_t copy;
    bson_copy_to_excluding_noinit(b, (bson_init(&copy), &copy), "_id", NULL);
    tu_assert_bson_eq(&copy, expect);
    bson_destroy(&copy);
}

static void construct_casts_and_defaults(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *d = mk_doc_new(f->User, &err,
                             "{ email: '  Ann@Example.COM ', name: 'Ann', age: '42', tags: 'x',"
                             "  unknown: 1, profile: { bio: 'hi' } }");
    assert_non_null(d);
    assert_true(mk_doc_is_new(d));
    assert_string_equal(mk_doc_get_str(d, "email"), "ann@example.com");
    assert_int_equal(mk_doc_get_i64(d, "age"), 42);
    bson_value_t v;
    assert_true(mk_doc_get(d, "age", &v));
    assert_int_equal(v.value_type, BSON_TYPE_INT32);
    assert_string_equal(mk_doc_get_str(d, "role"), "user");
    assert_int_equal(mk_doc_array_len(d, "tags"), 1);
    assert_string_equal(mk_doc_get_str(d, "tags.0"), "x");
    assert_int_equal(mk_doc_array_len(d, "comments"), 0);
    assert_false(mk_doc_get(d, "unknown", &v)); /* strict drops it */
    assert_string_equal(mk_doc_get_str(d, "profile.bio"), "hi");
    assert_non_null(mk_doc_oid(d));
    assert_non_null(mk_doc_id(d));
    assert_int_equal(strlen(mk_doc_id(d)), 24);
    assert_doc(d, "{ email: 'ann@example.com', name: 'Ann', age: 42, tags: ['x'],"
                  "  profile: { bio: 'hi' }, role: 'user', scores: [], comments: [] }");
    mk_doc_destroy(d);
}

static void cast_error_is_recorded(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *d = mk_doc_new(f->User, &err, "{ email: 'a@b.c', name: 'Ann', age: 59 }");
    assert_non_null(d);
    assert_int_equal(mk_doc_set(d, "age", MK_STR("not a number"), &err), MK_ERR);
    assert_string_equal(err.kind, "CastError");
    assert_string_equal(err.message, "Cast to Number failed for value \"not a number\" (type "
                                     "string) at path \"age\"");
    assert_int_equal(mk_doc_get_i64(d, "age"), 59); /* the previous value stays */
    assert_int_equal(mk_doc_validate(d, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_string_equal(err.message,
                        "User validation failed: age: Cast to Number failed for value \"not a "
                        "number\" (type string) at path \"age\"");
    assert_int_equal(mk_error_detail_count(&err), 1);
    mk_error_detail_t det;
    assert_true(mk_error_detail(&err, 0, &det));
    assert_string_equal(det.path, "age");
    assert_string_equal(det.name, "CastError");
    /* a castable value clears it */
    assert_int_equal(mk_doc_set(d, "age", MK_STR("60"), &err), MK_OK);
    assert_int_equal(mk_doc_validate(d, &err), MK_OK);
    assert_int_equal(mk_doc_get_i64(d, "age"), 60);
    mk_doc_destroy(d);
}

static void construction_cast_error_leaves_path_unset(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *d = mk_doc_new(f->User, &err, "{ email: 'a@b.c', name: 'Ann', age: 'old' }");
    assert_non_null(d);
    bson_value_t v;
    assert_false(mk_doc_get(d, "age", &v));
    assert_int_equal(mk_doc_validate(d, &err), MK_ERR);
    assert_non_null(strstr(err.message, "age: Cast to Number failed for value \"old\""));
    mk_doc_destroy(d);
}

static void required_and_validators(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_doc_t *d = mk_doc_new(f->User, &err, "{ name: 'A', role: 'root' }");
    assert_non_null(d);
    assert_int_equal(mk_doc_validate(d, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_non_null(strstr(err.message, "email: Path `email` is required."));
    assert_non_null(strstr(err.message, "`root` is not a valid enum value for path `role`."));
    assert_non_null(strstr(err.message, "is shorter than the minimum allowed length (2)"));
    mk_error_detail_t det;
    assert_true(mk_error_detail_find(&err, "email", &det));
    assert_string_equal(det.kind, "required");
    assert_true(mk_error_detail_find(&err, "role", &det));
    assert_string_equal(det.kind, "enum");
    mk_doc_destroy(d);
}

static void strict_modes(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse("{ a: String }", "{ strict: 'throw' }", &err);
    mk_model_t *T = mk_model(f->conn, "Thrower", s, &err);
    assert_non_null(T);
    assert_null(mk_doc_new(T, &err, "{ a: 'x', b: 1 }"));
    assert_string_equal(err.kind, "StrictModeError");
    assert_string_equal(err.message, "Field `b` is not in schema and strict mode is set to throw.");
    mk_schema_destroy(s);
    s = mk_schema_parse("{ a: String }", "{ strict: false }", &err);
    mk_model_t *L = mk_model(f->conn, "Loose", s, &err);
    mk_doc_t *d = mk_doc_new(L, &err, "{ a: 'x', b: 1 }");
    assert_non_null(d);
    assert_int_equal(mk_doc_get_i64(d, "b"), 1);
    assert_int_equal(mk_doc_set(d, "c.d", MK_I32(2), &err), MK_OK);
    assert_int_equal(mk_doc_get_i64(d, "c.d"), 2);
    mk_doc_destroy(d);
    mk_schema_destroy(s);
}

static void modified_paths_rules(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    bson_t *stored = tu_bson("{ _id: 1, email: 'a@b.c', name: 'Ann', age: 30, "
                             "profile: { avatar: 'x.png', bio: 'old' }, tags: ['a', 'b'] }");
    mk_doc_t *d = mk_doc_hydrate(f->User, stored, &err);
    assert_non_null(d);
    assert_false(mk_doc_is_new(d));
    assert_false(mk_doc_is_modified(d, NULL));
    /* setting the same value changes nothing */
    assert_int_equal(mk_doc_set(d, "age", MK_STR("30"), &err), MK_OK);
    assert_false(mk_doc_is_modified(d, NULL));
    assert_int_equal(mk_doc_set(d, "profile.bio", MK_STR("new"), &err), MK_OK);
    assert_true(mk_doc_is_modified(d, "profile"));     /* a child changed */
    assert_true(mk_doc_is_modified(d, "profile.bio")); /* itself */
    assert_false(mk_doc_is_modified(d, "profile.avatar"));
    assert_false(mk_doc_is_direct_modified(d, "profile"));
    assert_true(mk_doc_is_direct_modified(d, "profile.bio"));
    char **paths = mk_doc_modified_paths(d, false);
    assert_non_null(paths);
    assert_string_equal(paths[0], "profile");
    assert_string_equal(paths[1], "profile.bio");
    assert_null(paths[2]);
    mk_strv_free(paths);
    assert_int_equal(mk_doc_set_json(d, "profile", &err, "{ avatar: 'y.png' }"), MK_OK);
    paths = mk_doc_modified_paths(d, true);
    assert_non_null(paths);
    bool has_child = false;
    for (char **p = paths; *p; p++)
        if (strcmp(*p, "profile.avatar") == 0) has_child = true;
    assert_true(has_child);
    mk_strv_free(paths);
    assert_true(mk_doc_is_modified(d, "profile.avatar")); /* its parent was set */
    bson_t *delta = mk_doc_delta(d, &err);
    assert_non_null(delta);
    tu_assert_bson_eq(delta, "{ $set: { profile: { avatar: 'y.png' } } }");
    bson_destroy(delta);
    mk_doc_destroy(d);
    bson_destroy(stored);
}

static void delta_two_paths_and_unset(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    bson_t *stored = tu_bson("{ _id: 1, email: 'a@b.c', name: 'Ann', age: 30, __v: 0 }");
    mk_doc_t *d = mk_doc_hydrate(f->User, stored, &err);
    assert_int_equal(mk_doc_set(d, "name", MK_STR("Bob"), &err), MK_OK);
    assert_int_equal(mk_doc_set(d, "age", MK_I32(31), &err), MK_OK);
    assert_int_equal(mk_doc_unset(d, "email", &err), MK_OK);
    bson_t *delta = mk_doc_delta(d, &err);
    tu_assert_bson_eq(delta, "{ $set: { name: 'Bob', age: 31 }, $unset: { email: 1 } }");
    bson_destroy(delta);
    mk_doc_destroy(d);
    bson_destroy(stored);
}

static void arrays_push_pull_add_to_set(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    bson_t *stored = tu_bson("{ _id: 1, email: 'a@b.c', name: 'Ann', tags: ['a'], scores: [1, 2],"
                             " comments: [{ _id: ObjectId('5f0000000000000000000001'), "
                             "text: 'hi', votes: 1 }] }");
    mk_doc_t *d = mk_doc_hydrate(f->User, stored, &err);
    assert_int_equal(mk_doc_push(d, "tags", MK_STR("b"), &err), MK_OK);
    assert_int_equal(mk_doc_push(d, "tags", MK_I32(7), &err), MK_OK); /* cast to '7' */
    assert_string_equal(mk_doc_get_str(d, "tags.2"), "7");
    bool added = true;
    assert_int_equal(mk_doc_add_to_set(d, "scores", MK_STR("2"), &added, &err), MK_OK);
    assert_false(added);
    assert_int_equal(mk_doc_add_to_set(d, "scores", MK_STR("3"), &added, &err), MK_OK);
    assert_true(added);
    assert_int_equal(mk_doc_push_json(d, "comments", &err, "{ text: ? }", MK_STR("new")), MK_OK);
    assert_int_equal(mk_doc_array_len(d, "comments"), 2);
    assert_int_equal(mk_doc_get_i64(d, "comments.1.votes"), 0); /* sub-document default */
    bson_value_t id;
    assert_true(mk_doc_get(d, "comments.1._id", &id));
    assert_int_equal(id.value_type, BSON_TYPE_OID); /* sub-documents get an _id */
    assert_int_equal(mk_doc_array_id(d, "comments", MK_STR("5f0000000000000000000001")), 0);
    assert_true(mk_doc_is_modified(d, "tags"));
    /* push on a number array that cannot cast */
    assert_int_equal(mk_doc_push(d, "scores", MK_STR("x"), &err), MK_ERR);
    assert_string_equal(err.kind, "CastError");
    bson_t *delta = mk_doc_delta(d, &err);
    assert_non_null(delta);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, delta, "$push"));
    bson_t *expect_tags = tu_bson("{ $each: ['b', '7'] }");
    bson_iter_t t;
    assert_true(bson_iter_recurse(&it, &t) && bson_iter_find(&t, "tags"));
    bson_t got;
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&t, &len, &data);
    bson_init_static(&got, data, len);
    assert_true(bson_equal(&got, expect_tags));
    bson_destroy(expect_tags);
    assert_true(bson_iter_init_find(&it, delta, "$addToSet"));
    bson_destroy(delta);
    size_t removed = 0;
    mk_doc_t *d2 = mk_doc_hydrate(f->User, stored, &err);
    assert_int_equal(
        mk_doc_pull(d2, "comments", MK_STR("5f0000000000000000000001"), &removed, &err), MK_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(mk_doc_pull(d2, "scores", MK_I32(1), &removed, &err), MK_OK);
    assert_int_equal(removed, 1);
    delta = mk_doc_delta(d2, &err);
    tu_assert_bson_eq(delta,
                      "{ $pull: { comments: { _id: { $in: "
                      "[ObjectId('5f0000000000000000000001')] } }, scores: { $in: [1] } } }");
    bson_destroy(delta);
    /* a direct set after a push sends the whole array */
    assert_int_equal(mk_doc_push(d2, "tags", MK_STR("z"), &err), MK_OK);
    assert_int_equal(mk_doc_set_json(d2, NULL, &err, "{ tags: ['q'] }"), MK_OK);
    delta = mk_doc_delta(d2, &err);
    assert_true(bson_iter_init_find(&it, delta, "$set"));
    bson_destroy(delta);
    mk_doc_destroy(d2);
    mk_doc_destroy(d);
    bson_destroy(stored);
}

static int full_name_get(mk_doc_t *d, bson_value_t *out, void *ud, mk_error_t *err)
{
    const char *n = mk_doc_get_str(d, "name");
    char buf[128];
    snprintf(buf, sizeof buf, "%s <%s>", n ? n : "", mk_doc_get_str(d, "email"));
    bson_value_t v = {.value_type = BSON_TYPE_UTF8};
    v.value.v_utf8.str = buf;
    v.value.v_utf8.len = (uint32_t)strlen(buf);
    bson_value_copy(&v, out);
    return MK_OK;
}

static int name_set(mk_doc_t *d, const bson_value_t *v, void *ud, mk_error_t *err)
{
    (*(int *)ud)++;
    return mk_doc_set_value(d, "name", v, err);
}

static int shout(mk_doc_t *d, void *args, void *ud, mk_error_t *err)
{
    *(const char **)args = mk_doc_get_str(d, "name");
    return MK_OK;
}

static int count_static(mk_model_t *m, void *args, void *ud, mk_error_t *err)
{
    *(const char **)args = mk_model_collection_name(m);
    return MK_OK;
}

static void virtuals_methods_statics(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    int sets = 0;
    mk_schema_t *s = mk_schema_parse("{ name: String, email: String }", NULL, &err);
    assert_int_equal(mk_schema_virtual(s, "display", full_name_get, name_set, &sets, &err), MK_OK);
    assert_int_equal(mk_schema_virtual(s, "readonly", full_name_get, NULL, NULL, &err), MK_OK);
    assert_int_equal(mk_schema_method(s, "shout", shout, NULL, &err), MK_OK);
    assert_int_equal(mk_schema_static(s, "coll", count_static, NULL, &err), MK_OK);
    mk_model_t *P = mk_model(f->conn, "Person", s, &err);
    assert_non_null(P);
    assert_string_equal(mk_model_collection_name(P), "people");
    mk_doc_t *d = mk_doc_new(P, &err, "{ name: 'Ann', email: 'a@b.c', display: 'Zed' }");
    assert_non_null(d);
    assert_int_equal(sets, 1); /* the virtual's setter ran during construction */
    assert_string_equal(mk_doc_get_str(d, "name"), "Zed");
    assert_string_equal(mk_doc_get_str(d, "display"), "Zed <a@b.c>");
    assert_int_equal(mk_doc_set(d, "readonly", MK_STR("ignored"), &err), MK_OK);
    assert_string_equal(mk_doc_get_str(d, "name"), "Zed");
    assert_string_equal(mk_doc_get_str(d, "id"), mk_doc_id(d));
    const char *out = NULL;
    assert_int_equal(mk_doc_call(d, "shout", &out, &err), MK_OK);
    assert_string_equal(out, "Zed");
    assert_int_equal(mk_doc_call(d, "nope", &out, &err), MK_ERR);
    assert_string_equal(err.message, "doc.nope is not a function");
    assert_int_equal(mk_model_call(P, "coll", &out, &err), MK_OK);
    assert_string_equal(out, "people");
    assert_int_equal(mk_doc_local_set(d, "k", &sets, &err), MK_OK);
    assert_ptr_equal(mk_doc_local_get(d, "k"), &sets);
    assert_null(mk_doc_local_get(d, "other"));
    mk_doc_t *same = mk_doc_hydrate(P, mk_doc_bson(d, &err), &err);
    assert_true(mk_doc_equals(d, same));
    mk_doc_destroy(same);
    mk_doc_destroy(d);
    mk_schema_destroy(s);
}

static int upper_getter(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                        mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_UTF8) {
        out->value_type = BSON_TYPE_UNDEFINED;
        return MK_OK;
    }
    bson_value_copy(in, out);
    for (char *p = out->value.v_utf8.str; *p; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 32);
    return MK_OK;
}

static void getters_and_raw(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse("{ code: String }", NULL, &err);
    assert_int_equal(mk_schema_path_getter(s, "code", upper_getter, NULL, &err), MK_OK);
    mk_model_t *C = mk_model(f->conn, "Category", s, &err);
    assert_string_equal(mk_model_collection_name(C), "categories");
    mk_doc_t *d = mk_doc_new(C, &err, "{ code: 'abc' }");
    assert_string_equal(mk_doc_get_str(d, "code"), "ABC");
    bson_value_t raw;
    assert_true(mk_doc_get_raw(d, "code", &raw));
    assert_string_equal(raw.value.v_utf8.str, "abc");
    mk_doc_destroy(d);
    mk_schema_destroy(s);
}

static void connections_and_naming(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    assert_null(mk_connect("mongodb://localhost:27017/app", &err));
    assert_string_equal(err.kind, "MongooseError");
    assert_non_null(strstr(err.message, "not supported yet"));
    assert_null(mk_connect("mongodb+srv://x/app", &err));
    assert_non_null(strstr(err.message, "not supported yet"));
    assert_null(mk_connect("", &err));
    /* a model name taken */
    assert_null(mk_model(f->conn, "User", f->schema, &err));
    assert_string_equal(err.kind, "OverwriteModelError");
    assert_string_equal(err.message, "Cannot overwrite `User` model once compiled.");
    assert_ptr_equal(mk_model_get(f->conn, "User", &err), f->User);
    assert_null(mk_model_get(f->conn, "Nope", &err));
    assert_string_equal(err.kind, "MissingSchemaError");
    /* useDb: another database, own models, same storage */
    mk_conn_t *other = mk_conn_use_db(f->conn, "other", &err);
    assert_non_null(other);
    assert_ptr_equal(mk_conn_use_db(f->conn, "other", &err), other);
    assert_string_equal(mk_conn_db_name(other), "other");
    assert_string_equal(mk_conn_db_name(f->conn), "test");
    assert_null(mk_model_get(other, "User", &err));
    mk_model_t *U2 = mk_model(other, "User", f->schema, &err);
    assert_non_null(U2);
    assert_ptr_not_equal(U2, f->User);
    /* naming: the collection option wins */
    mk_schema_t *s = mk_schema_parse("{ a: String }", "{ collection: 'my_things' }", &err);
    mk_model_t *M = mk_model(f->conn, "Mouse", s, &err);
    assert_string_equal(mk_model_collection_name(M), "my_things");
    mk_schema_destroy(s);
    s = mk_schema_parse("{ a: String }", NULL, &err);
    static const char *const names[][2] = {
        {"Mouse2", "mouse2"}, {"Child", "children"}, {"Box", "boxes"},    {"Status", "status"},
        {"Wolf", "wolves"},   {"Man", "men"},        {"Fish", "fish"},    {"Matrix", "matrixes"},
        {"Story", "stories"}, {"Ox", "oxen"},        {"Quiz", "quizzes"}, {"Alias", "aliases"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        mk_model_t *m = mk_model(f->conn, names[i][0], s, &err);
        assert_non_null(m);
        assert_string_equal(mk_model_collection_name(m), names[i][1]);
    }
    mk_schema_destroy(s);
}

static void aliases(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse("{ n: { type: String, alias: 'name' }, a: { type: Number, "
                                     "alias: 'age' } }",
                                     NULL, &err);
    mk_model_t *A = mk_model(f->conn, "Aliased", s, &err);
    mk_doc_t *d = mk_doc_new(A, &err, "{ name: 'Val', age: '7' }"); /* aliases in the input */
    assert_non_null(d);
    assert_string_equal(mk_doc_get_str(d, "n"), "Val");
    assert_string_equal(mk_doc_get_str(d, "name"), "Val");
    assert_int_equal(mk_doc_get_i64(d, "age"), 7);
    assert_int_equal(mk_doc_set(d, "name", MK_STR("Other"), &err), MK_OK);
    assert_string_equal(mk_doc_get_str(d, "n"), "Other");
    assert_true(mk_doc_is_modified(d, "n"));
    assert_int_equal(mk_doc_set(d, "age", MK_STR("x"), &err), MK_ERR); /* cast as the path */
    assert_string_equal(err.kind, "CastError");
    bson_value_t v;
    assert_false(mk_doc_get_raw(d, "name", &v)); /* not stored under the alias */
    mk_doc_destroy(d);
    mk_schema_destroy(s);
}

static int counter_default(const mk_fn_ctx_t *ctx, bson_value_t *out, void *ud, mk_error_t *err)
{
    out->value_type = BSON_TYPE_INT32;
    out->value.v_int32 = ++*(int *)ud;
    return MK_OK;
}

static void default_functions_and_immutable(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    int n = 0;
    mk_schema_t *s = mk_schema_parse("{ seq: Number, code: { type: String, immutable: true },"
                                     "  at: { type: Date, default: Date.now }, label: { type: "
                                     "String, default: 42 } }",
                                     NULL, &err);
    assert_int_equal(mk_schema_path_default(s, "seq", counter_default, &n, &err), MK_OK);
    mk_model_t *M = mk_model(f->conn, "Ticket", s, &err);
    mk_doc_t *a = mk_doc_new(M, &err, "{ code: 'A1' }"), *b = mk_doc_new(M, &err, "{ seq: 9 }");
    assert_int_equal(mk_doc_get_i64(a, "seq"), 1); /* the function ran for a */
    assert_int_equal(mk_doc_get_i64(b, "seq"), 9); /* not for b, which gave a value */
    assert_int_equal(n, 1);
    assert_true(mk_doc_get_date(a, "at") > 1600000000000LL); /* Date.now */
    assert_string_equal(mk_doc_get_str(a, "label"), "42");   /* defaults are cast */
    /* immutable: settable while new, ignored once saved */
    assert_int_equal(mk_doc_set(a, "code", MK_STR("A2"), &err), MK_OK);
    assert_string_equal(mk_doc_get_str(a, "code"), "A2");
    assert_int_equal(mk_doc_save(a, &err), MK_OK);
    assert_int_equal(mk_doc_set(a, "code", MK_STR("A3"), &err), MK_OK);
    assert_string_equal(mk_doc_get_str(a, "code"), "A2");
    assert_false(mk_doc_is_modified(a, "code"));
    mk_doc_destroy(a);
    mk_doc_destroy(b);
    mk_schema_destroy(s);
}

static void named_validator_resolution(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_schema_t *s =
        mk_schema_parse("{ a: { type: String, validate: 'neverRegistered' } }", NULL, &err);
    assert_non_null(s);
    assert_null(mk_model(f->conn, "Bad", s, &err));
    assert_non_null(strstr(err.message, "neverRegistered"));
    mk_schema_destroy(s);
}

static void index_errors_do_not_stop_the_model(void **state)
{
    fixture_t *f = *state;
    mk_error_t err = {0};
    mk_schema_t *s =
        mk_schema_parse("{ email: { type: String, unique: true }, name: String }", NULL, &err);
    assert_int_equal(mk_schema_index(s, "{ name: 'text', email: 'text' }", NULL, &err), MK_OK);
    mk_model_t *M = mk_model(f->conn, "Member", s, &err);
    assert_non_null(M); /* as Mongoose: the model works without the index it could not build */
    assert_int_equal(mk_model_init(M, &err), MK_ERR);
    assert_non_null(strstr(err.message, "text"));
    assert_int_equal(mk_model_init(f->User, &err), MK_OK);
    /* the unique index was built all the same */
    bson_t *cmd = tu_bson("{ listIndexes: 'members' }");
    bson_t reply = BSON_INITIALIZER;
    assert_int_equal(mk_conn_command(f->conn, cmd, &reply, &err), MK_OK);
    char *json = mk_json_from_bson(&reply);
    assert_non_null(strstr(json, "email_1"));
    bson_free(json);
    bson_destroy(&reply);
    bson_destroy(cmd);
    mk_doc_t *a = mk_model_create(M, &err, "{ email: 'x@y.z' }");
    assert_non_null(a);
    assert_null(mk_model_create(M, &err, "{ email: 'x@y.z' }"));
    assert_string_equal(err.kind, "MongoServerError");
    assert_int_equal(err.code, 11000);
    mk_doc_destroy(a);
    mk_schema_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(construct_casts_and_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(cast_error_is_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(construction_cast_error_leaves_path_unset, setup, teardown),
        cmocka_unit_test_setup_teardown(required_and_validators, setup, teardown),
        cmocka_unit_test_setup_teardown(strict_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(modified_paths_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(delta_two_paths_and_unset, setup, teardown),
        cmocka_unit_test_setup_teardown(arrays_push_pull_add_to_set, setup, teardown),
        cmocka_unit_test_setup_teardown(virtuals_methods_statics, setup, teardown),
        cmocka_unit_test_setup_teardown(getters_and_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(connections_and_naming, setup, teardown),
        cmocka_unit_test_setup_teardown(named_validator_resolution, setup, teardown),
        cmocka_unit_test_setup_teardown(aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(default_functions_and_immutable, setup, teardown),
        cmocka_unit_test_setup_teardown(index_errors_do_not_stop_the_model, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
