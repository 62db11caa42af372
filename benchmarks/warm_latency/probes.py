"""Child-process probes of the warm-latency benchmark; each prints one JSON line on stdout.

    python benchmarks/warm_latency/probes.py cold-process SPEC.json   # first request in a fresh process
    python benchmarks/warm_latency/probes.py host SPEC.json [WARM_FIRST.json]  # cold model in a running engine
    python benchmarks/warm_latency/probes.py compile SPEC.json STORE    # warm with compile, compile store at STORE

Every probe runs in its own process so that nothing (imports, kernels, compile caches) is warm by accident.
"""

from __future__ import annotations

import json
import sys
import time

T0 = time.perf_counter()


def _spec(path: str):  # type: ignore[no-untyped-def]
    from prewarm.fleet import ModelSpec

    with open(path) as handle:
        return ModelSpec.model_validate_json(handle.read())


def cold_process(spec_path: str) -> dict[str, float]:
    """Import torch, build the model from its artifact, answer one request: each step's seconds."""
    import torch

    t_import = time.perf_counter()
    from warmers.artifacts import ArtifactStore
    from warmers.loading import load_module, resolve_device
    from warmers.pipeline import SEED, run_module
    from warmers.tensors import bucket_combinations, example_inputs

    spec = _spec(spec_path)
    device = resolve_device(spec.device)
    store = ArtifactStore.from_settings()
    fetched = store.fetch(spec.artifact_uri, spec.sha256)
    t_fetch = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.init()
        torch.empty(1, device=device)
    t_context = time.perf_counter()
    module = load_module(spec, fetched.path, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_build = time.perf_counter()
    inputs = example_inputs(spec.warmup, bucket_combinations(spec.warmup)[0], generator=torch.Generator().manual_seed(SEED))
    run_module(module, spec, inputs, device, None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_first = time.perf_counter()
    return {
        "import_torch_s": t_import - T0,
        "fetch_s": t_fetch - t_import,
        "device_context_s": t_context - t_fetch,
        "build_and_weights_s": t_build - t_context,
        "first_request_s": t_first - t_build,
        "in_process_total_s": t_first - T0,
    }


def host(spec_path: str, warm_first: str | None = None) -> dict[str, object]:
    """A running engine (another model already served, so the process is warm) loads and warms the spec."""
    from warmers.engine import Engine

    spec = _spec(spec_path)
    engine = Engine(device=None if spec.device == "auto" else spec.device)
    if warm_first:
        engine.warm(_spec(warm_first))
    return engine.warm(spec).to_dict()


def compile_probe(spec_path: str, store: str) -> dict[str, object]:
    """Warm with ``torch.compile``; the compile cache lives under ``store`` (hit when a previous probe filled it)."""
    from warmers.engine import Engine

    spec = _spec(spec_path)
    return Engine(device=None if spec.device == "auto" else spec.device, compile_root=store).warm(spec).to_dict()


def main() -> None:
    role, *args = sys.argv[1:]
    if role == "cold-process":
        result: object = cold_process(*args)
    elif role == "host":
        result = host(*args)
    elif role == "compile":
        result = compile_probe(*args)
    else:
        raise SystemExit(f"unknown probe {role!r}")
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
