/* greet-fortune [--seed N] [--about] [NAME]: a greeting and a fortune.
 * SPDX-License-Identifier: BSD-2-Clause */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <greet.h>

#ifndef ARCH_NOTE
#define ARCH_NOTE "generic"
#endif

static const char *const fortunes[] = {
    "A clean build is a happy build.",
    "Your next patch applies without fuzz.",
    "The tests you write today catch the bug of tomorrow.",
    "Reproducible builds bring peace of mind.",
    "A small package is a well-kept package.",
};

int main(int argc, char **argv)
{
    unsigned long seed = (unsigned long)time(NULL);
    const char *name = NULL;
    char line[256];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--about") == 0) {
            printf("greet-fortune 1.0.0 (libgreet %s), built for %s\n", greet_version(),
                   ARCH_NOTE);
            return 0;
        } else {
            name = argv[i];
        }
    }
    greet_format(line, sizeof(line), name, GREET_PLAIN);
    puts(line);
    puts(fortunes[seed % (sizeof(fortunes) / sizeof(fortunes[0]))]);
    return 0;
}
