"""SISA (Bourtoule et al., arXiv 1912.03817, sec. IV): exactness, locality, cost and accuracy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from models.cost import CostMeter
from models.datasets import Dataset, load_breast_cancer_dataset, load_digits_dataset
from models.sisa import (
    SisaModel,
    SisaRecipe,
    assign_shards_and_slices,
    sisa_accuracy,
    sisa_predict_proba,
    sisa_retrain_grad_evals,
    sisa_unlearn,
    train_sisa,
)

# Small enough to keep the module fast; the accuracy test uses the default recipe.
FAST = SisaRecipe(shards=5, slices=4, epochs_per_slice=2, batch_size=32)
SEED = 7


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The CI box is shared: two intra-op threads on tiny matmuls oversubscribe and run ~8x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits_dataset()


@pytest.fixture(scope="module")
def train_xy(digits: Dataset) -> tuple[np.ndarray, np.ndarray]:
    rows = digits.train_rows()
    return digits.features[rows], digits.labels[rows]


@pytest.fixture(scope="module")
def trained(train_xy: tuple[np.ndarray, np.ndarray]) -> SisaModel:
    x, y = train_xy
    return train_sisa(x, y, classes=10, recipe=FAST, seed=SEED)


def _forget_set(model: SisaModel) -> np.ndarray:
    """Four rows of one subject plus a slice-0 row (restart from zero weights) and a last-slice row
    of other shards, so every restart branch runs."""
    subject = np.arange(40, 44)
    shard_a = model.shard_of_row[subject[0]]
    others = (model.shard_of_row != shard_a) & (model.shard_of_row >= 0)
    first_slice = np.flatnonzero(others & (model.slice_of_row == 0))[0]
    shard_b = model.shard_of_row[first_slice]
    last_slice = np.flatnonzero(
        others & (model.shard_of_row != shard_b) & (model.slice_of_row == FAST.slices - 1)
    )[0]
    return np.concatenate([subject, [first_slice, last_slice]])


def _assert_models_identical(a: SisaModel, b: SisaModel) -> None:
    assert torch.equal(a.slice_checkpoints, b.slice_checkpoints)
    assert torch.equal(a.shard_weights, b.shard_weights)
    np.testing.assert_array_equal(a.shard_of_row, b.shard_of_row)
    np.testing.assert_array_equal(a.slice_of_row, b.slice_of_row)
    np.testing.assert_array_equal(a.removed, b.removed)
    assert a.weights_sha256() == b.weights_sha256()


def test_unlearning_equals_training_from_scratch_without_the_rows_bit_for_bit(trained, train_xy):
    x, y = train_xy
    forget = _forget_set(trained)
    result = sisa_unlearn(trained, x, y, forget, recipe=FAST, seed=SEED)
    scratch = train_sisa(x, y, classes=10, recipe=FAST, seed=SEED, exclude_rows=forget)
    _assert_models_identical(result.model, scratch)
    assert 0 in result.restarted_from_slice.values()  # the zero-weights restart was exercised
    assert FAST.slices - 1 in result.restarted_from_slice.values()


def test_unlearned_model_does_not_depend_on_the_forgotten_rows_contents(trained, train_xy):
    x, y = train_xy
    forget = _forget_set(trained)
    result = sisa_unlearn(trained, x, y, forget, recipe=FAST, seed=SEED)
    # Scribble over the forgotten rows: a from-scratch run that never reads them must not care.
    x_scrambled, y_scrambled = x.copy(), y.copy()
    x_scrambled[forget] = np.random.default_rng(0).normal(size=x[forget].shape).astype(x.dtype)
    y_scrambled[forget] = (y[forget] + 3) % 10
    scratch = train_sisa(
        x_scrambled, y_scrambled, classes=10, recipe=FAST, seed=SEED, exclude_rows=forget
    )
    _assert_models_identical(result.model, scratch)


def test_sequential_requests_match_scratch_and_repeated_requests_cost_nothing(trained, train_xy):
    x, y = train_xy
    first, second = np.arange(0, 4), np.arange(100, 104)
    step1 = sisa_unlearn(trained, x, y, first, recipe=FAST, seed=SEED)
    step2 = sisa_unlearn(step1.model, x, y, second, recipe=FAST, seed=SEED)
    scratch = train_sisa(
        x, y, classes=10, recipe=FAST, seed=SEED, exclude_rows=np.concatenate([first, second])
    )
    _assert_models_identical(step2.model, scratch)
    again = sisa_unlearn(step2.model, x, y, first, recipe=FAST, seed=SEED)
    assert again.affected_shards == ()
    assert again.grad_evals == 0.0
    _assert_models_identical(again.model, step2.model)


def test_unlearning_changes_only_affected_shards_from_their_restart_slice(trained, train_xy):
    x, y = train_xy
    forget = np.arange(40, 44)
    result = sisa_unlearn(trained, x, y, forget, recipe=FAST, seed=SEED)
    assert set(result.affected_shards) == set(trained.shard_of_row[forget].tolist())
    assert len(result.affected_shards) < FAST.shards  # otherwise the check below proves nothing
    for s in range(FAST.shards):
        old, new = trained.slice_checkpoints[s], result.model.slice_checkpoints[s]
        if s not in result.affected_shards:
            assert torch.equal(old, new), f"unaffected shard {s} changed"
            continue
        r0 = result.restarted_from_slice[s]
        assert r0 == trained.slice_of_row[forget][trained.shard_of_row[forget] == s].min()
        assert torch.equal(old[:r0], new[:r0]), f"shard {s} changed before slice {r0}"
        assert not torch.equal(old[-1], new[-1]), f"affected shard {s} was not retrained"
    assert not result.model.removed[np.setdiff1d(np.arange(len(y)), forget)].any()
    assert (result.model.shard_of_row[forget] == -1).all()
    assert not trained.removed.any()  # the input model is left untouched


def test_unlearning_grad_evals_are_counted_exactly_and_below_full_sisa_retrain(trained, train_xy):
    x, y = train_xy
    forget = np.arange(40, 44)
    meter = CostMeter()
    result = sisa_unlearn(trained, x, y, forget, recipe=FAST, seed=SEED, meter=meter)
    # Independent count: slice r of an affected shard re-visits its retained slices 0..r.
    model = result.model
    expected = 0
    for s, r0 in result.restarted_from_slice.items():
        for r in range(r0, FAST.slices):
            seen = (model.shard_of_row == s) & (model.slice_of_row <= r)
            expected += FAST.epochs_per_slice * int(seen.sum())
    assert result.grad_evals == expected == meter.grad_evals
    retained = int((~model.removed).sum())
    assert result.grad_evals < sisa_retrain_grad_evals(FAST, n=retained)
    assert result.certificate["guarantee"] == "exact"
    assert result.certificate["grad_evals"] == expected
    assert result.certificate["weights_sha256"] == model.weights_sha256()


def test_training_meter_matches_the_full_retrain_cost_formula(train_xy):
    x, y = train_xy
    recipe = replace(FAST, shards=3, slices=5)
    meter = CostMeter()
    train_sisa(x, y, classes=10, recipe=recipe, seed=SEED, meter=meter)
    assert meter.grad_evals == sisa_retrain_grad_evals(recipe, n=len(y))


def test_assignment_is_balanced_and_seeded():
    shard, slc = assign_shards_and_slices(103, shards=5, slices=4, seed=1)
    sizes = np.bincount(shard, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for s in range(5):
        slice_sizes = np.bincount(slc[shard == s], minlength=4)
        assert slice_sizes.max() - slice_sizes.min() <= 1
    again, _ = assign_shards_and_slices(103, shards=5, slices=4, seed=1)
    other, _ = assign_shards_and_slices(103, shards=5, slices=4, seed=2)
    np.testing.assert_array_equal(shard, again)
    assert not np.array_equal(shard, other)


def test_sisa_on_digits_is_accurate_with_the_default_recipe(digits):
    # Measured 0.922-0.933 over seeds 0-4 (5 shards, 4 slices); one monolithic model gets ~0.945.
    tr, te = digits.train_rows(), digits.test_rows()
    model = train_sisa(
        digits.features[tr], digits.labels[tr], classes=10, recipe=SisaRecipe(), seed=0
    )
    assert sisa_accuracy(model, digits.features[te], digits.labels[te]) > 0.90


def test_binary_unlearning_is_exact_and_accurate():
    ds = load_breast_cancer_dataset()
    tr, te = ds.train_rows(), ds.test_rows()
    x, y = ds.features[tr], ds.labels[tr]
    recipe = replace(FAST, shards=3, slices=3)
    model = train_sisa(x, y, classes=2, recipe=recipe, seed=SEED)
    forget = np.arange(8, 12)
    result = sisa_unlearn(model, x, y, forget, recipe=recipe, seed=SEED)
    scratch = train_sisa(x, y, classes=2, recipe=recipe, seed=SEED, exclude_rows=forget)
    _assert_models_identical(result.model, scratch)
    assert sisa_accuracy(result.model, ds.features[te], ds.labels[te]) > 0.90


def test_prediction_averages_probabilities_of_shards_that_still_hold_rows(trained, train_xy):
    x, y = train_xy
    shard0 = np.flatnonzero(trained.shard_of_row == 0)
    emptied = sisa_unlearn(trained, x, y, shard0, recipe=FAST, seed=SEED).model
    assert 0 not in emptied.active_shards()
    probs = sisa_predict_proba(emptied, x[:5])
    manual = torch.stack(
        [
            torch.softmax(torch.as_tensor(x[:5], dtype=torch.float64) @ emptied.shard_weights[s], 1)
            for s in range(1, FAST.shards)
        ]
    ).mean(0)
    torch.testing.assert_close(probs, manual, rtol=0, atol=1e-12)
    torch.testing.assert_close(probs.sum(1), torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shards", 0),
        ("slices", 0),
        ("slices", 10_000),
        ("epochs_per_slice", 0),
        ("batch_size", 0),
        ("lr", -0.1),
        ("lr", float("nan")),
        ("m", -1.0),
        ("clip", 0.0),
    ],
)
def test_invalid_recipe_parameters_raise_naming_the_parameter(train_xy, field, value):
    x, y = train_xy
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        train_sisa(x, y, classes=10, recipe=replace(FAST, **{field: value}), seed=SEED)


def test_invalid_call_arguments_raise_naming_the_argument(trained, train_xy):
    x, y = train_xy
    with pytest.raises(ValueError, match="seed"):
        train_sisa(x, y, classes=10, recipe=FAST, seed=-1)
    with pytest.raises(ValueError, match="classes"):
        train_sisa(x, y, classes=1, recipe=FAST, seed=SEED)
    with pytest.raises(ValueError, match="forget_rows"):
        sisa_unlearn(trained, x, y, np.array([len(y)]), recipe=FAST, seed=SEED)
    with pytest.raises(ValueError, match="forget_rows"):
        sisa_unlearn(trained, x, y, np.array([0.5]), recipe=FAST, seed=SEED)
    with pytest.raises(ValueError, match="recipe"):
        sisa_unlearn(trained, x, y, [0], recipe=replace(FAST, shards=4), seed=SEED)
    with pytest.raises(ValueError, match="seed"):
        sisa_unlearn(trained, x, y, [0], recipe=FAST, seed=SEED + 1)
    with pytest.raises(ValueError, match="x and y"):
        sisa_unlearn(trained, x[:-1], y[:-1], [0], recipe=FAST, seed=SEED)
