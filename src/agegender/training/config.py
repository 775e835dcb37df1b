"""Training configuration as data: written beside every run as YAML, read back by `--config`
and `--resume`; every field is also a `train` flag (`training.flags`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from agegender.models.config import ModelConfig
from agegender.options import option
from agegender.preprocessing import Preprocessing


@dataclass
class AugmentConfig:
    """On-the-fly batch augmentation; ranges are ± around identity, shares are of the faces
    in each batch (0: off, and no random numbers drawn, so seeded runs repeat)."""

    flip: bool = option(True, doc="mirror half of the faces")
    rotation_degrees: float = option(
        10.0, doc="turn faces in plane by up to this many degrees (up to 30–45 for tilted "
                  "heads: the corners are filled by reflection)")
    zoom: float = option(0.1, doc="scale faces by up to this share")
    shift: float = option(0.1, doc="move faces by up to this share of their side")
    brightness: float = option(0.2, doc="change brightness by up to this share")
    contrast: float = option(0.2, doc="change contrast by up to this share")
    low_resolution: float = option(
        0.0, doc="share of faces shown at 35–100 % of their resolution and enlarged back, as a "
                 "face of 40–110 px in a photo reaches the model")
    border_fill: float = option(
        0.0, doc="share of aligned faces whose black border (where the alignment reached past "
                 "the dataset's crop) is filled with another face's content, as a face in a "
                 "photo has surroundings")
    perspective: float = option(
        0.0, doc="share of faces turned out of plane by a perspective warp (up to 15° left or "
                 "right and 10° up or down), as a head turned from the camera")
    blur: float = option(
        0.0, doc="share of faces blurred (Gaussian, σ of 0.5–1.5 px at 112 px), as a photo out "
                 "of focus or moving")
    exposure: float = option(
        0.0, doc="share of faces under- or over-exposed by up to 1 stop and given a gamma of "
                 "0.5–2")
    grayscale: float = option(
        0.0, doc="share of faces shown in grayscale (in every channel), as black-and-white "
                 "photos")
    colour_cast: float = option(
        0.0, doc="share of faces given the look of a faded or colour-cast print: washed-out "
                 "colours, lower contrast, lifted blacks, a random or sepia-like tint")
    noise: float = option(
        0.0, doc="share of faces given sensor noise or film grain (Gaussian, luminance σ of "
                 "1–8 % and chroma noise)")
    jpeg: float = option(
        0.0, doc="share of faces passed through JPEG compression at a quality of 30–90")
    erasing: float = option(
        0.0, doc="share of faces with one rectangle of 2–20 % of the area erased (noise or flat "
                 "grey), as an occluded face")

    def __post_init__(self) -> None:
        shares = ("low_resolution", "border_fill", "perspective", "blur", "exposure",
                  "grayscale", "colour_cast", "noise", "jpeg", "erasing")
        wrong = [name for name in shares if not 0 <= getattr(self, name) <= 1]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: a share of the faces, between 0 and 1")


BUNDLED_INIT = "bundled"
"""`--init bundled`: start from the bundled model's network, read back from its ONNX file."""

NESTED = {"model": ModelConfig, "preprocessing": Preprocessing, "augment": AugmentConfig}
"""The sections of a `TrainConfig`, each a dataclass of its own."""


@dataclass
class TrainConfig:
    """Everything that determines a training run, so a run can be repeated or resumed."""

    preset: str = option("seed-cnn", doc="the named configuration this one started from",
                         cli=False)
    data: list[str] = option(
        default_factory=list, flag="--data",
        doc="a dataset: UTKFace folder or .tar.gz, LFW folder, FairFace or labels.csv folder, "
            "48×48 pixel CSV, CelebA folder, or male/female class folders; repeat to train on "
            "several at once (each keeps its own split; a label one lacks is masked)")
    data_weights: list[float] = option(
        default_factory=list, flag="--data-weight",
        doc="the share of each epoch's faces drawn from each --data, in order (repeat once "
            "per --data; default: in proportion to their sizes)")
    person_cap: int | None = option(
        None, doc="a person's faces (where the data names people, as LFW does) together weigh "
                  "at most as much as this many faces")
    balance_gender: bool = option(
        False, doc="within each dataset, draw women and men equally often")
    age_balance: float = option(
        0.0, doc="draw faces of rare age decades more often: weight count(decade)^-this "
                 "(0: as they come, 1: every decade equally; 70+ is one decade)")
    split_file: str | None = option(None, doc="CSV with file,split columns (default: split.csv "
                                              "beside the data; one --data only)")
    limit: int | None = option(None, doc="use at most N images of each dataset (quick runs)")
    model: ModelConfig = option(default_factory=ModelConfig, doc="architecture")
    preprocessing: Preprocessing = option(default_factory=Preprocessing, doc="input")
    augment: AugmentConfig = option(default_factory=AugmentConfig, doc="augmentation")
    epochs: int = option(20, doc="length of the schedule")
    batch_size: int = option(64, doc="faces per optimisation step")
    lr: float = option(1e-3, doc="peak learning rate of the one-cycle schedule")
    weight_decay: float = option(0.0, doc="Adam's L2 penalty")
    warmup_fraction: float = option(0.1, doc="share of the steps spent warming up")
    age_loss: str = option("mae", doc="age loss: MAE or MSE on the age, or DLDL on a "
                                      "distribution (transfer models)",
                           choices=("mae", "mse", "dldl"))
    dldl_sigma: float = option(2.0, doc="width in years of the DLDL label distribution")
    age_loss_weight: float = option(1.0, doc="weight of the age loss")
    gender_loss_weight: float = option(1.0, doc="weight of the gender loss")
    early_stopping_patience: int = option(6, doc="stop after this many epochs without a lower "
                                                 "validation loss")
    keep: str = option(
        "best", choices=("best", "last"),
        doc="which epoch best.pt holds (then calibrated and evaluated): best, the lowest "
            "validation loss, with early stopping; or last, the end of the schedule, for "
            "recipes whose validation loss is flat at the end while the figures that matter "
            "still improve")
    freeze_backbone_epochs: int = option(0, doc="keep a pretrained backbone frozen for this many "
                                                "first epochs")
    backbone_lr_scale: float = option(1.0, doc="the backbone trains at lr × this")
    freeze_batchnorm: bool = option(
        False, doc="keep every BatchNorm in eval mode (stored statistics, never updated): for "
                   "fine-tuning with small batches, or a network read back from ONNX "
                   "(tools/onnx_to_checkpoint.py), whose BatchNorms are folded")
    calibrate_flip: bool = option(True, doc="let calibration keep horizontal-flip averaging "
                                            "when it helps on validation (it doubles the cost "
                                            "per face)")
    teachers: list[str] = option(
        default_factory=list, flag="--teacher",
        doc="distil from this checkpoint (same preprocessing; repeat for an ensemble): the "
            "model also learns the teachers' mean gender probability and age distribution on "
            "each augmented batch")
    distill_weight: float = option(1.0, doc="weight of the distillation losses against the "
                                            "labels' loss")
    soft_targets: str | None = option(
        None, doc="offline distillation: a .npz of `name` (image file name) and a teacher's "
                  "answers per image: `prob_female` (e.g. tools/face_embedding_teacher.py) "
                  "and/or `age_distribution` over ages 0..100 (tools/age_teachers.py, for "
                  "photos without ages), each learnt with --distill-weight")
    embedding_weight: float = option(
        0.0, doc="feature distillation: above 0, a linear map from the backbone's pooled "
                 "features learns the face descriptors stored in --soft-targets (cosine "
                 "distance, this weight); the map is dropped after training")
    init_checkpoint: str | None = option(
        None, flag="--init",
        doc="fine-tune: start from this checkpoint's weights (same model), or 'bundled' for "
            "the bundled model's network (preset finetune-bundled sets the rest)")
    consistency_weight: float = option(
        0.0, doc="above 0, each batch is also seen under a second augmentation, and the two "
                 "predictions' disagreement is penalised with this weight, so the answer "
                 "moves less when a face is framed differently")
    consistency_jitter: float | None = option(
        None, doc="make the consistency term's second view the first one moved by up to this "
                  "many pixels (turned by as many degrees, scaled by as many percent) instead "
                  "of another full augmentation")
    consistency_jitter_share: float = option(
        1.0, doc="with --consistency-jitter, the share of the faces whose second view is the "
                 "moved first one; the others get another full augmentation")
    seed: int = option(0, doc="seed of the split, the initialisation, the order and the "
                              "augmentation")

    def __post_init__(self) -> None:
        checks = (_choices, _model_problems, _range_problems, _data_problems)
        problems = [problem for check in checks for problem in check(self)]
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, strict: bool = False) -> TrainConfig:
        """The configuration `to_dict` gave; `strict` refuses keys no field has (a user's
        file), where the default ignores them (a checkpoint of an older version)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if strict and unknown:
            raise ValueError(f"unknown configuration fields {unknown}")
        kwargs = {k: v for k, v in values.items() if k in known}
        if isinstance(kwargs.get("data"), str):  # written before several datasets were allowed
            kwargs["data"] = [kwargs["data"]]
        for name, kind in NESTED.items():
            if isinstance(kwargs.get(name), dict):
                section = kwargs[name]
                names = {f.name for f in fields(kind)}
                if strict and set(section) - names:
                    raise ValueError(f"unknown fields {sorted(set(section) - names)} in {name}")
                kwargs[name] = kind(**{k: v for k, v in section.items() if k in names})
        return cls(**kwargs)

    def to_yaml(self, path: Path) -> None:
        """The human-readable copy of the configuration that `--config` reads back."""
        import yaml  # the `train` extra: not needed to build the command line

        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        import yaml

        try:
            values = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ValueError(f"{path}: not a readable configuration ({error})") from error
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a configuration is a mapping of fields to values")
        try:
            return cls.from_dict(values, strict=True)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error


def _choices(config: TrainConfig) -> list[str]:
    return [f"{f.name} must be one of {f.metadata['choices']}, not {getattr(config, f.name)!r}"
            for f in fields(config) if f.metadata.get("choices")
            and getattr(config, f.name) not in f.metadata["choices"]]


def _model_problems(config: TrainConfig) -> list[str]:
    """Options that need a transfer model (a backbone and an age distribution)."""
    transfer = config.model.architecture == "transfer"
    needs_transfer = {
        "the 'dldl' age loss": config.age_loss == "dldl",
        "distillation from teachers": bool(config.teachers),
        "feature distillation (embedding_weight)": bool(config.embedding_weight),
        "antialias": config.model.antialias,
        "luminance": config.model.luminance,
        "the consistency term (consistency_weight)": bool(config.consistency_weight),
    }
    problems = [f"{what} needs a transfer model (its age head predicts a distribution), not "
                f"{config.model.architecture!r}"
                for what, wanted in needs_transfer.items() if wanted and not transfer]
    if transfer and config.age_loss != "dldl":
        problems.append("a transfer model trains with the 'dldl' age loss (its age head "
                        f"predicts a distribution), not {config.age_loss!r}")
    if config.init_checkpoint == BUNDLED_INIT and not config.freeze_batchnorm:
        problems.append("--init bundled needs --freeze-batchnorm: the bundled model's "
                        "BatchNorms are folded into its convolutions")
    if config.embedding_weight and not config.soft_targets:
        problems.append("feature distillation (embedding_weight) needs soft_targets with "
                        "descriptors")
    return problems


def _range_problems(config: TrainConfig) -> list[str]:
    problems = [f"{name} must be at least 1" for name in ("epochs", "batch_size")
                if getattr(config, name) < 1]
    if config.consistency_jitter is not None and config.consistency_jitter <= 0:
        problems.append("consistency_jitter must be above 0 (None: independent views)")
    if not 0 <= config.consistency_jitter_share <= 1:
        problems.append("consistency_jitter_share is a share, between 0 and 1")
    if config.limit is not None and config.limit < 1:
        problems.append("limit must be at least 1")
    if config.person_cap is not None and config.person_cap < 1:
        problems.append("person_cap must be at least 1")
    return problems


def _data_problems(config: TrainConfig) -> list[str]:
    problems = []
    if config.data_weights and len(config.data_weights) != len(config.data):
        problems.append(f"{len(config.data_weights)} data weights for {len(config.data)} "
                        "datasets: give one --data-weight per --data")
    if any(weight < 0 for weight in config.data_weights) or (
            config.data_weights and not sum(config.data_weights)):
        problems.append("data weights are shares: at least 0, and not all 0")
    if config.split_file and len(config.data) > 1:
        problems.append("--split-file names the split of one dataset; with several, each "
                        "keeps the split.csv beside it")
    return problems
