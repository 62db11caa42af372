"""Tensors in the Open Inference Protocol V2: datatypes, shape checks, decoding and encoding, warm-up inputs.

Requests are checked against the model's :class:`~prewarm.fleet.TensorSpec` inputs: every error names the
model and the input, says what was expected and what arrived.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from prewarm.fleet import TensorSpec, WarmupSpec
from warmers.errors import InferenceInputError

V2_TO_TORCH: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "UINT16": torch.uint16,
    "UINT32": torch.uint32,
    "UINT64": torch.uint64,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "BF16": torch.bfloat16,
    "FP32": torch.float32,
    "FP64": torch.float64,
}
TORCH_TO_V2: dict[torch.dtype, str] = {dtype: name for name, dtype in V2_TO_TORCH.items()}
# numpy has no bfloat16: BF16 travels as its 16-bit pattern and is reinterpreted by torch.
V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    name: np.dtype(np.uint16) if name == "BF16" else torch.empty(0, dtype=dtype).numpy().dtype
    for name, dtype in V2_TO_TORCH.items()
}
_INTEGER = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
# BYTES tensors are numpy arrays of ``bytes`` objects (torch has no string tensors); a module that declares a
# BYTES input receives one, and may return one for a BYTES output.
BYTES = "BYTES"


def v2_datatype_of(value: Any) -> str:
    """The V2 datatype of a tensor, or ``BYTES`` for a numpy array of ``bytes``."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return BYTES
    return v2_datatype(value.dtype)


def v2_datatype(dtype: torch.dtype) -> str:
    """The V2 datatype name of a torch dtype (``torch.float32`` -> ``FP32``)."""
    try:
        return TORCH_TO_V2[dtype]
    except KeyError:
        raise InferenceInputError(f"torch dtype {dtype} has no Open Inference Protocol datatype") from None


def metadata_shape(tensor: TensorSpec) -> list[int]:
    """The shape as model metadata shows it: named (variable) dimensions become -1."""
    return [-1 if isinstance(dim, str) else int(dim) for dim in tensor.shape]


def bucket_combinations(warmup: WarmupSpec) -> list[dict[str, int]]:
    """Every combination of the warm-up bucket values, in declaration order (one empty dict if none)."""
    names = list(warmup.buckets)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*warmup.buckets.values())]


def concrete_shape(tensor: TensorSpec, dims: Mapping[str, int]) -> tuple[int, ...]:
    """The tensor's shape with every named dimension replaced by its value in ``dims``."""
    return tuple(dims[d] if isinstance(d, str) else int(d) for d in tensor.shape)


def example_inputs(
    warmup: WarmupSpec, dims: Mapping[str, int], *, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Seeded random inputs of one bucket: integers in ``[low, high)``, floats uniform in ``[low, high)``.

    BYTES inputs get lowercase ASCII strings whose lengths are drawn from ``[low, high)``.
    """
    inputs: dict[str, Any] = {}
    for tensor in warmup.inputs:
        shape = concrete_shape(tensor, dims)
        if tensor.datatype == BYTES:
            inputs[tensor.name] = _example_bytes(tensor, shape, generator)
            continue
        dtype = V2_TO_TORCH[tensor.datatype]
        if tensor.datatype in _INTEGER:
            high = max(int(tensor.draw_high), int(tensor.draw_low) + 1)
            values = torch.randint(int(tensor.draw_low), high, shape, generator=generator, dtype=torch.int64)
            inputs[tensor.name] = values.to(dtype)
        elif tensor.datatype == "BOOL":
            inputs[tensor.name] = torch.rand(shape, generator=generator) < 0.5
        else:
            values = torch.rand(shape, generator=generator) * (tensor.draw_high - tensor.draw_low) + tensor.draw_low
            inputs[tensor.name] = values.to(dtype)
    return inputs


def _example_bytes(tensor: TensorSpec, shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray[Any, Any]:
    count = math.prod(shape)
    low = max(int(tensor.draw_low), 0)
    lengths = torch.randint(low, max(int(tensor.draw_high), low + 1), (count,), generator=generator).tolist()
    letters = torch.randint(97, 123, (sum(lengths),), generator=generator, dtype=torch.uint8).numpy().tobytes()
    items, offset = [], 0
    for length in lengths:
        items.append(letters[offset : offset + length])
        offset += length
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def check_request_names(model: str, expected: Sequence[TensorSpec], given: Iterable[str]) -> None:
    """Raise unless ``given`` names each expected input exactly once."""
    given = list(given)
    wanted = [t.name for t in expected]
    for name in given:
        if name not in wanted:
            raise InferenceInputError(
                f"model {model!r}: input {name!r} is not an input of this model; it expects {', '.join(wanted)}"
            )
        if given.count(name) > 1:
            raise InferenceInputError(f"model {model!r}: input {name!r} appears more than once")
    for name in wanted:
        if name not in given:
            raise InferenceInputError(f"model {model!r}: input {name!r} is missing; it expects {', '.join(wanted)}")


def _check_shape(model: str, spec: TensorSpec, shape: Sequence[Any], buckets: Mapping[str, list[int]]) -> tuple[int, ...]:
    where = f"model {model!r}: input {spec.name!r}"
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InferenceInputError(f"{where}: shape must be a list of integers, got {shape!r}")
    if len(shape) != len(spec.shape):
        raise InferenceInputError(
            f"{where}: shape {list(shape)} has {len(shape)} dimensions, the model expects "
            f"{metadata_shape(spec)} ({len(spec.shape)} dimensions)"
        )
    for axis, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if isinstance(want, str):
            largest = max(buckets[want])
            if not 1 <= got <= largest:
                raise InferenceInputError(
                    f"{where}: dimension {axis} ({want!r}) is {got}; it must be between 1 and {largest}, "
                    f"the largest warmed bucket"
                )
        elif got != want:
            raise InferenceInputError(
                f"{where}: shape {list(shape)} does not match the model's {metadata_shape(spec)} at dimension {axis}"
            )
    return tuple(shape)


def decode_tensor(
    model: str,
    spec: TensorSpec,
    buckets: Mapping[str, list[int]],
    *,
    datatype: str,
    shape: Sequence[Any],
    data: Any = None,
    raw: bytes | None = None,
) -> Any:
    """Turn one request input (JSON ``data`` or binary ``raw`` bytes) into a tensor, checking it against ``spec``.

    Raises :class:`InferenceInputError` naming the model and the input for a wrong datatype, a wrong shape,
    data that is not a list of numbers of the declared size, or (integer inputs) a value outside the spec's
    ``[low, high)``. BYTES inputs become numpy arrays of ``bytes``.
    """
    where = f"model {model!r}: input {spec.name!r}"
    if datatype != spec.datatype:
        raise InferenceInputError(f"{where}: datatype {datatype} does not match the model's {spec.datatype}")
    dims = _check_shape(model, spec, shape, buckets)
    count = math.prod(dims)
    if datatype == BYTES:
        return _decode_bytes(where, dims, count, data, raw)
    np_dtype = V2_TO_NUMPY[datatype]
    if raw is not None:
        if len(raw) != count * np_dtype.itemsize:
            raise InferenceInputError(
                f"{where}: binary data has {len(raw)} bytes; shape {list(dims)} of {datatype} needs "
                f"{count * np_dtype.itemsize}"
            )
        array = np.frombuffer(raw, dtype=np_dtype).copy()
        if datatype in _INTEGER:
            _check_range(where, spec, array)
    else:
        array = _array_from_json(where, spec, data, datatype, dims)
        if array.size != count:
            raise InferenceInputError(f"{where}: shape {list(dims)} needs {count} values, the data has {array.size}")
    tensor = torch.from_numpy(array.reshape(dims))
    if datatype == "BF16":
        tensor = tensor.view(torch.bfloat16)
    return tensor


def _decode_bytes(where: str, dims: tuple[int, ...], count: int, data: Any, raw: bytes | None) -> np.ndarray[Any, Any]:
    if raw is not None:
        items = bytes_elements(raw, where=where, count=count)
    else:
        if not isinstance(data, list):
            raise InferenceInputError(f"{where}: data must be a list of strings, got {type(data).__name__}")
        flat = _flatten(where, data, len(dims))
        if not all(isinstance(v, str) for v in flat):
            raise InferenceInputError(f"{where}: BYTES data must contain only strings")
        if len(flat) != count:
            raise InferenceInputError(f"{where}: shape {list(dims)} needs {count} values, the data has {len(flat)}")
        items = [v.encode() for v in flat]
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(dims)


def _flatten(where: str, data: list[Any], rank: int) -> list[Any]:
    """Flatten row-major nested lists of at most ``rank`` levels."""
    flat = data
    for _ in range(rank):
        if not any(isinstance(v, list) for v in flat):
            return flat
        if not all(isinstance(v, list) for v in flat):
            raise InferenceInputError(f"{where}: data is a ragged nested list; send a flat row-major list")
        flat = [x for row in flat for x in row]
    if any(isinstance(v, list) for v in flat):
        raise InferenceInputError(f"{where}: data nests deeper than the tensor's {rank} dimensions")
    return flat


def bytes_elements(raw: bytes, *, where: str, count: int) -> list[bytes]:
    """Split BYTES binary data (each element a 4-byte little-endian length, then the bytes) into ``count`` items."""
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InferenceInputError(f"{where}: BYTES data ends inside an element's 4-byte length")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InferenceInputError(f"{where}: a BYTES element of {size} bytes runs past the data")
        items.append(raw[offset : offset + size])
        offset += size
        if len(items) > count:
            break
    if len(items) != count:
        raise InferenceInputError(f"{where}: BYTES data holds {len(items)} elements; the shape needs {count}")
    return items


def _depth(data: Any) -> int:
    """Nesting depth of a list along its first elements (the depth numpy would see for regular data)."""
    depth = 0
    while isinstance(data, list):
        depth += 1
        if not data:
            break
        data = data[0]
    return depth


def _array_from_json(where: str, spec: TensorSpec, data: Any, datatype: str, dims: tuple[int, ...]) -> np.ndarray[Any, Any]:
    if not isinstance(data, list):
        raise InferenceInputError(f"{where}: data must be a list of numbers, got {type(data).__name__}")
    depth = _depth(data)
    if depth not in (1, len(dims)):
        raise InferenceInputError(
            f"{where}: data nests {depth} levels; send a flat row-major list or lists nested as the shape {list(dims)}"
        )
    try:
        array = np.asarray(data)
    except ValueError:
        raise InferenceInputError(f"{where}: data is a ragged nested list; send a flat row-major list") from None
    kind = array.dtype.kind
    if array.size and kind not in "biuf":
        raise InferenceInputError(f"{where}: data must contain only numbers (found {array.dtype.name} values)")
    if datatype in _INTEGER and array.size:
        if kind == "f" and not np.all(np.mod(array, 1) == 0):
            raise InferenceInputError(f"{where}: data has fractional values but the datatype is {datatype}")
        _check_range(where, spec, array)
    if datatype == "BF16":
        return torch.from_numpy(array.astype(np.float32).ravel()).to(torch.bfloat16).view(torch.uint16).numpy()
    return array.astype(V2_TO_NUMPY[datatype]).ravel()


def value_range(spec: TensorSpec) -> tuple[int, int]:
    """The ``[low, high)`` an integer input's values must lie in: the declared range within the datatype's own.

    An undeclared end is the datatype's own limit, so an input without ``low``/``high`` accepts every value of
    its type.
    """
    info = np.iinfo(V2_TO_NUMPY[spec.datatype])
    low = int(info.min) if spec.low is None else max(math.ceil(spec.low), int(info.min))
    high = int(info.max) + 1 if spec.high is None else min(math.ceil(spec.high), int(info.max) + 1)
    return low, max(high, low + 1)


def _check_range(where: str, spec: TensorSpec, array: np.ndarray[Any, Any]) -> None:
    """Integer values must lie in the spec's ``[low, high)`` (token ids inside the vocabulary, say)."""
    if not array.size or not spec.declares_range:
        return
    low, high = value_range(spec)
    if array.min() >= low and array.max() < high:
        return
    flat = array.ravel()
    index = int(np.flatnonzero((flat < low) | (flat >= high))[0])
    value = flat[index]
    shown = int(value) if float(value).is_integer() else float(value)
    raise InferenceInputError(
        f"{where}: value {shown} at flat index {index} is outside [{low}, {high}), the range the model declares"
    )


def encode_json(tensor: Any) -> list[Any]:
    """A tensor's values as a flat row-major list (BF16 goes out as float, BYTES as strings)."""
    if isinstance(tensor, np.ndarray):
        return [_text(v) for v in tensor.reshape(-1).tolist()] if tensor.dtype == object else tensor.reshape(-1).tolist()
    flat = tensor.detach().reshape(-1).cpu()
    if flat.dtype == torch.bfloat16:
        flat = flat.float()
    return flat.tolist()  # type: ignore[no-any-return]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def encode_binary(tensor: Any) -> bytes:
    """A tensor's values as raw little-endian bytes (the V2 binary tensor extension); BYTES length-prefixed."""
    if isinstance(tensor, np.ndarray):
        if tensor.dtype != object:
            return tensor.tobytes()
        parts = []
        for value in tensor.reshape(-1).tolist():
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    flat = tensor.detach().reshape(-1).cpu().contiguous()
    if flat.dtype == torch.bfloat16:
        flat = flat.view(torch.uint16)
    return flat.numpy().tobytes()
