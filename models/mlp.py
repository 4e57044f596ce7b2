"""Small one-hidden-layer ReLU MLPs in plain torch, trained K at a time as one stacked ensemble.

The subset-model memorisation estimator (Feldman & Zhang 2020; algorithms.md sec. 3) needs K
independently trained models. Stacking their weights as (K, ...) tensors and training them with
batched matmuls gives K *independent* runs in one Python loop: the summed loss separates by
member, and Adam/SGD updates are element-wise, so member k follows exactly the trajectory it would
follow alone. A single model is the K = 1 case. `hidden = 0` gives multinomial logistic regression
trained by the same recipe, so both architectures share one estimator.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from models.cost import CostMeter
from models.learning_events import LearningEvents

DTYPE = torch.float32


@dataclass(frozen=True)
class MlpRecipe:
    """Architecture and optimiser of one training run (stored with every model it produces)."""

    hidden: int = 128  # 0: no hidden layer (multinomial logistic regression)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"

    def validate(self) -> None:
        """Raise ValueError naming the first invalid parameter."""
        if self.hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {self.hidden}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


class MlpEnsemble(torch.nn.Module):
    """K independent MLPs `dim -> hidden -> classes` (or `dim -> classes` if hidden = 0)."""

    def __init__(self, *, dim: int, classes: int, hidden: int, members: int = 1, seed: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if classes < 2:
            raise ValueError(f"classes must be >= 2, got {classes}")
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        gen = torch.Generator().manual_seed(seed)
        widths = [dim, hidden, classes] if hidden > 0 else [dim, classes]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(widths):
            # torch.nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), per member
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand((members, fan_in, fan_out), generator=gen, dtype=DTYPE) * 2 - 1) * bound
            b = (torch.rand((members, 1, fan_out), generator=gen, dtype=DTYPE) * 2 - 1) * bound
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(b))

    @property
    def members(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def classes(self) -> int:
        return int(self.weights[-1].shape[2])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, n, classes); `x` is (n, dim), shared by all members, or (K, n, dim)."""
        h = x.to(DTYPE)
        if h.dim() == 2:
            h = h.unsqueeze(0).expand(self.members, -1, -1)
        last = len(self.weights) - 1
        for j, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if j < last:
                h = torch.relu(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, classes) of a single model (K = 1)."""
        if self.members != 1:
            raise ValueError(f"forward() needs a single model; this ensemble has {self.members}")
        return self.logits(x)[0]

    def member(self, k: int) -> MlpEnsemble:
        """A detached single-model copy of member k."""
        if not 0 <= k < self.members:
            raise ValueError(f"k must be in [0, {self.members}), got {k}")
        single = copy.deepcopy(self)
        with torch.no_grad():
            for p_single, p_all in zip(single.parameters(), self.parameters(), strict=True):
                p_single.data = p_all.data[k : k + 1].clone()
        return single


def _optimizer(model: MlpEnsemble, recipe: MlpRecipe) -> torch.optim.Optimizer:
    # weight decay is element-wise in both optimisers, so members stay independent
    if recipe.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True
        )
    return torch.optim.SGD(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True
    )


def fit_ensemble(
    model: MlpEnsemble,
    x: np.ndarray,
    y: np.ndarray,
    *,
    member_rows: np.ndarray,
    recipe: MlpRecipe,
    seed: int,
    events: LearningEvents | None = None,
    meter: CostMeter | None = None,
    on_epoch_end: Callable[[int, MlpEnsemble], None] | None = None,
) -> MlpEnsemble:
    """Train every member k in place on rows `member_rows[k]` of (x, y) for `recipe.epochs` epochs.

    Each member reshuffles its own rows every epoch; all members have the same number of rows so
    batches stack. `events` (single model only) receives the mini-batch probabilities the forward
    pass already computed, so learning-event proxies cost nothing extra (arXiv 2406.01257 sec. 3).
    """
    recipe.validate()
    member_rows = np.asarray(member_rows, dtype=np.int64)
    if member_rows.ndim != 2 or member_rows.shape[0] != model.members:
        raise ValueError(
            f"member_rows must have shape (members={model.members}, m), got {member_rows.shape}"
        )
    if events is not None and model.members != 1:
        raise ValueError("events can be recorded for a single model only (members = 1)")
    xt = torch.as_tensor(x, dtype=DTYPE)
    yt = torch.as_tensor(y, dtype=torch.int64)
    rows_t = torch.as_tensor(member_rows)
    k, m = rows_t.shape
    gen = torch.Generator().manual_seed(seed)
    opt = _optimizer(model, recipe)
    meter = meter if meter is not None else CostMeter()
    with meter.timing():
        for epoch in range(recipe.epochs):
            order = torch.argsort(torch.rand((k, m), generator=gen), dim=1)
            epoch_rows = torch.gather(rows_t, 1, order)
            for idx in torch.split(epoch_rows, recipe.batch_size, dim=1):
                logits = model.logits(xt[idx])  # (K, b, C)
                yb = yt[idx]
                if events is not None:
                    events.record_logits(idx, logits, yb)  # members = 1: shapes (1, b, ...)
                # sum over members of each member's mean loss: gradients separate by member
                loss = (
                    torch.nn.functional.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum"
                    )
                    / idx.shape[1]
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                meter.add_gradients(idx.numel())
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model)
    return model


def train_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe: MlpRecipe,
    seed: int,
    events: LearningEvents | None = None,
    meter: CostMeter | None = None,
    on_epoch_end: Callable[[int, MlpEnsemble], None] | None = None,
) -> MlpEnsemble:
    """A single model trained from a seeded init on all rows of (x, y); cost = epochs * n."""
    recipe.validate()
    model = MlpEnsemble(dim=x.shape[1], classes=classes, hidden=recipe.hidden, seed=seed)
    rows = np.arange(len(y))[None, :]
    return fit_ensemble(
        model,
        x,
        y,
        member_rows=rows,
        recipe=recipe,
        seed=seed + 1,
        events=events,
        meter=meter,
        on_epoch_end=on_epoch_end,
    )


def fine_tune(
    model: MlpEnsemble,
    x: np.ndarray,
    y: np.ndarray,
    *,
    recipe: MlpRecipe,
    seed: int,
    meter: CostMeter | None = None,
) -> MlpEnsemble:
    """A copy of `model` trained further on all rows of (x, y) with a fresh optimiser.

    Only the optimiser fields of `recipe` apply (epochs, batch_size, lr, ...): the architecture
    is the model's own, so `recipe.hidden` is ignored."""
    tuned = copy.deepcopy(model)
    rows = np.tile(np.arange(len(y)), (model.members, 1))
    return fit_ensemble(tuned, x, y, member_rows=rows, recipe=recipe, seed=seed, meter=meter)


@torch.no_grad()
def predict_proba(
    model: MlpEnsemble, x: np.ndarray, *, meter: CostMeter | None = None
) -> np.ndarray:
    """Class probabilities of a single model, float64 array (n, classes); forward-only cost."""
    probs = torch.softmax(model(torch.as_tensor(x, dtype=DTYPE)).to(torch.float64), dim=1)
    if meter is not None:
        meter.add_forwards(len(x))
    return probs.numpy()


def per_example_loss(
    model: MlpEnsemble, x: np.ndarray, y: np.ndarray, *, meter: CostMeter | None = None
) -> np.ndarray:
    """Cross-entropy per example of a single model, shape (n,)."""
    probs = predict_proba(model, x, meter=meter)
    return -np.log(np.clip(probs[np.arange(len(y)), y], 1e-300, None))


def accuracy(model: MlpEnsemble, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose most probable class is the label (NaN for no rows)."""
    if len(y) == 0:
        return float("nan")
    return float(np.mean(predict_proba(model, x).argmax(axis=1) == y))
