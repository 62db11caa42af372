"""Migrations: head on a fresh database, no drift against the models, and all the way down again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from db.base import Base
from db.migrate import downgrade, upgrade

TABLES = {
    "models", "telemetry", "forecast_runs", "forecast_points", "warm_plans", "warm_runs", "webhook_deliveries",
    "hosts", "fleet_replicas", "fleet_holds", "controller_ticks", "controller_actions", "controller_leases",
}


def test_upgrade_head_creates_every_table(engine: Engine) -> None:
    assert TABLES <= set(inspect(engine).get_table_names())


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_downgrade_base_then_upgrade_again(engine: Engine) -> None:
    downgrade(engine, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert TABLES <= set(inspect(engine).get_table_names())


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
