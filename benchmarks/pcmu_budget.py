"""PCMU budget, data-dependent check pass rate and replay cost vs sigma, tau and C.

Zhang et al., NeurIPS 2022 (reconstruction, algorithms.md sec. 2), with our data-dependent check
and replay from the first flip. For each recipe: train once on the training split, then unlearn
each of several random subjects (4 training rows each) on its own, and retrain from scratch on the
retained rows to (a) measure the retrain cost and (b) verify that the unlearned model is the same
run bit for bit. Costs are grad-evals (one per-example gradient); the retrain is PCMU training on
the retained rows, which stops at its own fixed point like the original run.

    .venv/bin/python -m benchmarks.pcmu_budget   # writes benchmarks/results/pcmu_budget.md
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from models.cost import CostMeter
from models.datasets import (
    SAMPLES_PER_SUBJECT,
    Dataset,
    load_digits_dataset,
    make_synthetic_dataset,
)
from models.logreg import DTYPE, accuracy, per_example_gradients
from models.pcmu import (
    PcmuModel,
    PcmuRecipe,
    cohen_radius,
    pcmu_unlearn,
    train_pcmu,
    worst_case_budget,
)

RESULTS_PATH = Path(__file__).parent / "results" / "pcmu_budget.md"
COMMAND = ".venv/bin/python -m benchmarks.pcmu_budget"
TARGET_FRACTION_OF_RETRAIN = 0.10  # the goal for one subject on digits
# (sigma, tau): the run sees them only through g* (~ tau once tau >> sigma); Cohen's R' sees both.
SMOOTHING = ((0.002, 0.002), (0.01, 0.005), (0.005, 0.005), (0.005, 0.01), (0.01, 0.01))
CLIPS = (1.0, 0.5)
ETA = 0.25
# Larger steps on digits: fewer steps and decisions, the only settings where some subjects pass.
DIGITS_EXTRA = (
    PcmuRecipe(sigma=0.005, tau=0.01, clip=1.0, eta=0.5),
    PcmuRecipe(sigma=0.005, tau=0.01, clip=1.0, eta=1.0),
    PcmuRecipe(sigma=0.005, tau=0.005, clip=1.0, eta=1.0),
)


@dataclass(frozen=True)
class Row:
    dataset: str
    n_train: int
    recipe: PcmuRecipe
    flip: float
    steps: int
    decisions: int
    shift: float
    accuracy: float
    margin_min: float
    cohen_min: float
    budget: int
    budget_cohen: int
    subjects: int
    passed: int
    exact: int
    within_target: int
    first_flip_median: float
    replay_fraction: float
    total_fraction: float
    unlearn_grad_evals: float
    retrain_grad_evals: float
    unlearn_seconds: float
    retrain_seconds: float


def subject_rows(ds: Dataset, *, count: int, seed: int) -> list[np.ndarray]:
    """Positions in the training arrays of `count` random subjects whose rows are all in train."""
    subjects = ds.subject_ids[ds.train_rows()]
    names, sizes = np.unique(subjects, return_counts=True)
    full = names[sizes == SAMPLES_PER_SUBJECT]
    chosen = np.random.default_rng(seed).choice(full, size=count, replace=False)
    return [np.flatnonzero(subjects == name) for name in chosen]


def measure(ds: Dataset, recipe: PcmuRecipe, forget_sets: list[np.ndarray], *, seed: int) -> Row:
    tr, te = ds.train_rows(), ds.test_rows()
    x, y = ds.features[tr], ds.labels[tr]
    x_test = torch.as_tensor(ds.features[te], dtype=DTYPE)
    y_test = torch.as_tensor(ds.labels[te])
    model = train_pcmu(x, y, classes=ds.classes, recipe=recipe, seed=seed)
    full = (model.mean_gradients + recipe.m * model.checkpoints).numpy()
    cohen_min = float(cohen_radius(full, sigma=recipe.sigma, tau=recipe.tau).min())
    slack = float(model.slack.max())
    budget_cohen = worst_case_budget(n=len(y), radius=cohen_min - slack, clip=recipe.clip)

    passed = exact = within = 0
    flips, replay_frac, total_frac, shifts = [], [], [], []
    unlearn_evals, retrain_evals, unlearn_secs, retrain_secs = [], [], [], []
    for forget in forget_sets:
        shifts.append(largest_shift_at_step0(model, x, y, forget))
        meter = CostMeter()
        result = pcmu_unlearn(model, x, y, forget, recipe=recipe, meter=meter)
        keep = np.setdiff1d(np.arange(len(y)), forget)
        retrain_meter = CostMeter()
        retrained = train_pcmu(
            x[keep], y[keep], classes=ds.classes, recipe=recipe, seed=seed, meter=retrain_meter
        )
        exact += int(
            torch.equal(result.model.weights, retrained.weights)
            and torch.equal(result.model.checkpoints, retrained.checkpoints)
        )
        passed += int(result.mode in ("budget", "check"))
        if result.first_flip_step is not None:
            flips.append(result.first_flip_step)
        fraction = result.grad_evals / retrain_meter.grad_evals
        within += int(fraction <= TARGET_FRACTION_OF_RETRAIN)
        replay_frac.append(result.replay_grad_evals / retrain_meter.grad_evals)
        total_frac.append(fraction)
        unlearn_evals.append(result.grad_evals)
        retrain_evals.append(retrain_meter.grad_evals)
        unlearn_secs.append(meter.seconds)
        retrain_secs.append(retrain_meter.seconds)
    return Row(
        dataset=ds.name,
        n_train=len(y),
        recipe=recipe,
        flip=recipe.flip_point(),
        steps=model.steps_run,
        decisions=model.checkpoints.numel(),
        shift=float(np.median(shifts)),
        accuracy=accuracy(model.weights, x_test, y_test),
        margin_min=model.min_margin(),
        cohen_min=cohen_min,
        budget=model.budget(),
        budget_cohen=budget_cohen,
        subjects=len(forget_sets),
        passed=passed,
        exact=exact,
        within_target=within,
        first_flip_median=float(np.median(flips)) if flips else float("nan"),
        replay_fraction=float(np.mean(replay_frac)),
        total_fraction=float(np.mean(total_frac)),
        unlearn_grad_evals=float(np.mean(unlearn_evals)),
        retrain_grad_evals=float(np.mean(retrain_evals)),
        unlearn_seconds=float(np.mean(unlearn_secs)),
        retrain_seconds=float(np.mean(retrain_secs)),
    )


def largest_shift_at_step0(model: PcmuModel, x: np.ndarray, y: np.ndarray, forget) -> float:
    """max_j |m g_0j - sum_F grad_ij(w_0)| / (n - m): how far the subject moves any coordinate."""
    w, g = model.checkpoints[0], model.mean_gradients[0]
    xf, yf = torch.as_tensor(x[forget], dtype=DTYPE), torch.as_tensor(y[forget])
    forget_sum = per_example_gradients(w, xf, yf, clip=model.recipe.clip).sum(dim=0)
    return float(((len(forget) * g - forget_sum) / (len(y) - len(forget))).abs().max())


def reference_accuracy(ds: Dataset) -> float:
    """Test accuracy of an (almost) unregularised full-precision logistic regression, for scale."""
    from sklearn.linear_model import LogisticRegression

    tr, te = ds.train_rows(), ds.test_rows()
    clf = LogisticRegression(C=100.0, max_iter=5000).fit(ds.features[tr], ds.labels[tr])
    return float(clf.score(ds.features[te], ds.labels[te]))


def to_markdown(
    rows: list[Row],
    references: dict[str, float],
    chance: dict[str, float],
    *,
    seed: int,
    seconds: float,
) -> str:
    header = (
        "| dataset | sigma | tau | g* | C | eta | steps | decisions | shift@0 | test acc "
        "| min margin | min Cohen R' "
        "| B' (margin) | B' (Cohen) | check pass | exact | <= 10% | median t* "
        "| replay / retrain | (check + replay) / retrain | unlearn grad-evals "
        "| retrain grad-evals | unlearn s | retrain s |"
    )
    lines = [header, "|" + "---|" * 24]
    for r in rows:
        p = r.recipe
        lines.append(
            f"| {r.dataset} | {p.sigma:g} | {p.tau:g} | {r.flip:.4f} | {p.clip:g} | {p.eta:g} "
            f"| {r.steps} | {r.decisions:,} | {r.shift:.1e} | {r.accuracy:.3f} "
            f"| {r.margin_min:.1e} | {r.cohen_min:.1e} "
            f"| {r.budget} | {r.budget_cohen} | {r.passed}/{r.subjects} | {r.exact}/{r.subjects} "
            f"| {r.within_target}/{r.subjects} | {r.first_flip_median:g} "
            f"| {r.replay_fraction:.2%} | {r.total_fraction:.2%} | {r.unlearn_grad_evals:,.0f} "
            f"| {r.retrain_grad_evals:,.0f} | {r.unlearn_seconds:.3f} | {r.retrain_seconds:.3f} |"
        )
    refs = ", ".join(f"{name} {acc:.3f}" for name, acc in references.items())
    summary = "\n".join(summarise(rows, name, chance) for name in references)
    exact = sum(r.exact for r in rows)
    total = sum(r.subjects for r in rows)
    return f"""# PCMU: worst-case budget, data-dependent check and replay cost

Reproduce: `{COMMAND}` (seed {seed}; total run {seconds:.0f} s).

Zhang et al., NeurIPS 2022, as reconstructed in algorithms.md sec. 2 (`models/pcmu.py`): full-batch
steps w <- w - eta Q(mean clipped gradient), Q the argmax of the closed-form smoothed ternary
probabilities (a threshold at +-g*). Per recipe: train once (T = 200 with early stop at the exact
fixed point Q = 0; m = 0; init seeded), then unlearn each of the same random single subjects
(4 training rows) on its own and retrain from scratch on the retained rows. Columns:
- steps: computed full-batch steps S (200 = no fixed point reached); decisions: S * d * k, the
  quantized coordinates any of which a removal may flip; shift@0: median over subjects of the
  largest move |m g_j - sum_F grad_j| / (n - m) the subject causes at step 0.
- g*: flip point of Q; min margin: smallest exact distance of a stored mean-gradient coordinate
  to +-g* over all steps; min Cohen R': Cohen et al.'s radius there (always <= the margin).
- B': removals the worst-case bound 2mC/(n - m) < radius covers for free, with either radius.
- check pass: subjects whose data-dependent check passed on every step (weights unchanged).
- exact: unlearned weights and every checkpoint bitwise equal to the retrain (must be all).
- <= 10%: subjects whose check + replay cost was at most 10% of that retrain (the issue's target).
- median t*: median first flipping step among the subjects that failed the check.
- cost columns: means over subjects of grad-evals, ratios are means of per-subject ratios.

Reference full-precision logistic regression (sklearn, C = 100) test accuracy: {refs}.

{chr(10).join(lines)}

Summary (computed from the rows above):
- {exact}/{total} unlearned models are bitwise equal to their retrain.
{summary}

Reading the table:
- The column exact must read all subjects: the cost columns then compare two ways of computing
  the same model, and any failure is a bug.
- The worst-case budget is 0 whenever the model learns anything, with the exact margin as with
  Cohen's smaller radius: some coordinate at some step always sits within 2C/n of a flip point
  (algorithms.md sec. 2, known weakness). B' > 0 only where training stops at step 0.
- The data-dependent check fails when any of the decisions moves by more than its margin, so the
  expected number of flips grows like decisions * shift / (spread of the margins). Synthetic
  (n = 16,000, d * k = 21) has a few hundred decisions and a small shift@0: most subjects pass
  and unlearning costs |F| grad-evals per step. Digits (n = 1,437, d * k = 650) has 650
  decisions per step, tens of thousands per run, and a larger shift@0: a subject flips one in
  the first steps, and replay from there is nearly a full retrain.
- Fewer decisions (larger eta or dead zone: fewer steps) is the only lever inside PCMU on
  digits, and it costs accuracy (the eta = 0.5 and 1 rows).

What would do better on digits (not implemented here):
- Amortise: forgetflow applies a manifest as one forget set, and one replay serves every subject
  in it, so the per-subject cost falls as 1/batch; but a plain retrain amortises the same way.
- Shard first (SISA) and run PCMU inside each shard: a failed check replays only the affected
  shard, about 1/S of a retrain (at SISA's accuracy cost on small data, see sisa_speedup.md).
- Fewer, better features: a frozen extractor trained on data outside the deletion scope (public
  or consented), so d * k is small and the head separates classes with few steps.
- A sampled (not argmax) quantizer would turn each decision into a randomised response whose
  likelihood ratio is bounded, i.e. an (epsilon, delta) certificate instead of an exact one.

Environment: torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), Python
{platform.python_version()}, 2 shared cores: wall seconds are noisy; grad-evals are exact counts.
"""


def summarise(rows: list[Row], dataset: str, chance_accuracy: dict[str, float]) -> str:
    """Best accuracy within the cost target, and the cheapest recipe near the best accuracy."""
    mine = [r for r in rows if r.dataset == dataset]
    chance = chance_accuracy[dataset]
    cheap = [r for r in mine if r.total_fraction <= TARGET_FRACTION_OF_RETRAIN]
    best = max(mine, key=lambda r: r.accuracy)
    near = [r for r in mine if r.accuracy >= best.accuracy - 0.02]
    cheapest_near = min(near, key=lambda r: r.total_fraction)

    def describe(r: Row) -> str:
        p = r.recipe
        return (
            f"sigma {p.sigma:g}, tau {p.tau:g}, C {p.clip:g}, eta {p.eta:g}: test acc "
            f"{r.accuracy:.3f}, {r.passed}/{r.subjects} pass, mean cost "
            f"{r.total_fraction:.2%} of a retrain"
        )

    target = f"mean cost <= {TARGET_FRACTION_OF_RETRAIN:.0%}"
    if cheap:
        within = f"best accuracy at {target}: {describe(max(cheap, key=lambda r: r.accuracy))}"
    else:
        within = f"no recipe reaches {target}"
    return (
        f"- {dataset} (a constant prediction scores {chance:.3f}): {within}; cheapest within 0.02 "
        f"of the best PCMU accuracy "
        f"({best.accuracy:.3f}): {describe(cheapest_near)}."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--synthetic-rows", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # 2 shared cores: more threads would measure contention
    datasets = [load_digits_dataset(), make_synthetic_dataset(n=args.synthetic_rows, seed=0)]
    start = time.perf_counter()
    rows, references, chance = [], {}, {}
    for ds in datasets:
        references[ds.name] = reference_accuracy(ds)
        chance[ds.name] = float(np.bincount(ds.labels[ds.test_rows()]).max() / len(ds.test_rows()))
        forget_sets = subject_rows(ds, count=args.subjects, seed=args.seed)
        recipes = [
            replace(PcmuRecipe(), sigma=sigma, tau=tau, clip=clip, eta=ETA)
            for clip in CLIPS
            for sigma, tau in SMOOTHING
        ]
        if ds.name == "digits":
            recipes += DIGITS_EXTRA
        for recipe in recipes:
            rows.append(measure(ds, recipe, forget_sets, seed=args.seed))
            print(rows[-1], flush=True)
    report = to_markdown(
        rows, references, chance, seed=args.seed, seconds=time.perf_counter() - start
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
