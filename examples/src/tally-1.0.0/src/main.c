/* tally [FILE...]: print line, word and byte counts and the longest line.
 * SPDX-License-Identifier: BSD-2-Clause */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tally.h"

static int tally_stream(FILE *in, const char *name)
{
    struct tally t;
    char buf[8192];
    size_t n;

    tally_init(&t);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        tally_feed(&t, buf, n);
    if (ferror(in)) {
        fprintf(stderr, "tally: %s: read error\n", name);
        return 1;
    }
    tally_finish(&t);
    printf("lines=%lu words=%lu bytes=%lu longest=%lu %s\n", t.lines, t.words, t.bytes,
           t.longest, name);
    return 0;
}

int main(int argc, char **argv)
{
    int status = 0;

    if (argc < 2)
        return tally_stream(stdin, "-");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            puts("tally 1.0.0");
            continue;
        }
        FILE *in = strcmp(argv[i], "-") == 0 ? stdin : fopen(argv[i], "rb");
        if (!in) {
            fprintf(stderr, "tally: %s: %s\n", argv[i], strerror(errno));
            status = 1;
            continue;
        }
        status |= tally_stream(in, argv[i]);
        if (in != stdin)
            fclose(in);
    }
    return status;
}
