"""One answer from many views of one person: the combining rule of tracks and `--person`.

Each view (a video frame's face, or one photo of a person) gives an age distribution over the
ages 0…100 (`inference.backends.predict_with_age_distribution`) and a probability of female.
The person's answer is:

- age: the mean of the views' distributions (their mixture), read like one face's: its
  median, and its 10 % and 90 % quantiles as the 80 % interval. The views of one person share
  most of their error (the same face, the same light), so the product of the distributions
  (as if each view were independent evidence) narrows the interval far below the error; the
  mixture's interval also holds the views' disagreement. On generated test videos
  (benchmarks/README.md) the 80 % intervals held the true age for 38 % (product),
  75 % (geometric mean) and 75 % (mixture) of the tracks, at age errors of 4.42, 5.09 and
  5.18 years: the product's interval says more than the evidence does.
- gender: the sigmoid of the mean of the views' gender logits (log-odds of female).

Views may be weighted (`add(..., weight=)`); the callers weight every view alike, since no
weight measured helped (docs/tracking.md).

The gender a track shows (its rows' `track_gender`, the label drawn on an annotated video and
on the page's live mode) is steadier than that running answer: `steady_gender` keeps the
gender shown until the combined probability of the other one reaches `SWITCH_MARGIN`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agegender.data.records import GENDER_NAMES, GENDER_THRESHOLD

PROBABILITY_FLOOR = 1e-6
"""A view's probability of female is clipped to [floor, 1 − floor] before its logit is taken,
so one overconfident view cannot outvote all others on its own."""

INTERVAL_TAILS = (0.1, 0.9)
"""The quantiles of the combined distribution that bound the 80 % age interval."""

SWITCH_MARGIN = 0.75
"""The combined probability the other gender must reach before a track's shown gender
switches to it (hysteresis: between 1 − margin and margin the shown gender holds). Chosen on
videos of validation faces (docs/tracking.md)."""


@dataclass(frozen=True)
class PersonAnswer:
    """A person's combined answer, at full precision, over `views` views."""

    age: float
    age_low: float
    age_high: float
    gender: str
    gender_prob: float
    views: int


def gender_logit(prob_female: float | np.ndarray) -> float | np.ndarray:
    """The log-odds of female of a probability, clipped by `PROBABILITY_FLOOR`."""
    p = np.clip(prob_female, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return np.log(p) - np.log1p(-p)


def prob_female_of(gender: str, gender_prob: float) -> float:
    """The probability of female from a row's stated gender and that gender's probability."""
    return gender_prob if gender == GENDER_NAMES[1] else 1.0 - gender_prob


class PersonEvidence:
    """Running sums of one person's views: O(1) memory however many views come."""

    def __init__(self) -> None:
        self._probs: np.ndarray | None = None
        self._logit = 0.0
        self._weight = 0.0
        self.views = 0

    def add(self, age_log_probs: np.ndarray, prob_female: float, weight: float = 1.0) -> None:
        """Add one view: its 101 age log-probabilities and its probability of female."""
        weighted = weight * np.exp(np.asarray(age_log_probs, np.float64))
        self._probs = weighted if self._probs is None else self._probs + weighted
        self._logit += weight * float(gender_logit(prob_female))
        self._weight += weight
        self.views += 1

    def answer(self) -> PersonAnswer:
        """The combined answer (module docstring); raises when no view was added."""
        if self._probs is None or self._weight <= 0:
            raise ValueError("no views to combine")
        cdf = np.cumsum(self._probs / self._probs.sum())
        low, median, high = (quantile(cdf, q) for q in (INTERVAL_TAILS[0], 0.5,
                                                         INTERVAL_TAILS[1]))
        prob_female = float(1.0 / (1.0 + np.exp(-self._logit / self._weight)))
        female = prob_female >= GENDER_THRESHOLD
        return PersonAnswer(median, low, high, GENDER_NAMES[int(female)],
                            prob_female if female else 1.0 - prob_female, self.views)


def combine(age_log_probs: np.ndarray, prob_female: np.ndarray,
            weights: np.ndarray | None = None) -> PersonAnswer:
    """The answer of N views at once (N×101 log-probabilities, N probabilities of female)."""
    evidence = PersonEvidence()
    weights = np.ones(len(prob_female)) if weights is None else weights
    for log_probs, prob, weight in zip(age_log_probs, prob_female, weights, strict=True):
        evidence.add(log_probs, float(prob), float(weight))
    return evidence.answer()


def quantile(cdf: np.ndarray, q: float) -> float:
    """The age where the piecewise-linear CDF over the bins 0…100 reaches `q` (bin k spans
    [k − ½, k + ½], as `models.age_distribution` reads a face's distribution)."""
    index = min(int((cdf < q).sum()), len(cdf) - 1)
    padded = np.concatenate(([0.0], cdf))
    left = padded[index]
    mass = max(padded[index + 1] - left, 1e-12)
    fraction = min(max((q - left) / mass, 0.0), 1.0)
    return float(min(max(index - 0.5 + fraction, 0.0), len(cdf) - 1.0))


def steady_gender(shown: str | None, prob_female: float, margin: float = SWITCH_MARGIN) -> str:
    """The gender to show now: the combined answer's at first (`shown` None), then `shown`
    until the combined probability of the other gender reaches `margin`."""
    female = GENDER_NAMES[1]
    answer = female if prob_female >= GENDER_THRESHOLD else GENDER_NAMES[0]
    if shown is None or shown == answer:
        return answer
    prob_answer = prob_female if answer == female else 1.0 - prob_female
    return answer if prob_answer >= margin else shown
