"""``prewarm forecast``: the file contract, bad input, and the registry path that stores a forecast run."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from db.forecasts import latest_forecast
from db.models import ForecastRun
from db.registry import upsert_models
from db.session import session_scope
from prewarm import columns as C
from prewarm.cli.main import app
from prewarm.fleet import load_fleet
from prewarm.ingest import ingest_frame
from tests.forecasting.conftest import hourly_frame, seasonal_values

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _telemetry_csv(path: Path) -> Path:
    frame = hourly_frame({"a": seasonal_values(24 * 15, seed=1), "b": seasonal_values(24 * 15 - 5, seed=2)})
    frame.to_csv(path, index=False)
    return path


def test_file_in_file_out(tmp_path: Path) -> None:
    source = _telemetry_csv(tmp_path / "telemetry.csv")
    output = tmp_path / "out" / "forecast.csv"
    result = run("forecast", "--input", str(source), "--horizon", "12", "--level", "90", "--output", str(output))
    assert result.exit_code == 0, result.output
    forecast = pd.read_csv(output)
    assert list(forecast.columns) == list(C.FORECAST_COLUMNS)
    telemetry = pd.read_csv(source, parse_dates=[C.TIMESTAMP])
    stamps = pd.to_datetime(forecast[C.TIMESTAMP], utc=True)
    for model in ("a", "b"):
        mine = stamps[forecast[C.MODEL] == model]
        assert len(mine) == 12
        assert mine.min() == telemetry.loc[telemetry[C.MODEL] == model, C.TIMESTAMP].max() + pd.Timedelta(hours=1)
    assert "Forecast 2 models x 12 intervals of 1 h at level 90" in result.stdout


def test_malformed_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,model,requests\n2026-01-01T00:00:00Z,a,1\n2026-01-01T01:00:00Z,a,lots\n")
    output = tmp_path / "forecast.csv"
    result = run("forecast", "--input", str(bad), "--horizon", "4", "--output", str(output))
    assert result.exit_code == 2
    assert "bad.csv: line 3, column 3 (requests)" in result.stderr
    assert "Traceback" not in result.output and not output.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--level", "120"], "--level 120: must be between 0 and 100"),
        ([], "--output FORECAST.csv is required with --input"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    source = _telemetry_csv(tmp_path / "telemetry.csv")
    args = ["forecast", "--input", str(source), "--horizon", "4", *extra]
    if "--level" in extra:
        args += ["--output", str(tmp_path / "o.csv")]
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_registry_path_forecasts_registered_models_and_stores_a_run(engine: Engine, tmp_path: Path) -> None:
    specs = load_fleet(EXAMPLES / "fleet.yaml").models
    names = [s.name for s in specs]
    with session_scope(engine) as session:
        upsert_models(session, specs)
    telemetry = hourly_frame({name: seasonal_values(24 * 15, seed=i) for i, name in enumerate(names[1:])})
    ingest_frame(telemetry.assign(p50_ms=float("nan"), p99_ms=float("nan")), engine=engine)
    output = tmp_path / "forecast.csv"
    result = run("forecast", "--horizon", "6", "--fast", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert f"{names[0]}" in result.stdout and "no telemetry" in result.stdout
    summary = result.stdout[result.stdout.index("Stored forecast run") :]
    assert "next busy window" in summary
    for name in names[1:]:  # per forecast model: its peak and its next busy window, with day and length
        row = next(line for line in summary.splitlines() if f" {name} " in line)
        assert re.search(r"\d+ \(\d+\)", row) and re.search(r"[A-Z][a-z]{2} \d\d:\d\d for \d+ (h|min|day)", row)
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(ForecastRun)) == 1
        latest = latest_forecast(session)
    assert sorted(latest[C.MODEL].unique()) == sorted(names[1:])
    assert len(pd.read_csv(output)) == 6 * (len(names) - 1)


def test_registry_path_without_models_exits_2(engine: Engine) -> None:
    result = run("forecast", "--horizon", "6")
    assert result.exit_code == 2
    assert "no registered models" in result.stderr


def test_parquet_input(tmp_path: Path) -> None:
    source = tmp_path / "telemetry.parquet"
    hourly_frame({"a": seasonal_values(24 * 9, seed=8)}).to_parquet(source)
    output = tmp_path / "forecast.csv"
    result = run("forecast", "--input", str(source), "--horizon", "3", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(output)) == 3
