"""The three-term MFPO objective (Jiang et al., arXiv 2410.15334, Eq. 5-8), torchtune style.

Inputs are summed answer log-probabilities, typed (`PreferenceLogps`); outputs are the per-term
losses and the implicit rewards, detached, for logging. Every term is written around
`F.logsigmoid`, which is stable for large margins where log(sigmoid(x)) would underflow.

Called by `mfpo_runtime.train.trainer` each step and by the tests and benchmark directly.
Pure torch: no models, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mfpo_runtime.train.config import ObjectiveConfig

# The terms by name (Eq. 5-7): the fields of `MFPOLossOutput`, the `<name>_weight` arguments
# of `MFPOLoss`, the keys of `ObjectiveConfig.weights` and of the API's objective.weights, and
# the `term` label of the training metrics. A new term is added here and in the API's weights.
TERMS = ("text", "image", "anchor")


@dataclass(frozen=True)
class PreferenceLogps:
    """Summed log-probabilities of the answer tokens, policy and reference, each of shape (B,).

    chosen:    log pi(y_w | t, m)   -- the preferred answer on the original image
    rejected:  log pi(y_l | t, m)   -- the dispreferred answer on the original image
    perturbed: log pi(y_w | t, m')  -- the preferred answer on the region-noised image
    The ref_* fields are the same quantities under the reference policy (no gradient).
    """

    chosen: torch.Tensor  # (B,)
    rejected: torch.Tensor  # (B,)
    perturbed: torch.Tensor  # (B,)
    ref_chosen: torch.Tensor  # (B,)
    ref_rejected: torch.Tensor  # (B,)
    ref_perturbed: torch.Tensor  # (B,)


@dataclass(frozen=True)
class Rewards:
    """Implicit rewards beta * log(pi / pi_ref), detached, each (B,)."""

    chosen: torch.Tensor  # (B,)
    rejected: torch.Tensor  # (B,)
    perturbed: torch.Tensor  # (B,)

    @property
    def text_margin(self) -> torch.Tensor:  # (B,)
        return self.chosen - self.rejected

    @property
    def image_margin(self) -> torch.Tensor:  # (B,)
        return self.chosen - self.perturbed


@dataclass(frozen=True)
class MFPOLossOutput:
    """The weighted objective (scalar, differentiable) and its parts for logging."""

    objective: torch.Tensor  # () -- mean over the batch of the weighted sum of the terms
    text: torch.Tensor  # (B,) L_text per sample
    image: torch.Tensor  # (B,) L_image per sample
    anchor: torch.Tensor  # (B,) L_anchor per sample
    rewards: Rewards

    @property
    def terms(self) -> dict[str, torch.Tensor]:
        """Each term's per-sample loss, (B,), by name in `TERMS` order."""
        return {name: getattr(self, name) for name in TERMS}


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Standard DPO sigmoid loss per sample, (B,): -log sigmoid(beta * (chosen - rejected log-ratios)).

    With (chosen, rejected) = (y_w|m, y_l|m) it is L_text; with (y_w|m, y_w|m') it is L_image:
    the paper's two preference terms are the same DPO form over different pairs (Eq. 5, 6).
    """
    logits = (chosen - ref_chosen) - (rejected - ref_rejected)  # (B,)
    return -F.logsigmoid(beta * logits)


def anchor_loss(chosen: torch.Tensor, ref_chosen: torch.Tensor, beta: float, eta: float) -> torch.Tensor:
    """L_anchor per sample, (B,): -log sigmoid(beta * log(pi/pi_ref)(y_w|m) - eta) (Eq. 7).

    Keeps the chosen answer's likelihood from falling while both margins grow.
    """
    return -F.logsigmoid(beta * (chosen - ref_chosen) - eta)


class MFPOLoss(nn.Module):
    """L = w_text * L_text + w_image * L_image + w_anchor * L_anchor, averaged over the batch (Eq. 8)."""

    def __init__(
        self,
        beta: float = 0.1,
        eta: float = 0.0,
        text_weight: float = 1.0,
        image_weight: float = 1.0,
        anchor_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"objective.beta must be positive, got {beta}")
        if min(text_weight, image_weight, anchor_weight) < 0:
            raise ValueError("objective.weights must be non-negative")
        self.beta = beta
        self.eta = eta
        self.weights = (text_weight, image_weight, anchor_weight)

    @classmethod
    def from_config(cls, objective: ObjectiveConfig) -> MFPOLoss:
        weights = {f"{name}_weight": objective.weights[name] for name in TERMS}
        return cls(objective.beta, objective.eta, **weights)

    def forward(self, logps: PreferenceLogps) -> MFPOLossOutput:
        beta = self.beta
        text = dpo_loss(logps.chosen, logps.rejected, logps.ref_chosen, logps.ref_rejected, beta)
        image = dpo_loss(logps.chosen, logps.perturbed, logps.ref_chosen, logps.ref_perturbed, beta)
        anchor = anchor_loss(logps.chosen, logps.ref_chosen, beta, self.eta)
        w_text, w_image, w_anchor = self.weights
        objective = (w_text * text + w_image * image + w_anchor * anchor).mean()
        rewards = Rewards(
            chosen=beta * (logps.chosen - logps.ref_chosen).detach(),
            rejected=beta * (logps.rejected - logps.ref_rejected).detach(),
            perturbed=beta * (logps.perturbed - logps.ref_perturbed).detach(),
        )
        return MFPOLossOutput(objective, text, image, anchor, rewards)
