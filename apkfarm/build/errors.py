"""Refusals of the builder's domain steps; each message names the file and what is wrong."""

from __future__ import annotations

from collections.abc import Sequence

from apkfarm.errors import ApkfarmError


class BuildError(ApkfarmError):
    """Base class for refusals of the build steps (extract, ELF, scan, lint)."""


class ExtractError(BuildError):
    """A source archive was refused or could not be unpacked; nothing was left behind."""


class ExtractLimitError(ExtractError):
    """A source archive exceeds a member-count, size or compression-ratio limit."""


class ElfError(BuildError):
    """A file that starts like ELF is malformed (truncated, bad offsets, loops)."""


class ProblemsError(BuildError):
    """Several independent problems found in one pass, all listed in the message.

    ``problems`` keeps them as separate lines so a caller can show or count
    them; the message is the heading followed by one problem per line.
    """

    def __init__(self, heading: str, problems: Sequence[str]) -> None:
        self.heading = heading
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{heading}:\n{lines}" if lines else heading)


class ScanError(ProblemsError):
    """Automatic dependency/provider scanning found unresolvable or invalid items."""


class LintError(ProblemsError):
    """A staged package breaks packaging rules."""
