"""Privacy accountants for certified unlearning: Rényi bounds, their (epsilon, delta) conversion,
and the smallest number of noisy unlearning epochs (or iterations) that meets a target epsilon.

Mini-batch PNSGD: Chien, Wang, Chen, Li, "Certified Machine Unlearning via Noisy Stochastic
Gradient Descent", arXiv 2403.17105 (NeurIPS 2024). Full-batch Langevin unlearning: Chien, Wang,
Chen, Li, "Langevin Unlearning", arXiv 2401.10371. Formulas as restated in algorithms.md sec. 1,
which follows the authors' code (Graph-COM/SGD_unlearning, Graph-COM/Langevin_unlearning).
Citations give the paper section; theorem numbers were not checked against the PDFs.

Numerics: powers such as c^(2*K*n/b) underflow for large K, so every bound is computed from
log c = log1p(-eta*m) with exp/expm1; a huge K gives epsilon ~ 0, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize_scalar

from models.logreg import smoothness

Bound = Literal["loose", "tight", "non-convergent"]
BOUNDS: tuple[Bound, ...] = ("loose", "tight", "non-convergent")

# alpha - 1 is searched on a log grid over [1e-9, 1e15]; the upper end only matters once the
# Rényi bound is ~0, where epsilon is then at most log(1/delta) * 1e-15.
_LOG_ALPHA_MINUS_ONE_MIN = math.log(1e-9)
_LOG_ALPHA_MINUS_ONE_MAX = math.log(1e15)
_ALPHA_GRID_POINTS = 241
# Relative slack on eta <= 1/L so that eta = 1/L computed elsewhere is not rejected by rounding.
_ETA_RTOL = 1e-12


@dataclass(frozen=True)
class PnsgdConstants:
    """Problem constants of the mini-batch PNSGD accountant (algorithms.md sec. 1)."""

    n: int
    batch_size: int
    m: float  # strong convexity, = lambda * n
    classes: int
    eta: float
    smoothness: float  # L
    c: float  # contraction per step, 1 - eta * m
    steps_per_epoch: float  # n / b as a real ratio: the papers' exponent, not ceil(n / b)
    z_b: float  # W-infinity distance of adjacent stationary laws, capped at 2R
    clip: float  # M, per-example gradient norm bound
    radius: float  # R, projection radius

    @property
    def log_c(self) -> float:
        """log(1 - eta*m), computed without cancellation."""
        return math.log1p(-self.eta * self.m)

    @property
    def z_cap(self) -> float:
        """2R: no two points of the radius-R ball are further apart."""
        return 2.0 * self.radius


@dataclass(frozen=True)
class Epsilon:
    """An (epsilon, delta) guarantee and the Rényi order alpha it was converted from."""

    epsilon: float
    alpha: float
    delta: float


def _require_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


def _require_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


def _require_count(name: str, value: int, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def pnsgd_constants(
    *,
    n: int,
    batch_size: int,
    m: float,
    classes: int,
    eta: float | None = None,
    clip: float = 1.0,
    radius: float = 100.0,
) -> PnsgdConstants:
    """Validated constants for the PNSGD accountant; eta None means 1/L.

    Z_B = 2*eta*M / (b*(1 - c^(n/b))), capped at 2R: arXiv 2403.17105, sec. 3 (Lemma 3.3 on the
    W-infinity distance of adjacent stationary laws); algorithms.md sec. 1."""
    _require_count("n", n, minimum=1)
    _require_count("classes", classes, minimum=2)
    _require_count("batch_size", batch_size, minimum=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= n = {n}, got {batch_size}")
    _require_positive("m", m)
    _require_positive("clip", clip)
    _require_positive("radius", radius)
    lipschitz = smoothness(classes=classes, m=m)
    if eta is None:
        eta = 1.0 / lipschitz
    _require_positive("eta", eta)
    if eta > (1.0 / lipschitz) * (1 + _ETA_RTOL):
        raise ValueError(f"eta must be <= 1/L = {1.0 / lipschitz:.6g}, got {eta}")
    # eta <= 1/L < 1/m, so c is in (0, 1).
    log_c = math.log1p(-eta * m)
    steps_per_epoch = n / batch_size
    z_b = 2.0 * eta * clip / (batch_size * -math.expm1(steps_per_epoch * log_c))
    return PnsgdConstants(
        n=n,
        batch_size=batch_size,
        m=m,
        classes=classes,
        eta=eta,
        smoothness=lipschitz,
        c=1.0 - eta * m,
        steps_per_epoch=steps_per_epoch,
        z_b=min(z_b, 2.0 * radius),
        clip=clip,
        radius=radius,
    )


def batch_z(k: PnsgdConstants, *, removed: int, carried_z: float = 0.0) -> float:
    """Z for one request removing `removed` points at once: carried_z + removed * Z_B, capped at 2R.

    Removing S points: Z grows at most linearly in S (triangle inequality for W-infinity);
    sequential requests add to the Z left by the previous one (arXiv 2403.17105, sec. 3 on
    sequential and batch unlearning; algorithms.md sec. 1)."""
    _require_count("removed", removed)
    if removed > k.n:
        raise ValueError(f"removed must be <= n = {k.n}, got {removed}")
    if not (math.isfinite(carried_z) and carried_z >= 0):
        raise ValueError(f"carried_z must be a finite number >= 0, got {carried_z}")
    return min(carried_z + removed * k.z_b, k.z_cap)


def z_after_epochs(k: PnsgdConstants, *, z: float, epochs: int) -> float:
    """z * c^(epochs * n/b): the distance a request leaves for the next one.

    Sequential rule Z_s = Z_{s-1} * c^(k_{s-1} n/b) + Z_B, arXiv 2403.17105 sec. 3
    (algorithms.md sec. 1); this is its first term."""
    if not (math.isfinite(z) and z >= 0):
        raise ValueError(f"z must be a finite number >= 0, got {z}")
    _require_count("epochs", epochs)
    return min(z, k.z_cap) * math.exp(epochs * k.steps_per_epoch * k.log_c)


def _grid_minimum(objective: Callable[[float], float]) -> tuple[float, float]:
    """(t, value) minimising objective(t) over the log(alpha - 1) range: grid, then Brent."""
    grid = np.linspace(_LOG_ALPHA_MINUS_ONE_MIN, _LOG_ALPHA_MINUS_ONE_MAX, _ALPHA_GRID_POINTS)
    values = np.array([objective(float(t)) for t in grid])
    best = int(np.argmin(values))
    t_best, v_best = float(grid[best]), float(values[best])
    if not math.isfinite(v_best):
        return t_best, math.inf
    lo = float(grid[max(best - 1, 0)])
    hi = float(grid[min(best + 1, len(grid) - 1)])

    # Brent cannot handle inf; a huge finite stand-in keeps it inside the finite region.
    def finite(t: float) -> float:
        v = objective(t)
        return v if math.isfinite(v) else 1e300

    res = minimize_scalar(finite, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    if res.success and float(res.fun) < v_best:
        return float(res.x), float(res.fun)
    return t_best, v_best


def renyi_to_dp(renyi: Callable[[float], float], *, delta: float) -> Epsilon:
    """epsilon_DP = min over alpha > 1 of eps_alpha + log(1/delta)/(alpha - 1).

    RDP-to-DP conversion (Mironov 2017, Prop. 3), as used in arXiv 2403.17105 and 2401.10371
    (algorithms.md sec. 1). Minimised numerically on a log scale of alpha - 1 in [1e-9, 1e15]
    (grid, then bounded Brent); epsilon is inf when the bound is vacuous at every order."""
    _require_delta(delta)
    log_inv_delta = -math.log(delta)

    def objective(t: float) -> float:
        alpha_minus_one = math.exp(t)
        with np.errstate(all="ignore"):
            value = float(renyi(1.0 + alpha_minus_one)) + log_inv_delta / alpha_minus_one
        return value if not math.isnan(value) else math.inf

    t, value = _grid_minimum(objective)
    if not math.isfinite(value):
        return Epsilon(epsilon=math.inf, alpha=math.inf, delta=delta)
    return Epsilon(epsilon=value, alpha=1.0 + math.exp(t), delta=delta)


def _exp(x: float) -> float:
    """exp that saturates to inf instead of raising OverflowError."""
    return math.exp(x) if x < 709.0 else math.inf


def _linear_renyi_to_dp(log_slope: float, *, delta: float) -> Epsilon:
    """Closed form of renyi_to_dp for eps_alpha = a*alpha, a = exp(log_slope).

    min over alpha of a*alpha + l/(alpha - 1), l = log(1/delta): alpha = 1 + sqrt(l/a),
    epsilon = a + 2*sqrt(a*l). Worked in logs so a tiny a gives epsilon ~ 0, alpha ~ inf."""
    log_l = math.log(-math.log(delta))
    if log_slope == -math.inf:
        return Epsilon(epsilon=0.0, alpha=math.inf, delta=delta)
    epsilon = _exp(log_slope) + 2.0 * _exp(0.5 * (log_slope + log_l))
    return Epsilon(epsilon=epsilon, alpha=1.0 + _exp(0.5 * (log_l - log_slope)), delta=delta)


def _non_convergent_renyi_to_dp(slope: float, *, delta: float) -> Epsilon:
    """Closed form of renyi_to_dp for eps_alpha = A*alpha*(alpha - 1/2)/(alpha - 1).

    With u = alpha - 1 and l = log(1/delta) the objective is A*u + 3A/2 + (A/2 + l)/u, minimised
    at u = sqrt((A/2 + l)/A): epsilon = 3A/2 + 2*sqrt(A*(A/2 + l))."""
    if slope == 0.0:
        return Epsilon(epsilon=0.0, alpha=math.inf, delta=delta)
    if slope == math.inf:
        return Epsilon(epsilon=math.inf, alpha=math.inf, delta=delta)
    l_term = 0.5 * slope - math.log(delta)
    epsilon = 1.5 * slope + 2.0 * math.sqrt(slope) * math.sqrt(l_term)
    return Epsilon(epsilon=epsilon, alpha=1.0 + math.sqrt(l_term / slope), delta=delta)


def _log_noise_scale(k: PnsgdConstants, sigma: float) -> float:
    """log(2 eta sigma^2), without sigma**2 underflowing for tiny sigma."""
    return math.log(2.0 * k.eta) + 2.0 * math.log(sigma)


def _pnsgd_log_slope(
    k: PnsgdConstants, *, sigma: float, epochs: int, z: float, bound: Bound
) -> float:
    """log a where the loose / tight bound is eps_alpha = a*alpha (arXiv 2403.17105, sec. 3).

    loose: a = Z^2/(2 eta sigma^2) * c^(2Kn/b); tight: a = Z^2/(2 eta sigma^2) * (1 - c^2)
    * c^(2Kn/b) / (1 - c^(2Kn/b)) (algorithms.md sec. 1; the tight form is the one in the
    authors' code, epsilon_alpha_loose / epsilon_with_alpha_z)."""
    log_base = 2.0 * math.log(z) - _log_noise_scale(k, sigma)
    two_x_log_c = 2.0 * epochs * k.steps_per_epoch * k.log_c  # log c^(2Kn/b), <= 0
    if bound == "loose":
        return log_base + two_x_log_c
    # c^(2x)/(1 - c^(2x)) = 1/expm1(-2x log c); 1 - c^2 = -expm1(2 log c).
    log_one_minus_c2 = math.log(-math.expm1(2.0 * k.log_c))
    return log_base + log_one_minus_c2 - _log_expm1(-two_x_log_c)


def _log_expm1(y: float) -> float:
    """log(e^y - 1) for y > 0 without overflow: for large y it is y + log1p(-e^-y)."""
    return y + math.log1p(-math.exp(-y)) if y > 30 else math.log(math.expm1(y))


def _non_convergent_slope(
    k: PnsgdConstants, *, sigma: float, epochs: int, z: float, train_epochs: int
) -> float:
    """A with (e1 + e2) = A*alpha for the non-convergent bound, q = p = 2.

    e1 = q*alpha*(2R)^2/(2 eta sigma^2) * c^(2Tn/b); e2 = p*alpha*(z + 2R c^(Tn/b))^2
    /(2 eta sigma^2) * c^(2Kn/b) (arXiv 2403.17105, non-convergent case, sec. 3; algorithms.md
    sec. 1, which evaluates both terms at q*alpha, p*alpha: a conservative form of the weak
    triangle inequality in the authors' code)."""
    q = p = 2.0
    log_noise = _log_noise_scale(k, sigma)
    log_c_t = train_epochs * k.steps_per_epoch * k.log_c  # log c^(Tn/b)
    log_e1 = math.log(q) + 2.0 * math.log(2.0 * k.radius) - log_noise + 2.0 * log_c_t
    log_e2 = (
        math.log(p)
        + 2.0 * math.log(z + 2.0 * k.radius * math.exp(log_c_t))
        - log_noise
        + 2.0 * epochs * k.steps_per_epoch * k.log_c
    )
    return _exp(log_e1) + _exp(log_e2)


def _validated_z(
    k: PnsgdConstants,
    *,
    sigma: float,
    epochs: int,
    z: float,
    bound: Bound,
    train_epochs: int | None,
) -> float:
    """Check the shared PNSGD bound arguments; returns z capped at 2R."""
    _require_positive("sigma", sigma)
    _require_count("epochs", epochs)
    if not (math.isfinite(z) and z >= 0):
        raise ValueError(f"z must be a finite number >= 0, got {z}")
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {', '.join(BOUNDS)}, got {bound!r}")
    if bound == "non-convergent":
        if train_epochs is None:
            raise ValueError("train_epochs is required for the non-convergent bound")
        _require_count("train_epochs", train_epochs)
    return min(z, k.z_cap)


def pnsgd_renyi(
    k: PnsgdConstants,
    *,
    alpha: float,
    sigma: float,
    epochs: int,
    z: float,
    bound: Bound = "tight",
    train_epochs: int | None = None,
) -> float:
    """Rényi bound eps_alpha after `epochs` unlearning epochs at distance z (alpha > 1).

    arXiv 2403.17105, sec. 3; algorithms.md sec. 1 (see _pnsgd_log_slope and
    _non_convergent_slope for the formulas). Same conventions as pnsgd_epsilon for z = 0 and
    epochs = 0."""
    z = _validated_z(k, sigma=sigma, epochs=epochs, z=z, bound=bound, train_epochs=train_epochs)
    if not alpha > 1:
        raise ValueError(f"alpha must be > 1, got {alpha}")
    if z == 0.0:
        return 0.0
    if epochs == 0:
        return math.inf
    if bound == "non-convergent":
        assert train_epochs is not None
        slope = _non_convergent_slope(k, sigma=sigma, epochs=epochs, z=z, train_epochs=train_epochs)
        return slope * alpha * (alpha - 0.5) / (alpha - 1.0)
    return _exp(_pnsgd_log_slope(k, sigma=sigma, epochs=epochs, z=z, bound=bound)) * alpha


def pnsgd_epsilon(
    k: PnsgdConstants,
    *,
    sigma: float,
    epochs: int,
    delta: float,
    z: float,
    bound: Bound = "tight",
    train_epochs: int | None = None,
) -> Epsilon:
    """(epsilon, delta) after `epochs` noisy PNSGD epochs on the retained data, for distance z.

    Chien et al., arXiv 2403.17105, sec. 3 (loose / tight) and the non-convergent bound
    (q = p = 2, needs `train_epochs` T); algorithms.md sec. 1. z is the W-infinity distance
    (batch_z); z is capped at 2R. z = 0 means nothing to forget: epsilon 0. The bounds need at
    least one noisy step, so epochs = 0 with z > 0 gives epsilon = inf. The alpha minimisation
    uses the closed forms of renyi_to_dp (both bounds are simple in alpha)."""
    z = _validated_z(k, sigma=sigma, epochs=epochs, z=z, bound=bound, train_epochs=train_epochs)
    _require_delta(delta)
    if z == 0.0:
        return Epsilon(epsilon=0.0, alpha=math.inf, delta=delta)
    if epochs == 0:
        return Epsilon(epsilon=math.inf, alpha=math.inf, delta=delta)
    if bound == "non-convergent":
        assert train_epochs is not None
        slope = _non_convergent_slope(k, sigma=sigma, epochs=epochs, z=z, train_epochs=train_epochs)
        return _non_convergent_renyi_to_dp(slope, delta=delta)
    log_slope = _pnsgd_log_slope(k, sigma=sigma, epochs=epochs, z=z, bound=bound)
    return _linear_renyi_to_dp(log_slope, delta=delta)


def _smallest_count(
    epsilon_at: Callable[[int], Epsilon],
    *,
    target_epsilon: float,
    start: int,
    limit: int,
    limit_name: str,
) -> tuple[int, Epsilon]:
    """Smallest integer K in [start, limit] with epsilon_at(K) <= target, for epsilon decreasing in
    K: exponential search for an upper end, then bisection."""
    first = epsilon_at(start)
    if first.epsilon <= target_epsilon:
        return start, first
    lo, hi = start, max(start, 1)
    while True:
        hi = min(hi * 2, limit)
        at_hi = epsilon_at(hi)
        if at_hi.epsilon <= target_epsilon:
            break
        if hi >= limit:
            raise ValueError(
                f"target_epsilon {target_epsilon} is not reachable within {limit_name} = {limit} "
                f"(epsilon there is {at_hi.epsilon:.6g})"
            )
        lo = hi
    # Invariant: epsilon(lo) > target >= epsilon(hi).
    while hi - lo > 1:
        mid = (lo + hi) // 2
        at_mid = epsilon_at(mid)
        if at_mid.epsilon <= target_epsilon:
            hi, at_hi = mid, at_mid
        else:
            lo = mid
    return hi, at_hi


def pnsgd_min_epochs(
    k: PnsgdConstants,
    *,
    sigma: float,
    target_epsilon: float,
    delta: float,
    z: float,
    bound: Bound = "tight",
    train_epochs: int | None = None,
    max_epochs: int = 100_000,
) -> tuple[int, Epsilon]:
    """Smallest K >= 1 (0 only when z == 0) whose PNSGD epsilon is <= target_epsilon.

    Epsilon decreases in K (every bound holds c^(2Kn/b) with c < 1), so exponential search plus
    bisection is exact. Raises ValueError if the target is unreachable within max_epochs (the
    non-convergent bound has a floor set by T)."""
    _require_positive("target_epsilon", target_epsilon)
    _require_count("max_epochs", max_epochs, minimum=1)

    def at(epochs: int) -> Epsilon:
        return pnsgd_epsilon(
            k,
            sigma=sigma,
            epochs=epochs,
            delta=delta,
            z=z,
            bound=bound,
            train_epochs=train_epochs,
        )

    # Validate every argument once, before searching.
    zero = at(0)
    if zero.epsilon == 0.0:
        return 0, zero
    return _smallest_count(
        at, target_epsilon=target_epsilon, start=1, limit=max_epochs, limit_name="max_epochs"
    )


def _validate_langevin(*, n: int, m: float, sigma: float, eta: float, clip: float) -> None:
    _require_count("n", n, minimum=1)
    _require_positive("m", m)
    _require_positive("sigma", sigma)
    _require_positive("eta", eta)
    # eta <= 1/L and L >= m, so eta*m <= 1 is necessary; the contraction needs it.
    if eta * m > 1:
        raise ValueError(f"eta must be <= 1/m = {1 / m:.6g} (eta <= 1/L <= 1/m), got {eta}")
    _require_positive("clip", clip)


def _langevin_eps0(
    alpha: float, *, n: int, m: float, sigma: float, removed: int, clip: float
) -> float:
    """eps0(alpha) = 4 alpha S^2 M^2 / (m sigma^2 n^2): Rényi bound, adjacent stationary laws.

    Chien et al., arXiv 2401.10371, sec. 3 (via the LSI constant 2 sigma^2/m); algorithms.md
    sec. 1; the same expression as epsilon_expression in the authors' code."""
    # Divide by sigma twice: sigma**2 can underflow to 0 (ZeroDivisionError); this saturates to inf.
    return 4.0 * alpha * removed**2 * clip**2 / (m * n**2) / sigma / sigma


def _langevin_renyi(
    alpha: float,
    *,
    n: int,
    m: float,
    sigma: float,
    removed: int,
    iterations: int,
    eta: float,
    clip: float,
) -> float:
    """eps_K(alpha) = exp(-K eta m / alpha) * eps0(alpha) (arXiv 2401.10371, sec. 3)."""
    eps0 = _langevin_eps0(alpha, n=n, m=m, sigma=sigma, removed=removed, clip=clip)
    return math.exp(-iterations * eta * m / alpha) * eps0


def _validate_langevin_request(*, n: int, removed: int, iterations: int) -> None:
    _require_count("removed", removed)
    if removed > n:
        raise ValueError(f"removed must be <= n = {n}, got {removed}")
    _require_count("iterations", iterations)


def langevin_renyi(
    *,
    alpha: float,
    n: int,
    m: float,
    sigma: float,
    removed: int,
    iterations: int,
    eta: float,
    clip: float = 1.0,
) -> float:
    """Rényi bound eps_K(alpha) of full-batch Langevin unlearning (alpha > 1).

    eps_K(alpha) = exp(-K eta m / alpha) * 4 alpha S^2 M^2 / (m sigma^2 n^2), arXiv 2401.10371,
    sec. 3; algorithms.md sec. 1."""
    _validate_langevin(n=n, m=m, sigma=sigma, eta=eta, clip=clip)
    _validate_langevin_request(n=n, removed=removed, iterations=iterations)
    if not alpha > 1:
        raise ValueError(f"alpha must be > 1, got {alpha}")
    return _langevin_renyi(
        alpha, n=n, m=m, sigma=sigma, removed=removed, iterations=iterations, eta=eta, clip=clip
    )


def langevin_epsilon(
    *,
    n: int,
    m: float,
    sigma: float,
    removed: int,
    iterations: int,
    eta: float,
    delta: float,
    clip: float = 1.0,
) -> Epsilon:
    """(epsilon, delta) after `iterations` full-batch Langevin unlearning steps removing `removed`.

    Chien et al., "Langevin Unlearning", arXiv 2401.10371, sec. 3 (algorithms.md sec. 1).
    iterations = 0 is the stationary-law bound eps0 itself (the trained model, no unlearning)."""
    _validate_langevin(n=n, m=m, sigma=sigma, eta=eta, clip=clip)
    _require_delta(delta)
    _validate_langevin_request(n=n, removed=removed, iterations=iterations)
    if removed == 0:
        return Epsilon(epsilon=0.0, alpha=math.inf, delta=delta)
    return renyi_to_dp(
        lambda alpha: _langevin_renyi(
            alpha, n=n, m=m, sigma=sigma, removed=removed, iterations=iterations, eta=eta, clip=clip
        ),
        delta=delta,
    )


def langevin_min_iterations(
    *,
    n: int,
    m: float,
    sigma: float,
    removed: int,
    eta: float,
    target_epsilon: float,
    delta: float,
    clip: float = 1.0,
    max_iterations: int = 10**7,
) -> tuple[int, Epsilon]:
    """Smallest K >= 0 full-batch Langevin iterations whose epsilon is <= target_epsilon.

    K = 0 is returned when the stationary bound eps0 already meets the target (arXiv 2401.10371,
    sec. 3); epsilon decreases in K, so exponential search plus bisection is exact."""
    _require_positive("target_epsilon", target_epsilon)
    _require_count("max_iterations", max_iterations, minimum=1)

    def at(iterations: int) -> Epsilon:
        return langevin_epsilon(
            n=n,
            m=m,
            sigma=sigma,
            removed=removed,
            iterations=iterations,
            eta=eta,
            delta=delta,
            clip=clip,
        )

    return _smallest_count(
        at,
        target_epsilon=target_epsilon,
        start=0,
        limit=max_iterations,
        limit_name="max_iterations",
    )


def langevin_sequential_epsilon(
    *,
    n: int,
    m: float,
    sigma: float,
    eta: float,
    delta: float,
    removed_per_request: Sequence[int],
    iterations_per_request: Sequence[int],
    clip: float = 1.0,
) -> Epsilon:
    """(epsilon, delta) after sequential full-batch Langevin requests (S_s removed, k_s steps each).

    Chien et al., arXiv 2401.10371, sequential unlearning (sec. 3, weak triangle inequality for
    Rényi divergence; algorithms.md sec. 1):
    eps_1(alpha) = exp(-eta m k_1 / alpha) eps0_{S_1}(alpha),
    eps_s(alpha) = exp(-eta m k_s / alpha) (alpha - 1/2)/(alpha - 1) (eps0_{S_s}(2 alpha)
    + eps_{s-1}(2 alpha)). Each level doubles the order, so many requests make the bound vacuous
    unless each runs enough iterations."""
    _validate_langevin(n=n, m=m, sigma=sigma, eta=eta, clip=clip)
    _require_delta(delta)
    removed = list(removed_per_request)
    iterations = list(iterations_per_request)
    if not removed:
        raise ValueError("removed_per_request must hold at least one request")
    if len(iterations) != len(removed):
        raise ValueError(
            f"iterations_per_request must have one entry per request ({len(removed)}), "
            f"got {len(iterations)}"
        )
    for s in removed:
        _require_count("removed_per_request", s)
        if s > n:
            raise ValueError(f"removed_per_request entries must be <= n = {n}, got {s}")
    for it in iterations:
        _require_count("iterations_per_request", it)

    def renyi(alpha: float) -> float:
        depth = len(removed)
        # Orders from the first request (alpha * 2^(s-1)) down to the last (alpha).
        # 2.0**e raises OverflowError past e = 1023; an infinite order makes the bound inf.
        orders = [
            alpha * 2.0 ** (depth - 1 - j) if depth - 1 - j < 1000 else math.inf
            for j in range(depth)
        ]
        value = 0.0
        for j, (order, s, it) in enumerate(zip(orders, removed, iterations, strict=True)):
            contraction = math.exp(-it * eta * m / order)
            if j == 0:
                value = contraction * _langevin_eps0(
                    order, n=n, m=m, sigma=sigma, removed=s, clip=clip
                )
            else:
                eps0 = _langevin_eps0(2.0 * order, n=n, m=m, sigma=sigma, removed=s, clip=clip)
                value = contraction * (1.0 + 0.5 / (order - 1.0)) * (eps0 + value)
        return value

    if sum(removed) == 0:
        return Epsilon(epsilon=0.0, alpha=math.inf, delta=delta)
    return renyi_to_dp(renyi, delta=delta)
