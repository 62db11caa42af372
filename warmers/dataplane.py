"""The protocol-neutral data plane: what the HTTP routes call. No HTTP types in here.

It joins the model repository (specs the host may load) with the engine (models it has loaded), and sends
each request's bytes to the serving path (:func:`warmers.pipeline.serve_request`) on the model's inference
thread: parsing, decoding, the model and encoding all run off the event loop. It also keeps the per-model
statistics and the views (model configuration, readiness) that the HTTP routes show.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from prewarm.errors import PrewarmError
from prewarm.fleet import ModelSpec, TensorSpec
from warmers import pipeline
from warmers.codec import Encoded
from warmers.engine import Engine, ModelState
from warmers.errors import ModelNotFoundError, ModelNotReadyError, WarmupError
from warmers.protocol import MetadataModel, MetadataServer, MetadataTensor, RepositoryIndexItem
from warmers.report import WarmReport
from warmers.sources import SpecSource
from warmers.stats import InferenceStats
from warmers.tensors import metadata_shape

logger = logging.getLogger(__name__)

SERVER_NAME = "prewarm"
EXTENSIONS = ["model_repository", "binary_tensor_data", "model_configuration", "statistics", "classification"]
# Both loaders produce PyTorch modules; the protocol's platform list names PyTorch once.
PLATFORM = "pytorch_torchscript"


class ModelRepository:
    """The specs this host may load, refreshed from its source when a name is not found.

    A name that is not found is remembered for ``miss_ttl_s``, and misses re-read the source at most once per
    ``refresh_interval_s``: a stream of requests for unknown names cannot turn into a stream of registry
    queries. A load (``find(..., refresh=True)``) always re-reads the source, so a model registered a moment
    ago can be loaded at once.
    """

    def __init__(
        self,
        source: SpecSource,
        *,
        miss_ttl_s: float = 5.0,
        refresh_interval_s: float = 1.0,
        max_misses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._clock = clock
        self._specs: dict[str, ModelSpec] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._misses: dict[str, float] = {}
        self._miss_ttl_s = miss_ttl_s
        self._refresh_interval_s = refresh_interval_s
        self._max_misses = max_misses
        self._refreshed_at = -math.inf
        self.refreshes = 0

    def refresh(self) -> list[ModelSpec]:
        """Read the source again; a source that fails keeps the specs already known."""
        with self._refresh_lock:
            self._refreshed_at = self._clock()
            self.refreshes += 1
            try:
                specs = self._source()
            except PrewarmError as exc:
                logger.error("cannot read the model specs: %s", exc)
                return self.specs()
            with self._lock:
                self._specs = {spec.name: spec for spec in specs}
                self._misses.clear()
            return specs

    def specs(self) -> list[ModelSpec]:
        """The specs known now."""
        with self._lock:
            return list(self._specs.values())

    def find(self, name: str, *, refresh: bool = False) -> ModelSpec:
        """The spec of ``name``, re-reading the source first (``refresh``) or on a miss; 404 if still unknown."""
        with self._lock:
            spec = None if refresh else self._specs.get(name)
        if spec is None and (refresh or self._may_refresh(name)):
            spec = {s.name: s for s in self.refresh()}.get(name)
        if spec is None:
            self._remember_miss(name)
            raise ModelNotFoundError(f"model {name!r} is not in this host's repository; POST /v2/repository/index lists models")
        return spec

    def _may_refresh(self, name: str) -> bool:
        now = self._clock()
        with self._lock:
            missed = self._misses.get(name)
            if missed is not None and now - missed < self._miss_ttl_s:
                return False
            return now - self._refreshed_at >= self._refresh_interval_s

    def _remember_miss(self, name: str) -> None:
        with self._lock:
            if len(self._misses) >= self._max_misses:
                self._misses.pop(next(iter(self._misses)))
            self._misses[name] = self._clock()


@dataclass(frozen=True)
class InferResult:
    """A served request: the response bytes and the model version that answered."""

    response: Encoded
    model: str
    version: str
    ready_at: float | None


class DataPlane:
    """Health, metadata, inference and repository operations over one engine and one repository."""

    def __init__(self, engine: Engine, repository: ModelRepository) -> None:
        self.engine = engine
        self.repository = repository
        self.started = threading.Event()
        self.stats = InferenceStats()
        self._outputs: dict[tuple[str, str, str], list[TensorSpec]] = {}

    # -- health and metadata --------------------------------------------------------------------------
    def ready(self) -> tuple[bool, str | None]:
        """Server readiness, and why not.

        Ready once the start-up loads have finished and no registered model version's last load failed. A
        failed version stays in the repository index as ``UNAVAILABLE`` with its reason until a load of it
        succeeds or it is unloaded.
        """
        if not self.started.is_set():
            return False, "the start-up loads are still running"
        failed = [e for e in self.engine.entries() if e.failed]
        if not failed:
            return True, None
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return False, f"model {first.spec.name!r} version {first.spec.version!r} failed to load: {first.reason}{more}"

    def server_metadata(self) -> MetadataServer:
        """Name, version and supported extensions."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("prewarm")
        except PackageNotFoundError:
            ours = "0"
        return MetadataServer(name=SERVER_NAME, version=ours, extensions=EXTENSIONS)

    def spec(self, name: str, version: str | None) -> ModelSpec:
        """The spec of a registered version, else of the repository's; 404 for an unknown name or version."""
        try:
            return self.engine.get(name, version).spec
        except ModelNotFoundError:
            spec = self.repository.find(name)
            if version is not None and spec.version != version:
                raise ModelNotFoundError(f"model {name!r} has no version {version!r} (known: {spec.version!r})") from None
            return spec

    def outputs(self, spec: ModelSpec) -> list[TensorSpec]:
        """Declared outputs, else those of the resident model, else those inferred on the meta device (cached)."""
        if spec.warmup.outputs:
            return list(spec.warmup.outputs)
        try:
            entry = self.engine.get(spec.name, spec.version)
            if entry.loaded is not None and entry.spec == spec:
                return list(entry.loaded.outputs)
        except ModelNotFoundError:
            pass
        key = (spec.name, spec.version, spec.sha256)
        if key not in self._outputs:
            self._outputs[key] = pipeline.outputs_on_meta(spec)
        return self._outputs[key]

    def versions(self, name: str) -> list[str]:
        """Versions a client can use: ready or loading ones, and the one the repository would load."""
        usable = {e.spec.version for e in self.engine.entries()
                  if e.spec.name == name and e.state in (ModelState.READY, ModelState.LOADING)}
        try:
            usable.add(self.repository.find(name).version)
        except ModelNotFoundError:
            pass
        return sorted(usable)

    def model_metadata(self, name: str, version: str | None) -> MetadataModel:
        """Input and output names, datatypes and shapes (-1 for variable dimensions)."""
        spec = self.spec(name, version)
        return MetadataModel(
            name=spec.name, versions=self.versions(name) or [spec.version], platform=PLATFORM,
            inputs=[MetadataTensor(name=t.name, datatype=t.datatype, shape=metadata_shape(t)) for t in spec.warmup.inputs],
            outputs=[MetadataTensor(name=t.name, datatype=t.datatype, shape=metadata_shape(t)) for t in self.outputs(spec)],
            properties={"loader": spec.loader, "version": spec.version},
        )

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        """The model's configuration in Triton's JSON shape (what ``tritonclient``'s ``get_model_config`` reads)."""
        spec = self.spec(name, version)
        return triton_config(spec, self.outputs(spec), device=self.engine.device)

    def model_ready(self, name: str, version: str | None) -> tuple[bool, str | None]:
        """Whether the model version is ready, and why not."""
        self.spec(name, version)
        try:
            entry = self.engine.get(name, version)
        except ModelNotFoundError:
            return False, "not loaded"
        if entry.state is ModelState.READY:
            return True, None
        return False, entry.reason or entry.state.value.lower()

    def statistics(self, name: str | None, version: str | None) -> dict[str, Any]:
        """Inference statistics in Triton's JSON shape, for one model (version) or every model."""
        if name is None:
            keys = sorted({(s.name, s.version) for s in self.repository.specs()} | {e.key for e in self.engine.entries()})
        else:
            spec = self.spec(name, version)
            keys = [(spec.name, spec.version)] if version is not None else sorted(
                {(name, v) for v in self.versions(name)} | {k for k in self.stats.keys() if k[0] == name}
            )
        return {"model_stats": [self.stats.triton(model, model_version) for model, model_version in keys]}

    def labels(self, name: str, version: str | None) -> tuple[str, str] | None:
        """The ``(model, version)`` a request is counted under; None for a name or version this host does not know."""
        try:
            return self.engine.get(name, version).key
        except ModelNotFoundError:
            pass
        try:
            spec = self.repository.find(name)
        except ModelNotFoundError:
            return None
        if version is not None and version != spec.version:
            return None
        return (spec.name, spec.version)

    # -- inference ------------------------------------------------------------------------------------
    def check_servable(self, name: str, version: str | None) -> None:
        """Raise what :meth:`infer` would raise before reading a body: 404 unknown, 503 not ready (may read the source)."""
        try:
            entry = self.engine.get(name, version)
        except ModelNotFoundError:
            self.spec(name, version)  # unknown -> 404; known but never loaded -> not ready
            raise ModelNotReadyError(
                f"model {name!r} is not loaded; POST /v2/repository/models/{name}/load loads and warms it"
            ) from None
        if entry.state is not ModelState.READY:
            self.engine.acquire(name, version)  # raises the not-ready error with its reason

    def is_registered(self, name: str, version: str | None) -> bool:
        """Whether the engine has a version of ``name`` (answering without reading the repository's source)."""
        try:
            self.engine.get(name, version)
        except ModelNotFoundError:
            return False
        return True

    async def infer(
        self, name: str, version: str | None, body: bytes, header_length: str | None, *, record: bool = True
    ) -> InferResult:
        """Serve one serialized request on the model's inference thread (in the statistics unless not ``record``).

        The model stays counted in flight until the request has finished on its thread, even when the client
        went away meanwhile, so an unload waits for it.
        """
        loaded = self.engine.acquire(name, version)
        spec = loaded.spec
        started = time.perf_counter_ns()
        try:
            future = loaded.submit(body, header_length)
        except RuntimeError:  # the executor shut down between acquire and submit: unloaded meanwhile
            self.engine.release(loaded)
            raise ModelNotReadyError(f"model {spec.name!r} version {spec.version!r} was unloaded; load it again") from None
        future.add_done_callback(lambda _: self.engine.release(loaded))
        try:
            served = await asyncio.wrap_future(future)
        except WarmupError:
            if record:
                self.stats.failed(spec.name, spec.version, time.perf_counter_ns() - started)
            raise
        if record:
            self.stats.succeeded(spec.name, spec.version, time.perf_counter_ns() - started, served)
        return InferResult(served.response, spec.name, spec.version, loaded.ready_at)

    # -- repository -----------------------------------------------------------------------------------
    def index(self, *, ready_only: bool = False) -> list[RepositoryIndexItem]:
        """Every model the host knows: loaded ones with their state, the rest of the repository as not loaded."""
        items: dict[tuple[str, str], RepositoryIndexItem] = {}
        for spec in self.repository.specs():
            items[(spec.name, spec.version)] = RepositoryIndexItem(
                name=spec.name, version=spec.version, state=ModelState.UNAVAILABLE.value, reason="not loaded"
            )
        for entry in self.engine.entries():
            items[entry.key] = RepositoryIndexItem(
                name=entry.spec.name, version=entry.spec.version, state=entry.state.value, reason=entry.reason or ""
            )
        listed = sorted(items.values(), key=lambda i: (i.name, i.version or ""))
        return [i for i in listed if i.state == ModelState.READY.value] if ready_only else listed

    async def load(self, name: str) -> WarmReport:
        """Fetch, load, warm and validate ``name`` from the repository; the report says if it became ready."""
        spec = await anyio.to_thread.run_sync(lambda: self.repository.find(name, refresh=True))
        return await anyio.to_thread.run_sync(lambda: self.engine.warm(spec))

    async def unload(self, name: str) -> float:
        """Unload every version of ``name`` (after its requests in flight); returns the MiB of device memory freed."""
        return await anyio.to_thread.run_sync(self.engine.unload, name)

    def load_all(self, *, then: Callable[[], None] | None = None) -> list[WarmReport]:
        """Load every model of the repository, highest priority first (the host's start-up).

        ``then`` runs after the loads and before the server reports ready (the host's loopback pass).
        """
        try:
            specs = sorted(self.repository.refresh(), key=lambda s: -s.priority)
            reports = [self.engine.warm(spec) for spec in specs]
            if then is not None:
                then()
            return reports
        finally:
            self.started.set()


TRITON_TYPES = {"BYTES": "TYPE_STRING"}


def _triton_type(datatype: str) -> str:
    return TRITON_TYPES.get(datatype, f"TYPE_{datatype}")


def triton_config(spec: ModelSpec, outputs: list[TensorSpec], *, device: Any) -> dict[str, Any]:
    """A Triton model configuration (JSON form of ``model_config.proto``) describing ``spec``.

    ``max_batch_size`` is 0: the batch dimension is part of every ``dims`` (-1 where variable), as Triton
    writes models that batch themselves. ``model_warmup`` lists the warm-up requests: one entry per bucket
    combination, ``count`` times, with random data.
    """
    from warmers.tensors import bucket_combinations, concrete_shape

    kind = "KIND_GPU" if getattr(device, "type", "cpu") == "cuda" else "KIND_CPU"
    group: dict[str, Any] = {"name": f"{spec.name}_0", "kind": kind, "count": 1}
    if kind == "KIND_GPU":
        group["gpus"] = [device.index or 0]
    warmup = [
        {
            "name": "bucket " + (", ".join(f"{k}={v}" for k, v in dims.items()) or "default"),
            "batch_size": 0,
            "count": spec.warmup.iterations,
            "inputs": {
                t.name: {"data_type": _triton_type(t.datatype), "dims": list(concrete_shape(t, dims)), "random_data": True}
                for t in spec.warmup.inputs
            },
        }
        for dims in bucket_combinations(spec.warmup)
    ]
    return {
        "name": spec.name,
        "platform": "pytorch_libtorch",
        "backend": "pytorch",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": 0,
        "input": [
            {"name": t.name, "data_type": _triton_type(t.datatype), "format": "FORMAT_NONE", "dims": metadata_shape(t),
             "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False}
            for t in spec.warmup.inputs
        ],
        "output": [
            {"name": t.name, "data_type": _triton_type(t.datatype), "dims": metadata_shape(t), "label_filename": "",
             "is_shape_tensor": False}
            for t in outputs
        ],
        "instance_group": [group],
        "model_warmup": warmup,
        "parameters": {
            "prewarm_loader": {"string_value": spec.loader},
            "prewarm_version": {"string_value": spec.version},
            "prewarm_compile": {"string_value": spec.compile},
            "prewarm_probes": {"string_value": str(spec.warmup.probes)},
        },
    }
