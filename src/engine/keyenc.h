/* Order-preserving binary encoding of BSON values ("key strings").
 *
 * memcmp order of encodings equals MongoDB's value order (bson/value.h), and values that
 * MongoDB considers equal (1, 1.0, NumberLong(1)) encode identically, so an encoded `_id` is
 * the record key and an encoded index key is an index entry. Known approximation: a
 * decimal128 value is encoded through the nearest double at or below it, so two decimals
 * that differ beyond double precision share a key (they are then told apart by the stored
 * document, see collection.c). */
#ifndef MK_ENGINE_KEYENC_H
#define MK_ENGINE_KEYENC_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer; starts with inline storage so short keys need no heap. */
typedef struct mk_buf {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* an allocation failed: the content is incomplete */
    uint8_t inline_[128];
} mk_buf_t;

void mk_buf_init(mk_buf_t *b);
void mk_buf_free(mk_buf_t *b);
void mk_buf_reset(mk_buf_t *b);
void mk_buf_append(mk_buf_t *b, const void *p, size_t n);
static inline void mk_buf_byte(mk_buf_t *b, uint8_t c)
{
    if (b->len < b->cap)
        b->data[b->len++] = c;
    else
        mk_buf_append(b, &c, 1);
}

/* Appends the encoding of v. Descending index fields invert the bytes (see keyenc.c). */
void mk_keyenc_value(mk_buf_t *b, const bson_value_t *v);
void mk_keyenc_value_desc(mk_buf_t *b, const bson_value_t *v);

/* LMDB's default maximum key size is 511 bytes. Keys longer than MK_KEY_INLINE_MAX are stored
 * as their first MK_KEY_PREFIX bytes followed by a 16-byte hash of the whole encoding; order is
 * then exact up to the prefix and lookups confirm the value against the stored record. */
#define MK_KEY_INLINE_MAX 480
#define MK_KEY_PREFIX     460
/* Shortens b in place when it exceeds MK_KEY_INLINE_MAX; returns true when it did. */
bool mk_keyenc_fit(mk_buf_t *b);

#endif
