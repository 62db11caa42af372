"""Replay benchmark: ``prewarm replay`` on real ``prewarm serve`` hosts (CPU, loopback), every policy, one run.

Usage: python benchmarks/replay/run.py [--dataset example|synthetic|m4] [--speedup 720]
       [--policy always,reactive,keepalive-1,forecast] [--eval-intervals 48] [--hosts 2] [--out DIR]

* ``example``: the example fleet and its telemetry, the last 2 days replayed after 26 days of history;
* ``synthetic``: ``--models`` models (the example artifacts under new names) with four weeks of
  ``prewarm.synthetic.synthetic_telemetry`` (half of them long-tail), the last 2 days replayed;
* ``m4``: ``--models`` M4 Hourly series as models (the example artifacts under new names), each series scaled
  so that its busiest hour has 30 requests, the last 2 days (of its test hours) replayed.

It registers the fleet in a throwaway history database, runs the command exactly as a user would
(``prewarm replay --trace ... --json -o DIR``), and writes ``DIR/replay.json`` (every figure), ``DIR/replay.png``
and ``DIR/goals.json``: the goals met or not, with the figures side by side. Goals: forecast has at most 10 %
of reactive's cold starts; its client p99 is within 1.5x of always's; its residency is at most half of always's.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-c", "from prewarm.cli.main import app; app()"]
END = datetime(2026, 11, 23, tzinfo=UTC)


def _fleet_like_examples(folder: Path, names: list[str]) -> Path:
    """A fleet of ``names``, cycling through the example entries (their artifacts), none pinned."""
    import yaml

    raw = yaml.safe_load((ROOT / "examples" / "fleet.yaml").read_text())["models"]
    models = []
    for i, name in enumerate(names):
        entry = dict(raw[i % len(raw)])
        entry.update(name=name, pinned=False, artifact_uri=str((ROOT / "examples" / entry["artifact_uri"]).resolve()))
        models.append(entry)
    fleet = folder / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({"models": models}, sort_keys=False))
    return fleet


def dataset(name: str, folder: Path, *, models: int, seed: int) -> tuple[Path, Path]:
    """The fleet file and the telemetry file of dataset ``name``."""
    if name == "example":
        return ROOT / "examples" / "fleet.yaml", ROOT / "examples" / "telemetry.csv"
    if name == "synthetic":
        from prewarm.synthetic import synthetic_telemetry

        names = [f"synth-{i:02d}" for i in range(models)]
        frame = synthetic_telemetry(models, 28 * 24, seed=seed, sparse_fraction=0.5, names=names,
                                    start=END - timedelta(hours=28 * 24))
    else:
        from scheduling.datasets import m4_hourly_telemetry

        data = ROOT / "benchmarks" / "data" / "m4_hourly"
        frame = m4_hourly_telemetry(data / "Hourly-train.csv.gz", data / "Hourly-test.csv.gz", end=END)
        chosen = sorted(frame["model"].unique())[:: max(1, frame["model"].nunique() // models)][:models]
        frame = frame[frame["model"].isin(chosen)].copy()
        frame = frame[frame["timestamp"] >= END - timedelta(hours=28 * 24)]
        peak = frame.groupby("model")["requests"].transform("max")
        frame["requests"] = (frame["requests"] / peak * 30).round()
        names = [f"m4-{m.lower()}" for m in chosen]
        frame["model"] = frame["model"].map(dict(zip(chosen, names, strict=True)))
    telemetry = folder / "telemetry.csv"
    frame.to_csv(telemetry, index=False)
    return _fleet_like_examples(folder, names), telemetry


def goals(policies: dict[str, Any]) -> dict[str, Any]:
    """The three goals, met or not, with their figures (None where a policy was not run)."""
    forecast, reactive, always = (policies.get(n) for n in ("forecast", "reactive", "always"))
    out: dict[str, Any] = {}
    if forecast and reactive:
        ratio = forecast["cold_starts"] / reactive["cold_starts"] if reactive["cold_starts"] else None
        out["cold_starts_vs_reactive"] = {"forecast": forecast["cold_starts"], "reactive": reactive["cold_starts"],
                                          "ratio": ratio, "goal": 0.10, "met": ratio is not None and ratio <= 0.10}
    if forecast and always:
        p99 = forecast["p99_ms"] / always["p99_ms"]
        out["p99_vs_always"] = {"forecast_ms": forecast["p99_ms"], "always_ms": always["p99_ms"], "ratio": p99,
                                "goal": 1.5, "met": p99 <= 1.5}
        cost = forecast["replica_seconds"] / always["replica_seconds"]
        out["residency_vs_always"] = {"forecast": forecast["replica_seconds"], "always": always["replica_seconds"],
                                      "ratio": cost, "goal": 0.5, "met": cost <= 0.5}
    return out


def busy_share(out: Path) -> float:
    """The share of (model, interval) cells with at least one request: the residency, as a share of always's, of
    a policy that holds a replica exactly in the intervals with requests (a lower bound at interval grain)."""
    import pandas as pd

    meta = json.loads((out / "replay.json").read_text())
    requests = pd.read_csv(out / "requests.csv")
    first = requests[requests["policy"] == requests["policy"].iloc[0]]
    cells = set(zip(first["model"], (first["offset_s"] // meta["interval_s"]).astype(int), strict=True))
    return len(cells) / (len(meta["models"]) * meta["eval_intervals"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("example", "synthetic", "m4"), default="example")
    parser.add_argument("--speedup", type=float, default=720.0)
    parser.add_argument("--policy", default="always,reactive,keepalive-1,forecast")
    parser.add_argument("--eval-intervals", type=int, default=48)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--models", type=int, default=8, help="Models of the synthetic and m4 datasets.")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--goals-only", action="store_true", help="Re-evaluate the goals of the run in --out.")
    args = parser.parse_args()

    out = args.out or HERE / "results" / args.dataset
    if args.goals_only:
        document = json.loads((out / "goals.json").read_text())
        document["goals"] = goals(json.loads((out / "replay.json").read_text())["policies"])
        document["busy_share"] = round(busy_share(out), 4)
        (out / "goals.json").write_text(json.dumps(document, indent=2))
        print(json.dumps(document["goals"], indent=2))
        return
    work = Path(tempfile.mkdtemp(prefix="prewarm-replay-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}
    env.update({"PREWARM_HOME": str(work / "home"), "PREWARM_DATABASE_URL": f"sqlite:///{work / 'history.db'}",
                "PYTHONPATH": str(ROOT)})
    fleet, telemetry = dataset(args.dataset, work, models=args.models, seed=args.seed)
    subprocess.run([*CLI, "models", "import", str(fleet)], env=env, check=True, capture_output=True, timeout=300)
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(
        [*CLI, "replay", "--trace", str(telemetry), "--speedup", str(args.speedup), "--policy", args.policy,
         "--eval-intervals", str(args.eval_intervals), "--hosts", str(args.hosts), "--scale", str(args.scale),
         "--seed", str(args.seed), "--json", "-o", str(out)],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )
    wall = time.perf_counter() - started
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    policies = json.loads((out / "replay.json").read_text())["policies"]
    document = {
        "benchmark": "replay", "dataset": args.dataset, "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU torch",
        "load_avg": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "command": " ".join(sys.argv), "speedup": args.speedup, "eval_intervals": args.eval_intervals,
        "hosts": args.hosts, "wall_s": round(wall, 1), "goals": goals(policies),
        "busy_share": round(busy_share(out), 4),
        "policies": {n: {k: p[k] for k in ("requests", "answered", "cold_starts", "p50_ms", "p95_ms", "p99_ms",
                                           "max_ms", "replica_seconds", "warmups", "lag_flagged")}
                     | {"first_after_idle_p99_ms": p["first_after_idle"]["p99_ms"]}
                     for n, p in policies.items()},
    }
    (out / "goals.json").write_text(json.dumps(document, indent=2))
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
