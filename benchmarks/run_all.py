"""Run every benchmark in benchmarks/ in sequence, each writing benchmarks/results/<name>.md.

Each benchmark runs as `python -m benchmarks.<name>` in its own process (its own memory, argv,
torch threads and worker pools), with its output in benchmarks/out/logs/<name>.log. One Rich bar
counts the benchmarks; under it, the running benchmark's elapsed time and the loops it reports
through benchmarks._progress.track. A failed benchmark does not stop the others; the command
exits 1 naming each failure and its log.

    .venv/bin/python -m benchmarks.run_all            # everything (`make bench`), see below
    .venv/bin/python -m benchmarks.run_all --list     # names, what each measures, results files
    .venv/bin/python -m benchmarks.run_all --only sisa_speedup,accountant_reference

The run times the results files record add up to about 15 minutes on 2 cores, plus ingest_10m
(10M rows, several variants, 3 repeats of two of them): expect half an hour or more.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from benchmarks._progress import PROGRESS_FD_ENV

PACKAGE_DIR = Path(__file__).parent
REPO_ROOT = PACKAGE_DIR.parent
RESULTS_DIR = PACKAGE_DIR / "results"
LOG_DIR = PACKAGE_DIR / "out" / "logs"  # git-ignored
NOT_BENCHMARKS = {"run_all"}


@dataclass(frozen=True)
class Benchmark:
    """A module run with `python -m module`, expected to (re)write `results`."""

    name: str
    module: str
    results: Path
    summary: str = ""


@dataclass(frozen=True)
class Outcome:
    name: str
    returncode: int
    seconds: float
    log: Path
    results_written: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.results_written


def _first_docstring_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return doc.splitlines()[0] if doc else ""


def discover(package_dir: Path = PACKAGE_DIR) -> list[Benchmark]:
    """Every public module of benchmarks/ except this one, in name order."""
    return [
        Benchmark(
            name=path.stem,
            module=f"benchmarks.{path.stem}",
            results=RESULTS_DIR / f"{path.stem}.md",
            summary=_first_docstring_line(path),
        )
        for path in sorted(package_dir.glob("*.py"))
        if not path.stem.startswith("_") and path.stem not in NOT_BENCHMARKS
    ]


def _follow(read_fd: int, progress: Progress, prefix: str) -> None:
    """Draw the child's loop events (benchmarks._progress) as nested bars until the pipe closes."""
    tasks: dict[str, TaskID] = {}
    with os.fdopen(read_fd, "r") as pipe:
        for line in pipe:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from a killed child: skip it, keep following
            loop = event["loop"]
            if loop not in tasks:
                tasks[loop] = progress.add_task(
                    f"{prefix}{event['description']}", total=event["total"]
                )
            progress.update(tasks[loop], completed=event["done"], total=event["total"])


def run_one(
    bench: Benchmark,
    *,
    progress: Progress,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """Run one benchmark in a child process, following its loop progress; never raises on failure."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{bench.name}.log"
    before = bench.results.stat().st_mtime_ns if bench.results.exists() else None
    own = progress.add_task(f"[bold]{bench.name}", total=None)
    read_fd, write_fd = os.pipe()
    child_env = {**(env if env is not None else os.environ), PROGRESS_FD_ENV: str(write_fd)}
    start = time.perf_counter()
    try:
        with log.open("wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", bench.module],
                cwd=REPO_ROOT,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
            )
    finally:
        os.close(write_fd)  # the child holds the only write end: EOF when it (and its pool) exit
    follower = threading.Thread(target=_follow, args=(read_fd, progress, "  "), daemon=True)
    follower.start()
    try:
        returncode = child.wait()
    except BaseException:
        child.kill()  # Ctrl-C: do not leave a benchmark burning the shared cores
        child.wait()
        raise
    follower.join(timeout=5.0)
    seconds = time.perf_counter() - start
    progress.update(own, total=1, completed=1)
    after = bench.results.stat().st_mtime_ns if bench.results.exists() else None
    return Outcome(
        name=bench.name,
        returncode=returncode,
        seconds=seconds,
        log=log,
        results_written=after is not None and after != before,
    )


def new_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def run_all(
    benchmarks: Sequence[Benchmark],
    *,
    progress: Progress,
    log_dir: Path = LOG_DIR,
    env: Mapping[str, str] | None = None,
) -> list[Outcome]:
    """Run `benchmarks` in sequence under one overall bar; one line per finished benchmark."""
    overall = progress.add_task("benchmarks", total=len(benchmarks))
    outcomes = []
    for bench in benchmarks:
        outcome = run_one(bench, progress=progress, log_dir=log_dir, env=env)
        outcomes.append(outcome)
        progress.advance(overall)
        if outcome.ok:
            status = f"wrote {_shown(bench.results)}"
        elif outcome.returncode != 0:
            status = f"FAILED with exit code {outcome.returncode} (log: {outcome.log})"
        else:
            status = f"FAILED: exit 0 but {bench.results.name} was not written (log: {outcome.log})"
        progress.console.print(
            f"{bench.name}: {status} in {outcome.seconds:.0f} s", highlight=False
        )
    return outcomes


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _select(
    all_benchmarks: list[Benchmark], names: str | None, skip: str | None
) -> list[Benchmark]:
    known = {b.name for b in all_benchmarks}
    wanted = [n.strip() for n in (names or "").split(",") if n.strip()]
    skipped = [n.strip() for n in (skip or "").split(",") if n.strip()]
    unknown = sorted(set(wanted + skipped) - known)
    if unknown:
        raise ValueError(
            f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    chosen = [b for b in all_benchmarks if not wanted or b.name in wanted]
    return [b for b in chosen if b.name not in skipped]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--only", help="comma-separated names to run (default: all)")
    parser.add_argument("--skip", help="comma-separated names to leave out")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        benchmarks = _select(discover(), args.only, args.skip)
    except ValueError as err:
        console.print(f"error: {err}", highlight=False, soft_wrap=True)
        return 2
    if args.list:
        for b in benchmarks:
            print(f"{b.name:24} {b.summary}  -> results/{b.results.name}")
        return 0
    with new_progress(console) as progress:
        outcomes = run_all(benchmarks, progress=progress)
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        console.print(f"error: benchmark {o.name} failed (log: {o.log})", highlight=False)
    total = sum(o.seconds for o in outcomes)
    console.print(
        f"{len(outcomes) - len(failed)}/{len(outcomes)} benchmarks succeeded in {total:.0f} s",
        highlight=False,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
