"""torch intra-op threads for small CPU models: one thread against one per core (torch's own default).

    .venv/bin/python benchmarks/cpu_threads/run.py [--rounds 2] [--requests 100] [--threads 1,N]
        [--out benchmarks/cpu_threads/results]

For each small model of the example fleet (built from ``warmers.zoo``; random weights do the same work), each
thread count and each of the smallest and largest warm-up bucket, a fresh process builds the model and runs it
on a worker thread that takes the thread count when it starts, as a host's inference thread does: the first
request (nothing warmed), then ``requests`` more back to back (p50, p99). ``rounds`` fresh processes per case,
thread counts alternating, so that the machine's load falls on both alike. Writes ``cpu-threads.json`` and
``.md`` with the load average at the start and the end. Bounded: about 5 minutes on a busy 2-core
machine with the defaults (one thread per core is the slow part there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FACTORIES = {
    "chat-small": "chat_small", "embedder": "embedder", "reranker": "reranker", "ocr-longtail": "ocr_longtail",
}

# One case, run in its own process: argv = model, threads, bucket index, requests. Prints one JSON line.
CASE = """
import json, statistics, sys, time
from concurrent.futures import ThreadPoolExecutor
import torch
from prewarm.fleet import load_fleet
from warmers import zoo
from warmers.sources import EXAMPLE_FLEET
from warmers.tensors import bucket_combinations, example_inputs

name, factory, threads, bucket, requests = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
spec = next(s for s in load_fleet(EXAMPLE_FLEET).models if s.name == name)
dims = bucket_combinations(spec.warmup)[bucket]
inputs = example_inputs(spec.warmup, dims, generator=torch.Generator().manual_seed(7))
args = [inputs[t.name] for t in spec.warmup.inputs]
torch.set_num_threads(threads)
model = getattr(zoo, factory)().eval()
pool = ThreadPoolExecutor(1, initializer=lambda: torch.set_num_threads(torch.get_num_threads()))
pool.submit(lambda: None).result()  # the thread exists before the first request, as in the host

def once():
    start = time.perf_counter()
    with torch.inference_mode():
        model(*args)
    return (time.perf_counter() - start) * 1e3

first = pool.submit(once).result()
rest = sorted(pool.submit(once).result() for _ in range(requests))
print(json.dumps({"dims": dims, "first_ms": first, "p50_ms": statistics.median(rest),
                  "p99_ms": rest[min(len(rest) - 1, int(0.99 * len(rest)))]}))
"""


def run_case(name: str, threads: int, bucket: int, requests: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    done = subprocess.run(
        [sys.executable, "-c", CASE, name, FACTORIES[name], str(threads), str(bucket), str(requests)],
        capture_output=True, text=True, env=env, check=True, timeout=300,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}",
        "command": " ".join(["benchmarks/cpu_threads/run.py", *sys.argv[1:]]),
        "load_average_at_start": os.getloadavg()[0], "cases": [],
    }
    for name in FACTORIES:
        for bucket in (0, -1):
            for round_ in range(args.rounds):
                for threads in counts if round_ % 2 == 0 else counts[::-1]:
                    case = run_case(name, threads, bucket, args.requests)
                    results["cases"].append({"model": name, "threads": threads, "bucket": bucket, **case})
                    sys.stderr.write(f"{name} {case['dims']} threads={threads}: {case}\n")
                    save(args.out, results)  # a run cut short keeps what it measured
    results["load_average_at_end"] = os.getloadavg()[0]
    save(args.out, results)
    markdown = render(results, counts)
    (args.out / "cpu-threads.md").write_text(markdown)
    sys.stdout.write(markdown)


def save(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu-threads.json").write_text(json.dumps(results, indent=2) + "\n")


def render(results: dict[str, Any], counts: list[int]) -> str:
    """One row per model and bucket: median over rounds of first request, p50 and p99, per thread count."""
    head = " | ".join(f"{t} thread{'s' if t > 1 else ''}: first / p50 / p99 (ms)" for t in counts)
    lines = [f"| model | bucket | {head} |", "| --- | --- |" + " ---: |" * len(counts)]
    keys = dict.fromkeys((c["model"], c["bucket"]) for c in results["cases"])
    for model, bucket in keys:
        cells = []
        for t in counts:
            runs = [c for c in results["cases"] if (c["model"], c["bucket"], c["threads"]) == (model, bucket, t)]
            med = {k: statistics.median(r[k] for r in runs) for k in ("first_ms", "p50_ms", "p99_ms")}
            cells.append(f"{med['first_ms']:.2f} / {med['p50_ms']:.2f} / {med['p99_ms']:.2f}")
        dims = next(c["dims"] for c in results["cases"] if (c["model"], c["bucket"]) == (model, bucket))
        lines.append(f"| {model} | {', '.join(f'{k}={v}' for k, v in dims.items())} | {' | '.join(cells)} |")
    lines += [
        "",
        f"Medians over {len(results['cases']) // (len(keys) * len(counts))} fresh processes per cell. "
        f"{results['machine']}; {results['date']}; command `{results['command']}`; "
        f"load average {results['load_average_at_start']:.2f} at the start, {results['load_average_at_end']:.2f} "
        "at the end.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    sys.stderr.write(f"done in {time.perf_counter() - started:.0f} s\n")
