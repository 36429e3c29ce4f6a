"""Cycles, strongly connected components and waves on plain adjacency maps."""

from __future__ import annotations

from apkfarm.graph import cycles, strongly_connected, waves


def test_waves_are_topological_levels() -> None:
    graph = {"app": {"lib", "tool"}, "lib": {"libc"}, "tool": {"libc"}, "libc": set(), "doc": set()}
    levels, stuck = waves(graph)
    assert levels == [["doc", "libc"], ["lib", "tool"], ["app"]]
    assert stuck == set()


def test_waves_ignore_self_edges_and_unknown_nodes() -> None:
    levels, stuck = waves({"a": {"a", "outside"}, "b": {"a"}})
    assert levels == [["a"], ["b"]] and stuck == set()


def test_nodes_in_and_behind_cycles_get_no_wave() -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}, "d": set()}
    levels, stuck = waves(graph)
    assert levels == [["d"]]
    assert stuck == {"a", "b", "c"}


def test_cycles_are_printed_closed() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "x": {"y"}, "y": {"x"}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["x", "y"]]
    assert cycles(graph) == [["a", "b", "c", "a"], ["x", "y", "x"]]


def test_the_shortest_cycle_through_a_component_is_chosen() -> None:
    graph = {"a": {"b", "c"}, "b": {"c"}, "c": {"a"}}
    assert cycles(graph) == [["a", "c", "a"]]


def test_self_edges_alone_are_no_cycle() -> None:
    assert cycles({"a": {"a"}}) == []


def test_deep_chains_need_no_recursion() -> None:
    depth = 50_000
    graph = {f"n{i}": {f"n{i + 1}"} for i in range(depth)}
    graph[f"n{depth}"] = {"n0"}
    [cycle] = cycles(graph)
    assert len(cycle) == depth + 2
    chain = {f"n{i}": {f"n{i + 1}"} for i in range(depth)}
    chain[f"n{depth}"] = set()
    levels, _ = waves(chain)
    assert len(levels) == depth + 1
