"""The post-deploy webhook: ``POST /hooks/model-deployed`` registers a new model version and emits a Prefect event.

A CI/CD pipeline calls it after it ships a model version. The request is signed::

    X-Prewarm-Timestamp: 1767225600
    X-Prewarm-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" keyed with PREWARM_WEBHOOK_SECRET>

Rejections: a missing or wrong signature, or a timestamp more than five minutes off, is 401; a body over 64 KiB
is 413; malformed JSON or unknown fields are 422; a model that was never registered and comes without an
artifact is 404. On success the version is registered and the ``prewarm.model.deployed`` event (which the
``post-deploy-warm`` deployment's trigger listens for) is emitted; the answer is 202 with the event id.

HTTP status codes live here, at the edge, and nowhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from db.models import Model
from db.registry import get_model, spec_of, upsert_models
from db.session import session_factory
from prewarm.errors import PrewarmError
from prewarm.fleet import ModelSpec
from prewarm.text import validation_message

logger = logging.getLogger(__name__)

DEPLOYED_EVENT = "prewarm.model.deployed"
PATH = "/hooks/model-deployed"
TIMESTAMP_HEADER = "X-Prewarm-Timestamp"
SIGNATURE_HEADER = "X-Prewarm-Signature"
MAX_BODY_BYTES = 64 * 1024
TOLERANCE_SECONDS = 300
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"

Emitter = Callable[["ModelDeployed"], Awaitable[str]]


class WebhookError(PrewarmError):
    """A webhook request that cannot be accepted."""


class SignatureError(WebhookError):
    """The request is not signed with the shared secret, or its timestamp is stale."""


class UnknownModelError(WebhookError):
    """A version of a model that was never registered arrived without an artifact to register it from."""


class ModelDeployed(BaseModel):
    """The webhook body: which model version was deployed, and optionally where its artifact is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    version: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    artifact_uri: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Prewarm-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Headers that make ``body`` a valid webhook request now (or at ``timestamp``)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret, stamp, body),
        "Content-Type": "application/json",
    }


def verify_signature(
    secret: str, *, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> None:
    """Raise :class:`SignatureError` unless ``signature`` signs ``body`` at a ``timestamp`` within five minutes."""
    if not timestamp or not signature:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header: sign the request")
    try:
        stamp = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds, got {timestamp[:40]!r}") from None
    if abs(now - stamp) > TOLERANCE_SECONDS:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {int(now - stamp)} s off the receiver's clock (limit {TOLERANCE_SECONDS} s):"
            " send the current time and check the sender's clock"
        )
    if not hmac.compare_digest(sign(secret, stamp, body), signature.strip()):
        raise SignatureError(
            f"{SIGNATURE_HEADER} does not match: expected sha256=HMAC-SHA256(secret, '<timestamp>.<raw body>')"
        )


def register_version(engine: Engine, deployed: ModelDeployed) -> Model:
    """Register ``deployed`` as a new version, copying the newest registered version's warm-up spec.

    The artifact URI and sha256 come from the body when given, else from the previous version. Raises
    :class:`UnknownModelError` for a model that was never registered (import its fleet entry first).
    """
    with session_factory(engine).begin() as session:
        previous = get_model(session, deployed.model)
        if previous is None:
            raise UnknownModelError(
                f"model {deployed.model!r} is not registered: import its fleet entry with"
                " `prewarm models import FLEET` before announcing new versions"
            )
        base = spec_of(previous)
        update: dict[str, Any] = {"version": deployed.version}
        if deployed.artifact_uri is not None:
            update["artifact_uri"] = deployed.artifact_uri
        if deployed.sha256 is not None:
            update["sha256"] = deployed.sha256
        spec = ModelSpec.model_validate({**base.model_dump(), **update})
        (row,) = upsert_models(session, [spec])
        return row


async def emit_deployed_event(deployed: ModelDeployed) -> str:
    """Send ``prewarm.model.deployed`` to the configured Prefect API and return the event id."""
    from prefect.events import Event
    from prefect.events.clients import get_events_client

    event = Event(
        event=DEPLOYED_EVENT,
        resource={
            "prefect.resource.id": f"prewarm.model.{deployed.model}",
            "prefect.resource.name": deployed.model,
            "prewarm.version": deployed.version,
        },
        payload=deployed.model_dump(mode="json"),
    )
    async with get_events_client() as client:
        await client.emit(event)
    return str(event.id)


async def _read_limited(request: Request) -> bytes | None:
    """The raw body, or None once it grows past the limit (checked before any signature work)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _reject(status: int, detail: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


def create_app(
    *, secret: str, engine: Engine, emit: Emitter | None = None, clock: Callable[[], float] = time.time
) -> FastAPI:
    """The webhook receiver: verifies, registers, emits. ``emit`` defaults to Prefect's events API."""
    if not secret:
        raise WebhookError("the webhook secret is empty: set PREWARM_WEBHOOK_SECRET to a long random string")
    emitter = emit or emit_deployed_event
    app = FastAPI(title="prewarm webhook", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(PATH, status_code=202)
    async def model_deployed(request: Request) -> JSONResponse:
        body = await _read_limited(request)
        if body is None:
            return _reject(413, f"body is larger than {MAX_BODY_BYTES} bytes")
        try:
            verify_signature(
                secret,
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                signature=request.headers.get(SIGNATURE_HEADER),
                body=body,
                now=clock(),
            )
        except SignatureError as exc:
            logger.warning(
                "rejected webhook from %s: %s", request.client.host if request.client else "?", exc
            )
            return _reject(401, str(exc))
        try:
            deployed = ModelDeployed.model_validate_json(body)
        except ValidationError as exc:
            return _reject(422, [{"loc": list(e["loc"]), "msg": validation_message(e)} for e in exc.errors()])
        try:
            row = await run_in_threadpool(register_version, engine, deployed)
        except UnknownModelError as exc:
            return _reject(404, str(exc))
        try:
            event_id = await emitter(deployed)
        except Exception as exc:
            # The version stays registered (registration is idempotent); the sender retries the delivery.
            logger.exception("could not emit %s for %s %s", DEPLOYED_EVENT, deployed.model, deployed.version)
            return _reject(503, f"registered, but the Prefect event could not be sent ({exc}); retry")
        logger.info("model %s version %s deployed: event %s", row.name, row.version, event_id)
        return JSONResponse(
            status_code=202,
            content={
                "event_id": event_id,
                "event": DEPLOYED_EVENT,
                "model": row.name,
                "version": row.version,
            },
        )

    return app
