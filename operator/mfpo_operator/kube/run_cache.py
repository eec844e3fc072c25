"""The runs as this operator last read or wrote them, so that most reconciles need no get.

A run changes in two ways: by this operator's own status writes (one replica; the patch
answers with the whole object, which is kept) and by everybody else (a user's spec edit or
retry annotation, kopf's finalizer and annotations, a deletion), each of which reaches the
operator as a watch event of the run. So a reconcile may plan from the kept body until an
event shows the run as something else; then the body is dropped and the next reconcile gets
the run again. The echo of the operator's own write shows the body kept: it drops nothing.

An event is compared by content, not by resourceVersion (opaque to clients, and kmock keeps
none). The echo of an earlier own write, arriving after a later one (watch events lag the
writes' answers), shows nothing new either: the last few bodies kept are remembered by a
digest of their content. Any other event drops the body: at worst one get more, never a
stale plan. A read or write that was in flight while an event dropped the body is not kept
(`epoch`): its answer may predate the change the event reported.

Planning from a body a watch event has not yet dropped is planning a moment earlier, which a
level-triggered controller may always do: the event then triggers a reconcile of its own.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

Key = tuple[str, str]  # (namespace, run)
# What a watch event may differ in from the kept body without the run having changed.
_NOISE = ("resourceVersion", "managedFields")
# Digests kept per run: a watch event lags the writes' answers by at most a few writes.
_REMEMBERED = 4


def _digest(body: Mapping[str, Any]) -> bytes:
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _NOISE}
    content = {"metadata": meta, "spec": body.get("spec"), "status": body.get("status") or {}}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class RunCache:
    """Bodies by (namespace, run); an epoch per run name seen since the operator started (an
    integer each: a deleted run's stays, so that a read in flight cannot keep it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._kept: dict[Key, deque[bytes]] = {}  # digests of the bodies kept, newest last
        self._epochs: dict[Key, int] = {}

    def epoch(self, key: Key) -> int:
        """Take before a read or write of the run; give to `keep` with its answer."""
        with self._lock:
            return self._epochs.get(key, 0)

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            return self._bodies.get(key)

    def keep(self, key: Key, body: dict[str, Any], epoch: int) -> None:
        """The run as a get or the operator's own write answered, unless an event came since."""
        digest = _digest(body)
        with self._lock:
            if self._epochs.get(key, 0) == epoch:
                self._bodies[key] = body
                self._kept.setdefault(key, deque(maxlen=_REMEMBERED)).append(digest)

    def seen(self, key: Key, body: Mapping[str, Any]) -> None:
        """A watch event of the run: drop the kept body unless the event shows it, or one kept
        before it."""
        digest = _digest(body)
        with self._lock:
            if key in self._bodies and digest in self._kept.get(key, ()):
                return
            self._bodies.pop(key, None)
            self._kept.pop(key, None)
            self._epochs[key] = self._epochs.get(key, 0) + 1

    def forget(self, key: Key) -> None:
        with self._lock:
            self._bodies.pop(key, None)
            self._kept.pop(key, None)
            self._epochs[key] = self._epochs.get(key, 0) + 1
