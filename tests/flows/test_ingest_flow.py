"""The ingest flow against the Prefect test server and a real history database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from db.models import Telemetry
from db.session import session_scope
from flows.ingest import ingest_telemetry

EXAMPLE = Path(__file__).parents[2] / "examples" / "telemetry.csv"


def test_ingest_flow_loads_example_telemetry_idempotently(history_db: Engine) -> None:
    first = ingest_telemetry([str(EXAMPLE)])
    again = ingest_telemetry([str(EXAMPLE)])
    assert first["models"] == 4 and first["rows_read"] > 0
    assert again["buckets_written"] == first["buckets_written"]
    with session_scope(history_db) as session:
        assert session.scalar(select(func.count()).select_from(Telemetry)) == first["buckets_written"]


def test_ingest_flow_fails_on_a_missing_source(history_db: Engine, tmp_path: Path) -> None:
    from prewarm.errors import PrewarmError

    with pytest.raises(PrewarmError, match="nothing.csv"):
        ingest_telemetry([str(tmp_path / "nothing.csv")])
