"""``prewarm serve``: run the inference host (Open Inference Protocol V2) with uvicorn.

With ``--register`` the host enters the history database's inventory once it answers (name, pool, the URL the
controller should use, its engine's device class and memory) and then heartbeats every
``PREWARM_HOST__HEARTBEAT_S``; a host silent for three heartbeats is down for the controller.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import typer

from prewarm.cli.output import err_console, exits_cleanly, verbosity
from prewarm.errors import InputError

log = logging.getLogger(__name__)


@exits_cleanly
def serve(
    port: int = typer.Option(8000, "--port", "-p", help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 for every interface."),
    fleet: Path | None = typer.Option(
        None, "--fleet", help="Fleet file to serve; default: the registry's models, else examples/fleet.yaml."
    ),
    no_preload: bool = typer.Option(False, "--no-preload", help="Start empty; load models through the repository API."),
    cpu_threads: int = typer.Option(
        1, "--cpu-threads", min=0,
        help="torch intra-op threads. 1: small models answer fastest and steadiest (one per core made their first "
        "request and p99 tens of times slower on a busy machine: docs/warmers.md); 0: one per core, torch's default.",
    ),
    register: bool = typer.Option(
        False, "--register", help="Register in the history database's host inventory and send heartbeats."
    ),
    name: str | None = typer.Option(None, "--name", help="With --register: the host's name (default: this machine's name)."),
    pool: str = typer.Option("default", "--pool", help="With --register: the pool the host serves."),
    advertise_url: str | None = typer.Option(
        None, "--advertise-url", help="With --register: the URL the controller reaches this host at (default: http://HOST:PORT)."
    ),
) -> None:
    """Serve models over the Open Inference Protocol V2, warmed and validated before they report ready."""
    import uvicorn

    from prewarm.fleet import load_fleet
    from warmers.engine import Engine
    from warmers.host import create_app

    if cpu_threads > 0:
        import torch

        torch.set_num_threads(cpu_threads)
    if fleet is not None:
        load_fleet(fleet)  # a broken fleet file is an input error now, not a log line later
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: must be between 1 and 65535")
    registration = _registration(register, name=name, pool=pool, advertise_url=advertise_url, host=host, port=port)
    engine = Engine()
    app = create_app(fleet=fleet, engine=engine, load_on_startup=not no_preload, self_url=self_url(host, port))
    if registration is not None:
        Heartbeat(engine=engine, port=port, **registration).start()
    err_console.print(f"serving on http://{host}:{port} (V2 inference protocol; /metrics for Prometheus)")
    # uvicorn sets up its own loggers; its request lines are the libraries' request logs of -vv.
    uvicorn.run(app, host=host, port=port, log_level="info" if verbosity() >= 2 else "warning")


def self_url(host: str, port: int) -> str:
    """The URL the host reaches its own listener at (every interface: the loopback address of its family)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _registration(
    register: bool, *, name: str | None, pool: str, advertise_url: str | None, host: str, port: int
) -> dict[str, str] | None:
    """The checked ``--register`` options (an input error names the one at fault), or None without it."""
    from controller.inventory import check_name, check_url

    if not register:
        if name or advertise_url or pool != "default":
            raise InputError("--name, --pool and --advertise-url go with --register")
        return None
    reachable = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    url = advertise_url or f"http://{reachable}:{port}"
    return {
        "name": check_name(name or socket.gethostname()),
        "pool": check_name(pool, "pool"),
        "url": check_url(url),
    }


class Heartbeat(threading.Thread):
    """Registers the host once it answers, then records a heartbeat every ``PREWARM_HOST__HEARTBEAT_S``.

    A history database that cannot be reached is logged and tried again at the next beat; serving goes on.
    """

    def __init__(self, *, engine: object, port: int, name: str, pool: str, url: str) -> None:
        super().__init__(name="prewarm-heartbeat", daemon=True)
        self.engine, self.port, self.host_name, self.pool, self.url = engine, port, name, pool, url
        self.registered = False

    def run(self) -> None:
        from prewarm.settings import get_settings

        interval = get_settings().host.heartbeat_s
        self._wait_until_listening()
        while self._beat(interval):
            threading.Event().wait(interval)

    def _wait_until_listening(self) -> None:
        import httpx

        for _ in range(600):
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/v2/health/live", timeout=1.0)
                return
            except httpx.HTTPError:
                threading.Event().wait(0.1)

    def _beat(self, interval: float) -> bool:
        """Register (until that succeeds) or heartbeat; False once the host was removed from the inventory."""
        from sqlalchemy.exc import SQLAlchemyError

        from db.hosts import heartbeat, register_host
        from db.migrate import upgrade
        from db.session import get_engine, session_scope

        try:
            db = get_engine()
            if not self.registered:
                upgrade(db)
                with session_scope(db) as session:
                    register_host(
                        session, name=self.host_name, url=self.url, pool=self.pool,
                        memory_mb=float(self.engine.capacity_mb),  # type: ignore[attr-defined]
                        device_class=str(self.engine.device_class),  # type: ignore[attr-defined]
                        heartbeat_s=interval,
                    )
                self.registered = True
                err_console.print(f"registered as host {self.host_name} of pool {self.pool} at {self.url}")
                return True
            with session_scope(db) as session:
                if not heartbeat(session, self.host_name):
                    err_console.print(
                        f"host {self.host_name} was removed from the inventory: no more heartbeats until a restart"
                    )
                    return False
        except SQLAlchemyError as exc:
            log.warning("heartbeat of host %s failed (%s); trying again in %.0f s", self.host_name,
                        type(exc).__name__, interval)
        return True
