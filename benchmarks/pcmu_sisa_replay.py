"""PCMU-in-shards: how well the planner predicts a shard replay, constant eta vs halving eta.

The planner prices a shard's replay from the stored run (models.pcmu.pcmu_unlearn_grad_evals):
the data-dependent check plus (steps_run - t*) x (n_s - |F|). Side by side, on the same digits
split, subjects and training seeds, two per-shard step schedules of the `pcmu-sisa` recipe:
- constant eta 0.25, T = 200, stop at the fixed point (Q = 0 everywhere): the default until
  issue 6's measurement showed its stopping times are chaotic;
- eta 0.25 halving every 10 steps, T = 40 (models.pcmu_sisa.DEFAULT_SHARD_PCMU): every shard runs
  all T steps, so a replay repeats exactly the stored run's steps after t*.
Per training seed: test accuracy and training grad-evals of the ensemble; per replayed shard of
random single-subject requests: t*, stored and replayed steps, the planner's estimate and upper
bound against the grad-evals the removal took. Counts only: no timing, so machine load does not
matter.

    .venv/bin/python -m benchmarks.pcmu_sisa_replay [--seeds 6] [--subjects 20]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._progress import track
from models.datasets import Dataset, load_digits_dataset
from models.pcmu import pcmu_check, pcmu_unlearn, pcmu_unlearn_grad_evals
from models.pcmu_sisa import DEFAULT_SHARD_PCMU, MIN_SHARD_ROWS
from models.training import train_model

RESULTS_PATH = Path(__file__).parent / "results" / "pcmu_sisa_replay.md"
BAND = 1.5  # issue 6's target: predicted / actual within [1 / 1.5, 1.5]
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant eta, T = 200": {"steps": 200, "halve_every": 0},
    (
        f"eta halving every {DEFAULT_SHARD_PCMU.halve_every}, T = {DEFAULT_SHARD_PCMU.steps} "
        "(default)"
    ): {},
}


@dataclass
class ScheduleResult:
    accuracy: list[float] = field(default_factory=list)
    training_grad_evals: list[float] = field(default_factory=list)
    stored_steps: list[int] = field(default_factory=list)
    cap: int = 0
    replays: list[dict[str, float]] = field(default_factory=list)
    no_replay: int = 0


def measure(ds: Dataset, overrides: dict[str, Any], seeds: int, subjects: int) -> ScheduleResult:
    """Train the ensemble per seed; unlearn `subjects` random subjects from it, shard by shard."""
    train, test = ds.train_rows(), ds.test_rows()
    x, y, subject = ds.features[train], ds.labels[train], ds.subject_ids[train]
    out = ScheduleResult()
    for seed in track(range(seeds), description="training seeds"):
        run = train_model(ds, recipe_name="pcmu-sisa", seed=seed, overrides=overrides)
        probs = run.model.predict_proba(ds.features[test])
        out.accuracy.append(float((probs.argmax(axis=1) == ds.labels[test]).mean()))
        out.training_grad_evals.append(run.cost.grad_evals)
        model = run.model.sharded_pcmu_state()
        recipe = model.recipe.pcmu
        out.cap = recipe.steps
        out.stored_steps += [m.steps_run for m in model.shard_models if m is not None]
        rng = np.random.default_rng(1000 + seed)
        for s in rng.choice(np.unique(subject), subjects, replace=False):
            forget = np.flatnonzero(subject == s)
            for shard in np.unique(model.shard_of_row[forget]):
                state, rows = model.shard_models[shard], model.shard_rows(shard)
                mine = np.searchsorted(rows, forget[model.shard_of_row[forget] == shard])
                if state is None or rows.size - mine.size < MIN_SHARD_ROWS:
                    continue
                check = pcmu_check(state, x[rows], y[rows], mine, recipe=recipe)
                if mine.size <= state.budget() or check.passed:
                    out.no_replay += 1
                    continue
                point, upper = pcmu_unlearn_grad_evals(state, check, removed=int(mine.size))
                done = pcmu_unlearn(state, x[rows], y[rows], mine, recipe=recipe)
                out.replays.append(
                    {
                        "t_star": int(check.first_flip_step),
                        "stored": state.steps_run,
                        "replayed": done.replayed_steps,
                        "predicted": point,
                        "upper": upper,
                        "actual": done.grad_evals,
                        "share": mine.size / rows.size,
                    }
                )
    return out


def _row(name: str, r: ScheduleResult) -> str:
    ratio = np.array([p["predicted"] / p["actual"] for p in r.replays])
    inside = int(((ratio >= 1 / BAND) & (ratio <= BAND)).sum())
    capped = sum(s == r.cap for s in r.stored_steps)
    held = sum(p["actual"] <= p["upper"] for p in r.replays)
    acc = np.array(r.accuracy)
    return (
        f"| {name} | {acc.mean():.3f} ({acc.min():.3f}-{acc.max():.3f}) "
        f"| {np.mean(r.training_grad_evals):,.0f} "
        f"| {np.median(r.stored_steps):.0f} / {max(r.stored_steps)} "
        f"| {capped}/{len(r.stored_steps)} "
        f"| {sum(p['t_star'] == 0 for p in r.replays)}/{len(r.replays)} "
        f"| {np.median([p['replayed'] for p in r.replays]):.0f} "
        f"| **{inside}/{len(r.replays)}** | {ratio.min():.2f} / {ratio.max():.2f} "
        f"| {held}/{len(r.replays)} | {np.mean([p['actual'] for p in r.replays]):,.0f} |"
    )


def report(results: dict[str, ScheduleResult], seeds: int, subjects: int, seconds: float) -> str:
    (old_name, old), (new_name, new) = results.items()
    acc_diff = np.array(new.accuracy) - np.array(old.accuracy)
    misses = [
        f"{p['stored']} -> {p['replayed']} steps ({p['predicted'] / p['actual']:.2f})"
        for p in old.replays
        if not 1 / BAND <= p["predicted"] / p["actual"] <= BAND
    ]
    lines = [
        "# PCMU-in-shards: predicted / actual cost of a shard replay, by step schedule",
        "",
        f"Reproduce: `.venv/bin/python -m benchmarks.pcmu_sisa_replay --seeds {seeds} "
        f"--subjects {subjects}` ({seconds:.0f} s; grad-eval and step counts only, no timing). "
        f"Digits, `pcmu-sisa` with 32 subject-disjoint shards (sigma 0.01, tau 0.005, C 0.5, "
        f"eta 0.25), training seeds 0-{seeds - 1}; per seed {subjects} random single-subject "
        "requests, each removed from that seed's model on its own, shard by shard, exactly as "
        "`sharded_pcmu_unlearn` does. Both schedules see the same split, seeds and subjects.",
        "",
        "| per-shard schedule | test acc (mean, range) | training grad-evals | stored steps "
        "(median / max) | shards at T | t* = 0 | replayed steps (median) "
        f"| planner estimate / actual within [1/{BAND}, {BAND}] | worst (low / high) "
        "| actual <= upper bound | removal grad-evals (mean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        _row(old_name, old),
        _row(new_name, new),
        "",
        f"Test accuracy, halving minus constant, paired by seed: {acc_diff.mean():+.4f} "
        f"(range {acc_diff.min():+.4f} to {acc_diff.max():+.4f}; one test row is "
        f"{1 / 360:.4f}). Training grad-evals: "
        f"{np.mean(new.training_grad_evals) / np.mean(old.training_grad_evals):.2f}x. Affected "
        f"shards that needed no replay (budget or a passing check): {old.no_replay} / "
        f"{new.no_replay}. A subject is {np.mean([p['share'] for p in new.replays]):.0%} of its "
        "shard on average.",
        "",
        "Constant eta, outside the band (stored -> replayed steps, estimate / actual): "
        + ("; ".join(misses) or "none"),
        "",
        "Reading: with a constant eta a shard's run stops at its own fixed point (Q = 0",
        "everywhere) or circles a limit cycle until T. A replay is a fresh descent of the shard",
        "without the subject (t* = 0: one subject already flips step 0), and its stopping time",
        "is a chaotic function of the rows: the same stored count is followed by replays of a",
        "third of T and of all of T, a spread wider than 1.5^2, so no estimate made before the",
        "replay lands within 1.5x of all of them. Halving eta every 10 steps (a power of two, so",
        "weights stay exact lattice points and the removal stays bit-for-bit exact) shrinks the",
        "steps so fast that no run reaches Q = 0 everywhere within T = 40 (see shards at T), so",
        "every replay repeats the stored run's step count after t*, and the estimate is the cost",
        "(step t* is taken from the check's gradient when every coordinate is decided, which the",
        "estimate counts). Not a guarantee: a replay that did reach a fixed point early would",
        "cost less than the estimate; the upper bound holds either way. The price of the change",
        "is the accuracy difference above.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    ds = load_digits_dataset()
    results = {
        name: measure(ds, overrides, args.seeds, args.subjects)
        for name, overrides in track(SCHEDULES.items(), description="schedules")
    }
    text = report(results, args.seeds, args.subjects, time.perf_counter() - start)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
