"""Time per image, stage by stage, each beside its floor on this machine.

The stages of `agegender predict` for one image, run one after the other on one thread (the
detector on one onnxruntime thread, the model on `--threads`), as its workers run them:

- decode: the file to RGB pixels at the scale detection needs; floor: libjpeg (Pillow) alone
  decoding the same file at that scale;
- detection: resizing, the search network's passes (RetinaFace, or YuNet), decoding its
  outputs, NMS, voting; floor: that network alone on inputs of the same sizes;
- refinement: RetinaFace's passes per face (`refine_passes`), each in its canonical window;
  floor: RetinaFace alone on those windows;
- alignment: each face's canonical 112-px crop; floor: one 112×112 affine warp per face of an
  image already in Pillow;
- model: the age/gender network with its normalisation, faces in batches of 32; floor: the
  network alone at batch 32 on a ready float batch;
- writing: the face rows to an open CSV file (`ResultWriter`); floor: `csv.writer` alone writing
  the same values to memory.

Four kinds of image, made from UTKFace `split == test` crops in a temporary folder (never kept):
the crops themselves (200×200 JPEG), 640×480 photos (a crop pasted on a textured background, as
`benchmarks.serve_load` makes them), 12–16 MP photos (crops upscaled to 4000×3000 and 4000×4000)
and video frames (640×360, already decoded by the video reader, so they have no decode stage).
Figures are milliseconds per image, the median over the images of each kind after one untimed
pass; the model's time is per face times the faces per image.

    python -m benchmarks.stages --data ../shared/data/utkface/UTKFace.tar.gz \
        [--precision int8|fp32] [--count 40] [--threads 2] [--search retinaface|yunet] \
        [--full-decoding] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from agegender.faces.canonical import canonical_crop
from agegender.faces.detector import BGR_MEAN, DetectorConfig, FaceDetector, yunet_input_size
from agegender.faces.search import SEARCH_NETWORKS
from agegender.imageio import _draft, decode_image, decode_reduced
from agegender.inference.backends import load_backend
from agegender.inference.output import ResultWriter
from agegender.inference.predictor import RESULT_COLUMNS, Predictor, bundled_model_path, face_rows
from agegender.precision import PRECISIONS, model_file
from agegender.preprocessing import normalize
from benchmarks.common import (
    argument_parser,
    large_photo,
    make_photos,
    read_split_crops,
    write_json,
)

STAGES = ("decode", "detection", "refinement", "alignment", "model", "writing")
VIDEO_FRAME = (640, 360)


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--count", type=int, default=40, help="images of each kind")
    parser.add_argument("--threads", type=int, default=2, help="the model's onnxruntime threads")
    parser.add_argument("--search", choices=SEARCH_NETWORKS, default="retinaface",
                        help="the detector's search network (yunet: refined in 2 passes)")
    parser.add_argument("--full-decoding", action="store_true",
                        help="decode every image whole, as before reduced decoding")
    parser.add_argument("--json", type=Path)
    return parser


def timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return (time.perf_counter() - started) * 1000, result


def write_kinds(crops: list[np.ndarray], count: int, folder: Path) -> dict[str, list]:
    """The files (or, for video, arrays) of each kind of image."""
    kinds: dict[str, list] = {"crops 200×200": [], "photos 640×480": [], "photos 12–16 MP": []}
    for index, crop in enumerate(crops[:count]):
        path = folder / f"crop_{index:03d}.jpg"
        Image.fromarray(crop).save(path, quality=95)
        kinds["crops 200×200"].append(path)
    for index, data in enumerate(make_photos(crops[count:2 * count], seed=0)):
        path = folder / f"photo_{index:03d}.jpg"
        path.write_bytes(data)
        kinds["photos 640×480"].append(path)
    for index, crop in enumerate(crops[2 * count:3 * count]):
        path = folder / f"large_{index:03d}.jpg"
        large_photo(crop, index).save(path, quality=90)
        kinds["photos 12–16 MP"].append(path)
    frame = np.asarray(Image.open(kinds["photos 640×480"][0]).convert("RGB").resize(VIDEO_FRAME))
    kinds["video frames 640×360"] = [np.roll(frame, 4 * index, axis=1) for index in range(count)]
    return kinds


def detector_floor(detector: FaceDetector, sizes: list[tuple[int, int]], search: bool
                   ) -> float:
    """A detector network alone on ready inputs of these (width, height): the search network
    (YuNet's inputs padded to a multiple of 32 px), or RetinaFace, which refines."""
    yunet = search and detector._search_session is not None
    session = detector._search_session if yunet else detector._session
    total = 0.0
    for width, height in sizes:
        if yunet:
            height, width = yunet_input_size(height, width)
        tensor = np.zeros((1, 3, height, width), np.float32) - BGR_MEAN[None, :, None, None]
        total += timed(lambda tensor=tensor: session.run(None, {"input": tensor}))[0]
    return total


def pass_sizes(detector: FaceDetector, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """The (width, height) of each detector pass over an image of `shape`."""
    longest = max(shape[:2])
    sides = detector.config.pass_sides(longest)
    return [(max(1, round(shape[1] * side / longest)), max(1, round(shape[0] * side / longest)))
            for side in sides]


def decode_floor(path: Path, min_side: int | None) -> float:
    """libjpeg alone: open, draft to the scale used, load."""
    def load() -> None:
        with Image.open(path) as image:
            if min_side is not None:
                _draft(image, min_side)  # the very scale `predict` decodes at
            image.load()
    return timed(load)[0]


def image_stages(predictor: Predictor, writer: ResultWriter, item: Path | np.ndarray, full: bool,
                 model_ms_per_face: float, model_floor_per_face: float) -> dict[str, float]:
    """Each stage's time and floor (ms) for one image."""
    detector = predictor.detector
    times: dict[str, float] = {}
    if isinstance(item, Path):
        if full:
            times["decode"], image = timed(lambda: decode_image(item))
            pixels, scale = image, 1.0
        else:
            times["decode"], reduced = timed(lambda: decode_reduced(item,
                                                                    detector.config.min_side))
            pixels, scale = reduced.pixels, reduced.scale
        times["decode floor"] = decode_floor(item, None if full else detector.config.min_side)
    else:
        pixels, scale = item, 1.0
        times["decode"] = times["decode floor"] = 0.0
    times["detection"], found = timed(lambda: detector._detect(pixels, detector._search))
    times["detection floor"] = detector_floor(detector, pass_sizes(detector, pixels.shape),
                                              search=True)
    side, passes = detector.config.refine_side, detector.config.refine_passes
    times["refinement"], refined = timed(lambda: detector.refine(pixels, found))
    times["refinement floor"] = detector_floor(
        detector, [(side + 32, side + 32)] * (len(found) * passes), search=False)
    times["alignment"], crops = timed(lambda: [canonical_crop(pixels, predictor.preprocessing,
                                                              face) for face in refined])
    region = Image.fromarray(np.ascontiguousarray(pixels[:224, :224]))
    times["alignment floor"] = len(refined) * timed(lambda: region.transform(
        (112, 112), Image.Transform.AFFINE, (2, 0, 0, 0, 2, 0),
        resample=Image.Resampling.BILINEAR))[0]
    times["model"] = model_ms_per_face * len(crops)
    times["model floor"] = model_floor_per_face * len(crops)
    predictions = predictor.predict_crops(np.stack(crops)) if crops else []
    rows = [row.to_dict() for row in face_rows(
        [_Face(face, scale) for face in refined], predictions, file=str(item)[:40])]
    times["writing"] = timed(lambda: [writer.write(row) for row in rows])[0]
    plain = csv.writer(io.StringIO())
    times["writing floor"] = timed(lambda: [plain.writerow(row.values()) for row in rows])[0]
    return times


class _Face:
    """What `face_rows` reads of a found face, in full-resolution pixels."""

    def __init__(self, detection, scale: float) -> None:
        self.box = tuple(value * scale for value in detection.box)
        self.score = detection.score
        self.landmarks = detection.landmarks * scale


def model_per_face(predictor: Predictor, repeats: int = 10) -> tuple[float, float]:
    """ms per face at batch 32: through `predict_crops` (normalisation included), and the
    network alone on a ready float batch."""
    prep = predictor.preprocessing
    faces = np.random.default_rng(0).integers(0, 256, (32, prep.size, prep.size, 3), np.uint8)
    ready = normalize(faces, prep)
    session = predictor.backend.session
    predictor.predict_crops(faces)
    ours = statistics.median(timed(lambda: predictor.predict_crops(faces))[0]
                             for _ in range(repeats))
    alone = statistics.median(timed(lambda: session.run(None, {"image": ready}))[0]
                              for _ in range(repeats))
    return ours / 32, alone / 32


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    crops = read_split_crops(args.data)
    backend = load_backend(model_file(bundled_model_path(), args.precision),
                           threads=args.threads)
    config = DetectorConfig(search=args.search)
    predictor = Predictor(backend, detector=FaceDetector(config, threads=1),
                          precision=args.precision)
    model_ms, model_floor = model_per_face(predictor)
    results: dict = {"precision": args.precision, "full_decoding": args.full_decoding,
                     "model_ms_per_face": model_ms, "model_floor_ms_per_face": model_floor}
    with tempfile.TemporaryDirectory() as folder, \
            ResultWriter(RESULT_COLUMNS, Path(folder) / "rows.csv") as writer:
        for kind, items in write_kinds(crops, args.count, Path(folder)).items():
            image_stages(predictor, writer, items[0], args.full_decoding, model_ms, model_floor)
            per_image = [image_stages(predictor, writer, item, args.full_decoding, model_ms,
                                      model_floor) for item in items]
            results[kind] = {key: statistics.median(times[key] for times in per_image)
                             for key in per_image[0]}
    print(f"ms per image, median; precision {args.precision}, "
          f"{'full' if args.full_decoding else 'reduced'} decoding")
    print("| images | " + " | ".join(STAGES) + " | total |")
    print("| --- |" + " --- |" * (len(STAGES) + 1))
    for kind in (key for key in results if isinstance(results[key], dict)):
        figures = results[kind]
        cells = [f"{figures[stage]:.1f} ({figures[stage + ' floor']:.1f})" for stage in STAGES]
        total = sum(figures[stage] for stage in STAGES)
        floor = sum(figures[stage + " floor"] for stage in STAGES)
        print(f"| {kind} | " + " | ".join(cells) + f" | {total:.1f} ({floor:.1f}) |")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
