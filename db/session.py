"""Engine and session factories. Nothing connects at import: call :func:`get_engine` at run time."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.orm import Session, sessionmaker

from db.errors import DatabaseUnavailable

SETTING = "PREWARM_DATABASE_URL"


def parse_url(url: str | URL) -> URL:
    """Parse a database URL, reading a password that holds an unescaped ``@`` as the sender meant it.

    SQLAlchemy splits ``user:p@ss@host`` at the first ``@``, which makes ``ss@host`` the host (and puts part of
    the password into every error message). The host follows the last ``@`` of the authority instead.
    """
    if isinstance(url, URL):
        return url
    scheme, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if not sep or authority.count("@") < 2:
        return make_url(url)
    userinfo, _, hostport = authority.rpartition("@")
    user, _, password = userinfo.partition(":")
    parsed = make_url(f"{scheme}://{hostport}{rest[len(authority):]}")
    return parsed.set(username=unquote(user) or None, password=unquote(password) if password else None)


def describe(url: str | URL) -> str:
    """``backend on host:port/database`` for messages: never the user's password."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database or ':memory:'}"
    where = f"{parsed.host or 'localhost'}:{parsed.port}" if parsed.port else f"{parsed.host or 'localhost'}"
    return f"{parsed.get_backend_name()} at {where}/{parsed.database or ''}"


def make_engine(url: str | URL) -> Engine:
    """Create an engine for ``url``; SQLite gets a parent folder, foreign keys and WAL.

    A failure to connect, or a connection lost mid-statement, raises :class:`DatabaseUnavailable`, whose message
    names ``PREWARM_DATABASE_URL`` and the host, with the password left out.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"cannot create the folder of the history database ({describe(parsed)}, from {SETTING}): "
                    f"{exc.strerror}; point {SETTING} at a writable place"
                ) from None
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
            # Plain postgresql:// would pick psycopg2, which we do not ship.
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=True)
    event.listen(engine, "handle_error", functools.partial(_explain_unavailable, parsed))
    return engine


def _explain_unavailable(url: URL, context: ExceptionContext) -> None:
    """Replace a connection failure with one line naming the setting and the host (not the password)."""
    if context.is_pre_ping or not (context.connection is None or context.is_disconnect):
        return
    reason = str(context.original_exception).strip().splitlines()
    detail = reason[0] if reason else type(context.original_exception).__name__
    if url.password:
        detail = detail.replace(str(url.password), "***")
    lost = "lost the connection to" if context.is_disconnect and context.connection is not None else "cannot connect to"
    raise DatabaseUnavailable(
        f"{lost} the history database ({describe(url)}, from {SETTING}): {detail}; "
        f"check that the server is up and {SETTING} is right (percent-encode @ : / in the password)"
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@functools.lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """Return the cached engine for ``url`` (default: the configured history database)."""
    if url is None:
        from prewarm.settings import get_settings

        url = get_settings().resolved_database_url
    return make_engine(url)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error, always close."""
    session = session_factory(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
