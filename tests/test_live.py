"""Live sources: a generated video streamed over HTTP on 127.0.0.1, whole and cut mid-way."""

import csv
import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from agegender.cli.main import main
from agegender.cli.tracked import EXIT_OK, EXIT_STREAM_BROKEN
from agegender.evaluation.videos import FacePath, VideoScript, render

pytest.importorskip("norfair")
pytest.importorskip("av")

EXAMPLE = Path(__file__).parents[1] / "examples" / "astronaut_face.jpg"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; `cut.ts` promises the whole file and sends half of it."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if not self.path.endswith("/cut.ts"):
            super().do_GET()
            return
        data = (Path(self.directory) / "clip.ts").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def stream_url(tmp_path_factory):
    from agegender.imageio import decode_image

    folder = tmp_path_factory.mktemp("served")
    script = VideoScript(frames=50, paths=[FacePath(0, (250, 250), (500, 280), 120)], crf=23)
    render(script, [decode_image(EXAMPLE)], folder / "clip.ts")
    handler = functools.partial(_Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_stream_gives_tracked_rows_as_they_come_and_a_summary(stream_url, tmp_path):
    rows_path, summary_path = tmp_path / "rows.jsonl", tmp_path / "tracks.json"
    code = main(["predict", f"{stream_url}/clip.ts", "--output", str(rows_path), "--summary",
                 str(summary_path)])
    assert code == EXIT_OK
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    faces = [row for row in rows if row["error"] is None]
    frames = [row["frame"] for row in rows]
    assert len(faces) >= 5 and frames == sorted(set(frames)) and max(frames) < 50
    assert {row["track"] for row in faces} == {1}
    assert all(row["file"] == f"{stream_url}/clip.ts" for row in rows)
    summary = json.loads(summary_path.read_text())
    assert len(summary) == 1 and summary[0]["frames"] == len(faces)
    assert summary[0]["gender"] == faces[-1]["track_gender"]


def test_a_stream_cut_mid_way_still_writes_its_summary(stream_url, tmp_path):
    rows_path, summary_path = tmp_path / "rows.csv", tmp_path / "tracks.csv"
    code = main(["predict", f"{stream_url}/cut.ts", "--output", str(rows_path), "--summary",
                 str(summary_path)])
    rows = list(csv.DictReader(rows_path.open()))
    assert code == EXIT_STREAM_BROKEN
    assert rows[-1]["error"].startswith("stream broke")
    assert any(row["track"] for row in rows)
    summary = list(csv.DictReader(summary_path.open()))
    assert len(summary) == 1 and int(summary[0]["frames"]) >= 1


def test_max_seconds_stops_a_stream(stream_url, tmp_path):
    rows_path = tmp_path / "rows.csv"
    assert main(["predict", f"{stream_url}/clip.ts", "--max-seconds", "0.5", "--output",
                 str(rows_path)]) == EXIT_OK
    frames = [int(row["frame"]) for row in csv.DictReader(rows_path.open())]
    assert frames and max(frames) < 40
