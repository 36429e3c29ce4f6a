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
  conflict (``!foo``) is no dependency, a version constraint must hold for
  the providing template's version.

Edges to the template itself are dropped (a subpackage depending on its
parent). What does not resolve is recorded, never guessed:

* host and check dependencies that are not in the tree are tools of the
  build root (``host_tools``), not a problem;
* target and runtime dependencies that do not resolve, or resolve to a
  template that cannot build here, are ``missing`` — the plan decides whether
  the repository already has the package or the template is blocked.

``GraphBuilder`` builds graphs for successive loads of one tree and redoes
only the templates that changed (and nothing at all of the name index when
no template changed the names it declares).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from apkfarm import version
from apkfarm.graph.algorithms import cycles, waves
from apkfarm.graph.resolve import NameIndex, parse_dependency
from apkfarm.templates.loader import LoadResult
from apkfarm.templates.model import Template

__all__ = ["BUILD_KINDS", "BuildGraph", "Edge", "GraphBuilder", "Missing", "build_graph"]

EdgeKind = Literal["host", "check", "target", "runtime"]

# The kinds that feed the build itself; a rebuild of these can change the output.
BUILD_KINDS: frozenset[str] = frozenset({"host", "check", "target"})


class Edge(NamedTuple):
    """`template` needs `dependency` (a template) because of `written` in its `kind` list."""

    template: str
    dependency: str
    kind: EdgeKind
    written: str


class Missing(NamedTuple):
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
    adjacency: dict[str, frozenset[str]] = field(default_factory=dict)  # template -> deps
    build_adjacency: dict[str, frozenset[str]] = field(default_factory=dict)  # BUILD_KINDS only
    cycles: list[list[str]] = field(default_factory=list)
    waves: list[list[str]] = field(default_factory=list)  # the whole graph, ignoring the repo
    in_cycle: set[str] = field(default_factory=set)  # in or behind a cycle

    @property
    def cross(self) -> bool:
        return self.load.context.cross

    def dependencies(self, template: str) -> frozenset[str]:
        return self.adjacency.get(template, frozenset())

    def find(self, name: str) -> str | None:
        """The template a full name, package or subpackage name refers to."""
        if name in self.load.templates or name in self.load.tree.templates:
            return name
        for category in self.load.policy.categories:
            owner = self.index.resolve(name, category).template
            if owner is not None:
                return owner
        return None


class _Constrained(NamedTuple):
    edge: Edge
    dependency: version.Dependency
    package: str


@dataclass(slots=True)
class _Partial:
    """What one template contributes, given an index: it does not change with versions.

    Slots, not frozen: made once per template per cold graph, read on every
    re-plan (a frozen dataclass is slow to make, a NamedTuple slow to read).
    """

    edges: tuple[Edge, ...]
    constrained: tuple[_Constrained, ...]  # runtime edges whose version constraint is checked late
    missing: tuple[Missing, ...]
    host_tools: tuple[str, ...]
    host_packages: tuple[str, ...]
    deps: frozenset[str]
    build_deps: frozenset[str]


def _partial(template: Template, index: NameIndex, cross: bool) -> _Partial:
    edges: list[Edge] = []
    constrained: list[_Constrained] = []
    missing: list[Missing] = []
    host_tools: list[str] = []
    host_packages: list[str] = []
    name = template.full_name
    category = template.category
    # Most names are a template or subpackage the category sees: one dict
    # lookup; everything else takes NameIndex.resolve's full path.
    visible = index.visible(category)
    unavailable_templates = index.unavailable_templates
    new = tuple.__new__  # Edge(...) without its Python-level __new__: this is the hot loop

    build_lists: tuple[tuple[EdgeKind, tuple[str, ...]], ...]
    if cross:
        build_lists = (("target", template.makedepends),)
    elif template.options.get("check", True):
        build_lists = (
            ("host", template.hostmakedepends),
            ("check", template.checkdepends),
            ("target", template.makedepends),
        )
    else:
        build_lists = (("host", template.hostmakedepends), ("target", template.makedepends))
    for kind, entries in build_lists:
        for written in entries:
            owner = visible.get(written)
            if owner is not None:
                found = owner.template
            else:
                resolution = index.resolve(written, category)
                if resolution.template is None:
                    if kind == "target":
                        problem = resolution.problem or ""
                        missing.append(Missing(name, kind, written, written, problem))
                    else:
                        host_tools.append(written)
                    continue
                found = resolution.template
            if found != name:
                if found in unavailable_templates:
                    reason = unavailable_templates[found]
                    missing.append(Missing(name, kind, written, written, reason))
                else:
                    edges.append(new(Edge, (name, found, kind, written)))
    if cross:
        for written in template.hostmakedepends:
            host = index.resolve(written, category).template
            if host is None:
                host_tools.append(written)
            else:
                host_packages.append(host)

    runtime = template.depends
    if template.subpackages:
        runtime = (*runtime, *(d for s in template.subpackages for d in s.depends))
    for written in runtime:
        dependency = parse_dependency(written)
        if dependency is None or dependency.conflict:
            continue
        target = index.target_of(dependency)
        owner = visible.get(target)
        if owner is not None:
            found = owner.template
        else:
            resolution = index.resolve(target, category)
            if resolution.template is None:
                problem = resolution.problem or ""
                missing.append(Missing(name, "runtime", written, target, problem))
                continue
            found = resolution.template
        if found == name:
            continue
        if found in unavailable_templates:
            missing.append(Missing(name, "runtime", written, target, unavailable_templates[found]))
            continue
        edge = new(Edge, (name, found, "runtime", written))
        if dependency.provider is None and dependency.op not in (None, "><"):
            constrained.append(_Constrained(edge, dependency, target))
        else:
            edges.append(edge)
    return _Partial(
        tuple(edges),
        tuple(constrained),
        tuple(missing),
        tuple(dict.fromkeys(host_tools)) if host_tools else (),
        tuple(dict.fromkeys(host_packages)) if host_packages else (),
        frozenset([e.dependency for e in edges]),
        frozenset([e.dependency for e in edges if e.kind != "runtime"]),
    )


def _names_basis(load: LoadResult) -> tuple[object, ...]:
    """What a NameIndex depends on besides template names (compared by value)."""
    return (
        load.context.target.arch,
        load.context.cross,
        load.policy,
        tuple(sorted((i.template, i.message) for i in load.errors)),
        tuple(sorted((i.template, i.message) for i in load.exclusions)),
        tuple((c, id(listing)) for c, listing in load.tree.categories.items()),
    )


def _names_of(template: Template) -> tuple[object, ...]:
    """The part of a template the name index reads (not its version)."""
    return (
        template.package_names,
        template.all_subpackages,
        template.provides,
        tuple(s.provides for s in template.subpackages),
        template.excluded,
    )


class GraphBuilder:
    """Builds the graphs of successive loads of one tree, reusing what did not change.

    A template that loaded to the same ``Template`` object (the loader reuses
    them for unchanged files) keeps its edges, as long as no template changed
    the names it declares; version changes only re-check version constraints.
    """

    def __init__(self) -> None:
        self._index: NameIndex | None = None
        self._basis: tuple[object, ...] = ()
        self._templates: dict[str, Template] = {}
        self._partials: dict[str, tuple[Template, _Partial]] = {}
        self._previous: BuildGraph | None = None

    def _same_names(self, load: LoadResult, basis: tuple[object, ...]) -> bool:
        if self._index is None or basis != self._basis:
            return False
        previous = self._templates
        if previous.keys() != load.templates.keys():
            return False
        for name, template in load.templates.items():
            before = previous[name]
            if before is not template and _names_of(before) != _names_of(template):
                return False
        return True

    def build(self, load: LoadResult) -> BuildGraph:
        basis = _names_basis(load)
        if self._same_names(load, basis):
            assert self._index is not None
            index = self._index
            index.rebind(load)
        else:
            index = NameIndex(load)
            self._partials.clear()
        self._index, self._basis, self._templates = index, basis, load.templates

        cross = load.context.cross
        nodes = load.buildable
        edges: dict[str, tuple[Edge, ...]] = {}
        missing: dict[str, tuple[Missing, ...]] = {}
        host_tools: dict[str, tuple[str, ...]] = {}
        host_packages: dict[str, tuple[str, ...]] = {}
        adjacency: dict[str, frozenset[str]] = {}
        build_adjacency: dict[str, frozenset[str]] = {}
        partials: dict[str, tuple[Template, _Partial]] = {}
        for name, template in nodes.items():
            known = self._partials.get(name)
            if known is not None and known[0] is template:
                partial = known[1]
            else:
                partial = _partial(template, index, cross)
            partials[name] = (template, partial)
            template_edges = partial.edges
            template_missing = partial.missing
            deps = partial.deps
            if partial.constrained:
                extra: list[Edge] = []
                late: list[Missing] = []
                for edge, dependency, package in partial.constrained:
                    held = index.version_of(edge.dependency)
                    if held is None or dependency.matches(held):
                        extra.append(edge)
                    else:
                        late.append(
                            Missing(
                                name,
                                "runtime",
                                edge.written,
                                package,
                                f"{edge.dependency} is at {held}, which does not satisfy "
                                f"'{edge.written}'",
                            )
                        )
                template_edges = (*template_edges, *extra)
                template_missing = (*template_missing, *late)
                deps = deps | {e.dependency for e in extra}
            edges[name] = template_edges
            adjacency[name] = deps
            build_adjacency[name] = partial.build_deps
            if template_missing:
                missing[name] = template_missing
            if partial.host_tools:
                host_tools[name] = partial.host_tools
            if partial.host_packages:
                host_packages[name] = partial.host_packages
        self._partials = partials

        graph = BuildGraph(
            load=load,
            index=index,
            nodes=nodes,
            edges=edges,
            missing=missing,
            host_tools=host_tools,
            host_packages=host_packages,
            adjacency=adjacency,
            build_adjacency=build_adjacency,
        )
        previous = self._previous
        if previous is not None and previous.adjacency == adjacency:
            # Same dependencies as last time (an edit that changed no edge):
            # same order.
            graph.waves, graph.in_cycle, graph.cycles = (
                previous.waves,
                previous.in_cycle,
                previous.cycles,
            )
        else:
            graph.waves, graph.in_cycle = waves(adjacency)
            if graph.in_cycle:
                graph.cycles = cycles({n: adjacency[n] for n in graph.in_cycle})
        self._previous = graph
        return graph


def build_graph(load: LoadResult) -> BuildGraph:
    """The build graph of `load`'s buildable templates (for one-off callers)."""
    return GraphBuilder().build(load)


def describe_edges(graph: BuildGraph, template: str) -> Mapping[str, list[str]]:
    """kind -> dependency templates, for reports."""
    described: dict[str, list[str]] = {}
    for edge in graph.edges.get(template, ()):
        described.setdefault(edge.kind, []).append(edge.dependency)
    return described
