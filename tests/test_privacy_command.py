"""`forgetflow privacy` reports what models.accounting computes and rejects bad input with one
`error:` line and exit code 2."""

from __future__ import annotations

import json
import math

import pytest
import typer
from typer.testing import CliRunner

from flows.privacy_command import privacy
from models.accounting import (
    batch_z,
    langevin_epsilon,
    langevin_min_iterations,
    pnsgd_constants,
    pnsgd_epsilon,
    pnsgd_min_epochs,
)

app = typer.Typer()


@app.callback()
def _root() -> None:
    """A group, as in flows/cli.py, so the command is invoked as `privacy`."""


app.command("privacy")(privacy)
runner = CliRunner()

DIGITS = ["--n", "1437", "--batch-size", "8", "--sigma", "0.03", "--lam", str(0.003 / 1437)]
MNIST = ["--n", "11264", "--sigma", "0.03", "--lam", "1e-6", "--classes", "2"]


def run(*args: str):
    return runner.invoke(app, ["privacy", *args])


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_target_epsilon_gives_the_accountants_smallest_epochs():
    report = run_json(*DIGITS, "--removed", "14", "--epsilon", "1")
    k = pnsgd_constants(n=1437, batch_size=8, m=0.003 / 1437 * 1437, classes=10)
    z = batch_z(k, removed=14)
    epochs, eps = pnsgd_min_epochs(k, sigma=0.03, target_epsilon=1.0, delta=1 / 1437, z=z)
    assert {"epsilon", "epochs", "alpha", "z_b", "eta", "c", "bound"} <= report.keys()
    assert report["epochs"] == epochs == 9
    assert report["epsilon"] == pytest.approx(eps.epsilon, rel=1e-12)
    assert report["alpha"] == pytest.approx(eps.alpha, rel=1e-12)
    assert report["z_b"] == pytest.approx(k.z_b, rel=1e-12)
    assert report["eta"] == pytest.approx(k.eta, rel=1e-12)
    assert report["c"] == pytest.approx(k.c, rel=1e-12)
    assert report["bound"] == "tight"
    assert report["delta"] == pytest.approx(1 / 1437, rel=1e-12)
    assert report["grad_evals"] == 9 * 1437


@pytest.mark.parametrize("bound", ["loose", "tight", "non-convergent"])
def test_given_epochs_gives_the_accountants_epsilon(bound):
    report = run_json(
        *DIGITS, "--removed", "3", "--epochs", "4", "--bound", bound, "--train-epochs", "50",
        "--delta", "1e-4",
    )  # fmt: skip
    k = pnsgd_constants(n=1437, batch_size=8, m=0.003, classes=10)
    eps = pnsgd_epsilon(
        k,
        sigma=0.03,
        epochs=4,
        delta=1e-4,
        z=batch_z(k, removed=3),
        bound=bound,
        train_epochs=50,
    )
    assert report["epsilon"] == pytest.approx(eps.epsilon, rel=1e-9)
    assert report["epochs"] == 4
    assert report["bound"] == bound
    assert report["delta"] == 1e-4


def test_full_batch_uses_the_langevin_accountant():
    report = run_json(*MNIST, "--removed", "100", "--full-batch", "--epsilon", "1")
    eta = 1 / (0.25 + 1e-6 * 11264)
    iterations, eps = langevin_min_iterations(
        n=11264,
        m=1e-6 * 11264,
        sigma=0.03,
        removed=100,
        eta=eta,
        target_epsilon=1.0,
        delta=1 / 11264,
    )
    assert report["epochs"] == iterations > 0
    assert report["epsilon"] == pytest.approx(eps.epsilon, rel=1e-12)
    assert report["bound"] == "langevin"
    assert report["z_b"] is None
    assert report["eta"] == pytest.approx(eta, rel=1e-12)

    at_k = run_json(*MNIST, "--removed", "100", "--full-batch", "--epochs", "500")
    expected = langevin_epsilon(
        n=11264, m=1e-6 * 11264, sigma=0.03, removed=100, iterations=500, eta=eta, delta=1 / 11264
    )
    assert at_k["epsilon"] == pytest.approx(expected.epsilon, rel=1e-12)


def test_zero_epochs_reports_infinite_epsilon_as_null():
    report = run_json(*DIGITS, "--removed", "2", "--epochs", "0")
    assert report["epsilon"] is None and report["alpha"] is None


def test_table_output_shows_the_answer():
    result = run(*DIGITS, "--removed", "14", "--epsilon", "1")
    assert result.exit_code == 0, result.output
    assert "epochs" in result.stdout and " 9 " in result.stdout
    assert "z_b" in result.stdout


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ((*DIGITS, "--removed", "1"), "--epochs"),
        ((*DIGITS, "--removed", "1", "--epochs", "2", "--epsilon", "1"), "--epsilon"),
        (("--n", "100", "--sigma", "0.1", "--lam", "1e-4", "--removed", "1", "--epochs", "1"),
         "--batch-size"),
        ((*DIGITS[:6], "--lam", "0", "--removed", "1", "--epochs", "1"), "--lam"),
        ((*DIGITS[:4], "--sigma", "-1", *DIGITS[6:], "--removed", "1", "--epochs", "1"), "--sigma"),
        ((*DIGITS, "--removed", "2000", "--epochs", "1"), "--removed"),
        ((*DIGITS, "--removed", "-1", "--epochs", "1"), "--removed"),
        ((*DIGITS, "--removed", "1", "--epochs", "-1"), "--epochs"),
        ((*DIGITS, "--removed", "1", "--epsilon", "0"), "--epsilon"),
        ((*DIGITS, "--removed", "1", "--epochs", "1", "--delta", "1.5"), "--delta"),
        ((*DIGITS, "--removed", "1", "--epochs", "1", "--classes", "1"), "--classes"),
        ((*DIGITS, "--removed", "1", "--epochs", "1", "--bound", "weird"), "--bound"),
        ((*DIGITS, "--removed", "1", "--epochs", "1", "--bound", "non-convergent"),
         "--train-epochs"),
        (("--n", "0", "--batch-size", "1", "--sigma", "0.1", "--lam", "1e-3", "--removed", "0",
          "--epochs", "1"), "--n"),
        (("--n", "10", "--batch-size", "20", "--sigma", "0.1", "--lam", "1e-3", "--removed", "0",
          "--epochs", "1"), "--batch-size"),
        ((*MNIST, "--removed", "1", "--epochs", "1", "--full-batch", "--bound", "loose"),
         "--bound"),
        ((*MNIST, "--batch-size", "8", "--removed", "1", "--epochs", "1", "--full-batch"),
         "--batch-size"),
        ((*MNIST, "--removed", "1", "--epochs", "1", "--full-batch", "--sigma", "0"), "--sigma"),
        ((*DIGITS, "--removed", "1", "--epsilon", "1e-9", "--bound", "non-convergent",
          "--train-epochs", "1"), "--epsilon"),
    ],
)  # fmt: skip
def test_invalid_input_is_one_error_line_naming_the_option_and_exit_2(args, names):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert names in lines[0]
    assert "Traceback" not in result.output


def test_json_is_strict_json_even_for_infinite_values():
    result = run(*DIGITS, "--removed", "2", "--epochs", "0", "--json")
    json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert not any(
        isinstance(v, float) and not math.isfinite(v) for v in json.loads(result.stdout).values()
    )
