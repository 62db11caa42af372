"""``prewarm replay`` end to end: real ``prewarm serve`` hosts on loopback, the example fleet, two policies;
and its refusals: unregistered models, a speedup too high, hosts that fail to start, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest

from db.migrate import upgrade
from db.session import make_engine
from replay import hosts as hosts_module
from replay.errors import HostStartError
from tests.e2e.processes import REPO

TELEMETRY = REPO / "examples" / "telemetry.csv"
CLI = [sys.executable, "-c", "from prewarm.cli.main import app; app()"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A history database with the example fleet registered, and a home of the test's own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREWARM_", "PREFECT_"))}
    env = {**base, "PREWARM_HOME": str(tmp_path / "home"), "PREWARM_DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}",
           "PYTHONPATH": str(REPO)}
    subprocess.run([*CLI, "models", "import", str(_fleet_without_slas(tmp_path))], env=env, check=True,
                   capture_output=True, timeout=120)
    return env


def _fleet_without_slas(folder: Path) -> Path:
    """The example fleet without SLAs: a host's verdict on a load must not depend on how busy the machine is."""
    import yaml

    raw = yaml.safe_load((REPO / "examples" / "fleet.yaml").read_text())
    for entry in raw["models"]:
        entry.pop("sla_p99_ms", None)
        entry["artifact_uri"] = str((REPO / "examples" / entry["artifact_uri"]).resolve())
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _replay(env: dict[str, str], *args: str, timeout: float = 170) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "replay", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _alive_under(folder: str) -> list[psutil.Process]:
    """Processes whose PREWARM_HOME lies under ``folder`` (the hosts a replay started there)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PREWARM_HOME", "").startswith(folder):
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_two_policies_replay_on_real_hosts(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _replay(env, "--trace", str(TELEMETRY), "--speedup", "3600", "--eval-intervals", "6",
                   "--policy", "always,reactive", "--hosts", "2", "--json", "-o", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    always, reactive = document["policies"]["always"], document["policies"]["reactive"]
    for figures in (always, reactive):
        assert list(figures) == ["requests", "cold_starts", "p50_ms", "p99_ms", "replica_seconds", "warmups",
                                 "lag_flagged", "models"]
        assert set(figures["models"]) == {"chat-small", "embedder", "reranker", "ocr-longtail"}
    assert always["requests"] == reactive["requests"] > 0  # the same arrivals
    assert always["cold_starts"] == 0 and always["warmups"] == 4
    assert reactive["cold_starts"] > 0 and reactive["warmups"] > 0
    assert reactive["p99_ms"] > always["p99_ms"]
    assert reactive["replica_seconds"] < always["replica_seconds"] <= 4 * 6 * 3600 * 1.01
    files = json.loads((out / "replay.json").read_text())
    assert files["policies"]["always"]["answered"] == always["requests"] and not files["interrupted"]
    rows = pd.read_csv(out / "replay.csv")
    assert set(rows["policy"]) == {"always", "reactive"} and len(rows) == 2 * 5
    assert len(pd.read_csv(out / "requests.csv")) == 2 * always["requests"]
    assert (out / "replay.png").stat().st_size > 10_000


def test_unregistered_models_are_listed_on_one_line(env: dict[str, str], tmp_path: Path) -> None:
    trace = pd.read_csv(TELEMETRY)
    ghosts = trace[trace["model"] == "reranker"].assign(model="ghost")
    path = tmp_path / "trace.csv"
    pd.concat([trace, ghosts, ghosts.assign(model="phantom")]).to_csv(path, index=False)
    done = _replay(env, "--trace", str(path), "--speedup", "360", "--policy", "always", timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "models not registered: ghost, phantom" in done.stderr


def test_a_speedup_too_high_is_refused_before_anything_starts(env: dict[str, str]) -> None:
    done = _replay(env, "--trace", str(TELEMETRY), "--speedup", "1e9", "--policy", "always", timeout=60)
    assert done.returncode == 2
    assert "--speedup 1e+09 needs" in done.stderr and "use --speedup" in done.stderr
    assert "starting hosts" not in done.stderr


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_hosts_that_fail_to_start_stop_every_started_process(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'replay.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    ports = iter([hosts_module._free_port(), busy_port])
    monkeypatch.setattr(hosts_module, "_free_port", lambda: next(ports))
    with pytest.raises(HostStartError, match=r"host replay-2 exited with code \d+ while starting .*every started host was stopped"):
        hosts_module.start_hosts(2, pool="replay", engine=engine, db_url=db_url, folder=tmp_path / "hosts")
    assert _alive_under(str(tmp_path / "hosts")) == []


def test_ctrl_c_stops_the_hosts_and_writes_partial_results(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*CLI, "replay", "--trace", str(TELEMETRY), "--speedup", "720", "--eval-intervals", "24", "--policy",
         "always,reactive", "-o", str(out)], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        cwd=REPO,
    )
    assert proc.stderr is not None
    lines, work = [], None
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("starting hosts ("):
            work = line.strip().removeprefix("starting hosts (").removesuffix(")")
        if line.startswith("policy always: replaying"):
            break
    assert work is not None, "".join(lines)
    time.sleep(4)  # into the replayed window: its requests begin after a short head start
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=90)[1]
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted: every started process was stopped; partial results in" in rest
    document = json.loads((out / "replay.json").read_text())
    assert document["interrupted"] is True
    assert not document["policies"]["always"]["complete"] and document["policies"]["always"]["requests"] > 0
    assert _alive_under(work) == []


def test_the_forecast_policy_warms_ahead_of_the_requests(env: dict[str, str], tmp_path: Path) -> None:
    done = _replay(env, "--trace", str(TELEMETRY), "--speedup", "3600", "--eval-intervals", "6",
                   "--policy", "forecast,reactive", "--json", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    forecast, reactive = (json.loads(done.stdout)["policies"][n] for n in ("forecast", "reactive"))
    assert forecast["requests"] == reactive["requests"]
    assert forecast["cold_starts"] < reactive["cold_starts"]
    assert forecast["warmups"] >= 3  # chat-small (pinned), embedder and reranker are planned from the start
