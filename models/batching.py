"""Run a model's forgetting now, or hold its pending requests for a larger batch.

One forgetting run for many requests costs far less than one run each (a retrain costs the same
for any number; PNSGD's K grows slowly with the removed count, Chien et al., arXiv 2403.17105: 4
epochs for 1 digits sample, 12 for 80 at epsilon 1), so an operator may batch requests; the legal
deadline (GDPR art. 12(3): one month from receipt of the request) must still never be
missed. The rule is ours: run when at least `min_batch` requests are pending, or when any of them
was received `max_hold_days` ago, or is due within `deadline_margin_days` (or is past due);
otherwise hold, and the requests stay pending for a later run. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Ours: a request without a deadline is due one month after it was made (GDPR art. 12(3)),
# counted as 28 days, the shortest month, so the implied deadline never falls after the legal one.
IMPLIED_DEADLINE = timedelta(days=28)


@dataclass(frozen=True)
class PendingRequest:
    """One pending request as the decision sees it (a salted hash, never the raw id)."""

    request_hash: str
    received_at: datetime  # when its manifest file was ingested
    requested_at: datetime
    deadline: datetime | None  # from the manifest

    @property
    def due(self) -> datetime:
        """The manifest's deadline, else requested_at + IMPLIED_DEADLINE."""
        return self.deadline if self.deadline is not None else self.requested_at + IMPLIED_DEADLINE


@dataclass(frozen=True)
class BatchDecision:
    """Run or hold, why (one line), and when holding stops being allowed."""

    run: bool
    reason: str
    pending: int
    overdue: int  # pending requests past their manifest deadline
    # earliest received + max_hold_days or due - deadline_margin_days (None: nothing pending)
    forced_at: datetime | None
    forcing_count: int = 0  # requests that force the run now
    forcing: tuple[str, ...] = ()  # their hashes, deadline first, at most MAX_LISTED
    held: tuple[str, ...] = ()  # hashes of the requests held (all pending), at most MAX_LISTED
    earliest_deadline: datetime | None = None  # earliest manifest deadline among the pending

    @property
    def why(self) -> str:
        """The reason, and the hashes (first 16 hex) of up to three requests forcing the run."""
        listed = [h[:16] for h in self.forcing[:3]]
        if not listed:
            return self.reason
        more = self.forcing_count - len(listed)
        return f"{self.reason}; forced by request {', '.join(listed)}" + (
            f" and {more} more" if more else ""
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "reason": self.reason,
            "why": self.why,
            "pending": self.pending,
            "overdue": self.overdue,
            "forced_at": _iso(self.forced_at),
            "forcing_count": self.forcing_count,
            "forcing": list(self.forcing),
            "held": list(self.held),
            "earliest_deadline": _iso(self.earliest_deadline),
        }


# Hashes listed per decision (ours, as tasks.forgetting.MAX_REQUEST_TAGS): the counts are exact,
# the lists are what a person can read; a held run's list is bounded by min_batch anyway.
MAX_LISTED = 1000


def decide(
    pending: Sequence[PendingRequest],
    *,
    now: datetime,
    min_batch: int,
    max_hold_days: float,
    deadline_margin_days: float,
    manual: bool = False,
) -> BatchDecision:
    """Run now or hold `pending` (one model's pending requests) under the batching policy.

    Precedence: nothing pending; a manual run (holding bypassed); requests that force the run
    (due within the margin or past due, then received max_hold_days ago); the batch size; else
    hold until `forced_at`, the earliest received + max_hold_days or due - deadline_margin_days."""
    n = len(pending)
    if n == 0:
        return BatchDecision(
            run=False, reason="no pending requests", pending=0, overdue=0, forced_at=None
        )
    max_hold = timedelta(days=max_hold_days)
    margin = timedelta(days=deadline_margin_days)
    by_deadline = [r for r in pending if r.due - margin <= now]
    by_age = [r for r in pending if r.received_at + max_hold <= now < r.due - margin]
    deadlines = [r.deadline for r in pending if r.deadline is not None]
    by_hold = min(pending, key=lambda r: r.received_at)
    by_due = min(pending, key=lambda r: r.due)
    hold_ends, due_ends = by_hold.received_at + max_hold, by_due.due - margin
    overdue = sum(1 for d in deadlines if d < now)
    common: dict[str, Any] = {
        "pending": n,
        "overdue": overdue,
        "forced_at": min(hold_ends, due_ends),
        "earliest_deadline": min(deadlines) if deadlines else None,
    }
    if manual:
        return BatchDecision(
            run=True, reason=f"manual run: holding bypassed ({n} pending)", **common
        )
    if by_deadline or by_age:
        parts = []
        if by_deadline:
            implied = sum(1 for r in by_deadline if r.deadline is None)
            parts.append(
                f"deadline: {len(by_deadline)} of {n} pending due within "
                f"{deadline_margin_days:g} d or past due ({overdue} overdue"
                + (f", {implied} by the implied one-month deadline" if implied else "")
                + ")"
            )
        if by_age:
            parts.append(
                f"age: {len(by_age)} of {n} pending received {max_hold_days:g} d ago or more"
            )
        forcing = [*by_deadline, *by_age]
        return BatchDecision(
            run=True,
            reason="; ".join(parts),
            forcing_count=len(forcing),
            forcing=tuple(r.request_hash for r in forcing[:MAX_LISTED]),
            **common,
        )
    if n >= min_batch:
        return BatchDecision(
            run=True, reason=f"batch: {n} pending >= min_batch {min_batch}", **common
        )
    because = (
        f"received + max_hold_days {max_hold_days:g}"
        if hold_ends <= due_ends
        else f"due - deadline_margin_days {deadline_margin_days:g}"
    )
    return BatchDecision(
        run=False,
        reason=(
            f"held: {n} pending < min_batch {min_batch}; the first run from "
            f"{_iso(common['forced_at'])} on takes them ({because})"
        ),
        held=tuple(r.request_hash for r in pending[:MAX_LISTED]),
        **common,
    )


def _iso(moment: datetime | None) -> str | None:
    """UTC, to the minute: what a person reads in a reason line and a report."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
