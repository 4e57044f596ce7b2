"""Contract v1 as data: the suite spec, its SQL compilation, the two engines' agreement, the docs.

The SQL engine is only allowed to validate large files because it reproduces GX exactly; the
equivalence tests below run real GX and real DuckDB on the same edge-case files."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts import manifest as contract
from models.datasets import load_digits_dataset
from tasks import gx_validation, ingest, ledger, warehouse

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "manifest-contract.md"
EXAMPLE = ROOT / "docs" / "examples" / "manifest-example.parquet"
MODEL = "digits-logreg"
NOW = datetime.now(UTC)
NULLABLE_SCHEMA = pa.schema([f.with_nullable(True) for f in contract.MANIFEST_SCHEMA])


def nullable(table: pa.Table) -> pa.Table:
    """Write-able with nulls in required columns, as producers' files are."""
    return table.cast(pa.schema([NULLABLE_SCHEMA.field(n) for n in table.column_names]))


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(tmp_path / "scratch.duckdb")) as con:
        con.execute("SET enable_progress_bar = false")
        yield con


# --- the spec itself -------------------------------------------------------------------------------


def test_every_expectation_has_a_unique_reason_and_compiles_to_sql() -> None:
    reasons = [e["reason"] for e in contract.EXPECTATIONS]
    assert len(set(reasons)) == len(reasons)
    assert len(contract.EXPECTATION_REASONS) == len(contract.EXPECTATIONS)
    assert set(contract.SUITE_COLUMNS) <= set(contract.MANIFEST_SCHEMA.names)
    sql, params = gx_validation.compile_suite_sql("incoming_rows")
    assert sql.count("CASE WHEN") == len(contract.EXPECTATIONS)
    assert all(isinstance(k, str) for k in params)


def test_the_compiler_refuses_what_it_cannot_reproduce(monkeypatch: pytest.MonkeyPatch) -> None:
    mostly = {**contract.EXPECTATIONS[0], "kwargs": {"column": "request_id", "mostly": 0.9}}
    monkeypatch.setattr(gx_validation, "EXPECTATIONS", [mostly])
    with pytest.raises(NotImplementedError, match="mostly"):
        gx_validation.compile_suite_sql("t")
    for pattern in (r"^\d+$", r"^a$|^b$", r"(?=x)", r"\bword"):
        with pytest.raises(NotImplementedError):
            gx_validation.python_regex_to_re2(pattern)


def test_regex_translation_keeps_python_search_semantics(con) -> None:
    pattern = contract.REQUEST_ID_PATTERN
    samples = ["req-1", "req-1\n", "req-1\n\n", "\nreq-1", "req 1", "r" * 128, "r" * 129, "", "é"]
    re2 = gx_validation.python_regex_to_re2(pattern)
    got = [con.execute("SELECT regexp_matches(?, ?)", [s, re2]).fetchall()[0][0] for s in samples]
    assert got == [re.search(pattern, s) is not None for s in samples]


def test_schema_problems_name_the_column_and_the_wanted_type() -> None:
    schema = pa.schema(
        [
            ("request_id", pa.int32()),
            ("subject_id", pa.string()),
            ("requested_at", pa.timestamp("ms")),
            ("legal_basis", pa.dictionary(pa.int8(), pa.string())),
            ("notes", pa.string()),
        ]
    )
    assert contract.schema_problems(schema) == [
        "column 'request_id' is int32, contract v1 wants string",
        "column 'requested_at' is timestamp[ms], contract v1 wants a timestamp with a timezone "
        "(timestamp[us, tz=UTC])",
        "unexpected column 'notes' (contract v1 allows request_id, subject_id, requested_at, "
        "legal_basis, model_name, deadline, sample_ids)",
    ]


# --- the two engines agree ------------------------------------------------------------------------

# Characters where GX (Python re, pandas) and DuckDB (RE2) could plausibly disagree.
ALPHABET = [
    *"abcXYZ019.-_: ",
    *("\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9f", "\xa0", "\u202e"),
    *("é", "e\u0301", "😀", "ß", "'", "$", "^", "|", "%"),
]


def tricky_table(n: int, seed: int) -> pa.Table:
    """Edge cases for every expectation: boundaries, nulls, repeats, unicode, control chars."""
    rng = np.random.default_rng(seed)

    def text(lo: int, hi: int) -> str:
        return "".join(rng.choice(ALPHABET, int(rng.integers(lo, hi))))

    fixed_ids = [
        "req-1",
        "req-1\n",
        "req-1 ",
        "a" * 128,
        "a" * 129,
        "",
        "-x",
        "x-",
        "😀",
        "req\x00",
    ]
    pool = fixed_ids + [f"req-{i}" for i in range(n)] + [text(0, 12) for _ in range(n // 4)]
    ids = [None if rng.random() < 0.04 else pool[int(rng.integers(0, len(pool)))] for _ in range(n)]
    subjects_fixed = [
        "",
        "s",
        "é" * 256,
        "é" * 257,
        "a" * 256,
        "a" * 257,
        "e\u0301" * 128,
        "sub\nject",
        "subject-3",
        "subject-3\x9f",
    ]
    subjects = [
        None
        if rng.random() < 0.04
        else (
            subjects_fixed[int(rng.integers(0, len(subjects_fixed)))]
            if rng.random() < 0.5
            else text(0, 20)
        )
        for _ in range(n)
    ]
    bases = [*contract.LEGAL_BASES, "GDPR-art17", "gdpr-art17 ", "", "other\n", None]
    return pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "subject_id": pa.array(subjects, pa.string()),
            "requested_at": pa.array(
                [None if rng.random() < 0.03 else NOW - timedelta(days=1) for _ in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
            "legal_basis": pa.array([bases[int(rng.integers(0, len(bases)))] for _ in range(n)]),
        }
    )


def test_gx_and_sql_engines_find_the_same_failures(con) -> None:
    table = contract.conform(tricky_table(3000, seed=7))
    table = table.append_column(gx_validation.ROW_KEY, pa.array(np.arange(table.num_rows)))
    con.register("t", table)
    sql_failures, sql_summary = gx_validation.sql_failures(con, "t", rows=table.num_rows)
    gx_failures, gx_summary = gx_validation.gx_failures(table)
    assert sql_failures.num_rows > 300  # the file really is full of failures
    assert gx_failures.to_pylist() == sql_failures.to_pylist()
    assert gx_summary["expectations"] == sql_summary["expectations"]
    assert gx_summary["gx_success"] is False
    assert {e["success"] for e in sql_summary["expectations"]} == {False}  # every rule exercised


def test_both_engines_give_the_same_ledger_for_the_same_bad_file(fresh_state, tmp_path) -> None:
    table = tricky_table(1500, seed=11)
    ds = load_digits_dataset()
    n = table.num_rows
    rng = np.random.default_rng(3)
    # Mix in referential failures and valid rows so the shared part of the pipeline is exercised.
    valid_subjects = [f"subject-{i}" for i in rng.integers(0, 450, n)]
    subjects = [
        v if i % 3 else s
        for i, (s, v) in enumerate(
            zip(table.column("subject_id").to_pylist(), valid_subjects, strict=True)
        )
    ]
    samples = [None if i % 5 else [str(rng.choice(ds.sample_ids))] for i in range(n)]
    models = [(MODEL, "nope", None, None)[i % 4] for i in range(n)]
    table = table.set_column(1, "subject_id", pa.array(subjects, pa.string()))
    table = table.append_column("model_name", pa.array(models, pa.string()))
    table = table.append_column("sample_ids", pa.array(samples, pa.list_(pa.string())))
    ledgers, summaries = [], []
    for engine in ("great_expectations", "duckdb-sql"):
        settings = fresh_state(tmp_path / engine, "s")
        path = settings.inbox / "tricky.parquet"
        pq.write_table(nullable(table), path)
        with warehouse.connect(settings) as c:
            out = ingest.ingest_file(c, settings, path, engine=engine)
            assert ledger.invariant_violations(c) == []
            ledgers.append(
                c.execute(
                    "SELECT row_number, state, reason FROM requests ORDER BY row_number"
                ).fetchall()
            )
            summary = json.loads(
                warehouse.fetch_one(c, "SELECT validation_json FROM manifest_files")[0]
            )
            assert summary.pop("engine") == engine
            summary.pop("gx_success", None)
            summaries.append(summary)
        assert out.rows == n
    assert ledgers[0] == ledgers[1]
    states = {s for _, s, _ in ledgers[0]}
    assert states == {"pending", "quarantined"}
    assert summaries[0] == summaries[1]


def test_auto_engine_switches_to_sql_above_the_threshold(
    monkeypatch, fresh_state, tmp_path
) -> None:
    monkeypatch.setattr(ingest, "SQL_ENGINE_MIN_ROWS", 3)
    assert (
        ingest.choose_engine(2) == "great_expectations" and ingest.choose_engine(3) == "duckdb-sql"
    )
    settings = fresh_state(tmp_path / "auto", "s")
    path = settings.inbox / "m.parquet"
    pq.write_table(nullable(tricky_table(5, seed=1)), path)
    with warehouse.connect(settings) as c:
        ingest.ingest_file(c, settings, path)
        summary = warehouse.fetch_one(c, "SELECT validation_json FROM manifest_files")[0]
    assert '"engine": "duckdb-sql"' in summary


# --- docs and the example file ---------------------------------------------------------------------


def test_the_documented_example_conforms_and_ingests_cleanly(fresh_state, tmp_path) -> None:
    table = pq.read_table(EXAMPLE)
    assert contract.schema_problems(table.schema) == []
    assert table.num_rows >= 3 and EXAMPLE.stat().st_size < 20_000
    settings = fresh_state(tmp_path / "example", "s")
    shutil.copyfile(EXAMPLE, settings.inbox / EXAMPLE.name)
    with warehouse.connect(settings) as c:
        # The example is dated in the past, so its rows are valid whenever the test runs.
        out = ingest.ingest_file(c, settings, settings.inbox / EXAMPLE.name)
    assert out.outcome == "ingested" and out.states["quarantined"] == 0


def test_the_docs_name_every_column_reason_and_state() -> None:
    doc = DOC.read_text()
    for field in contract.MANIFEST_SCHEMA:
        assert f"`{field.name}`" in doc
    constants = [
        v
        for k, v in vars(contract).items()
        if k.startswith(("FILE_", "REASON_")) and isinstance(v, str)
    ]
    for reason in [*constants, *(e["reason"] for e in contract.EXPECTATIONS)]:
        assert reason in doc, reason
    for state in ("quarantined", "pending", "planned", "applied", "superseded"):
        assert f"`{state}`" in doc
    assert contract.oversized_reason("request_id") in doc
