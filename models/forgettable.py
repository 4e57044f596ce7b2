"""A trained model together with the state its unlearning paths need, independent of storage.

`arrays` is everything persisted (served weights plus unlearning state such as PCMU checkpoints or
SISA slices); `removed` marks training rows already forgotten, positions in the dataset's train
split. The lineage says which certified paths remain valid (algorithms.md sec. 5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from models.logreg import DTYPE, probabilities

Lineage = Literal["pnsgd", "pcmu", "sisa", "plain", "rum-modified"]
RECIPES = ("pnsgd", "pcmu", "sisa")


@dataclass
class ForgettableModel:
    recipe_name: str
    lineage: Lineage
    classes: int
    recipe: dict[str, Any]
    arrays: dict[str, np.ndarray]
    removed: np.ndarray  # bool over the dataset's training rows
    seed: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_retained(self) -> int:
        return int((~self.removed).sum())

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, classes)."""
        xt = torch.as_tensor(x, dtype=DTYPE)
        if self.recipe_name == "sisa":
            from models.sisa import sisa_predict_proba

            return sisa_predict_proba(self.sisa_state(), xt).numpy()
        return probabilities(torch.as_tensor(self.arrays["weights"]), xt).numpy()

    def sisa_state(self) -> Any:
        from models.sisa import SisaModel

        return SisaModel.from_arrays(self.arrays)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """What gets stored and hashed: model arrays plus the removal mask."""
        return {**self.arrays, "removed": self.removed}
