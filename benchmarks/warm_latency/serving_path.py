"""Warm latency through the serving path, from a real client: tritonclient against ``prewarm serve``.

    .venv/bin/python benchmarks/warm_latency/serving_path.py [--rounds 5] [--next 30] [--cpu-threads 1]
        [--loopback-warmup N] [--out benchmarks/warm_latency/results] [--name serving-path-cpu]

For each of the three small example models (chat-small, embedder, reranker) and each tensor form (binary,
as tritonclient sends by default, and JSON): ``rounds`` times unload + load the model through the repository
API, then send the first request at once and ``next`` more back to back, all with the primary bucket's shapes
(inside the warm-up buckets). The figure is first / median(next): the goal is <= 1.3 after every reload on
CPU. Then as many rounds again that read the host's statistics around the first request and after the next
ones: the host's own serving-path time (decode, model, encode on the model's inference thread), which leaves
out HTTP and the client. The host runs in its own process; the client is this process. Writes
``serving-path-cpu.json`` and ``.md`` (``--name``), with the load average at the start, the end and after
every round. ``--loopback-warmup`` sets the host's ``PREWARM_HOST__LOOPBACK_WARMUP`` (default: the host's
own default), the requests a load sends through the host's listener before it answers.
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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["chat-small", "embedder", "reranker"]
GOAL = 1.3


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def inputs_for(spec: Any, binary: bool) -> list[Any]:
    """tritonclient inputs of the spec's primary bucket (seeded)."""
    import numpy as np
    import torch
    import tritonclient.http as triton

    from warmers.tensors import bucket_combinations, example_inputs

    values = example_inputs(spec.warmup, bucket_combinations(spec.warmup)[0], generator=torch.Generator().manual_seed(7))
    items = []
    for tensor in spec.warmup.inputs:
        array = np.ascontiguousarray(values[tensor.name].numpy())
        item = triton.InferInput(tensor.name, list(array.shape), tensor.datatype)
        item.set_data_from_numpy(array, binary_data=binary)
        items.append(item)
    return items


def timed(client: Any, name: str, inputs: list[Any], outputs: list[Any]) -> float:
    start = time.perf_counter()
    client.infer(name, inputs, outputs=outputs)
    return (time.perf_counter() - start) * 1000


def host_totals(name: str, port: int) -> tuple[int, int]:
    """The host's count of successful requests of ``name`` and their summed serving-path ns (its statistics)."""
    import httpx

    stats = httpx.get(f"http://127.0.0.1:{port}/v2/models/{name}/stats", timeout=10).json()["model_stats"][0]
    phases = stats["inference_stats"]
    ns = sum(phases[p]["ns"] for p in ("queue", "compute_input", "compute_infer", "compute_output"))
    return phases["success"]["count"], ns


def measure(client: Any, spec: Any, *, binary: bool, rounds: int, following: int) -> list[dict[str, float]]:
    import tritonclient.http as triton

    outputs = [triton.InferRequestedOutput(t.name, binary_data=binary) for t in spec.warmup.outputs]
    inputs = inputs_for(spec, binary)
    runs = []
    for round_ in range(rounds):
        client.unload_model(spec.name)
        client.load_model(spec.name)
        first = timed(client, spec.name, inputs, outputs)
        rest = [timed(client, spec.name, inputs, outputs) for _ in range(following)]
        median = statistics.median(rest)
        runs.append({"first_ms": first, "next_median_ms": median, "ratio": first / median,
                     "load_average": os.getloadavg()[0]})
        log(f"{spec.name} {'binary' if binary else 'json'} round {round_ + 1}: first {first:.2f} ms, "
            f"median of next {following} {median:.2f} ms, ratio {first / median:.2f}")
    return runs


def host_first(client: Any, spec: Any, *, binary: bool, rounds: int, following: int, port: int) -> list[dict[str, float]]:
    """The host's serving-path time of the first request after each reload and the mean of the next ones.

    Separate rounds from :func:`measure`, since reading the statistics between requests adds calls of its own.
    """
    import tritonclient.http as triton

    outputs = [triton.InferRequestedOutput(t.name, binary_data=binary) for t in spec.warmup.outputs]
    inputs = inputs_for(spec, binary)
    runs = []
    for _ in range(rounds):
        client.unload_model(spec.name)
        client.load_model(spec.name)
        before = host_totals(spec.name, port)
        client.infer(spec.name, inputs, outputs=outputs)
        middle = host_totals(spec.name, port)
        for _ in range(following):
            client.infer(spec.name, inputs, outputs=outputs)
        after = host_totals(spec.name, port)
        first = (middle[1] - before[1]) / 1e6
        rest = (after[1] - middle[1]) / 1e6 / max(after[0] - middle[0], 1)
        runs.append({"host_first_ms": first, "host_next_mean_ms": rest, "ratio": first / rest})
    return runs


@contextmanager
def served(specs: list[Any], *, cpu_threads: int = 1, env: dict[str, str] | None = None) -> Iterator[int]:
    """A ``prewarm serve`` process for ``specs`` in a throwaway home, on a free port; yields the port once ready."""
    import httpx
    import yaml

    from tests.conftest import free_port

    with tempfile.TemporaryDirectory(prefix="serving-path-") as tmp:
        fleet = Path(tmp) / "fleet.yaml"
        fleet.write_text(yaml.safe_dump({"models": [spec.model_dump(mode="json") for spec in specs]}, sort_keys=False))
        port = free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}
        environment.update(PREWARM_HOME=str(Path(tmp) / "home"), PREWARM_HOST__DEVICE="cpu", PYTHONPATH=str(ROOT))
        environment.update(env or {})
        command = [str(Path(sys.executable).parent / "prewarm"), "serve", "--port", str(port), "--fleet", str(fleet),
                   "--cpu-threads", str(cpu_threads)]
        server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(1200):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            yield port
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--next", type=int, default=30, dest="following")
    parser.add_argument("--cpu-threads", type=int, default=1)
    parser.add_argument("--loopback-warmup", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--name", default="serving-path-cpu")
    args = parser.parse_args()
    import tritonclient.http as triton

    from prewarm.fleet import load_fleet
    from warmers.sources import EXAMPLE_FLEET

    specs = {s.name: s.model_copy(update={"sla_p99_ms": None, "device": "cpu"}) for s in load_fleet(EXAMPLE_FLEET).models}
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()}-core {platform.machine()}, "
        f"Python {platform.python_version()}", "load_average_at_start": os.getloadavg()[0],
        "command": " ".join(["benchmarks/warm_latency/serving_path.py", *sys.argv[1:]]), "goal": GOAL, "models": {},
        "loopback_warmup": args.loopback_warmup,
    }
    extra = {} if args.loopback_warmup is None else {"PREWARM_HOST__LOOPBACK_WARMUP": str(args.loopback_warmup)}
    with served([specs[n] for n in MODELS], cpu_threads=args.cpu_threads, env=extra) as port:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
        for name in MODELS:
            results["models"][name] = {}
            for binary in (True, False):
                kwargs = {"binary": binary, "rounds": args.rounds, "following": args.following}
                runs = measure(client, specs[name], **kwargs)
                host = host_first(client, specs[name], port=port, **kwargs)
                results["models"][name]["binary" if binary else "json"] = {
                    "runs": runs, "max_ratio": max(r["ratio"] for r in runs),
                    "median_ratio": statistics.median(r["ratio"] for r in runs),
                    "host_runs": host, "host_median_ratio": statistics.median(r["ratio"] for r in host),
                    "host_max_ratio": max(r["ratio"] for r in host),
                }
    results["load_average_at_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = render(results)
    (args.out / f"{args.name}.md").write_text(markdown)
    sys.stdout.write(markdown)


def render(results: dict[str, Any]) -> str:
    rounds = len(next(iter(results["models"].values()))["binary"]["runs"])
    lines = [
        f"| model | tensors | first request after reload (ms, median of {rounds}) | median of next (ms) "
        "| first / median, median reload | first / median, worst reload | goal <= 1.3 after every reload "
        "| on the host: first / mean of next, median (worst) reload |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, forms in results["models"].items():
        for form, r in forms.items():
            first = statistics.median(x["first_ms"] for x in r["runs"])
            rest = statistics.median(x["next_median_ms"] for x in r["runs"])
            met = "met" if r["max_ratio"] <= results["goal"] else "**not met**"
            lines.append(
                f"| {name} | {form} | {first:.2f} | {rest:.2f} | {r['median_ratio']:.2f} | {r['max_ratio']:.2f} | {met} "
                f"| {r['host_median_ratio']:.2f} ({r['host_max_ratio']:.2f}) |"
            )
    loads = [x["load_average"] for forms in results["models"].values() for r in forms.values() for x in r["runs"]]
    lines.append("")
    lines.append(
        f"Load average (1 min): {results['load_average_at_start']:.2f} at the start, {results['load_average_at_end']:.2f} "
        f"at the end, {statistics.median(loads):.2f} median over the rounds ({min(loads):.2f}-{max(loads):.2f})."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
