"""`agegender check-data`: each skipped row and unreadable image is reported with its reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from agegender.cli.main import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, main


def _folder(root: Path, rows: list[str]) -> Path:
    (root / "img").mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    for name in ("a", "b", "c"):
        Image.fromarray(pixels).save(root / "img" / f"{name}.jpg")
    (root / "labels.csv").write_text("file,age,gender,split\n" + "\n".join(rows) + "\n")
    return root


def test_a_clean_folder_reports_its_labels_and_splits(tmp_path, capsys):
    data = _folder(tmp_path / "mine", ["img/a.jpg,30,f,train", "img/b.jpg,41,m,val",
                                       "img/c.jpg,,male,test"])
    assert main(["check-data", "--data", str(data)]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("LabelledFolder, 3 images usable, 0 entries skipped, 0 unreadable")
    assert out[1] == "labels: age 2, age range 0, gender 3 (male 2, female 1)"
    assert out[2] == "splits (the data's own): test 1, train 1, val 1"


def test_bad_rows_and_broken_images_are_named_with_their_reason(tmp_path, capsys):
    data = _folder(tmp_path / "mine", ["img/a.jpg,30,f,", "img/b.jpg,41,x,", "img/gone.jpg,5,m,",
                                       "img/c.jpg,20,m,"])
    (data / "img" / "c.jpg").write_bytes(b"\xff\xd8 truncated")
    assert main(["check-data", "--data", str(data)]) == EXIT_SOME_FAILED
    out = capsys.readouterr().out
    assert "1 images usable, 2 entries skipped, 1 unreadable" in out
    assert "labels.csv:3: gender 'x' is not male/m/0 or female/f/1" in out
    assert "labels.csv:4: img/gone.jpg: no such image" in out
    assert f"unreadable {data / 'img' / 'c.jpg'}" in out


def test_a_folder_with_nothing_usable_is_an_error(tmp_path):
    data = _folder(tmp_path / "mine", ["img/gone.jpg,5,m,"])
    assert main(["check-data", "--data", str(data)]) == EXIT_ERROR
