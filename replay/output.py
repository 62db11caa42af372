"""The replay's files: ``replay.json`` (every figure), ``replay.csv`` (a row per policy and model),
``requests.csv`` (a row per request), ``timeline.csv`` and ``replay.png`` (the latency CDF per policy, and
ready replicas against demand over the replay for a few models)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from replay.arrivals import Arrivals
from replay.measures import Record

_FIGURES = ("requests", "answered", "cold_starts", "p50_ms", "p95_ms", "p99_ms", "max_ms")
# Models on the timeline: half the busiest, half the quietest.
TIMELINE_MODELS = 4


@dataclass
class PolicyRun:
    """What one policy's run left: its figures, its request records and the ready-replica timeline."""

    figures: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)


def write_all(folder: Path, runs: Mapping[str, PolicyRun], arrivals: Arrivals, *, meta: Mapping[str, Any]) -> list[Path]:
    """Write every file into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / n for n in ("replay.json", "replay.csv", "requests.csv", "timeline.csv", "replay.png")]
    paths[0].write_text(json.dumps({**meta, "policies": {n: r.figures for n, r in runs.items()}}, indent=2))
    _summary_csv(paths[1], runs)
    _requests_csv(paths[2], runs, arrivals)
    _timeline_csv(paths[3], runs, arrivals)
    plot(paths[4], runs, arrivals)
    return paths


def _row(policy: str, model: str, block: Mapping[str, Any]) -> list[Any]:
    idle = block["first_after_idle"]
    return [policy, model, *(block[k] for k in _FIGURES), idle["requests"], idle["cold_starts"], idle["p50_ms"],
            idle["p99_ms"], idle["max_ms"], block["replica_seconds"], block["warmups"]]


def _summary_csv(path: Path, runs: Mapping[str, PolicyRun]) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["policy", "model", *_FIGURES, "idle_requests", "idle_cold_starts", "idle_p50_ms", "idle_p99_ms",
                      "idle_max_ms", "replica_seconds", "warmups"])
        for name, run in runs.items():
            out.writerow(_row(name, "*", run.figures))
            for model, block in run.figures["models"].items():
                out.writerow(_row(name, model, block))


def _requests_csv(path: Path, runs: Mapping[str, PolicyRun], arrivals: Arrivals) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["policy", "model", "offset_s", "lag_ms", "latency_ms", "cold", "answered", "host", "error"])
        for name, run in runs.items():
            for r in run.records:
                o = r.outcome
                out.writerow([name, arrivals.models[arrivals.model_index[r.index]], round(float(arrivals.offsets_s[r.index]), 3),
                              round(r.lag_s * 1000, 3), round(o.latency_ms, 3), int(o.cold), int(o.answered),
                              o.host or "", o.error or ""])


def _timeline_csv(path: Path, runs: Mapping[str, PolicyRun], arrivals: Arrivals) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["policy", "offset_s", *arrivals.models])
        for name, run in runs.items():
            for offset, ready in run.timeline:
                out.writerow([name, round(offset, 1), *(ready.get(m, 0) for m in arrivals.models)])


def shown_models(arrivals: Arrivals, n: int = TIMELINE_MODELS) -> list[str]:
    """The models on the timeline: the busiest, then the quietest that had requests (where warming ahead is hard)."""
    totals = arrivals.per_interval().sum(axis=1)
    order = [int(i) for i in np.argsort(-totals, kind="stable") if totals[i] > 0]
    busy = order[: (n + 1) // 2]
    quiet = [i for i in reversed(order) if i not in busy][: n - len(busy)]
    return [arrivals.models[i] for i in busy + quiet]


def load_runs(folder: Path) -> tuple[dict[str, PolicyRun], Arrivals]:
    """The runs and arrivals of a replay's files (``replay.json``, ``requests.csv``, ``timeline.csv``), to plot again."""
    import pandas as pd

    from replay.router import Outcome

    meta = json.loads((folder / "replay.json").read_text())
    requests = pd.read_csv(folder / "requests.csv", keep_default_na=False)
    timeline = pd.read_csv(folder / "timeline.csv")
    models = tuple(meta["models"])
    first = requests[requests["policy"] == requests["policy"].iloc[0]]
    arrivals = Arrivals(models=models, offsets_s=first["offset_s"].to_numpy(float),
                        model_index=first["model"].map(models.index).to_numpy(int), interval_s=meta["interval_s"],
                        intervals=meta["eval_intervals"])
    runs = {}
    for name, figures in meta["policies"].items():
        rows = requests[requests["policy"] == name].reset_index(drop=True)
        records = [Record(i, r.lag_ms / 1000, Outcome(r.latency_ms, bool(r.cold), bool(r.answered), r.host or None,
                                                      r.error or None)) for i, r in enumerate(rows.itertuples())]
        samples = timeline[timeline["policy"] == name]
        runs[name] = PolicyRun(figures=figures, records=records, timeline=[
            (float(row["offset_s"]), {m: int(row[m]) for m in models}) for _, row in samples.iterrows()
        ])
    return runs, arrivals


def plot(path: Path, runs: Mapping[str, PolicyRun], arrivals: Arrivals) -> None:
    """The latency CDF per policy, then ready replicas per policy against demand for a few models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scheduling.plots import literal

    shown = shown_models(arrivals)
    fig, axes = plt.subplots(1 + len(shown), 1, figsize=(10, 3.2 * (1 + len(shown))), squeeze=False)
    cdf = axes[0][0]
    for name, run in runs.items():
        latencies = np.sort([r.outcome.latency_ms for r in run.records])
        if latencies.size:
            cdf.plot(latencies, np.arange(1, latencies.size + 1) / latencies.size, label=name)
    cdf.set_xscale("log")
    cdf.set_xlabel("client latency (ms, log)")
    cdf.set_ylabel("share of requests")
    cdf.set_title("Client-seen latency per policy")
    cdf.legend(loc="lower right", fontsize=8)
    demand = arrivals.per_interval()
    hours = arrivals.interval_s / 3600
    for row, model in enumerate(shown, start=1):
        ax = axes[row][0]
        i = arrivals.models.index(model)
        edges = np.arange(arrivals.intervals) * hours
        twin = ax.twinx()
        twin.bar(edges, demand[i], width=hours, align="edge", color="#dddddd", label="requests per interval")
        twin.set_ylabel("requests / interval")
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
        for name, run in runs.items():
            if run.timeline:
                times = [t / 3600 for t, _ in run.timeline]
                ax.step(times, [ready.get(model, 0) for _, ready in run.timeline], where="post", label=name)
        ax.set_ylabel("ready replicas")
        ax.set_xlabel("trace hours")
        ax.set_title(f"{literal(model)}: ready replicas vs demand")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


