/* Error reporting shared by every layer. */
#include <meerkat/error.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *name;
} code_names[] = {
    {MK_CODE_INTERNAL, "InternalError"},
    {MK_CODE_BAD_VALUE, "BadValue"},
    {MK_CODE_NO_SUCH_KEY, "NoSuchKey"},
    {MK_CODE_STORAGE, "UnknownError"},
    {MK_CODE_FAILED_TO_PARSE, "FailedToParse"},
    {MK_CODE_TYPE_MISMATCH, "TypeMismatch"},
    {MK_CODE_OVERFLOW, "Overflow"},
    {MK_CODE_ILLEGAL_OPERATION, "IllegalOperation"},
    {MK_CODE_INVALID_BSON, "InvalidBSON"},
    {MK_CODE_NAMESPACE_NOT_FOUND, "NamespaceNotFound"},
    {MK_CODE_PATH_NOT_VIABLE, "PathNotViable"},
    {MK_CODE_CONFLICTING_UPDATE_OPERATORS, "ConflictingUpdateOperators"},
    {MK_CODE_CURSOR_NOT_FOUND, "CursorNotFound"},
    {MK_CODE_NAMESPACE_EXISTS, "NamespaceExists"},
    {MK_CODE_MAX_TIME_MS_EXPIRED, "MaxTimeMSExpired"},
    {MK_CODE_DOLLAR_PREFIXED_FIELD_NAME, "DollarPrefixedFieldName"},
    {MK_CODE_INVALID_ID_FIELD, "InvalidIdField"},
    {MK_CODE_NOT_SINGLE_VALUE_FIELD, "NotSingleValueField"},
    {MK_CODE_EMPTY_FIELD_NAME, "EmptyFieldName"},
    {MK_CODE_COMMAND_NOT_FOUND, "CommandNotFound"},
    {MK_CODE_IMMUTABLE_FIELD, "ImmutableField"},
    {MK_CODE_INVALID_OPTIONS, "InvalidOptions"},
    {MK_CODE_INVALID_NAMESPACE, "InvalidNamespace"},
    {MK_CODE_WRITE_CONFLICT, "WriteConflict"},
    {MK_CODE_NO_SUCH_TRANSACTION, "NoSuchTransaction"},
    {MK_CODE_NO_QUERY_EXECUTION_PLANS, "NoQueryExecutionPlans"},
    {MK_CODE_BSON_OBJECT_TOO_LARGE, "BSONObjectTooLarge"},
    {MK_CODE_DUPLICATE_KEY, "DuplicateKey"},
    {292, "QueryExceededMemoryLimitNoDiskUseAllowed"},
    {67, "CannotCreateIndex"},
    {225, "TransactionTooOld"},
    {256, "TransactionCommitted"},
    {206, "NoSuchSession"},
    {263, "OperationNotSupportedInTransaction"},
    {171, "CannotIndexParallelArrays"},
    {27, "IndexNotFound"},
    {85, "IndexOptionsConflict"},
    {86, "IndexKeySpecsConflict"},
    {143, "CursorInUse"},
    {13, "Unauthorized"},
    {168, "InvalidPipelineOperator"},
    {17419, "Location17419"},
};

const char *mk_error_code_name(int code)
{
    for (size_t i = 0; i < sizeof code_names / sizeof code_names[0]; i++)
        if (code_names[i].code == code) return code_names[i].name;
    return code > 0 ? "Location" : "UnknownError";
}

static void vset(mk_error_t *err, int code, const char *kind, const char *fmt, va_list ap)
{
    err->code = code;
    err->labels = 0;
    err->ndetails = err->ndetails_lost = err->details_used = 0;
    const char *name = kind ? kind : mk_error_code_name(code);
    if (!kind && strcmp(name, "Location") == 0)
        snprintf(err->kind, sizeof err->kind, "Location%d", code); /* MongoDB's codeName */
    else
        snprintf(err->kind, sizeof err->kind, "%s", name);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

int mk_error_set(mk_error_t *err, int code, const char *kind, const char *fmt, ...)
{
    if (!err) return MK_ERR;
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, kind, fmt, ap);
    va_end(ap);
    return MK_ERR;
}

int mk_error_setc(mk_error_t *err, int code, const char *fmt, ...)
{
    if (!err) return MK_ERR;
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, NULL, fmt, ap);
    va_end(ap);
    return MK_ERR;
}

int mk_error_nomem(mk_error_t *err)
{
    if (err) {
        err->code = MK_CODE_INTERNAL;
        err->labels = 0;
        err->ndetails = err->ndetails_lost = err->details_used = 0;
        snprintf(err->kind, sizeof err->kind, "%s", "OutOfMemory");
        snprintf(err->message, sizeof err->message, "%s", "out of memory");
    }
    return MK_ENOMEM;
}

void mk_error_clear(mk_error_t *err)
{
    if (err) memset(err, 0, sizeof *err);
}

/* Details are five NUL-terminated strings in a row: path, kind, name, message, value. */
int mk_error_add_detail(mk_error_t *err, const char *path, const char *kind, const char *name,
                        const char *message, const char *value)
{
    if (!err) return MK_ERR;
    const char *parts[5] = {path ? path : "", kind ? kind : "", name ? name : "",
                            message ? message : "", value ? value : ""};
    size_t need = 0;
    for (int i = 0; i < 5; i++) need += strlen(parts[i]) + 1;
    if (err->details_used > sizeof err->details || need > sizeof err->details - err->details_used) {
        err->ndetails_lost++;
        return MK_ERR;
    }
    char *p = err->details + err->details_used;
    for (int i = 0; i < 5; i++) {
        size_t n = strlen(parts[i]) + 1;
        memcpy(p, parts[i], n);
        p += n;
    }
    err->details_used += (unsigned)need;
    err->ndetails++;
    return MK_OK;
}

int mk_error_detail(const mk_error_t *err, unsigned i, mk_error_detail_t *out)
{
    if (!err || i >= err->ndetails || err->details_used > sizeof err->details) return 0;
    const char *p = err->details, *end = err->details + err->details_used;
    const char *parts[5];
    for (unsigned k = 0; k <= i; k++) {
        for (int j = 0; j < 5; j++) {
            if (p >= end) return 0;
            parts[j] = p;
            p += strnlen(p, (size_t)(end - p)) + 1;
        }
    }
    out->path = parts[0];
    out->kind = parts[1];
    out->name = parts[2];
    out->message = parts[3];
    out->value = parts[4];
    return 1;
}

int mk_error_detail_find(const mk_error_t *err, const char *path, mk_error_detail_t *out)
{
    for (unsigned i = 0; err && i < err->ndetails; i++)
        if (mk_error_detail(err, i, out) && strcmp(out->path, path) == 0) return 1;
    return 0;
}
