"""Run the path a plan chose: new model state, certificate payload and measured cost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from models.accounting import pnsgd_constants, z_after_epochs
from models.cost import CostMeter
from models.forgettable import ForgettableModel
from models.planner import ModelLedger, Plan
from models.pnsgd import PnsgdRecipe, initial_weights, run_pnsgd

Progress = Callable[[int, int], None]


@dataclass
class Unlearned:
    model: ForgettableModel
    method: str
    guarantee: str
    ledger: ModelLedger
    cost: CostMeter
    epsilon: float | None = None
    delta: float | None = None
    accountant: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    budget_left: dict[str, Any] = field(default_factory=dict)


def _pnsgd(
    model: ForgettableModel,
    x: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    plan: Plan,
    ledger: ModelLedger,
    seed: int,
    progress: Progress | None,
) -> Unlearned:
    recipe = PnsgdRecipe(**model.recipe)
    epochs = int(plan.chosen.params["epochs"])
    meter = CostMeter()
    w = run_pnsgd(
        torch.as_tensor(model.arrays["weights"]),
        x[keep],
        y[keep],
        classes=model.classes,
        recipe=recipe,
        epochs=epochs,
        seed=seed,
        meter=meter,
        progress=progress,
    )
    k = pnsgd_constants(
        n=int(keep.sum()),
        batch_size=recipe.batch_size,
        m=recipe.m,
        classes=model.classes,
        eta=recipe.eta,
        clip=recipe.clip,
        radius=recipe.radius,
    )
    z_left = z_after_epochs(k, z=plan.chosen.params["z"], epochs=epochs)
    new_ledger = replace(
        ledger,
        z_carried=z_left,
        grad_evals_since_retrain=ledger.grad_evals_since_retrain + meter.grad_evals,
    )
    return Unlearned(
        model=replace(model, arrays={"weights": w.numpy()}, removed=~keep),
        method="pnsgd",
        guarantee="certified",
        ledger=new_ledger,
        cost=meter,
        epsilon=plan.chosen.epsilon,
        delta=plan.chosen.delta,
        accountant=f"pnsgd-{plan.chosen.params['bound']} (Chien et al., arXiv 2403.17105)",
        parameters={**model.recipe, **plan.chosen.params, "seed": seed},
        budget_left={"z_carried": z_left, "z_cap": 2 * recipe.radius},
    )


def _retrain(
    model: ForgettableModel,
    x: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    ledger: ModelLedger,
    seed: int,
    progress: Progress | None,
) -> Unlearned:
    meter = CostMeter()
    if model.recipe_name != "pnsgd":
        raise ValueError(f"retrain of recipe {model.recipe_name!r} is not wired yet")
    recipe = PnsgdRecipe(**model.recipe)
    w0 = initial_weights(dim=x.shape[1], classes=model.classes, recipe=recipe, seed=seed)
    w = run_pnsgd(
        w0,
        x[keep],
        y[keep],
        classes=model.classes,
        recipe=recipe,
        epochs=recipe.epochs,
        seed=seed,
        meter=meter,
        progress=progress,
    )
    lineage = model.recipe_name  # a retrain under the original recipe restores the lineage
    new_ledger = ModelLedger(
        lineage=lineage,
        seconds_per_grad_eval=ledger.seconds_per_grad_eval,
        retrain_grad_evals=meter.grad_evals,
    )
    return Unlearned(
        model=replace(
            model, lineage=lineage, arrays={"weights": w.numpy()}, removed=~keep, seed=seed
        ),
        method="retrain",
        guarantee="exact",
        ledger=new_ledger,
        cost=meter,
        parameters={**model.recipe, "seed": seed},
        budget_left={"z_carried": 0.0},
    )


def execute(
    plan: Plan,
    model: ForgettableModel,
    x: np.ndarray,
    y: np.ndarray,
    forget_rows: np.ndarray,
    *,
    ledger: ModelLedger,
    seed: int,
    progress: Progress | None = None,
) -> Unlearned:
    """Remove `forget_rows` (positions in the training split) by the plan's chosen path."""
    if np.any(model.removed[forget_rows]):
        raise ValueError("forget_rows contains rows this model already forgot")
    keep = ~model.removed.copy()
    keep[forget_rows] = False
    path = plan.chosen.path
    if path == "pnsgd":
        return _pnsgd(model, x, y, keep, plan, ledger, seed, progress)
    if path == "retrain":
        return _retrain(model, x, y, keep, ledger, seed, progress)
    raise ValueError(f"unknown path {path!r}")
