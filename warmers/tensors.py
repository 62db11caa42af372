"""Tensors in the Open Inference Protocol V2: datatypes, shape checks, decoding and encoding, warm-up inputs.

Requests are checked against the model's :class:`~prewarm.fleet.TensorSpec` inputs: every error names the
model and the input, says what was expected and what arrived.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from prewarm.fleet import TensorSpec, WarmupSpec
from warmers.errors import InferenceInputError

V2_TO_TORCH: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
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
_INTEGER = {"UINT8", "INT8", "INT16", "INT32", "INT64"}


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
    """Seeded random inputs of one bucket: integers in ``[low, high)``, floats uniform in ``[low, high)``."""
    inputs: dict[str, torch.Tensor] = {}
    for tensor in warmup.inputs:
        shape = concrete_shape(tensor, dims)
        dtype = V2_TO_TORCH[tensor.datatype]
        if tensor.datatype in _INTEGER:
            high = max(int(tensor.high), int(tensor.low) + 1)
            inputs[tensor.name] = torch.randint(int(tensor.low), high, shape, generator=generator, dtype=dtype)
        elif tensor.datatype == "BOOL":
            inputs[tensor.name] = torch.rand(shape, generator=generator) < 0.5
        else:
            values = torch.rand(shape, generator=generator) * (tensor.high - tensor.low) + tensor.low
            inputs[tensor.name] = values.to(dtype)
    return inputs


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
) -> torch.Tensor:
    """Turn one request input (JSON ``data`` or binary ``raw`` bytes) into a tensor, checking it against ``spec``.

    Raises :class:`InferenceInputError` naming the model and the input for a wrong datatype, a wrong shape, or
    data that is not a list of numbers of the declared size.
    """
    where = f"model {model!r}: input {spec.name!r}"
    if datatype != spec.datatype:
        raise InferenceInputError(f"{where}: datatype {datatype} does not match the model's {spec.datatype}")
    dims = _check_shape(model, spec, shape, buckets)
    count = math.prod(dims)
    np_dtype = V2_TO_NUMPY[datatype]
    if raw is not None:
        if len(raw) != count * np_dtype.itemsize:
            raise InferenceInputError(
                f"{where}: binary data has {len(raw)} bytes; shape {list(dims)} of {datatype} needs "
                f"{count * np_dtype.itemsize}"
            )
        array = np.frombuffer(raw, dtype=np_dtype).copy()
    else:
        array = _array_from_json(where, data, datatype)
        if array.size != count:
            raise InferenceInputError(f"{where}: shape {list(dims)} needs {count} values, the data has {array.size}")
    tensor = torch.from_numpy(array.reshape(dims))
    if datatype == "BF16":
        tensor = tensor.view(torch.bfloat16)
    return tensor


def _array_from_json(where: str, data: Any, datatype: str) -> np.ndarray[Any, Any]:
    if not isinstance(data, list):
        raise InferenceInputError(f"{where}: data must be a list of numbers, got {type(data).__name__}")
    try:
        array = np.asarray(data)
    except ValueError:
        raise InferenceInputError(f"{where}: data is a ragged nested list; send a flat row-major list") from None
    kind = array.dtype.kind
    if array.size and kind not in "biuf":
        raise InferenceInputError(f"{where}: data must contain only numbers (found {array.dtype.name} values)")
    if datatype in _INTEGER and kind == "f":
        if not np.all(np.mod(array, 1) == 0):
            raise InferenceInputError(f"{where}: data has fractional values but the datatype is {datatype}")
    if datatype == "BF16":
        return torch.from_numpy(array.astype(np.float32).ravel()).to(torch.bfloat16).view(torch.uint16).numpy()
    return array.astype(V2_TO_NUMPY[datatype]).ravel()


def encode_json(tensor: torch.Tensor) -> list[Any]:
    """A tensor's values as a flat row-major list (BF16 goes out as float)."""
    flat = tensor.detach().reshape(-1).cpu()
    if flat.dtype == torch.bfloat16:
        flat = flat.float()
    return flat.tolist()  # type: ignore[no-any-return]


def encode_binary(tensor: torch.Tensor) -> bytes:
    """A tensor's values as raw little-endian bytes (the V2 binary tensor extension)."""
    flat = tensor.detach().reshape(-1).cpu().contiguous()
    if flat.dtype == torch.bfloat16:
        flat = flat.view(torch.uint16)
    return flat.numpy().tobytes()
