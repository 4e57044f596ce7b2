"""Memorisation feature tables beyond the learning events: the cached subset-model reference,
per-version proxy reads for every proxy column, and carrying proxies forward to a new version.

The learning-event columns are written by tasks.warehouse.write_features; this module owns the
holdout / curvature columns' reads and the `reference_memorization` / `reference_predictions`
tables (data_contracts/ddl.py). All bulk writes and reads go through Arrow tables."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from data_contracts.settings import Settings
from models.learning_events import PROXIES
from models.memorization import ReferenceMemorisation, memorisation_from_runs, subset_memorisation
from models.mlp import MlpRecipe, predict_proba
from tasks import warehouse

FEATURE_COLUMNS = (*PROXIES, "holdout", "curvature")


@dataclass(frozen=True)
class CachedReference:
    """A subset-model reference over the training rows, plus its models' scores on test rows."""

    key: str
    reference: ReferenceMemorisation  # (runs, n_train) arrays in the caller's row order
    test_p_true: np.ndarray  # (runs, n_test) float64
    test_correct: np.ndarray  # (runs, n_test) bool
    cached: bool  # True when read from DuckDB, False when trained by this call

    def losses(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) cross-entropy per run and row."""
        train = -np.log(np.clip(self.reference.true_class_probs, 1e-300, None))
        return train, -np.log(np.clip(self.test_p_true, 1e-300, None))


def reference_key(
    x: np.ndarray,
    y: np.ndarray,
    *,
    recipe: MlpRecipe,
    runs: int,
    subset_fraction: float,
    balanced_out_per_row: int | None,
    seed: int,
) -> str:
    """Identity of a reference: sha256 of the training arrays, the recipe and the subset design.

    Hashing the arrays (not a dataset name) keeps variants apart, e.g. digits with canaries."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    design = {
        "recipe": recipe.as_dict(),
        "runs": runs,
        "subset_fraction": subset_fraction,
        "balanced_out_per_row": balanced_out_per_row,
        "seed": seed,
    }
    h.update(json.dumps(design, sort_keys=True).encode())
    return h.hexdigest()


def cached_reference(
    con: duckdb.DuckDBPyConnection,
    *,
    dataset: str,
    sample_ids: list[str],
    x: np.ndarray,
    y: np.ndarray,
    test_ids: list[str],
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: int,
    recipe: MlpRecipe,
    runs: int,
    subset_fraction: float = 0.7,
    balanced_out_per_row: int | None = None,
    seed: int = 0,
    exclude_rows: np.ndarray | None = None,
) -> CachedReference:
    """The subset-model reference of (x, y) from DuckDB, or trained now and stored.

    models.memorization.subset_memorisation does the training (runs * epochs * subset size
    grad-evals); the stored cost is what that first computation took. `exclude_rows` (positions in
    x): rows that must not be used, i.e. samples already forgotten (tasks/erasure.py). They are
    not trained on, not stored and not required from the cache (the erasure deletes their rows);
    in the result their scores are NaN and they are members of no run. The key stays that of the
    whole (x, y) plus, when rows were excluded, a digest of their ids (a variant): a read takes
    the newest stored variant that holds every row needed now, so a reference built before more
    rows were forgotten keeps serving, and two models of the same data that forgot different rows
    keep one variant each instead of rebuilding each other's (at most MAX_REFERENCE_VARIANTS per
    base key, the oldest dropped)."""
    if len(sample_ids) != len(y) or len(test_ids) != len(y_test):
        raise ValueError("sample_ids / test_ids must have one id per row of y / y_test")
    keep = np.ones(len(y), dtype=bool)
    if exclude_rows is not None:
        keep[np.asarray(exclude_rows, dtype=np.int64)] = False
    kept_ids = [s for s, k in zip(sample_ids, keep, strict=True) if k]
    fraction = 1 - balanced_out_per_row / runs if balanced_out_per_row else subset_fraction
    key = reference_key(
        x,
        y,
        recipe=recipe,
        runs=runs,
        subset_fraction=fraction,
        balanced_out_per_row=balanced_out_per_row,
        seed=seed,
    )
    for stored_key in _variants(con, key):
        stored = _read(con, stored_key, kept_ids, test_ids, runs)
        if stored is not None:
            return _expand(stored, keep)
    if not keep.all():
        excluded = sorted(s for s, k in zip(sample_ids, keep, strict=True) if not k)
        digest = hashlib.sha256("\n".join(excluded).encode()).hexdigest()[:16]
        key = f"{key}:{digest}"
    ref = subset_memorisation(
        x[keep],
        y[keep],
        classes=classes,
        recipe=recipe,
        runs=runs,
        subset_fraction=subset_fraction,
        balanced_out_per_row=balanced_out_per_row,
        seed=seed,
    )
    assert ref.ensemble is not None
    test_probs = np.stack(
        [predict_proba(ref.ensemble.member(k), x_test) for k in range(runs)]
    )  # (runs, n_test, classes)
    test_p_true = test_probs[:, np.arange(len(y_test)), y_test]
    test_correct = test_probs.argmax(axis=2) == y_test[None, :]
    _write(
        con,
        key=key,
        dataset=dataset,
        sample_ids=kept_ids,
        test_ids=test_ids,
        ref=ref,
        test_p_true=test_p_true,
        test_correct=test_correct,
        fraction=fraction,
        balanced_out_per_row=balanced_out_per_row,
        seed=seed,
        recipe=recipe,
    )
    _drop_old_variants(con, key.split(":")[0])
    return _expand(CachedReference(key, ref, test_p_true, test_correct, cached=False), keep)


# Shadow references kept per base key (data + recipe + design): one per set of rows excluded
# when it was built, i.e. about one per model of the dataset that audits RUM runs.
MAX_REFERENCE_VARIANTS = 4


def _variants(con: duckdb.DuckDBPyConnection, base: str) -> list[str]:
    """Stored reference keys of `base` (itself and its exclusion variants), newest first."""
    rows = con.execute(
        """SELECT reference_key FROM reference_memorization
           WHERE reference_key = $base OR starts_with(reference_key, $base || ':')
           GROUP BY reference_key ORDER BY max(computed_at) DESC, reference_key""",
        {"base": base},
    ).fetchall()
    return [r[0] for r in rows]


def complete_variant(
    con: duckdb.DuckDBPyConnection, base: str, sample_ids: list[str], runs: int
) -> str | None:
    """The newest stored variant of `base` holding every run's prediction of `sample_ids`."""
    return next(
        (k for k in _variants(con, base) if reference_complete(con, k, sample_ids, runs)), None
    )


def _drop_old_variants(con: duckdb.DuckDBPyConnection, base: str) -> None:
    for old in _variants(con, base)[MAX_REFERENCE_VARIANTS:]:
        with warehouse.transaction(con):
            con.execute("DELETE FROM reference_predictions WHERE reference_key = ?", [old])
            con.execute("DELETE FROM reference_memorization WHERE reference_key = ?", [old])


def _expand(cached: CachedReference, keep: np.ndarray) -> CachedReference:
    """A reference over the kept rows as one over all rows: excluded rows NaN / in no run."""
    if keep.all():
        return cached
    ref = cached.reference
    runs, n = ref.runs, len(keep)

    def full(values: np.ndarray, fill: float | bool) -> np.ndarray:
        out = np.full((runs, n) if values.ndim == 2 else n, fill, dtype=values.dtype)
        out[..., keep] = values
        return out

    scores = np.full(n, np.nan)
    scores[keep] = ref.scores
    return replace(
        cached,
        reference=ReferenceMemorisation(
            scores=scores,
            correct=full(ref.correct, False),
            true_class_probs=full(ref.true_class_probs, np.nan),
            member_mask=full(ref.member_mask, False),
            grad_evals=ref.grad_evals,
            seconds=ref.seconds,
            ensemble=ref.ensemble,
        ),
    )


def reference_complete(
    con: duckdb.DuckDBPyConnection, key: str, sample_ids: list[str], runs: int
) -> bool:
    """Whether the reference `key` holds every run's prediction for each of `sample_ids`."""
    con.register(
        "needed_reference_ids", pa.table({"sample_id": pa.array(sample_ids, type=pa.string())})
    )
    try:
        row = warehouse.fetch_one(
            con,
            """SELECT count(*) FROM needed_reference_ids w JOIN reference_predictions p
                 ON p.sample_id = w.sample_id AND p.reference_key = ?""",
            [key],
        )
    finally:
        con.unregister("needed_reference_ids")
    return row is not None and int(row[0]) == runs * len(sample_ids)


def _write(
    con: duckdb.DuckDBPyConnection,
    *,
    key: str,
    dataset: str,
    sample_ids: list[str],
    test_ids: list[str],
    ref: ReferenceMemorisation,
    test_p_true: np.ndarray,
    test_correct: np.ndarray,
    fraction: float,
    balanced_out_per_row: int | None,
    seed: int,
    recipe: MlpRecipe,
) -> None:
    n, n_test, runs = len(sample_ids), len(test_ids), ref.runs
    per_sample = pa.table(
        {
            "reference_key": pa.array([key] * n),
            "dataset": pa.array([dataset] * n),
            "sample_id": pa.array(sample_ids, type=pa.string()),
            "mem": pa.array(ref.scores, from_pandas=True),  # NaN -> NULL: in every run or none
            "soft_mem": pa.array(ref.soft_scores(), from_pandas=True),
            "runs": pa.array([runs] * n, type=pa.int32()),
            "subset_fraction": pa.array([fraction] * n, type=pa.float64()),
            "balanced_out_per_row": pa.array([balanced_out_per_row] * n, type=pa.int32()),
            "seed": pa.array([seed] * n, type=pa.int64()),
            "recipe_json": pa.array([json.dumps(recipe.as_dict(), sort_keys=True)] * n),
            "grad_evals": pa.array([ref.grad_evals] * n, type=pa.float64()),
            "seconds": pa.array([ref.seconds] * n, type=pa.float64()),
            "computed_at": pa.array([warehouse.now()] * n, type=pa.timestamp("us", tz="UTC")),
        }
    )
    ids = np.array(list(sample_ids) + list(test_ids), dtype=object)
    p_true = np.hstack([ref.true_class_probs, test_p_true])  # (runs, n + n_test)
    correct = np.hstack([ref.correct, test_correct])
    member = np.hstack([ref.member_mask, np.zeros((runs, n_test), dtype=bool)])
    predictions = pa.table(
        {
            "reference_key": pa.array([key] * (runs * (n + n_test))),
            "run": pa.array(np.repeat(np.arange(runs, dtype=np.int32), n + n_test)),
            "sample_id": pa.array(np.tile(ids, runs).tolist(), type=pa.string()),
            "member": pa.array(member.ravel()),
            "p_true": pa.array(p_true.ravel().astype(np.float64)),
            "correct": pa.array(correct.ravel()),
        }
    )
    con.register("incoming_reference", per_sample)
    con.register("incoming_predictions", predictions)
    try:
        with warehouse.transaction(con):
            # a stored build under this key lacked a row needed now: replace it whole, never mix
            con.execute("DELETE FROM reference_predictions WHERE reference_key = ?", [key])
            con.execute("DELETE FROM reference_memorization WHERE reference_key = ?", [key])
            con.execute(
                "INSERT OR REPLACE INTO reference_memorization BY NAME "
                "SELECT * FROM incoming_reference"
            )
            con.execute(
                "INSERT OR REPLACE INTO reference_predictions BY NAME "
                "SELECT * FROM incoming_predictions"
            )
    finally:
        con.unregister("incoming_reference")
        con.unregister("incoming_predictions")


def _read(
    con: duckdb.DuckDBPyConnection,
    key: str,
    sample_ids: list[str],
    test_ids: list[str],
    runs: int,
) -> CachedReference | None:
    meta = warehouse.fetch_one(
        con,
        "SELECT any_value(grad_evals), any_value(seconds), count(*) FROM reference_memorization "
        "WHERE reference_key = ?",
        [key],
    )
    if meta is None or meta[2] == 0:
        return None
    if not reference_complete(con, key, list(sample_ids) + list(test_ids), runs):
        return None  # built without a row needed now: another variant may serve
    ids = list(sample_ids) + list(test_ids)
    wanted = pa.table(
        {"sample_id": pa.array(ids, type=pa.string()), "pos": pa.array(range(len(ids)))}
    )
    con.register("wanted_reference_ids", wanted)
    try:
        table = con.sql(
            """SELECT p.run, w.pos, p.member, p.p_true, p.correct
               FROM wanted_reference_ids w JOIN reference_predictions p
                 ON p.sample_id = w.sample_id AND p.reference_key = ?
               ORDER BY p.run, w.pos""",
            params=[key],
        ).to_arrow_table()
    finally:
        con.unregister("wanted_reference_ids")
    if table.num_rows != runs * len(ids):
        return None  # partly stored (should not happen: written in one transaction)
    shape = (runs, len(ids))
    member = table["member"].to_numpy(zero_copy_only=False).reshape(shape)
    p_true = table["p_true"].to_numpy().reshape(shape)
    correct = table["correct"].to_numpy(zero_copy_only=False).reshape(shape)
    n = len(sample_ids)
    ref = ReferenceMemorisation(
        scores=memorisation_from_runs(correct[:, :n], member[:, :n]),
        correct=correct[:, :n],
        true_class_probs=p_true[:, :n],
        member_mask=member[:, :n],
        grad_evals=float(meta[0]),
        seconds=float(meta[1]),
    )
    return CachedReference(key, ref, p_true[:, n:], correct[:, n:], cached=True)


@task(cache_policy=NO_CACHE)
def reference_memorization(
    settings: Settings,
    *,
    dataset: str,
    sample_ids: list[str],
    x: np.ndarray,
    y: np.ndarray,
    test_ids: list[str],
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: int,
    recipe: MlpRecipe,
    runs: int,
    subset_fraction: float = 0.7,
    balanced_out_per_row: int | None = None,
    seed: int = 0,
) -> CachedReference:
    """Prefect task: compute-or-read the subset-model reference (see cached_reference)."""
    with warehouse.connect(settings) as con:
        return cached_reference(
            con,
            dataset=dataset,
            sample_ids=sample_ids,
            x=x,
            y=y,
            test_ids=test_ids,
            x_test=x_test,
            y_test=y_test,
            classes=classes,
            recipe=recipe,
            runs=runs,
            subset_fraction=subset_fraction,
            balanced_out_per_row=balanced_out_per_row,
            seed=seed,
        )


# --- per-version proxies ---------------------------------------------------------------------


def versions_with_features(con: duckdb.DuckDBPyConnection, model_name: str) -> list[int]:
    rows = con.execute(
        "SELECT DISTINCT model_version FROM memorization_features WHERE model_name = ? "
        "ORDER BY model_version",
        [model_name],
    ).fetchall()
    return [int(r[0]) for r in rows]


def proxy_version(con: duckdb.DuckDBPyConnection, model_name: str, version: int) -> int | None:
    """The version whose proxies describe `version`: itself, or the newest earlier one with any.

    PNSGD and SISA retrains record no learning events of their own (models/unlearning.py), so
    their proxies are the last ones recorded for this model; the caller records which version
    they came from."""
    earlier = [v for v in versions_with_features(con, model_name) if v <= version]
    return earlier[-1] if earlier else None


def proxy_columns(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    model_version: int,
    sample_ids: list[str],
    proxies: tuple[str, ...] = FEATURE_COLUMNS,
) -> dict[str, np.ndarray]:
    """Proxy name -> values for `sample_ids` in their order (NaN where missing or not computed)."""
    unknown = set(proxies) - set(FEATURE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown proxies {sorted(unknown)}; known: {FEATURE_COLUMNS}")
    wanted = pa.table(
        {
            "sample_id": pa.array(sample_ids, type=pa.string()),
            "pos": pa.array(range(len(sample_ids)), type=pa.int64()),
        }
    )
    con.register("wanted_feature_ids", wanted)
    try:
        columns = ", ".join(f"f.{p}" for p in proxies)  # names checked against FEATURE_COLUMNS
        table = con.sql(
            f"""SELECT {columns} FROM wanted_feature_ids w LEFT JOIN memorization_features f
                ON f.sample_id = w.sample_id AND f.model_name = ? AND f.model_version = ?
                ORDER BY w.pos""",
            params=[model_name, model_version],
        ).to_arrow_table()
    finally:
        con.unregister("wanted_feature_ids")
    return {
        p: table.column(i).to_numpy(zero_copy_only=False).astype(np.float64)
        for i, p in enumerate(proxies)
    }


def carry_forward(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    from_version: int,
    to_version: int,
    forgotten_ids: list[str],
) -> int:
    """Copy `from_version`'s proxy rows to `to_version`, except the forgotten samples.

    For paths that continue the parent's training lineage (certified fine-tunes, SISA, PCMU, RUM)
    the learning events recorded along that lineage still describe the remaining rows."""
    con.register(
        "forgotten_feature_ids", pa.table({"sample_id": pa.array(forgotten_ids, type=pa.string())})
    )
    try:
        columns = ", ".join(FEATURE_COLUMNS)
        con.execute(
            f"""INSERT OR REPLACE INTO memorization_features
                    (model_name, model_version, sample_id, {columns}, visits)
                SELECT model_name, ?, sample_id, {columns}, visits FROM memorization_features
                WHERE model_name = ? AND model_version = ?
                  AND sample_id NOT IN (SELECT sample_id FROM forgotten_feature_ids)""",
            [to_version, model_name, from_version],
        )
        row = warehouse.fetch_one(
            con,
            "SELECT count(*) FROM memorization_features WHERE model_name = ? AND model_version = ?",
            [model_name, to_version],
        )
    finally:
        con.unregister("forgotten_feature_ids")
    return int(row[0]) if row else 0


def fill_columns(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    model_version: int,
    sample_ids: list[str],
    columns: dict[str, np.ndarray],
    directions: dict[str, str],
) -> int:
    """Set proxy `columns` on the version's existing feature rows (one Arrow batch); returns
    how many rows were updated. Used to compute holdout / curvature on demand."""
    unknown = set(columns) - set(FEATURE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown proxies {sorted(unknown)}; known: {FEATURE_COLUMNS}")
    incoming = pa.table(
        {
            "sample_id": pa.array(sample_ids, type=pa.string()),
            **{name: pa.array(np.asarray(v, dtype=np.float64)) for name, v in columns.items()},
        }
    )
    con.register("incoming_columns", incoming)
    try:
        sets = ", ".join(f"{c} = i.{c}" for c in columns)  # names checked above
        with warehouse.transaction(con):
            rows = con.execute(
                f"""UPDATE memorization_features f SET {sets} FROM incoming_columns i
                    WHERE f.sample_id = i.sample_id AND f.model_name = ? AND f.model_version = ?""",
                [model_name, model_version],
            ).fetchall()
            for proxy, direction in directions.items():
                con.execute(
                    "INSERT OR REPLACE INTO proxy_directions VALUES (?, ?)", [proxy, direction]
                )
    finally:
        con.unregister("incoming_columns")
    return int(rows[0][0]) if rows else 0
