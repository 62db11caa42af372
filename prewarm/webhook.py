"""The post-deploy webhook: ``POST /hooks/model-deployed`` registers a new model version and emits a Prefect event.

A CI/CD pipeline calls it after it ships a model version. The request is signed::

    X-Prewarm-Timestamp: 1767225600
    X-Prewarm-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" keyed with PREWARM_WEBHOOK_SECRET>

    X-Prewarm-Delivery: 7f9c...            (optional: the sender's id for this delivery, kept for 24 h)

Rejections: a missing or wrong signature, or a timestamp more than five minutes off, is 401; a body over 64 KiB
is 413; malformed JSON, a body that is not an object, unknown fields or wrong types are 422, and so is an
``artifact_uri`` outside ``PREWARM_ARTIFACT_SOURCES``; a model that was never registered and comes without an
artifact is 404. Every error body is ``{"error": "..."}``. On success the version is registered and the
``prewarm.model.deployed`` event (which the ``post-deploy-warm`` deployment's trigger listens for) is
emitted; the answer is 202 with the event id.

Replays: a delivery with the signature of one already accepted (same timestamp, same body), or with an
``X-Prewarm-Delivery`` id seen in the last 24 hours, answers 200 with the original event id and emits
nothing. The guard lives in the database (``webhook_deliveries``), so it holds across processes.

HTTP status codes live here, at the edge, and nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import posixpath
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from db import deliveries
from db.models import Model, WebhookDelivery
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
DELIVERY_HEADER = "X-Prewarm-Delivery"
MAX_BODY_BYTES = 64 * 1024
MAX_URI_CHARS = 2048
TOLERANCE_SECONDS = 300
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
DELIVERY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ARTIFACT_SCHEMES = ("file", "s3")
# How long a replay waits for the original delivery to finish emitting its event.
REPLAY_WAIT_SECONDS = 10.0

Emitter = Callable[["ModelDeployed"], Awaitable[str]]


class WebhookError(PrewarmError):
    """A webhook request that cannot be accepted."""


class SignatureError(WebhookError):
    """The request is not signed with the shared secret, or its timestamp is stale."""


class UnknownModelError(WebhookError):
    """A version of a model that was never registered arrived without an artifact to register it from."""


class InvalidBodyError(WebhookError):
    """A signed body that names something prewarm cannot register: a bad delivery id or fleet entry."""


class ArtifactSourceError(InvalidBodyError):
    """An ``artifact_uri`` outside the allowed artifact sources, or one that is not a plain file or S3 URI."""


class ModelDeployed(BaseModel):
    """The webhook body: which model version was deployed, and optionally where its artifact is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    version: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    artifact_uri: str | None = Field(default=None, min_length=1, max_length=MAX_URI_CHARS)
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


def _canonical(uri: str, *, what: str) -> tuple[str, str]:
    """``(scheme, path)`` of a file path, ``file://`` or ``s3://`` URI, with ``..`` and NUL refused."""
    if "\x00" in uri:
        raise ArtifactSourceError(f"{what} contains a NUL character")
    parsed = urlsplit(uri)
    scheme = parsed.scheme.lower()
    if scheme == "" or (len(scheme) == 1 and uri[1:2] == ":"):
        scheme, location = "file", uri
    elif scheme not in ARTIFACT_SCHEMES:
        raise ArtifactSourceError(f"{what} {uri[:200]!r}: scheme {scheme!r} is not allowed; use file:// or s3://")
    elif parsed.query or parsed.fragment:
        raise ArtifactSourceError(f"{what} {uri[:200]!r}: a query or fragment is not allowed")
    elif scheme == "s3":
        if not parsed.netloc:
            raise ArtifactSourceError(f"{what} {uri[:200]!r}: expected s3://bucket/key")
        location = f"{parsed.netloc}/{parsed.path.lstrip('/')}"
    else:
        if parsed.netloc not in ("", "localhost"):
            raise ArtifactSourceError(f"{what} {uri[:200]!r}: a file:// URI must not name a host")
        location = unquote(parsed.path)
    decoded = unquote(location)
    if "\x00" in decoded:
        raise ArtifactSourceError(f"{what} contains a NUL character")
    if ".." in decoded.replace("\\", "/").split("/"):
        raise ArtifactSourceError(f"{what} {uri[:200]!r}: '..' is not allowed in artifact paths")
    if scheme == "file":
        if not location.startswith("/"):
            raise ArtifactSourceError(f"{what} {uri[:200]!r}: a local artifact path must be absolute")
        location = posixpath.normpath(location)
    return scheme, location


def check_source(uri: str, sources: Sequence[str]) -> None:
    """Raise :class:`ArtifactSourceError` unless ``uri`` lies under one of the ``sources`` URI prefixes.

    Prefixes match on path boundaries (``s3://models`` does not admit ``s3://models-evil``); ``..``, NUL,
    relative paths and schemes other than ``file`` and ``s3`` are refused outright.
    """
    scheme, location = _canonical(uri, what="artifact_uri")
    for source in sources:
        source_scheme, prefix = _canonical(
            source if urlsplit(source).scheme else posixpath.abspath(source), what="artifact source"
        )
        prefix = prefix.rstrip("/")
        if source_scheme == scheme and (location == prefix or location.startswith(prefix + "/")):
            return
    raise ArtifactSourceError(
        f"artifact_uri {uri[:200]!r} is outside the allowed artifact sources ({', '.join(sources)}):"
        " upload the artifact there, or add its prefix to PREWARM_ARTIFACT_SOURCES"
    )


def delivery_keys(*, signature: str, delivery_id: str | None) -> list[str]:
    """The replay-guard keys of one delivery: its signature, then its delivery id when the sender gave one."""
    keys = [f"signature:{signature.strip().removeprefix('sha256=')}"]
    if delivery_id is not None:
        if not DELIVERY_ID.match(delivery_id):
            raise InvalidBodyError(
                f"{DELIVERY_HEADER} must be 1 to 128 characters of letters, digits and . _ : -"
            )
        keys.append(f"delivery:{delivery_id}")
    return keys


@dataclass(frozen=True, slots=True)
class Accepted:
    """A new delivery: the version it registered."""

    row: Model


@dataclass(frozen=True, slots=True)
class Replay:
    """A delivery seen before, under ``key``."""

    key: str


def accept_delivery(
    engine: Engine, deployed: ModelDeployed, keys: Sequence[str], *, now: datetime
) -> Accepted | Replay:
    """Claim the delivery's keys and register its version, in one transaction.

    A replay rolls back and registers nothing; so does an unknown model (the sender may retry later).
    """
    with session_factory(engine)() as session:
        try:
            # A write comes first: on SQLite the transaction then holds the write lock from its start.
            deliveries.forget_expired(session, now=now, keys=keys)
            taken = deliveries.claim(session, keys, model=deployed.model, version=deployed.version, now=now)
            if taken is not None:
                session.rollback()
                return Replay(key=taken)
            deliveries.forget_expired(session, now=now)
            row = register_in(session, deployed)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return Accepted(row=row)


def register_version(engine: Engine, deployed: ModelDeployed, *, sources: Sequence[str] | None = None) -> Model:
    """Register ``deployed`` in its own transaction, after checking its artifact against ``sources``.

    ``sources`` defaults to the settings' ``resolved_artifact_sources``; an artifact outside them raises
    :class:`ArtifactSourceError` and registers nothing (the post-deploy flow registers through here).
    """
    if deployed.artifact_uri is not None:
        if sources is None:
            from prewarm.settings import get_settings

            sources = get_settings().resolved_artifact_sources
        check_source(deployed.artifact_uri, sources)
    with session_factory(engine).begin() as session:
        return register_in(session, deployed)


def register_in(session: Session, deployed: ModelDeployed) -> Model:
    """Register ``deployed`` as a new version, copying the newest registered version's warm-up spec.

    The artifact URI and sha256 come from the body when given, else from the previous version. Raises
    :class:`UnknownModelError` for a model that was never registered (import its fleet entry first), and
    :class:`InvalidBodyError` when the result is not a valid fleet entry. Runs in the caller's transaction.
    """
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
    try:
        spec = ModelSpec.model_validate({**base.model_dump(), **update})
    except ValidationError as exc:
        raise InvalidBodyError(f"the new version is not a valid fleet entry: {_summary(exc)}") from None
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


class _TooLarge(Exception):
    """The body grew past :data:`MAX_BODY_BYTES`."""


async def _read_limited(request: Request) -> bytes:
    """The raw body; raises :class:`_TooLarge` once it grows past the limit (before any signature work)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_body(request: Request, *, timeout_s: float) -> bytes | JSONResponse:
    """The body, or the answer to a body that is too large, too slow, or never finished (client gone)."""
    client = f"{request.client.host}:{request.client.port}" if request.client else "?"
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_limited(request)
    except _TooLarge:
        return _reject(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    except TimeoutError:
        logger.warning("webhook client %s did not send its body within %.0f s; closing", client, timeout_s)
        return _reject(408, f"the body did not arrive within {timeout_s:.0f} s", close=True)
    except ClientDisconnect:
        logger.warning("webhook client %s disconnected before sending its whole body", client)
        return _reject(400, "the client disconnected", close=True)


def _reject(status: int, message: str, *, close: bool = False) -> JSONResponse:
    headers = {"Connection": "close"} if close else None
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


def _summary(exc: ValidationError) -> str:
    """One line naming each bad field: ``version: Field required; sha256: String should match ...``."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {validation_message(error)}")
    return "; ".join(parts)


def _answer(status: int, event_id: str, model: str, version: str, **extra: Any) -> JSONResponse:
    content = {"event_id": event_id, "event": DEPLOYED_EVENT, "model": model, "version": version, **extra}
    return JSONResponse(status_code=status, content=content)


def create_app(
    *,
    secret: str,
    engine: Engine,
    emit: Emitter | None = None,
    clock: Callable[[], float] = time.time,
    sources: Sequence[str] | None = None,
    read_timeout_s: float | None = None,
) -> FastAPI:
    """The webhook receiver: verifies, registers, emits. ``emit`` defaults to Prefect's events API.

    ``sources`` are the URI prefixes a body's ``artifact_uri`` may name (default: the settings'
    ``resolved_artifact_sources``); ``read_timeout_s`` bounds the wait for the body (default: the settings'
    ``webhook_read_timeout_s``).
    """
    if not secret:
        raise WebhookError("the webhook secret is empty: set PREWARM_WEBHOOK_SECRET to a long random string")
    from prewarm.settings import get_settings

    if sources is None:
        sources = get_settings().resolved_artifact_sources
    body_timeout_s = read_timeout_s if read_timeout_s is not None else get_settings().webhook_read_timeout_s
    allowed = list(sources)
    emitter = emit or emit_deployed_event
    app = FastAPI(title="prewarm webhook", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def replayed(deployed: ModelDeployed, key: str) -> JSONResponse:
        """Answer a replay with the original event id, once the original delivery has emitted it."""
        deadline = time.monotonic() + REPLAY_WAIT_SECONDS
        while True:
            original = await run_in_threadpool(_find_delivery, engine, key)
            if original is not None and original.event_id is not None:
                logger.info("replayed delivery %s: answered with event %s", key[:40], original.event_id)
                return _answer(200, original.event_id, original.model, original.version, replay=True)
            if original is None or time.monotonic() > deadline:
                return _reject(409, "this delivery is being processed or failed; retry it")
            await asyncio.sleep(0.05)

    @app.post(PATH, status_code=202)
    async def model_deployed(request: Request) -> JSONResponse:
        body = await _read_body(request, timeout_s=body_timeout_s)
        if isinstance(body, JSONResponse):
            return body
        signature = request.headers.get(SIGNATURE_HEADER)
        try:
            verify_signature(
                secret,
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                signature=signature,
                body=body,
                now=clock(),
            )
        except SignatureError as exc:
            logger.warning(
                "rejected webhook from %s: %s", request.client.host if request.client else "?", exc
            )
            return _reject(401, str(exc))
        assert signature is not None  # verify_signature refuses a missing one
        try:
            deployed = ModelDeployed.model_validate_json(body)
        except ValidationError as exc:
            return _reject(422, f"invalid body: {_summary(exc)}")
        try:
            if deployed.artifact_uri is not None:
                check_source(deployed.artifact_uri, allowed)
            keys = delivery_keys(signature=signature, delivery_id=request.headers.get(DELIVERY_HEADER))
            now = datetime.fromtimestamp(clock(), UTC)
            outcome = await run_in_threadpool(accept_delivery, engine, deployed, keys, now=now)
        except InvalidBodyError as exc:
            return _reject(422, str(exc))
        except UnknownModelError as exc:
            return _reject(404, str(exc))
        if isinstance(outcome, Replay):
            return await replayed(deployed, outcome.key)
        row = outcome.row
        try:
            event_id = await emitter(deployed)
        except Exception as exc:
            # Forget the delivery, so that the sender's retry is accepted (registration is idempotent).
            logger.warning("could not emit %s for %s %s: %s", DEPLOYED_EVENT, deployed.model, deployed.version, exc)
            await run_in_threadpool(_release_delivery, engine, keys)
            return _reject(503, f"registered, but the Prefect event could not be sent ({exc}); retry")
        await run_in_threadpool(_record_event, engine, keys, event_id)
        logger.info("model %s version %s deployed: event %s", row.name, row.version, event_id)
        return _answer(202, event_id, row.name, row.version)

    return app


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Serve the webhook: requests must finish their headers within ``PREWARM_WEBHOOK_READ_TIMEOUT_S``."""
    from prewarm.http_server import serve as serve_http
    from prewarm.settings import get_settings

    serve_http(app, host=host, port=port, header_timeout_s=get_settings().webhook_read_timeout_s)


def _find_delivery(engine: Engine, key: str) -> WebhookDelivery | None:
    with session_factory(engine)() as session:
        return deliveries.find(session, key)


def _record_event(engine: Engine, keys: Sequence[str], event_id: str) -> None:
    with session_factory(engine).begin() as session:
        deliveries.record_event(session, keys, event_id)


def _release_delivery(engine: Engine, keys: Sequence[str]) -> None:
    with session_factory(engine).begin() as session:
        deliveries.release(session, keys)
