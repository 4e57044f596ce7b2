"""Memorisation proxies and the subset-model reference on real digits data (small K for speed)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from models.audit import shadow_references
from models.cost import CostMeter
from models.datasets import load_digits_dataset
from models.learning_events import PROXIES, LearningEvents
from models.memorization import (
    ProxyScores,
    ReferenceMemorisation,
    balanced_member_rows,
    curvature_proxy,
    holdout_retraining_proxy,
    learning_event_proxies,
    memorisation_from_runs,
    orient,
    proxy_spearman,
    subset_memorisation,
    symmetric_kl,
)
from models.mlp import MlpEnsemble, MlpRecipe, accuracy, fit_ensemble, train_mlp

RECIPE = MlpRecipe(hidden=128, epochs=30, batch_size=32, lr=0.01)
TEST_RUNS = 16  # the benchmark uses 100; 16 keeps this file well under 30 s
CHECKPOINT_EVERY_EPOCHS = 10


@pytest.fixture(scope="module")
def digits():
    ds = load_digits_dataset()
    tr, te = ds.train_rows(), ds.test_rows()
    return ds.features[tr], ds.labels[tr], ds.features[te], ds.labels[te]


@pytest.fixture(scope="module")
def reference(digits) -> ReferenceMemorisation:
    x, y, _, _ = digits
    return subset_memorisation(x, y, classes=10, recipe=RECIPE, runs=TEST_RUNS, seed=0)


@pytest.fixture(scope="module")
def trained(digits):
    x, y, _, _ = digits
    events = LearningEvents.zeros(len(y))
    checkpoints: list[MlpEnsemble] = []
    meter = CostMeter()

    def keep(epoch: int, model: MlpEnsemble) -> None:
        if epoch % CHECKPOINT_EVERY_EPOCHS == 0:
            checkpoints.append(copy.deepcopy(model))

    model = train_mlp(
        x, y, classes=10, recipe=RECIPE, seed=5, events=events, meter=meter, on_epoch_end=keep
    )
    return model, events, checkpoints, meter


def test_training_loop_feeds_learning_events_once_per_row_per_epoch(digits, trained):
    _, y, xt, yt = digits
    model, events, checkpoints, meter = trained
    assert torch.equal(events.counts, torch.full((len(y),), RECIPE.epochs))
    assert meter.grad_evals == RECIPE.epochs * len(y)
    assert len(checkpoints) == RECIPE.epochs // CHECKPOINT_EVERY_EPOCHS
    assert accuracy(model, xt, yt) > 0.95


def test_ensemble_members_train_independently_of_each_other(digits):
    x, y, _, _ = digits
    recipe = MlpRecipe(hidden=16, epochs=2, batch_size=16)
    rows_a = np.stack([np.arange(0, 200), np.arange(200, 400)])
    rows_b = np.stack([np.arange(0, 200), np.arange(600, 800)])  # member 1 sees other data
    runs = []
    for rows in (rows_a, rows_b):
        ens = MlpEnsemble(dim=x.shape[1], classes=10, hidden=16, members=2, seed=3)
        runs.append(fit_ensemble(ens, x, y, member_rows=rows, recipe=recipe, seed=4))
    for p_a, p_b in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        assert torch.allclose(p_a[0], p_b[0], atol=1e-6)
        assert not torch.allclose(p_a[1], p_b[1], atol=1e-3)


def test_estimator_is_mean_correctness_in_minus_out():
    correct = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]], dtype=bool)
    member = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 1], [0, 0, 1]], dtype=bool)
    mem = memorisation_from_runs(correct, member)
    assert mem[0] == pytest.approx(1.0 - 0.5)  # in: runs 0,1 (1,1); out: runs 2,3 (0,1)
    assert mem[1] == pytest.approx(1.0 - 0.5)  # in: runs 0,2 (1,1); out: runs 1,3 (0,1)
    assert math.isnan(mem[2])  # in every run: no out-estimate


def test_reference_memorisation_is_reliable_and_concentrated_on_few_rows(reference):
    finite = reference.scores[np.isfinite(reference.scores)]
    assert finite.size > 0.99 * reference.scores.size
    assert reference.member_mask.mean() == pytest.approx(0.7, abs=0.01)
    split_half, _ = reference.split_half_reliability()
    assert split_half > 0.4
    # digits is easy: most rows are classified right with or without them, so mem(i) = 0
    assert 0.6 < np.mean(finite == 0) < 0.98
    assert reference.tie_ceiling() < 0.8


def test_tie_ceiling_matches_closed_form_for_zero_ties():
    n, tied = 1000, 900
    scores = np.r_[np.zeros(tied), np.linspace(0.1, 1, n - tied)]
    ref = ReferenceMemorisation(
        scores=scores,
        correct=np.zeros((2, n), bool),
        true_class_probs=np.zeros((2, n)),
        member_mask=np.zeros((2, n), bool),
        grad_evals=0.0,
        seconds=0.0,
    )
    assert ref.tie_ceiling() == pytest.approx(math.sqrt(1 - 0.9**3), abs=0.01)


def test_learning_event_proxies_correlate_positively_with_reference(trained, reference):
    _, events, _, _ = trained
    proxies = learning_event_proxies(events)
    assert set(proxies) == set(PROXIES)
    for proxy in proxies.values():
        assert proxy.grad_evals == 0.0
        assert proxy_spearman(proxy, reference.scores) > 0.25, proxy.name
    # orientation matters: the raw confidence (high = well learned) is anti-correlated
    raw = ProxyScores("raw", proxies["confidence"].scores, "high", 0.0, 0.0)
    assert proxy_spearman(raw, reference.scores) < -0.25


def test_forgetting_events_tie_where_the_reference_ties_and_pass_the_tie_ceiling(
    trained, reference
):
    # Most rows are never forgotten (count 0) as most rows have mem = 0 exactly; a tie-free proxy
    # cannot exceed the reference's tie ceiling, a proxy sharing its ties can.
    _, events, _, _ = trained
    proxies = learning_event_proxies(events)
    forgetting = proxies["forgetting_events"]
    assert np.mean(forgetting.scores == 0) > 0.7
    ceiling = reference.tie_ceiling()
    assert proxy_spearman(proxies["confidence"], reference.scores) <= ceiling
    assert proxy_spearman(forgetting, reference.scores) > ceiling + 0.1


def test_holdout_proxy_correlates_positively_and_costs_finetune_plus_two_forwards(
    digits, trained, reference
):
    x, y, xt, yt = digits
    model, _, _, _ = trained
    finetune = MlpRecipe(epochs=5)
    meter = CostMeter()
    proxy = holdout_retraining_proxy(
        model, x, y, x_holdout=xt, y_holdout=yt, recipe=finetune, seed=2, meter=meter
    )
    assert proxy.grad_evals == pytest.approx(finetune.epochs * len(yt) + 2 * len(y) / 3)
    assert meter.grad_evals == pytest.approx(proxy.grad_evals)
    assert np.all(proxy.scores >= 0)
    assert proxy_spearman(proxy, reference.scores) > 0.25


def test_curvature_proxy_correlates_positively_and_costs_checkpoints_times_probes(
    digits, trained, reference
):
    x, y, _, _ = digits
    _, _, checkpoints, _ = trained
    proxy = curvature_proxy(checkpoints, x, y, probes=2, seed=3)
    assert proxy.grad_evals == len(checkpoints) * 3 * len(y)
    assert np.all(proxy.scores >= 0)
    assert proxy_spearman(proxy, reference.scores) > 0.25


def test_symmetric_kl_is_zero_on_identical_rows_and_symmetric():
    p = np.array([[0.7, 0.3], [0.5, 0.5]])
    q = np.array([[0.2, 0.8], [0.5, 0.5]])
    assert symmetric_kl(p, q) == pytest.approx(symmetric_kl(q, p))
    assert symmetric_kl(p, q)[1] == pytest.approx(0.0)
    assert symmetric_kl(p, q)[0] > 0


def test_invalid_parameters_name_themselves(digits, trained):
    x, y, _, _ = digits
    model, _, checkpoints, _ = trained
    with pytest.raises(ValueError, match="runs"):
        subset_memorisation(x, y, classes=10, recipe=RECIPE, runs=1, seed=0)
    with pytest.raises(ValueError, match="subset_fraction"):
        subset_memorisation(x, y, classes=10, recipe=RECIPE, runs=4, subset_fraction=1.0, seed=0)
    with pytest.raises(ValueError, match="step"):
        curvature_proxy(checkpoints, x, y, step=0.0, seed=0)
    with pytest.raises(ValueError, match="probes"):
        curvature_proxy(checkpoints, x, y, probes=0, seed=0)
    with pytest.raises(ValueError, match="x_holdout"):
        holdout_retraining_proxy(
            model, x, y, x_holdout=x[:0], y_holdout=y[:0], recipe=RECIPE, seed=0
        )
    with pytest.raises(ValueError, match="direction"):
        orient(np.zeros(3), direction="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lr"):
        MlpRecipe(lr=0.0).validate()


def test_balanced_subsets_leave_every_row_out_of_exactly_the_given_number_of_runs():
    rows = balanced_member_rows(103, runs=4, out_per_row=2, seed=0)
    member = np.zeros((4, 103), dtype=bool)
    np.put_along_axis(member, rows, True, axis=1)
    assert np.all((~member).sum(axis=0) == 2)
    assert rows.shape[1] == 52  # half of 103, rounded up; shorter runs padded with own rows
    with pytest.raises(ValueError, match="out_per_row"):
        balanced_member_rows(10, runs=4, out_per_row=4, seed=0)


def test_shadow_references_score_forget_rows_with_models_that_never_saw_them():
    member = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=bool)
    losses = np.arange(12, dtype=np.float64).reshape(4, 3)  # loss = 3 * run + row
    correct = np.ones((4, 3), dtype=bool)
    test = np.full((4, 2), 0.5)
    ref, twin = shadow_references(
        train_losses=losses,
        train_correct=correct,
        member_mask=member,
        test_losses=test,
        test_correct=np.ones((4, 2), dtype=bool),
        forget_rows=np.array([0, 1]),
        retain_rows=np.array([2]),
        heldout_rows=np.array([1]),
    )
    # row 0 is out of runs 1, 3; row 1 out of runs 0, 3; row 2 is in runs 0, 1, 3
    assert ref.forget.losses.tolist() == [3.0, 1.0] and twin.forget.losses.tolist() == [9.0, 10.0]
    assert ref.retain.losses.tolist() == [2.0] and twin.retain.losses.tolist() == [5.0]
    assert ref.heldout.losses.tolist() == [0.5]
    with pytest.raises(ValueError, match="fewer than 3 non-member"):
        shadow_references(
            train_losses=losses,
            train_correct=correct,
            member_mask=member,
            test_losses=test,
            test_correct=np.ones((4, 2), dtype=bool),
            forget_rows=np.array([0]),
            retain_rows=np.array([2]),
            heldout_rows=np.array([0]),
            draws=3,
        )


def _small_reference_args(digits) -> dict:
    """cached_reference arguments for a cheap 4-run balanced reference on digits."""
    x, y, xt, yt = digits
    return dict(
        dataset="digits",
        sample_ids=[f"s{i}" for i in range(len(y))],
        x=x,
        y=y,
        test_ids=[f"t{i}" for i in range(len(yt))],
        x_test=xt,
        y_test=yt,
        classes=10,
        recipe=MlpRecipe(hidden=16, epochs=2),
        runs=4,
        balanced_out_per_row=2,
    )


def test_reference_is_cached_in_duckdb_and_read_back_identically(tmp_path, digits):
    from data_contracts.settings import Settings
    from tasks import features, warehouse

    y = digits[1]
    settings = Settings(home=tmp_path, hash_salt="t")
    kw = _small_reference_args(digits)
    with warehouse.connect(settings) as con:
        first = features.cached_reference(con, **kw)
        again = features.cached_reference(con, **kw)
        other = features.cached_reference(con, **{**kw, "recipe": MlpRecipe(hidden=16, epochs=1)})
        stored = con.execute(
            "SELECT count(*), count(mem), min(runs), min(subset_fraction) FROM reference_memorization "
            "WHERE reference_key = ?",
            [first.key],
        ).fetchall()[0]
    assert (first.cached, again.cached, other.cached) == (False, True, False)
    assert other.key != first.key
    for a, b in (
        (first.reference.true_class_probs, again.reference.true_class_probs),
        (first.test_p_true, again.test_p_true),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert np.array_equal(first.reference.member_mask, again.reference.member_mask)
    assert np.array_equal(first.test_correct, again.test_correct)
    np.testing.assert_array_equal(first.reference.scores, again.reference.scores)
    assert stored == (len(y), len(y), 4, 0.5)  # every row is out of 2 of 4 runs: mem defined
    assert again.reference.grad_evals == first.reference.grad_evals > 0
    # the planner's prediction of that cost, before any training
    from models.memorization import balanced_subset_grad_evals

    predicted = balanced_subset_grad_evals(len(y), runs=4, out_per_row=2, epochs=2, seed=0)
    assert first.reference.grad_evals == pytest.approx(predicted, rel=1e-12)


def test_reference_without_erased_rows_stays_cached_and_never_retrains_on_them(tmp_path, digits):
    """Rows of forgotten samples: deleted from the cache (tasks/erasure.py), excluded from reads
    and from any recomputation; a reference lacking a row still needed is recomputed whole."""
    from data_contracts.settings import Settings
    from models.memorization import balanced_subset_grad_evals
    from tasks import features, warehouse

    y = digits[1]
    kw = _small_reference_args(digits)
    ids = kw["sample_ids"]
    gone = np.arange(0, len(y), 50)
    erased = [ids[i] for i in gone]

    def rows_of(con, key):
        return con.execute(
            "SELECT (SELECT count(*) FROM reference_memorization WHERE reference_key = $k "
            "AND sample_id IN (SELECT unnest($s))), (SELECT count(*) FROM reference_predictions "
            "WHERE reference_key = $k AND sample_id IN (SELECT unnest($s)))",
            {"k": key, "s": erased},
        ).fetchall()[0]

    with warehouse.connect(Settings(home=tmp_path, hash_salt="t")) as con:
        full = features.cached_reference(con, **kw)
        for table in ("reference_memorization", "reference_predictions"):  # as the erasure does
            con.execute(f"DELETE FROM {table} WHERE sample_id IN (SELECT unnest(?))", [erased])
        hit = features.cached_reference(con, **kw, exclude_rows=gone)
        assert hit.cached and hit.key == full.key
        assert np.isnan(hit.reference.scores[gone]).all()
        assert not hit.reference.member_mask[:, gone].any()
        kept = np.setdiff1d(np.arange(len(y)), gone)
        np.testing.assert_allclose(
            hit.reference.true_class_probs[:, kept], full.reference.true_class_probs[:, kept]
        )
        # a reader that still needs the erased rows gets a fresh, whole reference
        whole = features.cached_reference(con, **kw)
        assert not whole.cached and rows_of(con, whole.key) == (len(gone), 4 * len(gone))
    # cold cache with rows excluded: they are not trained on and nothing of them is stored
    with warehouse.connect(Settings(home=tmp_path / "cold", hash_salt="t")) as con:
        cold = features.cached_reference(con, **kw, exclude_rows=gone)
        assert not cold.cached and rows_of(con, cold.key) == (0, 0)
        assert not cold.reference.member_mask[:, gone].any()
        assert cold.reference.grad_evals == pytest.approx(
            balanced_subset_grad_evals(len(kept), runs=4, out_per_row=2, epochs=2, seed=0)
        )
        assert features.cached_reference(con, **kw, exclude_rows=gone).cached


def test_two_models_that_forgot_different_rows_keep_one_reference_variant_each(tmp_path, digits):
    """Model A forgot rows FA, model B rows FB (same data): each audit needs rows the other's
    reference never trained on. Each keeps its own variant instead of rebuilding the other's."""
    from data_contracts.settings import Settings
    from tasks import features, warehouse

    kw = _small_reference_args(digits)
    forgot_a, forgot_b = np.arange(0, 40, 4), np.arange(1, 41, 4)
    with warehouse.connect(Settings(home=tmp_path, hash_salt="t")) as con:
        a = features.cached_reference(con, **kw, exclude_rows=forgot_a)
        b = features.cached_reference(con, **kw, exclude_rows=forgot_b)
        assert not a.cached and not b.cached and a.key != b.key
        # A forgets more rows later: its variant still holds every row A needs
        a_later = features.cached_reference(
            con, **kw, exclude_rows=np.r_[forgot_a, np.arange(100, 110)]
        )
        b_again = features.cached_reference(con, **kw, exclude_rows=forgot_b)
        assert a_later.cached and a_later.key == a.key
        assert b_again.cached and b_again.key == b.key
        np.testing.assert_allclose(
            a_later.reference.true_class_probs[:, 200:], a.reference.true_class_probs[:, 200:]
        )
        keys = con.execute(
            "SELECT count(DISTINCT reference_key) FROM reference_memorization"
        ).fetchall()[0][0]
        assert keys == 2
        for extra in range(features.MAX_REFERENCE_VARIANTS):  # bounded: oldest variants go
            features.cached_reference(con, **kw, exclude_rows=np.array([300 + extra]))
        keys = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT reference_key FROM reference_memorization"
            ).fetchall()
        ]
        assert len(keys) == features.MAX_REFERENCE_VARIANTS and a.key not in keys


def test_holdout_and_curvature_columns_are_stored_for_mlps_and_null_otherwise(tmp_path):
    from data_contracts.settings import Settings
    from models.datasets import load_breast_cancer_dataset
    from models.training import train_model
    from tasks import features, training, warehouse

    ds = load_breast_cancer_dataset()
    settings = Settings(home=tmp_path, hash_salt="t")
    ids = ds.sample_ids[ds.train_rows()].tolist()
    stored = {}
    for version, recipe in ((1, "mlp"), (2, "pnsgd")):
        run = train_model(ds, recipe_name=recipe, seed=0, overrides={"epochs": 3})
        stored[recipe] = training.store_proxies.fn(
            settings, model_name="m", version=version, dataset=ds, run=run
        )
        assert stored[recipe]["rows"] == len(ids)
    assert {"holdout", "curvature"} <= set(stored["mlp"]["proxies"])
    assert stored["mlp"]["extra_fraction_of_training"] > 0
    assert stored["pnsgd"]["extra_grad_evals"] == 0
    with warehouse.connect(settings) as con:
        mlp = features.proxy_columns(con, model_name="m", model_version=1, sample_ids=ids)
        logreg = features.proxy_columns(con, model_name="m", model_version=2, sample_ids=ids)
        directions = dict(con.execute("SELECT * FROM proxy_directions").fetchall())
    assert np.all(np.isfinite(mlp["holdout"])) and np.all(mlp["holdout"] >= 0)
    assert np.all(np.isfinite(mlp["curvature"])) and np.all(mlp["curvature"] >= 0)
    assert np.all(np.isnan(logreg["holdout"])) and np.all(np.isnan(logreg["curvature"]))
    assert np.all(np.isfinite(logreg["confidence"]))
    for column in (mlp["forgetting_events"], logreg["forgetting_events"]):  # counts, every recipe
        assert np.all(column >= 0) and np.array_equal(column, np.round(column))
    assert directions["holdout"] == directions["curvature"] == "high"
    assert directions["forgetting_events"] == "high"
