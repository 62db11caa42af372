"""``prewarm serve`` as users run it, and where the host's models come from by default."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from db.registry import upsert_models
from db.session import make_engine, session_scope
from prewarm.cli.main import app
from prewarm.fleet import ModelSpec
from prewarm.settings import reset_settings
from tests.conftest import free_port
from tests.warmers.conftest import HostFactory, raw_entry, write_fleet
from warmers.sources import EXAMPLE_FLEET, default_source


def test_serve_runs_the_host_until_stopped(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", [raw_entry("reranker")])
    port = free_port()
    env = {**os.environ, "PREWARM_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "prewarm"), "serve", "--port", str(port), "--fleet", str(fleet), "--cpu-threads", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        index = httpx.post(f"http://127.0.0.1:{port}/v2/repository/index", json={}).json()
        assert index == [{"name": "reranker", "version": "1", "state": "READY", "reason": ""}]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_refuses_a_broken_fleet_file(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("models:\n  - name: x\n    loader: onnx\n")
    result = CliRunner().invoke(app, ["serve", "--fleet", str(bad), "--port", str(free_port())])
    assert result.exit_code == 2
    assert "fleet.yaml: field models[0]" in result.output


def test_default_source_is_the_example_fleet_without_a_registry() -> None:
    assert [s.name for s in default_source()()] == ["chat-small", "embedder", "reranker", "ocr-longtail"]
    assert EXAMPLE_FLEET.exists()


def test_default_source_serves_the_registered_models(
    db_url: str, monkeypatch: pytest.MonkeyPatch, start_host: HostFactory, example_specs: dict[str, ModelSpec]
) -> None:
    monkeypatch.setenv("PREWARM_DATABASE_URL", db_url)
    reset_settings()
    db = make_engine(db_url)
    with session_scope(db) as session:
        upsert_models(session, [example_specs["reranker"]])
    db.dispose()
    assert [s.name for s in default_source()()] == ["reranker"]
    url = start_host()  # no fleet: the registry decides
    index = httpx.post(f"{url}/v2/repository/index", json={}).json()
    assert [(i["name"], i["state"]) for i in index] == [("reranker", "READY")]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_serve_without_the_configured_device_exits_with_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREWARM_HOST__DEVICE", "cuda")
    reset_settings()
    result = CliRunner().invoke(app, ["serve", "--port", str(free_port())])
    assert result.exit_code == 1
    assert "device 'cuda' asked for, but this machine has no CUDA device" in result.output
    assert "Traceback" not in result.output
