"""Production canaries: does the flow's RUM audit reject a model that did not unlearn?

Per seed, digits MLP (the flow's recipe at its default 30 epochs, and at the 15 epochs of the flow
tests) trained twice: without canaries and with `--canaries 32` (models/canaries.py). A request
of two random subjects' training rows (the "few easy rows" case) is forgotten three ways and each
result goes through the flow's own audit
(tasks.verification.audit_rum: shadow references cached in a temporary DuckDB warehouse, the
statistics of models/audit.py and, with canaries, the canary check):
- **parent**: nothing unlearned (the trained weights, with the rows marked forgotten): the audit
  should reject it;
- **RUM**: models.rum.rum_unlearn as the flow runs it (with canaries: also the first 8);
- **retrain**: a retrain without the rows (another seed; with canaries: without the 8 too).
Also the test-accuracy cost of training with canaries (same seed, same rows otherwise).

    .venv/bin/python -m benchmarks.canary_audit   # writes benchmarks/results/canary_audit.md
    .venv/bin/python -m benchmarks.canary_audit --seed-offset 10   # seeds 10-19 instead of 0-9
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks._progress import track
from data_contracts.settings import Settings
from models.canaries import CANARIES_PER_RUM_RUN, model_training_data, next_canaries
from models.datasets import load_digits_dataset
from models.forgettable import ForgettableModel, mlp_arrays
from models.learning_events import HIGH_MEMORISATION_WHEN
from models.rum import rum_unlearn
from models.training import train_arrays, train_model
from tasks import verification

RESULTS_PATH = Path(__file__).parent / "results" / "canary_audit.md"
COMMAND = ".venv/bin/python -m benchmarks.canary_audit"
CANARIES = 32
EPOCHS = (30, 15)  # the mlp recipe's default; the flow tests' (tests/test_canaries.py)
SUBJECTS_PER_REQUEST = 2
# What was tried to make RUM pass this audit at 30 epochs (measured by this benchmark and
# benchmarks.rum_repeat with the recipes named), kept in every report.
TRIED = """\
## Tried: a stronger RUM recipe for 30 training epochs (issue 5; not adopted)

Goal: RUM passes this audit at the default 30 epochs as often as a retrain (>= 8/10) with the
audit unchanged. Recipes chosen on seeds 0-4, 30 epochs, 32 canaries (audits passed; RUM's cost
as a fraction of a training run); changes relative to models/rum.py (high = top tercile with
confidence < 0.5, alpha 0.98, 2 fine-tune epochs, 3 NegGrad+, 1 retain-only). Measured with the
canaries of commit f414e1e (clipped to each class's min / max; now the mean of the 10 extreme
values, models/canaries.py EXTREME_ROWS), whose table above read the same for RUM (3/10, 8/10):

| change | seeds 0-4 | cost |
|---|---|---|
| none (models/rum.py) | 2/5 | 0.213 |
| high = every row with confidence < 0.5 (not only the top tercile) | 3/5 | 0.210 |
| high < 0.5, 2 retain-only epochs | 3/5 | 0.243 |
| high < 0.5, 2 retain-only, 5 / 4 NegGrad+ epochs | 5/5, 4/5 | 0.327, 0.285 |
| high < 0.5, 2 / 3 retain-only, alpha 0.95 | 5/5, 5/5 | 0.243, 0.276 |
| high < 0.5, 1 retain-only, alpha 0.95 / 0.96 | 4/5, 5/5 | 0.210 |
| high = every row with confidence < 0.3 or in the top tercile, alpha 0.95, 2 retain-only | 4/5 | 0.252 |
| high = top tercile only, alpha 0.95, 2 retain-only | 3/5 | 0.246 |
| high = top tercile only, 5 NegGrad+, 2 retain-only | 2/5 | 0.322 |
| high < 0.5, 2 NegGrad+ (alpha 0.95 / 0.93), 2 retain-only | 3/5, 4/5 | 0.202 |
| high < 0.5, 1 fine-tune, 2 retain-only, alpha 0.97 / 0.95 | 4/5, 5/5 | 0.217 |
| **candidate**: high < 0.5, alpha 0.96, 1 fine-tune, 2 retain-only | 5/5 (0-9: 8/10) | 0.217 |

The candidate on fresh seeds 10-19 (`--seed-offset 10`, the recipe above as "before" on the same
seeds): 30 epochs **6/10** (before 4/10, retrain 9/10), canary check failed 0/10 (before 4/10),
cost 0.222 (0.213); 15 epochs 10/10 (before 7/10) at 0.440 (0.427). Target not met. The 4
failures at 30 epochs are forget-accuracy gaps of one row (the gap's noise floor is 0 here, so
one row fails it): twice a canary with training confidence 0.52 / 0.56 (medium group, only
fine-tuned, still predicted), twice a clean request row the shadow reference and its twin
classify differently (no unlearner can match both). The candidate kept
`python -m benchmarks.rum_repeat` at 10/10 in every cell (first 28.5% of a training run instead
of 27.0%); with alpha 0.96 and 2 fine-tune + 1 retain-only epochs two cells fell to 9/10.
It fails tests/test_rum.py's tabular test (breast cancer, 20 canaries + 20 clean rows) on
a forget-accuracy gap of 0.05 (2 rows of 40); its other RUM tests pass.
Moving the level to 0.6 fixes the band canaries (seeds 0-9: 10/10) but NegGrad+ then unlearns
clean rows of confidence 0.5-0.6 a retrain gets right: the second request of tests/test_rum.py
(8 such rows on a RUM-modified model) fails its audit with 3 rows unlearned (1 row with the
forget term averaged over at least 8 rows). Training confidence does not separate a memorised
canary from a hard clean row in that band; another proxy (e.g. forgetting events) might.

## Tried: a second recorded proxy for RUM's high group (issue 5, session 5; not adopted)

Question: does a proxy recorded in training (models/learning_events.py) tell the canaries that sit
in the 0.5-0.6 confidence band (above) from hard clean rows of the same confidence? Measured on
seeds 0-4 (30 epochs, 32 canaries; all 160 canaries vs the 7185 clean training rows of the five
models; reproduced by `python -m benchmarks.rum_proxy_separation`, and with `--seeds 10
--seed-offset 10` for seeds 10-19's figures below; the audit trial of the rule was a one-off
emulation, not kept since the rule was not adopted). At confidence 0.35-0.7 (12 canaries, 382 clean
rows), AUC of "canary above clean": forgetting events 0.45 (canaries 1-6, clean rows' 10/50/90%
1/3/5), binary accuracy 0.05 and entropy 0.15 (both lower for canaries, as confidence is),
max_confidence 0.84, and the gap max_confidence - confidence 0.97 (the model is confidently wrong
about a canary, which sits in its source class's region; a hard clean row is ambiguous): canaries
0.08-0.47, clean rows' 10/50/90% 0.01/0.04/0.14; past 0.2 lie 11 of the 12 canaries and 3 of the
318 clean rows of confidence 0.5-0.7 (past 0.1: 33). A "first-learnt epoch" is not recorded. No
forget row of seeds 0-4 has confidence 0.45-0.7 (the 40 forgotten canaries are all <= 0.41), so the
audit cannot tune the rule there; 0.2 comes from the distributions above. Rule tried: high =
confidence < 0.5 or gap > 0.2 (emulated by lowering such rows' confidence below 0.5 before
rum_unlearn):

| recipe | seeds 0-4 | fresh seeds 10-19 | cost |
|---|---|---|---|
| models/rum.py | 2/5 | 3/10 | 0.213 |
| the candidate above | 5/5 | 7/10 | 0.222 |
| the candidate, high < 0.5 or gap > 0.2 | 5/5 | 7/10 (the same runs) | 0.222 |
| models/rum.py, high < 0.5 or gap > 0.2 | 3/5 | 7/10 | 0.222 |
| retrain | - | 8/10 | 1 |
| post hoc (after seeing 10-19): gap > 0.1, candidate / models/rum.py | - | 8/10, 8/10 | 0.223 |

On seeds 10-19 three forgotten canaries are in the band: confidence 0.58 / 0.50 / 0.54 with gaps
0.12 / 0.30 / 0.11 and 1 / 2 / 4 forgetting events (seeds 13, 15, 16). The gap shrinks as
confidence passes 0.5 (a row fitted half the time is wrong by less on average), so just the
canaries that need it sit in the clean rows' tail: over seeds 10-19's training sets (22 canaries,
739 clean rows at 0.35-0.7) the gap's AUC is 0.96 and forgetting events' 0.37 (canaries have
fewer), but the 8 canaries at 0.45-0.65 have gaps 0.11-0.30, and 58 of 606 clean rows at 0.5-0.7
pass 0.1. Failures of the candidate with the gap rule: seed 13 (a one-row forget-accuracy gap
the retrain fails too), 16 (the canary of gap 0.11 stays medium), 17 (retain_acc_gap 0.0227 >
0.02: alpha 0.96 costs retain accuracy). Target (>= 8/10 on fresh seeds) not met; models/rum.py
unchanged. Forgetting events cannot separate the two; the gap would need a level near 0.1, where
NegGrad+ takes 1 in 10 hard clean rows of the band (the level-0.6 failure above), and any second
proxy has to be carried by tasks/forgetting.py, models/unlearning.py and the planner as well.
"""


def _rum(model: ForgettableModel, data, forget: np.ndarray, confidence: np.ndarray, seed: int):
    keep = ~model.removed.copy()
    keep[forget] = False
    done = rum_unlearn(
        model.mlp_state(),
        data.x,
        data.y,
        forget_rows=forget,
        retain_rows=np.flatnonzero(keep),
        proxy_scores=np.nan_to_num(confidence, nan=1.0),
        direction=HIGH_MEMORISATION_WHEN["confidence"],
        seed=seed,
    )
    return replace(model, arrays=mlp_arrays(done.model), removed=~keep), done.grad_evals


def _retrain(model: ForgettableModel, data, forget: np.ndarray, seed: int) -> ForgettableModel:
    run = train_arrays(
        data.x,
        data.y,
        classes=model.classes,
        recipe_name="mlp",
        seed=seed,
        overrides={k: v for k, v in model.recipe.items() if k != "layers"},
        exclude_rows=np.union1d(np.flatnonzero(model.removed), forget),
    )
    return replace(run.model, info=model.info)


def run(seeds: int, seed_offset: int = 0) -> dict:
    ds = load_digits_dataset()
    train = ds.train_rows()
    subjects = np.unique(ds.subject_ids[train])
    test = ds.test_rows()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), hash_salt="bench")
        settings.ensure_dirs()
        for seed in track(range(seed_offset, seed_offset + seeds), description="seeds"):
            rng = np.random.default_rng(seed)
            chosen = rng.choice(subjects, SUBJECTS_PER_REQUEST, replace=False)
            request = np.flatnonzero(np.isin(ds.subject_ids[train], chosen))
            for epochs, canaries in ((e, c) for e in EPOCHS for c in (0, CANARIES)):
                trained = train_model(
                    ds,
                    recipe_name="mlp",
                    seed=seed,
                    canaries=canaries,
                    overrides={"epochs": epochs},
                )
                model = trained.model
                data = model_training_data(ds, model)
                extra = next_canaries(model.removed, data.n_dataset)[:CANARIES_PER_RUM_RUN]
                forget = np.union1d(request, extra)
                acc = float(
                    np.mean(model.predict_proba(ds.features[test]).argmax(1) == ds.labels[test])
                )
                mask = model.removed.copy()
                mask[forget] = True
                rum_model, rum_cost = _rum(
                    model, data, forget, trained.events.proxies()["confidence"], seed
                )
                candidates = {
                    "parent": replace(model, removed=mask),
                    "rum": rum_model,
                    "retrain": _retrain(model, data, forget, seed + 1000),
                }
                for name, candidate in candidates.items():
                    audit = verification.audit_rum(
                        settings,
                        dataset=ds,
                        forget_rows=forget,
                        model=candidate,
                        test_rows=test,
                    )
                    rows.append(
                        {
                            "seed": seed,
                            "epochs": epochs,
                            "canaries": canaries,
                            "candidate": name,
                            "passed": audit["passed"],
                            "canary_failed": any(
                                r.startswith("canaries:") for r in audit["reasons"]
                            ),
                            "other_failed": any(
                                not r.startswith("canaries:") for r in audit["reasons"]
                            ),
                            "canary_pvalue": audit["metrics"].get("canary_pvalue"),
                            "power_pvalue": audit["metrics"].get("canary_power_pvalue"),
                            "test_accuracy": acc,
                            "forget_rows": len(forget),
                            "rum_cost": rum_cost / model.retrain_grad_evals(len(data.y)),
                        }
                    )
    return {"rows": rows}


def _report(result: dict, *, seeds: int, seed_offset: int, seconds: float, load: str) -> str:
    rows = result["rows"]

    def pick(epochs: int, canaries: int, candidate: str) -> list[dict]:
        return [
            r
            for r in rows
            if r["epochs"] == epochs and r["canaries"] == canaries and r["candidate"] == candidate
        ]

    def median(values: list) -> str:
        values = [v for v in values if v is not None]
        return f"{np.median(values):.2g}" if values else "-"

    lines = [
        "# Production canaries and the RUM audit's power",
        "",
        __doc__.split("\n\n    ")[0].strip(),
        "",
        f"Command: `{COMMAND} --seeds {seeds} --seed-offset {seed_offset}`; seeds {seed_offset}-"
        f"{seed_offset + seeds - 1}, {platform.processor() or 'cpu'}, "
        f"{os.cpu_count()} cores, {seconds / 60:.1f} min; load average before the run: {load}.",
    ]
    for epochs in EPOCHS:
        lines += [
            "",
            f"## {epochs} training epochs",
            "",
            "| training | candidate | audit passes | fails on canaries | fails elsewhere | "
            "median canary p | median power p | forget rows |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for canaries in (0, CANARIES):
            for candidate in ("parent", "rum", "retrain"):
                rs = pick(epochs, canaries, candidate)
                fails = sum(r["canary_failed"] for r in rs) if canaries else None
                lines.append(
                    f"| {f'{canaries} canaries' if canaries else 'no canaries'} | {candidate} | "
                    f"{sum(r['passed'] for r in rs)}/{len(rs)} | "
                    f"{'-' if fails is None else f'{fails}/{len(rs)}'} | "
                    f"{sum(r['other_failed'] for r in rs)}/{len(rs)} | "
                    f"{median([r['canary_pvalue'] for r in rs])} | "
                    f"{median([r['power_pvalue'] for r in rs])} | "
                    f"{int(np.median([r['forget_rows'] for r in rs]))} |"
                )
        acc0 = [r["test_accuracy"] for r in pick(epochs, 0, "parent")]
        acc1 = [r["test_accuracy"] for r in pick(epochs, CANARIES, "parent")]
        diff = np.array(acc1) - np.array(acc0)
        cost0 = [r["rum_cost"] for r in pick(epochs, 0, "rum")]
        cost1 = [r["rum_cost"] for r in pick(epochs, CANARIES, "rum")]
        lines += [
            "",
            f"Test accuracy without canaries {np.mean(acc0):.4f}, with {CANARIES} canaries "
            f"{np.mean(acc1):.4f} (paired difference {np.mean(diff):+.4f}, range "
            f"{diff.min():+.4f} to {diff.max():+.4f}, over {len(diff)} seeds).",
            f"RUM's cost / one training run: {np.mean(cost0):.3f} without canaries, "
            f"{np.mean(cost1):.3f} with {CANARIES_PER_RUM_RUN} of them in the forget set.",
        ]
    lines += [
        "",
        "Reading: without canaries the audit's statistics see only the request's few rows, which",
        "every model fits alike, so a model that unlearned nothing passes. Canaries in the forget",
        "set give it power (the canary check, and the other statistics through the canaries'",
        "losses). RUM fails where its recipe leaves forgotten canaries fitted better than twins;",
        "such runs fall back to a retrain in the flow. `power p`: the canary tests on the canaries",
        "the candidate still holds (near 0: a candidate that kept the forgotten ones is caught).",
        "",
        *TRIED.splitlines(),
        "",
        "Per run:",
        "",
        "| seed | epochs | canaries | candidate | passed | canary p | power p |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['epochs']} | {r['canaries']} | {r['candidate']} | {r['passed']} "
            f"| {median([r['canary_pvalue']])} | {median([r['power_pvalue']])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    start = time.perf_counter()
    result = run(args.seeds, args.seed_offset)
    report = _report(
        result,
        seeds=args.seeds,
        seed_offset=args.seed_offset,
        seconds=time.perf_counter() - start,
        load=load,
    )
    RESULTS_PATH.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
