"""Regenerate examples/telemetry.csv: four weeks of hourly requests for the example fleet (seeded)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prewarm.synthetic import synthetic_telemetry

MODELS = ["chat-small", "embedder", "reranker", "ocr-longtail"]  # the last one is the sparse long tail
START = datetime(2026, 10, 26, tzinfo=UTC)  # a Monday
WEEKS = 4


def main() -> None:
    frame = synthetic_telemetry(len(MODELS), WEEKS * 168, seed=7, start=START, sparse_fraction=0.25, names=MODELS)
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame["requests"] = frame["requests"].astype(int)
    out = Path(__file__).with_name("telemetry.csv")
    frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} rows to {out}")


if __name__ == "__main__":
    main()
