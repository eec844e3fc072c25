"""The artifact-deletion handler never holds a run's finalizer forever.

kopf retries a handler that raises an ordinary exception with backoff, forever; a
kopf.PermanentError ends the handling and kopf releases the object (kopf docs, "Error
handling": permanent errors are not retried). A run stored under an older CRD may hold a spec
this version refuses (s3:// without storage.endpoint): its deletion must still complete.
"""

import logging
from types import SimpleNamespace

import kopf
import pytest
from mfpo_operator.kube.handlers import delete_artifacts


def test_a_spec_this_version_refuses_fails_permanently_naming_what_is_left() -> None:
    spec = {"model": {"uri": "s3://mdl/x"}, "data": {"uri": "s3://mdl/d"}, "storage": {"uri": "s3://mfpo/runs"}}
    with pytest.raises(kopf.PermanentError, match=r"artifacts under s3://mfpo/runs/old not deleted: .*endpoint"):
        delete_artifacts(spec=spec, name="old", namespace="ns", memo=SimpleNamespace(), logger=logging.getLogger())
