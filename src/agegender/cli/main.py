"""`agegender` command line: the parsing and the messages; the work is in the packages."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from agegender.cli import compare, explain, people, ray_engine, serve, tracked
from agegender.cli.messages import FailureLog, Tally, log_level, plural, verbosity_parser
from agegender.faces.search import DEFAULT_SEARCH, SEARCH_HELP, SEARCH_NETWORKS
from agegender.limits import flag_type
from agegender.onnx_session import available_cores
from agegender.precision import PRECISION_HELP, PRECISIONS
from agegender.training.config import TrainConfig
from agegender.training.flags import add_config_flags, apply_overrides, given_overrides

log = logging.getLogger("agegender")

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR = 0, 1, 2
EXIT_BROKEN_PIPE = 141
"""As a command killed by SIGPIPE ends (128 + 13): the reader of its output went away."""

DESCRIPTION = """Age and gender of the faces in photos and videos, and a workbench to train,
evaluate and compare models of your own. Run `agegender COMMAND --help` for a command's
options; -v (more) and -q (less) work before or after the command."""


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", type=Path, required=True,
                       help="UTKFace folder or .tar.gz, LFW folder, FairFace or labels.csv "
                            "folder, 48×48 pixel CSV, CelebA folder, or male/female class "
                            "folders")
    group.add_argument("--split-file", type=Path,
                       help="CSV with file,split columns (default: split.csv beside the data, "
                            "else the dataset's own split, else a seeded stratified one)")
    group.add_argument("--limit", type=flag_type("limit"), metavar="N",
                       help="use at most N images, drawn at random (quick runs; default: all)")
    group.add_argument("--cache-dir", type=Path,
                       help="decoded-image cache (default: $AGEGENDER_CACHE or ~/.cache/agegender)")


class VersionAction(argparse.Action):
    """`--version`: argparse's own action prints a fixed string; this one reads the model's
    checksum only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args) -> None:
        from agegender.bundled import version_text

        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    verbosity = verbosity_parser()
    parser = argparse.ArgumentParser(prog="agegender", description=DESCRIPTION,
                                     parents=[verbosity])
    parser.add_argument("--version", action=VersionAction,
                        help="print the version and the bundled model's identity, then exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parsers(commands, [verbosity])
    _add_predict_parser(commands, [verbosity])
    export = commands.add_parser(
        "export", parents=[verbosity],
        help="checkpoint → ONNX model that runs without torch")
    export.add_argument("checkpoint", type=Path, help="checkpoint (.pt)")
    export.add_argument("--output", type=Path,
                        help="the .onnx file (default: the checkpoint's name with .onnx)")
    convert = commands.add_parser(
        "convert-checkpoint", parents=[verbosity],
        help="re-save a checkpoint of an older version as tensors and plain data (opens it "
             "trusting its pickled objects: only for files from a source you trust)")
    convert.add_argument("checkpoint", type=Path, help="the old checkpoint (.pt)")
    convert.add_argument("--output", type=Path, required=True, help="the converted .pt")
    check = commands.add_parser(
        "check-data", parents=[verbosity],
        help="check a dataset before training: the images and labels that would be used, and "
             "every entry that would be skipped, with why",
        description="Open a dataset as train and evaluate do, decode every image, and report "
                    "the labels and splits found and each skipped row or unreadable image. "
                    "Exit status 0: all usable; 1: some entries would be skipped; 2: nothing "
                    "usable.")
    check.add_argument("--data", type=Path, required=True,
                       help="any dataset train takes (a folder with labels.csv, ...)")
    check.add_argument("--split-file", type=Path,
                       help="CSV with file,split columns (default: split.csv beside the data)")
    check.add_argument("--no-decode", action="store_true",
                       help="read the labels only; do not decode the images")
    explain.add_parser(commands, [verbosity])
    compare.add_parser(commands, [verbosity])
    serve.add_parser(commands, [verbosity])
    return parser


def _add_train_parsers(commands: argparse._SubParsersAction,
                       parents: list[argparse.ArgumentParser]) -> None:
    """train, calibrate and evaluate."""
    from agegender.training.presets import PRESETS

    train = commands.add_parser(
        "train", parents=parents, help="train a model; writes checkpoints, logs, metrics",
        description="Train a model. It starts from a preset (or a --config file); every field "
                    "of the configuration is a flag below, and a flag given overrides the "
                    "preset's value (the defaults shown are the seed-cnn preset's).")
    train.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                       help="named configuration to start from: "
                            f"{', '.join(sorted(PRESETS))} (default: seed-cnn)")
    train.add_argument("--config", type=Path, metavar="YAML",
                       help="start from this configuration (the config.yaml every run writes) "
                            "instead of a preset")
    run = train.add_argument_group("run")
    run.add_argument("--out", type=Path, required=True, help="run folder")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out with its saved configuration (only "
                          "--epochs, --data and --split-file may be given with it)")
    run.add_argument("--device", default="auto",
                     help="cpu, cuda or cuda:N; auto takes a GPU when PyTorch sees one "
                          "(default: %(default)s)")
    run.add_argument("--cache-dir", type=Path,
                     help="decoded-image cache (default: $AGEGENDER_CACHE or ~/.cache/agegender)")
    add_config_flags(train.add_argument_group("configuration"), PRESETS["seed-cnn"])

    calibrate = commands.add_parser(
        "calibrate", parents=parents,
        help="fit flip averaging, gender and age-interval calibration on the validation split "
             "and store them in the checkpoint (train does this)")
    _add_data_arguments(calibrate)
    calibrate.add_argument("--model", type=Path, required=True, help="checkpoint (.pt)")
    calibrate.add_argument("--no-flip", action="store_true",
                           help="never average over a horizontal flip (halves inference cost)")

    evaluate = commands.add_parser(
        "evaluate", parents=parents, help="metrics and plots of a model on a labelled split",
        description="Metrics, group figures and plots of a model on labelled data, in a report "
                    "folder (report.html, metrics.json). It says what it measured: the data, "
                    "the split and the number of images. Dataset crops in which no face is "
                    "detected are taken whole, as in training.")
    _add_data_arguments(evaluate)
    evaluate.add_argument("--model", type=Path, required=True, help="checkpoint (.pt) or .onnx")
    evaluate.add_argument("--report", type=Path, required=True, help="report folder")
    evaluate.add_argument("--split", choices=["train", "val", "test", "all"],
                          help="which images to score: a split, or all of them (default: test "
                               "where the data has a split of its own or a split file; all "
                               "for data without one, such as a labelled folder without a "
                               "split column); --limit draws from it")
    evaluate.add_argument("--run-dir", type=Path,
                          help="the model's training run folder, for the report's training "
                               "curves (default: the checkpoint's folder)")


def _add_predict_parser(commands: argparse._SubParsersAction,
                        parents: list[argparse.ArgumentParser]) -> None:
    predict = commands.add_parser(
        "predict", parents=parents, help="age and gender of the faces in images and videos",
        description="One row per face found (largest first), one row saying 'no face "
                    "detected' for an image without one, and one row with the reason for an "
                    "input that could not be read; the reasons also go to standard error. "
                    "Faces in videos and live sources are tracked: each row also carries the "
                    "face's track and the track's answer so far. "
                    "Exit status: 0; 1 when some input failed; 2 for a bad option; 3 when a "
                    "live source broke off; 130 when interrupted; 141 when the reader of "
                    "standard output went away (| head).")
    predict.add_argument("paths", nargs="*", metavar="PATH",
                         help="image or video files, folders (searched recursively), globs, "
                              "- for one image on standard input, webcams (/dev/video0) or "
                              "network streams (rtsp://, http(s)://, udp://)")
    predict.add_argument("--model", type=Path,
                         help="checkpoint (.pt) or exported model (.onnx, needs no torch) "
                              "(default: the bundled model)")
    predict.add_argument("--precision", choices=PRECISIONS, default=None,
                         help=PRECISION_HELP)
    predict.add_argument("--detector", choices=SEARCH_NETWORKS, default=DEFAULT_SEARCH,
                         help=SEARCH_HELP)
    predict.add_argument("--output", type=Path,
                         help="a .csv, .json or .jsonl (.ndjson) file (default: CSV to "
                              "standard output); JSON nests each face's box and landmarks, "
                              "CSV is flat")
    predict.add_argument("--batch-size", type=flag_type("batch_size"), default=32,
                         metavar="N", help="faces per model call (default: %(default)s)")
    predict.add_argument("--workers", type=flag_type("workers"), default=available_cores(),
                         metavar="N",
                         help="threads that decode, detect and align ahead of the model, each "
                              "detecting on one core (default: the cores, %(default)s here)")
    predict.add_argument("--annotate", type=Path, metavar="DIR|VIDEO",
                         help="also save each image with boxes and labels drawn, as JPEG under "
                              "DIR at its path below the folder (or file, or glob) given; for "
                              "one video or live source, a video file (out.mp4: H.264, boxes "
                              "coloured by track, labelled with the track's answer) "
                              "(default: none)")
    predict.add_argument("--every", type=flag_type("every"), default=1, metavar="N",
                         help="videos: predict every N-th frame (default: %(default)s, every "
                              "frame)")
    predict.add_argument("--resume", action="store_true",
                         help="keep the rows already in --output and skip the files they cover")
    faces = predict.add_argument_group(
        "faces", "Which faces are reported. By default every face the detector finds; an "
                 "image without one gets a 'no face detected' row, whatever its size.")
    faces.add_argument("--max-faces", type=flag_type("max_faces"), metavar="N",
                       help="keep the N largest faces of each image (default: all)")
    faces.add_argument("--min-face", type=flag_type("min_face", float), default=0,
                       metavar="PX",
                       help="keep faces at least PX pixels wide and high within the image "
                            "(default: %(default)s; the detector finds none under 20)")
    faces.add_argument("--min-score", type=flag_type("min_score", float), metavar="S",
                       help="keep faces the detector scored at least S, 0–1 (default: its own "
                            "threshold, 0.6)")
    crops = faces.add_mutually_exclusive_group()
    crops.add_argument("--whole-image", action="store_true",
                       help="each image is a crop of one face: its centred face is detected "
                            "and aligned, or, where none is detected, the whole image is "
                            "taken as the face (as training takes dataset crops)")
    crops.add_argument("--aligned", action="store_true",
                       help="each image is a face crop already aligned like the training data "
                            "(UTKFace's aligned crops): no detection, the whole image is the "
                            "face")
    tracked.add_arguments(predict)
    people.add_arguments(predict)
    ray_engine.add_arguments(predict)


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

    from agegender.faces.detector import DetectorConfig
    from agegender.inference import RESULT_COLUMNS, FaceResult, Predictor
    from agegender.inference.annotate import Annotator
    from agegender.inference.output import ResultWriter, files_done
    from agegender.inference.predictor import FaceFilter

    faces_filter = _face_filter(args)
    _check_output_places(args)
    if args.engine == "ray":
        return ray_engine.run(args, faces_filter)
    live, inputs, missing = _predict_inputs(args)

    def predictor() -> Predictor:
        return Predictor(args.model, batch_size=args.batch_size, aligned=args.aligned,
                         whole_image=args.whole_image, faces=faces_filter or FaceFilter(),
                         precision=args.precision,
                         detector_config=DetectorConfig(search=args.detector))

    if people.wanted(args) or tracked.wants_tracking(args, inputs, live):
        return _predict_people_or_tracks(args, predictor, inputs, missing, live)
    writer = ResultWriter(RESULT_COLUMNS, args.output, append=args.resume)  # checks --output
    done = files_done(args.output) if args.resume else set()
    if done:
        inputs = [item for item in inputs if str(item.path) not in done]
        missing = [(argument, reason) for argument, reason in missing if argument not in done]
        log.info("resuming: %s already in %s, %d to go", plural(len(done), "file"),
                 args.output, len(inputs))
    annotator = Annotator(args.annotate, inputs) if args.annotate is not None else None
    model = predictor()
    tally = Tally(FailureLog(str(args.output) if args.output else None))
    with writer:
        for argument, reason in missing:
            writer.write(FaceResult(file=argument, error=reason).to_dict())
            tally.failures.add(argument, reason)
        writer.flush()
        paths = [item.path for item in inputs]
        progress = tqdm(paths, unit="file", disable=len(paths) < 20 or _quiet())
        results = model.predict_paths(progress, workers=args.workers,
                                      keep_images=annotator is not None, every=args.every)
        for result in results:
            for row in result.rows:
                writer.write(row.to_dict())
                tally.count(row.file, row.frame, row.error)
            writer.flush()
            if annotator is not None:
                annotator.save(result)
    tally.failures.close()
    log.info("%s", tally.summary(inputs, missing, args.output))
    return EXIT_SOME_FAILED if tally.failures.count else EXIT_OK


def _predict_inputs(args: argparse.Namespace) -> tuple[list[str], list, list]:
    """The live sources, the files (stills and videos) and the arguments that named nothing."""
    from agegender.inference.inputs import expand_inputs
    from agegender.inference.video import is_live_source

    if not args.paths and args.people is None:
        raise ValueError("predict: give the images, videos or live sources (or --people)")
    if args.resume and args.output is None:
        raise ValueError("--resume needs --output, the file to continue")
    live = [argument for argument in args.paths if is_live_source(argument)]
    inputs, missing = expand_inputs([a for a in args.paths if not is_live_source(a)])
    return live, inputs, missing


def _face_filter(args: argparse.Namespace):
    """The --max-faces/--min-face/--min-score filter, None when none is given; refused with
    --aligned or --whole-image, which take one face per image."""
    from agegender.inference.predictor import FaceFilter

    given = [flag for flag, value in (("--max-faces", args.max_faces),
                                      ("--min-face", args.min_face or None),
                                      ("--min-score", args.min_score)) if value is not None]
    if not given:
        return None
    if args.aligned or args.whole_image:
        raise ValueError(f"{', '.join(given)} choose among the faces detected in a photo; "
                         f"{'--aligned' if args.aligned else '--whole-image'} takes each image "
                         "as one face")
    return FaceFilter(max_faces=args.max_faces, min_face=args.min_face,
                      min_score=args.min_score)


def _check_output_places(args: argparse.Namespace) -> None:
    """Refuse --output and --annotate places that cannot be written before any work."""
    if args.output is not None:
        if args.output.is_dir():
            raise ValueError(f"--output {args.output}: a folder; give a .csv, .json or .jsonl "
                             "file")
        _check_folder_can_hold(args.output.parent, "--output", args.output)
    if args.annotate is not None:
        from agegender.inference.video import is_video

        if is_video(args.annotate) and not args.annotate.is_dir():
            _check_folder_can_hold(args.annotate.parent, "--annotate", args.annotate)
            return
        if args.annotate.exists() and not args.annotate.is_dir():
            raise ValueError(f"--annotate {args.annotate}: an existing file; give a folder for "
                             "the drawings (or a video file for one video)")
        _check_folder_can_hold(args.annotate, "--annotate", args.annotate)


def _check_folder_can_hold(folder: Path, flag: str, given: Path) -> None:
    """`folder` is, or can be made, a writable folder (its nearest existing ancestor is a
    writable folder)."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {given}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {given}: no permission to write in {existing}")


def _quiet() -> bool:
    return log.getEffectiveLevel() > logging.INFO


def _predict_people_or_tracks(args: argparse.Namespace, predictor: Callable, inputs: list,
                              missing: list, live: list[str]) -> int:
    """`--person`/`--people`, or inputs with videos or live sources (tracked); `predictor`
    makes the predictor once the options are checked."""
    if people.wanted(args):
        return people.run(args, predictor(), inputs, missing, live)
    if args.resume:
        raise ValueError("--resume continues per-file rows; tracked videos and live "
                         "sources restart (or pass --no-track)")
    from agegender.tracking.tracker import require_tracker

    require_tracker()
    return tracked.run(args, predictor(), inputs, missing, live)


def _export(args: argparse.Namespace) -> int:
    from agegender.export import export_onnx

    output = export_onnx(args.checkpoint, args.output or args.checkpoint.with_suffix(".onnx"))
    print(output)
    return EXIT_OK


def _convert_checkpoint(args: argparse.Namespace) -> int:
    from agegender.models.legacy_checkpoint import convert_checkpoint

    print(convert_checkpoint(args.checkpoint, args.output))
    return EXIT_OK


def _check_data(args: argparse.Namespace) -> int:
    from agegender.data.check import check_data

    check = check_data(args.data, split_file=args.split_file, decode=not args.no_decode)
    for line in check.lines():
        print(line)
    return EXIT_SOME_FAILED if check.problems else EXIT_OK


def _headline(metrics: dict, where: str) -> str:
    def fmt(key: str, digits: int) -> str:
        value = metrics.get(key)
        return "-" if value is None else f"{value:.{digits}f}"

    source = metrics.get("provenance", {})
    data = f"{source['data']}, " if source.get("data") else ""
    return (f"{data}{metrics.get('split')} split, {plural(metrics.get('n_images') or 0, 'image')}"
            f": age MAE {fmt('mae', 2)}  CS@5 {fmt('cs5', 3)}  gender accuracy "
            f"{fmt('gender_acc', 4)}  F1 {fmt('gender_f1', 4)}  AUC {fmt('gender_auc', 4)}  → "
            f"{where}")


COMMANDS = {"train": _train, "calibrate": _calibrate, "evaluate": _evaluate, "predict": _predict,
            "export": _export, "convert-checkpoint": _convert_checkpoint,
            "check-data": _check_data, "explain": explain.run,
            "compare": compare.run, "serve": serve.run}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = log_level(args)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    log.setLevel(level)  # also where logging was configured before (an embedding program)
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        log.error("%s", error)
        return EXIT_ERROR
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        log.error("interrupted; completed epochs are kept in last.pt (resume with --resume)"
                  if args.command == "train" else "interrupted")
        return 130


def _silence_stdout() -> None:
    """The reader of standard output went away (`| head`): end quietly, and keep Python's
    final flush of the closed pipe from printing an error of its own."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
