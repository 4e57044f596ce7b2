"""Progress of a benchmark's long loops: `track(items, description=...)` for every benchmark.

Run on its own, a benchmark draws a Rich bar on stderr (a terminal only; a log gets one final
line). Under `benchmarks.run_all`, which passes the write end of a pipe in PROGRESS_FD_ENV, each
step is one JSON line on that pipe instead, and run_all draws it as a bar nested under the
benchmark's own: the child's output goes to a log file, where live bars would be noise."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

PROGRESS_FD_ENV = "FORGETFLOW_BENCH_PROGRESS_FD"
T = TypeVar("T")
_loop_ids = itertools.count()
_bars: Progress | None = None  # the outermost loop's display; nested loops add bars to it


def _draw(items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
    """Rich bars on stderr; one display for nested loops (Rich allows one live display)."""
    global _bars
    owner = _bars is None
    if _bars is None:
        _bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        _bars.start()
    bars = _bars
    task = bars.add_task(description, total=total)
    try:
        for item in items:
            yield item
            bars.advance(task)
    finally:
        if owner:
            bars.stop()
            _bars = None
        else:
            bars.remove_task(task)  # a finished inner loop: its outer bar keeps the count


def track(items: Iterable[T], *, description: str, total: int | None = None) -> Iterator[T]:
    """Yield `items`, reporting each step; `total` defaults to len(items) when it has one."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    fd = os.environ.get(PROGRESS_FD_ENV)
    if fd is None:
        yield from _draw(items, description, total)
        return
    # A loop id per (process, loop): two loops with one description stay two bars.
    loop = f"{os.getpid()}-{next(_loop_ids)}"
    with os.fdopen(int(fd), "w", buffering=1, closefd=False) as pipe:

        def emit(done: int) -> None:
            event = {"loop": loop, "description": description, "done": done, "total": total}
            pipe.write(json.dumps(event) + "\n")

        emit(0)
        for done, item in enumerate(items, start=1):
            yield item
            emit(done)
