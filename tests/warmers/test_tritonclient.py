"""A third-party V2 client (tritonclient.http) indexes, loads, infers and unloads against the host."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.warmers.conftest import HostFactory, raw_entry, write_fleet


@pytest.fixture
def client(start_host: HostFactory, tmp_path: Path) -> triton.InferenceServerClient:
    fleet = write_fleet(tmp_path / "fleet", [raw_entry("reranker"), raw_entry("chat-small")])
    url = start_host(fleet=fleet, load_on_startup=False)
    return triton.InferenceServerClient(url=url.removeprefix("http://"))


def reranker_inputs(binary: bool) -> list[triton.InferInput]:
    rng = np.random.default_rng(1)
    inputs = []
    for name in ("query", "document"):
        item = triton.InferInput(name, [3, 64], "FP32")
        item.set_data_from_numpy(rng.uniform(-1, 1, (3, 64)).astype(np.float32), binary_data=binary)
        inputs.append(item)
    return inputs


def test_index_load_infer_unload(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "prewarm"
    index = client.get_model_repository_index()
    assert {(m["name"], m["state"]) for m in index} == {("chat-small", "UNAVAILABLE"), ("reranker", "UNAVAILABLE")}
    assert not client.is_model_ready("reranker")
    client.load_model("reranker")
    assert client.is_model_ready("reranker") and client.is_model_ready("reranker", "1")
    meta = client.get_model_metadata("reranker")
    assert [i["name"] for i in meta["inputs"]] == ["query", "document"] and meta["outputs"][0]["shape"] == [-1]
    binary = client.infer("reranker", reranker_inputs(binary=True))  # tritonclient's default: binary tensors
    as_json = client.infer(
        "reranker", reranker_inputs(binary=False), outputs=[triton.InferRequestedOutput("score", binary_data=False)]
    )
    assert binary.as_numpy("score").shape == (3,)
    np.testing.assert_allclose(binary.as_numpy("score"), as_json.as_numpy("score"), rtol=1e-6)
    client.unload_model("reranker")
    assert not client.is_model_ready("reranker")


def test_token_model_through_the_client(client: triton.InferenceServerClient) -> None:
    client.load_model("chat-small")
    tokens = triton.InferInput("tokens", [2, 16], "INT64")
    tokens.set_data_from_numpy(np.arange(32, dtype=np.int64).reshape(2, 16))
    logits = client.infer("chat-small", [tokens], model_version="1").as_numpy("logits")
    assert logits.shape == (2, 512) and np.isfinite(logits).all()


def test_client_sees_the_errors(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match=r"model 'nope' is not in this host's repository"):
        client.load_model("nope")
    with pytest.raises(InferenceServerException, match=r"model 'reranker' is not loaded"):
        client.infer("reranker", reranker_inputs(binary=True))
    client.load_model("reranker")
    wrong = triton.InferInput("query", [3, 64], "FP64")
    wrong.set_data_from_numpy(np.zeros((3, 64)))
    with pytest.raises(InferenceServerException, match=r"input 'query': datatype FP64 does not match the model's FP32"):
        client.infer("reranker", [wrong, reranker_inputs(binary=True)[1]])
