"""Run the manifest contract's Great Expectations suite and map failures to rows.

GX is imported inside the function: its import costs ~3 s and most commands never need it."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import pandas as pd

from data_contracts.manifest import EXPECTATION_REASONS, EXPECTATIONS, SUITE_NAME

ROW_KEY = "row_number"


def run_suite(df: pd.DataFrame) -> tuple[dict[int, list[str]], dict[str, Any]]:
    """Validate every row of `df` (which has a `row_number` column) against contract v1.

    Returns row_number -> reasons for failing rows, and a compact JSON-able summary of the run."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    batch_def = (
        ctx.data_sources.add_pandas("manifests")
        .add_dataframe_asset("manifest")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for spec in EXPECTATIONS:
        cls = getattr(gx.expectations, _class_name(spec["type"]))
        suite.add_expectation(cls(**spec["kwargs"]))
    suite = ctx.suites.add(suite)
    validation = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{SUITE_NAME}-run", data=batch_def, suite=suite)
    )
    result = validation.run(
        batch_parameters={"dataframe": df},
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [ROW_KEY],
            "return_unexpected_index_query": False,
        },
    )
    reasons: dict[int, list[str]] = defaultdict(list)
    summary = {"suite": SUITE_NAME, "success": bool(result.success), "expectations": []}
    for r in result.results:
        cfg = r.expectation_config
        column = cfg.kwargs.get("column")
        reason = EXPECTATION_REASONS.get((cfg.type, column), f"{cfg.type} failed on {column}")
        rows = [int(i[ROW_KEY]) for i in (r.result.get("unexpected_index_list") or [])]
        if not r.success and not rows and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX expectation {cfg.type} crashed: {r.exception_info}")
        for row in rows:
            reasons[row].append(reason)
        summary["expectations"].append(
            {
                "type": cfg.type,
                "column": column,
                "success": bool(r.success),
                "unexpected_count": len(rows),
            }
        )
    return dict(reasons), summary


def _class_name(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))
