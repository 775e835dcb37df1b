"""Validation views (`agegender.evaluation.views`): deterministic per face, shape-keeping, doing
what their names say, and figures that match a recomputation by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.evaluation.views import (
    VIEWS,
    bias_by_age_group,
    clustered_standard_error,
    evaluate_views,
    faded,
    grayscale,
    noisy,
    view_figures,
)

CHANGES = {name: view.change for name, view in VIEWS.items()}


def faces(count: int = 5, side: int = 48, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with texture: a face-like range of tones and colours."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, side)[None, :, None, None]
    base = rng.uniform(30, 120, (count, 1, 1, channels)) + 110 * ramp
    texture = rng.normal(0, 12, (count, side, side, channels))
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def luma(batch: np.ndarray) -> np.ndarray:
    return batch.astype(float) @ np.array([0.299, 0.587, 0.114])


def saturation(batch: np.ndarray) -> float:
    """Mean spread between a pixel's largest and smallest channel."""
    as_float = batch.astype(float)
    return float((as_float.max(axis=3) - as_float.min(axis=3)).mean())


@pytest.mark.parametrize("name", CHANGES)
@pytest.mark.parametrize("channels", [3, 1])
def test_view_keeps_shape_and_is_the_same_per_face(name: str, channels: int):
    batch = faces(channels=channels)
    change = CHANGES[name]
    changed = change(batch)
    assert changed.shape == batch.shape and changed.dtype == np.uint8
    np.testing.assert_array_equal(change(batch), changed)  # on repeat
    for index in range(len(batch)):  # a face alone
        np.testing.assert_array_equal(change(batch[index:index + 1])[0], changed[index])
    order = np.array([3, 0, 4, 2, 1])  # and elsewhere in another batch
    np.testing.assert_array_equal(change(np.concatenate([batch[order], faces(seed=1,
                                  channels=channels)]))[:5], changed[order])


def test_views_do_not_change_their_input():
    batch = faces()
    kept = batch.copy()
    for change in CHANGES.values():
        change(batch)
    np.testing.assert_array_equal(batch, kept)


def test_views_refuse_what_is_not_a_uint8_batch():
    with pytest.raises(ValueError, match="N×H×W×3"):
        noisy(faces()[0])
    with pytest.raises(ValueError, match="N×H×W×3"):
        faded(faces().astype(np.float32))


def test_gray_has_equal_channels_of_pillows_luma():
    batch = faces()
    gray = grayscale(batch)
    assert (gray == gray[..., :1]).all()
    pillow = np.stack([np.asarray(Image.fromarray(face).convert("L")) for face in batch])
    assert np.abs(gray[..., 0].astype(int) - pillow).max() <= 1


def test_faded_lowers_contrast_and_saturation_lifts_blacks_and_casts_yellow():
    batch = faces()
    print_ = faded(batch)
    assert luma(print_).std() < 0.85 * luma(batch).std()
    assert saturation(print_) < 0.7 * saturation(batch)
    black = faded(np.zeros((1, 8, 8, 3), np.uint8))[0, 0, 0]
    white = faded(np.full((1, 8, 8, 3), 255, np.uint8))[0, 0, 0]
    assert black.min() >= 25 and white.max() <= 245
    gray = faded(np.full((1, 8, 8, 3), 128, np.uint8))[0, 0, 0].astype(int)
    assert gray[0] >= gray[1] > gray[2] + 10  # red and green over blue: warm, yellow


def test_noisy_differs_but_stays_close():
    batch = faces()
    changed = noisy(batch).astype(float)
    error = np.abs(changed - batch)
    assert error.mean() > 2
    assert 10 * np.log10(255**2 / np.mean(error**2)) > 25  # PSNR in dB
    assert np.abs(changed.mean() - batch.mean()) < 2
    flat = [np.full((1, 32, 32, 3), level, np.uint8) for level in (100, 101)]
    noise = [noisy(face).astype(int) - face for face in flat]
    assert not np.array_equal(*noise)  # each face its own noise


def test_bias_by_age_group_matches_a_recount():
    true = np.array([0, 2, 2.5, 3, 9.9, 10, 25, 29, 30, 69, 70, 95, np.nan])
    pred = np.array([2, 1, 4.5, 6, 11.9, 13, 20, 29, 33, 60, 60, 80, 40])
    expected = {
        "0-2": {"bias": ((2 - 0) + (1 - 2) + (4.5 - 2.5)) / 3, "n": 3},
        "3-9": {"bias": ((6 - 3) + (11.9 - 9.9)) / 2, "n": 2},
        "10-19": {"bias": 3.0, "n": 1},
        "20-29": {"bias": ((20 - 25) + 0) / 2, "n": 2},
        "30-39": {"bias": 3.0, "n": 1},
        "60-69": {"bias": -9.0, "n": 1},
        "70+": {"bias": ((60 - 70) + (80 - 95)) / 2, "n": 2},
    }
    found = bias_by_age_group(true, pred)
    assert list(found) == list(expected)
    for group, figures in expected.items():
        assert found[group]["n"] == figures["n"]
        assert found[group]["bias"] == pytest.approx(figures["bias"])


def test_bias_by_decade_pools_seventy_and_over_and_skips_unknown_ages():
    true = np.array([0, 9.9, 10, 25, 69, 70, 95, np.nan])
    pred = np.array([2, 10.9, 13, 20, 60, 60, 80, 40])
    found = bias_by_age_group(true, pred, decades=True)
    assert list(found) == ["0-9", "10-19", "20-29", "60-69", "70+"]
    assert found["0-9"] == {"bias": pytest.approx(1.5), "n": 2}
    assert found["70+"] == {"bias": pytest.approx(((60 - 70) + (80 - 95)) / 2), "n": 2}


def test_view_figures_recount():
    true_age = np.array([20, 30, 40, 50, np.nan, np.nan])
    pred_age = np.array([22, 27, 40, 56, 33, 44])
    gender = np.array([1, 1, 1, 0, 0, np.nan])  # female, female, female, male, male, unknown
    prob_female = np.array([0.9, 0.2, 0.6, 0.1, 0.7, 0.5])
    figures = view_figures(true_age, pred_age, gender, prob_female)
    assert (figures["n"], figures["age_n"], figures["gender_n"]) == (6, 4, 5)
    assert figures["mae"] == pytest.approx((2 + 3 + 0 + 6) / 4)
    assert figures["bias"] == pytest.approx((2 - 3 + 0 + 6) / 4)
    assert figures["gender_acc"] == pytest.approx(3 / 5)
    assert figures["female_recall"] == pytest.approx(2 / 3)
    assert figures["male_recall"] == pytest.approx(1 / 2)
    assert figures["bias_by_group"]["50-59"] == {"bias": 6.0, "n": 1}
    no_ages = view_figures(np.full(2, np.nan), [30, 40], [0, 1], [0.2, 0.8])
    assert no_ages["mae"] is None and no_ages["bias"] is None and no_ages["bias_by_group"] == {}
    assert no_ages["gender_acc"] == 1.0


def test_evaluate_views_on_a_small_folder(tmp_path: Path):
    """The bundled model on 8 synthetic UTKFace-named images, LFW not given."""
    from agegender.data.labelled import load_labelled_faces
    from agegender.inference.backends import load_backend, predict_in_batches
    from agegender.inference.predictor import bundled_model_path

    folder = tmp_path / "utk"
    folder.mkdir()
    rows = ["file,split"]
    for index, face in enumerate(faces(8, side=64)):
        name = f"{20 + 5 * index}_{index % 2}_0_20170101{index:08d}.jpg"
        Image.fromarray(face).save(folder / name)
        rows.append(f"{name},{'val' if index < 5 else 'train'}")
    (folder / "split.csv").write_text("\n".join(rows) + "\n")

    model = bundled_model_path()
    results = evaluate_views({"bundled": model}, {"utkface": folder, "lfw": None},
                             ["utkface", "utkface-noisy", "lfw"], split="val")
    assert results["skipped"] == {"lfw": "no --lfw data given"}
    by_view = results["figures"]["bundled"]
    assert list(by_view) == ["utkface", "utkface-noisy"]
    assert by_view["utkface"]["n"] == by_view["utkface-noisy"]["n"] == 5

    backend = load_backend(model)
    data = load_labelled_faces(folder, backend.preprocessing)
    val = data.rows("val")
    predicted = predict_in_batches(backend, np.asarray(data.images[val]))
    assert by_view["utkface"] == view_figures(data.age[val], predicted.age, data.gender[val],
                                              predicted.prob_female)
    with pytest.raises(ValueError, match="unknown views"):
        evaluate_views({"bundled": model}, {}, ["utkface-sepia"])


def test_photos_of_one_person_count_as_one_draw_in_the_standard_error():
    hits = np.ones(200)
    hits[:20] = 0  # 0.9 right
    alone = clustered_standard_error(hits, np.full(200, -1))
    assert alone == pytest.approx(np.sqrt(0.9 * 0.1 / 200), rel=0.15)  # the binomial one
    one_person = np.arange(200)
    one_person[:20] = 0  # every error from one person with 20 photos
    assert clustered_standard_error(hits, one_person) > 2 * alone
    assert clustered_standard_error(hits[:1], np.zeros(1)) is None
    figures = view_figures(np.full(200, np.nan), np.full(200, 30.0), np.ones(200),
                           np.where(hits == 1, 0.9, 0.1), person=one_person)
    assert figures["gender_acc"] == pytest.approx(0.9)
    assert figures["gender_acc_se"] == pytest.approx(clustered_standard_error(hits, one_person))
