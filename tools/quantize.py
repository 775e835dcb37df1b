"""The INT8 copy of an age/gender model: onnxruntime's static quantisation (QDQ), calibrated on
UTKFace *training* faces only (never validation or test, on which the copy is then judged).

Rerun it for whichever model ships; it writes `<name>.int8.onnx` beside the float file, which
`--precision int8` then runs:

    python tools/quantize.py --data ../shared/data/utkface/UTKFace.tar.gz \\
        [--model src/agegender/assets/agegender_mobilenet_v2.onnx] [--faces 512]

The calibration faces are the canonical crops `agegender predict` would give the model (each
training crop detected and aligned). Weights are INT8 per channel; activations UINT8 per
tensor, their ranges the 99.999th percentiles of the calibration activations (MinMax ranges
cost the bundled model 0.11 years of validation MAE, these 0.05); the output heads (the `Gemm`
layers) stay in float. The face detector is not quantised: its INT8 copies (MinMax or
percentile ranges, with or without its coarsest level and heads in float) found 0.88–0.91 of
the faces of 40 validation scenes against 0.99 in float, with 0.5–1.2 false faces per scene,
their box offsets being far more sensitive than their scores. Needs the `train` extra (onnx).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from agegender.data import assign_splits, find_split_file, open_source
from agegender.imageio import ImageReadError
from agegender.inference.backends import ONNX_INPUT
from agegender.inference.predictor import Predictor, bundled_model_path
from agegender.precision import int8_path
from agegender.preprocessing import normalize

PERCENTILE = 99.999
FLOAT_OPS = ("Gemm",)


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
    predictor = Predictor(model, whole_image=True, precision="fp32")
    faces = np.stack([predictor.find_faces(crop)[0].crop for crop in crops])
    prep = predictor.preprocessing
    return [normalize(faces[start:start + 32], prep) for start in range(0, len(faces), 32)]


def quantize(source: Path, target: Path, inputs: list[np.ndarray]) -> None:
    """Write the QDQ INT8 copy of `source` to `target`, calibrated on `inputs`, with the
    float file's metadata (its preprocessing and labels)."""
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        float_nodes = [node.name for node in onnx.load(str(prepared)).graph.node
                       if node.op_type in FLOAT_OPS]
        quantize_static(str(prepared), str(target), Batches(ONNX_INPUT, inputs),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.Percentile,
                        nodes_to_exclude=float_nodes,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                       "CalibPercentile": PERCENTILE})
    quantised = onnx.load(str(target))
    quantised.ClearField("metadata_props")
    quantised.metadata_props.extend(onnx.load(str(source)).metadata_props)
    onnx.save(quantised, str(target))
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB) from {source}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="UTKFace.tar.gz with split.csv")
    parser.add_argument("--model", type=Path, default=None,
                        help="the float age/gender model (default: the bundled one)")
    parser.add_argument("--faces", type=int, default=512, help="training faces to calibrate on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = args.model or bundled_model_path()
    crops = training_crops(args.data, args.faces, args.seed)
    quantize(model, int8_path(model), model_inputs(model, crops))


if __name__ == "__main__":
    main()
