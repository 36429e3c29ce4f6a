/* Unit tests for libgreet, run by `make check`. SPDX-License-Identifier: BSD-2-Clause */
#include <stdio.h>
#include <string.h>

#include "greet.h"

static int failures;

static void expect(const char *what, const char *got, const char *want)
{
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "FAIL %s: got \"%s\", want \"%s\"\n", what, got, want);
        failures++;
    }
}

static void expect_int(const char *what, int got, int want)
{
    if (got != want) {
        fprintf(stderr, "FAIL %s: got %d, want %d\n", what, got, want);
        failures++;
    }
}

int main(void)
{
    char buf[64];
    enum greet_style style = GREET_PLAIN;

    greet_format(buf, sizeof(buf), "Ada", GREET_PLAIN);
    expect("plain", buf, "Hello, Ada!");
    greet_format(buf, sizeof(buf), "Ada", GREET_SHOUT);
    expect("shout", buf, "HELLO, ADA!");
    greet_format(buf, sizeof(buf), "Ada", GREET_WHISPER);
    expect("whisper", buf, "hello, ada...");
    greet_format(buf, sizeof(buf), NULL, GREET_PLAIN);
    expect("default name", buf, "Hello, world!");

    /* truncation behaves like snprintf */
    expect_int("needed length", greet_format(buf, 6, "Grace", GREET_SHOUT), 13);
    expect("truncated", buf, "HELLO");
    expect_int("unknown style", greet_format(buf, sizeof(buf), "x", (enum greet_style)7), -1);

    expect_int("parse shout", greet_style_from_name("shout", &style), 0);
    expect_int("parsed style", (int)style, (int)GREET_SHOUT);
    expect_int("parse junk", greet_style_from_name("loud", &style), -1);
    expect("version", greet_version(), GREET_VERSION);

    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("libgreet: all tests passed\n");
    return 0;
}
