"""Enumerate the unlearning paths a model's lineage allows, predict their cost, pick the cheapest
that meets the policy (algorithms.md sec. 5). Pure: the ledger comes in, a plan goes out."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from data_contracts.policy import GUARANTEE_RANK, Policy
from models.accounting import batch_z, pnsgd_constants, pnsgd_min_epochs

# Training counts as converged for the tight (stationary) bound once the start-up term
# 2R c^(T n/b) is below this fraction of Z_B; otherwise the non-convergent bound is used.
CONVERGED_FRACTION_OF_ZB = 1e-6


@dataclass
class ModelLedger:
    """Per-model running state carried from version to version (stored with each version)."""

    lineage: str
    z_carried: float = 0.0  # PNSGD W-infinity bound left over from earlier requests
    pcmu_removed: int = 0
    grad_evals_since_retrain: float = 0.0
    seconds_per_grad_eval: float = 1e-5
    retrain_grad_evals: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    path: str
    guarantee: str
    predicted_grad_evals: float
    predicted_seconds: float
    epsilon: float | None = None
    delta: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "guarantee": self.guarantee,
            "predicted_grad_evals": round(self.predicted_grad_evals, 1),
            "predicted_seconds": round(self.predicted_seconds, 3),
            "epsilon": self.epsilon,
            "chosen": False,
            "rejected": self.rejected or "",
        }


@dataclass
class Plan:
    chosen: Candidate
    candidates: list[Candidate]
    why: str

    def table(self) -> list[dict[str, Any]]:
        rows = [c.as_row() for c in self.candidates]
        for row, c in zip(rows, self.candidates, strict=True):
            row["chosen"] = c is self.chosen
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.path,
            "why": self.why,
            "candidates": self.table(),
            "chosen_params": self.chosen.params,
        }


def _pnsgd_candidate(
    *,
    recipe: dict[str, Any],
    classes: int,
    n_after: int,
    removed: int,
    policy: Policy,
    ledger: ModelLedger,
    delta: float,
) -> Candidate:
    k = pnsgd_constants(
        n=n_after,
        batch_size=recipe["batch_size"],
        m=recipe["m"],
        classes=classes,
        eta=recipe.get("eta"),
        clip=recipe["clip"],
        radius=recipe["radius"],
    )
    z = batch_z(k, removed=removed, carried_z=ledger.z_carried)
    start_term = 2 * k.radius * math.exp(recipe["epochs"] * k.steps_per_epoch * math.log(k.c))
    bound = "tight" if start_term <= CONVERGED_FRACTION_OF_ZB * k.z_b else "non-convergent"
    cand = Candidate(
        path="pnsgd",
        guarantee="certified",
        predicted_grad_evals=0.0,
        predicted_seconds=0.0,
        delta=delta,
        params={"bound": bound, "z": z},
    )
    if z >= 2 * k.radius * (1 - 1e-9):
        cand.rejected = "Z reached 2R: the certificate would be vacuous, retrain instead"
        return cand
    try:
        epochs, eps = pnsgd_min_epochs(
            k,
            sigma=recipe["sigma"],
            target_epsilon=policy.epsilon,
            delta=delta,
            z=z,
            bound=bound,
            train_epochs=recipe["epochs"],
        )
    except ValueError as err:
        cand.rejected = f"accountant: {err}"
        return cand
    cand.epsilon = eps.epsilon
    cand.params.update({"epochs": epochs, "alpha": eps.alpha, "z_b": k.z_b, "c": k.c, "eta": k.eta})
    cand.predicted_grad_evals = float(epochs * n_after)
    return cand


def enumerate_candidates(
    *,
    lineage: str,
    recipe: dict[str, Any],
    classes: int,
    n_retained: int,
    removed: int,
    policy: Policy,
    ledger: ModelLedger,
) -> list[Candidate]:
    """Every path this lineage allows for removing `removed` of `n_retained` rows, with its cost."""
    if not 0 < removed <= n_retained:
        raise ValueError(f"removed must be in [1, n_retained={n_retained}], got {removed}")
    n_after = n_retained - removed
    delta = policy.delta if policy.delta is not None else 1.0 / n_after
    retrain = Candidate(
        path="retrain",
        guarantee="exact",
        predicted_grad_evals=float(recipe["epochs"] * n_after),
        predicted_seconds=0.0,
        params={"epochs": recipe["epochs"]},
    )
    candidates = []
    if lineage == "pnsgd":
        candidates.append(
            _pnsgd_candidate(
                recipe=recipe,
                classes=classes,
                n_after=n_after,
                removed=removed,
                policy=policy,
                ledger=ledger,
                delta=delta,
            )
        )
    candidates.append(retrain)
    for c in candidates:
        c.predicted_seconds = c.predicted_grad_evals * ledger.seconds_per_grad_eval
        if c is retrain or c.rejected:
            continue
        if ledger.grad_evals_since_retrain + c.predicted_grad_evals > retrain.predicted_grad_evals:
            c.rejected = "cumulative cost since the last retrain would exceed one retrain"
    return candidates


def choose(candidates: list[Candidate], policy: Policy) -> Plan:
    """Cheapest candidate whose guarantee meets the policy; ties go to the stronger guarantee."""
    for c in candidates:
        if not c.rejected and not policy.meets(c.guarantee):  # type: ignore[arg-type]
            c.rejected = (
                f"guarantee '{c.guarantee}' is weaker than the policy's '{policy.guarantee}'"
            )
        if not c.rejected and c.epsilon is not None and c.epsilon > policy.epsilon * (1 + 1e-12):
            c.rejected = f"epsilon {c.epsilon:.3g} above the policy's {policy.epsilon}"
    viable = [c for c in candidates if not c.rejected]
    if not viable:
        raise ValueError("no unlearning path meets the policy (a retrain should always be viable)")
    best = min(viable, key=lambda c: (c.predicted_grad_evals, -GUARANTEE_RANK[c.guarantee]))
    others = [c for c in viable if c is not best]
    if others:
        nxt = min(others, key=lambda c: c.predicted_grad_evals)
        ratio = (
            best.predicted_grad_evals / nxt.predicted_grad_evals
            if nxt.predicted_grad_evals
            else 0.0
        )
        why = (
            f"{best.path} ({best.guarantee}) is the cheapest path meeting the '{policy.guarantee}' "
            f"policy: {ratio:.1%} of the next option, {nxt.path}"
        )
    else:
        why = f"{best.path} is the only path that meets the '{policy.guarantee}' policy"
    return Plan(chosen=best, candidates=candidates, why=why)
