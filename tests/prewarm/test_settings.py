"""Settings: environment overrides, defaults, and the README's table listing every variable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from prewarm.settings import Settings, get_settings, reset_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _env_names(model: type[BaseModel], prefix: str) -> list[str]:
    names: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_readme_documents_every_setting() -> None:
    table = README.read_text()
    missing = [name for name in _env_names(Settings, "PREWARM_") if f"`{name}`" not in table]
    assert missing == []


def test_defaults_live_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PREWARM_HOME", str(tmp_path))
    reset_settings()
    settings = get_settings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'prewarm.db'}"
    assert settings.resolved_artifact_root == str(tmp_path / "artifacts")
    assert settings.forecast_interval == timedelta(hours=1)


def test_environment_overrides_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREWARM_S3__ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("PREWARM_FORECAST_INTERVAL", "PT15M")
    monkeypatch.setenv("PREWARM_ARTIFACT_ROOT", "s3://models/prod")
    reset_settings()
    settings = get_settings()
    assert settings.s3.endpoint_url == "http://127.0.0.1:9000"
    assert settings.forecast_interval == timedelta(minutes=15)
    assert settings.resolved_artifact_root == "s3://models/prod"


def test_non_positive_interval_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREWARM_FORECAST_INTERVAL", "PT0S")
    reset_settings()
    with pytest.raises(ValidationError, match="PREWARM_FORECAST_INTERVAL must be positive"):
        get_settings()


def test_artifact_sources_default_to_the_root_and_the_shipped_examples(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from prewarm.settings import EXAMPLE_ARTIFACTS

    monkeypatch.delenv("PREWARM_ARTIFACT_SOURCES", raising=False)
    monkeypatch.delenv("PREWARM_FACTORY_MODULES", raising=False)
    monkeypatch.setenv("PREWARM_HOME", str(tmp_path))
    reset_settings()
    settings = get_settings()
    assert settings.resolved_artifact_sources == [str(tmp_path / "artifacts"), str(EXAMPLE_ARTIFACTS)]
    assert (EXAMPLE_ARTIFACTS / "chat-small.pt2").exists()
    assert settings.factory_modules == ["warmers.zoo"]
    monkeypatch.setenv("PREWARM_ARTIFACT_SOURCES", "s3://models/prod, /srv/models")
    reset_settings()
    assert get_settings().resolved_artifact_sources == ["s3://models/prod", "/srv/models"]
