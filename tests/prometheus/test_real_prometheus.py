"""``prewarm ingest prometheus+http://...`` against a real Prometheus scraping a real ``prewarm serve`` every second.

One scenario runs once for the module (about a minute): known requests per model in 10 s buckets, refused
requests to a model that is not loaded, requests just after a load, and a host restart (every counter starts
again from zero; the host is down for a bucket or two, a scrape gap). The ingests must store exactly those
counts and cold starts.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from prewarm.settings import reset_settings
from tests.conftest import free_port
from tests.e2e.processes import Background, http_ok, wait_until
from tests.prewarm.conftest import snapshot
from tests.prometheus.servers import PASSWORD, USERNAME, PrometheusServer
from tests.warmers.conftest import raw_entry, write_fleet
from tests.warmers.test_host import reranker_request

INTERVAL = 10  # seconds: PREWARM_FORECAST_INTERVAL=PT10S
COLD_WINDOW_S = 2  # PREWARM_HOST__COLD_WINDOW_S of the host
MODELS = ("alpha", "beta", "gamma")  # three names for the example fleet's reranker
Expected = dict[
    tuple[str, int], tuple[float, int]
]  # (model, bucket index from t0) -> (requests, cold starts)


@dataclass(frozen=True)
class Fleet:
    """The running servers, when the scenario's first bucket started, and what the ingest must store."""

    prometheus: PrometheusServer
    t0: int
    expected: Expected
    last: int  # the scenario's last bucket

    def stamp(self, bucket: int) -> str:
        """ISO-8601 start of bucket ``bucket``."""
        return datetime.fromtimestamp(self.t0 + bucket * INTERVAL, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )


class Host:
    """``prewarm serve --no-preload`` on a fleet of three models; restartable on the same port."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder, self.process = free_port(), folder, None
        self.fleet = write_fleet(folder / "fleet", [raw_entry("reranker", name=name) for name in MODELS])
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [str(Path(sys.executable).parent / "prewarm"), "serve", "--port", str(self.port),
                "--fleet", str(self.fleet), "--no-preload", "--cpu-threads", "1"]  # fmt: skip
        env = {
            **os.environ,
            "PREWARM_HOME": str(self.folder / "home"),
            "PREWARM_HOST__COLD_WINDOW_S": str(COLD_WINDOW_S),
        }
        self.process = Background("host", args, env=env, log_dir=self.folder)
        wait_until(http_ok(f"{self.url}/metrics"), timeout=120, interval=0.2, what="prewarm serve",
                   on_timeout=self.process.log_tail)  # fmt: skip

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def load(self, model: str) -> None:
        httpx.post(f"{self.url}/v2/repository/models/{model}/load", json={}, timeout=60).raise_for_status()

    def infer(self, model: str, times: int, *, status: int) -> None:
        for _ in range(times):
            answer = httpx.post(f"{self.url}/v2/models/{model}/infer", json=reranker_request(), timeout=30)
            assert answer.status_code == status, answer.text


class Scenario:
    """Runs steps inside buckets, away from their edges, and books what each bucket must hold."""

    def __init__(self, host: Host, t0: int) -> None:
        self.host, self.t0 = host, t0
        self.expected: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])

    def bucket_of(self, moment: float) -> int:
        return int((moment - self.t0) // INTERVAL)

    def enter(self, bucket: int) -> int:
        """Wait for 1 s into ``bucket`` (or the next one, if that is too late to finish in it)."""
        bucket = max(bucket, self.bucket_of(time.time() + 1.0))
        if self.t0 + (bucket + 1) * INTERVAL - time.time() < 5.0:
            bucket += 1
        time.sleep(max(0.0, self.t0 + bucket * INTERVAL + 1.0 - time.time()))
        return bucket

    def book(self, bucket: int, model: str, requests: int, cold: int) -> None:
        # Every bucket a model's series exist in gets a row, 0 where nothing happened.
        self.expected[(model, bucket)][0] += requests
        self.expected[(model, bucket)][1] += cold

    def leave(self, bucket: int) -> None:
        """The steps must end 1.5 s before the bucket does: the next scrape still falls in it."""
        left = self.t0 + (bucket + 1) * INTERVAL - time.time()
        assert left > 1.5, (
            f"the steps of bucket {bucket} ended {left:.1f} s before its end; the machine is too slow"
        )


def _run_scenario(host: Host, t0: int) -> tuple[Expected, int]:
    run = Scenario(host, t0)
    a = run.enter(0)
    host.load("alpha")
    host.infer("alpha", 3, status=200)  # just after the load: after_load cold starts
    host.infer("beta", 2, status=503)  # not loaded: refused, not_ready cold starts
    run.leave(a)
    run.book(a, "alpha", 3, 3)
    run.book(a, "beta", 2, 2)
    b = run.enter(a + 1)
    host.infer("alpha", 5, status=200)
    host.load("beta")
    host.infer("beta", 1, status=200)  # after_load
    run.leave(b)
    run.book(b, "alpha", 5, 0)
    run.book(b, "beta", 1, 1)
    time.sleep(1.5)  # scraped before the host goes
    host.stop()  # the restart: every counter starts again from zero, nothing is loaded
    host.start()
    c = run.enter(run.bucket_of(time.time()) + 1)
    for gap in range(b + 1, c):  # the host was down or idle: the series still exist, with nothing counted
        run.book(gap, "alpha", 0, 0)
        run.book(gap, "beta", 0, 0)
    host.infer("alpha", 2, status=503)  # refused: not_ready
    host.load("alpha")
    host.infer("alpha", 1, status=200)  # after_load
    host.infer("beta", 2, status=503)  # refused again: the same value (2) as before the restart
    host.load("gamma")
    host.infer("gamma", 1, status=200)  # a model first seen here
    run.leave(c)
    run.book(c, "alpha", 3, 3)
    run.book(c, "beta", 2, 2)
    run.book(c, "gamma", 1, 1)
    d = run.enter(c + 1)
    host.infer("beta", 1, status=503)
    run.leave(d)
    run.book(d, "alpha", 0, 0)
    run.book(d, "beta", 1, 1)
    run.book(d, "gamma", 0, 0)
    time.sleep(max(0.0, t0 + (d + 1) * INTERVAL + 2.0 - time.time()))  # the last bucket is scraped
    return {key: (float(r), int(cold)) for key, (r, cold) in run.expected.items()}, d


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("prometheus")
    host = Host(folder)
    odd_port = free_port()
    odd = Background(
        "odd",
        [sys.executable, "-m", "tests.prometheus.odd_exporter", f"--port={odd_port}"],
        env=_env(),
        log_dir=folder,
    )
    server = None
    try:
        jobs = {"host": [f"127.0.0.1:{host.port}"], "odd": [f"127.0.0.1:{odd_port}"]}
        server = PrometheusServer(folder, jobs=jobs)  # it waits for the host, which starts meanwhile
        host.start()
        wait_until(
            http_ok(f"http://127.0.0.1:{odd_port}/metrics"), timeout=20, interval=0.1, what="the exporter"
        )
        wait_until(
            lambda: server.scraped("host") and server.scraped("odd"), timeout=20, interval=0.2, what="scrapes"
        )
        t0 = math.ceil((time.time() + 0.5) / INTERVAL) * INTERVAL
        expected, last = _run_scenario(host, t0)
        yield Fleet(prometheus=server, t0=t0, expected=expected, last=last)
    finally:
        if server is not None:
            server.stop()
        odd.stop()
        host.stop()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


@pytest.fixture
def configured(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    monkeypatch.setenv("PREWARM_FORECAST_INTERVAL", f"PT{INTERVAL}S")
    monkeypatch.setenv("PREWARM_PROMETHEUS__USERNAME", USERNAME)
    monkeypatch.setenv("PREWARM_PROMETHEUS__PASSWORD", PASSWORD)
    reset_settings()
    return fleet


def stored(engine: Engine, fleet: Fleet) -> Expected:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT model, bucket_start, requests, cold_starts FROM telemetry"))
        out = {}
        for model, start, requests, cold in rows:
            start = start if isinstance(start, datetime) else datetime.fromisoformat(start)
            epoch = (
                start.replace(tzinfo=timezone.utc).timestamp() if start.tzinfo is None else start.timestamp()
            )
            out[(model, int(round(epoch - fleet.t0)) // INTERVAL)] = (requests, cold)
    return out


def test_ingest_stores_exact_counts_and_cold_starts(cli, engine: Engine, configured: Fleet) -> None:  # type: ignore[no-untyped-def]
    end = configured.stamp(configured.last + 1)
    result = cli(
        "ingest",
        configured.prometheus.url,
        "--preset",
        "prewarm",
        "--start",
        configured.stamp(0),
        "--end",
        end,
    )
    assert result.exit_code == 0, result.output
    assert stored(engine, configured) == configured.expected


def test_resume_reads_from_each_models_last_bucket_and_reingest_overwrites(  # type: ignore[no-untyped-def]
    cli, engine: Engine, configured: Fleet
) -> None:
    url, expected = configured.prometheus.url, configured.expected
    first = min(bucket for _, bucket in expected)
    ingested = cli(
        "ingest",
        url,
        "--preset",
        "prewarm",
        "--start",
        configured.stamp(0),
        "--end",
        configured.stamp(first + 2),
    )
    assert ingested.exit_code == 0, ingested.output
    assert stored(engine, configured) == {k: v for k, v in expected.items() if k[1] <= first + 1}
    with (
        engine.begin() as connection
    ):  # wrong values: the last stored bucket must be read again, no earlier one
        connection.execute(
            text("UPDATE telemetry SET requests = 999, cold_starts = 999 WHERE model = 'alpha'")
        )
    resumed = cli("ingest", url, "--preset", "prewarm")
    assert resumed.exit_code == 0, resumed.output
    now = stored(engine, configured)
    assert now[("alpha", first)] == (999, 999), "resuming starts at the last stored bucket, not before"
    assert {k: v for k, v in now.items() if k[1] <= configured.last and k != ("alpha", first)} == {
        k: v for k, v in expected.items() if k != ("alpha", first)
    }
    assert all(v == (0, 0) for k, v in now.items() if k[1] > configured.last), (
        "nothing was counted afterwards"
    )
    end = configured.stamp(configured.last + 1)
    again = cli("ingest", url, "--preset", "prewarm", "--start", configured.stamp(0), "--end", end)
    assert again.exit_code == 0, again.output
    assert {k: v for k, v in stored(engine, configured).items() if k[1] <= configured.last} == expected


def test_custom_query_stores_its_values(cli, engine: Engine, configured: Fleet) -> None:  # type: ignore[no-untyped-def]
    query = 'sum by (model) (last_over_time(prewarm_inference_requests_total{outcome="503"}[$interval]))'
    after_restart = min(bucket for model, bucket in configured.expected if model == "gamma")
    start, end = configured.stamp(after_restart), configured.stamp(after_restart + 1)
    result = cli("ingest", configured.prometheus.url, "--query", query, "--start", start, "--end", end)
    assert result.exit_code == 0, result.output
    # The last value of each model's 503 counter in that bucket: alpha 2 (since the restart), beta 2.
    assert {k[0]: v[0] for k, v in stored(engine, configured).items()} == {"alpha": 2.0, "beta": 2.0}


BAD_INPUTS = {
    "unreachable": (["prometheus+http://127.0.0.1:{free}", "--preset", "prewarm", "--since", "1h"], "cannot connect"),
    "invalid PromQL": (["{url}", "--query", "sum(rate(x[5m])", "--since", "1h"], r"Prometheus rejected 'sum\(rate\(x\[5m\]\)': .*parse error"),
    "no series": (["{url}", "--preset", "triton", "--since", "1h"], "no series match nv_inference_request_success"),
    "no model label": (["{url}", "--preset", "mlserver", "--since", "1h"], r"has no 'model' label"),
    "query without model label": (["{url}", "--query", "sum(prewarm_inference_requests_total)", "--since", "1h"], r"without the 'model' label"),
    "several series per model": (["{url}", "--query", "prewarm_inference_requests_total", "--since", "1h"], "one series per model"),
    "gauge": (["{url}", "--preset", "vllm", "--since", "1h"], r"vllm:request_success_total is a gauge"),
    "range over the limits": (["{url}", "--preset", "prewarm", "--since", "400d"], r"3,456,0\d\d buckets .* at most 1,000,000"),
    "no preset": (["{url}", "--since", "1h"], "give exactly one of --preset"),
    "unknown preset": (["{url}", "--preset", "tritonn", "--since", "1h"], "unknown preset 'tritonn'"),
    "wrong password": (["{url}", "--preset", "prewarm", "--since", "1h", "!password"], "401 Unauthorized"),
}  # fmt: skip


@pytest.fixture
def sqlite_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A SQLite history: the bad inputs never reach the database, so one backend is enough."""
    from db.migrate import upgrade
    from db.session import get_engine, make_engine

    url = f"sqlite:///{tmp_path / 'history.db'}"
    monkeypatch.setenv("PREWARM_DATABASE_URL", url)
    reset_settings()
    get_engine.cache_clear()
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
    get_engine.cache_clear()


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(  # type: ignore[no-untyped-def]
    case: str, cli, sqlite_engine: Engine, configured: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sqlite_engine
    seed = tmp_path / "seed.csv"
    seed.write_text("timestamp,model,requests\n2026-01-01T00:00:00Z,alpha,3\n")
    assert cli("ingest", str(seed)).exit_code == 0
    before = snapshot(engine, "telemetry")
    args, message = BAD_INPUTS[case]
    if "!password" in args:
        args = [a for a in args if a != "!password"]
        monkeypatch.setenv("PREWARM_PROMETHEUS__PASSWORD", "wrong")
        reset_settings()
    args = [a.format(url=configured.prometheus.url, free=free_port()) for a in args]
    result = cli("ingest", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert __import__("re").search(message, lines[0]), lines[0]
    assert snapshot(engine, "telemetry") == before
