"""What every flow shares: the history database, typed parameters, and the names of things in Prefect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field
from sqlalchemy import Engine

from db.migrate import upgrade
from db.session import get_engine

ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Version = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Replicas = Annotated[int, Field(ge=1, le=1024)]
PoolName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
HostName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Trigger = Literal["scheduled", "manual", "post_deploy"]
Target = Annotated[
    str,
    Field(
        min_length=1,
        description="'local' warms in this process; an http(s):// URL warms on a V2 inference server.",
    ),
]


_MIGRATED: set[str] = set()


def history_engine() -> Engine:
    """The configured history database, migrated to head once per process."""
    from prewarm.settings import get_settings

    url = get_settings().resolved_database_url
    engine = get_engine(url)
    if url not in _MIGRATED:
        upgrade(engine)
        _MIGRATED.add(url)
    return engine


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) from ``parts``."""
    raw = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() else "-" for ch in raw).strip("-")[:100]


def retry_unless(*permanent: type[BaseException]) -> Callable[[Any, Any, Any], bool]:
    """A ``retry_condition_fn`` that retries every failure except the ``permanent`` exception types.

    Retries are for what may pass next time (a database or bucket that blinked), never for a wrong input.
    """

    def should_retry(task: Any, task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except permanent:
            return False
        except Exception:
            return True
        return False

    return should_retry
