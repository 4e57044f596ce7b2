"""Salted hashes and Merkle roots: how raw ids are referred to outside the DuckDB ledger."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def salted_hash(value: str, *, salt: str) -> str:
    """sha256 of `salt|value` (hex): unlinkable to the raw id without the secret salt.

    The same formula runs inside DuckDB (`sha256(salt || '|' || value)`) for bulk hashing, so the
    two must stay identical (tested)."""
    return hashlib.sha256(f"{salt}|{value}".encode()).hexdigest()


def merkle_root(leaves: Iterable[str]) -> str | None:
    """Merkle root over sorted hex leaves (sha256 of concatenated children; odd nodes carried up).

    Sorting makes the root independent of request order, so an auditor can rebuild it from the set."""
    level = [bytes.fromhex(h) for h in sorted(leaves)]
    if not level:
        return None
    while len(level) > 1:
        nxt = [
            hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


def set_sha256(items: Iterable[str]) -> str:
    """sha256 of the sorted, newline-joined items: a content hash of a set of ids."""
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
