"""From a tree snapshot to build rows: evaluate (sandboxed), graph, plan, per arch.

This is the only place the scheduler looks at templates; it turns the
domain's ``LoadResult``/``BuildGraph``/``Plan`` into the rows the state store
keeps, so that after planning nothing needs the templates again — not even a
restarted scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from apkfarm.graph import GraphBuilder, make_plan
from apkfarm.graph.build import BUILD_KINDS, BuildGraph
from apkfarm.services.scheduler.state import BuildRow, State, build_id
from apkfarm.templates import EvaluatorSettings, LoadPolicy, Template, TreeLoader
from apkfarm.templates.rules import dependency as parse_dependency
from apkfarm.templates.sources import SourceError, template_sources

RepositoryVersions = Callable[[str], Mapping[str, str]]


@dataclass(frozen=True)
class Problem:
    template: str
    arch: str
    message: str
    excluded: bool = False


@dataclass
class PlannedTree:
    rows: list[BuildRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _sources(template: Template) -> list[dict[str, str]]:
    """The template's sources with their checksums, as the build row stores them."""
    return [
        {"url": source.entry.url, "sha256": source.sha256, "filename": source.entry.filename}
        for source in template_sources(template)
    ]


def _build_depends(graph: BuildGraph, template: str) -> list[str]:
    """Farm package names the build installs into its sysroot (runtime closure: the builder)."""
    names = []
    for edge in graph.edges.get(template, ()):
        if edge.kind not in BUILD_KINDS:
            continue
        parsed = parse_dependency(edge.written)
        if parsed is None or parsed.conflict:
            continue
        names.append(parsed.provider or parsed.name)
    return sorted(set(names))


def _selection(
    graph: BuildGraph, builds: Mapping[str, Iterable[str]], packages: Sequence[str], arch: str
) -> tuple[set[str] | None, list[Problem]]:
    """Templates to keep when only some packages were asked for: them and what they wait on."""
    if not packages:
        return None, []
    problems = []
    wanted: set[str] = set()
    for name in packages:
        template = graph.find(name)
        if template is None:
            problems.append(Problem(name, arch, f"no template provides '{name}'"))
        else:
            wanted.add(template)
    stack = list(wanted)
    while stack:
        for dep in builds.get(stack.pop(), ()):
            if dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    return wanted, problems


def plan_arch(
    loader: TreeLoader,
    tree_id: str,
    arch: str,
    *,
    host_arch: str,
    categories: Sequence[str],
    packages: Sequence[str],
    rebuild_dependents: bool,
    repository: Mapping[str, str],
) -> PlannedTree:
    load = loader.load(arch, host_arch=host_arch, policy=LoadPolicy(categories=tuple(categories)))
    graph = GraphBuilder().build(load)
    plan = make_plan(graph, repository, rebuild_dependents=rebuild_dependents)
    waits = {name: build.waits_on for name, build in plan.builds.items()}
    selected, problems = _selection(graph, waits, packages, arch)
    result = PlannedTree(problems=problems)
    errors: dict[str, list[str]] = {}
    for issue in load.errors:
        errors.setdefault(issue.template, []).append(issue.message)
    for issue in load.errors:
        if issue.template not in load.templates:
            result.problems.append(Problem(issue.template, arch, issue.message))
    for name, template in sorted(load.templates.items()):
        if selected is not None and name not in selected:
            continue
        row = BuildRow(
            build_id=build_id(tree_id, arch, template.pkgname),
            tree_id=tree_id,
            arch=arch,
            category=template.category,
            pkgname=template.pkgname,
            version=template.version,
            state=State.BUILD_STATE_WAITING,
            packages=list(template.possible_packages),
        )
        if template.excluded is not None:
            row.state, row.reason = State.BUILD_STATE_EXCLUDED, template.excluded
            result.problems.append(Problem(name, arch, template.excluded, excluded=True))
        elif name in errors:
            row.state, row.reason = State.BUILD_STATE_FAILED, "; ".join(errors[name])
            result.problems.append(Problem(name, arch, row.reason))
        elif name in plan.blocked:
            row.state, row.reason = State.BUILD_STATE_BLOCKED, plan.blocked[name]
        elif name in plan.builds:
            build = plan.builds[name]
            row.reason = ", ".join(build.reasons)
            row.wave = build.wave
            row.deps = sorted(
                build_id(tree_id, arch, graph.nodes[dep].pkgname) for dep in build.waits_on
            )
            row.build_depends = _build_depends(graph, name)
            try:
                row.sources = _sources(template)
            except SourceError as error:
                row.state, row.reason = State.BUILD_STATE_FAILED, f"source: {error}"
                result.problems.append(Problem(name, arch, row.reason))
        elif name in plan.up_to_date:
            row.state = State.BUILD_STATE_UP_TO_DATE
            row.reason = f"the repository has {plan.up_to_date[name]}"
        else:
            row.state, row.reason = State.BUILD_STATE_BLOCKED, "not buildable in this tree"
        result.rows.append(row)
    return result


def plan_tree(
    tree_dir: Path,
    tree_id: str,
    archs: Sequence[str],
    *,
    host_arch: str,
    categories: Sequence[str],
    packages: Sequence[str],
    rebuild_dependents: bool,
    repository_versions: RepositoryVersions,
    cache_dir: Path | None = None,
    evaluation_jobs: int = 0,
) -> PlannedTree:
    """Plan ``archs`` of the tree; the evaluation workers are stopped afterwards."""
    settings = EvaluatorSettings(jobs=evaluation_jobs) if evaluation_jobs > 0 else None
    loader = TreeLoader(tree_dir, cache_dir=cache_dir, settings=settings)
    try:
        total = PlannedTree()
        for arch in archs:
            planned = plan_arch(
                loader,
                tree_id,
                arch,
                host_arch=host_arch,
                categories=categories,
                packages=packages,
                rebuild_dependents=rebuild_dependents,
                repository=repository_versions(arch),
            )
            total.rows.extend(planned.rows)
            total.problems.extend(planned.problems)
        return total
    finally:
        loader.close()
