"""The simulation figure: cold fraction against replica-hours per policy, and timelines for a few models."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scheduling.metrics import ORACLE, policy_metrics
from scheduling.simulator import SimulationResult

TIMELINE_POLICIES = ("reactive", "histogram", "forecast", "oracle")


def pick_models(result: SimulationResult, count: int = 3) -> list[int]:
    """Indices of a busy, a middling and a sparse model (by evaluation-window demand), without repeats."""
    totals = result.eval_demand.sum(axis=1)
    order = np.argsort(-totals, kind="stable")
    active = [int(i) for i in order if totals[i] > 0]
    if not active:
        return [int(i) for i in order[:count]]
    picks = [active[0], active[len(active) // 2], active[-1]]
    return list(dict.fromkeys(picks))[:count]


def plot_simulation(result: SimulationResult, path: str | Path, *, models: Sequence[int] | None = None, title: str = "") -> Path:
    """Write the PNG figure to ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picks = list(models) if models is not None else pick_models(result)
    fig = plt.figure(figsize=(14, 3.2 * max(len(picks), 2)))
    grid = fig.add_gridspec(max(len(picks), 1), 2, width_ratios=(1, 1.6))
    with warnings.catch_warnings():
        # A model name in a script the font lacks (CJK) draws as boxes; one warning per glyph and draw is noise.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        _scatter(fig.add_subplot(grid[:, 0]), result)
        for row, index in enumerate(picks):
            _timeline(fig.add_subplot(grid[row, 1]), result, index)
        if title:
            fig.suptitle(literal(title))
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def literal(text: str) -> str:
    """``text`` as matplotlib draws it verbatim: a ``$`` in a model or file name would start mathtext."""
    return text.replace("$", r"\$")


def _scatter(ax, result: SimulationResult) -> None:  # noqa: ANN001 (matplotlib axes)
    oracle_hours = None
    if ORACLE in result.outcomes:
        oracle_hours = float(result.outcomes[ORACLE].replica_intervals.sum() * result.trace.interval_hours)
    points: dict[tuple[float, float], list[str]] = {}
    for name in result.outcomes:
        m = policy_metrics(result, name, oracle_hours=oracle_hours)
        x = m.replica_hours_vs_oracle if m.replica_hours_vs_oracle is not None else m.replica_hours
        points.setdefault((round(x, 6), round(100 * m.cold_fraction, 6)), []).append(name)
    for (x, y), names in points.items():
        ax.scatter([x], [y], s=60)
        ax.annotate(" = ".join(names), (x, y), textcoords="offset points", xytext=(6, 4))
    ax.set_xlabel("replica-hours ÷ oracle's" if oracle_hours else "replica-hours")
    ax.set_ylabel("cold requests (% of all requests)")
    ax.set_title("Cold fraction against cost, per policy")
    ax.grid(alpha=0.3)


def _timeline(ax, result: SimulationResult, index: int) -> None:  # noqa: ANN001 (matplotlib axes)
    stamps = result.trace.timestamps[result.trace.eval_start :]
    ax.bar(stamps, result.eval_demand[index], width=result.trace.interval * 0.9, align="edge", color="0.8", label="demand")
    for name in TIMELINE_POLICIES:
        if name in result.outcomes:
            served = result.capacity[index] * result.outcomes[name].ready[index]
            ax.step(stamps, served, where="post", label=f"{name} ready capacity")
    ax.set_title(f"{literal(result.trace.models[index])} (replica capacity {result.capacity[index]:.1f} requests/interval)")
    ax.set_ylabel("requests / interval")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)


def plot_pareto(points: Sequence[dict], path: str | Path, *, title: str = "", max_cold: float = 0.5) -> Path:  # type: ignore[type-arg]
    """Expected cost and replica-hours ÷ oracle's against cold fraction; each policy's sweep drawn as one curve.

    ``points``: dicts with ``family`` (the curve), ``label``, ``cold_fraction``, ``cost`` and ``vs_oracle``.
    Points with more than ``max_cold`` cold (a price so low that nothing is warmed) are left out of the axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    families: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for point in points:
        if point["cold_fraction"] <= max_cold:
            families.setdefault(point["family"], []).append(point)
    for family, members in families.items():
        members = sorted(members, key=lambda p: p["cold_fraction"])
        x = [100 * p["cold_fraction"] for p in members]
        for ax, key in zip(axes, ("cost", "vs_oracle"), strict=True):
            style = "o-" if len(members) > 1 else "s"
            ax.plot(x, [p[key] for p in members], style, label=family, markersize=5)
    for ax, label in zip(axes, ("expected cost (replica-hours at the default prices)", "replica-hours ÷ oracle's"), strict=True):
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("cold requests (% of all requests)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title("Cost against cold fraction (each policy's sweep is one curve)")
    axes[1].set_title("Replica-hours against cold fraction")
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
