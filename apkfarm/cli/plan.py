"""``apkfarm plan``: what must build for one architecture, in which order, and why."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apkfarm.cli.templates import add_load_arguments, load


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="print the build plan of a ports tree: waves and the reason each package builds",
        description=(
            "Load the tree for --arch (templates are evaluated in a sandbox), build the "
            "dependency graph and print what must build, in waves that can each build in "
            "parallel, with the reason for each (new, version changed, dependency rebuilt), "
            "plus what is blocked, excluded or broken. Exits 1 on template errors or "
            "dependency cycles."
        ),
    )
    add_load_arguments(parser)
    parser.add_argument(
        "--repo",
        type=Path,
        metavar="DIR",
        help="an apk repository: DIR/<category>/<arch>/APKINDEX.tar.gz says what is built "
        "already (default: nothing is)",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--rebuild-dependents",
        action="store_true",
        help="also rebuild what builds against a rebuilt package (off by default: a "
        "rebuild at the same version never reaches clients)",
    )
    parser.add_argument(
        "--explain",
        action="append",
        metavar="PKG",
        help="say why PKG is or is not ready to build; repeat for several",
    )
    parser.set_defaults(func=run)


def repository_versions(repo: Path, categories: tuple[str, ...], arch: str) -> dict[str, str]:
    """package name -> version held by DIR/<category>/<arch>/APKINDEX.tar.gz files."""
    from apkfarm import version  # noqa: PLC0415 - keeps `apkfarm --help` fast
    from apkfarm.apk.index import read_index_records  # noqa: PLC0415 - keeps `apkfarm --help` fast

    held: dict[str, str] = {}
    for category in categories:
        path = repo / category / arch / "APKINDEX.tar.gz"
        if not path.is_file():
            continue
        for record in read_index_records(path):
            current = held.get(record.name)
            if current is None or version.compare(record.version, current, strict=False) > 0:
                held[record.name] = record.version
    return held


def _print_text(plan: Any, explanations: list[Any]) -> None:
    load = plan.graph.load
    context = load.context
    where = f"{context.target.arch}"
    where += f" on {context.host.arch} (cross)" if context.cross else " (native)"
    print(
        f"plan for {where}: {len(plan.builds)} to build in {len(plan.waves)} waves, "
        f"{len(plan.up_to_date)} up to date, {len(plan.blocked)} blocked, "
        f"{len(load.exclusions)} excluded, {len(load.errors)} errors"
    )
    for number, wave in enumerate(plan.waves, start=1):
        print(f"wave {number} ({len(wave)}):")
        for name in wave:
            build = plan.builds[name]
            print(f"  {name} {build.version}: {'; '.join(build.reasons)}")
    sections: list[tuple[str, Mapping[str, str]]] = [
        ("blocked", plan.blocked),
        ("excluded", {i.template: i.message for i in load.exclusions}),
    ]
    for title, entries in sections:
        if entries:
            print(f"{title}:")
            for name, reason in entries.items():
                print(f"  {name}: {reason}")
    if load.errors:
        print("errors:")
        for issue in load.errors:
            print(f"  {issue}")
    if plan.graph.cycles:
        print("dependency cycles:")
        for cycle in plan.graph.cycles:
            print(f"  {' -> '.join(cycle)}")
    tools = sorted({t for ts in plan.graph.host_tools.values() for t in ts})
    if tools:
        print(f"host tools expected in the build root: {', '.join(tools)}")
    for explanation in explanations:
        print(f"explain {explanation}")


def run(args: argparse.Namespace) -> int:
    from apkfarm.graph import build_graph, make_plan  # noqa: PLC0415 - keeps `apkfarm --help` fast

    result = load(args)
    repository: dict[str, str] = {}
    if args.repo is not None:
        repository = repository_versions(args.repo, result.policy.categories, args.arch)
    graph = build_graph(result)
    plan = make_plan(graph, repository, rebuild_dependents=args.rebuild_dependents)
    explanations = [plan.explain(name) for name in args.explain or ()]
    if args.json:
        document = plan.to_json()
        document["explain"] = [e.to_json() for e in explanations]
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_text(plan, explanations)
    for issue in result.errors:
        print(f"apkfarm: {issue}", file=sys.stderr)
    for cycle in graph.cycles:
        print(f"apkfarm: dependency cycle: {' -> '.join(cycle)}", file=sys.stderr)
    return 1 if result.errors or graph.cycles else 0
