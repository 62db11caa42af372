"""The in-process engine: a registry of model versions, device-memory accounting, warm runs and inference.

The engine is also the in-process warm target: ``engine.warm(spec)`` runs the staged pipeline and returns a
:class:`~warmers.report.WarmReport`. A model version is registered before it loads; a failed load leaves it
registered as unavailable with its report, and the other models keep serving. A new version becomes ready
before the old one is unloaded. A load that does not fit evicts idle, unpinned models, least recently used
first, and is refused with :class:`CapacityError` when that is not enough.
"""

from __future__ import annotations

import enum
import gc
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch

from prewarm.fleet import ModelSpec
from warmers import pipeline
from warmers.artifacts import ArtifactStore
from warmers.errors import (
    CapacityError,
    DeviceOutOfMemoryError,
    InferenceError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    WarmupError,
)
from warmers.loading import device_capacity_mb, device_class, resolve_device
from warmers.logcontext import model_context, model_logger
from warmers.report import Baseline, StageClock, WarmReport, judge
from warmers.codec import encode_request
from warmers.tensors import bucket_combinations, example_inputs

logger = model_logger(__name__)


class ModelState(str, enum.Enum):
    """A model version's state, named as the V2 repository extension names them."""

    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    UNLOADING = "UNLOADING"


class EngineObserver(Protocol):
    """Receives the engine's events (the host turns them into Prometheus metrics)."""

    def stage_finished(self, model: str, stage: str, seconds: float) -> None:
        """A warm stage of ``model`` took ``seconds``."""

    def load_failed(self, model: str, error_type: str) -> None:
        """A load of ``model`` failed with ``error_type``."""


@dataclass
class Entry:
    """One registered model version: its spec, state, last report, and the resident model when ready."""

    spec: ModelSpec
    state: ModelState = ModelState.UNAVAILABLE
    reason: str | None = None
    report: WarmReport | None = None
    loaded: pipeline.Loaded | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    failed: bool = False  # the last load of this version failed (cleared by a successful load or an unload)

    @property
    def key(self) -> tuple[str, str]:
        """``(name, version)``."""
        return (self.spec.name, self.spec.version)


class Engine:
    """Loads, warms, serves and evicts models on one device of this process."""

    target_name = "in-process"

    def __init__(
        self,
        *,
        device: str | None = None,
        capacity_mb: float | None = None,
        store: ArtifactStore | None = None,
        compile_root: str | None = None,
        observer: EngineObserver | None = None,
        drain_s: float | None = None,
    ) -> None:
        from prewarm.settings import get_settings

        settings = get_settings()
        self.device = resolve_device(device or settings.host.device)
        self.device_class = device_class(self.device)
        self.capacity_mb = capacity_mb or settings.host.device_memory_mb or device_capacity_mb(self.device)
        self.store = store or ArtifactStore.from_settings()
        self.compile_root = compile_root or settings.resolved_artifact_root
        self.observer = observer
        self.drain_s = settings.host.drain_s if drain_s is None else drain_s
        self._entries: dict[tuple[str, str], Entry] = {}
        self._lock = threading.RLock()
        self._drained = threading.Condition(self._lock)
        self._reserved_mb = 0.0

    # -- registry -------------------------------------------------------------------------------------
    def register(self, spec: ModelSpec) -> Entry:
        """Make ``spec`` known (unavailable until warmed); a changed spec of a version replaces the old one."""
        with self._lock:
            entry = self._entries.get((spec.name, spec.version))
            if entry is None or (entry.spec != spec and entry.state is not ModelState.READY):
                entry = Entry(spec=spec)
                self._entries[entry.key] = entry
            return entry

    def entries(self) -> list[Entry]:
        """Every registered model version, by name then version."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.key)

    def get(self, name: str, version: str | None = None) -> Entry:
        """The entry of ``name`` (the ready, else newest registered, version when ``version`` is None)."""
        with self._lock:
            if version is not None:
                entry = self._entries.get((name, version))
                if entry is None:
                    raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
                return entry
            versions = [e for e in self._entries.values() if e.spec.name == name]
        if not versions:
            raise ModelNotFoundError(f"model {name!r} is not known to this host; POST /v2/repository/index lists models")
        ready = [e for e in versions if e.state is ModelState.READY]
        return (ready or versions)[-1]

    @property
    def memory_used_mb(self) -> float:
        """Device memory accounted to resident models and loads in progress, in MiB."""
        with self._lock:
            resident = sum(e.loaded.memory_mb for e in self._entries.values() if e.loaded is not None)
            return resident + self._reserved_mb

    # -- warm -----------------------------------------------------------------------------------------
    def warm(self, spec: ModelSpec, *, baseline: Baseline | None = None) -> WarmReport:
        """Load (if needed), warm and validate ``spec``; the report says whether it is ready and why not.

        Failures (checksum, missing artifact, factory import, capacity, out of memory) do not raise: they
        leave the model unavailable with the error in the report. Other models are not affected.
        """
        entry = self.register(spec)
        baseline = (baseline or Baseline()).with_sla(spec.sla_p99_ms)
        with entry.lock, model_context(spec.name, spec.version):
            if entry.state is ModelState.READY and entry.spec == spec and entry.loaded is not None:
                return self._rewarm(entry, baseline)
            return self._load(entry, spec, baseline)

    def _load(self, entry: Entry, spec: ModelSpec, baseline: Baseline) -> WarmReport:
        label = f"{spec.name}:{spec.version}"
        serving = entry.state is ModelState.READY and entry.loaded is not None
        if not serving:  # a changed spec of a ready version: the old copy serves until the new one is ready
            entry.state, entry.reason, entry.spec = ModelState.LOADING, None, spec
        clock = StageClock()
        reserved = 0.0
        cache_hits: dict[str, bool | None] = {}
        try:
            self._check_device(spec)
            fetched, cache_hits["artifact"] = pipeline.fetch_stage(spec, self.store, clock)
            reserved = spec.device_memory_mb or fetched.size_bytes / 2**20 * 1.2
            self._reserve(spec, reserved)
            result = pipeline.build(
                spec, fetched.path, self.device, store=self.store, compile_root=self.compile_root,
                clock=clock, artifact_hit=fetched.cache_hit,
            )
        except Exception as exc:  # noqa: BLE001 - factories and models are user code: every failure is a report
            error = _as_warmup_error(exc, label)
            _free_device(self.device)
            return self._fail(entry, spec, clock, cache_hits, error)
        finally:
            self._release(reserved)
        cache_hits["compile"] = result.compile_hit
        report = self._report(spec, clock, cache_hits, result, baseline)
        if not report.ready:
            result.loaded.close()
            del result
            _free_device(self.device)
            with self._lock:
                entry.report = report
                if not serving:
                    entry.state, entry.reason, entry.loaded, entry.failed = (
                        ModelState.UNAVAILABLE, report.reason, None, True
                    )
            self._notify_failure(spec.name, "ValidationFailed")
            logger.warning("not ready: %s", report.reason)
            return report
        # The load's garbage was collected during warm-up (pipeline.warm_up): collecting again here would only
        # leave the serving path cold for the first client request.
        result.loaded.ready_at = time.monotonic()
        with self._lock:
            previous = entry.loaded
            entry.spec, entry.state, entry.reason, entry.failed = spec, ModelState.READY, None, False
            entry.report, entry.loaded = report, result.loaded
        if previous is not None and previous is not result.loaded:  # the old copy of a changed spec
            self._drain(previous)
            previous.close()
        self._retire_other_versions(spec)
        logger.info("ready in %.3f s (warmed first request %.2f ms)", report.time_to_ready_s or 0,
                    report.warm_first_request_ms or 0)
        return report

    def _rewarm(self, entry: Entry, baseline: Baseline) -> WarmReport:
        """Already resident: run the warm-up and validation again, and report the model's current latency."""
        assert entry.loaded is not None
        loaded, spec, clock = entry.loaded, entry.spec, StageClock()
        generator = torch.Generator().manual_seed(pipeline.SEED)
        combos = bucket_combinations(spec.warmup)
        probe = encode_request(spec, example_inputs(spec.warmup, combos[0], generator=generator), binary=False)
        try:
            pipeline.warm_up(spec, loaded, combos, generator, clock)
            latency = pipeline.validate(spec, loaded, probe, clock)
        except Exception as exc:  # noqa: BLE001 - the model is user code; it keeps serving, the report says why
            error = _as_warmup_error(exc, f"{spec.name}:{spec.version}")
            report = WarmReport(
                model=spec.name, version=spec.version, target=self.target_name, device_class=self.device_class,
                ready=False, stage_seconds=dict(clock.seconds), cache_hits={"artifact": True, "resident": True},
                compile_mode=spec.compile, reason=str(error), error=str(error), error_type=type(error).__name__,
            )
            entry.report = report
            logger.warning("re-warm failed: %s", error)
            return report
        result = pipeline.PipelineResult(loaded, None, latency, None, True)
        report = self._report(spec, clock, {"artifact": True, "resident": True}, result, baseline)
        entry.report = report
        if not report.ready:
            logger.warning("resident but slower than its baseline: %s", report.reason)
        return report

    def _report(
        self,
        spec: ModelSpec,
        clock: StageClock,
        cache_hits: dict[str, bool | None],
        result: pipeline.PipelineResult,
        baseline: Baseline,
    ) -> WarmReport:
        latency = result.latency
        reason = judge(latency, baseline)
        for stage, seconds in clock.seconds.items():
            self._notify_stage(spec.name, stage, seconds)
        delta = latency.steady_p50_ms - baseline.p50_ms if baseline.p50_ms is not None else None
        return WarmReport(
            model=spec.name, version=spec.version, target=self.target_name, device_class=self.device_class,
            ready=reason is None, stage_seconds=dict(clock.seconds),
            cold_first_request_ms=result.cold_first_request_ms,
            warm_first_request_ms=latency.warm_first_request_ms, first_after_idle_ms=latency.first_after_idle_ms,
            first_after_idle_spread_ms=latency.first_after_idle_spread_ms, steady_p50_ms=latency.steady_p50_ms,
            steady_p99_ms=latency.steady_p99_ms, steady_spread_ms=latency.steady_spread_ms, baseline_p50_ms=baseline.p50_ms, latency_delta_ms=delta,
            time_to_ready_s=clock.elapsed(), memory_mb=result.loaded.memory_mb, cache_hits=cache_hits,
            compile_mode=spec.compile, reason=reason,
        )

    def _fail(
        self, entry: Entry, spec: ModelSpec, clock: StageClock, cache_hits: dict[str, bool | None], error: WarmupError
    ) -> WarmReport:
        report = WarmReport(
            model=spec.name, version=spec.version, target=self.target_name, device_class=self.device_class,
            ready=False, stage_seconds=dict(clock.seconds), cache_hits=cache_hits, compile_mode=spec.compile,
            reason=str(error), error=str(error), error_type=type(error).__name__,
        )
        with self._lock:
            entry.report = report
            if not (entry.state is ModelState.READY and entry.loaded is not None):  # else the old copy serves on
                entry.state, entry.reason, entry.loaded, entry.failed = ModelState.UNAVAILABLE, str(error), None, True
        self._notify_failure(spec.name, type(error).__name__)
        logger.warning("load failed: %s", error)
        return report

    def _check_device(self, spec: ModelSpec) -> None:
        if spec.device == "auto":
            return
        wanted = resolve_device(spec.device)
        if wanted != self.device:
            raise ModelLoadError(
                f"model {spec.name}:{spec.version} asks for device {spec.device!r} but this engine serves {self.device}; "
                f"set device: auto or run it on an engine for {wanted}"
            )

    # -- memory ---------------------------------------------------------------------------------------
    def _reserve(self, spec: ModelSpec, need_mb: float) -> None:
        """Reserve ``need_mb`` for a load, evicting idle unpinned models (LRU) if needed."""
        with self._lock:
            free = self.capacity_mb - self.memory_used_mb
            if need_mb <= free:
                self._reserved_mb += need_mb
                return
            candidates = sorted(
                (e for e in self._entries.values()
                 if e.loaded is not None and not e.spec.pinned and e.loaded.in_flight == 0 and e.spec.name != spec.name),
                key=lambda e: e.loaded.last_used if e.loaded else 0.0,
            )
            victims: list[Entry] = []
            for candidate in candidates:
                if free >= need_mb:
                    break
                victims.append(candidate)
                free += candidate.loaded.memory_mb if candidate.loaded else 0.0
            if free < need_mb:
                raise CapacityError(
                    f"model {spec.name}:{spec.version} needs {need_mb:.1f} MiB but only {free:.1f} of "
                    f"{self.capacity_mb:.1f} MiB can be freed (the rest is pinned or busy); unload a model or "
                    f"raise PREWARM_HOST__DEVICE_MEMORY_MB"
                )
            for victim in victims:
                logger.info("evicting idle model %s:%s to make room for %s", *victim.key, spec.name)
                self._drop(victim, reason=f"evicted to make room for {spec.name}:{spec.version}")
            self._reserved_mb += need_mb

    def _release(self, mb: float) -> None:
        with self._lock:
            self._reserved_mb = max(0.0, self._reserved_mb - mb)

    def _drop(self, entry: Entry, *, reason: str) -> None:
        """Forget the entry's resident model now (the caller drained it, or it had nothing in flight)."""
        with self._lock:
            loaded = entry.loaded
            entry.state, entry.reason, entry.loaded = ModelState.UNAVAILABLE, reason, None
        if loaded is not None:
            loaded.close()
        _free_device(self.device)

    def _drain(self, loaded: pipeline.Loaded) -> bool:
        """Wait up to ``drain_s`` for the requests in flight on ``loaded`` to finish; False if some were left."""
        deadline = time.monotonic() + self.drain_s
        with self._drained:
            while loaded.in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning("%d requests still running after %.1f s of draining; freeing the model anyway",
                                   loaded.in_flight, self.drain_s)
                    return False
                self._drained.wait(left)
        return True

    def _retire(self, entry: Entry, *, reason: str) -> float:
        """Stop new requests to the entry, let those in flight finish (bounded by ``drain_s``), then free it."""
        with self._lock:
            loaded = entry.loaded
            if loaded is None:
                entry.state, entry.reason, entry.failed = ModelState.UNAVAILABLE, reason, False
                return 0.0
            entry.state = ModelState.UNLOADING
        self._drain(loaded)
        self._drop(entry, reason=reason)
        return loaded.memory_mb

    def _retire_other_versions(self, spec: ModelSpec) -> None:
        with self._lock:
            others = [e for e in self._entries.values()
                      if e.spec.name == spec.name and e.spec.version != spec.version and e.loaded is not None]
        for other in others:
            self._retire(other, reason=f"replaced by version {spec.version}")

    def unload(self, name: str, version: str | None = None) -> float:
        """Unload a model version (all versions of ``name`` when ``version`` is None); returns the MiB freed.

        New requests are refused (503) at once; requests in flight finish first, for at most ``drain_s``
        seconds (``PREWARM_HOST__DRAIN_S``), after which the model is freed anyway and they answer 503.
        """
        with self._lock:
            targets = [e for e in self._entries.values()
                       if e.spec.name == name and (version is None or e.spec.version == version)]
        if not targets:
            raise ModelNotFoundError(f"model {name!r}" + (f" version {version!r}" if version else "") + " is not known")
        freed = 0.0
        for entry in targets:
            with entry.lock:
                freed += self._retire(entry, reason="unloaded")
                entry.failed = False
        return freed

    # -- inference ------------------------------------------------------------------------------------
    def acquire(self, name: str, version: str | None) -> pipeline.Loaded:
        """The resident model serving ``name`` (``version``), counted in flight until :meth:`release`.

        Raises :class:`ModelNotFoundError` for an unknown name or version, :class:`ModelNotReadyError` when the
        version is registered but not ready (loading, failed, unloading).
        """
        with self._lock:
            entry = self.get(name, version)
            loaded = entry.loaded
            if entry.state is not ModelState.READY or loaded is None:
                why = f": {entry.reason}" if entry.reason else (": it is unloading" if entry.state is ModelState.UNLOADING else "")
                raise ModelNotReadyError(f"model {entry.spec.name!r} version {entry.spec.version!r} is not ready{why}")
            loaded.in_flight += 1
            return loaded

    def release(self, loaded: pipeline.Loaded) -> None:
        """A request acquired with :meth:`acquire` has finished."""
        with self._drained:
            loaded.in_flight -= 1
            loaded.last_used = time.monotonic()
            if loaded.in_flight == 0:
                self._drained.notify_all()

    def infer(self, name: str, version: str | None, inputs: Mapping[str, torch.Tensor]) -> tuple[Entry, list[torch.Tensor]]:
        """Run one request on a ready model (on its inference thread); returns the entry served and its outputs."""
        loaded = self.acquire(name, version)
        try:
            entry = self.get(loaded.spec.name, loaded.spec.version)
            return entry, loaded.call(_run_checked, loaded, inputs)
        finally:
            self.release(loaded)

    def _notify_stage(self, model: str, stage: str, seconds: float) -> None:
        if self.observer is not None:
            self.observer.stage_finished(model, stage, seconds)

    def _notify_failure(self, model: str, error_type: str) -> None:
        if self.observer is not None:
            self.observer.load_failed(model, error_type)


def _run_checked(loaded: pipeline.Loaded, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    spec = loaded.spec
    with model_context(spec.name, spec.version):
        if loaded.released:
            raise ModelNotReadyError(f"model {spec.name!r} version {spec.version!r} was unloaded; load it again")
        try:
            return loaded.run(inputs)
        except torch.cuda.OutOfMemoryError as exc:
            raise DeviceOutOfMemoryError(f"model {spec.name!r}: out of device memory during inference") from exc
        except Exception as exc:  # the model is user code
            raise InferenceError(f"model {spec.name!r}: inference failed: {type(exc).__name__}: {exc}") from exc


def _as_warmup_error(exc: BaseException, label: str) -> WarmupError:
    cause = exc.__cause__
    if isinstance(exc, DeviceOutOfMemoryError) and isinstance(cause, torch.cuda.OutOfMemoryError):
        return DeviceOutOfMemoryError(f"model {label}: out of device memory while warming: {cause}")
    if isinstance(exc, InferenceError) and cause is not None:  # the model failed on a warm-up request
        return WarmupError(f"model {label}: warm-up request failed: {type(cause).__name__}: {cause}")
    if isinstance(exc, WarmupError):
        return exc
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return DeviceOutOfMemoryError(f"model {label}: out of device memory while warming: {exc}")
    return WarmupError(f"model {label}: failed while warming: {type(exc).__name__}: {exc}")


def _free_device(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
