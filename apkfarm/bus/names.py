"""Names on the bus: work queues, event routing keys and subscription patterns.

A name is one or more dot-separated words of ``[a-z0-9_-]`` (``fetch``,
``build.x86_64``, ``package.staged``). Names come from configuration and from
job data (an arch), so they are validated before they reach the broker: a bad
name is refused with a message naming it instead of creating a stray queue.
"""

from __future__ import annotations

import re

from apkfarm.errors import ApkfarmError

MAX_NAME_LENGTH = 200

# Suffixes the bus gives the companion queues of a work queue.
DEAD_SUFFIX = ".dead"
RETRY_SUFFIX = ".retry"

_WORD = r"[a-z0-9_-]+"
_NAME = re.compile(rf"{_WORD}(?:\.{_WORD})*")
_PATTERN_WORD = re.compile(r"[a-z0-9_-]+|\*|#")


class InvalidName(ApkfarmError):
    """A queue name, routing key or pattern that the bus refuses."""


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"invalid {what} {name!r}: use dot-separated words of [a-z0-9_-], "
            f"at most {MAX_NAME_LENGTH} characters"
        )
    return name


def queue_name(name: str) -> str:
    """Validate the name of a work queue or of a durable subscription queue."""
    _check_name(name, "queue name")
    if name.endswith((DEAD_SUFFIX, RETRY_SUFFIX)):
        raise InvalidName(
            f"invalid queue name {name!r}: the suffixes {DEAD_SUFFIX!r} and "
            f"{RETRY_SUFFIX!r} are reserved for the bus's own companion queues"
        )
    return name


def any_queue_name(name: str) -> str:
    """Validate the name of any queue the bus declares, companion queues included."""
    return _check_name(name, "queue name")


def routing_key(key: str) -> str:
    """Validate the routing key of an event (no wildcards)."""
    return _check_name(key, "event routing key")


def pattern(text: str) -> str:
    """Validate a subscription pattern: words, ``*`` (one word) or ``#`` (any words)."""
    words = text.split(".") if isinstance(text, str) else []
    if (
        not words
        or len(text) > MAX_NAME_LENGTH
        or not all(_PATTERN_WORD.fullmatch(word) for word in words)
    ):
        raise InvalidName(
            f"invalid event pattern {text!r}: use dot-separated words of [a-z0-9_-], "
            "'*' for exactly one word or '#' for any number of words"
        )
    return text


def dead_letter_queue(queue: str) -> str:
    return queue + DEAD_SUFFIX


def retry_queue(queue: str) -> str:
    return queue + RETRY_SUFFIX


def topic_matches(pattern_text: str, key: str) -> bool:
    """AMQP topic matching: ``*`` matches one word, ``#`` zero or more words."""
    return _match(pattern_text.split("."), key.split("."))


def _match(pat: list[str], words: list[str]) -> bool:
    if not pat:
        return not words
    head, rest = pat[0], pat[1:]
    if head == "#":
        # '#' absorbs zero words, or one word and stays in place.
        return _match(rest, words) or (bool(words) and _match(pat, words[1:]))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


# --- the farm's own queues and event keys (bus.proto names the message of each) ---

FETCH_QUEUE = "fetch"

FETCH_DONE = "fetch.done"
FETCH_FAILED = "fetch.failed"
BUILD_STARTED = "build.started"
BUILD_PHASE = "build.phase"
BUILD_SUCCEEDED = "build.succeeded"
BUILD_FAILED = "build.failed"
PACKAGE_STAGED = "package.staged"
PACKAGE_REJECTED = "package.rejected"
INDEX_PUBLISHED = "index.published"
SCHEDULER_BUILD = "scheduler.build"


def build_queue(arch: str) -> str:
    """The work queue of one architecture's builders: ``build.<arch>``."""
    if not isinstance(arch, str) or not re.fullmatch(r"[a-z0-9_]+", arch):
        raise InvalidName(f"invalid arch {arch!r} for a build queue name")
    return queue_name(f"build.{arch}")
