"""How a protobuf message travels: its serialised bytes plus a header naming its type.

The full protobuf type name (``apkfarm.v1.BuildJob``) goes into the
``x-apkfarm-type`` header so that a consumer can refuse a message of another
type before parsing it; a body that does not parse is refused the same way.
Both refusals are *poison*: the bus dead-letters the message with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError, Message

TYPE_HEADER = "x-apkfarm-type"
CONTENT_TYPE = "application/x-protobuf"


class PoisonMessage(Exception):
    """A message that can never be handled: its reason goes to the dead-letter queue."""


def type_name(message_or_type: Message | type[Message]) -> str:
    return message_or_type.DESCRIPTOR.full_name


def encode(message: Message) -> tuple[bytes, str]:
    """The wire body and the type name of a message."""
    return message.SerializeToString(), type_name(message)


def header_text(headers: Mapping[str, object], name: str) -> str | None:
    """A header value as text (brokers may hand back bytes for long strings)."""
    value = headers.get(name)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return None


def decode[M: Message](
    body: bytes, headers: Mapping[str, object], expected: type[M], *, max_body_bytes: int
) -> M:
    """Parse ``body`` as ``expected`` or raise ``PoisonMessage`` saying why not."""
    want = type_name(expected)
    got = header_text(headers, TYPE_HEADER)
    if got is None:
        raise PoisonMessage(f"message has no {TYPE_HEADER} header; expected {want}")
    if got != want:
        raise PoisonMessage(f"message type is {got}, this queue's consumer expects {want}")
    if len(body) > max_body_bytes:
        raise PoisonMessage(
            f"{want} body is {len(body)} bytes, more than the limit of {max_body_bytes}"
        )
    message = expected()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise PoisonMessage(f"body does not parse as {want}: {exc}") from exc
    return message
