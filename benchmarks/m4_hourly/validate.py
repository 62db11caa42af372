"""Design-time validation inside the M4 hourly train set: the only place settings were compared.

    .venv/bin/python benchmarks/m4_hourly/validate.py [--windows 3] [--inflation 1.15] [--fast]

For window k = 1..K the last 48 * k training values are cut off; the 48 after the cut are the target,
everything before is history. The test set is never read. The figures in docs/forecasting.md
(candidate pool, top-4 combination, interval widening 1.15) were chosen with this script.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import load_wide, to_long  # noqa: E402

import forecasting.single as single  # noqa: E402
from forecasting import forecast  # noqa: E402
from forecasting.metrics import score_series  # noqa: E402
from prewarm import columns as C  # noqa: E402

HORIZON = 48


def validate_window(train: dict[str, np.ndarray], k: int, *, fast: bool, jobs: int) -> tuple[float, ...]:
    """sMAPE, MASE, MSIS, coverage of window ``k`` (target: the 48 values ending 48 * (k - 1) before the end)."""
    history = {sid: v[: len(v) - HORIZON * k] for sid, v in train.items()}
    target = {sid: v[len(v) - HORIZON * k : len(v) - HORIZON * (k - 1)] for sid, v in train.items()}
    result = forecast(to_long(history), horizon=HORIZON, level=95.0, n_jobs=jobs, fast=fast)
    parts = {str(m): g for m, g in result.frame.groupby(C.MODEL, sort=False)}
    ids = list(train)
    s = score_series(
        [history[i] for i in ids],
        [target[i] for i in ids],
        [parts[i][C.YHAT].to_numpy() for i in ids],
        [parts[i][C.LO].to_numpy() for i in ids],
        [parts[i][C.HI].to_numpy() for i in ids],
    )
    return s.smape, s.mase, s.msis or 0.0, s.coverage or 0.0


def main() -> None:
    """Score every validation window and their mean."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--inflation", type=float, default=single.INTERVAL_INFLATION)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    single.INTERVAL_INFLATION = args.inflation  # read at call time; workers inherit it (fork)
    train = load_wide("train")
    rows = []
    print("| window | sMAPE | MASE | MSIS | coverage | seconds |\n| --- | --- | --- | --- | --- | --- |")
    for k in range(1, args.windows + 1):
        started = time.perf_counter()
        scores = validate_window(train, k, fast=args.fast, jobs=args.jobs)
        rows.append(scores)
        print(f"| {k} | " + " | ".join(f"{v:.3f}" for v in scores) + f" | {time.perf_counter() - started:.1f} |")
    mean = np.mean(rows, axis=0)
    print("| mean | " + " | ".join(f"{v:.3f}" for v in mean) + " | |")


if __name__ == "__main__":
    main()
