"""DuckDB table definitions of the warehouse (ledger, training index, features, model state).

Raw subject ids live only here, in `requests.subject_id` and `training_index.subject_id`."""

from __future__ import annotations

# 2: manifest files get an integer `file_id`; requests are keyed by (file_id, row_number) without
# an index, and request hashes are filled lazily (see `requests` below).
WAREHOUSE_SCHEMA_VERSION = 2

DDL = [
    """CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS training_index (
        dataset VARCHAR NOT NULL, sample_id VARCHAR NOT NULL, subject_id VARCHAR NOT NULL,
        row_idx INTEGER NOT NULL, split VARCHAR NOT NULL, label INTEGER NOT NULL,
        PRIMARY KEY (dataset, sample_id))""",
    """CREATE TABLE IF NOT EXISTS models (
        model_name VARCHAR PRIMARY KEY, dataset VARCHAR NOT NULL, recipe VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS model_versions (
        model_name VARCHAR NOT NULL, version INTEGER NOT NULL, lineage VARCHAR NOT NULL,
        method VARCHAR NOT NULL, guarantee VARCHAR NOT NULL, epsilon DOUBLE,
        certificate_sha256 VARCHAR NOT NULL, weights_sha256 VARCHAR NOT NULL,
        ledger_json VARCHAR NOT NULL, run_id VARCHAR, created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (model_name, version))""",
    """CREATE TABLE IF NOT EXISTS forgotten_samples (
        model_name VARCHAR NOT NULL, sample_id VARCHAR NOT NULL, model_version INTEGER NOT NULL,
        PRIMARY KEY (model_name, sample_id))""",
    """CREATE SEQUENCE IF NOT EXISTS manifest_file_ids START 1""",
    # `file_id` is the short key the ledger rows carry; the digest identifies the content.
    """CREATE TABLE IF NOT EXISTS manifest_files (
        file_id INTEGER PRIMARY KEY, file_digest VARCHAR NOT NULL UNIQUE,
        file_name VARCHAR NOT NULL, received_at TIMESTAMPTZ NOT NULL,
        rows_received BIGINT NOT NULL, outcome VARCHAR NOT NULL, reason VARCHAR,
        quarantine_path VARCHAR, contract_version VARCHAR NOT NULL, validation_json VARCHAR)""",
    # One row per manifest row, identified by (file_id, row_number). That pair is unique by
    # construction (a fresh file_id per file, rows 0..n-1 written by one statement, checked by
    # tasks.ledger.invariant_violations) and is not declared as a key: DuckDB would maintain an
    # ART index on every insert (schema v1's key with the digest cost ~21 of the 66 CPU-s of a
    # 10M-row ingest; benchmarks/results/ingest_10m.md prices both choices). `request_hash`
    # (salted sha256 of request_id) is filled only for rows that need one: quarantined rows
    # (reports) and rows a run claims (certificate, MLflow tags). request_id is ZSTD-compressed:
    # the default analysis picks DICT_FSST for unique ids, which costs ~15% more CPU to write
    # and is not smaller.
    """CREATE TABLE IF NOT EXISTS requests (
        file_id INTEGER NOT NULL, row_number BIGINT NOT NULL,
        request_id VARCHAR USING COMPRESSION zstd,
        subject_id VARCHAR, requested_at TIMESTAMPTZ, legal_basis VARCHAR, model_name VARCHAR,
        deadline TIMESTAMPTZ, sample_ids VARCHAR[], state VARCHAR NOT NULL, reason VARCHAR,
        request_hash VARCHAR, run_id VARCHAR, updated_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS applications (
        file_id INTEGER NOT NULL, row_number BIGINT NOT NULL, model_name VARCHAR NOT NULL,
        model_version INTEGER NOT NULL, certificate_sha256 VARCHAR NOT NULL,
        guarantee VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (file_id, row_number, model_name))""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, model_name VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ, status VARCHAR NOT NULL, model_version INTEGER,
        plan_json VARCHAR, summary_json VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS memorization_features (
        model_name VARCHAR NOT NULL, model_version INTEGER NOT NULL, sample_id VARCHAR NOT NULL,
        confidence DOUBLE, max_confidence DOUBLE, entropy DOUBLE, binary_accuracy DOUBLE,
        visits BIGINT, PRIMARY KEY (model_name, model_version, sample_id))""",
    """CREATE TABLE IF NOT EXISTS policies (
        model_name VARCHAR PRIMARY KEY, policy_json VARCHAR NOT NULL, updated_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS proxy_directions (
        proxy VARCHAR PRIMARY KEY, high_memorisation_when VARCHAR NOT NULL)""",
    """CREATE OR REPLACE VIEW quarantine AS
        SELECT f.file_digest, r.row_number, r.request_id, r.reason, r.updated_at
        FROM requests r JOIN manifest_files f USING (file_id) WHERE r.state = 'quarantined'""",
    # Holdout and curvature proxies (algorithms.md sec. 3): NULL where they were not computed.
    """ALTER TABLE memorization_features ADD COLUMN IF NOT EXISTS holdout DOUBLE""",
    """ALTER TABLE memorization_features ADD COLUMN IF NOT EXISTS curvature DOUBLE""",
    # Forgetting events (Toneva et al., ICLR 2019), added after the other learning events.
    """ALTER TABLE memorization_features ADD COLUMN IF NOT EXISTS forgetting_events DOUBLE""",
    # Subset-model reference memorisation (Feldman & Zhang), cached per data + recipe + design:
    # `reference_key` hashes the training arrays, the recipe and the subset design.
    """CREATE TABLE IF NOT EXISTS reference_memorization (
        reference_key VARCHAR NOT NULL, dataset VARCHAR NOT NULL, sample_id VARCHAR NOT NULL,
        mem DOUBLE, soft_mem DOUBLE, runs INTEGER NOT NULL, subset_fraction DOUBLE NOT NULL,
        balanced_out_per_row INTEGER, seed BIGINT NOT NULL, recipe_json VARCHAR NOT NULL,
        grad_evals DOUBLE NOT NULL, seconds DOUBLE NOT NULL, computed_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (reference_key, sample_id))""",
    # Each subset model's p(true label) and correctness on every row it scored (training rows,
    # member or not, and test rows): the shadow references of the RUM audit (models/audit.py).
    """CREATE TABLE IF NOT EXISTS reference_predictions (
        reference_key VARCHAR NOT NULL, run INTEGER NOT NULL, sample_id VARCHAR NOT NULL,
        member BOOLEAN NOT NULL, p_true DOUBLE NOT NULL, correct BOOLEAN NOT NULL,
        PRIMARY KEY (reference_key, run, sample_id))""",
]
