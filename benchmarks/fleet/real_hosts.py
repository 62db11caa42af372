"""A day on real hosts: 3 ``prewarm serve`` processes on loopback (CPU), the example fleet, a tick every minute.

The example fleet is imported and its sample telemetry ingested; three hosts register in pool ``bench``. The
day after the telemetry is then played on the controller's clock: ``prewarm plan --pool bench --as-of T
--store`` every ``--replan-hours`` (the same steps as ``forecast-and-plan``), and a ``reconcile`` tick at
every minute of plan time. Halfway through, one host is killed and started again (its models are lost).

Reported: the share of planned replica windows that were ready on their host by the window's start (the
tick's clock), how late the others were, warm-ups per tick, and the work lost to the restart (replicas
lost, the ticks and warm-up seconds to restore them). A PNG shows planned and ready time per host and model.

    .venv/bin/python benchmarks/fleet/real_hosts.py --out benchmarks/fleet/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

POOL = "bench"
HOSTS = ("bench-1", "bench-2", "bench-3")
# Just after the last telemetry bucket began: the first plan sees it (whole: a replay's small look ahead) and
# starts an hour ahead of the next day, as a fleet in operation plans its windows well ahead of them.
START = datetime(2026, 11, 22, 23, 1, tzinfo=UTC)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "from prewarm.cli.main import app; app()", *args], env=env, capture_output=True, text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"prewarm {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


class Hosts:
    """The benchmark's host processes."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.ports = {name: _port() for name in HOSTS}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-c", "from prewarm.cli.main import app; app()", "serve", "--port", str(self.ports[name]),
             "--no-preload", "--register", "--name", name, "--pool", POOL, "--cpu-threads", "1"],
            env={**self.env, "PREWARM_HOME": str(self.folder / name)}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_registered(self, engine: Any, names: tuple[str, ...], since: datetime) -> None:
        from sqlalchemy import select

        from db.models import Host
        from db.session import session_scope

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with session_scope(engine) as session:
                seen = {h.name for h in session.scalars(select(Host)) if h.last_seen_at and h.last_seen_at >= since}
            if set(names) <= seen:
                return
            time.sleep(0.3)
        raise TimeoutError(f"hosts {names} did not register; see {self.folder}")

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24, help="Plan hours to play.")
    parser.add_argument("--replan-hours", type=int, default=6)
    parser.add_argument("--level", type=float, default=80.0, help="Forecast interval level provisioned.")
    parser.add_argument("--restart-at-hour", type=float, default=12.0)
    parser.add_argument(
        "--synthetic", type=int, default=0,
        help="Instead of the example fleet: N models (the example artifacts under new names) with synthetic "
        "telemetry, half of them long-tail, so that windows open and close during the day.",
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    from controller.reconcile import ControllerConfig, reconcile
    from db.migrate import upgrade
    from db.session import make_engine, session_scope

    work = Path(tempfile.mkdtemp(prefix="prewarm-fleet-bench-"))
    db_url = f"sqlite:///{work / 'history.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}
    env.update({"PREWARM_HOME": str(work / "home"), "PREWARM_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)})
    engine = make_engine(db_url)
    upgrade(engine)
    if args.synthetic:
        fleet, telemetry = _synthetic(work, args.synthetic, seed=args.seed)
    else:
        fleet, telemetry = ROOT / "examples" / "fleet.yaml", ROOT / "examples" / "telemetry.csv"
    _cli("models", "import", str(fleet), env=env)
    _cli("ingest", str(telemetry), env=env)
    hosts = Hosts(env, work)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the hosts on the way out
    rows: list[dict[str, Any]] = []
    restart: dict[str, Any] = {}
    shortfall: set[str] = set()
    first_planned: dict[int, datetime] = {}
    plans_made = 0
    try:
        since = datetime.now(UTC)
        for name in HOSTS:
            hosts.start(name)
        hosts.wait_registered(engine, HOSTS, since)
        config = ControllerConfig(observe_timeout_s=10, warm_timeout_s=120, heartbeat_s=15, lease_s=120, tick_budget_s=120)
        end = START + timedelta(hours=args.hours)
        restart_at = START + timedelta(hours=args.restart_at_hour)
        at = START
        next_plan = START
        started = time.perf_counter()
        while at <= end + timedelta(minutes=80):  # past the last windows' end and keep-alive: the unloads
            if at >= next_plan and at < end:
                planned = json.loads(_cli("plan", "--pool", POOL, "--as-of", at.isoformat(), "--store", "--level",
                                          str(args.level), "--json", env=env))
                shortfall.update(planned["shortfall"])
                for plan_id in planned["plan_ids"]:
                    first_planned.setdefault(plan_id, at)
                plans_made += 1
                next_plan = at + timedelta(hours=args.replan_hours)
            if at == restart_at:
                restart = _restart(hosts, engine, victim=HOSTS[1])
            report = reconcile(POOL, at, engine=engine, config=config)
            rows.append({
                "now": at.isoformat(), "seconds": round(report.seconds, 3), "counts": report.counts,
                "ready": {h["name"]: h["ready"] for h in report.hosts},
                "actions": [(a["kind"], a["host"], a["model"], a["outcome"]) for a in report.actions],
            })
            if restart and "repaired_at" not in restart:
                _check_repair(restart, report, at)
            at += timedelta(minutes=1)
        wall = time.perf_counter() - started
    finally:
        hosts.stop()
    with session_scope(engine) as session:
        summary = _summary(session, rows, restart, first_planned, plans_made=plans_made, wall=wall, args=args)
    summary["shortfall"] = sorted(shortfall)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"real_hosts_synthetic{args.synthetic}" if args.synthetic else "real_hosts"
    (args.out / f"{stem}.json").write_text(json.dumps(summary, indent=2, default=str))
    _plot(rows, summary, args.out / f"{stem}.png")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("windows", "warmups_per_tick")}, indent=2, default=str))
    engine.dispose()


def _synthetic(folder: Path, n: int, *, seed: int) -> tuple[Path, Path]:
    """A fleet of ``n`` models cycling through the example entries, and four weeks of synthetic telemetry."""
    import yaml

    from prewarm.synthetic import synthetic_telemetry

    raw = yaml.safe_load((ROOT / "examples" / "fleet.yaml").read_text())["models"]
    models = []
    for i in range(n):
        entry = dict(raw[i % len(raw)])
        entry["name"] = f"{entry['name']}-{i:02d}"
        entry["artifact_uri"] = str((ROOT / "examples" / entry["artifact_uri"]).resolve())
        entry["pinned"] = False
        entry["replica_capacity"] = 50
        models.append(entry)
    fleet = folder / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({"models": models}, sort_keys=False))
    hours = 28 * 24
    frame = synthetic_telemetry(
        n, hours, seed=seed, sparse_fraction=0.5, names=[m["name"] for m in models],
        start=START.replace(minute=0) - timedelta(hours=hours - 1),  # the last bucket is the hour START is in
    )
    telemetry = folder / "telemetry.csv"
    frame.to_csv(telemetry, index=False)
    return fleet, telemetry


def _restart(hosts: Hosts, engine: Any, *, victim: str) -> dict[str, Any]:
    """Kill ``victim`` and start it again (empty); returns what it held."""
    import httpx

    url = f"http://127.0.0.1:{hosts.ports[victim]}"
    held = sorted(e["name"] for e in httpx.post(f"{url}/v2/repository/index", json={}, timeout=10).json() if e["state"] == "READY")
    hosts.kill(victim)
    since = datetime.now(UTC)
    hosts.start(victim)
    hosts.wait_registered(engine, (victim,), since)
    return {"host": victim, "lost": held, "ticks": 0, "warm_seconds": 0.0}


def _check_repair(restart: dict[str, Any], report: Any, at: datetime) -> None:
    restart["ticks"] += 1
    restart["warm_seconds"] += sum(
        a["seconds"] or 0.0 for a in report.actions if a["host"] == restart["host"] and a["kind"] in ("repair", "warm")
    )
    ready = next(h["ready"] for h in report.hosts if h["name"] == restart["host"])
    desired = next(h["desired"] for h in report.hosts if h["name"] == restart["host"])
    if set(desired) <= set(ready):
        restart["repaired_at"] = at.isoformat()


def _summary(session: Any, rows: list[dict[str, Any]], restart: dict[str, Any], first_planned: dict[int, datetime],
             *, plans_made: int, wall: float, args: Any) -> dict[str, Any]:
    from sqlalchemy import select

    from db.models import PlanStatus, WarmPlan, WarmRun

    played_until = datetime.fromisoformat(rows[-1]["now"])
    plans = session.scalars(select(WarmPlan).where(WarmPlan.pool == POOL).order_by(WarmPlan.window_start)).all()
    live = [p for p in plans if p.status is not PlanStatus.SUPERSEDED and p.window_start <= played_until]
    windows = []
    for p in live:
        warm_from = p.window_start - timedelta(seconds=p.lead_seconds)
        late = None if p.ready_at is None else (p.ready_at - p.window_start).total_seconds()
        planned_at = first_planned.get(p.id)
        windows.append({
            "model": p.model, "host": p.host, "planned_at": planned_at.isoformat() if planned_at else None,
            "planned_ahead": planned_at is not None and planned_at < p.window_start,
            "warm_from": warm_from.isoformat(), "window_start": p.window_start.isoformat(),
            "window_end": p.window_end.isoformat(), "ready_at": p.ready_at.isoformat() if p.ready_at else None,
            "late_s": late, "status": p.status.value, "reason": p.reason,
        })
    on_time = [w for w in windows if w["late_s"] is not None and w["late_s"] <= 0]
    # A window first planned after it began cannot be ready by its start: the goal counts the others.
    ahead = [w for w in windows if w["planned_ahead"]]
    ahead_on_time = [w for w in ahead if w in on_time]
    after = [w for w in windows if not w["planned_ahead"]]
    after_delay = [
        (datetime.fromisoformat(w["ready_at"]) - datetime.fromisoformat(w["planned_at"])).total_seconds()
        for w in after if w["ready_at"] and w["planned_at"]
    ]
    per_tick = [r["counts"]["warms"] + r["counts"]["repairs"] for r in rows]
    busy = [n for n in per_tick if n]
    runs = session.scalars(select(WarmRun)).all()
    return {
        "benchmark": "fleet/real_hosts", "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_avg_end": round(os.getloadavg()[0], 2),
        "hosts": len(HOSTS), "models": args.synthetic or 4, "fleet": "synthetic" if args.synthetic else "example",
        "level": args.level, "hours": args.hours, "ticks": len(rows),
        "replans": plans_made, "wall_s": round(wall, 1),
        "windows_total": len(windows), "windows_ready_by_start": len(on_time),
        "windows_planned_ahead": len(ahead), "planned_ahead_ready_by_start": len(ahead_on_time),
        "share_ready_by_start": round(len(ahead_on_time) / len(ahead), 4) if ahead else None,
        "windows_planned_after_start": len(after),
        "planned_after_start_ready_within_s": max(after_delay, default=None),
        "late_windows": [w for w in ahead if w not in on_time],
        "warmups_total": len(runs), "warmups_per_busy_tick": {"mean": round(sum(busy) / len(busy), 2) if busy else 0,
                                                               "max": max(busy, default=0), "busy_ticks": len(busy)},
        "warmups_per_tick": dict(Counter(per_tick)),
        "tick_seconds": {"mean": round(sum(r["seconds"] for r in rows) / len(rows), 3),
                         "max": max(r["seconds"] for r in rows)},
        "restart": restart, "windows": windows,
    }


def _plot(rows: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes = sorted({(w["host"], w["model"]) for w in summary["windows"]})
    times = [datetime.fromisoformat(r["now"]) for r in rows]
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(lanes) + 1.5))
    for y, (host, model) in enumerate(lanes):
        for w in summary["windows"]:
            if (w["host"], w["model"]) == (host, model):
                start, end = datetime.fromisoformat(w["warm_from"]), datetime.fromisoformat(w["window_end"])
                ax.barh(y, end - start, left=start, height=0.8, color="#cfe3f5")
        ready = [t for t, r in zip(times, rows, strict=True) if model in r["ready"].get(host, [])]
        for t in ready:
            ax.barh(y, timedelta(minutes=1), left=t, height=0.4, color="#2ca02c")
    if summary["restart"]:
        at = next((datetime.fromisoformat(r["now"]) for r in rows if r["actions"] and any(a[0] == "repair" for a in r["actions"])), None)
        if at:
            ax.axvline(at, color="#d62728", linestyle="--", label=f"{summary['restart']['host']} restarted")
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(color="#cfe3f5", label="planned (from warm-up start)"), Patch(color="#2ca02c", label="ready on its host")]
    ax.set_yticks(range(len(lanes)), [f"{m} @ {h}" for h, m in lanes])
    ax.set_title(f"Planned vs ready replicas over a day, 3 hosts, a tick per minute ({summary['share_ready_by_start']:.0%} ready by window start)")
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
