"""The command line's output layer: the one place that prints, and the mapping of errors to exit codes."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from rich.console import Console
from rich.markup import escape

from prewarm.errors import InputError, PrewarmError, SourceError
from prewarm.text import duration, moment, plural, span, window

__all__ = [
    "Notes", "console", "duration", "err_console", "exits_cleanly", "fail", "moment", "plural", "span", "warn", "window",
]

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

EXIT_INPUT = 2
EXIT_FAILURE = 1


def fail(message: str, code: int = EXIT_INPUT) -> None:
    """Print one error line to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def warn(message: str) -> None:
    """Print one warning line to stderr; the command goes on."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def exits_cleanly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn prewarm's own errors into one message and an exit code instead of a traceback.

    Input and source errors exit 2 (the user can fix them); other prewarm errors exit 1.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (InputError, SourceError) as exc:
            fail(str(exc), EXIT_INPUT)
        except PrewarmError as exc:
            fail(str(exc), EXIT_FAILURE)
        except ValueError as exc:  # pydantic's ValidationError is one
            message = settings_error(exc)
            if message is None:
                raise
            fail(message, EXIT_INPUT)
        raise AssertionError("unreachable")

    return wrapper


def settings_error(exc: Exception) -> str | None:
    """One line for a bad ``PREWARM_*`` setting: which variable, its value, what is wrong; None for other errors."""
    from prewarm.text import validation_message

    if type(exc).__name__ != "ValidationError" or getattr(exc, "title", None) != "Settings":
        return None
    problems = []
    for error in exc.errors():  # type: ignore[attr-defined]
        path = "__".join(str(part) for part in error.get("loc", ()) if not isinstance(part, int))
        where = f"PREWARM_{path.upper()}={error.get('input')!r}: " if path else ""
        hint = " (a duration such as PT1H, 01:00:00 or 3600 seconds)" if "time_delta" in error.get("type", "") else ""
        problems.append(where + validation_message(error) + hint)
    return f"settings: {'; '.join(problems)}; fix or unset the environment variable"


# Libraries whose request-by-request logs are noise at -v (a 422 from Prefect's csrf-token probe, a 503 from a
# concurrency lease while the server starts are normal); -vv shows them.
CHATTY_LOGGERS = ("httpx", "httpcore", "urllib3", "botocore", "aiosqlite", "alembic", "docket")
# prewarm's own packages. Their records go to our handler directly, not through the root logger: Prefect
# replaces the root's handlers and level (WARNING) when it is imported, which happens after this runs.
OWN_PACKAGES = ("prewarm", "db", "forecasting", "warmers", "scheduling", "controller", "flows")
# Prefect sets up its own loggers (``prefect``, and below it ``prefect.flow_runs``, ``prefect.task_runs``) from
# PREFECT_LOGGING_LEVEL each time it configures logging, dropping any handler put on them before. So its level is
# chosen through that variable (a value the user exported wins) and its records reach the console through the
# root logger, whose handler Prefect installs.
PREFECT_LEVEL_VAR = "PREFECT_LOGGING_LEVEL"
PREFECT_LOGGERS = ("prefect", "prefect.client", "prefect.extra", "prefect.infrastructure")
_HANDLER_NAME = "prewarm-cli"
_verbosity = 0
_saved: dict[str, tuple[int, bool]] = {}
_user_env: dict[str, str | None] = {}


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests swap it per run)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _handler() -> logging.Handler:
    handler = _CurrentStderr()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    return handler


def verbosity() -> int:
    """How many ``-v`` the command line was given (before and after the sub-command together)."""
    return _verbosity


def configure_logging(level: int | bool) -> None:
    """Logs on stderr: warnings by default, prewarm's progress at ``-v``, the libraries' request logs at ``-vv``.

    ``-vv`` also shows Prefect's flow-run and task-run lines; ``-vvv`` everything at DEBUG. Without ``-v`` the
    libraries' records reach the root logger's handlers (warnings and worse) as usual.
    """
    global _verbosity
    _verbosity = int(level)
    for name in OWN_PACKAGES:
        _route(name, logging.INFO if _verbosity == 1 else logging.DEBUG if _verbosity >= 2 else None)
    # Below -vv the libraries stay as they are: their INFO records stop at the root's WARNING.
    for name in CHATTY_LOGGERS:
        _route(name, logging.INFO if _verbosity == 2 else logging.DEBUG if _verbosity > 2 else None)
    _set_prefect_level(prefect_level(_verbosity))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_handler())


def prefect_level(verbosity: int) -> str:
    """Prefect's log level for a verbosity: its INFO lines (flow and task runs) only from ``-vv``."""
    return "WARNING" if verbosity < 2 else "INFO" if verbosity == 2 else "DEBUG"


def _set_prefect_level(level: str) -> None:
    """Prefect's level for its next set-up (the variable) and, if it has set up already, now (its loggers)."""
    user = _user_env.setdefault(PREFECT_LEVEL_VAR, os.environ.get(PREFECT_LEVEL_VAR))
    if user is not None:
        return
    os.environ[PREFECT_LEVEL_VAR] = level
    for name in PREFECT_LOGGERS:
        logging.getLogger(name).setLevel(level)


def _route(name: str, level: int | None) -> None:
    """Send ``name``'s records of ``level`` and worse to stderr through our handler; None undoes it."""
    logger = logging.getLogger(name)
    ours = [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]
    if level is None:
        if name in _saved:
            logger.setLevel(_saved[name][0])
            logger.propagate = _saved.pop(name)[1]
        for handler in ours:
            logger.removeHandler(handler)
        return
    _saved.setdefault(name, (logger.level, logger.propagate))
    logger.setLevel(level)
    logger.propagate = False  # no second copy through the root's handlers
    if not ours:
        logger.addHandler(_handler())


class Notes:
    """Long texts moved out of a table's cells: each distinct text gets a number, printed under the table."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def mark(self, text: str | None) -> str:
        """The cell for ``text``: its note number, ``-`` when there is none."""
        if not text:
            return "-"
        return str(self._numbers.setdefault(text, len(self._numbers) + 1))

    def lines(self) -> list[str]:
        """``1: text`` per note, in order of first use."""
        return [f"{number}: {text}" for text, number in self._numbers.items()]

    def print(self, heading: str = "notes") -> None:
        """Print the notes under the table (nothing when there are none)."""
        if self._numbers:
            console.print(f"{heading}:", highlight=False)
            for line in self.lines():
                console.print(f"  {escape(line)}", highlight=False, soft_wrap=False)
