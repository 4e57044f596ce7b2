"""Bad deletion manifests against a real DuckDB warehouse file and real Great Expectations.

Each test delivers one class of bad input and checks the reason it is quarantined with; the
ledger invariant (received == sum of states, one allowed state per row, quarantined rows say why)
is asserted after every test by the `con` fixture."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts import manifest as contract
from data_contracts.settings import Settings
from models.datasets import load_digits_dataset
from tasks import ledger, warehouse
from tasks.ingest import INGEST_STEPS, FileOutcome, inbox_files, ingest_file
from tasks.progress import progress_sink

MODEL = "digits-logreg"
NOW = datetime.now(UTC)
SALT = "test-salt"
# The contract marks required columns non-nullable; producers' files often do not (pandas never
# does), and nulls must reach the suite to be quarantined row by row.
NULLABLE_SCHEMA = pa.schema([f.with_nullable(True) for f in contract.MANIFEST_SCHEMA])


# --- fixtures: one training index built per session, copied per test ---------------------------


@pytest.fixture
def settings(fresh_state, tmp_path: Path) -> Settings:
    return fresh_state(tmp_path / "home", SALT)


@pytest.fixture
def con(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    with warehouse.connect(settings) as con:
        con.execute("SET enable_progress_bar = false")
        yield con
        assert_ledger_invariant(con)  # after every test, whatever it did


def assert_ledger_invariant(con: duckdb.DuckDBPyConnection) -> None:
    """received == sum of states == sum of files' rows; one allowed state per row; reasons set."""
    counts = warehouse.state_counts(con)
    received = warehouse.rows_received(con)
    files = warehouse.files_summary(con)
    assert sum(counts.values()) == received == sum(f["rows"] for f in files)
    assert set(counts) == {"quarantined", "pending", "planned", "applied", "superseded"}
    assert ledger.invariant_violations(con) == []


# --- helpers ---------------------------------------------------------------------------------------


def train_samples(subject: str) -> list[str]:
    ds = load_digits_dataset()
    return ds.sample_ids[ds.is_train & (ds.subject_ids == subject)].tolist()


def row(**overrides: Any) -> dict[str, Any]:
    """A valid contract-v1 row; overrides make it invalid in exactly one way."""
    base = {
        "request_id": "req-1",
        "subject_id": "subject-3",
        "requested_at": NOW - timedelta(days=1),
        "legal_basis": "gdpr-art17",
        "model_name": MODEL,
        "deadline": NOW + timedelta(days=28),
        "sample_ids": None,
    }
    base.update(overrides)
    return base


def valid_rows(n: int, prefix: str = "ok") -> list[dict[str, Any]]:
    return [row(request_id=f"{prefix}-{i}", subject_id=f"subject-{i % 400}") for i in range(n)]


def deliver(settings: Settings, name: str, rows: list[dict[str, Any]] | pa.Table) -> Path:
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, NULLABLE_SCHEMA)
    path = settings.inbox / name
    pq.write_table(table, path)
    return path


def deliver_bytes(settings: Settings, name: str, data: bytes) -> Path:
    path = settings.inbox / name
    path.write_bytes(data)
    return path


def ledger_by_id(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str | None]]:
    rows = con.execute("SELECT request_id, state, reason FROM requests").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def assert_file_quarantined(
    con: duckdb.DuckDBPyConnection, settings: Settings, out: FileOutcome, reason_part: str
) -> None:
    """A whole-file failure: no rows in the ledger, the file recorded with its reason and copied."""
    assert out.outcome == "quarantined" and out.rows == 0
    assert out.reason is not None and reason_part in out.reason, out.reason
    stored = warehouse.fetch_one(
        con,
        "SELECT outcome, reason, rows_received, quarantine_path FROM manifest_files "
        "WHERE file_digest = ?",
        [out.digest],
    )
    assert stored[:3] == ("quarantined", out.reason, 0)
    copy = Path(stored[3])
    assert copy.parent == settings.quarantine and copy.exists()
    assert warehouse.rows_received(con) == 0


# --- file-level failures -----------------------------------------------------------------------------


def test_missing_required_column_quarantines_the_file(con, settings) -> None:
    table = pa.Table.from_pylist([row()], contract.MANIFEST_SCHEMA).drop_columns(["legal_basis"])
    out = ingest_file(con, settings, deliver(settings, "missing.parquet", table))
    assert_file_quarantined(con, settings, out, "missing required column 'legal_basis'")


def test_extra_column_quarantines_the_file(con, settings) -> None:
    table = pa.Table.from_pylist([row()], contract.MANIFEST_SCHEMA)
    table = table.append_column("email", pa.array(["a@example.org"]))
    out = ingest_file(con, settings, deliver(settings, "extra.parquet", table))
    assert_file_quarantined(con, settings, out, "unexpected column 'email'")


def test_integer_request_id_is_a_wrong_type(con, settings) -> None:
    table = pa.table(
        {
            "request_id": pa.array([1, 2]),
            "subject_id": ["subject-3", "subject-4"],
            "requested_at": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC")),
            "legal_basis": ["gdpr-art17", "other"],
        }
    )
    out = ingest_file(con, settings, deliver(settings, "int-ids.parquet", table))
    assert_file_quarantined(
        con, settings, out, "column 'request_id' is int64, contract v1 wants string"
    )


def test_string_timestamp_is_a_wrong_type(con, settings) -> None:
    table = pa.table(
        {
            "request_id": ["req-1"],
            "subject_id": ["subject-3"],
            "requested_at": ["2026-11-20T10:00:00Z"],
            "legal_basis": ["gdpr-art17"],
        }
    )
    out = ingest_file(con, settings, deliver(settings, "str-ts.parquet", table))
    assert_file_quarantined(con, settings, out, "column 'requested_at' is string")


def test_timestamp_without_timezone_quarantines_the_file(con, settings) -> None:
    table = pa.Table.from_pylist([row()], contract.MANIFEST_SCHEMA)
    naive = table.column("requested_at").cast(pa.timestamp("us"))
    table = table.set_column(2, "requested_at", naive)
    out = ingest_file(con, settings, deliver(settings, "naive.parquet", table))
    assert_file_quarantined(
        con,
        settings,
        out,
        "column 'requested_at' is timestamp[us], contract v1 wants a timestamp with a timezone",
    )


def test_timestamp_outside_the_contract_range_quarantines_the_file(con, settings) -> None:
    # Milliseconds since 1970 that overflow int64 microseconds: no contract-v1 representation.
    millis = pa.array([2**62], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    table = pa.Table.from_pylist([row()], contract.MANIFEST_SCHEMA).set_column(
        2, "requested_at", millis
    )
    out = ingest_file(con, settings, deliver(settings, "far-future.parquet", table))
    assert_file_quarantined(con, settings, out, contract.FILE_UNCASTABLE)


def test_duplicate_column_names_quarantine_the_file(con, settings) -> None:
    table = pa.Table.from_pylist([row()], contract.MANIFEST_SCHEMA)
    table = table.append_column("subject_id", pa.array(["subject-4"]))
    out = ingest_file(con, settings, deliver(settings, "dupe-cols.parquet", table))
    assert_file_quarantined(con, settings, out, contract.FILE_DUPLICATE_COLUMNS)


def test_empty_file_quarantines_with_its_own_reason(con, settings) -> None:
    out = ingest_file(con, settings, deliver_bytes(settings, "empty.parquet", b""))
    assert_file_quarantined(con, settings, out, contract.FILE_EMPTY)


def test_zero_row_file_quarantines_the_file(con, settings) -> None:
    out = ingest_file(con, settings, deliver(settings, "zero.parquet", []))
    assert_file_quarantined(con, settings, out, contract.FILE_ZERO_ROWS)


def test_truncated_parquet_quarantines_the_file(con, settings) -> None:
    good = deliver(settings, "whole.parquet", valid_rows(50)).read_bytes()
    (settings.inbox / "whole.parquet").unlink()
    out = ingest_file(con, settings, deliver_bytes(settings, "cut.parquet", good[: len(good) // 2]))
    assert_file_quarantined(con, settings, out, contract.FILE_NOT_PARQUET)


def test_csv_bytes_named_parquet_quarantine_the_file(con, settings) -> None:
    csv = b"request_id,subject_id,requested_at,legal_basis\nreq-1,subject-3,2026-11-20,gdpr-art17\n"
    out = ingest_file(con, settings, deliver_bytes(settings, "really.csv.parquet", csv))
    assert_file_quarantined(con, settings, out, contract.FILE_NOT_PARQUET)


def test_parquet_magic_with_garbage_inside_quarantines_the_file(con, settings) -> None:
    data = b"PAR1" + os.urandom(4096) + b"PAR1"
    out = ingest_file(con, settings, deliver_bytes(settings, "garbage.parquet", data))
    assert_file_quarantined(con, settings, out, contract.FILE_NOT_PARQUET)


def test_strings_that_are_not_utf8_quarantine_the_file(con, settings) -> None:
    # Parquet readers do not validate UTF-8; such bytes would make DuckDB fail mid-insert.
    data = b"req-1\xff\xfe"
    offsets = pa.array([0, len(data)], pa.int32()).buffers()[1]
    bad_ids = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])
    table = pa.Table.from_pylist([row()], NULLABLE_SCHEMA).set_column(0, "request_id", bad_ids)
    out = ingest_file(con, settings, deliver(settings, "latin1.parquet", table))
    assert_file_quarantined(con, settings, out, contract.FILE_MALFORMED)


# --- row-level failures: the bad row is quarantined, the rest of the file lands as pending --------


def test_null_ids_quarantine_only_their_rows(con, settings) -> None:
    rows = [
        *valid_rows(3),
        row(request_id=None, subject_id="subject-5"),
        row(request_id="req-n", subject_id=None),
    ]
    out = ingest_file(con, settings, deliver(settings, "nulls.parquet", rows))
    assert (
        out.outcome == "ingested" and out.states["pending"] == 3 and out.states["quarantined"] == 2
    )
    reasons = dict(
        con.execute(
            "SELECT row_number, reason FROM requests WHERE state = 'quarantined'"
        ).fetchall()
    )
    assert reasons == {3: "null request_id", 4: "null subject_id"}


def test_null_requested_at_is_quarantined(con, settings) -> None:
    out = ingest_file(con, settings, deliver(settings, "null-ts.parquet", [row(requested_at=None)]))
    assert out.outcome == "quarantined"
    assert ledger_by_id(con)["req-1"] == ("quarantined", "null requested_at")


def test_duplicate_request_ids_within_a_file_quarantine_every_copy(con, settings) -> None:
    rows = [
        row(request_id="dup"),
        row(request_id="dup", subject_id="subject-4"),
        row(request_id="solo"),
    ]
    ingest_file(con, settings, deliver(settings, "dups.parquet", rows))
    states = con.execute(
        "SELECT request_id, state, reason FROM requests ORDER BY row_number"
    ).fetchall()
    assert states == [
        ("dup", "quarantined", "duplicate request_id within file"),
        ("dup", "quarantined", "duplicate request_id within file"),
        ("solo", "pending", None),
    ]


def test_same_request_with_different_content_in_a_later_file_is_a_conflict(con, settings) -> None:
    ingest_file(con, settings, deliver(settings, "day1.parquet", [row(request_id="r-9")]))
    out = ingest_file(
        con,
        settings,
        deliver(settings, "day2.parquet", [row(request_id="r-9", legal_basis="other")]),
    )
    assert out.states["quarantined"] == 1
    rows = con.execute(
        "SELECT state, reason FROM requests WHERE request_id = 'r-9' ORDER BY updated_at"
    ).fetchall()
    assert rows == [("pending", None), ("quarantined", contract.REASON_CONFLICT)]


def test_same_request_with_identical_content_in_a_later_file_is_superseded(con, settings) -> None:
    ingest_file(con, settings, deliver(settings, "day1.parquet", [row(request_id="r-7")]))
    # A different file (one more row) repeating r-7 unchanged: r-7 is a no-op, the new row lands.
    rows = [row(request_id="r-7"), row(request_id="r-8", subject_id="subject-8")]
    out = ingest_file(con, settings, deliver(settings, "day2.parquet", rows))
    assert out.outcome == "ingested" and out.states == {
        "quarantined": 0,
        "pending": 1,
        "superseded": 1,
    }
    states = con.execute(
        "SELECT request_id, state, reason FROM requests ORDER BY request_id, state"
    ).fetchall()
    assert states == [
        ("r-7", "pending", None),
        ("r-7", "superseded", contract.REASON_SUPERSEDED),
        ("r-8", "pending", None),
    ]


def test_resubmission_after_a_quarantined_attempt_is_accepted(con, settings) -> None:
    ingest_file(
        con,
        settings,
        deliver(settings, "day1.parquet", [row(request_id="r-1", legal_basis="nope")]),
    )
    ingest_file(con, settings, deliver(settings, "day2.parquet", [row(request_id="r-1")]))
    states = con.execute(
        "SELECT state FROM requests WHERE request_id = 'r-1' ORDER BY updated_at"
    ).fetchall()
    assert states == [("quarantined",), ("pending",)]


def test_unknown_subject_is_quarantined(con, settings) -> None:
    rows = [
        row(request_id="a", subject_id="subject-999999", model_name=None),
        row(request_id="b", subject_id="subject-999999"),
    ]
    ingest_file(con, settings, deliver(settings, "unknown-subject.parquet", rows))
    assert ledger_by_id(con) == {
        "a": ("quarantined", contract.REASON_SUBJECT_UNKNOWN),
        "b": ("quarantined", contract.REASON_SUBJECT_NOT_IN_MODEL),
    }


def test_unknown_model_is_quarantined(con, settings) -> None:
    ingest_file(
        con, settings, deliver(settings, "unknown-model.parquet", [row(model_name="no-such-model")])
    )
    assert ledger_by_id(con)["req-1"] == ("quarantined", contract.REASON_UNKNOWN_MODEL)


def test_sample_ids_must_be_training_samples_of_the_subject(con, settings) -> None:
    own, other = train_samples("subject-3"), train_samples("subject-4")
    ds = load_digits_dataset()
    test_sample = ds.sample_ids[~ds.is_train & (ds.subject_ids == "subject-3")].tolist()
    rows = [
        row(request_id="own", sample_ids=own[:1]),
        row(request_id="other", sample_ids=[own[0], other[0]]),
        row(request_id="test-split", sample_ids=test_sample),
        row(request_id="empty", sample_ids=[]),
        row(request_id="null-element", sample_ids=[own[0], None]),
    ]
    ingest_file(con, settings, deliver(settings, "samples.parquet", rows))
    assert ledger_by_id(con) == {
        "own": ("pending", None),
        "other": ("quarantined", contract.REASON_FOREIGN_SAMPLES),
        "test-split": ("quarantined", contract.REASON_FOREIGN_SAMPLES),
        "empty": ("quarantined", contract.REASON_EMPTY_SAMPLE_IDS),
        "null-element": ("quarantined", contract.REASON_FOREIGN_SAMPLES),
    }


def test_future_requested_at_is_quarantined_beyond_clock_skew(con, settings) -> None:
    rows = [
        row(request_id="skew", requested_at=NOW + timedelta(minutes=1)),
        row(
            request_id="future",
            requested_at=NOW + timedelta(days=3),
            deadline=NOW + timedelta(days=30),
        ),
    ]
    ingest_file(con, settings, deliver(settings, "future.parquet", rows))
    assert ledger_by_id(con) == {
        "skew": ("pending", None),
        "future": ("quarantined", contract.REASON_FUTURE),
    }


def test_deadline_not_after_request_is_quarantined(con, settings) -> None:
    rows = [
        row(request_id="before", deadline=NOW - timedelta(days=2)),
        row(
            request_id="equal",
            requested_at=NOW - timedelta(days=1),
            deadline=NOW - timedelta(days=1),
        ),
        row(request_id="none", deadline=None),
    ]
    ingest_file(con, settings, deliver(settings, "deadline.parquet", rows))
    assert ledger_by_id(con) == {
        "before": ("quarantined", contract.REASON_DEADLINE),
        "equal": ("quarantined", contract.REASON_DEADLINE),
        "none": ("pending", None),
    }


def test_legal_basis_outside_the_allowed_set_is_quarantined(con, settings) -> None:
    rows = [
        row(request_id=f"lb-{b}", legal_basis=b)
        for b in ("because", "GDPR-art17", "", *contract.LEGAL_BASES)
    ]
    ingest_file(con, settings, deliver(settings, "basis.parquet", rows))
    got = ledger_by_id(con)
    for bad in ("because", "GDPR-art17", ""):
        assert got[f"lb-{bad}"][0] == "quarantined"
        assert got[f"lb-{bad}"][1].startswith("legal_basis not in gdpr-art17")
    assert all(got[f"lb-{b}"] == ("pending", None) for b in contract.LEGAL_BASES)


def test_megabyte_ids_are_quarantined_without_reaching_the_suite(con, settings) -> None:
    huge = "x" * 1_000_000
    rows = [
        row(request_id=huge),
        row(request_id="big-subject", subject_id=huge),
        row(request_id="big-model", model_name=huge),
        *valid_rows(2),
    ]
    out = ingest_file(con, settings, deliver(settings, "huge.parquet", rows))
    assert out.states == {"quarantined": 3, "pending": 2, "superseded": 0}
    reasons = dict(
        con.execute(
            "SELECT row_number, reason FROM requests WHERE state = 'quarantined'"
        ).fetchall()
    )
    assert reasons[0] == contract.oversized_reason("request_id")
    assert (
        reasons[1]
        == f"{contract.oversized_reason('subject_id')}; {contract.REASON_SUBJECT_NOT_IN_MODEL}"
    )
    assert (
        reasons[2] == f"{contract.oversized_reason('model_name')}; {contract.REASON_UNKNOWN_MODEL}"
    )
    stored = warehouse.fetch_one(con, "SELECT validation_json FROM manifest_files")[0]
    assert '"rows_validated": 2' in stored  # the suite never saw the oversized rows


def test_control_characters_and_unicode_in_ids(con, settings) -> None:
    rows = [
        row(request_id="req-newline\n"),  # Python's `$` accepts a trailing newline: caught anyway
        row(request_id="req\x00nul"),
        row(request_id="req-\u00e9t\u00e9"),  # non-ASCII request id breaks the id pattern
        row(request_id="req-\U0001f600"),
        row(request_id="esc", subject_id="subject-3\x1b[31m"),
        row(request_id="uni-subject", subject_id="s\u00fcbject-3"),
        row(request_id="rtl", subject_id="subject-3\u202e"),
    ]
    ingest_file(con, settings, deliver(settings, "unicode.parquet", rows))
    got = con.execute(
        "SELECT row_number, state, reason FROM requests ORDER BY row_number"
    ).fetchall()
    pattern = f"request_id does not match {contract.REQUEST_ID_PATTERN}"
    assert [g[1] for g in got] == ["quarantined"] * 7
    assert got[0][2] == "request_id contains control characters"
    assert got[1][2] == f"{pattern}; request_id contains control characters"
    assert got[2][2] == got[3][2] == pattern
    assert (
        got[4][2]
        == f"subject_id contains control characters; {contract.REASON_SUBJECT_NOT_IN_MODEL}"
    )
    assert got[5][2] == got[6][2] == contract.REASON_SUBJECT_NOT_IN_MODEL


def test_sql_injection_like_values_are_plain_data(con, settings) -> None:
    evil = "x'); DROP TABLE requests; --"
    rows = [
        row(request_id=evil),
        row(request_id="evil-subject", subject_id=evil),
        row(request_id="evil-model", model_name="'; DELETE FROM models; --"),
        row(request_id="evil-sample", sample_ids=["digits-1' OR '1'='1"]),
        *valid_rows(1),
    ]
    out = ingest_file(
        con, settings, deliver(settings, "x'); DROP TABLE manifest_files; --.parquet", rows)
    )
    assert out.states == {"quarantined": 4, "pending": 1, "superseded": 0}
    got = ledger_by_id(con)
    assert got[evil] == ("quarantined", f"request_id does not match {contract.REQUEST_ID_PATTERN}")
    assert got["evil-subject"] == ("quarantined", contract.REASON_SUBJECT_NOT_IN_MODEL)
    assert got["evil-model"] == ("quarantined", contract.REASON_UNKNOWN_MODEL)
    assert got["evil-sample"] == ("quarantined", contract.REASON_FOREIGN_SAMPLES)
    assert warehouse.model_names(con) == [MODEL]
    assert warehouse.fetch_one(con, "SELECT file_name FROM manifest_files")[0] == out.file_name


@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2Fetc.parquet",
        "with spaces \u00fcn\u00efc\u00f8d\u00e9 \U0001f600.parquet",
        "-rf --no-preserve-root",
        "new\nline.parquet",
        "x" * 250,
    ],
)
def test_path_tricks_in_file_names_stay_inside_quarantine(con, settings, name: str) -> None:
    out = ingest_file(con, settings, deliver_bytes(settings, name, b"not parquet"))
    assert_file_quarantined(con, settings, out, contract.FILE_NOT_PARQUET)
    assert out.file_name == name  # recorded as delivered
    (copy,) = settings.quarantine.iterdir()
    assert copy.resolve().parent == settings.quarantine.resolve()
    assert copy.name.startswith(out.digest[:12] + "-") and len(copy.name) <= 133
    assert set(copy.name) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
    )


def test_a_symlink_planted_in_quarantine_is_replaced_not_followed(con, settings, tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    path = deliver_bytes(settings, "bad.parquet", b"junk")
    from data_contracts.hashing import file_sha256
    from tasks.ingest import quarantine_path

    target = quarantine_path(settings, file_sha256(b"junk"), "bad.parquet")
    target.parent.mkdir(parents=True)
    target.symlink_to(victim)
    ingest_file(con, settings, path)
    assert victim.read_text() == "keep me"
    assert not target.is_symlink() and target.read_bytes() == b"junk"


def test_the_same_file_delivered_twice_is_a_no_op(con, settings) -> None:
    path = deliver(settings, "day1.parquet", valid_rows(5))
    first = ingest_file(con, settings, path)
    before = (warehouse.state_counts(con), warehouse.files_summary(con))
    again = ingest_file(con, settings, path)
    renamed = deliver_bytes(settings, "day1-resent.parquet", path.read_bytes())
    resent = ingest_file(con, settings, renamed)
    assert first.outcome == "ingested" and first.states["pending"] == 5
    assert again.outcome == resent.outcome == "duplicate-file"
    assert again.reason == contract.FILE_ALREADY_INGESTED and again.digest == first.digest
    assert (warehouse.state_counts(con), warehouse.files_summary(con)) == before


def test_a_file_whose_rows_all_fail_is_recorded_as_quarantined(con, settings) -> None:
    out = ingest_file(con, settings, deliver(settings, "all-bad.parquet", [row(legal_basis="x")]))
    assert out.outcome == "quarantined" and out.rows == 1
    assert warehouse.files_summary(con)[0]["outcome"] == "quarantined"


# --- mixed files, rejected-rows Parquet, and a bad file among good ones ----------------------------


def test_valid_rows_of_a_mixed_file_land_as_pending_and_rejects_go_to_parquet(
    con, settings
) -> None:
    rows = [
        *valid_rows(20),
        row(request_id="bad-basis", legal_basis="because"),
        row(request_id="nobody", subject_id="subject-999999"),
    ]
    out = ingest_file(con, settings, deliver(settings, "mixed day.parquet", rows))
    assert out.outcome == "ingested"
    assert out.states == {"quarantined": 2, "pending": 20, "superseded": 0}
    assert out.reason is not None and out.reason.startswith("2 of 22 rows quarantined")
    qpath = Path(warehouse.fetch_one(con, "SELECT quarantine_path FROM manifest_files")[0])
    assert qpath.parent == settings.quarantine and qpath.name.endswith(
        "-mixed_day.rejected.parquet"
    )
    rejected = pq.read_table(qpath).to_pylist()
    assert [(r["row_number"], r["request_id"]) for r in rejected] == [
        (20, "bad-basis"),
        (21, "nobody"),
    ]
    assert rejected[0]["reason"].startswith("legal_basis not in")
    assert rejected[1]["reason"] == contract.REASON_SUBJECT_NOT_IN_MODEL
    assert "subject_id" not in pq.read_schema(qpath).names  # raw subject ids stay in DuckDB


def test_a_whole_file_failure_does_not_stop_the_other_files(con, settings) -> None:
    deliver_bytes(settings, "a-empty.parquet", b"")
    deliver(settings, "b-good.parquet", valid_rows(4, prefix="b"))
    deliver_bytes(settings, "c-junk.parquet", b"\x00" * 100)
    deliver(settings, "d-good.parquet", valid_rows(3, prefix="d"))
    outcomes = [ingest_file(con, settings, p) for p in inbox_files(settings)]
    assert [(o.file_name, o.outcome, o.rows) for o in outcomes] == [
        ("a-empty.parquet", "quarantined", 0),
        ("b-good.parquet", "ingested", 4),
        ("c-junk.parquet", "quarantined", 0),
        ("d-good.parquet", "ingested", 3),
    ]
    assert warehouse.state_counts(con)["pending"] == 7


def test_inbox_skips_hidden_partial_symlinked_and_directory_entries(settings, tmp_path) -> None:
    deliver(settings, "good.parquet", valid_rows(1))
    deliver(settings, ".hidden.parquet", valid_rows(1))
    deliver(settings, "upload.parquet.tmp", valid_rows(1))
    (settings.inbox / "folder.parquet").mkdir()
    (settings.inbox / "link.parquet").symlink_to(tmp_path / "elsewhere.parquet")
    (tmp_path / "elsewhere.parquet").write_bytes(b"x")
    assert [p.name for p in inbox_files(settings)] == ["good.parquet"]


def test_pandas_categorical_and_large_string_columns_are_accepted(con, settings) -> None:
    df = pd.DataFrame(valid_rows(6))
    df["legal_basis"] = df["legal_basis"].astype("category")
    table = pa.Table.from_pandas(df, preserve_index=False)
    assert pa.types.is_dictionary(table.schema.field("legal_basis").type)
    table = table.set_column(0, "request_id", table.column("request_id").cast(pa.large_string()))
    out = ingest_file(con, settings, deliver(settings, "from-pandas.parquet", table))
    assert out.outcome == "ingested" and out.states["pending"] == 6


def test_hundred_thousand_rows_with_some_invalid_are_validated_in_full(con, settings) -> None:
    n = 100_000
    rng = np.random.default_rng(0)
    ids = np.array([f"req-{i}" for i in range(n)], dtype=object)
    subjects = np.array([f"subject-{i}" for i in rng.integers(0, 450, n)], dtype=object)
    basis = np.full(n, "gdpr-art17", dtype=object)
    bad = rng.choice(n, 3000, replace=False)
    basis[bad[:1000]] = "because"
    subjects[bad[1000:2000]] = "subject-100000"
    ids[bad[2000:]] = "bad id"  # repeated and off-pattern: two reasons each
    table = pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "subject_id": pa.array(subjects, pa.string()),
            "requested_at": pa.array(
                np.full(n, int((NOW - timedelta(days=1)).timestamp() * 1e6)),
                pa.timestamp("us", tz="UTC"),
            ),
            "legal_basis": pa.array(basis, pa.string()),
        }
    )
    out = ingest_file(con, settings, deliver(settings, "big.parquet", table))
    assert out.rows == n and out.states == {
        "quarantined": 3000,
        "pending": n - 3000,
        "superseded": 0,
    }
    reasons = dict(
        con.execute(
            "SELECT reason, count(*) FROM requests WHERE state = 'quarantined' GROUP BY reason"
        ).fetchall()
    )
    assert reasons == {
        "legal_basis not in gdpr-art17, ccpa-1798.105, consent-withdrawn, contract-end, other": 1000,
        contract.REASON_SUBJECT_UNKNOWN: 1000,
        f"duplicate request_id within file; request_id does not match {contract.REQUEST_ID_PATTERN}": 1000,
    }


# --- progress ------------------------------------------------------------------------------------


def test_validating_a_file_reports_progress_per_step_under_a_safe_label(con, settings) -> None:
    seen: list[tuple[str, int, int]] = []

    def factory(label: str) -> Callable[[int, int], None]:
        return lambda done, total: seen.append((label, done, total))

    with progress_sink(factory):
        ingest_file(con, settings, deliver(settings, "day[1]\x1b.parquet", valid_rows(3)))
        ingest_file(con, settings, deliver_bytes(settings, "junk.parquet", b"junk"))
    assert seen == [
        *(("validating day_1__.parquet", step, INGEST_STEPS) for step in range(1, 5)),
        ("validating junk.parquet", INGEST_STEPS, INGEST_STEPS),  # a whole-file failure: done
    ]
    # Without a sink nothing is reported and nothing fails.
    assert ingest_file(con, settings, deliver(settings, "quiet.parquet", valid_rows(2, "q"))).rows
