"""Loading the bundled M4 hourly data (wide, no timestamps) and turning it into long telemetry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prewarm import columns as C

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "m4_hourly"
# M4 hourly has no timestamps; any hourly index will do. A Monday keeps the weekly phase readable.
START = pd.Timestamp("2020-01-06", tz="UTC")


def load_wide(name: str) -> dict[str, np.ndarray]:
    """Series id -> values of ``Hourly-train`` or ``Hourly-test`` (trailing blanks removed)."""
    frame = pd.read_csv(DATA_DIR / f"Hourly-{name}.csv.gz", index_col=0)
    return {str(sid): row.dropna().to_numpy(dtype=float) for sid, row in frame.iterrows()}


def to_long(train: dict[str, np.ndarray]) -> pd.DataFrame:
    """The train set as long telemetry: every series ends at the same synthetic hour."""
    frames = []
    length = max(len(v) for v in train.values())
    for sid, values in train.items():
        index = pd.date_range(START + pd.Timedelta(hours=length - len(values)), periods=len(values), freq="h")
        frames.append(pd.DataFrame({C.TIMESTAMP: index, C.MODEL: sid, C.REQUESTS: values}))
    return pd.concat(frames, ignore_index=True)
