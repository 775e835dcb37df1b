"""Export training checkpoints to formats that run without PyTorch (needs the `train` extra)."""

from agegender.export.onnx_export import OPSET, export_onnx

__all__ = ["OPSET", "export_onnx"]
