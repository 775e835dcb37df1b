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
    "x": None, "y": None, "w": None, "h": None, "det_score": 4,
    "age": 1, "age_low": 1, "age_high": 1, "gender_prob": 4,
    "track_age": 1, "track_age_low": 1, "track_age_high": 1, "track_gender_prob": 4}
"""Digits each column is written with, by Python's `round` (None: an integer). Rows
(`FaceResult`) carry full precision; only the writers, and the labels `--annotate` draws,
round."""


def rounded(row: dict) -> dict:
    """`row` with the columns named in `ROUNDING` rounded as they are written."""
    return {key: value if value is None or key not in ROUNDING else round(value, ROUNDING[key])
            for key, value in row.items()}


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
            self._csv = csv.DictWriter(self._stream, fieldnames=self.columns)
            if not self.append:
                self._csv.writeheader()
        elif self.format == "json":
            self._stream.write("[")
        return self

    def write(self, row: dict) -> None:
        """Write one row, rounded as `ROUNDING` says."""
        assert self._stream is not None, "use ResultWriter as a context manager"
        row = rounded(row)
        if self.format == "csv":
            self._csv.writerow({k: "" if row.get(k) is None else row[k] for k in self.columns})
        else:
            text = json.dumps({k: row.get(k) for k in self.columns})
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
