"""Real ``prewarm serve --register`` hosts on loopback for the controller's tests, shared by a test module.

Three hosts (``a``, ``b``, ``c``) of pool ``faults`` register in one SQLite history database and heartbeat every
second. They start empty (``--no-preload``) and load from the registry: the example reranker and embedder
(without SLAs: a verdict must not depend on how busy the machine is), ``slow`` (the reranker with a factory
that sleeps 4 s, a load long enough to interrupt) and ``tampered`` (the reranker's artifact under a sha256
it does not have). Between tests every host is made alive and empty again and the controller's tables are
cleared, so each test starts from the same fleet.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, delete, select, update

from controller.reconcile import ControllerConfig, TickReport, reconcile
from db.hosts import get_host
from db.migrate import upgrade
from db.models import (
    ControllerAction,
    ControllerLease,
    ControllerTick,
    FleetHold,
    FleetReplica,
    Host,
    HostState,
    Model,
    WarmPlan,
    WarmRun,
)
from db.registry import upsert_models
from db.session import make_engine, session_scope
from db.warm import PlanWindow, upsert_plan
from prewarm.fleet import load_fleet
from tests.conftest import free_port
from tests.e2e.processes import BIN, REPO, Background, wait_until
from warmers.sources import EXAMPLE_FLEET

POOL = "faults"
T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
HOSTS = ("a", "b", "c")
CONFIG = ControllerConfig(
    max_warmups_per_pool=4, backoff_s=30, lease_s=3, keep_warm_s=600, observe_timeout_s=2, warm_timeout_s=60,
    heartbeat_s=1,
)
_LOADS = re.compile(r'^prewarm_warm_stage_duration_seconds_count\{stage="load"\} (\S+)$', re.M)


def fleet_specs() -> list:  # type: ignore[type-arg]
    """The registered models of the test fleet."""
    example = {m.name: m.model_copy(update={"sla_p99_ms": None}) for m in load_fleet(EXAMPLE_FLEET).models}
    reranker = example["reranker"]
    slow = reranker.model_copy(update={
        "name": "slow", "factory": "tests.controller.slow_zoo:slow_reranker", "factory_kwargs": {"seconds": 4.0},
    })
    tampered = reranker.model_copy(update={"name": "tampered", "sha256": hashlib.sha256(b"not these bytes").hexdigest()})
    return [reranker, example["embedder"], slow, tampered]


class Fleet:
    """The hosts of pool ``faults`` and their history database: start, kill, pause, tick, look."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db_url = f"sqlite:///{root / 'history.db'}"
        self.engine: Engine = make_engine(self.db_url)
        upgrade(self.engine)
        with session_scope(self.engine) as session:
            upsert_models(session, fleet_specs())
        self.ports = {name: free_port() for name in HOSTS}
        self.procs: dict[str, Background] = {}
        self.paused: set[str] = set()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREWARM_", "PREFECT_"))}
        self.env = {
            **base,
            "PYTHONPATH": os.pathsep.join([str(REPO), base.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PREWARM_DATABASE_URL": self.db_url,
            "PREWARM_HOST__HEARTBEAT_S": "1",
            "PREWARM_HOST__DEVICE": "cpu",
            "PREWARM_FACTORY_MODULES": "warmers.zoo,tests.controller",
        }

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, *names: str) -> None:
        """Start hosts and wait until each has registered (or heartbeat) since now."""
        since = datetime.now(UTC)
        for name in names:
            env = {**self.env, "PREWARM_HOME": str(self.root / f"home-{name}")}
            args = [str(BIN / "prewarm"), "serve", "--port", str(self.ports[name]), "--no-preload", "--register",
                    "--name", name, "--pool", POOL, "--cpu-threads", "1"]
            self.procs[name] = Background(f"host-{name}-{time.monotonic_ns()}", args, env=env, log_dir=self.root)
        for name in names:
            wait_until(lambda n=name: self._seen_since(n, since), timeout=120, what=f"host {name} to register",
                       on_timeout=self.procs[name].log_tail)

    def _seen_since(self, name: str, since: datetime) -> bool:
        if not self.procs[name].alive():
            raise AssertionError(f"host {name} exited:\n{self.procs[name].log_tail()}")
        with session_scope(self.engine) as session:
            host = session.scalars(select(Host).where(Host.name == name)).first()
            return host is not None and host.last_seen_at is not None and host.last_seen_at >= since

    def kill(self, name: str) -> None:
        """SIGKILL the host: no goodbye, its models are gone."""
        proc = self.procs[name].process
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.procs[name].stop()

    def pause(self, name: str) -> None:
        """SIGSTOP the host: it neither answers nor heartbeats (a host cut off the network)."""
        os.killpg(self.procs[name].process.pid, signal.SIGSTOP)
        self.paused.add(name)

    def resume(self, name: str) -> None:
        os.killpg(self.procs[name].process.pid, signal.SIGCONT)
        self.paused.discard(name)

    def loads(self, name: str) -> int:
        """How many loads the host has run since it started (its Prometheus metrics)."""
        found = _LOADS.search(httpx.get(f"{self.url(name)}/metrics", timeout=10).text)
        return int(float(found.group(1))) if found else 0

    def index(self, name: str) -> dict[str, str]:
        """Model -> state as the host reports it."""
        body = httpx.post(f"{self.url(name)}/v2/repository/index", json={}, timeout=10).json()
        return {e["name"]: e["state"] for e in body}

    def ready(self, name: str) -> set[str]:
        return {m for m, state in self.index(name).items() if state == "READY"}

    def plan(self, model: str, host: str, *, start: datetime = T0, hours: float = 2.0) -> int:
        """A stored plan: ``model`` on ``host`` from ``start`` for ``hours`` (no lead)."""
        window = PlanWindow(
            model=model, version="1", window_start=start, window_end=start + timedelta(hours=hours), replicas=1,
            lead_seconds=0.0, idempotency_key=f"{model}:{host}:{start.isoformat()}", reason="test", host=host, pool=POOL,
        )
        with session_scope(self.engine) as session:
            return upsert_plan(session, window)[0].id

    def tick(self, now: datetime, **changes: object) -> TickReport:
        config = ControllerConfig(**{**CONFIG.__dict__, **changes})
        return reconcile(POOL, now, engine=self.engine, config=config)

    def host_state(self, name: str) -> HostState:
        with session_scope(self.engine) as session:
            return get_host(session, name).state

    def reset(self) -> None:
        """Every host alive, reachable, up and empty; the controller's records cleared."""
        for name in list(self.paused):
            self.resume(name)
        dead = [n for n in HOSTS if n not in self.procs or not self.procs[n].alive()]
        if dead:
            self.start(*dead)
        for name in HOSTS:
            for model, state in self.index(name).items():
                if state == "READY":
                    httpx.post(f"{self.url(name)}/v2/repository/models/{model}/unload", json={}, timeout=30)
        with session_scope(self.engine) as session:
            for table in (ControllerAction, ControllerTick, ControllerLease, FleetHold, FleetReplica, WarmRun, WarmPlan):
                session.execute(delete(table))
            session.execute(update(Host).values(state=HostState.UP))
            session.execute(update(Model).values(rolled_back_at=None, rolled_back_reason=None))

    def close(self) -> None:
        for name in list(self.paused):
            self.resume(name)
        for proc in self.procs.values():
            proc.stop()
        self.engine.dispose()


@pytest.fixture(scope="module")
def fleet_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three registered hosts for the module."""
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        fleet.start(*HOSTS)
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def fleet(fleet_hosts: Fleet) -> Fleet:
    """The module's hosts, alive and empty, with the controller's records cleared."""
    fleet_hosts.reset()
    return fleet_hosts


def plans_of(engine: Engine) -> list[WarmPlan]:
    """Every stored plan, by id."""
    with session_scope(engine) as session:
        return list(session.scalars(select(WarmPlan).order_by(WarmPlan.id)).all())


class TcpProxy:
    """A loopback TCP proxy in front of a server, which a test can cut (every connection dropped and refused)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        import socket
        import threading

        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: object, sink: object) -> None:
        try:
            while data := source.recv(65536):  # type: ignore[attr-defined]
                sink.sendall(data)  # type: ignore[attr-defined]
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()  # type: ignore[attr-defined]
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every open connection and refuse new ones, as a lost database server would."""
        import socket

        self.cut_off.set()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def restore(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()
