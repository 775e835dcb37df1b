"""INT8 copies of the age/gender model and the face detector: onnxruntime's static
quantisation (QDQ), calibrated on UTKFace *training* faces only (never validation or test, on
which the copies are then judged).

Rerun it for whichever model ships; it writes `<name>.int8.onnx` beside each float file:

    python tools/quantize.py --data ../shared/data/utkface/UTKFace.tar.gz \\
        [--model src/agegender/assets/agegender_mobilenet_v2.onnx] [--faces 512] [--scenes 48]

The model is calibrated on the canonical crops `agegender predict` would give it (each
training crop detected and aligned); the detector on synthetic scenes of training crops at the
sizes it runs at (the 1280-px and 320-px passes, the refinement window). Weights are INT8 per
channel, activations UINT8 per tensor from MinMax ranges; the model's output heads (the
`Gemm` layers) and the detector's output convolutions stay in float, since a quantised age
or box offset costs more accuracy than it saves time. Needs the `train` extra (onnx).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from agegender.data import assign_splits, find_split_file, open_source
from agegender.evaluation.scenes import make_scene
from agegender.faces.detector import BGR_MEAN, detector_path
from agegender.imageio import ImageReadError
from agegender.inference.backends import ONNX_INPUT
from agegender.inference.predictor import Predictor, bundled_model_path
from agegender.precision import int8_path
from agegender.preprocessing import normalize

PER_CHANNEL_OPSET = 13


def training_crops(data: Path, count: int, seed: int) -> list[np.ndarray]:
    """`count` decoded UTKFace crops of `split == train`, drawn with `seed`."""
    source = open_source(data)
    split_file = find_split_file(data)
    if split_file is None:
        raise SystemExit(f"{data}: no split.csv beside it; calibration draws from the train split")
    splits = assign_splits(source.records, split_file)
    train = [index for index, split in enumerate(splits) if split == "train"]
    chosen = sorted(int(i) for i in np.random.default_rng(seed).choice(train, count, False))
    return [image for _, image in source.iter_images(chosen)
            if not isinstance(image, ImageReadError)]


class Batches(CalibrationDataReader):
    """Feeds calibration inputs (already in the network's layout) one batch at a time."""

    def __init__(self, name: str, inputs: list[np.ndarray]):
        self._inputs: Iterator[np.ndarray] = iter(inputs)
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._inputs, None)
        return None if batch is None else {self._name: batch}


def model_inputs(model: Path, crops: list[np.ndarray]) -> list[np.ndarray]:
    """The model's normalised inputs for the crops, as `agegender predict` prepares them,
    in batches of 32."""
    predictor = Predictor(model, whole_image=True)
    faces = np.stack([predictor.find_faces(crop)[0].crop for crop in crops])
    prep = predictor.preprocessing
    return [normalize(faces[start:start + 32], prep) for start in range(0, len(faces), 32)]


def detector_inputs(crops: list[np.ndarray], scenes: int, seed: int) -> list[np.ndarray]:
    """The detector's inputs for synthetic scenes of the crops at the sizes it runs at: each
    scene at up to 1280 px and at 320 px, and canonical windows of single crops."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(scenes):
        chosen = [int(i) for i in rng.choice(len(crops), size=int(rng.integers(2, 7)),
                                             replace=False)]
        scene, _ = make_scene(rng, crops, chosen)
        longest = max(scene.shape[:2])
        for side in (min(longest, 1280), 320):
            scale = side / longest
            size = (max(1, round(scene.shape[1] * scale)), max(1, round(scene.shape[0] * scale)))
            images.append(np.asarray(Image.fromarray(scene).resize(size,
                                                                   Image.Resampling.BILINEAR)))
    images += [np.asarray(Image.fromarray(crop).resize((160, 160), Image.Resampling.BILINEAR))
               for crop in crops[:scenes]]
    return [(image[:, :, ::-1].astype(np.float32) - BGR_MEAN).transpose(2, 0, 1)[None].copy()
            for image in images]


def float_nodes(path: Path, op_types: tuple[str, ...], heads: bool) -> list[str]:
    """Nodes left in float: those of `op_types`, and with `heads` the output heads: every
    node between a graph output and the convolutions that feed it, those included (the
    detector's box, score and point heads)."""
    graph = onnx.load(str(path)).graph
    producer = {output: node for node in graph.node for output in node.output}
    kept = {node.name for node in graph.node if node.op_type in op_types}
    if heads:
        waiting = [producer[output.name] for output in graph.output if output.name in producer]
        while waiting:
            node = waiting.pop()
            if node.name in kept:
                continue
            kept.add(node.name)
            if node.op_type != "Conv":
                waiting += [producer[name] for name in node.input if name in producer]
    return sorted(kept)


def quantize(source: Path, target: Path, input_name: str, inputs: list[np.ndarray],
             float_types: tuple[str, ...], float_heads: bool) -> None:
    """Write the QDQ INT8 copy of `source` to `target`, calibrated on `inputs`; nodes of
    `float_types` (and the output heads, with `float_heads`) stay in float."""
    with tempfile.TemporaryDirectory() as folder:
        prepared, upgraded = Path(folder) / "prepared.onnx", Path(folder) / "upgraded.onnx"
        graph = onnx.load(str(source))
        if max(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")
               ) < PER_CHANNEL_OPSET:  # per-channel DequantizeLinear needs opset 13
            graph = version_converter.convert_version(graph, PER_CHANNEL_OPSET)
        onnx.save(graph, str(upgraded))
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(target), Batches(input_name, inputs),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=float_nodes(prepared, float_types, float_heads),
                        extra_options={"ActivationSymmetric": False,
                                       "WeightSymmetric": True})
    quantised = onnx.load(str(target))
    quantised.ClearField("metadata_props")  # the float file's, which carries the preprocessing
    quantised.metadata_props.extend(onnx.load(str(source)).metadata_props)
    onnx.save(quantised, str(target))
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB) from {source}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="UTKFace.tar.gz with split.csv")
    parser.add_argument("--model", type=Path, default=None,
                        help="the float age/gender model (default: the bundled one)")
    parser.add_argument("--faces", type=int, default=512, help="training faces for the model")
    parser.add_argument("--scenes", type=int, default=48, help="scenes for the detector")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-detector", action="store_true",
                        help="quantise the age/gender model only")
    args = parser.parse_args(argv)
    model = args.model or bundled_model_path()
    crops = training_crops(args.data, args.faces, args.seed)
    quantize(model, int8_path(model), ONNX_INPUT, model_inputs(model, crops), ("Gemm",),
             float_heads=False)
    if not args.skip_detector:
        detector = detector_path()
        quantize(detector, int8_path(detector), "input",
                 detector_inputs(crops, args.scenes, args.seed), (), float_heads=True)


if __name__ == "__main__":
    main()
