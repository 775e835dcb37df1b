"""Tracks, the combining rule, and tracked video output (`agegender.tracking`)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from agegender.cli.main import EXIT_OK, main
from agegender.evaluation.videos import FacePath, Occluder, VideoScript, render
from agegender.inference.backends import AGE_BINS, interval_log_distribution
from agegender.tracking.combine import PersonEvidence, combine, gender_logit

pytest.importorskip("norfair")
av = pytest.importorskip("av")

EXAMPLE = Path(__file__).parents[1] / "examples" / "astronaut_face.jpg"


def _normal(centre: float, sigma: float) -> np.ndarray:
    logits = -0.5 * ((AGE_BINS - centre) / sigma) ** 2
    return logits - np.log(np.exp(logits).sum())


def test_the_combined_age_is_read_from_the_mean_of_the_distributions():
    views = np.stack([_normal(centre, 5.0) for centre in (20.0, 30.0, 40.0)])
    answer = combine(views, np.array([0.9, 0.4, 0.45]))
    mixture = np.exp(views).mean(axis=0)
    cdf = np.cumsum(mixture / mixture.sum())
    # the mixture of three normals at 20, 30, 40 is symmetric about 30; its 10 % and 90 %
    # quantiles lie where its CDF (bins k − ½ … k + ½) reaches them
    assert answer.age == pytest.approx(30.0, abs=0.05)
    assert np.interp(answer.age_low, AGE_BINS + 0.5, cdf) == pytest.approx(0.1, abs=0.01)
    assert np.interp(answer.age_high, AGE_BINS + 0.5, cdf) == pytest.approx(0.9, abs=0.01)
    single = combine(views[1:2], np.array([0.4]))
    assert single.age_high - single.age_low == pytest.approx(2 * 1.2816 * 5.0, abs=0.3)
    assert answer.age_high - answer.age_low > single.age_high - single.age_low  # disagreement
    # gender: the sigmoid of the mean logit, here female though two of three views say male
    mean_logit = np.mean([gender_logit(p) for p in (0.9, 0.4, 0.45)])
    assert answer.gender == "female"
    assert answer.gender_prob == pytest.approx(1 / (1 + np.exp(-mean_logit)))
    assert answer.views == 3


def test_certain_views_stay_finite_and_no_view_is_an_error():
    evidence = PersonEvidence()
    with pytest.raises(ValueError, match="no views"):
        evidence.answer()
    for prob in (1.0, 0.0):  # certain views are clipped: finite logits that cancel out
        evidence.add(_normal(50, 4), prob)
    assert evidence.answer().gender_prob == pytest.approx(0.5)


def test_the_interval_distribution_reproduces_its_interval():
    log_probs = interval_log_distribution(np.array([35.0]), np.array([28.0]), np.array([42.0]))
    answer = combine(log_probs, np.array([0.5]))
    assert (answer.age_low, answer.age, answer.age_high) == pytest.approx((28, 35, 42), abs=0.4)


def test_crossing_faces_keep_their_tracks_through_a_gap():
    from agegender.tracking.tracker import FaceTracker

    tracker = FaceTracker()
    seen = []
    for step in range(40):
        left = (20 + 10 * step, 100, 60, 60)
        right = (420 - 10 * step, 130, 60, 60)
        if 24 <= step < 32:  # the left face is hidden for 8 frames
            seen.append(dict(zip((1,), tracker.update([right], [0.9]), strict=True)))
            continue
        numbers = tracker.update([left, right], [0.9, 0.8])
        seen.append({"left": numbers[0], "right": numbers[1]})
    assert all(frame.get("left", 1) == 1 and frame.get("right", 2) == 2
               for frame in seen if "left" in frame)
    assert {frame[1] for frame in seen if 1 in frame} == {2}


def _example_video(path: Path, frames: int = 40) -> None:
    from agegender.imageio import decode_image

    face = decode_image(EXAMPLE)
    script = VideoScript(frames=frames, paths=[FacePath(0, (250, 250), (550, 300), 110)],
                         occluders=[Occluder((330, 110, 120, 150), 15, 20)], crf=23)
    render(script, [face], path)


def test_a_video_gives_every_face_its_track_and_a_summary_and_an_annotated_video(tmp_path):
    video = tmp_path / "walk.mp4"
    _example_video(video)
    rows_path, summary_path, drawn = (tmp_path / "rows.jsonl", tmp_path / "tracks.csv",
                                      tmp_path / "drawn.mp4")
    assert main(["predict", str(video), "--output", str(rows_path), "--summary",
                 str(summary_path), "--annotate", str(drawn)]) == EXIT_OK
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    faces = [row for row in rows if row["error"] is None]
    assert len(faces) >= 30 and {row["track"] for row in faces} == {1}
    assert [row["track_views"] for row in faces] == list(range(1, len(faces) + 1))
    assert faces[0]["track_age"] == pytest.approx(faces[0]["age"], abs=0.1)
    summary = list(csv.DictReader(summary_path.open()))
    assert len(summary) == 1 and int(summary[0]["frames"]) == len(faces)
    assert summary[0]["gender"] == faces[-1]["track_gender"]
    assert float(summary[0]["age_low"]) < float(summary[0]["age"]) < float(summary[0]["age_high"])
    with av.open(str(drawn)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 25
        assert sum(1 for _ in container.decode(stream)) == 40


def test_no_track_gives_plain_rows_and_refuses_a_summary(tmp_path):
    video = tmp_path / "walk.mp4"
    _example_video(video, frames=4)
    output = tmp_path / "rows.csv"
    assert main(["predict", str(video), "--no-track", "--output", str(output)]) == EXIT_OK
    assert "track" not in output.read_text().splitlines()[0]
    assert main(["predict", str(video), "--no-track", "--summary", str(tmp_path / "s.csv")]) == 2


def test_people_get_one_combined_row_each(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    image = Image.open(EXAMPLE)
    image.save(photos / "a.jpg")
    image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photos / "b.jpg")
    (photos / "broken.jpg").write_bytes(b"no image")
    listing = photos / "people.csv"
    listing.write_text("file,person\na.jpg,eileen\nb.jpg,eileen\nbroken.jpg,nobody\n")
    output = tmp_path / "people.csv"
    assert main(["predict", "--people", str(listing), "--output", str(output)]) == 1
    rows = {row["person"]: row for row in csv.DictReader(output.open())}
    assert rows["eileen"]["photos"] == "2" and rows["eileen"]["faces"] == "2"
    assert rows["eileen"]["gender"] == "female"
    assert rows["nobody"]["error"] == "no face in any photo"
    single = tmp_path / "one.csv"
    assert main(["predict", str(photos / "a.jpg"), "--person", "eileen", "--output",
                 str(single)]) == EXIT_OK
    assert next(iter(csv.DictReader(single.open())))["faces"] == "1"


def test_annotate_dir_draws_a_tracked_videos_frames_as_jpegs(tmp_path):
    video = tmp_path / "walk.mp4"
    _example_video(video, frames=3)
    drawn = tmp_path / "drawn"
    assert main(["predict", str(video), "--output", str(tmp_path / "rows.csv"), "--annotate",
                 str(drawn)]) == EXIT_OK
    assert sorted(path.name for path in drawn.iterdir()) == [
        f"walk_frame{frame:06d}.jpg" for frame in range(3)]


def test_the_shown_gender_switches_only_past_the_margin():
    from agegender.tracking.combine import SWITCH_MARGIN, steady_gender

    assert steady_gender(None, 0.52) == "female"  # the first view: the combined answer
    assert steady_gender("female", 0.45) == "female"  # male at 0.55: within the margin
    assert steady_gender("female", 1 - SWITCH_MARGIN) == "male"
    assert steady_gender("male", 0.6, margin=0.65) == "male"
    assert steady_gender("male", 0.7, margin=0.65) == "female"


def test_a_track_wavering_about_even_shows_one_gender_with_its_probability():
    from agegender.tracking.session import Track

    track = Track(1, 0, None)
    shown = []
    for prob_female in (0.6, 0.3, 0.45, 0.3, 0.5, 0.005, 0.1, 0.1):
        row = {"gender": "female", "gender_prob": prob_female, "w": 50, "h": 50}
        answer = track.add(0, None, row, _normal(30, 5))
        shown.append((answer.gender, round(answer.gender_prob, 3)))
    # the running mean logit goes from female (0.6) below even at once, but the shown
    # gender holds until male reaches the margin (the sixth view), then it changes once
    assert [gender for gender, _ in shown] == ["female"] * 5 + ["male"] * 3
    assert shown[1][1] < 0.5  # held: the combined probability of the gender shown
    assert track.gender_changes == 1
    assert track.summary("x")["gender"] == "male"


def test_a_person_shown_by_several_photos_cross_fades_from_one_to_the_next(tmp_path):
    dark, light = np.full((60, 60, 3), 20, np.uint8), np.full((60, 60, 3), 230, np.uint8)
    person = FacePath(0, (80, 60), (80, 60), 50, photos=(0, 1), photo_frames=10, fade=4)
    assert [person.look(frame)[2] for frame in range(4, 12)] == pytest.approx(
        [0, 0, 0.2, 0.4, 0.6, 0.8, 0, 0])
    assert person.look(12)[:2] == (1, 0)  # the second photo's turn, fading back later
    script = VideoScript(width=160, height=120, frames=20, paths=[person], crf=10)
    truth = render(script, [dark, light], tmp_path / "fade.mp4")
    assert all(frame[0].visible and frame[0].face == 0 for frame in truth)
    with av.open(str(tmp_path / "fade.mp4")) as container:
        centres = [float(frame.to_ndarray(format="rgb24")[55:65, 75:85].mean())
                   for frame in container.decode(video=0)]
    assert max(centres[:6]) < 40 and min(centres[10:16]) > 210
    assert centres[5] < centres[6] < centres[7] < centres[8] < centres[9] < centres[10]


def test_a_random_script_shows_each_persons_photos_in_turn():
    from agegender.evaluation.videos import random_script

    script = random_script(np.random.default_rng(3), [0, 1, 2], seed=0, frames=100,
                           photos={0: [3, 4, 5], 1: [1]})
    by_face = {path.face: path for path in script.paths}
    assert sorted(by_face[0].photos) == [3, 4, 5]
    assert by_face[1].photos == () and by_face[2].photos == ()  # one photo: the face's own
    assert 25 <= by_face[0].photo_frames <= 60 and 5 <= by_face[0].fade <= 10


def test_a_face_seen_again_with_an_earlier_look_takes_its_number_back():
    from agegender.tracking.tracker import FaceTracker

    def unit(*values: float) -> np.ndarray:
        vector = np.array(values, dtype=np.float32)
        return vector / np.linalg.norm(vector)

    first, second, stranger = unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0)
    tracker = FaceTracker()
    box = (100, 100, 60, 60)
    # one face whose look changes gradually (a turn of the head, a fade to another photo)
    for share in np.linspace(0, 1, 30):
        look = unit(*((1 - share) * first + share * second))
        assert tracker.update([box], [0.9], look[None]) == [1]
    for _ in range(40):  # gone for longer than the tracker's memory
        tracker.update([], [])
    # back elsewhere, looking as it first did: its number again, though its latest look differs
    assert tracker.update([(400, 300, 60, 60)], [0.9], first[None]) == [1]
    for _ in range(40):
        tracker.update([], [])
    assert tracker.update([(400, 300, 60, 60)], [0.9], stranger[None]) == [2]


def test_tracking_without_norfair_says_what_to_install(monkeypatch):
    import sys

    from agegender.tracking import tracker

    monkeypatch.setitem(sys.modules, "norfair", None)  # `import norfair` now fails
    with pytest.raises(tracker.TrackingUnavailable, match=r'pip install "agegender\[track\]"'):
        tracker.require_tracker()
