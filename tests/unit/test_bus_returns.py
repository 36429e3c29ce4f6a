"""How the RabbitMQ transport hands a message back: failures are rejected, the rest nacked.

RabbitMQ 4.3 counts only rejected returns towards a quorum queue's delivery
limit; the broker the contract suite runs on counts both, so the choice is
pinned here, on the function the transport settles with.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from apkfarm.bus.rabbit import give_back


class _Settled:
    """Records which AMQP method a return used."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    async def reject(self, requeue: bool = False) -> None:
        self.calls.append(("reject", requeue))

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self.calls.append(("nack", requeue))


@pytest.mark.parametrize(("failed", "method"), [(True, "reject"), (False, "nack")])
def test_a_failure_is_rejected_and_a_hand_back_nacked(failed: bool, method: str) -> None:
    message = _Settled()
    asyncio.run(give_back(cast(Any, message), failed=failed)())
    assert message.calls == [(method, True)]
