"""Checkpoints open as tensors and plain data only: a file that would run code is refused."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from agegender.cli.main import EXIT_ERROR, EXIT_OK, main
from agegender.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from agegender.models.config import ModelConfig
from agegender.models.factory import create_model
from agegender.preprocessing import Preprocessing
from agegender.training.config import TrainConfig

TINY = TrainConfig(preset="tiny", preprocessing=Preprocessing(size=16),
                   model=ModelConfig(architecture="seed-cnn", widths=[8], dense=[8]))


class _RunsCode:
    """Unpickling this calls os.system: what a hostile `.pt` does."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _evil_checkpoint(path, marker):
    model = create_model(TINY.model, TINY.preprocessing)
    torch.save({"format_version": 1, "model_state": model.state_dict(),
                "config": TINY.to_dict(), "payload": _RunsCode(str(marker))}, path)


def test_a_checkpoint_that_would_run_code_is_refused_and_its_code_never_runs(tmp_path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    _evil_checkpoint(evil, marker)
    with pytest.raises(ValueError, match=r"refused.*convert-checkpoint"):
        read_checkpoint(evil)
    assert main(["predict", str(tmp_path), "--model", str(evil)]) == EXIT_ERROR
    assert main(["export", str(evil), "--output", str(tmp_path / "x.onnx")]) == EXIT_ERROR
    assert not marker.exists()


def test_an_old_checkpoint_with_numpy_values_converts_to_one_that_opens_safely(tmp_path):
    model = create_model(TINY.model, TINY.preprocessing)
    old = tmp_path / "old.pt"
    torch.save({"format_version": 1, "model_state": model.state_dict(), "config": TINY.to_dict(),
                "best_val_loss": np.float64(0.5), "calibration": {"gender_temperature":
                                                                   np.float32(1.5)}}, old)
    with pytest.raises(ValueError, match="agegender convert-checkpoint"):
        load_checkpoint(old)
    assert main(["convert-checkpoint", str(old), "--output", str(tmp_path / "new.pt")]) == EXIT_OK
    converted = read_checkpoint(tmp_path / "new.pt")
    assert converted["best_val_loss"] == 0.5 and isinstance(converted["best_val_loss"], float)
    loaded = load_checkpoint(tmp_path / "new.pt")
    assert loaded.calibration.gender_temperature == 1.5
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], value, rtol=0, atol=0)


def test_checkpoints_the_project_writes_open_safely_and_rebuild_their_model(tmp_path):
    model = create_model(TINY.model, TINY.preprocessing)
    save_checkpoint(tmp_path / "m.pt", model, TINY.to_dict(), epoch=3)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["epoch"] == 3
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.preprocessing == TINY.preprocessing and loaded.preset == "tiny"
    assert dataclasses.asdict(loaded.model_config) == dataclasses.asdict(TINY.model)
    assert not loaded.model.training


def test_files_that_are_not_checkpoints_are_named_in_the_error(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.pt: not a readable agegender checkpoint"):
        read_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: not an agegender checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        read_checkpoint(tmp_path / "missing.pt")
