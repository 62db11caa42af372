"""A real Prometheus server on loopback for the tests (Debian's package; scripts/ensure_prometheus.sh).

Each server gets its own data folder, a 1 s scrape interval, and optionally basic auth through
Prometheus's own web configuration file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.processes import Background, wait_until

# bcrypt of "prewarm-test-password" (cost 4, so that every API call stays cheap); Prometheus checks it.
USERNAME = "prewarm"
PASSWORD = "prewarm-test-password"
PASSWORD_BCRYPT = "$2b$04$abcdefghijklmnopqrstuuy6NsfKHyltRchULMvbPZG2CsoBZlQsC"


def binary(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``; skips locally and fails under CI when missing."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed: run scripts/ensure_prometheus.sh (make test does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class PrometheusServer:
    """``prometheus`` scraping ``jobs`` (job name -> host:port targets) every second."""

    def __init__(
        self,
        folder: Path,
        *,
        jobs: Mapping[str, Sequence[str]],
        auth: bool = True,
        retention: str = "15d",
        extra: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.auth = auth
        folder.mkdir(parents=True, exist_ok=True)
        scrape = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: [{', '.join(repr(t) for t in targets)}]\n"
            for job, targets in jobs.items()
        )
        config = folder / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{scrape or '  []'}"
        )
        args = [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
            f"--storage.tsdb.retention.time={retention}",
            *extra,
        ]
        if auth:
            web = folder / "web.yml"
            web.write_text(f"basic_auth_users:\n  {USERNAME}: '{PASSWORD_BCRYPT}'\n")
            args.append(f"--web.config.file={web}")
        self.process = Background("prometheus", args, env=os.environ, log_dir=folder)
        wait_until(
            self._ready, timeout=30, what="Prometheus to become ready", on_timeout=self.process.log_tail
        )

    @property
    def http_url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The source URL prewarm takes."""
        return f"prometheus+http://127.0.0.1:{self.port}"

    def get(self, path: str, **params: str) -> httpx.Response:
        """A GET on the API with the test credentials."""
        auth = (USERNAME, PASSWORD) if self.auth else None
        return httpx.get(self.http_url + path, params=params, auth=auth, timeout=10)

    def _ready(self) -> bool:
        if not self.process.alive():
            raise RuntimeError(f"Prometheus exited:\n{self.process.log_tail()}")
        try:
            return self.get("/-/ready").is_success
        except httpx.HTTPError:
            return False

    def scraped(self, job: str) -> bool:
        """Whether every target of ``job`` has been scraped successfully at least once."""
        result = self.get("/api/v1/query", query=f'up{{job="{job}"}}').json()["data"]["result"]
        return bool(result) and all(r["value"][1] == "1" for r in result)

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output (no check: tests assert on it)."""
    return subprocess.run(args, capture_output=True, text=True, timeout=120)
