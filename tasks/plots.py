"""PNG plots a person reads next to a run: privacy-utility (epsilon vs K and vs accuracy),
memorisation-proxy histograms (forget set vs training set), predicted cost per unlearning path.

Matplotlib's object API on the Agg canvas: no pyplot global state and no display, so it is safe
inside flow runs and worker threads. Each plot function writes one PNG into `out_dir` and returns
its path (registry.register_version logs such paths under `plots/`).
`python -m tasks.plots docs/img` re-renders the examples in docs/operations.md."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.accounting import Bound, batch_z, pnsgd_epsilon
from models.pnsgd import PnsgdRecipe, accountant_bound, recipe_constants

DPI = 120
COLOR_CHOSEN = "#2a9d8f"
COLOR_VIABLE = "#4c78a8"
COLOR_REJECTED = "#bdbdbd"
COLOR_TRAIN = "#4c78a8"
COLOR_FORGET = "#e45756"
MIN_FORGET_FOR_HISTOGRAM = 30


def _save(fig: Figure, out_dir: Path, file_name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def pnsgd_bound(recipe: PnsgdRecipe, *, n: int, classes: int) -> Bound:
    """'tight' when training ran long enough to be stationary, else 'non-convergent' (the planner's rule)."""
    return accountant_bound(recipe, recipe_constants(recipe, n=n, classes=classes))


def privacy_utility_rows(
    *,
    n: int,
    classes: int,
    recipe: PnsgdRecipe,
    sigmas: Sequence[float],
    removed: int,
    delta: float | None = None,
    max_epochs: int = 20,
    accuracy: Mapping[float, tuple[float, float]] | None = None,
) -> list[dict[str, Any]]:
    """epsilon after K = 1..max_epochs unlearning epochs removing `removed` of `n` training rows,
    for each sigma (models.accounting, PNSGD; delta None means 1/n_after, as the planner uses).

    `accuracy[sigma] = (mean, sd)`, where measured, is the test accuracy of the sigma chain: the
    noisy chain is stationary, so its accuracy depends on sigma, not on K (only epsilon does)."""
    if not 0 < removed < n:
        raise ValueError(f"removed must be in [1, n - 1 = {n - 1}], got {removed}")
    n_after = n - removed
    delta = delta if delta is not None else 1.0 / n_after
    rows = []
    for sigma in sigmas:
        recipe_s = PnsgdRecipe(**{**recipe.as_dict(), "sigma": sigma})
        k = recipe_constants(recipe_s, n=n_after, classes=classes)
        z = batch_z(k, removed=removed)
        bound = pnsgd_bound(recipe_s, n=n_after, classes=classes)
        for epochs in range(1, max_epochs + 1):
            eps = pnsgd_epsilon(
                k,
                sigma=sigma,
                epochs=epochs,
                delta=delta,
                z=z,
                bound=bound,
                train_epochs=recipe_s.epochs,
            )
            rows.append(
                {
                    "sigma": float(sigma),
                    "epochs": epochs,
                    "epsilon": eps.epsilon,
                    "delta": delta,
                    "bound": bound,
                    "accuracy": (accuracy or {}).get(sigma, (None, None))[0],
                    "accuracy_sd": (accuracy or {}).get(sigma, (None, None))[1],
                }
            )
    return rows


def privacy_utility_plot(
    rows: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    target_epsilon: float | None = 1.0,
    frontier_epochs: Sequence[int] | None = None,
    file_name: str = "privacy_utility.png",
) -> Path:
    """Left: epsilon vs unlearning epochs K, one line per sigma. Right (rows with accuracy): test
    accuracy vs epsilon across sigmas, one line per K in `frontier_epochs` (default: up to four K
    from the rows): more noise buys a smaller epsilon at equal K and costs accuracy."""
    if not rows:
        raise ValueError("privacy_utility_plot needs at least one row")
    sigmas = sorted({float(r["sigma"]) for r in rows})
    measured = [
        r
        for r in rows
        if r.get("accuracy") is not None and math.isfinite(r["epsilon"]) and r["epsilon"] > 0
    ]
    fig = Figure(figsize=(11.5 if measured else 6, 4.6), layout="constrained")
    axes = fig.subplots(1, 2 if measured else 1, squeeze=False)[0]
    colors = dict(
        zip(sigmas, colormaps["viridis"](np.linspace(0.0, 0.85, len(sigmas))), strict=True)
    )

    ax = axes[0]
    for sigma in sigmas:
        pts = sorted(
            (r["epochs"], r["epsilon"])
            for r in rows
            if float(r["sigma"]) == sigma and math.isfinite(r["epsilon"]) and r["epsilon"] > 0
        )
        if pts:
            k, eps = zip(*pts, strict=True)
            ax.plot(k, eps, marker="o", markersize=3, color=colors[sigma], label=f"σ = {sigma:g}")
    if target_epsilon is not None:
        ax.axhline(target_epsilon, color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"policy target ε = {target_epsilon:g}",
            xy=(0.98, target_epsilon),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=8,
        )
    ax.set_yscale("log")
    ax.set_xlabel("unlearning epochs K (compute)")
    ax.set_ylabel(f"certified ε (δ = {rows[0]['delta']:.2g})")
    ax.set_title("Privacy vs compute: ε after K noisy epochs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    if measured:
        ax = axes[1]
        available = sorted({int(r["epochs"]) for r in measured})
        if frontier_epochs is None:
            picks = np.unique(np.geomspace(available[0], available[-1], num=4).round().astype(int))
            frontier_epochs = [min(available, key=lambda a, p=p: abs(a - p)) for p in picks]
        shades = colormaps["Greys"](np.linspace(0.45, 0.9, len(frontier_epochs)))
        for k, shade in zip(sorted(set(frontier_epochs)), shades, strict=False):
            pts = sorted(
                (float(r["sigma"]), r["epsilon"], r["accuracy"], r.get("accuracy_sd") or 0.0)
                for r in measured
                if int(r["epochs"]) == k
            )
            if not pts:
                continue
            sig, eps, acc, sd = zip(*pts, strict=True)
            ax.plot(eps, acc, color=shade, linewidth=1.2, zorder=1)
            ax.annotate(f"K={k}", (eps[-1], acc[-1]), xytext=(0, -14), textcoords="offset points",
                        ha="center", fontsize=8, color=shade)  # fmt: skip
            for x, y, e, sigma in zip(eps, acc, sd, sig, strict=True):
                ax.errorbar(x, y, yerr=e, fmt="o", color=colors[sigma], capsize=2, zorder=2)
        for sigma in sigmas:  # legend entries once per sigma
            ax.plot([], [], "o", color=colors[sigma], label=f"σ = {sigma:g}")
        if target_epsilon is not None:
            ax.axvline(target_epsilon, color="black", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("certified ε after K unlearning epochs")
        ax.set_ylabel("test accuracy (mean ± sd over the chain)")
        ax.set_title("Privacy vs utility at equal compute K")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out_dir, file_name)


def memorization_histogram(
    train_scores: np.ndarray | Sequence[float],
    forget_scores: np.ndarray | Sequence[float],
    proxy_name: str,
    out_dir: Path,
    *,
    high_memorisation_when: Literal["high", "low"] | None = None,
    file_name: str = "memorization_hist.png",
) -> Path:
    """Histogram of a memorisation proxy on the training set with the forget set on top: as a
    second density histogram when it has at least MIN_FORGET_FOR_HISTOGRAM rows, else as one
    marker per row (a handful of rows makes a misleading density). Dashed lines: medians."""
    train = np.asarray(train_scores, dtype=np.float64)
    forget = np.asarray(forget_scores, dtype=np.float64)
    train, forget = train[np.isfinite(train)], forget[np.isfinite(forget)]
    if train.size == 0:
        raise ValueError("memorization_histogram needs finite training-set scores")
    bins = np.histogram_bin_edges(np.concatenate([train, forget]), bins=40)
    fig = Figure(figsize=(7.5, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.hist(
        train,
        bins=bins,
        density=True,
        alpha=0.55,
        color=COLOR_TRAIN,
        label=f"training set (n = {train.size:,})",
    )
    ax.axvline(float(np.median(train)), color=COLOR_TRAIN, linestyle="--", linewidth=1)
    if forget.size:
        median = float(np.median(forget))
        percentile = 100.0 * float(np.mean(train <= median))
        label = f"forget set (n = {forget.size:,}; median at {percentile:.0f}th pct of training)"
        if forget.size >= MIN_FORGET_FOR_HISTOGRAM:
            ax.hist(forget, bins=bins, density=True, alpha=0.55, color=COLOR_FORGET, label=label)
        else:
            top = ax.get_ylim()[1]
            ax.vlines(forget, 0, 0.25 * top, color=COLOR_FORGET, linewidth=2)
            ax.plot(
                forget,
                np.full_like(forget, 0.25 * top),
                "v",
                color=COLOR_FORGET,
                markersize=7,
                label=label,
            )
        ax.axvline(median, color=COLOR_FORGET, linestyle="--", linewidth=1)
    if high_memorisation_when is not None:
        high = high_memorisation_when == "high"
        ax.text(
            0.98 if high else 0.02,
            0.97,
            "more memorised →" if high else "← more memorised",
            transform=ax.transAxes,
            ha="right" if high else "left",
            va="top",
            fontsize=9,
        )
    ax.set_xlabel(proxy_name)
    ax.set_ylabel("density")
    ax.set_title("Memorisation proxy: forget set vs training set")
    ax.legend(fontsize=8, loc="upper right" if high_memorisation_when != "high" else "upper left")
    return _save(fig, out_dir, file_name)


REQUIRED_CANDIDATE_KEYS = ("path", "predicted_grad_evals", "chosen", "rejected")


def cost_per_path_plot(
    candidates: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    file_name: str = "cost_per_path.png",
) -> Path:
    """Horizontal bars of predicted grad-evals per candidate path (a plan table: models.planner
    Plan.table()); the chosen path highlighted, rejected ones grey with their reason."""
    if not candidates:
        raise ValueError("cost_per_path_plot needs at least one candidate")
    for i, c in enumerate(candidates):
        missing = [k for k in REQUIRED_CANDIDATE_KEYS if k not in c]
        if missing:
            raise ValueError(f"candidate {i} lacks {', '.join(missing)}")
    retrain = next(
        (float(c["predicted_grad_evals"]) for c in candidates if c["path"] == "retrain"), None
    )
    costs = [float(c["predicted_grad_evals"]) for c in candidates]
    top = max(costs) or 1.0
    fig = Figure(figsize=(9, 1.1 + 0.75 * len(candidates)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(candidates))[::-1]
    for yi, c, cost in zip(y, candidates, costs, strict=True):
        rejected = bool(c["rejected"])
        color = COLOR_REJECTED if rejected else COLOR_CHOSEN if c["chosen"] else COLOR_VIABLE
        ax.barh(yi, cost, color=color, hatch="//" if rejected else None, edgecolor="white")
        label = f"{cost:,.0f}" if cost > 0 else "n/a"
        if retrain and cost > 0 and c["path"] != "retrain":
            label += f" ({cost / retrain:.1%} of retrain)"
        if c["chosen"]:
            label += "  ← chosen"
        elif rejected:
            reason = str(c["rejected"])
            label += f"  rejected: {reason[:70]}{'…' if len(reason) > 70 else ''}"
        ax.text(cost + 0.01 * top, yi, label, va="center", fontsize=8)
    names = [
        f"{c['path']}\n({c['guarantee']})" if c.get("guarantee") else c["path"] for c in candidates
    ]
    ax.set_yticks(y, names)
    ax.set_xlim(0, top * 1.9)
    ax.set_xlabel("predicted cost (gradient evaluations)")
    ax.set_title("Predicted cost per unlearning path")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, out_dir, file_name)


def example_inputs(*, seed: int = 0) -> dict[str, Any]:
    """Inputs of the three example plots: digits-logreg (PNSGD recipe) forgetting subjects 3 and
    17. Trains one model per sigma (50 epochs each), so this takes a minute or two."""
    import torch

    from data_contracts.policy import Policy
    from models.datasets import load_digits_dataset
    from models.logreg import DTYPE, accuracy
    from models.memorization import learning_event_proxies
    from models.planner import ModelLedger, choose, enumerate_candidates
    from models.pnsgd import run_pnsgd
    from models.training import train_arrays

    data = load_digits_dataset()
    train, test = data.train_rows(), data.test_rows()
    x, y = data.features[train], data.labels[train]
    x_test = torch.as_tensor(data.features[test], dtype=DTYPE)
    y_test = torch.as_tensor(data.labels[test])
    forget = np.flatnonzero(np.isin(data.subject_ids[train], ["subject-3", "subject-17"]))
    keep = np.setdiff1d(np.arange(len(y)), forget)
    base = PnsgdRecipe()
    sigmas = (0.01, 0.02, 0.03, 0.05, 0.1)
    unlearning_epochs = 20
    measured: dict[float, tuple[float, float]] = {}
    runs = {}
    for sigma in sigmas:
        recipe = PnsgdRecipe(**{**base.as_dict(), "sigma": sigma})
        runs[sigma] = train_arrays(
            x, y, classes=data.classes, recipe_name="pnsgd", seed=seed, overrides=recipe.as_dict()
        )
        w = torch.as_tensor(runs[sigma].model.arrays["weights"])
        readings = []
        for k in range(unlearning_epochs):  # the unlearning chain on the retained rows
            w = run_pnsgd(
                w, x[keep], y[keep], classes=data.classes, recipe=recipe, epochs=1, seed=seed + k
            )
            readings.append(accuracy(w, x_test, y_test))
        measured[sigma] = (float(np.mean(readings)), float(np.std(readings)))
    proxy = learning_event_proxies(runs[base.sigma].events)["confidence"]
    model = runs[base.sigma].model
    policy = Policy()
    ledger = ModelLedger(lineage=model.lineage, retrain_grad_evals=model.retrain_grad_evals(len(y)))
    plan = choose(enumerate_candidates(model, forget, policy=policy, ledger=ledger), policy)
    return {
        "rows": privacy_utility_rows(
            n=len(y),
            classes=data.classes,
            recipe=base,
            sigmas=sigmas,
            removed=len(forget),
            max_epochs=unlearning_epochs,
            accuracy=measured,
        ),
        "target_epsilon": policy.epsilon,
        "train_scores": proxy.scores[keep],
        "forget_scores": proxy.scores[forget],
        "proxy_name": "confidence: mean p(true label) over training steps",
        "high_memorisation_when": proxy.high_memorisation_when,
        "candidates": plan.table(),
    }


def render_examples(out_dir: Path, inputs: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write the three example PNGs (docs/img) from `example_inputs()`."""
    inputs = inputs or example_inputs()
    return {
        "privacy_utility": privacy_utility_plot(
            inputs["rows"], out_dir, target_epsilon=inputs["target_epsilon"]
        ),
        "memorization_hist": memorization_histogram(
            inputs["train_scores"],
            inputs["forget_scores"],
            inputs["proxy_name"],
            out_dir,
            high_memorisation_when=inputs["high_memorisation_when"],
        ),
        "cost_per_path": cost_per_path_plot(inputs["candidates"], out_dir),
    }


if __name__ == "__main__":  # pragma: no cover
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    for name, path in render_examples(target).items():
        print(f"{name}: {path}")
