"""The V2 request and response codec: request bytes to tensors, tensors to response bytes, and back for warm-up.

One codec serves client requests and the engine's own warm-up and validation requests, so that warm-up runs
the same (de)serialisation as the requests it prepares for. JSON is parsed with orjson, whose nesting limit
(1,024 levels) turns absurdly nested bodies into a 400 rather than a crash; the binary tensor extension
(``Inference-Header-Content-Length``, ``binary_data_size``, ``binary_data``/``binary_data_output``) is read
and written as the protocol describes. Every error is an :class:`InferenceInputError` naming the model, and
the input where there is one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import torch
from pydantic import ValidationError

from prewarm.fleet import ModelSpec, TensorSpec
from prewarm.text import validation_message
from warmers.errors import InferenceInputError
from warmers.protocol import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput
from warmers.tensors import (
    check_request_names,
    decode_tensor,
    encode_binary,
    encode_json,
    v2_datatype_of,
)

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Encoded:
    """A request or response body; ``header_length`` is set when binary tensors follow the JSON header."""

    body: bytes
    header_length: int | None = None

    @property
    def media_type(self) -> str:
        """``application/json``, or ``application/octet-stream`` with binary tensors."""
        return "application/json" if self.header_length is None else "application/octet-stream"

    def headers(self) -> dict[str, str]:
        """The HTTP headers that go with the body."""
        return {} if self.header_length is None else {HEADER_LENGTH: str(self.header_length)}


def parse_request(model: str, body: bytes, header_length: str | int | None) -> tuple[InferenceRequest, dict[str, bytes]]:
    """The JSON part of a request and, with the binary extension, each input's bytes."""
    where = f"model {model!r}"
    split = len(body)
    if header_length is not None:
        text = str(header_length)
        if not text.isdigit() or int(text) > len(body):
            raise InferenceInputError(f"{where}: {HEADER_LENGTH} {text!r} does not fit a {len(body)}-byte body")
        split = int(text)
    try:
        payload = orjson.loads(body[:split])
    except orjson.JSONDecodeError as exc:
        raise InferenceInputError(f"{where}: the request body is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise InferenceInputError(f"{where}: the request body must be a JSON object with an 'inputs' list")
    try:
        parsed = InferenceRequest.model_validate(payload)
    except ValidationError as exc:
        raise InferenceInputError(f"{where}: {describe(exc, payload)}") from None
    binary: dict[str, bytes] = {}
    rest, offset = memoryview(body)[split:], 0
    for item in parsed.inputs:
        size = (item.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(rest):
            raise InferenceInputError(f"{where}: input {item.name!r}: binary_data_size {size!r} runs past the body")
        binary[item.name] = bytes(rest[offset : offset + size])
        offset += size
    if offset != len(rest):
        raise InferenceInputError(f"{where}: {len(rest) - offset} bytes of binary data belong to no input")
    return parsed, binary


def describe(exc: ValidationError, payload: Any) -> str:
    """The first validation error, naming the input it is about when there is one."""
    error = exc.errors()[0]
    loc = error["loc"]
    if len(loc) >= 2 and loc[0] == "inputs" and isinstance(loc[1], int):
        try:
            name = payload["inputs"][loc[1]].get("name", f"#{loc[1]}")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = f"#{loc[1]}"
        field = ".".join(str(p) for p in loc[2:]) or "(the input)"
        return f"input {name!r}: field {field}: {validation_message(error)}"
    return f"field {'.'.join(str(p) for p in loc) or '(body)'}: {validation_message(error)}"


def decode_inputs(spec: ModelSpec, request: InferenceRequest, binary: Mapping[str, bytes]) -> dict[str, Any]:
    """Every input of ``request`` as a tensor (a numpy array of ``bytes`` for BYTES), checked against ``spec``."""
    check_request_names(spec.name, spec.warmup.inputs, [i.name for i in request.inputs])
    by_name = {t.name: t for t in spec.warmup.inputs}
    decoded: dict[str, Any] = {}
    for item in request.inputs:
        if item.data is None and item.name not in binary:
            raise InferenceInputError(f"model {spec.name!r}: input {item.name!r} has neither data nor binary data")
        decoded[item.name] = decode_tensor(
            spec.name, by_name[item.name], spec.warmup.buckets, datatype=item.datatype, shape=item.shape,
            data=item.data, raw=binary.get(item.name),
        )
    return decoded


def encode_response(
    spec: ModelSpec, output_specs: Sequence[TensorSpec], outputs: Sequence[Any], request: InferenceRequest
) -> Encoded:
    """The response to ``request``: the outputs it asked for (all by default), JSON or binary as it asked.

    ``parameters.classification: k`` on a requested output returns, per row of its last dimension, the top
    ``k`` entries as BYTES strings ``"<value>:<index>"`` (Triton's classification extension).
    """
    names = [o.name for o in output_specs] or [f"output{i}" for i in range(len(outputs))]
    binary_all = _flag(spec, "binary_data_output", (request.parameters or {}).get("binary_data_output", False))
    wanted: dict[str, tuple[bool, int | None]] = {}
    for requested in request.outputs or []:
        if requested.name not in names:
            raise InferenceInputError(
                f"model {spec.name!r}: requested output {requested.name!r} does not exist; outputs are {', '.join(names)}"
            )
        params = requested.parameters or {}
        binary = _flag(spec, f"output {requested.name!r}: binary_data", params.get("binary_data", binary_all))
        wanted[requested.name] = (binary, _classification(spec, requested.name, params.get("classification")))
    if not wanted:
        wanted = {n: (binary_all, None) for n in names}
    items: list[ResponseOutput] = []
    blobs: list[bytes] = []
    for name, value in zip(names, outputs, strict=False):
        if name not in wanted:
            continue
        binary, top_k = wanted[name]
        if top_k is not None:
            value = _classify(spec, name, value, top_k)
        item = ResponseOutput(name=name, shape=list(value.shape), datatype=v2_datatype_of(value))
        if binary:
            blob = encode_binary(value)
            item.parameters = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item.data = encode_json(value)
        items.append(item)
    header = InferenceResponse(model_name=spec.name, model_version=spec.version, id=request.id, outputs=items)
    text = header.model_dump_json(exclude_none=True).encode()
    if not blobs:
        return Encoded(text)
    return Encoded(text + b"".join(blobs), header_length=len(text))


def _flag(spec: ModelSpec, what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InferenceInputError(f"model {spec.name!r}: {what} must be true or false, got {value!r}")
    return value


def _classification(spec: ModelSpec, output: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InferenceInputError(
            f"model {spec.name!r}: output {output!r}: classification must be a positive integer, got {value!r}"
        )
    return value


def _classify(spec: ModelSpec, output: str, value: Any, top_k: int) -> np.ndarray[Any, Any]:
    """Top ``top_k`` entries of the last dimension as ``b"<value>:<index>"``, shape ``[..., top_k]``."""
    if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.dtype == torch.bool or value.is_complex():
        raise InferenceInputError(f"model {spec.name!r}: output {output!r} is not a numeric tensor to classify")
    k = min(top_k, value.shape[-1])
    scores, indices = torch.topk(value.float(), k, dim=-1)
    flat = [f"{s:g}:{i}".encode() for s, i in zip(scores.reshape(-1).tolist(), indices.reshape(-1).tolist(), strict=True)]
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(tuple(scores.shape))


def encode_request(
    spec: ModelSpec, inputs: Mapping[str, Any], *, binary: bool, request_id: str | None = None
) -> Encoded:
    """A V2 request carrying ``inputs`` (in the spec's order), all JSON or all binary, asking for outputs alike."""
    items: list[RequestInput] = []
    blobs: list[bytes] = []
    for tensor_spec in spec.warmup.inputs:
        value = inputs[tensor_spec.name]
        item = RequestInput(name=tensor_spec.name, shape=list(value.shape), datatype=tensor_spec.datatype)
        if binary:
            blob = encode_binary(value)
            item.parameters = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item.data = encode_json(value)
        items.append(item)
    request = InferenceRequest(id=request_id, inputs=items, parameters={"binary_data_output": binary})
    text = request.model_dump_json(exclude_none=True).encode()
    if not binary:
        return Encoded(text)
    return Encoded(text + b"".join(blobs), header_length=len(text))


def decode_response(body: bytes, header_length: int | None) -> tuple[InferenceResponse, dict[str, bytes]]:
    """A response's JSON part and each binary output's bytes (for tests and clients in this package)."""
    split = len(body) if header_length is None else header_length
    response = InferenceResponse.model_validate_json(body[:split])
    blobs: dict[str, bytes] = {}
    offset = split
    for item in response.outputs:
        size = (item.parameters or {}).get("binary_data_size")
        if size is not None:
            blobs[item.name] = body[offset : offset + size]
            offset += size
    return response, blobs
