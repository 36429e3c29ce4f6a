"""The rebuild decision: what must build, why, in which order, and what cannot.

Given the build graph and the packages a repository already holds
(``Mapping[name, "ver-rN"]``), a template must build when

* ``new``: the repository has no package of its name;
* ``version changed (old -> new)``: it has a different version;
* ``dependency rebuilt: X`` (only with ``rebuild_dependents``): something it
  builds against (host, check or target dependency) is rebuilt, however
  indirectly. Off by default: a rebuild at the same version never reaches
  clients, which do not reinstall a version they have.

A template that must build is blocked when a dependency is missing and the
repository does not have it either, when it is in a dependency cycle among
templates that must build, or when it waits on a blocked template. The rest
build in waves: everything in a wave depends only on earlier waves (or on the
repository), so a wave builds in parallel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from apkfarm import version
from apkfarm.errors import ApkfarmError
from apkfarm.graph.algorithms import cycles, waves
from apkfarm.graph.build import BuildGraph, Missing
from apkfarm.graph.resolve import parse_dependency

__all__ = ["Explanation", "Plan", "PlannedBuild", "make_plan"]


class PlannedBuild(NamedTuple):
    template: str  # main/foo
    pkgname: str
    version: str  # ver-rN
    reasons: tuple[str, ...]
    wave: int
    waits_on: frozenset[str]  # templates of this plan it needs built first

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "pkgname": self.pkgname,
            "version": self.version,
            "reasons": list(self.reasons),
            "wave": self.wave,
            "waits_on": sorted(self.waits_on),
        }


@dataclass(frozen=True)
class Explanation:
    """Why a template is or is not ready to build.

    `state` is one of: ``ready``, ``waiting``, ``done``, ``blocked``,
    ``up-to-date``, ``excluded``, ``failed``, ``unknown``.
    """

    template: str
    state: str
    reason: str
    waiting_on: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.template}: {self.state}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "state": self.state,
            "reason": self.reason,
            "waiting_on": list(self.waiting_on),
        }


@dataclass
class Plan:
    graph: BuildGraph
    repository: Mapping[str, str]
    builds: dict[str, PlannedBuild]  # template -> build, in wave order
    waves: list[list[str]]
    blocked: dict[str, str]  # template that must build but cannot -> why
    reasons: dict[str, tuple[str, ...]]  # every template that must build -> why
    cycles: list[list[str]] = field(default_factory=list)  # among templates that must build
    up_to_date: dict[str, str] = field(default_factory=dict)  # template -> version held

    def ready(self, completed: Collection[str] = ()) -> list[str]:
        """Templates whose dependencies of this plan are all in `completed`."""
        done = set(completed)
        return [
            name
            for name, build in self.builds.items()
            if name not in done and all(d in done for d in build.waits_on)
        ]

    def explain(self, name: str, completed: Collection[str] = ()) -> Explanation:
        """Why `name` (``main/foo``, ``foo`` or a subpackage name) is or is not ready."""
        graph = self.graph
        template = graph.find(name)
        if template is None:
            return Explanation(name, "unknown", f"no template provides '{name}'")
        errors = [i.message for i in graph.load.errors if i.template == template]
        if errors:
            return Explanation(template, "failed", "; ".join(errors))
        unavailable = graph.index.unavailable(template)
        if template not in graph.nodes:
            return Explanation(template, "excluded", unavailable or "not buildable here")
        if template in self.blocked:
            return Explanation(template, "blocked", self.blocked[template])
        build = self.builds.get(template)
        if build is None:
            held = self.up_to_date.get(template, "?")
            return Explanation(template, "up-to-date", f"the repository has version {held}")
        if template in completed:
            return Explanation(template, "done", "built in this run")
        done = set(completed)
        waiting = tuple(sorted(d for d in build.waits_on if d not in done))
        why = ", ".join(build.reasons)
        if not waiting:
            return Explanation(template, "ready", f"must build ({why}); nothing to wait for")
        return Explanation(
            template,
            "waiting",
            f"must build ({why}); waits on {', '.join(waiting)}",
            waiting,
        )

    def to_json(self) -> dict[str, Any]:
        load = self.graph.load
        return {
            "arch": load.context.target.arch,
            "host_arch": load.context.host.arch,
            "cross": load.context.cross,
            "waves": self.waves,
            "builds": [b.to_json() for b in self.builds.values()],
            "blocked": [{"template": k, "reason": v} for k, v in sorted(self.blocked.items())],
            "cycles": self.cycles,
            "graph_cycles": self.graph.cycles,
            "up_to_date": dict(sorted(self.up_to_date.items())),
            "excluded": [{"template": i.template, "reason": i.message} for i in load.exclusions],
            "errors": [i.to_json() for i in load.errors],
            "host_tools": {k: list(v) for k, v in sorted(self.graph.host_tools.items())},
            "host_packages": {k: list(v) for k, v in sorted(self.graph.host_packages.items())},
        }


def _held(missing: Missing, repository: Mapping[str, str]) -> bool:
    """Whether the repository already has a package that satisfies `missing`."""
    held = repository.get(missing.package)
    if held is None:
        return False
    dependency = parse_dependency(missing.written)
    if dependency is None or dependency.provider is not None or dependency.op is None:
        return True
    try:
        return dependency.matches(held)
    except ApkfarmError:
        return False


def make_plan(
    graph: BuildGraph,
    repository: Mapping[str, str],
    *,
    rebuild_dependents: bool = False,
) -> Plan:
    """Decide what must build for `graph`, given the packages `repository` holds."""
    reasons: dict[str, tuple[str, ...]] = {}
    up_to_date: dict[str, str] = {}
    for name, template in graph.nodes.items():
        held = repository.get(template.pkgname)
        if held is None:
            reasons[name] = _NEW
        elif held != template.version:
            direction = ""
            if version.is_valid(held) and version.compare(held, template.version) > 0:
                direction = ", a downgrade"
            reasons[name] = (f"version changed ({held} -> {template.version}{direction})",)
        else:
            up_to_date[name] = held

    if rebuild_dependents:
        dependents: dict[str, list[str]] = {}
        for name, deps in graph.build_adjacency.items():
            for dep in deps:
                dependents.setdefault(dep, []).append(name)
        queue = deque(sorted(reasons))
        while queue:
            rebuilt = queue.popleft()
            for dependent in sorted(dependents.get(rebuilt, ())):
                if dependent in reasons:
                    continue
                reasons[dependent] = (f"dependency rebuilt: {graph.nodes[rebuilt].pkgname}",)
                up_to_date.pop(dependent, None)
                queue.append(dependent)

    to_build = reasons.keys()
    blocked: dict[str, str] = {}
    for name, found in graph.missing.items():
        if name not in to_build:
            continue
        for missing in found:
            if not _held(missing, repository):
                label = _LIST_NAMES[missing.kind]
                blocked[name] = f"{label} '{missing.written}' unavailable: {missing.reason}"
                break

    # Dependencies that need no build are in the repository already.
    if len(to_build) == len(graph.nodes):
        among: Mapping[str, frozenset[str]] = graph.adjacency
    else:
        among = {name: graph.adjacency[name] & to_build for name in to_build}
    waiting_on: dict[str, list[str]] = {}

    def block_dependents(roots: list[str]) -> None:
        if not roots:
            return
        if not waiting_on:
            for name, deps in among.items():
                for dep in deps:
                    waiting_on.setdefault(dep, []).append(name)
        queue = deque(roots)
        while queue:
            blocker = queue.popleft()
            for dependent in sorted(waiting_on.get(blocker, ())):
                if dependent not in blocked:
                    blocked[dependent] = f"waits on {blocker}, which is blocked"
                    queue.append(dependent)

    block_dependents(sorted(blocked))
    buildable: Mapping[str, frozenset[str]]
    if blocked:
        buildable = {n: deps - blocked.keys() for n, deps in among.items() if n not in blocked}
        levels, stuck = waves(buildable)
    else:
        buildable = among
        if among is graph.adjacency:  # everything must build: the graph's own waves
            levels, stuck = graph.waves, set(graph.in_cycle)
        else:
            levels, stuck = waves(buildable)
    found_cycles: list[list[str]] = []
    if stuck:
        found_cycles = cycles({n: buildable[n] & stuck for n in stuck})
        for cycle in found_cycles:
            text = " -> ".join(cycle)
            for member in cycle[:-1]:
                blocked.setdefault(member, f"in a dependency cycle: {text}")
        block_dependents(sorted(n for c in found_cycles for n in c[:-1]))
        for name in stuck:  # behind a cycle through a path the cycles above did not name
            blocked.setdefault(name, "waits on a dependency cycle")

    builds: dict[str, PlannedBuild] = {}
    for number, level in enumerate(levels):
        for name in level:
            template = graph.nodes[name]
            builds[name] = PlannedBuild(
                template=name,
                pkgname=template.pkgname,
                version=template.version,
                reasons=reasons[name],
                wave=number,
                waits_on=buildable[name],
            )
    return Plan(
        graph=graph,
        repository=repository,
        builds=builds,
        waves=levels,
        blocked=dict(sorted(blocked.items())),
        reasons=reasons,
        cycles=found_cycles,
        up_to_date=up_to_date,
    )


_NEW = ("new",)
_LIST_NAMES = {
    "host": "hostmakedepends",
    "check": "checkdepends",
    "target": "makedepends",
    "runtime": "depends",
}
