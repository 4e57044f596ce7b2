"""Training recipes that leave a model unlearning-ready, each recording learning events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.cost import CostMeter
from models.datasets import Dataset
from models.forgettable import ForgettableModel
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
    raise ValueError(f"unknown recipe {recipe_name!r}; known: pnsgd")
