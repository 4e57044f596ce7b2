"""Run a `forgetflow ... --json` command in-process and parse its standard output."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner


def cli_json(args: list[str]) -> Any:
    """The parsed JSON a CLI command printed; on a failure or unparsable output the assertion
    shows the exit code, both streams and any exception, so a rare failure explains itself."""
    from flows.cli import app

    result = CliRunner().invoke(app, args)
    detail = (
        f"`forgetflow {' '.join(args)}` exited {result.exit_code}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nexception: {result.exception!r}"
    )
    assert result.exit_code == 0, detail
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as err:
        raise AssertionError(f"not JSON ({err}): {detail}") from None
