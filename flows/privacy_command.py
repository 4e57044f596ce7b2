"""`forgetflow privacy`: the certified-unlearning calculator (algorithms.md sec. 1).

Given the training setup, print epsilon after K unlearning epochs, or the smallest K that meets a
target epsilon. The math lives in models/accounting.py; this module parses, validates and prints.
models.accounting pulls in torch (via models.logreg), so it is imported inside the command to keep
`forgetflow --help` instant.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer

# Constants of the authors' setup (algorithms.md sec. 1): gradient clip M and projection radius R.
CLIP = 1.0
RADIUS = 100.0

# ValueError messages from models.accounting start with the Python name of the parameter;
# the CLI reports the option the user typed instead.
_OPTION_FOR = {
    "n": "--n",
    "batch_size": "--batch-size",
    "sigma": "--sigma",
    "m": "--lam (m = lam * n)",
    "removed": "--removed",
    "epochs": "--epochs",
    "iterations": "--epochs",
    "target_epsilon": "--epsilon",
    "delta": "--delta",
    "classes": "--classes",
    "train_epochs": "--train-epochs",
    "bound": "--bound",
}


def _fail(message: str) -> typer.Exit:
    """Print one `error:` line on stderr; the caller raises the returned Exit (code 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _option_message(err: ValueError) -> str:
    name, _, rest = str(err).partition(" ")
    return f"{_OPTION_FOR[name]} {rest}" if name in _OPTION_FOR else str(err)


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no infinity: a non-finite number is reported as null."""
    return value if value is not None and math.isfinite(value) else None


def _compute(
    *,
    n: int,
    batch_size: int | None,
    sigma: float,
    m: float,
    removed: int,
    epochs: int | None,
    epsilon: float | None,
    delta: float,
    classes: int,
    full_batch: bool,
    bound: str,
    train_epochs: int | None,
) -> dict[str, Any]:
    """The calculator's answer as a flat dict; ValueError for invalid parameters."""
    from models import accounting
    from models.logreg import smoothness

    if classes < 2:
        raise ValueError(f"classes must be >= 2 (2 = binary), got {classes}")
    report: dict[str, Any] = {
        "n": n,
        "sigma": sigma,
        "m": m,
        "removed": removed,
        "delta": delta,
        "classes": classes,
        "target_epsilon": epsilon,
    }
    if full_batch:
        eta = 1.0 / smoothness(classes=classes, m=m)
        common = dict(n=n, m=m, sigma=sigma, removed=removed, eta=eta, delta=delta, clip=CLIP)
        if epochs is not None:
            result = accounting.langevin_epsilon(iterations=epochs, **common)
        else:
            assert epsilon is not None
            epochs, result = accounting.langevin_min_iterations(target_epsilon=epsilon, **common)
        report |= {
            "accountant": "langevin",
            "bound": "langevin",
            "batch_size": n,
            "eta": eta,
            "c": 1.0 - eta * m,
            "z_b": None,
            "z": None,
        }
    else:
        assert batch_size is not None
        k = accounting.pnsgd_constants(
            n=n, batch_size=batch_size, m=m, classes=classes, clip=CLIP, radius=RADIUS
        )
        z = accounting.batch_z(k, removed=removed)
        common = dict(sigma=sigma, delta=delta, z=z, bound=bound, train_epochs=train_epochs)
        if epochs is not None:
            result = accounting.pnsgd_epsilon(k, epochs=epochs, **common)
        else:
            assert epsilon is not None
            epochs, result = accounting.pnsgd_min_epochs(k, target_epsilon=epsilon, **common)
        report |= {
            "accountant": "pnsgd",
            "bound": bound,
            "batch_size": batch_size,
            "eta": k.eta,
            "c": k.c,
            "z_b": k.z_b,
            "z": z,
            "train_epochs": train_epochs,
        }
    report |= {
        "epochs": epochs,
        "epsilon": _finite_or_none(result.epsilon),
        "alpha": _finite_or_none(result.alpha),
        # Unlearning cost: every epoch touches all n (retained) points once.
        "grad_evals": epochs * n,
    }
    return report


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    accountant = "full-batch Langevin" if report["accountant"] == "langevin" else "mini-batch PNSGD"
    table = Table(title=f"Certified unlearning, {accountant} accountant")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in report.items():
        if value is None:
            continue
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    if report["epsilon"] is None:
        table.add_row("epsilon", "inf (no certificate)")
    Console().print(table)


def privacy(
    n: Annotated[int, typer.Option("--n", help="number of training points")],
    sigma: Annotated[float, typer.Option("--sigma", help="noise level of the noisy updates")],
    lam: Annotated[float, typer.Option("--lam", help="L2 weight lambda; m = lam * n")],
    removed: Annotated[int, typer.Option("--removed", help="points removed in this request")],
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="mini-batch size b (not with --full-batch)")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="unlearning epochs K: print epsilon")
    ] = None,
    epsilon: Annotated[
        float | None, typer.Option("--epsilon", help="target epsilon: print the smallest K")
    ] = None,
    delta: Annotated[float | None, typer.Option("--delta", help="default 1/n")] = None,
    classes: Annotated[int, typer.Option("--classes", help="2 = binary")] = 10,
    full_batch: Annotated[
        bool, typer.Option("--full-batch", help="Langevin accountant; K counts iterations")
    ] = False,
    bound: Annotated[
        str | None,
        typer.Option("--bound", help="mini-batch bound: loose | tight (default) | non-convergent"),
    ] = None,
    train_epochs: Annotated[
        int | None, typer.Option("--train-epochs", help="T, for --bound non-convergent")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Epsilon after K unlearning epochs, or the smallest K meeting a target epsilon.

    Chien et al., arXiv 2403.17105 (mini-batch PNSGD) and arXiv 2401.10371 (full-batch Langevin),
    with M = 1, R = 100, eta = 1/L. In --json output a null epsilon or alpha means infinite."""
    if (epochs is None) == (epsilon is None):
        raise _fail("give exactly one of --epochs (print epsilon) or --epsilon (print epochs)")
    if n < 1:
        raise _fail(f"--n must be >= 1, got {n}")
    if not (math.isfinite(lam) and lam > 0):
        raise _fail(f"--lam must be a finite number > 0, got {lam}")
    if full_batch:
        if batch_size is not None and batch_size != n:
            raise _fail(
                f"--batch-size must be omitted or equal --n with --full-batch, got {batch_size}"
            )
        if bound is not None or train_epochs is not None:
            raise _fail(
                "--bound and --train-epochs apply to the mini-batch accountant, not --full-batch"
            )
    elif batch_size is None:
        raise _fail("--batch-size is required (or pass --full-batch)")
    try:
        report = _compute(
            n=n,
            batch_size=batch_size,
            sigma=sigma,
            m=lam * n,
            removed=removed,
            epochs=epochs,
            epsilon=epsilon,
            delta=1.0 / n if delta is None else delta,
            classes=classes,
            full_batch=full_batch,
            bound="tight" if bound is None else bound,
            train_epochs=train_epochs,
        )
    except ValueError as err:
        raise _fail(_option_message(err)) from None
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        _print_table(report)
