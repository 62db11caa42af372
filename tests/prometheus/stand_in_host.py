"""A stand-in for ``prewarm serve``'s request and cold-start counters, until the host exports them.

It exposes exactly the metric names and labels of the host's contract
(``prewarm_inference_requests_total{model,version,outcome}``, ``prewarm_cold_starts_total{model,version,kind}``)
and counts them the way the host does: a request to a model that is not loaded is refused (503) and counted
as a ``not_ready`` cold start; one served within ``--cold-window`` seconds of the model's load counts as
``after_load``. Run: ``python -m tests.prometheus.stand_in_host --port P``.
"""

from __future__ import annotations

import argparse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest


def serve(port: int, cold_window: float) -> None:
    """Serve until killed."""
    registry = CollectorRegistry()
    requests = Counter(
        "prewarm_inference_requests",
        "Inference requests by outcome.",
        ["model", "version", "outcome"],
        registry=registry,
    )
    cold = Counter(
        "prewarm_cold_starts",
        "Requests that met a cold model.",
        ["model", "version", "kind"],
        registry=registry,
    )
    loaded: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path != "/metrics":
                return self._answer(404, b'{"error": "not found"}')
            self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)

        def do_POST(self) -> None:  # noqa: N802
            parts = self.path.strip("/").split("/")
            if parts[:3] == ["v2", "repository", "models"] and parts[-1] == "load":
                loaded[parts[3]] = time.monotonic()
                return self._answer(200, b"{}")
            if parts[:2] == ["v2", "models"] and parts[-1] == "infer":
                model = parts[2]
                if model not in loaded:
                    requests.labels(model=model, version="1", outcome="503").inc()
                    cold.labels(model=model, version="1", kind="not_ready").inc()
                    return self._answer(503, b'{"error": "model is not ready"}')
                requests.labels(model=model, version="1", outcome="200").inc()
                if time.monotonic() - loaded[model] <= cold_window:
                    cold.labels(model=model, version="1", kind="after_load").inc()
                return self._answer(200, b'{"outputs": []}')
            self._answer(404, b'{"error": "not found"}')

        def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cold-window", type=float, default=2.0)
    options = parser.parse_args()
    serve(options.port, options.cold_window)
