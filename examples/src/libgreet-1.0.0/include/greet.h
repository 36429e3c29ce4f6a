/* libgreet: format friendly greetings.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 */
#ifndef GREET_H
#define GREET_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GREET_VERSION "1.0.0"

enum greet_style {
    GREET_PLAIN = 0,   /* "Hello, Ada!" */
    GREET_SHOUT = 1,   /* "HELLO, ADA!" */
    GREET_WHISPER = 2  /* "hello, ada..." */
};

/* The library's version string, e.g. "1.0.0". */
const char *greet_version(void);

/* Write the greeting for NAME (NULL or "" means "world") in STYLE into BUF,
 * which holds SIZE bytes. Like snprintf: always NUL-terminates when SIZE > 0
 * and returns the length the full greeting needs, or -1 for an unknown style. */
int greet_format(char *buf, size_t size, const char *name, enum greet_style style);

/* Parse "plain", "shout" or "whisper". Returns 0 and sets *OUT on success,
 * -1 for anything else. */
int greet_style_from_name(const char *text, enum greet_style *out);

#ifdef __cplusplus
}
#endif

#endif
