"""Series that a preset must refuse: a gauge under a counter's name, and a counter without a model label.

Run: ``python -m tests.prometheus.odd_exporter --port P``.
"""

from __future__ import annotations

import argparse
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    registry = CollectorRegistry()
    # vLLM's request counter name, exported as a gauge: its increase is no number of requests.
    Gauge(
        "vllm:request_success_total", "A gauge under a counter's name.", ["model_name"], registry=registry
    ).labels(model_name="m").set(7)
    # MLServer's counter, but without the model label.
    Counter("model_infer_request_success", "No model label.", ["server"], registry=registry).labels(
        server="s"
    ).inc(3)
    start_http_server(port, addr="127.0.0.1", registry=registry)
    while True:
        time.sleep(3600)
