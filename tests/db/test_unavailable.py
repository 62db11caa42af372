"""A history database that cannot be reached: one line naming PREWARM_DATABASE_URL and the host, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from db.errors import DatabaseUnavailable
from db.session import describe, make_engine, parse_url
from tests.conftest import free_port
from tests.e2e.processes import REPO

PASSWORD = "s3cr@t-Tail"


def _closed_port_url() -> str:
    return f"postgresql://prewarm:{PASSWORD}@127.0.0.1:{free_port()}/prewarm"


def test_a_password_with_an_at_sign_is_read_as_a_password() -> None:
    url = parse_url("postgresql+psycopg://prewarm:p@ss@db.internal:5432/history")
    assert (url.username, url.password, url.host, url.port) == ("prewarm", "p@ss", "db.internal", 5432)
    assert describe(url) == "postgresql at db.internal:5432/history"
    plain = parse_url("postgresql+psycopg://prewarm:p%40ss@db.internal/history")
    assert plain.password == "p@ss" and plain.host == "db.internal"


def test_connection_failure_names_the_setting_and_host_not_the_password() -> None:
    engine = make_engine(_closed_port_url())
    with pytest.raises(DatabaseUnavailable, match=r"PREWARM_DATABASE_URL.*127\.0\.0\.1") as caught:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    message = str(caught.value)
    assert "\n" not in message
    assert "Tail" not in message and "s3cr" not in message


def test_a_lost_connection_is_unavailable_too(postgres_template: str | None) -> None:
    """The server closes the connection mid-session (as a restart would): one error naming the setting."""
    admin_url = os.environ.get("PREWARM_TEST_POSTGRES_URL")
    if not admin_url or postgres_template is None:
        pytest.skip("PREWARM_TEST_POSTGRES_URL is not set")
    engine = make_engine(admin_url)
    killer = make_engine(admin_url)
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with killer.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DatabaseUnavailable, match="lost the connection to the history database"):
            connection.execute(text("SELECT 1"))
    engine.dispose()
    killer.dispose()


COMMANDS = [
    ["models", "list"],
    ["models", "import", "examples/fleet.yaml"],
    ["hosts", "list"],
    ["ingest", "examples/telemetry.csv"],
    ["forecast", "--horizon", "3"],
    ["plan", "--pool", "default"],
    ["reconcile", "--pool", "default"],
    ["report", "--days", "2"],
    ["webhook", "--port", "1"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_every_database_command_prints_one_line_and_exits_2(args: list[str], tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "PREWARM_HOME": str(tmp_path / "home"),
        "PREWARM_DATABASE_URL": _closed_port_url(),
        "PREWARM_WEBHOOK_SECRET": "x" * 32,
    }
    result = subprocess.run(
        [sys.executable, "-c", "from prewarm.cli.main import app; app()", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "PREWARM_DATABASE_URL" in lines[0] and "127.0.0.1" in lines[0]
    assert "Tail" not in result.stderr + result.stdout and "Traceback" not in result.stderr
