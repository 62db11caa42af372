"""Warm targets: where a warm run happens. ``Engine`` is the in-process target; :class:`V2Target` is any V2 server.

:class:`V2Client` speaks the Open Inference Protocol's REST routes and its repository extension to one server
(a prewarm host, MLServer, KServe, Triton) and adapts to what that server supports:

- **versioned routes** (``/v2/models/{m}/versions/{v}/...``): told by ``versioned_routes``, or detected per
  model: KServe answers every versioned route with 501, MLServer answers 404 for a model that has no version.
  Where they do not apply, the version-less routes are used;
- **the repository index**: where the server has none (KServe answers 404), :meth:`V2Client.index` asks each
  model's ready route instead;
- **authentication**: ``Authorization: Bearer <token>`` on every call when ``PREWARM_HOST__TOKEN`` is set
  (or ``token=`` is given).

Every failure raises :class:`~warmers.errors.TargetError` (or a subclass) with the server's status and body.

:class:`V2Target` adds the warm run: load through the repository extension, check the warm-up inputs against
the model's metadata, send the spec's warm-up requests, probe latency from the client side (so its figures
include the network and the server's HTTP stack). When the server is a prewarm host, its own warm report
(server-side cold first request, memory, cache hits, device class) is merged in.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import httpx
import torch

from prewarm.fleet import ModelSpec, TensorSpec, WarmupSpec
from prewarm.settings import get_settings
from warmers.errors import MetadataMismatchError, ModelNotFoundError, TargetError, WarmupError
from warmers.pipeline import IDLE_GAP_S, IDLE_PROBES, SEED
from warmers.report import Baseline, Latency, StageClock, WarmReport, judge
from warmers.tensors import bucket_combinations, encode_json, example_inputs

logger = logging.getLogger(__name__)

# Longest server body quoted in an error: the head says what failed, the tail holds a traceback's last line.
BODY_EXCERPT_CHARS = 400
_HEAD_CHARS = 150

# Answers of a ready route that mean "known, or not, but not ready" rather than a failed call:
# 400 (MLServer, prewarm), 404 (unknown or unloaded model), 503 (KServe, prewarm).
_NOT_READY = (400, 404, 503)
# Answers of POST /v2/repository/index from a server that has no index (KServe: 404).
_NO_INDEX = (404, 405, 501)


class Target(Protocol):
    """Something a model can be warmed on."""

    target_name: str

    def warm(self, spec: ModelSpec, *, baseline: Baseline | None = None) -> WarmReport:
        """Load, warm and validate ``spec``; never raises for a model that fails to become ready."""
        ...


def warm(spec: ModelSpec, *, target: Target, baseline: Baseline | None = None) -> WarmReport:
    """Warm ``spec`` on ``target`` (an :class:`~warmers.engine.Engine` or a :class:`V2Target`) and report.

    ``baseline`` carries previous successful runs' p50 and first-request latency on this device class; the
    spec's ``sla_p99_ms`` is added to it. The report's ``ready`` says whether the model may take traffic.
    """
    return target.warm(spec, baseline=baseline)


@dataclass(frozen=True, kw_only=True)
class TensorMetadata:
    """One input or output as a server's model metadata declares it; ``-1`` is a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ModelMetadata:
    """``GET /v2/models/{m}[/versions/{v}]``: what the server says the model takes and returns."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]

    @classmethod
    def from_json(cls, body: Any) -> ModelMetadata:
        """Parse a metadata body; raises ``ValueError`` naming the field that does not fit the protocol."""
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise ValueError("the body is not a model metadata object with a 'name'")
        return cls(
            name=body["name"],
            versions=tuple(str(v) for v in body.get("versions") or ()),
            platform=str(body.get("platform") or ""),
            inputs=_tensors(body.get("inputs"), "inputs"),
            outputs=_tensors(body.get("outputs"), "outputs"),
        )


@dataclass(frozen=True, kw_only=True)
class RepositoryModel:
    """One entry of a server's repository index; ``version`` is None for a model without versions."""

    name: str
    version: str | None
    state: str
    reason: str = ""

    @property
    def ready(self) -> bool:
        """Whether the server reports this model ready to serve."""
        return self.state == "READY"


class V2Client:
    """One Open Inference Protocol V2 server: metadata, readiness, the repository extension, inference.

    ``versioned_routes`` is True or False when the host inventory knows whether the server has versioned
    routes, None to detect it. ``token`` overrides ``PREWARM_HOST__TOKEN`` (an empty string sends none).
    Connections are kept alive between calls; :meth:`close` (or ``with``) releases them. Thread-safe.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        versioned_routes: bool | None = None,
        timeout_s: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.versioned_routes = versioned_routes
        self._timeout = timeout_s
        self._transport = transport
        self._token = _settings_token() if token is None else token
        self._routes: dict[tuple[str, str], str] = {}
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> V2Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connections (a later call opens new ones)."""
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()

    # -- the repository extension -------------------------------------------------------------------------

    def index(self, *, names: Iterable[str] = (), ready_only: bool = False) -> list[RepositoryModel]:
        """The models the server holds, with their state (``READY``, ``UNAVAILABLE``, ``LOADING``, ...).

        ``POST /v2/repository/index`` where the server has it. Where it has none (KServe), the models come
        from ``names`` and from KServe's ``GET /v2/models`` list, each with the state its ready route gives
        (``READY`` or ``UNAVAILABLE``, version None). ``ready_only`` keeps the ready ones.
        """
        response = self._request("POST", "/v2/repository/index", json={"ready": True} if ready_only else {})
        if response.status_code in _NO_INDEX:
            return self._index_from_ready_routes(names, ready_only=ready_only)
        if response.status_code != 200:
            raise self._failure("repository index", response)
        body = _json(response)
        if not isinstance(body, list):
            raise self._failure("repository index (not a JSON list)", response)
        items = [_index_item(entry) for entry in body if isinstance(entry, dict) and entry.get("name")]
        return [item for item in items if item.ready or not ready_only]

    def load(self, name: str) -> dict[str, Any]:
        """``POST /v2/repository/models/{name}/load``; returns the server's answer (a prewarm host's carries its
        warm report under ``report``). Raises :class:`ModelNotFoundError` (404) or :class:`TargetError`.
        """
        response = self._request("POST", f"/v2/repository/models/{name}/load", json={})
        body = _json(response)
        if response.status_code == 404:
            excerpt = body_excerpt(response)
            raise ModelNotFoundError(
                f"{self.url}: model {name!r} is not in the server's repository (HTTP 404: {excerpt})"
            )
        if response.status_code != 200:
            error = self._failure(f"load of {name!r}", response)
            report = body.get("report") if isinstance(body, dict) else None
            error.server_report = report or {}  # type: ignore[attr-defined]  # a prewarm host's failed warm run
            raise error
        return body if isinstance(body, dict) else {}

    def unload(self, name: str, version: str | None = None) -> bool:
        """Unload ``name``; False when the server did not hold it (or not ``version`` of it), True otherwise.

        The repository extension unloads a model by name, every version at once. With ``version``, the call
        first checks that the server serves that version (or the model has no versions there), so unloading
        an old version never takes down the new one a roll-out put in its place. A server without versioned
        routes (KServe) cannot say which version it holds: there the name alone decides.
        """
        if version is not None:
            try:
                self.model_path(name, version)
            except TargetError as exc:
                if exc.status_code == 404:
                    return False
                raise
        response = self._request("POST", f"/v2/repository/models/{name}/unload", json={})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise self._failure(f"unload of {name!r}", response)
        self._forget(name)
        return True

    # -- the data plane -------------------------------------------------------------------------------------

    def ready(self, name: str, version: str | None = None) -> bool:
        """Whether the server reports ``name`` (``version``) ready: its ready route answers 200.

        False for a model or version it does not hold, or holds but not ready; :class:`TargetError` when the
        call itself fails (unreachable server, 401, 500).
        """
        try:
            path = self.model_path(name, version)
        except TargetError as exc:
            if exc.status_code == 404:
                return False
            raise
        response = self._request("GET", f"{path}/ready")
        if response.status_code == 200:
            return True
        if response.status_code in _NOT_READY:
            return False
        raise self._failure(f"ready check of {name!r}", response)

    def metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """The model's metadata: ``GET /v2/models/{m}[/versions/{v}]`` (version-less where versions don't apply)."""
        path = self.model_path(name, version)
        response = self._request("GET", path)
        if response.status_code != 200:
            raise self._failure(f"metadata of {name!r}", response)
        try:
            return ModelMetadata.from_json(_json(response))
        except ValueError as exc:
            raise self._failure(f"metadata of {name!r} ({exc})", response) from None

    def infer(self, name: str, version: str | None, body: dict[str, Any]) -> httpx.Response:
        """``POST .../infer`` with a JSON body; returns the 200 response, else raises :class:`TargetError`."""
        response = self._request("POST", f"{self.model_path(name, version)}/infer", json=body)
        if response.status_code != 200:
            raise self._failure(f"inference on {name!r}", response)
        return response

    # -- routes ---------------------------------------------------------------------------------------------

    def model_path(self, name: str, version: str | None = None) -> str:
        """The route prefix of ``name`` ``version`` here: ``/v2/models/{m}/versions/{v}``, or ``/v2/models/{m}``
        where the server has no versioned routes or the model has no versions.

        Raises :class:`TargetError` with status 404 when the model has versions there but not ``version``.
        A decision is remembered per model and version; an unload forgets it.
        """
        plain = f"/v2/models/{name}"
        if version is None or self.versioned_routes is False:
            return plain
        versioned = f"{plain}/versions/{version}"
        if self.versioned_routes is True:
            return versioned
        known = self._routes.get((name, version))
        if known is not None:
            return known
        path = self._detect(name, version)
        if path is not None:
            self._routes[(name, version)] = path
        return path or versioned

    def _detect(self, name: str, version: str) -> str | None:
        """Which route serves ``name`` ``version``; None while the server does not know the model (unloaded)."""
        plain, versioned = f"/v2/models/{name}", f"/v2/models/{name}/versions/{version}"
        answer = self._request("GET", versioned)
        if answer.status_code == 200:
            return versioned
        if answer.status_code == 501:  # KServe: "Model versioning not supported yet." on every versioned route
            logger.info("%s has no versioned routes (501): using version-less routes", self.url)
            self.versioned_routes = False
            return plain
        if answer.status_code != 404:
            return None
        unversioned = self._request("GET", plain)
        if unversioned.status_code != 200:
            return None
        declared = set(_metadata_versions(unversioned)) | self._indexed_versions(name)
        if declared:
            raise TargetError(
                f"{self.url}: model {name!r} has version(s) {', '.join(sorted(declared))} there, "
                f"not {version!r}: set `version:` of the fleet entry to the version to warm (HTTP 404: {body_excerpt(answer)})",
                status_code=404,
                body=body_excerpt(answer),
            )
        logger.info("%s holds model %r without versions: using version-less routes for it", self.url, name)
        return plain

    def _indexed_versions(self, name: str) -> set[str]:
        try:
            return {item.version for item in self.index() if item.name == name and item.version}
        except TargetError:
            return set()

    def _index_from_ready_routes(self, names: Iterable[str], *, ready_only: bool) -> list[RepositoryModel]:
        wanted = list(dict.fromkeys([*names, *self._listed_models()]))
        items = [
            RepositoryModel(name=name, version=None, state="READY" if self.ready(name) else "UNAVAILABLE")
            for name in wanted
        ]
        return [item for item in items if item.ready or not ready_only]

    def _listed_models(self) -> list[str]:
        """KServe's ``GET /v2/models`` (``{"models": [...]}``); empty where the server has no such route."""
        response = self._request("GET", "/v2/models")
        body = _json(response) if response.status_code == 200 else None
        models = body.get("models") if isinstance(body, dict) else None
        return [str(m) for m in models] if isinstance(models, list) else []

    def _forget(self, name: str) -> None:
        for key in [key for key in self._routes if key[0] == name]:
            self._routes.pop(key, None)

    # -- HTTP -----------------------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
                self._http = httpx.Client(
                    base_url=self.url, timeout=self._timeout, transport=self._transport, headers=headers
                )
            return self._http

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client().request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc or 'no answer'}"
            raise TargetError(f"{self.url}: {method} {path}: {problem}") from exc

    def _failure(self, what: str, response: httpx.Response) -> TargetError:
        excerpt = body_excerpt(response)
        return TargetError(
            f"{self.url}: {what} failed (HTTP {response.status_code}): {excerpt}",
            status_code=response.status_code,
            body=excerpt,
        )


class V2Target(V2Client):
    """A remote Open Inference Protocol V2 server (prewarm host, Triton, KServe, MLServer) as a warm target."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        versioned_routes: bool | None = None,
        timeout_s: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            url, token=token, versioned_routes=versioned_routes, timeout_s=timeout_s, transport=transport
        )
        self.target_name = self.url
        self._request_ids = itertools.count(1)

    def warm(self, spec: ModelSpec, *, baseline: Baseline | None = None) -> WarmReport:
        """Load ``spec.name``, check its warm-up inputs against the server's metadata, warm up, probe.

        The report is judged client-side. Never raises for a model that fails to become ready: the report's
        ``error`` carries the server's status and body.
        """
        baseline = (baseline or Baseline()).with_sla(spec.sla_p99_ms)
        clock = StageClock()
        server_report: dict[str, Any] = {}
        try:
            with clock.stage("load"):
                server_report = self._load_until_ready(spec)
            with clock.stage("metadata"):
                self.check_inputs(spec)
            generator = torch.Generator().manual_seed(SEED)
            combos = bucket_combinations(spec.warmup)
            probe = self._body(spec, example_inputs(spec.warmup, combos[0], generator=generator))
            before = self.serving_totals(spec.name, spec.version)
            with clock.stage("cold_first_request"):
                first_ms = self._infer_ms(spec, probe)
            after = self.serving_totals(spec.name, spec.version)
            with clock.stage("warmup"):
                for dims in [*combos, combos[0]]:  # end on the primary bucket, as the engine does
                    body = self._body(spec, example_inputs(spec.warmup, dims, generator=generator))
                    for _ in range(spec.warmup.iterations):
                        self._infer_ms(spec, body)
            with clock.stage("validate"):
                latency = self._probe(spec, probe)
        except WarmupError as exc:
            return self._failed(spec, clock, exc, server_report)
        client = latency
        latency = _host_latency(server_report) or client
        reason = judge(latency, baseline)
        delta = latency.steady_p50_ms - baseline.p50_ms if baseline.p50_ms is not None else None
        stages = dict(clock.seconds)
        stages.update({f"server_{k}": v for k, v in (server_report.get("stage_seconds") or {}).items()})
        cold_ms, warm_ms = _first_requests(server_report, before, after, client_first_ms=first_ms, latency=client)
        return WarmReport(
            model=spec.name, version=spec.version, target=self.target_name,
            device_class=server_report.get("device_class") or f"v2:{self.url}", ready=reason is None,
            stage_seconds=stages, cold_first_request_ms=cold_ms, warm_first_request_ms=warm_ms,
            client_first_request_ms=first_ms, client_steady_p50_ms=client.steady_p50_ms,
            first_after_idle_ms=latency.first_after_idle_ms,
            first_after_idle_spread_ms=latency.first_after_idle_spread_ms, steady_p50_ms=latency.steady_p50_ms,
            steady_p99_ms=latency.steady_p99_ms, steady_spread_ms=latency.steady_spread_ms,
            baseline_p50_ms=baseline.p50_ms, latency_delta_ms=delta,
            time_to_ready_s=clock.elapsed(), memory_mb=server_report.get("memory_mb"),
            cache_hits=server_report.get("cache_hits") or {}, compile_mode=spec.compile, reason=reason,
        )

    def serving_totals(self, name: str, version: str | None) -> tuple[int, int] | None:
        """The server's count of successful requests of the model version and their summed serving-path ns.

        Read from Triton's statistics extension (``GET .../stats``, which a prewarm host and Triton answer):
        ``queue``, ``compute_input``, ``compute_infer`` and ``compute_output``. None where the server has no
        statistics or answers in another shape.
        """
        try:
            response = self._request("GET", f"{self.model_path(name, version)}/stats")
        except TargetError:
            return None
        body = _json(response) if response.status_code == 200 else None
        entries = body.get("model_stats") if isinstance(body, dict) else None
        stats = entries[0].get("inference_stats") if isinstance(entries, list) and len(entries) == 1 else None
        if not isinstance(stats, dict):
            return None
        try:
            count = int(stats["success"]["count"])
            ns = sum(int(stats[phase]["ns"]) for phase in ("queue", "compute_input", "compute_infer", "compute_output"))
        except (KeyError, TypeError, ValueError):
            return None
        return count, ns

    def _probe(self, spec: ModelSpec, probe: dict[str, Any]) -> Latency:
        """The engine's validation from the client side: the first request, after idle gaps, back to back."""
        first = self._infer_ms(spec, probe)
        idle: list[float] = []
        for _ in range(IDLE_PROBES):
            time.sleep(IDLE_GAP_S)
            idle.append(self._infer_ms(spec, probe))
        steady = [self._infer_ms(spec, probe) for _ in range(spec.warmup.probes)]
        return Latency.from_samples(steady, idle_ms=idle, first_ms=first)

    def check_inputs(self, spec: ModelSpec) -> None:
        """Compare the spec's warm-up inputs with the model's metadata on the server.

        Raises :class:`MetadataMismatchError` naming every input that does not fit (name, datatype, shape;
        ``-1`` in the server's shape matches any size). A server that declares no inputs (a KServe model
        without ``get_input_types``, an MLServer model without ``inputs`` in its settings) cannot be checked:
        that is logged and the warm-up goes on.
        """
        metadata = self.metadata(spec.name, spec.version)
        if not metadata.inputs:
            logger.warning("%s declares no inputs of %r: warm-up inputs not checked", self.url, spec.name)
            return
        problems = input_mismatches(spec.warmup, metadata.inputs)
        if problems:
            raise MetadataMismatchError(
                f"{self.url}: model {spec.name!r} version {spec.version!r}: the warm-up inputs do not fit the "
                f"server's metadata: {'; '.join(problems)}. Fix warmup.inputs of the fleet entry."
            )

    def _load_until_ready(self, spec: ModelSpec) -> dict[str, Any]:
        body = self.load(spec.name)
        self._forget(spec.name)  # a load may change which versions the server holds
        if not self.ready(spec.name, spec.version):
            path = self.model_path(spec.name, spec.version)
            answer = self._request("GET", f"{path}/ready")
            raise TargetError(
                f"{self.url}: model {spec.name!r} version {spec.version!r} is not ready after its load "
                f"(GET {path}/ready: HTTP {answer.status_code}: {body_excerpt(answer)})",
                status_code=answer.status_code,
                body=body_excerpt(answer),
            )
        return (body.get("report") if isinstance(body, dict) else None) or {}

    def _body(self, spec: ModelSpec, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        by_name = {t.name: t for t in spec.warmup.inputs}
        return {
            "id": f"prewarm-{next(self._request_ids)}",
            "inputs": [
                {"name": name, "shape": list(t.shape), "datatype": by_name[name].datatype, "data": encode_json(t)}
                for name, t in inputs.items()
            ],
        }

    def _infer_ms(self, spec: ModelSpec, body: dict[str, Any]) -> float:
        return self.infer(spec.name, spec.version, body).elapsed.total_seconds() * 1000

    def _failed(self, spec: ModelSpec, clock: StageClock, error: WarmupError, server: dict[str, Any]) -> WarmReport:
        server = server or getattr(error, "server_report", {}) or {}
        return WarmReport(
            model=spec.name, version=spec.version, target=self.target_name,
            device_class=server.get("device_class") or f"v2:{self.url}", ready=False,
            stage_seconds=dict(clock.seconds), cache_hits=server.get("cache_hits") or {}, compile_mode=spec.compile,
            reason=str(error), error=str(error), error_type=server.get("error_type") or type(error).__name__,
        )


def _host_latency(server_report: dict[str, Any]) -> Latency | None:
    """A prewarm host's own validation figures from its load report; None from other servers.

    The host times its probes on its serving path, in its own process: the same medians as the client's
    probes, without the HTTP round trips and whatever else runs in the client's process (in the demo, Prefect),
    which made the client's steady p50 move 2.6x between two runs on a busy machine. So against a prewarm host
    the verdict judges these; the client's probes still warm the HTTP path and are reported beside them.
    """
    needed = ("warm_first_request_ms", "steady_p50_ms", "steady_p99_ms", "first_after_idle_ms")
    if any(server_report.get(key) is None for key in needed):
        return None
    return Latency(
        warm_first_request_ms=float(server_report["warm_first_request_ms"]),
        steady_p50_ms=float(server_report["steady_p50_ms"]),
        steady_p99_ms=float(server_report["steady_p99_ms"]),
        steady_spread_ms=float(server_report.get("steady_spread_ms") or 0.0),
        first_after_idle_ms=float(server_report["first_after_idle_ms"]),
        first_after_idle_spread_ms=float(server_report.get("first_after_idle_spread_ms") or 0.0),
    )


def _first_requests(
    server_report: dict[str, Any],
    before: tuple[int, int] | None,
    after: tuple[int, int] | None,
    *,
    client_first_ms: float,
    latency: Latency,
) -> tuple[float | None, float | None]:
    """The cold and warm first request of one warm run, both measured the same way.

    From a prewarm host: its cold first request (a fresh load's first request, before any warm-up) and the
    first client request after its load and warm-up, both timed by the host on its serving path (the latter
    read from its statistics around that request), so neither includes HTTP or this process's own load.
    When the host's statistics cannot single that request out (another client's requests came in between),
    the warm figure is None rather than one measured another way. Elsewhere, both from this client: its first
    request after the load (cold where the server does not warm models itself) and its first validation
    probe, after its own warm-up.
    """
    server_cold = server_report.get("cold_first_request_ms")
    if server_cold is None:
        return client_first_ms, latency.warm_first_request_ms
    if before is None or after is None or after[0] - before[0] != 1:
        return float(server_cold), None
    return float(server_cold), (after[1] - before[1]) / 1e6


def input_mismatches(warmup: WarmupSpec, declared: Iterable[TensorMetadata]) -> list[str]:
    """What does not fit between the warm-up inputs and a server's declared inputs; empty when all fits."""
    server = {tensor.name: tensor for tensor in declared}
    problems: list[str] = []
    for tensor in warmup.inputs:
        theirs = server.get(tensor.name)
        if theirs is None:
            problems.append(f"input {tensor.name!r} is not one of the server's inputs {sorted(server)}")
            continue
        if tensor.datatype != theirs.datatype.upper():
            problems.append(
                f"input {tensor.name!r}: datatype {tensor.datatype} but the server expects {theirs.datatype}"
            )
        problem = _shape_problem(tensor, theirs.shape, warmup.buckets)
        if problem:
            problems.append(problem)
    ours = {tensor.name for tensor in warmup.inputs}
    problems += [f"the server's input {name!r} is missing from warmup.inputs"
                 for name in server if name not in ours]
    return problems


def _shape_problem(tensor: TensorSpec, theirs: tuple[int, ...], buckets: dict[str, list[int]]) -> str | None:
    shown = "[" + ", ".join(str(d) for d in tensor.shape) + "]"
    if len(tensor.shape) != len(theirs):
        return (
            f"input {tensor.name!r}: shape {shown} has {len(tensor.shape)} dimensions, "
            f"the server's {list(theirs)} has {len(theirs)}"
        )
    for axis, (dim, want) in enumerate(zip(tensor.shape, theirs, strict=True)):
        values = buckets.get(dim, []) if isinstance(dim, str) else [dim]
        if want >= 0 and any(value != want for value in values):
            sizes = f"{dim} = {values}" if isinstance(dim, str) else str(dim)
            return (
                f"input {tensor.name!r}: shape {shown} does not fit the server's {list(theirs)} at dimension "
                f"{axis} ({sizes}, the server fixes {want})"
            )
    return None


def body_excerpt(response: httpx.Response, *, limit: int = BODY_EXCERPT_CHARS) -> str:
    """What a server answered, on one line: its ``error`` (or FastAPI's ``detail``), else the text.

    Longer than ``limit`` characters, the middle is cut: the head says what failed, the tail keeps the last
    line of a traceback (MLServer answers a model's exception with the whole traceback as plain text).
    """
    body = _json(response)
    if isinstance(body, dict) and "error" in body:
        text = str(body["error"])
    elif isinstance(body, dict) and "detail" in body:
        text = str(body["detail"])
    else:
        text = response.text
    text = " ".join(text.split())
    if not text:
        return "(empty body)"
    if len(text) <= limit:
        return text
    tail = limit - _HEAD_CHARS
    return f"{text[:_HEAD_CHARS]} [... {len(text) - limit} characters ...] {text[-tail:]}"


def _tensors(raw: Any, field: str) -> tuple[TensorMetadata, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{field} is not a list")
    tensors: list[TensorMetadata] = []
    for item in raw:
        try:
            shape = tuple(int(d) for d in item["shape"])
            tensors.append(TensorMetadata(name=str(item["name"]), datatype=str(item["datatype"]), shape=shape))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{field}: {item!r} is not a tensor with name, datatype and shape") from None
    return tuple(tensors)


def _index_item(entry: dict[str, Any]) -> RepositoryModel:
    state = str(entry.get("state") or "UNKNOWN").upper()
    state = {"NOTREADY": "UNAVAILABLE"}.get(state, state)  # KServe spells its states "Ready" / "NotReady"
    version = entry.get("version")
    return RepositoryModel(
        name=str(entry["name"]), version=str(version) if version not in (None, "") else None,
        state=state, reason=str(entry.get("reason") or ""),
    )


def _metadata_versions(response: httpx.Response) -> list[str]:
    body = _json(response)
    versions = body.get("versions") if isinstance(body, dict) else None
    return [str(v) for v in versions] if isinstance(versions, list) else []


def _settings_token() -> str | None:
    token = get_settings().host.token
    return token.get_secret_value() if token is not None else None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
