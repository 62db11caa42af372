"""Runtime configuration: one pydantic-settings class, read through a cached getter.

Every setting is an environment variable with the ``PREWARM_`` prefix; nested groups use ``__``
(``PREWARM_S3__ENDPOINT_URL``). Nothing reads the environment at import time: call :func:`get_settings`.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Code that a fleet entry's ``factory`` may name by default: the example fleet's module.
DEFAULT_FACTORY_MODULES = ("warmers.zoo",)
# The example fleet's artifacts ship with the code, so they are an allowed source by default.
EXAMPLE_ARTIFACTS = Path(__file__).resolve().parents[1] / "examples" / "artifacts"


class S3Settings(BaseModel):
    """Where the S3 protocol is spoken: AWS by default, or any compatible store (MinIO, Ceph, R2)."""

    endpoint_url: str | None = Field(default=None, description="S3 endpoint URL; unset means AWS.")
    region: str = Field(default="us-east-1", description="S3 region name.")


class HostSettings(BaseModel):
    """The inference host's capacity accounting."""

    device: str = Field(default="auto", description="Device for the host's models: auto, cpu, cuda, cuda:N.")
    device_memory_mb: int | None = Field(
        default=None, description="Device memory the host may use; unset means what the device reports."
    )
    cache_max_gb: float = Field(default=20.0, description="Size limit of the local artifact cache.")
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token required on the repository and inference routes; unset means no authentication.",
    )
    max_body_mb: float = Field(default=64.0, gt=0, description="Largest request body the host parses (413 above).")
    heartbeat_s: float = Field(
        default=15.0, gt=0, description="Seconds between a registered host's heartbeats; 3 missed mean down."
    )
    cold_window_s: float = Field(
        default=60.0, ge=0, description="Requests served this soon after a load finished count as cold starts."
    )
    drain_s: float = Field(
        default=30.0, ge=0, description="Seconds an unload or version roll waits for requests in flight to finish."
    )
    loopback_warmup: int = Field(
        default=4, ge=0,
        description="Requests a load through the repository API sends through the host's own HTTP listener "
        "before it answers (0: none).",
    )


class PrometheusSettings(BaseModel):
    """Credentials and limits for reading telemetry from a Prometheus server's HTTP API."""

    token: SecretStr | None = Field(default=None, description="Bearer token sent to Prometheus (wins over basic auth).")
    username: str | None = Field(default=None, description="Basic-auth user name for Prometheus.")
    password: SecretStr | None = Field(default=None, description="Basic-auth password for Prometheus.")
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds one Prometheus API call may take.")


class ControllerSettings(BaseModel):
    """The fleet controller: staggering, retries, the pool lease, and when an unneeded model is unloaded."""

    tick_s: float = Field(
        default=60.0, gt=0, description="How often reconcile-fleet runs; warm-ups are planned to start one tick earlier."
    )
    tick_budget_s: float = Field(
        default=45.0, gt=0, description="A tick starts no new action after this long; the next tick does the rest."
    )
    max_warmups_per_pool: int = Field(default=8, ge=1, description="Warm-ups running at once in one pool.")
    max_attempts: int = Field(default=3, ge=1, description="Failed warms of a replica before it is marked failed.")
    backoff_s: float = Field(
        default=30.0, gt=0, description="Wait before the first retry of a failed warm; doubles with each failure."
    )
    lease_s: float = Field(
        default=60.0, ge=3, description="Lifetime of a pool's lock; renewed while a tick runs, runs out if it dies."
    )
    keep_warm_s: float = Field(
        default=600.0, ge=0, description="A model wanted again on a host within this many seconds is not unloaded."
    )
    observe_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of a host's repository index call.")
    warm_timeout_s: float = Field(default=600.0, gt=0, description="Timeout of one call during a warm-up.")


class Settings(BaseSettings):
    """All of prewarm's settings."""

    model_config = SettingsConfigDict(
        env_prefix="PREWARM_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("prewarm")),
        description="Data directory for the embedded database, artifacts and caches.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the history database; unset means SQLite under home."
    )
    artifact_root: str | None = Field(
        default=None, description="Artifact store root: a folder, file:// or s3://bucket/prefix."
    )
    forecast_interval: timedelta = Field(
        default=timedelta(hours=1), description="Width of one telemetry and forecast bucket."
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC key that signs post-deploy webhooks."
    )
    webhook_read_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds a webhook client has to send its headers, and then its body."
    )
    artifact_sources: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description="URI prefixes artifacts may come from (comma-separated); unset means the artifact root "
        "and the example fleet's artifacts.",
    )
    factory_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_FACTORY_MODULES),
        description="Module prefixes a fleet entry's factory may come from (comma-separated).",
    )
    s3: S3Settings = Field(default_factory=S3Settings)
    host: HostSettings = Field(default_factory=HostSettings)
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)

    @field_validator("artifact_sources", "factory_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _interval_positive(self) -> Settings:
        if self.forecast_interval <= timedelta(0):
            raise ValueError("PREWARM_FORECAST_INTERVAL must be positive, e.g. PT1H or PT15M")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<home>/prewarm.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'prewarm.db'}"

    @property
    def resolved_artifact_root(self) -> str:
        """The artifact root, defaulting to ``<home>/artifacts``."""
        if self.artifact_root:
            return self.artifact_root
        return str(self.home / "artifacts")

    @property
    def resolved_artifact_sources(self) -> list[str]:
        """URI prefixes artifacts may be fetched from.

        ``PREWARM_ARTIFACT_SOURCES`` when set; else the artifact root and the example fleet's artifacts, which
        ship with the code.
        """
        if self.artifact_sources:
            return list(self.artifact_sources)
        return [self.resolved_artifact_root, str(EXAMPLE_ARTIFACTS)]

    @property
    def cache_dir(self) -> Path:
        """Local cache of fetched artifacts and compile caches, keyed by sha256."""
        return self.home / "cache"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings so the next :func:`get_settings` reads the environment again."""
    get_settings.cache_clear()
