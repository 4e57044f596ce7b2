"""Per-model forgetting policy: which guarantee a new version must carry and what it may cost."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Guarantee = Literal["exact", "certified", "audited", "none"]
# Strength order: a path whose guarantee is at least the required one meets the policy.
GUARANTEE_RANK: dict[str, int] = {"none": 0, "audited": 1, "certified": 2, "exact": 3}


class Policy(BaseModel):
    """What a forgetting run must achieve for one model (validated; shown as a form in the UI)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    guarantee: Literal["exact", "certified", "audited"] = "certified"
    epsilon: float = Field(1.0, gt=0, description="target epsilon for certified paths")
    delta: float | None = Field(None, gt=0, lt=1, description="target delta; None means 1/n")
    max_accuracy_drop: float = Field(
        0.03, ge=0, le=1, description="max test-accuracy drop vs the parent"
    )
    max_mia_auc: float = Field(0.75, gt=0.5, le=1, description="audited paths: max loss-MIA AUC")
    # Batching (models/batching.py): the defaults run every pending request at once, as before.
    min_batch: int = Field(
        1, ge=1, description="hold pending requests until at least this many are pending"
    )
    max_hold_days: float = Field(
        7.0, gt=0, description="never hold a request longer than this after it was received"
    )
    deadline_margin_days: float = Field(
        3.0, ge=0, description="a request due within this many days (or overdue) forces the run"
    )

    def meets(self, guarantee: Guarantee) -> bool:
        return GUARANTEE_RANK[guarantee] >= GUARANTEE_RANK[self.guarantee]

    def overridden_by(self, overrides: Policy | None) -> Policy:
        """This policy with the fields `overrides` was given explicitly (a run's flags or form
        fields), validated together; the rest, e.g. a stored min_batch, stay as they are."""
        if overrides is None:
            return self
        given = overrides.model_dump(include=overrides.model_fields_set)
        return Policy.model_validate({**self.model_dump(), **given})
