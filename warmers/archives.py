"""What a ``.pt2`` archive would unpickle: inspected before ``torch.export.load`` is allowed near it.

``torch.export.load`` is safe only for part of what an archive may hold. It reads weights and constants
marked ``use_pickle`` with ``torch.load(weights_only=False)``, custom and opaque objects with the full
unpickler, the sample inputs with ``weights_only=True`` but *falls back* to the full unpickler when that
fails, and archives in the pre-2.8 layout through pickled state dicts. A pickle runs code when it is loaded,
so an archive that holds any of these is refused unless its fleet entry sets ``trust_pickle: true``.

The inspection reads the archive's zip directory and JSON configs; the only thing it unpickles is the sample
inputs, with torch's restricted ``weights_only`` unpickler, to learn whether torch would fall back. Members
outside the known layout (``*.pkl`` files, AOTInductor shared objects, anything new) count as untrusted too.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path, PurePosixPath

import torch

# Members of a torch.export archive, below its root folder, that hold no pickle (read as text or raw bytes).
_PLAIN_FILES = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_PICKLED_CONSTANT_PREFIXES = ("custom_obj_", "opaque_obj_")


def pickled_objects(path: Path) -> list[str]:
    """Members of the ``.pt2`` archive at ``path`` that loading it would unpickle; empty when none would.

    Each item names the member and why (``m/data/weights/weight_0 (weight 'lin.weight' is use_pickle)``).
    A file that is not a zip archive is reported as one item: torch would not load it either.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return _inspect(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"{path.name} (not a zip archive: {exc})"]


def _inspect(archive: zipfile.ZipFile) -> list[str]:
    names = [name for name in archive.namelist() if not name.endswith("/")]
    if len(names) != len(set(names)):  # zip readers disagree on which copy of a duplicate they return
        return ["(archive layout) duplicate member names"]
    roots = {PurePosixPath(name).parts[0] for name in names if len(PurePosixPath(name).parts) > 1}
    if len(roots) != 1 or not _is_pt2(archive, next(iter(roots))):
        return ["(archive layout) not torch.export's pt2 format; older layouts keep their state in pickles"]
    root = next(iter(roots))
    found: list[str] = []
    covered: set[str] = set()
    for name in names:
        relative = name[len(root) + 1 :]
        if relative in _PLAIN_FILES or (relative.startswith("models/") and relative.endswith(".json")):
            covered.add(name)
        elif relative.startswith("extra/"):  # extra files are handed back as text, never unpickled
            covered.add(name)
        elif relative.startswith("data/sample_inputs/") and relative.endswith(".pt"):
            covered.add(name)
            if not _loads_weights_only(archive.read(name)):
                found.append(f"{name} (sample inputs that need the full unpickler)")
        elif relative.startswith(("data/weights/", "data/constants/")) and relative.endswith("_config.json"):
            covered.add(name)
            found.extend(_pickled_payloads(archive, root, name, covered))
    for name in names:
        if name not in covered:
            found.append(f"{name} (not part of a plain torch.export archive)")
    return found


def _is_pt2(archive: zipfile.ZipFile, root: str) -> bool:
    try:
        return archive.read(f"{root}/archive_format").decode().strip() == "pt2"
    except (KeyError, UnicodeDecodeError):
        return False


def _pickled_payloads(archive: zipfile.ZipFile, root: str, config_name: str, covered: set[str]) -> list[str]:
    """Weights or constants of one config file that torch would unpickle; marks every one named as covered."""
    folder = config_name.rsplit("/", 1)[0]
    kind = "weight" if "/data/weights/" in config_name else "constant"
    try:
        config = json.loads(archive.read(config_name))["config"]
    except (ValueError, KeyError, TypeError):
        return [f"{config_name} (unreadable config)"]
    found = []
    for fqn, meta in config.items():
        member = f"{folder}/{meta.get('path_name', '')}"
        covered.add(member)
        if meta.get("use_pickle"):
            found.append(f"{member} ({kind} {fqn!r} is use_pickle)")
        elif str(meta.get("path_name", "")).startswith(_PICKLED_CONSTANT_PREFIXES):
            found.append(f"{member} ({kind} {fqn!r} is a pickled object)")
    return found


def _loads_weights_only(data: bytes) -> bool:
    if not data:
        return True
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001 - any failure means torch.export.load would retry with the full unpickler
        return False
    return True
