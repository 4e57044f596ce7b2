"""Gather what MLflow and DuckDB hold about a model's versions, for `models.chain.verify_chain`."""

from __future__ import annotations

from data_contracts.settings import Settings
from models.chain import Broken, VersionEvidence, verify_chain
from models.weights import state_sha256
from tasks import registry, warehouse


def verify_model(settings: Settings, model_name: str) -> tuple[int, list[Broken]]:
    """Recompute every version's hashes from the registered artifacts; returns (versions, problems)."""
    c = registry.client(settings)
    versions = sorted(int(v.version) for v in c.search_model_versions(f"name = '{model_name}'"))
    with warehouse.connect(settings) as con:
        ledger = dict(
            con.execute(
                "SELECT version, certificate_sha256 FROM model_versions WHERE model_name = ?",
                [model_name],
            ).fetchall()
        )
    evidence, unreadable = [], []
    for v in versions:
        tag = c.get_model_version(model_name, str(v)).tags.get("certificate_sha256")
        try:
            stored = registry.load_version(settings, model_name, v)
            cert, weights = stored.certificate, state_sha256(stored.arrays)
        except Exception as err:  # a damaged zip or JSON is evidence of tampering, not a crash
            unreadable.append(
                Broken(v, "weights", f"registered artifacts unreadable ({type(err).__name__})")
            )
            try:
                cert, weights = registry.load_certificate(settings, model_name, v), "unreadable"
            except Exception:
                continue
        evidence.append(
            VersionEvidence(
                version=v,
                certificate=cert,
                registry_tag_sha256=tag,
                ledger_sha256=ledger.get(v),
                recomputed_weights_sha256=weights,
            )
        )
    problems = sorted(unreadable + verify_chain(evidence), key=lambda b: b.version)
    missing = sorted(set(ledger) - set(versions))
    problems += [
        Broken(v, "version", "in the DuckDB ledger but not in the registry") for v in missing
    ]
    return len(versions), problems
