"""Traces as they come from other people's systems: odd bucket widths, gaps, time zones, duplicates, thousands of
near-empty models, short histories, huge or fractional counts, awkward model names.

``prewarm simulate`` and ``prewarm plan`` (both policies) either work on each, with sane output, or refuse with one
line and exit code 2. A RuntimeWarning (numpy's "invalid value" floods) fails the test.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from prewarm import columns as C
from prewarm.cli.main import app

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

START = pd.Timestamp("2026-01-05", tz="UTC")


def daily_cycle(n_models: int, periods: int, *, freq: str = "h", seed: int = 0, prefix: str = "m") -> pd.DataFrame:
    """``n_models`` Poisson series with a daily cycle on a regular grid of ``freq`` buckets (seeded)."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(START, periods=periods, freq=freq)
    per_day = pd.Timedelta(days=1) / pd.Timedelta(stamps.freq)
    rate = 5 + 20 * (1 + np.sin(np.arange(periods) * 2 * np.pi / per_day))
    frames = [
        pd.DataFrame({C.TIMESTAMP: stamps, C.MODEL: f"{prefix}{i}", C.REQUESTS: rng.poisson(rate)}) for i in range(n_models)
    ]
    return pd.concat(frames, ignore_index=True)


def _irregular() -> pd.DataFrame:
    frame = daily_cycle(3, 24 * 8)
    jitter = np.random.default_rng(1).integers(0, 1800, len(frame))
    return frame.assign(**{C.TIMESTAMP: frame[C.TIMESTAMP] + pd.to_timedelta(jitter, unit="s")})


def _gap_of_days() -> pd.DataFrame:
    frame = daily_cycle(3, 24 * 14)
    stamps = frame[C.TIMESTAMP]
    return frame[(stamps < START + pd.Timedelta(days=3)) | (stamps >= START + pd.Timedelta(days=8))]


def _local_time(zone: str) -> pd.DataFrame:
    frame = daily_cycle(3, 24 * 8)
    return frame.assign(**{C.TIMESTAMP: frame[C.TIMESTAMP].dt.tz_convert(zone).astype(str)})


def _naive() -> pd.DataFrame:
    frame = daily_cycle(3, 24 * 8)
    return frame.assign(**{C.TIMESTAMP: frame[C.TIMESTAMP].dt.tz_localize(None).astype(str)})


def _many_near_empty() -> pd.DataFrame:
    """5 busy models and 1,000 that are all zero or have 1 to 3 requests in total."""
    busy = daily_cycle(5, 24 * 4)
    stamps = busy[C.TIMESTAMP].drop_duplicates().to_numpy()
    rng = np.random.default_rng(7)
    rows = []
    for i in range(1000):
        hits = i % 4
        if hits == 0:
            rows += [(stamps[0], f"z{i}", 0.0), (stamps[-1], f"z{i}", 0.0)]
        else:
            rows += [(stamps[j], f"z{i}", 1.0) for j in rng.choice(len(stamps), hits, replace=False)]
    quiet = pd.DataFrame(rows, columns=[C.TIMESTAMP, C.MODEL, C.REQUESTS])
    return pd.concat([busy, quiet], ignore_index=True)


def _late_and_early() -> pd.DataFrame:
    """A model that only appears in the last day (one with a single row) and one that stops after two days."""
    frame = daily_cycle(3, 24 * 8)
    last = frame[C.TIMESTAMP].max()
    late = pd.DataFrame({C.TIMESTAMP: pd.date_range(last - pd.Timedelta(hours=23), last, freq="h"), C.MODEL: "late",
                         C.REQUESTS: 3})
    single = pd.DataFrame({C.TIMESTAMP: [last], C.MODEL: ["one row"], C.REQUESTS: [2]})
    early = (frame[C.MODEL] == "m1") & (frame[C.TIMESTAMP] > START + pd.Timedelta(days=2))
    return pd.concat([frame[~early], late, single], ignore_index=True)


def _awkward_names() -> pd.DataFrame:
    frame = daily_cycle(6, 24 * 8)
    names = {"m0": "my model", "m1": "模型-ü", "m2": "a,b", "m3": "org/name", "m4": "[/]", "m5": "x[bold]y"}
    return frame.assign(**{C.MODEL: frame[C.MODEL].map(names)})


CASES: dict[str, Callable[[], pd.DataFrame]] = {
    "5-minute buckets": lambda: daily_cycle(2, 288 * 3, freq="5min"),
    "15-minute buckets": lambda: daily_cycle(2, 96 * 4, freq="15min"),
    "daily buckets": lambda: daily_cycle(3, 60, freq="D"),
    "irregular timestamps": _irregular,
    "a gap of days": _gap_of_days,
    "New York time": lambda: _local_time("America/New_York"),
    "India time": lambda: _local_time("Asia/Kolkata"),
    "naive timestamps": _naive,
    "unsorted rows": lambda: daily_cycle(3, 24 * 8).sample(frac=1.0, random_state=0),
    "duplicate rows": lambda: pd.concat([daily_cycle(3, 24 * 8), daily_cycle(3, 24 * 8).head(40)]),
    "a single model": lambda: daily_cycle(1, 24 * 8),
    "1,000 near-empty models": _many_near_empty,
    "late and early models": _late_and_early,
    "less than a week": lambda: daily_cycle(3, 24 * 3),
    "less than a day": lambda: daily_cycle(3, 20),
    "huge counts": lambda: daily_cycle(3, 24 * 8).assign(**{C.REQUESTS: 1e7}),
    "fractional counts": lambda: daily_cycle(3, 24 * 8).pipe(lambda f: f.assign(**{C.REQUESTS: f[C.REQUESTS] * 0.37})),
    "all zero": lambda: daily_cycle(3, 24 * 8).assign(**{C.REQUESTS: 0}),
    "awkward model names": _awkward_names,
}


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run ``prewarm ARGS...`` in-process; an exception that escapes the command fails the test."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _write(tmp_path: Path, name: str) -> tuple[Path, pd.DataFrame]:
    frame = CASES[name]()
    path = tmp_path / "trace.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _models(frame: pd.DataFrame) -> set[str]:
    return {str(m).strip() for m in frame[C.MODEL]}


def _refuse(constant: str) -> float:
    raise AssertionError(f"{constant} is not JSON")


def _eval_intervals(name: str) -> int:
    return 12 if name == "less than a day" else 24


@pytest.mark.parametrize("name", list(CASES))
def test_simulate(cli, tmp_path: Path, name: str) -> None:  # noqa: ANN001
    path, frame = _write(tmp_path, name)
    policies = "reactive,sparse,forecast,cost" if name == "1,000 near-empty models" else "all"
    result = cli("simulate", "-i", path, "--eval-intervals", _eval_intervals(name), "--fast", "--replan", 12,
                 "--policies", policies, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout, parse_constant=_refuse)
    assert document["models"] == len(_models(frame))
    for entry in document["policies"].values():
        assert 0.0 <= entry["cold_fraction"] <= 1.0
        assert math.isfinite(entry["replica_hours"]) and entry["replica_hours"] >= 0
        assert math.isfinite(entry["cost"])


@pytest.mark.parametrize("policy", ["forecast", "cost"])
@pytest.mark.parametrize("name", list(CASES))
def test_plan(cli, tmp_path: Path, name: str, policy: str) -> None:  # noqa: ANN001
    path, frame = _write(tmp_path, name)
    result = cli("plan", "-i", path, "--fast", "--policy", policy, "--horizon", 12, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout, parse_constant=_refuse)
    rows = document["rows"]
    assert {r["model"] for r in rows} <= _models(frame)
    assert all(r["replicas"] >= 1 and math.isfinite(r["expected_demand"]) for r in rows)
    assert document["replicas_planned"] == sum(r["replicas"] for r in rows)
    if name not in ("all zero",):
        assert rows, "a trace with traffic gets at least one window"


@pytest.mark.parametrize("policy", ["forecast", "cost"])
def test_plan_table_prints_names_as_they_are(cli, tmp_path: Path, policy: str) -> None:  # noqa: ANN001
    """Brackets in a model name are text, not console markup (``[/]`` used to crash the table)."""
    path, _ = _write(tmp_path, "awkward model names")
    result = cli("plan", "-i", path, "--fast", "--policy", policy, "--horizon", 12)
    assert result.exit_code == 0, result.output
    for name in ("[/]", "x[bold]y", "org/name", "a,b", "模型-ü"):
        assert name in result.stdout


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity"])
def test_infinite_counts_are_refused_in_one_line(cli, tmp_path: Path, value: str) -> None:  # noqa: ANN001
    frame = daily_cycle(2, 24 * 3).astype({C.REQUESTS: object})
    frame.loc[7, C.REQUESTS] = value
    path = tmp_path / "trace.csv"
    frame.to_csv(path, index=False)
    for args in (("simulate", "--eval-intervals", 24), ("plan",), ("plan", "--policy", "cost")):
        result = cli(*args, "-i", path, "--fast")
        assert result.exit_code == 2, result.output
        assert "line 9, column 3 (requests): requests must be finite" in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_history_shorter_than_the_evaluation_is_one_line(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = _write(tmp_path, "less than a day")
    result = cli("simulate", "-i", path, "--eval-intervals", 48, "--fast")
    assert result.exit_code == 2
    assert "--eval-intervals 48 leaves no history: the telemetry spans 20 intervals of 1 h; use at most 19" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_one_timestamp_is_one_line(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "trace.csv"
    pd.DataFrame({C.TIMESTAMP: ["2026-01-05T00:00:00Z"] * 2, C.MODEL: ["a", "b"], C.REQUESTS: [3, 4]}).to_csv(path, index=False)
    for args, message in (
        (("simulate", "--eval-intervals", 1), "no model with two distinct timestamps"),
        (("plan", "--policy", "cost"), "no model has two distinct timestamps"),
    ):
        result = cli(*args, "-i", path, "--fast")
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_replay_refuses_huge_counts_before_generating_them(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """1e7 requests per bucket would be billions of arrivals: refused in one line, before any host or database."""
    path, _ = _write(tmp_path, "huge counts")
    result = cli("replay", "-i", path, "--speedup", 360, "--eval-intervals", 24)
    assert result.exit_code == 2, result.output
    assert "the last 24 intervals hold 720,000,000 requests at --scale 1; one replay sends at most 20,000,000: " \
           "use --scale 0.028 or less" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_replay_lists_a_thousand_unregistered_models_briefly(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = _write(tmp_path, "1,000 near-empty models")
    result = cli("replay", "-i", path, "--speedup", 360, "--eval-intervals", 24)
    assert result.exit_code == 2, result.output
    assert "models not registered: m0, m1, m2, m3, m4, z0, z1, z10, z100, z101 and 995 more; register them" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_replay_models_absent_from_the_trace(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = _write(tmp_path, "1,000 near-empty models")
    result = cli("replay", "-i", path, "--speedup", 360, "--eval-intervals", 24, "--models", "m0,ghost")
    assert result.exit_code == 2, result.output
    assert "--models: ghost not in the trace (it has m0, m1, m2, m3, m4, z0, z1, z10, z100, z101 and 995 more)" in result.output


def test_replay_history_shorter_than_the_evaluation(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = _write(tmp_path, "less than a day")
    result = cli("replay", "-i", path, "--speedup", 360)
    assert result.exit_code == 2, result.output
    assert "--eval-intervals 48 leaves no history" in result.output


def test_models_called_na_none_or_null_keep_their_names(cli, tmp_path: Path) -> None:  # noqa: ANN001
    frame = daily_cycle(4, 24 * 3)
    frame[C.MODEL] = frame[C.MODEL].map({"m0": "NA", "m1": "None", "m2": "null", "m3": "nan"})
    frame["p50_ms"] = ["NA", "", "12.5", "n/a"] * (len(frame) // 4)
    path = tmp_path / "trace.csv"
    frame.to_csv(path, index=False)
    result = cli("plan", "-i", path, "--fast", "--horizon", 12, "--json")
    assert result.exit_code == 0, result.output
    assert {r["model"] for r in json.loads(result.stdout)["rows"]} == {"NA", "None", "null", "nan"}


def test_a_missing_count_is_still_refused(cli, tmp_path: Path) -> None:  # noqa: ANN001
    frame = daily_cycle(2, 24 * 3).astype({C.REQUESTS: object})
    frame.loc[3, C.REQUESTS] = "NA"
    path = tmp_path / "trace.csv"
    frame.to_csv(path, index=False)
    result = cli("plan", "-i", path, "--fast")
    assert result.exit_code == 2, result.output
    assert "line 5, column 3 (requests): requests must be a number (not empty or NaN)" in result.output


@pytest.mark.parametrize(("freq", "jitter_s"), [("1h", 5), ("1h", 1800), ("15min", 20), ("5min", 3)])
def test_jittered_timestamps_fall_on_their_nominal_grid(cli, tmp_path: Path, freq: str, jitter_s: int) -> None:  # noqa: ANN001
    """Timestamps a little late (a scrape's delay) are bucketed at the nominal width, not at an odd modal gap."""
    frame = daily_cycle(3, int(pd.Timedelta(days=3) / pd.Timedelta(freq)), freq=freq)
    jitter = np.random.default_rng(5).integers(0, jitter_s + 1, len(frame))
    frame[C.TIMESTAMP] = frame[C.TIMESTAMP] + pd.to_timedelta(jitter, unit="s")
    path = tmp_path / "trace.csv"
    frame.to_csv(path, index=False)
    result = cli("simulate", "-i", path, "--eval-intervals", 24, "--fast", "--policies", "reactive", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["interval_seconds"] == pd.Timedelta(freq).total_seconds()


def test_sparse_models_on_a_grid_keep_the_grid(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """Gaps of several buckets are whole multiples of the bucket: the width stays the most common gap."""
    path, _ = _write(tmp_path, "1,000 near-empty models")
    frame = pd.read_csv(path)
    quiet = frame[frame[C.MODEL].str.startswith("z")]
    quiet.to_csv(path, index=False)
    result = cli("simulate", "-i", path, "--eval-intervals", 24, "--fast", "--policies", "reactive", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["interval_seconds"] == 3600.0


def test_timestamps_written_with_a_utc_suffix(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """``2026-01-05 00:00:00 UTC`` (as many exports write it) and a lower-case ``z`` are UTC."""
    frame = daily_cycle(2, 24 * 3)
    text = frame[C.TIMESTAMP].dt.strftime("%Y-%m-%d %H:%M:%S")
    frame[C.TIMESTAMP] = np.where(np.arange(len(frame)) % 2 == 0, text + " UTC", text.str.replace(" ", "T") + "z")
    path = tmp_path / "trace.csv"
    frame.to_csv(path, index=False)
    result = cli("simulate", "-i", path, "--eval-intervals", 24, "--fast", "--policies", "reactive", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["eval_start"] == "2026-01-07T00:00:00+00:00" and document["interval_seconds"] == 3600.0


def test_a_timestamp_in_another_format_is_one_line(cli, tmp_path: Path) -> None:  # noqa: ANN001
    frame = daily_cycle(2, 24 * 3).astype({C.TIMESTAMP: str})
    frame.loc[4, C.TIMESTAMP] = "1/5/2026 04:00"
    path = tmp_path / "trace.csv"
    frame.to_csv(path, index=False)
    result = cli("plan", "-i", path, "--fast")
    assert result.exit_code == 2, result.output
    assert "line 6, column 1 (timestamp): unparsable timestamp (expected ISO-8601), got '1/5/2026 04:00'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plan", "--lead-seconds", "-100"), "--lead-seconds must be a number of seconds >= 0, got -100"),
        (("plan", "--keep-alive-seconds", "-5"), "--keep-alive-seconds must be a number of seconds >= 0, got -5"),
        (("plan", "--policy", "cost", "--cold-weight", "-1"), "--cold-weight must be a positive number, got -1"),
        (("plan", "--replicas-at-peak", "inf"), "--replicas-at-peak must be a positive number, got inf"),
        (("simulate", "--eval-intervals", "24", "--keepalive-minutes", "-5"), "--keepalive-minutes must be >= 0, got -5"),
    ],
)
def test_bad_numbers_are_refused_by_their_flag(cli, tmp_path: Path, args: tuple[str, ...], message: str) -> None:  # noqa: ANN001
    path, _ = _write(tmp_path, "a single model")
    result = cli(*args, "-i", path, "--fast")
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.filterwarnings("error")
def test_the_figure_draws_any_model_name(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """CJK names (the font lacks the glyphs) draw without a warning per glyph; a ``$`` is not mathtext."""
    frame = daily_cycle(3, 24 * 3)
    frame[C.MODEL] = frame[C.MODEL].map({"m0": "模型-ü", "m1": r"cost$\alpha_{$x", "m2": "日本語モデル"})
    path = tmp_path / "trace $1.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    result = cli("simulate", "-i", path, "--eval-intervals", 24, "--fast", "--policies", "reactive", "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "simulation.png").stat().st_size > 10_000


@pytest.mark.parametrize(("flag", "value"), [("--speedup", "nan"), ("--speedup", "inf"), ("--scale", "nan"), ("--scale", "-1")])
def test_replay_refuses_a_speedup_or_scale_that_is_not_a_positive_number(cli, tmp_path: Path, flag: str, value: str) -> None:  # noqa: ANN001
    path, _ = _write(tmp_path, "a single model")
    args = {"--speedup": "360", "--scale": "1", flag: value}
    result = cli("replay", "-i", path, "--eval-intervals", 24, *[x for kv in args.items() for x in kv])
    assert result.exit_code == 2, result.output
    assert f"{flag} {value}: must be a positive number" in result.output


@pytest.mark.parametrize("policy", ["forecast", "cost"])
def test_a_model_that_stopped_early_is_planned_from_the_traces_end(cli, tmp_path: Path, policy: str) -> None:  # noqa: ANN001
    """A model silent for days is idle up to the trace's end: no window in the past, and "now" is the end."""
    path, frame = _write(tmp_path, "late and early models")
    result = cli("plan", "-i", path, "--fast", "--policy", policy, "--horizon", 12, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    now = frame[C.TIMESTAMP].max() + pd.Timedelta(hours=1)
    assert pd.Timestamp(document["now"]) == now
    assert all(pd.Timestamp(r["window_start"]) >= now for r in document["rows"])


def test_cost_plan_with_a_fleet_that_lacks_every_model(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = _write(tmp_path, "late and early models")
    fleet = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
    result = cli("plan", "-i", path, "--fast", "--policy", "cost", "--fleet", fleet)
    assert result.exit_code == 2, result.output
    assert f"none of its models ('late' and 4 more) is in the fleet file {fleet}; add them to it" in result.output


def test_a_stray_1970_row_on_a_large_fleet_is_refused_not_allocated(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """56 years of hourly buckets for 300 models would be 147 million cells: one line naming the span."""
    frame = daily_cycle(300, 24 * 2)
    stray = pd.DataFrame({C.TIMESTAMP: [pd.Timestamp("1970-01-01", tz="UTC")], C.MODEL: ["m0"], C.REQUESTS: [1]})
    path = tmp_path / "trace.csv"
    pd.concat([frame, stray]).to_csv(path, index=False)
    result = cli("simulate", "-i", path, "--eval-intervals", 24, "--fast", "--policies", "reactive")
    assert result.exit_code == 2, result.output
    assert "the telemetry spans 491," in result.output and "(1970-01-01T00:00:00+00:00 to " in result.output
    assert "look for stray timestamps" in result.output and len(result.output.strip().splitlines()) == 1


def test_headers_in_another_case(cli, tmp_path: Path) -> None:  # noqa: ANN001
    frame = daily_cycle(2, 24 * 3).rename(columns={C.TIMESTAMP: "Timestamp", C.MODEL: " Model", C.REQUESTS: "REQUESTS"})
    path = tmp_path / "trace.csv"
    frame.to_csv(path, index=False)
    result = cli("simulate", "-i", path, "--eval-intervals", 24, "--fast", "--policies", "reactive", "--json")
    assert result.exit_code == 0, result.output
    last_day = frame.groupby(" Model")["REQUESTS"].apply(lambda counts: counts.tail(24).sum()).sum()
    assert json.loads(result.stdout)["requests"] == last_day


def test_replay_models_may_name_a_model_with_a_comma(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = _write(tmp_path, "awkward model names")
    result = cli("replay", "-i", path, "--speedup", 360, "--eval-intervals", 24, "--models", '"a,b", org/name')
    assert result.exit_code == 2, result.output
    assert "models not registered: a,b, org/name; register them" in result.output  # past --models: both are in the trace


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "2262-04-12T00:00:00Z", "2999-01-01T00:00:00Z"])
def test_a_timestamp_centuries_off_is_one_line(cli, tmp_path: Path, stamp: str) -> None:  # noqa: ANN001
    """A typo'd year would stretch the grid over centuries (a hang) or overflow near 2262: refused when read."""
    frame = daily_cycle(2, 48).astype({C.TIMESTAMP: str})
    frame.loc[5, C.TIMESTAMP] = stamp
    path = tmp_path / "trace.csv"
    frame.to_csv(path, index=False)
    result = cli("plan", "-i", path, "--fast", "--policy", "cost")
    assert result.exit_code == 2, result.output
    assert f"line 7, column 1 (timestamp): timestamp outside 1970 to 2199, got '{stamp}'" in result.output
