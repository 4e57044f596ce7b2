"""The planner's choice among real candidate paths (pure: no Prefect, MLflow or DuckDB)."""

from __future__ import annotations

import numpy as np
import pytest

from data_contracts.policy import Policy
from models.datasets import load_digits_dataset
from models.planner import ModelLedger, choose, enumerate_candidates
from models.training import train_model
from models.unlearning import execute


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


@pytest.fixture(scope="module")
def pnsgd_model(digits):
    return train_model(digits, recipe_name="pnsgd", seed=0).model


@pytest.fixture(scope="module")
def sisa_model(digits):
    return train_model(digits, recipe_name="sisa", seed=0).model


def _forget(n: int, k: int) -> np.ndarray:
    return np.random.default_rng(0).choice(n, size=k, replace=False)


def test_certified_policy_picks_pnsgd_cheaper_than_retrain(pnsgd_model) -> None:
    rows = _forget(pnsgd_model.n_retained, 14)
    plan = choose(
        enumerate_candidates(
            pnsgd_model, rows, policy=Policy(), ledger=ModelLedger(lineage="pnsgd")
        ),
        Policy(),
    )
    assert plan.chosen.path == "pnsgd" and plan.chosen.epsilon <= 1.0
    # algorithms.md sec. 6: m = 0.003, b = 8, sigma = 0.03, S = 14 needs K = 9 epochs (tight bound).
    assert plan.chosen.params["epochs"] == 9 and plan.chosen.params["bound"] == "tight"
    retrain = next(c for c in plan.candidates if c.path == "retrain")
    assert plan.chosen.predicted_grad_evals == 9 * (1437 - 14)
    assert retrain.predicted_grad_evals == 50 * (1437 - 14)


def test_exact_policy_rejects_pnsgd_with_a_reason(pnsgd_model) -> None:
    rows = _forget(pnsgd_model.n_retained, 4)
    policy = Policy(guarantee="exact")
    plan = choose(
        enumerate_candidates(pnsgd_model, rows, policy=policy, ledger=ModelLedger(lineage="pnsgd")),
        policy,
    )
    assert plan.chosen.path == "retrain"
    assert (
        "weaker than the policy" in next(c for c in plan.candidates if c.path == "pnsgd").rejected
    )


def test_cumulative_cost_forces_a_retrain(pnsgd_model) -> None:
    rows = _forget(pnsgd_model.n_retained, 4)
    spent = ModelLedger(lineage="pnsgd", grad_evals_since_retrain=49 * 1437)
    plan = choose(enumerate_candidates(pnsgd_model, rows, policy=Policy(), ledger=spent), Policy())
    assert plan.chosen.path == "retrain"
    assert "exceed one retrain" in next(c for c in plan.candidates if c.path == "pnsgd").rejected


def test_z_at_the_projection_diameter_forces_a_retrain(pnsgd_model) -> None:
    rows = _forget(pnsgd_model.n_retained, 4)
    plan = choose(
        enumerate_candidates(
            pnsgd_model, rows, policy=Policy(), ledger=ModelLedger(lineage="pnsgd", z_carried=200.0)
        ),
        Policy(),
    )
    assert plan.chosen.path == "retrain"
    assert "2R" in next(c for c in plan.candidates if c.path == "pnsgd").rejected


def test_broken_lineage_offers_only_retrain(pnsgd_model) -> None:
    from dataclasses import replace

    broken = replace(pnsgd_model, lineage="rum-modified")
    rows = _forget(broken.n_retained, 4)
    candidates = enumerate_candidates(
        broken, rows, policy=Policy(), ledger=ModelLedger(lineage="rum-modified")
    )
    assert [c.path for c in candidates] == ["retrain"]


def test_sisa_prediction_equals_measured_cost_and_beats_retrain(digits, sisa_model) -> None:
    rows = _forget(sisa_model.n_retained, 4)
    policy = Policy(guarantee="exact")
    plan = choose(
        enumerate_candidates(sisa_model, rows, policy=policy, ledger=ModelLedger(lineage="sisa")),
        policy,
    )
    assert plan.chosen.path == "sisa"
    train = digits.train_rows()
    done = execute(
        plan,
        sisa_model,
        digits.features[train],
        digits.labels[train],
        rows,
        ledger=ModelLedger(lineage="sisa"),
        seed=1,
    )
    assert done.guarantee == "exact"
    assert done.cost.grad_evals == pytest.approx(plan.chosen.predicted_grad_evals)
    assert done.model.removed[rows].all() and done.model.n_retained == sisa_model.n_retained - 4


def test_pnsgd_execution_spends_the_planned_epochs_and_carries_z(digits, pnsgd_model) -> None:
    rows = _forget(pnsgd_model.n_retained, 14)
    ledger = ModelLedger(lineage="pnsgd")
    plan = choose(enumerate_candidates(pnsgd_model, rows, policy=Policy(), ledger=ledger), Policy())
    train = digits.train_rows()
    done = execute(
        plan, pnsgd_model, digits.features[train], digits.labels[train], rows, ledger=ledger, seed=3
    )
    assert done.cost.grad_evals == plan.chosen.predicted_grad_evals
    assert 0 < done.ledger.z_carried < plan.chosen.params["z"]
    assert done.ledger.grad_evals_since_retrain == done.cost.grad_evals
    with pytest.raises(ValueError, match="already forgot"):
        execute(
            plan,
            done.model,
            digits.features[train],
            digits.labels[train],
            rows,
            ledger=done.ledger,
            seed=4,
        )


def test_pcmu_candidate_predicts_its_measured_cost_and_is_exact(digits) -> None:
    from models.pcmu import PcmuRecipe, train_pcmu
    from models.planner import Plan

    model = train_model(digits, recipe_name="pcmu", seed=0, overrides={"steps": 40}).model
    train = digits.train_rows()
    x, y = digits.features[train], digits.labels[train]
    rows = np.arange(8, 12)  # subject-2's training rows are among the first positions
    candidates = enumerate_candidates(
        model,
        rows,
        policy=Policy(guarantee="exact"),
        ledger=ModelLedger(lineage="pcmu"),
        data=(x, y),
    )
    pcmu = next(c for c in candidates if c.path == "pcmu")
    assert pcmu.guarantee == "exact" and pcmu.params["mode"] in {"budget", "check", "replay"}
    done = execute(
        Plan(chosen=pcmu, candidates=candidates, why="test"),
        model,
        x,
        y,
        rows,
        ledger=ModelLedger(lineage="pcmu"),
        seed=0,
    )
    assert done.method == f"pcmu-{pcmu.params['mode']}"
    assert done.cost.grad_evals == pytest.approx(pcmu.predicted_grad_evals)
    keep = np.setdiff1d(np.arange(len(y)), rows)
    scratch = train_pcmu(x[keep], y[keep], classes=10, recipe=PcmuRecipe(steps=40), seed=0)
    assert np.array_equal(done.model.arrays["weights"], scratch.weights.numpy())


def test_rum_only_under_an_audited_policy_and_it_breaks_the_lineage(digits) -> None:

    run = train_model(digits, recipe_name="mlp", seed=0)  # 30 epochs: RUM (5) is clearly cheaper
    model = run.model
    rows = _forget(model.n_retained, 14)
    certified = enumerate_candidates(
        model, rows, policy=Policy(), ledger=ModelLedger(lineage="plain")
    )
    assert [c.path for c in certified] == ["retrain"]
    audited = Policy(guarantee="audited")
    plan = choose(
        enumerate_candidates(model, rows, policy=audited, ledger=ModelLedger(lineage="plain")),
        audited,
    )
    assert plan.chosen.path == "rum" and plan.chosen.guarantee == "audited"
    train = digits.train_rows()
    done = execute(
        plan,
        model,
        digits.features[train],
        digits.labels[train],
        rows,
        ledger=ModelLedger(lineage="plain"),
        seed=0,
        proxies=run.events.means()["confidence"],
    )
    assert done.model.lineage == "rum-modified" and done.ledger.lineage == "rum-modified"
    assert done.cost.grad_evals <= plan.chosen.predicted_grad_evals
    # A later request may no longer use any certified path: only a retrain restores the lineage.
    later = enumerate_candidates(
        done.model, np.flatnonzero(~done.model.removed)[:2], policy=audited, ledger=done.ledger
    )
    assert {c.path for c in later} == {"rum", "retrain"}


def test_a_certified_path_refuses_a_model_its_guarantee_does_not_cover(digits) -> None:
    from models.planner import Candidate, Plan

    mlp = train_model(digits, recipe_name="mlp", seed=0, overrides={"epochs": 1}).model
    fake = Candidate(path="pnsgd", guarantee="certified", predicted_grad_evals=0, predicted_seconds=0,
                     params={"epochs": 1, "z": 1.0, "bound": "tight"})
    train = digits.train_rows()
    with pytest.raises(ValueError, match=r"recipe pnsgd.*got recipe 'mlp'"):
        execute(Plan(chosen=fake, candidates=[fake], why="test"), mlp, digits.features[train],
                digits.labels[train], np.arange(4), ledger=ModelLedger(lineage="plain"), seed=0)
