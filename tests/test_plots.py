"""tasks/plots.py writes real PNGs with visible content, and the privacy-utility rows are what
models.accounting says (no training here: the plots take made-up scores and plan tables)."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from models.accounting import batch_z, pnsgd_constants, pnsgd_epsilon
from models.pnsgd import PnsgdRecipe
from tasks.plots import (
    COLOR_CHOSEN,
    COLOR_FORGET,
    COLOR_REJECTED,
    cost_per_path_plot,
    memorization_histogram,
    pnsgd_bound,
    privacy_utility_plot,
    privacy_utility_rows,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIGITS_TRAIN_ROWS = 1437


def read_png(path: Path) -> np.ndarray:
    """RGB pixels of a PNG, after checking it is one and is not blank."""
    assert path.exists() and path.suffix == ".png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    rgb = imread(path)[..., :3]
    assert rgb.shape[0] >= 300 and rgb.shape[1] >= 500
    ink = (rgb < 0.9).any(axis=-1).mean()
    assert 0.02 < ink < 0.9, f"{path.name}: {ink:.1%} of the pixels are not background"
    distinct = np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(distinct) > 50, f"{path.name}: only {len(distinct)} colours"
    return rgb


def pixels_of(rgb: np.ndarray, color: str, *, tolerance: float = 0.03) -> int:
    return int((np.abs(rgb - np.array(to_rgb(color))) < tolerance).all(axis=-1).sum())


def test_privacy_rows_are_the_accountants_epsilon_and_fall_with_k_and_sigma():
    recipe = PnsgdRecipe()
    rows = privacy_utility_rows(
        n=DIGITS_TRAIN_ROWS,
        classes=10,
        recipe=recipe,
        sigmas=[0.02, 0.05],
        removed=8,
        max_epochs=20,
        accuracy={0.02: (0.9, 0.01)},
    )
    assert len(rows) == 40
    n_after = DIGITS_TRAIN_ROWS - 8
    k = pnsgd_constants(n=n_after, batch_size=8, m=recipe.m, classes=10)
    bound = pnsgd_bound(recipe, n=n_after, classes=10)
    expected = pnsgd_epsilon(
        k,
        sigma=0.02,
        epochs=7,
        delta=1 / n_after,
        z=batch_z(k, removed=8),
        bound=bound,
        train_epochs=recipe.epochs,
    )
    row = next(r for r in rows if r["sigma"] == 0.02 and r["epochs"] == 7)
    assert row["epsilon"] == pytest.approx(expected.epsilon, rel=1e-12)
    assert row["delta"] == pytest.approx(1 / n_after)
    assert row["accuracy"] == 0.9 and row["accuracy_sd"] == 0.01
    assert all(r["accuracy"] is None for r in rows if r["sigma"] == 0.05)
    for sigma in (0.02, 0.05):
        eps = [r["epsilon"] for r in rows if r["sigma"] == sigma]
        assert all(b < a for a, b in pairwise(eps)), "epsilon must fall with K"
    by = {(r["sigma"], r["epochs"]): r["epsilon"] for r in rows}
    assert all(by[(0.05, e)] < by[(0.02, e)] for e in range(1, 21)), "more noise, smaller epsilon"


def test_privacy_utility_plot_draws_both_panels_when_accuracy_is_known(tmp_path: Path):
    common = {"n": DIGITS_TRAIN_ROWS, "classes": 10, "recipe": PnsgdRecipe(), "removed": 8}
    sigmas = [0.01, 0.03, 0.1]
    accuracy = {0.01: (0.9, 0.01), 0.03: (0.87, 0.02), 0.1: (0.66, 0.04)}
    with_acc = privacy_utility_plot(
        privacy_utility_rows(**common, sigmas=sigmas, accuracy=accuracy), tmp_path / "a"
    )
    without = privacy_utility_plot(privacy_utility_rows(**common, sigmas=sigmas), tmp_path / "b")
    assert with_acc.name == without.name == "privacy_utility.png"
    wide, narrow = read_png(with_acc), read_png(without)
    assert wide.shape[1] > 1.5 * narrow.shape[1]


def test_privacy_utility_plot_rejects_no_rows(tmp_path: Path):
    with pytest.raises(ValueError, match="at least one row"):
        privacy_utility_plot([], tmp_path)


@pytest.mark.parametrize("forget_size", [4, 200])
def test_memorization_histogram_shows_the_forget_set(tmp_path: Path, forget_size: int):
    rng = np.random.default_rng(0)
    train = rng.beta(4, 4, size=1400)
    forget = np.append(rng.beta(2, 6, size=forget_size - 1), math.nan)  # NaN is dropped
    path = memorization_histogram(
        train, forget, "confidence", tmp_path, high_memorisation_when="low"
    )
    assert path == tmp_path / "memorization_hist.png"
    assert pixels_of(read_png(path), COLOR_FORGET, tolerance=0.05) > 50


def test_memorization_histogram_needs_training_scores(tmp_path: Path):
    with pytest.raises(ValueError, match="training-set scores"):
        memorization_histogram([math.nan], [0.5], "confidence", tmp_path)


PLAN = [
    {"path": "pnsgd", "guarantee": "certified", "predicted_grad_evals": 8598.0, "chosen": True,
     "rejected": ""},
    {"path": "sisa", "guarantee": "exact", "predicted_grad_evals": 0.0, "chosen": False,
     "rejected": "lineage is pnsgd: no shards to retrain"},
    {"path": "retrain", "guarantee": "exact", "predicted_grad_evals": 71650.0, "chosen": False,
     "rejected": ""},
]  # fmt: skip


def test_cost_per_path_plot_highlights_the_chosen_path(tmp_path: Path):
    rgb = read_png(cost_per_path_plot(PLAN, tmp_path))
    assert pixels_of(rgb, COLOR_CHOSEN) > 500


def test_cost_per_path_plot_greys_out_rejected_paths_with_a_cost(tmp_path: Path):
    plan = [
        {**row, "predicted_grad_evals": 4000.0} if row["path"] == "sisa" else row for row in PLAN
    ]
    rgb = read_png(cost_per_path_plot(plan, tmp_path, file_name="costs.png"))
    assert (tmp_path / "costs.png").exists()
    assert pixels_of(rgb, COLOR_REJECTED) > 100


def test_cost_per_path_plot_names_a_missing_key(tmp_path: Path):
    with pytest.raises(ValueError, match="candidate 0 lacks chosen, rejected"):
        cost_per_path_plot([{"path": "retrain", "predicted_grad_evals": 1.0}], tmp_path)
