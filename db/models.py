"""Tables of the history database: registry, telemetry, forecasts, plans, warm runs, hosts and the fleet controller."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base, UTCDateTime, utcnow

# JSON works on both backends; Postgres stores it as json. BigInteger ids autoincrement on
# Postgres, and on SQLite through the Integer variant (SQLite only autoincrements INTEGER PRIMARY KEY).
Id = BigInteger().with_variant(Integer(), "sqlite")


class PlanStatus(str, enum.Enum):
    """Lifecycle of a warm plan."""

    PLANNED = "planned"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


class WarmTrigger(str, enum.Enum):
    """Why a warm run happened."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"
    POST_DEPLOY = "post_deploy"


class WarmStatus(str, enum.Enum):
    """Outcome of a warm run."""

    RUNNING = "running"
    READY = "ready"
    NOT_READY = "not_ready"
    FAILED = "failed"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e], native_enum=False, length=16)


class Model(Base):
    """One registered model version and how to warm it."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str] = mapped_column(String(100))
    artifact_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    loader: Mapped[str] = mapped_column(String(32))
    factory: Mapped[str | None] = mapped_column(String(300))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, doc="The full fleet entry (warm-up spec, compile mode, ...).")
    sla_p99_ms: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    device_memory_mb: Mapped[float] = mapped_column(Float, default=0.0)
    rolled_back_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, doc="Set when a roll-out of this version failed: hosts keep (or go back to) the previous one."
    )
    rolled_back_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Telemetry(Base):
    """Requests one model received in one bucket."""

    __tablename__ = "telemetry"

    # The natural key is the primary key: a surrogate id would cost a second index on every bulk load.
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    bucket_seconds: Mapped[int] = mapped_column(Integer)
    requests: Mapped[float] = mapped_column(Float)
    p50_ms: Mapped[float | None] = mapped_column(Float)
    p99_ms: Mapped[float | None] = mapped_column(Float)
    cold_starts: Mapped[int | None] = mapped_column(Integer)


class ForecastRun(Base):
    """One forecasting pass over some models."""

    __tablename__ = "forecast_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    horizon: Mapped[int] = mapped_column(Integer)
    level: Mapped[float] = mapped_column(Float)
    interval_seconds: Mapped[int] = mapped_column(Integer)
    models_count: Mapped[int] = mapped_column(Integer, default=0)
    fallbacks: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[int] = mapped_column(Integer, default=0)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    orchestrator_run_id: Mapped[str | None] = mapped_column(String(64))

    points: Mapped[list[ForecastPoint]] = relationship(back_populates="run", cascade="all, delete-orphan")


class ForecastPoint(Base):
    """One forecast interval of one model."""

    __tablename__ = "forecast_points"
    __table_args__ = (UniqueConstraint("run_id", "model", "timestamp"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("forecast_runs.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    yhat: Mapped[float] = mapped_column(Float)
    lo: Mapped[float] = mapped_column(Float)
    hi: Mapped[float] = mapped_column(Float)
    level: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(64))

    run: Mapped[ForecastRun] = relationship(back_populates="points")


class WarmPlan(Base):
    """A window during which a model should be warm, and the run that makes it so."""

    __tablename__ = "warm_plans"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str] = mapped_column(String(100))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    replicas: Mapped[int] = mapped_column(Integer)
    lead_seconds: Mapped[float] = mapped_column(Float)
    expected_demand: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[PlanStatus] = mapped_column(_enum(PlanStatus, "plan_status"), default=PlanStatus.PLANNED)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    forecast_run_id: Mapped[int | None] = mapped_column(ForeignKey("forecast_runs.id", ondelete="SET NULL"))
    orchestrator_run_id: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(200), index=True, doc="The host the replica is placed on.")
    pool: Mapped[str | None] = mapped_column(String(200), index=True)
    ready_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, doc="When the controller first saw (or made) the replica ready, on the tick's clock."
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WarmRun(Base):
    """One execution of the warm pipeline, with every stage timing and the latency it achieved."""

    __tablename__ = "warm_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("warm_plans.id", ondelete="SET NULL"), index=True)
    trigger: Mapped[WarmTrigger] = mapped_column(_enum(WarmTrigger, "warm_trigger"))
    model: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(500))
    device_class: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[WarmStatus] = mapped_column(_enum(WarmStatus, "warm_status"), default=WarmStatus.RUNNING)
    stage_seconds: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    cold_first_request_ms: Mapped[float | None] = mapped_column(Float)
    warm_first_request_ms: Mapped[float | None] = mapped_column(Float)
    steady_p50_ms: Mapped[float | None] = mapped_column(Float)
    steady_p99_ms: Mapped[float | None] = mapped_column(Float)
    baseline_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_delta_ms: Mapped[float | None] = mapped_column(Float)
    time_to_ready_s: Mapped[float | None] = mapped_column(Float)
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    orchestrator_run_id: Mapped[str | None] = mapped_column(String(64))


class WebhookDelivery(Base):
    """A webhook delivery already accepted: replays of it answer with the original event and emit nothing.

    ``key`` is ``delivery:<X-Prewarm-Delivery>`` when the sender gave a delivery id, else
    ``signature:<hex>`` (the signature covers the timestamp and the body, so it names one delivery).
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class HostState(str, enum.Enum):
    """Whether a host takes replicas: up, draining (its replicas move away), or down (silent too long)."""

    UP = "up"
    DRAINING = "draining"
    DOWN = "down"


class HostKind(str, enum.Enum):
    """The inference server a host runs; prewarm's own hosts register themselves, the others are added by hand."""

    PREWARM = "prewarm"
    TRITON = "triton"
    KSERVE = "kserve"
    MLSERVER = "mlserver"
    V2 = "v2"


class Host(Base):
    """A serving host of the fleet: where it answers, its pool, device class, memory, state and last sign of life."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    pool: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[HostKind] = mapped_column(_enum(HostKind, "host_kind"), default=HostKind.PREWARM)
    versioned_routes: Mapped[bool | None] = mapped_column(
        Boolean, doc="Whether the server answers /v2/models/{m}/versions/{v}/...; None when not known."
    )
    device_class: Mapped[str] = mapped_column(String(200), default="any")
    memory_mb: Mapped[float | None] = mapped_column(Float, doc="Device memory for replicas; None: not limited.")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    state: Mapped[HostState] = mapped_column(_enum(HostState, "host_state"), default=HostState.UP)
    max_concurrent_warmups: Mapped[int] = mapped_column(Integer, default=1)
    heartbeat_s: Mapped[float | None] = mapped_column(
        Float, doc="The heartbeat interval a self-registered host announced; None for hosts added by hand."
    )
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ReplicaPhase(str, enum.Enum):
    """The controller's view of one model on one host."""

    PENDING = "pending"
    WARMING = "warming"
    READY = "ready"
    BACKOFF = "backoff"
    FAILED = "failed"
    UNLOADED = "unloaded"


class FleetReplica(Base):
    """The controller's status of one model on one host: phase, failed attempts and when to try again.

    Kept across ticks so that retries back off and a replica that failed ``max_attempts`` times stays failed
    (with its reason) until its registered spec changes.
    """

    __tablename__ = "fleet_replicas"
    __table_args__ = (UniqueConstraint("host", "model"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    pool: Mapped[str] = mapped_column(String(200), index=True)
    host: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(100))
    sha256: Mapped[str | None] = mapped_column(String(64), doc="The spec the attempts were made with.")
    phase: Mapped[ReplicaPhase] = mapped_column(_enum(ReplicaPhase, "replica_phase"), default=ReplicaPhase.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TickStatus(str, enum.Enum):
    """How a controller tick ended; ``abandoned`` is a tick whose process died (found by the next tick)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    ABANDONED = "abandoned"


class ControllerTick(Base):
    """One reconcile pass over a pool."""

    __tablename__ = "controller_ticks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    pool: Mapped[str] = mapped_column(String(200), index=True)
    now: Mapped[datetime] = mapped_column(UTCDateTime, doc="The tick's clock (differs from started_at in a replay).")
    holder: Mapped[str] = mapped_column(String(200))
    status: Mapped[TickStatus] = mapped_column(_enum(TickStatus, "tick_status"), default=TickStatus.RUNNING)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    orchestrator_run_id: Mapped[str | None] = mapped_column(String(64))


class ActionKind(str, enum.Enum):
    """What the controller (or a roll-out, or a manual run) did to a host."""

    WARM = "warm"
    REPAIR = "repair"
    UNLOAD = "unload"
    REPLACE = "replace"
    ROLLOUT = "rollout"
    ROLLBACK = "rollback"
    MANUAL = "manual"


class ActionOutcome(str, enum.Enum):
    """An action's outcome; ``started`` is written before the work, so a killed controller leaves a trace."""

    STARTED = "started"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    ABANDONED = "abandoned"


class ControllerAction(Base):
    """One action on one host, with why it was taken and how it ended."""

    __tablename__ = "controller_actions"
    __table_args__ = (Index("ix_controller_actions_pool_started_at", "pool", "started_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tick_id: Mapped[int | None] = mapped_column(ForeignKey("controller_ticks.id", ondelete="SET NULL"), index=True)
    pool: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[ActionKind] = mapped_column(_enum(ActionKind, "action_kind"))
    outcome: Mapped[ActionOutcome] = mapped_column(_enum(ActionOutcome, "action_outcome"))
    reason: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("warm_plans.id", ondelete="SET NULL"))
    warm_run_id: Mapped[int | None] = mapped_column(ForeignKey("warm_runs.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seconds: Mapped[float | None] = mapped_column(Float)


class ControllerLease(Base):
    """A lock with an expiry: who may act on a pool now. A killed holder's lease simply runs out."""

    __tablename__ = "controller_leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FleetHold(Base):
    """A model wanted on a host until ``until`` outside the plans: a manual warm run or a post-deploy roll-out."""

    __tablename__ = "fleet_holds"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    pool: Mapped[str] = mapped_column(String(200), index=True)
    host: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(32))
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
