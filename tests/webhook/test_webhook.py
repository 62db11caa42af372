"""The signed post-deploy webhook: every rejection, registration and the 202 answer."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from db.registry import get_model, list_models, upsert_models
from db.session import session_scope
from prewarm.fleet import ModelSpec
from prewarm.webhook import (
    MAX_BODY_BYTES,
    PATH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ModelDeployed,
    SignatureError,
    WebhookError,
    create_app,
    sign,
    signed_headers,
    verify_signature,
)

SECRET = "s3cret-for-tests"
SHA_A = "a" * 64
SHA_B = "b" * 64


def _spec(version: str = "1") -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "chat-small",
            "version": version,
            "artifact_uri": "file:///models/chat-small.pt2",
            "sha256": SHA_A,
            "loader": "torch_export",
            "warmup": {"inputs": [{"name": "x", "shape": [1, 8]}]},
            "sla_p99_ms": 50.0,
        }
    )


class RecordingEmitter:
    """Stands in for Prefect's events API: remembers what would have been emitted."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[ModelDeployed] = []
        self.fail = fail

    async def __call__(self, deployed: ModelDeployed) -> str:
        if self.fail:
            raise ConnectionError("events API unreachable")
        self.sent.append(deployed)
        return f"evt-{len(self.sent)}"


@pytest.fixture
def emitter() -> RecordingEmitter:
    return RecordingEmitter()


@pytest.fixture
def client(engine: Engine, emitter: RecordingEmitter) -> TestClient:
    with session_scope(engine) as session:
        upsert_models(session, [_spec("1")])
    return TestClient(create_app(secret=SECRET, engine=engine, emit=emitter))


def _post(client: TestClient, body: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        PATH, content=body, headers=headers if headers is not None else signed_headers(SECRET, body)
    )


def _versions(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return [row.version for row in list_models(session)]


def test_signed_request_registers_version_and_answers_202_with_event_id(
    client: TestClient, engine: Engine, emitter: RecordingEmitter
) -> None:
    body = json.dumps({"model": "chat-small", "version": "2", "sha256": SHA_B}).encode()
    response = _post(client, body)
    assert response.status_code == 202
    assert response.json() == {
        "event_id": "evt-1",
        "event": "prewarm.model.deployed",
        "model": "chat-small",
        "version": "2",
    }
    assert emitter.sent == [ModelDeployed(model="chat-small", version="2", sha256=SHA_B)]
    with session_scope(engine) as session:
        row = get_model(session, "chat-small", "2")
        assert row is not None
        assert row.sha256 == SHA_B
        assert row.artifact_uri == "file:///models/chat-small.pt2"  # copied from version 1
        assert row.spec["warmup"]["inputs"][0]["name"] == "x"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TIMESTAMP_HEADER: "now"},
        {SIGNATURE_HEADER: "sha256=00"},
    ],
    ids=["no-headers", "only-timestamp", "only-signature"],
)
def test_missing_signature_is_401(client: TestClient, engine: Engine, headers: dict[str, str]) -> None:
    body = json.dumps({"model": "chat-small", "version": "2"}).encode()
    response = _post(client, body, headers)
    assert response.status_code == 401
    assert "missing" in response.json()["error"]
    assert _versions(engine) == ["1"]


def test_bad_signature_is_401(client: TestClient, engine: Engine, emitter: RecordingEmitter) -> None:
    body = json.dumps({"model": "chat-small", "version": "2"}).encode()
    headers = signed_headers("another-secret", body)
    response = _post(client, body, headers)
    assert response.status_code == 401
    assert "does not match" in response.json()["error"]
    tampered = signed_headers(SECRET, body)
    response = _post(client, body.replace(b'"2"', b'"3"'), tampered)
    assert response.status_code == 401
    assert emitter.sent == [] and _versions(engine) == ["1"]


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_stale_or_future_timestamp_is_401(client: TestClient, engine: Engine, skew: int) -> None:
    body = json.dumps({"model": "chat-small", "version": "2"}).encode()
    response = _post(client, body, signed_headers(SECRET, body, timestamp=int(time.time()) - skew))
    assert response.status_code == 401
    assert "off the receiver's clock" in response.json()["error"]
    assert _versions(engine) == ["1"]


def test_non_numeric_timestamp_is_401(client: TestClient) -> None:
    body = b"{}"
    response = _post(
        client, body, {TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: sign(SECRET, "yesterday", body)}
    )
    assert response.status_code == 401
    assert "unix seconds" in response.json()["error"]


def test_body_over_64_kib_is_413(client: TestClient, engine: Engine, emitter: RecordingEmitter) -> None:
    body = json.dumps({"model": "chat-small", "version": "2", "artifact_uri": "x" * MAX_BODY_BYTES}).encode()
    response = _post(client, body)
    assert response.status_code == 413
    assert emitter.sent == [] and _versions(engine) == ["1"]


def test_body_over_limit_without_content_length_is_413(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"x" * (MAX_BODY_BYTES // 4)

    response = client.post(
        PATH, content=chunks(), headers={TIMESTAMP_HEADER: "1", SIGNATURE_HEADER: "sha256=0"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"model": "chat-small", "version": "2", "colour": "red"}', "Extra inputs are not permitted"),
        (b'{"model": "chat-small"}', "Field required"),
        (b'{"model": "chat small", "version": "2"}', "String should match pattern"),
        (b'{"model": "chat-small", "version": "2", "sha256": "XYZ"}', "String should match pattern"),
    ],
    ids=["malformed", "unknown-field", "missing-version", "bad-name", "bad-sha"],
)
def test_malformed_or_unknown_fields_are_422(
    client: TestClient, engine: Engine, body: bytes, message: str
) -> None:
    response = _post(client, body)
    assert response.status_code == 422
    assert message in json.dumps(response.json())
    assert _versions(engine) == ["1"]


def test_unregistered_model_is_404(client: TestClient, engine: Engine) -> None:
    body = json.dumps({"model": "never-seen", "version": "1"}).encode()
    response = _post(client, body)
    assert response.status_code == 404
    assert "prewarm models import" in response.json()["error"]


def test_emit_failure_is_503_and_retry_is_accepted(engine: Engine) -> None:
    with session_scope(engine) as session:
        upsert_models(session, [_spec("1")])
    failing = RecordingEmitter(fail=True)
    app_client = TestClient(create_app(secret=SECRET, engine=engine, emit=failing))
    body = json.dumps({"model": "chat-small", "version": "2"}).encode()
    response = _post(app_client, body)
    assert response.status_code == 503
    failing.fail = False
    assert _post(app_client, body).status_code == 202
    assert _versions(engine) == ["1", "2"]


def test_verify_signature_messages() -> None:
    body = b"{}"
    now = 1_700_000_000
    verify_signature(SECRET, timestamp=str(now), signature=sign(SECRET, now, body), body=body, now=now + 299)
    with pytest.raises(SignatureError, match="missing X-Prewarm-Timestamp"):
        verify_signature(SECRET, timestamp=None, signature="sha256=0", body=body, now=now)
    with pytest.raises(SignatureError, match="301 s off"):
        verify_signature(
            SECRET, timestamp=str(now), signature=sign(SECRET, now, body), body=body, now=now + 301
        )
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(SECRET, timestamp=str(now), signature=sign("x", now, body), body=body, now=now)


def test_empty_secret_is_refused(engine: Engine) -> None:
    with pytest.raises(WebhookError, match="set PREWARM_WEBHOOK_SECRET"):
        create_app(secret="", engine=engine)
