"""Counting a preset's counters per model and bucket, one chunk of buckets at a time (see :mod:`prewarm.promql`).

A chunk's counts live in dense arrays, models x buckets (a chunk is sized so that it stays small): one range
query gives every series' last value at each bucket boundary, the differences of consecutive ones are the
counts, and buckets where a series reset or is new are recounted from the raw samples.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from prewarm import promql
from prewarm.prometheus_api import PrometheusApi

log = logging.getLogger(__name__)

Series = tuple[dict[str, str], np.ndarray, np.ndarray]  # labels, times (s), values


@dataclass(frozen=True, kw_only=True)
class Counts:
    """One chunk's counts: ``total[m, b]`` for model m and bucket b, and whether m had a series there."""

    total: np.ndarray
    seen: np.ndarray


@dataclass(frozen=True, kw_only=True)
class Counting:
    """What every chunk of one read shares."""

    api: PrometheusApi
    preset: promql.Preset
    models: pd.Index  # every model of the read, sorted: the rows of the arrays
    interval: timedelta
    lookback: timedelta

    @property
    def interval_ms(self) -> int:
        return int(self.interval.total_seconds() * 1000)

    @property
    def lookback_ms(self) -> int:
        return int(self.lookback.total_seconds() * 1000)


def count_chunk(counting: Counting, counters: list[promql.Counter], chunk: pd.DatetimeIndex) -> Counts:
    """The sum of ``counters`` per model over the buckets starting at ``chunk``."""
    total = np.zeros((len(counting.models), len(chunk)))
    seen = np.zeros(total.shape, dtype=bool)
    label = counting.preset.model_label
    for counter in counters:
        series = counting.api.matrix(promql.last_values(counter, lookback=counting.lookback), chunk,
                                     counting.interval, from_start=True)  # fmt: skip
        counts, present, recount = _differences(series, chunk, counting)
        del series  # the largest thing held: let it go before the next query
        flags = promql.recount_flags(
            counter, model_label=label, interval=counting.interval, lookback=counting.lookback
        )
        ends = (chunk + pd.Timedelta(counting.interval)).as_unit("ms").asi8
        for item in counting.api.query_range(flags, chunk, counting.interval):
            row = counting.models.get_indexer([item["metric"].get(label, "")])[0]
            stamps = np.rint(np.array([float(p[0]) for p in item["values"]]) * 1000).astype(np.int64)
            if row >= 0:
                recount[row, np.searchsorted(ends, stamps)] = True
        rows, columns = np.nonzero(recount)
        if len(rows):
            log.info("%s: %s buckets of %s with a reset or a new series, recounted from raw samples",
                     counting.api.name, len(rows), counter.metric)  # fmt: skip
        for row, column in zip(rows.tolist(), columns.tolist(), strict=True):
            counts[row, column] = _recount(counting, counter, str(counting.models[row]), int(ends[column]))
            present[row, column] = True
        total += counts
        seen |= present
    return Counts(total=total, seen=seen)


def _differences(series: list[Series], chunk: pd.DatetimeIndex, counting: Counting) -> tuple[np.ndarray, ...]:
    """Per model and bucket: the sum of its series' differences of last values across the bucket, whether
    any of its series has a value at the bucket's end, and whether one dropped (a reset) or is new there."""
    first_ms = int(chunk[0].value // 1_000_000)
    values = np.full((len(series), len(chunk) + 1), np.nan)  # boundaries: chunk start, then each bucket end
    rows = counting.models.get_indexer([labels[counting.preset.model_label] for labels, _, _ in series])
    for index, (_, times, numbers) in enumerate(series):
        values[index, np.rint((times * 1000 - first_ms) / counting.interval_ms).astype(np.int64)] = numbers
    keep = rows >= 0  # a series the listing did not show (it appeared meanwhile) waits for the next read
    values, rows = values[keep], rows[keep]
    before, after = values[:, :-1], values[:, 1:]
    delta = after - before
    present = ~np.isnan(after)
    shape = (len(counting.models), len(chunk))
    counts, seen, recount = np.zeros(shape), np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    np.add.at(counts, rows, np.where(present & ~np.isnan(delta), delta, 0.0))
    np.logical_or.at(seen, rows, present)
    np.logical_or.at(recount, rows, (delta < 0) | (np.isnan(before) & present))
    return counts, seen, recount


def _recount(counting: Counting, counter: promql.Counter, model: str, end_ms: int) -> float:
    """One model's count of ``counter`` in the bucket ending at ``end_ms``, pair by pair over raw samples."""
    api, label = counting.api, counting.preset.model_label
    window = promql.duration(counting.interval + counting.lookback)
    selector = promql.model_selector(counter, model_label=label, model=model)
    created = promql.model_selector(counter.created, model_label=label, model=model)
    born = {_identity(labels): (t, v) for labels, t, v in api.raw(f"{created}[{window}]", at_ms=end_ms)}
    start_ms = end_ms - counting.interval_ms
    total = 0.0
    for labels, times, values in api.raw(f"{selector}[{window}]", at_ms=end_ms):
        seen_before = bool(np.any((times >= start_ms - counting.lookback_ms) & (times <= start_ms)))
        known = seen_before or api.target_known(labels, at_ms=end_ms, interval=counting.interval,
                                                lookback=counting.lookback)  # fmt: skip
        total += float(
            promql.exact_increase(
                times, values, bucket_ends_ms=[end_ms], interval_ms=counting.interval_ms,
                lookback_ms=counting.lookback_ms, target_known=[known],
                created=_created_at(times, born.get(_identity(labels))),
            )[0]
        )  # fmt: skip
    return total


def _identity(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def _created_at(times: np.ndarray, born: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    """The creation time in force at each sample time (the last ``_created`` sample at or before it)."""
    if born is None:
        return None
    born_times, born_values = born
    index = np.searchsorted(born_times, times, side="right") - 1
    return np.where(index >= 0, born_values[np.clip(index, 0, None)], np.nan)
