"""PCMU (algorithms.md sec. 2) on the real digits data: the quantizer, its exact margins, and
removal that equals training on the retained rows bit for bit in every mode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models.cost import CostMeter
from models.datasets import SAMPLES_PER_SUBJECT, load_digits_dataset
from models.learning_events import LearningEvents
from models.pcmu import (
    PcmuModel,
    PcmuRecipe,
    cohen_radius,
    flip_point,
    margin,
    min_cohen_radius,
    pcmu_check,
    pcmu_retrain_grad_evals,
    pcmu_unlearn,
    pcmu_unlearn_grad_evals,
    quantize,
    quantizer_probabilities,
    train_pcmu,
    worst_case_budget,
)

SEED = 0
# Large steps and a wide dead zone: 7 steps to a fixed point at ~0.72 test accuracy; about one
# digits subject in six passes the data-dependent check, the others flip within the first steps.
COARSE = PcmuRecipe(sigma=0.005, tau=0.01, eta=1.0)
# The default recipe: ~26 steps to a fixed point, ~0.90 test accuracy.
DEFAULT = PcmuRecipe()


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training features, labels and subject ids (row // 4 of the full dataset)."""
    ds = load_digits_dataset()
    rows = ds.train_rows()
    return ds.features[rows], ds.labels[rows], rows // SAMPLES_PER_SUBJECT


@pytest.fixture(scope="module")
def coarse_model(digits) -> PcmuModel:
    x, y, _ = digits
    return train_pcmu(x, y, classes=10, recipe=COARSE, seed=SEED)


def _whole_subjects(subjects: np.ndarray) -> list[np.ndarray]:
    """Training positions of each subject whose 4 rows all fell in the training split."""
    ids, counts = np.unique(subjects, return_counts=True)
    return [np.flatnonzero(subjects == s) for s in ids[counts == SAMPLES_PER_SUBJECT]]


def _retrain(x, y, forget, recipe, meter=None) -> PcmuModel:
    keep = np.setdiff1d(np.arange(len(y)), forget)
    return train_pcmu(x[keep], y[keep], classes=10, recipe=recipe, seed=SEED, meter=meter)


def _assert_same_run(a: PcmuModel, b: PcmuModel) -> None:
    assert torch.equal(a.weights, b.weights)
    assert torch.equal(a.checkpoints, b.checkpoints)
    assert a.n == b.n


# --- the quantizer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sigma", "tau"), [(0.005, 0.005), (0.01, 0.005), (0.002, 0.01), (1.0, 0.5)]
)
def test_quantize_is_the_argmax_of_the_closed_form_probabilities(sigma, tau):
    flip = flip_point(sigma=sigma, tau=tau)
    rng = np.random.default_rng(1)
    g = np.concatenate([np.linspace(-4 * tau, 4 * tau, 2001), rng.normal(0, 2 * tau, 2000)])
    g = g[np.abs(np.abs(g) - flip) > 1e-9 * flip]  # the argmax is a float tie within ulps of g*
    argmax = quantizer_probabilities(g, sigma=sigma, tau=tau).argmax(axis=-1) - 1
    q = quantize(torch.as_tensor(g), flip=flip).numpy()
    assert set(np.unique(q)) == {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(q, argmax)


def test_flip_point_is_where_plus_and_zero_probabilities_tie():
    for sigma, tau in [(0.005, 0.005), (0.01, 0.005), (0.002, 0.01)]:
        flip = flip_point(sigma=sigma, tau=tau)
        p_minus, p_zero, p_plus = quantizer_probabilities(np.array(flip), sigma=sigma, tau=tau)
        assert p_plus == pytest.approx(p_zero, abs=1e-12)
        assert p_minus < p_plus


def test_stored_margins_are_exact_distances_to_the_flip_points(coarse_model):
    recipe, flip = coarse_model.recipe, COARSE.flip_point()
    g = coarse_model.mean_gradients + recipe.m * coarse_model.checkpoints
    dist = margin(g, flip=flip)
    torch.testing.assert_close(coarse_model.margins, dist - coarse_model.slack.view(-1, 1, 1))
    # Move each entry toward its nearest flip point: just short of the margin keeps Q, just past
    # it flips Q. Entries within float resolution of g* are skipped (their margin is ~ulps).
    toward = torch.where(g.abs() > flip, -torch.sign(g), torch.where(g >= 0, 1.0, -1.0))
    ok = dist > 1e-12
    q = quantize(g, flip=flip)
    inside = quantize(g + toward * dist * (1 - 1e-6), flip=flip)
    across = quantize(g + toward * dist * (1 + 1e-6), flip=flip)
    assert int(ok.sum()) > 1000
    assert torch.equal(inside[ok], q[ok])
    assert bool((across[ok] != q[ok]).all())


@pytest.mark.parametrize("recipe", [COARSE, DEFAULT], ids=["coarse", "default"])
def test_min_cohen_radius_equals_the_minimum_over_every_entry(coarse_model, recipe):
    g = (coarse_model.mean_gradients + recipe.m * coarse_model.checkpoints).numpy()
    flip = recipe.flip_point()
    near = flip * np.array([0.0, 0.5, 0.999, 1.0, 1.001, 2.0, 40.0])
    for values in (g, np.concatenate([-near, near]), near[near > flip], near[near <= flip]):
        brute = float(cohen_radius(values, sigma=recipe.sigma, tau=recipe.tau).min())
        fast = min_cohen_radius(values, sigma=recipe.sigma, tau=recipe.tau)
        assert fast == pytest.approx(brute, rel=1e-12, abs=1e-18)


def test_exact_margin_is_never_smaller_than_cohens_radius(coarse_model):
    g = (coarse_model.mean_gradients + COARSE.m * coarse_model.checkpoints).numpy()
    radius = cohen_radius(g, sigma=COARSE.sigma, tau=COARSE.tau)
    dist = margin(torch.as_tensor(g), flip=COARSE.flip_point()).numpy()
    assert (radius > 0).any()
    assert (dist >= radius - 1e-12).all()


# --- removal ------------------------------------------------------------------------------


def test_replay_from_the_first_flip_equals_retraining_on_retained_rows(digits, coarse_model):
    x, y, subjects = digits
    for forget in _whole_subjects(subjects)[:40]:
        result = pcmu_unlearn(coarse_model, x, y, forget, recipe=COARSE)
        if result.mode == "replay" and result.first_flip_step >= 1:
            break
    else:
        pytest.fail("no subject in the first 40 flips after step 0")
    retrain_meter = CostMeter()
    reference = _retrain(x, y, forget, COARSE, retrain_meter)
    _assert_same_run(result.model, reference)
    assert result.certificate["guarantee"] == "exact"
    # Steps before the flip were checked, not recomputed, so the replay is cheaper than a retrain.
    assert result.replay_grad_evals < retrain_meter.grad_evals
    assert result.grad_evals == result.check_grad_evals + result.replay_grad_evals


def test_a_replay_that_rejoins_the_stored_run_resumes_the_check_and_stays_exact(digits):
    x, y, subjects = digits
    recipe = dataclasses.replace(COARSE, eta=0.5)  # weights on a 0.5 lattice: rejoins can happen
    model = train_pcmu(x, y, classes=10, recipe=recipe, seed=SEED)
    for forget in _whole_subjects(subjects)[:60]:
        result = pcmu_unlearn(model, x, y, forget, recipe=recipe)
        if result.rejoins:
            break
    else:
        pytest.fail("no subject in the first 60 rejoins the stored run")
    reference = _retrain(x, y, forget, recipe)
    _assert_same_run(result.model, reference)
    # After rejoining, later steps were checked (|F| each) instead of recomputed (n - |F| each).
    assert result.replayed_steps < reference.steps_run - result.first_flip_step - 1
    # The planner's bound counts those re-checks too (models.pcmu.pcmu_unlearn_grad_evals).
    check = pcmu_check(model, x, y, forget, recipe=recipe)
    _, upper = pcmu_unlearn_grad_evals(model, check, removed=len(forget))
    assert check.first_flip_step == result.first_flip_step
    assert result.grad_evals <= upper


def test_check_pass_means_retraining_gives_the_identical_model(digits, coarse_model):
    x, y, subjects = digits
    for forget in _whole_subjects(subjects)[:60]:
        check = pcmu_check(coarse_model, x, y, forget, recipe=COARSE)
        if check.passed:
            break
    else:
        pytest.fail("no subject in the first 60 passes the check")
    assert check.grad_evals == coarse_model.steps_run * len(forget)
    result = pcmu_unlearn(coarse_model, x, y, forget, recipe=COARSE)
    assert result.mode == "check"
    assert result.grad_evals == check.grad_evals
    assert torch.equal(result.model.weights, coarse_model.weights)
    reference = _retrain(x, y, forget, COARSE)
    _assert_same_run(result.model, reference)
    # The trained model did learn something: several steps, far from its initial weights.
    assert coarse_model.steps_run > 3
    assert float((coarse_model.weights - coarse_model.checkpoints[0]).abs().max()) >= 1.0


def test_a_check_failure_is_confirmed_by_the_retrained_model(digits, coarse_model):
    x, y, subjects = digits
    forget = next(
        f
        for f in _whole_subjects(subjects)
        if not pcmu_check(coarse_model, x, y, f, recipe=COARSE).passed
    )
    reference = _retrain(x, y, forget, COARSE)
    differs = reference.steps_run != coarse_model.steps_run or not torch.equal(
        reference.checkpoints, coarse_model.checkpoints
    )
    # Not implied in general (an uncertain step may not flip), but every failure here is real.
    assert differs


def test_sequential_removals_stay_exact_and_keep_sound_gradient_bounds(digits, coarse_model):
    x, y, subjects = digits
    candidates = _whole_subjects(subjects)[:60]
    first = next(f for f in candidates if pcmu_check(coarse_model, x, y, f, recipe=COARSE).passed)
    step1 = pcmu_unlearn(coarse_model, x, y, first, recipe=COARSE)
    keep1 = np.setdiff1d(np.arange(len(y)), first)
    # Then a subject that flips after step 0, at its positions in the retained arrays.
    for second in candidates:
        second_pos = np.searchsorted(keep1, second)
        if np.isin(second, first).any():
            continue
        step2 = pcmu_unlearn(step1.model, x[keep1], y[keep1], second_pos, recipe=COARSE)
        if step2.mode == "replay" and step2.first_flip_step >= 1:
            break
    else:
        pytest.fail("no second subject flips after step 0")
    assert step1.mode == "check"
    reference = _retrain(x, y, np.concatenate([first, second]), COARSE)
    _assert_same_run(step2.model, reference)
    # The carried gradient estimates are within their slack of the retrained run's own.
    err = (step2.model.mean_gradients - reference.mean_gradients).abs().amax(dim=(1, 2))
    assert bool((err <= step2.model.slack).all())
    assert bool((step2.model.slack < 1e-9).all())


def test_worst_case_budget_is_the_largest_covered_removal_count():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n, clip = int(rng.integers(10, 10_000)), float(rng.uniform(0.1, 2))
        radius = float(rng.uniform(0, 0.5))
        b = worst_case_budget(n=n, radius=radius, clip=clip)
        assert b == 0 or 2 * b * clip / (n - b) < radius
        assert b + 1 >= n or 2 * (b + 1) * clip / (n - b - 1) >= radius
    assert worst_case_budget(n=100, radius=0.0, clip=1.0) == 0


def test_removals_within_the_budget_are_free_and_exact(digits):
    x, y, _ = digits
    # A dead zone wider than any initial mean gradient: a fixed point at step 0 and wide margins.
    wide = PcmuRecipe(sigma=0.01, tau=0.2, eta=0.25, clip=0.05)
    model = train_pcmu(x, y, classes=10, recipe=wide, seed=SEED)
    budget = model.budget()
    assert budget >= 8
    rng = np.random.default_rng(3)
    forget = rng.choice(len(y), size=budget, replace=False)
    # The worst-case bound implies the data-dependent check passes for any such set.
    assert pcmu_check(model, x, y, forget, recipe=wide).passed
    first = pcmu_unlearn(model, x, y, forget[:4], recipe=wide)
    assert (first.mode, first.grad_evals, first.model.removed) == ("budget", 0.0, 4)
    assert first.model.budget() == budget - 4
    keep = np.setdiff1d(np.arange(len(y)), forget[:4])
    _assert_same_run(
        dataclasses.replace(first.model, n=first.model.rows), _retrain(x, y, forget[:4], wide)
    )
    # Past the budget the check runs, widening its slack for the 4 rows absorbed unseen.
    too_many = np.arange(budget)
    second = pcmu_unlearn(first.model, x[keep], y[keep], too_many, recipe=wide)
    assert second.mode in ("check", "replay")
    assert second.check_grad_evals > 0
    _assert_same_run(
        second.model, _retrain(x, y, np.concatenate([forget[:4], keep[too_many]]), wide)
    )


def test_rows_absorbed_by_the_budget_widen_the_later_check(digits):
    # One constant feature, w0 = 0: every row's gradient is +-0.5 (= C) at step 0, the mean is
    # 0.5 (a - b)/n = 0.02 against a flip point at 0.05, so B' = 29 removals are free. Removing 29
    # then 26 rows of label 1 moves it to 0.5 * 95/945 = 0.0503: past the flip, although the 26
    # alone, measured against the original mean, look safe. Only the carried slack catches it.
    n, ones = 1000, 480
    x = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (n, 1))
    y = (np.arange(n) < ones).astype(np.int64)
    recipe = PcmuRecipe(sigma=0.001, tau=0.05, clip=0.5, eta=0.25, steps=5, init_std=0.0)
    model = train_pcmu(x, y, classes=2, recipe=recipe, seed=SEED)
    assert (model.steps_run, model.budget()) == (1, 29)
    first = pcmu_unlearn(model, x, y, np.arange(29), recipe=recipe)
    assert first.mode == "budget"
    x1, y1 = x[29:], y[29:]
    second = pcmu_unlearn(first.model, x1, y1, np.arange(26), recipe=recipe)
    reference = train_pcmu(x[55:], y[55:], classes=2, recipe=recipe, seed=SEED)
    assert reference.steps_run > 1  # the retrained run does move
    assert second.mode == "replay"
    _assert_same_run(second.model, reference)


# --- bookkeeping and validation ---------------------------------------------------------------


def test_training_cost_and_learning_events_cover_every_computed_step(digits):
    x, y, _ = digits
    events, meter = LearningEvents.zeros(len(y)), CostMeter()
    model = train_pcmu(x, y, classes=10, recipe=COARSE, seed=SEED, events=events, meter=meter)
    assert meter.grad_evals == model.steps_run * len(y) == pcmu_retrain_grad_evals(model, n=len(y))
    assert pcmu_retrain_grad_evals(COARSE, n=len(y)) == COARSE.steps * len(y)
    assert bool((events.counts == model.steps_run).all())
    # Stopping at the fixed point is exact: running all T steps gives the same weights.
    full = train_pcmu(
        x, y, classes=10, recipe=dataclasses.replace(COARSE, stop_at_fixed_point=False), seed=SEED
    )
    assert full.steps_run == COARSE.steps > model.steps_run
    assert torch.equal(full.weights, model.weights)


def test_halving_eta_steps_by_powers_of_two_and_replays_stay_exact(digits):
    assert [DEFAULT.step_size(t) for t in (0, 9, 10, 25)] == [0.25] * 4
    halving = dataclasses.replace(COARSE, steps=40, halve_every=10)
    assert [halving.step_size(t) for t in (0, 9, 10, 25, 39)] == [1.0, 1.0, 0.5, 0.25, 0.125]
    x, y, subjects = digits
    model = train_pcmu(x, y, classes=10, recipe=halving, seed=SEED)
    forget = _whole_subjects(subjects)[0]
    result = pcmu_unlearn(model, x, y, forget, recipe=halving)
    assert result.mode == "replay"
    _assert_same_run(result.model, _retrain(x, y, forget, halving))


def test_a_recipe_stored_before_halving_existed_keeps_its_constant_eta():
    from models.pcmu_sisa import DEFAULT_SHARD_PCMU, ShardedPcmuRecipe

    stored = {k: v for k, v in COARSE.as_dict().items() if k != "halve_every"}
    assert PcmuRecipe.from_dict(stored) == COARSE
    sharded = ShardedPcmuRecipe.from_dict({"shards": 4, **stored})
    assert sharded.pcmu == COARSE and sharded.pcmu.halve_every == 0
    # A user's partial override starts from the sharded default, which halves eta.
    assert ShardedPcmuRecipe.from_overrides({"shards": 4}).pcmu == DEFAULT_SHARD_PCMU
    assert DEFAULT_SHARD_PCMU.halve_every > 0


def test_model_round_trips_through_arrays(coarse_model):
    again = PcmuModel.from_arrays(coarse_model.to_arrays(), recipe=COARSE)
    _assert_same_run(again, coarse_model)
    assert torch.equal(again.margins, coarse_model.margins)
    assert (again.removed, again.seed, again.classes) == (0, SEED, 10)
    assert PcmuRecipe.from_dict(COARSE.as_dict()) == COARSE


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"sigma": 0.0}, "sigma"),
        ({"tau": 0.001}, "tau"),
        ({"clip": -1.0}, "clip"),
        ({"eta": 0.0}, "eta"),
        ({"steps": 0}, "steps"),
        ({"m": -0.1}, "m"),
        ({"init_std": float("nan")}, "init_std"),
        ({"halve_every": -1}, "halve_every"),
        ({"halve_every": 2.5}, "halve_every"),
        ({"halve_every": True}, "halve_every"),
    ],
)
def test_invalid_recipe_raises_value_error_naming_the_parameter(digits, change, name):
    x, y, _ = digits
    with pytest.raises(ValueError, match=name):
        train_pcmu(x, y, classes=10, recipe=dataclasses.replace(DEFAULT, **change), seed=SEED)


@pytest.mark.parametrize(
    ("forget", "name"),
    [
        (np.array([], dtype=np.int64), "forget_rows"),
        (np.array([0, 0]), "forget_rows"),
        (np.array([-1]), "forget_rows"),
        (np.array([10**6]), "forget_rows"),
        (np.array([0.5]), "forget_rows"),
    ],
)
def test_invalid_forget_rows_raise_value_error(digits, coarse_model, forget, name):
    x, y, _ = digits
    with pytest.raises(ValueError, match=name):
        pcmu_unlearn(coarse_model, x, y, forget, recipe=COARSE)


def test_wrong_arrays_or_recipe_raise_value_error(digits, coarse_model):
    x, y, _ = digits
    with pytest.raises(ValueError, match="x must be"):
        pcmu_unlearn(coarse_model, x[1:], y[1:], np.array([0]), recipe=COARSE)
    with pytest.raises(ValueError, match="recipe"):
        pcmu_check(coarse_model, x, y, np.array([0]), recipe=DEFAULT)
    with pytest.raises(ValueError, match="y must"):
        train_pcmu(x, y + 10, classes=10, recipe=COARSE, seed=SEED)
