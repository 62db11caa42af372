"""Helpers for driving the command line in-process and snapshotting tables."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from prewarm.cli.main import app


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run ``prewarm ARGS...`` in-process; returns the click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, list(args), catch_exceptions=False)

    return run


def snapshot(engine: Engine, table: str) -> list[tuple[object, ...]]:
    """Every row of ``table`` in a stable order, to prove a failed command changed nothing."""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(f"SELECT * FROM {table} ORDER BY 1"))]
