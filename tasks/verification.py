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
    evidence = []
    for v in versions:
        stored = registry.load_version(settings, model_name, v)
        evidence.append(
            VersionEvidence(
                version=v,
                certificate=stored.certificate,
                registry_tag_sha256=stored.certificate_sha256_tag,
                ledger_sha256=ledger.get(v),
                recomputed_weights_sha256=state_sha256(stored.arrays),
            )
        )
    problems = verify_chain(evidence)
    missing = sorted(set(ledger) - set(versions))
    problems += [
        Broken(v, "version", "in the DuckDB ledger but not in the registry") for v in missing
    ]
    return len(versions), problems
