"""Devices and loaders: ``torch_export`` programs (``.pt2``) and ``safetensors`` weights assigned to a factory's module.

A factory module is built on the meta device (no memory, no initialisation) and receives its weights by
assignment. On CUDA the weights are staged in pinned host memory and copied with ``non_blocking=True`` on
the model's serving stream, so the copy runs at pinned bandwidth.
"""

from __future__ import annotations

import importlib
import os
import platform
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prewarm.fleet import ModelSpec, factory_allowed, factory_refusal
from warmers.archives import pickled_objects
from warmers.errors import DeviceOutOfMemoryError, FactoryNotAllowedError, ModelLoadError, PickledArtifactError
from warmers.logcontext import model_logger

logger = model_logger(__name__)


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else CPU; ``cuda`` without CUDA is an error."""
    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ModelLoadError(f"device {requested!r} is not a torch device; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {requested!r} asked for, but this machine has no CUDA device; use cpu or auto")
        if device.index is None:
            device = torch.device("cuda:0")
        if device.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {requested!r}: only {torch.cuda.device_count()} CUDA devices are present")
    return device


def device_class(device: torch.device) -> str:
    """A stable name for the kind of device, used to compare runs (``cuda:NVIDIA H100 80GB HBM3``, ``cpu:x86_64:2``)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}:{os.cpu_count()}"


def device_capability(device: torch.device) -> str:
    """The compute capability for compile-cache keys (``sm90``), or ``cpu-<arch>``."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"sm{major}{minor}"
    return f"cpu-{platform.machine()}"


def device_capacity_mb(device: torch.device) -> float:
    """What the device reports as its total memory, in MiB (physical RAM for CPU)."""
    if device.type == "cuda":
        _, total = torch.cuda.mem_get_info(device)
        return total / 2**20
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def import_factory(path: str, *, allowed: Sequence[str] | None = None) -> Callable[..., nn.Module]:
    """The callable named by ``package.module:function``; :class:`ModelLoadError` says why it cannot be imported.

    A module outside ``allowed`` (default ``PREWARM_FACTORY_MODULES``) is never imported: importing runs its
    code. That raises :class:`FactoryNotAllowedError`.
    """
    if allowed is None:
        from prewarm.settings import get_settings

        allowed = get_settings().factory_modules
    if not factory_allowed(path, allowed):
        raise FactoryNotAllowedError(f"factory {factory_refusal(path, allowed)}")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs arbitrary code; any failure is the factory's fault
        raise ModelLoadError(f"factory {path!r}: cannot import module {module_name!r} ({exc}); fix the model's factory") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelLoadError(f"factory {path!r}: module {module_name!r} has no callable {attr!r}; fix the model's factory")
    return factory  # type: ignore[no-any-return]


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers, each storage counted once."""
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen:
            continue
        seen.add(ptr)
        total += tensor.untyped_storage().nbytes()
    return total


def load_module(spec: ModelSpec, path: Path, device: torch.device, *, stream: Any = None) -> nn.Module:
    """Build the model of ``spec`` from the verified artifact at ``path`` on ``device``, in eval mode.

    Raises :class:`ModelLoadError` (factory import, weights that do not fit, unreadable artifact) or
    :class:`DeviceOutOfMemoryError`.
    """
    label = f"{spec.name}:{spec.version}"
    try:
        if spec.loader == "torch_export":
            module = _load_export(spec, label, path, device)
        else:
            module = _load_safetensors(spec, label, path, device, stream)
    except torch.cuda.OutOfMemoryError as exc:
        raise DeviceOutOfMemoryError(f"model {label}: out of device memory while loading on {device}: {exc}") from exc
    if spec.loader == "safetensors":  # exported programs are already inference graphs and refuse eval()
        module.eval()
        module.requires_grad_(False)
    return module


def _load_export(spec: ModelSpec, label: str, path: Path, device: torch.device) -> nn.Module:
    found = pickled_objects(path)
    if found and not spec.trust_pickle:
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        raise PickledArtifactError(
            f"model {label}: {spec.artifact_uri} holds pickled objects ({'; '.join(found[:3])}{more}); a pickle "
            f"runs code when loaded, so it is refused. Export the model without pickled weights, or set "
            f"trust_pickle: true on its fleet entry if its producer is as trusted as your own code"
        )
    if found:
        logger.warning("loading %s with %d pickled objects: its fleet entry sets trust_pickle", label, len(found))
    try:
        # torch.export.load sets a process-global deserializer: two loads at once in one host fail.
        with _EXPORT_LOCK, path.open("rb") as handle:  # cache entries are named by sha256, without the .pt2 suffix
            program = torch.export.load(handle)
    except Exception as exc:  # torch.export.load raises many types for a bad archive
        raise ModelLoadError(f"model {label}: {path.name} is not a torch.export program ({exc})") from exc
    module = program.module()
    return module.to(device) if device.type != "cpu" else module


def _load_safetensors(spec: ModelSpec, label: str, path: Path, device: torch.device, stream: Any) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    assert spec.factory is not None  # the fleet schema enforces it
    factory = import_factory(spec.factory)
    try:
        with _INIT_LOCK, _skipped_init(), torch.device("meta"):
            module = factory(**spec.factory_kwargs)
    except Exception as exc:  # the factory is user code
        raise ModelLoadError(f"model {label}: factory {spec.factory!r} failed: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"model {label}: factory {spec.factory!r} returned {type(module).__name__}, not an nn.Module")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"model {label}: {path.name} is not a safetensors file ({exc})") from exc
    if device.type == "cuda":
        state = _to_cuda(state, device, stream)
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"model {label}: the weights in {path.name} do not fit the module built by {spec.factory!r}: {exc}"
        ) from exc
    left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise ModelLoadError(f"model {label}: no weights for {', '.join(left[:5])}; the factory builds more than the file holds")
    return module


_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
)
_INIT_LOCK = threading.Lock()
_EXPORT_LOCK = threading.Lock()


@contextmanager
def _skipped_init() -> Iterator[None]:
    """Make ``torch.nn.init`` a no-op while a factory builds its module on the meta device.

    Initialising meta tensors computes nothing, but the first call routes through torch's Python reference
    implementations and imports them: 2.7 s of a 2.7 s build on the 2-core machine. Every parameter is
    assigned from the weights file right after (``strict=True``), so nothing is left uninitialised.
    """
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS if hasattr(torch.nn.init, name)}
    try:
        for name in saved:
            setattr(torch.nn.init, name, _keep)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def _keep(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


def _to_cuda(state: dict[str, torch.Tensor], device: torch.device, stream: Any) -> dict[str, torch.Tensor]:
    """Copy from pinned staging buffers with non-blocking copies on ``stream``, then wait for them."""
    stream = stream or torch.cuda.current_stream(device)
    moved: dict[str, torch.Tensor] = {}
    with torch.cuda.stream(stream):
        for name, tensor in state.items():
            moved[name] = tensor.pin_memory().to(device, non_blocking=True)
    stream.synchronize()
    return moved
