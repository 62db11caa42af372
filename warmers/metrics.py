"""Prometheus metrics of one host: resident models, device memory, warm stages, load failures, requests, cold starts.

Names and labels other components rely on (the Prometheus ingest preset, the recording rules):

- ``prewarm_inference_requests_total{model,version,outcome}``: outcome is the HTTP status as a string. A name
  (or version) the host does not know is counted under ``model="__unknown__", version=""``, so random names
  cannot create series.
- ``prewarm_cold_starts_total{model,version,kind}``: ``kind="not_ready"`` for a request to a known model that
  was not ready (refused with 503), ``kind="after_load"`` for a request served within
  ``PREWARM_HOST__COLD_WINDOW_S`` of its version's load finishing.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from warmers.engine import Engine, ModelState

UNKNOWN_MODEL = "__unknown__"
NOT_READY = "not_ready"
AFTER_LOAD = "after_load"


class HostMetrics:
    """The host's metrics in their own registry; also the engine's observer for stage and failure events."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Gauge(
            "prewarm_warm_stage_seconds", "Seconds the last warm run of a model spent in a stage.",
            ["model", "stage"], registry=self.registry,
        )
        self.stage_histogram = Histogram(
            "prewarm_warm_stage_duration_seconds", "Warm stage durations.", ["stage"], registry=self.registry,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.load_failures = Counter(
            "prewarm_load_failures", "Loads that ended not ready.", ["model", "error_type"], registry=self.registry
        )
        self.requests = Counter(
            "prewarm_inference_requests", "Inference requests by model version and HTTP status.",
            ["model", "version", "outcome"], registry=self.registry,
        )
        self.cold_starts = Counter(
            "prewarm_cold_starts",
            "Requests that met a cold model: refused while not ready (not_ready) or served soon after its load "
            "(after_load).",
            ["model", "version", "kind"], registry=self.registry,
        )
        self.unauthorized = Counter(
            "prewarm_unauthorized_requests", "Requests refused for a missing or wrong bearer token.",
            registry=self.registry,
        )
        self.latency = Histogram(
            "prewarm_inference_seconds", "Server-side inference latency of successful requests.",
            ["model", "version"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

    def watch(self, engine: Engine) -> None:
        """Report the engine's resident models and memory at every scrape."""
        self.registry.register(_EngineCollector(engine))

    def stage_finished(self, model: str, stage: str, seconds: float) -> None:
        """Record one warm stage."""
        self.stage_seconds.labels(model=model, stage=stage).set(seconds)
        self.stage_histogram.labels(stage=stage).observe(seconds)

    def load_failed(self, model: str, error_type: str) -> None:
        """Count one failed load."""
        self.load_failures.labels(model=model, error_type=error_type).inc()

    def request_finished(self, *, model: str | None, version: str | None, status: int, seconds: float | None) -> None:
        """Count one inference request; ``model=None`` means a name the host does not know."""
        model, version = (model, version or "") if model is not None else (UNKNOWN_MODEL, "")
        self.requests.labels(model=model, version=version, outcome=str(status)).inc()
        if seconds is not None:
            self.latency.labels(model=model, version=version).observe(seconds)

    def cold_start(self, *, model: str, version: str, kind: str) -> None:
        """Count one cold start of ``kind`` (``not_ready`` or ``after_load``)."""
        self.cold_starts.labels(model=model, version=version, kind=kind).inc()


class _EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        entries = self.engine.entries()
        resident = GaugeMetricFamily("prewarm_resident_models", "Models loaded and ready.")
        resident.add_metric([], sum(1 for e in entries if e.state is ModelState.READY))
        yield resident
        used = GaugeMetricFamily("prewarm_device_memory_used_bytes", "Device memory accounted to models.")
        used.add_metric([], self.engine.memory_used_mb * 2**20)
        yield used
        capacity = GaugeMetricFamily("prewarm_device_memory_capacity_bytes", "Device memory the host may use.")
        capacity.add_metric([], self.engine.capacity_mb * 2**20)
        yield capacity
        per_model = GaugeMetricFamily(
            "prewarm_model_memory_bytes", "Device memory accounted to one model version.", labels=["model", "version"]
        )
        ready = GaugeMetricFamily("prewarm_model_ready", "1 when a model version is ready.", labels=["model", "version"])
        for entry in entries:
            per_model.add_metric(list(entry.key), (entry.loaded.memory_mb if entry.loaded else 0.0) * 2**20)
            ready.add_metric(list(entry.key), 1.0 if entry.state is ModelState.READY else 0.0)
        yield per_model
        yield ready
