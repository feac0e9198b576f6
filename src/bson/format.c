/* Server-style rendering of values for error messages (see format.h). */
#include "bson/format.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_RENDER 1024 /* error messages stay short */

static void append_escaped(bson_string_t *s, const char *str, uint32_t len)
{
    bson_string_append_c(s, '"');
    for (uint32_t i = 0; i < len && s->len < MAX_RENDER; i++) {
        char c = str[i];
        if (c == '"' || c == '\\') bson_string_append_c(s, '\\');
        if ((unsigned char)c < 0x20)
            bson_string_append_printf(s, "\\x%02x", (unsigned char)c);
        else
            bson_string_append_c(s, c);
    }
    bson_string_append_c(s, '"');
}

void mk_format_doc(bson_string_t *s, const uint8_t *data, uint32_t len, bool is_array)
{
    bson_iter_t it;
    bson_string_append(s, is_array ? "[" : "{");
    bool first = true;
    if (bson_iter_init_from_data(&it, data, len)) {
        while (bson_iter_next(&it)) {
            if (s->len > MAX_RENDER) {
                bson_string_append(s, ", ...");
                break;
            }
            bson_string_append(s, first ? " " : ", ");
            first = false;
            if (!is_array) {
                bson_string_append(s, bson_iter_key(&it));
                bson_string_append(s, ": ");
            }
            mk_format_value(s, bson_iter_value(&it));
        }
    }
    bson_string_append(s, first ? (is_array ? "]" : "}") : (is_array ? " ]" : " }"));
}

void mk_format_value(bson_string_t *s, const bson_value_t *v)
{
    char oid[25];
    switch (v->value_type) {
    case BSON_TYPE_DOUBLE: {
        double d = v->value.v_double;
        if (d < 1e15 && d > -1e15 && d == trunc(d)) {
            bson_string_append_printf(s, "%.1f", d);
        } else {
            /* the shortest form that reads back as the same double, as MongoDB prints */
            char buf[32];
            for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, sizeof buf, "%.*g", prec, d);
                if (strtod(buf, NULL) == d || d != d) break;
            }
            bson_string_append(s, buf);
        }
        break;
    }
    case BSON_TYPE_UTF8:
        append_escaped(s, v->value.v_utf8.str, v->value.v_utf8.len);
        break;
    case BSON_TYPE_SYMBOL:
        append_escaped(s, v->value.v_symbol.symbol, v->value.v_symbol.len);
        break;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        mk_format_doc(s, v->value.v_doc.data, v->value.v_doc.data_len,
                      v->value_type == BSON_TYPE_ARRAY);
        break;
    case BSON_TYPE_BINARY:
        bson_string_append_printf(s, "BinData(%d, <%" PRIu32 " bytes>)",
                                  (int)v->value.v_binary.subtype, v->value.v_binary.data_len);
        break;
    case BSON_TYPE_UNDEFINED:
        bson_string_append(s, "undefined");
        break;
    case BSON_TYPE_OID:
        bson_oid_to_string(&v->value.v_oid, oid);
        bson_string_append_printf(s, "ObjectId('%s')", oid);
        break;
    case BSON_TYPE_BOOL:
        bson_string_append(s, v->value.v_bool ? "true" : "false");
        break;
    case BSON_TYPE_DATE_TIME:
        bson_string_append_printf(s, "new Date(%" PRId64 ")", v->value.v_datetime);
        break;
    case BSON_TYPE_NULL:
        bson_string_append(s, "null");
        break;
    case BSON_TYPE_REGEX:
        bson_string_append_printf(s, "/%s/%s", v->value.v_regex.regex, v->value.v_regex.options);
        break;
    case BSON_TYPE_INT32:
        bson_string_append_printf(s, "%" PRId32, v->value.v_int32);
        break;
    case BSON_TYPE_INT64:
        bson_string_append_printf(s, "%" PRId64, v->value.v_int64);
        break;
    case BSON_TYPE_TIMESTAMP:
        bson_string_append_printf(s, "Timestamp(%" PRIu32 ", %" PRIu32 ")",
                                  v->value.v_timestamp.timestamp, v->value.v_timestamp.increment);
        break;
    case BSON_TYPE_DECIMAL128: {
        char buf[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, buf);
        bson_string_append_printf(s, "NumberDecimal(\"%s\")", buf);
        break;
    }
    case BSON_TYPE_MINKEY:
        bson_string_append(s, "MinKey");
        break;
    case BSON_TYPE_MAXKEY:
        bson_string_append(s, "MaxKey");
        break;
    case BSON_TYPE_CODE:
        bson_string_append(s, "function");
        break;
    case BSON_TYPE_CODEWSCOPE:
        bson_string_append(s, "function");
        break;
    case BSON_TYPE_DBPOINTER:
        bson_string_append(s, "DBPointer");
        break;
    case BSON_TYPE_EOD:
        bson_string_append(s, "missing");
        break;
    }
}

char *mk_format_bson(const bson_t *doc)
{
    bson_string_t *s = bson_string_new(NULL);
    mk_format_doc(s, bson_get_data(doc), doc->len, false);
    return bson_string_free(s, false);
}
