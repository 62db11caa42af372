"""``[model:version]`` on every log line written while the engine works on a model (a ContextVar, MLServer-style).

The engine sets the context around a warm run and an inference; anyio's worker threads copy the context, so
the label follows the work into them. Modules attach :class:`ModelContextFilter` to their logger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_model: ContextVar[str | None] = ContextVar("prewarm_current_model", default=None)


@contextmanager
def model_context(name: str, version: str) -> Iterator[None]:
    """Label log lines written inside the ``with`` body with ``[name:version]``."""
    token = current_model.set(f"{name}:{version}")
    try:
        yield
    finally:
        current_model.reset(token)


class ModelContextFilter(logging.Filter):
    """Prefixes the message with the current model and sets ``record.model`` (``-`` outside any model)."""

    def filter(self, record: logging.LogRecord) -> bool:
        label = current_model.get()
        record.model = label or "-"
        if label and not getattr(record, "_model_prefixed", False):
            record.msg = f"[{label}] {record.msg}"
            record._model_prefixed = True
        return True


def model_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the model-context filter attached once."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, ModelContextFilter) for f in logger.filters):
        logger.addFilter(ModelContextFilter())
    return logger
