#!/bin/sh
# Check greet-motd against a stand-in greet: sh tests/run.sh
# SPDX-License-Identifier: BSD-2-Clause
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PATH=$here/bin:$PATH
export PATH
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

expect() {
    want=$1
    shift
    got=$(sh "$here/../greet-motd" "$@")
    if [ "$got" != "$want" ]; then
        printf 'FAIL: greet-motd %s\n  got:  %s\n  want: %s\n' "$*" "$got" "$want" >&2
        failed=1
    fi
}

GREET_MOTD_CONF=$here/../greet-motd.conf expect "$(printf '[plain] Hello, Ada!\nHave a nice day.')" Ada
printf 'style=shout\n# a comment\nmessage=Backups run at noon.\n' >"$tmp/conf"
GREET_MOTD_CONF=$tmp/conf expect "$(printf '[shout] Hello, Bob!\nBackups run at noon.')" Bob
GREET_MOTD_CONF=$tmp/missing USER=carol expect "[plain] Hello, carol!"
[ "$failed" -eq 0 ] && echo "greet-motd: all tests passed"
exit "$failed"
