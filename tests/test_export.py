"""ONNX export and the onnxruntime backend: same predictions as PyTorch, no torch at inference."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from agegender import __version__
from agegender.cli.main import EXIT_ERROR, EXIT_OK, main
from agegender.data.cache import load_faces
from agegender.data.sources import open_source
from agegender.export import OPSET, export_onnx
from agegender.inference.backends import (
    OnnxBackend,
    TorchCheckpointBackend,
    load_backend,
    predict_in_batches,
)
from agegender.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from agegender.models.checkpoint import load_checkpoint, save_checkpoint
from agegender.models.config import ModelConfig
from agegender.models.deploy import Calibration
from agegender.models.factory import create_model
from agegender.preprocessing import Preprocessing
from agegender.training.loop import Trainer
from tests.conftest import synthetic_faces
from tests.test_training import TINY


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    Trainer(dataclasses.replace(TINY, epochs=1), synthetic_faces(64, 16), out).fit()
    return out / "last.pt"


@pytest.fixture(scope="module")
def onnx_model(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported through the command line, so every test below also covers `agegender export`."""
    output = tmp_path_factory.mktemp("export") / "model.onnx"
    assert main(["export", str(checkpoint), "--output", str(output)]) == EXIT_OK
    return output


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Faces the model never trained on (another seed), uint8 N×16×16×3."""
    return synthetic_faces(40, 16, seed=1).images


def _assert_same_predictions(onnx_out, torch_out) -> None:
    for name in ("age", "age_low", "age_high"):
        np.testing.assert_allclose(getattr(onnx_out, name), getattr(torch_out, name),
                                   rtol=0, atol=1e-4)
    np.testing.assert_allclose(onnx_out.prob_female, torch_out.prob_female, rtol=0, atol=1e-5)


def test_onnx_matches_pytorch_on_the_same_faces(checkpoint, onnx_model, faces):
    torch_out = predict_in_batches(TorchCheckpointBackend.from_checkpoint(checkpoint), faces)
    onnx_out = predict_in_batches(OnnxBackend(onnx_model, threads=1), faces, batch_size=16)
    assert onnx_out.age.dtype == onnx_out.prob_female.dtype == np.float32
    assert onnx_out.age.shape == onnx_out.prob_female.shape == (len(faces),)
    assert np.all((onnx_out.prob_female > 0) & (onnx_out.prob_female < 1))
    _assert_same_predictions(onnx_out, torch_out)


@pytest.mark.parametrize("batch", [1, 7])
def test_batch_size_is_dynamic(checkpoint, onnx_model, faces, batch):
    onnx_out = OnnxBackend(onnx_model, threads=1).predict(faces[:batch])
    assert onnx_out.age.shape == onnx_out.prob_female.shape == (batch,)
    _assert_same_predictions(
        onnx_out, TorchCheckpointBackend.from_checkpoint(checkpoint).predict(faces[:batch]))


def test_metadata_round_trips_and_the_graph_is_as_documented(checkpoint, onnx_model):
    config = load_checkpoint(checkpoint)
    backend = load_backend(onnx_model)
    assert isinstance(backend, OnnxBackend)
    assert backend.preprocessing == config.preprocessing == Preprocessing(size=16)
    assert backend.metadata["agegender.version"] == __version__
    assert backend.metadata["agegender.architecture"] == "seed-cnn"
    assert backend.metadata["agegender.preset"] == "tiny"
    assert json.loads(backend.metadata["agegender.labels"])["gender"] == ["male", "female"]

    model = onnx.load(onnx_model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == OPSET
    (image,) = model.graph.input
    assert image.name == "image"
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 16, 16]
    assert [o.name for o in model.graph.output] == ["age", "age_low", "age_high", "prob_female"]
    assert [p.name for p in onnx_model.parent.iterdir()] == ["model.onnx"]  # no temp file left


def test_grayscale_two_network_model_exports_too(tmp_path, faces):
    prep = Preprocessing(size=16, grayscale=True)
    config = dataclasses.replace(TINY, model=ModelConfig(
        architecture="seed-separate", widths=[8], dense=[16]), preprocessing=prep)
    save_checkpoint(tmp_path / "gray.pt", create_model(config.model, prep), config.to_dict())
    backend = OnnxBackend(export_onnx(tmp_path / "gray.pt", tmp_path / "gray.onnx"), threads=1)
    assert backend.preprocessing == prep
    gray = faces[:5, :, :, :1]
    _assert_same_predictions(backend.predict(gray),
                             TorchCheckpointBackend.from_checkpoint(tmp_path / "gray.pt")
                             .predict(gray))


def test_an_antialiased_transfer_model_exports_with_its_blur_filters(tmp_path):
    prep = Preprocessing(size=32)
    config = dataclasses.replace(
        TINY, model=ModelConfig(architecture="transfer", backbone="mobilenet_v2",
                                pretrained=False, dropout=0.1, antialias=True),
        preprocessing=prep, age_loss="dldl")
    plain = dataclasses.replace(config, model=dataclasses.replace(config.model, antialias=False))
    save_checkpoint(tmp_path / "aa.pt", create_model(config.model, prep), config.to_dict())
    save_checkpoint(tmp_path / "plain.pt", create_model(plain.model, prep), plain.to_dict())
    faces = synthetic_faces(6, 32, seed=3).images
    exported = export_onnx(tmp_path / "aa.pt", tmp_path / "aa.onnx")
    _assert_same_predictions(OnnxBackend(exported, threads=1).predict(faces),
                             TorchCheckpointBackend.from_checkpoint(tmp_path / "aa.pt")
                             .predict(faces))

    def convolutions(path: Path) -> int:
        return sum(node.op_type == "Conv" for node in onnx.load(path).graph.node)

    # one blur before each of MobileNetV2's five strided convolutions
    assert convolutions(exported) == convolutions(
        export_onnx(tmp_path / "plain.pt", tmp_path / "plain.onnx")) + 5


def test_a_luminance_model_exports_and_reads_only_brightness(tmp_path):
    prep = Preprocessing(size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    config = dataclasses.replace(
        TINY, model=ModelConfig(architecture="transfer", backbone="mobilenet_v2",
                                pretrained=False, dropout=0.1, luminance=True),
        preprocessing=prep, age_loss="dldl")
    model = _varying_network(create_model(config.model, prep), synthetic_faces(64, 32).images)
    save_checkpoint(tmp_path / "luma.pt", model, config.to_dict())
    colour, recoloured = _same_luma_other_colour(synthetic_faces(6, 32, seed=3).images)
    exported = OnnxBackend(export_onnx(tmp_path / "luma.pt", tmp_path / "luma.onnx"), threads=1)
    torch_backend = TorchCheckpointBackend.from_checkpoint(tmp_path / "luma.pt")
    for field in ("age", "prob_female"):  # a random network: float error is larger than usual
        np.testing.assert_allclose(getattr(exported.predict(colour), field),
                                   getattr(torch_backend.predict(colour), field), atol=0.02)
    # a face whose colours are swapped around but whose brightness is kept gets the same answer
    for field, tolerance in (("age", 0.01), ("prob_female", 1e-3)):
        np.testing.assert_allclose(getattr(exported.predict(recoloured), field),
                                   getattr(exported.predict(colour), field), atol=tolerance)
    plain = dataclasses.replace(config, model=dataclasses.replace(config.model, luminance=False))
    save_checkpoint(tmp_path / "plain.pt", model, plain.to_dict())
    rgb = TorchCheckpointBackend.from_checkpoint(tmp_path / "plain.pt")
    assert np.abs(rgb.predict(recoloured).age - rgb.predict(colour).age).max() > 0.5


def _same_luma_other_colour(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`faces` (kept within 15…240), and the same with every pixel's colour shifted by
    (+15 R, −9 G, +7 B), which keeps its luma exactly: 0.299·15 − 0.587·9 + 0.114·7 = 0."""
    kept = np.clip(faces, 15, 240)
    return kept, (kept.astype(np.int16) + np.array([15, -9, 7])).astype(np.uint8)


def _varying_network(model: torch.nn.Module, faces: np.ndarray) -> torch.nn.Module:
    """`model` with BatchNorm statistics of `faces` and random heads: freshly initialised, its
    features shrink to ~1e-10 and every face would get the same answer."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average of what it sees
            module.reset_running_stats()
    torch.manual_seed(0)
    for head in (model.gender_head, model.age_head):
        torch.nn.init.normal_(head.weight, std=0.1)
    with torch.no_grad():
        model.train()(torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255)
    return model.eval()


def test_calibration_and_flip_averaging_are_inside_the_exported_graph(tmp_path):
    prep = Preprocessing(size=32)
    config = dataclasses.replace(
        TINY, model=ModelConfig(architecture="transfer", backbone="mobilenet_v2",
                                pretrained=False, dropout=0.1), preprocessing=prep,
        age_loss="dldl")
    model = create_model(config.model, prep)
    calibration = Calibration(gender_temperature=2.0, age_temperature=1.5, flip=True,
                              age_median=True)
    save_checkpoint(tmp_path / "plain.pt", model, config.to_dict())
    save_checkpoint(tmp_path / "calibrated.pt", model, config.to_dict(),
                    calibration=calibration.to_dict())
    faces = synthetic_faces(6, 32, seed=3).images
    plain = TorchCheckpointBackend.from_checkpoint(tmp_path / "plain.pt").predict(faces)
    torch_out = TorchCheckpointBackend.from_checkpoint(tmp_path / "calibrated.pt").predict(faces)
    onnx_out = OnnxBackend(export_onnx(tmp_path / "calibrated.pt", tmp_path / "c.onnx"),
                           threads=1).predict(faces)
    _assert_same_predictions(onnx_out, torch_out)
    mirrored = TorchCheckpointBackend.from_checkpoint(tmp_path / "plain.pt").predict(
        np.ascontiguousarray(faces[:, :, ::-1]))
    logit = (np.log(plain.prob_female / (1 - plain.prob_female))
             + np.log(mirrored.prob_female / (1 - mirrored.prob_female))) / 2
    np.testing.assert_allclose(torch_out.prob_female, 1 / (1 + np.exp(-logit / 2.0)), atol=1e-4)
    # the median read-out: between the ends of the 80 % interval, and not the expectation
    assert (onnx_out.age_low <= onnx_out.age).all() and (onnx_out.age <= onnx_out.age_high).all()
    expectation = TorchCheckpointBackend.from_checkpoint(tmp_path / "plain.pt").predict(faces).age
    assert not np.allclose(torch_out.age, expectation, atol=1e-3)


def test_predict_command_runs_the_onnx_model(onnx_model, tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for name in ("a.png", "b.png"):
        images.append(tmp_path / name)
        Image.fromarray(rng.integers(0, 256, (30, 24, 3), dtype=np.uint8)).save(images[-1])
    output = tmp_path / "predictions.csv"
    code = main(["predict", *map(str, images), "--model", str(onnx_model),
                 "--output", str(output)])
    assert code == EXIT_OK
    with output.open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["file"] for row in rows] == [str(path) for path in images]
    for row in rows:
        assert row["error"] == "" and row["gender"] in ("male", "female")
        assert float(row["age"]) >= 0 and 0.5 <= float(row["gender_prob"]) <= 1


def test_onnx_backend_threads_default_to_all_available_cores(onnx_model):
    def threads(backend: OnnxBackend) -> int:
        return backend.session.get_session_options().intra_op_num_threads

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads(OnnxBackend(onnx_model)) == cores
    assert threads(OnnxBackend(onnx_model, threads=1)) == 1


def _onnx_without_metadata(path: Path) -> None:
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, 16, 16])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["age"])], "plain",
                              [value], [helper.make_tensor_value_info("age", TensorProto.FLOAT,
                                                                      [None, 3, 16, 16])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)


@pytest.mark.parametrize(("make", "error", "message"), [
    (None, FileNotFoundError, "no such model file"),
    (lambda path: path.write_bytes(b"not a protobuf"), ValueError, "not a readable ONNX model"),
    (_onnx_without_metadata, ValueError, "without agegender metadata"),
])
def test_bad_model_files_give_errors_that_name_them(tmp_path, make, error, message):
    path = tmp_path / "bad.onnx"
    if make:
        make(path)
    for load in (load_backend, OnnxBackend):
        with pytest.raises(error, match=message) as caught:
            load(path)
        assert str(path) in str(caught.value)
    assert main(["predict", str(tmp_path), "--model", str(path)]) == EXIT_ERROR


@pytest.mark.parametrize(("key", "value", "message"), [
    ("agegender.format_version", "99", "agegender ONNX format '99'"),
    ("agegender.labels", json.dumps({"gender": ["female", "male"]}), "gender labels differ"),
])
def test_models_from_another_convention_are_refused(onnx_model, tmp_path, key, value, message):
    model = onnx.load(onnx_model)
    onnx.helper.set_model_props(model, {p.key: value if p.key == key else p.value
                                        for p in model.metadata_props})
    onnx.save(model, tmp_path / "other.onnx")
    with pytest.raises(ValueError, match=message):
        OnnxBackend(tmp_path / "other.onnx")


def test_faces_of_the_wrong_size_are_refused(onnx_model, faces):
    with pytest.raises(ValueError, match="N×16×16×3"):
        OnnxBackend(onnx_model, threads=1).predict(faces[:, :8])


def test_export_of_a_missing_checkpoint_fails_cleanly(tmp_path):
    assert main(["export", str(tmp_path / "missing.pt")]) == EXIT_ERROR
    assert not list(tmp_path.iterdir())


def test_onnx_inference_never_imports_torch(onnx_model):
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from agegender.inference import Predictor\n"
        "rows = Predictor(sys.argv[1]).predict(np.zeros((30, 20, 3), np.uint8))\n"
        "assert len(rows) == 1 and rows[0].error is None, rows\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script, str(onnx_model)],
                            capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_bundled_architecture_matches_in_onnx_on_real_aligned_utkface_crops(archive,
                                                                                 tmp_path):
    """The bundled model's kind (aligned 112-px MobileNetV2, DLDL head, calibration, flip) in
    PyTorch and in onnxruntime, on real faces aligned by the detector."""
    prep = Preprocessing(size=112, mean=IMAGENET_MEAN, std=IMAGENET_STD, align=True)
    config = dataclasses.replace(
        TINY, model=ModelConfig(architecture="transfer", backbone="mobilenet_v2",
                                pretrained=False, dropout=0.1), preprocessing=prep,
        age_loss="dldl")
    calibration = Calibration(gender_temperature=1.3, age_temperature=1.2, flip=True)
    save_checkpoint(tmp_path / "m.pt", create_model(config.model, prep), config.to_dict(),
                    calibration=calibration.to_dict())
    faces = load_faces(open_source(archive), range(24), prep, progress=False).images
    onnx_out = OnnxBackend(export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")).predict(faces)
    _assert_same_predictions(onnx_out, TorchCheckpointBackend.from_checkpoint(
        tmp_path / "m.pt").predict(faces))
    assert OnnxBackend(tmp_path / "m.onnx").preprocessing == prep
    assert np.all((onnx_out.age_low <= onnx_out.age) & (onnx_out.age <= onnx_out.age_high))
