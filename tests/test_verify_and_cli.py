"""`forgetflow verify` detects tampering; `status`, `audit` and `explain` answer from real stores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data_contracts.settings import Settings
from flows.sample_manifest import write_sample_manifest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def forgotten(home: Path) -> Settings:
    """digits-logreg v1 trained, then v2 after forgetting two subjects (plus two invalid rows)."""
    from flows.forget import forget_flow
    from flows.train import train_flow

    train_flow(dataset="digits", recipe="pnsgd", name="digits-logreg", seed=0)
    settings = Settings()
    write_sample_manifest(
        settings.inbox / "day1.parquet",
        model_name="digits-logreg",
        subjects=["subject-3", "subject-17"],
    )
    forget_flow(seed=0, model_name="digits-logreg")
    return settings


def _artifact(settings: Settings, version: int, name: str) -> Path:
    from tasks import registry

    c = registry.client(settings)
    mv = c.get_model_version("digits-logreg", str(version))
    source = mv.source.removeprefix("file://")
    return Path(source) / name


def test_verify_passes_then_names_each_kind_of_tampering(forgotten: Settings) -> None:
    from tasks.verification import verify_model

    count, problems = verify_model(forgotten, "digits-logreg")
    assert count == 2 and problems == []

    state = _artifact(forgotten, 2, "state.npz")
    original = state.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    state.write_bytes(bytes(damaged))
    _, problems = verify_model(forgotten, "digits-logreg")
    assert problems and problems[0].version == 2 and problems[0].link == "weights"
    state.write_bytes(original)

    cert_path = _artifact(forgotten, 2, "certificate.json")
    cert_text = cert_path.read_text()
    edited = json.loads(cert_text)
    edited["metrics"]["test_accuracy_after"] += 0.05  # a flattering edit of the audit record
    cert_path.write_text(json.dumps(edited, sort_keys=True, separators=(",", ":")))
    _, problems = verify_model(forgotten, "digits-logreg")
    assert problems[0].version == 2 and problems[0].link == "certificate"
    cert_path.write_text(cert_text)

    # Reordering: v1's certificate swapped into v2's place (and vice versa) breaks the chain.
    v1 = _artifact(forgotten, 1, "certificate.json")
    saved = v1.read_text()
    shutil.copyfile(cert_path, v1)
    cert_path.write_text(saved)
    _, problems = verify_model(forgotten, "digits-logreg")
    assert {p.link for p in problems} >= {"version", "chain"}
    assert problems[0].version == 1
    cert_path.write_text(cert_text)
    v1.write_text(saved)
    assert verify_model(forgotten, "digits-logreg")[1] == []


def test_cli_status_audit_explain_and_verify(forgotten: Settings) -> None:
    from flows.cli import app

    runner = CliRunner()
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["rows_received"] == 4 == sum(status["states"].values())
    assert status["states"]["applied"] == 2 and status["states"]["quarantined"] == 2
    (f,) = status["files"]
    assert f["rows"] == 4 and f["outcome"] == "ingested" and len(f["digest"]) == 64

    audit = json.loads(runner.invoke(app, ["audit", "subject-17", "--json"]).stdout)
    assert audit["subject_id"] == "subject-17"
    (req,) = audit["requests"]
    assert (
        req["state"] == "applied" and req["model_version"] == 2 and req["guarantee"] == "certified"
    )
    assert set(req) >= {
        "request_id",
        "state",
        "reason",
        "model_name",
        "model_version",
        "guarantee",
        "certificate_sha256",
    }
    # v1 still holds subject-17's samples (kept in the registry); the serving v2 does not.
    assert [(v["version"], v["serving"]) for v in audit["versions_with_influence"]] == [(1, False)]
    untouched = json.loads(runner.invoke(app, ["audit", "subject-5", "--json"]).stdout)
    assert untouched["requests"] == [] and (2, True) in [
        (v["version"], v["serving"]) for v in untouched["versions_with_influence"]
    ]
    assert json.loads(runner.invoke(app, ["audit", "nobody", "--json"]).stdout)["requests"] == []

    from tasks import registry

    c = registry.client(forgotten)
    (req_hash,) = registry.load_version(
        forgotten, "digits-logreg", 2
    ).certificate.request_id_hashes[:1]
    found = c.search_model_versions(
        f"name = 'digits-logreg' and tags.`request.{req_hash[:16]}` = 'forgotten'"
    )
    assert [int(v.version) for v in found] == [2]

    # Wide enough that Rich does not wrap cells across lines.
    explained = runner.invoke(app, ["explain", "digits-logreg:2"], env={"COLUMNS": "250"})
    assert (
        explained.exit_code == 0 and "retrain" in explained.stdout and "pnsgd" in explained.stdout
    )
    # Each predicted-seconds figure names its calibration (micro-run or the path's own runs).
    assert "micro-run" in explained.stdout
    missing = runner.invoke(app, ["explain", "no-such-run"])
    assert missing.exit_code == 2

    assert runner.invoke(app, ["verify"]).exit_code == 0


def test_cli_policy_set_show_and_reject(forgotten: Settings) -> None:
    from flows.cli import app

    runner = CliRunner()
    shown = json.loads(runner.invoke(app, ["policy", "digits-logreg", "--json"]).stdout)
    assert shown["guarantee"] == "certified" and shown["epsilon"] == 1.0
    changed = runner.invoke(
        app, ["policy", "digits-logreg", "--guarantee", "exact", "--epsilon", "0.5", "--json"]
    )
    assert json.loads(changed.stdout)["guarantee"] == "exact"
    again = json.loads(runner.invoke(app, ["policy", "digits-logreg", "--json"]).stdout)
    assert again["guarantee"] == "exact" and again["epsilon"] == 0.5
    bad = runner.invoke(app, ["policy", "digits-logreg", "--epsilon", "-1"])
    assert bad.exit_code == 2 and "epsilon" in bad.output
    assert runner.invoke(app, ["policy", "nope"]).exit_code == 2
