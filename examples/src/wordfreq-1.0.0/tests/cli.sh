#!/bin/sh
# sh tests/cli.sh WORDFREQ SAMPLE EXPECTED: compare the top five words.
# SPDX-License-Identifier: BSD-2-Clause
set -eu
got=$("$1" -n 5 "$2")
want=$(cat "$3")
if [ "$got" != "$want" ]; then
    printf 'FAIL: wordfreq -n 5 %s\ngot:\n%s\nwant:\n%s\n' "$2" "$got" "$want" >&2
    exit 1
fi
echo "wordfreq: cli test passed"
