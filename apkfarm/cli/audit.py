"""``apkfarm audit verify``: check the signer's hash-chained audit log."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="check the signer's audit log for edited, deleted or reordered records",
        description="Work with the signer's audit log (audit/<sequence>.json in the blob store).",
    )
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="recompute the hash chain and name every record that breaks it",
        description=(
            "Read every audit record in order, recompute each record's hash and the chain "
            "of previous-record hashes, and report each break by record. Reads a local "
            "store directory (--store, the embedded mode) or the farm's S3 bucket from the "
            "APKFARM_S3_* environment variables. Exits 1 when the chain is broken."
        ),
    )
    verify.add_argument(
        "--store", type=Path, metavar="DIR", help="a local blob store directory instead of S3"
    )
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from apkfarm.audit import read_records, verify_chain  # noqa: PLC0415
    from apkfarm.blobs import BlobStore, LocalBlobStore  # noqa: PLC0415

    store: BlobStore
    if args.store is not None:
        store = LocalBlobStore(args.store)
        where = str(args.store)
    else:
        from apkfarm.services.common.app import StoreConfig, open_store  # noqa: PLC0415
        from apkfarm.services.common.config import load_config  # noqa: PLC0415

        config = load_config(StoreConfig, os.environ)
        store = open_store(config)
        where = f"s3://{config.s3_bucket} at {config.s3_endpoint}"
    records = list(read_records(store))
    problems = verify_chain(records)
    for problem in problems:
        print(problem)
    if problems:
        print(f"audit log in {where}: {len(records)} records, {len(problems)} problems")
        return 1
    print(f"audit log in {where}: {len(records)} records, chain intact")
    return 0
