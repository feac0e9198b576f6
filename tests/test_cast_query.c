/* Casting filters and updates through a schema (odm/cast_query.h) and setters
 * (odm/setters.h): Mongoose 8's results and error messages, and the book's chapter 3. */
#include "testutil.h"

#include <ctype.h>
#include <string.h>

#include "bson/path.h"
#include "bson/value.h"
#include "odm/cast_query.h"
#include "odm/schema_fns.h"
#include "odm/setters.h"

#define CHARACTER "{ name: String, age: Number, rank: String }"

/* One schema with a bit of everything. */
#define KITCHEN                                                                                    \
    "{ name: String, age: Number, active: Boolean, born: Date, ref: ObjectId, data: Buffer,"       \
    "  price: Decimal128, big: BigInt, i32: Int32, dbl: Double, uid: UUID, meta: {},"              \
    "  email: { type: String, lowercase: true, trim: true },"                                      \
    "  code: { type: String, immutable: true },"                                                   \
    "  tags: [String], nums: [Number], matrix: [[Number]], anything: [],"                          \
    "  caps: [{ type: String, uppercase: true }],"                                                 \
    "  comments: [{ text: String, votes: Number, when: Date }],"                                   \
    "  author: { type: { name: String, n: Number } },"                                             \
    "  profile: { bio: String, stats: { visits: Number } },"                                       \
    "  scores: { type: Map, of: Number } }"

static mk_schema_t *schema(const char *def, const char *opts)
{
    mk_error_t err = {0};
    mk_schema_t *s = mk_schema_parse(def, opts, &err);
    if (!s) fail_msg("schema: %s", err.message);
    return s;
}

/* ---------- helpers ---------- */

static void filter_with(const mk_schema_t *s, const char *in, const mk_cast_filter_opts_t *o,
                        const char *expect, const char *file, int line)
{
    mk_error_t err = {0};
    bson_t *f = tu_bson(in);
    bson_t out;
    bson_init(&out);
    int rc = mk_cast_filter(s, "Character", f, o, &out, &err);
    if (rc != MK_OK) {
        print_error("%s:%d: %s failed: %s: %s\n", file, line, in, err.kind, err.message);
        _fail(file, line);
    }
    tu_assert_bson_eq_(&out, expect, file, line);
    bson_destroy(&out);
    bson_destroy(f);
}
#define filter_ok(s, in, expect)     filter_with(s, in, NULL, expect, __FILE__, __LINE__)
#define filter_opt(s, in, o, expect) filter_with(s, in, o, expect, __FILE__, __LINE__)

static void filter_fails(const mk_schema_t *s, const char *in, const mk_cast_filter_opts_t *o,
                         const char *kind, const char *msg, const char *file, int line)
{
    mk_error_t err = {0};
    bson_t *f = tu_bson(in);
    bson_t out;
    bson_init(&out);
    int rc = mk_cast_filter(s, "Character", f, o, &out, &err);
    if (rc != MK_ERR || strcmp(err.kind, kind) != 0 || strcmp(err.message, msg) != 0) {
        print_error("%s:%d: %s\n  got rc %d %s: %s\n  want %s: %s\n", file, line, in, rc, err.kind,
                    err.message, kind, msg);
        _fail(file, line);
    }
    bson_destroy(&out);
    bson_destroy(f);
}
#define filter_err(s, in, kind, msg)     filter_fails(s, in, NULL, kind, msg, __FILE__, __LINE__)
#define filter_err_opt(s, in, o, k, msg) filter_fails(s, in, o, k, msg, __FILE__, __LINE__)

static bson_t *update_cast(const mk_schema_t *s, const char *in, const mk_cast_update_opts_t *o,
                           const mk_fn_ctx_t *ctx, const char *file, int line)
{
    mk_error_t err = {0};
    bson_t *u = tu_bson(in);
    bson_t *out = bson_new();
    int rc = mk_cast_update(s, "Character", u, o, ctx, out, &err);
    if (rc != MK_OK) {
        print_error("%s:%d: %s failed: %s: %s\n", file, line, in, err.kind, err.message);
        _fail(file, line);
    }
    bson_destroy(u);
    return out;
}

static void update_with(const mk_schema_t *s, const char *in, const mk_cast_update_opts_t *o,
                        const char *expect, const char *file, int line)
{
    bson_t *out = update_cast(s, in, o, NULL, file, line);
    tu_assert_bson_eq_(out, expect, file, line);
    bson_destroy(out);
}
#define update_ok(s, in, expect)     update_with(s, in, NULL, expect, __FILE__, __LINE__)
#define update_opt(s, in, o, expect) update_with(s, in, o, expect, __FILE__, __LINE__)

static void update_fails(const mk_schema_t *s, const char *in, const mk_cast_update_opts_t *o,
                         const char *kind, const char *msg, const char *file, int line)
{
    mk_error_t err = {0};
    bson_t *u = tu_bson(in);
    bson_t out;
    bson_init(&out);
    int rc = mk_cast_update(s, "Character", u, o, NULL, &out, &err);
    if (rc != MK_ERR || strcmp(err.kind, kind) != 0 || strcmp(err.message, msg) != 0) {
        print_error("%s:%d: %s\n  got rc %d %s: %s\n  want %s: %s\n", file, line, in, rc, err.kind,
                    err.message, kind, msg);
        _fail(file, line);
    }
    bson_destroy(&out);
    bson_destroy(u);
}
#define update_err(s, in, kind, msg)     update_fails(s, in, NULL, kind, msg, __FILE__, __LINE__)
#define update_err_opt(s, in, o, k, msg) update_fails(s, in, o, k, msg, __FILE__, __LINE__)

static bson_type_t type_at(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    if (!mk_path_get(doc, path, &it)) return BSON_TYPE_EOD;
    return bson_iter_type(&it);
}

/* ---------- setters used by the tests ---------- */

/* The book's `v => v.toLowerCase()` on strings. */
static int to_lower(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                    mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_UTF8) {
        if (in) bson_value_copy(in, out);
        return MK_OK;
    }
    bson_value_copy(in, out);
    for (uint32_t i = 0; i < out->value.v_utf8.len; i++)
        out->value.v_utf8.str[i] = (char)tolower((unsigned char)out->value.v_utf8.str[i]);
    return MK_OK;
}

/* Appends the letter in `ud` to a string (shows the order setters run in). */
static int append_letter(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out,
                         void *ud, mk_error_t *err)
{
    const char *letter = ud;
    bson_string_t *s =
        bson_string_new(in && in->value_type == BSON_TYPE_UTF8 ? in->value.v_utf8.str : "");
    bson_string_append(s, letter);
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.len = (uint32_t)s->len;
    out->value.v_utf8.str = bson_string_free(s, false);
    return MK_OK;
}

/* Tells undefined (NULL) from everything else. */
static int mark_undefined(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out,
                          void *ud, mk_error_t *err)
{
    if (!in) {
        out->value_type = BSON_TYPE_UTF8;
        out->value.v_utf8.str = bson_strdup("was undefined");
        out->value.v_utf8.len = 13;
    } else {
        bson_value_copy(in, out);
    }
    return MK_OK;
}

/* Adds one to a number. */
static int plus_one(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                    mk_error_t *err)
{
    if (in && in->value_type == BSON_TYPE_INT32) {
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = in->value.v_int32 + 1;
    } else if (in) {
        bson_value_copy(in, out);
    }
    return MK_OK;
}

static int failing_setter(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out,
                          void *ud, mk_error_t *err)
{
    return mk_error_set(err, 0, "Error", "no %s for you", ctx->path);
}

/* Records whether it ran for a query (doc NULL, query set). */
static int query_probe(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                       mk_error_t *err)
{
    *(int *)ud = ctx->doc == NULL && ctx->query == (mk_query_t *)0x1 ? 1 : 2;
    if (in) bson_value_copy(in, out);
    return MK_OK;
}

/* ---------- the book, chapter 3 ---------- */

static void test_book_filter_casting(void **state)
{
    mk_schema_t *s = schema("{ name: String }", NULL);
    /* "Mongoose casts strings in the filter to ObjectIds if you query by _id" */
    filter_ok(s, "{ _id: '5dd57639649ce0bd87750caa' }",
              "{ _id: ObjectId('5dd57639649ce0bd87750caa') }");
    mk_schema_destroy(s);

    s = schema(CHARACTER, NULL);
    /* the cast tutorial: `_id` becomes an ObjectId and `age.$gt` a number */
    bson_t *f = tu_bson("{ _id: '5cdc267dd56b5662b7b7cc0c', age: { $gt: '50' } }");
    bson_t out;
    bson_init(&out);
    mk_error_t err = {0};
    assert_int_equal(mk_cast_filter(s, "Character", f, NULL, &out, &err), MK_OK);
    assert_int_equal(type_at(&out, "_id"), BSON_TYPE_OID);
    assert_int_equal(type_at(&out, "age.$gt"), BSON_TYPE_INT32);
    assert_int_equal(tu_get_int(&out, "age.$gt"), 50);
    bson_destroy(&out);
    bson_destroy(f);
    /* "Mongoose will also reject the query with a CastError" */
    filter_err(s, "{ age: { $gte: 'fail' } }", "CastError",
               "Cast to Number failed for value \"fail\" (type string) at path \"age\" for model "
               "\"Character\"");
    filter_err(s, "{ age: { $lt: 'not a number' } }", "CastError",
               "Cast to Number failed for value \"not a number\" (type string) at path \"age\" "
               "for model \"Character\"");
    /* implicit $in */
    filter_ok(s, "{ name: ['Jean-Luc Picard', 'Will Riker'] }",
              "{ name: { $in: ['Jean-Luc Picard', 'Will Riker'] } }");
    mk_schema_destroy(s);
}

static void test_book_update_casting(void **state)
{
    mk_schema_t *s = schema(CHARACTER, NULL);
    /* "Even though `age` is a string, Mongoose will cast `age` to a number" */
    bson_t *out = update_cast(s, "{ age: '30' }", NULL, NULL, __FILE__, __LINE__);
    tu_assert_bson_eq(out, "{ $set: { age: 30 } }");
    assert_int_equal(type_at(out, "$set.age"), BSON_TYPE_INT32);
    bson_destroy(out);
    /* update CastErrors carry no model, as the book shows */
    update_err(s, "{ age: 'not a number' }", "CastError",
               "Cast to Number failed for value \"not a number\" (type string) at path \"age\"");
    /* runValidators is not casting: 'Lollipop' casts fine */
    update_ok(s, "{ rank: 'Lollipop' }", "{ $set: { rank: 'Lollipop' } }");
    mk_schema_destroy(s);

    /* userSchema.path('email').set(v => v.toLowerCase()); updateOne({ _id }, { email }) */
    s = schema("{ email: String }", NULL);
    mk_error_t err = {0};
    assert_int_equal(mk_schema_path_setter(s, "email", to_lower, NULL, &err), MK_OK);
    update_ok(s, "{ email: 'NEW@gmail.com' }", "{ $set: { email: 'new@gmail.com' } }");
    update_ok(s, "{ $set: { email: 'TEST@Test.com' } }", "{ $set: { email: 'test@test.com' } }");
    mk_schema_destroy(s);

    /* { name: { type: String, lowercase: true } } */
    s = schema("{ name: { type: String, lowercase: true } }", NULL);
    update_ok(s, "{ name: 'iPhone' }", "{ $set: { name: 'iphone' } }");
    filter_ok(s, "{ name: 'SomeEmail@example.com' }", "{ name: 'someemail@example.com' }");
    /* "lowercase does not affect regular expression queries" */
    filter_ok(s, "{ name: /SomeEmail/ }", "{ name: /SomeEmail/ }");
    mk_schema_destroy(s);

    /* Account.updateOne({}, { $inc: { balance: 0.2 } }) on a Decimal128 */
    s = schema("{ balance: mongoose.Decimal128 }", NULL);
    out = update_cast(s, "{ $inc: { balance: 0.2 } }", NULL, NULL, __FILE__, __LINE__);
    assert_int_equal(type_at(out, "$inc.balance"), BSON_TYPE_DECIMAL128);
    tu_assert_bson_eq(out, "{ $inc: { balance: NumberDecimal('0.2') } }");
    bson_destroy(out);
    mk_schema_destroy(s);

    /* `value: {}` (Mixed): $min with any type passes uncast */
    s = schema("{ value: {} }", NULL);
    update_ok(s, "{ $min: { value: 'a' } }", "{ $min: { value: 'a' } }");
    update_ok(s, "{ $min: { value: null } }", "{ $min: { value: null } }");
    filter_ok(s, "{ value: { $gte: null } }", "{ value: { $gte: null } }");
    filter_ok(s, "{ value: { $lte: '42' } }", "{ value: { $lte: '42' } }");
    mk_schema_destroy(s);
}

/* ---------- strictQuery ---------- */

static void test_strict_query(void **state)
{
    mk_schema_t *s = schema(CHARACTER, NULL);
    /* off by default in Mongoose 8: not cast, kept */
    filter_ok(s, "{ notInSchema: { $lt: 'not a number' } }",
              "{ notInSchema: { $lt: 'not a number' } }");
    filter_ok(s, "{ $comment: 'hi', age: '3' }", "{ $comment: 'hi', age: 3 }");
    mk_cast_filter_opts_t on = {.has_strict_query = true, .strict_query = MK_STRICT_TRUE};
    filter_opt(s, "{ notInSchema: { $lt: 'not a number' }, age: '1' }", &on, "{ age: 1 }");
    mk_cast_filter_opts_t throw_ = {.has_strict_query = true, .strict_query = MK_STRICT_THROW};
    filter_err_opt(s, "{ notInSchema: { $lt: 'not a number' } }", &throw_, "StrictModeError",
                   "Path \"notInSchema\" is not in schema and strictQuery is 'throw'.");
    mk_schema_destroy(s);

    /* the schema option, as the tutorial sets it */
    s = schema(CHARACTER, "{ strictQuery: true }");
    filter_ok(s, "{ notInSchema: { $lt: 'not a number' } }", "{}");
    mk_cast_filter_opts_t off = {.has_strict_query = true, .strict_query = MK_STRICT_FALSE};
    filter_opt(s, "{ notInSchema: 1 }", &off, "{ notInSchema: 1 }"); /* the query wins */
    mk_schema_destroy(s);
    s = schema(CHARACTER, "{ strictQuery: 'throw' }");
    filter_err(s, "{ notInSchema: { $lt: 'not a number' } }", "StrictModeError",
               "Path \"notInSchema\" is not in schema and strictQuery is 'throw'.");
    mk_schema_destroy(s);

    /* upserts: the filter may become the document, so `strict` applies */
    s = schema(CHARACTER, NULL);
    mk_cast_filter_opts_t up = {.upsert = true};
    filter_err_opt(s, "{ notInSchema: 1 }", &up, "StrictModeError",
                   "Path \"notInSchema\" is not in schema, strict mode is `true`, and upsert is "
                   "`true`.");
    mk_cast_filter_opts_t up_throw = {
        .upsert = true, .has_strict = true, .strict = MK_STRICT_THROW};
    filter_err_opt(s, "{ notInSchema: 1 }", &up_throw, "StrictModeError",
                   "Field `notInSchema` is not in schema and strict mode is set to throw.");
    mk_cast_filter_opts_t up_lax = {.upsert = true, .has_strict = true, .strict = MK_STRICT_FALSE};
    filter_opt(s, "{ notInSchema: 1, age: '2' }", &up_lax, "{ notInSchema: 1, age: 2 }");
    mk_schema_destroy(s);

    /* inside a document array, the child schema decides (it inherits strictQuery) */
    s = schema("{ comments: [{ text: String }] }", "{ strictQuery: true }");
    filter_ok(s, "{ 'comments.nope': 1, 'comments.text': 5 }", "{ 'comments.text': '5' }");
    mk_schema_destroy(s);
    s = schema("{ comments: [{ text: String }] }", "{ strictQuery: 'throw' }");
    filter_err(s, "{ 'comments.nope': 1 }", "StrictModeError",
               "Path \"nope\" is not in schema and strictQuery is 'throw'.");
    mk_schema_destroy(s);
}

/* ---------- filters: scalar types and operators ---------- */

static void test_filter_scalars(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    filter_ok(s, "{ name: 5, age: '42', active: 'yes', big: '12', i32: '7', dbl: '1.5' }",
              "{ name: '5', age: 42, active: true, big: NumberLong(12), i32: 7, dbl: 1.5 }");
    filter_ok(
        s, "{ born: '2020-01-01', ref: '5dd57639649ce0bd87750caa' }",
        "{ born: ISODate('2020-01-01T00:00:00Z'), ref: ObjectId('5dd57639649ce0bd87750caa') }");
    filter_ok(s, "{ born: { $gte: 1577836800000, $lt: '2021-01-01T00:00:00Z' } }",
              "{ born: { $gte: ISODate('2020-01-01T00:00:00Z'), "
              "$lt: ISODate('2021-01-01T00:00:00Z') } }");
    filter_ok(s, "{ price: { $gt: '1.10' }, data: 'ab' }",
              "{ price: { $gt: NumberDecimal('1.10') }, data: BinData(0, 'YWI=') }");
    filter_ok(s, "{ uid: '09190f70-3d30-11e5-8814-0ed5f89f718b' }",
              "{ uid: UUID('09190f70-3d30-11e5-8814-0ed5f89f718b') }");
    /* null and undefined pass untouched */
    filter_ok(s, "{ age: null, name: { $ne: null } }", "{ age: null, name: { $ne: null } }");
    /* a RegExp passes a String path, not a Number path */
    filter_ok(s, "{ name: /^a/i }", "{ name: /^a/i }");
    filter_err(s, "{ age: /1/ }", "CastError",
               "Cast to Number failed for value \"/1/\" (type RegExp) at path \"age\" for model "
               "\"Character\"");
    filter_err(s, "{ _id: 'abc' }", "CastError",
               "Cast to ObjectId failed for value \"abc\" (type string) at path \"_id\" for model "
               "\"Character\"");
    filter_err(s, "{ born: 'not a date' }", "CastError",
               "Cast to date failed for value \"not a date\" (type string) at path \"born\" for "
               "model \"Character\"");
    filter_err(s, "{ active: 'maybe' }", "CastError",
               "Cast to Boolean failed for value \"maybe\" (type string) at path \"active\" for "
               "model \"Character\"");
    /* an array against Mixed is an implicit $in too (only Array and Buffer paths are not) */
    filter_ok(s, "{ meta: [1, 'a'] }", "{ meta: { $in: [1, 'a'] } }");
    /* Mixed: nothing is cast */
    filter_ok(s, "{ meta: { $gt: 'x', a: '1' }, 'meta.a.b': 'x' }",
              "{ meta: { $gt: 'x', a: '1' }, 'meta.a.b': 'x' }");
    mk_schema_destroy(s);
}

static void test_filter_operators(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    filter_ok(s, "{ age: { $eq: '1', $ne: '2', $gt: '3', $gte: '4', $lt: '5', $lte: '6' } }",
              "{ age: { $eq: 1, $ne: 2, $gt: 3, $gte: 4, $lt: 5, $lte: 6 } }");
    filter_ok(s, "{ age: { $in: ['1', 2, []], $nin: '3' } }",
              "{ age: { $in: [1, 2, []], $nin: [3] } }");
    filter_ok(s, "{ age: { $all: ['1', '2'] }, name: { $all: 5 } }",
              "{ age: { $all: [1, 2] }, name: { $all: ['5'] } }");
    filter_err(s, "{ age: { $in: [1, 'x'] } }", "CastError",
               "Cast to Number failed for value \"x\" (type string) at path \"age\" for model "
               "\"Character\"");
    filter_ok(s, "{ age: { $mod: ['4', '1'] } }", "{ age: { $mod: [4, 1] } }");
    filter_ok(s, "{ age: { $bitsAllSet: '5', $bitsAnyClear: [1, '2'] } }",
              "{ age: { $bitsAllSet: 5, $bitsAnyClear: [1, 2] } }");
    filter_err(s, "{ age: { $bitsAllSet: 'x' } }", "CastError",
               "Cast to number failed for value \"x\" (type string) at path \"age\" for model "
               "\"Character\"");
    /* $exists through castBoolean */
    filter_ok(s, "{ age: { $exists: 'true' }, name: { $exists: 0 }, born: { $exists: 'yes' } }",
              "{ age: { $exists: true }, name: { $exists: false }, born: { $exists: true } }");
    filter_err(s, "{ age: { $exists: 'x' } }", "CastError",
               "Cast to boolean failed for value \"x\" (type string) at path \"age\" for model "
               "\"Character\"");
    /* $type: a number or a string */
    filter_ok(s, "{ age: { $type: 'double' }, name: { $type: 2 } }",
              "{ age: { $type: 'double' }, name: { $type: 2 } }");
    filter_err(s, "{ age: { $type: {} } }", "Error", "$type parameter must be number or string");
    /* $regex / $options on strings: cast to string, a RegExp passes, setters do not run */
    filter_ok(s, "{ name: { $regex: 5, $options: 'i' }, email: { $regex: 'ABC' } }",
              "{ name: { $regex: '5', $options: 'i' }, email: { $regex: 'ABC' } }");
    filter_ok(s, "{ name: { $regex: /a/ } }", "{ name: { $regex: /a/ } }");
    /* $not */
    filter_ok(s, "{ name: { $not: /^a/ }, age: { $not: { $gt: '5' } } }",
              "{ name: { $not: /^a/ }, age: { $not: { $gt: 5 } } }");
    filter_err(s, "{ age: { $not: 5 } }", "CastError",
               "Cast to number failed for value \"5\" (type number) at path \"age\" for model "
               "\"Character\"");
    /* "Can't use X" per type */
    filter_err(s, "{ name: { $foo: 1 } }", "Error", "Can't use $foo with String.");
    filter_err(s, "{ name: { $mod: [2, 1] } }", "Error", "Can't use $mod with String.");
    filter_err(s, "{ age: { $foo: 'x' } }", "CastError",
               "Cast to number failed for value \"x\" (type string) at path \"age\" for model "
               "\"Character\"");
    filter_err(s, "{ born: { $foo: 1 } }", "Error", "Can't use $foo with Date.");
    filter_err(s, "{ ref: { $foo: 1 } }", "Error", "Can't use $foo");
    filter_err(s, "{ price: { $foo: 1 } }", "Error", "Can't use $foo");
    filter_err(s, "{ data: { $foo: 1 } }", "Error", "Can't use $foo with Buffer.");
    filter_err(s, "{ tags: { $foo: 1 } }", "Error", "Can't use $foo with Array.");
    filter_err(s, "{ author: { $gt: 1 } }", "Error", "Can't use $gt");
    filter_err(s, "{ uid: { $foo: 1 } }", "Error", "Can't use $foo with UUID.");
    filter_err(s, "{ scores: { $foo: 1 } }", "Error", "Can't use $foo");
    /* Boolean, BigInt, Int32 and Double cast the operand of any other operator as a value */
    filter_ok(s, "{ active: { $foo: 'true' }, big: { $foo: '3' } }",
              "{ active: { $foo: true }, big: { $foo: NumberLong(3) } }");
    /* $and/$or/$nor */
    filter_ok(s,
              "{ $or: [{ age: '1' }, { $and: [{ name: 2 }, { born: 0 }] }], $nor: [{ age: '3' }] }",
              "{ $or: [{ age: 1 }, { $and: [{ name: '2' }, { born: new Date(0) }] }], "
              "$nor: [{ age: 3 }] }");
    filter_err(s, "{ $or: 5 }", "CastError",
               "Cast to Array failed for value \"5\" (type number) at path \"$or\" for model "
               "\"Character\"");
    filter_err(s, "{ $and: [{ age: 1 }, 'x'] }", "CastError",
               "Cast to Object failed for value \"x\" (type string) at path \"$and.1\" for model "
               "\"Character\"");
    filter_err(s, "{ $or: [[1]] }", "Error", "Query filter must be an object, got an array ");
    /* $where, $expr, $text */
    filter_ok(s, "{ $where: 'this.age > 1', $expr: { $gt: ['$age', '5'] } }",
              "{ $where: 'this.age > 1', $expr: { $gt: ['$age', '5'] } }");
    filter_err(s, "{ $where: 5 }", "Error", "Must have a string or function for $where");
    /* geospatial queries are not supported */
    filter_err(s, "{ loc: { $near: [1, 2] } }", "BadValue",
               "$near is not supported: meerkat does not cast geospatial queries");
    filter_err(s, "{ nums: { $geoWithin: { $box: [[0, 0], [1, 1]] } } }", "BadValue",
               "$geoWithin is not supported: meerkat does not cast geospatial queries");
    /* a query value that is an object without operators is cast as a value */
    filter_err(s, "{ name: { a: 1 } }", "CastError",
               "Cast to string failed for value \"{ a: 1 }\" (type Object) at path \"name\" for "
               "model \"Character\"");
    mk_schema_destroy(s);
}

static void test_filter_arrays(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    /* a scalar against an array path casts to the element type; an array element-wise */
    filter_ok(s, "{ tags: 5, nums: '3' }", "{ tags: '5', nums: 3 }");
    filter_ok(s, "{ tags: ['a', 1], nums: ['1', '2'] }", "{ tags: ['a', '1'], nums: [1, 2] }");
    filter_ok(s, "{ 'tags.0': 5, 'nums.1': '7' }", "{ 'tags.0': '5', 'nums.1': 7 }");
    filter_ok(s, "{ nums: { $gt: '3', $size: '2' } }", "{ nums: { $gt: 3, $size: 2 } }");
    filter_ok(s, "{ nums: { $in: ['1', ['2'], []] }, tags: { $nin: [1] } }",
              "{ nums: { $in: [1, [2], []] }, tags: { $nin: ['1'] } }");
    filter_ok(s, "{ nums: { $all: ['1', 2] }, tags: { $all: 3 } }",
              "{ nums: { $all: [1, 2] }, tags: { $all: ['3'] } }");
    filter_ok(s, "{ nums: { $elemMatch: { $gt: '1', $lt: '5' } } }",
              "{ nums: { $elemMatch: { $gt: 1, $lt: 5 } } }");
    filter_ok(s, "{ tags: { $regex: /a/, $options: 'i' }, nums: { $ne: '4' } }",
              "{ tags: { $regex: /a/, $options: 'i' }, nums: { $ne: 4 } }");
    filter_ok(s, "{ matrix: [['1', 2]], 'matrix.0': ['3'] }",
              "{ matrix: [[1, 2]], 'matrix.0': [3] }");
    filter_ok(s, "{ anything: { $gt: 'x' }, caps: 'abc' }",
              "{ anything: { $gt: 'x' }, caps: 'ABC' }");
    filter_ok(s, "{ tags: { $exists: 1 }, nums: { $type: 'array' } }",
              "{ tags: { $exists: true }, nums: { $type: 'array' } }");
    filter_err(s, "{ nums: 'x' }", "CastError",
               "Cast to Number failed for value \"x\" (type string) at path \"nums\" for model "
               "\"Character\"");
    filter_err(s, "{ nums: { $size: 'a' } }", "AssertionError",
               "The expression evaluated to a falsy value:\n\n  assert.ok(!isNaN(val))\n");
    filter_err(s, "{ nums: { $size: [2] } }", "AssertionError",
               "The expression evaluated to a falsy value:\n\n  assert.ok(false)\n");
    filter_err(s, "{ nums: { $or: 5 } }", "TypeError", "conditional $or requires an array");
    /* $options on an array is String(value); $elemMatch with $not stays as written */
    filter_ok(
        s, "{ tags: { $regex: 'a', $options: 5 }, nums: { $elemMatch: { $not: { $gt: 1 } } } }",
        "{ tags: { $regex: 'a', $options: '5' }, nums: { $elemMatch: { $not: { $gt: 1 } } } }");
    /* Buffer and Array paths take arrays as values, not as $in */
    filter_ok(s, "{ data: [97, 98] }", "{ data: BinData(0, 'YWI=') }");
    /* maps: values through the map's type */
    filter_ok(s, "{ 'scores.math': '9', scores: { a: '1' } }",
              "{ 'scores.math': 9, scores: { a: 1 } }");
    mk_schema_destroy(s);
}

static void test_filter_subdocs(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    /* dotted paths into document arrays, with and without index */
    filter_ok(
        s, "{ 'comments.votes': { $gt: '3' }, 'comments.0.text': 5, 'comments.when': 0 }",
        "{ 'comments.votes': { $gt: 3 }, 'comments.0.text': '5', 'comments.when': new Date(0) }");
    filter_ok(s, "{ 'comments.$.votes': '1' }", "{ 'comments.$.votes': 1 }");
    filter_err(s, "{ 'comments.votes': 'many' }", "CastError",
               "Cast to Number failed for value \"many\" (type string) at path \"votes\" for model "
               "\"Character\"");
    /* $elemMatch into a document array: the child schema */
    filter_ok(
        s, "{ comments: { $elemMatch: { votes: { $gte: '2' }, text: 3, $or: [{ votes: '1' }] } } }",
        "{ comments: { $elemMatch: { votes: { $gte: 2 }, text: '3', $or: [{ votes: 1 }] } } }");
    /* $all with $elemMatch */
    filter_ok(s, "{ comments: { $all: [{ $elemMatch: { votes: '1' } }] } }",
              "{ comments: { $all: [{ $elemMatch: { votes: 1 } }] } }");
    /* a whole element compared by value is cast as a sub-document */
    filter_ok(s, "{ comments: { text: 1, votes: '2' } }", "{ comments: { text: '1', votes: 2 } }");
    /* a scalar compared to a document array element: Document() refuses it (Mongoose's own
     * message, seen when `{ members: userId }` targets an array of sub-documents) */
    filter_err(s, "{ comments: 'DitPMUXQ' }", "ObjectParameterError",
               "Parameter \"obj\" to Document() must be an object, got \"DitPMUXQ\" (type string)");
    filter_ok(s, "{ comments: null, 'comments.1': { votes: '3' } }",
              "{ comments: null, 'comments.1': { votes: 3 } }");
    /* single nested */
    filter_ok(s, "{ 'author.n': '7', 'author.name': 1 }", "{ 'author.n': 7, 'author.name': '1' }");
    filter_ok(s, "{ author: { name: 1, n: '2' } }", "{ author: { name: '1', n: 2 } }");
    filter_err(s, "{ author: 'x' }", "CastError",
               "Cast to Embedded failed for value \"x\" (type string) at path \"author\" for model "
               "\"Character\"");
    /* nested objects: dotted paths are cast, a whole nested object is not (as in Mongoose) */
    filter_ok(s, "{ 'profile.bio': 5, 'profile.stats.visits': '3' }",
              "{ 'profile.bio': '5', 'profile.stats.visits': 3 }");
    filter_ok(s, "{ profile: { bio: 5 } }", "{ profile: { bio: 5 } }");
    /* below a primitive path nothing is cast */
    filter_ok(s, "{ 'name.first': 5, 'tags.foo': 1 }", "{ 'name.first': 5, 'tags.foo': 1 }");
    mk_schema_destroy(s);
}

static void test_filter_without_model(void **state)
{
    mk_schema_t *s = schema(CHARACTER, NULL);
    mk_error_t err = {0};
    bson_t *f = tu_bson("{ age: 'x' }");
    bson_t out;
    bson_init(&out);
    /* no model: the CastError tells why instead (Number's cast fails an assertion: no reason) */
    assert_int_equal(mk_cast_filter(s, NULL, f, NULL, &out, &err), MK_ERR);
    assert_string_equal(err.message,
                        "Cast to Number failed for value \"x\" (type string) at path \"age\"");
    bson_destroy(&out);
    bson_destroy(f);
    f = tu_bson("{ _id: 'x' }");
    bson_init(&out);
    assert_int_equal(mk_cast_filter(s, NULL, f, NULL, &out, &err), MK_ERR);
    assert_string_equal(err.message, "Cast to ObjectId failed for value \"x\" (type string) at "
                                     "path \"_id\" because of \"BSONError\"");
    bson_destroy(&out);
    bson_destroy(f);
    /* bad arguments */
    assert_int_equal(mk_cast_filter(NULL, NULL, NULL, NULL, NULL, &err), MK_ERR);
    assert_string_equal(err.kind, "BadValue");
    mk_schema_destroy(s);
}

static void test_filter_error_order(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    /* Mongoose walks keys last to first: the last bad one is reported */
    filter_err(s, "{ age: 'x', born: 'y' }", "CastError",
               "Cast to date failed for value \"y\" (type string) at path \"born\" for model "
               "\"Character\"");
    filter_err(s, "{ age: { $gt: 'a', $lt: 'b' } }", "CastError",
               "Cast to Number failed for value \"b\" (type string) at path \"age\" for model "
               "\"Character\"");
    /* $or elements are walked first to last */
    filter_err(s, "{ $or: [{ age: 'a' }, { age: 'b' }] }", "CastError",
               "Cast to Number failed for value \"a\" (type string) at path \"age\" for model "
               "\"Character\"");
    mk_schema_destroy(s);
}

static void test_sanitize_filter(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    mk_cast_filter_opts_t san = {.sanitize_filter = true};
    /* operators in user objects become values; a lone $eq stays */
    filter_opt(s, "{ x: { $ne: null }, y: { $eq: 1 }, age: '3' }", &san,
               "{ x: { $eq: { $ne: null } }, y: { $eq: 1 }, age: 3 }");
    filter_opt(s, "{ $or: [{ x: { $gt: 1 } }], nested: { pwd: { $ne: null } } }", &san,
               "{ $or: [{ x: { $eq: { $gt: 1 } } }], nested: { pwd: { $eq: { $ne: null } } } }");
    /* and such a value cannot be cast to the path's type */
    filter_err_opt(s, "{ name: { $ne: null } }", &san, "CastError",
                   "Cast to string failed for value \"{ '$ne': null }\" (type Object) at path "
                   "\"name\" for model \"Character\"");
    /* without the option the operator works */
    filter_ok(s, "{ name: { $ne: null } }", "{ name: { $ne: null } }");
    mk_schema_destroy(s);
}

static void test_filter_setters(void **state)
{
    mk_schema_t *s = schema("{ n: Number, word: String }", NULL);
    mk_error_t err = {0};
    assert_int_equal(mk_schema_path_setter(s, "n", plus_one, NULL, &err), MK_OK);
    assert_int_equal(mk_schema_path_setter(s, "word", append_letter, "!", &err), MK_OK);
    /* setters on equality, $eq, $ne, $in, $nin, $all; not on Number's $gt... or $mod */
    filter_ok(s, "{ n: 1 }", "{ n: 2 }");
    filter_ok(
        s, "{ n: { $eq: 1, $ne: 1, $in: [1], $nin: 1, $all: [1], $gt: 1, $lte: 1, $mod: [1, 0] } }",
        "{ n: { $eq: 2, $ne: 2, $in: [2], $nin: [2], $all: [2], $gt: 1, $lte: 1, $mod: [1, 0] } }");
    /* on String paths also $gt..., not $regex or $options */
    filter_ok(s, "{ word: { $gt: 'a', $regex: 'b', $options: 'i' } }",
              "{ word: { $gt: 'a!', $regex: 'b', $options: 'i' } }");
    /* setters see the query context */
    int seen = 0;
    assert_int_equal(mk_schema_path_setter(s, "n", query_probe, &seen, &err), MK_OK);
    mk_fn_ctx_t ctx = {.query = (mk_query_t *)0x1};
    mk_cast_filter_opts_t o = {.ctx = &ctx};
    filter_opt(s, "{ n: 1 }", &o, "{ n: 2 }");
    assert_int_equal(seen, 1);
    /* a failing setter fails the query */
    assert_int_equal(mk_schema_path_setter(s, "word", failing_setter, NULL, &err), MK_OK);
    filter_err(s, "{ word: 'x' }", "Error", "no word for you");
    mk_schema_destroy(s);
}

/* ---------- setters ---------- */

static void test_setter_order(void **state)
{
    mk_schema_t *s = schema("{ w: { type: String, uppercase: true, trim: true } }", NULL);
    mk_error_t err = {0};
    assert_int_equal(mk_schema_path_setter(s, "w", append_letter, "a", &err), MK_OK);
    assert_int_equal(mk_schema_path_setter(s, "w", append_letter, "b", &err), MK_OK);
    const mk_schema_path_t *p = mk_schema_path(s, "w");
    bson_value_t in = {.value_type = BSON_TYPE_UTF8}, out;
    in.value.v_utf8.str = " x ";
    in.value.v_utf8.len = 3;
    /* the list [uppercase, trim, a, b] runs from the end: b, a, trim, uppercase */
    assert_int_equal(mk_setters_apply(s, p, NULL, &in, &out, &err), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_UTF8);
    assert_string_equal(out.value.v_utf8.str, "X BA");
    bson_value_destroy(&out);
    mk_schema_destroy(s);

    /* options count in the order written: [trim, uppercase, C setter] runs C, upper, trim */
    s = schema("{ w: { type: String, trim: true, uppercase: true } }", NULL);
    assert_int_equal(mk_schema_path_setter(s, "w", append_letter, " ", &err), MK_OK);
    p = mk_schema_path(s, "w");
    in.value.v_utf8.str = "q";
    in.value.v_utf8.len = 1;
    assert_int_equal(mk_setters_apply(s, p, NULL, &in, &out, &err), MK_OK);
    assert_string_equal(out.value.v_utf8.str, "Q"); /* " " appended, then upper, then trimmed */
    bson_value_destroy(&out);
    mk_schema_destroy(s);
}

static void test_setter_undefined(void **state)
{
    mk_schema_t *s = schema("{ w: String, n: Number }", NULL);
    mk_error_t err = {0};
    assert_int_equal(mk_schema_path_setter(s, "w", mark_undefined, NULL, &err), MK_OK);
    const mk_schema_path_t *p = mk_schema_path(s, "w");
    bson_value_t out;
    /* setters run for undefined too */
    assert_int_equal(mk_setters_apply(s, p, NULL, NULL, &out, &err), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_UTF8);
    assert_string_equal(out.value.v_utf8.str, "was undefined");
    bson_value_destroy(&out);
    bson_value_t null = {.value_type = BSON_TYPE_NULL};
    assert_int_equal(mk_setters_apply(s, p, NULL, &null, &out, &err), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_NULL);
    /* without setters: a copy, undefined stays undefined */
    const mk_schema_path_t *n = mk_schema_path(s, "n");
    assert_int_equal(mk_setters_apply(s, n, NULL, NULL, &out, &err), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_UNDEFINED);
    assert_int_equal(mk_setters_cast(s, n, NULL, NULL, NULL, &out, &err), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_UNDEFINED);
    mk_schema_destroy(s);
}

static void test_builtin_setters(void **state)
{
    mk_schema_t *s = schema("{ lo: { type: String, lowercase: true }, up: { type: String, "
                            "uppercase: true }, tr: { type: String, trim: true }, "
                            "off: { type: String, lowercase: false }, n: { type: Number, "
                            "lowercase: true } }",
                            NULL);
    update_ok(s,
              "{ lo: 'ÄBC Ω', up: 'straße é', tr: '\\u00a0\\t x y \\u3000\\n', off: 'AB', n: '5' }",
              "{ $set: { lo: 'äbc ω', up: 'STRASSE É', tr: 'x y', off: 'AB', n: 5 } }");
    /* a non-string is cast to String first */
    update_ok(s, "{ lo: 5, up: true, tr: 12 }", "{ $set: { lo: '5', up: 'TRUE', tr: '12' } }");
    update_ok(s, "{ lo: null, up: '' }", "{ $set: { lo: null, up: '' } }");
    update_err(s, "{ lo: { a: 1 } }", "CastError",
               "Cast to string failed for value \"{ a: 1 }\" (type Object) at path \"lo\"");
    mk_schema_destroy(s);
}

static int slugify(const mk_fn_ctx_t *ctx, const bson_value_t *in, bson_value_t *out, void *ud,
                   mk_error_t *err)
{
    if (!in || in->value_type != BSON_TYPE_UTF8) {
        if (in) bson_value_copy(in, out);
        return MK_OK;
    }
    bson_value_copy(in, out);
    for (uint32_t i = 0; i < out->value.v_utf8.len; i++)
        if (out->value.v_utf8.str[i] == ' ') out->value.v_utf8.str[i] = '-';
    return MK_OK;
}

static void test_named_and_child_setters(void **state)
{
    mk_error_t err = {0};
    assert_int_equal(mk_register_setter("castq_slugify", slugify, NULL), MK_OK);
    /* set: 'name' sits in the option list: [slugify, uppercase] runs uppercase first */
    mk_schema_t *s = schema("{ t: { type: String, set: 'castq_slugify', uppercase: true },"
                            "  comments: [{ text: String }], author: { type: { name: String } } }",
                            NULL);
    assert_int_equal(mk_schema_resolve_named(s, &err), MK_OK);
    update_ok(s, "{ t: 'a b' }", "{ $set: { t: 'A-B' } }");
    /* setters of paths inside sub-schemas are registered in the child */
    assert_int_equal(mk_schema_path_setter(s, "comments.text", append_letter, "!", &err), MK_OK);
    assert_int_equal(mk_schema_path_setter(s, "author.name", append_letter, "?", &err), MK_OK);
    update_ok(
        s, "{ $set: { 'comments.0.text': 'a', 'comments.$[].text': 'b', 'author.name': 'c' } }",
        "{ $set: { 'comments.0.text': 'a!', 'comments.$[].text': 'b!', 'author.name': 'c?' } }");
    filter_ok(s, "{ 'comments.text': 'x', 'author.name': 'y' }",
              "{ 'comments.text': 'x!', 'author.name': 'y?' }");
    bson_t *out =
        update_cast(s, "{ $push: { comments: { text: 'z' } } }", NULL, NULL, __FILE__, __LINE__);
    assert_string_equal(tu_get_str(out, "$push.comments.text"), "z!");
    bson_destroy(out);
    mk_schema_destroy(s);
}

static void test_setters_cast(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    mk_error_t err = {0};
    bson_t *in = tu_bson("{ caps: ['ab', 1], nums: '5', comments: [null, { votes: '2', zz: 1 }],"
                         "  author: { n: '3', name: 4 }, bad: [{ x: 1 }, 'oops'] }");
    bson_iter_t it;
    bson_value_t out;
    /* array elements through the element type and its setters; a non-array is wrapped */
    assert_true(bson_iter_init_find(&it, in, "caps"));
    assert_int_equal(
        mk_setters_cast(s, mk_schema_path(s, "caps"), NULL, bson_iter_value(&it), NULL, &out, &err),
        MK_OK);
    bson_t *want = tu_bson("{ v: ['AB', '1'] }");
    bson_iter_t w;
    assert_true(bson_iter_init_find(&w, want, "v"));
    assert_true(mk_value_equal(&out, bson_iter_value(&w)));
    bson_value_destroy(&out);
    bson_destroy(want);
    assert_true(bson_iter_init_find(&it, in, "nums"));
    assert_int_equal(
        mk_setters_cast(s, mk_schema_path(s, "nums"), NULL, bson_iter_value(&it), NULL, &out, &err),
        MK_OK);
    want = tu_bson("{ v: [5] }");
    assert_true(bson_iter_init_find(&w, want, "v"));
    assert_true(mk_value_equal(&out, bson_iter_value(&w)));
    bson_value_destroy(&out);
    bson_destroy(want);
    /* document arrays: falsy entries kept, unknown fields dropped (strict) */
    assert_true(bson_iter_init_find(&it, in, "comments"));
    assert_int_equal(mk_setters_cast(s, mk_schema_path(s, "comments"), NULL, bson_iter_value(&it),
                                     NULL, &out, &err),
                     MK_OK);
    want = tu_bson("{ v: [null, { votes: 2 }] }");
    assert_true(bson_iter_init_find(&w, want, "v"));
    assert_true(mk_value_equal(&out, bson_iter_value(&w)));
    bson_value_destroy(&out);
    bson_destroy(want);
    /* strict false keeps them, strict throw refuses them */
    mk_setters_cast_opts_t lax = {.has_strict = true, .strict = MK_STRICT_FALSE};
    assert_int_equal(mk_setters_cast(s, mk_schema_path(s, "comments"), NULL, bson_iter_value(&it),
                                     &lax, &out, &err),
                     MK_OK);
    want = tu_bson("{ v: [null, { votes: 2, zz: 1 }] }");
    assert_true(bson_iter_init_find(&w, want, "v"));
    assert_true(mk_value_equal(&out, bson_iter_value(&w)));
    bson_value_destroy(&out);
    bson_destroy(want);
    mk_setters_cast_opts_t strictest = {.has_strict = true, .strict = MK_STRICT_THROW};
    assert_int_equal(mk_setters_cast(s, mk_schema_path(s, "comments"), NULL, bson_iter_value(&it),
                                     &strictest, &out, &err),
                     MK_ERR);
    assert_string_equal(err.kind, "StrictModeError");
    assert_string_equal(err.message,
                        "Field `zz` is not in schema and strict mode is set to throw.");
    /* a sub-document, with its auto _id when asked */
    assert_true(bson_iter_init_find(&it, in, "author"));
    mk_setters_cast_opts_t ids = {.add_ids = true};
    assert_int_equal(mk_setters_cast(s, mk_schema_path(s, "author"), NULL, bson_iter_value(&it),
                                     &ids, &out, &err),
                     MK_OK);
    bson_t sub;
    assert_true(bson_init_static(&sub, out.value.v_doc.data, out.value.v_doc.data_len));
    assert_int_equal(type_at(&sub, "_id"), BSON_TYPE_OID);
    assert_int_equal(tu_get_int(&sub, "n"), 3);
    assert_string_equal(tu_get_str(&sub, "name"), "4");
    bson_value_destroy(&out);
    /* a document array entry that is not an object */
    bson_t *bad = tu_bson("{ v: [{ text: 'a' }, 'oops'] }");
    assert_true(bson_iter_init_find(&it, bad, "v"));
    assert_int_equal(mk_setters_cast(s, mk_schema_path(s, "comments"), NULL, bson_iter_value(&it),
                                     NULL, &out, &err),
                     MK_ERR);
    assert_string_equal(err.message, "Cast to embedded failed for value \"oops\" (type string) at "
                                     "path \"comments\" because of \"ObjectParameterError\"");
    bson_destroy(bad);
    /* a sub-document set to a primitive (document form), a nested object under strict throw */
    bson_value_t prim = {.value_type = BSON_TYPE_UTF8};
    prim.value.v_utf8.str = "x";
    prim.value.v_utf8.len = 1;
    assert_int_equal(mk_setters_cast(s, mk_schema_path(s, "author"), NULL, &prim, NULL, &out, &err),
                     MK_ERR);
    assert_string_equal(err.kind, "ObjectExpectedError");
    assert_string_equal(err.message,
                        "Tried to set nested object field `author` to primitive value `x`");
    bson_t *nested = tu_bson("{ profile: 'x' }");
    bson_t res;
    bson_init(&res);
    assert_int_equal(mk_setters_cast_fields(s, nested, NULL, &strictest, &res, &err), MK_ERR);
    assert_string_equal(err.kind, "StrictModeError");
    assert_string_equal(err.message, "Tried to set nested object field `profile` to primitive "
                                     "value `x` and strict mode is set to throw.");
    bson_destroy(&res);
    bson_init(&res);
    assert_int_equal(mk_setters_cast_fields(s, nested, NULL, NULL, &res, &err), MK_OK);
    tu_assert_bson_eq(&res, "{}");
    bson_destroy(&res);
    bson_destroy(nested);
    bson_destroy(in);
    mk_schema_destroy(s);
}

static void test_locate(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    mk_path_loc_t loc;
    mk_path_locate(s, "age", &loc);
    assert_int_equal(loc.kind, MK_LOC_PATH);
    assert_ptr_equal(loc.owner, s);
    mk_path_locate(s, "profile", &loc);
    assert_int_equal(loc.kind, MK_LOC_NESTED);
    mk_path_locate(s, "profile.stats.visits", &loc);
    assert_int_equal(loc.kind, MK_LOC_PATH);
    const char *dotted = "comments.0.votes";
    mk_path_locate(s, dotted, &loc);
    assert_int_equal(loc.kind, MK_LOC_CHILD);
    assert_string_equal(&dotted[loc.rest], "votes");
    mk_path_locate_deep(s, "comments.$[x].votes", &loc);
    assert_int_equal(loc.kind, MK_LOC_PATH);
    assert_ptr_equal(loc.owner, mk_schema_path_schema(mk_schema_path(s, "comments")));
    assert_string_equal(mk_schema_path_name(loc.path), "votes");
    mk_path_locate(s, "comments.1", &loc);
    assert_int_equal(loc.kind, MK_LOC_PATH);
    assert_true(loc.element);
    mk_path_locate(s, "tags.3", &loc);
    assert_int_equal(loc.kind, MK_LOC_PATH);
    assert_string_equal(mk_path_loc_name(&loc), "tags");
    mk_path_locate(s, "tags.x", &loc);
    assert_int_equal(loc.kind, MK_LOC_OPAQUE);
    mk_path_locate(s, "meta.a.b", &loc);
    assert_int_equal(loc.kind, MK_LOC_OPAQUE);
    mk_path_locate(s, "nope.x", &loc);
    assert_int_equal(loc.kind, MK_LOC_UNKNOWN);
    mk_path_locate(s, "scores.any", &loc);
    assert_int_equal(loc.kind, MK_LOC_PATH);
    assert_int_equal(mk_schema_path_kind(loc.path), MK_TYPE_NUMBER);
    mk_schema_destroy(s);
}

/* ---------- updates ---------- */

static void test_update_operators(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    update_ok(s, "{ name: 5, $inc: { age: '2' }, $set: { born: 0 } }",
              "{ $set: { born: new Date(0), name: '5' }, $inc: { age: 2 } }");
    update_ok(s, "{ $min: { age: '1' }, $max: { born: '2020-01-01' }, $mul: { dbl: '2' } }",
              "{ $min: { age: 1 }, $max: { born: ISODate('2020-01-01T00:00:00Z') }, $mul: { dbl: "
              "2.0 } }");
    /* $inc casts through the path's type, whatever it is */
    update_ok(s, "{ $inc: { name: 5, price: '0.5' } }",
              "{ $inc: { name: '5', price: NumberDecimal('0.5') } }");
    update_err(s, "{ $inc: { age: null } }", "CastError",
               "Cast to number failed for value \"null\" (type null) at path \"age\"");
    update_err(s, "{ $inc: { age: 'x' } }", "CastError",
               "Cast to Number failed for value \"x\" (type string) at path \"age\"");
    update_ok(s, "{ $pop: { tags: '1' } }", "{ $pop: { tags: 1 } }");
    update_err(s, "{ $pop: { tags: 'x' } }", "CastError",
               "Cast to number failed for value \"x\" (type string) at path \"tags\"");
    update_ok(s, "{ $unset: { name: '', nope: 1 }, $rename: { age: 'years' } }",
              "{ $unset: { name: '' }, $rename: { age: 'years' } }");
    update_ok(
        s,
        "{ $currentDate: { born: true, when: { $type: 'timestamp' } }, $bit: { age: { and: 5 } } }",
        "{ $currentDate: { born: true, when: { $type: 'timestamp' } }, "
        "$bit: { age: { and: 5 } } }");
    update_ok(s, "{ $currentDate: { born: 0 } }", "{ $currentDate: { born: false } }");
    update_err(s, "{ $inc: 5 }", "Error",
               "Invalid atomic update value for $inc. Expected an object, received number");
    update_err(s, "{ $set: 'x' }", "Error",
               "Invalid atomic update value for $set. Expected an object, received string");
    update_err(s, "{ $addToSet: { $each: [1] } }", "MongooseError",
               "Invalid update: Unexpected modifier \"$each\" as a key in operator. Did you mean "
               "something like { $addToSet: { fieldName: { $each: [...] } } }? Modifiers such as "
               "\"$each\", \"$or\", \"$and\", \"$in\" must appear under a valid field path.");
    /* an update that is left empty is allowed */
    update_ok(s, "{ nope: 1, $inc: { nada: 1 } }", "{}");
    mk_schema_destroy(s);
}

static void test_update_arrays(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    update_ok(s, "{ $push: { tags: 5, nums: '1' } }", "{ $push: { tags: '5', nums: 1 } }");
    /* pushing an array pushes its elements */
    update_ok(s, "{ $push: { tags: ['a', 1] }, $addToSet: { nums: ['2', 3] } }",
              "{ $push: { tags: { $each: ['a', '1'] } }, $addToSet: { nums: { $each: [2, 3] } } }");
    update_ok(s,
              "{ $push: { nums: { $each: ['1', 2], $slice: '-3', $sort: -1, $position: '0' } } }",
              "{ $push: { nums: { $each: [1, 2], $slice: -3, $sort: -1, $position: 0 } } }");
    update_ok(s, "{ $push: { nums: { $each: [], $slice: 2.7, $sort: 0 } } }",
              "{ $push: { nums: { $each: [], $slice: 2 } } }");
    update_err(s, "{ $push: { nums: { $each: [1], $position: 'x' } } }", "AssertionError",
               "The expression evaluated to a falsy value:\n\n  assert.ok(!isNaN(val))\n");
    update_ok(s, "{ $push: { matrix: ['1', '2'] } }", "{ $push: { matrix: [1, 2] } }");
    update_ok(s, "{ $addToSet: { caps: 'x' } }", "{ $addToSet: { caps: 'X' } }");
    update_ok(s, "{ $addToSet: { tags: { $each: [1, 'b'] } } }",
              "{ $addToSet: { tags: { $each: ['1', 'b'] } } }");
    /* sub-documents pushed with $each get their _id too */
    bson_t *pushed =
        update_cast(s, "{ $push: { comments: { $each: [{ votes: '1' }], $slice: 5 } } }", NULL,
                    NULL, __FILE__, __LINE__);
    assert_int_equal(type_at(pushed, "$push.comments.$each.0._id"), BSON_TYPE_OID);
    assert_int_equal(tu_get_int(pushed, "$push.comments.$each.0.votes"), 1);
    assert_int_equal(tu_get_int(pushed, "$push.comments.$slice"), 5);
    bson_destroy(pushed);
    /* whole arrays under $set, with Mongoose's element error */
    update_ok(s, "{ $set: { nums: ['1', 2], tags: 'solo' } }",
              "{ $set: { nums: [1, 2], tags: ['solo'] } }");
    update_err(s, "{ $set: { nums: [1, 'x'] } }", "CastError",
               "Cast to [Number] failed for value \"[ 1, 'x' ]\" (type string) at path \"nums.1\" "
               "because of \"CastError\"");
    update_err(
        s, "{ $set: { tags: [{ a: 1 }] } }", "CastError",
        "Cast to [string] failed for value \"[ { a: 1 } ]\" (type string) at path \"tags.0\" "
        "because of \"CastError\"");
    update_ok(s, "{ $set: { 'nums.1': '4', nums2: 1 } }", "{ $set: { 'nums.1': 4 } }");
    /* $pull: conditions cast like a filter on the elements */
    update_ok(s, "{ $pull: { nums: '3', tags: { $in: [1, 2] } } }",
              "{ $pull: { nums: 3, tags: { $in: ['1', '2'] } } }");
    update_ok(s, "{ $pull: { nums: { $gte: '6' } } }", "{ $pull: { nums: { $gte: 6 } } }");
    update_ok(s, "{ $pull: { comments: { votes: { $lt: '2' }, text: 5 } } }",
              "{ $pull: { comments: { votes: { $lt: 2 }, text: '5' } } }");
    update_err(s, "{ $pull: { comments: { votes: 'x' } } }", "CastError",
               "Cast to Number failed for value \"x\" (type string) at path \"votes\"");
    update_ok(s, "{ $pullAll: { nums: ['1', 2] } }", "{ $pullAll: { nums: [1, 2] } }");
    mk_schema_destroy(s);
}

static void test_update_subdocs(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    /* positional paths into document arrays */
    update_ok(s,
              "{ $set: { 'comments.0.votes': '5', 'comments.$.text': 1, 'comments.$[].when': 0,"
              "          'comments.$[e].votes': '2', 'comments.0.nope': 1 } }",
              "{ $set: { 'comments.0.votes': 5, 'comments.$.text': '1', 'comments.$[].when': new "
              "Date(0), 'comments.$[e].votes': 2 } }");
    update_ok(s, "{ $inc: { 'comments.$.votes': '1' } }", "{ $inc: { 'comments.$.votes': 1 } }");
    update_err(s, "{ $set: { 'comments.0.votes': 'x' } }", "CastError",
               "Cast to Number failed for value \"x\" (type string) at path \"votes\"");
    /* a pushed sub-document is cast and gets its _id */
    bson_t *out = update_cast(s, "{ $push: { comments: { text: 1, votes: '2', zz: 3 } } }", NULL,
                              NULL, __FILE__, __LINE__);
    assert_int_equal(type_at(out, "$push.comments._id"), BSON_TYPE_OID);
    assert_string_equal(tu_get_str(out, "$push.comments.text"), "1");
    assert_int_equal(tu_get_int(out, "$push.comments.votes"), 2);
    assert_int_equal(type_at(out, "$push.comments.zz"), BSON_TYPE_EOD);
    bson_destroy(out);
    out = update_cast(s, "{ $set: { comments: [{ votes: '1' }], author: { n: '4' } } }", NULL, NULL,
                      __FILE__, __LINE__);
    assert_int_equal(type_at(out, "$set.comments.0._id"), BSON_TYPE_OID);
    assert_int_equal(tu_get_int(out, "$set.comments.0.votes"), 1);
    assert_int_equal(type_at(out, "$set.author._id"), BSON_TYPE_OID);
    assert_int_equal(tu_get_int(out, "$set.author.n"), 4);
    bson_destroy(out);
    /* an _id that is given is kept */
    update_ok(s, "{ $set: { author: { _id: '5dd57639649ce0bd87750caa', name: 'x' } } }",
              "{ $set: { author: { _id: ObjectId('5dd57639649ce0bd87750caa'), name: 'x' } } }");
    update_ok(s, "{ $set: { 'author.n': '9' } }", "{ $set: { 'author.n': 9 } }");
    /* nested objects are walked path by path */
    update_ok(s, "{ $set: { profile: { bio: 5, zz: 1, stats: { visits: '2' } } } }",
              "{ $set: { profile: { bio: '5', stats: { visits: 2 } } } }");
    update_ok(s, "{ 'profile.stats.visits': '3' }", "{ $set: { 'profile.stats.visits': 3 } }");
    /* Mixed and below it: kept as is */
    update_ok(s, "{ meta: { a: '1' }, 'meta.b.c': 2 }",
              "{ $set: { meta: { a: '1' }, 'meta.b.c': 2 } }");
    /* maps */
    update_ok(s, "{ 'scores.math': '8' }", "{ $set: { 'scores.math': 8 } }");
    mk_schema_destroy(s);
}

static void test_update_strict(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    update_ok(s, "{ nope: 1, age: '1', 'name.first': 'x', $inc: { zz: 1 } }",
              "{ $set: { age: 1 } }");
    mk_cast_update_opts_t lax = {.has_strict = true, .strict = MK_STRICT_FALSE};
    update_opt(s, "{ nope: '1', $inc: { zz: '2' }, $set: { profile: { x: 1 } } }", &lax,
               "{ $set: { profile: { x: 1 }, nope: '1' }, $inc: { zz: 2 } }");
    update_err_opt(s, "{ $inc: { zz: 'x' } }", &lax, "CastError",
                   "Cast to number failed for value \"x\" (type string) at path \"zz\"");
    mk_cast_update_opts_t strictest = {.has_strict = true, .strict = MK_STRICT_THROW};
    update_err_opt(s, "{ nope: 1 }", &strictest, "StrictModeError",
                   "Field `nope` is not in schema and strict mode is set to throw.");
    update_err_opt(s, "{ $set: { profile: { zz: 1 } } }", &strictest, "StrictModeError",
                   "Field `profile.zz` is not in schema and strict mode is set to throw.");
    update_err_opt(s, "{ $set: { nada: { zz: 1 } } }", &strictest, "StrictModeError",
                   "Field `nada` is not in schema and strict mode is set to throw.");
    mk_schema_destroy(s);
    /* the schema's own option */
    s = schema(CHARACTER, "{ strict: false }");
    update_ok(s, "{ other: 1 }", "{ $set: { other: 1 } }");
    mk_schema_destroy(s);
    s = schema(CHARACTER, "{ strict: 'throw' }");
    update_err(s, "{ other: 1 }", "StrictModeError",
               "Field `other` is not in schema and strict mode is set to throw.");
    mk_schema_destroy(s);
}

static void test_update_immutable(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    update_ok(s, "{ code: 'a', name: 'b' }", "{ $set: { name: 'b' } }");
    update_ok(s, "{ $setOnInsert: { code: 5 } }", "{ $setOnInsert: { code: '5' } }");
    mk_cast_update_opts_t lax = {.has_strict = true, .strict = MK_STRICT_FALSE};
    update_opt(s, "{ code: 5 }", &lax, "{ $set: { code: '5' } }");
    mk_cast_update_opts_t strictest = {.has_strict = true, .strict = MK_STRICT_THROW};
    update_err_opt(s, "{ $set: { code: 'a' } }", &strictest, "StrictModeError",
                   "Field code is immutable and strict = 'throw'");
    /* an upsert moves immutable $set paths to $setOnInsert */
    mk_cast_update_opts_t up = {.upsert = true};
    update_opt(s, "{ code: 1, $set: { name: 2 } }", &up,
               "{ $set: { name: '2' }, $setOnInsert: { code: '1' } }");
    update_opt(s, "{ $setOnInsert: { age: '1' }, $set: { code: 'x' } }", &up,
               "{ $setOnInsert: { age: 1, code: 'x' } }");
    mk_schema_destroy(s);
}

static void test_update_timestamps(void **state)
{
    mk_schema_t *s = schema(CHARACTER, "{ timestamps: true }");
    const mk_schema_options_t *so = mk_schema_options(s);
    mk_cast_update_opts_t ts = {
        .created_at = so->created_at, .updated_at = so->updated_at, .now = 1000};
    update_opt(s, "{ name: 'x' }", &ts,
               "{ $set: { name: 'x', updatedAt: new Date(1000) }, "
               "$setOnInsert: { createdAt: new Date(1000) } }");
    /* given timestamps are replaced: createdAt is only ever set on insert */
    update_opt(
        s, "{ createdAt: 5, $set: { updatedAt: 7 }, $setOnInsert: { createdAt: 9 } }", &ts,
        "{ $set: { updatedAt: new Date(1000) }, $setOnInsert: { createdAt: new Date(1000) } }");
    /* $currentDate of updatedAt wins */
    update_opt(
        s, "{ $currentDate: { updatedAt: true } }", &ts,
        "{ $currentDate: { updatedAt: true }, $setOnInsert: { createdAt: new Date(1000) } }");
    /* createdAt is immutable: without the timestamps option it is stripped from $set */
    update_ok(s, "{ createdAt: 5, updatedAt: 6 }", "{ $set: { updatedAt: new Date(6) } }");
    /* a replacement gets both unless it has them */
    ts.overwrite = true;
    update_opt(s, "{ name: 1, nope: 2 }", &ts,
               "{ name: '1', updatedAt: new Date(1000), createdAt: new Date(1000) }");
    update_opt(s, "{ createdAt: 5, age: '3' }", &ts,
               "{ createdAt: new Date(5), age: 3, updatedAt: new Date(1000) }");
    mk_schema_destroy(s);
}

static void test_update_replacement(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    mk_cast_update_opts_t rep = {.overwrite = true};
    update_opt(s, "{ _id: '5dd57639649ce0bd87750caa', age: '3', nope: 1, profile: { bio: 2 } }",
               &rep,
               "{ _id: ObjectId('5dd57639649ce0bd87750caa'), age: 3, profile: { bio: '2' } }");
    update_err_opt(s, "{ age: 'x' }", &rep, "CastError",
                   "Cast to Number failed for value \"x\" (type string) at path \"age\"");
    mk_schema_destroy(s);
}

static void test_update_error_order(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    update_err(s, "{ $set: { age: 'a', born: 'b' } }", "CastError",
               "Cast to date failed for value \"b\" (type string) at path \"born\"");
    mk_schema_destroy(s);
}

static void test_update_setters_context(void **state)
{
    mk_schema_t *s = schema("{ n: Number }", NULL);
    mk_error_t err = {0};
    int seen = 0;
    assert_int_equal(mk_schema_path_setter(s, "n", query_probe, &seen, &err), MK_OK);
    mk_fn_ctx_t ctx = {.query = (mk_query_t *)0x1};
    bson_t *out = update_cast(s, "{ n: '1' }", NULL, &ctx, __FILE__, __LINE__);
    tu_assert_bson_eq(out, "{ $set: { n: 1 } }");
    assert_int_equal(seen, 1);
    bson_destroy(out);
    /* setters on $set, $push elements, $inc, $min */
    assert_int_equal(mk_schema_path_setter(s, "n", plus_one, NULL, &err), MK_OK);
    update_ok(s, "{ $set: { n: 1 }, $inc: { n: 1 }, $min: { n: 1 } }",
              "{ $set: { n: 2 }, $inc: { n: 2 }, $min: { n: 2 } }");
    mk_schema_destroy(s);
}

static void test_touched_paths(void **state)
{
    mk_schema_t *s = schema(KITCHEN, NULL);
    bson_t *out = update_cast(s,
                              "{ name: 'a', $set: { profile: { bio: 'b', stats: { visits: 1 } } },"
                              "  $unset: { age: 1 }, $push: { nums: { $each: [1] } },"
                              "  $inc: { 'comments.0.votes': 1 } }",
                              NULL, NULL, __FILE__, __LINE__);
    mk_update_paths_t ps = {0};
    mk_error_t err = {0};
    assert_int_equal(mk_update_touched_paths(s, out, &ps, &err), MK_OK);
    const char *want[][2] = {{"$set", "profile.bio"}, {"$set", "profile.stats.visits"},
                             {"$set", "name"},        {"$unset", "age"},
                             {"$push", "nums"},       {"$inc", "comments.0.votes"}};
    assert_int_equal(ps.count, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(ps.items[i].op, want[i][0]);
        assert_string_equal(ps.items[i].path, want[i][1]);
    }
    assert_int_equal(ps.items[4].value.value_type, BSON_TYPE_DOCUMENT); /* { $each: [1] } */
    assert_int_equal(ps.items[0].value.value_type, BSON_TYPE_UTF8);
    mk_update_paths_destroy(&ps);
    bson_destroy(out);
    mk_schema_destroy(s);
}

/* ---------- the cast plan, the writer and the reader ---------- */

/* The per-schema plan follows changes made after a first cast: setters registered later,
 * paths added (with and without the schema's cache being cleared), a path replaced. */
static void test_plan_follows_schema_changes(void **state)
{
    mk_error_t err = {0};
    mk_schema_t *s = schema("{ name: String, n: Number }", NULL);
    filter_ok(s, "{ name: 'AbC', n: '4' }", "{ name: 'AbC', n: 4 }");
    update_ok(s, "{ name: 'AbC' }", "{ $set: { name: 'AbC' } }");
    assert_int_equal(mk_schema_path_setter(s, "name", to_lower, NULL, &err), MK_OK);
    filter_ok(s, "{ name: 'AbC' }", "{ name: 'abc' }");
    update_ok(s, "{ name: 'AbC' }", "{ $set: { name: 'abc' } }");
    /* mk_schema_add clears the cache */
    assert_int_equal(mk_schema_add(s, "{ extra: Number }", &err), MK_OK);
    filter_ok(s, "{ extra: '5' }", "{ extra: 5 }");
    /* mk_schema_add_schema appends a path, and replaces one in place */
    mk_schema_t *child = schema("{ x: Number }", NULL);
    assert_int_equal(mk_schema_add_schema(s, "sub", child, false, NULL, &err), MK_OK);
    filter_ok(s, "{ 'sub.x': '7' }", "{ 'sub.x': 7 }");
    update_ok(s, "{ $inc: { 'sub.x': '2' } }", "{ $inc: { 'sub.x': 2 } }");
    assert_int_equal(mk_schema_add_schema(s, "n", child, false, NULL, &err), MK_OK);
    filter_ok(s, "{ 'n.x': '3' }", "{ 'n.x': 3 }");
    filter_err(s, "{ n: 'x' }", "CastError",
               "Cast to Embedded failed for value \"x\" (type string) at path \"n\" for model "
               "\"Character\"");
    mk_schema_destroy(child);
    mk_schema_destroy(s);
}

/* Results larger than the writer's stack buffer, and updates with many top-level keys. */
static void test_large_casts(void **state)
{
    mk_schema_t *s = schema("{ name: String, n: Number, tags: [String] }", "{ strict: false }");
    char big[1200], in[1400], want[1400];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    snprintf(in, sizeof in, "{ name: '%s', n: '12', tags: { $in: ['a', 1] } }", big);
    snprintf(want, sizeof want, "{ name: '%s', n: 12, tags: { $in: ['a', '1'] } }", big);
    filter_ok(s, in, want);
    /* 40 sugar keys and an operator: merged into $set in order, $inc after */
    bson_t *u = bson_new();
    bson_t *expect_set = bson_new();
    for (unsigned i = 0; i < 40; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%u", i);
        BSON_APPEND_INT32(u, k, (int32_t)i);
        BSON_APPEND_INT32(expect_set, k, (int32_t)i);
    }
    bson_t inc;
    BSON_APPEND_DOCUMENT_BEGIN(u, "$inc", &inc);
    BSON_APPEND_UTF8(&inc, "n", "3");
    bson_append_document_end(u, &inc);
    BSON_APPEND_INT32(u, "name", 5);
    BSON_APPEND_UTF8(expect_set, "name", "5");
    mk_error_t err = {0};
    bson_t out = BSON_INITIALIZER;
    assert_int_equal(mk_cast_update(s, "Character", u, NULL, NULL, &out, &err), MK_OK);
    bson_t *expect = bson_new();
    BSON_APPEND_DOCUMENT(expect, "$set", expect_set);
    bson_t einc;
    BSON_APPEND_DOCUMENT_BEGIN(expect, "$inc", &einc);
    BSON_APPEND_INT32(&einc, "n", 3);
    bson_append_document_end(expect, &einc);
    assert_true(bson_equal(&out, expect));
    bson_destroy(expect);
    bson_destroy(expect_set);
    bson_destroy(&out);
    bson_destroy(u);
    mk_schema_destroy(s);
}

/* A value kept as it is comes out with exactly its bytes, whatever its type. */
static void test_kept_values_exact(void **state)
{
    mk_schema_t *s = schema(CHARACTER, NULL);
    bson_t *f = bson_new(), scope, sub;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, "5f0c2b9a8e4d3c2b1a0f9e8d");
    bson_decimal128_t dec;
    bson_decimal128_from_string("12.50", &dec);
    const uint8_t bytes[] = {1, 2, 3, 0, 255};
    BSON_APPEND_DOUBLE(f, "u_double", -0.5);
    BSON_APPEND_UTF8(f, "u_utf8", "héllo");
    BSON_APPEND_DOCUMENT_BEGIN(f, "u_doc", &sub);
    BSON_APPEND_INT32(&sub, "a", 1);
    bson_append_document_end(f, &sub);
    BSON_APPEND_ARRAY_BEGIN(f, "u_array", &sub);
    BSON_APPEND_UTF8(&sub, "0", "x");
    bson_append_array_end(f, &sub);
    bson_append_binary(f, "u_bin", -1, BSON_SUBTYPE_BINARY, bytes, sizeof bytes);
    bson_append_binary(f, "u_bin_old", -1, BSON_SUBTYPE_BINARY_DEPRECATED, bytes, sizeof bytes);
    BSON_APPEND_UNDEFINED(f, "u_undefined");
    BSON_APPEND_OID(f, "u_oid", &oid);
    BSON_APPEND_BOOL(f, "u_bool", true);
    BSON_APPEND_DATE_TIME(f, "u_date", -86400000);
    BSON_APPEND_NULL(f, "u_null");
    BSON_APPEND_REGEX(f, "u_regex", "^a.c$", "im");
    bson_append_dbpointer(f, "u_dbpointer", -1, "coll", &oid);
    BSON_APPEND_CODE(f, "u_code", "function () { return 1; }");
    BSON_APPEND_SYMBOL(f, "u_symbol", "sym");
    bson_init(&scope);
    BSON_APPEND_INT32(&scope, "x", 1);
    BSON_APPEND_CODE_WITH_SCOPE(f, "u_codewscope", "x + 1", &scope);
    bson_destroy(&scope);
    BSON_APPEND_INT32(f, "u_int32", -7);
    BSON_APPEND_TIMESTAMP(f, "u_timestamp", 1700000000, 42);
    BSON_APPEND_INT64(f, "u_int64", INT64_MIN);
    BSON_APPEND_DECIMAL128(f, "u_decimal", &dec);
    BSON_APPEND_MINKEY(f, "u_minkey");
    BSON_APPEND_MAXKEY(f, "u_maxkey");
    mk_error_t err = {0};
    bson_t out = BSON_INITIALIZER;
    assert_int_equal(mk_cast_filter(s, "Character", f, NULL, &out, &err), MK_OK);
    assert_int_equal(out.len, f->len);
    assert_memory_equal(bson_get_data(&out), bson_get_data(f), f->len);
    bson_destroy(&out);
    bson_destroy(f);
    mk_schema_destroy(s);
}

/* mk_cast_for_query, the value form of castForQuery that the query layer may call. */
static void test_cast_for_query_value(void **state)
{
    mk_schema_t *s = schema(CHARACTER, NULL);
    mk_error_t err = {0};
    mk_cast_filter_opts_t fo = {0};
    mk_qcast_t q = {.root = s, .model = "Character", .fopts = &fo, .err = &err};
    mk_path_loc_t loc;
    mk_path_locate(s, "age", &loc);
    bson_value_t in = {.value_type = BSON_TYPE_UTF8}, out;
    in.value.v_utf8.str = "5";
    in.value.v_utf8.len = 1;
    assert_int_equal(mk_cast_for_query(&q, &loc, "$gt", &in, &out), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_INT32);
    assert_int_equal(out.value.v_int32, 5);
    bson_value_destroy(&out);
    in.value_type = BSON_TYPE_UNDEFINED;
    assert_int_equal(mk_cast_for_query(&q, &loc, NULL, &in, &out), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_UNDEFINED);
    in.value_type = BSON_TYPE_UTF8;
    in.value.v_utf8.str = "x";
    assert_int_equal(mk_cast_for_query(&q, &loc, NULL, &in, &out), MK_ERR);
    assert_string_equal(err.message, "Cast to Number failed for value \"x\" (type string) at path "
                                     "\"age\" for model \"Character\"");
    bson_value_destroy(&out);
    mk_path_locate(s, "name", &loc);
    assert_int_equal(mk_cast_for_query(&q, &loc, "$in", &in, &out), MK_OK);
    assert_int_equal(out.value_type, BSON_TYPE_ARRAY);
    bson_t arr;
    assert_true(bson_init_static(&arr, out.value.v_doc.data, out.value.v_doc.data_len));
    tu_assert_bson_eq(&arr, "{ '0': 'x' }");
    bson_value_destroy(&out);
    mk_schema_destroy(s);
}

/* Corrupt BSON: a corrupt sub-document is an error; reading stops at a corrupt element (what
 * bson_iter_next does), keeping what came before. */
static void test_corrupt_input(void **state)
{
    mk_schema_t *s = schema(CHARACTER, NULL);
    mk_error_t err = {0};
    bson_t *good = tu_bson("{ age: { $gt: 1 } }");
    uint8_t *buf = bson_malloc(good->len);
    memcpy(buf, bson_get_data(good), good->len);
    buf[good->len - 2] = 1; /* the sub-document's final NUL */
    bson_t bad, out;
    assert_true(bson_init_static(&bad, buf, good->len));
    bson_init(&out);
    assert_int_equal(mk_cast_filter(s, "Character", &bad, NULL, &out, &err), MK_ERR);
    assert_string_equal(err.kind, "InvalidBSON");
    assert_string_equal(err.message, "corrupt BSON in a query filter");
    bson_destroy(&out);
    bson_free(buf);
    bson_destroy(good);

    good = tu_bson("{ age: '4', rank: 'x', name: 'y' }");
    buf = bson_malloc(good->len);
    memcpy(buf, bson_get_data(good), good->len);
    /* rank's string length: after the header (4), age (1 + 4 + 4 + 2), the type and key */
    size_t at = 4 + 1 + 4 + 4 + 2 + 1 + 5;
    assert_int_equal(buf[at], 2); /* "x" and its NUL */
    buf[at] = 200;
    assert_true(bson_init_static(&bad, buf, good->len));
    bson_init(&out);
    assert_int_equal(mk_cast_filter(s, "Character", &bad, NULL, &out, &err), MK_OK);
    tu_assert_bson_eq(&out, "{ age: 4 }");
    bson_destroy(&out);
    bson_init(&out);
    assert_int_equal(mk_cast_update(s, "Character", &bad, NULL, NULL, &out, &err), MK_OK);
    tu_assert_bson_eq(&out, "{ $set: { age: 4 } }");
    bson_destroy(&out);
    bson_free(buf);
    bson_destroy(good);
    mk_schema_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_book_filter_casting),
        cmocka_unit_test(test_book_update_casting),
        cmocka_unit_test(test_strict_query),
        cmocka_unit_test(test_filter_scalars),
        cmocka_unit_test(test_filter_operators),
        cmocka_unit_test(test_filter_arrays),
        cmocka_unit_test(test_filter_subdocs),
        cmocka_unit_test(test_filter_without_model),
        cmocka_unit_test(test_filter_error_order),
        cmocka_unit_test(test_sanitize_filter),
        cmocka_unit_test(test_filter_setters),
        cmocka_unit_test(test_setter_order),
        cmocka_unit_test(test_setter_undefined),
        cmocka_unit_test(test_builtin_setters),
        cmocka_unit_test(test_named_and_child_setters),
        cmocka_unit_test(test_setters_cast),
        cmocka_unit_test(test_locate),
        cmocka_unit_test(test_update_operators),
        cmocka_unit_test(test_update_arrays),
        cmocka_unit_test(test_update_subdocs),
        cmocka_unit_test(test_update_strict),
        cmocka_unit_test(test_update_immutable),
        cmocka_unit_test(test_update_timestamps),
        cmocka_unit_test(test_update_replacement),
        cmocka_unit_test(test_update_error_order),
        cmocka_unit_test(test_update_setters_context),
        cmocka_unit_test(test_touched_paths),
        cmocka_unit_test(test_plan_follows_schema_changes),
        cmocka_unit_test(test_large_casts),
        cmocka_unit_test(test_kept_values_exact),
        cmocka_unit_test(test_corrupt_input),
        cmocka_unit_test(test_cast_for_query_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
