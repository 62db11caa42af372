"""A third-party V2 client (tritonclient.http, and its asyncio client) against the host: index, load, infer,
unload, model configuration, inference statistics, compressed requests, binary tensors, BYTES and unsigned
datatypes, classification."""

from __future__ import annotations

from pathlib import Path

import asyncio

import numpy as np
import pytest
import torch
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from safetensors.torch import save_file
from tritonclient.utils import InferenceServerException

from warmers.artifacts import sha256_file

from tests.warmers.conftest import HostFactory, raw_entry, write_fleet


def text_stats_entry(folder: Path) -> dict:
    """A model with BYTES and UINT32 inputs and INT64, UINT64 and BYTES outputs (observed, not declared)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "text-stats.safetensors"
    save_file({"scale": torch.ones(1)}, str(weights))
    return {
        "name": "text-stats", "version": "1", "artifact_uri": str(weights), "sha256": sha256_file(weights),
        "loader": "safetensors", "factory": "tests.warmers.fault_zoo:text_stats",
        "warmup": {
            "inputs": [
                {"name": "text", "datatype": "BYTES", "shape": ["batch"], "low": 1, "high": 8},
                {"name": "ids", "datatype": "UINT32", "shape": ["batch", 4], "low": 0, "high": 1000},
            ],
            "buckets": {"batch": [1, 4]}, "iterations": 2, "probes": 5,
        },
    }


@pytest.fixture
def host_address(start_host: HostFactory, tmp_path: Path) -> str:
    """``host:port`` of a host that knows five models and has loaded none."""
    undeclared = raw_entry("reranker", name="meta-reranker")
    del undeclared["warmup"]["outputs"]
    fleet = write_fleet(tmp_path / "fleet", [
        raw_entry("reranker"), raw_entry("chat-small"), raw_entry("ocr-longtail"), undeclared,
        text_stats_entry(tmp_path / "artifacts"),
    ])
    return start_host(fleet=fleet, load_on_startup=False).removeprefix("http://")


@pytest.fixture
def client(host_address: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=host_address)


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
    assert {(m["name"], m["state"]) for m in index} == {
        (name, "UNAVAILABLE") for name in ("chat-small", "reranker", "ocr-longtail", "meta-reranker", "text-stats")
    }
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


def test_model_configuration_in_tritons_shape(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("reranker")
    assert config["name"] == "reranker" and config["platform"] == "pytorch_libtorch" and config["max_batch_size"] == 0
    assert config["input"][0] == {
        "name": "query", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [-1, 64],
        "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False,
    }
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [("score", "TYPE_FP32", [-1])]
    warmup = config["model_warmup"]
    assert [w["inputs"]["query"]["dims"] for w in warmup] == [[1, 64], [16, 64], [64, 64]]
    assert all(w["count"] == 3 and w["inputs"]["query"]["random_data"] for w in warmup)
    assert client.get_model_config("reranker", "1") == config
    with pytest.raises(InferenceServerException, match=r"model 'nope' is not in this host's repository"):
        client.get_model_config("nope")


def test_inference_statistics_count_successes_and_failures(client: triton.InferenceServerClient) -> None:
    client.load_model("reranker")
    for _ in range(3):
        client.infer("reranker", reranker_inputs(binary=True))
    wrong = triton.InferInput("query", [3, 64], "FP64")
    wrong.set_data_from_numpy(np.zeros((3, 64)))
    with pytest.raises(InferenceServerException):
        client.infer("reranker", [wrong, reranker_inputs(binary=True)[1]])
    stats = client.get_inference_statistics("reranker")["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("reranker", "1")]
    entry = stats[0]
    assert entry["inference_count"] == 3 and entry["execution_count"] == 3 and entry["last_inference"] > 0
    phases = entry["inference_stats"]
    assert phases["success"]["count"] == 3 and phases["fail"]["count"] == 1
    assert all(phases[p]["count"] == 3 and phases[p]["ns"] > 0 for p in ("compute_input", "compute_infer", "compute_output"))
    assert phases["success"]["ns"] >= phases["compute_infer"]["ns"]
    everything = {s["name"] for s in client.get_inference_statistics()["model_stats"]}
    assert {"reranker", "chat-small", "text-stats"} <= everything
    assert client.get_inference_statistics("reranker", "1")["model_stats"] == [entry]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(client: triton.InferenceServerClient, algorithm: str) -> None:
    client.load_model("reranker")
    plain = client.infer("reranker", reranker_inputs(binary=True)).as_numpy("score")
    for binary in (True, False):
        packed = client.infer("reranker", reranker_inputs(binary=binary), request_compression_algorithm=algorithm)
        np.testing.assert_allclose(packed.as_numpy("score"), plain, rtol=1e-6)


def test_asyncio_client(client: triton.InferenceServerClient, host_address: str) -> None:
    client.load_model("reranker")
    expected = client.infer("reranker", reranker_inputs(binary=True)).as_numpy("score")

    async def run() -> tuple[dict, dict, np.ndarray, np.ndarray]:
        aio = triton_aio.InferenceServerClient(url=host_address)
        try:
            config = await aio.get_model_config("reranker")
            binary = await aio.infer("reranker", reranker_inputs(binary=True))
            packed = await aio.infer("reranker", reranker_inputs(binary=False), request_compression_algorithm="gzip")
            stats = await aio.get_inference_statistics("reranker")
        finally:
            await aio.close()
        return config, stats, binary.as_numpy("score"), packed.as_numpy("score")

    config, stats, binary, packed = asyncio.run(run())
    assert config["name"] == "reranker" and stats["model_stats"][0]["inference_count"] >= 3
    np.testing.assert_allclose(binary, expected, rtol=1e-6)
    np.testing.assert_allclose(packed, expected, rtol=1e-6)


def test_classification_extension(client: triton.InferenceServerClient) -> None:
    client.load_model("chat-small")
    tokens = triton.InferInput("tokens", [2, 16], "INT64")
    tokens.set_data_from_numpy(np.arange(32, dtype=np.int64).reshape(2, 16))
    logits = client.infer("chat-small", [tokens]).as_numpy("logits")
    top = client.infer("chat-small", [tokens], outputs=[triton.InferRequestedOutput("logits", class_count=3)])
    classes = top.as_numpy("logits")
    assert classes.shape == (2, 3)
    for row, expected in zip(classes, logits, strict=True):
        indices = [int(item.decode().split(":")[1]) for item in row]
        assert indices == np.argsort(-expected)[:3].tolist()
        assert float(row[0].decode().split(":")[0]) == pytest.approx(expected.max(), rel=1e-4)


def test_bytes_and_unsigned_datatypes(client: triton.InferenceServerClient) -> None:
    client.load_model("text-stats")
    meta = client.get_model_metadata("text-stats")
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("text", "BYTES", [-1]), ("ids", "UINT32", [-1, 4])]
    assert [(t["datatype"], t["shape"]) for t in meta["outputs"]] == [("INT64", [-1]), ("UINT64", [-1]), ("BYTES", [-1])]
    texts = np.array([b"ab", "z\u00fcrich".encode(), b""], dtype=object)
    ids = np.array([[1, 2, 3, 4], [999, 0, 0, 1], [0, 0, 0, 0]], dtype=np.uint32)
    for binary in (True, False):
        text_input = triton.InferInput("text", [3], "BYTES")
        text_input.set_data_from_numpy(texts, binary_data=binary)
        id_input = triton.InferInput("ids", [3, 4], "UINT32")
        id_input.set_data_from_numpy(ids, binary_data=binary)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("output0", "output1", "output2")]
        result = client.infer("text-stats", [text_input, id_input], outputs=outputs)
        assert result.as_numpy("output0").tolist() == [2, 7, 0]
        assert result.as_numpy("output1").dtype == np.uint64 and result.as_numpy("output1").tolist() == [10, 1000, 0]
        upper = [b"AB", "Z\u00fcRICH".encode(), b""]
        # tritonclient gives BYTES as bytes from binary data and as str from JSON strings
        assert result.as_numpy("output2").tolist() == (upper if binary else [u.decode() for u in upper])
    too_big = triton.InferInput("ids", [3, 4], "UINT32")
    too_big.set_data_from_numpy(np.full((3, 4), 1000, dtype=np.uint32))
    text_input = triton.InferInput("text", [3], "BYTES")
    text_input.set_data_from_numpy(texts)
    with pytest.raises(InferenceServerException, match=r"input 'ids': value 1000 at flat index 0 is outside \[0, 1000\)"):
        client.infer("text-stats", [text_input, too_big])


def test_outputs_are_listed_before_the_first_load(client: triton.InferenceServerClient) -> None:
    declared = client.get_model_metadata("reranker")["outputs"]
    assert declared == [{"name": "score", "datatype": "FP32", "shape": [-1]}]
    inferred = client.get_model_metadata("meta-reranker")["outputs"]  # built on the meta device, nothing loaded
    assert inferred == [{"name": "output0", "datatype": "FP32", "shape": [-1]}]
    assert not client.is_model_ready("meta-reranker")
    assert client.get_model_metadata("ocr-longtail")["outputs"] == []  # an exported program: known once loaded
    client.load_model("ocr-longtail")
    assert client.get_model_metadata("ocr-longtail")["outputs"] == [
        {"name": "output0", "datatype": "FP32", "shape": [-1, -1, 40]}
    ]
