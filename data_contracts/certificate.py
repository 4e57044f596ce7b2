"""Forgetting certificate, schema v1: the record an auditor checks for every model version.

Certificates form a hash chain: each one names the sha256 of its parent's canonical JSON, so
rewriting any past version breaks every link after it (`forgetflow verify` walks the chain).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from data_contracts.policy import Guarantee

CERTIFICATE_SCHEMA_VERSION = "1"
Method = Literal[
    "train",
    "pnsgd",
    "langevin",
    "pcmu-budget",
    "pcmu-check",
    "pcmu-replay",
    "sisa",
    "retrain",
    "rum",
]
Lineage = Literal["pnsgd", "pcmu", "sisa", "plain", "rum-modified"]


class Cost(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    grad_evals: float
    seconds: float
    retrain_grad_evals: float
    predicted_grad_evals: float | None = None


class Certificate(BaseModel):
    """One model version's forgetting certificate (canonical JSON is what gets hashed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["1"] = CERTIFICATE_SCHEMA_VERSION
    certificate_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    model_name: str
    model_version: int
    parent_certificate_sha256: str | None
    method: Method
    guarantee: Guarantee
    lineage: Lineage
    epsilon: float | None = None
    delta: float | None = None
    accountant: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    budget_left: dict[str, Any] = Field(default_factory=dict)
    request_id_hashes: list[str] = Field(default_factory=list)
    request_merkle_root: str | None = None
    forget_set_sha256: str | None = None
    forget_set_size: int = 0
    training_index_sha256: str | None = None
    weights_sha256_before: str | None = None
    weights_sha256: str
    cost: Cost
    metrics: dict[str, float | None] = Field(default_factory=dict)
    audit: dict[str, Any] = Field(default_factory=dict)
    code_version: str = "unknown"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def canonical_json(self) -> str:
        """Sorted-key, whitespace-free JSON: the exact bytes that `sha256` hashes."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def json_schema() -> dict[str, Any]:
    """JSON schema of certificate v1 (exported to docs/certificate.schema.json)."""
    return Certificate.model_json_schema()
