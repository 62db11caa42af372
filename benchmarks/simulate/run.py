"""Policy simulation benchmark: cold requests against replica-hours on M4 Hourly and a synthetic long-tail fleet.

Usage: python benchmarks/simulate/run.py [--dataset m4|synthetic|both] [--levels 50,80,95] [--fast-forecast]

* ``m4``: the 414 M4 Hourly series as a fleet, train as history, the 48 test hours evaluated;
* ``synthetic``: ``prewarm.synthetic.synthetic_telemetry(400, 35 days, seed=7, sparse_fraction=0.6)``:
  160 busy models with daily and weekly cycles, 240 sparse ones; the last week (168 hours) evaluated.

Every policy of ``prewarm simulate`` runs with lead 1 interval, 4 replicas at peak and re-planning every
24 intervals; the forecast policy runs once per ``--levels`` entry (the interval level whose upper bound
the planner provisions for). Writes ``results/<dataset>.json`` (totals and goals),
``results/<dataset>_per_model.csv.gz`` (the per-model breakdown of every policy),
``results/<dataset>.md`` (the table in docs/benchmarks.md) and ``results/<dataset>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from prewarm.synthetic import bursty_telemetry, synthetic_telemetry  # noqa: E402
from scheduling.datasets import m4_hourly_telemetry  # noqa: E402
from scheduling.experiment import POLICY_NAMES, SimulationOptions, build_policies  # noqa: E402
from scheduling.forecast_policy import ForecastPolicy, engine_forecast  # noqa: E402
from scheduling.metrics import ORACLE, goals, policy_metrics, summary  # noqa: E402
from scheduling.metrics import per_model as breakdown  # noqa: E402
from scheduling.plots import plot_simulation  # noqa: E402
from scheduling.simulator import SimulationResult, context_for, simulate  # noqa: E402
from scheduling.trace import Trace, replica_capacity, trace_from_telemetry  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
M4 = ROOT / "benchmarks" / "data" / "m4_hourly"
SYNTHETIC = {"n_models": 400, "n_intervals": 24 * 35, "seed": 7, "sparse_fraction": 0.6}
BURSTY = {"n_models": 400, "n_intervals": 24 * 35, "seed": 11, "sparse_fraction": 0.6}
DATASETS = ("m4", "synthetic", "bursty")


def load(dataset: str) -> tuple[Trace, np.ndarray | None]:
    """The trace and, for the synthetic fleet, a mask of its sparse (long-tail) models."""
    if dataset == "m4":
        frame = m4_hourly_telemetry(M4 / "Hourly-train.csv.gz", M4 / "Hourly-test.csv.gz")
        return trace_from_telemetry(frame, eval_intervals=48), None
    spec = SYNTHETIC if dataset == "synthetic" else BURSTY
    make = synthetic_telemetry if dataset == "synthetic" else bursty_telemetry
    frame = make(spec["n_models"], spec["n_intervals"], seed=spec["seed"], sparse_fraction=spec["sparse_fraction"])
    trace = trace_from_telemetry(frame, eval_intervals=168)
    n_sparse = int(round(spec["n_models"] * spec["sparse_fraction"]))
    sparse = np.zeros(len(trace.models), dtype=bool)
    sparse[-n_sparse:] = True  # both generators make the last models the sparse ones; names sort the same way
    return trace, sparse


def run(trace: Trace, levels: list[float], *, fast: bool, n_jobs: int) -> SimulationResult:
    """Every baseline policy plus one forecast policy per level (the first level is named plain ``forecast``)."""
    options = SimulationOptions(eval_intervals=trace.n_intervals - trace.eval_start, policies=POLICY_NAMES)
    capacity = replica_capacity(trace, replicas_at_peak=options.replicas_at_peak)
    policies = build_policies(trace, options, capacity, forecast_fn=engine_forecast(levels[0], fast=fast, n_jobs=n_jobs))
    context = context_for(trace, capacity, lead=options.lead)
    for level in levels[1:]:
        name = f"forecast@{level:g}"
        fn = engine_forecast(level, fast=fast, n_jobs=n_jobs)
        policies[name] = ForecastPolicy(context, fn, replan=options.replan, name=name)

    def progress(name: str, done: int, total: int) -> None:
        if done == total or done % 24 == 0:
            print(f"  {name:14s} {done}/{total}", file=sys.stderr, flush=True)

    return simulate(trace, policies, capacity=capacity, lead=options.lead, progress=progress)


def table(result: SimulationResult, sparse: np.ndarray | None, level0: float) -> str:
    oracle_hours = float(result.outcomes[ORACLE].provisioned.sum() * result.trace.interval_hours)
    header = "| policy | cold fraction | cold-start events | replica-hours | ÷ oracle |"
    rule = "|---|---:|---:|---:|---:|"
    if sparse is not None:
        header += " cold, busy models | cold, sparse models |"
        rule += "---:|---:|"
    header += " simulate s |"
    rule += "---:|"
    lines = [header, rule]
    demand = result.eval_demand
    for name, outcome in result.outcomes.items():
        m = policy_metrics(result, name, oracle_hours=oracle_hours)
        label = f"forecast@{level0:g}" if name == "forecast" else name
        row = f"| {label} | {100 * m.cold_fraction:.3f}% | {m.cold_start_events:,} | {m.replica_hours:,.0f} | {m.replica_hours_vs_oracle:.3f}x |"
        if sparse is not None:
            for mask in (~sparse, sparse):
                row += f" {100 * outcome.cold[mask].sum() / max(demand[mask].sum(), 1e-9):.2f}% |"
        row += f" {m.seconds:.1f} |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("m4", "synthetic", "both"), default="both")
    parser.add_argument("--levels", default="80,50,95", help="forecast interval levels; the first is 'forecast'")
    parser.add_argument("--fast-forecast", action="store_true")
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()
    levels = [float(x) for x in args.levels.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}"
    for dataset in (("m4", "synthetic") if args.dataset == "both" else (args.dataset,)):
        print(f"{dataset}: loading", file=sys.stderr, flush=True)
        trace, sparse = load(dataset)
        started = time.perf_counter()
        result = run(trace, levels, fast=args.fast_forecast, n_jobs=args.n_jobs)
        wall = time.perf_counter() - started
        document = summary(result, per_model_breakdown=False)
        oracle_hours = float(result.outcomes[ORACLE].provisioned.sum() * trace.interval_hours)
        metrics = {n: policy_metrics(result, n, oracle_hours=oracle_hours) for n in result.outcomes}
        document["goals"] = {
            name: goals({**metrics, "forecast": metrics[name]}) for name in metrics if name.startswith("forecast")
        }
        document["machine"] = machine
        document["date"] = datetime.now(UTC).isoformat(timespec="seconds")
        document["command"] = " ".join(["python", "benchmarks/simulate/run.py", *sys.argv[1:]])
        document["wall_seconds"] = round(wall, 1)
        (RESULTS / f"{dataset}.json").write_text(json.dumps(document, indent=1))
        per_model = pd.concat(
            [pd.DataFrame(breakdown(result, name)).assign(policy=name) for name in result.outcomes], ignore_index=True
        )
        per_model.to_csv(RESULTS / f"{dataset}_per_model.csv.gz", index=False)
        md = table(result, sparse, levels[0])
        (RESULTS / f"{dataset}.md").write_text(md + "\n")
        plot_simulation(result, RESULTS / f"{dataset}.png", title=f"{dataset}: {len(trace.models)} models, "
                        f"last {trace.n_intervals - trace.eval_start} intervals, lead 1")
        print(md)
        print(json.dumps(document["goals"], indent=1))
        print(f"{dataset}: {wall:.1f}s on {machine}", flush=True)


if __name__ == "__main__":
    main()
