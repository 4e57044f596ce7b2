"""Progress bars: the CLI's Rich sink (training and unlearning loops report through
tasks.progress), silence without it, and benchmarks.run_all following real benchmark processes.

The CLI tests give flows.cli a Rich console on a forced terminal, writing into a buffer, and read
the bars as a person would see them (ANSI codes stripped). Every training recipe and every
unlearning path reports through a plain callback (models/progress.py); the recipe tests check each
one reaches its total and leaves the model bit for bit what it is without a callback."""

from __future__ import annotations

import io
import os
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import flows.cli
from benchmarks.run_all import Benchmark, new_progress, run_all
from tasks.progress import reporter

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BAR = "━"


def _terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=120), buffer


def _counts(rendered: str, label: str) -> list[tuple[int, int]]:
    """Every `done/total` the bar labelled `label` showed, in order."""
    text = ANSI.sub("", rendered)
    return [(int(d), int(t)) for d, t in re.findall(rf"{re.escape(label)} .*?(\d+)/(\d+)", text)]


def test_the_cli_sink_draws_each_label_to_its_total_and_nothing_outside_it(
    monkeypatch: pytest.MonkeyPatch,
):
    console, buffer = _terminal()
    monkeypatch.setattr(flows.cli, "console", console)
    assert reporter("before") is None  # no sink: loops get no callback and print nothing
    with flows.cli._rich_progress():
        for label, total in (("training pnsgd", 50), ("unlearning: pnsgd", 3)):
            update = reporter(label)
            assert update is not None
            for done in range(1, total + 1):
                update(done, total)
    assert reporter("after") is None
    assert _counts(buffer.getvalue(), "training pnsgd")[-1] == (50, 50)
    assert _counts(buffer.getvalue(), "unlearning: pnsgd")[-1] == (3, 3)


def test_the_training_task_drives_the_cli_bar_to_its_total(monkeypatch: pytest.MonkeyPatch):
    from models.datasets import load_dataset
    from tasks.training import train

    console, buffer = _terminal()
    monkeypatch.setattr(flows.cli, "console", console)
    with flows.cli._rich_progress():  # what `forgetflow train` wraps around train_flow
        run = train.fn(load_dataset("breast_cancer"), recipe="pnsgd", seed=0)
    counts = _counts(buffer.getvalue(), "training pnsgd")
    assert counts, ANSI.sub("", buffer.getvalue())[-2000:]
    assert (
        counts[-1] == (run.model.recipe["epochs"], run.model.recipe["epochs"])
        and run.model.recipe["epochs"] > 1
    )


def test_the_cli_bar_follows_a_sisa_training_per_shard_and_slice(monkeypatch: pytest.MonkeyPatch):
    from models.datasets import load_dataset
    from models.training import train_model

    console, buffer = _terminal()
    monkeypatch.setattr(flows.cli, "console", console)
    with flows.cli._rich_progress():  # tasks.training.train passes this same reporter (above)
        ds = load_dataset("breast_cancer")
        run = train_model(ds, recipe_name="sisa", seed=0, progress=reporter("training sisa"))
    pairs = run.model.recipe["shards"] * run.model.recipe["slices"]
    assert _counts(buffer.getvalue(), "training sisa")[-1] == (pairs, pairs) and pairs > 1


def test_off_a_terminal_the_cli_sink_prints_nothing(monkeypatch: pytest.MonkeyPatch):
    buffer = io.StringIO()
    monkeypatch.setattr(flows.cli, "console", Console(file=buffer))  # a pipe or a log file
    with flows.cli._rich_progress():
        update = reporter("training pnsgd")
        for done in range(1, 11):
            update(done, 10)
    assert buffer.getvalue() == ""


@pytest.mark.usefixtures("prefect_harness", "home")
def test_training_without_the_sink_prints_no_progress(capfd: pytest.CaptureFixture[str]):
    from flows.train import train_flow

    summary = train_flow(
        dataset="digits", recipe="pnsgd", name="quiet", seed=0, overrides={"epochs": 5}
    )
    assert summary["version"] == 1
    captured = capfd.readouterr()
    for text in (captured.out, captured.err):
        assert BAR not in text and "training pnsgd" not in text and "5/5" not in text


class Calls(list):
    """A progress callback recording every (done, total) it is given."""

    def __call__(self, done: int, total: int) -> None:
        self.append((done, total))

    def check_reaches(self, total: int) -> None:
        """One total throughout, `done` never going back, ending at the total."""
        assert self, "the loop never reported progress"
        assert {t for _, t in self} == {total}, self
        done = [d for d, _ in self]
        assert done == sorted(done) and done[-1] == total, self


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a
    )


@pytest.fixture(scope="module")
def small_dataset():
    from models.datasets import load_dataset

    return load_dataset("breast_cancer")


# Small settings per recipe and the total its progress must reach: epochs, (shard, slice) pairs,
# PCMU steps (T, reached even when a fixed point stops it early), shards.
TRAINING = {
    "pnsgd": ({"epochs": 3}, lambda o: o["epochs"]),
    "sisa": ({"shards": 3, "slices": 2, "epochs_per_slice": 2}, lambda o: 6),
    "pcmu": ({"steps": 40}, lambda o: o["steps"]),
    "pcmu-sisa": ({"shards": 4, "steps": 30}, lambda o: o["shards"]),
    "mlp": ({"epochs": 3, "hidden": 8}, lambda o: o["epochs"]),
}


def test_every_training_recipe_has_a_progress_case():
    from models.training import FITS

    assert set(TRAINING) == set(FITS)


@pytest.mark.parametrize("recipe", sorted(TRAINING))
def test_each_training_recipe_drives_its_progress_to_the_total_bit_for_bit(
    recipe: str, small_dataset
):
    from models.training import train_model

    overrides, total = TRAINING[recipe]
    calls = Calls()
    watched = train_model(
        small_dataset, recipe_name=recipe, seed=0, overrides=overrides, progress=calls
    )
    calls.check_reaches(total(overrides))
    assert len(calls) > 2  # reported along the way, not only at the end
    quiet = train_model(small_dataset, recipe_name=recipe, seed=0, overrides=overrides)
    assert _same_arrays(watched.model.arrays, quiet.model.arrays)
    assert watched.cost.grad_evals == quiet.cost.grad_evals


# Unlearning path, recipe it needs, training overrides, forget rows (positions in the training
# split), and the total its progress must reach given the result.
UNLEARNING = {
    # Restarted (shard, slice) pairs: for each affected shard, R minus its first retrained slice.
    "sisa": (
        "sisa",
        {"shards": 3, "slices": 3, "epochs_per_slice": 2},
        np.arange(0, 60, 7),
        lambda u: sum(3 - r for r in u.parameters["restarted_from_slice"].values()),
    ),
    # 40 rows, over PCMU's budget: a real check (and replay), followed to step T.
    "pcmu": ("pcmu", {"steps": 40}, np.arange(40), lambda u: 40),
    "pcmu-sisa": (
        "pcmu-sisa",
        {"shards": 4, "steps": 30},
        np.arange(0, 40, 5),
        lambda u: len(u.parameters["affected_shards"]),
    ),
    "rum": ("mlp", {"epochs": 3, "hidden": 8}, np.arange(30), lambda u: 3),
    "retrain": (
        "sisa",
        {"shards": 2, "slices": 2, "epochs_per_slice": 2},
        np.arange(10),
        lambda u: 4,
    ),
    # 20 training epochs: the fewest for which the accountant reaches epsilon = 1 on this data.
    "pnsgd": ("pnsgd", {"epochs": 20}, np.arange(5), lambda u: u.parameters["epochs"]),
}


def test_every_unlearning_path_has_a_progress_case():
    from models.unlearning import PATH_RECIPES

    assert set(UNLEARNING) == set(PATH_RECIPES)


@pytest.mark.parametrize("path", sorted(UNLEARNING))
def test_each_unlearning_path_drives_its_progress_to_the_total_bit_for_bit(
    path: str, small_dataset
):
    from data_contracts.policy import Policy
    from models.planner import ModelLedger, Plan, enumerate_candidates
    from models.training import train_model
    from models.unlearning import execute

    recipe, overrides, forget, total = UNLEARNING[path]
    run = train_model(small_dataset, recipe_name=recipe, seed=0, overrides=overrides)
    rows = small_dataset.train_rows()
    x, y = small_dataset.features[rows], small_dataset.labels[rows]
    proxies = run.events.proxies()["confidence"]
    ledger = ModelLedger(lineage=run.model.lineage)
    policy = Policy(guarantee="audited" if path == "rum" else "certified")
    candidates = enumerate_candidates(
        run.model, forget, policy=policy, ledger=ledger, data=(x, y), proxies=proxies
    )
    chosen = next(c for c in candidates if c.path == path)  # the path under test, even if dearer
    plan = Plan(chosen=chosen, candidates=candidates, why="progress test")

    def unlearn(progress: Calls | None):
        return execute(
            plan, run.model, x, y, forget, ledger=ledger, seed=1, progress=progress, proxies=proxies
        )

    calls = Calls()
    watched = unlearn(calls)
    calls.check_reaches(total(watched))
    assert len(calls) > 2 and watched.method != "pcmu-budget"  # real work was followed
    quiet = unlearn(None)
    assert _same_arrays(watched.model.arrays, quiet.model.arrays)
    assert watched.method == quiet.method and watched.cost.grad_evals == quiet.cost.grad_evals


FAKE_BENCHMARK = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from benchmarks._progress import track

    for shard in track(range(3), description="outer loop"):
        for step in track(range(4), description=f"inner loop {shard}"):
            pass
    mode = os.environ["FAKE_MODE"]
    if mode == "fail":
        sys.exit(3)
    if mode == "ok":
        Path(os.environ["FAKE_RESULTS"]).write_text("# results")
    print("benchmark output goes to the log")
    """
)


def test_run_all_runs_each_benchmark_and_follows_its_loops(tmp_path: Path):
    (tmp_path / "fake_bench.py").write_text(FAKE_BENCHMARK)
    results = tmp_path / "fake_bench.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    progress = new_progress(Console(file=io.StringIO()))
    benches = [Benchmark(name=n, module="fake_bench", results=results) for n in ("a", "b", "c")]
    outcomes = []
    with progress:
        for bench, mode in zip(benches, ("ok", "fail", "silent"), strict=True):
            outcomes += run_all(
                [bench],
                progress=progress,
                log_dir=tmp_path / "logs",
                env={**env, "FAKE_MODE": mode, "FAKE_RESULTS": str(results)},
            )
    ok, failed, silent = outcomes
    assert (ok.ok, ok.returncode, ok.results_written) == (True, 0, True)
    assert (failed.ok, failed.returncode) == (False, 3)
    assert (silent.ok, silent.returncode, silent.results_written) == (False, 0, False)
    assert "benchmark output goes to the log" in ok.log.read_text()
    bars = {t.description: (t.completed, t.total) for t in progress.tasks}
    assert bars["benchmarks"] == (1, 1)
    assert bars["  outer loop"] == (3, 3)
    assert bars["  inner loop 2"] == (4, 4)
    assert sum(d == "  outer loop" for d in (t.description for t in progress.tasks)) == 3


def test_run_all_lists_every_benchmark_module_and_refuses_unknown_names(
    capsys: pytest.CaptureFixture[str],
):
    from benchmarks.run_all import discover, main

    names = {b.name for b in discover()}
    on_disk = {p.stem for p in (Path(__file__).parents[1] / "benchmarks").glob("[a-z]*.py")}
    assert names == on_disk - {"run_all"} and "sisa_speedup" in names
    assert main(["--list", "--only", "sisa_speedup"]) == 0
    assert capsys.readouterr().out.startswith("sisa_speedup ")
    assert main(["--only", "sisa_speedup,nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown benchmark(s) nope; known: ")
