"""`forgetflow serve` and `forgetflow server`: operate the deployments against real local servers.

`server` runs a Prefect server and the MLflow UI as child processes on loopback, backed by the
state directory's stores; `serve` registers the deployments and runs their flow runs. The process
helpers (free port, health wait, process-group stop) are shared with the integration tests.
Prefect and the deployments are imported inside the commands, after the state directory's
environment is exported, so `forgetflow --help` stays instant."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

import typer

from data_contracts.errors import ForgetflowError
from data_contracts.settings import Settings, apply_library_environment
from deployments.schedule import NIGHTLY_CRON

LOOPBACK = "127.0.0.1"
SERVER_STARTUP_SECONDS = 120.0  # a Prefect server takes ~12 s on an idle 2-core machine
STOP_GRACE_SECONDS = 15.0


def _fail(message: str) -> typer.Exit:
    """Print one `error:` line on stderr; the caller raises the returned Exit (code 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((LOOPBACK, port)) == 0


def healthy(url: str, *, timeout_seconds: float = 2.0) -> bool:
    """True when `url` answers 200 (Prefect: /api/health, MLflow: /health)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(
    urls: Mapping[str, str],
    processes: Mapping[str, subprocess.Popen],
    *,
    timeout_seconds: float = SERVER_STARTUP_SECONDS,
) -> None:
    """Wait until every `urls[name]` is healthy; ForgetflowError if a process exits or time runs out."""
    pending = dict(urls)
    deadline = time.monotonic() + timeout_seconds
    while pending:
        for name, url in list(pending.items()):
            if healthy(url):
                del pending[name]
            elif processes[name].poll() is not None:
                raise ForgetflowError(
                    f"{name} exited with code {processes[name].returncode} before {url} answered"
                )
        if pending and time.monotonic() > deadline:
            raise ForgetflowError(
                f"{', '.join(pending)} did not answer within {timeout_seconds:.0f} s "
                f"({', '.join(pending.values())})"
            )
        if pending:
            time.sleep(0.5)


def start_process(
    argv: list[str], *, env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen:
    """Start `argv` in its own process group (so stop() reaches its children), output to a log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen, *, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited after `grace_seconds`."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader has exited; its group may still hold workers (uvicorn, mlflow's server).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return


def prefect_server_argv(port: int) -> list[str]:
    return [
        sys.executable, "-m", "prefect", "server", "start",
        "--host", LOOPBACK, "--port", str(port), "--analytics-off",
    ]  # fmt: skip


def mlflow_server_argv(settings: Settings, port: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", settings.mlflow_uri,
        "--default-artifact-root", settings.artifact_root,
        "-h", LOOPBACK, "-p", str(port), "--workers", "1",
    ]  # fmt: skip


def server_environment(settings: Settings) -> dict[str, str]:
    """The servers' environment: the state directory's Prefect home (its SQLite), no telemetry."""
    env = {**os.environ, **settings.library_environment()}
    env.pop("PREFECT_API_URL", None)  # the server is the API; a client URL here would confuse it
    return env


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so Ctrl-C and `kill <pid>` stop the child
    servers even when the shell started us with SIGINT ignored (a background job)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def server(
    prefect_port: Annotated[int, typer.Option(help="Prefect server and UI port")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow UI port")] = 5000,
) -> None:
    """Start a local Prefect server and the MLflow UI on loopback (state directory's stores); Ctrl-C stops both."""
    settings = Settings()
    settings.ensure_dirs()
    for name, port in (("prefect", prefect_port), ("mlflow", mlflow_port)):
        if port_in_use(port):
            raise _fail(f"{name} port {port} on {LOOPBACK} is already in use; pass --{name}-port")
    env = server_environment(settings)
    logs = settings.home / "logs"
    prefect_url = f"http://{LOOPBACK}:{prefect_port}"
    mlflow_url = f"http://{LOOPBACK}:{mlflow_port}"
    processes: dict[str, subprocess.Popen] = {}
    with _interruptible():
        try:
            processes["prefect server"] = start_process(
                prefect_server_argv(prefect_port), env=env, log_path=logs / "prefect-server.log"
            )
            processes["mlflow server"] = start_process(
                mlflow_server_argv(settings, mlflow_port),
                env=env,
                log_path=logs / "mlflow-server.log",
            )
            typer.echo(f"starting Prefect and MLflow servers (logs in {logs}) ...", err=True)
            wait_healthy(
                {
                    "prefect server": f"{prefect_url}/api/health",
                    "mlflow server": f"{mlflow_url}/health",
                },
                processes,
            )
            home = settings.home.resolve()
            typer.echo(
                f"Prefect UI:  {prefect_url}\n"
                f"MLflow UI:   {mlflow_url}\n"
                f"state:       {home}\n"
                "in another shell, before `forgetflow serve` / `forgetflow run`:\n"
                f"  export PREFECT_API_URL={prefect_url}/api\n"
                f"  export FORGETFLOW_HOME={home}\n"
                f"  export FORGETFLOW_MLFLOW_UI={mlflow_url}\n"
                "Ctrl-C stops both servers."
            )
            while True:
                for name, process in processes.items():
                    if process.poll() is not None:
                        raise ForgetflowError(
                            f"{name} exited with code {process.returncode}; stopping the other"
                        )
                time.sleep(1.0)
        except KeyboardInterrupt:
            typer.echo("stopping servers ...", err=True)
        except ForgetflowError as err:
            raise _fail(f"{err} (logs: {logs})") from None
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not orphan a server
                signal.signal(sig, signal.SIG_IGN)
            for process in processes.values():
                stop(process)


def serve(
    cron: Annotated[
        str, typer.Option(help="nightly-forgetting schedule, 5-field cron in UTC")
    ] = NIGHTLY_CRON,
) -> None:
    """Register the deployments (nightly-forgetting, forget-now) and run their flow runs until Ctrl-C."""
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise _fail(
            "PREFECT_API_URL is not set: start `forgetflow server` and export the "
            "PREFECT_API_URL line it prints (a temporary server would lose the schedule on exit)"
        )
    if not healthy(f"{api_url.rstrip('/')}/health"):
        raise _fail(f"no Prefect server answers at {api_url} (is `forgetflow server` running?)")
    settings = Settings()
    settings.ensure_dirs()
    apply_library_environment(settings)  # before Prefect is imported: PREFECT_HOME, no telemetry
    from deployments.serve import nightly_schedule, serve_all

    try:
        nightly_schedule(cron)
    except ForgetflowError as err:
        raise _fail(str(err)) from None
    typer.echo(
        f"serving nightly-forgetting ('{cron}' UTC) and forget-now against {api_url} "
        f"for state directory {settings.home.resolve()}; Ctrl-C stops serving "
        "(the schedule stays active)",
        err=True,
    )
    serve_all(cron)
