#!/opt/apkfarm/bin/python
"""Create the farm's S3 bucket if it is missing; optionally let anyone read repo/.

Installed in every service image as ``apkfarm-init-bucket``; compose and the
Kubernetes manifests run it once before the services start. It reads the
services' own S3 settings (APKFARM_S3_ENDPOINT, APKFARM_S3_ACCESS_KEY,
APKFARM_S3_SECRET_KEY, APKFARM_S3_BUCKET, APKFARM_S3_SECURE, APKFARM_S3_REGION).
With ``--public-repo`` it sets a bucket policy that allows anonymous GetObject
on ``repo/*`` only, so mirrors can pull the repository and nothing else.
Waits up to ``--wait`` seconds for the store to answer, retrying a real call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import urllib3
from minio import Minio
from minio.error import S3Error

_TRUE = {"1", "true", "yes", "on"}


def public_repo_policy(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ["*"]},
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}/repo/*"],
                }
            ],
        }
    )


def client_from(environ: dict[str, str]) -> tuple[Minio, str]:
    endpoint = environ.get("APKFARM_S3_ENDPOINT", "")
    if not endpoint:
        raise ValueError("APKFARM_S3_ENDPOINT is not set")
    client = Minio(
        endpoint,
        access_key=environ.get("APKFARM_S3_ACCESS_KEY", ""),
        secret_key=environ.get("APKFARM_S3_SECRET_KEY", ""),
        secure=environ.get("APKFARM_S3_SECURE", "false").strip().lower() in _TRUE,
        region=environ.get("APKFARM_S3_REGION") or None,
    )
    return client, environ.get("APKFARM_S3_BUCKET", "apkfarm")


def ensure_bucket(client: Minio, bucket: str, wait: float) -> bool:
    """Make ``bucket`` unless it exists; True when it was created now."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if client.bucket_exists(bucket):
                return False
            client.make_bucket(bucket)
            return True
        except S3Error as error:
            if error.code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                return False
            raise
        except (OSError, urllib3.exceptions.HTTPError):  # the store is not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)  # retry interval of a real call, not a readiness guess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--public-repo", action="store_true", help="allow anonymous reads of repo/* only"
    )
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the store")
    args = parser.parse_args(argv)
    try:
        client, bucket = client_from(dict(os.environ))
        created = ensure_bucket(client, bucket, args.wait)
        if args.public_repo:
            client.set_bucket_policy(bucket, public_repo_policy(bucket))
    except (S3Error, OSError, urllib3.exceptions.HTTPError, ValueError) as error:
        print(f"apkfarm-init-bucket: bucket setup failed: {error}", file=sys.stderr)
        return 1
    print(f"apkfarm-init-bucket: bucket {bucket} {'created' if created else 'present'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
