"""The fleet file: which models exist, where their artifacts are, and how to warm them.

A fleet file is YAML with one key, ``models``, a list of :class:`ModelSpec` entries. Relative
artifact paths resolve against the fleet file's folder, so a fleet and its artifacts travel together.
An entry with ``server: foreign`` is served by another V2 server (MLServer, KServe, Triton): prewarm only
warms and validates it there, so its name, version, warm-up inputs and SLA suffice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from prewarm.errors import FleetError
from prewarm.text import plural, validation_message

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
V2_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64", "BYTES",
)

Loader = Literal["safetensors", "torch_export"]
Server = Literal["prewarm", "foreign"]
CompileMode = Literal["none", "default", "reduce-overhead"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One named input or output tensor; a string dimension names a shape bucket axis (variable)."""

    name: str = Field(min_length=1)
    datatype: Literal[V2_DATATYPES] = "FP32"  # type: ignore[valid-type]
    shape: list[int | str]
    low: float | None = Field(
        default=None,
        description="Warm-up values are drawn uniformly from [low, high) (default [0, 1)); when declared, integer "
        "inputs must stay in it (400 outside); for BYTES it is the range of element lengths.",
    )
    high: float | None = None

    @property
    def draw_low(self) -> float:
        """The lower end warm-up values are drawn from."""
        return 0.0 if self.low is None else self.low

    @property
    def draw_high(self) -> float:
        """The upper end (exclusive) warm-up values are drawn from."""
        return 1.0 if self.high is None else self.high

    @property
    def declares_range(self) -> bool:
        """Whether the fleet declared a value range that requests must respect."""
        return self.low is not None or self.high is not None


class WarmupSpec(_Strict):
    """The requests a warm-up sends: every combination of the bucket values, ``iterations`` times."""

    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(default_factory=list)
    buckets: dict[str, list[int]] = Field(default_factory=dict)
    iterations: int = Field(default=3, ge=1)
    probes: int = Field(default=20, ge=1, description="Probe requests that validate latency.")

    @model_validator(mode="after")
    def _dims_have_buckets(self) -> WarmupSpec:
        for tensor in [*self.inputs, *self.outputs]:
            for dim in tensor.shape:
                if isinstance(dim, str) and dim not in self.buckets:
                    raise ValueError(
                        f"tensor {tensor.name!r} uses dimension {dim!r} but warmup.buckets has no {dim!r}"
                    )
        return self


class ModelSpec(_Strict):
    """One model version of the fleet."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str = Field(default="1", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    server: Server = Field(
        default="prewarm",
        description="prewarm: prewarm's engine loads the artifact; foreign: another V2 server holds the model.",
    )
    artifact_uri: str | None = None
    sha256: str | None = None
    loader: Loader | None = None
    factory: str | None = Field(default=None, description="module:function building the nn.Module.")
    factory_kwargs: dict[str, Any] = Field(default_factory=dict)
    warmup: WarmupSpec
    compile: CompileMode = "none"
    device: str = "auto"
    sla_p99_ms: float | None = Field(default=None, gt=0)
    priority: int = Field(default=0, description="Higher goes first when capacity is short.")
    device_memory_mb: float = Field(default=0.0, ge=0)
    replica_capacity: float = Field(default=100.0, gt=0, description="Requests per interval one replica serves.")
    pinned: bool = Field(default=False, description="A pinned model is never evicted to make room for another.")
    trust_pickle: bool = Field(
        default=False,
        description="Load a .pt2 archive even though it holds pickled objects (pickles run code when loaded); "
        "only for artifacts from an allowed source whose producer you trust as much as your own code.",
    )
    cold_price: float | None = Field(
        default=None, ge=0,
        description="Price of one cold request, in the unit of replica_hour_price (default derived from sla_p99_ms "
        "and replica_capacity: see scheduling.cost).",
    )
    replica_hour_price: float | None = Field(default=None, ge=0, description="Price of one replica-hour (default 1).")

    @field_validator("sha256")
    @classmethod
    def _sha256_hex(cls, value: str | None) -> str | None:
        if value is not None and not SHA256_RE.match(value):
            raise ValueError("must be 64 lowercase hex characters (the artifact's sha256)")
        return value

    @field_validator("artifact_uri")
    @classmethod
    def _uri_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parsed = urlparse(value)
        if parsed.scheme not in ("", "file", "s3"):
            raise ValueError(f"scheme {parsed.scheme!r} is not supported; use a path, file:// or s3://")
        if parsed.scheme == "s3" and not parsed.netloc:
            raise ValueError("an s3:// URI needs a bucket: s3://bucket/key")
        if not (parsed.path or parsed.netloc):
            raise ValueError("is empty")
        return value

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, value: str | None) -> str | None:
        if value is not None and not FACTORY_RE.match(value):
            raise ValueError("must look like 'package.module:function'")
        return value

    @model_validator(mode="after")
    def _loader_needs_factory(self) -> ModelSpec:
        if self.loader == "safetensors" and self.factory is None:
            raise ValueError("loader 'safetensors' needs a factory 'module:function' that builds the module")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _own_models_need_artifacts(cls, data: Any, handler: ModelWrapValidatorHandler[ModelSpec]) -> ModelSpec:
        # Reported where the field is missing (models[1].loader), like any other required field.
        if isinstance(data, dict) and data.get("server", "prewarm") == "prewarm":
            missing = [key for key in ("artifact_uri", "sha256", "loader") if data.get(key) is None]
            if missing:
                hint = PydanticCustomError(
                    "missing",
                    "Field required: prewarm's engine loads this model from its artifact "
                    "(set `server: foreign` for a model that another V2 server holds)",
                )
                raise ValidationError.from_exception_data(
                    cls.__name__, [InitErrorDetails(type=hint, loc=(key,), input=data) for key in missing]
                )
        return handler(data)

    @property
    def foreign(self) -> bool:
        """Whether another V2 server holds this model (prewarm's engine cannot load it)."""
        return self.server == "foreign"


class Fleet(_Strict):
    """A fleet file's content."""

    models: list[ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Fleet:
        seen: set[tuple[str, str]] = set()
        for spec in self.models:
            key = (spec.name, spec.version)
            if key in seen:
                raise ValueError(f"model {spec.name!r} version {spec.version!r} appears twice")
            seen.add(key)
        return self


def resolve_uri(uri: str, base: Path) -> str:
    """Turn a relative artifact path into an absolute ``file://`` URI against ``base``."""
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "file"):
        return uri
    path = Path(uri)
    if not path.is_absolute():
        path = (base / path).resolve()
    return path.as_uri()


def factory_allowed(factory: str, modules: Sequence[str]) -> bool:
    """Whether ``factory`` (``module:function``) names a module under one of the prefixes ``modules``.

    Prefixes end at a dot: ``warmers.zoo`` allows ``warmers.zoo`` and ``warmers.zoo.x``, not ``warmers.zoology``.
    """
    module = factory.partition(":")[0]
    for prefix in modules:
        prefix = prefix.strip().rstrip(".")
        if prefix and (module == prefix or module.startswith(f"{prefix}.")):
            return True
    return False


def factory_refusal(factory: str, modules: Sequence[str]) -> str:
    """The message for a factory outside ``modules``: what, which setting, what to do."""
    return (
        f"{factory!r} is not under PREWARM_FACTORY_MODULES ({', '.join(modules) or 'none'}); "
        f"add the module's prefix to allow it"
    )


def check_factories(fleet: Fleet, path: str | Path, modules: Sequence[str]) -> None:
    """Raise :class:`FleetError` naming the file and field of the first factory outside ``modules``.

    A factory is code that a load imports and calls, so only modules the operator installed and listed
    in ``PREWARM_FACTORY_MODULES`` may be named.
    """
    for index, spec in enumerate(fleet.models):
        if spec.factory is not None and not factory_allowed(spec.factory, modules):
            raise FleetError(f"{path}: models[{index}].factory: {factory_refusal(spec.factory, modules)}")


def _location(error: dict[str, Any]) -> str:
    parts: list[str] = []
    for item in error["loc"]:
        parts.append(f"[{item}]" if isinstance(item, int) else (f".{item}" if parts else str(item)))
    return "".join(parts) or "(top level)"


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet file; relative artifact paths become absolute ``file://`` URIs.

    Raises :class:`FleetError` naming the file and the field (or YAML line and column) at fault.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FleetError(f"{path}: cannot read the fleet file ({exc.strerror})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc)
        raise FleetError(f"{path}: {where}: invalid YAML: {problem}") from exc
    if not isinstance(raw, dict):
        raise FleetError(f"{path}: expected a mapping with a 'models' list at the top level")
    try:
        fleet = Fleet.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = _model_name(raw, first["loc"])
        raise FleetError(
            f"{path}: field {_location(first)}{name}: {validation_message(first)}"
            + (f" ({more} more {plural(more, 'error')})" if (more := len(exc.errors()) - 1) else "")
        ) from exc
    base = path.resolve().parent
    models = [
        m.model_copy(update={"artifact_uri": resolve_uri(m.artifact_uri, base)}) if m.artifact_uri else m
        for m in fleet.models
    ]
    return Fleet(models=models)


def _model_name(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        try:
            return f" (model {raw['models'][loc[1]]['name']!r})"
        except (KeyError, IndexError, TypeError):
            return ""
    return ""
