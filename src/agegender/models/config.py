"""A model's architecture as data, kept apart from torch so configurations (and the flags made
from them) load without the training stack."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from agegender.options import option

ARCHITECTURES = ("seed-cnn", "seed-separate", "transfer")


@dataclass
class ModelConfig:
    """Architecture hyper-parameters.

    Every model outputs (gender logit, age in years); a `transfer` model adds age logits.
    """

    architecture: str = option("seed-cnn", choices=ARCHITECTURES, cli=False,
                               doc="the network: a seed CNN or a transfer backbone")
    widths: list[int] = option(default_factory=lambda: [32, 64, 128, 256],
                               doc="seed CNNs: channels of each conv block")
    dense: list[int] = option(default_factory=lambda: [256, 256],
                              doc="seed CNNs: units of each dense layer")
    dropout: float = option(0.3, doc="dropout before the heads")
    batchnorm: bool = option(True, doc="seed CNNs: BatchNorm after each convolution")
    initial_age: float = option(33.0, doc="seed CNNs: the age head's starting bias in years")
    backbone: str | None = option(None, cli=False,
                                  doc="transfer models: the ImageNet backbone")
    pretrained: bool = option(True, doc="transfer models: start from ImageNet weights")
    antialias: bool = option(
        False, doc="transfer models: blur before each strided convolution, so the answer "
                   "moves less when the face moves by a pixel (adds no weights)")
    luminance: bool = option(
        False, doc="transfer models: read only each pixel's brightness (the luma of Pillow's "
                   "grayscale conversion), so a colour photo and its grayscale copy give the "
                   "same answer (adds no weights)")
    output_stride: int = option(
        32, choices=(16, 32),
        doc="transfer models (MobileNetV2): 16 runs the last strided stage at stride 1 and "
            "dilates the layers after it, so the last feature map, from which the heads pool and "
            "`explain` draws, is 7×7 at 112 px instead of 4×4 (same weights, about 1.5× the "
            "compute)")

    def to_dict(self) -> dict:
        return asdict(self)
