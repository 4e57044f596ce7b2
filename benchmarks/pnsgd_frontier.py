"""Cost/accuracy frontier of certified PNSGD batch removal (issue 3 quality and speed targets).

Chien, Wang, Chen, Li, arXiv 2403.17105 (mini-batch PNSGD unlearning; algorithms.md sec. 1 and 6).
For each recipe: train PNSGD on the digits train split, remove 1% of it (S = 14 random rows) in one
request at (epsilon = 1, delta = 1/n) with the K epochs the accountant asks for (same bound choice
as models/planner.py), and compare with (a) a noisy PNSGD retrain on D \\ F under the same recipe
(accuracy yardstick) and (b) a noiseless retrain (sigma -> 0) of the same T epochs (cost yardstick),
whose per-epoch accuracy curve also gives the epochs a noiseless model needs to reach its plateau.
Then the same on 100k generated rows (1% and a single 4-row subject).

Representations: `raw` is models.datasets (pixels/16, bias, unit norm). `rff-*` are random Fourier
features (Rahimi & Recht, NIPS 2007) of the pixels/16: a fixed, seeded, data-independent map, so no
row of any split shapes the extractor and the certificate covers the whole model, not only the head.

    .venv/bin/python -m benchmarks.pnsgd_frontier   # writes benchmarks/results/pnsgd_frontier.md
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import time
from dataclasses import dataclass, replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._progress import track
from models.accounting import (
    batch_z,
    pnsgd_min_epochs,
    pnsgd_renyi,
    renyi_to_dp,
)
from models.cost import CostMeter
from models.datasets import (
    Dataset,
    load_digits_dataset,
    make_synthetic_dataset,
    random_fourier_features,
)
from models.logreg import accuracy
from models.pnsgd import PnsgdRecipe, accountant_bound, initial_weights, recipe_constants, run_pnsgd
from models.retrain import retrain_pnsgd

RESULTS_PATH = Path(__file__).parent / "results" / "pnsgd_frontier.md"
COMMAND = ".venv/bin/python -m benchmarks.pnsgd_frontier"
TARGET_EPSILON = 1.0
REMOVED_FRACTION = 0.01
DIGITS_RATIO_TARGET = 0.05
LARGE_RATIO_TARGET = 0.02
ACCURACY_TOLERANCE = 0.01  # "within 1 point", and the plateau tolerance
# run_pnsgd certifies only sigma > 0; 1e-9 adds noise ~1e-9 to weights of size ~1: noiseless.
NOISELESS_SIGMA = 1e-9
MAX_WORKERS = 2
# Seed offsets keep the unlearning, retrain and noiseless streams distinct from the training one.
UNLEARN_SEED, RETRAIN_SEED, NOISELESS_SEED, FORGET_SEED = 10_000, 20_000, 30_000, 40_000
LARGE_ROWS = 125_000  # train split 100,000
MAX_UNLEARN_EPOCHS = 1_000


@dataclass(frozen=True)
class Row:
    """One frontier point: a representation, a PNSGD recipe (epochs = T) and how many seeds."""

    rep: str
    recipe: PnsgdRecipe
    seeds: int
    heads: bool = False  # one binary head per class instead of one multinomial model
    note: str = ""


DIGITS_ROWS: tuple[Row, ...] = (
    Row(
        "raw", PnsgdRecipe(m=0.003, batch_size=8, sigma=0.03, epochs=50), 3, note="current default"
    ),
    Row(
        "raw",
        PnsgdRecipe(m=0.003, batch_size=8, sigma=0.03, epochs=180),
        2,
        note="default, T = 20K",
    ),
    Row("raw", PnsgdRecipe(m=0.01, batch_size=8, sigma=0.01, epochs=80), 2),
    Row("raw", PnsgdRecipe(m=0.05, batch_size=32, sigma=0.005, epochs=60), 2),
    Row("rff-512-s1.5", PnsgdRecipe(m=0.2, batch_size=64, sigma=0.02, epochs=20), 2, note="K = 1"),
    Row("rff-512-s1.25", PnsgdRecipe(m=0.1, batch_size=32, sigma=0.0025, epochs=40), 4),
    Row("rff-512-s1.5", PnsgdRecipe(m=0.05, batch_size=24, sigma=0.005, epochs=40), 4),
    Row("rff-512-s1.5", PnsgdRecipe(m=0.05, batch_size=32, sigma=0.005, epochs=60), 4),
    Row("rff-512-s1.25", PnsgdRecipe(m=0.05, batch_size=32, sigma=0.0025, epochs=60), 4),
    Row(
        "rff-512-s1.5",
        PnsgdRecipe(m=0.05, batch_size=32, sigma=0.005, epochs=100),
        2,
        note="T = 33K",
    ),
    Row("rff-512-s1.5", PnsgdRecipe(m=0.02, batch_size=16, sigma=0.005, epochs=80), 4),
    Row("rff-512-s1.5", PnsgdRecipe(m=0.025, batch_size=32, sigma=0.005, epochs=40), 2, heads=True),
)
LARGE_RECIPE = PnsgdRecipe(m=0.003, batch_size=128, sigma=0.01, epochs=50)


# ---------------------------------------------------------------------------------------------
# Representation and accountant (pure)


@functools.cache
def digits_features(rep: str) -> tuple[np.ndarray, Dataset]:
    """Features of every digits row for representation `raw` or `rff-<dim>-s<bandwidth>`."""
    from sklearn.datasets import load_digits

    ds = load_digits_dataset()
    if rep == "raw":
        return ds.features, ds
    _, dim, bandwidth = rep.split("-")
    pixels = load_digits().data / 16.0
    return random_fourier_features(pixels, dim=int(dim), bandwidth=float(bandwidth[1:])), ds


def unlearning_epochs(
    *, n: int, removed: int, recipe: PnsgdRecipe, classes: int, heads: int = 1
) -> tuple[int, str, float]:
    """(K, bound, epsilon): fewest PNSGD epochs on the n - removed kept rows reaching epsilon = 1.

    Mirrors models/planner.py: constants for the kept rows, Z = S * Z_B, the tight (stationary)
    bound when training converged (2R c^(Tn/b) <= 1e-6 Z_B) else the non-convergent one, delta =
    1/n (n = training rows, slightly stricter than the planner's 1/(n - S)). arXiv 2403.17105 sec. 3.
    `heads` > 1 composes that many independent chains (one binary head per class): their Rényi
    bounds add (Mironov 2017, Prop. 1) before the conversion to (epsilon, delta)."""
    k = recipe_constants(recipe, n=n - removed, classes=classes)
    z = batch_z(k, removed=removed)
    bound = accountant_bound(recipe, k)
    if heads == 1:
        epochs, eps = pnsgd_min_epochs(
            k,
            sigma=recipe.sigma,
            target_epsilon=TARGET_EPSILON,
            delta=1.0 / n,
            z=z,
            bound=bound,
            train_epochs=recipe.epochs,
        )
        return epochs, bound, eps.epsilon
    for epochs in range(1, MAX_UNLEARN_EPOCHS + 1):
        eps = renyi_to_dp(
            lambda alpha, e=epochs: (
                heads
                * pnsgd_renyi(
                    k,
                    alpha=alpha,
                    sigma=recipe.sigma,
                    epochs=e,
                    z=z,
                    bound=bound,
                    train_epochs=recipe.epochs,
                )
            ),
            delta=1.0 / n,
        )
        if eps.epsilon <= TARGET_EPSILON:
            return epochs, bound, eps.epsilon
    raise ValueError(
        f"epsilon = {TARGET_EPSILON} needs more than {MAX_UNLEARN_EPOCHS} epochs: {recipe}"
    )


def plateau_epochs(curve: list[float], *, tolerance: float = ACCURACY_TOLERANCE) -> int:
    """Smallest t such that accuracy stays >= curve[-1] - tolerance from epoch t to the end."""
    floor = curve[-1] - tolerance
    t = len(curve)
    while t > 1 and curve[t - 2] >= floor:
        t -= 1
    return t


# ---------------------------------------------------------------------------------------------
# Runs (one process each)


def _fit(
    w: torch.Tensor,
    x: np.ndarray,
    y: np.ndarray,
    *,
    heads: bool,
    classes: int,
    recipe: PnsgdRecipe,
    epochs: int,
    seed: int,
    meter: CostMeter,
) -> torch.Tensor:
    """run_pnsgd on one multinomial model, or on each one-vs-rest binary head (column of w)."""
    if not heads:
        return run_pnsgd(
            w, x, y, classes=classes, recipe=recipe, epochs=epochs, seed=seed, meter=meter
        )
    cols = [
        run_pnsgd(
            w[:, [c]],
            x,
            (y == c).astype(np.int64),
            classes=2,
            recipe=recipe,
            epochs=epochs,
            seed=seed * classes + c,
            meter=meter,
        )
        for c in range(classes)
    ]
    return torch.cat(cols, dim=1)


def _init(dim: int, classes: int, recipe: PnsgdRecipe, seed: int, heads: bool) -> torch.Tensor:
    if not heads:
        return initial_weights(dim=dim, classes=classes, recipe=recipe, seed=seed)
    return torch.cat(
        [
            initial_weights(dim=dim, classes=2, recipe=recipe, seed=seed * classes + c)
            for c in range(classes)
        ],
        dim=1,
    )


def run_digits(row_index: int, seed: int) -> dict[str, Any]:
    """Train, unlearn 1%, noisy retrain and noiseless retrain for one row and one seed."""
    row = DIGITS_ROWS[row_index]
    recipe = row.recipe
    feats, ds = digits_features(row.rep)
    train, test = ds.train_rows(), ds.test_rows()
    x, y = feats[train], ds.labels[train]
    xt = torch.as_tensor(feats[test], dtype=torch.float64)
    yt = torch.as_tensor(ds.labels[test])
    n, classes, dim = len(y), ds.classes, feats.shape[1]
    removed = round(REMOVED_FRACTION * n)
    forget = np.random.default_rng(FORGET_SEED + seed).choice(n, removed, replace=False)
    keep = np.setdiff1d(np.arange(n), forget)
    heads = classes if row.heads else 1
    epochs, bound, eps = unlearning_epochs(
        n=n, removed=removed, recipe=recipe, classes=2 if row.heads else classes, heads=heads
    )
    single, _, _ = unlearning_epochs(
        n=n, removed=4, recipe=recipe, classes=2 if row.heads else classes, heads=heads
    )
    fit = functools.partial(_fit, heads=row.heads, classes=classes, recipe=recipe)
    meters = {k: CostMeter() for k in ("train", "unlearn", "retrain", "noiseless")}

    w = fit(
        _init(dim, classes, recipe, seed, row.heads),
        x,
        y,
        epochs=recipe.epochs,
        seed=seed,
        meter=meters["train"],
    )
    w_unlearned = fit(
        w, x[keep], y[keep], epochs=epochs, seed=seed + UNLEARN_SEED, meter=meters["unlearn"]
    )
    retrain_seed = seed + RETRAIN_SEED
    if row.heads:
        w_retrained = fit(
            _init(dim, classes, recipe, retrain_seed, True),
            x[keep],
            y[keep],
            epochs=recipe.epochs,
            seed=retrain_seed,
            meter=meters["retrain"],
        )
    else:
        w_retrained = retrain_pnsgd(
            x,
            y,
            classes=classes,
            recipe=recipe,
            seed=retrain_seed,
            keep_rows=keep,
            meter=meters["retrain"],
        )
    # Noiseless yardstick, one epoch per call: the same seed gives the same permutation each call,
    # so this is one cyclic run whose accuracy is read after every epoch.
    quiet = replace(recipe, sigma=NOISELESS_SIGMA)
    w0 = _init(dim, classes, quiet, seed + NOISELESS_SEED, row.heads)
    curve = []
    for _ in range(recipe.epochs):
        w0 = _fit(
            w0,
            x[keep],
            y[keep],
            heads=row.heads,
            classes=classes,
            recipe=quiet,
            epochs=1,
            seed=seed + NOISELESS_SEED,
            meter=meters["noiseless"],
        )
        curve.append(accuracy(w0, xt, yt))
    return {
        "kind": "digits",
        "row": row_index,
        "seed": seed,
        "n": n,
        "removed": removed,
        "epochs": epochs,
        "single_epochs": single,
        "bound": bound,
        "epsilon": eps,
        "acc_trained": accuracy(w, xt, yt),
        "acc_unlearned": accuracy(w_unlearned, xt, yt),
        "acc_retrained": accuracy(w_retrained, xt, yt),
        "curve": curve,
        **{f"{k}_grad_evals": m.grad_evals for k, m in meters.items()},
        **{f"{k}_seconds": m.seconds for k, m in meters.items()},
    }


@functools.cache
def _large() -> Dataset:
    return make_synthetic_dataset(n=LARGE_ROWS, dim=20, classes=2, seed=0)


def _large_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train rows, test rows, a 1% forget set and the train positions of one 4-row subject."""
    ds = _large()
    train = ds.train_rows()
    n = len(train)
    gen = np.random.default_rng(FORGET_SEED)
    forget = gen.choice(n, round(REMOVED_FRACTION * n), replace=False)
    subjects = ds.subject_ids[train]
    names, counts = np.unique(subjects, return_counts=True)
    subject = gen.choice(names[counts == 4])
    return train, ds.test_rows(), forget, np.flatnonzero(subjects == subject)


def run_large(part: str) -> dict[str, Any]:
    """One third of the 100k-row measurement: `train` (+ both removals), `retrain` or `noiseless`."""
    ds = _large()
    train, test, forget, subject_rows = _large_split()
    x, y = ds.features[train], ds.labels[train]
    xt = torch.as_tensor(ds.features[test], dtype=torch.float64)
    yt = torch.as_tensor(ds.labels[test])
    n, recipe = len(y), LARGE_RECIPE
    keep = np.setdiff1d(np.arange(n), forget)
    out: dict[str, Any] = {"kind": "large", "part": part, "n": n}
    meter = CostMeter()
    if part == "train":
        w = run_pnsgd(
            initial_weights(dim=x.shape[1], classes=2, recipe=recipe, seed=0),
            x,
            y,
            classes=2,
            recipe=recipe,
            epochs=recipe.epochs,
            seed=0,
            meter=meter,
        )
        out.update(acc_trained=accuracy(w, xt, yt), train_seconds=meter.seconds)
        for name, rows in (("batch", forget), ("subject", subject_rows)):
            kept = np.setdiff1d(np.arange(n), rows)
            epochs, bound, eps = unlearning_epochs(n=n, removed=len(rows), recipe=recipe, classes=2)
            m = CostMeter()
            wu = run_pnsgd(
                w,
                x[kept],
                y[kept],
                classes=2,
                recipe=recipe,
                epochs=epochs,
                seed=UNLEARN_SEED,
                meter=m,
            )
            out[name] = {
                "removed": len(rows),
                "epochs": epochs,
                "bound": bound,
                "epsilon": eps,
                "grad_evals": m.grad_evals,
                "seconds": m.seconds,
                "acc": accuracy(wu, xt, yt),
            }
    elif part == "retrain":
        w = retrain_pnsgd(
            x, y, classes=2, recipe=recipe, seed=RETRAIN_SEED, keep_rows=keep, meter=meter
        )
        out.update(
            acc_retrained=accuracy(w, xt, yt), grad_evals=meter.grad_evals, seconds=meter.seconds
        )
    else:
        quiet = replace(recipe, sigma=NOISELESS_SIGMA)
        w = initial_weights(dim=x.shape[1], classes=2, recipe=quiet, seed=NOISELESS_SEED)
        curve = []
        for _ in range(recipe.epochs):
            w = run_pnsgd(
                w,
                x[keep],
                y[keep],
                classes=2,
                recipe=quiet,
                epochs=1,
                seed=NOISELESS_SEED,
                meter=meter,
            )
            curve.append(accuracy(w, xt, yt))
        out.update(curve=curve, grad_evals=meter.grad_evals, seconds=meter.seconds)
    return out


def _dispatch(job: tuple[str, Any, Any]) -> dict[str, Any]:
    kind, a, b = job
    return run_digits(a, b) if kind == "digits" else run_large(a)


# ---------------------------------------------------------------------------------------------
# Report


def _mean_se(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else float("nan")
    return float(arr.mean()), se


def summarise_digits(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per row: K, both cost ratios, accuracies (mean over seeds), target verdict."""
    out = []
    for i, row in enumerate(DIGITS_ROWS):
        rs = [r for r in results if r["row"] == i]
        if not rs:
            continue
        first = rs[0]
        curve = np.mean([r["curve"] for r in rs], axis=0).tolist()
        t_plateau = plateau_epochs(curve)
        ratio = float(np.mean([r["unlearn_grad_evals"] / r["noiseless_grad_evals"] for r in rs]))
        diff, diff_se = _mean_se([r["acc_unlearned"] - r["acc_retrained"] for r in rs])
        unlearned, _ = _mean_se([r["acc_unlearned"] for r in rs])
        out.append(
            {
                "row": row,
                "seeds": len(rs),
                "epochs": first["epochs"],
                "single_epochs": first["single_epochs"],
                "bound": first["bound"],
                "ratio": ratio,
                "t_plateau": t_plateau,
                "ratio_plateau": first["epochs"] / t_plateau,
                "acc_trained": float(np.mean([r["acc_trained"] for r in rs])),
                "acc_unlearned": unlearned,
                "acc_retrained": float(np.mean([r["acc_retrained"] for r in rs])),
                "diff": diff,
                "diff_se": diff_se,
                "acc_noiseless": curve[-1],
                "train_seconds": float(np.mean([r["train_seconds"] for r in rs])),
                "unlearn_seconds": float(np.mean([r["unlearn_seconds"] for r in rs])),
                "meets": ratio <= DIGITS_RATIO_TARGET + 1e-12 and abs(diff) <= ACCURACY_TOLERANCE,
            }
        )
    for key, mark in (("ratio", "T"), ("ratio_plateau", "P")):
        for s in out:
            dominated = any(
                o[key] <= s[key]
                and o["acc_unlearned"] >= s["acc_unlearned"]
                and (o[key] < s[key] or o["acc_unlearned"] > s["acc_unlearned"])
                for o in out
            )
            s.setdefault("pareto", "")
            if not dominated:
                s["pareto"] += mark
    return out


def recommended(summary: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Among rows meeting the target and within 0.5 pt of the best unlearned accuracy (seed noise
    is ~0.5 pt), the one with the fewest unlearning epochs, then the fastest to train."""
    meeting = [s for s in summary if s["meets"]]
    if not meeting:
        return None
    top = max(s["acc_unlearned"] for s in meeting)
    close = [s for s in meeting if s["acc_unlearned"] >= top - 0.005]
    return min(close, key=lambda s: (s["epochs"], s["train_seconds"]))


def _recipe_cell(row: Row) -> str:
    r = row.recipe
    heads = " heads" if row.heads else ""
    return f"{row.rep}{heads} | {r.m:g} | {r.batch_size} | {r.sigma:g} | {r.epochs}"


def digits_table(summary: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| features | m | b | sigma | T | K (S=14) | K (S=4) | unlearn / noiseless retrain, same T "
        "| noiseless plateau T | unlearn / plateau retrain | acc trained | acc unlearned "
        "| acc noisy retrain | unlearned - retrain (SE) | acc noiseless (T) | train s | meets | Pareto | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {_recipe_cell(s['row'])} | {s['epochs']} | {s['single_epochs']} | "
            f"{s['ratio']:.1%} | {s['t_plateau']} | {s['ratio_plateau']:.0%} | "
            f"{s['acc_trained']:.3f} | {s['acc_unlearned']:.3f} | {s['acc_retrained']:.3f} | "
            f"{100 * s['diff']:+.1f} ({100 * s['diff_se']:.1f}) pt | {s['acc_noiseless']:.3f} | "
            f"{s['train_seconds']:.1f} | {'yes' if s['meets'] else 'no'} | {s['pareto']} | "
            f"{s['row'].note} ({s['seeds']} seeds) |"
        )
    return lines


def pareto_table(summary: list[dict[str, Any]]) -> list[str]:
    """The non-dominated rows for each cost yardstick, cheapest first."""
    lines = [
        "| yardstick | features | m | b | sigma | T | K | cost ratio | acc unlearned | meets |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, mark, label in (
        ("ratio", "T", "noiseless retrain, same T"),
        ("ratio_plateau", "P", "noiseless retrain stopped at its plateau"),
    ):
        for s in sorted((s for s in summary if mark in s["pareto"]), key=lambda s: s[key]):
            lines.append(
                f"| {label} | {_recipe_cell(s['row'])} | {s['epochs']} | {s[key]:.1%} | "
                f"{s['acc_unlearned']:.3f} | {'yes' if s['meets'] else 'no'} |"
            )
    return lines


def large_section(parts: dict[str, dict[str, Any]]) -> tuple[list[str], bool]:
    train, retrain, quiet = parts["train"], parts["retrain"], parts["noiseless"]
    t_plateau = plateau_epochs(quiet["curve"])
    r = LARGE_RECIPE
    lines = [
        f"n train = {train['n']:,} (make_synthetic_dataset(n={LARGE_ROWS:,}, dim=20, classes=2, "
        f"seed=0)), binary, recipe m = {r.m:g}, b = {r.batch_size}, sigma = {r.sigma:g}, "
        f"T = {r.epochs}; one seed. Accuracy on the 25,000 test rows: trained "
        f"{train['acc_trained']:.4f}, noisy retrain on D \\ F (1%) {retrain['acc_retrained']:.4f}, "
        f"noiseless retrain (T = {r.epochs}) {quiet['curve'][-1]:.4f}, noiseless after 1 epoch "
        f"{quiet['curve'][0]:.4f}. Train {train['train_seconds']:.1f} s.",
        "",
        "| removal | S | bound | K | epsilon | unlearn grad-evals | noiseless retrain grad-evals (same T) "
        "| ratio | noiseless plateau T | ratio vs plateau retrain | unlearn s | acc unlearned | meets <= 2% |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    met = True
    for name, label in (("batch", "1% in one batch"), ("subject", "single subject")):
        u = train[name]
        retrain_evals = r.epochs * (train["n"] - u["removed"])
        ratio = u["grad_evals"] / retrain_evals
        meets = ratio <= LARGE_RATIO_TARGET + 1e-12
        met &= meets
        lines.append(
            f"| {label} | {u['removed']} | {u['bound']} | {u['epochs']} | {u['epsilon']:.3f} | "
            f"{u['grad_evals']:,.0f} | {retrain_evals:,} | {ratio:.1%} | {t_plateau} | "
            f"{u['epochs'] / t_plateau:.0%} | {u['seconds']:.2f} | {u['acc']:.4f} | "
            f"{'yes' if meets else 'no'} |"
        )
    return lines, met


def write_report(
    results: list[dict[str, Any]], *, out: Path, seconds: float, workers: int
) -> list[dict[str, Any]]:
    digits = [r for r in results if r["kind"] == "digits"]
    large = {r["part"]: r for r in results if r["kind"] == "large"}
    summary = summarise_digits(digits)
    large_lines, large_met = large_section(large)
    best = recommended(summary)
    best_text = (
        f"{_recipe_cell(best['row']).replace(' | ', ', ')} (features, m, b, sigma, T): K = "
        f"{best['epochs']}, {best['ratio']:.1%} of a same-T noiseless retrain "
        f"({best['ratio_plateau']:.0%} of one stopped at its plateau), unlearned accuracy "
        f"{best['acc_unlearned']:.3f}, {100 * best['diff']:+.1f} pt vs the noisy retrain, "
        f"{best['train_seconds']:.1f} s to train"
        if best
        else "none"
    )
    lines = [
        "# PNSGD certified batch removal: cost vs accuracy frontier",
        "",
        f"Reproduce: `{COMMAND}` (total run {seconds:.0f} s with {workers} worker processes, "
        f"torch {torch.__version__}, Python {platform.python_version()}, 1 torch thread each).",
        "",
        "Chien et al., arXiv 2403.17105 (algorithms.md sec. 1, 6). Removal of 1% of the training rows "
        f"in one request at epsilon = {TARGET_EPSILON:g}, delta = 1/n; K = fewest unlearning epochs "
        "the accountant accepts (planner's bound choice: tight once training converged). Costs in "
        "grad-evals: unlearning K (n - S), a retrain T (n - S), so a ratio is K / T.",
        "",
        "## digits (multinomial unless 'heads'), S = 14 of 1,437",
        "",
        "Yardsticks per row: the *noisy retrain* (PNSGD on D \\ F, same recipe, fresh seed) for the "
        "accuracy target; the *noiseless retrain* (same recipe with sigma = 1e-9, same T) for the cost "
        "target; its accuracy curve gives the *noiseless plateau T* = first epoch after which its "
        f"accuracy stays within {100 * ACCURACY_TOLERANCE:g} pt of its value at T. Accuracies are means over "
        "seeds on the 360 test rows (one row = 0.28 pt); the forget set is drawn per seed. "
        "'meets' = ratio <= 5% and |unlearned - retrain| <= 1 pt. Pareto: T = on the frontier of "
        "(ratio vs same-T retrain, unlearned accuracy), P = of (ratio vs plateau retrain, accuracy).",
        "",
        *digits_table(summary),
        "",
        "Pareto frontier (cost ratio vs unlearned accuracy, per yardstick):",
        "",
        *pareto_table(summary),
        "",
        "Recommended recipe (meets the target; within 0.5 pt of the best unlearned accuracy among "
        f"those that do; then fewest unlearning epochs, then fastest training): {best_text}.",
        "",
        "## 100k generated rows (binary)",
        "",
        *large_lines,
        "",
        f"Large-set target (<= 2% of a same-T retrain, both removals): {'met' if large_met else 'not met'}.",
        "",
        "## Reading the numbers",
        "",
        *NOTES,
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return summary


NOTES = [
    "- Contraction per unlearning epoch is rho = eta m n / b. The accountant's K falls like "
    "log(S^2 Z_B^2 / sigma^2) / rho, so cheap certified removal needs large rho. But the last PNSGD "
    "iterate remembers only ~n / rho recent examples (constant-step SGD is an exponential moving "
    "average of gradients), so large rho also costs accuracy: at rho ~ 2 (K = 2-3) the model "
    "summarises about half of the data; K = 1 for S = 14 needed rho ~ 4 with sigma = 0.02, and "
    "accuracy fell to ~0.6 (row 'K = 1'). With raw pixels, K <= 4 at the current default's "
    "accuracy was not found (raw rows).",
    "- Raw unit-norm pixels fail at the large m that fast contraction needs: all images point in "
    "nearly the same direction, so a strongly regularised linear model barely separates them and "
    "its last iterate depends on the batch order (raw m = 0.05 row: 0.73 with a large spread over "
    "seeds). Random Fourier features (RBF, bandwidth 1.25-1.5 on pixels/16, 512 dims, seed 0) make "
    "the strongly regularised model a kernel-smoother-like classifier: 0.90-0.93 at K = 2-4. They "
    "are data-independent, so nothing outside the certificate was fitted on deletable rows. "
    "Centring the pixels on the mean of the 360 test rows (outside the deletion scope, but the "
    "evaluation split) gained ~3 pt for a noiseless raw-pixel model at m = 0.01 in exploration "
    "(scikit-learn fit, 0.894 -> 0.925), less than the random features, and it leaks the test split "
    "into the features, so it is not in the table.",
    "- Per-class binary heads get eta = 1/(1/4 + m) instead of 1/(1 + m) (4x rho at the same m, b) "
    "but pay for composing 10 chains in the accountant (their Rényi bounds add). Their grad-evals "
    "count one per head per row (a multinomial grad-eval computes all 10 logits at once), for both "
    "unlearning and retrain, so the ratio compares like with like; wall time is ~10x.",
    "- The same-T ratio is K / T: any recipe meets 5% once T >= 20 K (row 'default, T = 20K'). "
    "Extra epochs help neither the noisy model (it is at its stationary law) nor, after its plateau, "
    "the noiseless one, hence the plateau column: the noiseless retrain of the same recipe plateaus "
    "within 1-3 epochs, so against a retrain that stops there, certified removal of 1% of digits "
    "costs 1-4 retrains. Both scale as 1/rho, so this ratio is ~log(S^2 Z_B^2/sigma^2) over the "
    "noiseless convergence constant whatever the recipe.",
    "- 100k rows: one unlearning epoch is the floor (the accountant counts whole epochs) and already "
    "certifies both removals, so 2% needs T >= 50 training epochs. A noiseless SGD retrain of this "
    "21-dimensional problem reaches its plateau within the first epoch, so against that yardstick "
    "certified removal costs one retrain.",
]


def jobs() -> list[tuple[str, Any, Any]]:
    """All work units, most expensive first so two workers finish together."""
    work: list[tuple[float, tuple[str, Any, Any]]] = []
    for i, row in enumerate(DIGITS_ROWS):
        r = row.recipe
        # Rough cost model: steps per epoch plus a per-row term, times the epochs run, per head.
        epoch_cost = (1437 / r.batch_size) * (1 + 0.02 * r.batch_size) * (10 if row.heads else 1)
        for seed in range(row.seeds):
            work.append((3 * r.epochs * epoch_cost, ("digits", i, seed)))
    for part in ("train", "retrain", "noiseless"):
        work.append((1e9, ("large", part, None)))
    return [job for _, job in sorted(work, key=lambda w: -w[0])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=MAX_WORKERS, help="at most 2")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    workers = max(1, min(args.workers, MAX_WORKERS))
    start = time.perf_counter()
    work = jobs()
    with Pool(workers) as pool:
        results = list(
            track(
                pool.imap_unordered(_dispatch, work),
                description="frontier runs (digits seeds, 100k parts)",
                total=len(work),
            )
        )
    summary = write_report(
        results, out=args.out, seconds=time.perf_counter() - start, workers=workers
    )
    for s in summary:
        print(
            f"{_recipe_cell(s['row'])}: K={s['epochs']} ratio={s['ratio']:.1%} "
            f"plateau={s['t_plateau']} acc={s['acc_unlearned']:.3f} diff={100 * s['diff']:+.1f}pt"
        )
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
