/* Mongoose's default collection naming: the model name lowercased and pluralised by an ordered
 * list of English rules (the first rule that matches is applied), with a list of uncountable
 * words left as they are. The rules are Mongoose's (mongoose-legacy-pluralize), written here as
 * PCRE2 patterns with JavaScript's replacement semantics. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "odm/odm_internal.h"

static const char *const uncountables[] = {
    "advice", "energy",    "excretion", "digestion",   "cooperation", "health", "justice",
    "labour", "machinery", "equipment", "information", "pollution",   "sewage", "paper",
    "money",  "species",   "series",    "rain",        "rice",        "fish",   "sheep",
    "moose",  "deer",      "news",      "expertise",   "status",      "media",
};

static const struct {
    const char *pattern;
    const char *replacement;
} rules[] = {
    {"(m)an$", "$1en"},
    {"(pe)rson$", "$1ople"},
    {"(child)$", "$1ren"},
    {"^(ox)$", "$1en"},
    {"(ax|test)is$", "$1es"},
    {"(octop|vir)us$", "$1i"},
    {"(alias|status)$", "$1es"},
    {"(bu)s$", "$1ses"},
    {"(buffal|tomat|potat)o$", "$1oes"},
    {"([ti])um$", "$1a"},
    {"sis$", "ses"},
    {"(?:([^f])fe|([lr])f)$", "$1$2ves"},
    {"(hive)$", "$1s"},
    {"([^aeiouy]|qu)y$", "$1ies"},
    {"(x|ch|ss|sh)$", "$1es"},
    {"(matr|vert|ind)ix|ex$", "$1ices"},
    {"([m|l])ouse$", "$1ice"},
    {"(kn|w|l)ife$", "$1ives"},
    {"(quiz)$", "$1zes"},
    {"s$", "s"},
    {"([^a-z])$", "$1"},
    {"$", "s"},
};

/* Applies one rule: NULL when it does not match (or on failure, *failed set). */
static char *apply(const char *pattern, const char *replacement, const char *s, bool *failed)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &ec, &eo, NULL);
    if (!re) {
        *failed = true;
        return NULL;
    }
    char *out = NULL;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) {
        *failed = true;
    } else if (pcre2_match(re, (PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0) {
        size_t cap = strlen(s) * 2 + 16;
        out = malloc(cap);
        PCRE2_SIZE outlen = cap;
        if (!out || pcre2_substitute(re, (PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, 0,
                                     PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_UNSET_EMPTY |
                                         PCRE2_SUBSTITUTE_UNKNOWN_UNSET,
                                     NULL, NULL, (PCRE2_SPTR)replacement, PCRE2_ZERO_TERMINATED,
                                     (PCRE2_UCHAR *)out, &outlen) < 0) {
            free(out);
            out = NULL;
            *failed = true;
        }
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return out;
}

char *mk_pluralize(const char *name)
{
    char *lower = strdup(name);
    if (!lower) return NULL;
    for (char *p = lower; *p; p++) *p = (char)tolower((unsigned char)*p);
    for (size_t i = 0; i < sizeof uncountables / sizeof uncountables[0]; i++)
        if (strcmp(lower, uncountables[i]) == 0) return lower;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        bool failed = false;
        char *out = apply(rules[i].pattern, rules[i].replacement, lower, &failed);
        if (failed) {
            free(lower);
            return NULL;
        }
        if (out) {
            free(lower);
            return out;
        }
    }
    return lower;
}
