"""``prewarm webhook``: serve the signed post-deploy webhook (``POST /hooks/model-deployed``)."""

from __future__ import annotations

import typer

from db.migrate import upgrade
from db.session import get_engine
from prewarm.cli.output import console, exits_cleanly
from prewarm.errors import InputError
from prewarm.settings import get_settings

DEFAULT_PORT = 8717


@exits_cleanly
def webhook(
    port: int = typer.Option(
        DEFAULT_PORT, "--port", "-p", min=1, max=65535, help="TCP port to listen on (clear of Dask's dashboard, 8787)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 for every interface."),
) -> None:
    """Receive signed model-deployed webhooks: register the version and emit prewarm.model.deployed to Prefect."""
    from prewarm.webhook import PATH, create_app, serve

    secret = get_settings().webhook_secret
    if secret is None or not secret.get_secret_value():
        raise InputError("PREWARM_WEBHOOK_SECRET is not set: export the HMAC key the senders sign with")
    engine = get_engine()
    upgrade(engine)
    app = create_app(secret=secret.get_secret_value(), engine=engine)
    console.print(f"Listening on http://{host}:{port}{PATH}")
    serve(app, host=host, port=port)
