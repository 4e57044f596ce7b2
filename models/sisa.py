"""SISA training and exact unlearning for L2-regularised logistic regression (algorithms.md sec. 4).

Bourtoule et al., "Machine Unlearning", arXiv 1912.03817 (IEEE S&P 2021), sec. IV: the training
rows are cut into S disjoint shards (Sharded), one model per shard sees only its shard (Isolated),
each shard is cut into R slices trained incrementally with a checkpoint after each (Sliced), and
predictions combine the shard models (Aggregated). Removing a row retrains only its shard, starting
from the checkpoint taken before the slice that holds it.

Each shard model is trained by noiseless mini-batch SGD on mean logistic loss + (m/2)||w||^2 with
the closed-form gradients of `models.logreg`, from zero weights. Every random choice (the
shard/slice assignment over row positions, the batch order of each (shard, slice)) is drawn from
a stream derived from `seed` alone, so `sisa_unlearn` returns, bit for bit, the model
`train_sisa` would build from scratch on the retained rows with the same assignment.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from models.cost import CostMeter
from models.learning_events import LearningEvents
from models.logreg import DTYPE, clipped_mean_gradient, output_width, probabilities, smoothness
from models.progress import Progress, counter
from models.weights import state_sha256

# Stream tags keep the assignment RNG and the per-(shard, slice) batch-order RNGs independent.
_ASSIGNMENT_STREAM = 0
_BATCH_ORDER_STREAM = 1


@dataclass(frozen=True)
class SisaRecipe:
    """Everything that defines a SISA run; stored in certificates so it can be replayed.

    Bourtoule et al. (arXiv 1912.03817, sec. IV) train slice r for e' epochs on slices 0..r; with
    e' = 2e/(R+1) the total work equals e epochs of a model trained on the whole shard."""

    shards: int = 5
    slices: int = 4
    epochs_per_slice: int = 8
    batch_size: int = 16
    lr: float | None = None  # None: 1/L, the largest step with guaranteed descent
    m: float = 0.001  # L2 strength of (m/2)||w||^2
    clip: float | None = (
        None  # None: no per-example clipping (exactness needs no sensitivity bound)
    )

    def step_size(self, classes: int) -> float:
        return self.lr if self.lr is not None else 1.0 / smoothness(classes=classes, m=self.m)

    def validate(self, *, n: int, classes: int) -> None:
        """Raise ValueError naming the first invalid parameter."""
        if self.shards < 1:
            raise ValueError(f"shards must be >= 1, got {self.shards}")
        if self.slices < 1:
            raise ValueError(f"slices must be >= 1, got {self.slices}")
        if self.shards * self.slices > n:
            raise ValueError(
                f"shards * slices must be <= n={n} so every slice holds a row, "
                f"got {self.shards} * {self.slices}"
            )
        if self.epochs_per_slice < 1:
            raise ValueError(f"epochs_per_slice must be >= 1, got {self.epochs_per_slice}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.m) and self.m >= 0):
            raise ValueError(f"m must be a finite number >= 0, got {self.m}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be > 0 or None, got {self.clip}")
        output_width(classes)  # raises ValueError naming `classes`

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass
class SisaModel:
    """Shard models, their per-slice checkpoints and the row -> (shard, slice) assignment."""

    shard_of_row: np.ndarray  # (n,) int64 shard id per training row position (-1 once removed)
    slice_of_row: np.ndarray  # (n,) int64 slice id (kept after removal, for the record)
    shard_weights: torch.Tensor  # (S, d, k) float64: the shard models used for prediction
    slice_checkpoints: torch.Tensor  # (S, R, d, k): weights of each shard at the END of each slice
    removed: np.ndarray  # (n,) bool

    @property
    def n(self) -> int:
        return int(self.shard_of_row.shape[0])

    @property
    def classes(self) -> int:
        k = int(self.shard_weights.shape[-1])
        return 2 if k == 1 else k  # one sigmoid logit means binary (models.logreg.output_width)

    def active_shards(self) -> np.ndarray:
        """Shards that still hold at least one row; an emptied shard has nothing to say."""
        return np.unique(self.shard_of_row[self.shard_of_row >= 0])

    def weights_sha256(self) -> str:
        """Fingerprint of all checkpoints (the shard weights are the last slice's)."""
        return state_sha256({"slice_checkpoints": self.slice_checkpoints.numpy()})


@dataclass(frozen=True)
class SisaUnlearning:
    """Result of `sisa_unlearn`: the new model, what was retrained, its cost and certificate."""

    model: SisaModel
    affected_shards: tuple[int, ...]
    restarted_from_slice: dict[int, int]  # shard -> first slice retrained
    grad_evals: float
    seconds: float
    certificate: dict[str, object] = field(default_factory=dict)


def stream_seed(seed: int, *tags: int) -> int:
    """A 63-bit seed for one named RNG stream, derived from the run seed (numpy SeedSequence)."""
    return int(np.random.SeedSequence([seed, *tags]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def assign_shards_and_slices(
    n: int, *, shards: int, slices: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly random, balanced assignment of row positions to shards, then slices.

    Bourtoule et al., arXiv 1912.03817, sec. IV (uniform sharding, no prior on requests): one
    seeded permutation of positions is cut into S near-equal shards, each into R near-equal
    slices."""
    _check_seed(seed)
    order = np.random.default_rng(stream_seed(seed, _ASSIGNMENT_STREAM)).permutation(n)
    shard_of_row = np.empty(n, dtype=np.int64)
    slice_of_row = np.empty(n, dtype=np.int64)
    for s, shard_rows in enumerate(np.array_split(order, shards)):
        for r, slice_rows in enumerate(np.array_split(shard_rows, slices)):
            shard_of_row[slice_rows] = s
            slice_of_row[slice_rows] = r
    return shard_of_row, slice_of_row


def sisa_retrain_grad_evals(recipe: SisaRecipe, *, n: int) -> float:
    """Grad-evals of training every shard of a SISA model on n rows from scratch.

    Slice r of a shard costs epochs_per_slice * |slices 0..r| (arXiv 1912.03817, sec. IV); summed
    over the balanced split `assign_shards_and_slices` makes, it equals `train_sisa`'s meter."""
    total = 0
    for shard_size in (len(part) for part in np.array_split(np.arange(n), recipe.shards)):
        slice_sizes = [len(part) for part in np.array_split(np.arange(shard_size), recipe.slices)]
        total += recipe.epochs_per_slice * int(np.cumsum(slice_sizes).sum())
    return float(total)


def _train_shard(
    w: torch.Tensor,
    xt: torch.Tensor,
    yt: torch.Tensor,
    *,
    shard_rows_by_slice: list[np.ndarray],
    shard: int,
    start_slice: int,
    classes: int,
    recipe: SisaRecipe,
    seed: int,
    events: LearningEvents | None,
    meter: CostMeter,
    tick: Callable[[], None],
) -> list[torch.Tensor]:
    """Slices start_slice..R-1 of one shard from weights `w`; returns the checkpoint of each
    and calls `tick()` after each one (progress only: it never touches the RNG or the weights).

    Slice r runs epochs_per_slice epochs of mini-batch SGD on the retained rows of slices 0..r
    (arXiv 1912.03817, sec. IV), with a batch order drawn from the (seed, shard, r) stream only,
    so a restart from checkpoint r-1 replays exactly what training from scratch would do."""
    eta = recipe.step_size(classes)
    clip = math.inf if recipe.clip is None else recipe.clip
    checkpoints = []
    for r in range(start_slice, recipe.slices):
        # Sorted positions: the rows seen depend on the retained set only, not on removal history.
        rows = torch.as_tensor(np.sort(np.concatenate(shard_rows_by_slice[: r + 1])))
        gen = torch.Generator().manual_seed(stream_seed(seed, _BATCH_ORDER_STREAM, shard, r))
        # A shard emptied up to slice r keeps its weights: there is nothing left to learn from.
        for _ in range(recipe.epochs_per_slice if len(rows) else 0):
            for batch in torch.split(
                rows[torch.randperm(len(rows), generator=gen)], recipe.batch_size
            ):
                xb, yb = xt[batch], yt[batch]
                probs = None
                if events is not None:  # the gradient reuses them: recording costs no forward
                    probs = probabilities(w, xb)
                    events.record(batch, probs, yb)
                grad = clipped_mean_gradient(w, xb, yb, clip=clip, probs=probs) + recipe.m * w
                w = w - eta * grad
            meter.add_gradients(len(rows))
        checkpoints.append(w.clone())
        tick()
    return checkpoints


def _as_tensors(
    x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    xt = torch.as_tensor(np.asarray(x), dtype=DTYPE)
    return xt, torch.as_tensor(np.asarray(y), dtype=torch.int64)


def _positions(rows: np.ndarray | None, n: int, name: str) -> np.ndarray:
    """Unique sorted int positions in [0, n) from an index array (None: none)."""
    if rows is None:
        return np.empty(0, dtype=np.int64)
    arr = np.asarray(rows).ravel()
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer row positions, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"{name} must be positions in [0, {n}), got [{arr.min()}, {arr.max()}]")
    return np.unique(arr.astype(np.int64))


def _rows_by_slice(model: SisaModel, shard: int, slices: int) -> list[np.ndarray]:
    in_shard = model.shard_of_row == shard  # removed rows carry shard -1, so they drop out here
    return [np.flatnonzero(in_shard & (model.slice_of_row == r)) for r in range(slices)]


def train_sisa(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    classes: int,
    recipe: SisaRecipe,
    seed: int,
    exclude_rows: np.ndarray | None = None,
    events: LearningEvents | None = None,
    meter: CostMeter | None = None,
    progress: Progress | None = None,
) -> SisaModel:
    """Train S isolated shard models, R slices each, checkpointing after every slice.

    Bourtoule et al., arXiv 1912.03817, sec. IV. Row positions in `exclude_rows` keep their
    assignment but are never trained on: this is "train from scratch on D minus F with the same
    shard/slice assignment", the reference `sisa_unlearn` must reproduce bit for bit.
    `progress(done, total)` is called per (shard, slice), total S * R."""
    xt, yt = _as_tensors(x, y)
    n = len(yt)
    recipe.validate(n=n, classes=classes)
    _check_seed(seed)
    excluded = _positions(exclude_rows, n, "exclude_rows")
    if events is not None and events.counts.shape[0] != n:
        raise ValueError(f"events must cover all {n} rows of x, got {events.counts.shape[0]}")
    shard_of_row, slice_of_row = assign_shards_and_slices(
        n, shards=recipe.shards, slices=recipe.slices, seed=seed
    )
    removed = np.zeros(n, dtype=bool)
    removed[excluded] = True
    shard_of_row[removed] = -1
    model = SisaModel(
        shard_of_row=shard_of_row,
        slice_of_row=slice_of_row,
        shard_weights=torch.empty(0),
        slice_checkpoints=torch.empty(0),
        removed=removed,
    )
    w0 = torch.zeros((xt.shape[1], output_width(classes)), dtype=DTYPE)  # data-independent start
    meter = meter or CostMeter()
    tick = counter(progress, recipe.shards * recipe.slices)
    with meter.timing():
        checkpoints = [
            torch.stack(
                _train_shard(
                    w0,
                    xt,
                    yt,
                    shard_rows_by_slice=_rows_by_slice(model, s, recipe.slices),
                    shard=s,
                    start_slice=0,
                    classes=classes,
                    recipe=recipe,
                    seed=seed,
                    events=events,
                    meter=meter,
                    tick=tick,
                )
            )
            for s in range(recipe.shards)
        ]
    model.slice_checkpoints = torch.stack(checkpoints)
    model.shard_weights = model.slice_checkpoints[:, -1].clone()
    return model


def aggregate_probabilities(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Mean over shard models of their class probabilities (`sisa_predict_proba`'s rule)."""
    if not weights:
        raise ValueError("model has no rows left in any shard: nothing to predict with")
    return torch.stack([probabilities(w, x) for w in weights]).mean(dim=0)


def sisa_predict_proba(model: SisaModel, x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Mean of the active shard models' class probabilities, shape (n, classes).

    Bourtoule et al. (arXiv 1912.03817, sec. IV) aggregate by a majority vote over shard labels;
    we average probability vectors instead: it needs no tie-breaking rule, keeps calibrated
    probabilities for downstream audits (e.g. membership-inference checks), and its argmax is the
    vote weighted by confidence. Shards emptied by removals are left out of the mean."""
    xt = torch.as_tensor(np.asarray(x), dtype=DTYPE)
    return aggregate_probabilities([model.shard_weights[s] for s in model.active_shards()], xt)


def sisa_accuracy(
    model: SisaModel, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor
) -> float:
    """Fraction of rows whose aggregated most probable class is the label."""
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    if len(yt) == 0:
        return float("nan")
    return float((sisa_predict_proba(model, x).argmax(dim=1) == yt).to(DTYPE).mean())


def sisa_unlearn(
    model: SisaModel,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    forget_rows: np.ndarray,
    *,
    recipe: SisaRecipe,
    seed: int,
    meter: CostMeter | None = None,
    progress: Progress | None = None,
) -> SisaUnlearning:
    """Exactly remove `forget_rows` (positions in the original x): retrain only affected shards.

    Bourtoule et al., arXiv 1912.03817, sec. IV: each affected shard restarts from the checkpoint
    at the end of the slice before its earliest affected slice (from zero weights if that is slice
    0) and retrains the later slices on the remaining rows with the same per-(shard, slice) seeds.
    Rows already removed are no-ops. `model` is not modified; x and y are the full original
    arrays, so positions keep their meaning. `progress(done, total)` is called per retrained
    (shard, slice)."""
    xt, yt = _as_tensors(x, y)
    n = model.n
    if len(yt) != n:
        raise ValueError(f"x and y must be the model's {n} original rows, got {len(yt)}")
    classes = model.classes
    recipe.validate(n=n, classes=classes)
    if tuple(model.slice_checkpoints.shape[:2]) != (recipe.shards, recipe.slices):
        raise ValueError(
            f"recipe has shards={recipe.shards}, slices={recipe.slices} but the model was trained "
            f"with {tuple(model.slice_checkpoints.shape[:2])}"
        )
    _check_seed(seed)
    # The seed must reproduce the assignment, or the retrained shards would not be the reference.
    expected_shards, expected_slices = assign_shards_and_slices(
        n, shards=recipe.shards, slices=recipe.slices, seed=seed
    )
    kept = ~model.removed
    if not (
        np.array_equal(expected_slices, model.slice_of_row)
        and np.array_equal(expected_shards[kept], model.shard_of_row[kept])
    ):
        raise ValueError(f"seed={seed} does not reproduce this model's shard/slice assignment")
    forget = _positions(forget_rows, n, "forget_rows")
    newly = forget[~model.removed[forget]]

    shard_of_row = model.shard_of_row.copy()
    affected = {
        int(s): int(model.slice_of_row[newly][model.shard_of_row[newly] == s].min())
        for s in np.unique(model.shard_of_row[newly])
    }
    shard_of_row[newly] = -1
    removed = model.removed.copy()
    removed[newly] = True
    new = SisaModel(
        shard_of_row=shard_of_row,
        slice_of_row=model.slice_of_row.copy(),
        shard_weights=model.shard_weights.clone(),
        slice_checkpoints=model.slice_checkpoints.clone(),
        removed=removed,
    )
    run = CostMeter()
    tick = counter(progress, sum(recipe.slices - r0 for r0 in affected.values()))
    with run.timing():
        for s, r0 in sorted(affected.items()):
            start = (
                new.slice_checkpoints[s, r0 - 1].clone()
                if r0 > 0
                else torch.zeros(new.slice_checkpoints.shape[2:], dtype=DTYPE)
            )
            redone = _train_shard(
                start,
                xt,
                yt,
                shard_rows_by_slice=_rows_by_slice(new, s, recipe.slices),
                shard=s,
                start_slice=r0,
                classes=classes,
                recipe=recipe,
                seed=seed,
                events=None,
                meter=run,
                tick=tick,
            )
            new.slice_checkpoints[s, r0:] = torch.stack(redone)
            new.shard_weights[s] = redone[-1]
    if meter is not None:
        meter.grad_evals += run.grad_evals
        meter.seconds += run.seconds
    certificate = {
        "method": "sisa",
        "guarantee": "exact",
        "epsilon": None,
        "delta": None,
        "paper": "Bourtoule et al., arXiv 1912.03817, sec. IV",
        "parameters": {**recipe.as_dict(), "seed": seed},
        "rows_removed": int(newly.size),
        "affected_shards": sorted(affected),
        "restarted_from_slice": {str(s): r for s, r in sorted(affected.items())},
        "grad_evals": run.grad_evals,
        "retrain_grad_evals": sisa_retrain_grad_evals(recipe, n=int((~removed).sum())),
        "weights_sha256": new.weights_sha256(),
    }
    return SisaUnlearning(
        model=new,
        affected_shards=tuple(sorted(affected)),
        restarted_from_slice=dict(sorted(affected.items())),
        grad_evals=run.grad_evals,
        seconds=run.seconds,
        certificate=certificate,
    )
