"""The compile-artifact cache: ``torch.compile`` results saved to and restored from the artifact store.

An entry is a zip with two parts: ``mega.bin``, what ``torch.compiler.save_cache_artifacts`` returns (the
FX graph, AOTAutograd and autotuning caches, and Triton kernels on GPU), and ``kernels/...``, the files the
compile added to the inductor cache directory. The second part matters on CPU: the mega-cache holds the
generated C++ source but not the shared objects g++ built from it, so without them a "hit" still spends most
of the cold time compiling C++. Entries are keyed by the model's sha256, the torch version, the device
capability and the compile mode, and live under ``<artifact root>/compile-cache/<key>.bin``.

``save_cache_artifacts`` collects what this process compiled so far, so ``mega.bin`` may hold more than one
model's graphs: harmless on restore.

Every entry carries ``manifest.json``, the sha256 of each member. It is checked before anything is restored:
an entry that is not a zip, has no manifest, or whose members (their set or their bytes) differ from it is
discarded with one warning, and the model compiles cold (its save then replaces the entry). The manifest
catches truncated, corrupted and half-edited entries; it does not make the entry authentic, since whoever can
write the artifact root can write a matching manifest too. Compiled kernels are code and the mega-cache is
unpickled by torch: the compile-cache prefix must be writable only by prewarm's hosts (``docs/security.md``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path, PurePosixPath

import torch

from warmers.artifacts import ArtifactStore, join_uri
from warmers.logcontext import model_logger

logger = model_logger(__name__)

Snapshot = dict[str, int]
MANIFEST = "manifest.json"


class _Unverified(Exception):
    """An entry's members do not match its manifest (internal: restore turns it into a cold compile)."""


def bundle(members: dict[str, bytes]) -> bytes:
    """A compile-cache entry: ``members`` (``mega.bin``, ``kernels/...``) and a manifest of their sha256."""
    manifest = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps({"sha256": manifest}, sort_keys=True))
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def verified_members(blob: bytes) -> dict[str, bytes]:
    """The members of an entry, after checking each against the manifest; raises ``_Unverified`` otherwise."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            names = [name for name in archive.namelist() if name != MANIFEST]
            try:
                manifest = json.loads(archive.read(MANIFEST))["sha256"]
            except KeyError:
                raise _Unverified("it has no manifest") from None
            if not isinstance(manifest, dict) or set(manifest) != set(names) or len(names) != len(set(names)):
                raise _Unverified("its members are not the ones its manifest lists")
            members = {name: archive.read(name) for name in names}
    except (zipfile.BadZipFile, ValueError, TypeError) as exc:
        raise _Unverified(f"it is not a readable entry ({exc})") from exc
    for name, data in members.items():
        if hashlib.sha256(data).hexdigest() != manifest[name]:
            raise _Unverified(f"{name} does not match its sha256 in the manifest")
    if "mega.bin" not in members:
        raise _Unverified("it has no mega.bin")
    return members


def compile_key(sha256: str, capability: str, mode: str) -> str:
    """The cache key: model sha256 + torch version + device capability + compile mode, hashed."""
    material = json.dumps({"sha256": sha256, "torch": torch.__version__, "capability": capability, "mode": mode})
    return hashlib.sha256(material.encode()).hexdigest()


def compile_cache_uri(root: str, key: str) -> str:
    """Where the entry for ``key`` lives under the artifact root."""
    return join_uri(root, "compile-cache", f"{key}.bin")


def inductor_dir() -> Path:
    """The inductor cache directory of this process (``TORCHINDUCTOR_CACHE_DIR`` or torch's default)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir())


def snapshot() -> Snapshot:
    """Files of the inductor cache directory and their modification times, to find what a compile added."""
    root = inductor_dir()
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).parts[0] != "locks"
    }


def restore(store: ArtifactStore, uri: str) -> bool:
    """Install the compile artifacts stored at ``uri`` into this process; True on a hit.

    Nothing is installed from an entry that fails its manifest: that is a miss (one warning).
    """
    blob = store.read_blob(uri)
    if blob is None:
        return False
    try:
        members = verified_members(blob)
    except _Unverified as exc:
        logger.warning("compile cache entry %s is discarded, %s; compiling cold", uri, exc)
        return False
    root = inductor_dir()
    for name, data in members.items():
        if not name.startswith("kernels/"):
            continue
        relative = PurePosixPath(name.removeprefix("kernels/"))
        if relative.is_absolute() or ".." in relative.parts:
            logger.warning("skipping %s in %s: it points outside the inductor cache", name, uri)
            continue
        target = root.joinpath(*relative.parts)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, target)
    torch.compiler.load_cache_artifacts(members["mega.bin"])
    logger.info("restored %d bytes of compile artifacts from %s", len(blob), uri)
    return True


def save(store: ArtifactStore, uri: str, *, before: Snapshot) -> bool:
    """Save what this process compiled (and the kernel files added since ``before``) to ``uri``."""
    result = torch.compiler.save_cache_artifacts()
    if result is None:
        return False
    mega, _info = result
    root = inductor_dir()
    members = {"mega.bin": mega}
    for relative, mtime in sorted(snapshot().items()):
        if before.get(relative) != mtime:
            members[f"kernels/{PurePosixPath(Path(relative))}"] = (root / relative).read_bytes()
    entry = bundle(members)
    store.write_blob(uri, entry)
    logger.info("saved %d bytes of compile artifacts to %s", len(entry), uri)
    return True


def compile_module(module: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``torch.compile`` for ``default`` and ``reduce-overhead``; ``none`` returns the module itself."""
    if mode == "none":
        return module
    # dynamic=None: the first bucket compiles static, a second shape recompiles once with dynamic shapes
    return torch.compile(module, mode=None if mode == "default" else mode)  # type: ignore[return-value]
