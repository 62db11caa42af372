"""Tables people read at 80 columns: nothing cut ("…"), model names and windows whole, days on every time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from rich.console import Console
from typer.testing import CliRunner

from prewarm.cli.demo import _latency_table, _table, _Window
from prewarm.cli.forecast import summary_table
from prewarm.cli.main import app
from prewarm.report import WindowResult

START = datetime(2026, 11, 23, tzinfo=UTC)
MODELS = ("ocr-longtail", "chat-small", "embedder", "reranker")


def render(renderable: object) -> str:
    console = Console(width=80, record=True, color_system=None)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def assert_fits(text: str) -> None:
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_demo_tables_fit_and_carry_days() -> None:
    windows = []
    for i, model in enumerate(MODELS):
        result = WindowResult(
            model=model, version="1", window_start=START, window_end=START + timedelta(days=1, minutes=10),
            warm_start=START - timedelta(minutes=6), replicas=1, lead_seconds=360.0, expected_demand=5.0,
            reason="forecast", cold_first_request_ms=118.1, warm_first_request_ms=14.1,
        )
        unloaded = None if i == 1 else START + timedelta(days=1, minutes=10)
        windows.append(
            _Window(result=result, host=f"demo-{i % 2 + 1}", ready_at=START - timedelta(minutes=5),
                    unloaded_at=unloaded, pinned=i == 1)
        )
    text = render(_table(windows, as_of=START - timedelta(minutes=10)))
    assert_fits(text)
    assert "planned as of Sun 22 Nov 23:50 UTC" in text and "not the clock" in text
    row = next(line for line in text.splitlines() if "ocr-longtail" in line)
    assert "Mon 00:00–Tue 00:10" in row and "Sun 23:54" in row and "Sun 23:55" in row and "Tue 00:10" in row
    assert "pinned" in text
    latency = render(_latency_table(windows))
    assert_fits(latency)
    assert "118.1" in latency and "14.1" in latency


def test_forecast_summary_fits() -> None:
    stamps = pd.date_range(START, periods=24, freq="h", tz="UTC")
    frame = pd.concat(
        [pd.DataFrame({"model": m, "timestamp": stamps, "yhat": range(24), "lo": 0.0, "hi": range(1, 25)})
         for m in MODELS]
    )
    text = render(summary_table(frame, run_id=7))
    assert_fits(text)
    for model in MODELS:
        row = next(line for line in text.splitlines() if f" {model} " in line)
        assert "Mon 23:00" in row and "Mon 12:00 for 12 h" in row


def test_plan_table_fits_with_a_day_long_window(tmp_path: Path) -> None:
    stamps = pd.date_range(START - timedelta(days=14), START, freq="h", inclusive="left", tz="UTC")
    rows = [
        pd.DataFrame({"timestamp": stamps, "model": model, "requests": 50.0 + 40 * ((stamps.hour + i) % 24 < 12)})
        for i, model in enumerate(MODELS)
    ]
    source = tmp_path / "t.csv"
    pd.concat(rows).to_csv(source, index=False)
    result = CliRunner().invoke(app, ["plan", "-i", str(source), "--fast"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout)
    assert "Warm plan as of Mon 23 Nov 00:00 UTC (the telemetry's end, not the clock)" in " ".join(
        result.stdout.split()
    )
    assert "00:00–00:00" not in result.stdout and " for " in result.stdout


def test_simulate_table_fits_with_every_policy() -> None:
    from prewarm.cli.simulate import _table as simulate_table

    names = ("static", "keepalive", "reactive", "histogram", "histogram-tuned", "topk", "sparse", "forecast", "cost",
             "oracle")
    policy = {"cold_fraction": 0.3420, "cold_start_events": 1_234_567, "replica_hours": 1_215_712.4,
              "replica_hours_vs_oracle": 12.29, "cost": 9_216_143.27, "seconds": 1275.1}
    document = {"models": 12_000, "eval_intervals": 168, "lead": 1, "lead_seconds": 5400.0, "interval_seconds": 3600.0,
                "policies": {name: policy for name in names}}
    text = render(simulate_table(document))
    assert_fits(text)
    assert "histogram-tuned" in text and "9,216,143" in text and "1,275.1" not in text and "1275.1" in text
