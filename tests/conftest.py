"""Shared fixtures: a real state directory per test and one Prefect test harness per session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from data_contracts.settings import Settings

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server for every flow test of the session (start-up is ~10 s)."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh FORGETFLOW_HOME: DuckDB warehouse, MLflow SQLite + artifacts, inbox, quarantine."""
    state = tmp_path / "forgetflow-home"
    monkeypatch.setenv("FORGETFLOW_HOME", str(state))
    monkeypatch.setenv("FORGETFLOW_HASH_SALT", "test-salt")
    return state


@pytest.fixture(scope="session")
def digits_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse file with the digits training index and model digits-logreg, built once."""
    from models.datasets import load_digits_dataset
    from tasks import warehouse

    settings = Settings(home=tmp_path_factory.mktemp("warehouse-template"), hash_salt="template")
    with warehouse.connect(settings) as con:
        warehouse.load_training_index(con, load_digits_dataset())
        warehouse.add_model(con, model_name="digits-logreg", dataset="digits", recipe="pnsgd")
        con.execute("CHECKPOINT")
    return settings.warehouse_path


@pytest.fixture
def fresh_state(digits_template: Path) -> Callable[[Path, str], Settings]:
    """Make a state directory at `home` whose warehouse is a copy of the digits template."""

    def make(home: Path, salt: str) -> Settings:
        settings = Settings(home=home, hash_salt=salt)
        settings.inbox.mkdir(parents=True)
        shutil.copyfile(digits_template, settings.warehouse_path)
        return settings

    return make
