"""Which faces an epoch shows: every training face once, or a weighted draw that balances
datasets, people and genders.

A weighted epoch draws as many faces as the training split holds, with replacement, each with
probability proportional to its weight, so a small dataset or the rarer gender is seen as
often as asked for and a person with hundreds of photos does not dominate.
"""

from __future__ import annotations

import numpy as np

from agegender.data.labelled import LabelledFaces
from agegender.training.config import TrainConfig


def sampling_weights(data: LabelledFaces, rows: np.ndarray, config: TrainConfig
                     ) -> np.ndarray | None:
    """A weight per row of `rows`; None when every face counts the same (a plain shuffle)."""
    if not (config.data_weights or config.person_cap or config.balance_gender
            or config.age_balance):
        return None
    weights = np.ones(len(rows))
    if config.age_balance:
        weights *= _age_weights(data.age[rows], config.age_balance)
    person = data.person[rows]
    if config.person_cap:
        known = person >= 0
        counts = np.bincount(person[known])
        weights[known] = np.minimum(1.0, config.person_cap / counts[person[known]])
    dataset = data.dataset[rows]
    for index in np.unique(dataset):
        ours = dataset == index
        if config.balance_gender:
            weights[ours] = _gender_balanced(weights[ours], data.gender[rows][ours])
        if config.data_weights:
            weights[ours] *= config.data_weights[index] / weights[ours].sum()
    return weights / weights.sum()


def _age_weights(age: np.ndarray, strength: float) -> np.ndarray:
    """Faces of a rare age decade weigh more: `count(decade) ** -strength`, scaled so the
    faces with an age keep their total weight (faces without one keep weight 1)."""
    weights = np.ones(len(age))
    known = ~np.isnan(age)
    if not known.any():
        return weights
    decade = np.minimum(age[known] // 10, 7).astype(int)  # 70+ as one group
    counts = np.bincount(decade)
    weights[known] = counts[decade] ** -strength
    weights[known] *= known.sum() / weights[known].sum()
    return weights


def _gender_balanced(weights: np.ndarray, gender: np.ndarray) -> np.ndarray:
    """`weights` rescaled so the women and the men of one dataset weigh the same in total
    (faces without a gender label keep theirs)."""
    balanced = weights.copy()
    labelled = ~np.isnan(gender)
    if not labelled.any():
        return balanced
    half = weights[labelled].sum() / 2
    for value in (0.0, 1.0):
        group = gender == value
        if group.any():
            balanced[group] *= half / weights[group].sum()
    return balanced


def epoch_order(rows: np.ndarray, weights: np.ndarray | None, seed: int) -> np.ndarray:
    """The rows one epoch visits, in order, drawn from `seed` so a resumed run repeats it."""
    rng = np.random.default_rng(seed)
    if weights is None:
        return rng.permutation(rows)
    return rng.choice(rows, size=len(rows), replace=True, p=weights)
