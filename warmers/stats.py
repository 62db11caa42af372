"""Per-model inference statistics, kept by the data plane and shown in Triton's statistics JSON shape.

Triton's statistics extension (``GET /v2/models[/{name}[/versions/{v}]]/stats``) is what ``tritonclient``'s
``get_inference_statistics`` reads. Every successful request counts one inference and one execution (the
host does not batch requests together); ``queue`` is the wait for the model's inference thread,
``compute_input`` parsing and decoding, ``compute_infer`` the model, ``compute_output`` encoding.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warmers.pipeline import Served

PHASES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")


@dataclass
class _ModelStats:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    counts: dict[str, list[int]] = field(default_factory=lambda: {phase: [0, 0] for phase in PHASES})

    def add(self, phase: str, ns: int) -> None:
        pair = self.counts[phase]
        pair[0] += 1
        pair[1] += ns


class InferenceStats:
    """Counts and nanoseconds per model version; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], _ModelStats] = {}

    def keys(self) -> list[tuple[str, str]]:
        """Model versions that have statistics."""
        with self._lock:
            return list(self._models)

    def _get(self, model: str, version: str) -> _ModelStats:
        return self._models.setdefault((model, version), _ModelStats())

    def succeeded(self, model: str, version: str, total_ns: int, served: Served) -> None:
        """Record one successful request of ``total_ns`` with its phases."""
        with self._lock:
            stats = self._get(model, version)
            stats.inference_count += 1
            stats.execution_count += 1
            stats.last_inference_ms = int(time.time() * 1000)
            stats.add("success", total_ns)
            stats.add("queue", served.queue_ns)
            stats.add("compute_input", served.input_ns)
            stats.add("compute_infer", served.infer_ns)
            stats.add("compute_output", served.output_ns)

    def failed(self, model: str, version: str, total_ns: int) -> None:
        """Record one failed request (malformed input, model failure, unloaded meanwhile)."""
        with self._lock:
            stats = self._get(model, version)
            stats.last_inference_ms = int(time.time() * 1000)
            stats.add("fail", total_ns)

    def triton(self, model: str, version: str) -> dict[str, Any]:
        """One entry of Triton's ``model_stats`` list (zeros for a model without requests)."""
        with self._lock:
            stats = self._models.get((model, version)) or _ModelStats()
            return {
                "name": model,
                "version": version,
                "last_inference": stats.last_inference_ms,
                "inference_count": stats.inference_count,
                "execution_count": stats.execution_count,
                "inference_stats": {phase: {"count": c, "ns": ns} for phase, (c, ns) in stats.counts.items()},
                "response_stats": {},
                "batch_stats": [],
                "memory_usage": [],
            }
