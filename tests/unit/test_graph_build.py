"""The per-arch build graph: which dependency becomes which edge, and what is missing."""

from __future__ import annotations

from typing import Any

from test_templates_helpers import make_load, raw

from apkfarm.graph import GraphBuilder, build_graph
from apkfarm.templates import LoadPolicy


def deps(graph: Any, template: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for edge in graph.edges[template]:
        found.setdefault(edge.kind, set()).add(edge.dependency)
    return found


def missing(graph: Any, template: str) -> dict[str, str]:
    return {m.written: m.reason for m in graph.missing.get(template, ())}


BASE = {
    "main/musl": raw("musl", subpackages=["musl-devel"]),
    "main/zlib": raw(
        "zlib",
        makedepends=["musl-devel"],
        provides=["so:libz.so.1=1.3.1"],
        subpackages=[{"name": "zlib-devel", "depends": ["zlib=1.0-r0"]}],
    ),
    "main/pkgconf": raw("pkgconf"),
    "main/base-files": raw("base-files"),
}


def test_edges_come_from_every_dependency_kind() -> None:
    load = make_load(
        {
            **BASE,
            "main/app": raw(
                "app",
                hostmakedepends=["pkgconf", "meson"],
                makedepends=["zlib-devel"],
                checkdepends=["musl"],
                depends=["cmd:awk!base-files", "!oldapp"],
                subpackages=[{"name": "app-libs", "depends": ["so:libz.so.1!zlib"]}],
            ),
        }
    )
    graph = build_graph(load)
    assert deps(graph, "main/app") == {
        "host": {"main/pkgconf"},
        "check": {"main/musl"},
        "target": {"main/zlib"},
        "runtime": {"main/base-files", "main/zlib"},
    }
    assert graph.host_tools["main/app"] == ("meson",)  # not in the tree: a build-root tool
    assert "main/app" not in graph.missing
    assert graph.waves == [
        ["main/base-files", "main/musl", "main/pkgconf"],
        ["main/zlib"],
        ["main/app"],
    ]


def test_subpackages_depending_on_their_parent_are_no_edge() -> None:
    graph = build_graph(make_load(BASE))
    assert graph.edges["main/zlib"] == (
        graph.edges["main/zlib"][0]._replace(dependency="main/musl"),
    )
    assert graph.dependencies("main/zlib") == {"main/musl"}


def test_check_dependencies_only_when_checking() -> None:
    load = make_load({**BASE, "main/app": raw("app", checkdepends=["musl"], options=["!check"])})
    assert deps(build_graph(load), "main/app") == {}


def test_cross_builds_leave_host_dependencies_to_the_host() -> None:
    load = make_load(
        {
            **BASE,
            "main/app": raw(
                "app",
                hostmakedepends=["pkgconf", "meson"],
                checkdepends=["musl"],
                makedepends=["zlib-devel"],
            ),
        },
        arch="aarch64",
    )
    graph = build_graph(load)
    assert graph.cross
    assert deps(graph, "main/app") == {"target": {"main/zlib"}}
    assert graph.host_packages["main/app"] == ("main/pkgconf",)
    assert graph.host_tools["main/app"] == ("meson",)


def test_virtual_names_resolve_through_their_provider() -> None:
    load = make_load(
        {
            **BASE,
            # @subpackage("gawk", alternative="awk") is named awk-gawk-default
            "main/gawk": raw("gawk", subpackages=["awk-gawk-default"]),
            "main/app": raw("app", depends=["cmd:awk!base-files", "alt:awk!gawk"]),
        }
    )
    assert deps(build_graph(load), "main/app") == {"runtime": {"main/base-files", "main/gawk"}}


def test_provides_and_automatic_subpackages_resolve_build_dependencies() -> None:
    load = make_load(
        {
            **BASE,
            "main/compat": raw("compat", provides=["compat-shim=2.0"]),
            "main/app": raw("app", makedepends=["compat-shim", "zlib-static", "musl-man"]),
        }
    )
    assert deps(build_graph(load), "main/app") == {
        "target": {"main/compat", "main/zlib", "main/musl"}
    }


def test_ambiguous_provides_are_reported() -> None:
    load = make_load(
        {
            "main/a": raw("a", provides=["editor"]),
            "main/b": raw("b", provides=["editor"]),
            "main/app": raw("app", makedepends=["editor"]),
        }
    )
    assert missing(build_graph(load), "main/app") == {
        "editor": "'editor' is provided by several templates (main/a, main/b); "
        "name one with '!provider'"
    }


def test_user_sees_main_but_main_never_sees_user() -> None:
    load = make_load(
        {
            **BASE,
            "user/lib": raw("lib", makedepends=["zlib-devel"], subpackages=["lib-devel"]),
            "main/app": raw("app", makedepends=["lib-devel"]),
        }
    )
    graph = build_graph(load)
    assert deps(graph, "user/lib") == {"target": {"main/zlib"}}
    assert missing(graph, "main/app") == {
        "lib-devel": "'lib-devel' is in user/lib, which main/ cannot see"
    }


def test_a_category_resolves_its_own_names_first() -> None:
    load = make_load(
        {
            "main/tool": raw("tool", pkgver="1.0"),
            "user/tool": raw("tool", pkgver="2.0"),
            "user/app": raw("app", makedepends=["tool"]),
        }
    )
    assert deps(build_graph(load), "user/app") == {"target": {"user/tool"}}


def test_unresolved_and_unavailable_dependencies_are_missing_with_reasons() -> None:
    load = make_load(
        {
            **BASE,
            "main/broken": raw("broken", broken="no"),
            "main/bad": raw("bad", pkgdesc="lowercase"),  # fails to load
            "main/cond": raw("cond", inactive=["cond-extra"]),
            "main/app": raw(
                "app",
                makedepends=["nowhere", "broken", "bad", "cond-extra"],
                hostmakedepends=["broken"],
                depends=["so:libgone.so.1!gone"],
            ),
        }
    )
    graph = build_graph(load)
    assert missing(graph, "main/app") == {
        "nowhere": "'nowhere' is not in the tree",
        "broken": "main/broken is excluded: cannot be built, it's currently broken: no",
        "bad": "main/bad failed to load: pkgdesc should start with an uppercase letter",
        "cond-extra": "'cond-extra' is a subpackage of main/cond not built for x86_64",
        "so:libgone.so.1!gone": "'gone' is not in the tree",
    }
    kinds = {m.written + "/" + m.kind for m in graph.missing["main/app"]}
    assert "broken/host" in kinds and "broken/target" in kinds
    assert {m.package for m in graph.missing["main/app"]} >= {"gone", "nowhere"}


def test_version_constraints_must_hold() -> None:
    load = make_load(
        {
            "main/lib": raw("lib", pkgver="1.5"),
            "main/ok": raw("ok", depends=["lib>=1.2", "lib<2"]),
            "main/new": raw("new", depends=["lib>=2"]),
        }
    )
    graph = build_graph(load)
    assert deps(graph, "main/ok") == {"runtime": {"main/lib"}}
    assert missing(graph, "main/new") == {
        "lib>=2": "main/lib is at 1.5-r0, which does not satisfy 'lib>=2'"
    }


def test_cycles_are_found_and_printed() -> None:
    load = make_load(
        {
            "main/a": raw("a", makedepends=["b"]),
            "main/b": raw("b", makedepends=["c"]),
            "main/c": raw("c", depends=["a"]),
            "main/d": raw("d", makedepends=["a"]),
            "main/e": raw("e"),
        }
    )
    graph = build_graph(load)
    assert graph.cycles == [["main/a", "main/b", "main/c", "main/a"]]
    assert graph.waves == [["main/e"]]
    assert graph.in_cycle == {"main/a", "main/b", "main/c", "main/d"}


def test_excluded_categories_do_not_build() -> None:
    load = make_load({**BASE, "user/app": raw("app")}, policy=LoadPolicy(categories=("main",)))
    graph = build_graph(load)
    assert "user/app" not in graph.nodes and "main/zlib" in graph.nodes


def test_find_accepts_full_names_packages_and_subpackages() -> None:
    graph = build_graph(make_load(BASE))
    assert graph.find("main/zlib") == "main/zlib"
    assert graph.find("zlib-devel") == "main/zlib"
    assert graph.find("nothing") is None


# --- building again -----------------------------------------------------------------


def test_the_builder_reuses_unchanged_templates_edges() -> None:
    results = {**BASE, "main/app": raw("app", makedepends=["zlib-devel"], depends=["musl>=1.0"])}
    first_load = make_load(results)
    builder = GraphBuilder()
    first = builder.build(first_load)
    # Same Template objects (the loader reuses them for unchanged files).
    again = builder.build(first_load)
    assert again.index is first.index
    assert again.edges["main/zlib"] is first.edges["main/zlib"]
    assert again.waves is first.waves

    # A new version of musl: names unchanged, the index stays, constraints are re-checked.
    bumped = make_load(
        {**results, "main/musl": raw("musl", pkgver="0.9", subpackages=["musl-devel"])}
    )
    # As the loader does: unchanged files keep their Template, the layout its listing.
    bumped.templates = {
        n: (t if n == "main/musl" else first_load.templates[n]) for n, t in bumped.templates.items()
    }
    bumped.tree = first_load.tree
    third = builder.build(bumped)
    assert third.index is first.index
    assert missing(third, "main/app") == {
        "musl>=1.0": "main/musl is at 0.9-r0, which does not satisfy 'musl>=1.0'"
    }

    # A new subpackage name: the index is rebuilt and the new name resolves.
    renamed = make_load(
        {
            **results,
            "main/musl": raw("musl", subpackages=["musl-devel", "musl-dev"]),
            "main/app": raw("app", makedepends=["musl-dev"]),
        }
    )
    fourth = builder.build(renamed)
    assert fourth.index is not first.index
    assert deps(fourth, "main/app") == {"target": {"main/musl"}}
