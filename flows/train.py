"""Training flow: index the data in DuckDB, train an unlearning-ready model, publish version 1."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from data_contracts.settings import Settings
from flows.library_logging import quiet_libraries
from tasks import training


@flow(name="train", log_prints=True)
def train_flow(
    dataset: str = "digits",
    recipe: str = "pnsgd",
    name: str = "digits-logreg",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    canaries: int = 0,
) -> dict[str, Any]:
    """Train `recipe` on `dataset` and register it as `name` v1 (alias champion), leaving out
    the subjects whose erasure was applied before (tasks.training.load_erasures); `canaries`
    synthetic canaries give RUM's audit power (mlp only, models/canaries.py)."""
    quiet_libraries()
    settings = Settings()
    settings.ensure_dirs()
    data = training.index_training_data(
        settings, dataset_name=dataset, model_name=name, recipe=recipe
    )
    # Erasures applied before this model existed: it never trains on, nor evaluates on, them.
    erasures = training.load_erasures(settings, model_name=name, dataset=data)
    run = training.train(
        data,
        recipe=recipe,
        seed=seed,
        overrides=overrides,
        exclude_rows=erasures.exclude_rows,
        canaries=canaries,
    )
    summary = training.publish_trained(
        settings,
        model_name=name,
        dataset=data,
        run=run,
        flow_run_id=str(flow_run.get_id() or "local"),
        erasures=erasures,
    )
    training.store_proxies(
        settings,
        model_name=name,
        version=summary["version"],
        dataset=data,
        run=run,
        withdrawn_test_ids=erasures.withdrawn_test_ids,
    )
    return summary
