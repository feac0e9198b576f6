/* libFuzzer target for the update language.
 *
 * Input: "<update>\n===\n<document>[\n===\n<arrayFilters>]" in relaxed JSON. The first byte
 * of the input also picks the options (inserting, a positional match). Both texts are parsed,
 * the update compiled and applied; the result must be valid BSON within MongoDB's limits, equal
 * to the input when reported unchanged, and the upsert paths must not crash either.
 *
 *   clang -fsanitize=fuzzer,address,undefined ... fuzz/fuzz_update.c -o fuzz_update
 *   ./fuzz_update fuzz/corpus/fuzz_update */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <meerkat.h>

#include "engine/update.h"

#define SEP "\n===\n"

static char *dup_range(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static bson_t *parse(const char *text, bool array)
{
    bson_t *b = bson_new();
    bool is_array = false;
    if (mk_json_parse_into(b, text, strlen(text), NULL, array ? &is_array : NULL, NULL) != MK_OK) {
        bson_destroy(b);
        return NULL;
    }
    return b;
}

static void check_output(const bson_t *doc, const bson_t *out, bool changed)
{
    if (!bson_validate(out, BSON_VALIDATE_NONE, NULL)) abort();
    if (out->len > MK_MAX_BSON_SIZE) abort();
    if (!changed &&
        (out->len != doc->len || memcmp(bson_get_data(out), bson_get_data(doc), doc->len)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t opts = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (memchr(text, 0, len)) return 0;

    const char *sep = memmem(text, len, SEP, strlen(SEP));
    if (!sep) return 0;
    const char *doc_start = sep + strlen(SEP);
    size_t rest = len - (size_t)(doc_start - text);
    const char *sep2 = memmem(doc_start, rest, SEP, strlen(SEP));
    char *upd_text = dup_range(text, (size_t)(sep - text));
    char *doc_text = dup_range(doc_start, sep2 ? (size_t)(sep2 - doc_start) : rest);
    char *flt_text =
        sep2 ? dup_range(sep2 + strlen(SEP), rest - (size_t)(sep2 + strlen(SEP) - doc_start))
             : NULL;
    bson_t *upd = upd_text ? parse(upd_text, false) : NULL;
    bson_t *doc = doc_text ? parse(doc_text, false) : NULL;
    bson_t *flt = flt_text ? parse(flt_text, true) : NULL;

    if (upd && doc && (!flt_text || flt)) {
        mk_error_t err = {0};
        mk_update_t *u = mk_update_compile(upd, flt, &err);
        if (u) {
            mk_match_details_t md = {(opts & 2) != 0, (uint32_t)(opts >> 2)};
            bson_t out = BSON_INITIALIZER;
            bool changed = false;
            if (mk_update_apply(u, doc, &md, (opts & 1) != 0, 1700000000000LL, &out, &changed,
                                &err) == MK_OK) {
                check_output(doc, &out, changed);
                /* Applying again to the result must work the same way (or fail cleanly). */
                bson_t again = BSON_INITIALIZER;
                if (mk_update_apply(u, &out, &md, false, 1, &again, &changed, &err) == MK_OK)
                    check_output(&out, &again, changed);
                bson_destroy(&again);
            }
            bson_destroy(&out);
            /* The document as an upsert's filter. */
            bson_t up = BSON_INITIALIZER;
            if (mk_update_upsert_doc(u, doc, 5, &up, &err) == MK_OK) check_output(&up, &up, false);
            bson_destroy(&up);
            mk_update_destroy(u);
        }
        bson_t seed = BSON_INITIALIZER;
        if (mk_update_upsert_seed(doc, &seed, &err) == MK_OK) check_output(&seed, &seed, false);
        bson_destroy(&seed);
    }
    if (upd) bson_destroy(upd);
    if (doc) bson_destroy(doc);
    if (flt) bson_destroy(flt);
    free(upd_text);
    free(doc_text);
    free(flt_text);
    return 0;
}
