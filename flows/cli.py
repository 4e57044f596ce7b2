"""The `forgetflow` command line. Heavy imports (prefect, mlflow, torch) happen inside commands,
after the state directory's environment is exported, so `--help` is instant."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_contracts.errors import ForgetflowError
from data_contracts.settings import Settings, apply_library_environment
from flows.ops_commands import serve, server
from flows.privacy_command import privacy

app = typer.Typer(
    help="forgetflow: make trained models forget deleted subjects, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()
app.command("privacy")(privacy)
app.command("serve")(serve)
app.command("server")(server)


def _settings() -> Settings:
    settings = Settings()
    settings.ensure_dirs()
    apply_library_environment(settings)
    return settings


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a failed flow or task run with its traceback; for a ForgetflowError the record
    keeps its one-line message and loses the traceback (the CLI prints the error line itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ForgetflowError):
            record.exc_info = record.exc_text = None
        return True


# Prefect's run loggers; a logger's filter sees every record created on it, before any handler.
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


@contextmanager
def _user_errors() -> Iterator[None]:
    """One clear line and exit code 2 for errors a user can act on; tracebacks only for bugs."""
    no_traceback = _NoTracebackForUserErrors()
    for name in _RUN_LOGGERS:
        logging.getLogger(name).addFilter(no_traceback)
    try:
        yield
    except ForgetflowError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        # Prefect keeps the exception in the failed run's state until exit; its traceback would
        # keep the frames' DuckDB objects alive, and DuckDB's bindings then print leak warnings.
        err.__traceback__ = err.__context__ = None
        raise typer.Exit(2) from None
    finally:
        for name in _RUN_LOGGERS:
            logging.getLogger(name).removeFilter(no_traceback)


@contextmanager
def _rich_progress() -> Iterator[None]:
    from tasks.progress import progress_sink

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bars:
        tasks: dict[str, Any] = {}

        def factory(label: str) -> Callable[[int, int], None]:
            def update(done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bars.add_task(label, total=total)
                bars.update(tasks[label], completed=done, total=total)

            return update

        with progress_sink(factory):
            yield


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="digits | digits-rff | breast_cancer")] = "digits",
    recipe: Annotated[str, typer.Option(help="pnsgd | pcmu | sisa | mlp")] = "pnsgd",
    name: Annotated[str, typer.Option(help="registered model name")] = "digits-logreg",
    seed: int = 0,
    canaries: Annotated[
        int, typer.Option(help="synthetic canaries trained on so RUM's audit has power (mlp)")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train an unlearning-ready model and register it as version 1 (alias champion)."""
    _settings()
    with _user_errors(), _rich_progress():
        _check_training_choices(dataset=dataset, recipe=recipe, name=name)
        _check_canaries(dataset=dataset, recipe=recipe, canaries=canaries)
        from flows.train import train_flow

        summary = train_flow(
            dataset=dataset, recipe=recipe, name=name, seed=seed, canaries=canaries
        )
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        out.print(
            f"trained [bold]{name}[/] v{summary['version']} (champion): test accuracy "
            f"{summary['test_accuracy']:.3f}, {summary['grad_evals']:.0f} grad-evals"
        )


def _check_training_choices(*, dataset: str, recipe: str, name: str) -> None:
    """Refuse before anything is written: a failed training would leave the name reserved."""
    from deployments.parameters import MODEL_NAME_PATTERN
    from models.datasets import DATASETS
    from models.training import FITS

    for kind, value, known in (("dataset", dataset, DATASETS), ("recipe", recipe, FITS)):
        if value not in known:
            raise ForgetflowError(f"unknown {kind} '{value}'; known: {', '.join(sorted(known))}")
    if re.fullmatch(MODEL_NAME_PATTERN, name) is None:
        raise ForgetflowError(
            f"model name {name!r}: expected letters, digits, '.', '_' or '-' (at most 100, "
            "starting with a letter or digit), as the forget-now deployment accepts"
        )


def _check_canaries(*, dataset: str, recipe: str, canaries: int) -> None:
    """Canaries serve RUM's audit only, so only the mlp recipe takes them (models/canaries.py)."""
    if canaries == 0:
        return
    if recipe != "mlp":
        raise ForgetflowError(
            f"--canaries: only the mlp recipe runs RUM, whose audit canaries serve; got recipe "
            f"'{recipe}' (train without --canaries)"
        )
    from models.canaries import MAX_CANARY_FRACTION
    from models.datasets import load_dataset

    limit = int(MAX_CANARY_FRACTION * len(load_dataset(dataset).train_rows()))
    if not 1 <= canaries <= limit:
        raise ForgetflowError(
            f"--canaries {canaries}: expected 1 to {limit} ({MAX_CANARY_FRACTION:.0%} of "
            f"{dataset}'s training rows)"
        )


def _policy(guarantee: str | None, epsilon: float | None, delta: float | None):
    """None without overrides (each model's own policy applies), as the forget-now deployment."""
    from data_contracts.policy import Policy

    fields = {
        k: v
        for k, v in {"guarantee": guarantee, "epsilon": epsilon, "delta": delta}.items()
        if v is not None
    }
    if not fields:
        return None
    try:
        return Policy(**fields)
    except ValueError as err:
        raise ForgetflowError(f"invalid policy: {err}") from None


@app.command()
def run(
    model: Annotated[
        str | None, typer.Option(help="only this model (default: every model)")
    ] = None,
    guarantee: Annotated[str | None, typer.Option(help="exact | certified | audited")] = None,
    epsilon: Annotated[float | None, typer.Option(help="target epsilon (default 1.0)")] = None,
    delta: Annotated[float | None, typer.Option(help="target delta (default 1/n)")] = None,
    dry_run: Annotated[bool, typer.Option(help="plan only; requests stay pending")] = False,
    now: Annotated[
        bool, typer.Option("--now", help="run even where the policy would hold a small batch")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the forgetting flow once (the nightly deployment runs the same flow)."""
    _settings()
    with _user_errors():
        policy = _policy(guarantee, epsilon, delta)
        with _rich_progress():
            from flows.forget import forget_flow

            report = forget_flow(model_name=model, policy=policy, dry_run=dry_run, run_now=now)
    if as_json:
        out.print_json(json.dumps(report, default=str))
    else:
        print_report(report)


def print_report(report: dict[str, Any]) -> None:
    """Rich summary: files, per-model outcome with path, cost vs retrain, epsilon, accuracy."""
    for f in report["files"]:
        extra = f" ({f['reason']})" if f.get("reason") else ""
        # A delivered file name is untrusted: escape control characters and Rich markup.
        name = f["file_name"].encode("unicode_escape").decode("ascii")
        out.print(
            f"manifest {name}: {f['outcome']}, {f['rows']} rows {f.get('states') or ''}{extra}",
            highlight=False,
            markup=False,
        )
    for m in report["models"]:
        table = Table(title=f"forgetting run: {m['model_name']}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        batch = m.get("batch") or {}
        if "grad_evals" not in m:
            table.add_row("outcome", str(m.get("method", "dry run")))
            table.add_row("requests", str(m.get("requests", 0)))
            if batch:
                table.add_row("batching", batch["reason"])
            if "plan" in m:
                table.add_row("would choose", f"{m['plan']['chosen']}: {m['plan']['why']}")
            out.print(table)
            continue
        ratio = m["grad_evals"] / m["retrain_grad_evals"]
        eps = (
            f"{m['epsilon']:.3g} (delta {m['delta']:.2g})" if m.get("epsilon") is not None else "-"
        )
        table.add_row("new version", f"v{m['version']} (champion)")
        table.add_row("requests applied", f"{m['requests']} ({m['samples']} training samples)")
        table.add_row("path", f"{m['method']} ({m['guarantee']})")
        if m.get("overdue"):
            table.add_row("past their deadline", f"{m['overdue']} requests (applied in this run)")
        if batch:
            table.add_row("why now", batch["why"])
        table.add_row("why", m["why"])
        table.add_row("epsilon", eps)
        table.add_row(
            "cost vs retrain",
            f"{m['grad_evals']:.0f} / {m['retrain_grad_evals']:.0f} grad-evals = {ratio:.1%}",
        )
        table.add_row(
            "test accuracy", f"{m['test_accuracy_before']:.3f} -> {m['test_accuracy_after']:.3f}"
        )
        table.add_row(
            "MIA AUC (forget vs test)", f"{m['mia_auc_before']:.3f} -> {m['mia_auc_after']:.3f}"
        )
        out.print(table)
    s = report["status"]
    out.print(
        f"ledger: {s['rows_received']} rows received = "
        + " + ".join(f"{v} {k}" for k, v in s["states"].items()),
        highlight=False,
    )


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Requests per state and per manifest file (states always sum to rows received), and per
    model what its next run would do with its pending requests (run, or hold until when)."""
    settings = _settings()
    from tasks import batching, warehouse

    with warehouse.connect(settings) as con:
        report = {
            "rows_received": warehouse.rows_received(con),
            "states": warehouse.state_counts(con),
            "files": warehouse.files_summary(con),
            "models": batching.model_queue(con, salt=settings.salt(), now=warehouse.now()),
        }
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(title=f"ledger: {report['rows_received']} rows received")
    table.add_column("state")
    table.add_column("rows", justify="right")
    for k, v in report["states"].items():
        table.add_row(k, str(v))
    out.print(table)
    files = Table(title="manifest files")
    for col in ("file", "digest", "rows", "outcome", "reason"):
        files.add_column(col)
    for f in report["files"]:
        files.add_row(
            f["file_name"], f["digest"][:12], str(f["rows"]), f["outcome"], f["reason"] or ""
        )
    out.print(files)
    queue = Table(title="pending per model (next run, under each model's policy)")
    for col in ("model", "pending", "held", "earliest deadline", "next run"):
        queue.add_column(col)
    for q in report["models"]:
        queue.add_row(
            q["model_name"],
            str(q["pending"]),
            str(q["held"]),
            q["earliest_deadline"] or "-",
            q["next_run"],
        )
    out.print(queue)


@app.command()
def audit(subject_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A subject's requests, their states, and the model versions (and guarantees) that forgot them."""
    settings = _settings()
    from tasks import ledger, warehouse

    with warehouse.connect(settings) as con:
        report = {
            "subject_id": subject_id,
            "requests": ledger.subject_requests(con, subject_id),
            "versions_with_influence": ledger.subject_influence(con, subject_id),
        }
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(title=f"audit of {subject_id}: {len(report['requests'])} request rows")
    for col in ("request", "state", "reason", "model", "version", "guarantee", "certificate"):
        table.add_column(col)
    for r in report["requests"]:
        table.add_row(
            r["request_id"] or "",
            r["state"],
            r["reason"] or "",
            r["model_name"] or "",
            str(r["model_version"] or ""),
            r["guarantee"] or "",
            (r["certificate_sha256"] or "")[:16],
        )
    out.print(table)
    for v in report["versions_with_influence"]:
        where = "SERVING (champion)" if v["serving"] else "an older version, still in the registry"
        out.print(
            f"{v['model_name']} v{v['version']} is still trained on {v['samples']} of this subject's "
            f"samples: {where}",
            highlight=False,
        )


@app.command()
def policy(
    model: Annotated[str, typer.Argument(help="registered model name")],
    guarantee: Annotated[str | None, typer.Option(help="exact | certified | audited")] = None,
    epsilon: Annotated[float | None, typer.Option(help="target epsilon")] = None,
    delta: Annotated[float | None, typer.Option(help="target delta (default 1/n)")] = None,
    max_accuracy_drop: Annotated[float | None, typer.Option(help="max test-accuracy drop")] = None,
    min_batch: Annotated[
        int | None, typer.Option(help="hold pending requests until this many are pending")
    ] = None,
    max_hold_days: Annotated[
        float | None, typer.Option(help="hold no request longer than this after receipt")
    ] = None,
    deadline_margin_days: Annotated[
        float | None, typer.Option(help="run when a request is due within this many days")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a model's forgetting policy, or set the given fields (validated; used by every run)."""
    settings = _settings()
    from data_contracts.policy import Policy
    from tasks import warehouse

    changes = {
        k: v
        for k, v in {
            "guarantee": guarantee,
            "epsilon": epsilon,
            "delta": delta,
            "max_accuracy_drop": max_accuracy_drop,
            "min_batch": min_batch,
            "max_hold_days": max_hold_days,
            "deadline_margin_days": deadline_margin_days,
        }.items()
        if v is not None
    }
    with _user_errors(), warehouse.connect(settings) as con:
        if warehouse.model_row(con, model) is None:
            raise ForgetflowError(f"unknown model '{model}'")
        current = warehouse.stored_policy(con, model) or Policy()
        if changes:
            try:
                current = current.overridden_by(Policy(**changes))
            except ValueError as err:
                raise ForgetflowError(f"invalid policy for '{model}': {err}") from None
            warehouse.store_policy(con, model, current)
    if as_json:
        out.print_json(current.model_dump_json())
    else:
        out.print(f"{model}: {current.model_dump()}", highlight=False)


@app.command()
def verify(
    model: Annotated[
        str | None, typer.Option(help="only this model (default: every model)")
    ] = None,
) -> None:
    """Recompute weight hashes, certificate hashes, chain links and epsilons; exit 1 on the first break."""
    settings = _settings()
    from tasks import warehouse
    from tasks.verification import verify_model

    with warehouse.connect(settings) as con:
        names = [model] if model else warehouse.model_names(con)
    failed = False
    for name in names:
        count, problems = verify_model(settings, name)
        if problems:
            failed = True
            console.print(f"[bold red]{name}: chain broken at {problems[0]}[/]", highlight=False)
            for p in problems[1:]:
                console.print(f"  also: {p}", highlight=False)
        else:
            out.print(
                f"{name}: {count} versions verified (weights, certificates, chain, accountant)"
            )
    if failed:
        raise typer.Exit(1)


@app.command()
def explain(
    run_or_version: Annotated[str, typer.Argument(help="a run id, or MODEL:VERSION")],
) -> None:
    """Show the candidate paths a run considered: cost, certificate, and why each was rejected."""
    settings = _settings()
    from tasks import warehouse

    with warehouse.connect(settings) as con:
        if ":" in run_or_version and run_or_version.rsplit(":", 1)[1].isdigit():
            name, version = run_or_version.rsplit(":", 1)
            rows = con.execute(
                "SELECT run_id, plan_json, summary_json FROM runs WHERE model_name = ? AND model_version = ? "
                "AND plan_json IS NOT NULL AND plan_json <> 'null'",
                [name, int(version)],
            ).fetchall()
        else:
            rows = con.execute(
                "SELECT run_id, plan_json, summary_json FROM runs WHERE run_id = ?",
                [run_or_version],
            ).fetchall()
    if not rows or rows[0][1] in (None, "null"):
        raise_user_error(
            f"no plan recorded for '{run_or_version}' (a run id, or MODEL:VERSION of a forgetting run)"
        )
    run_id, plan_json, _ = rows[0]
    plan = json.loads(plan_json)
    table = Table(title=f"run {run_id}: chose {plan['chosen']}")
    for col in (
        "path",
        "guarantee",
        "predicted grad-evals",
        "predicted s",
        "seconds from",
        "epsilon",
        "chosen",
        "rejected because",
    ):
        table.add_column(col)
    for c in plan["candidates"]:
        eps = "" if c["epsilon"] is None else f"{c['epsilon']:.3g}"
        table.add_row(
            c["path"],
            c["guarantee"],
            # "(<= upper)" only where the estimate is not itself a bound (models.planner.Candidate).
            f"{c['predicted_grad_evals']:.0f}"
            + (f" (<= {c['upper_grad_evals']:.0f})" if c.get("upper_grad_evals") else ""),
            f"{c['predicted_seconds']:.2f}"
            + (f" (<= {c['upper_seconds']:.2f})" if c.get("upper_seconds") else ""),
            # Plans stored before per-path calibration have no basis recorded.
            c.get("seconds_from", ""),
            eps,
            "yes" if c["chosen"] else "",
            c["rejected"],
        )
    out.print(table)
    out.print(plan["why"], highlight=False)


def raise_user_error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def demo(
    home: Annotated[
        Path | None,
        typer.Option(help="state directory (default: $FORGETFLOW_HOME/demo, wiped first)"),
    ] = None,
) -> None:
    """Train on digits, deliver a sample manifest, run the flow, print the summary."""
    base = Settings()
    home = home or base.home / "demo"
    if home.exists():
        console.print(f"demo: starting from a clean state directory {home}")
        shutil.rmtree(home)
    os.environ["FORGETFLOW_HOME"] = str(home)
    settings = _settings()
    with _user_errors(), _rich_progress():
        from flows.forget import forget_flow
        from flows.sample_manifest import write_sample_manifest
        from flows.train import train_flow

        console.print(
            "[bold]1/3[/] training digits-logreg: PNSGD on data-independent random Fourier features of digits"
        )
        trained = train_flow(dataset="digits-rff", recipe="pnsgd", name="digits-logreg", seed=0)
        out.print(
            f"trained digits-logreg v{trained['version']}: test accuracy {trained['test_accuracy']:.3f}"
        )
        manifest = write_sample_manifest(
            settings.inbox / "2026-11-22-deletions.parquet",
            model_name="digits-logreg",
            subjects=["subject-3", "subject-17", "subject-42", "subject-101"],
        )
        console.print(f"[bold]2/3[/] delivered {manifest.name} to the inbox")
        console.print("[bold]3/3[/] running the forgetting flow")
        report = forget_flow(model_name=None)
    print_report(report)
    out.print(
        f"state directory: {home}  (next: FORGETFLOW_HOME={home} .venv/bin/forgetflow audit subject-17)",
        highlight=False,
    )


def main() -> None:  # pragma: no cover
    sys.exit(app())
