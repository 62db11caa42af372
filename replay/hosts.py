"""The hosts a replay drives: ``prewarm serve`` processes it starts on loopback, or a registered pool's hosts.

Started hosts serve the registered fleet from the replay's own history database and register there in its
pool; they run in their own process groups and are always stopped, also when one of them fails to start.
A registered pool's hosts are copied into the replay's database as hosts added by hand, so that the replay
never writes to the operator's history. Between policies every host is emptied.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, select

from db.hosts import list_hosts, upsert_host
from db.models import Host, HostState
from db.session import session_scope
from replay.errors import HostStartError, ReplayError

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class HostSet:
    """The replay's hosts (name -> URL) and the processes it started for them."""

    urls: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def stop(self) -> None:
        """SIGTERM every started process group, SIGKILL what is left after 15 s."""
        for proc in self.processes.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=15)

    def empty(self, headers: Mapping[str, str]) -> None:
        """Unload every model from every host: each policy starts from the same empty state."""
        with httpx.Client(timeout=60.0, headers=dict(headers)) as client:
            for url in self.urls.values():
                index = client.post(f"{url}/v2/repository/index", json={})
                index.raise_for_status()
                for entry in index.json():
                    if entry.get("state") in ("READY", "LOADING"):
                        client.post(f"{url}/v2/repository/models/{entry['name']}/unload", json={})


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def host_env(db_url: str, home: Path) -> dict[str, str]:
    """The environment of a started host: this one, on the replay's database and home."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_DATABASE_URL", "PREWARM_HOME")}
    env.update({
        "PREWARM_DATABASE_URL": db_url, "PREWARM_HOME": str(home), "PREWARM_HOST__HEARTBEAT_S": "2",
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    return env


def start_hosts(n: int, *, pool: str, engine: Engine, db_url: str, folder: Path, cpu_threads: int = 1) -> HostSet:
    """Start ``n`` registered ``prewarm serve`` hosts on loopback; on any failure stop them all and raise."""
    folder.mkdir(parents=True, exist_ok=True)
    hosts = HostSet(urls={})
    since = time.time()
    try:
        for i in range(1, n + 1):
            name, port = f"{pool}-{i}", _free_port()
            log = folder / f"{name}.log"
            args = [sys.executable, "-c", "from prewarm.cli.main import app; app()", "serve", "--port", str(port), "--no-preload",
                    "--register", "--name", name, "--pool", pool, "--cpu-threads", str(cpu_threads)]
            with log.open("wb") as out:
                hosts.processes[name] = subprocess.Popen(
                    args, cwd=REPO, env=host_env(db_url, folder / name), stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            hosts.urls[name], hosts.logs[name] = f"http://127.0.0.1:{port}", log
        _wait_registered(hosts, engine=engine, since=since)
    except BaseException:
        hosts.stop()
        raise
    return hosts


def _wait_registered(hosts: HostSet, *, engine: Engine, since: float) -> None:
    from datetime import UTC, datetime

    seen_after = datetime.fromtimestamp(since, UTC)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        for name, proc in hosts.processes.items():
            if proc.poll() is not None:
                tail = hosts.logs[name].read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise HostStartError(
                    f"host {name} exited with code {proc.returncode} while starting ({hosts.logs[name]}): {tail[0]}; "
                    "every started host was stopped"
                )
        with session_scope(engine) as session:
            rows = session.scalars(select(Host).where(Host.name.in_(list(hosts.processes))))
            seen = {h.name for h in rows if h.last_seen_at is not None and h.last_seen_at >= seen_after}
        if seen == set(hosts.processes):
            return
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(set(hosts.processes) - seen))
            raise HostStartError(
                f"hosts {missing} did not register within {START_TIMEOUT_S:.0f} s (logs in {next(iter(hosts.logs.values())).parent}); "
                "every started host was stopped"
            )
        time.sleep(0.3)


def pool_hosts(source: Engine, pool: str, *, into: Engine, as_pool: str) -> HostSet:
    """The up hosts of ``pool`` in the operator's inventory, copied into the replay's as hosts added by hand."""
    with session_scope(source) as session:
        rows = [
            dict(name=h.name, url=h.url, kind=h.kind, memory_mb=h.memory_mb, device_class=h.device_class,
                 versioned_routes=h.versioned_routes, max_concurrent_warmups=h.max_concurrent_warmups)
            for h in list_hosts(session, pool=pool, states=[HostState.UP])
        ]
    if not rows:
        raise ReplayError(f"pool {pool!r} has no up host in the inventory: see `prewarm hosts list`")
    with session_scope(into) as session:
        for row in rows:
            upsert_host(session, pool=as_pool, **row)
    return HostSet(urls={r["name"]: r["url"] for r in rows})
