"""The host inventory: `prewarm hosts`, self-registration and heartbeats, liveness, leases and roll-back marks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from db.controller import acquire_lease, release_lease, renew_lease
from db.hosts import get_host, heartbeat, lapsed, mark_down, register_host
from db.models import HostKind, HostState
from db.registry import get_model, latest_models, mark_rolled_back, upsert_models
from db.session import session_scope
from prewarm.cli.main import app
from prewarm.fleet import load_fleet
from tests.prewarm.conftest import snapshot
from warmers.sources import EXAMPLE_FLEET

RUNNER = CliRunner()
T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _cli(*args: str):  # type: ignore[no-untyped-def]
    return RUNNER.invoke(app, list(args), catch_exceptions=False)


def test_hosts_add_list_drain_remove(engine: Engine) -> None:
    added = _cli("hosts", "add", "triton-1", "http://10.0.0.5:8000/", "--pool", "a100", "--memory-mb", "80000",
                 "--device-class", "cuda:A100", "--kind", "triton", "--no-versioned-routes", "--label", "zone=eu-1")
    assert added.exit_code == 0, added.output
    assert "Added host triton-1" in added.output
    listed = json.loads(_cli("hosts", "list", "--json").stdout)
    assert listed == [{
        "name": "triton-1", "url": "http://10.0.0.5:8000", "pool": "a100", "kind": "triton", "state": "up",
        "device_class": "cuda:A100", "memory_mb": 80000.0, "max_concurrent_warmups": 1, "versioned_routes": False,
        "heartbeat_s": None, "last_seen_at": None, "labels": {"zone": "eu-1"},
    }]
    assert _cli("hosts", "drain", "triton-1").exit_code == 0
    assert json.loads(_cli("hosts", "list", "--json").stdout)[0]["state"] == "draining"
    table = RUNNER.invoke(app, ["hosts", "list"], env={"COLUMNS": "200"}).stdout
    assert "triton-1" in table and "draining" in table and "never" in table
    again = _cli("hosts", "add", "triton-1", "http://10.0.0.5:8000", "--pool", "a100")  # ends the drain
    assert "Updated host triton-1" in again.output
    assert json.loads(_cli("hosts", "list", "--json").stdout)[0]["state"] == "up"
    assert _cli("hosts", "remove", "triton-1").exit_code == 0
    assert json.loads(_cli("hosts", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "h 1", "http://x:1", "--pool", "p"], "host name 'h 1': use letters"),
        (["add", "h1", "ftp://x:1", "--pool", "p"], "host URL 'ftp://x:1': expected the server's base URL, http(s)://HOST:PORT"),
        (["add", "h1", "http://x:99999", "--pool", "p"], "host URL 'http://x:99999': Port out of range"),
        (["add", "h1", "http://x:1", "--pool", "p", "--kind", "tgi"], "--kind 'tgi': expected one of prewarm"),
        (["add", "h1", "http://x:1", "--pool", "p", "--label", "novalue"], "label 'novalue': expected KEY=VALUE"),
        (["drain", "ghost"], "host 'ghost' is not in the inventory"),
        (["remove", "ghost"], "host 'ghost' is not in the inventory"),
    ],
)
def test_bad_host_input_exits_2_and_changes_nothing(engine: Engine, args: list[str], message: str) -> None:
    _cli("hosts", "add", "keep", "http://127.0.0.1:1", "--pool", "p")
    before = snapshot(engine, "hosts")
    result = RUNNER.invoke(app, ["hosts", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert snapshot(engine, "hosts") == before


def test_registration_heartbeats_and_liveness(engine: Engine) -> None:
    with session_scope(engine) as session:
        host = register_host(session, name="h1", url="http://127.0.0.1:9/", pool="p", memory_mb=4096,
                             device_class="cpu:x86_64:2", heartbeat_s=15, now=T0)
        assert (host.kind, host.state, host.url, host.versioned_routes) == (
            HostKind.PREWARM, HostState.UP, "http://127.0.0.1:9", True)
    with session_scope(engine) as session:
        host = get_host(session, "h1")
        assert not lapsed(host, now=T0 + timedelta(seconds=45), default_heartbeat_s=60)
        assert lapsed(host, now=T0 + timedelta(seconds=46), default_heartbeat_s=60)  # 3 x its own 15 s
        mark_down(session, ["h1"])
    with session_scope(engine) as session:
        assert get_host(session, "h1").state is HostState.DOWN
        assert heartbeat(session, "h1", now=T0 + timedelta(minutes=5)) is True
    with session_scope(engine) as session:
        host = get_host(session, "h1")
        assert host.state is HostState.UP and host.last_seen_at == T0 + timedelta(minutes=5)
        host.state = HostState.DRAINING
    with session_scope(engine) as session:  # an operator's drain outlives the host's restart and heartbeats
        register_host(session, name="h1", url="http://127.0.0.1:9", pool="p", memory_mb=4096,
                      device_class="cpu:x86_64:2", heartbeat_s=15, now=T0 + timedelta(minutes=6))
        heartbeat(session, "h1")
        mark_down(session, ["h1"])
    with session_scope(engine) as session:
        assert get_host(session, "h1").state is HostState.DRAINING
        assert heartbeat(session, "removed") is False


def test_a_lease_has_one_holder_until_it_runs_out(engine: Engine) -> None:
    def attempt(holder: str, at: datetime):  # type: ignore[no-untyped-def]
        with session_scope(engine) as session:
            return acquire_lease(session, "pool:p", holder=holder, now=at, ttl_s=60)

    first = attempt("a", T0)
    assert first.acquired and first.expires_at == T0 + timedelta(seconds=60)
    other = attempt("b", T0 + timedelta(seconds=30))
    assert not other.acquired and other.holder == "a"
    assert attempt("a", T0 + timedelta(seconds=40)).acquired  # the holder may take it again
    with session_scope(engine) as session:
        assert renew_lease(session, "pool:p", holder="a", now=T0 + timedelta(seconds=50), ttl_s=60)
        assert not renew_lease(session, "pool:p", holder="b", now=T0 + timedelta(seconds=50), ttl_s=60)
    assert not attempt("b", T0 + timedelta(seconds=100)).acquired
    assert attempt("b", T0 + timedelta(seconds=111)).acquired  # a's renewal ran out at 110 s
    with session_scope(engine) as session:
        release_lease(session, "pool:p", holder="a", now=T0 + timedelta(seconds=112))  # not a's any more
    assert not attempt("a", T0 + timedelta(seconds=113)).acquired
    with session_scope(engine) as session:
        release_lease(session, "pool:p", holder="b", now=T0 + timedelta(seconds=114))
    assert attempt("a", T0 + timedelta(seconds=115)).acquired


def test_a_rolled_back_version_is_not_served(engine: Engine) -> None:
    spec = next(m for m in load_fleet(EXAMPLE_FLEET).models if m.name == "reranker")
    with session_scope(engine) as session:
        upsert_models(session, [spec, spec.model_copy(update={"version": "2"})])
        mark_rolled_back(session, "reranker", "2", reason="slower than version 1")
    with session_scope(engine) as session:
        assert [(m.name, m.version) for m in latest_models(session) if m.name == "reranker"] == [("reranker", "1")]
        newest = get_model(session, "reranker")
        assert newest is not None and newest.version == "1"
        # The same version registered again with another artifact gets another chance.
        upsert_models(session, [spec.model_copy(update={"version": "2", "sha256": "a" * 64})])
    with session_scope(engine) as session:
        newest = get_model(session, "reranker")
        assert newest is not None and newest.version == "2"


def test_reconcile_without_a_reachable_history_database_prints_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from prewarm.settings import reset_settings
    from tests.conftest import free_port

    monkeypatch.setenv("PREWARM_DATABASE_URL", f"postgresql://prewarm:s3cret@127.0.0.1:{free_port()}/history")
    reset_settings()
    result = RUNNER.invoke(app, ["reconcile", "--pool", "p"])
    assert result.exit_code == 2  # a source that cannot be reached, like a missing bucket
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("error: pool 'p': the history database (postgresql+psycopg://prewarm:***@127.0.0.1:")
    assert "PREWARM_DATABASE_URL" in lines[0] and "check that the server is up" in lines[0]
    assert "s3cret" not in result.output
