/* Unit tests for the counting core. SPDX-License-Identifier: BSD-2-Clause */
#include <stdio.h>
#include <string.h>

#include "tally.h"

static int failures;

static void check(const char *text, size_t chunk, unsigned long lines, unsigned long words,
                  unsigned long longest)
{
    struct tally t;
    size_t len = strlen(text);

    tally_init(&t);
    for (size_t at = 0; at < len; at += chunk)
        tally_feed(&t, text + at, len - at < chunk ? len - at : chunk);
    tally_finish(&t);
    if (t.lines != lines || t.words != words || t.bytes != len || t.longest != longest) {
        fprintf(stderr, "FAIL \"%s\" (chunk %zu): lines=%lu words=%lu bytes=%lu longest=%lu\n",
                text, chunk, t.lines, t.words, t.bytes, t.longest);
        failures++;
    }
}

int main(void)
{
    for (size_t chunk = 1; chunk <= 8; chunk++) {
        check("", chunk, 0, 0, 0);
        check("one\n", chunk, 1, 1, 3);
        check("two words\nand three more\n", chunk, 2, 5, 14);
        check("no newline at end", chunk, 1, 4, 17);
        check("  spaced   out \n\n\ttabs\there\n", chunk, 3, 4, 15);
    }
    if (failures)
        return 1;
    puts("tally: all core tests passed");
    return 0;
}
