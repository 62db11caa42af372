"""KServe's REST client (``kserve.InferenceRESTClient``, v2 protocol) runs inference against the host.

KServe pins clash with the project's, so the client runs from the interop venv (``.venv-interop``, made by
``scripts/ensure_interop.sh``) in a subprocess; ``PREWARM_TEST_INTEROP_PYTHON`` names another interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from prewarm.settings import reset_settings
from tests.conftest import free_port
from tests.warmers.conftest import make_engine, raw_entry, write_fleet
from warmers.host import create_app, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("kserve_client_probe.py")
TOKEN = "kserve-client-token"


@pytest.fixture(scope="module")
def interop_python() -> Path:
    python = Path(os.environ.get("PREWARM_TEST_INTEROP_PYTHON") or ROOT / ".venv-interop" / "bin" / "python")
    if not python.exists():
        message = f"{python} is missing: run scripts/ensure_interop.sh (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.fixture(scope="module")
def guarded_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("kserve-client-host")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREWARM_HOST__TOKEN", TOKEN)
        reset_settings()
        app = create_app(fleet=write_fleet(root / "fleet", [raw_entry("reranker")]), engine=make_engine(root))
    reset_settings()
    with serve_in_thread(app, port=free_port()) as url:
        yield url


def probe(python: Path, url: str, *args: str) -> dict:
    done = subprocess.run([str(python), str(PROBE), url, *args], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kserve_rest_client_infers_json_and_binary(interop_python: Path, guarded_host: str) -> None:
    result = probe(interop_python, guarded_host, "reranker", TOKEN)
    assert result["server_ready"] is True and result["model_ready"] is True
    for form in ("json", "binary"):
        assert result[form] == {"model": "reranker", "id": "k1", "name": "score", "shape": [3], "datatype": "FP32",
                                "finite": True}
    assert "model 'nope' is not in this host's repository" in result["unknown_model_error"]


def test_kserve_rest_client_without_the_token_is_refused(interop_python: Path, guarded_host: str) -> None:
    done = subprocess.run([str(interop_python), str(PROBE), guarded_host, "reranker"], capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode != 0 and "401" in done.stderr
