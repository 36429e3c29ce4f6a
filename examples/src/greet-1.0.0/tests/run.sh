#!/bin/sh
# Check greet's output: sh tests/run.sh PATH-TO-GREET
# SPDX-License-Identifier: BSD-2-Clause
set -u
greet=$1
failed=0

expect() {
    want=$1
    shift
    got=$("$greet" "$@")
    if [ "$got" != "$want" ]; then
        printf 'FAIL: greet %s\n  got:  %s\n  want: %s\n' "$*" "$got" "$want" >&2
        failed=1
    fi
}

expect "Hello, Ada!" Ada
expect "HELLO, GRACE!" --shout Grace
expect "hello, linus..." --style=whisper Linus
expect "Hello, world!"
expect "$(printf 'Hello, a!\nHello, b!')" a b
expect "greet 1.0.0 (libgreet 1.0.0)" --version
if "$greet" --style=loud x 2>/dev/null; then
    echo "FAIL: an unknown style must be refused" >&2
    failed=1
fi
[ "$failed" -eq 0 ] && echo "greet: all tests passed"
exit "$failed"
