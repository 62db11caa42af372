"""``prewarm serve``'s torch threads: one by default (benchmarks/cpu_threads), one per core on request (0)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import uvicorn
from typer.testing import CliRunner

from prewarm.cli.main import app


@pytest.fixture
def threads_seen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[int]]:
    """The torch thread count at the moment serve would start uvicorn (which is not started)."""
    seen: list[int] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.append(torch.get_num_threads()))
    monkeypatch.setenv("PREWARM_HOME", str(tmp_path / "home"))
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # a count neither default gives, so that a change shows
    yield seen
    torch.set_num_threads(before)


@pytest.mark.parametrize(("args", "threads"), [([], 1), (["--cpu-threads", "2"], 2), (["--cpu-threads", "0"], 3)])
def test_serve_uses_one_torch_thread_unless_told(args: list[str], threads: int, threads_seen: list[int]) -> None:
    result = CliRunner().invoke(app, ["serve", "--no-preload", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert threads_seen == [threads]


def test_serve_help_gives_the_default_and_where_it_comes_from() -> None:
    page = " ".join(CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert "small models answer fastest and steadiest" in page and "docs/warmers.md" in page
    assert "[default: 1]" in page and "0: one per core, torch's default" in page
