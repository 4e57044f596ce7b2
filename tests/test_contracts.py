"""Pure contract pieces: hashing, Merkle roots, certificates, policies."""

from __future__ import annotations

import hashlib

import duckdb
import pytest
from pydantic import ValidationError

from data_contracts.certificate import Certificate, Cost
from data_contracts.hashing import merkle_root, salted_hash, set_sha256
from data_contracts.policy import Policy


def test_salted_hash_matches_the_duckdb_formula_used_for_bulk_hashing() -> None:
    con = duckdb.connect()
    in_db = con.execute("SELECT sha256(? || '|' || ?)", ["salt", "subject-7"]).fetchall()[0][0]
    assert salted_hash("subject-7", salt="salt") == in_db
    assert salted_hash("subject-7", salt="other") != in_db


def test_merkle_root_is_order_independent_and_sensitive_to_every_leaf() -> None:
    leaves = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    assert merkle_root(leaves) == merkle_root(list(reversed(leaves)))
    assert merkle_root(leaves) != merkle_root(leaves[:4])
    assert merkle_root([]) is None
    assert merkle_root(leaves[:1]) == leaves[0]


def test_set_sha256_ignores_order() -> None:
    assert set_sha256(["b", "a"]) == set_sha256(["a", "b"]) != set_sha256(["a"])


def _cert(**overrides) -> Certificate:
    fields = dict(
        model_name="m",
        model_version=2,
        parent_certificate_sha256="0" * 64,
        method="pnsgd",
        guarantee="certified",
        lineage="pnsgd",
        epsilon=0.5,
        delta=1e-3,
        weights_sha256="a" * 64,
        cost=Cost(grad_evals=10, seconds=0.1, retrain_grad_evals=100),
        certificate_id="fixed",
        created_at="2026-11-22T00:00:00Z",
    )
    return Certificate(**{**fields, **overrides})


def test_certificate_hash_is_canonical_and_covers_every_field() -> None:
    a = _cert()
    assert a.sha256() == Certificate.model_validate_json(a.canonical_json()).sha256()
    assert a.sha256() != _cert(epsilon=0.51).sha256()
    assert a.sha256() != _cert(weights_sha256="b" * 64).sha256()


def test_certificate_rejects_unknown_fields_and_guarantees() -> None:
    with pytest.raises(ValidationError):
        _cert(guarantee="probably")
    with pytest.raises(ValidationError):
        _cert(surprise=1)


def test_policy_validates_and_orders_guarantees() -> None:
    assert Policy(guarantee="certified").meets("exact")
    assert not Policy(guarantee="exact").meets("certified")
    assert Policy(guarantee="audited").meets("audited")
    with pytest.raises(ValidationError):
        Policy(epsilon=0)
    with pytest.raises(ValidationError):
        Policy(guarantee="none")


def test_policy_overrides_replace_only_the_fields_they_were_given() -> None:
    stored = Policy(guarantee="exact", min_batch=5, max_hold_days=2.0)
    assert stored.overridden_by(None) is stored
    run = stored.overridden_by(Policy(epsilon=2.0))
    assert (run.guarantee, run.epsilon, run.min_batch, run.max_hold_days) == ("exact", 2.0, 5, 2.0)
    # a field given explicitly wins even when it equals the default
    assert stored.overridden_by(Policy(min_batch=1)).min_batch == 1
    assert stored.overridden_by(Policy.model_validate({"guarantee": "certified"})).min_batch == 5


def test_published_certificate_schema_matches_the_model() -> None:
    import json
    from pathlib import Path

    from data_contracts.certificate import json_schema

    published = Path(__file__).parents[1] / "docs" / "certificate.schema.json"
    assert json.loads(published.read_text()) == json_schema(), (
        "docs/certificate.schema.json is stale: regenerate it from data_contracts.certificate.json_schema()"
    )
