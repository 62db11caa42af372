"""Model warm-up engine, artifact store, inference host (Open Inference Protocol V2) and warm targets.

Public API::

    from warmers import warm, Engine, V2Target, Baseline, WarmReport
    report = warm(spec, target=Engine())                  # in this process
    report = warm(spec, target=V2Target("http://host:8000"), baseline=Baseline(p50_ms=3.1))

No Prefect here: flows call these functions.
"""

from __future__ import annotations

from warmers.artifacts import ArtifactStore, Fetched
from warmers.engine import Engine, ModelState
from warmers.errors import WarmupError
from warmers.report import Baseline, WarmReport
from warmers.targets import Target, V2Target, warm

__all__ = [
    "ArtifactStore",
    "Baseline",
    "Engine",
    "Fetched",
    "ModelState",
    "Target",
    "V2Target",
    "WarmReport",
    "WarmupError",
    "warm",
]
