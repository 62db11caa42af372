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
# Worst cases people meet: long model names, numbers in the hundreds of thousands, every column filled.
LONG_MODELS = ("histogram-tuned", "ocr-longtail-v2", "chat-small-instruct", "embedder-multilingual")


def _lines(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


def test_replay_tables_fit_with_every_policy() -> None:
    from types import SimpleNamespace

    from prewarm.cli.replay import _tables

    def figures(scale: int, flagged: bool) -> dict[str, object]:
        latency = {"p50_ms": 14.06, "p95_ms": 2_912.4, "p99_ms": 29_871.25, "max_ms": 30_000.0}
        return {"requests": 216_143, "answered": 216_101 - scale, "cold_starts": 12_345 * scale,
                **latency, "first_after_idle": {**latency, "p99_ms": 29_999.9}, "replica_seconds": 1_728_000.4,
                "warmups": 4_321, "lag_flagged": flagged}

    policies = ("always", "reactive", "keepalive-3600", "forecast", "histogram-tuned")
    runs = {name: SimpleNamespace(figures=figures(i + 1, i == 2)) for i, name in enumerate(policies)}
    counts, latency = (render(t) for t in _tables(runs))
    assert_fits(counts)
    assert_fits(latency)
    row = _lines(counts, "keepalive-3600")[0]
    for cell in ("216,143", "216,098", "37,035", "4,321", "1,728,000", "flagged"):
        assert cell in row
    row = _lines(latency, "histogram-tuned")[0]
    assert row.split()[1:] == ["14.1", "2,912", "29,871", "30,000", "30,000"]


def test_cold_start_report_table_fits() -> None:
    from prewarm import columns as C
    from prewarm.cli.report import cold_start_table
    from prewarm.cold_starts import DAY, WITH_PLAN, WITHOUT_PLAN

    frame = pd.DataFrame({
        C.MODEL: list(LONG_MODELS), DAY: [START] * 4, C.REQUESTS: [216_143.0] * 4,
        C.COLD_STARTS: [123_456] * 4, WITH_PLAN: [100_000] * 4, WITHOUT_PLAN: [23_456] * 4,
    })
    text = render(cold_start_table(frame, since=START))
    assert_fits(text)
    row = _lines(text, "embedder-multilingual")[0]
    assert row.split()[1:] == ["2026-11-23", "216,143", "123,456", "100,000", "23,456"]
    assert "planned / unplanned: cold starts with / without a plan in force" in " ".join(text.split())


def test_warm_report_fits_with_a_long_reason_and_target() -> None:
    from prewarm.cli.warm import render_report

    reason = ("model 'ocr-longtail-v2' version '12': the warm-up inputs do not fit the server's metadata: "
              "input 'document': shape [batch, 63] does not fit the server's [-1, 64]")
    report = {
        "model": "ocr-longtail-v2", "version": "12", "target": "http://gpu-node-12.inference.internal:8000",
        "ready": False, "reason": reason, "device_class": "cuda:NVIDIA H100 80GB HBM3",
        "cold_first_request_ms": 118_143.25, "warm_first_request_ms": 14.1, "steady_p50_ms": 12.0,
        "steady_p99_ms": 31.5, "baseline_p50_ms": None, "time_to_ready_s": 1_234.5,
        "stage_seconds": {"load": 600.123, "server_compile_and_capture_graphs": 98.7, "warmup": 3.2},
    }
    text = render(render_report(report, run_id=216_143))
    assert_fits(text)
    assert "ocr-longtail-v2:12 on http://gpu-node-12.inference.internal:8000: NOT ready" in text
    assert "shape [batch, 63] does not fit the server's [-1, 64]" in " ".join(text.split())
    assert "stage server_compile_and_capture_graphs" in text and "118,143 ms" in text and "14.1 ms" in text
    assert "1,234.5 s" in text
    assert "warm run #216143" in text


def test_reconcile_tables_fit_with_long_lists_and_reasons() -> None:
    from prewarm.cli.output import Notes
    from prewarm.cli.reconcile import action_table, host_lists, host_table

    names = [f"{m}:{v}" for m in LONG_MODELS for v in (1, 12)]
    hosts = [
        {"name": "gpu-node-12", "state": "draining", "reachable": False, "desired": names, "ready": names[:2],
         "missing": names[2:], "extra": ["histogram-tuned:3", "reranker-xl:7"]},
        {"name": "gpu-node-3", "state": "up", "reachable": True, "desired": names[:1], "ready": names[:1],
         "missing": [], "extra": []},
    ]
    text = render(host_table(hosts, title="Pool ocr-pool at Mon 23 Nov 00:00 UTC (not the clock): desired vs ready per host"))
    assert_fits(text)
    assert _lines(text, "gpu-node-12")[0].split()[1:] == ["draining,", "unreachable", "8", "2", "6", "2"]
    assert host_lists(hosts) == [f"gpu-node-12 missing: {', '.join(names[2:])}",
                                 "gpu-node-12 extra: histogram-tuned:3, reranker-xl:7"]
    notes = Notes()
    long_why = "the replica was not ready after 600 s: http://gpu-node-12:8000 answered 503 Service Unavailable"
    actions = [
        {"kind": "repair", "host": "gpu-node-12", "model": "embedder-multilingual:12", "outcome": "failed",
         "seconds": 612.34, "error": long_why, "reason": "not ready", "note": None},
        {"kind": "unload", "host": "gpu-node-3", "model": "histogram-tuned:3", "outcome": "ok", "seconds": None,
         "error": None, "reason": "no plan in force", "note": "pinned elsewhere"},
    ]
    text = render(action_table(actions, notes=notes))
    assert_fits(text)
    row = _lines(text, "embedder-multilingual:12")[0]
    assert row.split()[-2:] == ["612.3", "1"]
    assert notes.lines() == [f"1: {long_why}", "2: no plan in force; pinned elsewhere"]


def test_host_list_fits_and_says_days_for_a_long_silence() -> None:
    from controller.inventory import HostView
    from db.models import HostKind, HostState
    from prewarm.cli.hosts import host_table

    views = [
        HostView(name="gpu-node-12", url="http://gpu-node-12:8000", pool="ocr-longtail-pool", kind=HostKind.MLSERVER,
                 state=HostState.DRAINING, memory_mb=163_840.0, max_concurrent_warmups=16,
                 last_seen_at=START - timedelta(days=3, hours=5)),
        HostView(name="gpu-node-3", url="http://gpu-node-3:8000", pool="chat", kind=HostKind.PREWARM,
                 state=HostState.UP, last_seen_at=START - timedelta(minutes=90)),
        HostView(name="triton-a", url="http://triton-a:8000", pool="chat", kind=HostKind.TRITON, state=HostState.DOWN),
    ]
    text = render(host_table(views, now=START))
    assert_fits(text)
    assert _lines(text, "gpu-node-12")[0].split()[1:] == ["ocr-longtail-pool", "draining", "163,840",
                                                          "16", "3", "d", "ago"]
    assert "90 min ago" in text and "never" in text


def test_model_list_fits() -> None:
    from db.models import Model
    from prewarm.cli.models import model_table

    rows = [Model(name=m, version="2026.11.23", loader="torch_export", priority=100, sla_p99_ms=1_500.0,
                  device_memory_mb=81_920.0) for m in LONG_MODELS]
    rows.append(Model(name="foreign-reranker", version="1", loader=None, priority=0, sla_p99_ms=None,
                      device_memory_mb=512.5))
    text = render(model_table(rows))
    assert_fits(text)
    assert _lines(text, "embedder-multilingual")[0].split()[1:] == ["2026.11.23", "torch_export", "100", "1,500", "81,920"]
    assert _lines(text, "foreign-reranker")[0].split()[1:] == ["1", "(foreign)", "0", "-", "512.5"]


def test_plan_level_and_pool_tables_fit() -> None:
    from db.warm import PlanWindow
    from prewarm.cli.output import Notes
    from prewarm.cli.plan import level_table, pool_table

    reason = "level 90: backtest cost 216,143.25 vs 216,150.75 at level 95 (cold starts priced 4x a replica-hour)"
    levels = {m: {"level": "off" if i == 0 else 97.5, "reason": f"{reason} [{m}]", "sparse_intervals": 123_456}
              for i, m in enumerate(LONG_MODELS)}
    notes = Notes()
    text = render(level_table(levels, notes=notes))
    assert_fits(text)
    assert _lines(text, "ocr-longtail-v2")[0].split()[1:] == ["97.5", "123,456", "2"]
    assert _lines(text, "histogram-tuned")[0].split()[1:] == ["off", "123,456", "1"]
    assert notes.lines()[3] == f"4: {reason} [embedder-multilingual]"

    windows = [
        PlanWindow(model=m, version=str(v), window_start=START + timedelta(hours=v),
                   window_end=START + timedelta(days=1, hours=v, minutes=10), replicas=1, lead_seconds=360.0,
                   idempotency_key=f"{m}-{v}", reason=reason, expected_demand=216_143.0, host="gpu-node-12")
        for m in ("histogram-tuned", "ocr-longtail-v2") for v in (1, 12)
    ]
    notes = Notes()
    text = render(pool_table(windows, title="Pool ocr-pool as of Mon 23 Nov 00:00 UTC (not the clock): 8 replica "
                             "windows on 2 up hosts (dry run: nothing stored)", interval=timedelta(hours=1), notes=notes))
    assert_fits(text)
    row = _lines(text, "ocr-longtail-v2:12")[0]
    assert row.split()[1:] == ["gpu-node-12", "Mon", "11:54", "Mon", "12:00–Tue", "12:10", "216,143", "1"]
    assert notes.lines() == [f"1: {reason}"]


def test_forecast_method_table_fits() -> None:
    from prewarm.cli.forecast import method_table

    text = render(method_table({"histogram-tuned+seasonal-naive": 216_143, "auto-ets": 12, "mstl+auto-arima": 3}))
    assert_fits(text)
    assert _lines(text, "histogram-tuned")[0].split() == ["histogram-tuned", "216,143"]
    assert _lines(text, "auto-ets")[0].split() == ["auto-ets", "12"]


def test_cost_policy_plan_fits_with_its_level_reasons_under_the_table(tmp_path: Path) -> None:
    stamps = pd.date_range(START - timedelta(days=14), START, freq="h", inclusive="left", tz="UTC")
    rows = [
        pd.DataFrame({"timestamp": stamps, "model": model, "requests": 50.0 + 40 * ((stamps.hour + i) % 24 < 12)})
        for i, model in enumerate(LONG_MODELS)
    ]
    source = tmp_path / "t.csv"
    pd.concat(rows).to_csv(source, index=False)
    result = CliRunner().invoke(app, ["plan", "-i", str(source), "--fast", "--policy", "cost"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout)
    levels = result.stdout[result.stdout.index("Level per model (cost policy)"):]
    marks = {model: _lines(levels, model)[0].split()[-1] for model in LONG_MODELS}
    for mark in marks.values():  # each model's reason, under the table (equal reasons share a number)
        assert f"  {mark}: level " in levels
