"""Ingest manifest files into the ledger: each file once (by content digest), every row validated.

A file is processed in three layers: file-level (readable Parquet, contract schema, non-empty),
the GX suite (row rules), then referential checks in DuckDB (subject in the training index, model
exists, sample_ids belong to the subject, timestamps, conflicts with the ledger). The file's record
and all of its rows are written in one transaction: a crash re-ingests the whole file next run."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_contracts.hashing import file_sha256
from data_contracts.manifest import CONTRACT_VERSION, conform, schema_problems
from data_contracts.settings import Settings
from data_contracts.states import RequestState
from tasks import warehouse
from tasks.gx_validation import ROW_KEY, run_suite

MAX_ID_CHARS = (
    1024  # longer ids are rejected before GX sees them (a 1 MB id is an attack, not a typo)
)


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
    """Regular files directly in the inbox, by name (hidden and partial `.tmp` uploads skipped)."""
    if not settings.inbox.exists():
        return []
    return sorted(
        p
        for p in settings.inbox.iterdir()
        if p.is_file()
        and not p.is_symlink()
        and not p.name.startswith(".")
        and not p.name.endswith(".tmp")
    )


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "manifest"


def _quarantine_copy(settings: Settings, path: Path, digest: str) -> Path:
    settings.quarantine.mkdir(parents=True, exist_ok=True)
    target = settings.quarantine / f"{digest[:12]}-{_safe_name(path.name)}"
    shutil.copyfile(path, target)
    return target


def _read(path: Path, data: bytes) -> tuple[pa.Table | None, str | None]:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as err:  # pyarrow raises several types for bad bytes; all mean "not Parquet"
        return None, f"not a readable Parquet file ({type(err).__name__}: {str(err)[:200]})"
    problems = schema_problems(table.schema)
    if problems:
        return None, "; ".join(problems)
    if table.num_rows == 0:
        return None, "file has zero rows"
    return conform(table), None


def _oversized_reasons(table: pa.Table) -> dict[int, list[str]]:
    reasons: dict[int, list[str]] = {}
    for column in ("request_id", "subject_id", "model_name"):
        lengths = pc.fill_null(pc.utf8_length(table.column(column)), 0)
        too_long = pc.greater(lengths, MAX_ID_CHARS)
        for row in pc.indices_nonzero(too_long).to_pylist():
            reasons.setdefault(row, []).append(f"{column} longer than {MAX_ID_CHARS} chars")
    return reasons


REFERENTIAL_SQL = """
WITH incoming AS (SELECT * FROM incoming_rows),
checks AS (
  SELECT i.row_number,
    list_filter([
      CASE WHEN i.subject_id IS NOT NULL AND NOT EXISTS (
          SELECT 1 FROM training_index t LEFT JOIN models m ON m.dataset = t.dataset
          WHERE t.subject_id = i.subject_id AND t.split = 'train'
            AND (i.model_name IS NULL OR m.model_name = i.model_name))
        THEN 'subject not in the training index'
             || CASE WHEN i.model_name IS NULL THEN '' ELSE ' of model ' || i.model_name END END,
      CASE WHEN i.model_name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM models m WHERE m.model_name = i.model_name)
        THEN 'unknown model_name' END,
      CASE WHEN i.sample_ids IS NOT NULL AND len(i.sample_ids) = 0 THEN 'sample_ids is an empty list' END,
      CASE WHEN i.sample_ids IS NOT NULL AND EXISTS (
          SELECT 1 FROM unnest(i.sample_ids) AS s(sid)
          WHERE NOT EXISTS (SELECT 1 FROM training_index t
                            WHERE t.sample_id = s.sid AND t.subject_id = i.subject_id AND t.split = 'train'))
        THEN 'sample_ids not all training samples of this subject' END,
      CASE WHEN i.requested_at > now() + INTERVAL 5 MINUTE THEN 'requested_at is in the future' END,
      CASE WHEN i.deadline IS NOT NULL AND i.deadline < i.requested_at THEN 'deadline before requested_at' END
    ], lambda x: x IS NOT NULL) AS ref_reasons
  FROM incoming i
),
prior AS (
  SELECT request_id, any_value(content_sha256) AS content_sha256
  FROM requests WHERE state <> 'quarantined' AND request_id IN (SELECT request_id FROM incoming)
  GROUP BY request_id
)
SELECT i.*, c.ref_reasons, p.content_sha256 AS prior_content
FROM incoming i JOIN checks c USING (row_number) LEFT JOIN prior p USING (request_id)
ORDER BY i.row_number
"""


def ingest_file(con: duckdb.DuckDBPyConnection, settings: Settings, path: Path) -> FileOutcome:
    """Ingest one inbox file into the ledger (idempotent by content digest)."""
    data = path.read_bytes()
    digest = file_sha256(data)
    if warehouse.file_seen(con, digest):
        return FileOutcome(
            file_name=path.name,
            digest=digest,
            outcome="duplicate-file",
            reason="same content already ingested",
        )
    table, file_reason = _read(path, data)
    if table is None:
        target = _quarantine_copy(settings, path, digest)
        with warehouse.transaction(con):
            warehouse.record_file(
                con,
                digest=digest,
                file_name=path.name,
                rows=0,
                outcome="quarantined",
                reason=file_reason,
                quarantine_path=str(target),
                contract_version=CONTRACT_VERSION,
            )
        return FileOutcome(
            file_name=path.name, digest=digest, outcome="quarantined", reason=file_reason
        )

    n = table.num_rows
    table = table.append_column(ROW_KEY, pa.array(range(n), type=pa.int64()))
    reasons = _oversized_reasons(table)
    oversized = sorted(reasons)
    # GX sees only rows of sane size; oversized rows are already quarantined with their reason.
    gx_table = (
        table
        if not oversized
        else table.filter(
            pc.invert(pc.is_in(table.column(ROW_KEY), pa.array(oversized, type=pa.int64())))
        )
    )
    gx_reasons, gx_summary = run_suite(gx_table.drop_columns(["sample_ids"]).to_pandas())
    for row, rs in gx_reasons.items():
        reasons.setdefault(row, []).extend(rs)

    salt = settings.salt()
    con.register("incoming_rows", table)
    try:
        checked = con.execute(REFERENTIAL_SQL).to_arrow_table()
    finally:
        con.unregister("incoming_rows")
    ref = checked.column("ref_reasons").to_pylist()
    prior = checked.column("prior_content").to_pylist()
    con.register("checked_rows", checked)
    try:
        content = con.execute(
            """SELECT sha256(concat_ws('|', request_id, subject_id, strftime(requested_at, '%Y-%m-%dT%H:%M:%S.%f'),
                      legal_basis, coalesce(model_name, ''), coalesce(strftime(deadline, '%Y-%m-%dT%H:%M:%S.%f'), ''),
                      coalesce(array_to_string(list_sort(sample_ids), ','), '*')))
               FROM checked_rows ORDER BY row_number"""
        ).fetchall()
    finally:
        con.unregister("checked_rows")
    states, row_reasons = [], []
    for row in range(n):
        rs = reasons.get(row, []) + list(ref[row] or [])
        if not rs and prior[row] is not None:
            if prior[row] == content[row][0]:
                states.append(RequestState.SUPERSEDED.value)
                row_reasons.append("identical request already received")
                continue
            rs.append("request_id already received with different content (conflict)")
        states.append(RequestState.QUARANTINED.value if rs else RequestState.PENDING.value)
        row_reasons.append("; ".join(rs) if rs else None)

    ledger_rows = pa.table(
        {
            "file_digest": pa.array([digest] * n),
            "row_number": table.column(ROW_KEY),
            "request_id": table.column("request_id"),
            "subject_id": table.column("subject_id"),
            "requested_at": table.column("requested_at"),
            "legal_basis": table.column("legal_basis"),
            "model_name": table.column("model_name"),
            "deadline": table.column("deadline"),
            "sample_ids": table.column("sample_ids"),
            "content_sha256": pa.array([c[0] for c in content]),
            "state": pa.array(states),
            "reason": pa.array(row_reasons, type=pa.string()),
        }
    )
    bad = [i for i, s in enumerate(states) if s == RequestState.QUARANTINED.value]
    qpath = None
    if bad:
        settings.quarantine.mkdir(parents=True, exist_ok=True)
        qpath = settings.quarantine / f"{digest[:12]}-{_safe_name(path.stem)}.rejected.parquet"
        pq.write_table(ledger_rows.take(bad).drop_columns(["subject_id", "file_digest"]), qpath)
    with warehouse.transaction(con):
        con.register("ledger_rows", ledger_rows)
        con.execute(
            """INSERT INTO requests BY NAME SELECT *,
                   sha256(? || '|' || subject_id) AS subject_hash,
                   sha256(? || '|' || request_id) AS request_hash,
                   NULL AS run_id, now() AS updated_at
               FROM ledger_rows""",
            [salt, salt],
        )
        con.unregister("ledger_rows")
        warehouse.record_file(
            con,
            digest=digest,
            file_name=path.name,
            rows=n,
            outcome="ingested" if len(bad) < n else "quarantined",
            reason=None if not bad else f"{len(bad)} of {n} rows quarantined",
            quarantine_path=str(qpath) if qpath else None,
            contract_version=CONTRACT_VERSION,
            validation=gx_summary,
        )
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    return FileOutcome(
        file_name=path.name, digest=digest, outcome="ingested", rows=n, states=counts
    )
