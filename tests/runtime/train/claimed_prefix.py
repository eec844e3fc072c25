"""The run prefix the align tests start from, as the run's earlier stages leave it."""

from mfpo_core import ownership
from mfpo_core.contract import StageConfig


def claimed(config: StageConfig) -> StageConfig:
    """`config`, its run's prefix claimed for it (mfpo_core.ownership), as the run's first stage
    did before the score/dataset that run_dir holds was written: an align stage trusts only its
    own run's artifacts."""
    ownership.claim(config.run_uri, config.owner, [])
    return config
