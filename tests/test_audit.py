"""The audit ladder on real digits data with canaries, plus the statistics it is built from."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import beta

from models.audit import (
    STATISTICS,
    AuditResult,
    ModelEval,
    SplitEval,
    audit_unlearned,
    canary_world,
    empirical_epsilon_lower_bound,
    inject_canaries,
    ks_loss_test,
    loss_mia_auc,
    noise_floor,
    tow,
)
from models.datasets import load_digits_dataset
from models.mlp import MlpRecipe, predict_proba, train_mlp

RECIPE = MlpRecipe(hidden=128, epochs=30, batch_size=32, lr=0.01)
CANARIES = 40
DELTA = 1e-5


@pytest.fixture(scope="module")
def world():
    """Digits with 40 training canaries (the forget set) and 40 held-out canaries (non-members)."""
    ds = load_digits_dataset()
    tr, te = ds.train_rows(), ds.test_rows()
    w = canary_world(
        ds.features[tr],
        ds.labels[tr],
        ds.features[te],
        ds.labels[te],
        classes=10,
        canaries=CANARIES,
        seed=11,
    )

    def evaluate(model) -> ModelEval:
        return w.evaluate(lambda xs: predict_proba(model, xs))

    original = train_mlp(w.x, w.y, classes=10, recipe=RECIPE, seed=100)
    retrains = [
        train_mlp(w.x[w.retain], w.y[w.retain], classes=10, recipe=RECIPE, seed=s) for s in range(3)
    ]
    return {
        "original": evaluate(original),
        "reference": evaluate(retrains[0]),
        "twin": evaluate(retrains[1]),
        "candidate": evaluate(retrains[2]),
    }


def test_retrain_passes_audit_against_retrain_with_other_seed(world):
    result = audit_unlearned(world["candidate"], world["reference"], [world["twin"]])
    assert result.passed, result.reasons
    assert result.reasons == []
    for name in STATISTICS:
        assert result.metrics[name] <= result.thresholds[name]
        assert f"{name}_floor" in result.metrics


def test_original_model_fails_audit_on_canaries(world):
    result = audit_unlearned(world["original"], world["reference"], [world["twin"]])
    assert not result.passed
    failed = {reason.split(" ")[0] for reason in result.reasons}
    assert {"mia_auc_gap", "ks_forget"} <= failed
    assert result.metrics["mia_auc"] > 0.85  # canaries were memorised...
    assert (
        abs(result.metrics["mia_auc_reference"] - 0.5) < 0.15
    )  # ...and the retrain never saw them


def test_epsilon_bound_exceeds_small_claim_for_model_trained_on_canaries(world):
    original = world["original"]
    eps_lb = empirical_epsilon_lower_bound(
        member_scores=-original.forget.losses,
        nonmember_scores=-original.heldout.losses,
        delta=DELTA,
    )
    assert eps_lb > 1.0
    result = audit_unlearned(
        original, world["reference"], [world["twin"]], claimed_epsilon=1.0, delta=DELTA
    )
    assert any(r.startswith("epsilon_lower_bound") for r in result.reasons)


def test_epsilon_bound_stays_small_for_model_retrained_without_canaries(world):
    for key in ("reference", "twin", "candidate"):
        e = world[key]
        eps_lb = empirical_epsilon_lower_bound(
            member_scores=-e.forget.losses, nonmember_scores=-e.heldout.losses, delta=DELTA
        )
        assert eps_lb < 0.5, key
    result = audit_unlearned(
        world["candidate"], world["reference"], [world["twin"]], claimed_epsilon=1.0, delta=DELTA
    )
    assert result.passed, result.reasons


def test_noise_floor_is_zero_for_identical_oracles_and_positive_for_different_ones(world):
    ref = world["reference"]
    mia_gap = STATISTICS["mia_auc_gap"]
    assert noise_floor(mia_gap, ref, [ref], resamples=50) == 0.0
    assert noise_floor(mia_gap, ref, [world["twin"]], resamples=50) > 0.0
    assert noise_floor(mia_gap, ref, [], resamples=50) > 0.0  # bootstrap-only: sampling spread


def test_epsilon_bound_matches_clopper_pearson_closed_form_when_perfectly_separated():
    n = 100
    members, nonmembers = np.linspace(1, 2, n), np.linspace(-2, -1, n)
    upper = 1 - (1 - 0.95) ** (1 / n)  # Clopper-Pearson upper bound with 0 errors
    assert upper == pytest.approx(beta.ppf(0.95, 1, n))
    expected = math.log((1 - DELTA - upper) / upper)
    got = empirical_epsilon_lower_bound(
        member_scores=members, nonmember_scores=nonmembers, delta=DELTA
    )
    assert got == pytest.approx(expected)


def test_epsilon_bound_decreases_with_confidence_and_grows_with_sample_size():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(2.0, 1.0, 200), rng.normal(0.0, 1.0, 200)
    bounds = [
        empirical_epsilon_lower_bound(
            member_scores=members, nonmember_scores=nonmembers, delta=DELTA, confidence=c
        )
        for c in (0.5, 0.8, 0.95, 0.99, 0.999)
    ]
    assert all(a > b for a, b in itertools.pairwise(bounds))
    small = empirical_epsilon_lower_bound(
        member_scores=members[:20], nonmember_scores=nonmembers[:20], delta=DELTA
    )
    assert small < bounds[2]


def test_epsilon_bound_is_zero_for_indistinguishable_scores():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=100)
    assert (
        empirical_epsilon_lower_bound(member_scores=scores, nonmember_scores=scores, delta=DELTA)
        == 0.0
    )


def test_loss_mia_auc_extremes():
    losses = np.array([0.1, 0.2, 0.3])
    assert loss_mia_auc(losses, losses) == pytest.approx(0.5)
    assert loss_mia_auc(losses, losses + 10) == pytest.approx(1.0)
    assert loss_mia_auc(losses + 10, losses) == pytest.approx(0.0)


def test_tow_is_one_for_the_reference_and_multiplies_gaps():
    same = dict(forget_acc=0.8, retain_acc=0.99, test_acc=0.95)
    ref = dict(ref_forget_acc=0.8, ref_retain_acc=0.99, ref_test_acc=0.95)
    assert tow(**same, **ref) == pytest.approx(1.0)
    assert tow(forget_acc=1.0, retain_acc=0.9, test_acc=0.95, **ref) == pytest.approx(
        0.8 * 0.91 * 1.0
    )
    with pytest.raises(ValueError, match="retain_acc"):
        tow(forget_acc=1.0, retain_acc=1.5, test_acc=0.9, **ref)


def test_ks_test_separates_shifted_losses_only():
    rng = np.random.default_rng(2)
    a = rng.exponential(size=300)
    stat_same, p_same = ks_loss_test(a, rng.exponential(size=300))
    stat_shift, p_shift = ks_loss_test(a, rng.exponential(size=300) + 1.0)
    assert p_same > 0.01 > p_shift
    assert stat_shift > stat_same


def test_inject_canaries_moves_only_the_given_rows_to_another_class():
    y = np.repeat(np.arange(10), 20)
    rows = np.array([0, 5, 50, 199])
    out = inject_canaries(y, rows=rows, classes=10, seed=3)
    assert np.all(out[rows] != y[rows])
    assert np.all((out >= 0) & (out < 10))
    keep = np.setdiff1d(np.arange(len(y)), rows)
    assert np.array_equal(out[keep], y[keep])
    assert np.array_equal(out, inject_canaries(y, rows=rows, classes=10, seed=3))
    assert y[0] == 0  # input untouched


def test_invalid_parameters_name_themselves():
    y = np.zeros(5, dtype=np.int64)
    with pytest.raises(ValueError, match="rows"):
        inject_canaries(y, rows=np.array([7]), classes=2, seed=0)
    with pytest.raises(ValueError, match="classes"):
        inject_canaries(y, rows=np.array([1]), classes=1, seed=0)
    with pytest.raises(ValueError, match="confidence"):
        empirical_epsilon_lower_bound(
            member_scores=np.ones(3), nonmember_scores=np.ones(3), delta=0.0, confidence=1.0
        )
    with pytest.raises(ValueError, match="delta"):
        empirical_epsilon_lower_bound(
            member_scores=np.ones(3), nonmember_scores=np.ones(3), delta=1.0
        )
    with pytest.raises(ValueError, match="member_losses"):
        loss_mia_auc(np.array([]), np.ones(3))
    e = SplitEval(np.ones(4), np.ones(4, dtype=bool))
    model = ModelEval(e, e, e, e)
    with pytest.raises(ValueError, match="tolerances"):
        audit_unlearned(model, model, tolerances={"nope": 0.1})
    with pytest.raises(ValueError, match="delta"):
        audit_unlearned(model, model, claimed_epsilon=1.0)
    assert isinstance(audit_unlearned(model, model, resamples=5), AuditResult)
