"""Do training-time proxies tell memorised canaries from hard clean rows of the same confidence?

RUM (Zhao et al., arXiv 2406.01257, sec. 4-5) sends a forget row to NegGrad+ when its proxy says
it is highly memorised; models/rum.py uses training confidence below 0.5. The canary audit
(benchmarks/results/canary_audit.md) fails RUM on canaries whose confidence sits at 0.5-0.6, where
hard clean rows sit too. Per seed this trains the flow's digits MLP (30 epochs, 32 production
canaries, models/canaries.py) and compares, among the training rows with confidence in
[BAND_LOW, BAND_HIGH], the canaries with the clean rows on every proxy recorded during training
(models/learning_events.py) and on the gap max-confidence - confidence. Separation is the
Mann-Whitney AUC of "canary above clean" (scipy; 0.5: none, 0 or 1: complete).

    .venv/bin/python -m benchmarks.rum_proxy_separation [--seeds 5] [--seed-offset 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from benchmarks._progress import track
from models.canaries import model_training_data
from models.datasets import load_digits_dataset
from models.training import train_model

RESULTS_PATH = Path(__file__).parent / "results" / "rum_proxy_separation.md"
BAND_LOW, BAND_HIGH = 0.35, 0.7  # around RUM's 0.5 level, where canaries and hard rows mix
GAP_LEVELS = (0.1, 0.2)
PROXIES = ("forgetting_events", "binary_accuracy", "entropy", "max_confidence", "gap")


def collect(seeds: int, offset: int) -> dict[str, np.ndarray]:
    """Per training row of every seed's model: is it a canary, its confidence and its proxies."""
    ds = load_digits_dataset()
    parts: list[dict[str, np.ndarray]] = []
    for seed in track(range(offset, offset + seeds), description="seeds"):
        run = train_model(ds, recipe_name="mlp", seed=seed, canaries=32, overrides={"epochs": 30})
        data = model_training_data(ds, run.model)
        p = run.events.proxies()
        row = {k: p[k] for k in ("confidence", *PROXIES[:-1])}
        row["gap"] = p["max_confidence"] - p["confidence"]
        row["canary"] = data.is_canary(np.arange(len(data.y)))
        parts.append(row)
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def report(rows: dict[str, np.ndarray], seeds: int, offset: int, seconds: float) -> str:
    conf, canary = rows["confidence"], rows["canary"]
    band = (conf >= BAND_LOW) & (conf <= BAND_HIGH)
    c, h = band & canary, band & ~canary
    lines = [
        "# Training-time proxies: canaries vs hard clean rows at RUM's confidence level",
        "",
        f"Reproduce: `.venv/bin/python -m benchmarks.rum_proxy_separation --seeds {seeds} "
        f"--seed-offset {offset}` ({seconds:.0f} s). Digits MLP, 30 epochs, 32 canaries, seeds "
        f"{offset}-{offset + seeds - 1}: {int(canary.sum())} canaries and "
        f"{int((~canary).sum())} clean training rows; at confidence {BAND_LOW}-{BAND_HIGH}: "
        f"{int(c.sum())} canaries, {int(h.sum())} clean rows.",
        "",
        "| proxy | AUC canary > clean (in the band) | canaries in the band | clean rows: 10% / 50% "
        "/ 90% |",
        "|---|---|---|---|",
    ]
    for name in PROXIES:
        v = rows[name]
        auc = mannwhitneyu(v[c], v[h]).statistic / (c.sum() * h.sum()) if c.any() else np.nan
        q = np.quantile(v[h], [0.1, 0.5, 0.9])
        lines.append(
            f"| {name} | {auc:.2f} | {', '.join(f'{x:.2f}' for x in np.sort(v[c]))} "
            f"| {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} |"
        )
    upper = (conf >= 0.5) & (conf <= BAND_HIGH)
    lines.append("")
    for level in GAP_LEVELS:
        lines.append(
            f"- gap > {level}: {int((c & (rows['gap'] > level)).sum())} of {int(c.sum())} band "
            f"canaries, {int((upper & ~canary & (rows['gap'] > level)).sum())} of "
            f"{int((upper & ~canary).sum())} clean rows at confidence 0.5-{BAND_HIGH} (NegGrad+ "
            "would unlearn those too)."
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = collect(args.seeds, args.seed_offset)
    text = report(rows, args.seeds, args.seed_offset, time.perf_counter() - start)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
