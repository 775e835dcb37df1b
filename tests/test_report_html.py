"""report.html and compare: figures equal an independent recomputation; the page opens in
headless Chromium with every section."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from agegender.cli.main import main
from agegender.evaluation.compare import distinct_names
from agegender.evaluation.html_report import SECTIONS, write_html_report
from agegender.evaluation.metrics import AGE_GROUP_LABELS, AGE_GROUPS
from agegender.evaluation.report import EvalPredictions, write_report
from tests.test_evaluation_report import _predictions

CHROMIUM = Path("/usr/bin/chromium")


def _by_hand(p: EvalPredictions, member: np.ndarray) -> dict:
    """Group figures recomputed with plain loops, independently of `evaluation.groups`."""
    errors, correct, women, men, inside = [], [], [], [], []
    for i in np.flatnonzero(member):
        if not np.isnan(p.age_true[i]):
            errors.append(p.age_pred[i] - p.age_true[i])
            inside.append(p.age_low[i] <= p.age_true[i] <= p.age_high[i])
        if not np.isnan(p.gender_true[i]):
            said_female = p.prob_female[i] >= 0.5
            correct.append(said_female == (p.gender_true[i] == 1))
            (women if p.gender_true[i] == 1 else men).append(said_female == (p.gender_true[i] == 1))

    def mean(values: list) -> float | None:
        return sum(values) / len(values) if values else None

    return {"n": int(member.sum()), "age_n": len(errors), "gender_n": len(correct),
            "age_mae": mean([abs(e) for e in errors]),
            "age_bias": mean(errors), "gender_accuracy": mean(correct),
            "female_recall": mean(women), "male_recall": mean(men),
            "interval_coverage": mean(inside)}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvalPredictions, Path, dict]:
    predictions = _predictions(count=60)
    folder = tmp_path_factory.mktemp("report")
    metrics = write_report(predictions, folder, grid_size=4)
    metrics["provenance"] = {"model": "fixture.onnx", "split": "test"}
    write_html_report(folder, metrics)
    return predictions, folder, metrics


def test_group_figures_equal_an_independent_recomputation(report):
    p, folder, _ = report
    written = json.loads((folder / "metrics.json").read_text())
    groups = written["fairness"]["groups"]
    for (low, high), label in zip(AGE_GROUPS, AGE_GROUP_LABELS, strict=True):
        member = (p.age_true >= low) & (p.age_true < high + 1)
        if member.any():
            expected = _by_hand(p, member)
            assert groups["age_group"][label] == pytest.approx(expected), label
    for code, name in enumerate(("White", "Black", "Asian", "Indian", "Others")):
        if (p.race == code).any():
            assert groups["race"][name] == pytest.approx(_by_hand(p, p.race == code)), name
    assert groups["gender"]["female"]["female_recall"] == pytest.approx(
        _by_hand(p, p.gender_true == 1)["gender_accuracy"])
    labelled = ~np.isnan(p.age_true)
    assert written["age"]["mae"] == pytest.approx(
        np.abs(p.age_pred - p.age_true)[labelled].mean())


def test_gaps_name_the_worst_and_best_groups(report):
    _, _, metrics = report
    fairness = metrics["fairness"]
    for grouping, gaps in fairness["gaps"].items():
        groups = fairness["groups"][grouping]
        if "age_mae" in gaps:
            ranked = {name: g["age_mae"] for name, g in groups.items()
                      if g["age_mae"] is not None and g["age_n"] >= 10}
            assert gaps["age_mae"]["worst"] == max(ranked, key=ranked.get)
            assert gaps["age_mae"]["best"] == min(ranked, key=ranked.get)


def test_the_page_shows_the_figures_of_metrics_json(report):
    _, folder, metrics = report
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for key in SECTIONS:
        assert f'<section id="{key}">' in page
    groups_section = page.split('<section id="groups">')[1].split("</section>")[0]
    for name, figures in metrics["fairness"]["groups"]["race"].items():
        assert re.search(rf"<td>{name}</td><td>{figures['n']}</td>", groups_section)
        assert f"{figures['age_mae']:.2f}" in groups_section
    assert f"{metrics['age']['mae']:.3f}" in page
    assert f"{metrics['gender']['roc_auc']:.4f}" in page
    assert page.count("data:image/png;base64,") >= 8


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                                  "(apt-get install chromium)")
def test_the_report_opens_in_headless_chromium_with_every_section(report, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (the `report` extra)")
    _, folder, _ = report
    with playwright.sync_playwright() as session:
        browser = session.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith(("file:", "data:")) else route.abort())
            page.goto((folder / "report.html").as_uri())
            for key, title in SECTIONS.items():
                assert page.locator(f"section#{key} h2").inner_text() == title
            broken = page.evaluate("[...document.images].filter(i => !i.naturalWidth).length")
            assert broken == 0
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_compare_tells_apart_reports_of_the_same_name(tmp_path):
    folders = [tmp_path / "run_a" / "report", tmp_path / "run_b" / "report"]
    assert distinct_names(folders) == ["run_a/report", "run_b/report"]
    assert distinct_names([tmp_path / "x", tmp_path / "y"]) == ["x", "y"]


def test_compare_marks_the_better_run(report, tmp_path):
    _, folder, _ = report
    better = tmp_path / "better"
    shutil.copytree(folder, better)
    metrics = json.loads((better / "metrics.json").read_text())
    metrics["age"]["mae"] -= 1
    metrics["fairness"]["groups"]["race"]["White"]["age_bias"] = 0.0
    (better / "metrics.json").write_text(json.dumps(metrics))
    assert main(["compare", str(folder), str(better), "--output", str(tmp_path / "c")]) == 0
    rows = {line.split(",")[0]: line.split(",") for line in
            (tmp_path / "c" / "compare.csv").read_text().splitlines()}
    assert rows["age MAE"][-1] == "better"
    assert rows["race White: bias"][-1] == "better"
    assert "★" in (tmp_path / "c" / "compare.html").read_text(encoding="utf-8")
    assert main(["compare", str(folder), "--output", str(tmp_path / "d")]) == 2
