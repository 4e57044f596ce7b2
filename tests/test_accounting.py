"""The privacy accountants match algorithms.md sec. 1 formula by formula and the published
reference points, are monotone where the papers say so, and reject invalid parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.accounting import (
    BOUNDS,
    Epsilon,
    PnsgdConstants,
    batch_z,
    langevin_epsilon,
    langevin_min_iterations,
    langevin_renyi,
    langevin_sequential_epsilon,
    pnsgd_constants,
    pnsgd_epsilon,
    pnsgd_min_epochs,
    pnsgd_renyi,
    renyi_to_dp,
    z_after_epochs,
)

REL = 1e-9
MNIST_N = 11_264  # MNIST 3-vs-8 as in arXiv 2403.17105
MNIST_M = 1e-6 * MNIST_N
DIGITS_N = 1437


# Independent transcriptions of algorithms.md sec. 1: plain powers, no logs, no shared helpers.
def direct_z_b(*, n: int, b: int, eta: float, m: float, clip: float = 1.0, radius: float = 100.0):
    c = 1 - eta * m
    return min(2 * eta * clip / (b * (1 - c ** (n / b))), 2 * radius)


def direct_loose(alpha, *, z, eta, sigma, m, n, b, K):
    c = 1 - eta * m
    return alpha * z**2 / (2 * eta * sigma**2) * c ** (2 * K * n / b)


def direct_tight(alpha, *, z, eta, sigma, m, n, b, K):
    c = 1 - eta * m
    x = c ** (2 * K * n / b)
    return alpha * z**2 / (2 * eta * sigma**2) * (1 - c**2) * x / (1 - x)


def authors_code_tight(alpha, *, z, eta, sigma, m, n, b, K):
    """epsilon_with_alpha_z in Graph-COM/SGD_unlearning main_sgd.py (same bound, other algebra)."""
    c = 1 - eta * m
    return alpha * z**2 / (2 * eta * sigma**2) * (c**2 - 1) / (1 - c ** (-2 * K * n / b))


def direct_non_convergent(alpha, *, z, eta, sigma, m, n, b, K, T, radius=100.0):
    c = 1 - eta * m
    q = p = 2
    e1 = q * alpha * (2 * radius) ** 2 / (2 * eta * sigma**2) * c ** (2 * T * n / b)
    e2 = (
        p
        * alpha
        * (z + 2 * radius * c ** (T * n / b)) ** 2
        / (2 * eta * sigma**2)
        * c ** (2 * K * n / b)
    )
    return (e1 + e2) * (alpha - 1 / p) / (alpha - 1)


def direct_langevin(alpha, *, K, S, n, m, sigma, eta, clip=1.0):
    eps0 = 4 * alpha * S**2 * clip**2 / (m * sigma**2 * n**2)
    return math.exp(-K * eta * m / alpha) * eps0


def direct_langevin_sequential(alpha, *, removed, iterations, n, m, sigma, eta):
    """eps_s(alpha) = exp(-eta m k_s/alpha) (alpha-1/2)/(alpha-1) (eps0(2a) + eps_{s-1}(2a))."""
    s = len(removed)
    if s == 1:
        return direct_langevin(alpha, K=iterations[0], S=removed[0], n=n, m=m, sigma=sigma, eta=eta)
    eps0 = 4 * (2 * alpha) * removed[-1] ** 2 / (m * sigma**2 * n**2)
    previous = direct_langevin_sequential(
        2 * alpha, removed=removed[:-1], iterations=iterations[:-1], n=n, m=m, sigma=sigma, eta=eta
    )
    factor = math.exp(-eta * m * iterations[-1] / alpha) * (alpha - 0.5) / (alpha - 1)
    return factor * (eps0 + previous)


def closed_form_linear(a: float, delta: float) -> tuple[float, float]:
    """min over alpha > 1 of a*alpha + log(1/delta)/(alpha - 1): (epsilon, alpha)."""
    log_inv = math.log(1 / delta)
    return a + 2 * math.sqrt(a * log_inv), 1 + math.sqrt(log_inv / a)


def dense_grid_dp(renyi, delta: float) -> float:
    """Brute-force RDP->DP: minimum over 50,001 orders, log-spaced in alpha - 1."""
    u = np.logspace(-8, 12, 50_001)
    values = np.array([renyi(1 + x) for x in u]) + math.log(1 / delta) / u
    return float(np.nanmin(values))


@pytest.fixture(scope="module")
def mnist() -> PnsgdConstants:
    return pnsgd_constants(n=MNIST_N, batch_size=128, m=MNIST_M, classes=2)


@pytest.fixture(scope="module")
def digits() -> PnsgdConstants:
    return pnsgd_constants(n=DIGITS_N, batch_size=8, m=0.003, classes=10)


# --- constants ---------------------------------------------------------------------------------


def test_constants_use_one_over_l_and_the_real_ratio_n_over_b(digits):
    assert digits.eta == pytest.approx(1 / (1 + 0.003), rel=1e-15)  # multinomial L = 1 + m
    assert digits.c == pytest.approx(1 - digits.eta * 0.003, rel=1e-15)
    assert digits.steps_per_epoch == 1437 / 8  # 179.625, not ceil = 180
    expected = direct_z_b(n=DIGITS_N, b=8, eta=digits.eta, m=0.003)
    assert digits.z_b == pytest.approx(expected, rel=REL)


def test_binary_smoothness_is_a_quarter_plus_m(mnist):
    assert mnist.smoothness == pytest.approx(0.25 + MNIST_M, rel=1e-15)
    assert mnist.eta == pytest.approx(1 / (0.25 + MNIST_M), rel=1e-15)


def test_z_b_is_capped_at_twice_the_radius():
    # Tiny m: 1 - c^(n/b) ~ eta*m*n/b, so the uncapped Z_B would be ~ 2/(m n) >> 2R.
    k = pnsgd_constants(n=100, batch_size=100, m=1e-6, classes=2, radius=1.0)
    assert k.z_b == 2.0
    assert batch_z(k, removed=5) == 2.0


def test_batch_and_sequential_z_rules(digits):
    assert batch_z(digits, removed=14) == pytest.approx(14 * digits.z_b, rel=REL)
    carried = z_after_epochs(digits, z=batch_z(digits, removed=3), epochs=2)
    c = 1 - digits.eta * digits.m
    assert carried == pytest.approx(3 * digits.z_b * c ** (2 * 1437 / 8), rel=REL)
    assert batch_z(digits, removed=1, carried_z=carried) == pytest.approx(
        carried + digits.z_b, rel=REL
    )
    assert batch_z(digits, removed=0) == 0.0


# --- each bound equals its direct transcription --------------------------------------------------


@pytest.mark.parametrize("alpha", [1.001, 1.5, 2.0, 10.0, 123.4, 1e4])
@pytest.mark.parametrize("epochs", [1, 2, 9, 40])
def test_loose_and_tight_renyi_match_the_formulas(digits, alpha, epochs):
    z = batch_z(digits, removed=14)
    args = dict(z=z, eta=digits.eta, sigma=0.03, m=0.003, n=DIGITS_N, b=8, K=epochs)
    for bound, direct in (("loose", direct_loose), ("tight", direct_tight)):
        ours = pnsgd_renyi(digits, alpha=alpha, sigma=0.03, epochs=epochs, z=z, bound=bound)
        assert ours == pytest.approx(direct(alpha, **args), rel=REL), bound
    tight = pnsgd_renyi(digits, alpha=alpha, sigma=0.03, epochs=epochs, z=z, bound="tight")
    assert tight == pytest.approx(authors_code_tight(alpha, **args), rel=1e-7)


@pytest.mark.parametrize("alpha", [1.001, 2.0, 37.0, 5e3])
@pytest.mark.parametrize(("epochs", "train_epochs"), [(1, 1), (3, 2), (10, 50)])
def test_non_convergent_renyi_matches_the_formula(mnist, alpha, epochs, train_epochs):
    z = batch_z(mnist, removed=2)
    ours = pnsgd_renyi(
        mnist,
        alpha=alpha,
        sigma=0.05,
        epochs=epochs,
        z=z,
        bound="non-convergent",
        train_epochs=train_epochs,
    )
    direct = direct_non_convergent(
        alpha,
        z=z,
        eta=mnist.eta,
        sigma=0.05,
        m=MNIST_M,
        n=MNIST_N,
        b=128,
        K=epochs,
        T=train_epochs,
    )
    assert ours == pytest.approx(direct, rel=REL)


@pytest.mark.parametrize("alpha", [1.0001, 3.0, 250.0])
@pytest.mark.parametrize(("removed", "iterations"), [(1, 0), (1, 100), (100, 2154), (7, 10**4)])
def test_langevin_renyi_matches_the_formula(alpha, removed, iterations):
    eta = 1 / (0.25 + MNIST_M)
    ours = langevin_renyi(
        alpha=alpha,
        n=MNIST_N,
        m=MNIST_M,
        sigma=0.03,
        removed=removed,
        iterations=iterations,
        eta=eta,
    )
    direct = direct_langevin(
        alpha, K=iterations, S=removed, n=MNIST_N, m=MNIST_M, sigma=0.03, eta=eta
    )
    assert ours == pytest.approx(direct, rel=REL)


@pytest.mark.parametrize("a", [1e-8, 3e-4, 0.02, 1.0, 50.0])
@pytest.mark.parametrize("delta", [1e-5, 1 / MNIST_N, 0.1])
def test_renyi_to_dp_equals_the_closed_form_for_linear_bounds(a, delta):
    got = renyi_to_dp(lambda alpha: a * alpha, delta=delta)
    epsilon, alpha = closed_form_linear(a, delta)
    assert got.epsilon == pytest.approx(epsilon, rel=REL)
    assert got.alpha == pytest.approx(alpha, rel=1e-4)  # flat minimum: alpha is less exact
    assert got.delta == delta


@pytest.mark.parametrize("bound", ["loose", "tight", "non-convergent"])
@pytest.mark.parametrize("epochs", [1, 4, 12])
def test_pnsgd_epsilon_closed_form_equals_numeric_conversion_of_the_formula(digits, bound, epochs):
    z = batch_z(digits, removed=14)
    direct = {"loose": direct_loose, "tight": direct_tight}.get(bound)
    args = dict(z=z, eta=digits.eta, sigma=0.03, m=0.003, n=DIGITS_N, b=8, K=epochs)
    if direct is None:
        args["T"] = 50
        direct = direct_non_convergent
    numeric = renyi_to_dp(lambda alpha: direct(alpha, **args), delta=1 / DIGITS_N)
    ours = pnsgd_epsilon(
        digits,
        sigma=0.03,
        epochs=epochs,
        delta=1 / DIGITS_N,
        z=z,
        bound=bound,
        train_epochs=50,
    )
    assert ours.epsilon == pytest.approx(numeric.epsilon, rel=REL)
    assert ours.alpha == pytest.approx(numeric.alpha, rel=1e-4)


def test_langevin_epsilon_is_attained_and_near_the_brute_force_minimum():
    eta = 1 / (0.25 + MNIST_M)
    kwargs = dict(n=MNIST_N, m=MNIST_M, sigma=0.03, eta=eta)
    got = langevin_epsilon(removed=100, iterations=1500, delta=1 / MNIST_N, **kwargs)

    def renyi(alpha):
        return direct_langevin(alpha, K=1500, S=100, **kwargs)

    # A valid bound: the value at the reported alpha is exactly the reported epsilon ...
    at_alpha = renyi(got.alpha) + math.log(MNIST_N) / (got.alpha - 1)
    assert got.epsilon == pytest.approx(at_alpha, rel=1e-12)
    # ... and no order on a dense brute-force grid does better.
    assert got.epsilon <= dense_grid_dp(renyi, 1 / MNIST_N) * (1 + 1e-12)


@pytest.mark.parametrize(
    ("removed", "iterations"), [([1], [5]), ([3, 1], [200, 50]), ([1, 2, 1, 4], [400, 300, 0, 900])]
)
def test_langevin_sequential_matches_the_recursive_formula(removed, iterations):
    eta = 1 / (0.25 + MNIST_M)
    kwargs = dict(n=MNIST_N, m=MNIST_M, sigma=0.03, eta=eta)
    got = langevin_sequential_epsilon(
        delta=1 / MNIST_N, removed_per_request=removed, iterations_per_request=iterations, **kwargs
    )

    def renyi(alpha):
        return direct_langevin_sequential(alpha, removed=removed, iterations=iterations, **kwargs)

    assert got.epsilon == pytest.approx(renyi_to_dp(renyi, delta=1 / MNIST_N).epsilon, rel=REL)
    at_alpha = renyi(got.alpha) + math.log(MNIST_N) / (got.alpha - 1)
    assert got.epsilon == pytest.approx(at_alpha, rel=1e-12)


def test_one_sequential_langevin_request_is_the_single_request_bound():
    eta = 1 / (0.25 + MNIST_M)
    kwargs = dict(n=MNIST_N, m=MNIST_M, sigma=0.03, eta=eta, delta=1 / MNIST_N)
    single = langevin_epsilon(removed=40, iterations=700, **kwargs)
    seq = langevin_sequential_epsilon(
        removed_per_request=[40], iterations_per_request=[700], **kwargs
    )
    assert seq.epsilon == pytest.approx(single.epsilon, rel=REL)


# --- published reference points -----------------------------------------------------------------


def test_mnist_one_removal_needs_one_epoch(mnist):
    z = batch_z(mnist, removed=1)
    epochs, eps = pnsgd_min_epochs(
        mnist, sigma=0.03, target_epsilon=1.0, delta=1 / MNIST_N, z=z, bound="tight"
    )
    assert epochs == 1
    assert 0 < eps.epsilon <= 1.0


def _sequential_total(k: PnsgdConstants, *, requests: int, sigma: float) -> int:
    carried, total = 0.0, 0
    for _ in range(requests):
        z = batch_z(k, removed=1, carried_z=carried)
        epochs, _ = pnsgd_min_epochs(k, sigma=sigma, target_epsilon=1.0, delta=1 / k.n, z=z)
        total += epochs
        carried = z_after_epochs(k, z=z, epochs=epochs)
    return total


def test_mnist_hundred_sequential_removals_take_about_hundred_epochs(mnist):
    assert abs(_sequential_total(mnist, requests=100, sigma=0.03) - 100) <= 2


def test_mnist_hundred_sequential_removals_full_batch_take_about_886_iterations():
    # algorithms.md sec. 1: "~886 iterations full batch" (PNSGD with b = n).
    k = pnsgd_constants(n=MNIST_N, batch_size=MNIST_N, m=MNIST_M, classes=2)
    assert abs(_sequential_total(k, requests=100, sigma=0.03) - 886) <= 9  # within 1%


def test_digits_fourteen_removed_tight_needs_nine_epochs(digits):
    z = batch_z(digits, removed=14)
    epochs, eps = pnsgd_min_epochs(
        digits, sigma=0.03, target_epsilon=1.0, delta=1 / DIGITS_N, z=z, bound="tight"
    )
    assert epochs == 9  # algorithms.md sec. 6, row m = 0.003, b = 8, sigma = 0.03
    assert eps.epsilon <= 1.0


@pytest.mark.parametrize(
    ("m", "batch_size", "sigma", "measured"),
    [
        (0.001, 32, 0.01, {131}),
        (0.01, 8, 0.03, {3}),
        (0.003, 1, 0.03, {2}),
        (0.05, 32, 0.03, {2, 3}),
    ],
)
def test_other_digits_rows_of_the_feasibility_table(m, batch_size, sigma, measured):
    k = pnsgd_constants(n=DIGITS_N, batch_size=batch_size, m=m, classes=10)
    z = batch_z(k, removed=14)
    epochs, _ = pnsgd_min_epochs(k, sigma=sigma, target_epsilon=1.0, delta=1 / DIGITS_N, z=z)
    assert epochs in measured


def test_mnist_non_convergent_one_epoch_needs_sigma_about_0_004(mnist):
    # algorithms.md sec. 1: "Noise for K = 1 epoch at epsilon = 1 (non-convergent bound):
    # sigma ~ 0.004 (MNIST-like n ~ 11k, b = 128)"; T = 100 burn-in epochs for b = 128.
    z = batch_z(mnist, removed=1)
    kwargs = dict(epochs=1, delta=1 / MNIST_N, z=z, bound="non-convergent", train_epochs=100)
    assert pnsgd_epsilon(mnist, sigma=0.0045, **kwargs).epsilon <= 1.0
    assert pnsgd_epsilon(mnist, sigma=0.0035, **kwargs).epsilon > 1.0


# --- search and monotonicity ---------------------------------------------------------------------


@pytest.mark.parametrize("bound", BOUNDS)
def test_min_epochs_is_the_smallest_meeting_the_target(digits, bound):
    z = batch_z(digits, removed=5)
    kwargs = dict(sigma=0.03, delta=1 / DIGITS_N, z=z, bound=bound, train_epochs=60)
    epochs, eps = pnsgd_min_epochs(digits, target_epsilon=0.8, **kwargs)
    assert epochs >= 1
    assert eps == pnsgd_epsilon(digits, epochs=epochs, **kwargs)
    assert eps.epsilon <= 0.8
    assert pnsgd_epsilon(digits, epochs=epochs - 1, **kwargs).epsilon > 0.8


def test_nothing_removed_needs_zero_epochs(digits):
    epochs, eps = pnsgd_min_epochs(digits, sigma=0.03, target_epsilon=1.0, delta=0.01, z=0.0)
    assert (epochs, eps.epsilon) == (0, 0.0)


def test_no_epochs_certify_nothing_when_something_was_removed(digits):
    z = batch_z(digits, removed=1)
    for bound in BOUNDS:
        eps = pnsgd_epsilon(
            digits, sigma=0.03, epochs=0, delta=0.01, z=z, bound=bound, train_epochs=10
        )
        assert eps.epsilon == math.inf


def test_langevin_min_iterations_is_the_smallest_meeting_the_target():
    eta = 1 / (0.25 + MNIST_M)
    kwargs = dict(n=MNIST_N, m=MNIST_M, sigma=0.03, removed=100, eta=eta, delta=1 / MNIST_N)
    iterations, eps = langevin_min_iterations(target_epsilon=1.0, **kwargs)
    assert eps.epsilon <= 1.0
    assert langevin_epsilon(iterations=iterations - 1, **kwargs).epsilon > 1.0
    assert 1000 < iterations < 5000  # eps0 ~ 40 needs ~ alpha*log(40)/(eta*m) steps


def test_langevin_zero_iterations_when_training_noise_already_suffices():
    eta = 1 / (0.25 + MNIST_M)
    iterations, eps = langevin_min_iterations(
        n=MNIST_N, m=MNIST_M, sigma=0.03, removed=1, eta=eta, target_epsilon=1.0, delta=1 / MNIST_N
    )
    assert iterations == 0
    assert eps.epsilon <= 1.0


def test_non_convergent_floor_makes_tiny_targets_unreachable(digits):
    z = batch_z(digits, removed=1)
    with pytest.raises(ValueError, match="max_epochs"):
        pnsgd_min_epochs(
            digits,
            sigma=0.03,
            target_epsilon=1e-3,
            delta=1 / DIGITS_N,
            z=z,
            bound="non-convergent",
            train_epochs=1,
            max_epochs=1000,
        )


def test_huge_epoch_counts_give_zero_not_nan(mnist):
    z = batch_z(mnist, removed=1)
    for bound in ("loose", "tight"):
        eps = pnsgd_epsilon(mnist, sigma=0.03, epochs=10**12, delta=1e-5, z=z, bound=bound)
        assert eps.epsilon == 0.0 or 0 < eps.epsilon < 1e-12
        assert not math.isnan(eps.alpha)
    floor = pnsgd_epsilon(
        mnist,
        sigma=0.03,
        epochs=10**12,
        delta=1e-5,
        z=z,
        bound="non-convergent",
        train_epochs=1,
    )
    assert math.isfinite(floor.epsilon) and floor.epsilon > 0  # e1 does not decay with K
    eps = langevin_epsilon(
        n=MNIST_N, m=MNIST_M, sigma=0.03, removed=5, iterations=10**12, eta=3.0, delta=1e-5
    )
    assert math.isfinite(eps.epsilon) and eps.epsilon < 1e-6


def test_tiny_sigma_gives_infinite_or_huge_epsilon_not_an_exception(mnist):
    z = batch_z(mnist, removed=1)
    for bound in BOUNDS:
        eps = pnsgd_epsilon(
            mnist, sigma=1e-200, epochs=1, delta=1e-5, z=z, bound=bound, train_epochs=1
        )
        assert eps.epsilon > 1e100
    eps = langevin_epsilon(
        n=MNIST_N, m=MNIST_M, sigma=1e-200, removed=5, iterations=1, eta=3.0, delta=1e-5
    )
    assert eps.epsilon > 1e100


constants_strategy = st.builds(
    lambda n, frac, m, classes: pnsgd_constants(
        n=n, batch_size=max(1, int(frac * n)), m=m, classes=classes
    ),
    n=st.integers(min_value=10, max_value=200_000),
    frac=st.floats(min_value=1e-4, max_value=1.0),
    m=st.floats(min_value=1e-4, max_value=1.0),
    classes=st.sampled_from([2, 10]),
)


@settings(max_examples=150, deadline=None)
@given(
    k=constants_strategy,
    sigma=st.floats(min_value=1e-3, max_value=1.0),
    epochs=st.integers(min_value=1, max_value=400),
    removed=st.integers(min_value=1, max_value=10),
)
def test_epsilon_decreases_in_epochs_and_tight_never_exceeds_loose(k, sigma, epochs, removed):
    z = batch_z(k, removed=removed)
    kwargs = dict(sigma=sigma, delta=1 / k.n, z=z, train_epochs=epochs)
    for bound in BOUNDS:
        now = pnsgd_epsilon(k, epochs=epochs, bound=bound, **kwargs).epsilon
        later = pnsgd_epsilon(k, epochs=epochs + 1, bound=bound, **kwargs).epsilon
        assert later <= now
        # Above underflow loose/tight decrease strictly; non-convergent may sit on its e1 floor.
        if bound != "non-convergent" and later > 1e-250:
            assert later < now
    tight = pnsgd_epsilon(k, epochs=epochs, bound="tight", **kwargs).epsilon
    loose = pnsgd_epsilon(k, epochs=epochs, bound="loose", **kwargs).epsilon
    assert tight <= loose * (1 + 1e-12)


@settings(max_examples=100, deadline=None)
@given(
    k=constants_strategy,
    sigma=st.floats(min_value=1e-3, max_value=1.0),
    epochs=st.integers(min_value=1, max_value=50),
    removed=st.integers(min_value=1, max_value=9),
)
def test_epsilon_increases_with_the_number_removed(k, sigma, epochs, removed):
    z_now, z_more = batch_z(k, removed=removed), batch_z(k, removed=removed + 1)
    for bound in BOUNDS:
        kwargs = dict(sigma=sigma, epochs=epochs, delta=1 / k.n, bound=bound, train_epochs=5)
        now = pnsgd_epsilon(k, z=z_now, **kwargs).epsilon
        more = pnsgd_epsilon(k, z=z_more, **kwargs).epsilon
        assert more >= now
        # The non-convergent bound may be all floor (e1), so only loose/tight must grow strictly.
        if bound != "non-convergent" and z_more > z_now and now > 1e-250:
            assert more > now


@settings(max_examples=60, deadline=None)
@given(
    removed=st.integers(min_value=1, max_value=500),
    iterations=st.integers(min_value=0, max_value=20_000),
    sigma=st.floats(min_value=1e-3, max_value=1.0),
)
def test_langevin_epsilon_decreases_in_iterations_and_grows_with_removed(
    removed, iterations, sigma
):
    kwargs = dict(n=MNIST_N, m=MNIST_M, sigma=sigma, eta=3.0, delta=1 / MNIST_N)
    now = langevin_epsilon(removed=removed, iterations=iterations, **kwargs).epsilon
    assert langevin_epsilon(removed=removed, iterations=iterations + 50, **kwargs).epsilon <= now
    assert langevin_epsilon(removed=removed + 1, iterations=iterations, **kwargs).epsilon >= now


def test_epsilon_result_is_a_frozen_record(digits):
    eps = pnsgd_epsilon(digits, sigma=0.03, epochs=3, delta=0.01, z=1.0)
    assert isinstance(eps, Epsilon)
    with pytest.raises(AttributeError):
        eps.epsilon = 0.0  # type: ignore[misc]


# --- invalid parameters --------------------------------------------------------------------------


def _k() -> PnsgdConstants:
    return pnsgd_constants(n=100, batch_size=10, m=0.01, classes=2)


INVALID = [
    ("n", lambda: pnsgd_constants(n=0, batch_size=1, m=0.01, classes=2)),
    ("batch_size", lambda: pnsgd_constants(n=10, batch_size=11, m=0.01, classes=2)),
    ("batch_size", lambda: pnsgd_constants(n=10, batch_size=0, m=0.01, classes=2)),
    ("m", lambda: pnsgd_constants(n=10, batch_size=2, m=0.0, classes=2)),
    ("m", lambda: pnsgd_constants(n=10, batch_size=2, m=-1.0, classes=2)),
    ("m", lambda: pnsgd_constants(n=10, batch_size=2, m=math.nan, classes=2)),
    ("classes", lambda: pnsgd_constants(n=10, batch_size=2, m=0.01, classes=1)),
    ("eta", lambda: pnsgd_constants(n=10, batch_size=2, m=0.01, classes=2, eta=5.0)),
    ("eta", lambda: pnsgd_constants(n=10, batch_size=2, m=0.01, classes=2, eta=0.0)),
    ("clip", lambda: pnsgd_constants(n=10, batch_size=2, m=0.01, classes=2, clip=0.0)),
    ("radius", lambda: pnsgd_constants(n=10, batch_size=2, m=0.01, classes=2, radius=-1.0)),
    ("removed", lambda: batch_z(_k(), removed=-1)),
    ("removed", lambda: batch_z(_k(), removed=101)),
    ("carried_z", lambda: batch_z(_k(), removed=1, carried_z=-0.5)),
    ("z", lambda: z_after_epochs(_k(), z=-1.0, epochs=1)),
    ("epochs", lambda: z_after_epochs(_k(), z=1.0, epochs=-1)),
    ("delta", lambda: renyi_to_dp(lambda a: a, delta=0.0)),
    ("delta", lambda: renyi_to_dp(lambda a: a, delta=1.0)),
    ("sigma", lambda: pnsgd_epsilon(_k(), sigma=0.0, epochs=1, delta=0.1, z=1.0)),
    ("sigma", lambda: pnsgd_epsilon(_k(), sigma=-0.1, epochs=1, delta=0.1, z=1.0)),
    ("epochs", lambda: pnsgd_epsilon(_k(), sigma=0.1, epochs=-1, delta=0.1, z=1.0)),
    ("delta", lambda: pnsgd_epsilon(_k(), sigma=0.1, epochs=1, delta=1.5, z=1.0)),
    ("delta", lambda: pnsgd_epsilon(_k(), sigma=0.1, epochs=1, delta=-0.1, z=1.0)),
    ("z", lambda: pnsgd_epsilon(_k(), sigma=0.1, epochs=1, delta=0.1, z=-1.0)),
    ("bound", lambda: pnsgd_epsilon(_k(), sigma=0.1, epochs=1, delta=0.1, z=1.0, bound="x")),
    (
        "train_epochs",
        lambda: pnsgd_epsilon(_k(), sigma=0.1, epochs=1, delta=0.1, z=1.0, bound="non-convergent"),
    ),
    (
        "train_epochs",
        lambda: pnsgd_epsilon(
            _k(), sigma=0.1, epochs=1, delta=0.1, z=1.0, bound="non-convergent", train_epochs=-2
        ),
    ),
    ("alpha", lambda: pnsgd_renyi(_k(), alpha=1.0, sigma=0.1, epochs=1, z=1.0)),
    (
        "target_epsilon",
        lambda: pnsgd_min_epochs(_k(), sigma=0.1, target_epsilon=0.0, delta=0.1, z=1.0),
    ),
    (
        "max_epochs",
        lambda: pnsgd_min_epochs(
            _k(), sigma=0.1, target_epsilon=1.0, delta=0.1, z=1.0, max_epochs=0
        ),
    ),
    ("sigma", lambda: pnsgd_min_epochs(_k(), sigma=0.0, target_epsilon=1.0, delta=0.1, z=1.0)),
    ("delta", lambda: pnsgd_min_epochs(_k(), sigma=0.1, target_epsilon=1.0, delta=2.0, z=1.0)),
]

LANGEVIN = dict(n=100, m=0.01, sigma=0.1, eta=1.0, delta=0.01)
INVALID += [
    ("n", lambda: langevin_epsilon(**{**LANGEVIN, "n": 0}, removed=0, iterations=1)),
    ("m", lambda: langevin_epsilon(**{**LANGEVIN, "m": 0.0}, removed=1, iterations=1)),
    ("sigma", lambda: langevin_epsilon(**{**LANGEVIN, "sigma": 0.0}, removed=1, iterations=1)),
    ("eta", lambda: langevin_epsilon(**{**LANGEVIN, "eta": 0.0}, removed=1, iterations=1)),
    ("eta", lambda: langevin_epsilon(**{**LANGEVIN, "eta": 101.0}, removed=1, iterations=1)),
    ("delta", lambda: langevin_epsilon(**{**LANGEVIN, "delta": 1.0}, removed=1, iterations=1)),
    ("clip", lambda: langevin_epsilon(**LANGEVIN, removed=1, iterations=1, clip=-1.0)),
    ("removed", lambda: langevin_epsilon(**LANGEVIN, removed=-1, iterations=1)),
    ("removed", lambda: langevin_epsilon(**LANGEVIN, removed=101, iterations=1)),
    ("iterations", lambda: langevin_epsilon(**LANGEVIN, removed=1, iterations=-1)),
    (
        "target_epsilon",
        lambda: langevin_min_iterations(**LANGEVIN, removed=1, target_epsilon=-1.0),
    ),
    (
        "max_iterations",
        lambda: langevin_min_iterations(
            **LANGEVIN, removed=1, target_epsilon=1.0, max_iterations=0
        ),
    ),
    (
        "removed_per_request",
        lambda: langevin_sequential_epsilon(
            **LANGEVIN, removed_per_request=[], iterations_per_request=[]
        ),
    ),
    (
        "removed_per_request",
        lambda: langevin_sequential_epsilon(
            **LANGEVIN, removed_per_request=[1, -1], iterations_per_request=[1, 1]
        ),
    ),
    (
        "iterations_per_request",
        lambda: langevin_sequential_epsilon(
            **LANGEVIN, removed_per_request=[1, 1], iterations_per_request=[1]
        ),
    ),
    (
        "iterations_per_request",
        lambda: langevin_sequential_epsilon(
            **LANGEVIN, removed_per_request=[1], iterations_per_request=[-3]
        ),
    ),
    (
        "alpha",
        lambda: langevin_renyi(
            alpha=0.5, n=100, m=0.01, sigma=0.1, removed=1, iterations=1, eta=1.0
        ),
    ),
]


@pytest.mark.parametrize(
    ("name", "call"), INVALID, ids=[f"{i}-{n}" for i, (n, _) in enumerate(INVALID)]
)
def test_invalid_parameters_raise_value_error_naming_the_parameter(name, call):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()
