"""A client's first request after a pause, against the same request back to back: what idleness costs.

    .venv/bin/python benchmarks/warm_latency/idle_gap.py [--model reranker] [--reps 8]
        [--gaps-ms 0,2,10,50,500] [--keep-warm-ms 0] [--spinners 0] [--out benchmarks/warm_latency/results]

``prewarm serve --cpu-threads 1`` in its own process with one example model, ``tritonclient.http`` in this one
(binary tensors, the primary bucket). For each gap: ``reps`` times, 15 requests back to back (their median),
then a pause of the gap, then one request. ``--keep-warm-ms N``: a third process sends the same request to the
host every N ms throughout, so the host's whole serving path (HTTP, event loop, inference thread) never goes
idle and what is left is the measuring client's own idleness. ``--spinners N``: N busy loops under
``SCHED_IDLE`` run throughout (the CPUs never halt; any other thread preempts them at once), a test of
keeping the cores busy as a spin-wait would. Writes ``idle-gap-cpu[-keep-warm][-spinners].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KEEP_WARM = """
import sys, time, httpx
url, body, length, pause = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], float(sys.argv[4])
with httpx.Client() as client:
    while True:
        try:
            client.post(url, content=body, headers={"Inference-Header-Content-Length": length})
        except httpx.HTTPError:
            pass
        time.sleep(pause)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="reranker")
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--gaps-ms", default="0,2,10,50,500")
    parser.add_argument("--keep-warm-ms", type=float, default=0.0)
    parser.add_argument("--spinners", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    import torch
    import tritonclient.http as triton

    from benchmarks.warm_latency.serving_path import inputs_for, log, served
    from prewarm.fleet import load_fleet
    from warmers.codec import encode_request
    from warmers.sources import EXAMPLE_FLEET
    from warmers.tensors import bucket_combinations, example_inputs

    spec = next(s for s in load_fleet(EXAMPLE_FLEET).models if s.name == args.model)
    spec = spec.model_copy(update={"sla_p99_ms": None, "device": "cpu"})
    background: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "model": spec.name, "keep_warm_ms": args.keep_warm_ms,
        "spinners": args.spinners, "load_average_at_start": os.getloadavg()[0], "gaps": [],
    }
    with served([spec]) as port:
        try:
            if args.keep_warm_ms > 0:
                inputs = example_inputs(spec.warmup, bucket_combinations(spec.warmup)[0],
                                        generator=torch.Generator().manual_seed(7))
                encoded = encode_request(spec, inputs, binary=True)
                background.append(subprocess.Popen([sys.executable, "-c", KEEP_WARM, f"http://127.0.0.1:{port}/v2/models/"
                                                 f"{spec.name}/infer", encoded.body.hex(), str(encoded.header_length),
                                                 str(args.keep_warm_ms / 1000)]))
            for _ in range(args.spinners):
                background.append(subprocess.Popen(["chrt", "-i", "0", sys.executable, "-c", "while True: pass"]))
            client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
            outputs = [triton.InferRequestedOutput(t.name, binary_data=True) for t in spec.warmup.outputs]
            items = inputs_for(spec, True)

            def timed() -> float:
                start = time.perf_counter()
                client.infer(spec.name, items, outputs=outputs)
                return (time.perf_counter() - start) * 1000

            for gap_ms in (float(g) for g in args.gaps_ms.split(",")):
                firsts, medians = [], []
                for _ in range(args.reps):
                    medians.append(statistics.median(timed() for _ in range(15)))
                    time.sleep(gap_ms / 1000)
                    firsts.append(timed())
                first, median = statistics.median(firsts), statistics.median(medians)
                results["gaps"].append({"gap_ms": gap_ms, "first_ms": first, "back_to_back_ms": median,
                                        "ratio": first / median, "load_average": os.getloadavg()[0]})
                log(f"gap {gap_ms:g} ms: first {first:.2f} ms, back to back {median:.2f} ms, ratio {first / median:.2f}")
        finally:
            for process in background:
                process.terminate()
                process.wait(timeout=10)
    results["load_average_at_end"] = os.getloadavg()[0]
    suffix = ("-keep-warm" if args.keep_warm_ms > 0 else "") + ("-spinners" if args.spinners else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"idle-gap-cpu{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
