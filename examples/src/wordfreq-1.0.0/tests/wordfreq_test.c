/* Unit tests for the counting table. SPDX-License-Identifier: BSD-2-Clause */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wordfreq.h"

static int failures;

#define EXPECT(cond)                                                       \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

int main(void)
{
    struct wf_table t;
    struct wf_entry *sorted;
    size_t count;
    const char *text = "The cat and the hat. THE END, and the cat!";
    char word[16];

    EXPECT(wf_init(&t) == 0);
    EXPECT(wf_add_text(&t, text, strlen(text)) == 0);
    sorted = wf_sorted(&t, &count);
    EXPECT(sorted != NULL);
    EXPECT(count == 5);
    EXPECT(strcmp(sorted[0].word, "the") == 0 && sorted[0].count == 4);
    EXPECT(strcmp(sorted[1].word, "and") == 0 && sorted[1].count == 2);
    EXPECT(strcmp(sorted[2].word, "cat") == 0 && sorted[2].count == 2);
    EXPECT(strcmp(sorted[3].word, "end") == 0 && sorted[3].count == 1);
    free(sorted);

    /* enough distinct words to make the table grow several times */
    for (int i = 0; i < 5000; i++) {
        int len = snprintf(word, sizeof(word), "w%c%c%c", 'a' + i % 26, 'a' + i / 26 % 26,
                           'a' + i / 676 % 26);
        EXPECT(wf_add(&t, word, (size_t)len) == 0);
    }
    sorted = wf_sorted(&t, &count);
    EXPECT(count == 5 + 5000);
    free(sorted);
    wf_free(&t);

    if (failures)
        return 1;
    puts("wordfreq: all core tests passed");
    return 0;
}
