"""V2 tensor decoding: every malformed input is refused with a message naming the model and the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prewarm.fleet import TensorSpec, WarmupSpec
from warmers.errors import InferenceInputError
from warmers.tensors import (
    bucket_combinations,
    check_request_names,
    decode_tensor,
    encode_binary,
    encode_json,
    example_inputs,
    metadata_shape,
)

TOKENS = TensorSpec(name="tokens", datatype="INT64", shape=["batch", "seq"], high=100)
IMAGE = TensorSpec(name="image", datatype="FP32", shape=["batch", 3, 4])
BUCKETS = {"batch": [1, 4], "seq": [8, 16]}


def decode(spec: TensorSpec, **kwargs):  # type: ignore[no-untyped-def]
    return decode_tensor("m", spec, BUCKETS, **kwargs)


def test_decode_json_and_binary_give_the_same_tensor() -> None:
    values = list(range(16))
    from_json = decode(TOKENS, datatype="INT64", shape=[2, 8], data=values)
    from_raw = decode(TOKENS, datatype="INT64", shape=[2, 8], raw=np.arange(16, dtype=np.int64).tobytes())
    assert from_json.dtype == torch.int64 and from_json.shape == (2, 8)
    assert torch.equal(from_json, from_raw)
    nested = decode(TOKENS, datatype="INT64", shape=[2, 8], data=[values[:8], values[8:]])
    assert torch.equal(nested, from_json)


def test_bf16_round_trips_through_json_and_binary() -> None:
    spec = TensorSpec(name="x", datatype="BF16", shape=[2])
    tensor = decode_tensor("m", spec, {}, datatype="BF16", shape=[2], data=[1.5, -2.0])
    assert tensor.dtype == torch.bfloat16 and encode_json(tensor) == [1.5, -2.0]
    again = decode_tensor("m", spec, {}, datatype="BF16", shape=[2], raw=encode_binary(tensor))
    assert torch.equal(again, tensor)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"datatype": "FP32", "shape": [1, 8], "data": [0] * 8}, r"input 'tokens': datatype FP32 does not match the model's INT64"),
        ({"datatype": "INT64", "shape": [8], "data": [0] * 8}, r"input 'tokens': shape \[8\] has 1 dimensions, the model expects \[-1, -1\]"),
        ({"datatype": "INT64", "shape": [1, 17], "data": [0] * 17}, r"input 'tokens': dimension 1 \('seq'\) is 17; it must be between 1 and 16"),
        ({"datatype": "INT64", "shape": [1, 8], "data": [0] * 7}, r"input 'tokens': shape \[1, 8\] needs 8 values, the data has 7"),
        ({"datatype": "INT64", "shape": [1, 2], "data": ["a", "b"]}, r"input 'tokens': data must contain only numbers"),
        ({"datatype": "INT64", "shape": [1, 2], "data": [[1], [2, 3]]}, r"input 'tokens': data is a ragged nested list"),
        ({"datatype": "INT64", "shape": [1, 2], "data": [1.5, 2]}, r"input 'tokens': data has fractional values"),
        ({"datatype": "INT64", "shape": [1, 2], "data": {"a": 1}}, r"input 'tokens': data must be a list of numbers, got dict"),
        ({"datatype": "INT64", "shape": [1, "x"], "data": [1]}, r"input 'tokens': shape must be a list of integers"),
        ({"datatype": "INT64", "shape": [1, 2], "raw": b"\x00" * 15}, r"input 'tokens': binary data has 15 bytes; .* needs 16"),
    ],
)
def test_malformed_inputs_name_the_input(kwargs: dict, message: str) -> None:
    with pytest.raises(InferenceInputError, match=message):
        decode(TOKENS, **kwargs)


def test_a_fixed_dimension_must_match() -> None:
    with pytest.raises(InferenceInputError, match=r"input 'image': shape \[1, 2, 4\] does not match the model's \[-1, 3, 4\] at dimension 1"):
        decode(IMAGE, datatype="FP32", shape=[1, 2, 4], data=[0.0] * 8)


def test_request_names_are_checked() -> None:
    specs = [TOKENS, IMAGE]
    check_request_names("m", specs, ["image", "tokens"])
    with pytest.raises(InferenceInputError, match=r"model 'm': input 'image' is missing; it expects tokens, image"):
        check_request_names("m", specs, ["tokens"])
    with pytest.raises(InferenceInputError, match=r"input 'audio' is not an input of this model"):
        check_request_names("m", specs, ["tokens", "image", "audio"])
    with pytest.raises(InferenceInputError, match=r"input 'tokens' appears more than once"):
        check_request_names("m", specs, ["tokens", "tokens", "image"])


def test_buckets_shapes_and_seeded_inputs() -> None:
    warmup = WarmupSpec(inputs=[TOKENS], buckets=BUCKETS)
    assert bucket_combinations(warmup) == [
        {"batch": 1, "seq": 8}, {"batch": 1, "seq": 16}, {"batch": 4, "seq": 8}, {"batch": 4, "seq": 16}
    ]
    assert metadata_shape(IMAGE) == [-1, 3, 4]
    first = example_inputs(warmup, {"batch": 4, "seq": 16}, generator=torch.Generator().manual_seed(1))
    second = example_inputs(warmup, {"batch": 4, "seq": 16}, generator=torch.Generator().manual_seed(1))
    assert first["tokens"].shape == (4, 16) and first["tokens"].dtype == torch.int64
    assert torch.equal(first["tokens"], second["tokens"])
    assert int(first["tokens"].min()) >= 0 and int(first["tokens"].max()) < 100


def test_integer_values_are_checked_only_against_a_declared_range() -> None:
    declared = TensorSpec(name="ids", datatype="INT64", shape=["batch"], low=0, high=10)
    undeclared = TensorSpec(name="ids", datatype="INT64", shape=["batch"])
    with pytest.raises(InferenceInputError, match=r"value 10 at flat index 0 is outside \[0, 10\)"):
        decode(declared, datatype="INT64", shape=[1], data=[10])
    assert decode(undeclared, datatype="INT64", shape=[2], data=[-5, 2**40]).tolist() == [-5, 2**40]
    # warm-up draws still default to [0, 1) when nothing is declared
    drawn = example_inputs(
        WarmupSpec(inputs=[undeclared], buckets={"batch": [4]}), {"batch": 4}, generator=torch.Generator().manual_seed(0)
    )
    assert drawn["ids"].tolist() == [0, 0, 0, 0]
