"""Reading Server-Sent Events in tests: the stream's bytes as messages, as an EventSource sees them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Message:
    event: str  # "message" when the stream names none; "" for a comment-only block (a heartbeat)
    id: str | None
    data: str
    comments: tuple[str, ...] = ()

    def json(self) -> Any:
        return json.loads(self.data)


def messages(lines: Iterable[str]) -> Iterator[Message]:
    """The messages of SSE lines (without their line ends), one per blank-line-ended block."""
    event, event_id, data, comments = "", None, [], []
    for line in lines:
        if line == "":
            if data or event_id is not None or comments:
                yield Message(event or ("message" if data else ""), event_id, "\n".join(data), tuple(comments))
            event, event_id, data, comments = "", None, [], []
            continue
        if line.startswith(":"):
            comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "id":
            event_id = value
        elif name == "data":
            data.append(value)


def messages_of(body: bytes) -> list[Message]:
    return list(messages(body.decode().split("\n")))
