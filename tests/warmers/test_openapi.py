"""The host against the Open Inference Protocol's OpenAPI document: every route, every error.

The document (``tests/warmers/openapi/open_inference_rest.yaml``, a copy of kserve/open-inference-protocol's,
Apache-2.0; see the README beside it) is itself validated, then every exchange below is checked with
``openapi-schema-validator``: request and response bodies of documented routes against their schemas, and
every error body, on documented routes and on the extensions' routes alike, against the protocol's error
object ``{"error": string}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_document

from prewarm.settings import reset_settings
from tests.conftest import free_port
from tests.warmers.conftest import make_engine, raw_entry, write_fleet
from tests.warmers.test_host import reranker_request
from warmers.host import create_app, serve_in_thread

DOCUMENT = Path(__file__).parent / "openapi" / "open_inference_rest.yaml"
ERROR_SCHEMA = "#/components/schemas/inference_error_response"
# Triton's extensions: `/v2/models/stats` shadows the metadata of a model named "stats", as it does in Triton.
EXTENSIONS = re.compile(r"^/v2/(models/stats|models/[^/]+(/versions/[^/]+)?/(config|stats)|repository/.*)$")


class Protocol:
    """Routes and schemas of the document; ``${NAME}`` parameters read as ``{NAME}``."""

    def __init__(self, path: Path) -> None:
        self.doc = yaml.safe_load(path.read_text())
        validate_document(self.doc)
        self.routes: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for template, item in self.doc["paths"].items():
            clean = template.replace("${", "{").rstrip("/") or "/"
            variants = {clean, clean.replace("/versions/{MODEL_VERSION}", "")}
            for variant in variants:
                pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", variant) + "/?$")
                for method, operation in item.items():
                    if method in ("get", "post"):
                        self.routes.append((pattern, method.upper(), operation))

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        if EXTENSIONS.match(path):
            return None
        for pattern, wanted, operation in self.routes:
            if wanted == method and pattern.match(path):
                return operation
        return None

    def errors(self, schema_ref: str, instance: Any) -> list[str]:
        validator = OAS30Validator({"$ref": schema_ref, "components": self.doc["components"]})
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]

    def check(self, response: httpx.Response) -> str:
        """Validate one exchange; returns how it was checked (for the test's own bookkeeping)."""
        request = response.request
        path = request.url.path
        operation = self.operation(request.method, path)
        if operation is not None and request.content and "requestBody" in operation and response.status_code < 400:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            problems = self.errors(ref, json.loads(request.content))
            assert not problems, (path, "request", problems)
        if response.status_code >= 400:
            body = response.json()
            documented = (operation or {}).get("responses", {}).get(str(response.status_code), {})
            ref = documented.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", ERROR_SCHEMA)
            problems = self.errors(ref, body)
            assert not problems, (path, response.status_code, problems)
            return "error"
        if operation is None:
            return "extension"
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, (path, f"status {response.status_code} is not in the document")
        schema = documented.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            problems = self.errors(schema["$ref"], response.json())
            assert not problems, (path, response.status_code, problems)
            return "schema"
        return "status"


@pytest.fixture(scope="module")
def protocol() -> Protocol:
    return Protocol(DOCUMENT)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("openapi-host")
    fleet = write_fleet(root / "fleet", [
        raw_entry("reranker"),
        raw_entry("embedder"),
        raw_entry("reranker", name="fragile", factory="tests.warmers.fault_zoo:fragile_reranker"),
        raw_entry("reranker", name="badfactory", factory="warmers.zoo.no_such_module:build"),
    ])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREWARM_HOST__MAX_BODY_MB", "1")
        reset_settings()
        app = create_app(fleet=fleet, engine=make_engine(root))
    reset_settings()
    with serve_in_thread(app, port=free_port()) as url:
        assert httpx.post(f"{url}/v2/repository/models/embedder/unload", json={}).status_code == 200
        yield url


def zero_query() -> dict[str, Any]:
    request = reranker_request(batch=1)
    request["inputs"][0]["data"] = [0.0] * 64
    return request


EXCHANGES: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/v2/health/live", {}, 200),
    ("GET", "/v2/health/ready", {}, 503),  # badfactory failed to load
    ("GET", "/v2", {}, 200),
    ("GET", "/v2/", {}, 200),
    ("GET", "/v2/models/reranker", {}, 200),
    ("GET", "/v2/models/reranker/versions/1", {}, 200),
    ("GET", "/v2/models/reranker/ready", {}, 200),
    ("GET", "/v2/models/reranker/versions/1/ready", {}, 200),
    ("GET", "/v2/models/embedder/ready", {}, 400),
    ("GET", "/v2/models/reranker/config", {}, 200),
    ("GET", "/v2/models/reranker/versions/1/config", {}, 200),
    ("GET", "/v2/models/stats", {}, 200),
    ("GET", "/v2/models/reranker/stats", {}, 200),
    ("GET", "/v2/models/reranker/versions/1/stats", {}, 200),
    ("POST", "/v2/models/reranker/infer", {"json": reranker_request()}, 200),
    ("POST", "/v2/models/reranker/versions/1/infer", {"json": reranker_request()}, 200),
    ("POST", "/v2/repository/index", {"json": {}}, 200),
    ("POST", "/v2/repository/index", {"json": {"ready": True}}, 200),
    # errors
    ("GET", "/v2/models/nope", {}, 404),
    ("GET", "/v2/models/reranker/versions/9", {}, 404),
    ("GET", "/v2/models/nope/ready", {}, 404),
    ("GET", "/v2/models/nope/config", {}, 404),
    ("GET", "/v2/models/nope/stats", {}, 404),
    ("POST", "/v2/models/nope/infer", {"json": reranker_request()}, 404),
    ("POST", "/v2/models/reranker/versions/9/infer", {"json": reranker_request()}, 404),
    ("POST", "/v2/models/reranker/infer", {"json": reranker_request(shape=[2, 63])}, 400),
    ("POST", "/v2/models/reranker/infer", {"content": b"{oops"}, 400),
    ("POST", "/v2/models/reranker/infer", {"content": b" " * (2 * 2**20)}, 413),
    ("POST", "/v2/models/reranker/infer", {"content": b"{}", "headers": {"Content-Encoding": "br"}}, 415),
    ("POST", "/v2/models/embedder/infer", {"json": reranker_request()}, 503),
    ("POST", "/v2/models/fragile/infer", {"json": zero_query()}, 500),
    ("GET", "/v2/models/reranker/infer", {}, 405),
    ("PUT", "/v2/health/live", {}, 405),
    ("GET", "/v2/no/such/route", {}, 404),
    ("GET", "/nowhere", {}, 404),
    ("POST", "/v2/repository/index", {"content": b"[1, 2]"}, 400),
    ("POST", "/v2/repository/models/nope/load", {"json": {}}, 404),
    ("POST", "/v2/repository/models/badfactory/load", {"json": {}}, 400),
    ("POST", "/v2/repository/models/nope/unload", {"json": {}}, 404),
]


@pytest.mark.parametrize(("method", "path", "options", "status"), EXCHANGES, ids=[f"{m} {p} {s}" for m, p, _, s in EXCHANGES])
def test_exchange_conforms(host: str, protocol: Protocol, method: str, path: str, options: dict[str, Any], status: int) -> None:
    response = httpx.request(method, f"{host}{path}", timeout=60, **options)
    assert response.status_code == status, response.text
    how = protocol.check(response)
    if status >= 400:
        assert set(response.json()) >= {"error"} and isinstance(response.json()["error"], str)
    elif protocol.operation(method, path) is not None and path not in ("/v2/health/live", "/v2/health/ready"):
        assert how in ("schema", "status")


def test_every_documented_route_is_exercised(protocol: Protocol) -> None:
    for pattern, method, _ in protocol.routes:
        assert any(m == method and pattern.match(p) for m, p, _, _ in EXCHANGES), pattern.pattern


def test_every_route_of_the_host_is_exercised(host: str) -> None:
    from starlette.routing import Route

    app = create_app(source=lambda: [], load_on_startup=False)
    for route in app.routes:
        if not isinstance(route, Route) or route.path in ("/metrics",) or route.path.startswith(("/docs", "/openapi", "/redoc")):
            continue
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", route.path) + "$")
        methods = route.methods or set()
        assert any(m in methods and pattern.match(p) for m, p, _, _ in EXCHANGES), route.path
