/* libFuzzer target for the query matcher.
 *
 * Parses the input as a relaxed-JSON filter. When it compiles, it is matched (with positions)
 * against a fixed set of varied documents and against itself as a document, and each top-level
 * value of those documents through mk_matcher_match_value. Failures to compile must carry a
 * message. Sanitizers catch the rest. */
#include <meerkat/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/matcher.h"

static const char *const doc_texts[] = {
    "{}",
    "{ a: 5, b: 'hello', c: null, d: undefined }",
    "{ a: [1, 5, [5, 6], null, 'x', { b: 1 }], b: [] }",
    "{ a: [{ b: 1, c: [1, 2] }, { b: [2, { c: 3 }] }, { d: null }, 7, [[{ b: 1 }]]] }",
    "{ a: { b: { c: [{ d: 1 }, { d: [1, 2, 3] }] }, '0': 'zero' }, '': 1, 'a.b': 2 }",
    "{ a: NumberLong('9223372036854775807'), b: -0.0, c: NaN, d: Infinity, e: -Infinity, "
    "f: NumberDecimal('1.5'), g: NumberInt(-2147483648), h: 1e308 }",
    "{ a: ObjectId('0123456789abcdef01234567'), b: ISODate('2020-01-01T00:00:00Z'), "
    "c: Timestamp(1, 2), d: /ab+c/i, e: BinData(0, 'AQID'), f: MinKey, g: MaxKey, h: true }",
    "{ a: { $symbol: 'sym' }, b: { $code: 'f()' }, c: [MinKey, MaxKey, /x/, true, false] }",
    "{ a: [[1, 2], [3, [4, [5]]]], b: [{ '0': 1, '1': [2] }], c: { '1': { '0': 'x' } } }",
    "{ name: 'Jean-Luc Picard', age: 59, tags: ['captain', 'enterprise'], "
    "comments: [{ user: 'wriker', text: 'Make it so!' }, { user: 'jpicard', score: 8.5 }] }",
    "{ a: '\xc3\xa9t\xc3\xa9', b: 'a\\u0000b', c: '', d: [''] }",
};
#define NDOCS (sizeof doc_texts / sizeof doc_texts[0])

static bson_t *docs[NDOCS];

static void load_docs(void)
{
    for (size_t i = 0; i < NDOCS; i++) {
        mk_error_t err = {0};
        docs[i] = mk_json_parse(doc_texts[i], NULL, &err);
        if (!docs[i]) {
            fprintf(stderr, "fuzz_filter: fixed document %zu does not parse: %s\n", i, err.message);
            abort();
        }
    }
}

static void match_all(const mk_matcher_t *m, const bson_t *doc)
{
    mk_match_details_t d;
    mk_error_t err = {0};
    bool a = mk_matcher_match(m, doc, &d);
    int b = mk_matcher_match_checked(m, doc, NULL, &err);
    if (b != MK_ERR && a != (b == 1)) abort(); /* the two entry points agree */
    if (!a && d.has_position) abort();
    bson_iter_t it;
    if (bson_iter_init(&it, doc))
        while (bson_iter_next(&it)) (void)mk_matcher_match_value(m, "a", bson_iter_value(&it));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!docs[0]) load_docs();
    bson_t filter = BSON_INITIALIZER;
    mk_error_t err = {0};
    if (mk_json_parse_into(&filter, (const char *)data, size, NULL, NULL, &err) != MK_OK) {
        bson_destroy(&filter);
        return 0;
    }
    mk_matcher_t *m = mk_matcher_compile(&filter, &err);
    if (!m) {
        if (!err.message[0] || !err.code) abort(); /* an error always says what is wrong */
    } else {
        for (size_t i = 0; i < NDOCS; i++) match_all(m, docs[i]);
        match_all(m, &filter);
        mk_matcher_destroy(m);
    }
    bson_destroy(&filter);
    return 0;
}
