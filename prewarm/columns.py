"""Column names of the long telemetry and forecast frames, shared by every package."""

from __future__ import annotations

TIMESTAMP = "timestamp"
MODEL = "model"
REQUESTS = "requests"
P50_MS = "p50_ms"
P99_MS = "p99_ms"
COLD_STARTS = "cold_starts"  # requests that met a cold model (Prometheus sources only)

YHAT = "yhat"
LO = "lo"
HI = "hi"

TELEMETRY_REQUIRED = (TIMESTAMP, MODEL, REQUESTS)
TELEMETRY_OPTIONAL = (P50_MS, P99_MS)
FORECAST_COLUMNS = (MODEL, TIMESTAMP, YHAT, LO, HI)
