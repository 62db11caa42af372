"""Value objects a forecast returns: the forecast frame and a per-series report."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from prewarm import columns as C

METHOD = "method"
FORECAST_FRAME_COLUMNS = (*C.FORECAST_COLUMNS, METHOD)


@dataclass(frozen=True, slots=True)
class SeriesReport:
    """What happened to one series: the method chosen, why a fallback was taken, warnings raised."""

    model: str
    method: str
    n_observations: int
    fallback_reason: str | None = None
    warnings: tuple[str, ...] = ()
    backtest_mae: float | None = None


@dataclass(frozen=True, slots=True)
class ForecastReport:
    """Per-series outcomes of one forecasting pass."""

    series: tuple[SeriesReport, ...]
    freq: str
    horizon: int
    level: float
    wall_seconds: float
    warnings: tuple[str, ...] = field(default=())

    @property
    def fallbacks(self) -> tuple[SeriesReport, ...]:
        """The series that fell back to a simpler method, with the reason."""
        return tuple(s for s in self.series if s.fallback_reason is not None)

    @property
    def warnings_count(self) -> int:
        """Warnings over the whole pass: frame-level ones plus every series' own."""
        return len(self.warnings) + sum(len(s.warnings) for s in self.series)

    def methods(self) -> dict[str, int]:
        """How many series each method forecast."""
        counts: dict[str, int] = {}
        for s in self.series:
            counts[s.method] = counts.get(s.method, 0) + 1
        return dict(sorted(counts.items()))

    def to_frame(self) -> pd.DataFrame:
        """One row per series: model, method, observations, fallback reason, warnings, backtest MAE."""
        return pd.DataFrame(
            {
                C.MODEL: [s.model for s in self.series],
                METHOD: [s.method for s in self.series],
                "n_observations": [s.n_observations for s in self.series],
                "fallback_reason": [s.fallback_reason for s in self.series],
                "warnings": ["; ".join(s.warnings) for s in self.series],
                "backtest_mae": [s.backtest_mae for s in self.series],
            }
        )


@dataclass(frozen=True, slots=True)
class ForecastResult:
    """A forecast: ``frame`` (model, timestamp, yhat, lo, hi, method) and its ``report``."""

    frame: pd.DataFrame
    report: ForecastReport
