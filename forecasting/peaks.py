"""Peak windows: runs of consecutive forecast buckets whose upper bound exceeds a threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.errors import ForecastingError
from prewarm import columns as C

START = "start"
END = "end"
PEAK_HI = "peak_hi"
PEAK_WINDOW_COLUMNS = (C.MODEL, START, END, PEAK_HI)


def _windows_of(model: str, stamps: np.ndarray, hi: np.ndarray, threshold: float, width: pd.Timedelta) -> list[dict]:
    above = hi > threshold
    if not above.any():
        return []
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        {C.MODEL: model, START: stamps[a], END: stamps[b - 1] + width, PEAK_HI: float(hi[a:b].max())}
        for a, b in zip(starts, ends, strict=True)
    ]


def peak_windows(forecast_frame: pd.DataFrame, threshold: float | pd.Series | dict[str, float]) -> pd.DataFrame:
    """Windows (model, start, end, peak_hi) where the forecast's ``hi`` exceeds ``threshold``.

    ``threshold`` is one number for every model, or a per-model mapping (dict or Series indexed by
    model; models without an entry get no windows). ``end`` is exclusive: the end of the last bucket
    above the threshold; the bucket width is the gap between a model's consecutive timestamps.
    """
    missing = [c for c in (C.MODEL, C.TIMESTAMP, C.HI) if c not in forecast_frame.columns]
    if missing:
        raise ForecastingError(f"forecast frame lacks column(s) {', '.join(missing)}; pass ForecastResult.frame")
    rows: list[dict] = []
    for model, group in forecast_frame.sort_values([C.MODEL, C.TIMESTAMP]).groupby(C.MODEL, sort=True):
        limit = threshold if isinstance(threshold, int | float) else threshold.get(model)
        if limit is None or pd.isna(limit):
            continue
        stamps = pd.DatetimeIndex(group[C.TIMESTAMP])
        width = stamps[1] - stamps[0] if len(stamps) > 1 else pd.Timedelta(hours=1)
        rows.extend(_windows_of(str(model), stamps, group[C.HI].to_numpy(dtype=float), float(limit), width))
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in PEAK_WINDOW_COLUMNS})
    return pd.DataFrame(rows, columns=list(PEAK_WINDOW_COLUMNS))
