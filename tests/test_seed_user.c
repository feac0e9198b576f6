/* The seed 000 User schema (a DDD backend on Mongoose: userSchema.ts) translated to meerkat and
 * tested: construction and casting, defaults, Mongoose's validation messages, timestamps, the
 * toJSON transform that renames _id to id and drops fields, the displayName virtual, the isAdmin
 * method, the findByEmail static, save then read back and hydrate, and the unique email index
 * (E11000). JavaScript functions are C callbacks; Model.findOne is part 2, so findByEmail and the
 * read-backs use the raw `find` command and hydrate. Two extensions beyond the seed's text are
 * marked NOTE: a pre('save') password hash and a `match` on email. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "odm_helpers.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <meerkat/odm.h>

/* ---------- helpers ---------- */

/* Milliseconds since the epoch, as Date.now(). */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Lets the wall clock move on, so that a later timestamp differs. */
static void pause_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* A string of n copies of c (free()). */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* The index named `name` of a collection (listIndexes), or NULL. */
static bson_t *index_named(mk_conn_t *conn, const char *coll, const char *name)
{
    mk_error_t err = {0};
    bson_t *cmd = mk_bson(&err, "{ listIndexes: ? }", MK_STR(coll));
    assert_non_null(cmd);
    bson_t reply = BSON_INITIALIZER;
    int rc = mk_conn_command(conn, cmd, &reply, &err);
    bson_destroy(cmd);
    if (rc != MK_OK) {
        bson_destroy(&reply);
        fail_msg("listIndexes on %s: [%s] %s", coll, err.kind, err.message);
    }
    bson_t *found = NULL;
    bson_iter_t it, batch;
    if (bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "cursor.firstBatch", &batch) &&
        BSON_ITER_HOLDS_ARRAY(&batch) && bson_iter_recurse(&batch, &it)) {
        while (!found && bson_iter_next(&it)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) continue;
            const uint8_t *data = NULL;
            uint32_t len = 0;
            bson_iter_document(&it, &len, &data);
            bson_t spec;
            bson_iter_t field;
            if (bson_init_static(&spec, data, len) && bson_iter_init_find(&field, &spec, "name") &&
                BSON_ITER_HOLDS_UTF8(&field) && strcmp(bson_iter_utf8(&field, NULL), name) == 0)
                found = bson_copy(&spec);
        }
    }
    bson_destroy(&reply);
    return found;
}

/* ---------- the seed's userSchema, in C ---------- */

/* const userSchema = new Schema<IUserDocument>({ ... }, { timestamps: true, toJSON: { ... } });
 * EMAIL_EXTRA adds options to `email` (for the `match` variant). */
#define USER_DEFINITION(EMAIL_EXTRA)                                                               \
    "{\n"                                                                                          \
    "  email: { type: String, required: true, unique: true, lowercase: true, trim: true,\n"        \
    "           index: true" EMAIL_EXTRA " },\n"                                                   \
    "  name: { type: String, required: true, trim: true, minlength: 2, maxlength: 100 },\n"        \
    "  passwordHash: { type: String, required: true, select: false },\n"                           \
    "  role: { type: String, enum: ['user', 'admin'], default: 'user' },\n"                        \
    "  profile: {\n"                                                                               \
    "    avatar: String,\n"                                                                        \
    "    bio: { type: String, maxlength: 500 },\n"                                                 \
    "  },\n"                                                                                       \
    "  preferences: {\n"                                                                           \
    "    notifications: { type: Boolean, default: true },\n"                                       \
    "    theme: { type: String, enum: ['light', 'dark'], default: 'light' },\n"                    \
    "  },\n"                                                                                       \
    "}"
/* The transform is a C function (user_to_json): text cannot hold functions. */
#define USER_OPTIONS "{ timestamps: true, toJSON: { virtuals: true } }"

/* transform: (_, ret) => {
 *   ret.id = ret._id.toString();
 *   delete ret._id;
 *   delete ret.__v;
 *   delete ret.passwordHash;
 *   return ret;
 * }
 * Assigning ret.id keeps the place of an existing `id` (the virtual) or appends it. */
static int user_to_json(mk_doc_t *doc, const bson_t *ret, bson_t *out, void *ud, mk_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, ret, "_id") || !BSON_ITER_HOLDS_OID(&it))
        return mk_error_set(err, 0, "TypeError",
                            "Cannot read properties of undefined (reading 'toString')");
    char id[25];
    bson_oid_to_string(bson_iter_oid(&it), id);
    bool wrote_id = false;
    bool ok = bson_iter_init(&it, ret);
    while (ok && bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "_id") == 0 || strcmp(key, "__v") == 0 || strcmp(key, "passwordHash") == 0)
            continue;
        if (strcmp(key, "id") == 0) {
            ok = BSON_APPEND_UTF8(out, "id", id);
            wrote_id = true;
        } else {
            ok = bson_append_iter(out, key, -1, &it);
        }
    }
    if (ok && !wrote_id) ok = BSON_APPEND_UTF8(out, "id", id);
    return ok ? MK_OK
              : mk_error_set(err, MK_CODE_BSON_OBJECT_TOO_LARGE, "Error", "toJSON too large");
}

/* userSchema.virtual('displayName').get(function () { return this.name; }); */
static int display_name(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    bson_value_t name;
    if (!mk_doc_get(doc, "name", &name)) {
        out->value_type = BSON_TYPE_UNDEFINED; /* this.name is undefined */
        return MK_OK;
    }
    bson_value_copy(&name, out);
    return MK_OK;
}

/* userSchema.methods.isAdmin = function (): boolean { return this.role === 'admin'; };
 * args: bool * receiving the result. */
static int is_admin(mk_doc_t *doc, void *args, void *ud, mk_error_t *err)
{
    const char *role = mk_doc_get_str(doc, "role");
    *(bool *)args = role && strcmp(role, "admin") == 0;
    return MK_OK;
}

/* userSchema.statics.findByEmail = function (email: string) {
 *   return this.findOne({ email: email.toLowerCase() });
 * };
 * NOTE: findOne is part 2; this runs the `find` command and hydrates the document, as findOne
 * does. found is NULL when no user has that email. */
typedef struct find_by_email_args {
    const char *email;
    mk_doc_t *found;
} find_by_email_args_t;

static int find_by_email(mk_model_t *model, void *args, void *ud, mk_error_t *err)
{
    find_by_email_args_t *a = args;
    a->found = NULL;
    char *lower = bson_strdup(a->email);
    if (!lower) return mk_error_nomem(err);
    for (char *p = lower; *p; p++) *p = (char)tolower((unsigned char)*p);
    bson_t *cmd = mk_bson(err, "{ find: ?, filter: { email: ? }, limit: 1 }",
                          MK_STR(mk_model_collection_name(model)), MK_STR(lower));
    bson_free(lower);
    if (!cmd) return MK_ERR;
    bson_t reply = BSON_INITIALIZER;
    int rc = mk_conn_command(mk_model_conn(model), cmd, &reply, err);
    bson_destroy(cmd);
    bson_iter_t it, first;
    if (rc == MK_OK && bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "cursor.firstBatch.0", &first) &&
        BSON_ITER_HOLDS_DOCUMENT(&first)) {
        const uint8_t *data = NULL;
        uint32_t len = 0;
        bson_iter_document(&first, &len, &data);
        a->found = mk_doc_hydrate_data(model, data, len, err);
        if (!a->found) rc = MK_ERR;
    }
    bson_destroy(&reply);
    return rc;
}

/* The seed's schema with its virtual, method, static, transform and indexes (the text index
 * left out: see seed_user_text_index). */
static mk_schema_t *user_schema(const char *definition)
{
    mk_schema_t *schema = schema_ok(definition, USER_OPTIONS);
    mk_error_t err = {0};
    assert_ok(mk_schema_transform(schema, "toJSON", user_to_json, NULL, &err), &err);
    /* userSchema.index({ createdAt: -1 }); */
    assert_ok(mk_schema_index(schema, "{ createdAt: -1 }", NULL, &err), &err);
    assert_ok(mk_schema_virtual(schema, "displayName", display_name, NULL, NULL, &err), &err);
    assert_ok(mk_schema_method(schema, "isAdmin", is_admin, NULL, &err), &err);
    assert_ok(mk_schema_static(schema, "findByEmail", find_by_email, NULL, &err), &err);
    return schema;
}

/* export const UserModel = model<IUserDocument>('User', userSchema); */
static mk_model_t *user_model(mk_conn_t *conn)
{
    return compile_ok(conn, "User", user_schema(USER_DEFINITION("")));
}

/* A valid user, as CreateUserCommand builds it (passwordHash computed before). */
static mk_doc_t *new_ada(mk_model_t *User)
{
    mk_error_t err = {0};
    return doc_ok(mk_doc_new(User, &err,
                             "{ email: 'ada@example.com', name: 'Ada Lovelace',"
                             "  passwordHash: 'fnv1a$0123456789abcdef' }"),
                  &err);
}

/* ---------- the schema ---------- */

/* The definition parses into the paths Mongoose has: the nested `profile` and `preferences`,
 * the implicit _id and the timestamps; the options are kept (select: false is applied by
 * queries, part 2). (seed 000, Mongoose Schema Definition) */
static void seed_user_schema_paths_and_options(void **state)
{
    mk_schema_t *schema = user_schema(USER_DEFINITION(""));
    assert_int_equal(mk_schema_path_type(schema, "email"), MK_TYPE_STRING);
    assert_int_equal(mk_schema_path_type(schema, "name"), MK_TYPE_STRING);
    assert_int_equal(mk_schema_path_type(schema, "passwordHash"), MK_TYPE_STRING);
    assert_int_equal(mk_schema_path_type(schema, "role"), MK_TYPE_STRING);
    assert_int_equal(mk_schema_path_type(schema, "profile"), MK_TYPE_NESTED);
    assert_int_equal(mk_schema_path_type(schema, "profile.avatar"), MK_TYPE_STRING);
    assert_int_equal(mk_schema_path_type(schema, "profile.bio"), MK_TYPE_STRING);
    assert_int_equal(mk_schema_path_type(schema, "preferences"), MK_TYPE_NESTED);
    assert_int_equal(mk_schema_path_type(schema, "preferences.notifications"), MK_TYPE_BOOLEAN);
    assert_int_equal(mk_schema_path_type(schema, "preferences.theme"), MK_TYPE_STRING);
    assert_int_equal(mk_schema_path_type(schema, "_id"), MK_TYPE_OBJECTID);
    assert_int_equal(mk_schema_path_type(schema, "createdAt"), MK_TYPE_DATE);
    assert_int_equal(mk_schema_path_type(schema, "updatedAt"), MK_TYPE_DATE);
    assert_int_equal(mk_schema_path_type(schema, "displayName"), 0); /* a virtual, not a path */

    bson_iter_t it;
    const mk_schema_path_t *hash = mk_schema_path(schema, "passwordHash");
    assert_non_null(hash);
    assert_true(mk_schema_path_option(hash, "select", &it));
    assert_true(BSON_ITER_HOLDS_BOOL(&it));
    assert_false(bson_iter_bool(&it));
    const mk_schema_path_t *email = mk_schema_path(schema, "email");
    assert_non_null(email);
    assert_true(mk_schema_path_option(email, "unique", &it));
    assert_true(bson_iter_as_bool(&it));
    assert_true(mk_schema_path_option(email, "lowercase", &it));
    assert_true(bson_iter_as_bool(&it));

    const mk_schema_options_t *opts = mk_schema_options(schema);
    assert_string_equal(opts->created_at, "createdAt");
    assert_string_equal(opts->updated_at, "updatedAt");
    assert_string_equal(opts->version_key, "__v");
    assert_non_null(opts->to_json);
    tu_assert_bson_eq(opts->to_json, "{ virtuals: true }");
    mk_schema_destroy(schema);
}

/* userSchema.index({ createdAt: -1 }) and `unique: true` on email: compiling the model builds
 * them (autoIndex). (seed 000, Mongoose Schema Definition) */
static void seed_user_model_builds_indexes(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    assert_string_equal(mk_model_collection_name(User), "users");
    bson_t *email = index_named(conn, "users", "email_1");
    assert_non_null(email);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, email, "unique"));
    assert_true(bson_iter_as_bool(&it));
    assert_true(bson_iter_init_find(&it, email, "key"));
    bson_destroy(email);
    bson_t *created = index_named(conn, "users", "createdAt_-1");
    assert_non_null(created);
    bson_destroy(created);
    assert_null(index_named(conn, "users", "name_1"));
    mk_conn_close(conn);
}

/* userSchema.index({ name: 'text', email: 'text' });
 * (seed 000, Mongoose Schema Definition)
 * NOTE: the engine has no text indexes yet ("text indexes are not supported yet"), so the models
 * in this file are compiled without this index; here the schema declares it and lists it. */
static void seed_user_text_index(void **state)
{
    mk_schema_t *schema = user_schema(USER_DEFINITION(""));
    mk_error_t err = {0};
    assert_ok(mk_schema_index(schema, "{ name: 'text', email: 'text' }", NULL, &err), &err);
    bson_t *indexes = mk_schema_indexes(schema, &err);
    assert_non_null(indexes);
    assert_int_equal(bson_count_keys(indexes), 3);
    bson_iter_t it, key;
    assert_true(bson_iter_init(&it, indexes));
    assert_true(bson_iter_find_descendant(&it, "2.0", &key));
    assert_true(BSON_ITER_HOLDS_DOCUMENT(&key));
    const uint8_t *data = NULL;
    uint32_t len = 0;
    bson_iter_document(&key, &len, &data);
    bson_t pattern;
    assert_true(bson_init_static(&pattern, data, len));
    tu_assert_bson_eq(&pattern, "{ name: 'text', email: 'text' }");
    bson_destroy(indexes);
    mk_schema_destroy(schema);
}

/* ---------- construction, casting, defaults ---------- */

/* lowercase + trim on email, trim on name, role default 'user', preferences defaults
 * (notifications: true, theme: 'light'), the profile sub-object, unknown fields dropped (strict),
 * Boolean casting of 'no'. Timestamps are not set before save. (seed 000) */
static void seed_user_construction_casts_and_defaults(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *user = doc_ok(mk_doc_new(User, &err,
                                       "{ email: '  Ada.Lovelace@Example.COM ',"
                                       "  name: '  Ada Lovelace ', passwordHash: 'h',"
                                       "  profile: { bio: 'Mathematician' },"
                                       "  sessionToken: 'not in the schema' }"),
                            &err);
    assert_true(mk_doc_is_new(user));
    assert_doc_str(user, "email", "ada.lovelace@example.com");
    assert_doc_str(user, "name", "Ada Lovelace");
    assert_doc_str(user, "role", "user");
    assert_doc_str(user, "profile.bio", "Mathematician");
    bson_value_t v;
    assert_false(mk_doc_get(user, "profile.avatar", &v));
    assert_true(mk_doc_get(user, "preferences.notifications", &v));
    assert_int_equal(v.value_type, BSON_TYPE_BOOL);
    assert_true(v.value.v_bool);
    assert_doc_str(user, "preferences.theme", "light");
    assert_false(mk_doc_get(user, "sessionToken", &v));
    assert_false(mk_doc_get(user, "createdAt", &v));
    assert_false(mk_doc_get(user, "updatedAt", &v));
    assert_non_null(mk_doc_oid(user));
    assert_ok(mk_doc_validate(user, &err), &err);
    mk_doc_destroy(user);

    user = doc_ok(mk_doc_new(User, &err,
                             "{ email: 'a@b.co', name: 'Al', passwordHash: 'h', role: 'admin',"
                             "  preferences: { notifications: 'no', theme: 'dark' } }"),
                  &err);
    assert_doc_str(user, "role", "admin");
    assert_true(mk_doc_get(user, "preferences.notifications", &v));
    assert_int_equal(v.value_type, BSON_TYPE_BOOL);
    assert_false(v.value.v_bool);
    assert_doc_str(user, "preferences.theme", "dark");
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* ---------- validation ---------- */

/* required: true on email, name and passwordHash; a string of spaces is trimmed to '' and ''
 * does not satisfy `required` for a String. (seed 000) */
static void seed_user_required_paths(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *user = doc_ok(mk_doc_new(User, &err, "{}"), &err);
    assert_int_equal(mk_doc_validate(user, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    /* Mongoose lists missing required paths in reverse schema order (Schema#requiredPaths
     * walks the paths backwards) */
    assert_string_equal(err.message,
                        "User validation failed: passwordHash: Path `passwordHash` is required., "
                        "name: Path `name` is required., email: Path `email` is required.");
    assert_int_equal(mk_error_detail_count(&err), 3);
    assert_detail(&err, "email", "ValidatorError", "required", "Path `email` is required.");
    assert_detail(&err, "name", "ValidatorError", "required", "Path `name` is required.");
    assert_detail(&err, "passwordHash", "ValidatorError", "required",
                  "Path `passwordHash` is required.");
    mk_error_clear(&err);
    assert_int_equal(mk_doc_save(user, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_int_equal(count_in(conn, "users"), 0);
    mk_doc_destroy(user);

    user = doc_ok(
        mk_doc_new(User, &err, "{ email: '   ', name: 'Ada Lovelace', passwordHash: 'h' }"), &err);
    assert_doc_str(user, "email", "");
    assert_int_equal(mk_doc_validate(user, &err), MK_ERR);
    assert_string_equal(err.message, "User validation failed: email: Path `email` is required.");
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* minlength / maxlength on name (after trim), enum on role and preferences.theme, every failing
 * path in one ValidationError. (seed 000) */
static void seed_user_validator_messages(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *user = doc_ok(mk_doc_new(User, &err,
                                       "{ email: 'ada@example.com', name: ' A ', passwordHash: 'h',"
                                       "  role: 'superuser', preferences: { theme: 'blue' } }"),
                            &err);
    assert_int_equal(mk_doc_save(user, &err), MK_ERR);
    assert_string_equal(err.kind, "ValidationError");
    assert_string_equal(err.message,
                        "User validation failed: name: Path `name` (`A`) is shorter than the "
                        "minimum allowed length (2)., role: `superuser` is not a valid enum value "
                        "for path `role`., preferences.theme: `blue` is not a valid enum value for "
                        "path `preferences.theme`.");
    assert_int_equal(mk_error_detail_count(&err), 3);
    assert_detail(&err, "name", "ValidatorError", "minlength",
                  "Path `name` (`A`) is shorter than the minimum allowed length (2).");
    assert_detail(&err, "role", "ValidatorError", "enum",
                  "`superuser` is not a valid enum value for path `role`.");
    assert_detail(&err, "preferences.theme", "ValidatorError", "enum",
                  "`blue` is not a valid enum value for path `preferences.theme`.");
    assert_int_equal(count_in(conn, "users"), 0);

    /* fixing the paths makes it valid */
    assert_ok(mk_doc_set(user, "name", MK_STR("Ada"), &err), &err);
    assert_ok(mk_doc_set(user, "role", MK_STR("admin"), &err), &err);
    assert_ok(mk_doc_set(user, "preferences.theme", MK_STR("dark"), &err), &err);
    assert_ok(mk_doc_save(user, &err), &err);
    mk_doc_destroy(user);

    /* name: maxlength 100 */
    char *long_name = repeat('n', 101);
    user = doc_ok(mk_doc_new(User, &err, "{ email: 'b@example.com', name: ?, passwordHash: 'h' }",
                             MK_STR(long_name)),
                  &err);
    assert_int_equal(mk_doc_validate(user, &err), MK_ERR);
    char expect[512];
    snprintf(expect, sizeof expect,
             "Path `name` (`%s`) is longer than the maximum allowed length (100).", long_name);
    assert_detail(&err, "name", "ValidatorError", "maxlength", expect);
    assert_int_equal(mk_error_detail_count(&err), 1);
    long_name[100] = '\0';
    assert_ok(mk_doc_set(user, "name", MK_STR(long_name), &err), &err);
    assert_ok(mk_doc_validate(user, &err), &err);
    free(long_name);
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* profile.bio: maxlength 500. (seed 000) */
static void seed_user_profile_bio_maxlength(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    char *bio = repeat('b', 501);
    mk_doc_t *user = doc_ok(mk_doc_new(User, &err,
                                       "{ email: 'ada@example.com', name: 'Ada', passwordHash: 'h',"
                                       "  profile: { avatar: 'ada.png', bio: ? } }",
                                       MK_STR(bio)),
                            &err);
    assert_int_equal(mk_doc_validate(user, &err), MK_ERR);
    assert_int_equal(mk_error_detail_count(&err), 1);
    char *expect = NULL;
    assert_true(asprintf(&expect,
                         "Path `profile.bio` (`%s`) is longer than the maximum allowed length "
                         "(500).",
                         bio) > 0);
    assert_detail(&err, "profile.bio", "ValidatorError", "maxlength", expect);
    free(expect);

    bio[500] = '\0'; /* exactly 500 passes */
    assert_ok(mk_doc_set(user, "profile.bio", MK_STR(bio), &err), &err);
    assert_ok(mk_doc_validate(user, &err), &err);
    free(bio);
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* ---------- timestamps ---------- */

/* { timestamps: true }: createdAt and updatedAt (the same time) on insert; a later change moves
 * updatedAt only; saving without changes sends nothing and keeps updatedAt. (seed 000) */
static void seed_user_timestamps_on_save(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *user = new_ada(User);
    int64_t before = now_ms();
    assert_ok(mk_doc_save(user, &err), &err);
    int64_t after = now_ms();
    int64_t created = mk_doc_get_date(user, "createdAt");
    int64_t updated = mk_doc_get_date(user, "updatedAt");
    assert_in_range(created, before, after);
    assert_int_equal(updated, created);
    bson_value_t v;
    assert_true(mk_doc_get(user, "createdAt", &v));
    assert_int_equal(v.value_type, BSON_TYPE_DATE_TIME);

    bson_t *stored = find_by_id(conn, "users", mk_doc_oid(user));
    assert_non_null(stored);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, stored, "createdAt"));
    assert_true(BSON_ITER_HOLDS_DATE_TIME(&it));
    assert_int_equal(bson_iter_date_time(&it), created);
    assert_true(bson_iter_init_find(&it, stored, "updatedAt"));
    assert_int_equal(bson_iter_date_time(&it), updated);
    bson_destroy(stored);

    pause_ms(5);
    assert_ok(mk_doc_set(user, "name", MK_STR("Augusta Ada King"), &err), &err);
    before = now_ms();
    assert_ok(mk_doc_save(user, &err), &err);
    after = now_ms();
    int64_t updated2 = mk_doc_get_date(user, "updatedAt");
    assert_in_range(updated2, before, after);
    assert_true(updated2 > created);
    assert_int_equal(mk_doc_get_date(user, "createdAt"), created);
    stored = find_by_id(conn, "users", mk_doc_oid(user));
    assert_non_null(stored);
    assert_true(bson_iter_init_find(&it, stored, "updatedAt"));
    assert_int_equal(bson_iter_date_time(&it), updated2);
    assert_true(bson_iter_init_find(&it, stored, "createdAt"));
    assert_int_equal(bson_iter_date_time(&it), created);
    assert_string_equal(tu_get_str(stored, "name"), "Augusta Ada King");
    bson_destroy(stored);

    /* nothing modified: nothing sent, updatedAt unchanged */
    pause_ms(5);
    assert_ok(mk_doc_save(user, &err), &err);
    assert_int_equal(mk_doc_get_date(user, "updatedAt"), updated2);
    stored = find_by_id(conn, "users", mk_doc_oid(user));
    assert_non_null(stored);
    assert_true(bson_iter_init_find(&it, stored, "updatedAt"));
    assert_int_equal(bson_iter_date_time(&it), updated2);
    bson_destroy(stored);
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* ---------- output ---------- */

/* toJSON: { virtuals: true, transform: (_, ret) => { ret.id = ret._id.toString(); delete ret._id;
 * delete ret.__v; delete ret.passwordHash; return ret; } }: the saved user as the API returns it:
 * id instead of _id, no __v, no passwordHash, the displayName virtual; the empty `profile` is
 * minimized away. (seed 000) */
static void seed_user_to_json_transform(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *user = new_ada(User);
    char hex[25];
    oid_hex(user, hex);

    /* before save: no timestamps yet */
    bson_t *json = mk_doc_to_json(user, NULL, &err);
    char expect[640];
    snprintf(expect, sizeof expect,
             "{ email: 'ada@example.com', name: 'Ada Lovelace', role: 'user',"
             "  preferences: { notifications: true, theme: 'light' },"
             "  displayName: 'Ada Lovelace', id: '%s' }",
             hex);
    assert_fields(json, expect);
    bson_destroy(json);

    assert_ok(mk_doc_save(user, &err), &err);
    assert_ok(mk_doc_set(user, "profile.avatar", MK_STR("ada.png"), &err), &err);
    assert_ok(mk_doc_save(user, &err), &err);
    int64_t created = mk_doc_get_date(user, "createdAt");
    int64_t updated = mk_doc_get_date(user, "updatedAt");
    json = mk_doc_to_json(user, NULL, &err);
    snprintf(expect, sizeof expect,
             "{ email: 'ada@example.com', name: 'Ada Lovelace', role: 'user',"
             "  profile: { avatar: 'ada.png' },"
             "  preferences: { notifications: true, theme: 'light' },"
             "  createdAt: new Date(%lld), updatedAt: new Date(%lld),"
             "  displayName: 'Ada Lovelace', id: '%s' }",
             (long long)created, (long long)updated, hex);
    assert_fields(json, expect);
    bson_destroy(json);

    /* JSON.stringify(user) */
    char *text = mk_doc_to_ejson(user, &err);
    assert_non_null(text);
    assert_null(strstr(text, "passwordHash"));
    assert_null(strstr(text, "__v"));
    bson_t *parsed = tu_bson(text);
    bson_free(text);
    assert_fields(parsed, expect);
    bson_destroy(parsed);

    /* transform: 0 skips the transform: _id, __v and passwordHash are back */
    mk_to_object_opts_t opts = MK_TO_OBJECT_DEFAULTS;
    opts.transform = 0;
    json = mk_doc_to_json(user, &opts, &err);
    assert_non_null(json);
    assert_true(bson_has_field(json, "_id"));
    assert_true(bson_has_field(json, "passwordHash"));
    assert_true(bson_has_field(json, "__v"));
    bson_destroy(json);
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* toObject has no transform and no virtuals (only toJSON was configured): every stored field,
 * passwordHash included (select: false only affects queries). (seed 000) */
static void seed_user_to_object_keeps_every_field(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *user = new_ada(User);
    assert_ok(mk_doc_save(user, &err), &err);
    char hex[25], expect[640];
    oid_hex(user, hex);
    bson_t *obj = mk_doc_to_object(user, NULL, &err);
    snprintf(expect, sizeof expect,
             "{ email: 'ada@example.com', name: 'Ada Lovelace',"
             "  passwordHash: 'fnv1a$0123456789abcdef', role: 'user',"
             "  preferences: { notifications: true, theme: 'light' }, _id: ObjectId('%s'),"
             "  createdAt: new Date(%lld), updatedAt: new Date(%lld), __v: 0 }",
             hex, (long long)mk_doc_get_date(user, "createdAt"),
             (long long)mk_doc_get_date(user, "updatedAt"));
    assert_fields(obj, expect);
    bson_destroy(obj);
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* ---------- persistence ---------- */

/* Saved, read back with `find`, hydrated: not new, nothing modified, the same values; the empty
 * profile was not stored (minimize). A change to a nested path is saved. (seed 000) */
static void seed_user_save_then_hydrate(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *user = new_ada(User);
    assert_ok(mk_doc_save(user, &err), &err);
    char hex[25], expect[640];
    oid_hex(user, hex);
    int64_t created = mk_doc_get_date(user, "createdAt");

    bson_t *stored = find_by_id(conn, "users", mk_doc_oid(user));
    snprintf(expect, sizeof expect,
             "{ _id: ObjectId('%s'), email: 'ada@example.com', name: 'Ada Lovelace',"
             "  passwordHash: 'fnv1a$0123456789abcdef', role: 'user',"
             "  preferences: { notifications: true, theme: 'light' },"
             "  createdAt: new Date(%lld), updatedAt: new Date(%lld), __v: 0 }",
             hex, (long long)created, (long long)created);
    assert_fields(stored, expect);

    mk_doc_t *loaded = doc_ok(mk_doc_hydrate(User, stored, &err), &err);
    bson_destroy(stored);
    assert_false(mk_doc_is_new(loaded));
    assert_false(mk_doc_is_modified(loaded, NULL));
    assert_true(mk_doc_equals(loaded, user));
    assert_string_equal(mk_doc_id(loaded), hex);
    assert_doc_str(loaded, "email", "ada@example.com");
    assert_doc_str(loaded, "passwordHash", "fnv1a$0123456789abcdef");
    assert_doc_str(loaded, "preferences.theme", "light");
    assert_int_equal(mk_doc_get_date(loaded, "createdAt"), created);
    bson_value_t v;
    assert_false(mk_doc_get(loaded, "profile.avatar", &v));

    /* updatePreferences({ theme: 'dark' }) on the loaded document */
    assert_ok(mk_doc_set(loaded, "preferences.theme", MK_STR("dark"), &err), &err);
    assert_true(mk_doc_is_modified(loaded, "preferences"));
    assert_true(mk_doc_is_modified(loaded, "preferences.theme"));
    assert_false(mk_doc_is_modified(loaded, "preferences.notifications"));
    assert_ok(mk_doc_save(loaded, &err), &err);
    stored = find_by_id(conn, "users", mk_doc_oid(user));
    assert_non_null(stored);
    assert_string_equal(tu_get_str(stored, "preferences.theme"), "dark");
    bson_iter_t it, notifications;
    assert_true(bson_iter_init(&it, stored));
    assert_true(bson_iter_find_descendant(&it, "preferences.notifications", &notifications));
    assert_true(BSON_ITER_HOLDS_BOOL(&notifications));
    assert_true(bson_iter_bool(&notifications));
    assert_int_equal(count_in(conn, "users"), 1);
    bson_destroy(stored);
    mk_doc_destroy(loaded);
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* mk_doc_bson of a saved document, hydrated again, is the same document. (seed 000) */
static void seed_user_rehydrate_from_doc_bson(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *user = new_ada(User);
    assert_ok(mk_doc_set(user, "profile.bio", MK_STR("First programmer"), &err), &err);
    assert_ok(mk_doc_save(user, &err), &err);

    const bson_t *raw = mk_doc_bson(user, &err);
    assert_non_null(raw);
    mk_doc_t *again = doc_ok(mk_doc_hydrate(User, raw, &err), &err);
    assert_false(mk_doc_is_new(again));
    assert_false(mk_doc_is_modified(again, NULL));
    assert_true(mk_doc_equals(again, user));
    assert_doc_str(again, "profile.bio", "First programmer");
    assert_doc_str(again, "displayName", "Ada Lovelace");
    assert_int_equal(mk_doc_get_date(again, "updatedAt"), mk_doc_get_date(user, "updatedAt"));

    bson_t *a = mk_doc_to_json(user, NULL, &err);
    bson_t *b = mk_doc_to_json(again, NULL, &err);
    assert_non_null(a);
    assert_non_null(b);
    char *text = mk_json_from_bson(a);
    assert_non_null(text);
    assert_fields(b, text);
    bson_free(text);
    bson_destroy(a);
    bson_destroy(b);
    mk_doc_destroy(again);
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* email: { unique: true }: a second user whose email lowercases and trims to a taken one fails
 * with MongoDB's duplicate key error and is not stored. (seed 000: "should reject duplicate
 * emails" relies on it) */
static void seed_user_unique_email(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *ada = new_ada(User);
    assert_ok(mk_doc_save(ada, &err), &err);

    mk_doc_t *twin = doc_ok(mk_doc_new(User, &err,
                                       "{ email: '  ADA@example.com ', name: 'Ada Twin',"
                                       "  passwordHash: 'h' }"),
                            &err);
    assert_int_equal(mk_doc_save(twin, &err), MK_ERR);
    assert_int_equal(err.code, 11000);
    assert_string_equal(err.kind, "MongoServerError");
    assert_string_equal(err.message, "E11000 duplicate key error collection: test.users index: "
                                     "email_1 dup key: { email: \"ada@example.com\" }");
    assert_true(mk_doc_is_new(twin));
    assert_int_equal(count_in(conn, "users"), 1);

    /* another email is fine */
    assert_ok(mk_doc_set(twin, "email", MK_STR("twin@example.com"), &err), &err);
    assert_ok(mk_doc_save(twin, &err), &err);
    assert_int_equal(count_in(conn, "users"), 2);
    mk_doc_destroy(twin);
    mk_doc_destroy(ada);
    mk_conn_close(conn);
}

/* ---------- virtuals, methods, statics ---------- */

/* userSchema.virtual('displayName'), userSchema.methods.isAdmin, userSchema.statics.findByEmail.
 * (seed 000) */
static void seed_user_virtual_method_static(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = user_model(conn);
    mk_error_t err = {0};
    mk_doc_t *user = new_ada(User);
    assert_doc_str(user, "displayName", "Ada Lovelace");
    assert_ok(mk_doc_set(user, "name", MK_STR("Ada King"), &err), &err);
    assert_doc_str(user, "displayName", "Ada King");

    bool admin = true;
    assert_ok(mk_doc_call(user, "isAdmin", &admin, &err), &err);
    assert_false(admin);
    /* promoteToAdmin() */
    assert_ok(mk_doc_set(user, "role", MK_STR("admin"), &err), &err);
    assert_ok(mk_doc_call(user, "isAdmin", &admin, &err), &err);
    assert_true(admin);
    assert_int_equal(mk_doc_call(user, "isSuperAdmin", &admin, &err), MK_ERR);
    assert_ok(mk_doc_save(user, &err), &err);

    find_by_email_args_t args = {"ADA@EXAMPLE.COM", NULL};
    assert_ok(mk_model_call(User, "findByEmail", &args, &err), &err);
    assert_non_null(args.found);
    assert_true(mk_doc_equals(args.found, user));
    assert_false(mk_doc_is_new(args.found));
    assert_doc_str(args.found, "displayName", "Ada King");
    admin = false;
    assert_ok(mk_doc_call(args.found, "isAdmin", &admin, &err), &err);
    assert_true(admin);
    mk_doc_destroy(args.found);

    args.email = "nobody@example.com";
    assert_ok(mk_model_call(User, "findByEmail", &args, &err), &err);
    assert_null(args.found);
    assert_int_equal(mk_model_call(User, "findByName", &args, &err), MK_ERR);
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* ---------- extensions beyond the seed's text ---------- */

/* A stand-in for UserDomainService.hashPassword (argon2id in the seed): FNV-1a 64, enough to
 * see that a value was hashed once. */
static void fake_hash(const char *plain, char out[24])
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)plain; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    snprintf(out, 24, "fnv1a$%016llx", (unsigned long long)h);
}

/* userSchema.pre('save', async function () {
 *   if (this.isModified('passwordHash')) this.passwordHash = await hash(this.passwordHash);
 * }); */
static int hash_password(mk_hook_t *hook, void *ud, mk_error_t *err)
{
    int *calls = ud;
    if (!mk_doc_is_modified(hook->doc, "passwordHash")) return MK_OK;
    const char *plain = mk_doc_get_str(hook->doc, "passwordHash");
    if (!plain) return MK_OK;
    char hashed[24];
    fake_hash(plain, hashed);
    (*calls)++;
    return mk_doc_set(hook->doc, "passwordHash", MK_STR(hashed), err);
}

/* NOTE: the seed hashes in UserDomainService before building the document; hashing in
 * pre('save') when the path is modified is the common Mongoose form of the same rule, tested
 * here: hashed on insert, not hashed again when another path changes, hashed again when the
 * password changes. */
static void seed_user_pre_save_hashes_password(void **state)
{
    mk_conn_t *conn = open_memory();
    int calls = 0;
    mk_schema_t *schema = user_schema(USER_DEFINITION(""));
    mk_error_t err = {0};
    assert_ok(mk_schema_pre(schema, "save", hash_password, &calls, &err), &err);
    mk_model_t *User = compile_ok(conn, "User", schema);

    char first[24], second[24];
    fake_hash("Password123", first);
    fake_hash("NewPass456", second);
    mk_doc_t *user = doc_ok(mk_doc_new(User, &err,
                                       "{ email: 'ada@example.com', name: 'Ada Lovelace',"
                                       "  passwordHash: 'Password123' }"),
                            &err);
    assert_ok(mk_doc_save(user, &err), &err);
    assert_int_equal(calls, 1);
    assert_doc_str(user, "passwordHash", first);
    bson_t *stored = find_by_id(conn, "users", mk_doc_oid(user));
    assert_non_null(stored);
    assert_string_equal(tu_get_str(stored, "passwordHash"), first);
    bson_destroy(stored);

    assert_ok(mk_doc_set(user, "name", MK_STR("Ada King"), &err), &err);
    assert_ok(mk_doc_save(user, &err), &err);
    assert_int_equal(calls, 1);
    stored = find_by_id(conn, "users", mk_doc_oid(user));
    assert_non_null(stored);
    assert_string_equal(tu_get_str(stored, "passwordHash"), first);
    bson_destroy(stored);

    assert_ok(mk_doc_set(user, "passwordHash", MK_STR("NewPass456"), &err), &err);
    assert_ok(mk_doc_save(user, &err), &err);
    assert_int_equal(calls, 2);
    stored = find_by_id(conn, "users", mk_doc_oid(user));
    assert_non_null(stored);
    assert_string_equal(tu_get_str(stored, "passwordHash"), second);
    bson_destroy(stored);
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

/* NOTE: the seed checks email format in its Email value object
 * (/^[^\s@]+@[^\s@]+\.[^\s@]+$/), not in the schema; the same rule as a schema `match`
 * gives Mongoose's message "Path `email` is invalid (<value>)." on the lowercased value. */
static void seed_user_email_match(void **state)
{
    mk_conn_t *conn = open_memory();
    mk_model_t *User = compile_ok(
        conn, "User", user_schema(USER_DEFINITION(", match: /^[^\\s@]+@[^\\s@]+\\.[^\\s@]+$/")));
    mk_error_t err = {0};
    mk_doc_t *user = doc_ok(
        mk_doc_new(User, &err, "{ email: 'Not-An-Email', name: 'Ada', passwordHash: 'h' }"), &err);
    assert_int_equal(mk_doc_save(user, &err), MK_ERR);
    assert_string_equal(err.message,
                        "User validation failed: email: Path `email` is invalid (not-an-email).");
    assert_detail(&err, "email", "ValidatorError", "regexp",
                  "Path `email` is invalid (not-an-email).");
    assert_ok(mk_doc_set(user, "email", MK_STR(" Ada@Example.com "), &err), &err);
    assert_ok(mk_doc_save(user, &err), &err);
    assert_doc_str(user, "email", "ada@example.com");
    mk_doc_destroy(user);
    mk_conn_close(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seed_user_schema_paths_and_options),
        cmocka_unit_test(seed_user_model_builds_indexes),
        cmocka_unit_test(seed_user_text_index),
        cmocka_unit_test(seed_user_construction_casts_and_defaults),
        cmocka_unit_test(seed_user_required_paths),
        cmocka_unit_test(seed_user_validator_messages),
        cmocka_unit_test(seed_user_profile_bio_maxlength),
        cmocka_unit_test(seed_user_timestamps_on_save),
        cmocka_unit_test(seed_user_to_json_transform),
        cmocka_unit_test(seed_user_to_object_keeps_every_field),
        cmocka_unit_test(seed_user_save_then_hydrate),
        cmocka_unit_test(seed_user_rehydrate_from_doc_bson),
        cmocka_unit_test(seed_user_unique_email),
        cmocka_unit_test(seed_user_virtual_method_static),
        cmocka_unit_test(seed_user_pre_save_hashes_password),
        cmocka_unit_test(seed_user_email_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
