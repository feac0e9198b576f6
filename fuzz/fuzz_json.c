/* libFuzzer target for the relaxed-JSON parser.
 *
 * Parses the input (binding a fixed set of arguments when it contains '?'); every failure
 * must leave the output empty with a positioned message. Every success must be valid BSON
 * whose Extended JSON re-parses, and re-printing that must give the same text (the parser and
 * the printer agree on every type they exchange). */
#include <meerkat/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 8

static void die(const char *what, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_json: %s\n  %s\n  %s\n", what, a ? a : "", b ? b : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bson_t *sub, *arr;
    static bson_oid_t oid;
    static bson_value_t val;
    if (!sub) {
        sub = BCON_NEW("x", BCON_INT32(1), "$gt", BCON_UTF8(""));
        arr = BCON_NEW("0", BCON_UTF8("a"), "1", BCON_DOUBLE(2.5));
        bson_oid_init_from_string(&oid, "0123456789abcdef01234567");
        val.value_type = BSON_TYPE_DECIMAL128;
        bson_decimal128_from_string("1.25", &val.value.v_decimal128);
    }
    const mk_arg_t pool[MAX_ARGS] = {
        MK_STR("{ $gt: '' }"), MK_I32(7),     MK_DOC(sub),    MK_OID(&oid),
        MK_F64(-0.5),          MK_ARRAY(arr), MK_VALUE(&val), MK_DATE(-1),
    };
    mk_arg_t args[MAX_ARGS + 1];
    size_t nq = 0;
    for (size_t i = 0; i < size && nq < MAX_ARGS; i++)
        if (data[i] == '?') args[nq] = pool[nq], nq++;
    args[nq] = MK_END;

    mk_error_t err = {0};
    bool is_array = false;
    bson_t doc = BSON_INITIALIZER;
    int rc = mk_json_parse_into(&doc, (const char *)data, size, nq ? args : NULL, &is_array, &err);
    if (rc != MK_OK) {
        if (doc.len != 5) die("failure left a non-empty document", err.message, NULL);
        if (rc == MK_ERR && strncmp(err.message, "line ", 5) != 0)
            die("error without a position", err.message, NULL);
        bson_destroy(&doc);
        return 0;
    }
    if (!bson_validate(&doc, BSON_VALIDATE_UTF8 | BSON_VALIDATE_UTF8_ALLOW_NULL, NULL))
        die("invalid BSON produced", NULL, NULL);

    char *json = mk_json_from_bson(&doc);
    if (!json) die("mk_json_from_bson failed", NULL, NULL);
    bson_t again = BSON_INITIALIZER;
    if (mk_json_parse_into(&again, json, strlen(json), NULL, NULL, &err) != MK_OK)
        die("re-parse failed", err.message, json);
    char *json2 = mk_json_from_bson(&again);
    if (!json2 || strcmp(json, json2) != 0) die("round trip changed the text", json, json2);
    bson_free(json2);
    bson_free(json);
    bson_destroy(&again);
    bson_destroy(&doc);
    return 0;
}
