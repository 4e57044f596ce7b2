"""PCMU inside SISA shards: exact removal that replays one shard, not the whole model.

Composition of SISA (Bourtoule et al., "Machine Unlearning", arXiv 1912.03817, sec. IV;
`models.sisa`) and PCMU (Zhang et al., NeurIPS 2022, as reconstructed in algorithms.md sec. 2;
`models.pcmu`). The training rows are cut into S disjoint shards by data subject, each shard is an
independent PCMU run, and prediction averages the shard models' probabilities (SISA's aggregation).

Why: on a single digits model one subject moves some quantised coordinate across its flip point in
the first steps, so PCMU replays ~97% of a retrain (benchmarks/results/pcmu_budget.md). Inside a
shard the same check runs on that shard only; when it fails, the replay costs at most
(T - t*) * n_s grad-evals, about 1/S of retraining the ensemble.

Exactness: the subject -> shard assignment is a seeded function of the subject ids only, each
shard's PCMU seed is derived from (seed, shard) only, and each shard trains on its retained rows in
position order. `sharded_pcmu_unlearn` hands each affected shard to `pcmu_unlearn`, which returns
bit for bit the run `train_pcmu` gives on the shard's retained rows; so the result is bit for bit
`train_sharded_pcmu` on D minus F with the same assignment. A shard left with fewer than the 2 rows
PCMU needs drops out of the ensemble in both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from models.cost import CostMeter
from models.learning_events import LearningEvents
from models.logreg import DTYPE
from models.pcmu import (
    PcmuModel,
    PcmuRecipe,
    pcmu_check,
    pcmu_retrain_grad_evals,
    pcmu_unlearn,
    pcmu_unlearn_grad_evals,
    train_pcmu,
)
from models.progress import Progress, counter
from models.sisa import aggregate_probabilities, assign_shards_and_slices, stream_seed

RECIPE_NAME = "pcmu-sisa"
MIN_SHARD_ROWS = 2  # PcmuRecipe.validate's minimum; a smaller shard drops out of the ensemble
_SHARD_SEED_STREAM = 2  # models.sisa uses streams 0 (assignment) and 1 (batch order)
# Per-shard PCMU default: the digits setting with the best single-model accuracy in
# benchmarks/results/pcmu_budget.md (0.947 at sigma 0.01, tau 0.005, C 0.5, eta 0.25), with
# T = 40 steps and eta halving every 10 (ours, benchmarks/results/pcmu_sisa_replay.md): every
# shard then runs all T steps, so a replay's cost is known before it starts (constant eta, T = 200:
# the planner's estimate was 0.15x-2.8x of a replay's cost), at 0.4 points less test accuracy and
# 36% fewer training grad-evals.
DEFAULT_SHARD_PCMU = PcmuRecipe(sigma=0.01, tau=0.005, clip=0.5, eta=0.25, steps=40, halve_every=10)
_DERIVED_KEYS = ("flip_point", "optimizer")  # written by PcmuRecipe.as_dict, never read back


@dataclass(frozen=True)
class ShardedPcmuRecipe:
    """S subject-disjoint shards, each trained by the same PCMU recipe; stored in certificates."""

    shards: int = 32
    pcmu: PcmuRecipe = field(default_factory=lambda: DEFAULT_SHARD_PCMU)

    def validate(self, *, groups: int) -> None:
        """Raise ValueError naming the first invalid parameter (`groups`: distinct subjects)."""
        if isinstance(self.shards, bool) or not isinstance(self.shards, int | np.integer):
            raise ValueError(f"shards must be an integer, got {self.shards!r}")
        if self.shards < 1:
            raise ValueError(f"shards must be >= 1, got {self.shards}")
        if self.shards > groups:
            raise ValueError(
                f"shards must be <= the {groups} subjects so every shard holds one, "
                f"got {self.shards}"
            )
        # A shard's row count is only known per shard; PCMU's own n check runs in train_pcmu.
        self.pcmu.validate(n=MIN_SHARD_ROWS)

    def as_dict(self) -> dict[str, Any]:
        return {"shards": int(self.shards), **self.pcmu.as_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardedPcmuRecipe:
        """Inverse of `as_dict`. A stored recipe lists every PCMU field of its time, so a missing
        one (e.g. `halve_every` before it existed) takes PcmuRecipe's default, the behaviour the
        model was trained with; unknown keys are an error."""
        return cls._parse(d, base=PcmuRecipe())

    @classmethod
    def from_overrides(cls, d: dict[str, Any]) -> ShardedPcmuRecipe:
        """A user's partial recipe: missing keys take this recipe's defaults (DEFAULT_SHARD_PCMU)."""
        return cls._parse(d, base=DEFAULT_SHARD_PCMU)

    @classmethod
    def _parse(cls, d: dict[str, Any], *, base: PcmuRecipe) -> ShardedPcmuRecipe:
        known = {"shards", *PcmuRecipe.__dataclass_fields__, *_DERIVED_KEYS}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown {RECIPE_NAME} parameter(s) {unknown}; known: {sorted(known)}"
            )
        pcmu = {k: d[k] for k in PcmuRecipe.__dataclass_fields__ if k in d}
        return cls(shards=d.get("shards", cls.shards), pcmu=replace(base, **pcmu))


def shard_seed(seed: int, shard: int) -> int:
    """PCMU init seed of one shard: depends on (seed, shard) only, never on the shard's rows."""
    return stream_seed(seed, _SHARD_SEED_STREAM, shard)


def assign_shards_by_subject(groups: np.ndarray, *, shards: int, seed: int) -> np.ndarray:
    """Shard id per row; every row of a subject lands in the same shard.

    Bourtoule et al., arXiv 1912.03817, sec. IV, uniform sharding, applied to subjects instead of
    rows: a forget request names a subject, so keying shards by subject makes one request touch one
    shard (row-keyed, a 4-row subject would touch up to 4). Balanced in subjects."""
    names, inverse = np.unique(np.asarray(groups), return_inverse=True)
    ShardedPcmuRecipe(shards=shards, pcmu=DEFAULT_SHARD_PCMU).validate(groups=len(names))
    shard_of_group, _ = assign_shards_and_slices(len(names), shards=shards, slices=1, seed=seed)
    return shard_of_group[inverse].astype(np.int64)


@dataclass
class ShardedPcmuModel:
    """S PCMU runs over subject-disjoint shards and the row -> shard map they were trained with."""

    shard_of_row: np.ndarray  # (n,) int64 over training-row positions, kept for removed rows
    removed: np.ndarray  # (n,) bool: rows forgotten (or excluded from training)
    shard_models: list[PcmuModel | None]  # None: fewer than MIN_SHARD_ROWS retained rows
    recipe: ShardedPcmuRecipe
    seed: int
    classes: int

    @property
    def n(self) -> int:
        return int(self.shard_of_row.shape[0])

    def shard_rows(self, shard: int) -> np.ndarray:
        """Retained row positions of one shard, ascending: the rows its PCMU model represents."""
        return np.flatnonzero((self.shard_of_row == shard) & ~self.removed)

    def live_shards(self) -> list[int]:
        return [s for s, m in enumerate(self.shard_models) if m is not None]

    def predict_proba(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Mean of the live shard models' class probabilities (SISA aggregation, models.sisa)."""
        xt = torch.as_tensor(np.asarray(x), dtype=DTYPE)
        weights = [m.weights for m in self.shard_models if m is not None]
        return aggregate_probabilities(weights, xt)

    def budgets(self) -> dict[int, int]:
        """Per live shard: removals its worst-case budget B' still covers at zero cost."""
        return {s: m.budget() for s, m in enumerate(self.shard_models) if m is not None}

    def retrain_grad_evals(self, n: int | None = None) -> float:
        """Grad-evals of retraining every shard: sum_s steps_s * n_s (models.pcmu's estimate), scaled
        to n retained rows when given (an estimate with a constant eta, where a retrain stops at
        its own fixed point; exact when every shard runs all T steps, as with halving eta)."""
        live = [m for m in self.shard_models if m is not None]
        total = float(sum(pcmu_retrain_grad_evals(m, n=m.rows) for m in live))
        rows = sum(m.rows for m in live)
        return total if n is None or rows == 0 else total * n / rows

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for storage: the shard map plus each live shard's `PcmuModel.to_arrays`."""
        arrays: dict[str, np.ndarray] = {"shard_of_row": self.shard_of_row.astype(np.int64)}
        for s, m in enumerate(self.shard_models):
            if m is not None:
                arrays.update({f"shard.{s}.{k}": v for k, v in m.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        *,
        removed: np.ndarray,
        recipe: ShardedPcmuRecipe,
        seed: int,
        classes: int,
    ) -> ShardedPcmuModel:
        models: list[PcmuModel | None] = []
        for s in range(recipe.shards):
            prefix = f"shard.{s}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            models.append(PcmuModel.from_arrays(own, recipe=recipe.pcmu) if own else None)
        return cls(
            shard_of_row=np.asarray(arrays["shard_of_row"]).astype(np.int64),
            removed=np.asarray(removed, dtype=bool).copy(),
            shard_models=models,
            recipe=recipe,
            seed=seed,
            classes=classes,
        )


def _positions(rows: np.ndarray | None, n: int, name: str) -> np.ndarray:
    """Unique sorted positions in [0, n); raise naming `name` otherwise."""
    if rows is None:
        return np.empty(0, dtype=np.int64)
    arr = np.asarray(rows).ravel()
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer row positions, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"{name} must be positions in [0, {n}), got [{arr.min()}, {arr.max()}]")
    unique = np.unique(arr.astype(np.int64))
    if unique.size != arr.size:
        raise ValueError(f"{name} must not repeat a row")
    return unique


def _train_shard(
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    *,
    shard: int,
    classes: int,
    recipe: ShardedPcmuRecipe,
    seed: int,
    events: LearningEvents | None,
    meter: CostMeter,
) -> PcmuModel | None:
    if rows.size < MIN_SHARD_ROWS:
        return None
    local = LearningEvents.zeros(rows.size) if events is not None else None
    model = train_pcmu(
        x[rows],
        y[rows],
        classes=classes,
        recipe=recipe.pcmu,
        seed=shard_seed(seed, shard),
        events=local,
        meter=meter,
    )
    if events is not None and local is not None:
        events.add_at(rows, local)
    return model


def train_sharded_pcmu(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe: ShardedPcmuRecipe,
    seed: int,
    shard_of_row: np.ndarray,
    exclude_rows: np.ndarray | None = None,
    events: LearningEvents | None = None,
    meter: CostMeter | None = None,
    progress: Progress | None = None,
) -> ShardedPcmuModel:
    """Train one PCMU model per shard on its rows (minus `exclude_rows`), in position order.

    Bourtoule et al., arXiv 1912.03817, sec. IV (shards) x Zhang et al., NeurIPS 2022 (each shard,
    algorithms.md sec. 2). With `exclude_rows` = F and the same `shard_of_row` and seed, this is the
    from-scratch reference `sharded_pcmu_unlearn` reproduces bit for bit. `progress(done, S)` is
    called per shard."""
    x, y = np.asarray(x), np.asarray(y)
    n = len(y)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} rows but y has {n}")
    shard_of_row = np.asarray(shard_of_row)
    if shard_of_row.shape != (n,) or not np.issubdtype(shard_of_row.dtype, np.integer):
        raise ValueError(f"shard_of_row must be {n} integer shard ids, got {shard_of_row.shape}")
    if n and (shard_of_row.min() < 0 or shard_of_row.max() >= recipe.shards):
        raise ValueError(f"shard_of_row must hold shard ids in [0, {recipe.shards})")
    recipe.validate(groups=n)  # the subject count is unknown here; n bounds it
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    removed = np.zeros(n, dtype=bool)
    removed[_positions(exclude_rows, n, "exclude_rows")] = True
    if events is not None and events.counts.shape[0] != n:
        raise ValueError(f"events must cover all {n} rows of x, got {events.counts.shape[0]}")
    model = ShardedPcmuModel(
        shard_of_row=shard_of_row.astype(np.int64),
        removed=removed,
        shard_models=[],
        recipe=recipe,
        seed=int(seed),
        classes=classes,
    )
    meter = meter or CostMeter()
    tick = counter(progress, recipe.shards)
    for s in range(recipe.shards):
        model.shard_models.append(
            _train_shard(
                x,
                y,
                model.shard_rows(s),
                shard=s,
                classes=classes,
                recipe=recipe,
                seed=seed,
                events=events,
                meter=meter,
            )
        )
        tick()
    return model


@dataclass(frozen=True)
class ShardOutcome:
    """What one affected shard did: PCMU's mode (or `dropped` below MIN_SHARD_ROWS) and cost."""

    shard: int
    mode: str  # budget | check | replay | dropped
    rows_before: int
    rows_removed: int
    first_flip_step: int | None = None
    replayed_steps: int = 0
    check_grad_evals: float = 0.0
    replay_grad_evals: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "rows_before": self.rows_before,
            "rows_removed": self.rows_removed,
            "first_flip_step": self.first_flip_step,
            "replayed_steps": self.replayed_steps,
            "check_grad_evals": self.check_grad_evals,
            "replay_grad_evals": self.replay_grad_evals,
        }


@dataclass
class ShardedPcmuUnlearning:
    model: ShardedPcmuModel
    mode: str  # budget | check | replay: the costliest mode any affected shard needed
    shards: list[ShardOutcome]
    grad_evals: float
    seconds: float
    retrain_grad_evals: float  # the same ensemble retrained from scratch (estimate)
    certificate: dict[str, Any] = field(default_factory=dict)


_MODE_RANK = {"dropped": 0, "budget": 0, "check": 1, "replay": 2}


def _affected(model: ShardedPcmuModel, forget: np.ndarray) -> dict[int, np.ndarray]:
    """Shard -> forget positions in it (validated: in range, not yet removed)."""
    if model.removed[forget].any():
        raise ValueError(
            f"forget_rows {forget[model.removed[forget]][:5].tolist()} already removed"
        )
    shards = model.shard_of_row[forget]
    return {int(s): forget[shards == s] for s in np.unique(shards)}


def sharded_pcmu_unlearn(
    model: ShardedPcmuModel,
    x: np.ndarray,
    y: np.ndarray,
    forget_rows: np.ndarray,
    *,
    meter: CostMeter | None = None,
    progress: Progress | None = None,
) -> ShardedPcmuUnlearning:
    """Exactly remove `forget_rows` (positions in the full training arrays x, y).

    Each affected shard runs PCMU's cheapest sound path (budget, data-dependent check, or replay
    from the first flipped step; algorithms.md sec. 2) on its own rows; unaffected shards are
    untouched (Bourtoule et al., arXiv 1912.03817, sec. IV). A batch of requests is one forget
    set: one check (and at most one replay) per affected shard serves all of them.
    `progress(done, total)` is called per affected shard."""
    x, y = np.asarray(x), np.asarray(y)
    if len(y) != model.n or len(x) != model.n:
        raise ValueError(f"x and y must be the model's {model.n} training rows, got {len(y)}")
    forget = _positions(forget_rows, model.n, "forget_rows")
    if forget.size == 0:
        raise ValueError("forget_rows must name at least one row")
    affected = _affected(model, forget)
    removed = model.removed.copy()
    removed[forget] = True
    shard_models = list(model.shard_models)
    outcomes: list[ShardOutcome] = []
    run = CostMeter()
    tick = counter(progress, len(affected))
    with run.timing():
        for s, rows_f in sorted(affected.items()):
            rows = model.shard_rows(s)
            before, state = int(rows.size), shard_models[s]
            if state is None or before - rows_f.size < MIN_SHARD_ROWS:
                shard_models[s] = None  # train_sharded_pcmu drops such a shard too
                outcomes.append(ShardOutcome(s, "dropped", before, int(rows_f.size)))
                tick()
                continue
            done = pcmu_unlearn(
                state,
                x[rows],
                y[rows],
                np.searchsorted(rows, rows_f),
                recipe=model.recipe.pcmu,
                meter=run,
            )
            shard_models[s] = done.model
            outcomes.append(
                ShardOutcome(
                    s,
                    done.mode,
                    before,
                    int(rows_f.size),
                    done.first_flip_step,
                    done.replayed_steps,
                    done.check_grad_evals,
                    done.replay_grad_evals,
                )
            )
            tick()
    if meter is not None:
        meter.grad_evals += run.grad_evals
        meter.seconds += run.seconds
    new = replace(model, removed=removed, shard_models=shard_models)
    mode = max((o.mode for o in outcomes), key=_MODE_RANK.__getitem__)
    mode = "budget" if mode == "dropped" else mode
    result = ShardedPcmuUnlearning(
        model=new,
        mode=mode,
        shards=outcomes,
        grad_evals=run.grad_evals,
        seconds=run.seconds,
        retrain_grad_evals=new.retrain_grad_evals(),
    )
    result.certificate = _certificate(result, rows_removed=int(forget.size))
    return result


def _certificate(result: ShardedPcmuUnlearning, *, rows_removed: int) -> dict[str, Any]:
    """Payload for data_contracts.certificate: exact w.r.t. training the same ensemble on the
    retained rows (same shard map, same seeds)."""
    model = result.model
    check = sum(o.check_grad_evals for o in result.shards)
    replay = sum(o.replay_grad_evals for o in result.shards)
    return {
        "method": f"pcmu-{result.mode}",
        "guarantee": "exact",
        "reference": (
            "Bourtoule et al., arXiv 1912.03817, sec. IV (shards) x Zhang et al., NeurIPS 2022 "
            "(PCMU per shard, reconstruction, algorithms.md sec. 2)"
        ),
        "recipe_name": RECIPE_NAME,
        "recipe": model.recipe.as_dict(),
        "seed": model.seed,
        "shard_map_sha256": hashlib.sha256(model.shard_of_row.tobytes()).hexdigest(),
        "rows_removed": rows_removed,
        "rows_after": int((~model.removed).sum()),
        "affected_shards": [o.shard for o in result.shards],
        "per_shard": {str(o.shard): o.as_dict() for o in result.shards},
        "live_shards": len(model.live_shards()),
        "budget_left_per_shard": {str(s): b for s, b in model.budgets().items()},
        "grad_evals": {
            "check": check,
            "replay": replay,
            "total": result.grad_evals,
            "retrain_ensemble_estimate": result.retrain_grad_evals,
        },
    }


def predict_unlearn_grad_evals(
    model: ShardedPcmuModel,
    x: np.ndarray,
    y: np.ndarray,
    forget_rows: np.ndarray,
    *,
    meter: CostMeter | None = None,
) -> tuple[float, float, dict[str, Any]]:
    """Planner's prediction: per affected shard, zero within its budget, else the data-dependent
    check run now (counted, and metered into `meter`) plus a replay of (steps - t*) *
    (n_s - |F_s|) if it fails (algorithms.md sec. 2). Returns the total, an upper bound on it
    (a replay runs at most T - t* steps: models.pcmu.pcmu_unlearn_grad_evals) and per-shard
    detail."""
    forget = _positions(forget_rows, model.n, "forget_rows")
    total, upper, detail = 0.0, 0.0, {}
    for s, rows_f in sorted(_affected(model, forget).items()):
        state, rows = model.shard_models[s], model.shard_rows(s)
        if state is None or rows.size - rows_f.size < MIN_SHARD_ROWS:
            detail[str(s)] = {"mode": "dropped"}
            continue
        if rows_f.size <= state.budget():
            detail[str(s)] = {"mode": "budget"}
            continue
        check = pcmu_check(
            state,
            x[rows],
            y[rows],
            np.searchsorted(rows, rows_f),
            recipe=model.recipe.pcmu,
            meter=meter,
        )
        point, most = pcmu_unlearn_grad_evals(state, check, removed=int(rows_f.size))
        total, upper = total + point, upper + most
        detail[str(s)] = {
            "mode": "check" if check.passed else "replay",
            "first_flip_step": check.first_flip_step,
            "planning_check_grad_evals": check.grad_evals,
            "upper_grad_evals": most,
        }
    return total, upper, detail
