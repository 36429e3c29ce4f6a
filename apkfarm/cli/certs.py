"""``apkfarm certs``: the farm CA and the per-service mTLS identities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "certs",
        help="create the farm CA and one mTLS certificate per service",
        description="Manage the farm's private CA and service identities.",
    )
    actions = parser.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="create ca.crt and <identity>.crt/.key for every service",
        description=(
            "Create (or reuse) the farm CA in DIR and issue a certificate and key for the "
            "scheduler, fetcher, signer, indexer, operator and one builder per arch, plus "
            "the scheduler's Ed25519 job-token key pair (scheduler-jobtoken.key/.pub). "
            "Keys are written mode 0600; keep ca.key offline in production."
        ),
    )
    init.add_argument("directory", type=Path, metavar="DIR")
    init.add_argument(
        "--builder-archs",
        default="x86_64,aarch64",
        help="comma-separated archs that get a builder-<arch> identity (default: %(default)s)",
    )
    init.add_argument(
        "--identity",
        action="append",
        default=[],
        help="an extra identity to issue (repeatable), e.g. a second operator",
    )
    init.add_argument(
        "--dns",
        action="append",
        default=[],
        help="an extra DNS name every certificate should carry (repeatable)",
    )
    init.add_argument("--days", type=int, default=825, help="validity (default: %(default)s)")
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    from apkfarm.certs import JOB_TOKEN_KEY, JOB_TOKEN_PUBLIC_KEY, init_certs  # noqa: PLC0415

    archs = [arch.strip() for arch in args.builder_archs.split(",") if arch.strip()]
    files = init_certs(
        args.directory,
        builder_archs=archs,
        extra_identities=args.identity,
        extra_dns=args.dns,
        days=args.days,
    )
    print(f"CA: {args.directory / 'ca.crt'}")
    for item in files:
        print(f"{item.identity}: {item.certificate} {item.key}")
    print(
        f"job tokens: {args.directory / JOB_TOKEN_KEY} (scheduler), "
        f"{args.directory / JOB_TOKEN_PUBLIC_KEY} (signer)"
    )
    return 0
