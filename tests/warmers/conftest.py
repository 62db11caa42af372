"""Fixtures for the warm-up engine and host: example fleet specs, tmp fleets with broken entries, hosts on loopback."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from prewarm.fleet import ModelSpec, load_fleet
from tests.conftest import free_port
from warmers.artifacts import ArtifactStore
from warmers.engine import Engine
from warmers.host import create_app, serve_in_thread
from warmers.sources import EXAMPLE_FLEET

EXAMPLES = EXAMPLE_FLEET.parent


@pytest.fixture(scope="session")
def example_specs() -> dict[str, ModelSpec]:
    """The example fleet's specs by name, without SLAs (artifact URIs point into examples/artifacts).

    Readiness against an SLA is tested with explicit baselines; on a shared 2-core machine a p99 over 20
    probes can catch a scheduling stall, which would make every other test flaky.
    """
    return {spec.name: spec.model_copy(update={"sla_p99_ms": None}) for spec in load_fleet(EXAMPLE_FLEET).models}


def relaxed_example_fleet(folder: Path) -> Path:
    """A copy of the example fleet without SLAs, with absolute artifact paths."""
    raw = yaml.safe_load(EXAMPLE_FLEET.read_text())
    return write_fleet(folder, [raw_entry(m["name"]) for m in raw["models"]])


def make_engine(root: Path, **kwargs: Any) -> Engine:
    """A CPU engine whose cache and compile artifacts live under ``root``."""
    kwargs.setdefault("capacity_mb", 1024.0)
    return Engine(
        device="cpu",
        store=ArtifactStore(root / "cache", max_bytes=256 * 2**20),
        compile_root=str(root / "store"),
        **kwargs,
    )


@pytest.fixture
def cpu_engine(tmp_path: Path) -> Engine:
    """A fresh CPU engine with 1 GiB of accounted capacity."""
    return make_engine(tmp_path)


def write_fleet(folder: Path, models: list[dict[str, Any]]) -> Path:
    """Write a fleet file of ``models`` into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump({"models": models}, sort_keys=False))
    return path


def raw_entry(source: str, **changes: Any) -> dict[str, Any]:
    """The example fleet's raw YAML entry of model ``source``, absolute artifact paths, no SLA, plus ``changes``."""
    raw = yaml.safe_load(EXAMPLE_FLEET.read_text())
    entry = next(m for m in raw["models"] if m["name"] == source)
    entry["artifact_uri"] = str((EXAMPLES / entry["artifact_uri"]).resolve())
    entry.pop("sla_p99_ms", None)
    entry.update(changes)
    return entry


@pytest.fixture
def broken_fleet(tmp_path: Path) -> Path:
    """A fleet of two good models and three broken ones (checksum mismatch, missing file, bad factory)."""
    tampered = tmp_path / "tampered.safetensors"
    shutil.copy(EXAMPLES / "artifacts" / "reranker.safetensors", tampered)
    with tampered.open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    # The cache is content-addressed: a registered sha256 that is already cached loads whatever the URI says,
    # so the broken entries claim hashes nothing else in the fleet has.
    claimed = hashlib.sha256(b"the weights as registered").hexdigest()
    return write_fleet(tmp_path / "fleet", [
        raw_entry("reranker"),
        raw_entry("embedder"),
        raw_entry("reranker", name="tampered", artifact_uri=str(tampered), sha256=claimed),
        raw_entry("reranker", name="missing", artifact_uri=str(tmp_path / "nowhere.safetensors"), sha256="1" * 64),
        raw_entry("reranker", name="badfactory", factory="warmers.zoo.no_such_module:build"),
    ])


HostFactory = Callable[..., str]


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator[HostFactory]:
    """Start hosts on loopback (uvicorn in a thread, free port); every host stops at the end of the test."""
    stack: list[Any] = []

    def start(*, fleet: Path | None = None, engine: Engine | None = None, **kwargs: Any) -> str:
        app = create_app(fleet=fleet, engine=engine or make_engine(tmp_path / f"host{len(stack)}"), **kwargs)
        context = serve_in_thread(app, port=free_port())
        url = context.__enter__()
        stack.append(context)
        return url

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def example_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One host serving the whole example fleet, shared by a test module (read-only use only)."""
    root = tmp_path_factory.mktemp("example-host")
    app = create_app(fleet=relaxed_example_fleet(root / "fleet"), engine=make_engine(root))
    with serve_in_thread(app, port=free_port()) as url:
        yield url
