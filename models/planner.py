"""Enumerate the unlearning paths a model's lineage allows, predict their cost, pick the cheapest
that meets the policy (algorithms.md sec. 5). Pure: the ledger comes in, a plan goes out."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from data_contracts.policy import GUARANTEE_RANK, Policy
from models.accounting import batch_z, pnsgd_min_epochs
from models.forgettable import ForgettableModel
from models.pnsgd import PnsgdRecipe, accountant_bound, recipe_constants

# Own-run rates a path's prediction takes the median of (newest kept): a run slowed 2x by a
# neighbour process moves the median of three not at all, a moving average by 1.5x.
OWN_RUNS_KEPT = 5


@dataclass
class ModelLedger:
    """Per-model running state carried from version to version (stored with each version)."""

    lineage: str
    z_carried: float = 0.0  # PNSGD W-infinity bound left over from earlier requests
    pcmu_removed: int = 0
    grad_evals_since_retrain: float = 0.0
    # The training run's rate: what paths that repeat training work use until they have run
    # (calibration.TRAINING_RATE_PATHS); for the others a last resort only (until 77c515e PNSGD
    # training recorded learning events with an extra pass its fine-tunes did not: 2-2.5x over).
    seconds_per_grad_eval: float = 1e-5
    # The rate each path is predicted with: the median of its own last runs, else a micro-run of
    # its inner loop on this machine (models.calibration). Stored so the ledger JSON reads alone.
    seconds_per_grad_eval_by_path: dict[str, float] = field(default_factory=dict)
    own_run_rates_by_path: dict[str, list[float]] = field(default_factory=dict)
    micro_run_rates_by_path: dict[str, float] = field(default_factory=dict)
    # Per stage, for paths whose stages run at different rates (RUM; MicroRun.stage_rates).
    micro_run_stage_rates_by_path: dict[str, dict[str, float]] = field(default_factory=dict)
    retrain_grad_evals: float = 0.0

    def __post_init__(self) -> None:
        # Ledgers written before per-run history was kept hold one averaged rate per path.
        for path, rate in self.seconds_per_grad_eval_by_path.items():
            if path not in self.own_run_rates_by_path and path not in self.micro_run_rates_by_path:
                self.own_run_rates_by_path[path] = [rate]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rate(self, path: str) -> float:
        """Seconds per grad-eval predicted for `path` (see `rate_basis` for where it comes from)."""
        return self.seconds_per_grad_eval_by_path.get(path, self.seconds_per_grad_eval)

    def rate_basis(self, path: str) -> str:
        """Where `rate(path)` comes from, for the candidate table."""
        own = self.own_run_rates_by_path.get(path)
        if own:
            return f"own runs (median of last {len(own)})"
        if path in self.micro_run_rates_by_path:
            return "micro-run"
        return "training run (includes learning-event recording)"

    def _refresh(self, path: str) -> None:
        own = self.own_run_rates_by_path.get(path)
        if own:
            self.seconds_per_grad_eval_by_path[path] = statistics.median(own)
        elif path in self.micro_run_rates_by_path:
            self.seconds_per_grad_eval_by_path[path] = self.micro_run_rates_by_path[path]

    def record_micro_run(
        self, path: str, seconds_per_grad_eval: float, stage_rates: dict[str, float] | None = None
    ) -> None:
        """A micro-run's rate (and its per-stage rates, if any): used until the path has run for
        real (its own runs win)."""
        if not seconds_per_grad_eval > 0:
            raise ValueError(f"a measured rate must be > 0, got {seconds_per_grad_eval}")
        self.micro_run_rates_by_path[path] = seconds_per_grad_eval
        if stage_rates:
            self.micro_run_stage_rates_by_path[path] = dict(stage_rates)
        self._refresh(path)

    def stage_rates(self, path: str) -> dict[str, float]:
        """Per-stage rates `path` is priced with, while only a micro-run measured it ({} else)."""
        if self.own_run_rates_by_path.get(path):
            return {}
        return self.micro_run_stage_rates_by_path.get(path, {})

    def calibrate(self, path: str, *, grad_evals: float, seconds: float) -> None:
        """Fold one measured run of `path` into its rate (only that path's own runs count)."""
        if grad_evals <= 0 or seconds <= 0:
            return
        own = [*self.own_run_rates_by_path.get(path, []), seconds / grad_evals]
        self.own_run_rates_by_path[path] = own[-OWN_RUNS_KEPT:]
        self._refresh(path)

    def learn_rates(
        self, *, previous: ModelLedger, plan: Plan, grad_evals: float, seconds: float
    ) -> None:
        """This (new) ledger after a run of `plan.chosen`: the rates of `previous` (they describe
        the machine and the recipe, so they survive a retrain), the micro-runs measured while
        planning, and the chosen path's measured cost minus the part it had measured already."""
        self.seconds_per_grad_eval_by_path = dict(previous.seconds_per_grad_eval_by_path)
        self.own_run_rates_by_path = {k: list(v) for k, v in previous.own_run_rates_by_path.items()}
        self.micro_run_rates_by_path = dict(previous.micro_run_rates_by_path)
        self.micro_run_stage_rates_by_path = {
            k: dict(v) for k, v in previous.micro_run_stage_rates_by_path.items()
        }
        for c in plan.candidates:
            if c.micro_run is not None:
                self.record_micro_run(
                    c.path, c.micro_run["seconds_per_grad_eval"], c.micro_run.get("stage_rates")
                )
        chosen = plan.chosen
        self.calibrate(
            chosen.path,
            grad_evals=grad_evals - chosen.measured_grad_evals,
            seconds=seconds - chosen.measured_seconds,
        )


@dataclass
class Candidate:
    path: str
    guarantee: str
    predicted_grad_evals: float
    predicted_seconds: float
    epsilon: float | None = None
    delta: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None
    # Work already run once while planning that the path repeats identically (PCMU's check):
    # priced at the seconds it took, the rest of predicted_grad_evals at the path's rate.
    measured_grad_evals: float = 0.0
    measured_seconds: float = 0.0
    seconds_per_grad_eval: float = 0.0
    seconds_basis: str = ""
    micro_run: dict[str, Any] | None = None  # models.calibration.MicroRun.as_dict() if one ran
    # Part of predicted_grad_evals this run pays once for every later run too (RUM's shadow
    # references while their cache is cold): in the bill, but amortised when ranking paths.
    one_off_grad_evals: float = 0.0
    # Grad-evals the path cannot exceed, where predicted_grad_evals is only an estimate (PCMU
    # replays, PCMU-family and SISA retrains); None: the prediction is exact or a bound itself.
    upper_grad_evals: float | None = None
    upper_seconds: float = 0.0  # upper_grad_evals priced like predicted_seconds

    @property
    def grad_evals_bound(self) -> float:
        """Upper bound on the path's grad-evals: exact costs and bounds are their own bound.

        Exact: PNSGD (epochs x n), SISA (slices replayed from the assignment), RUM with the
        training-time proxy, PNSGD and MLP retrains (epochs x n). Already a bound: RUM without the
        proxy. Only an estimate: PCMU / PCMU-in-shards replays and the retrains of those recipes,
        which with a constant eta stop at a fixed point no cheap predictor places (with halving
        eta every run takes all T steps and the estimate is the cost;
        models.pcmu.pcmu_unlearn_grad_evals), and a SISA retrain (balanced shards assumed); those
        carry an explicit upper_grad_evals."""
        return self.predicted_grad_evals if self.upper_grad_evals is None else self.upper_grad_evals

    @property
    def recurring_grad_evals(self) -> float:
        """What the path itself costs this run (comparable with its measured cost)."""
        return self.predicted_grad_evals - self.one_off_grad_evals

    @property
    def ranking_grad_evals(self) -> float:
        """The cost `choose` compares: the one-off part spread over ONE_OFF_AMORTISED_RUNS."""
        return self.recurring_grad_evals + self.one_off_grad_evals / ONE_OFF_AMORTISED_RUNS

    def _upper_is_point(self) -> bool:
        return self.upper_grad_evals is None or self.upper_grad_evals == self.predicted_grad_evals

    def as_row(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "guarantee": self.guarantee,
            "predicted_grad_evals": round(self.predicted_grad_evals, 1),
            "one_off_grad_evals": round(self.one_off_grad_evals, 1),
            "predicted_seconds": round(self.predicted_seconds, 3),
            # Only where the point estimate is not a bound (None: the prediction is one).
            "upper_grad_evals": None if self._upper_is_point() else round(self.upper_grad_evals, 1),
            "upper_seconds": None if self._upper_is_point() else round(self.upper_seconds, 3),
            "seconds_per_grad_eval": float(f"{self.seconds_per_grad_eval:.4g}"),
            "seconds_from": self.seconds_basis,
            "epsilon": self.epsilon,
            "chosen": False,
            "rejected": self.rejected or "",
        }


@dataclass
class Plan:
    chosen: Candidate
    candidates: list[Candidate]
    why: str

    def table(self) -> list[dict[str, Any]]:
        rows = [c.as_row() for c in self.candidates]
        for row, c in zip(rows, self.candidates, strict=True):
            row["chosen"] = c is self.chosen
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.path,
            "why": self.why,
            "candidates": self.table(),
            "chosen_params": self.chosen.params,
        }


def _retrain_upper_grad_evals(model: ForgettableModel, n_after: int) -> float | None:
    """A retrain's grad-evals cannot exceed this (None: ForgettableModel.retrain_grad_evals is
    exact). PCMU recipes run at most T full-batch steps on the n_after rows (the estimate assumes
    the stored run's fixed point); SISA keeps its assignment of all training rows and skips the
    excluded ones, so the count with none excluded bounds it (Bourtoule et al., sec. IV)."""
    if model.recipe_name == "pcmu":
        return float(model.pcmu_state().recipe.steps * n_after)
    if model.recipe_name == "pcmu-sisa":
        return float(model.sharded_pcmu_state().recipe.pcmu.steps * n_after)
    if model.recipe_name == "sisa":
        from models.sisa import SisaRecipe, sisa_retrain_grad_evals

        return sisa_retrain_grad_evals(SisaRecipe(**model.recipe), n=len(model.removed))
    return None


def _pnsgd_candidate(
    *,
    recipe: dict[str, Any],
    classes: int,
    n_after: int,
    removed: int,
    policy: Policy,
    ledger: ModelLedger,
    delta: float,
) -> Candidate:
    pnsgd_recipe = PnsgdRecipe(**recipe)
    k = recipe_constants(pnsgd_recipe, n=n_after, classes=classes)
    z = batch_z(k, removed=removed, carried_z=ledger.z_carried)
    bound = accountant_bound(pnsgd_recipe, k)
    cand = Candidate(
        path="pnsgd",
        guarantee="certified",
        predicted_grad_evals=0.0,
        predicted_seconds=0.0,
        delta=delta,
        params={"bound": bound, "z": z},
    )
    if z >= 2 * k.radius * (1 - 1e-9):
        cand.rejected = "Z reached 2R: the certificate would be vacuous, retrain instead"
        return cand
    try:
        epochs, eps = pnsgd_min_epochs(
            k,
            sigma=recipe["sigma"],
            target_epsilon=policy.epsilon,
            delta=delta,
            z=z,
            bound=bound,
            train_epochs=recipe["epochs"],
        )
    except ValueError as err:
        cand.rejected = f"accountant: {err}"
        return cand
    cand.epsilon = eps.epsilon
    cand.params.update({"epochs": epochs, "alpha": eps.alpha, "z_b": k.z_b, "c": k.c, "eta": k.eta})
    cand.predicted_grad_evals = float(epochs * n_after)
    return cand


def _sisa_predicted_grad_evals(model: ForgettableModel, forget_rows: np.ndarray) -> float:
    """Grad-evals SISA will spend: each affected shard replays its slices from the earliest one
    holding a forgotten row, each slice r costing epochs_per_slice * retained rows in slices 0..r
    (Bourtoule et al., arXiv 1912.03817, sec. IV)."""
    shard, slc = model.arrays["shard_of_row"], model.arrays["slice_of_row"]
    keep = ~model.removed.copy()
    keep[forget_rows] = False
    total = 0.0
    for s in np.unique(shard[forget_rows]):
        if s < 0:
            continue
        first = int(slc[forget_rows][shard[forget_rows] == s].min())
        sizes = np.bincount(slc[(shard == s) & keep], minlength=model.recipe["slices"])
        total += model.recipe["epochs_per_slice"] * float(np.cumsum(sizes)[first:].sum())
    return total


def _pcmu_candidate(
    model: ForgettableModel, forget_rows: np.ndarray, data: tuple[np.ndarray, np.ndarray]
) -> Candidate:
    """Zero cost within the worst-case budget; otherwise the data-dependent check is run now
    (up to steps*|F| grad-evals, counted) and the replay from its first flip t* is estimated as
    (steps_run - t*) * (n - |F|), bounded by a replay to T (models.pcmu.pcmu_unlearn_grad_evals;
    algorithms.md sec. 2)."""
    from models.cost import CostMeter
    from models.pcmu import pcmu_check, pcmu_unlearn_grad_evals

    state = model.pcmu_state()
    cand = Candidate(
        path="pcmu", guarantee="exact", predicted_grad_evals=0.0, predicted_seconds=0.0
    )
    if len(forget_rows) <= state.budget():
        cand.params = {"mode": "budget", "budget": state.budget()}
        return cand
    retained = np.flatnonzero(~model.removed)
    x, y = data
    meter = CostMeter()
    check = pcmu_check(
        state,
        x[retained],
        y[retained],
        np.searchsorted(retained, forget_rows),
        recipe=state.recipe,
        meter=meter,
    )
    cand.predicted_grad_evals, cand.upper_grad_evals = pcmu_unlearn_grad_evals(
        state, check, removed=len(forget_rows)
    )
    # pcmu_unlearn repeats this very check before replaying: its time is known, not predicted.
    cand.measured_grad_evals, cand.measured_seconds = check.grad_evals, meter.seconds
    cand.params = {
        "mode": "check" if check.passed else "replay",
        "first_flip_step": check.first_flip_step,
        "planning_check_grad_evals": check.grad_evals,
    }
    return cand


def _sharded_pcmu_candidate(
    model: ForgettableModel, forget_rows: np.ndarray, data: tuple[np.ndarray, np.ndarray]
) -> Candidate:
    """PCMU per affected SISA shard (models/pcmu_sisa.py): each shard's budget, else its
    data-dependent check run now (counted) plus the replay it implies, (steps_run - t*) *
    (n_s - |F_s|). Not a bound: with a constant eta a replay stops at its own fixed point,
    earlier or later than the stored run's (the default halving eta runs every shard to T, so
    there the estimate is the cost); upper_grad_evals replays every shard to T (algorithms.md
    sec. 2; Bourtoule et al., arXiv 1912.03817, sec. IV)."""
    from models.cost import CostMeter
    from models.pcmu_sisa import predict_unlearn_grad_evals

    x, y = data
    meter = CostMeter()
    total, upper, per_shard = predict_unlearn_grad_evals(
        model.sharded_pcmu_state(), x, y, forget_rows, meter=meter
    )
    return Candidate(
        path="pcmu-sisa",
        guarantee="exact",
        predicted_grad_evals=total,
        predicted_seconds=0.0,
        upper_grad_evals=upper,
        params={"per_shard": per_shard},
        # The unlearning repeats these checks first: their time is known, not predicted.
        measured_grad_evals=meter.grad_evals,
        measured_seconds=meter.seconds,
    )


# RUM must be clearly cheaper than a retrain to be worth an empirical-only guarantee (sec. 5).
RUM_MAX_FRACTION_OF_RETRAIN = 0.5
# Audited runs a one-off investment is expected to serve (RUM's shadow references are reused by
# every later audit of the same training data). Priced whole, the first audited run would always
# pick a retrain (~4 training runs + RUM > 1) and the cache would never warm; spread over 10 runs,
# RUM at ~25% of a retrain ranks at ~0.65 of one on a cold cache, and it repays the shadows from
# about its sixth run (README, RUM audit).
ONE_OFF_AMORTISED_RUNS = 10


def _rum_candidate(
    model: ForgettableModel,
    forget_rows: np.ndarray,
    n_after: int,
    proxies: np.ndarray | None,
    audit_reference_grad_evals: float = 0.0,
) -> Candidate:
    """RUM splits the forget set by memorisation, fine-tunes on the retained rows for the low and
    medium groups and runs NegGrad+ over retain + high group (Zhao et al., arXiv 2406.01257,
    sec. 4). With the training-time confidence proxy the split is the one rum_unlearn will make,
    so the cost is exact; without it, the upper bound where every group is the whole forget set.
    `audit_reference_grad_evals`: what its audit's shadow references cost if not cached yet
    (a one-off, Candidate.one_off_grad_evals); 'clearly cheaper' is judged without it."""
    from models.learning_events import HIGH_MEMORISATION_WHEN
    from models.rum import RumRecipe, split_by_memorisation

    r = RumRecipe()
    sizes = dict.fromkeys(("low", "medium", "high"), len(forget_rows))
    if proxies is not None:
        groups, _ = split_by_memorisation(
            np.nan_to_num(proxies, nan=1.0)[forget_rows],  # as models.unlearning._rum
            direction=HIGH_MEMORISATION_WHEN["confidence"],
            cutoffs=r.cutoffs,
            high_beyond=r.high_beyond,  # as rum_unlearn splits, or the high group is mispriced
        )
        sizes = {g: len(rows) for g, rows in groups.items()}
    # Grad-evals per stage as models.calibration.RUM_STAGES names them (priced at their own rates).
    stage = dict.fromkeys(("finetune", "neggrad+"), 0.0)
    if sizes["low"] and r.low_action == "finetune":
        stage["finetune"] += r.low_epochs * n_after
    if sizes["medium"]:
        stage["finetune"] += r.finetune_epochs * n_after
    if sizes["high"]:
        # NegGrad+ cycles high-group rows alongside every retain batch: one forget batch per step.
        steps = math.ceil(n_after / r.batch_size)
        stage["neggrad+"] += r.neggrad_epochs * (n_after + steps * min(r.batch_size, sizes["high"]))
        stage["finetune"] += r.repair_epochs * n_after  # then retain-only epochs (SCRUB-style)
    cost = sum(stage.values())
    cand = Candidate(
        path="rum",
        guarantee="audited",
        predicted_grad_evals=cost + audit_reference_grad_evals,
        predicted_seconds=0.0,
        params={
            "lineage_after": "rum-modified",
            "group_sizes": sizes,
            "stage_grad_evals": stage,
            "audit_reference_grad_evals": audit_reference_grad_evals,
        },
        one_off_grad_evals=audit_reference_grad_evals,
    )
    if cost > RUM_MAX_FRACTION_OF_RETRAIN * model.retrain_grad_evals(n_after):
        cand.rejected = f"not clearly cheaper than a retrain (> {RUM_MAX_FRACTION_OF_RETRAIN:.0%})"
    return cand


def _price_seconds(
    candidates: list[Candidate],
    model: ForgettableModel,
    ledger: ModelLedger,
    policy: Policy,
    *,
    data: tuple[np.ndarray, np.ndarray] | None,
    forget_rows: np.ndarray,
) -> None:
    """Predicted seconds = measured part + the rest of the grad-evals x the path's rate. A viable
    path the ledger has no rate for gets one from a micro-run of its inner loop now (needs `data`),
    which the flow stores in the next version's ledger; its cost is at most
    CALIBRATION_BUDGET_FRACTION of a retrain, shared by the paths that need one. SISA's unlearning
    and retrain run the same shard loop and share one micro-run; paths that repeat training work
    (calibration.TRAINING_RATE_PATHS) keep the ledger's training-run rate until they have run."""
    from models.calibration import MICRO_RUNS, calibration_budget, micro_run

    known = ledger.seconds_per_grad_eval_by_path
    todo: dict[Any, list[Candidate]] = {}
    for c in candidates:
        step = MICRO_RUNS.get((model.recipe_name, c.path))
        if (
            data is not None
            and step is not None
            and c.path not in known
            and not c.rejected
            and policy.meets(c.guarantee)  # type: ignore[arg-type]
        ):
            todo.setdefault(step, []).append(c)
    for same_loop in todo.values():
        run = micro_run(
            model,
            same_loop[0].path,
            *data,
            exclude_rows=forget_rows,
            budget_grad_evals=calibration_budget(model) / len(todo),
        )
        measured = run.as_dict()
        for c in same_loop:
            c.micro_run = measured
    for c in candidates:
        if c.micro_run is not None:
            c.seconds_per_grad_eval = c.micro_run["seconds_per_grad_eval"]
            c.seconds_basis = (
                f"micro-run now ({c.micro_run['grad_evals']:,.0f} grad-evals, "
                f"{c.micro_run['seconds']:.3f} s)"
            )
        else:
            c.seconds_per_grad_eval = ledger.rate(c.path)
            c.seconds_basis = ledger.rate_basis(c.path)
        rated = max(c.predicted_grad_evals - c.measured_grad_evals, 0.0)
        stages = c.params.get("stage_grad_evals", {})
        by_stage = c.micro_run.get("stage_rates") if c.micro_run else ledger.stage_rates(c.path)
        if stages and by_stage and set(stages) <= set(by_stage) and rated > 0:
            # Each stage at its own rate, the rest (a one-off) at the pooled one: the effective
            # rate follows this run's mix of stages, not the micro-run's.
            staged = sum(stages.values())
            seconds = sum(g * by_stage[k] for k, g in stages.items())
            seconds += max(rated - staged, 0.0) * c.seconds_per_grad_eval
            c.seconds_per_grad_eval = seconds / rated
            c.seconds_basis += (
                " per stage ("
                + ", ".join(f"{k} {v:.3g} s" for k, v in sorted(by_stage.items()))
                + " per grad-eval)"
            )
        c.predicted_seconds = c.measured_seconds + rated * c.seconds_per_grad_eval
        rated_upper = max(c.grad_evals_bound - c.measured_grad_evals, 0.0)
        c.upper_seconds = c.measured_seconds + rated_upper * c.seconds_per_grad_eval
        if c.measured_grad_evals:
            c.seconds_basis += f" + {c.measured_seconds:.3f} s measured while planning"


def enumerate_candidates(
    model: ForgettableModel,
    forget_rows: np.ndarray,
    *,
    policy: Policy,
    ledger: ModelLedger,
    data: tuple[np.ndarray, np.ndarray] | None = None,
    proxies: np.ndarray | None = None,
    audit_reference_grad_evals: float = 0.0,
    rum_rows: np.ndarray | None = None,
) -> list[Candidate]:
    """Every path this model's lineage allows for removing `forget_rows`, with predicted cost.

    `data` (the training split's x, y) lets PCMU run its data-dependent check while planning and
    prices paths with no measured rate by a micro-run; `proxies` (the confidence proxy per
    training row, recorded at training) makes RUM's prediction exact;
    `audit_reference_grad_evals` is the one-off cost of RUM's audit references when they are not
    cached yet (0 when they are; tasks.verification.audit_reference_grad_evals);
    `rum_rows`: the rows RUM removes, `forget_rows` plus the run's production canaries
    (models/canaries.py), formed by the caller alone (tasks.forgetting.Context.rows_for) so that
    RUM is priced on exactly the rows it will forget; priced into its candidate only (certified
    and exact paths take no canaries). None: `forget_rows`."""
    removed, n_retained = len(forget_rows), model.n_retained
    if not 0 < removed <= n_retained:
        raise ValueError(f"removed must be in [1, n_retained={n_retained}], got {removed}")
    n_after = n_retained - removed
    delta = policy.delta if policy.delta is not None else 1.0 / n_after
    retrain = Candidate(
        path="retrain",
        guarantee="exact",
        predicted_grad_evals=model.retrain_grad_evals(n_after),
        predicted_seconds=0.0,
        upper_grad_evals=_retrain_upper_grad_evals(model, n_after),
    )
    candidates = []
    if model.lineage == "pnsgd":
        candidates.append(
            _pnsgd_candidate(
                recipe=model.recipe,
                classes=model.classes,
                n_after=n_after,
                removed=removed,
                policy=policy,
                ledger=ledger,
                delta=delta,
            )
        )
    if model.lineage == "sisa":
        candidates.append(
            Candidate(
                path="sisa",
                guarantee="exact",
                predicted_grad_evals=_sisa_predicted_grad_evals(model, forget_rows),
                predicted_seconds=0.0,
            )
        )
    if model.recipe_name == "mlp" and policy.guarantee == "audited":
        rum = forget_rows if rum_rows is None else np.asarray(rum_rows, dtype=np.int64)
        if len(np.setdiff1d(forget_rows, rum)):
            raise ValueError("rum_rows must hold every row of forget_rows")
        candidates.append(
            _rum_candidate(model, rum, n_retained - len(rum), proxies, audit_reference_grad_evals)
        )
        candidates[-1].params["canaries"] = len(np.setdiff1d(rum, forget_rows))
    if model.lineage == "pcmu" and model.recipe_name == "pcmu" and data is not None:
        candidates.append(_pcmu_candidate(model, forget_rows, data))
    if model.lineage == "pcmu" and model.recipe_name == "pcmu-sisa" and data is not None:
        candidates.append(_sharded_pcmu_candidate(model, forget_rows, data))
    candidates.append(retrain)
    _price_seconds(candidates, model, ledger, policy, data=data, forget_rows=forget_rows)
    for c in candidates:
        # Exact paths reset nothing that accumulates; only approximate ones run up a bill.
        if c is retrain or c.rejected or c.guarantee == "exact":
            continue
        # (a one-off part moves the model no further from a retrain)
        if ledger.grad_evals_since_retrain + c.recurring_grad_evals > retrain.predicted_grad_evals:
            c.rejected = "cumulative cost since the last retrain would exceed one retrain"
    return candidates


def choose(candidates: list[Candidate], policy: Policy) -> Plan:
    """Cheapest candidate whose guarantee meets the policy; ties go to the stronger guarantee.

    Cost here is Candidate.ranking_grad_evals: one-off parts count 1/ONE_OFF_AMORTISED_RUNS."""
    for c in candidates:
        if not c.rejected and not policy.meets(c.guarantee):  # type: ignore[arg-type]
            c.rejected = (
                f"guarantee '{c.guarantee}' is weaker than the policy's '{policy.guarantee}'"
            )
        if not c.rejected and c.epsilon is not None and c.epsilon > policy.epsilon * (1 + 1e-12):
            c.rejected = f"epsilon {c.epsilon:.3g} above the policy's {policy.epsilon}"
    viable = [c for c in candidates if not c.rejected]
    if not viable:
        raise ValueError("no unlearning path meets the policy (a retrain should always be viable)")
    best = min(viable, key=lambda c: (c.ranking_grad_evals, -GUARANTEE_RANK[c.guarantee]))
    others = [c for c in viable if c is not best]
    if others:
        nxt = min(others, key=lambda c: c.ranking_grad_evals)
        ratio = best.ranking_grad_evals / nxt.ranking_grad_evals if nxt.ranking_grad_evals else 0.0
        why = (
            f"{best.path} ({best.guarantee}) is the cheapest path meeting the '{policy.guarantee}' "
            f"policy: {ratio:.1%} of the next option, {nxt.path}"
        )
        if best.one_off_grad_evals:
            why += (
                f" (its one-off {best.one_off_grad_evals:,.0f} grad-evals counted over "
                f"{ONE_OFF_AMORTISED_RUNS} runs; this run pays it whole)"
            )
    else:
        why = f"{best.path} is the only path that meets the '{policy.guarantee}' policy"
    return Plan(chosen=best, candidates=candidates, why=why)
