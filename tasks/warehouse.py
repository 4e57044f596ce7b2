"""The DuckDB warehouse: training index, request ledger, model-version state, feature tables.

All SQL lives here. Every state change that must be atomic runs inside one transaction, so a crash
leaves the ledger in the state before or after the change, never between."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from data_contracts.ddl import DDL, WAREHOUSE_SCHEMA_VERSION
from data_contracts.errors import ForgetflowError
from data_contracts.policy import Policy
from data_contracts.settings import Settings
from data_contracts.states import RequestState
from models.datasets import Dataset
from models.learning_events import PROXIES


@contextmanager
def connect(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (creating tables on first use) and always close it."""
    settings.home.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        str(settings.warehouse_path),
        config={"threads": settings.duckdb_threads, "memory_limit": settings.duckdb_memory_limit},
    )
    try:
        # DuckDB draws progress bars on stderr for long statements; they would land in run logs.
        con.execute("SET enable_progress_bar = false")
        _check_schema_version(con, settings)
        for stmt in DDL:
            con.execute(stmt)
        con.execute(
            "INSERT OR IGNORE INTO schema_info VALUES ('warehouse_schema_version', ?)",
            [str(WAREHOUSE_SCHEMA_VERSION)],
        )
        yield con
    finally:
        con.close()


def _check_schema_version(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Refuse a warehouse written with another table layout: `CREATE TABLE IF NOT EXISTS` would
    keep its old tables and the first ledger write would fail half-way with a cryptic error."""
    has_info = fetch_one(
        con,
        "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'schema_info'",
    )
    if has_info is None:
        return
    row = fetch_one(con, "SELECT value FROM schema_info WHERE key = 'warehouse_schema_version'")
    if row is not None and row[0] != str(WAREHOUSE_SCHEMA_VERSION):
        raise ForgetflowError(
            f"warehouse {settings.warehouse_path} has schema version {row[0]}, this forgetflow "
            f"needs {WAREHOUSE_SCHEMA_VERSION} and has no migration: move the file aside (or use "
            "another FORGETFLOW_HOME) and ingest the manifests again"
        )


def fetch_one(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None
) -> tuple | None:
    """First row or None. Fetches everything: DuckDB 2 keeps a partly read result open and then
    refuses any other statement on the connection."""
    rows = con.execute(query, params or []).fetchall()
    return rows[0] if rows else None


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def now() -> datetime:
    return datetime.now(UTC)


# --- training index and models -----------------------------------------------------------------


def load_training_index(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> int:
    """Insert the dataset's samples once (idempotent); returns the number of training samples."""
    table = pa.table(
        {
            "dataset": pa.array([dataset.name] * len(dataset.labels)),
            "sample_id": pa.array(dataset.sample_ids.tolist()),
            "subject_id": pa.array(dataset.subject_ids.tolist()),
            "row_idx": pa.array(np.arange(len(dataset.labels), dtype=np.int32)),
            "split": pa.array(np.where(dataset.is_train, "train", "test").tolist()),
            "label": pa.array(dataset.labels.astype(np.int32)),
        }
    )
    con.register("incoming_index", table)
    con.execute("INSERT OR IGNORE INTO training_index SELECT * FROM incoming_index")
    con.unregister("incoming_index")
    return int(dataset.is_train.sum())


def training_index_sha256(con: duckdb.DuckDBPyConnection, dataset: str) -> str:
    """Order-independent digest of a dataset's training index (pinned in certificates)."""
    row = fetch_one(
        con,
        """SELECT sha256(string_agg(sample_id || '|' || subject_id || '|' || split || '|' || label, '\n'
                  ORDER BY sample_id)) FROM training_index WHERE dataset = ?""",
        [dataset],
    )
    return row[0]


def add_model(
    con: duckdb.DuckDBPyConnection, *, model_name: str, dataset: str, recipe: str
) -> None:
    existing = fetch_one(
        con, "SELECT dataset, recipe FROM models WHERE model_name = ?", [model_name]
    )
    if existing is not None:
        raise ForgetflowError(
            f"model '{model_name}' already exists (dataset {existing[0]}, recipe {existing[1]}); "
            "pick another --name"
        )
    con.execute("INSERT INTO models VALUES (?, ?, ?, ?)", [model_name, dataset, recipe, now()])


def model_row(con: duckdb.DuckDBPyConnection, model_name: str) -> dict[str, Any] | None:
    row = fetch_one(
        con, "SELECT model_name, dataset, recipe FROM models WHERE model_name = ?", [model_name]
    )
    return None if row is None else {"model_name": row[0], "dataset": row[1], "recipe": row[2]}


def model_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        r[0] for r in con.execute("SELECT model_name FROM models ORDER BY model_name").fetchall()
    ]


def record_version(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    version: int,
    lineage: str,
    method: str,
    guarantee: str,
    epsilon: float | None,
    certificate_sha256: str,
    weights_sha256: str,
    ledger: dict[str, Any],
    run_id: str | None,
) -> None:
    con.execute(
        "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            model_name,
            version,
            lineage,
            method,
            guarantee,
            epsilon,
            certificate_sha256,
            weights_sha256,
            json.dumps(ledger),
            run_id,
            now(),
        ],
    )


def latest_version(con: duckdb.DuckDBPyConnection, model_name: str) -> dict[str, Any] | None:
    row = fetch_one(
        con,
        """SELECT version, lineage, certificate_sha256, weights_sha256, ledger_json, guarantee
           FROM model_versions
           WHERE model_name = ? ORDER BY version DESC LIMIT 1""",
        [model_name],
    )
    if row is None:
        return None
    return {
        "version": row[0],
        "lineage": row[1],
        "certificate_sha256": row[2],
        "weights_sha256": row[3],
        "ledger": json.loads(row[4]),
        "guarantee": row[5],
    }


def forgotten_sample_ids(con: duckdb.DuckDBPyConnection, model_name: str) -> set[str]:
    rows = con.execute(
        "SELECT sample_id FROM forgotten_samples WHERE model_name = ?", [model_name]
    ).fetchall()
    return {r[0] for r in rows}


# --- features --------------------------------------------------------------------------------


def write_features(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    model_version: int,
    sample_ids: list[str],
    proxies: dict[str, np.ndarray],
    visits: np.ndarray,
    directions: dict[str, str],
) -> int:
    """Upsert one row per sample of learning-event proxies, as one Arrow batch."""
    table = pa.table(
        {
            "model_name": pa.array([model_name] * len(sample_ids)),
            "model_version": pa.array([model_version] * len(sample_ids), type=pa.int32()),
            "sample_id": pa.array(sample_ids),
            **{name: pa.array(values) for name, values in proxies.items()},
            "visits": pa.array(visits.astype(np.int64)),
        }
    )
    con.register("incoming_features", table)
    con.execute(
        "INSERT OR REPLACE INTO memorization_features BY NAME SELECT * FROM incoming_features"
    )
    con.unregister("incoming_features")
    for proxy, direction in directions.items():
        con.execute("INSERT OR REPLACE INTO proxy_directions VALUES (?, ?)", [proxy, direction])
    return len(sample_ids)


PROXY_COLUMNS = PROXIES  # the learning-event columns


def proxy_column(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    model_version: int,
    proxy: str,
    sample_ids: list[str],
) -> np.ndarray | None:
    """One proxy for `sample_ids`, in their order (NaN where missing); None if nothing stored."""
    if proxy not in PROXY_COLUMNS:
        raise ValueError(f"proxy must be one of {PROXY_COLUMNS}, got {proxy!r}")
    con.register(
        "wanted_ids",
        pa.table(
            {
                "sample_id": pa.array(sample_ids, type=pa.string()),
                "pos": pa.array(range(len(sample_ids)), type=pa.int64()),
            }
        ),
    )
    try:
        rows = con.execute(
            f"""SELECT f.{proxy} FROM wanted_ids w LEFT JOIN memorization_features f
                ON f.sample_id = w.sample_id AND f.model_name = ? AND f.model_version = ?
                ORDER BY w.pos""",  # the column name is checked against PROXY_COLUMNS above
            [model_name, model_version],
        ).fetchall()
    finally:
        con.unregister("wanted_ids")
    values = np.array([np.nan if r[0] is None else r[0] for r in rows], dtype=np.float64)
    return None if np.isnan(values).all() else values


def memorization_profile(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    model_version: int,
    sample_ids: list[str],
) -> dict[str, int]:
    """Forget-set samples per tercile of the training set's confidence proxy (low conf = high mem)."""
    con.register("forget_ids", pa.table({"sample_id": pa.array(sample_ids, type=pa.string())}))
    rows = con.execute(
        """WITH ranked AS (
               SELECT sample_id, ntile(3) OVER (ORDER BY confidence DESC) AS tercile
               FROM memorization_features WHERE model_name = ? AND model_version = ?)
           SELECT CASE tercile WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END, count(*)
           FROM ranked JOIN forget_ids USING (sample_id) GROUP BY tercile ORDER BY tercile""",
        [model_name, model_version],
    ).fetchall()
    con.unregister("forget_ids")
    profile = {"low": 0, "medium": 0, "high": 0}
    profile.update({r[0]: int(r[1]) for r in rows})
    return profile


# --- ledger ----------------------------------------------------------------------------------


def file_seen(con: duckdb.DuckDBPyConnection, digest: str) -> bool:
    return (
        fetch_one(con, "SELECT 1 FROM manifest_files WHERE file_digest = ?", [digest]) is not None
    )


def next_file_id(con: duckdb.DuckDBPyConnection) -> int:
    """A file_id no file has (from a sequence: an id taken by a rolled-back ingest is not reused)."""
    return int(fetch_one(con, "SELECT nextval('manifest_file_ids')")[0])


def record_file(
    con: duckdb.DuckDBPyConnection,
    *,
    file_id: int,
    digest: str,
    file_name: str,
    rows: int,
    outcome: str,
    reason: str | None,
    quarantine_path: str | None,
    contract_version: str,
    validation: dict[str, Any] | None = None,
) -> None:
    con.execute(
        "INSERT INTO manifest_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            file_id,
            digest,
            file_name,
            now(),
            rows,
            outcome,
            reason,
            quarantine_path,
            contract_version,
            json.dumps(validation) if validation is not None else None,
        ],
    )


def state_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute("SELECT state, count(*) FROM requests GROUP BY state").fetchall()
    counts = {s.value: 0 for s in RequestState}
    counts.update({r[0]: int(r[1]) for r in rows})
    return counts


def rows_received(con: duckdb.DuckDBPyConnection) -> int:
    return int(fetch_one(con, "SELECT count(*) FROM requests")[0])


def files_summary(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    rows = con.execute(
        """SELECT f.file_digest, f.file_name, f.rows_received, f.outcome, f.reason, f.received_at,
                  count(r.state) FILTER (WHERE r.state = 'quarantined'),
                  count(r.state) FILTER (WHERE r.state = 'pending'),
                  count(r.state) FILTER (WHERE r.state = 'planned'),
                  count(r.state) FILTER (WHERE r.state = 'applied'),
                  count(r.state) FILTER (WHERE r.state = 'superseded')
           FROM manifest_files f LEFT JOIN requests r USING (file_id)
           GROUP BY ALL ORDER BY f.received_at, f.file_name"""
    ).fetchall()
    return [
        {
            "digest": r[0],
            "file_name": r[1],
            "rows": int(r[2]),
            "outcome": r[3],
            "reason": r[4],
            "received_at": r[5].isoformat(),
            "states": dict(
                zip(
                    ("quarantined", "pending", "planned", "applied", "superseded"),
                    (int(v) for v in r[6:]),
                    strict=True,
                )
            ),
        }
        for r in rows
    ]


def quarantined_rows(
    con: duckdb.DuckDBPyConnection, digests: list[str], *, limit: int = 200
) -> list[dict[str, Any]]:
    """Quarantined rows of the given files with their reasons (request ids as salted hashes)."""
    if not digests:
        return []
    rows = con.execute(
        """SELECT f.file_name, r.row_number, r.request_hash, r.reason FROM requests r
           JOIN manifest_files f USING (file_id)
           WHERE r.state = 'quarantined' AND f.file_digest IN (SELECT unnest(?))
           ORDER BY f.file_name, r.row_number LIMIT ?""",
        [digests, limit],
    ).fetchall()
    return [
        {"file": r[0], "row": int(r[1]), "request_hash": (r[2] or "")[:16], "reason": r[3]}
        for r in rows
    ]


def stored_policy(con: duckdb.DuckDBPyConnection, model_name: str) -> Policy | None:
    """The model's own policy (validated on the way out, so a hand-edited row fails loudly)."""
    row = fetch_one(con, "SELECT policy_json FROM policies WHERE model_name = ?", [model_name])
    return None if row is None else Policy.model_validate_json(row[0])


def store_policy(con: duckdb.DuckDBPyConnection, model_name: str, policy: Policy) -> None:
    con.execute(
        "INSERT OR REPLACE INTO policies VALUES (?, ?, ?)",
        [model_name, policy.model_dump_json(), now()],
    )
