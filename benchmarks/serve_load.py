"""Load test of `agegender serve`: concurrent clients against a server on 127.0.0.1, beside the
CLI's images/s on the same photos.

The photos are 640×480 JPEGs with one face each: UTKFace `split == test` crops (200×200),
resized to 160–260 px and pasted at a random place onto a textured background
(`agegender.evaluation.scenes.background`), made in a temporary folder and deleted after.

- server: `agegender serve` (default settings plus `--server-arg`s) in a subprocess; `--clients`
  asyncio clients (httpx) each send one photo at a time as the raw body of `POST /v1/predict`
  for `--seconds` (after `--warmup` s not counted); throughput, latency percentiles and errors
  (any answer other than 200 with one face, or no answer) are reported;
- CLI: `agegender predict FOLDER --output rows.csv` on the same photos, while the server is
  stopped; its rate is (N − 1) / (time for N photos − time for 1 photo), so model loading and
  start-up do not count against it.

Server and CLI runs alternate (`--rounds`, 2) so a busy machine slows both alike; the best of
each is compared, by rate and by CPU time per image (the server process's CPU time over the
measured window per request, the CLI's per photo with start-up taken out), which a busy machine
inflates far less than wall time.

Run it from the repo root, as a module of the `benchmarks` package:

    python -m benchmarks.serve_load [--data ../shared/data/utkface/UTKFace.tar.gz] \
        [--photos 200] [--clients 8] [--seconds 30] [--rounds 2] [--server-arg=ARG ...] \
        [--baseline-arg=ARG ...] [--json FILE]

`--baseline-arg` adds a second server with other arguments (such as `--precision fp32`), run
right after the first in each round, so the two are compared on the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import argument_parser, make_photos, read_split_faces, write_json


def start_server(port: int, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "agegender.cli.main", "serve", "--port", str(port), *extra]
    # The server's log goes to a file: a pipe nobody reads while it serves would fill and
    # block it.
    log = tempfile.TemporaryFile()  # noqa: SIM115 (open while the server runs)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}/readyz"
    for _ in range(1200):
        try:
            if httpx.get(url).status_code == 200:
                return process
        except httpx.TransportError:
            if process.poll() is not None:
                log.seek(0)
                sys.exit(f"the server stopped: {log.read().decode(errors='replace')}")
        time.sleep(0.1)
    process.terminate()
    sys.exit("the server was not ready within 120 s")


async def _client(client: httpx.AsyncClient, photos: list[bytes], offset: int, warm_until: float,
                  stop_at: float, latencies: list[float], errors: list[str]) -> None:
    number = offset
    while (started := time.perf_counter()) < stop_at:
        photo = photos[number % len(photos)]
        number += 1
        try:
            response = await client.post("/v1/predict", content=photo)
            problem = (None if response.status_code == 200
                       and len(response.json()["faces"]) == 1
                       else f"{response.status_code}: {response.text[:200]}")
        except httpx.HTTPError as error:
            problem = f"{type(error).__name__}: {error}"
        if started < warm_until:
            continue
        if problem is None:
            latencies.append(time.perf_counter() - started)
        else:
            errors.append(problem)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port: int, server_pid: int, photos: list[bytes], clients: int, seconds: float,
               warmup: float) -> dict:
    """Throughput, latency and errors of `clients` clients, and the server's CPU time per
    request (which a busy machine inflates far less than wall time)."""
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=60) as client:
        begin = time.perf_counter()
        warm_until, stop_at = begin + warmup, begin + warmup + seconds

        async def cpu_when_warm() -> float:
            await asyncio.sleep(warmup)
            return process_cpu_s(server_pid)

        cpu_start = asyncio.create_task(cpu_when_warm())
        await asyncio.gather(*(_client(client, photos, index * 7, warm_until, stop_at,
                                       latencies, errors) for index in range(clients)))
        measured = time.perf_counter() - warm_until
        cpu_s = process_cpu_s(server_pid) - await cpu_start
        metrics = (await client.get("/metrics")).text
    percentiles = (np.percentile(latencies, [50, 95, 99]) * 1000 if latencies
                   else [float("nan")] * 3)
    return {"clients": clients, "seconds": measured, "requests": len(latencies) + len(errors),
            "requests_per_s": (len(latencies) + len(errors)) / measured,
            "p50_ms": float(percentiles[0]), "p95_ms": float(percentiles[1]),
            "p99_ms": float(percentiles[2]), "errors": len(errors), "error_samples": errors[:5],
            "cpu_ms_per_request": cpu_s * 1000 / max(1, len(latencies) + len(errors)),
            "mean_faces_per_model_call": _mean_batch(metrics)}


def _mean_batch(metrics: str) -> float | None:
    """Faces per model call from the server's own histogram (shows the micro-batching)."""
    values = {}
    for line in metrics.splitlines():
        for name in ("agegender_model_batch_faces_sum", "agegender_model_batch_faces_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("agegender_model_batch_faces_count")
    return values["agegender_model_batch_faces_sum"] / count if count else None


def cli_rate(folder: Path, work: Path) -> dict:
    """The CLI's images/s on the folder, start-up taken out (see the module's docstring)."""
    def timed(target: Path) -> tuple[float, float]:
        """Wall and CPU seconds of one run."""
        cpu_before = _children_cpu_s()
        started = time.perf_counter()
        subprocess.run(["agegender", "predict", str(target), "--output", str(work / "rows.csv")],
                       check=True, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started, _children_cpu_s() - cpu_before

    photos = sorted(folder.iterdir())
    one, one_cpu = min(timed(photos[0]) for _ in range(2))
    everything, everything_cpu = timed(folder)
    return {"photos": len(photos), "seconds_all": everything, "seconds_one": one,
            "images_per_s": (len(photos) - 1) / (everything - one),
            "images_per_s_with_startup": len(photos) / everything,
            "cpu_ms_per_image": (everything_cpu - one_cpu) * 1000 / (len(photos) - 1)}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--data", type=Path,
                        default=Path("../shared/data/utkface/UTKFace.tar.gz"))
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2,
                        help="server and CLI runs, alternating; the best of each is compared")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="passed to `agegender serve` (repeat: --server-arg=--workers "
                             "--server-arg=3)")
    parser.add_argument("--baseline-arg", action="append", default=None, metavar="ARG",
                        help="also run a baseline server with these arguments instead of "
                             "--server-arg (e.g. --baseline-arg=--precision "
                             "--baseline-arg=fp32), alternating with the other in each round")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI's rate")
    parser.add_argument("--json", type=Path)
    return parser


def serve_round(photos: list[bytes], args: argparse.Namespace, server_args: list[str]) -> dict:
    port = _free_port()
    server = start_server(port, server_args)
    try:
        return asyncio.run(load(port, server.pid, photos, args.clients, args.seconds,
                                args.warmup))
    finally:
        server.terminate()
        server.wait(30)


def cli_round(photos: list[bytes]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="agegender-serve-load-"))
    try:
        folder = work / "photos"
        folder.mkdir()
        for number, photo in enumerate(photos):
            (folder / f"photo_{number:04d}.jpg").write_bytes(photo)
        return cli_rate(folder, work)
    finally:
        shutil.rmtree(work)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    crops, _ = read_split_faces(args.data, limit=args.photos, seed=args.seed)
    photos = make_photos(crops, args.seed)
    rounds = []
    for number in range(args.rounds):  # alternating, so a busy machine slows both alike
        rounds.append({"server": serve_round(photos, args, args.server_arg)})
        if args.baseline_arg is not None:
            rounds[-1]["baseline"] = serve_round(photos, args, args.baseline_arg)
        for name in ("server", "baseline")[:len(rounds[-1])]:
            served = rounds[-1][name]
            print(f"round {number + 1}: {name} {served['requests_per_s']:.1f} requests/s with "
                  f"{args.clients} clients for {served['seconds']:.0f} s; p50 "
                  f"{served['p50_ms']:.0f} ms, p95 {served['p95_ms']:.0f} ms, p99 "
                  f"{served['p99_ms']:.0f} ms; {served['errors']} errors; "
                  f"{served['cpu_ms_per_request']:.1f} CPU-ms per request; "
                  f"{served['mean_faces_per_model_call'] or 0:.1f} faces per model call")
        if not args.no_cli:
            rounds[-1]["cli"] = cli = cli_round(photos)
            print(f"round {number + 1}: CLI {cli['images_per_s']:.1f} images/s on the same "
                  f"{len(photos)} photos (start-up taken out; "
                  f"{cli['images_per_s_with_startup']:.1f} with it); "
                  f"{cli['cpu_ms_per_image']:.1f} CPU-ms per image")
    results = {"rounds": rounds,
               "server": max((r["server"] for r in rounds), key=lambda r: r["requests_per_s"])}
    if args.baseline_arg is not None:
        results["baseline"] = max((r["baseline"] for r in rounds),
                                  key=lambda r: r["requests_per_s"])
        results["server_to_baseline"] = (results["server"]["requests_per_s"]
                                         / results["baseline"]["requests_per_s"])
        print(f"best of {args.rounds}: server/baseline = {results['server_to_baseline']:.2f} "
              "by rate")
    if not args.no_cli:
        results["cli"] = max((r["cli"] for r in rounds), key=lambda r: r["images_per_s"])
        results["server_to_cli"] = (results["server"]["requests_per_s"]
                                    / results["cli"]["images_per_s"])
        results["server_to_cli_by_cpu"] = (results["cli"]["cpu_ms_per_image"]
                                           / results["server"]["cpu_ms_per_request"])
        print(f"best of {args.rounds}: server/CLI = {results['server_to_cli']:.2f} by rate, "
              f"{results['server_to_cli_by_cpu']:.2f} by CPU time per image")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
