"""Record the Prometheus API answers the preset tests replay (tests/prometheus/data/<preset>.json).

Starts exporters shaped like Triton, vLLM, MLServer and KServe (shapes.py) and a real Prometheus scraping
them every second, counts known requests per model in three 10 s buckets, then ingests each preset through
a recording proxy. Each file holds the calls and answers, the range read, and the counts that were sent.
Run from the repository root: ``python -m tests.prometheus.record_presets`` (about 45 s).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from prewarm.prometheus import PrometheusOptions, read_prometheus
from prewarm.settings import PrometheusSettings
from tests.conftest import free_port
from tests.e2e.processes import Background, http_ok, wait_until
from tests.prometheus.replay import recording
from tests.prometheus.servers import PrometheusServer

DATA = Path(__file__).parent / "data"
INTERVAL = 10
SHAPES = ("triton", "vllm", "mlserver", "kserve")
# (bucket, model, requests, failed?): failures are requests too.
SENT = [
    (0, "resnet50", 3, False), (0, "bert-base", 1, True),
    (1, "resnet50", 2, False), (1, "bert-base", 4, False), (1, "bert-base", 1, True),
    (2, "bert-base", 1, True),
]  # fmt: skip


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="prewarm-record-"))
    ports = {shape: free_port() for shape in SHAPES}
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    exporters = [
        Background(
            shape,
            [sys.executable, "-m", "tests.prometheus.shapes", f"--shape={shape}", f"--port={port}"],
            env=env,
            log_dir=folder,
        )
        for shape, port in ports.items()
    ]
    server = None
    try:
        for port in ports.values():
            wait_until(
                http_ok(f"http://127.0.0.1:{port}/metrics"), timeout=20, interval=0.1, what="an exporter"
            )
        server = PrometheusServer(folder, jobs={s: [f"127.0.0.1:{p}"] for s, p in ports.items()}, auth=False)
        wait_until(lambda: all(server.scraped(s) for s in SHAPES), timeout=20, interval=0.2, what="scrapes")
        t0 = math.ceil((time.time() + 0.5) / INTERVAL) * INTERVAL
        for bucket, model, n, failed in SENT:
            time.sleep(max(0.0, t0 + bucket * INTERVAL + 2 - time.time()))
            for port in ports.values():
                httpx.post(
                    f"http://127.0.0.1:{port}/add", params={"model": model, "n": n, "failed": int(failed)}
                )
        time.sleep(max(0.0, t0 + 3 * INTERVAL + 2 - time.time()))
        start = datetime.fromtimestamp(t0, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        end = datetime.fromtimestamp(t0 + 3 * INTERVAL, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        expected: dict[str, float] = {}
        for bucket, model, n, _ in SENT:
            key = f"{datetime.fromtimestamp(t0 + bucket * INTERVAL, timezone.utc):%Y-%m-%dT%H:%M:%SZ} {model}"
            expected[key] = expected.get(key, 0) + n
        for shape in SHAPES:
            calls: dict[str, dict] = {}
            with recording(server.http_url, calls) as url:
                frame = read_prometheus(
                    url,
                    options=PrometheusOptions(preset=shape, start=start, end=end),
                    interval=timedelta(seconds=INTERVAL),
                    settings=PrometheusSettings(),
                    last_stored={},
                )
            print(shape, frame.to_dict("records"))
            record = {
                "preset": shape,
                "start": start,
                "end": end,
                "interval_s": INTERVAL,
                "prometheus": "2.42.0 (Debian 12)",
                "sent": expected,
                "calls": calls,
            }
            (DATA / f"{shape}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    finally:
        if server is not None:
            server.stop()
        for exporter in exporters:
            exporter.stop()


if __name__ == "__main__":
    main()
