"""Batching of pending requests (issue 6 "deadline handling"): the pure decision
(models/batching.py), the pending-request query against a real DuckDB ledger, and real Prefect
flow runs that hold a small batch, run a full one, run early for a deadline and on `--now`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_json import cli_json  # tests/cli_json.py
from manifests import deliver  # tests/manifests.py (pytest puts tests/ on sys.path)
from pydantic import ValidationError

from data_contracts.hashing import salted_hash
from data_contracts.policy import Policy
from models.batching import IMPLIED_DEADLINE, PendingRequest, decide

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
POLICY = {"min_batch": 3, "max_hold_days": 7.0, "deadline_margin_days": 3.0}


def request(
    name: str, *, received_days_ago: float = 1, deadline_in_days: float | None = 20
) -> PendingRequest:
    received = NOW - timedelta(days=received_days_ago)
    return PendingRequest(
        request_hash=f"hash-{name}",
        received_at=received,
        requested_at=received - timedelta(hours=1),
        deadline=None if deadline_in_days is None else NOW + timedelta(days=deadline_in_days),
    )


def test_a_small_batch_with_far_deadlines_is_held_until_the_earliest_forcing_time() -> None:
    pending = [request("a", received_days_ago=2), request("b", deadline_in_days=9)]
    d = decide(pending, now=NOW, **POLICY)
    assert not d.run and d.pending == 2 and d.overdue == 0
    # a: received 2 d ago -> forced in 5 d; b: due in 9 d -> forced in 6 d (3 d margin)
    assert d.forced_at == NOW + timedelta(days=5)
    assert d.held == ("hash-a", "hash-b") and d.forcing == ()
    assert "2 pending < min_batch 3" in d.reason and "max_hold_days 7" in d.reason
    assert d.earliest_deadline == NOW + timedelta(days=9)
    # the deadline side wins when it comes first
    closer = decide([request("c", deadline_in_days=4)], now=NOW, **POLICY)
    assert not closer.run and closer.forced_at == NOW + timedelta(days=1)
    assert "deadline_margin_days 3" in closer.reason


def test_reaching_min_batch_runs() -> None:
    d = decide([request(x) for x in "abc"], now=NOW, **POLICY)
    assert d.run and d.reason == "batch: 3 pending >= min_batch 3" and d.held == ()
    # the defaults (min_batch 1) run any pending request, as before batching existed
    assert decide([request("a")], now=NOW, **Policy().model_dump(include=set(POLICY))).run


def test_an_overdue_request_forces_the_run_and_is_counted() -> None:
    d = decide([request("late", deadline_in_days=-1), request("b")], now=NOW, **POLICY)
    assert d.run and d.overdue == 1 and d.forcing == ("hash-late",) and d.forcing_count == 1
    assert d.reason.startswith("deadline: 1 of 2 pending") and "(1 overdue)" in d.reason
    assert "forced by request hash-late" in d.why


def test_a_deadline_inside_the_margin_forces_the_run_before_it_is_overdue() -> None:
    inside = decide([request("soon", deadline_in_days=2.9)], now=NOW, **POLICY)
    assert inside.run and inside.overdue == 0 and inside.forcing == ("hash-soon",)
    outside = decide([request("later", deadline_in_days=3.1)], now=NOW, **POLICY)
    assert not outside.run


def test_a_request_held_max_hold_days_forces_the_run() -> None:
    d = decide([request("old", received_days_ago=7), request("new")], now=NOW, **POLICY)
    assert d.run and d.forcing == ("hash-old",) and d.reason.startswith("age: 1 of 2 pending")
    assert not decide([request("old", received_days_ago=6.9)], now=NOW, **POLICY).run


def test_a_request_without_deadline_is_due_a_short_month_after_it_was_made() -> None:
    made_26_days_ago = PendingRequest(
        request_hash="hash-x",
        received_at=NOW - timedelta(days=0.5),
        requested_at=NOW - timedelta(days=26),
        deadline=None,
    )
    assert made_26_days_ago.due == NOW - timedelta(days=26) + IMPLIED_DEADLINE
    d = decide([made_26_days_ago], now=NOW, **POLICY)
    assert d.run and d.overdue == 0 and "implied one-month deadline" in d.reason


def test_a_manual_run_bypasses_holding_and_nothing_pending_is_nothing_to_do() -> None:
    d = decide([request("a")], now=NOW, manual=True, **POLICY)
    assert d.run and d.reason.startswith("manual run") and d.forced_at is not None
    empty = decide([], now=NOW, manual=True, **POLICY)
    assert not empty.run and empty.pending == 0 and empty.forced_at is None


def test_the_forget_now_form_overrides_batching_and_can_run_now() -> None:
    from deployments.parameters import ForgetRunParameters

    assert ForgetRunParameters(min_batch=5).policy() == Policy(min_batch=5)
    assert ForgetRunParameters(run_now=True).policy() is None  # not a policy field
    with pytest.raises(ValidationError):
        ForgetRunParameters(max_hold_days=0)


def test_the_run_summary_says_why_a_model_was_held_or_run_now() -> None:
    from flows.reporting import summary_markdown

    held = decide([request("a")], now=NOW, **POLICY)
    forced = decide([request("late", deadline_in_days=-1)], now=NOW, **POLICY)
    report = {
        "status": {"states": {"pending": 1}, "rows_received": 1},
        "models": [
            {"model_name": "m", "method": "held", "requests": 1, "batch": held.as_dict()},
            {
                "model_name": "n",
                "version": 2,
                "method": "pnsgd",
                "guarantee": "certified",
                "epsilon": 0.5,
                "delta": 1e-3,
                "requests": 1,
                "samples": 2,
                "grad_evals": 10.0,
                "retrain_grad_evals": 100.0,
                "test_accuracy_before": 0.9,
                "test_accuracy_after": 0.9,
                "mia_auc_after": 0.5,
                "why": "cheapest",
                "batch": forced.as_dict(),
            },
        ],
    }
    text = summary_markdown(report, mlflow_ui="http://mlflow")
    assert "**m**: held (1 requests)" in text and f"batching: {held.reason}" in text
    assert "why now: deadline: 1 of 1 pending" in text and "forced by request hash-late" in text


@pytest.mark.parametrize(
    "bad", [{"min_batch": 0}, {"max_hold_days": 0}, {"deadline_margin_days": -1}]
)
def test_policy_rejects_batching_values_that_could_hold_forever_or_never(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Policy(**bad)


def test_pending_requests_are_exactly_what_the_claim_takes(fresh_state, tmp_path: Path) -> None:
    """What the decision weighs is what the claim takes: the same rows (another model's and
    quarantined requests left out), in the same order, with the same salted hashes."""
    from tasks import batching, ingest, ledger, warehouse

    settings = fresh_state(tmp_path / "home", "salt")
    deliver(
        settings,
        "day1",
        [
            {"subject_id": "subject-3"},
            {"subject_id": "subject-17", "model_name": "digits-logreg"},
            {"subject_id": "subject-42", "deadline": datetime.now(UTC) + timedelta(days=2)},
            {"subject_id": "nobody"},  # quarantined: not in the training index
        ],
    )
    with warehouse.connect(settings) as con:
        warehouse.add_model(con, model_name="other", dataset="digits", recipe="pnsgd")
        ingest.ingest_file(con, settings, settings.inbox / "day1.parquet")
        deliver(settings, "day2", [{"subject_id": "subject-5", "model_name": "other"}])
        ingest.ingest_file(con, settings, settings.inbox / "day2.parquet")
        pending = batching.pending_requests(con, model_name="digits-logreg", salt="salt")
        claim = ledger.claim_pending(con, model_name="digits-logreg", run_id="r1", salt="salt")
        assert ledger.invariant_violations(con) == []
    assert [p.request_hash for p in pending] == claim.request_hashes  # both oldest first
    assert claim.request_hashes == [salted_hash(f"day1-{i}", salt="salt") for i in range(3)]
    assert [p.deadline is not None for p in pending] == [False, False, True]


MODEL = "digits-logreg"


def _states(con) -> dict[str, str]:
    return dict(con.execute("SELECT request_id, state FROM requests").fetchall())


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_min_batch_holds_then_runs_a_full_batch_a_deadline_and_a_manual_run(home: Path) -> None:
    from typer.testing import CliRunner

    from data_contracts.settings import Settings
    from deployments.parameters import ForgetRunParameters
    from deployments.serve import forget_deployment
    from flows.cli import app
    from flows.train import train_flow
    from tasks import ledger, registry, warehouse

    train_flow(dataset="digits", recipe="pnsgd", name=MODEL, seed=0, overrides={"epochs": 3})
    settings = Settings()
    runner = CliRunner(env={"COLUMNS": "250"})

    def run(*extra: str) -> dict:
        (model,) = cli_json(["run", "--model", MODEL, "--json", *extra])["models"]
        return model

    assert cli_json(["policy", MODEL, "--min-batch", "3", "--json"])["min_batch"] == 3
    assert runner.invoke(app, ["policy", MODEL, "--min-batch", "0"]).exit_code == 2

    # 1. one request, min_batch 3: held; nothing claimed, the hold and its reason recorded
    deliver(settings, "day1", [{"subject_id": "subject-3"}])
    shown = runner.invoke(app, ["run", "--model", MODEL])
    assert shown.exit_code == 0, shown.output
    assert "held" in shown.stdout and "1 pending < min_batch 3" in shown.stdout
    hash1 = salted_hash("day1-0", salt="test-salt")
    with warehouse.connect(settings) as con:
        assert _states(con) == {"day1-0": "pending"}
        assert con.execute(
            "SELECT run_id, request_hash FROM requests WHERE request_id = 'day1-0'"
        ).fetchall() == [(None, None)]  # not claimed
        held = con.execute(
            "SELECT status, summary_json FROM runs WHERE model_name = ? ORDER BY started_at",
            [MODEL],
        ).fetchall()
        assert ledger.interrupted_runs(con, MODEL) == [] and ledger.invariant_violations(con) == []
    assert [s for s, _ in held] == ["held"]
    batch = json.loads(held[0][1])["batch"]
    assert batch["held"] == [hash1] and "min_batch 3" in batch["reason"]
    assert registry.champion_version(settings, MODEL) == 1
    status = cli_json(["status", "--json"])
    assert status["models"] == [
        {
            "model_name": MODEL,
            "pending": 1,
            "held": 1,
            "overdue": 0,
            "earliest_deadline": None,
            "forced_at": batch["forced_at"],
            "next_run": batch["reason"],
        }
    ]
    assert "earliest deadline" in runner.invoke(app, ["status"]).stdout

    # 2. two more requests reach min_batch: all three are forgotten in one run
    deliver(settings, "day2", [{"subject_id": "subject-17"}, {"subject_id": "subject-42"}])
    full = run()
    assert full["version"] == 2 and full["requests"] == 3
    assert full["batch"]["reason"] == "batch: 3 pending >= min_batch 3"

    # 3. one request due in a day (inside the 3-day margin) runs despite min_batch
    soon = datetime.now(UTC) + timedelta(days=1)
    deliver(settings, "day3", [{"subject_id": "subject-101", "deadline": soon}])
    forced = run()
    assert forced["version"] == 3 and forced["requests"] == 1 and forced["overdue"] == 0
    assert forced["batch"]["forcing"] == [salted_hash("day3-0", salt="test-salt")]
    assert forced["batch"]["reason"].startswith("deadline: 1 of 1 pending due within 3 d")

    # 4. a dry run of the forget-now deployment says it would hold, unless run_now; --now runs
    deliver(settings, "day4", [{"subject_id": "subject-5"}])
    (dry,) = forget_deployment(ForgetRunParameters(model_name=MODEL, dry_run=True))["models"]
    assert dry["method"] == "would hold" and "1 pending < min_batch 3" in dry["batch"]["reason"]
    # an override of another field keeps the stored min_batch (it used to fall back to 1)
    eps = ForgetRunParameters(model_name=MODEL, dry_run=True, epsilon=2.0)
    (dry_eps,) = forget_deployment(eps)["models"]
    assert dry_eps["method"] == "would hold", dry_eps
    (cli_eps,) = cli_json(["run", "--model", MODEL, "--json", "--dry-run", "--epsilon", "2"])[
        "models"
    ]
    assert cli_eps["method"] == "would hold", cli_eps
    now_dry = ForgetRunParameters(model_name=MODEL, dry_run=True, run_now=True)
    (planned,) = forget_deployment(now_dry)["models"]
    assert planned["dry_run"] and planned["requests"] == 1 and "plan" in planned
    manual = run("--now")
    assert manual["version"] == 4 and manual["batch"]["reason"].startswith("manual run")
    # 5. a subject this model already forgot: applied without a new version, on --now too
    deliver(settings, "day5", [{"subject_id": "subject-3"}])
    again = run("--now")
    assert again["method"] == "none-needed" and again["version"] == 4

    with warehouse.connect(settings) as con:
        assert set(_states(con).values()) == {"applied"}
        runs = con.execute(
            "SELECT status, summary_json FROM runs WHERE model_name = ? ORDER BY started_at",
            [MODEL],
        ).fetchall()
        assert ledger.invariant_violations(con) == []
    # every run keeps its batching decision in the ledger, each finished one in the summary its
    # finalizing transaction wrote (the dry run records no hold; its release says "dry run")
    assert [s for s, _ in runs] == [
        "held",
        "finished",
        "finished",
        "failed",
        "finished",
        "finished",
    ]
    stored = [json.loads(summary) for _, summary in runs]
    assert [s["batch"] for s in stored[1:3]] == [full["batch"], forced["batch"]]
    assert stored[4]["batch"] == manual["batch"] and stored[4]["version"] == 4
    assert stored[5]["batch"]["reason"].startswith("manual run") and "note" in stored[5]
