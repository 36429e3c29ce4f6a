"""``apkfarm submit``: send a ports tree to a running farm and print the plan."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from apkfarm.cli.remote import add_connection_options, call, state_label

CHUNK = 1024 * 1024


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="upload a ports tree to the farm and start building it",
        description=(
            "Snapshot PORTS (its categories and etc/), upload it to the scheduler, and submit "
            "it for the given archs. Prints each build's state and why it builds."
        ),
    )
    parser.add_argument("ports", type=Path, metavar="PORTS", help="the ports tree")
    parser.add_argument(
        "packages", nargs="*", metavar="PKG", help="build only these (and what they need)"
    )
    parser.add_argument(
        "--arch",
        action="append",
        default=[],
        help="arch to build (repeatable; default: all the farm has)",
    )
    parser.add_argument(
        "--category", action="append", default=[], help="category to build (repeatable)"
    )
    parser.add_argument(
        "--rebuild-dependents",
        action="store_true",
        help="also rebuild templates whose build dependencies are rebuilt",
    )
    parser.add_argument(
        "--remote-path",
        action="store_true",
        help="do not upload: PORTS is a path on the scheduler's machine (if it allows that)",
    )
    add_connection_options(parser)
    parser.set_defaults(func=run)


async def _chunks(path: Path) -> AsyncIterator[Any]:
    from apkfarm.v1 import scheduler_pb2  # noqa: PLC0415

    with path.open("rb") as handle:
        while data := handle.read(CHUNK):
            yield scheduler_pb2.TreeChunk(data=data)


def run(args: argparse.Namespace) -> int:
    from apkfarm.templates.snapshot import make_snapshot  # noqa: PLC0415
    from apkfarm.v1 import scheduler_pb2  # noqa: PLC0415

    async def work(stub: Any) -> int:
        request = scheduler_pb2.SubmitTreeRequest(
            archs=args.arch,
            categories=args.category,
            packages=args.packages,
            rebuild_dependents=args.rebuild_dependents,
        )
        if args.remote_path:
            request.local_path = str(args.ports)
        else:
            with tempfile.TemporaryDirectory(prefix="apkfarm-submit-") as tmp:
                snapshot = make_snapshot(args.ports, Path(tmp))
                uploaded = await stub.UploadTree(_chunks(snapshot.tar_path))
            print(f"uploaded tree {uploaded.sha256[:12]} ({uploaded.size} bytes)")
            request.tree_key = uploaded.tree_key
        response = await stub.SubmitTree(request)
        print(f"tree {response.tree_id}")
        for build in response.builds:
            t = build.template
            print(
                f"  {t.arch:<8} {t.pkgname:<28} {t.version:<14} {state_label(build.state):<10} {build.reason}"
            )
        failed = 0
        for problem in response.problems:
            kind = "excluded" if problem.excluded else "error"
            failed += 0 if problem.excluded else 1
            print(f"  {kind}: {problem.template} ({problem.arch}): {problem.message}")
        return 1 if failed else 0

    return call(args, work)
