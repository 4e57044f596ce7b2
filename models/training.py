"""Training recipes that leave a model unlearning-ready, each recording learning events.

Every recipe trains on the dataset's training split, feeds `LearningEvents` from the probabilities
it computes anyway (the memorisation proxies, algorithms.md sec. 3) and counts its grad-evals.
Rows erased before training (`exclude_rows`) are left out exactly as a retrain leaves forgotten
rows out (models.unlearning._retrain), so the model is born having forgotten them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.canaries import INFO_KEY as CANARY_INFO_KEY
from models.canaries import canary_spec, training_data
from models.cost import CostMeter
from models.datasets import Dataset
from models.forgettable import ForgettableModel, mlp_arrays, sisa_arrays
from models.learning_events import LearningEvents
from models.pnsgd import PRESETS, PnsgdRecipe, initial_weights, run_pnsgd
from models.progress import Progress, epoch_hook


@dataclass
class TrainingRun:
    model: ForgettableModel
    events: LearningEvents
    cost: CostMeter


@dataclass(frozen=True)
class Fitted:
    """What a recipe's fit returns: the stored arrays, the lineage and the recipe's parameters."""

    lineage: str
    recipe: dict[str, Any]
    arrays: dict[str, np.ndarray]


def _fit_pnsgd(x, y, classes, overrides, seed, events, meter, progress) -> Fitted:
    """PNSGD from w0 ~ N(0, 2 sigma^2/m) for `recipe.epochs` epochs (algorithms.md sec. 1)."""
    recipe = PnsgdRecipe(**overrides)
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
    return Fitted("pnsgd", recipe.as_dict(), {"weights": w.numpy()})


def _fit_sisa(
    x, y, classes, overrides, seed, events, meter, progress, *, exclude_rows=None
) -> Fitted:
    """SISA shards x slices with a checkpoint per slice (Bourtoule et al., arXiv 1912.03817)."""
    from models.sisa import SisaRecipe, train_sisa

    recipe = SisaRecipe(**overrides)
    sisa = train_sisa(
        x,
        y,
        classes=classes,
        recipe=recipe,
        seed=seed,
        exclude_rows=exclude_rows,
        events=events,
        meter=meter,
        progress=progress,
    )
    return Fitted("sisa", recipe.as_dict(), sisa_arrays(sisa))


def _fit_pcmu(x, y, classes, overrides, seed, events, meter, progress) -> Fitted:
    """PCMU: full-batch quantised smoothed-gradient steps, trajectory stored (algorithms.md sec. 2)."""
    from models.pcmu import PcmuRecipe, train_pcmu

    recipe = PcmuRecipe(**overrides)
    pcmu = train_pcmu(
        x,
        y,
        classes=classes,
        recipe=recipe,
        seed=seed,
        events=events,
        meter=meter,
        progress=progress,
    )
    return Fitted("pcmu", recipe.as_dict(), pcmu.to_arrays())


def _fit_sharded_pcmu(
    x, y, classes, overrides, seed, events, meter, progress, *, groups=None, exclude_rows=None
) -> Fitted:
    """PCMU inside subject-disjoint SISA shards (models/pcmu_sisa.py); `groups`: subject per row."""
    from models.pcmu_sisa import ShardedPcmuRecipe, assign_shards_by_subject, train_sharded_pcmu

    recipe = ShardedPcmuRecipe.from_overrides(overrides)
    shard_of_row = assign_shards_by_subject(
        np.arange(len(y)) if groups is None else groups, shards=recipe.shards, seed=seed
    )
    model = train_sharded_pcmu(
        x,
        y,
        classes=classes,
        recipe=recipe,
        seed=seed,
        shard_of_row=shard_of_row,
        exclude_rows=exclude_rows,
        events=events,
        meter=meter,
        progress=progress,
    )
    return Fitted("pcmu", recipe.as_dict(), model.to_arrays())


def _fit_mlp(x, y, classes, overrides, seed, events, meter, progress) -> Fitted:
    """A plain MLP (no certified lineage); its learning events feed RUM's memorisation split."""
    from models.mlp import MlpRecipe, train_mlp

    recipe = MlpRecipe(**overrides)
    net = train_mlp(
        x,
        y,
        classes=classes,
        recipe=recipe,
        seed=seed,
        events=events,
        meter=meter,
        on_epoch_end=epoch_hook(progress, recipe.epochs),
    )
    return Fitted(
        "plain", {**recipe.as_dict(), "layers": 2 if recipe.hidden > 0 else 1}, mlp_arrays(net)
    )


FITS: dict[str, Callable[..., Fitted]] = {
    "pnsgd": _fit_pnsgd,
    "sisa": _fit_sisa,
    "pcmu": _fit_pcmu,
    "mlp": _fit_mlp,
    "pcmu-sisa": _fit_sharded_pcmu,
}
# Recipes whose fit takes `groups` (subject per row): they keep a subject's rows together.
GROUPED_FITS = frozenset({"pcmu-sisa"})
# Recipes whose fit takes `exclude_rows`: excluded rows keep their shard (and slice) position, so
# later unlearning finds the same map as a model that trained on them and forgot them.
EXCLUDING_FITS = frozenset({"sisa", "pcmu-sisa"})


def _excluded_mask(exclude_rows: np.ndarray | None, n: int) -> np.ndarray:
    """Boolean mask over n rows from positions (or None); out-of-range positions are an error."""
    mask = np.zeros(n, dtype=bool)
    if exclude_rows is None:
        return mask
    rows = np.asarray(exclude_rows, dtype=np.int64).ravel()
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"exclude_rows must be positions in [0, {n})")
    mask[rows] = True
    if mask.all():
        raise ValueError("exclude_rows excludes every row: nothing to train on")
    return mask


def train_arrays(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe_name: str,
    seed: int,
    overrides: dict[str, Any] | None = None,
    progress: Progress | None = None,
    groups: np.ndarray | None = None,
    exclude_rows: np.ndarray | None = None,
) -> TrainingRun:
    """Train `recipe_name` on (x, y) minus the rows at `exclude_rows`; the run's model (whose
    `removed` mask marks the excluded rows), learning events (none for excluded rows) and cost.

    `groups`: the data subject of each row, for recipes that shard by subject (GROUPED_FITS).
    Excluded rows are never read by the fit: sharded recipes skip them in place (EXCLUDING_FITS),
    the others train on x[kept] and map events back, as models.unlearning._retrain does, so the
    result equals a retrain on the kept rows with the same seed."""
    if recipe_name not in FITS:
        raise ValueError(f"unknown recipe {recipe_name!r}; known: {', '.join(FITS)}")
    n = len(y)
    removed = _excluded_mask(exclude_rows, n)
    events = LearningEvents.zeros(n)
    meter = CostMeter()
    extra: dict[str, Any] = {"groups": groups} if recipe_name in GROUPED_FITS else {}
    if recipe_name in EXCLUDING_FITS:
        extra["exclude_rows"] = np.flatnonzero(removed)
    if recipe_name in EXCLUDING_FITS or not removed.any():
        fitted = FITS[recipe_name](
            x, y, classes, overrides or {}, seed, events, meter, progress, **extra
        )
    else:  # copies only the kept rows, and only when some are excluded
        kept = np.flatnonzero(~removed)
        if groups is not None and "groups" in extra:
            extra["groups"] = groups[kept]
        local = LearningEvents.zeros(len(kept))  # by position in x[kept]
        fitted = FITS[recipe_name](
            x[kept], y[kept], classes, overrides or {}, seed, local, meter, progress, **extra
        )
        events.add_at(kept, local)
    model = ForgettableModel(
        recipe_name=recipe_name,
        lineage=fitted.lineage,
        classes=classes,
        recipe=fitted.recipe,
        arrays=fitted.arrays,
        removed=removed,
        seed=seed,
    )
    return TrainingRun(model=model, events=events, cost=meter)


def train_model(
    dataset: Dataset,
    *,
    recipe_name: str,
    seed: int,
    progress: Progress | None = None,
    overrides: dict[str, Any] | None = None,
    exclude_rows: np.ndarray | None = None,
    canaries: int = 0,
) -> TrainingRun:
    """Train `recipe_name` on the dataset's training split, minus `exclude_rows` (positions in
    the split: rows erased before this model existed, marked in the model's `removed` mask).

    `canaries` > 0 (mlp only): that many synthetic canaries (models/canaries.py) from the
    statistics of the rows trained on, seeded by `seed`, appended after the split; their spec
    goes into the model's `info` so every later run regenerates them."""
    if canaries and recipe_name != "mlp":
        raise ValueError(f"canaries need the mlp recipe (RUM's audit), got {recipe_name!r}")
    spec = None
    if canaries:
        kept = np.flatnonzero(~_excluded_mask(exclude_rows, len(dataset.train_rows())))
        rows = dataset.train_rows()[kept]
        spec = canary_spec(
            dataset.features[rows],
            dataset.labels[rows],
            count=canaries,
            seed=seed,
            classes=dataset.classes,
        )
    data = training_data(dataset, spec)
    if recipe_name == "pnsgd":
        overrides = {**PRESETS.get(dataset.name, {}), **(overrides or {})}
    groups = dataset.subject_ids[dataset.train_rows()]
    run = train_arrays(
        data.x,
        data.y,
        classes=dataset.classes,
        recipe_name=recipe_name,
        seed=seed,
        overrides=overrides,
        progress=progress,
        groups=np.concatenate([groups, data.sample_ids[data.n_dataset :]]),  # canary: own group
        exclude_rows=exclude_rows,
    )
    if spec is not None:
        run.model.info[CANARY_INFO_KEY] = spec.as_dict()
    return run
