"""Factories that fail on purpose, importable as ``tests.warmers.fault_zoo:function``."""

from __future__ import annotations

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
