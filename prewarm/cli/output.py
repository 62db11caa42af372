"""The command line's output layer: the one place that prints, and the mapping of errors to exit codes."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from rich.console import Console
from rich.markup import escape

from prewarm.errors import InputError, PrewarmError, SourceError

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
        raise AssertionError("unreachable")

    return wrapper


def configure_logging(verbose: bool) -> None:
    """Send library logs to stderr: INFO with ``--verbose``, WARNING otherwise."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
