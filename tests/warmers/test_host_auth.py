"""The host's bearer token: required on repository and model routes, never on health, metadata or metrics."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from prewarm.settings import reset_settings
from tests.conftest import free_port
from tests.warmers.conftest import make_engine, raw_entry, write_fleet
from tests.warmers.test_host import reranker_request
from warmers.host import create_app, serve_in_thread

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def guarded_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("auth-host")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREWARM_HOST__TOKEN", TOKEN)
        reset_settings()
        app = create_app(fleet=write_fleet(root / "fleet", [raw_entry("reranker")]), engine=make_engine(root))
    reset_settings()
    with serve_in_thread(app, port=free_port()) as url:
        yield url


GOOD = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/reranker"), ("GET", "/v2/models/reranker/ready"), ("POST", "/v2/models/reranker/infer"),
        ("GET", "/v2/models/reranker/versions/1"), ("POST", "/v2/repository/index"),
        ("POST", "/v2/repository/models/reranker/load"), ("POST", "/v2/repository/models/reranker/unload"),
        ("GET", "/v2/models/stats"), ("GET", "/v2/models/nope/no-such-route"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"},
     {"Authorization": "Bearer"}],
    ids=["none", "wrong", "basic", "longer", "empty"],
)
def test_protected_routes_need_the_token(guarded_host: str, method: str, path: str, headers: dict[str, str]) -> None:
    response = httpx.request(method, f"{guarded_host}{path}", headers=headers, json={})
    assert response.status_code == 401
    assert "Authorization: Bearer <PREWARM_HOST__TOKEN>" in response.json()["error"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_health_metadata_and_metrics_stay_open(guarded_host: str) -> None:
    assert httpx.get(f"{guarded_host}/v2/health/live").status_code == 200
    assert httpx.get(f"{guarded_host}/v2/health/ready").status_code == 200
    assert httpx.get(f"{guarded_host}/v2").json()["name"] == "prewarm"
    assert "prewarm_unauthorized_requests_total" in httpx.get(f"{guarded_host}/metrics").text


def test_the_token_opens_every_route(guarded_host: str) -> None:
    assert httpx.get(f"{guarded_host}/v2/models/reranker/ready", headers=GOOD).json()["ready"] is True
    assert httpx.post(f"{guarded_host}/v2/repository/index", headers=GOOD, json={}).status_code == 200
    response = httpx.post(f"{guarded_host}/v2/models/reranker/infer", headers=GOOD, json=reranker_request())
    assert response.status_code == 200, response.text
    lower = {"authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive
    assert httpx.get(f"{guarded_host}/v2/models/reranker", headers=lower).status_code == 200


def test_no_token_set_means_no_authentication(example_host: str) -> None:
    assert httpx.post(f"{example_host}/v2/models/reranker/infer", json=reranker_request()).status_code == 200
