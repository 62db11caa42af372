"""``prewarm warm``: its input errors (exit 2), and a warm run against a prewarm host recorded with its baseline.

Runs against MLServer and KServe are in tests/interop/.
"""

from __future__ import annotations

import json
import statistics
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.models import WarmStatus
from db.session import session_scope
from db.warm import warm_runs_for
from tests.conftest import free_port
from tests.warmers.conftest import make_engine, raw_entry, write_fleet
from warmers.host import create_app, serve_in_thread


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reranker::1", "--target", "http://127.0.0.1:1"], r"model 'reranker::1': expected MODEL or MODEL:VERSION"),
        (["reranker", "--target", "127.0.0.1:8000"], r"--target '127.0.0.1:8000': expected the base URL of a V2"),
        (["reranker", "--target", "http://127.0.0.1:99999"], r"--target 'http://127.0.0.1:99999': Port out of range"),
        (["reranker", "--target", "http://127.0.0.1:1"], r"model 'reranker' is not registered: run `prewarm models"),
    ],
    ids=["bad-ref", "no-scheme", "bad-port", "unregistered"],
)
def test_warm_refuses_bad_input_with_exit_2(cli: Callable[..., object], args: list[str], message: str) -> None:
    result = cli("warm", *args)
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    assert len(result.stderr.strip().splitlines()) == 1  # type: ignore[attr-defined]
    assert re.search(message, result.stderr), result.stderr  # type: ignore[attr-defined]


def test_warm_on_a_prewarm_host_records_runs_and_uses_them_as_baseline(
    cli: Callable[..., object], engine: Engine, tmp_path: Path
) -> None:
    fleet = write_fleet(tmp_path / "fleet", [raw_entry("reranker")])
    assert cli("models", "import", str(fleet)).exit_code == 0  # type: ignore[attr-defined]
    app = create_app(fleet=fleet, engine=make_engine(tmp_path / "host"), load_on_startup=False)
    with serve_in_thread(app, port=free_port()) as url:
        earlier = [cli("warm", "reranker:1", "--target", url, "--json") for _ in range(3)]
        last = cli("warm", "reranker", "--target", url, "--json")
    assert all(r.exit_code == 0 for r in earlier), [r.output for r in earlier]  # type: ignore[attr-defined]
    # From three earlier runs on, a run is judged against them: ready or not on a shared machine, the fourth
    # must carry that baseline (the median of their p50s); the first three had too little history.
    assert last.exit_code in (0, 1), last.output  # type: ignore[attr-defined]
    reports = [json.loads(r.stdout) for r in (*earlier, last)]  # type: ignore[attr-defined]
    assert reports[0]["device_class"].startswith("cpu:") and "server_load" in reports[0]["stage_seconds"]
    assert [r["baseline_p50_ms"] for r in reports[:3]] == [None, None, None]
    with session_scope(engine) as session:
        runs = warm_runs_for(session, model="reranker")
        assert [run.id for run in runs] == [r["warm_run_id"] for r in reversed(reports)]
        assert all(run.target == url for run in runs) and all(r.status is WarmStatus.READY for r in runs[1:])
        assert reports[3]["baseline_p50_ms"] == pytest.approx(statistics.median(r.steady_p50_ms for r in runs[1:]))


def test_warm_reports_a_drifted_spec_on_one_line_exit_1(
    cli: Callable[..., object], engine: Engine, tmp_path: Path
) -> None:
    served = write_fleet(tmp_path / "served", [raw_entry("reranker")])
    registered = raw_entry("reranker")
    registered["warmup"]["inputs"][1]["shape"] = ["batch", 63]
    assert cli("models", "import", str(write_fleet(tmp_path / "registered", [registered]))).exit_code == 0  # type: ignore[attr-defined]
    app = create_app(fleet=served, engine=make_engine(tmp_path / "host"), load_on_startup=False)
    with serve_in_thread(app, port=free_port()) as url:
        result = cli("warm", "reranker", "--target", url)
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert result.stderr.count("\n") == 1  # type: ignore[attr-defined]
    assert (
        f"error: reranker:1 is not ready on {url}: model 'reranker' version '1': the warm-up inputs do not fit the "
        "server's metadata: input 'document': shape [batch, 63] does not fit the server's [-1, 64]"
    ) in result.stderr  # type: ignore[attr-defined]
    assert "shape [batch, 63]" in result.stdout  # type: ignore[attr-defined]
