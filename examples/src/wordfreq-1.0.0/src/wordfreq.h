/* wordfreq: count how often each word occurs. SPDX-License-Identifier: BSD-2-Clause */
#ifndef WORDFREQ_H
#define WORDFREQ_H

#include <stddef.h>

struct wf_entry {
    char *word;
    unsigned long count;
};

struct wf_table {
    struct wf_entry *slots;  /* open addressing, linear probing */
    size_t capacity;         /* a power of two */
    size_t used;
};

int wf_init(struct wf_table *t);
void wf_free(struct wf_table *t);
/* Count one occurrence of the LEN bytes at WORD (copied). 0, or -1 if out of memory. */
int wf_add(struct wf_table *t, const char *word, size_t len);
/* Split TEXT into words (runs of ASCII letters, folded to lower case, cut at
 * 128 letters) and count them. */
int wf_add_text(struct wf_table *t, const char *text, size_t len);
/* The entries sorted by count (descending), then word; NULL if out of memory.
 * The array is the caller's to free(); the words still belong to the table. */
struct wf_entry *wf_sorted(const struct wf_table *t, size_t *count);

#endif
