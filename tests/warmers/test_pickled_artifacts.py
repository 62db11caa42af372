"""Pickles in .pt2 archives: real torch.export archives whose pickles would create a marker file when loaded."""

from __future__ import annotations

import io
import json
import pathlib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from prewarm.fleet import ModelSpec
from warmers.archives import pickled_objects
from warmers.errors import PickledArtifactError
from warmers.loading import load_module


class Touch:
    """Unpickles into a call that creates ``path``: what an attacker's ``os.system`` would be."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


class Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def export(folder: Path) -> tuple[Path, Linear]:
    torch.manual_seed(0)
    module = Linear().eval()
    path = folder / "plain.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(1, 4),)), str(path))
    return path, module


def rewrite(source: Path, dest: Path, *, weight: object | None = None, sample_inputs: object | None = None) -> Path:
    """A copy of the archive with ``lin.weight`` stored as a pickle (``use_pickle``) and/or other sample inputs."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if weight is not None and info.filename.endswith("data/weights/model_weights_config.json"):
                config = json.loads(data)
                config["config"]["lin.weight"]["use_pickle"] = True
                data = json.dumps(config).encode()
            elif weight is not None and info.filename.endswith("data/weights/weight_0"):
                data = saved(weight)
            elif sample_inputs is not None and "data/sample_inputs/" in info.filename:
                data = saved(sample_inputs)
            out.writestr(info.filename, data)
    return dest


def spec_for(path: Path, **changes: Any) -> ModelSpec:
    return ModelSpec.model_validate({
        "name": "exported", "artifact_uri": str(path), "sha256": "0" * 64, "loader": "torch_export",
        "warmup": {"inputs": [{"name": "x", "shape": [1, 4]}]}, **changes,
    })


def test_a_plain_export_holds_no_pickles(tmp_path: Path) -> None:
    path, _ = export(tmp_path)
    assert pickled_objects(path) == []
    examples = Path(__file__).resolve().parents[2] / "examples" / "artifacts" / "chat-small.pt2"
    assert pickled_objects(examples) == []


@pytest.mark.parametrize("where", ["weight", "sample_inputs"])
def test_a_pickled_archive_is_refused_and_its_pickle_never_runs(tmp_path: Path, where: str) -> None:
    plain, _ = export(tmp_path)
    marker = tmp_path / "marker"
    evil = rewrite(plain, tmp_path / "evil.pt2", **{where: Touch(marker)})
    expected = "weight 'lin.weight' is use_pickle" if where == "weight" else "sample inputs that need the full unpickler"
    assert any(expected in item for item in pickled_objects(evil))
    with pytest.raises(PickledArtifactError, match=r"model exported:1: .*evil.pt2 holds pickled objects .*"
                       r"set trust_pickle: true on its fleet entry"):
        load_module(spec_for(evil), evil, torch.device("cpu"))
    assert not marker.exists()


def test_trust_pickle_loads_a_pickled_weight(tmp_path: Path) -> None:
    plain, module = export(tmp_path)
    pickled = rewrite(plain, tmp_path / "pickled.pt2", weight=torch.nn.Parameter(module.lin.weight.detach().clone()))
    with pytest.raises(PickledArtifactError):
        load_module(spec_for(pickled), pickled, torch.device("cpu"))
    loaded = load_module(spec_for(pickled, trust_pickle=True), pickled, torch.device("cpu"))
    x = torch.randn(1, 4)
    assert torch.allclose(loaded(x), module(x))


def test_an_archive_with_extra_members_or_not_a_zip_is_refused(tmp_path: Path) -> None:
    plain, _ = export(tmp_path)
    extended = tmp_path / "extended.pt2"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(extended, "w") as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename))
        out.writestr("plain/data/state.pkl", saved({"x": 1}))
    assert pickled_objects(extended) == ["plain/data/state.pkl (not part of a plain torch.export archive)"]
    doubled = tmp_path / "doubled.pt2"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(doubled, "w") as out, pytest.warns(UserWarning, match="Duplicate"):
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename))
        config = next(name for name in src.namelist() if name.endswith("model_weights_config.json"))
        out.writestr(config, src.read(config).replace(b'"use_pickle": false', b'"use_pickle": true'))
    assert pickled_objects(doubled) == ["(archive layout) duplicate member names"]
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip")
    assert "not a zip archive" in pickled_objects(junk)[0]
