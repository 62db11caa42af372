"""``prewarm``: the command line.

Each sub-command lives in its own module and is listed once, in :data:`COMMANDS`, with its one-line
description. Modules are imported only when their command runs (or its ``--help`` is asked for), so that
``prewarm --help`` does not pay for pandas, torch or Prefect. Adding a command is one line in the table.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from prewarm.cli.output import configure_logging, verbosity

HELP = "Keep ML models warm before traffic arrives: ingest telemetry, forecast, plan, warm."


@dataclass(frozen=True)
class CommandEntry:
    """A sub-command: its name, where it lives (``module:attribute``) and the line ``prewarm --help`` shows."""

    name: str
    target: str
    summary: str


# The order ``prewarm --help`` lists them in: the daily path first, then the tools around it.
COMMANDS: tuple[CommandEntry, ...] = (
    CommandEntry("ingest", "prewarm.cli.ingest:ingest", "Load request telemetry: files, folders, S3 or Prometheus."),
    CommandEntry("forecast", "prewarm.cli.forecast:forecast_command", "Forecast each model's demand with intervals."),
    CommandEntry("plan", "prewarm.cli.plan:plan", "Turn forecasts into warm windows, for a file or a pool."),
    CommandEntry("simulate", "prewarm.cli.simulate:simulate", "Compare warm-up policies on a telemetry trace."),
    CommandEntry("serve", "prewarm.cli.serve:serve", "Run an inference host (Open Inference Protocol V2)."),
    CommandEntry("webhook", "prewarm.cli.webhook:webhook", "Receive signed post-deploy webhooks."),
    CommandEntry("demo", "prewarm.cli.demo:demo", "Run the whole loop on the example fleet, on this machine."),
    CommandEntry("models", "prewarm.cli.models:app", "Register and list model versions."),
    CommandEntry("hosts", "prewarm.cli.hosts:app", "The serving hosts of each pool: add, list, drain, remove."),
    CommandEntry("warm", "prewarm.cli.warm:warm", "Warm one model on a V2 server and record the run."),
    CommandEntry("reconcile", "prewarm.cli.reconcile:reconcile", "Run one fleet-controller tick over a pool."),
    CommandEntry("report", "prewarm.cli.report:report", "Cold starts per model and day, with and without a plan."),
    CommandEntry("replay", "prewarm.cli.replay:replay", "Replay a trace through real hosts and compare warm policies."),
)
_BY_NAME = {entry.name: entry for entry in COMMANDS}

VERBOSE_HELP = "-v: progress; -vv: also the libraries' logs (Prefect's runs, HTTP requests)."


class PrewarmCommand(TyperCommand):
    """A command whose ``--help`` fits 80 columns: no ``<bool>`` on flags, ranges in a short type label."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _compact_types(super().get_params(ctx))


class PrewarmGroup(TyperGroup):
    """A group whose ``--help`` fits 80 columns, as :class:`PrewarmCommand`'s."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _compact_types(super().get_params(ctx))


def _compact_types(params: list[Any]) -> list[Any]:
    """Shorten the type column of ``--help``: flags show none, a range shows as ``<int ≥1>``, ``<int 1-168>``.

    Typer's own label (``<int range> [x>=1]``, 18 characters) squeezes the descriptions into a narrow column
    at 80 columns. The range is moved into the label; typer checks values against its parameter info, which
    this leaves alone.
    """
    for param in params:
        if not isinstance(param, TyperOption):
            continue
        if param.is_flag or param.count:
            param.metavar = ""
        elif param.metavar is None and (param.min is not None or param.max is not None):
            param.metavar = _range_label(param.type_descriptor.ranged_type_name, param.min, param.max)
            param.min = param.max = None  # shown in the label; typer would append it again
    return params


def _range_label(kind: str, low: float | None, high: float | None) -> str:
    if high is None:
        return f"<{kind} ≥{low:g}>"
    if low is None:
        return f"<{kind} ≤{high:g}>"
    return f"<{kind} {low:g}-{high:g}>"


class LazyGroup(PrewarmGroup):
    """The top-level group: imports a sub-command's module only when that command is used."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [entry.name for entry in COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = _BY_NAME.get(cmd_name)
        if entry is None:
            return None
        if self._listing:
            # The command list in ``prewarm --help`` needs only names and summaries: no imports.
            return TyperCommand(entry.name, short_help=entry.summary, help=entry.summary)
        return load_command(entry)

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """Click's main, but a usage error (a missing option, a bad value) is one line on stderr and exit code 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _USAGE_ERROR as exc:
            if _NO_ARGS_IS_HELP is not None and isinstance(exc, _NO_ARGS_IS_HELP):
                exc.show()  # the help page itself
            else:
                sys.stderr.write(usage_line(exc) + "\n")
            sys.exit(exc.exit_code)
        except _CLICK_EXCEPTION as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.stderr.write("Aborted!\n")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _click_class(name: str) -> Any:
    """Click's exception ``name`` as the installed typer raises it (typer >= 0.2x carries its own copy of click)."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == name)


_USAGE_ERROR = _click_class("UsageError")
_CLICK_EXCEPTION = _click_class("ClickException")
_NO_ARGS_IS_HELP = getattr(sys.modules[_USAGE_ERROR.__module__], "NoArgsIsHelpError", None)


_PLAIN = (
    # pydantic's wording of typer's value checks, in the words the rest of prewarm's messages use
    (r"Input should be greater than or equal to ", "must be at least "),
    (r"Input should be less than or equal to ", "must be at most "),
    (r"Input should be greater than ", "must be more than "),
    (r"Input should be less than ", "must be less than "),
    (r"Input should be a valid integer(, [^;]*)?", "must be a whole number"),
    (r"Input should be a valid number(, [^;]*)?", "must be a number"),
)


def usage_line(exc: Any) -> str:
    """``error: Missing option '--speedup'; see `prewarm replay --help```: click's message on one line."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    for pattern, plain in _PLAIN:
        message = re.sub(pattern, plain, message)
    command = exc.ctx.command_path if exc.ctx is not None else "prewarm"
    return f"error: {message}; see `{command} --help`"


@functools.cache
def load_command(entry: CommandEntry) -> Any:
    """Import the command's module and build its click command (every flag takes ``-v/--verbose`` too)."""
    module, _, attribute = entry.target.partition(":")
    obj = getattr(importlib.import_module(module), attribute)
    if isinstance(obj, typer.Typer):
        obj.info.cls = PrewarmGroup
        for info in obj.registered_commands:
            if info.cls in (None, TyperCommand):
                info.cls = PrewarmCommand
            info.callback = with_verbose(info.callback)
        if obj.registered_callback is None:
            obj.callback()(with_verbose(_group_options))  # -v between the group and its command, too
        obj._add_completion = False
        command = typer.main.get_command(obj)
    else:
        single = typer.Typer(add_completion=False)
        single.command(entry.name, cls=PrewarmCommand)(with_verbose(obj))
        command = typer.main.get_command(single)
    command.name = entry.name
    command.short_help = entry.summary
    return command


def _group_options() -> None:
    """The options of a command group (``models``, ``hosts``) before its sub-command."""


def with_verbose(func: Callable[..., Any] | None) -> Any:
    """``func`` with a ``-v/--verbose`` option, so that the flag works after the sub-command as well as before."""
    if func is None:
        return None
    signature = inspect.signature(func)
    if "verbose" in signature.parameters:
        return func

    @functools.wraps(func)
    def wrapper(*args: Any, verbose: int = 0, **kwargs: Any) -> Any:
        if verbose:
            configure_logging(verbosity() + verbose)
        return func(*args, **kwargs)

    option = inspect.Parameter(
        "verbose",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(0, "--verbose", "-v", count=True, show_default=False, help=VERBOSE_HELP),
        annotation=int,
    )
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), option])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**getattr(func, "__annotations__", {}), "verbose": "int"}
    return wrapper


def _version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("prewarm")
    except PackageNotFoundError:  # a source checkout that was never installed
        found = "unknown (not installed)"
    typer.echo(f"prewarm {found}")
    raise typer.Exit()


app = typer.Typer(
    name="prewarm",
    cls=LazyGroup,
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, show_default=False, help=VERBOSE_HELP),
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print prewarm's version and exit."
    ),
) -> None:
    """Keep ML models warm before traffic arrives: ingest telemetry, forecast, plan, warm."""
    configure_logging(verbose)


if __name__ == "__main__":
    app()
