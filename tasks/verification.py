"""Verification: the version chain (`models.chain.verify_chain` over what MLflow and DuckDB hold)
and the empirical audit that an uncertified (RUM) version must pass before it is accepted."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import duckdb
import numpy as np

from data_contracts.settings import Settings
from models.audit import (
    CANARY_ALPHA,
    CanaryCheck,
    ModelEval,
    SplitEval,
    audit_unlearned,
    canary_check,
    shadow_references,
)
from models.canaries import TrainingData, model_training_data
from models.chain import Broken, VersionEvidence, verify_chain
from models.cost import CostMeter
from models.datasets import Dataset
from models.forgettable import ForgettableModel
from models.memorization import balanced_subset_grad_evals
from models.mlp import MlpRecipe
from models.weights import state_sha256
from tasks import features, registry, warehouse


def verify_model(settings: Settings, model_name: str) -> tuple[int, list[Broken]]:
    """Recompute every version's hashes from the registered artifacts; returns (versions, problems)."""
    c = registry.client(settings)
    versions = sorted(int(v.version) for v in c.search_model_versions(f"name = '{model_name}'"))
    with warehouse.connect(settings) as con:
        ledger = dict(
            con.execute(
                "SELECT version, certificate_sha256 FROM model_versions WHERE model_name = ?",
                [model_name],
            ).fetchall()
        )
    evidence, unreadable = [], []
    for v in versions:
        tag = c.get_model_version(model_name, str(v)).tags.get("certificate_sha256")
        try:
            stored = registry.load_version(settings, model_name, v)
            cert, weights = stored.certificate, state_sha256(stored.arrays)
        except Exception as err:  # a damaged zip or JSON is evidence of tampering, not a crash
            unreadable.append(
                Broken(v, "weights", f"registered artifacts unreadable ({type(err).__name__})")
            )
            try:
                cert, weights = registry.load_certificate(settings, model_name, v), "unreadable"
            except Exception:
                continue
        evidence.append(
            VersionEvidence(
                version=v,
                certificate=cert,
                registry_tag_sha256=tag,
                ledger_sha256=ledger.get(v),
                recomputed_weights_sha256=weights,
            )
        )
    problems = sorted(unreadable + verify_chain(evidence), key=lambda b: b.version)
    missing = sorted(set(ledger) - set(versions))
    problems += [
        Broken(v, "version", "in the DuckDB ledger but not in the registry") for v in missing
    ]
    return len(versions), problems


# --- RUM audit ---------------------------------------------------------------------------------

# Shadow references for the RUM audit: 4 MLPs under the model's own recipe, each on half of the
# training rows, every row left out of exactly 2 (models.memorization.balanced_member_rows), and
# trained for as many optimiser steps as the full model (twice the epochs): with the recipe's own
# epochs they stay under-fitted and a true retrain fails the KS test against them
# (benchmarks/results/memorization_proxies.md). Cost: 4 x 0.5 x 2 = 4 training runs, once per
# (training data, recipe); cached in DuckDB and reused by every later audit, where the audit
# itself is forward passes only. Against RUM at ~20-25% of a retrain per run, the one-off cost is
# repaid from the sixth audited run on.
AUDIT_REFERENCE_RUNS = 4
AUDIT_REFERENCE_OUT_PER_ROW = 2
AUDIT_REFERENCE_SEED = 0
AUDIT_RESAMPLES = 200


def shadow_recipe(recipe: MlpRecipe, *, runs: int, out_per_row: int) -> MlpRecipe:
    """`recipe` with its epochs scaled by 1 / subset fraction: as many steps as a full run."""
    return replace(recipe, epochs=math.ceil(recipe.epochs * runs / (runs - out_per_row)))


def _audit_recipe(model: ForgettableModel) -> MlpRecipe:
    recipe = MlpRecipe(
        **{k: v for k, v in model.recipe.items() if k in MlpRecipe.__dataclass_fields__}
    )
    return shadow_recipe(recipe, runs=AUDIT_REFERENCE_RUNS, out_per_row=AUDIT_REFERENCE_OUT_PER_ROW)


def audit_reference_grad_evals(
    con: duckdb.DuckDBPyConnection,
    *,
    dataset: Dataset,
    model: ForgettableModel,
    test_rows: np.ndarray,
) -> float:
    """Grad-evals the shadow references of a RUM audit of `model` (the version being unlearned)
    would cost now: 0 when the warehouse holds them for every row the audit needs (the training
    rows `model` holds and `test_rows`, dataset positions of the test rows still in use), else what
    audit_rum will spend training them on the rows `model` still holds (the planner's one-off)."""
    data, test = model_training_data(dataset, model), np.asarray(test_rows, dtype=np.int64)
    key = features.reference_key(
        data.x,
        data.y,
        recipe=_audit_recipe(model),
        runs=AUDIT_REFERENCE_RUNS,
        subset_fraction=1 - AUDIT_REFERENCE_OUT_PER_ROW / AUDIT_REFERENCE_RUNS,
        balanced_out_per_row=AUDIT_REFERENCE_OUT_PER_ROW,
        seed=AUDIT_REFERENCE_SEED,
    )
    held = data.sample_ids[~model.removed].tolist()
    needed = held + dataset.sample_ids[test].tolist()
    if features.complete_variant(con, key, needed, AUDIT_REFERENCE_RUNS) is not None:
        return 0.0
    return balanced_subset_grad_evals(
        len(held),
        runs=AUDIT_REFERENCE_RUNS,
        out_per_row=AUDIT_REFERENCE_OUT_PER_ROW,
        epochs=_audit_recipe(model).epochs,
        seed=AUDIT_REFERENCE_SEED,
    )


def _canary_check(
    data: TrainingData, model: ForgettableModel, *, forget_rows: np.ndarray, p_train: np.ndarray
) -> CanaryCheck:
    """models.audit.canary_check on the candidate's predictions; a model trained without
    canaries passes with a note saying the audit's power is the forget set's alone."""
    if data.canaries is None:
        return CanaryCheck(
            True, {}, CANARY_ALPHA / 2, note="canaries: none (model trained without --canaries)"
        )
    canary_rows = data.canary_rows
    gone = np.intersect1d(canary_rows, forget_rows)
    held = canary_rows[~model.removed[canary_rows]]
    c = data.canaries
    return canary_check(
        forgotten=SplitEval.from_probs(p_train[gone], data.y[gone]),
        held=SplitEval.from_probs(p_train[held], data.y[held]),
        twins=SplitEval.from_probs(model.predict_proba(c.x_twins), c.y_twins),
    )


def audit_rum(
    settings: Settings,
    *,
    dataset: Dataset,
    forget_rows: np.ndarray,
    model: ForgettableModel,
    test_rows: np.ndarray,
    seed: int = 0,
) -> dict[str, Any]:
    """The full audit of models/audit.py for a RUM-unlearned MLP, against shadow references.

    Forget / retain / test accuracy gaps and ToW, loss-MIA AUC (forget vs test rows) and a KS test
    of forget losses, each against reference 0 with its noise floor from reference 1 at the same
    sample sizes (Zhao et al., arXiv 2406.01257, sec. 5; thresholds in models/audit.py).
    `forget_rows` and `model.removed` are positions in the model's training data (the split,
    then its canaries: models.canaries.model_training_data), so the shadows of a model trained
    with canaries are keyed by and trained on that data; `test_rows` are dataset positions of
    the test (non-member) rows still in use: rows their subjects withdrew are neither scored nor
    read from the reference (tasks/erasure.py). Canaries among `forget_rows` are in the
    statistics above and in the canary check (models.audit.canary_check: forgotten canaries vs
    never-trained twins, with the held canaries as its power); its result drives `passed` too."""
    data, test = model_training_data(dataset, model), np.asarray(test_rows, dtype=np.int64)
    x, y = data.x, data.y
    meter = CostMeter()
    with meter.timing(), warehouse.connect(settings) as con:
        ref = features.cached_reference(
            con,
            dataset=dataset.name,
            sample_ids=data.sample_ids.tolist(),
            x=x,
            y=y,
            test_ids=dataset.sample_ids[test].tolist(),
            x_test=dataset.features[test],
            y_test=dataset.labels[test],
            classes=dataset.classes,
            recipe=_audit_recipe(model),
            runs=AUDIT_REFERENCE_RUNS,
            balanced_out_per_row=AUDIT_REFERENCE_OUT_PER_ROW,
            seed=AUDIT_REFERENCE_SEED,
            # forgotten before this run: never trained on again (tasks/erasure.py)
            exclude_rows=np.setdiff1d(np.flatnonzero(model.removed), forget_rows),
        )
    retain = np.flatnonzero(~model.removed)
    train_losses, test_losses = ref.losses()
    reference, twin = shadow_references(
        train_losses=train_losses,
        train_correct=ref.reference.correct,
        member_mask=ref.reference.member_mask,
        test_losses=test_losses,
        test_correct=ref.test_correct,
        forget_rows=forget_rows,
        retain_rows=retain,
        heldout_rows=np.arange(len(test)),
        draws=2,
    )
    # scored on the rows in use only: a withdrawn test row is not even read
    p_train, p_test = model.predict_proba(x), model.predict_proba(dataset.features[test])
    y_test = dataset.labels[test]
    candidate = ModelEval(
        forget=SplitEval.from_probs(p_train[forget_rows], y[forget_rows]),
        retain=SplitEval.from_probs(p_train[retain], y[retain]),
        test=SplitEval.from_probs(p_test, y_test),
        heldout=SplitEval.from_probs(p_test, y_test),
    )
    with meter.timing():
        result = audit_unlearned(candidate, reference, [twin], resamples=AUDIT_RESAMPLES, seed=seed)
    canaries = _canary_check(data, model, forget_rows=forget_rows, p_train=p_train)
    training_run = model.retrain_grad_evals(len(y))
    return {
        "passed": result.passed and canaries.passed,
        "reasons": result.reasons + canaries.reasons,
        "metrics": {**result.metrics, **canaries.metrics},
        "thresholds": {**result.thresholds, "canary_pvalue": canaries.threshold},
        "canaries": canaries.note
        or (
            f"{canaries.metrics['canaries_forgotten']:.0f} forgotten canaries vs "
            f"{canaries.metrics['canary_twins']:.0f} twins never trained on "
            f"(Fisher on hits, Mann-Whitney on losses, each at p >= {canaries.threshold})"
        ),
        "sizes": candidate.sizes(),
        "references": {
            "kind": "shadow MLPs (balanced in/out subsets, step-matched), reference + 1 twin",
            "runs": AUDIT_REFERENCE_RUNS,
            "out_per_row": AUDIT_REFERENCE_OUT_PER_ROW,
            "subset_fraction": 1 - AUDIT_REFERENCE_OUT_PER_ROW / AUDIT_REFERENCE_RUNS,
            "reference_key": ref.key,
            "cached": ref.cached,
            "one_off_grad_evals": ref.reference.grad_evals,
            "one_off_fraction_of_training": ref.reference.grad_evals / training_run,
            "grad_evals_this_run": 0.0 if ref.cached else ref.reference.grad_evals,
        },
        "seconds": meter.seconds,
    }
