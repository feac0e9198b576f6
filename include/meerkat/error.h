/* meerkat — errors.
 *
 * Every fallible call takes `mk_error_t *err` last (may be NULL) and returns MK_OK / a negative
 * code, or a pointer that is NULL on failure. The error carries MongoDB's numeric code and
 * codeName (or a Mongoose kind name such as "CastError"), and a message. */
#ifndef MEERKAT_ERROR_H
#define MEERKAT_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MK_OK = 0,
    MK_ERR = -1,    /* see err->code / err->kind */
    MK_ENOMEM = -2, /* allocation failed */
};

/* MongoDB error codes used by meerkat (values are MongoDB's). */
enum {
    MK_CODE_INTERNAL = 1,
    MK_CODE_BAD_VALUE = 2,
    MK_CODE_NO_SUCH_KEY = 4,
    MK_CODE_FAILED_TO_PARSE = 9,
    MK_CODE_TYPE_MISMATCH = 14,
    MK_CODE_OVERFLOW = 15,
    MK_CODE_ILLEGAL_OPERATION = 20,
    MK_CODE_NAMESPACE_NOT_FOUND = 26,
    MK_CODE_PATH_NOT_VIABLE = 28,
    MK_CODE_CONFLICTING_UPDATE_OPERATORS = 40,
    MK_CODE_CURSOR_NOT_FOUND = 43,
    MK_CODE_NAMESPACE_EXISTS = 48,
    MK_CODE_MAX_TIME_MS_EXPIRED = 50,
    MK_CODE_DOLLAR_PREFIXED_FIELD_NAME = 52,
    MK_CODE_INVALID_ID_FIELD = 53,
    MK_CODE_NOT_SINGLE_VALUE_FIELD = 54,
    MK_CODE_EMPTY_FIELD_NAME = 56,
    MK_CODE_COMMAND_NOT_FOUND = 59,
    MK_CODE_IMMUTABLE_FIELD = 66,
    MK_CODE_INVALID_OPTIONS = 72,
    MK_CODE_INVALID_NAMESPACE = 73,
    MK_CODE_WRITE_CONFLICT = 112,
    MK_CODE_NO_SUCH_TRANSACTION = 251,
    MK_CODE_TRANSACTION_TOO_OLD = 225,
    MK_CODE_TRANSACTION_COMMITTED = 256,
    MK_CODE_NO_SUCH_SESSION = 206,
    MK_CODE_INVALID_BSON = 22,
    MK_CODE_BSON_OBJECT_TOO_LARGE = 10334,
    MK_CODE_DUPLICATE_KEY = 11000,
    MK_CODE_NO_QUERY_EXECUTION_PLANS = 291,
    MK_CODE_STORAGE = 8 /* UnknownError: a storage-level failure (LMDB) */,
};

#define MK_ERROR_KIND_MAX 48
#define MK_ERROR_MSG_MAX  1024

/* MongoDB's error labels (errorLabels in replies). */
enum {
    MK_LABEL_TRANSIENT_TRANSACTION = 1, /* "TransientTransactionError": retry the transaction */
    MK_LABEL_UNKNOWN_COMMIT_RESULT = 2, /* "UnknownTransactionCommitResult": retry the commit */
};

#define MK_ERROR_DETAILS_MAX 2048

typedef struct mk_error {
    int code;                     /* MongoDB code, 0 when the error is not a server error */
    unsigned labels;              /* MK_LABEL_* bits */
    char kind[MK_ERROR_KIND_MAX]; /* codeName ("BadValue") or Mongoose kind ("CastError") */
    char message[MK_ERROR_MSG_MAX];
    /* Per-path details of a ValidationError (Mongoose's `err.errors`), packed; read them with
     * mk_error_detail_count / mk_error_detail. Every mk_error_set* resets them. Kept inline so
     * that an mk_error_t never owns memory and never needs freeing. */
    unsigned ndetails;      /* details stored */
    unsigned ndetails_lost; /* details that did not fit in the buffer (counted, not kept) */
    unsigned details_used;
    char details[MK_ERROR_DETAILS_MAX];
} mk_error_t;

/* One per-path error of a ValidationError: a ValidatorError or a CastError. */
typedef struct mk_error_detail {
    const char *path;    /* "email", "comments.0.text" */
    const char *kind;    /* "required", "enum", "minlength", "user defined", "cast", ... */
    const char *name;    /* "ValidatorError" or "CastError" */
    const char *message; /* "Path `email` is required." */
    const char *value;   /* the value as Mongoose shows it, "undefined" when missing */
} mk_error_detail_t;

/* Fills err (when not NULL) and returns MK_ERR. printf-style message. */
int mk_error_set(mk_error_t *err, int code, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same, with the codeName looked up from the code ("BadValue" for 2, ...). */
int mk_error_setc(mk_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records an allocation failure and returns MK_ENOMEM. */
int mk_error_nomem(mk_error_t *err);
/* The codeName MongoDB gives a code ("UnknownError" when not known). */
const char *mk_error_code_name(int code);
void mk_error_clear(mk_error_t *err);

/* Appends a per-path detail (strings are copied; a detail that no longer fits is counted in
 * ndetails_lost). MK_OK, or MK_ERR when err is NULL or the detail did not fit. */
int mk_error_add_detail(mk_error_t *err, const char *path, const char *kind, const char *name,
                        const char *message, const char *value);
static inline unsigned mk_error_detail_count(const mk_error_t *err)
{
    return err ? err->ndetails : 0;
}
/* The i-th detail (borrowed from err); false when i is out of range. */
int mk_error_detail(const mk_error_t *err, unsigned i, mk_error_detail_t *out);
/* The detail for `path`; false when there is none. */
int mk_error_detail_find(const mk_error_t *err, const char *path, mk_error_detail_t *out);

#ifdef __cplusplus
}
#endif
#endif
