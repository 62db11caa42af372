"""Real MLServer and KServe servers on loopback, started once per test module from their own venv.

The servers come from ``.venv-interop`` (``scripts/ensure_interop.sh``, which ``make test`` runs): their
dependencies clash with the project's. Without that venv these tests are skipped locally and fail under CI.
How long each server took to answer ``/v2/health/live`` is printed at the end of the run.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from prewarm.cli.main import app
from prewarm.fleet import ModelSpec
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
INTEROP_PYTHON = ROOT / ".venv-interop" / "bin" / "python"
SERVERS = Path(__file__).parent / "servers"
START_TIMEOUT_S = 90.0

_startup_seconds: dict[str, float] = {}


@dataclass(frozen=True, kw_only=True)
class Server:
    """A server process on loopback: its base URL, its log, and how long it took to come up."""

    name: str
    url: str
    log: Path
    startup_s: float


@pytest.fixture(scope="session")
def interop_python() -> Path:
    """The interop venv's python; skips (fails under CI) when scripts/ensure_interop.sh has not run."""
    if not INTEROP_PYTHON.exists():
        message = f"{INTEROP_PYTHON} is missing: run scripts/ensure_interop.sh (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return INTEROP_PYTHON


@pytest.fixture(scope="module")
def mlserver(interop_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """MLServer 1.7 with two scikit-learn classifiers: ``classifier`` without a version, ``classifier-v`` 2."""
    folder = tmp_path_factory.mktemp("mlserver")
    port = free_port()
    subprocess.run(
        [str(interop_python), str(SERVERS / "sklearn_repository.py"), str(folder), str(port), str(free_port())],
        check=True, timeout=120, env=_server_env(),
    )
    mlserver_bin = interop_python.parent / "mlserver"
    yield from _serve("mlserver", [str(mlserver_bin), "start", str(folder)], port=port, cwd=folder)


@pytest.fixture(scope="module")
def kserve(interop_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """KServe's ModelServer with the tiny ``doubler`` / ``tripler`` models and a repository that builds them."""
    yield from _kserve(interop_python, tmp_path_factory.mktemp("kserve"), repository="custom")


@pytest.fixture(scope="module")
def kserve_default_repository(
    interop_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The same server with KServe's own ModelRepository, whose ``load()`` does nothing."""
    yield from _kserve(interop_python, tmp_path_factory.mktemp("kserve-default"), repository="default")


def _kserve(python: Path, folder: Path, *, repository: str) -> Iterator[Server]:
    port = free_port()
    command = [str(python), str(SERVERS / "kserve_scaler.py"), "--port", str(port), "--repository", repository]
    yield from _serve(f"kserve ({repository} repository)", command, port=port, cwd=folder)


def _serve(name: str, command: list[str], *, port: int, cwd: Path) -> Iterator[Server]:
    log = cwd / "server.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=_server_env(), start_new_session=True
        )
        try:
            _wait_live(process, url, log)
            elapsed = time.monotonic() - started
            _startup_seconds[name] = elapsed
            yield Server(name=name, url=url, log=log, startup_s=elapsed)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def _server_env() -> dict[str, str]:
    """The environment without PYTHONPATH: the servers import their own venv's packages, not this tree's."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _wait_live(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {_tail(log)}")
        try:
            if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not live after {START_TIMEOUT_S:.0f} s: {_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def prewarm_cli(*args: object) -> Result:
    """Run ``prewarm ARGS...`` in-process (stdout and stderr apart)."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def foreign_fleet(folder: Path, models: list[dict[str, object]]) -> Path:
    """A fleet file of ``server: foreign`` entries; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump({"models": [{"server": "foreign", **m} for m in models]}, sort_keys=False))
    return path


def foreign_spec(name: str, *, shape: list[int | str] | None = None, **changes: object) -> ModelSpec:
    """A ``server: foreign`` spec of a model taking FP32 ``x`` of shape [batch, 4] (buckets 1 and 8, 5 probes)."""
    entry: dict[str, object] = {
        "name": name,
        "warmup": {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": shape or ["batch", 4], "low": -1, "high": 1}],
            "buckets": {"batch": [1, 8]},
            "iterations": 2,
            "probes": 5,
        },
        **changes,
    }
    return ModelSpec.model_validate({"server": "foreign", **entry})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how long each interop server took to come up (a figure, not a test)."""
    if _startup_seconds:
        terminalreporter.section("interop server start-up (process start to /v2/health/live answering 200)")
        for name, seconds in _startup_seconds.items():
            terminalreporter.write_line(f"{name}: {seconds:.2f} s")

