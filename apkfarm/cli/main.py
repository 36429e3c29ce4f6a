"""Entry point of the ``apkfarm`` command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``run`` as the
parser's default ``func``. Heavy imports stay inside ``run`` so that
``apkfarm --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from apkfarm import __version__
from apkfarm.errors import ApkfarmError

# Order is the order shown in --help.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "build",
    "templates",
    "plan",
    "keygen",
    "verify",
    "index",
    "certs",
    "submit",
    "status",
    "explain",
    "logs",
    "cancel",
    "retry",
    "keys",
    "audit",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apkfarm",
        description="Build cports-style templates into signed apk repositories.",
    )
    parser.add_argument("--version", action="version", version=f"apkfarm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"apkfarm.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except ApkfarmError as error:
        print(f"apkfarm: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("apkfarm: interrupted", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
