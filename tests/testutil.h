/* Helpers shared by the cmocka tests. Include after <cmocka.h>'s prerequisites. */
#ifndef MK_TESTUTIL_H
#define MK_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <meerkat.h>

/* Parses relaxed JSON or fails the test (printing the parse error). Caller destroys. */
bson_t *tu_bson(const char *json);
/* A fresh empty directory under $MK_TEST_TMP (or /tmp); caller frees the string. */
char *tu_tmpdir(const char *name);
/* rm -rf of a directory made by tu_tmpdir. */
void tu_rmdir(const char *dir);
/* Asserts that `doc` equals the document written as relaxed JSON `expect` (field order and
 * value types matter, as MongoDB's equality; 1 and 1.0 are equal numbers). Prints both on
 * failure. */
#define tu_assert_bson_eq(doc, expect) tu_assert_bson_eq_(doc, expect, __FILE__, __LINE__)
void tu_assert_bson_eq_(const bson_t *doc, const char *expect, const char *file, int line);

/* The value at a dotted path (array indexes allowed) of doc, or a failed test showing doc. */
int64_t tu_get_int(const bson_t *doc, const char *path);
const char *tu_get_str(const bson_t *doc, const char *path);

#endif
