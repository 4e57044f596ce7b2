"""Manifest delivery for flow tests: one Parquet file dropped into the inbox atomically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.manifest import MANIFEST_SCHEMA
from data_contracts.settings import Settings


def deliver(settings: Settings, name: str, rows: list[dict]) -> None:
    """Write `rows` (each at least a subject_id; other fields default to an every-model,
    all-data request filed a day ago) as inbox/<name>.parquet, renamed into place as a real
    delivery would be, so ingestion never sees a half-written file."""
    now = datetime.now(UTC)
    full = [
        {
            "request_id": f"{name}-{i}",
            "requested_at": now - timedelta(days=1),
            "legal_basis": "gdpr-art17",
            "model_name": None,
            "deadline": None,
            "sample_ids": None,
            **row,
        }
        for i, row in enumerate(rows)
    ]
    settings.inbox.mkdir(parents=True, exist_ok=True)
    tmp = settings.inbox / f"{name}.parquet.tmp"
    pq.write_table(pa.Table.from_pylist(full, schema=MANIFEST_SCHEMA), tmp)
    tmp.rename(settings.inbox / f"{name}.parquet")
