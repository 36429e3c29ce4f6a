"""``apkfarm explain``: why a build is or is not dispatched."""

from __future__ import annotations

import argparse
from typing import Any

from apkfarm.cli.remote import add_build_selector, add_connection_options, build_selector, call


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="say why a build is or is not dispatched (what it waits on)",
        description="Ask the scheduler what a build is waiting for, or why it failed or is blocked.",
    )
    add_build_selector(parser)
    add_connection_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def work(stub: Any) -> int:
        explanation = await stub.Explain(build_selector(args))
        for line in explanation.lines:
            print(line)
        return 0

    return call(args, work)
