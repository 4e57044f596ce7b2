"""RUM on an MLP trained on real digits with canaries in the forget set."""

from __future__ import annotations

import numpy as np
import pytest

from models.audit import AuditResult, ModelEval, SplitEval, audit_unlearned, inject_canaries
from models.cost import CostMeter
from models.datasets import load_digits_dataset
from models.learning_events import LearningEvents
from models.mlp import MlpRecipe, predict_proba, train_mlp
from models.rum import RumRecipe, rum_unlearn, split_by_memorisation

RECIPE = MlpRecipe(hidden=128, epochs=30, batch_size=32, lr=0.01)
CANARIES = 40
CLEAN_FORGET = 40


@pytest.fixture(scope="module")
def world():
    """Forget set: 40 canaries + 40 clean training rows; non-members built the same way from test."""
    ds = load_digits_dataset()
    tr, te = ds.train_rows(), ds.test_rows()
    x, y, xt, yt = ds.features[tr], ds.labels[tr], ds.features[te], ds.labels[te]
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(y))
    canaries = np.sort(perm[:CANARIES])
    forget = np.sort(perm[: CANARIES + CLEAN_FORGET])
    y_train = inject_canaries(y, rows=canaries, classes=10, seed=3)
    test_perm = rng.permutation(len(yt))
    heldout = test_perm[: CANARIES + CLEAN_FORGET]
    y_test_canaries = inject_canaries(yt, rows=test_perm[:CANARIES], classes=10, seed=13)
    retain = np.setdiff1d(np.arange(len(y)), forget)

    def evaluate(model) -> ModelEval:
        def split(xs, ys):
            return SplitEval.from_probs(predict_proba(model, xs), ys)

        return ModelEval(
            forget=split(x[forget], y_train[forget]),
            retain=split(x[retain], y_train[retain]),
            test=split(xt, yt),
            heldout=split(xt[heldout], y_test_canaries[heldout]),
        )

    events = LearningEvents.zeros(len(y))
    train_meter = CostMeter()
    original = train_mlp(
        x, y_train, classes=10, recipe=RECIPE, seed=103, events=events, meter=train_meter
    )
    ref, twin = (
        train_mlp(x[retain], y_train[retain], classes=10, recipe=RECIPE, seed=s) for s in (3, 23)
    )
    return {
        "x": x,
        "y": y_train,
        "forget": forget,
        "retain": retain,
        "canaries": canaries,
        "original": original,
        "confidence": events.means()["confidence"],
        "train_meter": train_meter,
        "evaluate": evaluate,
        "reference": evaluate(ref),
        "twin": evaluate(twin),
    }


@pytest.fixture(scope="module")
def rum(world):
    meter = CostMeter()
    result = rum_unlearn(
        world["original"],
        world["x"],
        world["y"],
        forget_rows=world["forget"],
        retain_rows=world["retain"],
        proxy_scores=world["confidence"],
        direction="low",
        seed=7,
        meter=meter,
    )
    return result, meter


def _mia_gap(audit: AuditResult) -> float:
    return abs(audit.metrics["mia_auc"] - audit.metrics["mia_auc_reference"])


def test_rum_moves_forget_mia_auc_toward_retrained_reference(world, rum):
    result, _ = rum
    evaluate, ref, twin = world["evaluate"], world["reference"], world["twin"]
    before = audit_unlearned(evaluate(world["original"]), ref, [twin], resamples=50)
    after = audit_unlearned(evaluate(result.model), ref, [twin], resamples=50)
    assert _mia_gap(before) > 0.08  # the canaries make the original distinguishable
    assert _mia_gap(after) < 0.5 * _mia_gap(before)
    assert after.metrics["retain_acc"] > 0.97


def test_rum_result_passes_audit_and_only_then_is_certified_audited(world, rum):
    result, _ = rum
    audit = audit_unlearned(world["evaluate"](result.model), world["reference"], [world["twin"]])
    assert audit.passed, audit.reasons
    cert = result.certificate(audit)
    assert (cert["method"], cert["guarantee"], cert["lineage_after"]) == (
        "rum",
        "audited",
        "rum-modified",
    )
    assert cert["epsilon"] is None
    failed = AuditResult(passed=False, metrics={}, thresholds={}, reasons=["mia_auc_gap = 0.3"])
    assert result.certificate(failed)["guarantee"] == "none"
    assert result.certificate(None)["guarantee"] == "none"
    assert result.certificate(None)["lineage_after"] == "rum-modified"


def test_rum_puts_the_canaries_in_the_high_memorisation_group(world, rum):
    result, _ = rum
    canaries = world["canaries"]
    assert np.isin(result.groups["high"], canaries).mean() > 0.9
    assert not np.isin(result.groups["low"], canaries).any()
    all_rows = np.concatenate([result.groups[g] for g in ("low", "medium", "high")])
    assert np.array_equal(np.sort(all_rows), world["forget"])


def test_rum_cost_counts_every_finetune_and_neggrad_example(world, rum):
    result, meter = rum
    recipe = RumRecipe()
    n_retain = len(world["retain"])
    steps_per_epoch = -(-n_retain // recipe.batch_size)
    forget_batch = min(recipe.batch_size, len(result.groups["high"]))
    expected_medium = recipe.finetune_epochs * n_retain
    expected_high = recipe.neggrad_epochs * (n_retain + steps_per_epoch * forget_batch)
    assert result.stage_grad_evals == {"low": 0.0, "medium": expected_medium, "high": expected_high}
    assert result.grad_evals == meter.grad_evals == expected_medium + expected_high
    assert result.grad_evals < 0.35 * world["train_meter"].grad_evals  # vs one training run


def test_rum_leaves_the_input_model_unchanged(world, rum):
    result, _ = rum
    original = world["original"]
    assert result.model is not original
    before = predict_proba(original, world["x"][:50])
    rum_unlearn(
        original,
        world["x"],
        world["y"],
        forget_rows=world["forget"],
        retain_rows=world["retain"],
        proxy_scores=world["confidence"],
        direction="low",
        seed=8,
        recipe=RumRecipe(finetune_epochs=1, neggrad_epochs=1),
    )
    assert np.array_equal(before, predict_proba(original, world["x"][:50]))


def test_split_by_terciles_and_by_fixed_cutoffs_in_proxy_units():
    confidence = np.array([0.99, 0.95, 0.9, 0.7, 0.6, 0.5, 0.2, 0.1, 0.05])
    groups, _ = split_by_memorisation(confidence, direction="low")
    assert {g: sorted(v) for g, v in groups.items()} == {
        "low": [0, 1, 2],
        "medium": [3, 4, 5],
        "high": [6, 7, 8],
    }
    groups, cutoffs = split_by_memorisation(confidence, direction="low", cutoffs=(0.92, 0.3))
    assert cutoffs == (0.92, 0.3)
    assert sorted(groups["low"]) == [0, 1] and sorted(groups["high"]) == [6, 7, 8]
    entropy = -np.log(confidence)  # high entropy = high memorisation
    groups, _ = split_by_memorisation(entropy, direction="high")
    assert sorted(groups["high"]) == [6, 7, 8]
    with pytest.raises(ValueError, match="cutoffs"):
        split_by_memorisation(confidence, direction="low", cutoffs=(0.3, 0.92))


def test_invalid_parameters_name_themselves(world):
    x, y, original = world["x"], world["y"], world["original"]
    forget, retain, conf = world["forget"], world["retain"], world["confidence"]
    kw = dict(direction="low", seed=0)
    with pytest.raises(ValueError, match="disjoint"):
        rum_unlearn(
            original,
            x,
            y,
            forget_rows=forget,
            retain_rows=np.r_[retain, forget[:1]],
            proxy_scores=conf,
            **kw,
        )
    with pytest.raises(ValueError, match="proxy_scores"):
        rum_unlearn(
            original, x, y, forget_rows=forget, retain_rows=retain, proxy_scores=conf[:10], **kw
        )
    with pytest.raises(ValueError, match="alpha"):
        rum_unlearn(
            original,
            x,
            y,
            forget_rows=forget,
            retain_rows=retain,
            proxy_scores=conf,
            recipe=RumRecipe(alpha=1.0),
            **kw,
        )
    with pytest.raises(ValueError, match="forget_rows"):
        rum_unlearn(
            original,
            x,
            y,
            forget_rows=np.array([len(y)]),
            retain_rows=retain,
            proxy_scores=conf,
            **kw,
        )
    with pytest.raises(ValueError, match="direction"):
        rum_unlearn(
            original,
            x,
            y,
            forget_rows=forget,
            retain_rows=retain,
            proxy_scores=conf,
            direction="up",
            seed=0,  # type: ignore[arg-type]
        )
