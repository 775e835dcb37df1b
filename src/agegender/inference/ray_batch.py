"""Batch prediction on Ray Data: millions of photos on a cluster (or all cores of one machine)
without a home-made scheduler.

The driver lists the inputs; an actor pool of `PredictActor`s, each building its `Predictor`
(and so its onnxruntime sessions) once, runs detection, alignment and the model over batches
of files through `map_batches`; the rows come back to the driver in input order and are
written as the plain `agegender predict` writes them. Ray and pyarrow are imported only here
and only when used (`pip install "agegender[ray]"`).
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agegender.imageio import IMAGE_SUFFIXES, ImageReadError, decode_image
from agegender.inference.inputs import expand_inputs
from agegender.inference.output import rounded
from agegender.inference.predictor import RESULT_COLUMNS, FaceFilter, FaceResult, Predictor

if TYPE_CHECKING:
    import pyarrow

log = logging.getLogger("agegender")

LISTING_SUFFIXES = {".parquet", ".csv"}
"""An input with one of these suffixes lists the files to predict (column `path`)."""

COLUMN_TYPES = {"frame": "int64", "face": "int64", "file": "string", "gender": "string",
                "error": "string", "landmarks": "points"}
"""Arrow types of the result columns ("points": a list of [x, y]); the others are float64."""


@dataclass(frozen=True)
class RayOptions:
    """How the job runs: the Ray cluster (None: start one on this machine), actors in the
    pool (None: one per CPU of the cluster) and onnxruntime threads per actor."""

    address: str | None = None
    actors: int | None = None
    threads_per_actor: int = 1
    files_per_batch: int = 32
    quiet: bool = True
    """Keep Ray's own start-up notices, progress bars and worker logs off the terminal."""


def require_ray() -> None:
    """Refuse, with what to install, when Ray Data is missing (it is an extra)."""
    try:
        import pyarrow  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ValueError(f"--engine ray needs Ray Data ({error}): "
                         "pip install \"agegender[ray]\"") from None


def is_uri(name: str) -> bool:
    return "://" in name


def list_inputs(arguments: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The files to predict, and (argument, reason) for arguments that match nothing.

    Local files, folders and globs are expanded as the plain CLI does (same files, same names,
    same order); a `.parquet` or `.csv` file lists files in its `path` column; a URI that
    pyarrow's filesystems understand (`s3://bucket/photos/`, `gs://…`, `file:///…`) is a file or
    a folder searched recursively for images.
    """
    files: list[str] = []
    missing: list[tuple[str, str]] = []
    for argument in arguments:
        if is_uri(argument):
            found = _list_uri(argument)
            files.extend(found)
            if not found:
                missing.append((argument, "no images at this URI"))
        elif Path(argument).suffix.lower() in LISTING_SUFFIXES and Path(argument).is_file():
            files.extend(_read_listing(Path(argument)))
        else:
            found, not_found = expand_inputs([argument])
            files.extend(str(item.path) for item in found)
            missing.extend(not_found)
    return list(dict.fromkeys(files)), missing


def _read_listing(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
        if rows and "path" not in rows[0]:
            raise ValueError(f"{path}: a listing needs a `path` column")
        return [row["path"] for row in rows]
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "path" not in table.column_names:
        raise ValueError(f"{path}: a listing needs a `path` column")
    return [str(name) for name in table.column("path").to_pylist()]


def _list_uri(uri: str) -> list[str]:
    """The image files at a URI: itself when it is a file, else the images below it."""
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    scheme = uri[:uri.index("://") + 3]
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return [uri]
    if info.type != fs.FileType.Directory:
        return []
    found = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
    return sorted(scheme + item.path for item in found if item.type == fs.FileType.File
                  and Path(item.path).suffix.lower() in IMAGE_SUFFIXES)


def _read_uri(uri: str) -> bytes:
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    with filesystem.open_input_file(path) as stream:
        return stream.read()


def result_schema() -> pyarrow.Schema:
    import pyarrow as pa

    kinds = {"points": pa.list_(pa.list_(pa.float64()))}
    return pa.schema([(name, kinds.get(COLUMN_TYPES.get(name, "float64"),
                                       COLUMN_TYPES.get(name, "float64")))
                      for name in RESULT_COLUMNS])


class PredictActor:
    """One actor of the pool: a `Predictor` built once, applied to batches of file names."""

    def __init__(self, model: str | None, batch_size: int, aligned: bool, threads: int,
                 whole_image: bool = False, faces: FaceFilter | None = None):
        from agegender.inference.backends import load_backend
        from agegender.inference.predictor import bundled_model_path

        backend = load_backend(model or bundled_model_path(), spinning=False, threads=threads)
        self.predictor = Predictor(backend, batch_size=batch_size, detector_threads=threads,
                                   aligned=aligned, whole_image=whole_image, faces=faces)

    def __call__(self, batch: dict[str, np.ndarray]) -> pyarrow.Table:
        import pyarrow as pa

        files = [str(name) for name in batch["file"]]
        loaded = [_load(str(location), file)
                  for location, file in zip(batch["location"], files, strict=True)]
        readable = [index for index, image in enumerate(loaded) if not isinstance(image, str)]
        found = dict(zip(readable, self.predictor.predict_batch(
            [loaded[index] for index in readable], [files[index] for index in readable]),
            strict=True))
        # rows are named as the file was given, wherever the actor read it
        rows = [{**row.to_dict(), "file": file} for index, file in enumerate(files)
                for row in found.get(index) or [FaceResult(file=file, error=loaded[index])]]
        return pa.Table.from_pylist(rows, schema=result_schema())


def _location(file: str) -> str:
    """Where an actor reads `file`: a URI as it is, a local path made absolute, since an
    actor's working folder is not the command's."""
    return file if is_uri(file) else str(Path(file).absolute())


def _load(location: str, file: str) -> Path | np.ndarray | str:
    """A local file as its path (the predictor reads it), a URI's image decoded, or the
    reason a URI could not be read."""
    if not is_uri(location):
        return Path(location)
    try:
        return decode_image(_read_uri(location), source=file)
    except ImageReadError as error:
        return error.reason
    except OSError as error:
        return f"cannot read: {error}"


def predict_on_ray(files: list[str], model: str | None, batch_size: int, options: RayOptions,
                   aligned: bool = False, whole_image: bool = False,
                   faces: FaceFilter | None = None) -> Iterator[dict]:
    """Rows (`FaceResult` dicts, full precision) of every file, in input order, predicted by
    an actor pool on the Ray cluster at `options.address` (None: started on this machine),
    each actor's `Predictor` built with `aligned`, `whole_image` and `faces`."""
    if not files:
        return
    ray = _start_ray(options)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    if options.quiet:
        context.enable_progress_bars = False
    actors = options.actors or max(1, int(ray.cluster_resources().get("CPU", 1))
                                   // options.threads_per_actor)
    log.info("predicting %d files on Ray with %d actors", len(files), actors)
    items = [{"file": file, "location": _location(file)} for file in files]
    with warnings.catch_warnings():
        # max_restarts as a keyword is the way Ray Data documents, deprecated for Ray 2.64
        warnings.filterwarnings("ignore", "`ray_remote_args`", DeprecationWarning)
        dataset = ray.data.from_items(items).map_batches(
            PredictActor, batch_size=options.files_per_batch, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            fn_constructor_kwargs={"model": model and str(Path(model).absolute()),
                                   "batch_size": batch_size, "aligned": aligned,
                                   "threads": options.threads_per_actor,
                                   "whole_image": whole_image, "faces": faces},
            num_cpus=options.threads_per_actor, **_restarts(options))
    for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        yield from table.to_pylist()


def _restarts(options: RayOptions) -> dict:
    """On this machine, quiet: an actor that dies is not restarted (its error ends the run),
    which also spares the core worker's "E" line warning that restarted actors may lose their
    constructor arguments. On a cluster, Ray's own restarts (and that line) stay."""
    return {"max_restarts": 0} if options.quiet and options.address is None else {}


def _start_ray(options: RayOptions):
    """Ray, started (or joined) once; quiet unless asked: its Python loggers (start-up
    notices, Ray Data's execution messages) say only errors."""
    import ray

    if options.quiet:
        for name in ("ray", "ray.data"):  # ray.data has handlers of its own
            logging.getLogger(name).setLevel(logging.ERROR)
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False,
                 logging_level=logging.WARNING if options.quiet else logging.INFO)
    return ray


class ParquetRows:
    """Writes rows to a Parquet file as the CSV writer rounds them, in row groups, so rows
    reach the disk while the job runs; the same interface as `ResultWriter`."""

    def __init__(self, path: Path, group_rows: int = 10_000):
        self.path = path
        self.group_rows = group_rows
        self._pending: list[dict] = []

    def __enter__(self) -> ParquetRows:
        import pyarrow.parquet as pq

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self.path, result_schema())
        return self

    def write(self, row: dict) -> None:
        self._pending.append(rounded(row))
        if len(self._pending) >= self.group_rows:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._writer.write_table(pa.Table.from_pylist(self._pending, schema=result_schema()))
            self._pending = []

    def __exit__(self, *exception: object) -> None:
        self.flush()
        self._writer.close()
