"""Generate the example ports tree's source tarballs from examples/src/.

    .venv/bin/python tools/make_distfiles.py OUTDIR

writes OUTDIR/<name>-<version>.tar.gz for every examples/src/<name>-<version>/
and prints each file's sha256. The tarballs are byte-for-byte reproducible —
entries sorted, one fixed mtime, owner root:root (uid/gid 0), modes reduced
to 0644/0755, gzip header without file name and with mtime 0 — so the sha256
sums written in examples/*/*/template.py stay valid. Point the farm's
``EXAMPLES_SITE`` source macro at OUTDIR to build the examples.

The compressed bytes depend on zlib producing the same deflate stream for the
same input at level 9, which holds for a given zlib release (the test suite
regenerates and compares them).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import stat
import sys
import tarfile
from pathlib import Path

EXAMPLES_SRC = Path(__file__).resolve().parent.parent / "examples" / "src"
# 2024-01-01T00:00:00Z: every entry gets this mtime.
FIXED_MTIME = 1_704_067_200


def _tarinfo(path: Path, arcname: str) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(arcname)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = str(path.readlink())
        info.mode = 0o777
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
    else:
        raise SystemExit(f"make_distfiles: {path}: not a file, directory or symlink")
    return info


def _entries(root: Path) -> list[Path]:
    """Every path under ``root`` (itself included), parents before children, sorted."""
    out = [root]
    for child in sorted(root.iterdir(), key=lambda p: p.name):
        if child.is_dir() and not child.is_symlink():
            out.extend(_entries(child))
        else:
            out.append(child)
    return out


def build_tarball(source_dir: Path) -> bytes:
    """The reproducible .tar.gz of one source directory (its name is the top level)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in _entries(source_dir):
            arcname = path.relative_to(source_dir.parent).as_posix()
            info = _tarinfo(path, arcname)
            if info.isreg():
                with path.open("rb") as data:
                    tf.addfile(info, data)
            else:
                tf.addfile(info)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def make_distfiles(outdir: Path, src: Path = EXAMPLES_SRC) -> dict[str, str]:
    """Write every tarball into ``outdir``; returns {file name: sha256 hex}."""
    outdir.mkdir(parents=True, exist_ok=True)
    sums: dict[str, str] = {}
    for source_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        name = f"{source_dir.name}.tar.gz"
        payload = build_tarball(source_dir)
        (outdir / name).write_bytes(payload)
        sums[name] = hashlib.sha256(payload).hexdigest()
    return sums


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the example sources as reproducible .tar.gz files into OUTDIR."
    )
    parser.add_argument("outdir", type=Path, help="directory to write the tarballs into")
    parser.add_argument(
        "--src",
        type=Path,
        default=EXAMPLES_SRC,
        help=f"directory holding <name>-<version>/ source trees (default: {EXAMPLES_SRC})",
    )
    args = parser.parse_args(argv)
    for name, digest in make_distfiles(args.outdir, args.src).items():
        sys.stdout.write(f"{digest}  {name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
