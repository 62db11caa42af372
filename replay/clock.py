"""The compressed clock: trace time runs ``speedup`` times faster than the wall clock from one shared origin."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ReplayClock:
    """Maps wall time (``time.time()``, shared by every process of the replay) to trace time."""

    trace_origin: datetime
    wall_origin: float
    speedup: float

    def elapsed_s(self) -> float:
        """Trace seconds since the origin (negative before it)."""
        return (time.time() - self.wall_origin) * self.speedup

    def now(self) -> datetime:
        """The trace time now."""
        return self.trace_origin + timedelta(seconds=self.elapsed_s())

    def wall_of(self, trace_offset_s: float) -> float:
        """The wall time at which ``trace_offset_s`` trace seconds after the origin come."""
        return self.wall_origin + trace_offset_s / self.speedup
