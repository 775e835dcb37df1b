"""A transfer model's weights read back from an ONNX file that `agegender export` wrote.

The ONNX file is the one copy of the bundled model that ships, so fine-tuning it (`train
--init bundled`, `tools/onnx_to_checkpoint.py`) starts here. Export folds each BatchNorm into
the convolution before it, so the network rebuilt here has those BatchNorms set to the identity
(scale 1, mean 0, variance 1 − eps) with the folded bias as theirs: in eval mode it computes
exactly what the ONNX file does. Train it with `--freeze-batchnorm`, which keeps every
BatchNorm in eval mode; the calibration inside the ONNX graph is not carried over (`train`
calibrates again).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from torch import nn

GRAPH_PREFIX = "model."
"""Export wraps the network in `DeployedModel`, whose attribute `model` holds it."""


def network_from_onnx(path: Path, model: nn.Module) -> nn.Module:
    """`model` (built from the same configuration as the exported one) with the ONNX file's
    weights; raises ValueError when a parameter has no counterpart in the file."""
    graph = onnx.load(str(path)).graph
    weights = {tensor.name.removeprefix(GRAPH_PREFIX): torch.from_numpy(
        numpy_helper.to_array(tensor).copy()) for tensor in graph.initializer
        if tensor.name.startswith(GRAPH_PREFIX)}
    state = model.state_dict()
    fixed = {name for name, _ in model.named_buffers()} - state.keys()  # e.g. LuminanceInput's
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if isinstance(module, nn.BatchNorm2d):
            _identity_batchnorm(state, name, module.eps)
    for name, value in weights.items():
        if name.endswith(".weight_bias"):  # the folded bias of the BatchNorm after the conv
            state[_next_batchnorm(name.removesuffix(".weight_bias"), modules) + ".bias"] = value
        elif name in state:
            state[name] = value.reshape(state[name].shape)
        elif name in fixed:
            continue
        else:
            raise ValueError(f"{path}: {name} has no place in the model")
    missing = [name for name, _ in model.named_parameters() if not _found(name, weights, modules)]
    if missing:
        raise ValueError(f"{path}: holds no weights for {missing[:5]}")
    model.load_state_dict(state)
    return model.eval()


def _identity_batchnorm(state: dict, name: str, eps: float) -> None:
    state[f"{name}.weight"] = torch.ones_like(state[f"{name}.weight"])
    state[f"{name}.bias"] = torch.zeros_like(state[f"{name}.bias"])
    state[f"{name}.running_mean"] = torch.zeros_like(state[f"{name}.running_mean"])
    state[f"{name}.running_var"] = torch.full_like(state[f"{name}.running_var"], 1 - eps)


def _next_batchnorm(conv: str, modules: dict[str, nn.Module]) -> str:
    """The BatchNorm that follows convolution `conv` (`features.0.0` → `features.0.1`)."""
    parent, _, index = conv.rpartition(".")
    following = f"{parent}.{int(index) + 1}"
    if not isinstance(modules.get(following), nn.BatchNorm2d):
        raise ValueError(f"no BatchNorm after {conv} to carry its folded bias")
    return following


def _found(parameter: str, weights: dict, modules: dict[str, nn.Module]) -> bool:
    """Whether the file sets `parameter`: directly, or folded (a BatchNorm's scale is 1)."""
    owner = parameter.rpartition(".")[0]
    return parameter in weights or isinstance(modules.get(owner), nn.BatchNorm2d)
