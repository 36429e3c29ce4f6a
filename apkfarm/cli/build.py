"""``apkfarm build``: the whole farm in this process, leaving a signed repository."""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from apkfarm.errors import ApkfarmError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build templates into a signed repository, no servers needed",
        description=(
            "Run the farm's scheduler, fetcher, builders, signer and indexer in this process "
            "(in-memory bus, local directories) to build PKG... (and what they need) or --all "
            "from PORTS for each --arch. Leaves a signed repository at OUT/<category>/<arch>/ "
            "and the farm's state and build logs under OUT/.apkfarm/. The signing key is "
            "created on first use in --keys-dir; its public half is copied to OUT/keys/."
        ),
    )
    parser.add_argument("ports", type=Path, metavar="PORTS", help="the ports tree")
    parser.add_argument("packages", nargs="*", metavar="PKG", help="templates to build")
    parser.add_argument("--all", action="store_true", help="build every template of the tree")
    parser.add_argument(
        "--arch",
        action="append",
        default=[],
        help="target arch (repeatable; default: this machine's); others are cross builds",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out"), help="repository directory (default: %(default)s)"
    )
    parser.add_argument(
        "--category",
        action="append",
        default=[],
        help="categories to load (repeatable; default: main and user)",
    )
    parser.add_argument(
        "--keys-dir",
        type=Path,
        default=None,
        help="where the signing key lives (default: ~/.config/apkfarm/keys)",
    )
    parser.add_argument(
        "--site",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="value of a $(NAME) macro in template sources, e.g. EXAMPLES_SITE=file:///srv/distfiles",
    )
    parser.add_argument(
        "--timeout", type=float, default=3 * 3600.0, help="seconds one build may take"
    )
    parser.set_defaults(func=run)


def _sites(values: list[str]) -> tuple[tuple[str, str], ...]:
    sites = []
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url:
            raise ApkfarmError(f"--site {value!r}: expected NAME=URL")
        sites.append((name, url))
    return tuple(sites)


def run(args: argparse.Namespace) -> int:
    from apkfarm.embedded import DEFAULT_KEYS_DIR, EmbeddedSettings  # noqa: PLC0415

    if bool(args.packages) == args.all:
        raise ApkfarmError("name the templates to build, or pass --all (not both)")
    if not (args.ports / "main").is_dir() and not any(args.ports.glob("*/*/template.py")):
        raise ApkfarmError(f"{args.ports}: not a ports tree (no <category>/<pkg>/template.py)")
    settings = EmbeddedSettings(
        out=args.out.resolve(),
        archs=tuple(dict.fromkeys(args.arch)) or (platform.machine(),),
        host_arch=platform.machine(),
        categories=tuple(args.category) or ("main", "user"),
        keys_dir=args.keys_dir or DEFAULT_KEYS_DIR,
        sites=_sites(args.site),
        build_timeout=args.timeout,
    )
    return asyncio.run(_build(settings, args.ports.resolve(), args.packages))


async def _build(settings: Any, ports: Path, packages: list[str]) -> int:
    from apkfarm.cli.buildprogress import BuildProgress  # noqa: PLC0415
    from apkfarm.embedded import EmbeddedFarm  # noqa: PLC0415

    async with EmbeddedFarm(settings) as farm:
        with BuildProgress(settings.archs) as progress:
            outcome = await farm.build(ports, packages, on_change=progress.update)
    counts = Counter(_label(b.state) for b in outcome.builds)
    for build in outcome.failed:
        t = build.template
        print(f"{_label(build.state)}: {t.pkgname} ({t.arch}): {build.reason}", file=sys.stderr)
        if build.log_key:
            print(f"  log: {settings.state_dir / 'artifacts' / build.log_key}", file=sys.stderr)
    for problem in outcome.submission.problems:
        kind = "excluded" if problem.excluded else "error"
        print(f"{kind}: {problem.template} ({problem.arch}): {problem.message}", file=sys.stderr)
    summary = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    print(f"tree {outcome.submission.tree_id[:12]}: {summary}")
    print(f"repository: {settings.out} (trust {farm.public_key})")
    errors = [p for p in outcome.submission.problems if not p.excluded]
    return 1 if outcome.failed or errors else 0


def _label(state: int) -> str:
    from apkfarm.cli.remote import state_label  # noqa: PLC0415

    return state_label(state)
