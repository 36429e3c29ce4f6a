"""Benchmark of the blob stores: streaming throughput and peak memory against object size.

    .venv/bin/python bench/bench_blobs.py [--sizes 50,200,400] [--stores local,s3]

Goal: memory flat in object size. Each upload + download runs in a child
process whose peak RSS (ru_maxrss) is reported; the figure that matters is the
growth of peak RSS between the smallest and the largest object, which must
stay below the multipart working set (a few 8 MiB parts), far below the
object size. The S3 store runs against a private ``weed mini`` on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

MiB = 1024 * 1024
# Peak RSS may grow by at most this much from the smallest to the largest object.
FLAT_GOAL_MIB = 48.0


class PatternStream:
    def __init__(self, size: int) -> None:
        self.remaining = size
        self._block = hashlib.sha256(b"bench").digest() * 8192  # 256 KiB

    def read(self, size: int = -1, /) -> bytes:
        size = min(self.remaining if size < 0 else size, self.remaining, len(self._block))
        self.remaining -= size
        return self._block[:size]


def child(store_kind: str, size_mib: int, root: str) -> None:
    """Upload and download one object; print timings and peak RSS as JSON."""
    from apkfarm.blobs import LocalBlobStore  # noqa: PLC0415 - imported in the child only
    from apkfarm.blobs.s3 import S3BlobStore  # noqa: PLC0415

    store: LocalBlobStore | S3BlobStore
    if store_kind == "local":
        store = LocalBlobStore(root)
    else:
        store = S3BlobStore(
            os.environ["BENCH_S3_ENDPOINT"],
            os.environ["BENCH_S3_ACCESS_KEY"],
            os.environ["BENCH_S3_SECRET_KEY"],
            os.environ["BENCH_S3_BUCKET"],
            secure=False,
            region="us-east-1",
            prefix=f"bench-{size_mib}/",
        )
    size = size_mib * MiB
    start = time.perf_counter()
    store.put_stream("trees/object.tar", PatternStream(size))
    upload = time.perf_counter() - start
    start = time.perf_counter()
    got = sum(len(chunk) for chunk in store.iter_chunks("trees/object.tar"))
    download = time.perf_counter() - start
    assert got == size
    store.delete("trees/object.tar")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"upload_s": upload, "download_s": download, "peak_rss_mib": peak_kib / 1024}))


def run_child(store_kind: str, size_mib: int, root: str, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", store_kind, str(size_mib), root],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200,400", help="object sizes in MiB")
    parser.add_argument("--stores", default="local,s3")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return 0

    from fixtures.servers import s3_server_running  # noqa: PLC0415 - test helpers

    sizes = [int(s) for s in args.sizes.split(",")]
    stores = args.stores.split(",")
    failures = 0
    with tempfile.TemporaryDirectory(prefix="bench-blobs-") as tmp:
        env = dict(os.environ)
        s3_context = s3_server_running() if "s3" in stores else None
        server = s3_context.__enter__() if s3_context else None
        try:
            if server is not None:
                env.update(
                    BENCH_S3_ENDPOINT=server.endpoint,
                    BENCH_S3_ACCESS_KEY=server.access_key,
                    BENCH_S3_SECRET_KEY=server.secret_key,
                    BENCH_S3_BUCKET=server.bucket,
                )
            for kind in stores:
                peaks = []
                print(f"{kind}:")
                for size in sizes:
                    r = run_child(kind, size, str(Path(tmp) / kind), env)
                    peaks.append(r["peak_rss_mib"])
                    print(
                        f"  {size:5d} MiB  upload {size / r['upload_s']:7.1f} MiB/s  "
                        f"download {size / r['download_s']:7.1f} MiB/s  "
                        f"peak RSS {r['peak_rss_mib']:6.1f} MiB"
                    )
                growth = peaks[-1] - peaks[0]
                ratio = growth / FLAT_GOAL_MIB
                print(
                    f"  peak RSS growth {sizes[0]} -> {sizes[-1]} MiB objects: {growth:+.1f} MiB "
                    f"(goal < {FLAT_GOAL_MIB:.0f} MiB, ratio {ratio:.2f})"
                )
                failures += ratio >= 1.0
        finally:
            if s3_context is not None:
                s3_context.__exit__(None, None, None)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
