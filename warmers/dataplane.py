"""The protocol-neutral data plane: what the HTTP routes call. No HTTP types in here.

It joins the model repository (specs the host may load) with the engine (models it has loaded), decodes
request tensors against the model's input specs, and runs loads and inferences off the event loop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio.to_thread

from prewarm.errors import PrewarmError
from prewarm.fleet import ModelSpec
from warmers.engine import Engine, ModelState
from warmers.errors import InferenceInputError, ModelNotFoundError, ModelNotReadyError
from warmers.protocol import (
    InferenceRequest,
    InferenceResponse,
    MetadataModel,
    MetadataServer,
    MetadataTensor,
    RepositoryIndexItem,
    ResponseOutput,
)
from warmers.report import WarmReport
from warmers.sources import SpecSource
from warmers.tensors import (
    check_request_names,
    decode_tensor,
    encode_binary,
    encode_json,
    metadata_shape,
    v2_datatype,
)

logger = logging.getLogger(__name__)

SERVER_NAME = "prewarm"
EXTENSIONS = ["model_repository", "binary_tensor_data"]


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


class DataPlane:
    """Health, metadata, inference and repository operations over one engine and one repository."""

    def __init__(self, engine: Engine, repository: ModelRepository) -> None:
        self.engine = engine
        self.repository = repository
        self.started = threading.Event()

    # -- health and metadata --------------------------------------------------------------------------
    def ready(self) -> bool:
        """The server is ready once its start-up loads have finished (whatever their outcome)."""
        return self.started.is_set()

    def server_metadata(self) -> MetadataServer:
        """Name, version and supported extensions."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("prewarm")
        except PackageNotFoundError:
            ours = "0"
        return MetadataServer(name=SERVER_NAME, version=ours, extensions=EXTENSIONS)

    def _spec(self, name: str, version: str | None) -> ModelSpec:
        try:
            return self.engine.get(name, version).spec
        except ModelNotFoundError:
            spec = self.repository.find(name)
            if version is not None and spec.version != version:
                raise ModelNotFoundError(f"model {name!r} has no version {version!r} (known: {spec.version!r})") from None
            return spec

    def model_metadata(self, name: str, version: str | None) -> MetadataModel:
        """Input and output names, datatypes and shapes (-1 for variable dimensions)."""
        spec = self._spec(name, version)
        try:
            entry = self.engine.get(name, spec.version)
            outputs = entry.loaded.outputs if entry.loaded is not None else list(spec.warmup.outputs)
        except ModelNotFoundError:
            outputs = list(spec.warmup.outputs)
        versions = sorted({e.spec.version for e in self.engine.entries() if e.spec.name == name} | {spec.version})
        return MetadataModel(
            name=spec.name, versions=versions, platform=f"pytorch_{spec.loader}",
            inputs=[MetadataTensor(name=t.name, datatype=t.datatype, shape=metadata_shape(t)) for t in spec.warmup.inputs],
            outputs=[MetadataTensor(name=t.name, datatype=t.datatype, shape=metadata_shape(t)) for t in outputs],
        )

    def model_ready(self, name: str, version: str | None) -> tuple[bool, str | None]:
        """Whether the model version is ready, and why not."""
        self._spec(name, version)
        try:
            entry = self.engine.get(name, version)
        except ModelNotFoundError:
            return False, "not loaded"
        return entry.state is ModelState.READY, entry.reason

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
    async def infer(
        self, name: str, version: str | None, request: InferenceRequest, binary: Mapping[str, bytes]
    ) -> tuple[InferenceResponse, list[bytes], float | None]:
        """Decode, run and encode one request; binary outputs come back as a list of blobs in output order.

        The third item is when the served version became ready (``time.monotonic()``).
        """
        try:
            entry = self.engine.get(name, version)
        except ModelNotFoundError:
            self._spec(name, version)  # unknown -> 404; known but never loaded -> not ready
            raise ModelNotReadyError(
                f"model {name!r} is not loaded; POST /v2/repository/models/{name}/load loads and warms it"
            ) from None
        spec = entry.spec
        check_request_names(spec.name, spec.warmup.inputs, [i.name for i in request.inputs])
        for item in request.inputs:
            if item.data is None and item.name not in binary:
                raise InferenceInputError(f"model {spec.name!r}: input {item.name!r} has neither data nor binary data")
        by_name = {t.name: t for t in spec.warmup.inputs}
        tensors = {
            item.name: decode_tensor(
                spec.name, by_name[item.name], spec.warmup.buckets, datatype=item.datatype, shape=item.shape,
                data=item.data, raw=binary.get(item.name),
            )
            for item in request.inputs
        }
        served, outputs = await anyio.to_thread.run_sync(self.engine.infer, name, version, tensors)
        assert served.loaded is not None
        return (*self._encode(served.spec, served.loaded.outputs, outputs, request), served.loaded.ready_at)

    def _encode(
        self, spec: ModelSpec, output_specs: list[Any], outputs: list[Any], request: InferenceRequest
    ) -> tuple[InferenceResponse, list[bytes]]:
        names = [o.name for o in output_specs] or [f"output{i}" for i in range(len(outputs))]
        binary_all = bool((request.parameters or {}).get("binary_data_output", False))
        wanted: dict[str, bool] = {}
        for requested in request.outputs or []:
            if requested.name not in names:
                raise InferenceInputError(
                    f"model {spec.name!r}: requested output {requested.name!r} does not exist; outputs are {', '.join(names)}"
                )
            wanted[requested.name] = bool((requested.parameters or {}).get("binary_data", binary_all))
        if not wanted:
            wanted = {n: binary_all for n in names}
        response_outputs: list[ResponseOutput] = []
        blobs: list[bytes] = []
        for out_name, tensor in zip(names, outputs, strict=False):
            if out_name not in wanted:
                continue
            item = ResponseOutput(name=out_name, shape=list(tensor.shape), datatype=v2_datatype(tensor.dtype))
            if wanted[out_name]:
                blob = encode_binary(tensor)
                item.parameters = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                item.data = encode_json(tensor)
            response_outputs.append(item)
        return InferenceResponse(
            model_name=spec.name, model_version=spec.version, id=request.id, outputs=response_outputs
        ), blobs

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
        """Unload every version of ``name``; returns the MiB of device memory freed."""
        return await anyio.to_thread.run_sync(self.engine.unload, name)

    def load_all(self) -> list[WarmReport]:
        """Load every model of the repository, highest priority first (the host's start-up)."""
        try:
            specs = sorted(self.repository.refresh(), key=lambda s: -s.priority)
            return [self.engine.warm(spec) for spec in specs]
        finally:
            self.started.set()
