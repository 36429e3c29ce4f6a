"""``apkfarm keygen``: create an RSA signing key pair named the way apk expects."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
from pathlib import Path
from typing import Any


def default_key_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "apkfarm" / "keys"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="create an RSA key pair for signing packages and indexes",
        description=(
            "Write <name>-<hex unix time>.rsa (private, PEM, mode 0600) and "
            "<name>-<hex unix time>.rsa.pub (public, PEM). Clients trust the key by "
            "installing the .rsa.pub file under that same name in /etc/apk/keys."
        ),
    )
    parser.add_argument(
        "--name",
        metavar="EMAIL",
        help="key owner, usually an e-mail address (default: USER@HOSTNAME)",
    )
    parser.add_argument(
        "--bits", type=int, choices=(2048, 4096), default=2048, help="RSA key size (default: 2048)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help=f"where to write the keys (default: {default_key_dir()})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from apkfarm.apk.keys import generate_key_pair  # noqa: PLC0415 - keeps `apkfarm --help` fast

    name = args.name or f"{getpass.getuser()}@{socket.gethostname()}"
    directory = args.dir or default_key_dir()
    pair = generate_key_pair(directory, name, bits=args.bits)
    print(pair.private_path)
    print(pair.public_path)
    return 0
