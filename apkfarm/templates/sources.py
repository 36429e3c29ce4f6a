"""A template's ``source`` and ``sha256`` fields, read as cbuild reads them.

The scheduler turns them into fetch jobs and the builder matches the fetched
files against them; both read them here, so they cannot disagree about which
file is which or what its checksum is.
"""

from __future__ import annotations

from dataclasses import dataclass

from apkfarm.errors import ApkfarmError
from apkfarm.templates.model import Template


class SourceError(ApkfarmError):
    """A source entry or a source/sha256 list that cannot be used."""


@dataclass(frozen=True)
class SourceEntry:
    """One entry of a template's ``source`` list, as cbuild reads it."""

    url: str
    # The name the build sees: the URL's last segment, or what follows '>'.
    filename: str
    # False for entries written with a leading '!' (cbuild does not extract them).
    extract: bool


@dataclass(frozen=True)
class Source:
    """A source entry with the checksum the template gives for it."""

    entry: SourceEntry
    sha256: str


def split_source_entry(entry: str) -> SourceEntry:
    """Split ``[!]URL[>FILENAME]`` the way cbuild does (the filename is not validated here)."""
    extract = not entry.startswith("!")
    text = entry if extract else entry[1:]
    rename = text.rfind(">")
    slash = text.rfind("/")
    if rename > slash:
        url, filename = text[:rename], text[rename + 1 :]
    elif slash >= 0:
        url, filename = text, text[slash + 1 :]
    else:
        raise SourceError(f"source {entry!r}: expected URL or URL>FILENAME")
    if not url or not filename:
        raise SourceError(f"source {entry!r}: no file name (end the URL with one, or add >NAME)")
    return SourceEntry(url, filename, extract)


def _as_list(value: object) -> list[object]:
    """cbuild accepts a single string where a list is expected."""
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, (list, tuple)) else []


def template_sources(template: Template) -> list[Source]:
    """The template's sources in order, each with its sha256; SourceError names what is wrong."""
    entries = _as_list(template.fields.get("source"))
    sums = _as_list(template.fields.get("sha256"))
    if len(entries) != len(sums):
        raise SourceError(f"{len(entries)} sources but {len(sums)} sha256 checksums")
    return [
        Source(split_source_entry(str(entry)), str(sha256))
        for entry, sha256 in zip(entries, sums, strict=True)
    ]
