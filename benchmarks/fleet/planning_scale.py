"""Planning scale: ``forecast-and-plan`` on N models against a Prefect server on PostgreSQL, forecasts on Dask.

The benchmark starts everything it needs on loopback: a PostgreSQL database for the history (telemetry, plans)
and one for Prefect (``scripts/ensure_postgres.sh``'s server, or ``--postgres``), a ``prefect server start`` on
the latter, and a local Dask cluster (``distributed.LocalCluster``, one process per core) whose address goes to
the flow as ``dask_address``. It registers N synthetic models and H hosts (pool ``scale``), ingests four weeks
of hourly synthetic telemetry, then runs the flow twice (a plan, then an idempotent, sticky re-plan) and reads
each task run's duration back from the Prefect API: where the wall time goes.

    .venv/bin/python benchmarks/fleet/planning_scale.py --models 20000 --hosts 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "forecast_and_plan"))


def _admin_url(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("PREWARM_TEST_POSTGRES_URL"):
        return os.environ["PREWARM_TEST_POSTGRES_URL"]
    return subprocess.run([str(ROOT / "scripts" / "ensure_postgres.sh")], check=True, capture_output=True, text=True).stdout.strip()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefect_server(url: str, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``prefect server start`` on PostgreSQL; returns the process and its API URL once it answers."""
    import httpx
    from sqlalchemy.engine import make_url

    port = _free_port()
    async_url = make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    env = {
        **os.environ, "PREFECT_HOME": str(home), "PREFECT_API_DATABASE_CONNECTION_URL": async_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
    }
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return process, api
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited; see {home / 'server.log'}")
        time.sleep(0.5)
    raise TimeoutError("the Prefect server did not answer within 180 s")


def _hosts(engine: Any, count: int) -> None:
    from db.hosts import upsert_host
    from db.session import session_scope

    with session_scope(engine) as session:
        for j in range(count):
            upsert_host(session, name=f"p{j:04d}", url=f"http://10.0.{j // 250}.{j % 250}:8000", pool="scale",
                        memory_mb=80_000)


def _run(label: str, **parameters: Any) -> dict[str, Any]:
    from run import _task_breakdown  # benchmarks/forecast_and_plan/run.py

    from flows.forecast_and_plan import forecast_and_plan

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    state = forecast_and_plan(return_state=True, **parameters)
    wall = time.perf_counter() - started
    summary = state.result()
    breakdown = _task_breakdown(state.state_details.flow_run_id)
    print(f"\n{label}: {wall:.1f} s wall, {summary['windows']} replica windows on {len(summary['hosts'])} hosts, "
          f"{summary['created']} new, {summary['superseded']} superseded, {len(summary['shortfall'])} short", flush=True)
    for name, item in sorted(breakdown.items(), key=lambda kv: -kv[1]["span_s"]):
        print(f"  {name:<22} x{int(item['count']):<5} span {item['span_s']:7.2f}s  task-seconds {item['sum_s']:8.2f}")
    return {
        "label": label, "wall_s": round(wall, 1), "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "summary": {k: v for k, v in summary.items() if k not in ("plan_ids", "shortfall", "hosts")}
        | {"shortfall": len(summary["shortfall"]), "hosts": len(summary["hosts"])},
        "tasks": breakdown,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20_000)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--intervals", type=int, default=24 * 28)
    parser.add_argument("--models-per-task", type=int, default=500)
    parser.add_argument("--dask-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--postgres", default=None, help="admin URL of a PostgreSQL server")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "planning_scale.json")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    from db.migrate import upgrade
    from db.session import make_engine

    admin_url = _admin_url(args.postgres)
    admin = create_engine(make_engine(admin_url).url, isolation_level="AUTOCOMMIT")
    suffix = uuid.uuid4().hex[:8]
    history_db, prefect_db = f"prewarm_plan_{suffix}", f"prefect_plan_{suffix}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{history_db}"'))
        conn.execute(text(f'CREATE DATABASE "{prefect_db}"'))
    base = make_engine(admin_url).url
    history_url = base.set(database=history_db).render_as_string(hide_password=False)
    home = Path(tempfile.mkdtemp(prefix="prewarm-plan-bench-"))
    os.environ.update({
        "PREWARM_HOME": str(home), "PREWARM_DATABASE_URL": history_url, "PREFECT_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    })
    server = cluster = None
    try:
        server, api = _prefect_server(base.set(database=prefect_db).render_as_string(hide_password=False), home / "prefect")
        os.environ["PREFECT_API_URL"] = api
        from distributed import LocalCluster
        from run import _setup  # benchmarks/forecast_and_plan/run.py: registers and ingests the synthetic fleet

        engine = make_engine(history_url)
        upgrade(engine)
        started = time.perf_counter()
        as_of = _setup(args.models, args.intervals, seed=11)
        _hosts(engine, args.hosts)
        setup_s = time.perf_counter() - started
        print(f"setup: {args.models} models, {args.hosts} hosts, {args.models * args.intervals:,} telemetry rows "
              f"in {setup_s:.0f} s", flush=True)
        cluster = LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        common = {
            "horizon": 24, "as_of": as_of, "pool": "scale", "models_per_task": args.models_per_task,
            "dask_address": cluster.scheduler_address,
        }
        runs = [_run("plan", **common), _run("re-plan (same data: idempotent, sticky)", **common)]
    finally:
        if cluster is not None:
            cluster.close()
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{history_db}" WITH (FORCE)'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{prefect_db}" WITH (FORCE)'))
        admin.dispose()
    document = {
        "benchmark": "fleet/planning_scale", "models": args.models, "hosts": args.hosts, "intervals": args.intervals,
        "models_per_task": args.models_per_task, "dask_workers": args.dask_workers,
        "date": datetime.now(UTC).date().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "prefect_api": "prefect server start on PostgreSQL",
        "history_db": "PostgreSQL", "setup_s": round(setup_s, 1), "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
