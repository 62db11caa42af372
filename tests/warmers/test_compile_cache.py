"""Compile-cache entries carry a sha256 manifest; an entry that fails it is never restored."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import pytest
import torch

from warmers import compile_cache
from warmers.artifacts import ArtifactStore

KERNEL = "kernels/ab/cabc123.so"


@pytest.fixture
def inductor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
    assert compile_cache.inductor_dir() == folder
    return folder


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What reaches torch's mega-cache loader (which unpickles: nothing unverified may get there)."""
    calls: list[bytes] = []
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", lambda mega: calls.append(mega))
    return calls


def rewritten(entry: bytes, *, changes: dict[str, bytes | None]) -> bytes:
    """The entry with members replaced (or removed, for None) and its manifest left as it was."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(entry)) as src, zipfile.ZipFile(out, "w") as dest:
        for name in src.namelist():
            data = changes.get(name, src.read(name))
            if data is not None:
                dest.writestr(name, data)
        for name, data in changes.items():
            if name not in src.namelist() and data is not None:
                dest.writestr(name, data)
    return out.getvalue()


def store_entry(tmp_path: Path, entry: bytes) -> tuple[ArtifactStore, str]:
    store = ArtifactStore(tmp_path / "cache", max_bytes=2**20)
    uri = compile_cache.compile_cache_uri(str(tmp_path / "store"), "k")
    store.write_blob(uri, entry)
    return store, uri


def test_a_verified_entry_is_restored(tmp_path: Path, inductor: Path, loaded: list[bytes]) -> None:
    entry = compile_cache.bundle({"mega.bin": b"mega", KERNEL: b"\x7fELF kernel"})
    assert json.loads(zipfile.ZipFile(io.BytesIO(entry)).read("manifest.json"))["sha256"].keys() == {"mega.bin", KERNEL}
    store, uri = store_entry(tmp_path, entry)
    assert compile_cache.restore(store, uri) is True
    assert (inductor / "ab" / "cabc123.so").read_bytes() == b"\x7fELF kernel" and loaded == [b"mega"]


BAD_ENTRIES = {
    "flipped kernel": (lambda good: rewritten(good, changes={KERNEL: b"\x7fELF kernex"}), f"{KERNEL} does not match"),
    "flipped mega-cache": (lambda good: rewritten(good, changes={"mega.bin": b"megb"}), "mega.bin does not match"),
    "added member": (lambda good: rewritten(good, changes={"kernels/cd/evil.so": b"x"}), "not the ones its manifest"),
    "removed member": (lambda good: rewritten(good, changes={KERNEL: None}), "not the ones its manifest"),
    "no manifest": (lambda good: rewritten(good, changes={"manifest.json": None}), "it has no manifest"),
    "not a zip": (lambda good: good[: len(good) // 2], "not a readable entry"),
}


@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_an_entry_that_fails_its_manifest_is_discarded(
    tmp_path: Path, inductor: Path, loaded: list[bytes], caplog: pytest.LogCaptureFixture, case: str
) -> None:
    make, reason = BAD_ENTRIES[case]
    store, uri = store_entry(tmp_path, make(compile_cache.bundle({"mega.bin": b"mega", KERNEL: b"\x7fELF kernel"})))
    with caplog.at_level(logging.WARNING, logger="warmers.compile_cache"):
        assert compile_cache.restore(store, uri) is False
    assert loaded == [] and not [p for p in inductor.rglob("*") if p.is_file()]
    [record] = [r for r in caplog.records if r.name == "warmers.compile_cache"]
    assert "is discarded" in record.getMessage() and reason in record.getMessage()
    assert "compiling cold" in record.getMessage()
