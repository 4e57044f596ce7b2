"""Prefect tasks of the forgetting flow. Each is thin: I/O here, decisions in models/."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from data_contracts.certificate import Certificate, Cost
from data_contracts.hashing import merkle_root, set_sha256
from data_contracts.policy import Policy
from data_contracts.settings import Settings
from models.canaries import (
    TrainingData,
    forgotten_canary_ids,
    model_training_data,
    next_canaries,
)
from models.datasets import Dataset, load_dataset
from models.evaluation import accuracy, loss_mia_auc, per_sample_loss
from models.forgettable import ForgettableModel
from models.learning_events import HIGH_MEMORISATION_WHEN
from models.planner import ModelLedger, Plan, choose, enumerate_candidates
from models.unlearning import Unlearned, execute
from tasks import features, ledger, publishing, registry, verification, warehouse
from tasks.ingest import FileOutcome, inbox_files, ingest_file
from tasks.progress import reporter

STORE_RETRIES = {"retries": 2, "retry_delay_seconds": [2, 10]}  # locked SQLite / DuckDB file


@task(cache_policy=NO_CACHE)
def ingest_inbox(settings: Settings) -> list[FileOutcome]:
    """Ingest every new inbox file; a bad file is quarantined and the others still proceed."""
    outcomes = []
    files = inbox_files(settings)
    report = reporter("validating manifests")
    with warehouse.connect(settings) as con:
        for done, path in enumerate(files, start=1):
            outcomes.append(ingest_file(con, settings, path))
            if report is not None:
                report(done, len(files))
    return outcomes


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def recover_interrupted(
    settings: Settings, *, model_name: str, batches: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    """Finish or release runs that crashed: finished if MLflow holds their version, else released.

    `batches`: batching decisions by run id (the caller's own run), kept in the summary of a run
    this finishes; a run that crashed in another process is finished without one."""
    notes = []
    with warehouse.connect(settings) as con:
        run_ids = ledger.interrupted_runs(con, model_name)
    for run_id in run_ids:
        version = registry.version_for_run(settings, model_name, run_id)
        if version is None:
            with warehouse.connect(settings) as con:
                n = ledger.release_run(
                    con,
                    run_id=run_id,
                    status="abandoned",
                    reason="interrupted before a version was registered",
                )
            notes.append(
                f"run {run_id}: interrupted before registration, {n} requests back to pending"
            )
            continue
        _complete_registered_run(
            settings,
            model_name=model_name,
            run_id=run_id,
            version=version,
            batch=(batches or {}).get(run_id),
        )
        notes.append(
            f"run {run_id}: version {version} was registered before the crash; ledger completed"
        )
    return notes


def _complete_registered_run(
    settings: Settings,
    *,
    model_name: str,
    run_id: str,
    version: int,
    batch: dict[str, Any] | None = None,
) -> None:
    """Finish the ledger of a run whose version MLflow already holds (found by its run tag);
    `batch`: the run's batching decision, when known, for its summary."""
    stored = registry.load_version(settings, model_name, version)
    cert = stored.certificate
    registry.set_champion(settings, model_name, version)
    with warehouse.connect(settings) as con:
        claim = ledger.load_claim(con, run_id=run_id, model_name=model_name)
        ledger.finalize_run(
            con,
            claim=claim,
            canary_ids=forgotten_canary_ids(publishing.model_from_version(stored)),
            model_version=version,
            certificate_sha256=cert.sha256(),
            guarantee=cert.guarantee,
            plan=None,
            summary={"recovered": True, **_batch_entry(batch)},
            version_row=_version_row(model_name, version, cert, stored.card["ledger"], run_id),
        )


def _version_row(
    model_name: str, version: int, cert: Certificate, ledger_state: dict, run_id: str
) -> dict:
    return {
        "model_name": model_name,
        "version": version,
        "lineage": cert.lineage,
        "method": cert.method,
        "guarantee": cert.guarantee,
        "epsilon": cert.epsilon,
        "certificate_sha256": cert.sha256(),
        "weights_sha256": cert.weights_sha256,
        "ledger": ledger_state,
        "run_id": run_id,
    }


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def claim_requests(settings: Settings, *, model_name: str, run_id: str) -> ledger.Claim:
    with warehouse.connect(settings) as con:
        return ledger.claim_pending(con, model_name=model_name, run_id=run_id, salt=settings.salt())


@dataclass
class Context:
    """The parent version and the data the forgetting run works on."""

    model_name: str
    dataset: Dataset
    parent_version: int
    parent: ForgettableModel
    parent_certificate: Certificate
    ledger: ModelLedger
    forget_rows: np.ndarray  # positions in the training split
    # Dataset positions of the test rows this run evaluates on: the test split minus the rows
    # their subjects withdrew (tasks.ledger.withdrawn_test_ids), fixed for the whole run so that
    # before/after metrics and every attempt of a fallback use the same rows.
    test_rows: np.ndarray
    test_rows_withdrawn: int
    # The model's training data (models.canaries.model_training_data): the training split, then
    # its canaries; positions as in `parent.removed` and `forget_rows`.
    data: TrainingData
    # Canaries a RUM run forgets besides `forget_rows` (none left / none trained: empty).
    canary_rows: np.ndarray
    profile: dict[str, int] = field(default_factory=dict)
    confidence: np.ndarray | None = None  # C-proxy per training row, recorded at training
    proxy_version: int | None = None  # the version whose stored proxies `confidence` comes from
    # What a RUM audit's shadow references would cost this run (0: cached); MLPs only.
    audit_reference_grad_evals: float = 0.0

    def rows_for(self, path: str) -> np.ndarray:
        """Rows `path` removes: the request's, plus this run's canaries for RUM (only RUM's
        audit needs them; on certified paths they would cost epsilon or budget for nothing).
        The one place that forms RUM's rows: planning, unlearning and the audit all take them."""
        if path == "rum" and len(self.canary_rows):
            return np.union1d(self.forget_rows, self.canary_rows)
        return self.forget_rows


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def load_context(settings: Settings, *, claim: ledger.Claim) -> Context:
    """Champion version from MLflow, dataset, forget rows and the forget set's memorisation profile."""
    with warehouse.connect(settings) as con:
        info = warehouse.model_row(con, claim.model_name)
        latest = warehouse.latest_version(con, claim.model_name)
        dataset = load_dataset(info["dataset"])
        # The proxies of the version being unlearned (carried forward along its lineage, or
        # recorded by its retrain), or of the newest earlier version that has any (PNSGD and
        # SISA retrains record none of their own: models.unlearning._retrain).
        proxy_version = features.proxy_version(con, claim.model_name, latest["version"])
        profile = warehouse.memorization_profile(
            con,
            model_name=claim.model_name,
            model_version=proxy_version or 0,
            sample_ids=claim.sample_ids,
        )
        # this run's own requests count: the version it registers is their erasure
        withdrawn = ledger.withdrawn_test_ids(con, dataset=info["dataset"], run_id=claim.run_id)
    champion = registry.champion_version(settings, claim.model_name)
    if champion != latest["version"]:
        raise RuntimeError(
            f"champion alias points to v{champion} but the ledger's latest is "
            f"v{latest['version']}: run `forgetflow verify --model {claim.model_name}`"
        )
    stored = registry.load_version(settings, claim.model_name, champion)
    if stored.certificate.sha256() != latest["certificate_sha256"]:
        raise RuntimeError(
            f"certificate of {claim.model_name} v{champion} in MLflow does not match the "
            "ledger's hash: the registry was modified"
        )
    parent = publishing.model_from_version(stored)
    data = model_training_data(dataset, parent)  # training split, then the model's canaries
    position = {sid: i for i, sid in enumerate(data.sample_ids[: data.n_dataset])}
    rows = np.array(sorted(position[s] for s in claim.sample_ids), dtype=np.int64)
    all_test = dataset.test_rows()
    test_rows = all_test[~np.isin(dataset.sample_ids[all_test], withdrawn)]
    reference_cost = 0.0
    with warehouse.connect(settings) as con:
        confidence = warehouse.proxy_column(
            con,
            model_name=claim.model_name,
            model_version=proxy_version or 0,
            proxy="confidence",
            sample_ids=data.sample_ids.tolist(),
        )
        if parent.recipe_name == "mlp":
            reference_cost = verification.audit_reference_grad_evals(
                con, dataset=dataset, model=parent, test_rows=test_rows
            )
    return Context(
        model_name=claim.model_name,
        dataset=dataset,
        parent_version=champion,
        parent=parent,
        parent_certificate=stored.certificate,
        ledger=ModelLedger(**latest["ledger"]),
        forget_rows=rows,
        test_rows=test_rows,
        test_rows_withdrawn=len(all_test) - len(test_rows),
        data=data,
        canary_rows=next_canaries(parent.removed, data.n_dataset),
        profile=profile,
        confidence=confidence,
        proxy_version=proxy_version,
        audit_reference_grad_evals=reference_cost,
    )


@task(cache_policy=NO_CACHE)
def plan_forgetting(ctx: Context, *, policy: Policy, exclude: tuple[str, ...] = ()) -> Plan:
    candidates = enumerate_candidates(
        ctx.parent,
        ctx.forget_rows,
        policy=policy,
        ledger=ctx.ledger,
        data=(ctx.data.x, ctx.data.y),
        proxies=ctx.confidence,
        audit_reference_grad_evals=ctx.audit_reference_grad_evals,
        rum_rows=ctx.rows_for("rum"),  # priced on exactly the rows `unlearn` gives RUM
    )
    for c in candidates:
        if c.path in exclude and not c.rejected:
            c.rejected = "failed verification in this run"
    return choose(candidates, policy)


@task(cache_policy=NO_CACHE)
def unlearn(ctx: Context, *, plan: Plan, seed: int) -> Unlearned:
    return execute(
        plan,
        ctx.parent,
        ctx.data.x,
        ctx.data.y,
        ctx.rows_for(plan.chosen.path),
        ledger=ctx.ledger,
        seed=seed,
        progress=reporter(f"unlearning: {plan.chosen.path}"),
        proxies=ctx.confidence,
    )


@task(cache_policy=NO_CACHE)
def evaluate(
    ctx: Context, *, result: Unlearned, policy: Policy, settings: Settings | None = None
) -> dict[str, Any]:
    """Test accuracy before/after and loss-MIA AUC of forgotten vs test samples; the pass gate.

    Both models are scored on the same rows, `ctx.test_rows` (test rows their subjects withdrew
    are left out and only counted: `test_rows_withdrawn`). A RUM result (uncertified) must also
    pass the full audit (tasks.verification.audit_rum) against shadow references, cached in the
    warehouse of `settings`."""
    ds = ctx.dataset
    forget = ds.train_rows()[ctx.forget_rows]
    rows = np.concatenate([forget, ctx.test_rows])  # withdrawn test rows are not even scored
    before = ctx.parent.predict_proba(ds.features[rows])
    after = result.model.predict_proba(ds.features[rows])
    labels, n = ds.labels[rows], len(forget)
    f, t = slice(0, n), slice(n, None)
    metrics = {
        "test_accuracy_before": accuracy(before[t], labels[t]),
        "test_accuracy_after": accuracy(after[t], labels[t]),
        "forget_accuracy_before": accuracy(before[f], labels[f]),
        "forget_accuracy_after": accuracy(after[f], labels[f]),
        "mia_auc_before": loss_mia_auc(
            per_sample_loss(before[f], labels[f]), per_sample_loss(before[t], labels[t])
        ),
        "mia_auc_after": loss_mia_auc(
            per_sample_loss(after[f], labels[f]), per_sample_loss(after[t], labels[t])
        ),
        "forget_set_size": float(n),
        "test_set_size": float(len(ctx.test_rows)),
        "test_rows_withdrawn": float(ctx.test_rows_withdrawn),
    }
    drop = metrics["test_accuracy_before"] - metrics["test_accuracy_after"]
    reasons = []
    if result.method != "retrain" and drop > policy.max_accuracy_drop:
        reasons.append(f"test accuracy dropped {drop:.3f} > {policy.max_accuracy_drop}")
    if result.guarantee == "audited" and metrics["mia_auc_after"] > policy.max_mia_auc:
        reasons.append(f"MIA AUC {metrics['mia_auc_after']:.3f} > {policy.max_mia_auc}")
    evaluation: dict[str, Any] = {"metrics": metrics, "tags": {}}
    if result.method == "rum":
        audit = verification.audit_rum(
            settings or Settings(),
            dataset=ds,
            forget_rows=ctx.rows_for("rum"),
            model=result.model,
            test_rows=ctx.test_rows,
        )
        evaluation["audit"] = audit
        metrics.update({f"audit.{k}": float(v) for k, v in audit["metrics"].items()})
        metrics["audit.reference_grad_evals_this_run"] = audit["references"]["grad_evals_this_run"]
        metrics["audit.test_set_size"] = float(audit["sizes"]["test"])
        evaluation["tags"] = {
            "audit_passed": str(audit["passed"]).lower(),
            "audit_reference_key": audit["references"]["reference_key"][:16],
        }
        reasons += [f"audit: {r}" for r in audit["reasons"]]
    evaluation.update(passed=not reasons, reasons=reasons)
    return evaluation


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def publish_and_finalize(
    settings: Settings,
    *,
    ctx: Context,
    claim: ledger.Claim,
    plan: Plan,
    result: Unlearned,
    evaluation: dict[str, Any],
    batch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Certificate -> MLflow version + champion alias -> ledger finalized (in that order).

    `batch`: why the run did not hold (BatchDecision.as_dict()), stored in the run's summary by
    the finalizing transaction. Idempotent, so retries are safe: if an earlier attempt registered
    the version, it is reused."""
    done = registry.version_for_run(settings, ctx.model_name, claim.run_id)
    if done is not None:
        _complete_registered_run(
            settings, model_name=ctx.model_name, run_id=claim.run_id, version=done, batch=batch
        )
        cert = registry.load_version(settings, ctx.model_name, done).certificate
        return {**_summary(cert, claim=claim, why=plan.why), **_batch_entry(batch)}
    version = registry.next_version(settings, ctx.model_name)
    with warehouse.connect(settings) as con:
        index_digest = warehouse.training_index_sha256(con, ctx.dataset.name)
    forgotten_ids = ctx.data.sample_ids[ctx.forget_rows].tolist()  # the request's rows
    # Canaries the new version has forgotten (RUM's, and earlier ones): recorded in the ledger
    # transaction like forgotten samples; none of them belongs to a subject.
    canaries_gone = forgotten_canary_ids(result.model)
    # Seconds per grad-eval: planning's micro-runs and this path's measured run (models/planner.py).
    new_ledger = result.ledger
    new_ledger.learn_rates(
        previous=ctx.ledger,
        plan=plan,
        grad_evals=result.cost.grad_evals,
        seconds=result.cost.seconds,
    )
    certificate = Certificate(
        model_name=ctx.model_name,
        model_version=version,
        parent_certificate_sha256=ctx.parent_certificate.sha256(),
        method=result.method,
        guarantee=result.guarantee,
        lineage=result.model.lineage,
        epsilon=result.epsilon,
        delta=result.delta,
        accountant=result.accountant,
        parameters=result.parameters,
        budget_left=result.budget_left,
        request_id_hashes=sorted(claim.request_hashes),
        request_merkle_root=merkle_root(claim.request_hashes),
        forget_set_sha256=set_sha256(forgotten_ids),
        forget_set_size=len(forgotten_ids),
        training_index_sha256=index_digest,
        weights_sha256_before=ctx.parent_certificate.weights_sha256,
        weights_sha256=publishing.weights_sha256(result.model),
        cost=Cost(
            grad_evals=result.cost.grad_evals,
            seconds=result.cost.seconds,
            retrain_grad_evals=ctx.parent.retrain_grad_evals(result.model.n_retained),
            # the path's own cost, as grad_evals (a one-off audit reference is in the audit)
            predicted_grad_evals=plan.chosen.recurring_grad_evals,
        ),
        metrics=evaluation["metrics"],
        audit={
            "passed": evaluation["passed"],
            "reasons": evaluation["reasons"],
            "memorisation_profile": ctx.profile,
            "proxies_from_version": ctx.proxy_version,
            "canaries_forgotten": len(canaries_gone) - len(forgotten_canary_ids(ctx.parent)),
            **({"rum_audit": evaluation["audit"]} if "audit" in evaluation else {}),
            "failed_attempts": evaluation.get("failed_attempts", []),
        },
        code_version=publishing.code_version(),
    )
    tags = {
        "forgetflow_run_id": claim.run_id,
        "request_merkle_root": certificate.request_merkle_root or "",
        "parent_version": str(ctx.parent_version),
        **search_tags(claim),
        **evaluation.get("tags", {}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        plots = _plots(ctx, plan, Path(tmp))
        published = publishing.publish(
            settings,
            model_name=ctx.model_name,
            model=result.model,
            certificate=certificate,
            dataset=ctx.dataset.name,
            ledger=new_ledger.as_dict(),
            metrics={k: v for k, v in evaluation["metrics"].items() if v is not None},
            tags=tags,
            plots=plots,
        )
    summary = _summary(certificate, claim=claim, why=plan.why)
    summary["plots"] = [
        f"models:/{ctx.model_name}/{published} -> plots/{p.name}" for p in plots.values()
    ]
    summary.update(_batch_entry(batch))  # written once, with the run's outcome
    with warehouse.connect(settings) as con:
        if result.events is not None:  # a retrain's own learning events: the version's proxies
            kept = np.flatnonzero(~result.model.removed)
            warehouse.write_features(
                con,
                model_name=ctx.model_name,
                model_version=published,
                sample_ids=ctx.data.sample_ids[kept].tolist(),
                proxies={name: v[kept] for name, v in result.events.proxies().items()},
                visits=result.events.counts.numpy()[kept],
                directions=dict(HIGH_MEMORISATION_WHEN),
            )
        elif result.method != "retrain" and ctx.proxy_version is not None:
            # same training lineage: its learning events still describe the remaining rows
            features.carry_forward(
                con,
                model_name=ctx.model_name,
                from_version=ctx.proxy_version,
                to_version=published,
                forgotten_ids=forgotten_ids + canaries_gone,
            )
        ledger.finalize_run(
            con,
            claim=claim,
            canary_ids=canaries_gone,
            model_version=published,
            certificate_sha256=certificate.sha256(),
            guarantee=certificate.guarantee,
            plan=plan.as_dict(),
            summary=summary,
            version_row=_version_row(
                ctx.model_name, published, certificate, new_ledger.as_dict(), claim.run_id
            ),
        )
    return summary


MAX_REQUEST_TAGS = 1000  # beyond this, auditors use the certificate's hashes and Merkle root


def search_tags(claim: ledger.Claim) -> dict[str, str]:
    """Tags that make a version findable by request hash or manifest digest in the MLflow UI:
    `tags.`request.<hash16>` = 'forgotten'`, `tags.`manifest.<digest16>` = 'forgotten'`."""
    tags = {f"manifest.{digest[:16]}": "forgotten" for digest, _ in claim.request_keys}
    if len(claim.request_hashes) <= MAX_REQUEST_TAGS:
        tags.update({f"request.{h[:16]}": "forgotten" for h in claim.request_hashes})
    else:
        tags["request_tags"] = (
            f"omitted: {len(claim.request_hashes)} requests (see certificate.json)"
        )
    return tags


def _plots(ctx: Context, plan: Plan, out_dir: Path) -> dict[str, Path]:
    """PNGs logged with the version: cost per path, forget-set memorisation, privacy-utility."""
    from models.pnsgd import PnsgdRecipe
    from tasks import plots

    made = {"cost_per_path": plots.cost_per_path_plot(plan.table(), out_dir)}
    if ctx.confidence is not None:
        scores = ctx.confidence
        made["memorization_hist"] = plots.memorization_histogram(
            scores[~np.isnan(scores)],
            scores[ctx.forget_rows],
            "confidence",
            out_dir,
            high_memorisation_when="low",
        )
    if ctx.parent.lineage == "pnsgd":
        recipe = PnsgdRecipe(**ctx.parent.recipe)
        rows = plots.privacy_utility_rows(
            n=ctx.parent.n_retained,
            classes=ctx.parent.classes,
            recipe=recipe,
            sigmas=[recipe.sigma / 2, recipe.sigma, recipe.sigma * 2],
            removed=len(ctx.forget_rows),
        )
        made["privacy_utility"] = plots.privacy_utility_plot(rows, out_dir)
    return made


def _batch_entry(batch: dict[str, Any] | None) -> dict[str, Any]:
    """The `batch` key of a run summary (absent when the decision is not known)."""
    return {} if batch is None else {"batch": batch}


def _summary(cert: Certificate, *, claim: ledger.Claim, why: str) -> dict[str, Any]:
    return {
        "model_name": cert.model_name,
        "version": cert.model_version,
        "method": cert.method,
        "guarantee": cert.guarantee,
        "epsilon": cert.epsilon,
        "delta": cert.delta,
        "requests": len(claim.request_keys),
        "samples": cert.forget_set_size,
        "why": why,
        "grad_evals": cert.cost.grad_evals,
        "seconds": cert.cost.seconds,
        "retrain_grad_evals": cert.cost.retrain_grad_evals,
        "certificate_sha256": cert.sha256(),
        **cert.metrics,
    }


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def finalize_without_new_version(
    settings: Settings, *, claim: ledger.Claim, batch: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Requests with no training sample left to forget (this model already forgot them, or the
    subject has test rows only, which the finalizing transaction withdraws): applied by the
    current champion, no new version. `batch`: the run's batching decision, for its summary."""
    with warehouse.connect(settings) as con:
        latest = warehouse.latest_version(con, claim.model_name)
        ledger.finalize_run(
            con,
            claim=claim,
            model_version=latest["version"],
            certificate_sha256=latest["certificate_sha256"],
            guarantee=latest["guarantee"],
            plan=None,
            summary={
                "note": "no training sample left to forget: already forgotten or test rows only",
                **_batch_entry(batch),
            },
            version_row=None,
        )
    return {
        "model_name": claim.model_name,
        "version": latest["version"],
        "method": "none-needed",
        "requests": len(claim.request_keys),
        "samples": 0,
    }


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def release(settings: Settings, *, run_id: str, reason: str) -> int:
    with warehouse.connect(settings) as con:
        return ledger.release_run(con, run_id=run_id, status="failed", reason=reason)
