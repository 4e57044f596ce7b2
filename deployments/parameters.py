"""Typed parameters of the forgetting deployments: the Prefect UI renders them as a form, and the
API rejects a run whose parameters do not validate (the deployments enforce the schema)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from data_contracts.policy import Policy

# Registered-model names as the CLI creates them: letters, digits, dot, dash, underscore.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class ForgetRunParameters(BaseModel):
    """One forgetting run: which model, extra manifests, policy overrides, and dry run.

    Each model's stored policy applies, with the policy fields set here replacing its own for this
    run (data_contracts.policy.Policy.overridden_by)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str | None = Field(
        None,
        pattern=MODEL_NAME_PATTERN,
        description="only this registered model; empty: every model with pending requests",
    )
    inbox: str | None = Field(
        None,
        description=(
            "folder inside FORGETFLOW_HOME (relative, e.g. 'drops/2026-11-22') whose manifest files "
            "are delivered to the inbox before the run; empty: the inbox as it is"
        ),
    )
    guarantee: Literal["exact", "certified", "audited"] | None = Field(
        None, description="weakest guarantee a new version may carry (default: certified)"
    )
    epsilon: float | None = Field(
        None, gt=0, description="target epsilon for certified paths (default: 1.0)"
    )
    delta: float | None = Field(
        None, gt=0, lt=1, description="target delta (default: 1/n of the retained data)"
    )
    max_accuracy_drop: float | None = Field(
        None, ge=0, le=1, description="max test-accuracy drop vs the parent (default: 0.03)"
    )
    min_batch: int | None = Field(
        None, ge=1, description="hold pending requests until this many are pending (default: 1)"
    )
    max_hold_days: float | None = Field(
        None, gt=0, description="hold no request longer than this after receipt (default: 7)"
    )
    deadline_margin_days: float | None = Field(
        None, ge=0, description="run when a request is due within this many days (default: 3)"
    )
    run_now: bool = Field(
        False, description="run even where the policy would hold a small batch (manual run)"
    )
    dry_run: bool = Field(False, description="plan only: requests stay pending, no new version")

    @field_validator("model_name", "inbox", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        """The UI sends an empty string for a cleared text field: treat it as unset."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("inbox")
    @classmethod
    def _inside_home(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or "\\" in value:
            raise ValueError(
                f"inbox must be a relative folder inside FORGETFLOW_HOME without '..', got {value!r}"
            )
        return str(path)

    def policy(self) -> Policy | None:
        """None without overrides: each model's own policy (`forgetflow policy`) applies, as in
        `forgetflow run`. Otherwise a Policy whose explicitly set fields are the overrides; the
        flow lays them over each model's stored policy for this run only."""
        overrides = {
            name: getattr(self, name)
            for name in (
                "guarantee",
                "epsilon",
                "delta",
                "max_accuracy_drop",
                "min_batch",
                "max_hold_days",
                "deadline_margin_days",
            )
            if getattr(self, name) is not None
        }
        return Policy(**overrides) if overrides else None
