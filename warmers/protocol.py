"""Open Inference Protocol V2 (KServe / Triton REST) messages, in one module.

Only what the host speaks: health, server and model metadata, inference with JSON tensors (and the binary
tensor extension that ``tritonclient`` uses by default), and the model repository extension.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestInput(_Message):
    """One input tensor of an inference request; ``data`` is absent when the tensor travels as binary."""

    name: str
    shape: list[Any]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestOutput(_Message):
    """An output the client asks for, with ``parameters.binary_data`` to get it as binary."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Message):
    """``POST /v2/models/{name}[/versions/{v}]/infer``."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """One output tensor of an inference response."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    """The answer to an inference request."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    """A tensor in model metadata; -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: list[int]


class MetadataModel(BaseModel):
    """``GET /v2/models/{name}[/versions/{v}]``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    properties: dict[str, str] | None = None


class MetadataServer(BaseModel):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class RepositoryIndexRequest(_Message):
    """``POST /v2/repository/index``; ``ready: true`` lists only ready models."""

    ready: bool | None = None


class RepositoryIndexItem(BaseModel):
    """One model version in the repository index."""

    name: str
    version: str | None = None
    state: str
    reason: str = ""


class RepositoryRequest(_Message):
    """``POST /v2/repository/models/{name}/load`` or ``/unload``."""

    parameters: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """Every error the host answers with."""

    error: str
