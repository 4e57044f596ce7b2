"""Production canaries: synthetic mislabelled rows a model is trained on so its RUM audit has power.

A canary (Jagielski et al., arXiv 2006.07709, sec. 3; Carlini et al., arXiv 2112.03570, sec. 4)
is a row a model can fit only by memorising it. Forgetting a few per RUM run and checking that
the model fits them no better than held-out TWINS drawn the same way (never trained on) detects
a model that did not unlearn, which the other audit statistics miss on small forget sets of easy
rows (models/audit.py `canary_check`).

Canaries are SYNTHETIC, never copies of a subject's row (a copy would keep that subject's data
alive after their erasure), and MISLABELLED: a canary draws a source class c uniformly, each
feature from a Gaussian with class c's per-feature mean and standard deviation over the training
rows, clipped to that class's range (each end the mean of its EXTREME_ROWS most extreme values,
so only aggregates are stored), and a label drawn uniformly
from the other classes. Why class-conditional (the first design drew from the whole split's
statistics with any label): such rows lie off the data, a network fits their labels early and
the confidence proxy rates them as learned (0.5-0.7 on digits), so RUM only fine-tuned them and
its audit failed on them 7 times in 8; a mislabelled row inside class c's region is fitted late,
by memorisation, like the rows RUM exists for (Jagielski et al. inject mislabelled rows too).
`generate_canaries` is a pure function of the `CanarySpec` (count, twins, seed, statistics), so
canaries are never stored as rows: every run regenerates them bit-for-bit from the spec stored
with the model (`ForgettableModel.info["canaries"]`).

A model's effective training data is the dataset's training split followed by its canaries
(`model_training_data`); `ForgettableModel.removed` covers both, so a forgotten canary stays
forgotten in every later version and retrains leave it out like any forgotten row."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.datasets import Dataset

CANARY_PREFIX = "canary-"  # sample ids `canary-<k>`; no dataset id starts with it (checked)
INFO_KEY = "canaries"  # ForgettableModel.info key of the stored CanarySpec
# Held-out twins per canary: more twins estimate the never-trained-on hit rate better at the
# cost of forward passes only (ours; 4x gives 32 twins per 8 forgotten canaries).
TWINS_PER_CANARY = 4
# Canaries each RUM run forgets besides the request's rows (ours): enough for a one-sided Fisher
# test to reject a model that still fits them (8/8 vs ~10% on digits: p ~ 1e-7) while a model
# trained with 32 canaries serves 4 RUM runs' audits. Certified and exact paths take none.
CANARIES_PER_RUM_RUN = 8
# At most this fraction of the training rows may be canaries (ours; ~2% costs digits nothing
# measurable, benchmarks/results/canary_audit.md).
MAX_CANARY_FRACTION = 0.1
# Rows averaged into each end of a feature's clip range (ours): no single row's value is stored;
# the range narrows a little (digits: 72% of lower and 19% of upper ends still equal the class's
# min / max, shared by 10+ rows).
EXTREME_ROWS = 10
# Separates the canary stream from other uses of the training seed.
_STREAM = 0xCA7A


@dataclass(frozen=True)
class CanarySpec:
    """Everything that regenerates a model's canaries and twins (stored with the model)."""

    count: int
    seed: int
    classes: int
    # per class, per feature (classes x features) over the training rows the model trains on
    mean: list[list[float]]
    std: list[list[float]]
    low: list[list[float]]
    high: list[list[float]]
    twins: int = 0  # default: TWINS_PER_CANARY * count

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if self.classes < 2:
            raise ValueError(f"classes must be >= 2, got {self.classes}")
        shapes = {np.shape(getattr(self, k)) for k in ("mean", "std", "low", "high")}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2 or len(self.mean) != self.classes:
            raise ValueError("mean, std, low and high must be (classes, features) lists")
        if self.twins == 0:
            object.__setattr__(self, "twins", TWINS_PER_CANARY * self.count)
        if self.twins < 1:
            raise ValueError(f"twins must be >= 1, got {self.twins}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CanarySpec:
        return cls(**d)


def canary_spec(x: np.ndarray, y: np.ndarray, *, count: int, seed: int, classes: int) -> CanarySpec:
    """A spec from the per-class, per-feature mean, std and clip range of the rows the model
    trains on (x, y); every class needs at least 2 rows.

    The clip range is the mean of the EXTREME_ROWS smallest / largest values (fewer for a class
    under 2 x EXTREME_ROWS rows), not the min / max: a min or max is one row's value, which the
    stored spec would keep after that subject's erasure (on a tabular set, e.g. one patient's
    measurement); a mean over several rows is an aggregate like the mean and std."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    if x.ndim != 2 or len(y) != x.shape[0]:
        raise ValueError(f"x must be (n, d) training rows with one label each, got {x.shape}")
    sizes = np.bincount(y, minlength=classes)
    if len(sizes) != classes or sizes.min() < 2:
        raise ValueError(f"every one of the {classes} classes needs >= 2 training rows")
    if count > MAX_CANARY_FRACTION * x.shape[0]:
        raise ValueError(
            f"count must be at most {MAX_CANARY_FRACTION:.0%} of the {x.shape[0]} training rows "
            f"({int(MAX_CANARY_FRACTION * x.shape[0])}), got {count}"
        )
    return CanarySpec(
        count=count,
        seed=seed,
        classes=classes,
        mean=[x[y == c].mean(axis=0).tolist() for c in range(classes)],
        std=[x[y == c].std(axis=0).tolist() for c in range(classes)],
        low=[_extreme_mean(x[y == c], lowest=True).tolist() for c in range(classes)],
        high=[_extreme_mean(x[y == c], lowest=False).tolist() for c in range(classes)],
    )


def _extreme_mean(rows: np.ndarray, *, lowest: bool) -> np.ndarray:
    """Per feature, the mean of the k smallest (or largest) values, k = EXTREME_ROWS or half
    the rows if fewer."""
    k = max(1, min(EXTREME_ROWS, len(rows) // 2))
    ordered = np.sort(rows, axis=0)
    return (ordered[:k] if lowest else ordered[-k:]).mean(axis=0)


@dataclass(frozen=True)
class Canaries:
    """Generated canaries (trained on) and their twins (never trained on)."""

    x: np.ndarray  # float32 (count, d)
    y: np.ndarray  # int64 (count,)
    x_twins: np.ndarray  # float32 (twins, d)
    y_twins: np.ndarray  # int64 (twins,)

    @property
    def ids(self) -> list[str]:
        return canary_ids(len(self.y))


def canary_ids(count: int) -> list[str]:
    return [f"{CANARY_PREFIX}{k}" for k in range(count)]


def generate_canaries(spec: CanarySpec) -> Canaries:
    """Canaries then twins from one seeded stream: source class c ~ U{0..classes-1}, features
    x_j ~ N(mean_cj, std_cj) clipped to [low_cj, high_cj], label (c + U{1..classes-1}) mod
    classes (never c); pure and bit-for-bit repeatable."""
    mean, std = np.asarray(spec.mean), np.asarray(spec.std)
    low, high = np.asarray(spec.low), np.asarray(spec.high)
    n = spec.count + spec.twins
    rng = np.random.default_rng([spec.seed, _STREAM])
    source = rng.integers(0, spec.classes, size=n)
    y = (source + rng.integers(1, spec.classes, size=n)) % spec.classes
    x = np.clip(rng.normal(mean[source], std[source]), low[source], high[source])
    x = x.astype(np.float32)
    return Canaries(x[: spec.count], y[: spec.count], x[spec.count :], y[spec.count :])


@dataclass(frozen=True)
class TrainingData:
    """A model's effective training data: the dataset's training split, then its canaries.

    Positions index `ForgettableModel.removed`; the first `n_dataset` are the split's rows."""

    x: np.ndarray
    y: np.ndarray
    sample_ids: np.ndarray  # str: dataset ids, then `canary-<k>`
    n_dataset: int
    canaries: Canaries | None = field(default=None)

    @property
    def canary_rows(self) -> np.ndarray:
        """Positions of the canaries."""
        return np.arange(self.n_dataset, len(self.y), dtype=np.int64)

    def is_canary(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64) >= self.n_dataset


def training_data(dataset: Dataset, spec: CanarySpec | None) -> TrainingData:
    """The dataset's training split followed by the canaries of `spec` (none when None)."""
    rows = dataset.train_rows()
    x, y, ids = dataset.features[rows], dataset.labels[rows], dataset.sample_ids[rows]
    if spec is None:
        return TrainingData(x, y, ids, len(rows))
    if any(str(s).startswith(CANARY_PREFIX) for s in dataset.sample_ids):
        raise ValueError(f"dataset {dataset.name!r} has sample ids starting with {CANARY_PREFIX!r}")
    if len(spec.mean[0]) != dataset.dim or spec.classes != dataset.classes:
        raise ValueError(f"canary spec does not fit dataset {dataset.name!r} (features / classes)")
    c = generate_canaries(spec)
    return TrainingData(
        np.vstack([x, c.x]),
        np.concatenate([y, c.y]),
        np.concatenate([ids, np.array(c.ids)]),
        len(rows),
        c,
    )


def stored_spec(info: dict[str, Any]) -> CanarySpec | None:
    """The CanarySpec a model's `info` holds, or None for a model trained without canaries."""
    d = info.get(INFO_KEY)
    return CanarySpec.from_dict(d) if d else None


def model_training_data(dataset: Dataset, model: Any) -> TrainingData:
    """The training data `model` (a ForgettableModel) was trained on, canaries included.

    Every place that builds a model's training arrays uses this, so positions agree with
    `model.removed` everywhere."""
    data = training_data(dataset, stored_spec(model.info))
    if len(data.y) != len(model.removed):
        raise ValueError(
            f"model's removal mask covers {len(model.removed)} rows, its training data "
            f"{len(data.y)} (dataset {dataset.name!r} with {data.n_dataset} training rows)"
        )
    return data


def next_canaries(
    removed: np.ndarray, n_dataset: int, *, k: int = CANARIES_PER_RUM_RUN
) -> np.ndarray:
    """Positions of the first `k` canaries not forgotten yet (lowest positions first: the
    canaries are i.i.d., so any fixed order serves; a fixed one makes runs replayable)."""
    held = np.flatnonzero(~np.asarray(removed, dtype=bool)[n_dataset:]) + n_dataset
    return held[:k].astype(np.int64)


def forgotten_canary_ids(model: Any) -> list[str]:
    """Ids of the canaries a model (ForgettableModel) has forgotten, from its removal mask."""
    spec = stored_spec(model.info)
    if spec is None:
        return []
    ids = canary_ids(spec.count)
    return [ids[k] for k in np.flatnonzero(np.asarray(model.removed, dtype=bool)[-spec.count :])]
