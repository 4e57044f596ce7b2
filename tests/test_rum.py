"""RUM on MLPs trained on real data (digits; breast cancer, tabular) with canaries in the forget set."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.audit import AuditResult, ModelEval, audit_unlearned, canary_world
from models.cost import CostMeter
from models.datasets import Dataset, load_breast_cancer_dataset, load_digits_dataset
from models.learning_events import LearningEvents
from models.mlp import MlpRecipe, predict_proba, train_mlp
from models.rum import RumRecipe, rum_unlearn, split_by_memorisation

RECIPE = MlpRecipe(hidden=128, epochs=30, batch_size=32, lr=0.01)
CANARIES = 40
CLEAN_FORGET = 40
# breast cancer: 455 training rows of 31 standardised features, 2 classes
# 60 epochs: with 15 steps per epoch, 30 leave most canaries unlearned (forget acc ~0.65)
CANCER_RECIPE = MlpRecipe(hidden=64, epochs=60, batch_size=32, lr=0.01)
CANCER_CANARIES = 20
CANCER_CLEAN_FORGET = 20


def _rum_world(ds: Dataset, *, recipe: MlpRecipe, canaries: int, clean: int, seed: int) -> dict:
    """Original model (with learning events) and two retrains without the forget set, on a
    canary world (models.audit.canary_world) of `ds`."""
    tr, te = ds.train_rows(), ds.test_rows()
    w = canary_world(
        ds.features[tr],
        ds.labels[tr],
        ds.features[te],
        ds.labels[te],
        classes=ds.classes,
        canaries=canaries,
        clean=clean,
        seed=seed,
    )

    def evaluate(model) -> ModelEval:
        return w.evaluate(lambda xs: predict_proba(model, xs))

    events = LearningEvents.zeros(len(w.y))
    train_meter = CostMeter()
    original = train_mlp(
        w.x,
        w.y,
        classes=ds.classes,
        recipe=recipe,
        seed=100 + seed,
        events=events,
        meter=train_meter,
    )
    ref, twin = (
        train_mlp(w.x[w.retain], w.y[w.retain], classes=ds.classes, recipe=recipe, seed=s)
        for s in (seed, seed + 20)
    )
    return {
        "world": w,
        "x": w.x,
        "y": w.y,
        "forget": w.forget,
        "retain": w.retain,
        "canaries": w.canaries,
        "original": original,
        "confidence": events.proxies()["confidence"],
        "train_meter": train_meter,
        "evaluate": evaluate,
        "reference": evaluate(ref),
        "twin": evaluate(twin),
    }


@pytest.fixture(scope="module")
def world():
    """Digits; forget set: 40 canaries + 40 clean training rows."""
    return _rum_world(
        load_digits_dataset(), recipe=RECIPE, canaries=CANARIES, clean=CLEAN_FORGET, seed=3
    )


def _rum_on(w: dict) -> tuple:
    """RUM on a canary world's forget set, split by its training-time confidence proxy."""
    meter = CostMeter()
    result = rum_unlearn(
        w["original"],
        w["x"],
        w["y"],
        forget_rows=w["forget"],
        retain_rows=w["retain"],
        proxy_scores=w["confidence"],
        direction="low",
        seed=7,
        meter=meter,
    )
    return result, meter


@pytest.fixture(scope="module")
def rum(world):
    return _rum_on(world)


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
    expected_high += recipe.repair_epochs * n_retain  # the retain-only epochs after NegGrad+
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


@pytest.fixture(scope="module")
def second_request(world):
    """A second request, for the model the first RUM produced: two subjects' worth (8 rows) of
    clean training rows outside the first request (the flow's usual small request), 8 clean test
    rows as non-members, and a reference + twin retrained without both requests. The rows are
    drawn from those the model learned but not easily (training confidence 0.5-0.85): the top
    tercile of such a request is what the recipe before the fix ascended."""
    w = world["world"]
    rng = np.random.default_rng(12)
    conf = world["confidence"][w.retain]
    forget = np.sort(rng.choice(w.retain[(conf > 0.5) & (conf < 0.85)], size=8, replace=False))
    heldout = rng.choice(len(w.y_test), size=8, replace=False)
    view = replace(
        w,
        forget=forget,
        retain=np.setdiff1d(w.retain, forget),
        canaries=forget[:0],
        heldout=heldout,
        y_heldout=w.y_test[heldout],
    )

    def evaluate(model) -> ModelEval:
        return view.evaluate(lambda xs: predict_proba(model, xs))

    ref, twin = (
        evaluate(train_mlp(w.x[view.retain], w.y[view.retain], classes=10, recipe=RECIPE, seed=s))
        for s in (31, 32)
    )
    return {"view": view, "evaluate": evaluate, "reference": ref, "twin": twin}


def test_a_second_rum_on_the_rum_modified_model_passes_the_audit(world, rum, second_request):
    """The normal production case: RUM on a model RUM already modified, splitting by the original
    training run's confidence (the flow carries v1's proxies forward)."""
    first, _ = rum
    req = second_request

    def again(recipe: RumRecipe):
        result = rum_unlearn(
            first.model,
            world["x"],
            world["y"],
            forget_rows=req["view"].forget,
            retain_rows=req["view"].retain,
            proxy_scores=world["confidence"],
            direction="low",
            recipe=recipe,
            seed=8,
        )
        return result, audit_unlearned(
            req["evaluate"](result.model), req["reference"], [req["twin"]]
        )

    result, audit = again(RumRecipe())
    assert audit.passed, audit.reasons
    # well-learned rows are fine-tuned, not ascended: none a retrain gets right is unlearned
    assert result.groups["high"].size == 0
    assert audit.metrics["forget_acc"] >= audit.metrics["forget_acc_reference"]
    assert result.grad_evals < 0.1 * world["train_meter"].grad_evals
    # the recipe before the fix: NegGrad+ on the request's top tercile of clean rows unlearns
    # rows the retrained reference classifies right
    terciles, before = again(RumRecipe(high_beyond=None, repair_epochs=0))
    assert terciles.groups["high"].size == 3
    assert before.metrics["forget_acc"] < before.metrics["forget_acc_reference"]


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
    # an absolute level: only rows past it are "high", the rest of the top tercile is "medium"
    groups, cutoffs = split_by_memorisation(confidence, direction="low", high_beyond=0.15)
    assert sorted(groups["high"]) == [7, 8] and sorted(groups["medium"]) == [3, 4, 5, 6]
    assert cutoffs[1] == 0.15
    groups, _ = split_by_memorisation(confidence + 0.9, direction="low", high_beyond=0.5)
    assert groups["high"].size == 0  # a request of well-learned rows has no high group
    groups, _ = split_by_memorisation(entropy, direction="high", high_beyond=-np.log(0.15))
    assert sorted(groups["high"]) == [7, 8]


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
    with pytest.raises(ValueError, match="repair_epochs"):
        RumRecipe(repair_epochs=-1).validate()
    with pytest.raises(ValueError, match="high_beyond"):
        RumRecipe(high_beyond=float("nan")).validate()
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


@pytest.fixture(scope="module")
def cancer_world():
    """Breast cancer (tabular, binary); forget set: 20 canaries (flipped labels) + 20 clean rows."""
    return _rum_world(
        load_breast_cancer_dataset(),
        recipe=CANCER_RECIPE,
        canaries=CANCER_CANARIES,
        clean=CANCER_CLEAN_FORGET,
        seed=5,
    )


def test_rum_on_tabular_data_passes_the_audit_the_original_fails(cancer_world):
    w = cancer_world
    result, meter = _rum_on(w)
    ref, twin = w["reference"], w["twin"]
    before = audit_unlearned(w["evaluate"](w["original"]), ref, [twin])
    after = audit_unlearned(w["evaluate"](result.model), ref, [twin])
    assert not before.passed  # the canaries make the original distinguishable...
    assert before.metrics["forget_acc"] - after.metrics["forget_acc"] > 0.2
    assert after.passed, after.reasons  # ...and RUM makes it look like a retrain
    assert _mia_gap(after) < _mia_gap(before)
    assert np.isin(result.groups["high"], w["canaries"]).mean() > 0.8
    assert meter.grad_evals < 0.35 * w["train_meter"].grad_evals
    assert result.certificate(after)["guarantee"] == "audited"
