"""The farm's message bus: work queues, events and dead letters (see ``api`` for semantics)."""

from apkfarm.bus.api import (
    Bus,
    BusError,
    DeadLetter,
    Delivery,
    Handler,
    RejectMessage,
    RetryLater,
    Subscription,
    UnknownQueue,
)
from apkfarm.bus.memory import MemoryBus
from apkfarm.bus.names import InvalidName

__all__ = [
    "Bus",
    "BusError",
    "DeadLetter",
    "Delivery",
    "Handler",
    "InvalidName",
    "MemoryBus",
    "RejectMessage",
    "RetryLater",
    "Subscription",
    "UnknownQueue",
]
