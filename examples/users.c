/* The ODM on the embedded engine: the seed service's users, written with meerkat.
 *
 *   users DIR      (make run uses data/app)
 *
 * A schema in Mongoose's syntax with validation, a select: false password hash set by a
 * pre('save') hook, a toJSON transform, a virtual, a method and a static; then sign-ups
 * (one invalid, one duplicate), a profile change saved as a minimal update, a search with
 * pagination and a total, and an upsert by id. */
#include <meerkat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void section(const char *title)
{
    printf("\n== %s\n", title);
}

static void show_error(const mk_error_t *err)
{
    printf("  %s: %s\n", err->kind, err->message);
    for (unsigned i = 0; i < mk_error_detail_count(err); i++) {
        mk_error_detail_t d;
        if (mk_error_detail(err, i, &d))
            printf("    - %s (%s, %s): %s\n", d.path, d.name, d.kind, d.message);
    }
}

static void show_json(mk_doc_t *doc)
{
    mk_error_t err = {0};
    char *json = mk_doc_to_ejson(doc, &err);
    printf("  %s\n", json ? json : err.message);
    bson_free(json);
}

/* pre('save'): hash the password when it changed (a toy hash: this is an example). */
static int hash_password(mk_hook_t *h, void *ud, mk_error_t *err)
{
    if (!mk_doc_is_modified(h->doc, "password")) return MK_OK;
    const char *pw = mk_doc_get_str(h->doc, "password");
    if (!pw) return MK_OK;
    unsigned long hash = 5381;
    for (const char *p = pw; *p; p++) hash = hash * 33 + (unsigned char)*p;
    char buf[32];
    snprintf(buf, sizeof buf, "djb2$%lx", hash);
    if (mk_doc_set(h->doc, "passwordHash", MK_STR(buf), err) != MK_OK) return MK_ERR;
    return mk_doc_unset(h->doc, "password", err);
}

/* post('save') error handler: a duplicate email becomes a message for the user. */
static void duplicate_email(mk_hook_t *h, mk_error_t *error, void *ud)
{
    if (error->code == 11000 && strstr(error->message, "email"))
        mk_error_set(error, 11000, "MongoServerError", "That email is already registered");
}

/* The seed's toJSON transform: `id` instead of `_id`, no __v, no password hash. */
static int to_json(mk_doc_t *doc, const bson_t *ret, bson_t *out, void *ud, mk_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, ret);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_id") == 0 && BSON_ITER_HOLDS_OID(&it)) {
            char hex[25];
            bson_oid_to_string(bson_iter_oid(&it), hex);
            BSON_APPEND_UTF8(out, "id", hex);
        } else if (strcmp(k, "__v") != 0 && strcmp(k, "passwordHash") != 0 &&
                   strcmp(k, "id") != 0) { /* ret.id = ...: the `id` virtual is replaced */
            bson_append_iter(out, NULL, 0, &it);
        }
    }
    return MK_OK;
}

static int display_name(mk_doc_t *doc, bson_value_t *out, void *ud, mk_error_t *err)
{
    const char *name = mk_doc_get_str(doc, "name");
    bson_value_t v = {.value_type = BSON_TYPE_UTF8};
    v.value.v_utf8.str = (char *)(name ? name : "");
    v.value.v_utf8.len = (uint32_t)strlen(v.value.v_utf8.str);
    bson_value_copy(&v, out);
    return MK_OK;
}

static int is_admin(mk_doc_t *doc, void *args, void *ud, mk_error_t *err)
{
    const char *role = mk_doc_get_str(doc, "role");
    *(bool *)args = role && strcmp(role, "admin") == 0;
    return MK_OK;
}

typedef struct by_email {
    const char *email;
    mk_doc_t *found;
} by_email_t;

/* statics.findByEmail: findOne({ email: email.toLowerCase() }) with the hash selected. */
static int find_by_email(mk_model_t *model, void *args, void *ud, mk_error_t *err)
{
    by_email_t *a = args;
    char lower[256];
    size_t n = 0;
    for (; a->email[n] && n + 1 < sizeof lower; n++)
        lower[n] =
            (char)(a->email[n] >= 'A' && a->email[n] <= 'Z' ? a->email[n] + 32 : a->email[n]);
    lower[n] = '\0';
    mk_query_t *q = mk_find_one(model, err, "{ email: ? }", MK_STR(lower));
    if (!q) return MK_ERR;
    mk_query_select(q, "+passwordHash");
    a->found = mk_query_one(q, err);
    int rc = a->found || !err->kind[0] ? MK_OK : MK_ERR;
    mk_query_destroy(q);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "data/app";
    mk_error_t err = {0};
    mk_conn_t *db = mk_connect(dir, &err);
    if (!db) {
        fprintf(stderr, "connect %s: %s\n", dir, err.message);
        return 1;
    }
    bson_t *drop = mk_bson(&err, "{ drop: 'users' }"); /* start each run afresh */
    bson_t reply = BSON_INITIALIZER;
    mk_conn_command(db, drop, &reply, &err);
    bson_destroy(&reply);
    bson_destroy(drop);

    mk_schema_t *s = mk_schema_parse(
        "{ email: { type: String, required: true, unique: true, lowercase: true, trim: true },"
        "  name: { type: String, required: true, trim: true, minlength: 2, maxlength: 100 },"
        "  password: { type: String, minlength: 8 },"
        "  passwordHash: { type: String, select: false },"
        "  role: { type: String, enum: ['user', 'admin'], default: 'user' },"
        "  profile: { avatar: String, bio: { type: String, maxlength: 500 } },"
        "  preferences: { notifications: { type: Boolean, default: true },"
        "                 theme: { type: String, enum: ['light', 'dark'], default: 'light' } } }",
        "{ timestamps: true, toJSON: { virtuals: true } }", &err);
    if (!s || mk_schema_index(s, "{ createdAt: -1 }", NULL, &err) != MK_OK ||
        mk_schema_pre(s, "save", hash_password, NULL, &err) != MK_OK ||
        mk_schema_post_error(s, "save", duplicate_email, NULL, &err) != MK_OK ||
        mk_schema_transform(s, "toJSON", to_json, NULL, &err) != MK_OK ||
        mk_schema_virtual(s, "displayName", display_name, NULL, NULL, &err) != MK_OK ||
        mk_schema_method(s, "isAdmin", is_admin, NULL, &err) != MK_OK ||
        mk_schema_static(s, "findByEmail", find_by_email, NULL, &err) != MK_OK) {
        fprintf(stderr, "schema: %s\n", err.message);
        return 1;
    }
    mk_model_t *User = mk_model(db, "User", s, &err);
    mk_schema_destroy(s);
    if (!User) {
        fprintf(stderr, "model: %s\n", err.message);
        return 1;
    }
    printf("model User -> collection \"%s\" in database \"%s\"\n", mk_model_collection_name(User),
           mk_conn_db_name(db));

    section("sign-ups");
    static const char *const people[][4] = {
        {"  Ada@Example.COM ", "Ada Lovelace", "analytical", "admin"},
        {"grace@example.com", "Grace Hopper", "compilers!", "user"},
        {"alan@example.com", "Alan Turing", "enigma-1912", "user"},
        {"edsger@example.com", "Edsger Dijkstra", "goto-harmful", "user"},
    };
    for (size_t i = 0; i < sizeof people / sizeof people[0]; i++) {
        mk_doc_t *u = mk_model_create(User, &err, "{ email: ?, name: ?, password: ?, role: ? }",
                                      MK_STR(people[i][0]), MK_STR(people[i][1]),
                                      MK_STR(people[i][2]), MK_STR(people[i][3]));
        if (!u) {
            show_error(&err);
            continue;
        }
        show_json(u);
        mk_doc_destroy(u);
    }

    section("an invalid sign-up: every failing path is reported");
    mk_doc_t *bad = mk_doc_new(User, &err, "{ email: '', name: 'X', role: 'root', password: ? }",
                               MK_STR("short"));
    if (bad && mk_doc_save(bad, &err) != MK_OK) show_error(&err);
    mk_doc_destroy(bad);

    section("a duplicate email, turned into a friendly error by post('save')");
    mk_doc_t *dup = mk_model_create(User, &err, "{ email: 'GRACE@example.com', name: 'Grace' }");
    if (!dup) show_error(&err);
    mk_doc_destroy(dup);

    section("findByEmail, change the profile, save only what changed");
    by_email_t q = {.email = "ADA@example.com"};
    if (mk_model_call(User, "findByEmail", &q, &err) != MK_OK || !q.found) {
        fprintf(stderr, "findByEmail: %s\n", err.message);
        return 1;
    }
    bool admin = false;
    mk_doc_call(q.found, "isAdmin", &admin, &err);
    printf("  %s is %san admin; hash %s\n", mk_doc_get_str(q.found, "displayName"),
           admin ? "" : "not ", mk_doc_get_str(q.found, "passwordHash"));
    mk_doc_set(q.found, "profile.bio", MK_STR("Wrote the first program."), &err);
    mk_doc_set(q.found, "preferences.theme", MK_STR("dark"), &err);
    bson_t *delta = mk_doc_delta(q.found, &err);
    char *text = delta ? mk_json_from_bson(delta) : NULL;
    printf("  update sent by save(): %s\n", text ? text : err.message);
    bson_free(text);
    if (delta) bson_destroy(delta);
    if (mk_doc_save(q.found, &err) != MK_OK) show_error(&err);
    mk_doc_destroy(q.found);

    section("search: role 'user', newest first, page 1 of 2 per page, with the total");
    mk_query_t *find = mk_find(User, &err, "{ role: ? }", MK_STR("user"));
    mk_query_sort(find, "-createdAt name");
    mk_query_skip(find, 0);
    mk_query_limit(find, 2);
    mk_doc_t **page = NULL;
    size_t n = 0;
    int64_t total = 0;
    mk_query_t *count = mk_count_documents(User, &err, "{ role: ? }", MK_STR("user"));
    if (mk_query_docs(find, &page, &n, &err) == MK_OK &&
        mk_query_count(count, &total, &err) == MK_OK) {
        for (size_t i = 0; i < n; i++) {
            printf("  %s <%s>\n", mk_doc_get_str(page[i], "name"),
                   mk_doc_get_str(page[i], "email"));
            mk_doc_destroy(page[i]);
        }
        printf("  %zu shown of %lld\n", n, (long long)total);
    } else {
        show_error(&err);
    }
    free(page);
    mk_query_destroy(find);
    mk_query_destroy(count);

    section("a value that cannot be cast rejects the query");
    mk_query_t *cast = mk_find(User, &err, "{ createdAt: { $gt: ? } }", MK_STR("yesterday"));
    mk_doc_t **none = NULL;
    if (mk_query_docs(cast, &none, &n, &err) != MK_OK) show_error(&err);
    free(none);
    mk_query_destroy(cast);

    section("findByIdAndUpdate with upsert, twice (the repository's save)");
    bson_oid_t id;
    bson_oid_init_from_string(&id, "65a000000000000000000001");
    for (int round = 0; round < 2; round++) {
        mk_query_t *up = mk_find_by_id_and_update(
            User, &err, MK_OID(&id), "{ $set: { email: ?, name: ? } }",
            MK_STR("barbara@example.com"), MK_STR(round ? "Barbara Liskov" : "B. Liskov"));
        mk_query_set_options(up, "{ upsert: true, new: true }", NULL, &err);
        mk_doc_t *d = mk_query_one(up, &err);
        if (d)
            show_json(d);
        else
            show_error(&err);
        mk_doc_destroy(d);
        mk_query_destroy(up);
    }

    mk_conn_close(db);
    return 0;
}
