"""Scanning a ports tree's layout: categories, .parent chains, symlinks, change detection."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from test_templates_helpers import PORTS, write_tree

from apkfarm.errors import ApkfarmError
from apkfarm.templates.cache import EvaluationCache, context_digest, evaluation_key
from apkfarm.templates.loader import _interleaved
from apkfarm.templates.tree import CategoryListing, TreeScanner


def test_the_test_tree_is_read_in_cports_shape() -> None:
    snapshot = TreeScanner(PORTS).scan()
    assert set(snapshot.categories) == {"main", "user"}
    main = snapshot.categories["main"]
    assert "foo" in main.templates and "zlib" in main.templates
    assert main.symlinks["zlib-devel"] == "zlib"
    assert main.symlinks["awk-foo-default"] == "foo"
    assert ".parent" not in main.symlinks and main.parent_link is None
    assert snapshot.categories["user"].parent_link == "../main"
    assert snapshot.repositories("user") == ("user", "main")
    assert snapshot.repositories("main") == ("main",)
    file = snapshot.templates["main/zlib"]
    assert file.digest == hashlib.sha256(file.path.read_bytes()).hexdigest()


def test_parent_chains_follow_links_and_stop_at_loops(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a/x": "", "b/y": "", "c/z": ""}, parents={"c": "b", "b": "a", "a": "c"})
    snapshot = TreeScanner(tmp_path).scan()
    assert snapshot.repositories("c") == ("c", "b", "a")
    assert snapshot.repositories("a") == ("a", "c", "b")


def test_directories_without_templates_are_not_categories(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main/foo": "x = 1"})
    (tmp_path / "src" / "cbuild").mkdir(parents=True)
    (tmp_path / "etc" / "build_profiles").mkdir(parents=True)
    (tmp_path / "main" / "stray-dir").mkdir()
    (tmp_path / "main" / "README").write_text("hello")
    snapshot = TreeScanner(tmp_path).scan()
    assert set(snapshot.categories) == {"main"}
    assert snapshot.categories["main"].oddities == ("README", "stray-dir")


def test_unchanged_files_are_not_read_again(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main/foo": "a = 1\n", "main/bar": "b = 2\n"})
    scanner = TreeScanner(tmp_path)
    first = scanner.scan()
    foo = tmp_path / "main" / "foo" / "template.py"
    stat = foo.stat()
    second = scanner.scan()
    assert second.templates["main/foo"] is first.templates["main/foo"]
    assert second.categories["main"] is first.categories["main"]
    # An edit (even one keeping size and mtime) is seen through ctime/inode.
    foo.write_text("a = 2\n")
    os.utime(foo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    third = scanner.scan()
    assert third.templates["main/foo"].digest != first.templates["main/foo"].digest
    assert scanner.source(third.templates["main/foo"]) == b"a = 2\n"
    assert third.templates["main/bar"] is first.templates["main/bar"]


def test_an_edit_after_a_listing_is_seen_by_the_next_scan(tmp_path: Path) -> None:
    # Listing a category stats each template.py (and the scan reuses that);
    # a listing from an earlier call must not stand in for a later stat.
    write_tree(tmp_path, {"main/foo": "a = 1\n"})
    scanner = TreeScanner(tmp_path)
    scanner.scan()
    write_tree(tmp_path, {"main/bar": "b = 1\n"}, parents={})
    scanner.categories()  # lists main again (it changed), reads no template
    foo = tmp_path / "main" / "foo" / "template.py"
    stat = foo.stat()
    foo.write_text("a = 2\n")
    os.utime(foo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    snapshot = scanner.scan()
    assert scanner.source(snapshot.templates["main/foo"]) == b"a = 2\n"


def test_added_and_removed_templates_and_links_are_seen(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main/foo": "a = 1\n"})
    scanner = TreeScanner(tmp_path)
    assert set(scanner.scan().templates) == {"main/foo"}
    write_tree(tmp_path, {"main/bar": "b = 1\n"}, links={"main/bar-devel": "bar"}, parents={})
    snapshot = scanner.scan()
    assert set(snapshot.templates) == {"main/foo", "main/bar"}
    assert snapshot.categories["main"].symlinks == {"bar-devel": "bar"}


def test_oversized_templates_are_reported_not_read(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main/big": "x" * ((1 << 20) + 1)})
    snapshot = TreeScanner(tmp_path).scan()
    assert "main/big" not in snapshot.templates
    assert snapshot.problems == (("main/big", "template.py is not a regular file under 1 MiB"),)


def test_a_missing_tree_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ApkfarmError, match="not a ports tree"):
        TreeScanner(tmp_path / "nope").scan()


# --- the evaluation cache ----------------------------------------------------------


def test_keys_change_with_every_input() -> None:
    shared = context_digest("w1", {"arch": "x86_64"})
    base = {
        "context": shared,
        "category": "main",
        "name": "foo",
        "repositories": ("main",),
        "digest": "d1",
    }
    key = evaluation_key(**base)  # type: ignore[arg-type]
    variants = [
        {**base, "context": context_digest("w2", {"arch": "x86_64"})},
        {**base, "context": context_digest("w1", {"arch": "aarch64"})},
        {**base, "category": "user"},
        {**base, "name": "bar"},
        {**base, "repositories": ("main", "user")},
        {**base, "digest": "d2"},
    ]
    keys = {evaluation_key(**v) for v in variants}  # type: ignore[arg-type]
    assert key not in keys and len(keys) == len(variants)


def test_the_cache_persists_on_disk(tmp_path: Path) -> None:
    cache = EvaluationCache(tmp_path)
    cache.put("ab" + "0" * 62, {"ok": True, "fields": {"pkgname": "foo"}})
    fresh = EvaluationCache(tmp_path)
    assert fresh.get("ab" + "0" * 62) == {"ok": True, "fields": {"pkgname": "foo"}}
    assert fresh.get("cd" + "0" * 62) is None
    assert (fresh.hits, fresh.misses) == (1, 1)
    assert not list(tmp_path.rglob(".tmp-*"))


def test_the_memory_cache_is_bounded() -> None:
    cache = EvaluationCache(max_entries=2)
    for key in ("a", "b", "c"):
        cache.put(key, {"ok": True})
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") == {"ok": True}


def test_a_corrupt_cache_entry_is_a_miss(tmp_path: Path) -> None:
    key = "ef" + "1" * 62
    (tmp_path / "ef").mkdir()
    (tmp_path / "ef" / f"{key}.json").write_text("{not json")
    assert EvaluationCache(tmp_path).get(key) is None


# --- the order templates are read in ------------------------------------------------


def test_categories_are_read_interleaved_by_size() -> None:
    categories = {
        "main": CategoryListing("main", tuple(f"m{i}" for i in range(6)), {}, None, ()),
        "user": CategoryListing("user", ("u0", "u1"), {}, "../main", ()),
    }
    runs = _interleaved(categories)
    # each category's share of the first reads follows its share of the tree
    assert runs == [
        ("main", ["m0", "m1"]),
        ("user", ["u0"]),
        ("main", ["m2", "m3", "m4"]),
        ("user", ["u1"]),
        ("main", ["m5"]),
    ]
