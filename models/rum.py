"""RUM: refine the forget set by memorisation, then unlearn the groups low -> medium -> high.

Zhao, Kurmanji, Barbulescu, Triantafillou, Hu, "What makes unlearning hard and what to do about
it", arXiv 2406.01257 (NeurIPS 2024), sec. 4 (RUM meta-algorithm) with memorisation proxies from
Zhao & Triantafillou, arXiv 2410.16516 (algorithms.md sec. 3). Per group, each step starting from
the previous step's model and always using the full retain set:
- low: nothing (default) or fine-tune on retain;
- medium: fine-tune on retain for a few epochs;
- high: NegGrad+ (Kurmanji et al., arXiv 2302.09880, sec. 5 baselines):
  minimise alpha * CE(retain batch) - (1 - alpha) * CE(forget batch). "High" is the top tercile
  *and* past an absolute proxy level (RumRecipe.high_beyond), so a request of well-learned rows
  (the usual small second request on a RUM-modified model) is fine-tuned, not ascended; the
  ascent is followed by retain-only epochs (RumRecipe.repair_epochs, SCRUB's closing min-steps).
RUM carries no certificate: the result only earns the guarantee "audited" if an empirical audit
(models/audit.py) passes, and it breaks any certified lineage ("rum-modified").
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from models.audit import AuditResult
from models.cost import CostMeter
from models.memorization import Direction, orient
from models.mlp import DTYPE, MlpEnsemble, MlpRecipe, fine_tune
from models.progress import Progress, counter

GROUPS = ("low", "medium", "high")


@dataclass(frozen=True)
class RumRecipe:
    """Hyper-parameters of one RUM run (stored in the certificate payload)."""

    cutoffs: tuple[float, float] | None = None  # proxy units, low->medium then medium->high
    # Proxy level a row must be past to join the high group (proxy units; None: terciles only).
    # 0.5 for the flow's confidence proxy: on average over training the model gave the row's
    # label less than half its probability, i.e. it fitted the row only late, by memorising it.
    # Terciles alone call the top third of *any* request "high", however well learned, and
    # NegGrad+ then unlearns clean rows a retrain gets right (benchmarks/results/rum_repeat.md).
    high_beyond: float | None = 0.5
    low_action: Literal["none", "finetune"] = "none"
    low_epochs: int = 1
    finetune_epochs: int = 2
    neggrad_epochs: int = 3
    # Retain-only epochs after NegGrad+, as SCRUB ends with min-steps once its max-steps stop
    # (Kurmanji et al., arXiv 2302.09880, sec. 4): each NegGrad+ costs ~0.5-2 points of retain
    # accuracy that its own retain term does not win back, and on a model RUM already modified
    # the losses add up past the audit's retain/test thresholds (benchmarks/results/rum_repeat.md).
    repair_epochs: int = 1
    alpha: float = 0.98
    # a third of MlpRecipe's training rate: at the full rate a fresh Adam's first NegGrad+ steps
    # cost 2-3 points of retain accuracy (measured on digits, benchmarks/memorization_proxies.md)
    lr: float = 0.003
    batch_size: int = 32
    optimizer: Literal["adam", "sgd"] = "adam"

    def validate(self) -> None:
        """Raise ValueError naming the first invalid parameter."""
        if self.low_action not in ("none", "finetune"):
            raise ValueError(f"low_action must be 'none' or 'finetune', got {self.low_action!r}")
        for name in ("low_epochs", "finetune_epochs", "neggrad_epochs", "repair_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.cutoffs is not None and len(self.cutoffs) != 2:
            raise ValueError(f"cutoffs must be two numbers, got {self.cutoffs}")
        if self.high_beyond is not None and not np.isfinite(self.high_beyond):
            raise ValueError(f"high_beyond must be finite or None, got {self.high_beyond}")
        MlpRecipe(lr=self.lr, batch_size=self.batch_size, optimizer=self.optimizer).validate()

    def finetune_recipe(self, epochs: int) -> MlpRecipe:
        return MlpRecipe(
            epochs=epochs, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer
        )


@dataclass
class RumResult:
    """The unlearned model, how the forget set was split, and what it cost."""

    model: MlpEnsemble
    groups: dict[str, np.ndarray]  # rows of x per memorisation group
    cutoffs: tuple[float, float]  # in proxy units, low->medium then medium->high
    recipe: RumRecipe
    grad_evals: float
    seconds: float
    stage_grad_evals: dict[str, float] = field(default_factory=dict)

    def certificate(self, audit: AuditResult | None) -> dict[str, Any]:
        """Certificate payload: guarantee "audited" only if `audit` ran and passed, else "none"."""
        passed = audit is not None and audit.passed
        return {
            "method": "rum",
            "guarantee": "audited" if passed else "none",
            "lineage_after": "rum-modified",
            "epsilon": None,
            "delta": None,
            "audit_passed": None if audit is None else audit.passed,
            "audit_metrics": {} if audit is None else dict(audit.metrics),
            "audit_thresholds": {} if audit is None else dict(audit.thresholds),
            "audit_reasons": ["no audit was run"] if audit is None else list(audit.reasons),
            "group_sizes": {g: int(rows.size) for g, rows in self.groups.items()},
            "cutoffs": list(self.cutoffs),
            "recipe": asdict(self.recipe),
            "cost_grad_evals": self.grad_evals,
            "cost_seconds": self.seconds,
        }


def split_by_memorisation(
    scores: np.ndarray,
    *,
    direction: Direction,
    cutoffs: tuple[float, float] | None = None,
    high_beyond: float | None = None,
) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """Positions into `scores` per group low/medium/high, and the cut-offs used (proxy units).

    RUM sec. 4 step 1 ("refinement"). Without cutoffs: terciles of the given scores. Cut-offs are
    in the proxy's own units, ordered from the low/medium to the medium/high boundary; for a proxy
    where high memorisation means low values (confidence) they therefore decrease. `high_beyond`
    (proxy units) moves the medium/high cut-off out to at least that level, so a row is "high"
    only if its proxy says it is memorised, not merely among the most memorised of a request
    (arXiv 2406.01257 builds its low / medium / high forget sets from ranges of the memorisation
    score, not from ranks within a request); the other rows of the top tercile go to medium."""
    mem = orient(scores, direction=direction)
    if not np.all(np.isfinite(mem)):
        raise ValueError("proxy_scores must be finite on the forget rows")
    if cutoffs is None:
        lo, hi = (float(q) for q in np.quantile(mem, [1 / 3, 2 / 3])) if mem.size else (0.0, 0.0)
    else:
        lo, hi = (
            float(c) for c in orient(np.asarray(cutoffs, dtype=np.float64), direction=direction)
        )
        if lo > hi:
            raise ValueError(
                f"cutoffs must go from the low/medium to the medium/high boundary for direction "
                f"{direction!r}, got {cutoffs}"
            )
    if high_beyond is not None:
        floor = float(orient(np.asarray(high_beyond), direction=direction))
        hi = max(hi, floor)
    groups = {
        "low": np.flatnonzero(mem <= lo),
        "medium": np.flatnonzero((mem > lo) & (mem <= hi)),
        "high": np.flatnonzero(mem > hi),
    }
    used = tuple(float(c) for c in orient(np.array([lo, hi]), direction=direction))
    return groups, (used[0], used[1])


def neggrad_plus(
    model: MlpEnsemble,
    x: np.ndarray,
    y: np.ndarray,
    *,
    forget_rows: np.ndarray,
    retain_rows: np.ndarray,
    alpha: float,
    epochs: int,
    lr: float,
    batch_size: int,
    optimizer: Literal["adam", "sgd"] = "adam",
    seed: int,
    meter: CostMeter | None = None,
) -> MlpEnsemble:
    """A copy of `model` after NegGrad+: minimise alpha*CE(retain) - (1-alpha)*CE(forget).

    Kurmanji et al., arXiv 2302.09880, sec. 5; used for the high-memorisation group in RUM
    (arXiv 2406.01257, sec. 4). One epoch is one pass over the retain rows; the forget rows are
    cycled alongside in batches of the same size (zip(retain, cycle(forget)), as in the SalUn
    code the RUM authors build on). Cost: retain + forget examples per step. The whole
    (1 - alpha) lands on the group however small it is, so each of a few rows is pushed far
    harder than a row of a large group: what keeps this from unlearning rows a retrain still fits
    is that only rows the proxy calls memorised get here (RumRecipe.high_beyond)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if len(forget_rows) == 0 or len(retain_rows) == 0:
        raise ValueError("forget_rows and retain_rows must be non-empty for NegGrad+")
    tuned = copy.deepcopy(model)
    recipe = MlpRecipe(lr=lr, batch_size=batch_size, optimizer=optimizer, epochs=epochs)
    recipe.validate()
    opt = (
        torch.optim.Adam(tuned.parameters(), lr=lr)
        if optimizer == "adam"
        else torch.optim.SGD(tuned.parameters(), lr=lr)
    )
    xt = torch.as_tensor(x, dtype=DTYPE)
    yt = torch.as_tensor(y, dtype=torch.int64)
    retain_t = torch.as_tensor(np.asarray(retain_rows, dtype=np.int64))
    forget_t = torch.as_tensor(np.asarray(forget_rows, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    forget_batch = min(batch_size, len(forget_t))
    meter = meter if meter is not None else CostMeter()
    with meter.timing():
        forget_order = forget_t[torch.randperm(len(forget_t), generator=gen)]
        cursor = 0
        for _ in range(epochs):
            for rows in torch.split(
                retain_t[torch.randperm(len(retain_t), generator=gen)], batch_size
            ):
                if cursor + forget_batch > len(forget_order):
                    forget_order = forget_t[torch.randperm(len(forget_t), generator=gen)]
                    cursor = 0
                frows = forget_order[cursor : cursor + forget_batch]
                cursor += forget_batch
                ce = torch.nn.functional.cross_entropy
                loss = alpha * ce(tuned(xt[rows]), yt[rows]) - (1 - alpha) * ce(
                    tuned(xt[frows]), yt[frows]
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                meter.add_gradients(len(rows) + len(frows))
    return tuned


def rum_unlearn(
    model: MlpEnsemble,
    x: np.ndarray,
    y: np.ndarray,
    *,
    forget_rows: np.ndarray,
    retain_rows: np.ndarray,
    proxy_scores: np.ndarray,
    direction: Direction,
    recipe: RumRecipe | None = None,
    seed: int,
    meter: CostMeter | None = None,
    progress: Progress | None = None,
) -> RumResult:
    """Unlearn `forget_rows` of (x, y) from `model` with RUM; `model` itself is left unchanged.

    `proxy_scores` has one memorisation-proxy value per row of x (e.g. the learning events recorded
    when `model` was trained on x); `direction` says whether high values mean high memorisation.
    arXiv 2406.01257, sec. 4: split the forget set (split_by_memorisation), then unlearn the low,
    medium and high groups in that order, each from the previous model. `progress(done, 3)` is
    called per group (a group with nothing to do counts as done)."""
    recipe = recipe or RumRecipe()
    recipe.validate()
    n = len(y)
    forget_rows = np.asarray(forget_rows, dtype=np.int64)
    retain_rows = np.asarray(retain_rows, dtype=np.int64)
    proxy_scores = np.asarray(proxy_scores, dtype=np.float64)
    if len(x) != n:
        raise ValueError(f"x and y must have the same length, got {len(x)} and {n}")
    if proxy_scores.shape != (n,):
        raise ValueError(
            f"proxy_scores must have one value per row of x ({n}), got {proxy_scores.shape}"
        )
    for name, rows in (("forget_rows", forget_rows), ("retain_rows", retain_rows)):
        if rows.size == 0:
            raise ValueError(f"{name} must be non-empty")
        if rows.min() < 0 or rows.max() >= n:
            raise ValueError(f"{name} must index rows of x (0..{n - 1})")
    if np.intersect1d(forget_rows, retain_rows).size:
        raise ValueError("forget_rows and retain_rows must be disjoint")
    positions, cutoffs = split_by_memorisation(
        proxy_scores[forget_rows],
        direction=direction,
        cutoffs=recipe.cutoffs,
        high_beyond=recipe.high_beyond,
    )
    groups = {g: forget_rows[positions[g]] for g in GROUPS}
    own = CostMeter()
    stage: dict[str, float] = {}
    current = model
    x_retain, y_retain = x[retain_rows], y[retain_rows]

    def finetune(epochs: int, stage_seed: int) -> MlpEnsemble:
        return fine_tune(
            current,
            x_retain,
            y_retain,
            recipe=recipe.finetune_recipe(epochs),
            seed=stage_seed,
            meter=own,
        )

    tick = counter(progress, len(GROUPS))
    before = own.grad_evals
    if groups["low"].size and recipe.low_action == "finetune" and recipe.low_epochs:
        current = finetune(recipe.low_epochs, seed)
    stage["low"], before = own.grad_evals - before, own.grad_evals
    tick()
    if groups["medium"].size and recipe.finetune_epochs:
        current = finetune(recipe.finetune_epochs, seed + 1)
    stage["medium"], before = own.grad_evals - before, own.grad_evals
    tick()
    if groups["high"].size and recipe.neggrad_epochs:
        current = neggrad_plus(
            current,
            x,
            y,
            forget_rows=groups["high"],
            retain_rows=retain_rows,
            alpha=recipe.alpha,
            epochs=recipe.neggrad_epochs,
            lr=recipe.lr,
            batch_size=recipe.batch_size,
            optimizer=recipe.optimizer,
            seed=seed + 2,
            meter=own,
        )
        if recipe.repair_epochs:
            current = finetune(recipe.repair_epochs, seed + 3)
    stage["high"] = own.grad_evals - before
    tick()
    if current is model:  # nothing ran: still hand back a distinct object the caller may modify
        current = copy.deepcopy(model)
    if meter is not None:
        meter.grad_evals += own.grad_evals
        meter.seconds += own.seconds
    return RumResult(
        model=current,
        groups=groups,
        cutoffs=cutoffs,
        recipe=recipe,
        grad_evals=own.grad_evals,
        seconds=own.seconds,
        stage_grad_evals=stage,
    )
