"""The compile-artifact cache: ``torch.compile`` results saved to and restored from the artifact store.

Entries are keyed by the model's sha256, the torch version, the device capability and the compile mode, and
live under ``<artifact root>/compile-cache/<key>.bin``. ``torch.compiler.save_cache_artifacts`` collects what
this process compiled so far, so an entry may hold more than one model's kernels: harmless on restore.
"""

from __future__ import annotations

import hashlib
import json
import logging

import torch

from warmers.artifacts import ArtifactStore, join_uri

logger = logging.getLogger(__name__)


def compile_key(sha256: str, capability: str, mode: str) -> str:
    """The cache key: model sha256 + torch version + device capability + compile mode, hashed."""
    material = json.dumps({"sha256": sha256, "torch": torch.__version__, "capability": capability, "mode": mode})
    return hashlib.sha256(material.encode()).hexdigest()


def compile_cache_uri(root: str, key: str) -> str:
    """Where the entry for ``key`` lives under the artifact root."""
    return join_uri(root, "compile-cache", f"{key}.bin")


def restore(store: ArtifactStore, uri: str) -> bool:
    """Load the compile artifacts stored at ``uri`` into this process; True on a hit."""
    blob = store.read_blob(uri)
    if blob is None:
        return False
    torch.compiler.load_cache_artifacts(blob)
    logger.info("restored %d bytes of compile artifacts from %s", len(blob), uri)
    return True


def save(store: ArtifactStore, uri: str) -> bool:
    """Save what this process has compiled to ``uri``; False when torch had nothing to save."""
    result = torch.compiler.save_cache_artifacts()
    if result is None:
        return False
    blob, _info = result
    store.write_blob(uri, blob)
    logger.info("saved %d bytes of compile artifacts to %s", len(blob), uri)
    return True


def compile_module(module: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``torch.compile`` for ``default`` and ``reduce-overhead``; ``none`` returns the module itself."""
    if mode == "none":
        return module
    # dynamic=None: the first bucket compiles static, a second shape recompiles once with dynamic shapes
    return torch.compile(module, mode=None if mode == "default" else mode)  # type: ignore[return-value]
