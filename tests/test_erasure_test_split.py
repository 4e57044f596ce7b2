"""A forgotten subject's *test-split* rows: withdrawn from every later evaluation and RUM audit,
and their shadow-reference rows erased with the ledger change (GDPR art. 17(1)).

The first test drives the ledger and the erasure on a real DuckDB warehouse with the digits
training index and a real (small) shadow reference; the second runs real Prefect flow runs of an
audited MLP (tests/conftest.py harness, real MLflow SQLite and torch on digits)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from manifests import deliver  # tests/manifests.py (pytest puts tests/ on sys.path)

from data_contracts.policy import Policy
from data_contracts.settings import Settings

# digits subjects are 4 consecutive rows; the seeded split puts 2 of subject-3's and
# subject-17's rows in the test split, 1 of subject-7's and none of subject-0's
BOTH_SPLITS = ("subject-3", "subject-17", "subject-7")
TRAIN_ONLY = "subject-0"


def _split_ids(con, subject: str) -> dict[str, list[str]]:
    rows = con.execute(
        "SELECT split, list(sample_id ORDER BY sample_id) FROM training_index "
        "WHERE dataset = 'digits' AND subject_id = ? GROUP BY split",
        [subject],
    ).fetchall()
    return {"train": [], "test": [], **dict(rows)}


def _predictions_of(con, ids: list[str]) -> int:
    return con.execute(
        "SELECT count(*) FROM reference_predictions WHERE sample_id IN (SELECT unnest(?))", [ids]
    ).fetchall()[0][0]


def test_withdrawn_test_rows_follow_the_ledger_and_leave_the_reference_without_a_rebuild(
    fresh_state, tmp_path: Path
) -> None:
    from models.datasets import load_digits_dataset
    from models.mlp import MlpRecipe
    from tasks import erasure, features, ingest, ledger, warehouse

    settings = fresh_state(tmp_path / "home", "salt")
    ds = load_digits_dataset()
    train, test = ds.train_rows(), ds.test_rows()
    with warehouse.connect(settings) as con:
        # a second model of the dataset: a training sample stays in the shared reference until
        # both have forgotten it, a test row leaves at the first application
        warehouse.add_model(con, model_name="digits-other", dataset="digits", recipe="pnsgd")
        a, b = _split_ids(con, "subject-3"), _split_ids(con, "subject-17")

        def reference(test_ids: list[str]) -> features.CachedReference:
            keep = np.isin(ds.sample_ids[test], test_ids)
            return features.cached_reference(
                con,
                dataset="digits",
                sample_ids=ds.sample_ids[train].tolist(),
                x=ds.features[train],
                y=ds.labels[train],
                test_ids=test_ids,
                x_test=ds.features[test][keep],
                y_test=ds.labels[test][keep],
                classes=ds.classes,
                recipe=MlpRecipe(hidden=16, epochs=1),
                runs=4,
                balanced_out_per_row=2,
            )

        all_test = ds.sample_ids[test].tolist()
        built = reference(all_test)
        assert not built.cached and _predictions_of(con, a["test"] + b["test"]) == 4 * 4

        # subject-3 asks for everything; subject-17 names one training sample only
        deliver(
            settings,
            "day1",
            [
                {"subject_id": "subject-3"},
                {
                    "subject_id": "subject-17",
                    "model_name": "digits-logreg",
                    "sample_ids": b["train"][:1],
                },
            ],
        )
        # the manifest's validation is not under test here: the SQL engine skips GX's start-up
        (outcome,) = [
            ingest.ingest_file(con, settings, p, engine="duckdb-sql")
            for p in settings.inbox.iterdir()
        ]
        assert outcome.outcome == "ingested"
        claim = ledger.claim_pending(con, model_name="digits-logreg", run_id="r1", salt="s")
        assert len(claim.request_keys) == 2
        assert ledger.withdrawn_test_ids(con, dataset="digits") == []
        # the claiming run leaves them out already; a request naming samples withdraws no test row
        assert ledger.withdrawn_test_ids(con, dataset="digits", run_id="r1") == a["test"]
        ledger.release_run(con, run_id="r1", status="failed", reason="test")
        assert ledger.withdrawn_test_ids(con, dataset="digits", run_id="r1") == []

        claim = ledger.claim_pending(con, model_name="digits-logreg", run_id="r2", salt="s")
        ledger.finalize_run(
            con,
            claim=claim,
            model_version=2,
            certificate_sha256="c" * 64,
            guarantee="exact",
            plan=None,
            summary={},
            version_row=None,
        )
        states = dict(con.execute("SELECT request_id, state FROM requests").fetchall())
        assert states == {"day1-0": "pending", "day1-1": "applied"}  # day1-0 awaits digits-other
        assert ledger.withdrawn_test_ids(con, dataset="digits") == a["test"]
        assert _predictions_of(con, a["test"]) == 0  # erased in the finalizing transaction
        assert _predictions_of(con, a["train"]) == 4 * len(a["train"])  # digits-other holds them
        assert _predictions_of(con, b["test"]) == 4 * len(b["test"])
        remaining = [s for s in all_test if s not in a["test"]]
        assert features.reference_complete(con, built.key, remaining, 4)
        assert not features.reference_complete(con, built.key, all_test, 4)
        # an audit asking for the test rows still in use reads the cache: no rebuild
        again = reference(remaining)
        assert again.cached and again.key == built.key
        np.testing.assert_allclose(
            again.test_p_true, built.test_p_true[:, np.isin(all_test, remaining)]
        )
        # idempotent: a second pass finds nothing left to delete
        with warehouse.transaction(con):
            deleted = erasure.erase_derived_rows(
                con,
                model_name="digits-logreg",
                withdrawn_test_ids=ledger.withdrawn_test_ids(con, dataset="digits"),
            )
        assert deleted == dict.fromkeys(erasure.PER_SAMPLE_TABLES, 0)
        assert ledger.invariant_violations(con) == []


MODEL = "digits-mlp"
AUDITED = Policy(guarantee="audited")


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_forgotten_subjects_test_rows_leave_evaluation_audit_and_reference(home: Path) -> None:
    """Three audited runs of an MLP: the first builds the shadow cache, the second forgets a
    subject whose test rows the cache holds (erased when it finalizes), the third audits again
    from the cache (no rebuild) on n_test - k rows."""
    from flows.forget import forget_flow
    from flows.train import train_flow
    from tasks import registry, warehouse

    train_flow(dataset="digits", recipe="mlp", name=MODEL, seed=0, overrides={"epochs": 15})
    settings = Settings()
    with warehouse.connect(settings) as con:
        ids = {s: _split_ids(con, s) for s in (*BOTH_SPLITS, TRAIN_ONLY)}
        n_test = con.execute(
            "SELECT count(*) FROM training_index WHERE dataset = 'digits' AND split = 'test'"
        ).fetchall()[0][0]
    k = {s: len(v["test"]) for s, v in ids.items()}
    assert (k["subject-3"], k["subject-17"], k["subject-7"], k[TRAIN_ONLY]) == (2, 2, 1, 0)

    def run(day: str, subjects: list[str], seed: int) -> tuple[dict, dict]:
        """One audited flow run; its summary and the metrics of the run's RUM attempt (the
        version's own, or the failed attempt kept in its certificate before the fallback)."""
        deliver(settings, day, [{"subject_id": s, "model_name": MODEL} for s in subjects])
        (summary,) = forget_flow(seed=seed, model_name=MODEL, policy=AUDITED)["models"]
        cert = registry.load_version(settings, MODEL, summary["version"]).certificate
        if summary["method"] == "rum":
            return summary, cert.metrics
        assert "rum" in summary["failed_paths"], summary["plan"]  # RUM was tried: its audit ran
        (attempt,) = [a for a in cert.audit["failed_attempts"] if a["path"] == "rum"]
        return summary, attempt["metrics"]

    # run 1 (cold cache): subject-3's test rows are out of its evaluation, audit and shadows
    first, rum = run("day1", ["subject-3"], seed=0)
    assert first["test_rows_withdrawn"] == 2 and first["test_set_size"] == n_test - 2
    assert rum["test_set_size"] == rum["audit.test_set_size"] == n_test - 2
    assert rum["audit.reference_grad_evals_this_run"] > 0  # the shadows were trained now
    with warehouse.connect(settings) as con:
        assert _predictions_of(con, ids["subject-3"]["test"]) == 0  # never scored
        assert _predictions_of(con, ids["subject-17"]["test"] + ids["subject-7"]["test"]) == 12

    # run 2: the cache holds subject-17's and subject-7's test rows; the run reads it without
    # them and its finalizing transaction erases them
    second, rum = run("day2", ["subject-17", "subject-7"], seed=1)
    assert second["test_rows_withdrawn"] == 5 and second["test_set_size"] == n_test - 5
    assert rum["audit.test_set_size"] == n_test - 5
    assert rum["audit.reference_grad_evals_this_run"] == 0.0  # read from the cache
    withdrawn = [t for s in BOTH_SPLITS for t in ids[s]["test"]]
    with warehouse.connect(settings) as con:
        assert _predictions_of(con, withdrawn) == 0
        test_preds = con.execute(
            "SELECT count(*) FROM reference_predictions p JOIN training_index t "
            "ON t.sample_id = p.sample_id AND t.dataset = 'digits' WHERE t.split = 'test'"
        ).fetchall()[0][0]
        built_at = con.execute("SELECT min(computed_at) FROM reference_memorization").fetchall()
    assert test_preds == 4 * (n_test - 5)

    # run 3 (a train-only subject): priced and audited from the cache after the erasure, on the
    # n_test - 5 test rows still in use
    third, rum = run("day3", [TRAIN_ONLY], seed=2)
    (rum_row,) = [c for c in third["plan"]["candidates"] if c["path"] == "rum"]
    assert rum_row["one_off_grad_evals"] == 0.0
    assert rum["audit.reference_grad_evals_this_run"] == 0.0
    assert third["test_rows_withdrawn"] == 5 and rum["audit.test_set_size"] == n_test - 5
    assert np.isfinite([rum[f"audit.{m}"] for m in ("mia_auc", "tow", "ks_forget")]).all()
    with warehouse.connect(settings) as con:
        assert (
            con.execute("SELECT min(computed_at) FROM reference_memorization").fetchall()
            == built_at
        )
        assert _predictions_of(con, withdrawn) == 0
        summaries = con.execute(
            "SELECT summary_json FROM runs WHERE model_name = ? AND status = 'finished'",
            [MODEL],
        ).fetchall()
    counted = sorted(json.loads(r[0])["test_rows_withdrawn"] for r in summaries)
    assert counted == [2.0, 5.0, 5.0]  # the run summaries carry the count, never ids

    # raw subject ids appear nowhere outside the ledger: MLflow's database and artifacts
    needle = re.compile(rb"subject-(3|17|7|0)(?!\d)")
    scanned = [p for p in [home / "mlflow.db", *(home / "artifacts").rglob("*")] if p.is_file()]
    assert len(scanned) > 10
    assert not [p for p in scanned if needle.search(p.read_bytes())]


def test_a_subject_with_test_rows_only_files_a_request_that_withdraws_them(home: Path) -> None:
    """breast_cancer's seeded split puts all four rows of subject-86 in the test split: no model
    trains on them, yet every evaluation reads them. Their request is accepted (an unknown
    subject still is not), applied without a new version, and their rows leave later runs."""
    from cli_json import cli_json

    from flows.forget import forget_flow
    from flows.train import train_flow
    from tasks import ledger, warehouse

    name, exact = "bc-sisa", Policy(guarantee="exact")
    small = {"shards": 3, "slices": 2, "epochs_per_slice": 2}
    train_flow(dataset="breast_cancer", recipe="sisa", name=name, seed=0, overrides=small)
    settings = Settings()
    with warehouse.connect(settings) as con:
        splits = dict(
            con.execute(
                "SELECT split, list(sample_id ORDER BY sample_id) FROM training_index "
                "WHERE dataset = 'breast_cancer' AND subject_id = 'subject-86' GROUP BY split"
            ).fetchall()
        )
    assert list(splits) == ["test"] and len(splits["test"]) == 4

    deliver(settings, "day1", [{"subject_id": "subject-86"}, {"subject_id": "subject-99999"}])
    (summary,) = forget_flow(seed=0, model_name=name, policy=exact)["models"]
    assert summary["method"] == "none-needed" and summary["version"] == 1
    with warehouse.connect(settings) as con:
        states = dict(con.execute("SELECT request_id, state FROM requests").fetchall())
        withdrawn = ledger.withdrawn_test_ids(con, dataset="breast_cancer")
        assert ledger.invariant_violations(con) == []
    assert states == {"day1-0": "applied", "day1-1": "quarantined"}
    assert withdrawn == splits["test"]
    audit = cli_json(["audit", "subject-86", "--json"])
    assert [(r["model_name"], r["model_version"]) for r in audit["requests"]] == [(name, 1)]
    assert audit["versions_with_influence"] == []

    # the next run evaluates without them
    deliver(settings, "day2", [{"subject_id": "subject-0"}])
    (second,) = forget_flow(seed=0, model_name=name, policy=exact)["models"]
    assert second["version"] == 2 and second["test_rows_withdrawn"] == 4
