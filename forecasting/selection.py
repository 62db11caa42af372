"""Rolling-origin backtests on a series' own history: pick and combine candidates, calibrate intervals.

For origins ``n - h - j * step`` (j = 0 .. origins-1) every candidate forecasts ``h`` steps from the
history before the origin; candidates are ranked by mean absolute error over all origins and the
``top`` best are averaged. The averaged forecast's backtest errors then give the interval: errors are
scaled by their mean size at each horizon step (smoothed, so the interval widens with the horizon
the way the errors did), the scaled errors of all steps are pooled, and their empirical quantiles at
(1 - level)/2 and (1 + level)/2, with the conformal finite-sample correction, are scaled back.
Nothing here looks past the end of the series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecasting.candidates import Candidate


@dataclass(frozen=True, slots=True)
class Backtest:
    """Errors of the chosen combination at each origin (rows) and horizon step (columns)."""

    chosen: tuple[str, ...]
    mae: float
    errors: np.ndarray
    forecasts: np.ndarray


def origins(n: int, h: int, *, count: int, step: int, min_train: int) -> list[int]:
    """Backtest cut points, newest first, each leaving ``h`` actuals and at least ``min_train`` history."""
    cuts = [n - h - j * step for j in range(count)]
    return [c for c in cuts if c >= min_train]


def run_backtests(
    y: np.ndarray, pool: tuple[Candidate, ...], h: int, cuts: list[int], *, top: int
) -> Backtest | None:
    """Rank ``pool`` on the ``cuts`` and return the errors of the mean of the ``top`` best; None if none fit."""
    actual = np.stack([y[c : c + h] for c in cuts])
    paths: dict[str, np.ndarray] = {}
    for candidate in pool:
        rows = []
        for c in cuts:
            path = candidate.path(y[:c], h)
            if path is None:
                break
            rows.append(path)
        if len(rows) == len(cuts):
            paths[candidate.name] = np.stack(rows)
    if not paths:
        return None
    mae = {name: float(np.mean(np.abs(actual - p))) for name, p in paths.items()}
    chosen = tuple(sorted(mae, key=lambda name: (mae[name], name))[:top])
    combined = np.mean([paths[name] for name in chosen], axis=0)
    errors = actual - combined
    return Backtest(chosen, float(np.mean(np.abs(errors))), errors, combined)


def combination_errors(
    y: np.ndarray, chosen: tuple[Candidate, ...], h: int, cuts: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Backtest errors and forecasts of the mean of ``chosen`` on ``cuts``, stopping at the first that is too short."""
    errors, forecasts = [], []
    for c in cuts:
        paths = [candidate.path(y[:c], h) for candidate in chosen]
        if any(p is None for p in paths):
            break
        combined = np.mean(paths, axis=0)
        forecasts.append(combined)
        errors.append(y[c : c + h] - combined)
    if not errors:
        return np.zeros((0, h)), np.zeros((0, h))
    return np.stack(errors), np.stack(forecasts)


def _smooth_scale(errors: np.ndarray) -> np.ndarray:
    """Mean absolute error per horizon step, smoothed by a running mean and made non-decreasing."""
    per_step = np.mean(np.abs(errors), axis=0)
    h = len(per_step)
    width = max(1, min(h, 2 * (h // 8) + 1))
    padded = np.pad(per_step, (width // 2, width // 2), mode="edge")
    smooth = np.convolve(padded, np.ones(width) / width, mode="valid")
    floor = max(float(np.mean(per_step)) * 1e-3, 1e-9)
    return np.maximum(np.maximum.accumulate(smooth), floor)


def conformal_offsets(errors: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper offsets per horizon step from backtest ``errors`` (actual - forecast)."""
    scale = _smooth_scale(errors)
    scaled = (errors / scale).ravel()
    n = len(scaled)
    alpha = 1.0 - level / 100.0
    # conformal correction: the ceil((n + 1)(1 - a/2))-th order statistic of n scores
    q_hi = min(1.0, np.ceil((n + 1) * (1.0 - alpha / 2.0)) / n)
    q_lo = max(0.0, np.floor((n + 1) * (alpha / 2.0)) / n)
    lo = float(np.quantile(scaled, q_lo, method="lower"))
    hi = float(np.quantile(scaled, q_hi, method="higher"))
    return np.minimum(lo, 0.0) * scale, np.maximum(hi, 0.0) * scale
