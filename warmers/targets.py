"""Warm targets: where a warm run happens. ``Engine`` is the in-process target; :class:`V2Target` is any V2 server.

:class:`V2Target` loads through the repository extension (``POST /v2/repository/models/{name}/load``), sends
the spec's warm-up requests over HTTP and probes latency from the client side, so its figures include the
network and the server's HTTP stack. When the server is a prewarm host, its own warm report (server-side cold
first request, memory, cache hits, device class) is merged in.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import httpx
import torch

from prewarm.fleet import ModelSpec
from warmers.errors import ModelNotFoundError, TargetError, WarmupError
from warmers.pipeline import SEED
from warmers.report import Baseline, Latency, StageClock, WarmReport, judge
from warmers.tensors import bucket_combinations, encode_json, example_inputs

logger = logging.getLogger(__name__)


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


class V2Target:
    """A remote Open Inference Protocol V2 server (prewarm host, Triton, KServe, MLServer)."""

    def __init__(self, url: str, *, timeout_s: float = 600.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.target_name = self.url
        self._timeout = timeout_s
        self._transport = transport

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=self._timeout, transport=self._transport)

    def warm(self, spec: ModelSpec, *, baseline: Baseline | None = None) -> WarmReport:
        """Load ``spec.name`` on the server, send warm-up requests, probe; the report is judged client-side."""
        baseline = (baseline or Baseline()).with_sla(spec.sla_p99_ms)
        clock = StageClock()
        server_report: dict[str, Any] = {}
        try:
            with self._client() as client:
                with clock.stage("load"):
                    server_report = self._load(client, spec)
                generator = torch.Generator().manual_seed(SEED)
                combos = bucket_combinations(spec.warmup)
                probe = self._body(spec, example_inputs(spec.warmup, combos[0], generator=generator))
                with clock.stage("cold_first_request"):
                    cold_ms = self._infer_ms(client, spec, probe)
                with clock.stage("warmup"):
                    for dims in [*combos, combos[0]]:  # end on the primary bucket, as the engine does
                        body = self._body(spec, example_inputs(spec.warmup, dims, generator=generator))
                        for _ in range(spec.warmup.iterations):
                            self._infer_ms(client, spec, body)
                with clock.stage("validate"):
                    samples = [self._infer_ms(client, spec, probe) for _ in range(spec.warmup.probes + 1)]
        except (WarmupError, httpx.HTTPError) as exc:
            error = exc if isinstance(exc, WarmupError) else TargetError(f"{self.url}: {type(exc).__name__}: {exc}")
            return self._failed(spec, clock, error, server_report)
        latency = Latency.from_samples(samples)
        reason = judge(latency, baseline)
        delta = latency.steady_p50_ms - baseline.p50_ms if baseline.p50_ms is not None else None
        stages = dict(clock.seconds)
        stages.update({f"server_{k}": v for k, v in (server_report.get("stage_seconds") or {}).items()})
        return WarmReport(
            model=spec.name, version=spec.version, target=self.target_name,
            device_class=server_report.get("device_class") or f"v2:{self.url}", ready=reason is None,
            stage_seconds=stages,
            cold_first_request_ms=server_report.get("cold_first_request_ms") or cold_ms,
            warm_first_request_ms=latency.warm_first_request_ms, steady_p50_ms=latency.steady_p50_ms,
            steady_p99_ms=latency.steady_p99_ms, baseline_p50_ms=baseline.p50_ms, latency_delta_ms=delta,
            time_to_ready_s=clock.elapsed(), memory_mb=server_report.get("memory_mb"),
            cache_hits=server_report.get("cache_hits") or {}, compile_mode=spec.compile, reason=reason,
        )

    def _load(self, client: httpx.Client, spec: ModelSpec) -> dict[str, Any]:
        response = client.post(f"/v2/repository/models/{spec.name}/load", json={})
        body = _json(response)
        if response.status_code == 404:
            raise ModelNotFoundError(f"{self.url}: model {spec.name!r} is not in the server's repository")
        if response.status_code != 200:
            report = body.get("report") if isinstance(body, dict) else None
            error = TargetError(f"{self.url}: load of {spec.name!r} failed ({response.status_code}): {_error(body, response)}")
            error.server_report = report or {}  # type: ignore[attr-defined]
            raise error
        ready = client.get(f"/v2/models/{spec.name}/versions/{spec.version}/ready")
        if ready.status_code != 200:
            raise TargetError(f"{self.url}: model {spec.name!r} version {spec.version!r} is not ready after its load")
        return (body.get("report") if isinstance(body, dict) else None) or {}

    @staticmethod
    def _body(spec: ModelSpec, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        by_name = {t.name: t for t in spec.warmup.inputs}
        return {
            "inputs": [
                {"name": name, "shape": list(t.shape), "datatype": by_name[name].datatype, "data": encode_json(t)}
                for name, t in inputs.items()
            ]
        }

    def _infer_ms(self, client: httpx.Client, spec: ModelSpec, body: dict[str, Any]) -> float:
        response = client.post(f"/v2/models/{spec.name}/versions/{spec.version}/infer", json=body)
        if response.status_code != 200:
            raise TargetError(
                f"{self.url}: inference on {spec.name!r} failed ({response.status_code}): {_error(_json(response), response)}"
            )
        return response.elapsed.total_seconds() * 1000

    def _failed(self, spec: ModelSpec, clock: StageClock, error: WarmupError, server: dict[str, Any]) -> WarmReport:
        server = server or getattr(error, "server_report", {}) or {}
        return WarmReport(
            model=spec.name, version=spec.version, target=self.target_name,
            device_class=server.get("device_class") or f"v2:{self.url}", ready=False,
            stage_seconds=dict(clock.seconds), cache_hits=server.get("cache_hits") or {}, compile_mode=spec.compile,
            reason=str(error), error=str(error), error_type=server.get("error_type") or type(error).__name__,
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text[:300]
