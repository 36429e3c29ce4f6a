"""``apkfarm status``: the builds of a tree on a running farm."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from apkfarm.cli.remote import add_connection_options, call, state_label


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show the builds of the latest (or a given) tree",
        description="List every build of a tree with its state and reason, and a summary.",
    )
    parser.add_argument("--tree", default="", help="tree id (default: the latest submitted tree)")
    parser.add_argument("--arch", default="", help="only this arch")
    add_connection_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from apkfarm.v1 import scheduler_pb2  # noqa: PLC0415

    async def work(stub: Any) -> int:
        response = await stub.ListBuilds(
            scheduler_pb2.ListBuildsRequest(tree_id=args.tree, arch=args.arch)
        )
        if not response.tree_id:
            print("no tree has been submitted")
            return 0
        print(f"tree {response.tree_id}")
        counts: Counter[str] = Counter()
        for build in response.builds:
            t = build.template
            label = state_label(build.state)
            counts[label] += 1
            print(f"  {t.arch:<8} {t.pkgname:<28} {t.version:<14} {label:<10} {build.reason}")
        print("  " + ", ".join(f"{n} {label}" for label, n in sorted(counts.items())))
        return 1 if counts["failed"] else 0

    return call(args, work)
