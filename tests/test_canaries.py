"""Production canaries: synthetic, regenerated bit-for-bit, forgotten by RUM runs, audited.

Unit tests of models/canaries.py, then real flow runs (Prefect, MLflow SQLite, DuckDB, torch) on
digits with the `mlp` recipe trained with `canaries`, under an `audited` policy."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from manifests import deliver  # tests/manifests.py (pytest puts tests/ on sys.path)

from data_contracts.policy import Policy
from data_contracts.settings import Settings
from models.canaries import (
    CANARIES_PER_RUM_RUN,
    canary_spec,
    generate_canaries,
    model_training_data,
    next_canaries,
    training_data,
)
from models.datasets import load_digits_dataset

MODEL = "digits-mlp-canaries"
AUDITED = Policy(guarantee="audited")
CANARIES = 24


def test_canaries_are_deterministic_synthetic_and_never_collide_with_dataset_ids() -> None:
    ds = load_digits_dataset()
    x, y = ds.features[ds.train_rows()], ds.labels[ds.train_rows()]
    spec = canary_spec(x, y, count=CANARIES, seed=3, classes=ds.classes)
    a, b = generate_canaries(spec), generate_canaries(type(spec).from_dict(spec.as_dict()))
    for field in ("x", "y", "x_twins", "y_twins"):  # regenerated from the stored spec alone
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert len(a.y) == CANARIES and len(a.y_twins) == 4 * CANARIES
    assert not np.array_equal(a.x, generate_canaries(replace(spec, seed=4)).x)
    # synthetic: no canary or twin equals (or nearly equals) any dataset row
    rows = np.vstack([a.x, a.x_twins]).astype(np.float64)
    nearest = np.min(np.linalg.norm(rows[:, None, :] - ds.features[None, :, :], axis=2), axis=1)
    assert nearest.min() > 0.1
    assert np.all(rows >= np.min(spec.low, axis=0) - 1e-6)
    assert np.all(rows <= np.max(spec.high, axis=0) + 1e-6)
    # appended after the split; ids cannot collide with dataset ids
    data = training_data(ds, spec)
    assert data.n_dataset == len(x) and len(data.y) == len(x) + CANARIES
    assert list(data.sample_ids[data.n_dataset :]) == [f"canary-{k}" for k in range(CANARIES)]
    assert not set(data.sample_ids[data.n_dataset :]) & set(ds.sample_ids)
    removed = np.zeros(len(data.y), dtype=bool)
    removed[data.n_dataset + np.arange(5)] = True
    assert next_canaries(removed, data.n_dataset, k=3).tolist() == [
        data.n_dataset + k for k in (5, 6, 7)
    ]
    with pytest.raises(ValueError, match="at most 10%"):
        canary_spec(x, y, count=len(x), seed=0, classes=ds.classes)


def test_planner_prices_rum_with_its_canaries_and_no_other_path_takes_them() -> None:
    from models.planner import ModelLedger, enumerate_candidates
    from models.training import train_model

    ds = load_digits_dataset()
    run = train_model(ds, recipe_name="mlp", seed=0, overrides={"epochs": 2}, canaries=CANARIES)
    data = model_training_data(ds, run.model)
    confidence = run.events.proxies()["confidence"]
    rows = np.arange(4)

    def plan(rum_rows: np.ndarray | None) -> dict:
        candidates = enumerate_candidates(
            run.model,
            rows,
            policy=AUDITED,
            ledger=ModelLedger(lineage="plain", seconds_per_grad_eval_by_path={"rum": 1e-5}),
            proxies=confidence,
            rum_rows=rum_rows,
        )
        return {c.path: c for c in candidates}

    canaries = next_canaries(run.model.removed, data.n_dataset)
    plain, with_canaries = plan(None), plan(np.union1d(rows, canaries))
    rum = with_canaries["rum"]
    assert rum.params["canaries"] == CANARIES_PER_RUM_RUN
    assert sum(rum.params["group_sizes"].values()) == len(rows) + CANARIES_PER_RUM_RUN
    assert rum.predicted_grad_evals > plain["rum"].predicted_grad_evals
    retrain = with_canaries["retrain"]
    assert retrain.predicted_grad_evals == plain["retrain"].predicted_grad_evals
    with pytest.raises(ValueError, match="every row of forget_rows"):
        plan(canaries)  # RUM's rows must include the request's


def test_the_planner_prices_exactly_the_rows_rum_forgets_canaries_included() -> None:
    """plan_forgetting prices RUM on Context.rows_for("rum"), the rows `unlearn` hands it: the
    predicted grad-evals are what RUM spends and its memorisation groups are the ones it splits."""
    from data_contracts.certificate import Certificate, Cost
    from models.planner import ModelLedger
    from models.training import train_model
    from tasks import forgetting

    ds = load_digits_dataset()
    # 30 epochs (the default): RUM is clearly cheaper than a retrain, so it is chosen
    run = train_model(ds, recipe_name="mlp", seed=0, canaries=CANARIES)
    data = model_training_data(ds, run.model)
    ctx = forgetting.Context(
        model_name=MODEL,
        dataset=ds,
        parent_version=1,
        parent=run.model,
        parent_certificate=Certificate(  # not read by planning or unlearning
            model_name=MODEL,
            model_version=1,
            parent_certificate_sha256=None,
            method="train",
            guarantee="exact",
            lineage=run.model.lineage,
            weights_sha256="0" * 64,
            cost=Cost(grad_evals=0, seconds=0, retrain_grad_evals=0),
        ),
        ledger=ModelLedger(lineage="plain", seconds_per_grad_eval_by_path={"rum": 1e-5}),
        forget_rows=np.arange(4, dtype=np.int64),
        test_rows=ds.test_rows(),
        test_rows_withdrawn=0,
        data=data,
        canary_rows=next_canaries(run.model.removed, data.n_dataset),
        confidence=run.events.proxies()["confidence"],
    )
    plan = forgetting.plan_forgetting.fn(ctx, policy=AUDITED)
    assert plan.chosen.path == "rum" and plan.chosen.params["canaries"] == CANARIES_PER_RUM_RUN
    done = forgetting.unlearn.fn(ctx, plan=plan, seed=0)
    assert np.array_equal(np.flatnonzero(done.model.removed), ctx.rows_for("rum"))
    assert done.cost.grad_evals == plan.chosen.predicted_grad_evals
    assert plan.chosen.params["group_sizes"] == done.parameters["group_sizes"]


def test_canary_check_without_forgotten_canaries_passes_and_says_so() -> None:
    from models.audit import SplitEval, canary_check

    rng = np.random.default_rng(0)
    twins = SplitEval(rng.exponential(3.0, 32), rng.random(32) < 0.1)
    held = SplitEval(rng.exponential(0.1, 8), np.ones(8, dtype=bool))
    none = SplitEval(np.array([]), np.array([], dtype=bool))
    check = canary_check(forgotten=none, held=held, twins=twins)
    assert check.passed and check.note.startswith("canaries: none left")
    assert check.metrics["canary_power_pvalue"] < check.threshold  # held ones: caught
    kept = canary_check(forgotten=held, held=none, twins=twins)  # "forgotten" but still fitted
    assert not kept.passed and len(kept.reasons) == 2


def test_cli_refuses_canaries_for_recipes_without_rum(home: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "--recipe", "pnsgd", "--canaries", "8"])
    assert result.exit_code == 2 and "only the mlp recipe" in result.stderr
    result = runner.invoke(app, ["train", "--recipe", "mlp", "--canaries", "100000"])
    assert result.exit_code == 2 and "expected 1 to" in result.stderr
    from tasks import warehouse

    with warehouse.connect(Settings()) as con:
        assert warehouse.model_names(con) == []


def _ledger_canaries(settings: Settings) -> dict[str, int]:
    from tasks import warehouse

    with warehouse.connect(settings) as con:
        rows = con.execute(
            "SELECT sample_id, model_version FROM forgotten_samples "
            "WHERE model_name = ? AND starts_with(sample_id, 'canary-')",
            [MODEL],
        ).fetchall()
    return dict(rows)


def _feature_ids(settings: Settings, version: int) -> set[str]:
    from tasks import warehouse

    with warehouse.connect(settings) as con:
        rows = con.execute(
            "SELECT sample_id FROM memorization_features WHERE model_name = ? AND model_version = ?",
            [MODEL, version],
        ).fetchall()
    return {r[0] for r in rows}


def _train_with_canaries() -> dict:
    """v1 of MODEL, trained with CANARIES canaries by a real train flow run.

    15 epochs as tests/test_rum_flow.py: RUM stays under half a retrain, and it unlearns these
    canaries (at the default 30 epochs it passes the canary check far less often:
    benchmarks/results/canary_audit.md); seeds fixed, so the runs take the RUM path."""
    from flows.train import train_flow

    return train_flow(
        dataset="digits",
        recipe="mlp",
        name=MODEL,
        seed=0,
        overrides={"epochs": 15},
        canaries=CANARIES,
    )


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_rum_forgets_canaries_and_their_check_has_power(home: Path) -> None:
    from flows.forget import forget_flow
    from tasks import ledger, registry, verification, warehouse

    trained = _train_with_canaries()
    settings = Settings()
    assert trained["canaries"] == CANARIES
    cert1 = registry.load_version(settings, MODEL, 1).certificate
    assert cert1.parameters["canaries"] == CANARIES and cert1.parameters["canary_seed"] == 0
    assert cert1.forget_set_size == 0  # canaries are not anyone's erasure
    v1 = registry.load_version(settings, MODEL, 1)
    from tasks.publishing import model_from_version

    parent = model_from_version(v1)
    ds = load_digits_dataset()
    data = model_training_data(ds, parent)  # regenerated from the model card's spec
    assert len(parent.removed) == data.n_dataset + CANARIES and not parent.removed.any()
    canary_ids = {f"canary-{k}" for k in range(CANARIES)}
    assert canary_ids <= _feature_ids(settings, 1)  # proxies recorded for canaries too
    with warehouse.connect(settings) as con:  # no subject: not in the training index
        (n,) = con.execute(
            "SELECT count(*) FROM training_index WHERE starts_with(sample_id, 'canary-')"
        ).fetchall()[0]
    assert n == 0

    deliver(settings, "day1", [{"subject_id": s, "model_name": MODEL} for s in ("subject-3",)])
    (first,) = forget_flow(seed=0, model_name=MODEL, policy=AUDITED)["models"]
    assert first["method"] == "rum", first.get("failed_paths")
    cert2 = registry.load_version(settings, MODEL, 2).certificate
    priced = first["plan"]["chosen_params"]  # RUM was priced with its canaries included
    assert priced["canaries"] == CANARIES_PER_RUM_RUN
    assert sum(priced["group_sizes"].values()) == cert2.forget_set_size + CANARIES_PER_RUM_RUN
    audit = cert2.audit["rum_audit"]
    m = audit["metrics"]
    assert audit["passed"] and m["canaries_forgotten"] == CANARIES_PER_RUM_RUN
    assert m["canary_pvalue"] >= audit["thresholds"]["canary_pvalue"]
    # power: the canaries v2 still holds fit far better than twins, so a model that had not
    # unlearned the forgotten ones would have been caught
    assert m["canary_power_pvalue"] < audit["thresholds"]["canary_pvalue"]
    assert m["canary_loss_median_held"] < m["canary_loss_median_twins"]
    assert cert2.audit["canaries_forgotten"] == CANARIES_PER_RUM_RUN
    assert audit["sizes"]["forget"] == cert2.forget_set_size + CANARIES_PER_RUM_RUN
    run = registry.client(settings).get_run(
        registry.client(settings).get_model_version(MODEL, "2").run_id
    )
    assert {"audit.canary_pvalue", "audit.canary_power_pvalue"} <= set(run.data.metrics)
    # ledger: recorded like forgotten samples, by v2; their proxy rows are gone, others stay
    first_k = {f"canary-{k}" for k in range(CANARIES_PER_RUM_RUN)}
    assert _ledger_canaries(settings) == dict.fromkeys(first_k, 2)
    assert not first_k & (_feature_ids(settings, 1) | _feature_ids(settings, 2))
    assert canary_ids - first_k <= _feature_ids(settings, 2)
    with warehouse.connect(settings) as con:
        assert ledger.invariant_violations(con) == []
        (request,) = ledger.subject_requests(con, "subject-3")
    assert request["state"] == "applied" and request["model_version"] == 2

    # negative control: the parent (nothing unlearned) as the candidate, with the next canaries
    # in its forget set, fails the canary check
    subject_rows = np.flatnonzero(
        np.isin(data.sample_ids, ds.sample_ids[ds.subject_ids == "subject-5"])
    )
    nxt = next_canaries(parent.removed, data.n_dataset)[:CANARIES_PER_RUM_RUN]
    forget = np.union1d(subject_rows, nxt)
    mask = parent.removed.copy()
    mask[forget] = True
    control = verification.audit_rum(
        settings,
        dataset=ds,
        forget_rows=forget,
        model=replace(parent, removed=mask),
        test_rows=ds.test_rows(),
    )
    assert not control["passed"]
    assert any(r.startswith("canaries: ") for r in control["reasons"])
    assert control["metrics"]["canary_pvalue"] < control["thresholds"]["canary_pvalue"]

    # a later run forgets the next canaries, never the same ones again
    deliver(settings, "day2", [{"subject_id": "subject-42", "model_name": MODEL}])
    (second,) = forget_flow(seed=1, model_name=MODEL, policy=AUDITED)["models"]
    forgotten = _ledger_canaries(settings)
    if second["method"] == "rum":
        second_k = {f"canary-{k}" for k in range(CANARIES_PER_RUM_RUN, 2 * CANARIES_PER_RUM_RUN)}
        assert forgotten == {**dict.fromkeys(first_k, 2), **dict.fromkeys(second_k, 3)}
    else:  # a fallback retrain takes no canaries; it keeps v2's forgotten ones out
        assert second["method"] == "retrain" and forgotten == dict.fromkeys(first_k, 2)
        v3 = model_from_version(registry.load_version(settings, MODEL, 3))
        assert v3.removed[data.n_dataset : data.n_dataset + CANARIES_PER_RUM_RUN].all()
    assert not set(forgotten) & _feature_ids(settings, 3)

    # raw subject ids appear nowhere outside the ledger: MLflow's database and artifacts (the
    # canaries' spec and audit metrics are aggregates; canaries have no subject)
    needle = re.compile(rb"subject-(3|42)(?!\d)")
    scanned = [p for p in [home / "mlflow.db", *(home / "artifacts").rglob("*")] if p.is_file()]
    assert len(scanned) > 10
    assert not [p for p in scanned if needle.search(p.read_bytes())]


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_a_crash_after_registering_a_rum_version_still_records_its_canaries(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies between MLflow (v2 registered) and the ledger; the next run completes the
    ledger from v2's stored mask, canaries included, instead of unlearning again, so no later run
    tries to forget the same canaries twice."""
    from flows.forget import forget_flow
    from tasks import ledger, publishing, registry, warehouse

    _train_with_canaries()
    settings = Settings()
    deliver(settings, "day1", [{"subject_id": "subject-3", "model_name": MODEL}])
    real = ledger.finalize_run

    def killed(*args, **kwargs):
        raise ConnectionError("process killed between MLflow and DuckDB")

    monkeypatch.setattr(ledger, "finalize_run", killed)
    with pytest.raises(ConnectionError):
        forget_flow(seed=0, model_name=MODEL, policy=AUDITED)
    assert registry.next_version(settings, MODEL) == 3  # v2 reached MLflow
    assert _ledger_canaries(settings) == {}

    monkeypatch.setattr(ledger, "finalize_run", real)
    (again,) = forget_flow(seed=0, model_name=MODEL, policy=AUDITED)["models"]
    assert again["requests"] == 0  # recovered, not re-run
    stored = registry.load_version(settings, MODEL, 2)
    assert stored.certificate.method == "rum"  # as in the test above: same seeds, same path
    v2 = publishing.model_from_version(stored)
    n_dataset = len(v2.removed) - CANARIES
    forgotten = {f"canary-{k}" for k in np.flatnonzero(v2.removed[n_dataset:])}
    assert len(forgotten) == CANARIES_PER_RUM_RUN
    assert _ledger_canaries(settings) == dict.fromkeys(forgotten, 2)
    with warehouse.connect(settings) as con:
        assert ledger.invariant_violations(con) == []
        (request,) = ledger.subject_requests(con, "subject-3")
    assert request["state"] == "applied" and request["model_version"] == 2
