"""Deletion-manifest contract v1: the one source of truth for schema, row rules and reasons.

The pyarrow schema drives the file-level check; `EXPECTATIONS` is the Great Expectations suite as
plain data (tasks/ turns it into GX objects, or compiles it to DuckDB SQL for very large files, so
this package stays free of GX and DuckDB). Both are versioned together through `CONTRACT_VERSION`.
Every reason string a row or file can be quarantined with is defined here: auditors filter on them,
so they are stable and never embed the offending value (which may be huge or hostile).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

CONTRACT_VERSION = "1"
SUITE_NAME = f"deletion_manifest_v{CONTRACT_VERSION}"

LEGAL_BASES = ("gdpr-art17", "ccpa-1798.105", "consent-withdrawn", "contract-end", "other")
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
# C0 controls, DEL and C1 controls: invisible in logs, and a trailing "\n" slips past `$` above.
CONTROL_CHARS_PATTERN = r"[\x00-\x1f\x7f-\x9f]"
SUBJECT_ID_MAX_CHARS = 256
# Longer values are rejected before the suite runs: a 1 MB id is an attack, not a typo.
MAX_ID_CHARS = 1024
SIZE_CHECKED_COLUMNS = ("request_id", "subject_id", "model_name")
# requested_at may lead the ingesting clock by this much (producers' clocks drift).
FUTURE_TOLERANCE_MINUTES = 5

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


# --- file-level reasons (the whole file is quarantined, no row enters the ledger) ---------------
FILE_EMPTY = "file is empty (0 bytes)"
FILE_NOT_PARQUET = "not a readable Parquet file"  # followed by the reader's error in parentheses
FILE_ZERO_ROWS = "file has zero rows"
FILE_DUPLICATE_COLUMNS = "duplicate column names"
FILE_MALFORMED = "malformed values"  # e.g. string columns holding bytes that are not UTF-8
FILE_UNCASTABLE = "values cannot be converted to the contract types"  # e.g. timestamps out of range
FILE_ALREADY_INGESTED = "same content already ingested"  # outcome duplicate-file, not a quarantine

# --- row-level reasons outside the GX suite (referential checks run in DuckDB) ------------------
REASON_SUBJECT_UNKNOWN = "subject not in the training index"
REASON_SUBJECT_NOT_IN_MODEL = "subject not in the training index of the requested model"
REASON_UNKNOWN_MODEL = "unknown model_name"
REASON_EMPTY_SAMPLE_IDS = "sample_ids is an empty list"
REASON_FOREIGN_SAMPLES = "sample_ids not all training samples of this subject"
REASON_FUTURE = "requested_at is in the future"
REASON_DEADLINE = "deadline not after requested_at"
REASON_CONFLICT = "request_id already received with different content (conflict)"
REASON_SUPERSEDED = "identical request already received"  # state superseded, not quarantined


def oversized_reason(column: str) -> str:
    return f"{column} longer than {MAX_ID_CHARS} chars"


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _type_ok(actual: pa.DataType, wanted: pa.DataType) -> bool:
    if pa.types.is_null(actual):
        return True  # an all-null column (pandas writes those for None-only columns)
    if pa.types.is_timestamp(wanted):
        # Any timestamp unit is accepted if it carries a timezone; it is cast to us/UTC on read.
        return pa.types.is_timestamp(actual) and actual.tz is not None
    if pa.types.is_string(wanted):
        # Dictionary-encoded strings are what pandas categoricals become.
        return _is_string(actual) or (
            pa.types.is_dictionary(actual) and _is_string(actual.value_type)
        )
    if pa.types.is_list(wanted):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _is_string(
            actual.value_type
        )
    return actual.equals(wanted)


def _wanted_text(wanted: pa.DataType) -> str:
    if pa.types.is_timestamp(wanted):
        return "a timestamp with a timezone (timestamp[us, tz=UTC])"
    return str(wanted)


def schema_problems(schema: pa.Schema) -> list[str]:
    """Human-readable reasons why a file's schema breaks contract v1 (empty list: it conforms)."""
    problems = []
    names = set(schema.names)
    if len(names) != len(schema.names):
        dupes = sorted({n for n in schema.names if schema.names.count(n) > 1})
        problems.append(f"{FILE_DUPLICATE_COLUMNS} ({', '.join(map(repr, dupes))[:200]})")
    for f in REQUIRED_FIELDS:
        if f.name not in names:
            problems.append(f"missing required column '{f.name}'")
    known = {f.name: f for f in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)}
    for i, name in enumerate(schema.names):
        if name not in known:
            problems.append(
                f"unexpected column {name[:100]!r} "
                f"(contract v{CONTRACT_VERSION} allows {', '.join(known)})"
            )
            continue
        actual, wanted = schema.field(i).type, known[name].type
        if not _type_ok(actual, wanted):
            problems.append(
                f"column '{name}' is {actual}, contract v{CONTRACT_VERSION} wants "
                f"{_wanted_text(wanted)}"
            )
    return problems


# String columns whose values repeat across rows by nature (a subject asks once per model, five
# legal bases, a few models): read dictionary-encoded, as Parquet usually stores them. Decoding
# them into plain strings was most of the read time of a 10M-row file.
DICTIONARY_COLUMNS = ("subject_id", "legal_basis", "model_name")
DICTIONARY_STRING = pa.dictionary(pa.int32(), pa.string())


def conform(table: pa.Table) -> pa.Table:
    """Cast a schema-valid table to MANIFEST_SCHEMA (adding absent optional columns as null).

    Dictionary-encoded string columns stay encoded (as dictionary<int32, string>): the same values,
    without materialising one string per row. Raises pa.ArrowInvalid when a value has no
    representation in the contract type (a timestamp outside the microsecond range)."""
    columns, fields = [], []
    for f in MANIFEST_SCHEMA:
        if f.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, type=f.type))
            fields.append(f)
            continue
        column = table.column(f.name)
        wanted = f.type
        if pa.types.is_string(wanted) and pa.types.is_dictionary(column.type):
            wanted = DICTIONARY_STRING
        columns.append(column.cast(wanted))
        fields.append(f.with_type(wanted))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


# The GX suite as data, in the order reasons are reported. Each entry: GX expectation type, its
# kwargs, and the stable reason recorded for a failing row. Row-level failures become quarantine
# reasons. Only kwargs that tasks/gx_validation.py can also compile to SQL may be used here.
EXPECTATIONS: list[dict[str, Any]] = [
    {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "request_id"},
        "reason": "null request_id",
    },
    {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "subject_id"},
        "reason": "null subject_id",
    },
    {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "requested_at"},
        "reason": "null requested_at",
    },
    {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "legal_basis"},
        "reason": "null legal_basis",
    },
    {
        "type": "expect_column_values_to_be_unique",
        "kwargs": {"column": "request_id"},
        "reason": "duplicate request_id within file",
    },
    {
        "type": "expect_column_values_to_match_regex",
        "kwargs": {"column": "request_id", "regex": REQUEST_ID_PATTERN},
        "reason": f"request_id does not match {REQUEST_ID_PATTERN}",
    },
    {
        "type": "expect_column_values_to_not_match_regex",
        "kwargs": {"column": "request_id", "regex": CONTROL_CHARS_PATTERN},
        "reason": "request_id contains control characters",
    },
    {
        "type": "expect_column_value_lengths_to_be_between",
        "kwargs": {"column": "subject_id", "min_value": 1, "max_value": SUBJECT_ID_MAX_CHARS},
        "reason": f"subject_id empty or longer than {SUBJECT_ID_MAX_CHARS} chars",
    },
    {
        "type": "expect_column_values_to_not_match_regex",
        "kwargs": {"column": "subject_id", "regex": CONTROL_CHARS_PATTERN},
        "reason": "subject_id contains control characters",
    },
    {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "legal_basis", "value_set": list(LEGAL_BASES)},
        "reason": "legal_basis not in " + ", ".join(LEGAL_BASES),
    },
]

# Reason strings recorded in the ledger for each expectation (stable: auditors filter on them).
EXPECTATION_REASONS = {(e["type"], e["kwargs"]["column"]): e["reason"] for e in EXPECTATIONS}
SUITE_COLUMNS = tuple(dict.fromkeys(e["kwargs"]["column"] for e in EXPECTATIONS))
