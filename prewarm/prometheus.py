"""Telemetry from Prometheus: ``prometheus+http(s)://HOST:PORT[/prefix]`` as an ingest source.

The source reads request counters (and prewarm's cold-start counter) through the HTTP API's range queries,
evaluated at every bucket boundary with a step of ``PREWARM_FORECAST_INTERVAL``, so each stored bucket holds
the requests counted in it (the rules are in :mod:`prewarm.promql`, the counting in
:mod:`prewarm.prometheus_counts`). Long ranges are split into queries under
Prometheus's 11,000 points per series. Without ``--since``/``--start`` each model resumes at its last stored
bucket, which is read again (it may have been partial). Every problem raises before anything is written:
:class:`~prewarm.errors.PrometheusQueryError` for what the user can fix, and
:class:`~prewarm.errors.PrometheusUnavailable` when the server cannot be reached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from prewarm import columns as C
from prewarm import promql
from prewarm.errors import PrometheusQueryError
from prewarm.prometheus_api import PrometheusApi
from prewarm.prometheus_counts import Counting, Counts, count_chunk
from prewarm.settings import PrometheusSettings
from prewarm.text import duration, parse_duration

log = logging.getLogger(__name__)

SCHEMES = ("prometheus+http", "prometheus+https")
POINTS_PER_QUERY = 10_000  # Prometheus refuses more than 11,000 points per series in one range query
MAX_POINTS_PER_RESPONSE = 200_000  # series x buckets in one answer: bounds the memory a query takes
MAX_BUCKETS = 1_000_000  # per series in one ingest
_PARAMS = ("preset", "query", "since", "start", "end")

Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class PrometheusOptions:
    """What to read: a preset or a query, and a range (``since`` or ``start``/``end``; neither = resume)."""

    preset: str | None = None
    query: str | None = None
    since: str | None = None
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True, kw_only=True)
class PrometheusSource:
    """A parsed source URL: the API's base URL, the name used in messages, and options given in the URL."""

    name: str
    base_url: str
    options: PrometheusOptions = field(default_factory=PrometheusOptions)


def is_prometheus_url(source: str) -> bool:
    """Whether ``source`` names a Prometheus server rather than files."""
    return source.split("://", 1)[0].lower() in SCHEMES


def parse_url(source: str) -> PrometheusSource:
    """Parse ``prometheus+http(s)://HOST:PORT[/prefix][?preset=...&since=...]``."""
    parts = urlsplit(source)
    name = f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if _port(source, parts) else ''}{parts.path}"
    if parts.scheme.lower() not in SCHEMES:
        raise PrometheusQueryError(
            f"{source}: not a Prometheus URL; write prometheus+http://HOST:PORT[/prefix]"
        )
    if parts.username or parts.password:
        raise PrometheusQueryError(
            f"{name}: credentials in the URL are not accepted; set PREWARM_PROMETHEUS__TOKEN or "
            "PREWARM_PROMETHEUS__USERNAME and PREWARM_PROMETHEUS__PASSWORD"
        )
    if not parts.hostname:
        raise PrometheusQueryError(f"{source}: no host; write prometheus+http://HOST:PORT[/prefix]")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PARAMS:
            raise PrometheusQueryError(f"{name}: unknown URL parameter {key!r}; known: {', '.join(_PARAMS)}")
        params[key] = value
    if parts.fragment:
        raise PrometheusQueryError(f"{name}: a URL fragment (#...) means nothing here; remove it")
    scheme = parts.scheme.lower().removeprefix("prometheus+")
    base = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return PrometheusSource(name=name, base_url=base, options=PrometheusOptions(**params))


def _port(source: str, parts) -> bool:  # type: ignore[no-untyped-def]
    try:
        return parts.port is not None
    except ValueError as exc:
        raise PrometheusQueryError(f"{source}: {exc}; write prometheus+http://HOST:PORT[/prefix]") from exc


def merge_options(url: PrometheusOptions, given: PrometheusOptions) -> PrometheusOptions:
    """Options from the command line win over the same options written in the URL."""
    return PrometheusOptions(
        **{
            key: getattr(given, key) if getattr(given, key) is not None else getattr(url, key)
            for key in _PARAMS
        }
    )


def parse_time(value: str, *, what: str, now: datetime) -> datetime:
    """An ISO-8601 timestamp (naive means UTC); ``--since`` also takes a duration back from now (14d, PT6H)."""
    if what == "--since":
        back = parse_duration(value)
        if back is not None:
            if back <= timedelta(0):
                raise PrometheusQueryError(
                    f"--since {value!r}: must be a positive duration such as 14d or PT6H"
                )
            return now - back
    try:
        stamp = pd.Timestamp(value)
    except ValueError as exc:
        raise PrometheusQueryError(
            f"{what} {value!r}: not an ISO-8601 timestamp{' or a duration (14d, PT6H)' if what == '--since' else ''}"
        ) from exc
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


@dataclass(frozen=True, kw_only=True)
class _Plan:
    """What one read fetches: bucket starts, and per model the first bucket to keep."""

    buckets: pd.DatetimeIndex
    keep_from: Mapping[str, pd.Timestamp]


def read_prometheus(
    source: str,
    *,
    options: PrometheusOptions,
    interval: timedelta,
    settings: PrometheusSettings,
    last_stored: Mapping[str, datetime],
    now: datetime | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Read one Prometheus source into the telemetry frame, with a ``cold_starts`` column.

    ``last_stored`` maps each model to its last stored bucket (for resuming without a range).
    """
    parsed = parse_url(source)
    opts = merge_options(parsed.options, options)
    now = now or datetime.now(timezone.utc)
    _check_options(parsed.name, opts)
    with PrometheusApi(parsed.base_url, name=parsed.name, settings=settings) as api:
        if opts.preset is not None:
            preset = _preset(parsed.name, opts.preset)
            frame = _read_preset(
                api, preset, opts, interval=interval, last_stored=last_stored, now=now, progress=progress
            )
        else:
            assert opts.query is not None
            frame = _read_query(
                api, opts, interval=interval, last_stored=last_stored, now=now, progress=progress
            )
    log.info("read %s buckets of %s models from %s", len(frame), frame[C.MODEL].nunique(), parsed.name)
    return frame


def _check_options(name: str, opts: PrometheusOptions) -> None:
    if (opts.preset is None) == (opts.query is None):
        raise PrometheusQueryError(
            f"{name}: give exactly one of --preset ({', '.join(promql.PRESETS)}) or --query"
            + (" (both were given)" if opts.preset is not None else "")
        )
    if opts.since is not None and opts.start is not None:
        raise PrometheusQueryError(f"{name}: give --since or --start, not both")
    if opts.query is not None and not opts.query.strip():
        raise PrometheusQueryError(f"{name}: --query is empty")


def _preset(name: str, preset: str) -> promql.Preset:
    try:
        return promql.PRESETS[preset]
    except KeyError:
        raise PrometheusQueryError(
            f"{name}: unknown preset {preset!r}; known: {', '.join(promql.PRESETS)} (or give --query)"
        ) from None


def _range(
    name: str, opts: PrometheusOptions, *, interval: timedelta, now: datetime
) -> tuple[datetime | None, datetime]:
    end = parse_time(opts.end, what="--end", now=now) if opts.end else now
    if opts.since is not None:
        start: datetime | None = parse_time(opts.since, what="--since", now=now)
    elif opts.start is not None:
        start = parse_time(opts.start, what="--start", now=now)
    else:
        start = None
    if start is not None and start >= end:
        raise PrometheusQueryError(
            f"{name}: the range {start:%Y-%m-%dT%H:%M:%SZ} .. {end:%Y-%m-%dT%H:%M:%SZ} is empty"
        )
    return start, end


def _plan(
    name: str,
    *,
    start: datetime | None,
    end: datetime,
    models: set[str] | None,
    interval: timedelta,
    last_stored: Mapping[str, datetime],
) -> _Plan:
    """Bucket starts to fetch; without a start, resume each model the history knows at its last bucket."""
    keep_from: dict[str, pd.Timestamp] = {}
    if start is None:
        known = {m: pd.Timestamp(t) for m, t in last_stored.items() if models is None or m in models}
        if not known:
            raise PrometheusQueryError(
                f"{name}: the history holds no telemetry of these models yet, so there is nothing to resume "
                "from; give --since (e.g. --since 14d) or --start for the first ingest"
            )
        keep_from = {m: (t.tz_localize("UTC") if t.tzinfo is None else t) for m, t in known.items()}
        start = min(keep_from.values()).to_pydatetime()
    step = pd.Timedelta(interval)
    first = pd.Timestamp(start).floor(step)
    count = int(np.ceil((pd.Timestamp(end) - first) / step))
    if count > MAX_BUCKETS:
        raise PrometheusQueryError(
            f"{name}: {first:%Y-%m-%dT%H:%M:%SZ} .. {end:%Y-%m-%dT%H:%M:%SZ} is {count:,} buckets of {duration(interval)}; "
            f"one ingest reads at most {MAX_BUCKETS:,} per series ({MAX_BUCKETS // POINTS_PER_QUERY} queries of "
            f"{POINTS_PER_QUERY:,} points): narrow --start/--end, or ingest the range in parts"
        )
    buckets = pd.date_range(first, periods=max(count, 0), freq=step)
    return _Plan(buckets=buckets, keep_from=keep_from)


def _chunks(buckets: pd.DatetimeIndex, *, series: int) -> list[pd.DatetimeIndex]:
    size = max(1, min(POINTS_PER_QUERY, MAX_POINTS_PER_RESPONSE // max(series, 1)))
    return [buckets[i : i + size] for i in range(0, len(buckets), size)]


def _read_preset(
    api: PrometheusApi,
    preset: promql.Preset,
    opts: PrometheusOptions,
    *,
    interval: timedelta,
    last_stored: Mapping[str, datetime],
    now: datetime,
    progress: Progress | None,
) -> pd.DataFrame:
    """A preset's counts: check the counters, list their series, then count chunk by chunk."""
    lookback = promql.lookback_for(interval)
    start, end = _range(api.name, opts, interval=interval, now=now)
    for counter in preset.requests + preset.cold_starts:
        api.check_counter(counter.metric)
    series_from = start if start is not None else min(last_stored.values(), default=end - lookback)
    listed = {
        c: api.series(c.selector(), start=series_from - lookback, end=end, model_label=preset.model_label)
        for c in preset.requests + preset.cold_starts
    }  # counter -> the label sets of its series
    request_counters = [c for c in preset.requests if listed[c]]
    if not request_counters:
        selectors = " or ".join(c.selector() for c in preset.requests)
        raise PrometheusQueryError(
            f"{api.name}: no series match {selectors} between {series_from:%Y-%m-%dT%H:%M:%SZ} and "
            f"{end:%Y-%m-%dT%H:%M:%SZ}; check that Prometheus scrapes the servers and that --preset {preset.name} fits them"
        )
    models = {labels[preset.model_label] for c in request_counters for labels in listed[c]}
    plan = _plan(api.name, start=start, end=end, models=models, interval=interval, last_stored=last_stored)
    chunks = _chunks(plan.buckets, series=max(len(labels) for labels in listed.values()))
    cold_counters = [c for c in preset.cold_starts if listed[c]]
    if preset.cold_starts and not cold_counters:
        log.warning("%s: no %s series; cold starts are left unknown", api.name, preset.cold_starts[0].metric)
    every = {labels[preset.model_label] for labels_list in listed.values() for labels in labels_list}
    counting = Counting(
        api=api, preset=preset, models=pd.Index(sorted(every)), interval=interval, lookback=lookback
    )
    frames = []
    # Prometheus evaluates one query on one core: the requests' and the cold starts' queries run side by side.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prometheus") as pool:
        for index, chunk in enumerate(chunks, start=1):
            if progress:
                progress(f"{api.name}: counting {len(every):,} models, query {index}/{len(chunks)} "
                         f"({len(chunk):,} buckets of {duration(interval)})")  # fmt: skip
            requests = pool.submit(count_chunk, counting, request_counters, chunk)
            cold = pool.submit(count_chunk, counting, cold_counters, chunk) if cold_counters else None
            frames.append(
                _chunk_frame(counting.models, chunk, requests.result(), cold.result() if cold else None)
            )
    frame = pd.concat(frames, ignore_index=True)
    return _finish(frame, plan, interval=None)


def _chunk_frame(
    models: pd.Index, chunk: pd.DatetimeIndex, requests: Counts, cold: Counts | None
) -> pd.DataFrame:
    """One row per model and bucket where the model had a request series (bucket starts, categorical models)."""
    rows, columns = np.nonzero(requests.seen)
    return pd.DataFrame(
        {
            C.TIMESTAMP: chunk[columns],
            C.MODEL: pd.Categorical.from_codes(rows, categories=models),
            C.REQUESTS: requests.total[rows, columns],
            C.COLD_STARTS: cold.total[rows, columns] if cold is not None else np.nan,
        }
    )


def _matrix_frame(result: list[dict], model_label: str, name: str, expression: str) -> pd.DataFrame:
    """A range query's matrix as (timestamp = bucket start, model, value); one series per model."""
    models, stamps, values = [], [], []
    seen: dict[str, dict] = {}
    for series in result:
        labels = series["metric"]
        model = labels.get(model_label)
        if not model:
            raise PrometheusQueryError(
                f"{name}: the query returned a series without the {model_label!r} label ({labels or '{}'}); "
                f"every series must name its model: aggregate with sum by ({model_label}) (...)"
            )
        if model in seen:
            raise PrometheusQueryError(
                f"{name}: the query returned more than one series for model {model!r} ({seen[model]} and {labels}); "
                f"it must return one series per model: aggregate with sum by ({model_label}) (...)"
            )
        seen[model] = labels
        points = series["values"]
        models.append(np.full(len(points), model, dtype=object))
        stamps.append(np.fromiter((p[0] for p in points), dtype=float, count=len(points)))
        values.append(np.array([p[1] for p in points], dtype=object).astype(float))
    if not models:
        return pd.DataFrame({C.TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]"), C.MODEL: [], "value": []})
    ends = pd.to_datetime(np.round(np.concatenate(stamps) * 1000).astype("int64"), unit="ms", utc=True)
    frame = pd.DataFrame(
        {C.TIMESTAMP: ends, C.MODEL: np.concatenate(models), "value": np.concatenate(values)}
    )
    return frame


def _read_query(
    api: PrometheusApi,
    opts: PrometheusOptions,
    *,
    interval: timedelta,
    last_stored: Mapping[str, datetime],
    now: datetime,
    progress: Progress | None,
) -> pd.DataFrame:
    assert opts.query is not None
    expression = promql.custom_query(opts.query, interval=interval)
    start, end = _range(api.name, opts, interval=interval, now=now)
    models = None
    if start is None:
        current = _matrix_frame(
            [{"metric": s["metric"], "values": [s["value"]]} for s in api.instant(expression, at=end)],
            "model",
            api.name,
            expression,
        )
        models = set(current[C.MODEL])
        if not models:
            raise PrometheusQueryError(
                f"{api.name}: the query {opts.query!r} returns no series at {end:%Y-%m-%dT%H:%M:%SZ}"
            )
    plan = _plan(api.name, start=start, end=end, models=models, interval=interval, last_stored=last_stored)
    chunks = _chunks(plan.buckets, series=len(models or ()) or 1_000)
    frames = []
    for index, chunk in enumerate(chunks, start=1):
        if progress:
            progress(f"{api.name}: query {index}/{len(chunks)} ({len(chunk):,} buckets)")
        frames.append(
            _matrix_frame(api.query_range(expression, chunk, interval), "model", api.name, expression)
        )
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise PrometheusQueryError(
            f"{api.name}: the query {opts.query!r} returned no series between "
            f"{plan.buckets[0]:%Y-%m-%dT%H:%M:%SZ} and {end:%Y-%m-%dT%H:%M:%SZ}"
        )
    frame = frame.dropna(subset=["value"]).rename(columns={"value": C.REQUESTS})
    if (frame[C.REQUESTS] < 0).any():
        bad = frame[frame[C.REQUESTS] < 0].iloc[0]
        raise PrometheusQueryError(
            f"{api.name}: the query returned a negative count ({bad[C.REQUESTS]}) for model {bad[C.MODEL]!r}; "
            "request counts come from counters: use increase(...) over a counter"
        )
    frame[C.COLD_STARTS] = np.nan
    return _finish(frame, plan, interval=interval)


def _finish(frame: pd.DataFrame, plan: _Plan, *, interval: timedelta | None) -> pd.DataFrame:
    """Bucket starts (from ends when ``interval`` is given), resumed models from their last bucket, sorted."""
    if interval is not None:
        frame[C.TIMESTAMP] = frame[C.TIMESTAMP] - pd.Timedelta(interval)
    if plan.keep_from:
        since = frame[C.MODEL].astype(object).map(plan.keep_from)
        frame = frame[since.isna().to_numpy() | (frame[C.TIMESTAMP] >= since).to_numpy()]
    frame = frame.assign(**{C.P50_MS: np.nan, C.P99_MS: np.nan})
    columns = [C.TIMESTAMP, C.MODEL, C.REQUESTS, C.P50_MS, C.P99_MS, C.COLD_STARTS]
    return frame[columns].sort_values([C.MODEL, C.TIMESTAMP], kind="stable").reset_index(drop=True)
