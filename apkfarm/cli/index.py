"""``apkfarm index``: sign and index a directory of packages, incrementally."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "index",
        help="write a signed APKINDEX.tar.gz for a directory of packages",
        description=(
            "Index the *.apk files in DIR and write DIR/APKINDEX.tar.gz atomically, "
            "signed with every --key. Only new or changed packages are read (state in "
            "DIR/.apkfarm-index.state and .apkfarm-index.journal); each is verified before "
            "it is indexed. Runs on the same DIR take turns (DIR/.apkfarm-index.lock)."
        ),
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="the repository directory")
    parser.add_argument(
        "--key",
        type=Path,
        action="append",
        required=True,
        metavar="KEY",
        help="private key (.rsa) to sign the index with; repeat to sign with several "
        "(key rotation)",
    )
    parser.add_argument(
        "--keys",
        type=Path,
        metavar="DIR",
        help="verify packages against the *.rsa.pub keys in DIR (default: the public "
        "halves of the --key keys)",
    )
    parser.add_argument("--description", default="", help="the index DESCRIPTION (one line)")
    parser.add_argument(
        "--verify-all",
        action="store_true",
        help="reread and verify every package, not only new and changed ones",
    )
    parser.add_argument(
        "--sha1",
        action="store_true",
        help="sign with SHA-1 (.SIGN.RSA.) instead of SHA-256, for very old clients",
    )
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="worker processes for reading (default: CPUs)"
    )
    parser.add_argument(
        "--added",
        action="append",
        default=[],
        metavar="FILE",
        help="only index this package file name, written since the last run (repeatable); "
        "with --added/--removed the directory is not listed, for publishers that know "
        "what they changed",
    )
    parser.add_argument(
        "--removed",
        action="append",
        default=[],
        metavar="FILE",
        help="only drop this package file name from the index (repeatable)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from apkfarm.apk.keys import Keyring  # noqa: PLC0415 - keeps `apkfarm --help` fast
    from apkfarm.apk.repository import (  # noqa: PLC0415 - keeps `apkfarm --help` fast
        Repository,
        repository_lock,
        update_repository,
    )
    from apkfarm.apk.signing import LocalKeySigner, SignatureAlgorithm  # noqa: PLC0415 - keeps `apkfarm --help` fast
    from apkfarm.cli.progress import progress_bar  # noqa: PLC0415 - keeps `apkfarm --help` fast
    from apkfarm.errors import ApkfarmError  # noqa: PLC0415

    algorithm = SignatureAlgorithm.RSA if args.sha1 else SignatureAlgorithm.RSA256
    signers = [LocalKeySigner(path, algorithm=algorithm) for path in args.key]
    keyring = (
        Keyring.from_directory(args.keys)
        if args.keys is not None
        else Keyring.from_private_keys(args.key)
    )

    def waiting() -> None:
        print(f"waiting for another apkfarm index on {args.directory}", file=sys.stderr)

    with (
        repository_lock(args.directory, waiting=waiting),
        progress_bar("reading packages", None) as advance,
    ):
        if args.added or args.removed:
            if args.verify_all:
                raise ApkfarmError("--verify-all rereads everything; it cannot go with --added")
            repository = Repository(
                args.directory,
                signers=signers,
                keyring=keyring,
                description=args.description,
                jobs=args.jobs,
            )
            update = repository.packages_changed(
                written=args.added, deleted=args.removed, progress=advance
            )
        else:
            update = update_repository(
                args.directory,
                signers=signers,
                keyring=keyring,
                description=args.description,
                verify_all=args.verify_all,
                progress=advance,
                jobs=args.jobs,
            )
    for name in update.added:
        print(f"added    {name}")
    for name in update.changed:
        print(f"changed  {name}")
    for name in update.removed:
        print(f"removed  {name}")
    if update.wrote_index:
        print(
            f"wrote {update.index_path}: {update.packages} packages "
            f"({update.reread} read, {update.unchanged} unchanged)"
        )
    else:
        print(f"{update.index_path} is up to date ({update.packages} packages)")
    return 0
