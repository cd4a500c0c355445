"""Encoded messages, decoded and rendered as JSON (bytes as hex), match schemas/wire.schema.json."""

from __future__ import annotations

from typing import Any

import jsonschema
import msgpack
import pytest

from snapsync.protocol.messages import (
    BucketQuery,
    Chunk,
    Command,
    CommandResult,
    Differences,
    Message,
    Ping,
    Pong,
    Refusal,
    Summary,
    UploadReply,
    Version,
)
from snapsync.protocol.reconcile import BucketSet
from snapsync.resources import schema

D = b"\x01" * 16
MESSAGES: list[Message] = [
    Ping(),
    Ping(
        have=(D,), latest=b"\x02" * 16, cursor=4, results=(CommandResult(3, True, "ok"),), waiting=9
    ),
    Chunk(b"u" * 8, b"", D, 10, 0, b"abc"),
    Chunk(b"u" * 8, D, b"\x02" * 16, 10, 3, b"def"),
    Chunk(b"u" * 8, D, b"\x02" * 16, 10, 3, b"def", cursor=7),
    Pong(),
    Pong(
        holds=(Version(2, D),),
        current=Version(3, b"\x02" * 16),
        commands=(Command(1, "collect-now"),),
    ),
    UploadReply("partial", offset=4),
    UploadReply("ack", version=Version(5, D)),
    UploadReply("ack", version=Version(5, D), current=Version(6, b"\x02" * 16), queued=True),
    UploadReply("unknown-base", holds=(Version(5, D),)),
    UploadReply("rejected", reason="checksum"),
    Refusal("authentication failed"),
    Summary(D, {"Pod": (3, b"\x03" * 8), "Deployment.apps": (1, b"\x04" * 8)}),
    Differences(Version(2, D), {"Pod": [("shop", "web-0", b"\x05" * 8)]}),
    Differences(Version(2, D), {"Node": [("", "n1", b"\x05" * 4)]}, {"Pod": b"\x06" * 4 * 3}),
    Summary(D, {"Pod": (3, b"\x03" * 8)}, limit=2**20),
    BucketQuery(Version(2, D), {"Pod": BucketSet.of(12, {0, 11})}),
    BucketQuery(Version(2, D), {"Pod": BucketSet.of(3, ())}, limit=2**20),
    Differences(None, {}),
    Refusal("busy", retry_after=30),
]


def as_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_match_the_schema(message: Message) -> None:
    doc = msgpack.unpackb(message.encode(), raw=False)
    jsonschema.validate(as_json(doc), schema("wire"))
