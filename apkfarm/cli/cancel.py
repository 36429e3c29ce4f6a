"""``apkfarm cancel``: stop a build (its dependents become blocked)."""

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
        "cancel",
        help="cancel a build that has not finished",
        description="Cancel a waiting, queued or running build; what depends on it is blocked.",
    )
    add_build_selector(parser)
    add_connection_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def work(stub: Any) -> int:
        build = await stub.Cancel(build_selector(args))
        print(f"{build.template.pkgname} ({build.template.arch}): {state_label(build.state)}")
        return 0

    return call(args, work)
