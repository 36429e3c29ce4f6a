"""cbuild's ``archs`` matching: which architectures a template builds for.

``archs`` is a list of fnmatch patterns, each optionally negated with ``!``
(``["x86_64", "ppc*", "!ppc64"]``). The order of the list does not matter:
among the patterns that match the arch, the one with the most literal
(non-wildcard) characters decides; a tie between different patterns is an
error in the template ("ambiguous"), and ``p`` with ``!p`` is "conflicting".
No ``archs`` means every arch.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

__all__ = ["arch_exclusion", "literal_length"]


def literal_length(pattern: str) -> int:
    """How many characters of `pattern` match literally (not ``*``, ``?`` or ``[...]``)."""
    count = 0
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char in "*?":
            index += 1
        elif char == "[":
            close = pattern.find("]", index)
            if close < 0:
                break
            index = close + 1
        else:
            count += 1
            index += 1
    return count


def arch_exclusion(archs: Sequence[object] | None, arch: str) -> str | None:
    """Why `archs` excludes `arch` (cbuild's wording), or None when it may build."""
    if not archs:
        return None
    if not isinstance(archs, list | tuple) or not all(isinstance(a, str) for a in archs):
        return "archs field is malformed, cannot build"
    best: str | None = None
    best_negated = False
    for entry in archs:
        assert isinstance(entry, str)
        negated = entry.startswith("!")
        pattern = entry[1:] if negated else entry
        if not fnmatch.fnmatchcase(arch, pattern):
            continue
        if best is None:
            best, best_negated = pattern, negated
            continue
        if pattern == best:
            if negated != best_negated:
                return f"conflicting arch patterns: {pattern}, !{pattern}, cannot build"
            continue
        current, previous = literal_length(pattern), literal_length(best)
        if current == previous:
            shown_best = f"!{best}" if best_negated else best
            shown = f"!{pattern}" if negated else pattern
            return f"ambiguous arch patterns: {shown_best}, {shown}, cannot build"
        if current > previous:
            best, best_negated = pattern, negated
    if best is None or best_negated:
        return f"this package cannot be built for {arch}"
    return None
