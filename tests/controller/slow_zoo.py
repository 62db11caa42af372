"""A factory that takes its time, importable as ``tests.controller.slow_zoo:slow_reranker`` by a test host."""

from __future__ import annotations

import time

from warmers.zoo import Reranker, reranker


def slow_reranker(d_in: int = 64, hidden: int = 128, seconds: float = 4.0) -> Reranker:
    """The example reranker, built after ``seconds`` of sleep: a load long enough to interrupt."""
    time.sleep(seconds)
    return reranker(d_in=d_in, hidden=hidden)
