"""Validation that looks like the world: models' figures on views of the validation faces.

Every model choice made on UTKFace's own validation split rewards learning UTKFace's look.
This script shows one or more models (.onnx or .pt, the first the reference) the validation
faces in several views (`agegender.evaluation.views`, where each view's parameters are given):

- utkface: UTKFace `split == val` (or --split test), colour, as the model sees it today;
- utkface-gray: the same faces in grey;
- utkface-faded: the same faces as a faded, colour-cast print;
- utkface-noisy: the same faces blurred, with sensor noise, through JPEG at quality 60;
- lfw: LFW `split == val` (or test): press photos, gender labels only.

It prints one table per figure (age MAE, mean signed age error, gender accuracy, women's and
men's recall; rows are views, columns models, a later model's difference from the reference in
brackets), then the mean signed age error per age group and per decade on the UTKFace views.
`--split val+test` pools both splits (the decade bias of issue 26 is judged pooled; models are
chosen on `val` alone):

    python -m benchmarks.generalisation --utkface ../shared/data/utkface/UTKFace.tar.gz \
        --lfw ../shared/data/lfw [--model M.onnx ...] [--split val|test|val+test] \
        [--views V ...] [--limit N] [--json FILE]

The first run on a dataset aligns and caches its faces (minutes); later runs read the cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agegender.evaluation.metrics import AGE_GROUP_LABELS
from agegender.evaluation.views import DECADE_LABELS, VIEWS, evaluate_views
from agegender.inference.predictor import bundled_model_path
from benchmarks.common import argument_parser, write_json

FIGURES = (  # key, title, format of a value, format of a difference (None: not shown)
    ("mae", "age MAE (years)", "{:.2f}", "{:+.2f}"),
    ("bias", "mean signed age error (years, predicted - true)", "{:+.2f}", "{:+.2f}"),
    ("gender_acc", "gender accuracy", "{:.3f}", "{:+.3f}"),
    ("gender_acc_se", "gender accuracy's standard error (bootstrap drawing people on LFW, "
                      "photos on UTKFace)", "{:.3f}", None),
    ("female_recall", "women's recall (women called women)", "{:.3f}", "{:+.3f}"),
    ("male_recall", "men's recall (men called men)", "{:.3f}", "{:+.3f}"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--utkface", type=Path, help="UTKFace archive or folder (split.csv beside)")
    parser.add_argument("--lfw", type=Path, help="the LFW folder (../shared/data/lfw)")
    parser.add_argument("--model", type=Path, action="append",
                        help="repeat for models side by side, the first the reference "
                             "(default: the bundled model)")
    parser.add_argument("--split", default="val", choices=["val", "test", "val+test"],
                        help="val to choose between models; test for the final figures; "
                             "val+test pools both")
    parser.add_argument("--views", nargs="+", choices=list(VIEWS), default=list(VIEWS))
    parser.add_argument("--limit", type=int,
                        help="decode only N random faces of each dataset (all splits) and "
                             "evaluate the split's share of them: a quick run")
    parser.add_argument("--json", type=Path)
    return parser


def model_labels(models: list[Path]) -> list[str]:
    """Short column names: the file stems, numbered where two are the same."""
    stems = [path.stem for path in models]
    return [stem if stems.count(stem) == 1 else f"{index + 1}:{stem}"
            for index, stem in enumerate(stems)]


def _cell(value: float | None, reference: float | None, formats: tuple[str, str | None]) -> str:
    """A value, and its difference from the reference's where there is one to show."""
    if value is None:
        return "-"
    text = formats[0].format(value)
    if reference is None or formats[1] is None:
        return text
    return f"{text} ({formats[1].format(value - reference)})"


def _table(headers: list[list[str]], rows: list[list[str]]) -> str:
    """Rows under one or more header lines, the first column left-aligned, the rest right."""
    lines = [*headers, [], *rows]
    widths = [max(len(line[i]) for line in lines if line) for i in range(len(rows[0]))]
    lines[len(headers)] = ["-" * width for width in widths]
    return "\n".join("  ".join(cell.rjust(width) if i else cell.ljust(width)
                               for i, (cell, width) in enumerate(zip(line, widths, strict=True)))
                     .rstrip() for line in lines)


def figure_tables(figures: dict[str, dict[str, dict]]) -> str:
    """One table per figure: rows the views, columns n and the models."""
    reference, *others = figures.values()
    tables = []
    for key, title, *formats in FIGURES:
        rows = [[view, str(found["n"]), _cell(found[key], None, formats),
                 *(_cell(model[view][key], found[key], formats) for model in others)]
                for view, found in reference.items()]
        tables.append(f"{title}\n{_table([['view', 'n', *figures]], rows)}")
    return "\n\n".join(tables)


def _group_bias(found: dict, group: str, key: str) -> str:
    bias = found["bias"] if group == "all" else found[key].get(group, {}).get("bias")
    return "-" if bias is None else f"{bias:+.2f}"


def group_table(figures: dict[str, dict[str, dict]], decades: bool = False) -> str:
    """Mean signed age error per age group (or per decade): rows the groups, columns model ×
    UTKFace view."""
    key, labels, what = (("bias_by_decade", DECADE_LABELS, "decade") if decades
                         else ("bias_by_group", AGE_GROUP_LABELS, "age group"))
    columns = [(name, view) for name, by_view in figures.items() for view in by_view
               if VIEWS[view].dataset == "utkface"]
    if not columns:
        return f"no UTKFace view: no {what}s"
    counts = figures[columns[0][0]][columns[0][1]]
    rows = [[group, str(counts["age_n"] if group == "all"
                        else counts[key].get(group, {}).get("n", 0)),
             *(_group_bias(figures[name][view], group, key) for name, view in columns)]
            for group in [*labels, "all"]]
    views = ["age", "n", *(view for _, view in columns)]
    if len(figures) == 1:
        return (f"mean signed age error by {what} (years, predicted - true)\n"
                + _table([views], rows))
    numbers = {name: number for number, name in enumerate(figures, 1)}
    models = ["", "", *(f"model {numbers[name]}" if i == 0 or columns[i - 1][0] != name else ""
                        for i, (name, _) in enumerate(columns))]
    return (f"mean signed age error by {what} (years, predicted - true; "
            + ", ".join(f"model {number} = {name}" for name, number in numbers.items()) + ")\n"
            + _table([models, views], rows))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    paths = args.model or [bundled_model_path()]
    models = dict(zip(model_labels(paths), paths, strict=True))
    started = time.perf_counter()
    results = evaluate_views(models, {"utkface": args.utkface, "lfw": args.lfw}, args.views,
                             split=args.split, limit=args.limit)
    wall_s = time.perf_counter() - started
    for view, reason in results["skipped"].items():
        print(f"skipped view {view}: {reason}")
    print(f"split: {args.split}; models: "
          + ", ".join(f"{name} = {path}" for name, path in models.items()) + "\n")
    if any(results["figures"].values()):
        print(figure_tables(results["figures"]) + "\n")
        print(group_table(results["figures"]) + "\n")
        print(group_table(results["figures"], decades=True) + "\n")
    print(f"wall time {wall_s:.0f} s")
    write_json(args.json, {"split": args.split, "limit": args.limit,
                           "models": {name: str(path) for name, path in models.items()},
                           "wall_s": wall_s, **results})


if __name__ == "__main__":
    main()
