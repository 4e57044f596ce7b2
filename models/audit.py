"""Empirical audits of an unlearned model against a retrained reference, with noise floors.

Evaluation vocabulary of algorithms.md sec. 3 (Zhao et al., RUM, arXiv 2406.01257, sec. 5):
forget / retain / test accuracy gaps to a model retrained without the forget set, their
tug-of-war product (ToW), a loss-threshold membership-inference AUC on the forget set against
held-out non-members (Yeom et al., arXiv 1709.01604, sec. 3), and a two-sample KS test of forget
losses against the reference. Every statistic is reported with its noise floor: the same statistic
between two oracles (retrains with other seeds) at the same sample size, bootstrapped over rows.
A statistic fails only when it is clearly outside what oracles disagree on among themselves.

Certified paths get a different audit: canaries (mislabelled rows injected at training time,
Jagielski et al., arXiv 2006.07709, sec. 3) give a Clopper-Pearson lower bound on epsilon that must
never exceed the claimed epsilon.

All functions take per-example arrays, so they apply to any model family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import beta, fisher_exact, ks_2samp, mannwhitneyu
from sklearn.metrics import roc_auc_score

SPLITS = ("forget", "retain", "test", "heldout")

# Absolute slack added to each noise floor before a statistic fails (units of the statistic).
# Why: a floor estimated from one or two oracle twins is itself noisy; the slack keeps the
# oracle-vs-oracle false-failure rate low without hiding gross failures (an un-unlearned model on
# canaries sits at MIA-AUC gaps of 0.3-0.5 and KS of 0.5-1.0). The retain/test slack is a utility
# policy (two accuracy points), the forget-side slack is about one row in 40. Calibrated on digits
# (tests/test_audit.py, benchmarks/memorization_proxies.py).
DEFAULT_TOLERANCES = {
    "forget_acc_gap": 0.03,
    "retain_acc_gap": 0.02,
    "test_acc_gap": 0.02,
    "tow_loss": 0.05,
    "mia_auc_gap": 0.05,
    "ks_forget": 0.05,
}
DEFAULT_FLOOR_QUANTILE = 0.95
DEFAULT_FLOOR_FACTOR = 1.5


def loss_mia_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float:
    """AUC of -loss as a membership score; 0.5 means members and non-members look alike.

    Loss-threshold attack, Yeom et al., arXiv 1709.01604, sec. 3 (algorithms.md sec. 3)."""
    member_losses = np.asarray(member_losses, dtype=np.float64)
    nonmember_losses = np.asarray(nonmember_losses, dtype=np.float64)
    if member_losses.size == 0 or nonmember_losses.size == 0:
        raise ValueError(
            f"member_losses and nonmember_losses must be non-empty, got {member_losses.size} and "
            f"{nonmember_losses.size}"
        )
    labels = np.r_[np.ones(member_losses.size), np.zeros(nonmember_losses.size)]
    return float(roc_auc_score(labels, -np.r_[member_losses, nonmember_losses]))


def tow(
    *,
    forget_acc: float,
    retain_acc: float,
    test_acc: float,
    ref_forget_acc: float,
    ref_retain_acc: float,
    ref_test_acc: float,
) -> float:
    """Tug-of-war: (1-|dAcc_forget|)(1-|dAcc_retain|)(1-|dAcc_test|), 1 = same as the reference.

    Zhao et al., arXiv 2406.01257, sec. 5 (ToW)."""
    values = {
        "forget_acc": forget_acc,
        "retain_acc": retain_acc,
        "test_acc": test_acc,
        "ref_forget_acc": ref_forget_acc,
        "ref_retain_acc": ref_retain_acc,
        "ref_test_acc": ref_test_acc,
    }
    for name, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be an accuracy in [0, 1], got {value}")
    return (
        (1 - abs(forget_acc - ref_forget_acc))
        * (1 - abs(retain_acc - ref_retain_acc))
        * (1 - abs(test_acc - ref_test_acc))
    )


def ks_loss_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of two loss samples: (statistic, p-value)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"a and b must be non-empty, got {a.size} and {b.size}")
    result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def _clopper_pearson_upper(errors: np.ndarray, trials: int, confidence: float) -> np.ndarray:
    # one-sided exact binomial upper bound; all errors -> the bound is 1
    errors = np.asarray(errors)
    upper = np.ones(errors.shape, dtype=np.float64)
    some = errors < trials
    upper[some] = beta.ppf(confidence, errors[some] + 1, trials - errors[some])
    return upper


def empirical_epsilon_lower_bound(
    *,
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    delta: float,
    confidence: float = 0.95,
) -> float:
    """Lower bound on epsilon implied by the best threshold attack (larger score = member).

    Jagielski, Ullman, Oprea, arXiv 2006.07709, sec. 3 and Nasr et al., arXiv 2101.04535, sec. 3:
    any (eps, delta)-DP mechanism has FPR + e^eps FNR >= 1 - delta and FNR + e^eps FPR >= 1 - delta,
    so with one-sided Clopper-Pearson upper bounds FPR_hi, FNR_hi (each at `confidence`)
    eps_lb = max over thresholds of
             max(log((1-delta-FNR_hi)/FPR_hi), log((1-delta-FPR_hi)/FNR_hi), 0).
    The threshold is chosen on the same scores, which makes the bound slightly optimistic."""
    member_scores = np.asarray(member_scores, dtype=np.float64)
    nonmember_scores = np.asarray(nonmember_scores, dtype=np.float64)
    if member_scores.size == 0 or nonmember_scores.size == 0:
        raise ValueError(
            f"member_scores and nonmember_scores must be non-empty, got {member_scores.size} and "
            f"{nonmember_scores.size}"
        )
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    members = np.sort(member_scores)
    nonmembers = np.sort(nonmember_scores)
    # predict "member" when score >= t; t = +inf predicts nobody
    thresholds = np.r_[np.unique(np.r_[members, nonmembers]), np.inf]
    false_pos = nonmembers.size - np.searchsorted(nonmembers, thresholds, side="left")
    false_neg = np.searchsorted(members, thresholds, side="left")
    fpr_hi = _clopper_pearson_upper(false_pos, nonmembers.size, confidence)
    fnr_hi = _clopper_pearson_upper(false_neg, members.size, confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps1 = np.log((1 - delta - fnr_hi) / fpr_hi)
        eps2 = np.log((1 - delta - fpr_hi) / fnr_hi)
    candidates = np.r_[eps1[np.isfinite(eps1)], eps2[np.isfinite(eps2)], 0.0]
    return float(max(candidates.max(), 0.0))


def inject_canaries(y: np.ndarray, *, rows: np.ndarray, classes: int, seed: int) -> np.ndarray:
    """A copy of labels `y` with each of `rows` moved to a uniformly random *other* class.

    Canaries as in Jagielski et al., arXiv 2006.07709, sec. 3: mislabelled rows are learned only by
    memorisation, so whether a model still fits them is a sharp membership signal."""
    y = np.asarray(y)
    rows = np.asarray(rows, dtype=np.int64)
    if classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes}")
    if rows.size and (rows.min() < 0 or rows.max() >= len(y)):
        raise ValueError(f"rows must index into y (length {len(y)})")
    if len(np.unique(rows)) != rows.size:
        raise ValueError("rows must not repeat")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels in y must lie in [0, classes={classes})")
    shift = np.random.default_rng(seed).integers(1, classes, size=rows.size)
    out = y.copy()
    out[rows] = (y[rows] + shift) % classes
    return out


@dataclass(frozen=True)
class SplitEval:
    """Per-example loss and correctness of one model on one evaluation split."""

    losses: np.ndarray  # float64 (n,)
    correct: np.ndarray  # bool (n,)

    @classmethod
    def from_probs(cls, probs: np.ndarray, labels: np.ndarray) -> SplitEval:
        """Cross-entropy and argmax correctness from predicted probabilities (n, classes)."""
        probs = np.asarray(probs, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        if probs.ndim != 2 or probs.shape[0] != labels.size:
            raise ValueError(f"probs must be (n={labels.size}, classes), got {probs.shape}")
        p_true = probs[np.arange(labels.size), labels]
        return cls(-np.log(np.clip(p_true, 1e-300, None)), probs.argmax(axis=1) == labels)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct)) if self.correct.size else float("nan")

    def take(self, idx: np.ndarray) -> SplitEval:
        return SplitEval(self.losses[idx], self.correct[idx])


@dataclass(frozen=True)
class ModelEval:
    """One model evaluated on the audit splits (the same rows for every model compared).

    heldout: non-members for membership inference, drawn like the forget set (for canaries:
    held-out rows mislabelled the same way); often simply the test split."""

    forget: SplitEval
    retain: SplitEval
    test: SplitEval
    heldout: SplitEval

    def sizes(self) -> dict[str, int]:
        return {s: int(getattr(self, s).losses.size) for s in SPLITS}

    def take(self, idx: dict[str, np.ndarray]) -> ModelEval:
        return ModelEval(**{s: getattr(self, s).take(idx[s]) for s in SPLITS})


def _nth_run(mask: np.ndarray, draw: int, what: str) -> np.ndarray:
    # per column, the index of the draw-th run (in run order) where `mask` is True
    ranks = np.cumsum(mask, axis=0)
    hit = mask & (ranks == draw + 1)
    if not np.all(hit.any(axis=0)):
        short = int((~hit.any(axis=0)).sum())
        raise ValueError(f"{short} rows have fewer than {draw + 1} {what} runs")
    return hit.argmax(axis=0)


def shadow_references(
    *,
    train_losses: np.ndarray,
    train_correct: np.ndarray,
    member_mask: np.ndarray,
    test_losses: np.ndarray,
    test_correct: np.ndarray,
    forget_rows: np.ndarray,
    retain_rows: np.ndarray,
    heldout_rows: np.ndarray,
    test_rows: np.ndarray | None = None,
    draws: int = 2,
) -> list[ModelEval]:
    """`draws` reference evaluations assembled from shadow models instead of retrains.

    Shadow models (Shokri et al., arXiv 1610.05820; in/out models of Carlini et al., arXiv
    2112.03570, sec. 4) trained on subsets of the training rows: reference d scores each forget row
    with the d-th model that did NOT train on it (what a retrain without it predicts), each retain
    row with the d-th model that did, and test / held-out rows with model d. Reference 0 is the
    audit's reference, the others its twins for the noise floor. All inputs are (runs, rows)
    arrays; `test_rows` (default: all) and `heldout_rows` index the test arrays. Trained once
    per dataset and recipe, they serve every audit of every forget set; they are trained on a
    fraction of the rows, which the audit's tolerances must absorb (measured in
    benchmarks/results/memorization_proxies.md and tests/test_rum_flow.py)."""
    member_mask = np.asarray(member_mask, dtype=bool)
    if train_losses.shape != member_mask.shape or train_correct.shape != member_mask.shape:
        raise ValueError("train_losses, train_correct and member_mask must be (runs, n) arrays")
    if test_losses.shape != test_correct.shape or test_losses.shape[0] != member_mask.shape[0]:
        raise ValueError("test_losses and test_correct must be (runs, n_test) arrays")
    if not 1 <= draws <= member_mask.shape[0]:
        raise ValueError(f"draws must be in [1, runs={member_mask.shape[0]}], got {draws}")
    forget_rows, retain_rows = np.asarray(forget_rows), np.asarray(retain_rows)
    heldout_rows = np.asarray(heldout_rows)
    test_all = np.arange(test_losses.shape[1]) if test_rows is None else np.asarray(test_rows)
    out = []
    for d in range(draws):
        f_run = _nth_run(~member_mask[:, forget_rows], d, "non-member")
        r_run = _nth_run(member_mask[:, retain_rows], d, "member")

        def pick(losses, correct, runs, rows):
            return SplitEval(
                np.asarray(losses[runs, rows], dtype=np.float64), correct[runs, rows].astype(bool)
            )

        out.append(
            ModelEval(
                forget=pick(train_losses, train_correct, f_run, forget_rows),
                retain=pick(train_losses, train_correct, r_run, retain_rows),
                test=pick(test_losses, test_correct, np.full(test_all.size, d), test_all),
                heldout=pick(
                    test_losses, test_correct, np.full(heldout_rows.size, d), heldout_rows
                ),
            )
        )
    return out


def _tow_of(candidate: ModelEval, reference: ModelEval) -> float:
    return tow(
        forget_acc=candidate.forget.accuracy,
        retain_acc=candidate.retain.accuracy,
        test_acc=candidate.test.accuracy,
        ref_forget_acc=reference.forget.accuracy,
        ref_retain_acc=reference.retain.accuracy,
        ref_test_acc=reference.test.accuracy,
    )


def _mia(e: ModelEval) -> float:
    # the same AUC as loss_mia_auc (U / (n1 n2), ties counted 1/2) without sklearn's per-call
    # input validation, which dominates the bootstrap's run time
    u = mannwhitneyu(-e.forget.losses, -e.heldout.losses, method="asymptotic").statistic
    return float(u / (e.forget.losses.size * e.heldout.losses.size))


Statistic = Callable[[ModelEval, ModelEval], float]

# Each statistic is 0 when candidate and reference agree and grows with disagreement.
STATISTICS: dict[str, Statistic] = {
    "forget_acc_gap": lambda c, r: abs(c.forget.accuracy - r.forget.accuracy),
    "retain_acc_gap": lambda c, r: abs(c.retain.accuracy - r.retain.accuracy),
    "test_acc_gap": lambda c, r: abs(c.test.accuracy - r.test.accuracy),
    "tow_loss": lambda c, r: 1.0 - _tow_of(c, r),
    "mia_auc_gap": lambda c, r: abs(_mia(c) - _mia(r)),
    "ks_forget": lambda c, r: ks_loss_test(c.forget.losses, r.forget.losses)[0],
}


def _check_same_rows(reference: ModelEval, others: Sequence[ModelEval], what: str) -> None:
    sizes = reference.sizes()
    for other in others:
        if other.sizes() != sizes:
            raise ValueError(f"{what} must be evaluated on the same rows as reference: {sizes}")


def noise_floor(
    statistic: Statistic,
    reference: ModelEval,
    twins: Sequence[ModelEval] = (),
    *,
    resamples: int = 200,
    quantile: float = DEFAULT_FLOOR_QUANTILE,
    seed: int = 0,
) -> float:
    """Oracle-vs-oracle spread of `statistic` at the audit's sample sizes.

    With twins (retrains with other seeds): the `quantile` of statistic(twin*, reference*) over
    paired bootstrap resamples of the rows, pooled over twins; this covers seed-to-seed and
    sampling variation. Without twins: statistic(reference*, reference**) over independent
    resamples, i.e. sampling variation only (a stricter floor). Efron & Tibshirani, An
    Introduction to the Bootstrap (1993), ch. 6."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    _check_same_rows(reference, twins, "twins")
    sizes = reference.sizes()
    rng = np.random.default_rng(seed)

    def draw() -> dict[str, np.ndarray]:
        return {s: rng.integers(0, n, size=n) for s, n in sizes.items()}

    values = []
    for _ in range(resamples):
        idx = draw()
        if twins:
            values.extend(statistic(t.take(idx), reference.take(idx)) for t in twins)
        else:
            values.append(statistic(reference.take(draw()), reference.take(idx)))
    return float(np.quantile(values, quantile))


@dataclass
class AuditResult:
    """Pass/fail of one audit, every statistic with the threshold it was held to, and why."""

    passed: bool
    metrics: dict[str, float]
    thresholds: dict[str, float]
    reasons: list[str] = field(default_factory=list)  # one line per failed check; empty if passed


def audit_unlearned(
    candidate: ModelEval,
    reference: ModelEval,
    twins: Sequence[ModelEval] = (),
    *,
    tolerances: dict[str, float] | None = None,
    floor_factor: float = DEFAULT_FLOOR_FACTOR,
    floor_quantile: float = DEFAULT_FLOOR_QUANTILE,
    resamples: int = 200,
    claimed_epsilon: float | None = None,
    delta: float | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> AuditResult:
    """Audit an unlearned `candidate` against `reference`, a model retrained without the forget set.

    For each statistic in STATISTICS (accuracy gaps, 1 - ToW, MIA-AUC gap, KS on forget losses):
    threshold = floor_factor * noise_floor + tolerance; the statistic passes if value <= threshold.
    Zhao et al., arXiv 2406.01257, sec. 5 (metrics); thresholds are ours (DEFAULT_TOLERANCES).
    With `claimed_epsilon` (certified paths) it also requires the canary bound
    empirical_epsilon_lower_bound(-forget losses vs -heldout losses) <= claimed_epsilon."""
    tol = dict(DEFAULT_TOLERANCES)
    if tolerances is not None:
        unknown = set(tolerances) - set(STATISTICS)
        if unknown:
            raise ValueError(f"tolerances has unknown statistics {sorted(unknown)}")
        if any(v < 0 for v in tolerances.values()):
            raise ValueError("tolerances must be >= 0")
        tol.update(tolerances)
    if floor_factor < 0:
        raise ValueError(f"floor_factor must be >= 0, got {floor_factor}")
    if claimed_epsilon is not None and delta is None:
        raise ValueError("delta is required with claimed_epsilon")
    _check_same_rows(reference, [candidate], "candidate")
    metrics: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    reasons: list[str] = []
    for name, statistic in STATISTICS.items():
        value = statistic(candidate, reference)
        floor = noise_floor(
            statistic, reference, twins, resamples=resamples, quantile=floor_quantile, seed=seed
        )
        metrics[name] = value
        metrics[f"{name}_floor"] = floor
        thresholds[name] = floor_factor * floor + tol[name]
        if value > thresholds[name]:
            reasons.append(
                f"{name} = {value:.4f} exceeds {thresholds[name]:.4f} "
                f"(noise floor {floor:.4f} x {floor_factor} + tolerance {tol[name]})"
            )
    metrics["tow"] = _tow_of(candidate, reference)
    metrics["mia_auc"] = loss_mia_auc(candidate.forget.losses, candidate.heldout.losses)
    metrics["mia_auc_reference"] = loss_mia_auc(reference.forget.losses, reference.heldout.losses)
    metrics["ks_forget_pvalue"] = ks_loss_test(candidate.forget.losses, reference.forget.losses)[1]
    for split in ("forget", "retain", "test"):
        metrics[f"{split}_acc"] = getattr(candidate, split).accuracy
        metrics[f"{split}_acc_reference"] = getattr(reference, split).accuracy
    if claimed_epsilon is not None and delta is not None:
        eps_lb = empirical_epsilon_lower_bound(
            member_scores=-candidate.forget.losses,
            nonmember_scores=-candidate.heldout.losses,
            delta=delta,
            confidence=confidence,
        )
        metrics["epsilon_lower_bound"] = eps_lb
        thresholds["epsilon_lower_bound"] = claimed_epsilon
        if eps_lb > claimed_epsilon:
            reasons.append(
                f"epsilon_lower_bound = {eps_lb:.3f} exceeds the claimed epsilon {claimed_epsilon}"
            )
    return AuditResult(passed=not reasons, metrics=metrics, thresholds=thresholds, reasons=reasons)


# Family-wise level of the production canary check (two one-sided tests, Bonferroni: each at
# CANARY_ALPHA / 2). Ours: at 0.05 a proper unlearning fails it about 1 time in 20 at worst.
CANARY_ALPHA = 0.05


@dataclass
class CanaryCheck:
    """Production canaries in a RUM audit: forgotten ones must look like never-seen twins."""

    passed: bool
    metrics: dict[str, float]
    threshold: float  # each test's p-value must be at least this
    reasons: list[str] = field(default_factory=list)
    note: str = ""


def _fits_more(a: SplitEval, b: SplitEval) -> tuple[float, float]:
    # one-sided p-values that `a` is fitted better than `b`: more hits, smaller losses
    table = [
        [int(a.correct.sum()), int((~a.correct).sum())],
        [int(b.correct.sum()), int((~b.correct).sum())],
    ]
    p_hits = float(fisher_exact(table, alternative="greater").pvalue)
    p_loss = float(mannwhitneyu(a.losses, b.losses, alternative="less").pvalue)
    return p_hits, p_loss


def canary_check(
    *, forgotten: SplitEval, held: SplitEval, twins: SplitEval, alpha: float = CANARY_ALPHA
) -> CanaryCheck:
    """Does the candidate fit the canaries it forgot better than twins it never saw?

    Canaries are synthetic rows with random labels, fitted only by memorisation (Jagielski et
    al., arXiv 2006.07709, sec. 3; Carlini et al., arXiv 2112.03570, sec. 4 compare member and
    non-member losses the same way). Two one-sided tests of `forgotten` against `twins`: Fisher's
    exact test on hits (argmax = canary label; scipy.stats.fisher_exact) and the Mann-Whitney U
    test on losses (scipy.stats.mannwhitneyu), each at alpha / 2 (Bonferroni). The check fails
    when either rejects. POWER: the same tests on the canaries the candidate still holds, which a
    model that memorised them fits far better than twins (`canary_power_pvalue` near 0 means the
    check could have caught a candidate that did not unlearn). With no forgotten canaries it
    passes and says so: the audit's power then comes from the forget set only."""
    if twins.losses.size == 0:
        raise ValueError("twins must be non-empty")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    threshold = alpha / 2
    metrics = {
        "canaries_forgotten": float(forgotten.losses.size),
        "canaries_held": float(held.losses.size),
        "canary_twins": float(twins.losses.size),
        "canary_hit_rate_twins": twins.accuracy,
        "canary_loss_median_twins": float(np.median(twins.losses)),
    }
    if held.losses.size:
        power_hits, power_loss = _fits_more(held, twins)
        metrics.update(
            canary_hit_rate_held=held.accuracy,
            canary_loss_median_held=float(np.median(held.losses)),
            canary_power_pvalue=min(power_hits, power_loss),
        )
    if forgotten.losses.size == 0:
        return CanaryCheck(
            True,
            metrics,
            threshold,
            note="canaries: none left; audit power from the forget set only",
        )
    p_hits, p_loss = _fits_more(forgotten, twins)
    metrics.update(
        canary_hit_rate_forgotten=forgotten.accuracy,
        canary_loss_median_forgotten=float(np.median(forgotten.losses)),
        canary_hits_pvalue=p_hits,
        canary_loss_pvalue=p_loss,
        canary_pvalue=min(p_hits, p_loss),
    )
    reasons = []
    if p_hits < threshold:
        reasons.append(
            f"canaries: forgotten ones still predicted with their canary label "
            f"({forgotten.accuracy:.2f} vs {twins.accuracy:.2f} on twins never trained on; "
            f"Fisher p = {p_hits:.2g} < {threshold})"
        )
    if p_loss < threshold:
        reasons.append(
            f"canaries: forgotten ones have smaller losses than twins never trained on "
            f"(Mann-Whitney p = {p_loss:.2g} < {threshold})"
        )
    return CanaryCheck(not reasons, metrics, threshold, reasons)


@dataclass(frozen=True)
class CanaryWorld:
    """A training set with canaries in its forget set, and non-members drawn the same way.

    Forget set = `canaries` mislabelled training rows + `clean` untouched ones; held-out
    non-members = as many test rows, the same number of them mislabelled the same way, so a
    model that never saw the forget set scores forget and held-out rows alike (MIA AUC ~ 0.5)."""

    x: np.ndarray  # training features
    y: np.ndarray  # training labels, canary rows mislabelled
    x_test: np.ndarray
    y_test: np.ndarray  # clean test labels
    forget: np.ndarray  # training positions, sorted
    retain: np.ndarray  # the other training positions
    canaries: np.ndarray  # training positions of the canaries (a subset of forget), sorted
    heldout: np.ndarray  # test positions of the non-members
    y_heldout: np.ndarray  # their labels, mislabelled like the canaries

    def evaluate(self, predict_proba: Callable[[np.ndarray], np.ndarray]) -> ModelEval:
        """One model on the audit splits; `predict_proba` maps features to (n, classes) probs."""

        def split(xs: np.ndarray, ys: np.ndarray) -> SplitEval:
            return SplitEval.from_probs(predict_proba(xs), ys)

        return ModelEval(
            forget=split(self.x[self.forget], self.y[self.forget]),
            retain=split(self.x[self.retain], self.y[self.retain]),
            test=split(self.x_test, self.y_test),
            heldout=split(self.x_test[self.heldout], self.y_heldout),
        )


def canary_world(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    classes: int,
    canaries: int,
    clean: int = 0,
    seed: int,
) -> CanaryWorld:
    """Inject `canaries` canaries (inject_canaries) and draw a forget set and matched non-members."""
    if canaries < 1 or clean < 0 or canaries + clean > min(len(y), len(y_test)):
        raise ValueError(
            f"need 1 <= canaries and 0 <= clean with canaries + clean <= {min(len(y), len(y_test))}"
            f", got canaries={canaries}, clean={clean}"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    canary_rows = np.sort(perm[:canaries])
    forget = np.sort(perm[: canaries + clean])
    test_perm = rng.permutation(len(y_test))
    heldout = test_perm[: canaries + clean]
    y_test_canaries = inject_canaries(
        y_test, rows=test_perm[:canaries], classes=classes, seed=seed + 1
    )
    return CanaryWorld(
        x=x,
        y=inject_canaries(y, rows=canary_rows, classes=classes, seed=seed),
        x_test=x_test,
        y_test=y_test,
        forget=forget,
        retain=np.setdiff1d(np.arange(len(y)), forget),
        canaries=canary_rows,
        heldout=heldout,
        y_heldout=y_test_canaries[heldout],
    )
