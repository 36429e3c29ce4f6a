"""``apkfarm verify``: check packages and indexes against trusted public keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify apk packages and APKINDEX.tar.gz files",
        description=(
            "Verify each PATH (a package or an index, told apart by content): its "
            "signature by a key in --keys, and for packages the datahash and every "
            "file's checksum. Prints one line per file; exits 1 if any failed."
        ),
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files to verify")
    parser.add_argument(
        "--keys",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory of trusted *.rsa.pub keys (like /etc/apk/keys)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from apkfarm.apk.errors import ApkError  # noqa: PLC0415 - keeps `apkfarm --help` fast
    from apkfarm.apk.keys import Keyring  # noqa: PLC0415 - keeps `apkfarm --help` fast
    from apkfarm.apk.reader import PackageContents, read_archive  # noqa: PLC0415 - keeps `apkfarm --help` fast
    from apkfarm.cli.progress import progress_bar  # noqa: PLC0415 - keeps `apkfarm --help` fast

    keyring = Keyring.from_directory(args.keys)
    failed = 0
    with progress_bar("verifying", len(args.paths)) as advance:
        for path in args.paths:
            try:
                with path.open("rb") as stream:
                    result = read_archive(stream, source=str(path), keyring=keyring)
            except ApkError as error:
                failed += 1
                print(f"{path}: FAILED: {error}", flush=True)
            except OSError as error:
                failed += 1
                print(f"{path}: FAILED: {error.strerror}", flush=True)
            else:
                signer = result.signature.key_name if result.signature else "?"
                if isinstance(result, PackageContents):
                    what = f"package {result.info.pkgname}-{result.info.pkgver}"
                else:
                    what = "index"
                print(f"{path}: ok ({what}, signed by {signer})", flush=True)
            advance()
    if failed:
        print(f"{failed} of {len(args.paths)} failed verification", file=sys.stderr)
        return 1
    return 0
