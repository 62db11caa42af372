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


def test_ingest_flow_reads_a_prometheus_url_with_its_options(
    history_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from prewarm.settings import reset_settings
    from tests.prometheus.replay import replay

    record = json.loads((Path(__file__).parents[1] / "prometheus" / "data" / "vllm.json").read_text())
    monkeypatch.setenv("PREWARM_FORECAST_INTERVAL", f"PT{record['interval_s']}S")
    reset_settings()
    with replay(record["calls"]) as url:
        summary = ingest_telemetry([f"{url}?preset=vllm&start={record['start']}&end={record['end']}"])
    assert summary["models"] == 2
    with session_scope(history_db) as session:
        total = session.scalar(select(func.sum(Telemetry.requests)))
    assert total == sum(record["sent"].values())


def test_ingest_flow_does_not_retry_a_prometheus_url_without_a_preset(history_db: Engine) -> None:
    from prewarm.errors import PrometheusQueryError

    with pytest.raises(PrometheusQueryError, match="give exactly one of --preset"):
        ingest_telemetry(["prometheus+http://127.0.0.1:9?since=1h"])
