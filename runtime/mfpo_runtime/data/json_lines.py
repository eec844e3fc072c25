"""JSON Lines as the specification says (jsonlines.org), for every stage that reads or writes it.

- Lines are separated by "\\n" alone ("\\r\\n" works too: the "\\r" is JSON whitespace). Never
  `str.splitlines()`: it also splits on U+2028, U+2029, U+0085, \\x0b, \\x0c and \\x1c-\\x1e,
  which JSON (RFC 8259) allows unescaped inside a string, so one record would become two.
- Files are UTF-8 (RFC 8259 section 8.1); a byte order mark at the start is ignored, as the RFC
  allows. A line that is not UTF-8 or not JSON is reported by its number, alone.
- Writers emit ASCII (`ensure_ascii=True`): every string JSON can hold round-trips, including a
  lone surrogate such as "\\ud800", which has no UTF-8 encoding and so can only travel as an
  escape. Pydantic's own JSON reader and writer refuse lone surrogates, so records go through
  the standard library's json here.

Hand-written: splitting on one byte and json.loads per line is all there is to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

BOM = b"\xef\xbb\xbf"


class LineError(ValueError):
    """One line that is not UTF-8 or not JSON; `number` is 1-based."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(f"line {number} {reason}")
        self.number = number


def lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line) of every non-blank line, split on b"\\n" only."""
    data = data.removeprefix(BOM)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield number, raw


def parse(number: int, raw: bytes) -> Any:
    """One line's JSON value; LineError names the line when it is not UTF-8 or not JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LineError(number, f"is not UTF-8: {err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise LineError(number, f"is not JSON: {err}") from err


def read(data: bytes) -> Iterator[tuple[int, Any | LineError]]:
    """(line number, value) of every line, a LineError as the value of a line that is not
    UTF-8 or not JSON (one bad line spoils only itself)."""
    for number, raw in lines(data):
        try:
            yield number, parse(number, raw)
        except LineError as err:
            yield number, err


def count(data: bytes) -> int:
    """How many records (non-blank lines) the file holds, without parsing them."""
    return sum(1 for _ in lines(data))


def dumps(value: Any) -> str:
    """One line (without its "\\n"): ASCII JSON, so any string round-trips and the file is UTF-8."""
    return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
