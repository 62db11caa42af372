"""``prewarm simulate``: the command-line contract (flags, --json, --decisions-dir, figure, exit codes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from prewarm.cli.main import app
from scheduling.experiment import POLICY_NAMES


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run ``prewarm ARGS...`` in-process and return the click result."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def telemetry_csv(tmp_path: Path, telemetry: pd.DataFrame) -> Path:
    path = tmp_path / "telemetry.csv"
    telemetry.to_csv(path, index=False)
    return path


def test_json_decisions_and_figure(cli, telemetry_csv: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "decisions"
    result = cli(
        "simulate", "--input", str(telemetry_csv), "--eval-intervals", "48", "--replan", "12",
        "--decisions-dir", str(out), "--json", "--fast-forecast",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document["policies"]) == list(POLICY_NAMES)
    assert document["eval_intervals"] == 48 and document["models"] == 8
    for name, entry in document["policies"].items():
        assert {"cold_fraction", "replica_hours", "replica_hours_vs_oracle", "cold_start_events", "per_model"} <= set(entry)
        assert len(entry["per_model"]) == 8
        assert sum(m["cold_start_events"] for m in entry["per_model"]) == entry["cold_start_events"]
        decisions = pd.read_csv(out / f"{name}.csv")
        assert list(decisions.columns) == ["model", "timestamp", "capacity", "ready", "provisioned"]
        assert len(decisions) == 8 * 48
        assert (decisions["provisioned"] >= decisions["ready"]).all()
    assert document["policies"]["oracle"]["cold_fraction"] == 0.0
    assert document["policies"]["oracle"]["replica_hours_vs_oracle"] == 1.0
    assert (out / "simulation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_output_and_a_policy_subset(cli, telemetry_csv: Path, tmp_path: Path) -> None:  # noqa: ANN001
    plot = tmp_path / "fig.png"
    result = cli(
        "simulate", "--input", str(telemetry_csv), "--eval-intervals", "24", "--policies", "reactive,histogram",
        "--plot", str(plot), "--lead", "2", "--replicas-at-peak", "2",
    )
    assert result.exit_code == 0, result.output
    assert "reactive" in result.stdout and "histogram" in result.stdout and "static" not in result.stdout
    assert plot.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eval-intervals", "5000"], "leaves no history"),
        (["--eval-intervals", "24", "--policies", "fifo"], "unknown policy 'fifo'"),
        (["--eval-intervals", "24", "--replan", "0"], "--replan must be at least 1"),
        (["--eval-intervals", "24", "--level", "100"], "--level 100: must be between 0 and 100"),
        (["--eval-intervals", "24", "--cold-price", "-1"], "--cold-price must be >= 0"),
        (["--eval-intervals", "24", "--target-cold-fraction", "2"], "--target-cold-fraction must be in [0, 1)"),
    ],
)
def test_bad_options_exit_2_with_one_message(cli, telemetry_csv: Path, args: list[str], message: str) -> None:  # noqa: ANN001
    result = cli("simulate", "--input", str(telemetry_csv), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_bad_telemetry_names_file_line_and_column(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,model,requests\n2026-01-01T00:00:00Z,a,3\n2026-01-01T01:00:00Z,a,-4\n")
    result = cli("simulate", "--input", str(path), "--eval-intervals", "1")
    assert result.exit_code == 2
    assert "line 3" in result.stderr and "requests must not be negative" in result.stderr
    missing = cli("simulate", "--input", str(tmp_path / "nope.csv"), "--eval-intervals", "1")
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_cost_and_a_target_cold_fraction(cli, telemetry_csv: Path) -> None:  # noqa: ANN001
    def run(*extra: str) -> dict:  # type: ignore[type-arg]
        result = cli("simulate", "--input", str(telemetry_csv), "--eval-intervals", "48", "--replan", "12",
                     "--policies", "reactive,cost", "--json", "--fast-forecast", *extra)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["policies"]

    free = run()
    assert all(m["why"].startswith("level ") for m in free["cost"]["per_model"])  # each model's level, and why
    assert free["reactive"]["cost"] == pytest.approx(free["reactive"]["cold_cost"] + free["reactive"]["replica_hour_cost"])
    strict = run("--target-cold-fraction", "0.0")
    assert strict["cost"]["cold_fraction"] <= free["cost"]["cold_fraction"]
    assert strict["cost"]["replica_hours"] >= free["cost"]["replica_hours"]
