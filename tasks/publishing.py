"""Publish a model version: MLflow registration (state + certificate), then the serving alias.

Order matters for crash safety: register -> move alias -> (caller) finalize the DuckDB ledger.
A crash after registration is recovered from the version's run-id tag on the next run."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from data_contracts.certificate import Certificate
from data_contracts.settings import Settings
from models.forgettable import FORGOTTEN_MASK, ForgettableModel
from models.weights import state_sha256
from tasks import registry


@cache
def code_version() -> str:
    """Package version plus the git commit of the checkout, when there is one."""
    version = metadata.version("forgetflow")
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{version}+g{sha}"
    except (OSError, subprocess.SubprocessError):
        return version


def model_card(model: ForgettableModel, *, dataset: str, ledger: dict[str, Any]) -> dict[str, Any]:
    """Everything besides arrays needed to rebuild the model and continue its ledger."""
    return {
        "recipe_name": model.recipe_name,
        "lineage": model.lineage,
        "classes": model.classes,
        "recipe": model.recipe,
        "seed": model.seed,
        "dataset": dataset,
        "ledger": ledger,
        "info": model.info,
    }


def model_from_version(stored: registry.StoredVersion) -> ForgettableModel:
    arrays = dict(stored.arrays)
    removed = arrays.pop(FORGOTTEN_MASK)
    card = stored.card
    return ForgettableModel(
        recipe_name=card["recipe_name"],
        lineage=card["lineage"],
        classes=card["classes"],
        recipe=card["recipe"],
        arrays=arrays,
        removed=removed.astype(bool),
        seed=card["seed"],
        info=card.get("info", {}),
    )


def weights_sha256(model: ForgettableModel) -> str:
    return state_sha256(model.state_arrays())


def publish(
    settings: Settings,
    *,
    model_name: str,
    model: ForgettableModel,
    certificate: Certificate,
    dataset: str,
    ledger: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    plots: dict[str, Path] | None = None,
) -> int:
    """Register the version in MLflow and make it the champion; returns the version number."""
    version = registry.register_version(
        settings,
        model_name=model_name,
        arrays=model.state_arrays(),
        card=model_card(model, dataset=dataset, ledger=ledger),
        certificate=certificate,
        params={
            "method": certificate.method,
            "lineage": certificate.lineage,
            **{f"recipe.{k}": v for k, v in model.recipe.items()},
        },
        metrics=metrics,
        tags=tags,
        plots=plots,
    )
    registry.set_champion(settings, model_name, version)
    return version
