"""RUM on a RUM-modified model: audit pass rates and cost before and after the recipe fix.

A second forgetting request on a model RUM already modified is the normal case in production.
Canary worlds on digits (models.audit.canary_world); each world's forget set is cut into a first
request (40 canaries + 40 clean rows, as in the audit calibration of
benchmarks/memorization_proxies.py) and a small second one (`--second CANARIES CLEAN`, default
0 + 8 and 4 + 4: two subjects' worth), each with matched non-members. Per world and recipe, four
scenarios (INTRO below); every audit is models.audit.audit_unlearned against a retrained reference
and a twin with the default thresholds. Cost: RUM's grad-evals / one training run.

    .venv/bin/python -m benchmarks.rum_repeat   # writes benchmarks/results/rum_repeat.md
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks._progress import track
from models.audit import AuditResult, CanaryWorld, ModelEval, audit_unlearned, canary_world
from models.cost import CostMeter
from models.datasets import load_digits_dataset
from models.learning_events import LearningEvents
from models.mlp import MlpEnsemble, MlpRecipe, predict_proba, train_mlp
from models.rum import RumRecipe, RumResult, rum_unlearn

RESULTS_PATH = Path(__file__).parent / "results" / "rum_repeat.md"
COMMAND = ".venv/bin/python -m benchmarks.rum_repeat"
MLP = MlpRecipe(hidden=128, epochs=30, batch_size=32, lr=0.01)  # as the audit calibration
FIRST = (40, 40)  # (canaries, clean rows) of the first request
VARIANTS = {
    "before: high = top tercile": RumRecipe(high_beyond=None, repair_epochs=0),
    "high = top tercile and confidence < 0.5": RumRecipe(repair_epochs=0),
    "after: that, and 1 retain-only epoch after NegGrad+": RumRecipe(),
}
SCENARIOS = ("first", "second", "control", "retrain")
INTRO = """Scenarios, per world and RUM seed:
- **first**: RUM on the original model forgets request 1;
- **second**: RUM on that RUM-modified model forgets request 2 (retain: rows of neither request);
- **control**: RUM on the original model forgets request 2 alone (the size, or the lineage?);
- **retrain**: a retrain (another seed) without both requests, audited like *second*: the audit's
  false-failure rate at that size.

Both RUM runs split the forget set by the original's training-time confidence (the flow carries
v1's proxies to the RUM-modified version). Audits: models.audit.audit_unlearned against a
retrained reference and a twin (another seed) for the noise floor, default thresholds. Every
recipe runs on the same worlds and seeds."""


@dataclass
class Tally:
    audits: list[AuditResult]
    cost: list[float]
    high: list[int]  # size of RUM's high-memorisation group


def _split_world(w: CanaryWorld, first: tuple[int, int]) -> dict[str, CanaryWorld]:
    """The world's forget set (and its matched non-members) cut into two requests."""
    c1, k1 = first
    n_canaries = len(w.canaries)
    clean = np.setdiff1d(w.forget, w.canaries)
    f1 = np.sort(np.r_[w.canaries[:c1], clean[:k1]])
    f2 = np.sort(np.r_[w.canaries[c1:], clean[k1:]])
    # canary_world mislabels the first `canaries` non-members; cut them the same way
    h1 = np.r_[np.arange(c1), n_canaries + np.arange(k1)]
    h2 = np.setdiff1d(np.arange(len(w.heldout)), h1)
    everything = np.arange(len(w.y))

    def view(forget: np.ndarray, removed: np.ndarray, held: np.ndarray) -> CanaryWorld:
        return replace(
            w,
            forget=forget,
            retain=np.setdiff1d(everything, removed),
            canaries=np.intersect1d(forget, w.canaries),
            heldout=w.heldout[held],
            y_heldout=w.y_heldout[held],
        )

    return {
        "first": view(f1, f1, h1),
        "second": view(f2, np.r_[f1, f2], h2),
        "control": view(f2, f2, h2),
    }


def _one_world(
    data: tuple[np.ndarray, ...],
    *,
    second: tuple[int, int],
    world: int,
    rum_seeds: int,
    tallies: dict[str, dict[str, Tally]],
    refs: dict[str, list[float]],
) -> None:
    """Train the original and the retrained references of one world; audit every variant on it."""
    x, y, xt, yt = data
    w = canary_world(
        x,
        y,
        xt,
        yt,
        classes=10,
        canaries=FIRST[0] + second[0],
        clean=FIRST[1] + second[1],
        seed=300 + world,
    )
    views = _split_world(w, FIRST)

    def evaluate(model: MlpEnsemble, view: CanaryWorld) -> ModelEval:
        return view.evaluate(lambda xs: predict_proba(model, xs))

    def retrain(view: CanaryWorld, seed: int) -> MlpEnsemble:
        return train_mlp(x[view.retain], w.y[view.retain], classes=10, recipe=MLP, seed=seed)

    events, train_meter = LearningEvents.zeros(len(w.y)), CostMeter()
    original = train_mlp(
        x, w.y, classes=10, recipe=MLP, seed=world, events=events, meter=train_meter
    )
    confidence = events.proxies()["confidence"]
    references = {
        name: [evaluate(retrain(view, 1000 * world + 10 * k + s), view) for s in (1, 2)]
        for k, (name, view) in enumerate(views.items())
    }
    retrain_audit = audit_unlearned(
        evaluate(retrain(views["second"], 1000 * world + 99), views["second"]),
        *_pair(references, "second"),
    )
    refs["forget_first"].append(references["first"][0].forget.accuracy)
    refs["forget_second"].append(references["second"][0].forget.accuracy)

    def rum(model: MlpEnsemble, name: str, seed: int, recipe: RumRecipe) -> tuple[RumResult, float]:
        res = rum_unlearn(
            model,
            x,
            w.y,
            forget_rows=views[name].forget,
            retain_rows=views[name].retain,
            proxy_scores=confidence,
            direction="low",
            recipe=recipe,
            seed=seed,
        )
        return res, res.grad_evals / train_meter.grad_evals

    for variant, recipe in VARIANTS.items():
        t = tallies[variant]
        t["retrain"].audits.append(retrain_audit)
        for seed in range(7, 7 + rum_seeds):
            once = rum(original, "first", seed, recipe)
            runs = {
                "first": once,
                "second": rum(once[0].model, "second", seed + 50, recipe),
                "control": rum(original, "control", seed + 50, recipe),
            }
            for name, (res, cost) in runs.items():
                candidate = evaluate(res.model, views[name])
                t[name].audits.append(audit_unlearned(candidate, *_pair(references, name)))
                t[name].cost.append(cost)
                t[name].high.append(int(res.groups["high"].size))


def run(*, worlds: int, second: tuple[int, int], rum_seeds: int) -> tuple[dict, dict]:
    """Per variant and scenario: the audits, costs and high-group sizes over all worlds."""
    ds = load_digits_dataset()
    tr, te = ds.train_rows(), ds.test_rows()
    data = (ds.features[tr], ds.labels[tr], ds.features[te], ds.labels[te])
    tallies = {v: {s: Tally([], [], []) for s in SCENARIOS} for v in VARIANTS}
    refs: dict[str, list[float]] = {"forget_first": [], "forget_second": []}
    for world in track(range(worlds), description=f"worlds, request 2 = {second}"):
        _one_world(
            data, second=second, world=world, rum_seeds=rum_seeds, tallies=tallies, refs=refs
        )
    return tallies, refs


def _pair(references: dict[str, list[ModelEval]], name: str) -> tuple[ModelEval, list[ModelEval]]:
    ref, twin = references[name]
    return ref, [twin]


def _failures(audits: list[AuditResult]) -> str:
    counts = Counter(r.split(" ")[0] for a in audits for r in a.reasons)
    return ", ".join(f"{k} ({v})" for k, v in counts.most_common()) or "-"


def report(
    tallies: dict,
    refs: dict,
    *,
    worlds: int,
    second: tuple[int, int],
    rum_seeds: int,
    seconds: float,
) -> str:
    label = {
        "first": f"RUM on the original, request 1 ({FIRST[0]} canaries + {FIRST[1]} clean)",
        "second": f"RUM on the RUM-modified model, request 2 ({second[0]} + {second[1]})",
        "control": f"RUM on the original, request 2 alone ({second[0]} + {second[1]})",
        "retrain": "retrain (other seed) without both requests, audited like request 2",
    }
    lines = [
        f"## Request 2 = {second[0]} canaries + {second[1]} clean rows",
        "",
        f"Reproduce: `{COMMAND} --worlds {worlds} --second {second[0]} {second[1]} "
        f"--rum-seeds {rum_seeds}` ({platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread; {seconds:.0f} s on a shared 2-core machine).",
        "",
        f"{worlds} worlds x {rum_seeds} RUM seeds; MLP {MLP.hidden} hidden, {MLP.epochs} epochs, "
        f"batch {MLP.batch_size}; audits against a retrained reference + twin, default "
        "thresholds (models/audit.py). Retrained references' forget accuracy: request 1 "
        f"{np.mean(refs['forget_first']):.3f}, request 2 {np.mean(refs['forget_second']):.3f}.",
        "",
        "| recipe | scenario | audits | passed | forget acc (reference) | retain acc (reference) "
        "| MIA AUC (reference) | high group rows | cost (grad-evals / training run) | failures |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, by_scenario in tallies.items():
        for name in SCENARIOS:
            t = by_scenario[name]
            a = t.audits
            m = {
                k: np.mean([x.metrics[k] for x in a])
                for k in (
                    "forget_acc",
                    "forget_acc_reference",
                    "retain_acc",
                    "retain_acc_reference",
                    "mia_auc",
                    "mia_auc_reference",
                )
            }
            cost = f"{np.mean(t.cost):.1%}" if t.cost else "100% (a retrain)"
            high = f"{np.mean(t.high):.1f}" if t.high else "-"
            lines.append(
                f"| {variant} | {label[name]} | {len(a)} | {sum(x.passed for x in a)} | "
                f"{m['forget_acc']:.3f} ({m['forget_acc_reference']:.3f}) | "
                f"{m['retain_acc']:.4f} ({m['retain_acc_reference']:.4f}) | "
                f"{m['mia_auc']:.3f} ({m['mia_auc_reference']:.3f}) | {high} | {cost} | "
                f"{_failures(a)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=3)
    parser.add_argument(
        "--second",
        type=int,
        nargs=2,
        action="append",
        metavar=("CANARIES", "CLEAN"),
        help="second request's canaries and clean rows (repeatable; default: 0 8 and 4 4)",
    )
    parser.add_argument("--rum-seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    sections, summary = [], []
    began = time.perf_counter()
    for c, k in args.second or [(0, 8), (4, 4)]:
        start = time.perf_counter()
        tallies, refs = run(worlds=args.worlds, second=(c, k), rum_seeds=args.rum_seeds)
        sections.append(
            report(
                tallies,
                refs,
                worlds=args.worlds,
                second=(c, k),
                rum_seeds=args.rum_seeds,
                seconds=time.perf_counter() - start,
            )
        )
        for variant, t in tallies.items():
            summary.append(
                f"| {c} + {k} | {variant} | "
                + " | ".join(
                    f"{sum(a.passed for a in t[n].audits)}/{len(t[n].audits)}"
                    for n in ("first", "second", "control", "retrain")
                )
                + f" | {np.mean(t['first'].cost):.1%} | {np.mean(t['second'].cost):.1%} |"
            )
    text = "\n".join(
        [
            "# RUM on a RUM-modified model",
            "",
            INTRO,
            "",
            "## Summary: audits passed",
            "",
            f"Reproduce: `{COMMAND} --worlds {args.worlds} --rum-seeds {args.rum_seeds}` "
            f"({time.perf_counter() - began:.0f} s in all).",
            "",
            "| request 2 (canaries + clean) | recipe | first | second (RUM-modified) | control "
            "| retrain | cost of first | cost of second |",
            "|---|---|---|---|---|---|---|---|",
            *summary,
            "",
            *sections,
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
