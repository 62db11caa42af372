"""``prewarm ingest prometheus+http://...`` against a real Prometheus scraping a host every second.

One scenario (about 45 s) runs once for the module: known requests per model in 10 s buckets, refused
requests to a model that is not loaded, requests just after a load, and a host restart (every counter
resets) in the middle of a bucket. The ingests must store exactly those counts and cold starts.
"""

from __future__ import annotations

import math
import sys
import time
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

INTERVAL = 10  # seconds: PREWARM_FORECAST_INTERVAL=PT10S
COLD_WINDOW = 2.0
Expected = dict[tuple[str, int], tuple[float, int]]  # (model, bucket index) -> (requests, cold starts)

# What the scenario sends, bucket by bucket; the restart happens in bucket 1 between the two halves.
EXPECTED: Expected = {
    ("alpha", 0): (5, 3), ("beta", 0): (2, 2),
    ("alpha", 1): (8, 3), ("beta", 1): (1, 1),
    ("alpha", 2): (3, 0), ("beta", 2): (2, 2), ("gamma", 2): (1, 1),
    ("alpha", 3): (0, 0), ("beta", 3): (1, 1), ("gamma", 3): (0, 0),
}  # fmt: skip


@dataclass(frozen=True)
class Fleet:
    """The running servers and when the scenario's first bucket started."""

    prometheus: PrometheusServer
    t0: int

    def stamp(self, bucket: int) -> str:
        """ISO-8601 start of bucket ``bucket``."""
        return datetime.fromtimestamp(self.t0 + bucket * INTERVAL, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )


class Host:
    """The host process; restartable on the same port (its counters start again from zero)."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder, self.process = free_port(), folder, None
        self.start()

    def start(self) -> None:
        args = [
            sys.executable,
            "-m",
            "tests.prometheus.stand_in_host",
            f"--port={self.port}",
            f"--cold-window={COLD_WINDOW}",
        ]
        self.process = Background("host", args, env=_env(), log_dir=self.folder)
        wait_until(
            http_ok(f"http://127.0.0.1:{self.port}/metrics"), timeout=20, interval=0.1, what="the host"
        )

    def restart(self) -> None:
        assert self.process is not None
        self.process.stop()
        self.start()

    def load(self, model: str) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/v2/repository/models/{model}/load").raise_for_status()

    def infer(self, model: str, times: int) -> None:
        for _ in range(times):
            httpx.post(f"http://127.0.0.1:{self.port}/v2/models/{model}/infer", json={"inputs": []})


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


# (seconds after the first bucket starts, action, model, requests)
TIMELINE = [
    (1.0, "load", "alpha", 0),
    (1.5, "infer", "alpha", 3),  # just after the load: 3 after_load cold starts
    (2.0, "infer", "beta", 2),  # not loaded: refused, 2 not_ready cold starts
    (5.0, "infer", "alpha", 2),
    (11.5, "infer", "alpha", 5),
    (12.0, "load", "beta", 0),
    (12.5, "infer", "beta", 1),  # after_load
    (14.0, "restart", "", 0),  # every counter starts again from zero, nothing is loaded
    (16.0, "infer", "alpha", 2),  # refused: not_ready
    (16.5, "load", "alpha", 0),
    (17.0, "infer", "alpha", 1),  # after_load
    (21.5, "infer", "alpha", 3),
    (22.0, "infer", "beta", 2),  # refused again: the same value (2) as before the restart
    (22.5, "load", "gamma", 0),
    (23.0, "infer", "gamma", 1),  # a model first seen here
    (31.5, "infer", "beta", 1),
]


def _run_scenario(host: Host, t0: int) -> None:
    for offset, action, model, requests in TIMELINE:
        time.sleep(max(0.0, t0 + offset - time.time()))
        if action == "load":
            host.load(model)
        elif action == "infer":
            host.infer(model, requests)
        else:
            host.restart()
    time.sleep(max(0.0, t0 + 4 * INTERVAL + 2.0 - time.time()))  # the last bucket is scraped


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
        wait_until(
            http_ok(f"http://127.0.0.1:{odd_port}/metrics"), timeout=20, interval=0.1, what="the exporter"
        )
        server = PrometheusServer(
            folder, jobs={"host": [f"127.0.0.1:{host.port}"], "odd": [f"127.0.0.1:{odd_port}"]}
        )
        wait_until(
            lambda: server.scraped("host") and server.scraped("odd"), timeout=20, interval=0.2, what="scrapes"
        )
        t0 = math.ceil((time.time() + 0.5) / INTERVAL) * INTERVAL
        _run_scenario(host, t0)
        yield Fleet(prometheus=server, t0=t0)
    finally:
        if server is not None:
            server.stop()
        odd.stop()
        assert host.process is not None
        host.process.stop()


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
    result = cli(
        "ingest",
        configured.prometheus.url,
        "--preset",
        "prewarm",
        "--start",
        configured.stamp(0),
        "--end",
        configured.stamp(4),
    )
    assert result.exit_code == 0, result.output
    assert stored(engine, configured) == EXPECTED


def test_resume_reads_from_each_models_last_bucket_and_reingest_overwrites(
    cli, engine: Engine, configured: Fleet
) -> None:  # type: ignore[no-untyped-def]
    url = configured.prometheus.url
    first = cli(
        "ingest", url, "--preset", "prewarm", "--start", configured.stamp(0), "--end", configured.stamp(2)
    )
    assert first.exit_code == 0, first.output
    assert stored(engine, configured) == {k: v for k, v in EXPECTED.items() if k[1] < 2}
    with engine.begin() as connection:  # a bucket whose stored value is wrong must be read again
        connection.execute(
            text("UPDATE telemetry SET requests = 999, cold_starts = 999 WHERE model = 'alpha'")
        )
    resumed = cli("ingest", url, "--preset", "prewarm")
    assert resumed.exit_code == 0, resumed.output
    now = stored(engine, configured)
    assert {k: v for k, v in now.items() if k[1] < 4 and k != ("alpha", 0)} == {
        k: v for k, v in EXPECTED.items() if k != ("alpha", 0)
    }
    assert now[("alpha", 0)] == (999, 999), "resuming starts at the last stored bucket, not before"
    assert all(v == (0, 0) for k, v in now.items() if k[1] >= 4), "after the scenario nothing was counted"
    again = cli(
        "ingest", url, "--preset", "prewarm", "--start", configured.stamp(0), "--end", configured.stamp(4)
    )
    assert again.exit_code == 0, again.output
    assert {k: v for k, v in stored(engine, configured).items() if k[1] < 4} == EXPECTED


def test_custom_query_stores_its_values(cli, engine: Engine, configured: Fleet) -> None:  # type: ignore[no-untyped-def]
    query = 'sum by (model) (last_over_time(prewarm_inference_requests_total{outcome="503"}[$interval]))'
    result = cli(
        "ingest",
        configured.prometheus.url,
        "--query",
        query,
        "--start",
        configured.stamp(2),
        "--end",
        configured.stamp(3),
    )
    assert result.exit_code == 0, result.output
    # The last value of each model's 503 counter in bucket 2: alpha 2 (since the restart), beta 2.
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
