"""`agegender predict --engine ray`: the same rows as the plain command, predicted by an actor
pool on Ray Data (a cluster, or every core of this machine)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from agegender.cli.messages import FailureLog, plural
from agegender.limits import flag_type

log = logging.getLogger("agegender")

EXIT_OK, EXIT_SOME_FAILED = 0, 1


def add_arguments(predict: argparse.ArgumentParser) -> None:
    """The engine's options on the `predict` parser."""
    group = predict.add_argument_group("engine")
    group.add_argument("--engine", choices=["plain", "ray"], default="plain",
                       help="plain (the default): this process; ray: an actor pool on Ray Data "
                            "(pip install \"agegender[ray]\"), which also reads Parquet or CSV "
                            "listings of paths (column `path`), URIs such as s3://bucket/dir/, "
                            "and writes .parquet")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="the Ray cluster to join (default: start Ray on this machine)")
    group.add_argument("--ray-actors", type=flag_type("ray_actors"), metavar="N",
                       help="predictors in the pool (default: one per CPU of the cluster)")


def run(args: argparse.Namespace, faces: object | None = None) -> int:
    """Predict `args.paths` on Ray and write the rows as the plain engine does; `faces`: the
    `FaceFilter` of --max-faces, --min-face, --min-score (None: all faces)."""
    from agegender.faces.search import DEFAULT_SEARCH
    from agegender.inference.predictor import FaceResult, bundled_model_path
    from agegender.inference.ray_batch import RayOptions, list_inputs, predict_on_ray, require_ray
    from agegender.inference.video import is_video
    from agegender.precision import model_file, resolve_precision

    require_ray()
    refused = [flag for flag, given in (("--resume", args.resume), ("--annotate", args.annotate),
                                        ("--every", args.every != 1),
                                        (f"--detector {args.detector}",
                                         args.detector != DEFAULT_SEARCH)) if given]
    if refused:
        raise ValueError(f"--engine ray does not take {', '.join(refused)}; use the plain "
                         "engine for them")
    files, missing = list_inputs(args.paths)
    videos = [file for file in files if is_video(Path(file))]
    if videos:
        raise ValueError(f"--engine ray predicts images, and {videos[0]} is a video; use the "
                         "plain engine for videos")
    if "-" in args.paths:
        raise ValueError("--engine ray reads files, not standard input (-); use the plain "
                         "engine for it")
    options = RayOptions(address=args.ray_address, actors=args.ray_actors,
                         quiet=not getattr(args, "verbose", False))
    counts = {"faces": 0, "without_face": 0}
    failures = FailureLog(str(args.output) if args.output else None)
    with _writer(args) as writer:
        for argument, reason in missing:
            _write(writer, FaceResult(file=argument, error=reason).to_dict(), counts, failures)
        model = args.model or bundled_model_path()
        model = model_file(model, resolve_precision(model, args.precision))
        rows = predict_on_ray(files, str(model), args.batch_size,
                              options, aligned=args.aligned, whole_image=args.whole_image,
                              faces=faces)
        for row in rows:
            _write(writer, row, counts, failures)
    failures.close()
    log.info("%s on Ray: %s, %s without a face, %d failed",
             plural(len(files) + len(missing), "file"), plural(counts["faces"], "face"),
             plural(counts["without_face"], "image"), failures.count)
    return EXIT_SOME_FAILED if failures.count else EXIT_OK


def _writer(args: argparse.Namespace):
    from agegender.inference.output import ResultWriter
    from agegender.inference.predictor import RESULT_COLUMNS
    from agegender.inference.ray_batch import ParquetRows

    if args.output is not None and args.output.suffix.lower() == ".parquet":
        return ParquetRows(args.output)
    return ResultWriter(RESULT_COLUMNS, args.output)


def _write(writer, row: dict, counts: dict[str, int], failures: FailureLog) -> None:
    from agegender.inference.predictor import NO_FACE

    writer.write(row)
    error = row["error"]
    counts["faces"] += error is None
    counts["without_face"] += error == NO_FACE
    if error not in (None, NO_FACE):
        failures.add(row["file"], error)
