"""The benchmarks stay runnable: every `benchmarks/<name>.py` imports as `benchmarks.<name>` and
parses `--help` (`python -m benchmarks.<name>`), and the quick ones run for real on a few faces.

The `*_worker.py` scripts run by file path inside the peer's own virtual environment (no
agegender there), so they are only checked for what they import.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(path.stem for path in BENCHMARKS.glob("*.py") if path.stem != "__init__")
WORKERS = [name for name in SCRIPTS if name.endswith("_worker")]
MODULES = [name for name in SCRIPTS if name not in WORKERS and name != "common"]
READ_CROPS = ("perturbation_sensitivity", "robustness", "scene_controls", "synthetic_scenes")


def imported(name: str) -> set[str]:
    """The absolute module names `benchmarks/<name>.py` imports, at any depth."""
    tree = ast.parse((BENCHMARKS / f"{name}.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_modules_found():
    assert {"model_speed", "peer_comparison", "synthetic_scenes"} <= set(MODULES)
    assert {"peer_worker", "peer_folder_worker", "dlib_detector_worker"} <= set(WORKERS)


@pytest.mark.parametrize("name", [*MODULES, *WORKERS])
def test_no_script_imports_another(name: str):
    """Benchmarks share code through `benchmarks.common` only; workers import neither it nor
    agegender (their venv has neither)."""
    names = imported(name)
    assert not names & set(SCRIPTS), f"{name} imports a sibling script as a top-level module"
    ours = {n for n in names if n.split(".")[0] in ("benchmarks", "agegender")}
    if name in WORKERS:
        assert not ours, f"{name} runs outside the project's venv but imports {ours}"
    else:
        assert {n for n in ours if n.startswith("benchmarks")} <= {"benchmarks.common"}


@pytest.mark.parametrize("name", MODULES)
def test_help(name: str, capsys: pytest.CaptureFixture[str]):
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as stopped:
        module.main(["--help"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m benchmarks.{name} ")


def test_workers_are_launched_by_path():
    from benchmarks import detector_comparison, folder_speed, peer_comparison

    for path in (peer_comparison.WORKER, detector_comparison.WORKER, folder_speed.PEER_WORKER):
        assert path.is_file() and path.parent == BENCHMARKS


def test_checkpoint_ensemble_outputs(tmp_path: Path):
    """The checkpoint path without the archive: an untrained transfer model, 16 synthetic faces."""
    from agegender.models.checkpoint import save_checkpoint
    from agegender.models.factory import create_model
    from agegender.training.presets import get_preset
    from benchmarks import checkpoint_ensemble
    from tests.conftest import synthetic_faces

    config = get_preset("transfer-mobilenet_v2")
    model = create_model(config.model, config.preprocessing, load_pretrained=False)
    save_checkpoint(tmp_path / "t.pt", model, config.to_dict())
    data = synthetic_faces(16, config.preprocessing.size)
    result = checkpoint_ensemble.outputs(tmp_path / "t.pt", data)
    for split in checkpoint_ensemble.SPLITS:
        prob_female, ages = result[split]
        assert prob_female.shape == (len(data.rows(split)),) == ages.shape[:1]
        assert checkpoint_ensemble.figures(prob_female, ages, data, split).startswith(split)


@pytest.fixture(scope="module")
def read_once(archive: Path):
    """`read_split_crops` that decodes each split once for this file (4 s a read)."""
    from benchmarks.common import read_split_crops

    read: dict[tuple[str, str], list] = {}

    def cached(data: Path, split: str = "test") -> list:
        if (str(data), split) not in read:
            read[str(data), split] = read_split_crops(data, split)
        return read[str(data), split]

    return cached


@pytest.fixture
def crops_read_once(read_once, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in READ_CROPS:
        monkeypatch.setattr(f"benchmarks.{name}.read_split_crops", read_once)


def test_model_speed_runs(capsys: pytest.CaptureFixture[str]):
    from agegender.inference.predictor import bundled_model_path
    from benchmarks import model_speed

    model_speed.main([str(bundled_model_path()), "--repeats", "2", "--warmup", "1"])
    assert "ms per face, batch 1 " in capsys.readouterr().out


@pytest.mark.archive
@pytest.mark.usefixtures("crops_read_once")
def test_synthetic_scenes_runs(archive: Path, tmp_path: Path):
    from benchmarks import synthetic_scenes

    synthetic_scenes.main(["--data", str(archive), "--scenes", "2",
                           "--json", str(tmp_path / "scenes.json")])
    results = json.loads((tmp_path / "scenes.json").read_text())
    assert results["scenes"] == 2 and 0 <= results["recall"] <= 1


@pytest.mark.archive
@pytest.mark.usefixtures("crops_read_once")
def test_perturbation_sensitivity_runs(archive: Path, tmp_path: Path):
    from benchmarks import perturbation_sensitivity

    perturbation_sensitivity.main(["--data", str(archive), "--limit", "4", "--split", "test",
                                   "--json", str(tmp_path / "sensitivity.json")])
    results = json.loads((tmp_path / "sensitivity.json").read_text())
    assert results["faces"]["count"] == 4 and "mirror" in results


@pytest.mark.archive
@pytest.mark.usefixtures("crops_read_once")
def test_scene_controls_runs(archive: Path, capsys: pytest.CaptureFixture[str]):
    from benchmarks import scene_controls

    scene_controls.main(["--data", str(archive), "--faces", "2"])
    out = capsys.readouterr().out
    assert "noise, rotated 20°" in out and "landmarks + 2.0 px" in out


@pytest.mark.archive
@pytest.mark.usefixtures("crops_read_once")
def test_robustness_broken_runs(archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`agegender predict` (a subprocess, under /usr/bin/time) on 3 good and the broken files."""
    if not Path("/usr/bin/time").is_file():
        pytest.skip("/usr/bin/time (GNU time) not installed")
    # The `agegender` command of the interpreter running the tests, activated or not.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if shutil.which("agegender") is None:
        pytest.skip("no `agegender` command beside the interpreter")
    from benchmarks import robustness

    robustness.main(["broken", "--data", str(archive), "--good", "3",
                     "--json", str(tmp_path / "broken.json")])
    results = json.loads((tmp_path / "broken.json").read_text())
    assert results["exit_status"]["good_only"] == 0
    assert results["broken_reported"] == results["broken_files"]
    assert results["good_files_with_identical_rows"] == 3


def test_steadiness_measures_each_encoding_against_the_original():
    import numpy as np

    from benchmarks.steadiness import ENCODINGS, change_figures, reencoded

    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3)).astype(np.uint8)
    for encoding in ENCODINGS:
        changed = reencoded(image, encoding, 50)
        assert changed.shape == image.shape and not np.array_equal(changed, image)
    figures = change_figures(np.array([10.0, 20.0]), np.array([True, False]),
                             np.array([11.0, 17.0]), np.array([True, True]))
    assert figures == {"n": 2, "mean_abs_age_change": 2.0, "max_abs_age_change": 3.0,
                       "gender_unchanged": 0.5}


@pytest.mark.archive
def test_generalisation_runs(archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The bundled model on the UTKFace views of the 4 val faces among 40 decoded ones (LFW not
    given, so its view is skipped and said so)."""
    from benchmarks import generalisation

    generalisation.main(["--utkface", str(archive), "--limit", "40",
                         "--json", str(tmp_path / "views.json")])
    out = capsys.readouterr().out
    assert "skipped view lfw: no --lfw data given" in out and "utkface-faded" in out
    results = json.loads((tmp_path / "views.json").read_text())
    figures = results["figures"]["agegender_mobilenet_v2"]
    assert list(figures) == ["utkface", "utkface-gray", "utkface-faded", "utkface-noisy"]
    assert all(view["n"] == 4 and 0 <= view["gender_acc"] <= 1 for view in figures.values())
