"""Named training configurations: `--preset NAME` picks one, flags override its fields."""

from __future__ import annotations

from dataclasses import replace

from agegender.models.config import ModelConfig
from agegender.preprocessing import (
    DLIB_MEAN,
    DLIB_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SFACE_MEAN,
    SFACE_STD,
    TF_LITE_MEAN,
    TF_LITE_STD,
    Preprocessing,
)
from agegender.training.config import BUNDLED_INIT, TrainConfig

PRESETS: dict[str, TrainConfig] = {
    # One multi-output CNN: conv blocks 32/64/128/256 + max-pool, 2×dense 256 + dropout.
    "seed-cnn": TrainConfig(
        preset="seed-cnn",
        model=ModelConfig(architecture="seed-cnn", widths=[32, 64, 128, 256], dense=[256, 256],
                          dropout=0.3, batchnorm=True),
        preprocessing=Preprocessing(size=64, grayscale=False),
        epochs=18,
    ),
    # Separate gender and age CNNs with BatchNorm on 48×48 grayscale, as in the pixel-CSV tutorial.
    "seed-separate": TrainConfig(
        preset="seed-separate",
        model=ModelConfig(architecture="seed-separate", widths=[32, 64, 128, 256], dense=[128],
                          dropout=0.3, batchnorm=True),
        preprocessing=Preprocessing(size=48, grayscale=True),
        epochs=18,
    ),
}


def _transfer(backbone: str, size: int, mean: tuple[float, ...], std: tuple[float, ...]
              ) -> TrainConfig:
    """Fine-tune an ImageNet backbone with a DLDL age head (groundwork for the bundled model)."""
    return TrainConfig(
        preset=f"transfer-{backbone}",
        model=ModelConfig(architecture="transfer", backbone=backbone, dropout=0.2),
        preprocessing=Preprocessing(size=size, mean=mean, std=std, align=True),
        epochs=15, lr=1e-3, backbone_lr_scale=0.5, freeze_backbone_epochs=1, weight_decay=1e-5,
        age_loss="dldl",
        # Flip averaging gained 0.08 years of validation MAE for MobileNetV2 but doubles the
        # cost per face (about 5 → 10 ms on 2 cores), which would break the 5 ms budget.
        calibrate_flip=False,
    )


PRESETS["transfer-mobilenet_v2"] = _transfer("mobilenet_v2", 112, IMAGENET_MEAN, IMAGENET_STD)
PRESETS["transfer-efficientnet_lite0"] = _transfer("efficientnet_lite0", 112, TF_LITE_MEAN,
                                                   TF_LITE_STD)
# Face-trained starts (models.face_backbones), each at the size it was trained at: SFace 112 px,
# the Cydral age network 64 px. The latter's features are tuned to faces of that size: on
# UTKFace validation faces its own age head reads MAE 5.72 at 64 px and 12.47 at 112, and a
# ridge read-out of its frozen features 6.81 and 10.28 (ImageNet MobileNetV2 at 112: 9.74).
# tools/face_start_probe.py; docs/snippets/face-starts.md.
PRESETS["transfer-sface"] = _transfer("sface", 112, SFACE_MEAN, SFACE_STD)
PRESETS["transfer-dlib_resnet"] = _transfer("dlib_resnet", 64, DLIB_MEAN, DLIB_STD)

# Fine-tune the bundled model on a user's own faces: its network (MobileNetV2, anti-aliased),
# read back from the ONNX file with its BatchNorms folded and so frozen; a short schedule at the
# learning rate of its last stage.
PRESETS["finetune-bundled"] = replace(
    PRESETS["transfer-mobilenet_v2"], preset="finetune-bundled",
    model=replace(PRESETS["transfer-mobilenet_v2"].model, antialias=True),
    init_checkpoint=BUNDLED_INIT, freeze_batchnorm=True, freeze_backbone_epochs=0, epochs=5,
    lr=3e-4, batch_size=32)


def get_preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
