"""The forgetting deployments: `nightly-forgetting` (cron, UTC) and `forget-now` (manual runs).

Both run `forget_deployment`, a thin flow whose one parameter is a pydantic model, so the Prefect
UI shows a validated form. Runs never overlap: each deployment has a concurrency limit of one
(later runs queue), the serving runner executes one flow run at a time, and forget_flow itself
holds a per-model file lock (a run from another process refuses at once rather than interleave).
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from data_contracts.errors import ForgetflowError
from data_contracts.hashing import file_sha256
from data_contracts.settings import Settings
from deployments.parameters import ForgetRunParameters
from deployments.schedule import NIGHTLY_CRON, SCHEDULE_TIMEZONE
from flows.forget import forget_flow

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

FLOW_NAME = "forget-deployment"
NIGHTLY = "nightly-forgetting"
FORGET_NOW = "forget-now"
TAGS = ["forgetflow"]


def _deliverable(path: Path) -> bool:
    """Same rule as the inbox scan: regular files, no symlinks, hidden files or `.tmp` uploads."""
    return (
        path.is_file()
        and not path.is_symlink()
        and not path.name.startswith(".")
        and not path.name.endswith(".tmp")
    )


@task(cache_policy=NO_CACHE)
def deliver_manifests(settings: Settings, folder: str) -> list[str]:
    """Copy the manifest files of `folder` (inside the state directory) into the inbox.

    Idempotent: a file already in the inbox with the same bytes is skipped; a different file of
    the same name is delivered under a digest-suffixed name. Ingestion itself is idempotent by
    content digest, so re-running a deployment run never applies a request twice."""
    home = settings.home.resolve()
    source = (settings.home / folder).resolve()
    if not source.is_relative_to(home) or not source.is_dir():
        raise ForgetflowError(
            f"inbox override '{folder}': expected a folder inside {home}; nothing was delivered"
        )
    settings.inbox.mkdir(parents=True, exist_ok=True)
    delivered = []
    for path in sorted(p for p in source.iterdir() if _deliverable(p)):
        target = settings.inbox / path.name
        if target.exists():
            if filecmp.cmp(path, target, shallow=False):
                continue
            digest = file_sha256(path.read_bytes())[:12]
            target = settings.inbox / f"{path.stem}.{digest}{path.suffix}"
            if target.exists():
                continue
        partial = target.with_name(target.name + ".tmp")  # the inbox scan skips partial files
        shutil.copyfile(path, partial)
        partial.rename(target)
        delivered.append(target.name)
    return delivered


@flow(name=FLOW_NAME, log_prints=True)
def forget_deployment(params: ForgetRunParameters = ForgetRunParameters()) -> dict[str, Any]:
    """Deliver optional extra manifests, then run the forgetting flow with the policy overrides."""
    settings = Settings()
    settings.ensure_dirs()
    if params.inbox is not None:
        delivered = deliver_manifests(settings, params.inbox)
        get_run_logger().info("delivered %d manifest file(s) from %s", len(delivered), params.inbox)
    # forget_flow's body runs in this flow run, not as a subflow: its tasks, logs and artifacts
    # (summary, candidate and quarantine tables) are on the run a person opens from the UI, and
    # the MLflow version's forgetflow_run_id names it.
    return forget_flow.fn(
        model_name=params.model_name,
        policy=params.policy(),
        dry_run=params.dry_run,
        run_now=params.run_now,
    )


def nightly_schedule(cron: str = NIGHTLY_CRON):  # -> prefect.schedules.Schedule
    """The nightly cron schedule in UTC; ForgetflowError for a malformed cron string."""
    from prefect.schedules import Cron

    try:
        return Cron(cron, timezone=SCHEDULE_TIMEZONE)
    except ValueError as err:
        raise ForgetflowError(
            f"schedule '{cron}': expected a 5-field cron string such as '{NIGHTLY_CRON}' ({err})"
        ) from None


def build_deployments(cron: str = NIGHTLY_CRON) -> list[RunnerDeployment]:
    """`nightly-forgetting` on `cron` (UTC) and unscheduled `forget-now`, one run at a time each.

    `paused=False` un-pauses a schedule paused by an earlier process, and the module-path
    entrypoint lets any process with forgetflow installed run the flow, whatever its cwd."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType

    one_at_a_time = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
    )
    common: dict[str, Any] = {
        "concurrency_limit": one_at_a_time,
        "entrypoint_type": EntrypointType.MODULE_PATH,
        "enforce_parameter_schema": True,
        "paused": False,
    }
    nightly = forget_deployment.to_deployment(
        name=NIGHTLY,
        schedules=[nightly_schedule(cron)],
        description=f"Forget every model's pending requests on '{cron}' ({SCHEDULE_TIMEZONE}).",
        tags=[*TAGS, "nightly"],
        **common,
    )
    now = forget_deployment.to_deployment(
        name=FORGET_NOW,
        description="Manual run: pick a model, an extra manifest folder, policy overrides, dry run.",
        tags=[*TAGS, "manual"],
        **common,
    )
    return [nightly, now]


def serve_all(cron: str = NIGHTLY_CRON) -> None:
    """Register both deployments and execute their runs in this process until interrupted.

    pause_on_shutdown=False: stopping or restarting this process must not pause the nightly
    schedule (missed runs then wait as Late until a server-side process serves them again)."""
    from prefect import serve

    serve(*build_deployments(cron), pause_on_shutdown=False, limit=1)
