"""A model trained after an erasure never learns the erased subjects (GDPR art. 17(1)).

The unit tests train real torch models on the digits data with rows excluded and compare them to
the retrain path (models.unlearning._retrain) on the same kept rows and seed: the same bytes. The
flow test runs real Prefect flows (tests/conftest.py harness) with real MLflow SQLite and DuckDB:
model A forgets a subject, then model B is trained on the same dataset and must be born having
forgotten them, with the ledger, certificate and `forgetflow audit` saying so."""

from __future__ import annotations

import numpy as np
import pytest

from models.datasets import load_dataset
from models.learning_events import LearningEvents
from models.planner import ModelLedger
from models.training import train_model
from models.unlearning import _retrain

# Recipes shrunk so each trains in about a second on digits; the equality does not depend on size.
SMALL = {
    "mlp": {"hidden": 16, "epochs": 3},
    "pnsgd": {"epochs": 3},
    "sisa": {"shards": 3, "slices": 2, "epochs_per_slice": 2},
    "pcmu": {"steps": 20},
    "pcmu-sisa": {"shards": 4, "steps": 20},
}


def _excluded(ds) -> np.ndarray:
    """Training-split positions of two subjects' rows (what an applied erasure leaves out)."""
    subjects = ds.subject_ids[ds.train_rows()]
    return np.flatnonzero(np.isin(subjects, ["subject-3", "subject-17"]))


def _proxies_equal(a: LearningEvents, b: LearningEvents) -> None:
    pa, pb = a.proxies(), b.proxies()
    assert pa.keys() == pb.keys()
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)
    np.testing.assert_array_equal(a.counts.numpy(), b.counts.numpy())


@pytest.mark.parametrize("recipe", ["mlp", "pnsgd", "sisa", "pcmu", "pcmu-sisa"])
def test_training_with_exclusions_equals_the_retrain_of_the_kept_rows(recipe: str) -> None:
    ds = load_dataset("digits")
    rows = ds.train_rows()
    x, y = ds.features[rows], ds.labels[rows]
    out = _excluded(ds)
    assert len(out) >= 4
    run = train_model(ds, recipe_name=recipe, seed=7, overrides=SMALL[recipe], exclude_rows=out)
    model = run.model
    np.testing.assert_array_equal(np.flatnonzero(model.removed), out)
    assert model.n_retained == len(rows) - len(out)
    # no learning event was recorded on an excluded row: the fit never read them
    assert run.events.counts.numpy()[out].sum() == 0
    assert run.events.counts.numpy()[~model.removed].min() > 0

    # The retrain path, from the same recipe with nothing removed yet, keeping the same rows.
    keep = ~model.removed
    fresh = type(model)(
        recipe_name=model.recipe_name,
        lineage=model.lineage,
        classes=model.classes,
        recipe=model.recipe,
        arrays=model.arrays,
        removed=np.zeros(len(y), dtype=bool),
        seed=model.seed,
    )
    retrained = _retrain(fresh, x, y, keep, ModelLedger(lineage=model.lineage), 7, None)
    assert retrained.model.arrays.keys() == model.arrays.keys()
    for name, arr in model.arrays.items():
        np.testing.assert_array_equal(arr, retrained.model.arrays[name], err_msg=name)
    np.testing.assert_array_equal(retrained.model.removed, model.removed)
    assert retrained.cost.grad_evals == run.cost.grad_evals
    _proxies_equal(run.events, retrained.events)


@pytest.mark.parametrize("recipe", ["mlp", "pnsgd", "sisa"])
def test_excluded_rows_change_the_model_and_no_exclusion_changes_nothing(recipe: str) -> None:
    """Guards against an exclusion that is silently ignored (the first test would then compare
    two full trainings only if _retrain ignored `keep` too)."""
    ds = load_dataset("digits")
    full = train_model(ds, recipe_name=recipe, seed=7, overrides=SMALL[recipe])
    empty = train_model(
        ds, recipe_name=recipe, seed=7, overrides=SMALL[recipe], exclude_rows=np.array([], int)
    )
    cut = train_model(
        ds, recipe_name=recipe, seed=7, overrides=SMALL[recipe], exclude_rows=_excluded(ds)
    )
    assert not full.model.removed.any() and not empty.model.removed.any()
    for name, arr in full.model.arrays.items():
        np.testing.assert_array_equal(arr, empty.model.arrays[name], err_msg=name)
    weights = (
        "weights.0" if recipe == "mlp" else "weights" if recipe == "pnsgd" else "shard_weights"
    )
    assert not np.array_equal(full.model.arrays[weights], cut.model.arrays[weights])


def test_exclusions_are_checked() -> None:
    ds = load_dataset("digits")
    n = len(ds.train_rows())
    with pytest.raises(ValueError, match="positions in"):
        train_model(ds, recipe_name="pnsgd", seed=0, exclude_rows=np.array([n]))
    with pytest.raises(ValueError, match="nothing to train on"):
        train_model(ds, recipe_name="pnsgd", seed=0, exclude_rows=np.arange(n))
