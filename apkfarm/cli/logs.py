"""``apkfarm logs``: a build's log, live while it runs (``-f``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from apkfarm.cli.remote import add_build_selector, add_connection_options, build_selector, call


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="print a build's log (-f: follow it while it runs)",
        description=(
            "Print the log of a build's latest attempt: streamed live from its builder while "
            "it runs, read from storage afterwards."
        ),
    )
    add_build_selector(parser)
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until the build ends"
    )
    add_connection_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from apkfarm.v1 import scheduler_pb2  # noqa: PLC0415

    async def work(stub: Any) -> int:
        request = scheduler_pb2.TailLogRequest(
            build=build_selector(args),
            follow=args.follow,
        )
        async for chunk in stub.TailLog(request):
            sys.stdout.buffer.write(chunk.data)
            sys.stdout.buffer.flush()
        return 0

    return call(args, work)
