/* The update language: every modifier, every error (code and message), positional forms,
 * arrayFilters, replacements, upsert seeds, nModified ("changed") and field order.
 *
 * Cases are table rows { doc, update, expected document | expected error }. Expected documents
 * are compared byte for byte, so value types (int vs long vs double) and field order count. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/update.h"

#define NOW 1700000000123LL /* the clock given to $currentDate */

enum { ANY = 0, YES, NO }; /* expected `changed` */

typedef struct ucase {
    const char *doc;
    const char *update;
    const char *expect; /* NULL when an error is expected */
    int code;           /* the expected error code */
    const char *msg;    /* the exact expected message (NULL: not checked) */
    int changed;
    const char *filters; /* arrayFilters as "[...]", or NULL */
    int pos1;            /* matched array position + 1 for `$` (0: none) */
    bool inserting;
} ucase_t;

static bson_t *parse_any(const char *text, bool array)
{
    bson_t *b = bson_new();
    mk_error_t err = {0};
    bool is_array = false;
    if (mk_json_parse_into(b, text, strlen(text), NULL, array ? &is_array : NULL, &err) != MK_OK) {
        print_error("cannot parse %s: %s\n", text, err.message);
        bson_destroy(b);
        return NULL;
    }
    return b;
}

static char *canon(const bson_t *b)
{
    return bson_as_canonical_extended_json(b, NULL);
}

/* Runs one case; prints what went wrong and returns false on failure. */
static bool run_case(const ucase_t *c, size_t index)
{
    bool ok = false;
    bson_t *doc = parse_any(c->doc, false), *upd = parse_any(c->update, false);
    bson_t *filters = c->filters ? parse_any(c->filters, true) : NULL;
    bson_t *want = c->expect ? parse_any(c->expect, false) : NULL;
    bson_t out = BSON_INITIALIZER;
    mk_error_t err = {0};
    bool changed = false;
    int rc = MK_ERR;
    if (!doc || !upd || (c->filters && !filters) || (c->expect && !want)) goto done;

    mk_update_t *u = mk_update_compile(upd, filters, &err);
    if (u) {
        mk_match_details_t md = {c->pos1 > 0, c->pos1 > 0 ? (uint32_t)(c->pos1 - 1) : 0};
        rc = mk_update_apply(u, doc, &md, c->inserting, NOW, &out, &changed, &err);
        mk_update_destroy(u);
    }
    if (!c->expect) {
        if (rc == MK_OK) {
            char *s = canon(&out);
            print_error("case %zu: expected error %d, got %s\n", index, c->code, s);
            bson_free(s);
        } else if (err.code != c->code || (c->msg && strcmp(err.message, c->msg) != 0)) {
            print_error("case %zu: expected error %d '%s'\n             got error %d '%s'\n", index,
                        c->code, c->msg ? c->msg : "", err.code, err.message);
        } else {
            ok = true;
        }
        goto done;
    }
    if (rc != MK_OK) {
        print_error("case %zu: %s %s: unexpected error %d %s\n", index, c->doc, c->update, err.code,
                    err.message);
        goto done;
    }
    if (out.len != want->len || memcmp(bson_get_data(&out), bson_get_data(want), want->len)) {
        char *a = canon(&out), *b = canon(want);
        print_error("case %zu: %s %s\n  actual:   %s\n  expected: %s\n", index, c->doc, c->update,
                    a, b);
        bson_free(a);
        bson_free(b);
        goto done;
    }
    if (c->changed != ANY && changed != (c->changed == YES)) {
        print_error("case %zu: %s %s: changed is %d\n", index, c->doc, c->update, changed);
        goto done;
    }
    /* Unchanged means identical. */
    if (!changed &&
        (out.len != doc->len || memcmp(bson_get_data(&out), bson_get_data(doc), doc->len))) {
        print_error("case %zu: unchanged but different\n", index);
        goto done;
    }
    ok = true;
done:
    if (doc) bson_destroy(doc);
    if (upd) bson_destroy(upd);
    if (filters) bson_destroy(filters);
    if (want) bson_destroy(want);
    bson_destroy(&out);
    return ok;
}

static void run_table(const ucase_t *cases, size_t n)
{
    int failed = 0;
    for (size_t i = 0; i < n; i++)
        if (!run_case(&cases[i], i)) failed++;
    if (failed) fail_msg("%d of %zu cases failed", failed, n);
}

/* A row expecting a document, and a row expecting an error (code, exact message or NULL). */
#define OK(doc_, update_, expect_, ...)                                                            \
    {                                                                                              \
        .doc = (doc_), .update = (update_), .expect = (expect_), __VA_ARGS__                       \
    }
#define ERR(doc_, update_, code_, msg_, ...)                                                       \
    {                                                                                              \
        .doc = (doc_), .update = (update_), .code = (code_), .msg = (msg_), __VA_ARGS__            \
    }

#define RUN(table) run_table(table, sizeof table / sizeof table[0])

/* ------------------------------------------------------------------ $set */

static const ucase_t set_cases[] = {
    OK("{_id: 1, a: 1}", "{$set: {b: 2}}", "{_id: 1, a: 1, b: 2}", .changed = YES),
    OK("{_id: 1, a: 1}", "{$set: {a: 2}}", "{_id: 1, a: 2}", .changed = YES),
    OK("{_id: 1, a: 1}", "{$set: {a: 1}}", "{_id: 1, a: 1}", .changed = NO),
    OK("{_id: 1, a: 1}", "{$set: {a: 1.0}}", "{_id: 1, a: 1.0}", .changed = YES),
    OK("{_id: 1, a: 1}", "{$set: {a: NumberLong(1)}}", "{_id: 1, a: NumberLong(1)}",
       .changed = YES),
    OK("{_id: 1, a: {b: 1}}", "{$set: {'a.c': 2}}", "{_id: 1, a: {b: 1, c: 2}}", .changed = YES),
    OK("{_id: 1}", "{$set: {'a.b.c': 1}}", "{_id: 1, a: {b: {c: 1}}}", .changed = YES),
    OK("{_id: 1, a: [1, 2]}", "{$set: {'a.5': 9}}", "{_id: 1, a: [1, 2, null, null, null, 9]}"),
    OK("{_id: 1, a: [1, 2]}", "{$set: {'a.1': 9}}", "{_id: 1, a: [1, 9]}"),
    OK("{_id: 1, a: [1, 2]}", "{$set: {'a.2.x': 9}}", "{_id: 1, a: [1, 2, {x: 9}]}"),
    OK("{_id: 1, a: [{b: 1}, {b: 2}]}", "{$set: {'a.1.b': 5}}", "{_id: 1, a: [{b: 1}, {b: 5}]}"),
    ERR("{_id: 1, a: 1}", "{$set: {'a.b': 1}}", 28, "Cannot create field 'b' in element {a: 1}"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.b': 1}}", 28,
        "Cannot create field 'b' in element {a: [ 1 ]}"),
    ERR("{_id: 1, a: null}", "{$set: {'a.b.c': 1}}", 28,
        "Cannot create field 'b' in element {a: null}"),
    ERR("{_id: 1, a: {b: 'x'}}", "{$set: {'a.b.c': 1}}", 28,
        "Cannot create field 'c' in element {b: \"x\"}"),
    OK("{_id: 1}", "{$set: {b: 1, a: 1}}", "{_id: 1, a: 1, b: 1}"),
    OK("{_id: 1}", "{$set: {'10': 1, '9': 1, a: 1, '1': 1}}",
       "{_id: 1, '1': 1, '9': 1, '10': 1, a: 1}"),
    OK("{_id: 1, z: 1}", "{$set: {a: 1}}", "{_id: 1, z: 1, a: 1}"),
    OK("{_id: 1, b: 1, d: 1}", "{$set: {d: 2, c: 1, a: 1}}", "{_id: 1, b: 1, d: 2, a: 1, c: 1}"),
    OK("{_id: 1}", "{$set: {'x.b': 1, 'x.a': 2}}", "{_id: 1, x: {a: 2, b: 1}}"),
    OK("{_id: 1, a: {b: 1}}", "{$set: {a: {c: 1}}}", "{_id: 1, a: {c: 1}}"),
    OK("{_id: 1, a: {b: 1, c: 2}}", "{$set: {a: {c: 2, b: 1}}}", "{_id: 1, a: {c: 2, b: 1}}",
       .changed = YES),
    OK("{_id: 1, a: {b: [1, {c: 2}]}}", "{$set: {a: {b: [1, {c: 2}]}}}",
       "{_id: 1, a: {b: [1, {c: 2}]}}", .changed = NO),
    OK("{_id: 1}", "{$set: {'a.0': 1}}", "{_id: 1, a: {'0': 1}}"),
    OK("{_id: 1}", "{$set: {a: []}}", "{_id: 1, a: []}"),
    OK("{_id: 1, a: 'x'}", "{$set: {a: null}}", "{_id: 1, a: null}"),
    OK("{_id: 1}", "{$set: {a: {'$b': 1}}}", "{_id: 1, a: {'$b': 1}}"),
    OK("{_id: 1}", "{$set: {'a.$b': 1}}", "{_id: 1, a: {'$b': 1}}"),
    ERR("{_id: 1}", "{$set: {'$a': 1}}", 52,
        "The dollar ($) prefixed field '$a' in '$a' is not allowed in the context of an update's "
        "replacement document. Consider using an aggregation pipeline with $replaceWith."),
    ERR("{_id: 1}", "{$set: {'$a.b': 1}}", 52,
        "The dollar ($) prefixed field '$a' in '$a' is not allowed in the context of an update's "
        "replacement document. Consider using an aggregation pipeline with $replaceWith."),
    ERR("{_id: 1}", "{$set: {'a..b': 1}}", 56,
        "The update path 'a..b' contains an empty field name, which is not allowed."),
    ERR("{_id: 1}", "{$set: {'a.': 1}}", 56,
        "The update path 'a.' contains an empty field name, which is not allowed."),
    ERR("{_id: 1}", "{$set: {'': 1}}", 56, "An empty update path is not valid."),
    ERR("{_id: 1}", "{$set: {a: 1, 'a.b': 2}}", 40,
        "Updating the path 'a.b' would create a conflict at 'a'"),
    ERR("{_id: 1}", "{$set: {'a.b': 2, a: 1}}", 40,
        "Updating the path 'a' would create a conflict at 'a'"),
    ERR("{_id: 1}", "{$set: {'a.b.c': 2, 'a.b': 1}}", 40,
        "Updating the path 'a.b' would create a conflict at 'a.b'"),
    ERR("{_id: 1}", "{$set: {a: 1}, $inc: {a: 1}}", 40,
        "Updating the path 'a' would create a conflict at 'a'"),
    ERR("{_id: 1}", "{$set: {'a.b': 1}, $unset: {'a.b.c': 1}}", 40,
        "Updating the path 'a.b.c' would create a conflict at 'a.b'"),
    OK("{_id: 1}", "{$set: {'a.b': 1, 'a.c': 1, 'ab': 1}}", "{_id: 1, a: {b: 1, c: 1}, ab: 1}"),
    OK("{_id: 1, a: 1}", "{$set: {}}", "{_id: 1, a: 1}", .changed = NO),
    OK("{_id: 1, a: 1}", "{$set: {}, $unset: {}, $inc: {}}", "{_id: 1, a: 1}", .changed = NO),
    ERR("{_id: 1}", "{$set: 1}", 9,
        "Modifiers operate on fields but we found type int instead. For example: {$mod: {<field>: "
        "...}} not {$set: 1}"),
    ERR("{_id: 1}", "{$set: [1]}", 9,
        "Modifiers operate on fields but we found type array instead. For example: {$mod: "
        "{<field>: ...}} not {$set: [ 1 ]}"),
    ERR("{_id: 1}", "{$foo: {a: 1}}", 9,
        "Unknown modifier: $foo. Expected a valid update modifier or pipeline-style update "
        "specified as an array"),
    ERR("{_id: 1}", "{$set: {a: 1}, b: 2}", 9,
        "Unknown modifier: b. Expected a valid update modifier or pipeline-style update specified "
        "as an array"),
    ERR("{_id: 1}", "{$set: {_id: 2}}", 66,
        "Performing an update on the path '_id' would modify the immutable field '_id'"),
    OK("{_id: 1, a: 1}", "{$set: {_id: 1, a: 2}}", "{_id: 1, a: 2}"),
    ERR("{_id: 1}", "{$set: {_id: 1.0}}", 66,
        "Performing an update on the path '_id' would modify the immutable field '_id'"),
    ERR("{_id: {a: 0}}", "{$set: {'_id.a': 1}}", 66,
        "Performing an update on the path '_id.a' would modify the immutable field '_id'"),
    ERR("{_id: {a: 0}}", "{$set: {'_id.b': 1}}", 66,
        "Updating the path '_id' to _id: { a: 0, b: 1 } would modify the immutable field '_id'"),
    OK("{a: 1}", "{$set: {_id: 5}}", "{_id: 5, a: 1}", .inserting = true),
    OK("{_id: 1, a: 1}", "{$setOnInsert: {a: 2, b: 2}}", "{_id: 1, a: 1}", .changed = NO),
    OK("{_id: 1, a: 1}", "{$setOnInsert: {a: 2, b: 2}}", "{_id: 1, a: 2, b: 2}", .changed = YES,
       .inserting = true),
    ERR("{_id: 1}", "{$set: {a: 1}, $setOnInsert: {a: 2}}", 40,
        "Updating the path 'a' would create a conflict at 'a'"),
    OK("{_id: 1, name: {first: 'Will', last: 'Riker'}, rank: 'Commander'}",
       "{$set: {'name.first': 'Thomas', rank: 'Lieutenant'}}",
       "{_id: 1, name: {first: 'Thomas', last: 'Riker'}, rank: 'Lieutenant'}"),
};

static void test_set(void **state)
{
    RUN(set_cases);
}

/* ------------------------------------------------------------------ $unset */

static const ucase_t unset_cases[] = {
    OK("{_id: 1, a: 1, b: 2}", "{$unset: {a: ''}}", "{_id: 1, b: 2}", .changed = YES),
    OK("{_id: 1, a: 1}", "{$unset: {b: 1}}", "{_id: 1, a: 1}", .changed = NO),
    OK("{_id: 1, a: 1}", "{$unset: {'a.b': 1}}", "{_id: 1, a: 1}", .changed = NO),
    OK("{_id: 1, a: [1]}", "{$unset: {'a.b': 1}}", "{_id: 1, a: [1]}", .changed = NO),
    OK("{_id: 1, a: [1, 2, 3]}", "{$unset: {'a.1': 1}}", "{_id: 1, a: [1, null, 3]}",
       .changed = YES),
    OK("{_id: 1, a: [1, null]}", "{$unset: {'a.1': 1}}", "{_id: 1, a: [1, null]}", .changed = NO),
    OK("{_id: 1, a: [1, 2]}", "{$unset: {'a.5': 1}}", "{_id: 1, a: [1, 2]}", .changed = NO),
    OK("{_id: 1, a: {b: 1, c: 2}}", "{$unset: {'a.b': 1}}", "{_id: 1, a: {c: 2}}"),
    OK("{_id: 1, a: {b: 1}}", "{$unset: {a: 1, c: 1}}", "{_id: 1}"),
    OK("{_id: 1, age: 29, name: 'Will Riker'}", "{$unset: {age: 1}}",
       "{_id: 1, name: 'Will Riker'}"),
    ERR("{_id: 1}", "{$unset: {_id: 1}}", 66,
        "Performing an update on the path '_id' would modify the immutable field '_id'"),
    OK("{_id: 1, a: 1}", "{$unset: {a: 1}, $set: {b: 1}}", "{_id: 1, b: 1}"),
};

static void test_unset(void **state)
{
    RUN(unset_cases);
}

/* ------------------------------------------------------------------ $inc $mul */

static const ucase_t arith_cases[] = {
    OK("{_id: 1, a: 1}", "{$inc: {a: 2}}", "{_id: 1, a: 3}", .changed = YES),
    OK("{_id: 1, a: 29}", "{$inc: {a: -1}}", "{_id: 1, a: 28}"),
    OK("{_id: 1, a: 2147483647}", "{$inc: {a: 1}}", "{_id: 1, a: NumberLong(2147483648)}"),
    OK("{_id: 1, a: -2147483648}", "{$inc: {a: -1}}", "{_id: 1, a: NumberLong(-2147483649)}"),
    ERR("{_id: 1, a: NumberLong(9223372036854775807)}", "{$inc: {a: 1}}", 2,
        "Failed to apply $inc operations to current value ((NumberLong)9223372036854775807) for "
        "document {_id: 1}"),
    ERR("{_id: 1, a: 5}", "{$inc: {a: NumberLong(9223372036854775807)}}", 2,
        "Failed to apply $inc operations to current value ((NumberInt)5) for document {_id: 1}"),
    OK("{_id: 1, a: 1}", "{$inc: {a: 1.5}}", "{_id: 1, a: 2.5}"),
    OK("{_id: 1, a: 1.5}", "{$inc: {a: 1}}", "{_id: 1, a: 2.5}"),
    OK("{_id: 1, a: 1}", "{$inc: {a: NumberLong(1)}}", "{_id: 1, a: NumberLong(2)}"),
    OK("{_id: 1, a: NumberLong(1)}", "{$inc: {a: 1}}", "{_id: 1, a: NumberLong(2)}"),
    OK("{_id: 1, a: 5}", "{$inc: {a: 0}}", "{_id: 1, a: 5}", .changed = NO),
    OK("{_id: 1, a: 5.5}", "{$inc: {a: 0}}", "{_id: 1, a: 5.5}", .changed = NO),
    OK("{_id: 1, a: 5}", "{$inc: {a: NumberLong(0)}}", "{_id: 1, a: NumberLong(5)}",
       .changed = YES),
    OK("{_id: 1, a: 5}", "{$inc: {a: 0.0}}", "{_id: 1, a: 5.0}", .changed = YES),
    OK("{_id: 1}", "{$inc: {b: 5}}", "{_id: 1, b: 5}", .changed = YES),
    OK("{_id: 1}", "{$inc: {b: NumberLong(5)}}", "{_id: 1, b: NumberLong(5)}"),
    OK("{_id: 1}", "{$inc: {b: 0}}", "{_id: 1, b: 0}", .changed = YES),
    OK("{_id: 1, a: {b: 1}}", "{$inc: {'a.b': 1, 'a.c': 1}}", "{_id: 1, a: {b: 2, c: 1}}"),
    ERR("{_id: 1, a: 'x'}", "{$inc: {a: 1}}", 14,
        "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 'a' of "
        "non-numeric type string"),
    ERR("{_id: ObjectId('5f0000000000000000000001'), a: {b: null}}", "{$inc: {'a.b': 1}}", 14,
        "Cannot apply $inc to a value of non-numeric type. {_id: "
        "ObjectId('5f0000000000000000000001')} has the field 'b' of non-numeric type null"),
    ERR("{a: true}", "{$inc: {a: 1}}", 14,
        "Cannot apply $inc to a value of non-numeric type. {no id} has the field 'a' of "
        "non-numeric "
        "type bool"),
    ERR("{_id: 1}", "{$inc: {a: 'x'}}", 14,
        "Cannot increment with non-numeric argument: {a: \"x\"}"),
    ERR("{_id: 1}", "{$inc: {'a.b': null}}", 14,
        "Cannot increment with non-numeric argument: {a.b: null}"),
    ERR("{_id: 1, a: 1}", "{$inc: {'a.b': 1}}", 28, "Cannot create field 'b' in element {a: 1}"),
    OK("{_id: 1, a: 3}", "{$mul: {a: 2}}", "{_id: 1, a: 6}"),
    OK("{_id: 1, a: 29}", "{$mul: {a: 2}}", "{_id: 1, a: 58}"),
    OK("{_id: 1, a: 65536}", "{$mul: {a: 65536}}", "{_id: 1, a: NumberLong(4294967296)}"),
    OK("{_id: 1, a: 2}", "{$mul: {a: 1.5}}", "{_id: 1, a: 3.0}"),
    OK("{_id: 1, a: NumberLong(2)}", "{$mul: {a: 3}}", "{_id: 1, a: NumberLong(6)}"),
    OK("{_id: 1}", "{$mul: {b: 5}}", "{_id: 1, b: 0}", .changed = YES),
    OK("{_id: 1}", "{$mul: {b: NumberLong(5)}}", "{_id: 1, b: NumberLong(0)}"),
    OK("{_id: 1}", "{$mul: {b: 2.5}}", "{_id: 1, b: 0.0}"),
    OK("{_id: 1, a: 5}", "{$mul: {a: 1}}", "{_id: 1, a: 5}", .changed = NO),
    ERR("{_id: 1, a: NumberLong(4611686018427387904)}", "{$mul: {a: 4}}", 2,
        "Failed to apply $mul operations to current value ((NumberLong)4611686018427387904) for "
        "document {_id: 1}"),
    ERR("{_id: 1}", "{$mul: {a: 'x'}}", 14,
        "Cannot multiply with non-numeric argument: {a: \"x\"}"),
    ERR("{_id: 1, a: [1]}", "{$mul: {a: 2}}", 14,
        "Cannot apply $mul to a value of non-numeric type. {_id: 1} has the field 'a' of "
        "non-numeric type array"),
    /* Decimal128: IEEE 754-2008 decimal arithmetic, 34 digits, half to even. */
    OK("{_id: 1, a: NumberDecimal('1.5')}", "{$inc: {a: 1}}", "{_id: 1, a: NumberDecimal('2.5')}"),
    OK("{_id: 1, a: NumberDecimal('0.1')}", "{$inc: {a: NumberDecimal('0.2')}}",
       "{_id: 1, a: NumberDecimal('0.3')}"),
    OK("{_id: 1, a: NumberDecimal('1.50')}", "{$inc: {a: NumberDecimal('1')}}",
       "{_id: 1, a: NumberDecimal('2.50')}"),
    OK("{_id: 1, a: 1}", "{$inc: {a: NumberDecimal('1.5')}}", "{_id: 1, a: NumberDecimal('2.5')}"),
    OK("{_id: 1, a: NumberLong(-3)}", "{$inc: {a: NumberDecimal('1.5')}}",
       "{_id: 1, a: NumberDecimal('-1.5')}"),
    /* a double becomes a decimal of 15 significant digits first, as MongoDB does */
    OK("{_id: 1, a: 1.5}", "{$inc: {a: NumberDecimal('1')}}",
       "{_id: 1, a: NumberDecimal('2.50000000000000')}"),
    OK("{_id: 1, a: NumberDecimal('0')}", "{$inc: {a: 0.1}}",
       "{_id: 1, a: NumberDecimal('0.100000000000000')}"),
    OK("{_id: 1, a: NumberDecimal('9999999999999999999999999999999999')}", "{$inc: {a: 1}}",
       "{_id: 1, a: NumberDecimal('1.000000000000000000000000000000000E+34')}"),
    OK("{_id: 1, a: NumberDecimal('1.000000000000000000000000000000001')}",
       "{$mul: {a: NumberDecimal('1.000000000000000000000000000000001')}}",
       "{_id: 1, a: NumberDecimal('1.000000000000000000000000000000002')}"),
    OK("{_id: 1, a: NumberDecimal('1.5')}", "{$mul: {a: 2}}", "{_id: 1, a: NumberDecimal('3.0')}"),
    OK("{_id: 1, a: NumberDecimal('1.0')}", "{$inc: {a: NumberDecimal('0.00')}}",
       "{_id: 1, a: NumberDecimal('1.0')}", .changed = NO),
    OK("{_id: 1, a: NumberDecimal('2')}", "{$inc: {a: NumberDecimal('-2')}}",
       "{_id: 1, a: NumberDecimal('0')}"),
    OK("{_id: 1}", "{$mul: {b: NumberDecimal('-2.50')}}", "{_id: 1, b: NumberDecimal('-0.00')}"),
    OK("{_id: 1, a: NumberDecimal('9.999999999999999999999999999999999E+6144')}", "{$mul: {a: 10}}",
       "{_id: 1, a: NumberDecimal('Infinity')}"),
    OK("{_id: 1, a: NumberDecimal('1E-6176')}", "{$mul: {a: NumberDecimal('0.1')}}",
       "{_id: 1, a: NumberDecimal('0E-6176')}"),
    OK("{_id: 1, a: NumberDecimal('NaN')}", "{$inc: {a: 1}}", "{_id: 1, a: NumberDecimal('NaN')}"),
    OK("{_id: 1}", "{$inc: {a: NumberDecimal('1.5')}}", "{_id: 1, a: NumberDecimal('1.5')}"),
};

static void test_arith(void **state)
{
    RUN(arith_cases);
}

/* ------------------------------------------------------------------ $min $max $currentDate */

static const ucase_t compare_cases[] = {
    OK("{_id: 1, a: 5}", "{$min: {a: 3}}", "{_id: 1, a: 3}", .changed = YES),
    OK("{_id: 1, a: 5}", "{$min: {a: 7}}", "{_id: 1, a: 5}", .changed = NO),
    OK("{_id: 1, a: 5}", "{$max: {a: 7}}", "{_id: 1, a: 7}", .changed = YES),
    OK("{_id: 1, a: 5}", "{$max: {a: 3}}", "{_id: 1, a: 5}", .changed = NO),
    OK("{_id: 1, a: 5}", "{$min: {a: 5.0}}", "{_id: 1, a: 5}", .changed = NO),
    OK("{_id: 1, a: 42}", "{$min: {a: 'a'}}", "{_id: 1, a: 42}", .changed = NO),
    OK("{_id: 1, a: 42}", "{$min: {a: null}}", "{_id: 1, a: null}", .changed = YES),
    OK("{_id: 1, a: 42}", "{$max: {a: 'a'}}", "{_id: 1, a: 'a'}"),
    OK("{_id: 1}", "{$min: {a: 30}}", "{_id: 1, a: 30}", .changed = YES),
    OK("{_id: 1, age: 29}", "{$min: {age: 30}}", "{_id: 1, age: 29}", .changed = NO),
    OK("{_id: 1, age: 29}", "{$min: {age: 28}}", "{_id: 1, age: 28}"),
    OK("{_id: 1, d: new Date(5)}", "{$max: {d: new Date(9)}}", "{_id: 1, d: new Date(9)}"),
    OK("{_id: 1}", "{$currentDate: {d: true}}", "{_id: 1, d: new Date(1700000000123)}"),
    OK("{_id: 1, d: 1}", "{$currentDate: {d: false}}", "{_id: 1, d: new Date(1700000000123)}"),
    OK("{_id: 1}", "{$currentDate: {d: {$type: 'date'}}}", "{_id: 1, d: new Date(1700000000123)}"),
    OK("{_id: 1}", "{$currentDate: {t: {$type: 'timestamp'}}}",
       "{_id: 1, t: Timestamp(1700000000, 124)}"),
    OK("{_id: 1, d: new Date(1700000000123)}", "{$currentDate: {d: true}}",
       "{_id: 1, d: new Date(1700000000123)}"),
    ERR("{_id: 1}", "{$currentDate: {d: 1}}", 2,
        "int is not valid type for $currentDate. Please use a boolean ('true') or a $type "
        "expression ({$type: 'timestamp/date'})."),
    ERR("{_id: 1}", "{$currentDate: {d: {$type: 'foo'}}}", 2,
        "The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : "
        "{$type: 'date'}}}"),
    ERR("{_id: 1}", "{$currentDate: {d: {x: 1}}}", 2, "Unrecognized $currentDate option: x"),
};

static void test_compare_and_date(void **state)
{
    RUN(compare_cases);
}

/* ------------------------------------------------------------------ $rename */

static const ucase_t rename_cases[] = {
    OK("{_id: 1, a: 1, b: 2, c: 3}", "{$rename: {a: 'z'}}", "{_id: 1, b: 2, c: 3, z: 1}",
       .changed = YES),
    OK("{_id: 1, a: 1, b: 2}", "{$rename: {a: 'b'}}", "{_id: 1, b: 1}"),
    OK("{_id: 1, a: 1}", "{$rename: {x: 'y'}}", "{_id: 1, a: 1}", .changed = NO),
    OK("{_id: 1, a: {b: 1}}", "{$rename: {'a.b': 'c'}}", "{_id: 1, a: {}, c: 1}"),
    OK("{_id: 1, a: {x: 1}, b: 1}", "{$rename: {a: 'c.d'}}", "{_id: 1, b: 1, c: {d: {x: 1}}}"),
    OK("{_id: 1, a: 1, b: {c: 2}}", "{$rename: {a: 'b.d'}}", "{_id: 1, b: {c: 2, d: 1}}"),
    OK("{_id: 1, a: 1, b: 1}", "{$rename: {a: 'b'}}", "{_id: 1, b: 1}", .changed = YES),
    ERR("{_id: 1, a: 1}", "{$rename: {a: 'a'}}", 2,
        "The source and target field for $rename must differ: a: \"a\""),
    ERR("{_id: 1, a: 1}", "{$rename: {a: 'a.b'}}", 2,
        "The source and target field for $rename must not be on the same path: a: \"a.b\""),
    ERR("{_id: 1, a: 1}", "{$rename: {'a.b': 'a'}}", 2,
        "The source and target field for $rename must not be on the same path: a.b: \"a\""),
    ERR("{_id: 1, a: 1}", "{$rename: {a: 1}}", 2,
        "The 'to' field for $rename must be a string: a: 1"),
    ERR("{_id: 1, a: 1}", "{$rename: {_id: 'x'}}", 66,
        "Performing an update on the path '_id' would modify the immutable field '_id'"),
    OK("{_id: 1, a: 1}", "{$rename: {a: '_id'}}", "{_id: 1}", .changed = YES),
    ERR("{_id: 1, a: 2}", "{$rename: {a: '_id'}}", 66,
        "Performing an update on the path '_id' would modify the immutable field '_id'"),
    ERR("{_id: 1, a: [{b: 1}]}", "{$rename: {'a.0.b': 'c'}}", 2,
        "The source field cannot be an array element, 'a.0.b' in doc with _id: 1 has an array "
        "field "
        "called 'a'"),
    ERR("{_id: 1, a: [1], b: 1}", "{$rename: {b: 'a.0'}}", 2,
        "The destination field cannot be an array element, 'a.0' in doc with _id: 1 has an array "
        "field called 'a'"),
    ERR("{_id: 1, a: [1], b: 1}", "{$rename: {b: 'a.5'}}", 2,
        "The destination field cannot be an array element, 'a.5' in doc with _id: 1 has an array "
        "field called 'a'"),
    ERR("{_id: 1, a: 1}", "{$rename: {'a.$': 'b'}}", 2,
        "The source field for $rename may not be dynamic: a.$"),
    ERR("{_id: 1, a: 1}", "{$rename: {a: 'b.$[]'}}", 2,
        "The destination field for $rename may not be dynamic: b.$[]"),
    ERR("{_id: 1, a: 1}", "{$rename: {'a.b': 'c'}}", 28,
        "Cannot use the part (b) of (a.b) to traverse the element ({a: 1})"),
    ERR("{_id: 1, a: 1}", "{$rename: {a: 'b'}, $set: {b: 1}}", 40,
        "Updating the path 'b' would create a conflict at 'b'"),
    ERR("{_id: 1, a: 1}", "{$rename: {a: 'b'}, $set: {a: 1}}", 40,
        "Updating the path 'a' would create a conflict at 'a'"),
    OK("{_id: 1, a: 1, z: 1}", "{$rename: {z: 'b'}, $set: {a: 2}}", "{_id: 1, a: 2, b: 1}"),
    ERR("{_id: 1, a: 1, b: 1}", "{$rename: {a: 'b.c'}}", 28,
        "Cannot create field 'c' in element {b: 1}"),
};

static void test_rename(void **state)
{
    RUN(rename_cases);
}

/* ------------------------------------------------------------------ $push */

static const ucase_t push_cases[] = {
    OK("{_id: 1, tags: ['Node.js']}", "{$push: {tags: 'MongoDB'}}",
       "{_id: 1, tags: ['Node.js', 'MongoDB']}", .changed = YES),
    OK("{_id: 1}", "{$push: {a: 1}}", "{_id: 1, a: [1]}", .changed = YES),
    OK("{_id: 1, a: [1]}", "{$push: {a: [2]}}", "{_id: 1, a: [1, [2]]}"),
    OK("{_id: 1, a: [1]}", "{$push: {a: {b: 1}}}", "{_id: 1, a: [1, {b: 1}]}"),
    OK("{_id: 1, a: [1]}", "{$push: {a: {$slice: 1}}}", "{_id: 1, a: [1, {'$slice': 1}]}"),
    ERR("{_id: 1, a: 1}", "{$push: {a: 2}}", 2,
        "The field 'a' must be an array but is of type int in document {_id: 1}"),
    ERR("{_id: 1, x: {a: 'v'}}", "{$push: {'x.a': 2}}", 2,
        "The field 'x.a' must be an array but is of type string in document {_id: 1}"),
    OK("{_id: 1, a: [1]}", "{$push: {a: {$each: [2, 3]}}}", "{_id: 1, a: [1, 2, 3]}"),
    OK("{_id: 1, a: [1]}", "{$push: {a: {$each: []}}}", "{_id: 1, a: [1]}", .changed = NO),
    OK("{_id: 1}", "{$push: {a: {$each: []}}}", "{_id: 1, a: []}", .changed = YES),
    OK("{_id: 1, a: [3, 1, 2]}", "{$push: {a: {$each: [], $sort: 1}}}", "{_id: 1, a: [1, 2, 3]}",
       .changed = YES),
    OK("{_id: 1, a: [1, 2, 3]}", "{$push: {a: {$each: [], $sort: 1}}}", "{_id: 1, a: [1, 2, 3]}",
       .changed = NO),
    OK("{_id: 1, a: [3, 1]}", "{$push: {a: {$each: [2], $sort: -1}}}", "{_id: 1, a: [3, 2, 1]}"),
    OK("{_id: 1, a: [1, 2]}", "{$push: {a: {$each: [9], $position: 0}}}", "{_id: 1, a: [9, 1, 2]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$push: {a: {$each: [8, 9], $position: 1}}}",
       "{_id: 1, a: [1, 8, 9, 2, 3]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$push: {a: {$each: [9], $position: -1}}}",
       "{_id: 1, a: [1, 2, 9, 3]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$push: {a: {$each: [9], $position: -5}}}",
       "{_id: 1, a: [9, 1, 2, 3]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$push: {a: {$each: [9], $position: 10}}}",
       "{_id: 1, a: [1, 2, 3, 9]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$push: {a: {$each: [9], $position: 2.0}}}",
       "{_id: 1, a: [1, 2, 9, 3]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$push: {a: {$each: [4], $slice: 2}}}", "{_id: 1, a: [1, 2]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$push: {a: {$each: [4], $slice: -2}}}", "{_id: 1, a: [3, 4]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$push: {a: {$each: [4], $slice: 0}}}", "{_id: 1, a: []}"),
    OK("{_id: 1, a: [1, 2]}", "{$push: {a: {$each: [], $slice: 5}}}", "{_id: 1, a: [1, 2]}",
       .changed = NO),
    OK("{_id: 1, a: [1, 2]}", "{$push: {a: {$each: [], $slice: 1}}}", "{_id: 1, a: [1]}",
       .changed = YES),
    OK("{_id: 1}", "{$push: {a: {$each: [3, 1, 2], $sort: 1, $slice: 2}}}", "{_id: 1, a: [1, 2]}"),
    OK("{_id: 1, q: [{s: 8}, {s: 3}]}",
       "{$push: {q: {$each: [{s: 5}], $sort: {s: -1}, $slice: 2}}}",
       "{_id: 1, q: [{s: 8}, {s: 5}]}"),
    OK("{_id: 1, q: [{x: {y: 2}}, {x: {y: 1}}, 7, {z: 1}]}",
       "{$push: {q: {$each: [], $sort: {'x.y': 1}}}}",
       "{_id: 1, q: [7, {z: 1}, {x: {y: 1}}, {x: {y: 2}}]}"),
    OK("{_id: 1, q: [{a: 1, b: 2}, {a: 1, b: 1}, {a: 0, b: 3}]}",
       "{$push: {q: {$each: [], $sort: {a: 1, b: -1}}}}",
       "{_id: 1, q: [{a: 0, b: 3}, {a: 1, b: 2}, {a: 1, b: 1}]}"),
    OK("{_id: 1, a: [3, 'a', 1, null, {}]}", "{$push: {a: {$each: [], $sort: 1}}}",
       "{_id: 1, a: [null, 1, 3, 'a', {}]}"),
    OK("{_id: 1, q: [{k: 1, n: 'a'}, {k: 0, n: 'b'}, {k: 1, n: 'c'}, {k: 0, n: 'd'}]}",
       "{$push: {q: {$each: [], $sort: {k: 1}}}}",
       "{_id: 1, q: [{k: 0, n: 'b'}, {k: 0, n: 'd'}, {k: 1, n: 'a'}, {k: 1, n: 'c'}]}"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: 1}}}", 2,
        "The argument to $each in $push must be an array but it was of type: int"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $foo: 1}}}", 2,
        "Unrecognized clause in $push: $foo"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $slice: 'x'}}}", 2,
        "The value for $slice must be an integer value but was given type: string"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $slice: 1.5}}}", 2,
        "The value for $slice must be an integer value but was given type: double"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $sort: 2}}}", 2,
        "The $sort element value must be either 1 or -1"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $sort: {x: 0}}}}", 2,
        "The $sort element value must be either 1 or -1"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $sort: {}}}}", 2,
        "The $sort pattern is empty when it should be a set of fields."),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $sort: 'x'}}}", 2,
        "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort "
        "embedded "
        "fields"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $sort: {'a..b': 1}}}}", 2,
        "The $sort field is a dotted field but has an empty part: a..b"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $position: 'x'}}}", 2,
        "The value for $position must be an integer value, not of type: string"),
    ERR("{_id: 1, a: []}", "{$push: {a: {$each: [1], $each: [2]}}}", 2,
        "Only one $each is supported."),
    ERR("{_id: 1, a: [{b: 1}]}", "{$push: {'a.b': 1}}", 28,
        "Cannot create field 'b' in element {a: [ { b: 1 } ]}"),
    OK("{_id: 1, a: [[1], [2]]}", "{$push: {'a.1': 3}}", "{_id: 1, a: [[1], [2, 3]]}"),
};

static void test_push(void **state)
{
    RUN(push_cases);
}

/* ------------------------------------------------------------------ $addToSet $pop */

static const ucase_t set_like_cases[] = {
    OK("{_id: 1, tags: ['Node.js']}", "{$addToSet: {tags: 'MongoDB'}}",
       "{_id: 1, tags: ['Node.js', 'MongoDB']}", .changed = YES),
    OK("{_id: 1, tags: ['Node.js', 'MongoDB']}", "{$addToSet: {tags: 'MongoDB'}}",
       "{_id: 1, tags: ['Node.js', 'MongoDB']}", .changed = NO),
    OK("{_id: 1, a: ['a']}", "{$addToSet: {a: {$each: ['a', 'c', 'c', 'd']}}}",
       "{_id: 1, a: ['a', 'c', 'd']}"),
    OK("{_id: 1, c: [{user: 'j', comment: 'x'}]}", "{$addToSet: {c: {user: 'j', comment: 'x'}}}",
       "{_id: 1, c: [{user: 'j', comment: 'x'}]}", .changed = NO),
    OK("{_id: 1, c: [{user: 'j', comment: 'x'}]}", "{$addToSet: {c: {comment: 'x', user: 'j'}}}",
       "{_id: 1, c: [{user: 'j', comment: 'x'}, {comment: 'x', user: 'j'}]}", .changed = YES),
    OK("{_id: 1, c: [{user: 'j', comment: 'x'}]}", "{$addToSet: {c: {user: 'j'}}}",
       "{_id: 1, c: [{user: 'j', comment: 'x'}, {user: 'j'}]}"),
    OK("{_id: 1, a: [1]}", "{$addToSet: {a: 1.0}}", "{_id: 1, a: [1]}", .changed = NO),
    OK("{_id: 1, a: [1]}", "{$addToSet: {a: {$each: []}}}", "{_id: 1, a: [1]}", .changed = NO),
    OK("{_id: 1}", "{$addToSet: {a: {$each: [1, 1.0, 2]}}}", "{_id: 1, a: [1, 2]}", .changed = YES),
    OK("{_id: 1}", "{$addToSet: {a: 'x'}}", "{_id: 1, a: ['x']}"),
    OK("{_id: 1, a: [1]}", "{$addToSet: {a: [1]}}", "{_id: 1, a: [1, [1]]}"),
    OK("{_id: 1, a: [1]}", "{$addToSet: {a: {b: 1, $each: [2]}}}",
       "{_id: 1, a: [1, {b: 1, '$each': [2]}]}"),
    ERR("{_id: 1, a: 1}", "{$addToSet: {a: 2}}", 2,
        "Cannot apply $addToSet to non-array field. Field named 'a' has non-array type int"),
    ERR("{_id: 1, a: []}", "{$addToSet: {a: {$each: 1}}}", 14,
        "The argument to $each in $addToSet must be an array but it was of type int"),
    ERR("{_id: 1, a: []}", "{$addToSet: {a: {$each: [1], x: 1}}}", 2,
        "Found unexpected fields after $each in $addToSet: { $each: [ 1 ], x: 1 }"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$pop: {a: 1}}", "{_id: 1, a: [1, 2]}", .changed = YES),
    OK("{_id: 1, a: [1, 2, 3]}", "{$pop: {a: -1}}", "{_id: 1, a: [2, 3]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$pop: {a: 1.0}}", "{_id: 1, a: [1, 2]}"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$pop: {a: NumberLong(-1)}}", "{_id: 1, a: [2, 3]}"),
    OK("{_id: 1, a: []}", "{$pop: {a: 1}}", "{_id: 1, a: []}", .changed = NO),
    OK("{_id: 1}", "{$pop: {a: 1}}", "{_id: 1}", .changed = NO),
    OK("{_id: 1, a: {}}", "{$pop: {'a.b': 1}}", "{_id: 1, a: {}}", .changed = NO),
    OK("{_id: 1, a: [1]}", "{$pop: {'a.3': 1}}", "{_id: 1, a: [1]}", .changed = NO),
    ERR("{_id: 1, a: 1}", "{$pop: {a: 1}}", 14,
        "Path 'a' contains an element of non-array type 'int'"),
    ERR("{_id: 1, a: 1}", "{$pop: {'a.b': 1}}", 28,
        "Cannot use the part (b) of (a.b) to traverse the element ({a: 1})"),
    ERR("{_id: 1, a: [1]}", "{$pop: {'a.b': 1}}", 28,
        "Cannot use the part (b) of (a.b) to traverse the element ({a: [ 1 ]})"),
    ERR("{_id: 1, a: []}", "{$pop: {a: 2}}", 9, "$pop expects 1 or -1, found: 2"),
    ERR("{_id: 1, a: []}", "{$pop: {a: 0}}", 9, "$pop expects 1 or -1, found: 0"),
    ERR("{_id: 1, a: []}", "{$pop: {a: 'x'}}", 9, "Expected a number in: a: \"x\""),
    ERR("{_id: 1, a: []}", "{$pop: {a: 1.5}}", 9, "Expected an integer: a: 1.5"),
};

static void test_add_to_set_and_pop(void **state)
{
    RUN(set_like_cases);
}

/* ------------------------------------------------------------------ $pull $pullAll $bit */

static const ucase_t pull_cases[] = {
    OK("{_id: 1, votes: [3, 5, 6, 7, 7, 8]}", "{$pull: {votes: {$gte: 6}}}",
       "{_id: 1, votes: [3, 5]}", .changed = YES),
    OK("{_id: 1, a: [1, 2, 1, 3]}", "{$pull: {a: 1}}", "{_id: 1, a: [2, 3]}"),
    OK("{_id: 1, a: [1, 2.0, NumberLong(2)]}", "{$pull: {a: 2}}", "{_id: 1, a: [1]}"),
    OK("{_id: 1, a: [1, 2]}", "{$pull: {a: 5}}", "{_id: 1, a: [1, 2]}", .changed = NO),
    OK("{_id: 1}", "{$pull: {a: 5}}", "{_id: 1}", .changed = NO),
    OK("{_id: 1, results: [{item: 'A', score: 5}, {item: 'B', score: 8}, {item: 'C', score: 8}]}",
       "{$pull: {results: {score: 8, item: 'B'}}}",
       "{_id: 1, results: [{item: 'A', score: 5}, {item: 'C', score: 8}]}"),
    OK("{_id: 1, results: [{item: 'A', score: 5}, {item: 'B', score: 8}, 8]}",
       "{$pull: {results: {score: 8}}}", "{_id: 1, results: [{item: 'A', score: 5}, 8]}"),
    OK("{_id: 1, r: [{s: 5, q: [1, 2]}, {s: 9, q: [3]}]}", "{$pull: {r: {s: {$gt: 6}}}}",
       "{_id: 1, r: [{s: 5, q: [1, 2]}]}"),
    OK("{_id: 1, r: [{a: [1, 5]}, {a: [2]}]}", "{$pull: {r: {a: 5}}}", "{_id: 1, r: [{a: [2]}]}"),
    OK("{_id: 1, a: [1, {x: 1}, 'a', {}]}", "{$pull: {a: {}}}", "{_id: 1, a: [1, 'a']}"),
    OK("{_id: 1, f: ['apple', 'banana', 'avocado']}", "{$pull: {f: /^a/}}",
       "{_id: 1, f: ['banana']}"),
    OK("{_id: 1, f: ['a', 'b', 'c']}", "{$pull: {f: {$in: ['a', 'c']}}}", "{_id: 1, f: ['b']}"),
    OK("{_id: 1, f: ['a', 'b', 'c']}", "{$pull: {f: {$nin: ['a']}}}", "{_id: 1, f: ['a']}"),
    OK("{_id: 1, a: [[1, 2], [3]]}", "{$pull: {a: {$elemMatch: {$gt: 2}}}}",
       "{_id: 1, a: [[1, 2]]}"),
    OK("{_id: 1, a: [{b: 1}, {b: 2}]}", "{$pull: {a: {$or: [{b: 1}, {b: 3}]}}}",
       "{_id: 1, a: [{b: 2}]}"),
    OK("{_id: 1, a: [1, 2, null]}", "{$pull: {a: null}}", "{_id: 1, a: [1, 2]}"),
    OK("{_id: 1, a: {b: [1, 2]}}", "{$pull: {'a.b': 2}}", "{_id: 1, a: {b: [1]}}"),
    ERR("{_id: 1, a: 1}", "{$pull: {a: 1}}", 2, "Cannot apply $pull to a non-array value"),
    ERR("{_id: 1, a: 1}", "{$pullAll: {a: [1]}}", 2, "Cannot apply $pull to a non-array value"),
    ERR("{_id: 1, a: 1}", "{$pull: {'a.b': 1}}", 28,
        "Cannot use the part (b) of (a.b) to traverse the element ({a: 1})"),
    OK("{_id: 1, a: [0, 2, 5, 5, 1, 0]}", "{$pullAll: {a: [0, 5]}}", "{_id: 1, a: [2, 1]}",
       .changed = YES),
    OK("{_id: 1, a: [1]}", "{$pullAll: {a: [1.0]}}", "{_id: 1, a: []}"),
    OK("{_id: 1, a: [[1], {b: 1}]}", "{$pullAll: {a: [[1], {b: 1}]}}", "{_id: 1, a: []}"),
    OK("{_id: 1, a: [1]}", "{$pullAll: {a: [2]}}", "{_id: 1, a: [1]}", .changed = NO),
    ERR("{_id: 1, a: [1]}", "{$pullAll: {a: 1}}", 2,
        "$pullAll requires an array argument but was given a int"),
    OK("{_id: 1, a: 13}", "{$bit: {a: {and: 10}}}", "{_id: 1, a: 8}"),
    OK("{_id: 1, a: 13}", "{$bit: {a: {or: 10}}}", "{_id: 1, a: 15}"),
    OK("{_id: 1, a: 13}", "{$bit: {a: {xor: 10}}}", "{_id: 1, a: 7}"),
    OK("{_id: 1, a: 13}", "{$bit: {a: {and: 10, or: 1}}}", "{_id: 1, a: 9}"),
    OK("{_id: 1, a: NumberLong(13)}", "{$bit: {a: {and: 10}}}", "{_id: 1, a: NumberLong(8)}"),
    OK("{_id: 1, a: 1}", "{$bit: {a: {or: NumberLong(2)}}}", "{_id: 1, a: NumberLong(3)}"),
    OK("{_id: 1}", "{$bit: {a: {or: 5}}}", "{_id: 1, a: 5}", .changed = YES),
    OK("{_id: 1, a: 5}", "{$bit: {a: {and: 5}}}", "{_id: 1, a: 5}", .changed = NO),
    ERR("{_id: 1, a: 1.5}", "{$bit: {a: {and: 1}}}", 2,
        "Cannot apply $bit to a value of non-integral type._id: 1 has the field a of non-integer "
        "type double"),
    ERR("{_id: 1, a: 1}", "{$bit: {a: {foo: 1}}}", 2,
        "The $bit modifier only supports 'and', 'or', and 'xor', not 'foo' which is an unknown "
        "operator: {foo: 1}"),
    ERR("{_id: 1, a: 1}", "{$bit: {a: {and: 1.5}}}", 2,
        "The $bit modifier field must be an Integer(32/64 bit); a 'double' is not supported here: "
        "{and: 1.5}"),
    ERR("{_id: 1, a: 1}", "{$bit: {a: 1}}", 2,
        "The $bit modifier is not compatible with a int. You must pass in an embedded document: "
        "{$bit: {field: {and/or/xor: #}}"),
    ERR("{_id: 1, a: 1}", "{$bit: {a: {}}}", 2,
        "You must pass in at least one bitwise operation. The format is: {$bit: {field: "
        "{and/or/xor: #}}"),
};

static void test_pull_and_bit(void **state)
{
    RUN(pull_cases);
}

/* ------------------------------------------------------------------ positional forms */

static const ucase_t positional_cases[] = {
    OK("{_id: 1, grades: [80, 85, 90]}", "{$set: {'grades.$': 82}}",
       "{_id: 1, grades: [80, 82, 90]}", .pos1 = 2),
    OK("{_id: 1, g: [{v: 1}, {v: 2}]}", "{$inc: {'g.$.v': 10}}", "{_id: 1, g: [{v: 1}, {v: 12}]}",
       .pos1 = 2),
    OK("{_id: 1, g: [{v: 1}, {v: 2}]}", "{$set: {'g.$.w': 1}}",
       "{_id: 1, g: [{v: 1, w: 1}, {v: 2}]}", .pos1 = 1),
    OK("{_id: 1, a: [1, 2]}", "{$unset: {'a.$': 1}}", "{_id: 1, a: [null, 2]}", .pos1 = 1),
    ERR("{_id: 1, a: [1, 2]}", "{$set: {'a.$': 5}}", 2,
        "The positional operator did not find the match needed from the query."),
    ERR("{_id: 1, a: [1, 2]}", "{$set: {'a.$': 5}}", 2,
        "The positional operator did not find the match needed from the query.", .inserting = true),
    ERR("{_id: 1}", "{$set: {'$.a': 1}}", 2,
        "Cannot have positional (i.e. '$') element in the first position in path '$.a'"),
    ERR("{_id: 1}", "{$set: {'a.$.b.$': 1}}", 2,
        "Too many positional (i.e. '$') elements found in path 'a.$.b.$'"),
    ERR("{_id: 1, a: [1, 2]}", "{$set: {'a.$': 5, 'a.1': 6}}", 40,
        "Update created a conflict at 'a.1'", .pos1 = 2),
    OK("{_id: 1, a: [1, 2]}", "{$set: {'a.$': 5, 'a.0': 6}}", "{_id: 1, a: [6, 5]}", .pos1 = 2),
    OK("{_id: 1, a: [{}, {}]}", "{$set: {'a.$.x': 1, 'a.1.y': 2}}",
       "{_id: 1, a: [{}, {x: 1, y: 2}]}", .pos1 = 2),
    OK("{_id: 1, a: [1, 2, 3]}", "{$inc: {'a.$[]': 10}}", "{_id: 1, a: [11, 12, 13]}",
       .changed = YES),
    ERR("{_id: 1, a: [{b: 1}, {b: 2}, 5]}", "{$set: {'a.$[].b': 0}}", 28,
        "Cannot create field 'b' in element {2: 5}"),
    OK("{_id: 1, a: [{b: 1}, {b: 2}]}", "{$set: {'a.$[].b': 0}}", "{_id: 1, a: [{b: 0}, {b: 0}]}"),
    OK("{_id: 1, a: [{b: 0}, {b: 0}]}", "{$set: {'a.$[].b': 0}}", "{_id: 1, a: [{b: 0}, {b: 0}]}",
       .changed = NO),
    OK("{_id: 1, a: []}", "{$set: {'a.$[]': 1}}", "{_id: 1, a: []}", .changed = NO),
    ERR("{_id: 1}", "{$set: {'a.$[]': 1}}", 2,
        "The path 'a' must exist in the document in order to apply array updates."),
    ERR("{_id: 1, a: {}}", "{$set: {'a.b.$[]': 1}}", 2,
        "The path 'a.b' must exist in the document in order to apply array updates."),
    ERR("{_id: 1, a: 1}", "{$set: {'a.$[]': 1}}", 2,
        "Cannot apply array updates to non-array element a: 1"),
    ERR("{_id: 1, a: [1]}", "{$set: {'$[].a': 1}}", 2,
        "Cannot have array filter identifier (i.e. '$[<id>]') element in the first position in "
        "path "
        "'$[].a'"),
    OK("{_id: 1, a: [[1, 2], [3]]}", "{$inc: {'a.$[].$[]': 1}}", "{_id: 1, a: [[2, 3], [4]]}"),
    ERR("{_id: 1, a: [1, 2]}", "{$set: {'a.$[]': 0}, $inc: {'a.$[]': 1}}", 40,
        "Updating the path 'a.$[]' would create a conflict at 'a.$[]'"),
    ERR("{_id: 1, a: [1, 2]}", "{$set: {'a.$[]': 0, 'a.0': 1}}", 40,
        "Updating the path 'a.0' would create a conflict at 'a'"),
    OK("{_id: 1, a: [{b: [1, 2]}]}", "{$push: {'a.$[].b': 3}}", "{_id: 1, a: [{b: [1, 2, 3]}]}"),
    OK("{_id: 1, a: [1, 2]}", "{$unset: {'a.$[]': 1}}", "{_id: 1, a: [null, null]}"),
};

static void test_positional(void **state)
{
    RUN(positional_cases);
}

static const ucase_t filter_cases[] = {
    OK("{_id: 1, grades: [95, 102, 90, 150]}", "{$set: {'grades.$[element]': 100}}",
       "{_id: 1, grades: [95, 100, 90, 100]}", .filters = "[{element: {$gte: 100}}]",
       .changed = YES),
    OK("{_id: 1, grades: [95, 90]}", "{$set: {'grades.$[element]': 100}}",
       "{_id: 1, grades: [95, 90]}", .filters = "[{element: {$gte: 100}}]", .changed = NO),
    OK("{_id: 1, grades: [{grade: 80, mean: 75}, {grade: 85, mean: 90}, {grade: 85, mean: 85}]}",
       "{$set: {'grades.$[elem].mean': 100}}",
       "{_id: 1, grades: [{grade: 80, mean: 75}, {grade: 85, mean: 100}, {grade: 85, mean: 100}]}",
       .filters = "[{'elem.grade': {$gte: 85}}]"),
    OK("{_id: 1, g: [{grade: 80, std: 6}, {grade: 85, std: 4}, {grade: 90, std: 7}]}",
       "{$inc: {'g.$[e].std': -1}}",
       "{_id: 1, g: [{grade: 80, std: 6}, {grade: 85, std: 3}, {grade: 90, std: 7}]}",
       .filters = "[{'e.grade': {$gte: 80}, 'e.std': {$lt: 6}}]"),
    OK("{_id: 1, g: [{questions: [8, 9, 5]}, {questions: [2, 9]}]}",
       "{$inc: {'g.$[].questions.$[score]': 2}}",
       "{_id: 1, g: [{questions: [10, 11, 5]}, {questions: [2, 11]}]}",
       .filters = "[{score: {$gte: 8}}]"),
    OK("{_id: 1, a: [1, 2, 3]}", "{$set: {'a.$[x]': 0}}", "{_id: 1, a: [0, 2, 0]}",
       .filters = "[{$or: [{x: 1}, {x: 3}]}]"),
    OK("{_id: 1, a: [1, 5]}", "{$set: {'a.$[x]': 0, 'a.$[y]': 9}}", "{_id: 1, a: [0, 9]}",
       .filters = "[{x: {$lt: 3}}, {y: {$gt: 3}}]"),
    OK("{_id: 1, a: [{b: 1}, {b: 2}]}", "{$set: {'a.$[].c': 1, 'a.$[x].d': 2}}",
       "{_id: 1, a: [{b: 1, c: 1}, {b: 2, c: 1, d: 2}]}", .filters = "[{'x.b': 2}]"),
    ERR("{_id: 1, a: [1, 2]}", "{$set: {'a.$[]': 1, 'a.$[x]': 2}}", 40,
        "Update created a conflict at 'a.0'", .filters = "[{x: 1}]"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.$[x]': 1}}", 2,
        "No array filter found for identifier 'x' in path 'a.$[x]'"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.$[X]': 1}}", 2,
        "No array filter found for identifier 'X' in path 'a.$[X]'", .filters = "[{x: 1}]"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.$[x]': 1}}", 9,
        "The array filter for identifier 'y' was not used in the update { $set: { a.$[x]: 1 } }",
        .filters = "[{x: 1}, {y: 1}]"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.$[x]': 1}}", 2,
        "Error parsing array filter :: caused by :: The top-level field name must be an "
        "alphanumeric string beginning with a lowercase letter, found 'X'",
        .filters = "[{X: 1}]"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.$[x]': 1}}", 2,
        "Error parsing array filter :: caused by :: The top-level field name must be an "
        "alphanumeric string beginning with a lowercase letter, found '1x'",
        .filters = "[{'1x': 1}]"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.$[x]': 1}}", 9,
        "Error parsing array filter :: caused by :: Expected a single top-level field name, found "
        "'x' and 'y'",
        .filters = "[{x: 1, y: 1}]"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.$[x]': 1}}", 9,
        "Found multiple array filters with the same top-level field name x",
        .filters = "[{x: 1}, {x: 2}]"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.$[x]': 1}}", 9,
        "Cannot use an expression without a top-level field name in arrayFilters",
        .filters = "[{}]"),
    ERR("{_id: 1, a: [1]}", "{$set: {'a.$[x]': 1}}", 14, NULL, .filters = "[1]"),
    ERR("{_id: 1, a: [1]}", "{$set: {b: 1}}", 9,
        "The array filter for identifier 'x' was not used in the update { $set: { b: 1 } }",
        .filters = "[{x: 1}]"),
};

static void test_array_filters(void **state)
{
    RUN(filter_cases);
}

/* ------------------------------------------------------------------ replacement */

static const ucase_t replace_cases[] = {
    OK("{_id: 1, a: 1, b: 2}", "{c: 3}", "{_id: 1, c: 3}", .changed = YES),
    OK("{_id: 1, a: 1}", "{c: 3, _id: 1}", "{_id: 1, c: 3}"),
    OK("{_id: 1, a: 1}", "{_id: 1.0, c: 3}", "{_id: 1.0, c: 3}"),
    ERR("{_id: 1, a: 1}", "{_id: 2}", 66,
        "After applying the update, the (immutable) field '_id' was found to have been altered to "
        "_id: 2"),
    OK("{_id: 1, a: 1}", "{}", "{_id: 1}", .changed = YES),
    OK("{_id: 1, a: 1}", "{a: 1}", "{_id: 1, a: 1}", .changed = NO),
    OK("{_id: 1, a: 1}", "{_id: 1, a: 1}", "{_id: 1, a: 1}", .changed = NO),
    OK("{a: 1}", "{b: 1}", "{b: 1}"),
    ERR("{_id: 1}", "{a: 1, $set: {b: 1}}", 52,
        "The dollar ($) prefixed field '$set' in '$set' is not allowed in the context of an "
        "update's replacement document. Consider using an aggregation pipeline with $replaceWith."),
    OK("{_id: 1}", "{a: {'$x': 1}}", "{_id: 1, a: {'$x': 1}}"),
    OK("{_id: 1}", "{x: 1, '$ref': 'c', '$id': 1}", "{_id: 1, x: 1, '$ref': 'c', '$id': 1}"),
    ERR("{_id: 1}", "{x: 1, '$ref': 'c'}", 10,
        "The DBRef $ref field must be followed by a $id field"),
    ERR("{_id: 1}", "{x: 1, '$ref': 1, '$id': 1}", 10,
        "The DBRef $ref field must be a String, not a int"),
    ERR("{_id: 1}", "{x: 1, '$id': 1}", 10,
        "Found $id field without a $ref before it, which is invalid."),
    OK("{_id: 1}", "{t: Timestamp(0, 0), u: Timestamp(0, 0)}",
       "{_id: 1, t: Timestamp(1700000000, 124), u: Timestamp(1700000000, 124)}"),
    ERR("{}", "{_id: [1]}", 53, "The '_id' value cannot be of type array", .inserting = true),
    OK("{}", "{_id: 5, a: 1}", "{_id: 5, a: 1}", .inserting = true),
    OK("{_id: 1, name: 'Will Riker', age: 29}", "{name: 'Will Riker', rank: 'Commander'}",
       "{_id: 1, name: 'Will Riker', rank: 'Commander'}"),
};

static void test_replacement(void **state)
{
    RUN(replace_cases);
}

/* ------------------------------------------------------------------ upserts */

typedef struct scase {
    const char *filter;
    const char *update; /* NULL: only the seed */
    const char *expect;
    int code;
    const char *msg;
} scase_t;

#define SEED(filter_, update_, expect_)                                                            \
    {                                                                                              \
        .filter = (filter_), .update = (update_), .expect = (expect_)                              \
    }
#define SEED_ERR(filter_, update_, code_, msg_)                                                    \
    {                                                                                              \
        .filter = (filter_), .update = (update_), .code = (code_), .msg = (msg_)                   \
    }

static const scase_t seed_cases[] = {
    SEED("{a: 1}", NULL, "{a: 1}"),
    SEED("{a: {$eq: 1}, b: {$gt: 5}}", NULL, "{a: 1}"),
    SEED("{'a.b': 1, c: 'x'}", NULL, "{a: {b: 1}, c: 'x'}"),
    SEED("{'a.b': 1, 'a.c': 2}", NULL, "{a: {b: 1, c: 2}}"),
    SEED("{$and: [{a: 1}, {b: 2}]}", NULL, "{a: 1, b: 2}"),
    SEED("{$and: [{a: 1}, {$and: [{b: 2}]}]}", NULL, "{a: 1, b: 2}"),
    SEED("{$or: [{a: 1}]}", NULL, "{a: 1}"),
    SEED("{$or: [{a: 1}, {b: 2}]}", NULL, "{}"),
    SEED("{$nor: [{a: 1}]}", NULL, "{}"),
    SEED("{_id: 5, a: 1}", NULL, "{_id: 5, a: 1}"),
    SEED("{a: 1, _id: 5}", NULL, "{_id: 5, a: 1}"),
    SEED("{a: {$in: [1]}}", NULL, "{a: 1}"),
    SEED("{a: {$in: [1, 2]}}", NULL, "{}"),
    SEED("{a: {$all: [1]}}", NULL, "{a: 1}"),
    SEED("{a: /x/}", NULL, "{}"),
    SEED("{a: {$eq: /x/}}", NULL, "{a: /x/}"),
    SEED("{a: {b: 1}}", NULL, "{a: {b: 1}}"),
    SEED("{a: null}", NULL, "{a: null}"),
    SEED("{a: [1, 2]}", NULL, "{a: [1, 2]}"),
    SEED("{a: {$gt: 1}, b: {$exists: true}}", NULL, "{}"),
    SEED_ERR("{a: 1, 'a.b': 2}", NULL, 54,
             "cannot infer query fields to set, both paths 'a.b' and 'a' are matched"),
    SEED_ERR("{'a.b': 2, a: 1}", NULL, 54,
             "cannot infer query fields to set, both paths 'a.b' and 'a' are matched"),
    SEED_ERR("{a: 1, $and: [{a: 2}]}", NULL, 54,
             "cannot infer query fields to set, path 'a' is matched twice"),
    SEED_ERR("{a: {$all: [1, 2]}}", NULL, 54,
             "cannot infer query fields to set, path 'a' is matched twice"),
    SEED_ERR("{$expr: {$eq: ['$a', 1]}}", NULL, 224, NULL),
    /* whole upsert documents */
    SEED("{_id: 1, a: 1}", "{$set: {b: 2}, $setOnInsert: {c: 3}}", "{_id: 1, a: 1, b: 2, c: 3}"),
    SEED("{a: 1}", "{$set: {_id: 7}}", "{_id: 7, a: 1}"),
    SEED("{a: 1}", "{$set: {b: 1}}", "{a: 1, b: 1}"),
    SEED("{a: 1}", "{$inc: {a: 1}}", "{a: 2}"),
    SEED_ERR("{_id: 1}", "{$set: {_id: 2}}", 66,
             "Performing an update on the path '_id' would modify the immutable field '_id'"),
    SEED_ERR("{a: [1]}", "{$set: {'a.$': 2}}", 2,
             "The positional operator did not find the match needed from the query."),
    SEED("{_id: 1, a: 1}", "{b: 2}", "{_id: 1, b: 2}"),
    SEED("{a: 1, 'a.b': 2}", "{x: 1}", "{x: 1}"),
    SEED_ERR(
        "{_id: 1}", "{_id: 2}", 66,
        "After applying the update, the (immutable) field '_id' was found to have been altered to "
        "_id: 2"),
    SEED_ERR("{'_id.x': 1}", "{b: 1}", 111,
             "field at '_id' must be exactly specified, field at sub-path '_id.x'found"),
    SEED("{name: 'Jean-Luc Picard'}", "{$setOnInsert: {rank: 'Captain'}}",
         "{name: 'Jean-Luc Picard', rank: 'Captain'}"),
    SEED_ERR("{}", "{$set: {_id: [1]}}", 53, "The '_id' value cannot be of type array"),
};

static void test_upsert(void **state)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof seed_cases / sizeof seed_cases[0]; i++) {
        const scase_t *c = &seed_cases[i];
        bson_t *filter = tu_bson(c->filter);
        bson_t out = BSON_INITIALIZER;
        mk_error_t err = {0};
        int rc;
        if (c->update) {
            bson_t *upd = tu_bson(c->update);
            mk_update_t *u = mk_update_compile(upd, NULL, &err);
            assert_non_null(u);
            rc = mk_update_upsert_doc(u, filter, NOW, &out, &err);
            mk_update_destroy(u);
            bson_destroy(upd);
        } else {
            rc = mk_update_upsert_seed(filter, &out, &err);
        }
        bool ok;
        if (c->expect) {
            bson_t *want = tu_bson(c->expect);
            ok = rc == MK_OK && out.len == want->len &&
                 !memcmp(bson_get_data(&out), bson_get_data(want), want->len);
            if (!ok) {
                char *a = rc == MK_OK ? canon(&out) : NULL;
                print_error("seed case %zu: %s -> %s (error %s)\n", i, c->filter, a ? a : "-",
                            rc == MK_OK ? "" : err.message);
                bson_free(a);
            }
            bson_destroy(want);
        } else {
            ok = rc != MK_OK && err.code == c->code && (!c->msg || !strcmp(err.message, c->msg));
            if (!ok)
                print_error("seed case %zu: %s: expected error %d, got rc %d %d '%s'\n", i,
                            c->filter, c->code, rc, err.code, err.message);
        }
        failed += !ok;
        bson_destroy(&out);
        bson_destroy(filter);
    }
    if (failed) fail_msg("%d seed cases failed", failed);
}

/* ------------------------------------------------------------------ limits and API */

/* { a: { a: { ... { x: 1 } } } } with `levels` nested documents. */
static bson_t *nested(int levels)
{
    bson_t *inner = bson_new();
    BSON_APPEND_INT32(inner, "x", 1);
    for (int i = 0; i < levels; i++) {
        bson_t *outer = bson_new();
        BSON_APPEND_DOCUMENT(outer, "a", inner);
        bson_destroy(inner);
        inner = outer;
    }
    return inner;
}

static void test_depth_limit(void **state)
{
    mk_error_t err = {0};
    bool changed;
    /* The doc's deepest element is at level 99; three new levels cross 100. */
    bson_t *doc = nested(98);
    char path[400] = "";
    for (int i = 0; i < 98; i++) strcat(path, "a.");
    strcat(path, "y.z.w");
    bson_t *upd = BCON_NEW("$set", "{", path, BCON_INT32(1), "}");
    mk_update_t *u = mk_update_compile(upd, NULL, &err);
    assert_non_null(u);
    bson_t out = BSON_INITIALIZER;
    assert_int_equal(mk_update_apply(u, doc, NULL, false, NOW, &out, &changed, &err), MK_ERR);
    assert_int_equal(err.code, 15);
    assert_string_equal(err.message, "Document exceeds maximum nesting depth of 100");
    bson_destroy(&out);
    mk_update_destroy(u);
    bson_destroy(upd);

    /* One level less is fine. */
    path[strlen(path) - 2] = 0; /* "...a.y.z" */
    upd = BCON_NEW("$set", "{", path, BCON_INT32(1), "}");
    u = mk_update_compile(upd, NULL, &err);
    bson_init(&out);
    assert_int_equal(mk_update_apply(u, doc, NULL, false, NOW, &out, &changed, &err), MK_OK);
    assert_true(changed);
    bson_destroy(&out);
    mk_update_destroy(u);
    bson_destroy(upd);

    /* A deep value set by $set is checked too. */
    bson_t *deep = nested(100);
    upd = BCON_NEW("$set", "{", "v", BCON_DOCUMENT(deep), "}");
    u = mk_update_compile(upd, NULL, &err);
    bson_t *small = BCON_NEW("_id", BCON_INT32(1));
    bson_init(&out);
    assert_int_equal(mk_update_apply(u, small, NULL, false, NOW, &out, &changed, &err), MK_ERR);
    assert_int_equal(err.code, 15);
    bson_destroy(&out);
    mk_update_destroy(u);
    bson_destroy(upd);

    /* And a replacement. */
    u = mk_update_compile(deep, NULL, &err);
    bson_init(&out);
    assert_int_equal(mk_update_apply(u, small, NULL, false, NOW, &out, &changed, &err), MK_ERR);
    assert_int_equal(err.code, 15);
    bson_destroy(&out);
    mk_update_destroy(u);
    bson_destroy(small);
    bson_destroy(deep);
    bson_destroy(doc);
}

static void test_size_limit(void **state)
{
    mk_error_t err = {0};
    bool changed;
    size_t big = 9 * 1024 * 1024;
    char *s = malloc(big + 1);
    memset(s, 'x', big);
    s[big] = 0;
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1), "a", BCON_UTF8(s));
    bson_t *upd = BCON_NEW("$set", "{", "b", BCON_UTF8(s), "}");
    mk_update_t *u = mk_update_compile(upd, NULL, &err);
    assert_non_null(u);
    bson_t out = BSON_INITIALIZER;
    assert_int_equal(mk_update_apply(u, doc, NULL, false, NOW, &out, &changed, &err), MK_ERR);
    assert_int_equal(err.code, 17419);
    assert_string_equal(err.message, "Resulting document after update is larger than 16777216");
    bson_destroy(&out);
    bson_init(&out);
    assert_int_equal(mk_update_apply(u, doc, NULL, true, NOW, &out, &changed, &err), MK_ERR);
    assert_int_equal(err.code, 17420);
    bson_destroy(&out);
    mk_update_destroy(u);
    bson_destroy(upd);
    bson_destroy(doc);
    free(s);
}

static void test_api(void **state)
{
    mk_error_t err = {0};
    bson_t *upd = tu_bson("{$set: {'a.$': 1}}");
    mk_update_t *u = mk_update_compile(upd, NULL, &err);
    assert_non_null(u);
    assert_false(mk_update_is_replacement(u));
    assert_true(mk_update_is_positional(u));
    mk_update_destroy(u);
    bson_destroy(upd);

    upd = tu_bson("{a: 1}");
    u = mk_update_compile(upd, NULL, &err);
    assert_true(mk_update_is_replacement(u));
    assert_false(mk_update_is_positional(u));
    /* The compiled update owns a copy of its text. */
    bson_destroy(upd);
    bson_t *doc = tu_bson("{_id: 3}");
    bson_t out = BSON_INITIALIZER;
    bool changed;
    assert_int_equal(mk_update_apply(u, doc, NULL, false, NOW, &out, &changed, &err), MK_OK);
    tu_assert_bson_eq(&out, "{_id: 3, a: 1}");
    bson_destroy(&out);
    bson_destroy(doc);
    mk_update_destroy(u);
    mk_update_destroy(NULL);

    /* Filters are copied as well. */
    bson_t *filters = BCON_NEW("0", "{", "x", BCON_INT32(2), "}");
    upd = tu_bson("{$set: {'a.$[x]': 0}}");
    u = mk_update_compile(upd, filters, &err);
    assert_non_null(u);
    bson_destroy(filters);
    bson_destroy(upd);
    doc = tu_bson("{_id: 1, a: [1, 2, 3, 2]}");
    bson_init(&out);
    assert_int_equal(mk_update_apply(u, doc, NULL, false, NOW, &out, &changed, &err), MK_OK);
    tu_assert_bson_eq(&out, "{_id: 1, a: [1, 0, 3, 0]}");
    bson_destroy(&out);
    bson_destroy(doc);
    mk_update_destroy(u);
}

/* One compiled update applied to many documents gives each its own result. */
static void test_reuse(void **state)
{
    mk_error_t err = {0};
    bson_t *upd = tu_bson("{$inc: {n: 1}, $push: {l: {$each: ['x'], $slice: -2}}}");
    mk_update_t *u = mk_update_compile(upd, NULL, &err);
    bson_t *doc = tu_bson("{_id: 1}");
    for (int i = 0; i < 5; i++) {
        bson_t out = BSON_INITIALIZER;
        bool changed;
        assert_int_equal(mk_update_apply(u, doc, NULL, false, NOW, &out, &changed, &err), MK_OK);
        assert_true(changed);
        bson_destroy(doc);
        doc = bson_copy(&out);
        bson_destroy(&out);
    }
    /* Fields are processed in name order: `l` is appended before `n`. */
    tu_assert_bson_eq(doc, "{_id: 1, l: ['x', 'x'], n: 5}");
    bson_destroy(doc);
    mk_update_destroy(u);
    bson_destroy(upd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_unset),
        cmocka_unit_test(test_arith),
        cmocka_unit_test(test_compare_and_date),
        cmocka_unit_test(test_rename),
        cmocka_unit_test(test_push),
        cmocka_unit_test(test_add_to_set_and_pop),
        cmocka_unit_test(test_pull_and_bit),
        cmocka_unit_test(test_positional),
        cmocka_unit_test(test_array_filters),
        cmocka_unit_test(test_replacement),
        cmocka_unit_test(test_upsert),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_api),
        cmocka_unit_test(test_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
