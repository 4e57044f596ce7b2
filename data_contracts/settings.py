"""The one configuration object: state directory, salt, and library environment."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything read from the environment (prefix FORGETFLOW_), resolved once at the edge."""

    model_config = SettingsConfigDict(env_prefix="FORGETFLOW_", extra="ignore")

    home: Path = Field(default=Path(".forgetflow"), description="state directory")
    hash_salt: str | None = Field(
        default=None,
        description="salt for subject/request hashes; default: a random salt kept in home",
    )
    mlflow_ui: str = Field(
        default="http://127.0.0.1:5000",
        description="MLflow UI base URL, for the model-version links in run artifacts",
    )
    duckdb_threads: int = 2
    duckdb_memory_limit: str = "4GB"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> str:
        return (self.home / "artifacts").resolve().as_uri()

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.inbox, self.quarantine, self.prefect_home):
            d.mkdir(parents=True, exist_ok=True)

    def salt(self) -> str:
        """The hashing salt: configured, or generated once and kept (0600) in the state directory."""
        if self.hash_salt:
            return self.hash_salt
        path = self.home / "salt"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(os.urandom(16).hex())
            path.chmod(0o600)
        return path.read_text().strip()

    def library_environment(self) -> dict[str, str]:
        """Environment for Prefect/MLflow so they stay inside `home` and send no telemetry."""
        return {
            "PREFECT_HOME": str(self.prefect_home.resolve()),
            "DO_NOT_TRACK": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
            "PREFECT_LOGGING_EXTRA_LOGGERS": "mlflow,great_expectations",
            "TQDM_DISABLE": "1",  # GX and MLflow progress bars would flood run logs
        }


def apply_library_environment(settings: Settings) -> None:
    """Export `library_environment` unless the caller already set a value (e.g. a real server URL)."""
    for key, value in settings.library_environment().items():
        os.environ.setdefault(key, value)
