"""Seconds per grad-eval of an unlearning path, measured on this machine by a short micro-run of
the path's own inner loop (issue 6: predicted / actual seconds within 1.5x).

Why not the training run's rate: it is one measurement, taken when and where the model was
trained, first in its process; and until learning events reused the gradient's probabilities
(commit 77c515e) PNSGD training ran an extra probability pass per batch (~+65% per grad-eval), so
a PNSGD fine-tune or retrain priced at it came out 2-2.5x too slow (benchmarks/cost_model.md).
Since then the two agree within ~10% in CPU seconds per grad-eval on digits (PNSGD 6.0e-5 s at
training vs 6.0e-5 in its micro-run, SISA 2.4e-5 vs 2.7e-5; measured under load, hence CPU time).
A micro-run executes the very function the path runs (`run_pnsgd`, `retrain_pnsgd`, SISA's shard
trainer, a PCMU full-batch step, RUM's fine-tune and NegGrad+) with the model's own recipe on a
random subset of the retained rows; only epochs (mini-batch recipes) or steps (full-batch PCMU,
which keeps all the rows it steps on because its per-row cost depends on n) are cut. The result is
thrown away; only its cost is kept. Paths that repeat training work itself (TRAINING_RATE_PATHS)
are priced at the training run's rate instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from models.cost import CostMeter
from models.forgettable import ForgettableModel

# Micro-runs of all the paths one plan prices together spend at most this fraction of a retrain's
# grad-evals (issue 6: < 2% of a training run), except for the floor below.
CALIBRATION_BUDGET_FRACTION = 0.018
# Each micro-run is split into this many repeats on different random rows, spread over time.
# The rate is total seconds / total grad-evals, not the median repeat: on a shared machine the
# real run is preempted too, and a median of millisecond repeats would measure an idle machine.
REPEATS = 3
# Floor per repeat, in mini-batches (full-batch PCMU: one step on every row it steps on). Below a
# few batches per-epoch set-up dominates; this floor is what can push tiny models past the budget.
MIN_BATCHES_PER_REPEAT = 4


@dataclass(frozen=True)
class MicroRun:
    """One path's calibration: its rate, what the micro-run cost, and each repeat's rate (spread)."""

    path: str
    seconds_per_grad_eval: float
    grad_evals: float
    seconds: float
    repeat_rates: tuple[float, ...]
    cpu_seconds: float = 0.0  # of the timed blocks: cpu_seconds / seconds = core share it got
    # Paths whose stages run at different rates (RUM): each stage's pooled rate, by stage name.
    stage_rates: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds_per_grad_eval": self.seconds_per_grad_eval,
            "grad_evals": self.grad_evals,
            "seconds": self.seconds,
            "repeat_rates": list(self.repeat_rates),
            "cpu_seconds": self.cpu_seconds,
            "stage_rates": dict(self.stage_rates),
        }


def pooled_rate(grad_evals: list[float], seconds: list[float]) -> float:
    """Seconds per grad-eval over all repeats: sum(seconds) / sum(grad_evals)."""
    total = sum(grad_evals)
    if total <= 0:
        raise ValueError("no repeat spent a grad-eval: nothing to calibrate from")
    return sum(seconds) / total


def minibatch_rows(
    *, budget_grad_evals: float, grad_evals_per_row: float, batch_size: int, available: int
) -> int:
    """Rows per repeat for a mini-batch path: its share of the budget, at least
    MIN_BATCHES_PER_REPEAT batches, at most the rows there are."""
    want = math.ceil(budget_grad_evals / REPEATS / grad_evals_per_row)
    return int(min(available, max(want, MIN_BATCHES_PER_REPEAT * batch_size)))


# One repeat of a path's inner loop: (model, x, y, retained rows, budget, seed, meter) -> the
# meter of each stage when the path's stages run at different rates (RUM), else None.
Step = Callable[
    [ForgettableModel, np.ndarray, np.ndarray, np.ndarray, float, int, CostMeter],
    dict[str, CostMeter] | None,
]


def _pick(rng: np.random.Generator, rows: np.ndarray, k: int) -> np.ndarray:
    return np.sort(rng.choice(rows, size=k, replace=False))


def _pnsgd(path: str) -> Step:
    """PNSGD fine-tune (`run_pnsgd` from the current weights) or retrain (`retrain_pnsgd` from
    w0): one epoch at the recipe's batch size. Neither records learning events; a real retrain
    does, at no extra grad-evals and, since they reuse the gradient's probabilities, ~no time."""

    def step(model, x, y, rows, budget, seed, meter) -> None:
        from models.pnsgd import PnsgdRecipe, run_pnsgd
        from models.retrain import retrain_pnsgd

        recipe = replace(PnsgdRecipe(**model.recipe), epochs=1)
        k = minibatch_rows(
            budget_grad_evals=budget,
            grad_evals_per_row=1.0,
            batch_size=recipe.batch_size,
            available=len(rows),
        )
        sub = _pick(np.random.default_rng(seed), rows, k)
        if path == "pnsgd":
            w = torch.as_tensor(model.arrays["weights"])
            run_pnsgd(
                w,
                x[sub],
                y[sub],
                classes=model.classes,
                recipe=recipe,
                epochs=1,
                seed=seed,
                meter=meter,
            )
        else:
            retrain_pnsgd(
                x, y, classes=model.classes, recipe=recipe, seed=seed, keep_rows=sub, meter=meter
            )

    return step


def _sisa(model, x, y, rows, budget, seed, meter) -> None:
    """SISA unlearning and retraining both run `_train_shard` (mini-batch SGD over a shard's
    slices): one shard, one slice, one epoch of it at the recipe's batch size, lr, m and clip."""
    from models.sisa import SisaRecipe, train_sisa

    recipe = replace(SisaRecipe(**model.recipe), shards=1, slices=1, epochs_per_slice=1)
    k = minibatch_rows(
        budget_grad_evals=budget,
        grad_evals_per_row=1.0,
        batch_size=recipe.batch_size,
        available=len(rows),
    )
    sub = _pick(np.random.default_rng(seed), rows, k)
    train_sisa(x[sub], y[sub], classes=model.classes, recipe=recipe, seed=seed, meter=meter)


def fullbatch_steps(*, budget_grad_evals: float, rows: int) -> int:
    """Full-batch steps per repeat: the budget's share, at least one (its floor)."""
    return max(1, int(budget_grad_evals / REPEATS / max(rows, 1)))


def _pcmu(model, x, y, rows, budget, seed, meter) -> None:
    """PCMU's check and replay take full-batch quantised steps on every retained row (a subset
    would understate n and overstate the per-row cost: ~0.4 ms/step is fixed on digits)."""
    from models.pcmu import PcmuRecipe, train_pcmu

    # Every step is computed: stopping at a fixed point would end the measurement, not the work.
    steps = fullbatch_steps(budget_grad_evals=budget, rows=len(rows))
    recipe = replace(PcmuRecipe.from_dict(model.recipe), steps=steps, stop_at_fixed_point=False)
    train_pcmu(x[rows], y[rows], classes=model.classes, recipe=recipe, seed=seed, meter=meter)


# Forget rows the NegGrad+ micro-run cycles: RUM's high-memorisation group is a few rows of a
# request (1-64 rows measured on digits: 2.0x-1.0x the fine-tune's rate; 4 rows: 1.7-2.0x).
RUM_CALIBRATION_FORGET_ROWS = 4
# RUM's stages as the planner prices them: the fine-tunes (low, medium, repair) and NegGrad+.
RUM_STAGES = ("finetune", "neggrad+")


def _rum(model, x, y, rows, budget, seed, meter) -> dict[str, CostMeter]:
    """RUM's two stages (arXiv 2406.01257, sec. 4) from the current network: one epoch of
    `fine_tune` and one of `neggrad_plus`, both with RumRecipe's optimiser settings, each on its
    own meter. Per grad-eval NegGrad+ costs 1.7-2x a fine-tune on digits (its small forget batch
    is a second forward/backward call per step), and since high_beyond most requests run no
    NegGrad+ at all: one pooled rate priced those 1.5x too slow (benchmarks/cost_model.md)."""
    from models.mlp import fine_tune
    from models.rum import RumRecipe, neggrad_plus

    r = RumRecipe()
    # Per row: one fine-tune pass plus one NegGrad+ pass with a forget batch beside each batch.
    per_row = 2.0 + min(r.batch_size, RUM_CALIBRATION_FORGET_ROWS) / r.batch_size
    k = minibatch_rows(
        budget_grad_evals=budget,
        grad_evals_per_row=per_row,
        batch_size=r.batch_size,
        available=len(rows) - RUM_CALIBRATION_FORGET_ROWS,
    )
    rng = np.random.default_rng(seed)
    sub = _pick(rng, rows, k + RUM_CALIBRATION_FORGET_ROWS)
    forget, retain = sub[:RUM_CALIBRATION_FORGET_ROWS], sub[RUM_CALIBRATION_FORGET_ROWS:]
    net = model.mlp_state()
    stages = {name: CostMeter() for name in RUM_STAGES}
    fine_tune(
        net, x[retain], y[retain], recipe=r.finetune_recipe(1), seed=seed, meter=stages["finetune"]
    )
    neggrad_plus(
        net,
        x,
        y,
        forget_rows=forget,
        retain_rows=retain,
        alpha=r.alpha,
        epochs=1,
        lr=r.lr,
        batch_size=r.batch_size,
        optimizer=r.optimizer,
        seed=seed,
        meter=stages["neggrad+"],
    )
    for stage in stages.values():
        meter.grad_evals += stage.grad_evals
        meter.seconds += stage.seconds
        meter.cpu_seconds += stage.cpu_seconds
    return stages


# (training recipe, path) -> the micro-run of that path's inner loop.
MICRO_RUNS: dict[tuple[str, str], Step] = {
    ("pnsgd", "pnsgd"): _pnsgd("pnsgd"),
    ("pnsgd", "retrain"): _pnsgd("retrain"),
    ("sisa", "sisa"): _sisa,
    ("sisa", "retrain"): _sisa,
    ("pcmu", "pcmu"): _pcmu,
    ("mlp", "rum"): _rum,
}
# Paths whose work *is* training work, priced at the model's training-run rate (measured on the
# whole job, free): the retrains of MLP, PCMU and PCMU-in-shards run the training code with the
# same learning-event recording (models.unlearning._retrain), and PCMU-in-shards unlearning
# replays whole shards of that training, cold, as training does. A micro-run on one warm shard
# understated both ~1.6-1.8x (per-shard set-up is a large share of a ~45-row shard's steps;
# benchmarks/cost_model.md); the training rate predicts the retrains within 1.1x, the shard
# replays within 1.3x. PNSGD and SISA retrains record events too now (commit 77c515e) but keep
# their micro-runs until a quiet-machine benchmark shows the training rate does as well for them.
TRAINING_RATE_PATHS: frozenset[tuple[str, str]] = frozenset(
    {("mlp", "retrain"), ("pcmu", "retrain"), ("pcmu-sisa", "retrain"), ("pcmu-sisa", "pcmu-sisa")}
)


def calibration_budget(model: ForgettableModel) -> float:
    """Grad-evals all micro-runs of one plan may spend together."""
    return CALIBRATION_BUDGET_FRACTION * model.retrain_grad_evals(model.n_retained)


def micro_run(
    model: ForgettableModel,
    path: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    exclude_rows: np.ndarray,
    budget_grad_evals: float,
    seed: int = 0,
) -> MicroRun:
    """Measure `path`'s seconds per grad-eval on `model` with REPEATS short runs of its inner loop.

    x, y: the training split (positions as in `model.removed`); rows already removed and
    `exclude_rows` (the rows about to be forgotten) are never touched. The trained result is
    discarded: the micro-run changes neither the model nor any ledger."""
    step = MICRO_RUNS.get((model.recipe_name, path))
    if step is None:
        raise ValueError(f"no micro-run for path {path!r} of recipe {model.recipe_name!r}")
    keep = ~model.removed.copy()
    keep[np.asarray(exclude_rows, dtype=np.int64)] = False
    rows = np.flatnonzero(keep)
    if len(rows) < 2:
        raise ValueError(f"micro-run needs at least 2 retained rows, got {len(rows)}")
    meters, stages = [], []
    for i in range(REPEATS):
        meter = CostMeter()
        stages.append(step(model, x, y, rows, budget_grad_evals, seed + i, meter) or {})
        meters.append(meter)
    ge, s = [m.grad_evals for m in meters], [m.seconds for m in meters]
    stage_rates = {
        name: pooled_rate(
            [st[name].grad_evals for st in stages], [st[name].seconds for st in stages]
        )
        for name in stages[0]
    }
    return MicroRun(
        path=path,
        seconds_per_grad_eval=pooled_rate(ge, s),
        grad_evals=float(sum(ge)),
        seconds=float(sum(s)),
        repeat_rates=tuple(si / gi for gi, si in zip(ge, s, strict=True) if gi > 0),
        cpu_seconds=float(sum(m.cpu_seconds for m in meters)),
        stage_rates=stage_rates,
    )
