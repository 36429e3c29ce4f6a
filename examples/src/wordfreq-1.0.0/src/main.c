/* wordfreq [-n N] [FILE]: print the N most frequent words (default 10).
 * SPDX-License-Identifier: BSD-2-Clause */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wordfreq.h"

int main(int argc, char **argv)
{
    unsigned long top = 10;
    const char *path = NULL;
    struct wf_table table;
    char buf[8192];
    size_t n, count;
    FILE *in = stdin;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            char *end;
            top = strtoul(argv[++i], &end, 10);
            if (*end != '\0') {
                fprintf(stderr, "wordfreq: -n needs a number\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--version") == 0) {
            puts("wordfreq 1.0.0");
            return 0;
        } else {
            path = argv[i];
        }
    }
    if (path && !(in = fopen(path, "rb"))) {
        fprintf(stderr, "wordfreq: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (wf_init(&table) != 0)
        goto nomem;
    /* A word may be split between two reads: hold back the trailing letters
     * of each chunk and count them with the next one. */
    size_t carry = 0;
    while ((n = fread(buf + carry, 1, sizeof(buf) - carry, in)) > 0) {
        size_t len = carry + n, cut = len;
        while (cut > 0 && ((buf[cut - 1] | 0x20) >= 'a' && (buf[cut - 1] | 0x20) <= 'z'))
            cut--;
        if (cut == 0 && len == sizeof(buf))
            cut = len;  /* an absurdly long "word": split it */
        if (wf_add_text(&table, buf, cut) != 0)
            goto nomem;
        carry = len - cut;
        memmove(buf, buf + cut, carry);
    }
    if (carry && wf_add_text(&table, buf, carry) != 0)
        goto nomem;
    struct wf_entry *sorted = wf_sorted(&table, &count);
    if (!sorted)
        goto nomem;
    for (size_t i = 0; i < count && i < top; i++)
        printf("%lu %s\n", sorted[i].count, sorted[i].word);
    free(sorted);
    wf_free(&table);
    if (in != stdin)
        fclose(in);
    return 0;
nomem:
    fprintf(stderr, "wordfreq: out of memory\n");
    return 1;
}
