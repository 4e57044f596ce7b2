"""Ingest manifest files into the ledger: each file once (by content digest), every row validated.

A file is processed in three layers: file-level (non-empty, readable Parquet, contract schema and
types, at least one row), the contract's expectation suite (GX, or the same suite compiled to
DuckDB SQL for files above `SQL_ENGINE_MIN_ROWS`), then referential checks in DuckDB (subject in
the training index, model exists, sample_ids belong to the subject, timestamps, conflicts with the
ledger). States and reasons are computed by one set-based query (no per-row Python), and the file
record plus all of its rows are written in one transaction: a crash re-ingests the whole file on
the next run, never half of it.

What a row costs is kept to what the ledger needs (benchmarks/results/ingest_10m.md): rows carry
an integer file id instead of the 64-character digest, (file_id, row_number) is unique by
construction rather than through an index, and the salted request hash is computed only for
quarantined rows here (the run report shows it) and for the rows a run claims
(tasks/ledger.py), not for every row received."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts import manifest as contract
from data_contracts.hashing import file_sha256
from data_contracts.settings import Settings
from data_contracts.states import RequestState
from tasks import warehouse
from tasks.gx_validation import ROW_KEY, Engine, gx_failures, sql_failures
from tasks.ledger import REQUEST_HASH
from tasks.progress import reporter

# Files with more rows are validated by the SQL-compiled suite: same spec, same reasons (tested),
# ~7x less CPU and ~3x less memory than GX's pandas path at 10M rows, and it uses both cores
# (benchmarks/results/ingest_10m.md). Below the threshold GX runs, as the reference engine.
SQL_ENGINE_MIN_ROWS = 1_000_000
SCAN_BATCH_ROWS = 122_880  # DuckDB's row-group size
EngineChoice = Literal["auto", "great_expectations", "duckdb-sql"]


@dataclass
class FileOutcome:
    file_name: str
    digest: str
    outcome: str  # ingested | duplicate-file | quarantined
    rows: int = 0
    states: dict[str, int] = field(default_factory=dict)
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def inbox_files(settings: Settings) -> list[Path]:
    """Regular files directly in the inbox, by name (hidden, partial `.tmp` and symlinks skipped)."""
    if not settings.inbox.exists():
        return []
    return sorted(
        p
        for p in settings.inbox.iterdir()
        if not p.is_symlink()  # a link could point anywhere on the host
        and p.is_file()
        and not p.name.startswith(".")
        and not p.name.endswith(".tmp")
    )


def choose_engine(rows: int, engine: EngineChoice = "auto") -> Engine:
    if engine != "auto":
        return engine
    return "duckdb-sql" if rows >= SQL_ENGINE_MIN_ROWS else "great_expectations"


# --- quarantine files ----------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A file name that cannot leave its directory or surprise a shell: [A-Za-z0-9._-], <= 120."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "manifest"


def quarantine_path(settings: Settings, digest: str, name: str, suffix: str = "") -> Path:
    """Where a quarantined file goes: inside settings.quarantine, prefixed by the digest."""
    return settings.quarantine / f"{digest[:12]}-{safe_name(name)}{suffix}"


def _write_atomic(target: Path, write: Callable[[Path], None]) -> Path:
    """Write via a temporary file and rename: no half-written file, and a symlink planted at
    `target` is replaced rather than followed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --- file level ----------------------------------------------------------------------------------


def read_manifest(data: bytes) -> tuple[pa.Table | None, str | None]:
    """The file as a contract-v1 table, or None and the reason the whole file is rejected."""
    if not data:
        return None, contract.FILE_EMPTY
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        # The schema is checked before any data page is decoded: a wrong file costs nothing.
        problems = contract.schema_problems(parquet.schema_arrow)
        if problems:
            return None, "; ".join(problems)
        if parquet.metadata.num_rows == 0:
            return None, contract.FILE_ZERO_ROWS
        schema = parquet.schema_arrow
        encoded = [
            c
            for c in contract.DICTIONARY_COLUMNS
            if c in schema.names and not pa.types.is_null(schema.field(c).type)
        ]
        table = pq.ParquetFile(pa.BufferReader(data), read_dictionary=encoded).read()
    except Exception as err:  # pyarrow raises several types for bad bytes; all mean "not Parquet"
        detail = " ".join(str(err).split())[:200]
        return None, f"{contract.FILE_NOT_PARQUET} ({type(err).__name__}: {detail})"
    try:
        # Parquet readers do not check UTF-8; DuckDB would refuse the rows half-way through.
        table.validate(full=True)
    except pa.ArrowInvalid as err:
        return None, f"{contract.FILE_MALFORMED} ({' '.join(str(err).split())[:200]})"
    try:
        table = contract.conform(table)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        detail = " ".join(str(err).split())[:200]
        return None, f"{contract.FILE_UNCASTABLE} ({detail})"
    # DuckDB parallelises an Arrow scan by record batch: a file written as one huge row group
    # would otherwise be scanned by one thread. Slicing is zero-copy.
    return pa.Table.from_batches(
        table.to_batches(max_chunksize=SCAN_BATCH_ROWS), table.schema
    ), None


def _quarantine_file(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    name: str,
    digest: str,
    data: bytes,
    reason: str,
) -> FileOutcome:
    target = _write_atomic(quarantine_path(settings, digest, name), lambda p: p.write_bytes(data))
    with warehouse.transaction(con):
        warehouse.record_file(
            con,
            file_id=warehouse.next_file_id(con),
            digest=digest,
            file_name=name,
            rows=0,
            outcome="quarantined",
            reason=reason,
            quarantine_path=str(target),
            contract_version=contract.CONTRACT_VERSION,
        )
    return FileOutcome(file_name=name, digest=digest, outcome="quarantined", reason=reason)


# --- row level -----------------------------------------------------------------------------------


def _too_long(column: str, alias: str = "") -> str:
    # strlen (bytes, O(1)) bounds length (code points, O(n)) from above: check it first.
    col = f"{alias}{column}"
    limit = contract.MAX_ID_CHARS
    return f"(strlen({col}) > {limit} AND length({col}) > {limit})"


_OVERSIZED = " OR ".join(_too_long(c) for c in contract.SIZE_CHECKED_COLUMNS)
# Rows the suite sees: oversized rows are already quarantined with their own reason.
SUITE_RELATION = f"(SELECT * FROM incoming_rows WHERE NOT coalesce({_OVERSIZED}, false))"
_SIZE_FLAGS = ", ".join(
    f"{_too_long(c, 'i.')} AS too_long_{c}" for c in contract.SIZE_CHECKED_COLUMNS
)
_ANY_SIZE_FLAG = " OR ".join(f"too_long_{c}" for c in contract.SIZE_CHECKED_COLUMNS)
_SIZE_REASONS = ", ".join(
    f"CASE WHEN too_long_{c} THEN '{contract.oversized_reason(c)}' END"
    for c in contract.SIZE_CHECKED_COLUMNS
)

# Every incoming row -> its ledger row, in one pass over `incoming_rows` (the registered Arrow
# table). The joins have tiny build sides (subjects of the file, failing rows, earlier requests
# with the same ids), so a 10M-row file costs a handful of hash probes per row.
LEDGER_ROWS_SQL = f"""
WITH subjects AS (
  -- One row per subject of the file: whether the training index holds any row of it (train or
  -- test split: test rows are personal data too, withdrawn by an erasure), and for which models.
  SELECT s.subject_id, bool_or(t.subject_id IS NOT NULL) AS in_training,
         list(DISTINCT m.model_name) FILTER (WHERE m.model_name IS NOT NULL) AS models
  FROM (SELECT DISTINCT subject_id FROM incoming_rows WHERE subject_id IS NOT NULL) s
  LEFT JOIN training_index t ON t.subject_id = s.subject_id
  LEFT JOIN models m ON m.dataset = t.dataset
  GROUP BY s.subject_id),
suite AS (
  SELECT row_number,
         array_to_string(list_transform(failed, lambda x: $suite_reasons[x + 1]), '; ') AS reason
  FROM contract_failures),
foreign_samples AS (
  SELECT DISTINCT u.row_number FROM (
    SELECT row_number, subject_id, unnest(sample_ids) AS sample_id
    FROM incoming_rows WHERE len(sample_ids) > 0) u
  WHERE NOT EXISTS (SELECT 1 FROM training_index t WHERE t.sample_id = u.sample_id
                      AND t.subject_id = u.subject_id AND t.split = 'train')),
prior AS (
  -- Accepted earlier rows with the same request_id all carry identical content (a different
  -- one would have been quarantined as a conflict), so any one of them stands for all.
  SELECT request_id, any_value({{'subject_id': subject_id, 'requested_at': requested_at,
      'legal_basis': legal_basis, 'model_name': model_name, 'deadline': deadline,
      'sample_ids': list_sort(sample_ids)}}) AS content
  FROM requests
  WHERE state <> 'quarantined' AND request_id IN (SELECT request_id FROM incoming_rows)
  GROUP BY request_id),
flagged AS (
  -- Each check as a boolean first: the reason text is built only for the few failing rows.
  SELECT i.*, p.content AS prior, q.reason AS suite_reason,
    {_SIZE_FLAGS},
    i.model_name IS NOT NULL AND NOT list_contains($models::VARCHAR[], i.model_name)
      AS unknown_model,
    CASE WHEN i.subject_id IS NULL THEN NULL
         WHEN i.model_name IS NULL THEN NOT coalesce(s.in_training, false)
         WHEN list_contains($models::VARCHAR[], i.model_name)
           THEN NOT coalesce(list_contains(s.models, i.model_name), false)
    END AS unknown_subject,
    len(i.sample_ids) = 0 AS empty_samples,
    f.row_number IS NOT NULL AS foreign_samples,
    i.requested_at > $now + to_minutes($future_minutes) AS future,
    i.deadline <= i.requested_at AS bad_deadline
  FROM incoming_rows i
  LEFT JOIN subjects s ON s.subject_id = i.subject_id
  LEFT JOIN suite q ON q.row_number = i.row_number
  LEFT JOIN foreign_samples f ON f.row_number = i.row_number
  LEFT JOIN prior p ON p.request_id = i.request_id),
checked AS (
  SELECT *, CASE WHEN {_ANY_SIZE_FLAG} OR suite_reason IS NOT NULL OR unknown_model
      OR unknown_subject OR empty_samples OR foreign_samples OR future OR bad_deadline
    THEN concat_ws('; ', {_SIZE_REASONS}, suite_reason,
      CASE WHEN unknown_model THEN $r_unknown_model END,
      CASE WHEN unknown_subject AND model_name IS NULL THEN $r_subject_unknown
           WHEN unknown_subject THEN $r_subject_not_in_model END,
      CASE WHEN empty_samples THEN $r_empty_samples END,
      CASE WHEN foreign_samples THEN $r_foreign_samples END,
      CASE WHEN future THEN $r_future END,
      CASE WHEN bad_deadline THEN $r_deadline END) END AS reasons
  FROM flagged),
decided AS (
  SELECT *, CASE WHEN reasons IS NOT NULL THEN 'quarantined' WHEN prior IS NULL THEN 'pending'
      WHEN prior.subject_id = subject_id AND prior.requested_at = requested_at
        AND prior.legal_basis = legal_basis
        AND prior.model_name IS NOT DISTINCT FROM model_name
        AND prior.deadline IS NOT DISTINCT FROM deadline
        AND prior.sample_ids IS NOT DISTINCT FROM list_sort(sample_ids) THEN 'superseded'
      ELSE 'quarantined' END AS state
  FROM checked)
SELECT $file_id AS file_id, row_number, request_id, subject_id, requested_at, legal_basis,
  model_name, deadline, sample_ids, state,
  CASE WHEN reasons IS NOT NULL THEN reasons WHEN state = 'superseded' THEN $r_superseded
       WHEN state = 'quarantined' THEN $r_conflict END AS reason,
  -- Hashed here only for the few quarantined rows; a claimed row gets its hash when claimed.
  CASE WHEN state = 'quarantined' THEN {REQUEST_HASH} END AS request_hash,
  $now AS updated_at
FROM decided
"""


def _ledger_params(con: duckdb.DuckDBPyConnection, *, file_id: int, salt: str) -> dict[str, Any]:
    return {
        "file_id": file_id,
        "salt": salt,
        # One clock for the whole file (the transaction's), and the model names as a constant
        # list: cheaper per row than a join.
        "now": warehouse.fetch_one(con, "SELECT now()")[0],
        "models": warehouse.model_names(con),
        "suite_reasons": [spec["reason"] for spec in contract.EXPECTATIONS],
        "future_minutes": contract.FUTURE_TOLERANCE_MINUTES,
        "r_unknown_model": contract.REASON_UNKNOWN_MODEL,
        "r_subject_unknown": contract.REASON_SUBJECT_UNKNOWN,
        "r_subject_not_in_model": contract.REASON_SUBJECT_NOT_IN_MODEL,
        "r_empty_samples": contract.REASON_EMPTY_SAMPLE_IDS,
        "r_foreign_samples": contract.REASON_FOREIGN_SAMPLES,
        "r_future": contract.REASON_FUTURE,
        "r_deadline": contract.REASON_DEADLINE,
        "r_superseded": contract.REASON_SUPERSEDED,
        "r_conflict": contract.REASON_CONFLICT,
    }


def validate_rows(
    con: duckdb.DuckDBPyConnection, engine: Engine
) -> tuple[pa.Table, dict[str, Any]]:
    """Run the contract suite on every row of the registered `incoming_rows` but oversized ones.

    Returns the failures table (row_number, indexes into EXPECTATIONS) and the run summary."""
    if engine == "duckdb-sql":
        rows = con.execute(f"SELECT count(*) FROM {SUITE_RELATION}").fetchall()[0][0]
        return sql_failures(con, SUITE_RELATION, rows=int(rows))
    columns = ", ".join([ROW_KEY, *contract.SUITE_COLUMNS])
    suite_rows = con.sql(f"SELECT {columns} FROM {SUITE_RELATION}").to_arrow_table()
    return gx_failures(suite_rows)


def _write_rejected(
    con: duckdb.DuckDBPyConnection, settings: Settings, *, file_id: int, digest: str, name: str
) -> Path:
    """Rejected rows with their reasons, beside the quarantined files (no raw subject ids)."""
    rejected = con.sql(
        """SELECT row_number, request_id, sha256($salt || '|' || subject_id) AS subject_hash,
                  requested_at, legal_basis, model_name, deadline, sample_ids, reason
           FROM requests WHERE file_id = $file_id AND state = 'quarantined'
           ORDER BY row_number""",
        params={"file_id": file_id, "salt": settings.salt()},
    ).to_arrow_table()
    target = quarantine_path(settings, digest, Path(name).stem, ".rejected.parquet")
    return _write_atomic(target, lambda p: pq.write_table(rejected, p))


# Progress steps of a file: read + file checks, suite, referential checks + ledger write, commit.
INGEST_STEPS = 4


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    path: Path,
    *,
    engine: EngineChoice = "auto",
) -> FileOutcome:
    """Ingest one inbox file into the ledger (idempotent by content digest).

    Reports progress per step to `tasks.progress.reporter("validating <file>")` when a sink is
    installed (each step is one set-based pass over all rows, so steps are the finest unit)."""
    name = path.name
    data = path.read_bytes()  # one read: the digest names exactly the bytes that were parsed
    digest = file_sha256(data)
    if warehouse.file_seen(con, digest):
        return FileOutcome(
            file_name=name,
            digest=digest,
            outcome="duplicate-file",
            reason=contract.FILE_ALREADY_INGESTED,
        )
    # The name is untrusted (it may carry markup or control characters): show the safe form.
    report = reporter(f"validating {safe_name(name)}")

    def step(done: int) -> None:
        if report is not None:
            report(done, INGEST_STEPS)

    table, file_reason = read_manifest(data)
    if table is None:
        outcome = _quarantine_file(
            con, settings, name=name, digest=digest, data=data, reason=file_reason or ""
        )
        step(INGEST_STEPS)
        return outcome
    del data  # only the Arrow table is needed from here on
    step(1)
    n = table.num_rows
    table = table.append_column(ROW_KEY, pa.array(np.arange(n, dtype=np.int64)))
    salt = settings.salt()
    con.register("incoming_rows", table)
    try:
        failures, summary = validate_rows(con, choose_engine(n, engine))
        step(2)
        con.register("contract_failures", failures)
        with warehouse.transaction(con):
            file_id = warehouse.next_file_id(con)
            con.execute(
                f"INSERT INTO requests BY NAME {LEDGER_ROWS_SQL}",
                _ledger_params(con, file_id=file_id, salt=salt),
            )
            # Ingestion only ever produces these three states.
            counts = {
                s.value: 0
                for s in (RequestState.QUARANTINED, RequestState.PENDING, RequestState.SUPERSEDED)
            }
            rows = con.execute(
                "SELECT state, count(*) FROM requests WHERE file_id = ? GROUP BY state",
                [file_id],
            ).fetchall()
            counts.update({state: int(c) for state, c in rows})
            if sum(counts.values()) != n:  # a join fanned out or dropped rows: a bug, not data
                raise RuntimeError(f"ledger rows for {name}: {counts} do not add up to {n}")
            bad = counts[RequestState.QUARANTINED.value]
            qpath, reason = None, None
            if bad:
                qpath = _write_rejected(con, settings, file_id=file_id, digest=digest, name=name)
                reason = f"{bad} of {n} rows quarantined (reasons in {qpath.name})"
            outcome = "quarantined" if bad == n else "ingested"
            warehouse.record_file(
                con,
                file_id=file_id,
                digest=digest,
                file_name=name,
                rows=n,
                outcome=outcome,
                reason=reason,
                quarantine_path=str(qpath) if qpath else None,
                contract_version=contract.CONTRACT_VERSION,
                validation=summary,
            )
            step(3)
        step(INGEST_STEPS)
    finally:
        con.unregister("incoming_rows")
        con.unregister("contract_failures")
    return FileOutcome(
        file_name=name, digest=digest, outcome=outcome, rows=n, states=counts, reason=reason
    )
