"""MFPO loss terms against values worked out by hand on three-element tensors."""

import math

import pytest
import torch
from mfpo_runtime.train.losses import MFPOLoss, PreferenceLogps, anchor_loss, dpo_loss
from torch.testing import assert_close


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x), the hand formula for each expected value."""
    return math.log1p(math.exp(x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# Policy/reference log-probs chosen so the log-ratios are small integers:
#   chosen    log-ratio  pi - ref = [0, 1, -2]
#   rejected  log-ratio           = [0, 2,  0]
#   perturbed log-ratio           = [1, -1, -2]
LOGPS = PreferenceLogps(
    chosen=t(-5.0, -4.0, -8.0),
    rejected=t(-6.0, -5.0, -7.0),
    perturbed=t(-4.0, -6.0, -9.0),
    ref_chosen=t(-5.0, -5.0, -6.0),
    ref_rejected=t(-6.0, -7.0, -7.0),
    ref_perturbed=t(-5.0, -5.0, -7.0),
)


def test_text_term_by_hand():
    # beta = 0.5; text logits = chosen ratio - rejected ratio = [0, -1, -2]
    # L_text = -log sigmoid(0.5 * z) = log(1 + exp(-0.5 z))
    expected = t(softplus(0.0), softplus(0.5), softplus(1.0))
    got = dpo_loss(LOGPS.chosen, LOGPS.rejected, LOGPS.ref_chosen, LOGPS.ref_rejected, beta=0.5)
    assert_close(got, expected)


def test_image_term_by_hand():
    # image logits = chosen ratio - perturbed ratio = [0-1, 1-(-1), -2-(-2)] = [-1, 2, 0]
    expected = t(softplus(0.5), softplus(-1.0), softplus(0.0))
    got = dpo_loss(LOGPS.chosen, LOGPS.perturbed, LOGPS.ref_chosen, LOGPS.ref_perturbed, beta=0.5)
    assert_close(got, expected)


def test_anchor_term_by_hand():
    # beta * chosen ratio - eta = 0.5 * [0, 1, -2] - 0.25 = [-0.25, 0.25, -1.25]
    expected = t(softplus(0.25), softplus(-0.25), softplus(1.25))
    got = anchor_loss(LOGPS.chosen, LOGPS.ref_chosen, beta=0.5, eta=0.25)
    assert_close(got, expected)


def test_weighted_objective_and_detached_rewards():
    loss = MFPOLoss(beta=0.5, eta=0.25, text_weight=1.0, image_weight=2.0, anchor_weight=0.5)
    out = loss(LOGPS)
    text = [softplus(0.0), softplus(0.5), softplus(1.0)]
    image = [softplus(0.5), softplus(-1.0), softplus(0.0)]
    anchor = [softplus(0.25), softplus(-0.25), softplus(1.25)]
    per_sample = [a + 2.0 * b + 0.5 * c for a, b, c in zip(text, image, anchor)]
    assert_close(out.objective, torch.tensor(sum(per_sample) / 3, dtype=torch.float64))
    assert_close(out.rewards.chosen, t(0.0, 0.5, -1.0))
    assert_close(out.rewards.rejected, t(0.0, 1.0, 0.0))
    assert_close(out.rewards.perturbed, t(0.5, -0.5, -1.0))
    assert_close(out.rewards.text_margin, t(0.0, -0.5, -1.0))
    assert_close(out.rewards.image_margin, t(-0.5, 1.0, 0.0))


def test_text_term_is_the_standard_dpo_loss():
    """L_text is DPO (Rafailov et al., Eq. 7) on the same log-probs: -log sigmoid(beta * margin)."""
    g = torch.Generator().manual_seed(0)
    pi_w, pi_l, ref_w, ref_l = (-20 * torch.rand(8, generator=g, dtype=torch.float64) for _ in range(4))
    beta = 0.1
    reference = -torch.log(torch.sigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))))
    out = MFPOLoss(beta=beta, image_weight=0.0, anchor_weight=0.0)(
        PreferenceLogps(pi_w, pi_l, pi_w, ref_w, ref_l, ref_w)
    )
    assert_close(out.text, reference)
    assert_close(out.objective, reference.mean())


def test_stable_for_huge_margins():
    big = t(1000.0, -1000.0, 0.0)
    zero = torch.zeros(3, dtype=torch.float64)
    got = dpo_loss(big, zero, zero, zero, beta=1.0)
    assert torch.isfinite(got).all()
    assert_close(got, t(0.0, 1000.0, math.log(2.0)))


def test_gradients_flow_only_through_the_policy():
    chosen = t(-5.0, -4.0, -8.0).requires_grad_()
    logps = PreferenceLogps(chosen, LOGPS.rejected, LOGPS.perturbed, *(
        x for x in (LOGPS.ref_chosen, LOGPS.ref_rejected, LOGPS.ref_perturbed)))
    out = MFPOLoss(beta=0.5)(logps)
    out.objective.backward()
    # d/d chosen of mean(L): chosen raises all three margins, so every gradient is negative.
    assert (chosen.grad < 0).all()
    assert not out.rewards.chosen.requires_grad


@pytest.mark.parametrize("field,value", [("beta", 0.0), ("text_weight", -1.0)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match="objective"):
        MFPOLoss(**{field: value})
