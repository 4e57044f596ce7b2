"""PCMU inside SISA shards (models/pcmu_sisa.py) on the real digits data: removal equals training
the same ensemble from scratch without the subject, bit for bit, on the replay and the check path,
and it runs through the planner and `execute` like every other path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_contracts.policy import Policy
from models.cost import CostMeter
from models.datasets import SAMPLES_PER_SUBJECT, load_digits_dataset
from models.evaluation import accuracy
from models.forgettable import ForgettableModel
from models.pcmu import PcmuRecipe
from models.pcmu_sisa import (
    RECIPE_NAME,
    ShardedPcmuModel,
    ShardedPcmuRecipe,
    assign_shards_by_subject,
    sharded_pcmu_unlearn,
    train_sharded_pcmu,
)
from models.planner import ModelLedger, Plan, choose, enumerate_candidates
from models.training import train_model
from models.unlearning import execute

SEED = 0
SHARDS = 16
# Two big shards and coarse steps: the only digits setting we found where a single subject's
# data-dependent check passes (2 of 176 whole subjects, e.g. subject-368); accuracy ~0.6.
COARSE = ShardedPcmuRecipe(shards=2, pcmu=PcmuRecipe(sigma=0.005, tau=0.01, eta=0.5))
PASSING_SUBJECT = "subject-368"


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


@pytest.fixture(scope="module")
def split(digits):
    """Training features, labels, subject ids."""
    rows = digits.train_rows()
    return digits.features[rows], digits.labels[rows], digits.subject_ids[rows]


@pytest.fixture(scope="module")
def trained(digits) -> ForgettableModel:
    return train_model(
        digits, recipe_name=RECIPE_NAME, seed=SEED, overrides={"shards": SHARDS}
    ).model


def _whole_subjects(subjects: np.ndarray) -> dict[str, np.ndarray]:
    names, counts = np.unique(subjects, return_counts=True)
    return {n: np.flatnonzero(subjects == n) for n in names[counts == SAMPLES_PER_SUBJECT]}


def _scratch(model: ShardedPcmuModel, x, y, excluded: np.ndarray) -> ShardedPcmuModel:
    return train_sharded_pcmu(
        x,
        y,
        classes=model.classes,
        recipe=model.recipe,
        seed=model.seed,
        shard_of_row=model.shard_of_row,
        exclude_rows=excluded,
    )


def _assert_same_ensemble(a: ShardedPcmuModel, b: ShardedPcmuModel) -> None:
    assert np.array_equal(a.removed, b.removed)
    assert len(a.shard_models) == len(b.shard_models)
    for ma, mb in zip(a.shard_models, b.shard_models, strict=True):
        assert (ma is None) == (mb is None)
        if ma is not None:
            assert torch.equal(ma.weights, mb.weights)
            assert torch.equal(ma.checkpoints, mb.checkpoints)
            assert ma.rows == mb.rows


def test_every_subject_lives_in_one_shard_and_shards_are_balanced(split):
    _, _, subjects = split
    shard = assign_shards_by_subject(subjects, shards=SHARDS, seed=SEED)
    for name in np.unique(subjects):
        assert np.unique(shard[subjects == name]).size == 1
    per_shard = np.bincount(
        [shard[subjects == n][0] for n in np.unique(subjects)], minlength=SHARDS
    )
    assert per_shard.max() - per_shard.min() <= 1
    assert np.array_equal(shard, assign_shards_by_subject(subjects, shards=SHARDS, seed=SEED))


def test_ensemble_is_accurate_on_digits(digits, trained):
    test = digits.test_rows()
    acc = accuracy(trained.predict_proba(digits.features[test]), digits.labels[test])
    assert acc >= 0.90, acc


def test_replay_removal_equals_the_ensemble_trained_without_the_subject(split, trained):
    x, y, subjects = split
    state = trained.sharded_pcmu_state()
    forget = next(iter(_whole_subjects(subjects).values()))
    (shard,) = np.unique(state.shard_of_row[forget])
    meter = CostMeter()
    done = sharded_pcmu_unlearn(state, x, y, forget, meter=meter)

    assert done.mode == "replay" and [o.shard for o in done.shards] == [shard]
    _assert_same_ensemble(done.model, _scratch(state, x, y, forget))
    for s, (before, after) in enumerate(
        zip(state.shard_models, done.model.shard_models, strict=True)
    ):
        if s != shard:
            assert after is before  # untouched shards are not even copied
    # Only the affected shard is replayed: its cost is bounded by that shard's own run.
    shard_run = state.shard_models[shard].steps_run * state.shard_rows(shard).size
    assert 0 < done.grad_evals == meter.grad_evals <= shard_run
    assert done.grad_evals <= 0.25 * state.retrain_grad_evals()


def test_check_pass_removal_keeps_the_shard_and_equals_scratch(split):
    x, y, subjects = split
    shard_of_row = assign_shards_by_subject(subjects, shards=COARSE.shards, seed=SEED)
    model = train_sharded_pcmu(
        x, y, classes=10, recipe=COARSE, seed=SEED, shard_of_row=shard_of_row
    )
    forget = np.flatnonzero(subjects == PASSING_SUBJECT)
    done = sharded_pcmu_unlearn(model, x, y, forget)

    assert done.mode == "check" and done.certificate["method"] == "pcmu-check"
    (outcome,) = done.shards
    assert outcome.replay_grad_evals == 0 and outcome.first_flip_step is None
    # The check costs |F| grad-evals per stored step of the affected shard, nothing else.
    steps = model.shard_models[outcome.shard].steps_run
    assert done.grad_evals == outcome.check_grad_evals == len(forget) * steps
    assert torch.equal(
        done.model.shard_models[outcome.shard].weights, model.shard_models[outcome.shard].weights
    )
    _assert_same_ensemble(done.model, _scratch(model, x, y, forget))


def test_sequential_and_batched_removals_equal_scratch(split, trained):
    x, y, subjects = split
    state = trained.sharded_pcmu_state()
    groups = list(_whole_subjects(subjects).values())
    first = sharded_pcmu_unlearn(state, x, y, groups[1])
    batch = np.concatenate(groups[2:5])  # a day's requests: one forget set, one pass per shard
    second = sharded_pcmu_unlearn(first.model, x, y, batch)
    _assert_same_ensemble(second.model, _scratch(state, x, y, np.concatenate([groups[1], batch])))
    assert len(second.shards) == np.unique(state.shard_of_row[batch]).size


def test_a_shard_emptied_below_two_rows_drops_out_like_in_scratch(split):
    x, y, subjects = split
    # 8 subjects in 4 shards: two subjects per shard, so removing both empties a shard.
    names = list(_whole_subjects(subjects))[:8]
    rows = np.flatnonzero(np.isin(subjects, names))
    xs, ys, gs = x[rows], y[rows], subjects[rows]
    recipe = ShardedPcmuRecipe(shards=4, pcmu=PcmuRecipe(steps=20))
    shard_of_row = assign_shards_by_subject(gs, shards=4, seed=SEED)
    model = train_sharded_pcmu(
        xs, ys, classes=10, recipe=recipe, seed=SEED, shard_of_row=shard_of_row
    )
    victim = np.flatnonzero(shard_of_row == 0)
    done = sharded_pcmu_unlearn(model, xs, ys, victim)
    assert done.model.shard_models[0] is None and done.shards[0].mode == "dropped"
    assert done.grad_evals == 0
    _assert_same_ensemble(done.model, _scratch(model, xs, ys, victim))
    assert done.model.predict_proba(xs).shape == (len(ys), 10)


def test_planner_predicts_and_execute_runs_the_sharded_path(digits, split, trained):
    x, y, subjects = split
    forget = list(_whole_subjects(subjects).values())[7]
    ledger = ModelLedger(lineage="pcmu")
    candidates = enumerate_candidates(
        trained, forget, policy=Policy(guarantee="exact"), ledger=ledger, data=(x, y)
    )
    plan = choose(candidates, Policy(guarantee="exact"))
    assert plan.chosen.path == "pcmu-sisa", plan.why
    retrain = next(c for c in candidates if c.path == "retrain")
    assert plan.chosen.predicted_grad_evals < 0.25 * retrain.predicted_grad_evals

    done = execute(plan, trained, x, y, forget, ledger=ledger, seed=SEED)
    assert done.method == "pcmu-replay" and done.guarantee == "exact"
    assert done.model.lineage == "pcmu" and done.model.removed[forget].all()
    params = done.parameters
    assert params["recipe"]["shards"] == SHARDS and params["recipe_name"] == RECIPE_NAME
    assert params["affected_shards"] == [int(trained.arrays["shard_of_row"][forget[0]])]
    assert set(done.budget_left["pcmu_budget_per_shard"]) == {str(s) for s in range(SHARDS)}
    assert params["grad_evals"]["total"] == done.cost.grad_evals
    assert params["grad_evals"]["retrain_ensemble_estimate"] > 4 * done.cost.grad_evals
    # The point estimate assumes the replay stops where the stored run did; the bound cannot.
    assert done.cost.grad_evals <= plan.chosen.grad_evals_bound
    # The stored state round-trips: the new version unlearns again from its arrays alone.
    again = done.model.sharded_pcmu_state()
    _assert_same_ensemble(again, _scratch(trained.sharded_pcmu_state(), x, y, forget))


def test_state_survives_the_storage_round_trip(split, trained):
    from dataclasses import replace

    from models.forgettable import FORGOTTEN_MASK
    from models.weights import dump_state, load_state

    x, y, subjects = split
    arrays = load_state(dump_state(trained.state_arrays()))
    removed = arrays.pop(FORGOTTEN_MASK)
    loaded = replace(trained, arrays=arrays, removed=removed).sharded_pcmu_state()
    _assert_same_ensemble(loaded, trained.sharded_pcmu_state())
    forget = list(_whole_subjects(subjects).values())[5]
    done = sharded_pcmu_unlearn(loaded, x, y, forget)
    _assert_same_ensemble(done.model, _scratch(loaded, x, y, forget))


def test_retrain_path_keeps_the_shard_map_and_lineage(split, trained):
    x, y, subjects = split
    forget = list(_whole_subjects(subjects).values())[3]
    candidates = enumerate_candidates(
        trained, forget, policy=Policy(guarantee="exact"), ledger=ModelLedger(lineage="pcmu")
    )
    retrain = next(c for c in candidates if c.path == "retrain")
    plan = choose([retrain], Policy(guarantee="exact"))
    done = execute(plan, trained, x, y, forget, ledger=ModelLedger(lineage="pcmu"), seed=SEED)
    assert done.model.lineage == "pcmu" and done.method == "retrain"
    _assert_same_ensemble(
        done.model.sharded_pcmu_state(), _scratch(trained.sharded_pcmu_state(), x, y, forget)
    )


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"shards": 0}, "shards"),
        ({"shards": 10_000}, "shards"),
        ({"shards": 2.5}, "shards"),
        ({"sigma": 0.0}, "sigma"),
        ({"eta": -1.0}, "eta"),
        ({"clip": 0.0}, "clip"),
        ({"slices": 4}, "slices"),
    ],
)
def test_invalid_parameters_raise_naming_the_parameter(digits, overrides, name):
    with pytest.raises(ValueError, match=name):
        train_model(digits, recipe_name=RECIPE_NAME, seed=SEED, overrides=overrides)


def test_invalid_forget_rows_raise_naming_the_argument(split, trained):
    x, y, _ = split
    state = trained.sharded_pcmu_state()
    with pytest.raises(ValueError, match="forget_rows"):
        sharded_pcmu_unlearn(state, x, y, np.array([len(y)]))
    with pytest.raises(ValueError, match="forget_rows"):
        sharded_pcmu_unlearn(state, x, y, np.array([3, 3]))
    with pytest.raises(ValueError, match="forget_rows"):
        sharded_pcmu_unlearn(state, x, y, np.array([], dtype=np.int64))
    first = sharded_pcmu_unlearn(state, x, y, np.array([5]))
    with pytest.raises(ValueError, match="already removed"):
        sharded_pcmu_unlearn(first.model, x, y, np.array([5]))
    with pytest.raises(ValueError, match="x and y"):
        sharded_pcmu_unlearn(state, x[:-1], y[:-1], np.array([5]))


# Constant eta, T = 200 (the default before eta halved), 32 shards, seed 0: subjects found with a
# 40-subject replay scan. subject-180's shard stopped at its fixed point after 84 steps but its
# replay runs all T = 200 (the estimate is 0.42x the cost), subject-433's goes 182 -> 200,
# subject-449's stops at 78 of 182 (2.4x over), subject-29 is a typical one (31 -> 38 steps).
CONSTANT_ETA = {"steps": 200, "halve_every": 0}
BOUND_SUBJECTS = {"subject-180": "past", "subject-433": "past", "subject-449": "before"}
TYPICAL_SUBJECT = "subject-29"


def _execute(chosen, candidates, model, data, forget, *, seed=SEED):
    """Run the chosen candidate of a pcmu-lineage plan, as the flow does."""
    plan = Plan(chosen=chosen, candidates=candidates, why="test")
    return execute(plan, model, *data, forget, ledger=ModelLedger(lineage="pcmu"), seed=seed)


@pytest.fixture(scope="module")
def constant_eta(digits) -> ForgettableModel:
    return train_model(digits, recipe_name=RECIPE_NAME, seed=SEED, overrides=CONSTANT_ETA).model


@pytest.fixture(scope="module")
def default_sharded(digits) -> ForgettableModel:
    return train_model(digits, recipe_name=RECIPE_NAME, seed=SEED).model


@pytest.mark.parametrize("subject", [*BOUND_SUBJECTS, TYPICAL_SUBJECT])
def test_upper_bound_holds_where_the_replay_outruns_the_stored_fixed_point(
    split, constant_eta, subject
):
    x, y, subjects = split
    forget = np.flatnonzero(subjects == subject)
    policy = Policy(guarantee="exact")
    candidates = enumerate_candidates(
        constant_eta, forget, policy=policy, ledger=ModelLedger(lineage="pcmu"), data=(x, y)
    )
    cand = next(c for c in candidates if c.path == "pcmu-sisa")
    (shard,) = cand.params["per_shard"]
    stored = constant_eta.sharded_pcmu_state().shard_models[int(shard)]
    assert cand.params["per_shard"][shard]["mode"] == "replay"
    # check + (T - t*) (n - |F|) + re-checks after a rejoin (models.pcmu.pcmu_unlearn_grad_evals)
    t, kept = cand.params["per_shard"][shard]["first_flip_step"], stored.rows - len(forget)
    assert cand.upper_grad_evals == (
        cand.measured_grad_evals + (200 - t) * kept + (stored.steps_run - t - 1) * len(forget)
    )
    assert cand.upper_seconds > cand.predicted_seconds
    row = next(r for r in choose(candidates, policy).table() if r["path"] == "pcmu-sisa")
    assert row["upper_grad_evals"] == cand.upper_grad_evals

    done = _execute(cand, candidates, constant_eta, (x, y), forget)
    after = done.model.sharded_pcmu_state().shard_models[int(shard)]
    assert done.cost.grad_evals <= cand.upper_grad_evals
    if BOUND_SUBJECTS.get(subject) == "past":
        # The replay ran to T, past the stored run's fixed point: the estimate undershoots.
        assert after.steps_run == 200 > stored.steps_run
        assert done.cost.grad_evals > cand.predicted_grad_evals
    elif BOUND_SUBJECTS.get(subject) == "before":
        assert after.steps_run < stored.steps_run
        assert done.cost.grad_evals < cand.predicted_grad_evals


def test_a_pcmu_sisa_retrain_stays_under_t_steps_on_every_shard(split, constant_eta):
    x, y, subjects = split
    forget = np.flatnonzero(subjects == "subject-180")
    candidates = enumerate_candidates(
        constant_eta, forget, policy=Policy(guarantee="exact"), ledger=ModelLedger("pcmu")
    )
    retrain = next(c for c in candidates if c.path == "retrain")
    assert retrain.upper_grad_evals == 200 * (constant_eta.n_retained - len(forget))
    done = _execute(retrain, candidates, constant_eta, (x, y), forget, seed=SEED + 1)
    assert 0 < done.cost.grad_evals <= retrain.upper_grad_evals


def test_explain_shows_the_bound_only_where_the_estimate_is_not_one(split, constant_eta, home):
    import json

    from typer.testing import CliRunner

    from data_contracts.settings import Settings
    from flows.cli import app
    from tasks import warehouse

    x, y, subjects = split
    forget = np.flatnonzero(subjects == "subject-180")
    policy = Policy(guarantee="exact")
    plan = choose(
        enumerate_candidates(
            constant_eta, forget, policy=policy, ledger=ModelLedger("pcmu"), data=(x, y)
        ),
        policy,
    )
    shards, retrain = plan.candidates
    with warehouse.connect(Settings()) as con:
        con.execute(
            "INSERT INTO runs VALUES ('run-1', 'm', now(), now(), 'completed', 2, ?, NULL)",
            [json.dumps(plan.as_dict())],
        )
    out = CliRunner().invoke(app, ["explain", "m:2"], env={"COLUMNS": "250"}).stdout
    line = next(row for row in out.splitlines() if "pcmu-sisa" in row and "exact" in row)
    assert f"{shards.predicted_grad_evals:.0f} (<= {shards.upper_grad_evals:.0f})" in line
    assert f"(<= {shards.upper_seconds:.2f})" in line
    line = next(row for row in out.splitlines() if "retrain" in row and "exact" in row)
    assert f"(<= {retrain.upper_grad_evals:.0f})" in line


def test_default_recipe_replays_cost_what_the_planner_predicts(split, default_sharded):
    """Eta halving every 10 steps with T = 40 (DEFAULT_SHARD_PCMU): no shard reaches a fixed point
    or a cycle, so a replay from t* runs the same steps the stored shard did after t* and the
    planner's estimate is its cost (with constant eta, 0.42x-2.4x above; issue 6's 1.5x target)."""
    x, y, subjects = split
    state = default_sharded.sharded_pcmu_state()
    steps = state.recipe.pcmu.steps
    assert all(m is None or m.steps_run == steps for m in state.shard_models)
    policy, ratios = Policy(guarantee="exact"), []
    for subject in np.random.default_rng(3).choice(np.unique(subjects), 12, replace=False):
        forget = np.flatnonzero(subjects == subject)
        candidates = enumerate_candidates(
            default_sharded, forget, policy=policy, ledger=ModelLedger("pcmu"), data=(x, y)
        )
        cand = next(c for c in candidates if c.path == "pcmu-sisa")
        done = _execute(cand, candidates, default_sharded, (x, y), forget)
        assert done.cost.grad_evals <= cand.upper_grad_evals
        after = done.model.sharded_pcmu_state()
        for shard in cand.params["per_shard"]:
            assert after.shard_models[int(shard)].steps_run == steps
        ratios.append(cand.predicted_grad_evals / done.cost.grad_evals)
    assert all(1 / 1.5 <= r <= 1.5 for r in ratios), ratios
