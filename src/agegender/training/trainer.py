"""The training loop: Adam, one-cycle LR, masked multi-task loss, early stopping, resumable."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from agegender.atomic import write_json_atomic
from agegender.data.labelled import LabelledFaces, load_labelled_faces
from agegender.data.records import source_name
from agegender.evaluation.evaluate import evaluate_rows, summarize
from agegender.evaluation.plots import plot_training_curves
from agegender.inference.backends import TorchCheckpointBackend
from agegender.models.age_distribution import dldl_loss
from agegender.models.factory import ModelConfig, create_model
from agegender.training.augment import jitter
from agegender.training.batches import make_batch, model_input, read_batch, read_coverage
from agegender.training.calibrate import calibrate_checkpoint
from agegender.training.checkpoint import (
    load_model,
    read_checkpoint,
    save_checkpoint,
    write_config,
)
from agegender.training.config import TrainConfig

log = logging.getLogger("agegender")

AGE_SCALE = 10.0
"""Age losses are computed in decades so MAE/MSE and cross-entropy have comparable magnitudes."""

LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_mae", "train_gender_acc",
               "val_loss", "val_mae", "val_gender_acc", "seconds"]


@dataclass
class EpochStats:
    loss: float
    mae: float | None
    gender_acc: float | None


class _Accumulator:
    """Sums masked per-sample losses and errors over an epoch."""

    def __init__(self) -> None:
        self.loss = self.batches = self.abs_err = self.n_age = self.correct = self.n_gender = 0.0

    def add(self, loss: float, age_err: torch.Tensor, gender_hit: torch.Tensor) -> None:
        self.loss += loss
        self.batches += 1
        self.abs_err += float(age_err.sum())
        self.n_age += age_err.numel()
        self.correct += float(gender_hit.sum())
        self.n_gender += gender_hit.numel()

    def stats(self) -> EpochStats:
        return EpochStats(
            loss=self.loss / max(self.batches, 1),
            mae=self.abs_err / self.n_age if self.n_age else None,
            gender_acc=self.correct / self.n_gender if self.n_gender else None,
        )


def multitask_loss(gender_logit: torch.Tensor, age: torch.Tensor, gender_true: torch.Tensor,
                   age_true: torch.Tensor, config: TrainConfig,
                   age_logits: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted BCE + age loss; samples missing a label are masked out of that task's loss.

    The age loss is MAE or MSE on the predicted age, or, with `dldl`, the label-distribution
    loss on `age_logits` plus an L1 term on their expectation.
    Returns the loss, the absolute age errors and the gender hits of the labelled samples.
    """
    has_gender = ~torch.isnan(gender_true)
    has_age = ~torch.isnan(age_true)
    loss = gender_logit.new_zeros(())
    if has_gender.any():
        loss = loss + config.gender_loss_weight * F.binary_cross_entropy_with_logits(
            gender_logit[has_gender], gender_true[has_gender])
    if has_age.any() and config.age_loss == "dldl":
        if age_logits is None:
            raise ValueError("the 'dldl' age loss needs a model that outputs age logits")
        loss = loss + config.age_loss_weight * dldl_loss(
            age_logits[has_age], age_true[has_age], config.dldl_sigma, l1_weight=1 / AGE_SCALE)
    elif has_age.any():
        predicted, target = age[has_age] / AGE_SCALE, age_true[has_age] / AGE_SCALE
        age_loss = F.l1_loss if config.age_loss == "mae" else F.mse_loss
        loss = loss + config.age_loss_weight * age_loss(predicted, target)
    age_err = (age[has_age] - age_true[has_age]).detach().abs()
    gender_hit = ((gender_logit[has_gender] > 0).float() == gender_true[has_gender]).detach()
    return loss, age_err, gender_hit


def distillation_loss(gender_logit: torch.Tensor, age_logits: torch.Tensor,
                      teacher_prob_female: torch.Tensor, teacher_age_distribution: torch.Tensor
                      ) -> torch.Tensor:
    """Cross-entropy to the teachers' soft targets: gender probability and age distribution."""
    gender = F.binary_cross_entropy_with_logits(gender_logit, teacher_prob_female)
    age = -(teacher_age_distribution * F.log_softmax(age_logits, dim=-1)).sum(-1).mean()
    return gender + age


def soft_gender_loss(gender_logit: torch.Tensor, prob_female: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to precomputed teacher probabilities; rows without one (NaN) are masked."""
    known = ~torch.isnan(prob_female)
    if not known.any():
        return gender_logit.sum() * 0.0
    return F.binary_cross_entropy_with_logits(gender_logit[known], prob_female[known])


def embedding_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine distance to a teacher's face embedding; rows without one (NaN) are masked."""
    known = ~torch.isnan(target).any(-1)
    if not known.any():
        return predicted.sum() * 0.0
    return (1 - F.cosine_similarity(predicted[known], target[known], dim=-1)).mean()


def _teacher_tables(path: Path, sources: list[str], keys: list[str]) -> dict[str, np.ndarray]:
    """The `keys` arrays of a teacher table (`tools/face_embedding_teacher.py`) for each row
    of the data, NaN where the image is not listed, joined on the file name as `split.csv` is."""
    try:
        with np.load(path) as table:
            names = table["name"].tolist()
            arrays = {key: np.asarray(table[key], dtype=np.float32) for key in keys}
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: not a soft-target table with 'name' and {keys} arrays "
                         f"({error})") from error
    position = {name: index for index, name in enumerate(names)}
    found = np.array([position.get(source_name(source), -1) for source in sources])
    if (found < 0).all():
        raise ValueError(f"{path}: lists none of this data's images")
    joined = {}
    for key, values in arrays.items():
        if len(names) != len(values):
            raise ValueError(f"{path}: {len(names)} names but {len(values)} rows of {key!r}")
        joined[key] = np.full((len(sources), *values.shape[1:]), np.nan, dtype=np.float32)
        joined[key][found >= 0] = values[found[found >= 0]]
    return joined


def _parameter_groups(model: torch.nn.Module, config: TrainConfig,
                      extra_heads: list[torch.nn.Parameter]) -> list[dict]:
    """Adam parameter groups: a pretrained backbone (when the model has one) at its own rate;
    `extra_heads` are training-only heads that learn at the heads' rate."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return [{"params": list(model.parameters()), "lr": config.lr}]
    backbone_ids = {id(parameter) for parameter in backbone.parameters()}
    heads = [parameter for parameter in model.parameters() if id(parameter) not in backbone_ids]
    heads += extra_heads
    return [{"params": list(backbone.parameters()), "lr": config.lr * config.backbone_lr_scale},
            {"params": heads, "lr": config.lr}]


class Trainer:
    """Owns one run directory: checkpoints, config, log, curves and final test metrics."""

    def __init__(self, config: TrainConfig, data: LabelledFaces, out_dir: Path,
                 device: str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.data = data
        self.out_dir = out_dir
        self.prep = config.preprocessing
        self.train_rows = data.rows("train")
        self.val_rows = data.rows("val")
        if len(self.train_rows) == 0:
            raise ValueError("the training split is empty")
        torch.manual_seed(config.seed)
        self.model = create_model(config.model, self.prep).to(
            self.device, memory_format=torch.channels_last)
        if config.init_checkpoint:
            self._load_initial_weights(Path(config.init_checkpoint))
        keys = ["prob_female"] + (["descriptor"] if config.embedding_weight else [])
        tables = (_teacher_tables(Path(config.soft_targets), data.sources, keys)
                  if config.soft_targets else {})
        self.soft_female = tables.get("prob_female")
        self.teacher_embedding = tables.get("descriptor")
        self.embedding_head = None
        if self.teacher_embedding is not None:
            self.embedding_head = torch.nn.Linear(
                self.model.num_features, self.teacher_embedding.shape[1]).to(self.device)
        groups = _parameter_groups(self.model, config, [] if self.embedding_head is None
                                   else list(self.embedding_head.parameters()))
        self.optimizer = torch.optim.Adam(groups, weight_decay=config.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.train_rows) / config.batch_size)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=[group["lr"] for group in groups],
            total_steps=config.epochs * self.steps_per_epoch, pct_start=config.warmup_fraction)
        self.teachers = [self._load_teacher(Path(path)) for path in config.teachers]
        self.epoch = 0
        self.best_val_loss = math.inf
        self.epochs_without_improvement = 0

    # -- epochs ----------------------------------------------------------------------------------
    def _train_epoch(self) -> EpochStats:
        """One pass; shuffling, augmentation and dropout are seeded by (seed, epoch) for resume."""
        seed = self.config.seed * 100_003 + self.epoch
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        order = np.random.default_rng(seed).permutation(self.train_rows)
        self.model.train()
        backbone = getattr(self.model, "backbone", None)
        if backbone is not None:
            backbone.requires_grad_(self.epoch >= self.config.freeze_backbone_epochs)
        totals = _Accumulator()
        bar = tqdm(range(0, len(order), self.config.batch_size), desc=f"epoch {self.epoch + 1}"
                   f"/{self.config.epochs}", unit="batch", leave=False, dynamic_ncols=True)
        for start in bar:
            # sorted: the order decides which row gets which random augmentation, so seeded
            # runs (and resumes) repeat those started since soft targets came in
            rows = np.sort(order[start:start + self.config.batch_size])
            pixels, gender, age = read_batch(self.data, rows, self.device)
            coverage = read_coverage(self.data, rows, self.config, self.device)
            images = model_input(pixels, self.config, generator, coverage)
            if self.embedding_head is None:
                gender_logit, age_pred, *age_logits = self._forward(images)
            else:
                features, (gender_logit, age_pred, *age_logits) = self._forward_features(images)
            loss, age_err, gender_hit = multitask_loss(
                gender_logit, age_pred, gender, age, self.config, *age_logits)
            if self.embedding_head is not None:
                loss = loss + self.config.embedding_weight * embedding_loss(
                    self.embedding_head(features),
                    torch.from_numpy(self.teacher_embedding[rows]).to(self.device))
            if self.teachers:
                loss = loss + self.config.distill_weight * distillation_loss(
                    gender_logit, age_logits[0], *self._teach(images))
            if self.soft_female is not None:
                loss = loss + self.config.distill_weight * soft_gender_loss(
                    gender_logit, torch.from_numpy(self.soft_female[rows]).to(self.device))
            if self.config.consistency_weight:
                loss = loss + self.config.consistency_weight * self._consistency(
                    pixels, coverage, images, generator, gender_logit, age_logits[0])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            totals.add(loss.item(), age_err, gender_hit)
            running = totals.stats()
            bar.set_postfix(loss=f"{running.loss:.3f}",
                            mae=f"{running.mae:.2f}" if running.mae is not None else "-",
                            acc=f"{running.gender_acc:.3f}" if running.gender_acc is not None
                            else "-")
        return totals.stats()

    def _validate(self) -> EpochStats | None:
        if len(self.val_rows) == 0:
            return None
        self.model.eval()
        totals = _Accumulator()
        with torch.inference_mode():
            for start in range(0, len(self.val_rows), 256):
                images, gender, age = make_batch(
                    self.data, self.val_rows[start:start + 256], self.config, None, self.device)
                gender_logit, age_pred, *age_logits = self._forward(images)
                loss, age_err, gender_hit = multitask_loss(
                    gender_logit, age_pred, gender, age, self.config, *age_logits)
                totals.add(loss.item(), age_err, gender_hit)
        return totals.stats()

    def _load_initial_weights(self, path: Path) -> None:
        payload = read_checkpoint(path)
        # Anti-aliasing adds no weights, so a model without it can start one with it.
        theirs = replace(ModelConfig(**payload["config"]["model"]),
                         antialias=self.config.model.antialias)
        if theirs != self.config.model:
            raise ValueError(f"{path} holds another model ({payload['config']['model']}) than "
                             f"this run's ({asdict(self.config.model)}); it cannot initialise it")
        self.model.load_state_dict(payload["model_state"])

    def _load_teacher(self, path: Path) -> torch.nn.Module:
        teacher, teacher_config = load_model(path)
        if json.dumps(asdict(teacher_config.preprocessing)) != json.dumps(asdict(self.prep)):
            raise ValueError(f"teacher {path} was trained with other preprocessing "
                             f"({teacher_config.preprocessing}) than this run ({self.prep})")
        return teacher.to(self.device, memory_format=torch.channels_last).requires_grad_(False)

    @torch.no_grad()
    def _teach(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teachers' mean probability of female and mean age distribution on this batch."""
        prob_female, age_distribution = 0.0, 0.0
        for teacher in self.teachers:
            with self._autocast():
                gender_logit, _, age_logits = teacher(images)
            prob_female = prob_female + torch.sigmoid(gender_logit.float())
            age_distribution = age_distribution + F.softmax(age_logits.float(), dim=-1)
        return prob_female / len(self.teachers), age_distribution / len(self.teachers)

    def _consistency(self, pixels: torch.Tensor, coverage: torch.Tensor | None,
                     images: torch.Tensor, generator: torch.Generator,
                     gender_logit: torch.Tensor, age_logits: torch.Tensor) -> torch.Tensor:
        """Disagreement between the predictions on `images` (the first view of `pixels`) and
        those on a second view: another augmentation of the pixels or, with
        `consistency_jitter`, the first view slightly moved, for `consistency_jitter_share` of
        the faces (both views carry gradients)."""
        config = self.config
        if not config.consistency_jitter:
            other = model_input(pixels, config, generator, coverage)
        elif config.consistency_jitter_share >= 1:
            other = jitter(images, config.consistency_jitter, generator)
        else:
            moved = torch.rand(len(images), generator=generator) < config.consistency_jitter_share
            other = torch.where(moved.to(images.device)[:, None, None, None],
                                jitter(images, config.consistency_jitter, generator),
                                model_input(pixels, config, generator, coverage))
        other = other.contiguous(memory_format=torch.channels_last)
        other_gender, _, other_age = self._forward(other)
        gender = F.mse_loss(torch.sigmoid(gender_logit), torch.sigmoid(other_gender))
        log_p, log_q = F.log_softmax(age_logits, -1), F.log_softmax(other_age, -1)
        age = 0.5 * (F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
                     + F.kl_div(log_q, log_p, log_target=True, reduction="batchmean"))
        return gender + age

    def _autocast(self) -> torch.autocast:
        """bfloat16 mixed precision on a GPU; losses are computed in float32 outside it."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.device.type == "cuda")

    def _forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The model's outputs in float32."""
        with self._autocast():
            outputs = self.model(images)
        return [output.float() for output in outputs]

    def _forward_features(self, images: torch.Tensor
                          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The backbone's pooled features and the model's outputs, in float32."""
        with self._autocast():
            features = self.model.backbone(images)
            outputs = self.model.forward_head(features)
        return features.float(), [output.float() for output in outputs]

    def fit(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_config(self.out_dir / "config.yaml", self.config)
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
            selection_loss = val.loss if val else train.loss
            improved = selection_loss < self.best_val_loss
            if improved or self.config.keep == "last":  # keeping the last: no early stopping
                self.best_val_loss = min(selection_loss, self.best_val_loss)
                self.epochs_without_improvement = 0
                save_checkpoint(self.out_dir / "best.pt", self.model, self.config,
                                epoch=self.epoch, val_loss=selection_loss)
            else:
                self.epochs_without_improvement += 1
            self._save_last()
            seconds = time.perf_counter() - started
            self._log_epoch(lr, train, val, seconds)
            log.info("epoch %d/%d  %.0fs  train loss %.3f mae %s acc %s | "
                     "val loss %s mae %s acc %s%s",
                     self.epoch, self.config.epochs, seconds, train.loss, _fmt(train.mae),
                     _fmt(train.gender_acc, 3), _fmt(val and val.loss, 3), _fmt(val and val.mae),
                     _fmt(val and val.gender_acc, 3), "  *best*" if improved else "")

    # -- persistence -----------------------------------------------------------------------------
    def _save_last(self) -> None:
        save_checkpoint(
            self.out_dir / "last.pt", self.model, self.config, epoch=self.epoch,
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(), best_val_loss=self.best_val_loss,
            epochs_without_improvement=self.epochs_without_improvement,
            embedding_head_state=(None if self.embedding_head is None
                                  else self.embedding_head.state_dict()))

    def resume(self) -> None:
        """Continue from `last.pt`: weights, optimizer, schedule and early-stopping state."""
        payload = read_checkpoint(self.out_dir / "last.pt")
        self.model.load_state_dict(payload["model_state"])  # copied onto the model's device
        self.optimizer.load_state_dict(payload["optimizer_state"])
        self.scheduler.load_state_dict(payload["scheduler_state"])
        if self.embedding_head is not None:
            self.embedding_head.load_state_dict(payload["embedding_head_state"])
        # a resume may extend --epochs: stretch the remaining schedule to the new length
        self.scheduler.total_steps = self.config.epochs * self.steps_per_epoch
        self.epoch = payload["epoch"]
        self.best_val_loss = payload["best_val_loss"]
        self.epochs_without_improvement = payload["epochs_without_improvement"]
        log_path = self.out_dir / "log.csv"
        if log_path.exists():  # drop rows of epochs after the checkpoint (a crash mid-epoch)
            with log_path.open(newline="") as stream:
                rows = [r for r in csv.DictReader(stream) if int(r["epoch"]) <= self.epoch]
            with log_path.open("w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=LOG_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        log.info("resumed from %s at epoch %d", self.out_dir / "last.pt", self.epoch)

    def _log_epoch(self, lr: float, train: EpochStats, val: EpochStats | None,
                   seconds: float) -> None:
        log_path = self.out_dir / "log.csv"
        new = not log_path.exists()
        row = {"epoch": self.epoch, "lr": f"{lr:.6g}", "train_loss": f"{train.loss:.5f}",
               "train_mae": _cell(train.mae), "train_gender_acc": _cell(train.gender_acc),
               "val_loss": _cell(val and val.loss), "val_mae": _cell(val and val.mae),
               "val_gender_acc": _cell(val and val.gender_acc), "seconds": f"{seconds:.1f}"}
        with log_path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=LOG_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        plot_training_curves(log_path, self.out_dir / "curves.png")

    # -- final evaluation --------------------------------------------------------------------------
    def evaluate_test(self) -> dict:
        """Evaluate `best.pt` on the test split, writing the report folder; returns the figures."""
        rows = self.data.rows("test")
        if len(rows) == 0:
            log.warning("the test split is empty: no test metrics")
            return {}
        backend = TorchCheckpointBackend.from_checkpoint(self.out_dir / "best.pt")
        metrics = evaluate_rows(backend, self.data, rows, self.out_dir / "test_report")
        return summarize(metrics, split="test")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.5f}"


def resolve_device(name: str) -> str:
    """`auto` → `cuda` when PyTorch sees a GPU, else `cpu`; other names are checked and kept."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: PyTorch sees no CUDA GPU on this machine")
    return name


def train(config: TrainConfig, data_path: Path, out_dir: Path, resume: bool = False,
          split_file: Path | None = None, cache_dir: Path | None = None,
          device: str = "auto") -> dict:
    """Load data, train (or resume), then evaluate the best checkpoint on the test split."""
    if not resume and (out_dir / "last.pt").exists():
        raise FileExistsError(f"{out_dir} already holds a run; pass --resume to continue it "
                              "or choose another --out")
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    data = load_labelled_faces(data_path, config.preprocessing, split_file=split_file,
                               limit=config.limit, seed=config.seed, cache_dir=cache_dir)
    return train_on_faces(config, data, out_dir, resume=resume, device=device,
                          data_seconds=time.perf_counter() - started)


def train_on_faces(config: TrainConfig, data: LabelledFaces, out_dir: Path, resume: bool = False,
                   device: str = "auto", data_seconds: float = 0.0) -> dict:
    """Train on faces already decoded, calibrate on validation, evaluate on test."""
    log.info("data ready in %.1fs: %s", data_seconds,
             ", ".join(f"{s} {len(data.rows(s))}" for s in ("train", "val", "test")))
    trainer = Trainer(config, data, out_dir, device=resolve_device(device))
    if resume:
        trainer.resume()
    trainer.fit()
    if len(data.rows("val")):
        calibrate_checkpoint(out_dir / "best.pt", data, allow_flip=config.calibrate_flip)
    metrics = trainer.evaluate_test()
    if metrics:
        metrics["timing"] = {"data_seconds": round(data_seconds, 1),
                             "epoch_seconds": _epoch_seconds(out_dir / "log.csv")}
        write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics


def _epoch_seconds(log_path: Path) -> list[float]:
    with log_path.open(newline="") as stream:
        return [float(row["seconds"]) for row in csv.DictReader(stream)]
