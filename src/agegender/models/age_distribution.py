"""Age as a distribution over one-year bins: DLDL losses and read-outs of that distribution.

A head outputs `NUM_AGE_BINS` logits, one per age 0, 1, …, 99 and a last bin for 100+. Training
matches the softmax to a Gaussian around the true age (DLDL, Gao et al. 2017/2018), optionally with
an L1 on the expectation (DLDL-v2) and the mean-variance terms of Pan et al. 2018. Predicting
reads off the expectation and an interval from the predicted CDF, so every age comes with an
uncertainty. Bin k stands for age k and spans [k − ½, k + ½] when the CDF is interpolated, so a
one-hot prediction's interval is centred on its expectation.

`expected_age` and `age_interval` use only softmax, cumsum, comparisons, gather and arithmetic, so
the ONNX (dynamo, opset 18) export of a model that ends in them runs in onnxruntime.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_AGE = 0
MAX_AGE = 100  # the last bin holds every age ≥ 100
NUM_AGE_BINS = MAX_AGE - MIN_AGE + 1


def _bins(like: torch.Tensor) -> torch.Tensor:
    return torch.arange(MIN_AGE, MAX_AGE + 1, dtype=like.dtype, device=like.device)


def _check_logits(logits: torch.Tensor) -> None:
    if logits.shape[-1] != NUM_AGE_BINS:
        raise ValueError(f"expected {NUM_AGE_BINS} age logits in the last dimension, "
                         f"got shape {tuple(logits.shape)}")


def _gaussian_log_distribution(age: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """log of `gaussian_label_distribution`, computed without ever taking log(0)."""
    sigma = torch.as_tensor(sigma, dtype=age.dtype, device=age.device)
    if (sigma <= 0).any():
        raise ValueError("sigma must be positive")
    age = age.clamp(MIN_AGE, MAX_AGE)
    z = (_bins(age) - age.unsqueeze(-1)) / sigma.unsqueeze(-1)
    return torch.log_softmax(-0.5 * z * z, dim=-1)


def gaussian_label_distribution(age: torch.Tensor, sigma: float | torch.Tensor = 2.0
                                ) -> torch.Tensor:
    """DLDL target: a Gaussian around each age (clamped to 0..100), discretised on the bins.

    `sigma` (years) is a float or a tensor broadcastable to `age`. Returns `age.shape + (101,)`,
    each row summing to 1.
    """
    return _gaussian_log_distribution(age, sigma).exp()


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over labelled samples; 0 (still attached to the graph) when none is labelled."""
    return torch.where(valid, values, 0).sum() / valid.sum().clamp(min=1)


def _moments(log_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    probs = log_probs.exp()
    bins = _bins(log_probs)
    mean = (probs * bins).sum(-1)
    variance = (probs * (bins - mean.unsqueeze(-1)) ** 2).sum(-1)
    return mean, variance


def _labels(age: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid mask (finite ages) and ages safe to compute with (missing → 0, clamped to 0..100)."""
    valid = torch.isfinite(age)
    return valid, torch.where(valid, age, 0).clamp(MIN_AGE, MAX_AGE)


def mean_variance_loss(logits: torch.Tensor, age: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pan et al. 2018: mean loss ½(E[a] − y)² and variance loss Var[a], over labelled samples.

    The paper weights them 0.2 and 0.05 next to a softmax loss; pass weights to `dldl_loss`.
    """
    _check_logits(logits)
    valid, age = _labels(age)
    mean, variance = _moments(F.log_softmax(logits, dim=-1))
    return _masked_mean(0.5 * (mean - age) ** 2, valid), _masked_mean(variance, valid)


def dldl_loss(logits: torch.Tensor, age: torch.Tensor, sigma: float | torch.Tensor = 2.0, *,
              l1_weight: float = 0.0, mean_weight: float = 0.0, variance_weight: float = 0.0
              ) -> torch.Tensor:
    """KL(Gaussian label distribution ‖ softmax(logits)), averaged over samples with an age.

    NaN (missing) ages are ignored. Extra terms, per sample: `l1_weight`·|E[a] − y| (DLDL-v2 uses
    1.0), `mean_weight`·½(E[a] − y)² and `variance_weight`·Var[a] (mean-variance loss). Ages are
    clamped to 0..100 like the target, since E[a] cannot leave that range.
    """
    _check_logits(logits)
    valid, safe_age = _labels(age)
    log_probs = F.log_softmax(logits, dim=-1)
    log_target = _gaussian_log_distribution(safe_age, sigma)
    per_sample = (log_target.exp() * (log_target - log_probs)).sum(-1)
    if l1_weight or mean_weight or variance_weight:
        mean, variance = _moments(log_probs)
        error = mean - safe_age
        per_sample = (per_sample + l1_weight * error.abs() + mean_weight * 0.5 * error ** 2
                      + variance_weight * variance)
    return _masked_mean(per_sample, valid)


def interval_nll(logits: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """−log P(low ≤ age ≤ high) under softmax(logits), for ages known only as a range of whole
    years (both ends included, clamped to 0..100), averaged over the rows that have one (NaN
    ends: no range)."""
    _check_logits(logits)
    valid = ~(torch.isnan(low) | torch.isnan(high))
    bins = _bins(logits)
    low = torch.where(valid, low, 0).clamp(MIN_AGE, MAX_AGE)
    high = torch.where(valid, high, MAX_AGE).clamp(MIN_AGE, MAX_AGE)
    inside = (bins >= low.unsqueeze(-1)) & (bins <= high.unsqueeze(-1))
    log_probs = F.log_softmax(logits, dim=-1)
    per_sample = -torch.logsumexp(log_probs.masked_fill(~inside, float("-inf")), dim=-1)
    return _masked_mean(per_sample, valid)


def expected_age(logits: torch.Tensor) -> torch.Tensor:
    """The expectation of the predicted distribution, in years (shape `logits.shape[:-1]`)."""
    _check_logits(logits)
    return (torch.softmax(logits, dim=-1) * _bins(logits)).sum(-1)


def median_age(logits: torch.Tensor) -> torch.Tensor:
    """The median of the predicted distribution, in years: the read-out with the lowest
    expected absolute error, and less pulled toward the middle ages by a long tail than the
    expectation."""
    _check_logits(logits)
    return _quantile(torch.softmax(logits, dim=-1).cumsum(-1), 0.5)


def _quantile(cdf: torch.Tensor, q: float) -> torch.Tensor:
    """Age where the piecewise-linear CDF (bin k spans [k − ½, k + ½]) reaches q."""
    index = (cdf < q).sum(-1, keepdim=True).clamp(max=NUM_AGE_BINS - 1)
    padded = F.pad(cdf, (1, 0))  # padded[k] = CDF at the left edge of bin k
    left = padded.gather(-1, index)
    mass = (padded.gather(-1, index + 1) - left).clamp(min=1e-12)
    fraction = ((q - left) / mass).clamp(0, 1)
    age = MIN_AGE - 0.5 + index.squeeze(-1).to(cdf.dtype) + fraction.squeeze(-1)
    return age.clamp(MIN_AGE, MAX_AGE)


def age_interval(logits: torch.Tensor, coverage: float = 0.8
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Central interval holding `coverage` of the predicted mass: (low, high) in years.

    For 0.8 these are the 10 % and 90 % quantiles of the predicted CDF, interpolated linearly
    inside bins and clamped to 0..100.
    """
    _check_logits(logits)
    if not 0 < coverage < 1:
        raise ValueError("coverage must be between 0 and 1")
    cdf = torch.softmax(logits, dim=-1).cumsum(-1)
    tail = (1 - coverage) / 2
    return _quantile(cdf, tail), _quantile(cdf, 1 - tail)
