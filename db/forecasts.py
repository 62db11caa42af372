"""Forecast repository: store a forecasting pass with its points, read back the latest forecast per model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from db.models import ForecastPoint, ForecastRun
from prewarm import columns as C

if TYPE_CHECKING:
    from forecasting.result import ForecastResult

METHOD = "method"
RUN_ID = "run_id"
LEVEL = "level"
LATEST_COLUMNS = (C.MODEL, C.TIMESTAMP, C.YHAT, C.LO, C.HI, METHOD, LEVEL, RUN_ID)
_BATCH = 50_000


def store_forecast_run(
    session: Session,
    result: ForecastResult,
    *,
    horizon: int,
    level: float,
    interval_seconds: int,
    orchestrator_run_id: str | None = None,
) -> ForecastRun:
    """Add one :class:`ForecastRun` and all its points in the caller's transaction; returns the flushed run.

    Points go in as batched multi-row inserts. Nothing is committed here: the caller's session scope
    commits, or rolls everything back on error.
    """
    report = result.report
    run = ForecastRun(
        horizon=horizon,
        level=level,
        interval_seconds=interval_seconds,
        models_count=len(report.series),
        fallbacks=len(report.fallbacks),
        warnings=report.warnings_count,
        wall_seconds=report.wall_seconds,
        orchestrator_run_id=orchestrator_run_id,
    )
    session.add(run)
    session.flush()
    frame = result.frame
    if frame.empty:
        return run
    stamps = pd.DatetimeIndex(frame[C.TIMESTAMP]).tz_convert("UTC").to_pydatetime()
    columns = {
        "model": frame[C.MODEL].astype(str).tolist(),
        "timestamp": list(stamps),
        "yhat": frame[C.YHAT].to_numpy(dtype=float).tolist(),
        "lo": frame[C.LO].to_numpy(dtype=float).tolist(),
        "hi": frame[C.HI].to_numpy(dtype=float).tolist(),
        "method": frame[METHOD].astype(str).tolist() if METHOD in frame else ["unknown"] * len(frame),
    }
    rows = [
        {"run_id": run.id, "level": level, **dict(zip(columns, values, strict=True))}
        for values in zip(*columns.values(), strict=True)
    ]
    for start in range(0, len(rows), _BATCH):
        session.execute(insert(ForecastPoint), rows[start : start + _BATCH])
    return run


def latest_forecast(session: Session, models: list[str] | None = None) -> pd.DataFrame:
    """Per model, the points of the newest run that forecast it (model, timestamp, yhat, lo, hi, method, level, run_id)."""
    newest = select(ForecastPoint.model, func.max(ForecastPoint.run_id).label("run_id")).group_by(ForecastPoint.model)
    if models is not None:
        newest = newest.where(ForecastPoint.model.in_(models))
    newest_sub = newest.subquery()
    query = (
        select(
            ForecastPoint.model,
            ForecastPoint.timestamp,
            ForecastPoint.yhat,
            ForecastPoint.lo,
            ForecastPoint.hi,
            ForecastPoint.method,
            ForecastPoint.level,
            ForecastPoint.run_id,
        )
        .join(newest_sub, (ForecastPoint.model == newest_sub.c.model) & (ForecastPoint.run_id == newest_sub.c.run_id))
        .order_by(ForecastPoint.model, ForecastPoint.timestamp)
    )
    frame = pd.DataFrame(session.execute(query).all(), columns=list(LATEST_COLUMNS))
    frame[C.TIMESTAMP] = pd.to_datetime(frame[C.TIMESTAMP], utc=True)
    for column in (C.YHAT, C.LO, C.HI, LEVEL):
        frame[column] = frame[column].astype(float)
    frame[RUN_ID] = frame[RUN_ID].astype(np.int64)
    return frame
