/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>
#include <string.h>

#include "wordfreq.h"

static unsigned long hash(const char *s, size_t len)
{
    unsigned long h = 5381;
    for (size_t i = 0; i < len; i++)
        h = h * 33 + (unsigned char)s[i];
    return h;
}

int wf_init(struct wf_table *t)
{
    t->capacity = 64;
    t->used = 0;
    t->slots = calloc(t->capacity, sizeof(*t->slots));
    return t->slots ? 0 : -1;
}

void wf_free(struct wf_table *t)
{
    for (size_t i = 0; i < t->capacity; i++)
        free(t->slots[i].word);
    free(t->slots);
    t->slots = NULL;
    t->capacity = t->used = 0;
}

static struct wf_entry *find_slot(struct wf_entry *slots, size_t capacity, const char *word,
                                  size_t len)
{
    size_t i = hash(word, len) & (capacity - 1);
    while (slots[i].word) {
        if (strlen(slots[i].word) == len && memcmp(slots[i].word, word, len) == 0)
            break;
        i = (i + 1) & (capacity - 1);
    }
    return &slots[i];
}

static int grow(struct wf_table *t)
{
    size_t capacity = t->capacity * 2;
    struct wf_entry *slots = calloc(capacity, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->capacity; i++) {
        if (t->slots[i].word)
            *find_slot(slots, capacity, t->slots[i].word, strlen(t->slots[i].word)) = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->capacity = capacity;
    return 0;
}

int wf_add(struct wf_table *t, const char *word, size_t len)
{
    struct wf_entry *slot;

    if ((t->used + 1) * 4 > t->capacity * 3 && grow(t) != 0)
        return -1;
    slot = find_slot(t->slots, t->capacity, word, len);
    if (!slot->word) {
        slot->word = malloc(len + 1);
        if (!slot->word)
            return -1;
        memcpy(slot->word, word, len);
        slot->word[len] = '\0';
        t->used++;
    }
    slot->count++;
    return 0;
}

static int is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int wf_add_text(struct wf_table *t, const char *text, size_t len)
{
    char word[128];
    size_t n = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && is_letter(text[i])) {
            if (n < sizeof(word))
                word[n++] = (char)(text[i] | 0x20);  /* ASCII lower case */
            continue;
        }
        if (n > 0 && wf_add(t, word, n) != 0)
            return -1;
        n = 0;
    }
    return 0;
}

static int by_count_then_word(const void *a, const void *b)
{
    const struct wf_entry *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->word, y->word);
}

struct wf_entry *wf_sorted(const struct wf_table *t, size_t *count)
{
    struct wf_entry *out = malloc((t->used ? t->used : 1) * sizeof(*out));
    size_t n = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < t->capacity; i++) {
        if (t->slots[i].word)
            out[n++] = t->slots[i];
    }
    qsort(out, n, sizeof(*out), by_count_then_word);
    *count = n;
    return out;
}
