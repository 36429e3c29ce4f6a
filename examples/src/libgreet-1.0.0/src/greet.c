/* SPDX-License-Identifier: BSD-2-Clause */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "greet.h"

const char *greet_version(void)
{
    return GREET_VERSION;
}

static int change_case(char *buf, size_t size, int length, int upper)
{
    size_t written = (size_t)length < size ? (size_t)length : (size ? size - 1 : 0);
    for (size_t i = 0; i < written; i++) {
        unsigned char c = (unsigned char)buf[i];
        buf[i] = (char)(upper ? toupper(c) : tolower(c));
    }
    return length;
}

int greet_format(char *buf, size_t size, const char *name, enum greet_style style)
{
    int length;

    if (!name || !*name)
        name = "world";
    switch (style) {
    case GREET_PLAIN:
        return snprintf(buf, size, "Hello, %s!", name);
    case GREET_SHOUT:
        length = snprintf(buf, size, "Hello, %s!", name);
        return length < 0 ? length : change_case(buf, size, length, 1);
    case GREET_WHISPER:
        length = snprintf(buf, size, "Hello, %s...", name);
        return length < 0 ? length : change_case(buf, size, length, 0);
    }
    return -1;
}

int greet_style_from_name(const char *text, enum greet_style *out)
{
    static const struct {
        const char *name;
        enum greet_style style;
    } styles[] = {
        {"plain", GREET_PLAIN},
        {"shout", GREET_SHOUT},
        {"whisper", GREET_WHISPER},
    };

    if (!text)
        return -1;
    for (size_t i = 0; i < sizeof(styles) / sizeof(styles[0]); i++) {
        if (strcmp(text, styles[i].name) == 0) {
            *out = styles[i].style;
            return 0;
        }
    }
    return -1;
}
