"""Deployments and the operator commands.

Fast tests: the parameter model, manifest delivery, the deployment definitions, and the one-line
errors of `serve` / `server`. The integration test runs real processes: a Prefect server on a
free loopback port, `forgetflow serve` in its own process, and clients in subprocesses (each with
its own PREFECT_API_URL, so nothing depends on the Prefect settings of the pytest process). It
proves that `forget-now`, triggered through the API with parameters, forgets and registers v2 in
MLflow; that the API rejects invalid parameters; and that `nightly-forgetting` carries its UTC
cron schedule, still active after the serving process stops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from data_contracts.errors import ForgetflowError
from data_contracts.policy import Policy
from data_contracts.settings import Settings
from deployments.parameters import ForgetRunParameters
from deployments.schedule import NIGHTLY_CRON, SCHEDULE_TIMEZONE
from flows.ops_commands import (
    free_port,
    prefect_server_argv,
    serve,
    server,
    start_process,
    stop,
    wait_healthy,
)

REPO = Path(__file__).resolve().parents[1]
RAW_SUBJECTS = ("subject-3", "subject-17", "subject-999999")
QUIET = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "TQDM_DISABLE": "1",
}

TRIGGER = textwrap.dedent(
    """
    import asyncio, json, time
    from prefect import get_client
    from prefect.deployments import run_deployment
    from data_contracts.settings import Settings
    from flows.sample_manifest import write_sample_manifest
    from flows.train import train_flow
    from tasks import registry

    settings = Settings()
    train_flow(dataset="digits", recipe="pnsgd", name="digits-logreg", seed=0, overrides={"epochs": 5})
    write_sample_manifest(
        settings.inbox / "m.parquet", model_name="digits-logreg", subjects=["subject-3", "subject-17"]
    )

    async def wait_for_deployments():
        async with get_client() as client:
            deadline = time.monotonic() + 90
            while True:
                try:
                    for name in ("nightly-forgetting", "forget-now"):
                        await client.read_deployment_by_name(f"forget-deployment/{name}")
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(1)

    asyncio.run(wait_for_deployments())
    try:
        run_deployment(name="forget-deployment/forget-now", parameters={"params": {"epsilon": -1.0}}, timeout=0)
        invalid = "accepted"
    except Exception as err:  # PrefectHTTPStatusError carries the server's answer
        response = getattr(err, "response", None)
        invalid = getattr(response, "status_code", type(err).__name__)
    run = run_deployment(
        name="forget-deployment/forget-now",
        parameters={"params": {"model_name": "digits-logreg", "epsilon": 2.0, "max_accuracy_drop": 0.05}},
        timeout=150,
        poll_interval=1,
    )
    from prefect.client.schemas.filters import (
        ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId,
    )

    async def artifacts_and_logs(flow_run_id):
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )
            logs, page = [], None
            while page is None or len(page) == 200:
                page = await client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                    limit=200, offset=len(logs),
                )
                logs += page
            return artifacts, logs

    artifacts, logs = asyncio.run(artifacts_and_logs(run.id))
    versions = registry.client(settings).search_model_versions("name='digits-logreg'")
    print(json.dumps({"state": run.state.type.value, "message": run.state.message,
                      "run_id": str(run.id), "parameters": run.parameters, "invalid": invalid,
                      "champion": registry.champion_version(settings, "digits-logreg"),
                      "versions": sorted(int(v.version) for v in versions),
                      "run_tags": {v.version: v.tags.get("forgetflow_run_id") for v in versions},
                      "artifacts": {a.key: {"type": a.type, "data": str(a.data)} for a in artifacts},
                      "logs": [{"name": r.name, "level": r.level, "message": r.message} for r in logs]}))
    """
)


def test_parameters_override_only_the_policy_fields_they_set():
    assert ForgetRunParameters().policy() is None  # the nightly run: each model's own policy
    assert ForgetRunParameters(dry_run=True, model_name="m").policy() is None
    params = ForgetRunParameters(epsilon=2.0, guarantee="exact", model_name="", inbox=" ")
    assert params.policy() == Policy(epsilon=2.0, guarantee="exact")
    assert params.model_name is None and params.inbox is None  # the UI's cleared text fields
    assert ForgetRunParameters(inbox="drops/2026-11-22/").inbox == "drops/2026-11-22"


@pytest.mark.parametrize(
    "bad",
    [
        {"epsilon": -1.0},
        {"delta": 1.5},
        {"max_accuracy_drop": 2.0},
        {"guarantee": "none"},
        {"model_name": "digits logreg"},
        {"inbox": "../outside"},
        {"inbox": "/etc"},
        {"dry_run": "perhaps"},
        {"unknown": 1},
    ],
)
def test_parameters_reject_values_the_flow_cannot_use(bad: dict):
    with pytest.raises(ValidationError):
        ForgetRunParameters(**bad)


def test_delivery_copies_each_manifest_once_and_never_from_outside_home(tmp_path: Path):
    from deployments.serve import deliver_manifests

    settings = Settings(home=tmp_path / "home")
    drop = settings.home / "drops" / "a"
    drop.mkdir(parents=True)
    (drop / "m.parquet").write_bytes(b"first")
    (drop / ".hidden").write_bytes(b"x")
    (drop / "upload.parquet.tmp").write_bytes(b"partial")
    assert deliver_manifests.fn(settings, "drops/a") == ["m.parquet"]
    assert deliver_manifests.fn(settings, "drops/a") == []  # a re-run delivers nothing new
    (drop / "m.parquet").write_bytes(b"second")  # same name, other content: both are kept
    [renamed] = deliver_manifests.fn(settings, "drops/a")
    assert renamed.startswith("m.") and renamed.endswith(".parquet")
    assert sorted(p.name for p in settings.inbox.iterdir()) == sorted(["m.parquet", renamed])
    assert (settings.inbox / "m.parquet").read_bytes() == b"first"
    (tmp_path / "outside").mkdir()
    with pytest.raises(ForgetflowError, match="expected a folder inside"):
        deliver_manifests.fn(settings, "../outside")


def test_nightly_runs_on_its_utc_cron_and_both_deployments_run_one_at_a_time():
    from deployments.serve import build_deployments

    nightly, now = build_deployments("30 3 * * 1-5")
    assert (nightly.name, now.name) == ("nightly-forgetting", "forget-now")
    [schedule] = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "30 3 * * 1-5",
        "UTC",
        True,
    )
    assert now.schedules == []
    for d in (nightly, now):
        assert d.concurrency_limit == 1
        assert d.concurrency_options.collision_strategy == "ENQUEUE"
        assert d.paused is False and d.enforce_parameter_schema is True
        assert d.entrypoint == "deployments.serve.forget_deployment"


def test_one_nightly_cron_for_serve_make_and_prefect_yaml():
    import yaml

    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert [
        (s["cron"], s["timezone"], s["active"]) for s in by_name["nightly-forgetting"]["schedules"]
    ] == [(NIGHTLY_CRON, SCHEDULE_TIMEZONE, True)]
    assert by_name["forget-now"]["schedules"] == []
    # A worker's runs get the environment `forgetflow serve` exports (state-independent part).
    wanted = Settings(home=Path("unused")).library_environment()
    for key in ("PREFECT_HOME", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        wanted.pop(key)
    for d in by_name.values():
        assert d["entrypoint"] == "deployments.serve.forget_deployment"
        assert d["concurrency_limit"]["limit"] == 1
        assert d["work_pool"]["job_variables"]["env"] == wanted
    # `make serve` passes --cron only when CRON is set; otherwise `forgetflow serve` uses the default.
    make = ["make", "--no-print-directory", "-n", "-C", str(REPO), "serve"]
    default = subprocess.run(make, capture_output=True, text=True, check=True).stdout
    assert "forgetflow serve" in default and "--cron" not in default
    custom = subprocess.run(
        [*make, "CRON=30 3 * * 1-5"], capture_output=True, text=True, check=True
    )
    assert 'forgetflow serve --cron "30 3 * * 1-5"' in custom.stdout


def test_the_summary_links_the_registered_version_in_mlflow():
    from flows.reporting import summary_markdown

    model = {
        "model_name": "digits logreg", "version": 2, "method": "pnsgd", "guarantee": "certified",
        "epsilon": 0.4, "delta": 1e-3, "requests": 2, "samples": 5, "grad_evals": 10.0,
        "retrain_grad_evals": 200.0, "test_accuracy_before": 0.93, "test_accuracy_after": 0.92,
        "mia_auc_after": 0.5, "why": "cheapest", "test_set_size": 358.0,
        "test_rows_withdrawn": 2.0,
    }  # fmt: skip
    report = {"status": {"states": {"applied": 2}, "rows_received": 2}, "models": [model]}
    text = summary_markdown(report, mlflow_ui="http://127.0.0.1:5001/")
    assert "[digits logreg v2](http://127.0.0.1:5001/#/models/digits%20logreg/versions/2)" in text
    assert "5.0% of a retrain" in text
    assert "0.930 -> 0.920 on 358 test rows (2 withdrawn)" in text


def test_library_records_below_warning_never_reach_run_log_handlers():
    import logging

    from flows.library_logging import quiet_libraries

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    keep = Keep()
    gx, child = logging.getLogger("great_expectations"), logging.getLogger("great_expectations.x")
    gx.addHandler(keep)  # as Prefect attaches its handlers to PREFECT_LOGGING_EXTRA_LOGGERS
    try:
        quiet_libraries()
        child.setLevel(logging.INFO)  # what GX does to one of its loggers when it is imported
        child.info("chatter")
        child.warning("matters")
        quiet_libraries()  # a second run adds no second filter
        assert len(keep.filters) == 1
        other = logging.LogRecord("forgetflow", logging.INFO, __file__, 1, "own line", None, None)
        keep.handle(other)
    finally:
        gx.removeHandler(keep)
        child.setLevel(logging.NOTSET)
    assert [r.getMessage() for r in keep.records] == ["matters", "own line"]


def test_a_malformed_cron_is_one_clear_error():
    from deployments.serve import build_deployments

    with pytest.raises(ForgetflowError, match=r"schedule '61 2 \* \* \*': expected a 5-field cron"):
        build_deployments("61 2 * * *")


ops = typer.Typer()


@ops.callback()
def _root() -> None:
    """A group, as in flows/cli.py, so the commands are invoked by name."""


ops.command("serve")(serve)
ops.command("server")(server)


def test_serve_without_a_server_url_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(ops, ["serve"])
    assert result.exit_code == 2
    assert result.output.startswith("error: PREFECT_API_URL is not set")
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    result = CliRunner().invoke(ops, ["serve", "--cron", "0 2 * * *"])
    assert result.exit_code == 2
    assert result.output.startswith("error: no Prefect server answers at http://127.0.0.1:")


def test_server_refuses_a_port_in_use_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import socket

    monkeypatch.setenv("FORGETFLOW_HOME", str(tmp_path / "home"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(ops, ["server", "--prefect-port", str(port)])
    assert result.exit_code == 2
    assert result.output == (
        f"error: prefect port {port} on 127.0.0.1 is already in use; pass --prefect-port\n"
    )
    assert not (tmp_path / "home" / "logs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mnist"], "error: unknown dataset 'mnist'; known: breast_cancer, digits"),
        (["--recipe", "svm"], "error: unknown recipe 'svm'; known: mlp, pcmu"),
        (["--name", "my model"], "error: model name 'my model': expected letters, digits"),
    ],
)
def test_train_refuses_unknown_choices_in_one_line_before_writing(
    home: Path, args: list[str], message: str
):
    from flows.cli import app

    result = CliRunner().invoke(app, ["train", *args])
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output
    assert not (home / "warehouse.duckdb").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_a_user_error_inside_a_flow_is_one_line_and_exit_2(tmp_path: Path):
    """Prefect logs a failed run with its traceback; the CLI keeps a user error to one line."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        **QUIET,
        "FORGETFLOW_HOME": str(tmp_path / "home"),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the session's server: no start-up
    }
    forgetflow = str(Path(sys.executable).with_name("forgetflow"))
    done = subprocess.run(
        [forgetflow, "run", "--model", "nope"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: unknown model 'nope'; known: none (run forgetflow train)"]
    assert "Traceback" not in done.stderr and "nanobind" not in done.stderr, done.stderr[-3000:]
    assert done.stdout == ""


def _python(script: str, *, env: dict[str, str], cwd: Path, timeout: float) -> dict:
    """Run `script` in a fresh interpreter; its last stdout line is a JSON report."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _read_deployment(api_url: str, name: str) -> dict:
    """A deployment as the Prefect REST API returns it (read from the test process: no prefect import)."""
    url = f"{api_url}/deployments/name/forget-deployment/{name}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@pytest.mark.integration
def test_forget_now_via_api_registers_v2_and_nightly_keeps_its_utc_cron(tmp_path: Path) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_env = {**os.environ, **QUIET, "PREFECT_HOME": str(tmp_path / "prefect-server")}
    server_env.pop("PREFECT_API_URL", None)
    home = tmp_path / "home"
    client_env = {
        **os.environ,
        **QUIET,
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(home / "prefect"),
        "FORGETFLOW_HOME": str(home),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",  # serve picks up the manual run within seconds
    }
    # Every process runs outside the repository: the module-path entrypoint must not need a cwd.
    work = tmp_path / "work"
    work.mkdir()
    server = start_process(
        prefect_server_argv(port), env=server_env, log_path=tmp_path / "prefect-server.log"
    )
    serving = None
    try:
        wait_healthy({"prefect server": f"{api_url}/health"}, {"prefect server": server})
        serving = start_process(
            [sys.executable, "-c", "from flows.ops_commands import serve; serve()"],
            env=client_env,
            cwd=work,
            log_path=tmp_path / "serve.log",
        )
        triggered = _python(TRIGGER, env=client_env, cwd=work, timeout=240)
        assert triggered["state"] == "COMPLETED", (triggered, _log_tail(tmp_path / "serve.log"))
        assert triggered["parameters"]["params"]["model_name"] == "digits-logreg"
        assert triggered["invalid"] in (409, 422), "the API must reject epsilon = -1"
        assert serving.poll() is None, _log_tail(tmp_path / "serve.log")

        # Stopping and restarting the serving process must not pause the nightly schedule, and
        # registering again must not add a second schedule.
        stop(serving)
        serving = None
        for restart in (False, True):
            if restart:
                before = _read_deployment(api_url, "nightly-forgetting")["updated"]
                serving = start_process(
                    [sys.executable, "-c", "from flows.ops_commands import serve; serve()"],
                    env=client_env,
                    cwd=work,
                    log_path=tmp_path / "serve-again.log",
                )
                deadline = time.monotonic() + 120
                while _read_deployment(api_url, "nightly-forgetting")["updated"] == before:
                    assert time.monotonic() < deadline, _log_tail(tmp_path / "serve-again.log")
                    assert serving.poll() is None, _log_tail(tmp_path / "serve-again.log")
                    time.sleep(1)
                stop(serving)
                serving = None
            nightly = _read_deployment(api_url, "nightly-forgetting")
            schedules = [
                [s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]]
                for s in nightly["schedules"]
            ]
            assert schedules == [[NIGHTLY_CRON, "UTC", True]]  # the default, as `make serve` uses
            assert nightly["paused"] is False
        manual = _read_deployment(api_url, "forget-now")
        assert manual["schedules"] == []
        assert [d["global_concurrency_limit"]["limit"] for d in (nightly, manual)] == [1, 1]
        assert triggered["versions"] == [1, 2]
        assert triggered["champion"] == 2
        # What a person opens from the UI is the deployment's flow run: it made v2 and carries
        # the summary (with the MLflow link), candidate, quarantine and manifest tables.
        assert triggered["run_tags"]["2"] == f"{triggered['run_id']}:digits-logreg"
        artifacts = triggered["artifacts"]
        assert {k: a["type"] for k, a in artifacts.items()} == {
            "forgetting-summary": "markdown",
            "candidate-paths-digits-logreg": "table",
            "mlflow-version-digits-logreg": "markdown",  # Prefect 3 stores a link as markdown
            "quarantined-rows": "table",
            "manifest-files": "table",
        }
        assert "/#/models/digits-logreg/versions/2" in artifacts["forgetting-summary"]["data"]
        link = artifacts["mlflow-version-digits-logreg"]["data"]
        assert (
            link
            == "[digits-logreg v2 in MLflow](http://127.0.0.1:5000/#/models/digits-logreg/versions/2)"
        )
        assert "not in the training index" in artifacts["quarantined-rows"]["data"]
        logs = triggered["logs"]
        assert logs, "the run's logs were not read"
        for record in logs + list(artifacts.values()):
            text = json.dumps(record)
            assert not any(s in text for s in RAW_SUBJECTS), text  # only salted hashes leave DuckDB
        library = [r for r in logs if r["name"].split(".")[0] in ("mlflow", "great_expectations")]
        assert all(r["level"] >= 30 for r in library), library  # library loggers at WARNING
    finally:
        if serving is not None:
            stop(serving)
        stop(server)
