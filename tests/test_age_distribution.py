import math

import numpy as np
import pytest
import torch

from agegender.models.age_distribution import (
    MAX_AGE,
    NUM_AGE_BINS,
    age_interval,
    dldl_loss,
    expected_age,
    gaussian_label_distribution,
    mean_variance_loss,
)

BIG = 60.0  # a logit gap that makes a softmax one-hot up to exp(-60)


def one_hot_logits(ages: list[int]) -> torch.Tensor:
    logits = torch.zeros(len(ages), NUM_AGE_BINS)
    logits[torch.arange(len(ages)), torch.tensor(ages)] = BIG
    return logits


def test_there_is_one_bin_per_year_up_to_100_plus():
    assert NUM_AGE_BINS == 101 and MAX_AGE == 100


@pytest.mark.parametrize("sigma", [1.0, 2.0, 5.0])
def test_label_distribution_sums_to_one_and_peaks_at_the_true_age(sigma):
    ages = torch.tensor([0.0, 1.0, 37.0, 99.0, 100.0])
    dist = gaussian_label_distribution(ages, sigma)
    assert dist.shape == (5, NUM_AGE_BINS)
    torch.testing.assert_close(dist.sum(-1), torch.ones(5))
    assert dist.argmax(-1).tolist() == [0, 1, 37, 99, 100]
    # symmetric around an interior age, and the bins one sigma away hold exp(-1/2) of the peak
    row = dist[2]
    torch.testing.assert_close(row[30], row[44])
    torch.testing.assert_close(row[37 + int(sigma)] / row[37], torch.tensor(math.exp(-0.5)))


def test_label_distribution_clamps_ages_over_100_into_the_last_bin_and_takes_per_sample_sigma():
    dist = gaussian_label_distribution(torch.tensor([116.0, 40.0]), torch.tensor([1.0, 8.0]))
    torch.testing.assert_close(dist[0], gaussian_label_distribution(torch.tensor(100.0), 1.0))
    assert dist[1].max() < gaussian_label_distribution(torch.tensor(40.0), 1.0).max() / 4
    with pytest.raises(ValueError, match="sigma"):
        gaussian_label_distribution(torch.tensor([3.0]), 0.0)


def test_dldl_loss_is_zero_at_the_target_and_grows_away_from_it():
    ages = torch.tensor([3.0, 25.0, 70.0])
    bins = torch.arange(NUM_AGE_BINS, dtype=torch.float32)
    target_logits = -0.5 * ((bins - ages[:, None]) / 2.0) ** 2  # log target + a constant
    at_target = dldl_loss(target_logits, ages, 2.0)
    assert at_target.abs() < 1e-5
    for shift in (1, 3, 10):
        shifted = torch.roll(target_logits, shift, dims=-1)
        assert dldl_loss(shifted, ages, 2.0) > at_target + 0.1 * shift
    assert dldl_loss(target_logits + 7.0, ages, 2.0).abs() < 1e-5, "invariant to a logit offset"


def test_dldl_loss_gradient_descent_moves_the_expectation_to_the_age():
    logits = torch.zeros(1, NUM_AGE_BINS, requires_grad=True)
    optimiser = torch.optim.SGD([logits], lr=20.0)
    for _ in range(2):
        optimiser.zero_grad()
        dldl_loss(logits, torch.tensor([20.0]), l1_weight=1.0).backward()
        optimiser.step()
    assert expected_age(logits.detach()) < 45.0  # starts at 50 (uniform)


def test_dldl_loss_is_finite_for_extreme_logits():
    logits = torch.full((2, NUM_AGE_BINS), -1e4)
    logits[:, 0] = 1e4
    loss = dldl_loss(logits.requires_grad_(), torch.tensor([90.0, 0.0]), 1.0, l1_weight=1.0,
                     mean_weight=0.2, variance_weight=0.05)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_nan_ages_are_masked_out_of_every_term():
    torch.manual_seed(0)
    logits = torch.randn(4, NUM_AGE_BINS, requires_grad=True)
    ages = torch.tensor([10.0, float("nan"), 50.0, float("nan")])
    weights = {"l1_weight": 1.0, "mean_weight": 0.2, "variance_weight": 0.05}
    loss = dldl_loss(logits, ages, 3.0, **weights)
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad[[1, 3]].abs().max() == 0
    assert logits.grad[[0, 2]].abs().max() > 0
    labelled = dldl_loss(logits.detach()[[0, 2]], ages[[0, 2]], 3.0, **weights)
    torch.testing.assert_close(loss.detach(), labelled)
    mean_term, variance_term = mean_variance_loss(logits.detach(), ages)
    expected_mean, expected_variance = mean_variance_loss(logits.detach()[[0, 2]], ages[[0, 2]])
    torch.testing.assert_close(mean_term, expected_mean)
    torch.testing.assert_close(variance_term, expected_variance)


def test_a_batch_without_any_age_gives_a_zero_loss_that_still_backpropagates():
    logits = torch.randn(2, NUM_AGE_BINS, requires_grad=True)
    loss = dldl_loss(logits, torch.full((2,), float("nan")), l1_weight=1.0)
    loss.backward()
    assert loss == 0 and logits.grad.abs().max() == 0


def test_loss_weights_add_the_l1_and_mean_variance_terms():
    torch.manual_seed(1)
    logits, ages = torch.randn(3, NUM_AGE_BINS), torch.tensor([5.0, 33.0, 80.0])
    kl = dldl_loss(logits, ages)
    l1 = (expected_age(logits) - ages).abs().mean()
    mean_term, variance_term = mean_variance_loss(logits, ages)
    combined = dldl_loss(logits, ages, l1_weight=1.0, mean_weight=0.2, variance_weight=0.05)
    torch.testing.assert_close(combined, kl + l1 + 0.2 * mean_term + 0.05 * variance_term)


def test_mean_variance_loss_on_a_one_hot_and_a_uniform_distribution():
    mean_term, variance_term = mean_variance_loss(one_hot_logits([30]), torch.tensor([34.0]))
    torch.testing.assert_close(mean_term, torch.tensor(8.0))  # ½·4²
    assert variance_term.abs() < 1e-4
    _, variance_term = mean_variance_loss(torch.zeros(1, NUM_AGE_BINS), torch.tensor([50.0]))
    torch.testing.assert_close(variance_term, torch.tensor((NUM_AGE_BINS ** 2 - 1) / 12))


def test_expectation_and_interval_of_one_hot_distributions():
    logits = one_hot_logits([0, 30, 100])
    torch.testing.assert_close(expected_age(logits), torch.tensor([0.0, 30.0, 100.0]))
    low, high = age_interval(logits, 0.8)
    torch.testing.assert_close(low, torch.tensor([0.0, 29.6, 99.6]))  # clamped at 0
    torch.testing.assert_close(high, torch.tensor([0.4, 30.4, 100.0]))  # clamped at 100


def test_expectation_and_interval_of_the_uniform_distribution():
    logits = torch.zeros(2, NUM_AGE_BINS)
    torch.testing.assert_close(expected_age(logits), torch.full((2,), 50.0))
    low, high = age_interval(logits, 0.8)  # CDF linear from -0.5 to 100.5
    torch.testing.assert_close(low, torch.full((2,), -0.5 + 0.1 * 101))
    torch.testing.assert_close(high, torch.full((2,), -0.5 + 0.9 * 101))
    low, high = age_interval(logits, 0.5)
    torch.testing.assert_close(high - low, torch.full((2,), 0.5 * 101))


def test_read_outs_keep_leading_dimensions_and_refuse_wrong_widths():
    logits = torch.randn(2, 3, NUM_AGE_BINS)
    assert expected_age(logits).shape == (2, 3)
    low, high = age_interval(logits)
    assert low.shape == high.shape == (2, 3) and (low <= high).all()
    with pytest.raises(ValueError, match="101 age logits"):
        expected_age(torch.zeros(2, 81))
    with pytest.raises(ValueError, match="coverage"):
        age_interval(torch.zeros(2, NUM_AGE_BINS), 1.0)


@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.95])
def test_interval_covers_the_requested_share_of_samples_from_the_predicted_distribution(coverage):
    bins = torch.arange(NUM_AGE_BINS, dtype=torch.float64)
    # a skewed two-component mixture, away from the clamped ends
    density = 0.7 * torch.exp(-0.5 * ((bins - 28) / 5) ** 2) + 0.3 * torch.exp(
        -0.5 * ((bins - 55) / 12) ** 2)
    probs = density / density.sum()
    logits = probs.log().float().unsqueeze(0)
    low, high = (float(v) for v in age_interval(logits, coverage))
    rng = np.random.default_rng(0)
    n = 200_000
    # a continuous age: the bin drawn from the distribution, uniform within [k − ½, k + ½]
    samples = rng.choice(NUM_AGE_BINS, size=n, p=probs.numpy()) + rng.uniform(-0.5, 0.5, n)
    inside = ((samples >= low) & (samples <= high)).mean()
    assert inside == pytest.approx(coverage, abs=0.005)
    assert ((samples < low).mean()) == pytest.approx((1 - coverage) / 2, abs=0.005)


class _ReadOut(torch.nn.Module):
    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (expected_age(logits), *age_interval(logits, 0.8))


def test_read_outs_export_to_onnx_and_match_onnxruntime(tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(2)
    example = torch.randn(2, NUM_AGE_BINS) * 3
    path = tmp_path / "readout.onnx"
    torch.onnx.export(_ReadOut().eval(), (example,), str(path), dynamo=True, opset_version=18,
                      input_names=["logits"],
                      dynamic_shapes={"logits": {0: torch.export.Dim("batch")}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = torch.cat([torch.randn(3, NUM_AGE_BINS) * 3, one_hot_logits([0, 42, 100]),
                        torch.zeros(1, NUM_AGE_BINS)])
    got = session.run(None, {session.get_inputs()[0].name: logits.numpy()})
    # float32 CDFs summed in a different order differ by ~1e-7; dividing by a bin's mass to
    # interpolate turns that into up to ~1e-3 years
    for onnx_out, torch_out in zip(got, _ReadOut()(logits), strict=True):
        np.testing.assert_allclose(onnx_out, torch_out.numpy(), atol=2e-3)


def test_the_median_sits_at_the_centre_of_a_symmetric_distribution_and_below_a_right_tail():
    from agegender.models.age_distribution import median_age

    ages = torch.arange(101, dtype=torch.float32)
    symmetric = -0.5 * ((ages - 40) / 3) ** 2
    assert median_age(symmetric[None]).item() == pytest.approx(40.0, abs=0.05)
    skewed = torch.where(ages < 25, -0.5 * ((ages - 25) / 2) ** 2, -0.5 * ((ages - 25) / 12) ** 2)
    assert median_age(skewed[None]).item() < expected_age(skewed[None]).item() - 1
