"""Prefect tasks of the training flow: index the data, train, store proxies, publish version 1."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_contracts.certificate import Certificate, Cost
from data_contracts.hashing import set_sha256
from data_contracts.settings import Settings
from models.datasets import Dataset, load_dataset
from models.evaluation import accuracy
from models.learning_events import HIGH_MEMORISATION_WHEN
from models.planner import ModelLedger
from models.training import TrainingRun, train_model
from tasks import publishing, warehouse
from tasks.progress import reporter


@task(cache_policy=NO_CACHE)
def index_training_data(
    settings: Settings, *, dataset_name: str, model_name: str, recipe: str
) -> Dataset:
    """Load the dataset into the DuckDB training index and reserve the model name."""
    dataset = load_dataset(dataset_name)
    with warehouse.connect(settings) as con:
        warehouse.load_training_index(con, dataset)
        warehouse.add_model(con, model_name=model_name, dataset=dataset.name, recipe=recipe)
    return dataset


@task(cache_policy=NO_CACHE)
def train(
    dataset: Dataset, *, recipe: str, seed: int, overrides: dict[str, Any] | None = None
) -> TrainingRun:
    return train_model(
        dataset,
        recipe_name=recipe,
        seed=seed,
        progress=reporter(f"training {recipe}"),
        overrides=overrides,
    )


@task(cache_policy=NO_CACHE)
def store_proxies(
    settings: Settings, *, model_name: str, version: int, dataset: Dataset, run: TrainingRun
) -> int:
    """Learning-event proxies of every training sample into the DuckDB feature table."""
    means = run.events.means()
    ids = dataset.sample_ids[dataset.train_rows()].tolist()
    with warehouse.connect(settings) as con:
        return warehouse.write_features(
            con,
            model_name=model_name,
            model_version=version,
            sample_ids=ids,
            proxies=means,
            visits=run.events.counts.numpy(),
            directions=HIGH_MEMORISATION_WHEN,
        )


@task(cache_policy=NO_CACHE)
def publish_trained(
    settings: Settings,
    *,
    model_name: str,
    dataset: Dataset,
    run: TrainingRun,
    flow_run_id: str,
) -> dict[str, Any]:
    """Certificate `train`/`exact`, MLflow version 1 as champion, and its row in DuckDB."""
    model = run.model
    test = dataset.test_rows()
    test_acc = accuracy(model.predict_proba(dataset.features[test]), dataset.labels[test])
    train_rows = dataset.train_rows()
    ledger = ModelLedger(
        lineage=model.lineage,
        seconds_per_grad_eval=run.cost.seconds / max(run.cost.grad_evals, 1.0),
        retrain_grad_evals=run.cost.grad_evals,
    ).as_dict()
    with warehouse.connect(settings) as con:
        index_digest = warehouse.training_index_sha256(con, dataset.name)
    certificate = Certificate(
        model_name=model_name,
        model_version=1,
        parent_certificate_sha256=None,
        method="train",
        guarantee="exact",
        lineage=model.lineage,
        parameters={**model.recipe, "seed": model.seed},
        forget_set_sha256=set_sha256([]),
        training_index_sha256=index_digest,
        weights_sha256=publishing.weights_sha256(model),
        cost=Cost(
            grad_evals=run.cost.grad_evals,
            seconds=run.cost.seconds,
            retrain_grad_evals=run.cost.grad_evals,
        ),
        metrics={"test_accuracy": test_acc, "train_size": float(len(train_rows))},
        code_version=publishing.code_version(),
    )
    version = publishing.publish(
        settings,
        model_name=model_name,
        model=model,
        certificate=certificate,
        dataset=dataset.name,
        ledger=ledger,
        metrics={"test_accuracy": test_acc},
        tags={"forgetflow_run_id": flow_run_id},
    )
    with warehouse.connect(settings) as con:
        warehouse.record_version(
            con,
            model_name=model_name,
            version=version,
            lineage=model.lineage,
            method="train",
            guarantee="exact",
            epsilon=None,
            certificate_sha256=certificate.sha256(),
            weights_sha256=certificate.weights_sha256,
            ledger=ledger,
            run_id=flow_run_id,
        )
    return {
        "model_name": model_name,
        "version": version,
        "test_accuracy": test_acc,
        "grad_evals": run.cost.grad_evals,
        "seconds": run.cost.seconds,
        "certificate_sha256": certificate.sha256(),
    }
