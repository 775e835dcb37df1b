"""A whole training run: data, the epoch loop, calibration on validation, the test report."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np
import torch

from agegender.atomic import write_json_atomic
from agegender.data.labelled import LabelledFaces, concatenate, load_labelled_faces
from agegender.evaluation.evaluate import evaluate_rows, summarize
from agegender.inference.backends import TorchCheckpointBackend
from agegender.training import distributed
from agegender.training.calibrate import calibrate_checkpoint
from agegender.training.config import TrainConfig
from agegender.training.loop import Trainer

log = logging.getLogger("agegender")


def resolve_device(name: str) -> str:
    """`auto` → `cuda` when PyTorch sees a GPU, else `cpu`; other names are checked and kept."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: PyTorch sees no CUDA GPU on this machine")
    return name


def train(config: TrainConfig, out_dir: Path, resume: bool = False,
          cache_dir: Path | None = None, device: str = "auto") -> dict:
    """Load `config.data`, train (or resume), then evaluate the best checkpoint on test.

    Under torchrun this is one rank of a data-parallel run (`training.distributed`); the
    ranks other than 0 return no metrics.
    """
    if not config.data:
        raise ValueError("no data to train on: give --data (or a --config that names it)")
    if not resume and (out_dir / "last.pt").exists():
        raise FileExistsError(f"{out_dir} already holds a run; pass --resume to continue it "
                              "or choose another --out")
    ranks, device = distributed.start(resolve_device(device))
    try:
        torch.set_num_threads(distributed.threads_per_rank(ranks))
        started = time.perf_counter()
        data = distributed.build_in_turn(ranks, lambda: concatenate([
            load_labelled_faces(Path(path), config.preprocessing,
                                split_file=config.split_file and Path(config.split_file),
                                limit=config.limit, seed=config.seed, cache_dir=cache_dir,
                                progress=ranks.is_main)
            for path in config.data]))
        metrics = train_on_faces(config, data, out_dir, resume=resume, device=device,
                                 data_seconds=time.perf_counter() - started)
        distributed.leave_together(ranks)
        return metrics
    finally:
        distributed.stop()


def train_on_faces(config: TrainConfig, data: LabelledFaces, out_dir: Path, resume: bool = False,
                   device: str = "auto", data_seconds: float = 0.0) -> dict:
    """Train on faces already decoded, calibrate on validation, evaluate on test (rank 0
    alone, under torchrun: the others return no metrics)."""
    log.info("data ready in %.1fs: %s", data_seconds,
             ", ".join(f"{s} {len(data.rows(s))}" for s in ("train", "val", "test")))
    trainer = Trainer(config, data, out_dir, device=resolve_device(device))
    if resume:
        trainer.resume()
    trainer.fit()
    if not trainer.ranks.is_main:
        return {}
    if len(data.rows("val")):
        calibrate_checkpoint(out_dir / "best.pt", data, allow_flip=config.calibrate_flip)
    metrics = evaluate_test(data, out_dir)
    if metrics:
        metrics["timing"] = {"data_seconds": round(data_seconds, 1),
                             "epoch_seconds": _epoch_seconds(out_dir / "times.csv")}
        write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics


def evaluate_test(data: LabelledFaces, out_dir: Path) -> dict:
    """Evaluate the run's `best.pt` on each dataset's test split: the first dataset into
    `test_report/` (its figures head the result), any other into `test_report_<k>_<name>/`
    (its figures under `datasets`)."""
    backend = TorchCheckpointBackend.from_checkpoint(out_dir / "best.pt")
    reports = {}
    for index, name in enumerate(data.dataset_names):
        rows = np.flatnonzero((data.split == "test") & (data.dataset == index))
        if len(rows):
            folder = "test_report" if not reports else f"test_report_{index}_{name}"
            reports[name] = summarize(evaluate_rows(backend, data, rows, out_dir / folder),
                                      split="test")
    if not reports:
        log.warning("the test split is empty: no test metrics")
        return {}
    first = next(iter(reports.values()))
    return first if len(reports) == 1 else {**first, "datasets": reports}


def _epoch_seconds(times_path: Path) -> list[float]:
    if not times_path.exists():  # a run resumed from a version that logged no times
        return []
    with times_path.open(newline="") as stream:
        return [float(row["seconds"]) for row in csv.DictReader(stream)]
