"""Activation maps: they point at the evidence, numpy CAM equals torch Grad-CAM, `explain` runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agegender.cli.main import EXIT_ERROR, EXIT_OK, main
from agegender.export import export_onnx
from agegender.inference.backends import OnnxBackend
from agegender.inference.cam import LinearHeads, age_cam
from agegender.inference.explain import OnnxExplainer, load_explainer, worst_faces_sheet
from agegender.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from agegender.models.checkpoint import save_checkpoint
from agegender.models.config import ModelConfig
from agegender.models.deploy import Calibration
from agegender.models.factory import create_model
from agegender.models.gradcam import grad_cam_maps
from agegender.models.seed import SeedCNN
from agegender.preprocessing import Preprocessing, normalize
from tests.conftest import synthetic_faces
from tests.test_training import TINY

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "astronaut_face.jpg"
SIDE = 32


def _quadrant_task(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise images; label 1 has a bright square somewhere in the top-left quadrant, the only
    signal there is."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (count, SIDE, SIDE, 3)).astype(np.uint8)
    labels = rng.integers(0, 2, count)
    for image, label in zip(images, labels, strict=True):
        if label:
            top, left = rng.integers(0, SIDE // 2 - 6, 2)
            image[top:top + 6, left:left + 6] = 255
    return images, labels


def test_grad_cam_peaks_in_the_quadrant_that_holds_the_signal():
    torch.manual_seed(0)
    prep = Preprocessing(size=SIDE)
    model = SeedCNN(3, SIDE, widths=[8, 16], dense=[16], dropout=0.0, batchnorm=False,
                    initial_age=30.0)
    images, labels = _quadrant_task(512, seed=0)
    inputs = torch.from_numpy(normalize(images, prep))
    targets = torch.from_numpy(labels).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        batch = slice(step % 8 * 64, step % 8 * 64 + 64)
        gender_logit, age = model(inputs[batch])
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(gender_logit, targets[batch])
                + ((age - 20 - 40 * targets[batch]) ** 2).mean() / 400)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test_images, test_labels = _quadrant_task(64, seed=1)
    signal = test_images[test_labels == 1]
    gender_maps, age_maps = grad_cam_maps(model, torch.from_numpy(normalize(signal, prep)))
    half = gender_maps.shape[1] // 2
    for maps in (gender_maps, age_maps):
        peaks = [np.unravel_index(np.argmax(m), m.shape) for m in maps]
        in_quadrant = np.mean([row < half and column < half for row, column in peaks])
        assert in_quadrant >= 0.9, in_quadrant


def _older_and_younger_task(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise images with a red square in the top-left quadrant that adds 20 years to the age
    and a blue one in the bottom-right quadrant that takes 20 away, each present or not."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (count, SIDE, SIDE, 3)).astype(np.uint8)
    older, younger = rng.integers(0, 2, (2, count))
    for image, up, down in zip(images, older, younger, strict=True):
        for present, offset, colour in ((up, 0, (255, 0, 0)), (down, SIDE // 2, (0, 0, 255))):
            if present:
                top, left = rng.integers(0, SIDE // 2 - 6, 2) + offset
                image[top:top + 6, left:left + 6] = colour
    return images, (40 + 20 * older - 20 * younger).astype(np.float32)


def test_the_signed_age_map_shows_older_and_younger_evidence_where_each_is():
    torch.manual_seed(0)
    prep = Preprocessing(size=SIDE)
    model = SeedCNN(3, SIDE, widths=[8, 16], dense=[16], dropout=0.0, batchnorm=False,
                    initial_age=40.0)
    images, ages = _older_and_younger_task(512, seed=0)
    inputs, targets = torch.from_numpy(normalize(images, prep)), torch.from_numpy(ages)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(200):
        batch = slice(step % 8 * 64, step % 8 * 64 + 64)
        loss = ((model(inputs[batch])[1] - targets[batch]) ** 2).mean() / 400
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test_images, test_ages = _older_and_younger_task(96, seed=1)
    both = test_images[test_ages == 40]  # both squares: as old as neither, but not blank
    _, age_maps = grad_cam_maps(model, torch.from_numpy(normalize(both, prep)))
    half = age_maps.shape[1] // 2
    assert age_maps.min() >= -1 and age_maps.max() <= 1
    top_left, bottom_right = age_maps[:, :half, :half], age_maps[:, half:, half:]
    # toward older where the red square is, toward younger where the blue one is
    assert np.mean(top_left.max((1, 2)) > 0) >= 0.95
    assert np.mean(bottom_right.min((1, 2)) < 0) >= 0.95
    mean_map = age_maps.mean(0)
    peak = np.unravel_index(np.argmax(mean_map), mean_map.shape)
    trough = np.unravel_index(np.argmin(mean_map), mean_map.shape)
    assert max(peak) < half <= min(trough), (peak, trough)


def test_the_closed_form_age_map_is_signed_like_the_evidence():
    """Feature 0 raises the age and lights the top rows; feature 1 lowers it and lights the
    bottom rows: the map is positive on top, negative below, and not blank for a young face."""
    heads = LinearHeads(gender_weight=np.zeros(2, np.float32),
                        age_weight=np.stack([np.linspace(-1, 1, 101), np.linspace(1, -1, 101)],
                                            axis=1).astype(np.float32),
                        age_bias=np.zeros(101, np.float32),
                        age_bins=np.arange(101, dtype=np.float32))
    feature_map = np.zeros((2, 2, 4, 4), np.float32)
    feature_map[:, 0, :2] = 1.0
    feature_map[:, 1, 2:] = [[1.0], [3.0]]  # the second face: more younger evidence
    maps = age_cam(feature_map, heads)
    assert np.all(maps[:, :2] > 0) and np.all(maps[:, 2:] < 0)
    assert np.abs(maps).max() == pytest.approx(1.0)
    assert maps[1].min() == pytest.approx(-1.0)  # a young face's map is not blank


@pytest.fixture(scope="module")
def transfer_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNetV2 DLDL model like the bundled one (random weights, 5×5 last map), with
    calibration and flip averaging: the maps must ignore the flip."""
    prep = Preprocessing(size=160, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    config = dataclasses.replace(
        TINY, model=ModelConfig(architecture="transfer", backbone="mobilenet_v2",
                                pretrained=False, dropout=0.1),
        preprocessing=prep, age_loss="dldl")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("transfer") / "model.pt"
    calibration = Calibration(gender_temperature=1.3, age_temperature=0.9, flip=True)
    save_checkpoint(path, create_model(config.model, prep), config.to_dict(),
                    calibration=calibration.to_dict())
    return path


@pytest.fixture(scope="module")
def transfer_onnx(transfer_checkpoint: Path) -> Path:
    return export_onnx(transfer_checkpoint, transfer_checkpoint.with_suffix(".onnx"))


def test_onnx_class_activation_maps_equal_torch_grad_cam(transfer_checkpoint, transfer_onnx):
    faces = synthetic_faces(6, 160, seed=2).images
    onnx_explainer = load_explainer(transfer_onnx)
    torch_explainer = load_explainer(transfer_checkpoint)
    assert isinstance(onnx_explainer, OnnxExplainer)
    onnx_out, onnx_gender, onnx_age = onnx_explainer.explain(faces)
    torch_out, torch_gender, torch_age = torch_explainer.explain(faces)
    np.testing.assert_allclose(onnx_out.age, torch_out.age, atol=1e-3)
    assert onnx_gender.shape == torch_gender.shape == (6, 5, 5)
    for ours, theirs in ((onnx_gender, torch_gender), (onnx_age, torch_age)):
        shown = [(a, b) for a, b in zip(ours, theirs, strict=True) if np.abs(a).max() > 0]
        assert len(shown) >= 3  # a face whose every region argues against the answer has none
        assert all(np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99 for a, b in shown)
        assert all(np.abs(b).max() == 0 for a, b in zip(ours, theirs, strict=True)
                   if np.abs(a).max() == 0)
    assert (onnx_age < 0).any() and np.all(np.abs(onnx_age).max((1, 2)) == pytest.approx(1.0))


def test_an_onnx_file_without_the_feature_output_is_refused_with_advice(tmp_path):
    prep = Preprocessing(size=16)
    save_checkpoint(tmp_path / "seed.pt", create_model(TINY.model, prep), TINY.to_dict())
    exported = export_onnx(tmp_path / "seed.pt", tmp_path / "seed.onnx")
    backend = OnnxBackend(exported)
    assert not backend.has_feature_map
    assert backend.predict(synthetic_faces(2, 16).images).age.shape == (2,)
    with pytest.raises(ValueError, match="re-export"):
        load_explainer(exported)
    assert main(["explain", str(EXAMPLE), "--model", str(exported),
                 "--output", str(tmp_path / "out")]) == EXIT_ERROR


def test_explain_draws_a_panel_per_face_and_reports_bad_files(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    out = tmp_path / "panels"
    assert main(["explain", str(EXAMPLE), str(broken), "--output", str(out)]) == 1
    panel = out / "astronaut_face_face0.png"
    with Image.open(panel) as image:
        assert image.width >= 5 * 224 and image.height > 224
    assert main(["explain", str(EXAMPLE), "--task", "age", "--output", str(tmp_path / "a")]) \
        == EXIT_OK
    assert (tmp_path / "a" / "astronaut_face_face0.png").is_file()


def test_a_checkpoint_is_explained_with_grad_cam(tmp_path):
    torch.manual_seed(0)
    prep = Preprocessing(size=16)
    save_checkpoint(tmp_path / "seed.pt", create_model(TINY.model, prep), TINY.to_dict())
    explainer = load_explainer(tmp_path / "seed.pt")
    predictions, gender, age = explainer.explain(synthetic_faces(3, 16).images)
    assert explainer.methods == ("Grad-CAM", "Grad-CAM")
    assert gender.shape == age.shape == (3, 4, 4)
    assert predictions.age.shape == (3,)
    assert np.all((gender >= 0) & (gender <= 1))
    assert np.all((age >= -1) & (age <= 1)) and np.abs(age).max() == pytest.approx(1.0)
    sheet = worst_faces_sheet(synthetic_faces(3, 16).images, ["a", "b", "c"], explainer)
    assert sheet.height > 132  # the faces' row, and the age map's legend below it


def test_the_bundled_model_exposes_its_feature_map_for_explain():
    from agegender.inference.predictor import bundled_model_path

    backend = OnnxBackend(bundled_model_path(), threads=1)
    assert backend.has_feature_map
    faces = synthetic_faces(2, backend.preprocessing.size).images
    predictions, feature_map = backend.predict_with_feature_map(faces)
    np.testing.assert_array_equal(predictions.age, backend.predict(faces).age)
    assert feature_map.shape[:2] == (2, 1280)
