"""What a person sees of a run: Prefect markdown, table and link artifacts (keys: lowercase +
dashes, stable across runs so the UI's Artifacts page shows each key's history)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

SUMMARY_KEY = "forgetting-summary"
QUARANTINE_KEY = "quarantined-rows"
FILES_KEY = "manifest-files"


def candidates_key(model_name: str) -> str:
    return f"candidate-paths-{_key(model_name)}"


def version_link_key(model_name: str) -> str:
    return f"mlflow-version-{_key(model_name)}"


def version_url(mlflow_ui: str, model_name: str, version: int) -> str:
    """The model version's page in the MLflow UI (its hash route)."""
    return f"{mlflow_ui.rstrip('/')}/#/models/{quote(model_name, safe='')}/versions/{version}"


def summary_markdown(report: dict[str, Any], *, mlflow_ui: str) -> str:
    lines = ["# forgetflow run", "", "## Requests", "", "| state | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["status"]["states"].items()]
    lines += [
        "",
        f"rows received in total: {report['status']['rows_received']}",
        "",
        "## Models",
        "",
    ]
    for m in report["models"]:
        if "grad_evals" not in m:  # nothing unlearned: a dry run, no requests, or none needed
            applied = f", applied by v{m['version']} (no new version)" if "version" in m else ""
            lines.append(
                f"- **{m['model_name']}**: {m.get('method', 'dry run')} "
                f"({m.get('requests', 0)} requests{applied})"
            )
            if "plan" in m:  # a dry run: what a real run would do
                lines.append(f"  - would choose {m['plan']['chosen']}: {m['plan']['why']}")
            if m.get("batch"):
                lines.append(f"  - batching: {m['batch']['reason']}")
            continue
        ratio = (
            m["grad_evals"] / m["retrain_grad_evals"]
            if m.get("retrain_grad_evals")
            else float("nan")
        )
        eps = (
            f"epsilon {m['epsilon']:.3g}, delta {m['delta']:.2g}"
            if m.get("epsilon") is not None
            else "no epsilon"
        )
        # test rows of subjects who withdrew their data are left out, and only counted
        withdrawn = int(m.get("test_rows_withdrawn", 0))
        on_rows = (
            f" on {int(m['test_set_size'])} test rows ({withdrawn} withdrawn)"
            if "test_set_size" in m
            else ""
        )
        lines.append(
            f"- **{m['model_name']} v{m['version']}**: {m['method']} ({m['guarantee']}, {eps}); "
            f"{m['requests']} requests / {m['samples']} samples; cost {ratio:.1%} of a retrain; "
            f"test accuracy {m['test_accuracy_before']:.3f} -> {m['test_accuracy_after']:.3f}"
            f"{on_rows}; MIA AUC {m['mia_auc_after']:.3f}. Why: {m['why']}"
        )
        if m.get("batch"):
            lines.append(f"  - why now: {m['batch']['why']}")
        url = version_url(mlflow_ui, m["model_name"], m["version"])
        lines.append(f"  - MLflow: [{m['model_name']} v{m['version']}]({url})")
        lines += [f"  - plot in MLflow: `{p}`" for p in m.get("plots", [])]
    return "\n".join(lines)


def publish_run_artifacts(report: dict[str, Any], *, mlflow_ui: str) -> None:
    """Attach the run's summary, tables and MLflow links to the current Prefect flow run."""
    create_markdown_artifact(
        key=SUMMARY_KEY,
        markdown=summary_markdown(report, mlflow_ui=mlflow_ui),
        description="requests per state, path chosen and why, cost, accuracy",
    )
    for m in report["models"]:
        if "plan" in m:
            create_table_artifact(
                key=candidates_key(m["model_name"]),
                table=m["plan"]["candidates"],
                description=f"unlearning paths considered for {m['model_name']}",
            )
        if "version" in m:
            create_link_artifact(
                key=version_link_key(m["model_name"]),
                link=version_url(mlflow_ui, m["model_name"], m["version"]),
                link_text=f"{m['model_name']} v{m['version']} in MLflow",
                description="the model version this run registered (certificate, plots)",
            )
    if report.get("quarantine"):
        create_table_artifact(
            key=QUARANTINE_KEY,
            table=report["quarantine"],
            description="rows quarantined in this run and why (request ids hashed)",
        )
    files = [
        {k: f.get(k) for k in ("file_name", "outcome", "rows", "reason")} for f in report["files"]
    ]
    if files:
        create_table_artifact(key=FILES_KEY, table=files, description="manifest files of this run")


def _key(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower())
