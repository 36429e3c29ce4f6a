"""The evaluation worker as a program of its own (pure: no sandbox needed)."""

from __future__ import annotations

import subprocess
import sys

from apkfarm.templates.evaluator import WORKER_SCRIPT

# Every worker pays for its imports when it starts, within a cold load; these
# are imported only by templates (or failures) that need them.
DEFERRED = ("pathlib", "traceback", "typing")


def test_worker_start_up_leaves_rarely_needed_modules_unimported() -> None:
    probe = (
        "import sys\n"
        f"path = {str(WORKER_SCRIPT)!r}\n"
        "exec(compile(open(path).read(), path, 'exec'), {'__name__': 'worker'})\n"
        f"print(' '.join(m for m in {DEFERRED!r} if m in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", probe],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.split() == []
