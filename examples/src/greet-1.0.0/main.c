/* greet: print friendly greetings with libgreet. SPDX-License-Identifier: BSD-2-Clause */
#include <stdio.h>
#include <string.h>

#include <greet.h>

#define GREET_PROGRAM_VERSION "1.0.0"

static void usage(FILE *out)
{
    fputs("usage: greet [--shout | --whisper | --style=STYLE] [NAME...]\n"
          "       greet --version\n",
          out);
}

int main(int argc, char **argv)
{
    enum greet_style style = GREET_PLAIN;
    char line[256];
    int names = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--shout") == 0) {
            style = GREET_SHOUT;
        } else if (strcmp(arg, "--whisper") == 0) {
            style = GREET_WHISPER;
        } else if (strncmp(arg, "--style=", 8) == 0) {
            if (greet_style_from_name(arg + 8, &style) != 0) {
                fprintf(stderr, "greet: unknown style '%s'\n", arg + 8);
                return 2;
            }
        } else if (strcmp(arg, "--version") == 0) {
            printf("greet %s (libgreet %s)\n", GREET_PROGRAM_VERSION, greet_version());
            return 0;
        } else if (strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            usage(stderr);
            return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            continue;
        greet_format(line, sizeof(line), argv[i], style);
        puts(line);
        names++;
    }
    if (names == 0) {
        greet_format(line, sizeof(line), NULL, style);
        puts(line);
    }
    return 0;
}
