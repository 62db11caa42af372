"""Host throughput with and without the bearer token, measured side by side.

    .venv/bin/python benchmarks/host_throughput/run.py [--rounds 6] [--requests 400] [--clients 4]
        [--out benchmarks/host_throughput/results]

Two ``prewarm serve`` processes serve the example reranker (``--cpu-threads 1``), one with
``PREWARM_HOST__TOKEN`` set and one without. Rounds alternate between them (A B B A ...), each round sending
``requests`` JSON inference requests (batch 1) from ``clients`` keep-alive connections in threads. Figures:
requests per second (median over rounds), and the server process's CPU time per request (user + system, from
/proc), which other processes competing for the cores disturb far less than wall-clock throughput. Goal:
token / no token within 5 %.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "benchmark-token-0123456789abcdef"
GOAL = 0.05


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def start(fleet: Path, home: Path, token: str | None) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    from tests.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}
    env.update(PREWARM_HOME=str(home), PREWARM_HOST__DEVICE="cpu", PYTHONPATH=str(ROOT))
    if token:
        env["PREWARM_HOST__TOKEN"] = token
    command = [str(Path(sys.executable).parent / "prewarm"), "serve", "--port", str(port), "--fleet", str(fleet),
               "--cpu-threads", "1"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"the host on {url} did not become ready")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_rps(url: str, token: str | None, *, requests: int, clients: int, body: bytes) -> float:
    import httpx

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    per_client = requests // clients

    def work() -> None:
        with httpx.Client(headers=headers, timeout=30) as client:
            for _ in range(per_client):
                response = client.post(f"{url}/v2/models/reranker/infer", content=body)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")

    start_time = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(work) for _ in range(clients)]:
            future.result()
    return per_client * clients / (time.perf_counter() - start_time)


def middleware_cost_us(iterations: int = 200_000) -> dict[str, float]:
    """Microseconds the token check adds to one request: ``TokenAuth`` around a do-nothing ASGI app, in process.

    Contention from other processes inflates both timings alike, so the difference is a steady figure of
    what the check itself costs, to set against the server's CPU time per request.
    """
    import asyncio

    from warmers.host import TokenAuth
    from warmers.metrics import HostMetrics

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        return None

    guarded = TokenAuth(inner, token=TOKEN, metrics=HostMetrics())
    scope = {"type": "http", "path": "/v2/models/reranker/infer",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {TOKEN}".encode())]}

    async def run(app: Any) -> float:
        start = time.perf_counter()
        for _ in range(iterations):
            await app(scope, None, None)
        return (time.perf_counter() - start) / iterations * 1e6

    plain = min(asyncio.run(run(inner)) for _ in range(3))
    checked = min(asyncio.run(run(guarded)) for _ in range(3))
    return {"plain_us": plain, "with_token_us": checked, "added_us": checked - plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    import yaml

    from prewarm.fleet import load_fleet
    from warmers.sources import EXAMPLE_FLEET

    spec = next(s for s in load_fleet(EXAMPLE_FLEET).models if s.name == "reranker")
    spec = spec.model_copy(update={"sla_p99_ms": None, "device": "cpu"})
    body = json.dumps({"inputs": [
        {"name": n, "shape": [1, 64], "datatype": "FP32", "data": [0.125] * 64} for n in ("query", "document")
    ]}).encode()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}",
        "command": " ".join(["benchmarks/host_throughput/run.py", *sys.argv[1:]]),
        "load_average_at_start": os.getloadavg()[0], "clients": args.clients, "requests_per_round": args.requests,
    }
    rps: dict[str, list[float]] = {"no_token": [], "token": []}
    cpu_ms: dict[str, list[float]] = {"no_token": [], "token": []}
    with tempfile.TemporaryDirectory(prefix="host-throughput-") as tmp:
        fleet = Path(tmp) / "fleet.yaml"
        fleet.write_text(yaml.safe_dump({"models": [spec.model_dump(mode="json")]}, sort_keys=False))
        servers = {"no_token": start(fleet, Path(tmp) / "home-a", None), "token": start(fleet, Path(tmp) / "home-b", TOKEN)}
        try:
            for label, (_, url) in servers.items():  # one unmeasured round each: connections, caches
                round_rps(url, TOKEN if label == "token" else None, requests=args.requests // 4, clients=args.clients, body=body)
            for index in range(args.rounds):
                order = ["no_token", "token"] if index % 2 == 0 else ["token", "no_token"]
                for label in order:
                    server, url = servers[label]
                    before = cpu_seconds(server.pid)
                    value = round_rps(url, TOKEN if label == "token" else None, requests=args.requests,
                                      clients=args.clients, body=body)
                    per_request = (cpu_seconds(server.pid) - before) * 1000 / args.requests
                    rps[label].append(value)
                    cpu_ms[label].append(per_request)
                    log(f"round {index + 1} {label}: {value:.0f} requests/s, server CPU {per_request:.3f} ms/request")
        finally:
            for server, _ in servers.values():
                server.terminate()
                server.wait(timeout=30)
    results["rps"] = rps
    results["server_cpu_ms_per_request"] = cpu_ms
    results["median_rps"] = {k: statistics.median(v) for k, v in rps.items()}
    results["median_cpu_ms"] = {k: statistics.median(v) for k, v in cpu_ms.items()}
    results["ratio_token_to_no_token"] = results["median_rps"]["token"] / results["median_rps"]["no_token"]
    results["cpu_ratio_token_to_no_token"] = results["median_cpu_ms"]["token"] / results["median_cpu_ms"]["no_token"]
    results["load_average_at_end"] = os.getloadavg()[0]
    results["middleware"] = middleware_cost_us()
    ratio, cpu_ratio = results["ratio_token_to_no_token"], results["cpu_ratio_token_to_no_token"]

    def met(value: float) -> str:
        return "met" if abs(1 - value) <= GOAL else "**not met**"

    markdown = (
        "| host | requests/s (median) | server CPU ms per request (median) | requests/s by round |\n"
        "| --- | ---: | ---: | --- |\n"
        + "".join(
            f"| {label.replace('_', ' ')} | {results['median_rps'][label]:.0f} | {results['median_cpu_ms'][label]:.3f} | "
            f"{', '.join(f'{v:.0f}' for v in rps[label])} |\n" for label in ("no_token", "token")
        )
        + f"\ntoken / no token: throughput {ratio:.3f} ({met(ratio)}), server CPU per request {cpu_ratio:.3f} "
        f"({met(cpu_ratio)}); goal within 5 %. Load average {results['load_average_at_start']:.2f} at start, "
        f"{results['load_average_at_end']:.2f} at end.\n"
        f"\nThe token check alone, in process: {results['middleware']['added_us']:.2f} µs per request "
        f"({results['middleware']['added_us'] / 1000 / results['median_cpu_ms']['no_token'] * 100:.3f} % of the "
        "server CPU time per request without the token).\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown)
    sys.stdout.write(markdown)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
