"""dlib's HOG face detector over a folder, inside the peer's virtual environment (which has dlib).

Started by `python -m benchmarks.detector_comparison`; writes, per file, the boxes (x, y, w, h)
and the seconds the detector took, for each upsampling setting asked for.

    PEER_VENV/bin/python benchmarks/dlib_detector_worker.py FOLDER OUT.json UPSAMPLE...
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dlib
import numpy as np
from PIL import Image


def main() -> None:
    folder, output = Path(sys.argv[1]), Path(sys.argv[2])
    detector = dlib.get_frontal_face_detector()
    results: dict[str, dict] = {}
    for upsample in map(int, sys.argv[3:]):
        per_file = {}
        for path in sorted(folder.glob("*.png")):
            image = np.asarray(Image.open(path).convert("RGB"))
            started = time.perf_counter()
            found = detector(image, upsample)
            per_file[path.name] = {
                "seconds": time.perf_counter() - started,
                "boxes": [[r.left(), r.top(), r.width(), r.height()] for r in found]}
        results[str(upsample)] = per_file
    output.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
