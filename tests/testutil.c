#include "testutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bson/path.h"
#include "bson/value.h"

bson_t *tu_bson(const char *json)
{
    mk_error_t err = {0};
    bson_t *b = mk_json_parse(json, NULL, &err);
    if (!b) {
        print_error("tu_bson: %s\n  in: %s\n", err.message, json);
        fail();
    }
    return b;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rmdir(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_tmpdir(const char *name)
{
    const char *base = getenv("MK_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0755);
    char *path = NULL;
    if (asprintf(&path, "%s/%s-%ld", base, name, (long)getpid()) < 0) fail();
    tu_rmdir(path);
    if (mkdir(path, 0755) != 0) fail_msg("mkdir %s failed", path);
    return path;
}

void tu_assert_bson_eq_(const bson_t *doc, const char *expect, const char *file, int line)
{
    bson_t *e = tu_bson(expect);
    if (mk_bson_cmp(doc, e) != 0) {
        char *a = bson_as_relaxed_extended_json(doc, NULL);
        char *b = bson_as_relaxed_extended_json(e, NULL);
        print_error("%s:%d: documents differ\n  actual:   %s\n  expected: %s\n", file, line, a, b);
        bson_free(a);
        bson_free(b);
        bson_destroy(e);
        _fail(file, line);
    }
    bson_destroy(e);
}

static void missing(const bson_t *doc, const char *path, const char *what)
{
    char *s = bson_as_relaxed_extended_json(doc, NULL);
    print_error("no %s at %s in %s\n", what, path, s ? s : "?");
    bson_free(s);
    fail();
}

int64_t tu_get_int(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    if (!mk_path_get(doc, path, &it)) missing(doc, path, "field");
    return bson_iter_as_int64(&it);
}

const char *tu_get_str(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    if (!mk_path_get(doc, path, &it) || !BSON_ITER_HOLDS_UTF8(&it)) missing(doc, path, "string");
    return bson_iter_utf8(&it, NULL);
}
