"""Talking to a running farm: the scheduler's address, the operator's mTLS identity.

Shared by ``submit``, ``status``, ``logs``, ``explain``, ``cancel`` and ``retry``.
Each option also reads an environment variable, so an operator sets them once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from apkfarm.errors import ApkfarmError

if TYPE_CHECKING:
    from apkfarm.v1 import scheduler_pb2


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("farm connection")
    group.add_argument(
        "--scheduler",
        default=os.environ.get("APKFARM_SCHEDULER", "127.0.0.1:50051"),
        metavar="ADDR",
        help="scheduler gRPC address (env APKFARM_SCHEDULER; default: %(default)s)",
    )
    group.add_argument(
        "--tls-dir",
        type=Path,
        default=os.environ.get("APKFARM_TLS_DIR") or None,
        metavar="DIR",
        help="directory with ca.crt and the identity's .crt/.key (env APKFARM_TLS_DIR)",
    )
    group.add_argument(
        "--identity",
        default=os.environ.get("APKFARM_IDENTITY", "operator"),
        help="mTLS identity to present (env APKFARM_IDENTITY; default: %(default)s)",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        default=os.environ.get("APKFARM_INSECURE_NO_TLS", "").lower() in {"1", "true", "yes"},
        help="talk plaintext gRPC (only to a farm started with APKFARM_INSECURE_NO_TLS)",
    )


def add_build_selector(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pkgname", metavar="PKG", help="template or package name")
    parser.add_argument("--arch", default="", help="architecture (needed if it builds for several)")
    parser.add_argument("--tree", default="", help="tree id (default: the latest submitted tree)")


def build_selector(args: argparse.Namespace) -> scheduler_pb2.BuildSelector:
    """The build named by the options ``add_build_selector`` added."""
    from apkfarm.v1 import scheduler_pb2  # noqa: PLC0415

    return scheduler_pb2.BuildSelector(pkgname=args.pkgname, arch=args.arch, tree_id=args.tree)


def open_scheduler_channel(args: argparse.Namespace) -> grpc.aio.Channel:
    from apkfarm.services.common.tls import TlsFiles, open_channel  # noqa: PLC0415

    if args.insecure:
        return open_channel(args.scheduler, None)
    if args.tls_dir is None:
        raise ApkfarmError(
            "no --tls-dir (or APKFARM_TLS_DIR): the farm talks mTLS; "
            "use --insecure only against a farm started without TLS"
        )
    files = TlsFiles.in_directory(args.tls_dir, args.identity)
    return open_channel(args.scheduler, files, server_identity="scheduler")


def call(args: argparse.Namespace, work: Callable[[Any], Awaitable[int]]) -> int:
    """Run ``work(stub)`` against the scheduler; gRPC errors become one clear line."""
    from apkfarm.v1 import scheduler_pb2_grpc  # noqa: PLC0415

    async def main() -> int:
        channel = open_scheduler_channel(args)
        try:
            return await work(scheduler_pb2_grpc.SchedulerStub(channel))
        except grpc.aio.AioRpcError as error:
            raise ApkfarmError(
                f"scheduler at {args.scheduler}: {error.code().name}: {error.details()}"
            ) from None
        finally:
            await channel.close()

    return asyncio.run(main())


def state_label(state: int) -> str:
    from apkfarm.v1 import common_pb2  # noqa: PLC0415

    name: str = common_pb2.BuildState.Name(state)  # type: ignore[arg-type]
    return name.removeprefix("BUILD_STATE_").lower().replace("_", "-")
