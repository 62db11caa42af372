"""The staged warm pipeline for one model on this process's device.

Stages, each timed: fetch (verified artifact), load (meta device + weight assignment), cold first request
(the first request after load, before any warm-up: what a user would have paid), compile (restore compile
artifacts, compile every bucket shape, save them back after a cold compile), warm-up (every bucket x
iterations), validate (probe requests judged against the baseline and the SLA). From the cold first request
on, requests take the serving path that clients' requests take: the V2 codec, then the model on its own
inference thread (and on CUDA its serving stream).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from prewarm.fleet import ModelSpec, TensorSpec
from warmers import compile_cache
from warmers.artifacts import ArtifactStore
from warmers.codec import Encoded, decode_inputs, encode_request, encode_response, parse_request
from warmers.errors import DeviceOutOfMemoryError, InferenceError, ModelLoadError, ModelNotReadyError
from warmers.loading import device_capability, load_module, module_bytes
from warmers.logcontext import model_context, model_logger
from warmers.report import Latency, StageClock
from warmers.tensors import bucket_combinations, example_inputs, v2_datatype_of

logger = model_logger(__name__)

SEED = 20240611
T = TypeVar("T")


@dataclass
class Loaded:
    """A model resident on a device, with what the host needs to serve it.

    Every inference of the model, the engine's warm-up and validation requests as much as clients' requests,
    runs on ``executor``: one thread per model version, so warm-up leaves warm exactly the thread (and on
    CUDA the current device, stream and cuBLAS handle) that serves clients afterwards.
    """

    spec: ModelSpec
    module: Any
    device: torch.device
    stream: Any
    outputs: list[TensorSpec]
    memory_mb: float = 0.0
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    ready_at: float | None = None  # time.monotonic() when the engine made it ready
    executor: ThreadPoolExecutor | None = None
    released: bool = False

    def run(self, inputs: Mapping[str, Any]) -> list[Any]:
        """One inference: inputs in spec order, outputs back on the CPU (call it on the executor thread)."""
        return run_module(self.module, self.spec, inputs, self.device, self.stream)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the model's inference thread and wait for it."""
        assert self.executor is not None
        return self.executor.submit(fn, *args).result()

    def submit(self, body: bytes, header_length: str | int | None) -> Future[Served]:
        """Queue one serialized V2 request on the model's inference thread (see :func:`serve_request`)."""
        assert self.executor is not None
        return self.executor.submit(serve_request, self, body, header_length, time.perf_counter_ns())

    def request(self, encoded: Encoded) -> Served:
        """Serve one encoded request through the serving path and wait for the answer."""
        return self.submit(encoded.body, encoded.header_length).result()

    def close(self) -> None:
        """Refuse further requests and let the inference thread end once its queue is empty."""
        self.released = True
        if self.executor is not None:
            self.executor.shutdown(wait=False)


def inference_executor(spec: ModelSpec, device: torch.device) -> ThreadPoolExecutor:
    """The single inference thread of one model version, bound to its device."""
    return ThreadPoolExecutor(
        max_workers=1, thread_name_prefix=f"prewarm-infer-{spec.name}:{spec.version}",
        initializer=_bind_thread, initargs=(device,),
    )


def _bind_thread(device: torch.device) -> None:
    """Give the new inference thread the process's torch thread count and device.

    OpenMP keeps the thread count per thread, and MKL's GEMM (every ``nn.Linear`` on CPU) reads it without
    torch's lazy per-thread set-up: a fresh thread would run its matrix products on a team of one thread per
    core, whose barrier stalls for a whole scheduler slice (about 15 ms here) whenever the other team member
    is preempted. Setting the count here makes the thread honour ``--cpu-threads`` like the main thread.
    """
    # In a fresh thread get_num_threads() first applies the process's setting to torch's own pool and
    # returns it; set_num_threads() then hands it to MKL and OpenMP for this thread as well.
    torch.set_num_threads(torch.get_num_threads())
    if device.type == "cuda":
        torch.cuda.set_device(device)


@dataclass(frozen=True)
class Served:
    """One served request: the encoded response, what the model returned, and where the time went (ns)."""

    response: Encoded
    shapes: list[tuple[int, ...]]
    datatypes: list[str]
    queue_ns: int
    input_ns: int
    infer_ns: int
    output_ns: int

    @property
    def total_ms(self) -> float:
        """The request's time on the serving path: waiting for the inference thread, decoding, the model, encoding.

        The same four phases the host reports per model in Triton's statistics (``queue``, ``compute_input``,
        ``compute_infer``, ``compute_output``), so a client can read the host's figure for its own request.
        """
        return (self.queue_ns + self.input_ns + self.infer_ns + self.output_ns) / 1e6


def serve_request(loaded: Loaded, body: bytes, header_length: str | int | None, submitted_ns: int) -> Served:
    """The serving path: parse and decode the request, run the model, encode the response.

    Runs on the model's inference thread. Raises :class:`ModelNotReadyError` when the model was unloaded
    before or while the request ran, :class:`InferenceInputError` for a malformed request, and
    :class:`InferenceError` (or :class:`DeviceOutOfMemoryError`) when the model itself fails.
    """
    spec = loaded.spec
    started = time.perf_counter_ns()
    with model_context(spec.name, spec.version):
        if loaded.released:
            raise ModelNotReadyError(f"model {spec.name!r} version {spec.version!r} was unloaded; load it again")
        request, binary = parse_request(spec.name, body, header_length)
        inputs = decode_inputs(spec, request, binary)
        decoded = time.perf_counter_ns()
        try:
            outputs = loaded.run(inputs)
        except torch.cuda.OutOfMemoryError as exc:
            raise DeviceOutOfMemoryError(f"model {spec.name!r}: out of device memory during inference") from exc
        except Exception as exc:  # the model is user code: any failure of it is the request's 500
            raise InferenceError(f"model {spec.name!r}: inference failed: {type(exc).__name__}: {exc}") from exc
        ran = time.perf_counter_ns()
        if loaded.released:
            raise ModelNotReadyError(
                f"model {spec.name!r} version {spec.version!r} was unloaded while this request ran; load it again"
            )
        response = encode_response(spec, loaded.outputs, outputs, request)
    return Served(
        response=response, shapes=[tuple(o.shape) for o in outputs], datatypes=[v2_datatype_of(o) for o in outputs],
        queue_ns=started - submitted_ns, input_ns=decoded - started, infer_ns=ran - decoded,
        output_ns=time.perf_counter_ns() - ran,
    )


def run_module(
    module: Callable[..., Any], spec: ModelSpec, inputs: Mapping[str, Any], device: torch.device, stream: Any
) -> list[Any]:
    """Run ``module`` on ``inputs`` (ordered as the spec declares them) and return its outputs on the CPU.

    On CUDA the input copies (from pinned staging memory), the forward pass and the output copies all run on
    the model's serving stream. BYTES inputs (numpy arrays of ``bytes``) are passed as they are.
    """
    with torch.inference_mode():
        if stream is not None:
            with torch.cuda.stream(stream):
                args = [_to_device(inputs[t.name], device, pinned=True) for t in spec.warmup.inputs]
                result = module(*args)
                outputs = [_to_cpu(t, non_blocking=True) for t in _as_list(result)]
            stream.synchronize()
            return outputs
        args = [_to_device(inputs[t.name], device, pinned=False) for t in spec.warmup.inputs]
        return [_to_cpu(t, non_blocking=False) for t in _as_list(module(*args))]


def _to_device(value: Any, device: torch.device, *, pinned: bool) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if pinned and device.type == "cuda" and not value.is_pinned():
        value = value.pin_memory()  # staged in page-locked memory so the copy is truly asynchronous
    return value.to(device, non_blocking=pinned)


def _to_cpu(value: Any, *, non_blocking: bool) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", non_blocking=non_blocking)
    return value


def _is_output(value: Any) -> bool:
    return isinstance(value, torch.Tensor) or (isinstance(value, np.ndarray) and value.dtype == object)


def _as_list(result: Any) -> list[Any]:
    if _is_output(result):
        return [result]
    if isinstance(result, Mapping):
        return [v for v in result.values() if _is_output(v)]
    if isinstance(result, Sequence):
        return [v for v in result if _is_output(v)]
    raise TypeError(f"the model returned {type(result).__name__}; expected a tensor, a tuple or a dict of tensors")


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
    if spec.foreign or spec.artifact_uri is None or spec.sha256 is None:
        raise ModelLoadError(
            f"model {spec.name!r} version {spec.version!r} is declared `server: foreign` and has no artifact: "
            "prewarm's engine cannot load it; warm it on its own server "
            f"(`prewarm warm {spec.name} --target URL`)"
        )
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
    """Load, take the cold first request, compile, warm up and probe; the caller judges and registers.

    From the cold first request on, every request goes through the serving path (:func:`serve_request`) on
    the model's own inference thread. On any failure the inference thread is shut down before the error
    propagates.
    """
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    with clock.stage("load"):
        module = load_module(spec, path, device, stream=stream)
    loaded = Loaded(spec=spec, module=module, device=device, stream=stream, outputs=list(spec.warmup.outputs),
                    executor=inference_executor(spec, device))
    try:
        generator = torch.Generator().manual_seed(SEED)
        combos = bucket_combinations(spec.warmup)
        probe = encode_request(spec, example_inputs(spec.warmup, combos[0], generator=generator), binary=False)
        # A user's first request meets the model after a pause, not back to back with the load, as the first
        # client request after warm-up does; the same pause here, so both pay the wake-up of an idle thread.
        time.sleep(IDLE_GAP_S)
        with clock.stage("cold_first_request"):
            cold_ms = loaded.request(probe).total_ms
        compile_hit = _compile(spec, loaded, combos, store, compile_root, clock)
        loaded.outputs = warm_up(spec, loaded, combos, generator, clock)
        latency = validate(spec, loaded, probe, clock)
    except BaseException:
        loaded.close()
        raise
    memory = (torch.cuda.memory_allocated(device) - before) if device.type == "cuda" else module_bytes(module)
    loaded.memory_mb = max(memory / 2**20, spec.device_memory_mb)
    return PipelineResult(loaded, cold_ms, latency, compile_hit, artifact_hit)


def _compile(
    spec: ModelSpec,
    loaded: Loaded,
    combos: list[dict[str, int]],
    store: ArtifactStore,
    compile_root: str,
    clock: StageClock,
) -> bool | None:
    """Compile (restoring the compile cache first) on the inference thread; the compiled module then serves."""
    if spec.compile == "none":
        return None
    uri = compile_cache_uri_for(spec, loaded.device, compile_root)
    with clock.stage("compile"):
        before = compile_cache.snapshot()
        hit = compile_cache.restore(store, uri)
        compiled = compile_cache.compile_module(loaded.module, spec.compile)
        generator = torch.Generator().manual_seed(SEED + 1)
        for dims in combos:  # compilation is lazy: one call per bucket shape compiles it
            inputs = example_inputs(spec.warmup, dims, generator=generator)
            loaded.call(run_module, compiled, spec, inputs, loaded.device, loaded.stream)
        if not hit:
            compile_cache.save(store, uri, before=before)
    loaded.module = compiled
    return hit


def compile_cache_uri_for(spec: ModelSpec, device: torch.device, compile_root: str) -> str:
    """The compile-cache entry of ``spec`` on ``device``."""
    key = compile_cache.compile_key(spec.sha256, device_capability(device), spec.compile)
    return compile_cache.compile_cache_uri(compile_root, key)


def warm_up(
    spec: ModelSpec, loaded: Loaded, combos: list[dict[str, int]], generator: torch.Generator, clock: StageClock
) -> list[TensorSpec]:
    """Every bucket combination, ``iterations`` times, through the serving path; returns the output specs.

    Iterations alternate JSON and binary tensors, so both decoders and encoders are warm. The primary bucket
    (the first combination) runs again at the end, so the serving path finishes hot on the most common shape
    rather than on the largest one. Before that last pass the load's garbage is collected: the first requests
    after a collection are slow (here up to 10x the steady state), and they should be warm-up's, not the
    validation's or a client's. Outputs are the declared ones, else those observed across buckets.
    """
    shapes: list[list[tuple[int, ...]]] = []
    datatypes: list[str] = []
    with clock.stage("warmup"):
        for index, dims in enumerate([*combos, combos[0]]):
            if index == len(combos):
                gc.collect()
            inputs = example_inputs(spec.warmup, dims, generator=generator)
            for iteration in range(spec.warmup.iterations):
                served = loaded.request(encode_request(spec, inputs, binary=iteration % 2 == 1))
            shapes.append(served.shapes)
            datatypes = served.datatypes
    if spec.warmup.outputs:
        return list(spec.warmup.outputs)
    return _observed_outputs(shapes, datatypes)


IDLE_PROBES = 7
IDLE_GAP_S = 0.025


def validate(spec: ModelSpec, loaded: Loaded, probe: Encoded, clock: StageClock) -> Latency:
    """Probe the primary bucket through the serving path: the first request, after idle gaps, the steady state.

    The warmed first request (warm-up has just collected the load's garbage and run the primary bucket); then :data:`IDLE_PROBES` requests each after :data:`IDLE_GAP_S`
    of idleness (their median is the first-after-idle figure the verdict judges, so one scheduling stall
    cannot flip it); then ``probes`` requests back to back (the steady state), so that the model leaves
    validation, and turns ready, with its serving path hot. Each figure is the request's time on the serving
    path (:attr:`Served.total_ms`), the measure of the cold first request too.
    """
    with clock.stage("validate"):
        first = loaded.request(probe).total_ms
        idle: list[float] = []
        for _ in range(IDLE_PROBES):
            time.sleep(IDLE_GAP_S)
            idle.append(loaded.request(probe).total_ms)
        steady = [loaded.request(probe).total_ms for _ in range(spec.warmup.probes)]
    return Latency.from_samples(steady, idle_ms=idle, first_ms=first)


def _observed_outputs(shapes: list[list[tuple[int, ...]]], datatypes: list[str]) -> list[TensorSpec]:
    """Output specs from the shapes seen across buckets: a dimension that varied is variable (-1)."""
    specs: list[TensorSpec] = []
    for index, datatype in enumerate(datatypes):
        seen = [combo[index] for combo in shapes]
        dims: list[int | str] = [
            seen[0][axis] if all(s[axis] == seen[0][axis] for s in seen) else f"d{axis}" for axis in range(len(seen[0]))
        ]
        specs.append(TensorSpec.model_construct(name=f"output{index}", datatype=datatype, shape=dims))
    return specs


def outputs_on_meta(spec: ModelSpec) -> list[TensorSpec]:
    """Output specs of a factory-built model without loading it: its module runs on the meta device.

    Building on the meta device allocates nothing and a forward pass there computes only shapes, so this is
    cheap even for large models. Exported programs (and BYTES inputs, which have no meta form) give [] until
    the model has been loaded; so does a module that cannot run on the meta device.
    """
    if spec.loader != "safetensors" or spec.factory is None or any(t.datatype == "BYTES" for t in spec.warmup.inputs):
        return []
    from warmers.loading import _INIT_LOCK, _skipped_init, import_factory
    from warmers.tensors import V2_TO_TORCH, concrete_shape

    try:
        factory = import_factory(spec.factory)
        with _INIT_LOCK, _skipped_init(), torch.device("meta"):
            module = factory(**spec.factory_kwargs)
        shapes: list[list[tuple[int, ...]]] = []
        datatypes: list[str] = []
        with torch.inference_mode():
            for dims in bucket_combinations(spec.warmup):
                args = [torch.empty(concrete_shape(t, dims), dtype=V2_TO_TORCH[t.datatype], device="meta")
                        for t in spec.warmup.inputs]
                outputs = _as_list(module(*args))
                shapes.append([tuple(o.shape) for o in outputs])
                datatypes = [v2_datatype_of(o) for o in outputs]
    except Exception as exc:  # noqa: BLE001 - factories are user code; metadata then waits for a load
        logger.info("outputs of %s:%s not inferable on the meta device (%s: %s)", spec.name, spec.version,
                    type(exc).__name__, exc)
        return []
    return _observed_outputs(shapes, datatypes) if datatypes else []
