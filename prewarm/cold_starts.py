"""Observed cold starts per model and day, split by whether a warm plan was in force.

The history's telemetry buckets carry ``cold_starts`` (from a Prometheus ingest of prewarm's host). A
bucket counts as *with a plan* when it overlaps the span of a plan in force for its model: from the plan's
warm-up start (window start minus lead time) to its window's end. Buckets are the finest grain the
history keeps, so a cold start early in a bucket that a plan's span only reaches later still counts as
with a plan.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from prewarm import columns as C

DAY = "day"
WITH_PLAN = "with_plan"
WITHOUT_PLAN = "without_plan"
TABLE_COLUMNS = (C.MODEL, DAY, C.REQUESTS, C.COLD_STARTS, WITH_PLAN, WITHOUT_PLAN)


def cold_starts_by_day(
    buckets: pd.DataFrame, spans: Sequence[tuple[str, datetime, datetime]]
) -> pd.DataFrame:
    """Per model and UTC day: requests and cold starts (of buckets with a recorded cold-start count), split by plan.

    ``buckets``: timestamp (bucket start), model, bucket_seconds, requests, cold_starts.
    ``spans``: (model, in force from, in force until) per plan.
    """
    if buckets.empty:
        return pd.DataFrame({column: [] for column in TABLE_COLUMNS})
    starts = buckets[C.TIMESTAMP]
    ends = starts + pd.to_timedelta(buckets["bucket_seconds"], unit="s")
    covered = np.zeros(len(buckets), dtype=bool)
    models = buckets[C.MODEL].to_numpy()
    for model, begin, until in spans:
        mine = models == model
        covered |= mine & (starts < pd.Timestamp(until)).to_numpy() & (ends > pd.Timestamp(begin)).to_numpy()
    cold = buckets[C.COLD_STARTS].astype(float)
    frame = pd.DataFrame(
        {
            C.MODEL: models,
            DAY: starts.dt.floor("D").dt.date,
            C.REQUESTS: buckets[C.REQUESTS].astype(float),
            C.COLD_STARTS: cold,
            WITH_PLAN: np.where(covered, cold, 0.0),
            WITHOUT_PLAN: np.where(covered, 0.0, cold),
        }
    )
    table = frame.groupby([C.MODEL, DAY], as_index=False).sum()
    return table.astype({C.COLD_STARTS: int, WITH_PLAN: int, WITHOUT_PLAN: int})


def cold_starts_figure_png(table: pd.DataFrame, *, max_models: int = 12) -> bytes:
    """Stacked bars per day, one panel per model (those with the most cold starts): with vs without a plan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = table.groupby(C.MODEL)[C.COLD_STARTS].sum().sort_values(ascending=False, kind="stable")
    models = list(totals.index[:max_models]) or ["(none)"]
    days = sorted(set(table[DAY])) if not table.empty else []
    fig, axes = plt.subplots(
        len(models), 1, figsize=(10, 1.9 * len(models) + 0.6), sharex=True, squeeze=False
    )
    positions = np.arange(len(days))
    for ax, model in zip(axes[:, 0], models, strict=True):
        mine = (
            table[table[C.MODEL] == model]
            .set_index(DAY)[[WITH_PLAN, WITHOUT_PLAN]]
            .reindex(days, fill_value=0)
        )
        ax.bar(positions, mine[WITHOUT_PLAN], color="#d62728", label="without a plan")
        ax.bar(
            positions,
            mine[WITH_PLAN],
            bottom=mine[WITHOUT_PLAN],
            color="#2ca02c",
            label="with a plan in force",
        )
        ax.set_title(model, fontsize=10, loc="left")
        ax.set_ylabel("cold starts")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xticks(positions, [f"{d:%a %d %b}" for d in days], rotation=45 if len(days) > 7 else 0)
    axes[-1, 0].set_xlabel("day (UTC)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
