"""Deletion-manifest contract v1: the one source of truth for schema and row rules.

The pyarrow schema drives the file-level check; `EXPECTATIONS` is the Great Expectations suite as
plain data (tasks/ turns it into GX objects, so this package stays free of GX). Both are versioned
together through `CONTRACT_VERSION`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

CONTRACT_VERSION = "1"
SUITE_NAME = f"deletion_manifest_v{CONTRACT_VERSION}"

LEGAL_BASES = ("gdpr-art17", "ccpa-1798.105", "consent-withdrawn", "contract-end", "other")
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SUBJECT_ID_MAX_CHARS = 256

REQUIRED_FIELDS = (
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("subject_id", pa.string(), nullable=False),
    pa.field("requested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("legal_basis", pa.string(), nullable=False),
)
OPTIONAL_FIELDS = (
    pa.field("model_name", pa.string()),
    pa.field("deadline", pa.timestamp("us", tz="UTC")),
    pa.field("sample_ids", pa.list_(pa.string())),
)
MANIFEST_SCHEMA = pa.schema(
    [*REQUIRED_FIELDS, *OPTIONAL_FIELDS], metadata={"contract": CONTRACT_VERSION}
)


class ManifestFileError(ValueError):
    """The file as a whole violates the contract (unreadable, empty, wrong schema)."""


def _type_ok(actual: pa.DataType, wanted: pa.DataType) -> bool:
    if pa.types.is_timestamp(wanted):
        # Any timestamp unit is accepted if it carries a timezone; it is cast to us/UTC on read.
        return pa.types.is_timestamp(actual) and actual.tz is not None
    if pa.types.is_string(wanted):
        return (
            pa.types.is_string(actual)
            or pa.types.is_large_string(actual)
            or pa.types.is_null(actual)
        )
    if pa.types.is_list(wanted):
        return (
            ((pa.types.is_list(actual) or pa.types.is_large_list(actual))
            and (
                pa.types.is_string(actual.value_type) or pa.types.is_large_string(actual.value_type)
            ))
            or pa.types.is_null(actual)
        )
    return actual.equals(wanted)


def schema_problems(schema: pa.Schema) -> list[str]:
    """Human-readable reasons why a file's schema breaks contract v1 (empty list: it conforms)."""
    problems = []
    names = set(schema.names)
    for f in REQUIRED_FIELDS:
        if f.name not in names:
            problems.append(f"missing required column '{f.name}'")
    known = {f.name: f for f in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)}
    for name in schema.names:
        if name not in known:
            problems.append(
                f"unexpected column '{name}' (contract v{CONTRACT_VERSION} allows {', '.join(known)})"
            )
            continue
        actual, wanted = schema.field(name).type, known[name].type
        if not _type_ok(actual, wanted):
            problems.append(
                f"column '{name}' is {actual}, contract v{CONTRACT_VERSION} wants {wanted}"
            )
    if len(set(schema.names)) != len(schema.names):
        problems.append("duplicate column names")
    return problems


def conform(table: pa.Table) -> pa.Table:
    """Cast a schema-valid table to exactly MANIFEST_SCHEMA (adding absent optional columns as null)."""
    columns = []
    for f in MANIFEST_SCHEMA:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(columns, schema=MANIFEST_SCHEMA.remove_metadata())


# The GX suite as data: expectation type -> kwargs. Row-level failures become quarantine reasons.
EXPECTATIONS: list[dict[str, Any]] = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "request_id"}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "subject_id"}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "requested_at"}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "legal_basis"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "request_id"}},
    {
        "type": "expect_column_values_to_match_regex",
        "kwargs": {"column": "request_id", "regex": REQUEST_ID_PATTERN},
    },
    {
        "type": "expect_column_value_lengths_to_be_between",
        "kwargs": {"column": "subject_id", "min_value": 1, "max_value": SUBJECT_ID_MAX_CHARS},
    },
    {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "legal_basis", "value_set": list(LEGAL_BASES)},
    },
]

# Reason strings recorded in the ledger for each expectation (stable: auditors filter on them).
EXPECTATION_REASONS = {
    ("expect_column_values_to_not_be_null", "request_id"): "null request_id",
    ("expect_column_values_to_not_be_null", "subject_id"): "null subject_id",
    ("expect_column_values_to_not_be_null", "requested_at"): "null requested_at",
    ("expect_column_values_to_not_be_null", "legal_basis"): "null legal_basis",
    ("expect_column_values_to_be_unique", "request_id"): "duplicate request_id within file",
    ("expect_column_values_to_match_regex", "request_id"): "request_id does not match "
    + REQUEST_ID_PATTERN,
    (
        "expect_column_value_lengths_to_be_between",
        "subject_id",
    ): f"subject_id empty or longer than {SUBJECT_ID_MAX_CHARS} chars",
    ("expect_column_values_to_be_in_set", "legal_basis"): "legal_basis not in "
    + ", ".join(LEGAL_BASES),
}
