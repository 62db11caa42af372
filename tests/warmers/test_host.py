"""The host over real HTTP on loopback: V2 health, metadata, inference, repository, metrics and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.warmers.conftest import HostFactory, raw_entry, write_fleet


def reranker_request(batch: int = 2, **changes: object) -> dict:
    rng = np.random.default_rng(0)
    inputs = [
        {"name": n, "shape": [batch, 64], "datatype": "FP32", "data": rng.uniform(-1, 1, batch * 64).tolist()}
        for n in ("query", "document")
    ]
    inputs[0].update(changes)
    return {"id": "r1", "inputs": inputs}


def test_health_and_server_metadata(example_host: str) -> None:
    assert httpx.get(f"{example_host}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{example_host}/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(f"{example_host}/v2").json()
    assert meta["name"] == "prewarm" and "model_repository" in meta["extensions"]


def test_model_metadata_marks_variable_dimensions(example_host: str) -> None:
    meta = httpx.get(f"{example_host}/v2/models/chat-small").json()
    assert meta == {
        "name": "chat-small", "versions": ["1"], "platform": "pytorch_torchscript",
        "inputs": [{"name": "tokens", "datatype": "INT64", "shape": [-1, -1]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 512]}],
        "properties": {"loader": "torch_export", "version": "1"},
    }
    ocr = httpx.get(f"{example_host}/v2/models/ocr-longtail/versions/1").json()
    assert ocr["outputs"] == [{"name": "output0", "datatype": "FP32", "shape": [-1, -1, 40]}]  # observed over buckets


def test_every_example_model_is_ready_and_answers(example_host: str) -> None:
    index = httpx.post(f"{example_host}/v2/repository/index", json={}).json()
    assert {(i["name"], i["state"]) for i in index} == {
        ("chat-small", "READY"), ("embedder", "READY"), ("reranker", "READY"), ("ocr-longtail", "READY")
    }
    assert httpx.get(f"{example_host}/v2/models/reranker/ready").json() == {"name": "reranker", "ready": True}
    response = httpx.post(f"{example_host}/v2/models/reranker/versions/1/infer", json=reranker_request())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "reranker" and body["model_version"] == "1" and body["id"] == "r1"
    assert body["outputs"][0]["name"] == "score" and body["outputs"][0]["shape"] == [2]
    tokens = {"name": "tokens", "shape": [1, 16], "datatype": "INT64", "data": list(range(16))}
    chat = httpx.post(f"{example_host}/v2/models/chat-small/infer", json={"inputs": [tokens]}).json()
    assert chat["outputs"][0]["shape"] == [1, 512] and len(chat["outputs"][0]["data"]) == 512
    image = {"name": "image", "shape": [1, 3, 32, 64], "datatype": "FP32", "data": [0.5] * (3 * 32 * 64)}
    ocr = httpx.post(f"{example_host}/v2/models/ocr-longtail/infer", json={"inputs": [image]}).json()
    assert ocr["outputs"][0]["shape"] == [1, 16, 40]


def test_same_request_gives_the_same_answer(example_host: str) -> None:
    first = httpx.post(f"{example_host}/v2/models/reranker/infer", json=reranker_request()).json()
    second = httpx.post(f"{example_host}/v2/models/reranker/infer", json=reranker_request()).json()
    assert first["outputs"] == second["outputs"]


@pytest.mark.parametrize("path", ["/v2/models/nope", "/v2/models/nope/ready", "/v2/models/reranker/versions/9"])
def test_unknown_model_is_404(example_host: str, path: str) -> None:
    response = httpx.get(f"{example_host}{path}")
    assert response.status_code == 404
    assert "nope" in response.json()["error"] or "version '9'" in response.json()["error"]


@pytest.mark.parametrize("path", ["/v2/models/nope/infer", "/v2/repository/models/nope/load", "/v2/repository/models/nope/unload"])
def test_unknown_model_is_404_on_post(example_host: str, path: str) -> None:
    response = httpx.post(f"{example_host}{path}", json=reranker_request())
    assert response.status_code == 404
    assert "model 'nope'" in response.json()["error"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shape": [2, 63]}, r"input 'query': shape \[2, 63\] does not match the model's \[-1, 64\] at dimension 1"),
        ({"shape": [2, 64, 1]}, r"input 'query': shape \[2, 64, 1\] has 3 dimensions"),
        ({"datatype": "FP64"}, r"input 'query': datatype FP64 does not match the model's FP32"),
        ({"datatype": "FP33"}, r"input 'query': datatype FP33 does not match"),
        ({"data": [1.0, 2.0]}, r"input 'query': shape \[2, 64\] needs 128 values, the data has 2"),
        ({"data": ["x"] * 128}, r"input 'query': data must contain only numbers"),
        ({"data": None}, r"input 'query' has neither data nor binary data"),
        ({"shape": "wide"}, r"input 'query': field shape: Input should be a valid list"),
        ({"name": "question"}, r"input 'question' is not an input of this model; it expects query, document"),
        ({"shape": [100, 64], "data": [0.0] * 6400}, r"input 'query': dimension 0 \('batch'\) is 100; it must be between 1 and 64"),
    ],
)
def test_malformed_tensors_are_400_naming_the_input(example_host: str, changes: dict, message: str) -> None:
    response = httpx.post(f"{example_host}/v2/models/reranker/infer", json=reranker_request(**changes))
    assert response.status_code == 400
    import re

    assert re.search(message, response.json()["error"]), response.json()["error"]


def test_malformed_bodies_are_400(example_host: str) -> None:
    url = f"{example_host}/v2/models/reranker/infer"
    not_json = httpx.post(url, content=b"{inputs: oops", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "the request body is not valid JSON" in not_json.json()["error"]
    no_inputs = httpx.post(url, json={"inputs": []})
    assert no_inputs.status_code == 400 and "field inputs" in no_inputs.json()["error"]
    missing = httpx.post(url, json={"inputs": reranker_request()["inputs"][:1]})
    assert missing.status_code == 400 and "input 'document' is missing" in missing.json()["error"]
    unknown_output = httpx.post(url, json={**reranker_request(), "outputs": [{"name": "logits"}]})
    assert unknown_output.status_code == 400 and "requested output 'logits' does not exist" in unknown_output.json()["error"]


def test_binary_tensor_extension(example_host: str) -> None:
    query = np.full((1, 64), 0.25, dtype=np.float32)
    document = np.full((1, 64), -0.5, dtype=np.float32)
    header = json.dumps({
        "inputs": [
            {"name": "query", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}},
            {"name": "document", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}},
        ],
        "outputs": [{"name": "score", "parameters": {"binary_data": True}}],
    }).encode()
    response = httpx.post(
        f"{example_host}/v2/models/reranker/infer",
        content=header + query.tobytes() + document.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    split = int(response.headers["Inference-Header-Content-Length"])
    meta = json.loads(response.content[:split])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 4}
    binary_score = np.frombuffer(response.content[split:], dtype=np.float32)
    as_json = httpx.post(f"{example_host}/v2/models/reranker/infer", json={"inputs": [
        {"name": "query", "shape": [1, 64], "datatype": "FP32", "data": query.ravel().tolist()},
        {"name": "document", "shape": [1, 64], "datatype": "FP32", "data": document.ravel().tolist()},
    ]}).json()
    assert binary_score.tolist() == pytest.approx(as_json["outputs"][0]["data"])
    short = httpx.post(
        f"{example_host}/v2/models/reranker/infer", content=header + query.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert short.status_code == 400 and "input 'document': binary_data_size 256 runs past the body" in short.json()["error"]


def test_metrics_are_prometheus_text(example_host: str) -> None:
    httpx.post(f"{example_host}/v2/models/reranker/infer", json=reranker_request())
    text = httpx.get(f"{example_host}/metrics").text
    assert "prewarm_resident_models 4.0" in text
    assert 'prewarm_warm_stage_seconds{model="chat-small",stage="warmup"}' in text
    assert 'prewarm_inference_requests_total{model="reranker",outcome="200",version="1"}' in text
    assert "prewarm_device_memory_used_bytes" in text and "prewarm_device_memory_capacity_bytes" in text


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_broken_models_are_not_ready_while_others_serve(start_host: HostFactory, broken_fleet: Path) -> None:
    url = start_host(fleet=broken_fleet)
    states = {i["name"]: i for i in httpx.post(f"{url}/v2/repository/index", json={}).json()}
    assert states["reranker"]["state"] == "READY" and states["embedder"]["state"] == "READY"
    assert "sha256 is" in states["tampered"]["reason"] and states["tampered"]["state"] == "UNAVAILABLE"
    assert "no such file" in states["missing"]["reason"]
    assert "cannot import module 'warmers.zoo.no_such_module'" in states["badfactory"]["reason"]
    ready = httpx.get(f"{url}/v2/models/tampered/ready")
    assert ready.status_code == 400 and ready.json()["ready"] is False and "sha256" in ready.json()["reason"]
    infer = httpx.post(f"{url}/v2/models/tampered/infer", json=reranker_request())
    assert infer.status_code == 503 and "model 'tampered' version '1' is not ready: " in infer.json()["error"]
    load = httpx.post(f"{url}/v2/repository/models/badfactory/load", json={})
    assert load.status_code == 400
    assert load.json()["report"]["error_type"] == "ModelLoadError" and load.json()["report"]["ready"] is False
    assert httpx.post(f"{url}/v2/models/reranker/infer", json=reranker_request()).status_code == 200
    assert metric(url, "prewarm_resident_models") == 2.0
    assert 'prewarm_load_failures_total{error_type="ChecksumMismatchError",model="tampered"} 1.0' in httpx.get(f"{url}/metrics").text


def test_load_unload_and_memory_accounting(start_host: HostFactory, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", [raw_entry("reranker"), raw_entry("embedder")])
    url = start_host(fleet=fleet, load_on_startup=False)
    index = httpx.post(f"{url}/v2/repository/index", json={}).json()
    assert [(i["name"], i["state"], i["reason"]) for i in index] == [
        ("embedder", "UNAVAILABLE", "not loaded"), ("reranker", "UNAVAILABLE", "not loaded")
    ]
    not_loaded = httpx.post(f"{url}/v2/models/embedder/infer", json=reranker_request())
    assert not_loaded.status_code == 503 and "POST /v2/repository/models/embedder/load" in not_loaded.json()["error"]
    assert httpx.post(f"{url}/v2/repository/models/reranker/load", json={}).status_code == 200
    before = metric(url, "prewarm_device_memory_used_bytes")
    load = httpx.post(f"{url}/v2/repository/models/embedder/load", json={})
    assert load.status_code == 200 and load.json()["ready"] is True
    report = load.json()["report"]
    assert report["memory_mb"] >= 8 and set(report["stage_seconds"]) >= {"fetch", "load", "warmup", "validate"}
    assert metric(url, "prewarm_device_memory_used_bytes") == pytest.approx(before + report["memory_mb"] * 2**20)
    assert httpx.post(f"{url}/v2/repository/index", json={"ready": True}).json()[0]["name"] == "embedder"
    unload = httpx.post(f"{url}/v2/repository/models/embedder/unload", json={})
    assert unload.status_code == 200 and unload.json()["freed_mb"] == pytest.approx(report["memory_mb"])
    assert metric(url, "prewarm_device_memory_used_bytes") == before
    assert httpx.get(f"{url}/v2/models/embedder/ready").status_code == 400
    assert httpx.post(f"{url}/v2/models/reranker/infer", json=reranker_request()).status_code == 200


def test_ready_waits_for_startup_loads(start_host: HostFactory, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", [raw_entry("reranker")])
    url = start_host(fleet=fleet)  # start_host returns only after /v2/health/ready said 200
    assert httpx.get(f"{url}/v2/models/reranker/ready").status_code == 200


def test_a_model_failure_is_500_with_the_message(start_host: HostFactory, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", [raw_entry("reranker", name="fragile", factory="tests.warmers.fault_zoo:fragile_reranker")])
    url = start_host(fleet=fleet)
    request = reranker_request(batch=1)
    request["inputs"][0]["data"] = [0.0] * 64
    response = httpx.post(f"{url}/v2/models/fragile/infer", json=request)
    assert response.status_code == 500
    assert "model 'fragile': inference failed: RuntimeError" in response.json()["error"]
    assert httpx.post(f"{url}/v2/models/fragile/infer", json=reranker_request(batch=1)).status_code == 200
