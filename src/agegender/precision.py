"""Which numeric precision the age/gender model runs at: the float file, or its INT8 copy.

`tools/quantize.py` writes the INT8 copy (static QDQ quantisation, calibrated on training
faces) beside the float ONNX file as `<name>.int8.onnx`; the bundled model ships with its
copy. The face detector always runs in float: its INT8 copy lost faces (the model card says
how many). The figures of both precisions are in the model card.
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("int8", "fp32")
DEFAULT_PRECISION = "fp32"
"""The precision used when none is given."""

INT8_SUFFIX = ".int8.onnx"

PRECISION_HELP = ("the age/gender model's precision: int8 runs its INT8 copy (faster; "
                  "figures in the model card), fp32 the float file (default: "
                  f"{DEFAULT_PRECISION}; fp32 for a model without an INT8 copy)")


def check_precision(precision: str) -> str:
    """`precision` if it is one of `PRECISIONS`; else a ValueError naming the setting."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    return precision


def int8_path(path: Path | str) -> Path:
    """Where the INT8 copy of the float ONNX file `path` lies."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".onnx") + INT8_SUFFIX)


def model_file(path: Path | str, precision: str) -> Path:
    """The file to load for `path` at `precision`: the file itself for fp32 (and for
    checkpoints, which run in float), its INT8 copy for int8, which must exist."""
    path = Path(path)
    if check_precision(precision) == "fp32" or path.suffix != ".onnx":
        if precision == "int8":
            raise ValueError(f"{path}: precision int8 needs an ONNX model (a checkpoint runs in "
                             "float; export it, then quantise it with tools/quantize.py)")
        return path
    quantised = int8_path(path)
    if not quantised.is_file():
        raise FileNotFoundError(f"{quantised}: no INT8 copy of {path.name}; make one with "
                                "`python tools/quantize.py --model "
                                f"{path}` or use precision fp32")
    return quantised


def resolve_precision(model: object, precision: str | None) -> str:
    """The precision asked for; by default `DEFAULT_PRECISION`, or fp32 for a model that has
    no INT8 copy beside it (a checkpoint, an ONNX file never quantised, a backend object)."""
    if precision is not None:
        return check_precision(precision)
    if DEFAULT_PRECISION == "int8" and not (isinstance(model, str | Path)
                                            and int8_path(model).is_file()):
        return "fp32"
    return DEFAULT_PRECISION
