"""Two forgetting runs for the same model never proceed together: the second refuses at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from data_contracts.errors import ForgetflowError
from data_contracts.settings import Settings
from flows.forget import model_lock


def test_second_run_for_the_same_model_refuses_and_other_models_proceed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with model_lock(settings, "digits-logreg"):
        # Another process, as a second `forgetflow run` would be.
        code = textwrap.dedent(f"""
            from data_contracts.settings import Settings
            from data_contracts.errors import ForgetflowError
            from flows.forget import model_lock
            s = Settings(home={str(tmp_path)!r})
            try:
                with model_lock(s, "digits-logreg"):
                    print("proceeded")
            except ForgetflowError as err:
                print("refused:", err)
            with model_lock(s, "digits-sisa"):
                print("other model proceeded")
        """)
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).parents[1],
            check=True,
        ).stdout
        assert "refused: model 'digits-logreg': another forgetting run holds its lock" in out
        assert "proceeded\n" not in out.replace("other model proceeded", "")
        assert "other model proceeded" in out
    with model_lock(settings, "digits-logreg"):  # released: the next run proceeds
        pass
    # Within one process too: a fresh lock object on a held lock refuses.
    with (
        model_lock(settings, "digits-logreg"),
        pytest.raises(ForgetflowError),
        model_lock(settings, "digits-logreg"),
    ):
        pass
