"""The key rules every store shares and the farm's key scheme (pure; no store needed)."""

from __future__ import annotations

import pytest

from apkfarm.blobs import InvalidBlobKey, layout
from apkfarm.blobs.keys import segment, validate_key, validate_prefix

SHA = "a" * 64


def test_the_farm_key_scheme() -> None:
    assert layout.source_key(SHA) == f"sources/sha256/{SHA}"
    assert layout.staging_key("job-42", "foo-1.2.3-r0.apk") == "staging/job-42/foo-1.2.3-r0.apk"
    assert layout.staging_prefix("job-42") == "staging/job-42/"
    assert layout.log_key("job-42") == "logs/job-42.log"
    assert (
        layout.repo_package_key("main", "x86_64", "gtk+3-3.24.38-r0.apk")
        == "repo/main/x86_64/gtk+3-3.24.38-r0.apk"
    )
    assert layout.repo_index_key("main", "aarch64") == "repo/main/aarch64/APKINDEX.tar.gz"
    assert layout.repo_prefix("main/debug", "riscv64") == "repo/main/debug/riscv64/"
    assert (
        layout.index_generation_key("user", "x86_64", 7)
        == "repo/user/x86_64/.generations/0000000007/APKINDEX.tar.gz"
    )
    assert layout.generations_prefix("user", "x86_64") == "repo/user/x86_64/.generations/"
    assert layout.audit_key(12) == "audit/000000000012.json"
    assert layout.tree_key(SHA) == f"trees/{SHA}.tar"


def test_generation_keys_sort_in_numeric_order_and_parse_back() -> None:
    keys = [layout.index_generation_key("main", "x86_64", n) for n in (10, 9, 100, 1)]
    assert [layout.parse_generation(k) for k in sorted(keys)] == [1, 9, 10, 100]
    assert layout.parse_generation("repo/main/x86_64/APKINDEX.tar.gz") is None
    assert [layout.audit_key(n) for n in (2, 10)] == sorted(layout.audit_key(n) for n in (10, 2))


@pytest.mark.parametrize(
    ("build", "bad"),
    [
        (layout.source_key, "A" * 64),
        (layout.source_key, "a" * 63),
        (layout.source_key, "../" + "a" * 61),
        (layout.tree_key, "g" * 64),
        (lambda v: layout.staging_key(v, "a-1-r0.apk"), "../jobs"),
        (lambda v: layout.staging_key(v, "a-1-r0.apk"), "job/1"),
        (lambda v: layout.staging_key(v, "a-1-r0.apk"), ""),
        (lambda v: layout.staging_key("job-1", v), "../../etc/passwd.apk"),
        (lambda v: layout.staging_key("job-1", v), "a-1-r0.tar"),
        (lambda v: layout.staging_key("job-1", v), ".apk"),
        (lambda v: layout.staging_key("job-1", v), "a b.apk"),
        (layout.log_key, ".hidden"),
        (lambda v: layout.repo_index_key(v, "x86_64"), "Main"),
        (lambda v: layout.repo_index_key(v, "x86_64"), "main//debug"),
        (lambda v: layout.repo_index_key(v, "x86_64"), "../main"),
        (lambda v: layout.repo_index_key("main", v), "x86/64"),
        (lambda v: layout.repo_index_key("main", v), ".."),
        (lambda v: layout.repo_package_key("main", "x86_64", v), "APKINDEX.tar.gz"),
        (lambda v: layout.index_generation_key("main", "x86_64", v), -1),
        (lambda v: layout.index_generation_key("main", "x86_64", v), 10**10),
        (lambda v: layout.index_generation_key("main", "x86_64", v), True),
        (layout.audit_key, "7"),
    ],
)
def test_layout_refuses_bad_parts(build: object, bad: object) -> None:
    with pytest.raises(InvalidBlobKey, match="invalid"):
        build(bad)  # type: ignore[operator]


def test_keys_and_prefixes() -> None:
    assert validate_key("a/b.c/d") == "a/b.c/d"
    assert validate_key("repo/main/x86_64/.generations/0000000001/APKINDEX.tar.gz")
    for prefix in ["", "a", "a/", "a/b", "repo/main/x", ".generations/"]:
        assert validate_prefix(prefix) == prefix
    with pytest.raises(InvalidBlobKey, match=r"invalid blob key 'a/\.\./b': '\.\.' segments"):
        validate_key("a/../b")
    with pytest.raises(InvalidBlobKey, match="U\\+0000"):
        validate_key("a\x00b")
    with pytest.raises(InvalidBlobKey, match="longer than 1024 bytes"):
        validate_key("é" * 513)


def test_segment_from_data() -> None:
    assert segment("foo-1.0-r0.apk", "file name") == "foo-1.0-r0.apk"
    for bad in ["a/b", "..", "", "x\ny"]:
        with pytest.raises(InvalidBlobKey, match="invalid file name"):
            segment(bad, "file name")
