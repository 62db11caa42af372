"""``prewarm plan``: a dry-run plan from a telemetry file, with optional fleet and hosts files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from prewarm.cli.main import app

RUNNER = CliRunner()


def _run(*args: str):  # type: ignore[no-untyped-def]
    return RUNNER.invoke(app, [*args, "--fast-forecast"], catch_exceptions=False)


@pytest.fixture
def telemetry_csv(tmp_path: Path, telemetry: pd.DataFrame) -> Path:
    path = tmp_path / "telemetry.csv"
    telemetry.to_csv(path, index=False)
    return path


def test_plan_json_and_csv(telemetry_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.csv"
    result = _run("plan", "--input", str(telemetry_csv), "--horizon", "12", "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["rows"] and document["shortfall"] == []
    first = document["rows"][0]
    assert {"model", "version", "start", "window_start", "end", "replicas", "lead_seconds", "reason",
            "expected_demand", "idempotency_key"} <= set(first)
    assert len(pd.read_csv(out)) == len(document["rows"])
    again = json.loads(_run("plan", "--input", str(telemetry_csv), "--horizon", "12", "--json").stdout)
    assert [r["idempotency_key"] for r in again["rows"]] == [r["idempotency_key"] for r in document["rows"]]


def test_hosts_limit_capacity_and_report_shortfall(telemetry_csv: Path, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  - {name: gpu-1, memory_mb: 1000, pool: a}\n")
    spec = (
        "  - name: {name}\n    artifact_uri: /tmp/x.pt2\n    sha256: '{sha}'\n    loader: torch_export\n"
        "    warmup: {{inputs: [{{name: x, shape: [1]}}]}}\n    device_memory_mb: 600\n    replica_capacity: 5\n"
    )
    names = sorted(pd.read_csv(telemetry_csv)["model"].unique())
    fleet.write_text("models:\n" + "".join(spec.format(name=n, sha="0" * 64) for n in names))
    result = _run("plan", "--input", str(telemetry_csv), "--horizon", "12", "--fleet", str(fleet),
                  "--hosts", str(hosts), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {r["host"] for r in document["rows"]} == {"gpu-1"}
    assert document["shortfall"], "one 600 MB replica fits in 1000 MB at a time; the rest is shortfall"


def test_bad_hosts_file_and_unknown_models_exit_2(telemetry_csv: Path, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  - {name: gpu-1, memory_mb: -5}\n")
    result = _run("plan", "--input", str(telemetry_csv), "--hosts", str(hosts))
    assert result.exit_code == 2
    assert "hosts.0.memory_mb" in result.stderr
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "models:\n  - name: other\n    artifact_uri: /tmp/x.pt2\n    sha256: '" + "0" * 64 + "'\n"
        "    loader: torch_export\n    warmup: {inputs: [{name: x, shape: [1]}]}\n"
    )
    result = _run("plan", "--input", str(telemetry_csv), "--fleet", str(fleet))
    assert result.exit_code == 2
    assert "that the fleet lacks; add it to the fleet file" in " ".join(result.stderr.split())


def test_cost_policy_plan_reports_a_level_per_model(telemetry_csv: Path) -> None:
    result = _run("plan", "--input", str(telemetry_csv), "--horizon", "24", "--json", "--policy", "cost")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["policy"] == "cost" and document["rows"]
    assert len(document["levels"]) == 8
    for entry in document["levels"].values():
        assert entry["reason"].startswith("level ") and entry["sparse_intervals"] >= 0
    bad = RUNNER.invoke(app, ["plan", "--input", str(telemetry_csv), "--target-cold-fraction", "0.1"])
    assert bad.exit_code == 2 and "--target-cold-fraction goes with --policy cost" in bad.output


def test_cost_policy_plan_table(telemetry_csv: Path) -> None:
    result = _run("plan", "--input", str(telemetry_csv), "--horizon", "12", "--policy", "cost")
    assert result.exit_code == 0, result.output
    assert "Warm plan as of" in result.stdout and "Level per model (cost policy)" in result.stdout
