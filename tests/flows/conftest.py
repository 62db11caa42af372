"""One Prefect test harness (an ephemeral server with its own database) for every flow test in the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.migrate import upgrade
from db.session import get_engine, make_engine
from prewarm.settings import reset_settings


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    """Start Prefect's test server once (about 15 s); every flow in this folder runs against it."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def history_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A fresh SQLite history database configured for the flows (the repositories are tested on Postgres too)."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    monkeypatch.setenv("PREWARM_DATABASE_URL", url)
    reset_settings()
    get_engine.cache_clear()
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
    get_engine.cache_clear()
