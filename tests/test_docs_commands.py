"""Every shell block of the docs marked `<!-- runnable -->` runs, on tiny inputs, and does what
the page says (docs/contributing.md, "Commands in these pages are tested").

The blocks of a page run in order in one fresh folder where `examples/`, `src/` and `tools/`
of the checkout are at hand. The test adds the flags in `QUICK` and makes the replacements in
`SUBSTITUTIONS`, nothing else; `pip install` lines are checked (their extras exist), not run.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LINKED = ("examples", "src", "tools")
"""What a page's commands may use from the checkout (they run from its root)."""

BLOCK = re.compile(r"^<!-- runnable(?::\s*(?P<kind>[\w-]+))? -->\n```bash\n(?P<text>.*?)^```$",
                   re.M | re.S)

QUICK = {
    "agegender train": "--epochs 1 --limit 300 --batch-size 16",
    "agegender evaluate": "--limit 300",
    "agegender serve": "--port {port}",
}
"""Flags added to the end of each command that starts so (a run of seconds, a free port)."""

SUBSTITUTIONS = {
    "../shared/data/utkface/UTKFace.tar.gz": "{archive}",
    "../shared/data/utkface": "{utkface}",
    "my_photos 400": "my_photos 40",  # the tutorial's folder: 40 + 5 + 10 photos
    "127.0.0.1:8000": "127.0.0.1:{port}",
}
"""Replacements in the blocks' text, in this order."""

EXPECTED = {
    "install.md": ["bundled model agegender_mobilenet_v2.onnx sha256:",
                   "astronaut_face.jpg,,,0,"],
    "predict.md": ["astronaut_face.jpg,,,0,"],
    "serve.md": ['"faces":[{"face":0,"box"'],
    "train.md": ["test split, ", "seed.onnx", "astronaut_face.jpg,,,0,"],
    "explain.md": ["astronaut_face_face0.png"],
    "tutorial.md": ["images usable, 0 entries skipped, 0 unreadable", "my_model.onnx",
                    "compare.html", '"faces":[{"face":0,"box"'],
}
"""What each page's output must show: the commands did their work, not only exit 0."""


@dataclass
class Block:
    page: str
    line: int
    background: bool
    text: str


EXAMPLE = re.compile(r"^````.*?^````$", re.M | re.S)
"""A four-backtick fence shows markdown as an example (docs/contributing.md): never run."""


def runnable_blocks(page: Path) -> list[Block]:
    markdown = EXAMPLE.sub(lambda example: "\n" * example[0].count("\n"), page.read_text())
    blocks = []
    for match in BLOCK.finditer(markdown):
        kind = match["kind"]
        if kind not in (None, "background"):
            raise ValueError(f"{page.name}: unknown runnable kind {kind!r}")
        blocks.append(Block(page.name, markdown.count("\n", 0, match.start()) + 1,
                            kind == "background", match["text"]))
    return blocks


PAGES = sorted(page for page in DOCS.rglob("*.md") if runnable_blocks(page))


def test_the_pages_that_must_have_runnable_blocks_have_them():
    """install check, predict, evaluate (300 images), export, explain, serve, the tutorial."""
    assert {page.name for page in PAGES} == set(EXPECTED)
    text = "\n".join(block.text for page in PAGES for block in runnable_blocks(page))
    for command in ("agegender --version", "agegender predict", "agegender evaluate",
                    "agegender export", "agegender explain", "agegender serve",
                    "agegender train --preset finetune-bundled", "agegender compare",
                    "agegender check-data"):
        assert command in text, command


def prepared(block: Block, values: dict[str, str]) -> str:
    """The block as the test runs it: substitutions made, quick flags added, pip checked."""
    text = block.text
    for old, new in SUBSTITUTIONS.items():
        if old in text:
            text = text.replace(old, new.format(**values))
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("pip install "):
            _check_extras(line, block)
            lines[index] = "true  # " + line
            continue
        flags = next((flags for start, flags in QUICK.items()
                      if line.startswith(start + " ") or line == start), None)
        if flags is not None:
            end = index
            while lines[end].endswith("\\"):
                end += 1
            command, hash_, comment = lines[end].partition(" #")
            lines[end] = f"{command.rstrip()} {flags.format(**values)}" + (
                f"  #{comment}" if hash_ else "")
    return "\n".join(lines) + "\n"


def _check_extras(line: str, block: Block) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for named in re.findall(r"\.\[([\w,-]+)\]", line):
        unknown = set(named.split(",")) - set(extras)
        assert not unknown, f"{block.page}:{block.line}: no extra {unknown} in pyproject.toml"


def _folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder with the checkout's files and a bin/ that runs this Python."""
    work = tmp_path / "work"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, argv in (("agegender", "-m agegender"), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {argv} "$@"\n')
        shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                       os.environ.get("PYTHONPATH")]))}
    return work, env


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def _wait_ready(server: subprocess.Popen, port: str, block: Block) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"{block.page}:{block.line}: the server stopped: "
                        f"{server.stderr.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{block.page}:{block.line}: the server was not ready within 180 s")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_the_runnable_blocks_of_a_page_run(page: Path, tmp_path: Path, request):
    blocks = runnable_blocks(page)
    values = {"port": _free_port()}
    if any("../shared" in block.text for block in blocks):
        archive = request.getfixturevalue("archive")
        values |= {"archive": str(archive), "utkface": str(archive.parent)}
    work, env = _folder(tmp_path)
    servers, output = [], []
    try:
        for block in blocks:
            script = prepared(block, values)
            command = ["bash", "-euo", "pipefail", "-c", script]
            if block.background:
                server = subprocess.Popen(command, cwd=work, env=env, text=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          start_new_session=True)
                servers.append(server)
                _wait_ready(server, values["port"], block)
                continue
            done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                                  timeout=900)
            assert done.returncode == 0, (
                f"{block.page}:{block.line}: exit status {done.returncode}\n{script}\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            output.append(done.stdout)
    finally:
        for server in servers:
            _stop(server)
    printed = "\n".join(output)
    for expected in EXPECTED[page.name]:
        assert expected in printed, f"{page.name}: the output does not show {expected!r}"
