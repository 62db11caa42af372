"""The staged warm pipeline for one model on this process's device.

Stages, each timed: fetch (verified artifact), load (meta device + weight assignment), cold first request
(the first inference after load: what a user would have paid), compile (restore compile artifacts, compile
every bucket shape, save them back after a cold compile), warm-up (every bucket x iterations on the serving
stream), validate (probe requests judged against the baseline and the SLA).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prewarm.fleet import ModelSpec, TensorSpec
from warmers import compile_cache
from warmers.artifacts import ArtifactStore
from warmers.loading import device_capability, load_module, module_bytes
from warmers.logcontext import model_logger
from warmers.report import Latency, StageClock
from warmers.tensors import bucket_combinations, example_inputs, v2_datatype

logger = model_logger(__name__)

SEED = 20240611


@dataclass
class Loaded:
    """A model resident on a device, with what the host needs to serve it."""

    spec: ModelSpec
    module: nn.Module
    device: torch.device
    stream: Any
    outputs: list[TensorSpec]
    memory_mb: float = 0.0
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    ready_at: float | None = None  # time.monotonic() when the engine made it ready

    def run(self, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """One inference: inputs in spec order, outputs back on the CPU."""
        return run_module(self.module, self.spec, inputs, self.device, self.stream)


def run_module(
    module: Callable[..., Any], spec: ModelSpec, inputs: Mapping[str, torch.Tensor], device: torch.device, stream: Any
) -> list[torch.Tensor]:
    """Run ``module`` on ``inputs`` (ordered as the spec declares them) and return its outputs on the CPU.

    On CUDA the input copies, the forward pass and the output copies all run on the model's serving stream.
    """
    with torch.inference_mode():
        if stream is not None:
            with torch.cuda.stream(stream):
                args = [inputs[t.name].to(device, non_blocking=True) for t in spec.warmup.inputs]
                result = module(*args)
                outputs = [t.to("cpu", non_blocking=False) for t in _as_list(result)]
            stream.synchronize()
            return outputs
        args = [inputs[t.name].to(device) for t in spec.warmup.inputs]
        return [t.detach().cpu() for t in _as_list(module(*args))]


def _as_list(result: Any) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, Mapping):
        return [v for v in result.values() if isinstance(v, torch.Tensor)]
    if isinstance(result, Sequence):
        return [v for v in result if isinstance(v, torch.Tensor)]
    raise TypeError(f"the model returned {type(result).__name__}; expected a tensor, a tuple or a dict of tensors")


def timed_ms(fn: Callable[[], object]) -> float:
    """Milliseconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


@dataclass
class PipelineResult:
    """What the pipeline produced before the verdict: the resident model and its measurements."""

    loaded: Loaded
    cold_first_request_ms: float | None
    latency: Latency
    compile_hit: bool | None
    artifact_hit: bool


def fetch_stage(spec: ModelSpec, store: ArtifactStore, clock: StageClock) -> tuple[Any, bool]:
    """Fetch and verify the artifact; returns the local copy and whether it was a cache hit."""
    with clock.stage("fetch"):
        fetched = store.fetch(spec.artifact_uri, spec.sha256)
    return fetched, fetched.cache_hit


def build(
    spec: ModelSpec,
    path: Any,
    device: torch.device,
    *,
    store: ArtifactStore,
    compile_root: str,
    clock: StageClock,
    artifact_hit: bool,
) -> PipelineResult:
    """Load, take the cold first request, compile, warm up and probe; the caller judges and registers."""
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    with clock.stage("load"):
        module = load_module(spec, path, device, stream=stream)
    generator = torch.Generator().manual_seed(SEED)
    combos = bucket_combinations(spec.warmup)
    probe_inputs = example_inputs(spec.warmup, combos[0], generator=generator)
    with clock.stage("cold_first_request"):
        cold_ms = timed_ms(lambda: run_module(module, spec, probe_inputs, device, stream))
    serving, compile_hit = _compile(spec, module, device, combos, store, compile_root, clock, stream)
    outputs = warm_up(spec, serving, device, stream, combos, generator, clock)
    with clock.stage("validate"):
        samples = [timed_ms(lambda: run_module(serving, spec, probe_inputs, device, stream))
                   for _ in range(spec.warmup.probes + 1)]
    memory = (torch.cuda.memory_allocated(device) - before) if device.type == "cuda" else module_bytes(module)
    loaded = Loaded(spec=spec, module=serving, device=device, stream=stream, outputs=outputs,
                    memory_mb=max(memory / 2**20, spec.device_memory_mb))
    return PipelineResult(loaded, cold_ms, Latency.from_samples(samples), compile_hit, artifact_hit)


def _compile(
    spec: ModelSpec,
    module: nn.Module,
    device: torch.device,
    combos: list[dict[str, int]],
    store: ArtifactStore,
    compile_root: str,
    clock: StageClock,
    stream: Any,
) -> tuple[Callable[..., Any], bool | None]:
    if spec.compile == "none":
        return module, None
    uri = compile_cache_uri_for(spec, device, compile_root)
    with clock.stage("compile"):
        before = compile_cache.snapshot()
        hit = compile_cache.restore(store, uri)
        compiled = compile_cache.compile_module(module, spec.compile)
        generator = torch.Generator().manual_seed(SEED + 1)
        for dims in combos:  # compilation is lazy: one call per bucket shape compiles it
            run_module(compiled, spec, example_inputs(spec.warmup, dims, generator=generator), device, stream)
        if not hit:
            compile_cache.save(store, uri, before=before)
    return compiled, hit


def compile_cache_uri_for(spec: ModelSpec, device: torch.device, compile_root: str) -> str:
    """The compile-cache entry of ``spec`` on ``device``."""
    key = compile_cache.compile_key(spec.sha256, device_capability(device), spec.compile)
    return compile_cache.compile_cache_uri(compile_root, key)


def warm_up(
    spec: ModelSpec,
    module: Callable[..., Any],
    device: torch.device,
    stream: Any,
    combos: list[dict[str, int]],
    generator: torch.Generator,
    clock: StageClock,
) -> list[TensorSpec]:
    """Every bucket combination, ``iterations`` times; returns the output specs (declared or observed).

    The primary bucket (the first combination) runs again at the end, so the serving path finishes hot on the
    most common shape rather than on the largest one.
    """
    shapes: list[list[tuple[int, ...]]] = []
    dtypes: list[torch.dtype] = []
    with clock.stage("warmup"):
        for dims in [*combos, combos[0]]:
            inputs = example_inputs(spec.warmup, dims, generator=generator)
            for _ in range(spec.warmup.iterations):
                outputs = run_module(module, spec, inputs, device, stream)
            shapes.append([tuple(t.shape) for t in outputs])
            dtypes = [t.dtype for t in outputs]
    if spec.warmup.outputs:
        return list(spec.warmup.outputs)
    return _observed_outputs(shapes, dtypes)


def _observed_outputs(shapes: list[list[tuple[int, ...]]], dtypes: list[torch.dtype]) -> list[TensorSpec]:
    """Output specs from the shapes seen across buckets: a dimension that varied is variable (-1)."""
    specs: list[TensorSpec] = []
    for index, dtype in enumerate(dtypes):
        seen = [combo[index] for combo in shapes]
        dims: list[int | str] = [
            seen[0][axis] if all(s[axis] == seen[0][axis] for s in seen) else f"d{axis}" for axis in range(len(seen[0]))
        ]
        specs.append(TensorSpec.model_construct(name=f"output{index}", datatype=v2_datatype(dtype), shape=dims))
    return specs
