/* tally: count lines, words and bytes of text. SPDX-License-Identifier: BSD-2-Clause */
#ifndef TALLY_H
#define TALLY_H

#include <stddef.h>

struct tally {
    unsigned long lines;
    unsigned long words;
    unsigned long bytes;
    unsigned long longest;  /* longest line, in bytes, without its newline */
    unsigned long current;  /* length of the line being read */
    int in_word;
};

void tally_init(struct tally *t);
/* Feed LEN bytes; may be called repeatedly with consecutive chunks. */
void tally_feed(struct tally *t, const char *data, size_t len);
/* Account for a last line without a newline. */
void tally_finish(struct tally *t);

#endif
