"""Memorisation: the subset-model reference estimator and its cheap per-sample proxies.

algorithms.md sec. 3. Reference: Feldman & Zhang, "What neural networks memorize and why"
(NeurIPS 2020, arXiv 2008.03703), sec. 2 estimator on random 70% subsets, as used by Zhao et al.
(RUM, arXiv 2406.01257, sec. 3). Proxies: Zhao & Triantafillou, "Scalability of memorization-based
machine unlearning" (arXiv 2410.16516, sec. 3): learning events (recorded by
models/learning_events.py during training), holdout retraining (Carlini, Erlingsson, Papernot,
arXiv 1910.13427, sec. 2) and loss curvature (Garg, Roy et al., arXiv 2307.05831, sec. 3).

Every proxy returns per-sample scores for the rows of the data it was given, plus its own cost in
grad-evals (models/cost.py), so it can be compared with one training run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.stats import rankdata, spearmanr

from models.cost import FORWARD_ONLY_GRAD_EVALS, CostMeter
from models.learning_events import HIGH_MEMORISATION_WHEN, LearningEvents
from models.mlp import DTYPE, MlpEnsemble, MlpRecipe, fine_tune, fit_ensemble, predict_proba

Direction = Literal["high", "low"]
INPUT_GRADIENT_CHUNK_ROWS = 8192  # bounds activation memory of one backward pass on large n


@dataclass(frozen=True)
class ProxyScores:
    """Per-sample scores of one proxy and what computing them cost beyond training."""

    name: str
    scores: np.ndarray  # float64 (n,), in the proxy's own units
    high_memorisation_when: Direction
    grad_evals: float
    seconds: float

    def oriented(self) -> np.ndarray:
        """Scores flipped if needed so that larger always means more memorised."""
        return self.scores if self.high_memorisation_when == "high" else -self.scores


def orient(scores: np.ndarray, *, direction: Direction) -> np.ndarray:
    """`scores` oriented so that larger means more memorised; `direction` is where high mem lies."""
    if direction not in ("high", "low"):
        raise ValueError(f"direction must be 'high' or 'low', got {direction!r}")
    scores = np.asarray(scores, dtype=np.float64)
    return scores if direction == "high" else -scores


def learning_event_proxies(events: LearningEvents) -> dict[str, ProxyScores]:
    """Confidence, max-confidence, entropy, binary-accuracy and forgetting-event proxies (zero
    extra grad-evals). arXiv 2410.16516 sec. 3 / arXiv 2406.01257 sec. 3: running means over
    training steps; Toneva et al., ICLR 2019, sec. 2: forgetting events."""
    return {
        name: ProxyScores(
            name=name,
            scores=values,
            high_memorisation_when=HIGH_MEMORISATION_WHEN[name],  # type: ignore[arg-type]
            grad_evals=0.0,
            seconds=0.0,
        )
        for name, values in events.proxies().items()
    }


def symmetric_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p||q) + KL(q||p) per row of two (n, classes) probability arrays."""
    p = np.clip(p, 1e-12, None)
    q = np.clip(q, 1e-12, None)
    return np.sum((p - q) * (np.log(p) - np.log(q)), axis=1)


def holdout_retraining_proxy(
    model: MlpEnsemble,
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_holdout: np.ndarray,
    y_holdout: np.ndarray,
    recipe: MlpRecipe,
    seed: int,
    meter: CostMeter | None = None,
) -> ProxyScores:
    """Symmetric KL per row of x between `model` and a copy fine-tuned on a held-out split.

    Carlini et al., arXiv 1910.13427 sec. 2 ("holdout retraining"); arXiv 2410.16516 sec. 3.
    Examples the model memorised move most once it trains on data that does not contain them.
    Cost: recipe.epochs * |holdout| grad-evals + two forward passes over x. `y` is unused by the
    score itself but checked for length so callers cannot misalign rows."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if len(x_holdout) == 0 or len(x_holdout) != len(y_holdout):
        raise ValueError(
            f"x_holdout/y_holdout must be non-empty and aligned, got {len(x_holdout)} and "
            f"{len(y_holdout)}"
        )
    own = CostMeter()
    with own.timing():
        before = predict_proba(model, x, meter=own)
    tuned = fine_tune(model, x_holdout, y_holdout, recipe=recipe, seed=seed, meter=own)
    with own.timing():
        after = predict_proba(tuned, x, meter=own)
        scores = symmetric_kl(before, after)
    _merge(meter, own)
    return ProxyScores("holdout", scores, "high", own.grad_evals, own.seconds)


def _input_gradients(model: MlpEnsemble, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # examples do not interact (no batch norm), so d(sum of losses)/dx row i is example i's gradient
    x = x.detach().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def curvature_proxy(
    checkpoints: Sequence[MlpEnsemble],
    x: np.ndarray,
    y: np.ndarray,
    *,
    step: float = 1e-3,
    probes: int = 1,
    seed: int,
    meter: CostMeter | None = None,
) -> ProxyScores:
    """Input-space loss curvature per row, averaged over training checkpoints.

    Garg, Roy et al., arXiv 2307.05831 sec. 3 (Hutchinson-style finite difference):
    curv(x) = mean over checkpoints and Rademacher probes v of
    ||grad_x L(x + step*v) - grad_x L(x)||^2.
    Cost: len(checkpoints) * (1 + probes) * n grad-evals."""
    if not checkpoints:
        raise ValueError("checkpoints must hold at least one model")
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    gen = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(x, dtype=DTYPE)
    yt = torch.as_tensor(y, dtype=torch.int64)
    total = torch.zeros(len(y), dtype=torch.float64)
    own = CostMeter()
    with own.timing():
        for model in checkpoints:
            for rows in torch.split(torch.arange(len(y)), INPUT_GRADIENT_CHUNK_ROWS):
                xb, yb = xt[rows], yt[rows]
                base = _input_gradients(model, xb, yb)
                for _ in range(probes):
                    v = torch.randint(0, 2, xb.shape, generator=gen).to(DTYPE) * 2 - 1
                    moved = _input_gradients(model, xb + step * v, yb)
                    total[rows] += ((moved - base) ** 2).sum(dim=1).to(torch.float64)
            own.add_gradients((1 + probes) * len(y))
    scores = (total / (len(checkpoints) * probes)).numpy()
    _merge(meter, own)
    return ProxyScores("curvature", scores, "high", own.grad_evals, own.seconds)


def _merge(meter: CostMeter | None, own: CostMeter) -> None:
    if meter is not None:
        meter.grad_evals += own.grad_evals
        meter.seconds += own.seconds


def memorisation_from_runs(correct: np.ndarray, member_mask: np.ndarray) -> np.ndarray:
    """mem(i) = mean correctness over runs that trained on i minus over runs that did not.

    Feldman & Zhang, arXiv 2008.03703 sec. 2 (subsampling estimator). NaN where a sample was in
    every run or in none. Both arrays have shape (runs, n)."""
    correct = np.asarray(correct, dtype=np.float64)
    member_mask = np.asarray(member_mask, dtype=bool)
    if correct.shape != member_mask.shape or correct.ndim != 2:
        raise ValueError(
            f"correct and member_mask must be equal (runs, n) arrays, got {correct.shape} and "
            f"{member_mask.shape}"
        )
    n_in = member_mask.sum(axis=0)
    n_out = (~member_mask).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_in = np.where(member_mask, correct, 0.0).sum(axis=0) / n_in
        acc_out = np.where(~member_mask, correct, 0.0).sum(axis=0) / n_out
    mem = acc_in - acc_out
    mem[(n_in == 0) | (n_out == 0)] = np.nan
    return mem


@dataclass(frozen=True)
class ReferenceMemorisation:
    """Subset-model memorisation estimate and the per-run data it came from."""

    scores: np.ndarray  # (n,) mem(i) in [-1, 1]
    correct: np.ndarray  # (runs, n) bool: run k classifies row i correctly
    true_class_probs: np.ndarray  # (runs, n) float: run k's p(y_i | x_i)
    member_mask: np.ndarray  # (runs, n) bool: row i was in run k's training subset
    grad_evals: float
    seconds: float
    ensemble: MlpEnsemble | None = None  # the `runs` subset models, to score other rows with

    def out_runs(self) -> np.ndarray:
        """Per row, how many runs did not train on it (the non-member references it has)."""
        return (~self.member_mask).sum(axis=0)

    @property
    def runs(self) -> int:
        return int(self.correct.shape[0])

    def soft_scores(self) -> np.ndarray:
        """The same estimator with p(y_i | x_i) in place of 1[correct] (our variant, not FZ's).

        Hard correctness ties most rows at exactly 0 on easy data; the soft version breaks those
        ties with the runs' confidence, which is what a continuous proxy can be ranked against."""
        return memorisation_from_runs(self.true_class_probs, self.member_mask)

    def tie_ceiling(self) -> float:
        """Largest Spearman a tie-free proxy can reach against `scores`.

        That proxy is the reference itself with its ties broken arbitrarily; with a fraction f of
        rows tied at the bottom the ceiling is about sqrt(1 - f^3)."""
        finite = np.isfinite(self.scores)
        ref = self.scores[finite]
        return float(spearmanr(ref, rankdata(ref, method="ordinal")).statistic)

    def split_half_reliability(self) -> tuple[float, float]:
        """(Spearman between estimates from the two halves of the runs, Spearman-Brown for all).

        The ceiling any proxy can reach against this noisy reference: a proxy cannot correlate
        with the estimate much better than the estimate correlates with itself."""
        half = self.runs // 2
        if half < 2:
            raise ValueError(f"split-half reliability needs >= 4 runs, have {self.runs}")
        a = memorisation_from_runs(self.correct[:half], self.member_mask[:half])
        b = memorisation_from_runs(self.correct[half:], self.member_mask[half:])
        rho = float(spearmanr(a, b, nan_policy="omit").statistic)
        return rho, 2 * rho / (1 + rho) if rho > -1 else float("nan")


def balanced_member_rows(n: int, *, runs: int, out_per_row: int, seed: int) -> np.ndarray:
    """(runs, m) training rows per run such that every row is left out of exactly `out_per_row`
    runs: rows are dealt into `runs` random folds and run k leaves out folds k .. k+out_per_row-1
    (mod runs), so each run trains on a fraction 1 - out_per_row/runs of the rows.

    Random subsets leave a row out of Binomial(runs, 0.3) runs, i.e. of none for 0.7^runs of the
    rows at small `runs`; the audit needs at least two non-member models for every row (one
    reference, one twin for the noise floor), which this design guarantees with few runs (the
    balanced in/out split of shadow models, Carlini et al., arXiv 2112.03570, sec. 4)."""
    if not 1 <= out_per_row < runs:
        raise ValueError(f"out_per_row must be in [1, runs={runs}), got {out_per_row}")
    if n < runs:
        raise ValueError(f"need at least runs={runs} rows, got n={n}")
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    fold[rng.permutation(n)] = np.arange(n) % runs
    rows = []
    for k in range(runs):
        left_out = (np.arange(out_per_row) + k) % runs
        rows.append(np.flatnonzero(~np.isin(fold, left_out)))
    # folds differ by at most one row, so runs differ by at most out_per_row rows: pad the shorter
    # runs with repeats of their own rows so they stack, keeping every row's in/out count exact
    m = max(len(r) for r in rows)
    return np.stack([np.r_[r, rng.choice(r, m - len(r), replace=False)] for r in rows])


def balanced_subset_grad_evals(
    n: int, *, runs: int, out_per_row: int, epochs: int, seed: int
) -> float:
    """Grad-evals subset_memorisation spends on n rows with balanced subsets, before it runs:
    runs * epochs * the (padded) run size of balanced_member_rows, plus `runs` forward passes
    over the n rows (FORWARD_ONLY_GRAD_EVALS each)."""
    m = balanced_member_rows(n, runs=runs, out_per_row=out_per_row, seed=seed).shape[1]
    return float(runs * epochs * m) + FORWARD_ONLY_GRAD_EVALS * (runs * n)


def subset_memorisation(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe: MlpRecipe,
    runs: int,
    subset_fraction: float = 0.7,
    seed: int,
    balanced_out_per_row: int | None = None,
    meter: CostMeter | None = None,
) -> ReferenceMemorisation:
    """Reference memorisation of every row: `runs` models, each trained on a random subset.

    Feldman & Zhang, arXiv 2008.03703 sec. 2; RUM (arXiv 2406.01257 sec. 3) uses 70% subsets.
    With `balanced_out_per_row` the subsets come from balanced_member_rows instead (fraction
    1 - balanced_out_per_row/runs; `subset_fraction` is ignored). All runs train together as one
    stacked ensemble (models/mlp.py); cost = runs * epochs * subset size grad-evals, plus `runs`
    forward passes over x to score correctness."""
    if runs < 2:
        raise ValueError(f"runs must be >= 2, got {runs}")
    n = len(y)
    if balanced_out_per_row is not None:
        member_rows = balanced_member_rows(
            n, runs=runs, out_per_row=balanced_out_per_row, seed=seed
        )
    else:
        if not 0 < subset_fraction < 1:
            raise ValueError(f"subset_fraction must be in (0, 1), got {subset_fraction}")
        size = round(subset_fraction * n)
        if not 0 < size < n:
            raise ValueError(
                f"subset_fraction {subset_fraction} leaves no in- or out-rows for n={n}"
            )
        rng = np.random.default_rng(seed)
        member_rows = np.stack(
            [np.sort(rng.choice(n, size=size, replace=False)) for _ in range(runs)]
        )
    member_mask = np.zeros((runs, n), dtype=bool)
    np.put_along_axis(member_mask, member_rows, True, axis=1)
    ensemble = MlpEnsemble(
        dim=x.shape[1], classes=classes, hidden=recipe.hidden, members=runs, seed=seed
    )
    own = CostMeter()
    fit_ensemble(ensemble, x, y, member_rows=member_rows, recipe=recipe, seed=seed + 1, meter=own)
    with own.timing(), torch.no_grad():
        logits = ensemble.logits(torch.as_tensor(x, dtype=DTYPE))
        labels = torch.as_tensor(y, dtype=torch.int64)
        probs = torch.softmax(logits.to(torch.float64), dim=2)[:, torch.arange(n), labels]
        correct = (logits.argmax(dim=2) == labels.unsqueeze(0)).numpy()
    own.add_forwards(runs * n)
    _merge(meter, own)
    return ReferenceMemorisation(
        scores=memorisation_from_runs(correct, member_mask),
        correct=correct,
        true_class_probs=probs.numpy(),
        member_mask=member_mask,
        grad_evals=own.grad_evals,
        seconds=own.seconds,
        ensemble=ensemble,
    )


def proxy_spearman(proxy: ProxyScores, reference: np.ndarray) -> float:
    """Spearman rank correlation of a proxy (oriented: larger = more memorised) with mem(i)."""
    if len(proxy.scores) != len(reference):
        raise ValueError(
            f"proxy and reference must cover the same rows, got {len(proxy.scores)} and "
            f"{len(reference)}"
        )
    return float(spearmanr(proxy.oriented(), reference, nan_policy="omit").statistic)
