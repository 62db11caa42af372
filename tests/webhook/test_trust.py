"""The webhook as a trust boundary: allowed artifact sources, replays, racing deliveries, hostile bodies."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from db.models import Model, WebhookDelivery
from db.registry import get_model, upsert_models
from db.session import session_scope
from prewarm.webhook import (
    DELIVERY_HEADER,
    MAX_BODY_BYTES,
    PATH,
    ArtifactSourceError,
    check_source,
    create_app,
    signed_headers,
)
from tests.webhook.servers import serving
from tests.webhook.test_webhook import SECRET, SHA_B, RecordingEmitter, _spec

SOURCES = ["/srv/models", "s3://model-bucket/releases"]


class SlowEmitter(RecordingEmitter):
    """Takes a little time to emit, as the Prefect API does, which widens every race."""

    async def __call__(self, deployed):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.02)
        return await super().__call__(deployed)


@pytest.fixture
def app_client(engine: Engine) -> tuple[TestClient, RecordingEmitter]:
    with session_scope(engine) as session:
        upsert_models(session, [_spec("1")])
    emitter = RecordingEmitter()
    return TestClient(create_app(secret=SECRET, engine=engine, emit=emitter, sources=SOURCES)), emitter


def _rows(engine: Engine, version: str | None = None) -> int:
    with session_scope(engine) as session:
        query = select(func.count()).select_from(Model)
        if version is not None:
            query = query.where(Model.version == version)
        return int(session.scalar(query) or 0)


def _body(**fields: object) -> bytes:
    return json.dumps({"model": "chat-small", "version": "2", **fields}).encode()


@pytest.mark.parametrize(
    "uri",
    [
        "/etc/shadow",
        "../../etc/hostname",
        "/srv/models/../../etc/hostname",
        "file:///srv/models/%2e%2e/secret.pt2",
        "/srv/models-evil/x.pt2",
        "s3://another-bucket/x.pt2",
        "s3://model-bucket/releases-old/x.pt2",
        "http://attacker.example/x.pt2",
        "https://model-bucket.s3.amazonaws.com/releases/x.pt2",
        "gs://model-bucket/releases/x.pt2",
        "/srv/models/x\x00.pt2",
        "file:///srv/models/x%00.pt2",
        "file://otherhost/srv/models/x.pt2",
        "srv/models/x.pt2",
    ],
)
def test_artifact_outside_the_sources_is_422_and_registers_nothing(
    app_client: tuple[TestClient, RecordingEmitter], engine: Engine, uri: str
) -> None:
    client, emitter = app_client
    body = _body(artifact_uri=uri, sha256=SHA_B)
    response = client.post(PATH, content=body, headers=signed_headers(SECRET, body))
    assert response.status_code == 422, response.text
    assert "artifact" in response.json()["error"]
    assert emitter.sent == [] and _rows(engine) == 1


@pytest.mark.parametrize(
    "uri", ["/srv/models/chat-small/2.pt2", "file:///srv/models/chat-small/2.pt2", "s3://model-bucket/releases/2.pt2"]
)
def test_artifact_inside_the_sources_is_registered(
    app_client: tuple[TestClient, RecordingEmitter], engine: Engine, uri: str
) -> None:
    client, emitter = app_client
    body = _body(artifact_uri=uri, sha256=SHA_B)
    assert client.post(PATH, content=body, headers=signed_headers(SECRET, body)).status_code == 202
    with session_scope(engine) as session:
        row = get_model(session, "chat-small", "2")
        assert row is not None and row.artifact_uri == uri


def test_check_source_matches_prefixes_on_boundaries() -> None:
    check_source("s3://model-bucket/releases/a/b.pt2", ["s3://model-bucket/releases/"])
    check_source("/srv/models/a.pt2", ["file:///srv/models"])
    with pytest.raises(ArtifactSourceError, match="outside the allowed artifact sources"):
        check_source("s3://model-bucket/releasesX/b.pt2", ["s3://model-bucket/releases"])
    with pytest.raises(ArtifactSourceError, match="scheme 'http' is not allowed"):
        check_source("http://x/y", ["/srv"])
    with pytest.raises(ArtifactSourceError, match="'..' is not allowed"):
        check_source("s3://model-bucket/releases/../x", ["s3://model-bucket/releases"])
    with pytest.raises(ArtifactSourceError, match="NUL"):
        check_source("/srv/\x00", ["/srv"])


FUZZ = [
    b"",
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"[]",
    b'"chat-small"',
    b"null",
    b"42",
    b'{"model": 1, "version": "2"}',
    b'{"model": "chat-small", "version": 2}',
    b'{"model": ["chat-small"], "version": "2"}',
    b'{"model": "chat-small", "version": "2", "artifact_uri": 5}',
    b'{"model": "chat-small", "version": "2", "sha256": null, "extra": {}}',
    b'{"model": "chat-small", "version": "2", "artifact_uri": ""}',
    b'{"model": "chat\\u0000small", "version": "2"}',
    b'{"model": "chat-small", "version": "2\\u0000"}',
    json.dumps({"model": "m" * 5000, "version": "2"}).encode(),
    json.dumps({"model": "chat-small", "version": "v" * 5000}).encode(),
    json.dumps({"model": "chat-small", "version": "2", "artifact_uri": "/srv/models/" + "a" * 40_000}).encode(),
    b'{"model": "chat-small", "version": "2", "sha256": "' + b"A" * 64 + b'"}',
    b"[" * 10_000 + b"]" * 10_000,
    b'{"model": "chat-small", "version": "2", "artifact_uri": "http://x/\\u0000"}',
]


@pytest.mark.parametrize("body", FUZZ, ids=[f"fuzz-{i}" for i in range(len(FUZZ))])
def test_every_invalid_signed_body_is_4xx(
    app_client: tuple[TestClient, RecordingEmitter], engine: Engine, body: bytes
) -> None:
    client, emitter = app_client
    response = client.post(PATH, content=body, headers=signed_headers(SECRET, body))
    assert 400 <= response.status_code < 500, response.text
    assert isinstance(response.json()["error"], str)
    assert emitter.sent == [] and _rows(engine) == 1


def test_oversized_body_and_bad_delivery_id_are_4xx(
    app_client: tuple[TestClient, RecordingEmitter], engine: Engine
) -> None:
    client, emitter = app_client
    huge = _body(artifact_uri="/srv/models/" + "a" * MAX_BODY_BYTES)
    assert client.post(PATH, content=huge, headers=signed_headers(SECRET, huge)).status_code == 413
    body = _body()
    headers = {**signed_headers(SECRET, body), DELIVERY_HEADER: "x" * 500}
    response = client.post(PATH, content=body, headers=headers)
    assert response.status_code == 422 and DELIVERY_HEADER in response.json()["error"]
    assert emitter.sent == [] and _rows(engine) == 1


def test_replayed_delivery_answers_the_original_event_and_emits_nothing(
    app_client: tuple[TestClient, RecordingEmitter], engine: Engine
) -> None:
    client, emitter = app_client
    body = _body(sha256=SHA_B)
    headers = signed_headers(SECRET, body)
    first = client.post(PATH, content=body, headers=headers)
    assert first.status_code == 202
    for _ in range(2):
        again = client.post(PATH, content=body, headers=headers)
        assert again.status_code == 200
        assert again.json()["event_id"] == first.json()["event_id"] and again.json()["replay"] is True
    assert len(emitter.sent) == 1
    # A new timestamp makes a new delivery (the sender deployed again on purpose).
    later = signed_headers(SECRET, body, timestamp=int(time.time()) + 1)
    assert client.post(PATH, content=body, headers=later).status_code == 202
    assert len(emitter.sent) == 2


def test_delivery_id_is_deduplicated_for_24_hours(engine: Engine) -> None:
    with session_scope(engine) as session:
        upsert_models(session, [_spec("1")])
    now = [time.time()]
    emitter = RecordingEmitter()
    client = TestClient(create_app(secret=SECRET, engine=engine, emit=emitter, sources=SOURCES, clock=lambda: now[0]))

    def post(stamp: int) -> httpx.Response:
        body = _body()
        headers = {**signed_headers(SECRET, body, timestamp=stamp), DELIVERY_HEADER: "deploy-42"}
        return client.post(PATH, content=body, headers=headers)

    assert post(int(now[0])).status_code == 202
    retried = post(int(now[0]) + 5)  # the sender's retry: new timestamp and signature, same delivery id
    assert retried.status_code == 200 and retried.json()["event_id"] == "evt-1"
    now[0] += 24 * 3600 + 60
    assert post(int(now[0])).status_code == 202
    assert len(emitter.sent) == 2


async def _post_all(requests: list[tuple[str, bytes, dict[str, str]]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        return await asyncio.gather(*(client.post(url, content=body, headers=h) for url, body, h in requests))


def test_200_identical_deliveries_at_once_emit_one_event(engine: Engine, db_url: str) -> None:
    """Two receivers (as two processes would be) on one database, 200 copies of one delivery at once."""
    from db.session import make_engine

    with session_scope(engine) as session:
        upsert_models(session, [_spec("1")])
    emitter = SlowEmitter()
    second_engine = make_engine(db_url)
    apps = [
        create_app(secret=SECRET, engine=engine, emit=emitter, sources=SOURCES),
        create_app(secret=SECRET, engine=second_engine, emit=emitter, sources=SOURCES),
    ]
    body = _body(sha256=SHA_B)
    headers = signed_headers(SECRET, body)
    try:
        with serving(apps[0]) as first, serving(apps[1]) as second:
            requests = [((first, second)[i % 2] + PATH, body, headers) for i in range(200)]
            responses = asyncio.run(_post_all(requests))
    finally:
        second_engine.dispose()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 199 + [202], statuses
    assert {r.json()["event_id"] for r in responses} == {"evt-1"}
    assert len(emitter.sent) == 1
    assert _rows(engine, "2") == 1
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_200_racing_registrations_of_one_version_are_all_accepted(engine: Engine) -> None:
    """Distinct deliveries (different timestamps) of the same version: no IntegrityError, no 500, one row."""
    with session_scope(engine) as session:
        upsert_models(session, [_spec("1")])
    emitter = SlowEmitter()
    app = create_app(secret=SECRET, engine=engine, emit=emitter, sources=SOURCES)
    body = _body(sha256=SHA_B)
    now = int(time.time())
    with serving(app) as url:
        requests = [(url + PATH, body, signed_headers(SECRET, body, timestamp=now - i)) for i in range(200)]
        responses = asyncio.run(_post_all(requests))
    assert sorted({r.status_code for r in responses}) == [202], [r.text for r in responses if r.status_code != 202]
    assert len(emitter.sent) == 200
    assert _rows(engine, "2") == 1


def test_register_version_checks_the_source_too(engine: Engine) -> None:
    """The post-deploy flow registers versions announced elsewhere (a Prefect Cloud webhook) through here."""
    from prewarm.webhook import ModelDeployed, register_version

    with session_scope(engine) as session:
        upsert_models(session, [_spec("1")])
    outside = ModelDeployed(model="chat-small", version="2", artifact_uri="/etc/shadow", sha256=SHA_B)
    with pytest.raises(ArtifactSourceError, match="outside the allowed artifact sources"):
        register_version(engine, outside, sources=SOURCES)
    inside = ModelDeployed(model="chat-small", version="2", artifact_uri="/srv/models/2.pt2", sha256=SHA_B)
    assert register_version(engine, inside, sources=SOURCES).artifact_uri == "/srv/models/2.pt2"
    assert _rows(engine) == 2
