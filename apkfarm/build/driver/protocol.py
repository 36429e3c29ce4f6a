"""Events the driver sends the host on the control descriptor: one JSON object per line.

The build's own output goes to stdout/stderr; only the driver writes here,
after flushing stdout and stderr, and only when every command of the step
has exited. The host drains the output pipe, handles the event, and only
then acknowledges it with one byte on the acknowledgement descriptor, which
the driver waits for: so every line of output is logged in the phase that
produced it, in order, and the markers never travel in-band.

Events (``"event"`` key):

* ``phase`` with ``phase``, ``state`` (``start``/``end``), and at the end
  ``seconds`` and ``status`` (``ok`` or ``skipped``, with ``reason``);
* ``failed`` with ``phase`` and ``message`` — the build stops;
* ``result`` with ``packages``: ``[{"name", "auto"}]`` in packaging order.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

MAX_EVENT_BYTES = 1 << 20


class Channel:
    """The write end of the control descriptor and the read end of the acknowledgements."""

    def __init__(self, fd: int, ack_fd: int) -> None:
        self.fd = fd
        self.ack_fd = ack_fd
        # commands the build runs never see either
        os.set_inheritable(fd, False)
        os.set_inheritable(ack_fd, False)

    def send(self, event: str, **fields: Any) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        data = json.dumps({"event": event, **fields}, separators=(",", ":")).encode()
        if len(data) >= MAX_EVENT_BYTES:
            kept = {k: v for k, v in fields.items() if k in ("phase", "state")}
            data = json.dumps({"event": event, **kept, "message": "(event too large)"}).encode()
        view = memoryview(data + b"\n")
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        if not os.read(self.ack_fd, 1):
            raise SystemExit("build driver: the builder went away")
