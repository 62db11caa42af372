"""prewarm's own engine and host leave ``server: foreign`` models to the server that holds them."""

from __future__ import annotations

from pathlib import Path

import httpx

from prewarm.fleet import ModelSpec
from tests.warmers.conftest import HostFactory, raw_entry, write_fleet
from warmers.engine import Engine
from warmers.sources import fleet_source


def _foreign(spec: ModelSpec) -> ModelSpec:
    data = spec.model_dump(exclude={"artifact_uri", "sha256", "loader", "factory"})
    return ModelSpec.model_validate({**data, "server": "foreign"})


def test_the_engine_refuses_a_foreign_model_with_a_clear_error(
    cpu_engine: Engine, example_specs: dict[str, ModelSpec]
) -> None:
    report = cpu_engine.warm(_foreign(example_specs["reranker"]))
    assert not report.ready and report.error_type == "ModelLoadError"
    assert (
        "model 'reranker' version '1' is declared `server: foreign` and has no artifact: prewarm's engine cannot "
        "load it; warm it on its own server (`prewarm warm reranker --target URL`)"
    ) in (report.error or "")
    assert cpu_engine.memory_used_mb == 0


def test_the_host_does_not_serve_the_fleets_foreign_models(start_host: HostFactory, tmp_path: Path) -> None:
    foreign = {k: v for k, v in raw_entry("reranker", name="elsewhere", server="foreign").items()
               if k not in ("artifact_uri", "sha256", "loader", "factory")}
    fleet = write_fleet(tmp_path / "fleet", [raw_entry("reranker"), foreign])
    assert [spec.name for spec in fleet_source(fleet)()] == ["reranker"]
    host = start_host(fleet=fleet, load_on_startup=True)
    assert httpx.get(f"{host}/v2/models/reranker/ready").status_code == 200
    assert httpx.post(f"{host}/v2/repository/models/elsewhere/load", json={}).status_code == 404
