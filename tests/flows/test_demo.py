"""``prewarm demo`` end to end on the example fleet: two real hosts, the controller's ticks, the report."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from db.models import ActionKind, ActionOutcome, ControllerAction, Host, PlanStatus, WarmPlan, WarmRun, WarmTrigger
from db.session import session_scope
from prewarm.cli.main import app
from prewarm.fleet import load_fleet

EXAMPLES = Path(__file__).parents[2] / "examples"
# Two of the four example models keep the test short.
MODELS = ("reranker", "ocr-longtail")


def _small_fleet(tmp_path: Path, names: tuple[str, ...] = MODELS, **changes: object) -> Path:
    models = [
        {**m.model_dump(mode="json"), **changes} for m in load_fleet(EXAMPLES / "fleet.yaml").models if m.name in names
    ]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def test_demo_warms_on_two_hosts_ahead_of_the_windows_and_unloads_after(history_db: Engine, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    args = ["demo", "--fleet", str(_small_fleet(tmp_path)), "--speedup", "86400", "--report", str(report)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Replica windows planned as of" in result.output and "Started hosts demo-1" in result.output
    assert "not the clock" in result.output and "cold ms" in result.output
    with session_scope(history_db) as session:
        hosts = {h.name for h in session.scalars(select(Host))}
        plans = session.scalars(select(WarmPlan)).all()
        runs = session.scalars(select(WarmRun)).all()
        unloads = {
            (a.host, a.model) for a in session.scalars(select(ControllerAction))
            if a.kind is ActionKind.UNLOAD and a.outcome is ActionOutcome.OK
        }
        assert hosts == {"demo-1", "demo-2"}
        assert {p.model for p in plans} == set(MODELS) and {p.host for p in plans} <= hosts
        assert all(p.status is PlanStatus.DONE for p in plans)
        # Ready on its host before its window opened (on the replay's clock), unloaded after it.
        assert all(p.ready_at is not None and p.ready_at <= p.window_start for p in plans)
        assert {(p.host, p.model) for p in plans} <= unloads
        assert all(r.trigger is WarmTrigger.SCHEDULED and r.cold_first_request_ms is not None for r in runs)
        # Both figures timed by the host (the warm one read from its statistics), so they compare.
        assert all(r.ready and r.warm_first_request_ms is not None for r in runs)
        assert all(r.report["client_first_request_ms"] >= r.warm_first_request_ms for r in runs)
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 1
    assert html.count("<tr><td>") == len(plans)


def test_demo_names_a_missing_fleet_file(history_db: Engine, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--fleet", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: fleet file not found" in result.output


def test_demo_exits_non_zero_naming_a_planned_model_that_did_not_end_ready(history_db: Engine, tmp_path: Path) -> None:
    fleet = _small_fleet(tmp_path, ("reranker",), sha256="0" * 64)  # the artifact fails its checksum on every load
    args = ["demo", "--fleet", str(fleet), "--speedup", "86400", "--report", str(tmp_path / "report.html")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 1 planned replica windows did not end ready: reranker on demo-")
    assert "sha256" in last or "checksum" in last
    assert "NotReadyError" not in result.output  # one message, not a traceback of ours
