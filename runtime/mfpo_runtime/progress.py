"""Progress bars of the runtime's long loops (generation, log-likelihood, datagen, score,
training): one place that decides whether a bar is drawn.

A bar is drawn only when asked for (the stage's --no-progress, MFPO_PROGRESS=0) and when stderr
is a terminal: tqdm's own rule for `disable=None`. Into a log file or `kubectl logs` a bar
would write a carriage return per refresh and nothing a reader can use. Callers update the bar
after each unit of work, so its count and rate are the work's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_bar(
    *, total: int | None, desc: str, unit: str, enabled: bool, initial: int = 0
) -> tqdm:
    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, disable=None if enabled else True
    )


def each_done(items: Iterable[T], bar: tqdm) -> Iterator[T]:
    """The items, one by one; the bar advances by one when the caller asks for the next item
    (its work on this one is done) and closes after the last."""
    with bar:
        for item in items:
            yield item
            bar.update(1)
