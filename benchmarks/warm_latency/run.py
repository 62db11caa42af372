"""Warm-latency benchmark: what the first request costs cold, and what warming buys.

    .venv/bin/python benchmarks/warm_latency/run.py [--reps 3] [--compile-reps 1] [--skip-compile]
        [--out benchmarks/warm_latency/results]

CPU part (always): the example fleet's small models. For each: the first request in a cold process (import
torch, build, weights, first answer), the first request of a cold model in a running host (another model
already served), the warmed first request and the steady p50/p99 (in process and over HTTP from a V2
client), time-to-ready by stage, and ``torch.compile`` time cold vs with the compile cache (fresh process
and fresh inductor cache each time, so a hit comes only from the restored artifacts).
GPU part (when CUDA is present): the same for a GPT-2-medium-shaped model (355M parameters, fp16 safetensors
built from code with seeded weights), plus host-to-device copy bandwidth from pinned and pageable memory.
Every probe runs in a child process (``probes.py``). Writes ``results-<device>.json``, ``.md`` and a PNG.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
PROBES = Path(__file__).resolve().parent / "probes.py"
CPU_MODELS = ["chat-small", "embedder", "reranker", "ocr-longtail"]
COLD_PROCESS_MODELS = ["chat-small", "embedder"]  # one torch_export, one safetensors + factory
GOAL_WARM_RATIO = {"cpu": 1.3, "cuda": 1.1}
GOAL_COMPILE_HIT = 0.25


def log(message: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def median(values: list[float]) -> float:
    return float(statistics.median(values))


class Children:
    """Runs probes in child processes with their own PREWARM_HOME and inductor cache."""

    def __init__(self, workdir: Path, cpu_threads: int | None) -> None:
        self.workdir = workdir
        self.cpu_threads = cpu_threads
        self.count = 0

    def run(self, role: str, *args: str, home: Path | None = None, inductor: Path | None = None) -> tuple[Any, float]:
        """Run one probe; returns its JSON result and the wall seconds from spawn to the result line."""
        self.count += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}
        env["PREWARM_HOME"] = str(home or self.workdir / "home")
        # The language model's weights are built into the work folder: an allowed source beside the examples.
        env["PREWARM_ARTIFACT_SOURCES"] = f"{ROOT / 'examples' / 'artifacts'},{self.workdir}"
        env["TORCHINDUCTOR_CACHE_DIR"] = str(inductor or self.workdir / f"inductor-{self.count}")
        env["PYTHONPATH"] = str(ROOT)
        if self.cpu_threads:
            env["OMP_NUM_THREADS"] = str(self.cpu_threads)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(PROBES), role, *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        result, wall = None, 0.0
        for line in proc.stdout:
            if line.startswith("RESULT "):
                wall = time.perf_counter() - start
                result = json.loads(line[len("RESULT "):])
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.wait() != 0 or result is None:
            raise RuntimeError(f"probe {role} {args} failed:\n{stderr[-3000:]}")
        return result, wall


def write_spec(spec: Any, path: Path) -> str:
    path.write_text(spec.model_dump_json())
    return str(path)


def bench_cold_process(children: Children, specs: dict[str, Any], names: list[str], reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        spec_file = write_spec(specs[name], children.workdir / f"{name}.json")
        children.run("cold-process", spec_file)  # fill the artifact cache: the cold process reads from it
        runs = []
        for rep in range(reps):
            result, wall = children.run("cold-process", spec_file)
            result["spawn_to_answer_s"] = wall
            runs.append(result)
            log(f"cold process {name} #{rep + 1}: first answer after {wall:.2f} s")
        out[name] = {key: median([r[key] for r in runs]) for key in runs[0]}
    return out


def bench_host(children: Children, specs: dict[str, Any], names: list[str], reps: int, *, other: Any) -> dict[str, Any]:
    """Each rep: a fresh process serves ``other`` first (so torch is warm), then loads the model cold."""
    out: dict[str, Any] = {}
    for name in names:
        spec_file = write_spec(specs[name], children.workdir / f"{name}.json")
        fallback = next((s for n, s in specs.items() if n != name), other)
        other_file = write_spec(other if other.name != name else fallback, children.workdir / "other.json")
        runs = []
        for rep in range(reps):
            report, _ = children.run("host", spec_file, other_file)
            runs.append(report)
            log(f"host {name} #{rep + 1}: cold first {report['cold_first_request_ms']:.2f} ms, warmed first "
                f"{report['warm_first_request_ms']:.3f} ms, p50 {report['steady_p50_ms']:.3f} ms, ready {report['ready']}")
        stages = {stage: median([r["stage_seconds"][stage] for r in runs]) for stage in runs[0]["stage_seconds"]}
        fields = ["cold_first_request_ms", "warm_first_request_ms", "steady_p50_ms", "steady_p99_ms", "time_to_ready_s"]
        summary = {field: median([r[field] for r in runs]) for field in fields}
        summary["warm_ratio"] = median([r["warm_first_request_ms"] / r["steady_p50_ms"] for r in runs])
        summary["stage_seconds"] = stages
        summary["device_class"] = runs[0]["device_class"]
        out[name] = summary
    return out


def bench_http(children: Children, specs: dict[str, Any], names: list[str], reps: int) -> dict[str, Any]:
    """Client-side figures through V2Target against ``prewarm serve`` running in its own process."""
    import httpx
    import yaml

    from tests.conftest import free_port
    from warmers import V2Target

    fleet = children.workdir / "http-fleet.yaml"
    fleet.write_text(yaml.safe_dump({"models": [specs[n].model_dump(mode="json") for n in names]}, sort_keys=False))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}
    env["PREWARM_HOME"] = str(children.workdir / "home")
    env["PREWARM_HOST__DEVICE"] = "cpu"  # the CPU part stays on the CPU on a machine with a GPU too
    command = [str(Path(sys.executable).parent / "prewarm"), "serve", "--port", str(port), "--fleet", str(fleet),
               "--no-preload"]
    if children.cpu_threads:
        command += ["--cpu-threads", str(children.cpu_threads)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        target = V2Target(url)
        for name in names:
            runs = [target.warm(specs[name]) for _ in range(reps)]
            out[name] = {
                "warm_first_request_ms": median([r.warm_first_request_ms or 0.0 for r in runs]),
                "steady_p50_ms": median([r.steady_p50_ms or 0.0 for r in runs]),
                "steady_p99_ms": median([r.steady_p99_ms or 0.0 for r in runs]),
                "warm_ratio": median([(r.warm_first_request_ms or 0) / (r.steady_p50_ms or 1) for r in runs]),
            }
            log(f"http {name}: warmed first {out[name]['warm_first_request_ms']:.2f} ms, "
                f"p50 {out[name]['steady_p50_ms']:.2f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return out


def bench_compile(children: Children, spec: Any, reps: int) -> dict[str, Any]:
    compiled = spec.model_copy(update={"compile": "default"})
    spec_file = write_spec(compiled, children.workdir / f"{spec.name}-compile.json")
    cold, hit = [], []
    for rep in range(reps):
        store = children.workdir / f"compile-store-{rep}"
        first, _ = children.run("compile", spec_file, str(store))
        second, _ = children.run("compile", spec_file, str(store))
        assert first["cache_hits"]["compile"] is False and second["cache_hits"]["compile"] is True, (first, second)
        cold.append(first)
        hit.append(second)
        log(f"compile {spec.name} #{rep + 1}: cold {first['stage_seconds']['compile']:.1f} s, "
            f"cache hit {second['stage_seconds']['compile']:.1f} s")
    cold_s = median([r["stage_seconds"]["compile"] for r in cold])
    hit_s = median([r["stage_seconds"]["compile"] for r in hit])
    return {
        "model": spec.name, "mode": "default", "shapes": len(compiled.warmup.buckets.get("batch", [1])),
        "cold_compile_s": cold_s, "hit_compile_s": hit_s, "hit_fraction": hit_s / cold_s,
        "cold_time_to_ready_s": median([r["time_to_ready_s"] for r in cold]),
        "hit_time_to_ready_s": median([r["time_to_ready_s"] for r in hit]),
        "compiled_warm_first_request_ms": median([r["warm_first_request_ms"] for r in hit]),
        "compiled_steady_p50_ms": median([r["steady_p50_ms"] for r in hit]),
    }


def gpt2_medium_spec(workdir: Path, *, smoke: bool = False) -> Any:
    """A GPT-2-medium-shaped model: fp16 safetensors written from code with seeded weights, never downloaded.

    ``smoke`` builds the example ``chat_small`` shape in fp32 on the CPU instead, to run the GPU part's code
    path on a machine without a GPU (its figures mean nothing).
    """
    from safetensors.torch import save_file

    from prewarm.fleet import ModelSpec, TensorSpec, WarmupSpec
    from warmers import zoo
    from warmers.artifacts import sha256_file

    name, factory, vocab = ("lm-smoke", "chat_small", 512) if smoke else ("gpt2-medium", "gpt2_medium", 50257)
    path = workdir / f"{name}.safetensors"
    torch.manual_seed(0)
    with torch.device("cpu" if smoke else "cuda"):
        model = getattr(zoo, factory)()
        model = model if smoke else model.half()
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
    del model
    if not smoke:
        torch.cuda.empty_cache()
    log(f"built {path.name}: {path.stat().st_size / 1e9:.2f} GB")
    return ModelSpec(
        name=name, version="1", artifact_uri=path.as_uri(), sha256=sha256_file(path), loader="safetensors",
        factory=f"warmers.zoo:{factory}", device="cpu" if smoke else "cuda",
        warmup=WarmupSpec(
            inputs=[TensorSpec(name="tokens", datatype="INT64", shape=["batch", "seq"], high=vocab)],
            outputs=[TensorSpec(name="logits", datatype="FP32" if smoke else "FP16", shape=["batch", vocab])],
            buckets={"batch": [1, 8], "seq": [32, 128] if smoke else [128, 512]}, iterations=3, probes=50,
        ),
    )


def h2d_bandwidth(nbytes: int) -> dict[str, float]:
    """Host-to-device copy GB/s from pageable and from pinned memory."""
    source = torch.empty(nbytes // 2, dtype=torch.float16)
    result = {}
    for label, tensor in (("pageable", source), ("pinned", source.pin_memory())):
        tensor.to("cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(3):
            tensor.to("cuda", non_blocking=True)
        torch.cuda.synchronize()
        result[f"{label}_gb_s"] = 3 * nbytes / (time.perf_counter() - start) / 1e9
    return result


def gpu_suite(children: Children, args: argparse.Namespace, specs: dict[str, Any]) -> dict[str, Any]:
    smoke = not torch.cuda.is_available()
    spec = gpt2_medium_spec(children.workdir, smoke=smoke)
    other = specs["reranker"].model_copy(update={"device": spec.device})
    device = "CPU (smoke run: not a GPU figure)" if smoke else torch.cuda.get_device_name(0)
    result: dict[str, Any] = {"device": device, "model": spec.name,
                              "artifact_bytes": Path(spec.artifact_uri.removeprefix("file://")).stat().st_size}
    result["cold_process"] = bench_cold_process(children, {spec.name: spec}, [spec.name], args.reps)
    result["host"] = bench_host(children, {spec.name: spec}, [spec.name], args.reps, other=other)
    if not args.skip_compile:
        seq = spec.warmup.buckets["seq"][:1]
        small = spec.model_copy(update={"warmup": spec.warmup.model_copy(update={"buckets": {"batch": [1, 8], "seq": seq}})})
        result["compile"] = bench_compile(children, small, args.compile_reps)
    if not smoke:
        result["h2d"] = h2d_bandwidth(result["artifact_bytes"])
    return result


def cpu_specs() -> dict[str, Any]:
    from prewarm.fleet import load_fleet
    from warmers.sources import EXAMPLE_FLEET

    # no SLA: the benchmark measures, it does not gate
    return {s.name: s.model_copy(update={"sla_p99_ms": None, "device": "cpu"}) for s in load_fleet(EXAMPLE_FLEET).models}


def cpu_suite(children: Children, args: argparse.Namespace, specs: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    log("CPU: first request in a cold process")
    result["cold_process"] = bench_cold_process(children, specs, COLD_PROCESS_MODELS, args.reps)
    log("CPU: cold model in a running host, warmed first request, steady state")
    result["host"] = bench_host(children, specs, CPU_MODELS, args.reps, other=specs["reranker"])
    log("CPU: the same over HTTP (V2Target against a host on loopback)")
    result["http"] = bench_http(children, specs, CPU_MODELS, args.reps)
    if not args.skip_compile:
        log("CPU: torch.compile cold vs cache hit (chat-small; two shapes)")
        chat = specs["chat-small"]
        small = chat.model_copy(update={"warmup": chat.warmup.model_copy(update={"buckets": {"batch": [1, 4], "seq": [16]}})})
        result["compile"] = bench_compile(children, small, args.compile_reps)
    return result


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()}-core {platform.machine()}, {mem:.0f} GiB, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="child processes per measurement (median reported)")
    parser.add_argument("--compile-reps", type=int, default=1)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--cpu-threads", type=int, default=None, help="OMP_NUM_THREADS for the probes")
    parser.add_argument("--gpu-smoke", action="store_true",
                        help="run only the GPU part's code path, on the CPU with a small model (figures mean nothing)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(),
        "load_average_at_start": os.getloadavg()[0], "cpu_threads": args.cpu_threads, "command": " ".join(["benchmarks/warm_latency/run.py", *sys.argv[1:]]),
    }
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    specs = cpu_specs()
    with tempfile.TemporaryDirectory(prefix="warm-latency-") as tmp:
        children = Children(Path(tmp), args.cpu_threads)
        results["cpu"] = None if args.gpu_smoke else cpu_suite(children, args, specs)
        if torch.cuda.is_available() or args.gpu_smoke:
            results["gpu"] = gpu_suite(children, args, specs)
        else:
            results["gpu"] = None
            log("no CUDA device: the GPU part was not run")
    results["wall_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "gpu-smoke" if args.gpu_smoke else ("cuda" if results["gpu"] else "cpu")
    (args.out / f"results-{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    from report import plot_stages, render_markdown  # noqa: E402 - sibling module

    markdown = render_markdown(results)
    (args.out / f"results-{suffix}.md").write_text(markdown)
    plot_stages(results, args.out / f"time-to-ready-{suffix}.png")
    sys.stdout.write(markdown)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
