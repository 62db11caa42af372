"""The demo's HTML report: a figure whose every line is named, an axis with its time zone, two weeks of
history, windows with their day and length, and plan reasons kept apart from what happened."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from prewarm.report import FIGURE_KEY, WindowResult, forecast_figure, write_report

START = datetime(2026, 11, 23, tzinfo=UTC)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    seen = pd.date_range(START - timedelta(days=14), START, freq="h", inclusive="left", tz="UTC")
    history = pd.DataFrame({"timestamp": seen, "model": "m", "requests": np.arange(len(seen)) % 24.0})
    ahead = pd.date_range(START, periods=24, freq="h", tz="UTC")
    forecast = pd.DataFrame(
        {"model": "m", "timestamp": ahead, "yhat": 5.0, "lo": 1.0, "hi": 9.0, "method": "x", "level": 80.0}
    )
    return history, forecast


def _windows() -> list[WindowResult]:
    common = {"model": "m", "version": "1", "replicas": 1, "lead_seconds": 120.0, "expected_demand": 40.0}
    return [
        WindowResult(
            **common, window_start=START, window_end=START + timedelta(days=1),
            warm_start=START - timedelta(minutes=2), reason="forecast, late start", ready=True,
            detail="on demo-1: ready 1.5 min before its window",
        ),
        WindowResult(
            **common, window_start=START + timedelta(hours=3), window_end=START + timedelta(hours=3, minutes=10),
            warm_start=START + timedelta(hours=2, minutes=58), reason="forecast", ready=False,
            detail="on demo-2: never ready (load failed)",
        ),
    ]


def test_figure_names_every_line_its_level_and_time_zone() -> None:
    history, forecast = _frames()
    fig = forecast_figure(history, forecast, _windows())
    try:
        ax = fig.axes[0]
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert labels == ["observed", "forecast", "80 % interval", "warm window", "warm-up starts"]
        assert fig.axes[-1].get_xlabel() == "time (UTC)"
        left, right = ax.get_xlim()
        assert right - left >= 14  # days of history and forecast on the axis: the weekly cycle shows
    finally:
        plt.close(fig)


def test_table_gives_windows_a_day_and_length_and_keeps_reasons_apart(tmp_path: Path) -> None:
    history, forecast = _frames()
    page = write_report(tmp_path / "r.html", history=history, forecast=forecast, windows=_windows()).read_text()
    assert "Mon 23 Nov 00:00 → Tue 00:00 (1 day)" in page
    assert "Mon 23 Nov 03:00 → 03:10 (10 min)" in page
    assert "Sun 22 Nov 23:58" in page  # the warm-up's start carries its day
    assert "<th>outcome</th><th>why planned</th>" in page
    assert "<td>on demo-2: never ready (load failed)</td><td class='text'>forecast</td>" in page
    assert html.escape(FIGURE_KEY) in page


def test_a_model_name_with_dollar_signs_is_drawn_as_written() -> None:
    """A ``$`` in a model's name would start matplotlib's mathtext, which fails to parse at draw time."""
    import io

    history, forecast = _frames()
    name = r"cost$\alpha_{$x"
    history["model"], forecast["model"] = name, name
    fig = forecast_figure(history, forecast, [])
    fig.savefig(io.BytesIO(), format="png")  # raises on unparsable mathtext
    assert fig.axes[0].get_title(loc="left") == name.replace("$", r"\$")
    plt.close(fig)
