"""``prewarm``: the command line. Each sub-command lives in its own module and is registered here."""

from __future__ import annotations

import typer

from prewarm.cli import hosts, ingest, models
from prewarm.cli import plan as plan_cli
from prewarm.cli import reconcile as reconcile_cli
from prewarm.cli import replay as replay_cli
from prewarm.cli import report as report_cli
from prewarm.cli import simulate as simulate_cli
from prewarm.cli.forecast import forecast_command
from prewarm.cli import webhook as webhook_cli
from prewarm.cli.demo import demo as demo_command
from prewarm.cli.serve import serve
from prewarm.cli.warm import warm as warm_command
from prewarm.cli.output import configure_logging

app = typer.Typer(
    name="prewarm",
    help="Keep ML models warm before traffic arrives: ingest telemetry, forecast, plan, warm.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr.")) -> None:
    """Keep ML models warm before traffic arrives."""
    configure_logging(verbose)


app.command("ingest")(ingest.ingest)
app.command("forecast")(forecast_command)
app.add_typer(models.app, name="models")
app.add_typer(hosts.app, name="hosts")
app.command("webhook")(webhook_cli.webhook)
app.command("serve")(serve)
app.command("warm")(warm_command)
app.command("simulate")(simulate_cli.simulate)
app.command("plan")(plan_cli.plan)
app.command("reconcile")(reconcile_cli.reconcile)
app.command("report")(report_cli.report)
app.command("replay")(replay_cli.replay)
app.command("demo")(demo_command)
