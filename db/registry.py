"""Model registry repository: fleet entries in, registered model versions out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Insert, literal_column, select
from sqlalchemy.orm import Session

from db.base import utcnow
from db.models import Model
from prewarm.fleet import ModelSpec


def _row_values(spec: ModelSpec) -> dict[str, object]:
    # A foreign model (``server: foreign``) has no artifact: its columns hold empty strings, the spec says why.
    return {
        "artifact_uri": spec.artifact_uri or "",
        "sha256": spec.sha256 or "",
        "loader": spec.loader or "",
        "factory": spec.factory,
        "spec": spec.model_dump(mode="json"),
        "sla_p99_ms": spec.sla_p99_ms,
        "priority": spec.priority,
        "device_memory_mb": spec.device_memory_mb,
    }


def insert_ignoring_conflicts(session: Session, table: type, values: dict[str, object], *, key: list[str]) -> bool:
    """``INSERT ... ON CONFLICT (key) DO NOTHING`` on SQLite or Postgres; True when the row was inserted.

    Racing writers of the same key then never see an ``IntegrityError``: one inserts, the others do nothing
    (on Postgres they wait for the first one's transaction, and insert only if it rolled back).
    """
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement: Insert = dialect_insert(table).values(**values).on_conflict_do_nothing(index_elements=key)
    # RETURNING, not rowcount: psycopg reports no reliable count for a conflict that did nothing.
    return session.execute(statement.returning(literal_column("1"))).first() is not None


def upsert_models(session: Session, specs: Iterable[ModelSpec]) -> list[Model]:
    """Register each spec, updating a version that already exists (name + version is the key).

    Safe under concurrency: the row is inserted with ``ON CONFLICT DO NOTHING`` and then read back, so two
    transactions registering the same version both succeed and leave one row.
    """
    rows: list[Model] = []
    for spec in specs:
        query = select(Model).where(Model.name == spec.name, Model.version == spec.version)
        row = session.scalars(query).first()
        if row is None:
            now = utcnow()
            values = {"name": spec.name, "version": spec.version, **_row_values(spec)}
            if insert_ignoring_conflicts(
                session, Model, {**values, "created_at": now, "updated_at": now}, key=["name", "version"]
            ):
                rows.append(session.scalars(query).one())
                continue
            row = session.scalars(query.execution_options(populate_existing=True)).one()
        if row.sha256 != (spec.sha256 or ""):  # a new artifact under the same version gets another chance
            row.rolled_back_at, row.rolled_back_reason = None, None
        for key, value in _row_values(spec).items():
            setattr(row, key, value)
        rows.append(row)
    session.flush()
    return rows


def list_models(session: Session) -> list[Model]:
    """Every registered model version, by name then registration order."""
    return list(session.scalars(select(Model).order_by(Model.name, Model.id)))


def latest_models(session: Session) -> list[Model]:
    """The newest registered version of each model name that was not rolled back: the version to serve."""
    newest: dict[str, Model] = {}
    for row in list_models(session):
        if row.rolled_back_at is None:
            newest[row.name] = row  # ordered by id within a name, so the last one wins
    return list(newest.values())


def get_model(session: Session, name: str, version: str | None = None) -> Model | None:
    """One model version, or the newest version of ``name`` that was not rolled back when ``version`` is None."""
    query = select(Model).where(Model.name == name)
    if version is not None:
        return session.scalars(query.where(Model.version == version)).first()
    return session.scalars(query.where(Model.rolled_back_at.is_(None)).order_by(Model.id.desc())).first()


def mark_rolled_back(session: Session, name: str, version: str, *, reason: str, now: datetime | None = None) -> None:
    """Record that ``version`` of ``name`` failed its roll-out: hosts load the previous version again."""
    row = session.scalars(select(Model).where(Model.name == name, Model.version == version)).first()
    if row is None:
        raise LookupError(f"model {name!r} version {version!r} is not registered")
    row.rolled_back_at = now or utcnow()
    row.rolled_back_reason = reason
    session.flush()


def rolled_back_versions(session: Session) -> set[tuple[str, str]]:
    """Every (name, version) whose roll-out failed."""
    query = select(Model.name, Model.version).where(Model.rolled_back_at.is_not(None))
    return {(name, version) for name, version in session.execute(query)}


def spec_of(row: Model) -> ModelSpec:
    """The fleet entry a registered row was made from."""
    return ModelSpec.model_validate(row.spec)
