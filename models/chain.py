"""Verification of a model's certificate chain (pure: the caller gathers what the stores hold).

A chain is sound when, for every version v: the certificate's canonical sha256 equals the registry
tag and the ledger's copy; the weights recomputed from the registered state hash to the certificate's
`weights_sha256`; v names v-1's certificate sha256 and weights as its parent; and a certified
epsilon is recomputed by the accountant from the certificate's own parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

from data_contracts.certificate import Certificate
from models.accounting import pnsgd_constants, pnsgd_epsilon

EPSILON_RTOL = 1e-9


@dataclass(frozen=True)
class VersionEvidence:
    version: int
    certificate: Certificate
    registry_tag_sha256: str | None
    ledger_sha256: str | None
    recomputed_weights_sha256: str


@dataclass(frozen=True)
class Broken:
    version: int
    link: str  # weights | certificate | chain | accountant | version
    detail: str

    def __str__(self) -> str:
        return f"v{self.version} {self.link}: {self.detail}"


def recompute_epsilon(cert: Certificate) -> float | None:
    """The PNSGD accountant re-run on the certificate's parameters (None for other methods)."""
    if cert.method != "pnsgd":
        return None
    p = cert.parameters
    k = pnsgd_constants(
        n=p["n"],
        batch_size=p["batch_size"],
        m=p["m"],
        classes=p["classes"],
        eta=p.get("eta"),
        clip=p["clip"],
        radius=p["radius"],
    )
    return pnsgd_epsilon(
        k,
        sigma=p["sigma"],
        epochs=p["epochs"],
        delta=cert.delta,
        z=p["z"],
        bound=p["bound"],
        train_epochs=p["train_epochs"],
    ).epsilon


def verify_chain(evidence: list[VersionEvidence]) -> list[Broken]:
    """Every broken link, in version order (empty: the chain verifies)."""
    problems: list[Broken] = []
    previous: Certificate | None = None
    for i, ev in enumerate(sorted(evidence, key=lambda e: e.version)):
        cert, v = ev.certificate, ev.version
        digest = cert.sha256()
        if cert.model_version != v or v != i + 1:
            problems.append(
                Broken(v, "version", f"certificate says v{cert.model_version}, registry v{v}")
            )
        if ev.registry_tag_sha256 != digest:
            problems.append(
                Broken(
                    v, "certificate", "sha256 differs from the registry tag (certificate edited)"
                )
            )
        if ev.ledger_sha256 is not None and ev.ledger_sha256 != digest:
            problems.append(
                Broken(v, "certificate", "sha256 differs from the DuckDB ledger's copy")
            )
        if ev.recomputed_weights_sha256 != cert.weights_sha256:
            problems.append(
                Broken(v, "weights", "registered state does not hash to weights_sha256")
            )
        expected_parent = previous.sha256() if previous is not None else None
        if cert.parent_certificate_sha256 != expected_parent:
            problems.append(
                Broken(v, "chain", "parent_certificate_sha256 does not match the previous version")
            )
        if previous is not None and cert.weights_sha256_before != previous.weights_sha256:
            problems.append(
                Broken(v, "chain", "weights_sha256_before is not the previous version's weights")
            )
        eps = recompute_epsilon(cert)
        if eps is not None and not math.isclose(eps, cert.epsilon or -1.0, rel_tol=EPSILON_RTOL):
            problems.append(
                Broken(
                    v,
                    "accountant",
                    f"epsilon recomputes to {eps:.12g}, certificate says {cert.epsilon}",
                )
            )
        previous = cert
    return problems
