"""Fleet entries of models another V2 server holds (``server: foreign``): what they need, how they register."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.models import Model
from db.registry import get_model, spec_of
from db.session import session_scope
from prewarm.errors import FleetError
from prewarm.fleet import load_fleet

FLEET = """\
models:
  - name: sklearn-classifier
    server: foreign
    sla_p99_ms: 25
    warmup:
      inputs:
        - {name: x, datatype: FP32, shape: [batch, 4]}
      buckets: {batch: [1, 8]}
  - name: kserve-doubler
    version: "3"
    server: foreign
    warmup:
      inputs:
        - {name: x, datatype: FP32, shape: [1, 4]}
"""


def write(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


def test_a_foreign_model_needs_only_name_version_warmup_and_sla(tmp_path: Path) -> None:
    models = {m.name: m for m in load_fleet(write(tmp_path / "fleet.yaml", FLEET)).models}
    classifier = models["sklearn-classifier"]
    assert classifier.foreign and classifier.version == "1" and classifier.sla_p99_ms == 25
    assert (classifier.artifact_uri, classifier.sha256, classifier.loader) == (None, None, None)
    assert models["kserve-doubler"].version == "3"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("    sha256: " + "a" * 64 + "\n    loader: torch_export\n",
         r"field models\[0\]\.artifact_uri \(model 'own'\): Field required: prewarm's engine loads this model "
         r"from its artifact \(set `server: foreign` for a model that another V2 server holds\)$"),
        ("", r"field models\[0\]\.artifact_uri \(model 'own'\): Field required: .* \(2 more errors\)$"),
        ("    server: remote\n", r"field models\[0\]\.server \(model 'own'\): Input should be 'prewarm' or 'foreign'"),
    ],
    ids=["one-missing", "all-missing", "unknown-server"],
)
def test_a_model_of_prewarms_own_needs_its_artifact(tmp_path: Path, entry: str, message: str) -> None:
    content = f"models:\n  - name: own\n{entry}    warmup:\n      inputs: [{{name: x, shape: [1, 4]}}]\n"
    with pytest.raises(FleetError, match=message):
        load_fleet(write(tmp_path / "fleet.yaml", content))


def test_foreign_models_register_with_empty_artifact_columns(
    cli: Callable[..., object], engine: Engine, tmp_path: Path
) -> None:
    result = cli("models", "import", str(write(tmp_path / "fleet.yaml", FLEET)))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    with session_scope(engine) as session:
        row = get_model(session, "kserve-doubler", "3")
        assert isinstance(row, Model) and (row.artifact_uri, row.sha256, row.loader) == ("", "", "")
        spec = spec_of(row)
        assert spec.foreign and spec.artifact_uri is None and spec.warmup.inputs[0].name == "x"
    listing = cli("models", "list")
    assert "(foreign)" in listing.stdout  # type: ignore[attr-defined]
