"""RUM through real flow runs: the full audit decides acceptance, proxies follow the version.

Real Prefect flow runs, MLflow SQLite, DuckDB and torch on digits with the `mlp` recipe under an
`audited` policy (tests/conftest.py harness)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from manifests import deliver  # tests/manifests.py (pytest puts tests/ on sys.path)

from data_contracts.policy import Policy
from data_contracts.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

MODEL = "digits-mlp"
AUDITED = Policy(guarantee="audited")
AUDIT_STATISTICS = (
    "forget_acc_gap",
    "retain_acc_gap",
    "test_acc_gap",
    "tow_loss",
    "mia_auc_gap",
    "ks_forget",
)


def _for_model(*subjects: str) -> list[dict]:
    return [{"subject_id": s, "model_name": MODEL} for s in subjects]


def _trained() -> Settings:
    from flows.train import train_flow

    # 15 epochs instead of 30 keep the test fast; RUM (~5 epochs) stays under half a retrain
    train_flow(dataset="digits", recipe="mlp", name=MODEL, seed=0, overrides={"epochs": 15})
    return Settings()


def _features(settings: Settings, version: int) -> dict[str, tuple]:
    from tasks import warehouse

    with warehouse.connect(settings) as con:
        rows = con.execute(
            "SELECT sample_id, confidence, holdout, curvature FROM memorization_features "
            "WHERE model_name = ? AND model_version = ?",
            [MODEL, version],
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def _train_subjects(settings: Settings, subjects: list[str]) -> list[str]:
    from tasks import warehouse

    with warehouse.connect(settings) as con:
        rows = con.execute(
            "SELECT sample_id FROM training_index WHERE dataset = 'digits' AND split = 'train' "
            "AND subject_id IN (SELECT unnest(?))",
            [subjects],
        ).fetchall()
    return [r[0] for r in rows]


def test_rum_runs_the_full_audit_and_proxies_follow_the_version(home: Path) -> None:
    from flows.forget import forget_flow
    from tasks import registry, warehouse

    settings = _trained()
    v1 = _features(settings, 1)
    assert len(v1) == 1437
    assert all(c is not None and h is not None and k is not None for c, h, k in v1.values())

    deliver(settings, "day1", _for_model("subject-3", "subject-17", "subject-42"))
    (first,) = forget_flow(seed=0, model_name=MODEL, policy=AUDITED)["models"]
    cert = registry.load_version(settings, MODEL, 2).certificate
    rum_audit = cert.audit.get("rum_audit") or cert.audit["failed_attempts"][0]
    if first["method"] == "rum":
        audit = cert.audit["rum_audit"]
        assert audit["passed"] and cert.guarantee == "audited" and cert.audit["passed"]
        for name in AUDIT_STATISTICS:  # every statistic was held to its noise-floor threshold
            assert audit["metrics"][name] <= audit["thresholds"][name]
            assert f"{name}_floor" in audit["metrics"]
        assert {"tow", "mia_auc", "mia_auc_reference", "ks_forget_pvalue"} <= set(audit["metrics"])
        refs = audit["references"]
        assert refs["cached"] is False and refs["runs"] == 4 and refs["subset_fraction"] == 0.5
        # 4 half-data models at twice the epochs, plus scoring passes
        assert refs["one_off_fraction_of_training"] == pytest.approx(4.0, rel=0.05)
        # the planner priced exactly that one-off into RUM's bill (cold cache)
        assert _rum_row(first)["one_off_grad_evals"] == pytest.approx(
            refs["one_off_grad_evals"], abs=0.1
        )
        assert cert.cost.predicted_grad_evals == cert.cost.grad_evals  # the path's own cost
        assert audit["sizes"]["forget"] == cert.forget_set_size
        version = registry.client(settings).get_model_version(MODEL, "2")
        assert version.tags["audit_passed"] == "true"
        run = registry.client(settings).get_run(version.run_id)
        assert {"audit.mia_auc", "audit.tow", "audit.ks_forget"} <= set(run.data.metrics)
    else:  # the audit failed: the certificate says why and the fallback is exact
        assert first["method"] == "retrain" and "rum" in first["failed_paths"]
        assert any(r.startswith("audit: ") for r in rum_audit["reasons"])
    assert cert.audit["proxies_from_version"] == 1
    assert _rum_row(first)["one_off_grad_evals"] > 3.5 * cert.cost.retrain_grad_evals

    # proxies of the version being unlearned: v2 carries v1's for the remaining rows (RUM keeps
    # the lineage) or records its own (a retrain), and the next run reads v2's
    forgotten = set(_train_subjects(settings, ["subject-3", "subject-17", "subject-42"]))
    v2 = _features(settings, 2)
    assert set(v2) == set(v1) - forgotten
    if first["method"] == "rum":
        assert all(v2[s] == v1[s] for s in v2)
    else:
        assert sum(v2[s][0] != v1[s][0] for s in v2) > len(v2) // 2

    # erasure: no per-sample table holds a row of a forgotten sample any more (v1's included),
    # the shadow reference keeps every other row, and the audit lookup still answers
    _assert_erased(settings, forgotten, remaining=len(v1) - len(forgotten))
    from tasks import ledger

    with warehouse.connect(settings) as con:
        (request,) = ledger.subject_requests(con, "subject-17")
        held = ledger.subject_influence(con, "subject-17")
    assert request["state"] == "applied" and request["model_version"] == 2
    assert request["certificate_sha256"] == cert.sha256()
    assert [(h["version"], h["serving"]) for h in held] == [(1, False)]
    # on demand: holdout and curvature of the RUM-modified weights replace the carried values
    from tasks.training import compute_extra_proxies

    filled = compute_extra_proxies.fn(settings, model_name=MODEL, version=2)
    assert filled["rows"] == len(v2) and filled["grad_evals"] > 0
    recomputed = _features(settings, 2)
    assert all(recomputed[s][0] == v2[s][0] for s in v2)  # confidence: recorded, not recomputed
    assert sum(recomputed[s][1] != v2[s][1] for s in v2) == len(v2)
    deliver(settings, "day2", _for_model("subject-101", "subject-7"))
    (second,) = forget_flow(seed=1, model_name=MODEL, policy=AUDITED)["models"]
    cert3 = registry.load_version(settings, MODEL, 3).certificate
    assert cert3.audit["proxies_from_version"] == 2
    assert _rum_row(second)["one_off_grad_evals"] == 0.0  # the references are cached now
    if second["method"] == "rum" or "rum" in second["failed_paths"]:
        audit = cert3.audit.get("rum_audit") or cert3.audit["failed_attempts"][0]
        if "references" in audit:
            assert audit["references"]["cached"] is True  # shadow models trained once
            assert audit["references"]["grad_evals_this_run"] == 0.0
    with warehouse.connect(settings) as con:
        keys = con.execute(
            "SELECT count(DISTINCT reference_key) FROM reference_memorization"
        ).fetchall()[0][0]
    assert keys == 1
    forgotten |= set(_train_subjects(settings, ["subject-101", "subject-7"]))
    _assert_erased(settings, forgotten, remaining=len(v1) - len(forgotten))


def _rum_row(summary: dict) -> dict:
    (row,) = [c for c in summary["plan"]["candidates"] if c["path"] == "rum"]
    return row


def _assert_erased(settings: Settings, forgotten: set[str], *, remaining: int) -> None:
    """No per-sample table has a row of a `forgotten` sample; the reference has `remaining` rows."""
    from tasks import erasure, warehouse

    with warehouse.connect(settings) as con:
        for table in erasure.PER_SAMPLE_TABLES:
            hits = con.execute(
                f"SELECT count(*) FROM {table} WHERE sample_id IN (SELECT unnest(?))",
                [sorted(forgotten)],
            ).fetchall()[0][0]
            assert hits == 0, table
        kept = con.execute("SELECT count(*) FROM reference_memorization").fetchall()[0][0]
        runs = con.execute(
            "SELECT count(*) FROM reference_predictions WHERE sample_id LIKE 'digits-%'"
        ).fetchall()[0][0]
    assert kept == remaining
    assert runs > 4 * remaining  # training rows of every shadow, plus the test rows


def test_a_rum_that_does_not_unlearn_fails_its_audit_and_falls_back_to_retrain(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: RUM with zero fine-tune and NegGrad+ epochs returns the parent unchanged.
    On the most memorised subjects (lowest confidence proxy) the audit must catch it."""
    from flows.forget import forget_flow
    from models import rum
    from tasks import registry, warehouse

    settings = _trained()
    with warehouse.connect(settings) as con:
        rows = con.execute(
            """SELECT t.subject_id FROM memorization_features f JOIN training_index t
                 ON t.sample_id = f.sample_id AND t.dataset = 'digits'
               WHERE f.model_name = ? AND f.model_version = 1
               ORDER BY f.confidence LIMIT 40""",
            [MODEL],
        ).fetchall()
    subjects = list(dict.fromkeys(r[0] for r in rows))
    monkeypatch.setattr(
        rum, "RumRecipe", functools.partial(rum.RumRecipe, finetune_epochs=0, neggrad_epochs=0)
    )
    deliver(settings, "day1", _for_model(*subjects))
    (model,) = forget_flow(seed=0, model_name=MODEL, policy=AUDITED)["models"]

    assert model["failed_paths"] == ["rum"] and model["method"] == "retrain"
    cert = registry.load_version(settings, MODEL, 2).certificate
    assert cert.guarantee == "exact" and cert.lineage == "plain"
    (attempt,) = cert.audit["failed_attempts"]
    assert attempt["path"] == "rum"
    failed = {r.split(" ")[1] for r in attempt["reasons"] if r.startswith("audit: ")}
    assert failed & {"forget_acc_gap", "mia_auc_gap", "ks_forget"}, attempt["reasons"]
    metrics = attempt["metrics"]  # the parent still fits rows a model without them gets wrong
    assert metrics["audit.forget_acc"] > metrics["audit.forget_acc_reference"] + 0.1
    assert np.isfinite(attempt["metrics"]["audit.ks_forget_floor"])
    # the fallback retrain recorded its own learning events: v2 has proxies of its own
    v1, v2 = _features(settings, 1), _features(settings, 2)
    forgotten = set(_train_subjects(settings, subjects))
    assert set(v2) == set(v1) and not set(v2) & forgotten  # v1's forgotten rows are erased
    assert sum(v2[s][0] != v1[s][0] for s in v2) > len(v2) // 2
    assert all(h is None and k is None for _, h, k in v2.values())  # extras: on demand only
    with warehouse.connect(settings) as con:
        visits = con.execute(
            "SELECT min(visits) FROM memorization_features WHERE model_name = ? "
            "AND model_version = 2",
            [MODEL],
        ).fetchall()[0][0]
    assert visits == 15  # one observation per epoch of the retrain
