"""Benchmark traces: the M4 Hourly series as a fleet, and a seeded synthetic fleet with a long tail.

M4 files have no timestamps: each series gets an hourly index that ends, for every series, at the same
moment, so the 48 test hours form one shared evaluation window after each series' own training history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from prewarm import columns as C
from scheduling.errors import SimulationError

M4_END = datetime(2026, 3, 2, tzinfo=UTC)  # first hour after the evaluation window (a Monday)


def m4_hourly_telemetry(train: str | Path, test: str | Path, *, end: datetime = M4_END) -> pd.DataFrame:
    """Long telemetry frame of the M4 Hourly series (train then test), on hourly indices ending at ``end``."""
    frames = []
    for path in (train, test):
        if not Path(path).is_file():
            raise SimulationError(f"{path}: no such file; the M4 Hourly files live in benchmarks/data/m4_hourly/")
    train_frame = pd.read_csv(train, index_col=0)
    test_frame = pd.read_csv(test, index_col=0)
    for name, row in train_frame.iterrows():
        values = np.concatenate([row.dropna().to_numpy(float), test_frame.loc[name].dropna().to_numpy(float)])
        index = pd.date_range(end=pd.Timestamp(end) - pd.Timedelta(hours=1), periods=len(values), freq="h")
        frames.append(pd.DataFrame({C.TIMESTAMP: index, C.MODEL: str(name), C.REQUESTS: values}))
    return pd.concat(frames, ignore_index=True)
