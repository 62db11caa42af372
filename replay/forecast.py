"""The forecast policy's side of the replay: forecast-and-plan's steps and the fleet controller on the
compressed clock, in a process of their own (as a controller runs beside the traffic, not inside it).

- **Telemetry**: before each plan, the buckets of the replayed window that have *ended* by then are ingested;
  the forecast never sees a bucket in progress or later.
- **Plans**: :func:`plan_at` runs the same forecast and :func:`controller.planning.plan_pool` as
  ``forecast-and-plan``, with the lead times stretched to the compressed clock: a warm-up that takes 2 s of
  wall time takes ``2 x speedup`` seconds of trace time, and so do the controller's tick and the margin.
- **Ticks**: :func:`drive` calls :func:`controller.reconcile.reconcile` with ``now`` on the compressed clock
  every ``tick_s`` of wall time and re-plans every ``replan_intervals`` in a thread beside the ticks.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine

from prewarm import columns as C

log = logging.getLogger(__name__)

# Wall seconds of margin on top of a model's p95 time-to-ready and one tick (stretched like them).
LEAD_MARGIN_WALL_S = 1.0


@dataclass(frozen=True, kw_only=True)
class ForecastSetup:
    """What the forecast policy's process needs (JSON on its command line)."""

    db_url: str
    pool: str
    telemetry_csv: str
    trace_origin: str
    wall_origin: float
    speedup: float
    interval_s: float
    horizon: int
    level: float
    replan_intervals: int
    tick_s: float
    keep_alive_s: float
    end_offset_s: float


def stretched_leads(session: object, models: list[str], *, speedup: float, tick_s: float) -> object:
    """Lead times on the compressed clock: recorded time-to-ready, one tick and the margin, times ``speedup``."""
    from db.warm import time_to_ready_runs
    from scheduling.leads import LeadTimes, lead_times_from_runs

    recorded = lead_times_from_runs(time_to_ready_runs(session, models=models), margin_s=0.0)  # type: ignore[arg-type]
    return LeadTimes(
        {key: tuple(s * speedup for s in samples) for key, samples in recorded.history.items()},
        default_s=recorded.default_s * speedup,
        margin_s=(LEAD_MARGIN_WALL_S + tick_s) * speedup,
    )


def ingest_until(engine: Engine, frame: pd.DataFrame, *, at: datetime, interval: timedelta) -> None:
    """Ingest the rows of ``frame`` whose bucket has ended by ``at``."""
    from prewarm.ingest import ingest_frame

    ended = frame[frame[C.TIMESTAMP] + pd.Timedelta(interval) <= pd.Timestamp(at)]
    if not ended.empty:
        ingest_frame(ended, engine=engine, interval=interval)


def plan_at(engine: Engine, setup: ForecastSetup, *, at: datetime) -> int:
    """forecast-and-plan's steps as of ``at`` on the compressed clock; returns the number of windows stored."""
    import forecasting
    from controller.planning import history_until, plan_pool
    from db.registry import latest_models, spec_of
    from db.session import session_scope
    from prewarm.settings import get_settings

    interval = timedelta(seconds=setup.interval_s)
    with session_scope(engine) as session:
        specs = [spec_of(row) for row in latest_models(session)]
        history = history_until(session, [s.name for s in specs], as_of=at)
    if history.empty:
        return 0
    result = forecasting.forecast(
        history, horizon=setup.horizon, level=setup.level, freq=f"{int(setup.interval_s)}s"
    )
    with session_scope(engine) as session:
        leads = stretched_leads(session, [s.name for s in specs], speedup=setup.speedup, tick_s=setup.tick_s)
        planned = plan_pool(
            session, result.frame, [s for s in specs if s.name in set(history[C.MODEL])], pool=setup.pool, now=at,
            keep_alive_s=setup.keep_alive_s, interval=interval, max_warmups_per_pool=None,
            default_heartbeat_s=get_settings().host.heartbeat_s, tick_s=setup.tick_s * setup.speedup,
            lead_times=leads,  # type: ignore[arg-type]
        )
    return len(planned.windows)


def controller_config(setup: ForecastSetup) -> object:
    """The controller's knobs for a replay: short timeouts, a keep-warm in trace seconds."""
    from controller.reconcile import ControllerConfig

    return ControllerConfig(
        keep_warm_s=setup.keep_alive_s, observe_timeout_s=5.0, warm_timeout_s=120.0, heartbeat_s=2.0, lease_s=60.0,
        tick_budget_s=60.0, backoff_s=setup.interval_s / 4,
    )


def drive(setup: ForecastSetup) -> None:
    """Tick the controller on the compressed clock and re-plan on schedule until the replay's end."""
    from controller.reconcile import reconcile
    from db.session import make_engine
    from replay.clock import ReplayClock

    engine = make_engine(setup.db_url)
    clock = ReplayClock(datetime.fromisoformat(setup.trace_origin), setup.wall_origin, setup.speedup)
    frame = pd.read_csv(setup.telemetry_csv)
    frame[C.TIMESTAMP] = pd.to_datetime(frame[C.TIMESTAMP], utc=True)
    interval = timedelta(seconds=setup.interval_s)
    replan_s = setup.replan_intervals * setup.interval_s
    next_plan = replan_s - setup.interval_s / 2  # half an interval ahead of the boundary, as a live fleet plans
    planner: threading.Thread | None = None
    config = controller_config(setup)
    while clock.elapsed_s() < setup.end_offset_s:
        if clock.elapsed_s() >= next_plan and (planner is None or not planner.is_alive()):
            at = clock.now()

            def replan(at: datetime = at) -> None:
                ingest_until(engine, frame, at=at, interval=interval)
                log.info("re-planned at %s: %d windows", at, plan_at(engine, setup, at=at))

            planner = threading.Thread(target=replan, name="replay-replan", daemon=True)
            planner.start()
            next_plan += replan_s
        started = time.time()
        report = reconcile(setup.pool, clock.now(), engine=engine, config=config)  # type: ignore[arg-type]
        log.info("tick at %s: %s", report.now, report.counts)
        time.sleep(max(0.0, setup.tick_s - (time.time() - started)))


def main() -> None:
    """Entry point of the forecast policy's process: ``python -c '...main()' SETUP_JSON``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # A fleet's controller and forecaster run beside the inference hosts, not on their CPUs: on one machine
    # they yield to the hosts, so that planning does not show up in the clients' latency.
    os.nice(10)
    drive(ForecastSetup(**json.loads(sys.argv[1])))


def setup_json(setup: ForecastSetup) -> str:
    """The command-line form of ``setup``."""
    return json.dumps(asdict(setup))
