"""Request states of the ledger: every manifest row is in exactly one of them."""

from __future__ import annotations

from enum import StrEnum


class RequestState(StrEnum):
    QUARANTINED = "quarantined"  # invalid; `reason` says why; never applied
    PENDING = "pending"  # valid, waiting for the next forgetting run of its model(s)
    PLANNED = "planned"  # picked up by a run that has not finished yet (crash-safe: re-planned)
    APPLIED = "applied"  # forgotten by model version `applied_version`
    SUPERSEDED = "superseded"  # same request_id re-delivered with identical content: a no-op


TERMINAL_STATES = frozenset(
    {RequestState.QUARANTINED, RequestState.APPLIED, RequestState.SUPERSEDED}
)
