"""docs/tracking_frame.png: a frame of `agegender predict VIDEO --annotate out.mp4`.

The video is generated from the bundled example photo (NASA, public domain) and its mirror
image moving over a smooth random background while the camera pans, so the still shows no
dataset face:

    python tools/tracking_still.py [--output docs/tracking_frame.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np

from agegender.cli.main import main as agegender
from agegender.evaluation.videos import FacePath, VideoScript, render
from agegender.imageio import decode_image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "tracking_frame.png")
    parser.add_argument("--frame", type=int, default=30)
    args = parser.parse_args()
    face = decode_image(ROOT / "examples" / "astronaut_face.jpg")
    mirror = np.ascontiguousarray(face[:, ::-1])
    script = VideoScript(frames=40, paths=[
        FacePath(0, (150, 220), (330, 250), 140, grow=1.1, turn=8, turn_period=40),
        FacePath(1, (520, 260), (420, 230), 110, turn=10, turn_period=30, depth=1)],
        pan=(0.8, 0.2), crf=20, seed=3)
    with tempfile.TemporaryDirectory() as folder:
        video, drawn = Path(folder) / "walk.mp4", Path(folder) / "drawn.mp4"
        render(script, [face, mirror], video)
        agegender(["predict", str(video), "--output", str(Path(folder) / "rows.csv"),
                   "--annotate", str(drawn)])
        with av.open(str(drawn)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index == args.frame:
                    frame.to_image().save(args.output, optimize=True)
                    break
    print(args.output)


if __name__ == "__main__":
    main()
