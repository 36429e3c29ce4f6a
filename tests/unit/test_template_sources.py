"""A template's sources and checksums, as the scheduler and the builder both read them."""

from __future__ import annotations

from typing import Any

import pytest

from apkfarm.profiles import resolve_context
from apkfarm.templates import LoadPolicy, Template
from apkfarm.templates.rules import apply_rules
from apkfarm.templates.sources import SourceError, split_source_entry, template_sources

SUM_A = "a" * 64
SUM_B = "b" * 64


def template(**fields: Any) -> Template:
    raw = {
        "ok": True,
        "fields": {
            "pkgname": "foo",
            "pkgver": "1.0",
            "pkgrel": 0,
            "pkgdesc": "Foo program",
            "license": "MIT",
            "url": "https://example.org/foo",
            **fields,
        },
        "subpackages": [],
    }
    outcome = apply_rules(
        raw,
        category="main",
        dirname="foo",
        context=resolve_context("x86_64", host="x86_64"),
        policy=LoadPolicy(),
    )
    assert outcome.template is not None, outcome.errors
    return outcome.template


def test_sources_pair_with_their_checksums_in_order() -> None:
    sources = template_sources(
        template(
            source=["$(GNU_SITE)/foo/foo-1.0.tar.gz", "!https://x.example/v1>foo-data.bin"],
            sha256=[SUM_A, SUM_B],
        )
    )
    assert [(s.entry.filename, s.entry.extract, s.sha256) for s in sources] == [
        ("foo-1.0.tar.gz", True, SUM_A),
        ("foo-data.bin", False, SUM_B),
    ]


def test_a_single_string_is_a_list_of_one() -> None:
    (only,) = template_sources(template(source="https://x.example/foo-1.0.tar.gz", sha256=SUM_A))
    assert (only.entry.url, only.sha256) == ("https://x.example/foo-1.0.tar.gz", SUM_A)


def test_no_sources_is_an_empty_list() -> None:
    assert template_sources(template()) == []


def test_a_count_mismatch_says_both_counts() -> None:
    with pytest.raises(SourceError, match="2 sources but 1 sha256 checksums"):
        template_sources(
            template(
                source=["https://x.example/a.tar.gz", "https://x.example/b.tar.gz"], sha256=SUM_A
            )
        )


def test_an_entry_without_a_file_name_is_refused() -> None:
    with pytest.raises(SourceError, match="no file name"):
        split_source_entry("https://x.example/dir/")
