"""What a run's stages recorded in its storage, read by the operator with the run's credentials.

The termination summary on the Pod status is the operator's usual source; storage is read
only where the summary cannot tell:
- a stage Job gone before the operator saw it finish (its TTL ran out, or it was deleted):
  the stage's result document says whether it succeeded (`stage_result`);
- a summary the stage had to shorten to Kubernetes' 4096 bytes (`truncated`): the result
  document has every metric (`stage_result`);
- which step a disrupted align stage resumes from: its newest whole checkpoint (`resume_step`).

Called by `kube.reconcile`, inside one reconcile of one run. Credentials come from the run's
Secret (read once, on first use), with the endpoint settings the stage pods get
(`storage.storage_env`), never the operator's own; `storage.using_env` keeps concurrent
reconciles of runs with different Secrets apart. Anything that cannot be read (no Secret,
the operator may not read it, storage unreachable, a file:// path the operator's pod does
not share) is logged and answered None: the caller then acts as it would without storage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mfpo_core import storage
from mfpo_core.api import MFPORunSpec
from mfpo_core.checkpoint_layout import latest_step
from mfpo_core.contract import (
    StageResult,
    TerminationSummary,
    merge_shard_summaries,
    result_uri,
    stage_uri,
)
from mfpo_core.stages import kind_of
from pydantic import ValidationError

from mfpo_operator.plan import run_uri

log = logging.getLogger("mfpo.operator")

# Reads the run's storage Secret: its decoded data, or None when absent or not readable.
ReadCredentials = Callable[[], dict[str, str] | None]


class RunStorage:
    """One run's storage, as its stage pods see it."""

    def __init__(self, spec: MFPORunSpec, run: str, credentials: ReadCredentials) -> None:
        self.spec, self.run = spec, run
        self.run_uri = run_uri(spec, run)
        self._credentials = credentials
        self._env: dict[str, str] | None = None

    def _environment(self) -> dict[str, str]:
        if self._env is None:
            secret = self._credentials() if self.spec.storage.secret_name else None
            self._env = storage.storage_env(self.spec.storage, secret)
        return self._env

    def stage_result(self, stage: str) -> TerminationSummary | None:
        """The summary of the stage's result document(s) (every shard's, merged), or None when
        the stage has not recorded one (or it cannot be read)."""
        kind = kind_of(stage)
        shards = kind.shards(self.spec) if kind.shardable else 1
        uris = [
            result_uri(self.run_uri, stage, (index, shards) if kind.shardable else None)
            for index in range(shards)
        ]
        summaries = []
        for uri in uris:
            doc = self._read(uri)
            if doc is None:
                return None
            summaries.append(doc.summary())
        return merge_shard_summaries(summaries)

    def _read(self, uri: str) -> StageResult | None:
        try:
            with storage.using_env(self._environment()):
                if not storage.exists(uri):
                    return None
                return StageResult.model_validate(storage.read_json(uri))
        except (storage.StorageError, OSError, ValueError, ValidationError) as err:
            log.warning("%s: result document %s not readable: %s", self.run, uri, err)
            return None

    def resume_step(self, stage: str) -> int | None:
        """The step of the stage's newest whole checkpoint (where a new pod resumes), or None
        (no checkpoint yet, not a training stage, or storage not readable)."""
        if kind_of(stage).name != "align":  # only training stages checkpoint mid-stage
            return None
        try:
            with storage.using_env(self._environment()):
                return latest_step(stage_uri(self.run_uri, stage))
        except (storage.StorageError, OSError, ValueError) as err:
            log.warning("%s: checkpoints of %s not readable: %s", self.run, stage, err)
            return None
