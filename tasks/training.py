"""Prefect tasks of the training flow: index the data, train, store proxies, publish version 1.

A model trained after erasures were applied never sees them (GDPR art. 17(1)): training leaves
out the training rows of every applied request that targets it (tasks.ledger.erased_before_training)
and every evaluation leaves out the test rows their subjects withdrew (tasks.ledger.
withdrawn_test_ids); version 1's certificate names those requests and its ledger transaction
records them as applied to it, so `forgetflow audit` shows the new model as having forgotten them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from data_contracts.certificate import Certificate, Cost
from data_contracts.hashing import merkle_root, set_sha256
from data_contracts.settings import Settings
from models.canaries import model_training_data, stored_spec
from models.datasets import Dataset, load_dataset
from models.evaluation import accuracy
from models.forgettable import ForgettableModel
from models.learning_events import HIGH_MEMORISATION_WHEN
from models.memorization import ProxyScores, curvature_proxy, holdout_retraining_proxy
from models.mlp import MlpRecipe
from models.planner import ModelLedger
from models.training import TrainingRun, train_model
from tasks import erasure, features, ledger, publishing, registry, warehouse
from tasks.forgetting import MAX_REQUEST_TAGS
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


@dataclass
class Erasures:
    """What the new model must not process: erasures already applied before it existed."""

    requests: ledger.TrainingErasure  # applied requests targeting it, and their training samples
    exclude_rows: np.ndarray  # positions of those samples in the training split
    withdrawn_test_ids: list[str]  # test rows their subjects withdrew (evaluation leaves them out)

    def test_rows(self, dataset: Dataset) -> np.ndarray:
        """Dataset positions of the test rows still in use."""
        test = dataset.test_rows()
        return test[~np.isin(dataset.sample_ids[test], self.withdrawn_test_ids)]


@task(cache_policy=NO_CACHE)
def load_erasures(settings: Settings, *, model_name: str, dataset: Dataset) -> Erasures:
    """Read after the model is reserved (index_training_data): from then on no request becomes
    `applied` without an application for this model too (tasks.ledger.finalize_run)."""
    with warehouse.connect(settings) as con:
        requests = ledger.erased_before_training(con, model_name=model_name)
        withdrawn = ledger.withdrawn_test_ids(con, dataset=dataset.name)
    train_ids = dataset.sample_ids[dataset.train_rows()]
    return Erasures(
        requests=requests,
        exclude_rows=np.flatnonzero(np.isin(train_ids, requests.sample_ids)),
        withdrawn_test_ids=withdrawn,
    )


@task(cache_policy=NO_CACHE)
def train(
    dataset: Dataset,
    *,
    recipe: str,
    seed: int,
    overrides: dict[str, Any] | None = None,
    exclude_rows: np.ndarray | None = None,
    canaries: int = 0,
) -> TrainingRun:
    """`canaries`: synthetic canaries trained on for RUM's audit (mlp only, models/canaries.py)."""
    return train_model(
        dataset,
        recipe_name=recipe,
        seed=seed,
        progress=reporter(f"training {recipe}"),
        overrides=overrides,
        exclude_rows=exclude_rows,
        canaries=canaries,
    )


# Holdout and curvature proxies cost ~6-7% of a training run each (benchmarks/results/
# memorization_proxies.md) and are computed at training time only up to this many rows.
EXTRA_PROXIES_MAX_ROWS = 50_000
HOLDOUT_FINETUNE_EPOCHS = 5


def extra_proxies(
    dataset: Dataset,
    model: ForgettableModel,
    *,
    seed: int,
    withdrawn_test_ids: list[str] | None = None,
) -> dict[str, ProxyScores]:
    """Holdout-retraining and (final-model) curvature proxies of an MLP's training rows, NaN
    for rows the model forgot (they are not read).

    Holdout: a copy fine-tuned for HOLDOUT_FINETUNE_EPOCHS on the test split minus
    `withdrawn_test_ids` (Carlini et al., arXiv 1910.13427 sec. 2); curvature: one Rademacher
    probe on the final model (Garg, Roy et al., arXiv 2307.05831 sec. 3). Both in
    models/memorization.py."""
    net = model.mlp_state()
    kept = np.flatnonzero(~model.removed)
    data, test = model_training_data(dataset, model), dataset.test_rows()
    test = test[~np.isin(dataset.sample_ids[test], withdrawn_test_ids or [])]
    x, y = data.x[kept], data.y[kept]
    recipe = model.recipe
    finetune = MlpRecipe(
        epochs=HOLDOUT_FINETUNE_EPOCHS, batch_size=recipe["batch_size"], lr=recipe["lr"]
    )
    scores = {
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
    if len(kept) == len(model.removed):
        return scores
    out = {}
    for name, p in scores.items():
        full = np.full(len(model.removed), np.nan)
        full[kept] = p.scores
        out[name] = replace(p, scores=full)
    return out


@task(cache_policy=NO_CACHE)
def store_proxies(
    settings: Settings,
    *,
    model_name: str,
    version: int,
    dataset: Dataset,
    run: TrainingRun,
    extra: bool | None = None,
    withdrawn_test_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Proxies of every training sample the model holds into the DuckDB feature table (one
    Arrow batch); rows it never trained on get none (nothing derived from erased data).

    Learning events always; holdout and curvature when `extra` (default: MLPs with at most
    EXTRA_PROXIES_MAX_ROWS training rows; their columns stay NULL otherwise), fine-tuned on
    the test split minus `withdrawn_test_ids`."""
    kept = np.flatnonzero(~run.model.removed)
    proxies = {k: v[kept] for k, v in run.events.proxies().items()}
    directions: dict[str, str] = dict(HIGH_MEMORISATION_WHEN)
    ids = model_training_data(dataset, run.model).sample_ids[kept].tolist()  # canaries too
    if extra is None:
        extra = run.model.recipe_name == "mlp" and len(ids) <= EXTRA_PROXIES_MAX_ROWS
    if extra and run.model.recipe_name != "mlp":
        raise ValueError("holdout and curvature proxies are implemented for the mlp recipe only")
    cost = {"grad_evals": 0.0, "seconds": 0.0}
    if extra:
        scores = extra_proxies(
            dataset, run.model, seed=run.model.seed, withdrawn_test_ids=withdrawn_test_ids
        )
        for name, p in scores.items():
            proxies[name] = p.scores[kept]
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
            visits=run.events.counts.numpy()[kept],
            directions=directions,
        )
    return {
        "rows": rows,
        "proxies": sorted(proxies),
        "extra_grad_evals": cost["grad_evals"],
        "extra_seconds": cost["seconds"],
        "extra_fraction_of_training": cost["grad_evals"] / max(run.cost.grad_evals, 1.0),
    }


def _canary_parameters(model: ForgettableModel) -> dict[str, Any]:
    """What v1's certificate says about the model's canaries: count, seed and a digest of the
    aggregate statistics they are drawn from (all of it is in the model card's `info`)."""
    spec = stored_spec(model.info)
    if spec is None:
        return {}
    return {
        "canaries": spec.count,
        "canary_seed": spec.seed,
        "canary_twins": spec.twins,
        "canary_spec_sha256": hashlib.sha256(
            json.dumps(spec.as_dict(), sort_keys=True).encode()
        ).hexdigest(),
    }


@task(cache_policy=NO_CACHE)
def publish_trained(
    settings: Settings,
    *,
    model_name: str,
    dataset: Dataset,
    run: TrainingRun,
    flow_run_id: str,
    erasures: Erasures | None = None,
) -> dict[str, Any]:
    """Certificate `train`/`exact`, MLflow version 1 as champion, and its row in DuckDB.

    With `erasures` (what load_erasures found), the certificate names the requests the model
    was born having forgotten (salted hashes, Merkle root, forget-set digest and size) and the
    transaction recording v1 records them as applied to it (tasks.ledger.record_training_erasure);
    test accuracy is measured without the withdrawn test rows."""
    erasures = erasures or Erasures(
        requests=ledger.TrainingErasure([], [], []),
        exclude_rows=np.array([], dtype=np.int64),
        withdrawn_test_ids=[],
    )
    model = run.model
    test = erasures.test_rows(dataset)
    test_acc = accuracy(model.predict_proba(dataset.features[test]), dataset.labels[test])
    data = model_training_data(dataset, model)
    # erased subjects' rows; the model's canaries are all held at training
    forgotten_ids = data.sample_ids[model.removed].tolist()
    hashes = sorted(erasures.requests.request_hashes)
    ledger_state = ModelLedger(
        lineage=model.lineage,
        seconds_per_grad_eval=run.cost.seconds / max(run.cost.grad_evals, 1.0),
        retrain_grad_evals=run.cost.grad_evals,
    ).as_dict()
    with warehouse.connect(settings) as con:
        index_digest = warehouse.training_index_sha256(con, dataset.name)
    metrics = {
        "test_accuracy": test_acc,
        "train_size": float(model.n_retained),  # rows trained on, canaries included
        "test_set_size": float(len(test)),
        "test_rows_withdrawn": float(len(erasures.withdrawn_test_ids)),
    }
    if data.canaries is not None:
        metrics["canaries"] = float(len(data.y) - data.n_dataset)
    certificate = Certificate(
        model_name=model_name,
        model_version=1,
        parent_certificate_sha256=None,
        method="train",
        guarantee="exact",
        lineage=model.lineage,
        parameters={**model.recipe, "seed": model.seed, **_canary_parameters(model)},
        request_id_hashes=hashes,
        request_merkle_root=merkle_root(hashes),
        forget_set_sha256=set_sha256(forgotten_ids),
        forget_set_size=len(forgotten_ids),
        training_index_sha256=index_digest,
        weights_sha256=publishing.weights_sha256(model),
        cost=Cost(
            grad_evals=run.cost.grad_evals,
            seconds=run.cost.seconds,
            retrain_grad_evals=run.cost.grad_evals,
        ),
        metrics=metrics,
        code_version=publishing.code_version(),
    )
    tags = {"forgetflow_run_id": flow_run_id}
    if hashes:  # findable by request hash in the MLflow UI, as forgetting runs' versions are
        tags["request_merkle_root"] = certificate.request_merkle_root or ""
        if len(hashes) <= MAX_REQUEST_TAGS:
            tags.update({f"request.{h[:16]}": "forgotten" for h in hashes})
    version = publishing.publish(
        settings,
        model_name=model_name,
        model=model,
        certificate=certificate,
        dataset=dataset.name,
        ledger=ledger_state,
        metrics=metrics,
        tags=tags,
    )
    with warehouse.connect(settings) as con, warehouse.transaction(con):
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
            ledger=ledger_state,
            run_id=flow_run_id,
        )
        ledger.record_training_erasure(
            con,
            model_name=model_name,
            erasure=erasures.requests,
            certificate_sha256=certificate.sha256(),
        )
        # Idempotent clean-up of shared derived rows this model's forgetting may complete.
        erasure.erase_derived_rows(
            con, model_name=model_name, withdrawn_test_ids=erasures.withdrawn_test_ids
        )
    return {
        "model_name": model_name,
        "version": version,
        "test_accuracy": test_acc,
        "grad_evals": run.cost.grad_evals,
        "seconds": run.cost.seconds,
        "certificate_sha256": certificate.sha256(),
        "forgotten_at_training": len(forgotten_ids),
        "requests_applied_at_training": len(hashes),
        "test_rows_withdrawn": len(erasures.withdrawn_test_ids),
        "canaries": len(data.y) - data.n_dataset,
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
    with warehouse.connect(settings) as con:
        withdrawn = ledger.withdrawn_test_ids(con, dataset=dataset.name)
    scores = extra_proxies(dataset, model, seed=model.seed, withdrawn_test_ids=withdrawn)
    kept = np.flatnonzero(~model.removed)
    ids = model_training_data(dataset, model).sample_ids[kept].tolist()
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
