"""Training recipes that leave a model unlearning-ready, each recording learning events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.cost import CostMeter
from models.datasets import Dataset
from models.forgettable import ForgettableModel, mlp_arrays, sisa_arrays
from models.learning_events import LearningEvents
from models.pnsgd import PnsgdRecipe, initial_weights, run_pnsgd

Progress = Callable[[int, int], None]


@dataclass
class TrainingRun:
    model: ForgettableModel
    events: LearningEvents
    cost: CostMeter


def train_pnsgd_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe: PnsgdRecipe,
    seed: int,
    progress: Progress | None = None,
) -> TrainingRun:
    """PNSGD from w0 ~ N(0, 2 sigma^2/m) for `recipe.epochs` epochs (algorithms.md sec. 1)."""
    events = LearningEvents.zeros(len(y))
    meter = CostMeter()
    w0 = initial_weights(dim=x.shape[1], classes=classes, recipe=recipe, seed=seed)
    w = run_pnsgd(
        w0,
        x,
        y,
        classes=classes,
        recipe=recipe,
        epochs=recipe.epochs,
        seed=seed,
        events=events,
        meter=meter,
        progress=progress,
    )
    model = ForgettableModel(
        recipe_name="pnsgd",
        lineage="pnsgd",
        classes=classes,
        recipe=recipe.as_dict(),
        arrays={"weights": w.numpy()},
        removed=np.zeros(len(y), dtype=bool),
        seed=seed,
    )
    return TrainingRun(model=model, events=events, cost=meter)


def train_sisa_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe_overrides: dict | None,
    seed: int,
) -> TrainingRun:
    """SISA shards x slices with a checkpoint per slice (Bourtoule et al., arXiv 1912.03817)."""
    from models.sisa import SisaRecipe, train_sisa

    recipe = SisaRecipe(**(recipe_overrides or {}))
    events = LearningEvents.zeros(len(y))
    meter = CostMeter()
    sisa = train_sisa(x, y, classes=classes, recipe=recipe, seed=seed, events=events, meter=meter)
    model = ForgettableModel(
        recipe_name="sisa",
        lineage="sisa",
        classes=classes,
        recipe=recipe.as_dict(),
        arrays=sisa_arrays(sisa),
        removed=sisa.removed.copy(),
        seed=seed,
    )
    return TrainingRun(model=model, events=events, cost=meter)


def train_pcmu_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe_overrides: dict | None,
    seed: int,
) -> TrainingRun:
    """PCMU: full-batch quantized smoothed-gradient steps, trajectory stored (algorithms.md sec. 2)."""
    from models.pcmu import PcmuRecipe, train_pcmu

    recipe = PcmuRecipe(**(recipe_overrides or {}))
    events = LearningEvents.zeros(len(y))
    meter = CostMeter()
    pcmu = train_pcmu(x, y, classes=classes, recipe=recipe, seed=seed, events=events, meter=meter)
    model = ForgettableModel(
        recipe_name="pcmu",
        lineage="pcmu",
        classes=classes,
        recipe=recipe.as_dict(),
        arrays=pcmu.to_arrays(),
        removed=np.zeros(len(y), dtype=bool),
        seed=seed,
    )
    return TrainingRun(model=model, events=events, cost=meter)


def train_mlp_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe_overrides: dict | None,
    seed: int,
) -> TrainingRun:
    """A plain MLP (no certified lineage); its learning events feed RUM's memorisation split."""
    from models.mlp import MlpRecipe, train_mlp

    recipe = MlpRecipe(**(recipe_overrides or {}))
    events = LearningEvents.zeros(len(y))
    meter = CostMeter()
    net = train_mlp(x, y, classes=classes, recipe=recipe, seed=seed, events=events, meter=meter)
    model = ForgettableModel(
        recipe_name="mlp",
        lineage="plain",
        classes=classes,
        recipe={**recipe.as_dict(), "layers": 2 if recipe.hidden > 0 else 1},
        arrays=mlp_arrays(net),
        removed=np.zeros(len(y), dtype=bool),
        seed=seed,
    )
    return TrainingRun(model=model, events=events, cost=meter)


def train_model(
    dataset: Dataset,
    *,
    recipe_name: str,
    seed: int,
    progress: Progress | None = None,
    overrides: dict | None = None,
) -> TrainingRun:
    """Train `recipe_name` on the dataset's training split."""
    rows = dataset.train_rows()
    x, y = dataset.features[rows], dataset.labels[rows]
    if recipe_name == "pnsgd":
        recipe = PnsgdRecipe(**(overrides or {}))
        return train_pnsgd_model(
            x, y, classes=dataset.classes, recipe=recipe, seed=seed, progress=progress
        )
    if recipe_name == "sisa":
        return train_sisa_model(
            x, y, classes=dataset.classes, recipe_overrides=overrides, seed=seed
        )
    if recipe_name == "pcmu":
        return train_pcmu_model(
            x, y, classes=dataset.classes, recipe_overrides=overrides, seed=seed
        )
    if recipe_name == "mlp":
        return train_mlp_model(x, y, classes=dataset.classes, recipe_overrides=overrides, seed=seed)
    raise ValueError(f"unknown recipe {recipe_name!r}; known: pnsgd, sisa, pcmu, mlp")
