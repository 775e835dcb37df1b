"""`agegender explain`: activation-map panels of the faces in images (see inference.explain)."""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

from agegender.atomic import write_bytes_atomic
from agegender.cli.messages import plural

log = logging.getLogger("agegender")

TASK_TILES = {"both": (0, 1, 2, 3, 4), "gender": (0, 1, 3), "age": (0, 2, 4)}
"""The panel pictures (crop, gender map, age map, both on the photo) each --task keeps."""


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]
               ) -> None:
    explain = commands.add_parser(
        "explain", parents=parents,
        help="class activation maps: which face regions the predictions come from",
        description="For every face found, write a PNG panel: the aligned crop, a heat map for "
                    "gender and one for age on the crop and on the photo, and the prediction. "
                    "An exported .onnx model gives class activation maps with numpy alone; a "
                    ".pt checkpoint gives Grad-CAM (needs torch). Flip averaging is off for "
                    "the maps.")
    explain.add_argument("paths", nargs="+", help="image files, folders or globs")
    explain.add_argument("--model", type=Path,
                         help=".onnx (exported by this version) or .pt checkpoint; default: "
                              "the bundled model")
    explain.add_argument("--task", choices=list(TASK_TILES), default="both",
                         help="which maps to draw (default: %(default)s)")
    explain.add_argument("--output", type=Path, required=True, help="folder for the panels")


def run(args: argparse.Namespace) -> int:
    """Panels for every face; an unreadable file is reported and skipped. Exit 1 if any was."""
    from agegender.imageio import ImageReadError, decode_image
    from agegender.inference.annotate import Annotator
    from agegender.inference.explain import explain_faces, load_explainer, render_panel
    from agegender.inference.inputs import expand_inputs
    from agegender.inference.predictor import Predictor, bundled_model_path

    inputs, missing = expand_inputs(args.paths)
    for argument, reason in missing:
        log.error("%s: %s", argument, reason)
    explainer = load_explainer(args.model or bundled_model_path())
    predictor = Predictor(explainer.backend)
    names = Annotator(args.output, inputs)
    failed, panels = len(missing), 0
    for item in inputs:
        try:
            image = decode_image(item.path, source=str(item.path))
        except ImageReadError as error:
            log.error("%s", error)
            failed += 1
            continue
        faces = explain_faces(explainer, image, predictor.find_faces(image))
        if not faces:
            log.warning("%s: no face detected", item.path)
        base = names.path_for(str(item.path))
        for index, face in enumerate(faces):
            panel = render_panel(image, face, explainer.methods, f"{item.path.name} face {index}",
                                 TASK_TILES[args.task])
            path = base.with_name(f"{base.stem}_face{index}.png")
            write_bytes_atomic(path, _png(panel))
            print(path)
            panels += 1
    log.info("%s in %s; %s failed", plural(panels, "panel"), args.output,
             plural(failed, "input"))
    return 1 if failed else 0


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
