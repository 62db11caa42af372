"""Start-up and first-warm times of the interop servers (MLServer 1.7, KServe 0.16) on this machine.

    scripts/ensure_interop.sh && .venv/bin/python benchmarks/interop/startup.py [--runs 5]

Each run starts a fresh server process from ``.venv-interop`` on loopback (the same servers as the interop
tests) and measures: process start to ``/v2/health/live`` answering 200, the first repository load of a
model, and a whole ``V2Target.warm`` of it (load, metadata check, cold request, warm-up, probes) on a second
model. Prints a markdown table (medians, min-max) and writes results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.interop.conftest import foreign_spec  # noqa: E402
from warmers.targets import V2Client, V2Target  # noqa: E402

PYTHON = ROOT / ".venv-interop" / "bin" / "python"
SERVERS = ROOT / "tests" / "interop" / "servers"
RESULTS = Path(__file__).parent / "results" / "startup.json"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(command: list[str], *, port: int, cwd: Path) -> Iterator[tuple[str, float]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    url = f"http://127.0.0.1:{port}"
    with (cwd / "server.log").open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[1]} exited with {process.returncode}; see {cwd / 'server.log'}")
                try:
                    if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
            yield url, time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=30)


def _mlserver(folder: Path) -> tuple[list[str], int, list[str]]:
    port = _port()
    subprocess.run([str(PYTHON), str(SERVERS / "sklearn_repository.py"), str(folder), str(port), str(_port())],
                   check=True)
    return [str(PYTHON.parent / "mlserver"), "start", str(folder)], port, ["classifier-v", "classifier"]


def _kserve(folder: Path) -> tuple[list[str], int, list[str]]:
    port = _port()
    return [str(PYTHON), str(SERVERS / "kserve_scaler.py"), "--port", str(port)], port, ["tripler", "doubler"]


def measure(name: str, setup: Callable[[Path], tuple[list[str], int, list[str]]], runs: int) -> dict[str, object]:
    """``runs`` fresh starts of one server: live, first load, and a whole warm run."""
    samples: dict[str, list[float]] = {"live_s": [], "first_load_s": [], "warm_s": []}
    for run in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            command, port, (loaded, warmed) = setup(Path(tmp))
            with _server(command, port=port, cwd=Path(tmp)) as (url, live_s):
                start = time.perf_counter()
                V2Client(url).load(loaded)
                first_load_s = time.perf_counter() - start
                report = V2Target(url).warm(foreign_spec(warmed))
                if not report.ready:
                    raise RuntimeError(f"{name}: {warmed} not ready: {report.reason}")
        samples["live_s"].append(live_s)
        samples["first_load_s"].append(first_load_s)
        samples["warm_s"].append(report.time_to_ready_s or 0.0)
        print(f"{name} run {run + 1}/{runs}: live {live_s:.2f} s, first load {first_load_s:.2f} s, "
              f"warm {samples['warm_s'][-1]:.2f} s", file=sys.stderr)
    return {"server": name, "runs": runs, "samples": samples}


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not PYTHON.exists():
        sys.exit(f"{PYTHON} is missing: run scripts/ensure_interop.sh first")
    results = [measure("MLServer 1.7.1 (sklearn, parallel_workers 1)", _mlserver, args.runs),
               measure("KServe 0.16.0 ModelServer (custom model)", _kserve, args.runs)]
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2))
    print("| server | to live, s | first load, s | V2Target.warm, s |")
    print("| --- | ---: | ---: | ---: |")
    for result in results:
        samples = result["samples"]
        assert isinstance(samples, dict)
        print(f"| {result['server']} | {_cell(samples['live_s'])} | {_cell(samples['first_load_s'])} "
              f"| {_cell(samples['warm_s'])} |")
    print(f"\n{document['machine']}; {document['date']}; median (min-max) of {args.runs} fresh starts")


if __name__ == "__main__":
    main()
