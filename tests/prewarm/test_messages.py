"""Messages people read: one line, exit code 2, what was wrong, where, and what to do; no Python or pandas
representations (``np.int64(-4)``, ``0 days 01:00:00``, ``Value error,``, ``None .. None``, ``1 models``)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from prewarm.cli.main import app
from prewarm.errors import FleetError, TelemetryError
from prewarm.fleet import load_fleet
from prewarm.telemetry import read_telemetry_file, read_telemetry_input
from prewarm.text import duration, plural, show, validation_message

HEADER = "timestamp,model,requests\n"
REPRS = ("np.int64", "np.float64", "days 0", "0 days", "Value error,", "None .. None", "Traceback")
FOREIGN = """\
  - name: {name}
    version: "1"
    server: foreign
    warmup:
      inputs:
        - {{name: x, datatype: FP32, shape: [1, 4]}}
"""


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"}, catch_exceptions=False)


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    """The single error line of a failed run (exit 2), checked free of internals."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in REPRS:
        assert text not in result.output
    return lines[0]


def hourly(path: Path, *, hours: int = 72, models: tuple[str, ...] = ("a",)) -> Path:
    stamps = pd.date_range("2026-11-01", periods=hours, freq="h", tz="UTC")
    frame = pd.concat(
        [pd.DataFrame({"timestamp": stamps, "model": m, "requests": np.arange(hours) % 24}) for m in models]
    )
    frame.to_csv(path, index=False)
    return path


COMMANDS = {
    "forecast": lambda source, tmp: ["forecast", "-i", source, "-H", "3", "-o", str(tmp / "f.csv")],
    "plan": lambda source, tmp: ["plan", "-i", source, "--fast"],
    "simulate": lambda source, tmp: ["simulate", "-i", source, "--eval-intervals", "3"],
    "replay": lambda source, tmp: ["replay", "-i", source, "--speedup", "360", "--policy", "always", "--hosts", "1",
                                   "-o", str(tmp / "replay")],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_header_only_csv_exits_2_naming_file_and_what_to_pass(command: str, tmp_path: Path) -> None:
    source = tmp_path / "header.csv"
    source.write_text(HEADER)
    line = one_line_error(run(*COMMANDS[command](str(source), tmp_path)))
    assert f"--input {source}: it holds no telemetry rows, only a header" in line
    assert "pass a file with at least one row of timestamp,model,requests" in line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_empty_folder_exits_2_saying_it_holds_no_telemetry_files(command: str, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    line = one_line_error(run(*COMMANDS[command](str(folder), tmp_path)))
    assert f"{folder}: the folder holds no .csv or .parquet files" in line
    assert "no such file" not in line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_missing_input_exits_2(command: str, tmp_path: Path) -> None:
    line = one_line_error(run(*COMMANDS[command](str(tmp_path / "nope.csv"), tmp_path)))
    assert f"--input {tmp_path / 'nope.csv'}: no such file or folder" in line


def test_a_folder_of_telemetry_files_is_read_like_ingest_reads_it(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    hourly(tmp_path / "in" / "a.csv", models=("a",))
    hourly(tmp_path / "in" / "b.csv", models=("b",))
    frame = read_telemetry_input(tmp_path / "in")
    assert sorted(frame["model"].unique()) == ["a", "b"]
    with pytest.raises(TelemetryError, match=r"is a folder; pass a CSV or Parquet file"):
        read_telemetry_file(tmp_path / "in")


def test_negative_count_is_quoted_as_a_number(tmp_path: Path) -> None:
    source = tmp_path / "t.csv"
    source.write_text(HEADER + "2026-11-01T00:00:00Z,a,3\n2026-11-01T01:00:00Z,a,-4\n")
    with pytest.raises(TelemetryError, match=r"line 3, column 3 \(requests\): requests must not be negative, got -4$"):
        read_telemetry_file(source)
    line = one_line_error(run("forecast", "-i", str(source), "-H", "2", "-o", str(tmp_path / "f.csv")))
    assert "got -4" in line


def test_simulate_names_the_interval_as_a_length(tmp_path: Path) -> None:
    source = hourly(tmp_path / "t.csv", hours=24)
    line = one_line_error(run("simulate", "-i", str(source), "--eval-intervals", "30"))
    assert "the telemetry spans 24 intervals of 1 h; use at most 23" in line


def test_fleet_errors_carry_no_pydantic_prefix(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("models:\n" + FOREIGN.format(name="twin") + FOREIGN.format(name="twin"))
    with pytest.raises(FleetError) as caught:
        load_fleet(fleet)
    assert "Value error" not in str(caught.value)
    assert "model 'twin' version '1' appears twice" in str(caught.value)
    line = one_line_error(run("models", "import", str(fleet)))
    assert "appears twice" in line


def test_ingest_of_header_only_files_exits_2_naming_them(tmp_path: Path, engine: object) -> None:
    empty = tmp_path / "header.csv"
    empty.write_text(HEADER)
    line = one_line_error(run("ingest", str(empty)))
    assert f"{empty}: it holds no telemetry rows, only a header" in line
    assert "pass a file with at least one row of timestamp,model,requests" in line
    (tmp_path / "day").mkdir()
    (tmp_path / "day" / "a.csv").write_text(HEADER)
    line = one_line_error(run("ingest", str(tmp_path / "day")))
    assert f"{tmp_path / 'day'}: its files hold no telemetry rows, only a header" in line


def test_ingest_warns_of_a_header_only_file_beside_others_and_goes_on(tmp_path: Path, engine: object) -> None:
    empty = tmp_path / "quiet-day.csv"
    empty.write_text(HEADER)
    result = run("ingest", str(empty), str(hourly(tmp_path / "one.csv", hours=2)))
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"warning: {empty}: no telemetry rows, only a header; nothing read from it"
    assert "Ingested 2 rows into 2 buckets of 1 model (2026-11-01 00:00 → 2026-11-01 01:00 UTC)" in result.stdout


def test_a_header_only_file_in_an_input_folder_is_a_logged_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a-quiet.csv").write_text(HEADER)
    hourly(tmp_path / "in" / "b.csv", hours=3)
    with caplog.at_level("WARNING", logger="prewarm.telemetry"):
        frame = read_telemetry_input(tmp_path / "in")
    assert len(frame) == 3
    assert caplog.messages == [f"{tmp_path / 'in' / 'a-quiet.csv'}: no telemetry rows, only a header; nothing read from it"]


def test_header_only_csv_fails_without_a_warning_before_the_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "h.csv").write_text(HEADER)
    with caplog.at_level("WARNING"), pytest.raises(TelemetryError, match=r"it holds no telemetry rows, only a header"):
        read_telemetry_input(tmp_path / "h.csv")
    assert caplog.messages == []


def test_forecast_summarises_one_model_in_the_singular(tmp_path: Path) -> None:
    source = hourly(tmp_path / "t.csv", hours=24 * 8)
    result = run("forecast", "-i", str(source), "-H", "3", "-o", str(tmp_path / "f.csv"), "--fast")
    assert result.exit_code == 0, result.output
    assert "Forecast 1 model x 3 intervals of 1 h" in result.stdout
    assert "(1 fallback, 0 warnings)" in result.stdout
    assert "Counts are ensemble members" in result.stdout


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=1), "1 h"),
        (pd.Timedelta("0 days 01:00:00"), "1 h"),
        (timedelta(minutes=10), "10 min"),
        (timedelta(hours=2, minutes=30), "2 h 30 min"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=2, hours=6), "2 days 6 h"),
        (timedelta(days=1, minutes=10), "1 day 10 min"),
        (45, "45 s"),
        (100, "1 min 40 s"),
        (timedelta(minutes=12, seconds=5), "12 min"),
    ],
)
def test_duration(value: object, text: str) -> None:
    assert duration(value) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [(np.int64(-4), "-4"), (np.float64(2.5), "2.5"), (np.float64(3.0), "3"), ("lots", "'lots'"),
     (pd.Timedelta(hours=1), "1 h")],
)
def test_show(value: object, text: str) -> None:
    assert show(value) == text


def test_plural_and_validation_message() -> None:
    assert [plural(n, "model") for n in (0, 1, 2)] == ["models", "model", "models"]
    assert plural(1, "model has", "models have") == "model has"
    assert validation_message({"msg": "Value error, model 'x' appears twice"}) == "model 'x' appears twice"


def test_reconcile_of_a_pool_without_hosts_names_the_pools_there_are(engine: object) -> None:
    line = one_line_error(run("reconcile", "--pool", "gpu"))
    assert "pool 'gpu' has no hosts (the inventory has no hosts)" in line
    assert run("hosts", "add", "h1", "http://127.0.0.1:9", "--pool", "cpu").exit_code == 0
    line = one_line_error(run("reconcile", "--pool", "gpu"))
    assert "pool 'gpu' has no hosts (pools with hosts: cpu); add one with `prewarm hosts add NAME URL --pool gpu`" in line


def test_demo_with_header_only_telemetry_exits_2_naming_the_option(tmp_path: Path, engine: object) -> None:
    source = tmp_path / "header.csv"
    source.write_text(HEADER)
    result = run("demo", "--telemetry", str(source))
    assert result.exit_code == 2, result.output
    assert f"error: --telemetry {source}: it holds no telemetry rows, only a header" in result.stderr
    assert "WARNING" not in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("variable", "value", "argv", "expected"),
    [
        ("PREWARM_FORECAST_INTERVAL", "banana", ["ingest", "x.csv"],
         "settings: PREWARM_FORECAST_INTERVAL='banana': Input should be a valid timedelta"),
        ("PREWARM_HOST__MAX_BODY_MB", "-1", ["serve", "--no-preload"],
         "settings: PREWARM_HOST__MAX_BODY_MB='-1': Input should be greater than 0"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    variable: str, value: str, argv: list[str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prewarm.settings import reset_settings

    hourly(tmp_path / "x.csv", hours=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREWARM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(variable, value)
    reset_settings()
    try:
        line = one_line_error(run(*argv))
    finally:
        monkeypatch.undo()
        reset_settings()
    assert expected in line and line.endswith("fix or unset the environment variable")
    assert "pydantic" not in line and "type=" not in line


@pytest.mark.parametrize(
    ("names", "expected"),
    [(["nope"], "model nope is not registered: import it with"), (["nope", "ghost"], "models ghost, nope are not")],
)
def test_plan_names_unregistered_models_in_the_right_number(
    tmp_path: Path, engine: object, names: list[str], expected: str
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("models:\n" + FOREIGN.format(name="known"))
    assert run("models", "import", str(fleet)).exit_code == 0
    args = ["plan", "--pool", "default"] + [arg for name in names for arg in ("--model", name)]
    assert expected in one_line_error(run(*args))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["replay", "-i", "t.csv"], "error: Missing option '--speedup'; see `prewarm replay --help`"),
        (["forecast", "-H", "0"], "error: Invalid value for '--horizon' / '-H': must be at least 1; see"),
        (["forecast", "-H", "abc"], "error: Invalid value for '--horizon' / '-H': must be a whole number; see"),
        (["replay", "-i", "t.csv", "--speedup", "fast"], "error: Invalid value for '--speedup': must be a number;"),
        (["plan", "--nope"], "error: No such option: --nope"),
        (["nosuch"], "error: No such command 'nosuch'; see `prewarm --help`"),
        (["models", "nosuch"], "error: No such command 'nosuch'; see `prewarm models --help`"),
    ],
)
def test_usage_errors_are_one_line_naming_the_help_page(args: list[str], expected: str) -> None:
    """A missing option, a bad value or an unknown command: one line on stderr, exit 2, no usage box."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from prewarm.cli.main import app; sys.argv[0] = 'prewarm'; app()", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith(expected)
    assert "Usage:" not in result.stderr and "Traceback" not in result.stderr and result.stdout == ""
    assert "Input should" not in result.stderr
