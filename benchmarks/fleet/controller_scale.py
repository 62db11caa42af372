"""Controller scale: one reconcile tick over N models on H stand-in hosts, history database on PostgreSQL.

The hosts are stand-in V2 servers in one process (``standin.py``) that answer the repository API and
inference at once, so the figures are the controller's own cost: reading the pool's state, asking every host
for its index, deciding, recording, and running the warm pipeline's requests (load, ready, cold request,
warm-up, probes) through ``V2Target``. Each model has a one-replica plan on host ``i % H``. Four ticks:

- **cold**: nothing loaded, every model's window has begun: N warms, spread over ticks of at most
  ``--budget`` seconds each (``PREWARM_CONTROLLER__TICK_BUDGET_S``: a tick starts no new action after it);
- **steady**: everything ready: nothing to do;
- **churn**: a tenth of the windows ended (unload) and a tenth more models' windows began (warm);
- **steady again**.

    .venv/bin/python benchmarks/fleet/controller_scale.py --models 10000 --hosts 200 --pool-limit 32

PostgreSQL comes from ``--postgres`` or ``PREWARM_TEST_POSTGRES_URL`` (``scripts/ensure_postgres.sh`` starts one);
the benchmark creates its own database and drops it at the end.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

T0 = datetime(2026, 11, 23, 0, tzinfo=UTC)
SHA = "0" * 64


def _admin_url(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("PREWARM_TEST_POSTGRES_URL"):
        return os.environ["PREWARM_TEST_POSTGRES_URL"]
    return subprocess.run([str(ROOT / "scripts" / "ensure_postgres.sh")], check=True, capture_output=True, text=True).stdout.strip()


def _spec(name: str) -> dict[str, Any]:
    return {
        "name": name, "version": "1", "artifact_uri": f"file:///nonexistent/{name}.pt2", "sha256": SHA,
        "loader": "torch_export", "device_memory_mb": 100.0, "replica_capacity": 100.0,
        "warmup": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4]}], "iterations": 1, "probes": 1},
    }


def _setup(engine: Any, *, models: int, hosts: int, ports: list[int]) -> None:
    """Register the models and hosts, and store one plan per model (bulk inserts: this is not what is measured)."""
    from sqlalchemy import insert

    from db.models import Host, HostKind, HostState, Model, PlanStatus, WarmPlan
    from db.session import session_scope
    from prewarm.fleet import ModelSpec

    churn = models // 10
    names = [f"m{i:06d}" for i in range(models + churn)]
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        rows = []
        for name in names:
            spec = ModelSpec.model_validate(_spec(name)).model_dump(mode="json")
            rows.append({
                "name": name, "version": "1", "artifact_uri": spec["artifact_uri"], "sha256": SHA, "loader": "torch_export",
                "factory": None, "spec": spec, "sla_p99_ms": None, "priority": 0, "device_memory_mb": 100.0,
                "created_at": now, "updated_at": now,
            })
        session.execute(insert(Model), rows)
        session.execute(insert(Host), [
            {"name": f"s{j:04d}", "url": f"http://127.0.0.1:{port}", "pool": "scale", "kind": HostKind.V2,
             "versioned_routes": True, "device_class": "any", "memory_mb": None, "labels": {}, "state": HostState.UP,
             "max_concurrent_warmups": 1, "heartbeat_s": None, "last_seen_at": now, "created_at": now, "updated_at": now}
            for j, port in enumerate(ports)
        ])
        plans = []
        for i, name in enumerate(names):
            if i < models:
                start, end = T0, T0 + (timedelta(hours=1) if i % 10 == 0 else timedelta(hours=24))
            else:
                start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=24)
            plans.append({
                "model": name, "version": "1", "window_start": start, "window_end": end, "replicas": 1,
                "lead_seconds": 0.0, "expected_demand": 1.0, "reason": "benchmark", "status": PlanStatus.PLANNED,
                "idempotency_key": f"bench:{name}", "host": f"s{i % hosts:04d}", "pool": "scale",
                "created_at": now, "updated_at": now,
            })
        session.execute(insert(WarmPlan), plans)


def _tick(label: str, at: datetime, engine: Any, config: Any) -> dict[str, Any]:
    from controller.reconcile import reconcile

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    report = reconcile("scale", at, engine=engine, config=config)
    wall = time.perf_counter() - started
    failed = [a for a in report.actions if a["outcome"] != "ok"]
    row = {
        "tick": label, "now": at.isoformat(), "wall_s": round(wall, 2), "phases_s": report.phases,
        "counts": report.counts, "failed_actions": len(failed), "first_failure": failed[0]["error"] if failed else None,
        "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
    }
    print(f"{label:>14}: {wall:6.1f} s  {report.counts}  phases {report.phases}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--pool-limit", type=int, default=32, help="PREWARM_CONTROLLER__MAX_WARMUPS_PER_POOL")
    parser.add_argument("--budget", type=float, default=25.0, help="PREWARM_CONTROLLER__TICK_BUDGET_S")
    parser.add_argument("--postgres", default=None, help="admin URL of a PostgreSQL server")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "controller_scale.json")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    from controller.reconcile import ControllerConfig
    from db.migrate import upgrade
    from db.session import make_engine

    admin_url = _admin_url(args.postgres)
    admin = create_engine(make_engine(admin_url).url, isolation_level="AUTOCOMMIT")
    database = f"prewarm_fleet_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = make_engine(admin_url).url.set(database=database).render_as_string(hide_password=False)
    engine = make_engine(url)
    ports_file = Path(tempfile.mkdtemp()) / "ports.json"
    standin = subprocess.Popen([sys.executable, str(HERE / "standin.py"), "--hosts", str(args.hosts), "--ports-file", str(ports_file)])
    try:
        upgrade(engine)
        while not ports_file.exists():
            time.sleep(0.1)
        ports = json.loads(ports_file.read_text())
        started = time.perf_counter()
        _setup(engine, models=args.models, hosts=args.hosts, ports=ports)
        print(f"setup: {args.models} models (+{args.models // 10} for the churn) on {args.hosts} hosts in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        config = ControllerConfig(
            max_warmups_per_pool=args.pool_limit, tick_budget_s=args.budget, observe_timeout_s=60, warm_timeout_s=120,
            heartbeat_s=15, lease_s=600,
        )
        rows = []
        at = T0
        for n in range(1, 20):  # a cold start spreads over ticks of at most the budget
            rows.append(_tick(f"cold {n}", at, engine, config))
            at += timedelta(minutes=1)
            if rows[-1]["counts"]["deferred"] == 0:
                break
        rows.append(_tick("steady", at, engine, config))
        at = T0 + timedelta(hours=1, minutes=11)
        for n in range(1, 10):
            rows.append(_tick(f"churn {n}", at, engine, config))
            at += timedelta(minutes=1)
            if rows[-1]["counts"]["deferred"] == 0:
                break
        rows.append(_tick("steady again", at, engine, config))
    finally:
        standin.terminate()
        standin.wait(timeout=30)
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    document = {
        "benchmark": "fleet/controller_scale", "models": args.models, "hosts": args.hosts, "pool_limit": args.pool_limit,
        "tick_budget_s": args.budget,
        "date": datetime.now(UTC).date().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "history_db": "PostgreSQL (scripts/ensure_postgres.sh)", "ticks": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
