"""`agegender` command line: train, calibrate, evaluate, predict, export, convert-checkpoint,
explain, compare, serve.

Thin: parsing here, work in the packages.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from agegender.cli import compare, explain, people, ray_engine, serve, tracked
from agegender.training.config import TrainConfig
from agegender.training.flags import add_config_flags, apply_overrides, given_overrides

log = logging.getLogger("agegender")

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR = 0, 1, 2


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", type=Path, required=True,
                       help="UTKFace folder or .tar.gz, LFW folder, FairFace or labels.csv "
                            "folder, 48×48 pixel CSV, CelebA folder, or male/female class "
                            "folders")
    group.add_argument("--split-file", type=Path,
                       help="CSV with file,split columns (default: split.csv beside the data)")
    group.add_argument("--limit", type=int, help="use at most N images (quick runs)")
    group.add_argument("--cache-dir", type=Path,
                       help="decoded-image cache (default: $AGEGENDER_CACHE or ~/.cache/agegender)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agegender", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a model; writes checkpoints, logs, metrics",
        description="Train a model. Every field of the configuration is a flag; flags override "
                    "the preset, or the --config file.")
    train.add_argument("--preset", help="named configuration to start from (default seed-cnn)")
    train.add_argument("--config", type=Path, metavar="YAML",
                       help="start from this configuration (the config.yaml every run writes) "
                            "instead of a preset")
    run = train.add_argument_group("run")
    run.add_argument("--out", type=Path, required=True, help="run folder")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out with its saved configuration (only "
                          "--epochs, --data and --split-file may be given with it)")
    run.add_argument("--device", default="auto",
                     help="cpu, cuda or cuda:N; auto (default) takes a GPU when PyTorch sees one")
    run.add_argument("--cache-dir", type=Path,
                     help="decoded-image cache (default: $AGEGENDER_CACHE or ~/.cache/agegender)")
    add_config_flags(train.add_argument_group("configuration"))

    calibrate = commands.add_parser(
        "calibrate", help="fit flip averaging, gender and age-interval calibration on the "
                          "validation split and store them in the checkpoint (train does this)")
    _add_data_arguments(calibrate)
    calibrate.add_argument("--model", type=Path, required=True, help="checkpoint (.pt)")
    calibrate.add_argument("--no-flip", action="store_true",
                           help="never average over a horizontal flip (halves inference cost)")

    evaluate = commands.add_parser("evaluate", help="metrics and plots of a model on a split")
    _add_data_arguments(evaluate)
    evaluate.add_argument("--model", type=Path, required=True, help="checkpoint (.pt) or .onnx")
    evaluate.add_argument("--report", type=Path, required=True, help="report folder")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    evaluate.add_argument("--run-dir", type=Path,
                          help="the model's training run folder, for the report's training "
                               "curves (default: the checkpoint's folder)")

    predict = commands.add_parser("predict", help="age and gender of the faces in images")
    predict.add_argument("paths", nargs="*",
                         help="image or video files, folders (searched recursively), globs, "
                              "webcams (/dev/video0) or network streams (rtsp://, http(s)://, "
                              "udp://)")
    predict.add_argument("--model", type=Path,
                         help="checkpoint (.pt) or exported model (.onnx, needs no torch); "
                              "default: the bundled model")
    predict.add_argument("--output", type=Path,
                         help=".csv, .json or .jsonl (default: CSV to stdout)")
    predict.add_argument("--batch-size", type=int, default=32, help="faces per model call")
    predict.add_argument("--workers", type=int, default=2,
                         help="threads that decode, detect and align ahead of the model")
    predict.add_argument("--annotate", type=Path, metavar="DIR|VIDEO",
                         help="also save each image with boxes and labels drawn, as JPEG under "
                              "DIR at its path below the folder (or file, or glob) given; for "
                              "one video or live source, a video file (out.mp4: H.264, boxes "
                              "coloured by track, labelled with the track's answer)")
    predict.add_argument("--every", type=int, default=1, metavar="N",
                         help="videos: predict every N-th frame (default every frame)")
    predict.add_argument("--resume", action="store_true",
                         help="keep the rows already in --output and skip the files they cover")
    predict.add_argument("--aligned", action="store_true",
                         help="the images are face crops already aligned like the training "
                              "data (UTKFace's aligned crops): no detection, one face each")
    tracked.add_arguments(predict)
    people.add_arguments(predict)
    ray_engine.add_arguments(predict)

    export = commands.add_parser("export", help="checkpoint → ONNX model that runs without torch")
    export.add_argument("checkpoint", type=Path, help="checkpoint (.pt)")
    export.add_argument("--output", type=Path,
                        help="the .onnx file (default: the checkpoint's name with .onnx)")
    convert = commands.add_parser(
        "convert-checkpoint",
        help="re-save a checkpoint of an older version as tensors and plain data (opens it "
             "trusting its pickled objects: only for files from a source you trust)")
    convert.add_argument("checkpoint", type=Path, help="the old checkpoint (.pt)")
    convert.add_argument("--output", type=Path, required=True, help="the converted .pt")
    explain.add_parser(commands)
    compare.add_parser(commands)
    serve.add_parser(commands)
    return parser


def _train(args: argparse.Namespace) -> int:
    from agegender.training.run import train

    config = _train_config(args)
    metrics = train(config, args.out, resume=args.resume, cache_dir=args.cache_dir,
                    device=args.device)
    if metrics:
        print(_headline(metrics, f"{args.out / 'metrics.json'}"))
    return EXIT_OK


RESUME_FLAGS = {"epochs", "data", "split_file"}
"""What `--resume` applies: a longer schedule, and the data's place (a run may move)."""


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's configuration: the preset, the --config file, or (--resume) the saved one;
    then the flags given."""
    from agegender.models.checkpoint import read_checkpoint
    from agegender.training.presets import get_preset

    overrides = given_overrides(args)
    if args.config and args.preset:
        raise ValueError("--config and --preset both name the starting configuration; give one")
    if args.resume:
        if args.config or args.preset:
            raise ValueError("--resume continues with the run's saved configuration; it takes "
                             "no --config or --preset")
        config = TrainConfig.from_dict(read_checkpoint(args.out / "last.pt")["config"])
        refused = sorted(name for name, value in overrides.items()
                         if name not in RESUME_FLAGS and _field(config, name) != value)
        if refused:
            flags = ", ".join("--" + name.split(".")[-1].replace("_", "-") for name in refused)
            raise ValueError(f"--resume continues {args.out} as it was configured; {flags} "
                             f"would change it (only --epochs may, to extend it); start a "
                             f"new run with --init {args.out / 'best.pt'} instead")
    elif args.config:
        config = TrainConfig.from_yaml(args.config)
    else:
        config = get_preset(args.preset or "seed-cnn")
    return apply_overrides(config, overrides)


def _field(config: TrainConfig, name: str) -> object:
    """A field by its flag destination (`epochs`, `augment.flip`)."""
    value: object = config
    for part in name.split("."):
        value = getattr(value, part)
    return value


def _calibrate(args: argparse.Namespace) -> int:
    from agegender.data.labelled import load_labelled_faces
    from agegender.models.checkpoint import read_checkpoint
    from agegender.training.calibrate import calibrate_checkpoint

    config = TrainConfig.from_dict(read_checkpoint(args.model)["config"])
    data = load_labelled_faces(args.data, config.preprocessing, split_file=args.split_file,
                               limit=args.limit, seed=config.seed, cache_dir=args.cache_dir)
    print(calibrate_checkpoint(args.model, data, allow_flip=not args.no_flip))
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from agegender.evaluation.evaluate import evaluate_model

    metrics = evaluate_model(args.data, args.model, args.report, split=args.split,
                             split_file=args.split_file, limit=args.limit,
                             cache_dir=args.cache_dir, run_dir=args.run_dir)
    print(_headline(metrics, f"{args.report}/report.html"))
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from agegender.inference import RESULT_COLUMNS, FaceResult, Predictor
    from agegender.inference.annotate import Annotator
    from agegender.inference.inputs import expand_inputs
    from agegender.inference.output import ResultWriter, files_done
    from agegender.inference.predictor import NO_FACE
    from agegender.inference.video import is_live_source

    if args.engine == "ray":
        return ray_engine.run(args)
    if not args.paths and args.people is None:
        raise ValueError("predict: give the images, videos or live sources (or --people)")
    live = [argument for argument in args.paths if is_live_source(argument)]
    inputs, missing = expand_inputs([a for a in args.paths if not is_live_source(a)])
    if people.wanted(args) or tracked.wants_tracking(args, inputs, live):
        return _predict_people_or_tracks(args, inputs, missing, live)
    if args.resume and args.output is None:
        raise ValueError("--resume needs --output, the file to continue")
    done = files_done(args.output) if args.resume else set()
    if done:
        inputs = [item for item in inputs if str(item.path) not in done]
        missing = [(argument, reason) for argument, reason in missing if argument not in done]
        log.info("resuming: %d files already in %s, %d to go", len(done), args.output,
                 len(inputs))
    paths = [item.path for item in inputs]
    predictor = Predictor(args.model, batch_size=args.batch_size, aligned=args.aligned)
    annotator = Annotator(args.annotate, inputs) if args.annotate is not None else None
    failed = faces = without_face = 0
    with ResultWriter(RESULT_COLUMNS, args.output, append=args.resume) as writer:
        for argument, reason in missing:
            writer.write(FaceResult(file=argument, error=reason).to_dict())
            failed += 1
        writer.flush()
        progress = tqdm(paths, unit="image", disable=len(paths) < 20)
        results = predictor.predict_paths(progress, workers=args.workers,
                                          keep_images=annotator is not None,
                                          every=args.every)
        for result in results:
            for row in result.rows:
                writer.write(row.to_dict())
                faces += row.error is None
                without_face += row.error == NO_FACE
                failed += row.error not in (None, NO_FACE)
            writer.flush()
            if annotator is not None:
                annotator.save(result)
    for_log = f" to {args.output}" if args.output else ""
    log.info("%d images%s: %d faces, %d images without a face, %d failed",
             len(paths) + len(missing), for_log, faces, without_face, failed)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _predict_people_or_tracks(args: argparse.Namespace, inputs: list, missing: list,
                              live: list[str]) -> int:
    """`--person`/`--people`, or inputs with videos or live sources (tracked)."""
    from agegender.inference import Predictor

    if people.wanted(args):
        return people.run(args, inputs, missing, live)
    if args.resume:
        raise ValueError("--resume continues per-file rows; tracked videos and live "
                         "sources restart (or pass --no-track)")
    from agegender.tracking.tracker import require_tracker

    require_tracker()
    predictor = Predictor(args.model, batch_size=args.batch_size, aligned=args.aligned)
    return tracked.run(args, predictor, inputs, missing, live)


def _export(args: argparse.Namespace) -> int:
    from agegender.export import export_onnx

    output = export_onnx(args.checkpoint, args.output or args.checkpoint.with_suffix(".onnx"))
    print(output)
    return EXIT_OK


def _convert_checkpoint(args: argparse.Namespace) -> int:
    from agegender.models.legacy_checkpoint import convert_checkpoint

    print(convert_checkpoint(args.checkpoint, args.output))
    return EXIT_OK


def _headline(metrics: dict, where: str) -> str:
    def fmt(key: str, digits: int) -> str:
        value = metrics.get(key)
        return "-" if value is None else f"{value:.{digits}f}"

    return (f"{metrics.get('split')} split, {metrics.get('n_images')} images: age MAE "
            f"{fmt('mae', 2)}  CS@5 {fmt('cs5', 3)}  gender accuracy {fmt('gender_acc', 4)}  "
            f"F1 {fmt('gender_f1', 4)}  AUC {fmt('gender_auc', 4)}  → {where}")


COMMANDS = {"train": _train, "calibrate": _calibrate, "evaluate": _evaluate, "predict": _predict,
            "export": _export, "convert-checkpoint": _convert_checkpoint, "explain": explain.run,
            "compare": compare.run, "serve": serve.run}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        log.error("%s", error)
        return EXIT_ERROR
    except KeyboardInterrupt:
        log.error("interrupted; completed epochs are kept in last.pt (resume with --resume)"
                  if args.command == "train" else "interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
