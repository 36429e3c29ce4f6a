"""``apkfarm templates``: read a ports tree the way cbuild does (``dump``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that loads a ports tree shares (also used by ``plan``)."""
    parser.add_argument("ports", type=Path, metavar="PORTS", help="the ports tree (cports layout)")
    parser.add_argument("--arch", required=True, help="target architecture, e.g. x86_64, aarch64")
    parser.add_argument(
        "--host-arch",
        metavar="ARCH",
        help="architecture of the build machine (default: this machine's); "
        "templates see cross = (arch != host arch)",
    )
    parser.add_argument(
        "--category",
        action="append",
        metavar="NAME",
        help="a category that may build; repeat for several (default: main and user)",
    )
    parser.add_argument(
        "--allow-restricted",
        action="store_true",
        help="do not exclude templates marked 'restricted' (not redistributable)",
    )
    parser.add_argument("--stage", type=int, default=3, help="bootstrap stage templates see (3)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long one template may take to evaluate (30)",
    )
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="sandboxed evaluation workers (default: CPUs)"
    )
    parser.add_argument(
        "--python",
        type=Path,
        metavar="PATH",
        help="Python (3.10 or later) that evaluates templates inside the sandbox "
        "(default: the one running apkfarm)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="keep evaluation results in DIR, keyed by template content, across runs",
    )


def load(args: argparse.Namespace) -> Any:
    """Load the tree named by `args` (see add_load_arguments), with progress on a TTY."""
    from apkfarm.cli.progress import progress_bar  # noqa: PLC0415 - keeps `apkfarm --help` fast
    from apkfarm.templates import (  # noqa: PLC0415 - keeps `apkfarm --help` fast
        DEFAULT_CATEGORIES,
        EvaluatorSettings,
        LoadPolicy,
        load_tree,
    )

    settings = EvaluatorSettings(timeout=args.timeout, python=args.python)
    if args.jobs:
        settings = dataclasses.replace(settings, jobs=args.jobs)
    policy = LoadPolicy(
        categories=tuple(args.category) if args.category else DEFAULT_CATEGORIES,
        allow_restricted=args.allow_restricted,
    )
    # The total is known once the tree is scanned; the bar learns it then.
    with progress_bar("evaluating templates", total=2) as advance:
        return load_tree(
            args.ports,
            args.arch,
            host_arch=args.host_arch,
            policy=policy,
            stage=args.stage,
            settings=settings,
            cache_dir=args.cache_dir,
            progress=advance,
        )


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "templates",
        help="read a cports-style ports tree",
        description="Read a cports-style ports tree. Template code runs only in a sandbox.",
    )
    commands = parser.add_subparsers(dest="templates_command", metavar="COMMAND", required=True)
    dump = commands.add_parser(
        "dump",
        help="print every template of a tree as JSON, evaluated for one architecture",
        description=(
            "Evaluate every template for --arch (in sandboxed workers) and print one JSON "
            "document: the templates (pkgname, pkgver, pkgrel, category, subpackages, the "
            "four dependency lists as written, provides, archs, options, broken, ...), the "
            "templates excluded for this arch with the reason, and the errors. Exits 1 when "
            "any template has an error."
        ),
    )
    add_load_arguments(dump)
    dump.add_argument("--compact", action="store_true", help="one line of JSON, no indentation")
    dump.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = load(args)
    document = result.to_json()
    json.dump(document, sys.stdout, indent=None if args.compact else 2, sort_keys=False)
    sys.stdout.write("\n")
    for issue in result.errors:
        print(f"apkfarm: {issue}", file=sys.stderr)
    return 1 if result.errors else 0
