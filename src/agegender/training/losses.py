"""The loss terms of a training step, each a named function of outputs and targets.

Labels a sample lacks (NaN) are masked out of that term, never faked; a term with nothing to
learn from returns a zero that stays attached to the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agegender.models.age_distribution import dldl_loss, interval_nll

AGE_SCALE = 10.0
"""Age losses are computed in decades so MAE/MSE and cross-entropy have comparable magnitudes."""


def gender_loss(gender_logit: torch.Tensor, gender_true: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the samples with a gender label."""
    known = ~torch.isnan(gender_true)
    if not known.any():
        return gender_logit.sum() * 0.0
    return F.binary_cross_entropy_with_logits(gender_logit[known], gender_true[known])


def age_loss(age: torch.Tensor, age_logits: torch.Tensor | None, age_true: torch.Tensor,
             kind: str, dldl_sigma: float) -> torch.Tensor:
    """MAE or MSE on the predicted age in decades, or (`dldl`) the label-distribution loss on
    `age_logits` plus an L1 term on their expectation; samples with an age label only."""
    known = ~torch.isnan(age_true)
    if not known.any():
        return age.sum() * 0.0
    if kind == "dldl":
        if age_logits is None:
            raise ValueError("the 'dldl' age loss needs a model that outputs age logits")
        return dldl_loss(age_logits[known], age_true[known], dldl_sigma, l1_weight=1 / AGE_SCALE)
    loss = F.l1_loss if kind == "mae" else F.mse_loss
    return loss(age[known] / AGE_SCALE, age_true[known] / AGE_SCALE)


def age_range_loss(age: torch.Tensor, age_logits: torch.Tensor | None, low: torch.Tensor,
                   high: torch.Tensor, kind: str) -> torch.Tensor:
    """For ages known only as a range of whole years (NaN: none): with `dldl`, the probability
    mass the age distribution puts on the range (interval likelihood); otherwise the distance
    in decades from the predicted age to the range (0 inside it), as an L1 or squared term."""
    known = ~(torch.isnan(low) | torch.isnan(high))
    if not known.any():
        return age.sum() * 0.0
    if kind == "dldl":
        if age_logits is None:
            raise ValueError("the 'dldl' age loss needs a model that outputs age logits")
        return interval_nll(age_logits[known], low[known], high[known])
    # a whole-year range [20, 29] holds ages up to just under 30
    outside = (low[known] - age[known]).clamp(min=0) + (age[known] - high[known] - 1).clamp(min=0)
    outside = outside / AGE_SCALE
    return outside.mean() if kind == "mae" else (outside ** 2).mean()


def distillation_loss(gender_logit: torch.Tensor, age_logits: torch.Tensor,
                      teacher_prob_female: torch.Tensor, teacher_age_distribution: torch.Tensor
                      ) -> torch.Tensor:
    """Cross-entropy to the teachers' soft targets: gender probability and age distribution."""
    gender = F.binary_cross_entropy_with_logits(gender_logit, teacher_prob_female)
    age = -(teacher_age_distribution * F.log_softmax(age_logits, dim=-1)).sum(-1).mean()
    return gender + age


def soft_gender_loss(gender_logit: torch.Tensor, prob_female: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to precomputed teacher probabilities; rows without one (NaN) are masked."""
    return gender_loss(gender_logit, prob_female)


def soft_age_loss(age_logits: torch.Tensor, distribution: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to precomputed teacher age distributions; rows without one (NaN) are
    masked, and a batch without any gives 0."""
    known = torch.isfinite(distribution).all(-1)
    if not known.any():
        return age_logits.sum() * 0.0
    log_probs = F.log_softmax(age_logits[known].float(), dim=-1)
    return -(distribution[known] * log_probs).sum(-1).mean()


def embedding_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine distance to a teacher's face embedding; rows without one (NaN) are masked."""
    known = ~torch.isnan(target).any(-1)
    if not known.any():
        return predicted.sum() * 0.0
    return (1 - F.cosine_similarity(predicted[known], target[known], dim=-1)).mean()


def consistency_loss(gender_logit: torch.Tensor, age_logits: torch.Tensor,
                     other_gender_logit: torch.Tensor, other_age_logits: torch.Tensor
                     ) -> torch.Tensor:
    """Disagreement between two views' predictions: squared difference of the gender
    probabilities plus the symmetric KL divergence of the age distributions."""
    gender = F.mse_loss(torch.sigmoid(gender_logit), torch.sigmoid(other_gender_logit))
    log_p, log_q = F.log_softmax(age_logits, -1), F.log_softmax(other_age_logits, -1)
    age = 0.5 * (F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
                 + F.kl_div(log_q, log_p, log_target=True, reduction="batchmean"))
    return gender + age


def age_errors(age: torch.Tensor, age_true: torch.Tensor) -> torch.Tensor:
    """Absolute age errors of the samples with an age label (for the epoch's MAE)."""
    known = ~torch.isnan(age_true)
    return (age[known] - age_true[known]).detach().abs()


def gender_hits(gender_logit: torch.Tensor, gender_true: torch.Tensor) -> torch.Tensor:
    """1 where the gender of a labelled sample is right, else 0 (for the epoch's accuracy)."""
    known = ~torch.isnan(gender_true)
    return ((gender_logit[known] > 0).float() == gender_true[known]).detach()
