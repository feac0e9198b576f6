/* Mongoose 8's built-in validators and the ValidationError they add up to.
 *
 * Values are cast values as Mongoose holds them (see odm/cast.h): a NULL value pointer is a
 * missing path (JS undefined), BSON null is null. Each validator checks one path and, when the
 * check fails, adds a ValidatorError to the collector with Mongoose's default message (or the
 * caller's template, formatted as Mongoose formats one). Validators return
 *   1 passed, 0 failed (an error was added), MK_ENOMEM, or MK_ERR for a value or option this
 *   module cannot judge (errs->error names it).
 * As in Mongoose, every validator but `required` lets null and undefined pass.
 *
 * Default messages (Mongoose's lib/error/messages.js):
 *   required   Path `{PATH}` is required.
 *   enum       `{VALUE}` is not a valid enum value for path `{PATH}`.
 *   match      Path `{PATH}` is invalid ({VALUE}).
 *   minlength  Path `{PATH}` (`{VALUE}`) is shorter than the minimum allowed length ({MINLENGTH}).
 *   maxlength  Path `{PATH}` (`{VALUE}`) is longer than the maximum allowed length ({MAXLENGTH}).
 *   min        Path `{PATH}` ({VALUE}) is less than minimum allowed value ({MIN}).     (numbers)
 *              Path `{PATH}` ({VALUE}) is before minimum allowed value ({MIN}).       (dates)
 *   max        Path `{PATH}` ({VALUE}) is more than maximum allowed value ({MAX}).     (numbers)
 *              Path `{PATH}` ({VALUE}) is after maximum allowed value ({MAX}).        (dates) */
#ifndef MK_ODM_VALIDATE_H
#define MK_ODM_VALIDATE_H

#include <bson/bson.h>
#include <stdbool.h>

#include <meerkat/error.h>
#include <meerkat/schema.h>

/* One ValidatorError (or CastError) of a ValidationError. */
typedef struct mk_verror {
    char *path;
    char *kind;         /* "required", "enum", "regexp", "minlength", "maxlength", "min", "max",
                           "user defined", "cast", ... */
    char *message;      /* the formatted message */
    bson_value_t value; /* a copy; BSON_TYPE_UNDEFINED when the path was missing */
} mk_verror_t;

/* The errors of one document, in the order paths were first added (Mongoose's `errors`). */
typedef struct mk_verrors {
    mk_verror_t *items;
    size_t count;
    size_t cap;
    mk_error_t error; /* why a validator returned MK_ERR / MK_ENOMEM */
} mk_verrors_t;

void mk_verrors_init(mk_verrors_t *errs);
void mk_verrors_destroy(mk_verrors_t *errs);
/* Records an error at `path` (value NULL = undefined). A second error for the same path
 * replaces the first but keeps its position, as assigning errors[path] does in JS.
 * MK_OK or MK_ENOMEM. */
int mk_verrors_add(mk_verrors_t *errs, const char *path, const char *kind, const char *message,
                   const bson_value_t *value);
/* The error recorded for a path, or NULL. */
const mk_verror_t *mk_verrors_find(const mk_verrors_t *errs, const char *path);
/* No errors: MK_OK and err untouched. Otherwise fills err with kind "ValidationError" (code 0)
 * and "<Model> validation failed: <path>: <message>, ..." ("Validation failed: ..." when
 * model_name is NULL), paths ordered as JS orders object keys (integer-like keys first,
 * ascending, then insertion order), and returns MK_ERR. Messages longer than err->message
 * holds are cut. */
int mk_verrors_to_error(const mk_verrors_t *errs, const char *model_name, mk_error_t *err);

/* Formats a message template as Mongoose's ValidatorError does: each `{KEY}` placeholder is
 * replaced, first occurrence only, by String(value) for the keys of `extra` (uppercased, in
 * their order; may be NULL), then {PATH}, {FULLPATH} (= path) and {VALUE} (value NULL =
 * undefined). JS replacement patterns in a substituted text are honoured ($$, $&, $`, $').
 * A new string (free()), NULL when allocation fails. */
char *mk_validate_message_format(const char *template_, const char *path, const bson_value_t *value,
                                 const bson_t *extra);

/* JS String(v) appended to a malloc'd buffer: numbers as JS prints them, dates as
 * Date.prototype.toString in the local time zone, arrays joined with ",", documents as
 * "[object Object]", regexes as /pattern/flags, ObjectIds as hex. value NULL = "undefined".
 * A new string (free()), NULL when allocation fails. */
char *mk_validate_js_string(const bson_value_t *value);

/* Splits Mongoose's `[option, 'custom message']` array form: when `opt` is a two-element array
 * whose second element is a string, *value is the first element and *message the string
 * (both borrowed from opt); otherwise *value = *opt and *message = NULL. Not for `enum`, whose
 * array is the list of values (its message form is { values: [...], message: '...' }). */
void mk_validate_option(const bson_value_t *opt, bson_value_t *value, const char **message);

/* `message` NULL = Mongoose's default message for the validator. */

/* Fails for undefined and null, and as the path type's checkRequired does: STRING needs a
 * non-empty string, NUMBER/DOUBLE/INT32 a number, BOOLEAN a boolean, DATE a date, OBJECTID an
 * ObjectId, BUFFER a non-empty binary, DECIMAL128 a decimal, BIGINT an int64. Arrays (even []),
 * sub-documents, maps, Mixed and UUID only need a non-null value. */
int mk_validate_required(const bson_value_t *v, mk_schematype_t type, const char *message,
                         const char *path, mk_verrors_t *errs);
/* `values` is a BSON array of strings and/or numbers; v must equal one (JS ===). */
int mk_validate_enum(const bson_value_t *v, const bson_t *values, const char *message,
                     const char *path, mk_verrors_t *errs);
/* JS regex `pattern` with `flags` (i, m, s, u, g, y, d) tested against a string; '' passes,
 * as Mongoose's match validator skips empty strings. */
int mk_validate_match(const bson_value_t *v, const char *pattern, const char *flags,
                      const char *message, const char *path, mk_verrors_t *errs);
/* String length in UTF-16 code units (JS's .length) against the bound. */
int mk_validate_minlength(const bson_value_t *v, double minlength, const char *message,
                          const char *path, mk_verrors_t *errs);
int mk_validate_maxlength(const bson_value_t *v, double maxlength, const char *message,
                          const char *path, mk_verrors_t *errs);
/* Numbers (int32, int64, double) and dates; the bound is a number or a date. NaN fails, as
 * `NaN >= min` is false in JS. */
int mk_validate_min(const bson_value_t *v, const bson_value_t *min, const char *message,
                    const char *path, mk_verrors_t *errs);
int mk_validate_max(const bson_value_t *v, const bson_value_t *max, const char *message,
                    const char *path, mk_verrors_t *errs);

#endif
