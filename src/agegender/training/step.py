"""One training step: a batch of cached faces in, the weighted sum of every loss term out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agegender.data.labelled import LabelledFaces
from agegender.training import losses
from agegender.training.augment import jitter
from agegender.training.batches import model_input, read_batch, read_coverage
from agegender.training.config import TrainConfig
from agegender.training.model import Outputs, TrainingModel
from agegender.training.teachers import Teachers, autocast


@dataclass
class StepResult:
    """The loss to minimise, and the labelled samples' age errors and gender hits."""

    loss: torch.Tensor
    age_errors: torch.Tensor
    gender_hits: torch.Tensor


class TrainStep:
    """Computes a batch's loss: the labels' terms, then each configured extra term."""

    def __init__(self, config: TrainConfig, model: TrainingModel, data: LabelledFaces,
                 device: torch.device, teachers: Teachers,
                 soft_targets: dict[str, np.ndarray]):
        """`soft_targets`: per-row arrays (`teachers.read_soft_targets`): `prob_female`,
        `age_distribution` and, for feature distillation, `descriptor`, each optional."""
        self.config = config
        self.model = model
        self.trained: torch.nn.Module = model
        """What the training passes run through: `model`, or its data-parallel wrapper."""
        self.data = data
        self.device = device
        self.teachers = teachers
        self.soft_female = soft_targets.get("prob_female")
        self.soft_age = soft_targets.get("age_distribution")
        self.descriptors = soft_targets.get("descriptor")
        self.has_ranges = bool(np.isfinite(data.age_low).any())

    def forward(self, images: torch.Tensor, training: bool = False) -> Outputs:
        """The model's outputs; `training` passes go through `trained`, so DDP syncs them."""
        with autocast(self.device):
            return (self.trained if training else self.model)(images)

    def labels_loss(self, outputs: Outputs, rows: np.ndarray, gender: torch.Tensor,
                    age: torch.Tensor) -> StepResult:
        """The weighted gender and age losses against the labels of `rows` (what validation
        measures): exact ages, and ages known as a range where the data has those."""
        config = self.config
        loss = (config.gender_loss_weight * losses.gender_loss(outputs.gender_logit, gender)
                + config.age_loss_weight * losses.age_loss(
                    outputs.age, outputs.age_logits, age, config.age_loss, config.dldl_sigma))
        if self.has_ranges:
            loss = loss + config.age_loss_weight * losses.age_range_loss(
                outputs.age, outputs.age_logits, self._rows_of(self.data.age_low, rows),
                self._rows_of(self.data.age_high, rows), config.age_loss)
        return StepResult(loss, losses.age_errors(outputs.age, age),
                          losses.gender_hits(outputs.gender_logit, gender))

    def __call__(self, rows: np.ndarray, generator: torch.Generator) -> StepResult:
        """The loss on the faces `rows`, augmented with `generator`."""
        config = self.config
        pixels, gender, age = read_batch(self.data, rows, self.device)
        coverage = read_coverage(self.data, rows, config, self.device)
        images = model_input(pixels, config, generator, coverage)
        outputs = self.forward(images, training=True)
        result = self.labels_loss(outputs, rows, gender, age)
        if self.descriptors is not None:
            result.loss = result.loss + config.embedding_weight * losses.embedding_loss(
                outputs.embedding, self._rows_of(self.descriptors, rows))
        if self.teachers:
            result.loss = result.loss + config.distill_weight * losses.distillation_loss(
                outputs.gender_logit, outputs.age_logits, *self.teachers.targets(images))
        if self.soft_female is not None:
            result.loss = result.loss + config.distill_weight * losses.soft_gender_loss(
                outputs.gender_logit, self._rows_of(self.soft_female, rows))
        if self.soft_age is not None:
            result.loss = result.loss + config.distill_weight * losses.soft_age_loss(
                outputs.age_logits, self._rows_of(self.soft_age, rows))
        if config.consistency_weight:
            other = self.forward(self._second_view(pixels, coverage, images, generator),
                                 training=True)
            result.loss = result.loss + config.consistency_weight * losses.consistency_loss(
                outputs.gender_logit, outputs.age_logits, other.gender_logit, other.age_logits)
        return result

    def _rows_of(self, table: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(table[rows]).to(self.device)

    def _second_view(self, pixels: torch.Tensor, coverage: torch.Tensor | None,
                     images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The consistency term's second view of `pixels` (first view: `images`): another
        augmentation or, with `consistency_jitter`, the first view slightly moved, for
        `consistency_jitter_share` of the faces."""
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
        return other.contiguous(memory_format=torch.channels_last)
