#!/bin/sh
# Check greet-fortune's output: sh tests/run.sh PATH-TO-PROGRAM
# SPDX-License-Identifier: BSD-2-Clause
set -u
prog=$1
failed=0

expect() {
    want=$1
    shift
    got=$("$prog" "$@")
    if [ "$got" != "$want" ]; then
        printf 'FAIL: greet-fortune %s\n  got:  %s\n  want: %s\n' "$*" "$got" "$want" >&2
        failed=1
    fi
}

expect "$(printf 'Hello, Ada!\nA clean build is a happy build.')" --seed 0 Ada
expect "$(printf 'Hello, world!\nA small package is a well-kept package.')" --seed 9
case $("$prog" --about) in
    "greet-fortune 1.0.0 (libgreet 1.0.0), built for "*) ;;
    *) echo "FAIL: --about" >&2; failed=1 ;;
esac
[ "$failed" -eq 0 ] && echo "greet-fortune: all tests passed"
exit "$failed"
