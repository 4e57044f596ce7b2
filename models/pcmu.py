"""PCMU: exact unlearning by smoothed, ternary-quantized full-batch gradient steps.

Zhang, Zhao, Che, Zhou, Lyu, "Prompt Certified Machine Unlearning with Randomized Gradient
Smoothing and Quantization", NeurIPS 2022 (OpenReview ue4gP8ZKiWb). The paper ships no code: the
quantizer, the radius and the budget here are OUR RECONSTRUCTION (algorithms.md sec. 2) from its
abstract and Cohen et al. 2019; check the constants against the paper before freezing them.

Why each design choice keeps removal exact (bit-for-bit equal to training on D minus F):
- Q is the argmax of the closed-form smoothed probabilities, hence a deterministic threshold at
  +-g*(sigma, tau). A run is a function of (data, recipe, seed) only, and runs on D and on D \\ F
  take identical steps as long as no mean-gradient coordinate crosses +-g*.
- Update w <- w - eta_t * Q(mean clipped loss gradient + m w), eta_t constant or halving
  (`PcmuRecipe.step_size`). The L2 term is quantized WITH the loss gradient: at a shared
  checkpoint it is identical on D and D \\ F, so it never enters the removal shift, and it lets
  a run reach an exact fixed point (Q = 0 everywhere), after which every later step is a no-op
  and is skipped (by training, replay and retrain alike).
- The init is rounded to a 2^-20 grid and eta is best a power of two: weights are then exact
  lattice points, so a replay that rejoins the stored trajectory is caught by bitwise equality and
  the cheap data-dependent check resumes from there.
- Sound sequential requests: the model keeps, per step, the clipped mean loss gradient of the data
  it currently represents and a slack bounding that estimate's error (removals absorbed by the
  worst-case budget and float rounding). A check-mode removal updates the gradients with the
  exact shift instead of shrinking the margins by |shift|: tighter, and equally sound.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

from models.cost import CostMeter
from models.learning_events import LearningEvents
from models.logreg import DTYPE, output_width, per_example_gradients, probabilities
from models.progress import Progress

# sigma * PhiInv(2/3): below this dead zone the zero outcome never wins, Q degenerates to sign(g)
# whose only flip point is g = 0, and every always-zero feature (digits has several) has margin 0.
MIN_TAU_OVER_SIGMA = float(ndtri(2.0 / 3.0))
INIT_GRID = 2.0**-20  # init rounded to this grid so that weights stay exact dyadic lattice points
FLOAT64_UNIT_ROUNDOFF = 2.0**-53
OPTIMIZER_NOTE = (
    "full-batch ternary step w <- w - eta * Q(g + m w); the paper's runs used Adam (lr 0.01), "
    "whose moments are functions of the Q history, so it would stay exact too (not implemented)"
)
Mode = Literal["budget", "check", "replay"]


@dataclass(frozen=True)
class PcmuRecipe:
    """Everything that defines a PCMU run; stored in certificates so the run can be replayed."""

    sigma: float = 0.005  # smoothing noise std of the per-coordinate ternary quantizer
    tau: float = 0.005  # dead zone: the noisy gradient quantizes to 0 inside [-tau, tau]
    clip: float = 1.0  # per-example loss-gradient norm bound C
    eta: float = 0.25  # step per active coordinate at step 0; a power of two keeps weights exact
    steps: int = 200  # T, full-batch steps (fewer are run once Q = 0 everywhere)
    m: float = 0.0  # L2 strength, quantized together with the loss gradient
    init_std: float = 0.01  # w0 ~ N(0, init_std^2) from the seed, rounded to INIT_GRID
    stop_at_fixed_point: bool = True  # skip the no-op steps after Q = 0 everywhere (exact)
    halve_every: int = 0  # eta halves every this many steps (0: constant eta); see step_size

    def step_size(self, t: int) -> float:
        """eta at step t: eta * 2^-(t // halve_every), a power-of-two step decay.

        Ours (algorithms.md sec. 2 stores "eta schedule" but names none): halving keeps every step
        a power of two, so weights stay exact lattice points and a rejoin is still caught by
        bitwise equality. With a constant eta a small PCMU run can circle a limit cycle until T or
        stop at a fixed point whose step is a chaotic function of the data; with a fast decay
        every run takes all T steps, so a replay from step t* costs exactly what the stored run
        did after t* (benchmarks/results/pcmu_sisa_replay.md)."""
        if self.halve_every <= 0:
            return self.eta
        return self.eta * 2.0 ** -(t // self.halve_every)

    def flip_point(self) -> float:
        return flip_point(sigma=self.sigma, tau=self.tau)

    def validate(self, *, n: int) -> None:
        """Raise ValueError naming the first invalid parameter."""
        for name in ("sigma", "tau", "clip", "eta", "m", "init_std"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if self.tau <= MIN_TAU_OVER_SIGMA * self.sigma:
            raise ValueError(
                f"tau must be > PhiInv(2/3) * sigma = {MIN_TAU_OVER_SIGMA * self.sigma:.6g} so that "
                f"the zero outcome can win (else Q = sign(g) and zero features have margin 0), "
                f"got {self.tau}"
            )
        if self.clip <= 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")
        if self.eta <= 0:
            raise ValueError(f"eta must be > 0, got {self.eta}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if isinstance(self.halve_every, bool) or not isinstance(self.halve_every, int | np.integer):
            raise ValueError(f"halve_every must be an integer, got {self.halve_every!r}")
        if self.halve_every < 0:
            raise ValueError(f"halve_every must be >= 0 (0: constant eta), got {self.halve_every}")
        if self.m < 0:
            raise ValueError(f"m must be >= 0, got {self.m}")
        if self.init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {self.init_std}")
        if n < 2:
            raise ValueError(f"n must be >= 2 training rows, got {n}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flip_point": self.flip_point(), "optimizer": OPTIMIZER_NOTE}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PcmuRecipe:
        """Inverse of `as_dict` (derived keys are ignored). A missing key takes its default, so
        a model stored before `halve_every` existed replays with the constant eta it trained with."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


# ---------------------------------------------------------------------------------------------
# The quantizer: closed-form probabilities, flip point, margin, Cohen's radius.


def quantizer_probabilities(g: np.ndarray, *, sigma: float, tau: float) -> np.ndarray:
    """(p_minus, p_zero, p_plus) of Q(g + N(0, sigma^2)) with dead zone tau, shape g.shape + (3,).

    Zhang et al., NeurIPS 2022, randomized gradient smoothing (reconstruction, algorithms.md sec. 2):
    p_plus = Phi((g - tau)/sigma), p_minus = Phi((-tau - g)/sigma), p_zero = 1 - p_plus - p_minus."""
    g = np.asarray(g, dtype=np.float64)
    p_plus = ndtr((g - tau) / sigma)
    p_minus = ndtr((-tau - g) / sigma)
    # p_zero = Phi(a) - Phi(b); take the difference on the tail side that avoids cancellation.
    a, b = (tau - g) / sigma, (-tau - g) / sigma
    p_zero = np.where(b > 0, ndtr(-b) - ndtr(-a), ndtr(a) - ndtr(b))
    return np.stack([p_minus, p_zero, p_plus], axis=-1)


@lru_cache(maxsize=64)
def _flip_point(sigma: float, tau: float) -> float:
    ratio = tau / sigma

    # In units of sigma, p_plus(u) - p_zero(u) = 2 Phi(u - r) + Phi(-r - u) - 1: strictly
    # increasing on u >= 0, negative at 0 when r > PhiInv(2/3), positive for u >> r.
    def plus_minus_zero(u: float) -> float:
        return 2.0 * ndtr(u - ratio) + ndtr(-ratio - u) - 1.0

    return sigma * brentq(plus_minus_zero, 0.0, ratio + 40.0, xtol=1e-300, maxiter=500)


def flip_point(*, sigma: float, tau: float) -> float:
    """g* > 0 where argmax(p_minus, p_zero, p_plus) changes: Q(g) = 0 on [-g*, g*], sign(g) outside.

    Zhang et al., NeurIPS 2022, quantized smoothed gradient (reconstruction, algorithms.md sec. 2).
    Derived here: p_minus < p_plus for g > 0, p_plus rises and p_zero falls in |g|, so the only
    flips are at +-g*, the root of p_plus = p_zero (brentq to relative 4 ulp). Depends only on
    (sigma, tau): with closed-form Q the dynamics see sigma and tau through g* alone."""
    if sigma <= 0 or tau <= MIN_TAU_OVER_SIGMA * sigma:
        raise ValueError(f"need sigma > 0 and tau > PhiInv(2/3) * sigma, got {sigma=}, {tau=}")
    return _flip_point(float(sigma), float(tau))


def quantize(g: torch.Tensor, *, flip: float) -> torch.Tensor:
    """Q(g) in {-1, 0, +1}: the argmax of the closed-form probabilities, ties broken to 0.

    Exactly the threshold rule at +-flip, so Q and `margin` agree to the last bit; it equals the
    probability argmax except within ~1e-15 relative of +-flip, where that argmax is a float tie."""
    return (g > flip).to(g.dtype) - (g < -flip).to(g.dtype)


def margin(g: torch.Tensor, *, flip: float) -> torch.Tensor:
    """Exact distance from g to the nearest flip point of Q (algorithms.md sec. 2: a valid radius
    at least as large as Cohen's R', since Q here is the smoothed argmax computed exactly)."""
    return (g.abs() - flip).abs()


def cohen_radius(g: np.ndarray, *, sigma: float, tau: float) -> np.ndarray:
    """R' = (sigma/2) (PhiInv(p_A) - PhiInv(p_B)) over the top two probabilities, per entry.

    Cohen, Rosenfeld, Kolter, ICML 2019, Theorem 1, applied to the scalar g as in Zhang et al.,
    NeurIPS 2022 (reconstruction, algorithms.md sec. 2). Reported next to the exact margin."""
    g = np.asarray(g, dtype=np.float64)
    # PhiInv of p_plus / p_minus is known in closed form; p_zero needs ndtri, from the side that
    # keeps precision when p_zero is close to 1 (1 - p_zero = p_plus + p_minus).
    z_plus = (g - tau) / sigma
    z_minus = (-tau - g) / sigma
    p = quantizer_probabilities(g, sigma=sigma, tau=tau)
    outside = ndtr(z_plus) + ndtr(z_minus)
    with np.errstate(divide="ignore"):
        z_zero = np.where(p[..., 1] < 0.5, ndtri(p[..., 1]), -ndtri(outside))
    z = np.sort(np.stack([z_minus, z_zero, z_plus], axis=-1), axis=-1)
    return 0.5 * sigma * (z[..., 2] - z[..., 1])


def min_cohen_radius(g: np.ndarray, *, sigma: float, tau: float) -> float:
    """min over entries of `cohen_radius`, from two entries instead of all of them.

    Derived here: R' depends on |g| only (p_plus(g) = p_minus(-g)), falls as |g| rises to g*
    inside the dead zone (p_zero falls, p_plus rises) and rises with |g| beyond it (p_plus rises,
    p_zero and p_minus fall). So the minimum sits at the largest |g| <= g* or the smallest
    |g| > g*; a certificate's trajectory holds T x d x k entries, and this skips their ndtri."""
    a = np.abs(np.asarray(g, dtype=np.float64)).ravel()
    flip = flip_point(sigma=sigma, tau=tau)
    inside, outside = a[a <= flip], a[a > flip]
    nearest = []
    if inside.size:
        nearest.append(inside.max())
    if outside.size:
        nearest.append(outside.min())
    return float(cohen_radius(np.array(nearest), sigma=sigma, tau=tau).min())


def worst_case_shift(*, removed: int, n: int, clip: float) -> float:
    """Largest move of any mean-gradient coordinate when `removed` of n rows leave: 2 m C/(n - m).

    Zhang et al., NeurIPS 2022 (reconstruction, algorithms.md sec. 2), per-example norms <= C."""
    if removed == 0:
        return 0.0
    return 2.0 * removed * clip / (n - removed)


def worst_case_budget(*, n: int, radius: float, clip: float) -> int:
    """B' = largest b with 2 b C/(n - b) < radius, i.e. floor(n R/(2C + R)) (minus 1 on an exact tie).

    Zhang et al., NeurIPS 2022 (reconstruction, algorithms.md sec. 2); the strict inequality is
    ours, since a gradient landing exactly on a flip point may take the other outcome."""
    if radius <= 0:
        return 0
    bound = n * radius / (2.0 * clip + radius)
    return max(0, min(n - 1, math.ceil(bound) - 1))


def _rounding_allowance(*, n: int, clip: float, l2_max: float) -> float:
    """Bound on the float64 error of a mean of n clipped per-example gradients (plus the L2 term),
    counted twice: once for our estimate, once for a retrain's own computation.

    Higham, Accuracy and Stability of Numerical Algorithms, sec. 4.2: |error| <= ~n u sum|terms|."""
    return 4.0 * FLOAT64_UNIT_ROUNDOFF * (n * clip + l2_max + 1.0)


# ---------------------------------------------------------------------------------------------
# Model state.


@dataclass
class PcmuModel:
    """A PCMU run plus the state its unlearning paths need.

    `mean_gradients[t]` is the clipped mean loss gradient at `checkpoints[t]` on the reference set
    (the `n` rows the model was trained on or last re-derived for); `slack[t]` bounds its error.
    `removed` rows left the reference set since, absorbed by the worst-case budget."""

    weights: torch.Tensor  # final (d, k)
    checkpoints: torch.Tensor  # (S, d, k) weights before each computed step, S <= T
    margins: torch.Tensor  # (S, d, k) certified lower bound on the distance to the flip points
    n: int
    removed: int
    mean_gradients: torch.Tensor  # (S, d, k)
    slack: torch.Tensor  # (S,)
    recipe: PcmuRecipe
    seed: int
    classes: int

    @property
    def steps_run(self) -> int:
        """Full-batch gradient steps computed (T, or fewer when a fixed point was reached)."""
        return int(self.checkpoints.shape[0])

    @property
    def rows(self) -> int:
        """Rows of the data set the model currently represents (what callers must pass as x, y)."""
        return self.n - self.removed

    def min_margin(self) -> float:
        return float(self.margins.min())

    def budget(self) -> int:
        """Removals still covered at zero cost: B'(n, min margin) - removed, never negative.

        Uses the exact margin (a larger valid radius than Cohen's R', algorithms.md sec. 2)."""
        b = worst_case_budget(n=self.n, radius=self.min_margin(), clip=self.recipe.clip)
        return max(0, b - self.removed)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the model next to `recipe.as_dict()` (for storage)."""
        tensors = ("weights", "checkpoints", "margins", "mean_gradients", "slack")
        scalars = ("n", "removed", "seed", "classes")
        return {
            **{name: getattr(self, name).numpy() for name in tensors},
            **{name: np.asarray(getattr(self, name), dtype=np.int64) for name in scalars},
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, recipe: PcmuRecipe) -> PcmuModel:
        tensors = ("weights", "checkpoints", "margins", "mean_gradients", "slack")
        return cls(
            **{name: torch.as_tensor(np.asarray(arrays[name]), dtype=DTYPE) for name in tensors},
            # .item(): storage may hand scalars back as shape (1,) (np.ascontiguousarray in
            # models.weights.dump_state makes 0-d arrays 1-d).
            **{
                name: int(np.asarray(arrays[name]).item())
                for name in ("n", "removed", "seed", "classes")
            },
            recipe=recipe,
        )


@dataclass(frozen=True)
class PcmuCheck:
    """Outcome of the data-dependent check of one forget set against the stored trajectory."""

    passed: bool
    first_flip_step: int | None
    grad_evals: float
    # Every coordinate's new Q at the flipped step is certain, so the replay takes that step from
    # the check's gradient without a full pass (pcmu_unlearn's `decided_q`).
    flip_decided: bool = False


@dataclass
class PcmuUnlearning:
    """New model on the retained rows, how it was obtained, and the certificate payload."""

    model: PcmuModel
    mode: Mode
    first_flip_step: int | None
    certificate: dict[str, Any]
    check_grad_evals: float = 0.0
    replay_grad_evals: float = 0.0
    replayed_steps: int = 0
    rejoins: int = 0

    @property
    def grad_evals(self) -> float:
        return self.check_grad_evals + self.replay_grad_evals


def _margins(
    checkpoints: torch.Tensor,
    mean_gradients: torch.Tensor,
    slack: torch.Tensor,
    *,
    recipe: PcmuRecipe,
) -> torch.Tensor:
    """Certified lower bound on the distance of each step's full gradient to the flip points."""
    full = mean_gradients + recipe.m * checkpoints
    return margin(full, flip=recipe.flip_point()) - slack.view(-1, 1, 1)


def _build_model(
    *,
    weights: torch.Tensor,
    checkpoints: list[torch.Tensor],
    mean_gradients: list[torch.Tensor],
    slack: list[float],
    n: int,
    recipe: PcmuRecipe,
    seed: int,
    classes: int,
) -> PcmuModel:
    ck, mg = torch.stack(checkpoints), torch.stack(mean_gradients)
    sl = torch.tensor(slack, dtype=DTYPE)
    return PcmuModel(
        weights=weights,
        checkpoints=ck,
        margins=_margins(ck, mg, sl, recipe=recipe),
        n=n,
        removed=0,
        mean_gradients=mg,
        slack=sl,
        recipe=recipe,
        seed=seed,
        classes=classes,
    )


# ---------------------------------------------------------------------------------------------
# Training and replay share one step routine, so replay reproduces a retrain bit for bit.


def _initial_weights(*, dim: int, classes: int, recipe: PcmuRecipe, seed: int) -> torch.Tensor:
    """Depends on (seed, shape) only, never on n, so a retrain on D \\ F starts from the same w0."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn((dim, output_width(classes)), generator=gen, dtype=DTYPE) * recipe.init_std
    return torch.round(w / INIT_GRID) * INIT_GRID


@dataclass
class _Segment:
    checkpoints: list[torch.Tensor]
    mean_gradients: list[torch.Tensor]
    weights: torch.Tensor
    next_step: int
    rejoined: bool


def _descend(
    w: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    first_step: int,
    recipe: PcmuRecipe,
    meter: CostMeter,
    events: LearningEvents | None = None,
    stored: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> _Segment:
    """Full-batch steps first_step..T-1 from w; stops at a fixed point, or (replay) as soon as the
    weights bitwise equal the stored checkpoint of the same step: from there the runs coincide.
    `progress(t + 1, T)` after each step t; (T, T) at a fixed point, whose later steps are no-ops.

    Zhang et al., NeurIPS 2022, training with quantized smoothed gradients (reconstruction)."""
    flip = recipe.flip_point()
    binary = w.shape[1] == 1
    rows = torch.arange(len(y))
    segment = _Segment([], [], w, first_step, rejoined=False)
    for t in range(first_step, recipe.steps):
        probs = probabilities(w, x)
        if events is not None:
            events.record(rows, probs, y)
        g = _mean_loss_gradient(probs, x, y, clip=recipe.clip, binary=binary)
        meter.add_gradients(len(y))
        segment.checkpoints.append(w)
        segment.mean_gradients.append(g)
        q = quantize(g + recipe.m * w, flip=flip)
        if recipe.stop_at_fixed_point and not bool(q.any()):
            segment.weights, segment.next_step = w, recipe.steps
            if progress is not None:
                progress(recipe.steps, recipe.steps)
            return segment
        if progress is not None:
            progress(t + 1, recipe.steps)
        w = w - recipe.step_size(t) * q
        if stored is not None and t + 1 < stored.shape[0] and torch.equal(w, stored[t + 1]):
            segment.weights, segment.next_step, segment.rejoined = w, t + 1, True
            return segment
    segment.weights, segment.next_step = w, recipe.steps
    return segment


def _mean_loss_gradient(
    probs: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, clip: float, binary: bool
) -> torch.Tensor:
    """Clipped mean loss gradient from probabilities already computed (learning events reuse them);
    the same arithmetic as models.logreg.clipped_mean_gradient."""
    if binary:
        r = (probs[:, 1] - y.to(DTYPE)).unsqueeze(1)
    else:
        r = probs.clone()
        r[torch.arange(len(y)), y] -= 1.0
    norms = x.norm(dim=1) * r.norm(dim=1)
    scale = torch.clamp(clip / torch.clamp(norms, min=1e-30), max=1.0)
    return x.T @ (r * scale.unsqueeze(1)) / len(y)


def _l2_max(recipe: PcmuRecipe, weights: torch.Tensor) -> float:
    return recipe.m * float(weights.abs().max()) if weights.numel() else 0.0


def _training_tensors(
    x: np.ndarray, y: np.ndarray, *, classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh torch-owned float64 copies, so training and replay hand BLAS identical layouts."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n, d), got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= classes)):
        raise ValueError(f"y must hold integer labels in [0, {classes}), got dtype {y.dtype}")
    return torch.tensor(x, dtype=DTYPE), torch.tensor(y, dtype=torch.int64)


def train_pcmu(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    recipe: PcmuRecipe,
    seed: int,
    events: LearningEvents | None = None,
    meter: CostMeter | None = None,
    progress: Progress | None = None,
) -> PcmuModel:
    """Train by full-batch quantized steps, storing what the check and the replay need.

    Zhang et al., NeurIPS 2022 (reconstruction, algorithms.md sec. 2). Costs n grad-evals per
    computed step; stops early (exactly) once Q = 0 everywhere if the recipe says so.
    `progress(done, T)` per step, reaching (T, T) at the end, early stop included."""
    output_width(classes)  # raises on classes < 2
    recipe.validate(n=len(y))
    xt, yt = _training_tensors(x, y, classes=classes)
    meter = meter or CostMeter()
    w0 = _initial_weights(dim=xt.shape[1], classes=classes, recipe=recipe, seed=seed)
    with meter.timing():
        run = _descend(
            w0, xt, yt, first_step=0, recipe=recipe, meter=meter, events=events, progress=progress
        )
    allowance = _rounding_allowance(
        n=len(yt), clip=recipe.clip, l2_max=_l2_max(recipe, torch.stack(run.checkpoints))
    )
    return _build_model(
        weights=run.weights,
        checkpoints=run.checkpoints,
        mean_gradients=run.mean_gradients,
        slack=[allowance] * len(run.checkpoints),
        n=len(yt),
        recipe=recipe,
        seed=seed,
        classes=classes,
    )


@dataclass
class _CheckRun:
    """Checked prefix of the stored trajectory: steps start..stop-1 keep their Q on D \\ F."""

    stop: int
    mean_gradients: list[torch.Tensor]
    slack: list[float]
    grad_evals: float
    # At the failing step: the estimate, its slack, and the new Q if every coordinate is certain.
    failed_gradient: torch.Tensor | None = None
    failed_slack: float = 0.0
    decided_q: torch.Tensor | None = None


def _check_steps(
    model: PcmuModel,
    xf: torch.Tensor,
    yf: torch.Tensor,
    *,
    start: int,
    meter: CostMeter,
    progress: Progress | None = None,
) -> _CheckRun:
    """Data-dependent check from `start`: exact shift (m g_t - sum_F grad_i(w_t)) / (n - m) of the
    mean gradient, compared with the flip points; |F| grad-evals per step.

    algorithms.md sec. 2, data-dependent check (our extension of Zhang et al., NeurIPS 2022)."""
    recipe, flip = model.recipe, model.recipe.flip_point()
    rows, m = model.rows, len(yf)
    # The stored gradients are exact for the reference set; budget removals since move the true
    # mean of the current rows by at most the worst-case shift, so widen the slack by it.
    carried = worst_case_shift(removed=model.removed, n=model.n, clip=recipe.clip)
    allowance = _rounding_allowance(
        n=rows, clip=recipe.clip, l2_max=_l2_max(recipe, model.checkpoints)
    )
    run = _CheckRun(stop=model.steps_run, mean_gradients=[], slack=[], grad_evals=0.0)
    for t in range(start, model.steps_run):
        w, g_ref = model.checkpoints[t], model.mean_gradients[t]
        forget_sum = per_example_gradients(w, xf, yf, clip=recipe.clip).sum(dim=0)
        meter.add_gradients(m)
        run.grad_evals += m
        g_new = g_ref + (m * g_ref - forget_sum) / (rows - m)
        slack_new = (float(model.slack[t]) + carried) * rows / (rows - m) + allowance
        q_new = quantize(g_new + recipe.m * w, flip=flip)
        certain = bool((margin(g_new + recipe.m * w, flip=flip) > slack_new).all())
        if certain and torch.equal(q_new, quantize(g_ref + recipe.m * w, flip=flip)):
            run.mean_gradients.append(g_new)
            run.slack.append(slack_new)
            if progress is not None:
                progress(t + 1, recipe.steps)
            continue
        run.stop, run.failed_gradient, run.failed_slack = t, g_new, slack_new
        run.decided_q = q_new if certain else None
        return run
    return run


def _forget_split(
    model: PcmuModel, x: np.ndarray, y: np.ndarray, forget_rows: np.ndarray, recipe: PcmuRecipe
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Validated tensors of the current rows, the sorted forget positions and the kept ones."""
    if recipe != model.recipe:
        raise ValueError(f"recipe differs from the one the model was trained with: {model.recipe}")
    xt, yt = _training_tensors(x, y, classes=model.classes)
    if xt.shape != (model.rows, model.weights.shape[0]):
        raise ValueError(
            f"x must be the {model.rows} rows the model currently represents, shape "
            f"({model.rows}, {model.weights.shape[0]}), got {tuple(xt.shape)}"
        )
    f = np.asarray(forget_rows)
    if f.ndim != 1 or f.size == 0 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"forget_rows must be a non-empty 1-D integer array, got {f!r}")
    f = np.unique(f)
    if f.size != np.asarray(forget_rows).size:
        raise ValueError("forget_rows must not repeat a row")
    if f[0] < 0 or f[-1] >= model.rows:
        raise ValueError(f"forget_rows must be positions in [0, {model.rows}), got {f[0]}..{f[-1]}")
    if model.rows - f.size < 2:
        raise ValueError(f"forget_rows would leave {model.rows - f.size} rows; need >= 2")
    keep = np.setdiff1d(np.arange(model.rows), f)
    return xt, yt, f, keep


def pcmu_check(
    model: PcmuModel,
    x: np.ndarray,
    y: np.ndarray,
    forget_rows: np.ndarray,
    *,
    recipe: PcmuRecipe,
    meter: CostMeter | None = None,
) -> PcmuCheck:
    """Would training on the current rows minus `forget_rows` take exactly the stored steps?

    algorithms.md sec. 2, data-dependent check: at most S * |F| grad-evals (stops at the first
    step whose quantized gradient may flip)."""
    xt, yt, f, _ = _forget_split(model, x, y, forget_rows, recipe)
    meter = meter or CostMeter()
    with meter.timing():
        run = _check_steps(model, xt[f], yt[f], start=0, meter=meter)
    passed = run.stop == model.steps_run
    return PcmuCheck(
        passed, None if passed else run.stop, run.grad_evals, run.decided_q is not None
    )


def pcmu_unlearn_grad_evals(
    model: PcmuModel, check: PcmuCheck, *, removed: int
) -> tuple[float, float]:
    """(point estimate, upper bound) of `pcmu_unlearn`'s grad-evals past the budget, given the
    data-dependent check it will repeat (`check`, on the same rows) and |F| = `removed`.

    Point estimate: the check plus a replay of the stored run's remaining steps,
    (steps_run - t*) * (n - |F|) (algorithms.md sec. 2), less step t* when the check decided it.
    With a constant eta the replay stops at its own fixed point, which can come much earlier or
    later than the stored run's (chaotic: on digits shards the estimate is 0.15x-2.8x the cost,
    benchmarks/results/pcmu_sisa_replay.md), so the estimate is not a bound; a recipe whose runs
    take all T steps (eta halving, T = 40 in models.pcmu_sisa.DEFAULT_SHARD_PCMU) makes it the
    cost, unless a replay rejoins or stops. Upper bound: every step t >= t* is computed at most
    once on the n - |F| retained rows (a run never passes T) and, after a bitwise rejoin, checked
    at most once again for |F| (checks stop at the stored steps_run; step t* is already in
    `check`): check + (T - t*)(n - |F|) + (steps_run - t* - 1)|F|."""
    if check.passed or check.first_flip_step is None:
        return check.grad_evals, check.grad_evals
    t, kept = check.first_flip_step, model.rows - removed
    point = check.grad_evals + (model.steps_run - t - int(check.flip_decided)) * kept
    upper = (
        check.grad_evals
        + (model.recipe.steps - t) * kept
        + max(0, model.steps_run - t - 1) * removed
    )
    return float(point), float(upper)


def pcmu_retrain_grad_evals(model_or_recipe: PcmuModel | PcmuRecipe, *, n: int) -> int:
    """Grad-evals of a retrain on n rows: T * n for a recipe; for a model, its computed steps * n
    (a retrain on nearly the same rows stops at a nearby fixed point; an estimate, not a bound)."""
    if isinstance(model_or_recipe, PcmuModel):
        return model_or_recipe.steps_run * n
    return model_or_recipe.steps * n


def pcmu_unlearn(
    model: PcmuModel,
    x: np.ndarray,
    y: np.ndarray,
    forget_rows: np.ndarray,
    *,
    recipe: PcmuRecipe,
    meter: CostMeter | None = None,
    progress: Progress | None = None,
) -> PcmuUnlearning:
    """Exactly the model PCMU training on the retained rows gives, by the cheapest sound path.

    budget: cumulative removals within B' (zero cost; Zhang et al., NeurIPS 2022, reconstruction);
    check: the data-dependent check passes on every stored step (S * |F| grad-evals);
    replay: recompute from the first flip on the retained rows (n - |F| per step), going back to
    the cheap check whenever the replay bitwise rejoins the stored trajectory (algorithms.md sec. 2).
    x, y are the rows the model currently represents; forget_rows are positions in them.
    `progress(t, T)` follows the trajectory step t checked or replayed, ending at (T, T)."""
    xt, yt, f, keep = _forget_split(model, x, y, forget_rows, recipe)
    meter = meter or CostMeter()
    m, rows = int(f.size), model.rows
    if m <= model.budget():
        if progress is not None:
            progress(recipe.steps, recipe.steps)  # nothing to recompute: every step stands
        new = replace(model, removed=model.removed + m)
        result = PcmuUnlearning(new, "budget", None, {})
        result.certificate = _certificate(result, rows_before=rows, removed_rows=m)
        return result

    xf, yf, xk, yk = xt[f], yt[f], xt[keep], yt[keep]
    checkpoints: list[torch.Tensor] = []
    gradients: list[torch.Tensor] = []
    slack: list[float] = []
    check_evals = replay_evals = 0.0
    first_flip: int | None = None
    replayed = rejoins = 0
    t = 0
    with meter.timing():
        while True:
            run = _check_steps(model, xf, yf, start=t, meter=meter, progress=progress)
            check_evals += run.grad_evals
            checkpoints.extend(model.checkpoints[t : run.stop])
            gradients.extend(run.mean_gradients)
            slack.extend(run.slack)
            if run.stop == model.steps_run:
                weights = model.weights
                break
            t = run.stop
            first_flip = t if first_flip is None else first_flip
            w = model.checkpoints[t]
            if run.decided_q is not None:
                # Every coordinate of the flipped step is certain: take it without a full pass.
                checkpoints.append(w)
                gradients.append(run.failed_gradient)
                slack.append(run.failed_slack)
                if recipe.stop_at_fixed_point and not bool(run.decided_q.any()):
                    weights = w
                    break
                w, t = w - recipe.step_size(t) * run.decided_q, t + 1
                if progress is not None:
                    progress(t, recipe.steps)
                if t == recipe.steps:
                    weights = w
                    break
                if t < model.steps_run and torch.equal(w, model.checkpoints[t]):
                    rejoins += 1
                    continue
            before = meter.grad_evals
            seg = _descend(
                w,
                xk,
                yk,
                first_step=t,
                recipe=recipe,
                meter=meter,
                stored=model.checkpoints,
                progress=progress,
            )
            replay_evals += meter.grad_evals - before
            replayed += len(seg.checkpoints)
            checkpoints.extend(seg.checkpoints)
            gradients.extend(seg.mean_gradients)
            fresh = _rounding_allowance(
                n=rows - m, clip=recipe.clip, l2_max=_l2_max(recipe, torch.stack(seg.checkpoints))
            )
            slack.extend([fresh] * len(seg.checkpoints))
            if not seg.rejoined:
                weights = seg.weights
                break
            rejoins += 1
            t = seg.next_step
    if progress is not None:
        progress(recipe.steps, recipe.steps)  # steps past a fixed point are no-ops

    new = _build_model(
        weights=weights,
        checkpoints=checkpoints,
        mean_gradients=gradients,
        slack=slack,
        n=rows - m,
        recipe=recipe,
        seed=model.seed,
        classes=model.classes,
    )
    mode: Mode = "check" if first_flip is None else "replay"
    result = PcmuUnlearning(new, mode, first_flip, {}, check_evals, replay_evals, replayed, rejoins)
    result.certificate = _certificate(result, rows_before=rows, removed_rows=m)
    return result


def _certificate(result: PcmuUnlearning, *, rows_before: int, removed_rows: int) -> dict[str, Any]:
    """Payload for data_contracts.certificate: exact relative to PCMU training on the retained rows."""
    model, recipe = result.model, result.model.recipe
    full = model.mean_gradients + recipe.m * model.checkpoints
    per_step = model.margins.flatten(1).min(dim=1).values
    return {
        "method": f"pcmu-{result.mode}",
        "guarantee": "exact",
        "reference": "Zhang et al., NeurIPS 2022 (reconstruction, algorithms.md sec. 2)",
        "recipe": recipe.as_dict(),
        "seed": model.seed,
        "mode": result.mode,
        "rows_before": rows_before,
        "rows_removed": removed_rows,
        "rows_after": model.rows,
        "first_flip_step": result.first_flip_step,
        "replayed_steps": result.replayed_steps,
        "rejoins": result.rejoins,
        "steps_run": model.steps_run,
        "budget_left": model.budget(),
        "margin_min": float(per_step.min()),
        "margin_min_per_step": [float(v) for v in per_step],
        "cohen_radius_min": min_cohen_radius(full.numpy(), sigma=recipe.sigma, tau=recipe.tau),
        "grad_evals": {
            "check": result.check_grad_evals,
            "replay": result.replay_grad_evals,
            "total": result.grad_evals,
            "retrain_estimate": pcmu_retrain_grad_evals(model, n=model.rows),
        },
    }
