"""``prewarm demo`` end to end on the example fleet (sharing the session's Prefect test server)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from db.models import PlanStatus, WarmPlan, WarmRun, WarmTrigger
from db.session import session_scope
from prewarm.cli.main import app
from prewarm.fleet import load_fleet

EXAMPLES = Path(__file__).parents[2] / "examples"
# Two of the four example models keep the test short: one warm all day, one sparse with a later window.
MODELS = ("reranker", "ocr-longtail")


def _small_fleet(tmp_path: Path) -> Path:
    models = [
        m.model_dump(mode="json") for m in load_fleet(EXAMPLES / "fleet.yaml").models if m.name in MODELS
    ]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def test_demo_warms_every_planned_window_and_writes_the_report(history_db: Engine, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    args = ["demo", "--fleet", str(_small_fleet(tmp_path)), "--speedup", "86400", "--report", str(report)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "First-request latency, cold vs warmed" in result.output
    for model in MODELS:
        assert model in result.output
    with session_scope(history_db) as session:
        plans = session.scalars(select(WarmPlan)).all()
        runs = session.scalars(select(WarmRun)).all()
        assert {p.model for p in plans} == set(MODELS)
        # Done when the model met its SLA, failed when not: on a loaded machine either can happen.
        assert {p.status for p in plans} <= {PlanStatus.DONE, PlanStatus.FAILED}
        assert sorted(r.plan_id for r in runs) == sorted(p.id for p in plans)
        assert all(r.trigger is WarmTrigger.SCHEDULED and r.cold_first_request_ms is not None for r in runs)
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 1
    assert html.count("<tr><td>") == len(plans)


def test_demo_names_a_missing_fleet_file(history_db: Engine, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--fleet", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: fleet file not found" in result.output
