"""The forgetting flow: what the nightly deployment and `forgetflow run` execute.

ingest -> validate -> quarantine -> (per model, under a lock) recover crashed runs -> claim ->
resolve + memorisation profile -> plan -> unlearn -> evaluate (fallback on failure) -> publish ->
finalize the ledger."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from filelock import FileLock, Timeout
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from data_contracts.errors import ForgetflowError
from data_contracts.policy import Policy
from data_contracts.settings import Settings
from flows.library_logging import quiet_libraries
from flows.reporting import publish_run_artifacts
from tasks import batching, forgetting, warehouse


@contextmanager
def model_lock(settings: Settings, model_name: str) -> Iterator[None]:
    """One forgetting run per model at a time, across processes; a second one refuses at once."""
    lock_dir = settings.home / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_dir / f"{model_name}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ForgetflowError(
            f"model '{model_name}': another forgetting run holds its lock; nothing was changed, "
            "try again when it finishes"
        ) from None
    try:
        yield
    finally:
        lock.release()


def forget_model(
    settings: Settings,
    *,
    model_name: str,
    policy: Policy,
    run_id: str,
    dry_run: bool,
    seed: int | None,
    run_now: bool = False,
) -> dict[str, Any]:
    logger = get_run_logger()
    for note in forgetting.recover_interrupted(settings, model_name=model_name):
        logger.warning(note)
    # Run now or hold a small batch (policy min_batch / max_hold_days / deadline_margin_days).
    decision = batching.decide_batch(settings, model_name=model_name, policy=policy, manual=run_now)
    if decision.pending:
        logger.info("%s: %s", model_name, decision.reason)
    if decision.pending and not decision.run:
        return batching.hold(
            settings, run_id=run_id, model_name=model_name, decision=decision, dry_run=dry_run
        )
    claim = forgetting.claim_requests(settings, model_name=model_name, run_id=run_id)
    if not claim.request_keys:
        forgetting.release(settings, run_id=run_id, reason="no pending requests")
        return {"model_name": model_name, "requests": 0, "method": "nothing to do"}
    batch = decision.as_dict()  # kept in the run's summary by the transaction that finishes it
    try:
        if not claim.sample_ids:
            return forgetting.finalize_without_new_version(settings, claim=claim, batch=batch)
        ctx = forgetting.load_context(settings, claim=claim)
        plan = forgetting.plan_forgetting(ctx, policy=policy)
        if dry_run:
            forgetting.release(settings, run_id=run_id, reason="dry run")
            return {
                "model_name": model_name,
                "requests": len(claim.request_keys),
                "dry_run": True,
                "plan": plan.as_dict(),
                "batch": batch,
            }
        failed: list[str] = []
        attempts: list[dict[str, Any]] = []  # failed verifications, kept in the certificate
        while True:
            result = forgetting.unlearn(
                ctx, plan=plan, seed=seed if seed is not None else secrets.randbits(62)
            )
            evaluation = forgetting.evaluate(ctx, result=result, policy=policy, settings=settings)
            if evaluation["passed"]:
                evaluation["failed_attempts"] = attempts
                break
            attempts.append(
                {
                    "path": plan.chosen.path,
                    "reasons": evaluation["reasons"],
                    "metrics": evaluation["metrics"],
                }
            )
            logger.warning(
                "path %s failed verification (%s); falling back",
                plan.chosen.path,
                "; ".join(evaluation["reasons"]),
            )
            failed.append(plan.chosen.path)
            plan = forgetting.plan_forgetting(ctx, policy=policy, exclude=tuple(failed))
        summary = forgetting.publish_and_finalize(
            settings,
            ctx=ctx,
            claim=claim,
            plan=plan,
            result=result,
            evaluation=evaluation,
            batch=batch,
        )
        summary["plan"] = plan.as_dict()
        summary["overdue"] = claim.overdue
        summary["failed_paths"] = failed
    except BaseException:
        # Finish the run if its version reached MLflow, else give the requests back: never both.
        forgetting.recover_interrupted(settings, model_name=model_name, batches={run_id: batch})
        raise
    return summary


@flow(name="forget", log_prints=True)
def forget_flow(
    model_name: str | None = None,
    policy: Policy | None = None,
    dry_run: bool = False,
    seed: int | None = None,
    run_now: bool = False,
) -> dict[str, Any]:
    """Ingest the inbox and make each model (or `model_name`) forget its pending requests.

    `policy`: its explicitly given fields override each model's own policy (`forgetflow policy`)
    for this run only, the other fields stay as stored;
    `run_now` runs even where the policy would hold a small batch (a manual run)."""
    quiet_libraries()
    settings = Settings()
    settings.ensure_dirs()
    files = forgetting.ingest_inbox(settings)
    with warehouse.connect(settings) as con:
        known = warehouse.model_names(con)
        policies = {
            name: (warehouse.stored_policy(con, name) or Policy()).overridden_by(policy)
            for name in known
        }
    if model_name is not None and model_name not in known:
        raise ForgetflowError(
            f"unknown model '{model_name}'; known: {', '.join(known) or 'none (run forgetflow train)'}"
        )
    flow_id = str(flow_run.get_id() or f"local-{secrets.token_hex(4)}")
    results = []
    for name in [model_name] if model_name else known:
        with model_lock(settings, name):
            results.append(
                forget_model(
                    settings,
                    model_name=name,
                    policy=policies[name],
                    run_id=f"{flow_id}:{name}",
                    dry_run=dry_run,
                    seed=seed,
                    run_now=run_now,
                )
            )
    with warehouse.connect(settings) as con:
        status = {
            "rows_received": warehouse.rows_received(con),
            "states": warehouse.state_counts(con),
        }
        ingested = [f.digest for f in files if f.outcome != "duplicate-file"]
        quarantine = warehouse.quarantined_rows(con, ingested)
    report = {
        "files": [f.as_dict() for f in files],
        "models": results,
        "status": status,
        "quarantine": quarantine,
    }
    publish_run_artifacts(report, mlflow_ui=settings.mlflow_ui)
    return report
