"""Policy simulation benchmark: every policy side by side, each with its sweep, on M4 Hourly and synthetic fleets.

Usage: python benchmarks/simulate/run.py [--dataset m4|synthetic|bursty] [--fast] [--models N] [--output DIR]

* ``m4``: the 414 M4 Hourly series as a fleet, train as history, the 48 test hours evaluated;
* ``synthetic``: ``prewarm.synthetic.synthetic_telemetry(400, 35 days, seed=7, sparse_fraction=0.6)``:
  160 busy models with daily and weekly cycles, 240 sparse ones; the last week (168 hours) evaluated;
* ``bursty``: ``prewarm.synthetic.bursty_telemetry(400, 35 days, seed=11, sparse_fraction=0.6)``: spiky
  busy models and sparse models used in sessions; the last week evaluated.

Rules for every policy: lead 1 interval, 4 replicas at peak, re-planning at the deployment's cadence (every
interval of these hourly traces: ``scheduling.cadence``; ``--replan N`` for another), and the
default prices of :mod:`scheduling.cost` (cold weight 4, a replica-hour costs 1). Each policy runs at its
default and along its sweep (keep-alive, k, level, or cold weight); the sweep points are drawn as one
curve per policy (the Pareto plots), the defaults make the table and decide the goals. ``forecast@L`` for
L other than 80 moves the 80 % bound to level L as the ``cost`` policy does (one forecast for all levels).

Writes ``<output>/<dataset>.json`` (totals, sweeps, goals), ``<dataset>_per_model.csv.gz``,
``<dataset>_levels.csv.gz`` (each model's level in the ``cost`` policy and why), ``<dataset>.md``,
``<dataset>.png`` (timelines) and ``<dataset>_pareto.png``.
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
from scheduling.baselines import KEEP_ALIVE_MINUTES, TOPK_SHARES, TopKPolicy  # noqa: E402
from scheduling.cost import Prices  # noqa: E402
from scheduling.cost_policy import CostPolicy, leveled  # noqa: E402
from scheduling.datasets import m4_hourly_telemetry  # noqa: E402
from scheduling.experiment import SimulationOptions, build_policies  # noqa: E402
from scheduling.forecast_policy import ForecastFn, ForecastPolicy, cached_forecast, engine_forecast  # noqa: E402
from scheduling.histogram import HistogramConfig, HistogramPolicy  # noqa: E402
from scheduling.metrics import ORACLE, goals, policy_metrics, subset_metrics, summary  # noqa: E402
from scheduling.metrics import per_model as breakdown  # noqa: E402
from scheduling.plots import plot_pareto, plot_simulation  # noqa: E402
from scheduling.policies import KeepAlivePolicy, Policy  # noqa: E402
from scheduling.simulator import SimulationResult, context_for, simulate  # noqa: E402
from scheduling.sparse import SparsePolicy  # noqa: E402
from scheduling.trace import Trace, replica_capacity, trace_from_telemetry  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
M4 = ROOT / "benchmarks" / "data" / "m4_hourly"
SYNTHETIC = {"n_models": 400, "n_intervals": 24 * 35, "seed": 7, "sparse_fraction": 0.6}
BURSTY = {"n_models": 400, "n_intervals": 24 * 35, "seed": 11, "sparse_fraction": 0.6}
DATASETS = ("m4", "synthetic", "bursty")
DEFAULTS = ("static", "keepalive", "reactive", "histogram", "histogram-tuned", "topk", "sparse", "forecast", "cost", "oracle")
WEIGHTS = (2.0, 8.0, 16.0, 32.0)  # the default, 4, is the policy itself
LEVEL_SWEEP = (50.0, 65.0, 90.0, 95.0, 99.0)
KEEPALIVE_SWEEP = (60.0, 180.0, 360.0, 720.0, 1440.0)


def load(dataset: str, *, models: int | None = None) -> tuple[Trace, np.ndarray | None]:
    """The trace and, for the synthetic fleets, a mask of their sparse (long-tail) models."""
    if dataset == "m4":
        frame = m4_hourly_telemetry(M4 / "Hourly-train.csv.gz", M4 / "Hourly-test.csv.gz")
        if models:
            keep = sorted(frame["model"].unique())[:: max(1, frame["model"].nunique() // models)][:models]
            frame = frame[frame["model"].isin(keep)]
        return trace_from_telemetry(frame, eval_intervals=48), None
    spec = SYNTHETIC if dataset == "synthetic" else BURSTY
    make = synthetic_telemetry if dataset == "synthetic" else bursty_telemetry
    n_models = models or spec["n_models"]
    frame = make(n_models, spec["n_intervals"], seed=spec["seed"], sparse_fraction=spec["sparse_fraction"])
    trace = trace_from_telemetry(frame, eval_intervals=168)
    n_sparse = int(round(n_models * spec["sparse_fraction"]))
    sparse = np.zeros(len(trace.models), dtype=bool)
    sparse[-n_sparse:] = True  # both generators make the last models the sparse ones; names sort the same way
    return trace, sparse


FORECASTS = {"count": 0, "seconds": 0.0}
"""The forecasts a run made (after the cache) and the seconds they took: the price of the cadence."""


def timed(fn: ForecastFn) -> ForecastFn:
    """``fn`` adding its calls and seconds to :data:`FORECASTS`."""

    def run(history: pd.DataFrame, horizon: int, interval: pd.Timedelta) -> pd.DataFrame:
        started = time.perf_counter()
        try:
            return fn(history, horizon, interval)
        finally:
            FORECASTS["count"] += 1
            FORECASTS["seconds"] += time.perf_counter() - started

    return run


def policies(trace: Trace, *, fast: bool, n_jobs: int, replan: int | None = None) -> tuple[dict[str, Policy], dict[str, str], Prices, np.ndarray]:
    """Every policy at its default and along its sweep; the family (curve) of each; the default prices; capacity."""
    options = SimulationOptions(
        eval_intervals=trace.n_intervals - trace.eval_start, policies=DEFAULTS, fast_forecast=fast, replan=replan
    )
    capacity = replica_capacity(trace, replicas_at_peak=options.replicas_at_peak)
    prices = options.prices(capacity, interval_hours=trace.interval_hours)
    replan = options.replan_for(trace.interval)
    fn = cached_forecast(timed(engine_forecast(80.0, fast=fast, n_jobs=n_jobs)))
    built = build_policies(trace, options, capacity, forecast_fn=fn)
    family = {name: name for name in built}
    context = context_for(trace, capacity, lead=options.lead)

    def add(name: str, policy: Policy, of: str) -> None:
        built[name] = policy
        family[name] = of

    for minutes in KEEPALIVE_SWEEP:
        add(f"keepalive@{minutes:g}m", KeepAlivePolicy(context, keep_alive_seconds=60 * minutes, name="keepalive"), "keepalive")
    for minutes in KEEP_ALIVE_MINUTES:
        add(f"histogram@{minutes:g}m", HistogramPolicy(context, config=HistogramConfig(range_minutes=minutes)), "histogram")
    for share in TOPK_SHARES:
        k = int(round(share * len(trace.models)))
        add(f"topk@{k}", TopKPolicy(context, k=k), "topk")
    for level in LEVEL_SWEEP:
        fn_at = leveled(fn, {m: level for m in trace.models})
        add(f"forecast@{level:g}", ForecastPolicy(context, fn_at, replan=replan, name="forecast"), "forecast")
    for weight in WEIGHTS:
        at = Prices.derived(capacity, interval_hours=trace.interval_hours, cold_weight=weight)
        add(f"sparse@w{weight:g}", SparsePolicy(context, at), "sparse")
        add(f"cost@w{weight:g}", CostPolicy(context, fn, at, replan=replan), "cost")
    return built, family, prices, capacity


def run(
    trace: Trace, *, fast: bool, n_jobs: int, replan: int | None = None
) -> tuple[SimulationResult, dict[str, str], dict[str, Policy]]:
    """Simulate every policy and sweep point; the result is priced at the default prices."""
    built, family, prices, capacity = policies(trace, fast=fast, n_jobs=n_jobs, replan=replan)

    def progress(name: str, done: int, total: int) -> None:
        if done == total:
            print(f"  {name:18s} done", file=sys.stderr, flush=True)

    return simulate(trace, built, capacity=capacity, lead=1, progress=progress, prices=prices), family, built


def replan_of(built: dict[str, Policy]) -> int | None:
    """The re-planning period of the run's ``forecast`` policy (every forecast-based policy shares it)."""
    policy = built.get("forecast")
    return policy.replan if isinstance(policy, ForecastPolicy) else None


def table(result: SimulationResult, names: list[str], sparse: np.ndarray | None) -> str:
    """The markdown table of ``names``: cold fraction, events, replica-hours, ÷ oracle, cost (and sparse split)."""
    oracle_hours = float(result.outcomes[ORACLE].provisioned.sum() * result.trace.interval_hours)
    header = "| policy | cold fraction | cold-start events | replica-hours | ÷ oracle | expected cost |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if sparse is not None:
        header += " cold, busy | cold, sparse | replica-hours, sparse |"
        rule += "---:|---:|---:|"
    lines = [header + " simulate s |", rule + "---:|"]
    for name in names:
        m = policy_metrics(result, name, oracle_hours=oracle_hours)
        row = (f"| {name} | {100 * m.cold_fraction:.3f}% | {m.cold_start_events:,} | {m.replica_hours:,.0f} | "
               f"{m.replica_hours_vs_oracle:.3f}x | {m.cost:,.0f} |")
        if sparse is not None:
            busy, tail = subset_metrics(result, name, ~sparse), subset_metrics(result, name, sparse)
            row += f" {100 * busy['cold_fraction']:.2f}% | {100 * tail['cold_fraction']:.2f}% | {tail['replica_hours']:,.0f} |"
        lines.append(row + f" {m.seconds:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--fast", action="store_true", help="forecast without backtest selection (cheaper)")
    parser.add_argument("--models", type=int, default=None, help="a subset of this many models (exploring)")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--replan", type=int, default=None,
                        help="re-plan every N intervals (default: the deployment's 30-minute cadence, every interval here)")
    parser.add_argument("--output", "-o", type=Path, default=RESULTS)
    args = parser.parse_args()
    out_dir: Path = args.output
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}"
    dataset = args.dataset
    print(f"{dataset}: loading", file=sys.stderr, flush=True)
    trace, sparse = load(dataset, models=args.models)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    result, family, built = run(trace, fast=args.fast, n_jobs=args.n_jobs, replan=args.replan)
    wall = time.perf_counter() - started
    oracle_hours = float(result.outcomes[ORACLE].provisioned.sum() * trace.interval_hours)
    metrics = {n: policy_metrics(result, n, oracle_hours=oracle_hours) for n in result.outcomes}
    sparse_metrics = None if sparse is None else {n: subset_metrics(result, n, sparse) for n in result.outcomes}
    document = summary(result, per_model_breakdown=False)
    document["goals"] = goals(metrics, policy="cost", sparse=sparse_metrics)
    document["sweep_goals"] = {
        name: goals({**metrics, "cost": metrics[name]}, policy="cost",
                    sparse=None if sparse_metrics is None else {**sparse_metrics, "cost": sparse_metrics[name]})
        for name in metrics if family[name] == "cost"
    }
    document["families"] = family
    if sparse_metrics is not None:
        document["sparse_models"] = sparse_metrics
    document.update(
        machine=machine, date=datetime.now(UTC).isoformat(timespec="seconds"), wall_seconds=round(wall, 1),
        load_average=[round(load_before, 2), round(os.getloadavg()[0], 2)],
        command=" ".join(["python", "benchmarks/simulate/run.py", *sys.argv[1:]]),
        replan_intervals=replan_of(built),
        forecasts={"count": FORECASTS["count"], "seconds": round(FORECASTS["seconds"], 1),
                   "seconds_each": round(FORECASTS["seconds"] / max(1, FORECASTS["count"]), 2)},
    )
    cost_policy = built.get("cost")
    if isinstance(cost_policy, CostPolicy) and cost_policy.choice is not None:
        reasons = cost_policy.choice.reasons()
        levels = cost_policy.choice.level_of()
        pd.DataFrame({"model": list(levels), "level": list(levels.values()), "reason": [reasons[m] for m in levels]}).to_csv(
            out_dir / f"{dataset}_levels.csv.gz", index=False
        )
        document["cost_levels"] = {f"{v:g}": int(sum(1 for x in levels.values() if x == v)) for v in sorted(set(levels.values()))}
    (out_dir / f"{dataset}.json").write_text(json.dumps(document, indent=1))
    defaults = [n for n in result.outcomes if family[n] == n]
    pd.concat([pd.DataFrame(breakdown(result, n)).assign(policy=n) for n in defaults], ignore_index=True).to_csv(
        out_dir / f"{dataset}_per_model.csv.gz", index=False
    )
    sweeps = [n for n in result.outcomes if family[n] != n]
    md = table(result, defaults, sparse) + "\n\nSweeps (each point one setting; the curves of the Pareto plot):\n\n" + table(result, sweeps, sparse)
    (out_dir / f"{dataset}.md").write_text(md + "\n")
    points = [
        {"family": family[n], "label": n, "cold_fraction": m.cold_fraction, "cost": m.cost, "vs_oracle": m.replica_hours_vs_oracle}
        for n, m in metrics.items() if family[n] != "static"
    ]
    plot_pareto(points, out_dir / f"{dataset}_pareto.png", title=f"{dataset}: {len(trace.models)} models, lead 1")
    defaults_only = SimulationResult(trace, result.capacity, result.lead, {n: result.outcomes[n] for n in defaults}, result.prices)
    plot_simulation(defaults_only, out_dir / f"{dataset}.png", title=f"{dataset}: {len(trace.models)} models, "
                    f"last {trace.n_intervals - trace.eval_start} intervals, lead 1")
    print(md)
    print(json.dumps({"goals": document["goals"], "levels": document.get("cost_levels")}, indent=1))
    print(f"{dataset}: {wall:.1f}s on {machine}, load {document['load_average']}, re-planning every "
          f"{document['replan_intervals']} intervals, forecasts {document['forecasts']}", flush=True)


if __name__ == "__main__":
    main()
