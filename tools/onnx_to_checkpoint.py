"""Read a transfer model's weights back out of an ONNX file that `agegender export` wrote,
into a checkpoint (`agegender.models.onnx_weights` does the reading).

To fine-tune the bundled model, `agegender train --init bundled` reads it directly; this tool
is for other exported transfer models, or to keep the checkpoint. Train the result with
`--freeze-batchnorm`: export folded its BatchNorms into the convolutions.

    python tools/onnx_to_checkpoint.py src/agegender/assets/agegender_mobilenet_v2.onnx \\
        --preset transfer-mobilenet_v2 --antialias --out runs/bundled/best.pt
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from agegender.models.checkpoint import save_checkpoint
from agegender.models.factory import create_model
from agegender.models.onnx_weights import network_from_onnx
from agegender.training.presets import get_preset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path, help="a transfer model exported by agegender")
    parser.add_argument("--preset", default="transfer-mobilenet_v2")
    parser.add_argument("--antialias", action="store_true", help="the model was trained with it")
    parser.add_argument("--luminance", action="store_true", help="the model was trained with it")
    parser.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    args = parser.parse_args(argv)
    config = get_preset(args.preset)
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, antialias=args.antialias, luminance=args.luminance))
    model = create_model(config.model, config.preprocessing, load_pretrained=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, network_from_onnx(args.onnx, model), config.to_dict())
    print(args.out)


if __name__ == "__main__":
    main()
