"""Values as people read them in messages: no Python or pandas representations (``np.int64(-4)``,
``0 days 01:00:00``, ``Value error, ...``), plurals that agree with their count."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def plural(count: int, word: str, many: str | None = None) -> str:
    """``word`` or its plural for ``count`` (``1 model``, ``2 models``); the count itself is not included."""
    return word if count == 1 else (many or word + "s")


def duration(value: timedelta | float) -> str:
    """A length people read: ``45 s``, ``1 min 40 s``, ``10 min``, ``1 h``, ``2 h 30 min``, ``1 day``, ``2 days 6 h``.

    Takes a ``timedelta`` (pandas' ``Timedelta`` is one) or seconds.
    """
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    sign, whole = ("-" if seconds < 0 else ""), abs(round(seconds))
    if whole < 60:
        return f"{sign}{whole} s"
    minutes, hours, days = (whole // 60) % 60, (whole // 3600) % 24, whole // 86400
    parts = []
    if days:
        parts.append(f"{days} {plural(days, 'day')}")
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if whole < 600 and whole % 60:
        parts.append(f"{whole % 60} s")
    return sign + " ".join(parts)


def show(value: Any) -> str:
    """A value quoted in a message: numbers plainly (``-4``, ``2.5``), text in quotes, lengths as durations."""
    if isinstance(value, timedelta):
        return duration(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:  # a numpy scalar
        value = item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def validation_message(error: dict[str, Any]) -> str:
    """The message of one pydantic error without pydantic's ``Value error,`` prefix."""
    message = str(error.get("msg", ""))
    for prefix in _PYDANTIC_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def moment(at: datetime, *, short: bool = False) -> str:
    """A time with its day: ``Mon 23 Nov 14:00``; ``short``: ``Mon 14:00`` (for tables whose title has the date)."""
    return f"{at:%a %H:%M}" if short else f"{at:%a} {at.day} {at:%b %H:%M}"


def window(start: datetime, end: datetime, *, short: bool = False) -> str:
    """A window with its day and length: ``Mon 23 Nov 14:00 → 18:00 (4 h)``, the end's day when it differs.

    ``short``, for narrow tables whose title gives the date: the start's day and time and the length,
    ``Mon 14:00 for 4 h``.
    """
    if short:
        return f"{moment(start, short=True)} for {duration(end - start)}"
    end_text = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a %H:%M}"
    return f"{moment(start)} → {end_text} ({duration(end - start)})"


def span(first: datetime | None, last: datetime | None) -> str:
    """The time range of some data, ``2026-10-26 00:00 → 2026-11-22 23:00 UTC``; ``no rows`` when empty."""
    if first is None or last is None:
        return "no rows"
    return f"{first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} UTC"


_SHORT_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta | None:
    """``90s``, ``30m``, ``6h``, ``14d``, ``2w`` or ISO-8601 (``PT6H``, ``P14D``); None when it is neither."""
    short = _SHORT_DURATION.match(value)
    if short:
        return timedelta(**{_UNITS[short.group(2).lower()]: float(short.group(1))})
    if not value.strip().upper().startswith("P"):
        return None
    import pandas as pd

    try:
        return pd.Timedelta(value.strip().upper()).to_pytimedelta()
    except ValueError:
        return None
