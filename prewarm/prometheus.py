"""Telemetry from Prometheus: ``prometheus+http(s)://HOST:PORT[/prefix]`` as an ingest source.

The source reads request counters (and prewarm's cold-start counter) through the HTTP API's range queries,
one evaluation per bucket end with a step of ``PREWARM_FORECAST_INTERVAL``, so each stored bucket holds the
requests counted in it (the rules are in :mod:`prewarm.promql`). Long ranges are split into queries under
Prometheus's 11,000 points per series. Without ``--since``/``--start`` each model resumes at its last stored
bucket, which is read again (it may have been partial). Every problem raises before anything is written:
:class:`~prewarm.errors.PrometheusQueryError` for what the user can fix, and
:class:`~prewarm.errors.PrometheusUnavailable` when the server cannot be reached.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from prewarm import columns as C
from prewarm import promql
from prewarm.errors import PrometheusQueryError
from prewarm.prometheus_api import PrometheusApi
from prewarm.settings import PrometheusSettings

log = logging.getLogger(__name__)

SCHEMES = ("prometheus+http", "prometheus+https")
POINTS_PER_QUERY = 10_000  # Prometheus refuses more than 11,000 points per series in one range query
MAX_POINTS_PER_RESPONSE = 400_000  # series x buckets in one answer: bounds the memory a query takes
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


_SHORT_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta | None:
    """``90s``, ``30m``, ``6h``, ``14d``, ``2w`` or ISO-8601 (``PT6H``, ``P14D``); None when it is neither."""
    short = _SHORT_DURATION.match(value)
    if short:
        return timedelta(**{_UNITS[short.group(2).lower()]: float(short.group(1))})
    if not value.strip().upper().startswith("P"):
        return None
    try:
        return pd.Timedelta(value.strip().upper()).to_pytimedelta()
    except ValueError:
        return None


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
            f"{name}: {first:%Y-%m-%dT%H:%M:%SZ} .. {end:%Y-%m-%dT%H:%M:%SZ} is {count:,} buckets of {interval}; "
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
    requests = _sum_counters(
        api,
        preset,
        request_counters,
        chunks,
        interval=interval,
        lookback=lookback,
        progress=progress,
        what="requests",
    )
    frame = requests.rename(columns={"value": C.REQUESTS})
    cold_counters = [c for c in preset.cold_starts if listed[c]]
    if cold_counters:
        cold = _sum_counters(
            api,
            preset,
            cold_counters,
            chunks,
            interval=interval,
            lookback=lookback,
            progress=progress,
            what="cold starts",
        )
        frame = frame.merge(
            cold.rename(columns={"value": C.COLD_STARTS}), on=[C.TIMESTAMP, C.MODEL], how="left"
        )
        frame[C.COLD_STARTS] = frame[C.COLD_STARTS].fillna(0.0)
    else:
        if preset.cold_starts:
            log.warning(
                "%s: no %s series; cold starts are left unknown", api.name, preset.cold_starts[0].metric
            )
        frame[C.COLD_STARTS] = np.nan
    return _finish(frame, plan, interval)


def _sum_counters(
    api: PrometheusApi,
    preset: promql.Preset,
    counters: list[promql.Counter],
    chunks: list[pd.DatetimeIndex],
    *,
    interval: timedelta,
    lookback: timedelta,
    progress: Progress | None,
    what: str,
) -> pd.DataFrame:
    """Each model's count per bucket, summed over ``counters`` (long frame: timestamp = bucket end, model, value).

    One range query gives every series' last value at each bucket boundary; the differences of consecutive
    ones are the counts. Buckets where a series is new or reset are recounted from the raw samples.
    """
    frames = []
    for counter in counters:
        last = promql.last_values(counter, lookback=lookback)
        flags = promql.recount_flags(counter, model_label=preset.model_label, interval=interval, lookback=lookback)
        for index, chunk in enumerate(chunks, start=1):
            if progress:
                progress(f"{api.name}: {what} from {counter.metric}, {index}/{len(chunks)} ({len(chunk):,} buckets)")
            series = api.query_range(last, chunk, interval, from_start=True)
            frame, flagged = _differences(series, chunk, interval, preset.model_label)
            resets = _matrix_frame(api.query_range(flags, chunk, interval), preset.model_label, api.name, flags)
            flagged = pd.concat([flagged, resets[[C.TIMESTAMP, C.MODEL]]]).drop_duplicates(ignore_index=True)
            if not flagged.empty:
                frame = _recount(api, counter, preset, frame, flagged, interval=interval, lookback=lookback)
            frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    return out.groupby([C.TIMESTAMP, C.MODEL], as_index=False, sort=False)["value"].sum()


def _differences(
    series: list[dict], chunk: pd.DatetimeIndex, interval: timedelta, model_label: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model and bucket end, the sum of each series' difference of last values across the bucket.

    Also the (bucket end, model) pairs to recount: a series whose value dropped (a reset) or that has no
    value at the bucket's start (a new series).
    """
    step_ms = int(interval.total_seconds() * 1000)
    first_ms = int(chunk[0].value // 1_000_000)
    width = len(chunk) + 1  # boundaries: the first bucket's start, then every bucket's end
    values = np.full((len(series), width), np.nan)
    models = np.empty(len(series), dtype=object)
    for row, item in enumerate(series):
        models[row] = item["metric"][model_label]
        points = item["values"]
        times = np.fromiter((p[0] for p in points), dtype=float, count=len(points))
        columns = np.rint((times * 1000 - first_ms) / step_ms).astype(np.int64)
        values[row, columns] = np.array([p[1] for p in points], dtype=object).astype(float)
    before, after = values[:, :-1], values[:, 1:]
    delta = after - before
    reset = delta < 0
    new = np.isnan(before) & ~np.isnan(after)
    present = ~np.isnan(after)
    ends = chunk + pd.Timedelta(interval)
    codes, names = pd.factorize(models)
    sums = np.zeros((len(names), len(chunk)))
    seen = np.zeros((len(names), len(chunk)), dtype=bool)
    recount = np.zeros((len(names), len(chunk)), dtype=bool)
    np.add.at(sums, codes, np.where(present & ~np.isnan(delta), delta, 0.0))
    np.logical_or.at(seen, codes, present)
    np.logical_or.at(recount, codes, reset | new)
    model_index, bucket_index = np.nonzero(seen)
    frame = pd.DataFrame(
        {C.TIMESTAMP: ends[bucket_index], C.MODEL: names[model_index], "value": sums[model_index, bucket_index]}
    )
    model_index, bucket_index = np.nonzero(recount)
    flagged = pd.DataFrame({C.TIMESTAMP: ends[bucket_index], C.MODEL: names[model_index]})
    return frame, flagged


def _recount(
    api: PrometheusApi,
    counter: promql.Counter,
    preset: promql.Preset,
    frame: pd.DataFrame,
    flagged: pd.DataFrame,
    *,
    interval: timedelta,
    lookback: timedelta,
) -> pd.DataFrame:
    """Recount flagged buckets from the raw samples (see :func:`promql.exact_increase`)."""
    interval_ms = int(interval.total_seconds() * 1000)
    lookback_ms = int(lookback.total_seconds() * 1000)
    exact = frame.set_index([C.TIMESTAMP, C.MODEL])["value"].copy()
    log.info("%s: %s buckets with a reset or a new series, recounted from raw samples", api.name, len(flagged))
    for model, stamp in zip(flagged[C.MODEL], flagged[C.TIMESTAMP], strict=True):
        end_ms = int(stamp.value // 1_000_000)  # the frame holds bucket ends until _finish
        window = promql.duration(interval + lookback)
        selector = promql.model_selector(counter, model_label=preset.model_label, model=model)
        created_selector = promql.model_selector(counter.created, model_label=preset.model_label, model=model)
        born = {
            _identity(labels): (times, values)
            for labels, times, values in api.raw(f"{created_selector}[{window}]", at_ms=end_ms)
        }
        total = 0.0
        start_ms = end_ms - interval_ms
        for labels, times, values in api.raw(f"{selector}[{window}]", at_ms=end_ms):
            seen_before = bool(np.any((times >= start_ms - lookback_ms) & (times <= start_ms)))
            known = seen_before or api.target_known(labels, at_ms=end_ms, interval=interval, lookback=lookback)
            total += float(
                promql.exact_increase(
                    times,
                    values,
                    bucket_ends_ms=[end_ms],
                    interval_ms=interval_ms,
                    lookback_ms=lookback_ms,
                    target_known=[known],
                    created=_created_at(times, born.get(_identity(labels))),
                )[0]
            )
        exact.loc[(stamp, model)] = total
    return exact.reset_index()


def _identity(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def _created_at(times: np.ndarray, born: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    """The creation time in force at each sample time (the last ``_created`` sample at or before it)."""
    if born is None:
        return None
    born_times, born_values = born
    index = np.searchsorted(born_times, times, side="right") - 1
    return np.where(index >= 0, born_values[np.clip(index, 0, None)], np.nan)


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
    return _finish(frame, plan, interval)


def _finish(frame: pd.DataFrame, plan: _Plan, interval: timedelta) -> pd.DataFrame:
    """Bucket starts instead of ends, resumed models from their last bucket, and the optional columns."""
    frame[C.TIMESTAMP] = frame[C.TIMESTAMP] - pd.Timedelta(interval)
    if plan.keep_from:
        since = frame[C.MODEL].map(plan.keep_from)
        frame = frame[since.isna() | (frame[C.TIMESTAMP] >= since)]
    frame = frame.assign(**{C.P50_MS: np.nan, C.P99_MS: np.nan})
    columns = [C.TIMESTAMP, C.MODEL, C.REQUESTS, C.P50_MS, C.P99_MS, C.COLD_STARTS]
    return frame[columns].sort_values([C.MODEL, C.TIMESTAMP], kind="stable").reset_index(drop=True)
