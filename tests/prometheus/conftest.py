"""Fixtures of the Prometheus tests: the in-process command line comes from the ingest tests."""

from __future__ import annotations

from tests.prewarm.conftest import cli  # noqa: F401 (a fixture, used by name)
