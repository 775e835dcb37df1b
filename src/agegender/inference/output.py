"""Result writers for CSV, JSON and JSON-lines; rows are flushed as they are produced."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from types import TracebackType
from typing import TextIO

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class ResultWriter:
    """Context manager writing dict rows to `path` in the format its suffix names (no path: CSV
    on standard output)."""

    def __init__(self, columns: list[str], path: Path | None = None):
        suffix = path.suffix.lower() if path else ".csv"
        try:
            self.format = FORMATS[suffix]
        except KeyError:
            raise ValueError(f"{path}: output must end in one of {sorted(FORMATS)}") from None
        self.path = path
        self.columns = columns
        self.count = 0
        self._stream: TextIO | None = None

    def __enter__(self) -> ResultWriter:
        if self.path is None:
            self._stream = sys.stdout
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = self.path.open("w", newline="", encoding="utf-8")
        if self.format == "csv":
            self._csv = csv.DictWriter(self._stream, fieldnames=self.columns)
            self._csv.writeheader()
        elif self.format == "json":
            self._stream.write("[")
        return self

    def write(self, row: dict) -> None:
        assert self._stream is not None, "use ResultWriter as a context manager"
        if self.format == "csv":
            self._csv.writerow({k: "" if row.get(k) is None else row[k] for k in self.columns})
        else:
            text = json.dumps({k: row.get(k) for k in self.columns})
            if self.format == "json":
                text = ("\n  " if self.count == 0 else ",\n  ") + text
            else:
                text += "\n"
            self._stream.write(text)
        self._stream.flush()
        self.count += 1

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        assert self._stream is not None
        if self.format == "json":
            self._stream.write("\n]\n" if self.count else "]\n")
        if self.path is not None:
            self._stream.close()
