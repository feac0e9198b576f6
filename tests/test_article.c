/* The middleware article (seed 004), document side: unique titles inside the configuration's
 * tag arrays, checked in pre('validate') (and pre('save')) from
 * modifiedPaths({ includeChildren: true }). The query-side cases are in test_query_book.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <meerkat.h>

#include "testutil.h"

/* getModifiedConfigurationPaths + getDuplicatedTitle + the throw. */
static int unique_titles(mk_hook_t *h, void *ud, mk_error_t *err)
{
    char **paths = mk_doc_modified_paths(h->doc, true);
    if (!paths) return mk_error_nomem(err);
    int rc = MK_OK;
    for (char **p = paths; *p && rc == MK_OK; p++) {
        /* path.includes('configuration') && path.split('.').length === 2 */
        const char *dot = strchr(*p, '.');
        if (!strstr(*p, "configuration") || !dot || strchr(dot + 1, '.')) continue;
        const char *field = dot + 1;
        int64_t n = mk_doc_array_len(h->doc, *p);
        for (int64_t i = 0; i < n && rc == MK_OK; i++) {
            char a[128];
            snprintf(a, sizeof a, "%s.%lld.title", *p, (long long)i);
            const char *ti = mk_doc_get_str(h->doc, a);
            for (int64_t j = 0; ti && j < i; j++) {
                char b[128];
                snprintf(b, sizeof b, "%s.%lld.title", *p, (long long)j);
                const char *tj = mk_doc_get_str(h->doc, b);
                if (tj && strcmp(ti, tj) == 0) {
                    rc = mk_error_set(err, 0, "Error",
                                      "The value %s is duplicated in the %s array.", ti, field);
                    break;
                }
            }
        }
    }
    mk_strv_free(paths);
    return rc;
}

static int count_validate(mk_hook_t *h, void *ud, mk_error_t *err)
{
    (*(int *)ud)++;
    return MK_OK;
}

static mk_model_t *project_model(mk_conn_t *conn, const char *op, int *calls)
{
    mk_error_t err = {0};
    mk_schema_t *tag =
        mk_schema_parse("{ title: String, color: String, icon: String }", NULL, &err);
    mk_schema_t *project = mk_schema_parse("{ name: String }", NULL, &err);
    assert_non_null(tag);
    assert_non_null(project);
    assert_int_equal(
        mk_schema_add_schema(project, "configuration.priorities", tag, true, NULL, &err), MK_OK);
    assert_int_equal(mk_schema_add_schema(project, "configuration.statuses", tag, true, NULL, &err),
                     MK_OK);
    assert_int_equal(mk_schema_pre(project, op, unique_titles, NULL, &err), MK_OK);
    if (calls)
        assert_int_equal(mk_schema_pre(project, "validate", count_validate, calls, &err), MK_OK);
    mk_model_t *m = mk_model(conn, "Project", project, &err);
    assert_non_null(m);
    assert_string_equal(mk_model_collection_name(m), "projects");
    mk_schema_destroy(tag);
    mk_schema_destroy(project);
    return m;
}

static void check_article(const char *op)
{
    mk_error_t err = {0};
    int calls = 0;
    mk_conn_t *conn = mk_connect("memory:", &err);
    mk_model_t *Project = project_model(conn, op, &calls);
    /* new Project({ configuration: { priorities: [ {Priority 1}, {Priority 1} ] } }) */
    mk_doc_t *dup = mk_doc_new(Project, &err,
                               "{ configuration: { priorities: ["
                               "  { title: 'Priority 1', color: '#000000', icon: 'icon' },"
                               "  { title: 'Priority 1', color: '#000000', icon: 'icon' } ] } }");
    assert_non_null(dup);
    assert_int_equal(mk_doc_save(dup, &err), MK_ERR);
    assert_string_equal(err.message, "The value Priority 1 is duplicated in the priorities array.");
    /* pre('validate'): the failing hook stops the chain (the validate hook registered after it
     * does not run); pre('save'): validation and its hooks ran first, as save() does */
    assert_int_equal(calls, strcmp(op, "save") == 0 ? 1 : 0);
    mk_doc_destroy(dup);

    mk_doc_t *ok = mk_doc_new(Project, &err,
                              "{ name: 'P', configuration: { priorities: [{ title: 'High' }, "
                              "{ title: 'Low' }], statuses: [{ title: 'Active' }] } }");
    assert_int_equal(mk_doc_save(ok, &err), MK_OK);
    /* later: a duplicate pushed into another array of the saved project */
    bson_t *stored = bson_copy(mk_doc_bson(ok, &err));
    mk_doc_t *loaded = mk_doc_hydrate(Project, stored, &err);
    assert_int_equal(
        mk_doc_push_json(loaded, "configuration.statuses", &err, "{ title: 'Active' }"), MK_OK);
    assert_int_equal(mk_doc_save(loaded, &err), MK_ERR);
    assert_string_equal(err.message, "The value Active is duplicated in the statuses array.");
    /* a different title goes through, as a $push */
    mk_doc_destroy(loaded);
    loaded = mk_doc_hydrate(Project, stored, &err);
    assert_int_equal(
        mk_doc_push_json(loaded, "configuration.statuses", &err, "{ title: 'Canceled' }"), MK_OK);
    bson_t *delta = mk_doc_delta(loaded, &err);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, delta, "$push"));
    bson_destroy(delta);
    assert_int_equal(mk_doc_save(loaded, &err), MK_OK);
    mk_doc_destroy(loaded);
    bson_destroy(stored);
    mk_doc_destroy(ok);
    mk_conn_close(conn);
}

static void article_pre_validate(void **state)
{
    check_article("validate");
}

static void article_pre_save(void **state)
{
    check_article("save");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(article_pre_validate),
        cmocka_unit_test(article_pre_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
