"""Run the path a plan chose: new model state, certificate payload and measured cost."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from models.accounting import z_after_epochs
from models.cost import CostMeter
from models.forgettable import ForgettableModel, mlp_arrays, sisa_arrays
from models.learning_events import LearningEvents
from models.planner import ModelLedger, Plan
from models.pnsgd import PnsgdRecipe, recipe_constants, run_pnsgd
from models.progress import Progress, epoch_hook
from models.retrain import retrain_pnsgd


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
    # Learning events of a retrain, by training-split position (None: the path records none).
    events: LearningEvents | None = None


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
    k = recipe_constants(recipe, n=int(keep.sum()), classes=model.classes)
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
        parameters={
            **model.recipe,
            **plan.chosen.params,
            "n": int(keep.sum()),
            "classes": model.classes,
            "train_epochs": recipe.epochs,
            # A commitment, not the seed: certified noise must stay unpredictable to outsiders.
            "noise_seed_sha256": hashlib.sha256(str(seed).encode()).hexdigest(),
        },
        budget_left={"z_carried": z_left, "z_cap": 2 * recipe.radius},
    )


def _sisa(
    model: ForgettableModel,
    x: np.ndarray,
    y: np.ndarray,
    forget_rows: np.ndarray,
    ledger: ModelLedger,
    progress: Progress | None,
) -> Unlearned:
    from models.sisa import SisaRecipe, sisa_unlearn

    meter = CostMeter()
    # The training seed, not a fresh one: it fixes the shard/slice assignment and batch orders.
    done = sisa_unlearn(
        model.sisa_state(),
        x,
        y,
        forget_rows,
        recipe=SisaRecipe(**model.recipe),
        seed=model.seed,
        meter=meter,
        progress=progress,
    )
    return Unlearned(
        model=replace(model, arrays=sisa_arrays(done.model), removed=done.model.removed.copy()),
        method="sisa",
        guarantee="exact",
        ledger=replace(ledger),
        cost=meter,
        parameters={
            **model.recipe,
            "affected_shards": [int(s) for s in done.affected_shards],
            "restarted_from_slice": {str(k): int(v) for k, v in done.restarted_from_slice.items()},
        },
    )


def _pcmu(
    model: ForgettableModel,
    x: np.ndarray,
    y: np.ndarray,
    forget_rows: np.ndarray,
    ledger: ModelLedger,
    progress: Progress | None,
) -> Unlearned:
    from models.pcmu import pcmu_unlearn

    meter = CostMeter()
    state = model.pcmu_state()
    retained = np.flatnonzero(~model.removed)
    done = pcmu_unlearn(
        state,
        x[retained],
        y[retained],
        np.searchsorted(retained, forget_rows),
        recipe=state.recipe,
        meter=meter,
        progress=progress,
    )
    removed = model.removed.copy()
    removed[forget_rows] = True
    payload = done.certificate
    return Unlearned(
        model=replace(model, arrays=done.model.to_arrays(), removed=removed),
        method=f"pcmu-{done.mode}",
        guarantee="exact",
        ledger=replace(ledger, pcmu_removed=ledger.pcmu_removed + len(forget_rows)),
        cost=meter,
        parameters={k: v for k, v in payload.items() if k not in ("method", "guarantee", "seed")},
        budget_left={"pcmu_budget": done.model.budget()},
    )


def _sharded_pcmu(
    model: ForgettableModel,
    x: np.ndarray,
    y: np.ndarray,
    forget_rows: np.ndarray,
    ledger: ModelLedger,
    progress: Progress | None,
) -> Unlearned:
    """PCMU per affected SISA shard (models/pcmu_sisa.py): exact w.r.t. the same ensemble."""
    from models.pcmu_sisa import sharded_pcmu_unlearn

    meter = CostMeter()
    done = sharded_pcmu_unlearn(
        model.sharded_pcmu_state(), x, y, forget_rows, meter=meter, progress=progress
    )
    payload = done.certificate
    return Unlearned(
        model=replace(model, arrays=done.model.to_arrays(), removed=done.model.removed.copy()),
        method=payload["method"],
        guarantee="exact",
        ledger=replace(ledger, pcmu_removed=ledger.pcmu_removed + len(forget_rows)),
        cost=meter,
        parameters={
            k: v
            for k, v in payload.items()
            if k not in ("method", "guarantee", "seed", "budget_left_per_shard")
        },
        budget_left={"pcmu_budget_per_shard": payload["budget_left_per_shard"]},
    )


def _rum(
    model: ForgettableModel,
    x: np.ndarray,
    y: np.ndarray,
    forget_rows: np.ndarray,
    ledger: ModelLedger,
    seed: int,
    proxies: np.ndarray | None,
    progress: Progress | None,
) -> Unlearned:
    """Memorisation-guided RUM (uncertified): the flow accepts it only if its audit passes."""
    from models.learning_events import HIGH_MEMORISATION_WHEN
    from models.rum import rum_unlearn

    if proxies is None:
        raise ValueError("RUM needs the confidence proxy recorded at training time (proxies=None)")
    meter = CostMeter()
    keep = ~model.removed.copy()
    keep[forget_rows] = False
    done = rum_unlearn(
        model.mlp_state(),
        x,
        y,
        forget_rows=forget_rows,
        retain_rows=np.flatnonzero(keep),
        proxy_scores=np.nan_to_num(proxies, nan=1.0),
        direction=HIGH_MEMORISATION_WHEN["confidence"],
        seed=seed,
        meter=meter,
        progress=progress,
    )
    payload = done.certificate(None)
    return Unlearned(
        model=replace(model, lineage="rum-modified", arrays=mlp_arrays(done.model), removed=~keep),
        method="rum",
        guarantee="audited",  # provisional: evaluate() fails the run over to a retrain if the audit fails
        ledger=replace(
            ledger,
            lineage="rum-modified",
            grad_evals_since_retrain=ledger.grad_evals_since_retrain + meter.grad_evals,
        ),
        cost=meter,
        parameters={
            "proxy": "confidence",
            "group_sizes": payload["group_sizes"],
            "cutoffs": payload["cutoffs"],
            "recipe": payload["recipe"],
        },
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
    """Retrain from scratch under the model's own recipe: exact, and it restores the lineage.

    Like training, every recipe's retrain records learning events (the new version's own
    memorisation proxies) from the probabilities its steps compute anyway (zero extra grad-evals;
    PNSGD and SISA hand them to the gradient, models.logreg.residuals)."""
    meter = CostMeter()
    events: LearningEvents | None = None
    if model.recipe_name in ("mlp", "pcmu"):
        kept = np.flatnonzero(keep)
        local = LearningEvents.zeros(len(kept))  # by position in x[kept]
        if model.recipe_name == "mlp":
            from models.mlp import MlpRecipe, train_mlp

            recipe = MlpRecipe(
                **{k: v for k, v in model.recipe.items() if k in MlpRecipe.__dataclass_fields__}
            )
            arrays = mlp_arrays(
                train_mlp(
                    x[kept],
                    y[kept],
                    classes=model.classes,
                    recipe=recipe,
                    seed=seed,
                    events=local,
                    meter=meter,
                    on_epoch_end=epoch_hook(progress, recipe.epochs),
                )
            )
        else:
            from models.pcmu import PcmuRecipe, train_pcmu

            arrays = train_pcmu(
                x[kept],
                y[kept],
                classes=model.classes,
                recipe=PcmuRecipe.from_dict(model.recipe),
                seed=seed,
                events=local,
                meter=meter,
                progress=progress,
            ).to_arrays()
        events = LearningEvents.zeros(len(y))
        events.add_at(kept, local)
    elif model.recipe_name == "pcmu-sisa":
        from models.pcmu_sisa import ShardedPcmuRecipe, train_sharded_pcmu

        # The stored shard map, not a fresh one: the subject ids are not in the arrays.
        events = LearningEvents.zeros(len(y))
        arrays = train_sharded_pcmu(
            x,
            y,
            classes=model.classes,
            recipe=ShardedPcmuRecipe.from_dict(model.recipe),
            seed=seed,
            shard_of_row=model.arrays["shard_of_row"],
            exclude_rows=np.flatnonzero(~keep),
            events=events,
            meter=meter,
            progress=progress,
        ).to_arrays()
    elif model.recipe_name == "sisa":
        from models.sisa import SisaRecipe, train_sisa

        events = LearningEvents.zeros(len(y))
        sisa = train_sisa(
            x,
            y,
            classes=model.classes,
            recipe=SisaRecipe(**model.recipe),
            seed=seed,
            exclude_rows=np.flatnonzero(~keep),
            events=events,
            meter=meter,
            progress=progress,
        )
        arrays = sisa_arrays(sisa)
    else:
        events = LearningEvents.zeros(len(y))
        w = retrain_pnsgd(
            x,
            y,
            classes=model.classes,
            recipe=PnsgdRecipe(**model.recipe),
            seed=seed,
            keep_rows=np.flatnonzero(keep),
            events=events,
            meter=meter,
            progress=progress,
        )
        arrays = {"weights": w.numpy()}
    lineage = RECIPE_LINEAGE.get(model.recipe_name, model.recipe_name)
    new_ledger = ModelLedger(
        lineage=lineage,
        seconds_per_grad_eval=ledger.seconds_per_grad_eval,
        seconds_per_grad_eval_by_path=dict(ledger.seconds_per_grad_eval_by_path),
        retrain_grad_evals=meter.grad_evals,
    )
    return Unlearned(
        model=replace(model, lineage=lineage, arrays=arrays, removed=~keep, seed=seed),
        method="retrain",
        guarantee="exact",
        ledger=new_ledger,
        cost=meter,
        parameters={**model.recipe, "seed": seed},
        budget_left={"z_carried": 0.0},
        events=events,
    )


# Lineage a retrain restores, where it is not the recipe's own name.
RECIPE_LINEAGE = {"mlp": "plain", "pcmu-sisa": "pcmu"}

# Which training recipe each path's guarantee assumes (empty: any). PNSGD's certificate needs the
# strongly convex logistic loss trained by the same noisy chain (algorithms.md sec. 1).
PATH_RECIPES: dict[str, tuple[str, ...]] = {
    "pnsgd": ("pnsgd",),
    "pcmu": ("pcmu",),
    "sisa": ("sisa",),
    "pcmu-sisa": ("pcmu-sisa",),
    "rum": ("mlp",),
    "retrain": (),
}


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
    proxies: np.ndarray | None = None,
) -> Unlearned:
    """Remove `forget_rows` (positions in the training split) by the plan's chosen path.

    `proxies`: the confidence proxy per training row, recorded at training (RUM only)."""
    if np.any(model.removed[forget_rows]):
        raise ValueError("forget_rows contains rows this model already forgot")
    keep = ~model.removed.copy()
    keep[forget_rows] = False
    path = plan.chosen.path
    if path not in PATH_RECIPES:
        raise ValueError(f"unknown path {path!r}; known: {', '.join(PATH_RECIPES)}")
    if PATH_RECIPES[path] and model.recipe_name not in PATH_RECIPES[path]:
        raise ValueError(
            f"path {path!r} needs a model trained by recipe {' or '.join(PATH_RECIPES[path])} "
            f"(its guarantee assumes that training), got recipe {model.recipe_name!r}"
        )
    if path == "pnsgd":
        return _pnsgd(model, x, y, keep, plan, ledger, seed, progress)
    if path == "retrain":
        return _retrain(model, x, y, keep, ledger, seed, progress)
    if path == "sisa":
        return _sisa(model, x, y, forget_rows, ledger, progress)
    if path == "pcmu":
        return _pcmu(model, x, y, forget_rows, ledger, progress)
    if path == "pcmu-sisa":
        return _sharded_pcmu(model, x, y, forget_rows, ledger, progress)
    if path == "rum":
        return _rum(model, x, y, forget_rows, ledger, seed, proxies, progress)
    raise ValueError(f"unknown path {path!r}")
