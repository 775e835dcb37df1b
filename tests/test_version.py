"""`agegender --version`: the package version and which bundled model this install holds."""

from __future__ import annotations

import re

import pytest

from agegender import __version__
from agegender.bundled import bundled_record, file_sha256
from agegender.cli.main import main
from agegender.inference.predictor import bundled_model_path


def test_the_record_describes_the_shipped_model_file():
    """Replacing the bundled model means updating assets/bundled_model.json (its date)."""
    record = bundled_record()
    assert record.sha256 == file_sha256(bundled_model_path())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", record.trained)


def test_version_prints_the_package_version_and_the_model_identity(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    record = bundled_record()
    assert lines == [f"agegender {__version__}",
                     f"bundled model agegender_mobilenet_v2.onnx sha256:{record.sha256[:12]} "
                     f"trained {record.trained}"]


def test_version_says_when_the_model_file_is_not_the_recorded_one(monkeypatch, tmp_path, capsys):
    other = tmp_path / "agegender_mobilenet_v2.onnx"
    other.write_bytes(b"another model")
    monkeypatch.setattr("agegender.inference.predictor.bundled_model_path", lambda: other)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "not the recorded file: training date unknown" in capsys.readouterr().out
