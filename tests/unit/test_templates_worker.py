"""Evaluation workers: start-up, how many each category gets, the parent's framing (pure)."""

from __future__ import annotations

import gc
import io
import json
import subprocess
import sys
from typing import Any

import pytest
from test_templates_helpers import template_source

from apkfarm.profiles import resolve_context
from apkfarm.templates import worker
from apkfarm.templates.evaluator import WORKER_SCRIPT, _frame, allot_workers
from apkfarm.templates.fields import worker_spec

# Every worker pays for its imports when it starts, within a cold load; these
# are imported only by templates (or failures) that need them.
DEFERRED = ("json", "re", "pathlib", "traceback", "typing")


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


@pytest.mark.parametrize(
    ("counts", "jobs", "expected"),
    [
        ({"main": 2508, "user": 792}, 2, {"main": 2, "user": 1}),  # cports' shape, 2 CPUs
        ({"main": 2508, "user": 792}, 4, {"main": 3, "user": 1}),
        ({"main": 50, "user": 50}, 2, {"main": 1, "user": 1}),
        ({"main": 3300}, 2, {"main": 2}),
        ({"main": 1}, 8, {"main": 1}),  # never more workers than templates
        ({"main": 10, "user": 0, "contrib": 1}, 1, {"main": 1, "contrib": 1}),
    ],
)
def test_workers_are_shared_in_proportion_with_one_per_category_at_least(
    counts: dict[str, int], jobs: int, expected: dict[str, int]
) -> None:
    assert allot_workers(counts, jobs) == expected


def test_what_the_parent_frames_the_worker_reads_back() -> None:
    messages: list[dict[str, Any]] = [
        {"op": "init", "spec": {"fields": [{"name": "pkgname", "default": None}]}},
        {"op": "batch", "items": [{"id": 1, "source": 'pkgname = "é"\n' * 300}]},
        {"op": "exit"},
    ]
    stream = io.BytesIO(b"".join(_frame(m) for m in messages))
    assert list(worker._messages(stream)) == messages


def test_a_worker_refuses_a_frame_that_is_not_a_message() -> None:
    stream = io.BytesIO(_frame({"op": "exit"})[:4] + b"\x00" * 3)  # truncated
    with pytest.raises((EOFError, ValueError)):
        list(worker._messages(stream))


def test_evaluated_templates_leave_no_garbage_for_the_cyclic_collector() -> None:
    spec = worker.Spec(json.loads(json.dumps(worker_spec())))
    context = worker.Context(resolve_context("x86_64", host="x86_64").to_json())
    source = template_source(
        "foo",
        "def post_install(self):\n    pass\n\n"
        "@subpackage('foo-devel')\ndef _(self):\n    return self.default_devel()\n",
    )
    items = [
        {"id": 1, "category": "main", "name": "foo", "source": source, "repositories": ["main"]},
        {"id": 2, "category": "main", "name": "bad", "source": "x = [\n", "repositories": []},
    ]
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        results = [worker.evaluate(spec, item, context) for item in items]
        found = gc.collect()
    finally:
        if enabled:
            gc.enable()
    assert results[0]["ok"] and results[0]["subpackages"][0]["name"] == "foo-devel"
    assert not results[1]["ok"]
    assert found == 0  # everything the templates made was freed as evaluation ended


@pytest.mark.parametrize(
    "value",
    [
        {"ok": True, "fields": {"pkgname": "foo", "pkgrel": 0, "depends": ["a", "b>=1"]}},
        {"s": 'caf\xe9 \u2603 \ud800 "quoted" \\ \n\t\x00', "n": [1.5, -0.0, 1e300, 10**30]},
        {"nan": float("nan"), "inf": float("-inf"), "keys": {1: "int", None: "none", 2.5: "f"}},
        [[[[]]], {}, "", None, False],
    ],
)
def test_the_worker_encodes_as_the_json_package_does(value: object) -> None:
    expected = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode(value)
    assert worker._dumps(value) == expected


def test_the_worker_encoder_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        worker._dumps({"x": object()})
