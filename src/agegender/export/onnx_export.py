"""Checkpoint → self-describing ONNX model for `OnnxBackend` (numpy + onnxruntime only).

Uses the torch.export-based exporter (`dynamo=True`): the TorchScript exporter still works in
torch 2.13 but is deprecated and slated for removal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import torch

from agegender import __version__
from agegender.atomic import write_bytes_atomic
from agegender.data.records import GENDER_NAMES
from agegender.inference.backends import (
    META_ARCHITECTURE,
    META_FORMAT,
    META_HEADS,
    META_LABELS,
    META_PREPROCESSING,
    META_PRESET,
    META_VERSION,
    ONNX_FEATURE_OUTPUT,
    ONNX_FORMAT_VERSION,
    ONNX_INPUT,
    ONNX_OUTPUTS,
)
from agegender.inference.cam import LinearHeads
from agegender.models.age_distribution import MAX_AGE, MIN_AGE
from agegender.models.checkpoint import LoadedCheckpoint, load_checkpoint
from agegender.models.deploy import DeployedModel, has_feature_map

# 18 is the lowest opset the torch.export-based exporter emits without a version conversion;
# onnxruntime ≥ 1.14 runs it.
OPSET = 18


# The exporter's libraries log every optimisation pass at INFO, and torch warns once per
# torchvision op it cannot register (our models use none): noise on the `agegender` console.
_EXPORTER_LOG_LEVELS = {"onnxscript": logging.WARNING, "onnx_ir": logging.WARNING,
                        "torch.onnx._internal.exporter._registration": logging.ERROR}


@contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    loggers = {logging.getLogger(name): level for name, level in _EXPORTER_LOG_LEVELS.items()}
    previous = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in previous.items():
            logger.setLevel(level)


def export_onnx(checkpoint: Path | str, output: Path | str) -> Path:
    """Export `checkpoint` to `output` (.onnx) with its preprocessing and labels as metadata.

    The graph takes `image` float32 N×C×H×W (any N ≥ 1) as `normalize` produces it and returns
    `age`, `age_low`, `age_high` (N,) in years and `prob_female` (N,): the checkpoint's
    `DeployedModel`, with its calibration and flip averaging inside the graph. A model with
    linear heads over pooled features also returns `feature_map` (of the image, not its mirror)
    and stores its head weights (`agegender.heads`), from which `agegender explain` computes
    class activation maps with numpy alone. The file is validated, then written atomically.
    """
    output = Path(output)
    loaded = load_checkpoint(checkpoint)
    prep = loaded.preprocessing
    with_map = has_feature_map(loaded.model)
    deployed = DeployedModel(loaded.model, loaded.calibration, feature_map=with_map).eval()
    output_names = [*ONNX_OUTPUTS, ONNX_FEATURE_OUTPUT] if with_map else list(ONNX_OUTPUTS)
    # Batch 2, not 1: torch.export would specialise a size-1 dimension to a constant.
    example = torch.zeros(2, prep.channels, prep.size, prep.size)
    with _quiet_exporter_logs():
        program = torch.onnx.export(
            deployed, (example,), input_names=[ONNX_INPUT],
            output_names=output_names, opset_version=OPSET, dynamo=True, verbose=False,
            dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1)}})
    proto = program.model_proto
    metadata = {
        META_FORMAT: ONNX_FORMAT_VERSION,
        META_VERSION: __version__,
        META_PREPROCESSING: json.dumps(prep.to_dict()),
        META_ARCHITECTURE: loaded.model_config.architecture,
        META_PRESET: loaded.preset,
        META_LABELS: json.dumps({"gender": list(GENDER_NAMES),
                                 "prob_female": f"probability of {GENDER_NAMES[1]} (label 1)",
                                 "age": "years",
                                 "age_low/age_high": "80 % interval in years (NaN: none)"}),
    }
    if with_map:
        metadata[META_HEADS] = _linear_heads(loaded).to_json()
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    write_bytes_atomic(output, proto.SerializeToString())
    return output


def _linear_heads(loaded: LoadedCheckpoint) -> LinearHeads:
    """The head weights and temperatures of a `TransferModel` checkpoint, for numpy CAMs."""
    model, calibration = loaded.model, loaded.calibration

    def values(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy().astype(np.float32)

    return LinearHeads(
        gender_weight=values(model.gender_head.weight)[0],
        age_weight=values(model.age_head.weight), age_bias=values(model.age_head.bias),
        age_bins=np.arange(MIN_AGE, MAX_AGE + 1, dtype=np.float32),
        age_temperature=calibration.reported_age_temperature)
