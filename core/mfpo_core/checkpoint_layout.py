"""Where an align stage's training checkpoints live in storage, and which of them are whole.

Layout: `<stage_uri>/checkpoints/step-XXXXXXXX/` (XXXXXXXX = optimizer steps done), each
published atomically with its `_COMPLETE` marker written last (`storage.publish_dir`). A new
attempt, or a pod replacing an evicted or preempted one, resumes from `latest_step`.

Shared by the runtime, which writes and resumes them (`mfpo_runtime.train.checkpoints`), and
the operator, which tells on the run which step a disrupted stage resumes from. Storage only,
no torch.
"""

from __future__ import annotations

import re

from mfpo_core import storage

STEP_DIR = re.compile(r"^step-(\d{8})$")


def checkpoints_uri(stage_uri: str) -> str:
    return storage.join(stage_uri, "checkpoints")


def step_uri(stage_uri: str, step: int) -> str:
    return storage.join(checkpoints_uri(stage_uri), f"step-{step:08d}")


def completed_steps(stage_uri: str) -> list[int]:
    """Steps whose checkpoint is whole (marker present), ascending."""
    steps = set()
    for rel in storage.list_files(checkpoints_uri(stage_uri)):
        head, _, tail = rel.partition("/")
        match = STEP_DIR.match(head)
        if match and tail == storage.COMMIT_MARKER:
            steps.add(int(match.group(1)))
    return sorted(steps)


def latest_step(stage_uri: str) -> int | None:
    """The step a resumed attempt starts from; None when no checkpoint is whole."""
    steps = completed_steps(stage_uri)
    return steps[-1] if steps else None
