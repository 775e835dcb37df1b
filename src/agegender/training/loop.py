"""The epoch loop: Adam, one-cycle learning rate, validation, early stopping, resumable state."""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from agegender.data.labelled import LabelledFaces
from agegender.evaluation.plots import plot_training_curves
from agegender.models.checkpoint import read_checkpoint, save_checkpoint
from agegender.models.config import ModelConfig
from agegender.models.factory import create_model
from agegender.training import distributed
from agegender.training.batches import make_batch
from agegender.training.config import BUNDLED_INIT, TrainConfig
from agegender.training.model import TrainingModel
from agegender.training.sampling import epoch_order, sampling_weights
from agegender.training.step import StepResult, TrainStep
from agegender.training.teachers import Teachers, read_soft_targets

log = logging.getLogger("agegender")

LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_mae", "train_gender_acc",
               "val_loss", "val_mae", "val_gender_acc"]
"""`log.csv`: what the run learnt per epoch, identical for identical runs."""

TIME_COLUMNS = ["epoch", "seconds"]
"""`times.csv`: how long each epoch took, apart so `log.csv` does not depend on the machine."""

STEP_COLUMNS = ["epoch", "step", "loss"]
"""`steps.csv`: the training loss of every step (averaged over the ranks), to see it fall
within an epoch."""


@dataclass
class EpochStats:
    loss: float
    mae: float | None
    gender_acc: float | None


class _Accumulator:
    """Sums masked per-sample losses and errors over an epoch."""

    def __init__(self) -> None:
        self.loss = self.batches = self.abs_err = self.n_age = self.correct = self.n_gender = 0.0

    def add(self, result: StepResult) -> float:
        """Count one step in; returns its loss (read from the device once)."""
        loss = result.loss.item()
        self.loss += loss
        self.batches += 1
        self.abs_err += float(result.age_errors.sum())
        self.n_age += result.age_errors.numel()
        self.correct += float(result.gender_hits.sum())
        self.n_gender += result.gender_hits.numel()
        return loss

    def stats(self, device: torch.device | None = None) -> EpochStats:
        """The epoch's figures; with `device`, over every rank's batches (the same on all)."""
        sums = [self.loss, self.batches, self.abs_err, self.n_age, self.correct, self.n_gender]
        if device is not None:
            sums = distributed.all_reduce_sums(sums, device)
        loss, batches, abs_err, n_age, correct, n_gender = sums
        return EpochStats(
            loss=loss / max(batches, 1),
            mae=abs_err / n_age if n_age else None,
            gender_acc=correct / n_gender if n_gender else None,
        )


class Trainer:
    """Owns one run directory: checkpoints, config, log and curves.

    Under torchrun every rank runs one Trainer on its shard of each batch; rank 0 alone writes
    the run directory (see `training.distributed`).
    """

    def __init__(self, config: TrainConfig, data: LabelledFaces, out_dir: Path,
                 device: str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.ranks = distributed.current()
        self.data = data
        self.out_dir = out_dir
        self.train_rows = data.rows("train")
        self.val_rows = data.rows("val")
        if len(self.train_rows) == 0:
            raise ValueError("the training split is empty")
        self.sampling_weights = sampling_weights(data, self.train_rows, config)
        torch.manual_seed(config.seed)
        # fine-tuning replaces every weight: no need to read ImageNet weights first
        net = create_model(config.model, config.preprocessing,
                           load_pretrained=not config.init_checkpoint)
        if config.init_checkpoint == BUNDLED_INIT:
            _load_bundled_weights(net, config)
        elif config.init_checkpoint:
            _load_initial_weights(net, config.model, Path(config.init_checkpoint))
        soft_targets = (read_soft_targets(Path(config.soft_targets), data.sources,
                                          ["descriptor"] if config.embedding_weight else [])
                        if config.soft_targets else {})
        descriptors = soft_targets.get("descriptor")
        self.model = TrainingModel(net, None if descriptors is None else descriptors.shape[1],
                                   freeze_batchnorm=config.freeze_batchnorm)
        self.model.to(self.device, memory_format=torch.channels_last)
        groups = self.model.parameter_groups(config.lr, config.backbone_lr_scale)
        self.optimizer = torch.optim.Adam(groups, weight_decay=config.weight_decay)
        self.steps_per_epoch = len(distributed.step_batches(self.train_rows, config.batch_size,
                                                            self.ranks))
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=[group["lr"] for group in groups],
            total_steps=config.epochs * self.steps_per_epoch, pct_start=config.warmup_fraction)
        teachers = Teachers(config.teachers, config.preprocessing, self.device)
        self.step = TrainStep(config, self.model, data, self.device, teachers, soft_targets)
        self._trainable: list[bool] | None = None
        self._step_losses: list[float] = []
        self.epoch = 0
        self.best_val_loss = math.inf
        self.epochs_without_improvement = 0

    # -- epochs ----------------------------------------------------------------------------------
    def _train_epoch(self) -> EpochStats:
        """One pass; shuffling, augmentation and dropout are seeded by (seed, epoch) for resume,
        and augmentation and dropout also by the rank, so ranks do not repeat each other's."""
        seed = self.config.seed * 100_003 + self.epoch
        order = epoch_order(self.train_rows, self.sampling_weights, seed)
        seed += 7_919 * self.ranks.rank
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        self.model.train()
        if self.model.backbone is not None:
            self.model.backbone.requires_grad_(self.epoch >= self.config.freeze_backbone_epochs)
        self._wrap_for_training()
        totals = _Accumulator()
        step_losses = []
        bar = tqdm(distributed.step_batches(order, self.config.batch_size, self.ranks),
                   desc=f"epoch {self.epoch + 1}/{self.config.epochs}", unit="batch",
                   leave=False, dynamic_ncols=True, disable=not self.ranks.is_main)
        for batch in bar:
            # sorted: the order decides which row gets which random augmentation, so seeded
            # runs (and resumes) repeat
            result = self.step(np.sort(batch), generator)
            self.optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            step_losses.append(totals.add(result))
            running = totals.stats()
            bar.set_postfix(loss=f"{running.loss:.3f}", mae=_fmt(running.mae),
                            acc=_fmt(running.gender_acc, 3))
        summed = distributed.all_reduce_sums(step_losses, self.device)
        self._step_losses = [loss / self.ranks.world_size for loss in summed]
        return totals.stats(self.device)

    def _wrap_for_training(self) -> None:
        """Let the step train through DDP (several ranks), wrapped anew when the set of
        trainable parameters changed (a frozen backbone thawed), since DDP fixes it."""
        trainable = [parameter.requires_grad for parameter in self.model.parameters()]
        if trainable != self._trainable:
            self.step.trained = distributed.data_parallel(self.model, self.device)
            self._trainable = trainable

    def _validate(self) -> EpochStats | None:
        """Validation figures over the whole split: each rank scores its part, and the sums
        are shared, so every rank takes the same decisions."""
        if len(self.val_rows) == 0:
            return None
        self.model.eval()
        totals = _Accumulator()
        val_rows = distributed.shard(self.val_rows, self.ranks)
        with torch.inference_mode():
            for start in range(0, len(val_rows), 256):
                rows = val_rows[start:start + 256]
                images, gender, age = make_batch(self.data, rows, self.config, None, self.device)
                totals.add(self.step.labels_loss(self.step.forward(images), rows, gender, age))
        return totals.stats(self.device)

    def fit(self) -> None:
        if self.ranks.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.config.to_yaml(self.out_dir / "config.yaml")
        while self.epoch < self.config.epochs:
            if self.epochs_without_improvement >= self.config.early_stopping_patience:
                log.info("early stopping: no validation improvement for %d epochs",
                         self.epochs_without_improvement)
                break
            started = time.perf_counter()
            lr = self.optimizer.param_groups[-1]["lr"]
            train = self._train_epoch()
            val = self._validate()
            self.epoch += 1
            improved = self._keep_best(val.loss if val else train.loss)
            self._save_last()
            seconds = time.perf_counter() - started
            if not self.ranks.is_main:
                continue
            self._log_epoch(lr, train, val, seconds)
            log.info("epoch %d/%d  %.0fs  train loss %.3f mae %s acc %s | "
                     "val loss %s mae %s acc %s%s",
                     self.epoch, self.config.epochs, seconds, train.loss, _fmt(train.mae),
                     _fmt(train.gender_acc, 3), _fmt(val and val.loss, 3), _fmt(val and val.mae),
                     _fmt(val and val.gender_acc, 3), "  *best*" if improved else "")

    def _keep_best(self, selection_loss: float) -> bool:
        """Write `best.pt` when this epoch is the one to keep; True when the loss improved."""
        improved = selection_loss < self.best_val_loss
        if improved or self.config.keep == "last":  # keeping the last: no early stopping
            self.best_val_loss = min(selection_loss, self.best_val_loss)
            self.epochs_without_improvement = 0
            if self.ranks.is_main:
                save_checkpoint(self.out_dir / "best.pt", self.model.net, self.config.to_dict(),
                                epoch=self.epoch, val_loss=selection_loss)
        else:
            self.epochs_without_improvement += 1
        return improved

    # -- persistence -----------------------------------------------------------------------------
    def _save_last(self) -> None:
        if not self.ranks.is_main:
            return
        head = self.model.embedding_head
        save_checkpoint(
            self.out_dir / "last.pt", self.model.net, self.config.to_dict(), epoch=self.epoch,
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(), best_val_loss=self.best_val_loss,
            epochs_without_improvement=self.epochs_without_improvement,
            embedding_head_state=None if head is None else head.state_dict())

    def resume(self) -> None:
        """Continue from `last.pt`: weights, optimizer, schedule and early-stopping state."""
        payload = read_checkpoint(self.out_dir / "last.pt")
        self.model.net.load_state_dict(payload["model_state"])  # copied onto the device
        self.optimizer.load_state_dict(payload["optimizer_state"])
        self.scheduler.load_state_dict(payload["scheduler_state"])
        if self.model.embedding_head is not None:
            self.model.embedding_head.load_state_dict(payload["embedding_head_state"])
        # a resume may extend --epochs: stretch the remaining schedule to the new length
        self.scheduler.total_steps = self.config.epochs * self.steps_per_epoch
        self.epoch = payload["epoch"]
        self.best_val_loss = payload["best_val_loss"]
        self.epochs_without_improvement = payload["epochs_without_improvement"]
        logs = (("log.csv", LOG_COLUMNS), ("times.csv", TIME_COLUMNS), ("steps.csv", STEP_COLUMNS))
        if self.ranks.is_main:
            for name, columns in logs:
                _drop_rows_after(self.out_dir / name, columns, self.epoch)
        log.info("resumed from %s at epoch %d", self.out_dir / "last.pt", self.epoch)

    def _log_epoch(self, lr: float, train: EpochStats, val: EpochStats | None,
                   seconds: float) -> None:
        row = {"epoch": self.epoch, "lr": f"{lr:.6g}", "train_loss": f"{train.loss:.5f}",
               "train_mae": _cell(train.mae), "train_gender_acc": _cell(train.gender_acc),
               "val_loss": _cell(val and val.loss), "val_mae": _cell(val and val.mae),
               "val_gender_acc": _cell(val and val.gender_acc)}
        _append_rows(self.out_dir / "log.csv", LOG_COLUMNS, [row])
        _append_rows(self.out_dir / "times.csv", TIME_COLUMNS,
                     [{"epoch": self.epoch, "seconds": f"{seconds:.1f}"}])
        _append_rows(self.out_dir / "steps.csv", STEP_COLUMNS,
                     [{"epoch": self.epoch, "step": step, "loss": f"{loss:.5f}"}
                      for step, loss in enumerate(self._step_losses, 1)])
        plot_training_curves(self.out_dir / "log.csv", self.out_dir / "curves.png")


def _load_initial_weights(net: torch.nn.Module, model_config: ModelConfig, path: Path) -> None:
    """Fine-tuning: start `net` from a checkpoint of the same model."""
    payload = read_checkpoint(path)
    # Anti-aliasing, luminance and the output stride add no weights, so a model without them can
    # start one with them.
    theirs = replace(ModelConfig(**payload["config"]["model"]), antialias=model_config.antialias,
                     luminance=model_config.luminance, output_stride=model_config.output_stride)
    if theirs != model_config:
        raise ValueError(f"{path} holds another model ({payload['config']['model']}) than "
                         f"this run's ({asdict(model_config)}); it cannot initialise it")
    net.load_state_dict(payload["model_state"])


def _load_bundled_weights(net: torch.nn.Module, config: TrainConfig) -> None:
    """`--init bundled`: start `net` from the bundled model's network (its ONNX file)."""
    from agegender.bundled import bundled_record
    from agegender.inference.predictor import bundled_model_path
    from agegender.models.onnx_weights import network_from_onnx
    from agegender.training.presets import get_preset

    record = bundled_record()
    bundled = get_preset(record.preset)
    theirs = replace(bundled.model, antialias=config.model.antialias,
                     luminance=config.model.luminance, pretrained=config.model.pretrained)
    if theirs != config.model or bundled.preprocessing != config.preprocessing:
        raise ValueError(f"--init bundled starts from the bundled model, a {record.preset} "
                         "network on its preprocessing; this run's model or input differs "
                         "(use --preset finetune-bundled)")
    network_from_onnx(bundled_model_path(), net)


def _append_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _drop_rows_after(path: Path, columns: list[str], epoch: int) -> None:
    """Keep the rows of epochs up to `epoch` (a crash mid-epoch may have logged one more)."""
    if not path.exists():
        return
    with path.open(newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if int(row["epoch"]) <= epoch]
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.5f}"
