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
