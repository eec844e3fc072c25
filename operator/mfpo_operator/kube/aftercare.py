"""What a reconcile leaves for later: its events and the deletion of Jobs it has recorded.

Neither changes what the next reconcile plans (an event is a courtesy; a recorded attempt's
Job is only garbage), so neither need hold the run's lock, the reconcile's latency, or one of
kopf's worker threads while its API request waits. A few daemon threads do them instead; a
run's tasks always go to the same thread, so they run in the order they were given. A task
given again while the same one waits or runs (`once`: the next reconcile finds the recorded
Job still there) is not queued twice. Tasks left at exit are lost: the events are, the deletions are
done again by the next operator's reconciles (the recorded Jobs are still there).
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger("mfpo.operator")

_STOP = object()


class Aftercare:
    """`threads` daemon threads, each with its own queue."""

    def __init__(self, threads: int = 2) -> None:
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(threads)]
        self._waiting: set[Hashable] = set()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"mfpo-aftercare-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def threads(self) -> int:
        return len(self._threads)

    def submit(self, run: tuple[str, str], task: Callable[..., Any], *args: Any,
               once: Hashable | None = None) -> None:  # fmt: skip
        """Run task(*args) on the run's thread; not while a task of the same `once` waits or runs."""
        if once is not None:
            with self._lock:
                if once in self._waiting:
                    return
                self._waiting.add(once)
        self._queues[self.thread_of(run)].put((task, args, once))

    def thread_of(self, run: tuple[str, str]) -> int:
        """The index of the run's thread: crc32, not hash(), the same in every process."""
        return zlib.crc32("/".join(run).encode()) % len(self._queues)

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until every task given so far has run (tests); False on timeout."""
        done = [threading.Event() for _ in self._queues]
        for q, event in zip(self._queues, done):
            q.put((event.set, (), None))
        return all(event.wait(timeout) for event in done)

    def stop(self) -> None:
        for q in self._queues:
            q.put(_STOP)

    def _work(self, tasks: queue.SimpleQueue) -> None:
        while (item := tasks.get()) is not _STOP:
            task, args, once = item
            try:
                task(*args)
            except Exception:
                log.exception("aftercare task %s failed", getattr(task, "__name__", task))
            finally:
                if once is not None:  # given again while it ran: the next reconcile gives it again
                    with self._lock:
                        self._waiting.discard(once)
