"""The rebuild decision: reasons, blocking, waves, explain (pure: no sandbox)."""

from __future__ import annotations

from test_templates_helpers import make_load, raw

from apkfarm.graph import build_graph, make_plan

TREE = {
    "main/libc": raw("libc", pkgver="1.2", subpackages=["libc-devel"]),
    "main/zlib": raw("zlib", pkgver="1.3", makedepends=["libc-devel"], subpackages=["zlib-devel"]),
    "main/app": raw("app", pkgver="2.0", makedepends=["zlib-devel"], depends=["docs"]),
    "main/docs": raw("docs", pkgver="1.0"),
}
ALL_HELD = {"libc": "1.2-r0", "zlib": "1.3-r0", "app": "2.0-r0", "docs": "1.0-r0"}


def plan_for(repository: dict[str, str], tree: dict[str, dict] | None = None, **kwargs: bool):  # type: ignore[no-untyped-def]
    return make_plan(build_graph(make_load(tree or TREE)), repository, **kwargs)


def test_an_empty_repository_builds_everything_in_waves() -> None:
    plan = plan_for({})
    assert plan.waves == [["main/docs", "main/libc"], ["main/zlib"], ["main/app"]]
    assert all(plan.reasons[n] == ("new",) for n in plan.builds)
    assert plan.builds["main/app"].waits_on == {"main/zlib", "main/docs"}
    assert plan.builds["main/app"].wave == 2
    assert plan.blocked == {} and plan.up_to_date == {}


def test_a_full_repository_builds_nothing() -> None:
    plan = plan_for(ALL_HELD)
    assert plan.builds == {} and plan.waves == []
    assert plan.up_to_date == {
        "main/app": "2.0-r0",
        "main/docs": "1.0-r0",
        "main/libc": "1.2-r0",
        "main/zlib": "1.3-r0",
    }


def test_version_changes_are_reasons_and_dependencies_already_built_count() -> None:
    plan = plan_for({**ALL_HELD, "zlib": "1.2-r4", "app": "2.1-r0"})
    assert plan.reasons == {
        "main/app": ("version changed (2.1-r0 -> 2.0-r0, a downgrade)",),
        "main/zlib": ("version changed (1.2-r4 -> 1.3-r0)",),
    }
    # app waits for the new zlib; libc is in the repository already
    assert plan.waves == [["main/zlib"], ["main/app"]]
    assert plan.builds["main/zlib"].waits_on == frozenset()


def test_dependents_are_rebuilt_only_when_asked() -> None:
    held = {**ALL_HELD, "libc": "1.1-r0"}
    assert set(plan_for(held).builds) == {"main/libc"}
    plan = plan_for(held, rebuild_dependents=True)
    assert plan.reasons["main/zlib"] == ("dependency rebuilt: libc",)
    assert plan.reasons["main/app"] == ("dependency rebuilt: zlib",)  # transitively
    # docs is only a runtime dependency of app: rebuilding app does not rebuild docs,
    # and a runtime dependency never causes a rebuild
    assert "main/docs" not in plan.reasons
    assert plan.waves == [["main/libc"], ["main/zlib"], ["main/app"]]
    runtime_only = plan_for({**ALL_HELD, "docs": "0.9-r0"}, rebuild_dependents=True)
    assert set(runtime_only.reasons) == {"main/docs"}


def test_missing_dependencies_block_unless_the_repository_has_them() -> None:
    tree = {
        **TREE,
        "main/tool": raw("tool", makedepends=["libfoo-devel"], depends=["so:libbar.so.1!libbar"]),
        "main/user": raw("user", makedepends=["tool"]),
    }
    plan = plan_for({}, tree)
    assert plan.blocked == {
        "main/tool": "makedepends 'libfoo-devel' unavailable: 'libfoo-devel' is not in the tree",
        "main/user": "waits on main/tool, which is blocked",
    }
    assert "main/tool" not in plan.builds
    unblocked = plan_for({"libfoo-devel": "1.0-r0", "libbar": "2.0-r0"}, tree)
    assert "main/tool" in unblocked.builds and "main/user" in unblocked.builds
    assert unblocked.blocked == {}


def test_a_dependency_on_an_excluded_template_is_fine_if_already_built() -> None:
    tree = {**TREE, "main/zlib": raw("zlib", pkgver="1.3", broken="no", subpackages=["zlib-devel"])}
    plan = plan_for({}, tree)
    assert plan.blocked["main/app"] == (
        "makedepends 'zlib-devel' unavailable: main/zlib is excluded: "
        "cannot be built, it's currently broken: no"
    )
    assert "main/app" in plan_for({"zlib-devel": "1.2-r0"}, tree).builds


def test_version_constraints_are_checked_against_the_repository() -> None:
    tree = {
        "main/lib": raw("lib", pkgver="1.0", broken="no"),
        "main/app": raw("app", depends=["lib>=2"]),
    }
    assert "main/app" in plan_for({}, tree).blocked
    assert "main/app" in plan_for({"lib": "1.5-r0"}, tree).blocked
    assert "main/app" in plan_for({"lib": "2.1-r0"}, tree).builds


def test_cycles_block_only_what_must_build() -> None:
    tree = {
        "main/a": raw("a", makedepends=["b"]),
        "main/b": raw("b", makedepends=["a"]),
        "main/c": raw("c", makedepends=["a"]),
        "main/d": raw("d"),
    }
    plan = plan_for({}, tree)
    assert plan.cycles == [["main/a", "main/b", "main/a"]]
    assert plan.blocked == {
        "main/a": "in a dependency cycle: main/a -> main/b -> main/a",
        "main/b": "in a dependency cycle: main/a -> main/b -> main/a",
        "main/c": "waits on main/a, which is blocked",
    }
    assert plan.waves == [["main/d"]]
    # with b already built, a can build against it, then c: the cycle is bootstrapped
    plan = plan_for({"b": "1.0-r0"}, tree)
    assert plan.cycles == [] and plan.waves == [["main/a", "main/d"], ["main/c"]]
    assert plan.graph.cycles == [["main/a", "main/b", "main/a"]]  # still a cycle in the tree


def test_ready_and_explain_follow_progress() -> None:
    tree = {
        **TREE,
        "main/tool": raw("tool", makedepends=["nowhere"]),
        "main/old": raw("old", archs=["aarch64"]),
    }
    plan = plan_for({"docs": "1.0-r0"}, tree)
    assert plan.ready() == ["main/libc"]
    assert plan.explain("libc").state == "ready"
    waiting = plan.explain("main/app")
    assert waiting.state == "waiting" and waiting.waiting_on == ("main/zlib",)
    assert waiting.reason == "must build (new); waits on main/zlib"
    assert plan.explain("zlib-devel").template == "main/zlib"  # by subpackage name
    assert plan.ready(["main/libc"]) == ["main/zlib"]
    assert plan.explain("main/zlib", ["main/libc"]).state == "ready"
    assert plan.explain("main/libc", ["main/libc"]).state == "done"
    assert plan.explain("docs").state == "up-to-date"
    assert plan.explain("docs").reason == "the repository has version 1.0-r0"
    blocked = plan.explain("tool")
    assert blocked.state == "blocked" and "'nowhere' is not in the tree" in blocked.reason
    excluded = plan.explain("old")
    assert excluded.state == "excluded"
    assert excluded.reason == "main/old is excluded: this package cannot be built for x86_64"
    assert plan.explain("ghost").state == "unknown"


def test_explain_reports_load_failures() -> None:
    plan = plan_for({}, {**TREE, "main/bad": raw("bad", url="ftp://example.org/bad")})
    failed = plan.explain("bad")
    assert failed.state == "failed" and failed.reason == "url must be http or https"


def test_the_plan_as_json() -> None:
    document = plan_for({"docs": "1.0-r0"}).to_json()
    assert document["arch"] == "x86_64" and document["cross"] is False
    assert document["waves"] == [["main/libc"], ["main/zlib"], ["main/app"]]
    assert document["builds"][2] == {
        "template": "main/app",
        "pkgname": "app",
        "version": "2.0-r0",
        "reasons": ["new"],
        "wave": 2,
        "waits_on": ["main/zlib"],
    }
    assert document["up_to_date"] == {"main/docs": "1.0-r0"}
    assert document["blocked"] == [] and document["cycles"] == []
