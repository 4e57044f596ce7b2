"""A model trained after an erasure never learns the erased subjects (GDPR art. 17(1)).

The unit tests train real torch models on the digits data with rows excluded and compare them to
the retrain path (models.unlearning._retrain) on the same kept rows and seed: the same bytes. The
flow test runs real Prefect flows (tests/conftest.py harness) with real MLflow SQLite and DuckDB:
model A forgets a subject, then model B is trained on the same dataset and must be born having
forgotten them, with the ledger, certificate and `forgetflow audit` saying so."""

from __future__ import annotations

import numpy as np
import pytest
from cli_json import cli_json  # tests/cli_json.py (pytest puts tests/ on sys.path)
from manifests import deliver

from models.datasets import load_dataset
from models.learning_events import LearningEvents
from models.planner import ModelLedger
from models.training import train_model
from models.unlearning import _retrain

# Recipes shrunk so each trains in about a second on digits; the equality does not depend on size.
SMALL = {
    "mlp": {"hidden": 16, "epochs": 3},
    "pnsgd": {"epochs": 3},
    "sisa": {"shards": 3, "slices": 2, "epochs_per_slice": 2},
    "pcmu": {"steps": 20},
    "pcmu-sisa": {"shards": 4, "steps": 20},
}


def _excluded(ds) -> np.ndarray:
    """Training-split positions of two subjects' rows (what an applied erasure leaves out)."""
    subjects = ds.subject_ids[ds.train_rows()]
    return np.flatnonzero(np.isin(subjects, ["subject-3", "subject-17"]))


def _proxies_equal(a: LearningEvents, b: LearningEvents) -> None:
    pa, pb = a.proxies(), b.proxies()
    assert pa.keys() == pb.keys()
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)
    np.testing.assert_array_equal(a.counts.numpy(), b.counts.numpy())


@pytest.mark.parametrize("recipe", ["mlp", "pnsgd", "sisa", "pcmu", "pcmu-sisa"])
def test_training_with_exclusions_equals_the_retrain_of_the_kept_rows(recipe: str) -> None:
    ds = load_dataset("digits")
    rows = ds.train_rows()
    x, y = ds.features[rows], ds.labels[rows]
    out = _excluded(ds)
    assert len(out) >= 4
    run = train_model(ds, recipe_name=recipe, seed=7, overrides=SMALL[recipe], exclude_rows=out)
    model = run.model
    np.testing.assert_array_equal(np.flatnonzero(model.removed), out)
    assert model.n_retained == len(rows) - len(out)
    # no learning event was recorded on an excluded row: the fit never read them
    assert run.events.counts.numpy()[out].sum() == 0
    assert run.events.counts.numpy()[~model.removed].min() > 0

    # The retrain path, from the same recipe with nothing removed yet, keeping the same rows.
    keep = ~model.removed
    fresh = type(model)(
        recipe_name=model.recipe_name,
        lineage=model.lineage,
        classes=model.classes,
        recipe=model.recipe,
        arrays=model.arrays,
        removed=np.zeros(len(y), dtype=bool),
        seed=model.seed,
    )
    retrained = _retrain(fresh, x, y, keep, ModelLedger(lineage=model.lineage), 7, None)
    assert retrained.model.arrays.keys() == model.arrays.keys()
    for name, arr in model.arrays.items():
        np.testing.assert_array_equal(arr, retrained.model.arrays[name], err_msg=name)
    np.testing.assert_array_equal(retrained.model.removed, model.removed)
    assert retrained.cost.grad_evals == run.cost.grad_evals
    _proxies_equal(run.events, retrained.events)


@pytest.mark.parametrize("recipe", ["mlp", "pnsgd", "sisa"])
def test_excluded_rows_change_the_model_and_no_exclusion_changes_nothing(recipe: str) -> None:
    """Guards against an exclusion that is silently ignored (the first test would then compare
    two full trainings only if _retrain ignored `keep` too)."""
    ds = load_dataset("digits")
    full = train_model(ds, recipe_name=recipe, seed=7, overrides=SMALL[recipe])
    empty = train_model(
        ds, recipe_name=recipe, seed=7, overrides=SMALL[recipe], exclude_rows=np.array([], int)
    )
    cut = train_model(
        ds, recipe_name=recipe, seed=7, overrides=SMALL[recipe], exclude_rows=_excluded(ds)
    )
    assert not full.model.removed.any() and not empty.model.removed.any()
    for name, arr in full.model.arrays.items():
        np.testing.assert_array_equal(arr, empty.model.arrays[name], err_msg=name)
    weights = (
        "weights.0" if recipe == "mlp" else "weights" if recipe == "pnsgd" else "shard_weights"
    )
    assert not np.array_equal(full.model.arrays[weights], cut.model.arrays[weights])


def test_exclusions_are_checked() -> None:
    ds = load_dataset("digits")
    n = len(ds.train_rows())
    with pytest.raises(ValueError, match="positions in"):
        train_model(ds, recipe_name="pnsgd", seed=0, exclude_rows=np.array([n]))
    with pytest.raises(ValueError, match="nothing to train on"):
        train_model(ds, recipe_name="pnsgd", seed=0, exclude_rows=np.arange(n))


A, B = "digits-a", "digits-b"


def test_a_model_trained_after_an_erasure_is_born_having_forgotten_it(home) -> None:
    """Model A forgets three requests; model B, trained afterwards on the same data, never sees
    what they erased, says so in its v1 certificate and ledger, and still gets the request that
    was pending at its training time from the next run."""
    import re

    from typer.testing import CliRunner

    from data_contracts.policy import Policy
    from data_contracts.settings import Settings
    from flows.cli import app
    from flows.forget import forget_flow
    from flows.train import train_flow
    from tasks import ledger, publishing, registry, warehouse

    exact = Policy(guarantee="exact")
    train_flow(dataset="digits", recipe="sisa", name=A, seed=0, overrides=SMALL["sisa"])
    settings = Settings()
    with warehouse.connect(settings) as con:
        split = {
            s: dict(
                con.execute(
                    "SELECT split, list(sample_id ORDER BY sample_id) FROM training_index "
                    "WHERE dataset = 'digits' AND subject_id = ? GROUP BY split",
                    [s],
                ).fetchall()
            )
            for s in ("subject-3", "subject-17", "subject-0", "subject-7")
        }
    assert len(split["subject-3"]["test"]) == 2 and len(split["subject-0"]["train"]) == 4
    named = split["subject-0"]["train"][:1]
    deliver(
        settings,
        "day1",
        [
            {"subject_id": "subject-3"},  # every model, all their data (train and test rows)
            {"subject_id": "subject-17", "model_name": A},  # model A only
            {"subject_id": "subject-0", "sample_ids": named},  # every model, one sample
        ],
    )
    (done,) = forget_flow(seed=0, model_name=A, policy=exact)["models"]
    assert done["version"] == 2
    # subject-7's request arrives and is ingested, but no run applies it before B is trained
    deliver(settings, "day2", [{"subject_id": "subject-7"}])
    (dry,) = forget_flow(seed=0, model_name=A, policy=exact, dry_run=True)["models"]
    assert dry["dry_run"]
    with warehouse.connect(settings) as con:
        states = dict(con.execute("SELECT request_id, state FROM requests").fetchall())
    assert states == {
        "day1-0": "applied",
        "day1-1": "applied",
        "day1-2": "applied",
        "day2-0": "pending",
    }

    trained = train_flow(
        dataset="digits", recipe="mlp", name=B, seed=0, overrides={"hidden": 16, "epochs": 5}
    )
    assert trained["version"] == 1 and trained["forgotten_at_training"] == 3
    assert trained["requests_applied_at_training"] == 2  # day1-1 targets model A only
    stored = registry.load_version(settings, B, 1)
    model = publishing.model_from_version(stored)
    with warehouse.connect(settings) as con:
        hashes = dict(con.execute("SELECT request_id, request_hash FROM requests").fetchall())
        forgotten = con.execute(
            "SELECT sample_id, model_version FROM forgotten_samples WHERE model_name = ? "
            "ORDER BY sample_id",
            [B],
        ).fetchall()
        applications = con.execute(
            "SELECT r.request_id, a.model_version, a.guarantee, a.certificate_sha256 "
            "FROM applications a JOIN requests r USING (file_id, row_number) "
            "WHERE a.model_name = ? ORDER BY r.request_id",
            [B],
        ).fetchall()
        feature_ids = {
            r[0]
            for r in con.execute(
                "SELECT sample_id FROM memorization_features WHERE model_name = ?", [B]
            ).fetchall()
        }
        assert ledger.invariant_violations(con) == []
    ds = load_dataset("digits")
    train_ids = ds.sample_ids[ds.train_rows()]
    erased = sorted(split["subject-3"]["train"] + named)
    # B never trained on the erased rows; subject-17 (A only) and subject-7 (pending) it did
    assert sorted(train_ids[model.removed].tolist()) == erased
    assert forgotten == [(s, 1) for s in erased]
    assert not set(split["subject-17"]["train"] + split["subject-7"]["train"]) & set(erased)
    # no proxies were derived from erased rows; the rest got theirs (holdout included)
    assert feature_ids == set(train_ids.tolist()) - set(erased)
    cert = stored.certificate
    assert cert.request_id_hashes == sorted([hashes["day1-0"], hashes["day1-2"]])
    assert cert.request_merkle_root is not None and cert.forget_set_size == 3
    # subject-3's and subject-17's test rows: a request for all data withdraws the test rows
    # from every model of the dataset once applied for any (tasks.ledger.withdrawn_test_ids)
    withdrawn = split["subject-3"]["test"] + split["subject-17"]["test"]
    assert cert.metrics["test_rows_withdrawn"] == float(len(withdrawn)) == 4.0
    assert cert.metrics["test_set_size"] == float(len(ds.test_rows()) - 4)
    assert cert.metrics["train_size"] == float(len(train_ids) - 3)
    assert applications == [
        ("day1-0", 1, "exact", cert.sha256()),
        ("day1-2", 1, "exact", cert.sha256()),
    ]

    audit = cli_json(["audit", "subject-3", "--json"])
    by_model = {(r["model_name"], r["model_version"], r["guarantee"]) for r in audit["requests"]}
    assert (B, 1, "exact") in by_model and (A, 2, "exact") in by_model
    assert audit["versions_with_influence"] == [
        {"model_name": A, "version": 1, "serving": False, "samples": 2}
    ]
    audit0 = cli_json(["audit", "subject-0", "--json"])
    assert {(v["model_name"], v["version"]) for v in audit0["versions_with_influence"]} == {
        (A, 1),
        (A, 2),
        (B, 1),  # it named one of its four samples: the other three stay
    }

    # the request pending at B's training time: the next run forgets it for both models
    report = forget_flow(seed=0, model_name=None, policy=exact)
    assert {m["model_name"]: m["version"] for m in report["models"]} == {A: 3, B: 2}
    with warehouse.connect(settings) as con:
        state = con.execute("SELECT state FROM requests WHERE request_id = 'day2-0'").fetchall()
        assert state == [("applied",)]
    seven = cli_json(["audit", "subject-7", "--json"])
    assert {(r["model_name"], r["model_version"]) for r in seven["requests"]} == {(A, 3), (B, 2)}
    assert all(not v["serving"] for v in seven["versions_with_influence"])

    assert CliRunner().invoke(app, ["verify"]).exit_code == 0  # every certificate chain holds

    # raw subject ids appear nowhere outside the ledger: MLflow's database and artifacts
    needle = re.compile(rb"subject-(3|17|0|7)(?!\d)")
    scanned = [p for p in [home / "mlflow.db", *(home / "artifacts").rglob("*")] if p.is_file()]
    assert scanned and not [p for p in scanned if needle.search(p.read_bytes())]


def test_holdout_proxy_skips_forgotten_rows_and_withdrawn_test_rows() -> None:
    """extra_proxies fine-tunes on the test split minus the withdrawn rows and scores only the
    training rows the model holds (NaN for the others)."""
    from models.memorization import holdout_retraining_proxy
    from models.mlp import MlpRecipe
    from tasks.training import HOLDOUT_FINETUNE_EPOCHS, extra_proxies

    ds = load_dataset("digits")
    out = _excluded(ds)
    model = train_model(
        ds, recipe_name="mlp", seed=3, overrides=SMALL["mlp"], exclude_rows=out
    ).model
    test = ds.test_rows()
    withdrawn = ds.sample_ids[test][:5].tolist()
    scores = extra_proxies(ds, model, seed=3, withdrawn_test_ids=withdrawn)
    kept = ds.train_rows()[~model.removed]
    expected = holdout_retraining_proxy(
        model.mlp_state(),
        ds.features[kept],
        ds.labels[kept],
        x_holdout=ds.features[test[5:]],
        y_holdout=ds.labels[test[5:]],
        recipe=MlpRecipe(
            epochs=HOLDOUT_FINETUNE_EPOCHS,
            batch_size=model.recipe["batch_size"],
            lr=model.recipe["lr"],
        ),
        seed=3,
    )
    for name, p in scores.items():
        assert np.isnan(p.scores[out]).all() and np.isfinite(p.scores[~model.removed]).all(), name
    np.testing.assert_array_equal(scores["holdout"].scores[~model.removed], expected.scores)
    unwithdrawn = extra_proxies(ds, model, seed=3)["holdout"].scores[~model.removed]
    assert not np.array_equal(unwithdrawn, expected.scores)  # the withdrawn rows mattered
