"""Site macros in source URLs and cbuild's source-entry syntax."""

from __future__ import annotations

import pytest

from apkfarm.services.fetcher.sites import (
    DEFAULT_SITES,
    SiteError,
    expand_url,
    parse_sites,
    site_table,
)
from apkfarm.templates.sources import SourceError, split_source_entry


def test_a_macro_becomes_its_site() -> None:
    sites = {"EXAMPLES_SITE": "http://127.0.0.1:8000/dist"}
    assert (
        expand_url("$(EXAMPLES_SITE)/greet-1.0.tar.gz", sites)
        == "http://127.0.0.1:8000/dist/greet-1.0.tar.gz"
    )


def test_every_macro_in_a_url_is_expanded_and_plain_urls_stay() -> None:
    sites = {"A_SITE": "https://a.example", "B_SITE": "https://b.example/x"}
    assert expand_url("$(A_SITE)/$(B_SITE)", sites) == "https://a.example/https://b.example/x"
    assert expand_url("https://c.example/f.tar.gz", sites) == "https://c.example/f.tar.gz"


def test_cbuild_defaults_are_there() -> None:
    table = site_table()
    assert expand_url("$(GNU_SITE)/hello/hello-2.12.tar.gz", table) == (
        "https://ftp.gnu.org/gnu/hello/hello-2.12.tar.gz"
    )
    assert {"KERNEL_SITE", "SOURCEFORGE_SITE", "PYPI_SITE"} <= set(table)


def test_an_unknown_macro_names_itself_and_the_url() -> None:
    with pytest.raises(SiteError) as caught:
        expand_url("$(NOPE_SITE)/x.tar.gz", {"GNU_SITE": "https://ftp.gnu.org/gnu"})
    message = str(caught.value)
    assert "$(NOPE_SITE)" in message
    assert "'$(NOPE_SITE)/x.tar.gz'" in message
    assert "GNU_SITE" in message


def test_an_unterminated_macro_is_refused() -> None:
    with pytest.raises(SiteError, match="unterminated"):
        expand_url("$(GNU_SITE/x.tar.gz", site_table())


def test_parse_sites_reads_the_environment_format() -> None:
    sites = parse_sites(
        " EXAMPLES_SITE=http://127.0.0.1:9/d/ , GNU_SITE=https://mirror.example/gnu,"
    )
    assert sites == {
        "EXAMPLES_SITE": "http://127.0.0.1:9/d",
        "GNU_SITE": "https://mirror.example/gnu",
    }
    assert parse_sites("") == {}


def test_configured_sites_override_the_defaults() -> None:
    table = site_table("GNU_SITE=https://mirror.example/gnu")
    assert table["GNU_SITE"] == "https://mirror.example/gnu"
    assert table["KERNEL_SITE"] == DEFAULT_SITES["KERNEL_SITE"]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("GNU_SITE", "expected NAME=URL"),
        ("gnu_site=https://x.example", "upper-case"),
        ("GNU_SITE=ftp://x.example", "must start with"),
        ("GNU_SITE=https://user:pw@x.example", "credentials"),
        ("GNU_SITE=https://", "names no host"),
        ("GNU_SITE=https://x.example,GNU_SITE=https://y.example", "given twice"),
        ("A_SITE=$(B_SITE)/x", "not a usable URL"),
    ],
)
def test_bad_site_entries_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(SiteError, match=complaint):
        parse_sites(text)


def test_source_entries_split_like_cbuild() -> None:
    plain = split_source_entry("$(GNU_SITE)/hello/hello-2.12.tar.gz")
    assert (plain.url, plain.filename, plain.extract) == (
        "$(GNU_SITE)/hello/hello-2.12.tar.gz",
        "hello-2.12.tar.gz",
        True,
    )
    renamed = split_source_entry("!https://x.example/v1.0.tar.gz>hello-1.0.tar.gz")
    assert (renamed.url, renamed.filename, renamed.extract) == (
        "https://x.example/v1.0.tar.gz",
        "hello-1.0.tar.gz",
        False,
    )
    # A '>' before the last '/' is part of the URL, not a rename.
    odd = split_source_entry("https://x.example/a>b/c.tar.gz")
    assert odd.filename == "c.tar.gz"


@pytest.mark.parametrize(
    "entry", ["no-slash-at-all", "https://x.example/dir/", "https://x.example/f>"]
)
def test_source_entries_without_a_file_name_are_refused(entry: str) -> None:
    with pytest.raises(SourceError):
        split_source_entry(entry)
