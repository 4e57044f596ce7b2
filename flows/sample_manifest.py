"""The demo's deletion manifest: a few valid requests and deliberately invalid rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.manifest import MANIFEST_SCHEMA


def write_sample_manifest(
    path: Path, *, model_name: str | None, subjects: list[str], now: datetime | None = None
) -> Path:
    """Valid requests for `subjects` plus one unknown subject and one bad legal basis."""
    now = now or datetime.now(UTC)
    rows = [
        {
            "request_id": f"req-{i:04d}",
            "subject_id": s,
            "requested_at": now - timedelta(days=2),
            "legal_basis": "gdpr-art17",
            "model_name": model_name if i % 2 else None,
            "deadline": now + timedelta(days=28),
            "sample_ids": None,
        }
        for i, s in enumerate(subjects)
    ]
    rows.append(
        {
            "request_id": "req-unknown-subject",
            "subject_id": "subject-999999",
            "requested_at": now - timedelta(days=1),
            "legal_basis": "ccpa-1798.105",
            "model_name": None,
            "deadline": None,
            "sample_ids": None,
        }
    )
    rows.append(
        {
            "request_id": "req-bad-basis",
            "subject_id": subjects[0],
            "requested_at": now - timedelta(days=1),
            "legal_basis": "because",
            "model_name": model_name,
            "deadline": None,
            "sample_ids": None,
        }
    )
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # atomic delivery: the inbox never sees half a file
    pq.write_table(table, tmp)
    tmp.rename(path)
    return path
