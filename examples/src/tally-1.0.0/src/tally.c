/* SPDX-License-Identifier: BSD-2-Clause */
#include <ctype.h>

#include "tally.h"

void tally_init(struct tally *t)
{
    t->lines = t->words = t->bytes = t->longest = t->current = 0;
    t->in_word = 0;
}

void tally_feed(struct tally *t, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        t->bytes++;
        if (c == '\n') {
            t->lines++;
            if (t->current > t->longest)
                t->longest = t->current;
            t->current = 0;
        } else {
            t->current++;
        }
        if (isspace(c)) {
            t->in_word = 0;
        } else if (!t->in_word) {
            t->in_word = 1;
            t->words++;
        }
    }
}

void tally_finish(struct tally *t)
{
    if (t->current > 0) {
        t->lines++;
        if (t->current > t->longest)
            t->longest = t->current;
        t->current = 0;
    }
}
