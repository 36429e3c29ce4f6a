"""``apkfarm keys``: the farm's apk signing keys, active and retired."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from apkfarm.cli.remote import add_connection_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="list the apk signing keys: which sign, which are retired",
        description=(
            "List the signing keys with their key ids: from a signer's keys directory (--dir; "
            "active <name>.rsa, retired retired/<name>.rsa.pub), or from a running signer "
            "(--signer ADDR, public keys only)."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dir", type=Path, metavar="KEYS_DIR", help="a signer's keys directory")
    source.add_argument("--signer", metavar="ADDR", help="a running signer's gRPC address")
    add_connection_options(parser)
    parser.set_defaults(func=run)


def _print(rows: list[tuple[str, str, bool]]) -> None:
    for name, key_id, active in rows:
        print(f"{'active ' if active else 'retired'}  {key_id[:16]}  {name}")


def run(args: argparse.Namespace) -> int:
    if args.dir is not None:
        from apkfarm.services.signer.keys import SigningKeys  # noqa: PLC0415

        keys = SigningKeys(args.dir)
        _print([(k.name, k.key_id, k.active) for k in keys.published])
        print(f"packages are signed with {keys.primary.key_name}; indexes with every active key")
        return 0
    return _from_signer(args)


def _from_signer(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from apkfarm.errors import ApkfarmError  # noqa: PLC0415
    from apkfarm.services.common.tls import TlsFiles, open_channel  # noqa: PLC0415
    from apkfarm.v1 import signer_pb2, signer_pb2_grpc  # noqa: PLC0415

    async def fetch() -> list[tuple[str, str, bool]]:
        files = None if args.insecure else TlsFiles.in_directory(args.tls_dir, args.identity)
        channel = open_channel(args.signer, files, server_identity="signer")
        try:
            response = await signer_pb2_grpc.SignerStub(channel).ListKeys(
                signer_pb2.ListKeysRequest(), timeout=30
            )
        finally:
            await channel.close()
        return [(k.name, k.key_id, k.active) for k in response.keys]

    if not args.insecure and args.tls_dir is None:
        raise ApkfarmError("no --tls-dir (or APKFARM_TLS_DIR) for the signer's mTLS")
    _print(asyncio.run(fetch()))
    return 0
