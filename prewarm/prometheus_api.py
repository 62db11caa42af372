"""A small client of Prometheus's HTTP API (``/api/v1``): the calls the telemetry source needs, and its errors.

Errors come back from the API as ``{"status": "error", "errorType": ..., "error": ...}``; they become one
line naming the server, with the server's own message quoted. A server that cannot be reached (or answers
5xx) raises :class:`~prewarm.errors.PrometheusUnavailable`; everything the user can fix raises
:class:`~prewarm.errors.PrometheusQueryError`.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import pandas as pd

from prewarm import promql
from prewarm.errors import PrometheusQueryError, PrometheusUnavailable
from prewarm.settings import PrometheusSettings

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 256 * 2**20
_MATRIX_PREFIX = b'{"status":"success","data":{"resultType":"matrix","result":['
# One series of a matrix answer. Inside JSON strings every quote is escaped, so neither '},"values":[' nor
# ']]}' can occur in a label value; the values hold only numbers, quotes, commas and brackets.
_SERIES = re.compile(rb'\{"metric":(\{.*?\}),"values":\[\[(.*?)\]\]\}', re.S)
_NUMBERS = bytes.maketrans(b'[]"', b"   ")


def _parse_matrix(body: bytes) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]] | None:
    """Series of a matrix answer as arrays; None when the body is not shaped as expected (then JSON decides)."""
    out = []
    for match in _SERIES.finditer(body):
        numbers = np.fromstring(match.group(2).translate(_NUMBERS).decode(), sep=",")
        if len(numbers) % 2 or len(numbers) != match.group(2).count(b",") + 1:
            return None
        out.append((json.loads(match.group(1)), numbers[0::2], numbers[1::2]))
    if len(out) != body.count(b'{"metric":'):
        return None
    return out


def _stamp(value: datetime | pd.Timestamp) -> str:
    return f"{pd.Timestamp(value).timestamp():.3f}"


class PrometheusApi:
    """One server's API over one HTTP connection pool; use as a context manager."""

    def __init__(self, base_url: str, *, name: str, settings: PrometheusSettings) -> None:
        self.name = name
        headers = {"Accept": "application/json", "User-Agent": "prewarm"}
        auth: httpx.Auth | None = None
        if settings.token is not None:
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        elif settings.username is not None:
            password = settings.password.get_secret_value() if settings.password is not None else ""
            auth = httpx.BasicAuth(settings.username, password)
        self._timeout = settings.timeout_s
        self._client = httpx.Client(base_url=base_url, headers=headers, auth=auth, timeout=settings.timeout_s)

    def __enter__(self) -> PrometheusApi:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._client.close()

    # -- the calls -----------------------------------------------------------------------------------

    def query_range(
        self, expression: str, buckets: pd.DatetimeIndex, interval: timedelta, *, from_start: bool = False
    ) -> list[dict[str, Any]]:
        """Evaluate ``expression`` at the end of every bucket in ``buckets`` (step = ``interval``).

        With ``from_start``, also at the first bucket's start.
        """
        step = pd.Timedelta(interval)
        data = self._call(
            "/api/v1/query_range",
            {
                "query": expression,
                "start": _stamp(buckets[0] if from_start else buckets[0] + step),
                "end": _stamp(buckets[-1] + step),
                "step": f"{interval.total_seconds():g}",
            },
            query=expression,
        )
        return self._result(data, "matrix", expression)

    def matrix(
        self, expression: str, buckets: pd.DatetimeIndex, interval: timedelta, *, from_start: bool = False
    ) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
        """Like :meth:`query_range`, as (labels, times in s, values) per series, parsed without a Python object
        per point: the answers of the big queries hold hundreds of thousands of points."""
        step = pd.Timedelta(interval)
        params = {
            "query": expression,
            "start": _stamp(buckets[0] if from_start else buckets[0] + step),
            "end": _stamp(buckets[-1] + step),
            "step": f"{interval.total_seconds():g}",
        }
        response, body = self._fetch("/api/v1/query_range", params)
        if response.status_code == 200 and body.startswith(_MATRIX_PREFIX):
            parsed = _parse_matrix(body)
            if parsed is not None:
                return parsed
        data = self._payload(response, body, expression)
        return [
            (
                s["metric"],
                np.array([float(p[0]) for p in s["values"]]),
                np.array([float(p[1]) for p in s["values"]]),
            )
            for s in self._result(data, "matrix", expression)
        ]

    def instant(self, expression: str, *, at: datetime) -> list[dict[str, Any]]:
        """Evaluate ``expression`` at one instant (an instant vector)."""
        data = self._call("/api/v1/query", {"query": expression, "time": _stamp(at)}, query=expression)
        return self._result(data, "vector", expression)

    def raw(self, expression: str, *, at_ms: int) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
        """The raw samples of a range selector at ``at_ms``: (labels, times in ms, values) per series."""
        data = self._call(
            "/api/v1/query", {"query": expression, "time": f"{at_ms / 1000:.3f}"}, query=expression
        )
        out = []
        for series in self._result(data, "matrix", expression):
            points = series["values"]
            times = np.array([round(float(p[0]) * 1000) for p in points], dtype=np.int64)
            values = np.array([float(p[1]) for p in points])
            out.append((series["metric"], times, values))
        return out

    def target_known(
        self, labels: dict[str, str], *, at_ms: int, interval: timedelta, lookback: timedelta
    ) -> bool:
        """Whether the series' target (job, instance) was scraped in the lookback before the bucket ending at ``at_ms``."""
        matchers = ",".join(f"{key}={promql.quote(labels.get(key, ''))}" for key in ("job", "instance"))
        expression = f"count_over_time(up{{{matchers}}}[{promql.duration(lookback)}] offset {promql.duration(interval)})"
        data = self._call(
            "/api/v1/query", {"query": expression, "time": f"{at_ms / 1000:.3f}"}, query=expression
        )
        return bool(self._result(data, "vector", expression))

    def series(
        self, selector: str, *, start: datetime, end: datetime, model_label: str
    ) -> list[dict[str, str]]:
        """The label sets of the series ``selector`` matches in the range; each must carry the model label."""
        data = self._call(
            "/api/v1/series",
            {"match[]": selector, "start": _stamp(start), "end": _stamp(end)},
            query=selector,
        )
        for labels in data:
            model = labels.get(model_label)
            if not model:
                shown = ", ".join(f'{k}="{v}"' for k, v in labels.items())
                raise PrometheusQueryError(
                    f"{self.name}: series {{{shown}}} has no {model_label!r} label, so its requests cannot be given "
                    f"to a model; relabel it in Prometheus, or give a --query that returns one series per model"
                )
        return list(data)

    def check_counter(self, metric: str) -> None:
        """Refuse a metric whose metadata says it is a gauge (when the server has metadata for it)."""
        for name in dict.fromkeys((metric, metric.removesuffix("_total"), metric.removesuffix("_count"))):
            data = self._call("/api/v1/metadata", {"metric": name}, query=name, method="GET")
            kinds = (
                {entry.get("type", "") for entry in data.get(name, [])} if isinstance(data, dict) else set()
            )
            if "gauge" in kinds and not kinds & {"counter", "histogram", "summary"}:
                raise PrometheusQueryError(
                    f"{self.name}: {metric} is a gauge, but request counts need a counter (a gauge's increase is "
                    "not a number of requests); pick the server's request counter or another --preset"
                )
            if kinds:
                return

    # -- plumbing ------------------------------------------------------------------------------------

    def _call(self, path: str, params: dict[str, str], *, query: str, method: str = "POST") -> Any:
        response, body = self._fetch(path, params, method=method)
        return self._payload(response, body, query)

    def _fetch(
        self, path: str, params: dict[str, str], *, method: str = "POST"
    ) -> tuple[httpx.Response, bytes]:
        try:
            with self._client.stream(
                method,
                path,
                data=params if method == "POST" else None,
                params=params if method == "GET" else None,
            ) as response:
                body = self._read(response)
        except httpx.TimeoutException as exc:
            raise PrometheusUnavailable(
                f"{self.name}: no answer within {self._timeout:g} s ({type(exc).__name__}); the server is slow or the "
                "range too long: narrow it, or raise PREWARM_PROMETHEUS__TIMEOUT_S"
            ) from exc
        except httpx.TransportError as exc:
            raise PrometheusUnavailable(
                f"{self.name}: cannot connect ({exc or type(exc).__name__}); check the host and port, and that "
                "Prometheus is running"
            ) from exc
        return response, body

    def _read(self, response: httpx.Response) -> bytes:
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise PrometheusQueryError(
                    f"{self.name}: an answer exceeded {MAX_RESPONSE_BYTES // 2**20} MiB; narrow the range or the query"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _payload(self, response: httpx.Response, body: bytes, query: str) -> Any:
        status = response.status_code
        if status in (401, 403):
            raise PrometheusQueryError(
                f"{self.name}: the server answered {status} {response.reason_phrase}; set PREWARM_PROMETHEUS__TOKEN, "
                "or PREWARM_PROMETHEUS__USERNAME and PREWARM_PROMETHEUS__PASSWORD, to credentials it accepts"
            )
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or "status" not in payload:
            what = f"HTTP {status} {response.reason_phrase}"
            if status >= 500:
                raise PrometheusUnavailable(f"{self.name}: the server answered {what}; try again later")
            raise PrometheusQueryError(
                f"{self.name}: answered {what} without a Prometheus API body at {response.request.url.path}; "
                "check the URL's path prefix"
            )
        if payload["status"] == "success":
            for warning in payload.get("warnings", []) or []:
                log.warning("%s: %s", self.name, warning)
            return payload.get("data")
        error_type, error = payload.get("errorType", ""), payload.get("error", "")
        if error_type == "bad_data":
            raise PrometheusQueryError(f"{self.name}: Prometheus rejected {query!r}: {error}")
        if status >= 500 or error_type in ("unavailable", "internal", "timeout", "canceled"):
            raise PrometheusUnavailable(
                f"{self.name}: Prometheus failed on {query!r} ({error_type}): {error}"
            )
        raise PrometheusQueryError(
            f"{self.name}: Prometheus could not run {query!r} ({error_type}): {error}; narrow the range or the query"
        )

    def _result(self, data: Any, kind: str, query: str) -> list[dict[str, Any]]:
        if not isinstance(data, dict) or data.get("resultType") != kind:
            got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
            raise PrometheusQueryError(
                f"{self.name}: {query!r} gave a {got}, expected a {'range vector' if kind == 'matrix' else 'vector'}"
            )
        return list(data.get("result") or [])
