"""The command line as a whole: global options, the order of commands, the same names for the same options
everywhere, help without type noise, and the README's command table kept in step with ``prewarm --help``."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import typer.rich_utils
from typer.testing import CliRunner

from prewarm.cli.main import COMMANDS, app
from prewarm.cli import output
from prewarm.cli.output import configure_logging

ROOT = Path(__file__).resolve().parents[2]
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}
ORDER = ["ingest", "forecast", "plan", "simulate", "serve", "webhook", "demo"]


def run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    env = env or WIDE
    # typer reads TERMINAL_WIDTH once, when its help renderer is imported; set it for this run.
    with mock.patch.object(typer.rich_utils, "MAX_WIDTH", int(env["TERMINAL_WIDTH"])):
        return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def help_commands(text: str) -> list[tuple[str, str]]:
    """(command, description) rows of the Commands panel of a rich ``--help`` page."""
    panel = text[text.index("Commands") :]
    rows = []
    for line in panel.splitlines()[1:]:
        match = re.match(r"^│ (\S+)\s{2,}(.+?)\s*│$", line)
        if match:
            rows.append((match[1], match[2]))
    return rows


def every_command_path() -> list[list[str]]:
    """The argv prefix of every command and sub-command, e.g. ``["hosts", "add"]``."""
    paths: list[list[str]] = []
    for entry in COMMANDS:
        result = run(entry.name, "--help")
        assert result.exit_code == 0, result.output
        subs = help_commands(result.stdout) if "Commands" in result.stdout else []
        paths.extend([[entry.name, sub] for sub, _ in subs] or [[entry.name]])
    return paths


NARROW = {"COLUMNS": "80", "TERMINAL_WIDTH": "80", "NO_COLOR": "1"}


def description_width(page: str) -> int:
    """Width of the Options panel's description column, read off the ``--help`` row."""
    row = next(line for line in page.splitlines() if "--help" in line and "Show this" in line)
    return row.rindex("│") - row.index("Show this") - 1


def test_every_help_page_fits_80_columns() -> None:
    paths = [[], *every_command_path()]
    assert ["hosts", "add"] in paths and ["models", "import"] in paths and ["warm"] in paths
    for path in paths:
        page = run(*path, "--help", env=NARROW).stdout
        assert "…" not in page, path  # no option name cut
        assert max(len(line) for line in page.splitlines()) <= 80, path
        assert description_width(page) >= 30, (path, description_width(page))


@pytest.mark.parametrize(("path", "option"), [(["hosts", "add"], "--unversioned"), (["warm"], "--unversioned"),
                                              (["hosts", "add"], "--max-warmups"), (["demo"], "--horizon")])
def test_long_option_names_are_whole_at_80_columns(path: list[str], option: str) -> None:
    page = run(*path, "--help", env=NARROW).stdout
    assert re.search(rf"│\s+(\*\s+)?{option}\s", page), page


def test_ranges_show_in_a_short_type_label_and_are_still_checked() -> None:
    page = run("demo", "--help", env=NARROW).stdout
    assert "<int 1-168>" in page and "<float ≥1>" in page and "range>" not in page
    result = CliRunner().invoke(app, ["demo", "--horizon", "169"], env=NARROW)
    assert result.exit_code == 2 and "--horizon': must be at most 168" in " ".join(result.output.split())


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert re.fullmatch(r"prewarm \S+\n", result.stdout)


def test_commands_listed_in_order_daily_path_first() -> None:
    listed = [name for name, _ in help_commands(run("--help").stdout)]
    assert listed[: len(ORDER)] == ORDER
    assert sorted(listed) == sorted(entry.name for entry in COMMANDS)


@pytest.mark.parametrize(
    "argv", [["-v", "models", "list"], ["models", "-v", "list"], ["models", "list", "-v"], ["models", "list", "-vv"]]
)
def test_verbose_before_or_after_the_command(argv: list[str], engine: object) -> None:
    result = run(*argv)
    assert result.exit_code == 0, result.output


def test_no_bool_types_in_any_help() -> None:
    pages = [run("--help").stdout] + [run(*path, "--help").stdout for path in every_command_path()]
    for page in pages:
        assert "<bool>" not in page
        assert "--verbose" in page


@pytest.mark.parametrize("command", ["forecast", "plan", "simulate"])
def test_same_options_in_forecast_plan_simulate(command: str) -> None:
    page = run(command, "--help").stdout
    for long, short in (("--input", "-i"), ("--level", "-l"), ("--output", "-o")):
        assert re.search(rf"{long}\s+{short}\b", page), (command, long)
    assert "--fast " in page
    assert "--fast-forecast" not in page and "--out " not in page and "--decisions-dir" not in page


def test_replay_reads_input_and_writes_output_like_the_others() -> None:
    page = run("replay", "--help").stdout
    assert re.search(r"--input,--trace\s+-i\b", page) and re.search(r"--output,--out\s+-o\b", page)


@pytest.mark.parametrize("command", ["forecast", "plan", "demo"])
def test_fast_and_output_where_they_make_sense(command: str) -> None:
    page = run(command, "--help").stdout
    assert "--fast " in page and re.search(r"--output\s+-o\b", page)


def test_forecast_help_says_output_is_required_with_input() -> None:
    page = " ".join(run("forecast", "--help").stdout.split())
    assert "Required with --input" in page


def test_level_defaults_are_explained() -> None:
    plan = " ".join(run("plan", "--help").stdout.split())
    simulate = " ".join(run("simulate", "--help").stdout.split())
    assert "Default 80 with --input" in plan and "95 with --pool" in plan
    assert "(80, as plan --input)" in simulate


def test_webhook_default_port_is_not_dasks() -> None:
    page = run("webhook", "--help").stdout
    assert "8717" in page and "[default: 8787]" not in page


def test_help_imports_no_subcommand_module() -> None:
    code = (
        "import sys\n"
        "from prewarm.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('pandas', 'torch', 'prefect', 'sqlalchemy', 'prewarm.cli.plan') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "HEAVY []" in out


def readme_commands() -> list[tuple[str, str]]:
    """(command, description) per row of the README's command table."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Command line") :].split("\n\n")[1]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.match(r"`prewarm ([a-z-]+)", cells[0])
        assert name, line
        rows.append((name[1], cells[-1]))
    return rows


def test_readme_command_table_matches_help() -> None:
    assert readme_commands() == help_commands(run("--help").stdout)


def test_readme_starts_with_make_demo_then_make_test() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    assert [b.strip() for b in blocks[:2]] == ["make demo", "make test"]


@pytest.fixture
def quiet_afterwards():  # type: ignore[no-untyped-def]
    """Put logging back as a run without -v leaves it, for the tests that follow."""
    yield
    configure_logging(0)


def test_verbose_shows_progress_and_keeps_request_logs_for_vv(
    tmp_path: Path, engine: object, quiet_afterwards: None
) -> None:
    source = tmp_path / "t.csv"
    source.write_text("timestamp,model,requests\n2026-11-01T00:00:00Z,a,1\n")
    assert "INFO prewarm.telemetry" not in run("ingest", str(source)).stderr
    assert "INFO prewarm.telemetry: read 1 rows" in run("ingest", str(source), "-v").stderr


@pytest.mark.parametrize(("level", "shown"), [(0, False), (1, False), (2, True)])
def test_library_request_logs_only_at_vv(
    level: int, shown: bool, capsys: pytest.CaptureFixture[str], quiet_afterwards: None
) -> None:
    configure_logging(level)
    logging.getLogger("httpx").info('HTTP Request: GET http://127.0.0.1/api/csrf-token "HTTP/1.1 422"')
    logging.getLogger("controller.reconcile").info("tick done")
    err = capsys.readouterr().err
    assert ("csrf-token" in err) is shown
    assert ("tick done" in err) is (level >= 1)


def test_old_spellings_of_host_options_still_work(engine: object) -> None:
    added = run("hosts", "add", "k1", "http://10.0.0.7:8000", "--pool", "p", "--no-versioned-routes",
                "--max-concurrent-warmups", "3")
    assert added.exit_code == 0, added.output
    again = run("hosts", "add", "k2", "http://10.0.0.8:8000", "--pool", "p", "--unversioned", "--max-warmups", "2")
    assert again.exit_code == 0, again.output
    listed = {h["name"]: h for h in json.loads(run("hosts", "list", "--json").stdout)}
    assert (listed["k1"]["versioned_routes"], listed["k1"]["max_concurrent_warmups"]) == (False, 3)
    assert (listed["k2"]["versioned_routes"], listed["k2"]["max_concurrent_warmups"]) == (False, 2)


@pytest.mark.parametrize("flags", [["--versioned", "--unversioned"], ["--versioned", "--no-versioned-routes"]])
def test_contradicting_route_flags_exit_2_on_one_line(flags: list[str], engine: object) -> None:
    result = CliRunner().invoke(app, ["hosts", "add", "k3", "http://10.0.0.9:8000", "--pool", "p", *flags])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0 and "contradict or repeat each other" in result.stderr


@pytest.fixture
def prefect_env(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """No PREFECT_LOGGING_LEVEL from the user; whatever the test sets is undone afterwards."""
    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)
    monkeypatch.setattr(output, "_user_env", {})
    yield monkeypatch
    configure_logging(0)


@pytest.mark.parametrize(("level", "prefect"), [(0, "WARNING"), (1, "WARNING"), (2, "INFO"), (3, "DEBUG")])
def test_prefects_level_follows_verbosity(level: int, prefect: str, prefect_env: pytest.MonkeyPatch) -> None:
    configure_logging(level)
    assert os.environ["PREFECT_LOGGING_LEVEL"] == prefect  # read by Prefect when it sets up its logging
    logger = logging.getLogger("prefect")
    assert logging.getLevelName(logger.level) == prefect
    assert logger.propagate  # its records reach the console through the root logger's handler


def test_a_prefect_level_the_user_exported_wins(prefect_env: pytest.MonkeyPatch) -> None:
    prefect_env.setenv("PREFECT_LOGGING_LEVEL", "ERROR")
    configure_logging(2)
    assert os.environ["PREFECT_LOGGING_LEVEL"] == "ERROR"


PREFECT_RUN_LOGS = """\
import logging, sys
from prewarm.cli import output
from prewarm.cli.output import configure_logging
configure_logging(int(sys.argv[1]))
import prefect  # sets up Prefect's logging from the environment, as the demo's first flow run does
from prefect.logging.configuration import setup_logging
setup_logging()  # and again, as the ephemeral server's app does
logging.getLogger("prefect.flow_runs").info("Beginning flow run", extra={"flow_run_name": "brisk-otter"})
logging.getLogger("prefect.task_runs").info("Finished in state Completed()", extra={"task_run_name": "step-1"})
logging.getLogger("httpx").info('HTTP Request: GET http://127.0.0.1/api/csrf-token "HTTP/1.1 422"')
logging.getLogger("httpx").info('HTTP Request: POST http://127.0.0.1/api/v2/increment-with-lease "HTTP/1.1 503"')
logging.getLogger("prewarm.demo").info("own progress")
"""


@pytest.mark.parametrize("level", [1, 2])
def test_flow_and_task_run_lines_at_vv_request_logs_never_at_v(level: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_LOGGING_TO_API_ENABLED="false", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", PREFECT_RUN_LOGS, str(level)], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=True, timeout=120)
    err = done.stderr
    assert "INFO prewarm.demo: own progress" in err
    assert ("Flow run 'brisk-otter' - Beginning flow run" in err) is (level >= 2)
    assert ("Task run 'step-1' - Finished in state Completed()" in err) is (level >= 2)
    assert ("csrf-token" in err) is (level >= 2) and ("increment-with-lease" in err) is (level >= 2)
    assert "Logging error" not in err


@pytest.mark.parametrize("flags", [["--unversioned", "--versioned-routes"], ["--versioned", "--unversioned"]])
def test_warm_takes_one_route_flag(flags: list[str]) -> None:
    result = CliRunner().invoke(app, ["warm", "m", "--target", "http://127.0.0.1:1", *flags])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "contradict or repeat each other" in result.stderr
