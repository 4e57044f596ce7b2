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
FORGOTTEN_MASK = "forgotten_mask"  # stored beside the arrays; PCMU has its own "removed" count


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
        if self.recipe_name == "mlp":
            from models.mlp import predict_proba

            return predict_proba(self.mlp_state(), x)
        if self.recipe_name == "pcmu-sisa":
            return self.sharded_pcmu_state().predict_proba(xt).numpy()
        return probabilities(torch.as_tensor(self.arrays["weights"]), xt).numpy()

    def sisa_state(self) -> Any:
        """The SISA shards as `models.sisa.SisaModel` (recipe `sisa` only)."""
        from models.sisa import SisaModel

        return SisaModel(
            shard_of_row=self.arrays["shard_of_row"].astype(np.int64),
            slice_of_row=self.arrays["slice_of_row"].astype(np.int64),
            shard_weights=torch.as_tensor(self.arrays["shard_weights"]),
            slice_checkpoints=torch.as_tensor(self.arrays["slice_checkpoints"]),
            removed=self.removed.copy(),
        )

    def mlp_state(self) -> Any:
        """The network as a single-member `models.mlp.MlpEnsemble` (recipe `mlp` only)."""
        from models.mlp import MlpEnsemble

        net = MlpEnsemble(
            dim=self.arrays["weights.0"].shape[1],
            classes=self.arrays[f"weights.{self.recipe['layers'] - 1}"].shape[2],
            hidden=self.recipe["hidden"],
            members=1,
            seed=0,
        )
        net.load_state_dict({k: torch.as_tensor(v) for k, v in self.arrays.items()})
        return net

    def pcmu_state(self) -> Any:
        """The PCMU trajectory as `models.pcmu.PcmuModel` (recipe `pcmu` only)."""
        from models.pcmu import PcmuModel, PcmuRecipe

        return PcmuModel.from_arrays(self.arrays, recipe=PcmuRecipe.from_dict(self.recipe))

    def sharded_pcmu_state(self) -> Any:
        """The shards as `models.pcmu_sisa.ShardedPcmuModel` (recipe `pcmu-sisa` only)."""
        from models.pcmu_sisa import ShardedPcmuModel, ShardedPcmuRecipe

        return ShardedPcmuModel.from_arrays(
            self.arrays,
            removed=self.removed,
            recipe=ShardedPcmuRecipe.from_dict(self.recipe),
            seed=self.seed,
            classes=self.classes,
        )

    def retrain_grad_evals(self, n: int) -> float:
        """Grad-evals of retraining this recipe from scratch on n rows (the cost yardstick)."""
        if self.recipe_name == "pcmu":
            from models.pcmu import pcmu_retrain_grad_evals

            return float(pcmu_retrain_grad_evals(self.pcmu_state(), n=n))
        if self.recipe_name == "pcmu-sisa":
            return self.sharded_pcmu_state().retrain_grad_evals(n)
        if self.recipe_name == "sisa":
            from models.sisa import SisaRecipe, sisa_retrain_grad_evals

            return sisa_retrain_grad_evals(SisaRecipe(**self.recipe), n=n)
        return float(self.recipe["epochs"] * n)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """What gets stored and hashed: model arrays plus the removal mask."""
        return {**self.arrays, FORGOTTEN_MASK: self.removed}


def sisa_arrays(model: Any) -> dict[str, np.ndarray]:
    """A `models.sisa.SisaModel` as the arrays a ForgettableModel stores (its `removed` aside)."""
    return {
        "shard_of_row": model.shard_of_row,
        "slice_of_row": model.slice_of_row,
        "shard_weights": model.shard_weights.numpy(),
        "slice_checkpoints": model.slice_checkpoints.numpy(),
    }


def mlp_arrays(net: Any) -> dict[str, np.ndarray]:
    """An `MlpEnsemble`'s parameters as named arrays (keys as in its state_dict)."""
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
