"""Request-state transitions of the ledger, each one transaction (crash-safe by construction).

pending -> planned (claimed by a run) -> applied (version registered) | pending (run failed).
A request with no model_name targets every model whose training split holds the subject; it is
`applied` once each of them has forgotten it (per-model progress lives in `applications`).

Rows are identified by (file_id, row_number); the salted request hash that certificates and MLflow
tags carry is computed when a run claims the row (ingestion hashes only quarantined rows)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from data_contracts.states import RequestState
from tasks import erasure, warehouse


@dataclass
class Claim:
    run_id: str
    model_name: str
    request_keys: list[tuple[str, int]]  # (file_digest, row_number)
    request_hashes: list[str]
    sample_ids: list[str]  # training samples to forget (not yet forgotten by this model)
    overdue: int  # claimed requests already past their deadline


# The pending requests of `requests` a run of $model claims; the batching decision weighs the
# same rows (tasks.batching.pending_requests), so what it holds is what a run would take.
CLAIMABLE = """requests.state = 'pending'
    AND (requests.model_name = $model OR requests.model_name IS NULL)
    AND NOT EXISTS (SELECT 1 FROM applications a WHERE a.file_id = requests.file_id
                    AND a.row_number = requests.row_number AND a.model_name = $model)
    AND EXISTS (SELECT 1 FROM training_index t JOIN models m ON m.dataset = t.dataset
                WHERE m.model_name = $model AND t.subject_id = requests.subject_id)"""


# The salted request hash (data_contracts.hashing.salted_hash) of a row's `request_id`, in
# DuckDB: ingestion stores it for quarantined rows, the claim for claimed ones and the batching
# decision lists it, so all three must compute it alike.
REQUEST_HASH = "sha256($salt || '|' || request_id)"


def claim_pending(
    con: duckdb.DuckDBPyConnection, *, model_name: str, run_id: str, salt: str
) -> Claim:
    """Mark every pending request that targets `model_name` as planned by `run_id`, and give each
    its salted request hash (data_contracts.hashing.salted_hash, computed in DuckDB).

    A request targets the model when its subject has any row in the model's dataset: a subject
    with test rows only is claimed too, and the run that applies it withdraws those rows from
    evaluation (withdrawn_test_ids) without needing a new version."""
    with warehouse.transaction(con):
        con.execute(
            "INSERT INTO runs (run_id, model_name, started_at, status) VALUES (?, ?, ?, 'running')",
            [run_id, model_name, warehouse.now()],
        )
        con.execute(
            f"""UPDATE requests SET state = 'planned', run_id = $run_id, updated_at = now(),
                   request_hash = {REQUEST_HASH} WHERE {CLAIMABLE}""",
            {"run_id": run_id, "salt": salt, "model": model_name},
        )
    return load_claim(con, run_id=run_id, model_name=model_name)


def load_claim(con: duckdb.DuckDBPyConnection, *, run_id: str, model_name: str) -> Claim:
    keys = con.execute(
        """SELECT f.file_digest, r.row_number, r.request_hash, r.deadline < now()
           FROM requests r JOIN manifest_files f USING (file_id)
           WHERE r.state = 'planned' AND r.run_id = ?
           ORDER BY r.requested_at, f.file_digest, r.row_number""",
        [run_id],
    ).fetchall()
    samples = con.execute(
        """SELECT DISTINCT t.sample_id FROM requests r
           JOIN models m ON m.model_name = ?
           JOIN training_index t ON t.dataset = m.dataset AND t.subject_id = r.subject_id AND t.split = 'train'
           WHERE r.state = 'planned' AND r.run_id = ?
             AND (r.sample_ids IS NULL OR list_contains(r.sample_ids, t.sample_id))
             AND NOT EXISTS (SELECT 1 FROM forgotten_samples f WHERE f.model_name = m.model_name
                             AND f.sample_id = t.sample_id)
           ORDER BY t.sample_id""",
        [model_name, run_id],
    ).fetchall()
    return Claim(
        run_id=run_id,
        model_name=model_name,
        request_keys=[(k[0], int(k[1])) for k in keys],
        request_hashes=[k[2] for k in keys],
        sample_ids=[s[0] for s in samples],
        overdue=sum(1 for k in keys if k[3]),
    )


def finalize_run(
    con: duckdb.DuckDBPyConnection,
    *,
    claim: Claim,
    model_version: int,
    certificate_sha256: str,
    guarantee: str,
    plan: dict[str, Any] | None,
    summary: dict[str, Any],
    version_row: dict[str, Any] | None,
    canary_ids: Sequence[str] = (),
) -> None:
    """Record the new version and the forgetting, and move each claimed request on, atomically.

    `canary_ids`: production canaries the version has forgotten (models/canaries.py), recorded
    like forgotten samples (a canary forgotten earlier keeps its first version)."""
    with warehouse.transaction(con):
        if version_row is not None:
            warehouse.record_version(con, **version_row)
        if claim.sample_ids or canary_ids:
            con.executemany(
                "INSERT OR IGNORE INTO forgotten_samples VALUES (?, ?, ?)",
                [(claim.model_name, s, model_version) for s in [*claim.sample_ids, *canary_ids]],
            )
        con.execute(
            """INSERT OR IGNORE INTO applications
               SELECT file_id, row_number, ?, ?, ?, ?, now() FROM requests
               WHERE state = 'planned' AND run_id = ?""",
            [claim.model_name, model_version, certificate_sha256, guarantee, claim.run_id],
        )
        # Applied once every model holding the subject has an application; else back to pending.
        con.execute(
            """UPDATE requests SET updated_at = now(), state = CASE WHEN NOT EXISTS (
                   SELECT 1 FROM models m JOIN training_index t ON t.dataset = m.dataset
                   WHERE t.subject_id = requests.subject_id AND t.split = 'train'
                     AND (requests.model_name IS NULL OR m.model_name = requests.model_name)
                     AND NOT EXISTS (SELECT 1 FROM applications a WHERE a.file_id = requests.file_id
                                     AND a.row_number = requests.row_number AND a.model_name = m.model_name))
                 THEN 'applied' ELSE 'pending' END
               WHERE state = 'planned' AND run_id = ?""",
            [claim.run_id],
        )
        # Per-sample rows derived from the forgotten samples, and from test-split rows their
        # subjects withdrew, go with the state change (GDPR art. 17(1); tasks/erasure.py).
        info = warehouse.model_row(con, claim.model_name)
        erasure.erase_derived_rows(
            con,
            model_name=claim.model_name,
            withdrawn_test_ids=withdrawn_test_ids(con, dataset=info["dataset"]) if info else [],
        )
        con.execute(
            """UPDATE runs SET status = 'finished', finished_at = now(), model_version = ?,
                   plan_json = ?, summary_json = ? WHERE run_id = ?""",
            [model_version, json.dumps(plan), json.dumps(summary, default=str), claim.run_id],
        )


def withdrawn_test_ids(
    con: duckdb.DuckDBPyConnection, *, dataset: str, run_id: str | None = None
) -> list[str]:
    """Test-split sample ids of `dataset` whose subjects withdrew them (sorted).

    A subject withdraws their test rows with a request for all their data (`sample_ids` null; a
    request naming samples names training samples only) once it is applied for any model of the
    dataset: the test split is one set shared by every model of the dataset (evaluations, the
    shadow reference), used by no model's weights, so no per-model unlearning has to wait. A
    request without model_name withdraws them at its first application, before it is `applied`
    for every model. With `run_id`, the requests that run has claimed count too: the version it
    registers is the subject's erasure, so its own evaluation and audit already leave their rows
    out (and a shadow cache built during the run never scores them)."""
    rows = con.execute(
        """WITH withdrawing AS (
               SELECT r.subject_id FROM requests r
               WHERE r.state = 'planned' AND r.run_id = $run_id AND r.sample_ids IS NULL
               UNION
               SELECT r.subject_id FROM applications a
               JOIN models m ON m.model_name = a.model_name AND m.dataset = $dataset
               JOIN requests r ON r.file_id = a.file_id AND r.row_number = a.row_number
               WHERE r.sample_ids IS NULL)
           SELECT t.sample_id FROM training_index t
           WHERE t.dataset = $dataset AND t.split = 'test'
             AND t.subject_id IN (SELECT subject_id FROM withdrawing)
           ORDER BY t.sample_id""",
        {"dataset": dataset, "run_id": run_id},
    ).fetchall()
    return [r[0] for r in rows]


@dataclass
class TrainingErasure:
    """What a model trained now must leave out: requests already applied that target it."""

    request_keys: list[tuple[int, int]]  # (file_id, row_number)
    request_hashes: list[str]
    sample_ids: list[str]  # training samples of those requests (sorted)


def erased_before_training(con: duckdb.DuckDBPyConnection, *, model_name: str) -> TrainingErasure:
    """Applied requests targeting `model_name` (by name, or every model: model_name NULL) whose
    subject has training rows in its dataset, and those rows (only the named ones when a request
    names samples, as in load_claim).

    A request is `applied` once every model existing then has forgotten it; a model trained later
    must never process the subject's rows (GDPR art. 17(1)), so training leaves them out and
    records the model's first version as their application. Pending and planned requests are not
    here: the model is in `models` from indexing on, so they stay pending until a run forgets them
    for it too (finalize_run)."""
    keys = con.execute(
        """SELECT r.file_id, r.row_number, r.request_hash FROM requests r
           WHERE r.state = 'applied' AND (r.model_name = $model OR r.model_name IS NULL)
             AND EXISTS (SELECT 1 FROM training_index t JOIN models m ON m.dataset = t.dataset
                         WHERE m.model_name = $model AND t.subject_id = r.subject_id
                           AND t.split = 'train')
           ORDER BY r.file_id, r.row_number""",
        {"model": model_name},
    ).fetchall()
    samples = con.execute(
        """SELECT DISTINCT t.sample_id FROM requests r
           JOIN models m ON m.model_name = $model
           JOIN training_index t ON t.dataset = m.dataset AND t.subject_id = r.subject_id
                                AND t.split = 'train'
           WHERE r.state = 'applied' AND (r.model_name = $model OR r.model_name IS NULL)
             AND (r.sample_ids IS NULL OR list_contains(r.sample_ids, t.sample_id))
           ORDER BY t.sample_id""",
        {"model": model_name},
    ).fetchall()
    return TrainingErasure(
        request_keys=[(int(k[0]), int(k[1])) for k in keys],
        request_hashes=[k[2] for k in keys],
        sample_ids=[s[0] for s in samples],
    )


def record_training_erasure(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    erasure: TrainingErasure,
    certificate_sha256: str,
) -> None:
    """Version 1 of `model_name` forgot `erasure` by never training on it: its forgotten samples
    and one `exact` application per request. Call in the transaction that records version 1."""
    if erasure.sample_ids:
        con.executemany(
            "INSERT OR IGNORE INTO forgotten_samples VALUES (?, ?, 1)",
            [(model_name, s) for s in erasure.sample_ids],
        )
    if erasure.request_keys:
        con.executemany(
            "INSERT OR IGNORE INTO applications VALUES (?, ?, ?, 1, ?, 'exact', now())",
            [(f, r, model_name, certificate_sha256) for f, r in erasure.request_keys],
        )


def release_run(con: duckdb.DuckDBPyConnection, *, run_id: str, status: str, reason: str) -> int:
    """Give a failed or abandoned run's requests back to `pending`; returns how many."""
    with warehouse.transaction(con):
        n = warehouse.fetch_one(
            con, "SELECT count(*) FROM requests WHERE state = 'planned' AND run_id = ?", [run_id]
        )[0]
        con.execute(
            "UPDATE requests SET state = 'pending', run_id = NULL, updated_at = now() "
            "WHERE state = 'planned' AND run_id = ?",
            [run_id],
        )
        con.execute(
            "UPDATE runs SET status = ?, finished_at = now(), summary_json = ? WHERE run_id = ?",
            [status, json.dumps({"reason": reason}), run_id],
        )
    return int(n)


def interrupted_runs(con: duckdb.DuckDBPyConnection, model_name: str) -> list[str]:
    rows = con.execute(
        "SELECT run_id FROM runs WHERE model_name = ? AND status = 'running' ORDER BY started_at",
        [model_name],
    ).fetchall()
    return [r[0] for r in rows]


def subject_requests(con: duckdb.DuckDBPyConnection, subject_id: str) -> list[dict[str, Any]]:
    """Every ledger row for one subject, with the model versions that forgot it."""
    rows = con.execute(
        """SELECT r.request_id, r.state, r.reason, coalesce(a.model_name, r.model_name), a.model_version,
                  a.guarantee, a.certificate_sha256, r.requested_at
           FROM requests r LEFT JOIN applications a USING (file_id, row_number)
           WHERE r.subject_id = ? ORDER BY r.requested_at, r.file_id, r.row_number, a.model_name""",
        [subject_id],
    ).fetchall()
    return [
        {
            "request_id": r[0],
            "state": r[1],
            "reason": r[2],
            "model_name": r[3],
            "model_version": r[4],
            "guarantee": r[5],
            "certificate_sha256": r[6],
            "requested_at": r[7].isoformat() if r[7] else None,
        }
        for r in rows
    ]


def invariant_violations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """What breaks "nothing lost, nothing doubled" in the ledger (empty list: it holds).

    Every received row is in exactly one known state (its (file_id, row_number) appears once and
    lies within its file's row count); each file's row count matches its record; quarantined and
    superseded rows say why; planned rows belong to a running run and carry their request hash;
    applied rows have an application."""
    states = sorted(s.value for s in RequestState)
    checks = {
        "rows in requests != sum of manifest_files.rows_received": """
            SELECT (SELECT count(*) FROM requests)
                   <> (SELECT coalesce(sum(rows_received), 0) FROM manifest_files)""",
        "a file's rows_received differs from its rows in requests": """
            SELECT count(*) > 0 FROM manifest_files f
            WHERE f.rows_received <> (SELECT count(*) FROM requests r WHERE r.file_id = f.file_id)""",
        "requests rows without a manifest_files record": """
            SELECT count(*) > 0 FROM requests r
            WHERE NOT EXISTS (SELECT 1 FROM manifest_files f WHERE f.file_id = r.file_id)""",
        # With the two checks above, this makes each file's rows exactly 0..rows_received-1.
        "a (file_id, row_number) twice or outside its file's rows": """
            SELECT (SELECT count(*) FROM requests r JOIN manifest_files f USING (file_id)
                    WHERE r.row_number < 0 OR r.row_number >= f.rows_received) > 0
                OR (SELECT count(*) FROM (SELECT file_id, row_number FROM requests
                                          GROUP BY ALL HAVING count(*) > 1)) > 0""",
        "rows with a state outside the allowed set": f"""
            SELECT count(*) > 0 FROM requests
            WHERE state IS NULL OR state NOT IN ({", ".join(f"'{s}'" for s in states)})""",
        "quarantined or superseded rows without a reason": """
            SELECT count(*) > 0 FROM requests
            WHERE state IN ('quarantined', 'superseded') AND (reason IS NULL OR reason = '')""",
        "planned rows outside a running run": """
            SELECT count(*) > 0 FROM requests r WHERE r.state = 'planned' AND NOT EXISTS (
                SELECT 1 FROM runs WHERE runs.run_id = r.run_id AND runs.status = 'running')""",
        "claimed rows without a request hash": """
            SELECT count(*) > 0 FROM requests
            WHERE state IN ('planned', 'applied') AND request_hash IS NULL""",
        "applied rows without an application": """
            SELECT count(*) > 0 FROM requests r WHERE r.state = 'applied' AND NOT EXISTS (
                SELECT 1 FROM applications a
                WHERE a.file_id = r.file_id AND a.row_number = r.row_number)""",
    }
    return [name for name, sql in checks.items() if warehouse.fetch_one(con, sql)[0]]


def subject_influence(con: duckdb.DuckDBPyConnection, subject_id: str) -> list[dict[str, Any]]:
    """Registered versions still trained on any of the subject's samples, and whether each serves.

    A version holds the subject's influence when one of the subject's training samples was not yet
    forgotten by that version (older versions stay in the registry until an operator archives them)."""
    rows = con.execute(
        """WITH samples AS (
               SELECT m.model_name, t.sample_id FROM models m
               JOIN training_index t ON t.dataset = m.dataset AND t.split = 'train' AND t.subject_id = ?),
           latest AS (SELECT model_name, max(version) AS version FROM model_versions GROUP BY model_name)
           SELECT v.model_name, v.version, v.version = l.version AS serving, count(*) AS samples
           FROM model_versions v JOIN latest l USING (model_name) JOIN samples s USING (model_name)
           LEFT JOIN forgotten_samples f
             ON f.model_name = s.model_name AND f.sample_id = s.sample_id AND f.model_version <= v.version
           WHERE f.sample_id IS NULL
           GROUP BY v.model_name, v.version, l.version ORDER BY v.model_name, v.version""",
        [subject_id],
    ).fetchall()
    return [
        {"model_name": r[0], "version": int(r[1]), "serving": bool(r[2]), "samples": int(r[3])}
        for r in rows
    ]
