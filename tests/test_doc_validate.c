/* Document validation and update validators (odm/doc_validate.h): Mongoose 8's validator order,
 * messages, error paths and recursion, and the book's validation examples. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "odm/doc_validate.h"
#include "odm/schema_fns.h"

/* ---- helpers ---- */

static mk_schema_t *schema(const char *def)
{
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse(def, NULL, &err);
    if (!s) fail_msg("schema: %s", err.message);
    return s;
}

/* Validates a document written as relaxed JSON; the run itself must succeed. */
static void vdoc(const mk_schema_t *s, mk_doc_t *doc, const char *json, const mk_dv_opts_t *o,
                 mk_verrors_t *errs)
{
    bson_t *b = tu_bson(json);
    int rc = mk_validate_document(s, doc, b, o, errs);
    if (rc != MK_OK) fail_msg("mk_validate_document: %d %s", rc, errs->error.message);
    bson_destroy(b);
}

static void vupd(const mk_schema_t *s, const char *json, const mk_fn_ctx_t *ctx, mk_verrors_t *errs)
{
    bson_t *b = tu_bson(json);
    int rc = mk_validate_update(s, b, false, ctx, errs);
    if (rc != MK_OK) fail_msg("mk_validate_update: %d %s", rc, errs->error.message);
    bson_destroy(b);
}

#define assert_err(errs, path, kind, message) assert_err_(errs, path, kind, message, __LINE__)
static void assert_err_(const mk_verrors_t *errs, const char *path, const char *kind,
                        const char *message, int line)
{
    const mk_verror_t *e = mk_verrors_find(errs, path);
    if (!e) {
        print_error("line %d: no error at `%s`; errors:\n", line, path);
        for (size_t i = 0; i < errs->count; i++)
            print_error("  %s [%s] %s\n", errs->items[i].path, errs->items[i].kind,
                        errs->items[i].message);
        fail();
    }
    if (strcmp(e->kind, kind) != 0 || strcmp(e->message, message) != 0) {
        print_error("line %d: at `%s`\n  got      [%s] %s\n  expected [%s] %s\n", line, path,
                    e->kind, e->message, kind, message);
        fail();
    }
}

/* The ValidationError message mk_verrors_to_error builds. */
static const char *vmessage(const mk_verrors_t *errs, const char *model)
{
    static mk_error_t err;
    mk_error_clear(&err);
    if (errs->count == 0) {
        assert_int_equal(mk_verrors_to_error(errs, model, &err), MK_OK);
        return "";
    }
    assert_int_equal(mk_verrors_to_error(errs, model, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    return err.message;
}

/* The paths with errors, in order, joined by spaces. */
static const char *paths_of(const mk_verrors_t *errs)
{
    static char buf[1024];
    buf[0] = '\0';
    for (size_t i = 0; i < errs->count; i++) {
        if (i) strncat(buf, " ", sizeof buf - strlen(buf) - 1);
        strncat(buf, errs->items[i].path, sizeof buf - strlen(buf) - 1);
    }
    return buf;
}

/* A stand-in for the document (`this` in Mongoose): validators read its BSON. */
typedef struct fake_doc {
    const bson_t *data;
} fake_doc_t;

/* A stand-in for the query with context: 'query': validators read its update. */
typedef struct fake_query {
    const bson_t *update;
} fake_query_t;

static bool get_str(const bson_t *b, const char *path, const char **out)
{
    bson_iter_t it, f;
    if (!bson_iter_init(&it, b) || !bson_iter_find_descendant(&it, path, &f) ||
        !BSON_ITER_HOLDS_UTF8(&f))
        return false;
    *out = bson_iter_utf8(&f, NULL);
    return true;
}

static double get_num(const bson_t *b, const char *path)
{
    bson_iter_t it, f;
    if (!bson_iter_init(&it, b) || !bson_iter_find_descendant(&it, path, &f) ||
        !BSON_ITER_HOLDS_NUMBER(&f))
        return -1;
    return bson_iter_as_double(&f);
}

/* Records the calls of a validator. */
typedef struct calls {
    int n;
    bson_type_t last_type;
    char last_path[128];
    int result;           /* what the validator returns */
    const char *thrown;   /* message set on MK_ERR */
    const void *last_doc; /* ctx->doc */
    const void *last_query;
} calls_t;

static int counting_validator(const mk_fn_ctx_t *ctx, const bson_value_t *v, void *ud,
                              mk_error_t *err)
{
    calls_t *c = ud;
    c->n++;
    c->last_type = v ? v->value_type : BSON_TYPE_EOD;
    snprintf(c->last_path, sizeof c->last_path, "%s", ctx->path ? ctx->path : "");
    c->last_doc = ctx->doc;
    c->last_query = ctx->query;
    if (c->result < 0 && c->thrown) mk_error_set(err, 0, "Error", "%s", c->thrown);
    return c->result;
}

static int is_upper(const mk_fn_ctx_t *ctx, const bson_value_t *v, void *ud, mk_error_t *err)
{
    if (v->value_type != BSON_TYPE_UTF8) return 0;
    for (const char *c = v->value.v_utf8.str; *c; c++)
        if (*c >= 'a' && *c <= 'z') return 0;
    return 1;
}

/* ---- the book, chapter 2 ---- */

static void test_book_enum(void **state)
{
    mk_schema_t *s = schema("{ name: { type: String,"
                            " enum: ['Jean-Luc Picard', 'William Riker', 'Deanna Troi'] } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ name: 'Kathryn Janeway' }", NULL, &errs);
    assert_int_equal(errs.count, 1); /* Object.keys(error.errors); // ['name'] */
    assert_err(&errs, "name", "enum",
               "`Kathryn Janeway` is not a valid enum value for path `name`.");
    assert_string_equal(vmessage(&errs, "Person"), "Person validation failed: name: `Kathryn "
                                                   "Janeway` is not a valid enum value for path "
                                                   "`name`.");
    mk_verrors_destroy(&errs);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ name: 'William Riker' }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

/* The book says `enum` does nothing on a Number; Mongoose 8's SchemaNumber has an enum
 * validator (current Mongoose wins, see README). */
static void test_book_number_enum_mongoose8(void **state)
{
    mk_schema_t *s = schema("{ age: { type: Number, enum: [59, 60, 61] } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ age: 22 }", NULL, &errs);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0].message, "`22` is not a valid enum value for path `age`.");
    mk_verrors_destroy(&errs);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ age: 60 }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_book_required_null(void **state)
{
    mk_schema_t *s = schema("{ name: { type: String, required: true } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ name: null }", NULL, &errs);
    assert_err(&errs, "name", "required", "Path `name` is required.");
    assert_string_equal(vmessage(&errs, "Person"),
                        "Person validation failed: name: Path `name` is required.");
    /* the per-path details carry kind, name and value */
    mk_error_t err;
    mk_error_clear(&err);
    assert_int_equal(mk_verrors_to_error(&errs, "Person", &err), MK_ERR);
    mk_error_detail_t d;
    assert_true(mk_error_detail_find(&err, "name", &d));
    assert_string_equal(d.kind, "required");
    assert_string_equal(d.name, "ValidatorError");
    assert_string_equal(d.value, "null");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

/* Chapter 3: ageRankValidator on a document reads `this.age`. */
static int age_rank(const mk_fn_ctx_t *ctx, const bson_value_t *v, void *ud, mk_error_t *err)
{
    const char *msg = "Captains must be at least 30";
    bool captain = v->value_type == BSON_TYPE_UTF8 && strcmp(v->value.v_utf8.str, "Captain") == 0;
    double age;
    if (ctx->query) /* context: 'query': this.getUpdate().$set.age */
        age = get_num(((const fake_query_t *)ctx->query)->update, "$set.age");
    else if (ctx->doc)
        age = get_num(((const fake_doc_t *)ctx->doc)->data, "age");
    else
        return mk_error_set(err, 0, "TypeError", "Cannot read properties of null (reading 'age')");
    if (captain && !(age >= 30)) return mk_error_set(err, 0, "AssertionError", "%s", msg);
    return 1;
}

static void test_book_age_rank_document(void **state)
{
    mk_schema_t *s = schema("{ name: String, age: Number, rank: { type: String } }");
    assert_int_equal(mk_schema_path_validator(s, "rank", age_rank, NULL, NULL, NULL, NULL), MK_OK);
    bson_t *b = tu_bson("{ name: 'Will Riker', age: 29, rank: 'Captain' }");
    fake_doc_t fd = {b};
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_document(s, (mk_doc_t *)&fd, b, NULL, &errs), MK_OK);
    assert_err(&errs, "rank", "user defined", "Captains must be at least 30");
    assert_string_equal(vmessage(&errs, "Character"),
                        "Character validation failed: rank: Captains must be at least 30");
    mk_verrors_destroy(&errs);
    bson_destroy(b);

    b = tu_bson("{ name: 'Jean-Luc', age: 59, rank: 'Captain' }");
    fd.data = b;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_document(s, (mk_doc_t *)&fd, b, NULL, &errs), MK_OK);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    bson_destroy(b);
    mk_schema_destroy(s);
}

/* Chapter 5: a required function that depends on another path, and a custom validator that is
 * not run because its path was not modified. */
static int published_required(const mk_fn_ctx_t *ctx, void *ud)
{
    const char *status = NULL;
    return get_str(((const fake_doc_t *)ctx->doc)->data, "status", &status) &&
           strcmp(status, "PUBLISHED") == 0;
}

static int photos_validator(const mk_fn_ctx_t *ctx, const bson_value_t *v, void *ud,
                            mk_error_t *err)
{
    const char *status = NULL;
    if (!get_str(((const fake_doc_t *)ctx->doc)->data, "status", &status) ||
        strcmp(status, "PUBLISHED") != 0)
        return 1;
    bson_t arr;
    return v->value_type == BSON_TYPE_ARRAY &&
           bson_init_static(&arr, v->value.v_doc.data, v->value.v_doc.data_len) &&
           bson_count_keys(&arr) >= 2;
}

static void test_book_profile_modified_and_required(void **state)
{
    mk_schema_t *s = schema("{ photos: [String], publishedAt: { type: Date },"
                            "  status: { type: String, enum: ['PENDING', 'PUBLISHED'] } }");
    assert_int_equal(
        mk_schema_path_required(s, "publishedAt", published_required, NULL, NULL, NULL), MK_OK);
    assert_int_equal(
        mk_schema_path_validator(s, "photos", photos_validator, NULL, NULL, NULL, NULL), MK_OK);
    bson_t *b = tu_bson("{ photos: [], status: 'PUBLISHED' }");
    fake_doc_t fd = {b};
    const char *modified[] = {"status", NULL};
    mk_dv_opts_t o = {.modified_paths = modified, .modified_and_required = true};
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_document(s, (mk_doc_t *)&fd, b, &o, &errs), MK_OK);
    /* err.message; // 'publishedAt: Path `publishedAt` is required.' — photos not validated */
    assert_string_equal(paths_of(&errs), "publishedAt");
    assert_err(&errs, "publishedAt", "required", "Path `publishedAt` is required.");
    assert_string_equal(vmessage(&errs, "Profile"),
                        "Profile validation failed: publishedAt: Path `publishedAt` is required.");
    mk_verrors_destroy(&errs);

    /* a hydrated document (every path init) validates photos too */
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_document(s, (mk_doc_t *)&fd, b, NULL, &errs), MK_OK);
    assert_string_equal(paths_of(&errs), "publishedAt photos");
    assert_err(&errs, "photos", "user defined", "Validator failed for path `photos` with value ``");
    mk_verrors_destroy(&errs);
    bson_destroy(b);

    /* PENDING: the required function says no */
    b = tu_bson("{ status: 'PENDING' }");
    fd.data = b;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_document(s, (mk_doc_t *)&fd, b, NULL, &errs), MK_OK);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    bson_destroy(b);
    mk_schema_destroy(s);
}

/* ---- validator forms ---- */

static void test_required_forms(void **state)
{
    mk_schema_t *s = schema("{ a: { type: String, required: true },"
                            "  b: { type: String, required: [true, 'b is needed ({PATH})'] },"
                            "  c: { type: String, required: 'c is missing' },"
                            "  d: { type: String, required: false },"
                            "  e: { type: Number, required: true },"
                            "  f: { type: Boolean, required: true },"
                            "  g: { type: [String], required: true },"
                            "  h: { type: Date, required: true },"
                            "  i: { type: { x: String }, required: true } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: '', e: 0, f: false, g: [], h: null, i: {} }", NULL, &errs);
    assert_err(&errs, "a", "required", "Path `a` is required."); /* '' fails for strings */
    assert_err(&errs, "b", "required", "b is needed (b)");
    assert_err(&errs, "c", "required", "c is missing");
    assert_err(&errs, "h", "required", "Path `h` is required.");
    assert_null(mk_verrors_find(&errs, "d"));
    assert_null(mk_verrors_find(&errs, "e")); /* 0 is a number */
    assert_null(mk_verrors_find(&errs, "f")); /* false is a boolean */
    assert_null(mk_verrors_find(&errs, "g")); /* [] passes required */
    assert_null(mk_verrors_find(&errs, "i")); /* an empty sub-document passes */
    assert_int_equal(errs.count, 4);
    mk_verrors_destroy(&errs);

    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'x', b: 'x', c: 'x', e: 1, f: true, g: ['x'], h: ISODate('2020-01-01') }",
         NULL, &errs);
    assert_string_equal(paths_of(&errs), "i");
    assert_err(&errs, "i", "required", "Path `i` is required.");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static int required_when(const mk_fn_ctx_t *ctx, void *ud)
{
    return *(int *)ud;
}

static int required_fails(const mk_fn_ctx_t *ctx, void *ud)
{
    return MK_ERR;
}

static void test_required_function(void **state)
{
    mk_schema_t *s = schema("{ a: String, b: { type: String, required: false } }");
    int on = 1;
    assert_int_equal(mk_schema_path_required(s, "a", required_when, &on, NULL, NULL), MK_OK);
    assert_int_equal(mk_schema_path_required(s, "b", required_when, &on, "{PATH} wanted", NULL),
                     MK_OK);
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{}", NULL, &errs);
    assert_string_equal(paths_of(&errs), "b a"); /* reverse schema order */
    assert_err(&errs, "a", "required", "Path `a` is required.");
    assert_err(&errs, "b", "required", "b wanted");
    mk_verrors_destroy(&errs);
    on = 0;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{}", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);

    /* a failing required function is an internal error, not a validation error */
    mk_schema_t *t = schema("{ a: String }");
    assert_int_equal(mk_schema_path_required(t, "a", required_fails, NULL, NULL, NULL), MK_OK);
    bson_t *b = tu_bson("{}");
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_document(t, NULL, b, NULL, &errs), MK_ERR);
    assert_non_null(strstr(errs.error.message, "`a`"));
    mk_verrors_destroy(&errs);
    bson_destroy(b);
    mk_schema_destroy(t);
    mk_schema_destroy(s);
}

static void test_string_validators(void **state)
{
    mk_schema_t *s =
        schema("{ role: { type: String, enum: { values: ['user', 'admin'], message: '{VALUE} is no "
               "role for {PATH}' } },"
               "  kind: { type: String, enum: ['a', 'b'] },"
               "  digit: { type: String, enum: [1, 2] },"
               "  email: { type: String, match: /^\\S+@\\S+$/ },"
               "  code: { type: String, match: [/^[A-Z]+$/, 'Code {VALUE} is bad'] },"
               "  name: { type: String, minlength: 2, maxlength: 5 },"
               "  nick: { type: String, minLength: [3, 'too short: {MINLENGTH}'] },"
               "  bio: { type: String, maxLength: 4 } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL,
         "{ role: 'root', kind: 'c', digit: '3', email: 'bad', code: 'x1', name: 'a',"
         "  nick: 'ab', bio: 'abcdef' }",
         NULL, &errs);
    assert_err(&errs, "role", "enum", "root is no role for role");
    assert_err(&errs, "kind", "enum", "`c` is not a valid enum value for path `kind`.");
    assert_err(&errs, "digit", "enum", "`3` is not a valid enum value for path `digit`.");
    assert_err(&errs, "email", "regexp", "Path `email` is invalid (bad).");
    assert_err(&errs, "code", "regexp", "Code x1 is bad");
    assert_err(&errs, "name", "minlength",
               "Path `name` (`a`) is shorter than the minimum allowed length (2).");
    assert_err(&errs, "nick", "minlength", "too short: 3");
    assert_err(&errs, "bio", "maxlength",
               "Path `bio` (`abcdef`) is longer than the maximum allowed length (4).");
    assert_int_equal(errs.count, 8);
    mk_verrors_destroy(&errs);

    mk_verrors_init(&errs);
    vdoc(s, NULL,
         "{ role: 'admin', kind: 'a', digit: '2', email: 'a@b', code: 'XY', name: 'abcde',"
         "  nick: 'abc', bio: '' }",
         NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);

    /* null passes every validator but required; '' passes match */
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ role: null, email: '', name: null }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_number_and_date_validators(void **state)
{
    mk_schema_t *s = schema("{ age: { type: Number, min: 0, max: 150 },"
                            "  score: { type: Number, min: [5, 'at least {MIN}, got {VALUE}'] },"
                            "  at: { type: Date, min: '2020-01-01', max: ISODate('2030-01-01') },"
                            "  ms: { type: Date, min: 0 },"
                            "  off: { type: Number, min: null } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL,
         "{ age: 200, score: 3, at: ISODate('2019-06-01'), ms: ISODate('1969-12-31'), off: -5 }",
         NULL, &errs);
    assert_err(&errs, "age", "max", "Path `age` (200) is more than maximum allowed value (150).");
    assert_err(&errs, "score", "min", "at least 5, got 3");
    assert_err(&errs, "at", "min",
               "Path `at` (Sat Jun 01 2019 00:00:00 GMT+0000 (Coordinated Universal Time)) is "
               "before minimum allowed value (2020-01-01).");
    assert_err(&errs, "ms", "min",
               "Path `ms` (Wed Dec 31 1969 00:00:00 GMT+0000 (Coordinated Universal Time)) is "
               "before minimum allowed value (0).");
    assert_int_equal(errs.count, 4);
    mk_verrors_destroy(&errs);

    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ age: -1, at: ISODate('2031-01-01') }", NULL, &errs);
    assert_err(&errs, "age", "min", "Path `age` (-1) is less than minimum allowed value (0).");
    assert_err(&errs, "at", "max",
               "Path `at` (Wed Jan 01 2031 00:00:00 GMT+0000 (Coordinated Universal Time)) is "
               "after maximum allowed value (Tue Jan 01 2030 00:00:00 GMT+0000 (Coordinated "
               "Universal Time)).");
    mk_verrors_destroy(&errs);

    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ age: 0, score: 5, at: ISODate('2020-01-01'), ms: ISODate('1970-01-01') }",
         NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_bad_options(void **state)
{
    const char *defs[] = {
        "{ a: { type: String, minlength: 'abc' } }", "{ a: { type: String, match: 'abc' } }",
        "{ a: { type: Number, min: 'abc' } }",       "{ a: { type: Date, min: 'someday' } }",
        "{ a: { type: String, enum: [{}] } }",       "{ a: { type: String, required: {} } }",
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        mk_schema_t *s = schema(defs[i]);
        bson_t *b = tu_bson(strstr(defs[i], "Date")     ? "{ a: ISODate('2020-01-01') }"
                            : strstr(defs[i], "Number") ? "{ a: 1 }"
                                                        : "{ a: 'x' }");
        mk_verrors_t errs;
        mk_verrors_init(&errs);
        if (mk_validate_document(s, NULL, b, NULL, &errs) != MK_ERR)
            fail_msg("no error for %s", defs[i]);
        assert_string_equal(errs.error.kind, "BadValue");
        assert_non_null(strstr(errs.error.message, "path `a`"));
        mk_verrors_destroy(&errs);
        bson_destroy(b);
        mk_schema_destroy(s);
    }
}

/* ---- order ---- */

static void test_first_failing_validator_wins(void **state)
{
    /* built-ins in the order the options are written */
    mk_schema_t *s = schema("{ a: { type: String, maxlength: 3, enum: ['abc', 'abcde'] },"
                            "  b: { type: String, enum: ['abcd'], maxlength: 3 },"
                            "  c: { type: String, minlength: 5, required: true } }");
    calls_t calls = {.result = 0};
    assert_int_equal(mk_schema_path_validator(s, "a", counting_validator, &calls, NULL, NULL, NULL),
                     MK_OK);
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'abcde', b: 'abcde', c: '' }", NULL, &errs);
    assert_err(&errs, "a", "maxlength",
               "Path `a` (`abcde`) is longer than the maximum allowed length (3).");
    assert_err(&errs, "b", "enum", "`abcde` is not a valid enum value for path `b`.");
    assert_err(&errs, "c", "required", "Path `c` is required."); /* required comes first */
    assert_int_equal(calls.n, 0); /* later validators are not called */
    mk_verrors_destroy(&errs);

    /* built-ins pass: the C validator runs and fails with the default message */
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'abc', b: 'abcd', c: 'abcdef' }", NULL, &errs);
    assert_int_equal(calls.n, 1);
    assert_string_equal(calls.last_path, "a");
    assert_err(&errs, "a", "user defined", "Validator failed for path `a` with value `abc`");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_named_validator_takes_the_validate_position(void **state)
{
    assert_int_equal(mk_register_validator("isUpper", is_upper, NULL, "{PATH} must be upper-case"),
                     MK_OK);
    mk_schema_t *s = schema("{ a: { type: String, validate: 'isUpper', enum: ['abc', 'XYZ'] },"
                            "  b: { type: String, enum: ['abc', 'XYZ'], validate: 'isUpper' } }");
    calls_t calls = {.result = 0};
    mk_error_t err = {0};
    /* added in C before the model resolves the names: still after the named one */
    assert_int_equal(mk_schema_path_validator(s, "a", counting_validator, &calls, NULL, NULL, &err),
                     MK_OK);
    assert_int_equal(mk_schema_resolve_named(s, &err), MK_OK);
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'abd', b: 'abd' }", NULL, &errs);
    assert_err(&errs, "a", "user defined", "a must be upper-case");
    assert_err(&errs, "b", "enum", "`abd` is not a valid enum value for path `b`.");
    assert_int_equal(calls.n, 0);
    mk_verrors_destroy(&errs);

    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'XYZ', b: 'abc' }", NULL, &errs);
    assert_err(&errs, "b", "user defined", "b must be upper-case");
    assert_int_equal(calls.n, 1); /* a: named passed, enum passed, then the C one */
    assert_err(&errs, "a", "user defined", "Validator failed for path `a` with value `XYZ`");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_custom_validators(void **state)
{
    mk_schema_t *s = schema("{ code: String, n: Number, note: String }");
    calls_t ok = {.result = 1}, tmpl = {.result = 0},
            thrown = {.result = MK_ERR, .thrown = "{PATH} was {VALUE}: thrown"},
            silent = {.result = MK_ERR};
    int fake;
    assert_int_equal(mk_schema_path_validator(s, "code", counting_validator, &ok, NULL, NULL, NULL),
                     MK_OK);
    assert_int_equal(mk_schema_path_validator(s, "code", counting_validator, &tmpl,
                                              "{PATH}: `{VALUE}` rejected ({TYPE})", NULL, NULL),
                     MK_OK);
    assert_int_equal(
        mk_schema_path_validator(s, "n", counting_validator, &thrown, "unused", "myKind", NULL),
        MK_OK);
    assert_int_equal(
        mk_schema_path_validator(s, "note", counting_validator, &silent, "{PATH} bad", NULL, NULL),
        MK_OK);
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, (mk_doc_t *)&fake, "{ code: 'x', n: 7, note: null }", NULL, &errs);
    assert_int_equal(ok.n, 1);
    assert_int_equal(tmpl.n, 1);
    assert_ptr_equal(tmpl.last_doc, &fake);
    assert_null(tmpl.last_query);
    assert_err(&errs, "code", "user defined", "code: `x` rejected (user defined)");
    /* a thrown error: its message is the template, the kind the validator's type */
    assert_err(&errs, "n", "myKind", "n was 7: thrown");
    /* MK_ERR without a message: the registered template; null values are validated */
    assert_int_equal(silent.last_type, BSON_TYPE_NULL);
    assert_err(&errs, "note", "user defined", "note bad");
    mk_verrors_destroy(&errs);

    /* undefined: custom validators are not called */
    ok.n = tmpl.n = thrown.n = silent.n = 0;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{}", NULL, &errs);
    assert_int_equal(ok.n + tmpl.n + thrown.n + silent.n, 0);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_error_order(void **state)
{
    /* missing required paths in reverse schema order (Schema#requiredPaths) */
    mk_schema_t *s = schema("{ name: { type: String, required: true },"
                            "  email: { type: String, required: true },"
                            "  password: { type: String, required: true } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{}", NULL, &errs);
    assert_string_equal(vmessage(&errs, "User"),
                        "User validation failed: password: Path `password` is required., email: "
                        "Path `email` is required., name: Path `name` is required.");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);

    /* present paths in document order, then array elements, then sub-documents */
    s = schema("{ sub: { type: { x: { type: String, required: true } } },"
               "  tags: [{ type: String, enum: ['a'] }],"
               "  b: { type: String, enum: ['a'] },"
               "  a: { type: String, enum: ['a'], required: true } }");
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ sub: {}, tags: ['z'], b: 'z', a: 'z' }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "b a tags.0 sub.x");
    mk_verrors_destroy(&errs);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ b: 'z', sub: {}, tags: ['z'] }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "a b tags.0 sub.x");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

/* ---- recursion ---- */

static void test_nested_paths(void **state)
{
    mk_schema_t *s = schema("{ profile: { bio: { type: String, maxlength: 5 },"
                            "             name: { type: String, required: true },"
                            "             deep: { level: { type: Number, max: 1 } } } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ profile: { bio: 'abcdef', deep: { level: 2 }, other: 5 } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "profile.name profile.bio profile.deep.level");
    assert_err(&errs, "profile.bio", "maxlength",
               "Path `profile.bio` (`abcdef`) is longer than the maximum allowed length (5).");
    assert_err(&errs, "profile.name", "required", "Path `profile.name` is required.");
    assert_err(&errs, "profile.deep.level", "max",
               "Path `profile.deep.level` (2) is more than maximum allowed value (1).");
    mk_verrors_destroy(&errs);
    /* the parent missing: its required child still fails */
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{}", NULL, &errs);
    assert_string_equal(paths_of(&errs), "profile.name");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_single_nested(void **state)
{
    mk_schema_t *s = schema("{ author: { type: { name: { type: String, required: true },"
                            "                    age: { type: Number, min: 0 },"
                            "                    inner: { type: { v: { type: String, "
                            "enum: ['ok'] } } } } },"
                            "  editor: { type: { name: { type: String, required: true } },"
                            "            required: true } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ author: { age: -1, inner: { v: 'no' } } }", NULL, &errs);
    /* errors under the sub-document path, messages with the sub-document's own paths; none at
     * the sub-document path itself */
    assert_string_equal(paths_of(&errs), "editor author.name author.age author.inner.v");
    assert_err(&errs, "editor", "required", "Path `editor` is required.");
    assert_err(&errs, "author.name", "required", "Path `name` is required.");
    assert_err(&errs, "author.age", "min",
               "Path `age` (-1) is less than minimum allowed value (0).");
    assert_err(&errs, "author.inner.v", "enum", "`no` is not a valid enum value for path `v`.");
    assert_null(mk_verrors_find(&errs, "author"));
    assert_string_equal(vmessage(&errs, "Book"),
                        "Book validation failed: editor: Path `editor` is required., author.name: "
                        "Path `name` is required., author.age: Path `age` (-1) is less than "
                        "minimum allowed value (0)., author.inner.v: `no` is not a valid enum "
                        "value for path `v`.");
    mk_verrors_destroy(&errs);

    /* a failing validator of the sub-document path: its contents are not validated */
    calls_t no = {.result = 0};
    assert_int_equal(mk_schema_path_validator(s, "author", counting_validator, &no,
                                              "{PATH} rejected", NULL, NULL),
                     MK_OK);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ author: { age: -1 }, editor: { name: 'e' } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "author");
    assert_err(&errs, "author", "user defined", "author rejected");
    assert_int_equal(no.last_type, BSON_TYPE_DOCUMENT);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_document_array(void **state)
{
    mk_schema_t *s = schema("{ comments: [{ text: { type: String, required: true },"
                            "              votes: { type: Number, min: 0 },"
                            "              tags: [{ type: String, enum: ['x'] }] }] }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL,
         "{ comments: [ { text: 'a' }, { votes: -1 }, null, { text: 'b', tags: ['x', 'y'] } ] }",
         NULL, &errs);
    assert_string_equal(paths_of(&errs), "comments.1.text comments.1.votes comments.3.tags.1");
    assert_err(&errs, "comments.1.text", "required", "Path `text` is required.");
    assert_err(&errs, "comments.1.votes", "min",
               "Path `votes` (-1) is less than minimum allowed value (0).");
    assert_err(&errs, "comments.3.tags.1", "enum",
               "`y` is not a valid enum value for path `tags.1`.");
    assert_string_equal(vmessage(&errs, "Post"),
                        "Post validation failed: comments.1.text: Path `text` is required., "
                        "comments.1.votes: Path `votes` (-1) is less than minimum allowed value "
                        "(0)., comments.3.tags.1: `y` is not a valid enum value for path "
                        "`tags.1`.");
    mk_verrors_destroy(&errs);

    /* the array's own validator sees the whole array; failing, the elements are skipped */
    calls_t no = {.result = 0};
    assert_int_equal(mk_schema_path_validator(s, "comments", counting_validator, &no,
                                              "{PATH} rejected", NULL, NULL),
                     MK_OK);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ comments: [ {} ] }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "comments");
    assert_err(&errs, "comments", "user defined", "comments rejected");
    assert_int_equal(no.last_type, BSON_TYPE_ARRAY);
    mk_verrors_destroy(&errs);

    /* registry functions of the child schema ("comments.text" lives in the sub-schema) */
    calls_t child = {.result = 0};
    no.result = 1;
    assert_int_equal(
        mk_schema_path_validator(s, "comments.text", counting_validator, &child, NULL, NULL, NULL),
        MK_OK);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ comments: [ { text: 'a' }, { text: 'b' } ] }", NULL, &errs);
    assert_int_equal(child.n, 2);
    assert_string_equal(child.last_path, "comments.1.text");
    assert_err(&errs, "comments.1.text", "user defined",
               "Validator failed for path `text` with value `b`");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_primitive_arrays(void **state)
{
    mk_schema_t *s = schema("{ tags: [{ type: String, enum: ['a', 'b'] }],"
                            "  kinds: { type: [String], enum: ['x'] },"
                            "  nums: { type: [Number], required: true },"
                            "  m: [[{ type: Number, max: 1 }]],"
                            "  req: [{ type: String, required: true }] }");
    calls_t whole = {.result = 1};
    assert_int_equal(
        mk_schema_path_validator(s, "nums", counting_validator, &whole, NULL, NULL, NULL), MK_OK);
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL,
         "{ tags: ['a', 'zz', 'b', 'yy'], kinds: ['x', 'q'], nums: [], m: [[0, 2], [3]],"
         "  req: ['ok', ''] }",
         NULL, &errs);
    assert_string_equal(paths_of(&errs), "tags.1 tags.3 kinds.1 m.0.1 m.1.0 req.1");
    assert_err(&errs, "tags.1", "enum", "`zz` is not a valid enum value for path `tags.1`.");
    assert_err(&errs, "tags.3", "enum", "`yy` is not a valid enum value for path `tags.3`.");
    assert_err(&errs, "kinds.1", "enum", "`q` is not a valid enum value for path `kinds.1`.");
    assert_err(&errs, "m.0.1", "max", "Path `m.0.1` (2) is more than maximum allowed value (1).");
    assert_err(&errs, "req.1", "required", "Path `req.1` is required.");
    /* [] passes the array's required; its validators receive the whole array */
    assert_null(mk_verrors_find(&errs, "nums"));
    assert_int_equal(whole.n, 1);
    assert_int_equal(whole.last_type, BSON_TYPE_ARRAY);
    mk_verrors_destroy(&errs);

    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ tags: [] }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "nums");
    assert_err(&errs, "nums", "required", "Path `nums` is required.");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_maps(void **state)
{
    mk_schema_t *s =
        schema("{ prices: { type: Map, of: { type: Number, min: 0 } },"
               "  people: { type: Map, of: { name: { type: String, required: true } } } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ prices: { eur: 1, usd: -2 }, people: { bob: { name: 'Bob' }, al: {} } }", NULL,
         &errs);
    assert_string_equal(paths_of(&errs), "prices.usd people.al.name");
    assert_err(&errs, "prices.usd", "min",
               "Path `prices.usd` (-2) is less than minimum allowed value (0).");
    assert_err(&errs, "people.al.name", "required", "Path `name` is required.");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

/* ---- selecting paths ---- */

static void test_only_paths(void **state)
{
    mk_schema_t *s = schema("{ a: { type: String, required: true },"
                            "  b: { type: String, required: true },"
                            "  sub: { type: { x: { type: String, required: true },"
                            "                 y: { type: String, enum: ['ok'] } } },"
                            "  list: [{ v: { type: Number, max: 1 } }] }");
    const char *doc = "{ sub: { y: 'no' }, list: [{ v: 1 }, { v: 5 }] }";
    mk_verrors_t errs;
    const char *only_a[] = {"a", NULL};
    mk_dv_opts_t o = {.only_paths = only_a};
    mk_verrors_init(&errs);
    vdoc(s, NULL, doc, &o, &errs);
    assert_string_equal(paths_of(&errs), "a");
    mk_verrors_destroy(&errs);

    const char *only_child[] = {"sub.y", "list.1", NULL};
    o.only_paths = only_child;
    mk_verrors_init(&errs);
    vdoc(s, NULL, doc, &o, &errs);
    assert_string_equal(paths_of(&errs), "sub.y list.1.v");
    mk_verrors_destroy(&errs);

    const char *only_sub[] = {"sub", NULL};
    o.only_paths = only_sub;
    mk_verrors_init(&errs);
    vdoc(s, NULL, doc, &o, &errs);
    assert_string_equal(paths_of(&errs), "sub.x sub.y");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_validate_modified_only(void **state)
{
    mk_schema_t *s = schema("{ a: { type: String, required: true },"
                            "  b: { type: String, enum: ['ok'] },"
                            "  c: { type: String, enum: ['ok'] },"
                            "  sub: { type: { x: { type: String, required: true },"
                            "                 y: { type: String, enum: ['ok'] } } } }");
    const char *doc = "{ b: 'no', c: 'no', sub: { y: 'no' } }";
    const char *mod_b[] = {"b", NULL};
    mk_dv_opts_t o = {.modified_paths = mod_b, .validate_modified_only = true};
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, doc, &o, &errs);
    assert_string_equal(paths_of(&errs), "b"); /* required `a` is not modified */
    mk_verrors_destroy(&errs);

    const char *mod_y[] = {"sub.y", NULL};
    o.modified_paths = mod_y;
    mk_verrors_init(&errs);
    vdoc(s, NULL, doc, &o, &errs);
    assert_string_equal(paths_of(&errs), "sub.y"); /* sub.x is not modified */
    mk_verrors_destroy(&errs);

    const char *mod_sub[] = {"sub", NULL};
    o.modified_paths = mod_sub;
    mk_verrors_init(&errs);
    vdoc(s, NULL, doc, &o, &errs);
    assert_string_equal(paths_of(&errs), "sub.x sub.y");
    mk_verrors_destroy(&errs);

    /* modified_and_required: required paths are validated whether modified or not */
    o = (mk_dv_opts_t){.modified_paths = mod_b, .modified_and_required = true};
    mk_verrors_init(&errs);
    vdoc(s, NULL, doc, &o, &errs);
    assert_string_equal(paths_of(&errs), "a b");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

/* ---- the seed's User schema ---- */

static void test_seed_user_schema(void **state)
{
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse(
        "{ email: { type: String, required: true, unique: true, lowercase: true, trim: true,"
        "           index: true },"
        "  name: { type: String, required: true, trim: true, minlength: 2, maxlength: 100 },"
        "  passwordHash: { type: String, required: true, select: false },"
        "  role: { type: String, enum: ['user', 'admin'], default: 'user' },"
        "  profile: { avatar: String, bio: { type: String, maxlength: 500 } },"
        "  preferences: { notifications: { type: Boolean, default: true },"
        "                 theme: { type: String, enum: ['light', 'dark'], default: 'light' } } }",
        "{ timestamps: true }", &err);
    assert_non_null(s);
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(
        s, NULL,
        "{ name: 'J', role: 'root', profile: { avatar: 'a.png', bio: 'hi' },"
        "  preferences: { notifications: true, theme: 'blue' }, createdAt: ISODate('2024-01-01') }",
        NULL, &errs);
    assert_string_equal(vmessage(&errs, "User"),
                        "User validation failed: passwordHash: Path `passwordHash` is required., "
                        "email: Path `email` is required., name: Path `name` (`J`) is shorter "
                        "than the minimum allowed length (2)., role: `root` is not a valid enum "
                        "value for path `role`., preferences.theme: `blue` is not a valid enum "
                        "value for path `preferences.theme`.");
    mk_verrors_destroy(&errs);

    mk_verrors_init(&errs);
    vdoc(s, NULL,
         "{ email: 'a@b.c', name: 'Jane', passwordHash: 'h', role: 'admin',"
         "  preferences: { theme: 'dark' } }",
         NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

/* ---- update validators ---- */

static void test_update_book_enum(void **state)
{
    mk_schema_t *s =
        schema("{ name: String, rank: { type: String, enum: ['Captain', 'Commander'] } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { rank: 'Lollipop' } }", NULL, &errs);
    assert_err(&errs, "rank", "enum", "`Lollipop` is not a valid enum value for path `rank`.");
    assert_string_equal(vmessage(&errs, NULL),
                        "Validation failed: rank: `Lollipop` is not a valid enum value for path "
                        "`rank`.");
    mk_verrors_destroy(&errs);
    /* only paths in the update are validated */
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { name: 'test' } }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_update_book_age_rank_query_context(void **state)
{
    mk_schema_t *s = schema("{ name: String, age: Number, rank: { type: String } }");
    assert_int_equal(mk_schema_path_validator(s, "rank", age_rank, NULL, NULL, NULL, NULL), MK_OK);
    bson_t *u = tu_bson("{ $set: { age: 29, rank: 'Captain' } }");
    fake_query_t q = {u};
    mk_fn_ctx_t ctx = {.query = (mk_query_t *)&q};
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_update(s, u, false, &ctx, &errs), MK_OK);
    /* Throws 'Validation failed: rank: Captains must be at least 30' */
    assert_string_equal(vmessage(&errs, NULL),
                        "Validation failed: rank: Captains must be at least 30");
    mk_verrors_destroy(&errs);
    /* without context 'query', `this` is null and the validator throws reading it */
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_update(s, u, false, NULL, &errs), MK_OK);
    assert_err(&errs, "rank", "user defined", "Cannot read properties of null (reading 'age')");
    mk_verrors_destroy(&errs);
    bson_destroy(u);

    u = tu_bson("{ $set: { age: 31, rank: 'Captain' } }");
    q.update = u;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_update(s, u, false, &ctx, &errs), MK_OK);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    bson_destroy(u);
    mk_schema_destroy(s);
}

static void test_update_operators(void **state)
{
    mk_schema_t *s = schema("{ name: { type: String, required: true },"
                            "  age: { type: Number, min: 0 },"
                            "  nick: { type: String, minlength: 3 },"
                            "  tags: [{ type: String, enum: ['a', 'b'] }] }");
    mk_verrors_t errs;
    struct {
        const char *update;
        const char *paths;
    } cases[] = {
        {"{ $unset: { name: 1 } }", "name"},
        {"{ $unset: { nick: 1, age: '' } }", ""}, /* only required fails on $unset */
        {"{ $set: { name: null } }", "name"},
        {"{ $set: { name: '' } }", "name"},
        {"{ $set: { age: -1 } }", "age"},
        {"{ $setOnInsert: { age: -1 } }", "age"},
        {"{ $inc: { age: -100 }, $mul: { age: -1 }, $min: { age: -5 }, $max: { age: -3 } }", ""},
        {"{ $rename: { nick: 'x' }, $currentDate: { name: true }, $pop: { tags: 1 } }", ""},
        {"{ $push: { tags: 'zz' } }", "tags"},
        {"{ $addToSet: { tags: { $each: ['a', 'q'] } } }", "tags"},
        {"{ $pull: { tags: 'zz' }, $pullAll: { tags: [] } }", ""},
        /* flattened, a $pullAll list's elements are not array paths: validated (Mongoose) */
        {"{ $pullAll: { tags: ['q'] } }", "tags.0"},
        {"{ $set: { tags: ['a', 'zz', 'yy'] } }", "tags.1 tags.2"},
        {"{ $set: { 'tags.$': 'zz' } }", "tags.0"},
        {"{ name: '', age: -2 }", "name age"}, /* no operators: a $set */
        {"{ $set: { age: 5, nick: 'abcd' }, $unset: { other: 1 } }", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mk_verrors_init(&errs);
        vupd(s, cases[i].update, NULL, &errs);
        if (strcmp(paths_of(&errs), cases[i].paths) != 0)
            fail_msg("%s: got [%s], expected [%s]", cases[i].update, paths_of(&errs),
                     cases[i].paths);
        mk_verrors_destroy(&errs);
    }
    mk_verrors_init(&errs);
    vupd(s, "{ $unset: { name: 1 } }", NULL, &errs);
    assert_err(&errs, "name", "required", "Path `name` is required.");
    mk_verrors_destroy(&errs);
    /* pushed values: element validators, errors at the array path, the last one kept; the
     * element SchemaType's path is the array's */
    mk_verrors_init(&errs);
    vupd(s, "{ $push: { tags: { $each: ['zz', 'a', 'yy'] } } }", NULL, &errs);
    assert_int_equal(errs.count, 1);
    assert_err(&errs, "tags", "enum", "`yy` is not a valid enum value for path `tags`.");
    mk_verrors_destroy(&errs);
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { tags: ['a', 'zz'] } }", NULL, &errs);
    assert_err(&errs, "tags.1", "enum", "`zz` is not a valid enum value for path `tags`.");
    mk_verrors_destroy(&errs);
    /* $setOnInsert is validated whether or not the update upserts, as Mongoose 8 does */
    bson_t *u = tu_bson("{ $setOnInsert: { age: -1 } }");
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_update(s, u, true, NULL, &errs), MK_OK);
    assert_err(&errs, "age", "min", "Path `age` (-1) is less than minimum allowed value (0).");
    mk_verrors_destroy(&errs);
    bson_destroy(u);
    mk_schema_destroy(s);
}

static void test_update_nested_and_subdocs(void **state)
{
    mk_schema_t *s = schema(
        "{ profile: { name: { type: String, required: true }, bio: { type: String, maxlength: 3 } "
        "},"
        "  author: { type: { name: { type: String, required: true }, age: { type: Number, min: 0 } "
        "} },"
        "  comments: [{ text: { type: String, required: true }, votes: { type: Number, min: 0 } }],"
        "  meta: { type: Object, required: true } }");
    mk_verrors_t errs;

    /* setting a nested object whole: its absent children are undefined */
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { profile: { bio: 'abcd' } } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "profile.bio profile.name");
    assert_err(&errs, "profile.name", "required", "Path `profile.name` is required.");
    assert_err(&errs, "profile.bio", "maxlength",
               "Path `profile.bio` (`abcd`) is longer than the maximum allowed length (3).");
    mk_verrors_destroy(&errs);
    /* a dotted path leaves the siblings alone */
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { 'profile.bio': 'ab' } }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);

    /* a single nested sub-document set whole: one nested ValidationError at its path */
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { author: { age: -1 } } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "author");
    assert_err(&errs, "author", "ValidationError",
               "Validation failed: name: Path `name` is required., age: Path `age` (-1) is less "
               "than minimum allowed value (0).");
    mk_verrors_destroy(&errs);
    /* into the sub-document: the child's path in the message */
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { 'author.name': '', 'author.age': 3 } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "author.name");
    assert_err(&errs, "author.name", "required", "Path `name` is required.");
    mk_verrors_destroy(&errs);
    mk_verrors_init(&errs);
    vupd(s, "{ $unset: { author: 1 } }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);

    /* document arrays: elements set whole report their paths; positional operators are 0 */
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { comments: [{ text: 'ok' }, { votes: -1 }] } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "comments.1.text comments.1.votes");
    assert_err(&errs, "comments.1.text", "required", "Path `text` is required.");
    mk_verrors_destroy(&errs);
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { 'comments.$.votes': -1, 'comments.$[i].text': '' } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "comments.0.votes comments.0.text");
    assert_err(&errs, "comments.0.votes", "min",
               "Path `votes` (-1) is less than minimum allowed value (0).");
    mk_verrors_destroy(&errs);
    /* $push to a document array: a nested ValidationError at the array path */
    mk_verrors_init(&errs);
    vupd(s, "{ $push: { comments: { $each: [{ text: 'a' }, { votes: 2 }] } } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "comments");
    assert_err(&errs, "comments", "ValidationError",
               "Validation failed: text: Path `text` is required.");
    mk_verrors_destroy(&errs);
    /* $pull: not for array paths, but a document array's sub-path is validated */
    mk_verrors_init(&errs);
    vupd(s, "{ $pull: { comments: { text: '' } } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "comments.text");
    mk_verrors_destroy(&errs);
    /* under a Mixed path nothing is validated but the path itself */
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { 'meta.x': null } }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { meta: null } }", NULL, &errs);
    assert_err(&errs, "meta", "required", "Path `meta` is required.");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_update_custom_and_in(void **state)
{
    mk_schema_t *s = schema("{ code: String, list: [String] }");
    calls_t c = {.result = 0};
    assert_int_equal(mk_schema_path_validator(s, "code", counting_validator, &c, NULL, NULL, NULL),
                     MK_OK);
    int q;
    mk_fn_ctx_t ctx = {.query = (mk_query_t *)&q};
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { code: 'x' } }", &ctx, &errs);
    assert_int_equal(c.n, 1);
    assert_ptr_equal(c.last_query, &q);
    assert_null(c.last_doc);
    assert_string_equal(c.last_path, "code");
    assert_err(&errs, "code", "user defined", "Validator failed for path `code` with value `x`");
    mk_verrors_destroy(&errs);
    /* $pull with $in on a non-array path: each value */
    mk_verrors_init(&errs);
    vupd(s, "{ $pull: { code: { $in: ['a', 'b'] } } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "code.$in.0 code.$in.1");
    mk_verrors_destroy(&errs);
    /* $unset: custom validators do not see undefined */
    c.n = 0;
    mk_verrors_init(&errs);
    vupd(s, "{ $unset: { code: 1 } }", NULL, &errs);
    assert_int_equal(c.n, 0);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_update_bad_input(void **state)
{
    mk_schema_t *s = schema("{ a: String }");
    bson_t *u = tu_bson("{ $set: 5 }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_update(s, u, false, NULL, &errs), MK_ERR);
    assert_string_equal(errs.error.kind, "FailedToParse");
    mk_verrors_destroy(&errs);
    bson_destroy(u);
    mk_schema_destroy(s);
}

static void test_enum_forms(void **state)
{
    mk_schema_t *s = schema("{ a: { type: String, enum: [] },"
                            "  b: { type: String, enum: { values: [] } },"
                            "  c: { type: String, enum: { A: 'x', B: 'y' } },"
                            "  d: { type: String, enum: 'only' },"
                            "  e: { type: String, enum: [true, null, 2.5] } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'q', b: 'q', c: 'A', d: 'other', e: 'null' }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "b c d e");
    assert_null(mk_verrors_find(&errs, "a")); /* enum: [] adds no validator */
    assert_err(&errs, "c", "enum", "`A` is not a valid enum value for path `c`."); /* values */
    mk_verrors_destroy(&errs);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ c: 'y', d: 'only', e: '2.5' }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ e: 'true' }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static int has_digit(const mk_fn_ctx_t *ctx, const bson_value_t *v, void *ud, mk_error_t *err)
{
    return v->value_type == BSON_TYPE_UTF8 && strpbrk(v->value.v_utf8.str, "0123456789") != NULL;
}

static void test_validate_lists(void **state)
{
    assert_int_equal(mk_register_validator("isUpper", is_upper, NULL, "{PATH} must be upper-case"),
                     MK_OK);
    assert_int_equal(mk_register_validator("hasDigit", has_digit, NULL, NULL), MK_OK);
    mk_schema_t *s =
        schema("{ code: { type: String, validate: ['isUpper', { validator: 'hasDigit', message: "
               "'{VALUE} needs a digit' }], maxlength: 4 } }");
    mk_error_t err = {0};
    assert_int_equal(mk_schema_resolve_named(s, &err), MK_OK);
    struct {
        const char *doc;
        const char *message;
    } cases[] = {
        {"{ code: 'ab1' }", "code must be upper-case"},
        {"{ code: 'ABCDE' }", "ABCDE needs a digit"},
        {"{ code: 'ABCD5' }",
         "Path `code` (`ABCD5`) is longer than the maximum allowed length (4)."},
        {"{ code: 'AB1' }", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mk_verrors_t errs;
        mk_verrors_init(&errs);
        vdoc(s, NULL, cases[i].doc, NULL, &errs);
        if (!cases[i].message)
            assert_int_equal(errs.count, 0);
        else
            assert_string_equal(mk_verrors_find(&errs, "code")->message, cases[i].message);
        mk_verrors_destroy(&errs);
    }
    mk_schema_destroy(s);
}

static void test_update_arrays_and_maps(void **state)
{
    mk_schema_t *s = schema("{ comments: [{ text: { type: String, required: true } }],"
                            "  prices: { type: Map, of: { type: Number, max: 10 } } }");
    calls_t c = {.result = 0};
    assert_int_equal(mk_schema_path_validator(s, "comments", counting_validator, &c,
                                              "{PATH}: too many", NULL, NULL),
                     MK_OK);
    mk_verrors_t errs;
    /* the document array's own validators see the pushed values; failing, elements are not
     * validated */
    mk_verrors_init(&errs);
    vupd(s, "{ $push: { comments: { $each: [{}, {}] } } }", NULL, &errs);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.last_type, BSON_TYPE_ARRAY);
    assert_string_equal(paths_of(&errs), "comments");
    assert_err(&errs, "comments", "user defined", "comments: too many");
    mk_verrors_destroy(&errs);
    /* map values by key: the `of` SchemaType, whose path is `prices.$*` */
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { 'prices.eur': 11, 'prices.usd': 5 } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "prices.eur");
    assert_err(&errs, "prices.eur", "max",
               "Path `prices.$*` (11) is more than maximum allowed value (10).");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

static void test_update_large_array(void **state)
{
    mk_schema_t *s = schema("{ tags: [{ type: String, maxlength: 3 }] }");
    bson_t u = BSON_INITIALIZER, set, arr;
    BSON_APPEND_DOCUMENT_BEGIN(&u, "$set", &set);
    BSON_APPEND_ARRAY_BEGIN(&set, "tags", &arr);
    for (uint32_t i = 0; i < 20000; i++) {
        char kb[16];
        const char *k;
        bson_uint32_to_string(i, &k, kb, sizeof kb);
        BSON_APPEND_UTF8(&arr, k, i == 12345 ? "long" : "ok");
    }
    bson_append_array_end(&set, &arr);
    bson_append_document_end(&u, &set);
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_update(s, &u, false, NULL, &errs), MK_OK);
    assert_string_equal(paths_of(&errs), "tags.12345");
    assert_err(&errs, "tags.12345", "maxlength",
               "Path `tags` (`long`) is longer than the maximum allowed length (3).");
    mk_verrors_destroy(&errs);
    bson_destroy(&u);
    mk_schema_destroy(s);
}

static void test_update_callback_paths(void **state)
{
    mk_schema_t *s = schema("{ comments: [{ text: String }], author: { type: { name: String } } }");
    calls_t text = {.result = 1}, name = {.result = 0};
    assert_int_equal(
        mk_schema_path_validator(s, "comments.text", counting_validator, &text, NULL, NULL, NULL),
        MK_OK);
    assert_int_equal(mk_schema_path_validator(s, "author.name", counting_validator, &name,
                                              "{PATH} is taken", NULL, NULL),
                     MK_OK);
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vupd(s, "{ $set: { comments: [{ text: 'a' }, { text: 'b' }], author: { name: 'x' } } }", NULL,
         &errs);
    assert_int_equal(text.n, 2);
    assert_string_equal(text.last_path, "comments.1.text");
    assert_int_equal(name.n, 1);
    assert_string_equal(name.last_path, "author.name");
    assert_err(&errs, "author", "ValidationError", "Validation failed: name: name is taken");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

/* ---- the per-schema plan ---- */

/* The plan read from a schema follows the schema's changes: paths added (mk_schema_add clears
 * the schema's cache), functions registered and sub-documents replaced after a first validation
 * (which do not), and named validators resolved later. */
static void test_plan_follows_schema_changes(void **state)
{
    mk_error_t err = {0};
    mk_schema_t *s = schema("{ a: { type: String, enum: ['x'] } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'y', b: 'q' }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "a");
    mk_verrors_destroy(&errs);

    assert_int_equal(mk_schema_add(s, "{ b: { type: String, minlength: 3 } }", &err), MK_OK);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'y', b: 'q' }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "a b");
    assert_err(&errs, "b", "minlength",
               "Path `b` (`q`) is shorter than the minimum allowed length (3).");
    mk_verrors_destroy(&errs);

    /* a validator and a required function registered after the plan was built */
    calls_t calls = {.result = 0};
    assert_int_equal(mk_schema_path_validator(s, "b", counting_validator, &calls, NULL, NULL, &err),
                     MK_OK);
    int on = 1;
    assert_int_equal(mk_schema_path_required(s, "a", required_when, &on, "{PATH} wanted", &err),
                     MK_OK);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ b: 'qqqq' }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "a b");
    assert_err(&errs, "a", "required", "a wanted");
    assert_err(&errs, "b", "user defined", "Validator failed for path `b` with value `qqqq`");
    assert_int_equal(calls.n, 1);
    mk_verrors_destroy(&errs);

    /* a sub-document path replaced in place: the new sub-schema's rules apply */
    mk_schema_t *one = schema("{ x: { type: String, required: true } }");
    mk_schema_t *two = schema("{ y: { type: Number, max: 1 } }");
    assert_int_equal(mk_schema_add_schema(s, "sub", one, false, NULL, &err), MK_OK);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'x', sub: { y: 5 } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "sub.x");
    mk_verrors_destroy(&errs);
    assert_int_equal(mk_schema_add_schema(s, "sub", two, false, NULL, &err), MK_OK);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ a: 'x', sub: { y: 5 } }", NULL, &errs);
    assert_string_equal(paths_of(&errs), "sub.y");
    assert_err(&errs, "sub.y", "max", "Path `y` (5) is more than maximum allowed value (1).");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(one);
    mk_schema_destroy(two);
    mk_schema_destroy(s);

    /* a named validator only counts once the names are resolved */
    assert_int_equal(mk_register_validator("isUpper", is_upper, NULL, "{PATH} must be upper-case"),
                     MK_OK);
    s = schema("{ code: { type: String, validate: 'isUpper' } }");
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ code: 'abc' }", NULL, &errs);
    assert_int_equal(errs.count, 0);
    mk_verrors_destroy(&errs);
    assert_int_equal(mk_schema_resolve_named(s, &err), MK_OK);
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ code: 'abc' }", NULL, &errs);
    assert_err(&errs, "code", "user defined", "code must be upper-case");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

/* A copy of doc's bytes with one byte changed, viewed as a bson_t (free *bytes after). */
static bson_t *patched(const bson_t *doc, uint32_t at, uint8_t value, uint8_t **bytes, bson_t *view)
{
    *bytes = malloc(doc->len);
    assert_non_null(*bytes);
    memcpy(*bytes, bson_get_data(doc), doc->len);
    (*bytes)[at] = value;
    assert_true(bson_init_static(view, *bytes, doc->len));
    return view;
}

/* A nested object whose last byte is not 0: the walk does not enter it (bson_init_static
 * refuses it), while the lookup of a required path inside it still reads it. */
static void test_malformed_nested_object(void **state)
{
    mk_schema_t *s =
        schema("{ p: { x: { type: String, required: true },"
               "       y: { type: String, enum: ['a'] } }, q: { type: Number, max: 1 } }");
    bson_t *good = tu_bson("{ p: { x: 'v', y: 'bad' }, q: 5 }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    assert_int_equal(mk_validate_document(s, NULL, good, NULL, &errs), MK_OK);
    assert_string_equal(paths_of(&errs), "p.y q");
    mk_verrors_destroy(&errs);

    /* the inner object starts after "p" (4 + 1 + 2 bytes); its last byte is its length - 1 */
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, good, "p"));
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    uint32_t last = (uint32_t)(data - bson_get_data(good)) + len - 1;
    uint8_t *bytes;
    bson_t view;
    mk_verrors_init(&errs);
    assert_int_equal(
        mk_validate_document(s, NULL, patched(good, last, 1, &bytes, &view), NULL, &errs), MK_OK);
    assert_string_equal(paths_of(&errs), "q"); /* p.x found, p.y not validated */
    mk_verrors_destroy(&errs);
    free(bytes);
    bson_destroy(good);

    bson_t *missing = tu_bson("{ p: { y: 'bad' }, q: 0 }");
    assert_true(bson_iter_init_find(&it, missing, "p"));
    bson_iter_document(&it, &len, &data);
    last = (uint32_t)(data - bson_get_data(missing)) + len - 1;
    mk_verrors_init(&errs);
    assert_int_equal(
        mk_validate_document(s, NULL, patched(missing, last, 1, &bytes, &view), NULL, &errs),
        MK_OK);
    assert_string_equal(paths_of(&errs), "p.x");
    mk_verrors_destroy(&errs);
    free(bytes);

    /* a corrupted element: validation covers the fields before it, as bson_iter stops there */
    bson_t *cut = tu_bson("{ q: 7, p: { x: 'v' }, r: 1 }");
    assert_true(bson_iter_init_find(&it, cut, "p"));
    uint32_t type_at = (uint32_t)(bson_iter_key(&it) - (const char *)bson_get_data(cut)) - 1;
    mk_verrors_init(&errs);
    assert_int_equal(
        mk_validate_document(s, NULL, patched(cut, type_at, 0x42, &bytes, &view), NULL, &errs),
        MK_OK);
    assert_string_equal(paths_of(&errs), "p.x q");
    mk_verrors_destroy(&errs);
    free(bytes);
    bson_destroy(cut);
    bson_destroy(missing);
    mk_schema_destroy(s);
}

/* Values of types the quick walk leaves to bson_iter (binary, regex, timestamp, code, min/max
 * keys), duplicate field names and dotted field names: validated as bson_iter reads them. */
static void test_uncommon_fields(void **state)
{
    mk_schema_t *s = schema("{ a: { type: String, enum: ['x'] }, b: Buffer, m: Mixed,"
                            "  p: { x: { type: String, required: true } } }");
    const char *docs[] = {
        "{ b: { $binary: { base64: 'AAEC', subType: '00' } }, a: 'z' }",
        "{ m: /re/i, a: 'z', m: { $timestamp: { t: 1, i: 2 } } }",
        "{ m: { $minKey: 1 }, m: { $maxKey: 1 }, a: 'z' }",
        "{ a: 'x', a: 'z', p: { x: 'v' }, p: 5 }",
        "{ 'p.x': '', a: 'z' }",
        "{ p: 5, p: { x: 'v' }, a: 'x' }",
    };
    /* p.x is missing unless the first `p` is an object holding it */
    const char *expect[] = {"p.x a", "p.x a", "p.x a", "a", "p.x a", "p.x"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        mk_verrors_t errs;
        mk_verrors_init(&errs);
        vdoc(s, NULL, docs[i], NULL, &errs);
        if (strcmp(paths_of(&errs), expect[i]) != 0)
            fail_msg("%s: got `%s`, expected `%s`", docs[i], paths_of(&errs), expect[i]);
        mk_verrors_destroy(&errs);
    }
    /* a dotted field name is validated as that path, but a lookup of the path does not see it */
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, "{ 'p.x': '' }", NULL, &errs);
    assert_err(&errs, "p.x", "required", "Path `p.x` is required.");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

/* Nested objects deeper than the walk goes: the paths met before are validated, then the run
 * fails; lookups of required paths still see past the point where the walk stopped. */
static void test_deep_nesting(void **state)
{
    for (int depth = 150; depth <= 205; depth += 55) {
        mk_error_t err = {0};
        mk_schema_t *s = schema("{ b: { type: String, enum: ['q'] } }");
        char *path = malloc(2 * (size_t)depth + 1), def[1024];
        assert_non_null(path);
        for (int i = 0; i < depth; i++) memcpy(path + 2 * i, "a.", 2);
        path[2 * depth] = '\0';
        char *text = malloc(5 * strlen(path) + 256);
        assert_non_null(text);
        sprintf(text,
                "{ '%sx': { type: String, required: true }, '%sy': { type: String, enum: ['q'] },"
                "  z: { type: String, required: true }, w: { type: String, enum: ['q'] } }",
                path, path);
        assert_int_equal(mk_schema_add(s, text, &err), MK_OK);
        bson_t *inner = tu_bson("{ x: 'v', y: 'bad' }");
        for (int i = 0; i < depth; i++) {
            bson_t *outer = bson_new();
            assert_true(BSON_APPEND_DOCUMENT(outer, "a", inner));
            bson_destroy(inner);
            inner = outer;
        }
        bson_t *d = tu_bson("{ b: 'x' }");
        assert_true(bson_concat(d, inner));
        assert_true(BSON_APPEND_UTF8(d, "z", "here"));
        assert_true(BSON_APPEND_UTF8(d, "w", "bad"));
        mk_verrors_t errs;
        mk_verrors_init(&errs);
        int rc = mk_validate_document(s, NULL, d, NULL, &errs);
        if (depth <= 200) {
            assert_int_equal(rc, MK_OK);
            snprintf(def, sizeof def, "b %.*sy w", 2 * depth, path);
            assert_string_equal(paths_of(&errs), def);
        } else {
            assert_int_equal(rc, MK_ERR);
            assert_string_equal(errs.error.message, "document nests too deeply to validate");
            assert_string_equal(paths_of(&errs), "b"); /* no required error for x or z */
        }
        mk_verrors_destroy(&errs);
        bson_destroy(d);
        bson_destroy(inner);
        free(text);
        free(path);
        mk_schema_destroy(s);
    }
}

/* Schemas and documents larger than what a level keeps on the stack. */
static void test_large_schema(void **state)
{
    size_t cap = 64 * 1024;
    char *def = malloc(cap), *doc = malloc(cap);
    assert_non_null(def);
    assert_non_null(doc);
    size_t nd = 0, nc = 0;
    nd += (size_t)snprintf(def + nd, cap - nd, "{");
    nc += (size_t)snprintf(doc + nc, cap - nc, "{");
    for (int i = 0; i < 300; i++) { /* more paths than marks on the stack */
        nd += (size_t)snprintf(def + nd, cap - nd, "%s s%d: { type: String, minlength: 2 }",
                               i ? "," : "", i);
        nc += (size_t)snprintf(doc + nc, cap - nc, "%s s%d: '%s'", i ? "," : "", i,
                               i % 7 == 0 ? "a" : "ab");
    }
    for (int i = 0; i < 12; i++) { /* more arrays than deferred on the stack */
        nd += (size_t)snprintf(def + nd, cap - nd, ", t%d: [{ type: String, enum: ['ok'] }]", i);
        nc += (size_t)snprintf(doc + nc, cap - nc, ", t%d: ['ok', 'no%d']", i, i);
    }
    snprintf(def + nd, cap - nd, " }");
    snprintf(doc + nc, cap - nc, " }");
    mk_schema_t *s = schema(def);
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    vdoc(s, NULL, doc, NULL, &errs);
    assert_int_equal(errs.count, 43 + 12); /* s0, s7, ..., s294; then t0.1 ... t11.1 */
    assert_string_equal(errs.items[0].path, "s0");
    assert_string_equal(errs.items[42].path, "s294");
    assert_string_equal(errs.items[43].path, "t0.1");
    assert_err(&errs, "t11.1", "enum", "`no11` is not a valid enum value for path `t11.1`.");
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
    free(def);
    free(doc);
}

/* Threads sharing a schema: the first validations race to build its plan, and every run reads
 * it while keeping its own state. */
typedef struct thread_job {
    const mk_schema_t *s;
    const bson_t *good, *bad;
    int wrong;
} thread_job_t;

static void *validate_many(void *arg)
{
    thread_job_t *j = arg;
    for (int i = 0; i < 2000; i++) {
        bool bad = i % 3 == 0;
        mk_verrors_t errs;
        mk_verrors_init(&errs);
        int rc = mk_validate_document(j->s, NULL, bad ? j->bad : j->good, NULL, &errs);
        if (rc != MK_OK || errs.count != (bad ? 3u : 0u) ||
            (bad && strcmp(errs.items[2].path, "code") != 0))
            j->wrong++;
        mk_verrors_destroy(&errs);
    }
    return NULL;
}

static void test_concurrent_validation(void **state)
{
    mk_schema_t *s = schema("{ name: { type: String, required: true, minlength: 2 },"
                            "  role: { type: String, enum: ['user', 'admin'] },"
                            "  code: { type: String, match: /^[A-Z]+$/ } }");
    bson_t *good = tu_bson("{ name: 'Ann', role: 'user', code: 'AB' }");
    bson_t *bad = tu_bson("{ name: 'A', role: 'root', code: 'ab' }");
    enum { N = 4 };
    pthread_t th[N];
    thread_job_t jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (thread_job_t){s, good, bad, 0};
        assert_int_equal(pthread_create(&th[i], NULL, validate_many, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(jobs[i].wrong, 0);
    }
    bson_destroy(good);
    bson_destroy(bad);
    mk_schema_destroy(s);
}

/* An empty Buffer that fails `required` must still render its error (it once aborted when
 * the ValidationError was built: the empty binary's data pointer is NULL). */
static void test_empty_buffer_required(void **state)
{
    mk_schema_t *s = schema("{ b: { type: Buffer, required: true } }");
    mk_verrors_t errs;
    mk_verrors_init(&errs);
    bson_t *doc = bson_new();
    BSON_APPEND_BINARY(doc, "b", BSON_SUBTYPE_BINARY, NULL, 0);
    assert_int_equal(mk_validate_document(s, NULL, doc, NULL, &errs), MK_OK);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0].message, "Path `b` is required.");
    mk_error_t err = {0};
    assert_int_equal(mk_verrors_to_error(&errs, "M", &err), MK_ERR);
    assert_string_equal(err.message, "M validation failed: b: Path `b` is required.");
    bson_destroy(doc);
    mk_verrors_destroy(&errs);
    mk_schema_destroy(s);
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_book_enum),
        cmocka_unit_test(test_book_number_enum_mongoose8),
        cmocka_unit_test(test_empty_buffer_required),
        cmocka_unit_test(test_book_required_null),
        cmocka_unit_test(test_book_age_rank_document),
        cmocka_unit_test(test_book_profile_modified_and_required),
        cmocka_unit_test(test_required_forms),
        cmocka_unit_test(test_required_function),
        cmocka_unit_test(test_string_validators),
        cmocka_unit_test(test_number_and_date_validators),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_first_failing_validator_wins),
        cmocka_unit_test(test_named_validator_takes_the_validate_position),
        cmocka_unit_test(test_custom_validators),
        cmocka_unit_test(test_error_order),
        cmocka_unit_test(test_nested_paths),
        cmocka_unit_test(test_single_nested),
        cmocka_unit_test(test_document_array),
        cmocka_unit_test(test_primitive_arrays),
        cmocka_unit_test(test_maps),
        cmocka_unit_test(test_only_paths),
        cmocka_unit_test(test_validate_modified_only),
        cmocka_unit_test(test_seed_user_schema),
        cmocka_unit_test(test_update_book_enum),
        cmocka_unit_test(test_update_book_age_rank_query_context),
        cmocka_unit_test(test_update_operators),
        cmocka_unit_test(test_update_nested_and_subdocs),
        cmocka_unit_test(test_update_custom_and_in),
        cmocka_unit_test(test_update_bad_input),
        cmocka_unit_test(test_enum_forms),
        cmocka_unit_test(test_validate_lists),
        cmocka_unit_test(test_update_arrays_and_maps),
        cmocka_unit_test(test_update_large_array),
        cmocka_unit_test(test_update_callback_paths),
        cmocka_unit_test(test_plan_follows_schema_changes),
        cmocka_unit_test(test_malformed_nested_object),
        cmocka_unit_test(test_uncommon_fields),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_large_schema),
        cmocka_unit_test(test_concurrent_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
