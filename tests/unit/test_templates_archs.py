"""cbuild's archs patterns: the most literal matching pattern decides, order does not."""

from __future__ import annotations

import pytest

from apkfarm.templates.archs import arch_exclusion, literal_length


@pytest.mark.parametrize(
    ("archs", "arch", "builds"),
    [
        (None, "x86_64", True),
        ([], "riscv64", True),
        (["x86_64"], "x86_64", True),
        (["x86_64"], "aarch64", False),
        (["ppc*"], "ppc64le", True),
        (["ppc*"], "x86_64", False),
        (["*", "!ppc*"], "ppc64", False),
        (["*", "!ppc*"], "riscv64", True),
        (["!ppc*", "*"], "ppc64le", False),  # order does not matter
        (["ppc*", "!ppc64"], "ppc64", False),  # the more literal pattern wins
        (["ppc*", "!ppc64"], "ppc64le", True),
        (["!ppc64", "ppc*"], "ppc64le", True),
        (["!x86_64"], "x86_64", False),
        (["!x86_64"], "aarch64", False),  # nothing matches positively
        (["*", "!x86_64"], "aarch64", True),
        (["aarch64", "riscv64"], "riscv64", True),
        (["*64*", "!ppc64*"], "ppc64le", False),
        (["x86_6?"], "x86_64", True),
        (["[ax]*"], "aarch64", True),
    ],
)
def test_patterns(archs: list[str] | None, arch: str, builds: bool) -> None:
    reason = arch_exclusion(archs, arch)
    if builds:
        assert reason is None
    else:
        assert reason == f"this package cannot be built for {arch}"


def test_a_pattern_and_its_negation_conflict() -> None:
    assert (
        arch_exclusion(["x86_64", "!x86_64"], "x86_64")
        == "conflicting arch patterns: x86_64, !x86_64, cannot build"
    )


def test_equally_literal_patterns_are_ambiguous() -> None:
    assert (
        arch_exclusion(["ppc*", "!*4le"], "ppc64le")
        == "ambiguous arch patterns: ppc*, !*4le, cannot build"
    )


def test_repeating_a_pattern_is_harmless() -> None:
    assert arch_exclusion(["x86_64", "x86_64"], "x86_64") is None


def test_malformed_archs() -> None:
    assert arch_exclusion(["x86_64", 5], "x86_64") == "archs field is malformed, cannot build"


@pytest.mark.parametrize(
    ("pattern", "count"), [("x86_64", 6), ("ppc*", 3), ("*", 0), ("x86_6?", 5), ("[ab]rm*", 2)]
)
def test_literal_length(pattern: str, count: int) -> None:
    assert literal_length(pattern) == count
