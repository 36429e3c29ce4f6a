"""``apkfarm retry``: make a failed, blocked or cancelled build eligible again."""

from __future__ import annotations

import argparse
from typing import Any

from apkfarm.cli.remote import (
    add_build_selector,
    add_connection_options,
    build_selector,
    call,
    state_label,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "retry",
        help="retry a failed, blocked or cancelled build",
        description=(
            "Reset a failed, blocked or cancelled build (and what it blocked) so the scheduler "
            "dispatches it again when its dependencies are indexed."
        ),
    )
    add_build_selector(parser)
    add_connection_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def work(stub: Any) -> int:
        build = await stub.Retry(build_selector(args))
        print(f"{build.template.pkgname} ({build.template.arch}): {state_label(build.state)}")
        return 0

    return call(args, work)
