"""What a person sees of a run: Prefect markdown and table artifacts (keys: lowercase + dashes)."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact


def summary_markdown(report: dict[str, Any]) -> str:
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
        if "version" not in m:
            lines.append(
                f"- **{m['model_name']}**: {m.get('method', 'dry run')} ({m.get('requests', 0)} requests)"
            )
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
        lines.append(
            f"- **{m['model_name']} v{m['version']}**: {m['method']} ({m['guarantee']}, {eps}); "
            f"{m['requests']} requests / {m['samples']} samples; cost {ratio:.1%} of a retrain; "
            f"test accuracy {m['test_accuracy_before']:.3f} -> {m['test_accuracy_after']:.3f}; "
            f"MIA AUC {m['mia_auc_after']:.3f}. Why: {m['why']}"
        )
        lines += [f"  - plot in MLflow: `{p}`" for p in m.get("plots", [])]
    return "\n".join(lines)


def publish_run_artifacts(report: dict[str, Any]) -> None:
    create_markdown_artifact(
        key="forgetting-summary",
        markdown=summary_markdown(report),
        description="requests per state, path chosen and why, cost, accuracy",
    )
    for m in report["models"]:
        if "plan" in m:
            create_table_artifact(
                key=f"candidate-paths-{_key(m['model_name'])}",
                table=m["plan"]["candidates"],
                description=f"unlearning paths considered for {m['model_name']}",
            )
    if report.get("quarantine"):
        create_table_artifact(
            key="quarantined-rows",
            table=report["quarantine"],
            description="rows quarantined in this run and why (request ids hashed)",
        )
    files = [
        {k: f.get(k) for k in ("file_name", "outcome", "rows", "reason")} for f in report["files"]
    ]
    if files:
        create_table_artifact(
            key="manifest-files", table=files, description="manifest files of this run"
        )


def _key(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower())
