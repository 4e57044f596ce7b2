"""Prefect tasks of the training flow: index the data, train, store proxies, publish version 1."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from data_contracts.certificate import Certificate, Cost
from data_contracts.hashing import set_sha256
from data_contracts.settings import Settings
from models.datasets import Dataset, load_dataset
from models.evaluation import accuracy
from models.forgettable import ForgettableModel
from models.learning_events import HIGH_MEMORISATION_WHEN
from models.memorization import ProxyScores, curvature_proxy, holdout_retraining_proxy
from models.mlp import MlpRecipe
from models.planner import ModelLedger
from models.training import TrainingRun, train_model
from tasks import features, publishing, registry, warehouse
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


# Holdout and curvature proxies cost ~6-7% of a training run each (benchmarks/results/
# memorization_proxies.md) and are computed at training time only up to this many rows.
EXTRA_PROXIES_MAX_ROWS = 50_000
HOLDOUT_FINETUNE_EPOCHS = 5


def extra_proxies(
    dataset: Dataset, model: ForgettableModel, *, seed: int
) -> dict[str, ProxyScores]:
    """Holdout-retraining and (final-model) curvature proxies of an MLP's training rows.

    Holdout: a copy fine-tuned for HOLDOUT_FINETUNE_EPOCHS on the test split (Carlini et al.,
    arXiv 1910.13427 sec. 2); curvature: one Rademacher probe on the final model (Garg, Roy et
    al., arXiv 2307.05831 sec. 3). Both in models/memorization.py."""
    net = model.mlp_state()
    train, test = dataset.train_rows(), dataset.test_rows()
    x, y = dataset.features[train], dataset.labels[train]
    recipe = model.recipe
    finetune = MlpRecipe(
        epochs=HOLDOUT_FINETUNE_EPOCHS, batch_size=recipe["batch_size"], lr=recipe["lr"]
    )
    return {
        "holdout": holdout_retraining_proxy(
            net,
            x,
            y,
            x_holdout=dataset.features[test],
            y_holdout=dataset.labels[test],
            recipe=finetune,
            seed=seed,
        ),
        "curvature": curvature_proxy([net], x, y, seed=seed + 1),
    }


@task(cache_policy=NO_CACHE)
def store_proxies(
    settings: Settings,
    *,
    model_name: str,
    version: int,
    dataset: Dataset,
    run: TrainingRun,
    extra: bool | None = None,
) -> dict[str, Any]:
    """Proxies of every training sample into the DuckDB feature table (one Arrow batch).

    Learning events always; holdout and curvature when `extra` (default: MLPs with at most
    EXTRA_PROXIES_MAX_ROWS training rows; their columns stay NULL otherwise)."""
    proxies = run.events.proxies()
    directions: dict[str, str] = dict(HIGH_MEMORISATION_WHEN)
    ids = dataset.sample_ids[dataset.train_rows()].tolist()
    if extra is None:
        extra = run.model.recipe_name == "mlp" and len(ids) <= EXTRA_PROXIES_MAX_ROWS
    if extra and run.model.recipe_name != "mlp":
        raise ValueError("holdout and curvature proxies are implemented for the mlp recipe only")
    cost = {"grad_evals": 0.0, "seconds": 0.0}
    if extra:
        for name, p in extra_proxies(dataset, run.model, seed=run.model.seed).items():
            proxies[name] = p.scores
            directions[name] = p.high_memorisation_when
            cost["grad_evals"] += p.grad_evals
            cost["seconds"] += p.seconds
    with warehouse.connect(settings) as con:
        rows = warehouse.write_features(
            con,
            model_name=model_name,
            model_version=version,
            sample_ids=ids,
            proxies=proxies,
            visits=run.events.counts.numpy(),
            directions=directions,
        )
    return {
        "rows": rows,
        "proxies": sorted(proxies),
        "extra_grad_evals": cost["grad_evals"],
        "extra_seconds": cost["seconds"],
        "extra_fraction_of_training": cost["grad_evals"] / max(run.cost.grad_evals, 1.0),
    }


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


@task(cache_policy=NO_CACHE)
def compute_extra_proxies(settings: Settings, *, model_name: str, version: int) -> dict[str, Any]:
    """On demand: holdout and curvature of a registered MLP version, filled into its stored
    feature rows (those of the samples it still holds); other columns are left as they are."""
    with warehouse.connect(settings) as con:
        info = warehouse.model_row(con, model_name)
    if info is None:
        raise ValueError(f"unknown model {model_name!r}")
    model = publishing.model_from_version(registry.load_version(settings, model_name, version))
    if model.recipe_name != "mlp":
        raise ValueError("holdout and curvature proxies are implemented for the mlp recipe only")
    dataset = load_dataset(info["dataset"])
    scores = extra_proxies(dataset, model, seed=model.seed)
    kept = np.flatnonzero(~model.removed)
    ids = dataset.sample_ids[dataset.train_rows()][kept].tolist()
    with warehouse.connect(settings) as con:
        updated = features.fill_columns(
            con,
            model_name=model_name,
            model_version=version,
            sample_ids=ids,
            columns={name: p.scores[kept] for name, p in scores.items()},
            directions={name: p.high_memorisation_when for name, p in scores.items()},
        )
    return {
        "rows": updated,
        "grad_evals": sum(p.grad_evals for p in scores.values()),
        "seconds": sum(p.seconds for p in scores.values()),
    }
