"""The build graph of a loaded tree for one architecture.

Nodes are the templates that may build for the context (``main/foo``). A
template depends on the templates that provide its

* ``hostmakedepends`` (kind ``host``) and ``checkdepends`` (kind ``check``,
  only when the ``check`` option is on) — when not cross-compiling; when
  cross-compiling these are host-arch packages, listed in ``host_packages``
  and not part of this arch's graph (as cbuild does);
* ``makedepends`` (kind ``target``);
* runtime ``depends`` of the template and its subpackages (kind
  ``runtime``): a virtual name resolves through its ``!provider``, a
  conflict (``!foo``) is no dependency.

Edges to the template itself are dropped (a subpackage depending on its
parent). What does not resolve is recorded, never guessed:

* host and check dependencies that are not in the tree are tools of the
  build root (``host_tools``), not a problem;
* target and runtime dependencies that do not resolve, or resolve to a
  template that cannot build here, are ``missing`` — the plan decides whether
  the repository already has the package or the template is blocked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from apkfarm.graph.algorithms import cycles, waves
from apkfarm.graph.resolve import NameIndex, parse_dependency
from apkfarm.templates.loader import LoadResult
from apkfarm.templates.model import Template

__all__ = ["BUILD_KINDS", "BuildGraph", "Edge", "Missing", "build_graph"]

EdgeKind = Literal["host", "check", "target", "runtime"]

# The kinds that feed the build itself; a rebuild of these can change the output.
BUILD_KINDS: frozenset[str] = frozenset({"host", "check", "target"})


@dataclass(frozen=True)
class Edge:
    """`template` needs `dependency` (a template) because of `written` in its `kind` list."""

    template: str
    dependency: str
    kind: EdgeKind
    written: str


@dataclass(frozen=True)
class Missing:
    """A dependency of `template` that no buildable template satisfies here.

    `package` is the package name that would satisfy it (what the plan looks
    up in the repository); `reason` says what went wrong.
    """

    template: str
    kind: EdgeKind
    written: str
    package: str
    reason: str


@dataclass
class BuildGraph:
    """Templates, their dependency edges, and what the graph says about order."""

    load: LoadResult
    index: NameIndex
    nodes: dict[str, Template]
    edges: dict[str, tuple[Edge, ...]]  # template -> its dependencies
    missing: dict[str, tuple[Missing, ...]]
    host_tools: dict[str, tuple[str, ...]]  # template -> build-root tools it expects
    host_packages: dict[str, tuple[str, ...]]  # cross only: host-arch templates it needs
    cycles: list[list[str]] = field(default_factory=list)
    waves: list[list[str]] = field(default_factory=list)  # the whole graph, ignoring the repo
    in_cycle: set[str] = field(default_factory=set)  # in or behind a cycle

    @property
    def cross(self) -> bool:
        return self.load.context.cross

    def dependencies(self, template: str) -> set[str]:
        return {edge.dependency for edge in self.edges.get(template, ())}

    def adjacency(self, kinds: frozenset[str] | None = None) -> dict[str, set[str]]:
        """template -> templates it depends on (of `kinds`, default all)."""
        return {
            name: {e.dependency for e in edges if kinds is None or e.kind in kinds}
            for name, edges in self.edges.items()
        }

    def find(self, name: str) -> str | None:
        """The template a full name, package or subpackage name refers to."""
        if name in self.load.templates or name in self.index.load.tree.templates:
            return name
        for category in self.load.policy.categories:
            owner = self.index.resolve(name, category).template
            if owner is not None:
                return owner
        return None


def _edges_for(
    template: Template, index: NameIndex, cross: bool
) -> tuple[list[Edge], list[Missing], list[str], list[str]]:
    edges: list[Edge] = []
    missing: list[Missing] = []
    host_tools: list[str] = []
    host_packages: list[str] = []
    name = template.full_name
    category = template.category

    build_lists: list[tuple[EdgeKind, tuple[str, ...]]] = [("target", template.makedepends)]
    if not cross:
        build_lists.insert(0, ("host", template.hostmakedepends))
        if template.options.get("check", True):
            build_lists.insert(1, ("check", template.checkdepends))
    for kind, entries in build_lists:
        for written in entries:
            found = index.resolve(written, category)
            if found.template is None:
                if kind == "target":
                    missing.append(
                        Missing(name, kind, written, written, found.problem or "not found")
                    )
                else:
                    host_tools.append(written)
            elif found.template != name:
                edges.append(Edge(name, found.template, kind, written))
    if cross:
        for written in template.hostmakedepends:
            found = index.resolve(written, category)
            if found.template is None:
                host_tools.append(written)
            else:
                host_packages.append(found.template)

    runtime = [*template.depends, *(d for s in template.subpackages for d in s.depends)]
    for written in runtime:
        dependency = parse_dependency(written)
        if dependency is None or dependency.conflict:
            continue
        target = index.target_of(dependency)
        found = index.resolve(target, category)
        if found.template is None:
            missing.append(Missing(name, "runtime", written, target, found.problem or "not found"))
            continue
        if found.template == name:
            continue
        if (
            dependency.provider is None
            and dependency.op is not None
            and found.version is not None
            and dependency.op != "><"
            and not dependency.matches(found.version)
        ):
            missing.append(
                Missing(
                    name,
                    "runtime",
                    written,
                    target,
                    f"{found.template} is at {found.version}, which does not satisfy '{written}'",
                )
            )
            continue
        edges.append(Edge(name, found.template, "runtime", written))
    return edges, missing, host_tools, host_packages


def build_graph(load: LoadResult) -> BuildGraph:
    """The build graph of `load`'s buildable templates."""
    index = NameIndex(load)
    cross = load.context.cross
    nodes = load.buildable
    edges: dict[str, tuple[Edge, ...]] = {}
    missing: dict[str, tuple[Missing, ...]] = {}
    host_tools: dict[str, tuple[str, ...]] = {}
    host_packages: dict[str, tuple[str, ...]] = {}
    for name, template in nodes.items():
        found_edges, found_missing, tools, packages = _edges_for(template, index, cross)
        kept: list[Edge] = []
        for edge in found_edges:
            unavailable = index.unavailable(edge.dependency)
            if unavailable is not None:
                package = edge.written
                parsed = parse_dependency(edge.written)
                if parsed is not None:
                    package = index.target_of(parsed)
                found_missing.append(Missing(name, edge.kind, edge.written, package, unavailable))
            else:
                kept.append(edge)
        edges[name] = tuple(kept)
        if found_missing:
            missing[name] = tuple(found_missing)
        if tools:
            host_tools[name] = tuple(dict.fromkeys(tools))
        if packages:
            host_packages[name] = tuple(dict.fromkeys(packages))
    graph = BuildGraph(load, index, nodes, edges, missing, host_tools, host_packages)
    adjacency = graph.adjacency()
    graph.cycles = cycles(adjacency)
    graph.waves, graph.in_cycle = waves(adjacency)
    return graph


def describe_edges(graph: BuildGraph, template: str) -> Mapping[str, list[str]]:
    """kind -> dependency templates, for reports."""
    described: dict[str, list[str]] = {}
    for edge in graph.edges.get(template, ()):
        described.setdefault(edge.kind, []).append(edge.dependency)
    return described
