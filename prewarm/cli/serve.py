"""``prewarm serve``: run the inference host (Open Inference Protocol V2) with uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer

from prewarm.cli.output import err_console, exits_cleanly
from prewarm.errors import InputError


@exits_cleanly
def serve(
    port: int = typer.Option(8000, "--port", "-p", help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 for every interface."),
    fleet: Path | None = typer.Option(
        None, "--fleet", help="Fleet file to serve; default: the registry's models, else examples/fleet.yaml."
    ),
    no_preload: bool = typer.Option(False, "--no-preload", help="Start empty; load models through the repository API."),
    cpu_threads: int | None = typer.Option(
        None, "--cpu-threads", min=1, help="torch intra-op threads; 1 gives small CPU models the steadiest tail latency."
    ),
) -> None:
    """Serve models over the Open Inference Protocol V2, warmed and validated before they report ready."""
    import uvicorn

    from prewarm.fleet import load_fleet
    from warmers.host import create_app

    if cpu_threads is not None:
        import torch

        torch.set_num_threads(cpu_threads)
    if fleet is not None:
        load_fleet(fleet)  # a broken fleet file is an input error now, not a log line later
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: must be between 1 and 65535")
    app = create_app(fleet=fleet, load_on_startup=not no_preload)
    err_console.print(f"serving on http://{host}:{port} (V2 inference protocol; /metrics for Prometheus)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
