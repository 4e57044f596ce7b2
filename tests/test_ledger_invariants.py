"""The ledger loses nothing and doubles nothing: crashes during ingestion, and the request-state
transitions (claim -> release, claim -> finalize), against a real DuckDB file.

Faults are injected by replacing our own `warehouse.record_file` (it runs after the requests
insert, inside the same transaction); the stores stay real. One test kills the process outright
in the middle of the transaction and lets DuckDB recover from its write-ahead log."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts.errors import ForgetflowError
from data_contracts.hashing import salted_hash
from data_contracts.manifest import MANIFEST_SCHEMA
from data_contracts.settings import Settings
from tasks import ingest, ledger, warehouse

ROOT = Path(__file__).resolve().parents[1]
MODEL = "digits-logreg"
NOW = datetime.now(UTC)
SALT = "ledger-salt"


@pytest.fixture
def settings(fresh_state, tmp_path: Path) -> Settings:
    return fresh_state(tmp_path / "home", SALT)


@pytest.fixture
def con(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    with warehouse.connect(settings) as con:
        yield con
        assert_ledger_invariant(con)


def assert_ledger_invariant(con: duckdb.DuckDBPyConnection) -> None:
    """received == sum of states == sum of files' rows; one allowed state per row; reasons set."""
    counts = warehouse.state_counts(con)
    received = warehouse.rows_received(con)
    assert sum(counts.values()) == received == sum(f["rows"] for f in warehouse.files_summary(con))
    assert ledger.invariant_violations(con) == []


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    return {
        "files": con.execute(
            "SELECT file_digest, rows_received, outcome FROM manifest_files ORDER BY 1"
        ).fetchall(),
        "requests": con.execute(
            "SELECT f.file_digest, r.row_number, r.state FROM requests r "
            "JOIN manifest_files f USING (file_id) ORDER BY 1, 2"
        ).fetchall(),
        "runs": con.execute("SELECT run_id, status FROM runs ORDER BY 1").fetchall(),
        "applications": con.execute(
            "SELECT * EXCLUDE (applied_at) FROM applications ORDER BY 1, 2, 3"
        ).fetchall(),
    }


def manifest(
    settings: Settings, name: str, subjects: list[str], *, model: str | None = MODEL, bad: int = 0
) -> Path:
    rows = [
        {
            "request_id": f"{name}-{i}",
            "subject_id": s,
            "requested_at": NOW - timedelta(days=1),
            "legal_basis": "gdpr-art17",
            "model_name": model,
            "deadline": None,
            "sample_ids": None,
        }
        for i, s in enumerate(subjects)
    ]
    rows += [
        {**rows[0], "request_id": f"{name}-bad-{i}", "legal_basis": "nope"} for i in range(bad)
    ]
    path = settings.inbox / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), path)
    return path


class InjectedCrash(RuntimeError):
    pass


def crash(*_: Any, **__: Any) -> None:
    raise InjectedCrash("power cut after the requests insert")


# --- crashes during ingestion ---------------------------------------------------------------------


def test_crash_inside_the_ingest_transaction_leaves_the_ledger_unchanged(
    con, settings, monkeypatch
) -> None:
    ingest.ingest_file(con, settings, manifest(settings, "day0", ["subject-1"]))
    before = snapshot(con)
    path = manifest(settings, "day1", ["subject-3", "subject-17", "subject-42"], bad=2)
    monkeypatch.setattr(warehouse, "record_file", crash)
    with pytest.raises(InjectedCrash):
        ingest.ingest_file(con, settings, path)
    assert snapshot(con) == before
    assert_ledger_invariant(con)

    monkeypatch.undo()
    out = ingest.ingest_file(con, settings, path)
    again = ingest.ingest_file(con, settings, path)
    assert out.outcome == "ingested" and out.states == {
        "quarantined": 2,
        "pending": 3,
        "superseded": 0,
    }
    assert again.outcome == "duplicate-file"
    per_file = con.execute(
        "SELECT count(*) FROM requests JOIN manifest_files USING (file_id) WHERE file_digest = ?",
        [out.digest],
    ).fetchall()
    assert per_file == [(5,)]  # exactly once


def test_crash_while_recording_a_bad_file_leaves_no_trace(con, settings, monkeypatch) -> None:
    path = settings.inbox / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    monkeypatch.setattr(warehouse, "record_file", crash)
    with pytest.raises(InjectedCrash):
        ingest.ingest_file(con, settings, path)
    assert snapshot(con)["files"] == []
    monkeypatch.undo()
    assert ingest.ingest_file(con, settings, path).outcome == "quarantined"
    assert ingest.ingest_file(con, settings, path).outcome == "duplicate-file"
    assert len(snapshot(con)["files"]) == 1


def test_crash_while_writing_rejected_rows_rolls_back(con, settings, monkeypatch) -> None:
    path = manifest(settings, "day1", ["subject-3"], bad=1)
    monkeypatch.setattr(ingest, "_write_rejected", crash)
    with pytest.raises(InjectedCrash):
        ingest.ingest_file(con, settings, path)
    assert snapshot(con)["requests"] == []
    monkeypatch.undo()
    assert ingest.ingest_file(con, settings, path).states["quarantined"] == 1


def test_process_killed_mid_transaction_recovers_to_before(settings) -> None:
    """A real crash: the process dies (os._exit) after inserting the rows, before COMMIT."""
    path = manifest(settings, "day1", [f"subject-{i}" for i in range(40)], bad=3)
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from data_contracts.settings import Settings
        from tasks import ingest, warehouse
        def die(*a, **k):
            os._exit(17)
        settings = Settings(home=Path({str(settings.home)!r}), hash_salt={SALT!r})
        with warehouse.connect(settings) as con:
            warehouse.record_file = die
            ingest.ingest_file(con, settings, Path({str(path)!r}), engine="duckdb-sql")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 17, done.stderr
    with warehouse.connect(settings) as con:
        assert snapshot(con)["requests"] == [] and snapshot(con)["files"] == []
        assert_ledger_invariant(con)
        out = ingest.ingest_file(con, settings, path, engine="duckdb-sql")
        assert out.rows == 43 and out.states["pending"] == 40
        assert_ledger_invariant(con)


# --- request-state transitions ---------------------------------------------------------------------


def test_claim_then_release_returns_every_request_to_pending(con, settings) -> None:
    ingest.ingest_file(
        con, settings, manifest(settings, "day1", ["subject-3", "subject-17"], bad=1)
    )
    ingest.ingest_file(con, settings, manifest(settings, "day2", ["subject-42"], model=None))
    hashed = "SELECT state, count(request_hash) FROM requests GROUP BY state ORDER BY state"
    # Ingestion hashes only the quarantined row; claiming hashes what it claims, with the salt.
    assert con.execute(hashed).fetchall() == [("pending", 0), ("quarantined", 1)]
    claim = ledger.claim_pending(con, model_name=MODEL, run_id="run-1", salt=SALT)
    assert len(claim.request_keys) == 3 and claim.sample_ids
    assert sorted(claim.request_hashes) == sorted(
        salted_hash(r, salt=SALT) for r in ("day1-0", "day1-1", "day2-0")
    )
    assert {digest for digest, _ in claim.request_keys} == {
        f["digest"] for f in warehouse.files_summary(con)
    }
    assert warehouse.state_counts(con) == {
        "quarantined": 1,
        "pending": 0,
        "planned": 3,
        "applied": 0,
        "superseded": 0,
    }
    assert_ledger_invariant(con)
    assert ledger.interrupted_runs(con, MODEL) == ["run-1"]

    released = ledger.release_run(con, run_id="run-1", status="failed", reason="test")
    assert released == 3
    assert warehouse.state_counts(con)["pending"] == 3
    assert ledger.interrupted_runs(con, MODEL) == []


def test_claim_then_finalize_applies_each_request_once(con, settings) -> None:
    ingest.ingest_file(con, settings, manifest(settings, "day1", ["subject-3", "subject-17"]))
    ingest.ingest_file(con, settings, manifest(settings, "day2", ["subject-42"], model=None))
    claim = ledger.claim_pending(con, model_name=MODEL, run_id="run-1", salt=SALT)
    assert_ledger_invariant(con)
    ledger.finalize_run(
        con,
        claim=claim,
        model_version=2,
        certificate_sha256="c" * 64,
        guarantee="certified",
        plan=None,
        summary={"ok": True},
        version_row=None,
    )
    assert warehouse.state_counts(con)["applied"] == 3
    assert len(snapshot(con)["applications"]) == 3
    assert_ledger_invariant(con)

    # A later run finds nothing to do; re-delivering the same requests is a no-op.
    assert ledger.claim_pending(con, model_name=MODEL, run_id="run-2", salt=SALT).request_keys == []
    ledger.release_run(con, run_id="run-2", status="finished", reason="nothing to do")
    out = ingest.ingest_file(con, settings, manifest(settings, "day1-again", ["subject-3"]))
    assert (
        out.states["pending"] == 1
    )  # new request id: a fresh request for an already-forgotten subject
    rows = con.execute("SELECT state FROM requests WHERE request_id = 'day1-0'").fetchall()
    assert rows == [("applied",)]


def test_superseded_and_quarantined_rows_are_never_claimed(con, settings) -> None:
    first = manifest(settings, "day1", ["subject-3"])
    ingest.ingest_file(con, settings, first)
    # Same request id and content in a second file (plus a bad row): superseded + quarantined.
    rows = pq.read_table(first).to_pylist()
    rows.append({**rows[0], "request_id": "other", "legal_basis": "nope"})
    second = settings.inbox / "day2.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), second)
    ingest.ingest_file(con, settings, second)
    claim = ledger.claim_pending(con, model_name=MODEL, run_id="run-1", salt=SALT)
    assert len(claim.request_keys) == 1
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
    assert warehouse.state_counts(con) == {
        "quarantined": 1,
        "pending": 0,
        "planned": 0,
        "applied": 1,
        "superseded": 1,
    }


def test_a_crash_between_claim_and_finalize_keeps_the_invariant(con, settings, monkeypatch) -> None:
    ingest.ingest_file(con, settings, manifest(settings, "day1", ["subject-3", "subject-17"]))
    claim = ledger.claim_pending(con, model_name=MODEL, run_id="run-1", salt=SALT)
    before = snapshot(con)
    monkeypatch.setattr(warehouse, "record_version", crash)
    with pytest.raises(InjectedCrash):
        ledger.finalize_run(
            con,
            claim=claim,
            model_version=2,
            certificate_sha256="c" * 64,
            guarantee="certified",
            plan=None,
            summary={},
            version_row={"model_name": MODEL},
        )
    assert snapshot(con) == before  # still planned by the running run-1
    assert_ledger_invariant(con)
    monkeypatch.undo()
    assert ledger.release_run(con, run_id="run-1", status="abandoned", reason="crashed") == 2


def test_the_invariant_check_catches_a_lost_or_doubled_row(con, settings) -> None:
    ingest.ingest_file(
        con, settings, manifest(settings, "day1", ["subject-3", "subject-17"], bad=1)
    )
    con.execute("BEGIN TRANSACTION")
    con.execute("DELETE FROM requests WHERE row_number = 0")
    assert "rows in requests != sum of manifest_files.rows_received" in ledger.invariant_violations(
        con
    )
    con.execute("ROLLBACK")
    con.execute("BEGIN TRANSACTION")
    con.execute("UPDATE requests SET reason = NULL WHERE state = 'quarantined'")
    con.execute("UPDATE requests SET state = 'forgotten' WHERE row_number = 0")
    con.execute("UPDATE requests SET state = 'planned', run_id = 'ghost' WHERE row_number = 1")
    assert ledger.invariant_violations(con) == [
        "rows with a state outside the allowed set",
        "quarantined or superseded rows without a reason",
        "planned rows outside a running run",
        "claimed rows without a request hash",
    ]
    con.execute("ROLLBACK")
    # A doubled row; and a row moved to a number its file never had (same count, wrong keys).
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO requests SELECT * FROM requests WHERE row_number = 0")
    assert "a (file_id, row_number) twice or outside its file's rows" in (
        ledger.invariant_violations(con)
    )
    con.execute("ROLLBACK")
    con.execute("BEGIN TRANSACTION")
    con.execute("UPDATE requests SET row_number = 7 WHERE row_number = 0")
    assert ledger.invariant_violations(con) == [
        "a (file_id, row_number) twice or outside its file's rows"
    ]
    con.execute("ROLLBACK")


def test_a_warehouse_of_another_schema_version_is_refused_with_a_clear_message(settings) -> None:
    with warehouse.connect(settings) as con:
        con.execute("UPDATE schema_info SET value = '1' WHERE key = 'warehouse_schema_version'")
    with (
        pytest.raises(ForgetflowError, match="schema version 1, this forgetflow needs 2"),
        warehouse.connect(settings),
    ):
        pass
