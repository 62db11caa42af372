"""PromQL for telemetry: presets (which counters a serving stack exports) and exact per-bucket counts.

A bucket ``[a, a + I)`` of width ``I = PREWARM_FORECAST_INTERVAL`` gets the increase of each counter series
that Prometheus observed in the scrapes taken after ``a`` up to and including ``a + I``. Per series that is

* ``cur - prev`` where ``cur`` is the last sample at or before the bucket's end and ``prev`` the last sample
  at or before its start (both looked up over ``lookback``, so a scrape gap does not lose the count);
* across a reset (a sample lower than the one before it: the process restarted and counts from zero),
  the increments before it plus the value after it; where the exporter publishes each counter's creation
  time (``<name>_created``, as Python's prometheus_client does), a change of that time is a reset too,
  even when the new value is not lower;
* ``cur`` alone when the series has no ``prev`` but its target (``job``, ``instance``) was already being
  scraped: a series created in this bucket (client libraries create a labelled child on its first event);
* nothing when neither the series nor its target had been seen before the bucket: Prometheus started
  scraping a process that was already counting, and its old total is not this bucket's demand.

One range query gives every series' last value at each bucket boundary (:func:`last_values`); differences
of consecutive boundaries, summed by model, are the counts: no extrapolation, so they are exact integers.
The rest is rare: a reset (which a bare difference gets wrong; :func:`recount_flags` asks Prometheus for
the ones the boundary values do not show) and a series with no value at a bucket's start. Those buckets
are recounted from the raw samples, pair by pair, by :func:`exact_increase`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

# A series unseen for longer than this before a bucket starts counts as new when it comes back.
MIN_LOOKBACK = timedelta(hours=1)
INTERVAL_PLACEHOLDER = re.compile(r"\$\{?interval\}?")


@dataclass(frozen=True, slots=True)
class Counter:
    """One counter a preset reads: its metric name and extra label matchers."""

    metric: str
    matchers: str = ""

    def selector(self, extra: str = "") -> str:
        """The PromQL series selector, ``metric{matchers}``."""
        inner = ",".join(part for part in (self.matchers, extra) if part)
        return f"{self.metric}{{{inner}}}" if inner else self.metric

    @property
    def created(self) -> Counter:
        """The series of the counter's creation times (``foo_total`` -> ``foo_created``), where exported."""
        base = (
            self.metric.removesuffix("_total")
            if self.metric.endswith("_total")
            else self.metric.removesuffix("_count")
        )
        return Counter(f"{base}_created", self.matchers)


@dataclass(frozen=True, kw_only=True)
class Preset:
    """Where a serving stack counts its requests (and, for prewarm's host, its cold starts)."""

    name: str
    requests: tuple[Counter, ...]
    model_label: str
    version_label: str
    source: str
    cold_starts: tuple[Counter, ...] = field(default=())


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="prewarm",
            requests=(Counter("prewarm_inference_requests_total", 'model!="__unknown__"'),),
            cold_starts=(Counter("prewarm_cold_starts_total", 'model!="__unknown__"'),),
            model_label="model",
            version_label="version",
            source="prewarm's inference host (warmers/metrics.py): every inference request by outcome",
        ),
        Preset(
            name="triton",
            requests=(Counter("nv_inference_request_success"), Counter("nv_inference_request_failure")),
            model_label="model",
            version_label="version",
            source="Triton Inference Server metrics: successful plus failed inference requests",
        ),
        Preset(
            name="vllm",
            requests=(Counter("vllm:request_success_total"),),
            model_label="model_name",
            version_label="",
            source="vLLM's OpenAI-compatible server: finished requests (every finished_reason)",
        ),
        Preset(
            name="mlserver",
            requests=(
                Counter("model_infer_request_success_total"),
                Counter("model_infer_request_failure_total"),
            ),
            model_label="model",
            version_label="version",
            source="MLServer's data plane (mlserver/handlers/dataplane.py): model_infer_request_success/failure",
        ),
        Preset(
            name="kserve",
            requests=(Counter("request_predict_seconds_count"),),
            model_label="model_name",
            version_label="",
            source="KServe's Python model server (kserve/metrics.py): the predict latency histogram's count",
        ),
    )
}


def quote(value: str) -> str:
    """A PromQL string literal (JSON's escapes are valid PromQL escapes)."""
    return json.dumps(value)


def duration(value: timedelta) -> str:
    """A PromQL duration in whole milliseconds, e.g. ``3600000ms``."""
    return f"{int(round(value.total_seconds() * 1000))}ms"


def lookback_for(interval: timedelta) -> timedelta:
    """How far back the last sample before a bucket boundary is looked for: one bucket, at least an hour."""
    return max(interval, MIN_LOOKBACK)


def last_values(counter: Counter, *, lookback: timedelta) -> str:
    """Each series' last sample at or before the evaluation time (looked up over ``lookback``)."""
    return f"last_over_time({counter.selector()}[{duration(lookback)}])"


def recount_flags(counter: Counter, *, model_label: str, interval: timedelta, lookback: timedelta) -> str:
    """Per model, how many series reset in the bucket ending at the evaluation time (or the lookback before it).

    A reset is a drop in value or a new creation time. Looking back over the lookback too covers the pair of
    samples across the bucket's start; a reset that recovers above the value before it is invisible to the
    boundary values, so this asks Prometheus.
    """
    x, created = counter.selector(), counter.created.selector()
    span = duration(interval + lookback)
    return f"count by ({model_label}) ((resets({x}[{span}]) > 0) or (changes({created}[{span}]) > 0))"


def model_selector(counter: Counter, *, model_label: str, model: str) -> str:
    """The counter's series of one model."""
    return counter.selector(f"{model_label}={quote(model)}")


def custom_query(query: str, *, interval: timedelta) -> str:
    """A user's query with ``$interval`` / ``${interval}`` replaced by the bucket width."""
    return INTERVAL_PLACEHOLDER.sub(duration(interval), query)


def exact_increase(
    times_ms: np.ndarray,
    values: np.ndarray,
    *,
    bucket_ends_ms: Sequence[int],
    interval_ms: int,
    lookback_ms: int,
    target_known: Sequence[bool],
    created: np.ndarray | None = None,
) -> np.ndarray:
    """One series' count in each bucket ``(end - interval, end]``, pair by pair over its raw samples.

    ``target_known[k]`` says whether the series' target had been scraped in the lookback before bucket k
    started; ``created`` (NaN where unknown) is the counter's creation time at each sample. The rules are
    those of the module docstring, with every reset inside a bucket counted.
    """
    if created is None:
        created = np.full(len(values), np.nan)
    out = np.zeros(len(bucket_ends_ms))
    for k, end in enumerate(bucket_ends_ms):
        start = end - interval_ms
        lo = int(np.searchsorted(times_ms, start, side="right"))
        hi = int(np.searchsorted(times_ms, end, side="right"))
        if lo == hi:
            continue
        has_prev = lo > 0 and times_ms[lo - 1] >= start - lookback_ms
        if has_prev:
            last, born = float(values[lo - 1]), float(created[lo - 1])
        elif target_known[k]:
            last, born = 0.0, float("nan")
        else:
            continue
        total = 0.0
        for value, this_born in zip(values[lo:hi].tolist(), created[lo:hi].tolist(), strict=True):
            restarted = value < last or (
                not math.isnan(born) and not math.isnan(this_born) and this_born != born
            )
            total += value if restarted else value - last
            last, born = value, this_born
        out[k] = total
    return out
