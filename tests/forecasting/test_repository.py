"""Storing forecast runs and reading the latest forecast per model, on SQLite and Postgres."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from db.forecasts import latest_forecast, store_forecast_run
from db.models import ForecastPoint, ForecastRun
from db.session import session_scope
from forecasting import forecast
from prewarm import columns as C
from tests.forecasting.conftest import hourly_frame, seasonal_values


def _store(engine: Engine, frame: pd.DataFrame, horizon: int = 6) -> int:
    result = forecast(frame, horizon=horizon, fast=True)
    with session_scope(engine) as session:
        run = store_forecast_run(session, result, horizon=horizon, level=95.0, interval_seconds=3600, orchestrator_run_id="r-1")
        return run.id


def test_store_and_read_back(engine: Engine, seasonal_frame: pd.DataFrame) -> None:
    run_id = _store(engine, seasonal_frame)
    with session_scope(engine) as session:
        run = session.get(ForecastRun, run_id)
        assert (run.models_count, run.horizon, run.interval_seconds, run.orchestrator_run_id) == (3, 6, 3600, "r-1")
        latest = latest_forecast(session)
    assert len(latest) == 18 and set(latest["run_id"]) == {run_id}
    assert str(latest[C.TIMESTAMP].dt.tz) == "UTC"
    assert (latest[C.LO] <= latest[C.YHAT]).all() and (latest[C.YHAT] <= latest[C.HI]).all()


def test_latest_is_per_model_and_filterable(engine: Engine, seasonal_frame: pd.DataFrame) -> None:
    first = _store(engine, seasonal_frame)
    second = _store(engine, seasonal_frame[seasonal_frame[C.MODEL] == "m1"])
    with session_scope(engine) as session:
        latest = latest_forecast(session)
        only = latest_forecast(session, models=["m1"])
    runs = latest.groupby(C.MODEL)["run_id"].first().to_dict()
    assert runs == {"m0": first, "m1": second, "m2": first}
    assert set(only[C.MODEL]) == {"m1"} and len(only) == 6


def test_a_failed_transaction_stores_nothing(engine: Engine) -> None:
    result = forecast(hourly_frame({"a": seasonal_values(24 * 10, seed=2)}), horizon=4, fast=True)
    with pytest.raises(RuntimeError, match="boom"), session_scope(engine) as session:
        store_forecast_run(session, result, horizon=4, level=95.0, interval_seconds=3600)
        raise RuntimeError("boom")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(ForecastPoint)) == 0
        assert session.scalar(select(func.count()).select_from(ForecastRun)) == 0
        assert latest_forecast(session).empty
