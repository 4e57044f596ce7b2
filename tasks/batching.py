"""Batching of a model's pending requests: read them, decide (models/batching.py), record a hold.

A held run changes no request: it only adds a `runs` row with status 'held' and the decision, so
an auditor can see why a request was not processed on a given night, and a crash loses nothing.
A run that does not hold keeps its decision in the summary its finalizing transaction writes
(tasks.ledger.finalize_run)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb
from prefect import task
from prefect.cache_policies import NO_CACHE

from data_contracts.policy import Policy
from data_contracts.settings import Settings
from models.batching import BatchDecision, PendingRequest, decide
from tasks import ledger, warehouse

STORE_RETRIES = {"retries": 2, "retry_delay_seconds": [2, 10]}  # a locked DuckDB file


def pending_requests(
    con: duckdb.DuckDBPyConnection, *, model_name: str, salt: str
) -> list[PendingRequest]:
    """The requests a run of `model_name` would claim now (tasks.ledger.CLAIMABLE; read only),
    oldest first, with the salted hash the claim will give them."""
    rows = con.execute(
        f"""SELECT {ledger.REQUEST_HASH}, f.received_at,
                   requests.requested_at, requests.deadline
            FROM requests JOIN manifest_files f ON f.file_id = requests.file_id
            WHERE {ledger.CLAIMABLE}
            ORDER BY f.received_at, requests.file_id, requests.row_number""",
        {"salt": salt, "model": model_name},
    ).fetchall()
    return [
        PendingRequest(request_hash=h, received_at=rec, requested_at=req, deadline=due)
        for h, rec, req, due in rows
    ]


def decision_for(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    policy: Policy,
    salt: str,
    now: datetime,
    manual: bool = False,
) -> BatchDecision:
    """The batching decision for `model_name`'s pending requests at `now` under `policy`."""
    return decide(
        pending_requests(con, model_name=model_name, salt=salt),
        now=now,
        min_batch=policy.min_batch,
        max_hold_days=policy.max_hold_days,
        deadline_margin_days=policy.deadline_margin_days,
        manual=manual,
    )


def record_held(
    con: duckdb.DuckDBPyConnection, *, run_id: str, model_name: str, decision: BatchDecision
) -> None:
    """A run that held its model's requests (they stay pending): when, and why."""
    moment = warehouse.now()
    con.execute(
        "INSERT OR IGNORE INTO runs (run_id, model_name, started_at, finished_at, status, "
        "summary_json) VALUES (?, ?, ?, ?, 'held', ?)",
        [run_id, model_name, moment, moment, json.dumps({"batch": decision.as_dict()})],
    )


def model_queue(
    con: duckdb.DuckDBPyConnection, *, salt: str, now: datetime
) -> list[dict[str, Any]]:
    """Per model, what its next scheduled run would do with its pending requests now (stored
    policy): pending, held (pending if the run would hold, else 0), the earliest deadline, and
    the time by which holding ends."""
    queue = []
    for name in warehouse.model_names(con):
        policy = warehouse.stored_policy(con, name) or Policy()
        d = decision_for(con, model_name=name, policy=policy, salt=salt, now=now).as_dict()
        queue.append(
            {
                "model_name": name,
                "pending": d["pending"],
                "held": 0 if d["run"] else d["pending"],
                "overdue": d["overdue"],
                "earliest_deadline": d["earliest_deadline"],
                "forced_at": d["forced_at"],
                "next_run": d["reason"],
            }
        )
    return queue


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def decide_batch(
    settings: Settings, *, model_name: str, policy: Policy, manual: bool
) -> BatchDecision:
    with warehouse.connect(settings) as con:
        return decision_for(
            con,
            model_name=model_name,
            policy=policy,
            salt=settings.salt(),
            now=warehouse.now(),
            manual=manual,
        )


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def hold(
    settings: Settings, *, run_id: str, model_name: str, decision: BatchDecision, dry_run: bool
) -> dict[str, Any]:
    """Record the held run (not for a dry run, which records nothing) and return its summary."""
    if not dry_run:
        with warehouse.connect(settings) as con:
            record_held(con, run_id=run_id, model_name=model_name, decision=decision)
    return {
        "model_name": model_name,
        "method": "would hold" if dry_run else "held",
        "requests": decision.pending,
        **({"dry_run": True} if dry_run else {}),
        "batch": decision.as_dict(),
    }
