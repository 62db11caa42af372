"""``prewarm models import/list``: the fleet file's validation and the registry's all-or-nothing import."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.registry import get_model, spec_of
from db.session import session_scope
from prewarm.errors import FleetError
from prewarm.fleet import load_fleet
from tests.prewarm.conftest import snapshot

SHA = "a" * 64

FLEET = f"""\
models:
  - name: tiny
    version: "1"
    artifact_uri: artifacts/tiny.safetensors
    sha256: {SHA}
    loader: safetensors
    factory: warmers.zoo:tiny_mlp
    warmup:
      inputs:
        - {{name: x, datatype: FP32, shape: [batch, 8]}}
      buckets: {{batch: [1, 4]}}
    sla_p99_ms: 50
    priority: 2
  - name: exported
    artifact_uri: s3://models/exported.pt2
    sha256: {SHA}
    loader: torch_export
    warmup:
      inputs:
        - {{name: ids, datatype: INT64, shape: [1, seq]}}
      buckets: {{seq: [16]}}
"""


def write(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


def test_import_registers_and_resolves_relative_artifacts(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet = write(tmp_path / "fleet.yaml", FLEET)
    result = cli("models", "import", str(fleet))
    assert result.exit_code == 0, result.output
    with session_scope(engine) as session:
        tiny = get_model(session, "tiny", "1")
        assert tiny is not None
        assert tiny.artifact_uri == (tmp_path / "artifacts" / "tiny.safetensors").as_uri()
        assert spec_of(tiny).warmup.buckets == {"batch": [1, 4]}
        assert tiny.priority == 2
        assert get_model(session, "exported").artifact_uri == "s3://models/exported.pt2"
    listing = cli("models", "list")
    assert listing.exit_code == 0
    assert "tiny" in listing.stdout and "exported" in listing.stdout


def test_reimport_updates_in_place(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet = write(tmp_path / "fleet.yaml", FLEET)
    assert cli("models", "import", str(fleet)).exit_code == 0
    write(fleet, FLEET.replace("priority: 2", "priority: 9"))
    assert cli("models", "import", str(fleet)).exit_code == 0
    assert len(snapshot(engine, "models")) == 2
    with session_scope(engine) as session:
        assert get_model(session, "tiny", "1").priority == 9


BAD_FLEETS = [
    ("bad YAML", FLEET.replace("loader: torch_export", "loader: [torch_export"), r"line \d+, column \d+: invalid YAML"),
    ("unknown field", FLEET.replace("priority: 2", "priority: 2\n    colour: blue"),
     r"field models\[0\]\.colour \(model 'tiny'\): Extra inputs are not permitted"),
    ("missing field", FLEET.replace("    loader: torch_export\n", ""),
     r"field models\[1\]\.loader \(model 'exported'\): Field required"),
    ("bad URI", FLEET.replace("s3://models/exported.pt2", "ftp://host/x.pt2"),
     r"field models\[1\]\.artifact_uri \(model 'exported'\): .*scheme 'ftp' is not supported"),
    ("bad sha256", FLEET.replace(f"sha256: {SHA}", "sha256: abc123", 1),
     r"field models\[0\]\.sha256 \(model 'tiny'\): .*64 lowercase hex"),
    ("no factory", FLEET.replace("    factory: warmers.zoo:tiny_mlp\n", ""),
     r"models\[0\] \(model 'tiny'\): .*needs a factory"),
    ("not a mapping", "- just\n- a list\n", r"expected a mapping with a 'models' list"),
]


@pytest.mark.parametrize(("case", "content", "message"), BAD_FLEETS, ids=[b[0] for b in BAD_FLEETS])
def test_invalid_fleet_exits_2_and_changes_nothing(  # type: ignore[no-untyped-def]
    cli, engine: Engine, tmp_path: Path, case: str, content: str, message: str
) -> None:
    assert cli("models", "import", str(write(tmp_path / "good.yaml", FLEET))).exit_code == 0
    before = snapshot(engine, "models")
    result = cli("models", "import", str(write(tmp_path / "fleet.yaml", content)))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "fleet.yaml" in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert snapshot(engine, "models") == before


def test_duplicate_versions_are_rejected(tmp_path: Path) -> None:
    doubled = FLEET + FLEET.split("models:\n", 1)[1]
    with pytest.raises(FleetError, match=r"model 'tiny' version '1' appears twice"):
        load_fleet(write(tmp_path / "fleet.yaml", doubled))


@pytest.mark.parametrize(("factory", "modules"), [
    ("os:system", "warmers.zoo"),
    ("warmers.zoology:build", "warmers.zoo"),
    ("tests.warmers.fault_zoo:fragile_reranker", "warmers.zoo,tests.controller"),
])
def test_a_factory_outside_the_allowed_modules_is_refused_at_import(  # type: ignore[no-untyped-def]
    cli, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: str, modules: str
) -> None:
    from prewarm.settings import reset_settings

    monkeypatch.setenv("PREWARM_FACTORY_MODULES", modules)
    reset_settings()
    second = FLEET.split("models:\n", 1)[1].replace("warmers.zoo:tiny_mlp", factory)
    fleet = write(tmp_path / "fleet.yaml", FLEET + second.replace("name: tiny", "name: other").replace(
        "name: exported", "name: other-exported"))
    result = cli("models", "import", str(fleet))
    assert result.exit_code == 2 and "Traceback" not in result.output
    listed = ", ".join(modules.split(","))
    assert re.search(
        rf"fleet.yaml: models\[2\]\.factory: '{re.escape(factory)}' is not under PREWARM_FACTORY_MODULES "
        rf"\({re.escape(listed)}\); add the module's prefix to allow it", result.stderr.replace("\n", "")
    ), result.stderr
    assert snapshot(engine, "models") == []


def test_an_allowed_prefix_admits_its_submodules(cli, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from prewarm.fleet import factory_allowed
    from prewarm.settings import reset_settings

    assert factory_allowed("warmers.zoo:f", ["warmers.zoo"]) and factory_allowed("warmers.zoo.x:f", ["warmers.zoo."])
    assert not factory_allowed("warmers.zoology:f", ["warmers.zoo"]) and not factory_allowed("os:system", [""])
    monkeypatch.setenv("PREWARM_FACTORY_MODULES", "warmers.zoo, acme.models")
    reset_settings()
    fleet = write(tmp_path / "fleet.yaml", FLEET.replace("warmers.zoo:tiny_mlp", "acme.models.vision:resnet"))
    assert cli("models", "import", str(fleet)).exit_code == 0
