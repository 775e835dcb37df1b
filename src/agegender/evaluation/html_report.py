"""report.html: one self-contained page a person reads, from a report folder's metrics and plots.

Every picture is embedded as a base64 data URI and there are no scripts or external styles, so
the file opens offline and can be mailed on its own. The figures are read from metrics.json,
the same numbers the folder's CSVs and plots come from.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from agegender.atomic import write_bytes_atomic
from agegender.evaluation.groups import GROUP_FIGURES, MIN_GROUP_SIZE_FOR_GAPS
from agegender.evaluation.report import GROUPING_TITLES, WORST_FACES_SHOWN

SECTIONS = {"provenance": "Provenance", "overall": "Overall figures", "groups": "By group",
            "calibration": "Calibration", "errors": "Errors", "training": "Training curves",
            "files": "metrics.json and every plot"}
"""Section ids (the page's anchors) and headings, in page order."""

FIGURE_TITLES = {"age_mae": "MAE", "age_bias": "bias", "gender_accuracy": "gender accuracy",
                 "female_recall": "recall (women)", "male_recall": "recall (men)",
                 "interval_coverage": "interval coverage"}

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th:first-child,td:first-child{text-align:left}img{max-width:100%}
.worst{color:#b00;font-weight:bold}.best{color:#070;font-weight:bold}nav a{margin-right:1em}
pre{background:#f6f6f6;padding:1em;overflow:auto;max-height:30em}"""


def fmt(value: object, digits: int = 3) -> str:
    """A figure as shown in the page: '–' when undefined."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _image(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[str]], row_class: dict[int, str] | None = None
           ) -> str:
    head = "".join(f"<th>{cell}</th>" for cell in header) if header else ""
    body = "".join(
        f'<tr class="{(row_class or {}).get(index, "")}">'
        + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
        for index, row in enumerate(rows))
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _provenance(metrics: dict) -> str:
    provenance = metrics.get("provenance", {})
    rows = [[html.escape(key.replace("_", " ")), fmt(value)] for key, value in provenance.items()]
    rows.append(["images", fmt(metrics.get("n_images"))])
    return _table([], rows)


def _overall(metrics: dict, folder: Path) -> str:
    parts = []
    age = metrics.get("age")
    if age:
        parts.append("<h3>Age</h3>" + _table(
            ["MAE (years)", "RMSE", "CS@5", "interval coverage", "interval width"],
            [[fmt(age["mae"]), fmt(age["rmse"]), fmt(age["cs5"]),
              fmt(age.get("interval_coverage")), fmt(age.get("interval_width"))]]))
    gender = metrics.get("gender")
    if gender:
        per_class = gender["per_class"]
        parts.append("<h3>Gender</h3>" + _table(
            ["accuracy", "macro F1", "ROC-AUC", "ECE"],
            [[fmt(gender["accuracy"], 4), fmt(gender["macro_f1"], 4), fmt(gender["roc_auc"], 4),
              fmt(gender["ece"], 4)]]))
        parts.append(_table(["class", "precision", "recall", "F1", "support"],
                            [[name, fmt(c["precision"], 4), fmt(c["recall"], 4), fmt(c["f1"], 4),
                              fmt(c["support"])] for name, c in per_class.items()]))
        labels, matrix = gender["confusion"]["labels"], gender["confusion"]["matrix"]
        parts.append("<h4>Confusion matrix (rows: true, columns: predicted)</h4>" + _table(
            ["", *labels], [[label, *map(str, row)] for label, row in
                            zip(labels, matrix, strict=True)]))
        parts.append(_image(folder / "confusion_matrix.png", "confusion matrix"))
    return "".join(parts)


def _group_table(groups: dict[str, dict], gaps: dict[str, dict]) -> str:
    header = ["group", "n", *(FIGURE_TITLES[f] for f in GROUP_FIGURES)]
    rows = []
    for name, figures in groups.items():
        cells = [html.escape(name), str(figures["n"])]
        for figure in GROUP_FIGURES:
            gap = gaps.get(figure, {})
            mark = ("worst" if gap.get("worst") == name else
                    "best" if gap.get("best") == name else "")
            digits = 2 if figure.startswith("age") else 3
            cells.append(f'<span class="{mark}">{fmt(figures[figure], digits)}</span>')
        rows.append(cells)
    gap_rows = [[FIGURE_TITLES[figure], html.escape(g["best"]), fmt(g["best_value"]),
                 html.escape(g["worst"]), fmt(g["worst_value"]), fmt(g["gap"])]
                for figure, g in gaps.items()]
    return (_table(header, rows) + "<h4>Best–worst gaps</h4>"
            + _table(["figure", "best", "value", "worst", "value", "gap"], gap_rows))


def _groups(metrics: dict, folder: Path) -> str:
    fairness = metrics.get("fairness", {"groups": {}, "gaps": {}})
    parts = ["<p>Bias is the mean signed age error (predicted − true): positive reads people "
             "older than they are. Best and worst are marked among groups of at least "
             f"{MIN_GROUP_SIZE_FOR_GAPS}.</p>"]
    for grouping, groups in fairness["groups"].items():
        title = GROUPING_TITLES[grouping]
        parts.append(f'<h3 id="groups-{grouping}">By {title}</h3>'
                     + _group_table(groups, fairness["gaps"].get(grouping, {}))
                     + _image(folder / f"groups_{grouping}.png", f"figures by {title}"))
    return "".join(parts)


def _calibration(metrics: dict, folder: Path) -> str:
    parts = []
    if "gender_reliability" in metrics:
        parts.append(f"<p>Gender ECE: {fmt(metrics['gender']['ece'], 4)}</p>"
                     + _image(folder / "gender_reliability.png", "reliability diagram")
                     + _table(["confidence bin", "n", "mean confidence", "accuracy"],
                              [[f"{b['low']:.1f}–{b['high']:.1f}", str(b["n"]),
                                fmt(b["confidence"]), fmt(b["accuracy"])]
                               for b in metrics["gender_reliability"]]))
    parts.append(_image(folder / "interval_coverage_by_age_group.png", "interval coverage"))
    return "".join(parts) or "<p>No labels to calibrate against.</p>"


def _errors(folder: Path) -> str:
    worst = _image(folder / "worst_faces.png", "worst faces")
    if worst:
        worst = (f"<h3>The {WORST_FACES_SHOWN} largest age errors</h3><p>Each face: its crop, "
                 "then its gender and age maps when the model gives them (without flip "
                 "averaging).</p>" + worst)
    return (_image(folder / "age_scatter.png", "predicted vs true age")
            + _image(folder / "age_error_histogram.png", "age error histogram")
            + worst) or "<p>No age labels: no age errors to show.</p>"


def _training(folder: Path) -> str:
    return (_image(folder / "training_curves.png", "training curves")
            or "<p>The model's run directory is not known (evaluate a checkpoint inside its "
               "run folder, or pass --run-dir).</p>")


SHOWN_ABOVE = {"confusion_matrix.png", "gender_reliability.png", "age_scatter.png",
               "interval_coverage_by_age_group.png", "age_error_histogram.png",
               "worst_faces.png", "training_curves.png", "groups_age_group.png",
               "groups_gender.png", "groups_race.png"}


def _files(metrics: dict, folder: Path) -> str:
    pictures = "".join(f"<h4>{html.escape(path.name)}</h4>" + _image(path, path.name)
                       for path in sorted(folder.glob("*.png")) if path.name not in SHOWN_ABOVE)
    return (f"<details><summary>metrics.json</summary><pre>"
            f"{html.escape(json.dumps(metrics, indent=1))}</pre></details>"
            f"<details><summary>the other plots of the folder</summary>{pictures}</details>")


def write_html_report(folder: Path | str, metrics: dict) -> Path:
    """Write `folder`/report.html from `metrics` (metrics.json's content) and the folder's
    plots; returns its path."""
    folder = Path(folder)
    bodies = {"provenance": _provenance(metrics), "overall": _overall(metrics, folder),
              "groups": _groups(metrics, folder), "calibration": _calibration(metrics, folder),
              "errors": _errors(folder), "training": _training(folder),
              "files": _files(metrics, folder)}
    nav = "".join(f'<a href="#{key}">{title}</a>' for key, title in SECTIONS.items())
    sections = "".join(f'<section id="{key}"><h2>{SECTIONS[key]}</h2>{bodies[key]}</section>'
                       for key in SECTIONS)
    model = html.escape(str(metrics.get("provenance", {}).get("model", "model")))
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>agegender report: {model}</title><style>{STYLE}</style></head><body>"
            f"<h1>agegender evaluation: {model}</h1><nav>{nav}</nav>{sections}</body></html>")
    path = folder / "report.html"
    write_bytes_atomic(path, page.encode("utf-8"))
    return path
