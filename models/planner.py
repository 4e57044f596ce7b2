"""Enumerate the unlearning paths a model's lineage allows, predict their cost, pick the cheapest
that meets the policy (algorithms.md sec. 5). Pure: the ledger comes in, a plan goes out."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from data_contracts.policy import GUARANTEE_RANK, Policy
from models.accounting import batch_z, pnsgd_min_epochs
from models.forgettable import ForgettableModel
from models.pnsgd import PnsgdRecipe, accountant_bound, recipe_constants


@dataclass
class ModelLedger:
    """Per-model running state carried from version to version (stored with each version)."""

    lineage: str
    z_carried: float = 0.0  # PNSGD W-infinity bound left over from earlier requests
    pcmu_removed: int = 0
    grad_evals_since_retrain: float = 0.0
    seconds_per_grad_eval: float = 1e-5  # from the training run: the prior for any path
    # Measured per path: a PCMU full-batch step and a PNSGD mini-batch step cost very differently
    # per grad-eval, so one number per model mispredicts seconds by up to ~2x (benchmarks/cost_model).
    seconds_per_grad_eval_by_path: dict[str, float] = field(default_factory=dict)
    retrain_grad_evals: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rate(self, path: str) -> float:
        """Seconds per grad-eval predicted for `path`: its own measurement, else the training rate."""
        return self.seconds_per_grad_eval_by_path.get(path, self.seconds_per_grad_eval)

    def calibrate(self, path: str, *, grad_evals: float, seconds: float) -> None:
        """Fold one measured run into the path's rate (moving average, half weight on the new one)."""
        if grad_evals <= 0:
            return
        measured = seconds / grad_evals
        previous = self.seconds_per_grad_eval_by_path.get(path)
        self.seconds_per_grad_eval_by_path[path] = (
            measured if previous is None else 0.5 * (previous + measured)
        )


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
    pnsgd_recipe = PnsgdRecipe(**recipe)
    k = recipe_constants(pnsgd_recipe, n=n_after, classes=classes)
    z = batch_z(k, removed=removed, carried_z=ledger.z_carried)
    bound = accountant_bound(pnsgd_recipe, k)
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


def _sisa_predicted_grad_evals(model: ForgettableModel, forget_rows: np.ndarray) -> float:
    """Grad-evals SISA will spend: each affected shard replays its slices from the earliest one
    holding a forgotten row, each slice r costing epochs_per_slice * retained rows in slices 0..r
    (Bourtoule et al., arXiv 1912.03817, sec. IV)."""
    shard, slc = model.arrays["shard_of_row"], model.arrays["slice_of_row"]
    keep = ~model.removed.copy()
    keep[forget_rows] = False
    total = 0.0
    for s in np.unique(shard[forget_rows]):
        if s < 0:
            continue
        first = int(slc[forget_rows][shard[forget_rows] == s].min())
        sizes = np.bincount(slc[(shard == s) & keep], minlength=model.recipe["slices"])
        total += model.recipe["epochs_per_slice"] * float(np.cumsum(sizes)[first:].sum())
    return total


def _pcmu_candidate(
    model: ForgettableModel, forget_rows: np.ndarray, data: tuple[np.ndarray, np.ndarray]
) -> Candidate:
    """Zero cost within the worst-case budget; otherwise the data-dependent check is run now
    (T*|F| grad-evals, counted) and the replay from its first flip is predicted exactly as
    (steps - t*) * (n - |F|) (algorithms.md sec. 2)."""
    from models.pcmu import pcmu_check

    state = model.pcmu_state()
    cand = Candidate(
        path="pcmu", guarantee="exact", predicted_grad_evals=0.0, predicted_seconds=0.0
    )
    if len(forget_rows) <= state.budget():
        cand.params = {"mode": "budget", "budget": state.budget()}
        return cand
    retained = np.flatnonzero(~model.removed)
    x, y = data
    check = pcmu_check(
        state, x[retained], y[retained], np.searchsorted(retained, forget_rows), recipe=state.recipe
    )
    replay = 0.0
    if not check.passed:
        replay = float(
            (state.steps_run - check.first_flip_step) * (len(retained) - len(forget_rows))
        )
    cand.predicted_grad_evals = check.grad_evals + replay
    cand.params = {
        "mode": "check" if check.passed else "replay",
        "first_flip_step": check.first_flip_step,
        "planning_check_grad_evals": check.grad_evals,
    }
    return cand


# RUM must be clearly cheaper than a retrain to be worth an empirical-only guarantee (sec. 5).
RUM_MAX_FRACTION_OF_RETRAIN = 0.5


def _rum_candidate(model: ForgettableModel, forget_rows: np.ndarray, n_after: int) -> Candidate:
    """RUM fine-tunes on the retained rows and runs NegGrad+ over retain + forget (Zhao et al.,
    arXiv 2406.01257, sec. 4); predicted as the upper bound where every group is non-empty and
    the high group is the whole forget set."""
    from models.rum import RumRecipe

    r = RumRecipe()
    # NegGrad+ cycles forget rows alongside every retain batch: one forget batch per step.
    steps = math.ceil(n_after / r.batch_size)
    neggrad = r.neggrad_epochs * (n_after + steps * min(r.batch_size, len(forget_rows)))
    cost = float(r.finetune_epochs * n_after + neggrad)
    if r.low_action == "finetune":
        cost += r.low_epochs * n_after
    cand = Candidate(
        path="rum",
        guarantee="audited",
        predicted_grad_evals=cost,
        predicted_seconds=0.0,
        params={"lineage_after": "rum-modified"},
    )
    if cost > RUM_MAX_FRACTION_OF_RETRAIN * model.retrain_grad_evals(n_after):
        cand.rejected = f"not clearly cheaper than a retrain (> {RUM_MAX_FRACTION_OF_RETRAIN:.0%})"
    return cand


def enumerate_candidates(
    model: ForgettableModel,
    forget_rows: np.ndarray,
    *,
    policy: Policy,
    ledger: ModelLedger,
    data: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Candidate]:
    """Every path this model's lineage allows for removing `forget_rows`, with predicted cost.

    `data` (the training split's x, y) lets PCMU run its data-dependent check while planning."""
    removed, n_retained = len(forget_rows), model.n_retained
    if not 0 < removed <= n_retained:
        raise ValueError(f"removed must be in [1, n_retained={n_retained}], got {removed}")
    n_after = n_retained - removed
    delta = policy.delta if policy.delta is not None else 1.0 / n_after
    retrain = Candidate(
        path="retrain",
        guarantee="exact",
        predicted_grad_evals=model.retrain_grad_evals(n_after),
        predicted_seconds=0.0,
    )
    candidates = []
    if model.lineage == "pnsgd":
        candidates.append(
            _pnsgd_candidate(
                recipe=model.recipe,
                classes=model.classes,
                n_after=n_after,
                removed=removed,
                policy=policy,
                ledger=ledger,
                delta=delta,
            )
        )
    if model.lineage == "sisa":
        candidates.append(
            Candidate(
                path="sisa",
                guarantee="exact",
                predicted_grad_evals=_sisa_predicted_grad_evals(model, forget_rows),
                predicted_seconds=0.0,
            )
        )
    if model.recipe_name == "mlp" and policy.guarantee == "audited":
        candidates.append(_rum_candidate(model, forget_rows, n_after))
    if model.lineage == "pcmu" and data is not None:
        candidates.append(_pcmu_candidate(model, forget_rows, data))
    candidates.append(retrain)
    for c in candidates:
        c.predicted_seconds = c.predicted_grad_evals * ledger.rate(c.path)
        # Exact paths reset nothing that accumulates; only approximate ones run up a bill.
        if c is retrain or c.rejected or c.guarantee == "exact":
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
