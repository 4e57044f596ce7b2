"""Full retrain (algorithms.md sec. 4): same (data, keep_rows, recipe, seed), same weight bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from models.cost import CostMeter
from models.datasets import load_digits_dataset
from models.learning_events import LearningEvents
from models.logreg import accuracy
from models.pnsgd import PnsgdRecipe
from models.retrain import retrain_pnsgd
from models.weights import state_sha256

RECIPE = PnsgdRecipe(batch_size=32, epochs=3)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The CI box is shared: two intra-op threads on tiny matmuls oversubscribe and run ~8x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ds = load_digits_dataset()
    tr, te = ds.train_rows(), ds.test_rows()
    return ds.features[tr], ds.labels[tr], ds.features[te], ds.labels[te]


def _raw_sha256(w: torch.Tensor) -> str:
    return hashlib.sha256(w.contiguous().numpy().tobytes()).hexdigest()


def test_same_seed_replays_identical_weight_bytes_and_another_seed_does_not(data):
    x, y, x_test, y_test = data
    keep = np.setdiff1d(np.arange(len(y)), np.arange(40, 44))
    a = retrain_pnsgd(x, y, classes=10, recipe=RECIPE, seed=3, keep_rows=keep)
    b = retrain_pnsgd(x, y, classes=10, recipe=RECIPE, seed=3, keep_rows=keep)
    c = retrain_pnsgd(x, y, classes=10, recipe=RECIPE, seed=4, keep_rows=keep)
    assert torch.equal(a, b)
    assert _raw_sha256(a) == _raw_sha256(b)
    assert state_sha256({"w": a.numpy()}) == state_sha256({"w": b.numpy()})
    assert not torch.equal(a, c)
    assert state_sha256({"w": a.numpy()}) != state_sha256({"w": c.numpy()})
    # Replaying a broken model would be pointless: it must actually have learned digits.
    assert accuracy(a, torch.as_tensor(x_test, dtype=torch.float64), torch.as_tensor(y_test)) > 0.8


def test_retrain_depends_on_the_retained_set_not_on_how_it_is_listed(data):
    x, y, _, _ = data
    keep = np.setdiff1d(np.arange(len(y)), np.arange(40, 44))
    mask = np.ones(len(y), dtype=bool)
    mask[40:44] = False
    listed = retrain_pnsgd(x, y, classes=10, recipe=RECIPE, seed=3, keep_rows=keep[::-1])
    masked = retrain_pnsgd(x, y, classes=10, recipe=RECIPE, seed=3, keep_rows=mask)
    assert torch.equal(listed, masked)
    # The forgotten rows' contents cannot matter: scramble them and get the same bytes.
    x2, y2 = x.copy(), y.copy()
    x2[40:44], y2[40:44] = x2[::-1][:4], (y2[40:44] + 1) % 10
    assert torch.equal(
        listed, retrain_pnsgd(x2, y2, classes=10, recipe=RECIPE, seed=3, keep_rows=mask)
    )
    everything = retrain_pnsgd(x, y, classes=10, recipe=RECIPE, seed=3, keep_rows=np.arange(len(y)))
    assert not torch.equal(listed, everything)


def test_retrain_costs_epochs_times_retained_rows_and_maps_events_to_original_rows(data):
    x, y, _, _ = data
    keep = np.arange(0, len(y), 2)
    meter, events = CostMeter(), LearningEvents.zeros(len(y))
    retrain_pnsgd(
        x, y, classes=10, recipe=RECIPE, seed=3, keep_rows=keep, events=events, meter=meter
    )
    assert meter.grad_evals == RECIPE.epochs * len(keep)
    counts = events.counts.numpy()
    assert (counts[keep] == RECIPE.epochs).all()
    assert (np.delete(counts, keep) == 0).all()


@pytest.mark.parametrize(
    ("keep_rows", "match"),
    [
        (np.array([], dtype=np.int64), "keep_rows"),
        (np.array([0, 0, 1]), "keep_rows"),
        (np.array([-1, 2]), "keep_rows"),
        (np.array([0.5, 1.0]), "keep_rows"),
        (np.ones(3, dtype=bool), "keep_rows"),
    ],
)
def test_invalid_keep_rows_raise_naming_keep_rows(data, keep_rows, match):
    x, y, _, _ = data
    with pytest.raises(ValueError, match=match):
        retrain_pnsgd(x, y, classes=10, recipe=RECIPE, seed=3, keep_rows=keep_rows)


def test_invalid_recipe_raises_naming_the_parameter(data):
    x, y, _, _ = data
    bad = PnsgdRecipe(batch_size=32, epochs=0)
    with pytest.raises(ValueError, match="epochs"):
        retrain_pnsgd(x, y, classes=10, recipe=bad, seed=3, keep_rows=np.arange(len(y)))


@pytest.mark.parametrize(
    ("recipe_name", "overrides"),
    [
        ("mlp", {"epochs": 2, "hidden": 16}),
        ("pcmu", {"steps": 5}),
        ("pcmu-sisa", {"shards": 4, "steps": 5}),
        ("pnsgd", {"epochs": 2}),
        ("sisa", {"shards": 2, "slices": 2, "epochs_per_slice": 1}),
    ],
)
def test_every_retrain_records_learning_events_from_the_probabilities_it_computes(
    recipe_name, overrides
):
    """A retrain's events describe the retained rows only (the new version's own proxies)."""
    from models.planner import Candidate, ModelLedger, Plan
    from models.training import train_model
    from models.unlearning import execute

    ds = load_digits_dataset()
    run = train_model(ds, recipe_name=recipe_name, seed=0, overrides=overrides)
    tr = ds.train_rows()
    forget = np.array([3, 17, 400])
    retrain = Candidate(
        path="retrain", guarantee="exact", predicted_grad_evals=0, predicted_seconds=0
    )
    done = execute(
        Plan(chosen=retrain, candidates=[retrain], why="test"),
        run.model,
        ds.features[tr],
        ds.labels[tr],
        forget,
        ledger=ModelLedger(lineage=run.model.lineage),
        seed=1,
    )
    counts = done.events.counts.numpy()
    assert (counts[forget] == 0).all() and (np.delete(counts, forget) > 0).all()
    if recipe_name in ("mlp", "pnsgd"):  # one look per epoch as in training (PCMU may stop early)
        kept_train = np.delete(run.events.counts.numpy(), forget)
        assert np.array_equal(np.delete(counts, forget), kept_train)
    conf = done.events.proxies()["confidence"]
    assert np.isnan(conf[forget]).all() and np.isfinite(np.delete(conf, forget)).all()
    assert not np.allclose(
        np.delete(conf, forget), np.delete(run.events.proxies()["confidence"], forget)
    )
