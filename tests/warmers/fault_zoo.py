"""Factories that fail on purpose, importable as ``tests.warmers.fault_zoo:function``."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from warmers.zoo import Reranker


class OutOfMemoryReranker(Reranker):
    """The example reranker, except that batches above 8 raise the error CUDA raises when memory runs out."""

    def forward(self, query: torch.Tensor, document: torch.Tensor) -> torch.Tensor:
        if query.shape[0] > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().forward(query, document)


def oom_reranker(d_in: int = 64, hidden: int = 128) -> OutOfMemoryReranker:
    """Weights-compatible with ``warmers.zoo:reranker``; runs out of 'device memory' on large batches."""
    return OutOfMemoryReranker(d_in=d_in, hidden=hidden)


def exploding_factory() -> torch.nn.Module:
    """A factory whose own code fails."""
    raise ValueError("layer sizes do not add up")


class FragileReranker(Reranker):
    """The example reranker, except that an all-zero query makes it fail the way a model bug would."""

    def forward(self, query: torch.Tensor, document: torch.Tensor) -> torch.Tensor:
        if not bool(query.any()):
            raise RuntimeError("index 7 is out of bounds for dimension 0 with size 4")
        return super().forward(query, document)


def fragile_reranker(d_in: int = 64, hidden: int = 128) -> FragileReranker:
    """Weights-compatible with ``warmers.zoo:reranker``; fails on an all-zero query."""
    return FragileReranker(d_in=d_in, hidden=hidden)


# Requests to GatedReranker whose query starts with GATE_VALUE wait for GATE: tests hold a request in flight.
GATE_VALUE = 7.0
GATE = threading.Event()
ENTERED = threading.Event()


class GatedReranker(Reranker):
    """The example reranker, except that a query whose first value is 7.0 blocks until ``GATE`` is set."""

    def forward(self, query: torch.Tensor, document: torch.Tensor) -> torch.Tensor:
        if float(query.reshape(-1)[0]) == GATE_VALUE:
            ENTERED.set()
            if not GATE.wait(timeout=60):
                raise RuntimeError("the test never opened the gate")
        return super().forward(query, document)


def gated_reranker(d_in: int = 64, hidden: int = 128) -> GatedReranker:
    """Weights-compatible with ``warmers.zoo:reranker``; holds marked requests in flight."""
    return GatedReranker(d_in=d_in, hidden=hidden)


class IndexingReranker(Reranker):
    """The example reranker, except that batches above 8 fail with an IndexError (a bug that warm-up finds)."""

    def forward(self, query: torch.Tensor, document: torch.Tensor) -> torch.Tensor:
        if query.shape[0] > 8:
            raise IndexError("index 8 is out of bounds for dimension 0 with size 8")
        return super().forward(query, document)


def indexing_reranker(d_in: int = 64, hidden: int = 128) -> IndexingReranker:
    """Weights-compatible with ``warmers.zoo:reranker``; raises IndexError on large batches."""
    return IndexingReranker(d_in=d_in, hidden=hidden)


class TextStats(torch.nn.Module):
    """BYTES and unsigned inputs: ``text`` BYTES [batch], ``ids`` UINT32 [batch, 4] ->
    ``length`` INT64 [batch] (bytes per text), ``id_sum`` UINT64 [batch] (ids summed, times ``scale``),
    ``upper`` BYTES [batch] (each text upper-cased)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, text: np.ndarray, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        flat = text.reshape(-1)
        length = torch.tensor([len(item) for item in flat], dtype=torch.int64)
        id_sum = (ids.to(torch.int64).sum(dim=1) * self.scale.to(torch.int64)).to(torch.uint64)
        upper = np.array([item.upper() for item in flat], dtype=object)
        return length, id_sum, upper


def text_stats() -> TextStats:
    """A model with BYTES and UINT32 inputs and BYTES and UINT64 outputs (weights: ``scale`` = [1.0])."""
    return TextStats()


THREADS: list[int] = []


class ThreadRecordingReranker(Reranker):
    """The example reranker, recording the thread of every forward pass in ``THREADS``."""

    def forward(self, query: torch.Tensor, document: torch.Tensor) -> torch.Tensor:
        THREADS.append(threading.get_ident())
        return super().forward(query, document)


def thread_recording_reranker(d_in: int = 64, hidden: int = 128) -> ThreadRecordingReranker:
    """Weights-compatible with ``warmers.zoo:reranker``; records which thread runs it."""
    return ThreadRecordingReranker(d_in=d_in, hidden=hidden)


SLOW_S = 0.02


class SlowReranker(Reranker):
    """The example reranker, except that every forward pass takes at least ``SLOW_S`` longer: a regression."""

    def forward(self, query: torch.Tensor, document: torch.Tensor) -> torch.Tensor:
        time.sleep(SLOW_S)
        return super().forward(query, document)


def slow_reranker(d_in: int = 64, hidden: int = 128) -> SlowReranker:
    """Weights-compatible with ``warmers.zoo:reranker``; 20 ms slower on every request."""
    return SlowReranker(d_in=d_in, hidden=hidden)
