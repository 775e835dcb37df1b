"""Training on several datasets: ages known as ranges, masked labels, weighted sampling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agegender.data.labelled import concatenate
from agegender.models.age_distribution import interval_nll
from agegender.training.config import TrainConfig
from agegender.training.loop import Trainer
from agegender.training.losses import age_range_loss
from agegender.training.run import evaluate_test
from agegender.training.sampling import epoch_order, sampling_weights
from tests.conftest import synthetic_faces
from tests.test_training import TINY, _tiny_transfer


def test_interval_likelihood_is_the_mass_on_the_range_and_masks_rows_without_one():
    logits = torch.randn(3, 101, generator=torch.Generator().manual_seed(0))
    low = torch.tensor([20.0, float("nan"), 70.0])
    high = torch.tensor([29.0, float("nan"), 100.0])
    probs = torch.softmax(logits, -1)
    expected = -(torch.log(probs[0, 20:30].sum()) + torch.log(probs[2, 70:].sum())) / 2
    torch.testing.assert_close(interval_nll(logits, low, high), expected)
    peaked = torch.full((1, 101), -20.0)
    peaked[0, 25] = 20.0
    assert interval_nll(peaked, low[:1], high[:1]) < 1e-6
    assert interval_nll(peaked, torch.tensor([40.0]), torch.tensor([49.0])) > 10
    assert interval_nll(logits, torch.full((3,), float("nan")), torch.full((3,), float("nan"))
                        ).item() == 0.0


def test_a_point_prediction_is_pulled_into_its_range_and_left_alone_inside_it():
    age = torch.tensor([25.0, 35.0, 15.0], requires_grad=True)
    low, high = torch.full((3,), 20.0), torch.full((3,), 29.0)
    loss = age_range_loss(age, None, low, high, "mae")
    assert loss.item() == pytest.approx(((35 - 30) + (20 - 15)) / 10 / 3)
    loss.backward()
    assert age.grad[0] == 0 and age.grad[1] > 0 and age.grad[2] < 0


def _two_datasets():
    first = synthetic_faces(64, 32, seed=0)
    second = synthetic_faces(32, 32, seed=1)
    second.age = np.full(32, np.nan, np.float32)  # a dataset without ages ...
    second.age_low = np.full(32, 20.0, np.float32)  # ... but with age ranges for some
    second.age_high = np.full(32, 29.0, np.float32)
    second.age_low[::2] = second.age_high[::2] = np.nan
    second.person = np.arange(32) % 4
    second.dataset_names = ["second"]
    return concatenate([first, second])


def test_datasets_concatenate_with_their_own_rows_splits_and_people():
    data = _two_datasets()
    assert len(data.split) == 96 and data.dataset_names == ["data", "second"]
    assert (data.dataset[:64] == 0).all() and (data.dataset[64:] == 1).all()
    assert (data.person[:64] == -1).all() and set(data.person[64:]) == {0, 1, 2, 3}
    assert np.isnan(data.age[64:]).all() and np.isfinite(data.age_low[64::2]).sum() == 0
    assert data.images.shape == (96, 32, 32, 3)


def test_weighted_epochs_draw_datasets_genders_and_people_as_asked():
    data = _two_datasets()
    rows = data.rows("train")
    assert sampling_weights(data, rows, TINY) is None  # plain shuffle: every face once
    np.testing.assert_array_equal(epoch_order(rows, None, 7),
                                  np.random.default_rng(7).permutation(rows))
    config = dataclasses.replace(TINY, data=["a", "b"], data_weights=[1.0, 3.0],
                                 balance_gender=True, person_cap=2)
    weights = sampling_weights(data, rows, config)
    in_second = data.dataset[rows] == 1
    assert weights[in_second].sum() == pytest.approx(0.75)
    for index in (0, 1):
        ours = data.dataset[rows] == index
        women = weights[ours & (data.gender[rows] == 1)].sum()
        men = weights[ours & (data.gender[rows] == 0)].sum()
        assert women == pytest.approx(men)
    order = epoch_order(rows, weights, 0)
    assert len(order) == len(rows) and np.isin(order, rows).all()
    assert (data.dataset[order] == 1).mean() > 0.6


def test_a_run_on_two_datasets_trains_on_ranges_and_reports_each_test_split(tmp_path):
    data = _two_datasets()
    config = dataclasses.replace(_tiny_transfer(), data=["a", "b"], data_weights=[1.0, 1.0],
                                 epochs=3)
    trainer = Trainer(config, data, tmp_path)
    assert trainer.step.has_ranges
    trainer.fit()
    metrics = evaluate_test(data, tmp_path)
    assert set(metrics["datasets"]) == {"data", "second"}
    assert metrics["n_images"] == metrics["datasets"]["data"]["n_images"]
    assert (tmp_path / "test_report_1_second" / "predictions.csv").is_file()


def test_age_balance_draws_rare_decades_more_often():
    data = synthetic_faces(200, 8)
    data.age = np.where(np.arange(200) < 180, 25.0, 75.0).astype(np.float32)  # 10 % are 70+
    rows = data.rows("all")
    half = sampling_weights(data, rows, dataclasses.replace(TINY, age_balance=0.5))
    full = sampling_weights(data, rows, dataclasses.replace(TINY, age_balance=1.0))
    old = data.age[rows] >= 70
    assert half[old].sum() == pytest.approx(np.sqrt(20) / (np.sqrt(20) + np.sqrt(180)))
    assert full[old].sum() == pytest.approx(0.5)


def test_data_weights_and_split_files_must_fit_the_datasets():
    with pytest.raises(ValueError, match="one --data-weight per --data"):
        dataclasses.replace(TINY, data=["a", "b"], data_weights=[1.0])
    with pytest.raises(ValueError, match=r"split\.csv beside it"):
        dataclasses.replace(TINY, data=["a", "b"], split_file="s.csv")
    assert TrainConfig.from_dict({**TINY.to_dict(), "data": "old.tar.gz"}).data == ["old.tar.gz"]
