"""Reading events from NDJSON or a JSON array, line by line, with line-numbered errors.

Each line stands alone: a bad line is reported and skipped, and the good lines around it are
still published, exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from pydantic import ValidationError

from writeback.contract.events import Event, parse_event, validation_summary


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


def read_events(stream: IO[str], *, topic: str | None = None) -> Iterator[tuple[int, Event | Rejected]]:
    """Yield (line number, event or rejection). A JSON array is read item by item, with each
    item's line number where it starts."""
    text = stream.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _from_array(text, topic)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        yield number, _parse_line(line, number, topic)


def _parse_line(line: str, number: int, topic: str | None) -> Event | Rejected:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return Rejected(number, f"not valid JSON: {exc.msg} at column {exc.colno}")
    return _validate(data, number, topic)


def _validate(data: object, number: int, topic: str | None) -> Event | Rejected:
    if not isinstance(data, dict):
        return Rejected(number, "expected a JSON object")
    try:
        return parse_event(data, topic)
    except ValidationError as exc:
        return Rejected(number, validation_summary(exc).replace("\n", "; "))
    except ValueError as exc:
        return Rejected(number, str(exc))


def _from_array(text: str, topic: str | None) -> Iterator[tuple[int, Event | Rejected]]:
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    while True:
        position = _skip(text, position, " \t\r\n,")
        if position >= len(text):
            yield _line_of(text, position), Rejected(_line_of(text, position), "JSON array not closed")
            return
        if text[position] == "]":
            return
        number = _line_of(text, position)
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            yield number, Rejected(exc.lineno, f"not valid JSON: {exc.msg} at column {exc.colno}")
            return
        yield number, _validate(item, number, topic)


def _skip(text: str, position: int, chars: str) -> int:
    while position < len(text) and text[position] in chars:
        position += 1
    return position


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1
