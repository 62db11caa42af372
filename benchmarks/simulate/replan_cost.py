"""What one re-plan costs: one forecast of the whole fleet and one ``plan_windows`` call, on M4 and the synthetic fleet.

Usage: python benchmarks/simulate/replan_cost.py [--repeats 2]

Times, as the simulator's ``forecast`` policy makes them at a re-plan: the forecast of every series of the
history (the 414 M4 Hourly series with backtest model selection and with ``--fast``; the benchmark's synthetic
fleet, 400 models, with ``--fast``) for the next 2 intervals, and ``plan_windows`` on the synthetic forecast.
Prints the median of ``--repeats`` runs of each. The re-planning cadence is chosen from these figures
(``scheduling/cadence.py``, docs/scheduling.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import pandas as pd

    from benchmarks.simulate.run import load
    from scheduling.forecast_policy import engine_forecast
    from scheduling.planner import PlanModel, PlannerConfig, plan_windows
    from scheduling.trace import replica_capacity

    def median_seconds(fn) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    rows = []
    load_start = os.getloadavg()[0]
    for dataset, fast in (("m4", False), ("m4", True), ("synthetic", True)):
        trace, _ = load(dataset)
        history = trace.history_frame(trace.eval_start)
        forecast = engine_forecast(80.0, fast=fast)
        seconds = median_seconds(lambda: forecast(history, 2, trace.interval))  # noqa: B023 - called at once
        rows.append((f"forecast, {dataset}, {len(trace.models)} series{', --fast' if fast else ''}", seconds))
        if dataset == "synthetic":
            frame = forecast(history, 2, trace.interval)
            capacity = replica_capacity(trace, replicas_at_peak=4)
            fleet = {m: PlanModel(name=m, replica_capacity=float(c)) for m, c in zip(trace.models, capacity, strict=True)}
            now = pd.Timestamp(trace.timestamps[trace.eval_start])
            config = PlannerConfig(interval=trace.interval)
            rows.append((f"plan_windows, {len(fleet)} models", median_seconds(
                lambda: plan_windows(frame, fleet, config=config, now=now))))  # noqa: B023
    print(f"median of {args.repeats} runs; load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print("| step | seconds |\n| --- | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
