"""Options that several commands share: the same names, short forms and meaning everywhere.

``--input/-i`` (a telemetry file or folder), ``--horizon/-H``, ``--level/-l``, ``--output/-o``, ``--fast``,
``--jobs/-j``, ``--versioned``/``--unversioned``. Older spellings stay as hidden aliases (``--out``, ``--fast-forecast``,
``--versioned-routes/--no-versioned-routes``) so that scripts keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

FAST_HELP = "Skip the per-series backtests that pick each model's forecaster (cheaper, less accurate)."
INPUT_HELP = "Telemetry: a CSV or Parquet file (timestamp,model,requests), or a folder of them."


def input_option(help: str = INPUT_HELP, *, required: bool = False) -> Any:  # noqa: A002 - typer's name
    """``--input/-i``: a telemetry file or folder."""
    return typer.Option(... if required else None, "--input", "-i", help=help)


def horizon_option(default: Any, help: str) -> Any:  # noqa: A002
    """``--horizon/-H``: intervals ahead."""
    return typer.Option(default, "--horizon", "-H", min=1, help=help)


def level_option(default: float | None, help: str) -> Any:  # noqa: A002
    """``--level/-l``: a prediction interval level in percent."""
    return typer.Option(default, "--level", "-l", help=help)


def output_option(default: Path | None, help: str) -> Any:  # noqa: A002
    """``--output/-o``."""
    return typer.Option(default, "--output", "-o", help=help)


def fast_option() -> Any:
    """``--fast``: forecasts without backtest selection."""
    return typer.Option(False, "--fast", help=FAST_HELP)


def versioned_option() -> Any:
    """``--versioned``: the V2 server has ``/versions/{v}`` routes (neither flag: the client detects it)."""
    return typer.Option(False, "--versioned", help="The server has /versions/{v} routes (default: detect).")


def unversioned_option() -> Any:
    """``--unversioned``: the V2 server has no versioned routes (KServe's answer 501 on them)."""
    return typer.Option(False, "--unversioned", help="The server has no /versions/{v} routes (e.g. KServe).")


def versioned_alias() -> Any:
    """``--versioned-routes/--no-versioned-routes``: the old spelling of ``--versioned`` and ``--unversioned``."""
    return typer.Option(None, "--versioned-routes/--no-versioned-routes", hidden=True)


def versioned_routes(*, versioned: bool, unversioned: bool, alias: bool | None) -> bool | None:
    """Whether the server has versioned routes: True, False, or None to detect it on the first call."""
    from prewarm.errors import InputError

    given = [flag for flag, on in (("--versioned", versioned), ("--unversioned", unversioned)) if on]
    if alias is not None:
        given.append("--versioned-routes" if alias else "--no-versioned-routes")
    if len(given) > 1:
        raise InputError(f"{' and '.join(given)} contradict or repeat each other: give one of them")
    if alias is not None:
        return alias
    return True if versioned else False if unversioned else None


def hidden_alias(name: str, default: Any = None) -> Any:
    """An old spelling of an option, accepted but not shown in ``--help``."""
    return typer.Option(default, name, hidden=True)


def check_level(level: float) -> None:
    """A level must lie strictly between 0 and 100 percent."""
    from prewarm.errors import InputError

    if not 0 < level < 100:
        raise InputError(f"--level {level:g}: must be between 0 and 100 (exclusive), e.g. 80 or 95")


def pick(name: str, value: Any, alias_name: str, alias: Any) -> Any:
    """The value of an option given under its name or its hidden alias (not both)."""
    from prewarm.errors import InputError

    if alias is None or alias is False:
        return value
    if value is not None and value is not False:
        raise InputError(f"{alias_name} is another name for {name}: give one of them")
    return alias
