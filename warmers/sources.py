"""Where the host's model specs come from: a fleet file, the history database's registry, or the example fleet.

Entries with ``server: foreign`` live on another V2 server, so no source hands them to the host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from prewarm.fleet import ModelSpec, load_fleet

logger = logging.getLogger(__name__)

EXAMPLE_FLEET = Path(__file__).resolve().parents[1] / "examples" / "fleet.yaml"

SpecSource = Callable[[], list[ModelSpec]]


def own_models(specs: list[ModelSpec]) -> list[ModelSpec]:
    """The specs prewarm's engine serves: every one but those declared ``server: foreign``."""
    return [spec for spec in specs if not spec.foreign]


def fleet_source(path: str | Path) -> SpecSource:
    """Specs read from a fleet file (re-read on every refresh, so edits are picked up by a load)."""
    return lambda: own_models(list(load_fleet(path).models))


def registry_specs() -> list[ModelSpec]:
    """The newest registered version of each model in the history database, foreign ones too; empty if none."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from db.registry import latest_models, spec_of
    from db.session import get_engine, session_scope
    from prewarm.settings import get_settings

    url = make_url(get_settings().resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return []
    try:
        with session_scope(get_engine(url.render_as_string(hide_password=False))) as session:
            return [spec_of(row) for row in latest_models(session)]
    except SQLAlchemyError as exc:
        logger.warning("cannot read the model registry (%s); serving the example fleet", exc.__class__.__name__)
        return []


def default_source() -> SpecSource:
    """The registry's models if any are registered, else the example fleet (decided at every refresh)."""

    def specs() -> list[ModelSpec]:
        registered = registry_specs()
        if registered:  # a registry of foreign models only leaves the host nothing to serve, not the examples
            return own_models(registered)
        return list(load_fleet(EXAMPLE_FLEET).models)

    return specs
