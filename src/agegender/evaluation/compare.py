"""Several evaluation reports side by side: every overall and group figure, the best marked.

Reads each report folder's metrics.json (written by `agegender evaluate --report`), so runs,
models and datasets are compared on exactly the figures their own reports show.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

from agegender.atomic import write_bytes_atomic
from agegender.evaluation.groups import GROUP_FIGURES, goodness
from agegender.evaluation.html_report import FIGURE_TITLES, STYLE, fmt

OVERALL_FIGURES = (
    ("age MAE", ("age", "mae"), "lower"), ("age RMSE", ("age", "rmse"), "lower"),
    ("CS@5", ("age", "cs5"), "higher"),
    ("interval coverage", ("age", "interval_coverage"), "target"),
    ("gender accuracy", ("gender", "accuracy"), "higher"),
    ("gender macro F1", ("gender", "macro_f1"), "higher"),
    ("gender ROC-AUC", ("gender", "roc_auc"), "higher"), ("gender ECE", ("gender", "ece"), "lower"),
    ("recall (women)", ("gender", "per_class", "female", "recall"), "higher"),
    ("recall (men)", ("gender", "per_class", "male", "recall"), "higher"),
    ("precision (women)", ("gender", "per_class", "female", "precision"), "higher"),
    ("precision (men)", ("gender", "per_class", "male", "precision"), "higher"),
)
"""Row title, path into metrics.json, and which value is better (see `groups.goodness`)."""


@dataclass
class ComparedRow:
    figure: str
    direction: str
    values: list[float | None]

    @property
    def best(self) -> set[int]:
        """Indices of the reports with the best value (all tied ones); none if fewer than two
        reports have a value."""
        scored = [(goodness(self.direction, v), i) for i, v in enumerate(self.values)
                  if v is not None]
        if len(scored) < 2:
            return set()
        top = max(score for score, _ in scored)
        return {i for score, i in scored if score == top}


def _lookup(metrics: dict, path: tuple[str, ...]) -> float | None:
    value: object = metrics
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, int | float) else None


def load_report(folder: Path) -> dict:
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no metrics.json (write it with agegender evaluate "
                                "--report)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def compared_rows(reports: list[dict]) -> list[ComparedRow]:
    """Every overall figure, then every group figure any report has, in a stable order."""
    rows = [ComparedRow(title, direction, [_lookup(m, path) for m in reports])
            for title, path, direction in OVERALL_FIGURES]
    groupings: dict[str, list[str]] = {}
    for metrics in reports:
        for grouping, groups in metrics.get("fairness", {}).get("groups", {}).items():
            names = groupings.setdefault(grouping, [])
            names += [name for name in groups if name not in names]
    for grouping, names in groupings.items():
        for name in names:
            for figure, direction in GROUP_FIGURES.items():
                path = ("fairness", "groups", grouping, name, figure)
                rows.append(ComparedRow(f"{grouping} {name}: {FIGURE_TITLES[figure]}", direction,
                                        [_lookup(m, path) for m in reports]))
    return [row for row in rows if any(value is not None for value in row.values)]


def report_names(folders: list[Path], reports: list[dict]) -> list[str]:
    """Column names: each folder's name, with as many parent folders as it takes to tell the
    folders apart (`runs/a/report` and `runs/b/report` are `a/report` and `b/report`; `.` is
    the folder's own name), and the model it evaluated when the report says."""
    names = []
    for folder, metrics in zip(distinct_names(folders), reports, strict=True):
        model = metrics.get("provenance", {}).get("model")
        names.append(f"{folder} ({model})" if model else folder)
    return names


def distinct_names(folders: list[Path]) -> list[str]:
    parts = [Path(folder).resolve().parts for folder in folders]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(folder) for folder in folders]


PROVENANCE = (("data", ("provenance", "data")), ("split", ("split",)),
              ("split from", ("provenance", "split_origin")), ("images", ("n_images",)),
              ("model", ("provenance", "model")), ("date", ("provenance", "date")))
"""What each report measured, shown above its figures."""

MUST_MATCH = {"data": "data", "split": "splits", "images": "numbers of images"}
"""Provenance rows that must be equal for figures to be compared like for like (and how a
difference in each is said)."""


def provenance_rows(reports: list[dict]) -> list[tuple[str, list[str]]]:
    """(title, each report's value as text, "" where it does not say) of `PROVENANCE`."""
    rows = []
    for title, path in PROVENANCE:
        values = []
        for metrics in reports:
            value: object = metrics
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            values.append("" if value is None else str(value))
        rows.append((title, values))
    return rows


def mismatches(provenance: list[tuple[str, list[str]]], names: list[str]) -> list[str]:
    """A sentence for each of `MUST_MATCH` on which the reports differ."""
    found = []
    for title, values in provenance:
        if title in MUST_MATCH and len(set(values)) > 1:
            said = "; ".join(f"{name}: {value or 'not recorded'}"
                             for name, value in zip(names, values, strict=True))
            found.append(f"the reports measured different {MUST_MATCH[title]} ({said}): "
                         "their figures are not like for like")
    return found


def write_comparison(folders: list[Path], output: Path) -> tuple[Path, Path, list[str]]:
    """compare.html and compare.csv in `output`; returns their paths, and the warnings (the
    reports differ in data, split or count), which the page also shows."""
    if len(folders) < 2:
        raise ValueError("compare needs at least two report folders")
    reports = [load_report(folder) for folder in folders]
    names = report_names(folders, reports)
    rows = compared_rows(reports)
    provenance = provenance_rows(reports)
    warnings = mismatches(provenance, names)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["figure", "better", *names, "best"])
    for row in rows:
        writer.writerow([row.figure, row.direction, *("" if v is None else f"{v:.6g}"
                                                      for v in row.values),
                         "; ".join(names[i] for i in sorted(row.best))])
    head = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    measured = "".join(
        f"<tr><td>{title}</td><td></td>"
        + "".join(f"<td>{html.escape(value) or '–'}</td>" for value in values) + "</tr>"
        for title, values in provenance)
    warned = "".join(f'<p class="warning" style="color:#a40000">⚠ {html.escape(warning)}</p>'
                     for warning in warnings)
    body = "".join(
        f"<tr><td>{html.escape(row.figure)}</td><td>{row.direction}</td>"
        + "".join(f'<td class="{"best" if i in row.best else ""}">{fmt(v)}'
                  f'{" ★" if i in row.best else ""}</td>' for i, v in enumerate(row.values))
        + "</tr>" for row in rows)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>agegender '
            f"comparison</title><style>{STYLE}</style></head><body><h1>Comparison</h1>"
            f"<p>★ marks the better value (lower, higher, nearer zero, or nearer the "
            f"interval's 80 % target, as the second column says).</p>{warned}<h2>What each "
            f"report measured</h2><table><tr><th></th><th></th>{head}</tr>{measured}</table>"
            f"<h2>Figures</h2><table><tr><th>figure</th><th>better</th>{head}</tr>{body}"
            f"</table></body></html>")
    output.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(output / "compare.csv", table.getvalue().encode("utf-8"))
    write_bytes_atomic(output / "compare.html", page.encode("utf-8"))
    return output / "compare.html", output / "compare.csv", warnings
