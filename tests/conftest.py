"""Shared fixtures: fresh history databases on SQLite and the real Postgres, and S3 over HTTP (moto server).

Postgres comes from ``PREWARM_TEST_POSTGRES_URL`` (``make test`` starts a server and sets it). Without it the
Postgres half of the suite is skipped locally, and fails under CI, where a skipped Postgres run is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from db.migrate import upgrade
from db.session import make_engine
from prewarm.settings import reset_settings

POSTGRES_ENV = "PREWARM_TEST_POSTGRES_URL"
# The suite's own artifacts (pytest's temporary folders, examples/) and factories (tests.*) are trusted.
TRUST_ENV = ("PREWARM_ARTIFACT_SOURCES", "PREWARM_FACTORY_MODULES")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def _trusted_test_inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Allow the artifacts tests write under pytest's temporary folder and the factories under ``tests.``.

    Set for the whole session (hosts started by module fixtures and subprocesses see it too); a test that
    checks the boundaries sets its own values.
    """
    from prewarm.settings import DEFAULT_FACTORY_MODULES, EXAMPLE_ARTIFACTS

    values = {
        "PREWARM_ARTIFACT_SOURCES": f"{EXAMPLE_ARTIFACTS},{tmp_path_factory.getbasetemp().resolve()}",
        "PREWARM_FACTORY_MODULES": ",".join([*DEFAULT_FACTORY_MODULES, "tests"]),
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    reset_settings()
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    reset_settings()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own PREWARM_HOME, so nothing touches the user's data."""
    monkeypatch.setenv("PREWARM_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("PREWARM_") and name not in ("PREWARM_HOME", POSTGRES_ENV, *TRUST_ENV):
            monkeypatch.delenv(name)
    reset_settings()
    yield
    reset_settings()


def _postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{POSTGRES_ENV} is not set: under CI the Postgres half of the suite must run")
    return None


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str | None]:
    """A Postgres database migrated to head once per session, cloned by each test (CREATE ... TEMPLATE)."""
    admin_url = _postgres_admin_url()
    if admin_url is None:
        yield None
        return
    admin = create_engine(make_engine(admin_url).url, isolation_level="AUTOCOMMIT")
    name = f"prewarm_tpl_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    template_url = make_url(str(make_engine(admin_url).url.render_as_string(hide_password=False))).set(
        database=name
    )
    template_engine = make_engine(template_url.render_as_string(hide_password=False))
    upgrade(template_engine)
    template_engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_template: str | None) -> Iterator[str]:
    """URL of a fresh, migrated history database: once on SQLite, once on Postgres."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'history.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    admin_url = _postgres_admin_url()
    if admin_url is None or postgres_template is None:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    admin = create_engine(make_engine(admin_url).url, isolation_level="AUTOCOMMIT")
    name = f"prewarm_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    url = make_engine(admin_url).url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """An engine on the fresh database, also configured as PREWARM_DATABASE_URL for code under test."""
    monkeypatch.setenv("PREWARM_DATABASE_URL", db_url)
    reset_settings()
    from db.session import get_engine

    get_engine.cache_clear()
    eng = make_engine(db_url)
    yield eng
    eng.dispose()
    get_engine.cache_clear()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback: the real S3 protocol over HTTP."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A boto3 S3 client on the moto server, with prewarm configured to use the same endpoint."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PREWARM_S3__ENDPOINT_URL", s3_endpoint)
    reset_settings()
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty bucket on the moto server."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped Postgres test is a failure: the suite must have run on both databases."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [r for r in (reporter.stats.get("skipped", []) if reporter else []) if "[postgres" in r.nodeid]
    if skipped:
        if reporter:
            reporter.write_line(f"CI: {len(skipped)} Postgres tests were skipped; that is a failure here", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
