"""Training configuration as data: saved beside every checkpoint, loaded back on resume."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from agegender.models.factory import ModelConfig
from agegender.preprocessing import Preprocessing


@dataclass
class AugmentConfig:
    """On-the-fly batch augmentation; ranges are ± around identity."""

    flip: bool = True
    rotation_degrees: float = 10.0
    zoom: float = 0.1
    shift: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.2
    low_resolution: float = 0.0
    """Share of faces shown at a lower resolution: reduced to 35–100 % of their side and
    enlarged back, as a face of 40–110 px in a photo is before it reaches the model."""
    border_fill: float = 0.0
    """Share of aligned faces whose black border (where the alignment reached past the
    dataset's crop) is filled with other content, as a face in a photo has surroundings."""


@dataclass
class TrainConfig:
    """Everything that determines a training run, so a run can be repeated or resumed."""

    preset: str = "seed-cnn"
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1
    age_loss: str = "mae"
    dldl_sigma: float = 2.0
    age_loss_weight: float = 1.0
    gender_loss_weight: float = 1.0
    early_stopping_patience: int = 6
    keep: str = "best"
    """Which epoch `best.pt` holds (then calibrated and evaluated): `best`, the lowest
    validation loss, with early stopping; or `last`, the end of the schedule, for recipes
    whose validation loss is flat at the end while the figures that matter still improve."""
    freeze_backbone_epochs: int = 0
    """Staged fine-tuning: a pretrained backbone stays frozen for this many first epochs."""
    backbone_lr_scale: float = 1.0
    """Discriminative learning rate: the backbone trains at `lr * backbone_lr_scale`."""
    calibrate_flip: bool = True
    """Let calibration keep horizontal-flip averaging when it helps on validation (it doubles
    the model's cost per face)."""
    teachers: list[str] = field(default_factory=list)
    """Knowledge distillation: checkpoints (same preprocessing) whose averaged gender probability
    and age distribution on each augmented batch the model also learns to match."""
    distill_weight: float = 1.0
    soft_targets: str | None = None
    """Offline distillation: a `.npz` of `name` (image file name, as in `split.csv`) and
    `prob_female` arrays: a teacher's gender probability per training image, e.g. from
    `tools/face_embedding_teacher.py`, learnt with `distill_weight` beside the true labels.
    Images it does not list train on labels alone."""
    embedding_weight: float = 0.0
    """Feature distillation: above 0, the soft-target file must also hold `descriptor` (a
    face-recognition network's embedding of each image), which a linear map from the backbone's
    pooled features learns to match (cosine distance, this weight). The map exists only during
    training, so the exported model and its cost are unchanged; what it carries over is a face
    network's features, richer than its one gender probability."""
    init_checkpoint: str | None = None
    """Fine-tuning: start from this checkpoint's weights (same model configuration)."""
    consistency_weight: float = 0.0
    """Above 0, each batch is also seen under a second augmentation, and the two predictions'
    disagreement (gender probability and age distribution) is penalised with this weight, so
    the model's output moves less when a detector frames a face a few pixels differently."""
    consistency_jitter: float | None = None
    """When set, the consistency term's second view is the first one moved by up to this many
    pixels (turned by as many degrees, scaled by as many percent) instead of another full
    augmentation. A CNN's answer can swing with a half-pixel shift (strided layers alias);
    this trains that swing away, where two independent augmentations differ too much to."""
    consistency_jitter_share: float = 1.0
    """With `consistency_jitter`, the share of the faces whose second view is the moved first
    one; the others get another full augmentation, which keeps teaching the model to answer
    alike for a sharp and a blurred face (the jittered pair shares its resolution)."""
    seed: int = 0
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', not {self.keep!r}")
        if self.age_loss not in ("mae", "mse", "dldl"):
            raise ValueError(f"age_loss must be 'mae', 'mse' or 'dldl', not {self.age_loss!r}")
        if (self.age_loss == "dldl") != (self.model.architecture == "transfer"):
            raise ValueError("the 'dldl' age loss goes with (and only with) a transfer model, "
                             "whose age head predicts a distribution")
        if self.teachers and self.model.architecture != "transfer":
            raise ValueError("distillation needs a transfer model (its age head is a distribution)")
        if self.embedding_weight and not (self.soft_targets
                                          and self.model.architecture == "transfer"):
            raise ValueError("feature distillation (embedding_weight) needs soft_targets with "
                             "descriptors and a transfer model")
        if self.model.antialias and self.model.architecture != "transfer":
            raise ValueError("antialias applies to a transfer model's backbone")
        if self.consistency_jitter is not None and self.consistency_jitter <= 0:
            raise ValueError("consistency_jitter must be above 0 (None: independent views)")
        if not 0 <= self.consistency_jitter_share <= 1:
            raise ValueError("consistency_jitter_share is a share, between 0 and 1")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        nested = {"model": ModelConfig, "preprocessing": Preprocessing, "augment": AugmentConfig}
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        for name, kind in nested.items():
            if name in kwargs and isinstance(kwargs[name], dict):
                kwargs[name] = kind(**kwargs[name])
        return cls(**kwargs)

    def with_overrides(self, **overrides) -> TrainConfig:
        """A copy with the non-None overrides applied (command-line flags left unset are None);
        a dict overrides fields of a nested config the same way (`augment={"flip": False}`)."""
        changes = {}
        for name, value in overrides.items():
            if isinstance(value, dict):
                value = replace(getattr(self, name),
                                **{k: v for k, v in value.items() if v is not None})
            if value is not None:
                changes[name] = value
        return replace(self, **changes)
