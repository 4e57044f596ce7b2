"""Full retrain from scratch on the retained rows, replayable bit-for-bit on CPU.

The exact baseline of algorithms.md sec. 4 that every other path is measured against: always
valid, cost `epochs * |retain set|` grad-evals. The PNSGD chain draws all its randomness (init,
batch permutation, per-step noise) from generators seeded by `seed`, so the same (data, keep_rows,
recipe, seed) gives the same weight bytes and an auditor can replay a retrain and compare
the `models.weights.state_sha256` digests. That holds for the same torch version, CPU instruction
set and thread count (BLAS kernels may order float sums differently across those).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from models.cost import CostMeter
from models.learning_events import LearningEvents
from models.pnsgd import PnsgdRecipe, initial_weights, run_pnsgd


def _keep_positions(keep_rows: np.ndarray, n: int) -> np.ndarray:
    """Sorted row positions from an index array or a length-n boolean mask."""
    keep = np.asarray(keep_rows)
    if keep.dtype == bool:
        if keep.shape != (n,):
            raise ValueError(f"keep_rows as a mask must have shape ({n},), got {keep.shape}")
        keep = np.flatnonzero(keep)
    elif keep.size and not np.issubdtype(keep.dtype, np.integer):
        raise ValueError(f"keep_rows must be integer positions or a boolean mask, got {keep.dtype}")
    keep = keep.astype(np.int64).ravel()
    if keep.size == 0:
        raise ValueError("keep_rows is empty: nothing to retrain on")
    if keep.min() < 0 or keep.max() >= n:
        raise ValueError(
            f"keep_rows must be positions in [0, {n}), got [{keep.min()}, {keep.max()}]"
        )
    # Sorted order makes the result a function of the retained *set*, not of how it was listed.
    unique = np.unique(keep)
    if unique.size != keep.size:
        raise ValueError("keep_rows contains duplicate positions")
    return unique


def retrain_pnsgd(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe: PnsgdRecipe,
    seed: int,
    keep_rows: np.ndarray,
    events: LearningEvents | None = None,
    meter: CostMeter | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """PNSGD trained from scratch for `recipe.epochs` epochs on `x[keep_rows]`.

    Chien et al., arXiv 2403.17105, Algorithm 1 (init w0 ~ N(0, 2 sigma^2/m), then cyclic noisy
    projected mini-batch steps); both streams are seeded by `seed`, so the same seed gives the same
    weights bytes (`models.weights.state_sha256`) and a different seed different ones. `events`, if given, is
    indexed by position in `x` (length len(y)); removed rows get no observations. `progress` is
    called with (epochs done, epochs) as in `run_pnsgd`."""
    n = len(y)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} rows but y has {n}")
    keep = _keep_positions(keep_rows, n)
    if events is not None and events.counts.shape[0] != n:
        raise ValueError(f"events must cover all {n} rows of x, got {events.counts.shape[0]}")
    x_keep, y_keep = np.asarray(x)[keep], np.asarray(y)[keep]
    w0 = initial_weights(dim=x_keep.shape[1], classes=classes, recipe=recipe, seed=seed)
    # run_pnsgd records events by position in the array it trains on; map back to positions in x.
    local = LearningEvents.zeros(len(keep)) if events is not None else None
    w = run_pnsgd(
        w0,
        x_keep,
        y_keep,
        classes=classes,
        recipe=recipe,
        epochs=recipe.epochs,
        seed=seed,
        events=local,
        meter=meter,
        progress=progress,
    )
    if events is not None and local is not None:
        events.add_at(keep, local)
    return w
