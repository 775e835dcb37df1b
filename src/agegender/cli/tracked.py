"""`agegender predict` on videos and live sources with tracking: rows with each face's track
and the track's answer so far, `--summary` (one row per track), `--annotate out.mp4`.

Thin: the tracks are `agegender.tracking`'s, the frames `agegender.inference`'s.
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from agegender.cli.messages import FailureLog, Tally
from agegender.limits import flag_type

if TYPE_CHECKING:  # the inference stack is imported when a command runs, not to build the parser
    from agegender.inference.inputs import InputFile
    from agegender.inference.output import ResultWriter
    from agegender.inference.predictor import ImageResult, Predictor, WorkItem
    from agegender.tracking.session import TrackedSource

log = logging.getLogger("agegender")

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR, EXIT_STREAM_BROKEN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""Exit statuses: every input done; some file failed; bad arguments; a live source broke
mid-way (its summary still written); stopped by Ctrl-C or SIGTERM (summary written)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("videos and live sources (tracking)")
    group.add_argument("--no-track", action="store_true",
                       help="videos: predict every frame on its own, without tracks")
    group.add_argument("--summary", type=Path, metavar="FILE",
                       help="videos and live sources: one row per track (.csv, .json or "
                            ".jsonl): first and last frame and time, frames seen, the final "
                            "age with its interval, gender with its probability, median face "
                            "size")
    group.add_argument("--max-seconds", type=flag_type("max_seconds", float), metavar="S",
                       help="live sources: stop after S seconds (default: until the stream "
                            "ends or Ctrl-C)")


def wants_tracking(args: argparse.Namespace, inputs: list[InputFile], live: list[str]) -> bool:
    """Tracking is on for any video or live source unless `--no-track`."""
    from agegender.inference.video import is_video

    if args.no_track:
        if args.summary or (args.annotate and is_video(args.annotate)):
            raise ValueError("--summary and --annotate VIDEO need tracks; drop --no-track")
        if live:
            raise ValueError(f"{live[0]}: live sources are always tracked; drop --no-track")
        return False
    return bool(live) or any(is_video(item.path) for item in inputs)


def run(args: argparse.Namespace, predictor: Predictor, inputs: list[InputFile],
        missing: list[tuple[str, str]], live: list[str]) -> int:
    """Predict every input in order, tracking the faces of each video and live source."""
    from agegender.inference.output import ResultWriter
    from agegender.inference.predictor import RESULT_COLUMNS, FaceResult
    from agegender.inference.video import is_video
    from agegender.tracking.session import SUMMARY_COLUMNS, TRACK_COLUMNS

    annotate_video = args.annotate is not None and is_video(args.annotate)
    videos = [item for item in inputs if is_video(item.path)]
    if annotate_video and len(videos) + len(live) != 1:
        raise ValueError(f"--annotate {args.annotate} draws one video: give exactly one video "
                         "or live source (or --annotate DIR for images)")
    counts = Tally(FailureLog(str(args.output) if args.output else None))
    summary, status = [], EXIT_OK
    with ExitStack() as stack:
        writer = stack.enter_context(ResultWriter(RESULT_COLUMNS + TRACK_COLUMNS, args.output))
        for argument, reason in missing:
            writer.write(FaceResult(file=argument, error=reason).to_dict())
            counts.failures.add(argument, reason)
        try:
            _predict_files(args, predictor, inputs, writer, counts, summary, stack,
                           annotate_video)
            for url in live:
                status = max(status, _run_live(args, predictor, url, writer, counts, summary,
                                               stack, annotate_video))
        except KeyboardInterrupt:
            log.error("interrupted: the rows so far and the summary of the tracks so far are "
                      "written")
            status = EXIT_INTERRUPTED
        finally:
            if args.summary is not None:
                with ResultWriter(SUMMARY_COLUMNS, args.summary) as summary_writer:
                    for row in summary:
                        summary_writer.write(row)
    counts.failures.close()
    log.info("%s", counts.summary(inputs, missing, args.output, live=len(live),
                                  tracks=len(summary)))
    if status:
        return status
    return EXIT_SOME_FAILED if counts.failures.count else EXIT_OK


def _predict_files(args: argparse.Namespace, predictor: Predictor, inputs: list[InputFile],
                   writer: ResultWriter, counts: Tally, summary: list[dict],
                   stack: ExitStack, annotate_video: bool) -> None:
    """Videos one by one, tracked; runs of stills together, as plain rows."""
    from agegender.inference.video import is_video
    from agegender.tracking.session import TrackedSource

    stills = None
    if args.annotate is not None and not annotate_video:
        from agegender.inference.annotate import Annotator

        stills = Annotator(args.annotate, inputs)
    for group in _groups(inputs):
        if not is_video(group[0].path):
            for result in predictor.predict_paths([item.path for item in group],
                                                  workers=args.workers,
                                                  keep_images=stills is not None):
                _write(writer, [row.to_dict() for row in result.rows], counts)
                if stills is not None:
                    stills.save(result)
            continue
        path = group[0].path
        source = TrackedSource(str(path), every=args.every)
        drawer = (_video_annotator(stack, args.annotate, frame_rate_or_none(path))
                  if annotate_video else _FrameJpegs(stills, str(path)) if stills else None)
        results = predictor.predict_items(_frame_items(path, args.every), args.workers,
                                          keep_images=drawer is not None, distributions=True)
        try:
            _write_tracked(results, source, writer, counts, drawer)
        finally:
            summary.extend(source.summary())


def frame_rate_or_none(path: Path):
    from agegender.inference.video import frame_rate

    try:
        return frame_rate(path)
    except Exception:  # an unreadable video fails, by name, when its frames are read
        return None


def _video_annotator(stack: ExitStack, path: Path, fps):
    from agegender.tracking.annotate import VideoAnnotator

    return stack.enter_context(VideoAnnotator(path, fps))


class _FrameJpegs:
    """`--annotate DIR` for a tracked video: each frame as a JPEG under DIR (named as
    `Annotator` names frames), its boxes in the tracks' colours with the tracks' labels."""

    def __init__(self, annotator, file: str) -> None:
        self.annotator, self.file = annotator, file

    def write(self, image, rows: list[dict]) -> None:
        from agegender.atomic import write_bytes_atomic
        from agegender.inference.annotate import draw_boxes
        from agegender.tracking.annotate import tracked_boxes

        frame = next((row["frame"] for row in rows if row.get("frame") is not None), None)
        path = self.annotator.path_for(self.file, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        draw_boxes(image, tracked_boxes(rows)).save(buffer, format="JPEG", quality=90)
        write_bytes_atomic(path, buffer.getvalue())


def _groups(inputs: list[InputFile]) -> Iterator[list[InputFile]]:
    """Each video alone, and runs of consecutive stills together (they share batches)."""
    from agegender.inference.video import is_video

    run: list[InputFile] = []
    for item in inputs:
        if is_video(item.path):
            if run:
                yield run
                run = []
            yield [item]
        else:
            run.append(item)
    if run:
        yield run


def _frame_items(path: Path, every: int) -> Iterator[WorkItem]:
    from agegender.inference.predictor import WorkItem
    from agegender.inference.video import VideoReadError, iter_frames

    try:
        for frame in iter_frames(path, every):
            yield WorkItem(path, frame.image, frame.index, frame.time)
    except VideoReadError as error:
        yield WorkItem(path, error=error)


def _write(writer: ResultWriter, rows: list[dict], counts: Tally) -> None:
    for row in rows:
        writer.write(row)
    writer.flush()
    for row in rows:
        counts.count(row["file"], row["frame"], row["error"])


def _write_tracked(results: Iterable[ImageResult], source: TrackedSource,
                   writer: ResultWriter, counts: Tally, drawer) -> None:
    for result in results:
        rows = source.add(result)
        _write(writer, rows, counts)
        if drawer is not None and result.image is not None:
            drawer.write(result.image, rows)


def _run_live(args: argparse.Namespace, predictor: Predictor, url: str, writer: ResultWriter,
              counts: Tally, summary: list[dict], stack: ExitStack, annotate: bool) -> int:
    """One live source until its end, `--max-seconds`, or Ctrl-C; frames are predicted one
    at a time as they come (the newest waiting ones; see `LiveSource`)."""
    from agegender.inference.predictor import FaceResult, WorkItem
    from agegender.inference.video import LiveSource
    from agegender.tracking.session import TrackedSource

    source = TrackedSource(url, every=args.every)
    started = time.monotonic()
    status = EXIT_OK
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with LiveSource(url, every=args.every) as live:
            drawer = _video_annotator(stack, args.annotate, live.rate) if annotate else None
            for frame in live.frames():
                item = WorkItem(Path(url), frame.image, frame.index, frame.time, name=url)
                results = predictor.predict_items([item], keep_images=drawer is not None,
                                                  distributions=True)
                _write_tracked(results, source, writer, counts, drawer)
                if args.max_seconds is not None and time.monotonic() - started >= args.max_seconds:
                    log.info("%s: stopped after --max-seconds %g", url, args.max_seconds)
                    break
            end = live.end
            if live.dropped:
                log.info("%s: %d frames dropped while busy", url, live.dropped)
        if end is not None and end.broken:
            log.error("%s: %s", url, end.reason)
            _write(writer, [FaceResult(file=url, error=end.reason).to_dict()], counts)
            status = EXIT_STREAM_BROKEN
    finally:
        signal.signal(signal.SIGTERM, previous)
        summary.extend(source.summary())
    return status


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
