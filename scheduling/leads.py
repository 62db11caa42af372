"""Lead times: how long before a window a warm-up must start, from recorded time-to-ready."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scheduling.errors import PlanningError

TIME_TO_READY = "time_to_ready_s"
DEVICE_CLASS = "device_class"
ANY_DEVICE = "any"


@dataclass(frozen=True, slots=True)
class LeadTimes:
    """Recorded time-to-ready (seconds) per (model, device class), a default, and the margin added.

    ``lead(model, device_class)`` is the ``percentile`` (p95) of the model's history on that device class
    (else on any class) plus ``margin_s``; a model without history gets ``default_s + margin_s``.
    """

    history: Mapping[tuple[str, str], tuple[float, ...]] = field(default_factory=dict)
    default_s: float = 120.0
    margin_s: float = 30.0
    percentile: float = 95.0

    def __post_init__(self) -> None:
        if self.default_s < 0 or self.margin_s < 0 or not math.isfinite(self.default_s + self.margin_s):
            raise PlanningError(
                f"lead times: default_s ({self.default_s}) and margin_s ({self.margin_s}) must be finite and >= 0"
            )

    def lead(self, model: str, device_class: str = ANY_DEVICE) -> float:
        """Seconds to start warming ``model`` on ``device_class`` before its window opens."""
        samples = self.history.get((model, device_class))
        if not samples:
            samples = tuple(s for (m, _), values in self.history.items() if m == model for s in values)
        if not samples:
            return self.default_s + self.margin_s
        return float(np.percentile(np.asarray(samples, dtype=float), self.percentile)) + self.margin_s


def lead_times_from_runs(
    runs: pd.DataFrame | Iterable[Mapping[str, object]], *, default_s: float = 120.0, margin_s: float = 30.0
) -> LeadTimes:
    """Build :class:`LeadTimes` from warm-run records with ``model``, ``device_class``, ``time_to_ready_s``.

    Records without a time-to-ready (failed runs) are skipped; a missing device class counts as ``any``.
    """
    frame = runs if isinstance(runs, pd.DataFrame) else pd.DataFrame(list(runs))
    history: dict[tuple[str, str], list[float]] = {}
    if frame.empty:
        return LeadTimes({}, default_s=default_s, margin_s=margin_s)
    missing = [c for c in ("model", TIME_TO_READY) if c not in frame.columns]
    if missing:
        raise PlanningError(f"warm-run history lacks column(s) {', '.join(missing)}; expected model,device_class,{TIME_TO_READY}")
    classes = frame[DEVICE_CLASS] if DEVICE_CLASS in frame.columns else pd.Series(ANY_DEVICE, index=frame.index)
    for model, device, value in zip(frame["model"], classes, frame[TIME_TO_READY], strict=True):
        if value is None or pd.isna(value):
            continue
        key = (str(model), str(device) if device is not None and not pd.isna(device) else ANY_DEVICE)
        history.setdefault(key, []).append(float(value))
    return LeadTimes({k: tuple(v) for k, v in history.items()}, default_s=default_s, margin_s=margin_s)
