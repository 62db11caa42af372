"""Errors of the warm-up engine, the artifact store and the inference host.

    WarmupError                 base class of everything warmers raises on purpose
    ├── ArtifactError           an artifact cannot be fetched or trusted
    │   ├── ArtifactNotFoundError   the URI names nothing (missing file, missing S3 key)
    │   ├── ArtifactSourceError     the URI is not under PREWARM_ARTIFACT_SOURCES; nothing is fetched
    │   ├── ChecksumMismatchError   the bytes do not hash to the registered sha256; nothing is loaded
    │   └── PickledArtifactError    a .pt2 archive holds pickled objects and the entry does not trust them
    ├── ModelLoadError          the loader failed: factory import, bad weights, device out of memory
    │   ├── DeviceOutOfMemoryError  the device ran out of memory while loading or warming
    │   └── FactoryNotAllowedError  the factory's module is not under PREWARM_FACTORY_MODULES; nothing is imported
    ├── CapacityError           a load does not fit in the host's device memory, even after eviction
    ├── ModelNotFoundError      no model (or version) of that name is known to the host (HTTP 404)
    ├── ModelNotReadyError      the model is known but not ready to serve (HTTP 400/503)
    ├── InferenceInputError     a request's tensors are malformed: names the input (HTTP 400)
    │   ├── RequestTooLargeError    the body (or what it decompresses to) exceeds the host's limit (HTTP 413)
    │   └── UnsupportedEncodingError  the body's Content-Encoding is not gzip, deflate or identity (HTTP 415)
    ├── InferenceError          the model failed on a well-formed request (HTTP 500)
    └── TargetError             a remote V2 server refused or failed a call (carries its status and body)
        └── MetadataMismatchError   the warm-up inputs do not fit the model's metadata on the server

HTTP status codes are chosen only at the edge (:mod:`warmers.host`), never here. ``WarmupError`` is a
:class:`prewarm.errors.PrewarmError`, so the command line reports it as one message and exit code 1.
"""

from __future__ import annotations

from prewarm.errors import PrewarmError


class WarmupError(PrewarmError):
    """Base class of every error the warm-up engine raises on purpose."""


class ArtifactError(WarmupError):
    """An artifact cannot be fetched, cached or trusted."""


class ArtifactNotFoundError(ArtifactError):
    """The artifact URI names no file or object."""


class ArtifactSourceError(ArtifactError):
    """The artifact URI is not under any prefix of ``PREWARM_ARTIFACT_SOURCES``, so nothing is fetched."""


class ChecksumMismatchError(ArtifactError):
    """The fetched bytes do not hash to the registered sha256, so nothing is loaded."""


class PickledArtifactError(ArtifactError):
    """A ``.pt2`` archive holds pickled objects and its fleet entry does not set ``trust_pickle: true``."""


class ModelLoadError(WarmupError):
    """A loader failed to build the module: factory import, weights that do not fit the module, ..."""


class DeviceOutOfMemoryError(ModelLoadError):
    """The device ran out of memory while loading or warming a model."""


class FactoryNotAllowedError(ModelLoadError):
    """A factory's module is not under ``PREWARM_FACTORY_MODULES``, so it is never imported."""


class CapacityError(WarmupError):
    """A load does not fit in the host's device memory budget, even after evicting idle models."""


class ModelNotFoundError(WarmupError):
    """No model or model version of that name is known."""


class ModelNotReadyError(WarmupError):
    """The model is known but not loaded and warmed."""


class InferenceInputError(WarmupError):
    """A request's tensors are malformed, of the wrong shape or of the wrong datatype."""


class RequestTooLargeError(InferenceInputError):
    """A request body, or what it decompresses to, is larger than ``PREWARM_HOST__MAX_BODY_MB``."""


class UnsupportedEncodingError(InferenceInputError):
    """A request body's ``Content-Encoding`` is neither ``gzip``, ``deflate`` nor ``identity``."""


class InferenceError(WarmupError):
    """The model raised on a request that passed validation."""


class TargetError(WarmupError):
    """A remote inference server refused or failed a call; ``status_code`` and ``body`` say what it answered."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class MetadataMismatchError(TargetError):
    """The warm-up inputs (names, datatypes, shapes) do not fit the model's metadata on the server."""
