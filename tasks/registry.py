"""MLflow registry: model versions with their state, certificate and plots; the serving alias.

Only salted hashes go into MLflow (tags, params, artifacts); raw subject ids never leave DuckDB."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_contracts.certificate import Certificate
from data_contracts.settings import Settings
from models.weights import dump_state, load_state

EXPERIMENT = "forgetflow"
CHAMPION = "champion"
STATE_FILE = "state.npz"
CARD_FILE = "model.json"
CERTIFICATE_FILE = "certificate.json"


def client(
    settings: Settings,
):  # -> mlflow.MlflowClient (import deferred: mlflow is slow to import)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(settings.mlflow_uri)
    c = MlflowClient(settings.mlflow_uri)
    if c.get_experiment_by_name(EXPERIMENT) is None:
        c.create_experiment(EXPERIMENT, artifact_location=settings.artifact_root)
    return c


@dataclass
class StoredVersion:
    version: int
    arrays: dict[str, Any]
    card: dict[str, Any]
    certificate: Certificate
    certificate_sha256_tag: str | None
    run_id: str


def next_version(settings: Settings, model_name: str) -> int:
    c = client(settings)
    versions = c.search_model_versions(f"name = '{model_name}'")
    return 1 + max((int(v.version) for v in versions), default=0)


def register_version(
    settings: Settings,
    *,
    model_name: str,
    arrays: dict[str, Any],
    card: dict[str, Any],
    certificate: Certificate,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    plots: dict[str, Path] | None = None,
) -> int:
    """Log one MLflow run holding the model state + certificate and register it as a version.

    The version number is written into the certificate beforehand, so it must come out equal:
    a mismatch (another writer) raises rather than registering a lying certificate."""
    import mlflow

    c = client(settings)
    experiment = c.get_experiment_by_name(EXPERIMENT)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        (model_dir / STATE_FILE).write_bytes(dump_state(arrays))
        (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True))
        (model_dir / CERTIFICATE_FILE).write_text(certificate.canonical_json())
        with mlflow.start_run(
            experiment_id=experiment.experiment_id,
            run_name=f"{model_name}-v{certificate.model_version}",
        ) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics(
                {k: float(v) for k, v in metrics.items() if v is not None and v == v}
            )
            mlflow.set_tags(tags)
            mlflow.log_artifacts(str(model_dir), artifact_path="model")
            mlflow.log_artifact(str(model_dir / CERTIFICATE_FILE))
            for plot in (plots or {}).values():
                mlflow.log_artifact(str(plot), artifact_path="plots")
            source = f"{run.info.artifact_uri}/model"
            run_id = run.info.run_id
    try:
        c.get_registered_model(model_name)
    except Exception:
        c.create_registered_model(model_name, tags={"forgetflow": "true"})
    version_tags = {
        **tags,
        "certificate_sha256": certificate.sha256(),
        "guarantee": certificate.guarantee,
        "method": certificate.method,
    }
    mv = c.create_model_version(model_name, source=source, run_id=run_id, tags=version_tags)
    if int(mv.version) != certificate.model_version:
        raise RuntimeError(
            f"registry assigned version {mv.version} but the certificate says {certificate.model_version}: "
            "another process is writing to this registry"
        )
    return int(mv.version)


def set_champion(settings: Settings, model_name: str, version: int) -> None:
    client(settings).set_registered_model_alias(model_name, CHAMPION, str(version))


def champion_version(settings: Settings, model_name: str) -> int | None:
    try:
        aliases = client(settings).get_registered_model(model_name).aliases
    except Exception:
        return None
    return int(aliases[CHAMPION]) if CHAMPION in aliases else None


def load_version(settings: Settings, model_name: str, version: int) -> StoredVersion:
    """Download a version's state, card and certificate from its registered source."""
    c = client(settings)
    mv = c.get_model_version(model_name, str(version))
    local = Path(c.download_artifacts(mv.run_id, "model"))
    return StoredVersion(
        version=int(mv.version),
        arrays=load_state((local / STATE_FILE).read_bytes()),
        card=json.loads((local / CARD_FILE).read_text()),
        certificate=Certificate.model_validate_json((local / CERTIFICATE_FILE).read_text()),
        certificate_sha256_tag=mv.tags.get("certificate_sha256"),
        run_id=mv.run_id,
    )


def load_certificate(settings: Settings, model_name: str, version: int) -> Certificate:
    """Only the version's certificate (readable even when its state file is damaged)."""
    c = client(settings)
    mv = c.get_model_version(model_name, str(version))
    path = Path(c.download_artifacts(mv.run_id, f"model/{CERTIFICATE_FILE}"))
    return Certificate.model_validate_json(path.read_text())


def version_for_run(settings: Settings, model_name: str, flow_run_id: str) -> int | None:
    """The version a (possibly crashed) forgetting run registered, found by its run-id tag."""
    c = client(settings)
    found = c.search_model_versions(
        f"name = '{model_name}' and tags.forgetflow_run_id = '{flow_run_id}'"
    )
    return int(found[0].version) if found else None
