"""HTML reports, each one self-contained file (plots are embedded PNGs).

The demo's report: per model, recent demand, the forecast with its interval and the planned warm windows,
then the plan and what each warm run achieved, then the observed cold starts. ``prewarm report``'s page:
cold starts per model and day, with and without a plan in force.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from prewarm import columns as C
from prewarm.text import moment, window


@dataclass(frozen=True, kw_only=True)
class WindowResult:
    """One planned window and the warm run that carried it out (latencies None when it did not run)."""

    model: str
    version: str
    window_start: datetime
    window_end: datetime
    warm_start: datetime
    replicas: int
    lead_seconds: float
    expected_demand: float | None
    reason: str
    cold_first_request_ms: float | None = None
    warm_first_request_ms: float | None = None
    steady_p99_ms: float | None = None
    time_to_ready_s: float | None = None
    ready: bool | None = None
    detail: str | None = None

    @property
    def delta_ms(self) -> float | None:
        """How much faster the first request is warm than cold."""
        if self.cold_first_request_ms is None or self.warm_first_request_ms is None:
            return None
        return self.cold_first_request_ms - self.warm_first_request_ms


def forecast_figure_png(
    history: pd.DataFrame, forecast: pd.DataFrame, windows: Sequence[WindowResult]
) -> bytes:
    """A PNG with one panel per model: observed requests, forecast mean and interval, warm windows shaded."""
    import matplotlib.pyplot as plt

    fig = forecast_figure(history, forecast, windows)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def forecast_figure(history: pd.DataFrame, forecast: pd.DataFrame, windows: Sequence[WindowResult]) -> Any:
    """The figure behind :func:`forecast_figure_png` (a matplotlib ``Figure``; the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import matplotlib.dates as mdates

    from scheduling.plots import literal

    models = sorted(set(forecast[C.MODEL]) | set(history[C.MODEL]))
    interval = f"{interval_level(forecast):g} % interval" if interval_level(forecast) is not None else "interval"
    fig, axes = plt.subplots(
        len(models), 1, figsize=(12, 2.4 * max(len(models), 1)), sharex=True, squeeze=False
    )
    for ax, model in zip(axes[:, 0], models, strict=True):
        seen = history[history[C.MODEL] == model]
        ahead = forecast[forecast[C.MODEL] == model].sort_values(C.TIMESTAMP)
        ax.plot(seen[C.TIMESTAMP], seen[C.REQUESTS], color="#555555", linewidth=1, label="observed")
        if not ahead.empty:
            ax.plot(ahead[C.TIMESTAMP], ahead[C.YHAT], color="#1f77b4", linewidth=1.5, label="forecast")
            ax.fill_between(
                ahead[C.TIMESTAMP], ahead[C.LO], ahead[C.HI], color="#1f77b4", alpha=0.2, label=interval
            )
        for i, planned in enumerate(w for w in windows if w.model == model):
            ax.axvspan(
                planned.warm_start,
                planned.window_end,
                color="#2ca02c",
                alpha=0.12,
                label="warm window" if i == 0 else None,
            )
            ax.axvline(
                planned.warm_start, color="#2ca02c", linewidth=1, linestyle="--",
                label="warm-up starts" if i == 0 else None,
            )
        ax.set_title(literal(model), fontsize=10, loc="left")
        ax.set_ylabel("requests per interval", fontsize=8)
        ax.grid(alpha=0.3)
    handles: dict[str, object] = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[0, 0].legend(handles.values(), handles.keys(), loc="upper left", fontsize=8, ncols=5)
    bottom = axes[-1, 0]
    bottom.set_xlabel("time (UTC)")
    bottom.xaxis.set_major_locator(mdates.DayLocator(tz="UTC"))
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b", tz="UTC"))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def interval_level(forecast: pd.DataFrame) -> float | None:
    """The prediction interval's level (percent) of a stored forecast, None when it does not say."""
    if "level" not in forecast.columns or forecast.empty:
        return None
    levels = forecast["level"].dropna().unique()
    return float(levels[0]) if len(levels) == 1 else None


FIGURE_KEY = (
    "Each panel is one model. Grey: the requests observed per interval. Blue line: the forecast's mean; "
    "blue band: its prediction interval (the level is in the legend). Green band: a warm window, from the "
    "start of its warm-up to its end; dashed green line: the moment its warm-up starts (the window's start "
    "minus the time to ready). Times are UTC."
)


def _cell(value: object, fmt: str = "{}") -> str:
    return "&ndash;" if value is None else html.escape(fmt.format(value))


def _rows(windows: Sequence[WindowResult]) -> str:
    lines = []
    for w in windows:
        status = "&ndash;" if w.ready is None else ("ready" if w.ready else "not ready")
        lines.append(
            "<tr>"
            f"<td>{html.escape(w.model)}</td><td>{html.escape(w.version)}</td>"
            f"<td>{html.escape(window(w.window_start, w.window_end))}</td>"
            f"<td>{html.escape(moment(w.warm_start))}</td><td>{w.replicas}</td><td>{w.lead_seconds:.0f} s</td>"
            f"<td>{_cell(w.expected_demand, '{:.0f}')}</td>"
            f"<td>{_cell(w.cold_first_request_ms, '{:.1f}')}</td><td>{_cell(w.warm_first_request_ms, '{:.1f}')}</td>"
            f"<td>{_cell(w.delta_ms, '{:.1f}')}</td><td>{_cell(w.time_to_ready_s, '{:.2f}')}</td>"
            f"<td class='{status.replace(' ', '-')}'>{status}</td><td>{_cell(w.detail)}</td>"
            f"<td class='text'>{html.escape(w.reason)}</td>"
            "</tr>"
        )
    return "\n".join(lines)


def write_report(
    path: str | Path,
    *,
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    windows: Sequence[WindowResult],
    title: str = "prewarm demo",
    notes: Sequence[str] = (),
    cold_starts: pd.DataFrame | None = None,
) -> Path:
    """Write the HTML report to ``path`` (parents created) and return it.

    ``cold_starts`` is :func:`prewarm.cold_starts.cold_starts_by_day`'s table; None leaves the section out.
    """
    png = base64.b64encode(forecast_figure_png(history, forecast, windows)).decode()
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, td.text, td:last-child {{ text-align: left; }}
figcaption {{ max-width: 60rem; font-size: 0.9rem; color: #444; }}
.ready {{ color: #1a7f37; font-weight: 600; }} .not-ready {{ color: #b42318; font-weight: 600; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<ul>{note_items}</ul>
<h2>Demand forecast and warm windows</h2>
<figure><img alt="observed demand, forecast with interval, and warm windows per model" src="data:image/png;base64,{png}">
<figcaption>{html.escape(FIGURE_KEY)}</figcaption></figure>
<h2>Plan and warm runs</h2>
<table>
<thead><tr><th>model</th><th>version</th><th>window (UTC)</th><th>warm-up starts</th><th>replicas</th><th>lead</th>
<th>expected requests</th><th>cold first request ms</th><th>warm first request ms</th><th>delta ms</th>
<th>time to ready s</th><th>readiness</th><th>outcome</th><th>why planned</th></tr></thead>
<tbody>
{_rows(windows)}
</tbody></table>
{cold_starts_section(cold_starts) if cold_starts is not None else ""}
</body></html>
"""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document)
    return out


def cold_starts_section(table: pd.DataFrame) -> str:
    """The HTML section of observed cold starts: a plot and the per model and day table."""
    from prewarm.cold_starts import WITH_PLAN, WITHOUT_PLAN, DAY, cold_starts_figure_png

    if table.empty:
        return (
            "<h2>Observed cold starts</h2><p>No cold starts recorded in this period. They come from "
            "ingesting prewarm's hosts through Prometheus "
            "(<code>prewarm ingest prometheus+http://... --preset prewarm</code>).</p>"
        )
    png = base64.b64encode(cold_starts_figure_png(table)).decode()
    rows = "\n".join(
        f"<tr><td>{html.escape(str(r[C.MODEL]))}</td><td>{r[DAY]:%Y-%m-%d}</td><td>{r[C.REQUESTS]:,.0f}</td>"
        f"<td>{r[C.COLD_STARTS]:,}</td><td>{r[WITH_PLAN]:,}</td><td>{r[WITHOUT_PLAN]:,}</td></tr>"
        for r in table.to_dict("records")
    )
    return f"""<h2>Observed cold starts, with and without a plan in force</h2>
<img alt="cold starts per day and model, with and without a plan in force" src="data:image/png;base64,{png}">
<table>
<thead><tr><th>model</th><th>day (UTC)</th><th>requests</th><th>cold starts</th><th>with a plan</th>
<th>without a plan</th></tr></thead>
<tbody>
{rows}
</tbody></table>"""


def write_cold_start_report(
    path: str | Path, *, table: pd.DataFrame, title: str, notes: Sequence[str] = ()
) -> Path:
    """Write ``prewarm report``'s page (parents created) and return its path."""
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<ul>{note_items}</ul>
{cold_starts_section(table)}
</body></html>
"""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document)
    return out
