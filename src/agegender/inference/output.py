"""Result writers for CSV, JSON and JSON-lines; rows reach the disk as images are finished."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from types import TracebackType
from typing import TextIO

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}

ROUNDING: dict[str, int | None] = {
    "x": None, "y": None, "w": None, "h": None, "det_score": 4, "landmarks": 1,
    "age": 1, "age_low": 1, "age_high": 1, "gender_prob": 4,
    "track_age": 1, "track_age_low": 1, "track_age_high": 1, "track_gender_prob": 4}
"""Digits each column is written with, by Python's `round` (None: an integer; `landmarks`:
each coordinate). Rows (`FaceResult`) carry full precision; only the writers, the server and
the labels `--annotate` draws round."""

BOX = ("x", "y", "w", "h")
"""The flat columns (CSV) that JSON nests as `box`: [x, y, w, h]."""

FLAT_ONLY_SKIPS = ("landmarks",)
"""Fields JSON has and CSV, which stays flat, leaves out."""

IMAGE_FIELDS = ("file", "frame", "time", "error")
"""Fields of a row that say where it comes from or why it failed: the rest is the face, as
the server's `faces` entries give it."""


def rounded(row: dict) -> dict:
    """`row` with the columns named in `ROUNDING` rounded as they are written."""
    return {key: value if value is None or key not in ROUNDING else _round(key, value)
            for key, value in row.items()}


def _round(key: str, value: object) -> object:
    digits = ROUNDING[key]
    if key == "landmarks":
        return [[round(float(x), digits), round(float(y), digits)] for x, y in value]
    return round(value, digits)


def nested(row: dict, columns: list[str] | None = None) -> dict:
    """A row as JSON gives it (the CLI's JSON and JSON lines, the server): `columns` (default:
    the row's keys) in order, with x, y, w, h as one `box` [x, y, w, h] (null without a face),
    rounded. The one face shape; docs/output-schema.md describes it."""
    shown = rounded(row)
    out: dict = {}
    for key in columns or list(row):
        if key in BOX:
            if "box" not in out:
                box = [shown.get(name) for name in BOX]
                out["box"] = None if any(value is None for value in box) else box
        else:
            out[key] = shown.get(key)
    return out


def face_json(row: dict) -> dict:
    """A face as the server gives it in `faces`: the row's JSON without its image fields."""
    return {key: value for key, value in nested(row).items() if key not in IMAGE_FIELDS}


class ResultWriter:
    """Context manager writing dict rows to `path` in the format its suffix names (no path: CSV
    on standard output)."""

    def __init__(self, columns: list[str], path: Path | None = None, append: bool = False):
        """`append`: continue an existing CSV or JSON-lines file (a cut-off last line is
        dropped) instead of starting a new one."""
        suffix = path.suffix.lower() if path else ".csv"
        try:
            self.format = FORMATS[suffix]
        except KeyError:
            raise ValueError(f"{path}: output must end in one of {sorted(FORMATS)}") from None
        if append and (path is None or self.format == "json"):
            raise ValueError(f"{path or 'standard output'}: only a .csv or .jsonl output file "
                             "can be appended to (resumed)")
        self.append = append and path is not None and path.is_file() and path.stat().st_size > 0
        self.path = path
        self.columns = columns
        self.flat_columns = [name for name in columns if name not in FLAT_ONLY_SKIPS]
        self.count = 0
        self._stream: TextIO | None = None

    def __enter__(self) -> ResultWriter:
        if self.path is None:
            self._stream = sys.stdout
        elif self.append:
            _drop_cut_off_line(self.path)
            self._stream = self.path.open("a", newline="", encoding="utf-8")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = self.path.open("w", newline="", encoding="utf-8")
        if self.format == "csv":
            self._csv = csv.DictWriter(self._stream, fieldnames=self.flat_columns)
            if not self.append:
                self._csv.writeheader()
        elif self.format == "json":
            self._stream.write("[")
        return self

    def write(self, row: dict) -> None:
        """Write one row (flat, as `FaceResult.to_dict` gives it), rounded as `ROUNDING` says:
        flat in CSV, with the box nested in JSON (`nested`)."""
        assert self._stream is not None, "use ResultWriter as a context manager"
        if self.format == "csv":
            row = rounded({k: row.get(k) for k in self.flat_columns})
            self._csv.writerow({k: "" if row[k] is None else row[k] for k in self.flat_columns})
        else:
            text = json.dumps(nested(row, self.columns))
            if self.format == "json":
                text = ("\n  " if self.count == 0 else ",\n  ") + text
            else:
                text += "\n"
            self._stream.write(text)
        self.count += 1

    def flush(self) -> None:
        """Push the rows written so far to the file (the CLI calls this after every image)."""
        assert self._stream is not None
        self._stream.flush()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        assert self._stream is not None
        if self.format == "json":
            self._stream.write("\n]\n" if self.count else "]\n")
        if self.path is not None:
            self._stream.close()


def _drop_cut_off_line(path: Path) -> None:
    """Truncate `path` after its last newline: rows end in one, so only a cut-off row goes."""
    data = path.read_bytes()
    path.write_bytes(data[:data.rfind(b"\n") + 1])


def files_done(path: Path) -> set[str]:
    """The `file` of every complete row in an output file an earlier run wrote (`--resume`)."""
    if FORMATS.get(path.suffix.lower()) not in ("csv", "jsonl"):
        raise ValueError(f"{path}: only a .csv or .jsonl output file can be resumed")
    if not path.is_file():
        return set()
    text = path.read_text(encoding="utf-8")
    complete = text[:text.rfind("\n") + 1]
    if FORMATS.get(path.suffix.lower()) == "csv":
        return {row["file"] for row in csv.DictReader(io.StringIO(complete, newline=""))}
    return {json.loads(line)["file"] for line in complete.splitlines() if line.strip()}
