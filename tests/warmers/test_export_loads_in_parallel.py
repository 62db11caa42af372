"""torch.export programs load in parallel threads of one host (torch's deserializer is process-global)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import torch

from prewarm.fleet import load_fleet
from warmers.loading import load_module
from warmers.sources import EXAMPLE_FLEET


def test_export_programs_load_in_parallel_threads() -> None:
    fleet = {m.name: m for m in load_fleet(EXAMPLE_FLEET).models}
    jobs = [fleet[name] for name in ("chat-small", "ocr-longtail")] * 6
    paths = {spec.name: Path(urlparse(spec.artifact_uri).path) for spec in jobs}  # file: URIs

    def load(spec):  # noqa: ANN001, ANN202
        return load_module(spec, paths[spec.name], torch.device("cpu"))

    with ThreadPoolExecutor(max_workers=6) as pool:
        modules = list(pool.map(load, jobs))
    assert all(isinstance(m, torch.nn.Module) for m in modules)
