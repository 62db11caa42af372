"""Exporters shaped like Triton, vLLM, MLServer and KServe: their request counters' names, labels and types.

Used to record the Prometheus API answers under data/ (see record_presets.py). Each takes
``POST /add?model=M&n=N[&failed=1]`` to count N requests. Run:
``python -m tests.prometheus.shapes --shape triton --port P``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest


class Triton:
    """Triton's C++ exporter: counters without a _total suffix, labels model and version (and reason)."""

    def __init__(self) -> None:
        self.success: dict[str, float] = defaultdict(float)
        self.failure: dict[str, float] = defaultdict(float)

    def add(self, model: str, n: int, failed: bool) -> None:
        (self.failure if failed else self.success)[model] += n

    def render(self) -> bytes:
        lines = [
            "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes",
            "# TYPE nv_inference_request_success counter",
            *(
                f'nv_inference_request_success{{model="{m}",version="1"}} {v}'
                for m, v in self.success.items()
            ),
            "# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes",
            "# TYPE nv_inference_request_failure counter",
            *(
                f'nv_inference_request_failure{{model="{m}",reason="REJECTED",version="1"}} {v}'
                for m, v in self.failure.items()
            ),
        ]
        return ("\n".join(lines) + "\n").encode()


class ClientLibrary:
    """vLLM, MLServer and KServe count with Python's prometheus_client."""

    def __init__(self, shape: str) -> None:
        self.shape, self.registry = shape, CollectorRegistry()
        if shape == "vllm":
            self.ok = Counter(
                "vllm:request_success",
                "Finished requests.",
                ["model_name", "finished_reason"],
                registry=self.registry,
            )
        elif shape == "mlserver":
            self.ok = Counter(
                "model_infer_request_success",
                "Model infer request success count",
                ["model", "version"],
                registry=self.registry,
            )
            self.bad = Counter(
                "model_infer_request_failure",
                "Model infer request failure count",
                ["model", "version"],
                registry=self.registry,
            )
        else:
            self.hist = Histogram(
                "request_predict_seconds", "predict request latency", ["model_name"], registry=self.registry
            )

    def add(self, model: str, n: int, failed: bool) -> None:
        if self.shape == "vllm":
            self.ok.labels(model_name=model, finished_reason="length" if failed else "stop").inc(n)
        elif self.shape == "mlserver":
            (self.bad if failed else self.ok).labels(model=model, version="").inc(n)
        else:
            for _ in range(n):
                self.hist.labels(model_name=model).observe(0.01)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve(shape: str, port: int) -> None:
    """Serve until killed."""
    exporter = Triton() if shape == "triton" else ClientLibrary(shape)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self._answer(exporter.render())

        def do_POST(self) -> None:  # noqa: N802
            query = parse_qs(urlsplit(self.path).query)
            exporter.add(query["model"][0], int(query["n"][0]), query.get("failed", ["0"])[0] == "1")
            self._answer(b"ok")

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=["triton", "vllm", "mlserver", "kserve"], required=True)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    serve(options.shape, options.port)
