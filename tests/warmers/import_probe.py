"""A factory module whose import is observable (it lands in ``sys.modules``): proves a refused one never runs."""

from __future__ import annotations

from torch import nn


def build() -> nn.Module:
    """A one-layer module."""
    return nn.Linear(2, 2)
