"""`agegender predict --engine ray`: the same rows as the plain command, predicted by an actor
pool on Ray Data (a cluster, or every core of this machine)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("agegender")

EXIT_OK, EXIT_SOME_FAILED = 0, 1


def add_arguments(predict: argparse.ArgumentParser) -> None:
    """The engine's options on the `predict` parser."""
    group = predict.add_argument_group("engine")
    group.add_argument("--engine", choices=["plain", "ray"], default="plain",
                       help="plain (default): this process; ray: an actor pool on Ray Data "
                            "(pip install \"agegender[ray]\"), which also reads Parquet or CSV "
                            "listings of paths (column `path`), URIs such as s3://bucket/dir/, "
                            "and writes .parquet")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="the Ray cluster to join (default: start Ray on this machine)")
    group.add_argument("--ray-actors", type=int, metavar="N",
                       help="predictors in the pool (default: one per CPU of the cluster)")


def run(args: argparse.Namespace) -> int:
    """Predict `args.paths` on Ray and write the rows as the plain engine does."""
    from agegender.inference.predictor import FaceResult
    from agegender.inference.ray_batch import RayOptions, list_inputs, predict_on_ray, require_ray
    from agegender.inference.video import is_video

    require_ray()
    refused = [flag for flag, given in (("--resume", args.resume), ("--annotate", args.annotate),
                                        ("--every", args.every != 1)) if given]
    if refused:
        raise ValueError(f"--engine ray does not take {', '.join(refused)}; use the plain "
                         "engine for them")
    files, missing = list_inputs(args.paths)
    videos = [file for file in files if is_video(Path(file))]
    if videos:
        raise ValueError(f"--engine ray predicts images, and {videos[0]} is a video; use the "
                         "plain engine for videos")
    options = RayOptions(address=args.ray_address, actors=args.ray_actors)
    counts = {"faces": 0, "without_face": 0, "failed": 0}
    with _writer(args) as writer:
        for argument, reason in missing:
            _write(writer, FaceResult(file=argument, error=reason).to_dict(), counts)
        rows = predict_on_ray(files, str(args.model) if args.model else None, args.batch_size,
                              args.aligned, options)
        for row in rows:
            _write(writer, row, counts)
    log.info("%d files on Ray: %d faces, %d images without a face, %d failed",
             len(files) + len(missing), counts["faces"], counts["without_face"],
             counts["failed"])
    return EXIT_SOME_FAILED if counts["failed"] else EXIT_OK


def _writer(args: argparse.Namespace):
    from agegender.inference.output import ResultWriter
    from agegender.inference.predictor import RESULT_COLUMNS
    from agegender.inference.ray_batch import ParquetRows

    if args.output is not None and args.output.suffix.lower() == ".parquet":
        return ParquetRows(args.output)
    return ResultWriter(RESULT_COLUMNS, args.output)


def _write(writer, row: dict, counts: dict[str, int]) -> None:
    from agegender.inference.predictor import NO_FACE

    writer.write(row)
    error = row["error"]
    counts["faces"] += error is None
    counts["without_face"] += error == NO_FACE
    counts["failed"] += error not in (None, NO_FACE)
