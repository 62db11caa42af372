"""``prewarm report --days N``: cold starts per model and day, with and without a plan in force."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from db.models import PlanStatus
from db.session import session_scope
from db.warm import PlanWindow, set_plan_status, upsert_plan
from prewarm import columns as C
from prewarm.ingest import ingest_frame


def _seed(engine: Engine, today: datetime) -> None:
    hour = timedelta(hours=1)
    frame = pd.DataFrame(
        {
            C.TIMESTAMP: pd.to_datetime(
                [today, today + hour, today + 2 * hour, today - 20 * hour, today - 30 * 24 * hour], utc=True
            ),
            C.MODEL: ["a", "a", "a", "b", "b"],
            C.REQUESTS: [10.0, 20.0, 5.0, 4.0, 9.0],
            C.COLD_STARTS: [2.0, 3.0, float("nan"), 1.0, 7.0],
        }
    )
    ingest_frame(frame, engine=engine, interval=hour)
    with session_scope(engine) as session:
        # a: in force from 01:00 (01:30 minus a 30 min lead) to 02:00, so the 01:00 bucket is covered.
        upsert_plan(session, PlanWindow(model="a", version="1", window_start=today + 1.5 * hour, window_end=today + 2 * hour,
                                        replicas=1, lead_seconds=1800, idempotency_key="a-1"))  # fmt: skip
        # b: a superseded plan over its bucket is not in force.
        plan, _ = upsert_plan(session, PlanWindow(model="b", version="1", window_start=today - 21 * hour,
                                                  window_end=today - 18 * hour, replicas=1, lead_seconds=0, idempotency_key="b-1"))  # fmt: skip
        set_plan_status(session, plan.id, PlanStatus.SUPERSEDED)


def test_report_splits_cold_starts_by_plan_and_writes_a_page(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    _seed(engine, today)
    out = tmp_path / "r" / "cold.html"
    result = cli("report", "--days", "3", "--output", str(out))
    assert result.exit_code == 0, result.output
    lines = [re.sub(r"\s+", " ", line.replace("│", " ")).strip() for line in result.stdout.splitlines()]
    yesterday = today - timedelta(days=1)
    assert f"a {today:%Y-%m-%d} 30 5 3 2" in lines
    assert f"b {yesterday:%Y-%m-%d} 4 1 0 1" in lines
    assert "6 cold starts, 3 of them without a plan in force." in lines
    assert not any(line.startswith(f"b {today - timedelta(days=30):%Y-%m-%d}") for line in lines), (
        "older than --days"
    )
    page = out.read_text()
    assert (
        "data:image/png;base64," in page
        and f"<td>a</td><td>{today:%Y-%m-%d}</td><td>30</td><td>5</td><td>3</td><td>2</td>" in page
    )


def test_report_without_cold_starts_says_where_they_come_from(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("report", "--days", "1", "--output", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output
    assert "No cold starts recorded" in result.stdout and "--preset prewarm" in result.stdout
    assert "No cold starts recorded" in (tmp_path / "r.html").read_text()
