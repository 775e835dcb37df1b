"""Training under torchrun: rank shards, and the two torchrun commands of docs/scale.md run for real
(2 CPU processes with gloo; 2 launchers on 127.0.0.1 standing in for 2 machines)."""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from agegender.cli.main import EXIT_OK, main
from agegender.training.distributed import Ranks, shard, step_batches

SCALE_PAGE = Path(__file__).resolve().parents[1] / "docs" / "scale.md"
QUICK = ["--epochs", "1", "--limit", "300", "--batch-size", "16"]
"""What the tests add to the page's commands: a run of seconds."""


def _page_command(option: str, values: dict[str, str]) -> list[str]:
    """The scale page's torchrun line that has `option`, with the values of the options in
    `values` replaced, run by this Python (`torchrun` is `python -m torch.distributed.run`)."""
    lines = [line for line in SCALE_PAGE.read_text().splitlines()
             if line.startswith("torchrun ") and f" {option} " in line]
    assert len(lines) == 1, f"{SCALE_PAGE}: one torchrun line with {option}"
    words = shlex.split(lines[0])
    for name, value in values.items():
        words[words.index(name) + 1] = value
    return [sys.executable, "-m", "torch.distributed.run", *words[1:]]


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


# -- shards ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("faces", "batch_size", "world_size"),
                         [(300, 16, 2), (233, 16, 2), (233, 64, 3), (65, 64, 4), (7, 64, 4),
                          (100, 10, 1)])
def test_the_ranks_shards_partition_each_epoch(faces, batch_size, world_size):
    order = np.random.default_rng(0).permutation(faces) + 1000
    per_rank = [step_batches(order, batch_size, Ranks(rank, world_size))
                for rank in range(world_size)]
    assert len({len(batches) for batches in per_rank}) == 1, "ranks take the same steps"
    assert all(len(batch) for batches in per_rank for batch in batches), "no empty batch"
    read = np.concatenate([batch for batches in per_rank for batch in batches])
    assert sorted(read.tolist()) == sorted(order.tolist()), "every face once"
    # each step's pieces together are one global batch of one process, in order
    steps = [np.concatenate(pieces) for pieces in zip(*per_rank, strict=True)]
    assert np.array_equal(np.concatenate(steps), order)
    assert all(len(step) <= 2 * batch_size for step in steps)


def test_one_process_steps_through_the_plain_batches():
    order = np.arange(100)
    batches = step_batches(order, 32, Ranks())
    assert [len(batch) for batch in batches] == [32, 32, 32, 4]


def test_more_processes_than_faces_is_refused():
    with pytest.raises(ValueError, match="3 training faces"):
        step_batches(np.arange(3), 16, Ranks(0, 4))


def test_validation_shards_partition_the_split():
    rows = np.arange(30)
    parts = [shard(rows, Ranks(rank, 4)) for rank in range(4)]
    assert np.array_equal(np.concatenate(parts), rows)


# -- torchrun --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_process_run(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    _run(_page_command("--standalone", {"--nproc_per_node": "2", "--data": str(archive),
                                          "--out": str(out)}) + QUICK)
    return out


@pytest.mark.archive
def test_two_processes_write_one_run_whose_loss_falls(two_process_run: Path):
    for name in ("best.pt", "last.pt", "config.yaml", "log.csv", "metrics.json", "curves.png"):
        assert (two_process_run / name).stat().st_size > 0, name
    assert [row["epoch"] for row in _rows(two_process_run / "log.csv")] == ["1"]
    losses = [float(row["loss"]) for row in _rows(two_process_run / "steps.csv")]
    # 300 faces: 233 train, in global batches of 16, shared by 2 ranks
    assert len(losses) == 15
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


@pytest.mark.archive
def test_the_two_process_checkpoint_predicts(two_process_run: Path, archive: Path,
                                             tmp_path: Path):
    with tarfile.open(archive, "r|gz") as stream:
        for member in stream:
            if member.isfile() and member.name.endswith(".jpg") and " " not in member.name:
                (tmp_path / Path(member.name).name).write_bytes(
                    stream.extractfile(member).read())
                break
    output = tmp_path / "rows.csv"
    assert main(["predict", str(tmp_path), "--model", str(two_process_run / "best.pt"),
                 "--output", str(output)]) == EXIT_OK
    rows = _rows(output)
    assert len(rows) == 1 and rows[0]["error"] == "" and 0 <= float(rows[0]["age"]) <= 120


@pytest.mark.archive
def test_a_run_resumes_under_torchrun(two_process_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(two_process_run, run)
    prefix = _page_command("--standalone", {"--nproc_per_node": "2"})
    launcher = prefix[:prefix.index("train") + 1]
    _run([*launcher, "--resume", "--out", str(run), "--epochs", "2"])
    assert [row["epoch"] for row in _rows(run / "log.csv")] == ["1", "2"]
    assert [row["epoch"] for row in _rows(run / "steps.csv")] == ["1"] * 15 + ["2"] * 15


@pytest.mark.archive
def test_two_launchers_train_as_two_machines(archive: Path, two_process_run: Path,
                                             tmp_path: Path):
    out = tmp_path / "run"
    command = _page_command("--nnodes", {
        "--nnodes": "2", "--nproc_per_node": "1",
        "--rdzv-endpoint": f"127.0.0.1:{_free_port()}", "--data": str(archive),
        "--out": str(out)}) + QUICK
    launchers = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    errors = [launcher.communicate(timeout=600)[1] for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], errors[0][-3000:]
    assert (out / "best.pt").is_file() and (out / "metrics.json").is_file()
    # the same shards as two processes on one machine: the same losses, up to the rounding
    # of a different thread count
    ours = [float(row["loss"]) for row in _rows(out / "steps.csv")]
    theirs = [float(row["loss"]) for row in _rows(two_process_run / "steps.csv")]
    assert np.allclose(ours, theirs, atol=0.05)


RANK_SCRIPT = """
import sys
from dataclasses import replace
from pathlib import Path

import torch

from agegender.models.config import ModelConfig
from agegender.training import distributed
from agegender.training.loop import Trainer
from agegender.training.presets import get_preset
from tests.conftest import synthetic_faces

out = Path(sys.argv[1])
ranks, device = distributed.start("cpu")
config = get_preset("transfer-mobilenet_v2")
config = replace(config, epochs=2, batch_size=8, warmup_fraction=0.3,
                 freeze_backbone_epochs=1, consistency_weight=0.5, freeze_batchnorm=True,
                 model=replace(config.model, pretrained=False),
                 preprocessing=replace(config.preprocessing, size=64))
trainer = Trainer(config, synthetic_faces(48, 64), out, device=device)
frozen = [p.detach().clone() for p in trainer.model.backbone.parameters()]
trainer._train_epoch()  # the frozen first epoch: the backbone must not move
assert all(torch.equal(a, b) for a, b in zip(frozen, trainer.model.backbone.parameters()))
trainer.epoch = 1
trainer._train_epoch()  # thawed: DDP wrapped again, and the backbone trains
assert not all(torch.equal(a, b) for a, b in zip(frozen, trainer.model.backbone.parameters()))
weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
torch.save(weights, out / f"weights_{ranks.rank}.pt")
distributed.stop()
"""


def test_a_frozen_epoch_and_the_consistency_term_train_under_ddp(tmp_path: Path):
    """A transfer model (no pretrained weights) whose backbone is frozen for the first epoch,
    with the consistency term's second forward pass, on 2 CPU ranks: the backbone stays put,
    then trains, and both ranks end with the same weights."""
    import torch

    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    root = str(SCALE_PAGE.parents[1])  # the script imports tests.conftest
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          str(script), str(tmp_path)], env={**os.environ, "PYTHONPATH": path})
    first, second = (torch.load(tmp_path / f"weights_{rank}.pt") for rank in range(2))
    assert torch.equal(first, second)
