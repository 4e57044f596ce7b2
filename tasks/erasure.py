"""Erasure of per-sample data derived from a forgotten subject's rows (GDPR art. 17(1)).

Forgetting a subject changes the model; the warehouse also holds per-sample rows *derived* from
the subject's samples: memorisation proxies of every version (`memorization_features`) and the
shadow-model reference (`reference_memorization`, `reference_predictions`: each shadow's
p(true label) and correctness on the sample, its memorisation score). Those describe the subject's
data and have no use once no model may use the sample, so they go in the same transaction that
records the forgetting and moves the requests on (tasks.ledger.finalize_run): the model's proxy rows
at once, the shared reference's rows when the last model trained on the dataset forgets the sample.

The subject's *test-split* rows are the controller's data too: no model trains on them, but every
evaluation and RUM audit reads them, and the shadows' predictions on them sit in
`reference_predictions` (the only per-sample table holding test rows; proxies and
`reference_memorization` cover training rows only). Once a request for all of a subject's data is
applied for any model of the dataset (tasks.ledger.withdrawn_test_ids), their test rows leave
every later evaluation and audit (tasks.forgetting.load_context; the run that applies it already
leaves them out) and their `reference_predictions` rows go here. Audits ask the reference only for
the test rows still in use (tasks.features.reference_complete), so the deletion never makes it look
incomplete and never triggers a rebuild of the shadows.

What stays, and why: the ledger (`requests`, `applications`, `forgotten_samples`) and
`training_index` are the record of the erasure that `forgetflow audit` answers from (art. 17
obligations must be demonstrable, art. 5(2)); per-version aggregates (certificates, memorisation
profiles and test-set sizes as counts) identify no sample. The shadow models' rows of *other*
samples stay: the shadow weights are never stored, and what remains is each remaining row's
prediction, in which the forgotten rows are anonymous training data of a model that no longer
exists (recomputing the reference per erasure would cost ~4 training runs each time, more than
every RUM run saves). Shadows are never trained on a sample forgotten before their audit
(tasks.verification.audit_rum excludes them), so a recomputed reference cannot bring a forgotten
sample back."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from tasks import warehouse

PER_SAMPLE_TABLES = ("memorization_features", "reference_memorization", "reference_predictions")


def erase_derived_rows(
    con: duckdb.DuckDBPyConnection, *, model_name: str, withdrawn_test_ids: Sequence[str]
) -> dict[str, int]:
    """Delete per-sample derived rows of samples `model_name` has forgotten and of the dataset's
    `withdrawn_test_ids` (tasks.ledger.withdrawn_test_ids); returns rows deleted per table.

    Call inside the ledger transaction that records the forgetting. Proxies are per model: every
    version's rows of a sample this model forgot go. The reference is shared by every model trained
    on the same data (its key hashes the arrays, not the model): a training sample's rows go once
    every model of the dataset has forgotten it; until then another model may still hold and audit
    it. Withdrawn test rows are used by no model's weights: their rows go at once. Set-based and
    idempotent, so it also clears rows left by runs before this existed."""
    feats = con.execute(
        """DELETE FROM memorization_features f WHERE f.model_name = ? AND EXISTS (
               SELECT 1 FROM forgotten_samples s
               WHERE s.model_name = f.model_name AND s.sample_id = f.sample_id)""",
        [model_name],
    ).fetchall()
    row = warehouse.fetch_one(con, "SELECT dataset FROM models WHERE model_name = ?", [model_name])
    if row is None:
        return {"memorization_features": int(feats[0][0])}
    con.register(
        "withdrawn_test_rows",
        pa.table({"sample_id": pa.array(list(withdrawn_test_ids), type=pa.string())}),
    )
    # Samples of the dataset that every model trained on it has forgotten.
    gone = """SELECT s.sample_id FROM forgotten_samples s JOIN models m USING (model_name)
              WHERE m.dataset = $dataset GROUP BY s.sample_id
              HAVING count(*) = (SELECT count(*) FROM models WHERE dataset = $dataset)"""
    keys = "SELECT DISTINCT reference_key FROM reference_memorization WHERE dataset = $dataset"
    try:
        preds = con.execute(  # before reference_memorization: its rows name the dataset's keys
            f"""DELETE FROM reference_predictions WHERE reference_key IN ({keys})
                AND (sample_id IN ({gone}) OR sample_id IN (SELECT sample_id FROM withdrawn_test_rows))""",
            {"dataset": row[0]},
        ).fetchall()
        refs = con.execute(
            f"DELETE FROM reference_memorization WHERE dataset = $dataset AND sample_id IN ({gone})",
            {"dataset": row[0]},
        ).fetchall()
    finally:
        con.unregister("withdrawn_test_rows")
    return {
        "memorization_features": int(feats[0][0]),
        "reference_predictions": int(preds[0][0]),
        "reference_memorization": int(refs[0][0]),
    }
