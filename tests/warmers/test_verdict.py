"""The verdict on real warm runs: an unchanged model passes against its own history, a slower one fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from prewarm.fleet import ModelSpec
from tests.warmers.conftest import make_engine
from warmers.engine import Engine, ModelState
from warmers.report import Baseline, WarmReport


def _baseline_of(report: WarmReport) -> Baseline:
    """What the history database would hand the next run after this one (see db.warm.baseline_for)."""
    return Baseline(
        p50_ms=report.steady_p50_ms, p50_spread_ms=report.steady_spread_ms or 0.0,
        first_request_ms=report.first_after_idle_ms, first_request_spread_ms=report.first_after_idle_spread_ms or 0.0,
    )


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread, as ``prewarm serve --cpu-threads 1`` runs small models.

    With one thread per core, a busy 2-core machine stalls the reranker's matrix products for whole scheduler
    slices, in bursts that can cover every probe of a run (steady p50 36 ms against 0.2 ms): the verdict then
    rightly fails the run, which is not what this test is about.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_torch_thread")
def test_an_unchanged_model_passes_against_its_own_history_run_after_run(
    tmp_path: Path, example_specs: dict[str, ModelSpec]
) -> None:
    spec = example_specs["reranker"]
    first = make_engine(tmp_path / "first").warm(spec)
    assert first.ready and first.first_after_idle_ms is not None and first.steady_spread_ms is not None
    baseline = _baseline_of(first)
    for attempt in range(3):  # fresh loads, as after a restart: each judged against the first run
        report = make_engine(tmp_path / str(attempt)).warm(spec, baseline=baseline)
        assert report.ready, report.reason


def test_a_truly_slower_model_fails_against_the_history_of_the_fast_one(
    cpu_engine: Engine, example_specs: dict[str, ModelSpec]
) -> None:
    spec = example_specs["reranker"]
    baseline = _baseline_of(cpu_engine.warm(spec))
    cpu_engine.unload("reranker")
    slow = ModelSpec.model_validate(
        {**spec.model_dump(), "version": "2", "factory": "tests.warmers.fault_zoo:slow_reranker"}
    )
    report = cpu_engine.warm(slow, baseline=baseline)
    assert not report.ready and report.error is None
    assert report.reason is not None
    assert report.reason.startswith("steady p50 ") and "; first request after idle (median) " in report.reason
    assert report.steady_p50_ms is not None and report.steady_p50_ms >= 20.0
    assert cpu_engine.get("reranker", "2").state is ModelState.UNAVAILABLE
